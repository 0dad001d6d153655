//! Guest RAM: one contiguous region starting at [`layout::RAM_BASE`].

use crate::devices::layout::RAM_BASE;

/// Page size for code-cache and dirty-page bookkeeping.
const PAGE: usize = crate::PAGE_SIZE;

/// Page flag: decoded code from the page is cached (a write must invalidate it).
const CODE: u8 = 1;
/// Page flag: written since the last [`Ram::take_dirty`].
const DIRTY: u8 = 2;

/// Guest RAM. Safe slice accesses; little-endian (the RISC-V memory model).
///
/// An anonymous mapping advised to use transparent huge pages: guest accesses spread
/// over many pages would otherwise spend much of their time in host TLB misses.
pub struct Ram {
    bytes: memmap2::MmapMut,
    /// Per 4 KiB page: [`CODE`] and [`DIRTY`]. A store's only bookkeeping is one
    /// compare against `DIRTY` (the common case: a dirty page holding no cached code).
    flags: Vec<u8>,
    /// Per page: bumped whenever a page holding cached code is written.
    gen: Vec<u32>,
}

impl Ram {
    /// Zero-filled RAM of `size` bytes; every page starts dirty.
    pub fn new(size: u64) -> Ram {
        let bytes =
            memmap2::MmapMut::map_anon(size.max(1) as usize).expect("cannot allocate guest RAM");
        // Advice only: without huge pages RAM still works, just slower.
        let _ = bytes.advise(memmap2::Advice::HugePage);
        // Counted from the mapping, so every byte an access can reach has a page.
        let pages = bytes.len().div_ceil(PAGE);
        Ram {
            bytes,
            flags: vec![DIRTY; pages],
            gen: vec![0; pages],
        }
    }

    /// Size in bytes.
    #[inline]
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Number of 4 KiB pages.
    pub fn pages(&self) -> u32 {
        self.flags.len() as u32
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
        if self.flags[page] != DIRTY {
            return self.mark(page);
        }
        false
    }

    /// Note a write to `page`: set it dirty and drop its cached code. Returns true if
    /// it held cached code (now stale).
    #[cold]
    fn mark(&mut self, page: usize) -> bool {
        let had_code = self.flags[page] & CODE != 0;
        self.flags[page] = DIRTY;
        if had_code {
            self.gen[page] = self.gen[page].wrapping_add(1);
        }
        had_code
    }

    /// Note writes to the pages covering RAM offsets `[off, off + len)`.
    fn mark_range(&mut self, off: usize, len: usize) {
        for page in off / PAGE..(off + len).div_ceil(PAGE) {
            if self.flags[page] != DIRTY {
                self.mark(page);
            }
        }
    }

    /// Note that code from the page at RAM offset `off` is being cached; returns the
    /// page's generation, which changes when the page is next written.
    pub fn cache_code(&mut self, off: usize) -> u32 {
        let page = off / PAGE;
        self.flags[page] |= CODE;
        self.gen[page]
    }

    /// The generation of the page at RAM offset `off` (see [`Ram::cache_code`]).
    #[inline(always)]
    pub fn code_gen(&self, off: usize) -> u32 {
        self.gen[off / PAGE]
    }

    /// Indices (ascending) of the pages written since the last call, or since creation
    /// (so the first call returns every page). Clears their dirty bits.
    pub fn take_dirty(&mut self) -> Vec<u32> {
        let mut out = Vec::new();
        for (i, f) in self.flags.iter_mut().enumerate() {
            if *f & DIRTY != 0 {
                *f &= !DIRTY;
                out.push(i as u32);
            }
        }
        out
    }

    /// The contents of page `index` (4096 bytes), if inside RAM.
    pub fn page(&self, index: u32) -> Option<&[u8]> {
        let off = (index as usize).checked_mul(PAGE)?;
        self.bytes.get(off..off.checked_add(PAGE)?)
    }

    /// Replace page `index` with `data` (marking it dirty and dropping its cached code,
    /// as [`Ram::load`] does); false, and RAM untouched, if `index` is outside RAM or
    /// `data` is not exactly one page.
    pub fn set_page(&mut self, index: u32, data: &[u8]) -> bool {
        if data.len() != PAGE || index >= self.pages() {
            return false;
        }
        let off = index as usize * PAGE;
        match self.bytes.get_mut(off..off + PAGE) {
            Some(dst) => dst.copy_from_slice(data),
            // The last page of a RAM whose size is not a multiple of the page size.
            None => return false,
        }
        self.mark_range(off, PAGE);
        true
    }

    /// All of RAM.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    /// All of RAM, mutably. Marks every page dirty and invalidates all cached code.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.mark_range(0, self.bytes.len());
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
                self.mark_range(off, data.len());
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

    #[test]
    fn new_ram_is_all_dirty_and_take_dirty_clears() {
        let mut ram = Ram::new(3 * PAGE as u64);
        assert_eq!(ram.pages(), 3);
        assert_eq!(ram.take_dirty(), vec![0, 1, 2]);
        assert_eq!(ram.take_dirty(), Vec::<u32>::new());
    }

    #[test]
    fn every_kind_of_write_marks_its_pages_dirty() {
        let mut ram = Ram::new(4 * PAGE as u64);
        ram.take_dirty();
        assert!(!ram.write_at::<8>(3 * PAGE + 8, 1));
        assert!(!ram.write_at::<1>(3 * PAGE + 9, 2)); // already dirty: the fast path
        assert_eq!(ram.take_dirty(), vec![3]);
        // A load straddling a page boundary dirties both pages.
        assert!(ram.load(RAM_BASE + PAGE as u64 - 1, &[1, 2]));
        assert_eq!(ram.take_dirty(), vec![0, 1]);
        assert!(ram.set_page(2, &[9; PAGE]));
        assert_eq!(ram.page(2), Some(&[9u8; PAGE][..]));
        assert_eq!(ram.take_dirty(), vec![2]);
        ram.as_mut_slice();
        assert_eq!(ram.take_dirty(), vec![0, 1, 2, 3]);
        // Reading does not.
        let mut buf = [0; 8];
        assert!(ram.read(RAM_BASE, &mut buf));
        assert_eq!(ram.page(1).map(<[u8]>::len), Some(PAGE));
        assert_eq!(ram.take_dirty(), Vec::<u32>::new());
    }

    #[test]
    fn page_and_set_page_are_bounds_checked() {
        let mut ram = Ram::new(2 * PAGE as u64);
        ram.take_dirty();
        assert_eq!(ram.page(2), None);
        assert_eq!(ram.page(u32::MAX), None);
        assert!(!ram.set_page(2, &[1; PAGE]));
        assert!(!ram.set_page(u32::MAX, &[1; PAGE]));
        assert!(!ram.set_page(0, &[1; PAGE - 1]));
        assert!(!ram.set_page(0, &[1; PAGE + 1]));
        assert!(ram.as_slice().iter().all(|&b| b == 0));
        assert_eq!(ram.take_dirty(), Vec::<u32>::new());
    }

    #[test]
    fn writes_invalidate_cached_code_whether_or_not_the_page_is_dirty() {
        let mut ram = Ram::new(2 * PAGE as u64);
        // Dirty page holding code (flags == DIRTY | CODE): the write must invalidate.
        let g = ram.cache_code(PAGE);
        assert!(ram.write_at::<4>(PAGE + 4, 7));
        assert_ne!(ram.code_gen(PAGE), g);
        // Invalidated once; further writes are plain.
        let g = ram.code_gen(PAGE);
        assert!(!ram.write_at::<4>(PAGE + 4, 8));
        assert_eq!(ram.code_gen(PAGE), g);
        // Clean page holding code (flags == CODE).
        ram.take_dirty();
        let g = ram.cache_code(PAGE);
        assert!(ram.write_at::<2>(PAGE + 2, 1));
        assert_ne!(ram.code_gen(PAGE), g);
        assert_eq!(ram.take_dirty(), vec![1]);
        // Caching code keeps the dirty bit; set_page and as_mut_slice invalidate too.
        assert!(ram.load(RAM_BASE + PAGE as u64, &[0]));
        let g = ram.cache_code(PAGE);
        assert_eq!(ram.take_dirty(), vec![1]);
        assert!(ram.set_page(1, &[0; PAGE]));
        assert_ne!(ram.code_gen(PAGE), g);
        let g = ram.cache_code(PAGE);
        ram.as_mut_slice();
        assert_ne!(ram.code_gen(PAGE), g);
        // Taking the dirty set leaves the code flag alone.
        let g = ram.cache_code(0);
        ram.take_dirty();
        assert!(ram.write_at::<1>(0, 1));
        assert_ne!(ram.code_gen(0), g);
    }
}
