//! Host time, mapped onto the guest's 10 MHz timebase (DESIGN.md §2). Only the world
//! reads it; the guest sees it only through logged clock events.

use std::time::{Duration, Instant};

/// Ticks of the guest timebase per second.
pub const TICKS_PER_SEC: u64 = 10_000_000;

/// Host monotonic time since a start point, in guest ticks.
pub struct HostClock {
    start: Instant,
}

impl HostClock {
    /// A clock starting now at tick 0.
    pub fn start() -> HostClock {
        HostClock {
            start: Instant::now(),
        }
    }

    /// A clock that reads `ticks` now (a machine resumed or taken over mid-run keeps
    /// its guest time and follows host time from here).
    pub fn starting_at(ticks: u64) -> HostClock {
        let now = Instant::now();
        HostClock {
            start: now.checked_sub(ticks_to_duration(ticks)).unwrap_or(now),
        }
    }

    /// Ticks elapsed since the start.
    pub fn ticks(&self) -> u64 {
        duration_to_ticks(self.start.elapsed())
    }

    /// The host instant at which `ticks` will have elapsed.
    pub fn instant_at(&self, ticks: u64) -> Instant {
        self.start + ticks_to_duration(ticks)
    }
}

/// A duration in guest ticks (saturating).
pub fn duration_to_ticks(d: Duration) -> u64 {
    (d.as_nanos() / 100).min(u64::MAX as u128) as u64
}

/// Guest ticks as a duration.
pub fn ticks_to_duration(t: u64) -> Duration {
    Duration::from_nanos(t.saturating_mul(100))
}

/// Host time on the guest's timebase, as the driver keeps guest time near it
/// (DESIGN.md §2).
pub trait Clock: Send {
    /// Ticks elapsed since the clock's start.
    fn ticks(&self) -> u64;
    /// How long until the clock reads `ticks` (zero once it does).
    fn until(&self, ticks: u64) -> Duration;
}

impl Clock for HostClock {
    fn ticks(&self) -> u64 {
        HostClock::ticks(self)
    }

    fn until(&self, ticks: u64) -> Duration {
        self.instant_at(ticks)
            .saturating_duration_since(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        assert_eq!(duration_to_ticks(Duration::from_millis(1)), 10_000);
        assert_eq!(ticks_to_duration(10_000), Duration::from_millis(1));
        assert_eq!(duration_to_ticks(Duration::MAX), u64::MAX);
        let c = HostClock::start();
        let a = c.ticks();
        std::thread::sleep(Duration::from_millis(2));
        assert!(c.ticks() >= a + 20_000);
        assert!(c.instant_at(0) <= Instant::now());
    }
}
