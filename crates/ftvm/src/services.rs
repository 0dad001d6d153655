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
    eprintln!("ftvm: switch listening for VMs on {}", sw.local_addr());
    for a in sw.hostfwd_addrs() {
        eprintln!("ftvm: forwarding host {a} to the guest");
    }
    let stop = stop_on_signals()?;
    sw.run_until(&stop)?;
    Ok(ExitCode::SUCCESS)
}

/// `ftvm arbiter`.
pub fn arbiter(args: &ArbiterArgs) -> Result<ExitCode> {
    let secret = std::fs::read(&args.secret_file).with_context(|| {
        format!(
            "cannot read the cluster secret '{}'",
            args.secret_file.display()
        )
    })?;
    let secret = secret.trim_ascii();
    if secret.is_empty() {
        bail!(
            "the cluster secret in '{}' is empty",
            args.secret_file.display()
        );
    }
    let arb = ftvm_arbiter::Arbiter::open(&args.state, secret)?;
    let arb = match (&args.tls, args.insecure_plaintext) {
        (Some(dir), _) => {
            let creds = ftvm_world::tls::Credentials::load(dir, &args.name, ftvm_arbiter::ARBITER_ALPN)
                .with_context(|| format!("cannot use {}'s credentials in '{}'", args.name, dir.display()))?;
            arb.with_tls(std::sync::Arc::new(creds))
        }
        (None, true) => arb,
        (None, false) => bail!(
            "the arbiter needs credentials: --tls DIR with its certificate (made by `ftvm keys`), or --insecure-plaintext to serve in clear"
        ),
    };
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let handle = arb.serve(listener)?;
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
