//! The arbiter on hostile bytes (crates/arbiter): a state file it finds at start and the
//! requests of an authenticated client, and the replies a client decodes.
//!
//! Input: `body_len: u16 LE | state body | frames…`, each frame `identity: u8 | len: u8
//! | payload`. The state body is sealed here with a valid header and CRC32C (the fuzzer
//! would not get past the checksum otherwise) and opened with `Arbiter::open`, which
//! must refuse it or load it; then each payload is decoded as a session decodes it
//! (`decode_message`) and served (`Arbiter::handle`, over TLS as node `a` when the
//! identity byte is odd), and decoded as a `Reply` as a client would. Nothing may
//! panic or allocate by an unchecked length.
#![no_main]

#[path = "../../../../fuzz/alloc_limit.rs"]
mod alloc_limit;

use ftvm_arbiter::{decode_message, Arbiter, Reply, Request, STATE_MAGIC, STATE_VERSION};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn state_path() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("ftvm-fuzz-arbiter-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        dir.join("state")
    })
}

fn split(data: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (data.len() >= n).then(|| data.split_at(n))
}

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = split(data, 2) else {
        return;
    };
    let Some((body, mut frames)) = split(rest, u16::from_le_bytes([len[0], len[1]]) as usize)
    else {
        return;
    };
    let path = state_path();
    let mut file = Vec::with_capacity(20 + body.len());
    file.extend_from_slice(STATE_MAGIC);
    file.extend_from_slice(&STATE_VERSION.to_le_bytes());
    file.extend_from_slice(&(body.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&file), body);
    file.extend_from_slice(&crc.to_le_bytes());
    file.extend_from_slice(body);
    std::fs::write(path, &file).expect("writing the state file");
    let arbiter = match Arbiter::open(path, b"secret") {
        Ok(a) => a,
        Err(_) => {
            std::fs::remove_file(path).expect("removing a refused state file");
            Arbiter::open(path, b"secret").expect("an arbiter on an empty state")
        }
    };
    while let Some((head, rest)) = split(frames, 2) {
        let Some((payload, rest)) = split(rest, head[1] as usize) else {
            break;
        };
        frames = rest;
        let _ = decode_message::<Reply>(payload);
        if let Ok(req) = decode_message::<Request>(payload) {
            let identity = (head[0] & 1 == 1).then_some("a");
            let _ = arbiter.handle(req, identity);
        }
    }
});
