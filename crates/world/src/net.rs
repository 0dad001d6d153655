//! The network behind the guest's NIC (DESIGN.md §5): frames in and out, and the
//! sockets a waiting driver watches (issue 11: readiness, not sleep-and-poll).
//!
//! Readiness is edge-triggered ([`mio`]): a source reports once when it becomes
//! readable or writable. So a caller waits only after a [`Net::recv`] that returned no
//! frames (it then has read what the sockets held), and calls `recv` after every wake.

use mio::{Registry, Token};
use std::io;
use std::time::{Duration, Instant};

/// A network backend for the guest's NIC.
pub trait Net {
    /// Carry a frame the guest sent; one that cannot go is dropped and counted (a NIC
    /// drops too; TCP retransmits).
    fn send(&mut self, frame: &[u8]);
    /// The frames that arrived for the guest (a bounded number per call); also moves
    /// host-side traffic along.
    fn recv(&mut self, now: Instant) -> Vec<Vec<u8>>;
    /// How long until `recv` must run even if no socket becomes ready (a protocol
    /// timer of the backend's own); `None`: only readiness.
    fn timer(&mut self, now: Instant) -> Option<Duration>;
    /// Watch this backend's sockets with `registry` under `token`, those it opens
    /// later included; registering again moves them to the new registry.
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()>;
}
