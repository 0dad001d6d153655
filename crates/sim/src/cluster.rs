//! The simulated cluster: the world (network, switch, arbiter, disk, clients), the
//! nodes around the real FT core, the fault injector and the checkers.
//!
//! Time advances in quanta of [`QUANTUM`] µs. Each quantum: scheduled faults happen,
//! due messages are delivered (in time order, ties in send order), every node takes a
//! step (its core's tick and actions, then its guest runs), every client takes a step.
//! Faults are injected during the guest's first [`Params::fault_end`] µs; then the
//! world heals and the run goes on to [`Params::end`], by when service must have
//! resumed. The cluster is generic over the guest ([`Guest`]): the model guest or the
//! real machine.

use crate::guest::{
    Client as _, Effect, Guest, Observed, Params, Route, SharedDisk as _, DISK, ENTROPY,
};
use crate::lin::{self, Operation};
use crate::rng::Rng;
use ftvm_log::EntryKind;
use ftvm_replica::{
    Backup, BackupAction, BackupPhase, GoLive, Plant, Primary, PrimaryAction, PrimaryPhase,
    RequestId, Seq, Time, Verdict,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

/// One simulation step, µs.
pub const QUANTUM: u64 = 100;
/// Nodes (a primary, a backup, a spare).
const NODES: usize = 3;
/// Clients.
const CLIENTS: u32 = 3;
/// A live guest's clock may lag simulated time this much (µs) before a clock event.
const CLOCK_SLACK: u64 = 1_000;

/// Faults injected, per class.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Messages dropped by a lossy link.
    pub dropped: u64,
    /// Messages delivered twice.
    pub duplicated: u64,
    /// Messages delivered before one sent earlier on the same link.
    pub reordered: u64,
    /// Messages delayed beyond the link's base latency.
    pub delayed: u64,
    /// Messages lost to a partition.
    pub partitioned: u64,
    /// Partitions (each heals).
    pub partitions: u64,
    /// Node crashes.
    pub crashes: u64,
    /// Crashed nodes restarted as `ftvm primary` by a supervisor.
    pub primary_restarts: u64,
    /// Arbiter crashes (each restarts with its durable state).
    pub arbiter_crashes: u64,
    /// Switch restarts (go-live cannot plug in meanwhile).
    pub switch_restarts: u64,
    /// Disk writes that stalled.
    pub disk_stalls: u64,
    /// Disk writes that failed.
    pub disk_failures: u64,
    /// Seeds with a slow backup.
    pub slow_backups: u64,
}

impl Faults {
    /// Add another run's counts.
    pub fn add(&mut self, o: &Faults) {
        self.dropped += o.dropped;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.delayed += o.delayed;
        self.partitioned += o.partitioned;
        self.partitions += o.partitions;
        self.crashes += o.crashes;
        self.primary_restarts += o.primary_restarts;
        self.arbiter_crashes += o.arbiter_crashes;
        self.switch_restarts += o.switch_restarts;
        self.disk_stalls += o.disk_stalls;
        self.disk_failures += o.disk_failures;
        self.slow_backups += o.slow_backups;
    }

    /// (class, count) pairs, for printing.
    pub fn classes(&self) -> [(&'static str, u64); 13] {
        [
            ("message dropped", self.dropped),
            ("message duplicated", self.duplicated),
            ("message reordered", self.reordered),
            ("message delayed", self.delayed),
            ("message lost to a partition", self.partitioned),
            ("partition (healed)", self.partitions),
            ("node crash", self.crashes),
            ("primary restarted by a supervisor", self.primary_restarts),
            ("arbiter crash and restart", self.arbiter_crashes),
            ("switch restart", self.switch_restarts),
            ("disk write stalled", self.disk_stalls),
            ("disk write failed", self.disk_failures),
            ("slow backup", self.slow_backups),
        ]
    }
}

/// What one seed's run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Faults injected.
    pub faults: Faults,
    /// Violations found (empty: every checker green).
    pub violations: Vec<String>,
    /// Client operations completed.
    pub ops: u64,
    /// Backups that went live.
    pub failovers: u64,
    /// A digest of the whole run (same seed, same digest).
    pub digest: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}: {} ops, {} failovers, {} violations",
            self.seed,
            self.ops,
            self.failovers,
            self.violations.len()
        )?;
        for v in &self.violations {
            write!(f, "\n  violation: {v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Addr {
    Node(usize),
    Arbiter,
    Switch,
    Client(u32),
    Disk,
}

#[derive(Debug, Clone)]
enum Body<I> {
    Event(I),
    Output(u64),
    Hash(u64),
    Nothing,
}

/// A message of guest `G`'s cluster.
type M<G> = Msg<
    <G as Guest>::Input,
    <G as Guest>::Output,
    <G as Guest>::Frame,
    <G as Guest>::DiskReq,
    <G as Guest>::DiskAns,
    <G as Guest>::Transfer,
>;

#[derive(Debug, Clone)]
enum Msg<I, O, F, DQ, DA, T> {
    Entry {
        link: u64,
        seq: u64,
        icount: u64,
        kind: EntryKind,
        body: Body<I>,
    },
    Ack {
        link: u64,
        seq: u64,
        icount: u64,
        pace: u32,
    },
    Close {
        link: u64,
    },
    Join,
    Transfer {
        link: u64,
        generation: u64,
        guest: T,
        in_flight: Vec<(RequestId, Out<O>)>,
    },
    Ask {
        generation: u64,
        claimant: String,
    },
    Answer {
        generation: u64,
        verdict: Verdict,
    },
    Current,
    CurrentIs(Option<u64>),
    Frame(F),
    Write {
        epoch: u64,
        id: u64,
        req: DQ,
    },
    Land {
        node: usize,
        epoch: u64,
        id: u64,
        req: DQ,
    },
    WriteDone {
        id: u64,
        ans: DA,
    },
    Fence {
        epoch: u64,
    },
}

/// An output as the core holds it: the guest's output and the entry it was logged as.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Out<O> {
    out: O,
    logged: Option<(u64, u64)>,
}

struct Chan {
    id: u64,
    peer: usize,
    next_seq: u64,
}

struct Live<G: Guest> {
    core: Primary<Out<G::Output>>,
    guest: G,
    link: Option<Chan>,
    admitting: Option<(usize, u64)>,
    next_hash: u64,
    announced: bool,
    /// The guest idles (waits for an input or its timer).
    idle: bool,
}

struct Queued<G: Guest> {
    seq: u64,
    icount: u64,
    kind: EntryKind,
    body: Body<G::Input>,
    arrival: u64,
}

struct Replica<G: Guest> {
    core: Backup<Out<G::Output>>,
    guest: G,
    link: u64,
    primary: usize,
    queue: VecDeque<Queued<G>>,
    expected: VecDeque<(u64, u64, u64)>,
}

enum Role<G: Guest> {
    Down { restart_at: u64 },
    Spare { next_join: u64 },
    Live(Box<Live<G>>),
    Replica(Box<Replica<G>>),
    Halted,
    Stopped,
}

struct Node<G: Guest> {
    name: String,
    incarnation: u32,
    role: Role<G>,
    /// Replay slowdown (1: full speed).
    slow: u64,
}

impl<G: Guest> Node<G> {
    fn alive(&self) -> bool {
        !matches!(self.role, Role::Down { .. })
    }
}

#[derive(Default, Clone, Copy)]
struct LinkFault {
    drop: u64,
    dup: u64,
    jitter: u64,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Crash(usize),
    Partition(Addr, Addr, u64),
    ArbiterDown(u64),
    SwitchDown(u64),
}

struct Sim<'a, G: Guest> {
    now: u64,
    rng: Rng,
    plant: Option<Plant>,
    image: &'a G::Image,
    disk_state: G::Disk,
    queue: BTreeMap<(u64, u64), (Addr, Addr, M<G>)>,
    sent: u64,
    last_delivery: BTreeMap<(Addr, Addr), u64>,
    links: BTreeMap<(Addr, Addr), LinkFault>,
    cuts: Vec<(Addr, Addr, u64)>,
    plan: Vec<(u64, Fault)>,
    nodes: Vec<Node<G>>,
    arbiter_up_at: u64,
    decided: BTreeMap<u64, String>,
    switch_up_at: u64,
    owner: Option<usize>,
    fence: u64,
    landed_epoch: u64,
    disk_stall: u64,
    disk_fail: u64,
    clients: Vec<G::Client>,
    obs: Observed,
    faults: Faults,
    violations: Vec<String>,
    next_link: u64,
    held_by_backup: BTreeMap<u64, u64>,
    /// Each channel's pair generation.
    link_generation: BTreeMap<u64, u64>,
    releaser: Option<(usize, u32)>,
    superseded: BTreeSet<(usize, u32)>,
    failovers: u64,
    trace: bool,
}

/// Run one seed of the model guest (optionally with a planted bug) and check it.
pub fn run_seed(seed: u64, plant: Option<Plant>) -> Report {
    run::<crate::model::Model>(seed, plant, false, &())
}

/// Run one seed of the model guest printing every delivered message to stderr (for a
/// failing seed).
pub fn trace_seed(seed: u64, plant: Option<Plant>) -> Report {
    run::<crate::model::Model>(seed, plant, true, &())
}

/// Run one seed of guest `G` from its boot image (tracing every delivered message to
/// stderr if `trace`) and check it.
pub fn run<G: Guest>(seed: u64, plant: Option<Plant>, trace: bool, image: &G::Image) -> Report {
    let mut s = Sim::<G>::new(seed, plant, image);
    s.trace = trace;
    while s.now < G::PARAMS.end && s.violations.is_empty() {
        s.step();
        s.now += QUANTUM;
    }
    s.finish();
    let ops = s
        .obs
        .history
        .iter()
        .flatten()
        .filter(|o| o.ret.is_some())
        .count() as u64;
    Report {
        seed,
        faults: s.faults,
        violations: s.violations,
        ops,
        failovers: s.failovers,
        digest: s.obs.digest,
    }
}

impl<'a, G: Guest> Sim<'a, G> {
    fn p() -> Params {
        G::PARAMS
    }

    fn new(seed: u64, plant: Option<Plant>, image: &'a G::Image) -> Sim<'a, G> {
        let fault_end = Self::p().fault_end;
        let mut rng = Rng::new(seed);
        let mut faults = Faults::default();
        let mut nodes: Vec<Node<G>> = (0..NODES)
            .map(|i| Node {
                name: format!("n{i}"),
                incarnation: 0,
                role: Role::Spare { next_join: 0 },
                slow: 1,
            })
            .collect();
        nodes[0].role = Role::Live(Box::new(Live::boot(&nodes[0], plant, 0, image)));
        if rng.chance(200) {
            nodes[1].slow = rng.range(2, 6);
            faults.slow_backups += 1;
        }
        // Lossy links, each with its own mix.
        let mut links = BTreeMap::new();
        let mut addrs: Vec<Addr> = (0..NODES).map(Addr::Node).collect();
        addrs.extend([Addr::Arbiter, Addr::Switch]);
        addrs.extend((0..CLIENTS).map(Addr::Client));
        for (i, &a) in addrs.iter().enumerate() {
            for &b in &addrs[i + 1..] {
                let client_link = matches!((a, b), (Addr::Client(_), Addr::Switch));
                let meaningful = match (a, b) {
                    (Addr::Node(_), _) => true,
                    (Addr::Arbiter, Addr::Switch) => false,
                    (_, Addr::Client(_)) => false,
                    _ => client_link,
                };
                if meaningful && rng.chance(300) {
                    let f = LinkFault {
                        drop: if rng.chance(500) { rng.range(1, 30) } else { 0 },
                        dup: if rng.chance(500) { rng.range(1, 30) } else { 0 },
                        jitter: if rng.chance(600) {
                            rng.range(100, 3_000)
                        } else {
                            0
                        },
                    };
                    links.insert((a, b), f);
                }
            }
        }
        let mut plan = Vec::new();
        for _ in 0..rng.below(6) {
            let at = rng.range(5_000, fault_end);
            let f = match rng.below(10) {
                0..=3 => Fault::Crash(rng.below(NODES as u64) as usize),
                4..=6 => {
                    let a = Addr::Node(rng.below(NODES as u64) as usize);
                    let b = match rng.below(4) {
                        0 => Addr::Arbiter,
                        1 => Addr::Switch,
                        _ => Addr::Node(rng.below(NODES as u64) as usize),
                    };
                    Fault::Partition(a, b, rng.range(5_000, 100_000))
                }
                7..=8 => Fault::ArbiterDown(rng.range(5_000, 80_000)),
                _ => Fault::SwitchDown(rng.range(5_000, 60_000)),
            };
            plan.push((at, f));
        }
        plan.sort_by_key(|(at, _)| *at);
        let disk_stall = if rng.chance(300) {
            rng.range(10, 200)
        } else {
            0
        };
        let disk_fail = if rng.chance(200) { rng.range(5, 50) } else { 0 };
        let clients = (0..CLIENTS)
            .map(|id| G::Client::new(id, &mut rng))
            .collect();
        Sim {
            now: 0,
            rng,
            plant,
            image,
            disk_state: G::disk(image),
            queue: BTreeMap::new(),
            sent: 0,
            last_delivery: BTreeMap::new(),
            links,
            cuts: Vec::new(),
            plan,
            nodes,
            arbiter_up_at: 0,
            decided: BTreeMap::new(),
            switch_up_at: 0,
            owner: None,
            fence: 0,
            landed_epoch: 0,
            disk_stall,
            disk_fail,
            clients,
            obs: Observed {
                digest: 0xcbf2_9ce4_8422_2325,
                ..Observed::default()
            },
            faults,
            violations: Vec::new(),
            next_link: 1,
            held_by_backup: BTreeMap::new(),
            link_generation: BTreeMap::new(),
            releaser: None,
            superseded: BTreeSet::new(),
            failovers: 0,
            trace: false,
        }
    }

    fn t(&self) -> Time {
        Time(self.now)
    }

    fn mix(&mut self, v: u64) {
        self.obs.mix(v);
    }

    fn violation(&mut self, what: String) {
        if self.trace {
            eprintln!("{} VIOLATION {what}", Time(self.now));
        }
        self.violations
            .push(format!("at {}: {what}", Time(self.now)));
    }

    // ---- the network ----

    fn cut(&self, a: Addr, b: Addr) -> bool {
        self.cuts
            .iter()
            .any(|&(x, y, until)| self.now < until && ((x, y) == (a, b) || (x, y) == (b, a)))
    }

    fn send(&mut self, from: Addr, to: Addr, msg: M<G>) {
        if let Addr::Node(i) = from {
            if !self.nodes[i].alive() {
                return;
            }
        }
        let mut delay = 50;
        let key = if from < to { (from, to) } else { (to, from) };
        let faulty = self.now < Self::p().fault_end;
        if faulty && self.cut(from, to) {
            self.faults.partitioned += 1;
            return;
        }
        let mut copies = 1;
        if faulty && from != Addr::Disk && to != Addr::Disk {
            if let Some(f) = self.links.get(&key).copied() {
                if self.rng.chance(f.drop) {
                    self.faults.dropped += 1;
                    return;
                }
                if self.rng.chance(f.dup) {
                    self.faults.duplicated += 1;
                    copies = 2;
                }
                if f.jitter > 0 {
                    let j = self.rng.below(f.jitter);
                    if j > 0 {
                        self.faults.delayed += 1;
                    }
                    delay += j;
                }
            }
        }
        for c in 0..copies {
            let at = self.now + delay + c * self.rng.range(1, 500);
            let last = self.last_delivery.entry((from, to)).or_insert(0);
            if at < *last {
                self.faults.reordered += 1;
            }
            *last = (*last).max(at);
            self.sent += 1;
            self.queue.insert((at, self.sent), (from, to, msg.clone()));
        }
    }

    fn deliver_due(&mut self) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let ((at, n), (from, to, msg)) = entry.remove_entry();
            self.mix(at ^ n.rotate_left(17));
            if self.trace {
                eprintln!("{} {from:?} -> {to:?}: {msg:?}", Time(self.now));
            }
            self.handle(from, to, msg);
        }
    }

    fn handle(&mut self, from: Addr, to: Addr, msg: M<G>) {
        match to {
            Addr::Arbiter => self.arbiter(from, msg),
            Addr::Switch => self.switch(from, msg),
            Addr::Disk => self.disk(from, msg),
            Addr::Client(c) => self.client_reply(c, msg),
            Addr::Node(i) => self.node_msg(i, from, msg),
        }
    }

    // ---- the world's services ----

    fn arbiter(&mut self, from: Addr, msg: M<G>) {
        if self.now < self.arbiter_up_at {
            return; // down: requests go unanswered
        }
        let reply = match msg {
            Msg::Ask {
                generation,
                claimant,
            } => {
                // The real arbiter's rule (crates/arbiter, issue 12): an undecided
                // generation other than the next is refused. A node asking one is a bug.
                let next = self.decided.keys().next_back().map_or(0, |g| g + 1);
                if !self.decided.contains_key(&generation) && generation != next {
                    self.violation(format!(
                        "{from:?} asked for generation {generation} out of order (the next is {next})"
                    ));
                    return;
                }
                let winner = self
                    .decided
                    .entry(generation)
                    .or_insert(claimant.clone())
                    .clone();
                let verdict = if winner == claimant {
                    Verdict::Won
                } else {
                    Verdict::Lost { winner }
                };
                Msg::Answer {
                    generation,
                    verdict,
                }
            }
            Msg::Current => Msg::CurrentIs(self.decided.keys().next_back().copied()),
            _ => return,
        };
        self.send(Addr::Arbiter, from, reply);
    }

    fn switch(&mut self, from: Addr, msg: M<G>) {
        if self.now < self.switch_up_at {
            return;
        }
        match (from, msg) {
            (Addr::Client(_), Msg::Frame(f)) => {
                if let Some(o) = self.owner {
                    self.send(Addr::Switch, Addr::Node(o), Msg::Frame(f));
                }
            }
            (Addr::Node(_), Msg::Frame(f)) => match G::route(&f) {
                Route::Client(c) => self.send(Addr::Switch, Addr::Client(c), Msg::Frame(f)),
                Route::All => {
                    for c in 0..CLIENTS {
                        self.send(Addr::Switch, Addr::Client(c), Msg::Frame(f.clone()));
                    }
                }
                Route::Drop => {}
            },
            _ => {}
        }
    }

    fn disk(&mut self, from: Addr, msg: M<G>) {
        match (from, msg) {
            (Addr::Node(node), Msg::Write { epoch, id, req }) => {
                let mut delay = 20;
                if self.disk_stall > 0 && self.rng.chance(self.disk_stall) {
                    self.faults.disk_stalls += 1;
                    delay += self.rng.range(5_000, 80_000);
                }
                let land = Msg::Land {
                    node,
                    epoch,
                    id,
                    req,
                };
                self.sent += 1;
                self.queue.insert(
                    (self.now + delay, self.sent),
                    (Addr::Disk, Addr::Disk, land),
                );
            }
            (Addr::Node(_), Msg::Fence { epoch }) => self.fence = self.fence.max(epoch),
            (
                Addr::Disk,
                Msg::Land {
                    node,
                    epoch,
                    id,
                    req,
                },
            ) => {
                let ans = if epoch < self.fence {
                    G::Disk::failed(&req)
                } else if self.disk_fail > 0 && self.rng.chance(self.disk_fail) {
                    self.faults.disk_failures += 1;
                    G::Disk::failed(&req)
                } else {
                    let landed = self.disk_state.apply(&req);
                    if let Some(value) = landed.wrote {
                        if epoch < self.landed_epoch {
                            self.violation(format!(
                                "a stale disk write landed: {req:?} from epoch {epoch} after epoch {} wrote",
                                self.landed_epoch
                            ));
                        }
                        self.landed_epoch = self.landed_epoch.max(epoch);
                        self.mix(value);
                    }
                    landed.answer
                };
                self.send(Addr::Disk, Addr::Node(node), Msg::WriteDone { id, ans });
            }
            _ => {}
        }
    }

    // ---- clients ----

    fn clients_step(&mut self) {
        for c in 0..self.clients.len() {
            let frames =
                self.clients[c].step(self.now, Self::p().end, &mut self.rng, &mut self.obs);
            for f in frames {
                self.send(Addr::Client(c as u32), Addr::Switch, Msg::Frame(f));
            }
        }
    }

    fn client_reply(&mut self, c: u32, msg: M<G>) {
        let Msg::Frame(f) = msg else { return };
        self.clients[c as usize].receive(self.now, f, &mut self.obs);
    }

    // ---- faults ----

    fn apply_faults(&mut self) {
        while self.plan.first().is_some_and(|(at, _)| *at <= self.now) {
            let (_, f) = self.plan.remove(0);
            match f {
                Fault::Crash(i) => self.crash(i),
                Fault::Partition(a, b, d) if a != b => {
                    self.faults.partitions += 1;
                    self.cuts.push((a, b, self.now + d));
                }
                Fault::Partition(..) => {}
                Fault::ArbiterDown(d) => {
                    self.faults.arbiter_crashes += 1;
                    self.arbiter_up_at = self.now + d;
                }
                Fault::SwitchDown(d) => {
                    self.faults.switch_restarts += 1;
                    self.switch_up_at = self.now + d;
                }
            }
        }
    }

    /// Whether the guest survives losing node `i`: some other live node holds it
    /// (a protected pair's other half, or the live primary when `i` is not it).
    fn may_crash(&self, i: usize) -> bool {
        let live = |j: usize| match &self.nodes[j].role {
            Role::Live(l) => l.core.may_run(),
            _ => false,
        };
        match &self.nodes[i].role {
            Role::Live(l) => {
                l.core.protected()
                    && l.core.confirmed()
                    && l.link
                        .as_ref()
                        .is_some_and(|c| match &self.nodes[c.peer].role {
                            Role::Replica(r) => {
                                r.link == c.id && r.core.phase() == BackupPhase::Replaying
                            }
                            _ => false,
                        })
            }
            Role::Down { .. } => false,
            _ => (0..NODES).any(|j| j != i && live(j)),
        }
    }

    fn crash(&mut self, i: usize) {
        if !self.may_crash(i) {
            return;
        }
        self.faults.crashes += 1;
        // A process crash closes its connections; a host crash leaves them silent.
        if self.rng.chance(500) {
            let peer = match &self.nodes[i].role {
                Role::Live(l) => l.link.as_ref().map(|c| (c.peer, c.id)),
                Role::Replica(r) => Some((r.primary, r.link)),
                _ => None,
            };
            if let Some((p, link)) = peer {
                self.send(Addr::Node(i), Addr::Node(p), Msg::Close { link });
            }
        }
        let restart_at = self.now + self.rng.range(10_000, 80_000);
        self.nodes[i].role = Role::Down { restart_at };
    }

    fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.incarnation += 1;
        n.slow = 1;
        // Now and then a supervisor restarts the node as `ftvm primary`.
        if self.rng.chance(300) {
            self.faults.primary_restarts += 1;
            let live = Live::boot(&self.nodes[i], self.plant, self.now, self.image);
            self.nodes[i].role = Role::Live(Box::new(live));
        } else {
            self.nodes[i].role = Role::Spare {
                next_join: self.now,
            };
        }
    }

    // ---- nodes ----

    fn step(&mut self) {
        self.apply_faults();
        self.deliver_due();
        for i in 0..NODES {
            self.node_step(i);
        }
        self.clients_step();
    }

    fn node_msg(&mut self, i: usize, from: Addr, msg: M<G>) {
        let now = self.t();
        match &mut self.nodes[i].role {
            Role::Live(l) => {
                match msg {
                    Msg::Frame(f) if l.core.may_run() => {
                        self.inject(i, G::frame_input(f));
                    }
                    Msg::WriteDone { id, ans } if l.core.may_run() => {
                        self.inject(i, G::disk_input(id, ans));
                    }
                    Msg::Ack {
                        link,
                        seq,
                        icount,
                        pace,
                    } if l.link.as_ref().is_some_and(|c| c.id == link) => {
                        let errors = l.core.protocol_errors();
                        l.core.backup_paced(pace);
                        l.core.ack(Seq(seq), icount, now);
                        // Nobody forges acks here: every one must match what was sent.
                        if l.core.protocol_errors() > errors {
                            let what = format!(
                                "node {i} took an honest ack (entry {seq}, instruction {icount}) for a protocol error"
                            );
                            self.violation(what);
                        }
                    }
                    Msg::Close { link } if l.link.as_ref().is_some_and(|c| c.id == link) => {
                        l.core.channel_failed("the backup closed the channel", now);
                    }
                    Msg::Answer {
                        generation,
                        verdict,
                    } => l.core.arbiter(generation, verdict, now),
                    Msg::Join => {
                        if let Addr::Node(j) = from {
                            if l.core.phase() == PrimaryPhase::Unprotected
                                && l.admitting.is_none_or(|(_, at)| self.now - at > 50_000)
                            {
                                l.admitting = Some((j, self.now));
                                self.send(Addr::Node(i), Addr::Arbiter, Msg::Current);
                            }
                        }
                    }
                    Msg::CurrentIs(decided) => self.admit(i, decided),
                    _ => {}
                }
                self.primary_actions(i);
            }
            Role::Replica(r) => {
                match msg {
                    Msg::Entry {
                        link,
                        seq,
                        icount,
                        kind,
                        body,
                    } if link == r.link && r.core.received(Seq(seq), icount, kind, now) => {
                        r.queue.push_back(Queued {
                            seq,
                            icount,
                            kind,
                            body,
                            arrival: self.now,
                        });
                        let h = self.held_by_backup.entry(link).or_insert(0);
                        *h = (*h).max(seq);
                    }
                    Msg::Close { link } if link == r.link => {
                        r.core.channel_failed("the primary closed the channel", now)
                    }
                    Msg::Answer {
                        generation,
                        verdict,
                    } => r.core.arbiter(generation, verdict, now),
                    _ => {}
                }
                self.backup_actions(i);
            }
            Role::Spare { .. } => {
                if let (
                    Addr::Node(p),
                    Msg::Transfer {
                        link,
                        generation,
                        guest,
                        in_flight,
                    },
                ) = (from, msg)
                {
                    let guest = G::receive(guest);
                    let mut core = Backup::new(
                        &self.nodes[i].name,
                        generation,
                        guest.icount(),
                        Self::p().timing,
                        self.plant,
                        now,
                    );
                    core.in_flight(in_flight);
                    self.nodes[i].role = Role::Replica(Box::new(Replica {
                        core,
                        guest,
                        link,
                        primary: p,
                        queue: VecDeque::new(),
                        expected: VecDeque::new(),
                    }));
                }
            }
            _ => {}
        }
    }

    /// A joining spare gets the guest and the pair a new generation.
    fn admit(&mut self, i: usize, decided: Option<u64>) {
        let now = self.t();
        let link_id = self.next_link;
        let Role::Live(l) = &mut self.nodes[i].role else {
            return;
        };
        let Some((j, _)) = l.admitting.take() else {
            return;
        };
        if l.core.phase() != PrimaryPhase::Unprotected || j == i {
            return;
        }
        self.next_link += 1;
        let generation = l.core.next_generation(decided);
        let guest = l.guest.transfer();
        let in_flight = l.core.in_flight();
        l.core
            .attached(&format!("n{j}"), generation, l.guest.icount(), now);
        // The lag bound as time: what the primary runs in it at full speed.
        let window = Time(Self::p().max_lag.saturating_mul(QUANTUM) / Self::p().speed);
        l.core.set_max_lag(Self::p().max_lag, window);
        self.link_generation.insert(link_id, generation);
        l.link = Some(Chan {
            id: link_id,
            peer: j,
            next_seq: 1,
        });
        l.next_hash = l.guest.icount() + Self::p().hash_every;
        self.send(
            Addr::Node(i),
            Addr::Node(j),
            Msg::Transfer {
                link: link_id,
                generation,
                guest,
                in_flight,
            },
        );
    }

    /// An input reaches the live guest: logged first (the input door). Guest time
    /// catches up with simulated time first, as the live driver's does.
    fn inject(&mut self, i: usize, input: G::Input) {
        self.sync_clock(i, 0);
        self.inject_now(i, input);
    }

    fn inject_now(&mut self, i: usize, input: G::Input) {
        let Role::Live(l) = &mut self.nodes[i].role else {
            return;
        };
        let icount = l.guest.icount();
        l.guest.inject(&input);
        l.idle = false;
        if let Some(id) = G::answers(&input) {
            l.core.answered(id);
        }
        self.log(i, icount, EntryKind::Event, Body::Event(input));
    }

    /// A clock event if the live guest's time lags simulated time by more than `slack`.
    fn sync_clock(&mut self, i: usize, slack: u64) {
        let Role::Live(l) = &self.nodes[i].role else {
            return;
        };
        if let Some(c) = l.guest.clock(self.now, slack) {
            self.inject_now(i, c);
        }
    }

    /// Write an entry on the channel to the backup; its sequence number.
    fn log(
        &mut self,
        i: usize,
        icount: u64,
        kind: EntryKind,
        body: Body<G::Input>,
    ) -> Option<(u64, u64)> {
        let now = self.t();
        let Role::Live(l) = &mut self.nodes[i].role else {
            return None;
        };
        let c = l.link.as_mut()?;
        let (link, seq, peer) = (c.id, c.next_seq, c.peer);
        c.next_seq += 1;
        l.core.sent(Seq(seq), icount, now);
        self.send(
            Addr::Node(i),
            Addr::Node(peer),
            Msg::Entry {
                link,
                seq,
                icount,
                kind,
                body,
            },
        );
        Some((link, seq))
    }

    fn node_step(&mut self, i: usize) {
        let now = self.t();
        match &mut self.nodes[i].role {
            Role::Down { restart_at } => {
                if self.now >= *restart_at {
                    self.restart(i);
                }
            }
            Role::Spare { next_join } => {
                if self.now >= *next_join {
                    *next_join = self.now + 20_000;
                    for j in 0..NODES {
                        if j != i {
                            self.send(Addr::Node(i), Addr::Node(j), Msg::Join);
                        }
                    }
                }
            }
            Role::Live(l) => {
                l.core.tick(now);
                self.primary_actions(i);
                self.run_live(i);
                self.primary_actions(i);
            }
            Role::Replica(r) => {
                r.core.tick(now);
                self.backup_actions(i);
                self.run_replica(i);
                self.backup_actions(i);
            }
            Role::Halted | Role::Stopped => {}
        }
    }

    fn run_live(&mut self, i: usize) {
        let Role::Live(l) = &mut self.nodes[i].role else {
            return;
        };
        if !l.core.may_run() {
            return;
        }
        // An idle guest wakes for its timer (guest time jumps to now) or an input.
        if l.idle {
            if l.guest.wake_at().is_none_or(|t| t > self.now) {
                return;
            }
            self.sync_clock(i, 0);
        } else {
            self.sync_clock(i, CLOCK_SLACK);
        }
        let Role::Live(l) = &mut self.nodes[i].role else {
            return;
        };
        let target = l.guest.icount() + Self::p().speed;
        while let Role::Live(l) = &mut self.nodes[i].role {
            let icount = l.guest.icount();
            if icount >= target || l.idle || !l.core.may_run() || l.core.throttled(icount) {
                break;
            }
            let stop = if l.link.is_some() {
                target.min(l.next_hash)
            } else {
                target
            };
            l.idle = !l.guest.run(stop);
            let outs = l.guest.take_outputs();
            let at_hash = l.link.is_some() && l.guest.icount() == l.next_hash;
            let hash = at_hash.then(|| (l.guest.icount(), l.guest.state_hash()));
            for (at, out) in outs {
                let logged = self.log(i, at, EntryKind::Output, Body::Output(G::digest(&out)));
                let now = self.t();
                if let Role::Live(l) = &mut self.nodes[i].role {
                    l.core
                        .output(logged.map(|(_, s)| Seq(s)), Out { out, logged }, now);
                }
            }
            if let Some((at, hash)) = hash {
                self.log(i, at, EntryKind::StateHash, Body::Hash(hash));
                if let Role::Live(l) = &mut self.nodes[i].role {
                    l.next_hash += Self::p().hash_every;
                }
            }
            self.primary_actions(i);
        }
    }

    fn primary_actions(&mut self, i: usize) {
        loop {
            let Role::Live(l) = &mut self.nodes[i].role else {
                return;
            };
            let actions = l.core.actions();
            if actions.is_empty() {
                return;
            }
            for a in actions {
                self.primary_action(i, a);
            }
        }
    }

    fn primary_action(&mut self, i: usize, a: PrimaryAction<Out<G::Output>>) {
        let Role::Live(l) = &mut self.nodes[i].role else {
            return;
        };
        match a {
            PrimaryAction::Start => {
                if self.now >= self.switch_up_at {
                    self.owner = Some(i);
                    l.announced = true;
                }
            }
            PrimaryAction::Heartbeat => {
                let icount = l.guest.icount();
                self.log(i, icount, EntryKind::Progress, Body::Nothing);
            }
            PrimaryAction::Release(out) => self.release(i, out),
            PrimaryAction::Ask {
                generation,
                claimant,
            } => self.send(
                Addr::Node(i),
                Addr::Arbiter,
                Msg::Ask {
                    generation,
                    claimant,
                },
            ),
            PrimaryAction::DropBackup(_) => {
                if let Some(c) = l.link.take() {
                    self.send(Addr::Node(i), Addr::Node(c.peer), Msg::Close { link: c.id });
                }
            }
            PrimaryAction::Fence { epoch } => {
                self.send(Addr::Node(i), Addr::Disk, Msg::Fence { epoch })
            }
            PrimaryAction::Halt(_) => self.nodes[i].role = Role::Halted,
            PrimaryAction::Stopped { .. } => self.nodes[i].role = Role::Stopped,
        }
    }

    /// An output reaches the world: the checkers look at it here.
    fn release(&mut self, i: usize, out: Out<G::Output>) {
        let me = (i, self.nodes[i].incarnation);
        if let Some((link, seq)) = out.logged {
            let held = self.held_by_backup.get(&link).copied().unwrap_or(0);
            // Unless this node won the pair's generation: then no backup can go live.
            let owner = self
                .link_generation
                .get(&link)
                .and_then(|g| self.decided.get(g))
                .is_some_and(|w| *w == self.nodes[i].name);
            if held < seq && !owner {
                self.violation(format!(
                    "Output Rule: n{i} released {:?} (entry {seq}) but the backup holds entries only through {held}",
                    out.out
                ));
            }
        }
        let effect = G::effect(&out.out);
        if let Effect::Frame(_) = effect {
            if self.releaser != Some(me) {
                if self.superseded.contains(&me) {
                    self.violation(format!(
                        "two nodes' outputs reached the world: n{i} released {:?} after another node took over",
                        out.out
                    ));
                }
                if let Some(prev) = self.releaser {
                    self.superseded.insert(prev);
                }
                self.releaser = Some(me);
            }
        }
        let epoch = match &self.nodes[i].role {
            Role::Live(l) => l.core.epoch(),
            _ => 0,
        };
        match effect {
            Effect::Frame(f) => self.send(Addr::Node(i), Addr::Switch, Msg::Frame(f)),
            Effect::Disk(id, req) => {
                if let Role::Live(l) = &mut self.nodes[i].role {
                    l.core
                        .requested(RequestId { device: DISK, id }, out.clone());
                }
                self.send(Addr::Node(i), Addr::Disk, Msg::Write { epoch, id, req })
            }
            // This node's world answers at once: an input, logged like any other.
            Effect::Entropy(id, len) => {
                if let Role::Live(l) = &mut self.nodes[i].role {
                    l.core.requested(
                        RequestId {
                            device: ENTROPY,
                            id,
                        },
                        out.clone(),
                    );
                }
                let bytes = (0..len).map(|_| self.rng.next_u64() as u8).collect();
                self.inject(i, G::entropy_input(id, bytes));
            }
            Effect::Nothing => {}
        }
    }

    fn run_replica(&mut self, i: usize) {
        let now = self.t();
        let slow = self.nodes[i].slow;
        let Role::Replica(r) = &mut self.nodes[i].role else {
            return;
        };
        let mut budget = Self::p().speed / slow;
        let mut problem = None;
        while r.core.replaying() && problem.is_none() {
            // Output entries only announce what the replay will produce.
            while r.queue.front().is_some_and(|q| q.kind == EntryKind::Output) {
                let q = r.queue.pop_front().expect("front exists");
                if let Body::Output(d) = q.body {
                    r.expected.push_back((q.icount, d, q.arrival));
                }
                r.core.applied(Seq(q.seq), r.guest.icount(), now);
            }
            let target = r.queue.front().map_or(r.core.limit(), |q| q.icount);
            if r.guest.icount() > target {
                problem = Some(format!(
                    "divergence: n{i}'s replay is at instruction {} past an entry at {target}",
                    r.guest.icount()
                ));
                break;
            }
            if r.guest.icount() < target {
                if budget == 0 {
                    break;
                }
                let stop = target.min(r.guest.icount() + budget);
                let from = r.guest.icount();
                let ran = r.guest.run(stop);
                let insns = r.guest.icount() - from;
                budget -= insns;
                // A quantum's replay is speed / slow instructions: their share of it.
                let busy = insns.saturating_mul(QUANTUM * slow) / Self::p().speed;
                r.core.replayed(insns, Time(busy));
                for (at, out) in r.guest.take_outputs() {
                    match r.expected.pop_front() {
                        Some((icount, digest, arrival))
                            if icount == at && digest == G::digest(&out) =>
                        {
                            let class = G::class(&out);
                            r.core
                                .produced(class, Out { out, logged: None }, Time(arrival));
                        }
                        other => {
                            problem = Some(format!(
                                "divergence: n{i}'s replay produced {out:?} at {at}, the log says {other:?}"
                            ));
                        }
                    }
                }
                if !ran {
                    // The primary's guest idled here too: its next entry is at this
                    // count. Idling short of an entry is a divergence.
                    if r.queue.front().is_some_and(|q| q.icount > r.guest.icount()) {
                        problem = Some(format!(
                            "divergence: n{i}'s replay idles at instruction {} short of an entry at {target}",
                            r.guest.icount()
                        ));
                    }
                    break;
                }
                continue;
            }
            let Some(q) = r.queue.pop_front() else {
                break;
            };
            match q.body {
                Body::Event(input) => {
                    r.guest.inject(&input);
                    if let Some(id) = G::answers(&input) {
                        r.core.answered(id);
                    }
                }
                Body::Hash(h) if h != r.guest.state_hash() => {
                    problem = Some(format!(
                        "divergence: n{i}'s state hash at instruction {} differs from the primary's",
                        q.icount
                    ));
                }
                _ => {}
            }
            if q.kind == EntryKind::End {
                r.core.ended();
            }
            r.core.applied(Seq(q.seq), r.guest.icount(), now);
        }
        if let Some(p) = problem {
            self.violation(p);
            self.nodes[i].role = Role::Halted;
        }
    }

    fn backup_actions(&mut self, i: usize) {
        loop {
            let Role::Replica(r) = &mut self.nodes[i].role else {
                return;
            };
            let actions = r.core.actions();
            if actions.is_empty() {
                return;
            }
            for a in actions {
                let Role::Replica(r) = &mut self.nodes[i].role else {
                    return;
                };
                let (p, link) = (r.primary, r.link);
                match a {
                    BackupAction::Ack { seq, icount, pace } => self.send(
                        Addr::Node(i),
                        Addr::Node(p),
                        Msg::Ack {
                            link,
                            seq: seq.0,
                            icount,
                            pace,
                        },
                    ),
                    BackupAction::DropPrimary(_) => {
                        self.send(Addr::Node(i), Addr::Node(p), Msg::Close { link })
                    }
                    BackupAction::Ask {
                        generation,
                        claimant,
                    } => self.send(
                        Addr::Node(i),
                        Addr::Arbiter,
                        Msg::Ask {
                            generation,
                            claimant,
                        },
                    ),
                    BackupAction::GoLive(plan) => self.go_live(i, plan),
                    BackupAction::Halt(_) => self.nodes[i].role = Role::Halted,
                }
            }
        }
    }

    /// Carry out a go-live plan: plug into the switch (or retry while it restarts),
    /// fence the disk, re-issue, re-send, announce.
    fn go_live(&mut self, i: usize, plan: GoLive<Out<G::Output>>) {
        let now = self.t();
        let Role::Replica(r) = &mut self.nodes[i].role else {
            return;
        };
        if self.now < self.switch_up_at {
            r.core.live_failed("the switch is restarting", now);
            return;
        }
        r.core.went_live();
        let Role::Replica(r) = std::mem::replace(&mut self.nodes[i].role, Role::Halted) else {
            unreachable!()
        };
        self.failovers += 1;
        let core = Primary::live(
            &self.nodes[i].name,
            plan.generation,
            Self::p().timing,
            self.plant,
        );
        self.nodes[i].role = Role::Live(Box::new(Live {
            core,
            guest: r.guest,
            link: None,
            admitting: None,
            next_hash: u64::MAX,
            announced: true,
            idle: false,
        }));
        if let Some(epoch) = plan.fence {
            self.send(Addr::Node(i), Addr::Disk, Msg::Fence { epoch });
        }
        self.owner = Some(i);
        // Carried out by this node's world now, under no log entry of its own.
        for mut o in plan.reissue.into_iter().chain(plan.resend) {
            o.logged = None;
            self.release(i, o);
        }
    }

    // ---- the end ----

    fn finish(&mut self) {
        if !self.violations.is_empty() {
            return;
        }
        let history: Vec<Operation> = self.obs.history.iter().flatten().copied().collect();
        if let Err(e) = lin::check(&history) {
            self.violation(format!("linearizability: {e}"));
        }
        let live: Vec<usize> = (0..NODES)
            .filter(|&i| matches!(&self.nodes[i].role, Role::Live(l) if l.core.may_run()))
            .collect();
        let counter = live.iter().find_map(|&i| match &self.nodes[i].role {
            Role::Live(l) if Some(i) == self.owner => Some(l.guest.counter(&self.disk_state)),
            _ => None,
        });
        match counter {
            Some(c) if c < self.obs.max_acked => self.violation(format!(
                "an acknowledged increment was lost: clients saw {} but the live guest holds {c}",
                self.obs.max_acked
            )),
            None => self.violation("no node runs the guest at the end".into()),
            _ => {}
        }
        let resumed = Self::p().fault_end + Self::p().recovery;
        for c in 0..CLIENTS {
            let served = history
                .iter()
                .any(|o| o.client == c && o.call >= resumed && o.ret.is_some());
            if !served {
                self.violation(format!(
                    "service did not resume: client {c} got no reply to a request made {} after the faults healed",
                    Time(Self::p().recovery)
                ));
            }
        }
    }
}

impl<G: Guest> Live<G> {
    fn boot(node: &Node<G>, plant: Option<Plant>, now: u64, image: &G::Image) -> Live<G> {
        Live {
            core: Primary::boot(
                &node.name,
                &node.incarnation.to_string(),
                G::PARAMS.timing,
                plant,
                Time(now),
            ),
            guest: G::boot(image),
            link: None,
            admitting: None,
            next_hash: u64::MAX,
            announced: false,
            idle: false,
        }
    }
}
