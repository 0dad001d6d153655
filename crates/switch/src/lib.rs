//! The guest network as a process of its own (DESIGN.md §5).
//!
//! A guest's TCP connections live in the guest's TCP stack, so they survive a failover
//! only if the network they run over lives outside both VM hosts. [`Switch`] is that
//! network: a learning Ethernet switch whose ports are TCP connections from VM processes
//! ([`SwitchPort`]), with the user-mode gateway ([`ftvm_usernet::UserNet`], 10.0.2.2 and
//! its host port forwards) attached as one more port. When the backup goes live with the
//! guest's MAC address and announces it ([`SwitchPort::announce`], a gratuitous ARP), the
//! switch moves that address to the backup's port at once, and the gateway's connections
//! carry on.
//!
//! # Switching
//! The source MAC of every frame is learned on its port (a move to another port takes
//! effect at once); frames for a learned unicast address go to its port, others
//! (broadcast, multicast, unknown) to every port but the source. The gateway's MAC is
//! pinned to the gateway; the gateway takes broadcasts and frames for that MAC. A port
//! that disconnects is removed and its addresses forgotten. Every queue is bounded; what
//! does not fit is dropped and counted ([`Metrics`]).
//!
//! # Wire protocol (version 1)
//! A VM process connects over TCP (meant for loopback). In both directions the stream is
//! a sequence of messages, each a `u32` little-endian payload length in `1..=65536`
//! followed by the payload. The first message, from the VM process only, is the hello:
//! `b"FTSW"`, the version byte `1`, then the port's name (1..=64 bytes of printable ASCII,
//! e.g. the VM node's name). Every later message is one Ethernet frame (destination,
//! source, type, payload; no FCS). The switch sends nothing before the hello and does not
//! answer it. A message with a bad length or a bad hello closes the connection; a frame
//! shorter than an Ethernet header is dropped and counted.
//!
//! # Authentication (issue 12)
//! With [`Switch::with_tls`] the stream above runs inside TLS 1.3 (ALPN [`SWITCH_ALPN`]),
//! both sides authenticated by certificates of the cluster CA (`ftvm keys`): the switch
//! asks for the port's certificate and closes, logs and counts a connection without a
//! valid one (a foreign CA, an expired certificate, none, or plaintext), and one whose
//! handshake does not finish within [`Limits::handshake_timeout`]. Who may send what
//! comes from the certificate: the switch is told each VM's MAC address
//! (`ftvm switch --vm VM=MAC`), and a port whose certificate is for VM may send only
//! frames whose source (and, in ARP, sender) address is VM's MAC; other frames are
//! dropped, counted (`frames_refused`) and logged once per port. A certificate for no
//! VM (a cluster service's) or for a VM without a MAC here may send nothing. Both nodes
//! of a VM hold certificates for it, so the backup that goes live plugs in and
//! announces the same MAC. A unicast frame for a VM's MAC that has no port just now is
//! flooded to that VM's ports only. Without TLS (`--insecure-plaintext`) there is no
//! authentication: anyone who can connect can join the network with any address.
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use ftvm_switch::{Switch, SwitchPort};
//!
//! let cfg = ftvm_usernet::Config {
//!     forwards: vec![ftvm_usernet::parse_hostfwd("tcp::2222-:22")?],
//!     ..Default::default()
//! };
//! let mut switch = Switch::bind("127.0.0.1:0".parse()?, cfg)?;
//! let addr = switch.local_addr();
//! let stop = AtomicBool::new(false);
//! std::thread::scope(|s| {
//!     s.spawn(|| switch.run_until(&stop));
//!     // In the VM process: frames from the NIC go out, frames for it come in.
//!     let mut port = SwitchPort::connect(addr, "node-a")?;
//!     port.send(&[0xff; 60])?;
//!     let _frame = port.try_recv()?;
//!     stop.store(true, std::sync::atomic::Ordering::Relaxed);
//!     Ok::<(), ftvm_switch::SwitchError>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

mod client;
mod metrics;
mod port;
mod switch;
mod table;
mod transport;
pub mod wire;

pub use client::{gratuitous_arp, SwitchPort, PORT_QUEUE_BYTES};
pub use metrics::{get, Metrics};
pub use switch::{fmt_mac, Limits, PortInfo, Switch};
pub use table::{is_group, Mac, PortId, GATEWAY};

use std::net::SocketAddr;

/// The switch port protocol's name in TLS (ALPN, RFC 7301).
pub const SWITCH_ALPN: &[u8] = b"ftvm-switch/1";

/// Errors of the switch and its ports.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// The switch could not listen for VM processes.
    #[error("cannot listen for VM processes on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying host error.
        #[source]
        source: std::io::Error,
    },
    /// The gateway could not be set up.
    #[error(transparent)]
    UserNet(#[from] ftvm_usernet::UserNetError),
    /// A VM process could not reach the switch.
    #[error("cannot connect to the switch at {addr}: {source}")]
    Connect {
        /// The switch's address.
        addr: SocketAddr,
        /// The underlying host error.
        #[source]
        source: std::io::Error,
    },
    /// The other side broke the wire protocol (or a port name is invalid).
    #[error(transparent)]
    Protocol(#[from] wire::WireError),
    /// The switch closed the connection.
    #[error("the switch closed the connection")]
    Disconnected,
    /// A socket error on an established connection.
    #[error("switch connection failed: {0}")]
    Io(#[source] std::io::Error),
    /// The TLS handshake with the switch failed (or TLS could not be set up).
    #[error("TLS with the switch: {0}")]
    Tls(#[source] ftvm_world::tls::TlsError),
    /// The VMs' MAC addresses cannot be used as given.
    #[error("{0}")]
    Assignment(String),
}
