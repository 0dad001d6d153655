//! How fast a backup replays, so the primary can bound the backup's lag in the
//! backup's own time (DESIGN.md §6, the failover's catch-up): a lag of N instructions
//! costs a failover N / pace of replay, whichever of the two runs faster.
//!
//! The backup measures its replay alone — instructions over the host time spent
//! running the guest to each entry, never the time spent waiting for the next one — in
//! windows of at least [`WINDOW`] of that time, and reports the newest window's rate in
//! every ack.

use crate::Time;

/// Busy replay time per measurement: long enough that one entry's run does not decide
/// it, short enough to follow a replay that turns slow (cold code, a busy host).
pub const WINDOW: Time = Time(5_000);

/// The fewest instructions the primary may run ahead of its backup, however slow the
/// backup reports itself: below this the pair would run in lockstep with the acks.
pub const MIN_LAG: u64 = 100_000;

/// A replay's pace: instructions per millisecond of busy replay.
#[derive(Debug, Clone, Default)]
pub struct Pace {
    insns: u64,
    busy: Time,
    per_ms: u32,
}

impl Pace {
    /// The replay ran `insns` instructions in `busy` of host time.
    pub fn ran(&mut self, insns: u64, busy: Time) {
        self.insns = self.insns.saturating_add(insns);
        self.busy = self.busy + busy;
        if self.busy >= WINDOW {
            let per_ms = self.insns.saturating_mul(1000) / self.busy.0;
            self.per_ms = u32::try_from(per_ms).unwrap_or(u32::MAX).max(1);
            self.insns = 0;
            self.busy = Time(0);
        }
    }

    /// Instructions per millisecond over the newest full window (0: none measured yet).
    pub fn per_ms(&self) -> u32 {
        self.per_ms
    }
}

/// The most instructions a primary may run ahead of a backup that replays `per_ms`
/// instructions per millisecond, so that catching up takes at most `window`; `None`
/// when the pace is unknown (0).
pub fn lag_for(per_ms: u32, window: Time) -> Option<u64> {
    (per_ms > 0).then(|| (u64::from(per_ms).saturating_mul(window.0) / 1000).max(MIN_LAG))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pace_is_the_newest_full_window_of_busy_time() {
        let mut p = Pace::default();
        p.ran(1_000_000, Time(2_000));
        assert_eq!(p.per_ms(), 0, "2 ms of 5 measured: nothing yet");
        p.ran(2_000_000, Time(3_000));
        assert_eq!(p.per_ms(), 600_000, "3 M instructions in 5 ms");
        // A slow window replaces it whole: the bound follows a replay that turns slow.
        p.ran(50_000, Time(10_000));
        assert_eq!(p.per_ms(), 5_000);
        // Idle time is never given to it, so a zero-length run changes nothing.
        p.ran(0, Time(0));
        assert_eq!(p.per_ms(), 5_000);
    }

    #[test]
    fn the_lag_is_what_the_backup_replays_in_the_window_and_never_below_the_floor() {
        assert_eq!(lag_for(0, Time::ms(30)), None);
        assert_eq!(lag_for(150_000, Time::ms(30)), Some(4_500_000));
        assert_eq!(lag_for(2_000, Time::ms(30)), Some(MIN_LAG));
    }
}
