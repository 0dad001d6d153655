//! ftvm's machine layer: a deterministic RV64GC computer (DESIGN.md §1).
//!
//! The machine knows nothing of hosts, sockets, threads or clocks. Its execution is a
//! pure function of its initial state and the input events it is given at exact
//! instruction counts.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cpu;
pub mod devices;
pub mod types;

pub use types::{GuestPhysAddr, ICount, PhysRange};
