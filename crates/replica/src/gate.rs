//! The Output Rule (DESIGN.md §4), in one place: an output logged as entry `seq` leaves
//! only once the backup acknowledged `seq`, or once no backup can ever go live from
//! before it (this node won the arbiter, or had no backup when it was produced).
//! Outputs leave in the order they were produced; nothing overtakes a held one.

use crate::{Plant, Seq};
use std::collections::VecDeque;

/// What a held output waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Nothing: produced while no backup could replay it.
    Nothing,
    /// The backup's ack of this entry.
    Ack(Seq),
    /// This node's win at the arbiter (its log entry may not have reached the backup).
    Ownership,
}

/// Outputs held by the Output Rule.
#[derive(Debug)]
pub struct OutputGate<T> {
    held: VecDeque<(Wait, T)>,
    /// Highest sequence number the backup acknowledged on the current channel.
    acked: Seq,
    /// A backup holds the log: outputs wait for its acks.
    protected: bool,
    plant: Option<Plant>,
}

impl<T> OutputGate<T> {
    /// An empty gate with no backup (outputs leave at once).
    pub fn new(plant: Option<Plant>) -> OutputGate<T> {
        OutputGate {
            held: VecDeque::new(),
            acked: Seq(0),
            protected: false,
            plant,
        }
    }

    /// An output was produced and (while protected) logged as entry `seq`; `None` when
    /// protected means its entry could not be sent.
    pub fn hold(&mut self, seq: Option<Seq>, out: T) {
        let wait = match (self.protected, seq) {
            (false, _) => Wait::Nothing,
            _ if self.plant == Some(Plant::ReleaseBeforeAck) => Wait::Nothing,
            (true, Some(s)) => Wait::Ack(s),
            (true, None) => Wait::Ownership,
        };
        self.held.push_back((wait, out));
    }

    /// The backup acknowledged every entry through `seq`.
    pub fn ack(&mut self, seq: Seq) {
        self.acked = self.acked.max(seq);
    }

    /// A new backup holds the log from here on (sequence numbers start again).
    pub fn protect(&mut self) {
        self.protected = true;
        self.acked = Seq(0);
    }

    /// No backup can go live from before anything held (this node won the arbiter):
    /// everything held may leave.
    pub fn sole_owner(&mut self) {
        self.protected = false;
        for (w, _) in &mut self.held {
            *w = Wait::Nothing;
        }
    }

    /// The outputs that may leave now, in order.
    pub fn release(&mut self) -> Vec<T> {
        let mut out = Vec::new();
        while let Some((w, _)) = self.held.front() {
            let free = match *w {
                Wait::Nothing => true,
                Wait::Ack(s) => s <= self.acked,
                Wait::Ownership => false,
            };
            if !free {
                break;
            }
            out.push(self.held.pop_front().expect("front exists").1);
        }
        out
    }

    /// The node stops: what may leave leaves (returned), the rest never will (the
    /// backup may go live from before it). Returns the released outputs and how many
    /// were dropped.
    pub fn close(&mut self) -> (Vec<T>, usize) {
        let out = self.release();
        let dropped = self.held.len();
        self.held.clear();
        (out, dropped)
    }

    /// The node stops and nothing held may leave: all of it is dropped.
    pub fn close_dropping(&mut self) -> Vec<T> {
        self.held.clear();
        Vec::new()
    }

    /// Outputs waiting.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The highest sequence number acknowledged on the current channel.
    pub fn acked(&self) -> Seq {
        self.acked
    }

    /// The sequence number the oldest held output waits for, if it waits for an ack.
    pub fn oldest_wait(&self) -> Option<Seq> {
        self.held.iter().find_map(|(w, _)| match w {
            Wait::Ack(s) => Some(*s),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_leaves_only_once_its_entry_is_acknowledged() {
        let mut g = OutputGate::new(None);
        g.protect();
        g.hold(Some(Seq(3)), "a");
        g.hold(Some(Seq(5)), "b");
        assert!(g.release().is_empty());
        g.ack(Seq(4));
        assert_eq!(g.release(), vec!["a"]);
        g.ack(Seq(2)); // an older ack arriving late changes nothing
        assert!(g.release().is_empty());
        g.ack(Seq(5));
        assert_eq!(g.release(), vec!["b"]);
    }

    #[test]
    fn nothing_overtakes_a_held_output() {
        let mut g = OutputGate::new(None);
        g.protect();
        g.hold(Some(Seq(7)), 1);
        g.hold(Some(Seq(2)), 2);
        g.ack(Seq(2));
        assert!(g.release().is_empty());
        g.ack(Seq(7));
        assert_eq!(g.release(), vec![1, 2]);
    }

    #[test]
    fn without_a_backup_outputs_leave_at_once() {
        let mut g = OutputGate::new(None);
        g.hold(None, "x");
        assert_eq!(g.release(), vec!["x"]);
    }

    #[test]
    fn closing_drops_what_the_backup_did_not_acknowledge() {
        let mut g = OutputGate::new(None);
        g.protect();
        g.hold(Some(Seq(1)), "acked");
        g.hold(Some(Seq(2)), "not acked");
        g.hold(None, "never sent");
        g.ack(Seq(1));
        assert_eq!(g.close(), (vec!["acked"], 2));
        assert!(g.is_empty());
    }

    #[test]
    fn an_unsent_entry_waits_for_ownership_then_leaves() {
        let mut g = OutputGate::new(None);
        g.protect();
        g.hold(None, "a");
        g.ack(Seq(u64::MAX));
        assert!(g.release().is_empty());
        g.sole_owner();
        assert_eq!(g.release(), vec!["a"]);
    }

    #[test]
    fn a_new_backup_starts_a_new_sequence() {
        let mut g = OutputGate::new(None);
        g.protect();
        g.ack(Seq(100));
        g.sole_owner();
        g.protect();
        g.hold(Some(Seq(1)), "a");
        assert!(g.release().is_empty());
        g.ack(Seq(1));
        assert_eq!(g.release(), vec!["a"]);
    }

    #[test]
    fn the_planted_bug_lets_outputs_out_before_the_ack() {
        let mut g = OutputGate::new(Some(Plant::ReleaseBeforeAck));
        g.protect();
        g.hold(Some(Seq(1)), "a");
        assert_eq!(g.release(), vec!["a"]);
    }
}
