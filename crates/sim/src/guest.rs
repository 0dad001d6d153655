//! What the cluster needs from a guest and its world: the model guest ([`crate::model`])
//! and the real machine running the Linux counter ([`crate::linux`]) both provide it.
//!
//! A guest is driven like the machine (DESIGN.md §1): it runs to an exact instruction
//! count, takes inputs only by injection and leaves effects only as outputs. The trait
//! also names what its outputs mean to the simulated world (a frame for the switch, a
//! request for the shared disk, an entropy request the node answers itself), the shared
//! disk's contents and the clients that talk to it.

use crate::lin::Operation;
use crate::model::Op;
use crate::rng::Rng;
use ftvm_replica::{OutputClass, RequestId, Timing};
use std::fmt::Debug;

/// The shared disk as the device number in [`RequestId`].
pub const DISK: u8 = 1;
/// Entropy as the device number in [`RequestId`].
pub const ENTROPY: u8 = 2;

/// What the world does with a released output.
#[derive(Debug, Clone)]
pub enum Effect<F, D> {
    /// A frame for the switch.
    Frame(F),
    /// A request `id` for the shared disk.
    Disk(u64, D),
    /// `len` random bytes wanted (request `id`): the node's own world answers.
    Entropy(u64, u32),
    /// Nothing leaves (console output).
    Nothing,
}

/// Where the switch carries a frame from the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To one client.
    Client(u32),
    /// To every client (a broadcast).
    All,
    /// Nowhere.
    Drop,
}

/// A shared disk request as it lands: the answer, and for a write the digest of what
/// was written (mixed into the run's digest).
pub struct Landed<A> {
    /// The answer the requester gets.
    pub answer: A,
    /// `Some` if the request wrote.
    pub wrote: Option<u64>,
}

/// A guest's sizes and clocks in the simulation.
#[derive(Debug, Clone, Copy)]
pub struct Params {
    /// Guest instructions per quantum (a slow backup replays fewer).
    pub speed: u64,
    /// Faults happen before this (µs).
    pub fault_end: u64,
    /// After the faults end, service must resume within this (µs).
    pub recovery: u64,
    /// The run ends here (µs).
    pub end: u64,
    /// A state hash goes into the log every this many instructions.
    pub hash_every: u64,
    /// The guest runs at most this many instructions ahead of the backup's replay.
    pub max_lag: u64,
    /// The protocol's clocks.
    pub timing: Timing,
}

/// What clients observed, for the checkers.
#[derive(Debug, Default)]
pub struct Observed {
    /// Every operation (`None`: one that certainly did not happen).
    pub history: Vec<Option<Operation>>,
    /// The largest value an acknowledged `inc` returned.
    pub max_acked: u64,
    /// A digest of the whole run.
    pub digest: u64,
}

impl Observed {
    /// Mix `v` into the run's digest.
    pub fn mix(&mut self, v: u64) {
        self.digest = (self.digest ^ v).wrapping_mul(0x0100_0000_01b3);
    }

    /// A client calls `op` at `now`; the operation's index in the history.
    pub fn call(&mut self, client: u32, op: Op, now: u64) -> usize {
        self.history.push(Some(Operation {
            client,
            op,
            call: now,
            ret: None,
        }));
        self.history.len() - 1
    }

    /// Operation `i` (an `op`) returned `value` at `now`.
    pub fn returned(&mut self, i: usize, op: Op, now: u64, value: u64) {
        if let Some(o) = &mut self.history[i] {
            o.ret = Some((now, value));
        }
        if op == Op::Inc {
            self.max_acked = self.max_acked.max(value);
        }
        self.mix(value);
    }

    /// Operation `i` certainly did not happen (the disk failed its write).
    pub fn did_not_happen(&mut self, i: usize) {
        self.history[i] = None;
    }
}

/// One client of the counter service.
pub trait Client<F> {
    /// Client `id`.
    fn new(id: u32, rng: &mut Rng) -> Self;
    /// One quantum at `now`: the frames it sends.
    fn step(&mut self, now: u64, end: u64, rng: &mut Rng, obs: &mut Observed) -> Vec<F>;
    /// A frame from the switch.
    fn receive(&mut self, now: u64, frame: F, obs: &mut Observed);
}

/// The shared disk's contents.
pub trait SharedDisk<D, A>: Clone {
    /// Carry out a request.
    fn apply(&mut self, req: &D) -> Landed<A>;
    /// The answer to a request that failed (or was fenced off).
    fn failed(req: &D) -> A;
}

/// A guest the cluster runs.
pub trait Guest: Sized {
    /// An input (logged, then injected).
    type Input: Clone + Debug;
    /// An output.
    type Output: Clone + Debug + PartialEq + Eq;
    /// A frame between the guest and the clients.
    type Frame: Clone + Debug;
    /// A shared disk request.
    type DiskReq: Clone + Debug;
    /// A shared disk answer.
    type DiskAns: Clone + Debug;
    /// The shared disk.
    type Disk: SharedDisk<Self::DiskReq, Self::DiskAns>;
    /// A client.
    type Client: Client<Self::Frame>;
    /// The guest as a backup receives it.
    type Transfer: Clone + Debug;
    /// What every boot starts from (a snapshot), loaded once.
    type Image;

    /// The guest's sizes and clocks.
    const PARAMS: Params;
    /// Its name on the command line (`--guest NAME`).
    const NAME: &'static str;

    /// A freshly booted guest.
    fn boot(image: &Self::Image) -> Self;
    /// The shared disk as a fresh cluster finds it.
    fn disk(image: &Self::Image) -> Self::Disk;
    /// Instructions executed.
    fn icount(&self) -> u64;
    /// Run to exactly `until`, or less if the guest idles (false): only an input (a
    /// clock event included) makes it go on.
    fn run(&mut self, until: u64) -> bool;
    /// Inject an input at the current instruction count.
    fn inject(&mut self, input: &Self::Input);
    /// Outputs produced since the last call, with their instruction counts.
    fn take_outputs(&mut self) -> Vec<(u64, Self::Output)>;
    /// A digest of every bit of guest state.
    fn state_hash(&self) -> u64;
    /// The guest for a new backup.
    fn transfer(&self) -> Self::Transfer;
    /// The guest a backup received.
    fn receive(t: Self::Transfer) -> Self;
    /// The counter the live guest holds, as the checkers see it.
    fn counter(&self, disk: &Self::Disk) -> u64;

    /// A clock input bringing guest time up to simulated time `now` (µs), if it lags
    /// by more than `slack` µs.
    fn clock(&self, now: u64, slack: u64) -> Option<Self::Input>;
    /// While idle: the simulated time (µs) at which the guest's next timer fires.
    fn wake_at(&self) -> Option<u64>;

    /// The digest the log carries for an output.
    fn digest(out: &Self::Output) -> u64;
    /// What the world does with it.
    fn effect(out: &Self::Output) -> Effect<Self::Frame, Self::DiskReq>;
    /// How the FT core treats it at go-live.
    fn class(out: &Self::Output) -> OutputClass;
    /// Where the switch carries a frame from the guest.
    fn route(frame: &Self::Frame) -> Route;
    /// The input a frame from the network becomes.
    fn frame_input(frame: Self::Frame) -> Self::Input;
    /// The input a disk answer becomes.
    fn disk_input(id: u64, ans: Self::DiskAns) -> Self::Input;
    /// The input entropy bytes become.
    fn entropy_input(id: u64, bytes: Vec<u8>) -> Self::Input;
    /// The request an input answers, if any.
    fn answers(input: &Self::Input) -> Option<RequestId>;
}
