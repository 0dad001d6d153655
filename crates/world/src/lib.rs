//! ftvm's world layer (DESIGN.md §1): host-side backends, the only code that touches
//! the outside — files, host time, host randomness, sockets. Swapping a backend never
//! changes the machine; everything a backend produces enters the guest as an event.
#![deny(missing_docs)]

pub mod console;
pub mod disk;
pub mod entropy;
pub mod hostclock;
