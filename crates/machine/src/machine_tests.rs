//! The determinism API (DESIGN.md §1, STYLE.md §5): exact stops, split runs,
//! snapshots, event injection and snapshot validation.

use crate::devices::layout::UART_BASE;
use crate::machine::{Event, Exit, Machine};
use crate::snapshot::SnapshotError;
use crate::testutil::reg::*;
use crate::testutil::*;
use crate::types::ICount;

/// An endless loop that mixes console input, guest time and memory into its state
/// (s2..s4 and RAM), with branches so blocks have varied lengths.
fn workload() -> Machine {
    let mut a = Asm::new();
    let (top, no_input, even) = (a.label(), a.label(), a.label());
    a.li(S0, UART_BASE).li(S1, DATA);
    a.bind(top);
    a.i(lbu(T0, S0, 5)).i(andi(T0, T0, 1)); // LSR.DR
    a.br(no_input, |o| beq(T0, ZERO, o));
    a.i(lbu(T1, S0, 0)).i(add(S2, S2, T1)).i(slli(S2, S2, 3));
    a.bind(no_input);
    a.i(csrr(T2, 0xc01)).i(xor(S3, S3, T2)).i(addi(S4, S4, 1));
    a.i(andi(T3, S4, 1));
    a.br(even, |o| beq(T3, ZERO, o));
    a.i(mul(S3, S3, S4))
        .i(andi(T4, S4, 0xff))
        .i(slli(T4, T4, 3));
    a.i(add(T4, T4, S1)).i(sd(S3, T4, 0));
    a.bind(even);
    a.i(add(S5, S5, S2)).j(top);
    a.machine()
}

/// Run to exactly `n`, collecting any outputs on the way.
fn run_to(m: &mut Machine, n: u64) {
    loop {
        match m.run(ICount(n)) {
            Exit::Until => break,
            Exit::Output => drop(m.take_outputs()),
            e => panic!("unexpected exit {e:?} at {}", m.icount()),
        }
    }
    assert_eq!(m.icount(), ICount(n), "run stops exactly at until");
}

#[test]
fn run_stops_exactly_at_every_count() {
    let mut m = workload();
    for n in 0..=300 {
        run_to(&mut m, n);
    }
    for n in [1_000, 1_001, 4_093, 65_537] {
        run_to(&mut m, n);
    }
    // Asking for a count already passed does nothing.
    assert_eq!(m.run(ICount(10)), Exit::Until);
    assert_eq!(m.icount(), ICount(65_537));
}

#[test]
fn split_runs_equal_one_run() {
    let mut straight = workload();
    run_to(&mut straight, 5_000);
    for split in [1, 7, 13, 64, 65, 999, 4_999] {
        let mut m = workload();
        run_to(&mut m, split);
        run_to(&mut m, 5_000);
        assert_eq!(m.state_hash(), straight.state_hash(), "split at {split}");
    }
    let mut stepped = workload();
    for n in (0..=5_000).step_by(3) {
        run_to(&mut stepped, n);
    }
    run_to(&mut stepped, 5_000);
    assert_eq!(stepped.state_hash(), straight.state_hash());
}

#[test]
fn state_hash_sees_progress() {
    let mut m = workload();
    run_to(&mut m, 100);
    let h = m.state_hash();
    run_to(&mut m, 101);
    assert_ne!(m.state_hash(), h);
}

#[test]
fn save_restore_then_run_equals_straight_run() {
    let mut straight = workload();
    run_to(&mut straight, 3_000);
    for at in [0, 1, 33, 1_234] {
        let mut m = workload();
        run_to(&mut m, at);
        let snap = m.save();
        let mut r = Machine::restore(&snap).expect("snapshot restores");
        assert_eq!(r.state_hash(), m.state_hash(), "restored state at {at}");
        assert_eq!(r.icount(), ICount(at));
        run_to(&mut r, 3_000);
        assert_eq!(r.state_hash(), straight.state_hash(), "restored at {at}");
    }
}

/// Run `m` to 4_000, injecting `events` (icount, event) on the way, and return the
/// hashes at the checkpoints 1_000, 2_000, 3_000, 4_000.
fn drive(m: &mut Machine, events: &[(u64, Event)]) -> Vec<u128> {
    let mut hashes = vec![];
    let mut pending = events.iter().peekable();
    for checkpoint in [1_000, 2_000, 3_000, 4_000] {
        while let Some((at, ev)) = pending.next_if(|(at, _)| *at <= checkpoint) {
            run_to(m, *at);
            m.inject(ev);
        }
        run_to(m, checkpoint);
        hashes.push(m.state_hash());
    }
    hashes
}

fn events() -> Vec<(u64, Event)> {
    vec![
        (150, Event::ConsoleInput(b"hi".to_vec())),
        (777, Event::ClockAdvance { ticks: 5_000 }),
        (1_500, Event::ConsoleInput(b"x".to_vec())),
        (2_501, Event::ClockAdvance { ticks: 1 }),
    ]
}

#[test]
fn same_events_at_same_counts_give_same_states() {
    let a = drive(&mut workload(), &events());
    let b = drive(&mut workload(), &events());
    assert_eq!(a, b);
    let quiet = drive(&mut workload(), &[]);
    assert_ne!(a[0], quiet[0], "the events reached guest state");
}

#[test]
fn a_different_event_diverges() {
    let base = drive(&mut workload(), &events());
    let mut other_byte = events();
    other_byte[2].1 = Event::ConsoleInput(b"y".to_vec());
    let d = drive(&mut workload(), &other_byte);
    assert_eq!(d[0], base[0], "same until the differing event");
    assert_ne!(d[1], base[1]);
    let mut later = events();
    later[1].0 = 778;
    let d = drive(&mut workload(), &later);
    assert_ne!(d[0], base[0], "the same event one instruction later");
    let mut other_ticks = events();
    other_ticks[3].1 = Event::ClockAdvance { ticks: 2 };
    let d = drive(&mut workload(), &other_ticks);
    assert_eq!(d[..2], base[..2]);
    assert_ne!(d[3], base[3]);
}

#[test]
fn corrupted_snapshots_are_refused() {
    let mut m = workload();
    run_to(&mut m, 500);
    let snap = m.save();
    assert!(Machine::restore(&snap).is_ok());
    let restore = |bytes: &[u8]| Machine::restore(bytes).err().expect("refused");
    for i in [20, snap.len() / 2, snap.len() - 5] {
        let mut bad = snap.clone();
        bad[i] ^= 0x40;
        assert!(matches!(restore(&bad), SnapshotError::Checksum), "byte {i}");
    }
    let mut bad = snap.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(matches!(restore(&bad), SnapshotError::Checksum), "CRC byte");
    let mut bad = snap.clone();
    bad[0] = b'X';
    assert!(matches!(restore(&bad), SnapshotError::BadMagic));
    let mut bad = snap.clone();
    bad[8] = 99;
    assert!(matches!(
        restore(&bad),
        SnapshotError::Version { found: 99 }
    ));
    for len in [0, 5, 23, 24, snap.len() / 2, snap.len() - 1] {
        assert!(
            matches!(restore(&snap[..len]), SnapshotError::Truncated(n) if n == len),
            "truncated to {len}"
        );
    }
    assert!(matches!(
        restore(b"not a snapshot at all, no"),
        SnapshotError::BadMagic
    ));
}

#[test]
fn a_stop_between_an_intercepted_sbi_call_and_its_handling_survives_a_snapshot() {
    // S-mode with the built-in SBI: two legacy console putchar calls.
    let mut a = Asm::new();
    a.li(A7, 1).li(A0, b'x' as u64).i(ECALL);
    a.li(A0, b'y' as u64).i(ECALL);
    let top = a.label();
    a.bind(top);
    a.j(top);
    let mut cfg = config(elf(&a.bytes()));
    cfg.firmware = crate::boot::Firmware::BuiltinSbi;
    let console = |m: &mut Machine, until: u64| {
        let mut out = Vec::new();
        while m.run(ICount(until)) != Exit::Until {
            for o in m.take_outputs() {
                if let crate::machine::OutputKind::Console(b) = o.kind {
                    out.extend(b);
                }
            }
        }
        out
    };
    let mut straight = Machine::new(&cfg).unwrap();
    assert_eq!(console(&mut straight, 20), b"xy");
    // Stop right after the first ECALL retired, before the machine handled it.
    let mut m = Machine::new(&cfg).unwrap();
    assert_eq!(console(&mut m, 3), b"");
    let mut r = Machine::restore(&m.save()).unwrap();
    assert_eq!(r.state_hash(), m.state_hash());
    assert_eq!(console(&mut r, 20), b"xy", "the pending SBI call is kept");
    assert_eq!(r.state_hash(), straight.state_hash());
}
