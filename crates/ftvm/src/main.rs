//! `ftvm`: the command-line front end over the `ftvm` library.

use clap::Parser;
use ftvm::{cli, ft, hosts, run, services, sim};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FTVM_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let result = match cli.command {
        cli::Command::Run(args) => run::run(&args, None),
        cli::Command::Record(args) => run::run(&args.run, Some(&args)),
        cli::Command::Replay(args) => run::replay(&args),
        cli::Command::Switch(args) => services::switch(&args),
        cli::Command::Arbiter(args) => services::arbiter(&args),
        cli::Command::Primary(args) => ft::primary(&args),
        cli::Command::Backup(args) => ft::backup::backup(&args),
        cli::Command::Status(args) => ft::status::status(&args),
        cli::Command::Demo(args) => ft::demo::demo(&args),
        cli::Command::Keys(args) => ft::keys::keys(&args),
        cli::Command::Sim(args) => sim::sim(&args),
        cli::Command::Hosts(args) => hosts::hosts(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) if e.is::<ft::Halted>() => {
            eprintln!("ftvm: halted: {e}");
            ExitCode::from(ft::EXIT_HALTED)
        }
        Err(e) => {
            eprintln!("ftvm: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
