//! Unmodified third-party programs in the guest: Debian's busybox (cross-built from the
//! source package) and a static Go program, built by `guest/linux/build.sh
//! --thirdparty` and run by init's `thirdparty` mode, which checks each one's output.

mod common;
use common::*;

#[test]
fn busybox_and_go_programs_run_in_the_guest() {
    let out_dir = repo().join("target/guest");
    let ok = std::process::Command::new("bash")
        .arg(repo().join("guest/linux/build.sh"))
        .arg("--thirdparty")
        .env("OUT", &out_dir)
        .status()
        .expect("run guest/linux/build.sh --thirdparty")
        .success();
    assert!(ok, "building the third-party guest programs failed");
    let k = out_dir.join("Image");
    let i = out_dir.join("initramfs-full.cpio");
    let out = ftvm(&[
        "run",
        "--kernel",
        k.to_str().unwrap(),
        "--initrd",
        i.to_str().unwrap(),
        "--memory",
        "256",
        "--append",
        "console=ttyS0 mode=thirdparty",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("goprobe: ok"), "{stdout}");
    assert!(
        stdout.contains("thirdparty: 9 passed, 0 failed"),
        "{stdout}"
    );
}
