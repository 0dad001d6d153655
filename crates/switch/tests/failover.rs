//! End to end through a running switch: host client → hostfwd → gateway → switch →
//! `SwitchPort` → smoltcp guest, and failover of the guest to a second port.
//! Loopback only; every loop bounded (see `common`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use common::{Guest, Running, Vm, GUEST_MAC, LIMIT};
use ftvm_switch::{get, Limits, SwitchPort};

const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

/// A host client doing round trips with the guest's counter server.
struct Client {
    stream: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect_timeout(&addr, LIMIT).expect("connect");
        s.set_read_timeout(Some(LIMIT)).unwrap();
        s.set_write_timeout(Some(LIMIT)).unwrap();
        Client {
            stream: BufReader::new(s),
        }
    }

    /// Sends one line; the reply must be the count `expect`.
    fn round_trip(&mut self, expect: u64) {
        self.stream
            .get_mut()
            .write_all(format!("line {expect}\n").as_bytes())
            .unwrap();
        let mut reply = String::new();
        self.stream.read_line(&mut reply).expect("reply");
        assert_eq!(reply, format!("{expect}\n"));
    }
}

fn vm(addr: SocketAddr, name: &str, guest: Guest) -> Vm {
    Vm {
        guest,
        port: SwitchPort::connect(addr, name).unwrap(),
    }
}

#[test]
fn hostfwd_round_trips_through_the_switch() {
    let sw = Running::start(common::switch(&[7777], Limits::default()));
    let mut a = vm(sw.addr, "node-a", Guest::new(7777));
    let fwd = sw.fwd[0];
    let client: JoinHandle<()> = thread::spawn(move || {
        let mut c = Client::connect(fwd);
        for i in 1..=30 {
            c.round_trip(i);
        }
    });
    assert!(a.pump(|| client.is_finished()), "pump limit hit");
    client.join().expect("client failed");
    let switch = sw.stop();
    assert_eq!(switch.usernet().metrics().connections_accepted, 1);
    let ports = switch.ports();
    assert_eq!(ports.len(), 1);
    assert_eq!(
        (ports[0].name.as_str(), ports[0].macs.clone()),
        ("node-a", vec![GUEST_MAC])
    );
    assert_eq!(get(&switch.metrics().frames_dropped), 0);
}

/// The primary's port goes away (its process died: `hang` false) or falls silent with
/// its connection still open (a hung or cut-off host: `hang` true) while a client's data
/// is in flight. The backup, holding the same guest TCP state, connects a fresh port and
/// announces the guest's MAC; the client's connection carries on.
fn failover(hang: bool) {
    let sw = Running::start(common::switch(&[7777], Limits::default()));
    let m = sw.metrics.clone();
    let mut primary = vm(sw.addr, "node-a", Guest::new(7777));
    let (phase_tx, phase_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let fwd = sw.fwd[0];
    let client = thread::spawn(move || {
        let mut c = Client::connect(fwd);
        for i in 1..=10 {
            c.round_trip(i);
        }
        phase_tx.send(()).unwrap();
        go_rx.recv_timeout(LIMIT).unwrap();
        // Sent while there is no live guest: lost, then retransmitted by the gateway.
        for i in 11..=20 {
            c.round_trip(i);
        }
    });
    let mut phase1 = false;
    assert!(primary.pump(|| {
        phase1 = phase1 || phase_rx.try_recv().is_ok();
        phase1
    }));

    // The primary fails.
    let Vm { guest, port } = primary;
    let _hung_port = if hang {
        Some(port)
    } else {
        drop(port);
        common::wait_until("the dead port to be removed", || {
            get(&m.ports_closed) == 1 && get(&m.macs_forgotten) == 1
        });
        None
    };
    let frames_before = get(&m.frames_in);
    go_tx.send(()).unwrap();
    common::wait_until("the client's data to be lost", || {
        get(&m.frames_in) > frames_before
    });

    // The backup goes live with the replayed guest state on a port of its own.
    let mut backup = Vm {
        guest,
        port: SwitchPort::connect(sw.addr, "node-b").unwrap(),
    };
    assert!(backup.port.announce(GUEST_MAC, GUEST_IP).unwrap());
    assert!(backup.pump(|| client.is_finished()), "pump limit hit");
    client.join().expect("the client's connection broke");

    let switch = sw.stop();
    assert_eq!(switch.usernet().metrics().connections_accepted, 1);
    let live = switch
        .ports()
        .into_iter()
        .find(|p| p.name == "node-b")
        .unwrap();
    assert_eq!(switch.lookup(&GUEST_MAC), Some(live.id));
    assert_eq!(live.macs, vec![GUEST_MAC]);
    assert_eq!(get(&m.macs_moved), u64::from(hang));
}

#[test]
fn failover_after_the_primary_disconnects() {
    failover(false);
}

#[test]
fn failover_while_the_primary_hangs() {
    failover(true);
}
