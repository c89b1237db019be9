//! The service: translate, invalidate, l0_unmap and statistics (the ipc
//! adapter that answers records is [`crate::adapter`]).
//!
//! # Protocol (issue items 7 and 3-6)
//!
//! Each context has a writer lock and an invalidation generation.
//! - `translate` reads the generation (and the L0 generation) *before* the
//!   cache lookup or walk, then composes, then takes the context's lock and
//!   inserts only if the generation did not move (for anything it depends
//!   on) and the context is not retired. Under that lock, in this order:
//!   the cache entries (a full bucket's eviction unmaps the evicted
//!   leaf's shadow range, leaves with their records), the reverse-map
//!   record, the L0-generation check, the shadow descriptor. A walk that
//!   overlapped an invalidation therefore never inserts: it answers
//!   [`Retry::InvalidationRaced`] and L2 simply faults again.
//! - `invalidate` takes each affected context's lock, removes what is in
//!   scope from the cache, the shadow table (with the hardware TLB
//!   maintenance of the shadow VMID) and the reverse map, and only then
//!   bumps the generation (still under the lock): a translate that read
//!   the generation before the bump, even while the removal was under way
//!   and it could still find an entry in scope, is refused.
//!   When it returns, nothing in scope is reachable: lookups after it see
//!   the removal, and inserts from walks that began before it were refused.
//! - Invariant: every shadow leaf lies inside a cached leaf of its context
//!   (both are inserted in one critical section, and dropping a cached leaf,
//!   by invalidation or eviction, unmaps the shadow range it covers).
//!   So an invalidation that removes the L1 block containing an IPA also
//!   removes every shadow piece built from that block.
//! - Invariant: every shadow leaf has a live reverse-map record, and a
//!   record goes only together with its leaf (an unmap of the same range,
//!   or a clear of the shadow with `forget_context` of its VMID), under the
//!   lock of the context that owns the shadow. Hence the order above: an
//!   eviction that ran between an install's record and its map would take
//!   the record and leave the leaf. An install that does not map after its
//!   record (L0 generation moved, map refused, no frames) unmaps its range,
//!   leaves and records: its record replaced that of any leaf already at
//!   the same L2 IPA (one record per shadow key), so deleting the record
//!   alone would orphan that leaf. Removing more than needed is allowed (a
//!   re-fault); a leaf without a record is not: `l0_unmap` could not find
//!   it, and L2 would keep host memory L0 took away from L1.
//! - The shadow and the shadow VMID belong to the context *slot*: after a
//!   recycle they are the successor's. So whoever finds a context and then
//!   locks it (`l0_unmap`, frame reclamation) checks that it is not retired
//!   under that lock (retirement takes it), and leaves the shadow and the
//!   VMID's records alone if it is: the retirement cleared them, and now the
//!   successor, under its own lock, may be between a record and its map.
//! - `l0_unmap` bumps the L0 generation, takes the records from the reverse
//!   map, then unmaps each under its context's lock (a batch of at most
//!   [`crate::rmap::L0_UNMAP_BATCH`] records at a time, on the stack). `translate` records in
//!   the reverse map *before* checking the L0 generation, all under the
//!   context lock, so either the unmap finds the record (and waits for the
//!   lock, after which the descriptor is there to remove) or the translate
//!   sees the new generation and backs out.
//! - Memory: every slot's shadow (its root frame) is made when the service
//!   is, so a new context never waits for a frame; a fault that finds the
//!   pool empty takes frames back from the other shadows (detached frames
//!   first) and is told to retry.
//!
//! # Contract with hv: recycling
//!
//! A recycled context's successor has the same shadow root (VTTBR_EL2.BADDR)
//! and the same shadow VMID. Retirement clears the shadow and invalidates
//! the VMID's TLB entries, but a PE still running the victim's L2 with that
//! VTTBR_EL2 would walk the successor's tree as soon as the successor maps
//! anything, and L2 of the victim would reach memory of another L2. hv
//! must kick every such PE (an IPI that makes it exit to EL2; it re-reads
//! [`Service::shadow_root`] for its own key before it re-enters L2) and
//! wait until each has left L2 *before the successor maps anything*. The
//! place for it is [`ShadowStore::reassigned`]: the directory calls it when
//! the shadow passes to the successor, before the successor exists, so no
//! translate can map into it earlier. (It runs under the directory lock: a
//! kicked PE must acknowledge that it left L2 before it asks the service
//! for anything.) A PE that obtained its root just before the retirement
//! is covered by the handshake in README.md ("Contract with hv:
//! recycling"): it publishes that it is entering L2 before it calls
//! [`Service::shadow_root`] (which never returns a retired context), and
//! checks a kick flag that `reassigned` sets after it marked itself in L2,
//! before its ERET. [`Stats::recycled_contexts`] counts recycles.
//!
//! Lock order: directory -> context -> reverse map. Lookups take no lock.

use alloc::vec::Vec;
use arrayvec::ArrayVec;
use core::cell::Cell;
use core::fmt;

/// The epoch pin [`Service::lookup`] and the other lock-free reads take.
pub use crossbeam_epoch::Guard;
use crossbeam_epoch::{Collector, LocalHandle};
use ipc::message::L0Change;
use ipc::tlbi::{EntryLevels, InvalidateScope, IpaRange, IpaScope};
use walker::{
    AbortContext, AccessKind, CacheMaintenance, DescriptorAccess, ExposedFeatures, GuestMemory,
    HostDenial, InjectedAbort, WalkError,
};

use crate::budget::{Budget, WORST_ACCESS_PAGES};
use crate::cache::{level_lsb, walk_from, CachedWalk, Levels, WalkKind};
use crate::compose::{
    needed_permission, resolve, ComposeError, Composition, HostExecute, L0Map, L1Translation,
    MemAttr, Permissions, ShadowMapping, PAGE_SIZE,
};
use crate::context::{
    Context, ContextKey, ContextState, Covered, Created, Directory, Footprint, HostVmids,
    ShadowVmidError, ShadowVmids,
};
use crate::rmap::{
    L1RangeCursor, ReverseMap, RmapError, RmapHint, ShadowRef, L0_UNMAP_BATCH,
    PENDING_PAGE_REMOVALS,
};
use crate::shadow_table::{
    FramePool, HeapFramePool, MapError, MapOutcome, PoolError, ShadowConfig, ShadowPlace,
    ShadowTable, TlbEvent, TlbMaintenance,
};
use crate::sync::unmodelled::AtomicUsize;
use crate::sync::{fence, AtomicBool, AtomicU64, Mutex, Ordering};
use alloc::sync::Arc;

/// IPA invalidations up to this long prefetch what they will touch (see
/// `Service::invalidate_range`)...
const PREFETCH_RANGE: u64 = 1 << 16;
/// ... in a context caching at least this many leaves: with fewer, its
/// cache, shadow leaves and reverse-map records (a few hundred bytes each)
/// fit in the CPU's caches.
const PREFETCH_FROM: usize = 4096;

/// A TLBI whose scope and removed leaves stay within this many pages
/// leaves its reverse-map records to the map's next use
/// ([`ReverseMap::remove_shadow_pages_later`]); all of them fit its queue.
const DEFERRED_RMAP_PAGES: u64 = PENDING_PAGE_REMOVALS as u64;

/// Detached shadow frames one fault under pool pressure returns at most.
const RECLAIM_ON_PRESSURE: usize = 64;

/// One context's shadow stage 2 as the service uses it. Implemented by
/// [`ShadowTable`] (the real descriptors); the loom models plug in a small
/// fake so they can explore the service's own protocol.
pub trait ShadowStore: Send + Sync {
    /// PA of the root table (VTTBR_EL2.BADDR for L2).
    fn root_pa(&self) -> u64;
    /// Installs an entry (concurrent callers allowed).
    fn map(&self, mapping: &ShadowMapping) -> Result<MapOutcome, MapError>;
    /// [`ShadowStore::map`] by a caller that holds the lock of the context
    /// owning the shadow, which every call that changes it holds (`map`,
    /// `unmap_range`, `clear`): a shadow whose `map` guards against
    /// concurrent frees of its tables may skip that here.
    fn map_excluded(&self, mapping: &ShadowMapping) -> Result<MapOutcome, MapError> {
        self.map(mapping)
    }
    /// Removes every leaf overlapping the range (with TLB maintenance);
    /// returns how many.
    fn unmap_range(&self, l2_ipa: u64, len: u64) -> usize;
    /// Removes every leaf (with TLB maintenance); returns how many. Once it
    /// returns nothing removed is reachable, but the table frames may come
    /// back to the pool later ([`ShadowStore::reclaim`]).
    fn clear(&self) -> usize;
    /// The shadow passes to the next context of its slot (same shadow VMID,
    /// same root), after the previous one was retired and the shadow
    /// cleared, before the new context exists. hv must kick every PE still
    /// running L2 on this shadow and wait until each has left L2 before it
    /// returns (see the module docs: contract with hv).
    fn reassigned(&self) {}
    /// Returns up to `max_frames` frames a `clear` left for later to the
    /// pool; how many.
    fn reclaim(&self, max_frames: usize) -> usize {
        let _ = max_frames;
        0
    }
    /// A hint that an `unmap_range` around `l2_ipa` follows: fetch what it
    /// will read into the CPU's caches. No effect on the contents.
    fn prefetch(&self, l2_ipa: u64) {
        let _ = l2_ipa;
    }
    /// The entry translating `l2_ipa`.
    fn lookup(&self, l2_ipa: u64) -> Option<ShadowMapping>;
    /// [`ShadowStore::lookup`] by a caller that holds the lock of the
    /// context owning the shadow, which every call that changes it holds
    /// (`map`, `unmap_range`, `clear`): a shadow whose lookup guards
    /// against concurrent changes may skip that here.
    fn lookup_excluded(&self, l2_ipa: u64) -> Option<ShadowMapping> {
        self.lookup(l2_ipa)
    }
    /// [`ShadowStore::lookup_excluded`], and where its walk stopped: a
    /// [`ShadowStore::map_excluded_at`] under the same lock, with no unmap
    /// or clear of this shadow in between, may start its walk there.
    fn lookup_place_excluded(&self, l2_ipa: u64) -> (Option<ShadowMapping>, ShadowPlace) {
        (self.lookup_excluded(l2_ipa), ShadowPlace::ROOT)
    }
    /// [`ShadowStore::map_excluded`] from where a
    /// [`ShadowStore::lookup_place_excluded`] of the mapping's base
    /// stopped (see there).
    fn map_excluded_at(
        &self,
        mapping: &ShadowMapping,
        place: ShadowPlace,
    ) -> Result<MapOutcome, MapError> {
        let _ = place;
        self.map_excluded(mapping)
    }
    /// Table frames held.
    fn frames_used(&self) -> usize;
    /// Leaves installed (what a `clear` would remove): under the
    /// shadow-leaf cap, the shadow holding the most is cleared.
    fn leaves(&self) -> usize;
}

impl<P, T> ShadowStore for ShadowTable<P, T>
where
    P: FramePool + Send,
    T: TlbMaintenance + Send,
{
    fn root_pa(&self) -> u64 {
        ShadowTable::root_pa(self)
    }
    fn map(&self, mapping: &ShadowMapping) -> Result<MapOutcome, MapError> {
        ShadowTable::map(self, mapping)
    }
    fn map_excluded(&self, mapping: &ShadowMapping) -> Result<MapOutcome, MapError> {
        ShadowTable::map_excluded(self, mapping)
    }
    fn unmap_range(&self, l2_ipa: u64, len: u64) -> usize {
        ShadowTable::unmap_range(self, l2_ipa, len)
    }
    fn clear(&self) -> usize {
        ShadowTable::clear(self)
    }
    fn reclaim(&self, max_frames: usize) -> usize {
        ShadowTable::reclaim_detached(self, max_frames)
    }
    fn prefetch(&self, l2_ipa: u64) {
        ShadowTable::prefetch_leaf(self, l2_ipa)
    }
    fn lookup(&self, l2_ipa: u64) -> Option<ShadowMapping> {
        ShadowTable::lookup(self, l2_ipa)
    }
    fn lookup_excluded(&self, l2_ipa: u64) -> Option<ShadowMapping> {
        ShadowTable::lookup_excluded(self, l2_ipa)
    }
    fn lookup_place_excluded(&self, l2_ipa: u64) -> (Option<ShadowMapping>, ShadowPlace) {
        ShadowTable::lookup_place_excluded(self, l2_ipa)
    }
    fn map_excluded_at(
        &self,
        mapping: &ShadowMapping,
        place: ShadowPlace,
    ) -> Result<MapOutcome, MapError> {
        ShadowTable::map_excluded_at(self, mapping, place)
    }
    fn frames_used(&self) -> usize {
        ShadowTable::frames_used(self)
    }
    fn leaves(&self) -> usize {
        ShadowTable::leaves(self)
    }
}

/// Where contexts get their shadow stage 2 (frames and hardware TLB
/// maintenance for their VMID).
///
/// A shadow must own what it uses (`'static`): a retired context's node,
/// holding the slot's shadow, is dropped by the epoch collector, which a
/// [`Worker`] keeps alive after its [`Service`] is gone. So a shadow that
/// borrows its frame pool is refused (review 11 R11-3: it returned frames
/// to the pool after the pool was dropped); share a pool through an `Arc`:
///
/// ```compile_fail,E0477
/// use shadow_mmu::compose::HostExecute;
/// use shadow_mmu::service::ShadowBackend;
/// use shadow_mmu::shadow_table::{HeapFramePool, NoHardwareTlb, ShadowConfig, ShadowTable};
///
/// struct Borrowing<'a>(&'a HeapFramePool);
/// impl<'a> ShadowBackend for Borrowing<'a> {
///     type Shadow = ShadowTable<&'a HeapFramePool, NoHardwareTlb>;
///     fn create(&self, _vmid: u16) -> Option<Self::Shadow> {
///         ShadowTable::new(self.0, NoHardwareTlb, ShadowConfig::default()).ok()
///     }
///     fn frames_in_use(&self) -> usize { 0 }
///     fn host_execute(&self) -> HostExecute { HostExecute::BothOrNeither }
///     fn input_bits(&self) -> u32 { 48 }
/// }
/// ```
///
/// The same backend with a shared pool is accepted:
///
/// ```
/// use std::sync::Arc;
/// use shadow_mmu::compose::HostExecute;
/// use shadow_mmu::service::ShadowBackend;
/// use shadow_mmu::shadow_table::{HeapFramePool, NoHardwareTlb, ShadowConfig, ShadowTable};
///
/// struct Sharing(Arc<HeapFramePool>);
/// impl ShadowBackend for Sharing {
///     type Shadow = ShadowTable<Arc<HeapFramePool>, NoHardwareTlb>;
///     fn create(&self, _vmid: u16) -> Option<Self::Shadow> {
///         ShadowTable::new(self.0.clone(), NoHardwareTlb, ShadowConfig::default()).ok()
///     }
///     fn frames_in_use(&self) -> usize { 0 }
///     fn host_execute(&self) -> HostExecute { HostExecute::BothOrNeither }
///     fn input_bits(&self) -> u32 { 48 }
/// }
/// ```
pub trait ShadowBackend: Sync {
    /// The shadow of one context.
    type Shadow: ShadowStore + 'static;
    /// A new, empty shadow for `shadow_vmid`. The service asks for every
    /// slot's shadow when it is made (their roots are part of the budget's
    /// frames); `None` (no frame for the root) leaves the slot to its first
    /// context, which takes frames back from other shadows if it must.
    fn create(&self, shadow_vmid: u16) -> Option<Self::Shadow>;
    /// Frames in use over all shadows.
    fn frames_in_use(&self) -> usize;
    /// Which execute permissions the shadows' descriptors can express
    /// (the host's FEAT_XNX). Composition reduces every entry to it, so
    /// the permissions translate answers with are exactly the installed
    /// ones.
    fn host_execute(&self) -> HostExecute;
    /// The shadows' input size in bits: the L2 IPAs they can map are below
    /// `1 << input_bits()` (a [`ShadowTable`]'s is
    /// [`ShadowConfig::input_bits`]). `Service::new` refuses an L1 shown a
    /// larger PA size ([`ServiceError::ShadowSmallerThanL1`]).
    fn input_bits(&self) -> u32;
}

type ShadowOf<B> = <B as ShadowBackend>::Shadow;

/// A shared record of (shadow VMID, TLB maintenance call).
type TlbLog = alloc::sync::Arc<spin::Mutex<Vec<(u16, TlbEvent)>>>;

/// The host backend: one shared [`HeapFramePool`], and per-VMID TLB
/// maintenance that is either ignored or recorded in a shared log (tests).
#[derive(Clone, Debug)]
pub struct HostBackend {
    pool: alloc::sync::Arc<HeapFramePool>,
    log: Option<TlbLog>,
    config: ShadowConfig,
}

impl HostBackend {
    /// `frames` shadow frames at fake PAs from 1 TiB; TLB maintenance not
    /// recorded.
    pub fn new(frames: usize, config: ShadowConfig) -> Result<Self, PoolError> {
        Ok(HostBackend {
            pool: alloc::sync::Arc::new(HeapFramePool::new(frames, 1 << 40)?),
            log: None,
            config,
        })
    }

    /// Like [`HostBackend::new`], recording every TLB maintenance call.
    pub fn recording(frames: usize, config: ShadowConfig) -> Result<Self, PoolError> {
        Ok(HostBackend {
            log: Some(Default::default()),
            ..HostBackend::new(frames, config)?
        })
    }

    /// The frame pool.
    pub fn pool(&self) -> &HeapFramePool {
        &self.pool
    }

    /// The recorded (shadow VMID, call) pairs so far, forgotten.
    pub fn take_tlb_log(&self) -> Vec<(u16, TlbEvent)> {
        self.log
            .as_ref()
            .map(|log| core::mem::take(&mut *log.lock()))
            .unwrap_or_default()
    }
}

/// [`TlbMaintenance`] for one VMID of a [`HostBackend`].
#[derive(Clone, Debug)]
pub struct HostTlb {
    vmid: u16,
    log: Option<TlbLog>,
}

impl TlbMaintenance for HostTlb {
    fn invalidate_range(&self, l2_ipa: u64, len: u64) {
        if let Some(log) = &self.log {
            log.lock()
                .push((self.vmid, TlbEvent::Range { l2_ipa, len }));
        }
    }
    fn invalidate_all(&self) {
        if let Some(log) = &self.log {
            log.lock().push((self.vmid, TlbEvent::All));
        }
    }
}

impl ShadowBackend for HostBackend {
    type Shadow = ShadowTable<alloc::sync::Arc<HeapFramePool>, HostTlb>;
    fn create(&self, shadow_vmid: u16) -> Option<Self::Shadow> {
        let tlb = HostTlb {
            vmid: shadow_vmid,
            log: self.log.clone(),
        };
        ShadowTable::new(self.pool.clone(), tlb, self.config).ok()
    }
    fn frames_in_use(&self) -> usize {
        self.pool.frames_in_use()
    }
    fn host_execute(&self) -> HostExecute {
        HostExecute::from_xnx(self.config.xnx)
    }
    fn input_bits(&self) -> u32 {
        self.config.input_bits()
    }
}

/// Why [`Service::new`] refused a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceError {
    /// The shadow VMIDs do not fit the host's ([`ServiceConfig::shadow_vmids`]).
    ShadowVmids(ShadowVmidError),
    /// The budget's sizes cannot be computed ([`Budget::check`]: a budget
    /// made by hand with counts beyond any machine's).
    Budget(crate::budget::BudgetError),
    /// L1 is shown FEAT_XNX (ID_AA64MMFR1_EL1.XNX) but the host's shadow
    /// descriptors cannot express execute at only one of EL0/EL1
    /// ([`HostExecute::BothOrNeither`]). L1's EL1-only or EL0-only
    /// execute pages would be installed without execute, and every L2
    /// fetch from them would fault to hv with no fault to inject into L1
    /// (L1's stage 2 allows it): hide FEAT_XNX from L1 on such a host.
    XnxWithoutHostXnx,
    /// L1 is shown a PA size (ID_AA64MMFR0_EL1.PARange) larger than the
    /// shadows' input size ([`ShadowBackend::input_bits`], the host's PA
    /// size): L1's stage 2 could translate L2 IPAs no shadow can map.
    /// Show L1 at most the host's PA size.
    ShadowSmallerThanL1 {
        /// The PA size L1 is shown, in bits.
        l1_pa_bits: u32,
        /// The shadows' input size, in bits.
        shadow_bits: u32,
    },
    /// A budget (made by hand: [`Budget::split`] never makes one) under
    /// which some single L2 access could never complete, its faults
    /// answered `Retry(Throttled)` or undoing each other for ever (review
    /// 25 R25-3, review 38 R38-1): fewer frames than every slot's empty
    /// table plus the tables of the worst access
    /// ([`Budget::worst_access_frames`]), or fewer shadow leaves than its
    /// pages ([`crate::budget::WORST_ACCESS_PAGES`]).
    UnusableBudget {
        /// What is too small.
        what: &'static str,
        /// How many the budget gives.
        have: usize,
        /// How many at least.
        need: usize,
    },
}

impl From<ShadowVmidError> for ServiceError {
    fn from(e: ShadowVmidError) -> Self {
        ServiceError::ShadowVmids(e)
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::ShadowVmids(e) => e.fmt(f),
            ServiceError::Budget(e) => e.fmt(f),
            ServiceError::XnxWithoutHostXnx => write!(
                f,
                "L1 is shown FEAT_XNX but the host has no FEAT_XNX: \
                 hide it from L1 (ID_AA64MMFR1_EL1.XNX = 0)"
            ),
            ServiceError::ShadowSmallerThanL1 {
                l1_pa_bits,
                shadow_bits,
            } => write!(
                f,
                "L1 is shown a {l1_pa_bits}-bit PA size but the shadow stage 2 takes \
                 {shadow_bits}-bit L2 IPAs (the host's PA size): show L1 at most \
                 {shadow_bits} bits (ID_AA64MMFR0_EL1.PARange)"
            ),
            ServiceError::UnusableBudget { what, have, need } => write!(
                f,
                "the budget gives {have} {what}, fewer than the {need} that one L2 \
                 access may need at once (it would fault for ever)"
            ),
        }
    }
}

/// Configuration.
#[derive(Clone, Copy, Debug)]
pub struct ServiceConfig {
    /// What L0 exposes to L1 (PARange, granules, HAFDBS, XNX, TTST...).
    pub features: ExposedFeatures,
    /// The memory budget split.
    pub budget: Budget,
    /// First hardware VMID of the shadows (`budget.capacity.contexts`
    /// consecutive VMIDs from here are the service's; see
    /// [`ServiceConfig::shadow_vmids`]).
    pub first_shadow_vmid: u16,
    /// Secret entropy for the writer-side indexes' hash keys (the reverse
    /// map and the block indexes are keyed by addresses the guest chooses;
    /// with predictable keys it could make every index operation scan one
    /// long run). hv passes FEAT_RNG's RNDR, or without it the physical
    /// counter at boot; host embedders a random number. A fixed value is
    /// fine for tests.
    pub hash_seed: u64,
    /// The host's VMID width and L1's own VMID, which the shadow VMIDs
    /// must fit and avoid.
    pub host_vmids: HostVmids,
}

impl ServiceConfig {
    /// The shadow VMIDs, one per context: `first_shadow_vmid ..
    /// first_shadow_vmid + budget.capacity.contexts`, refused unless they
    /// fit the host's VMID width and exclude VMID 0 and L1's VMID (a
    /// shadow sharing a VMID would share TLB entries with L1 or hv).
    pub fn shadow_vmids(&self) -> Result<ShadowVmids, ShadowVmidError> {
        ShadowVmids::new(
            self.first_shadow_vmid,
            self.budget.capacity.contexts,
            self.host_vmids,
        )
    }
}

/// Why a translate produced no mapping and no fault: resume L2, which
/// faults again if it still needs the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// An invalidation (TLBI, L0 unmap or context recycle) overlapped the
    /// walk; its result was not inserted.
    InvalidationRaced,
    /// Memory pressure: entries were evicted to make room.
    Throttled,
    /// L1 (or another walker) kept changing the leaf the walk had to update.
    Contended,
    /// L0 is changing its mapping of the L1 IPA (break-before-make under
    /// way, [`crate::compose::Unbacked::L0Changing`]), or of the page of
    /// L1's table the walk read or updated
    /// ([`walker::WalkError::HostChanging`]): what hardware would
    /// do is a stage-2 translation fault to L0, resolved by L0 waiting for
    /// its own change, never seen by L1 or L2. Nothing was installed or
    /// cached; L2 faults again once L0's new entry is in.
    L0Changing,
}

/// The answer to a translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Translated {
    /// Installed in the shadow table (or already there).
    Mapped(ShadowMapping),
    /// L1's tables fault: inject this into L1's virtual EL2.
    Inject(InjectedAbort),
    /// The L1 IPA is a device L0 emulates for L1: emulate L2's access.
    /// Like `OutsideL1`, never given once a TLBI covering the leaf it came
    /// from has returned (a `Retry` then).
    Mmio {
        /// The L1 IPA the walk gave.
        l1_ipa: u64,
    },
    /// Nothing backs the L1 IPA: an external abort for L2's access.
    OutsideL1 {
        /// The L1 IPA the walk gave.
        l1_ipa: u64,
    },
    /// The walk result cannot be shadowed (e.g. an L2 IPA above the
    /// shadow's 48 bits, a PA beyond the host's).
    Unshadowable(Refusal),
    /// L0's mapping of an L1 IPA denies an access L1 did nothing wrong
    /// to ask for ([`DeniedAccess`]): L2's access to its data, which L1's
    /// leaf allows (L0 write-protects the page for dirty logging, makes it
    /// execute-never, or maps it as Device, never executable), or the
    /// walk's read or hardware update of a descriptor of L1's stage-2
    /// tables (L0 revoked read access to the table page, or
    /// write-protects it while L1's VTCR_EL2.HA/HD ask for AF/dirty
    /// updates). Resuming L2 would fault again, forever. The fault is L0's
    /// own, on L1 memory (a stage-2 permission fault at L0 in the Arm
    /// ARM's two-stage model), never L1's: hv resolves it (logs the page
    /// dirty and restores write permission, ...) and resumes L2, which
    /// faults again and is translated afresh. For L2's data the reduced
    /// entry (what both stages allow, e.g. reads) is installed when it
    /// allows anything; a denied table access caches and installs nothing
    /// (the walk did not finish).
    L0Denied {
        /// The L1 IPA L0 denies the access at: L2's access's (page offset
        /// included) or the table descriptor's.
        l1_ipa: u64,
        /// What L0 denies.
        denied: DeniedAccess,
    },
    /// Nothing installed; resume L2.
    Retry(Retry),
}

/// What L0's mapping of L1 denies in a [`Translated::L0Denied`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeniedAccess {
    /// L2's access of this kind to its data at the L1 IPA (L1's leaf
    /// allows it).
    L2Data(AccessKind),
    /// The walk's read of the descriptor of L1's stage-2 tables at the L1
    /// IPA.
    L1TableRead,
    /// The walk's hardware update (AF or dirty state, by compare-and-swap)
    /// of the descriptor of L1's stage-2 tables at the L1 IPA.
    L1TableUpdate,
}

impl DeniedAccess {
    /// What the walker's [`HostDenial`] of a table descriptor access is.
    pub const fn of_table(denial: &HostDenial) -> Self {
        match denial.denied {
            DescriptorAccess::Read => DeniedAccess::L1TableRead,
            DescriptorAccess::Update => DeniedAccess::L1TableUpdate,
        }
    }
}

/// Why a valid walk result could not become a shadow entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Composition refused it.
    Compose(ComposeError),
    /// The shadow table refused it.
    Map(MapError),
}

/// Service counters (monotonic).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Translations served from the walk-result cache.
    pub hits: u64,
    /// Translations that had to walk.
    pub misses: u64,
    /// Full walks (from the start level).
    pub walks: u64,
    /// Partial walks (from below a cached intermediate path).
    pub partial_walks: u64,
    /// Invalidation requests applied (TLBIs and L0 unmaps).
    pub invalidations: u64,
    /// Entries removed by invalidations (cache entries and shadow leaves).
    pub invalidated_entries: u64,
    /// Entries evicted under memory pressure (cache slots, shadow tables).
    pub evictions: u64,
    /// Contexts recycled because the directory was full.
    pub recycled_contexts: u64,
    /// Translations refused because an invalidation raced with them.
    pub raced: u64,
    /// Translations answered `Retry(L0Changing)` because L0's mapping of
    /// the leaf's output (the L1 IPA of L1's RAM the access reaches,
    /// [`crate::compose::Composition::L0Changing`]) was in the middle of its
    /// break-before-make: L0 is moving or changing the memory itself.
    pub l0_changing_output: u64,
    /// Translations answered `Retry(L0Changing)` because L0's mapping of a
    /// page of L1's stage-2 table the walk read or updated was in the
    /// middle of its break-before-make ([`walker::WalkError::HostChanging`]):
    /// L0 is changing the memory L1's tables live in, not the access's
    /// target. Apart from [`Stats::l0_changing_output`]: the two point at
    /// different L0 changes.
    pub l0_changing_table: u64,
}

/// One worker's counters. Loom atomics under `--cfg loom` (the handover
/// from a dropped worker to the next is modelled by
/// `loom-tests/tests/shadow_worker_counters.rs`); core's otherwise, where
/// a load and a store compile to plain moves.
#[derive(Debug, Default)]
struct Counters {
    /// A live [`Worker`] writes these counters. Set by [`Service::worker`]
    /// under the registry's lock; cleared with Release when the worker
    /// drops, after its last counter store.
    claimed: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
    walks: AtomicU64,
    partial_walks: AtomicU64,
    invalidations: AtomicU64,
    invalidated_entries: AtomicU64,
    evictions: AtomicU64,
    recycled_contexts: AtomicU64,
    raced: AtomicU64,
    l0_changing_output: AtomicU64,
    l0_changing_table: AtomicU64,
}

/// Adds to one of a [`Worker`]'s counters. Each counter has one writer,
/// the worker's thread (a `Worker` is neither `Send` nor `Sync`; the
/// registry hands a dropped worker's counters to a new one only when it
/// reads their `claimed` flag cleared, then an Acquire fence orders the old
/// writer's stores before the new one's: see [`Service::worker`]), so a
/// load and a store do: no locked read-modify-write on the translate or
/// invalidate paths. `stats` may read a count a moment old, never a torn
/// one.
fn bump(counter: &AtomicU64, by: u64) {
    if by != 0 {
        let now = counter.load(Ordering::Relaxed);
        counter.store(now.wrapping_add(by), Ordering::Relaxed);
    }
}

impl Counters {
    fn add_to(&self, s: &mut Stats) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        s.hits += get(&self.hits);
        s.misses += get(&self.misses);
        s.walks += get(&self.walks);
        s.partial_walks += get(&self.partial_walks);
        s.invalidations += get(&self.invalidations);
        s.invalidated_entries += get(&self.invalidated_entries);
        s.evictions += get(&self.evictions);
        s.recycled_contexts += get(&self.recycled_contexts);
        s.raced += get(&self.raced);
        s.l0_changing_output += get(&self.l0_changing_output);
        s.l0_changing_table += get(&self.l0_changing_table);
    }
}

/// One thread's handle on the service: its epoch participant, its own
/// counters (so hot counters are never shared between cores) and where its
/// translates have been faulting (to ask for a run's next lines early).
/// Not `Send`: create one per thread with [`Service::worker`].
pub struct Worker {
    handle: LocalHandle,
    counters: Arc<Counters>,
    /// Requests served in bursts since this worker last collected garbage
    /// (see [`Burst::next`]).
    burst_requests: Cell<u32>,
    /// Where this worker's translates have been faulting, to tell a run of
    /// them a page stride apart (see [`Worker::next_in_run`]).
    fault_run: Cell<FaultRun>,
}

/// A worker's last translate: its shadow VMID, L2 page, the distance from
/// the one before it (in the same context; 0 otherwise), and the page whose
/// lines it asked for ahead (`u64::MAX` if none).
#[derive(Clone, Copy, Debug)]
struct FaultRun {
    vmid: u16,
    page: u64,
    stride: u64,
    ahead: u64,
}

/// What [`Worker::next_in_run`] tells a translate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RunHint {
    /// The translate before asked for this page's lines (see
    /// `Service::translate`).
    asked: bool,
    /// The run's stride, if the translate continues a run.
    stride: Option<u64>,
}

/// The largest distance between two faults, in pages either way, that
/// [`Worker::next_in_run`] takes for a run's stride: consecutive pages, and
/// one vCPU's share of a range its siblings fault in turn.
const RUN_STRIDE_PAGES: u64 = 16;

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Releases this worker's counter stores to the next worker that
        // claims these counters (its Acquire fence in `Service::worker`).
        self.counters.claimed.store(false, Ordering::Release);
    }
}

impl Worker {
    fn new(handle: LocalHandle, counters: Arc<Counters>) -> Worker {
        Worker {
            handle,
            counters,
            burst_requests: Cell::new(0),
            fault_run: Cell::new(FaultRun {
                vmid: 0,
                page: u64::MAX,
                stride: 0,
                ahead: u64::MAX,
            }),
        }
    }

    /// Counts one cache hit on this worker's counters with `bump`, as a
    /// translate hit does, without the translate (loom model builds only).
    ///
    /// The model of the counters' handover (`shadow_worker_counters`)
    /// needs a count that does not pin: the first pin of every new worker
    /// runs crossbeam-epoch's collection, whose `SeqCst` fence also
    /// acquires the dropped worker's `claimed` store, so through
    /// `translate` the model could not fail without `Service::worker`'s
    /// own Acquire fence (which must not lean on crossbeam's internals).
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn count_hit_unpinned(&self) {
        bump(&self.counters.hits, 1);
    }

    /// Pins the epoch for a lookup (see [`Service::lookup`]). Inside a
    /// [`Burst`] of this worker the pin nests in the burst's and costs no
    /// barrier.
    pub fn pin(&self) -> Guard {
        self.handle.pin()
    }

    /// Remembers a translate on L2 page `page` of shadow VMID `vmid`; if
    /// it continues a run (the same context, and the same page stride,
    /// at most [`RUN_STRIDE_PAGES`] pages, as from the translate before
    /// to the last), the stride: the run's next fault is likely that far
    /// on, and the caller asks for its lines. L2 touching memory in order,
    /// and an L0 unmap or a flush making it fault a range again, make such
    /// runs; faults in no order make none (two equal strides in a row by
    /// chance only). Also whether the last translate asked for this page's
    /// lines.
    #[inline]
    fn next_in_run(&self, vmid: u16, page: u64) -> RunHint {
        let last = self.fault_run.get();
        let same_context = last.vmid == vmid;
        let stride = if same_context {
            page.wrapping_sub(last.page)
        } else {
            0
        };
        let near =
            stride.wrapping_add(RUN_STRIDE_PAGES * PAGE_SIZE) <= 2 * RUN_STRIDE_PAGES * PAGE_SIZE;
        let run = (stride == last.stride && stride != 0 && near).then_some(stride);
        self.fault_run.set(FaultRun {
            vmid,
            page,
            stride,
            ahead: run.map_or(u64::MAX, |stride| page.wrapping_add(stride)),
        });
        RunHint {
            asked: same_context && last.ahead == page,
            stride: run,
        }
    }

    /// Starts serving requests back to back (a ring's batch): see [`Burst`].
    pub fn burst(&self) -> Burst<'_> {
        Burst {
            worker: self,
            guard: self.handle.pin(),
            under_pin: 0,
        }
    }
}

/// Requests one worker serves back to back, such as one sweep of the vCPU
/// rings by the service loop, under one epoch pin.
///
/// A lone pin publishes the worker's epoch with a full barrier (a locked
/// instruction on x86, `dmb ish` on arm64), about a third of the cost of a
/// cache hit. While a burst is alive, every [`Worker::pin`] of the same
/// worker (the service methods pin inside) nests in the burst's pin, which
/// costs a counter increment: the barrier is paid once per
/// [`REQUESTS_PER_PIN`] requests.
///
/// Call [`Burst::next`] between requests. A reference from an earlier
/// request cannot be kept across it (it borrows the burst mutably). Drop
/// the burst before the thread waits for more work: a pinned worker that
/// sleeps holds back reclamation everywhere.
pub struct Burst<'w> {
    worker: &'w Worker,
    guard: Guard,
    /// Requests served under the current pin.
    under_pin: u32,
}

impl fmt::Debug for Burst<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Burst")
            .field("under_pin", &self.under_pin)
            .finish_non_exhaustive()
    }
}

/// Requests a [`Burst`] serves under one pin before it unpins and pins
/// again, so a long burst holds back reclamation by at most this many
/// requests. Under loom it is 1, so the model of a burst crosses a re-pin.
///
/// crossbeam-epoch's `Guard::repin` would move the pin forward without the
/// barrier; with it, the loom model `no_use_after_free_across_a_burst`
/// reports a reader touching a node its destruction is not ordered after
/// (nothing orders the reader's later loads after the new epoch it
/// published), so bursts re-pin in full.
pub const REQUESTS_PER_PIN: u32 = if cfg!(loom) { 1 } else { 16 };

/// Requests between two garbage collections by a worker serving bursts:
/// crossbeam-epoch collects on every 128th lone pin, so bursts keep its
/// pace per request (counted a pin's worth at a time: at most
/// `REQUESTS_PER_PIN - 1` requests late).
const BURST_REQUESTS_PER_COLLECT: u32 = 128;

impl Burst<'_> {
    /// Ends one request of the burst (see [`Burst`]). Inlined, and one
    /// counter: the requests the worker served towards its next garbage
    /// collection are added a pin's worth at a time when the burst re-pins
    /// ([`Burst::end_pin`], out of line), and the rest when it ends. It
    /// was a call that kept both counts on every request (~15 of a hit's
    /// ~207 instructions).
    #[inline]
    pub fn next(&mut self) {
        self.under_pin += 1;
        if self.under_pin == REQUESTS_PER_PIN {
            self.end_pin();
        }
    }

    /// The current pin's requests are served: counts them, collects
    /// garbage if due, and re-pins.
    #[cold]
    #[inline(never)]
    fn end_pin(&mut self) {
        self.count_served(REQUESTS_PER_PIN);
        self.under_pin = 0;
        // A full unpin and pin, barrier included.
        self.guard.repin_after(|| {});
    }

    /// Adds `served` requests to the worker's count since its last garbage
    /// collection; collects at [`BURST_REQUESTS_PER_COLLECT`].
    fn count_served(&self, served: u32) {
        let served = self.worker.burst_requests.get() + served;
        if served >= BURST_REQUESTS_PER_COLLECT {
            self.worker.burst_requests.set(0);
            // Hands this worker's deferred frees to the collector and
            // frees what no pinned thread can reach any more.
            self.guard.flush();
        } else {
            self.worker.burst_requests.set(served);
        }
    }

    /// The burst's pin, for [`Service::lookup`] and the other reads that
    /// take a guard.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }
}

impl Drop for Burst<'_> {
    /// Counts the requests served under the last pin, so that short
    /// bursts (a sweep of rings with a request or two) still bring the
    /// worker's next garbage collection closer.
    fn drop(&mut self) {
        self.count_served(self.under_pin);
    }
}

/// The shadow-stage-2 cache service for one L1 guest. `M` is L1's memory
/// (the walker reads L1's tables through it), `L` L0's mapping of L1, `B`
/// the shadow-table backend.
///
/// Contract with hv: a recycled context's successor shares the victim's
/// shadow root and VMID, so hv must kick the PEs still running the victim's
/// L2 (and wait until they left L2) before the successor maps anything: in
/// [`ShadowStore::reassigned`] (see the module docs).
pub struct Service<M, L, B: ShadowBackend> {
    config: ServiceConfig,
    memory: M,
    l0: L,
    backend: B,
    directory: Directory<ShadowOf<B>>,
    rmap: Mutex<ReverseMap<u16>>,
    /// Where an install's reverse-map probes will read first, so a fault
    /// asks for those lines long before it takes the reverse-map lock (its
    /// page's once it has the context, the composed entry's once composed;
    /// see [`RmapHint`]).
    rmap_hint: RmapHint<u16>,
    /// Held for a whole `l0_unmap`, before any other lock: one L0 unmap at
    /// a time (see there).
    l0_unmaps: Mutex<()>,
    l0_generation: AtomicU64,
    shadow_leaves: AtomicUsize,
    collector: Collector,
    /// Registry of worker counters. The `Arc`s only keep the counters
    /// alive (a [`Worker`] may outlive the service); who writes them is the
    /// `claimed` flag's business (see [`Service::worker`]).
    workers: Mutex<Vec<Arc<Counters>>>,
    /// Workers made so far ([`Service::workers_made`]).
    workers_made: AtomicUsize,
}

impl<M, L, B: ShadowBackend> fmt::Debug for Service<M, L, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Service")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Where a translate's L1 leaf came from.
enum Source<'g> {
    /// The cache's entry (under the translate's pin), and its leaf hash
    /// (`WalkCache::lookup`).
    Hit(&'g CachedWalk, u64),
    /// A walk, and the level of the deepest table descriptor a cached
    /// path served it (a partial walk), if any. By reference: the walk's
    /// result (with its trail, a few hundred bytes) stays where the walk
    /// wrote it instead of being copied into the enum (`memcpy` calls).
    Walk(&'g walker::Translation, Option<i8>),
}

/// What of L1's address space a translate's leaf depends on: the leaf
/// (a hit), or the leaf and the start-level region its walk read (a walk,
/// whose upper descriptors an AnyLevel TLBI may have covered).
fn footprint<S>(context: &Context<S>, walked: &Source<'_>) -> Footprint {
    match walked {
        Source::Hit(hit, _) => Footprint {
            leaf: (hit.ipa_base, hit.size()),
            walk: None,
        },
        Source::Walk(t, _) => Footprint {
            leaf: (t.ipa_block_base(), t.block_size),
            walk: context.walker().start_level().map(|level| {
                let size = 1u64 << level_lsb(context.walker(), level);
                (t.ipa & !(size - 1), size)
            }),
        },
    }
}

/// What an install does when the shadow leaves are at the budget's cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AtLeafCap {
    /// Change nothing and report [`Install::OverCap`]: the caller makes
    /// room in the context holding the most leaves, then tries again.
    Yield,
    /// Clear this context's own shadow and go on.
    ClearOwn,
}

/// What one shadow install did.
enum Install {
    Done,
    /// The shadow leaves are at the cap ([`AtLeafCap::Yield`]); nothing
    /// was changed.
    OverCap,
    /// The shadow leaves are at the cap even after this context's shadow
    /// was cleared ([`AtLeafCap::ClearOwn`]: installs in other contexts
    /// took the room meanwhile), or an install's leaf removed since its
    /// cap check found no room back: nothing is left installed, L2 faults
    /// again.
    CapTaken,
    Raced,
    NoFrames,
    /// The reverse map is full (of dead records not swept yet).
    NoRecord,
    Refused(MapError),
}

impl<M, L, B> Service<M, L, B>
where
    M: GuestMemory + Sync,
    L: L0Map,
    B: ShadowBackend,
{
    /// A service with no contexts yet. Every context slot's shadow (its
    /// root table frame, part of [`Budget::split`]'s frames) is made now,
    /// so a new context never waits for other contexts' tables to give a
    /// frame back. Fails when the shadow VMIDs do not fit the host's
    /// ([`ServiceConfig::shadow_vmids`]), when the budget's sizes cannot be
    /// computed ([`ServiceError::Budget`]), when L1 is shown FEAT_XNX and
    /// the backend cannot encode it ([`ServiceError::XnxWithoutHostXnx`]),
    /// when L1 is shown a PA size the shadows cannot take
    /// ([`ServiceError::ShadowSmallerThanL1`]), or when the budget could
    /// never install a shadow entry ([`ServiceError::UnusableBudget`]).
    pub fn new(config: ServiceConfig, memory: M, l0: L, backend: B) -> Result<Self, ServiceError> {
        // The budget counts a shadow struct of at most SHADOW_STRUCT_BYTES.
        const { Budget::check_shadow::<ShadowOf<B>>() };
        config.budget.check().map_err(ServiceError::Budget)?;
        let vmids = config.shadow_vmids()?;
        if config.features.xnx() && backend.host_execute() == HostExecute::BothOrNeither {
            return Err(ServiceError::XnxWithoutHostXnx);
        }
        let (l1_pa_bits, shadow_bits) = (config.features.pa_max_bits(), backend.input_bits());
        if l1_pa_bits > shadow_bits {
            return Err(ServiceError::ShadowSmallerThanL1 {
                l1_pa_bits,
                shadow_bits,
            });
        }
        // Every slot's empty shadow (its shape follows from the input size
        // alone) with the frames its start tables' alignment may skip, and
        // the tables of the worst single access (review 38 R38-1: fewer,
        // and an access needing them all faults for ever).
        let shape = ShadowConfig {
            xnx: false,
            pa_bits: shadow_bits,
        };
        let frames_needed = config.budget.capacity.contexts.max(1) * shape.empty_table_frames()
            + shape.alignment_frames()
            + Budget::worst_access_frames(&shape);
        if config.budget.frames < frames_needed {
            return Err(ServiceError::UnusableBudget {
                what: "shadow table frames",
                have: config.budget.frames,
                need: frames_needed,
            });
        }
        if config.budget.shadow_leaves < WORST_ACCESS_PAGES {
            return Err(ServiceError::UnusableBudget {
                what: "shadow leaves",
                have: config.budget.shadow_leaves,
                need: WORST_ACCESS_PAGES,
            });
        }
        crate::flat::mix_in_entropy(config.hash_seed);
        let collector = Collector::new();
        let directory = Directory::new(
            config.features,
            config.budget.capacity,
            vmids,
            config.hash_seed,
            &collector,
        );
        let made = directory.reserve_shadows(|vmid| backend.create(vmid));
        let slots = config.budget.capacity.contexts.max(1);
        if made < slots && shape.root_tables() > 1 {
            // A slot without a shadow gets one at its first fault from
            // frames other shadows give back, but concatenated start
            // tables need an aligned run that freed frames need not form:
            // such a slot could never serve a fault (review 30 R30-1).
            return Err(ServiceError::UnusableBudget {
                what: "slots whose empty shadow the frame pool could place",
                have: made,
                need: slots,
            });
        }
        let rmap = ReverseMap::with_capacity(
            config.budget.reverse_map_records(),
            config.budget.capacity.contexts,
        );
        Ok(Service {
            rmap_hint: rmap.hint(),
            directory,
            config,
            memory,
            l0,
            backend,
            rmap: Mutex::new(rmap),
            l0_unmaps: Mutex::new(()),
            l0_generation: AtomicU64::new(0),
            shadow_leaves: AtomicUsize::new(0),
            collector,
            workers: Mutex::new(Vec::new()),
            workers_made: AtomicUsize::new(0),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// The VMID width L0 exposes to L1 (ID_AA64MMFR1_EL1.VMIDBits): how
    /// L1's VMID is read from its VTTBR_EL2 ([`ipc::l1_vmid`]).
    pub fn l1_vmid_width(&self) -> ipc::VmidWidth {
        if self.config.features.vmid16() {
            ipc::VmidWidth::Bits16
        } else {
            ipc::VmidWidth::Bits8
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// L0's mapping of L1.
    pub fn l0(&self) -> &L {
        &self.l0
    }

    /// L1 memory as the walker reads it.
    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// A handle for the calling thread.
    pub fn worker(&self) -> Worker {
        let counters = {
            let mut workers = self.workers.lock();
            // A dropped worker's counters are taken over, counts and all,
            // so the registry holds no more entries than workers ever alive
            // at once (review 11 R11-7: it grew by one per worker made, for
            // ever). Only this function sets `claimed`, under the registry's
            // lock, so two workers never claim the same counters.
            match workers.iter().find(|c| !c.claimed.load(Ordering::Relaxed)) {
                Some(free) => {
                    // Pairs with the Release store of the dropped worker's
                    // `Drop`, which this load read: its last counter stores
                    // happen before this worker's first (they are plain
                    // load-and-store increments, see `bump`).
                    fence(Ordering::Acquire);
                    free.claimed.store(true, Ordering::Relaxed);
                    free.clone()
                }
                None => {
                    let counters = Arc::new(Counters {
                        claimed: AtomicBool::new(true),
                        ..Counters::default()
                    });
                    workers.push(counters.clone());
                    counters
                }
            }
        };
        self.workers_made.fetch_add(1, Ordering::Relaxed);
        Worker::new(self.collector.register(), counters)
    }

    /// How many workers [`Service::worker`] made so far. Each registers
    /// with the epoch collector (two blocks of over 2 KiB, and a collection
    /// at its first pin), so an embedder keeps one per thread: hv checks
    /// at the end of a nested run that it made one per vCPU (review 38
    /// R38-4).
    #[doc(hidden)]
    pub fn workers_made(&self) -> usize {
        self.workers_made.load(Ordering::Relaxed)
    }

    /// How many workers' counters the service keeps: at most the number of
    /// workers alive at once so far (dropped workers' counters are reused).
    #[doc(hidden)]
    pub fn registered_workers(&self) -> usize {
        self.workers.lock().len()
    }

    /// Sum of every counter.
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for w in self.workers.lock().iter() {
            w.add_to(&mut s);
        }
        s
    }

    /// Number of live contexts.
    pub fn contexts(&self) -> usize {
        self.directory.len()
    }

    /// Live cache entries (leaves, intermediate paths) over all contexts.
    pub fn cache_entries(&self, worker: &Worker) -> (usize, usize) {
        let guard = self.pin(worker);
        let (mut leaves, mut paths) = (0, 0);
        self.directory.for_vmid(None, &guard, |c| {
            let held = c.lock();
            leaves += held.index.live_leaves();
            paths += held.index.live_paths();
        });
        (leaves, paths)
    }

    /// The writer-side indexes' allocations since the service was made:
    /// (growths, bytes now) of the reverse map and of every live context's
    /// cache index. They are sized from the budget when the service and
    /// each slot's cache are made, so the growths stay zero and the bytes
    /// stay what was preallocated (see [`Budget::worst_case_bytes`]).
    pub fn index_allocations(&self, worker: &Worker) -> (u32, usize) {
        let guard = self.pin(worker);
        let rmap = self.rmap.lock();
        let (mut growths, mut bytes) = (rmap.growths(), rmap.allocated_bytes());
        drop(rmap);
        self.directory.for_vmid(None, &guard, |c| {
            let held = c.lock();
            growths += held.index.growths();
            bytes += held.index.allocated_bytes();
            if let Some((g, b)) = c.cache.spare_index_allocations() {
                growths += g;
                bytes += b;
            }
        });
        (growths, bytes)
    }

    /// Shadow table frames in use (the pool's count).
    pub fn shadow_frames(&self) -> usize {
        self.backend.frames_in_use()
    }

    /// Shadow leaves alive (all contexts).
    pub fn shadow_leaves(&self) -> usize {
        self.shadow_leaves.load(Ordering::Relaxed)
    }

    /// Live reverse-map records (all contexts): one per installed shadow
    /// leaf.
    pub fn reverse_map_records(&self) -> usize {
        self.rmap.lock().len()
    }

    /// The shadow VMID and root table PA for `key` (creating the context),
    /// what hv installs as VTTBR_EL2 to run L2.
    pub fn shadow_root(&self, worker: &Worker, key: &ContextKey) -> Option<(u16, u64)> {
        let guard = self.pin(worker);
        let context = self.context(worker, key, &guard)?;
        Some((context.shadow_vmid(), context.shadow().root_pa()))
    }

    /// The shadow entry translating `l2_ipa` in `key`'s context, if the
    /// context exists and has one.
    pub fn shadow_lookup(
        &self,
        worker: &Worker,
        key: &ContextKey,
        l2_ipa: u64,
    ) -> Option<ShadowMapping> {
        let guard = self.pin(worker);
        self.directory.find(key, &guard)?.shadow().lookup(l2_ipa)
    }

    /// The shadow VMID of `key`'s context, if it exists.
    pub fn shadow_vmid(&self, worker: &Worker, key: &ContextKey) -> Option<u16> {
        let guard = self.pin(worker);
        Some(self.directory.find(key, &guard)?.shadow_vmid())
    }

    /// Calls `visit` with the shadow VMID of every context of L1 VMID
    /// `vmid`: the VMIDs hv applies L1's stage-1 TLBIs for L2 to in
    /// hardware (VMALLE1, VAE1, ASIDE1, ... issued at L1's virtual EL2 with
    /// {E2H, TGE} != {1, 1}). Those cover L2's stage-1 and combined entries
    /// of L1's VMID whatever L1's stage-2 root, and each (VTTBR, VTCR) of
    /// the VMID is a context with a shadow VMID of its own, so the one
    /// context L1's current VTTBR_EL2 names is not enough (review 21 F1).
    /// Runs under the directory's lock: no context of the VMID is created
    /// or recycled meanwhile (a recycled shadow VMID is flushed whole
    /// before its next use anyway).
    pub fn for_each_shadow_vmid(&self, worker: &Worker, vmid: u16, mut visit: impl FnMut(u16)) {
        let guard = self.pin(worker);
        self.directory
            .for_vmid(Some(vmid), &guard, |context| visit(context.shadow_vmid()));
    }

    /// Pins `worker` for a call into this service.
    ///
    /// # Panics
    ///
    /// If `worker` was made by another service: its pin would not hold
    /// back this service's reclamation (and its counters belong there).
    fn pin(&self, worker: &Worker) -> Guard {
        assert!(
            worker.handle.collector() == &self.collector,
            "a Worker of another Service was passed to this one"
        );
        worker.pin()
    }

    /// The cached walk result for `l2_ipa` in `key`'s context, if any: the
    /// lock-free lookup path alone (no walk, no install).
    ///
    /// # Panics
    ///
    /// If `guard` is not a pin of one of this service's workers (or of a
    /// [`Burst`] of one): a pin of another epoch collector would not keep
    /// the entry returned from being freed.
    ///
    /// The entry borrows the service as well as the guard: a guard keeps
    /// retired entries alive, but dropping the service frees every entry
    /// at once (review 50 R50-1), so it cannot outlive the service:
    ///
    /// ```compile_fail,E0515
    /// use shadow_mmu::cache::CachedWalk;
    /// use shadow_mmu::context::ContextKey;
    /// use shadow_mmu::compose::L0Map;
    /// use shadow_mmu::service::{Guard, Service, ShadowBackend};
    /// use walker::GuestMemory;
    ///
    /// fn outlive<'g, M: GuestMemory + Sync, L: L0Map, B: ShadowBackend>(
    ///     service: Service<M, L, B>,
    ///     key: &ContextKey,
    ///     guard: &'g Guard,
    /// ) -> Option<&'g CachedWalk> {
    ///     service.lookup(key, 0, guard)
    /// }
    /// ```
    pub fn lookup<'g>(
        &'g self,
        key: &ContextKey,
        l2_ipa: u64,
        guard: &'g Guard,
    ) -> Option<&'g CachedWalk> {
        // The directory's copy of the collector: it lies in the line of
        // the directory the lookup reads anyway.
        assert!(
            guard.collector() == Some(self.directory.collector()),
            "Service::lookup was given a pin of another epoch collector"
        );
        // Read-only: the recycling hand's used bit is set on the fault
        // and `shadow_root` paths (`Directory::get_or_create`), not here
        // (setting it here cost 1-2 ns of a 16 ns hit, review 12 R12-2).
        self.directory.cached(key, l2_ipa, guard)
    }

    /// `key`'s context, made if need be. `guard` must come from
    /// [`Service::pin`] (which checked the worker's collector).
    fn context<'g>(
        &'g self,
        worker: &Worker,
        key: &ContextKey,
        guard: &'g Guard,
    ) -> Option<&'g Context<ShadowOf<B>>> {
        for attempt in 0..2 {
            // `guard` is `Service::pin`'s, of this service's collector.
            let made = self.directory.get_or_create_pinned(
                key,
                guard,
                |victim, held| {
                    self.drop_context_contents(victim, held, guard);
                    // Its (now empty) cache index passes on with the slot.
                    victim.cache.park_index(&mut held.index);
                },
                |vmid| self.backend.create(vmid),
                ShadowStore::reassigned,
            );
            match made {
                Some((context, created)) => {
                    if matches!(created, Created::Recycled { .. }) {
                        bump(&worker.counters.recycled_contexts, 1);
                    }
                    return Some(context);
                }
                // No frame for the slot's root: only when the backend could
                // not reserve it in `new` (a pool smaller than the budget).
                // Take frames back from the other shadows, as a fault under
                // pool pressure does, and try once more.
                None if attempt == 0 => self.reclaim_frames(guard, &worker.counters),
                None => {}
            }
        }
        None
    }

    /// Everything a retired or flushed context holds, gone.
    fn drop_context_contents(
        &self,
        context: &Context<ShadowOf<B>>,
        held: &mut ContextState,
        guard: &Guard,
    ) -> usize {
        let cached = context.flush_cache(held, guard);
        cached + self.clear_shadow(context)
    }

    /// Clears a context's shadow: its leaves and their reverse-map records
    /// go together (the VMID's records by one epoch bump). Caller holds the
    /// context's lock. Returns the leaves removed.
    fn clear_shadow(&self, context: &Context<ShadowOf<B>>) -> usize {
        let cleared = context.shadow().clear();
        self.forget_shadow(cleared);
        self.rmap.lock().forget_context(context.shadow_vmid());
        cleared
    }

    /// Takes one place under the shadow-leaf cap (counts one more leaf),
    /// unless the count is at the cap: whether it did. One
    /// read-modify-write, so installs in different contexts never pass the
    /// cap together.
    fn take_leaf_place(&self) -> bool {
        let cap = self.config.budget.shadow_leaves;
        self.shadow_leaves
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < cap).then_some(n + 1)
            })
            .is_ok()
    }

    fn forget_shadow(&self, leaves: usize) {
        // Saturating: counts from unmaps of entries installed before a
        // clear are approximate at worst, never negative.
        let _ = self
            .shadow_leaves
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(leaves))
            });
    }

    /// Resolve an L2 stage-2 fault in `key`'s context (see the module docs).
    pub fn translate(
        &self,
        worker: &Worker,
        key: &ContextKey,
        l2_ipa: u64,
        access: AccessKind,
        abort: &AbortContext,
    ) -> Translated {
        let guard = self.pin(worker);
        let Some(context) = self.context(worker, key, &guard) else {
            return Translated::Retry(Retry::Throttled);
        };
        // The reverse-map line the install will probe first (for a page,
        // the usual leaf), asked for now so it arrives during the lookup,
        // unless the last translate asked for it already (below).
        let vmid = context.shadow_vmid();
        let l2_page = l2_ipa & !(PAGE_SIZE - 1);
        let run = worker.next_in_run(vmid, l2_page);
        if !run.asked {
            self.rmap_hint.prefetch_shadow(vmid, l2_page);
        }
        // In a run of faults (see `Worker::next_in_run`), the next fault's
        // line and its walk-cache bucket too. Asked for a whole fault
        // ahead, they arrive in time; this fault's own `by_shadow` line,
        // a random line of a large table asked for just above, is often
        // still on its way when the install reads it (the largest wait of
        // a hit fault in `perf` samples, with L1's list's line below).
        if let Some(stride) = run.stride {
            let next = l2_page.wrapping_add(stride);
            self.rmap_hint.prefetch_shadow(vmid, next);
            context.cache.prefetch_page(next);
        }
        // Both generations before anything is read (Acquire: the walk's
        // reads and the L0 lookup come after).
        let generation = context.generation();
        let l0_generation = self.l0_generation.load(Ordering::Acquire);
        let counters = &worker.counters;
        // Where a walk's result lies (see `Source::Walk`).
        let mut walk_result: (Result<walker::Translation, WalkError>, WalkKind);
        let walked = match context.cached_hashed(l2_ipa, &guard) {
            Some((hit, hash)) if hit.permits(access) => {
                bump(&counters.hits, 1);
                Source::Hit(hit, hash)
            }
            _ => {
                bump(&counters.misses, 1);
                let walker = context.walker();
                let path = context.cached_path(l2_ipa, &guard);
                walk_result = walk_from(walker, &self.memory, path, l2_ipa, access);
                // DC IVAC at EL1 to a writable-clean DBM leaf (VTCR_EL2.HD):
                // L1's stage 2 permits it (the DBM entry is effectively
                // writable) without a dirty update (AArch64.SetDirtyState:
                // FALSE for AccessType_DC), but the shadow can only carry
                // the clean, read-only S2AP, which denies DC IVAC again:
                // answering with it loops forever (review 36 R36-2). The
                // shadow cannot say "W for DC IVAC but not for stores", so
                // the access is walked again as a write, which marks L1's
                // descriptor dirty (S2AP[1] = 1) and lets the entry be
                // writable. Documented deviation: L1 sees the page dirty
                // after a DC IVAC alone; that costs L1 at most a needless
                // write-back of the page and never loses a write (a DC IVAC
                // may discard dirty cache lines, so the page's contents may
                // change through it anyway). Exact would be L0 performing
                // the clean and invalidate itself (AArch64.DC turns EL1's DC
                // IVAC into one with stage 2 on) and skipping the
                // instruction, which needs an outcome hv acts on.
                if access == AccessKind::CacheMaintenance(CacheMaintenance::InvalidateEl1)
                    && matches!(&walk_result.0, Ok(t) if !t.s2ap.writable())
                {
                    walk_result = walk_from(walker, &self.memory, None, l2_ipa, AccessKind::Write);
                }
                let (result, kind) = &walk_result;
                let served_through = match kind {
                    WalkKind::Full => {
                        bump(&counters.walks, 1);
                        None
                    }
                    WalkKind::Partial => {
                        bump(&counters.partial_walks, 1);
                        path.map(|p| p.level)
                    }
                };
                match result {
                    Ok(t) => Source::Walk(t, served_through),
                    Err(WalkError::Fault(fault)) => {
                        return Translated::Inject(fault.syndrome(abort));
                    }
                    Err(WalkError::Contended { .. }) => return Translated::Retry(Retry::Contended),
                    // L0 denies the walk's access to L1's table: its own
                    // fault to resolve; nothing walked, nothing cached.
                    Err(WalkError::HostDenied(denial)) => {
                        return Translated::L0Denied {
                            l1_ipa: denial.descriptor_address,
                            denied: DeniedAccess::of_table(denial),
                        }
                    }
                    // L0 is mid its break-before-make of L1's table page:
                    // its own translation fault, resolved by waiting;
                    // nothing walked, nothing cached.
                    Err(WalkError::HostChanging(_)) => {
                        bump(&counters.l0_changing_table, 1);
                        return Translated::Retry(Retry::L0Changing);
                    }
                }
            }
        };
        // L1's leaf, from the walk result where it lies (built in each arm
        // above, the pair was copied on the hit path: ~50 instructions).
        let leaf = match &walked {
            Source::Hit(hit, _) => l1_translation(hit),
            Source::Walk(t, _) => L1Translation::from_translation(t),
        };
        // The reverse-map list the install will probe (for a page, the
        // usual entry), asked for now: it arrives during the composition
        // (it missed there when asked for after it).
        if let Some(l1_ipa) = leaf.l1_ipa(l2_ipa) {
            let l1_page = l1_ipa & !(PAGE_SIZE - 1);
            self.rmap_hint.prefetch_l1_page(l1_page);
            // The next fault's too in a run (above), on the guess that L1
            // backs the run's pages in the same order.
            if let Some(stride) = run.stride {
                self.rmap_hint
                    .prefetch_l1_page(l1_page.wrapping_add(stride));
            }
        }
        let entry = match resolve(&leaf, l2_ipa, &self.l0, self.backend.host_execute()) {
            Ok(Composition::Mapped(entry)) => entry,
            Ok(Composition::Mmio { l1_ipa }) => {
                return Self::unless_invalidated(
                    context,
                    &walked,
                    generation,
                    Translated::Mmio { l1_ipa },
                )
            }
            Ok(Composition::ExternalAbort { l1_ipa }) => {
                return Self::unless_invalidated(
                    context,
                    &walked,
                    generation,
                    Translated::OutsideL1 { l1_ipa },
                )
            }
            // L0's break-before-make of the L1 IPA is under way: L0's own
            // transient state, which hardware would resolve at L0 (a
            // stage-2 translation fault that waits for the change), so
            // neither an external abort for L2 (`OutsideL1`: the memory is
            // L1's) nor anything installed or cached (no mapping to compose
            // with). A retry gives no result and so needs no check against
            // invalidations: L2 faults again and is translated afresh.
            Ok(Composition::L0Changing { .. }) => {
                bump(&counters.l0_changing_output, 1);
                return Translated::Retry(Retry::L0Changing);
            }
            Err(e) => return Translated::Unshadowable(Refusal::Compose(e)),
        };
        // A page's lines are the two asked for above (its `by_shadow` slot
        // and its L1 page's list): only a block's differ. Asked for again
        // unless the last translate asked for this page's (a fault ago),
        // as before runs were told apart: faults in no order keep the
        // second prefetch they had (no gain from dropping it was measured).
        if entry.shadow.size != PAGE_SIZE || !run.asked {
            self.rmap_hint.prefetch_insert(
                entry.l1_ipa_base,
                &ShadowRef {
                    context: vmid,
                    l2_ipa: entry.shadow.l2_ipa_base,
                    size: entry.shadow.size,
                },
            );
        }
        // L1's leaf allows the access (the walk succeeded, or the hit
        // permits it); if the composed entry does not, L0's mapping denies
        // it, and `Mapped` would send L2 back to fault forever. The
        // composed permissions are what the shadow descriptor encodes
        // (reduced to the host's `HostExecute`), so a fetch the host cannot
        // allow at only this EL is denied here too, not answered `Mapped`.
        let l0_denied = !entry.shadow.perms.contains(needed_permission(access));
        let denial = Translated::L0Denied {
            l1_ipa: entry.l1_ipa_base + (l2_ipa - entry.shadow.l2_ipa_base),
            denied: DeniedAccess::L2Data(access),
        };
        if l0_denied && entry.shadow.perms == Permissions::none() {
            // Nothing to install: an entry allowing nothing saves no fault.
            return denial;
        }
        // A denied access still installs the reduced entry: it is exactly
        // what both stages allow (never more than L0 grants), so it is
        // safe, and L2's other accesses to the page (reads of a page L0
        // write-protects for dirty logging) keep running without faults
        // while hv resolves its own. When the install finds that an
        // invalidation raced with the walk, the answer is a retry (L2
        // re-faults and re-walks) rather than the denial, like any raced
        // install. (With nothing to install, above, the denial stands: it
        // is about the access L2 made, which L1's tables allowed when it
        // was walked.)
        let outcome = |mapped: ShadowMapping| {
            if l0_denied {
                denial
            } else {
                Translated::Mapped(mapped)
            }
        };
        for attempt in 0..2 {
            // Over the shadow-leaf cap, the first attempt leaves the room
            // to be made by the context holding the most leaves; should
            // the cap still be reached on the second (other installs took
            // the room meanwhile), this context's shadow goes.
            let at_cap = if attempt == 0 {
                AtLeafCap::Yield
            } else {
                AtLeafCap::ClearOwn
            };
            let mut held = context.lock();
            match self.install(
                context,
                &mut held,
                &entry,
                &walked,
                generation,
                l0_generation,
                &guard,
                counters,
                at_cap,
            ) {
                Install::Done => return outcome(entry.shadow),
                Install::OverCap => {
                    // Never lock a second context while holding one (two
                    // installs would deadlock): unlock first.
                    drop(held);
                    self.reclaim_leaves(&guard, counters);
                }
                Install::Raced => {
                    bump(&counters.raced, 1);
                    return Translated::Retry(Retry::InvalidationRaced);
                }
                // Only an install's own eviction leaves this on attempt 0:
                // as over the cap.
                Install::CapTaken if attempt == 0 => {
                    drop(held);
                    self.reclaim_leaves(&guard, counters);
                }
                Install::CapTaken if l0_denied => return denial,
                Install::CapTaken => return Translated::Retry(Retry::Throttled),
                // The access is L0's to resolve even if no entry can be.
                Install::Refused(_) if l0_denied => return denial,
                Install::Refused(e) => return Translated::Unshadowable(Refusal::Map(e)),
                Install::NoFrames if attempt == 0 => {
                    // Evict this context's shadow entries (they re-fault)
                    // and try once more. (After `OverCap` on attempt 0,
                    // a `NoFrames` or `NoRecord` on attempt 1 gets no
                    // second try: it ends below in `Retry(Throttled)`, and
                    // the next fault finds room.)
                    let cleared = self.clear_shadow(context);
                    bump(&counters.evictions, cleared as u64 + 1);
                }
                Install::NoFrames => {}
                Install::NoRecord if attempt == 0 => {
                    // As a shadow over the leaf cap: this context's records
                    // die (swept as later inserts meet them) and its leaves
                    // re-fault; try once more.
                    let cleared = self.clear_shadow(context);
                    bump(&counters.evictions, cleared as u64 + 1);
                }
                // Each refused insert swept a bounded part of the slab:
                // L2 faults again and the next one finds room (after hv
                // resolved its own fault, if L0 denies the access).
                Install::NoRecord if l0_denied => return denial,
                Install::NoRecord => return Translated::Retry(Retry::Throttled),
            }
        }
        // The pool is still short: other contexts hold its frames. Take
        // them from the largest and let L2 fault again (after hv resolved
        // its own fault, if L0 denies the access).
        self.reclaim_frames(&guard, counters);
        if l0_denied {
            return denial;
        }
        Translated::Retry(Retry::Throttled)
    }

    /// An answer that installs nothing (hv emulates a device access for
    /// L2, or injects an external abort) still comes from L1's leaf, so it
    /// stands only if no invalidation covered that leaf since the
    /// translate read the generation: once a TLBI is acknowledged no
    /// access may use a translation it removed (the Arm ARM's TLBI
    /// completion covers accesses made through the old entry), and a
    /// device access hv emulated afterwards would be one (review 20 R20-2,
    /// `tests/stale_device_answer.rs`). L2 re-faults on a retry.
    fn unless_invalidated(
        context: &Context<ShadowOf<B>>,
        walked: &Source<'_>,
        generation: u64,
        answer: Translated,
    ) -> Translated {
        let held = context.lock();
        if context.may_insert(&held, generation, &footprint(context, walked)) {
            answer
        } else {
            Translated::Retry(Retry::InvalidationRaced)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn install(
        &self,
        context: &Context<ShadowOf<B>>,
        held: &mut ContextState,
        entry: &crate::compose::ComposedEntry,
        walked: &Source<'_>,
        generation: u64,
        l0_generation: u64,
        guard: &Guard,
        counters: &Counters,
        at_cap: AtLeafCap,
    ) -> Install {
        if !context.may_insert(held, generation, &footprint(context, walked)) {
            return Install::Raced;
        }
        // Shadow leaves are capped by the budget. Over the cap, the
        // context holding the most leaves gives them up (as under frame
        // pressure): the caller does that without this lock and tries
        // again, before anything here changed. On the retry, this
        // context's shadow goes, leaves and records together (its cached
        // walks stay: re-faults are cheap hits).
        // An install whose leaf is already in the shadow (a second vCPU
        // faulting on the same page, a hit re-installed) adds no leaf: it
        // never clears anything for the cap (review 12 R12-5).
        // The install's place under the cap is taken here, counted at
        // once, and given back unless `map` adds a leaf: a check here and
        // a count after `map` let installs in two contexts (two locks) both
        // pass at the cap minus one (review 38 R38-2).
        let vmid = context.shadow_vmid();
        // By reference: a copy of the entry cost ~16 moves a fault.
        let shadow = &entry.shadow;
        // What the shadow holds at the new leaf's base: read once, for the
        // cap here and for `unmap_other_shapes` below (read again there
        // only if an eviction unmapped something in between).
        // And where that walk stopped, for `map_excluded_at`: valid until
        // anything below unmaps in or clears this shadow (each such path
        // walks again or drops the place).
        let (mut found, mut place_in_shadow) =
            context.shadow().lookup_place_excluded(shadow.l2_ipa_base);
        let present = found == Some(*shadow);
        let mut place = !present && self.take_leaf_place();
        if !present && !place {
            match at_cap {
                AtLeafCap::Yield => return Install::OverCap,
                AtLeafCap::ClearOwn => {
                    let cleared = self.clear_shadow(context);
                    bump(&counters.evictions, cleared as u64);
                    (found, place_in_shadow) =
                        context.shadow().lookup_place_excluded(shadow.l2_ipa_base);
                    place = self.take_leaf_place();
                    if !place {
                        return Install::CapTaken;
                    }
                }
            }
        }
        // Every way out below that adds no leaf gives the place back.
        let give_back = |place: bool| {
            if place {
                self.forget_shadow(1);
            }
        };
        // The cache first: its eviction unmaps shadow ranges (leaves with
        // their reverse-map records), so it must not run between this
        // install's record and its map, and the new shadow leaf must lie
        // inside a cached leaf (module invariant). Cached walks are L2 ->
        // L1 results: they do not depend on L0's generation.
        let (leaf, translation) = match *walked {
            Source::Walk(t, served) => (CachedWalk::from_translation(t), Some((t, served))),
            Source::Hit(hit, _) => (*hit, None),
        };
        // A hit's leaf may have been evicted since the lookup (evictions do
        // not move the generation): put it back, it is still valid.
        if !matches!(walked, Source::Hit(hit, hash) if context.cache.still_holds(hit, *hash, guard))
        {
            // The cache tables' slots are written by a load and a store
            // (`table::replace`), so their writers must be serialised:
            // writers of a context's cache slots are serialised by its
            // lock, and a retired context's cache is never written (the
            // slot's cache is its successor's, written under the
            // successor's lock; a second writer would retire a node twice).
            // `may_insert` refused a retired context above, and retirement
            // takes the lock held here.
            debug_assert!(
                !context.is_retired(),
                "an insert into a retired context's cache"
            );
            // At most one leaf is evicted: nothing to allocate for it.
            let evicted = context.cache.insert_leaf(&mut held.index, leaf, guard);
            let mut n = usize::from(evicted.is_some());
            if let Some((t, served)) = translation {
                n +=
                    context
                        .cache
                        .insert_paths(&mut held.index, context.walker(), t, served, guard);
            }
            bump(&counters.evictions, n as u64);
            if let Some((base, size)) = evicted {
                self.unmap_shadow(context, base, size);
                (found, place_in_shadow) =
                    context.shadow().lookup_place_excluded(shadow.l2_ipa_base);
            }
        }
        // A leaf of another size overlapping this one (a table of pages
        // where this is a block, a block around this page) would be
        // replaced by `map` without its records and without the leaf
        // count hearing of it: remove it first, leaves with their records,
        // so `map` finds either nothing or a leaf of the same range (whose
        // record the insert below replaces).
        if self.unmap_other_shapes(context, shadow, found) {
            place_in_shadow = ShadowPlace::ROOT;
        }
        // Record, then check L0's generation, then map (see module docs).
        // From the record on, nothing under this lock removes records
        // without their leaves, and every way out that does not map
        // removes the range's leaves with its records: the record may have
        // replaced that of a leaf another translate installed at the same
        // L2 IPA, and a leaf must never outlive its record.
        let record = ShadowRef {
            context: vmid,
            l2_ipa: shadow.l2_ipa_base,
            size: shadow.size,
        };
        match self.rmap.lock().insert(entry.l1_ipa_base, record) {
            Ok(()) => {}
            // The reverse map is sized for the budget's records (it never
            // grows): a full one refused before changing anything (a record
            // at this L2 IPA would have freed its own slot), so no leaf is
            // there to unmap.
            Err(RmapError::Full) => {
                give_back(place);
                return Install::NoRecord;
            }
            Err(_) => {
                give_back(place);
                return Install::Refused(MapError::UnsupportedSize(shadow.size));
            }
        }
        if self.l0_generation.load(Ordering::Acquire) != l0_generation {
            self.unmap_shadow(context, shadow.l2_ipa_base, shadow.size);
            give_back(place);
            return Install::Raced;
        }
        // Under the context's lock (see `ShadowStore::map_excluded`), from
        // where the lookup above stopped: nothing unmapped since (the
        // unmaps above walked again or dropped the place).
        match context.shadow().map_excluded_at(shadow, place_in_shadow) {
            Ok(MapOutcome::Installed) if place => Install::Done,
            // The leaf was there at the cap check, and this install's own
            // cache eviction took it since: it needs a place now.
            Ok(MapOutcome::Installed) => {
                if self.take_leaf_place() {
                    Install::Done
                } else {
                    self.unmap_shadow(context, shadow.l2_ipa_base, shadow.size);
                    Install::CapTaken
                }
            }
            // Only a leaf of this very range can have been there
            // (`unmap_other_shapes`): one leaf for one, its record
            // replaced by this install's.
            Ok(MapOutcome::AlreadyPresent | MapOutcome::Replaced) => {
                give_back(place);
                Install::Done
            }
            Err(MapError::FramesExhausted { .. }) => {
                self.unmap_shadow(context, shadow.l2_ipa_base, shadow.size);
                give_back(place);
                Install::NoFrames
            }
            Err(e) => {
                self.unmap_shadow(context, shadow.l2_ipa_base, shadow.size);
                give_back(place);
                Install::Refused(e)
            }
        }
    }

    /// Unmaps (with their records) the shadow leaves overlapping
    /// `shadow`'s range other than exactly `shadow` itself: the block
    /// around it, everything under it, or a leaf of the same range that
    /// differs (another page, other permissions or attributes). Nothing
    /// when the range is empty or holds this very leaf: the common page
    /// install costs nothing here. Under the context's lock; `found` is
    /// what the shadow holds at `shadow`'s base (`lookup_excluded` under
    /// this lock, since its last change). Whether it unmapped (tried to).
    fn unmap_other_shapes(
        &self,
        context: &Context<ShadowOf<B>>,
        shadow: &ShadowMapping,
        found: Option<ShadowMapping>,
    ) -> bool {
        let hull = match found {
            // Exactly this leaf (PA, permissions, attributes): whichever L1
            // block its record names, nothing L0 could take back is left
            // that the new record does not also justify.
            Some(leaf) if leaf == *shadow => return false,
            // A block around the new entry: it goes whole.
            Some(leaf) if leaf.size > shadow.size => (leaf.l2_ipa_base, leaf.size),
            // A page is the smallest leaf: nothing lies below one.
            None if shadow.size == PAGE_SIZE => return false,
            // A different leaf of the same range (L1 rewrote a live entry,
            // and a translate that walked the old one installed first): it
            // goes with its record before the new record replaces it.
            // Replacing the record first would leave the old leaf mapped
            // with no record until `map`, so an `l0_unmap` of the old L1
            // page in that window would find nothing and return while L2
            // could still reach the leaf (review 16 F3). Comparing PAs alone
            // is not enough: L0 may back two L1 pages with one PA, one of
            // them read-only (review 17 R17-1).
            // Or smaller leaves at the base, or perhaps elsewhere under the
            // new block (a table whose first entry is invalid).
            _ => (shadow.l2_ipa_base, shadow.size),
        };
        self.unmap_shadow(context, hull.0, hull.1);
        true
    }

    /// Unmaps `[base, base + size)` from a context's shadow and forgets the
    /// reverse-map records. Caller holds the context's lock.
    fn unmap_shadow(&self, context: &Context<ShadowOf<B>>, base: u64, size: u64) -> usize {
        let removed = context.shadow().unmap_range(base, size);
        self.forget_shadow(removed);
        self.rmap
            .lock()
            .remove_shadow_range(context.shadow_vmid(), base, size);
        removed
    }

    /// Frees shadow frames for a fault that found the pool empty: frames
    /// that cleared shadows left detached come back first (bounded work);
    /// only when none are left is the shadow of the context holding the
    /// most frames cleared (and a bounded part of it reclaimed at once).
    /// Each slot is read under the directory lock, but the frame work runs
    /// without it (it would stall context creation and every TLBI).
    fn reclaim_frames(&self, guard: &Guard, counters: &Counters) {
        let mut freed = 0;
        let mut largest: Option<(usize, &Context<ShadowOf<B>>)> = None;
        for slot in 0..self.directory.slots() {
            let Some(context) = self.directory.in_slot(slot, guard) else {
                continue;
            };
            if freed < RECLAIM_ON_PRESSURE {
                freed += context.shadow().reclaim(RECLAIM_ON_PRESSURE - freed);
            }
            let frames = context.shadow().frames_used();
            if frames > 1 && largest.is_none_or(|(f, _)| frames > f) {
                largest = Some((frames, context));
            }
        }
        if let (0, Some((_, context))) = (freed, largest) {
            let _held = context.lock();
            // Recycled since it was found, the shadow and the VMID's
            // records belong to the slot's successor, whose install may be
            // between its record and its map under its own lock: leave
            // them. (Retirement takes this lock, so while it is held a
            // context that is not retired stays the slot's.)
            if !context.is_retired() {
                let cleared = self.clear_shadow(context);
                context.shadow().reclaim(RECLAIM_ON_PRESSURE);
                bump(&counters.evictions, cleared as u64 + 1);
            }
        }
        guard.flush();
    }

    /// Makes room under the shadow-leaf cap for a fault: clears the shadow
    /// of the context holding the most leaves, whichever it is (the
    /// faulting one included), so that a context holding the leaves cannot
    /// starve the others (review 11 R11-5). The caller holds no context
    /// lock: each slot is read under the directory lock, then the victim
    /// is locked alone, and left alone if it was retired meanwhile (its
    /// successor owns the shadow now).
    fn reclaim_leaves(&self, guard: &Guard, counters: &Counters) {
        let mut largest: Option<(usize, &Context<ShadowOf<B>>)> = None;
        for slot in 0..self.directory.slots() {
            let Some(context) = self.directory.in_slot(slot, guard) else {
                continue;
            };
            let leaves = context.shadow().leaves();
            if leaves > 0 && largest.is_none_or(|(n, _)| leaves > n) {
                largest = Some((leaves, context));
            }
        }
        if let Some((_, context)) = largest {
            let _held = context.lock();
            // Retired meanwhile: its slot's shadow is the successor's now.
            // Emptied meanwhile (another fault at the cap picked the same
            // victim, or a TLBI cleared it): nothing to take, and a clear
            // would cost one more whole-VMID TLBI (review 12 R12-5).
            if !context.is_retired() && context.shadow().leaves() > 0 {
                let cleared = self.clear_shadow(context);
                bump(&counters.evictions, cleared as u64);
            }
        }
    }

    /// Apply a trapped TLBI for L1 VMID `vmid` (see the module docs):
    /// [`ipc::l1_vmid`] of L1's VTTBR_EL2 and VTCR_EL2 when it issued the
    /// TLBI, with [`Service::l1_vmid_width`], as the context keys have it.
    /// Returns the number of entries removed (cache and shadow).
    pub fn invalidate(&self, worker: &Worker, vmid: u16, scope: &InvalidateScope) -> u64 {
        // Every entry is 4 KiB aligned, so the pages a range touches hold
        // exactly the entries it overlaps: removal works on those (the page
        // path and the reverse map's deferred removal take page bases; the
        // TLBI decoder only makes such ranges, a caller may not). A range
        // beyond the last page holds no entry (review 53 R53-1).
        let scope = &match *scope {
            InvalidateScope::Ipa(ipa) => {
                let start = ipa.range.start() & !(PAGE_SIZE - 1);
                let end = ipa.range.end().saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
                match IpaRange::new(start, end) {
                    Some(range) => InvalidateScope::Ipa(IpaScope { range, ..ipa }),
                    None => {
                        bump(&worker.counters.invalidations, 1);
                        return 0;
                    }
                }
            }
            whole => whole,
        };
        let guard = self.pin(worker);
        let target = match scope {
            InvalidateScope::AllVmids => None,
            InvalidateScope::Vmid | InvalidateScope::Ipa(_) => Some(vmid),
        };
        let mut removed = 0;
        self.directory.for_vmid(target, &guard, |context| {
            let mut held = context.lock();
            removed += match scope {
                InvalidateScope::Vmid | InvalidateScope::AllVmids => {
                    self.drop_context_contents(context, &mut held, &guard)
                }
                InvalidateScope::Ipa(ipa) => {
                    self.invalidate_range(context, &mut held, ipa.range, ipa.levels, &guard)
                }
            };
            // Last, once nothing in scope is reachable: a translate that
            // read the old generation (even during the removal, when it may
            // still have found an entry in scope) cannot insert anything
            // the scope covers, and one that reads the new value sees none
            // of the removed entries.
            let covered = match scope {
                InvalidateScope::Vmid | InvalidateScope::AllVmids => Covered::All,
                InvalidateScope::Ipa(ipa) => Covered::Range {
                    start: ipa.range.start(),
                    end: ipa.range.end(),
                    tables: ipa.levels == EntryLevels::AnyLevel,
                },
            };
            context.finish_invalidation(&mut held, covered);
        });
        bump(&worker.counters.invalidations, 1);
        bump(&worker.counters.invalidated_entries, removed as u64);
        removed as u64
    }

    fn invalidate_range(
        &self,
        context: &Context<ShadowOf<B>>,
        held: &mut ContextState,
        range: IpaRange,
        levels: EntryLevels,
        guard: &Guard,
    ) -> usize {
        let levels = match levels {
            EntryLevels::AnyLevel => Levels::Any,
            EntryLevels::LeafOnly => Levels::LeafOnly,
        };
        // The TTL hint is not used to narrow the scope: removing every
        // entry that overlaps the range is always permitted, and exact.
        // Every removed leaf overlaps the range, so the range and the
        // removed leaves together form one interval (their hull): one
        // shadow unmap over it removes exactly every shadow piece of a
        // removed L1 block and any shadow leaf overlapping the range.
        let (mut first, mut end) = (range.start(), range.end());
        // A short range (a page TLBI) probes a fixed set of hash buckets,
        // block-index chunks and shadow-table entries, all known from the
        // range: ask for every line first, so that in a large cache their
        // misses overlap instead of following one another.
        // Below PREFETCH_FROM entries the structures sit in the CPU's
        // caches, and asking costs more than it saves.
        if range.len() <= PREFETCH_RANGE && held.index.live_leaves() >= PREFETCH_FROM {
            // The reverse map's first, through its hint: its lock is not
            // taken (a locked instruction, and the context's record classes
            // a lookup: 0-10 ns at 1M entries against the hint, README
            // "Which misses are left serial"; the lock is also the one every
            // fault's install takes). Then the shadow leaf's: its walk down
            // the shadow tree reads upper-level entries that are in the
            // CPU's caches, and its line, asked for last, was the one the
            // call waited for (about 10 ns more at 1M).
            // Not for a range of at most `PENDING_PAGE_REMOVALS` pages that
            // stays so (the context caches no larger leaf to widen it):
            // its records' removal waits (see below).
            let largest_leaf_log2 = context.cache.largest_leaf_log2();
            if end - first > DEFERRED_RMAP_PAGES * PAGE_SIZE
                || largest_leaf_log2 > PAGE_SIZE.trailing_zeros()
            {
                self.rmap_hint.prefetch_shadow_range(
                    context.shadow_vmid(),
                    first,
                    end - first,
                    largest_leaf_log2,
                );
            }
            context.shadow().prefetch(first);
            context
                .cache
                .prefetch_range(&held.index, first, end, levels);
        }
        // Writers of a context's cache slots are serialised by its lock,
        // and a retired context's cache is never written (see `install`):
        // `for_vmid` visits only contexts linked in the directory, under
        // its lock, which retirement also takes, so this one is live.
        debug_assert!(
            !context.is_retired(),
            "an invalidation of a retired context's cache"
        );
        let mut removed = context.cache.invalidate_range(
            &mut held.index,
            range.start(),
            range.end(),
            levels,
            guard,
            |base, size| {
                first = first.min(base);
                end = end.max(base.saturating_add(size));
            },
        );
        removed += if end - first <= DEFERRED_RMAP_PAGES * PAGE_SIZE {
            // A page, or a short range (up to 16 pages, as L1 issues them
            // for a small unmap): the reverse map's records of its pages
            // go at the map's next use (`remove_shadow_pages_later`:
            // nothing can tell the difference), usually the insert of the
            // fault that follows, which reads the same lines for its own
            // record; in a large map they are two of the five random pages
            // a page TLBI would otherwise read (README "Invalidation
            // performance"), and a short range's chunk-by-chunk removal
            // cost ~1,100 instructions for 2 pages (README "Stop 32").
            let removed = context.shadow().unmap_range(first, end - first);
            self.forget_shadow(removed);
            self.rmap.lock().remove_shadow_pages_later(
                context.shadow_vmid(),
                first,
                ((end - first) / PAGE_SIZE) as usize,
            );
            removed
        } else {
            self.unmap_shadow(context, first, end - first)
        };
        removed
    }

    /// L0 changed its mapping of L1 IPAs `range`: every shadow entry built
    /// on them goes. Cost grows with the entries found. Returns how many.
    pub fn l0_unmap(&self, worker: &Worker, range: IpaRange, _change: L0Change) -> u64 {
        // One L0 unmap at a time (as KVM's mmu_lock serialises its MMU
        // notifiers): a record leaves the reverse map in one call's batch
        // before that call unmaps its leaf with the reverse-map lock
        // released, so a second call over the same range could find
        // nothing and return while the leaf still maps L0's old page
        // (review 16 F2, loom `shadow_l0_concurrent`). Taken before any
        // other lock; nothing else takes it.
        let _one_at_a_time = self.l0_unmaps.lock();
        let guard = self.pin(worker);
        // Release: a translate that reads the new number (Acquire, before
        // it composes) sees L0's map change made before this call
        // (`shadow_l0` fails without that Acquire). The pin above does not
        // make it redundant: inside a `Burst` (or any other pin of this
        // worker) it nests and runs no barrier, so nothing else orders a
        // change taken under the burst's pin before the bump (`shadow_l0`'s
        // burst model fails with this RMW `Acquire` only). Nothing needs
        // the Acquire half, nor the Acquire of `install`'s re-check: the
        // reverse-map lock orders that re-check against this bump.
        self.l0_generation.fetch_add(1, Ordering::AcqRel);
        // In batches of `L0_UNMAP_BATCH` records on the stack, so nothing
        // is allocated however much goes, and the reverse-map lock is held
        // for one batch at a time (a context's lock comes before it, so the
        // shadow unmaps cannot happen inside it). Between batches the
        // reverse map changes. The cursor never misses a record present
        // when the first batch began (`ReverseMap::remove_range_batch`).
        // A record inserted since is passed, never removed (so faults
        // refilling one L1 block cannot starve the older records behind
        // them: review 16 F1), and missing it is safe, because its
        // translate either
        // - read the L0 generation after the bump above: it composed with
        //   L0's new map, so its leaf is valid; or
        // - read it before: its record went in after this call's first
        //   batch took the reverse-map lock (it is not present before), so
        //   that lock's hand-over orders the bump before `install`'s
        //   re-check, which then fails, and the translate unmaps its own
        //   range, leaves with records, without mapping anything.
        // A record present at the start whose leaf is being mapped is
        // unmapped after its batch, under its context's lock, so after the
        // `install` holding that lock has mapped it (as before batching).
        let mut cursor = L1RangeCursor::new(range.start(), range.len());
        let mut removed = 0;
        loop {
            let mut batch = ArrayVec::<ShadowRef<u16>, L0_UNMAP_BATCH>::new();
            let more = self.rmap.lock().remove_range_batch(&mut cursor, &mut batch);
            for record in batch {
                let Some(context) = self.directory.by_shadow_vmid(record.context, &guard) else {
                    continue;
                };
                let _held = context.lock();
                // Recycled since it was found: its clear removed the leaf,
                // and the shared shadow is the successor's to change now.
                if context.is_retired() {
                    continue;
                }
                // The record left the reverse map in this batch and the
                // reverse-map lock was released since: an install under
                // this lock may have replaced its leaf meanwhile (this
                // context's own, or, the slot recycled, its successor's:
                // `by_shadow_vmid` finds the slot), with a leaf composed
                // with L0's new map and a record of its own. Only the leaf
                // the record stood for goes: exactly its range, and no live
                // record for it (review 25 R25-2).
                let stood_for = |leaf: ShadowMapping| {
                    leaf.l2_ipa_base == record.l2_ipa && leaf.size == record.size
                };
                if !context
                    .shadow()
                    .lookup_excluded(record.l2_ipa)
                    .is_some_and(stood_for)
                    || self.rmap.lock().has_live(record.context, record.l2_ipa)
                {
                    continue;
                }
                let n = context.shadow().unmap_range(record.l2_ipa, record.size);
                self.forget_shadow(n);
                removed += n;
            }
            if !more {
                break;
            }
        }
        bump(&worker.counters.invalidations, 1);
        bump(&worker.counters.invalidated_entries, removed as u64);
        // No `guard.flush()`: this defers nothing, and flushing would seal
        // whatever earlier calls left in the worker's bag into a queue
        // node on the heap (the bag goes when it fills, or with the worker).
        removed as u64
    }
}

fn l1_translation(hit: &CachedWalk) -> L1Translation {
    L1Translation {
        l2_ipa_base: hit.ipa_base,
        l1_ipa_base: hit.output_base,
        size: hit.size(),
        s2ap: hit.s2ap,
        execute: hit.execute,
        mem_attr: MemAttr::from_bits(hit.mem_attr),
        shareability: hit.shareability,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn worker() -> Worker {
        Worker::new(Collector::new().register(), Arc::new(Counters::default()))
    }

    /// The strides `next_in_run` reports for translates on `pages` (page
    /// numbers) of shadow VMID `vmid`, one per translate.
    fn strides(w: &Worker, vmid: u16, pages: &[i64]) -> Vec<Option<i64>> {
        pages
            .iter()
            .map(|&p| {
                w.next_in_run(vmid, (p as u64).wrapping_mul(PAGE_SIZE))
                    .stride
                    .map(|s| s as i64 / PAGE_SIZE as i64)
            })
            .collect()
    }

    #[test]
    fn a_run_is_two_equal_strides_in_a_row() {
        let w = worker();
        assert_eq!(
            strides(&w, 1, &[10, 11, 12, 13]),
            [None, None, Some(1), Some(1)]
        );
        // Downwards, and one vCPU's share of a range two vCPUs fault in turn.
        assert_eq!(strides(&w, 1, &[40, 39, 38]), [None, None, Some(-1)]);
        assert_eq!(strides(&w, 1, &[100, 102, 104]), [None, None, Some(2)]);
        // A new stride starts a new run (from 104: 1, 1, 2, 2).
        assert_eq!(
            strides(&w, 1, &[105, 106, 108, 110]),
            [None, Some(1), None, Some(2)]
        );
    }

    #[test]
    fn no_run_across_contexts_far_strides_or_repeats() {
        let w = worker();
        // Another context breaks the run, even on the next page.
        assert_eq!(
            strides(&w, 1, &[0, 1, 2]).last().copied().flatten(),
            Some(1)
        );
        assert_eq!(strides(&w, 2, &[3, 4, 5]), [None, None, Some(1)]);
        assert_eq!(strides(&w, 1, &[6, 7]), [None, None]);
        // Strides of more than RUN_STRIDE_PAGES pages, either way.
        let far = RUN_STRIDE_PAGES as i64 + 1;
        assert_eq!(strides(&w, 1, &[0, far, 2 * far]), [None, None, None]);
        assert_eq!(strides(&w, 1, &[0, -far, -2 * far]), [None, None, None]);
        let edge = RUN_STRIDE_PAGES as i64;
        assert_eq!(
            strides(&w, 1, &[0, -edge, -2 * edge]),
            [None, None, Some(-edge)]
        );
        // The same page again (a retried fault) is no run.
        assert_eq!(strides(&w, 1, &[7, 7, 7]), [None, None, None]);
        // Scattered pages.
        assert_eq!(strides(&w, 1, &[3, 900, 41, 7000, 12]), [None; 5]);
    }

    /// Whether each translate on `pages` of VMID 1 finds its page asked
    /// for by the translate before.
    fn asked(w: &Worker, pages: &[i64]) -> Vec<bool> {
        pages
            .iter()
            .map(|&p| w.next_in_run(1, (p as u64).wrapping_mul(PAGE_SIZE)).asked)
            .collect()
    }

    #[test]
    fn a_page_is_asked_for_only_by_the_translate_before_in_its_run() {
        let w = worker();
        // The third translate of the run asks for the fourth's page.
        assert_eq!(
            asked(&w, &[0, 1, 2, 3, 4]),
            [false, false, false, true, true]
        );
        // Off the run: the page asked for (5) is not this one.
        assert_eq!(asked(&w, &[9, 5]), [false, false]);
        // Another context's translate in between: not asked for by it.
        let w = worker();
        assert_eq!(asked(&w, &[0, 1, 2]), [false, false, false]);
        assert!(!w.next_in_run(2, 3 * PAGE_SIZE).asked);
        assert_eq!(asked(&w, &[3]), [false]);
    }
}
