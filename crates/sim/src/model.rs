//! The model guest: a small deterministic machine speaking the counter protocol
//! (`inc`/`get`, the guest's `/init` in miniature). Like the real machine it runs to an
//! exact instruction count, takes inputs only by injection and leaves effects only as
//! outputs: an `inc` writes the new value to the disk and is answered once the write
//! completes; a repeated request is answered from the last reply (what TCP's
//! retransmission gives the real guest).

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
