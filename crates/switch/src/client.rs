//! The VM side of a switch port: what a VM process's network backend uses in place of an
//! in-process gateway.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ftvm_world::mio::unix::SourceFd;
use ftvm_world::mio::{Interest, Registry, Token};
use ftvm_world::tls::{Credentials, TlsError};

use crate::table::Mac;
use crate::transport::Transport;
use crate::wire::{self, Decoder, Outbox, MAX_MESSAGE};
use crate::SwitchError;

/// Bytes a [`SwitchPort`] buffers for a switch that reads slowly.
pub const PORT_QUEUE_BYTES: usize = 1 << 20;
/// How long [`SwitchPort::connect`] waits for the switch to answer and take the hello.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most frames one [`ftvm_world::Net::recv`] hands over.
const RECV_BATCH: usize = 256;

/// A connection to a [`crate::Switch`], non-blocking after the hello.
#[derive(Debug)]
pub struct SwitchPort {
    stream: Transport,
    decoder: Decoder,
    outbox: Outbox,
    inbox: VecDeque<Vec<u8>>,
    chunk: Vec<u8>,
    closed: bool,
    dropped: u64,
}

impl SwitchPort {
    /// Connects to the switch at `addr` and introduces the port as `name`
    /// (printable ASCII, 1..=64 bytes; e.g. the VM node's name).
    /// The connection runs in clear: the switch must be one without TLS
    /// (`--insecure-plaintext`).
    pub fn connect(addr: SocketAddr, name: &str) -> Result<SwitchPort, SwitchError> {
        SwitchPort::open(addr, name, None)
    }

    /// Like [`SwitchPort::connect`], over TLS 1.3 with this node's `creds` (loaded for
    /// [`crate::SWITCH_ALPN`]): the switch must hold a certificate of the cluster CA,
    /// and it lets the port send only with the MAC address of the VM `creds` are for.
    /// The handshake blocks (at most a few seconds); the port is non-blocking after.
    pub fn connect_tls(
        addr: SocketAddr,
        name: &str,
        creds: &Credentials,
    ) -> Result<SwitchPort, SwitchError> {
        SwitchPort::open(addr, name, Some(creds))
    }

    fn open(
        addr: SocketAddr,
        name: &str,
        creds: Option<&Credentials>,
    ) -> Result<SwitchPort, SwitchError> {
        let hello = wire::encode_hello(name).map_err(SwitchError::Protocol)?;
        let err = |source| SwitchError::Connect { addr, source };
        let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(err)?;
        stream.set_nodelay(true).map_err(err)?;
        stream
            .set_write_timeout(Some(CONNECT_TIMEOUT))
            .map_err(err)?;
        stream
            .set_read_timeout(Some(CONNECT_TIMEOUT))
            .map_err(err)?;
        let stream = match creds {
            None => {
                stream.write_all(&hello).map_err(err)?;
                Transport::Plain(stream)
            }
            Some(creds) => {
                let mut conn = creds.client_connection(addr).map_err(SwitchError::Tls)?;
                let shake = |e| SwitchError::Tls(TlsError::Handshake(e));
                while conn.is_handshaking() {
                    conn.complete_io(&mut stream).map_err(shake)?;
                }
                // In TLS 1.3 the server judges our certificate after our last flight
                // (RFC 8446 §4.4.2): a refusal shows as an alert on the first read.
                conn.writer().write_all(&hello).map_err(err)?;
                while conn.wants_write() {
                    conn.write_tls(&mut stream).map_err(err)?;
                }
                Transport::Tls {
                    sock: stream,
                    conn: Box::new(conn.into()),
                }
            }
        };
        let (Transport::Plain(s) | Transport::Tls { sock: s, .. }) = &stream;
        s.set_nonblocking(true).map_err(err)?;
        Ok(SwitchPort {
            stream,
            decoder: Decoder::default(),
            outbox: Outbox::new(PORT_QUEUE_BYTES),
            inbox: VecDeque::new(),
            chunk: vec![0; 64 * 1024],
            closed: false,
            dropped: 0,
        })
    }

    /// Sends an Ethernet frame without blocking. `Ok(false)`: dropped and counted, because
    /// it is empty or over 64 KiB or the queue is full (a NIC drops too; TCP retransmits).
    pub fn send(&mut self, frame: &[u8]) -> Result<bool, SwitchError> {
        let fits = (1..=MAX_MESSAGE).contains(&frame.len());
        let queued = fits && self.outbox.push(wire::encode(frame));
        if !queued {
            self.dropped += 1;
        }
        self.flush()?;
        Ok(queued)
    }

    /// Writes queued frames as far as the socket takes them.
    pub fn flush(&mut self) -> Result<(), SwitchError> {
        self.outbox
            .flush(&mut self.stream)
            .map_err(SwitchError::Io)?;
        self.stream.push().map_err(SwitchError::Io)?;
        Ok(())
    }

    /// The next frame from the switch, if one has arrived; never blocks. Also moves queued
    /// output along. [`SwitchError::Disconnected`] once the switch is gone and every frame
    /// it sent was taken.
    pub fn try_recv(&mut self) -> Result<Option<Vec<u8>>, SwitchError> {
        if !self.closed {
            self.flush()?;
        }
        if self.inbox.is_empty() && !self.closed {
            self.fill()?;
        }
        match self.inbox.pop_front() {
            Some(f) => Ok(Some(f)),
            None if self.closed => Err(SwitchError::Disconnected),
            None => Ok(None),
        }
    }

    /// Reads from the socket into the inbox until a frame is complete or the socket
    /// has nothing more (so that an empty inbox means a drained socket: readiness is
    /// edge-triggered, see [`ftvm_world::net`]).
    fn fill(&mut self) -> Result<(), SwitchError> {
        while self.inbox.is_empty() {
            let n = match self.stream.read(&mut self.chunk) {
                Ok(0) => {
                    self.closed = true;
                    return Ok(());
                }
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // A TLS failure (the switch refused our certificate) ends the port.
                    self.closed = e.kind() == ErrorKind::InvalidData;
                    return Err(SwitchError::Io(e));
                }
            };
            self.decoder.push(&self.chunk[..n]);
            while let Some(frame) = self.decoder.next_message().map_err(SwitchError::Protocol)? {
                self.inbox.push_back(frame);
            }
        }
        Ok(())
    }

    /// Frames dropped by [`SwitchPort::send`].
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes queued for the switch and not yet written.
    pub fn queued(&self) -> usize {
        self.outbox.queued()
    }

    /// Announces that `mac` (with address `ip`) is now behind this port: sends a
    /// gratuitous ARP, as a backup does when it goes live (DESIGN.md §4).
    pub fn announce(&mut self, mac: Mac, ip: Ipv4Addr) -> Result<bool, SwitchError> {
        self.send(&gratuitous_arp(mac, ip))
    }
}

/// A port on a switch as the guest NIC's network (`--net switch=ADDR`, `ftvm primary`).
impl ftvm_world::Net for SwitchPort {
    fn send(&mut self, frame: &[u8]) {
        if let Err(e) = SwitchPort::send(self, frame) {
            tracing::warn!("switch port: {e}");
        }
    }

    fn recv(&mut self, _now: Instant) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        while frames.len() < RECV_BATCH {
            match self.try_recv() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("switch port: {e}");
                    break;
                }
            }
        }
        frames
    }

    fn timer(&mut self, _now: Instant) -> Option<Duration> {
        None
    }

    /// Readable for frames, writable for the queued output a slow switch left.
    fn register(&mut self, registry: &Registry, token: Token) -> std::io::Result<()> {
        registry.register(
            &mut SourceFd(&self.stream.as_raw_fd()),
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }
}

/// A gratuitous ARP (an ARP announcement, RFC 5227 §2.3): a broadcast request whose
/// sender and target address are both `ip`, padded to the 60-byte Ethernet minimum.
pub fn gratuitous_arp(mac: Mac, ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    // Ethernet (1), IPv4 (0x0800), address lengths 6 and 4, request (1) (RFC 826).
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip.octets());
    f.resize(60, 0);
    f
}
