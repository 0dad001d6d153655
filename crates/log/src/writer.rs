//! Writing a log: the header, then entries in instruction-count order, then `End`.

use crate::entry::{self, EntryKind, MAX_PAYLOAD};
use crate::header::{write_header, Header};
use crate::LogError;
use std::io::{BufWriter, Write};

/// Writes a log to `W` through a buffer. Assigns sequence numbers (from 1) and refuses
/// entries out of instruction-count order or with payloads the reader would refuse.
pub struct LogWriter<W: Write> {
    w: BufWriter<W>,
    next_seq: u64,
    last_icount: u64,
    bytes_written: u64,
    scratch: Vec<u8>,
    poisoned: bool,
}

impl<W: Write> LogWriter<W> {
    /// Starts a log on `w` with `header`.
    pub fn new(w: W, header: &Header) -> Result<LogWriter<W>, LogError> {
        let mut w = BufWriter::new(w);
        let bytes_written = write_header(&mut w, header)?;
        Ok(LogWriter {
            w,
            next_seq: 1,
            last_icount: 0,
            bytes_written,
            scratch: Vec::new(),
            poisoned: false,
        })
    }

    /// Appends an entry at `icount`; returns its sequence number.
    pub fn append(
        &mut self,
        icount: u64,
        kind: EntryKind,
        payload: &[u8],
    ) -> Result<u64, LogError> {
        if kind == EntryKind::End {
            return Err(LogError::EndByAppend);
        }
        self.write_entry(icount, kind, payload)
    }

    /// Appends an input event (payload encoded by the caller).
    pub fn event(&mut self, icount: u64, payload: &[u8]) -> Result<u64, LogError> {
        self.append(icount, EntryKind::Event, payload)
    }

    /// Appends an output record (output kind and data digest, encoded by the caller).
    pub fn output(&mut self, icount: u64, payload: &[u8]) -> Result<u64, LogError> {
        self.append(icount, EntryKind::Output, payload)
    }

    /// Appends the machine's state hash at `icount`.
    pub fn state_hash(&mut self, icount: u64, hash: u128) -> Result<u64, LogError> {
        self.append(icount, EntryKind::StateHash, &hash.to_le_bytes())
    }

    /// Appends a progress marker at `icount`.
    pub fn progress(&mut self, icount: u64) -> Result<u64, LogError> {
        self.append(icount, EntryKind::Progress, &[])
    }

    /// Pushes buffered entries to the underlying writer and flushes it.
    pub fn flush(&mut self) -> Result<(), LogError> {
        self.check_poisoned()?;
        self.w.flush().map_err(|e| self.poison(e))
    }

    /// Writes the `End` entry (final icount and state hash), flushes, and returns the
    /// underlying writer.
    pub fn finish(mut self, final_icount: u64, hash: u128) -> Result<W, LogError> {
        self.write_entry(final_icount, EntryKind::End, &hash.to_le_bytes())?;
        self.w
            .into_inner()
            .map_err(|e| LogError::Io(e.into_error()))
    }

    /// Bytes handed to the buffer so far, header included.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Sequence number the next entry will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Icount of the last entry written (0 before the first).
    pub fn last_icount(&self) -> u64 {
        self.last_icount
    }

    /// The underlying writer (entries may still sit in the buffer).
    pub fn get_ref(&self) -> &W {
        self.w.get_ref()
    }

    fn write_entry(
        &mut self,
        icount: u64,
        kind: EntryKind,
        payload: &[u8],
    ) -> Result<u64, LogError> {
        self.check_poisoned()?;
        if icount < self.last_icount {
            return Err(LogError::IcountBackwards {
                icount,
                previous: self.last_icount,
            });
        }
        let fixed_ok = kind.fixed_payload_len().is_none_or(|n| n == payload.len());
        if !fixed_ok || payload.len() > MAX_PAYLOAD {
            return Err(LogError::BadPayload {
                kind,
                len: payload.len(),
            });
        }
        // The framing and prefix go through scratch; the payload straight from the caller.
        let seq = self.next_seq;
        self.scratch.clear();
        entry::encode_head(
            &mut self.scratch,
            self.last_icount,
            seq,
            icount,
            kind,
            payload,
        );
        let r = self.w.write_all(&self.scratch);
        r.and_then(|_| self.w.write_all(payload))
            .map_err(|e| self.poison(e))?;
        self.bytes_written += (self.scratch.len() + payload.len()) as u64;
        self.last_icount = icount;
        self.next_seq += 1;
        Ok(seq)
    }

    fn poison(&mut self, e: std::io::Error) -> LogError {
        self.poisoned = true;
        LogError::Io(e)
    }

    fn check_poisoned(&self) -> Result<(), LogError> {
        if self.poisoned {
            Err(LogError::Poisoned)
        } else {
            Ok(())
        }
    }
}
