//! Unsigned LEB128 varints, canonical form only.

/// Appends `v` as an unsigned LEB128 varint.
pub(crate) fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Decodes a canonical varint at the start of `buf`: (value, bytes used). `None` if it
/// runs off the end, exceeds 64 bits, or ends in a redundant zero group.
pub(crate) fn get(buf: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in buf.iter().enumerate().take(10) {
        let bits = u64::from(b & 0x7f);
        if i == 9 && b > 1 {
            return None; // the 10th group holds only bit 63
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            return (i == 0 || b != 0).then_some((v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn edges() {
        for v in [0, 1, 127, 128, 16383, 16384, u64::MAX - 1, u64::MAX] {
            let mut b = Vec::new();
            put(&mut b, v);
            assert_eq!(get(&b), Some((v, b.len())));
        }
        assert_eq!(get(&[]), None);
        assert_eq!(get(&[0x80]), None, "runs off the end");
        assert_eq!(get(&[0x80, 0x00]), None, "non-canonical");
        assert_eq!(get(&[0xff; 10]), None, "over 64 bits");
        assert_eq!(
            get(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
    }

    proptest! {
        #[test]
        fn round_trip(v: u64, tail: Vec<u8>) {
            let mut b = Vec::new();
            put(&mut b, v);
            let n = b.len();
            b.extend_from_slice(&tail);
            prop_assert_eq!(get(&b), Some((v, n)));
        }
    }
}
