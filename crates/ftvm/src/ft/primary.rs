//! The live side of a pair (DESIGN.md §4): the adapter between the FT core's
//! [`ftvm_replica::Primary`] and the host. It is the driver's [`Journal`]: every input
//! and output goes onto the logging channel, the core's [`OutputGate`] holds outputs
//! until the backup acknowledged them, and the core decides heartbeats, when the backup
//! is lost, when to ask the arbiter and what its answer means, and how a shutdown ends.
//! This file carries out its actions: sockets, threads (one reading acks, one per
//! arbiter question, one admitting backups) and the host clock, all feeding one channel
//! whose every message rings the driver's waker: a waiting driver takes an ack (and
//! releases what it allows) at once. A new backup joins by live state transfer.
//!
//! [`OutputGate`]: ftvm_replica::OutputGate

use super::status::{Status, StatusFile};
use super::transfer::Sender;
use super::wire::{self, Hello, Message, Offer, ACK_LEN};
use super::{Answer, Asker, Clock, Halted, Node, Security};
use crate::replica::{config_digest, output_digest, Journal};
use anyhow::{Context, Result};
use ftvm_log::{Header, LogWriter};
use ftvm_machine::devices::virtio::{BlkRequest, BlkRequestKind};
use ftvm_machine::{Event, Machine, Output, OutputKind};
use ftvm_replica::{PrimaryAction, PrimaryPhase, Seq, Time};
use ftvm_world::disk::WritePermit;
use ftvm_world::mio::Waker;
use ftvm_world::{Channel, Slot, SlotLimits, Slots};
use std::collections::VecDeque;
use std::io::{BufReader, BufWriter, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections from would-be backups handled at once (more evict the oldest handshake).
const ADMIT_SLOTS: usize = 8;
/// From a backup's connect to its authenticated hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the primary's threads tell it.
enum News {
    /// A backup authenticated and asks to join.
    Candidate(Candidate),
    /// The backup on link `link` acknowledged `seq`, executed to `icount`, and replays
    /// `pace` instructions per ms.
    Ack {
        link: u64,
        seq: u64,
        icount: u64,
        pace: u32,
    },
    /// The channel of link `link` failed.
    Failed { link: u64, why: String },
    /// The arbiter's answer for a generation.
    Arbiter(u64, Answer),
}

/// How the primary's threads reach it: news on a channel, and a ring of the driver's
/// waker so that a waiting driver takes it at once.
#[derive(Clone)]
struct NewsSender {
    tx: mpsc::Sender<News>,
    waker: Arc<Waker>,
}

impl NewsSender {
    /// Send `news`; false once the primary is gone.
    fn send(&self, news: News) -> bool {
        let sent = self.tx.send(news).is_ok();
        if let Err(e) = self.waker.wake() {
            tracing::warn!("cannot wake the driver: {e}");
        }
        sent
    }
}

/// A backup being admitted: authenticated and introduced.
struct Candidate {
    stream: Box<dyn Channel>,
    hello: Hello,
    /// Over TLS: the backup's name is its certificate's.
    tls: bool,
    /// The generation the pair will take.
    generation: u64,
}

/// The logging channel to a protecting backup.
struct Link {
    id: u64,
    backup: String,
    log: LogWriter<BufWriter<Box<dyn Channel>>>,
    stream: Box<dyn Channel>,
    next_checkpoint: u64,
    /// Log bytes at the last status report.
    bytes_reported: (u64, Instant),
}

/// The primary's journal.
pub struct Primary {
    node: Node,
    core: ftvm_replica::Primary<OutputKind>,
    clock: Clock,
    config: Vec<u8>,
    switch: String,
    disk: Option<String>,
    link: Option<Link>,
    links: u64,
    transfer: Option<Box<Sender>>,
    /// Candidates that arrived while the driver waited.
    deferred: Vec<Candidate>,
    /// Disk writes may be sent while it allows: the core's lease, set after each turn.
    permit: WritePermit,
    /// Released writes the driver could not send (the permit had run out).
    held_writes: Vec<OutputKind>,
    news: Receiver<News>,
    tx: NewsSender,
    asker: Asker,
    status: StatusFile,
    /// Outputs the core released, for the driver.
    ready: Vec<OutputKind>,
    /// The guest's instruction count at the last look.
    icount: u64,
    /// (icount, when) samples: the backup may lag by what the guest ran in `max_lag`.
    history: VecDeque<(u64, Instant)>,
    throttled: u64,
    throttling: bool,
    /// What `ftvm status` and `--metrics` count.
    counts: Counts,
    /// The core halted this node (another is live).
    halted: Option<String>,
    stopped: bool,
}

/// Running totals of this process, for its reports.
#[derive(Default)]
struct Counts {
    /// Log bytes of links that ended.
    log_bytes: u64,
    acks: u64,
    failovers: u64,
    transfers: u64,
    /// Bytes of transfers that ended.
    transfer_bytes: u64,
    /// The guest's instruction count at the last report, and when.
    reported: Option<(u64, Instant)>,
}

/// The pair's disk as a primary knows it.
pub struct PairDisk {
    /// The `--disk` spec, offered to each backup.
    pub spec: Option<String>,
    /// What the driver's (and the disk's) writes need: set from the core's lease.
    pub permit: WritePermit,
}

impl Primary {
    /// A primary booting a new guest: it asks the arbiter for generation 0 under a
    /// name unique to this boot, and the guest runs only once it won.
    pub fn boot(
        node: Node,
        listener: TcpListener,
        config: Vec<u8>,
        switch: String,
        disk: PairDisk,
        waker: Arc<Waker>,
    ) -> Result<Primary> {
        let clock = Clock::start();
        let core = ftvm_replica::Primary::boot(
            &node.name,
            &super::incarnation(),
            node.timing(),
            None,
            clock.now(),
        );
        Primary::new(node, core, clock, listener, config, switch, disk, waker)
    }

    /// A node that went live after winning `generation` (a backup's go-live).
    pub fn live(
        node: Node,
        generation: u64,
        listener: TcpListener,
        config: Vec<u8>,
        switch: String,
        disk: PairDisk,
        waker: Arc<Waker>,
    ) -> Result<Primary> {
        let core = ftvm_replica::Primary::live(&node.name, generation, node.timing(), None);
        let mut p = Primary::new(
            node,
            core,
            Clock::start(),
            listener,
            config,
            switch,
            disk,
            waker,
        )?;
        p.counts.failovers = 1;
        Ok(p)
    }

    #[allow(clippy::too_many_arguments)]
    fn new(
        node: Node,
        core: ftvm_replica::Primary<OutputKind>,
        clock: Clock,
        listener: TcpListener,
        config: Vec<u8>,
        switch: String,
        disk: PairDisk,
        waker: Arc<Waker>,
    ) -> Result<Primary> {
        let (tx, news) = mpsc::channel();
        let tx = NewsSender { tx, waker };
        let (n, admitted) = (node.clone(), tx.clone());
        // Each candidate in a thread of its own, in a bounded set of slots with a
        // handshake deadline: a silent or slow peer can neither stall us nor keep a
        // backup out (issue 12 item 4).
        let slots = Slots::new(SlotLimits {
            max: ADMIT_SLOTS,
            handshake: HANDSHAKE_TIMEOUT,
        })?;
        std::thread::Builder::new()
            .name("admit".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    let Ok(stream) = conn else { continue };
                    let slot = match slots.admit(&stream) {
                        Ok(Ok(slot)) => slot,
                        _ => continue,
                    };
                    let (node, tx) = (n.clone(), admitted.clone());
                    let spawned =
                        std::thread::Builder::new()
                            .name("admit-peer".into())
                            .spawn(move || match admit(stream, &node, &slot) {
                                Ok(c) => {
                                    tx.send(News::Candidate(c));
                                }
                                Err(e) => eprintln!("ftvm: {}: refused a backup: {e:#}", node.name),
                            });
                    if let Err(e) = spawned {
                        eprintln!("ftvm: {}: cannot admit a backup: {e}", n.name);
                    }
                }
            })?;
        let status = StatusFile::new(&node);
        let asker = Asker::new(node.arbiter()?);
        let mut p = Primary {
            node,
            core,
            clock,
            config,
            switch,
            disk: disk.spec,
            permit: disk.permit,
            held_writes: Vec::new(),
            link: None,
            links: 0,
            transfer: None,
            deferred: Vec::new(),
            news,
            tx,
            asker,
            status,
            ready: Vec::new(),
            icount: 0,
            history: VecDeque::new(),
            throttled: 0,
            throttling: false,
            counts: Counts::default(),
            halted: None,
            stopped: false,
        };
        if p.core.may_run() {
            p.say_primary();
        }
        p.act();
        Ok(p)
    }

    fn say_primary(&self) {
        eprintln!(
            "ftvm: {} is the primary of VM {} (generation {}); a backup may connect on {}",
            self.node.name,
            self.node.vm,
            self.core.generation(),
            self.node.listen
        );
    }

    /// Carry out what the core decided.
    fn act(&mut self) {
        for a in self.core.actions() {
            match a {
                PrimaryAction::Start => self.say_primary(),
                PrimaryAction::Heartbeat => {
                    if let Some(l) = &mut self.link {
                        let r = l.log.progress(self.icount);
                        let r = r.and_then(|s| l.log.flush().map(|_| s));
                        self.sent(r, self.icount);
                    }
                }
                PrimaryAction::Release(kind) => self.ready.push(kind),
                PrimaryAction::Ask {
                    generation,
                    claimant,
                } => {
                    let tx = self.tx.clone();
                    self.asker
                        .ask(&self.node, generation, claimant, move |g, answer| {
                            tx.send(News::Arbiter(g, answer));
                        });
                }
                PrimaryAction::DropBackup(why) => {
                    let backup = self
                        .link
                        .as_ref()
                        .map(|l| l.backup.clone())
                        .unwrap_or_default();
                    eprintln!(
                        "ftvm: {}: lost the backup {backup} ({why}); asking the arbiter for generation {}",
                        self.node.name,
                        self.core.generation()
                    );
                    if let Some(l) = self.link.take() {
                        self.counts.log_bytes += l.log.bytes_written();
                        l.stream.close();
                    }
                    self.report("failing over");
                }
                // Winning after losing the backup: the backup never went live, so no
                // write of another owner can be in flight; ours follow the permit.
                PrimaryAction::Fence { .. } => {}
                PrimaryAction::Halt(why) => {
                    self.held_writes.clear();
                    self.report("halted");
                    self.halted = Some(format!("{why} (VM {})", self.node.vm));
                }
                PrimaryAction::Stopped { dropped } => {
                    if dropped > 0 {
                        eprintln!(
                            "ftvm: {}: {dropped} outputs never left: the backup did not acknowledge them",
                            self.node.name
                        );
                    }
                    self.stopped = true;
                }
            }
        }
        // A write leaves only under the lease, checked when it is sent (crates/world
        // nbd.rs: what that guarantees a new owner).
        let lease = self.core.lease().map(|t| self.clock.instant(t));
        self.permit.set(lease);
    }

    /// An entry, logged at instruction `icount`, went onto the channel (or failed to).
    fn sent(&mut self, r: Result<u64, ftvm_log::LogError>, icount: u64) -> Option<Seq> {
        let now = self.clock.now();
        match r {
            Ok(seq) => {
                self.core.sent(Seq(seq), icount, now);
                Some(Seq(seq))
            }
            Err(_) => {
                self.core
                    .channel_failed("the logging channel failed while sending", now);
                None
            }
        }
    }

    /// Take what the threads reported. A candidate backup waits for the next service
    /// (the disk quiet by then, [`Journal::disk_quiet`]).
    fn take_news(&mut self) -> Result<()> {
        while let Ok(n) = self.news.try_recv() {
            let now = self.clock.now();
            match n {
                News::Candidate(c) => self.deferred.push(c),
                News::Ack {
                    link,
                    seq,
                    icount,
                    pace,
                } => {
                    if self.link.as_ref().is_some_and(|l| l.id == link) {
                        self.counts.acks += 1;
                        self.core.backup_paced(pace);
                        self.core.ack(Seq(seq), icount, now);
                    }
                }
                News::Failed { link, why } => {
                    if self.link.as_ref().is_some_and(|l| l.id == link) {
                        self.core.channel_failed(&why, now);
                    }
                }
                News::Arbiter(generation, answer) => {
                    let before = self.core.phase();
                    if let Some(v) = self.asker.verdict(&self.node, answer)? {
                        self.core.arbiter(generation, v, now);
                        if before == PrimaryPhase::Arbitrating
                            && self.core.phase() == PrimaryPhase::Unprotected
                        {
                            self.counts.failovers += 1;
                            eprintln!(
                                "ftvm: {}: won generation {generation}; running unprotected until a new backup joins",
                                self.node.name
                            );
                        }
                    }
                }
            }
            self.act();
        }
        Ok(())
    }

    /// A candidate backup, the disk quiet: its transfer begins, or it hears that this
    /// primary already has one.
    fn take_candidate(&mut self, c: Candidate, machine: &mut Machine) {
        if self.core.phase() == PrimaryPhase::Unprotected && self.transfer.is_none() {
            self.begin_transfer(c, machine);
        } else {
            let mut s = c.stream;
            let _ = wire::send(
                &mut s,
                &Message::Busy("this primary already has a backup".into()),
            );
        }
        self.act();
    }

    fn begin_transfer(&mut self, mut c: Candidate, machine: &mut Machine) {
        c.generation = c.generation.max(self.core.generation() + 1);
        let offer = Offer {
            vm: self.node.vm.clone(),
            generation: c.generation,
            primary: self.node.name.clone(),
            config: self.config.clone(),
            switch: self.switch.clone(),
            disk: self.disk.clone(),
        };
        eprintln!(
            "ftvm: {}: backup {} connected {}; transferring the guest ({} MiB of RAM) for generation {}",
            self.node.name,
            c.hello.node,
            if c.tls { "over TLS (its certificate checked)" } else { "in clear (--insecure-plaintext)" },
            (machine.ram_pages() as u64 * ftvm_machine::PAGE_SIZE as u64) >> 20,
            c.generation
        );
        // A backup with its own disk gets the image along with the guest.
        let path = match self.disk.as_deref().map(crate::run::disk_spec) {
            Some(Ok((crate::run::DiskTarget::File(path), _))) => Some(path),
            _ => None,
        };
        let image = path.as_deref().filter(|_| c.hello.own_disk);
        match Sender::start(c.stream, c.hello.node.clone(), offer, image, machine) {
            Ok(s) => self.transfer = Some(Box::new(s)),
            Err(e) => eprintln!(
                "ftvm: {}: transfer to {} failed: {e:#}",
                self.node.name, c.hello.node
            ),
        }
    }

    /// One transfer step; at the end the log starts and the pair is protected.
    fn transfer_step(&mut self, machine: &mut Machine) -> Result<()> {
        let Some(sender) = &mut self.transfer else {
            return Ok(());
        };
        let summary = match sender.step(machine) {
            Ok(None) => return Ok(()),
            Ok(Some(s)) => s,
            Err(e) => {
                eprintln!(
                    "ftvm: {}: transfer to {} failed: {e:#}; still unprotected",
                    self.node.name, sender.backup
                );
                self.counts.transfer_bytes += sender.progress().1;
                self.transfer = None;
                return Ok(());
            }
        };
        let sender = self.transfer.take().expect("a transfer");
        self.counts.transfer_bytes += summary.bytes;
        self.counts.transfers += 1;
        let (backup, generation) = (sender.backup.clone(), sender.generation);
        let paused = Instant::now();
        let header = Header::new(
            Vec::new(),
            config_digest(&self.config),
            machine.state_hash(),
            concat!("ftvm ", env!("CARGO_PKG_VERSION")),
        );
        let out = sender.into_writer();
        // Acks are read without a timeout: silence is the core's to judge.
        out.get_ref().set_read_timeout(None)?;
        let stream = out.get_ref().try_clone_channel()?;
        let reader = stream.try_clone_channel()?;
        // The log's writer holds the channel itself (the transfer's buffer flushed).
        let out = match out.into_inner() {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "ftvm: {}: transfer to {backup} failed: {}",
                    self.node.name,
                    e.error()
                );
                return Ok(());
            }
        };
        let log = match LogWriter::new(BufWriter::new(out), &header)
            .and_then(|mut l| l.flush().map(|_| l))
        {
            Ok(l) => l,
            Err(e) => {
                eprintln!("ftvm: {}: transfer to {backup} failed: {e}", self.node.name);
                return Ok(());
            }
        };
        let pause = summary.pause + paused.elapsed();
        self.links += 1;
        let (id, tx) = (self.links, self.tx.clone());
        std::thread::Builder::new()
            .name("acks".into())
            .spawn(move || read_acks(reader, id, &tx))?;
        eprintln!(
            "ftvm: {}: backup {backup} attached: generation {generation}, {} rounds, {:.1} MiB sent in {} ms, guest paused {:.1} ms; {} steps took {} ms of it",
            self.node.name,
            summary.rounds,
            summary.bytes as f64 / (1 << 20) as f64,
            summary.total.as_millis(),
            pause.as_secs_f64() * 1e3,
            summary.steps,
            summary.sending.as_millis()
        );
        let now = Instant::now();
        let at = machine.icount().0;
        self.core
            .attached(&backup, generation, at, self.clock.at(now));
        self.history.clear();
        self.link = Some(Link {
            id,
            backup,
            log,
            stream,
            next_checkpoint: machine.icount().0.saturating_add(self.node.hash_every),
            bytes_reported: (0, now),
        });
        Ok(())
    }

    /// Bound the backup's lag in host time (`--max-lag-ms`): the guest may run ahead
    /// of the backup by what it executed during the last `max_lag`.
    fn bound_lag(&mut self, icount: u64) {
        let now = Instant::now();
        if self
            .history
            .back()
            .is_none_or(|(_, t)| now.duration_since(*t) >= Duration::from_millis(1))
        {
            self.history.push_back((icount, now));
        }
        while self.history.len() > 1 && now.duration_since(self.history[1].1) >= self.node.max_lag {
            self.history.pop_front();
        }
        let then = self.history.front().map_or(icount, |(i, _)| *i);
        let window = Time(u64::try_from(self.node.max_lag.as_micros()).unwrap_or(u64::MAX));
        self.core.set_max_lag(icount - then.min(icount), window);
    }

    fn report(&mut self, state: &str) {
        let mut st = Status {
            vm: self.node.vm.clone(),
            node: self.node.name.clone(),
            role: "primary".into(),
            state: state.into(),
            generation: self.core.generation(),
            icount: self.icount,
            outputs_waiting: self.core.held(),
            throttled: self.throttled,
            log_bytes: self.counts.log_bytes,
            acks: self.counts.acks,
            failovers: self.counts.failovers,
            transfers: self.counts.transfers,
            transfer_bytes: self.counts.transfer_bytes,
            ..Status::default()
        };
        // The guest's speed since the last report turns the lag into host time.
        let now = Instant::now();
        let speed = self.counts.reported.map_or(0.0, |(i, t)| {
            self.icount.saturating_sub(i) as f64 / now.duration_since(t).as_secs_f64().max(1e-3)
        });
        self.counts.reported = Some((self.icount, now));
        if let Some(l) = &mut self.link {
            st.peer = l.backup.clone();
            let (b0, t0) = l.bytes_reported;
            let b = l.log.bytes_written();
            st.log_bytes_per_s = (b - b0) as f64 / t0.elapsed().as_secs_f64().max(1e-3);
            st.log_bytes += b;
            l.bytes_reported = (b, now);
            st.lag_insns = self.icount.saturating_sub(self.core.backup_icount());
            if speed > 0.0 {
                st.lag_ms = st.lag_insns as f64 / speed * 1e3;
            }
        }
        if let Some(s) = &self.transfer {
            st.peer = s.backup.clone();
            let (round, bytes) = s.progress();
            st.transfer_round = round;
            st.transfer_bytes += bytes;
        }
        self.status.write(&mut st);
    }

    fn state(&self) -> &'static str {
        match self.core.phase() {
            PrimaryPhase::Claiming => "starting",
            PrimaryPhase::Unprotected if self.transfer.is_some() => "transferring",
            PrimaryPhase::Unprotected => "unprotected",
            // Protected once the backup confirmed it holds the guest.
            PrimaryPhase::Protected if self.core.confirmed() => "protected",
            PrimaryPhase::Protected => "transferring",
            PrimaryPhase::Arbitrating => "failing over",
            PrimaryPhase::Stopping => "stopping",
            PrimaryPhase::Stopped => "stopped",
            PrimaryPhase::Halted => "halted",
        }
    }
}

impl Journal for Primary {
    fn event(&mut self, icount: u64, ev: &Event) -> Result<()> {
        if let Some(l) = &mut self.link {
            let payload = postcard::to_stdvec(ev).expect("event encodes");
            let r = l.log.event(icount, &payload);
            self.sent(r, icount);
            self.act();
        }
        Ok(())
    }

    fn output(&mut self, out: Output) -> Result<()> {
        if let Some(sender) = &mut self.transfer {
            // A write during the pre-copy: the backup's copy needs it again.
            if let OutputKind::Disk(BlkRequest {
                kind: BlkRequestKind::Write { sector, data },
                ..
            }) = &out.kind
            {
                sender.disk_written(sector * 512, data.len() as u64);
            }
        }
        self.icount = out.icount.0;
        let seq = match &mut self.link {
            Some(l) => {
                let r = l
                    .log
                    .output(out.icount.0, &output_digest(&out))
                    .and_then(|s| l.log.flush().map(|_| s));
                self.sent(r, out.icount.0)
            }
            None => None,
        };
        // Unlogged while protected (the channel failed): it waits for the arbiter.
        self.core.output(seq, out.kind, self.clock.now());
        self.act();
        Ok(())
    }

    fn released(&mut self) -> Vec<OutputKind> {
        let mut out = Vec::new();
        if !self.held_writes.is_empty() && self.permit.allows() {
            out = std::mem::take(&mut self.held_writes);
        }
        out.append(&mut self.ready);
        out
    }

    fn hold(&mut self, out: OutputKind) -> bool {
        // Sent once a lease or a won generation returns; dropped if this node halts
        // (the winner carries out the requests whose answers the log never had).
        self.held_writes.push(out);
        true
    }

    /// While a transfer runs or waits to begin: its steps read the guest's RAM and
    /// the image a backup with its own disk gets, so no answer may be under way.
    fn disk_quiet(&self) -> bool {
        self.transfer.is_some() || !self.deferred.is_empty()
    }

    fn next_checkpoint(&self) -> u64 {
        self.link.as_ref().map_or(u64::MAX, |l| l.next_checkpoint)
    }

    fn checkpoint(&mut self, icount: u64, hash: u128) -> Result<()> {
        let every = self.node.hash_every;
        if let Some(l) = &mut self.link {
            let r = l.log.state_hash(icount, hash);
            l.next_checkpoint = icount.saturating_add(every);
            self.sent(r, icount);
            self.act();
        }
        Ok(())
    }

    fn service(&mut self, machine: &mut Machine) -> Result<()> {
        self.icount = machine.icount().0;
        for c in std::mem::take(&mut self.deferred) {
            self.take_candidate(c, machine);
        }
        self.take_news()?;
        if self.transfer.is_some() {
            self.transfer_step(machine)?;
        }
        if let Some(l) = &mut self.link {
            if l.log.flush().is_err() {
                let now = self.clock.now();
                self.core
                    .channel_failed("the logging channel failed while sending", now);
            }
        }
        if self.core.protected() {
            self.bound_lag(self.icount);
        }
        self.core.tick(self.clock.now());
        self.act();
        if let Some(why) = self.halted.take() {
            return Err(Halted(why).into());
        }
        let throttled = self.core.throttled(self.icount);
        if throttled && !self.throttling {
            self.throttled += 1;
            tracing::info!(
                "the backup lags by more than {} instructions ({:?} of the guest's run or of the backup's replay at {} per ms): slowing down",
                self.core.lag_bound(),
                self.node.max_lag,
                self.core.backup_pace()
            );
        }
        self.throttling = throttled;
        if self.status.due() {
            let state = self.state();
            self.report(state);
        }
        Ok(())
    }

    fn may_run(&self, icount: u64) -> bool {
        self.core.may_run() && !self.core.throttled(icount)
    }

    fn takes_input(&self) -> bool {
        self.core.may_run()
    }

    fn holding(&self) -> bool {
        self.core.held() > 0
    }

    /// The core's next tick, the next status report; now while a transfer runs or a
    /// candidate waits.
    fn deadline(&self) -> Option<Instant> {
        if self.transfer.is_some() || !self.deferred.is_empty() {
            return Some(Instant::now());
        }
        let report = self.status.next_due();
        Some(match self.core.next_tick() {
            Some(t) => self.clock.instant(t).min(report),
            None => report,
        })
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.transfer.take() {
            eprintln!(
                "ftvm: {}: the run ends; the transfer to {} is abandoned",
                self.node.name, s.backup
            );
        }
        self.core.shutdown(self.clock.now());
        self.act();
        if !self.stopped {
            eprintln!(
                "ftvm: {}: the run ends; waiting for the backup to acknowledge {} held outputs",
                self.node.name,
                self.core.held()
            );
        }
    }

    fn stopped(&self) -> bool {
        self.stopped || self.halted.is_some()
    }

    fn finish(self: Box<Self>, icount: u64, hash: u128) -> Result<String> {
        let mut this = *self;
        this.icount = icount;
        this.report("stopped");
        match this.link {
            Some(l) => {
                let backup = l.backup.clone();
                l.log.finish(icount, hash).context("ending the log")?;
                Ok(format!(
                    "the guest stopped; the backup {backup} was told so"
                ))
            }
            None => Ok("the guest stopped".into()),
        }
    }
}

/// The ack reader: every ack the backup sends, and the channel's failure, become news
/// for the primary (its silence is the core's to judge: [`ftvm_replica::Primary::tick`]).
fn read_acks(stream: Box<dyn Channel>, link: u64, tx: &NewsSender) {
    let mut r = BufReader::new(stream);
    let mut a = [0u8; ACK_LEN];
    loop {
        match r.read_exact(&mut a) {
            Ok(()) => {
                let (seq, icount, pace) = wire::decode_ack(&a);
                if !tx.send(News::Ack {
                    link,
                    seq,
                    icount,
                    pace,
                }) {
                    return;
                }
            }
            Err(e) => {
                let why = match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => "the backup closed the channel".into(),
                    _ => format!("the channel failed: {e}"),
                };
                tx.send(News::Failed { link, why });
                return;
            }
        }
    }
}

/// Authenticate a connecting backup and agree on the pair's generation. Over TLS the
/// backup is who its certificate says, and its hello must say the same.
fn admit(mut tcp: TcpStream, node: &Node, slot: &Slot) -> Result<Candidate> {
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    let (mut stream, identity): (Box<dyn Channel>, Option<String>) = match &node.security {
        Security::Tls(creds) => {
            let mut ch = creds
                .log
                .accept(tcp)
                .with_context(|| format!("peer {peer}"))?;
            let id = ch.peer().to_string();
            // Only a node of this VM may hold its log (keys.rs: the VM in the
            // certificate).
            if ch.peer_vm() != Some(node.vm.as_str()) {
                let why = format!(
                    "peer {peer} ({id}) holds a certificate for {}, not for VM {}",
                    super::vm_phrase(ch.peer_vm()),
                    node.vm
                );
                let _ = wire::send(&mut ch, &Message::Refused(why.clone()));
                anyhow::bail!("{why}");
            }
            (Box::new(ch), Some(id))
        }
        Security::Plaintext { secret } => {
            ftvm_arbiter::server_handshake(&mut tcp, wire::GREETING, secret)
                .with_context(|| format!("peer {peer} failed the cluster-secret handshake"))?;
            (Box::new(tcp), None)
        }
    };
    let hello = match wire::recv(&mut stream, ftvm_machine::PAGE_SIZE)? {
        Message::Hello(h) => h,
        _ => anyhow::bail!("peer {peer} did not introduce itself"),
    };
    if let Some(id) = identity.filter(|id| *id != hello.node) {
        let why = format!(
            "peer {peer} introduced itself as {} but its certificate is {id}'s",
            hello.node
        );
        let _ = wire::send(&mut stream, &Message::Refused(why.clone()));
        anyhow::bail!("{why}");
    }
    slot.authenticated();
    if hello.vm != node.vm {
        let why = format!("this primary runs VM {}, not {}", node.vm, hello.vm);
        wire::send(&mut stream, &Message::Busy(why.clone()))?;
        anyhow::bail!("{why}");
    }
    let generation = match node.next_generation(0) {
        Ok(g) => g,
        Err(e) => {
            let why = format!("a pair needs the arbiter: {e:#}");
            wire::send(&mut stream, &Message::Busy(why.clone()))?;
            anyhow::bail!("{why}");
        }
    };
    // The write timeout bounds how long a stuck backup can stall the primary.
    stream.set_write_timeout(Some(node.timeout))?;
    Ok(Candidate {
        stream,
        hello,
        tls: matches!(node.security, Security::Tls(_)),
        generation,
    })
}
