//! The gateway: a smoltcp interface, the host listeners and the forwarded connections.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ftvm_world::mio::unix::SourceFd;
use ftvm_world::mio::{Interest, Registry, Token};

use smoltcp::iface::{Config as IfaceConfig, Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{
    ArpPacket, EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, IpAddress,
    IpCidr, Ipv4Packet,
};

use crate::config::fmt_mac;
use crate::conn::Conn;
use crate::device::{QueueDevice, MAX_FRAME};
use crate::{Config, HostForward, Metrics, UserNetError};

/// Frames from the guest waiting for [`UserNet::poll`].
const RX_QUEUE_CAP: usize = 256;
/// Frames for the guest produced by one [`UserNet::poll`].
const TX_QUEUE_CAP: usize = 1024;
/// Gateway ports used for forwarded connections (IANA dynamic range).
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;
/// Rounds of relay + interface poll within one [`UserNet::poll`].
const POLL_ROUNDS: usize = 4;

/// A host listener and where its connections go.
#[derive(Debug)]
struct Listener {
    socket: TcpListener,
    guest: (Ipv4Addr, u16),
}

/// The host side of QEMU-style user-mode networking; see the crate documentation.
pub struct UserNet {
    cfg: Config,
    iface: Interface,
    device: QueueDevice,
    sockets: SocketSet<'static>,
    listeners: Vec<Listener>,
    conns: Vec<Conn>,
    next_port: u16,
    epoch: Instant,
    /// Time of the last poll, for frames processed early in `from_guest`.
    last_ts: smoltcp::time::Instant,
    guest_mac: Option<[u8; 6]>,
    metrics: Metrics,
    /// Where host sockets are watched for readiness ([`ftvm_world::Net::register`]):
    /// connections accepted later join it.
    watch: Option<(Registry, Token)>,
}

impl std::fmt::Debug for UserNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserNet")
            .field("gateway", &self.cfg.gateway_ip)
            .field("guest", &self.cfg.guest_ip)
            .field("connections", &self.conns.len())
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl UserNet {
    /// Sets up the gateway and binds a non-blocking host listener for every forward.
    pub fn new(cfg: Config) -> Result<UserNet, UserNetError> {
        cfg.validate()?;
        let listeners = cfg
            .forwards
            .iter()
            .map(|f| bind(f, cfg.guest_ip))
            .collect::<Result<Vec<_>, _>>()?;

        let mut device = QueueDevice::new(RX_QUEUE_CAP, TX_QUEUE_CAP);
        let mac = EthernetAddress(cfg.gateway_mac);
        let mut icfg = IfaceConfig::new(HardwareAddress::Ethernet(mac));
        // Seeds TCP initial sequence numbers; host randomness is fine in a world backend.
        let seed = RandomState::new().build_hasher().finish();
        icfg.random_seed = seed;
        let mut iface = Interface::new(icfg, &mut device, smoltcp::time::Instant::ZERO);
        let cidr = IpCidr::new(IpAddress::Ipv4(cfg.gateway_ip), cfg.prefix_len);
        iface.update_ip_addrs(|addrs| {
            // A fresh interface has room for this one address.
            let _ = addrs.push(cidr);
        });
        let span = EPHEMERAL.end() - EPHEMERAL.start();
        let next_port = EPHEMERAL.start() + (seed % u64::from(span)) as u16;
        tracing::info!(
            gateway = %cfg.gateway_ip, mac = fmt_mac(cfg.gateway_mac), guest = %cfg.guest_ip,
            forwards = listeners.len(), "user network up"
        );
        Ok(UserNet {
            cfg,
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            listeners,
            conns: Vec::new(),
            next_port,
            epoch: Instant::now(),
            last_ts: smoltcp::time::Instant::ZERO,
            guest_mac: None,
            metrics: Metrics::default(),
            watch: None,
        })
    }

    /// The host addresses actually bound, one per forward in configuration order
    /// (this is how to learn the port chosen for a forward asking for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.socket.local_addr().ok())
            .collect()
    }

    /// The guest's MAC address, once a frame from the guest's IP has been seen.
    pub fn guest_mac(&self) -> Option<[u8; 6]> {
        self.guest_mac
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Forwarded connections currently open.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Takes a frame the guest transmitted; it is processed by the next [`UserNet::poll`],
    /// or at once when many frames are waiting. Malformed or foreign frames are counted
    /// and dropped; so are frames beyond the bounded queues when the caller stops polling.
    pub fn from_guest(&mut self, frame: &[u8]) {
        self.metrics.frames_from_guest += 1;
        match self.classify(frame) {
            Frame::Malformed => self.metrics.frames_malformed += 1,
            Frame::Ignored => self.metrics.frames_ignored += 1,
            Frame::Ours => {
                if !self.device.push_rx(frame) {
                    // A burst: feed the waiting frames to smoltcp to make room.
                    self.ingress();
                    if !self.device.push_rx(frame) {
                        self.metrics.frames_dropped += 1;
                    }
                }
            }
        }
    }

    /// Processes queued guest frames until none are left or replies have no room.
    fn ingress(&mut self) {
        use smoltcp::iface::PollIngressSingleResult as R;
        let (ts, dev, socks) = (self.last_ts, &mut self.device, &mut self.sockets);
        // Bounded: each round consumes a queued frame or stops.
        for _ in 0..RX_QUEUE_CAP {
            if self.iface.poll_ingress_single(ts, dev, socks) == R::None {
                break;
            }
        }
    }

    /// Accepts host connections, moves bytes both ways and returns the frames to deliver
    /// to the guest, in order. At most a bounded number of frames is returned per call.
    pub fn poll(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let ts = self.timestamp(now);
        self.last_ts = ts;
        self.accept();
        for _ in 0..POLL_ROUNDS {
            let moved = self.relay_all();
            let changed = self.iface.poll(ts, &mut self.device, &mut self.sockets);
            let moved_after = self.relay_all();
            if moved == 0 && moved_after == 0 && changed == smoltcp::iface::PollResult::None {
                break;
            }
        }
        self.reap();
        let frames: Vec<Vec<u8>> = self.device.tx.drain(..).collect();
        self.metrics.frames_to_guest += frames.len() as u64;
        frames
    }

    /// How long until [`UserNet::poll`] should run again: smoltcp's next timer, but no
    /// longer than `Config::host_poll_interval` so host sockets keep being serviced.
    pub fn poll_delay(&mut self, now: Instant) -> Duration {
        let ts = self.timestamp(now);
        if !self.device.rx.is_empty() {
            return Duration::ZERO;
        }
        let smol = self
            .iface
            .poll_delay(ts, &self.sockets)
            .map_or(Duration::MAX, |d| Duration::from_micros(d.total_micros()));
        smol.min(self.cfg.host_poll_interval)
    }

    /// How long until [`UserNet::poll`] must run for smoltcp's own timers (zero while
    /// guest frames wait); `None`: none is armed. With the host sockets watched for
    /// readiness this is the only deadline.
    pub fn timer_delay(&mut self, now: Instant) -> Option<Duration> {
        let ts = self.timestamp(now);
        if !self.device.rx.is_empty() {
            return Some(Duration::ZERO);
        }
        self.iface
            .poll_delay(ts, &self.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
    }

    /// Watch the host listeners and connections with `registry` under `token`; those
    /// accepted later are watched too.
    pub fn watch(&mut self, registry: &Registry, token: Token) -> std::io::Result<()> {
        let registry = registry.try_clone()?;
        for l in &self.listeners {
            registry.register(
                &mut SourceFd(&l.socket.as_raw_fd()),
                token,
                Interest::READABLE,
            )?;
        }
        for c in &self.conns {
            if let Some(fd) = c.host_fd() {
                registry.register(
                    &mut SourceFd(&fd),
                    token,
                    Interest::READABLE | Interest::WRITABLE,
                )?;
            }
        }
        self.watch = Some((registry, token));
        Ok(())
    }

    /// Resets every forwarded connection (RSTs reach the guest with the next poll).
    pub fn abort_all(&mut self) {
        for conn in &mut self.conns {
            conn.abort(self.sockets.get_mut::<tcp::Socket>(conn.handle));
        }
    }

    fn timestamp(&self, now: Instant) -> smoltcp::time::Instant {
        let d = now.saturating_duration_since(self.epoch);
        smoltcp::time::Instant::from_micros(d.as_micros().min(i64::MAX as u128) as i64)
    }

    /// Sorts a guest frame before smoltcp sees it, and learns the guest's MAC.
    fn classify(&mut self, frame: &[u8]) -> Frame {
        if frame.len() > MAX_FRAME {
            return Frame::Malformed;
        }
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return Frame::Malformed;
        };
        let dst = eth.dst_addr();
        if dst != EthernetAddress(self.cfg.gateway_mac) && !dst.is_broadcast() {
            return Frame::Ignored;
        }
        let src = eth.src_addr();
        let sender = match eth.ethertype() {
            EthernetProtocol::Arp => match ArpPacket::new_checked(eth.payload()) {
                Ok(arp) => <[u8; 4]>::try_from(arp.source_protocol_addr())
                    .ok()
                    .map(Ipv4Addr::from),
                _ => return Frame::Malformed,
            },
            EthernetProtocol::Ipv4 => match Ipv4Packet::new_checked(eth.payload()) {
                Ok(ip) if ip.verify_checksum() => Some(ip.src_addr()),
                _ => return Frame::Malformed,
            },
            _ => return Frame::Ignored,
        };
        if sender == Some(self.cfg.guest_ip) && src.is_unicast() && self.guest_mac != Some(src.0) {
            tracing::info!(mac = fmt_mac(src.0), "guest MAC learned");
            self.guest_mac = Some(src.0);
        }
        Frame::Ours
    }

    /// Accepts waiting host connections and starts their guest side.
    fn accept(&mut self) {
        for i in 0..self.listeners.len() {
            // Bounded: each round either accepts one connection or stops.
            for _ in 0..self.cfg.max_connections + 1 {
                let (stream, peer) = match self.listeners[i].socket.accept() {
                    Ok(s) => s,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        break;
                    }
                };
                self.metrics.connections_accepted += 1;
                if self.conns.len() >= self.cfg.max_connections {
                    self.metrics.connections_rejected += 1;
                    tracing::warn!(%peer, "too many forwarded connections; closing");
                    continue;
                }
                if let Err(e) = stream.set_nonblocking(true) {
                    tracing::warn!(%peer, "cannot make host socket non-blocking: {e}");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let guest = self.listeners[i].guest;
                self.connect(stream, guest);
            }
        }
    }

    fn connect(&mut self, stream: std::net::TcpStream, guest: (Ipv4Addr, u16)) {
        let n = self.cfg.buffer_size;
        let mut sock = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; n]),
            tcp::SocketBuffer::new(vec![0; n]),
        );
        sock.set_nagle_enabled(false);
        sock.set_timeout(Some(smoltcp::time::Duration::from_micros(
            self.cfg.guest_timeout.as_micros().min(u64::MAX as u128) as u64,
        )));
        let port = self.alloc_port();
        let remote = (IpAddress::Ipv4(guest.0), guest.1);
        let local = (IpAddress::Ipv4(self.cfg.gateway_ip), port);
        if let Err(e) = sock.connect(self.iface.context(), remote, local) {
            tracing::warn!("cannot start guest connection: {e}");
            return;
        }
        if let Some((registry, token)) = &self.watch {
            // Closing the stream later removes it from the registry.
            let watched = registry.register(
                &mut SourceFd(&stream.as_raw_fd()),
                *token,
                Interest::READABLE | Interest::WRITABLE,
            );
            if let Err(e) = watched {
                tracing::warn!("cannot watch a forwarded connection: {e}; closing it");
                return;
            }
        }
        let handle = self.sockets.add(sock);
        self.conns.push(Conn::new(stream, handle, port));
    }

    /// The next gateway port not used by an open connection.
    fn alloc_port(&mut self) -> u16 {
        // At most max_connections ports are taken, far fewer than the range holds.
        loop {
            let p = self.next_port;
            self.next_port = if p == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                p + 1
            };
            if !self.conns.iter().any(|c| c.local_port == p) {
                return p;
            }
        }
    }

    fn relay_all(&mut self) -> usize {
        let mut moved = 0;
        for conn in &mut self.conns {
            let sock = self.sockets.get_mut::<tcp::Socket>(conn.handle);
            moved += conn.relay(sock, &mut self.metrics);
        }
        moved
    }

    /// Releases finished connections.
    fn reap(&mut self) {
        let sockets = &mut self.sockets;
        let metrics = &mut self.metrics;
        self.conns.retain(|conn| {
            if !conn.finished(sockets.get::<tcp::Socket>(conn.handle)) {
                return true;
            }
            sockets.remove(conn.handle);
            metrics.connections_closed += 1;
            false
        });
    }
}

/// The gateway as the guest NIC's network (`ftvm run --net user`).
impl ftvm_world::Net for UserNet {
    fn send(&mut self, frame: &[u8]) {
        self.from_guest(frame);
    }

    fn recv(&mut self, now: Instant) -> Vec<Vec<u8>> {
        self.poll(now)
    }

    fn timer(&mut self, now: Instant) -> Option<Duration> {
        self.timer_delay(now)
    }

    fn register(&mut self, registry: &Registry, token: Token) -> std::io::Result<()> {
        self.watch(registry, token)
    }
}

/// What [`UserNet::classify`] made of a guest frame.
enum Frame {
    Malformed,
    Ignored,
    Ours,
}

fn bind(f: &HostForward, guest_ip: Ipv4Addr) -> Result<Listener, UserNetError> {
    let err = |source| UserNetError::Listen {
        addr: f.host,
        guest_port: f.guest_port,
        source,
    };
    let socket = TcpListener::bind(f.host).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    Ok(Listener {
        socket,
        guest: (f.guest_addr.unwrap_or(guest_ip), f.guest_port),
    })
}
