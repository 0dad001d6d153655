//! The decoder on hostile bytes, in every `cargo test` (the fuzz target explores further):
//! it never panics, and what it accepts it accepted from a whole, checked entry.

use crate::tests::{decode, small_log};
use crate::{LogError, FORMAT_VERSION, MAGIC};

/// A deterministic xorshift64* stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut prefix = MAGIC.to_vec();
    prefix.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    for i in 0..3000 {
        let len = rng.below(200);
        let mut b = rng.bytes(len);
        // Most strings pass the magic so the rest of the decoder gets exercised.
        if i % 4 != 0 {
            b.splice(0..0, prefix.iter().copied());
        }
        let (entries, err) = decode(&b);
        assert!(entries.is_empty() && err.is_some(), "{b:?}");
    }
}

#[test]
fn mutated_logs_never_panic_or_lie() {
    let (bytes, entries) = small_log();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for _ in 0..3000 {
        let mut b = bytes.clone();
        match rng.below(4) {
            0 => {
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(b.len());
                    b[i] = rng.next() as u8;
                }
            }
            1 => {
                let i = rng.below(b.len());
                let n = rng.below(b.len() - i + 1);
                b.drain(i..i + n);
            }
            2 => {
                let i = rng.below(b.len());
                let n = rng.below(16);
                let junk = rng.bytes(n);
                b.splice(i..i, junk);
            }
            _ => {
                let i = rng.below(b.len());
                b.truncate(i);
            }
        }
        let (got, err) = decode(&b);
        if b == bytes {
            assert!(err.is_none());
            continue;
        }
        assert!(err.is_some(), "a changed log read cleanly");
        assert!(!matches!(err, Some(LogError::Io(_))));
        // Entries accepted are exactly the originals, in order.
        assert_eq!(got, entries[..got.len()]);
    }
}
