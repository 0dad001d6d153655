//! Bare-metal guest programs (guest/baremetal, built with Debian's riscv64 gcc by the
//! repo's script) run under `ftvm run --bios none` and report pass/fail through the
//! sifive-test device, exactly as they do on QEMU's `virt` machine.

mod common;
use common::*;

fn run_passes(name: &str) {
    let g = guest(name);
    let out = ftvm(&["run", "--bios", "none", "--kernel", g.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("PASS"),
        "{name} failed with {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn hello_prints_and_powers_off() {
    let g = guest("hello");
    let out = ftvm(&["run", "--bios", "none", "--kernel", g.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hello from ftvm guest\r\n"));
}

#[test]
fn rv64i() {
    run_passes("rv64i");
}

#[test]
fn rv64m() {
    run_passes("rv64m");
}

#[test]
fn rv64a() {
    run_passes("rv64a");
}

#[test]
fn compressed() {
    run_passes("rvc");
}

#[test]
fn floating_point() {
    run_passes("fp");
}

#[test]
fn csrs_traps_and_timer_interrupt() {
    run_passes("csr_trap");
}

#[test]
fn supervisor_mode_and_sv39() {
    run_passes("smode");
}

#[test]
fn guest_fail_code_becomes_exit_status() {
    let g = guest("exit_code");
    let out = ftvm(&["run", "--bios", "none", "--kernel", g.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(42),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
