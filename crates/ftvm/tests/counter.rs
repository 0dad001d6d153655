//! The counter service (the FT paper's example) in the real Linux guest, reached from
//! the host over real TCP through user-mode networking's port forwarding.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running guest: the `ftvm run` process, killed on drop.
struct Guest {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

impl Guest {
    /// Boot the default guest in `mode` with a forward from an ephemeral host port to
    /// guest port 7777, and wait for the banner.
    fn boot(mode: &str, extra: &[&str]) -> Guest {
        let (k, i) = linux_guest();
        let mut args = vec![
            "run".to_string(),
            "--kernel".into(),
            k.to_str().unwrap().into(),
            "--initrd".into(),
            i.to_str().unwrap().into(),
            "--append".into(),
            format!("console=ttyS0 mode={mode}"),
            "--net".into(),
            "user,hostfwd=tcp:127.0.0.1:0-:7777".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_ftvm"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ftvm");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for stream in [Box::new(out) as Box<dyn Read + Send>, Box::new(err)] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut g = Guest {
            child,
            port: 0,
            lines: rx,
        };
        g.port = g
            .wait_for("ftvm: forwarding host 127.0.0.1:")
            .split(':')
            .nth(2)
            .and_then(|p| p.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .expect("forwarded port");
        g.wait_for("ftvm-guest ready");
        g
    }

    /// Wait (at most 60 s) for a console or log line containing `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no line containing {needle:?} within 60 s"),
            }
        }
    }

    /// A connection to the counter (retrying while the guest starts listening).
    fn connect(&self) -> Client {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut c = Client {
                    r: BufReader::new(s.try_clone().unwrap()),
                    w: s,
                };
                if c.try_request("get").is_some() {
                    return c;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the counter did not answer within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Client {
    fn try_request(&mut self, cmd: &str) -> Option<String> {
        self.w.write_all(format!("{cmd}\n").as_bytes()).ok()?;
        let mut line = String::new();
        match self.r.read_line(&mut line) {
            Ok(n) if n > 0 => Some(line.trim_end().to_string()),
            _ => None,
        }
    }

    fn request(&mut self, cmd: &str) -> String {
        self.try_request(cmd)
            .unwrap_or_else(|| panic!("no reply to {cmd:?}"))
    }

    fn inc(&mut self) -> u64 {
        self.request("inc").parse().expect("a number")
    }
}

#[test]
fn sequential_increments_and_get() {
    let g = Guest::boot("counter", &[]);
    let mut c = g.connect();
    assert_eq!(c.request("get"), "0");
    for want in 1..=50 {
        assert_eq!(c.inc(), want);
    }
    assert_eq!(c.request("get"), "50");
    assert_eq!(c.request("bogus"), "err");
}

#[test]
fn concurrent_connections_share_the_counter() {
    let g = Guest::boot("counter", &[]);
    let mut a = g.connect();
    let mut b = g.connect();
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(a.inc());
        seen.push(b.inc());
    }
    assert_eq!(
        seen,
        (1..=40).collect::<Vec<u64>>(),
        "interleaved increments"
    );
    assert_eq!(a.request("get"), "40");
    // Many requests in one write (pipelining) are each answered.
    a.w.write_all(b"inc\ninc\ninc\n").unwrap();
    let replies: Vec<String> = (0..3)
        .map(|_| {
            let mut l = String::new();
            a.r.read_line(&mut l).unwrap();
            l.trim_end().to_string()
        })
        .collect();
    assert_eq!(replies, ["41", "42", "43"]);
    assert_eq!(b.request("get"), "43");
}

#[test]
fn counter_with_opensbi_firmware() {
    let g = Guest::boot(
        "counter",
        &[
            "--bios",
            "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin",
        ],
    );
    let mut c = g.connect();
    assert_eq!(c.inc(), 1);
    assert_eq!(c.inc(), 2);
}

#[test]
fn disk_mode_keeps_the_counter_across_a_guest_reboot() {
    let img = scratch("disk-mode").join("counter.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let disk = img.to_str().unwrap().to_string();
    let mut g = Guest::boot("disk", &["--disk", &disk]);
    let mut c = g.connect();
    for want in 1..=5 {
        assert_eq!(c.inc(), want);
    }
    assert_eq!(c.request("reboot"), "ok");
    drop(c);
    // ftvm reboots the machine in the same process with the same disk and forward.
    g.wait_for("reboot: Restarting system");
    g.wait_for("ftvm-guest ready");
    let mut c = g.connect();
    assert_eq!(c.request("get"), "5");
    assert_eq!(c.inc(), 6);
    drop(g);
    // And across a new ftvm process with the same image.
    let g = Guest::boot("disk", &["--disk", &disk]);
    assert_eq!(g.connect().request("get"), "6");
}

#[test]
fn snapshot_disk_leaves_the_image_untouched() {
    let img = scratch("disk-snapshot").join("counter.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let spec = format!("{},snapshot", img.to_str().unwrap());
    let g = Guest::boot("disk", &["--disk", &spec]);
    let mut c = g.connect();
    assert_eq!(c.inc(), 1);
    assert_eq!(c.inc(), 2);
    drop(g);
    assert!(
        std::fs::read(&img).unwrap().iter().all(|&b| b == 0),
        "snapshot mode wrote the image"
    );
}
