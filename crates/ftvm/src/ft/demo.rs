//! `ftvm demo` (issue 5 §9): the whole system on one machine. It starts the switch, the
//! arbiter, a primary, a backup and a spare (each its own `ftvm` process), runs a client
//! that keeps incrementing the guest's counter over one TCP connection, kills the
//! primary with SIGKILL mid-stream, and checks that the backup took over without
//! losing an acknowledged increment, that the connection lived, and that the spare
//! became the new backup. Exit status 1 if anything was lost. With `--hosts` every part
//! runs on a host of its own ([`DemoHosts`]) and a kill is a silent host death.

use super::status::Status;
use crate::cli::DemoArgs;
use anyhow::{bail, Context, Result};
use ftvm_hosts::etcd::Members;
use ftvm_hosts::Hosts;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Node slots: a primary, a backup and a spare; a killed node's slot is refilled by a
/// fresh spare (a repaired host).
const SLOTS: [&str; 3] = ["A", "B", "C"];

/// Where a node listens on its host (with `--hosts`).
const NODE_PORT: u16 = 7702;
/// The NBD server's port on the storage host.
const NBD_PORT: u16 = 10809;
/// The guest's address on the LAN (guest/linux/init/net.c, the Debian image's too).
const GUEST_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 2, 15);

/// `--hosts`: every part on a host of its own (crates/hosts) — nodes a, b, c whose
/// guest NIC is a TAP device bridged to a LAN on `infra`, an etcd cluster on e1–e3 as
/// the arbiter, the disk behind qemu-nbd on `storage`, the client on the LAN.
struct DemoHosts {
    hosts: Hosts,
    etcd: Members,
    nbd: std::cell::RefCell<Option<Proc>>,
}

impl DemoHosts {
    fn start(dir: &Path, t0: Instant) -> Result<DemoHosts> {
        if !ftvm_hosts::is_root() {
            bail!("--hosts makes network namespaces: run it as root");
        }
        let prefix = format!("demo{}", std::process::id() % 100_000);
        let names = [
            "infra", "a", "b", "c", "storage", "e1", "e2", "e3", "client",
        ];
        let hosts = Hosts::create(&prefix, &names).context("cannot make the demo's hosts")?;
        for node in ["a", "b", "c"] {
            hosts.lan("infra", node, None, true)?;
        }
        hosts.lan("infra", "client", Some("10.0.2.100/24"), false)?;
        let etcd = Members::start(&hosts, &["e1", "e2", "e3"], &dir.join("etcd"))?;
        println!(
            "{:>7.3}s [demo] hosts up ({}); etcd on e1-e3: {}",
            t0.elapsed().as_secs_f64(),
            names.join(", "),
            etcd.url()
        );
        Ok(DemoHosts {
            hosts,
            etcd,
            nbd: Default::default(),
        })
    }

    /// Serve `image` from the storage host; returns the nodes' `--disk`.
    fn serve_disk(&self, image: &Path) -> Result<String> {
        let ip = self.hosts.addr("storage");
        let child = self
            .hosts
            .command("storage", "qemu-nbd")
            .args(["-f", "raw", "-x", "disk", "-b", &ip.to_string()])
            .args(["-p", &NBD_PORT.to_string(), "-t", "--shared=8"])
            .arg(image)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run qemu-nbd (scripts/install-deps installs qemu-utils)")?;
        let pid = child.id();
        *self.nbd.borrow_mut() = Some(Proc { child });
        // It listens within moments; a node that connects too early says so and exits,
        // so wait here.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ftvm_hosts::listening(Some(pid), NBD_PORT) {
                return Ok(format!("nbd://{ip}:{NBD_PORT}/disk"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("qemu-nbd did not start listening on the storage host")
    }
}

/// A child process, killed when dropped.
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first so nodes can say goodbye; then make sure.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port, different from those in `taken` (the kernel may hand out a port again
/// once its listener is closed).
fn free_port(taken: &mut Vec<u16>) -> Result<u16> {
    loop {
        let p = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if !taken.contains(&p) {
            taken.push(p);
            return Ok(p);
        }
    }
}

/// Start `ftvm ARGS`, its stderr copied to `DIR/NAME.log` and its `ftvm:` lines shown
/// with the name in front; stdout (the guest console, for nodes) to `DIR/NAME.out`.
/// With `hosts`, it runs on the host named like it (lowercase).
fn spawn(
    dir: &Path,
    name: &str,
    args: &[String],
    t0: Instant,
    hosts: Option<&Hosts>,
) -> Result<Proc> {
    let exe = std::env::current_exe().context("cannot find the ftvm executable")?;
    let out = std::fs::File::create(dir.join(format!("{name}.out")))?;
    let mut cmd = match hosts {
        Some(h) => h.command(&name.to_lowercase(), &exe.display().to_string()),
        None => Command::new(exe),
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {name}"))?;
    let err = child.stderr.take().expect("piped");
    // Appended: a slot refilled by a spare keeps its earlier life's log.
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("{name}.log")))?;
    let tag = name.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
            let _ = writeln!(log, "{line}");
            if let Some(rest) = line.strip_prefix("ftvm: ") {
                println!("{:>7.3}s [{tag}] {rest}", t0.elapsed().as_secs_f64());
            }
        }
    });
    Ok(Proc { child })
}

fn read_status(run: &Path, node: &str) -> Option<Status> {
    let bytes = std::fs::read(run.join(format!("demo.{node}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Wait (bounded) until `f` holds.
fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Result<Duration> {
    let t = Instant::now();
    while !f() {
        if t.elapsed() > limit {
            bail!("timed out after {} s waiting for {what}", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(t.elapsed())
}

/// `ftvm demo`.
pub fn demo(args: &DemoArgs) -> Result<ExitCode> {
    let t0 = Instant::now();
    let load = super::workload::for_service(&args.service)?;
    if load.name() != "counter" && args.disk.is_none() {
        bail!(
            "--service {} runs on the Debian image: give it with --disk (and its kernel and command line), or use scripts/demo --service {}, which builds and passes them",
            load.name(),
            load.name()
        );
    }
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("ftvm-demo-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(dir.join("run"));
    std::fs::create_dir_all(dir.join("run"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let run = dir.join("run");
    let _ = std::fs::remove_file(dir.join("arbiter.state"));
    // The logging channels, the arbiter and the switch run over TLS: a CA of the demo's
    // own, a certificate for the arbiter and the switch, and one for VM demo for each
    // node slot, made afresh.
    let keys = dir.join("keys");
    super::keys::fresh_cluster(&keys, &["arbiter", "switch"], "demo", &SLOTS)
        .with_context(|| format!("cannot make the demo's credentials in {}", keys.display()))?;

    let mut taken = Vec::new();
    let mut port = |i: u16| -> Result<u16> {
        match args.base_port {
            Some(b) => Ok(b + i),
            None => free_port(&mut taken),
        }
    };
    let (sw, arb, fwd) = (port(0)?, port(1)?, port(2)?);
    let node_ports = [port(3)?, port(4)?, port(5)?];
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let site = match args.hosts {
        true => Some(DemoHosts::start(&dir, t0)?),
        false => None,
    };
    let hosts = site.as_ref().map(|s| &s.hosts);
    // Where each slot's node listens, and where the arbiter is.
    let node_addr = |slot: usize| match hosts {
        Some(h) => format!("{}:{NODE_PORT}", h.addr(&SLOTS[slot].to_lowercase())),
        None => addr(node_ports[slot]),
    };
    let arbiter = match &site {
        Some(s) => s.etcd.url(),
        None => addr(arb),
    };

    // The guest's boot files, built once here (the nodes get the paths).
    let (kernel, initrd) = match &args.machine.kernel {
        Some(k) => (k.clone(), args.machine.initrd.clone()),
        None => {
            let g = crate::guest::default_guest()?;
            (g.kernel, Some(g.initrd))
        }
    };
    // A shared disk is a copy of the image in the demo's directory (the image stays
    // as it was); with --own-disk each backup receives its own copy from the primary.
    let disk = match &args.disk {
        Some(img) => {
            let copy = dir.join("disk.img");
            println!("ftvm demo: copying {} to {}", img.display(), copy.display());
            std::fs::copy(img, &copy)
                .with_context(|| format!("cannot copy the disk image {}", img.display()))?;
            // On disk before the guest starts: otherwise the guest's first flush
            // (fsync) writes back the whole copy, stalling the primary past the
            // backup's timeout (a false failover at boot).
            std::fs::File::open(&copy)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot write {} to disk", copy.display()))?;
            Some(copy)
        }
        // On hosts, the counter keeps its value on a disk (over NBD) as well.
        None if args.hosts && load.name() == "counter" => {
            let img = dir.join("disk.img");
            std::fs::write(&img, vec![0u8; 1 << 20])
                .with_context(|| format!("cannot create {}", img.display()))?;
            Some(img)
        }
        None => None,
    };
    match &site {
        Some(_) => println!(
            "ftvm demo: on hosts of their own (network namespaces): nodes A, B, C with the guest's NIC on a bridged TAP device, an etcd cluster on e1-e3, the disk on an NBD server on storage, a {} client on the LAN; files in {}",
            load.name(),
            dir.display()
        ),
        None => println!(
            "ftvm demo: switch, arbiter and three node slots on 127.0.0.1; {} client on port {fwd}; files in {}",
            load.name(),
            dir.display()
        ),
    }
    let mut procs: Vec<Proc> = Vec::new();
    if site.is_none() {
        procs.push(spawn(
            &dir,
            "switch",
            &[
                "switch".into(),
                "--listen".into(),
                addr(sw),
                "--hostfwd".into(),
                format!("tcp:127.0.0.1:{fwd}-:{}", load.guest_port()),
                "--tls".into(),
                keys.display().to_string(),
                "--vm".into(),
                format!("demo={}", ftvm_switch::fmt_mac(&crate::run::GUEST_MAC)),
            ],
            t0,
            None,
        )?);
        procs.push(spawn(
            &dir,
            "arbiter",
            &[
                "arbiter".into(),
                "--listen".into(),
                addr(arb),
                "--state".into(),
                dir.join("arbiter.state").display().to_string(),
                "--tls".into(),
                keys.display().to_string(),
            ],
            t0,
            None,
        )?);
    }
    let common = |slot: usize| -> Vec<String> {
        vec![
            "--vm".into(),
            "demo".into(),
            "--name".into(),
            SLOTS[slot].into(),
            "--listen".into(),
            node_addr(slot),
            "--arbiter".into(),
            arbiter.clone(),
            "--tls".into(),
            keys.display().to_string(),
            "--run-dir".into(),
            run.display().to_string(),
            "--engine".into(),
            args.engine.engine.to_string(),
        ]
    };
    let mut primary_args = vec![
        "primary".to_string(),
        "--kernel".into(),
        kernel.display().to_string(),
    ];
    if let Some(i) = &initrd {
        primary_args.extend(["--initrd".into(), i.display().to_string()]);
    }
    primary_args.extend(["--memory".into(), args.machine.memory.to_string()]);
    let append = match (&site, load.name()) {
        (Some(_), "counter") => format!("{} mode=disk", args.machine.append),
        _ => args.machine.append.clone(),
    };
    primary_args.extend(["--append".into(), append]);
    match (&site, &disk) {
        (Some(s), Some(d)) => primary_args.extend(["--disk".into(), s.serve_disk(d)?]),
        (None, Some(d)) => primary_args.extend(["--disk".into(), d.display().to_string()]),
        _ => {}
    }
    match &site {
        Some(_) => primary_args.extend(["--tap".into(), "tap0".into()]),
        None => primary_args.extend(["--switch".into(), addr(sw)]),
    }
    primary_args.extend(common(0));
    std::thread::sleep(Duration::from_millis(200));
    let mut nodes: Vec<Option<Proc>> = vec![
        Some(spawn(&dir, "A", &primary_args, t0, hosts)?),
        None,
        None,
    ];
    let spare = |slot: usize, nodes: &mut Vec<Option<Proc>>| -> Result<()> {
        let others: Vec<String> = (0..3).filter(|&s| s != slot).map(node_addr).collect();
        let mut a = vec!["backup".to_string(), "--primary".into(), others.join(",")];
        if let Some(h) = hosts {
            // A repaired host: back on the network, empty.
            h.rejoin(&SLOTS[slot].to_lowercase())?;
            a.extend(["--tap".into(), "tap0".into()]);
        }
        if args.own_disk {
            let own = dir.join(format!("disk-{}.img", SLOTS[slot]));
            a.extend(["--own-disk".into(), own.display().to_string()]);
        }
        a.extend(common(slot));
        nodes[slot] = Some(spawn(&dir, SLOTS[slot], &a, t0, hosts)?);
        Ok(())
    };

    // The service answers once the guest has booted.
    let fwd_addr: SocketAddr = match hosts {
        // The client is on the LAN, with the guest's address.
        Some(h) => {
            h.enter("client")?;
            SocketAddr::from((GUEST_IP, load.guest_port()))
        }
        None => addr(fwd).parse()?,
    };
    let boot_limit = Duration::from_secs(if disk.is_some() { 600 } else { 120 });
    wait_for(
        &format!("the guest's {} service", load.name()),
        boot_limit,
        || load.probe(fwd_addr),
    )
    .with_context(|| format!("see {}/A.log and A.out", dir.display()))?;
    println!(
        "{:>7.3}s [demo] the guest's {} service answers",
        t0.elapsed().as_secs_f64(),
        load.name()
    );
    spare(1, &mut nodes)?;
    // Slot `p` is the primary, protected by a backup other than `not`.
    let protected_by_other = |p: usize, not: &str| {
        read_status(&run, SLOTS[p])
            .is_some_and(|s| s.role == "primary" && s.state == "protected" && s.peer != not)
    };
    let protected = |p: usize| protected_by_other(p, "");
    let took = wait_for("the first backup", Duration::from_secs(60), || protected(0))?;
    println!(
        "{:>7.3}s [demo] VM demo is protected ({} ms to create the backup)",
        t0.elapsed().as_secs_f64(),
        took.as_millis()
    );
    spare(2, &mut nodes)?;

    let clients = load.clone().start(fwd_addr);
    println!(
        "{:>7.3}s [demo] client: {} load running",
        t0.elapsed().as_secs_f64(),
        load.name()
    );

    let mut primary = 0usize;
    let mut kills: Vec<(Instant, usize)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for round in 0..args.failovers.max(1) {
        std::thread::sleep(Duration::from_secs_f64(args.before.max(0.1)));
        let victim = if args.kill_backup {
            let peer = read_status(&run, SLOTS[primary])
                .map(|s| s.peer)
                .unwrap_or_default();
            SLOTS
                .iter()
                .position(|s| *s == peer)
                .unwrap_or((primary + 1) % 3)
        } else {
            primary
        };
        let n = load.acknowledged();
        let mut p = nodes[victim].take().context("the victim is not running")?;
        match hosts {
            // Its host dies silently: links down, then SIGKILL to all on it.
            Some(h) => {
                h.kill(&SLOTS[victim].to_lowercase())?;
            }
            None => p.child.kill().context("cannot kill")?,
        }
        let killed = Instant::now();
        let _ = p.child.wait();
        std::mem::forget(p);
        kills.push((killed, n));
        println!(
            "{:>7.3}s [demo] killed {} ({}) {} after {n} acknowledged operations",
            t0.elapsed().as_secs_f64(),
            SLOTS[victim],
            if args.kill_backup {
                "the backup"
            } else {
                "the primary"
            },
            match hosts {
                Some(_) => "and its host, silently (links down, then SIGKILL)",
                None => "with SIGKILL",
            }
        );
        // The survivor goes live (or keeps going) and the spare becomes its backup.
        let survivor = if args.kill_backup {
            primary
        } else {
            let t = Instant::now();
            loop {
                if let Some(s) = (0..3).find(|&s| {
                    s != victim
                        && read_status(&run, SLOTS[s]).is_some_and(|st| {
                            st.role == "primary"
                                && st.state != "stopped"
                                && st.state != "halted"
                                && nodes[s].is_some()
                        })
                }) {
                    break s;
                }
                if t.elapsed() > Duration::from_secs(30) {
                    bail!("no node went live within 30 s of the kill");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        primary = survivor;
        let outcome = wait_for("a new backup", Duration::from_secs(60), || {
            protected_by_other(survivor, SLOTS[victim])
        });
        // The killed node's host is repaired: it comes back as a spare.
        spare(victim, &mut nodes)?;
        match outcome {
            Ok(_) => println!(
                "{:>7.3}s [demo] round {}: {} is the primary and protected again ({} ms after the kill)",
                t0.elapsed().as_secs_f64(),
                round + 1,
                SLOTS[survivor],
                killed.elapsed().as_millis()
            ),
            Err(e) => failures.push(format!("round {}: {e}", round + 1)),
        }
    }
    std::thread::sleep(Duration::from_secs_f64(args.after.max(0.1)));
    load.stop();
    for c in clients {
        let _ = c.join();
    }

    // The verdict.
    let verdict = load.verdict(fwd_addr);
    failures.extend(verdict.failures.iter().cloned());
    let mut failover_ms = Vec::new();
    for (killed, _) in &kills {
        match load.first_ack_after(*killed) {
            Some(t) => failover_ms.push(t.saturating_duration_since(*killed).as_secs_f64() * 1e3),
            None => failures.push("no acknowledgment after the kill".into()),
        }
    }
    println!();
    let _ = super::status::status(&crate::cli::StatusArgs {
        run_dir: Some(run.clone()),
    });
    // Stop everything at once (SIGTERM), so no node outlives its peers for long.
    for p in nodes.iter().flatten().chain(procs.iter()) {
        let _ = Command::new("kill").arg(p.child.id().to_string()).status();
    }
    drop(nodes);
    drop(procs);
    println!();
    println!("summary");
    println!("  service                 {}", load.name());
    println!("  failovers               {}", kills.len());
    println!(
        "  kill -> next reply      {}",
        failover_ms
            .iter()
            .map(|m| format!("{m:.0} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (name, value) in &verdict.lines {
        println!("  {name:<23} {value}");
    }
    if failures.is_empty() {
        println!("  verdict                 OK: nothing acknowledged was lost");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("  verdict                 FAILED: {}", failures.join("; "));
        Ok(ExitCode::from(1))
    }
}
