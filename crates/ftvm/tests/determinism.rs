//! Determinism through the command line: `--stop-at` stops exactly, the same run gives
//! the same state hash, and a machine saved at N and restored in another process
//! reaches the same state at M as one that ran straight through.

mod common;
use common::*;

fn stop_at(prog: &str, n: u64) -> (u64, String) {
    let g = guest(prog);
    let out = ftvm(&[
        "run",
        "--bios",
        "none",
        "--kernel",
        g.to_str().unwrap(),
        "--stop-at",
        &n.to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    final_state(&out)
}

#[test]
fn stop_at_is_exact_and_repeatable() {
    for n in [1, 2, 3, 17, 1000, 4321, 15_000] {
        let (icount, hash) = stop_at("smode", n);
        assert_eq!(icount, n);
        assert_eq!(stop_at("smode", n).1, hash, "two runs to {n} differ");
    }
}

#[test]
fn different_stop_points_differ() {
    assert_ne!(stop_at("smode", 1000).1, stop_at("smode", 1001).1);
}

#[test]
fn save_and_restore_in_another_process_matches_a_straight_run() {
    let dir = scratch("save-restore");
    for (prog, n, m) in [
        ("smode", 7_777, 20_000),
        ("csr_trap", 5_000, 19_000),
        ("fp", 300, 2_000),
    ] {
        let snap = dir.join(format!("{prog}.snap"));
        let g = guest(prog);
        let out = ftvm(&[
            "run",
            "--bios",
            "none",
            "--kernel",
            g.to_str().unwrap(),
            "--stop-at",
            &n.to_string(),
            "--save",
            snap.to_str().unwrap(),
        ]);
        assert!(out.status.success());
        assert_eq!(final_state(&out).0, n);
        let resumed = ftvm(&[
            "run",
            "--restore",
            snap.to_str().unwrap(),
            "--stop-at",
            &m.to_string(),
        ]);
        assert!(
            resumed.status.success(),
            "{}",
            String::from_utf8_lossy(&resumed.stderr)
        );
        assert_eq!(
            final_state(&resumed),
            stop_at(prog, m),
            "{prog}: restored at {n}, compared at {m}"
        );
    }
}

#[test]
fn restored_run_prints_the_rest_of_the_console_output() {
    let dir = scratch("restore-output");
    let snap = dir.join("hello.snap");
    let g = guest("hello");
    let full = ftvm(&["run", "--bios", "none", "--kernel", g.to_str().unwrap()]);
    let first = ftvm(&[
        "run",
        "--bios",
        "none",
        "--kernel",
        g.to_str().unwrap(),
        "--stop-at",
        "150",
        "--save",
        snap.to_str().unwrap(),
    ]);
    let rest = ftvm(&["run", "--restore", snap.to_str().unwrap()]);
    assert!(rest.status.success());
    let mut joined = first.stdout.clone();
    joined.extend_from_slice(&rest.stdout);
    assert_eq!(joined, full.stdout);
    assert_eq!(final_state(&rest), final_state(&full));
}
