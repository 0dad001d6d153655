//! Guest time as a function of the instruction count (DESIGN.md §2).
//!
//! `mtime = base_mtime + (icount - base_icount) / insns_per_tick`. Only an injected
//! clock event moves the base, so time needs no log entry of its own.

use serde::{Deserialize, Serialize};

/// The guest clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Clock {
    base_icount: u64,
    base_mtime: u64,
    insns_per_tick: u64,
}

impl Clock {
    /// A clock at mtime 0 for icount 0, advancing one tick every `insns_per_tick`.
    pub fn new(insns_per_tick: u64) -> Clock {
        Clock {
            base_icount: 0,
            base_mtime: 0,
            insns_per_tick: insns_per_tick.max(1),
        }
    }

    /// `mtime` at instruction count `icount` (which must not precede the base).
    #[inline]
    pub fn mtime(&self, icount: u64) -> u64 {
        self.base_mtime + icount.saturating_sub(self.base_icount) / self.insns_per_tick
    }

    /// The first instruction count at which `mtime >= target`, given that it is now
    /// `icount`; `u64::MAX` if never.
    pub fn deadline(&self, target: u64, icount: u64) -> u64 {
        if target <= self.mtime(icount) {
            return icount;
        }
        let ticks = target - self.base_mtime;
        ticks
            .checked_mul(self.insns_per_tick)
            .and_then(|n| n.checked_add(self.base_icount))
            .unwrap_or(u64::MAX)
    }

    /// Move time forward by `ticks` at instruction count `icount` (monotonic).
    pub fn advance(&mut self, icount: u64, ticks: u64) {
        self.base_mtime = self.mtime(icount).saturating_add(ticks);
        self.base_icount = icount;
    }

    /// True if the clock's fields are consistent (a restored snapshot must be).
    pub fn is_valid(&self) -> bool {
        self.insns_per_tick >= 1
    }

    /// Instructions per tick.
    pub fn insns_per_tick(&self) -> u64 {
        self.insns_per_tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_follows_icount_and_advances_monotonically() {
        let mut c = Clock::new(10);
        assert_eq!(c.mtime(0), 0);
        assert_eq!(c.mtime(99), 9);
        assert_eq!(c.deadline(20, 0), 200);
        c.advance(105, 1000);
        assert_eq!(c.mtime(105), 1010);
        assert_eq!(c.mtime(115), 1011);
        assert_eq!(c.deadline(1012, 115), 125);
        assert_eq!(c.deadline(5, 115), 115);
        assert_eq!(c.deadline(u64::MAX, 0), u64::MAX);
    }
}
