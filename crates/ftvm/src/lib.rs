//! ftvm's fault-tolerance layer as a library (issue 11, DESIGN.md §7): the driver that
//! connects a machine to its world, the journal and record/replay, the FT adapters
//! around the pure core (crates/replica), and the commands built from them. The `ftvm`
//! binary only parses its command line and calls these.
//!
//! - [`driver`]: the machine loop over the world's backends (crates/world);
//! - [`replica`]: the [`replica::Journal`] hook, recording and replay;
//! - [`ft`]: the primary, the backup, live transfer, status and the demo;
//! - [`metrics`]: the `--metrics` endpoints (Prometheus text);
//! - [`run`], [`services`], [`sim`]: the other commands; [`cli`]: their arguments.

pub mod cli;
pub mod driver;
pub mod ft;
pub mod guest;
pub mod hosts;
pub mod metrics;
pub mod replica;
pub mod run;
pub mod services;
pub mod sim;
