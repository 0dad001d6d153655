//! Shared by every fuzz target (included with `#[path]`): a global allocator that aborts
//! on any single allocation over [`LIMIT`], so a length taken from the input without a
//! check is a crash with its input saved. libFuzzer's own `-malloc_limit_mb` needs a
//! sanitizer's allocator hooks, which `cargo fuzz run -s none` does not have; its
//! `-rss_limit_mb` still catches memory that grows by many small allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

/// Largest single allocation a target may make (the machine's 16 MiB of guest RAM is a
/// mapping, not an allocation).
pub const LIMIT: usize = 256 << 20;

pub struct Limited;

fn refuse(size: usize) -> ! {
    let mut msg = [0u8; 96];
    let mut w = &mut msg[..];
    let _ = writeln!(w, "fuzz: an allocation of {size} bytes (limit {LIMIT})");
    let n = 96 - w.len();
    let _ = std::io::stderr().write_all(&msg[..n]);
    std::process::abort();
}

// SAFETY: forwards to the system allocator unchanged; only refuses oversized requests.
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LIMIT {
            refuse(layout.size());
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LIMIT {
            refuse(layout.size());
        }
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > LIMIT {
            refuse(new_size);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Limited = Limited;
