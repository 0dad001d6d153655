//! The arbiter over real TCP on 127.0.0.1: semantics, durability, atomicity.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use crate::{Arbiter, ArbiterClient, ArbiterError, ArbiterHandle, Outcome, ServerConfig};

pub(crate) const SECRET: &[u8] = b"cluster secret for tests";
pub(crate) const TIMEOUT: Duration = Duration::from_secs(5);

/// A fresh, empty directory for one test.
pub(crate) fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ftvm-arbiter-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub(crate) fn serve(state: &std::path::Path, config: ServerConfig) -> ArbiterHandle {
    let arbiter = Arbiter::with_config(state, SECRET, config).unwrap();
    arbiter
        .serve(TcpListener::bind("127.0.0.1:0").unwrap())
        .unwrap()
}

pub(crate) fn client(h: &ArbiterHandle) -> ArbiterClient {
    ArbiterClient::connect(h.local_addr(), SECRET, TIMEOUT).unwrap()
}

fn lost(winner: &str) -> Outcome {
    Outcome::Lost {
        winner: winner.into(),
    }
}

#[test]
fn first_caller_wins_second_loses_and_is_told_the_winner() {
    let h = serve(&temp_dir("first").join("state"), ServerConfig::default());
    let (mut a, mut b) = (client(&h), client(&h));
    assert_eq!(a.test_and_set("vm", 0, "node-a").unwrap(), Outcome::Won);
    assert_eq!(b.test_and_set("vm", 0, "node-b").unwrap(), lost("node-a"));
    assert_eq!(a.query("vm", 0).unwrap().unwrap().node, "node-a");
    assert_eq!(b.query("vm", 1).unwrap(), None);
    assert_eq!(b.query("other", 1).unwrap(), None);
    h.stop();
}

#[test]
fn retry_by_the_winner_wins_again() {
    let h = serve(&temp_dir("retry").join("state"), ServerConfig::default());
    assert_eq!(client(&h).test_and_set("vm", 0, "a").unwrap(), Outcome::Won);
    // The reply was "lost": the winner reconnects and asks again.
    let mut again = client(&h);
    assert_eq!(again.test_and_set("vm", 0, "a").unwrap(), Outcome::Won);
    assert_eq!(again.test_and_set("vm", 0, "a").unwrap(), Outcome::Won);
    assert_eq!(again.test_and_set("vm", 0, "b").unwrap(), lost("a"));
}

#[test]
fn generations_and_vms_are_independent() {
    let h = serve(&temp_dir("gens").join("state"), ServerConfig::default());
    let mut c = client(&h);
    assert_eq!(c.current("vm").unwrap(), None);
    assert_eq!(c.test_and_set("vm", 0, "a").unwrap(), Outcome::Won);
    // A backup joins (generation 1); the pair fails over to b, a new backup joins: 2.
    assert_eq!(c.test_and_set("vm", 1, "b").unwrap(), Outcome::Won);
    assert_eq!(c.test_and_set("vm", 2, "b").unwrap(), Outcome::Won);
    assert_eq!(c.test_and_set("vm", 1, "a").unwrap(), lost("b"));
    assert_eq!(c.test_and_set("vm", 2, "a").unwrap(), lost("b"));
    assert_eq!(c.test_and_set("vm-2", 0, "b").unwrap(), Outcome::Won);
    assert_eq!(c.current("vm").unwrap(), Some(2));
    assert_eq!(c.current("vm-2").unwrap(), Some(0));
    assert_eq!(c.current("v").unwrap(), None);
    assert_eq!(c.current("vm-3").unwrap(), None);
    assert_eq!(h.arbiter().current("vm"), Some(2));
}

#[test]
fn only_the_next_generation_can_be_won() {
    let h = serve(&temp_dir("order").join("state"), ServerConfig::default());
    let mut c = client(&h);
    let out_of_order = |r: Result<Outcome, ArbiterError>, next| match r {
        Err(e @ ArbiterError::OutOfOrder { .. }) => {
            assert!(
                e.to_string().contains(&format!("the next is {next}")),
                "{e}"
            )
        }
        r => panic!("expected a refusal, got {r:?}"),
    };
    // A new VM starts at 0: nobody reserves a far-future generation.
    out_of_order(c.test_and_set("vm", 1, "evil"), 0);
    out_of_order(c.test_and_set("vm", u64::MAX, "evil"), 0);
    assert_eq!(c.test_and_set("vm", 0, "a").unwrap(), Outcome::Won);
    assert_eq!(c.test_and_set("vm", 1, "a").unwrap(), Outcome::Won);
    // Far-future: skipping one is refused, and so is u64::MAX.
    out_of_order(c.test_and_set("vm", 3, "evil"), 2);
    out_of_order(c.test_and_set("vm", u64::MAX, "evil"), 2);
    // Stale: a decided generation answers as decided, never to a new claimant.
    assert_eq!(c.test_and_set("vm", 0, "evil").unwrap(), lost("a"));
    // The refusals recorded nothing; the next one is still open, for anyone.
    assert_eq!(c.current("vm").unwrap(), Some(1));
    assert_eq!(c.query("vm", 3).unwrap(), None);
    assert_eq!(c.test_and_set("vm", 2, "b").unwrap(), Outcome::Won);
    // The same holds locally, and the refusal names the VM and both generations.
    let e = h.arbiter().test_and_set("vm", 9, "b").unwrap_err();
    assert_eq!(
        e.to_string(),
        "generation 9 of VM \"vm\" cannot be claimed: the next is 3"
    );
}

#[test]
fn winner_survives_a_restart() {
    let path = temp_dir("restart").join("state");
    let h = serve(&path, ServerConfig::default());
    assert_eq!(client(&h).test_and_set("vm", 0, "a").unwrap(), Outcome::Won);
    let set_at = h.arbiter().query("vm", 0).unwrap().set_at_unix_ms;
    assert!(set_at > 0);
    h.stop();

    let h = serve(&path, ServerConfig::default());
    let mut c = client(&h);
    let w = c.query("vm", 0).unwrap().unwrap();
    assert_eq!((w.node.as_str(), w.set_at_unix_ms), ("a", set_at));
    assert_eq!(c.test_and_set("vm", 0, "b").unwrap(), lost("a"));
    assert_eq!(c.test_and_set("vm", 0, "a").unwrap(), Outcome::Won);
    assert_eq!(c.current("vm").unwrap(), Some(0));
}

#[test]
fn exactly_one_of_twenty_racers_wins() {
    let h = serve(&temp_dir("race").join("state"), ServerConfig::default());
    for generation in 0..3 {
        let barrier = Arc::new(Barrier::new(20));
        let racers: Vec<_> = (0..20)
            .map(|i| {
                let mut c = client(&h);
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    let node = format!("node-{i}");
                    barrier.wait();
                    (
                        node.clone(),
                        c.test_and_set("vm", generation, &node).unwrap(),
                    )
                })
            })
            .collect();
        let results: Vec<_> = racers.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter(|(_, o)| *o == Outcome::Won).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        let winner = &winners[0].0;
        for (node, outcome) in &results {
            if node != winner {
                assert_eq!(*outcome, lost(winner));
            }
        }
        assert_eq!(&h.arbiter().query("vm", generation).unwrap().node, winner);
    }
}

#[test]
fn local_calls_and_remote_calls_share_the_ledger() {
    let h = serve(&temp_dir("local").join("state"), ServerConfig::default());
    assert_eq!(
        h.arbiter().test_and_set("vm", 0, "local").unwrap(),
        Outcome::Won
    );
    assert_eq!(
        client(&h).test_and_set("vm", 0, "remote").unwrap(),
        lost("local")
    );
}

#[test]
fn invalid_names_are_refused() {
    let h = serve(&temp_dir("names").join("state"), ServerConfig::default());
    let mut c = client(&h);
    let long = "x".repeat(256);
    for (vm, node) in [
        ("", "a"),
        ("vm", ""),
        (long.as_str(), "a"),
        ("vm", long.as_str()),
    ] {
        let e = c.test_and_set(vm, 1, node).unwrap_err();
        assert!(matches!(e, ArbiterError::InvalidName { .. }), "{e}");
        let e = h.arbiter().test_and_set(vm, 1, node).unwrap_err();
        assert!(matches!(e, ArbiterError::InvalidName { .. }), "{e}");
    }
    // Queries need no valid name: nothing was ever recorded under one.
    assert_eq!(c.query(&long, 1).unwrap(), None);
    assert_eq!(
        c.test_and_set("x".repeat(255).as_str(), 0, "a").unwrap(),
        Outcome::Won
    );
}

#[test]
fn stop_closes_live_connections_and_releases_the_state() {
    let path = temp_dir("stop").join("state");
    let h = serve(
        &path,
        ServerConfig {
            idle_timeout: Duration::from_secs(600),
            ..Default::default()
        },
    );
    let mut idle = client(&h);
    assert_eq!(idle.test_and_set("vm", 0, "a").unwrap(), Outcome::Won);
    let addr = h.local_addr();
    h.stop();
    assert!(idle.query("vm", 1).is_err());
    assert!(matches!(idle.query("vm", 1), Err(ArbiterError::Broken)));
    assert!(ArbiterClient::connect(addr, SECRET, TIMEOUT).is_err());
    // The lock is released: a new arbiter opens the same state.
    let h = serve(&path, ServerConfig::default());
    assert_eq!(client(&h).test_and_set("vm", 0, "b").unwrap(), lost("a"));
}

#[test]
fn connections_beyond_the_cap_are_closed() {
    let h = serve(
        &temp_dir("cap").join("state"),
        ServerConfig {
            max_connections: 2,
            ..Default::default()
        },
    );
    let (mut a, mut b) = (client(&h), client(&h));
    // Served once each: both are past their handshakes on the server's side too.
    assert_eq!(a.current("vm").unwrap(), None);
    assert_eq!(b.current("vm").unwrap(), None);
    let e = ArbiterClient::connect(h.local_addr(), SECRET, TIMEOUT)
        .err()
        .unwrap();
    assert!(matches!(e, ArbiterError::Closed), "{e}");
    assert_eq!(a.test_and_set("vm", 0, "a").unwrap(), Outcome::Won);
    drop(a);
    // Once a connection ends, there is room again (bounded wait for the server to notice).
    let mut c = None;
    for _ in 0..100 {
        match ArbiterClient::connect(h.local_addr(), SECRET, TIMEOUT) {
            Ok(x) => {
                c = Some(x);
                break;
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
    assert_eq!(
        c.expect("room after a disconnect").current("vm").unwrap(),
        Some(0)
    );
    assert_eq!(b.current("vm").unwrap(), Some(0));
}

#[test]
fn slow_loris_connections_neither_keep_their_slots_nor_keep_a_node_out() {
    use std::io::Write;
    let h = serve(
        &temp_dir("loris").join("state"),
        ServerConfig {
            max_connections: 4,
            handshake_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    );
    // Twice as many silent or dripping connections as there are slots.
    let mut loris: Vec<std::net::TcpStream> = (0..8)
        .map(|_| std::net::TcpStream::connect(h.local_addr()).unwrap())
        .collect();
    thread::sleep(Duration::from_millis(50));
    for s in &mut loris {
        let _ = s.write_all(b"F");
    }
    // A node still gets in (it evicts the oldest handshake) and is served.
    let mut c = client(&h);
    assert_eq!(c.test_and_set("vm", 0, "a").unwrap(), Outcome::Won);
    // And every dripping connection is closed by its deadline.
    thread::sleep(Duration::from_millis(700));
    for s in &mut loris {
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut b = [0u8; 64];
        let closed = match std::io::Read::read(s, &mut b) {
            Ok(0) => true,
            Ok(_) => std::io::Read::read(s, &mut b).map_or(true, |n| n == 0),
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        assert!(
            closed,
            "a slow-loris connection outlived its handshake deadline"
        );
    }
    assert_eq!(c.current("vm").unwrap(), Some(0));
}

/// Over TLS: a cluster CA in `dir` with an arbiter and `nodes`.
fn tls_cluster(dir: &std::path::Path, nodes: &[&str]) -> Arc<ftvm_world::tls::Credentials> {
    use ftvm_world::keys;
    keys::create_ca(dir, true).unwrap();
    for n in nodes.iter().chain(&["arbiter"]) {
        keys::create_node(dir, n, 30, true).unwrap();
    }
    Arc::new(ftvm_world::tls::Credentials::load(dir, "arbiter", crate::ARBITER_ALPN).unwrap())
}

fn tls_client(
    dir: &std::path::Path,
    h: &ArbiterHandle,
    name: &str,
    arbiter: &str,
) -> Result<ArbiterClient, ArbiterError> {
    let creds = ftvm_world::tls::Credentials::load(dir, name, crate::ARBITER_ALPN).unwrap();
    ArbiterClient::connect_tls(h.local_addr(), &creds, arbiter, TIMEOUT)
}

#[test]
fn over_tls_a_node_wins_only_as_the_node_its_certificate_names() {
    let d = temp_dir("tls");
    let keys = d.join("keys");
    let creds = tls_cluster(&keys, &["a", "b"]);
    let arbiter = Arbiter::open_tls(d.join("state"), creds, ServerConfig::default()).unwrap();
    let h = arbiter
        .serve(TcpListener::bind("127.0.0.1:0").unwrap())
        .unwrap();
    let mut b = tls_client(&keys, &h, "b", "arbiter").unwrap();
    // b cannot win as a, not even as an incarnation of a.
    for claim in ["a", "a#123"] {
        assert!(
            matches!(
                b.test_and_set("vm", 1, claim),
                Err(ArbiterError::NotYours(_))
            ),
            "{claim}"
        );
    }
    let mut a = tls_client(&keys, &h, "a", "arbiter").unwrap();
    assert_eq!(a.test_and_set("vm", 0, "a#123").unwrap(), Outcome::Won);
    assert_eq!(a.test_and_set("vm", 1, "a").unwrap(), Outcome::Won);
    assert_eq!(b.test_and_set("vm", 1, "b").unwrap(), lost("a"));
    // A client that expects another node at the arbiter's address refuses this one.
    assert!(matches!(
        tls_client(&keys, &h, "a", "b"),
        Err(ArbiterError::WrongPeer { .. })
    ));
    // A node of another cluster is refused; so is a client holding only the secret.
    let other = d.join("other");
    tls_cluster(&other, &["a"]);
    assert!(matches!(
        tls_client(&other, &h, "a", "arbiter"),
        Err(ArbiterError::TlsRefused(_))
    ));
    assert!(ArbiterClient::connect(h.local_addr(), SECRET, TIMEOUT).is_err());
    h.stop();
}
