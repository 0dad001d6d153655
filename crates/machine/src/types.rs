//! Typed numbers: what a `u64` means is part of its type (STYLE.md §2).

use serde::{Deserialize, Serialize};
use std::fmt;

/// An instruction count: the number of guest instructions executed since reset
/// (retired or trapped). The machine's only notion of "when" (DESIGN.md §2).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ICount(pub u64);

impl ICount {
    /// The largest count: "run until something else stops you".
    pub const MAX: ICount = ICount(u64::MAX);
}

impl fmt::Display for ICount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A guest physical address.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct GuestPhysAddr(pub u64);

impl GuestPhysAddr {
    /// `self + off`, or `None` on overflow.
    pub fn checked_add(self, off: u64) -> Option<GuestPhysAddr> {
        self.0.checked_add(off).map(GuestPhysAddr)
    }
}

impl fmt::Display for GuestPhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// A half-open range of guest physical addresses `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysRange {
    /// First address in the range.
    pub start: u64,
    /// First address past the range.
    pub end: u64,
}

impl PhysRange {
    /// The range `[start, start + len)`, or `None` if it would wrap.
    pub fn new(start: u64, len: u64) -> Option<PhysRange> {
        start.checked_add(len).map(|end| PhysRange { start, end })
    }

    /// True if `[addr, addr + size)` lies wholly inside the range.
    #[inline]
    pub fn contains(&self, addr: u64, size: u64) -> bool {
        addr >= self.start && addr.checked_add(size).is_some_and(|e| e <= self.end)
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True for an empty range.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}
