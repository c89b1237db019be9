//! Software prefetch: a hint that the cache line holding an address will be
//! read soon.
//!
//! A one-page invalidation in a large cache touches a dozen cache lines
//! (hash buckets of the walk cache, its block indexes, the reverse map, the
//! shadow table's leaf) whose addresses all follow from the IPA. Read one
//! after the other, each is a separate miss; asking for all of them first
//! lets the memory system fetch them in parallel (see
//! `Service::invalidate`).
//!
//! A prefetch has no architectural effect: it never faults, whatever the
//! address (x86-64 PREFETCHT0; AArch64 PRFM PLDL1KEEP, a hint that does not
//! generate an abort), and it changes no value a program can observe, so
//! the wrapper is safe for any pointer, dangling or null. On other targets,
//! and under loom, it does nothing.
#![allow(unsafe_code)]

/// Blocks of one size a short range's prefetch asks for one by one (their
/// hash slots follow from the range alone, present or not): a 64 KiB range
/// of pages, what `Service::invalidate_range` prefetches.
pub(crate) const SHORT_RANGE_BLOCKS: u64 = 16;

/// Asks for the cache line holding `address` (for reading). Never faults
/// and has no effect a program can observe: any address will do.
#[inline(always)]
pub(crate) fn prefetch<T>(address: *const T) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    // SAFETY: PREFETCHT0 is a hint: it does not fault on any address and
    // writes nothing; SSE, which the intrinsic requires, is part of the
    // x86-64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            address.cast::<i8>(),
        );
    }
    #[cfg(all(target_arch = "aarch64", not(loom)))]
    // SAFETY: PRFM is a hint: it generates no abort whatever the address
    // (Arm ARM, "Prefetch memory"), reads no register but the address and
    // writes no register, memory or flag.
    unsafe {
        core::arch::asm!(
            "prfm pldl1keep, [{address}]",
            address = in(reg) address,
            options(nostack, preserves_flags, readonly)
        );
    }
    #[cfg(any(not(any(target_arch = "x86_64", target_arch = "aarch64")), loom))]
    let _ = address;
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Any address is fine: valid, dangling, null, kernel half.
    #[test]
    fn prefetch_never_faults() {
        let x = [0u64; 16];
        prefetch(&x);
        prefetch(core::ptr::null::<u8>());
        prefetch(usize::MAX as *const u8);
        prefetch(0xffff_8000_0000_0000usize as *const u64);
        assert_eq!(x, [0; 16]);
    }
}
