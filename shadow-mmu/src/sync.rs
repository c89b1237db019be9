//! The one place that chooses between the real primitives and loom's.
//!
//! With `--cfg loom` every protocol atomic and lock the crate uses comes from
//! loom, and crossbeam-epoch runs on loom too (it switches on its own
//! `crossbeam_loom` cfg, so the loom build needs
//! `RUSTFLAGS="--cfg loom --cfg crossbeam_loom"`). The models in
//! `loom-tests/tests/shadow_*.rs` therefore exercise this crate's own code,
//! reclamation included, not a copy of it.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, Ordering};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, Ordering};

pub(crate) use crossbeam_epoch as epoch;

/// Atomics for hints and approximate counts (a cache bucket's tags and
/// eviction cursor, the shadow-leaf count the budget caps): each is written
/// by lock-serialised writers or with read-modify-writes, and other
/// threads read it only as a hint or an approximate count, so no protocol
/// depends on its ordering and loom does not need to interleave them
/// (modelling them would only multiply the states it explores).
///
/// The service's statistics counters are *not* here: they are per-worker
/// plain load-and-store increments, correct only because a dropped
/// worker's counters pass to the next worker through a Release/Acquire
/// handover (`Service::worker`), so they are modelled (loom model
/// `shadow_worker_counters`). The registry's `Arc`s stay `alloc`'s under
/// loom on purpose: the handover reads an explicit claim flag, not
/// `Arc::strong_count`: std documents no memory ordering for
/// `strong_count` or for how it pairs with a clone's drop (the handover
/// would rest on std's internals), and loom's `Arc::strong_count` acquires
/// (SeqCst) on its own, so a model of a strong-count handover could not
/// fail with its Acquire fence removed.
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

// SAFETY: the cell's byte is never read or written, only its accesses are
// recorded: loom checks each one against every other and reports a
// `with_mut` (the destructor) unordered with any `with` (a reader), which is
// the race this marker exists to find. Sharing it is therefore what it is
// for; outside loom the struct is empty (and `Sync` without this).
#[cfg(loom)]
#[allow(unsafe_code)]
unsafe impl Sync for Liveness {}

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
