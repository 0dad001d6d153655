//! Counters of the switch: plain atomics, readable from any thread while it runs.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Counters of a [`crate::Switch`], shared with [`crate::Switch::metrics`].
        #[derive(Debug, Default)]
        pub struct Metrics {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        impl Metrics {
            /// The counters in the Prometheus text format (exposition formats,
            /// "Text format"): `ftvm_switch_<name>_total`, with the field's doc as HELP.
            pub fn prometheus(&self) -> String {
                let mut s = String::new();
                $(
                    let name = concat!("ftvm_switch_", stringify!($name), "_total");
                    let help: Vec<&str> = [$($doc),*].iter().map(|l| l.trim()).collect();
                    let _ = writeln!(s, "# HELP {name} {}", help.join(" "));
                    let _ = writeln!(s, "# TYPE {name} counter");
                    let _ = writeln!(s, "{name} {}", get(&self.$name));
                )*
                s
            }
        }
    };
}

counters! {
    /// Frames received from VM ports and the gateway.
    frames_in,
    /// Frame copies queued for a port (a flooded frame counts once per port).
    frames_out,
    /// Frames sent to every port but their source (broadcast, multicast, unknown).
    frames_flooded,
    /// Frames for a port that already has the destination (nothing to do).
    frames_filtered,
    /// Frames too short, from a group address, or spoofing the gateway.
    frames_malformed,
    /// Frame copies dropped because a port's queue was full.
    frames_dropped,
    /// Addresses learned on a port.
    macs_learned,
    /// Addresses that moved to another port (gratuitous ARP after failover).
    macs_moved,
    /// Addresses forgotten because their port disconnected.
    macs_forgotten,
    /// Addresses not learned because the table was full.
    macs_refused,
    /// VM ports that completed the hello.
    ports_connected,
    /// VM ports closed (peer gone, protocol error, hello timeout).
    ports_closed,
    /// Connections closed at once because the switch had no room for them.
    ports_rejected,
    /// Connections closed for breaking the wire protocol.
    protocol_errors,
    /// TLS ports whose certificate the switch accepted.
    ports_authenticated,
    /// Connections refused in the TLS handshake (no valid certificate of the cluster,
    /// plaintext to a TLS switch) or for a record that did not authenticate.
    ports_refused,
    /// Connections closed because their TLS handshake did not finish in time.
    handshake_timeouts,
    /// Frames dropped because their source address is not the sending port's VM's.
    frames_refused,
}

/// Reads a counter.
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Adds to a counter.
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text() {
        let m = Metrics::default();
        add(&m.frames_dropped, 3);
        let t = m.prometheus();
        assert!(t.contains("ftvm_switch_frames_dropped_total 3\n"), "{t}");
        assert!(t.contains("# TYPE ftvm_switch_macs_moved_total counter\n"));
        assert!(t.contains(
            "# HELP ftvm_switch_macs_moved_total Addresses that moved to another port \
             (gratuitous ARP after failover).\n"
        ));
    }
}
