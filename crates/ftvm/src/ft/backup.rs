//! The backup (DESIGN.md §4): join a running primary by live state transfer, then
//! follow its log as the adapter around the FT core's [`ftvm_replica::Backup`]: the
//! channel reader feeds it entries (and sends its acks at once), the replay reports
//! what it applied and produced, and the core decides when the primary is lost, when
//! to ask the arbiter, and how to go live ([`ftvm_replica::Backup::go_live`]: the
//! requests the log never answered, including those the final catch-up produced, are
//! carried out; frames whose release is uncertain are sent again). Plugging into this
//! host's world after winning is retried until it works. Then this node is the
//! primary and waits for a new backup.

use super::primary::{PairDisk, Primary};
use super::redelivery::{Replayed, SkipReplayed};
use super::status::{Status, StatusFile};
use super::wire::{self, Hello, Message, Offer};
use super::{run_live, Answer, Asker, Clock, Halted, Node, Security};
use crate::cli::BackupArgs;
use crate::driver::{Backends, Driver};
use crate::replica::config_digest;
use crate::replica::replayer::{Applied, Replay};
use crate::run::GUEST_MAC;
use anyhow::{bail, Context, Result};
use ftvm_arbiter::ArbiterError;
use ftvm_log::{Entry, EntryKind, LogError, LogReader};
use ftvm_machine::devices::virtio::BlkRequestKind;
use ftvm_machine::{BootConfig, Event, Machine, OutputKind};
use ftvm_replica::{Backup, BackupAction, BackupPhase, GoLive, OutputClass, RequestId, Seq, Time};
use ftvm_world::disk::{DiskImage, DiskMode, WritePermit};
use ftvm_world::entropy::HostEntropy;
use ftvm_world::{Channel, Net};
use std::collections::VecDeque;
use std::io::{BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The guest's address on the user-mode network.
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The replay's numbering of the devices whose requests come back as inputs.
const DISK: u8 = 1;
const ENTROPY: u8 = 2;

/// From the reader thread (and the arbiter's) to the replay.
enum Msg {
    /// An entry the core accepted, and when it arrived.
    Entry(Entry, Instant),
    /// The channel failed.
    Lost(String),
    /// Actions the core decided on the reader's thread (other than acks).
    Actions(Vec<BackupAction<OutputKind>>),
    /// The arbiter's answer.
    Arbiter(u64, Answer),
    /// SIGINT or SIGTERM (the stop flag is set): look at it now.
    Signal,
}

/// The core and the ack direction of the channel, shared by the reader and the replay.
struct Shared {
    core: Mutex<Backup<OutputKind>>,
    ack_out: Mutex<Box<dyn Channel>>,
    /// Acks written, for the reports.
    acks: std::sync::atomic::AtomicU64,
    clock: Clock,
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, Backup<OutputKind>> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ack(&self, seq: Seq, icount: u64, pace: u32) {
        let a = wire::encode_ack(seq.0, icount, pace);
        if let Ok(mut s) = self.ack_out.lock() {
            // A failed write shows up as the channel failing on the reader's side.
            let _ = s.write_all(&a);
        }
        self.acks.fetch_add(1, Ordering::Relaxed);
    }
}

/// The reader: each entry goes to the core first (acks leave from here at once, as
/// the Output Rule waits on them), then to the replay.
fn read_log(log: LogReader<BufReader<Box<dyn Channel>>>, sh: &Shared, tx: &mpsc::Sender<Msg>) {
    for item in log {
        match item {
            Ok(e) => {
                let mut core = sh.core();
                let take = core.received(Seq(e.seq), e.icount, e.kind, sh.clock.now());
                let mut rest = Vec::new();
                for a in core.actions() {
                    match a {
                        BackupAction::Ack { seq, icount, pace } => sh.ack(seq, icount, pace),
                        a => rest.push(a),
                    }
                }
                // Sent under the lock: the replay sees every accepted entry before it
                // sees the core leave the replay.
                if !rest.is_empty() && tx.send(Msg::Actions(rest)).is_err() {
                    return;
                }
                if take && tx.send(Msg::Entry(e, Instant::now())).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Msg::Lost(describe(&e)));
                return;
            }
        }
    }
}

/// A joined pair, from the backup's side.
struct Joined {
    log: LogReader<BufReader<Box<dyn Channel>>>,
    stream: Box<dyn Channel>,
    offer: Offer,
    machine: Machine,
}

enum JoinError {
    /// Try again later (or another address).
    Retry(String),
    /// Give up (e.g. a wrong cluster secret).
    Fatal(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for JoinError {
    fn from(e: E) -> JoinError {
        JoinError::Retry(format!("{:#}", e.into()))
    }
}

fn try_join(
    node: &Node,
    addr: SocketAddr,
    own_disk: Option<&Path>,
    status: &mut dyn FnMut(&str),
) -> Result<Joined, JoinError> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    let (mut stream, identity): (Box<dyn Channel>, Option<String>) = match &node.security {
        Security::Tls(creds) => match creds.log.connect(tcp) {
            Ok(ch) if ch.peer_vm() != Some(node.vm.as_str()) => {
                // Not a node of our VM: nothing of the pair goes to it (keys.rs).
                return Err(JoinError::Retry(format!(
                    "refused: its certificate ({}'s) is for {}, not for VM {}",
                    ch.peer(),
                    super::vm_phrase(ch.peer_vm()),
                    node.vm
                )));
            }
            Ok(ch) => {
                let id = ch.peer().to_string();
                (Box::new(ch), Some(id))
            }
            Err(e) if e.refused() => {
                return Err(JoinError::Fatal(anyhow::anyhow!(
                    "the primary at {addr} is not a node of this cluster: {e}"
                )))
            }
            // Worth retrying (a damaged record may be the network's), but say so plainly
            // when the primary sent no TLS at all.
            Err(e) if e.not_tls() => {
                return Err(JoinError::Retry(format!(
                    "it does not speak TLS (is it running with --insecure-plaintext? this node uses --tls): {e}"
                )))
            }
            Err(e) => return Err(JoinError::Retry(e.to_string())),
        },
        Security::Plaintext { secret } => {
            match ftvm_arbiter::client_handshake(&mut tcp, wire::GREETING, secret) {
                Ok(_) => {}
                Err(ArbiterError::Unauthenticated(e)) => {
                    return Err(JoinError::Fatal(anyhow::anyhow!(
                        "the primary at {addr} and this node do not share the cluster secret ({e})"
                    )))
                }
                Err(e) => return Err(JoinError::Retry(e.to_string())),
            }
            (Box::new(tcp), None)
        }
    };
    wire::send(
        &mut stream,
        &Message::Hello(Hello {
            vm: node.vm.clone(),
            node: node.name.clone(),
            own_disk: own_disk.is_some(),
        }),
    )?;
    let mut r = BufReader::with_capacity(1 << 20, stream.try_clone_channel()?);
    // In TLS 1.3 the server checks the client's certificate after the client's last
    // handshake flight (RFC 8446 §4.4.2): a refusal arrives as an alert here.
    let offer = match wire::recv(&mut r, ftvm_machine::PAGE_SIZE) {
        Ok(Message::Busy(why)) => return Err(JoinError::Retry(why)),
        Ok(Message::Refused(why)) => {
            return Err(JoinError::Fatal(anyhow::anyhow!(
                "the primary at {addr} refused this node: {why}"
            )))
        }
        Ok(Message::Offer(o)) => o,
        Ok(_) => return Err(JoinError::Retry("unexpected message".into())),
        Err(e) => match e
            .downcast_ref::<std::io::Error>()
            .and_then(ftvm_world::tls::refusal)
        {
            Some(t) => {
                return Err(JoinError::Fatal(anyhow::anyhow!(
                    "the primary at {addr} refused this node's certificate: {t}"
                )))
            }
            None => return Err(e.into()),
        },
    };
    if let Some(id) = identity.filter(|id| *id != offer.primary) {
        return Err(JoinError::Fatal(anyhow::anyhow!(
            "the primary at {addr} calls itself {} but its certificate is {id}'s",
            offer.primary
        )));
    }
    let cfg: BootConfig = postcard::from_bytes(&offer.config).map_err(|e| {
        JoinError::Fatal(anyhow::anyhow!(
            "the primary's machine configuration cannot be decoded: {e}"
        ))
    })?;
    let machine = Machine::new(&cfg).map_err(|e| {
        JoinError::Fatal(anyhow::anyhow!("cannot build the primary's machine: {e}"))
    })?;
    eprintln!(
        "ftvm: {}: joining {} at {addr} as the backup of VM {} (generation {}); receiving the guest",
        node.name, offer.primary, offer.vm, offer.generation
    );
    status("receiving");
    let started = Instant::now();
    let mut next_report = 32u64 << 20;
    // Our own copy of the disk, sized as the guest's.
    let copy = match (own_disk, cfg.devices.disk) {
        (Some(path), Some(d)) => {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .map_err(|e| {
                    JoinError::Fatal(anyhow::anyhow!(
                        "cannot create the disk copy '{}': {e}",
                        path.display()
                    ))
                })?;
            let len = d.sectors.checked_mul(512).ok_or_else(|| {
                JoinError::Fatal(anyhow::anyhow!(
                    "the primary offers a disk of {} sectors",
                    d.sectors
                ))
            })?;
            f.set_len(len)?;
            Some(f)
        }
        _ => None,
    };
    let mut machine = super::transfer::receive(&mut r, machine, copy.as_ref(), &mut |bytes| {
        if bytes >= next_report {
            eprintln!("ftvm: received {} MiB", bytes >> 20);
            next_report += 32 << 20;
        }
    })
    .map_err(|e| JoinError::Retry(format!("the transfer failed: {e:#}")))?;
    machine.set_engine(node.engine);
    let log = LogReader::open(r)
        .map_err(|e| JoinError::Retry(format!("the log failed to start: {e}")))?;
    log.header()
        .check(&config_digest(&offer.config), machine.state_hash())
        .map_err(|e| {
            JoinError::Fatal(anyhow::anyhow!(
                "the transferred guest differs from the primary's: {e}"
            ))
        })?;
    eprintln!(
        "ftvm: {}: received the guest in {} ms (state hash {:032x} matches); replaying the primary's log",
        node.name,
        started.elapsed().as_millis(),
        machine.state_hash()
    );
    Ok(Joined {
        log,
        stream,
        offer,
        machine,
    })
}

/// Connect to one of the primaries (retrying until one takes us).
fn join(
    node: &Node,
    primaries: &[SocketAddr],
    own_disk: Option<&Path>,
    stop: &AtomicBool,
    status: &mut dyn FnMut(&str),
) -> Result<Option<Joined>> {
    let mut last = vec![String::new(); primaries.len()];
    loop {
        for (i, &addr) in primaries.iter().enumerate() {
            match try_join(node, addr, own_disk, status) {
                Ok(j) => return Ok(Some(j)),
                Err(JoinError::Fatal(e)) => return Err(e),
                Err(JoinError::Retry(why)) => {
                    if last[i] != why {
                        eprintln!(
                            "ftvm: {}: primary {addr} not available yet: {why}",
                            node.name
                        );
                        last[i] = why;
                    }
                }
            }
        }
        status("waiting");
        if stop.load(Ordering::Relaxed) {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn describe(e: &LogError) -> String {
    match e {
        LogError::Truncated { .. } => "the primary closed the logging channel".into(),
        e => e.to_string(),
    }
}

/// What the replay produced, to the core (and, with a disk of our own, the guest's
/// writes to it: the primary makes them too, once we acknowledged them).
fn take_produced(
    replay: &mut Replay<std::io::Stdout>,
    own: &mut Option<DiskImage>,
    core: &mut Backup<OutputKind>,
    node: &str,
) -> Result<()> {
    for (out, tag) in replay.produced.drain(..) {
        let class = match &out.kind {
            OutputKind::NetFrame(_) => OutputClass::Frame,
            OutputKind::Disk(req) => {
                if let Some(d) = own {
                    let done = match &req.kind {
                        BlkRequestKind::Write { sector, data } => d.write(*sector, data),
                        BlkRequestKind::Flush => d.flush(),
                        BlkRequestKind::Read { .. } => Ok(()),
                    };
                    done.with_context(|| format!("{node}: cannot update the disk copy"))?;
                }
                OutputClass::Request(RequestId {
                    device: DISK,
                    id: req.id,
                })
            }
            OutputKind::EntropyRequest { id, .. } => OutputClass::Request(RequestId {
                device: ENTROPY,
                id: *id,
            }),
            OutputKind::Console(_) => OutputClass::Other,
        };
        core.produced(class, out.kind, Time(tag));
    }
    Ok(())
}

/// How long until the core's clock reads `t`.
fn until(clock: &Clock, t: Time) -> Duration {
    clock.instant(t).saturating_duration_since(Instant::now())
}

/// The request an event answers, if any.
fn answers(event: Option<&Event>) -> Option<RequestId> {
    match event? {
        Event::Entropy { id, .. } => Some(RequestId {
            device: ENTROPY,
            id: *id,
        }),
        Event::DiskDone { id, .. } => Some(RequestId {
            device: DISK,
            id: *id,
        }),
        _ => None,
    }
}

/// The input event an entry carries, if it is one.
fn event_of(entry: &Entry) -> Option<Event> {
    if entry.kind != EntryKind::Event {
        return None;
    }
    postcard::from_bytes::<Event>(&entry.payload).ok()
}

/// This host's world for a node going live: the switch, the disk, entropy and the
/// port a new backup connects to. Any of it can fail for a while (the switch
/// restarting, the shared disk not yet visible); the caller tries again.
struct World {
    backends: Backends,
    listener: TcpListener,
    /// The guest's LAN as offered to the next backup: the switch, or [`super::TAP_LAN`].
    switch: String,
    /// What the new primary's disk writes need (shared with the disk itself).
    permit: WritePermit,
}

fn world(
    node: &Node,
    args: &BackupArgs,
    offer: &Offer,
    own: &mut Option<DiskImage>,
) -> Result<World> {
    // The guest's LAN: this host's TAP device, or the switch.
    let switch: Option<SocketAddr> = match (&args.tap, args.switch) {
        (Some(_), _) => None,
        (None, Some(s)) => Some(s),
        (None, None) if offer.switch == super::TAP_LAN => bail!(
            "the primary's guest is on a TAP device: give this backup --tap IFNAME (its own host's)"
        ),
        (None, None) => Some(
            offer
                .switch
                .parse()
                .context("the primary's switch address cannot be parsed")?,
        ),
    };
    // The shared disk, where this host sees it (our own copy is current already).
    let permit = WritePermit::default();
    let shared = match (&own, offer.disk.as_deref()) {
        (None, Some(spec)) => {
            let spec = match (crate::run::disk_spec(spec)?, &args.disk) {
                ((crate::run::DiskTarget::File(_), mode), Some(path)) => {
                    format!("{}{}", path.display(), mode_suffix(mode))
                }
                ((crate::run::DiskTarget::Nbd(url), _), Some(path)) => bail!(
                    "--disk {} is for a shared image file; the primary's disk is {url}",
                    path.display()
                ),
                _ => spec.to_string(),
            };
            let (disk, _) = crate::run::open_disk(&spec, &permit)
                .with_context(|| format!("cannot open the shared disk {spec}"))?;
            Some(disk)
        }
        _ => None,
    };
    let entropy = HostEntropy::open().context("cannot open /dev/urandom")?;
    // Bound only now: until it is live, a spare knocking here is refused at once.
    let listener = TcpListener::bind(node.listen)
        .with_context(|| format!("cannot listen for a backup on {}", node.listen))?;
    let net: Box<dyn Net> = match (switch, &args.tap) {
        (Some(switch), _) => {
            // The error names the switch and the cause.
            let port = match node.security.switch() {
                Some(creds) => ftvm_switch::SwitchPort::connect_tls(switch, &node.name, creds),
                None => ftvm_switch::SwitchPort::connect(switch, &node.name),
            };
            let mut port = port.map_err(|e| anyhow::anyhow!("{e}"))?;
            port.announce(GUEST_MAC, GUEST_IP).map_err(|e| {
                anyhow::anyhow!("cannot announce the guest's MAC to the switch: {e}")
            })?;
            Box::new(port)
        }
        (None, Some(tap)) => {
            let mut tap = ftvm_world::tap::Tap::open(tap)?;
            // The bridge learns the guest's MAC on this host's port from it.
            tap.send(&ftvm_switch::gratuitous_arp(GUEST_MAC, GUEST_IP));
            Box::new(tap)
        }
        (None, None) => unreachable!("a LAN was chosen above"),
    };
    let disk = match offer.disk {
        None => None,
        Some(_) => shared.or_else(|| own.take().map(|d| Box::new(d) as Box<dyn ftvm_world::Disk>)),
    };
    Ok(World {
        backends: Backends {
            disk,
            net: Some(net),
            entropy: Some(Box::new(entropy)),
            console: None,
        },
        listener,
        switch: switch.map_or_else(|| super::TAP_LAN.to_string(), |s| s.to_string()),
        permit,
    })
}

/// A `--disk` mode as its spec option.
fn mode_suffix(mode: DiskMode) -> &'static str {
    match mode {
        DiskMode::ReadWrite => "",
        DiskMode::ReadOnly => ",readonly",
        DiskMode::Snapshot => ",snapshot",
    }
}

/// `ftvm backup`.
pub fn backup(args: &BackupArgs) -> Result<ExitCode> {
    let node = Node::from_args(&args.node, "127.0.0.1:7703")?;
    if args.primary.is_empty() {
        bail!("--primary needs at least one address");
    }
    node.serve_metrics(&args.node)?;
    let stop = crate::services::stop_on_signals()?;
    let mut status_file = StatusFile::new(&node);
    let base = Status {
        vm: node.vm.clone(),
        node: node.name.clone(),
        role: "backup".into(),
        ..Status::default()
    };
    let report = |state: &str, f: &mut StatusFile| {
        let mut st = base.clone();
        st.state = state.into();
        f.write(&mut st);
    };
    let Some(joined) = join(
        &node,
        &args.primary,
        args.own_disk.as_deref(),
        &stop,
        &mut |s| report(s, &mut status_file),
    )?
    else {
        return Ok(ExitCode::SUCCESS);
    };
    let Joined {
        log,
        stream,
        offer,
        machine,
    } = joined;
    let generation = offer.generation;
    // Silence is the core's to judge (Backup::tick); writes are bounded.
    stream.set_read_timeout(None)?;
    stream.set_write_timeout(Some(node.timeout))?;
    let clock = Clock::start();
    let shared = Arc::new(Shared {
        core: Mutex::new(Backup::new(
            &node.name,
            generation,
            machine.icount().0,
            node.timing(),
            None,
            clock.now(),
        )),
        ack_out: Mutex::new(stream.try_clone_channel()?),
        acks: Default::default(),
        clock,
    });
    let (tx, rx) = mpsc::channel();
    let (sh, reader_tx) = (shared.clone(), tx.clone());
    std::thread::Builder::new()
        .name("log-in".into())
        .spawn(move || read_log(log, &sh, &reader_tx))?;
    // The core's clock ticks here too, at its next deadline, so that acks (and the
    // primary's silence) do not wait for a long replay step: the primary takes a
    // silent backup for a lost one. (Deadlines only move later as entries arrive.)
    let (sh, ticker_tx) = (shared.clone(), tx.clone());
    std::thread::Builder::new()
        .name("acks".into())
        .spawn(move || loop {
            let due = sh.core().next_tick();
            if let Some(due) = due {
                std::thread::sleep(until(&sh.clock, due));
            }
            let mut core = sh.core();
            if core.phase() != BackupPhase::Replaying {
                return;
            }
            core.tick(sh.clock.now());
            let mut rest = Vec::new();
            for a in core.actions() {
                match a {
                    BackupAction::Ack { seq, icount, pace } => sh.ack(seq, icount, pace),
                    a => rest.push(a),
                }
            }
            if !rest.is_empty() && ticker_tx.send(Msg::Actions(rest)).is_err() {
                return;
            }
        })?;

    // With a disk of our own, the guest's writes are applied to it as the replay makes
    // them (the primary makes them too, once we acknowledged them).
    let spec = offer
        .disk
        .as_deref()
        .map(crate::run::disk_spec)
        .transpose()?;
    if let (Some((crate::run::DiskTarget::Nbd(url), _)), Some(_)) = (&spec, &args.own_disk) {
        bail!("--own-disk needs a disk image file on the primary; its disk is {url}, which every host reaches anyway");
    }
    let mode = spec.map(|(_, mode)| mode);
    let mut own = match (&args.own_disk, mode) {
        (Some(path), Some(mode)) => Some(
            DiskImage::open(path, mode)
                .with_context(|| format!("cannot open the disk copy '{}'", path.display()))?,
        ),
        _ => None,
    };
    let mut replay: Replay<std::io::Stdout> = Replay::new(machine, None);
    replay.keep_outputs = true;
    let mut queue: VecDeque<(Entry, Instant)> = VecDeque::new();
    let mut replayed = Replayed::default();
    let mut asker = Asker::new(node.arbiter()?);
    let mut todo: VecDeque<BackupAction<OutputKind>> = VecDeque::new();
    let (mut entries, mut caught_up, mut lost_at) = (0u64, false, None);
    let mut lost = String::new();
    let mut not_live_yet = String::new();
    let diverged = |e: anyhow::Error| {
        e.context(format!(
            "{}: the backup diverged from the primary",
            node.name
        ))
    };
    // A signal wakes the replay's wait.
    let signal_tx = tx.clone();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("cannot install a signal handler")?;
    let signals_handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if signal_tx.send(Msg::Signal).is_err() {
                    return;
                }
            }
        })?;
    let (plan, mut world) = 'replica: loop {
        let phase = shared.core().phase();
        if stop.load(Ordering::Relaxed) {
            stream.close();
            eprintln!(
                "ftvm: {}: stopping (signal); the primary runs on",
                node.name
            );
            report("stopped", &mut status_file);
            return Ok(ExitCode::SUCCESS);
        }
        // News: wait for it only when the replay has nothing to do, until the core's
        // next deadline (while replaying the ticker keeps those) or the next report.
        let idle = queue.is_empty() && (phase != BackupPhase::CatchingUp || caught_up);
        let mut first = if idle {
            let report = status_file.next_due();
            let due = match phase {
                BackupPhase::Replaying => None,
                _ => shared.core().next_tick(),
            };
            let wait = due.map_or(report, |t| clock.instant(t).min(report));
            match rx.recv_timeout(wait.saturating_duration_since(Instant::now())) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => unreachable!("this thread holds a sender"),
            }
        } else {
            None
        };
        while let Some(m) = first.take().or_else(|| rx.try_recv().ok()) {
            match m {
                Msg::Entry(e, at) => queue.push_back((e, at)),
                Msg::Lost(why) => {
                    let now = clock.now();
                    let mut core = shared.core();
                    core.channel_failed(&why, now);
                    todo.extend(core.actions());
                }
                Msg::Actions(a) => todo.extend(a),
                Msg::Signal => stop.store(true, Ordering::Relaxed),
                Msg::Arbiter(g, answer) => {
                    if let Some(v) = asker.verdict(&node, answer)? {
                        let now = clock.now();
                        let mut core = shared.core();
                        core.arbiter(g, v, now);
                        todo.extend(core.actions());
                    }
                }
            }
        }
        // The replay: one entry, or the final catch-up once the primary is lost.
        let replaying = shared.core().replaying();
        if let Some((entry, at)) = queue.pop_front().filter(|_| replaying) {
            entries += 1;
            let event = event_of(&entry);
            let answered = answers(event.as_ref());
            if let Some(e) = &event {
                replayed.delivered(e);
            }
            let (from, began) = (replay.machine.icount().0, Instant::now());
            let applied = replay.apply(&entry, clock.at(at).0).map_err(|e| {
                report("halted", &mut status_file);
                diverged(e)
            })?;
            let busy = Time(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
            let now = clock.now();
            let mut core = shared.core();
            core.replayed(replay.machine.icount().0 - from, busy);
            take_produced(&mut replay, &mut own, &mut core, &node.name)?;
            if let Some(id) = answered {
                core.answered(id);
            }
            // An output entry is applied once the replay produced it (below, or by a
            // later entry's run).
            if entry.kind != EntryKind::Output {
                core.applied(Seq(entry.seq), replay.machine.icount().0, now);
            }
            if applied == Applied::End {
                core.ended();
                drop(core);
                stream.close();
                eprintln!(
                    "ftvm: {}: the primary's guest stopped at instruction {}; so does this replica",
                    node.name,
                    replay.machine.icount()
                );
                report("stopped", &mut status_file);
                return Ok(ExitCode::SUCCESS);
            }
            todo.extend(core.actions());
        } else if shared.core().phase() == BackupPhase::CatchingUp && !caught_up {
            // Every accepted entry is queued (the reader sends under the core's lock);
            // run to the newest one, producing what its output entries announce.
            while let Ok(m) = rx.try_recv() {
                match m {
                    Msg::Entry(e, at) => queue.push_back((e, at)),
                    Msg::Actions(a) => todo.extend(a),
                    Msg::Lost(_) | Msg::Arbiter(..) | Msg::Signal => {}
                }
            }
            if queue.is_empty() {
                caught_up = true;
                let limit = shared.core().limit();
                replay.catch_up(limit).map_err(diverged)?;
                let now = clock.now();
                let mut core = shared.core();
                take_produced(&mut replay, &mut own, &mut core, &node.name)?;
                let newest = core.newest();
                core.applied(newest, replay.machine.icount().0, now);
                todo.extend(core.actions());
            }
        }
        {
            let now = clock.now();
            let mut core = shared.core();
            core.tick(now);
            todo.extend(core.actions());
        }
        while let Some(a) = todo.pop_front() {
            match a {
                BackupAction::Ack { seq, icount, pace } => shared.ack(seq, icount, pace),
                BackupAction::DropPrimary(why) => {
                    lost = why;
                    lost_at = Some(Instant::now());
                    stream.close();
                    report("failing over", &mut status_file);
                }
                BackupAction::Ask {
                    generation,
                    claimant,
                } => {
                    if !lost.is_empty() {
                        eprintln!(
                            "ftvm: {}: lost the primary {} ({lost}); replayed all {entries} entries, to instruction {}; asking the arbiter for generation {generation}",
                            node.name,
                            offer.primary,
                            replay.machine.icount()
                        );
                        lost.clear();
                    }
                    let tx = tx.clone();
                    asker.ask(&node, generation, claimant, move |g, answer| {
                        let _ = tx.send(Msg::Arbiter(g, answer));
                    });
                }
                BackupAction::GoLive(plan) => match world(&node, args, &offer, &mut own) {
                    Ok(w) => break 'replica (plan, w),
                    Err(e) => {
                        let why = format!("{e:#}");
                        if why != not_live_yet {
                            eprintln!(
                                "ftvm: {}: won generation {} but cannot go live yet: {why}; trying again",
                                node.name, plan.generation
                            );
                            not_live_yet = why.clone();
                        }
                        shared.core().live_failed(&why, clock.now());
                    }
                },
                BackupAction::Halt(why) => {
                    report("halted", &mut status_file);
                    stream.close();
                    return Err(Halted(format!("{why} of VM {}", node.vm)).into());
                }
            }
        }
        if status_file.due() {
            let mut st = base.clone();
            st.state = match shared.core().phase() {
                BackupPhase::Replaying => "replaying",
                _ => "failing over",
            }
            .into();
            st.generation = generation;
            st.peer = offer.primary.clone();
            st.icount = replay.machine.icount().0;
            // How far the replay is behind the newest entry it holds.
            st.lag_insns = shared.core().limit().saturating_sub(st.icount);
            st.acks = shared.acks.load(Ordering::Relaxed);
            status_file.write(&mut st);
        }
    };
    signals_handle.close();
    shared.core().went_live();
    // The switch's re-delivery brings frames the replay already delivered.
    world.backends.net = world
        .backends
        .net
        .map(|net| Box::new(SkipReplayed::new(net, replayed, Instant::now())) as Box<dyn Net>);
    go_live(node, &offer, replay.machine, plan, world, lost_at, stop)
}

/// Carry out a go-live plan ([`ftvm_replica::Backup::go_live`]) in this host's world:
/// live execution starts where the replay reached; the requests the log never
/// answered are carried out and the uncertain frames sent again; then run live.
fn go_live(
    node: Node,
    offer: &Offer,
    machine: Machine,
    plan: GoLive<OutputKind>,
    world: World,
    lost_at: Option<Instant>,
    stop: Arc<AtomicBool>,
) -> Result<ExitCode> {
    let icount = machine.icount();
    let mut backends = world.backends;
    if let (Some(disk), Some(epoch)) = (backends.disk.as_mut(), plan.fence) {
        // Our writes wait until none of the old primary's may still land (reads go on).
        disk.fence()
            .with_context(|| format!("cannot fence the shared disk for generation {epoch}"))?;
    }
    let mut driver = Driver::new(machine, backends, std::io::stdout())?;
    driver.write_permit = world.permit.clone();
    driver.threaded_disk = true;
    driver.journal = Some(Box::new(Primary::live(
        node.clone(),
        plan.generation,
        world.listener,
        offer.config.clone(),
        world.switch.clone(),
        PairDisk {
            spec: offer.disk.clone(),
            permit: world.permit,
        },
        driver.waker(),
    )?));
    let (nframes, nrequests) = (plan.resend.len(), plan.reissue.len());
    driver.reissue(plan.reissue)?;
    driver.reissue(plan.resend)?;
    eprintln!(
        "ftvm: {}: live as the primary of VM {} (generation {}) at instruction {icount}, {} ms after the loss was detected; re-sent {nframes} frames and {nrequests} requests",
        node.name,
        node.vm,
        plan.generation,
        lost_at.map_or(0, |t| t.elapsed().as_millis())
    );
    run_live(driver, stop)
}
