//! Fault tolerance (DESIGN.md §4, issue 5): a primary runs the guest and streams every
//! input to a backup over the logging channel; the backup replays them; outputs leave
//! only once the backup holds their log entry (the Output Rule); a side that loses its
//! peer must win the arbiter's test-and-set before going live; a new backup joins a
//! running primary by live state transfer.
//!
//! - [`wire`]: the channel's messages; [`transfer`]: the pre-copy of a running guest;
//! - [`primary`]: the live side, a [`crate::replica::Journal`] for the driver;
//! - [`backup`]: receive, replay, go live; [`redelivery`]: the switch's re-delivery at
//!   go-live without what the replay delivered;
//! - [`status`]: what `ftvm status` shows; [`demo`]: `ftvm demo`; [`keys`]: `ftvm keys`.

pub mod backup;
pub mod demo;
pub mod keys;
pub mod primary;
pub mod redelivery;
pub mod status;
pub mod transfer;
pub mod wire;
pub mod workload;

use crate::cli::{DeviceArgs, NodeArgs, PrimaryArgs};
use crate::driver::{Driver, End};
use crate::replica::encode_config;
use anyhow::{bail, Context, Result};
use ftvm_arbiter::RemoteArbiter;
use ftvm_machine::{ICount, Machine};
use ftvm_replica::{Time, Timing, Verdict};
use ftvm_world::disk::DiskMode;
use ftvm_world::tls::Credentials;
use ftvm_world::{Arbiter, ArbiterFailure, Decision};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// How a node's channels (the logging channel, the arbiter, the switch port) are
/// protected.
#[derive(Clone)]
pub enum Security {
    /// TLS 1.3 with this node's credentials: both ends authenticated by the cluster
    /// CA, every byte encrypted and authenticated.
    Tls(Arc<NodeCredentials>),
    /// In clear after a one-time proof of this cluster secret (`--insecure-plaintext`).
    Plaintext {
        /// The secret both ends prove they hold, and the arbiter's key.
        secret: Vec<u8>,
    },
}

/// One node's certificate and key, once per protocol (each has its own ALPN).
pub struct NodeCredentials {
    /// For the logging channel ([`LOG_ALPN`]).
    pub log: Credentials,
    /// For the arbiter, and the arbiter's node name.
    pub arbiter: (Arc<Credentials>, String),
    /// For the switch port.
    pub switch: Credentials,
}

impl Security {
    /// The credentials for the switch port, if the node runs over TLS.
    pub fn switch(&self) -> Option<&Credentials> {
        match self {
            Security::Tls(c) => Some(&c.switch),
            Security::Plaintext { .. } => None,
        }
    }
}

/// The cluster secret in `file` (surrounding whitespace trimmed; never empty).
pub fn read_secret(file: &std::path::Path) -> Result<Vec<u8>> {
    let secret = std::fs::read(file)
        .with_context(|| format!("cannot read the cluster secret '{}'", file.display()))?;
    let secret = secret.trim_ascii().to_vec();
    if secret.is_empty() {
        bail!("the cluster secret in '{}' is empty", file.display());
    }
    Ok(secret)
}

/// The logging channel's protocol name in TLS (ALPN, RFC 7301).
pub const LOG_ALPN: &[u8] = b"ftvm-log/2";

/// How a certificate's VM reads in a message.
pub fn vm_phrase(vm: Option<&str>) -> String {
    match vm {
        Some(vm) => format!("VM {vm}"),
        None => "no VM (a cluster service's)".into(),
    }
}

/// What every node knows about its pair.
#[derive(Clone)]
pub struct Node {
    /// The VM.
    pub vm: String,
    /// This node's id.
    pub name: String,
    /// The logging channel's protection.
    pub security: Security,
    /// The arbiter.
    pub arbiter: ArbiterAt,
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
    /// With `--metrics`: what the endpoint serves (see [`Node::serve_metrics`]).
    pub metrics: Option<Arc<crate::metrics::NodeMetrics>>,
}

impl Node {
    /// From the command line.
    pub fn from_args(a: &NodeArgs, default_listen: &str) -> Result<Node> {
        let listen = match a.listen {
            Some(l) => l,
            None => default_listen.parse().expect("a valid default address"),
        };
        if a.timeout_ms == 0 {
            bail!("--timeout-ms must be at least 1");
        }
        let name = a.name.clone().unwrap_or_else(|| format!("node-{listen}"));
        let security = match &a.tls {
            Some(dir) => {
                let load = |alpn| {
                    Credentials::load(dir, &name, alpn).with_context(|| {
                        format!("cannot use {name}'s credentials in '{}'", dir.display())
                    })
                };
                let creds = load(LOG_ALPN)?;
                // The VM comes from the credentials: --vm must agree with them.
                if creds.vm() != Some(a.vm.as_str()) {
                    bail!(
                        "{name}'s certificate in '{}' is for {}, not for VM {}: make one with `ftvm keys --dir {} --node {name} --vm {} --force`",
                        dir.display(),
                        vm_phrase(creds.vm()),
                        a.vm,
                        dir.display(),
                        a.vm
                    );
                }
                Security::Tls(Arc::new(NodeCredentials {
                    log: creds,
                    arbiter: (
                        Arc::new(load(ftvm_arbiter::ARBITER_ALPN)?),
                        a.arbiter_name.clone(),
                    ),
                    switch: load(ftvm_switch::SWITCH_ALPN)?,
                }))
            }
            None => match &a.secret_file {
                Some(file) => Security::Plaintext {
                    secret: read_secret(file)?,
                },
                None => bail!(
                    "the logging channel needs credentials: --tls DIR with this node's certificate (made by `ftvm keys`), or --insecure-plaintext --secret-file FILE to send it in clear"
                ),
            },
        };
        Ok(Node {
            vm: a.vm.clone(),
            name,
            security,
            arbiter: ArbiterAt::parse(&a.arbiter)?,
            listen,
            timeout: Duration::from_millis(a.timeout_ms),
            max_lag: Duration::from_millis(a.max_lag_ms),
            hash_every: a.hash_every.max(1),
            run_dir: a.run_dir.clone().unwrap_or_else(status::default_run_dir),
            engine: a.engine.engine,
            metrics: a.metrics.map(|_| Arc::default()),
        })
    }

    /// Start the `--metrics` endpoint, if asked for (before the guest starts, so a
    /// taken address is a clear error at once).
    pub fn serve_metrics(&self, a: &NodeArgs) -> Result<()> {
        if let (Some(addr), Some(m)) = (a.metrics, &self.metrics) {
            let m = m.clone();
            crate::metrics::serve(addr, &self.name, Arc::new(move || m.render()))?;
        }
        Ok(())
    }

    /// The generation a new pair takes: past everything the arbiter has decided for
    /// this VM and past `ours`.
    pub fn next_generation(&self, ours: u64) -> Result<u64> {
        // The arbiter's error already names its cause; no chain to repeat it.
        let arbiter = self.remote_arbiter(Duration::from_secs(2))?;
        let decided = arbiter
            .current(&self.vm)
            .map_err(|e| anyhow::anyhow!("cannot reach the arbiter at {}: {e}", self.arbiter))?
            .unwrap_or(0);
        Ok(decided.max(ours) + 1)
    }

    /// The arbiter as the FT adapters ask it: one connection per question, with a
    /// timeout of at least half a second.
    pub fn arbiter(&self) -> Result<Arc<dyn Arbiter>> {
        self.remote_arbiter(self.timeout.max(Duration::from_millis(500)))
    }

    /// The embedded arbiter over TLS with this node's certificate or with the cluster
    /// secret, or an etcd cluster.
    fn remote_arbiter(&self, timeout: Duration) -> Result<Arc<dyn Arbiter>> {
        let addr = match &self.arbiter {
            ArbiterAt::Etcd(endpoints) => {
                let etcd = ftvm_world::etcd::EtcdArbiter::new(endpoints.clone(), timeout)
                    .context("cannot start the etcd client")?;
                return Ok(Arc::new(etcd));
            }
            ArbiterAt::Embedded(addr) => *addr,
        };
        Ok(Arc::new(match &self.security {
            Security::Tls(c) => {
                let (creds, name) = &c.arbiter;
                RemoteArbiter::tls(addr, creds.clone(), name, timeout)
            }
            Security::Plaintext { secret } => RemoteArbiter::new(addr, secret, timeout),
        }))
    }
}

/// What an offer names as the guest's LAN when the primary's NIC is on a TAP device
/// (otherwise the switch's address): each node brings its own host's device.
pub const TAP_LAN: &str = "tap";

/// Where a node's arbiter is (`--arbiter`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArbiterAt {
    /// An `ftvm arbiter`.
    Embedded(SocketAddr),
    /// The members of an etcd cluster (`HOST:PORT`).
    Etcd(Vec<String>),
}

impl ArbiterAt {
    /// Parse `ADDR` or `etcd://HOST:PORT[,HOST:PORT...]`.
    pub fn parse(s: &str) -> Result<ArbiterAt> {
        if s.starts_with("etcd://") {
            let endpoints =
                ftvm_world::etcd::parse_url(s).map_err(|e| anyhow::anyhow!("--arbiter {e}"))?;
            return Ok(ArbiterAt::Etcd(endpoints));
        }
        let addr = s.parse().map_err(|_| {
            anyhow::anyhow!("--arbiter '{s}': expected IP:PORT or etcd://HOST:PORT[,HOST:PORT...]")
        })?;
        Ok(ArbiterAt::Embedded(addr))
    }
}

impl std::fmt::Display for ArbiterAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArbiterAt::Embedded(a) => write!(f, "{a}"),
            ArbiterAt::Etcd(e) => write!(f, "etcd://{}", e.join(",")),
        }
    }
}

impl Node {
    /// The FT core's clocks for this node (README "Failure detection").
    pub fn timing(&self) -> Timing {
        Timing {
            timeout: Time(self.timeout.as_micros() as u64),
            ..Timing::default()
        }
    }
}

/// The host clock as the FT core sees it: microseconds since this node started.
#[derive(Clone, Copy)]
pub struct Clock(Instant);

impl Clock {
    /// A clock starting now.
    pub fn start() -> Clock {
        Clock(Instant::now())
    }

    /// Now.
    pub fn now(&self) -> Time {
        self.at(Instant::now())
    }

    /// The moment `i`.
    pub fn at(&self, i: Instant) -> Time {
        Time(i.saturating_duration_since(self.0).as_micros() as u64)
    }

    /// The host instant of `t`.
    pub fn instant(&self, t: Time) -> Instant {
        self.0 + Duration::from_micros(t.0)
    }
}

/// What the arbiter said to one question.
pub type Answer = std::result::Result<Decision, ArbiterFailure>;

/// The adapter between a core and the arbiter: each question the core asks goes out in
/// its own thread (one at a time; the core asks again after its retry interval), and
/// the answer comes back through the caller's channel.
pub struct Asker {
    arbiter: Arc<dyn Arbiter>,
    busy: Arc<AtomicBool>,
    /// Since when the arbiter could not be reached (said once).
    unreachable: Option<Instant>,
}

impl Asker {
    /// An asker of `arbiter`.
    pub fn new(arbiter: Arc<dyn Arbiter>) -> Asker {
        Asker {
            arbiter,
            busy: Arc::default(),
            unreachable: None,
        }
    }

    /// Ask for `generation` under `claimant`; `deliver` receives the answer.
    pub fn ask(
        &mut self,
        node: &Node,
        generation: u64,
        claimant: String,
        deliver: impl FnOnce(u64, Answer) + Send + 'static,
    ) {
        if self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let (busy, arbiter, vm) = (self.busy.clone(), self.arbiter.clone(), node.vm.clone());
        std::thread::spawn(move || {
            let r = arbiter.test_and_set(&vm, generation, &claimant);
            busy.store(false, Ordering::Release);
            deliver(generation, r);
        });
    }

    /// The verdict in an answer, for the core; `None` while the arbiter cannot be
    /// reached (said once: nobody goes live without it). A refusal is fatal.
    pub fn verdict(&mut self, node: &Node, answer: Answer) -> Result<Option<Verdict>> {
        match answer {
            Ok(o) => {
                if let Some(t) = self.unreachable.take() {
                    eprintln!(
                        "ftvm: {}: reached the arbiter after {} ms",
                        node.name,
                        t.elapsed().as_millis()
                    );
                }
                Ok(Some(match o {
                    Decision::Won => Verdict::Won,
                    Decision::Lost { winner } => Verdict::Lost { winner },
                }))
            }
            Err(ArbiterFailure::Unauthenticated(e)) => {
                bail!("the arbiter at {} refused us: {e}", node.arbiter)
            }
            Err(ArbiterFailure::Refused(e)) => {
                bail!("the arbiter at {} refused the claim: {e}", node.arbiter)
            }
            Err(e) => {
                if self.unreachable.is_none() {
                    eprintln!(
                        "ftvm: {}: cannot reach the arbiter at {} ({e}); waiting: nobody goes live without it",
                        node.name, node.arbiter
                    );
                    self.unreachable = Some(Instant::now());
                }
                Ok(None)
            }
        }
    }
}

/// A name unique to this boot of a primary: a supervisor-restarted primary asks for
/// generation 0 under a new one, and loses to its earlier incarnation.
pub fn incarnation() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{nanos}", std::process::id())
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
    node.serve_metrics(&args.node)?;
    if let Some(d) = &args.disk {
        if crate::run::disk_spec(d)?.1 == DiskMode::Snapshot {
            bail!(
                "--disk {d}: a snapshot overlay lives in one process; a pair needs a shared image"
            );
        }
    }
    let (net, lan) = match &args.tap {
        Some(tap) => (format!("tap={tap}"), TAP_LAN.to_string()),
        None => (format!("switch={}", args.switch), args.switch.to_string()),
    };
    let devices = DeviceArgs {
        disk: args.disk.clone(),
        net: Some(net),
        console: crate::cli::ConsoleMode::None,
    };
    let permit = ftvm_world::disk::WritePermit::default();
    let (devcfg, backends) = crate::run::devices(&devices, false, node.security.switch(), &permit)?;
    let cfg = crate::run::boot_config(&args.machine, devcfg)?;
    let mut machine = Machine::new(&cfg).context("cannot boot")?;
    machine.set_engine(node.engine);
    let stop = crate::services::stop_on_signals()?;
    let mut driver = Driver::new(machine, backends, std::io::stdout())?;
    driver.write_permit = permit.clone();
    driver.threaded_disk = true;
    driver.journal = Some(Box::new(primary::Primary::boot(
        node,
        listener,
        encode_config(&cfg),
        lan,
        primary::PairDisk {
            spec: args.disk.clone(),
            permit,
        },
        driver.waker(),
    )?));
    run_live(driver, stop)
}
