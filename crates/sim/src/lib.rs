//! A deterministic simulation of a whole ftvm cluster (issue 11): switch, arbiter, a
//! primary, a backup and a spare, a shared disk and clients, on simulated time and a
//! simulated network, all from one seed. The nodes run the real FT core
//! (`ftvm_replica::{Primary, Backup}`) around a guest ([`guest::Guest`]): the model
//! guest ([`model`]) for breadth or the real machine running Linux ([`linux`]); the
//! simulator only plays the world: it delivers messages (dropped, delayed, duplicated,
//! reordered, partitioned), crashes and restarts nodes and the arbiter, stalls and
//! fails disk writes, slows a backup, and checks after every step what a user could
//! observe ([`cluster`]). The same seed gives the same run, bit for bit.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cluster;
pub mod guest;
pub mod lin;
pub mod linux;
pub mod model;
pub mod rng;
pub mod tcp;

pub use cluster::{run_seed, trace_seed, Faults, Report};
pub use ftvm_replica::Plant;

/// Which guest the cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestKind {
    /// The model guest ([`model`]): breadth, thousands of seeds a minute.
    Model,
    /// The real machine running the Linux counter ([`linux`]): depth.
    Linux,
}

impl GuestKind {
    /// Its `--guest` name.
    pub fn name(self) -> &'static str {
        match self {
            GuestKind::Model => "model",
            GuestKind::Linux => "linux",
        }
    }

    /// The guest named `name`.
    pub fn from_name(name: &str) -> Option<GuestKind> {
        [GuestKind::Model, GuestKind::Linux]
            .into_iter()
            .find(|g| g.name() == name)
    }

    /// Get the guest ready (the Linux guest's boot image: from the cache, or booted
    /// now); an error says what is missing.
    pub fn prepare(self) -> Result<(), String> {
        match self {
            GuestKind::Model => Ok(()),
            GuestKind::Linux => linux::image().map(|_| ()),
        }
    }

    /// Run one seed (tracing every delivered message to stderr if `trace`).
    pub fn run_seed(self, seed: u64, plant: Option<Plant>, trace: bool) -> Result<Report, String> {
        Ok(match self {
            GuestKind::Model => cluster::run::<model::Model>(seed, plant, trace, &()),
            GuestKind::Linux => cluster::run::<linux::Linux>(seed, plant, trace, linux::image()?),
        })
    }

    /// Run seeds `first..first + count` (stopping at the first failing one if `stop`).
    pub fn run_seeds(
        self,
        first: u64,
        count: u64,
        plant: Option<Plant>,
        stop: bool,
    ) -> Result<Summary, String> {
        self.prepare()?;
        let mut s = Summary::default();
        for seed in first..first.saturating_add(count) {
            if !s.add(self.run_seed(seed, plant, false)?) && stop {
                break;
            }
        }
        Ok(s)
    }
}

/// What a batch of seeds found.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Faults injected, per class, over all seeds.
    pub faults: Faults,
    /// Client operations completed.
    pub ops: u64,
    /// Backups that went live.
    pub failovers: u64,
    /// The reports of the seeds that found violations.
    pub failing: Vec<Report>,
}

/// Run seeds `first..first + count` of the model guest (stopping at the first failing
/// one if `stop`).
pub fn run_seeds(first: u64, count: u64, plant: Option<Plant>, stop: bool) -> Summary {
    let mut s = Summary::default();
    for seed in first..first.saturating_add(count) {
        if !s.add(run_seed(seed, plant)) && stop {
            break;
        }
    }
    s
}

impl Summary {
    /// The first `max` failing seeds, each with the one command that replays it.
    pub fn failures(&self, guest: GuestKind, plant: Option<Plant>, max: usize) -> String {
        self.failing
            .iter()
            .take(max)
            .map(|r| format!("{r}\n  replay: {}", replay_command(guest, r.seed, plant)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Add another batch's findings (seeds run apart, e.g. on other threads).
    pub fn merge(&mut self, o: Summary) {
        self.seeds += o.seeds;
        self.faults.add(&o.faults);
        self.ops += o.ops;
        self.failovers += o.failovers;
        self.failing.extend(o.failing);
    }

    /// Count one seed's report in; false if it found violations (it is kept).
    pub fn add(&mut self, r: Report) -> bool {
        self.seeds += 1;
        self.faults.add(&r.faults);
        self.ops += r.ops;
        self.failovers += r.failovers;
        let clean = r.violations.is_empty();
        if !clean {
            self.failing.push(r);
        }
        clean
    }
}

/// The one command that replays `seed` of `guest`.
pub fn replay_command(guest: GuestKind, seed: u64, plant: Option<Plant>) -> String {
    let plant = plant.map_or(String::new(), |p| format!(" --plant {}", p.name()));
    format!(
        "ftvm sim --guest {} --seeds 1 --first-seed {seed}{plant} --trace",
        guest.name()
    )
}
