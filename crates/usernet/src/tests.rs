//! Frame-level tests of the gateway: ARP, ping, malformed input, bounds.

use std::time::Instant;

use proptest::prelude::*;

use crate::{Config, UserNet};

const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const GW_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
const GW_IP: [u8; 4] = [10, 0, 2, 2];

fn net() -> UserNet {
    UserNet::new(Config::default()).unwrap()
}

fn eth(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&GUEST_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp_request(target_ip: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&GUEST_MAC);
    a.extend_from_slice(&GUEST_IP);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target_ip);
    eth([0xff; 6], 0x0806, &a)
}

/// RFC 1071 Internet checksum.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ping(seq: u16, data: &[u8]) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34];
    icmp.extend_from_slice(&seq.to_be_bytes());
    icmp.extend_from_slice(data);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 1, 0x40, 0, 64, 1, 0, 0]);
    ip.extend_from_slice(&GUEST_IP);
    ip.extend_from_slice(&GW_IP);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&icmp);
    eth(GW_MAC, 0x0800, &ip)
}

#[test]
fn answers_arp_for_the_gateway_only() {
    let mut n = net();
    n.from_guest(&arp_request(GW_IP));
    let out = n.poll(Instant::now());
    assert_eq!(out.len(), 1);
    let r = &out[0];
    assert_eq!(&r[0..6], &GUEST_MAC, "reply goes to the asker");
    assert_eq!(&r[6..12], &GW_MAC);
    assert_eq!(&r[12..14], &[0x08, 0x06]);
    assert_eq!(&r[20..22], &[0, 2], "ARP reply");
    assert_eq!(&r[22..28], &GW_MAC, "sender MAC is the gateway's");
    assert_eq!(&r[28..32], &GW_IP);
    assert_eq!(n.guest_mac(), Some(GUEST_MAC));

    // Some other address on the network: not ours to answer.
    n.from_guest(&arp_request([10, 0, 2, 3]));
    assert!(n.poll(Instant::now()).is_empty());
}

#[test]
fn answers_ping_to_the_gateway() {
    let mut n = net();
    n.from_guest(&arp_request(GW_IP));
    n.poll(Instant::now());
    n.from_guest(&ping(7, b"abcdefgh"));
    let out = n.poll(Instant::now());
    assert_eq!(out.len(), 1, "{out:?}");
    let r = &out[0];
    assert_eq!(&r[0..6], &GUEST_MAC);
    assert_eq!(&r[26..30], &GW_IP, "from the gateway");
    assert_eq!(&r[30..34], &GUEST_IP);
    assert_eq!(r[34], 0, "echo reply");
    assert_eq!(&r[38..42], &[0x12, 0x34, 0, 7], "same id and sequence");
    assert_eq!(&r[42..], b"abcdefgh");
    assert_eq!(n.metrics().frames_to_guest, 2);
}

#[test]
fn malformed_and_foreign_frames_are_counted() {
    let mut n = net();
    n.from_guest(&[]);
    n.from_guest(&[0xff; 13]);
    n.from_guest(&vec![0; 1515]);
    let mut bad_sum = ping(1, b"x");
    bad_sum[24] ^= 0xff; // IPv4 header checksum
    n.from_guest(&bad_sum);
    let mut short_arp = arp_request(GW_IP);
    short_arp.truncate(30);
    n.from_guest(&short_arp);
    assert_eq!(n.metrics().frames_malformed, 5);

    n.from_guest(&eth([0x02, 0, 0, 0, 0, 1], 0x0800, &[0; 40])); // another host's MAC
    n.from_guest(&eth(GW_MAC, 0x86dd, &[0; 40])); // IPv6
    assert_eq!(n.metrics().frames_ignored, 2);
    assert!(n.poll(Instant::now()).is_empty());
    assert_eq!(n.metrics().frames_from_guest, 7);
    assert_eq!(n.guest_mac(), None);
}

#[test]
fn guest_input_queue_is_bounded() {
    let mut n = net();
    // Without polls, a burst is processed early until the 1024 replies fill the output
    // queue; then 256 more frames wait and the rest are dropped.
    for _ in 0..2000 {
        n.from_guest(&arp_request(GW_IP));
    }
    assert_eq!(n.metrics().frames_dropped, 2000 - 1024 - 256);
    assert_eq!(n.poll(Instant::now()).len(), 1024);
    assert_eq!(n.poll(Instant::now()).len(), 256);
    assert!(n.poll(Instant::now()).is_empty());
}

#[test]
fn poll_delay_is_capped_by_the_host_interval() {
    let mut n = net();
    let now = Instant::now();
    assert_eq!(n.poll_delay(now), Config::default().host_poll_interval);
    n.from_guest(&arp_request(GW_IP));
    assert_eq!(n.poll_delay(now), std::time::Duration::ZERO);
}

#[test]
fn bad_configs_are_rejected() {
    let bad = |c: Config, what: &str| {
        let e = UserNet::new(c).unwrap_err().to_string();
        assert!(e.contains(what), "{e:?} lacks {what:?}");
    };
    let d = Config::default;
    bad(
        Config {
            gateway_mac: [1, 0, 0, 0, 0, 0],
            ..d()
        },
        "is not unicast",
    );
    bad(
        Config {
            gateway_ip: d().guest_ip,
            ..d()
        },
        "share address",
    );
    bad(
        Config {
            guest_ip: [10, 0, 3, 15].into(),
            ..d()
        },
        "outside the gateway's network",
    );
    bad(
        Config {
            prefix_len: 31,
            ..d()
        },
        "prefix length",
    );
    bad(
        Config {
            max_connections: 0,
            ..d()
        },
        "max_connections",
    );
    let mut f = crate::parse_hostfwd("tcp::0-10.0.9.1:22").unwrap();
    bad(
        Config {
            forwards: vec![f],
            ..d()
        },
        "not a guest address",
    );
    f.guest_addr = Some([10, 0, 2, 16].into());
    assert!(UserNet::new(Config {
        forwards: vec![f],
        ..d()
    })
    .is_ok());
}

proptest! {
    #[test]
    fn arbitrary_guest_frames_never_panic(
        frames in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..1600), 1..20),
        typed in any::<bool>(),
    ) {
        let mut n = net();
        for mut f in frames {
            if typed && f.len() >= 14 {
                // Aim at the gateway with a real ethertype to reach the deeper parsers.
                f[0..6].copy_from_slice(&GW_MAC);
                let ethertype: [u8; 2] = if f[13] & 1 == 0 { [8, 0] } else { [8, 6] };
                f[12..14].copy_from_slice(&ethertype);
            }
            n.from_guest(&f);
            n.poll(Instant::now());
        }
        let m = n.metrics();
        prop_assert!(m.frames_malformed + m.frames_ignored + m.frames_dropped <= m.frames_from_guest);
    }
}
