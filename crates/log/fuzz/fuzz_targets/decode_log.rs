//! Arbitrary bytes through the header and entry decoder: it must never panic, and must
//! never allocate more than the bytes present (libFuzzer's `-rss_limit_mb` and
//! `-malloc_limit_mb` catch the second).
//!
//! From `crates/log` (stable toolchain: `RUSTC_BOOTSTRAP=1`):
//! `cargo fuzz run decode_log fuzz/corpus/decode_log fuzz/seeds/decode_log -- -max_total_time=60 -malloc_limit_mb=128`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = ftvm_log::LogReader::open(data) else {
        return;
    };
    let _ = reader.header().check(&[0; 32], 0);
    for entry in reader {
        if entry.is_err() {
            break;
        }
    }
});
