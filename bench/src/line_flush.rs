//! Evicting chosen cache lines, for benchmarks whose rows must find
//! exactly those lines cold (`bench::cold_single`) while everything else
//! they touch stays warm: x86-64's `clflush`, which writes a line back
//! and invalidates it in every cache of the coherence domain, and
//! `mfence`, which waits until the flushes are done. Elsewhere (the
//! crate still builds for arm64) [`AVAILABLE`] is false and
//! [`flush_line`] does nothing; the rows that need it are skipped there.
//!
//! The only `unsafe` of the bench crate (which otherwise denies it): the
//! intrinsics are `unsafe fn`s (`_mm_clflush` takes a raw pointer,
//! `_mm_mfence` is a `#[target_feature(enable = "sse2")]` function).
#![allow(unsafe_code)]

/// Whether [`flush_line`] evicts lines on this target.
pub const AVAILABLE: bool = cfg!(target_arch = "x86_64");

/// Starts evicting the cache line holding the first byte of `value` from
/// every cache level (its value in memory is unchanged). Call
/// [`wait_for_flushes`] before the accesses that should miss.
#[inline]
pub fn flush_line<T: ?Sized>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `value` is a live reference, so its first byte's address is
    // mapped and readable, which is all `clflush` requires (it faults only
    // on an address the process could not read); it changes no value the
    // program can observe, only where the line is cached.
    unsafe {
        core::arch::x86_64::_mm_clflush(core::ptr::from_ref(value).cast::<u8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Waits until every [`flush_line`] before it has completed, and orders
/// the loads after it behind them (`mfence` orders `clflush`).
#[inline]
pub fn wait_for_flushes() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `mfence` has no operands and no effect but ordering; SSE2,
    // the target feature it is declared with, is part of the x86-64
    // baseline, so every x86-64 CPU has it.
    unsafe {
        core::arch::x86_64::_mm_mfence();
    }
}
