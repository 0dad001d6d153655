//! Guest RAM: one contiguous region starting at [`layout::RAM_BASE`].

use crate::devices::layout::RAM_BASE;

/// Page size for code-cache and dirty-page bookkeeping.
const PAGE: usize = crate::PAGE_SIZE;

/// Page flag: decoded code from the page is cached (a write to it must be checked
/// against [`Ram::code_map`]).
pub(crate) const CODE: u8 = 1;
/// Granularity of [`Ram::code_map`]: a write invalidates a page's cached code only if
/// it touches one of the 64-byte chunks the code came from, so data sharing a page
/// with code (small programs, .bss after .text) does not throw the code away.
const CHUNK: usize = PAGE / 64;
/// Page flag: written since the last [`Ram::take_dirty`].
pub(crate) const DIRTY: u8 = 2;

/// Guest RAM. Safe slice accesses; little-endian (the RISC-V memory model).
///
/// An anonymous mapping advised to use transparent huge pages: guest accesses spread
/// over many pages would otherwise spend much of their time in host TLB misses.
pub struct Ram {
    bytes: memmap2::MmapMut,
    /// Per 4 KiB page: [`CODE`] and [`DIRTY`]. A store's only bookkeeping is one
    /// compare against `DIRTY` (the common case: a dirty page holding no cached code).
    flags: Vec<u8>,
    /// Per page: bumped whenever a write touches cached code on the page.
    gen: Vec<u32>,
    /// Per page: bit i set if cached code came from bytes `[64 i, 64 i + 64)`.
    code_map: Vec<u64>,
}

impl Ram {
    /// Zero-filled RAM of `size` bytes; every page starts dirty.
    #[cfg(test)]
    pub fn new(size: u64) -> Ram {
        Ram::try_new(size).expect("cannot allocate guest RAM")
    }

    /// `size` bytes of zeroed RAM, or the host's refusal (a size from a snapshot or
    /// the command line is never trusted to fit).
    pub fn try_new(size: u64) -> std::io::Result<Ram> {
        let len = usize::try_from(size.max(1)).map_err(std::io::Error::other)?;
        let bytes = memmap2::MmapMut::map_anon(len)?;
        // Advice only: without huge pages RAM still works, just slower.
        let _ = bytes.advise(memmap2::Advice::HugePage);
        // Counted from the mapping, so every byte an access can reach has a page.
        let pages = bytes.len().div_ceil(PAGE);
        Ok(Ram {
            bytes,
            flags: vec![DIRTY; pages],
            gen: vec![0; pages],
            code_map: vec![0; pages],
        })
    }

    /// Size in bytes.
    #[inline]
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The bytes and the per-page flags, for compiled code: it reads and writes RAM
    /// directly, and stores directly only to pages whose flags are exactly [`DIRTY`]
    /// (no bookkeeping to do); every other access goes through the methods here.
    pub(crate) fn raw_parts(&mut self) -> (*mut u8, *const u8) {
        (self.bytes.as_mut_ptr(), self.flags.as_ptr())
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
    /// one page). Returns true if it overwrote cached code, which is now stale.
    #[inline(always)]
    pub fn write_at<const N: usize>(&mut self, off: usize, v: u64) -> bool {
        self.bytes[off..off + N].copy_from_slice(&v.to_le_bytes()[..N]);
        let page = off / PAGE;
        if self.flags[page] != DIRTY {
            return self.mark(page, off % PAGE, N);
        }
        false
    }

    /// Note a write to `[at, at + len)` within `page`: set it dirty, and if it touched
    /// cached code, drop all of the page's cached code. Returns true in that case.
    #[cold]
    fn mark(&mut self, page: usize, at: usize, len: usize) -> bool {
        self.flags[page] |= DIRTY;
        if self.flags[page] & CODE == 0 || self.code_map[page] & chunks(at, len) == 0 {
            return false;
        }
        self.flags[page] &= !CODE;
        self.code_map[page] = 0;
        self.gen[page] = self.gen[page].wrapping_add(1);
        true
    }

    /// Note writes to RAM offsets `[off, off + len)`.
    fn mark_range(&mut self, off: usize, len: usize) {
        let end = off + len;
        let mut at = off;
        while at < end {
            let page = at / PAGE;
            let stop = end.min((page + 1) * PAGE);
            if self.flags[page] != DIRTY {
                self.mark(page, at % PAGE, stop - at);
            }
            at = stop;
        }
    }

    /// Note that code from RAM offsets `[off, off + len)` (within one page) is being
    /// cached; returns the page's generation, which changes when that code is
    /// overwritten.
    pub fn cache_code(&mut self, off: usize, len: usize) -> u32 {
        let page = off / PAGE;
        self.flags[page] |= CODE;
        self.code_map[page] |= chunks(off % PAGE, len.max(1));
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

/// The [`Ram::code_map`] bits of the chunks that `[at, at + len)` (within a page,
/// `len` ≥ 1) touches.
fn chunks(at: usize, len: usize) -> u64 {
    let (first, last) = (at / CHUNK, (at + len - 1).min(PAGE - 1) / CHUNK);
    let upto = if last == 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    };
    upto & !((1u64 << first) - 1)
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
        let g = ram.cache_code(PAGE, 16);
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
        let g = ram.cache_code(PAGE, 16);
        assert!(ram.write_at::<4>(PAGE + 4, 7));
        assert_ne!(ram.code_gen(PAGE), g);
        // Invalidated once; further writes are plain.
        let g = ram.code_gen(PAGE);
        assert!(!ram.write_at::<4>(PAGE + 4, 8));
        assert_eq!(ram.code_gen(PAGE), g);
        // Clean page holding code (flags == CODE).
        ram.take_dirty();
        let g = ram.cache_code(PAGE, 16);
        assert!(ram.write_at::<2>(PAGE + 2, 1));
        assert_ne!(ram.code_gen(PAGE), g);
        assert_eq!(ram.take_dirty(), vec![1]);
        // Caching code keeps the dirty bit; set_page and as_mut_slice invalidate too.
        assert!(ram.load(RAM_BASE + PAGE as u64, &[0]));
        let g = ram.cache_code(PAGE, 16);
        assert_eq!(ram.take_dirty(), vec![1]);
        assert!(ram.set_page(1, &[0; PAGE]));
        assert_ne!(ram.code_gen(PAGE), g);
        let g = ram.cache_code(PAGE, 16);
        ram.as_mut_slice();
        assert_ne!(ram.code_gen(PAGE), g);
        // Taking the dirty set leaves the code flag alone.
        let g = ram.cache_code(0, 16);
        ram.take_dirty();
        assert!(ram.write_at::<1>(0, 1));
        assert_ne!(ram.code_gen(0), g);
    }

    #[test]
    fn writes_beside_cached_code_on_its_page_keep_it() {
        let mut ram = Ram::new(2 * PAGE as u64);
        // Code from bytes 0x100..0x140 (chunks 4 and 5, as cached blocks may straddle).
        let g = ram.cache_code(PAGE + 0x100, 0x40);
        assert!(!ram.write_at::<8>(PAGE + 0xf8, 1), "the chunk before");
        assert!(!ram.write_at::<8>(PAGE + 0x180, 1), "the chunk after");
        assert!(ram.load(RAM_BASE + PAGE as u64 + 0x800, &[1; 0x800]));
        assert_eq!(
            ram.code_gen(PAGE),
            g,
            "data beside the code leaves it valid"
        );
        assert_eq!(ram.take_dirty(), vec![0, 1]);
        // The code stays watched: a write into it, even to a now clean page, invalidates.
        assert!(ram.write_at::<1>(PAGE + 0x13f, 1));
        assert_ne!(ram.code_gen(PAGE), g);
        // A range write that reaches into code from another page invalidates too.
        let g = ram.cache_code(PAGE, 2);
        assert!(ram.load(RAM_BASE + PAGE as u64 - 4, &[0; 5]));
        assert_ne!(ram.code_gen(PAGE), g);
    }

    #[test]
    fn chunk_masks_cover_exactly_the_touched_chunks() {
        assert_eq!(chunks(0, 1), 1);
        assert_eq!(chunks(63, 2), 0b11);
        assert_eq!(chunks(64, 64), 0b10);
        assert_eq!(chunks(0, PAGE), u64::MAX);
        assert_eq!(chunks(PAGE - 1, 1), 1 << 63);
    }
}
