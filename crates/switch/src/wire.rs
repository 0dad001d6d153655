//! The wire protocol between a VM process and the switch (see the crate documentation).
//!
//! [`Decoder`] splits a byte stream into messages; [`Outbox`] queues encoded messages for
//! a non-blocking socket. Both are bounded whatever the peer sends.

use std::collections::VecDeque;
use std::io::{ErrorKind, Write};

/// Largest message payload (an Ethernet frame, or the hello): 64 KiB.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The hello's first bytes: magic `FTSW` and the protocol version 1.
pub const HELLO_PREFIX: &[u8; 5] = b"FTSW\x01";
/// Longest port name carried by the hello, in bytes.
pub const MAX_NAME: usize = 64;
/// Length of the message header (the payload length, `u32` little endian).
pub const HEADER: usize = 4;

/// A peer broke the wire protocol; the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A message header announced an empty or oversized payload.
    #[error("message length {0} is not in 1..={MAX_MESSAGE}")]
    BadLength(u32),
    /// The first message was not a valid hello.
    #[error("bad hello: {0}")]
    BadHello(&'static str),
}

/// Encodes the hello that opens a connection, naming the port.
pub fn encode_hello(name: &str) -> Result<Vec<u8>, WireError> {
    check_name(name.as_bytes())?;
    let mut payload = HELLO_PREFIX.to_vec();
    payload.extend_from_slice(name.as_bytes());
    Ok(encode(&payload))
}

/// Decodes a hello payload into the port name.
pub fn parse_hello(payload: &[u8]) -> Result<String, WireError> {
    let name = payload
        .strip_prefix(HELLO_PREFIX.as_slice())
        .ok_or(WireError::BadHello("not an ftvm switch protocol 1 hello"))?;
    check_name(name)?;
    // check_name accepted only printable ASCII.
    Ok(String::from_utf8_lossy(name).into_owned())
}

fn check_name(name: &[u8]) -> Result<(), WireError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(WireError::BadHello("name must be 1..=64 bytes"));
    }
    if !name.iter().all(|b| b.is_ascii_graphic()) {
        return Err(WireError::BadHello("name must be printable ASCII"));
    }
    Ok(())
}

/// Encodes one message: length header, then the payload (at most [`MAX_MESSAGE`] bytes).
pub fn encode(payload: &[u8]) -> Vec<u8> {
    debug_assert!((1..=MAX_MESSAGE).contains(&payload.len()));
    let mut m = Vec::with_capacity(HEADER + payload.len());
    m.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    m.extend_from_slice(payload);
    m
}

/// Splits a byte stream into message payloads. Holds at most one partial message.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
}

impl Decoder {
    /// Appends received bytes; take the messages out with [`Decoder::next_message`] before
    /// pushing more, or the buffer grows by what was pushed.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message payload, if any.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        let rest = &self.buf[self.start..];
        let Some(header) = rest.first_chunk::<HEADER>() else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(*header);
        if len == 0 || len as usize > MAX_MESSAGE {
            return Err(WireError::BadLength(len));
        }
        let end = HEADER + len as usize;
        if rest.len() < end {
            return Ok(None);
        }
        let payload = rest[HEADER..end].to_vec();
        self.start += end;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(Some(payload))
    }
}

/// Encoded messages waiting for a non-blocking socket, bounded in bytes.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Vec<u8>>,
    /// Bytes of the head message already written.
    written: usize,
    bytes: usize,
    cap: usize,
}

impl Outbox {
    /// An empty outbox holding at most `cap` bytes (a message larger than `cap` still
    /// fits into an empty outbox, so any valid frame can pass).
    pub fn new(cap: usize) -> Self {
        Outbox {
            queue: VecDeque::new(),
            written: 0,
            bytes: 0,
            cap,
        }
    }

    /// Queues an encoded message; false (and nothing queued) when there is no room.
    pub fn push(&mut self, message: Vec<u8>) -> bool {
        if !self.queue.is_empty() && self.bytes + message.len() > self.cap {
            return false;
        }
        self.bytes += message.len();
        self.queue.push_back(message);
        true
    }

    /// Take the messages not yet written in full (a partly written one included).
    pub fn take_unsent(&mut self) -> Vec<Vec<u8>> {
        self.bytes = 0;
        self.written = 0;
        self.queue.drain(..).collect()
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.bytes - self.written
    }

    /// Writes until the socket would block or the queue is empty; the number of bytes
    /// written. A socket error (a broken peer) is returned.
    pub fn flush(&mut self, w: &mut impl Write) -> std::io::Result<usize> {
        let mut total = 0;
        while let Some(head) = self.queue.front() {
            match w.write(&head[self.written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    total += n;
                    self.written += n;
                    if self.written == head.len() {
                        self.bytes -= head.len();
                        self.written = 0;
                        self.queue.pop_front();
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hello_round_trip_and_rejects() {
        let m = encode_hello("vm-a").unwrap();
        let mut d = Decoder::default();
        d.push(&m);
        let p = d.next_message().unwrap().unwrap();
        assert_eq!(parse_hello(&p).unwrap(), "vm-a");
        assert!(encode_hello("").is_err());
        assert!(encode_hello(&"x".repeat(65)).is_err());
        assert!(encode_hello("a b").is_err());
        assert!(parse_hello(b"FTSW\x02vm").is_err());
        assert!(parse_hello(b"\x01\x02").is_err());
    }

    #[test]
    fn bad_lengths_are_errors() {
        let mut d = Decoder::default();
        d.push(&0u32.to_le_bytes());
        assert_eq!(d.next_message(), Err(WireError::BadLength(0)));
        let mut d = Decoder::default();
        d.push(&(MAX_MESSAGE as u32 + 1).to_le_bytes());
        assert!(d.next_message().is_err());
    }

    /// A writer that takes at most `step` bytes per call, then would block.
    struct Trickle(Vec<u8>, usize, usize);
    impl Write for Trickle {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.2 == 0 {
                return Err(ErrorKind::WouldBlock.into());
            }
            self.2 -= 1;
            let n = b.len().min(self.1);
            self.0.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn outbox_is_bounded_and_resumes_partial_writes() {
        let mut o = Outbox::new(20);
        assert!(o.push(encode(&[1; 10])));
        assert!(!o.push(encode(&[2; 10])), "14 + 14 bytes exceed 20");
        assert!(o.push(encode(&[3; 2])));
        let mut w = Trickle(Vec::new(), 3, 2);
        assert_eq!(o.flush(&mut w).unwrap(), 6);
        assert_eq!(o.queued(), 20 - 6);
        w.2 = 100;
        o.flush(&mut w).unwrap();
        assert_eq!(o.queued(), 0);
        let mut d = Decoder::default();
        d.push(&w.0);
        assert_eq!(d.next_message().unwrap(), Some(vec![1; 10]));
        assert_eq!(d.next_message().unwrap(), Some(vec![3; 2]));
        assert_eq!(d.next_message().unwrap(), None);
        // An oversized message still passes through an empty outbox.
        assert!(o.push(encode(&[4; 100])));
    }

    proptest! {
        /// Any split of a stream of messages decodes to the same messages.
        #[test]
        fn decode_any_split(
            msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..20),
            cuts in prop::collection::vec(1usize..500, 0..40),
        ) {
            let stream: Vec<u8> = msgs.iter().flat_map(|m| encode(m)).collect();
            let mut d = Decoder::default();
            let mut got = Vec::new();
            let mut rest = &stream[..];
            for c in cuts.into_iter().chain(std::iter::repeat(usize::MAX)) {
                if rest.is_empty() { break; }
                let (a, b) = rest.split_at(c.min(rest.len()));
                d.push(a);
                rest = b;
                while let Some(m) = d.next_message().unwrap() { got.push(m); }
            }
            prop_assert_eq!(got, msgs);
        }

        /// Arbitrary bytes never panic the decoder, and a held partial message never
        /// exceeds one maximal message.
        #[test]
        fn garbage_is_bounded(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..20)) {
            let mut d = Decoder::default();
            for c in chunks {
                d.push(&c);
                while let Ok(Some(_)) = d.next_message() {}
                prop_assert!(d.buf.len() - d.start <= HEADER + MAX_MESSAGE + 200);
            }
        }
    }
}
