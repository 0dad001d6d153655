//! Directed tests of the compiled engine: each runs a loop that puts one mechanism
//! through compiled code many times, checks the result the program itself computes,
//! and checks that the interpreter, the JIT and both taking turns agree at every
//! step (`differential::check`). The random programs of `differential` cover the
//! rest.

use crate::devices::layout::{CLINT_BASE, RAM_BASE};
use crate::differential::{check, Case, Mode};
use crate::machine::{Exit, Machine};
use crate::testutil::pte::*;
use crate::testutil::reg::*;
use crate::testutil::*;
use crate::types::ICount;
use crate::Engine;

/// Page tables for the S/U tests: RAM identity-mapped by a gigapage (`user` adds U),
/// devices likewise, and four 4 KiB pages at [`VA`] onto [`PAGES`] with `flags`.
const ROOT: u64 = RAM_BASE + 0x20_0000;
const PAGES: u64 = RAM_BASE + 0x30_0000;
const VA: u64 = 0x4000_0000;
/// The level-0 table: entry k maps `VA + k * 4096`.
const L0: u64 = ROOT + 0x2000;

/// Rounds of each loop: enough for every block to run compiled many times.
const ROUNDS: u64 = 40;

/// A program: trap handler counting traps in t4 and skipping the instruction (4
/// bytes), page tables, then `body` at privilege `prv` (0 U, 1 S, 3 M, which has no
/// paging), which must end by jumping to the returned label's halt.
fn program(prv: u64, flags: [u64; 4], body: impl FnOnce(&mut Asm)) -> Vec<u8> {
    let mut a = Asm::new();
    let (handler, setup, start) = (a.label(), a.label(), a.label());
    a.j(setup);
    a.bind(handler);
    a.i(addi(T4, T4, 1));
    a.i(csrr(T6, 0x341))
        .i(addi(T6, T6, 4))
        .i(csrw(0x341, T6))
        .i(MRET);
    a.bind(setup);
    a.la(T0, handler).i(csrw(0x305, T0));
    let user = if prv == 0 { U } else { 0 };
    let put = |a: &mut Asm, at: u64, v: u64| {
        a.li(T0, at).li(T1, v).i(sd(T1, T0, 0));
    };
    put(&mut a, ROOT, pte(0, V | R | W | A | D | user));
    put(&mut a, ROOT + 8, pte(ROOT + 0x1000, V));
    put(
        &mut a,
        ROOT + 16,
        pte(RAM_BASE, V | R | W | X | A | D | user),
    );
    put(&mut a, ROOT + 0x1000, pte(L0, V));
    for (k, f) in flags.iter().enumerate() {
        put(
            &mut a,
            L0 + 8 * k as u64,
            pte(PAGES + 0x1000 * k as u64, *f),
        );
    }
    a.li(T4, 0);
    if prv != 3 {
        a.li(T0, 8 << 60 | ROOT >> 12)
            .i(csrw(0x180, T0))
            .i(sfence_vma(0, 0));
        a.enter(prv, start);
    }
    a.bind(start);
    body(&mut a);
    a.halt();
    a.bytes()
}

/// A loop of `ROUNDS` rounds around `f` (s4 counts down).
fn rounds(a: &mut Asm, f: impl Fn(&mut Asm)) {
    let top = a.label();
    a.li(S4, ROUNDS);
    a.bind(top);
    f(a);
    a.i(addi(S4, S4, -1));
    a.br(top, |o| blt(ZERO, S4, o));
}

/// Run `bytes` under `engine` to power-off; the machine at the end.
fn finish(bytes: &[u8], engine: Engine) -> Machine {
    let mut m = machine_with(elf(bytes));
    m.set_jit_threshold(1);
    m.set_engine(engine);
    loop {
        match m.run(ICount(m.icount().0 + 1_000_000)) {
            Exit::PowerOff { .. } => return m,
            Exit::Output => drop(m.take_outputs()),
            e => panic!(
                "unexpected exit {e:?} at pc {:#x} (mcause {:#x} mepc {:#x})",
                m.hart.s.pc, m.hart.s.csr.mcause, m.hart.s.csr.mepc
            ),
        }
    }
}

/// Both engines (and the mixed machine) agree at every step size tried, and the
/// JIT's result is `expect(machine)`.
fn agree(bytes: Vec<u8>, mode: Mode, expect: impl Fn(&Machine)) {
    for step in [1, 3, 17, 100, 1_000, 1_000_000] {
        let case = Case {
            elf: elf(&bytes),
            mode,
            steps: vec![(step, None); (2_000_000 / step).min(5_000) as usize],
        };
        if let Err(e) = check(&case) {
            panic!("steps of {step}: {e}");
        }
    }
    let jit = finish(&bytes, Engine::Jit);
    assert!(
        jit.jit_stats().is_some_and(|s| s.compiled > 0),
        "the JIT compiled nothing"
    );
    expect(&jit);
    expect(&finish(&bytes, Engine::Interp));
}

#[test]
fn a_user_page_cached_with_sum_faults_from_s_mode_once_sum_is_clear() {
    let bytes = program(1, [V | R | W | A | D | U, 0, 0, 0], |a| {
        a.li(S0, VA).li(T2, 1 << 18);
        rounds(a, |a| {
            a.i(csrrs(0, 0x100, T2)); // SUM on: the load fills the TLB (a U page)
            a.i(lw(A0, S0, 0)).i(add(A1, A1, A0));
            a.i(csrrc(0, 0x100, T2)); // SUM off: the same load must fault
            a.i(lw(A0, S0, 0)).i(addi(A2, A2, 1));
        });
    });
    agree(bytes, Mode::Supervisor, |m| {
        assert_eq!(x(m, T4), ROUNDS, "one fault per round");
        assert_eq!(x(m, A2), ROUNDS);
    });
}

#[test]
fn an_execute_only_page_reads_only_with_mxr() {
    let bytes = program(1, [V | X | A | D, 0, 0, 0], |a| {
        a.li(S0, VA).li(T2, 1 << 19);
        rounds(a, |a| {
            a.i(csrrs(0, 0x100, T2));
            a.i(ld(A0, S0, 8)).i(add(A1, A1, A0));
            a.i(csrrc(0, 0x100, T2));
            a.i(ld(A0, S0, 8)).i(addi(A2, A2, 1));
        });
    });
    agree(bytes, Mode::Supervisor, |m| assert_eq!(x(m, T4), ROUNDS));
}

#[test]
fn code_rewritten_by_compiled_code_runs_new_next_time() {
    // The loop (compiled) rewrites an ADDI in a function on another page each round,
    // then calls it: every call must run the word just stored. (Code that rewrites
    // its own page is never compiled: each write drops the page's cached code.)
    let mut a = Asm::new();
    let (func, top) = (a.label(), a.label());
    a.la(S2, func).li(S4, ROUNDS).li(A0, 0);
    a.li(T1, addi(A0, A0, 1) as u64)
        .li(T2, addi(A0, A0, 100) as u64);
    a.bind(top);
    // Odd rounds store +100, even rounds +1.
    a.i(andi(T0, S4, 1));
    a.i(sub(T3, T2, T1)).i(mul(T3, T3, T0)).i(add(T3, T3, T1));
    a.i(sw(T3, S2, 0));
    a.to(func, |o| vec![jal(RA, o)]);
    a.i(addi(S4, S4, -1));
    a.br(top, |o| blt(ZERO, S4, o));
    a.halt();
    while !a.here().is_multiple_of(0x1000) {
        a.i(0);
    }
    a.bind(func);
    a.i(addi(A0, A0, 1)).i(jalr(ZERO, RA, 0));
    let odd = ROUNDS / 2;
    agree(a.bytes(), Mode::Machine, |m| {
        assert_eq!(
            x(m, A0),
            odd * 100 + (ROUNDS - odd),
            "every call ran the new word"
        );
    });
}

#[test]
fn data_beside_code_on_one_page_does_not_stop_compiled_code() {
    // A counter kept in the page of the loop itself, in a 64-byte chunk of its own:
    // the stores are data, not code, and the loop stays compiled.
    let mut a = Asm::new();
    let (var, top, over) = (a.label(), a.label(), a.label());
    a.la(S2, var).li(S4, ROUNDS * 10);
    a.bind(top);
    a.i(ld(T0, S2, 0)).i(addi(T0, T0, 3)).i(sd(T0, S2, 0));
    a.i(addi(S4, S4, -1));
    a.br(top, |o| blt(ZERO, S4, o));
    a.j(over);
    while !a.here().is_multiple_of(64) {
        a.i(0);
    }
    a.bind(var);
    for _ in 0..16 {
        a.i(0);
    }
    a.bind(over);
    a.i(ld(A0, S2, 0));
    a.halt();
    agree(a.bytes(), Mode::Machine, |m| {
        assert_eq!(x(m, A0), ROUNDS * 30)
    });
}

#[test]
fn device_accesses_mid_block_leave_the_block_after_them() {
    // mtime is read (and mtimecmp written) between plain instructions.
    let mut a = Asm::new();
    a.li(S0, CLINT_BASE + 0xbff8)
        .li(S1, CLINT_BASE + 0x4000)
        .li(A1, 0);
    rounds(&mut a, |a| {
        a.i(addi(A1, A1, 1)).i(ld(A0, S0, 0)).i(add(A2, A2, A0));
        a.i(sd(A0, S1, 0)).i(addi(A1, A1, 1));
    });
    a.halt();
    agree(a.bytes(), Mode::Machine, |m| {
        assert_eq!(x(m, A1), 2 * ROUNDS)
    });
}

#[test]
fn misaligned_and_page_crossing_accesses_match() {
    let bytes = program(1, [V | R | W | A | D; 4], |a| {
        a.li(S0, VA + 0xffd);
        rounds(a, |a| {
            a.i(ld(A0, S0, 0)).i(addi(A0, A0, 7)).i(sd(A0, S0, 0));
            a.i(lw(A1, S0, 2))
                .i(sh(A1, S0, 1))
                .i(lhu(A2, S0, 3))
                .i(add(A3, A3, A2));
        });
    });
    agree(bytes, Mode::Supervisor, |m| {
        assert_eq!(x(m, T4), 0, "no faults")
    });
}

#[test]
fn an_instruction_straddling_a_page_runs_between_compiled_blocks() {
    let mut a = Asm::new();
    let top = a.label();
    a.li(S4, ROUNDS).li(A0, 0);
    // Pad so that a 4-byte instruction starts at page offset 0xffe.
    while !(a.here() + 2).is_multiple_of(0x1000) {
        a.c(0x0001); // c.nop
    }
    a.bind(top);
    a.i(addi(A0, A0, 5));
    a.i(addi(S4, S4, -1));
    a.br(top, |o| blt(ZERO, S4, o));
    a.halt();
    agree(a.bytes(), Mode::Machine, |m| {
        assert_eq!(x(m, A0), 5 * ROUNDS)
    });
}

#[test]
fn a_pte_change_takes_effect_after_sfence_in_compiled_code() {
    // Each round maps page 0 read-only, stores (fault), maps it writable, stores (ok).
    let bytes = program(1, [V | R | W | A | D, 0, 0, 0], |a| {
        a.li(S0, VA).li(S3, L0);
        a.li(T2, pte(PAGES, V | R | A | D))
            .li(T3, pte(PAGES, V | R | W | A | D));
        rounds(a, |a| {
            a.i(sd(T2, S3, 0)).i(sfence_vma(0, 0));
            a.i(sd(A0, S0, 0)).i(addi(A0, A0, 1));
            a.i(sd(T3, S3, 0)).i(sfence_vma(0, 0));
            a.i(sd(A0, S0, 8));
        });
    });
    agree(bytes, Mode::Supervisor, |m| assert_eq!(x(m, T4), ROUNDS));
}

#[test]
fn atomics_floating_point_and_csrs_in_compiled_blocks_match() {
    let bytes = program(3, [0; 4], |a| {
        a.li(S0, PAGES).li(T0, 1 << 13).i(csrrs(0, 0x300, T0));
        rounds(a, |a| {
            a.i(amoadd_d(A0, S4, S0))
                .i(lr_d(A1, S0))
                .i(sc_d(A2, A1, S0));
            a.i(fmv_d_x(1, S4)).i(fadd_d(2, 2, 1)).i(csrr(A3, 0x001));
            a.i(csrr(A4, 0xc02)).i(add(A5, A5, A4));
        });
    });
    agree(bytes, Mode::Machine, |m| {
        assert_eq!(peek64(m, PAGES), (1..=ROUNDS).sum::<u64>());
    });
}

#[test]
fn a_tiny_code_cache_is_emptied_when_full_and_results_do_not_change() {
    // Many distinct blocks (one per branch) and a cache that holds only a few.
    let mut a = Asm::new();
    a.li(A0, 0);
    rounds(&mut a, |a| {
        for k in 0..200 {
            let l = a.label();
            a.i(addi(A0, A0, k));
            a.br(l, |o| bne(A0, ZERO, o));
            a.i(addi(A1, A1, 1));
            a.bind(l);
        }
    });
    a.halt();
    let bytes = a.bytes();
    let mut m = machine_with(elf(&bytes));
    m.set_engine(Engine::Jit);
    m.set_jit_threshold(1);
    m.set_code_cache_limit(16 << 10);
    // Short run calls (about 200 over the program): each has its own compile budget,
    // whose first compile is always allowed, so at least one hot block compiles per
    // call however slow the host is — far more code than the cache holds. (With
    // 10,000-instruction calls, 2–3 in all, a loaded CI host compiled only 31 blocks
    // within the budgets and never filled the cache.)
    while !matches!(m.run(ICount(m.icount().0 + 100)), Exit::PowerOff { .. }) {}
    let s = m.jit_stats().unwrap();
    assert!(s.flushes > 0, "{s:?}");
    assert!(s.code_bytes <= s.code_limit, "{s:?}");
    let i = finish(&bytes, Engine::Interp);
    assert_eq!(m.state_hash(), i.state_hash());
}
