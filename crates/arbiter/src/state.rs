//! The arbiter's durable ledger: who won each (VM, generation), kept in one file that is
//! replaced atomically (write `file.tmp`, fsync, rename over `file`, fsync the directory).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// State file format version this crate writes and reads.
pub const STATE_VERSION: u32 = 1;
/// The 8 bytes every state file starts with.
pub const STATE_MAGIC: &[u8; 8] = b"FTVMARB\0";
/// Largest state body accepted (about ten million records).
const MAX_STATE_LEN: u32 = 1 << 30;
/// Magic, version, body length, CRC32C.
const HEADER_LEN: usize = 8 + 4 + 4 + 4;

/// The recorded winner of one (VM, generation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Winner {
    /// Node id of the side that won the test-and-set.
    pub node: String,
    /// When it won, in milliseconds since the Unix epoch (host clock; informational).
    pub set_at_unix_ms: u64,
}

/// The answer to a test-and-set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The caller is the winner (first to ask, or the same node asking again).
    Won,
    /// Another node already won this (VM, generation).
    Lost {
        /// Node id of the winner.
        winner: String,
    },
}

/// Why a state file was refused as corrupt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// The file is shorter than its header says.
    #[error("truncated: {len} bytes, {need} needed")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes the header promises.
        need: usize,
    },
    /// The file does not start with [`STATE_MAGIC`].
    #[error("not an arbiter state file (bad magic)")]
    BadMagic,
    /// The format version is not [`STATE_VERSION`].
    #[error("unsupported format version {0} (this build reads {STATE_VERSION})")]
    Version(u32),
    /// The body length exceeds the limit.
    #[error("body length {0} exceeds the limit")]
    TooLong(u32),
    /// Bytes follow the body.
    #[error("{0} bytes after the end of the state")]
    Trailing(usize),
    /// The checksum does not match.
    #[error("CRC32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Crc {
        /// CRC in the file.
        stored: u32,
        /// CRC of the bytes read.
        computed: u32,
    },
    /// The body does not decode.
    #[error("body does not decode: {0}")]
    Decode(postcard::Error),
    /// Records are not in strictly increasing (VM, generation) order.
    #[error("record for ({vm:?}, {generation}) is duplicated or out of order")]
    Order {
        /// VM name of the offending record.
        vm: String,
        /// Its generation.
        generation: u64,
    },
}

/// Errors of the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A filesystem operation failed.
    #[error("could not {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another arbiter (process or instance) holds this state file.
    #[error("another arbiter holds the lock on {}", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The state file is corrupt; it is never silently reset.
    #[error("arbiter state file {} is corrupt: {why}", path.display())]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        why: Corruption,
    },
}

/// One persisted record; the file body is these in (VM, generation) order.
#[derive(Serialize, Deserialize)]
struct Record {
    vm: String,
    generation: u64,
    winner: Winner,
}

/// Winners by (VM, generation). A `BTreeMap`, so the file bytes are deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Ledger {
    entries: BTreeMap<(String, u64), Winner>,
}

impl Ledger {
    /// The winner of (`vm`, `generation`), if any.
    pub(crate) fn get(&self, vm: &str, generation: u64) -> Option<&Winner> {
        self.entries.get(&(vm.to_owned(), generation))
    }

    /// Each VM with its newest decided generation, in VM order.
    pub(crate) fn newest(&self) -> Vec<(&str, u64)> {
        let mut out: Vec<(&str, u64)> = Vec::new();
        for (vm, g) in self.entries.keys() {
            match out.last_mut() {
                Some((v, newest)) if *v == vm.as_str() => *newest = (*newest).max(*g),
                _ => out.push((vm.as_str(), *g)),
            }
        }
        out
    }

    /// Records `winner` for a key that has none; the caller checked with [`Ledger::get`].
    pub(crate) fn insert(&mut self, vm: &str, generation: u64, winner: Winner) {
        self.entries.insert((vm.to_owned(), generation), winner);
    }

    /// Forgets a record (undoes an insert whose persisting failed).
    pub(crate) fn remove(&mut self, vm: &str, generation: u64) {
        self.entries.remove(&(vm.to_owned(), generation));
    }

    /// The highest generation of `vm` that has a winner.
    pub(crate) fn current(&self, vm: &str) -> Option<u64> {
        let from = (vm.to_owned(), 0);
        let to = (vm.to_owned(), u64::MAX);
        self.entries
            .range(from..=to)
            .next_back()
            .map(|((_, g), _)| *g)
    }

    /// The whole file: header, then the postcard body.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let records: Vec<Record> = (self.entries.iter())
            .map(|((vm, generation), winner)| Record {
                vm: vm.clone(),
                generation: *generation,
                winner: winner.clone(),
            })
            .collect();
        let body = postcard::to_stdvec(&records).expect("encoding to a Vec cannot fail");
        let len = u32::try_from(body.len()).expect("state body fits in u32");
        let mut out = Vec::with_capacity(HEADER_LEN + body.len());
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&STATE_VERSION.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &body);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parses a whole file as written by [`Ledger::encode`].
    pub(crate) fn decode(bytes: &[u8]) -> Result<Ledger, Corruption> {
        let truncated = |need| Corruption::Truncated {
            len: bytes.len(),
            need,
        };
        if bytes.len() < HEADER_LEN {
            return Err(truncated(HEADER_LEN));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        if &bytes[..8] != STATE_MAGIC {
            return Err(Corruption::BadMagic);
        }
        let version = u32_at(8);
        if version != STATE_VERSION {
            return Err(Corruption::Version(version));
        }
        let len = u32_at(12);
        if len > MAX_STATE_LEN {
            return Err(Corruption::TooLong(len));
        }
        let end = HEADER_LEN + len as usize;
        if bytes.len() < end {
            return Err(truncated(end));
        }
        if bytes.len() > end {
            return Err(Corruption::Trailing(bytes.len() - end));
        }
        let body = &bytes[HEADER_LEN..];
        let stored = u32_at(16);
        let computed = crc32c::crc32c_append(crc32c::crc32c(&bytes[..16]), body);
        if stored != computed {
            return Err(Corruption::Crc { stored, computed });
        }
        let records: Vec<Record> = postcard::from_bytes(body).map_err(Corruption::Decode)?;
        let mut entries = BTreeMap::new();
        for r in records {
            let key = (r.vm, r.generation);
            if entries
                .last_key_value()
                .is_some_and(|(last, _)| *last >= key)
            {
                let (vm, generation) = key;
                return Err(Corruption::Order { vm, generation });
            }
            entries.insert(key, r.winner);
        }
        Ok(Ledger { entries })
    }
}

/// The state file, its `.tmp` sibling and the lock held while an arbiter uses them.
#[derive(Debug)]
pub(crate) struct StateFile {
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
    /// Holds an exclusive lock on `file.lock` for as long as this value lives.
    _lock: File,
}

/// `path` with `suffix` appended to its file name.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

impl StateFile {
    /// Locks and loads the state at `path`; a missing file is an empty ledger. A leftover
    /// `.tmp` (a crash before the rename, which is the commit point) is removed.
    pub(crate) fn open(path: &Path) -> Result<(StateFile, Ledger), StateError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let lock_path = sibling(path, ".lock");
        let lock = (OpenOptions::new().create(true).truncate(false).write(true))
            .open(&lock_path)
            .map_err(io_err("create", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StateError::Locked { path: lock_path }),
            Err(TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }
        let file = StateFile {
            path: path.to_owned(),
            tmp: sibling(path, ".tmp"),
            dir,
            _lock: lock,
        };
        match fs::remove_file(&file.tmp) {
            Ok(()) => tracing::info!(tmp = %file.tmp.display(), "removed a leftover state .tmp"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &file.tmp)(e)),
        }
        let ledger = match fs::read(path) {
            Ok(bytes) => Ledger::decode(&bytes).map_err(|why| StateError::Corrupt {
                path: path.to_owned(),
                why,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ledger::default(),
            Err(e) => return Err(io_err("read", path)(e)),
        };
        Ok((file, ledger))
    }

    /// Durably replaces the file with `ledger`; on `Ok` it survives a crash.
    pub(crate) fn persist(&self, ledger: &Ledger) -> Result<(), StateError> {
        let mut tmp = File::create(&self.tmp).map_err(io_err("create", &self.tmp))?;
        tmp.write_all(&ledger.encode())
            .map_err(io_err("write", &self.tmp))?;
        tmp.sync_all().map_err(io_err("fsync", &self.tmp))?;
        drop(tmp);
        fs::rename(&self.tmp, &self.path).map_err(io_err("rename over", &self.path))?;
        let dir = File::open(&self.dir).map_err(io_err("open", &self.dir))?;
        dir.sync_all().map_err(io_err("fsync", &self.dir))
    }
}
