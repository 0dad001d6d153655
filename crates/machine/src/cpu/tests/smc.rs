//! Self-modifying code. The spec only promises that a store becomes visible to
//! instruction fetch after FENCE.I (unprivileged spec ch. 6, Zifencei); ftvm is
//! stricter: the decoded-block cache follows every RAM write, so the next fetch of a
//! modified instruction always sees the new bits, fence or not.

use crate::testutil::reg::*;
use crate::testutil::*;

/// A loop whose body `addi a0, a0, 1` is overwritten with `addi a0, a0, 100` after
/// its first execution; `fence` (if any) follows the store.
fn patch_in_loop(fence: Option<u32>) -> u64 {
    let mut a = Asm::new();
    let (top, target, done) = (a.label(), a.label(), a.label());
    a.la(A1, target).li(A2, addi(A0, A0, 100) as u64).li(S1, 3);
    a.bind(top);
    a.bind(target);
    a.i(addi(A0, A0, 1));
    a.i(addi(S0, S0, 1));
    a.br(done, |o| beq(S0, S1, o));
    a.i(sw(A2, A1, 0));
    if let Some(f) = fence {
        a.i(f);
    }
    a.j(top);
    a.bind(done);
    a.halt();
    x(&a.run(), A0)
}

#[test]
fn fence_i_makes_a_patched_instruction_visible() {
    assert_eq!(patch_in_loop(Some(FENCE_I)), 1 + 100 + 100);
}

#[test]
fn patched_instruction_is_visible_without_fence_i() {
    // Stricter than the spec requires (see the module comment).
    assert_eq!(patch_in_loop(None), 1 + 100 + 100);
    assert_eq!(patch_in_loop(Some(FENCE)), 1 + 100 + 100);
}

#[test]
fn store_to_the_next_instruction_in_the_same_block_takes_effect() {
    // The store and its target are in one straight-line block already decoded.
    let mut a = Asm::new();
    let target = a.label();
    a.la(A1, target).li(A2, addi(A0, ZERO, 7) as u64);
    a.i(addi(A3, ZERO, 1)).i(sw(A2, A1, 0)).i(addi(A4, ZERO, 2));
    a.bind(target);
    a.i(addi(A0, ZERO, 5));
    a.halt();
    let m = a.run();
    assert_eq!(x(&m, A0), 7);
    assert_eq!((x(&m, A3), x(&m, A4)), (1, 2));
}

#[test]
fn compressed_patch_over_half_of_a_cached_instruction() {
    // Replace the low half of a 32-bit `addi a0, zero, 5` by `c.li a0, 9` + `c.nop`:
    // the block must be re-decoded with the new instruction boundaries.
    let mut a = Asm::new();
    let (top, target, done) = (a.label(), a.label(), a.label());
    a.la(A1, target).li(A2, 0x0001_4525).li(S1, 2); // c.li a0,9 ; c.nop
    a.bind(top);
    a.bind(target);
    a.i(addi(A0, ZERO, 5));
    a.i(add(S2, S2, A0)).i(addi(S0, S0, 1));
    a.br(done, |o| beq(S0, S1, o));
    a.i(sw(A2, A1, 0)).j(top);
    a.bind(done);
    a.halt();
    let m = a.run();
    assert_eq!(x(&m, S2), 5 + 9);
}
