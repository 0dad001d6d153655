//! Shared fixtures for the integration tests: the guest programs built by the repo's
//! own script, and a way to run the `ftvm` binary.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Build the bare-metal guests once per test binary; returns their directory.
pub fn baremetal() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = repo().join("target/guest/baremetal");
        let status = Command::new("bash")
            .arg(repo().join("guest/baremetal/build.sh"))
            .arg(&out)
            .status()
            .expect("run guest/baremetal/build.sh");
        assert!(status.success(), "building the bare-metal guests failed");
        out
    })
}

/// Path of a bare-metal guest program.
pub fn guest(name: &str) -> PathBuf {
    baremetal().join(format!("{name}.elf"))
}

/// Run `ftvm` with arguments; a run longer than two minutes is killed and fails the
/// test (a hung guest must not hang the suite).
pub fn ftvm(args: &[&str]) -> Output {
    ftvm_with_timeout(args, Duration::from_secs(120))
}

/// Run `ftvm`, killing it after `limit`.
pub fn ftvm_with_timeout(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftvm"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ftvm");
    // Drain the pipes on threads so a chatty guest cannot block on a full pipe.
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        so.read_to_end(&mut v).ok();
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        se.read_to_end(&mut v).ok();
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for ftvm") {
            break s;
        }
        if start.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            panic!("ftvm {args:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// The `icount=N state_hash=H` line that ends stderr.
pub fn final_state(out: &Output) -> (u64, String) {
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no stderr: {err}"));
    let mut icount = None;
    let mut hash = None;
    for word in last.split_whitespace() {
        if let Some(v) = word.strip_prefix("icount=") {
            icount = v.parse().ok();
        }
        if let Some(v) = word.strip_prefix("state_hash=") {
            hash = Some(v.to_string());
        }
    }
    (
        icount.unwrap_or_else(|| panic!("no icount in {last:?}")),
        hash.unwrap_or_else(|| panic!("no state_hash in {last:?}")),
    )
}

/// A scratch directory unique to this test process and name.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ftvm-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The Linux guest's kernel and initramfs (guest/linux/build.sh; cached under
/// ~/.cache/ftvm), built once per test binary.
pub fn linux_guest() -> (PathBuf, PathBuf) {
    static ONCE: OnceLock<()> = OnceLock::new();
    let out = repo().join("target/guest");
    ONCE.get_or_init(|| {
        let ok = Command::new("bash")
            .arg(repo().join("guest/linux/build.sh"))
            .env("OUT", &out)
            .status()
            .expect("run guest/linux/build.sh")
            .success();
        assert!(ok, "building the Linux guest failed");
    });
    (out.join("Image"), out.join("initramfs.cpio"))
}

/// A port for a process this test starts (see [`ftvm_hosts::free_port`]).
pub fn free_port() -> u16 {
    ftvm_hosts::free_port()
}

/// The role and state in a node's status file (`ftvm status` reads the same JSON).
pub fn role_and_state(status: &str) -> (String, String) {
    let field = |k: &str| {
        status
            .split(&format!("\"{k}\": \""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default()
            .to_string()
    };
    (field("role"), field("state"))
}
