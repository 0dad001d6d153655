//! `ftvm run`: boot a guest on this host with deterministic virtual time.
//!
//! The machine gets no inputs, so a run is a pure function of its boot files: when the
//! guest idles in WFI, guest time jumps to its next timer (no host clock involved).

use crate::cli::{MachineArgs, RunArgs};
use anyhow::{bail, Context, Result};
use ftvm_machine::{BootConfig, Event, Exit, Firmware, ICount, Machine, OutputKind};
use std::io::Write;
use std::process::ExitCode;

/// Read a boot file, naming it in the error.
fn read_file(what: &str, path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} '{}'", path.display()))
}

/// Build the boot configuration from command-line options.
pub fn boot_config(a: &MachineArgs) -> Result<BootConfig> {
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
    })
}

pub fn run(args: &RunArgs) -> Result<ExitCode> {
    let cfg = match &args.restore {
        Some(_) => None,
        None => Some(boot_config(&args.machine)?),
    };
    let mut m = match (&args.restore, &cfg) {
        (Some(path), _) => {
            let bytes = read_file("snapshot", path)?;
            Machine::restore(&bytes)
                .with_context(|| format!("cannot restore '{}'", path.display()))?
        }
        (None, Some(cfg)) => Machine::new(cfg).context("cannot boot")?,
        (None, None) => unreachable!("a boot configuration exists when not restoring"),
    };
    let until = ICount(args.stop_at.unwrap_or(u64::MAX));
    let stdout = std::io::stdout();
    let code = loop {
        match m.run(until) {
            Exit::Until => break 0,
            Exit::Output => {
                let mut out = stdout.lock();
                for o in m.take_outputs() {
                    let OutputKind::Console(bytes) = o.kind;
                    out.write_all(&bytes)?;
                }
                out.flush()?;
            }
            Exit::Idle => match m.idle_ticks() {
                Some(ticks) => m.inject(&Event::ClockAdvance { ticks }),
                None => bail!("the guest is idle (WFI) with no timer armed and no input can arrive: it would sleep forever (icount {})", m.icount()),
            },
            Exit::PowerOff { exit_code } => break exit_code,
            Exit::Reset => match &cfg {
                Some(cfg) => m = Machine::new(cfg).context("cannot reboot")?,
                None => bail!("the guest asked for a reset, which a restored machine cannot do (its boot files are unknown)"),
            },
        }
    };
    if let Some(path) = &args.save {
        std::fs::write(path, m.save())
            .with_context(|| format!("cannot write snapshot '{}'", path.display()))?;
    }
    eprintln!("icount={} state_hash={:032x}", m.icount(), m.state_hash());
    Ok(ExitCode::from(code.min(255) as u8))
}
