//! Host port forwards and QEMU's `hostfwd` syntax.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::UserNetError;

/// A host TCP port forwarded to a guest TCP port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostForward {
    /// Where to listen on the host; port 0 picks any free port
    /// (see [`crate::UserNet::local_addrs`]).
    pub host: SocketAddr,
    /// The guest address to connect to; `None` means the configured guest IP.
    pub guest_addr: Option<Ipv4Addr>,
    /// The guest TCP port to connect to.
    pub guest_port: u16,
}

impl HostForward {
    /// A forward from `host` to the guest's `guest_port`.
    pub fn new(host: SocketAddr, guest_port: u16) -> Self {
        HostForward {
            host,
            guest_addr: None,
            guest_port,
        }
    }
}

/// Parses QEMU's `hostfwd` rule: `[hostfwd=][tcp]:[hostaddr]:hostport-[guestaddr]:guestport`,
/// e.g. `tcp:127.0.0.1:8080-:7777` or `tcp::8080-:7777`.
///
/// An empty host address means 127.0.0.1: a forward is reachable from other machines
/// only when asked for by address. Only TCP and IPv4 dotted quads are accepted.
pub fn parse_hostfwd(spec: &str) -> Result<HostForward, UserNetError> {
    let bad = |reason: &str| UserNetError::BadHostfwd {
        spec: spec.to_string(),
        reason: reason.to_string(),
    };
    let rule = spec.strip_prefix("hostfwd=").unwrap_or(spec);
    let (host_part, guest_part) = rule
        .split_once('-')
        .ok_or_else(|| bad("expected '<host side>-<guest side>'"))?;

    let host_fields: Vec<&str> = host_part.split(':').collect();
    let [proto, host_addr, host_port] = host_fields[..] else {
        return Err(bad("host side must be 'tcp:[hostaddr]:hostport'"));
    };
    match proto {
        "" | "tcp" => {}
        "udp" => return Err(bad("udp forwarding is not supported, only tcp")),
        _ => return Err(bad("protocol must be 'tcp'")),
    }
    let host_ip = if host_addr.is_empty() {
        Ipv4Addr::LOCALHOST
    } else {
        host_addr
            .parse::<Ipv4Addr>()
            .map_err(|_| bad("host address must be an IPv4 address like 127.0.0.1"))?
    };
    let host_port: u16 = host_port
        .parse()
        .map_err(|_| bad("host port must be a number in 0..=65535"))?;

    let (guest_addr, guest_port) = guest_part
        .split_once(':')
        .ok_or_else(|| bad("guest side must be '[guestaddr]:guestport'"))?;
    let guest_addr = if guest_addr.is_empty() {
        None
    } else {
        Some(
            guest_addr
                .parse::<Ipv4Addr>()
                .map_err(|_| bad("guest address must be an IPv4 address like 10.0.2.15"))?,
        )
    };
    let guest_port: u16 = match guest_port.parse() {
        Ok(0) | Err(_) => return Err(bad("guest port must be a number in 1..=65535")),
        Ok(p) => p,
    };
    Ok(HostForward {
        host: SocketAddr::V4(SocketAddrV4::new(host_ip, host_port)),
        guest_addr,
        guest_port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(spec: &str) -> HostForward {
        parse_hostfwd(spec).unwrap_or_else(|e| panic!("{spec}: {e}"))
    }

    fn err(spec: &str) -> String {
        match parse_hostfwd(spec) {
            Ok(f) => panic!("{spec} parsed as {f:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn good_specs() {
        let f = ok("tcp:127.0.0.1:8080-:7777");
        assert_eq!(f.host, "127.0.0.1:8080".parse().unwrap());
        assert_eq!((f.guest_addr, f.guest_port), (None, 7777));

        let f = ok("tcp::8080-:7777");
        assert_eq!(f.host, "127.0.0.1:8080".parse().unwrap());

        let f = ok("hostfwd=::0-10.0.2.15:22");
        assert_eq!(f.host, "127.0.0.1:0".parse().unwrap());
        assert_eq!(f.guest_addr, Some(Ipv4Addr::new(10, 0, 2, 15)));
        assert_eq!(f.guest_port, 22);

        let f = ok("tcp:127.0.0.2:65535-:1");
        assert_eq!(f.host, "127.0.0.2:65535".parse().unwrap());
        assert_eq!(f.guest_port, 1);
    }

    #[test]
    fn bad_specs() {
        assert!(err("udp::5353-:53").contains("udp forwarding is not supported"));
        assert!(err("sctp::1-:2").contains("protocol must be 'tcp'"));
        assert!(err("tcp::8080").contains("expected '<host side>-<guest side>'"));
        assert!(err("tcp:8080-:22").contains("host side must be"));
        assert!(err("tcp:localhost:8080-:22").contains("host address must be an IPv4"));
        assert!(err("tcp::65536-:22").contains("host port must be a number"));
        assert!(err("tcp::-:22").contains("host port must be a number"));
        assert!(err("tcp::8080-22").contains("guest side must be"));
        assert!(err("tcp::8080-:0").contains("guest port must be a number in 1..=65535"));
        assert!(err("tcp::8080-:x").contains("guest port must be"));
        assert!(err("tcp::8080-guest:22").contains("guest address must be an IPv4"));
        assert!(err("").contains("invalid hostfwd \"\""));
    }
}
