//! hv's side of the recycling handshake with the shadow-mmu service
//! (shadow-mmu/README.md, "Contract with hv: recycling").
//!
//! When the service recycles a context slot, the victim and its successor
//! share one shadow root and one shadow VMID. A PE still running (or about
//! to run) the victim's L2 on that VTTBR_EL2 would walk the successor's
//! tree as soon as the successor maps anything: one L2 reaching another's
//! memory. So each PE publishes where it is ([`Phase`]) and has a `kick`
//! flag; the entry into L2 ([`PeHandshake::enter`]) and the recycler's
//! pass ([`kick_victims`], which [`HandshakeShadow`] runs as the service's
//! `ShadowStore::reassigned`, under the directory lock, before the
//! successor exists) are two store-buffering pairs split by full barriers:
//! either the entering PE's `shadow_root` sees the victim retired (and
//! waits for the lock, then gets a context made after the recycle), or the
//! recycler sees the PE `Entering`/`InL2` and sets its kick; then either
//! the PE's kick check sees it (and asks again), or the recycler sees the
//! PE in L2, interrupts it and waits until it has left.
//!
//! The phase and kick accesses are release stores and acquire loads; what
//! makes the pairs work is the full barriers (SeqCst fences, DMB ISH)
//! between each side's store and its next load: release/acquire alone lets
//! both sides read the other's old value (store buffering). The loom model
//! fails when any of them is removed (but the PE's step-1 one, which
//! `shadow_root`'s epoch pin also does).
//!
//! The atomics come from `crate::sync`, so under `--cfg loom` the model in
//! `loom-tests/tests/shadow_hv_handshake.rs` runs this code against the real
//! `Service`. The machine (the interrupt, the clock, the failure) is the
//! [`PeSet`] hv implements in `arch::nested`.

use core::fmt;

use crate::sync::{fence, AtomicBool, AtomicU32, Ordering};
use shadow_mmu::compose::{HostExecute, ShadowMapping};
use shadow_mmu::service::{ShadowBackend, ShadowStore};
use shadow_mmu::shadow_table::{MapError, MapOutcome, ShadowPlace};

/// Where a PE is, as the recycler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// At EL2 (or in L1), not about to enter L2: never waited for.
    Outside,
    /// Between publishing its entry and its kick check (contract steps
    /// 1-4): kicked by every recycle, never waited for (it may be blocked
    /// on the directory lock in `shadow_root`).
    Entering,
    /// About to ERET into, or running, L2 on this shadow VMID: kicked and
    /// waited for by a recycle of that VMID's slot.
    InL2(u16),
}

const OUTSIDE: u32 = 0;
const ENTERING: u32 = 1;
/// `InL2(vmid)` is this bit with the VMID below it.
const IN_L2: u32 = 1 << 16;

impl Phase {
    const fn encode(self) -> u32 {
        match self {
            Phase::Outside => OUTSIDE,
            Phase::Entering => ENTERING,
            Phase::InL2(vmid) => IN_L2 | vmid as u32,
        }
    }

    /// Every stored word is one of [`Phase::encode`]'s.
    const fn decode(word: u32) -> Phase {
        if word & IN_L2 != 0 {
            Phase::InL2(word as u16)
        } else if word == ENTERING {
            Phase::Entering
        } else {
            Phase::Outside
        }
    }
}

/// One PE's handshake state: its [`Phase`] and its kick flag.
#[derive(Debug)]
pub struct PeHandshake {
    phase: AtomicU32,
    kick: AtomicBool,
}

/// What an entry into L2 found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry<T> {
    /// ERET into L2 on shadow VMID `vmid` with `root`; the PE is published
    /// `InL2(vmid)`. `retries`: how often a kick sent it back to step 1.
    Ready { vmid: u16, root: T, retries: u32 },
    /// `shadow_root` gave nothing: the PE is `Outside` again, L2 must not
    /// run.
    NoShadow,
}

impl Default for PeHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl PeHandshake {
    /// `Outside`, no kick.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            phase: AtomicU32::new(OUTSIDE),
            kick: AtomicBool::new(false),
        }
    }

    /// `Outside`, no kick (loom's atomics have no `const fn new`).
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            phase: AtomicU32::new(OUTSIDE),
            kick: AtomicBool::new(false),
        }
    }

    /// The PE's phase now.
    pub fn phase(&self) -> Phase {
        Phase::decode(self.phase.load(Ordering::Acquire))
    }

    /// Whether a kick is waiting for the PE's next kick check.
    pub fn kicked(&self) -> bool {
        self.kick.load(Ordering::Acquire)
    }

    /// The entry into L2, contract steps 1-4, with interrupts masked at EL2
    /// until the ERET (step 5, the caller's: VTTBR_EL2 = the returned VMID
    /// and root): publish `Entering`, barrier, `shadow_root` (which never
    /// returns a retired context and blocks while a recycle runs), publish
    /// `InL2(vmid)`, barrier, consume the kick flag; a kick means the root
    /// may belong to a context retired meanwhile, so back to step 1.
    ///
    /// Every retry consumes a kick, and every kick is one recycle another
    /// caller completed (under the directory lock) since the last check: the
    /// loop ends unless other PEs recycle without pause, and each of their
    /// recycles is progress of theirs.
    pub fn enter<T>(&self, mut shadow_root: impl FnMut() -> Option<(u16, T)>) -> Entry<T> {
        let mut retries = 0u32;
        loop {
            // Step 1. Also done by `shadow_root`'s own epoch pin today,
            // but a pin nested in another (a `Burst`) has no fence.
            self.phase.store(ENTERING, Ordering::Release);
            fence(Ordering::SeqCst);
            // Step 2.
            let Some((vmid, root)) = shadow_root() else {
                self.phase.store(OUTSIDE, Ordering::Release);
                return Entry::NoShadow;
            };
            // Step 3.
            self.phase
                .store(Phase::InL2(vmid).encode(), Ordering::Release);
            fence(Ordering::SeqCst);
            // Step 4.
            if self.kick.swap(false, Ordering::AcqRel) {
                retries = retries.saturating_add(1);
                continue;
            }
            return Entry::Ready {
                vmid,
                root,
                retries,
            };
        }
    }

    /// The exit store: at every exit from L2, before anything that can wait
    /// for the directory lock (any service call), since a recycler holding
    /// that lock waits for it. Every return to L2 then goes through
    /// [`PeHandshake::enter`] again, also after an exit handled entirely
    /// at EL2 (review 12 R12-5).
    pub fn left_l2(&self) {
        self.phase.store(OUTSIDE, Ordering::Release);
    }
}

/// Why a recycle could not complete its handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NeverLeft {
    /// PE `pe` was still in L2 on `vmid` when the wait's bound passed,
    /// after its interrupt.
    TimedOut { pe: usize, vmid: u16 },
    /// The recycler itself is published in L2 on `vmid`: it called the
    /// service without its exit store, and would wait for itself for ever.
    Recycler { pe: usize, vmid: u16 },
}

impl fmt::Display for NeverLeft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NeverLeft::TimedOut { pe, vmid } => write!(
                f,
                "PE {pe} did not leave L2 on shadow VMID {vmid} after its kick interrupt, within the wait's bound, while the context slot was recycled"
            ),
            NeverLeft::Recycler { pe, vmid } => write!(
                f,
                "PE {pe} recycled a context while published in L2 on that slot's shadow VMID {vmid} (an exit without its exit store)"
            ),
        }
    }
}

/// What one recycle's kick pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kicks {
    /// PEs whose kick flag it set (entering, or in the victim's L2).
    pub kicked: u32,
    /// PEs it interrupted and waited for (in the victim's L2).
    pub waited: u32,
}

/// The PEs that may run L2, and what the recycler needs of the machine.
pub trait PeSet: Send + Sync {
    /// Every PE's handshake state, by PE index.
    fn pes(&self) -> &[PeHandshake];
    /// The index of the PE this code runs on, if it is one of
    /// [`PeSet::pes`].
    fn current_pe(&self) -> Option<usize>;
    /// Sends PE `pe` an interrupt taken at EL2 (HCR_EL2.IMO), so that it
    /// exits L2 (and stores `Outside`) if it is there.
    fn interrupt(&self, pe: usize);
    /// A clock for the wait's bound, in ticks.
    fn now(&self) -> u64;
    /// How many ticks a PE may take to leave L2 after its interrupt.
    fn wait_limit(&self) -> u64;
    /// One step of the wait.
    fn relax(&self);
    /// A recycle's pass completed (for hv's counts).
    fn recycled(&self, kicks: Kicks) {
        let _ = kicks;
    }
    /// The handshake cannot complete: the service's invariant (no PE on the
    /// victim's L2 once the successor maps) would be broken; end the run.
    fn never_left(&self, why: NeverLeft) -> !;
}

/// The recycler's side (the service calls it as `reassigned`, under the
/// directory lock, the victim retired and its shadow cleared, before the
/// successor exists): barrier; kick every PE `Entering` or `InL2(vmid)`;
/// barrier; interrupt every PE in `InL2(vmid)` and wait until each has
/// left (not the `Entering` ones: one may be blocked on the directory lock
/// this recycler holds). Bounded by [`PeSet::wait_limit`].
pub fn kick_victims<M: PeSet + ?Sized>(machine: &M, vmid: u16) -> Result<Kicks, NeverLeft> {
    let victim = Phase::InL2(vmid).encode();
    let pes = machine.pes();
    let mut kicks = Kicks::default();
    // Step 1: the retirement before the reads below.
    fence(Ordering::SeqCst);
    // Step 2.
    for pe in pes {
        let phase = pe.phase.load(Ordering::Acquire);
        if phase == ENTERING || phase == victim {
            pe.kick.store(true, Ordering::Release);
            kicks.kicked += 1;
        }
    }
    // Step 3.
    fence(Ordering::SeqCst);
    // Step 4: each PE in the victim's L2 gets an interrupt, then the
    // recycler waits until it has left (one PE at a time: each wait is
    // bounded). A PE seen there only after another's wait was `Entering`
    // at step 2, kicked, and past its barrier after the recycler's step 3:
    // its kick check sends it back to `Entering` without an interrupt, but
    // one costs nothing.
    let current = machine.current_pe();
    for (index, pe) in pes.iter().enumerate() {
        let mut since = None;
        while pe.phase.load(Ordering::Acquire) == victim {
            if current == Some(index) {
                return Err(NeverLeft::Recycler { pe: index, vmid });
            }
            match since {
                None => {
                    machine.interrupt(index);
                    kicks.waited += 1;
                    since = Some(machine.now());
                }
                Some(start) => {
                    if machine.now().wrapping_sub(start) > machine.wait_limit() {
                        return Err(NeverLeft::TimedOut { pe: index, vmid });
                    }
                }
            }
            machine.relax();
        }
    }
    Ok(kicks)
}

/// A context slot's shadow with hv's side of the handshake as its
/// `reassigned`: everything else is `shadow`'s.
pub struct HandshakeShadow<S, M> {
    shadow: S,
    vmid: u16,
    pes: M,
}

impl<S, M> fmt::Debug for HandshakeShadow<S, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeShadow")
            .field("vmid", &self.vmid)
            .finish_non_exhaustive()
    }
}

impl<S, M> HandshakeShadow<S, M> {
    /// The shadow hv installs for shadow VMID `vmid`.
    pub fn new(shadow: S, vmid: u16, pes: M) -> Self {
        Self { shadow, vmid, pes }
    }

    /// The wrapped shadow.
    pub fn inner(&self) -> &S {
        &self.shadow
    }
}

impl<S: ShadowStore, M: PeSet> ShadowStore for HandshakeShadow<S, M> {
    fn root_pa(&self) -> u64 {
        self.shadow.root_pa()
    }
    fn map(&self, mapping: &ShadowMapping) -> Result<MapOutcome, MapError> {
        self.shadow.map(mapping)
    }
    fn map_excluded(&self, mapping: &ShadowMapping) -> Result<MapOutcome, MapError> {
        self.shadow.map_excluded(mapping)
    }
    fn unmap_range(&self, l2_ipa: u64, len: u64) -> usize {
        self.shadow.unmap_range(l2_ipa, len)
    }
    fn clear(&self) -> usize {
        self.shadow.clear()
    }
    fn reassigned(&self) {
        self.shadow.reassigned();
        match kick_victims(&self.pes, self.vmid) {
            Ok(kicks) => self.pes.recycled(kicks),
            Err(why) => self.pes.never_left(why),
        }
    }
    fn reclaim(&self, max_frames: usize) -> usize {
        self.shadow.reclaim(max_frames)
    }
    fn prefetch(&self, l2_ipa: u64) {
        self.shadow.prefetch(l2_ipa)
    }
    fn lookup(&self, l2_ipa: u64) -> Option<ShadowMapping> {
        self.shadow.lookup(l2_ipa)
    }
    fn lookup_excluded(&self, l2_ipa: u64) -> Option<ShadowMapping> {
        self.shadow.lookup_excluded(l2_ipa)
    }
    fn lookup_place_excluded(&self, l2_ipa: u64) -> (Option<ShadowMapping>, ShadowPlace) {
        self.shadow.lookup_place_excluded(l2_ipa)
    }
    fn map_excluded_at(
        &self,
        mapping: &ShadowMapping,
        place: ShadowPlace,
    ) -> Result<MapOutcome, MapError> {
        self.shadow.map_excluded_at(mapping, place)
    }
    fn frames_used(&self) -> usize {
        self.shadow.frames_used()
    }
    fn leaves(&self) -> usize {
        self.shadow.leaves()
    }
}

/// A backend whose shadows run hv's handshake when their slot is
/// recycled ([`HandshakeShadow`]).
pub struct HandshakeBackend<B, M> {
    backend: B,
    pes: M,
}

impl<B, M> fmt::Debug for HandshakeBackend<B, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeBackend").finish_non_exhaustive()
    }
}

impl<B, M> HandshakeBackend<B, M> {
    /// `backend`'s shadows, each with the handshake over `pes`.
    pub fn new(backend: B, pes: M) -> Self {
        Self { backend, pes }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &B {
        &self.backend
    }
}

impl<B, M> ShadowBackend for HandshakeBackend<B, M>
where
    B: ShadowBackend,
    M: PeSet + Clone + 'static,
{
    type Shadow = HandshakeShadow<B::Shadow, M>;
    fn create(&self, shadow_vmid: u16) -> Option<Self::Shadow> {
        let shadow = self.backend.create(shadow_vmid)?;
        Some(HandshakeShadow::new(shadow, shadow_vmid, self.pes.clone()))
    }
    fn frames_in_use(&self) -> usize {
        self.backend.frames_in_use()
    }
    fn host_execute(&self) -> HostExecute {
        self.backend.host_execute()
    }
    fn input_bits(&self) -> u32 {
        self.backend.input_bits()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
