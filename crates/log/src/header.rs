//! The log header: magic, format version, machine configuration, initial-state digest.

use crate::{LogError, FORMAT_VERSION, MAGIC, MAX_HEADER_LEN};
use std::io::{self, Read, Write};

/// Bytes before the header body: magic, version, `len`, CRC.
const FIXED: usize = 20;
/// Bytes of the body before `created_by`'s text: digests and its length.
const BODY_FIXED: usize = 32 + 16 + 4;
/// Initial capacity when reading a long field: growth beyond it follows the bytes that
/// actually arrive, so a hostile length cannot make us allocate.
pub(crate) const CHUNK: usize = 64 << 10;

/// What a log was recorded from: checked before replaying a single entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format version the log is written in ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// The machine configuration, opaque here (e.g. the encoded boot configuration with
    /// the kernel image embedded).
    pub config: Vec<u8>,
    /// The caller's digest of `config`, compared by [`Header::check`].
    pub config_digest: [u8; 32],
    /// Digest of the machine's state before the first instruction.
    pub initial_state_digest: u128,
    /// The program that recorded the log, e.g. `"ftvm 0.1.0"`.
    pub created_by: String,
}

impl Header {
    /// A header in the current format version.
    pub fn new(
        config: Vec<u8>,
        config_digest: [u8; 32],
        initial_state_digest: u128,
        created_by: impl Into<String>,
    ) -> Header {
        Header {
            format_version: FORMAT_VERSION,
            config,
            config_digest,
            initial_state_digest,
            created_by: created_by.into(),
        }
    }

    /// Refuses a log recorded for another configuration or from another initial state.
    pub fn check(
        &self,
        config_digest: &[u8; 32],
        initial_state_digest: u128,
    ) -> Result<(), LogError> {
        if &self.config_digest != config_digest {
            return Err(LogError::ConfigMismatch {
                found: hex(&self.config_digest),
                expected: hex(config_digest),
            });
        }
        if self.initial_state_digest != initial_state_digest {
            return Err(LogError::InitialStateMismatch {
                found: self.initial_state_digest,
                expected: initial_state_digest,
            });
        }
        Ok(())
    }

    /// Bytes the header occupies in the log.
    pub fn encoded_len(&self) -> u64 {
        (FIXED + BODY_FIXED + self.created_by.len() + self.config.len()) as u64
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Writes `h` (layout in the crate docs); returns the bytes written.
pub fn write_header<W: Write>(w: &mut W, h: &Header) -> Result<u64, LogError> {
    let body_len = h.encoded_len() - FIXED as u64;
    if body_len > u64::from(MAX_HEADER_LEN) || h.created_by.len() > MAX_HEADER_LEN as usize {
        return Err(LogError::HeaderCorrupt(
            "configuration is over the 1 GiB limit",
        ));
    }
    let mut fixed = [0u8; FIXED];
    fixed[..8].copy_from_slice(MAGIC);
    fixed[8..12].copy_from_slice(&h.format_version.to_le_bytes());
    fixed[12..16].copy_from_slice(&(body_len as u32).to_le_bytes());
    let mut pre = Vec::with_capacity(BODY_FIXED + h.created_by.len());
    pre.extend_from_slice(&h.config_digest);
    pre.extend_from_slice(&h.initial_state_digest.to_le_bytes());
    pre.extend_from_slice(&(h.created_by.len() as u32).to_le_bytes());
    pre.extend_from_slice(h.created_by.as_bytes());
    let crc = [&fixed[..16], &pre, &h.config]
        .iter()
        .fold(0, |c, part| crc32c::crc32c_append(c, part));
    fixed[16..].copy_from_slice(&crc.to_le_bytes());
    w.write_all(&fixed)?;
    w.write_all(&pre)?;
    w.write_all(&h.config)?;
    Ok(h.encoded_len())
}

/// Reads and validates a header; the reader is left at the first entry.
pub fn read_header<R: Read>(r: &mut R) -> Result<Header, LogError> {
    let mut fixed = [0u8; FIXED];
    let n = read_full(r, &mut fixed)?;
    let have = n.min(8);
    if fixed[..have] != MAGIC[..have] {
        return Err(LogError::BadMagic);
    }
    if n >= 12 {
        let found = u32::from_le_bytes(fixed[8..12].try_into().expect("4 bytes"));
        if found != FORMAT_VERSION {
            return Err(LogError::Version {
                found,
                expected: FORMAT_VERSION,
            });
        }
    }
    if n < FIXED {
        return Err(LogError::HeaderTruncated { at_byte: n as u64 });
    }
    let len = u32::from_le_bytes(fixed[12..16].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(fixed[16..].try_into().expect("4 bytes"));
    if len > MAX_HEADER_LEN {
        return Err(LogError::HeaderCorrupt("length is over the 1 GiB limit"));
    }
    let mut body = Vec::with_capacity((len as usize).min(CHUNK));
    r.take(u64::from(len)).read_to_end(&mut body)?;
    if body.len() < len as usize {
        return Err(LogError::HeaderTruncated {
            at_byte: (FIXED + body.len()) as u64,
        });
    }
    if crc32c::crc32c_append(crc32c::crc32c(&fixed[..16]), &body) != crc {
        return Err(LogError::HeaderCorrupt("CRC32C mismatch"));
    }
    if body.len() < BODY_FIXED {
        return Err(LogError::HeaderCorrupt("body is too short"));
    }
    let config_digest: [u8; 32] = body[..32].try_into().expect("32 bytes");
    let initial_state_digest = u128::from_le_bytes(body[32..48].try_into().expect("16 bytes"));
    let name_len = u32::from_le_bytes(body[48..52].try_into().expect("4 bytes")) as usize;
    let name_end = BODY_FIXED
        .checked_add(name_len)
        .filter(|&e| e <= body.len())
        .ok_or(LogError::HeaderCorrupt("created_by runs past the body"))?;
    let created_by = std::str::from_utf8(&body[BODY_FIXED..name_end])
        .map_err(|_| LogError::HeaderCorrupt("created_by is not UTF-8"))?
        .to_owned();
    body.drain(..name_end);
    Ok(Header {
        format_version: FORMAT_VERSION,
        config: body,
        config_digest,
        initial_state_digest,
        created_by,
    })
}

/// Fills `buf` as far as the stream allows; returns the bytes read (short only at EOF).
pub(crate) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
