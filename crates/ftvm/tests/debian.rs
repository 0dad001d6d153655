//! The Debian riscv64 image (guest/debian/build-image.sh, cached under ~/.cache/ftvm) on
//! ftvm: unmodified Debian binaries, driven from the host by their own clients
//! (redis-cli, psql, curl) through `scripts/debian --check`; and the bad inputs a user
//! can give it, each a one-line error.

mod common;
use common::*;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

/// One guest at a time: they share the host ports and the machine's two cores.
static ONE_GUEST: Mutex<()> = Mutex::new(());

/// Run `scripts/debian ARGS` with this build's ftvm and ports of its own.
fn debian(args: &[&str], ports: u16) -> Output {
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(repo().join("scripts/debian"))
        .args(args)
        .env("FTVM", env!("CARGO_BIN_EXE_ftvm"))
        .env("REDIS_PORT", ports.to_string())
        .env("PG_PORT", (ports + 1).to_string())
        .env("HTTP_PORT", (ports + 2).to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/debian");
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The last line on stderr must be the error naming the problem.
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("error:")).collect();
    assert_eq!(errors.len(), 1, "expected one error line in: {err}");
    assert!(
        errors[0].contains(needle),
        "expected {needle:?} in {errors:?}"
    );
}

#[test]
fn the_project_kernel_boots_debian_and_its_servers_answer_their_own_clients() {
    let out = debian(&["--check", "--kernel", "ftvm", "--init", "minimal"], 26379);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("redis-cli: SET/GET -> OK hello"), "{text}");
    assert!(text.contains("psql: select 6*7 -> 42"), "{text}");
    assert!(text.contains("curl: GET / -> HTTP 200"), "{text}");
}

#[test]
fn debians_own_kernel_and_systemd_boot_the_image_and_serve_redis() {
    let out = debian(
        &[
            "--check",
            "--kernel",
            "debian",
            "--init",
            "systemd",
            "--service",
            "redis",
        ],
        26389,
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("redis-cli: SET/GET -> OK hello"), "{text}");
}

#[test]
fn a_missing_image_is_one_line_error() {
    let out = debian(&["--check", "--image", "/nonexistent/disk.img"], 26399);
    assert_one_line_error(&out, "no disk image at /nonexistent/disk.img");
}

#[test]
fn an_image_that_is_not_ext4_is_refused() {
    let img = scratch("debian").join("zeros.img");
    std::fs::write(&img, vec![0u8; 4 << 20]).unwrap();
    let out = debian(&["--check", "--image", img.to_str().unwrap()], 26399);
    assert_one_line_error(&out, "is not an ext4 file system");
}

/// A small ext4 image holding `files` (path, contents) made with mke2fs -d.
fn ext4_image(name: &str, files: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = scratch("debian").join(format!("{name}-root"));
    for (path, body) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    let img = scratch("debian").join(format!("{name}.img"));
    let ok = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&dir)
        .arg(&img)
        .arg("16M")
        .status()
        .expect("run mke2fs")
        .success();
    assert!(ok, "mke2fs failed");
    img
}

#[test]
fn a_corrupt_ext4_image_is_refused() {
    let img = ext4_image("corrupt", &[("etc/hostname", "x\n")]);
    // Overwrite the block group descriptors and the inode table's start (block 1
    // onwards at 1 KiB blocks; 4 KiB blocks: the descriptors follow the superblock).
    let mut bytes = std::fs::read(&img).unwrap();
    for b in &mut bytes[4096..4096 * 64] {
        *b = 0xa5;
    }
    std::fs::write(&img, bytes).unwrap();
    let out = debian(&["--check", "--image", img.to_str().unwrap()], 26399);
    assert_one_line_error(&out, "the ext4 file system is corrupt");
}

#[test]
fn a_service_the_image_does_not_have_is_named() {
    let img = ext4_image("no-redis", &[("usr/sbin/nginx", "")]);
    let out = debian(
        &[
            "--check",
            "--image",
            img.to_str().unwrap(),
            "--service",
            "redis",
        ],
        26399,
    );
    assert_one_line_error(&out, "service redis is not in");
}

#[test]
fn a_root_device_that_does_not_exist_stops_the_boot_with_the_kernels_reason() {
    let out = debian(
        &["--check", "--root", "/dev/vdb", "--service", "redis"],
        26399,
    );
    assert_one_line_error(&out, "Unable to mount root fs");
}

#[test]
fn a_package_debian_does_not_have_is_refused_before_anything_is_built() {
    let cache = scratch("debian").join("cache");
    let out = Command::new(repo().join("guest/debian/build-image.sh"))
        .args(["--packages", "redis-server,no-such-package-ftvm"])
        .env("FTVM_CACHE", &cache)
        .env("OUT", scratch("debian").join("out"))
        .output()
        .expect("run build-image.sh");
    assert_one_line_error(&out, "no riscv64 package named: no-such-package-ftvm");
    // Nothing was left in the cache.
    let left: Vec<_> = std::fs::read_dir(cache.join("debian"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the cache: {left:?}");
}

/// The Debian image's files (built or found in the cache by build-image.sh).
fn debian_image() -> std::path::PathBuf {
    let ok = Command::new(repo().join("guest/debian/build-image.sh"))
        .stdout(Stdio::null())
        .status()
        .expect("run build-image.sh")
        .success();
    assert!(ok, "building the Debian image failed");
    repo().join("target/debian")
}

/// `ftvm demo --service NAME` on the Debian image with the project's kernel; the
/// summary's lines by name.
fn debian_demo(service: &str, extra: &[&str]) -> impl Fn(&str) -> String {
    let img = debian_image();
    let (kernel, _) = linux_guest();
    let cmdline = std::fs::read_to_string(img.join("cmdline-minimal")).unwrap();
    let append = format!("{} services={service}", cmdline.trim());
    let dir = scratch(&format!("debian-{service}-ft"));
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let disk = img.join("disk.img");
    let mut args = vec![
        "demo",
        "--service",
        service,
        "--kernel",
        kernel.to_str().unwrap(),
        "--memory",
        "512",
        "--append",
        &append,
        "--disk",
        disk.to_str().unwrap(),
        "--dir",
        dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = ftvm_with_timeout(&args, std::time::Duration::from_secs(1200));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{text}");
    move |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no '{key}' in the summary:\n{text}"))
            .to_string()
    }
}

#[test]
fn redis_on_debian_loses_nothing_acknowledged_across_two_failovers_under_load() {
    let value = debian_demo(
        "redis",
        &["--failovers", "2", "--before", "4", "--after", "4"],
    );
    assert_eq!(value("failovers"), "2");
    assert_eq!(value("client errors"), "0");
    assert_eq!(value("operations unanswered"), "0");
    assert!(
        value("linearizable").starts_with("yes"),
        "linearizable: {}",
        value("linearizable")
    );
}

#[test]
fn postgres_on_debian_keeps_every_acknowledged_insert_and_pgbench_runs_through_a_failover() {
    let value = debian_demo("postgres", &["--before", "5", "--after", "5"]);
    assert_eq!(value("failovers"), "1");
    assert_eq!(value("acknowledged ids lost"), "0");
    assert_eq!(value("client errors"), "0");
    // "R runs of 4 clients x T transactions, F failed, N transactions; ...": every run
    // went to its end, and they did work.
    let pgbench = value("pgbench");
    assert!(pgbench.contains(", 0 failed, "), "pgbench: {pgbench}");
    let done: u64 = pgbench
        .split(", ")
        .nth(2)
        .and_then(|p| p.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no transaction count in '{pgbench}'"));
    assert!(done > 0, "pgbench: {pgbench}");
}
