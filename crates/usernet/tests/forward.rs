//! Host port forwarding end to end: host `TcpStream` ↔ `UserNet` ↔ a smoltcp "guest".
//! Loopback only; every loop bounded (see `common::pump`).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::{pump, usernet, Guest, Mode, GUEST_MAC};

const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `f` on a fresh host connection to `addr` in a thread.
fn client<T: Send + 'static>(
    addr: SocketAddr,
    f: impl FnOnce(TcpStream) -> T + Send + 'static,
) -> JoinHandle<T> {
    thread::spawn(move || {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        f(s)
    })
}

/// Pumps until every client thread is done and every connection released.
fn finish<T>(
    net: &mut ftvm_usernet::UserNet,
    guest: &mut Guest,
    clients: Vec<JoinHandle<T>>,
) -> Vec<T> {
    let ok = pump(net, guest, |n| {
        clients.iter().all(|c| c.is_finished())
            && n.metrics().connections_accepted >= clients.len() as u64
            && n.connection_count() == 0
    });
    assert!(ok, "pump limit hit: {:?}", net.metrics());
    clients
        .into_iter()
        .map(|c| c.join().expect("client panicked"))
        .collect()
}

fn read_to_end(s: &mut TcpStream) -> Vec<u8> {
    let mut v = Vec::new();
    s.read_to_end(&mut v).expect("read to EOF");
    v
}

#[test]
fn echo_round_trips() {
    let (mut net, addrs) = usernet(&[7777]);
    let mut guest = Guest::new();
    guest.serve(7777, Mode::Echo, 2);
    let c = client(addrs[0], |mut s| {
        for i in 0..50u32 {
            let msg = format!("round trip {i}\n");
            s.write_all(msg.as_bytes()).unwrap();
            let mut back = vec![0; msg.len()];
            s.read_exact(&mut back).unwrap();
            assert_eq!(back, msg.as_bytes());
        }
        s.shutdown(Shutdown::Write).unwrap();
        assert!(read_to_end(&mut s).is_empty());
    });
    finish(&mut net, &mut guest, vec![c]);
    let m = net.metrics();
    assert_eq!((m.connections_accepted, m.connections_closed), (1, 1));
    assert_eq!(m.bytes_to_guest, m.bytes_from_guest);
    assert_eq!(m.frames_malformed, 0);
    assert_eq!(net.guest_mac(), Some(GUEST_MAC));
}

fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Writes `data` from one thread while reading the echo in another; returns the echo.
fn echo_bulk(mut s: TcpStream, data: Vec<u8>) -> Vec<u8> {
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        w.write_all(&data).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let back = read_to_end(&mut s);
    writer.join().unwrap();
    back
}

#[test]
fn one_megabyte_both_ways() {
    const LEN: usize = 1 << 20;
    let (mut net, addrs) = usernet(&[7777]);
    let mut guest = Guest::new();
    guest.serve(7777, Mode::Echo, 1);
    let data = pattern(LEN, 7);
    let expect = data.clone();
    let start = Instant::now();
    let c = client(addrs[0], move |s| echo_bulk(s, data));
    let back = finish(&mut net, &mut guest, vec![c]).pop().unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(back.len(), LEN);
    assert!(back == expect, "echoed data differs");
    let m = net.metrics();
    assert_eq!(
        (m.bytes_to_guest, m.bytes_from_guest),
        (LEN as u64, LEN as u64)
    );
    eprintln!(
        "1 MiB each way in {:.3} s: {:.1} MiB/s per direction ({} frames to guest, {} from guest)",
        secs,
        1.0 / secs,
        m.frames_to_guest,
        m.frames_from_guest
    );
}

#[test]
fn two_concurrent_connections() {
    let (mut net, addrs) = usernet(&[7777]);
    let mut guest = Guest::new();
    guest.serve(7777, Mode::Echo, 2);
    let clients: Vec<_> = (0..2u32)
        .map(|k| {
            let data = pattern(200_000, 11 + k);
            client(addrs[0], move |mut s| {
                // Interleave small round trips with a bulk echo on the same connection.
                for i in 0..20 {
                    let msg = format!("client {k} message {i}");
                    s.write_all(msg.as_bytes()).unwrap();
                    let mut back = vec![0; msg.len()];
                    s.read_exact(&mut back).unwrap();
                    assert_eq!(back, msg.as_bytes());
                }
                echo_bulk(s, data.clone()) == data
            })
        })
        .collect();
    let results = finish(&mut net, &mut guest, clients);
    assert_eq!(results, vec![true, true]);
    assert_eq!(net.metrics().connections_accepted, 2);
    assert_eq!(net.metrics().connections_closed, 2);
}

#[test]
fn guest_closes_first() {
    let (mut net, addrs) = usernet(&[7778]);
    let mut guest = Guest::new();
    guest.serve(7778, Mode::Greet(b"hello from the guest\n"), 1);
    let c = client(addrs[0], |mut s| {
        let got = read_to_end(&mut s);
        // Half-closed: the host may still send; then it closes too.
        let _ = s.write_all(b"bye");
        s.shutdown(Shutdown::Write).unwrap();
        got
    });
    let got = finish(&mut net, &mut guest, vec![c]).pop().unwrap();
    assert_eq!(got, b"hello from the guest\n");
    assert_eq!(net.metrics().connections_closed, 1);
}

#[test]
fn host_closes_first() {
    let (mut net, addrs) = usernet(&[7777]);
    let mut guest = Guest::new();
    guest.serve(7777, Mode::Echo, 1);
    let c = client(addrs[0], |mut s| {
        s.write_all(b"last words").unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        // The guest sees our FIN, echoes what it had and closes its side.
        read_to_end(&mut s)
    });
    let got = finish(&mut net, &mut guest, vec![c]).pop().unwrap();
    assert_eq!(got, b"last words");
    assert_eq!(net.metrics().connections_closed, 1);
}

#[test]
fn host_drops_connection_without_reading() {
    let (mut net, addrs) = usernet(&[7777]);
    let mut guest = Guest::new();
    guest.serve(7777, Mode::Echo, 1);
    let c = client(addrs[0], |mut s| {
        s.write_all(&pattern(100_000, 3)).unwrap();
        // Dropped with the echo unread: the kernel resets the connection.
    });
    finish(&mut net, &mut guest, vec![c]);
    assert_eq!(net.metrics().connections_closed, 1);
}

#[test]
fn guest_port_without_listener_is_refused() {
    let (mut net, addrs) = usernet(&[9]);
    let mut guest = Guest::new();
    let c = client(addrs[0], |mut s| {
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => true,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
            other => panic!("expected EOF or reset, got {other:?}"),
        }
    });
    assert_eq!(finish(&mut net, &mut guest, vec![c]), vec![true]);
    let m = net.metrics();
    assert_eq!((m.connections_refused, m.connections_closed), (1, 1));
}

#[test]
fn several_forwards_each_reach_their_port() {
    let (mut net, addrs) = usernet(&[7777, 7778]);
    assert_eq!(addrs.len(), 2);
    assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() != 0));
    let mut guest = Guest::new();
    guest.serve(7777, Mode::Echo, 1);
    guest.serve(7778, Mode::Greet(b"greeter"), 1);
    let a = client(addrs[0], |s| echo_bulk(s, b"echoed".to_vec()));
    let b = client(addrs[1], |mut s| read_to_end(&mut s));
    let got = finish(&mut net, &mut guest, vec![a, b]);
    assert_eq!(got, vec![b"echoed".to_vec(), b"greeter".to_vec()]);
}

#[test]
fn connections_over_the_cap_are_closed() {
    let forwards = vec![ftvm_usernet::HostForward::new(
        "127.0.0.1:0".parse().unwrap(),
        7777,
    )];
    let mut net = ftvm_usernet::UserNet::new(ftvm_usernet::Config {
        forwards,
        max_connections: 1,
        ..Default::default()
    })
    .unwrap();
    let addr = net.local_addrs()[0];
    let mut guest = Guest::new();
    guest.serve(7777, Mode::Echo, 2);
    // The first connection stays open until the second one was turned away.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let first = client(addr, move |mut s| {
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        rx.recv_timeout(IO_TIMEOUT).unwrap();
    });
    assert!(pump(&mut net, &mut guest, |n| n.metrics().bytes_from_guest == 1));
    let second = client(addr, |mut s| {
        let mut b = [0u8; 1];
        match s.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    });
    assert!(pump(&mut net, &mut guest, |n| n
        .metrics()
        .connections_rejected
        == 1));
    tx.send(()).unwrap();
    finish(&mut net, &mut guest, vec![first]);
    assert!(second.join().unwrap());
}

#[test]
fn listening_twice_on_one_port_is_an_error() {
    let (net, addrs) = usernet(&[7777]);
    let forwards = vec![ftvm_usernet::HostForward::new(addrs[0], 7777)];
    let err = ftvm_usernet::UserNet::new(ftvm_usernet::Config {
        forwards,
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("cannot listen on 127.0.0.1:"),
        "{err}"
    );
    drop(net);
}

#[test]
fn many_concurrent_connections() {
    const N: u32 = 24;
    let (mut net, addrs) = usernet(&[7777]);
    let mut guest = Guest::new();
    guest.serve(7777, Mode::Echo, N as usize);
    let clients: Vec<_> = (0..N)
        .map(|k| {
            let data = pattern(20_000, 100 + k);
            client(addrs[0], move |s| echo_bulk(s, data.clone()) == data)
        })
        .collect();
    let results = finish(&mut net, &mut guest, clients);
    assert!(results.iter().all(|&ok| ok));
    let m = net.metrics();
    assert_eq!(
        (m.connections_accepted, m.connections_closed),
        (N as u64, N as u64)
    );
    assert_eq!(m.connections_rejected, 0);
    assert_eq!(m.frames_dropped, 0, "{m:?}");
}

#[test]
fn abort_all_ends_open_connections() {
    let (mut net, addrs) = usernet(&[7777]);
    let mut guest = Guest::new();
    guest.serve(7777, Mode::Echo, 1);
    let c = client(addrs[0], |mut s| {
        s.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        match s.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    });
    assert!(pump(&mut net, &mut guest, |n| n.metrics().bytes_from_guest == 1));
    net.abort_all();
    assert_eq!(finish(&mut net, &mut guest, vec![c]), vec![true]);
}
