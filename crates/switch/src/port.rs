//! One VM port as the switch sees it: a non-blocking TCP connection, the hello, and a
//! bounded queue of frames waiting to be written.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use crate::wire::{self, Decoder, Outbox, WireError};

/// Why a port's connection ends.
#[derive(Debug)]
pub(crate) enum Closed {
    /// The peer closed the connection.
    Eof,
    /// A socket error.
    Io(std::io::Error),
    /// The peer broke the wire protocol.
    Protocol(WireError),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Eof => write!(f, "peer closed the connection"),
            Closed::Io(e) => write!(f, "socket error: {e}"),
            Closed::Protocol(e) => write!(f, "protocol error: {e}"),
        }
    }
}

/// A connection from a VM process.
#[derive(Debug)]
pub(crate) struct Port {
    stream: TcpStream,
    pub peer: SocketAddr,
    /// The name from the hello; `None` until it arrived (the port takes no frames then).
    pub name: Option<String>,
    pub accepted: Instant,
    decoder: Decoder,
    pub outbox: Outbox,
    /// Frames dropped because the outbox was full.
    pub dropped: u64,
}

impl Port {
    pub fn new(stream: TcpStream, peer: SocketAddr, now: Instant, queue_bytes: usize) -> Self {
        Port {
            stream,
            peer,
            name: None,
            accepted: now,
            decoder: Decoder::default(),
            outbox: Outbox::new(queue_bytes),
            dropped: 0,
        }
    }

    /// Reads at most about `budget` bytes and returns the frames received, plus the
    /// reason the connection ended if it did (frames before the end still count).
    pub fn receive(&mut self, chunk: &mut [u8], budget: usize) -> (Vec<Vec<u8>>, Option<Closed>) {
        let mut frames = Vec::new();
        let mut read = 0;
        while read < budget {
            let n = match self.stream.read(chunk) {
                Ok(0) => return (frames, Some(Closed::Eof)),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return (frames, Some(Closed::Io(e))),
            };
            read += n;
            self.decoder.push(&chunk[..n]);
            // Bounded: each message consumes at least five pushed bytes.
            loop {
                match self.decoder.next_message() {
                    Ok(None) => break,
                    Ok(Some(m)) if self.name.is_none() => match wire::parse_hello(&m) {
                        Ok(name) => self.name = Some(name),
                        Err(e) => return (frames, Some(Closed::Protocol(e))),
                    },
                    Ok(Some(m)) => frames.push(m),
                    Err(e) => return (frames, Some(Closed::Protocol(e))),
                }
            }
        }
        (frames, None)
    }

    /// Watch the connection for readiness (readable, and writable for a queue that
    /// waits on a slow reader).
    pub fn watch(
        &self,
        registry: &ftvm_world::mio::Registry,
        token: ftvm_world::mio::Token,
    ) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        registry.register(
            &mut ftvm_world::mio::unix::SourceFd(&self.stream.as_raw_fd()),
            token,
            ftvm_world::mio::Interest::READABLE | ftvm_world::mio::Interest::WRITABLE,
        )
    }

    /// Queues an encoded frame; false (and counted) when the queue is full.
    pub fn offer(&mut self, message: Vec<u8>) -> bool {
        let ok = self.outbox.push(message);
        if !ok {
            self.dropped += 1;
        }
        ok
    }

    /// Writes what the socket takes; the number of bytes written.
    pub fn flush(&mut self) -> Result<usize, Closed> {
        self.outbox.flush(&mut self.stream).map_err(Closed::Io)
    }
}
