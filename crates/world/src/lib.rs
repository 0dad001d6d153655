//! ftvm's world layer (DESIGN.md §1): host-side backends, the only code that touches
//! the outside — files, host time, host randomness, sockets. Swapping a backend never
//! changes the machine; everything a backend produces enters the guest as an event.
//!
//! Each kind of backend is a small trait (issue 11): [`Net`], [`Disk`], [`Entropy`],
//! [`Clock`], [`Arbiter`] and [`Channel`]. The real implementations live here (disk
//! image, host entropy, host clock, TCP and TLS channels with the cluster's keys) or in
//! the crate that owns the protocol (crates/usernet and crates/switch for [`Net`],
//! crates/arbiter for [`Arbiter`]), so this crate depends on none of ftvm's.
#![deny(missing_docs)]

pub mod arbiter;
pub mod channel;
pub mod console;
pub mod disk;
pub mod entropy;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod hostclock;
pub mod keys;
pub mod nbd;
pub mod net;
pub mod slots;
pub mod tap;
pub mod tls;

pub use arbiter::{Arbiter, ArbiterFailure, Decision};
pub use channel::Channel;
pub use disk::Disk;
pub use entropy::Entropy;
pub use hostclock::Clock;
pub use mio;
pub use net::Net;
pub use rustls;
pub use slots::{Slot, SlotLimits, Slots};
