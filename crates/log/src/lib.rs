//! ftvm's log codec (DESIGN.md §3): one format for on-disk recordings and for the
//! primary → backup logging channel.
//!
//! A pure codec: it knows nothing of the machine. Payloads are opaque bytes tagged with
//! an [`EntryKind`]; the caller encodes its events and outputs. Instruction counts are
//! plain `u64`s here (the machine's `ICount`).
//!
//! # Wire format (version [`FORMAT_VERSION`])
//!
//! All fixed-width integers are little-endian. A log is a header followed by entries.
//!
//! Header:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `b"FTVMLOG\0"` |
//! | 4 | format version, u32 |
//! | 4 | `len`: length of the header body, u32, at most [`MAX_HEADER_LEN`] (1 GiB) |
//! | 4 | CRC32C (Castagnoli) of the 16 bytes above followed by the body, u32 |
//! | `len` | body |
//!
//! Header body: `config_digest` (32 bytes), `initial_state_digest` (u128, 16 bytes),
//! `created_by` length (u32) and that many bytes of UTF-8, then the opaque `config`
//! (the rest of the body).
//!
//! Entry:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | `len`: length of the body, u32, at least 3 and at most [`MAX_ENTRY_LEN`] (64 MiB) |
//! | 4 | CRC32C of the 4 `len` bytes followed by the body, u32 |
//! | `len` | body |
//!
//! Entry body:
//!
//! | bytes | field |
//! |---|---|
//! | 1–10 | `seq`, unsigned LEB128 varint; the first entry is 1, each next one is +1 |
//! | 1–10 | `icount - previous icount`, unsigned LEB128 varint; the "previous icount" of the first entry is 0 |
//! | 1 | kind: 1 `Event`, 2 `Output`, 3 `StateHash`, 4 `Progress`, 5 `End`; anything else is corrupt |
//! | rest | payload |
//!
//! Varints are canonical (no redundant trailing zero groups). Because icounts are
//! delta-coded, entries are in non-decreasing instruction-count order by construction,
//! and an entry only decodes in the context of the ones before it. Payload sizes are
//! fixed for three kinds: `StateHash` and `End` carry a u128 hash (16 bytes; the `End`
//! entry's icount is the final instruction count), `Progress` carries nothing. The log
//! ends cleanly with one `End` entry and no byte after it.
//!
//! A `Progress` entry 1 ms apart at up to 2 M instructions per ms with seq < 16384
//! costs 14 bytes: 8 of framing, 2 + 3 of varints, 1 of kind.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod entry;
mod header;
mod reader;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_hostile;
mod varint;
mod writer;

pub use entry::{Entry, EntryKind};
pub use header::{read_header, write_header, Header};
pub use reader::LogReader;
pub use writer::LogWriter;

/// Log format version this crate writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// The 8 bytes every log starts with.
pub const MAGIC: &[u8; 8] = b"FTVMLOG\0";
/// Largest header body accepted (it embeds the machine configuration, kernel included).
pub const MAX_HEADER_LEN: u32 = 1 << 30;
/// Largest entry body accepted.
pub const MAX_ENTRY_LEN: u32 = 64 << 20;

/// Why an entry was refused as corrupt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorruptReason {
    /// The stored CRC32C does not match the entry.
    #[error("CRC32C mismatch")]
    Crc,
    /// The length field is outside the accepted range.
    #[error("length {0} is outside 3..={MAX_ENTRY_LEN}")]
    Length(u32),
    /// A varint is overlong, non-canonical or runs past the body.
    #[error("malformed varint")]
    Varint,
    /// The kind byte names no kind.
    #[error("unknown entry kind {0}")]
    Kind(u8),
    /// The sequence number is not the previous one plus one.
    #[error("sequence number {found} where {expected} was expected")]
    Seq {
        /// Sequence number in the entry.
        found: u64,
        /// The one that should follow the previous entry.
        expected: u64,
    },
    /// The icount delta overflows a u64.
    #[error("instruction count overflows")]
    Icount,
    /// The payload has the wrong size for its kind.
    #[error("a {kind:?} entry carries {found} payload bytes instead of {expected}")]
    PayloadSize {
        /// Entry kind.
        kind: EntryKind,
        /// Payload size in the entry.
        found: usize,
        /// Size the kind requires.
        expected: usize,
    },
    /// Bytes follow the `End` entry.
    #[error("data follows the End entry")]
    AfterEnd,
}

/// Problems writing or reading a log; messages read as sentences.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The underlying reader or writer failed.
    #[error("log I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// Not a log at all.
    #[error("not an ftvm log (bad magic)")]
    BadMagic,
    /// Written by an incompatible version.
    #[error("log format version {found} is not supported (this ftvm reads version {expected})")]
    Version {
        /// Version in the log.
        found: u32,
        /// Version this crate reads.
        expected: u32,
    },
    /// The stream ended inside the header.
    #[error("log header is truncated at byte {at_byte}")]
    HeaderTruncated {
        /// Bytes of log present.
        at_byte: u64,
    },
    /// The header failed validation.
    #[error("log header is corrupt: {0}")]
    HeaderCorrupt(&'static str),
    /// The log belongs to another machine configuration.
    #[error("log was recorded for a different kernel or configuration (config digest {found}, expected {expected})")]
    ConfigMismatch {
        /// Digest in the log, hex.
        found: String,
        /// Digest of this machine's configuration, hex.
        expected: String,
    },
    /// The log starts from another initial state.
    #[error("log was recorded from a different initial state (digest {found:032x}, expected {expected:032x})")]
    InitialStateMismatch {
        /// Digest in the log.
        found: u128,
        /// Digest of this machine's initial state.
        expected: u128,
    },
    /// The stream ended before the `End` entry: a torn tail, or a recorder that stopped.
    /// Entries up to `after_seq` are whole and may be replayed.
    #[error(
        "log ends at byte {at_byte} {}after entry {after_seq} without an End entry",
        if *.mid_entry { "inside the entry " } else { "" }
    )]
    Truncated {
        /// Last whole entry (0: none).
        after_seq: u64,
        /// Offset of the first byte not replayed: the start of the partial entry, or the end.
        at_byte: u64,
        /// Whether part of a further entry was present (a torn write).
        mid_entry: bool,
    },
    /// An entry failed validation; nothing from it on may be replayed.
    #[error("log entry {seq} at byte {at_byte} is corrupt: {reason}")]
    Corrupt {
        /// Sequence number the entry should have had.
        seq: u64,
        /// Offset of the entry's first byte.
        at_byte: u64,
        /// What is wrong with it.
        reason: CorruptReason,
    },
    /// The writer was given an entry earlier than the previous one.
    #[error("entry at icount {icount} comes after one at icount {previous}; entries must be in instruction-count order")]
    IcountBackwards {
        /// Icount of the refused entry.
        icount: u64,
        /// Icount of the last entry written.
        previous: u64,
    },
    /// The writer was given an entry the reader would refuse.
    #[error("a {kind:?} entry cannot carry {len} payload bytes")]
    BadPayload {
        /// Entry kind.
        kind: EntryKind,
        /// Payload size given.
        len: usize,
    },
    /// The header given to the writer is over [`MAX_HEADER_LEN`].
    #[error("log header of {len} bytes is over the 1 GiB limit")]
    HeaderTooLarge {
        /// Size of the header body.
        len: u64,
    },
    /// `End` entries are written by [`LogWriter::finish`] only.
    #[error("an End entry is written by LogWriter::finish, not appended")]
    EndByAppend,
    /// An earlier write failed part-way, so the stream is no longer well-formed.
    #[error("an earlier write to the log failed; the log cannot be continued")]
    Poisoned,
}
