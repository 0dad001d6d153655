//! Reading a log: validates the header, then yields whole, checked entries.

use crate::entry::{self, Entry, EntryKind, FRAME};
use crate::header::{read_full, read_header, Header, CHUNK};
use crate::{CorruptReason, LogError};
use std::io::{BufReader, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// The `End` entry was read; only EOF may follow.
    Ended,
    /// Clean end reported, or an error: the iterator is fused.
    Done,
}

/// Reads a log from `R` through a buffer: an iterator of entries in order.
///
/// It yields `Ok` entries, then ends in one of three ways: `None` right after the
/// `End` entry (a clean end); [`LogError::Truncated`] when the stream stops before an
/// `End` (the entries so far are whole and may be replayed); or [`LogError::Corrupt`]
/// (or [`LogError::Io`]). After an error it yields `None`. Hostile bytes never make it
/// panic or allocate more than [`crate::MAX_ENTRY_LEN`] per entry, and that only as
/// bytes arrive.
pub struct LogReader<R: Read> {
    r: BufReader<R>,
    header: Header,
    pos: u64,
    next_seq: u64,
    icount: u64,
    state: State,
    ended: bool,
}

impl<R: Read> LogReader<R> {
    /// Reads and validates the header; fails on bad magic, another format version, or a
    /// truncated or corrupt header.
    pub fn open(r: R) -> Result<LogReader<R>, LogError> {
        let mut r = BufReader::new(r);
        let header = read_header(&mut r)?;
        Ok(LogReader {
            pos: header.encoded_len(),
            r,
            header,
            next_seq: 1,
            icount: 0,
            state: State::Open,
            ended: false,
        })
    }

    /// The log's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Byte offset just past the last whole entry read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Sequence number of the last whole entry read (0: none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Icount of the last whole entry read (0: none).
    pub fn icount(&self) -> u64 {
        self.icount
    }

    /// Whether the `End` entry has been read.
    pub fn ended(&self) -> bool {
        self.ended
    }

    fn truncated(&self, mid_entry: bool) -> LogError {
        LogError::Truncated {
            after_seq: self.last_seq(),
            at_byte: self.pos,
            mid_entry,
        }
    }

    fn corrupt(&self, reason: CorruptReason) -> LogError {
        LogError::Corrupt {
            seq: self.next_seq,
            at_byte: self.pos,
            reason,
        }
    }

    fn read_entry(&mut self) -> Result<Option<Entry>, LogError> {
        let mut frame = [0u8; FRAME];
        let n = read_full(&mut self.r, &mut frame)?;
        if self.state == State::Ended {
            return match n {
                0 => Ok(None),
                _ => Err(self.corrupt(CorruptReason::AfterEnd)),
            };
        }
        if n == 0 {
            return Err(self.truncated(false));
        }
        if n >= 4 {
            let len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes"));
            entry::check_len(len).map_err(|r| self.corrupt(r))?;
        }
        if n < FRAME {
            return Err(self.truncated(true));
        }
        let len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes"));
        // The length passed validation; capacity beyond CHUNK grows only as bytes arrive.
        let mut body = Vec::with_capacity((len as usize).min(CHUNK));
        (&mut self.r).take(u64::from(len)).read_to_end(&mut body)?;
        if body.len() < len as usize {
            return Err(self.truncated(true));
        }
        let e =
            entry::decode(frame, body, self.next_seq, self.icount).map_err(|r| self.corrupt(r))?;
        self.pos += (FRAME + len as usize) as u64;
        self.next_seq += 1;
        self.icount = e.icount;
        if e.kind == EntryKind::End {
            self.state = State::Ended;
            self.ended = true;
        }
        Ok(Some(e))
    }
}

impl<R: Read> Iterator for LogReader<R> {
    type Item = Result<Entry, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.state == State::Done {
            return None;
        }
        match self.read_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => {
                self.state = State::Done;
                None
            }
            Err(e) => {
                self.state = State::Done;
                Some(Err(e))
            }
        }
    }
}
