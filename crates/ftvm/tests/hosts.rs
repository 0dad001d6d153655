//! The FT pair on separate hosts (issue 13 item 1): every process in a network
//! namespace of its own (crates/hosts), joined by links that can be cut, hosts that
//! die silently — no FIN, no RST, only silence, as when a machine loses power.
//!
//! Hosts: `infra` (the switch and the arbiter), `p` and `b` (the pair), `client`.

mod common;
use common::*;
use ftvm_hosts::etcd::Members;
use ftvm_hosts::Hosts;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// One test at a time: each boots guests on this machine's two cores.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

const NAMES: [&str; 5] = ["infra", "p", "b", "client", "storage"];
/// The NBD server's port on `storage`.
const NBD: u16 = 10809;
/// The hosts of an etcd cluster's members, with [`Site::with_etcd`].
const ETCD: [&str; 3] = ["e1", "e2", "e3"];
const SWITCH: u16 = 7700;
const ARBITER: u16 = 7701;
const NODE: u16 = 7702;
const FORWARD: u16 = 7777;

/// A VM `t` whose processes run on the hosts.
struct Site {
    hosts: Hosts,
    dir: PathBuf,
    /// The etcd cluster that is the arbiter, if not the embedded one.
    etcd: Option<Members>,
    /// The guest's LAN is a bridge with a TAP device on each node's host.
    tap: bool,
    /// The guest's disk (the counter in disk mode) on qemu-nbd on `storage`: the image
    /// and the nodes' `--disk`.
    disk: Option<(PathBuf, String)>,
    procs: Vec<(String, Child)>,
}

impl Site {
    fn new(tag: &str) -> Site {
        Site::make(tag, false, false)
    }

    /// A site whose guest LAN is a Linux bridge (on `infra`): the nodes put the guest's
    /// NIC on a TAP device of their own host, bridged to it, and the client on it
    /// talks to the guest's address directly.
    fn with_tap(tag: &str) -> Site {
        Site::make(tag, false, true)
    }

    /// A site whose arbiter is an etcd cluster of three members on hosts of their own.
    fn with_etcd(tag: &str) -> Site {
        Site::make(tag, true, false)
    }

    fn make(tag: &str, etcd: bool, tap: bool) -> Site {
        let prefix = format!("{tag}{}", std::process::id() % 100_000);
        let names: Vec<&str> = NAMES
            .iter()
            .chain(if etcd { &ETCD[..] } else { &[] })
            .copied()
            .collect();
        let hosts = Hosts::create(&prefix, &names).expect("making the hosts (needs root)");
        let dir = scratch(&format!("hosts-{tag}"));
        let keys = dir.join("keys");
        let _ = std::fs::remove_dir_all(&keys);
        let k = keys.to_str().unwrap();
        for args in [
            &[
                "keys", "--dir", k, "--ca", "--node", "arbiter", "--node", "switch",
            ][..],
            &[
                "keys", "--dir", k, "--node", "p", "--node", "b", "--vm", "t",
            ][..],
        ] {
            let made = ftvm(args);
            assert!(made.status.success(), "{made:?}");
        }
        let etcd = etcd.then(|| Members::start(&hosts, &ETCD, &dir.join("etcd")).unwrap());
        if tap {
            for node in ["p", "b"] {
                hosts.lan("infra", node, None, true).unwrap();
            }
            hosts
                .lan("infra", "client", Some("10.0.2.100/24"), false)
                .unwrap();
        }
        let mut s = Site {
            hosts,
            dir,
            etcd,
            tap,
            disk: None,
            procs: Vec::new(),
        };
        let infra = s.addr("infra");
        let (sw, arb) = (format!("{infra}:{SWITCH}"), format!("{infra}:{ARBITER}"));
        let fwd = format!("tcp:{infra}:{FORWARD}-:7777");
        let state = s.dir.join("arbiter.state").display().to_string();
        s.spawn(
            "infra",
            "switch",
            &[
                "switch",
                "--listen",
                &sw,
                "--hostfwd",
                &fwd,
                "--tls",
                k,
                "--vm",
                "t=52:54:00:12:34:56",
            ],
        );
        s.spawn(
            "infra",
            "arbiter",
            &["arbiter", "--listen", &arb, "--state", &state, "--tls", k],
        );
        s.wait_listening("switch", SWITCH);
        s.wait_listening("arbiter", ARBITER);
        s
    }

    /// Wait until the process `name` listens on `port` (read from its own view of
    /// the network, /proc/PID/net/tcp: it is on another host).
    fn wait_listening(&self, name: &str, port: u16) {
        let pid = self
            .procs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .unwrap()
            .1
            .id();
        let t = Instant::now();
        loop {
            if ftvm_hosts::listening(Some(pid), port) {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{name} never listened on {port}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn addr(&self, host: &str) -> Ipv4Addr {
        self.hosts.addr(host)
    }

    fn spawn(&mut self, host: &str, name: &str, args: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .unwrap();
        let child = self
            .hosts
            .command(host, env!("CARGO_BIN_EXE_ftvm"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.procs.push((name.into(), child));
    }

    /// The node arguments of `name`, which runs on the host of the same name.
    fn node_args(&self, name: &str) -> Vec<String> {
        let infra = self.addr("infra");
        [
            "--vm".to_string(),
            "t".into(),
            "--name".into(),
            name.into(),
            "--listen".into(),
            format!("{}:{NODE}", self.addr(name)),
            "--arbiter".into(),
            match &self.etcd {
                Some(e) => e.url(),
                None => format!("{infra}:{ARBITER}"),
            },
            "--run-dir".into(),
            self.dir.join("run").display().to_string(),
            "--tls".into(),
            self.dir.join("keys").display().to_string(),
        ]
        .into()
    }

    /// Put the counter on a disk served by qemu-nbd from `storage` (before the pair).
    fn serve_disk(&mut self) {
        let img = self.dir.join("counter.img");
        std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
        self.start_nbd(&img);
        let spec = format!("nbd://{}:{NBD}/disk", self.addr("storage"));
        self.disk = Some((img, spec));
    }

    /// qemu-nbd on `storage` (again, after the host came back).
    fn start_nbd(&mut self, img: &std::path::Path) {
        let ip = self.addr("storage").to_string();
        let log = std::fs::File::create(self.dir.join("nbd.log")).unwrap();
        let child = self
            .hosts
            .command("storage", "qemu-nbd")
            .args(["-f", "raw", "-x", "disk", "-b", &ip, "-p", &NBD.to_string()])
            .args(["-t", "--shared=8"])
            .arg(img)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("qemu-nbd (scripts/install-deps installs qemu-utils)");
        self.procs.push(("nbd".into(), child));
        self.wait_listening("nbd", NBD);
    }

    fn primary(&mut self, name: &str) {
        let (k, i) = linux_guest();
        let mut a: Vec<String> = [
            "primary",
            "--kernel",
            k.to_str().unwrap(),
            "--initrd",
            i.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some((_, spec)) = &self.disk {
            a.extend(["--disk".into(), spec.clone()]);
            a.extend(["--append".into(), "console=ttyS0 mode=disk".into()]);
        }
        match self.tap {
            true => a.extend(["--tap".into(), "tap0".into()]),
            false => a.extend([
                "--switch".into(),
                format!("{}:{SWITCH}", self.addr("infra")),
            ]),
        }
        a.extend(self.node_args(name));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        self.spawn(name, name, &a);
    }

    /// A backup `name` of the primary running on `of`.
    fn backup(&mut self, name: &str, of: &str) {
        let mut a = vec![
            "backup".to_string(),
            "--primary".into(),
            format!("{}:{NODE}", self.addr(of)),
        ];
        if self.tap {
            a.extend(["--tap".into(), "tap0".into()]);
        }
        a.extend(self.node_args(name));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        self.spawn(name, name, &a);
    }

    fn state(&self, name: &str) -> (String, String) {
        let s = std::fs::read_to_string(self.dir.join("run").join(format!("t.{name}.json")))
            .unwrap_or_default();
        role_and_state(&s)
    }

    fn wait_state(&self, name: &str, role: &str, state: &str, limit: Duration) {
        let t = Instant::now();
        while self.state(name) != (role.to_string(), state.to_string()) {
            assert!(
                t.elapsed() < limit,
                "{name} never became {role}/{state}: {:?}\n{}",
                self.state(name),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    fn logs(&self) -> String {
        ["switch", "arbiter", "p", "b"]
            .iter()
            .map(|n| format!("--- {n}\n{}", self.log(n)))
            .collect()
    }

    /// The exit code of the newest process `name`, waiting up to `limit`.
    fn exit_code(&mut self, name: &str, limit: Duration) -> Option<i32> {
        let t = Instant::now();
        let c = &mut self
            .procs
            .iter_mut()
            .rev()
            .find(|(n, _)| n == name)
            .unwrap()
            .1;
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s.code();
            }
            if t.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The host of the primary `dead` dies silently; `survivor`, its backup, goes live.
    /// Returns when the host died.
    fn kill_primary_host(&mut self, dead: &str, survivor: &str) -> Instant {
        let t = Instant::now();
        self.hosts.kill(dead).unwrap();
        self.wait_state(survivor, "primary", "unprotected", Duration::from_secs(30));
        t
    }

    /// The dead host `host` comes back empty and joins the primary `of` as its backup.
    fn rejoin_as_backup(&mut self, host: &str, of: &str) {
        self.hosts.rejoin(host).unwrap();
        self.backup(host, of);
        self.wait_state(of, "primary", "protected", Duration::from_secs(90));
    }

    /// A pair: primary `p`, backup `b`, protected.
    fn pair(&mut self) -> Client {
        self.primary("p");
        let client = Client::start(self);
        self.backup("b", "p");
        self.wait_state("p", "primary", "protected", Duration::from_secs(90));
        client
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        for (_, c) in &mut self.procs {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A client on host `client`: one TCP connection through the switch, `inc` after
/// `inc`, each reply recorded with when it came.
struct Client {
    replies: Arc<Mutex<Vec<(Instant, u64)>>>,
    stop: Arc<AtomicBool>,
    /// Why the client stopped, if it did on its own.
    error: Arc<Mutex<String>>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Client {
    fn start(site: &Site) -> Client {
        let hosts = site.hosts.share();
        let to = match site.tap {
            true => (Ipv4Addr::new(10, 0, 2, 15), 7777),
            false => (site.addr("infra"), FORWARD),
        };
        let replies = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (replies.clone(), stop.clone());
        let error = Arc::new(Mutex::new(String::from("running")));
        let err = error.clone();
        let thread = std::thread::spawn(move || {
            let r = Client::run(hosts, to, r, s);
            if let Err(e) = &r {
                *err.lock().unwrap() = e.clone();
            }
            r
        });
        let c = Client {
            replies,
            stop,
            error,
            thread: Some(thread),
        };
        c.wait_replies(1, Duration::from_secs(120), site);
        c
    }

    fn run(
        hosts: Hosts,
        to: (Ipv4Addr, u16),
        r: Arc<Mutex<Vec<(Instant, u64)>>>,
        s: Arc<AtomicBool>,
    ) -> Result<(), String> {
        {
            hosts.enter("client").unwrap();
            // The guest boots first: connect once it answers.
            let t = Instant::now();
            let conn = loop {
                match TcpStream::connect_timeout(&to.into(), Duration::from_secs(1)) {
                    Ok(c) => break c,
                    Err(_) if t.elapsed() < Duration::from_secs(120) => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    Err(e) => return Err(format!("the guest never answered: {e}")),
                }
            };
            conn.set_read_timeout(Some(Duration::from_secs(15)))
                .unwrap();
            let mut w = conn.try_clone().unwrap();
            let mut rd = BufReader::new(conn);
            while !s.load(Ordering::Relaxed) {
                w.write_all(b"inc\n").map_err(|e| format!("send: {e}"))?;
                let mut l = String::new();
                rd.read_line(&mut l).map_err(|e| format!("reply: {e}"))?;
                let v: u64 = l.trim().parse().map_err(|_| format!("bad reply {l:?}"))?;
                r.lock().unwrap().push((Instant::now(), v));
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        }
    }

    fn count(&self) -> usize {
        self.replies.lock().unwrap().len()
    }

    /// Wait until `n` more replies came than now.
    fn wait_replies(&self, n: usize, limit: Duration, site: &Site) {
        let (start, t) = (self.count(), Instant::now());
        while self.count() < start + n {
            let done = self.thread.as_ref().is_some_and(|t| t.is_finished());
            assert!(
                !done && t.elapsed() < limit,
                "the client got no reply for {:?} (client: {})\n{}",
                t.elapsed(),
                self.error.lock().unwrap(),
                site.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stop; assert every reply was the one before plus one (nothing acknowledged lost,
    /// nothing served twice, the one connection survived). Returns the replies.
    fn finish(mut self, site: &Site) -> Vec<(Instant, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        let r = self.thread.take().unwrap().join().unwrap();
        assert_eq!(r, Ok(()), "{}", site.logs());
        let replies = self.replies.lock().unwrap().clone();
        for w in replies.windows(2) {
            assert_eq!(
                w[1].1,
                w[0].1 + 1,
                "a reply lost or repeated\n{}",
                site.logs()
            );
        }
        replies
    }
}

/// How long the client went without a reply from a failure at `t` on: the longest
/// wait between consecutive replies (counted from `t` if the first came before it)
/// in the 10 s after it. A reply already on its way at `t` does not end the outage.
fn outage(replies: &[(Instant, u64)], t: Instant) -> Duration {
    replies
        .windows(2)
        .filter(|w| w[1].0 > t && w[0].0 < t + Duration::from_secs(10))
        .map(|w| w[1].0 - w[0].0.max(t))
        .max()
        .expect("no reply after the failure")
}

#[test]
fn silent_deaths_of_the_primarys_host_fail_over_and_lose_nothing() {
    let _one = serial();
    // scripts/bench-hosts runs it with either arbiter, and on either LAN.
    let mut site = match (
        std::env::var("FTVM_HOST_ARBITER").as_deref(),
        std::env::var("FTVM_HOST_LAN").as_deref(),
    ) {
        (Ok("etcd"), _) => Site::with_etcd("hd"),
        (_, Ok("tap")) => Site::with_tap("hd"),
        _ => Site::new("hd"),
    };
    let client = site.pair();
    let trials: usize = std::env::var("FTVM_HOST_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let (mut primary, mut backup) = ("p", "b");
    let mut kills = Vec::new();
    for trial in 0..trials {
        client.wait_replies(20, Duration::from_secs(30), &site);
        kills.push(site.kill_primary_host(primary, backup));
        client.wait_replies(20, Duration::from_secs(30), &site);
        if trial + 1 < trials {
            site.rejoin_as_backup(primary, backup);
            std::mem::swap(&mut primary, &mut backup);
        }
    }
    let replies = client.finish(&site);
    for (i, t) in kills.iter().enumerate() {
        // Read by scripts/bench-hosts.
        eprintln!(
            "hosts: silent host death {i}: no reply for {} ms",
            outage(&replies, *t).as_millis()
        );
    }
}

#[test]
fn a_silent_death_of_the_backups_host_leaves_the_primary_serving() {
    let _one = serial();
    let mut site = Site::new("hb");
    let client = site.pair();
    client.wait_replies(20, Duration::from_secs(30), &site);
    site.hosts.kill("b").unwrap();
    site.wait_state("p", "primary", "unprotected", Duration::from_secs(30));
    client.wait_replies(20, Duration::from_secs(30), &site);
    client.finish(&site);
    assert!(site.log("p").contains("won generation"), "{}", site.logs());
}

#[test]
fn a_partition_between_primary_and_backup_leaves_exactly_one_live() {
    let _one = serial();
    // With the embedded arbiter, then with etcd.
    for mut site in [Site::new("hp"), Site::with_etcd("hq")] {
        let client = site.pair();
        client.wait_replies(20, Duration::from_secs(30), &site);
        // Both still reach the arbiter and the switch; only their link is cut.
        site.hosts.cut("p", "b").unwrap();
        let t = Instant::now();
        let (halted, live) = loop {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "nobody halted\n{}",
                site.logs()
            );
            if site.exit_code("p", Duration::ZERO).is_some() {
                break ("p", "b");
            }
            if site.exit_code("b", Duration::ZERO).is_some() {
                break ("b", "p");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(
            site.exit_code(halted, Duration::ZERO),
            Some(3),
            "{}",
            site.logs()
        );
        site.wait_state(live, "primary", "unprotected", Duration::from_secs(30));
        client.wait_replies(20, Duration::from_secs(30), &site);
        site.hosts.heal("p", "b").unwrap();
        client.wait_replies(10, Duration::from_secs(30), &site);
        assert!(
            site.exit_code(live, Duration::ZERO).is_none(),
            "both ended\n{}",
            site.logs()
        );
        client.finish(&site);
    }
}

#[test]
fn a_storage_host_that_dies_silently_and_returns_loses_no_acknowledged_write() {
    let _one = serial();
    let mut site = Site::new("hn");
    site.serve_disk();
    let client = site.pair();
    client.wait_replies(20, Duration::from_secs(30), &site);
    // The NBD server's host dies silently; a second later it is back, its image intact.
    site.hosts.kill("storage").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    site.hosts.rejoin("storage").unwrap();
    let img = site.disk.as_ref().unwrap().0.clone();
    site.start_nbd(&img);
    // Service resumes on the same connection, from the same primary: the stalled disk
    // request stalled only the guest's I/O (the disk has a thread of its own), the
    // heartbeats went on, so the backup saw nothing wrong.
    client.wait_replies(20, Duration::from_secs(60), &site);
    site.wait_state("p", "primary", "protected", Duration::from_secs(10));
    assert!(
        !site.log("b").contains("live as the primary"),
        "a storage blip made the backup take over\n{}",
        site.logs()
    );
    let replies = client.finish(&site);
    let last = replies.last().unwrap().1;
    // Every increment is on the disk before its reply leaves.
    let disk = std::fs::read(&img).unwrap();
    assert_eq!(&disk[..8], b"FTVMCTR1");
    let on_disk = u64::from_le_bytes(disk[8..16].try_into().unwrap());
    assert!(
        on_disk >= last,
        "the disk holds {on_disk}, the client saw {last}\n{}",
        site.logs()
    );
}

#[test]
fn a_primary_cut_off_from_everything_never_serves_again() {
    let _one = serial();
    let mut site = Site::new("hi");
    let client = site.pair();
    client.wait_replies(20, Duration::from_secs(30), &site);
    // p keeps running, alone: no backup, no arbiter, no switch.
    site.hosts.isolate("p").unwrap();
    site.wait_state("b", "primary", "unprotected", Duration::from_secs(30));
    client.wait_replies(20, Duration::from_secs(30), &site);
    assert!(
        site.exit_code("p", Duration::ZERO).is_none(),
        "p should wait for the arbiter"
    );
    // Back on the network, it learns it lost and halts; the client never saw it.
    site.hosts.rejoin("p").unwrap();
    assert_eq!(
        site.exit_code("p", Duration::from_secs(30)),
        Some(3),
        "{}",
        site.logs()
    );
    client.wait_replies(10, Duration::from_secs(30), &site);
    client.finish(&site);
    assert!(site.log("p").contains("halts"), "{}", site.log("p"));
}

#[test]
fn a_pair_on_etcd_fails_over_with_a_member_down_and_never_without_a_majority() {
    let _one = serial();
    let mut site = Site::with_etcd("he");
    let client = site.pair();
    client.wait_replies(20, Duration::from_secs(30), &site);
    // One etcd member's host dies silently, then the primary's: two members decide.
    site.hosts.kill("e3").unwrap();
    site.kill_primary_host("p", "b");
    client.wait_replies(20, Duration::from_secs(30), &site);
    site.rejoin_as_backup("p", "b");
    client.wait_replies(20, Duration::from_secs(30), &site);
    // A second member goes: no majority. The primary's host dies too; its backup
    // must not go live while etcd cannot decide, and the client hears nothing.
    site.hosts.kill("e2").unwrap();
    site.hosts.kill("b").unwrap();
    let before = client.count();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        site.state("p").0,
        "backup",
        "live without a decision\n{}",
        site.logs()
    );
    assert!(
        client.count() <= before + 1,
        "served without a live primary"
    );
    // The member returns: the backup wins and the same connection goes on.
    site.hosts.rejoin("e2").unwrap();
    site.etcd.as_mut().unwrap().restart("e2").unwrap();
    site.wait_state("p", "primary", "unprotected", Duration::from_secs(30));
    client.wait_replies(20, Duration::from_secs(30), &site);
    client.finish(&site);
}

#[test]
fn a_guest_on_a_bridged_tap_device_keeps_its_client_across_silent_host_deaths() {
    let _one = serial();
    let mut site = Site::with_tap("ht");
    let client = site.pair();
    client.wait_replies(20, Duration::from_secs(30), &site);
    // The primary's host dies silently; the backup's gratuitous ARP moves the guest's
    // MAC to its own port in the LAN bridge, and the client's connection goes on.
    site.kill_primary_host("p", "b");
    client.wait_replies(20, Duration::from_secs(30), &site);
    // And back: p rejoins as the backup, then b's host dies.
    site.rejoin_as_backup("p", "b");
    site.kill_primary_host("b", "p");
    client.wait_replies(20, Duration::from_secs(30), &site);
    client.finish(&site);
    assert!(
        site.log("p").contains("TAP device tap0"),
        "{}",
        site.log("p")
    );
}
