//! The FT pair's helper processes, as real processes: `ftvm switch` (the guest network
//! outside any VM host) and `ftvm arbiter` (durable test-and-set).

mod common;
use common::*;
use ftvm_arbiter::{ArbiterClient, ArbiterError, Outcome};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

fn spawn(args: &[&str]) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_ftvm"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ftvm"),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts connections on `port`.
fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_counter_is_reached_through_a_separate_switch_process() {
    let (k, i) = linux_guest();
    let (sw, fwd) = (free_port(), free_port());
    let _switch = spawn(&[
        "switch",
        "--listen",
        &format!("127.0.0.1:{sw}"),
        "--hostfwd",
        &format!("tcp:127.0.0.1:{fwd}-:7777"),
    ]);
    wait_listening(sw);
    let _vm = spawn(&[
        "run",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--append",
        "console=ttyS0 mode=counter",
        "--net",
        &format!("switch=127.0.0.1:{sw}"),
    ]);
    // The forward accepts before the guest listens: retry until the counter answers.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut r, mut w) = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", fwd)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            let mut line = String::new();
            if w.write_all(b"get\n").is_ok() && r.read_line(&mut line).is_ok_and(|n| n > 0) {
                assert_eq!(line.trim(), "0");
                break (r, w);
            }
        }
        assert!(
            Instant::now() < deadline,
            "the counter did not answer through the switch"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for want in 1..=20 {
        w.write_all(b"inc\n").unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), want.to_string());
    }
}

#[test]
fn the_arbiter_process_decides_once_and_remembers_across_restarts() {
    let dir = scratch("arbiter-proc");
    let secret_file = dir.join("secret");
    std::fs::write(&secret_file, "cluster-secret\n").unwrap();
    let state = dir.join("arbiter.state");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let args = [
        "arbiter",
        "--listen",
        &addr,
        "--state",
        state.to_str().unwrap(),
        "--secret-file",
        secret_file.to_str().unwrap(),
    ];
    let t = Duration::from_secs(2);
    {
        let _arb = spawn(&args);
        wait_listening(port);
        let mut primary = ArbiterClient::connect(&addr, b"cluster-secret", t).unwrap();
        let mut backup = ArbiterClient::connect(&addr, b"cluster-secret", t).unwrap();
        assert_eq!(
            backup.test_and_set("vm1", 1, "backup").unwrap(),
            Outcome::Won
        );
        assert_eq!(
            primary.test_and_set("vm1", 1, "primary").unwrap(),
            Outcome::Lost {
                winner: "backup".into()
            }
        );
        // The trailing newline of the secret file is not part of the secret; a wrong
        // secret is refused.
        let wrong = ArbiterClient::connect(&addr, b"guess", t);
        assert!(
            matches!(wrong, Err(ArbiterError::Unauthenticated(_))),
            "{:?}",
            wrong.err()
        );
    }
    // SIGKILL the arbiter (drop kills it) and start it again on the same state file.
    let _arb = spawn(&args);
    wait_listening(port);
    let mut c = ArbiterClient::connect(&addr, b"cluster-secret", t).unwrap();
    assert_eq!(
        c.test_and_set("vm1", 1, "primary").unwrap(),
        Outcome::Lost {
            winner: "backup".into()
        },
        "the decision did not survive the arbiter's restart"
    );
    assert_eq!(c.test_and_set("vm1", 2, "primary").unwrap(), Outcome::Won);
}
