//! A "guest" smoltcp stack (10.0.2.15) and a pump that shuttles frames between it and
//! a `UserNet`. Every loop here is bounded in iterations and wall time.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ftvm_usernet::{Config, HostForward, UserNet};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, HardwareAddress, IpAddress, IpCidr, Ipv4Address, PrettyPrinter,
};

/// The guest's MAC (QEMU's default for the first NIC).
pub const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// Longest any single test may pump.
pub const PUMP_LIMIT: Duration = Duration::from_secs(30);

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

/// What a guest server does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Echo every byte; close after the peer closed and everything was echoed.
    Echo,
    /// Send the greeting, then close (the guest closes first).
    Greet(&'static [u8]),
}

struct Server {
    handle: SocketHandle,
    port: u16,
    mode: Mode,
    greeted: bool,
}

/// The guest: one smoltcp interface and a few listening servers.
pub struct Guest {
    iface: Interface,
    wire: Wire,
    sockets: SocketSet<'static>,
    servers: Vec<Server>,
    epoch: Instant,
}

impl Guest {
    pub fn new() -> Self {
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
        Guest {
            iface,
            wire,
            sockets: SocketSet::new(Vec::new()),
            servers: Vec::new(),
            epoch: Instant::now(),
        }
    }

    /// Adds `count` listening sockets (concurrent connections) on `port`.
    pub fn serve(&mut self, port: u16, mode: Mode, count: usize) {
        for _ in 0..count {
            let sock = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 65536]),
                tcp::SocketBuffer::new(vec![0; 65536]),
            );
            let handle = self.sockets.add(sock);
            self.servers.push(Server {
                handle,
                port,
                mode,
                greeted: false,
            });
        }
    }

    fn ts(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// Runs the servers and the stack once; returns the frames the guest transmits.
    pub fn step(&mut self, incoming: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        self.wire.rx.extend(incoming);
        let ts = self.ts();
        self.iface.poll(ts, &mut self.wire, &mut self.sockets);
        for s in &mut self.servers {
            let sock = self.sockets.get_mut::<tcp::Socket>(s.handle);
            // Not `!is_open()`: a socket in TIME-WAIT still owes its peer an ACK.
            if sock.state() == tcp::State::Closed {
                sock.listen(s.port).unwrap();
                s.greeted = false;
            }
            match s.mode {
                Mode::Echo => echo(sock),
                Mode::Greet(msg) => {
                    if sock.may_send() && !s.greeted {
                        sock.send_slice(msg).unwrap();
                        sock.close();
                        s.greeted = true;
                    }
                    // Drain and discard whatever the host says.
                    while sock.can_recv() {
                        let _ = sock.recv(|b| (b.len(), ()));
                    }
                }
            }
        }
        self.iface.poll(ts, &mut self.wire, &mut self.sockets);
        self.wire.tx.drain(..).collect()
    }
}

fn echo(sock: &mut tcp::Socket) {
    let mut buf = [0u8; 4096];
    for _ in 0..64 {
        let room = sock.send_capacity() - sock.send_queue();
        if !sock.can_recv() || !sock.may_send() || room == 0 {
            break;
        }
        let n = sock.recv_slice(&mut buf[..room.min(4096)]).unwrap();
        assert_eq!(sock.send_slice(&buf[..n]).unwrap(), n);
    }
    if sock.state() == tcp::State::CloseWait && !sock.can_recv() {
        sock.close();
    }
}

/// A `UserNet` with one forward from an ephemeral loopback port to each guest port.
pub fn usernet(guest_ports: &[u16]) -> (UserNet, Vec<std::net::SocketAddr>) {
    let forwards = guest_ports
        .iter()
        .map(|&p| HostForward::new("127.0.0.1:0".parse().unwrap(), p))
        .collect();
    let net = UserNet::new(Config {
        forwards,
        ..Config::default()
    })
    .unwrap();
    let addrs = net.local_addrs();
    (net, addrs)
}

/// Shuttles frames until `done` holds; false if the time or iteration limit hit first.
pub fn pump(net: &mut UserNet, guest: &mut Guest, mut done: impl FnMut(&UserNet) -> bool) -> bool {
    let deadline = Instant::now() + PUMP_LIMIT;
    let trace_on = std::env::var_os("PUMP_TRACE").is_some();
    for _ in 0..5_000_000 {
        if done(net) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        let to_guest = net.poll(Instant::now());
        to_guest.iter().for_each(|f| trace(trace_on, "to guest", f));
        let busy = !to_guest.is_empty();
        let from_guest = guest.step(to_guest);
        let busy = busy || !from_guest.is_empty();
        for f in &from_guest {
            trace(trace_on, "from guest", f);
            net.from_guest(f);
        }
        if !busy {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    false
}

/// With `PUMP_TRACE` set, prints every frame (`cargo test -- --nocapture`).
fn trace(on: bool, dir: &str, frame: &[u8]) {
    if on {
        let p = PrettyPrinter::<EthernetFrame<&[u8]>>::new("", &frame);
        eprintln!("{:?} {dir}: {p}", Instant::now());
    }
}
