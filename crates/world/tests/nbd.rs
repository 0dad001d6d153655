//! The NBD disk against Debian's real NBD servers: qemu-nbd, nbdkit and nbd-server
//! (scripts/install-deps installs them), each run on loopback by the test.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ftvm_world::disk::{Disk, DiskError, WritePermit};
use ftvm_world::nbd::{NbdDisk, NbdUrl, FENCE};

#[derive(Clone, Copy, Debug)]
enum Program {
    QemuNbd,
    Nbdkit,
    NbdServer,
    /// nbdkit whose every write takes a second (its delay filter).
    NbdkitSlowWrites,
}

/// A running NBD server on 127.0.0.1, killed when dropped.
struct Running {
    child: Child,
    port: u16,
    kind: Program,
    image: PathBuf,
    bind: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn image(name: &str, bytes: u64) -> PathBuf {
    let p = std::env::temp_dir().join(format!("ftvm-nbd-{}-{name}.img", std::process::id()));
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(bytes).unwrap(); // sparse: servers may answer reads of it with holes
    p
}

/// A port no other test of this binary gets: with ports from the kernel (bind to 0), two
/// tests at once could start servers on the same one, and one test reached the other's
/// one-client nbd-server, which reset it.
fn free_port() -> u16 {
    ftvm_hosts::free_port()
}

fn spawn(kind: Program, image: &Path, port: u16, bind: &str) -> Child {
    let img = image.to_str().unwrap();
    let p = port.to_string();
    let mut cmd = match kind {
        Program::QemuNbd => {
            let mut c = Command::new("qemu-nbd");
            // --shared: a new owner connects while the old owner's connection lingers.
            c.args([
                "-f",
                "raw",
                "-x",
                "disk",
                "-b",
                bind,
                "-p",
                &p,
                "-t",
                "--shared=8",
                img,
            ]);
            c
        }
        Program::Nbdkit => {
            let mut c = Command::new("nbdkit");
            c.args(["-f", "-i", bind, "-p", &p, "file", img]);
            c
        }
        Program::NbdkitSlowWrites => {
            let mut c = Command::new("nbdkit");
            c.args([
                "-f",
                "-i",
                bind,
                "-p",
                &p,
                "--filter=delay",
                "file",
                img,
                "wdelay=1",
            ]);
            c
        }
        Program::NbdServer => {
            let conf = image.with_extension("conf");
            std::fs::write(
                &conf,
                format!("[generic]\n listenaddr = {bind}\n port = {port}\n[disk]\n exportname = {img}\n"),
            )
            .unwrap();
            let mut c = Command::new("nbd-server");
            // -d: in the foreground (it then serves one client).
            c.args(["-d", "-C", conf.to_str().unwrap()]);
            c
        }
    };
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot run {kind:?} ({e}); scripts/install-deps installs qemu-utils, nbdkit and nbd-server")
    })
}

/// Start `kind` serving `image` on 127.0.0.1, a free port, and wait until it listens.
fn serve(kind: Program, image: &Path) -> Running {
    serve_on(kind, image, "127.0.0.1")
}

/// [`serve`] on the address `bind`.
fn serve_on(kind: Program, image: &Path, bind: &str) -> Running {
    for _ in 0..5 {
        let port = free_port();
        let mut child = spawn(kind, image, port, bind);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ftvm_hosts::listening(None, port) {
                return Running {
                    child,
                    port,
                    kind,
                    image: image.to_path_buf(),
                    bind: bind.to_string(),
                };
            }
            if child.try_wait().unwrap().is_some() {
                break; // the port was taken meanwhile: another one
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{kind:?} did not start listening");
}

impl Running {
    fn url(&self) -> NbdUrl {
        let export = match self.kind {
            Program::QemuNbd | Program::NbdServer => "disk",
            Program::Nbdkit | Program::NbdkitSlowWrites => "",
        };
        NbdUrl::parse(&format!("nbd://127.0.0.1:{}/{export}", self.port)).unwrap()
    }

    fn connect(&self) -> NbdDisk {
        NbdDisk::connect(&self.url(), WritePermit::default()).unwrap()
    }

    /// Stop the server with SIGKILL and start it again on the same port.
    fn restart_after(&mut self, pause: Duration) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(pause);
        self.child = spawn(self.kind, &self.image, self.port, &self.bind);
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn every_debian_nbd_server_serves_reads_writes_and_flushes() {
    for kind in [Program::QemuNbd, Program::Nbdkit, Program::NbdServer] {
        let img = image(&format!("rw-{kind:?}"), 4 << 20);
        let srv = serve(kind, &img);
        let mut d = srv.connect();
        assert_eq!(d.capacity(), 8192, "{kind:?}");
        assert!(!d.read_only(), "{kind:?}");
        // A never-written (sparse) region reads as zeroes, however the server says so.
        assert_eq!(d.read(100, 65536).unwrap(), vec![0u8; 65536], "{kind:?}");
        let data = pattern(kind as u8, 3 * 512);
        d.write(3, &data).unwrap();
        d.flush().unwrap();
        assert_eq!(d.read(3, 3 * 512).unwrap(), data, "{kind:?}");
        // The whole disk in one read (chunked to the server's block size if need be).
        let all = d.read(0, 4 << 20).unwrap();
        assert_eq!(&all[1536..3072], &data[..], "{kind:?}");
        // The bytes are on the image itself.
        let on_disk = std::fs::read(&img).unwrap();
        assert_eq!(&on_disk[1536..3072], &data[..], "{kind:?}");
        assert!(matches!(
            d.read(8190, 4096),
            Err(DiskError::OutOfRange { .. })
        ));
        match kind {
            // Both negotiate structured replies (so reads arrive as data/hole chunks).
            Program::QemuNbd | Program::Nbdkit | Program::NbdkitSlowWrites => {
                assert!(d.structured(), "{kind:?}")
            }
            Program::NbdServer => {}
        }
        drop(d);
        let _ = std::fs::remove_file(&img);
    }
}

#[test]
fn an_unknown_export_and_a_server_that_is_not_nbd_are_named_in_the_error() {
    let img = image("unknown", 1 << 20);
    let srv = serve(Program::QemuNbd, &img);
    let url = NbdUrl::parse(&format!("nbd://127.0.0.1:{}/nope", srv.port)).unwrap();
    let e = NbdDisk::connect(&url, WritePermit::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no export 'nope'"), "{e}");

    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let url = NbdUrl::parse(&format!("nbd://127.0.0.1:{port}/disk")).unwrap();
    let e = NbdDisk::connect(&url, WritePermit::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an NBD server"), "{e}");

    let url = NbdUrl::parse(&format!("nbd://127.0.0.1:{}/disk", free_port())).unwrap();
    let e = NbdDisk::connect(&url, WritePermit::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot connect"), "{e}");
}

#[test]
fn a_write_lands_after_the_storage_server_is_killed_and_restarted() {
    let img = image("blip", 1 << 20);
    let mut srv = serve(Program::QemuNbd, &img);
    let mut d = srv.connect();
    let before = pattern(1, 512);
    d.write(0, &before).unwrap();
    d.flush().unwrap();
    // The storage host blips: SIGKILL, 400 ms away, back on the same port.
    srv.restart_after(Duration::from_millis(400));
    let after = pattern(2, 1024);
    d.write(1, &after).unwrap();
    d.flush().unwrap();
    assert_eq!(
        d.read(0, 512).unwrap(),
        before,
        "the acknowledged write survived"
    );
    assert_eq!(d.read(1, 1024).unwrap(), after);
    let on_disk = std::fs::read(&img).unwrap();
    assert_eq!(&on_disk[..512], &before[..]);
    assert_eq!(&on_disk[512..1536], &after[..]);
}

#[test]
fn a_slow_write_is_awaited_while_the_lease_is_renewed() {
    let img = image("slow", 1 << 20);
    let srv = serve(Program::NbdkitSlowWrites, &img);
    // A lease of 100 ms, renewed every 20 ms (as an FT primary's acks renew it), and a
    // write the storage takes a second to answer: it lands once, on one connection.
    let permit = WritePermit::default();
    permit.set(Some(Instant::now() + Duration::from_millis(100)));
    let mut d = NbdDisk::connect(&srv.url(), permit.clone()).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renew = {
        let (permit, done) = (permit.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                permit.set(Some(Instant::now() + Duration::from_millis(100)));
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let data = pattern(4, 512);
    let started = Instant::now();
    let written = d.write(0, &data);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    renew.join().unwrap();
    written.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the delay filter delayed nothing"
    );
    assert_eq!(d.outages(), 0, "the slow write's connection was aborted");
    assert_eq!(d.read(0, 512).unwrap(), data);
}

#[test]
fn a_write_is_never_sent_without_the_permit() {
    let img = image("fence", 1 << 20);
    let srv = serve(Program::Nbdkit, &img);
    let permit = WritePermit::default();
    let mut d = NbdDisk::connect(&srv.url(), permit.clone()).unwrap();
    d.write(0, &pattern(3, 512)).unwrap();
    permit.revoke();
    assert!(matches!(
        d.write(0, &pattern(4, 512)),
        Err(DiskError::Fenced)
    ));
    // A lease that ran out is the same as none.
    permit.set(Some(Instant::now()));
    assert!(matches!(
        d.write(0, &pattern(5, 512)),
        Err(DiskError::Fenced)
    ));
    assert_eq!(d.read(0, 512).unwrap(), pattern(3, 512), "reads go on");
    assert_eq!(&std::fs::read(&img).unwrap()[..512], &pattern(3, 512)[..]);
    permit.set(Some(Instant::now() + Duration::from_secs(60)));
    d.write(0, &pattern(6, 512)).unwrap();
    assert_eq!(d.read(0, 512).unwrap(), pattern(6, 512));
}

/// A network namespace of the test's own (`ip netns`), deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("ftvm-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "delete", &name])
            .stderr(Stdio::null())
            .status();
        run("ip", &["netns", "add", &name]);
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        Netns(name)
    }

    /// Move this thread into it (its sockets, and the processes it starts, live there).
    fn enter(&self) {
        let f = std::fs::File::open(format!("/run/netns/{}", self.0)).unwrap();
        use std::os::fd::AsFd;
        rustix::thread::move_into_link_name_space(
            f.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
    }
}

impl Netns {
    /// Enter it without owning it (another handle deletes it).
    fn enter_and_forget(self) {
        self.enter();
        std::mem::forget(self);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

fn run(program: &str, args: &[&str]) {
    let st = Command::new(program).args(args).status().unwrap();
    assert!(st.success(), "{program} {args:?} failed");
}

/// Three hosts as namespaces: storage `s`, the old owner `a` and the new owner `b`,
/// with a link a–s (10.201.0.0/24) and a link b–s (10.202.0.0/24).
struct Hosts {
    s: Netns,
    a: Netns,
    b: Netns,
    /// Storage's end of the a–s link.
    sa: String,
}

impl Hosts {
    fn new() -> Hosts {
        let (s, a, b) = (Netns::new("s"), Netns::new("a"), Netns::new("b"));
        let id = std::process::id() % 100_000;
        let sa = format!("fsa{id}");
        for (host, net, own, theirs) in [
            (&a, 201, format!("fa{id}"), sa.clone()),
            (&b, 202, format!("fb{id}"), format!("fsb{id}")),
        ] {
            run(
                "ip",
                &[
                    "link", "add", &own, "netns", &host.0, "type", "veth", "peer", "name", &theirs,
                    "netns", &s.0,
                ],
            );
            run(
                "ip",
                &[
                    "-n",
                    &host.0,
                    "addr",
                    "add",
                    &format!("10.{net}.0.1/24"),
                    "dev",
                    &own,
                ],
            );
            run(
                "ip",
                &[
                    "-n",
                    &s.0,
                    "addr",
                    "add",
                    &format!("10.{net}.0.2/24"),
                    "dev",
                    &theirs,
                ],
            );
            run("ip", &["-n", &host.0, "link", "set", &own, "up"]);
            run("ip", &["-n", &s.0, "link", "set", &theirs, "up"]);
        }
        Hosts { s, a, b, sa }
    }

    /// Take the a–s link down or up (no FIN, no RST: packets just stop).
    fn link_a(&self, up: bool) {
        run(
            "ip",
            &[
                "-n",
                &self.s.0,
                "link",
                "set",
                &self.sa,
                if up { "up" } else { "down" },
            ],
        );
    }
}

#[test]
fn a_write_stalled_on_a_cut_link_never_lands_after_the_new_owners_writes() {
    let hosts = Hosts::new();
    hosts.s.enter();
    let img = image("stall", 1 << 20);
    let srv = serve_on(Program::QemuNbd, &img, "0.0.0.0");
    let url = |net: u32| NbdUrl::parse(&format!("nbd://10.{net}.0.2:{}/disk", srv.port)).unwrap();
    let (old_url, new_url) = (url(201), url(202));
    let old_permit = WritePermit::default();
    old_permit.set(Some(Instant::now() + Duration::from_secs(60)));
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    let (a, permit) = (hosts.a.0.clone(), old_permit.clone());
    let stalled = std::thread::spawn(move || {
        Netns(a.clone()).enter_and_forget();
        let mut old = NbdDisk::connect(&old_url, permit).unwrap();
        old.write(0, &pattern(1, 512)).unwrap();
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        let r = old.write(0, &pattern(2, 512));
        (r, old.outages())
    });
    ready.recv().unwrap();
    // The old owner's link goes silent; its write leaves into it under a lease that
    // runs out 100 ms from now (the backup's acks stopped). Set before the write: set
    // after, the write could start waiting under the 60 s lease, which a real lease
    // never does (it only moves forward), and the test would fail on its own race.
    hosts.link_a(false);
    let lease_end = Instant::now() + Duration::from_millis(100);
    old_permit.set(Some(lease_end));
    go.send(()).unwrap();
    // The new owner goes live after the lease ended, fences, then writes; then the
    // link heals.
    let b = hosts.b.0.clone();
    let newer = std::thread::spawn(move || {
        Netns(b).enter_and_forget();
        std::thread::sleep(lease_end.saturating_duration_since(Instant::now()));
        let mut new = NbdDisk::connect(&new_url, WritePermit::default()).unwrap();
        let live = Instant::now();
        new.fence().unwrap();
        // Reads are not held; the first write is, for FENCE.
        assert_eq!(new.read(0, 512).unwrap(), pattern(1, 512));
        new.write(0, &pattern(3, 512)).unwrap();
        assert!(live.elapsed() >= FENCE);
        new.flush().unwrap();
        new
    });
    let mut new = newer.join().unwrap();
    hosts.link_a(true);
    let (r, outages) = stalled.join().unwrap();
    assert!(matches!(r, Err(DiskError::Fenced)), "{r:?}");
    // It was sent into the cut link, and the kernel gave up on it.
    assert_eq!(outages, 1, "the stalled write was never sent");
    // Long enough for a retransmission to arrive, had the kernel kept the bytes.
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(new.read(0, 512).unwrap(), pattern(3, 512));
    assert_eq!(&std::fs::read(&img).unwrap()[..512], &pattern(3, 512)[..]);
}
