//! Command-line syntax.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// ftvm: a fault-tolerant virtual machine monitor for RISC-V 64-bit guests.
#[derive(Parser)]
#[command(version, about, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Boot a guest: a bare-metal ELF or a Linux Image. Console on stdout.
    Run(RunArgs),
    /// Run a guest like `run` and record every input into a log for `replay`.
    Record(RecordArgs),
    /// Re-execute a recording from its log, with inputs taken only from the log.
    Replay(ReplayArgs),
    /// Run the guest network as a process of its own: a learning switch for VM NICs
    /// (`ftvm run --net switch=ADDR`) with the user-mode gateway and port forwards.
    Switch(SwitchArgs),
    /// Run the arbiter: an atomic, durable test-and-set per VM and generation.
    Arbiter(ArbiterArgs),
    /// Boot a guest as the primary of a fault-tolerant pair: its NIC on an `ftvm
    /// switch`, every input streamed to a backup, outputs released only once the
    /// backup holds them.
    Primary(PrimaryArgs),
    /// Protect a running primary's guest: receive it by live state transfer, replay its
    /// log, and take over (after winning the arbiter) if the primary fails.
    Backup(BackupArgs),
    /// Show each fault-tolerant VM's state: protected or not, roles, generation,
    /// backup lag, log bandwidth and outputs waiting.
    Status(StatusArgs),
    /// The whole system on this machine: switch, arbiter, primary, backup and a spare;
    /// a client increments the guest's counter while the primary is killed (SIGKILL).
    Demo(DemoArgs),
    /// Make the cluster's credentials: a CA (`--ca`) and, signed by it, each node's key
    /// and certificate (`--node NAME`), for the TLS channels between nodes (`--tls`).
    Keys(KeysArgs),
    /// Simulate a whole cluster (switch, arbiter, nodes, disk, clients) around the real
    /// FT core, seed by seed, injecting faults and checking what clients observe.
    Sim(SimArgs),
    /// Test hosts on this machine: network namespaces joined pairwise by links that
    /// can be cut, hosts that die silently (issue 13). Needs root.
    Hosts(HostsArgs),
}

#[derive(Args)]
pub struct HostsArgs {
    /// The namespaces are PREFIX-HOST.
    #[arg(long, default_value = "ftvm", value_name = "PREFIX")]
    pub prefix: String,
    #[command(subcommand)]
    pub action: HostsAction,
}

#[derive(Subcommand)]
pub enum HostsAction {
    /// Make the hosts (10.78.0.1, .2, … in the order given), each pair linked;
    /// replaces a set under the same prefix.
    Up {
        #[arg(required = true, value_name = "HOST")]
        names: Vec<String>,
    },
    /// Kill what runs on the hosts and delete them.
    Down,
    /// The hosts, their namespaces, addresses and processes.
    List,
    /// A silent host death: its links down (no FIN, no RST leaves), then SIGKILL to
    /// every process on it.
    Kill { host: String },
    /// Cut every link of a host; its processes run on.
    Isolate { host: String },
    /// Heal every link of a host.
    Rejoin { host: String },
    /// Cut the link between two hosts.
    Cut { a: String, b: String },
    /// Heal the link between two hosts.
    Heal { a: String, b: String },
    /// Run a command on a host.
    Exec {
        host: String,
        #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

/// How guest code runs.
#[derive(Args, Clone, Copy)]
pub struct EngineArg {
    /// The execution engine: `jit` compiles hot guest code to host code, `interp` is
    /// the reference interpreter. Results are identical; a log never depends on it.
    #[arg(
        long,
        value_name = "jit|interp",
        env = "FTVM_ENGINE",
        default_value = "jit"
    )]
    pub engine: ftvm_machine::Engine,
}

/// Options every node of a pair takes.
#[derive(Args, Clone)]
pub struct NodeArgs {
    /// The VM's name (its key at the arbiter).
    #[arg(long, value_name = "NAME", default_value = "vm0")]
    pub vm: String,
    /// This node's id at the arbiter [default: node-LISTEN].
    #[arg(long, value_name = "ID")]
    pub name: Option<String>,
    /// Where this node accepts a backup when it is the primary [default: primary
    /// 127.0.0.1:7702, backup 127.0.0.1:7703].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// The arbiter: an `ftvm arbiter` at ADDR, or an etcd cluster
    /// (`etcd://HOST:PORT[,HOST:PORT...]`, its members' client URLs).
    #[arg(
        long,
        value_name = "ADDR|etcd://HOST:PORT[,...]",
        default_value = "127.0.0.1:7701"
    )]
    pub arbiter: String,
    /// With --insecure-plaintext: a file holding the cluster secret, proved once at
    /// connect time on the logging channel and to the arbiter.
    #[arg(long, value_name = "FILE", requires = "insecure_plaintext")]
    pub secret_file: Option<PathBuf>,
    /// The cluster's credentials (`ftvm keys`): the logging channel, the arbiter
    /// protocol and the switch port run over TLS 1.3, authenticated both ways by
    /// `DIR/ca.pem`, with this node's `DIR/NAME.pem` and `DIR/NAME.key` (NAME from
    /// --name, the identity the peer sees; the certificate must be for --vm).
    #[arg(long, value_name = "DIR", env = "FTVM_TLS", requires = "name")]
    pub tls: Option<PathBuf>,
    /// Run the logging channel and the arbiter protocol in clear, authenticated only
    /// once at connect time by the cluster secret (--secret-file), and the switch port
    /// in clear (to an `ftvm switch --insecure-plaintext`): anyone on the path reads
    /// guest memory and can forge acks.
    #[arg(long, conflicts_with = "tls", requires = "secret_file")]
    pub insecure_plaintext: bool,
    /// With --tls: the arbiter's node name (its certificate's).
    #[arg(long, value_name = "NAME", default_value = "arbiter")]
    pub arbiter_name: String,
    /// Silence on the logging channel (no entries, no acks) after which the peer is
    /// presumed dead, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub timeout_ms: u64,
    /// Slow the primary down while the backup lags more than this (milliseconds): more
    /// than the guest ran in that long, or than the backup replays in it at the pace
    /// its acks report, whichever is less (a failover's catch-up replay stays short).
    #[arg(long, value_name = "MS", default_value_t = 30)]
    pub max_lag_ms: u64,
    /// Put the state hash into the log every N instructions (the backup checks it).
    #[arg(long, value_name = "N", default_value_t = 500_000_000)]
    pub hash_every: u64,
    /// Serve this node's figures as Prometheus text on ADDR (`GET /metrics`, HTTP in
    /// clear: bind it where only monitoring reaches).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Where the node reports its status for `ftvm status` [default: $FTVM_RUN_DIR or
    /// /tmp/ftvm].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    #[command(flatten)]
    pub engine: EngineArg,
}

#[derive(Args)]
pub struct PrimaryArgs {
    #[command(flatten)]
    pub machine: MachineArgs,
    #[command(flatten)]
    pub node: NodeArgs,
    /// The `ftvm switch` the guest's NIC plugs into.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7700")]
    pub switch: std::net::SocketAddr,
    /// Put the guest's NIC on this host's TAP device IFNAME instead (bridged to the
    /// LAN); every node of the pair then needs `--tap` for its own host.
    #[arg(long, value_name = "IFNAME")]
    pub tap: Option<String>,
    /// The guest's virtio-blk disk, shared by the pair: a raw image `PATH[,readonly]` on
    /// storage the backup's host sees at the same path, or an NBD export
    /// `nbd://HOST:PORT/EXPORT[,readonly]` (qemu-nbd needs --shared=2 or more, so a new
    /// primary can connect while the old one's connection lingers). Only the live side
    /// writes it, a write leaves only once the backup holds its log entry, and only
    /// under the lease of the backup's acks.
    #[arg(long, value_name = "PATH|nbd://HOST:PORT/EXPORT[,readonly]")]
    pub disk: Option<String>,
}

#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// The primary's logging-channel address; several (comma-separated) for a spare
    /// that protects whichever of them is the primary.
    #[arg(
        long,
        value_name = "ADDR[,ADDR...]",
        value_delimiter = ',',
        required = true
    )]
    pub primary: Vec<std::net::SocketAddr>,
    /// The switch to plug into when going live [default: the primary's].
    #[arg(long, value_name = "ADDR", conflicts_with = "tap")]
    pub switch: Option<std::net::SocketAddr>,
    /// When going live, put the guest's NIC on this host's TAP device IFNAME (for a
    /// primary started with `--tap`); a gratuitous ARP moves the guest's MAC there.
    #[arg(long, value_name = "IFNAME")]
    pub tap: Option<String>,
    /// Where this host sees the pair's shared disk image [default: the primary's path;
    /// an NBD disk is reached at the primary's URL].
    #[arg(long, value_name = "PATH")]
    pub disk: Option<std::path::PathBuf>,
    /// Keep a private copy of the guest's disk at PATH instead of sharing the
    /// primary's: received with the guest (created or overwritten), kept current by
    /// replaying the guest's writes, and used once this node is live.
    #[arg(long, value_name = "PATH", conflicts_with = "disk")]
    pub own_disk: Option<std::path::PathBuf>,
}

#[derive(Args)]
pub struct StatusArgs {
    /// Where the nodes report [default: $FTVM_RUN_DIR or /tmp/ftvm].
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Seconds of client traffic before the primary is killed.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub before: f64,
    /// Seconds of client traffic after the failover (the new backup joins meanwhile).
    #[arg(long, value_name = "SECS", default_value_t = 4.0)]
    pub after: f64,
    /// Failovers in a row (each kills the current primary once a backup protects it).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub failovers: u32,
    /// Kill the backup instead of the primary.
    #[arg(long)]
    pub kill_backup: bool,
    /// First of the consecutive local ports the demo uses (switch, arbiter, nodes,
    /// client forward) [default: free ports].
    #[arg(long, value_name = "PORT")]
    pub base_port: Option<u16>,
    /// Keep the demo's files (logs of each process) in this directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The guest's service and its client load: `counter` (the default guest's
    /// counter, one connection of `inc`), `redis` (a Debian image's redis-server;
    /// INCR/SET/GET from several connections, checked for linearizability) or
    /// `postgres` (PostgreSQL: unique ids inserted in autocommit transactions, every
    /// acknowledged one checked at the end, while pgbench runs).
    #[arg(long, value_name = "counter|redis|postgres", default_value = "counter")]
    pub service: String,
    /// The guest's disk: copied into the demo's directory and shared by the nodes
    /// (only the live one writes it).
    #[arg(long, value_name = "IMAGE")]
    pub disk: Option<PathBuf>,
    /// Each backup keeps its own copy of the disk instead of sharing the primary's.
    #[arg(long, requires = "disk", conflicts_with = "hosts")]
    pub own_disk: bool,
    /// Every part on a host of its own (network namespaces; needs root): the nodes'
    /// guest NIC on bridged TAP devices, etcd (three members) as the arbiter, the disk
    /// on an NBD server, the client on the LAN; a kill is a silent host death.
    #[arg(long, conflicts_with = "base_port")]
    pub hosts: bool,
    #[command(flatten)]
    pub machine: MachineArgs,
    #[command(flatten)]
    pub engine: EngineArg,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["ca", "node"])))]
pub struct KeysArgs {
    /// Where the credentials live (created if needed).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Create the cluster CA: DIR/ca.pem and DIR/ca.key.
    #[arg(long)]
    pub ca: bool,
    /// Create NAME's key and certificate, DIR/NAME.key and DIR/NAME.pem, signed by the
    /// CA in DIR (repeatable).
    #[arg(long, value_name = "NAME")]
    pub node: Vec<String>,
    /// The VM these nodes run (a primary, a backup, a spare): their certificates name
    /// it, and they may pair only with nodes of this VM and use only its MAC on the
    /// switch. Without it: cluster services (the arbiter, the switch).
    #[arg(long, value_name = "VM", requires = "node")]
    pub vm: Option<String>,
    /// Node certificates are valid for this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    pub days: u32,
    /// Replace files that exist already.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct SwitchArgs {
    /// Where VM processes connect.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7700")]
    pub listen: std::net::SocketAddr,
    /// Serve the switch's counters as Prometheus text on ADDR (`GET /metrics`, HTTP in
    /// clear).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Forward a host TCP port to the guest: `tcp:[HOSTADDR]:HOSTPORT-:GUESTPORT`
    /// (repeatable).
    #[arg(long, value_name = "SPEC")]
    pub hostfwd: Vec<String>,
    /// The cluster's credentials (`ftvm keys`): ports connect over TLS 1.3 with their
    /// node certificates, and each may send only with its certificate's VM's MAC.
    #[arg(long, value_name = "DIR", env = "FTVM_TLS")]
    pub tls: Option<PathBuf>,
    /// With --tls: this switch's node name (DIR/NAME.pem, DIR/NAME.key).
    #[arg(long, value_name = "NAME", default_value = "switch")]
    pub name: String,
    /// With --tls: VM's guest NIC has this MAC address (repeatable, one per VM; ftvm's
    /// guests have 52:54:00:12:34:56). Only ports whose certificate is for VM may
    /// send with it; a port of a VM not listed may send nothing.
    #[arg(long, value_name = "VM=MAC", requires = "tls")]
    pub vm: Vec<String>,
    /// Let any process plug in and send with any MAC address, in clear.
    #[arg(long, conflicts_with = "tls")]
    pub insecure_plaintext: bool,
}

#[derive(Args)]
pub struct ArbiterArgs {
    /// Where nodes connect.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7701")]
    pub listen: std::net::SocketAddr,
    /// The file that makes decisions durable (fsynced before every answer).
    #[arg(long, value_name = "FILE")]
    pub state: PathBuf,
    /// Serve the arbiter's figures as Prometheus text on ADDR (`GET /metrics`, HTTP in
    /// clear).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// With --insecure-plaintext: a file holding the cluster secret both ends must
    /// prove they know.
    #[arg(long, value_name = "FILE", requires = "insecure_plaintext")]
    pub secret_file: Option<PathBuf>,
    /// The cluster's credentials (`ftvm keys`): clients connect over TLS 1.3 with
    /// their certificates, and each may win only as the node its certificate names.
    #[arg(long, value_name = "DIR", env = "FTVM_TLS")]
    pub tls: Option<PathBuf>,
    /// With --tls: this arbiter's node name (DIR/NAME.pem, DIR/NAME.key).
    #[arg(long, value_name = "NAME", default_value = "arbiter")]
    pub name: String,
    /// Authenticate clients by the cluster secret (--secret-file) only, in clear.
    #[arg(long, conflicts_with = "tls", requires = "secret_file")]
    pub insecure_plaintext: bool,
}

#[derive(Args)]
pub struct RecordArgs {
    /// The log to write.
    #[arg(long, value_name = "FILE")]
    pub log: PathBuf,
    /// Log the machine's state hash every N instructions (replay checks it).
    #[arg(long, value_name = "N", default_value_t = 100_000_000)]
    pub hash_every: u64,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args)]
pub struct ReplayArgs {
    /// The log to replay.
    #[arg(long, value_name = "FILE")]
    pub log: PathBuf,
    /// Stop when the instruction count reaches exactly N.
    #[arg(long, value_name = "N")]
    pub stop_at: Option<u64>,
    /// When the replay ends, save the whole machine to FILE (resume it with
    /// `ftvm run --restore FILE`).
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Wait out the recorded pauses (guest time never runs ahead of host time)
    /// instead of replaying as fast as the machine can.
    #[arg(long)]
    pub realtime: bool,
    #[command(flatten)]
    pub engine: EngineArg,
}

/// Options describing a machine and its boot files.
#[derive(Args, Clone)]
pub struct MachineArgs {
    /// Kernel: an ELF file or a RISC-V Linux `Image`. Without it, ftvm boots the
    /// default Linux guest (target/guest), building it first if needed.
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk (Linux initramfs).
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, value_name = "ARGS", default_value = "console=ttyS0")]
    pub append: String,
    /// Guest RAM in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 128)]
    pub memory: u64,
    /// Firmware: omit for ftvm's built-in SBI (kernel starts in S-mode), `none` to start
    /// the ELF in M-mode at its entry (like QEMU `-bios none`), or an M-mode firmware
    /// file such as OpenSBI's fw_jump.
    #[arg(long, value_name = "none|FILE")]
    pub bios: Option<String>,
    /// Guest instructions per 100 ns tick of guest time (the 10 MHz timebase): the
    /// nominal speed is 10 / N billion instructions per second. Set above the real
    /// speed so that live runs only ever move guest time forward to meet host time.
    #[arg(long, value_name = "N", default_value_t = 30, hide = true)]
    pub insns_per_tick: u64,
}

/// Options for the devices that connect a machine to the world.
#[derive(Args, Clone)]
pub struct DeviceArgs {
    /// The virtio-blk disk: a raw image `PATH[,readonly][,snapshot]` (snapshot: writes
    /// stay in memory and the file is never changed) or an NBD export
    /// `nbd://HOST:PORT/EXPORT[,readonly]`.
    #[arg(
        long,
        value_name = "PATH[,readonly][,snapshot] | nbd://HOST:PORT/EXPORT"
    )]
    pub disk: Option<String>,
    /// Network: `none`; `user[,hostfwd=tcp:[HOSTADDR]:HOSTPORT-:GUESTPORT]...` for
    /// user-mode networking inside this process (guest 10.0.2.15/24, gateway
    /// 10.0.2.2); or `switch=ADDR` to plug the NIC into an `ftvm switch` process
    /// (`switch=ADDR,tls=DIR,name=NODE` over TLS with NODE's certificate in DIR); or
    /// `tap=IFNAME` for a TAP device of this host (bridge it to a LAN).
    /// Default: `user` for the default guest, `none` otherwise. A network makes the run
    /// live: guest time follows host time.
    #[arg(
        long,
        value_name = "none|user[,hostfwd=...]|switch=ADDR[,tls=DIR,name=NODE]|tap=IFNAME"
    )]
    pub net: Option<String>,
    /// Console input: `stdin` sends host stdin to the guest's serial port (a terminal
    /// goes into raw mode; Ctrl-A x quits), `none` sends nothing, `auto` is `stdin`
    /// when stdin is a terminal. Console input makes the run live.
    #[arg(long, value_name = "auto|stdin|none", default_value = "auto")]
    pub console: ConsoleMode,
}

/// Where the guest's console input comes from.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsoleMode {
    /// Host stdin when it is a terminal, else nothing.
    Auto,
    /// Host stdin, terminal or not.
    Stdin,
    /// No console input.
    None,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub machine: MachineArgs,
    #[command(flatten)]
    pub devices: DeviceArgs,
    /// Stop when the instruction count reaches exactly N (counted from boot, also
    /// after --restore).
    #[arg(long, value_name = "N")]
    pub stop_at: Option<u64>,
    /// When the run ends, save the whole machine to FILE.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Resume a machine saved with --save instead of booting (boot options are then
    /// not allowed).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kernel", "initrd", "bios"])]
    pub restore: Option<PathBuf>,
    /// End the run when the guest asks for a reset instead of rebooting it (as QEMU
    /// -no-reboot).
    #[arg(long)]
    pub no_reboot: bool,
    #[command(flatten)]
    pub engine: EngineArg,
}

/// `ftvm sim`.
#[derive(Args)]
pub struct SimArgs {
    /// How many seeds to run.
    #[arg(long, default_value_t = 1000)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// The guest: `model` (the counter as a small state machine) or `linux` (the real
    /// machine running the Linux counter guest from guest/linux/build.sh, restored from
    /// a snapshot cached in ~/.cache/ftvm/sim; the interpreter runs it unless
    /// FTVM_ENGINE=jit).
    #[arg(long, value_name = "model|linux", default_value = "model")]
    pub guest: String,
    /// Switch on one planted bug (see --list-plants).
    #[arg(long)]
    pub plant: Option<String>,
    /// Name the planted bugs, one per line.
    #[arg(long)]
    pub list_plants: bool,
    /// Print every delivered message of each seed to stderr.
    #[arg(long)]
    pub trace: bool,
}
