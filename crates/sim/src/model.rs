//! The model guest: a small deterministic machine speaking the counter protocol
//! (`inc`/`get`, the guest's `/init` in miniature). Like the real machine it runs to an
//! exact instruction count, takes inputs only by injection and leaves effects only as
//! outputs: an `inc` writes the new value to the disk and is answered once the write
//! completes; a repeated request is answered from the last reply (what TCP's
//! retransmission gives the real guest).

use crate::guest::{Client, Effect, Guest, Landed, Observed, Params, Route, SharedDisk, DISK};
use crate::rng::Rng;
use ftvm_replica::{OutputClass, RequestId, Time, Timing};
use std::collections::{BTreeMap, VecDeque};

/// Instructions one request costs.
pub const COST: u64 = 300;

/// A client's operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Increment; answered with the new value.
    Inc,
    /// Read.
    Get,
}

/// A request from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The client.
    pub client: u32,
    /// The client's request number (1, 2, ...; a retry repeats it).
    pub req: u64,
    /// What it asks.
    pub op: Op,
}

/// The guest's answer: the counter's value, or `None` if the disk failed the write (the
/// increment did not happen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The client.
    pub client: u32,
    /// The request answered.
    pub req: u64,
    /// The value.
    pub value: Option<u64>,
}

/// An input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A request arrived on the NIC.
    Frame(Request),
    /// A disk write completed.
    DiskDone {
        /// The write.
        id: u64,
        /// Whether it succeeded.
        ok: bool,
    },
}

/// An output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A reply frame.
    Frame(Reply),
    /// Write `value` to the disk as request `id`.
    DiskWrite {
        /// Request id.
        id: u64,
        /// The value written.
        value: u64,
    },
}

impl Output {
    /// The digest the log carries for this output.
    pub fn digest(&self) -> u64 {
        let mut h = Fnv::default();
        match self {
            Output::Frame(r) => {
                h.u64(1);
                h.u64(r.client as u64);
                h.u64(r.req);
                h.u64(r.value.map_or(u64::MAX, |v| v));
            }
            Output::DiskWrite { id, value } => {
                h.u64(2);
                h.u64(*id);
                h.u64(*value);
            }
        }
        h.0
    }
}

#[derive(Default)]
struct Fnv(u64);

impl Fnv {
    fn u64(&mut self, v: u64) {
        if self.0 == 0 {
            self.0 = 0xcbf2_9ce4_8422_2325;
        }
        for b in v.to_le_bytes() {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The model machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    icount: u64,
    counter: u64,
    inbox: VecDeque<Request>,
    /// The request being worked on and the instruction its step completes at.
    working: Option<(Request, u64)>,
    /// An increment waiting for its disk write: request, new value, write id.
    writing: Option<(Request, u64, u64)>,
    next_id: u64,
    /// Each client's last answered request and its reply.
    last: BTreeMap<u32, Reply>,
    outputs: Vec<(u64, Output)>,
    /// Inputs that made no sense (a completion for no write): counted, never a panic.
    pub stray: u64,
}

impl Default for Model {
    fn default() -> Model {
        Model::new()
    }
}

impl Model {
    /// A freshly booted guest.
    pub fn new() -> Model {
        Model {
            icount: 0,
            counter: 0,
            inbox: VecDeque::new(),
            working: None,
            writing: None,
            next_id: 1,
            last: BTreeMap::new(),
            outputs: Vec::new(),
            stray: 0,
        }
    }

    /// Instructions executed.
    pub fn icount(&self) -> u64 {
        self.icount
    }

    /// The counter (for the checkers; a client sees it only through replies).
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// Inject an input at the current instruction count.
    pub fn inject(&mut self, input: &Input) {
        match *input {
            Input::Frame(r) => self.inbox.push_back(r),
            Input::DiskDone { id, ok } => match self.writing {
                Some((r, value, wid)) if wid == id => {
                    self.writing = None;
                    if ok {
                        self.counter = value;
                    }
                    self.answer(r, ok.then_some(value));
                }
                _ => self.stray += 1,
            },
        }
    }

    fn answer(&mut self, r: Request, value: Option<u64>) {
        let reply = Reply {
            client: r.client,
            req: r.req,
            value,
        };
        self.last.insert(r.client, reply);
        self.outputs.push((self.icount, Output::Frame(reply)));
    }

    /// Run to exactly `until` (the guest idles when it has nothing to do).
    pub fn run(&mut self, until: u64) {
        while self.icount < until {
            if self.working.is_none() && self.writing.is_none() {
                if let Some(r) = self.inbox.pop_front() {
                    self.working = Some((r, self.icount + COST));
                }
            }
            match self.working {
                Some((r, at)) if at <= until => {
                    self.icount = at;
                    self.working = None;
                    self.step(r);
                }
                _ => self.icount = until,
            }
        }
    }

    fn step(&mut self, r: Request) {
        match self.last.get(&r.client) {
            Some(last) if last.req == r.req => {
                let again = *last;
                self.outputs.push((self.icount, Output::Frame(again)));
                return;
            }
            Some(last) if last.req > r.req => return,
            _ => {}
        }
        match r.op {
            Op::Get => self.answer(r, Some(self.counter)),
            Op::Inc => {
                let (id, value) = (self.next_id, self.counter + 1);
                self.next_id += 1;
                self.writing = Some((r, value, id));
                self.outputs
                    .push((self.icount, Output::DiskWrite { id, value }));
            }
        }
    }

    /// Outputs produced since the last call, with their instruction counts.
    pub fn take_outputs(&mut self) -> Vec<(u64, Output)> {
        std::mem::take(&mut self.outputs)
    }

    /// A digest of every bit of guest state (as `state_hash` is for the machine).
    pub fn state_hash(&self) -> u64 {
        let mut h = Fnv::default();
        h.u64(self.icount);
        h.u64(self.counter);
        h.u64(self.next_id);
        for r in &self.inbox {
            h.u64(r.client as u64);
            h.u64(r.req);
        }
        if let Some((r, at)) = self.working {
            h.u64(r.req);
            h.u64(at);
        }
        if let Some((r, v, id)) = self.writing {
            h.u64(r.req);
            h.u64(v);
            h.u64(id);
        }
        for (c, r) in &self.last {
            h.u64(*c as u64);
            h.u64(r.req);
        }
        h.0
    }
}

/// What crosses the switch between the model guest and its clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A client's request.
    Request(Request),
    /// The guest's reply.
    Reply(Reply),
}

/// The model's shared disk: it keeps nothing the checkers read (the guest holds the
/// counter), it only lands writes.
#[derive(Debug, Clone, Default)]
pub struct Disk;

impl SharedDisk<u64, bool> for Disk {
    fn apply(&mut self, value: &u64) -> Landed<bool> {
        Landed {
            answer: true,
            wrote: Some(*value),
        }
    }

    fn failed(_: &u64) -> bool {
        false
    }
}

impl Guest for Model {
    type Input = Input;
    type Output = Output;
    type Frame = Frame;
    type DiskReq = u64;
    type DiskAns = bool;
    type Disk = Disk;
    type Client = ModelClient;
    type Transfer = Box<Model>;
    type Image = ();

    const PARAMS: Params = Params {
        speed: 1_000,
        fault_end: 300_000,
        recovery: 250_000,
        end: 800_000,
        hash_every: 20_000,
        max_lag: 20_000,
        // The binary's clocks, scaled down ten times.
        timing: Timing {
            heartbeat: Time(2_000),
            ack_every: Time(1_000),
            timeout: Time(30_000),
            join_timeout: Time(100_000),
            arbiter_retry: Time(10_000),
            uncertain: Time(20_000),
            lease: Time(5_000),
        },
    };
    const NAME: &'static str = "model";

    fn boot(_: &()) -> Model {
        Model::new()
    }

    fn disk(_: &()) -> Disk {
        Disk
    }

    fn icount(&self) -> u64 {
        self.icount
    }

    fn run(&mut self, until: u64) -> bool {
        Model::run(self, until);
        true
    }

    fn inject(&mut self, input: &Input) {
        Model::inject(self, input)
    }

    fn take_outputs(&mut self) -> Vec<(u64, Output)> {
        Model::take_outputs(self)
    }

    fn state_hash(&self) -> u64 {
        Model::state_hash(self)
    }

    fn transfer(&self) -> Box<Model> {
        Box::new(self.clone())
    }

    fn receive(t: Box<Model>) -> Model {
        *t
    }

    fn counter(&self, _: &Disk) -> u64 {
        self.counter
    }

    fn clock(&self, _: u64, _: u64) -> Option<Input> {
        None
    }

    fn wake_at(&self) -> Option<u64> {
        None
    }

    fn digest(out: &Output) -> u64 {
        out.digest()
    }

    fn effect(out: &Output) -> Effect<Frame, u64> {
        match *out {
            Output::Frame(r) => Effect::Frame(Frame::Reply(r)),
            Output::DiskWrite { id, value } => Effect::Disk(id, value),
        }
    }

    fn class(out: &Output) -> OutputClass {
        match *out {
            Output::Frame(_) => OutputClass::Frame,
            Output::DiskWrite { id, .. } => OutputClass::Request(RequestId { device: DISK, id }),
        }
    }

    fn route(frame: &Frame) -> Route {
        match frame {
            Frame::Reply(r) => Route::Client(r.client),
            Frame::Request(_) => Route::Drop,
        }
    }

    fn frame_input(frame: Frame) -> Input {
        match frame {
            Frame::Request(r) => Input::Frame(r),
            // Never routed to a node; a guest ignores what it cannot parse.
            Frame::Reply(r) => Input::Frame(Request {
                client: r.client,
                req: 0,
                op: Op::Get,
            }),
        }
    }

    fn disk_input(id: u64, ok: bool) -> Input {
        Input::DiskDone { id, ok }
    }

    fn entropy_input(_: u64, _: Vec<u8>) -> Input {
        unreachable!("the model guest asks for no entropy")
    }

    fn answers(input: &Input) -> Option<RequestId> {
        match *input {
            Input::DiskDone { id, .. } => Some(RequestId { device: DISK, id }),
            Input::Frame(_) => None,
        }
    }
}

/// A client retries a request after this long without a reply (µs).
const CLIENT_RETRY: u64 = 15_000;

/// A model client: one request at a time, retried until answered.
pub struct ModelClient {
    id: u32,
    next_req: u64,
    /// (request, op, history index, last sent)
    waiting: Option<(u64, Op, usize, u64)>,
    next_at: u64,
}

impl Client<Frame> for ModelClient {
    fn new(id: u32, rng: &mut Rng) -> ModelClient {
        ModelClient {
            id,
            next_req: 1,
            waiting: None,
            next_at: 2_000 + rng.below(3_000),
        }
    }

    fn step(&mut self, now: u64, end: u64, rng: &mut Rng, obs: &mut Observed) -> Vec<Frame> {
        let (req, op) = match self.waiting {
            Some((req, op, _, last)) if now - last >= CLIENT_RETRY => (req, op),
            None if now >= self.next_at && now < end - 20_000 => {
                let op = if rng.chance(700) { Op::Inc } else { Op::Get };
                let req = self.next_req;
                let i = obs.call(self.id, op, now);
                self.next_req += 1;
                self.waiting = Some((req, op, i, now));
                (req, op)
            }
            _ => return Vec::new(),
        };
        if let Some(w) = &mut self.waiting {
            w.3 = now;
        }
        vec![Frame::Request(Request {
            client: self.id,
            req,
            op,
        })]
    }

    fn receive(&mut self, now: u64, frame: Frame, obs: &mut Observed) {
        let Frame::Reply(r) = frame else { return };
        let Some((req, op, i, _)) = self.waiting else {
            return;
        };
        if r.req != req {
            return;
        }
        self.waiting = None;
        self.next_at = now + 500 + (r.req * 7919 + self.id as u64 * 104_729) % 3_000;
        match r.value {
            Some(v) => obs.returned(i, op, now, v),
            // The disk failed the write: the increment did not happen.
            None => obs.did_not_happen(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(client: u32, req: u64, op: Op) -> Input {
        Input::Frame(Request { client, req, op })
    }

    #[test]
    fn an_increment_is_answered_after_its_disk_write() {
        let mut m = Model::new();
        m.inject(&req(1, 1, Op::Inc));
        m.run(10_000);
        let out = m.take_outputs();
        assert_eq!(out, vec![(COST, Output::DiskWrite { id: 1, value: 1 })]);
        m.inject(&Input::DiskDone { id: 1, ok: true });
        m.inject(&req(1, 2, Op::Get));
        m.run(20_000);
        let out = m.take_outputs();
        assert_eq!(
            out,
            vec![
                (
                    10_000,
                    Output::Frame(Reply {
                        client: 1,
                        req: 1,
                        value: Some(1)
                    })
                ),
                (
                    10_000 + COST,
                    Output::Frame(Reply {
                        client: 1,
                        req: 2,
                        value: Some(1)
                    })
                )
            ]
        );
    }

    #[test]
    fn a_retried_request_gets_the_same_answer_and_a_failed_write_changes_nothing() {
        let mut m = Model::new();
        m.inject(&req(1, 1, Op::Inc));
        m.run(1000);
        m.inject(&Input::DiskDone { id: 1, ok: false });
        m.inject(&req(1, 1, Op::Inc));
        m.run(2000);
        let replies: Vec<_> = m
            .take_outputs()
            .into_iter()
            .filter_map(|(_, o)| match o {
                Output::Frame(r) => Some(r.value),
                _ => None,
            })
            .collect();
        assert_eq!(replies, vec![None, None]);
        assert_eq!(m.counter(), 0);
    }

    #[test]
    fn two_runs_with_the_same_inputs_at_the_same_counts_are_identical() {
        let run = || {
            let mut m = Model::new();
            m.run(50);
            m.inject(&req(2, 1, Op::Inc));
            m.run(5000);
            m.inject(&Input::DiskDone { id: 1, ok: true });
            m.run(5001);
            m
        };
        assert_eq!(run().state_hash(), run().state_hash());
        let mut other = Model::new();
        other.run(51);
        other.inject(&req(2, 1, Op::Inc));
        other.run(5000);
        assert_ne!(run().state_hash(), other.state_hash());
    }

    #[test]
    fn a_completion_for_no_write_is_counted_not_fatal() {
        let mut m = Model::new();
        m.inject(&Input::DiskDone { id: 9, ok: true });
        assert_eq!(m.stray, 1);
    }
}
