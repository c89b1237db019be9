//! A global allocator that counts what the process allocates, for the
//! tests that measure what the service or the shadow table allocate or
//! hold. The counts are process-wide, so each such test is a binary of its
//! own with one test (no other thread allocates meanwhile), and installs it
//! with `#[global_allocator] static ALLOCATOR: Counting = Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::Relaxed};

/// Bytes allocated and not yet freed.
static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The most `LIVE` was since the last [`reset_peak`].
static PEAK: AtomicIsize = AtomicIsize::new(0);
/// Allocations made (including reallocations).
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

/// Forwards to [`System`], counting bytes and calls.
pub struct Counting;

/// Bytes allocated and not yet freed, process-wide.
pub fn live_bytes() -> isize {
    LIVE.load(Relaxed)
}

/// The most bytes live since the last [`reset_peak`].
pub fn peak_bytes() -> isize {
    PEAK.load(Relaxed)
}

/// Starts measuring the peak from the bytes live now.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Relaxed), Relaxed);
}

/// Allocations and reallocations made, process-wide.
pub fn allocations() -> usize {
    ALLOCATIONS.load(Relaxed)
}

fn note(delta: isize) {
    let now = LIVE.fetch_add(delta, Relaxed) + delta;
    PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments,
// which satisfy `GlobalAlloc`'s contracts, and only counts besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: the caller's layout, as `GlobalAlloc::alloc` requires.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: as in `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (so from `System`) with
        // `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: as in `dealloc`, and `new_size` as the caller guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        p
    }
}
