//! What each FT node is doing, for `ftvm status` (issue 5 §10): every node rewrites a
//! small JSON file in the run directory a few times a second; `ftvm status` reads them
//! all and says, per VM, whether it is protected.

use crate::cli::StatusArgs;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a node rewrites its file.
const EVERY: Duration = Duration::from_millis(200);

/// One node's report.
#[derive(Serialize, Deserialize, Default, Clone, Debug)]
pub struct Status {
    /// The VM.
    pub vm: String,
    /// This node's id.
    pub node: String,
    /// Its process.
    pub pid: u32,
    /// `primary` or `backup`.
    pub role: String,
    /// `protected`, `unprotected`, `transferring`, `receiving`, `replaying`,
    /// `failing over`, `halted` or `stopped`.
    pub state: String,
    /// The pair's generation at the arbiter.
    pub generation: u64,
    /// The other side of the pair, if any.
    pub peer: String,
    /// Instructions executed.
    pub icount: u64,
    /// How far the backup is behind the primary, in instructions.
    pub lag_insns: u64,
    /// The same in host milliseconds.
    pub lag_ms: f64,
    /// Logging-channel bandwidth (bytes per second, primary → backup).
    pub log_bytes_per_s: f64,
    /// Outputs held by the Output Rule.
    pub outputs_waiting: usize,
    /// Times the primary slowed the guest down for a lagging backup.
    pub throttled: u64,
    /// When this report was written (ms since the Unix epoch).
    pub updated_unix_ms: u64,
    /// The engine running the guest (`jit` or `interp`).
    #[serde(default)]
    pub engine: String,
    /// Bytes of log sent to backups, all links together.
    #[serde(default)]
    pub log_bytes: u64,
    /// Acknowledgments received (a primary) or sent (a backup).
    #[serde(default)]
    pub acks: u64,
    /// Times this process went live after losing its peer.
    #[serde(default)]
    pub failovers: u64,
    /// State transfers to new backups completed.
    #[serde(default)]
    pub transfers: u64,
    /// Bytes of guest state sent in transfers, including one in progress.
    #[serde(default)]
    pub transfer_bytes: u64,
    /// The pre-copy round of a transfer in progress.
    #[serde(default)]
    pub transfer_round: u32,
}

/// The directory nodes report into: `$FTVM_RUN_DIR`, else `<tmp>/ftvm`.
pub fn default_run_dir() -> PathBuf {
    std::env::var_os("FTVM_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ftvm"))
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A node's status file, rewritten atomically (temp file, rename).
pub struct StatusFile {
    path: PathBuf,
    last: Option<Instant>,
    engine: ftvm_machine::Engine,
    /// The `--metrics` endpoint's copy of every report.
    metrics: Option<std::sync::Arc<crate::metrics::NodeMetrics>>,
}

impl StatusFile {
    /// The file for `node` in its run directory (created if missing); every report
    /// goes to its metrics endpoint too.
    pub fn new(node: &super::Node) -> StatusFile {
        let dir = &node.run_dir;
        let _ = std::fs::create_dir_all(dir);
        let safe: String = format!("{}.{}", node.vm, node.name)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        StatusFile {
            path: dir.join(format!("{safe}.json")),
            last: None,
            engine: node.engine,
            metrics: node.metrics.clone(),
        }
    }

    /// When the next report is due.
    pub fn next_due(&self) -> Instant {
        self.last.map_or_else(Instant::now, |t| t + EVERY)
    }

    /// Whether a report is due.
    pub fn due(&self) -> bool {
        self.last.is_none_or(|t| t.elapsed() >= EVERY)
    }

    /// Write `st` (best effort: status must never stop a guest).
    pub fn write(&mut self, st: &mut Status) {
        st.pid = std::process::id();
        st.engine = self.engine.to_string();
        st.updated_unix_ms = unix_ms();
        self.last = Some(Instant::now());
        if let Some(m) = &self.metrics {
            m.observe(st);
        }
        let tmp = self.path.with_extension("tmp");
        if let Ok(json) = serde_json::to_vec_pretty(st) {
            if std::fs::write(&tmp, json).is_ok() {
                let _ = std::fs::rename(&tmp, &self.path);
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// `ftvm status`.
pub fn status(args: &StatusArgs) -> Result<ExitCode> {
    let dir = args.run_dir.clone().unwrap_or_else(default_run_dir);
    let mut nodes: Vec<Status> = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("no FT nodes have reported in {}", dir.display());
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json") {
            if let Ok(st) = std::fs::read(&p)
                .map_err(anyhow::Error::from)
                .and_then(|b| serde_json::from_slice::<Status>(&b).map_err(Into::into))
            {
                nodes.push(st);
            }
        }
    }
    nodes.sort_by(|a, b| (&a.vm, &a.role, &a.node).cmp(&(&b.vm, &b.role, &b.node)));
    let mut vms: Vec<&str> = nodes.iter().map(|n| n.vm.as_str()).collect();
    vms.dedup();
    if vms.is_empty() {
        println!("no FT nodes have reported in {}", dir.display());
    }
    let now = unix_ms();
    for vm in vms {
        let here: Vec<&Status> = nodes.iter().filter(|n| n.vm == vm).collect();
        let running =
            |n: &&&Status| alive(n.pid) && !matches!(n.state.as_str(), "halted" | "stopped");
        let live: Vec<&&Status> = here.iter().filter(running).collect();
        let overall = if live.iter().any(|n| n.state == "failing over") {
            "failing over"
        } else if live
            .iter()
            .any(|n| n.role == "primary" && n.state == "protected")
        {
            "protected"
        } else if live.iter().any(|n| n.role == "primary") {
            "unprotected"
        } else {
            "down"
        };
        let generation = here.iter().map(|n| n.generation).max().unwrap_or(0);
        println!("VM {vm}: {overall}, generation {generation}");
        println!(
            "  {:<22} {:<8} {:<13} {:<6} {:>4} {:>14} {:>12} {:>9} {:>11} {:>7}",
            "NODE",
            "ROLE",
            "STATE",
            "ENGINE",
            "GEN",
            "ICOUNT",
            "LAG (insns)",
            "LAG (ms)",
            "LOG (kbit/s)",
            "WAITING"
        );
        for n in here {
            let state = if !alive(n.pid) && !matches!(n.state.as_str(), "halted" | "stopped") {
                "dead".to_string()
            } else {
                n.state.clone()
            };
            let age = now.saturating_sub(n.updated_unix_ms);
            println!(
                "  {:<22} {:<8} {:<13} {:<6} {:>4} {:>14} {:>12} {:>9.1} {:>11.1} {:>7}{}",
                n.node,
                n.role,
                state,
                n.engine,
                n.generation,
                n.icount,
                n.lag_insns,
                n.lag_ms,
                n.log_bytes_per_s * 8.0 / 1000.0,
                n.outputs_waiting,
                if age > 2000 && alive(n.pid) {
                    format!("  (report {age} ms old)")
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
