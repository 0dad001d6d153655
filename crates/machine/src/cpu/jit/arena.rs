//! Executable memory for compiled blocks: one region, filled front to back and
//! emptied whole when full (as QEMU flushes its translation buffer), so the code
//! cache has a hard size limit.
//!
//! W^X without system calls per function: the region is one anonymous memory file
//! mapped twice, writable at one address and executable at another; code is copied in
//! through the first and run from the second.

use memmap2::{Mmap, MmapMut, MmapOptions};
use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};

/// Alignment of each function's start.
const ALIGN: usize = 16;

/// The two views of the region.
struct Views {
    write: MmapMut,
    exec: Mmap,
}

/// The code arena.
pub(super) struct Arena {
    /// Mapped on first use; `None` also after the host refused.
    views: Option<Views>,
    cap: usize,
    used: usize,
}

impl Arena {
    /// An arena of at most `cap` bytes (mapped on first use).
    pub fn new(cap: usize) -> Arena {
        Arena {
            views: None,
            cap: cap.max(ALIGN),
            used: 0,
        }
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.used
    }

    /// The size limit.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// True if `len` more bytes fit.
    pub fn fits(&self, len: usize) -> bool {
        self.used.next_multiple_of(ALIGN) + len <= self.cap
    }

    /// Forget every function (their addresses must no longer be called).
    pub fn clear(&mut self) {
        self.used = 0;
    }

    /// Copy `bytes` (position-independent machine code) in; returns its address.
    pub fn add(&mut self, bytes: &[u8]) -> Result<*const u8, AddError> {
        if !self.fits(bytes.len()) {
            return Err(AddError::Full);
        }
        if self.views.is_none() {
            self.views = Some(map(self.cap).ok_or(AddError::Refused)?);
        }
        let v = self.views.as_mut().expect("mapped above");
        let start = self.used.next_multiple_of(ALIGN);
        v.write[start..start + bytes.len()].copy_from_slice(bytes);
        self.used = start + bytes.len();
        // x86 keeps instruction fetch coherent with stores (other hosts would need an
        // instruction-cache flush here; Cranelift's x86-64 backend is the one used).
        Ok(v.exec[start..].as_ptr())
    }
}

/// Map a fresh memory file of `len` bytes writable and executable at two addresses.
fn map(len: usize) -> Option<Views> {
    // SAFETY: memfd_create takes a NUL-terminated name and flags; a non-negative
    // result is a new file descriptor that we own.
    let fd = unsafe { libc::memfd_create(c"ftvm-jit".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is open and owned by nothing else.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.set_len(len as u64).ok()?;
    // SAFETY: the file is private to this process (memfd, never shared), so nothing
    // else changes the mapped bytes behind Rust's back.
    let write = unsafe { MmapOptions::new().len(len).map_mut(&file) }.ok()?;
    let exec = unsafe { MmapOptions::new().len(len).map_exec(&file) }.ok()?;
    Some(Views { write, exec })
}

/// Why [`Arena::add`] failed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum AddError {
    /// No room left: empty the arena and try again.
    Full,
    /// The host would not map the memory.
    Refused,
}
