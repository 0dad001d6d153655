//! A deterministic simulation of a whole ftvm cluster (issue 11): switch, arbiter, a
//! primary, a backup and a spare, a shared disk and clients, on simulated time and a
//! simulated network, all from one seed. The nodes run the real FT core
//! (`ftvm_replica::{Primary, Backup}`) around the model guest ([`model`]); the
//! simulator only plays the world: it delivers messages (dropped, delayed, duplicated,
//! reordered, partitioned), crashes and restarts nodes and the arbiter, stalls and
//! fails disk writes, slows a backup, and checks after every step what a user could
//! observe ([`cluster`]). The same seed gives the same run, bit for bit.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cluster;
pub mod guest;
pub mod lin;
pub mod model;
pub mod rng;

pub use cluster::{run_seed, trace_seed, Faults, Report};
pub use ftvm_replica::Plant;

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

/// Run seeds `first..first + count` (stopping at the first failing one if `stop`).
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

/// The one command that replays `seed`.
pub fn replay_command(seed: u64, plant: Option<Plant>) -> String {
    let plant = plant.map_or(String::new(), |p| format!(" --plant {}", p.name()));
    format!("ftvm sim --guest model --seeds 1 --first-seed {seed}{plant} --trace")
}
