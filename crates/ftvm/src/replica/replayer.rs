//! Replay: re-execute a recording from the same initial state with inputs taken only
//! from the log, checking every output digest and state hash against it. [`Replay`]
//! applies one entry at a time and serves both `ftvm replay` (entries from a file) and
//! a backup (entries from the logging channel).

use super::{config_digest, output_digest};
use anyhow::{bail, Context, Result};
use ftvm_log::{Entry, EntryKind, LogError, LogReader};
use ftvm_machine::{BootConfig, Event, Exit, ICount, Machine, Output, OutputKind};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;

/// How a replay ended.
pub enum Replayed {
    /// The log's end entry was reached and the final state matched.
    Complete,
    /// The log ends early (torn tail): replayed up to the last whole entry.
    Truncated(String),
    /// Stopped at the requested instruction count.
    Stopped,
}

/// What applying one entry did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The machine is at the entry (and any event in it was injected).
    Done,
    /// The entry was the log's end: the recorded run is over.
    End,
}

/// A machine following a log entry by entry; it never runs past the newest entry.
pub struct Replay<W: Write> {
    /// The machine being replayed.
    pub machine: Machine,
    console: Option<W>,
    /// Output digests logged but not yet produced: (icount, digest, caller's tag).
    expected: VecDeque<(u64, Vec<u8>, u64)>,
    /// The last entries applied, for divergence reports.
    recent: VecDeque<String>,
    /// Outputs produced and checked, with their entry's tag, when `keep_outputs`.
    pub produced: Vec<(Output, u64)>,
    /// Keep produced outputs in [`Replay::produced`] (a backup re-issues some).
    pub keep_outputs: bool,
}

impl<W: Write> Replay<W> {
    /// Follow a log from `machine`'s state; console output goes to `console` (or
    /// nowhere: a backup discards its outputs).
    pub fn new(machine: Machine, console: Option<W>) -> Replay<W> {
        Replay {
            machine,
            console,
            expected: VecDeque::new(),
            recent: VecDeque::new(),
            produced: Vec::new(),
            keep_outputs: false,
        }
    }

    /// Apply one entry: run the machine to its instruction count (never beyond), then
    /// inject its event or check its hash. `tag` travels with an output entry to
    /// [`Replay::produced`].
    pub fn apply(&mut self, entry: &Entry, tag: u64) -> Result<Applied> {
        self.note(entry);
        match entry.kind {
            EntryKind::Output => {
                self.expected
                    .push_back((entry.icount, entry.payload.clone(), tag))
            }
            EntryKind::Event => {
                self.run_to(entry.icount)?;
                let ev: Event = postcard::from_bytes(&entry.payload)
                    .with_context(|| format!("entry {}: the event cannot be decoded", entry.seq))?;
                self.machine.inject(&ev);
            }
            EntryKind::StateHash => {
                self.run_to(entry.icount)?;
                self.check_hash(entry)?;
            }
            EntryKind::Progress => self.run_to(entry.icount)?,
            EntryKind::End => {
                self.run_to(entry.icount)?;
                self.check_hash(entry)?;
                self.check_no_missing_output()?;
                return Ok(Applied::End);
            }
        }
        Ok(Applied::Done)
    }

    /// Run to `icount` (at most the newest entry's) and check that every logged output
    /// up to there was produced.
    pub fn catch_up(&mut self, icount: u64) -> Result<()> {
        self.run_to(icount)?;
        let at = self.machine.icount().0;
        if self.expected.front().is_some_and(|(i, _, _)| *i <= at) {
            self.check_no_missing_output()?;
        }
        Ok(())
    }

    fn check_no_missing_output(&self) -> Result<()> {
        if let Some((icount, _, _)) = self.expected.front() {
            bail!("divergence: the recording produced an output at instruction {icount} that the replay did not");
        }
        Ok(())
    }

    fn note(&mut self, e: &Entry) {
        if self.recent.len() == 8 {
            self.recent.pop_front();
        }
        self.recent.push_back(format!(
            "#{} icount {} {:?} ({} bytes)",
            e.seq,
            e.icount,
            e.kind,
            e.payload.len()
        ));
    }

    fn recent(&self) -> String {
        self.recent.iter().cloned().collect::<Vec<_>>().join("; ")
    }

    fn check_hash(&self, e: &Entry) -> Result<()> {
        let want = e.hash().unwrap_or_default();
        let got = self.machine.state_hash();
        if got != want {
            bail!(
                "divergence at instruction {}: state hash {got:032x}, recorded {want:032x}; last entries: {}",
                e.icount,
                self.recent()
            );
        }
        Ok(())
    }

    /// Run the machine to exactly `icount`, checking (and printing) outputs on the way.
    fn run_to(&mut self, icount: u64) -> Result<()> {
        loop {
            let exit = self.machine.run(ICount(icount));
            for out in self.machine.take_outputs() {
                let Some((at, digest, tag)) = self.expected.pop_front() else {
                    bail!("divergence: the replay produced an output at instruction {} that the recording did not", out.icount);
                };
                if at != out.icount.0 || digest != output_digest(&out) {
                    bail!(
                        "divergence: output at instruction {} differs from the recording's at {at}; last entries: {}",
                        out.icount,
                        self.recent()
                    );
                }
                if let (OutputKind::Console(bytes), Some(c)) = (&out.kind, &mut self.console) {
                    c.write_all(bytes)?;
                    c.flush()?;
                }
                if self.keep_outputs {
                    self.produced.push((out, tag));
                }
            }
            match exit {
                Exit::Until => return Ok(()),
                Exit::Output => {}
                // Power-off ends the recording; the End entry sits at this count.
                Exit::PowerOff { .. } if self.machine.icount().0 == icount => return Ok(()),
                Exit::Idle => bail!(
                    "divergence: the guest waits for input at instruction {} but the log has none there",
                    self.machine.icount()
                ),
                other => bail!("divergence: the replay stopped with {other:?} at instruction {}", self.machine.icount()),
            }
        }
    }
}

/// `ftvm replay`: a log file replayed to its end.
pub struct Replayer<W: Write> {
    /// The replay.
    pub replay: Replay<W>,
    log: LogReader<BufReader<File>>,
    /// Pace the replay so guest time does not run ahead of host time.
    pub realtime: Option<std::time::Instant>,
}

impl<W: Write> Replayer<W> {
    /// Open a log and build its machine from the embedded configuration; refuses a
    /// log whose initial state does not match (a different build of the machine).
    pub fn open(path: &Path, console: W, engine: ftvm_machine::Engine) -> Result<Replayer<W>> {
        let file =
            File::open(path).with_context(|| format!("cannot open log '{}'", path.display()))?;
        let log = LogReader::open(BufReader::new(file))
            .map_err(|e| anyhow::anyhow!("log '{}': {e}", path.display()))?;
        let h = log.header();
        let cfg: BootConfig = postcard::from_bytes(&h.config)
            .context("the log's machine configuration cannot be decoded")?;
        let mut machine = Machine::new(&cfg).context("cannot build the recorded machine")?;
        machine.set_engine(engine);
        h.check(&config_digest(&h.config), machine.state_hash())
            .map_err(|e| anyhow::anyhow!("log '{}': {e}", path.display()))?;
        Ok(Replayer {
            replay: Replay::new(machine, Some(console)),
            log,
            realtime: None,
        })
    }

    /// Replay to the end of the log, or until the instruction count reaches `stop_at`.
    pub fn replay(&mut self, stop_at: Option<u64>) -> Result<Replayed> {
        loop {
            let entry = match self.log.next() {
                None => bail!("the log has no end entry"),
                Some(Ok(e)) => e,
                Some(Err(e @ LogError::Truncated { .. })) => {
                    // Run as far as the inputs we have allow: up to the last entry.
                    if let Some(n) = stop_at {
                        if n > self.replay.machine.icount().0 {
                            bail!("{e}; cannot reach instruction {n}");
                        }
                    }
                    return Ok(Replayed::Truncated(e.to_string()));
                }
                Some(Err(e)) => bail!("{e}"),
            };
            if let Some(n) = stop_at {
                if entry.icount > n {
                    self.replay.note(&entry);
                    self.replay.run_to(n)?;
                    return Ok(Replayed::Stopped);
                }
            }
            if let Some(start) = self.realtime {
                // Wait out the recorded pauses: guest time (ticks of 100 ns) vs host time.
                let guest = std::time::Duration::from_nanos(
                    self.replay.machine.mtime().saturating_mul(100),
                );
                if let Some(ahead) = guest.checked_sub(start.elapsed()) {
                    std::thread::sleep(ahead);
                }
            }
            if self.replay.apply(&entry, 0)? == Applied::End {
                if let Some(n) = stop_at {
                    if n > entry.icount {
                        bail!(
                            "the recording ends at instruction {}, before {n}",
                            entry.icount
                        );
                    }
                }
                return Ok(Replayed::Complete);
            }
        }
    }
}
