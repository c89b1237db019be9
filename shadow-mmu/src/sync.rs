//! The one place that chooses between the real primitives and loom's.
//!
//! With `--cfg loom` every atomic, `Arc` and lock the crate uses comes from
//! loom, and crossbeam-epoch runs on loom too (it switches on its own
//! `crossbeam_loom` cfg, so the loom build needs
//! `RUSTFLAGS="--cfg loom --cfg crossbeam_loom"`). The models in
//! `loom-tests/tests/shadow_*.rs` therefore exercise this crate's own code,
//! reclamation included, not a copy of it.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use alloc::sync::Arc;
#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

pub(crate) use crossbeam_epoch as epoch;

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
