//! Configuration and counters of the user-mode network.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::{HostForward, UserNetError};

/// Upper bound of [`Config::max_connections`] (well below the 16384 gateway ports).
pub const MAX_CONNECTIONS: usize = 4096;
/// Upper bound of [`Config::buffer_size`].
pub const MAX_BUFFER: usize = 16 << 20;

/// The layout of the user-mode network and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The guest's IPv4 address (QEMU: 10.0.2.15).
    pub guest_ip: Ipv4Addr,
    /// The gateway's IPv4 address: the backend's own (QEMU: 10.0.2.2).
    pub gateway_ip: Ipv4Addr,
    /// The gateway's MAC address; must be unicast (QEMU: 52:55:0a:00:02:02).
    pub gateway_mac: [u8; 6],
    /// Prefix length of the network shared by guest and gateway (QEMU: 24).
    pub prefix_len: u8,
    /// Host TCP ports forwarded to the guest.
    pub forwards: Vec<HostForward>,
    /// Most forwarded connections open at once; further host connections are
    /// accepted and closed at once.
    pub max_connections: usize,
    /// Bytes buffered per connection in each direction.
    pub buffer_size: usize,
    /// A connection whose guest side neither answers the SYN nor acknowledges
    /// pending data for this long is reset.
    pub guest_timeout: Duration,
    /// Longest wait that [`crate::UserNet::poll_delay`] advises, so that host
    /// sockets (which smoltcp does not watch) are serviced.
    pub host_poll_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            guest_ip: Ipv4Addr::new(10, 0, 2, 15),
            gateway_ip: Ipv4Addr::new(10, 0, 2, 2),
            gateway_mac: [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02],
            prefix_len: 24,
            forwards: Vec::new(),
            max_connections: 64,
            buffer_size: 64 * 1024,
            guest_timeout: Duration::from_secs(60),
            host_poll_interval: Duration::from_millis(5),
        }
    }
}

impl Config {
    /// Checks that the addresses and limits make sense together.
    pub fn validate(&self) -> Result<(), UserNetError> {
        let bad = |m: String| Err(UserNetError::BadConfig(m));
        let mac = self.gateway_mac;
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return bad(format!("gateway MAC {} is not unicast", fmt_mac(mac)));
        }
        if !(8..=30).contains(&self.prefix_len) {
            return bad(format!(
                "prefix length /{} is not in 8..=30",
                self.prefix_len
            ));
        }
        if self.guest_ip == self.gateway_ip {
            return bad(format!("guest and gateway share address {}", self.guest_ip));
        }
        if !self.in_subnet(self.guest_ip) {
            return bad(format!(
                "guest {} is outside the gateway's network {}/{}",
                self.guest_ip, self.gateway_ip, self.prefix_len
            ));
        }
        for f in &self.forwards {
            if let Some(ip) = f.guest_addr {
                if !self.in_subnet(ip) || ip == self.gateway_ip {
                    return bad(format!("forward target {ip} is not a guest address"));
                }
            }
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            return bad(format!("max_connections must be in 1..={MAX_CONNECTIONS}"));
        }
        if !(1024..=MAX_BUFFER).contains(&self.buffer_size) {
            return bad(format!("buffer_size must be in 1024..={MAX_BUFFER}"));
        }
        Ok(())
    }

    /// Whether `ip` is in the network shared by guest and gateway.
    pub(crate) fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - u32::from(self.prefix_len));
        u32::from(ip) & mask == u32::from(self.gateway_ip) & mask
    }
}

/// Formats a MAC address as `52:55:0a:00:02:02`.
pub(crate) fn fmt_mac(mac: [u8; 6]) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// Counters of the backend, for logs and metrics export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Frames the guest transmitted to us (all of them, valid or not).
    pub frames_from_guest: u64,
    /// Frames handed to the guest.
    pub frames_to_guest: u64,
    /// Guest frames too short, too long or with a broken ARP/IPv4 header.
    pub frames_malformed: u64,
    /// Well-formed guest frames not for us (other MAC, unsupported protocol).
    pub frames_ignored: u64,
    /// Guest frames dropped because the input queue was full.
    pub frames_dropped: u64,
    /// Host connections accepted on forwarded ports.
    pub connections_accepted: u64,
    /// Host connections closed at once because `max_connections` were open.
    pub connections_rejected: u64,
    /// Connections the guest refused (RST) or never answered.
    pub connections_refused: u64,
    /// Connections finished and released, whatever the reason.
    pub connections_closed: u64,
    /// Payload bytes relayed from host to guest.
    pub bytes_to_guest: u64,
    /// Payload bytes relayed from guest to host.
    pub bytes_from_guest: u64,
}
