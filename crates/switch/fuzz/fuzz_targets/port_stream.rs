//! A switch port's byte stream from a hostile peer: the first byte picks how the
//! rest is cut into reads; the decoder must yield the same messages (or the same
//! error) however the bytes arrive, never panic, and never hold more than one
//! message's worth; every message parses as a hello or is refused.
#![no_main]

#[path = "../../../../fuzz/alloc_limit.rs"]
mod alloc_limit;

use ftvm_switch::wire::{parse_hello, Decoder, MAX_MESSAGE};
use libfuzzer_sys::fuzz_target;

fn decode<'a>(chunks: impl Iterator<Item = &'a [u8]>) -> (Vec<Vec<u8>>, bool) {
    let mut d = Decoder::default();
    let mut out = Vec::new();
    for c in chunks {
        d.push(c);
        loop {
            match d.next_message() {
                Ok(Some(m)) => {
                    assert!(!m.is_empty() && m.len() <= MAX_MESSAGE);
                    out.push(m)
                }
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let whole = decode(std::iter::once(rest));
    let step = 1 + cut as usize % 61;
    let pieces = decode(rest.chunks(step));
    assert_eq!(
        whole, pieces,
        "the messages depend on how the bytes arrived"
    );
    for m in &whole.0 {
        let _ = parse_hello(m);
    }
});
