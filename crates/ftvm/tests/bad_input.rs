//! Bad input gives a one-line error naming the problem and a non-zero exit, never a
//! panic.

mod common;
use common::*;
use std::process::Output;

fn assert_clean_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success: {err}"
    );
    assert!(!err.contains("panicked"), "panic: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("ftvm: error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

/// A minimal ELF64 RISC-V executable with one PT_LOAD segment.
fn elf(paddr: u64, filesz: u64, memsz: u64) -> Vec<u8> {
    let mut e = vec![0u8; 64 + 56];
    e[..4].copy_from_slice(b"\x7fELF");
    e[4] = 2; // 64-bit
    e[5] = 1; // little-endian
    e[6] = 1;
    e[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e[18..20].copy_from_slice(&243u16.to_le_bytes()); // EM_RISCV
    e[20..24].copy_from_slice(&1u32.to_le_bytes());
    e[24..32].copy_from_slice(&paddr.to_le_bytes()); // entry
    e[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
    e[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
    e[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
    e[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
    let ph = &mut e[64..120];
    ph[0..4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    ph[8..16].copy_from_slice(&120u64.to_le_bytes()); // offset
    ph[16..24].copy_from_slice(&paddr.to_le_bytes());
    ph[24..32].copy_from_slice(&paddr.to_le_bytes());
    ph[32..40].copy_from_slice(&filesz.to_le_bytes());
    ph[40..48].copy_from_slice(&memsz.to_le_bytes());
    e.extend(std::iter::repeat_n(0x13, filesz as usize)); // nops-ish bytes
    e
}

fn write(name: &str, bytes: &[u8]) -> String {
    let p = scratch("bad-input").join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn missing_kernel_file() {
    assert_clean_error(
        &ftvm(&["run", "--kernel", "/nonexistent/kernel"]),
        "cannot read kernel",
    );
}

#[test]
fn not_a_riscv_image() {
    let p = write(
        "text.bin",
        b"this is not a kernel at all, just some text padding it out to 64 bytes+",
    );
    assert_clean_error(&ftvm(&["run", "--kernel", &p]), "not a RISC-V image");
}

#[test]
fn elf_for_another_architecture() {
    let mut e = elf(0x8000_0000, 16, 16);
    e[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
    let p = write("x86.elf", &e);
    assert_clean_error(&ftvm(&["run", "--kernel", &p]), "not for 64-bit RISC-V");
}

#[test]
fn truncated_elf() {
    let e = elf(0x8000_0000, 4096, 4096);
    let p = write("trunc.elf", &e[..1000]);
    assert_clean_error(
        &ftvm(&["run", "--bios", "none", "--kernel", &p]),
        "malformed",
    );
    let p = write("trunc-header.elf", &e[..40]);
    assert_clean_error(
        &ftvm(&["run", "--bios", "none", "--kernel", &p]),
        "malformed",
    );
}

#[test]
fn memory_too_small_for_the_image() {
    let p = write("big.elf", &elf(0x8000_0000, 16, 64 << 20));
    assert_clean_error(
        &ftvm(&["run", "--bios", "none", "--memory", "32", "--kernel", &p]),
        "does not fit",
    );
    assert_clean_error(
        &ftvm(&["run", "--bios", "none", "--memory", "4", "--kernel", &p]),
        "out of range",
    );
}

#[test]
fn segment_outside_ram() {
    let p = write("low.elf", &elf(0x1000, 16, 16));
    assert_clean_error(
        &ftvm(&["run", "--bios", "none", "--kernel", &p]),
        "does not fit",
    );
}

#[test]
fn bad_snapshot() {
    let p = write("notsnap", b"hello");
    assert_clean_error(&ftvm(&["run", "--restore", &p]), "not an ftvm snapshot");
    let g = guest("hello");
    let snap = scratch("bad-input").join("good.snap");
    let out = ftvm(&[
        "run",
        "--bios",
        "none",
        "--kernel",
        g.to_str().unwrap(),
        "--stop-at",
        "10",
        "--save",
        snap.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    let p = write("corrupt.snap", &bytes);
    assert_clean_error(&ftvm(&["run", "--restore", &p]), "corrupt");
    let p = write("short.snap", &bytes[..mid]);
    assert_clean_error(&ftvm(&["run", "--restore", &p]), "truncated");
}

#[test]
fn missing_firmware_file() {
    let g = guest("hello");
    assert_clean_error(
        &ftvm(&[
            "run",
            "--bios",
            "/nonexistent/fw.bin",
            "--kernel",
            g.to_str().unwrap(),
        ]),
        "cannot read firmware",
    );
}

#[test]
fn m_mode_program_without_bios_none_is_a_clear_error() {
    // The bare-metal programs start in M-mode; with the built-in SBI they start in
    // S-mode, fault on their first M-mode CSR access, and must be stopped with a hint.
    let g = guest("hello");
    let out = ftvm(&["run", "--kernel", g.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("stuck") && err.contains("--bios none"),
        "{err}"
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn a_debian_service_demo_without_the_debian_disk() {
    // It used to boot the counter guest and wait 120 s for a Redis that was never there.
    for service in ["redis", "postgres"] {
        let out = ftvm(&["demo", "--service", service]);
        assert_clean_error(&out, "--disk");
    }
}
