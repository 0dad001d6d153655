//! The fault-tolerance layer as a pure core (DESIGN.md §4, §7): the primary and the
//! backup are state machines with no sockets, threads, files or host clock. Inputs are
//! log entries sent or received, acknowledgments, arbiter answers, channel failures and
//! ticks of a clock the caller reads; outputs are actions (send a heartbeat, release an
//! output, ask the arbiter, go live, halt). The `ftvm` binary wraps them in sockets and
//! threads; the simulator (crates/sim) drives the very same code on simulated time.
//!
//! - [`gate`]: the Output Rule, the one place an output is let out;
//! - [`primary`]: the live side — claims, heartbeats, failure detection, shutdown;
//! - [`backup`]: the replaying side — acks, the replay limit, [`backup::Backup::go_live`];
//! - [`pace`]: how fast the backup replays, which bounds how far the primary may run
//!   ahead of it.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod backup;
pub mod gate;
pub mod pace;
pub mod primary;

pub use backup::{Backup, BackupAction, BackupPhase, GoLive, OutputClass, RequestId};
pub use gate::OutputGate;
pub use primary::{Primary, PrimaryAction, PrimaryPhase};

use std::fmt;
use std::ops::{Add, Sub};

/// A moment of the caller's clock, in microseconds (host time in the binary, simulated
/// time in the simulator). The core never reads a clock itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Time(pub u64);

impl Time {
    /// `ms` milliseconds.
    pub const fn ms(ms: u64) -> Time {
        Time(ms * 1000)
    }

    /// Time since `earlier` (zero if `earlier` is later).
    pub fn since(self, earlier: Time) -> Time {
        Time(self.0.saturating_sub(earlier.0))
    }
}

impl Add for Time {
    type Output = Time;
    fn add(self, d: Time) -> Time {
        Time(self.0.saturating_add(d.0))
    }
}

impl Sub for Time {
    type Output = Time;
    fn sub(self, d: Time) -> Time {
        Time(self.0.saturating_sub(d.0))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03} ms", self.0 / 1000, self.0 % 1000)
    }
}

/// A log entry's sequence number on the logging channel (1 for the first entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Seq(pub u64);

/// The protocol's clocks.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The primary sends a progress entry (heartbeat) after this much silence.
    pub heartbeat: Time,
    /// The backup acknowledges at least this often.
    pub ack_every: Time,
    /// Silence on the channel after which the peer is presumed dead.
    pub timeout: Time,
    /// How long a new backup may take to confirm the transfer (its first ack).
    pub join_timeout: Time,
    /// An unanswered arbiter request is asked again after this long.
    pub arbiter_retry: Time,
    /// Frames logged within this window before the primary was lost are sent again at
    /// go-live: their release is uncertain (duplicates are harmless to TCP).
    pub uncertain: Time,
    /// The primary's lease: an ack of an entry sent at `t` lets outputs leave until
    /// `t + lease`, and a backup that lost its primary goes live no earlier than `lease`
    /// after the newest entry it received — so the two never release at once, even
    /// when the backup gives up early (a gap, a closed channel) and acks arrive late.
    pub lease: Time,
}

impl Default for Timing {
    /// The binary's defaults (README "Failure detection").
    fn default() -> Timing {
        Timing {
            heartbeat: Time::ms(10),
            ack_every: Time::ms(5),
            timeout: Time::ms(300),
            join_timeout: Time::ms(10_000),
            arbiter_retry: Time::ms(100),
            uncertain: Time::ms(100),
            lease: Time::ms(20),
        }
    }
}

/// The arbiter's answer to a test-and-set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This node won the generation.
    Won,
    /// Another node did.
    Lost {
        /// Who.
        winner: String,
    },
}

/// A deliberately broken protocol step, for showing that the simulator's checkers catch
/// it (issue 11). Never set outside tests and `ftvm sim --plant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plant {
    /// The gate lets an output out without waiting for the backup's ack.
    ReleaseBeforeAck,
    /// A backup that lost its primary goes live without winning the arbiter.
    LiveWithoutWinning,
    /// The backup's replay may run past the newest entry it holds.
    RunPastNewest,
    /// Go-live re-issues no request the log never answered.
    SkipReissue,
    /// Go-live does not fence the shared disk against the old primary's writes.
    NoFence,
    /// A new pair takes a generation past the next one (the arbiter refuses it).
    SkipGeneration,
}

impl Plant {
    /// Every plant, as `--list-plants` names them.
    pub const ALL: [Plant; 6] = [
        Plant::ReleaseBeforeAck,
        Plant::LiveWithoutWinning,
        Plant::RunPastNewest,
        Plant::SkipReissue,
        Plant::NoFence,
        Plant::SkipGeneration,
    ];

    /// The plant's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Plant::ReleaseBeforeAck => "release-before-ack",
            Plant::LiveWithoutWinning => "live-without-winning",
            Plant::RunPastNewest => "run-past-newest",
            Plant::SkipReissue => "skip-reissue",
            Plant::NoFence => "no-fence",
            Plant::SkipGeneration => "skip-generation",
        }
    }

    /// The plant named `name`.
    pub fn from_name(name: &str) -> Option<Plant> {
        Plant::ALL.into_iter().find(|p| p.name() == name)
    }
}
