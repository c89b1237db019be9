//! Doorbells: how a consumer with nothing to do sleeps without missing a
//! record.
//!
//! # Protocol every implementation follows
//!
//! 1. A producer publishes first (the ring's Release stores) and rings
//!    after, once per batch. Any number of producers may ring one doorbell
//!    concurrently; ringing must be cheap when nobody waits.
//! 2. One consumer at a time waits. `wait_until(ready)` returns only after
//!    `ready()` returned true. Before it blocks it must *arm* the doorbell
//!    and then observe every publish that preceded a ring it did not see:
//!    either the ring finds the doorbell armed and wakes the waiter, or the
//!    waiter's check after arming sees the published records. That is the
//!    "no lost wakeup" rule, and the loom model `ipc_doorbell` checks it for
//!    [`HostDoorbell`].
//! 3. Spurious wakeups are allowed: the waiter re-checks `ready()`.
//!
//! For the hypervisor, WFE/SEV satisfies this directly: `ring` is
//! `DSB ISHST; SEV` (records visible before the event), `wait_until` is
//! `while !ready() { WFE }`; the event register is the arming, because a SEV
//! between the check and the WFE makes that WFE return at once. An SGI-based
//! bell works the same way with the interrupt's pending state as the
//! arming.

/// Wakes a consumer that waits for records; see the module documentation
/// for the protocol an implementation must follow.
pub trait Doorbell {
    /// Called by a producer after it published one or more records.
    fn ring(&self);

    /// Returns once `ready()` is true, sleeping meanwhile if it can.
    fn wait_until<F: FnMut() -> bool>(&self, ready: F);
}

/// A doorbell that never sleeps: waiting spins on `ready()`. For
/// dedicated cores, and a baseline for measurements.
#[derive(Debug, Default, Clone, Copy)]
pub struct SpinDoorbell;

impl Doorbell for SpinDoorbell {
    #[inline]
    fn ring(&self) {}

    #[inline]
    fn wait_until<F: FnMut() -> bool>(&self, mut ready: F) {
        while !ready() {
            crate::sync::spin_hint();
        }
    }
}

#[cfg(any(feature = "std", test, loom))]
pub use host::HostDoorbell;

#[cfg(any(feature = "std", test, loom))]
mod host {
    use super::Doorbell;
    use crate::sync::{spin_hint, AtomicU32, Condvar, Mutex, Ordering};

    /// No waiter is parked and no ring is pending.
    const EMPTY: u32 = 0;
    /// The waiter armed the bell and may be (about to be) parked.
    const PARKED: u32 = 1;
    /// A ring happened that the waiter has not consumed yet.
    const NOTIFIED: u32 = 2;

    /// Host doorbell: the waiter spins on `ready()` for a while, then parks
    /// on a condition variable. A ring is one atomic swap when nobody is
    /// parked, plus a lock/unlock and a notify when somebody is.
    ///
    /// Ordering argument: the state word is only changed by read-modify-
    /// writes, so they are totally ordered. If the producer's swap comes
    /// after the waiter's arming CAS, it reads `PARKED` and wakes the
    /// waiter; the lock taken in between makes sure the waiter is either
    /// still before its state check (and will see `NOTIFIED`) or inside
    /// `Condvar::wait`. If it comes before, the arming CAS fails on
    /// `NOTIFIED`, and its Acquire synchronises with the swap's Release,
    /// so the next `ready()` sees the records published before the ring.
    #[derive(Debug)]
    pub struct HostDoorbell {
        state: AtomicU32,
        lock: Mutex<()>,
        wakeup: Condvar,
        spin_limit: u32,
    }

    impl HostDoorbell {
        /// A bell whose waiter polls `ready()` `spin_limit` times before it
        /// parks.
        pub fn new(spin_limit: u32) -> HostDoorbell {
            HostDoorbell {
                state: AtomicU32::new(EMPTY),
                lock: Mutex::new(()),
                wakeup: Condvar::new(),
                spin_limit,
            }
        }
    }

    impl Default for HostDoorbell {
        /// About 10-50 us of spinning on current cores before parking.
        fn default() -> Self {
            HostDoorbell::new(1 << 14)
        }
    }

    impl Doorbell for HostDoorbell {
        fn ring(&self) {
            if self.state.swap(NOTIFIED, Ordering::AcqRel) == PARKED {
                // Taking the lock orders this notify after the waiter's
                // state check: it is then inside `wait` and will be woken.
                drop(self.lock.lock());
                self.wakeup.notify_one();
            }
        }

        fn wait_until<F: FnMut() -> bool>(&self, mut ready: F) {
            for _ in 0..self.spin_limit {
                if ready() {
                    return;
                }
                spin_hint();
            }
            loop {
                if ready() {
                    return;
                }
                // Arm. On failure a ring is pending: consume it (its
                // Acquire makes the records it announced visible) and
                // check again.
                if self
                    .state
                    .compare_exchange(EMPTY, PARKED, Ordering::AcqRel, Ordering::Acquire)
                    .is_err()
                {
                    self.state.swap(EMPTY, Ordering::AcqRel);
                    continue;
                }
                // A record published before the arming but after the
                // `ready()` above would have made its ring fail the CAS; a
                // later one finds PARKED and wakes us. Still, check once
                // more before sleeping: it is cheap and covers producers
                // that publish without ringing yet (they ring soon after).
                if !ready() {
                    let mut guard = match self.lock.lock() {
                        Ok(guard) => guard,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    while self.state.load(Ordering::Acquire) == PARKED {
                        guard = match self.wakeup.wait(guard) {
                            Ok(guard) => guard,
                            Err(poisoned) => poisoned.into_inner(),
                        };
                    }
                }
                // Disarm, consuming any ring that arrived.
                self.state.swap(EMPTY, Ordering::AcqRel);
            }
        }
    }
}
