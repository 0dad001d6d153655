//! `ftvm keys`: the cluster's credentials for TLS between nodes (issue 12; the files
//! are described in `ftvm_world::keys`).

use crate::cli::KeysArgs;
use anyhow::Result;
use ftvm_world::keys;
use std::path::Path;
use std::process::ExitCode;

/// `ftvm keys`.
pub fn keys(args: &KeysArgs) -> Result<ExitCode> {
    if args.ca {
        let p = keys::create_ca(&args.dir, args.force)?;
        eprintln!("ftvm: created the cluster CA {}", p.display());
    }
    // Every name is checked before any file is written.
    for n in &args.node {
        keys::check_name(n)?;
    }
    if let Some(vm) = &args.vm {
        keys::check_vm(vm)?;
    }
    for n in &args.node {
        let p = keys::NodeCert::new(n)
            .vm(args.vm.as_deref())
            .days(args.days)
            .create(&args.dir, args.force)?;
        match &args.vm {
            Some(vm) => eprintln!(
                "ftvm: created {n}'s certificate for VM {vm} {}",
                p.display()
            ),
            None => eprintln!("ftvm: created {n}'s certificate {}", p.display()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A CA and certificates in `dir`, made afresh (as `ftvm demo` does): for the cluster
/// services `services` and for the nodes `nodes` of VM `vm`.
pub fn fresh_cluster(dir: &Path, services: &[&str], vm: &str, nodes: &[&str]) -> Result<()> {
    keys::create_ca(dir, true)?;
    for n in services {
        keys::create_node(dir, n, 365, true)?;
    }
    for n in nodes {
        keys::NodeCert::new(n).vm(Some(vm)).create(dir, true)?;
    }
    Ok(())
}
