//! The switch: VM ports, the learning table, the gateway port, and the event loop.

use std::collections::{BTreeMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ftvm_usernet::UserNet;
use ftvm_world::mio::unix::SourceFd;
use ftvm_world::mio::{Events, Interest, Poll, Registry, Token};
use ftvm_world::tls::Credentials;

use crate::metrics::{add, Metrics};
use crate::port::{Allowed, Closed, Port};
use crate::table::{is_group, Learned, Mac, MacTable, PortId, GATEWAY};
use crate::transport::Transport;
use crate::wire::{self, MAX_MESSAGE};
use crate::SwitchError;

/// Bytes read from one port per round, so that one busy port cannot starve the others.
const READ_BUDGET: usize = 256 * 1024;
/// Length of an Ethernet header: destination, source, type (IEEE 802.3 §3.1.1).
const ETH_HEADER: usize = 14;
/// Every watched socket reports under this token: any readiness means one more round.
const SOCKETS: Token = Token(0);

/// Bounds of the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Most VM connections at once (with or without hello); more are closed at once.
    pub max_ports: usize,
    /// Bytes queued per port for a peer that reads slowly; further frames are dropped.
    pub port_queue_bytes: usize,
    /// Most learned MAC addresses; unknown ones beyond are flooded, not learned.
    pub max_macs: usize,
    /// A connection that has not sent its hello after this long is closed.
    pub hello_timeout: Duration,
    /// A connection whose TLS handshake has not finished after this long is closed
    /// (a slow-loris client holds no slot for longer).
    pub handshake_timeout: Duration,
    /// Longest wait of [`Switch::run_until`] between looks at its stop flag when idle
    /// (traffic, the switch's own deadlines and signals wake it sooner).
    pub idle_sleep: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_ports: 16,
            port_queue_bytes: 1 << 20,
            max_macs: 1024,
            hello_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            idle_sleep: Duration::from_millis(100),
        }
    }
}

/// What [`Switch::ports`] tells about a connected VM port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortInfo {
    /// The port's id.
    pub id: PortId,
    /// The name from the hello.
    pub name: String,
    /// Over TLS: the node its certificate names.
    pub node: Option<String>,
    /// Over TLS: the VM its certificate is for.
    pub vm: Option<String>,
    /// Frames refused because their source address is not its VM's.
    pub refused: u64,
    /// The VM process's address.
    pub peer: SocketAddr,
    /// MAC addresses learned on this port.
    pub macs: Vec<Mac>,
    /// Bytes waiting to be written to the VM process.
    pub queued_bytes: usize,
    /// Frames dropped because the queue was full.
    pub dropped: u64,
}

/// A learning Ethernet switch whose ports are TCP connections from VM processes, with
/// the user-mode gateway as one more port; see the crate documentation.
pub struct Switch {
    listener: TcpListener,
    usernet: UserNet,
    gateway_mac: Mac,
    ports: BTreeMap<PortId, Port>,
    table: MacTable,
    next_id: u64,
    limits: Limits,
    metrics: Arc<Metrics>,
    chunk: Vec<u8>,
    /// Frames for addresses whose port closed, kept a moment for the port that claims
    /// the address next: a VM's backup going live announces the guest's MAC a few
    /// milliseconds after its primary died, and a frame lost in between would cost the
    /// sender a retransmission timeout (a second for the gateway's TCP).
    orphans: BTreeMap<Mac, Orphan>,
    /// The frames delivered to each VM address in the last [`RECENT`]: when its port
    /// dies, or the address moves to another port, they may be sitting unread in the
    /// dead process's socket, so the port that claims the address next gets them again
    /// (TCP and ARP shrug off duplicates).
    recent: BTreeMap<Mac, VecDeque<(Instant, Vec<u8>)>>,
    /// Where sockets are watched for readiness ([`Switch::run_until`]); ports
    /// accepted later join it.
    watch: Option<Registry>,
    /// Over TLS: the switch's credentials, and the MAC address of each VM.
    tls: Option<(Arc<Credentials>, BTreeMap<String, Mac>)>,
}

/// Frames held for an address whose port closed.
struct Orphan {
    since: Instant,
    frames: VecDeque<Vec<u8>>,
}

/// How long frames for an orphaned address are held, and how many.
const ORPHAN_HOLD: Duration = Duration::from_secs(1);
const ORPHAN_FRAMES: usize = 256;
/// How far back frames delivered to a VM address are kept for a re-delivery: a host
/// that dies silently (no FIN, no RST) keeps its port open here until the backup's
/// failure detection (`--timeout-ms`, 300 by default) and go-live are over, and every
/// frame written to it meanwhile is lost with it.
const RECENT: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("addr", &self.listener.local_addr().ok())
            .field("ports", &self.ports.len())
            .field("macs", &self.table.count())
            .finish_non_exhaustive()
    }
}

impl Switch {
    /// Listens for VM processes on `addr` and starts the gateway with its host forwards.
    pub fn bind(addr: SocketAddr, usernet: ftvm_usernet::Config) -> Result<Switch, SwitchError> {
        Switch::with_limits(addr, usernet, Limits::default())
    }

    /// Like [`Switch::bind`], with other bounds.
    pub fn with_limits(
        addr: SocketAddr,
        usernet: ftvm_usernet::Config,
        limits: Limits,
    ) -> Result<Switch, SwitchError> {
        let err = |source| SwitchError::Bind { addr, source };
        let listener = TcpListener::bind(addr).map_err(err)?;
        listener.set_nonblocking(true).map_err(err)?;
        let gateway_mac = usernet.gateway_mac;
        let usernet = UserNet::new(usernet)?;
        let mut table = MacTable::new(limits.max_macs);
        table.pin(gateway_mac, GATEWAY);
        tracing::info!(addr = ?listener.local_addr().ok(), "switch listening");
        Ok(Switch {
            listener,
            usernet,
            gateway_mac,
            ports: BTreeMap::new(),
            table,
            next_id: GATEWAY.0 + 1,
            limits,
            metrics: Arc::default(),
            chunk: vec![0; 64 * 1024],
            orphans: BTreeMap::new(),
            recent: BTreeMap::new(),
            watch: None,
            tls: None,
        })
    }

    /// Serve ports over TLS 1.3 only ([`crate::SWITCH_ALPN`]), each authenticated by its
    /// certificate from the cluster CA, with `creds` as the switch's own: a port whose
    /// certificate is for a VM of `macs` may send only with that VM's MAC address as
    /// source, and any other port with none (see the crate documentation).
    pub fn with_tls(
        mut self,
        creds: Arc<Credentials>,
        macs: BTreeMap<String, Mac>,
    ) -> Result<Switch, SwitchError> {
        let mut seen: BTreeMap<Mac, &str> = BTreeMap::new();
        for (vm, mac) in &macs {
            if is_group(mac) || *mac == self.gateway_mac || *mac == [0; 6] {
                return Err(SwitchError::Assignment(format!(
                    "{} cannot be VM {vm}'s MAC address (a group address, zero or the gateway's)",
                    fmt_mac(mac)
                )));
            }
            if let Some(other) = seen.insert(*mac, vm) {
                return Err(SwitchError::Assignment(format!(
                    "VMs {other} and {vm} cannot share the MAC address {}",
                    fmt_mac(mac)
                )));
            }
        }
        self.tls = Some((creds, macs));
        Ok(self)
    }

    /// The address VM processes connect to (useful after binding port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener has an address.
        self.listener.local_addr().expect("bound listener")
    }

    /// The host addresses of the gateway's forwards, in configuration order.
    pub fn hostfwd_addrs(&self) -> Vec<SocketAddr> {
        self.usernet.local_addrs()
    }

    /// The counters, readable from other threads while the switch runs.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// The gateway.
    pub fn usernet(&self) -> &UserNet {
        &self.usernet
    }

    /// The VM ports that completed their hello, in id order.
    pub fn ports(&self) -> Vec<PortInfo> {
        self.ports
            .iter()
            .filter_map(|(&id, p)| {
                Some(PortInfo {
                    id,
                    name: p.name.clone()?,
                    node: p.credential.as_ref().map(|c| c.node.clone()),
                    vm: p.credential.as_ref().and_then(|c| c.vm.clone()),
                    refused: p.refused,
                    peer: p.peer,
                    macs: self.table.macs_of(id),
                    queued_bytes: p.outbox.queued(),
                    dropped: p.dropped,
                })
            })
            .collect()
    }

    /// The port frames for `mac` go to, if learned ([`GATEWAY`] for the gateway's MAC).
    pub fn lookup(&self, mac: &Mac) -> Option<PortId> {
        self.table.lookup(mac)
    }

    /// Runs rounds of [`Switch::poll`] until `stop` is set. Between idle rounds it waits
    /// for readiness (issue 11): the listener, every port and the gateway's host
    /// sockets are watched, and the timeout is the switch's next deadline.
    pub fn run_until(&mut self, stop: &AtomicBool) -> Result<(), SwitchError> {
        let mut poll = Poll::new().map_err(SwitchError::Io)?;
        self.watch(poll.registry()).map_err(SwitchError::Io)?;
        let mut events = Events::with_capacity(64);
        while !stop.load(Ordering::Relaxed) {
            let wait = self.poll(Instant::now()).min(self.limits.idle_sleep);
            if wait.is_zero() {
                continue;
            }
            match poll.poll(&mut events, Some(wait)) {
                Ok(()) => {}
                // A signal: look at the stop flag.
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(SwitchError::Io(e)),
            }
        }
        Ok(())
    }

    /// Watch the listener, the ports and the gateway with `registry`.
    fn watch(&mut self, registry: &Registry) -> std::io::Result<()> {
        let registry = registry.try_clone()?;
        registry.register(
            &mut SourceFd(&self.listener.as_raw_fd()),
            SOCKETS,
            Interest::READABLE,
        )?;
        for port in self.ports.values() {
            port.watch(&registry, SOCKETS)?;
        }
        self.usernet.watch(&registry, SOCKETS)?;
        self.watch = Some(registry);
        Ok(())
    }

    /// One round: accepts VM processes, switches the frames that arrived, runs the
    /// gateway and writes what the sockets take. Returns how long the switch may wait
    /// before the next round: zero when it did work, else until its next deadline (the
    /// gateway's timers, a hello or held frames expiring). Traffic comes sooner: with
    /// the sockets watched ([`Switch::run_until`]) readiness reports it.
    pub fn poll(&mut self, now: Instant) -> Duration {
        let mut busy = self.accept(now);
        self.expire_hellos(now);
        self.orphans
            .retain(|_, o| now.duration_since(o.since) < ORPHAN_HOLD);
        let ids: Vec<PortId> = self.ports.keys().copied().collect();
        for id in ids {
            let Some(port) = self.ports.get_mut(&id) else {
                continue;
            };
            let named = port.name.is_some();
            let (frames, closed) = port.receive(&mut self.chunk, READ_BUDGET);
            if !named && port.name.is_some() {
                add(&self.metrics.ports_connected, 1);
            }
            busy |= !frames.is_empty() || closed.is_some();
            if port.allowed == Allowed::Pending {
                if let (Some(c), Some((_, macs))) = (&port.credential, &self.tls) {
                    port.allowed = match c.vm.as_ref().and_then(|vm| macs.get(vm)) {
                        Some(&mac) => Allowed::Only(mac),
                        None => Allowed::Nothing,
                    };
                    add(&self.metrics.ports_authenticated, 1);
                    match port.allowed {
                        Allowed::Only(mac) => {
                            tracing::info!(port = id.0, peer = %port.peer, node = %c.node, vm = ?c.vm, mac = %fmt_mac(&mac), "port authenticated")
                        }
                        _ => {
                            tracing::warn!(port = id.0, peer = %port.peer, node = %c.node, vm = ?c.vm, "port authenticated, but its certificate's VM has no MAC address here: it may send nothing")
                        }
                    }
                }
            }
            for f in frames {
                self.route(id, f);
            }
            if let Some(why) = closed {
                self.remove(id, &why);
            }
        }
        let from_gateway = self.usernet.poll(now);
        busy |= !from_gateway.is_empty();
        for f in from_gateway {
            self.route(GATEWAY, f);
        }
        let mut broken = Vec::new();
        for (&id, port) in &mut self.ports {
            match port.flush() {
                Ok(n) => busy |= n > 0,
                Err(why) => broken.push((id, why)),
            }
        }
        for (id, why) in broken {
            self.remove(id, &why);
        }
        if busy {
            Duration::ZERO
        } else {
            self.next_deadline(now)
        }
    }

    /// How long until the switch has something to do without any traffic.
    fn next_deadline(&mut self, now: Instant) -> Duration {
        let hello = self.ports.values().filter(|p| p.name.is_none()).map(|p| {
            let limit = match p.handshaking() {
                true => self.limits.handshake_timeout.min(self.limits.hello_timeout),
                false => self.limits.hello_timeout,
            };
            (p.accepted + limit).saturating_duration_since(now)
        });
        let orphan = self
            .orphans
            .values()
            .map(|o| (o.since + ORPHAN_HOLD).saturating_duration_since(now));
        let gateway = self.usernet.timer_delay(now);
        hello
            .chain(orphan)
            .chain(gateway)
            .min()
            .unwrap_or(Duration::MAX)
    }

    /// Accepts waiting connections; true if there were any.
    fn accept(&mut self, now: Instant) -> bool {
        let mut any = false;
        // Bounded: each round accepts one connection or stops.
        for _ in 0..=self.limits.max_ports {
            let (stream, peer) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    break;
                }
            };
            any = true;
            if self.ports.len() >= self.limits.max_ports {
                add(&self.metrics.ports_rejected, 1);
                tracing::warn!(%peer, "too many ports; closing the connection");
                continue;
            }
            if let Err(e) = stream.set_nonblocking(true) {
                tracing::warn!(%peer, "cannot make the socket non-blocking: {e}");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let link = match &self.tls {
                None => Transport::Plain(stream),
                Some((creds, _)) => match creds.server_connection() {
                    Ok(conn) => Transport::Tls {
                        sock: stream,
                        conn: Box::new(conn.into()),
                    },
                    Err(e) => {
                        tracing::warn!(%peer, "cannot start TLS: {e}; closing the connection");
                        continue;
                    }
                },
            };
            let id = PortId(self.next_id);
            self.next_id += 1;
            let port = Port::new(link, peer, now, self.limits.port_queue_bytes);
            if let Some(registry) = &self.watch {
                if let Err(e) = port.watch(registry, SOCKETS) {
                    tracing::warn!(%peer, "cannot watch the connection: {e}; closing it");
                    continue;
                }
            }
            self.ports.insert(id, port);
        }
        any
    }

    /// Close the connections whose TLS handshake or hello is late.
    fn expire_hellos(&mut self, now: Instant) {
        let late: Vec<(PortId, Closed)> = self
            .ports
            .iter()
            .filter(|(_, p)| p.name.is_none())
            .filter_map(|(&id, p)| {
                let age = now.duration_since(p.accepted);
                if p.handshaking() && age > self.limits.handshake_timeout {
                    Some((id, Closed::HandshakeTimeout))
                } else if age > self.limits.hello_timeout {
                    Some((id, Closed::HelloTimeout))
                } else {
                    None
                }
            })
            .collect();
        for (id, why) in late {
            self.remove(id, &why);
        }
    }

    /// Closes a port and forgets the addresses learned on it.
    fn remove(&mut self, id: PortId, why: &Closed) {
        let Some(mut port) = self.ports.remove(&id) else {
            return;
        };
        // Frames the port may never have read are held for whichever port claims its
        // addresses next: the recent ones (written to the socket, perhaps unread) and
        // those still queued here.
        let mut unsent: Vec<Vec<u8>> = port
            .outbox
            .take_unsent()
            .into_iter()
            .filter(|m| m.len() > wire::HEADER)
            .map(|m| m[wire::HEADER..].to_vec())
            .collect();
        let now = Instant::now();
        for mac in self.table.macs_of(id) {
            let mut frames = self.take_recent(&mac, now);
            // Queued frames are in `recent` too, unless older than the window.
            for f in unsent.extract_if(.., |f| f[0..6] == mac) {
                if !frames.contains(&f) {
                    frames.push_back(f);
                }
            }
            while frames.len() > ORPHAN_FRAMES {
                frames.pop_front();
            }
            self.orphans.insert(mac, Orphan { since: now, frames });
        }
        let forgotten = self.table.forget_port(id);
        add(&self.metrics.macs_forgotten, forgotten as u64);
        add(&self.metrics.ports_closed, 1);
        match why {
            Closed::Protocol(_) => add(&self.metrics.protocol_errors, 1),
            Closed::Refused(_) => add(&self.metrics.ports_refused, 1),
            Closed::HandshakeTimeout => add(&self.metrics.handshake_timeouts, 1),
            _ => {}
        }
        match why {
            Closed::Refused(_) | Closed::HandshakeTimeout => {
                tracing::warn!(port = id.0, peer = %port.peer, "connection closed: {why}")
            }
            _ => {
                tracing::info!(port = id.0, name = ?port.name, peer = %port.peer, forgotten, "port closed: {why}")
            }
        }
    }

    /// Switches one frame that arrived on port `from` (IEEE 802.1D §7.7: learn the source,
    /// forward to the known port of the destination, else flood).
    fn route(&mut self, from: PortId, frame: Vec<u8>) {
        let m = Arc::clone(&self.metrics);
        add(&m.frames_in, 1);
        if frame.len() < ETH_HEADER || frame.len() > MAX_MESSAGE {
            add(&m.frames_malformed, 1);
            return;
        }
        let dst: Mac = frame[0..6].try_into().expect("6 bytes");
        let src: Mac = frame[6..12].try_into().expect("6 bytes");
        if is_group(&src) {
            add(&m.frames_malformed, 1);
            return;
        }
        if from != GATEWAY && !self.may_send(from, &frame, &src) {
            return;
        }
        match self.table.learn(src, from) {
            Learned::Known => {}
            Learned::New => {
                add(&m.macs_learned, 1);
                tracing::debug!(port = from.0, mac = %fmt_mac(&src), "MAC learned");
                if let Some(o) = self.orphans.remove(&src) {
                    tracing::info!(port = from.0, mac = %fmt_mac(&src), held = o.frames.len(), "MAC claimed again: delivering held frames");
                    for f in o.frames {
                        self.deliver(from, f);
                    }
                }
            }
            Learned::Moved(old) => {
                add(&m.macs_moved, 1);
                // The old port may be a host that died silently, its socket still
                // open here: what it was sent lately may never have been read.
                let recent = self.take_recent(&src, Instant::now());
                tracing::info!(from = old.0, to = from.0, mac = %fmt_mac(&src), resent = recent.len(), "MAC moved: delivering recent frames again");
                for f in recent {
                    self.deliver(from, f);
                }
            }
            Learned::Refused if src == self.gateway_mac => {
                // A VM port sending as the gateway.
                add(&m.frames_malformed, 1);
                return;
            }
            Learned::Refused => add(&m.macs_refused, 1),
        }
        let known = if is_group(&dst) {
            None
        } else {
            self.table.lookup(&dst)
        };
        match known {
            Some(to) if to == from => add(&m.frames_filtered, 1),
            Some(to) => {
                if to != GATEWAY {
                    self.remember(dst, &frame);
                }
                self.deliver(to, frame)
            }
            None => {
                if let Some(o) = self.orphans.get_mut(&dst) {
                    if o.frames.len() < ORPHAN_FRAMES {
                        o.frames.push_back(frame.clone());
                    }
                }
                self.flood(from, frame)
            }
        }
    }

    /// Whether port `from` may send `frame` with source `src`: over TLS only its VM's
    /// MAC address, as the frame's source and, in an ARP packet, as the sender's
    /// hardware address (RFC 826; else it could poison the gateway's ARP cache). A
    /// refused frame is counted and, the first time per port, logged.
    fn may_send(&mut self, from: PortId, frame: &[u8], src: &Mac) -> bool {
        let Some(port) = self.ports.get_mut(&from) else {
            return false;
        };
        let ok = match port.allowed {
            Allowed::Any => true,
            Allowed::Only(mac) => *src == mac && arp_sender(frame).is_none_or(|s| s == mac),
            Allowed::Nothing | Allowed::Pending => false,
        };
        if !ok {
            add(&self.metrics.frames_refused, 1);
            if port.refused == 0 {
                let c = port.credential.as_ref();
                tracing::warn!(
                    port = from.0,
                    peer = %port.peer,
                    node = ?c.map(|c| &c.node),
                    vm = ?c.and_then(|c| c.vm.as_ref()),
                    src = %fmt_mac(src),
                    "refusing frames from a source address that is not this port's VM's (said once per port)"
                );
            }
            port.refused += 1;
        }
        ok
    }

    /// The frames delivered to `mac` within [`RECENT`] of `now`, forgotten here.
    fn take_recent(&mut self, mac: &Mac, now: Instant) -> VecDeque<Vec<u8>> {
        self.recent
            .remove(mac)
            .unwrap_or_default()
            .into_iter()
            .filter(|(t, _)| now.duration_since(*t) < RECENT)
            .map(|(_, f)| f)
            .collect()
    }

    /// Keep a copy of a frame for a VM address (see `recent`).
    fn remember(&mut self, dst: Mac, frame: &[u8]) {
        let now = Instant::now();
        let q = self.recent.entry(dst).or_default();
        while q
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) >= RECENT || q.len() >= ORPHAN_FRAMES)
        {
            q.pop_front();
        }
        q.push_back((now, frame.to_vec()));
    }

    fn deliver(&mut self, to: PortId, frame: Vec<u8>) {
        if to == GATEWAY {
            add(&self.metrics.frames_out, 1);
            self.usernet.from_guest(&frame);
            return;
        }
        if let Some(port) = self.ports.get_mut(&to) {
            let ok = port.offer(wire::encode(&frame));
            add(&self.metrics.frames_out, u64::from(ok));
            add(&self.metrics.frames_dropped, u64::from(!ok));
        }
    }

    fn flood(&mut self, from: PortId, frame: Vec<u8>) {
        add(&self.metrics.frames_flooded, 1);
        let message = wire::encode(&frame);
        let dst: Mac = frame[0..6].try_into().expect("6 bytes");
        // Over TLS a unicast frame for a VM's address (unknown here just now: its port
        // is gone or not yet back) goes to that VM's ports only.
        let owner = self
            .tls
            .as_ref()
            .filter(|_| !is_group(&dst))
            .and_then(|(_, macs)| macs.iter().find(|(_, m)| **m == dst))
            .map(|(vm, _)| vm.clone());
        for (&id, port) in &mut self.ports {
            if id == from || port.name.is_none() {
                continue;
            }
            if let Some(vm) = &owner {
                if port.credential.as_ref().and_then(|c| c.vm.as_ref()) != Some(vm) {
                    continue;
                }
            }
            let ok = port.offer(message.clone());
            add(&self.metrics.frames_out, u64::from(ok));
            add(&self.metrics.frames_dropped, u64::from(!ok));
        }
        // The gateway takes only broadcasts and frames to its own (pinned) MAC.
        if from != GATEWAY && frame[0..6] == [0xff; 6] {
            add(&self.metrics.frames_out, 1);
            self.usernet.from_guest(&frame);
        }
    }
}

/// The sender hardware address of an Ethernet/IPv4 ARP packet (RFC 826), if `frame`
/// is one.
fn arp_sender(frame: &[u8]) -> Option<Mac> {
    if frame.get(12..14)? != [0x08, 0x06] {
        return None;
    }
    frame.get(ETH_HEADER + 8..ETH_HEADER + 14)?.try_into().ok()
}

/// Formats a MAC address as `52:54:00:12:34:56`.
pub fn fmt_mac(mac: &Mac) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}
