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
    for n in &args.node {
        let p = keys::create_node(&args.dir, n, args.days, args.force)?;
        eprintln!("ftvm: created {}'s certificate {}", n, p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// A CA and certificates for `names` in `dir`, made afresh (as `ftvm demo` does).
pub fn fresh_cluster(dir: &Path, names: &[&str]) -> Result<()> {
    keys::create_ca(dir, true)?;
    for n in names {
        keys::create_node(dir, n, 365, true)?;
    }
    Ok(())
}
