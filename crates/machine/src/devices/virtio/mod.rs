//! virtio devices (virtio 1.2) on the virtio-mmio transport, as pure models.
//!
//! [`queue`] walks split virtqueues in guest RAM, [`mmio`] is the register interface
//! shared by all device types, and [`blk`], [`net`] and [`rng`] are the device types.
//! A device never does I/O: what the guest asks of the outside world comes out as
//! requests or frames the host takes, and the answers come back in through methods
//! that write guest memory and raise the device's interrupt.

pub mod blk;
pub mod mmio;
pub mod net;
pub mod queue;
pub mod rng;
#[cfg(test)]
pub(crate) mod testutil;

pub use blk::{Blk, BlkError, BlkRequest, BlkRequestKind, VirtioBlk};
pub use mmio::{Transport, VirtioDevice, VirtioMmio};
pub use net::{Net, VirtioNet};
pub use queue::QueueError;
pub use rng::{Rng, VirtioRng};
