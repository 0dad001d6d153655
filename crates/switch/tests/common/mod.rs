//! Shared fixtures: a switch running in a thread, a smoltcp "guest" (10.0.2.15) behind a
//! `SwitchPort`, raw frames. Every loop here is bounded in iterations and wall time.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ftvm_switch::{Limits, Metrics, Switch, SwitchPort};
use ftvm_usernet::HostForward;
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

/// The guest's MAC (QEMU's default for the first NIC).
pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// The gateway's MAC (QEMU's default).
pub const GW_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
/// Longest any single wait or pump may take.
pub const LIMIT: Duration = Duration::from_secs(20);

/// A switch with one loopback forward per guest port; `limits` as given.
pub fn switch(guest_ports: &[u16], limits: Limits) -> Switch {
    let forwards = guest_ports
        .iter()
        .map(|&p| HostForward::new("127.0.0.1:0".parse().unwrap(), p))
        .collect();
    let cfg = ftvm_usernet::Config {
        forwards,
        ..Default::default()
    };
    Switch::with_limits("127.0.0.1:0".parse().unwrap(), cfg, limits).unwrap()
}

/// A switch running `run_until` in its own thread.
pub struct Running {
    pub addr: SocketAddr,
    pub fwd: Vec<SocketAddr>,
    pub metrics: Arc<Metrics>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Switch>>,
}

impl Running {
    pub fn start(mut sw: Switch) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let (addr, fwd, metrics) = (sw.local_addr(), sw.hostfwd_addrs(), sw.metrics());
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            sw.run_until(&flag).expect("the switch runs");
            sw
        });
        Running {
            addr,
            fwd,
            metrics,
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the loop and hands the switch back for inspection.
    pub fn stop(mut self) -> Switch {
        self.stop.store(true, Ordering::Relaxed);
        let h = self.handle.take().unwrap();
        h.join().expect("switch thread panicked")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failing test must not leave the switch thread running.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Waits (bounded) until `cond` holds; panics naming `what` otherwise.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    for _ in 0..2_000_000 {
        if cond() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
    panic!("gave up waiting for {what}");
}

/// The guest's wire: frames in, frames out.
#[derive(Default)]
pub struct Wire {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
}

pub struct Rx(Vec<u8>);
pub struct Tx<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut v = vec![0; len];
        let r = f(&mut v);
        self.0.push_back(v);
        r
    }
}

impl Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;
    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((Rx(f), Tx(&mut self.tx)))
    }
    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }
    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

/// A server socket on the guest that answers every line with how many lines this
/// connection has sent so far (`"1\n"`, `"2\n"`, ...): state that must survive failover.
struct Counter {
    handle: SocketHandle,
    port: u16,
    lines: u64,
}

/// The guest's TCP/IP stack: the state a backup has after replaying the primary.
pub struct Guest {
    iface: Interface,
    wire: Wire,
    sockets: SocketSet<'static>,
    servers: Vec<Counter>,
    epoch: Instant,
}

impl Guest {
    /// A guest at 10.0.2.15 with a counter server on `port`.
    pub fn new(port: u16) -> Self {
        let mut wire = Wire::default();
        let cfg = IfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(GUEST_MAC)));
        let mut iface = Interface::new(cfg, &mut wire, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|a| {
            a.push(IpCidr::new(IpAddress::v4(10, 0, 2, 15), 24))
                .unwrap();
        });
        iface
            .routes_mut()
            .add_default_ipv4_route(Ipv4Address::new(10, 0, 2, 2))
            .unwrap();
        let mut sockets = SocketSet::new(Vec::new());
        let sock = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 16384]),
            tcp::SocketBuffer::new(vec![0; 16384]),
        );
        let handle = sockets.add(sock);
        Guest {
            iface,
            wire,
            sockets,
            servers: vec![Counter {
                handle,
                port,
                lines: 0,
            }],
            epoch: Instant::now(),
        }
    }

    /// Runs the server and the stack once on `incoming`; returns the frames sent.
    pub fn step(&mut self, incoming: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        self.wire.rx.extend(incoming);
        let ts = smoltcp::time::Instant::from_micros(self.epoch.elapsed().as_micros() as i64);
        self.iface.poll(ts, &mut self.wire, &mut self.sockets);
        for s in &mut self.servers {
            let sock = self.sockets.get_mut::<tcp::Socket>(s.handle);
            if sock.state() == tcp::State::Closed {
                sock.listen(s.port).unwrap();
                s.lines = 0;
            }
            let mut buf = [0u8; 512];
            // Bounded: a reply needs at most 21 bytes per line and the buffer is 16 KiB.
            while sock.can_recv() && sock.send_capacity() - sock.send_queue() > 21 * 512 {
                let n = sock.recv_slice(&mut buf).unwrap();
                for _ in buf[..n].iter().filter(|&&b| b == b'\n') {
                    s.lines += 1;
                    sock.send_slice(format!("{}\n", s.lines).as_bytes())
                        .unwrap();
                }
            }
            if sock.state() == tcp::State::CloseWait && !sock.can_recv() {
                sock.close();
            }
        }
        self.iface.poll(ts, &mut self.wire, &mut self.sockets);
        self.wire.tx.drain(..).collect()
    }
}

/// A VM as the switch sees it: the guest's stack behind a switch port.
pub struct Vm {
    pub guest: Guest,
    pub port: SwitchPort,
}

impl Vm {
    /// Shuttles frames between the guest and the switch until `done` holds; false if the
    /// time or iteration limit hit first.
    pub fn pump(&mut self, mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + LIMIT;
        for _ in 0..2_000_000 {
            if done() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            let mut incoming = Vec::new();
            while incoming.len() < 256 {
                match self.port.try_recv().expect("switch connection") {
                    Some(f) => incoming.push(f),
                    None => break,
                }
            }
            let busy = !incoming.is_empty();
            let out = self.guest.step(incoming);
            let busy = busy || !out.is_empty();
            for f in &out {
                self.port.send(f).expect("switch connection");
            }
            if !busy {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        false
    }
}

/// An Ethernet frame from `src` to `dst` with a made-up type and `payload`.
pub fn frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x88b5u16.to_be_bytes()); // IEEE 802 local experimental
    f.extend_from_slice(payload);
    f
}
