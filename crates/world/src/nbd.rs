//! A disk served over the network by an NBD server (the NBD protocol,
//! github.com/NetworkBlockDevice/nbd doc/proto.md): the fixed newstyle handshake,
//! `NBD_OPT_GO`, structured replies where the server offers them, and reconnection
//! after a storage-host blip (issue 13 item 3).
//!
//! One request is in flight at a time (the driver carries disk requests out one by
//! one). Fencing, so that a write of a node that lost its lease cannot land after the
//! new owner's:
//! - a write is sent only while this node's [`WritePermit`] holds — first sends and
//!   re-sends after a reconnection alike;
//! - if its reply has not come [`GRACE`] after the permit's end (read again while it
//!   waits: a lease renewed meanwhile holds the write too), the connection is aborted,
//!   and the socket's `SO_LINGER` of zero makes every close an abort (also the one at
//!   this process's death): the kernel discards what it had not sent yet;
//! - `TCP_USER_TIMEOUT` is [`USER_TIMEOUT`]: bytes the storage host has not
//!   acknowledged by then are dropped with the connection, even on an orphaned socket.
//!
//! So a write's bytes leave this node's sockets by its lease's end plus [`GRACE`]. They
//! can still sit below TCP: a host whose link lost carrier forgets its neighbours, and
//! the packets it then sends wait for address resolution (ARP, or NDP for IPv6) — not
//! in the socket, so no abort recalls them — and leave when the link returns, or are
//! dropped when resolution gives up: after 3 probes 1 s apart (Linux's `mcast_solicit`
//! and `retrans_time_ms` defaults; RFC 4861 §10's MAX_MULTICAST_SOLICIT and
//! RETRANS_TIMER). A test saw such a write land 240 ms after the link came back, after
//! the new owner's. So a new owner, live only after that lease ended, holds its first
//! write until [`FENCE`] after it went live ([`Disk::fence`]): [`GRACE`], the
//! [`NEIGHBOUR_HOLD`], and [`WIRE`] for what is on the wire. Reads go on meanwhile, and
//! on the FT nodes the disk has a thread of its own, so only the guest's writes wait. A
//! slow write is awaited as long as the lease keeps being renewed.
//!
//! What this does not cover: a storage server that holds received bytes longer than
//! the margin before applying them (a stopped or swapping server process), a router
//! or host tuned to hold packets longer than [`NEIGHBOUR_HOLD`], and a sender paused
//! past the margin between its check and its write. NBD has no
//! reservations (SCSI persistent reservations would close that); see README "Shared
//! disk over NBD".

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::disk::{Disk, DiskError, WritePermit, SECTOR};

/// How long a write's bytes may wait for the storage host's TCP acknowledgment before
/// the kernel aborts the connection (`TCP_USER_TIMEOUT`).
pub const USER_TIMEOUT: Duration = Duration::from_millis(200);
/// How often a write awaiting its reply reads its permit's end again.
const RECHECK: Duration = Duration::from_millis(20);
/// How long past its permit's end a write may still be on its way out of this host (its
/// reply awaited): then its connection is aborted.
pub const GRACE: Duration = Duration::from_millis(150);
/// How long a packet may wait below TCP for its next hop's address to resolve (module
/// docs): 3 probes, 1 s apart.
pub const NEIGHBOUR_HOLD: Duration = Duration::from_secs(3);
/// How long a packet that left may be on the wire.
pub const WIRE: Duration = Duration::from_millis(150);
/// How long after going live a new owner of the disk holds its first write.
pub const FENCE: Duration = Duration::from_millis(
    GRACE.as_millis() as u64 + NEIGHBOUR_HOLD.as_millis() as u64 + WIRE.as_millis() as u64,
);
/// How long a server may take to answer one request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a lost server is tried again before requests fail.
const RECONNECT_FOR: Duration = Duration::from_secs(60);
/// The largest request sent (the server's maximum block size may lower it).
const MAX_REQUEST: u32 = 4 << 20;
/// The longest option reply accepted during the handshake.
const MAX_OPTION_REPLY: u32 = 64 << 10;
/// The NBD default port.
pub const DEFAULT_PORT: u16 = 10809;

// Handshake (proto.md "Newstyle negotiation").
const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
const OPTION_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const FLAG_FIXED_NEWSTYLE: u16 = 1;
const FLAG_NO_ZEROES: u16 = 2;
const OPT_GO: u32 = 7;
const OPT_STRUCTURED_REPLY: u32 = 8;
const REP_ACK: u32 = 1;
const REP_INFO: u32 = 3;
const REP_ERR: u32 = 1 << 31;
const REP_ERR_UNSUP: u32 = REP_ERR | 1;
const REP_ERR_UNKNOWN: u32 = REP_ERR | 6;
const INFO_EXPORT: u16 = 0;
const INFO_BLOCK_SIZE: u16 = 3;
// Transmission (proto.md "Transmission phase").
const TFLAG_READ_ONLY: u16 = 1 << 1;
const TFLAG_SEND_FLUSH: u16 = 1 << 2;
const REQUEST_MAGIC: u32 = 0x2560_9513;
const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const STRUCTURED_REPLY_MAGIC: u32 = 0x668e_33ef;
const CMD_READ: u16 = 0;
const CMD_WRITE: u16 = 1;
const CMD_DISC: u16 = 2;
const CMD_FLUSH: u16 = 3;
const REPLY_FLAG_DONE: u16 = 1;
const REPLY_TYPE_NONE: u16 = 0;
const REPLY_TYPE_OFFSET_DATA: u16 = 1;
const REPLY_TYPE_OFFSET_HOLE: u16 = 2;
const REPLY_TYPE_ERROR_BIT: u16 = 1 << 15;

/// Where an NBD export is: `nbd://HOST[:PORT]/EXPORT` (the form qemu and nbdkit use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdUrl {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Export name (empty: the server's default export).
    pub export: String,
}

impl NbdUrl {
    /// Parse `nbd://HOST[:PORT][/EXPORT]`.
    pub fn parse(s: &str) -> Result<NbdUrl, String> {
        let rest = s
            .strip_prefix("nbd://")
            .ok_or_else(|| format!("'{s}' is not an nbd:// URL"))?;
        let (authority, export) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("'{s}': '{p}' is not a port number"))?,
            ),
            _ => (authority, DEFAULT_PORT),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!(
                "'{s}' names no host (expected nbd://HOST:PORT/EXPORT)"
            ));
        }
        if export.len() > 4096 {
            return Err(format!("'{s}': the export name is longer than 4096 bytes"));
        }
        Ok(NbdUrl {
            host: host.to_string(),
            port,
            export: export.to_string(),
        })
    }
}

impl std::fmt::Display for NbdUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "nbd://[{}]:{}/{}", self.host, self.port, self.export)
        } else {
            write!(f, "nbd://{}:{}/{}", self.host, self.port, self.export)
        }
    }
}

/// What went wrong talking to the server.
enum Failure {
    /// The connection broke, timed out or carried nonsense: reconnect and try again.
    Link(String),
    /// The server answered with an error: the request fails, the connection stays.
    Server(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        match e.kind() {
            io::ErrorKind::WouldBlock => {
                Failure::Link(format!("no answer within {} s", ANSWER_TIMEOUT.as_secs()))
            }
            // TCP_USER_TIMEOUT: the storage host did not acknowledge our bytes.
            io::ErrorKind::TimedOut => Failure::Link(format!(
                "the storage host acknowledged nothing for {} ms",
                USER_TIMEOUT.as_millis()
            )),
            io::ErrorKind::UnexpectedEof => {
                Failure::Link("the server closed the connection".into())
            }
            _ => Failure::Link(e.to_string()),
        }
    }
}

/// The export as the handshake described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Export {
    size: u64,
    flags: u16,
    structured: bool,
    max_request: u32,
}

/// A disk behind an NBD server.
pub struct NbdDisk {
    url: NbdUrl,
    stream: Option<TcpStream>,
    export: Export,
    cookie: u64,
    permit: WritePermit,
    /// A connection loss already reported (once per outage).
    down_since: Option<Instant>,
    /// Connections lost so far.
    outages: u64,
    /// No write before this instant ([`Disk::fence`]).
    writes_from: Option<Instant>,
}

impl std::fmt::Debug for NbdDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NbdDisk")
            .field("url", &self.url)
            .field("export", &self.export)
            .finish()
    }
}

impl NbdDisk {
    /// Connect to `url` and negotiate; writes are sent only while `permit` allows.
    pub fn connect(url: &NbdUrl, permit: WritePermit) -> Result<NbdDisk, DiskError> {
        let (stream, export) =
            handshake(url).map_err(|why| DiskError::Remote(format!("{url}: {why}")))?;
        if export.size == 0 || export.size % SECTOR != 0 {
            return Err(DiskError::Remote(format!(
                "{url}: the export is {} bytes, not a positive multiple of {SECTOR}",
                export.size
            )));
        }
        Ok(NbdDisk {
            url: url.clone(),
            stream: Some(stream),
            export,
            cookie: 0,
            permit,
            down_since: None,
            outages: 0,
            writes_from: None,
        })
    }

    /// Size in sectors.
    pub fn capacity(&self) -> u64 {
        self.export.size / SECTOR
    }

    /// True if the server exports the disk read-only.
    pub fn read_only(&self) -> bool {
        self.export.flags & TFLAG_READ_ONLY != 0
    }

    /// The local port of the current connection (tests cut links by it).
    pub fn local_port(&self) -> Option<u16> {
        self.stream
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port())
    }

    /// How many times the connection was lost (each outage once).
    pub fn outages(&self) -> u64 {
        self.outages
    }

    /// True if the server agreed to structured replies.
    pub fn structured(&self) -> bool {
        self.export.structured
    }

    fn check(&self, sector: u64, bytes: u64) -> Result<u64, DiskError> {
        let count = bytes.div_ceil(SECTOR);
        match sector.checked_add(count) {
            Some(end) if end <= self.capacity() => Ok(sector * SECTOR),
            _ => Err(DiskError::OutOfRange {
                sector,
                count,
                capacity: self.capacity(),
            }),
        }
    }

    /// Carry out one command, reconnecting while the server is unreachable (for at
    /// most [`RECONNECT_FOR`]). A write is (re-)sent only under the permit.
    fn command(
        &mut self,
        cmd: u16,
        offset: u64,
        len: u32,
        data: &[u8],
    ) -> Result<Vec<u8>, DiskError> {
        if let Some(from) = self.writes_from.filter(|_| cmd == CMD_WRITE) {
            let wait = from.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                tracing::info!(
                    "{}: first write held {} ms (fence)",
                    self.url,
                    wait.as_millis()
                );
                std::thread::sleep(wait);
            }
            self.writes_from = None;
        }
        let give_up = Instant::now() + RECONNECT_FOR;
        loop {
            let why = match self.stream.as_mut() {
                Some(s) => {
                    // Checked last thing before the write leaves (module docs).
                    if cmd == CMD_WRITE && !self.permit.allows() {
                        return Err(DiskError::Fenced);
                    }
                    self.cookie += 1;
                    let permit = (cmd == CMD_WRITE).then_some(&self.permit);
                    match exchange(
                        s,
                        &self.export,
                        self.cookie,
                        (cmd, offset, len),
                        data,
                        permit,
                    ) {
                        Ok(out) => {
                            if let Some(t) = self.down_since.take() {
                                tracing::info!("{}: the disk is back", self.url);
                                eprintln!(
                                    "ftvm: disk {}: reconnected after {} ms",
                                    self.url,
                                    t.elapsed().as_millis()
                                );
                            }
                            return Ok(out);
                        }
                        Err(Failure::Server(why)) => {
                            return Err(DiskError::Remote(format!("{}: {why}", self.url)))
                        }
                        Err(Failure::Link(why)) => why,
                    }
                }
                None => match handshake(&self.url) {
                    Ok((s, export)) if export.size == self.export.size => {
                        self.export = export;
                        self.stream = Some(s);
                        continue;
                    }
                    Ok((_, export)) => {
                        return Err(DiskError::Remote(format!(
                            "{}: the export is now {} bytes, not {}: not the same disk",
                            self.url, export.size, self.export.size
                        )))
                    }
                    Err(why) => why,
                },
            };
            // Dropped, not shut down: SO_LINGER 0 discards what was not sent.
            self.stream = None;
            if self.down_since.is_none() {
                self.outages += 1;
                self.down_since = Some(Instant::now());
                eprintln!("ftvm: disk {}: {why}; reconnecting", self.url);
            }
            if Instant::now() >= give_up {
                return Err(DiskError::Remote(format!(
                    "{}: unreachable for {} s: {why}",
                    self.url,
                    RECONNECT_FOR.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Disk for NbdDisk {
    fn read(&mut self, sector: u64, len: u64) -> Result<Vec<u8>, DiskError> {
        let mut offset = self.check(sector, len)?;
        let mut out = Vec::with_capacity(len as usize);
        let mut left = len;
        while left > 0 {
            let n = left.min(self.export.max_request as u64) as u32;
            out.extend(self.command(CMD_READ, offset, n, &[])?);
            offset += n as u64;
            left -= n as u64;
        }
        Ok(out)
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        let offset = self.check(sector, data.len() as u64)?;
        if self.read_only() {
            return Err(DiskError::ReadOnly);
        }
        let step = self.export.max_request as usize;
        for (i, chunk) in data.chunks(step).enumerate() {
            self.command(
                CMD_WRITE,
                offset + (i * step) as u64,
                chunk.len() as u32,
                chunk,
            )?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        if self.export.flags & TFLAG_SEND_FLUSH == 0 {
            return Ok(()); // the server does not cache writes (proto.md NBD_FLAG_SEND_FLUSH)
        }
        self.command(CMD_FLUSH, 0, 0, &[]).map(|_| ())
    }

    fn fence(&mut self) -> Result<(), DiskError> {
        // By then every write an earlier owner sent under its lease has reached the
        // storage host, or was dropped on its way and never will (module docs).
        self.writes_from = Some(Instant::now() + FENCE);
        Ok(())
    }
}

impl Drop for NbdDisk {
    fn drop(&mut self) {
        if let Some(mut s) = self.stream.take() {
            // A polite goodbye (proto.md NBD_CMD_DISC); the server closes its side.
            let _ = s.write_all(&request(CMD_DISC, self.cookie + 1, 0, 0));
            let _ = s.shutdown(Shutdown::Write);
        }
    }
}

fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().expect("4 bytes"))
}

fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

fn read_n<const N: usize>(s: &mut TcpStream) -> io::Result<[u8; N]> {
    let mut b = [0u8; N];
    s.read_exact(&mut b)?;
    Ok(b)
}

/// Connect and negotiate (fixed newstyle, structured replies if offered, then GO).
fn handshake(url: &NbdUrl) -> Result<(TcpStream, Export), String> {
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{}': {e}", url.host))?
        .collect();
    let mut last = String::from("no address");
    let mut stream = None;
    for a in addrs {
        match TcpStream::connect_timeout(&a, Duration::from_secs(5)) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    let mut s = stream.ok_or(last)?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    rustix::net::sockopt::set_tcp_user_timeout(&s, USER_TIMEOUT.as_millis() as u32)
        .map_err(|e| format!("cannot set TCP_USER_TIMEOUT: {e}"))?;
    // Every close is an abort: unsent bytes are discarded, never sent late.
    rustix::net::sockopt::set_socket_linger(&s, Some(Duration::ZERO))
        .map_err(|e| format!("cannot set SO_LINGER: {e}"))?;
    s.set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(ANSWER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let export = negotiate(&mut s, &url.export).map_err(|e| match e {
        Failure::Link(w) | Failure::Server(w) => w,
    })?;
    Ok((s, export))
}

fn negotiate(s: &mut TcpStream, name: &str) -> Result<Export, Failure> {
    let hello = read_n::<18>(s)?;
    if be_u64(&hello) != NBDMAGIC {
        return Err(Failure::Link("not an NBD server (no NBDMAGIC)".into()));
    }
    if be_u64(&hello[8..]) != IHAVEOPT {
        return Err(Failure::Link(
            "the server speaks only the oldstyle handshake (newstyle is required)".into(),
        ));
    }
    let flags = be_u16(&hello[16..]);
    if flags & FLAG_FIXED_NEWSTYLE == 0 {
        return Err(Failure::Link(
            "the server does not offer fixed newstyle negotiation".into(),
        ));
    }
    let client = (FLAG_FIXED_NEWSTYLE | (flags & FLAG_NO_ZEROES)) as u32;
    s.write_all(&client.to_be_bytes())?;
    // Structured replies first (they must be agreed before GO).
    send_option(s, OPT_STRUCTURED_REPLY, &[])?;
    let structured = match option_reply(s, OPT_STRUCTURED_REPLY)? {
        (REP_ACK, _) => true,
        (t, _) if t & REP_ERR != 0 => false,
        (t, _) => {
            return Err(Failure::Link(format!(
                "unexpected reply {t} to NBD_OPT_STRUCTURED_REPLY"
            )))
        }
    };
    let mut go = Vec::new();
    go.extend_from_slice(&(name.len() as u32).to_be_bytes());
    go.extend_from_slice(name.as_bytes());
    go.extend_from_slice(&1u16.to_be_bytes());
    go.extend_from_slice(&INFO_BLOCK_SIZE.to_be_bytes());
    send_option(s, OPT_GO, &go)?;
    let (mut size, mut tflags, mut max_request) = (None, 0u16, MAX_REQUEST);
    loop {
        match option_reply(s, OPT_GO)? {
            (REP_INFO, d) if d.len() >= 2 => match be_u16(&d) {
                INFO_EXPORT if d.len() >= 12 => {
                    size = Some(be_u64(&d[2..]));
                    tflags = be_u16(&d[10..]);
                }
                INFO_BLOCK_SIZE if d.len() >= 14 => {
                    let max = be_u32(&d[10..]);
                    if max >= SECTOR as u32 {
                        max_request = max_request.min(max);
                    }
                }
                _ => {}
            },
            (REP_INFO, _) => {}
            (REP_ACK, _) => break,
            (REP_ERR_UNKNOWN, d) => {
                return Err(Failure::Server(format!(
                    "the server has no export '{name}'{}",
                    message(&d)
                )))
            }
            (REP_ERR_UNSUP, _) => return Err(Failure::Server(
                "the server does not support NBD_OPT_GO (qemu-nbd, nbdkit and nbd-server 3.15+ do)"
                    .into(),
            )),
            (t, d) if t & REP_ERR != 0 => {
                return Err(Failure::Server(format!(
                    "the server refused the export (error {}){}",
                    t & !REP_ERR,
                    message(&d)
                )))
            }
            (t, _) => return Err(Failure::Link(format!("unexpected reply {t} to NBD_OPT_GO"))),
        }
    }
    let size =
        size.ok_or_else(|| Failure::Link("the server did not describe the export".into()))?;
    Ok(Export {
        size,
        flags: tflags,
        structured,
        max_request,
    })
}

fn send_option(s: &mut TcpStream, option: u32, data: &[u8]) -> io::Result<()> {
    let mut m = Vec::with_capacity(16 + data.len());
    m.extend_from_slice(&IHAVEOPT.to_be_bytes());
    m.extend_from_slice(&option.to_be_bytes());
    m.extend_from_slice(&(data.len() as u32).to_be_bytes());
    m.extend_from_slice(data);
    s.write_all(&m)
}

/// One option reply to `option`: its type and data (bounded).
fn option_reply(s: &mut TcpStream, option: u32) -> Result<(u32, Vec<u8>), Failure> {
    let h = read_n::<20>(s)?;
    if be_u64(&h) != OPTION_REPLY_MAGIC {
        return Err(Failure::Link("bad option reply magic".into()));
    }
    if be_u32(&h[8..]) != option {
        return Err(Failure::Link(format!(
            "a reply to option {} while asking {option}",
            be_u32(&h[8..])
        )));
    }
    let len = be_u32(&h[16..]);
    if len > MAX_OPTION_REPLY {
        return Err(Failure::Link(format!("an option reply of {len} bytes")));
    }
    let mut d = vec![0u8; len as usize];
    s.read_exact(&mut d)?;
    Ok((be_u32(&h[12..]), d))
}

/// An error reply's text, if it carries one.
fn message(d: &[u8]) -> String {
    let text = String::from_utf8_lossy(d);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {}", text.chars().take(200).collect::<String>())
    }
}

/// A request header (proto.md "Request message").
fn request(cmd: u16, cookie: u64, offset: u64, len: u32) -> [u8; 28] {
    let mut r = [0u8; 28];
    r[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
    r[6..8].copy_from_slice(&cmd.to_be_bytes());
    r[8..16].copy_from_slice(&cookie.to_be_bytes());
    r[16..24].copy_from_slice(&offset.to_be_bytes());
    r[24..28].copy_from_slice(&len.to_be_bytes());
    r
}

/// The errno names proto.md allows.
fn errno(e: u32) -> String {
    let name = match e {
        1 => "EPERM",
        5 => "EIO",
        12 => "ENOMEM",
        22 => "EINVAL",
        28 => "ENOSPC",
        75 => "EOVERFLOW",
        95 => "ENOTSUP",
        108 => "ESHUTDOWN",
        _ => "an unknown error",
    };
    format!("the server answered {name} ({e})")
}

/// Send one request and read its reply: the data of a read, nothing otherwise. A
/// write's reply is awaited only while `permit` holds.
fn exchange(
    s: &mut TcpStream,
    export: &Export,
    cookie: u64,
    (cmd, offset, len): (u16, u64, u32),
    data: &[u8],
    permit: Option<&WritePermit>,
) -> Result<Vec<u8>, Failure> {
    let mut m = Vec::with_capacity(28 + data.len());
    m.extend_from_slice(&request(cmd, cookie, offset, len));
    m.extend_from_slice(data);
    // A write's bytes may leave until its permit's end plus GRACE: past that, its
    // connection is aborted (and SO_LINGER 0 discards what the kernel still held). The
    // end is read again every RECHECK while the reply is awaited: a lease renewed
    // meanwhile (the FT node's acks go on while its disk thread waits here) extends the
    // wait, one cut short or revoked (a halt) ends it.
    let limit = || {
        permit.and_then(|p| p.end()).map(|end| {
            (end + GRACE)
                .saturating_duration_since(Instant::now())
                .min(ANSWER_TIMEOUT)
                .max(Duration::from_millis(1))
        })
    };
    let first = limit();
    if let Some(d) = first {
        s.set_write_timeout(Some(d))?;
        s.set_read_timeout(Some(d.min(RECHECK)))?;
    }
    let mut replied = s.write_all(&m);
    while replied.is_ok() {
        match s.peek(&mut [0u8; 1]) {
            Ok(_) => break,
            Err(e) if first.is_some() && e.kind() == io::ErrorKind::WouldBlock => {
                match permit.and_then(|p| p.end()) {
                    Some(end) if Instant::now() < end + GRACE => {
                        s.set_read_timeout(limit().map(|d| d.min(RECHECK)))?;
                    }
                    _ => replied = Err(e),
                }
            }
            Err(e) => replied = Err(e),
        }
    }
    if first.is_some() {
        s.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        s.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    }
    match replied {
        Err(e) if first.is_some() && e.kind() == io::ErrorKind::WouldBlock => {
            return Err(Failure::Link(
                "no answer before the write permit ran out: connection aborted".into(),
            ))
        }
        Err(e) => return Err(e.into()),
        Ok(()) => {}
    }
    let want = if cmd == CMD_READ { len as usize } else { 0 };
    let mut out = vec![0u8; want];
    let mut covered = 0usize;
    let mut error = None;
    loop {
        let magic = u32::from_be_bytes(read_n::<4>(s)?);
        match magic {
            SIMPLE_REPLY_MAGIC => {
                let h = read_n::<12>(s)?;
                if be_u64(&h[4..]) != cookie {
                    return Err(Failure::Link("a reply to a request never sent".into()));
                }
                let e = be_u32(&h);
                if e != 0 {
                    return Err(Failure::Server(errno(e)));
                }
                s.read_exact(&mut out)?;
                return Ok(out);
            }
            STRUCTURED_REPLY_MAGIC if export.structured => {
                let h = read_n::<16>(s)?;
                let (flags, kind) = (be_u16(&h), be_u16(&h[2..]));
                if be_u64(&h[4..]) != cookie {
                    return Err(Failure::Link("a reply to a request never sent".into()));
                }
                let plen = be_u32(&h[12..]) as usize;
                // No chunk is longer than the data asked for plus its header.
                if plen > want + 4096 {
                    return Err(Failure::Link(format!("a reply chunk of {plen} bytes")));
                }
                let mut p = vec![0u8; plen];
                s.read_exact(&mut p)?;
                match kind {
                    REPLY_TYPE_NONE => {}
                    REPLY_TYPE_OFFSET_DATA if plen >= 8 => {
                        let at = place(be_u64(&p), offset, plen - 8, want)?;
                        out[at..at + plen - 8].copy_from_slice(&p[8..]);
                        covered += plen - 8;
                    }
                    REPLY_TYPE_OFFSET_HOLE if plen == 12 => {
                        // A hole reads as zeroes, as `out` already is.
                        let n = be_u32(&p[8..]) as usize;
                        place(be_u64(&p), offset, n, want)?;
                        covered += n;
                    }
                    k if k & REPLY_TYPE_ERROR_BIT != 0 && plen >= 6 => {
                        let e = be_u32(&p);
                        let mlen = (be_u16(&p[4..]) as usize).min(plen - 6);
                        error = Some(format!("{}{}", errno(e), message(&p[6..6 + mlen])));
                    }
                    k => return Err(Failure::Link(format!("a reply chunk of unknown type {k}"))),
                }
                if flags & REPLY_FLAG_DONE != 0 {
                    break;
                }
            }
            m => return Err(Failure::Link(format!("bad reply magic {m:#x}"))),
        }
    }
    if let Some(e) = error {
        return Err(Failure::Server(e));
    }
    if covered != want {
        return Err(Failure::Link(format!(
            "the reply covered {covered} of {want} bytes"
        )));
    }
    Ok(out)
}

/// Where a reply chunk of `n` bytes at `at` falls in a read of `want` bytes at `offset`.
fn place(at: u64, offset: u64, n: usize, want: usize) -> Result<usize, Failure> {
    match at.checked_sub(offset) {
        Some(i) if i as usize <= want && n <= want - i as usize => Ok(i as usize),
        _ => Err(Failure::Link("a reply chunk outside the request".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_host_port_and_export() {
        let u = NbdUrl::parse("nbd://storage:10810/vm1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.export.as_str()),
            ("storage", 10810, "vm1")
        );
        let u = NbdUrl::parse("nbd://10.0.0.5/").unwrap();
        assert_eq!((u.port, u.export.as_str()), (DEFAULT_PORT, ""));
        let u = NbdUrl::parse("nbd://[::1]:7/a/b").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.export.as_str()),
            ("::1", 7, "a/b")
        );
        assert_eq!(u.to_string(), "nbd://[::1]:7/a/b");
        for bad in [
            "nbd://",
            "nbd://:5/x",
            "nbd://h:port/x",
            "http://h/x",
            "nbd://h:70000/x",
        ] {
            assert!(NbdUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reply_chunks_must_fall_inside_the_request() {
        assert_eq!(place(100, 100, 50, 50).ok(), Some(0));
        assert_eq!(place(120, 100, 30, 50).ok(), Some(20));
        assert!(place(99, 100, 1, 50).is_err());
        assert!(place(120, 100, 31, 50).is_err());
        assert!(place(u64::MAX, 0, 1, 50).is_err());
    }
}
