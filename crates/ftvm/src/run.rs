//! `ftvm run`: boot a guest on this host (or resume a saved one) and drive it.

use crate::cli::{ConsoleMode, DeviceArgs, MachineArgs, RecordArgs, ReplayArgs, RunArgs};
use crate::driver::{Backends, Driver, End};
use crate::replica::recorder::Recorder;
use crate::replica::replayer::{Replayed, Replayer};
use anyhow::{bail, Context, Result};
use ftvm_machine::boot::{DeviceConfig, DiskConfig};
use ftvm_machine::{BootConfig, Firmware, ICount, Machine};
use ftvm_usernet::{parse_hostfwd, UserNet};
use ftvm_world::console::StdinConsole;
use ftvm_world::disk::{DiskImage, DiskMode, WritePermit};
use ftvm_world::entropy::HostEntropy;
use ftvm_world::nbd::NbdDisk;
use ftvm_world::nbd::NbdUrl;
use ftvm_world::tls::Credentials;
use ftvm_world::Disk;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// The guest NIC's MAC address (QEMU's default).
pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// Read a boot file, naming it in the error.
fn read_file(what: &str, path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} '{}'", path.display()))
}

/// Where a `--disk` lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskTarget {
    /// A raw image file.
    File(PathBuf),
    /// An export of an NBD server (`nbd://HOST:PORT/EXPORT`).
    Nbd(NbdUrl),
}

/// A `--disk` value: `PATH[,readonly][,snapshot]` or `nbd://HOST:PORT/EXPORT[,readonly]`.
pub fn disk_spec(spec: &str) -> Result<(DiskTarget, DiskMode)> {
    let mut parts = spec.split(',');
    let place = parts.next().unwrap_or_default();
    if place.is_empty() {
        bail!("--disk needs a file path or an nbd:// URL");
    }
    let target = if place.starts_with("nbd://") {
        DiskTarget::Nbd(NbdUrl::parse(place).map_err(|e| anyhow::anyhow!("--disk {e}"))?)
    } else {
        DiskTarget::File(PathBuf::from(place))
    };
    let mut mode = DiskMode::ReadWrite;
    for opt in parts {
        mode = match opt {
            "readonly" | "ro" => DiskMode::ReadOnly,
            "snapshot" if matches!(target, DiskTarget::Nbd(_)) => {
                bail!("--disk {spec}: snapshot is for image files (an NBD server keeps its own overlays, e.g. qemu-nbd --snapshot)")
            }
            "snapshot" => DiskMode::Snapshot,
            _ => bail!("unknown --disk option '{opt}' (expected readonly or snapshot)"),
        };
    }
    Ok((target, mode))
}

/// Open a `--disk`: its backend and what the guest sees. Writes to it leave only
/// while `permit` allows (an NBD disk checks it again on every re-send).
pub fn open_disk(spec: &str, permit: &WritePermit) -> Result<(Box<dyn Disk>, DiskConfig)> {
    match disk_spec(spec)? {
        (DiskTarget::File(path), mode) => {
            let img = DiskImage::open(&path, mode)?;
            let cfg = DiskConfig {
                sectors: img.capacity(),
                read_only: img.read_only(),
            };
            Ok((Box::new(img), cfg))
        }
        (DiskTarget::Nbd(url), mode) => {
            let disk = NbdDisk::connect(&url, permit.clone())?;
            let cfg = DiskConfig {
                sectors: disk.capacity(),
                read_only: disk.read_only() || mode == DiskMode::ReadOnly,
            };
            Ok((Box::new(disk), cfg))
        }
    }
}

/// Open the world side of the devices and say what the guest will see. A switch port
/// runs over TLS with `switch_tls` (a node's credentials) or with those its spec names.
pub fn devices(
    d: &DeviceArgs,
    default_net: bool,
    switch_tls: Option<&Credentials>,
    permit: &WritePermit,
) -> Result<(DeviceConfig, Backends)> {
    let mut cfg = DeviceConfig::default();
    let mut backends = Backends::default();
    if let Some(spec) = &d.disk {
        let (disk, disk_cfg) = open_disk(spec, permit)?;
        cfg.disk = Some(disk_cfg);
        backends.disk = Some(disk);
    }
    let net = match d.net.as_deref() {
        Some(spec) => spec.to_string(),
        None if default_net => "user".to_string(),
        None => "none".to_string(),
    };
    let mut parts = net.split(',');
    match parts.next() {
        Some("none") if parts.clone().next().is_none() => {}
        Some("user") => {
            let mut forwards = Vec::new();
            for opt in parts {
                match opt.strip_prefix("hostfwd=") {
                    Some(fwd) => forwards.push(parse_hostfwd(fwd)?),
                    None => bail!("unknown --net user option '{opt}' (expected hostfwd=...)"),
                }
            }
            let un_cfg = ftvm_usernet::Config {
                forwards,
                ..ftvm_usernet::Config::default()
            };
            let un = UserNet::new(un_cfg)?;
            for a in un.local_addrs() {
                eprintln!("ftvm: forwarding host {a} to the guest");
            }
            cfg.net = Some(GUEST_MAC);
            cfg.rng = true;
            backends.net = Some(Box::new(un));
            backends.entropy = Some(Box::new(
                HostEntropy::open().context("cannot open /dev/urandom")?,
            ));
        }
        Some(s) if s.starts_with("switch=") => {
            let addr: std::net::SocketAddr = s["switch=".len()..]
                .parse()
                .with_context(|| format!("--net {net}: expected switch=IP:PORT"))?;
            let (mut dir, mut node) = (None, None);
            for opt in parts {
                match opt.split_once('=') {
                    Some(("tls", d)) => dir = Some(PathBuf::from(d)),
                    Some(("name", n)) => node = Some(n.to_string()),
                    _ => bail!("unknown --net switch option '{opt}' (expected tls=DIR or name=NODE)"),
                }
            }
            let own = match (dir, node) {
                (Some(dir), Some(node)) => Some(
                    Credentials::load(&dir, &node, ftvm_switch::SWITCH_ALPN).with_context(|| {
                        format!("cannot use {node}'s credentials in '{}'", dir.display())
                    })?,
                ),
                (None, None) => None,
                _ => bail!("--net {net}: tls=DIR and name=NODE go together"),
            };
            let name = format!("ftvm-{}", std::process::id());
            let port = match own.as_ref().or(switch_tls) {
                Some(creds) => ftvm_switch::SwitchPort::connect_tls(addr, &name, creds),
                None => ftvm_switch::SwitchPort::connect(addr, &name),
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?; // the error names the switch and the cause
            eprintln!("ftvm: NIC plugged into the switch at {addr}");
            cfg.net = Some(GUEST_MAC);
            cfg.rng = true;
            backends.net = Some(Box::new(port));
            backends.entropy = Some(Box::new(
                HostEntropy::open().context("cannot open /dev/urandom")?,
            ));
        }
        Some(s) if s.starts_with("tap=") && parts.clone().next().is_none() => {
            let tap = ftvm_world::tap::Tap::open(&s["tap=".len()..])?;
            eprintln!("ftvm: NIC on the TAP device {}", tap.name());
            cfg.net = Some(GUEST_MAC);
            cfg.rng = true;
            backends.net = Some(Box::new(tap));
            backends.entropy = Some(Box::new(
                HostEntropy::open().context("cannot open /dev/urandom")?,
            ));
        }
        _ => bail!("--net must be 'none', 'user[,hostfwd=...]', 'switch=ADDR[,tls=DIR,name=NODE]' or 'tap=IFNAME', not '{net}'"),
    }
    let console = match d.console {
        ConsoleMode::Auto => std::io::stdin().is_terminal(),
        ConsoleMode::Stdin => true,
        ConsoleMode::None => false,
    };
    if console {
        let c = StdinConsole::open()?;
        if c.is_terminal() {
            eprintln!("ftvm: console on this terminal (Ctrl-A x quits)");
        }
        backends.console = Some(c);
    }
    Ok((cfg, backends))
}

/// Build the boot configuration from command-line options.
pub fn boot_config(a: &MachineArgs, devices: DeviceConfig) -> Result<BootConfig> {
    let firmware = match a.bios.as_deref() {
        None => Firmware::BuiltinSbi,
        Some("none") => Firmware::None,
        Some(path) => Firmware::External(read_file("firmware", path.as_ref())?),
    };
    let (kernel, initrd) = match &a.kernel {
        Some(k) => (k.clone(), a.initrd.clone()),
        None if a.initrd.is_some() => bail!("--initrd needs --kernel"),
        None => {
            let g = crate::guest::default_guest()?;
            (g.kernel, Some(g.initrd))
        }
    };
    if a.insns_per_tick == 0 {
        bail!("--insns-per-tick must be at least 1");
    }
    Ok(BootConfig {
        memory_mib: a.memory,
        insns_per_tick: a.insns_per_tick,
        firmware,
        kernel: read_file("kernel", &kernel)?,
        initrd: initrd
            .as_deref()
            .map(|p| read_file("initrd", p))
            .transpose()?,
        cmdline: a.append.clone(),
        devices,
    })
}

pub fn run(args: &RunArgs, record: Option<&RecordArgs>) -> Result<ExitCode> {
    let default_guest = args.machine.kernel.is_none() && args.restore.is_none();
    let (devices, backends) = devices(&args.devices, default_guest, None, &WritePermit::default())?;
    let cfg = match &args.restore {
        Some(_) => None,
        None => Some(boot_config(&args.machine, devices)?),
    };
    let mut machine = match (&args.restore, &cfg) {
        (Some(path), _) => {
            let bytes = read_file("snapshot", path)?;
            Machine::restore(&bytes)
                .with_context(|| format!("cannot restore '{}'", path.display()))?
        }
        (None, Some(cfg)) => Machine::new(cfg).context("cannot boot")?,
        (None, None) => unreachable!("a boot configuration exists when not restoring"),
    };
    machine.set_engine(args.engine.engine);
    let until = ICount(args.stop_at.unwrap_or(u64::MAX));
    let mut driver = Driver::new(machine, backends, std::io::stdout())?;
    if let Some(rec) = record {
        let Some(cfg) = &cfg else {
            bail!("recording a restored machine is not supported yet: record from boot");
        };
        let initial = driver.machine.state_hash();
        driver.journal = Some(Box::new(Recorder::create(
            &rec.log,
            cfg,
            initial,
            rec.hash_every,
        )?));
    }
    // SIGINT/SIGTERM end the run cleanly at the next stop (the log is completed).
    let stop = crate::services::stop_on_signals()?;
    driver.stop = stop.clone();
    let code = loop {
        match driver.drive(until)? {
            End::Stopped | End::Interrupted => break 0,
            End::PowerOff(code) => break code,
            End::Reset if args.no_reboot => {
                eprintln!("ftvm: the guest asked for a reset; ending the run (--no-reboot)");
                break 0;
            }
            End::Reset => {
                if driver.journal.is_some() {
                    bail!("the guest rebooted, which a recording cannot follow yet; the log ends here");
                }
                let Some(cfg) = &cfg else {
                    bail!("the guest asked for a reset, which a restored machine cannot do (its boot files are unknown)");
                };
                // A reboot keeps the disk (and its backend); RAM and devices start over.
                let (_, backends) = driver.into_parts();
                let mut machine = Machine::new(cfg).context("cannot reboot")?;
                machine.set_engine(args.engine.engine);
                driver = Driver::new(machine, backends, std::io::stdout())?;
                driver.stop = stop.clone();
            }
        }
    };
    if let Some(journal) = driver.journal.take() {
        let m = &driver.machine;
        eprintln!("ftvm: {}", journal.finish(m.icount().0, m.state_hash())?);
    }
    let m = &driver.machine;
    report_engine(m);
    if let Some(path) = &args.save {
        std::fs::write(path, m.save())
            .with_context(|| format!("cannot write snapshot '{}'", path.display()))?;
    }
    eprintln!("icount={} state_hash={:032x}", m.icount(), m.state_hash());
    Ok(ExitCode::from(code.min(255) as u8))
}

/// `ftvm replay`.
pub fn replay(args: &ReplayArgs) -> Result<ExitCode> {
    let mut r = Replayer::open(&args.log, std::io::stdout(), args.engine.engine)?;
    if args.realtime {
        r.realtime = Some(std::time::Instant::now());
    }
    match r.replay(args.stop_at)? {
        Replayed::Complete | Replayed::Stopped => {}
        Replayed::Truncated(why) => eprintln!("ftvm: warning: {why}; replayed up to there"),
    }
    let m = &r.replay.machine;
    report_engine(m);
    if let Some(path) = &args.save {
        std::fs::write(path, m.save())
            .with_context(|| format!("cannot write snapshot '{}'", path.display()))?;
    }
    eprintln!("icount={} state_hash={:032x}", m.icount(), m.state_hash());
    Ok(ExitCode::SUCCESS)
}

/// One line on the engine and, for the JIT, its code cache.
fn report_engine(m: &Machine) {
    match m.jit_stats() {
        Some(j) => eprintln!(
            "engine=jit compiled_blocks={} compiled_insns={} code_cache={}/{} KiB flushes={} refused={} compile_ms={}",
            j.compiled,
            j.compiled_insns,
            j.code_bytes >> 10,
            j.code_limit >> 10,
            j.flushes,
            j.refused,
            j.compile_time.as_millis()
        ),
        None => eprintln!("engine=interp"),
    }
}
