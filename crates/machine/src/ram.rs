//! Guest RAM: one contiguous region starting at [`layout::RAM_BASE`].

use crate::devices::layout::RAM_BASE;

/// Page size for code-cache bookkeeping.
const PAGE: usize = 4096;

/// Guest RAM. Safe slice accesses; little-endian (the RISC-V memory model).
///
/// An anonymous mapping advised to use transparent huge pages: guest accesses spread
/// over many pages would otherwise spend much of their time in host TLB misses.
pub struct Ram {
    bytes: memmap2::MmapMut,
    /// Per 4 KiB page: nonzero if decoded code from the page is cached (a write must
    /// invalidate it).
    code: Vec<u8>,
    /// Per page: bumped whenever a page holding cached code is written.
    gen: Vec<u32>,
}

impl Ram {
    /// Zero-filled RAM of `size` bytes.
    pub fn new(size: u64) -> Ram {
        let bytes =
            memmap2::MmapMut::map_anon(size.max(1) as usize).expect("cannot allocate guest RAM");
        // Advice only: without huge pages RAM still works, just slower.
        let _ = bytes.advise(memmap2::Advice::HugePage);
        let pages = (size as usize).div_ceil(PAGE);
        Ram {
            bytes,
            code: vec![0; pages],
            gen: vec![0; pages],
        }
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

    /// Write the low `N` bytes of `v` at RAM offset `off` (naturally aligned, so within
    /// one page). Returns true if the page held cached code, which is now stale.
    #[inline(always)]
    pub fn write_at<const N: usize>(&mut self, off: usize, v: u64) -> bool {
        self.bytes[off..off + N].copy_from_slice(&v.to_le_bytes()[..N]);
        let page = off / PAGE;
        if self.code[page] != 0 {
            self.invalidate(page);
            return true;
        }
        false
    }

    #[cold]
    fn invalidate(&mut self, page: usize) {
        self.code[page] = 0;
        self.gen[page] = self.gen[page].wrapping_add(1);
    }

    /// Note that code from the page at RAM offset `off` is being cached; returns the
    /// page's generation, which changes when the page is next written.
    pub fn cache_code(&mut self, off: usize) -> u32 {
        let page = off / PAGE;
        self.code[page] = 1;
        self.gen[page]
    }

    /// The generation of the page at RAM offset `off` (see [`Ram::cache_code`]).
    #[inline(always)]
    pub fn code_gen(&self, off: usize) -> u32 {
        self.gen[off / PAGE]
    }

    /// All of RAM.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// All of RAM, mutably. Invalidates all cached code.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        for page in 0..self.code.len() {
            if self.code[page] != 0 {
                self.invalidate(page);
            }
        }
        &mut self.bytes
    }

    /// Copy RAM at guest physical `paddr` into `buf`; false (and `buf` untouched) if
    /// `[paddr, paddr + buf.len())` is not wholly inside RAM.
    pub fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        match self.offset(paddr, buf.len() as u64) {
            Some(off) => {
                buf.copy_from_slice(&self.bytes[off..off + buf.len()]);
                true
            }
            None => false,
        }
    }

    /// Copy `data` into RAM at guest physical `paddr`; false if it does not fit.
    pub fn load(&mut self, paddr: u64, data: &[u8]) -> bool {
        match self.offset(paddr, data.len() as u64) {
            Some(off) => {
                self.bytes[off..off + data.len()].copy_from_slice(data);
                let last = (off + data.len()).div_ceil(PAGE);
                for page in off / PAGE..last {
                    if self.code[page] != 0 {
                        self.invalidate(page);
                    }
                }
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_and_load_are_bounds_checked() {
        let mut ram = Ram::new(2 * PAGE as u64);
        assert!(ram.load(RAM_BASE + 10, b"abc"));
        let mut buf = [0u8; 3];
        assert!(ram.read(RAM_BASE + 10, &mut buf));
        assert_eq!(&buf, b"abc");
        // Straddling the end, before the start, or wrapping: refused, buffer untouched.
        let end = RAM_BASE + ram.size();
        let mut buf = [7u8; 4];
        assert!(!ram.read(end - 2, &mut buf));
        assert!(!ram.read(RAM_BASE - 1, &mut buf));
        assert!(!ram.read(u64::MAX - 1, &mut buf));
        assert_eq!(buf, [7; 4]);
        assert!(!ram.load(end - 2, b"xyz"));
        assert!(ram.read(end - 4, &mut buf));
    }

    #[test]
    fn load_invalidates_cached_code() {
        let mut ram = Ram::new(2 * PAGE as u64);
        let g = ram.cache_code(PAGE);
        assert!(ram.load(RAM_BASE + PAGE as u64 - 1, &[1, 2]));
        assert_ne!(ram.code_gen(PAGE), g);
    }
}
