//! Fault tolerance (DESIGN.md §4, issue 5): a primary runs the guest and streams every
//! input to a backup over the logging channel; the backup replays them; outputs leave
//! only once the backup holds their log entry (the Output Rule); a side that loses its
//! peer must win the arbiter's test-and-set before going live; a new backup joins a
//! running primary by live state transfer.
//!
//! - [`wire`]: the channel's messages; [`transfer`]: the pre-copy of a running guest;
//! - [`primary`]: the live side, a [`crate::replica::Journal`] for the driver;
//! - [`backup`]: receive, replay, go live;
//! - [`status`]: what `ftvm status` shows; [`demo`]: `ftvm demo`.

pub mod backup;
pub mod demo;
pub mod primary;
pub mod status;
pub mod transfer;
pub mod wire;

use crate::cli::{DeviceArgs, NodeArgs, PrimaryArgs};
use crate::driver::{Driver, End};
use crate::replica::encode_config;
use anyhow::{bail, Context, Result};
use ftvm_arbiter::{ArbiterClient, Outcome};
use ftvm_machine::{ICount, Machine};
use ftvm_world::disk::DiskMode;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Exit status of a node that halted because its peer won the arbiter.
pub const EXIT_HALTED: u8 = 3;

/// A node stopped itself: the other side won the arbiter (split brain prevented).
#[derive(Debug)]
pub struct Halted(pub String);

impl std::fmt::Display for Halted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Halted {}

/// What every node knows about its pair.
#[derive(Clone)]
pub struct Node {
    /// The VM.
    pub vm: String,
    /// This node's id.
    pub name: String,
    /// The cluster secret.
    pub secret: Vec<u8>,
    /// The arbiter.
    pub arbiter: SocketAddr,
    /// Where this node accepts a backup (when it is the primary).
    pub listen: SocketAddr,
    /// Silence on the logging channel after which the peer is presumed dead.
    pub timeout: Duration,
    /// The backup lag beyond which the primary slows down.
    pub max_lag: Duration,
    /// A state hash goes into the log every this many instructions.
    pub hash_every: u64,
    /// Where the node reports its status.
    pub run_dir: PathBuf,
    /// The engine that runs the guest here.
    pub engine: ftvm_machine::Engine,
}

impl Node {
    /// From the command line.
    pub fn from_args(a: &NodeArgs, default_listen: &str) -> Result<Node> {
        let listen = match a.listen {
            Some(l) => l,
            None => default_listen.parse().expect("a valid default address"),
        };
        let secret = std::fs::read(&a.secret_file).with_context(|| {
            format!(
                "cannot read the cluster secret '{}'",
                a.secret_file.display()
            )
        })?;
        let secret = secret.trim_ascii().to_vec();
        if secret.is_empty() {
            bail!(
                "the cluster secret in '{}' is empty",
                a.secret_file.display()
            );
        }
        if a.timeout_ms == 0 {
            bail!("--timeout-ms must be at least 1");
        }
        Ok(Node {
            vm: a.vm.clone(),
            name: a.name.clone().unwrap_or_else(|| format!("node-{listen}")),
            secret,
            arbiter: a.arbiter,
            listen,
            timeout: Duration::from_millis(a.timeout_ms),
            max_lag: Duration::from_millis(a.max_lag_ms),
            hash_every: a.hash_every.max(1),
            run_dir: a.run_dir.clone().unwrap_or_else(status::default_run_dir),
            engine: a.engine.engine,
        })
    }

    /// Win generation `generation` at the arbiter, or learn who did. Waits (and says
    /// so) while the arbiter cannot be reached: nobody goes live without it.
    pub fn arbitrate(&self, generation: u64, on_wait: &mut dyn FnMut()) -> Result<Outcome> {
        let started = Instant::now();
        let mut said = false;
        loop {
            let attempt = ArbiterClient::connect(
                self.arbiter,
                &self.secret,
                self.timeout.max(Duration::from_millis(500)),
            )
            .and_then(|mut c| c.test_and_set(&self.vm, generation, &self.name));
            match attempt {
                Ok(o) => {
                    if said {
                        eprintln!(
                            "ftvm: {}: reached the arbiter after {} ms",
                            self.name,
                            started.elapsed().as_millis()
                        );
                    }
                    return Ok(o);
                }
                Err(ftvm_arbiter::ArbiterError::Unauthenticated(e)) => {
                    bail!("the arbiter at {} refused us: {e}", self.arbiter)
                }
                Err(e) => {
                    if !said {
                        eprintln!(
                            "ftvm: {}: cannot reach the arbiter at {} ({e}); waiting: nobody goes live without it",
                            self.name, self.arbiter
                        );
                        said = true;
                    }
                    on_wait();
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// The generation a new pair takes: past everything the arbiter has decided for
    /// this VM and past `ours`.
    pub fn next_generation(&self, ours: u64) -> Result<u64> {
        // The arbiter's error already names its cause; no chain to repeat it.
        let mut c = ArbiterClient::connect(self.arbiter, &self.secret, Duration::from_secs(2))
            .map_err(|e| anyhow::anyhow!("cannot reach the arbiter at {}: {e}", self.arbiter))?;
        let decided = c.current(&self.vm)?.unwrap_or(0);
        Ok(decided.max(ours) + 1)
    }
}

/// Run the guest as the live side until it powers off or a signal ends the run.
pub fn run_live(mut driver: Driver<std::io::Stdout>, stop: Arc<AtomicBool>) -> Result<ExitCode> {
    driver.stop = stop;
    let code = match driver.drive(ICount(u64::MAX))? {
        End::PowerOff(code) => code,
        End::Stopped | End::Interrupted => 0,
        End::Reset => bail!("the guest rebooted, which a fault-tolerant pair cannot follow yet"),
    };
    if let Some(j) = driver.journal.take() {
        let m = &driver.machine;
        eprintln!("ftvm: {}", j.finish(m.icount().0, m.state_hash())?);
    }
    let m = &driver.machine;
    eprintln!("icount={} state_hash={:032x}", m.icount(), m.state_hash());
    Ok(ExitCode::from(code.min(255) as u8))
}

/// `ftvm primary`: boot the guest as the live side of a new pair; a backup joins it.
pub fn primary(args: &PrimaryArgs) -> Result<ExitCode> {
    let node = Node::from_args(&args.node, "127.0.0.1:7702")?;
    let listener = TcpListener::bind(node.listen)
        .with_context(|| format!("cannot listen for a backup on {}", node.listen))?;
    if let Some(d) = &args.disk {
        if crate::run::disk_spec(d)?.1 == DiskMode::Snapshot {
            bail!(
                "--disk {d}: a snapshot overlay lives in one process; a pair needs a shared image"
            );
        }
    }
    let devices = DeviceArgs {
        disk: args.disk.clone(),
        net: Some(format!("switch={}", args.switch)),
    };
    let (devcfg, backends) = crate::run::devices(&devices, false)?;
    let cfg = crate::run::boot_config(&args.machine, devcfg)?;
    let mut machine = Machine::new(&cfg).context("cannot boot")?;
    machine.set_engine(node.engine);
    let stop = crate::services::stop_on_signals()?;
    let mut driver = Driver::new(machine, backends, std::io::stdout());
    driver.journal = Some(Box::new(primary::Primary::new(
        node,
        listener,
        encode_config(&cfg),
        args.switch.to_string(),
        args.disk.clone(),
        0,
    )?));
    run_live(driver, stop)
}
