//! Frame switching between ports, driven round by round with `Switch::poll` so the
//! table can be inspected in between. Loopback only; every loop bounded.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{frame, GUEST_MAC, GW_MAC, LIMIT};
use ftvm_switch::{get, gratuitous_arp, Limits, Switch, SwitchPort, GATEWAY};

const MA: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MB: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const MC: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
const BCAST: [u8; 6] = [0xff; 6];

/// Polls the switch until `cond` holds; panics naming `what` otherwise.
fn poll_until(sw: &mut Switch, what: &str, mut cond: impl FnMut(&mut Switch) -> bool) {
    let deadline = Instant::now() + LIMIT;
    for _ in 0..1_000_000 {
        if cond(sw) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        if !sw.poll(Instant::now()).is_zero() {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    panic!("gave up waiting for {what}");
}

/// The next frame for `port`, polling the switch meanwhile.
fn recv(sw: &mut Switch, port: &mut SwitchPort) -> Vec<u8> {
    let mut got = None;
    poll_until(sw, "a frame", |_| {
        got = port.try_recv().unwrap();
        got.is_some()
    });
    got.unwrap()
}

/// Connects `names` and waits until the switch has them all.
fn connect(sw: &mut Switch, names: &[&str]) -> Vec<SwitchPort> {
    let addr = sw.local_addr();
    let ports: Vec<_> = names
        .iter()
        .map(|n| SwitchPort::connect(addr, n).unwrap())
        .collect();
    poll_until(sw, "the hellos", |sw| sw.ports().len() == names.len());
    ports
}

#[test]
fn learning_flooding_then_unicast() {
    let mut sw = common::switch(&[], Limits::default());
    let mut p = connect(&mut sw, &["a", "b", "c"]);
    let m = sw.metrics();
    let gw_frames = |sw: &Switch| sw.usernet().metrics().frames_from_guest;

    // Unknown destination: flooded to b and c, never back to a, not to the gateway.
    let f1 = frame(MB, MA, b"who is b?");
    p[0].send(&f1).unwrap();
    assert_eq!(recv(&mut sw, &mut p[1]), f1);
    assert_eq!(recv(&mut sw, &mut p[2]), f1);
    assert_eq!(sw.lookup(&MA), Some(sw.ports()[0].id));
    assert_eq!(get(&m.frames_flooded), 1);

    // b answers: a is known, so only a gets it.
    let f2 = frame(MA, MB, b"b here");
    p[1].send(&f2).unwrap();
    assert_eq!(recv(&mut sw, &mut p[0]), f2);
    // a to b: b is known now.
    let f3 = frame(MB, MA, b"hello b");
    p[0].send(&f3).unwrap();
    assert_eq!(recv(&mut sw, &mut p[1]), f3);
    assert_eq!(get(&m.frames_flooded), 1);

    // A broadcast from c reaches a, b and the gateway; c saw nothing in between.
    let f4 = frame(BCAST, MC, b"everyone");
    p[2].send(&f4).unwrap();
    assert_eq!(recv(&mut sw, &mut p[0]), f4);
    assert_eq!(recv(&mut sw, &mut p[1]), f4);
    poll_until(&mut sw, "the gateway to see it", |sw| gw_frames(sw) == 1);
    for _ in 0..50 {
        sw.poll(Instant::now());
    }
    for port in &mut p {
        assert_eq!(port.try_recv().unwrap(), None, "unexpected frame");
    }
    let macs: Vec<_> = sw.ports().iter().map(|i| i.macs.clone()).collect();
    assert_eq!(macs, vec![vec![MA], vec![MB], vec![MC]]);
    assert_eq!(get(&m.frames_in), 4);
    assert_eq!(get(&m.frames_out), 2 + 1 + 1 + 3);
}

#[test]
fn gateway_answers_arp_through_the_switch() {
    let mut sw = common::switch(&[], Limits::default());
    let mut p = connect(&mut sw, &["guest"]);
    // Who has 10.0.2.2? Tell 10.0.2.15.
    let mut req = gratuitous_arp(GUEST_MAC, [10, 0, 2, 15].into());
    req[38..42].copy_from_slice(&[10, 0, 2, 2]);
    p[0].send(&req).unwrap();
    let reply = recv(&mut sw, &mut p[0]);
    assert_eq!((&reply[0..6], &reply[6..12]), (&GUEST_MAC[..], &GW_MAC[..]));
    assert_eq!(&reply[12..14], &[0x08, 0x06]);
    assert_eq!(&reply[20..22], &[0, 2], "an ARP reply");
    assert_eq!(sw.lookup(&GW_MAC), Some(GATEWAY));
    assert_eq!(sw.lookup(&GUEST_MAC), Some(sw.ports()[0].id));
}

#[test]
fn disconnect_forgets_macs() {
    let mut sw = common::switch(&[], Limits::default());
    let mut p = connect(&mut sw, &["a", "b", "c"]);
    let m = sw.metrics();
    p[0].send(&frame(BCAST, MA, b"a is here")).unwrap();
    recv(&mut sw, &mut p[1]);
    recv(&mut sw, &mut p[2]);
    assert!(sw.lookup(&MA).is_some());
    drop(p.remove(0));
    poll_until(&mut sw, "a to leave", |sw| sw.ports().len() == 2);
    assert_eq!(sw.lookup(&MA), None);
    assert_eq!(get(&m.macs_forgotten), 1);
    // A frame for the forgotten address is flooded again: c sees it.
    let f = frame(MA, MB, b"are you there?");
    p[0].send(&f).unwrap();
    assert_eq!(recv(&mut sw, &mut p[1]), f);
    assert_eq!(get(&m.frames_flooded), 2);
}

#[test]
fn gratuitous_arp_moves_the_mac_at_once() {
    let mut sw = common::switch(&[], Limits::default());
    let mut p = connect(&mut sw, &["primary", "backup", "peer"]);
    let ids: Vec<_> = sw.ports().iter().map(|i| i.id).collect();
    let m = sw.metrics();
    p[0].send(&frame(BCAST, GUEST_MAC, b"primary")).unwrap();
    recv(&mut sw, &mut p[1]);
    recv(&mut sw, &mut p[2]);
    assert_eq!(sw.lookup(&GUEST_MAC), Some(ids[0]));
    // The backup goes live while the primary's connection is still open.
    p[1].announce(GUEST_MAC, [10, 0, 2, 15].into()).unwrap();
    recv(&mut sw, &mut p[2]);
    assert_eq!(sw.lookup(&GUEST_MAC), Some(ids[1]));
    assert_eq!(get(&m.macs_moved), 1);
    let f = frame(GUEST_MAC, MC, b"for the guest");
    p[2].send(&f).unwrap();
    assert_eq!(recv(&mut sw, &mut p[1]), f);
    // The primary saw the announcement (a broadcast), but not the unicast.
    let garp = recv(&mut sw, &mut p[0]);
    assert_eq!(garp, gratuitous_arp(GUEST_MAC, [10, 0, 2, 15].into()));
    for _ in 0..50 {
        sw.poll(Instant::now());
    }
    assert_eq!(p[0].try_recv().unwrap(), None);
}

#[test]
fn queue_overflow_drops_and_counts() {
    const CAP: usize = 64 * 1024;
    let limits = Limits {
        port_queue_bytes: CAP,
        ..Limits::default()
    };
    let mut sw = common::switch(&[], limits);
    // "slow" never reads; "fast" floods it with large frames.
    let mut p = connect(&mut sw, &["slow", "fast"]);
    let m = sw.metrics();
    let big = frame(BCAST, MB, &vec![0x5a; 60_000]);
    poll_until(&mut sw, "drops", |sw| {
        if p[1].queued() < 1 << 19 {
            p[1].send(&big).unwrap();
        }
        p[1].flush().unwrap();
        sw.ports()[0].dropped > 0
    });
    let slow = &sw.ports()[0];
    assert!(slow.queued_bytes <= CAP + 4 + big.len(), "{slow:?}");
    assert_eq!(get(&m.frames_dropped), slow.dropped);
    // Frames with a group source address are malformed and dropped, not learned.
    let before = get(&m.frames_malformed);
    p[1].send(&frame(MA, BCAST, b"bad source")).unwrap();
    p[1].send(&[1, 2, 3]).unwrap();
    poll_until(&mut sw, "malformed frames", |_| {
        get(&m.frames_malformed) == before + 2
    });
}

/// Whether the switch closed `s` (EOF or reset), without blocking.
fn closed(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    match s.read(&mut [0u8; 8]) {
        Ok(0) => true,
        Ok(_) => panic!("the switch sent data"),
        Err(e) => e.kind() != ErrorKind::WouldBlock,
    }
}

#[test]
fn protocol_violations_close_the_connection() {
    let limits = Limits {
        hello_timeout: Duration::from_millis(50),
        max_ports: 3,
        ..Limits::default()
    };
    let mut sw = common::switch(&[], limits);
    let addr = sw.local_addr();
    let m = sw.metrics();
    let mut bad_hello = TcpStream::connect(addr).unwrap();
    bad_hello
        .write_all(&[5, 0, 0, 0, b'H', b'E', b'L', b'L', b'O'])
        .unwrap();
    let mut bad_len = TcpStream::connect(addr).unwrap();
    bad_len
        .write_all(&ftvm_switch::wire::encode_hello("x").unwrap())
        .unwrap();
    bad_len.write_all(&(1u32 << 20).to_le_bytes()).unwrap();
    let mut silent = TcpStream::connect(addr).unwrap();
    poll_until(&mut sw, "three closed connections", |_| {
        get(&m.ports_closed) == 3
    });
    assert_eq!(get(&m.protocol_errors), 2);
    for s in [&mut bad_hello, &mut bad_len, &mut silent] {
        poll_until(&mut sw, "EOF", |_| closed(s));
    }
    // Over the port limit: closed at once.
    let _p = connect(&mut sw, &["a", "b", "c"]);
    let mut extra = TcpStream::connect(addr).unwrap();
    poll_until(&mut sw, "the rejection", |_| get(&m.ports_rejected) == 1);
    poll_until(&mut sw, "EOF", |_| closed(&mut extra));
    assert_eq!(sw.ports().len(), 3);
}

#[test]
fn frames_for_a_vanished_mac_reach_the_port_that_claims_it_next() {
    let mut sw = common::switch(&[], Limits::default());
    let mut p = connect(&mut sw, &["primary", "peer"]);
    p[0].send(&frame(BCAST, GUEST_MAC, b"primary")).unwrap();
    recv(&mut sw, &mut p[1]);
    // A frame reaches the primary's socket, but the primary dies before reading it.
    let unread = frame(GUEST_MAC, MC, b"written, never read");
    p[1].send(&unread).unwrap();
    for _ in 0..50 {
        sw.poll(Instant::now());
    }
    // The primary dies; a frame for the guest arrives before the backup goes live.
    drop(p.remove(0));
    poll_until(&mut sw, "the primary to leave", |sw| sw.ports().len() == 1);
    let f = frame(GUEST_MAC, MC, b"sent during the failover");
    p[0].send(&f).unwrap();
    for _ in 0..50 {
        sw.poll(Instant::now());
    }
    // The backup announces the MAC and gets the frame it missed.
    let mut backup = SwitchPort::connect(sw.local_addr(), "backup").unwrap();
    poll_until(&mut sw, "the backup's hello", |sw| sw.ports().len() == 2);
    backup.announce(GUEST_MAC, [10, 0, 2, 15].into()).unwrap();
    assert_eq!(recv(&mut sw, &mut backup), unread);
    assert_eq!(recv(&mut sw, &mut backup), f);
    // Only once: a later claim gets nothing more.
    for _ in 0..50 {
        sw.poll(Instant::now());
    }
    assert_eq!(backup.try_recv().unwrap(), None);
}

#[test]
fn frames_sent_to_a_silently_dead_port_reach_the_port_the_mac_moves_to() {
    let mut sw = common::switch(&[], Limits::default());
    let mut p = connect(&mut sw, &["primary", "peer"]);
    p[0].send(&frame(BCAST, GUEST_MAC, b"primary")).unwrap();
    recv(&mut sw, &mut p[1]);
    // The primary's host dies silently: its port stays open here, and the frames
    // for the guest written to it are never read.
    let lost = frame(GUEST_MAC, MC, b"written to a dead host");
    p[1].send(&lost).unwrap();
    for _ in 0..50 {
        sw.poll(Instant::now());
    }
    assert_eq!(sw.ports().len(), 2, "the dead port is still open");
    // The backup goes live elsewhere and announces the guest's MAC: it gets them.
    let mut backup = SwitchPort::connect(sw.local_addr(), "backup").unwrap();
    poll_until(&mut sw, "the backup's hello", |sw| sw.ports().len() == 3);
    backup.announce(GUEST_MAC, [10, 0, 2, 15].into()).unwrap();
    assert_eq!(recv(&mut sw, &mut backup), lost);
    // And what follows goes to it alone.
    let next = frame(GUEST_MAC, MC, b"after the move");
    p[1].send(&next).unwrap();
    assert_eq!(recv(&mut sw, &mut backup), next);
    for _ in 0..50 {
        sw.poll(Instant::now());
    }
    assert_eq!(backup.try_recv().unwrap(), None);
}
