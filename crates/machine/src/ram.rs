//! Guest RAM: one contiguous region starting at [`layout::RAM_BASE`].

use crate::devices::layout::RAM_BASE;

/// Guest RAM. Safe slice accesses; little-endian (the RISC-V memory model).
///
/// An anonymous mapping advised to use transparent huge pages: guest accesses spread
/// over many pages would otherwise spend much of their time in host TLB misses.
pub struct Ram {
    bytes: memmap2::MmapMut,
}

impl Ram {
    /// Zero-filled RAM of `size` bytes.
    pub fn new(size: u64) -> Ram {
        let bytes =
            memmap2::MmapMut::map_anon(size.max(1) as usize).expect("cannot allocate guest RAM");
        // Advice only: without huge pages RAM still works, just slower.
        let _ = bytes.advise(memmap2::Advice::HugePage);
        Ram { bytes }
    }

    /// Size in bytes.
    #[inline]
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The offset of `[paddr, paddr + size)` in RAM, if wholly inside.
    #[inline(always)]
    pub fn offset(&self, paddr: u64, size: u64) -> Option<usize> {
        let off = paddr.wrapping_sub(RAM_BASE);
        if off < self.size() && self.size() - off >= size {
            Some(off as usize)
        } else {
            None
        }
    }

    /// Read `N` bytes (1, 2, 4, 8) at RAM offset `off`, zero-extended.
    #[inline(always)]
    pub fn read_at<const N: usize>(&self, off: usize) -> u64 {
        let mut b = [0u8; 8];
        b[..N].copy_from_slice(&self.bytes[off..off + N]);
        u64::from_le_bytes(b)
    }

    /// Write the low `N` bytes of `v` at RAM offset `off`.
    #[inline(always)]
    pub fn write_at<const N: usize>(&mut self, off: usize, v: u64) {
        self.bytes[off..off + N].copy_from_slice(&v.to_le_bytes()[..N]);
    }

    /// All of RAM.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// All of RAM, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// Copy `data` into RAM at guest physical `paddr`; false if it does not fit.
    pub fn load(&mut self, paddr: u64, data: &[u8]) -> bool {
        match self.offset(paddr, data.len() as u64) {
            Some(off) => {
                self.bytes[off..off + data.len()].copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}
