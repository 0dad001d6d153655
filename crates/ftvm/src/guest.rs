//! The default guest: the Linux kernel and initramfs built by `guest/linux/build.sh`.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Boot files of the default guest.
pub struct Guest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// The repository this binary was built from (the guest build script lives there).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The default guest, built (or refreshed from the cache) by the repo's script. The
/// script is quick when nothing changed, and rebuilds when its inputs changed.
pub fn default_guest() -> Result<Guest> {
    let dir = match std::env::var_os("FTVM_GUEST_DIR") {
        Some(d) => PathBuf::from(d),
        None => repo().join("target/guest"),
    };
    let script = repo().join("guest/linux/build.sh");
    if !script.exists() {
        bail!(
            "no --kernel given and the guest build script {} is missing",
            script.display()
        );
    }
    eprintln!(
        "ftvm: preparing the default guest (guest/linux/build.sh; the first build takes minutes)"
    );
    let status = Command::new("bash")
        .arg(&script)
        .env("OUT", &dir)
        .stdout(std::process::Stdio::null())
        .status()
        .context("cannot run guest/linux/build.sh")?;
    if !status.success() {
        bail!(
            "building the default guest failed ({status}); run {} to see why",
            script.display()
        );
    }
    Ok(Guest {
        kernel: dir.join("Image"),
        initrd: dir.join("initramfs.cpio"),
    })
}
