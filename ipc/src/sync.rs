//! The one place that chooses between the real primitives and loom's.
//!
//! With `--cfg loom` every atomic, cell, lock and spin hint the crate uses
//! comes from loom, so the models in `loom-tests/` exercise this crate's
//! own code rather than a copy of it.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, Ordering};

// Only the host doorbell needs a 64-bit atomic.
#[cfg(all(any(feature = "std", test), not(loom)))]
pub(crate) use core::sync::atomic::AtomicU64;

#[cfg(all(any(feature = "std", test), not(loom)))]
pub(crate) use std::sync::{Condvar, Mutex};

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex};

/// Tell the CPU (or loom's scheduler) that we are busy-waiting.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// Asks for the cache line at `address` in a writable state ahead of the
/// stores to it, so that a batch's lines are requested from the other
/// core together instead of one store miss at a time. A hint only: it
/// never faults and changes nothing the program can observe.
#[inline(always)]
pub(crate) fn prefetch_for_write<T>(address: *const T) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
        // SAFETY: PREFETCHW is a hint: it does not fault on any address
        // and changes no architectural state.
        unsafe { _mm_prefetch::<_MM_HINT_ET0>(address.cast()) };
    }
    #[cfg(all(target_arch = "aarch64", not(loom)))]
    {
        // SAFETY: PRFM is a hint: it does not fault on any address and
        // changes no architectural state.
        unsafe {
            core::arch::asm!("prfm pstl1keep, [{0}]", in(reg) address, options(nostack, readonly, preserves_flags))
        };
    }
    let _ = address;
}

/// An `UnsafeCell` with loom's closure-based access API, so that loom can
/// track every read and write of the ring slots and report data races.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(loom::cell::UnsafeCell<T>);

#[cfg(loom)]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(loom::cell::UnsafeCell::new(value))
    }

    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        self.0.with(f)
    }

    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        self.0.with_mut(f)
    }
}

/// `core::cell::UnsafeCell` behind the same API as loom's. Transparent, so a
/// ring built from zeroed shared memory has exactly the layout it declares.
#[cfg(not(loom))]
#[derive(Debug, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::KnownLayout)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}
