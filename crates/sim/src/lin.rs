//! A linearizability checker for the counter (Wing & Gong's search, with Lowe's
//! memoization of (linearized set, state) as in Porcupine): is there a total order of
//! the operations, each taking effect between its call and its return, in which every
//! `inc` returns the value before it plus one and every `get` the current value?
//! An operation without a return (the client gave up or the run ended) may take effect
//! at any time after its call, or never.

use crate::model::Op;
use std::collections::HashSet;

/// One client operation in a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// The client.
    pub client: u32,
    /// What it asked.
    pub op: Op,
    /// When it was called (simulated µs).
    pub call: u64,
    /// When it returned and with which value; `None` while pending.
    pub ret: Option<(u64, u64)>,
}

/// Whether `history` is linearizable for a counter starting at 0. On failure, says
/// which completed operation could not be placed first.
pub fn check(history: &[Operation]) -> Result<(), String> {
    let n = history.len();
    let words = n.div_ceil(64).max(1);
    let mut done = vec![0u64; words];
    let completed = history.iter().filter(|o| o.ret.is_some()).count();
    let mut seen = HashSet::new();
    if search(history, &mut done, 0, completed, &mut seen) {
        Ok(())
    } else {
        let first = history
            .iter()
            .filter(|o| o.ret.is_some())
            .min_by_key(|o| o.ret.map(|r| r.0));
        Err(format!(
            "no linearization of {n} operations ({completed} completed) for a counter; earliest return: {first:?}"
        ))
    }
}

fn search(
    h: &[Operation],
    done: &mut Vec<u64>,
    state: u64,
    remaining: usize,
    seen: &mut HashSet<(Vec<u64>, u64)>,
) -> bool {
    if remaining == 0 {
        return true;
    }
    if !seen.insert((done.clone(), state)) {
        return false;
    }
    let is_done = |d: &[u64], i: usize| d[i / 64] >> (i % 64) & 1 == 1;
    // The earliest return among the operations not yet placed: whatever goes next must
    // have been called before it.
    let horizon = h
        .iter()
        .enumerate()
        .filter(|(i, _)| !is_done(done, *i))
        .filter_map(|(_, o)| o.ret.map(|r| r.0))
        .min()
        .unwrap_or(u64::MAX);
    for (i, o) in h.iter().enumerate() {
        if is_done(done, i) || o.call > horizon {
            continue;
        }
        let next = match (o.op, o.ret) {
            (Op::Inc, Some((_, v))) if v == state + 1 => state + 1,
            (Op::Inc, None) => state + 1,
            (Op::Get, Some((_, v))) if v == state => state,
            (Op::Get, None) => continue, // a pending read changes nothing
            _ => continue,
        };
        done[i / 64] |= 1 << (i % 64);
        let left = remaining - usize::from(o.ret.is_some());
        if search(h, done, next, left, seen) {
            return true;
        }
        done[i / 64] &= !(1 << (i % 64));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u32, op: Op, call: u64, ret: Option<(u64, u64)>) -> Operation {
        Operation {
            client,
            op,
            call,
            ret,
        }
    }

    #[test]
    fn sequential_increments_and_reads_are_linearizable() {
        let h = [
            op(1, Op::Inc, 0, Some((1, 1))),
            op(1, Op::Inc, 2, Some((3, 2))),
            op(2, Op::Get, 4, Some((5, 2))),
        ];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn concurrent_increments_may_take_effect_in_either_order() {
        let h = [
            op(1, Op::Inc, 0, Some((10, 2))),
            op(2, Op::Inc, 1, Some((9, 1))),
        ];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn a_lost_increment_is_caught() {
        // Client 1's increment returned 1, then a read after it sees 0.
        let h = [
            op(1, Op::Inc, 0, Some((1, 1))),
            op(2, Op::Get, 2, Some((3, 0))),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn a_counter_that_restarts_is_caught() {
        // Two copies answering: both say 1 to increments that did not overlap.
        let h = [
            op(1, Op::Inc, 0, Some((1, 1))),
            op(2, Op::Inc, 2, Some((3, 1))),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn a_pending_increment_may_or_may_not_have_happened() {
        let took = [op(1, Op::Inc, 0, None), op(2, Op::Get, 5, Some((6, 1)))];
        assert!(check(&took).is_ok());
        let did_not = [op(1, Op::Inc, 0, None), op(2, Op::Get, 5, Some((6, 0)))];
        assert!(check(&did_not).is_ok());
        let but_not_before_its_call = [op(2, Op::Get, 0, Some((1, 1))), op(1, Op::Inc, 5, None)];
        assert!(check(&but_not_before_its_call).is_err());
    }

    #[test]
    fn a_read_that_goes_back_is_caught() {
        let h = [
            op(1, Op::Inc, 0, Some((1, 1))),
            op(1, Op::Inc, 2, Some((3, 2))),
            op(2, Op::Get, 4, Some((5, 2))),
            op(2, Op::Get, 6, Some((7, 1))),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn long_histories_check_quickly() {
        let mut h = Vec::new();
        for i in 0..200u64 {
            h.push(op(
                (i % 3) as u32,
                Op::Inc,
                i * 10,
                Some((i * 10 + 15, i + 1)),
            ));
        }
        assert!(check(&h).is_ok());
    }
}
