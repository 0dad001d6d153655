//! One forwarded connection: a host `TcpStream` spliced to a smoltcp TCP socket.
//!
//! Bytes move directly between the host socket and the smoltcp ring buffers, so the
//! smoltcp buffers are the only per-connection buffering: when the guest's side is full
//! the host socket is not read (and the host's kernel window closes), and when the host
//! does not read, the guest-facing receive window closes.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{Socket, State};

use crate::Metrics;

/// Outcome of one host read or write attempt.
enum Io {
    Moved(usize),
    Blocked,
    Eof,
    Failed(std::io::Error),
}

fn io_result(r: std::io::Result<usize>) -> Io {
    match r {
        Ok(0) => Io::Eof,
        Ok(n) => Io::Moved(n),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => Io::Blocked,
        Err(e) => Io::Failed(e),
    }
}

/// A forwarded connection.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The host side; `None` once closed.
    host: Option<TcpStream>,
    /// The guest side.
    pub handle: SocketHandle,
    /// The gateway's port for this connection.
    pub local_port: u16,
    /// The host sent EOF (or failed) and the guest side was told to close.
    host_read_done: bool,
    /// The guest's FIN was passed on to the host with `shutdown(Write)`.
    host_write_done: bool,
    /// The guest side reached ESTABLISHED at some point.
    established: bool,
}

impl Conn {
    pub fn new(host: TcpStream, handle: SocketHandle, local_port: u16) -> Self {
        Conn {
            host: Some(host),
            handle,
            local_port,
            host_read_done: false,
            host_write_done: false,
            established: false,
        }
    }

    /// The host socket's descriptor while it is open (to watch it for readiness).
    pub fn host_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.host.as_ref().map(|h| h.as_raw_fd())
    }

    /// Moves bytes and closes both ways; returns how many bytes moved.
    pub fn relay(&mut self, sock: &mut Socket<'_>, m: &mut Metrics) -> usize {
        if !matches!(sock.state(), State::SynSent | State::Closed | State::Listen) {
            self.established = true;
        }
        let moved = self.guest_to_host(sock, m) + self.host_to_guest(sock, m);
        self.propagate_close(sock, m);
        moved
    }

    /// Whether the connection is over and its socket can be released.
    pub fn finished(&self, sock: &Socket<'_>) -> bool {
        match sock.state() {
            // Closed with no peer left: any RST has gone out.
            State::Closed => sock.remote_endpoint().is_none(),
            // Both FINs exchanged and acknowledged by us; skip the 10 s TIME-WAIT
            // (a retransmitted guest FIN would meet a RST, which is harmless).
            State::TimeWait => self.host.is_none() || self.host_write_done,
            _ => false,
        }
    }

    fn guest_to_host(&mut self, sock: &mut Socket<'_>, m: &mut Metrics) -> usize {
        let mut total = 0;
        // Two rounds: the receive ring may hold its data in two pieces.
        for _ in 0..2 {
            let Some(host) = self.host.as_mut() else {
                return total;
            };
            if !sock.can_recv() || self.host_write_done {
                break;
            }
            let r = sock.recv(|buf| match io_result(host.write(buf)) {
                Io::Moved(n) => (n, Io::Moved(n)),
                other => (0, other),
            });
            match r {
                Ok(Io::Moved(n)) => total += n,
                Ok(Io::Blocked) | Err(_) => break,
                Ok(Io::Eof) | Ok(Io::Failed(_)) => {
                    // The host cannot take more: reset the guest side.
                    self.fail(sock);
                    break;
                }
            }
        }
        m.bytes_from_guest += total as u64;
        total
    }

    fn host_to_guest(&mut self, sock: &mut Socket<'_>, m: &mut Metrics) -> usize {
        let mut total = 0;
        for _ in 0..2 {
            let Some(host) = self.host.as_mut() else {
                return total;
            };
            if self.host_read_done || !sock.may_send() || sock.send_queue() >= sock.send_capacity()
            {
                break;
            }
            let r = sock.send(|buf| {
                if buf.is_empty() {
                    return (0, Io::Blocked);
                }
                match io_result(host.read(buf)) {
                    Io::Moved(n) => (n, Io::Moved(n)),
                    other => (0, other),
                }
            });
            match r {
                Ok(Io::Moved(n)) => total += n,
                Ok(Io::Blocked) | Err(_) => break,
                Ok(Io::Eof) => {
                    // Host half-close: FIN to the guest once the queued bytes are sent.
                    self.host_read_done = true;
                    sock.close();
                    break;
                }
                Ok(Io::Failed(e)) => {
                    tracing::debug!(port = self.local_port, "host connection failed: {e}");
                    self.fail(sock);
                    break;
                }
            }
        }
        m.bytes_to_guest += total as u64;
        total
    }

    fn propagate_close(&mut self, sock: &mut Socket<'_>, m: &mut Metrics) {
        if self.host.is_none() {
            return;
        }
        match sock.state() {
            State::Closed => {
                // Reset by the guest, refused, timed out, or closed both ways: the host
                // side gets whatever we hold and then EOF.
                if !self.established {
                    m.connections_refused += 1;
                }
                self.host = None;
            }
            _ if self.established && !sock.may_recv() && !self.host_write_done => {
                // The guest's FIN, after all of its data: half-close towards the host.
                self.host_write_done = true;
                if let Some(host) = &self.host {
                    let _ = host.shutdown(Shutdown::Write);
                }
            }
            _ => {}
        }
        if self.host_read_done && self.host_write_done {
            self.host = None;
        }
    }

    /// Ends the connection abruptly: RST to the guest, host socket dropped.
    fn fail(&mut self, sock: &mut Socket<'_>) {
        sock.abort();
        self.host = None;
        self.host_read_done = true;
        self.host_write_done = true;
    }

    /// Ends the connection on behalf of the backend (shutdown, overload).
    pub fn abort(&mut self, sock: &mut Socket<'_>) {
        self.fail(sock);
    }
}
