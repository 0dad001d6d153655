//! Record a live run of the Linux guest (real network clients, host time, host entropy)
//! and replay it elsewhere — another process — to the identical execution.

mod common;
use common::*;
use ftvm_log::{EntryKind, LogReader, LogWriter};
use ftvm_machine::Event;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Record the counter guest while a client makes `n` increments; end with SIGINT.
/// Returns the recording's stdout and final state line.
fn record_counter_session(log: &Path, n: u64) -> (Vec<u8>, (u64, String)) {
    record_session(log, n, "counter", &[])
}

/// Record the guest in `mode` (with `extra` options) while a client makes `n`
/// increments; end with SIGINT.
fn record_session(log: &Path, n: u64, mode: &str, extra: &[&str]) -> (Vec<u8>, (u64, String)) {
    let (k, i) = linux_guest();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftvm"))
        .args([
            "record",
            "--log",
            log.to_str().unwrap(),
            "--hash-every",
            "5000000",
        ])
        .args([
            "--kernel",
            k.to_str().unwrap(),
            "--initrd",
            i.to_str().unwrap(),
        ])
        .args([
            "--append",
            &format!("console=ttyS0 mode={mode}"),
            "--net",
            "user,hostfwd=tcp:127.0.0.1:0-:7777",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut port = 0u16;
    let mut line = String::new();
    while port == 0 {
        line.clear();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "ftvm record exited early"
        );
        if let Some(rest) = line.strip_prefix("ftvm: forwarding host 127.0.0.1:") {
            port = rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut { stdout }, &mut v).unwrap();
        v
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut reply = String::new();
            if w.write_all(b"get\n").is_ok() && r.read_line(&mut reply).is_ok_and(|n| n > 0) {
                break (r, w);
            }
        }
        assert!(Instant::now() < deadline, "counter did not answer");
        std::thread::sleep(Duration::from_millis(100));
    };
    for want in 1..=n {
        conn.1.write_all(b"inc\n").unwrap();
        let mut reply = String::new();
        conn.0.read_line(&mut reply).unwrap();
        assert_eq!(reply.trim(), want.to_string());
    }
    drop(conn);
    std::thread::sleep(Duration::from_millis(200));
    // SIGINT: the recording ends cleanly with a complete log.
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "record failed: {rest}");
    let last = rest.lines().last().unwrap().to_string();
    let out = std::process::Output {
        status: std::process::ExitStatus::default(),
        stdout: Vec::new(),
        stderr: last.into_bytes(),
    };
    (out_thread.join().unwrap(), final_state(&out))
}

fn replay(log: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["replay", "--log", log.to_str().unwrap()];
    args.extend_from_slice(extra);
    ftvm(&args)
}

#[test]
fn a_recorded_network_session_replays_identically_twice() {
    let dir = scratch("rr-session");
    let log = dir.join("counter.log");
    let (stdout, state) = record_counter_session(&log, 25);
    for _ in 0..2 {
        let r = replay(&log, &[]);
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
        assert_eq!(
            r.stdout, stdout,
            "replay's console output differs from the recording's"
        );
        assert_eq!(final_state(&r), state);
    }
    // The log holds the inputs that made it live: frames, clock and entropy.
    let mut reader = LogReader::open(std::fs::File::open(&log).unwrap()).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for e in reader.by_ref() {
        let e = e.unwrap();
        if e.kind == EntryKind::Event {
            let ev: Event = postcard::from_bytes(&e.payload).unwrap();
            kinds.insert(match ev {
                Event::NetFrame(_) => "frame",
                Event::ClockAdvance { .. } => "clock",
                Event::Entropy { .. } => "entropy",
                Event::DiskDone { .. } => "disk",
                Event::ConsoleInput(_) => "console",
            });
        }
    }
    assert!(
        kinds.contains("frame") && kinds.contains("clock") && kinds.contains("entropy"),
        "{kinds:?}"
    );

    // Time travel: stop anywhere, save, resume with `ftvm run --restore`.
    let snap = dir.join("mid.snap");
    let mid = state.0 / 2;
    let r = replay(
        &log,
        &[
            "--stop-at",
            &mid.to_string(),
            "--save",
            snap.to_str().unwrap(),
        ],
    );
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(final_state(&r).0, mid);
    let resumed = ftvm(&[
        "run",
        "--restore",
        snap.to_str().unwrap(),
        "--stop-at",
        &(mid + 1000).to_string(),
        "--net",
        "none",
    ]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(final_state(&resumed).0, mid + 1000);
}

/// The engines are interchangeable: a log recorded under one replays under the other
/// to the same console output, the same state hash at every checkpoint (replay checks
/// each one, every 5 M instructions here) and the same final state.
#[test]
fn a_log_recorded_under_one_engine_replays_under_the_other() {
    let dir = scratch("rr-engines");
    for (rec, rep) in [("interp", "jit"), ("jit", "interp")] {
        let log = dir.join(format!("{rec}.log"));
        let (stdout, state) = record_session(&log, 10, "counter", &["--engine", rec]);
        let r = replay(&log, &["--engine", rep]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(
            r.status.success(),
            "recorded with {rec}, replayed with {rep}: {err}"
        );
        assert!(err.contains(&format!("engine={rep}")), "{err}");
        assert_eq!(r.stdout, stdout, "{rec} -> {rep}: console output differs");
        assert_eq!(
            final_state(&r),
            state,
            "{rec} -> {rep}: final state differs"
        );
    }
}

#[test]
fn corrupt_truncated_and_perturbed_logs_are_caught() {
    let dir = scratch("rr-bad");
    let log = dir.join("counter.log");
    let (_, state) = record_counter_session(&log, 5);
    let bytes = std::fs::read(&log).unwrap();

    // One corrupted byte in the last quarter: refused with a clear error.
    let mut bad = bytes.clone();
    let at = bytes.len() - bytes.len() / 4;
    bad[at] ^= 0x01;
    let p = dir.join("corrupt.log");
    std::fs::write(&p, &bad).unwrap();
    let r = replay(&p, &[]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("corrupt") && !err.contains("panicked"),
        "{err}"
    );

    // A torn tail: replays up to the last whole entry and says where it ended.
    let p = dir.join("torn.log");
    std::fs::write(&p, &bytes[..bytes.len() - 7]).unwrap();
    let r = replay(&p, &[]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        r.status.success()
            && err.contains("log ends at byte")
            && err.contains("replayed up to there"),
        "{err}"
    );
    assert!(final_state(&r).0 <= state.0);

    // A wrong format version is refused.
    let mut v = bytes.clone();
    v[8] = 99;
    let p = dir.join("version.log");
    std::fs::write(&p, &v).unwrap();
    let r = replay(&p, &[]);
    assert!(!r.status.success() && String::from_utf8_lossy(&r.stderr).contains("version"));

    // An input changed (one clock correction one tick longer), rewritten with valid
    // framing: the state-hash check catches the divergence, at or after the change.
    let mut reader = LogReader::open(std::fs::File::open(&log).unwrap()).unwrap();
    let header = reader.header().clone();
    let mut out = Vec::new();
    let mut w = LogWriter::new(&mut out, &header).unwrap();
    let mut changed_at = None;
    let mut end = None;
    for e in reader.by_ref() {
        let e = e.unwrap();
        let mut payload = e.payload.clone();
        if e.kind == EntryKind::Event && changed_at.is_none() && e.icount > state.0 / 3 {
            if let Ok(Event::ClockAdvance { ticks }) = postcard::from_bytes::<Event>(&e.payload) {
                payload = postcard::to_stdvec(&Event::ClockAdvance { ticks: ticks + 1 }).unwrap();
                changed_at = Some(e.icount);
            }
        }
        if e.kind == EntryKind::End {
            end = Some((e.icount, e.hash().unwrap()));
            break;
        }
        w.append(e.icount, e.kind, &payload).unwrap();
    }
    let (icount, hash) = end.unwrap();
    w.finish(icount, hash).unwrap();
    let changed_at = changed_at.expect("a clock event to perturb");
    let p = dir.join("perturbed.log");
    std::fs::write(&p, &out).unwrap();
    let r = replay(&p, &[]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(!r.status.success() && err.contains("divergence"), "{err}");
    let at: u64 = err
        .split("divergence at instruction ")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no instruction count in: {err}"));
    assert!(
        at >= changed_at,
        "caught at {at}, before the change at {changed_at}"
    );
}

#[test]
fn disk_mode_session_replays_without_the_disk() {
    // Disk reads come back as logged events: the replay needs no disk image at all.
    let dir = scratch("rr-disk");
    let img = dir.join("disk.img");
    std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
    let log = dir.join("disk.log");
    let (stdout, state) = record_session(&log, 10, "disk", &["--disk", img.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&stdout).contains("mode: disk"));
    // The increments reached the disk during the recording.
    assert!(std::fs::read(&img).unwrap().starts_with(b"FTVMCTR1"));
    std::fs::remove_file(&img).unwrap();
    let r = replay(&log, &[]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(r.stdout, stdout);
    assert_eq!(final_state(&r), state);
}

#[test]
fn a_log_for_another_machine_is_refused() {
    let dir = scratch("rr-other");
    let log = dir.join("counter.log");
    record_counter_session(&log, 1);
    let mut reader = LogReader::open(std::fs::File::open(&log).unwrap()).unwrap();
    let rewrite = |header: &ftvm_log::Header, name: &str| {
        let mut out = Vec::new();
        let mut w = LogWriter::new(&mut out, header).unwrap();
        w.progress(1).unwrap();
        w.finish(1, 0).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, &out).unwrap();
        replay(&p, &[])
    };
    // The embedded configuration does not match its digest: another configuration.
    let mut h = reader.header().clone();
    h.config_digest[0] ^= 1;
    let r = rewrite(&h, "config.log");
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("configuration"),
        "{err}"
    );
    // The machine this ftvm builds from it starts elsewhere: another machine/kernel.
    let mut h = reader.header().clone();
    h.initial_state_digest ^= 1;
    let r = rewrite(&h, "state.log");
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("initial state"),
        "{err}"
    );
    assert!(reader.next().is_some());
}
