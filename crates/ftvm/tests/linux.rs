//! Boot the real Linux guest (guest/linux/build.sh: Debian's linux-source-6.1 and the
//! repo's own /init) with the built-in SBI and with Debian's OpenSBI.

mod common;
use common::*;

fn boot(extra: &[&str], append: &str) -> std::process::Output {
    let (k, i) = linux_guest();
    let mut args = vec![
        "run",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--append", append]);
    ftvm(&args)
}

fn assert_boots(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success()
            && stdout.contains("ftvm-guest ready")
            && stdout.contains("reboot: Power down"),
        "boot failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn boots_with_builtin_sbi_and_powers_off() {
    let out = boot(&[], "console=ttyS0 mode=hello");
    let stdout = assert_boots(&out);
    assert!(stdout.contains("Linux version 6.1"), "{stdout}");
    // U-mode reads of the time CSR (vDSO clock_gettime) work: init prints uptime.
    assert!(stdout.contains("uptime: 0."), "{stdout}");
}

#[test]
fn boots_with_opensbi_firmware() {
    let fw = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin";
    assert!(
        std::path::Path::new(fw).exists(),
        "Debian's opensbi package is not installed"
    );
    let out = boot(&["--bios", fw], "console=ttyS0 mode=hello");
    let stdout = assert_boots(&out);
    assert!(stdout.contains("OpenSBI v1."), "{stdout}");
}

#[test]
fn a_linux_boot_is_deterministic() {
    let a = boot(&[], "console=ttyS0 earlycon=sbi mode=hello");
    let b = boot(&[], "console=ttyS0 earlycon=sbi mode=hello");
    assert_boots(&a);
    assert_eq!(
        a.stdout, b.stdout,
        "console output differs between two boots"
    );
    assert_eq!(final_state(&a), final_state(&b));
}

#[test]
fn linux_snapshot_mid_boot_resumes_to_the_same_state() {
    let dir = scratch("linux-snap");
    let snap = dir.join("mid.snap");
    let (k, i) = linux_guest();
    let base = [
        "run",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--append",
        "console=ttyS0",
    ];
    let straight = ftvm(&[&base[..], &["--stop-at", "15000000"]].concat());
    let first = ftvm(
        &[
            &base[..],
            &["--stop-at", "7000000", "--save", snap.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(first.status.success());
    let resumed = ftvm(&[
        "run",
        "--restore",
        snap.to_str().unwrap(),
        "--stop-at",
        "15000000",
    ]);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_eq!(final_state(&resumed), final_state(&straight));
    let mut joined = first.stdout.clone();
    joined.extend_from_slice(&resumed.stdout);
    assert_eq!(joined, straight.stdout);
}

#[test]
fn linux_bench_mode_computes_the_reference_checksum() {
    // The checksum was computed on QEMU; a wrong ALU, FP or memory result changes it.
    let out = boot(&[], "console=ttyS0 mode=bench");
    let stdout = assert_boots(&out);
    assert!(stdout.contains("(ok)"), "{stdout}");
}

#[test]
fn entropy_reaches_the_guest_through_virtio_rng() {
    // A network makes the run live, which attaches host entropy behind virtio-rng.
    let out = boot(&["--net", "user"], "console=ttyS0 mode=hello");
    let stdout = assert_boots(&out);
    assert!(stdout.contains("hwrng: read 16 bytes"), "{stdout}");
    // Without one, the machine has no entropy device (a deterministic run).
    let out = boot(&[], "console=ttyS0 mode=hello");
    assert!(String::from_utf8_lossy(&out.stdout).contains("hwrng: none"));
}
