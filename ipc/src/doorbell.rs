//! Doorbells: how a consumer with nothing to do sleeps without missing a
//! record.
//!
//! # Protocol every implementation follows
//!
//! 1. A producer publishes first (the ring's Release stores) and rings
//!    after, once per batch. Any number of producers may ring one doorbell
//!    concurrently; ringing must be cheap when nobody waits.
//! 2. `wait_until(ready)` returns only after `ready()` returned true. An
//!    implementation states how many consumers may wait at once (the host
//!    doorbell: any number; WFE: one per PE). Before it blocks it must
//!    *arm* the doorbell and then observe every publish that preceded a
//!    ring it did not see: either the ring finds the doorbell armed and
//!    wakes the waiter, or the waiter's check after arming sees the
//!    published records. That is the "no lost wakeup" rule, and the loom
//!    model `ipc_doorbell` checks it for `HostDoorbell`.
//! 3. Spurious wakeups are allowed: the waiter re-checks `ready()`.
//!
//! For the hypervisor, WFE/SEV satisfies this directly (`WfeDoorbell`,
//! aarch64 only): `ring` is `DSB ISHST; SEV` (records visible before the
//! event), `wait_until` is `while !ready() { WFE }`; the event register is
//! the arming, because a SEV between the check and the WFE makes that WFE
//! return at once. An SGI-based bell works the same way with the
//! interrupt's pending state as the arming: hv's `SgiDoorbell`
//! (`hv::arch::selftest`; `ring` is a DSB then an SGI to the waiting PE,
//! `wait_until` is `while !ready() { WFI }` with IRQs masked, acknowledging
//! the SGI after each WFI). QEMU's WFI does sleep until an interrupt pends,
//! so that bell's no-lost-wakeup property is the one hv's QEMU self-tests
//! prove (`hv.selftest=ipc-sgi`, and its SGI-less twin `ipc-sgi-lost`
//! failing by timeout).

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

#[cfg(all(target_arch = "aarch64", not(loom)))]
pub use wfe::WfeDoorbell;

#[cfg(all(target_arch = "aarch64", not(loom)))]
mod wfe {
    use super::Doorbell;

    /// The hypervisor's doorbell: SEV to ring, WFE to wait. Any number of
    /// ringers; one waiter per PE (the event register is per PE), any
    /// number of PEs waiting.
    ///
    /// Why no wakeup is lost: `ring` runs after the producer's Release
    /// stores; `DSB ISHST` completes them (observable by every PE of the
    /// Inner Shareable domain) before `SEV` signals the event to every PE,
    /// setting its event register. A waiter checks `ready()` and only then
    /// executes `WFE`, which returns at once if its event register is set
    /// and clears it. So a SEV that comes after the waiter's check leaves
    /// the register set (or wakes the WFE), and a SEV that came before the
    /// check came after the DSB, so the check saw the records. Spurious
    /// returns (a stale event, another bell's SEV, an interrupt) only cost
    /// one more check.
    ///
    /// A WFE can sleep for good if no event ever comes: the caller that
    /// must not hang bounds its wait with a timer of its own (hv's
    /// self-test does), or enables the generic timer's event stream.
    ///
    /// The argument above is not tested under QEMU: QEMU does not model
    /// the event register (its WFE is a yield that returns at once under
    /// MTTCG), so hv's `hv.selftest=ipc` passes even without the SEV. It
    /// proves the rings across two PEs; a lost wakeup shows only on
    /// hardware (as the self-test's timeout). The SGI + WFI bell of
    /// `hv.selftest=ipc-sgi` is the one QEMU can test (module docs).
    #[derive(Debug, Default, Clone, Copy)]
    pub struct WfeDoorbell;

    impl Doorbell for WfeDoorbell {
        #[inline]
        fn ring(&self) {
            // SAFETY: DSB ISHST waits for this PE's earlier stores to
            // complete and SEV signals an event to every PE; neither reads
            // or writes memory the program owns, and without `nomem` the
            // compiler keeps every earlier store before them.
            unsafe { core::arch::asm!("dsb ishst", "sev", options(nostack, preserves_flags)) };
        }

        #[inline]
        fn wait_until<F: FnMut() -> bool>(&self, mut ready: F) {
            while !ready() {
                // SAFETY: WFE suspends this PE until an event or interrupt;
                // it touches no memory. Without `nomem` the compiler
                // reloads everything `ready()` reads after it.
                unsafe { core::arch::asm!("wfe", options(nostack, preserves_flags)) };
            }
        }
    }
}

#[cfg(any(feature = "std", test, loom))]
pub use host::HostDoorbell;

#[cfg(any(feature = "std", test, loom))]
mod host {
    use super::Doorbell;
    use crate::sync::{spin_hint, AtomicU64, Condvar, Mutex, Ordering};

    /// Low half of the state word: waiters registered to sleep.
    const WAITER: u64 = 1;
    const WAITER_MASK: u64 = 0xffff_ffff;
    /// High half: the ring epoch, bumped by every ring.
    const EPOCH: u64 = 1 << 32;

    /// Host doorbell: a waiter polls `ready()` for a while, then registers
    /// and sleeps on a condition variable until the next ring. Any number
    /// of producers may ring and any number of consumers may wait. A ring
    /// is one atomic add when nobody sleeps, plus a lock/unlock and a
    /// notify when somebody does.
    ///
    /// Ordering argument: the state word (ring epoch, waiter count) only
    /// changes by read-modify-writes, which are totally ordered. If a ring's
    /// add comes after a waiter's registration, it sees the waiter and
    /// notifies; the lock taken in between means the waiter is either still
    /// before its epoch check (and sees the new epoch) or inside
    /// `Condvar::wait`. If the ring comes first, the registration's Acquire
    /// synchronises with the ring's Release, so the `ready()` check that
    /// follows the registration sees everything published before the ring.
    #[derive(Debug)]
    pub struct HostDoorbell {
        /// Written by every ring: on a cache line of its own, so that a
        /// waiter reading the fields below does not pull the line away from
        /// the ringer (and the ringer's atomic add does not wait for it).
        state: OwnLine<AtomicU64>,
        lock: Mutex<()>,
        wakeup: Condvar,
        spin_limit: u32,
    }

    /// A value alone on its cache line (128 bytes: adjacent-line prefetch
    /// pairs on x86, 128-byte lines on some Arm cores).
    #[derive(Debug)]
    #[repr(align(128))]
    struct OwnLine<T>(T);

    impl<T> core::ops::Deref for OwnLine<T> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.0
        }
    }

    impl HostDoorbell {
        /// A bell whose waiters poll `ready()` `spin_limit` times before
        /// they sleep.
        pub fn new(spin_limit: u32) -> HostDoorbell {
            HostDoorbell {
                state: OwnLine(AtomicU64::new(0)),
                lock: Mutex::new(()),
                wakeup: Condvar::new(),
                spin_limit,
            }
        }

        fn sleep_until_epoch_moves(&self, epoch: u64) {
            let mut guard = match self.lock.lock() {
                Ok(guard) => guard,
                Err(poisoned) => poisoned.into_inner(),
            };
            // Acquire is stronger than needed: after a Relaxed read of the
            // new epoch, a `ready()` that still missed the records would
            // register again, and that Acquire add reads after the ring's
            // Release add, so the check after it sees them (one more round).
            while self.state.load(Ordering::Acquire) & !WAITER_MASK == epoch {
                guard = match self.wakeup.wait(guard) {
                    Ok(guard) => guard,
                    Err(poisoned) => poisoned.into_inner(),
                };
            }
        }
    }

    impl Default for HostDoorbell {
        /// A few microseconds of polling before sleeping: long enough to
        /// catch a reply on an idle machine, short enough not to steal a
        /// shared core for long.
        fn default() -> Self {
            HostDoorbell::new(1 << 10)
        }
    }

    impl Doorbell for HostDoorbell {
        fn ring(&self) {
            // Release is the half that matters (publishes the records to a
            // waiter whose registration reads this add); the ringer reads
            // only the waiter count, which the RMW gets right regardless.
            let before = self.state.fetch_add(EPOCH, Ordering::AcqRel);
            if before & WAITER_MASK != 0 {
                // Taking the lock orders this notify after every
                // registered waiter's epoch check: each is inside `wait`.
                drop(self.lock.lock());
                self.wakeup.notify_all();
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
                // Acquire is the half that matters (see the type's docs).
                let before = self.state.fetch_add(WAITER, Ordering::AcqRel);
                // A record published before a ring that preceded the
                // registration is visible now; a later ring sees us.
                if !ready() {
                    self.sleep_until_epoch_moves(before & !WAITER_MASK);
                }
                // Relaxed would do: a later registration's Acquire still
                // synchronises with every ring before it (an RMW of any
                // ordering continues the ring's release sequence).
                self.state.fetch_sub(WAITER, Ordering::AcqRel);
            }
        }
    }
}
