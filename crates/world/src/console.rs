//! The console's input side: host stdin for the guest's serial port, as QEMU
//! `-nographic` does. On a terminal, stdin goes into raw mode (every key, Ctrl-C
//! included, reaches the guest) and `Ctrl-A x` quits; the terminal's mode comes back
//! when the console is dropped. Reading never blocks: the driver polls between slices,
//! and the bytes enter the guest as an event like any other input.

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::termios::{self, OptionalActions, OutputModes, Termios};
use std::io::IsTerminal;

/// The escape key (Ctrl-A), as in QEMU: `Ctrl-A x` quits, `Ctrl-A Ctrl-A` sends Ctrl-A.
const ESCAPE: u8 = 0x01;

/// Errors of the console.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The terminal's mode could not be read or changed.
    #[error("cannot put the terminal into raw mode: {0}")]
    Terminal(#[source] std::io::Error),
}

/// What a poll of the console found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConsoleInput {
    /// Bytes for the guest.
    pub bytes: Vec<u8>,
    /// The user asked to quit (`Ctrl-A x` on a terminal).
    pub quit: bool,
}

/// Host stdin as the guest's console input.
pub struct StdinConsole {
    /// The terminal's mode before raw mode (restored on drop); None off a terminal.
    saved: Option<Termios>,
    /// Ctrl-A commands are recognised (on a terminal).
    escape_keys: bool,
    /// Ctrl-A was the last byte read (the next one is a command).
    escaped: bool,
    /// Stdin reached its end: nothing more to read.
    eof: bool,
}

impl StdinConsole {
    /// Take stdin as the console; a terminal goes into raw mode.
    pub fn open() -> Result<StdinConsole, ConsoleError> {
        let stdin = rustix::stdio::stdin();
        let saved = if std::io::stdin().is_terminal() {
            let saved = termios::tcgetattr(stdin).map_err(|e| ConsoleError::Terminal(e.into()))?;
            let mut raw = saved.clone();
            raw.make_raw();
            // Keep output processing (\n -> \r\n) so the host's own messages stay readable.
            raw.output_modes |= OutputModes::OPOST | OutputModes::ONLCR;
            termios::tcsetattr(stdin, OptionalActions::Now, &raw)
                .map_err(|e| ConsoleError::Terminal(e.into()))?;
            Some(saved)
        } else {
            None
        };
        Ok(StdinConsole {
            escape_keys: saved.is_some(),
            saved,
            escaped: false,
            eof: false,
        })
    }

    /// Whether stdin is a terminal (in raw mode while the console is open).
    pub fn is_terminal(&self) -> bool {
        self.saved.is_some()
    }

    /// Read what is available now, without waiting; at most `max` bytes for the guest
    /// (the rest stays in the host's buffer, so pasted text is paced by the guest).
    pub fn poll(&mut self, max: usize) -> ConsoleInput {
        let mut input = ConsoleInput::default();
        if self.eof || max == 0 {
            return input;
        }
        let stdin = rustix::stdio::stdin();
        let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&zero)) {
            Ok(n) if n > 0 => {}
            _ => return input,
        }
        if fds[0]
            .revents()
            .intersects(PollFlags::ERR | PollFlags::NVAL)
        {
            self.eof = true;
            return input;
        }
        let mut buf = vec![0u8; max.min(4096)];
        match rustix::io::read(stdin, &mut buf) {
            Ok(0) => self.eof = true,
            Ok(n) => self.filter(&buf[..n], &mut input),
            Err(rustix::io::Errno::INTR) | Err(rustix::io::Errno::AGAIN) => {}
            Err(e) => {
                tracing::warn!(
                    "console: reading stdin failed: {e}; the console takes no more input"
                );
                self.eof = true;
            }
        }
        input
    }

    /// Handle the escape key on a terminal; pass everything else on.
    fn filter(&mut self, bytes: &[u8], input: &mut ConsoleInput) {
        if !self.escape_keys {
            input.bytes.extend_from_slice(bytes);
            return;
        }
        for &b in bytes {
            if self.escaped {
                self.escaped = false;
                match b {
                    b'x' | b'X' => input.quit = true,
                    ESCAPE => input.bytes.push(ESCAPE),
                    _ => {} // unknown commands are ignored, as in QEMU
                }
            } else if b == ESCAPE {
                self.escaped = true;
            } else {
                input.bytes.push(b);
            }
        }
    }
}

impl Drop for StdinConsole {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(rustix::stdio::stdin(), OptionalActions::Now, saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(escape_keys: bool) -> StdinConsole {
        StdinConsole {
            saved: None,
            escape_keys,
            escaped: false,
            eof: false,
        }
    }

    #[test]
    fn on_a_terminal_ctrl_a_x_quits_and_ctrl_a_twice_sends_ctrl_a() {
        let mut c = console(true);
        let mut input = ConsoleInput::default();
        c.filter(b"ls\r\x01\x01", &mut input);
        assert_eq!(input.bytes, b"ls\r\x01");
        assert!(!input.quit);
        // The escape may end one read and its command start the next.
        c.filter(b"\x01", &mut input);
        c.filter(b"x", &mut input);
        assert!(input.quit);
        assert_eq!(input.bytes, b"ls\r\x01");
    }

    #[test]
    fn off_a_terminal_every_byte_reaches_the_guest() {
        let mut c = console(false);
        let mut input = ConsoleInput::default();
        c.filter(b"a\x01xb", &mut input);
        assert_eq!(input.bytes, b"a\x01xb");
        assert!(!input.quit);
    }
}
