//! The FT pair's helper processes: `ftvm switch` (the guest network) and
//! `ftvm arbiter` (split-brain prevention), DESIGN.md §4–5.

use crate::cli::{ArbiterArgs, SwitchArgs};
use anyhow::{bail, Context, Result};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// Stop flag set by SIGINT/SIGTERM.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .context("cannot install a signal handler")?;
    }
    Ok(stop)
}

/// `ftvm switch`.
pub fn switch(args: &SwitchArgs) -> Result<ExitCode> {
    let forwards = args
        .hostfwd
        .iter()
        .map(|s| ftvm_usernet::parse_hostfwd(s))
        .collect::<Result<Vec<_>, _>>()?;
    let cfg = ftvm_usernet::Config {
        forwards,
        ..ftvm_usernet::Config::default()
    };
    let mut sw = ftvm_switch::Switch::bind(args.listen, cfg)?;
    match (&args.tls, args.insecure_plaintext) {
        (Some(dir), _) => {
            let creds = ftvm_world::tls::Credentials::load(dir, &args.name, ftvm_switch::SWITCH_ALPN)
                .with_context(|| format!("cannot use {}'s credentials in '{}'", args.name, dir.display()))?;
            let mut macs = std::collections::BTreeMap::new();
            for a in &args.vm {
                let (vm, mac) = parse_vm_mac(a)?;
                if macs.insert(vm.clone(), mac).is_some() {
                    bail!("--vm {a}: VM {vm} has a MAC address already");
                }
            }
            sw = sw.with_tls(Arc::new(creds), macs)?;
            eprintln!("ftvm: switch listening for VMs on {} (TLS, as {})", sw.local_addr(), args.name);
            for a in &args.vm {
                eprintln!("ftvm: VM {a}");
            }
        }
        (None, true) => eprintln!("ftvm: switch listening for VMs on {} (in clear: anyone may plug in as anyone)", sw.local_addr()),
        (None, false) => bail!(
            "the switch needs credentials: --tls DIR with its certificate (made by `ftvm keys`) and --vm VM=MAC for each VM, or --insecure-plaintext to let anyone plug in"
        ),
    }
    for a in sw.hostfwd_addrs() {
        eprintln!("ftvm: forwarding host {a} to the guest");
    }
    if let Some(addr) = args.metrics {
        let counters = sw.metrics();
        crate::metrics::serve(addr, "switch", Arc::new(move || counters.prometheus()))?;
    }
    let stop = stop_on_signals()?;
    sw.run_until(&stop)?;
    Ok(ExitCode::SUCCESS)
}

/// A `--vm VM=MAC` assignment.
fn parse_vm_mac(s: &str) -> Result<(String, ftvm_switch::Mac)> {
    let (vm, mac) = s
        .split_once('=')
        .with_context(|| format!("--vm {s}: expected VM=MAC, e.g. vm0=52:54:00:12:34:56"))?;
    ftvm_world::keys::check_vm(vm)?;
    let bytes: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .ok()
        .filter(|b: &Vec<u8>| b.len() == 6 && mac.len() == 17)
        .with_context(|| {
            format!("--vm {s}: '{mac}' is not a MAC address like 52:54:00:12:34:56")
        })?;
    Ok((vm.to_string(), bytes.try_into().expect("6 bytes")))
}

/// `ftvm arbiter`.
pub fn arbiter(args: &ArbiterArgs) -> Result<ExitCode> {
    let config = ftvm_arbiter::ServerConfig::default();
    let arb = match (&args.tls, &args.secret_file) {
        (Some(dir), _) => {
            let creds = ftvm_world::tls::Credentials::load(dir, &args.name, ftvm_arbiter::ARBITER_ALPN)
                .with_context(|| format!("cannot use {}'s credentials in '{}'", args.name, dir.display()))?;
            ftvm_arbiter::Arbiter::open_tls(&args.state, std::sync::Arc::new(creds), config)?
        }
        (None, Some(file)) => {
            let secret = crate::ft::read_secret(file)?;
            ftvm_arbiter::Arbiter::with_config(&args.state, &secret, config)?
        }
        (None, None) => bail!(
            "the arbiter needs credentials: --tls DIR with its certificate (made by `ftvm keys`), or --insecure-plaintext --secret-file FILE to serve in clear"
        ),
    };
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let handle = arb.serve(listener)?;
    if let Some(addr) = args.metrics {
        crate::metrics::serve(addr, "arbiter", Arc::new(handle.prometheus_source()))?;
    }
    eprintln!(
        "ftvm: arbiter listening on {} (state in {})",
        handle.local_addr(),
        args.state.display()
    );
    // The server runs in its own threads; this one waits for SIGINT or SIGTERM.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])
    .context("cannot install a signal handler")?;
    signals.forever().next();
    handle.stop();
    Ok(ExitCode::SUCCESS)
}
