//! The replaying side of a pair (DESIGN.md §4) as a state machine. The caller receives
//! entries, replays them on its machine and reports what the replay produced; this core
//! says how far the replay may run (never past the newest entry held), when to ack,
//! when the primary is presumed lost, and — once everything received is replayed and
//! the arbiter said yes — how to go live ([`Backup::go_live`]).

use crate::pace::Pace;
use crate::{Plant, Seq, Time, Timing, Verdict};

use ftvm_log::EntryKind;
use std::collections::VecDeque;

/// A request the guest made of its world whose answer comes back as an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId {
    /// Which device (the caller's numbering: entropy, disk, ...).
    pub device: u8,
    /// The device's request id.
    pub id: u64,
}

/// What an output produced by the replay is, for go-live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputClass {
    /// A request whose answer is an input (disk, entropy): re-issued at go-live if the
    /// log never answered it.
    Request(RequestId),
    /// A network frame: sent again at go-live if its release is uncertain.
    Frame,
    /// Anything else (console bytes): not repeated.
    Other,
}

/// Where a backup is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupPhase {
    /// Following the primary's log.
    Replaying,
    /// The primary is lost: replaying everything received before asking the arbiter.
    CatchingUp,
    /// Waiting for the arbiter.
    Arbitrating,
    /// Won: the caller is plugging into the world (and retries until it can).
    GoingLive,
    /// Live: a primary now.
    Live,
    /// The other side won: must not run.
    Halted,
    /// The primary's guest ended; so does this replica.
    Stopped,
}

/// How to go live: everything the caller needs, decided in one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoLive<T> {
    /// The generation won.
    pub generation: u64,
    /// The instruction count the replay reached: live execution starts here.
    pub icount: u64,
    /// Fence the shared disk at this epoch before re-issuing anything (writes of older
    /// epochs, e.g. the old primary's stalled ones, must not land).
    pub fence: Option<u64>,
    /// Requests the guest made whose answers never reached the log: carry them out.
    pub reissue: Vec<T>,
    /// Frames whose release is uncertain: send them again.
    pub resend: Vec<T>,
}

/// What the caller must do.
#[derive(Debug, PartialEq, Eq)]
pub enum BackupAction<T> {
    /// Acknowledge: every entry through `seq` received, executed to `icount`.
    Ack {
        /// Highest sequence number received.
        seq: Seq,
        /// Instruction count the replay reached.
        icount: u64,
        /// The replay's pace, instructions per millisecond of busy replay (0: not
        /// measured yet; [`crate::pace`]).
        pace: u32,
    },
    /// Close the channel: the primary is presumed lost.
    DropPrimary(String),
    /// Ask the arbiter's test-and-set for `generation` under the name `claimant`.
    Ask {
        /// The generation.
        generation: u64,
        /// This node's name.
        claimant: String,
    },
    /// Go live as described.
    GoLive(GoLive<T>),
    /// Stop and exit: the other side is live.
    Halt(String),
}

/// The backup's core.
#[derive(Debug)]
pub struct Backup<T> {
    name: String,
    timing: Timing,
    plant: Option<Plant>,
    generation: u64,
    phase: BackupPhase,
    newest: Seq,
    newest_icount: u64,
    applied: Seq,
    executed: u64,
    pace: Pace,
    last_heard: Time,
    last_ack: Time,
    last_arrival: Time,
    /// Requests produced by the replay and not (yet) answered by the log.
    pending: VecDeque<(RequestId, T)>,
    /// Recent frames with the arrival time of their log entry.
    frames: VecDeque<(Time, T)>,
    asked: Option<Time>,
    plan: Option<(GoLive<T>, Time)>,
    actions: Vec<BackupAction<T>>,
}

/// Frames remembered for re-sending at go-live.
const FRAMES_KEPT: usize = 256;

impl<T: Clone> Backup<T> {
    /// A backup that received the guest at `icount` and follows the log of pair
    /// `generation` from sequence number 1.
    pub fn new(
        name: &str,
        generation: u64,
        icount: u64,
        timing: Timing,
        plant: Option<Plant>,
        now: Time,
    ) -> Backup<T> {
        Backup {
            name: name.into(),
            timing,
            plant,
            generation,
            phase: BackupPhase::Replaying,
            newest: Seq(0),
            newest_icount: icount,
            applied: Seq(0),
            executed: icount,
            pace: Pace::default(),
            last_heard: now,
            last_ack: now,
            last_arrival: now,
            pending: VecDeque::new(),
            frames: VecDeque::new(),
            asked: None,
            plan: None,
            actions: Vec::new(),
        }
    }

    /// Requests the primary had carried out but not yet seen answered when it sent the
    /// guest ([`crate::Primary::in_flight`]): the replay will never produce them, so
    /// unless the log answers them, go-live must re-issue them.
    pub fn in_flight(&mut self, requests: Vec<(RequestId, T)>) {
        self.pending.extend(requests);
    }

    /// The actions decided since the last call, in order.
    pub fn actions(&mut self) -> Vec<BackupAction<T>> {
        std::mem::take(&mut self.actions)
    }

    /// Where this backup is.
    pub fn phase(&self) -> BackupPhase {
        self.phase
    }

    /// The pair's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The newest entry received.
    pub fn newest(&self) -> Seq {
        self.newest
    }

    /// The instruction count the replay may run to: the newest entry's (the primary may
    /// have injected an event there).
    pub fn limit(&self) -> u64 {
        match self.plant {
            Some(Plant::RunPastNewest) => self.newest_icount.saturating_add(5_000),
            _ => self.newest_icount,
        }
    }

    /// Whether the replay should still apply entries (before going live).
    pub fn replaying(&self) -> bool {
        matches!(self.phase, BackupPhase::Replaying | BackupPhase::CatchingUp)
    }

    /// An entry arrived. Returns whether the caller should replay it: a duplicate is
    /// dropped; a gap or an entry going back in time fails the channel.
    pub fn received(&mut self, seq: Seq, icount: u64, kind: EntryKind, now: Time) -> bool {
        if self.phase != BackupPhase::Replaying || seq <= self.newest {
            return false;
        }
        if seq.0 != self.newest.0 + 1 {
            let why = format!(
                "entry {} arrived after {}: the log has a gap",
                seq.0, self.newest.0
            );
            self.channel_failed(&why, now);
            return false;
        }
        if icount < self.newest_icount {
            let why = format!(
                "entry {} goes back to instruction {icount} from {}",
                seq.0, self.newest_icount
            );
            self.channel_failed(&why, now);
            return false;
        }
        self.newest = seq;
        self.newest_icount = icount;
        self.last_heard = now;
        self.last_arrival = now;
        if matches!(kind, EntryKind::Output | EntryKind::End) {
            self.ack(now);
        }
        true
    }

    fn ack(&mut self, now: Time) {
        self.last_ack = now;
        self.actions.push(BackupAction::Ack {
            seq: self.newest,
            icount: self.executed,
            pace: self.pace.per_ms(),
        });
    }

    /// The replay ran `insns` instructions in `busy` of host time (running the guest to
    /// an entry; not the time it waited for one): its pace goes out with the acks.
    pub fn replayed(&mut self, insns: u64, busy: Time) {
        self.pace.ran(insns, busy);
    }

    /// The replay applied entry `seq`, reaching instruction `icount`.
    pub fn applied(&mut self, seq: Seq, icount: u64, now: Time) {
        self.applied = self.applied.max(seq);
        self.executed = self.executed.max(icount);
        self.check_caught_up(now);
    }

    /// The replay produced `out`, whose output entry arrived at `logged_at`.
    pub fn produced(&mut self, class: OutputClass, out: T, logged_at: Time) {
        match class {
            OutputClass::Request(id) => self.pending.push_back((id, out)),
            OutputClass::Frame => {
                self.frames.push_back((logged_at, out));
                if self.frames.len() > FRAMES_KEPT {
                    self.frames.pop_front();
                }
            }
            OutputClass::Other => {}
        }
    }

    /// The replay delivered the answer to request `id` (from the log).
    pub fn answered(&mut self, id: RequestId) {
        if let Some(i) = self.pending.iter().position(|(r, _)| *r == id) {
            self.pending.remove(i);
        }
    }

    /// The primary's log ended cleanly: its guest stopped, so does this replica.
    pub fn ended(&mut self) {
        if self.replaying() {
            self.phase = BackupPhase::Stopped;
        }
    }

    /// The channel from the primary failed (closed, corrupt, out of order).
    pub fn channel_failed(&mut self, why: &str, now: Time) {
        if self.phase != BackupPhase::Replaying {
            return;
        }
        self.phase = BackupPhase::CatchingUp;
        self.actions.push(BackupAction::DropPrimary(why.into()));
        self.check_caught_up(now);
    }

    fn check_caught_up(&mut self, now: Time) {
        // The primary may release outputs under the lease our last acks granted: wait it
        // out (see [`Timing::lease`]).
        let leased = now < self.last_heard + self.timing.lease;
        if self.phase == BackupPhase::CatchingUp && self.applied >= self.newest && !leased {
            if self.plant == Some(Plant::LiveWithoutWinning) {
                self.go_live(now);
                return;
            }
            self.phase = BackupPhase::Arbitrating;
            self.ask(now);
        }
    }

    fn ask(&mut self, now: Time) {
        self.asked = Some(now);
        self.actions.push(BackupAction::Ask {
            generation: self.generation,
            claimant: self.name.clone(),
        });
    }

    /// When [`Backup::tick`] next has something to do: a periodic ack, the primary's
    /// silence reaching the timeout, the lease running out after the catch-up, an
    /// arbiter or go-live retry. `None`: nothing until another input.
    pub fn next_tick(&self) -> Option<Time> {
        let t = self.timing;
        match self.phase {
            BackupPhase::Replaying => {
                Some((self.last_heard + t.timeout).min(self.last_ack + t.ack_every))
            }
            BackupPhase::CatchingUp if self.applied >= self.newest => {
                Some(self.last_heard + t.lease)
            }
            BackupPhase::Arbitrating => self.asked.map(|a| a + t.arbiter_retry),
            BackupPhase::GoingLive => self.plan.as_ref().map(|(_, at)| *at + t.arbiter_retry),
            _ => None,
        }
    }

    /// Time passes: periodic acks, the primary's silence, arbiter and go-live retries.
    pub fn tick(&mut self, now: Time) {
        let t = self.timing;
        match self.phase {
            BackupPhase::Replaying => {
                if now.since(self.last_heard) >= t.timeout {
                    let why = format!("no log traffic for {}", now.since(self.last_heard));
                    self.channel_failed(&why, now);
                } else if now.since(self.last_ack) >= t.ack_every {
                    self.ack(now);
                }
            }
            BackupPhase::CatchingUp => self.check_caught_up(now),
            BackupPhase::Arbitrating
                if self.asked.is_some_and(|a| now.since(a) >= t.arbiter_retry) =>
            {
                self.ask(now);
            }
            BackupPhase::GoingLive => {
                if let Some((plan, at)) = &self.plan {
                    if now.since(*at) >= t.arbiter_retry {
                        let plan = plan.clone();
                        self.plan = Some((plan.clone(), now));
                        self.actions.push(BackupAction::GoLive(plan));
                    }
                }
            }
            _ => {}
        }
    }

    /// The arbiter answered for `generation`.
    pub fn arbiter(&mut self, generation: u64, verdict: Verdict, now: Time) {
        if self.phase != BackupPhase::Arbitrating || generation != self.generation {
            return;
        }
        match verdict {
            Verdict::Won => self.go_live(now),
            Verdict::Lost { winner } => {
                self.phase = BackupPhase::Halted;
                self.actions.push(BackupAction::Halt(format!(
                    "{} halts: {winner} won generation {generation}",
                    self.name
                )));
            }
        }
    }

    /// Go-live (DESIGN.md §4), the one place it is decided: live execution starts at
    /// the instruction the replay reached; the shared disk is fenced at the generation
    /// won; every request the log never answered is carried out by this node's world
    /// (including those the replay produced while catching up); frames logged within
    /// the uncertainty window before the last arrival are sent again.
    pub fn go_live(&mut self, now: Time) {
        let cutoff = self.last_arrival - self.timing.uncertain;
        let plan = GoLive {
            generation: self.generation,
            icount: self.executed,
            fence: (self.plant != Some(Plant::NoFence)).then_some(self.generation),
            reissue: match self.plant {
                Some(Plant::SkipReissue) => Vec::new(),
                _ => self.pending.drain(..).map(|(_, o)| o).collect(),
            },
            resend: self
                .frames
                .drain(..)
                .filter(|(t, _)| *t >= cutoff)
                .map(|(_, o)| o)
                .collect(),
        };
        self.phase = BackupPhase::GoingLive;
        self.plan = Some((plan.clone(), now));
        self.actions.push(BackupAction::GoLive(plan));
    }

    /// Plugging into the world failed after winning (switch restarting, shared disk not
    /// visible yet): this is the only node allowed to run the guest, so it tries again
    /// (the same plan) after the arbiter retry interval, never gives up.
    pub fn live_failed(&mut self, _why: &str, now: Time) {
        if let Some((_, at)) = &mut self.plan {
            *at = now;
        }
    }

    /// The caller is live: from now on a [`crate::Primary::live`] drives it.
    pub fn went_live(&mut self) {
        if self.phase == BackupPhase::GoingLive {
            self.phase = BackupPhase::Live;
            self.plan = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Time {
        Time::ms(ms)
    }

    const DISK: u8 = 1;

    /// The default clocks without the lease (tested on its own).
    fn no_lease() -> Timing {
        Timing {
            lease: Time(0),
            ..Timing::default()
        }
    }

    fn backup() -> Backup<&'static str> {
        Backup::new("B", 1, 100, no_lease(), None, t(0))
    }

    fn feed(b: &mut Backup<&'static str>, seq: u64, icount: u64, kind: EntryKind, now: Time) {
        assert!(b.received(Seq(seq), icount, kind, now));
        b.applied(Seq(seq), icount, now);
    }

    #[test]
    fn the_replay_never_runs_past_the_newest_entry() {
        let mut b = backup();
        assert_eq!(b.limit(), 100);
        assert!(b.received(Seq(1), 250, EntryKind::Event, t(1)));
        assert_eq!(b.limit(), 250);
        let planted: Backup<()> =
            Backup::new("B", 1, 100, no_lease(), Some(Plant::RunPastNewest), t(0));
        assert!(planted.limit() > 100);
    }

    #[test]
    fn outputs_are_acknowledged_at_once_and_everything_periodically() {
        let mut b = backup();
        assert!(b.received(Seq(1), 100, EntryKind::Event, t(1)));
        assert!(b.actions().is_empty());
        assert!(b.received(Seq(2), 120, EntryKind::Output, t(1)));
        assert_eq!(
            b.actions(),
            vec![BackupAction::Ack {
                seq: Seq(2),
                icount: 100,
                pace: 0
            }]
        );
        b.applied(Seq(2), 120, t(2));
        b.tick(t(7));
        assert_eq!(
            b.actions(),
            vec![BackupAction::Ack {
                seq: Seq(2),
                icount: 120,
                pace: 0
            }]
        );
    }

    #[test]
    fn acks_carry_the_pace_of_the_replay_alone() {
        let mut b = backup();
        b.replayed(400_000, Time(2_000));
        b.replayed(600_000, Time(3_000));
        assert!(b.received(Seq(1), 100, EntryKind::Output, t(1)));
        assert!(
            matches!(b.actions()[..], [BackupAction::Ack { pace: 200_000, .. }]),
            "1 M instructions in 5 ms of replay"
        );
    }

    #[test]
    fn duplicates_are_dropped_and_a_gap_fails_the_channel() {
        let mut b = backup();
        feed(&mut b, 1, 100, EntryKind::Progress, t(1));
        assert!(!b.received(Seq(1), 100, EntryKind::Progress, t(2)));
        assert_eq!(b.phase(), BackupPhase::Replaying);
        assert!(!b.received(Seq(3), 100, EntryKind::Progress, t(2)));
        assert_eq!(b.phase(), BackupPhase::Arbitrating);
        let a = b.actions();
        assert!(matches!(&a[0], BackupAction::DropPrimary(w) if w.contains("gap")));
        assert!(matches!(&a[1], BackupAction::Ask { generation: 1, .. }));
    }

    #[test]
    fn the_arbiter_is_asked_only_after_everything_received_is_replayed() {
        let mut b = backup();
        assert!(b.received(Seq(1), 300, EntryKind::Event, t(1)));
        b.tick(t(302));
        assert_eq!(b.phase(), BackupPhase::CatchingUp);
        assert!(!b
            .actions()
            .iter()
            .any(|a| matches!(a, BackupAction::Ask { .. })));
        b.applied(Seq(1), 300, t(303));
        assert!(b
            .actions()
            .iter()
            .any(|a| matches!(a, BackupAction::Ask { .. })));
        b.tick(t(404));
        assert!(matches!(b.actions()[..], [BackupAction::Ask { .. }]));
    }

    #[test]
    fn go_live_reissues_unanswered_requests_including_those_made_while_catching_up() {
        let mut b = backup();
        let (r1, r2) = (
            RequestId {
                device: DISK,
                id: 1,
            },
            RequestId {
                device: DISK,
                id: 2,
            },
        );
        feed(&mut b, 1, 110, EntryKind::Output, t(1));
        b.produced(OutputClass::Request(r1), "write 1", t(1));
        feed(&mut b, 2, 120, EntryKind::Event, t(2));
        b.answered(r1);
        assert!(b.received(Seq(3), 130, EntryKind::Output, t(3)));
        b.channel_failed("closed", t(4));
        // Still catching up: entry 3 produces a request whose answer never came.
        b.produced(OutputClass::Request(r2), "write 2", t(3));
        b.applied(Seq(3), 130, t(5));
        b.actions();
        b.arbiter(1, Verdict::Won, t(6));
        let a = b.actions();
        let [BackupAction::GoLive(plan)] = &a[..] else {
            panic!("{a:?}")
        };
        assert_eq!(plan.reissue, vec!["write 2"]);
        assert_eq!(plan.fence, Some(1));
        assert_eq!(plan.icount, 130);
    }

    #[test]
    fn a_request_in_flight_during_the_transfer_is_reissued_unless_the_log_answers_it() {
        let (r1, r2) = (
            RequestId {
                device: DISK,
                id: 1,
            },
            RequestId {
                device: DISK,
                id: 2,
            },
        );
        let mut b = backup();
        b.in_flight(vec![(r1, "write 1"), (r2, "write 2")]);
        feed(&mut b, 1, 110, EntryKind::Event, t(1));
        b.answered(r1);
        b.channel_failed("closed", t(2));
        b.arbiter(1, Verdict::Won, t(3));
        let a = b.actions();
        assert!(matches!(a.last(), Some(BackupAction::GoLive(p)) if p.reissue == vec!["write 2"]));
    }

    #[test]
    fn go_live_resends_only_frames_logged_within_the_uncertainty_window() {
        let mut b = backup();
        feed(&mut b, 1, 110, EntryKind::Output, t(1));
        b.produced(OutputClass::Frame, "old", t(1));
        feed(&mut b, 2, 120, EntryKind::Output, t(250));
        b.produced(OutputClass::Frame, "recent", t(250));
        b.produced(OutputClass::Other, "console", t(250));
        b.channel_failed("closed", t(251));
        b.actions();
        b.arbiter(1, Verdict::Won, t(252));
        let a = b.actions();
        let [BackupAction::GoLive(plan)] = &a[..] else {
            panic!("{a:?}")
        };
        assert_eq!(plan.resend, vec!["recent"]);
    }

    #[test]
    fn a_backup_that_loses_the_arbiter_halts() {
        let mut b = backup();
        b.channel_failed("closed", t(1));
        b.actions();
        b.arbiter(1, Verdict::Lost { winner: "A".into() }, t(2));
        assert!(matches!(b.actions()[..], [BackupAction::Halt(_)]));
        assert_eq!(b.phase(), BackupPhase::Halted);
    }

    #[test]
    fn a_world_failure_after_winning_retries_instead_of_ending_the_only_live_node() {
        let mut b = backup();
        b.channel_failed("closed", t(1));
        b.arbiter(1, Verdict::Won, t(2));
        let first = b.actions();
        b.live_failed("the switch is restarting", t(3));
        b.tick(t(50));
        assert!(b.actions().is_empty());
        b.tick(t(103));
        let again = b.actions();
        assert_eq!(first.last(), again.last());
        assert_eq!(b.phase(), BackupPhase::GoingLive);
        b.went_live();
        assert_eq!(b.phase(), BackupPhase::Live);
    }

    #[test]
    fn a_backup_that_gives_up_early_waits_out_the_primarys_lease() {
        let mut b: Backup<()> = Backup::new("B", 1, 0, Timing::default(), None, t(0));
        feed_unit(&mut b, 1, 10, t(5));
        b.channel_failed("a gap", t(6));
        assert!(!b
            .actions()
            .iter()
            .any(|a| matches!(a, BackupAction::Ask { .. })));
        // The lease runs from the newest entry's arrival (5 ms).
        let over = 5 + Timing::default().lease.0 / 1000;
        b.tick(t(over - 1));
        assert!(b.actions().is_empty());
        b.tick(t(over));
        assert!(matches!(b.actions()[..], [BackupAction::Ask { .. }]));
    }

    fn feed_unit(b: &mut Backup<()>, seq: u64, icount: u64, now: Time) {
        assert!(b.received(Seq(seq), icount, EntryKind::Progress, now));
        b.applied(Seq(seq), icount, now);
    }

    #[test]
    fn the_end_of_the_log_stops_the_replica_without_going_live() {
        let mut b = backup();
        feed(&mut b, 1, 110, EntryKind::End, t(1));
        b.ended();
        b.tick(t(1000));
        assert_eq!(b.phase(), BackupPhase::Stopped);
        assert!(!b
            .actions()
            .iter()
            .any(|a| matches!(a, BackupAction::Ask { .. })));
    }

    #[test]
    fn the_planted_bugs_change_go_live() {
        let mut b: Backup<&str> =
            Backup::new("B", 1, 0, no_lease(), Some(Plant::LiveWithoutWinning), t(0));
        b.channel_failed("closed", t(1));
        let a = b.actions();
        assert!(matches!(a.last(), Some(BackupAction::GoLive(_))), "{a:?}");
        let mut b: Backup<&str> =
            Backup::new("B", 1, 0, no_lease(), Some(Plant::SkipReissue), t(0));
        b.produced(
            OutputClass::Request(RequestId {
                device: DISK,
                id: 9,
            }),
            "w",
            t(0),
        );
        b.channel_failed("closed", t(1));
        b.arbiter(1, Verdict::Won, t(2));
        let a = b.actions();
        assert!(matches!(a.last(), Some(BackupAction::GoLive(p)) if p.reissue.is_empty()));
    }

    #[test]
    fn next_tick_is_when_a_periodic_ack_is_due() {
        let timing = Timing::default();
        let mut b: Backup<u32> = Backup::new("b", 1, 0, timing, None, Time::ms(0));
        let due = b.next_tick().expect("an ack is due");
        assert_eq!(due, Time::ms(0) + timing.ack_every);
        b.tick(Time(due.0 - 1));
        assert!(b.actions().is_empty(), "nothing before the deadline");
        b.tick(due);
        assert!(matches!(b.actions()[..], [BackupAction::Ack { .. }]));
    }
}
