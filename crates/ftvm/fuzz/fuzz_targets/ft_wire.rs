//! The logging channel's transfer phase from a hostile peer (crates/ftvm/src/ft/wire.rs):
//! the input is the byte stream after the handshake.
//!
//! 1. Every message in it is decoded as either side reads it (`wire::recv`), and an
//!    offer's boot configuration as the backup decodes it.
//! 2. The same bytes go to the backup's `transfer::receive`, into a small machine with a
//!    disk copy: pages, disk pieces and the final state from the peer must be refused or
//!    applied, never panic, never write outside the machine's RAM or the disk, and never
//!    allocate by an unchecked length (run with `-malloc_limit_mb`).
#![no_main]

use ftvm::ft::{transfer, wire};
use ftvm_machine::boot::{DeviceConfig, DiskConfig};
use ftvm_machine::testutil::{config, elf};
use ftvm_machine::{BootConfig, Machine, PAGE_SIZE};
use libfuzzer_sys::fuzz_target;
use std::fs::File;
use std::sync::OnceLock;

/// Sectors of the fuzzed backup's disk.
const SECTORS: u64 = 64;

fn disk() -> &'static File {
    static DISK: OnceLock<File> = OnceLock::new();
    DISK.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("ftvm-fuzz-disk-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("a scratch disk");
        let _ = std::fs::remove_file(&path);
        f
    })
}

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    let mut transfer = None;
    while let Ok(m) = wire::recv(&mut r, PAGE_SIZE) {
        let applies = matches!(
            m,
            wire::Message::Pages(_) | wire::Message::Disk(..) | wire::Message::Final(_)
        );
        transfer.get_or_insert(applies);
        match m {
            wire::Message::Offer(o) => {
                let _ = postcard::from_bytes::<BootConfig>(&o.config);
            }
            wire::Message::Pages(pages) => {
                for (_, d) in pages {
                    assert!(d.is_none_or(|d| d.len() == PAGE_SIZE));
                }
            }
            _ => {}
        }
    }
    // Building the machine costs far more than decoding: only when the transfer would
    // apply something.
    if transfer != Some(true) {
        return;
    }
    let mut cfg = config(elf(&[0x6f, 0, 0, 0])); // j .
    cfg.devices = DeviceConfig {
        disk: Some(DiskConfig {
            sectors: SECTORS,
            read_only: false,
        }),
        net: Some([2, 0, 0, 0, 0, 1]),
        rng: true,
    };
    let machine = Machine::new(&cfg).expect("the fuzzed backup's machine");
    let f = disk();
    f.set_len(0).unwrap();
    f.set_len(SECTORS * 512).unwrap();
    let _ = transfer::receive(&mut &data[..], machine, Some(f), &mut |_| {});
    assert_eq!(
        f.metadata().unwrap().len(),
        SECTORS * 512,
        "the peer wrote outside the disk"
    );
});
