//! etcd as the arbiter against Debian's etcd-server (3.4), run as a three-member
//! cluster on three hosts of its own (network namespaces, crates/hosts), asked from a
//! fourth. A member's host dies silently; then a majority; then it comes back.
#![cfg(feature = "etcd")]

use std::time::{Duration, Instant};

use ftvm_hosts::etcd::Members;
use ftvm_hosts::Hosts;
use ftvm_world::arbiter::{Arbiter, ArbiterFailure, Decision};
use ftvm_world::etcd::EtcdArbiter;

const MEMBERS: [&str; 3] = ["e1", "e2", "e3"];

struct Cluster {
    hosts: Hosts,
    members: Members,
}

impl Cluster {
    fn new() -> Cluster {
        let prefix = format!("et{}", std::process::id() % 100_000);
        let hosts =
            Hosts::create(&prefix, &["e1", "e2", "e3", "node"]).expect("hosts (needs root)");
        let dir = std::env::temp_dir().join(format!("ftvm-etcd-{}", std::process::id()));
        let members = Members::start(&hosts, &MEMBERS, &dir).unwrap();
        Cluster { hosts, members }
    }

    /// The arbiter as the host `node` sees it, in a thread there.
    fn ask<T: Send + 'static>(&self, f: impl FnOnce(&EtcdArbiter) -> T + Send + 'static) -> T {
        let hosts = self.hosts.share();
        let endpoints = self.members.endpoints();
        std::thread::spawn(move || {
            hosts.enter("node").unwrap();
            let a = EtcdArbiter::new(endpoints, Duration::from_secs(2)).unwrap();
            f(&a)
        })
        .join()
        .unwrap()
    }

    /// Ask until the cluster answers (a leader elected), for up to 30 s.
    fn wait_ready(&self) {
        let t = Instant::now();
        while self.ask(|a| a.current("probe")).is_err() {
            assert!(t.elapsed() < Duration::from_secs(30), "etcd never answered");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn won() -> Result<Decision, ArbiterFailure> {
    Ok(Decision::Won)
}

#[test]
fn etcd_decides_each_generation_once_in_order_and_only_with_a_majority() {
    let mut c = Cluster::new();
    c.wait_ready();
    assert_eq!(c.ask(|a| a.current("vm0")), Ok(None));
    assert_eq!(c.ask(|a| a.test_and_set("vm0", 0, "a")), won());
    assert_eq!(
        c.ask(|a| a.test_and_set("vm0", 0, "b")),
        Ok(Decision::Lost { winner: "a".into() })
    );
    assert_eq!(
        c.ask(|a| a.test_and_set("vm0", 0, "a")),
        won(),
        "idempotent"
    );
    // Generations are decided in order: 2 before 1 is refused.
    let far = c.ask(|a| a.test_and_set("vm0", 2, "b"));
    assert!(
        matches!(&far, Err(ArbiterFailure::Refused(w)) if w.contains("out of order")),
        "{far:?}"
    );
    // One member's host dies silently: the other two decide.
    c.hosts.kill("e3").unwrap();
    assert_eq!(c.ask(|a| a.test_and_set("vm0", 1, "b")), won());
    assert_eq!(c.ask(|a| a.current("vm0")), Ok(Some(1)));
    // A second one: no majority, no decision — nobody goes live.
    c.hosts.kill("e2").unwrap();
    let t = Instant::now();
    let r = c.ask(|a| a.test_and_set("vm0", 2, "a"));
    assert!(matches!(r, Err(ArbiterFailure::Unreachable(_))), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(10), "the question hung");
    // It comes back (its data intact): decisions resume, and the earlier ones stand.
    c.hosts.rejoin("e2").unwrap();
    c.members.restart("e2").unwrap();
    c.wait_ready();
    assert_eq!(c.ask(|a| a.test_and_set("vm0", 2, "a")), won());
    assert_eq!(
        c.ask(|a| a.test_and_set("vm0", 1, "a")),
        Ok(Decision::Lost { winner: "b".into() })
    );
}
