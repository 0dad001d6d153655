//! `ftvm sim`: the deterministic cluster simulation (crates/sim) from the command line.

use crate::cli::SimArgs;
use anyhow::{anyhow, bail, Result};
use ftvm_sim::{GuestKind, Plant};
use std::process::ExitCode;
use std::time::Instant;

/// Run the seeds; exit status 1 if any violation was found.
pub fn sim(args: &SimArgs) -> Result<ExitCode> {
    if args.list_plants {
        for p in Plant::ALL {
            println!("{}", p.name());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(guest) = GuestKind::from_name(&args.guest) else {
        bail!("--guest {}: the guests are 'model' and 'linux'", args.guest);
    };
    let plant = match &args.plant {
        None => None,
        Some(name) => match Plant::from_name(name) {
            Some(p) => Some(p),
            None => bail!("no planted bug is named '{name}' (see --list-plants)"),
        },
    };
    if guest == GuestKind::Linux {
        // The same guest build as every other command's default (cached; rebuilt when
        // its inputs change).
        crate::guest::default_guest()?;
    }
    guest.prepare().map_err(|e| anyhow!(e))?;
    let started = Instant::now();
    let s = if args.trace {
        let mut s = ftvm_sim::Summary::default();
        for seed in args.first_seed..args.first_seed.saturating_add(args.seeds) {
            s.add(guest.run_seed(seed, plant, true).map_err(|e| anyhow!(e))?);
        }
        s
    } else {
        guest
            .run_seeds(args.first_seed, args.seeds, plant, false)
            .map_err(|e| anyhow!(e))?
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeds run              {} (from {}), {:.0} seeds/min",
        s.seeds,
        args.first_seed,
        s.seeds as f64 / secs.max(1e-9) * 60.0
    );
    println!("guest                  {}", guest.name());
    if let Some(p) = plant {
        println!("planted bug            {}", p.name());
    }
    println!("client operations      {}", s.ops);
    println!("failovers              {}", s.failovers);
    println!("faults injected");
    for (class, n) in s.faults.classes() {
        println!("  {class:36} {n}");
    }
    println!("seeds with violations  {}", s.failing.len());
    if !s.failing.is_empty() {
        println!("{}", s.failures(guest, plant, 5));
    }
    Ok(if s.failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
