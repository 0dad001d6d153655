//! `ftvm hosts`: the test hosts of crates/hosts from a shell.

use crate::cli::{HostsAction, HostsArgs};
use anyhow::{bail, Context, Result};
use ftvm_hosts::Hosts;
use std::process::ExitCode;

/// `ftvm hosts`.
pub fn hosts(args: &HostsArgs) -> Result<ExitCode> {
    let p = &args.prefix;
    if let HostsAction::Up { names } = &args.action {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let h = Hosts::create(p, &names)
            .with_context(|| format!("cannot make the hosts {names:?}"))?
            .keep();
        for n in h.names() {
            println!("{n}\t{}\t{}", h.ns(n), h.addr(n));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let h = Hosts::find(p)?;
    let known = |host: &str| -> Result<()> {
        if !h.names().iter().any(|n| n == host) {
            bail!("no host '{host}' (the hosts are {})", h.names().join(", "));
        }
        Ok(())
    };
    match &args.action {
        HostsAction::Up { .. } => unreachable!("handled above"),
        HostsAction::Down => h.destroy(),
        HostsAction::List => {
            for n in h.names() {
                let pids = h.pids(n).unwrap_or_default();
                println!("{n}\t{}\t{}\t{} processes", h.ns(n), h.addr(n), pids.len());
            }
        }
        HostsAction::Kill { host } => {
            known(host)?;
            let n = h.kill(host)?;
            eprintln!("ftvm: host {host} died silently ({n} processes killed, links down)");
        }
        HostsAction::Isolate { host } => {
            known(host)?;
            h.isolate(host)?;
        }
        HostsAction::Rejoin { host } => {
            known(host)?;
            h.rejoin(host)?;
        }
        HostsAction::Cut { a, b } | HostsAction::Heal { a, b } => {
            known(a)?;
            known(b)?;
            if a == b {
                bail!("a host has no link to itself");
            }
            match &args.action {
                HostsAction::Cut { .. } => h.cut(a, b)?,
                _ => h.heal(a, b)?,
            }
        }
        HostsAction::Exec { host, command } => {
            known(host)?;
            let st = h
                .command(host, &command[0])
                .args(&command[1..])
                .status()
                .with_context(|| format!("cannot run {}", command[0]))?;
            return Ok(ExitCode::from(st.code().unwrap_or(1).clamp(0, 255) as u8));
        }
    }
    Ok(ExitCode::SUCCESS)
}
