//! Test hosts on one machine (issue 13 item 1). Each host is a network namespace
//! (`ip netns`) with one address, 10.78.0.N, on its loopback device; every pair of
//! hosts is joined by a veth link of its own, routed to the peer's address only. So
//! a partition is exact: cutting the link a–b separates a from b and nothing else.
//!
//! - [`Hosts::kill`] is a silent host death: the host's links go down first (no FIN,
//!   no RST leaves), then every process in its namespace gets SIGKILL.
//! - [`Hosts::isolate`] cuts all of a host's links while its processes run on.
//! - [`Hosts::command`] runs a program on a host; [`Hosts::enter`] moves the calling
//!   thread onto it (its sockets, and the processes it starts, live there).
//!
//! Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2. `ftvm hosts` is the same
//! from a shell.

pub mod etcd;

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::{Command, Stdio};

/// Whether this process may make hosts (it runs as root).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A TCP port on 127.0.0.1 for a server a test starts: each handed out once per process
/// (two calls never return the same port, so tests running at once cannot start two
/// servers on one port and reach the wrong one) and below the kernel's ephemeral range
/// (32768 and up), so no outgoing connection takes it before the server binds it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Test binaries running at once start at different points of the range.
    let _ = NEXT.compare_exchange(0, (std::process::id() * 97) % SPAN + 1, SeqCst, SeqCst);
    loop {
        let port = (LOW + NEXT.fetch_add(1, SeqCst) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Whether something listens on TCP `port` in the network namespace of process `pid`
/// (of the calling thread if `None`), read from its /proc view: a probe connection
/// would have to run on that host, and would use up a one-client server.
pub fn listening(pid: Option<u32>, port: u16) -> bool {
    let path = match pid {
        Some(p) => format!("/proc/{p}/net/tcp"),
        None => "/proc/thread-self/net/tcp".to_string(),
    };
    let want = format!(":{port:04X}");
    std::fs::read_to_string(path).is_ok_and(|tcp| {
        tcp.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
        })
    })
}

/// The most hosts a set may have.
pub const MAX_HOSTS: usize = 32;

/// A set of hosts; those made by [`Hosts::create`] are deleted when it is dropped.
#[derive(Debug)]
pub struct Hosts {
    prefix: String,
    names: Vec<String>,
    owned: bool,
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::other(format!("cannot run ip (iproute2): {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

fn check_name(name: &str) -> io::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 12
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "host name '{name}': use 1 to 12 lowercase letters and digits"
        )))
    }
}

impl Hosts {
    /// Make the hosts `names` as namespaces `PREFIX-NAME`, each pair linked. Any left
    /// over from an earlier run under the same prefix are replaced.
    pub fn create(prefix: &str, names: &[&str]) -> io::Result<Hosts> {
        let hosts = Hosts::attach(prefix, names)?;
        hosts.destroy();
        let mut hosts = hosts;
        hosts.owned = true;
        for (i, h) in hosts.names.iter().enumerate() {
            let ns = hosts.ns(h);
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/32", addr(i)),
                "dev",
                "lo",
            ])?;
        }
        for (i, a) in hosts.names.iter().enumerate() {
            for (j, b) in hosts.names.iter().enumerate().skip(i + 1) {
                let (na, nb) = (hosts.ns(a), hosts.ns(b));
                let (da, db) = (dev(b), dev(a));
                ip(&[
                    "link", "add", &da, "netns", &na, "type", "veth", "peer", "name", &db, "netns",
                    &nb,
                ])?;
                for (ns, d, me, peer) in [(&na, &da, i, j), (&nb, &db, j, i)] {
                    ip(&["-n", ns, "link", "set", d, "up"])?;
                    ip(&[
                        "-n",
                        ns,
                        "route",
                        "add",
                        &format!("{}/32", addr(peer)),
                        "dev",
                        d,
                        "src",
                        &addr(me).to_string(),
                    ])?;
                }
            }
        }
        std::fs::create_dir_all(ROSTERS)?;
        std::fs::write(roster(prefix), hosts.names.join("\n") + "\n")?;
        Ok(hosts)
    }

    /// The hosts made earlier under `prefix` (by [`Hosts::create`], in this or another
    /// process), not deleted on drop.
    pub fn find(prefix: &str) -> io::Result<Hosts> {
        check_name(prefix)?;
        let list = std::fs::read_to_string(roster(prefix)).map_err(|e| {
            io::Error::other(format!(
                "no hosts under the prefix '{prefix}' ({e}); make them with `ftvm hosts up`"
            ))
        })?;
        let names: Vec<&str> = list.lines().filter(|l| !l.is_empty()).collect();
        Hosts::attach(prefix, &names)
    }

    /// Keep the hosts after this handle is dropped (delete them with
    /// [`Hosts::destroy`], or `ftvm hosts down`).
    pub fn keep(mut self) -> Hosts {
        self.owned = false;
        self
    }

    /// The hosts' names, in order (host `i` has the address 10.78.0.`i+1`).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The hosts `names` made earlier under `prefix` (not deleted on drop).
    pub fn attach(prefix: &str, names: &[&str]) -> io::Result<Hosts> {
        check_name(prefix)?;
        if names.is_empty() || names.len() > MAX_HOSTS {
            return Err(io::Error::other(format!(
                "give 1 to {MAX_HOSTS} host names"
            )));
        }
        for (i, n) in names.iter().enumerate() {
            check_name(n)?;
            if names[..i].contains(n) {
                return Err(io::Error::other(format!("host '{n}' is named twice")));
            }
        }
        Ok(Hosts {
            prefix: prefix.to_string(),
            names: names.iter().map(|s| s.to_string()).collect(),
            owned: false,
        })
    }

    /// Another handle on the same hosts (one that does not delete them), e.g. for a
    /// thread that moves onto one.
    pub fn share(&self) -> Hosts {
        Hosts {
            prefix: self.prefix.clone(),
            names: self.names.clone(),
            owned: false,
        }
    }

    fn index(&self, host: &str) -> usize {
        self.names
            .iter()
            .position(|n| n == host)
            .unwrap_or_else(|| panic!("no host '{host}' among {:?}", self.names))
    }

    /// The namespace of `host`.
    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    /// The address of `host`, reachable from every other host while their link is up.
    pub fn addr(&self, host: &str) -> Ipv4Addr {
        addr(self.index(host))
    }

    /// A command that runs `program` on `host`.
    pub fn command(&self, host: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(host), program]);
        c
    }

    /// Move the calling thread onto `host`.
    pub fn enter(&self, host: &str) -> io::Result<()> {
        let f = std::fs::File::open(format!("/run/netns/{}", self.ns(host)))?;
        rustix::thread::move_into_link_name_space(
            f.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        Ok(())
    }

    fn link(&self, a: &str, b: &str, up: bool) -> io::Result<()> {
        let state = if up { "up" } else { "down" };
        // Both ends: a link that is down on one side only still carries nothing, but
        // the peer would see its carrier go and could report it.
        ip(&["-n", &self.ns(a), "link", "set", &dev(b), state])?;
        ip(&["-n", &self.ns(b), "link", "set", &dev(a), state])?;
        if up {
            for (x, y) in [(a, b), (b, a)] {
                // Taking a device down drops its routes: put them back.
                let r = ip(&[
                    "-n",
                    &self.ns(x),
                    "route",
                    "replace",
                    &format!("{}/32", self.addr(y)),
                    "dev",
                    &dev(y),
                    "src",
                    &self.addr(x).to_string(),
                ]);
                r?;
            }
        }
        Ok(())
    }

    /// Cut the link between `a` and `b`: packets stop, nothing tells either side.
    pub fn cut(&self, a: &str, b: &str) -> io::Result<()> {
        self.link(a, b, false)
    }

    /// Heal the link between `a` and `b`.
    pub fn heal(&self, a: &str, b: &str) -> io::Result<()> {
        self.link(a, b, true)
    }

    /// Cut every link of `host` (its LAN port too); its processes run on.
    pub fn isolate(&self, host: &str) -> io::Result<()> {
        for other in self.names.iter().filter(|n| *n != host) {
            self.cut(host, other)?;
        }
        if self.on_lan(host) {
            ip(&["-n", &self.ns(host), "link", "set", LAN, "down"])?;
        }
        Ok(())
    }

    /// Heal every link of `host`.
    pub fn rejoin(&self, host: &str) -> io::Result<()> {
        for other in self.names.iter().filter(|n| *n != host) {
            self.heal(host, other)?;
        }
        if self.on_lan(host) {
            ip(&["-n", &self.ns(host), "link", "set", LAN, "up"])?;
        }
        Ok(())
    }

    fn on_lan(&self, host: &str) -> bool {
        Command::new("ip")
            .args(["-n", &self.ns(host), "link", "show", LAN])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Plug `host` into a LAN: a Linux bridge `lan` on `hub` (made on first use) and,
    /// on `host`, the device `lan` with the address `addr` (e.g. "10.0.2.100/24") — or,
    /// with `tap`, a bridge `br0` holding `lan` and a TAP device `tap0` for a guest's
    /// NIC (`--tap tap0`). The link goes down with [`Hosts::isolate`] and
    /// [`Hosts::kill`].
    pub fn lan(&self, hub: &str, host: &str, addr: Option<&str>, tap: bool) -> io::Result<()> {
        let (nh, nx) = (self.ns(hub), self.ns(host));
        if ip(&["-n", &nh, "link", "show", LAN]).is_err() {
            ip(&["-n", &nh, "link", "add", LAN, "type", "bridge"])?;
            ip(&["-n", &nh, "link", "set", LAN, "up"])?;
        }
        let port = format!("lan-{host}");
        ip(&[
            "link", "add", LAN, "netns", &nx, "type", "veth", "peer", "name", &port, "netns", &nh,
        ])?;
        ip(&["-n", &nh, "link", "set", &port, "master", LAN, "up"])?;
        if tap {
            ip(&["-n", &nx, "link", "add", "br0", "type", "bridge"])?;
            ip(&["-n", &nx, "link", "set", LAN, "master", "br0"])?;
            ip(&["-n", &nx, "tuntap", "add", "dev", "tap0", "mode", "tap"])?;
            ip(&["-n", &nx, "link", "set", "tap0", "master", "br0", "up"])?;
            ip(&["-n", &nx, "link", "set", "br0", "up"])?;
        }
        if let Some(a) = addr {
            ip(&["-n", &nx, "addr", "add", a, "dev", LAN])?;
        }
        ip(&["-n", &nx, "link", "set", LAN, "up"])
    }

    /// The processes running on `host`.
    pub fn pids(&self, host: &str) -> io::Result<Vec<i32>> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.ns(host)])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// A silent host death: every link of `host` down, then SIGKILL to each of its
    /// processes. Returns how many were killed.
    pub fn kill(&self, host: &str) -> io::Result<usize> {
        self.isolate(host)?;
        let pids = self.pids(host)?;
        for &p in &pids {
            if let Some(pid) = rustix::process::Pid::from_raw(p) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        Ok(pids.len())
    }

    /// Kill what runs on the hosts and delete their namespaces (quietly: some may not
    /// exist).
    pub fn destroy(&self) {
        for h in &self.names {
            if std::path::Path::new(&format!("/run/netns/{}", self.ns(h))).exists() {
                let _ = self.kill(h);
                let _ = ip(&["netns", "delete", &self.ns(h)]);
            }
        }
        let _ = std::fs::remove_file(roster(&self.prefix));
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        if self.owned {
            self.destroy();
        }
    }
}

/// A host's LAN device ([`Hosts::lan`]).
const LAN: &str = "lan";

/// Where each set's host names are kept, in order, for [`Hosts::find`].
const ROSTERS: &str = "/run/ftvm-hosts";

fn roster(prefix: &str) -> String {
    format!("{ROSTERS}/{prefix}")
}

/// Host `i`'s address.
fn addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 78, 0, i as u8 + 1)
}

/// The device, on each host, of its link to `peer`.
fn dev(peer: &str) -> String {
    format!("to-{peer}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    fn connects(h: &Hosts, from: &str, to: &str, port: u16) -> bool {
        let names: Vec<&str> = h.names.iter().map(String::as_str).collect();
        let hosts = Hosts::attach(&h.prefix, &names).unwrap();
        let (from, addr) = (from.to_string(), h.addr(to));
        std::thread::spawn(move || {
            hosts.enter(&from).unwrap();
            TcpStream::connect_timeout(&(addr, port).into(), Duration::from_millis(300)).is_ok()
        })
        .join()
        .unwrap()
    }

    #[test]
    fn links_carry_traffic_until_cut_and_a_killed_host_says_nothing() {
        let prefix = format!("ht{}", std::process::id() % 1_000_000);
        let names = ["a", "b", "c"];
        let h = Hosts::create(&prefix, &names).unwrap();
        // A server on b, in a thread that moved there.
        let hb = Hosts::attach(&prefix, &names).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            hb.enter("b").unwrap();
            let l = TcpListener::bind(("0.0.0.0", 7000)).unwrap();
            tx.send(()).unwrap();
            for s in l.incoming() {
                drop(s);
            }
        });
        rx.recv().unwrap();
        assert!(connects(&h, "a", "b", 7000));
        assert!(connects(&h, "c", "b", 7000));
        h.cut("a", "b").unwrap();
        assert!(
            !connects(&h, "a", "b", 7000),
            "a reaches b across a cut link"
        );
        assert!(connects(&h, "c", "b", 7000), "the cut took more than a–b");
        h.heal("a", "b").unwrap();
        assert!(connects(&h, "a", "b", 7000));

        // A process on c serving a connection from a; then c dies silently: a's
        // read times out instead of seeing the connection end.
        let server = "import socket,time\nl=socket.socket()\nl.bind(('0.0.0.0',7001))\nl.listen()\nc,_=l.accept()\nc.sendall(b'hi')\ntime.sleep(60)";
        let mut py = h
            .command("c", "python3")
            .args(["-c", server])
            .spawn()
            .unwrap();
        let ha = Hosts::attach(&prefix, &names).unwrap();
        let addr = h.addr("c");
        let mut conn = std::thread::spawn(move || {
            ha.enter("a").unwrap();
            for _ in 0..100 {
                if let Ok(mut s) = TcpStream::connect((addr, 7001)) {
                    let mut b = [0u8; 2];
                    s.read_exact(&mut b).unwrap();
                    return s;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            panic!("the server on c never answered");
        })
        .join()
        .unwrap();
        assert_eq!(h.kill("c").unwrap(), 1);
        assert!(py.wait().unwrap().code().is_none(), "killed by a signal");
        conn.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut b = [0u8; 1];
        let e = conn
            .read(&mut b)
            .expect_err("the dead host's FIN or RST got out");
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{e}"
        );
        conn.write_all(b"x").unwrap(); // into the void: nothing answers
        assert!(!connects(&h, "a", "c", 7001));
        drop(h);
        assert!(!std::path::Path::new(&format!("/run/netns/{prefix}-a")).exists());
    }
}
