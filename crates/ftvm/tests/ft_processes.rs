//! The FT pair's helper processes, as real processes: `ftvm switch` (the guest network
//! outside any VM host) and `ftvm arbiter` (durable test-and-set).

mod common;
use common::*;
use ftvm_arbiter::{ArbiterClient, ArbiterError, Outcome};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
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
        "--insecure-plaintext",
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
        "--insecure-plaintext",
    ];
    let t = Duration::from_secs(2);
    {
        let _arb = spawn(&args);
        wait_listening(port);
        let mut primary = ArbiterClient::connect(&addr, b"cluster-secret", t).unwrap();
        let mut backup = ArbiterClient::connect(&addr, b"cluster-secret", t).unwrap();
        assert_eq!(
            backup.test_and_set("vm1", 0, "backup").unwrap(),
            Outcome::Won
        );
        assert_eq!(
            primary.test_and_set("vm1", 0, "primary").unwrap(),
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
        c.test_and_set("vm1", 0, "primary").unwrap(),
        Outcome::Lost {
            winner: "backup".into()
        },
        "the decision did not survive the arbiter's restart"
    );
    assert_eq!(c.test_and_set("vm1", 1, "primary").unwrap(), Outcome::Won);
    // Generations are decided in order: a far-future one is refused, naming the next.
    match c.test_and_set("vm1", 5, "primary") {
        Err(e @ ArbiterError::OutOfOrder { .. }) => assert_eq!(
            e.to_string(),
            "generation 5 of VM \"vm1\" cannot be claimed: the next is 2"
        ),
        r => panic!("a far-future generation was not refused: {r:?}"),
    }
}

#[test]
fn ftvm_keys_makes_a_ca_and_node_credentials_and_refuses_to_overwrite_them() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("keys-cli").join("keys");
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    // A node needs the CA first: a one-line error, exit status 2, nothing written.
    let out = ftvm(&["keys", "--dir", d, "--node", "a"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("there is no cluster CA"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(!dir.join("a.key").exists());
    let out = ftvm(&["keys", "--dir", d, "--ca", "--node", "a", "--node", "b"]);
    assert!(out.status.success(), "{out:?}");
    for f in ["ca.key", "a.key", "b.key"] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let before = std::fs::read(dir.join("a.pem")).unwrap();
    for again in [&["--ca"][..], &["--node", "a"]] {
        let mut args = vec!["keys", "--dir", d];
        args.extend_from_slice(again);
        let out = ftvm(&args);
        assert_eq!(out.status.code(), Some(2), "{again:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("exists already (use --force"), "{err}");
    }
    assert_eq!(std::fs::read(dir.join("a.pem")).unwrap(), before);
    let out = ftvm(&["keys", "--dir", d, "--node", "a", "--force"]);
    assert!(out.status.success(), "{out:?}");
    assert_ne!(std::fs::read(dir.join("a.pem")).unwrap(), before);
    // A name that cannot be a certificate's identity.
    let out = ftvm(&["keys", "--dir", d, "--node", "no_good:name"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be a node name"));
    // Neither --ca nor --node: a usage error.
    assert!(!ftvm(&["keys", "--dir", d]).status.success());
}

#[test]
fn the_arbiter_process_over_tls_lets_a_node_win_only_as_itself() {
    use ftvm_world::tls::Credentials;
    let dir = scratch("arbiter-tls");
    let keys = dir.join("keys");
    let _ = std::fs::remove_dir_all(&keys);
    let k = keys.to_str().unwrap();
    let made = ftvm(&[
        "keys", "--dir", k, "--ca", "--node", "a", "--node", "b", "--node", "arbiter",
    ]);
    assert!(made.status.success(), "{made:?}");
    let state = dir.join("arbiter.state");
    let _ = std::fs::remove_file(&state);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = dir.join("arbiter.log");
    let _arb = Proc(
        Command::new(env!("CARGO_BIN_EXE_ftvm"))
            .args([
                "arbiter",
                "--listen",
                &addr,
                "--state",
                state.to_str().unwrap(),
                "--tls",
                k,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start ftvm"),
    );
    wait_listening(port);
    let t = Duration::from_secs(2);
    let alpn = ftvm_arbiter::ARBITER_ALPN;
    let b = Credentials::load(&keys, "b", alpn).unwrap();
    let mut b = ftvm_arbiter::ArbiterClient::connect_tls(&addr, &b, "arbiter", t).unwrap();
    assert!(matches!(
        b.test_and_set("vm1", 0, "a"),
        Err(ArbiterError::NotYours(_))
    ));
    assert_eq!(b.test_and_set("vm1", 0, "b").unwrap(), Outcome::Won);
    // A client in clear, holding only a cluster secret, does not get in.
    assert!(ArbiterClient::connect(&addr, b"cluster-secret", t).is_err());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("refused a claim: b asked to win as a"),
        "{logged}"
    );
}
