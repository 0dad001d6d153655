//! One VM port as the switch sees it: a non-blocking TCP connection (in clear or inside
//! TLS), the hello, and a bounded queue of frames waiting to be written.

use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::time::Instant;

use crate::transport::Transport;
use crate::wire::{self, Decoder, Outbox, WireError};
use crate::Mac;

/// Why a port's connection ends.
#[derive(Debug)]
pub(crate) enum Closed {
    /// The peer closed the connection.
    Eof,
    /// A socket error.
    Io(std::io::Error),
    /// The peer broke the wire protocol.
    Protocol(WireError),
    /// The TLS handshake failed or a record did not authenticate: the peer has no valid
    /// certificate of the cluster, spoke in clear, or the bytes were tampered with.
    Refused(String),
    /// The TLS handshake did not finish in time.
    HandshakeTimeout,
    /// The hello did not arrive in time.
    HelloTimeout,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Eof => write!(f, "peer closed the connection"),
            Closed::Io(e) => write!(f, "socket error: {e}"),
            Closed::Protocol(e) => write!(f, "protocol error: {e}"),
            Closed::Refused(e) => write!(f, "refused: {e}"),
            Closed::HandshakeTimeout => write!(f, "the TLS handshake did not finish in time"),
            Closed::HelloTimeout => write!(f, "no hello in time"),
        }
    }
}

/// Which source MAC addresses a port may send with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Allowed {
    /// Any (a switch in clear: no credentials to go by).
    Any,
    /// Only this one: its certificate's VM's.
    Only(Mac),
    /// None: a certificate for no VM, or for a VM the switch has no MAC for.
    Nothing,
    /// Not decided yet (the handshake is running).
    Pending,
}

/// Who a TLS port is, from its verified certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credential {
    /// The node's name.
    pub node: String,
    /// The VM its certificate is for.
    pub vm: Option<String>,
}

/// A connection from a VM process.
#[derive(Debug)]
pub(crate) struct Port {
    link: Transport,
    pub peer: SocketAddr,
    /// Over TLS, once the handshake is done: who the peer is.
    pub credential: Option<Credential>,
    /// Which source addresses it may use (set by the switch from `credential`).
    pub allowed: Allowed,
    /// Frames refused for a source address not its own.
    pub refused: u64,
    /// The name from the hello; `None` until it arrived (the port takes no frames then).
    pub name: Option<String>,
    pub accepted: Instant,
    decoder: Decoder,
    pub outbox: Outbox,
    /// Frames dropped because the outbox was full.
    pub dropped: u64,
}

impl Port {
    pub fn new(link: Transport, peer: SocketAddr, now: Instant, queue_bytes: usize) -> Self {
        let allowed = match link {
            Transport::Plain(_) => Allowed::Any,
            Transport::Tls { .. } => Allowed::Pending,
        };
        Port {
            link,
            peer,
            credential: None,
            allowed,
            refused: 0,
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
            let n = match self.link.read(chunk) {
                Ok(0) => return (frames, Some(Closed::Eof)),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::InvalidData => {
                    return (frames, Some(Closed::Refused(e.to_string())))
                }
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
        if self.credential.is_none() {
            if let Some(cert) = self.link.peer_certificate() {
                match (
                    ftvm_world::tls::identity(cert),
                    ftvm_world::tls::vm_of(cert),
                ) {
                    (Ok(node), Ok(vm)) => self.credential = Some(Credential { node, vm }),
                    (Err(e), _) | (_, Err(e)) => {
                        return (frames, Some(Closed::Refused(e.to_string())))
                    }
                }
            }
        }
        (frames, None)
    }

    /// Whether the TLS handshake is still running.
    pub fn handshaking(&self) -> bool {
        self.link.handshaking()
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
            &mut ftvm_world::mio::unix::SourceFd(&self.link.as_raw_fd()),
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

    /// Writes what the socket takes (queued frames, and over TLS the handshake's
    /// messages); the number of bytes written.
    pub fn flush(&mut self) -> Result<usize, Closed> {
        let n = self.outbox.flush(&mut self.link).map_err(Closed::Io)?;
        Ok(n + self.link.push().map_err(Closed::Io)?)
    }
}
