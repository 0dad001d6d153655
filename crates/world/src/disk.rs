//! Raw disk images: a file of 512-byte sectors, optionally read-only or with a
//! snapshot overlay (writes kept in memory, the file never changes, like QEMU's
//! `snapshot=on`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Sector size in bytes.
pub const SECTOR: u64 = 512;

/// How a disk image is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DiskMode {
    /// Reads and writes go to the file.
    #[default]
    ReadWrite,
    /// The guest sees a read-only disk.
    ReadOnly,
    /// Writes go to an in-memory overlay; the file is opened read-only.
    Snapshot,
}

/// Disk errors; messages read as sentences.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The image could not be opened.
    #[error("cannot open disk image '{path}': {source}")]
    Open {
        /// Image path.
        path: PathBuf,
        /// Cause.
        source: io::Error,
    },
    /// The image size is not a whole number of sectors.
    #[error("disk image '{path}' is {len} bytes, not a multiple of {SECTOR}")]
    BadSize {
        /// Image path.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// An I/O error on the image.
    #[error("disk I/O error: {0}")]
    Io(#[from] io::Error),
    /// A request outside the image.
    #[error("request for sectors {sector}..+{count} is outside the {capacity}-sector disk")]
    OutOfRange {
        /// First sector.
        sector: u64,
        /// Sector count.
        count: u64,
        /// Disk size in sectors.
        capacity: u64,
    },
    /// A write to a read-only disk.
    #[error("the disk is read-only")]
    ReadOnly,
    /// A disk server failed or cannot be reached (the message names it).
    #[error("{0}")]
    Remote(String),
    /// A write not sent: this node's [`WritePermit`] ran out (it may no longer own the
    /// shared disk). The caller holds it until the permit returns or drops it.
    #[error("the write was not sent: this node's lease on the shared disk ran out")]
    Fenced,
}

/// Until when this node may send writes to a shared disk (DESIGN.md §4: only the live
/// side writes). The FT primary sets it from its core's lease ([`crate::nbd`] explains
/// what it guarantees); everything else leaves it unlimited. Clones share one value.
#[derive(Clone, Debug)]
pub struct WritePermit(std::sync::Arc<std::sync::atomic::AtomicU64>);

/// [`WritePermit`]'s value for "no limit".
const UNLIMITED: u64 = u64::MAX;

/// The instant [`ns`] counts from.
fn base() -> std::time::Instant {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(std::time::Instant::now)
}

/// `t` as nanoseconds on this process's monotonic clock (from 1: a permit of 0 never
/// allows anything).
fn ns(t: std::time::Instant) -> u64 {
    t.saturating_duration_since(base()).as_nanos() as u64 + 1
}

impl Default for WritePermit {
    fn default() -> WritePermit {
        WritePermit(std::sync::Arc::new(std::sync::atomic::AtomicU64::new(
            UNLIMITED,
        )))
    }
}

impl WritePermit {
    /// Writes may be sent until `deadline` (`None`: without limit).
    pub fn set(&self, deadline: Option<std::time::Instant>) {
        let v = match deadline {
            None => UNLIMITED,
            Some(t) => ns(t).min(UNLIMITED - 1),
        };
        self.0.store(v, std::sync::atomic::Ordering::SeqCst);
    }

    /// No write may be sent any more.
    pub fn revoke(&self) {
        self.0.store(0, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether a write may be sent now.
    pub fn allows(&self) -> bool {
        self.allows_for(std::time::Duration::ZERO)
    }

    /// How long the permit still holds (`None`: without limit; zero: it ran out).
    pub fn remaining(&self) -> Option<std::time::Duration> {
        self.end()
            .map(|end| end.saturating_duration_since(std::time::Instant::now()))
    }

    /// The instant the permit ends (`None`: without limit).
    pub fn end(&self) -> Option<std::time::Instant> {
        let v = self.0.load(std::sync::atomic::Ordering::SeqCst);
        (v != UNLIMITED).then(|| base() + std::time::Duration::from_nanos(v.saturating_sub(1)))
    }

    /// Whether a write may be sent now and the permit still holds `margin` later (for
    /// the moments between this check and the write reaching the socket).
    pub fn allows_for(&self, margin: std::time::Duration) -> bool {
        let v = self.0.load(std::sync::atomic::Ordering::SeqCst);
        v == UNLIMITED || ns(std::time::Instant::now() + margin) < v
    }
}

/// A raw disk image backend.
pub struct DiskImage {
    file: File,
    mode: DiskMode,
    capacity: u64,
    overlay: BTreeMap<u64, [u8; SECTOR as usize]>,
}

impl DiskImage {
    /// Open `path` in `mode`.
    pub fn open(path: &Path, mode: DiskMode) -> Result<DiskImage, DiskError> {
        let file = OpenOptions::new()
            .read(true)
            .write(mode == DiskMode::ReadWrite)
            .open(path)
            .map_err(|source| DiskError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let len = file.metadata()?.len();
        if len % SECTOR != 0 {
            return Err(DiskError::BadSize {
                path: path.to_path_buf(),
                len,
            });
        }
        Ok(DiskImage {
            file,
            mode,
            capacity: len / SECTOR,
            overlay: BTreeMap::new(),
        })
    }

    /// Size in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// True if the guest must see a read-only disk.
    pub fn read_only(&self) -> bool {
        self.mode == DiskMode::ReadOnly
    }

    fn check(&self, sector: u64, bytes: u64) -> Result<(), DiskError> {
        let count = bytes.div_ceil(SECTOR);
        match sector.checked_add(count) {
            Some(end) if end <= self.capacity => Ok(()),
            _ => Err(DiskError::OutOfRange {
                sector,
                count,
                capacity: self.capacity,
            }),
        }
    }

    /// Read `len` bytes starting at `sector`.
    pub fn read(&self, sector: u64, len: u64) -> Result<Vec<u8>, DiskError> {
        self.check(sector, len)?;
        let mut buf = vec![0u8; len as usize];
        self.file.read_exact_at(&mut buf, sector * SECTOR)?;
        if !self.overlay.is_empty() {
            for (i, chunk) in buf.chunks_mut(SECTOR as usize).enumerate() {
                if let Some(s) = self.overlay.get(&(sector + i as u64)) {
                    chunk.copy_from_slice(&s[..chunk.len()]);
                }
            }
        }
        Ok(buf)
    }

    /// Write `data` starting at `sector` (whole sectors; a short tail is padded with
    /// the existing contents).
    pub fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        self.check(sector, data.len() as u64)?;
        match self.mode {
            DiskMode::ReadOnly => Err(DiskError::ReadOnly),
            DiskMode::ReadWrite => Ok(self.file.write_all_at(data, sector * SECTOR)?),
            DiskMode::Snapshot => {
                for (i, chunk) in data.chunks(SECTOR as usize).enumerate() {
                    let s = sector + i as u64;
                    let mut full = [0u8; SECTOR as usize];
                    if chunk.len() < SECTOR as usize {
                        full.copy_from_slice(&self.read(s, SECTOR)?);
                    }
                    full[..chunk.len()].copy_from_slice(chunk);
                    self.overlay.insert(s, full);
                }
                Ok(())
            }
        }
    }

    /// Make written data durable (fdatasync; nothing to do for a snapshot overlay).
    pub fn flush(&mut self) -> Result<(), DiskError> {
        if self.mode == DiskMode::ReadWrite {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

/// A disk behind the guest's virtio-blk: sector reads and writes, and a flush that
/// makes written data durable (DESIGN.md §5 "Disk").
pub trait Disk: Send {
    /// Read `len` bytes starting at `sector`.
    fn read(&mut self, sector: u64, len: u64) -> Result<Vec<u8>, DiskError>;
    /// Write `data` (a whole number of sectors) starting at `sector`.
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError>;
    /// Make every completed write durable.
    fn flush(&mut self) -> Result<(), DiskError>;
    /// Called by a node that just became the disk's only writer, before its first
    /// write: from then on, writes wait until none of an earlier owner's can land any
    /// more (reads need not; for a disk only one process opens, at once).
    fn fence(&mut self) -> Result<(), DiskError> {
        Ok(())
    }
}

impl Disk for DiskImage {
    fn read(&mut self, sector: u64, len: u64) -> Result<Vec<u8>, DiskError> {
        DiskImage::read(self, sector, len)
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        DiskImage::write(self, sector, data)
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        DiskImage::flush(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, sectors: u64) -> PathBuf {
        let p = std::env::temp_dir().join(format!("ftvm-disk-{}-{name}", std::process::id()));
        let data: Vec<u8> = (0..sectors * SECTOR).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, data).unwrap();
        p
    }

    #[test]
    fn read_write_flush_round_trip() {
        let p = image("rw", 8);
        let mut d = DiskImage::open(&p, DiskMode::ReadWrite).unwrap();
        assert_eq!(d.capacity(), 8);
        let expect: Vec<u8> = (512..516u64).map(|i| (i % 251) as u8).collect();
        assert_eq!(d.read(1, 4).unwrap(), expect);
        d.write(2, &[7u8; 1024]).unwrap();
        d.flush().unwrap();
        assert_eq!(d.read(2, 1024).unwrap(), vec![7u8; 1024]);
        let on_disk = std::fs::read(&p).unwrap();
        assert_eq!(&on_disk[1024..2048], &[7u8; 1024][..]);
    }

    #[test]
    fn snapshot_mode_never_changes_the_file() {
        let p = image("snap", 4);
        let before = std::fs::read(&p).unwrap();
        let mut d = DiskImage::open(&p, DiskMode::Snapshot).unwrap();
        d.write(1, &[9u8; 512]).unwrap();
        d.write(3, &[5u8; 100]).unwrap();
        assert_eq!(d.read(1, 512).unwrap(), vec![9u8; 512]);
        let s3 = d.read(3, 512).unwrap();
        assert_eq!(&s3[..100], &[5u8; 100][..]);
        assert_eq!(&s3[100..], &before[3 * 512 + 100..4 * 512]);
        assert_eq!(std::fs::read(&p).unwrap(), before);
    }

    #[test]
    fn read_only_and_range_errors() {
        let p = image("ro", 2);
        let mut d = DiskImage::open(&p, DiskMode::ReadOnly).unwrap();
        assert!(d.read_only());
        assert!(matches!(d.write(0, &[0; 512]), Err(DiskError::ReadOnly)));
        assert!(matches!(d.read(2, 512), Err(DiskError::OutOfRange { .. })));
        assert!(matches!(
            d.read(u64::MAX, 512),
            Err(DiskError::OutOfRange { .. })
        ));
        std::fs::write(&p, [0u8; 100]).unwrap();
        assert!(matches!(
            DiskImage::open(&p, DiskMode::ReadOnly),
            Err(DiskError::BadSize { .. })
        ));
        assert!(matches!(
            DiskImage::open(Path::new("/nonexistent/disk.img"), DiskMode::ReadOnly),
            Err(DiskError::Open { .. })
        ));
    }
}
