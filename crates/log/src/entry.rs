//! Log entries and their framing (layout in the crate docs).

use crate::varint;
use crate::{CorruptReason, MAX_ENTRY_LEN};

/// What an entry records. The discriminant is the kind byte on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum EntryKind {
    /// A non-deterministic input; the payload is the caller's encoding of the event.
    Event = 1,
    /// An externally visible output; the payload (built by the caller) is the output's
    /// kind and a digest of its data, so replay can check it without storing the data.
    Output = 2,
    /// The machine's state hash at this icount; the payload is a u128 LE.
    StateHash = 3,
    /// The primary's progress marker and heartbeat; no payload.
    Progress = 4,
    /// Clean end of the recording at this (final) icount; the payload is the final
    /// state hash, a u128 LE.
    End = 5,
}

impl EntryKind {
    /// Every kind, in wire order.
    pub const ALL: [EntryKind; 5] = [
        EntryKind::Event,
        EntryKind::Output,
        EntryKind::StateHash,
        EntryKind::Progress,
        EntryKind::End,
    ];

    /// The kind a wire byte names, if any.
    pub fn from_u8(b: u8) -> Option<EntryKind> {
        Self::ALL.into_iter().find(|k| *k as u8 == b)
    }

    /// The payload size this kind requires, if fixed.
    pub fn fixed_payload_len(self) -> Option<usize> {
        match self {
            EntryKind::Event | EntryKind::Output => None,
            EntryKind::StateHash | EntryKind::End => Some(16),
            EntryKind::Progress => Some(0),
        }
    }
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Sequence number: 1 for the first entry, +1 for each next one.
    pub seq: u64,
    /// Instruction count the entry applies at; never less than the previous entry's.
    pub icount: u64,
    /// What the entry records.
    pub kind: EntryKind,
    /// Kind-specific bytes.
    pub payload: Vec<u8>,
}

impl Entry {
    /// The hash a `StateHash` or `End` entry carries.
    pub fn hash(&self) -> Option<u128> {
        match self.kind {
            EntryKind::StateHash | EntryKind::End => Some(u128::from_le_bytes(
                self.payload.as_slice().try_into().ok()?,
            )),
            _ => None,
        }
    }
}

/// Bytes of framing before the body: `len` and the CRC.
pub(crate) const FRAME: usize = 8;
/// Largest seq + delta + kind prefix of a body.
const MAX_PREFIX: usize = 10 + 10 + 1;
/// A payload this size or smaller always fits in [`MAX_ENTRY_LEN`].
pub(crate) const MAX_PAYLOAD: usize = MAX_ENTRY_LEN as usize - MAX_PREFIX;

/// CRC32C of an entry: the `len` bytes, then the body.
fn entry_crc(len: [u8; 4], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len), body)
}

/// Appends the framing and body prefix of an entry to `out`; the caller writes
/// `payload` right after. `prev_icount` is the previous entry's icount (0 before the
/// first); the caller has checked `icount >= prev_icount` and the payload size against
/// [`MAX_PAYLOAD`].
pub(crate) fn encode_head(
    out: &mut Vec<u8>,
    prev_icount: u64,
    seq: u64,
    icount: u64,
    kind: EntryKind,
    payload: &[u8],
) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME]);
    varint::put(out, seq);
    varint::put(out, icount - prev_icount);
    out.push(kind as u8);
    let len = ((out.len() - start - FRAME + payload.len()) as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(entry_crc(len, &out[start + FRAME..]), payload);
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + FRAME].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a `len` field read from the wire.
pub(crate) fn check_len(len: u32) -> Result<(), CorruptReason> {
    if (3..=MAX_ENTRY_LEN).contains(&len) {
        Ok(())
    } else {
        Err(CorruptReason::Length(len))
    }
}

/// Decodes a body whose framing has been read: checks the CRC, the expected sequence
/// number and the kind's payload size, and resolves the icount delta.
pub(crate) fn decode(
    frame: [u8; FRAME],
    mut body: Vec<u8>,
    expected_seq: u64,
    prev_icount: u64,
) -> Result<Entry, CorruptReason> {
    let len: [u8; 4] = frame[..4].try_into().expect("4 bytes");
    let crc = u32::from_le_bytes(frame[4..].try_into().expect("4 bytes"));
    if entry_crc(len, &body) != crc {
        return Err(CorruptReason::Crc);
    }
    let (seq, a) = varint::get(&body).ok_or(CorruptReason::Varint)?;
    if seq != expected_seq {
        return Err(CorruptReason::Seq {
            found: seq,
            expected: expected_seq,
        });
    }
    let (delta, b) = varint::get(&body[a..]).ok_or(CorruptReason::Varint)?;
    let icount = prev_icount
        .checked_add(delta)
        .ok_or(CorruptReason::Icount)?;
    let k = *body.get(a + b).ok_or(CorruptReason::Varint)?;
    let kind = EntryKind::from_u8(k).ok_or(CorruptReason::Kind(k))?;
    body.drain(..a + b + 1);
    if let Some(expected) = kind.fixed_payload_len() {
        if body.len() != expected {
            return Err(CorruptReason::PayloadSize {
                kind,
                found: body.len(),
                expected,
            });
        }
    }
    Ok(Entry {
        seq,
        icount,
        kind,
        payload: body,
    })
}
