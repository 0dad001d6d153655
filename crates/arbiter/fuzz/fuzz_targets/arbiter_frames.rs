//! The secret mode's MAC'd frames (`ftvm_arbiter::Frames`) on a hostile stream, with an
//! oracle: the reader must accept exactly the honest frames in front of the first
//! thing an attacker did, and nothing after it.
//!
//! Input: a list of operations, each an op byte and its arguments, building the stream
//! a receiver reads:
//! - `0, n, payload[n]`: the honest sender seals the next frame;
//! - `1, k`: a copy of the k-th frame sealed so far (a replay);
//! - `2, n, bytes[n]`: raw bytes (an injection);
//! - `3, n, payload[n]`: a frame sealed by the other direction (a reflection);
//! - `4, lo, hi, bit`: flip bit `bit & 7` of byte `lo | hi << 8` of the stream (a
//!   tamper), applied once the stream is built (a bit flipped twice is no tamper).
//!
//! Nothing may panic or allocate by an unchecked length (`fuzz/alloc_limit.rs`).
#![no_main]

#[path = "../../../../fuzz/alloc_limit.rs"]
mod alloc_limit;

use ftvm_arbiter::Frames;
use libfuzzer_sys::fuzz_target;

const KEY: [u8; 32] = [0x5a; 32];

fuzz_target!(|data: &[u8]| {
    let mut honest = Frames::new(KEY, true);
    let mut other = Frames::new(KEY, false);
    let mut stream = Vec::new();
    let mut sealed: Vec<Vec<u8>> = Vec::new();
    // The honest frames in order: (where they start, how long, payload).
    let mut frames: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    // Where the attacker first did something (a byte position in the stream).
    let mut attacked = usize::MAX;
    let mut flips = Vec::new();
    let mut d = data;
    while let Some((&op, rest)) = d.split_first() {
        d = rest;
        match op % 5 {
            0 | 3 => {
                let Some((&n, rest)) = d.split_first() else { break };
                let Some((payload, rest)) = rest.split_at_checked(n as usize) else { break };
                d = rest;
                if op % 5 == 0 {
                    let f = honest.seal(payload).expect("a small payload seals");
                    frames.push((stream.len(), f.len(), payload.to_vec()));
                    stream.extend_from_slice(&f);
                    sealed.push(f);
                } else {
                    attacked = attacked.min(stream.len());
                    stream.extend_from_slice(&other.seal(payload).expect("seals"));
                }
            }
            1 => {
                let Some((&k, rest)) = d.split_first() else { break };
                d = rest;
                if let Some(f) = sealed.get(k as usize) {
                    attacked = attacked.min(stream.len());
                    stream.extend_from_slice(f);
                }
            }
            2 => {
                let Some((&n, rest)) = d.split_first() else { break };
                let Some((bytes, rest)) = rest.split_at_checked(n as usize) else { break };
                d = rest;
                if n > 0 {
                    attacked = attacked.min(stream.len());
                    stream.extend_from_slice(bytes);
                }
            }
            _ => {
                let Some((arg, rest)) = d.split_at_checked(3) else { break };
                d = rest;
                flips.push((usize::from(arg[0]) | usize::from(arg[1]) << 8, arg[2] & 7));
            }
        }
    }
    let before = stream.clone();
    for &(at, bit) in &flips {
        if let Some(b) = stream.get_mut(at) {
            *b ^= 1 << bit;
        }
    }
    // A bit flipped twice is no tamper: only bytes that changed count.
    if let Some(at) = before.iter().zip(&stream).position(|(a, b)| a != b) {
        attacked = attacked.min(at);
    }
    // What must be accepted: the honest frames wholly before the first attack.
    let clean: Vec<&[u8]> = frames
        .iter()
        .take_while(|(at, len, _)| at + len <= attacked)
        .map(|(_, _, p)| &p[..])
        .collect();
    let mut r = &stream[..];
    let mut reader = Frames::new(KEY, true);
    let mut accepted = Vec::new();
    while let Ok(p) = reader.open(&mut r) {
        accepted.push(p);
    }
    assert_eq!(
        accepted.len(),
        clean.len(),
        "accepted {} frames where {} were honest and untouched",
        accepted.len(),
        clean.len()
    );
    for (a, c) in accepted.iter().zip(&clean) {
        assert_eq!(a, c, "an accepted payload differs from what was sealed");
    }
});
