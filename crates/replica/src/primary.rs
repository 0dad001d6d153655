//! The live side of a pair (DESIGN.md §4) as a state machine. The caller runs the
//! guest, writes log entries and reads acks; this core decides when outputs leave (the
//! [`OutputGate`]), when a heartbeat is due, when the backup is presumed lost, when to
//! ask the arbiter and what its answer means, and how a shutdown ends.
//!
//! A primary that boots a guest first wins generation 0 of its VM at the arbiter under
//! a name unique to this boot: a primary restarted by a supervisor (whose former backup
//! may be live) loses to its own earlier incarnation and halts instead of running a
//! second copy of the guest.

use crate::backup::RequestId;
use crate::gate::OutputGate;
use crate::{Plant, Seq, Time, Timing, Verdict};

/// Where a primary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrimaryPhase {
    /// Booting: the guest may not run before this node won generation 0.
    Claiming,
    /// Live without a backup: outputs leave at once.
    Unprotected,
    /// Live with a backup holding the log: outputs wait for its acks.
    Protected,
    /// The backup is lost: the guest runs, outputs wait for the arbiter's answer.
    Arbitrating,
    /// A shutdown waits for the backup to acknowledge what is held.
    Stopping,
    /// Ended cleanly.
    Stopped,
    /// The other side won (or this boot was refused): must not run.
    Halted,
}

/// What the caller must do.
#[derive(Debug, PartialEq, Eq)]
pub enum PrimaryAction<T> {
    /// The guest may run from now on.
    Start,
    /// Send a progress entry (the heartbeat) now.
    Heartbeat,
    /// This output may reach the world.
    Release(T),
    /// Ask the arbiter's test-and-set for `generation` under the name `claimant`.
    Ask {
        /// The generation.
        generation: u64,
        /// The name to ask under.
        claimant: String,
    },
    /// Close the channel to the backup: it is presumed lost.
    DropBackup(String),
    /// From now on the shared disk must refuse writes from an epoch below `epoch`.
    Fence {
        /// The epoch (the generation this node won).
        epoch: u64,
    },
    /// Stop the guest and exit: another node is (or may be) live.
    Halt(String),
    /// The shutdown is complete; `dropped` outputs never left (the backup had not
    /// acknowledged them).
    Stopped {
        /// Outputs that never left.
        dropped: usize,
    },
}

#[derive(Debug)]
struct Link {
    backup: String,
    attached: Time,
    last_sent: Time,
    last_ack: Option<Time>,
    /// Entries sent and not yet acknowledged, with when and at which instruction.
    unacked: std::collections::VecDeque<(Seq, Time, u64)>,
    /// The newest entry sent: an ack beyond it is forged.
    sent_through: Seq,
    /// The instruction of the newest entry acknowledged (the transfer's at first): the
    /// backup never executes past the newest entry it holds, so an ack that reports
    /// more is forged.
    acked_icount: u64,
    /// Outputs may leave until then (the lease the newest ack granted).
    lease_until: Time,
}

/// The primary's core.
#[derive(Debug)]
pub struct Primary<T> {
    name: String,
    claimant: String,
    timing: Timing,
    phase: PrimaryPhase,
    generation: u64,
    epoch: u64,
    link: Option<Link>,
    gate: OutputGate<T>,
    /// The outstanding arbiter request: generation, when asked.
    asked: Option<(u64, Time)>,
    /// When a shutdown began.
    stopping: Option<Time>,
    /// Requests carried out whose answers have not reached the guest yet.
    in_flight: Vec<(RequestId, T)>,
    /// The instruction count the backup reported executing to.
    backup_icount: u64,
    /// Acknowledgments that did not match what was sent (each dropped the backup).
    protocol_errors: u64,
    /// How many instructions the guest may run ahead of the backup's replay…
    max_lag: u64,
    /// …and no more than the backup replays in this long at its pace.
    lag_window: Time,
    /// The backup's pace, from its newest ack (instructions per ms; 0: unknown).
    backup_pace: u32,
    /// [`Plant::SkipGeneration`]: a new pair skips a generation.
    skip_generation: bool,
    actions: Vec<PrimaryAction<T>>,
}

impl<T> Primary<T> {
    /// A primary about to boot a new guest: asks for generation 0 first, under a name
    /// unique to this boot (`name#incarnation`).
    pub fn boot(
        name: &str,
        incarnation: &str,
        timing: Timing,
        plant: Option<Plant>,
        now: Time,
    ) -> Primary<T> {
        let mut p = Primary::new(name, timing, plant, PrimaryPhase::Claiming, 0);
        p.claimant = format!("{name}#{incarnation}");
        p.ask(0, now);
        p
    }

    /// A node that just went live after winning `generation` (see
    /// [`crate::Backup::go_live`]): unprotected until a new backup joins.
    pub fn live(name: &str, generation: u64, timing: Timing, plant: Option<Plant>) -> Primary<T> {
        let mut p = Primary::new(name, timing, plant, PrimaryPhase::Unprotected, generation);
        p.epoch = generation;
        p
    }

    fn new(
        name: &str,
        timing: Timing,
        plant: Option<Plant>,
        phase: PrimaryPhase,
        generation: u64,
    ) -> Primary<T> {
        Primary {
            name: name.into(),
            claimant: name.into(),
            timing,
            phase,
            generation,
            epoch: generation,
            link: None,
            gate: OutputGate::new(plant),
            asked: None,
            stopping: None,
            in_flight: Vec::new(),
            backup_icount: 0,
            protocol_errors: 0,
            max_lag: u64::MAX,
            lag_window: Time(u64::MAX),
            backup_pace: 0,
            skip_generation: plant == Some(Plant::SkipGeneration),
            actions: Vec::new(),
        }
    }

    /// The actions decided since the last call, in order.
    pub fn actions(&mut self) -> Vec<PrimaryAction<T>> {
        std::mem::take(&mut self.actions)
    }

    /// Where this primary is.
    pub fn phase(&self) -> PrimaryPhase {
        self.phase
    }

    /// Bound the backup's lag, so that a failover's catch-up replay stays short: the
    /// guest runs at most `insns` instructions ahead of the backup's replay, and no
    /// more than the backup replays in `window` at the pace it reports (a backup slower
    /// than the primary would otherwise take longer than `window` to catch up).
    pub fn set_max_lag(&mut self, insns: u64, window: Time) {
        self.max_lag = insns;
        self.lag_window = window;
    }

    /// The backup's pace, instructions per millisecond of its replay, as its newest ack
    /// reported it (0: not measured yet; [`crate::pace`]).
    pub fn backup_paced(&mut self, per_ms: u32) {
        self.backup_pace = per_ms;
    }

    /// The backup's pace as last reported (instructions per ms; 0: unknown).
    pub fn backup_pace(&self) -> u32 {
        self.backup_pace
    }

    /// How many instructions the guest may run ahead of the backup now.
    pub fn lag_bound(&self) -> u64 {
        match crate::pace::lag_for(self.backup_pace, self.lag_window) {
            Some(by_pace) => self.max_lag.min(by_pace),
            None => self.max_lag,
        }
    }

    /// Whether the guest, at instruction `icount`, must wait for the backup to catch up.
    pub fn throttled(&self, icount: u64) -> bool {
        self.phase == PrimaryPhase::Protected
            && icount > self.backup_icount.saturating_add(self.lag_bound())
    }

    /// The instruction the backup reported executing to (its newest ack).
    pub fn backup_icount(&self) -> u64 {
        self.backup_icount
    }

    /// Acknowledgments that did not match what was sent: each ended the channel.
    pub fn protocol_errors(&self) -> u64 {
        self.protocol_errors
    }

    /// Whether the guest may execute now.
    pub fn may_run(&self) -> bool {
        matches!(
            self.phase,
            PrimaryPhase::Unprotected | PrimaryPhase::Protected | PrimaryPhase::Arbitrating
        )
    }

    /// Whether a backup holds the log.
    pub fn protected(&self) -> bool {
        self.phase == PrimaryPhase::Protected
    }

    /// Whether the backup confirmed it holds the guest (its first ack).
    pub fn confirmed(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.last_ack.is_some())
    }

    /// The pair's generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The generation this node won: its shared-disk writes carry it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The protecting backup's name.
    pub fn backup(&self) -> Option<&str> {
        self.link.as_ref().map(|l| l.backup.as_str())
    }

    /// Outputs the Output Rule holds.
    pub fn held(&self) -> usize {
        self.gate.len()
    }

    /// Until when outputs already released may still be carried out (a disk write
    /// sent): `None` without limit (live alone), otherwise the end of the lease the
    /// newest acks granted — `Time(0)`, never, while no lease holds (claiming,
    /// arbitrating, halted or stopped: a backup may be live, or about to be).
    pub fn lease(&self) -> Option<Time> {
        match self.phase {
            PrimaryPhase::Unprotected => None,
            PrimaryPhase::Protected | PrimaryPhase::Stopping => {
                Some(self.link.as_ref().map_or(Time(0), |l| l.lease_until))
            }
            _ => Some(Time(0)),
        }
    }

    /// The highest sequence number the backup acknowledged.
    pub fn acked(&self) -> Seq {
        self.gate.acked()
    }

    /// The generation a new pair takes: past everything the arbiter decided for the VM
    /// (`decided`) and past this node's own.
    pub fn next_generation(&self, decided: Option<u64>) -> u64 {
        decided.unwrap_or(0).max(self.generation) + 1 + u64::from(self.skip_generation)
    }

    fn ask(&mut self, generation: u64, now: Time) {
        self.asked = Some((generation, now));
        self.actions.push(PrimaryAction::Ask {
            generation,
            claimant: if generation == 0 && self.phase == PrimaryPhase::Claiming {
                self.claimant.clone()
            } else {
                self.name.clone()
            },
        });
    }

    fn flush_gate(&mut self, now: Time) {
        // While protected, only under a lease: the backup cannot be live yet.
        let guarded = matches!(self.phase, PrimaryPhase::Protected | PrimaryPhase::Stopping);
        if guarded && self.link.as_ref().is_some_and(|l| now >= l.lease_until) {
            return;
        }
        for o in self.gate.release() {
            self.actions.push(PrimaryAction::Release(o));
        }
    }

    /// The arbiter answered for `generation`.
    pub fn arbiter(&mut self, generation: u64, verdict: Verdict, now: Time) {
        if self.asked.map(|(g, _)| g) != Some(generation) {
            return; // a stale or duplicated answer
        }
        self.asked = None;
        match (self.phase, verdict) {
            (PrimaryPhase::Claiming, Verdict::Won) => {
                self.phase = PrimaryPhase::Unprotected;
                self.actions.push(PrimaryAction::Start);
            }
            (PrimaryPhase::Claiming, Verdict::Lost { winner }) => {
                self.phase = PrimaryPhase::Halted;
                self.actions.push(PrimaryAction::Halt(format!(
                    "{} will not boot the guest: {winner} already started this VM (a restarted primary must join as a backup)",
                    self.name
                )));
            }
            (PrimaryPhase::Arbitrating, Verdict::Won) => {
                self.phase = PrimaryPhase::Unprotected;
                self.epoch = generation;
                self.actions
                    .push(PrimaryAction::Fence { epoch: generation });
                self.gate.sole_owner();
                self.flush_gate(now);
            }
            (PrimaryPhase::Arbitrating, Verdict::Lost { winner }) => {
                // The winner is live and re-sends what may not have left: nothing held
                // here may reach the world now, acknowledged or not.
                self.phase = PrimaryPhase::Halted;
                let (_, dropped) = self.gate.close();
                self.actions.push(PrimaryAction::Halt(format!(
                    "{} halts: {winner} won generation {generation} and is live ({dropped} held outputs dropped)",
                    self.name
                )));
            }
            _ => {}
        }
    }

    /// A backup finished its transfer of the guest at instruction `icount`; the pair
    /// takes `generation` and the log starts.
    pub fn attached(&mut self, backup: &str, generation: u64, icount: u64, now: Time) {
        if self.phase != PrimaryPhase::Unprotected {
            return;
        }
        self.phase = PrimaryPhase::Protected;
        self.generation = generation;
        self.backup_icount = icount;
        self.gate.protect();
        self.link = Some(Link {
            backup: backup.into(),
            attached: now,
            last_sent: now,
            last_ack: None,
            unacked: std::collections::VecDeque::new(),
            sent_through: Seq(0),
            acked_icount: icount,
            lease_until: Time(0),
        });
    }

    /// Entry `seq`, logged at instruction `icount`, went onto the channel.
    pub fn sent(&mut self, seq: Seq, icount: u64, now: Time) {
        if let Some(l) = &mut self.link {
            l.last_sent = now;
            l.sent_through = l.sent_through.max(seq);
            l.unacked.push_back((seq, now, icount));
        }
    }

    /// The guest produced `out`, logged as entry `seq` (`None`: not logged — no
    /// backup, or the channel failed).
    pub fn output(&mut self, seq: Option<Seq>, out: T, now: Time) {
        self.gate.hold(seq, out);
        self.flush_gate(now);
    }

    /// A request left for the world (disk, entropy) and its answer will come back
    /// as an input.
    pub fn requested(&mut self, id: RequestId, out: T) {
        self.in_flight.push((id, out));
    }

    /// The answer to request `id` reached the guest (and the log).
    pub fn answered(&mut self, id: RequestId) {
        if let Some(i) = self.in_flight.iter().position(|(r, _)| *r == id) {
            self.in_flight.remove(i);
        }
    }

    /// Requests whose answers are still outstanding: a new backup receives them with
    /// the guest, since its replay will never produce them (see
    /// [`crate::Backup::in_flight`]).
    pub fn in_flight(&self) -> Vec<(RequestId, T)>
    where
        T: Clone,
    {
        self.in_flight.clone()
    }

    /// The backup holds every entry through `seq` and executed to instruction `icount`
    /// (issue 12: checked against what was sent; a mismatch is a protocol error that
    /// drops the backup and releases nothing).
    pub fn ack(&mut self, seq: Seq, icount: u64, now: Time) {
        let Some(l) = &mut self.link else { return };
        if seq > l.sent_through {
            let why = format!(
                "protocol error: an acknowledgment of entry {} but only {} were sent",
                seq.0, l.sent_through.0
            );
            self.protocol_error(&why, now);
            return;
        }
        let mut through = l.acked_icount;
        let mut n = 0;
        for &(s, _, at) in &l.unacked {
            if s > seq {
                break;
            }
            through = through.max(at);
            n += 1;
        }
        if icount > through {
            let why = format!(
                "protocol error: an acknowledgment of entry {} reports instruction {icount}, past the entries it acknowledges (through instruction {through})",
                seq.0
            );
            self.protocol_error(&why, now);
            return;
        }
        l.acked_icount = through;
        l.last_ack = Some(now);
        for (_, sent, _) in l.unacked.drain(..n) {
            l.lease_until = l.lease_until.max(sent + self.timing.lease);
        }
        self.backup_icount = self.backup_icount.max(icount);
        self.gate.ack(seq);
        self.flush_gate(now);
        self.check_stopped(now);
    }

    fn protocol_error(&mut self, why: &str, now: Time) {
        self.protocol_errors += 1;
        self.channel_failed(why, now);
    }

    /// The channel to the backup failed (closed, refused a write, or out of order).
    pub fn channel_failed(&mut self, why: &str, now: Time) {
        match self.phase {
            PrimaryPhase::Protected => self.lose(why, now),
            PrimaryPhase::Stopping => self.stop_now(now),
            _ => {}
        }
    }

    fn lose(&mut self, why: &str, now: Time) {
        self.phase = PrimaryPhase::Arbitrating;
        self.link = None;
        self.actions.push(PrimaryAction::DropBackup(why.into()));
        self.ask(self.generation, now);
    }

    /// Time passes: heartbeats, the backup's silence, arbiter retries, a shutdown's end.
    pub fn tick(&mut self, now: Time) {
        let t = self.timing;
        match self.phase {
            PrimaryPhase::Protected | PrimaryPhase::Stopping => {
                let Some(l) = &mut self.link else { return };
                let (heard, limit) = match l.last_ack {
                    Some(a) => (a, t.timeout),
                    None => (l.attached, t.join_timeout.max(t.timeout)),
                };
                if now.since(heard) >= limit {
                    let why = format!("no acknowledgment for {}", now.since(heard));
                    self.channel_failed(&why, now);
                } else if self.stopping.is_some_and(|s| now.since(s) >= t.timeout) {
                    self.stop_now(now);
                } else if now.since(l.last_sent) >= t.heartbeat
                    && self.phase == PrimaryPhase::Protected
                {
                    l.last_sent = now;
                    self.actions.push(PrimaryAction::Heartbeat);
                }
            }
            PrimaryPhase::Claiming | PrimaryPhase::Arbitrating => {
                if let Some((g, at)) = self.asked {
                    if now.since(at) >= t.arbiter_retry {
                        self.ask(g, now);
                    }
                }
            }
            _ => {}
        }
    }

    /// When [`Primary::tick`] next has something to do: a heartbeat, the backup's
    /// silence reaching the timeout, an arbiter retry, a shutdown's time running out.
    /// `None`: nothing until another input. An adapter waits for this or for news.
    pub fn next_tick(&self) -> Option<Time> {
        let t = self.timing;
        match self.phase {
            PrimaryPhase::Protected | PrimaryPhase::Stopping => {
                let l = self.link.as_ref()?;
                let silence = match l.last_ack {
                    Some(a) => a + t.timeout,
                    None => l.attached + t.join_timeout.max(t.timeout),
                };
                let mut at = silence;
                if let Some(s) = self.stopping {
                    at = at.min(s + t.timeout);
                }
                if self.phase == PrimaryPhase::Protected {
                    at = at.min(l.last_sent + t.heartbeat);
                }
                Some(at)
            }
            PrimaryPhase::Claiming | PrimaryPhase::Arbitrating => {
                self.asked.map(|(_, at)| at + t.arbiter_retry)
            }
            _ => None,
        }
    }

    /// A signal, or the guest powered off or reset: end the run. Outputs the backup has
    /// not acknowledged never leave (it may go live from before them); while protected
    /// the shutdown waits up to the timeout for its acks.
    pub fn shutdown(&mut self, now: Time) {
        match self.phase {
            PrimaryPhase::Protected => {
                self.phase = PrimaryPhase::Stopping;
                self.stopping = Some(now);
                self.check_stopped(now);
            }
            PrimaryPhase::Unprotected | PrimaryPhase::Arbitrating | PrimaryPhase::Claiming => {
                self.stop_now(now)
            }
            _ => {}
        }
    }

    fn check_stopped(&mut self, now: Time) {
        if self.phase == PrimaryPhase::Stopping && self.gate.oldest_wait().is_none() {
            self.stop_now(now);
        }
    }

    fn stop_now(&mut self, now: Time) {
        // What the backup acknowledged may leave only under the lease.
        let leased = match self.phase {
            PrimaryPhase::Stopping => self.link.as_ref().is_some_and(|l| now < l.lease_until),
            _ => true,
        };
        let (out, dropped) = if leased {
            self.gate.close()
        } else {
            let n = self.gate.len();
            (self.gate.close_dropping(), n)
        };
        self.actions
            .extend(out.into_iter().map(PrimaryAction::Release));
        self.phase = PrimaryPhase::Stopped;
        self.link = None;
        self.actions.push(PrimaryAction::Stopped { dropped });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Time {
        Time::ms(ms)
    }

    fn protected() -> Primary<&'static str> {
        let mut p = Primary::boot("A", "1", Timing::default(), None, t(0));
        p.arbiter(0, Verdict::Won, t(1));
        p.actions();
        p.attached("B", 1, 0, t(2));
        p
    }

    #[test]
    fn a_booting_primary_runs_the_guest_only_after_winning_generation_zero() {
        let mut p: Primary<()> = Primary::boot("A", "77", Timing::default(), None, t(0));
        assert!(!p.may_run());
        assert_eq!(
            p.actions(),
            vec![PrimaryAction::Ask {
                generation: 0,
                claimant: "A#77".into()
            }]
        );
        p.tick(t(150));
        assert!(matches!(
            p.actions()[..],
            [PrimaryAction::Ask { generation: 0, .. }]
        ));
        p.arbiter(0, Verdict::Won, t(151));
        assert!(p.may_run());
        assert_eq!(p.actions(), vec![PrimaryAction::Start]);
    }

    #[test]
    fn a_restarted_primary_halts_instead_of_booting_a_second_copy() {
        let mut p: Primary<()> = Primary::boot("A", "2", Timing::default(), None, t(0));
        p.actions();
        p.arbiter(
            0,
            Verdict::Lost {
                winner: "A#1".into(),
            },
            t(1),
        );
        assert!(!p.may_run());
        assert!(matches!(p.actions()[..], [PrimaryAction::Halt(_)]));
    }

    #[test]
    fn an_ack_for_an_entry_never_sent_drops_the_backup_and_releases_nothing() {
        let mut p = protected();
        p.sent(Seq(1), 10, t(3));
        p.output(Some(Seq(1)), "a", t(3));
        p.sent(Seq(2), 20, t(3));
        p.output(Some(Seq(2)), "b", t(3));
        p.actions();
        // A forged ack for entry 9 (only 2 were sent) must not release "a" or "b".
        p.ack(Seq(9), 0, t(4));
        let a = p.actions();
        assert!(
            matches!(&a[..], [PrimaryAction::DropBackup(why), PrimaryAction::Ask { generation: 1, .. }] if why.contains("never") || why.contains("only 2")),
            "{a:?}"
        );
        assert_eq!(p.phase(), PrimaryPhase::Arbitrating);
        assert_eq!(p.held(), 2);
        // Acks through what was sent are fine.
        let mut p = protected();
        p.sent(Seq(1), 10, t(3));
        p.output(Some(Seq(1)), "a", t(3));
        p.actions();
        p.ack(Seq(1), 0, t(4));
        assert_eq!(p.actions(), vec![PrimaryAction::Release("a")]);
        assert_eq!(p.phase(), PrimaryPhase::Protected);
    }

    #[test]
    fn heartbeats_go_out_after_silence_and_silence_from_the_backup_means_it_is_lost() {
        let mut p = protected();
        p.tick(t(5));
        assert!(p.actions().is_empty());
        p.tick(t(12));
        assert_eq!(p.actions(), vec![PrimaryAction::Heartbeat]);
        p.sent(Seq(1), 10, t(12));
        p.ack(Seq(1), 0, t(13));
        p.tick(t(200));
        p.actions();
        p.tick(t(313));
        let a = p.actions();
        assert!(
            matches!(&a[..], [PrimaryAction::DropBackup(_), PrimaryAction::Ask { generation: 1, claimant }] if claimant == "A")
        );
        assert_eq!(p.phase(), PrimaryPhase::Arbitrating);
    }

    #[test]
    fn outputs_held_when_the_backup_is_lost_leave_only_after_winning() {
        let mut p = protected();
        p.output(Some(Seq(1)), "a", t(3));
        p.channel_failed("closed", t(3));
        p.output(None, "b", t(3));
        assert!(!p
            .actions()
            .iter()
            .any(|a| matches!(a, PrimaryAction::Release(_))));
        p.arbiter(1, Verdict::Won, t(4));
        assert_eq!(
            p.actions(),
            vec![
                PrimaryAction::Fence { epoch: 1 },
                PrimaryAction::Release("a"),
                PrimaryAction::Release("b")
            ]
        );
        assert_eq!(p.epoch(), 1);
    }

    #[test]
    fn a_primary_that_loses_the_arbiter_releases_nothing_even_if_acknowledged() {
        let mut p = protected();
        p.output(Some(Seq(3)), "a", t(3));
        p.channel_failed("cut", t(3));
        p.ack(Seq(3), 0, t(4)); // a late ack on the dead channel
        p.actions();
        p.arbiter(1, Verdict::Lost { winner: "B".into() }, t(5));
        let a = p.actions();
        assert!(matches!(&a[..], [PrimaryAction::Halt(_)]), "{a:?}");
        assert!(!p.may_run());
    }

    #[test]
    fn a_shutdown_waits_for_acks_and_drops_what_stays_unacknowledged() {
        let mut p = protected();
        p.sent(Seq(1), 10, t(3));
        p.output(Some(Seq(1)), "a", t(3));
        p.sent(Seq(2), 20, t(3));
        p.output(Some(Seq(2)), "b", t(3));
        p.shutdown(t(10));
        assert!(p.actions().is_empty());
        assert!(!p.may_run());
        p.ack(Seq(1), 0, t(11));
        assert_eq!(p.actions(), vec![PrimaryAction::Release("a")]);
        p.tick(t(200));
        assert!(p.actions().is_empty());
        p.tick(t(311));
        assert_eq!(p.actions(), vec![PrimaryAction::Stopped { dropped: 1 }]);
    }

    #[test]
    fn a_shutdown_with_everything_acknowledged_ends_at_once() {
        let mut p = protected();
        p.sent(Seq(1), 10, t(3));
        p.output(Some(Seq(1)), "a", t(3));
        p.ack(Seq(1), 0, t(3));
        assert_eq!(p.actions(), vec![PrimaryAction::Release("a")]);
        p.shutdown(t(4));
        assert_eq!(p.actions(), vec![PrimaryAction::Stopped { dropped: 0 }]);
    }

    #[test]
    fn an_acknowledged_output_leaves_only_under_the_lease_of_its_ack() {
        let mut p = protected();
        p.sent(Seq(1), 10, t(10));
        p.output(Some(Seq(1)), "a", t(10));
        p.sent(Seq(2), 20, t(11));
        p.output(Some(Seq(2)), "b", t(11));
        // The ack of entry 1 arrives late: its lease (from its sending at 10 ms) is over.
        let late = 10 + Timing::default().lease.0 / 1000;
        p.ack(Seq(1), 0, t(late));
        assert!(p.actions().is_empty());
        // A fresh ack renews it.
        p.sent(Seq(3), 30, t(late + 1));
        p.ack(Seq(3), 0, t(late + 2));
        assert_eq!(
            p.actions(),
            vec![PrimaryAction::Release("a"), PrimaryAction::Release("b")]
        );
    }

    #[test]
    fn released_writes_may_be_sent_only_under_the_lease_or_when_live_alone() {
        let mut p: Primary<&str> = Primary::boot("A", "1", Timing::default(), None, t(0));
        assert_eq!(p.lease(), Some(Time(0)), "claiming: nothing may be sent");
        p.arbiter(0, Verdict::Won, t(1));
        assert_eq!(p.lease(), None, "live alone");
        p.attached("B", 1, 0, t(2));
        assert_eq!(p.lease(), Some(Time(0)), "no ack yet");
        p.sent(Seq(1), 10, t(10));
        p.ack(Seq(1), 0, t(12));
        assert_eq!(p.lease(), Some(t(10) + Timing::default().lease));
        p.channel_failed("cut", t(13));
        assert_eq!(
            p.lease(),
            Some(Time(0)),
            "arbitrating: the backup may go live"
        );
        p.arbiter(1, Verdict::Won, t(14));
        assert_eq!(p.lease(), None, "won: live alone again");
        let mut q = protected();
        q.channel_failed("cut", t(3));
        q.arbiter(1, Verdict::Lost { winner: "B".into() }, t(4));
        assert_eq!(q.lease(), Some(Time(0)), "halted");
    }

    #[test]
    fn the_guest_waits_while_the_backup_lags_too_far() {
        let mut p = protected();
        p.set_max_lag(1000, Time::ms(30));
        p.sent(Seq(1), 5000, t(3));
        p.sent(Seq(2), 6000, t(3));
        p.ack(Seq(2), 5000, t(4));
        assert!(!p.throttled(6000));
        assert!(p.throttled(6001));
        p.ack(Seq(2), 5500, t(5));
        assert!(!p.throttled(6001));
    }

    #[test]
    fn a_backup_slower_than_the_primary_bounds_the_lag_by_its_own_pace() {
        let mut p = protected();
        // The primary ran 10 M instructions in the last 30 ms…
        p.set_max_lag(10_000_000, Time::ms(30));
        p.sent(Seq(1), 1_000_000, t(3));
        p.ack(Seq(1), 1_000_000, t(4));
        assert!(
            !p.throttled(5_000_000),
            "pace unknown: the primary's own window"
        );
        // …but its backup replays 5,000 per ms: 30 ms of its replay is 150,000.
        p.backup_paced(5_000);
        assert_eq!(p.lag_bound(), 150_000);
        assert!(!p.throttled(1_150_000));
        assert!(p.throttled(1_150_001));
        // A backup faster than the primary leaves the primary's own bound.
        p.backup_paced(1_000_000);
        assert_eq!(p.lag_bound(), 10_000_000);
        // However slow, the floor keeps the pair out of lockstep.
        p.backup_paced(1);
        assert_eq!(p.lag_bound(), crate::pace::MIN_LAG);
    }

    #[test]
    fn an_ack_reporting_more_than_was_sent_drops_the_backup_and_releases_nothing() {
        let mut p = protected();
        p.sent(Seq(1), 100, t(3));
        p.output(Some(Seq(1)), "a", t(3));
        p.sent(Seq(2), 200, t(3));
        // Entry 1 reaches instruction 100: a backup holding only it cannot be at 150.
        p.ack(Seq(1), 150, t(4));
        assert_eq!(p.protocol_errors(), 1);
        assert_eq!(p.phase(), PrimaryPhase::Arbitrating);
        let actions = p.actions();
        assert!(
            matches!(&actions[..], [PrimaryAction::DropBackup(why), PrimaryAction::Ask { .. }]
                if why.contains("instruction 150")),
            "{actions:?}"
        );
    }

    #[test]
    fn an_ack_within_what_was_sent_is_taken() {
        let mut p = protected();
        p.sent(Seq(1), 100, t(3));
        p.output(Some(Seq(1)), "a", t(3));
        p.sent(Seq(2), 200, t(3));
        p.ack(Seq(2), 200, t(4));
        // An older ack arriving late reports no more than the newest entry it covers.
        p.ack(Seq(1), 180, t(4));
        assert_eq!(p.protocol_errors(), 0);
        assert_eq!(p.phase(), PrimaryPhase::Protected);
        assert_eq!(p.actions(), vec![PrimaryAction::Release("a")]);
    }

    #[test]
    fn a_stale_arbiter_answer_is_ignored() {
        let mut p = protected();
        p.arbiter(0, Verdict::Lost { winner: "X".into() }, t(3));
        assert!(p.actions().is_empty());
        assert_eq!(p.phase(), PrimaryPhase::Protected);
    }

    #[test]
    fn a_new_backup_has_until_the_join_timeout_to_confirm() {
        let mut p = protected();
        p.tick(t(5_000));
        assert_eq!(p.actions(), vec![PrimaryAction::Heartbeat]);
        assert!(p.protected());
        p.tick(t(10_003));
        assert!(p
            .actions()
            .iter()
            .any(|a| matches!(a, PrimaryAction::DropBackup(_))));
    }

    #[test]
    fn requests_in_flight_are_known_until_answered() {
        let mut p = protected();
        let (a, b) = (
            RequestId { device: 1, id: 1 },
            RequestId { device: 1, id: 2 },
        );
        p.requested(a, "read");
        p.requested(b, "write");
        p.answered(a);
        assert_eq!(p.in_flight(), vec![(b, "write")]);
    }

    #[test]
    fn the_next_pair_takes_a_generation_past_everything_decided() {
        let p = protected();
        assert_eq!(p.next_generation(None), 2);
        assert_eq!(p.next_generation(Some(7)), 8);
        let mut planted: Primary<&str> =
            Primary::live("P", 1, Timing::default(), Some(Plant::SkipGeneration));
        assert_eq!(planted.next_generation(Some(1)), 3);
        assert!(planted.actions().is_empty());
    }

    #[test]
    fn next_tick_is_when_tick_first_acts() {
        let timing = Timing::default();
        let mut p: Primary<u32> = Primary::live("a", 1, timing, None);
        assert_eq!(p.next_tick(), None, "unprotected: nothing is due");
        p.attached("b", 2, 0, t(0));
        p.ack(Seq(0), 0, t(1));
        p.actions();
        let due = p.next_tick().expect("a heartbeat is due");
        assert_eq!(due, t(0) + timing.heartbeat);
        p.tick(Time(due.0 - 1));
        assert!(p.actions().is_empty(), "nothing before the deadline");
        p.tick(due);
        assert_eq!(p.actions(), vec![PrimaryAction::Heartbeat]);
    }
}
