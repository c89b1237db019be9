//! The one place that chooses between the real primitives and loom's.
//!
//! With `--cfg loom` every protocol atomic and lock the crate uses comes from
//! loom, and crossbeam-epoch runs on loom too (it switches on its own
//! `crossbeam_loom` cfg, so the loom build needs
//! `RUSTFLAGS="--cfg loom --cfg crossbeam_loom"`). The models in
//! `loom-tests/tests/shadow_*.rs` therefore exercise this crate's own code,
//! reclamation included, not a copy of it.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

pub(crate) use crossbeam_epoch as epoch;

/// Atomics for statistics and approximate budget counts: no protocol reads
/// them for correctness, so loom does not need to interleave them (and
/// modelling them would only multiply the states it explores).
pub(crate) mod unmodelled {
    pub(crate) use core::sync::atomic::{AtomicU64, AtomicUsize};
}

/// A mutual-exclusion lock for the writer side (inserts and invalidations
/// of one context, the context directory). Readers never take it.
///
/// On the host and under hv this is a spin lock (no_std; the critical
/// sections are short and bounded); under loom it is loom's `Mutex`, so
/// the models see every acquisition.
#[derive(Debug, Default)]
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: spin::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = spin::MutexGuard<'a, T>;
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Mutex {
            #[cfg(not(loom))]
            inner: spin::Mutex::new(value),
            #[cfg(loom)]
            inner: loom::sync::Mutex::new(value),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        {
            self.inner.lock()
        }
        #[cfg(loom)]
        {
            // A poisoned lock means another model thread panicked: the
            // model has already failed, so propagate.
            self.inner.lock().unwrap_or_else(|p| p.into_inner())
        }
    }
}

/// Marks a lock-free node as alive for loom: readers touch it where they
/// dereference the node and the node's destructor writes it, so loom
/// reports any read not ordered before the destruction (a use after free
/// the epoch scheme failed to prevent). Zero-sized outside loom.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    #[cfg(loom)]
    cell: loom::cell::UnsafeCell<u8>,
}

impl Liveness {
    #[inline(always)]
    pub(crate) fn touch(&self) {
        #[cfg(loom)]
        self.cell.with(|_| ());
    }
}

impl Drop for Liveness {
    #[inline(always)]
    fn drop(&mut self) {
        #[cfg(loom)]
        self.cell.with_mut(|_| ());
    }
}
