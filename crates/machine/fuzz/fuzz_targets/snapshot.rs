//! A hostile snapshot: the input is the container's payload (the fuzzer would never
//! get past the CRC32C otherwise), sealed here with a valid header and checksum.
//! `Machine::restore` must refuse it with an error or give a machine that runs a few
//! thousand instructions and hashes its state, never panic or allocate without bound.
#![no_main]

#[path = "../../../../fuzz/alloc_limit.rs"]
mod alloc_limit;

use ftvm_machine::{ICount, Machine};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    let mut snap = Vec::with_capacity(payload.len() + 24);
    snap.extend_from_slice(b"FTVMSNAP");
    snap.extend_from_slice(&ftvm_machine::snapshot::FORMAT_VERSION.to_le_bytes());
    snap.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    snap.extend_from_slice(payload);
    let crc = crc32c::crc32c(&snap);
    snap.extend_from_slice(&crc.to_le_bytes());
    if let Ok(mut m) = Machine::restore(&snap) {
        let until = m.icount().0.saturating_add(5_000);
        for _ in 0..16 {
            if !matches!(m.run(ICount(until)), ftvm_machine::Exit::Output) {
                break;
            }
            m.take_outputs();
        }
        m.state_hash();
    }
});
