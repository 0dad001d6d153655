//! A client of the Linux guest's counter service: smoltcp's TCP stack on simulated
//! time (its clock is the simulation's, its random seed the seed's), one connection to
//! port 7777, one `inc` or `get` line at a time, the reply line read back. Its frames
//! cross the simulated switch, so every fault on its link reaches real TCP on both ends.

use crate::guest::{Client, Observed};
use crate::linux::{GUEST_IP, GUEST_PORT};
use crate::model::Op;
use crate::rng::Rng;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use std::collections::VecDeque;

/// Client `c`'s MAC address is this prefix and `c`.
pub const CLIENT_MAC_PREFIX: [u8; 5] = [0x02, 0x00, 0x00, 0x00, 0x00];
/// A client gives up on a request (and its connection) after this long (µs): the
/// operation stays pending (it may or may not have happened) and it reconnects.
const GIVE_UP: u64 = 1_000_000;
/// Pause between a reply and the next request (µs): from this to twice this.
const THINK: u64 = 10_000;

/// Frames in and out of the client's stack.
#[derive(Default)]
struct Queues {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

struct TxToken<'a>(&'a mut Vec<Vec<u8>>);

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.push(frame);
        r
    }
}

impl Device for Queues {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let f = self.rx.pop_front()?;
        Some((RxToken(f), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

/// An operation in flight: what, its history index, when it was sent.
#[derive(Clone, Copy)]
struct Waiting {
    op: Op,
    index: usize,
    since: u64,
}

/// A TCP client of the counter.
pub struct TcpClient {
    id: u32,
    dev: Queues,
    iface: Interface,
    sockets: SocketSet<'static>,
    sock: SocketHandle,
    next_port: u16,
    /// When the connection in use was started (`None`: no connection).
    connected: Option<u64>,
    waiting: Option<Waiting>,
    line: Vec<u8>,
    next_at: u64,
}

fn socket() -> tcp::Socket<'static> {
    let mut s = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 4096]),
        tcp::SocketBuffer::new(vec![0; 4096]),
    );
    s.set_nagle_enabled(false);
    s.set_ack_delay(None);
    s
}

impl TcpClient {
    /// Abandon the connection; an operation in flight may or may not have taken
    /// effect, so it stays pending in the history.
    fn give_up(&mut self) {
        self.waiting = None;
        self.sockets.get_mut::<tcp::Socket>(self.sock).abort();
        self.connected = None;
        self.line.clear();
    }

    fn connect(&mut self, now: u64) {
        let port = self.next_port;
        self.next_port = if port == u16::MAX { 49152 } else { port + 1 };
        let s = self.sockets.get_mut::<tcp::Socket>(self.sock);
        *s = socket();
        let remote = (IpAddress::Ipv4(Ipv4Address::from(GUEST_IP)), GUEST_PORT);
        if s.connect(self.iface.context(), remote, port).is_ok() {
            self.connected = Some(now);
        }
    }

    /// Complete lines read: each answers the operation in flight.
    fn read_replies(&mut self, now: u64, obs: &mut Observed) {
        let s = self.sockets.get_mut::<tcp::Socket>(self.sock);
        let mut buf = [0u8; 512];
        while s.can_recv() {
            match s.recv_slice(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.line.extend_from_slice(&buf[..n]),
            }
        }
        while let Some(nl) = self.line.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.line.drain(..=nl).collect();
            let Some(w) = self.waiting.take() else {
                continue;
            };
            self.next_at = now + THINK + (w.index as u64 * 7919) % THINK;
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            match text.parse::<u64>() {
                Ok(v) => obs.returned(w.index, w.op, now, v),
                // "err": the disk failed the write, the increment did not happen.
                Err(_) if text == "err" && w.op == Op::Inc => obs.did_not_happen(w.index),
                Err(_) => {
                    // A reply the protocol does not have: record it as impossible.
                    if let Some(o) = &mut obs.history[w.index] {
                        o.ret = Some((now, u64::MAX));
                    }
                }
            }
        }
    }
}

impl Client<Vec<u8>> for TcpClient {
    fn new(id: u32, rng: &mut Rng) -> TcpClient {
        let mut mac = [0u8; 6];
        mac[..5].copy_from_slice(&CLIENT_MAC_PREFIX);
        mac[5] = id as u8;
        let mut cfg = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        cfg.random_seed = rng.next_u64();
        let mut dev = Queues::default();
        let mut iface = Interface::new(cfg, &mut dev, Instant::from_micros(0));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::v4(10, 0, 2, 100 + id as u8), 24));
        });
        let mut sockets = SocketSet::new(Vec::new());
        let sock = sockets.add(socket());
        TcpClient {
            id,
            dev,
            iface,
            sockets,
            sock,
            next_port: 49152 + (rng.below(1000) as u16) * 16,
            connected: None,
            waiting: None,
            line: Vec::new(),
            next_at: 2_000 + rng.below(3_000),
        }
    }

    fn step(&mut self, now: u64, end: u64, rng: &mut Rng, obs: &mut Observed) -> Vec<Vec<u8>> {
        let t = Instant::from_micros(now as i64);
        self.iface.poll(t, &mut self.dev, &mut self.sockets);
        self.read_replies(now, obs);
        let state = self.sockets.get::<tcp::Socket>(self.sock).state();
        let stalled = match self.connected {
            None => false,
            Some(at) => match state {
                tcp::State::Established => self.waiting.is_some_and(|w| now - w.since >= GIVE_UP),
                tcp::State::SynSent | tcp::State::SynReceived => now - at >= GIVE_UP,
                // The guest closed or reset the connection.
                _ => true,
            },
        };
        if stalled {
            self.give_up();
            self.next_at = now + THINK;
        }
        if self.connected.is_none() && now >= self.next_at {
            self.connect(now);
        }
        let s = self.sockets.get_mut::<tcp::Socket>(self.sock);
        if self.waiting.is_none()
            && s.state() == tcp::State::Established
            && s.can_send()
            && now >= self.next_at
            && now + 50_000 < end
        {
            let op = if rng.chance(700) { Op::Inc } else { Op::Get };
            let line: &[u8] = if op == Op::Inc { b"inc\n" } else { b"get\n" };
            if s.send_slice(line) == Ok(line.len()) {
                let index = obs.call(self.id, op, now);
                self.waiting = Some(Waiting {
                    op,
                    index,
                    since: now,
                });
            }
        }
        self.iface.poll(t, &mut self.dev, &mut self.sockets);
        std::mem::take(&mut self.dev.tx)
    }

    fn receive(&mut self, _now: u64, frame: Vec<u8>, _obs: &mut Observed) {
        self.dev.rx.push_back(frame);
    }
}
