//! Round trips, torn tails, bit flips, and the writer's refusals.

use crate::entry::{encode_head, EntryKind::*};
use crate::*;
use proptest::prelude::*;

pub(crate) fn header() -> Header {
    Header::new(
        b"boot config".to_vec(),
        [7; 32],
        0x1234_5678_9abc_def0,
        "ftvm test",
    )
}

/// Everything a reader makes of `bytes`: the entries it yielded, then how it stopped
/// (`None`: a clean end).
pub(crate) fn decode(bytes: &[u8]) -> (Vec<Entry>, Option<LogError>) {
    let mut r = match LogReader::open(bytes) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut out = Vec::new();
    for item in &mut r {
        match item {
            Ok(e) => out.push(e),
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

/// A small log of every kind; returns its bytes and entries.
pub(crate) fn small_log() -> (Vec<u8>, Vec<Entry>) {
    let mut w = LogWriter::new(Vec::new(), &header()).unwrap();
    w.event(10, b"rx frame").unwrap();
    w.event(10, b"").unwrap();
    w.output(300, &[1; 17]).unwrap();
    w.state_hash(70_000, 0xfeed).unwrap();
    w.progress(1 << 40).unwrap();
    let bytes = w.finish(u64::MAX, 42).unwrap();
    let entries = decode(&bytes).0;
    assert_eq!(entries.len(), 6);
    (bytes, entries)
}

fn entry(seq: u64, icount: u64, kind: EntryKind, payload: &[u8]) -> Entry {
    Entry {
        seq,
        icount,
        kind,
        payload: payload.to_vec(),
    }
}

#[test]
fn small_log_reads_back() {
    let (bytes, entries) = small_log();
    let expected = vec![
        entry(1, 10, Event, b"rx frame"),
        entry(2, 10, Event, b""),
        entry(3, 300, Output, &[1; 17]),
        entry(4, 70_000, StateHash, &0xfeed_u128.to_le_bytes()),
        entry(5, 1 << 40, Progress, b""),
        entry(6, u64::MAX, End, &42_u128.to_le_bytes()),
    ];
    assert_eq!(entries, expected);
    assert_eq!(entries[3].hash(), Some(0xfeed));
    let mut r = LogReader::open(bytes.as_slice()).unwrap();
    assert_eq!(r.header(), &header());
    assert_eq!(r.by_ref().count(), 6);
    assert!(r.ended());
    assert_eq!(r.position(), bytes.len() as u64);
    assert_eq!((r.last_seq(), r.icount()), (6, u64::MAX));
}

#[test]
fn large_config_round_trips() {
    let config: Vec<u8> = (0..8 << 20).map(|i: u32| ((i * 31) >> 7) as u8).collect();
    let h = Header::new(config, [1; 32], 5, "ftvm");
    let mut bytes = Vec::new();
    let n = write_header(&mut bytes, &h).unwrap();
    assert_eq!(n, bytes.len() as u64);
    assert_eq!(read_header(&mut bytes.as_slice()).unwrap(), h);
}

#[test]
fn bad_magic_and_version_are_refused() {
    let (mut bytes, _) = small_log();
    bytes[0] = b'X';
    assert!(matches!(decode(&bytes).1, Some(LogError::BadMagic)));
    assert!(matches!(decode(b"ELF").1, Some(LogError::BadMagic)));
    let (mut bytes, _) = small_log();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let err = decode(&bytes).1.unwrap();
    assert!(matches!(
        err,
        LogError::Version {
            found: 2,
            expected: 1
        }
    ));
    assert_eq!(
        err.to_string(),
        "log format version 2 is not supported (this ftvm reads version 1)"
    );
    let (mut bytes, _) = small_log();
    bytes[30] ^= 1;
    let err = decode(&bytes).1.unwrap();
    assert_eq!(err.to_string(), "log header is corrupt: CRC32C mismatch");
}

#[test]
fn huge_claimed_lengths_are_refused_or_truncated() {
    let mut fixed = MAGIC.to_vec();
    fixed.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    fixed.extend_from_slice(&(MAX_HEADER_LEN + 1).to_le_bytes());
    fixed.extend_from_slice(&[0; 4]);
    assert!(matches!(decode(&fixed).1, Some(LogError::HeaderCorrupt(_))));
    fixed[12..16].copy_from_slice(&MAX_HEADER_LEN.to_le_bytes());
    assert!(matches!(
        decode(&fixed).1,
        Some(LogError::HeaderTruncated { at_byte: 20 })
    ));
    let mut log = Vec::new();
    write_header(&mut log, &header()).unwrap();
    let at = log.len() as u64;
    for (len, over_cap) in [
        (u32::MAX, true),
        (MAX_ENTRY_LEN + 1, true),
        (MAX_ENTRY_LEN, false),
    ] {
        let mut bytes = log.clone();
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&[0; 20]);
        let err = decode(&bytes).1.unwrap();
        if over_cap {
            let reason = CorruptReason::Length(len);
            assert!(
                matches!(err, LogError::Corrupt { seq: 1, at_byte, reason: r } if at_byte == at && r == reason)
            );
        } else {
            assert!(matches!(
                err,
                LogError::Truncated {
                    after_seq: 0,
                    mid_entry: true,
                    ..
                }
            ));
        }
    }
}

#[test]
fn config_and_initial_state_are_checked() {
    let h = header();
    h.check(&[7; 32], 0x1234_5678_9abc_def0).unwrap();
    let err = h.check(&[8; 32], 0x1234_5678_9abc_def0).unwrap_err();
    assert!(err.to_string().starts_with(
        "log was recorded for a different kernel or configuration (config digest 0707"
    ));
    let err = h.check(&[7; 32], 1).unwrap_err();
    assert!(matches!(
        err,
        LogError::InitialStateMismatch {
            found: 0x1234_5678_9abc_def0,
            expected: 1
        }
    ));
}

/// Appends a hand-built entry (so tests can write what the writer refuses to).
fn raw_entry(out: &mut Vec<u8>, prev: u64, seq: u64, icount: u64, kind: u8, payload: &[u8]) {
    let start = out.len();
    encode_head(out, prev, seq, icount, Event, payload);
    out.extend_from_slice(payload);
    let len = u32::from_le_bytes(out[start..start + 4].try_into().unwrap()) as usize;
    let kind_at = start + 8 + len - payload.len() - 1;
    out[kind_at] = kind;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 4]), &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn well_framed_but_invalid_entries_are_corrupt() {
    let mut base = Vec::new();
    write_header(&mut base, &header()).unwrap();
    raw_entry(&mut base, 0, 1, 5, Event as u8, b"x");
    let cases: [(u64, u64, u8, &[u8], CorruptReason); 5] = [
        (
            3,
            5,
            1,
            b"",
            CorruptReason::Seq {
                found: 3,
                expected: 2,
            },
        ),
        (2, 5, 9, b"", CorruptReason::Kind(9)),
        (2, 5, 0, b"", CorruptReason::Kind(0)),
        (
            2,
            5,
            StateHash as u8,
            &[0; 15],
            CorruptReason::PayloadSize {
                kind: StateHash,
                found: 15,
                expected: 16,
            },
        ),
        (
            2,
            5,
            Progress as u8,
            &[0],
            CorruptReason::PayloadSize {
                kind: Progress,
                found: 1,
                expected: 0,
            },
        ),
    ];
    for (seq, icount, kind, payload, reason) in cases {
        let mut bytes = base.clone();
        raw_entry(&mut bytes, 5, seq, icount, kind, payload);
        let (entries, err) = decode(&bytes);
        assert_eq!(entries.len(), 1);
        match err {
            Some(LogError::Corrupt {
                seq: 2, reason: r, ..
            }) => assert_eq!(r, reason),
            other => panic!("{other:?}"),
        }
    }
    let mut bytes = base.clone();
    raw_entry(&mut bytes, 0, 2, u64::MAX, Event as u8, b""); // delta from 0, not 5
    let err = decode(&bytes).1.unwrap();
    assert!(
        matches!(
            err,
            LogError::Corrupt {
                reason: CorruptReason::Icount,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn data_after_end_is_corrupt() {
    let (mut bytes, _) = small_log();
    let end = bytes.len() as u64;
    bytes.push(0);
    let (entries, err) = decode(&bytes);
    assert_eq!(entries.len(), 6);
    let err = err.unwrap();
    assert!(
        matches!(err, LogError::Corrupt { seq: 7, at_byte, reason: CorruptReason::AfterEnd } if at_byte == end)
    );
}

#[test]
fn torn_tail_at_every_offset() {
    let (bytes, entries) = small_log();
    let header_len = header().encoded_len() as usize;
    for cut in 0..bytes.len() {
        let (got, err) = decode(&bytes[..cut]);
        assert_eq!(got, entries[..got.len()], "cut {cut}");
        match err {
            Some(LogError::HeaderTruncated { at_byte }) => {
                assert!(cut < header_len && at_byte == cut as u64, "cut {cut}")
            }
            Some(LogError::Truncated {
                after_seq,
                at_byte,
                mid_entry,
            }) => {
                assert_eq!(after_seq, got.len() as u64);
                assert!(
                    at_byte <= cut as u64 && mid_entry == (at_byte < cut as u64),
                    "cut {cut}"
                );
                let msg = LogError::Truncated {
                    after_seq,
                    at_byte,
                    mid_entry,
                }
                .to_string();
                assert!(
                    msg.starts_with(&format!("log ends at byte {at_byte} ")),
                    "{msg}"
                );
            }
            other => panic!("cut {cut}: {other:?}"),
        }
    }
    assert!(decode(&bytes).1.is_none());
}

#[test]
fn every_flipped_bit_is_detected() {
    let (bytes, entries) = small_log();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            let (got, err) = decode(&b);
            assert_eq!(got, entries[..got.len()], "byte {i} bit {bit}");
            assert!(err.is_some(), "byte {i} bit {bit} went unnoticed");
            assert!(!matches!(err, Some(LogError::Io(_))), "byte {i} bit {bit}");
        }
    }
}

#[test]
fn writer_refusals() {
    let mut w = LogWriter::new(Vec::new(), &header()).unwrap();
    w.progress(100).unwrap();
    let err = w.event(99, b"late").unwrap_err();
    assert_eq!(
        err.to_string(),
        "entry at icount 99 comes after one at icount 100; entries must be in instruction-count order"
    );
    assert!(matches!(
        w.append(200, End, &[0; 16]),
        Err(LogError::EndByAppend)
    ));
    assert!(matches!(
        w.append(200, StateHash, &[0; 8]),
        Err(LogError::BadPayload { len: 8, .. })
    ));
    assert!(matches!(
        w.append(200, Progress, &[0]),
        Err(LogError::BadPayload { .. })
    ));
    let big = vec![0; MAX_ENTRY_LEN as usize];
    assert!(matches!(
        w.event(200, &big),
        Err(LogError::BadPayload { .. })
    ));
    assert!(matches!(
        w.finish(50, 0),
        Err(LogError::IcountBackwards {
            icount: 50,
            previous: 100
        })
    ));
}

#[test]
fn unfinished_log_ends_truncated_at_a_boundary() {
    let mut w = LogWriter::new(Vec::new(), &header()).unwrap();
    w.progress(1).unwrap();
    w.flush().unwrap();
    let bytes = w.get_ref().clone();
    let (got, err) = decode(&bytes);
    assert_eq!(got.len(), 1);
    let err = err.unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "log ends at byte {} after entry 1 without an End entry",
            bytes.len()
        )
    );
}

/// 1000 `Progress` entries 1 ms apart: the per-entry cost an idle guest pays.
#[test]
fn progress_entry_size() {
    for per_ms in [100_000u64, 1_000_000] {
        let mut w = LogWriter::new(Vec::new(), &header()).unwrap();
        let start = w.bytes_written();
        for i in 1..=1000 {
            w.progress(i * per_ms).unwrap();
        }
        let per_entry = (w.bytes_written() - start) as f64 / 1000.0;
        println!("{per_ms} instructions/ms: {per_entry} bytes per Progress entry");
        assert!(per_entry <= 14.0, "{per_entry}");
        let bytes = w.finish(1000 * per_ms, 0).unwrap();
        assert_eq!(decode(&bytes).0.len(), 1001);
    }
}

fn arb_kind() -> impl Strategy<Value = EntryKind> {
    prop::sample::select(vec![Event, Output, StateHash, Progress])
}

proptest! {
    #[test]
    fn arbitrary_logs_round_trip(
        steps in prop::collection::vec(
            (prop_oneof![0..4u64, 0..100_000u64, any::<u64>()], arb_kind(), prop::collection::vec(any::<u8>(), 0..40)),
            0..40,
        ),
        config in prop::collection::vec(any::<u8>(), 0..100),
        digest: [u8; 32],
        init: u128,
        name in ".{0,20}",
        final_hash: u128,
    ) {
        let h = Header::new(config, digest, init, name);
        let mut w = LogWriter::new(Vec::new(), &h).unwrap();
        let mut expected = Vec::new();
        let mut icount = 0u64;
        for (delta, kind, mut payload) in steps {
            icount = icount.saturating_add(delta);
            if let Some(n) = kind.fixed_payload_len() {
                payload.resize(n, 0xa5);
            }
            let seq = w.append(icount, kind, &payload).unwrap();
            expected.push(Entry { seq, icount, kind, payload });
        }
        expected.push(entry(expected.len() as u64 + 1, icount, End, &final_hash.to_le_bytes()));
        let bytes = w.finish(icount, final_hash).unwrap();
        let mut r = LogReader::open(bytes.as_slice()).unwrap();
        prop_assert_eq!(r.header(), &h);
        let got: Vec<Entry> = r.by_ref().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(got, expected);
        prop_assert!(r.ended());
        prop_assert_eq!(r.position(), bytes.len() as u64);
    }
}

/// The fuzz seed doubles as a golden file: the byte layout of format version 1.
#[test]
fn golden_log_bytes() {
    let golden = include_bytes!("../fuzz/seeds/decode_log/small-log");
    let h = Header::new(b"cfg".to_vec(), [0; 32], 0, "seed");
    let mut w = LogWriter::new(Vec::new(), &h).unwrap();
    w.event(10, b"rx").unwrap();
    w.output(300, &[1; 17]).unwrap();
    w.state_hash(70_000, 0xfeed).unwrap();
    w.progress(1 << 40).unwrap();
    let bytes = w.finish(1 << 41, 42).unwrap();
    assert_eq!(bytes, golden);
    // The Progress entry (16 bytes, then a 32-byte End): len 8, CRC, seq 4,
    // delta 2^40 - 70000 as a 6-byte varint, kind 4.
    let progress = &golden[golden.len() - 32 - 16..][..16];
    assert_eq!(progress[..4], 8u32.to_le_bytes());
    assert_eq!(progress[8], 4);
    assert_eq!(progress[9..15], [0x90, 0xdd, 0xfb, 0xff, 0xff, 0x1f]);
    assert_eq!(progress[15], Progress as u8);
}
