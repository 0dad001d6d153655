//! The real guest in the simulated cluster: the machine running the Linux counter
//! (guest/linux/build.sh must have run; CI builds it first), restored from a snapshot,
//! real TCP from smoltcp clients, every checker green over 50 seeds, planted bugs caught,
//! and a seed's run identical every time. A missing guest build fails these tests.

use ftvm_sim::{replay_command, GuestKind, Plant, Summary};

fn linux() -> GuestKind {
    if let Err(e) = GuestKind::Linux.prepare() {
        panic!("{e}");
    }
    GuestKind::Linux
}

/// Seeds `first..first + count` on two threads (the CI machine has two cores).
fn run_seeds(first: u64, count: u64, plant: Option<Plant>) -> Summary {
    let g = linux();
    let half = count / 2;
    let parts: Vec<Summary> = std::thread::scope(|s| {
        let a = s.spawn(move || g.run_seeds(first, half, plant, false));
        let b = s.spawn(move || g.run_seeds(first + half, count - half, plant, false));
        [a, b]
            .map(|t| t.join().expect("no panic").expect("guest ready"))
            .into()
    });
    let mut sum = Summary::default();
    for p in parts {
        sum.merge(p);
    }
    sum
}

#[test]
fn fifty_seeds_of_the_linux_guest_find_no_violation() {
    let s = run_seeds(0, 50, None);
    assert!(
        s.failing.is_empty(),
        "{}",
        s.failures(GuestKind::Linux, None, 3)
    );
    assert_eq!(s.seeds, 50);
    // The faults really happened, and the real guest served through them.
    let f = s.faults;
    assert!(f.crashes > 10, "{f:?}");
    assert!(
        f.partitions > 5 && f.dropped > 0 && f.disk_failures > 0,
        "{f:?}"
    );
    assert!(s.failovers >= 5, "{} failovers", s.failovers);
    assert!(s.ops > 50 * 100, "{} operations", s.ops);
}

#[test]
fn a_linux_seed_replays_bit_for_bit() {
    let g = linux();
    // Seed 8 crashes nodes and fails over twice.
    let a = g.run_seed(8, None, false).unwrap();
    assert!(a.failovers > 0, "{a}");
    assert_eq!(a, g.run_seed(8, None, false).unwrap());
    assert_ne!(a.digest, g.run_seed(9, None, false).unwrap().digest);
}

/// These planted bugs are caught within this many Linux seeds (measured: the first
/// seeds already catch them; see BENCHMARKS.md).
const CAUGHT_WITHIN: u64 = 20;

#[test]
fn planted_bugs_are_caught_on_the_linux_guest() {
    let g = linux();
    for plant in [Plant::ReleaseBeforeAck, Plant::LiveWithoutWinning] {
        let s = g.run_seeds(0, CAUGHT_WITHIN, Some(plant), true).unwrap();
        assert!(
            !s.failing.is_empty(),
            "planted bug '{}' survived {CAUGHT_WITHIN} Linux seeds",
            plant.name()
        );
    }
}

#[test]
fn a_failing_linux_seed_names_its_replay_command() {
    assert_eq!(
        replay_command(GuestKind::Linux, 7, Some(Plant::NoFence)),
        "ftvm sim --guest linux --seeds 1 --first-seed 7 --plant no-fence --trace"
    );
}
