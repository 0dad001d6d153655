//! QEMU-style user-mode networking, host side (`-netdev user`).
//!
//! [`UserNet`] is a world backend (DESIGN.md §1, §5): it owns host sockets and is not part
//! of the deterministic machine. It exchanges raw Ethernet frames with the guest's NIC and
//! plays the gateway of a small private network (QEMU's defaults: guest `10.0.2.15/24`,
//! gateway `10.0.2.2`). A smoltcp interface with the gateway's MAC and IP answers the
//! guest's ARP requests and pings; host TCP ports given as [`HostForward`]s are accepted
//! on the host and relayed to the guest over TCP connections that the gateway opens.
//!
//! Guest-initiated connections to the outside world (NAT) are not provided.
//!
//! ```
//! use std::time::Instant;
//! use ftvm_usernet::{parse_hostfwd, Config, UserNet};
//!
//! let cfg = Config {
//!     forwards: vec![parse_hostfwd("tcp::0-:22")?], // any free port on 127.0.0.1
//!     ..Config::default()
//! };
//! let mut net = UserNet::new(cfg)?;
//! println!("ssh -p {} localhost", net.local_addrs()[0].port());
//! # let guest_frames: Vec<Vec<u8>> = Vec::new();
//! // The machine loop: frames the guest's NIC sent go in, frames for it come out.
//! for frame in &guest_frames {
//!     net.from_guest(frame);
//! }
//! for _frame in net.poll(Instant::now()) {
//!     // deliver to the guest's NIC
//! }
//! let _next = net.poll_delay(Instant::now()); // call poll again after this
//! # Ok::<(), ftvm_usernet::UserNetError>(())
//! ```

#![deny(missing_docs)]

mod config;
mod conn;
mod device;
mod hostfwd;
mod net;

pub use config::{Config, Metrics, MAX_BUFFER, MAX_CONNECTIONS};
pub use hostfwd::{parse_hostfwd, HostForward};
pub use net::UserNet;

use std::net::SocketAddr;

/// Errors of the user-mode network backend.
#[derive(Debug, thiserror::Error)]
pub enum UserNetError {
    /// A host forward's listening socket could not be set up.
    #[error("cannot listen on {addr} for the forward to guest port {guest_port}: {source}")]
    Listen {
        /// The host address that was asked for.
        addr: SocketAddr,
        /// The guest port the forward leads to.
        guest_port: u16,
        /// The underlying host error.
        #[source]
        source: std::io::Error,
    },
    /// A `hostfwd` specification could not be parsed.
    #[error("invalid hostfwd {spec:?}: {reason}")]
    BadHostfwd {
        /// The specification as given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The network configuration is inconsistent.
    #[error("invalid user network configuration: {0}")]
    BadConfig(String),
}

#[cfg(test)]
mod tests;
