//! ftvm's machine layer: a deterministic RV64GC computer (DESIGN.md §1).
//!
//! The machine knows nothing of hosts, sockets, threads or clocks. Its execution is a
//! pure function of its initial state and the input events it is given at exact
//! instruction counts: [`Machine::run`] stops exactly at a requested count,
//! [`Machine::inject`] delivers an [`Event`], [`Machine::state_hash`] covers every bit
//! of guest-visible state, and [`Machine::save`]/[`Machine::restore`] move it whole
//! (or, for live transfer, RAM page by page while the source runs, then the rest with
//! [`Machine::save_without_ram`] and [`Machine::restore_keeping_ram`]).
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod boot;
mod bus;
pub mod clock;
pub mod cpu;
pub mod devices;
#[cfg(any(test, feature = "differential"))]
#[doc(hidden)]
#[allow(missing_docs)]
pub mod differential;
pub mod fdt;
mod machine;
#[cfg(test)]
mod machine_tests;
mod ram;
mod sbi;
pub mod snapshot;
#[cfg(any(test, feature = "differential"))]
#[doc(hidden)]
#[allow(missing_docs)]
pub mod testutil;
pub mod types;

pub use boot::{BootConfig, BootError, Firmware};
pub use cpu::jit::{Engine, JitStats};
pub use machine::{Event, Exit, Machine, Output, OutputKind};
/// Guest RAM, for driving a device model from outside (the virtio fuzz target).
pub use ram::Ram;
pub use snapshot::SnapshotError;
pub use types::{GuestPhysAddr, ICount, PhysRange};

/// Size of a guest RAM page as tracked for state transfer ([`Machine::ram_page`],
/// [`Machine::take_dirty_pages`]) and snapshots.
pub const PAGE_SIZE: usize = 4096;
