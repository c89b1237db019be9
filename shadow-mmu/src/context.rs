//! Contexts: one per (L1 VMID, VTTBR_EL2 base address, VTCR_EL2 walk
//! fields, descriptor byte order), found by a lock-free hash lookup, at most
//! a configured number of them, each owning one hardware VMID for its
//! shadow stage 2. A full directory recycles a context (a second-chance
//! clock: the first from the hand not used since the hand last passed, at
//! most one lap) instead of failing: the victim is retired under its writer lock, so a
//! translate racing with the recycle can never insert into it, and the
//! lock-free lookup treats a retired context as absent (its shadow is the
//! successor's from then on).
//!
//! The directory's hash table has four places per slot; a key may live in
//! either of two buckets chosen by two hashes keyed from
//! `ServiceConfig::hash_seed`, and goes to the emptier one. A live context
//! is recycled only when every slot is taken (or, with free slots, when
//! both of the new key's buckets are full: with hashes the guest cannot
//! predict, never seen in 20,000 simulated fillings of 8 to 256 slots;
//! then a context of the key's first bucket is recycled).
//!
//! The directory's methods taking an epoch guard check that it is a pin of
//! the directory's own collector (the service's): a pin of another
//! collector would not keep the contexts and cache entries it returns
//! alive. A context's own guard-taking methods are crate-private.
//!
//! The big parts of a context belong to its slot, not to the context: the
//! walk-result cache (its preallocated tables) and the shadow stage 2 (its
//! root, made for every slot up front, and the frames a clear left for
//! later reclamation) pass from a retired context to the next one in the
//! same slot, which has the same shadow VMID and root. Recycling therefore allocates and frees nothing that grows
//! with the cache: the victim's entries die with one flush-number bump, its
//! shadow is detached in O(root entries), its reverse-map records die with
//! their epoch. A reader still holding the retired context never sees its
//! successor's entries: a context stops accepting cache hits from the flush
//! number it was retired at (`Context::cached`).

use alloc::sync::Arc;
use alloc::vec::Vec;

use walker::{Endianness, ExposedFeatures, Stage2Registers, Stage2Walker};

use crate::cache::{CacheIndex, CachedPath, CachedWalk, HeldCache, LeafHasher, WalkCache};
use crate::flat::{FlatKey, FlatMap};
use crate::sync::epoch::{Collector, Guard};
use crate::sync::{AtomicU64, Mutex, MutexGuard, Ordering};
use crate::table::{hash2, Keyed, NodePlace, Table};

/// VTCR_EL2 fields that change what a walk returns: exactly the bits the
/// walker reads ([`walker::VTCR_WALK_FIELDS`]: T0SZ, SL0, SH0, TG0, PS, HA,
/// HD, DS, SL2, HAFT; the walker's unit tests prove that no other bit
/// changes a walker). The others (IRGN0, ORGN0, VS, NSW/NSA, ...) do not.
/// Taken from the walker rather than listed here, so a field the walker
/// starts to read cannot be masked out of the key (review 3 F2: HAFT was).
pub const VTCR_WALK_FIELDS: u64 = walker::VTCR_WALK_FIELDS;

/// VTTBR_EL2 bits that locate the start table: BADDR\[47:1\] (with
/// BADDR\[51:48\] in bits \[5:2\] in the 52-bit formats). The VMID (63:48)
/// travels separately; CnP (bit 0) does not change a walk.
pub const VTTBR_BADDR_FIELDS: u64 = 0x0000_ffff_ffff_fffe;

/// Identifies a context: what a cached walk result depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ContextKey {
    /// L1's VMID for this L2 (16 bits; an 8-bit VMID is zero-extended):
    /// [`ipc::l1_vmid`] of L1's registers, as [`ContextKey::from_ipc`]
    /// computes it, so that TLBIs for the VMID reach the context.
    pub vmid: u16,
    /// VTTBR_EL2 masked to [`VTTBR_BADDR_FIELDS`].
    pub baddr: u64,
    /// VTCR_EL2 masked to [`VTCR_WALK_FIELDS`].
    pub vtcr: u64,
    /// L1's descriptor byte order (SCTLR_EL2.EE).
    pub endianness: Endianness,
}

impl ContextKey {
    /// The key for the registers L1 programmed.
    pub const fn new(vmid: u16, vttbr: u64, vtcr: u64, endianness: Endianness) -> Self {
        ContextKey {
            vmid,
            baddr: vttbr & VTTBR_BADDR_FIELDS,
            vtcr: vtcr & VTCR_WALK_FIELDS,
            endianness,
        }
    }

    /// The key of an ipc translate request (little-endian L1 tables: the
    /// message does not carry SCTLR_EL2.EE). The VMID comes from the
    /// registers ([`ipc::l1_vmid`], with `l1_width` the VMID width L0
    /// exposes to L1), not from `key.vmid`, so it is the VMID L1's TLBIs
    /// name: with VTCR_EL2.VS = 0, VTTBR_EL2\[63:56\] is ignored.
    pub const fn from_ipc(key: &ipc::ContextKey, l1_width: ipc::VmidWidth) -> Self {
        let vmid = ipc::l1_vmid(key.vttbr, key.vtcr, l1_width);
        ContextKey::new(vmid, key.vttbr, key.vtcr, Endianness::Little)
    }

    /// The key's hash under the secret `hash_key`: the guest chooses its
    /// VTTBR_EL2 values, so with a fixed hash it could aim them all at one
    /// bucket.
    #[inline]
    fn hash(&self, hash_key: u64) -> u64 {
        let endian = matches!(self.endianness, Endianness::Big) as u64;
        hash2(
            (self.baddr ^ (u64::from(self.vmid) << 48) ^ endian) ^ hash_key,
            self.vtcr,
        )
    }

    /// The registers a walker for this context decodes.
    pub const fn registers(&self) -> Stage2Registers {
        Stage2Registers {
            vtcr: self.vtcr,
            vttbr: self.baddr | ((self.vmid as u64) << 48),
            endianness: self.endianness,
        }
    }
}

/// What one invalidation covered, as far as racing inserts care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Covered {
    /// Everything (whole-VMID flush, recycle).
    All,
    /// `[start, end)`: leaves only, or table entries too.
    Range {
        /// First IPA.
        start: u64,
        /// First IPA past the range.
        end: u64,
        /// Whether cached table (non-leaf) entries were removed too.
        tables: bool,
    },
}

/// How many recent invalidations a context remembers for racing inserts;
/// an insert that overlapped more than this many is refused.
pub const INVALIDATION_LOG: usize = 16;

/// What an insert depends on: the leaf block it caches, and the region of
/// the start-level descriptor its walk went through (`None` for a cache
/// hit, which read no table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// The leaf block: base and size.
    pub leaf: (u64, u64),
    /// The walk's start-level region: base and size.
    pub walk: Option<(u64, u64)>,
}

impl Covered {
    /// Whether an insert with this footprint may depend on what was
    /// removed: the leaf block overlaps the range, or (for any-level
    /// invalidations) the walk went through a table the range touches.
    fn hits(&self, footprint: &Footprint) -> bool {
        let overlaps = |(base, size): (u64, u64), start: u64, end: u64| {
            base < end && base.saturating_add(size) > start
        };
        match *self {
            Covered::All => true,
            Covered::Range { start, end, tables } => {
                overlaps(footprint.leaf, start, end)
                    || (tables && footprint.walk.is_some_and(|w| overlaps(w, start, end)))
            }
        }
    }
}

/// What a context's writer lock guards.
#[derive(Debug, Default)]
pub struct ContextState {
    pub(crate) index: CacheIndex,
    /// The last invalidations, by generation (slot = generation % N).
    log: [Option<(u64, Covered)>; INVALIDATION_LOG],
}

/// One context. Readers reach it lock-free through the directory; every
/// mutation holds its writer lock. `S` is its shadow stage-2 table.
///
/// Laid out for the hit path (`Service::lookup`): the fields it reads (the
/// key the directory probe compares, `retired_at`, the cache pointer and
/// the output size) come first, and the struct is cache-line aligned, so a
/// hit reads one line of the context (it read three: the walker, the
/// retired flag and the rest lay apart).
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Context<S> {
    key: ContextKey,
    /// The cache's flush number when this context was retired (`u64::MAX`
    /// while it is live): cache entries are this context's only below it.
    /// Also the retired flag ([`Context::is_retired`]): one atomic, so the
    /// hit path checks retirement and the flush number with one load.
    retired_at: AtomicU64,
    /// The slot's cache (shared with the slot's later contexts), with its
    /// leaf table's bucket array here in the hit's line ([`HeldCache`]).
    pub(crate) cache: HeldCache,
    /// The walker's output size (`Stage2Walker::output_size_bits`), beside
    /// the other fields the hit path reads.
    output_size_bits: u32,
    shadow_vmid: u16,
    walker: Stage2Walker,
    /// Bumped by every invalidation that touches the context, under the
    /// writer lock, after the removal. A translate that read an older value
    /// before its lookup or walk must not insert anything an invalidation
    /// since then covered (issue item 7).
    generation: AtomicU64,
    /// The recycling hand's second-chance bit: set when the context is
    /// used (`get_or_create` finding it: every fault and every
    /// `shadow_root`, that is every entry to L2; not `Service::lookup`'s
    /// hit path, which stays read-only), cleared by the hand as it passes.
    /// A hint with no part in any
    /// protocol (it only picks which slot a recycle takes), so it is a
    /// plain core atomic under loom too: the models' schedules do not
    /// branch on it.
    used: core::sync::atomic::AtomicBool,
    state: Mutex<ContextState>,
    /// The slot's shadow (shared with the slot's later contexts).
    shadow: Arc<S>,
}

impl<S: Send + Sync> Keyed for Context<S> {
    type Key = ContextKey;
    fn key(&self) -> ContextKey {
        self.key
    }
}

impl<S> Context<S> {
    pub(crate) fn new(
        key: ContextKey,
        features: &ExposedFeatures,
        shadow_vmid: u16,
        cache: Arc<WalkCache>,
        shadow: Arc<S>,
    ) -> Self {
        let walker = Stage2Walker::new(key.registers(), features);
        Context {
            key,
            retired_at: AtomicU64::new(u64::MAX),
            cache: WalkCache::held(cache),
            output_size_bits: walker.output_size_bits(),
            shadow_vmid,
            walker,
            generation: AtomicU64::new(0),
            used: core::sync::atomic::AtomicBool::new(false),
            state: Mutex::new(ContextState::default()),
            shadow,
        }
    }

    /// The shadow stage-2 table.
    pub fn shadow(&self) -> &S {
        &self.shadow
    }

    /// The key.
    pub fn key(&self) -> ContextKey {
        self.key
    }

    /// The walker for L1's registers.
    pub fn walker(&self) -> &Stage2Walker {
        &self.walker
    }

    /// The hardware VMID L0 uses for this context's shadow stage 2.
    pub fn shadow_vmid(&self) -> u16 {
        self.shadow_vmid
    }

    /// The invalidation generation, read before a walk (Acquire: the walk's
    /// reads of L1 memory come after it).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the context was recycled (nothing may be inserted).
    #[inline]
    pub fn is_retired(&self) -> bool {
        self.retired_at.load(Ordering::Acquire) != u64::MAX
    }

    /// Marks the context used for the recycling hand (second chance).
    /// Stores only when the bit is clear, so a hot context's line is
    /// written once per lap of the hand, not on every hit.
    #[inline]
    pub(crate) fn mark_used(&self) {
        use core::sync::atomic::Ordering::Relaxed;
        if !self.used.load(Relaxed) {
            self.used.store(true, Relaxed);
        }
    }

    /// Whether the context was used since the hand last passed; clears the
    /// bit (the hand passing).
    fn take_used(&self) -> bool {
        self.used.swap(false, core::sync::atomic::Ordering::Relaxed)
    }

    // The methods below take an epoch guard and return or retire nodes
    // with it: the guard must be a pin of the directory's collector (the
    // service's), which nothing here can check (a context cannot hold the
    // collector: a retired context's node waits in the collector's own
    // garbage, and would keep it alive for ever). So they are crate-private
    // (review 11 R11-2); only the loom models, which drive a directory and
    // its contexts directly, see them (`cfg(loom)`: model builds only).

    /// The cached leaf that translates `ipa`, if any. Lock-free. Once the
    /// context is retired (and its slot's cache flushed for a successor),
    /// nothing: see `WalkCache::lookup`. `guard`: a pin of the directory's
    /// collector.
    ///
    /// A leaf block can be larger than the output size (a 512 GiB level-0
    /// block with VTCR_EL2.PS 32 bits): only its IPAs whose output address
    /// is within the output size translate, the rest take an Address size
    /// fault. So a hit is re-checked as AArch64.S2Walk's TLB-hit path
    /// re-checks `AArch64.OAOutOfRange(StageOA(ipa))`, and an IPA beyond
    /// goes to a walk, which reports the fault (review 31 R31-1).
    ///
    /// A block no larger than the output size needs no check: it is
    /// aligned to its size, which divides 2^`output_size_bits`, and its
    /// base is inside (the walk that cached it translated an IPA of the
    /// block to an output address inside), so the whole block is. Only a
    /// larger block's IPAs are checked, one by one.
    #[cfg(any(test, loom))]
    #[inline]
    pub(crate) fn cached<'g>(&self, ipa: u64, guard: &'g Guard) -> Option<&'g CachedWalk> {
        self.cached_with(ipa, self.cache.hasher(), guard)
    }

    /// [`Context::cached`] with the cache's leaf hash given: the
    /// directory's copy, which the hit path reads before the context
    /// (`Directory::cached`).
    #[inline]
    fn cached_with<'g>(
        &self,
        ipa: u64,
        hasher: &LeafHasher,
        guard: &'g Guard,
    ) -> Option<&'g CachedWalk> {
        self.cached_hashed_with(ipa, hasher, guard)
            .map(|(hit, _)| hit)
    }

    /// [`Context::cached`], and the hit's leaf hash (for
    /// `WalkCache::still_holds`, see [`WalkCache::lookup`]).
    #[inline]
    pub(crate) fn cached_hashed<'g>(
        &self,
        ipa: u64,
        guard: &'g Guard,
    ) -> Option<(&'g CachedWalk, u64)> {
        self.cached_hashed_with(ipa, self.cache.hasher(), guard)
    }

    #[inline]
    fn cached_hashed_with<'g>(
        &self,
        ipa: u64,
        hasher: &LeafHasher,
        guard: &'g Guard,
    ) -> Option<(&'g CachedWalk, u64)> {
        let oa_bits = self.output_size_bits;
        WalkCache::lookup(&self.cache, ipa, &self.retired_at, hasher, guard).filter(|(hit, _)| {
            debug_assert_eq!(
                hit.output_base >> oa_bits,
                0,
                "a cached leaf's base is inside"
            );
            u32::from(hit.size_log2) <= oa_bits || hit.output_address(ipa) >> oa_bits == 0
        })
    }

    /// [`Context::cached`], for the loom models.
    #[cfg(loom)]
    pub fn lookup<'g>(&self, ipa: u64, guard: &'g Guard) -> Option<&'g CachedWalk> {
        self.cached(ipa, guard)
    }

    /// The deepest cached intermediate path for `ipa`, if any. Lock-free,
    /// and like [`Context::cached`] never a successor's.
    pub(crate) fn cached_path<'g>(&self, ipa: u64, guard: &'g Guard) -> Option<&'g CachedPath> {
        self.cache
            .lookup_path(&self.walker, ipa, &self.retired_at, guard)
    }

    /// [`Context::cached_path`], for the loom models.
    #[cfg(loom)]
    pub fn lookup_path<'g>(&self, ipa: u64, guard: &'g Guard) -> Option<&'g CachedPath> {
        self.cached_path(ipa, guard)
    }

    /// The writer lock: every insert into and removal from this context
    /// (cache, shadow, reverse-map records) holds it, and so does its
    /// retirement. Lookups never take it. Writers of a context's cache
    /// slots are serialised by this lock, and a retired context's cache is
    /// never written (the slot's cache is its successor's by then, written
    /// under the successor's lock): the cache tables write their slots by
    /// a load and a store (`table::replace`), which two writers would
    /// break.
    pub fn lock(&self) -> MutexGuard<'_, ContextState> {
        self.state.lock()
    }

    /// Caches a walk's leaf (for the loom models; the service inserts
    /// through the cache itself); returns the (base, size) of the live
    /// leaf a full bucket gave up for it, if any. Caller holds the lock
    /// (`held`).
    ///
    /// # Panics
    ///
    /// If the context is retired. This skips `may_insert`, and writers of
    /// a context's cache slots are serialised by its lock only while a
    /// retired context's cache is never written (its slot's cache is the
    /// successor's). A plain `assert!`: the models run in release.
    #[cfg(loom)]
    pub fn cache_leaf(
        &self,
        held: &mut ContextState,
        leaf: CachedWalk,
        guard: &Guard,
    ) -> Option<(u64, u64)> {
        assert!(!self.is_retired(), "an insert into a retired context");
        self.cache.insert_leaf(&mut held.index, leaf, guard)
    }

    /// The leaf table's buckets for a 4 KiB leaf at `ipa`: its first and,
    /// if it has one other than the first, its second (for the loom
    /// models, which choose pages by where their leaves go).
    #[cfg(loom)]
    pub fn page_buckets(&self, ipa: u64) -> (usize, Option<usize>) {
        self.cache.page_buckets(ipa)
    }

    /// Caches the table descriptors of a successful walk `t` (made with
    /// this context's walker) that are not cached yet, as the service's
    /// install does, for the loom models. Returns how many live entries
    /// were evicted. Caller holds the lock (`held`).
    ///
    /// # Panics
    ///
    /// If the context is retired, as [`Context::cache_leaf`].
    #[cfg(loom)]
    pub fn cache_paths(
        &self,
        held: &mut ContextState,
        t: &walker::Translation,
        guard: &Guard,
    ) -> usize {
        assert!(!self.is_retired(), "an insert into a retired context");
        self.cache
            .insert_paths(&mut held.index, &self.walker, t, None, guard)
    }

    /// Removes the cached leaves overlapping `[start, end)` as a leaf-only
    /// invalidation does (`WalkCache::invalidate_range`), for the loom
    /// models, which need a bucket place emptied under a reader. Returns
    /// how many went. Caller holds the lock (`held`).
    #[cfg(loom)]
    pub fn invalidate_cached_leaves(
        &self,
        held: &mut ContextState,
        start: u64,
        end: u64,
        guard: &Guard,
    ) -> usize {
        self.cache.invalidate_range(
            &mut held.index,
            start,
            end,
            crate::cache::Levels::LeafOnly,
            guard,
            |_, _| {},
        )
    }

    /// Drops every cached entry of the slot's cache at once (a whole-VMID
    /// flush, or a retirement before the slot passes on): one flush-number
    /// bump. Returns how many entries were live. Caller holds the lock.
    #[cfg(not(loom))]
    pub(crate) fn flush_cache(&self, held: &mut ContextState, guard: &Guard) -> usize {
        self.cache.flush(&mut held.index, guard)
    }

    /// Drops every cached entry of the slot's cache at once (see the
    /// non-loom build; public for the loom models).
    #[cfg(loom)]
    pub fn flush_cache(&self, held: &mut ContextState, guard: &Guard) -> usize {
        self.cache.flush(&mut held.index, guard)
    }

    /// Ends an invalidation that removed `covered`, once nothing in it is
    /// reachable: records it and publishes the new generation. Caller holds
    /// the lock.
    pub(crate) fn finish_invalidation(&self, held: &mut ContextState, covered: Covered) {
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        held.log[(generation % INVALIDATION_LOG as u64) as usize] = Some((generation, covered));
        // Release: a translate that reads this value sees every removal.
        self.generation.store(generation, Ordering::Release);
    }

    /// Whether an insert with `footprint`, from a translate that read the
    /// generation `generation` before its lookup or walk, may go ahead: no
    /// invalidation since then covered anything it depends on (and the
    /// context is not retired). Caller holds the lock.
    pub(crate) fn may_insert(
        &self,
        held: &ContextState,
        generation: u64,
        footprint: &Footprint,
    ) -> bool {
        // Not only the generation check's backstop: a translate that found
        // this context before its retirement and read the generation after
        // it saw the retirement's bump, so only this refuses it. The slot's
        // cache and shadow are the successor's by then, written under the
        // successor's lock: an insert would give the successor this
        // context's walk and be a second writer of the cache's slots
        // (`shadow_retired_insert` fails without this check).
        if self.is_retired() {
            return false;
        }
        let now = self.generation.load(Ordering::Acquire);
        if now.wrapping_sub(generation) > INVALIDATION_LOG as u64 {
            return false;
        }
        (generation + 1..=now).all(|g| {
            match held.log[(g % INVALIDATION_LOG as u64) as usize] {
                Some((logged, covered)) if logged == g => !covered.hits(footprint),
                // Overwritten or missing: assume the worst.
                _ => false,
            }
        })
    }

    /// Retires the context: no insert from now on, and (once the caller
    /// flushes the slot's cache) no cache hit either. Caller holds the lock.
    fn retire(&self, held: &mut ContextState) {
        // Retires the context (`is_retired`), and before the flush that
        // follows (Release there orders this store before the new flush
        // number): a reader that sees the new number sees this bound and
        // takes no hit. Never `u64::MAX` (the live value): the flush
        // number would need 2^64 flushes.
        self.retired_at
            .store(self.cache.flush_number(), Ordering::Release);
        self.finish_invalidation(held, Covered::All);
    }
}

/// Contexts and their slot's cache are shared by every thread that
/// translates or invalidates: outside loom they must be `Send + Sync` (under
/// loom the cache is not, see `Directory::get_or_create`).
#[cfg(not(loom))]
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<WalkCache>();
    shared::<Context<()>>();
};

/// Capacities derived from the memory budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Most contexts alive at once (each owns one shadow VMID).
    pub contexts: usize,
    /// Leaf-entry slots per context.
    pub leaves_per_context: usize,
    /// Intermediate-entry slots per context.
    pub paths_per_context: usize,
}

/// The host's VMID space as the shadows must respect it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostVmids {
    /// Width of the host's VMIDs: hv's own VTCR_EL2.VS (16 bits only with
    /// FEAT_VMID16 and VS = 1). TLB entries of VMIDs beyond it alias.
    pub width: ipc::VmidWidth,
    /// The VMID hv runs L1 with. No shadow may have it (nor VMID 0): a
    /// shadow sharing a VMID with L1 shares its TLB entries, and L2 could
    /// hit L1's translations.
    pub l1_vmid: u16,
}

/// Why the shadow VMIDs `first..first + contexts` cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShadowVmidError {
    /// The range includes VMID 0.
    IncludesVmidZero,
    /// The range runs past the host's VMID width.
    BeyondHostWidth {
        /// One past the last shadow VMID the configuration asks for.
        end: u32,
        /// The host's VMID width in bits.
        width_bits: u32,
    },
    /// L1's own VMID lies beyond the host's VMID width.
    L1VmidBeyondHostWidth {
        /// L1's VMID.
        l1_vmid: u16,
    },
    /// The range includes L1's own VMID.
    IncludesL1Vmid {
        /// L1's VMID.
        l1_vmid: u16,
    },
}

impl core::fmt::Display for ShadowVmidError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ShadowVmidError::IncludesVmidZero => write!(f, "the shadow VMIDs include VMID 0"),
            ShadowVmidError::BeyondHostWidth { end, width_bits } => write!(
                f,
                "the shadow VMIDs end at {end:#x}, beyond the host's {width_bits}-bit VMIDs"
            ),
            ShadowVmidError::L1VmidBeyondHostWidth { l1_vmid } => {
                write!(f, "L1's VMID {l1_vmid:#x} is beyond the host's VMID width")
            }
            ShadowVmidError::IncludesL1Vmid { l1_vmid } => {
                write!(f, "the shadow VMIDs include L1's VMID {l1_vmid:#x}")
            }
        }
    }
}

/// The hardware VMIDs of the shadows, one per context slot: `first ..
/// first + len`, validated against the host's VMIDs when made, so slot
/// arithmetic never wraps into VMID 0, L1's VMID or past the host's width.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShadowVmids {
    first: u16,
    len: u16,
}

impl ShadowVmids {
    /// The VMIDs `first..first + contexts.max(1)` (a directory has at
    /// least one slot), if they fit the host's width and exclude VMID 0
    /// and L1's VMID.
    pub fn new(first: u16, contexts: usize, host: HostVmids) -> Result<Self, ShadowVmidError> {
        let limit = host.width.count();
        if u32::from(host.l1_vmid) >= limit {
            return Err(ShadowVmidError::L1VmidBeyondHostWidth {
                l1_vmid: host.l1_vmid,
            });
        }
        if first == 0 {
            return Err(ShadowVmidError::IncludesVmidZero);
        }
        // Saturating: a count beyond u32 is reported as ending at u32::MAX.
        let slots = u32::try_from(contexts.max(1)).unwrap_or(u32::MAX);
        let end = u32::from(first).saturating_add(slots);
        if end > limit {
            return Err(ShadowVmidError::BeyondHostWidth {
                end,
                width_bits: host.width.bits(),
            });
        }
        if (u32::from(first)..end).contains(&u32::from(host.l1_vmid)) {
            return Err(ShadowVmidError::IncludesL1Vmid {
                l1_vmid: host.l1_vmid,
            });
        }
        // end <= 65536 and first >= 1, so the count fits 16 bits.
        let len = u16::try_from(slots).map_err(|_| ShadowVmidError::BeyondHostWidth {
            end,
            width_bits: host.width.bits(),
        })?;
        Ok(ShadowVmids { first, len })
    }

    /// The first VMID.
    pub const fn first(&self) -> u16 {
        self.first
    }

    /// How many VMIDs (context slots).
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Never empty (at least one slot); for clippy's `len` convention.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The VMID of `slot`, if the slot exists.
    pub fn of_slot(&self, slot: usize) -> Option<u16> {
        let slot = u16::try_from(slot).ok().filter(|s| *s < self.len)?;
        self.first.checked_add(slot)
    }

    /// The slot owning `vmid`, if one does.
    pub fn slot_of(&self, vmid: u16) -> Option<usize> {
        let slot = vmid.checked_sub(self.first)?;
        (slot < self.len).then_some(usize::from(slot))
    }
}

/// "No slot" in the VMID lists.
const NO_SLOT: usize = usize::MAX;

/// An L1 VMID as the key of the directory's VMID index (`u32::MAX`: a
/// vacant slot of the map).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct VmidKey(u32);

impl FlatKey for VmidKey {
    fn vacant() -> Self {
        VmidKey(u32::MAX)
    }
    fn is_vacant(&self) -> bool {
        self.0 == u32::MAX
    }
    fn flat_word(&self) -> u64 {
        u64::from(self.0)
    }
}

/// The directory's VMID index: L1 VMID -> first slot of its contexts.
pub(crate) type VmidIndex = FlatMap<VmidKey, usize>;

/// What the directory's writer lock guards. Everything is allocated whole
/// when the directory is made (sized for its slots), so creating and
/// recycling contexts allocates only the context's node and, for a slot's
/// first context, its cache.
#[derive(Debug)]
struct DirectoryState<S> {
    /// Slot i owns shadow VMID `vmids.of_slot(i)`; the key of its context
    /// and the context's place in the directory's table, where a TLBI
    /// reaches it without hashing the key and probing
    /// (`Directory::for_vmid`).
    slots: Vec<Option<(ContextKey, NodePlace)>>,
    /// Slot i's shadow: made up front ([`Directory::reserve_shadows`]) so
    /// that a new context never waits for a root frame (else for its first
    /// context), and passed on to every later one.
    shadows: Vec<Option<Arc<S>>>,
    /// Slot i's cache, made for its first context and passed on to every
    /// later one.
    caches: Vec<Option<Arc<WalkCache>>>,
    /// Contexts alive (slots taken).
    live: usize,
    /// L1 VMID -> first slot of its contexts (TLBIs touch only these); the
    /// others follow through `vmid_links`. Sized for every slot (a VMID
    /// per context at most): it never grows.
    by_vmid: VmidIndex,
    /// Slot i's (previous, next) slot of the same L1 VMID, or [`NO_SLOT`].
    vmid_links: Vec<(usize, usize)>,
    /// Next slot the recycling hand looks at (second chance).
    hand: usize,
}

impl<S> DirectoryState<S> {
    /// Links `slot` into its L1 VMID's list.
    fn link_vmid(&mut self, vmid: u16, slot: usize) {
        let next = self
            .by_vmid
            .insert(VmidKey(vmid.into()), slot)
            .unwrap_or(NO_SLOT);
        if next != NO_SLOT {
            self.vmid_links[next].0 = slot;
        }
        self.vmid_links[slot] = (NO_SLOT, next);
    }

    /// Unlinks `slot` from its L1 VMID's list.
    fn unlink_vmid(&mut self, vmid: u16, slot: usize) {
        let (prev, next) = core::mem::replace(&mut self.vmid_links[slot], (NO_SLOT, NO_SLOT));
        if next != NO_SLOT {
            self.vmid_links[next].0 = prev;
        }
        if prev != NO_SLOT {
            self.vmid_links[prev].1 = next;
        } else if next != NO_SLOT {
            self.by_vmid.insert(VmidKey(vmid.into()), next);
        } else {
            self.by_vmid.remove(&VmidKey(vmid.into()));
        }
    }
}

/// What creating a context on demand did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    /// The context existed.
    Found,
    /// A free slot was used.
    New,
    /// A context was recycled to make room; its shadow VMID must be
    /// invalidated in hardware before reuse (done by the caller's hook).
    Recycled {
        /// The victim's key.
        victim: Option<ContextKey>,
    },
}

/// Places in the directory's hash table per slot: with two choices per key
/// and the emptier one taken, both buckets of a key are full with a
/// negligible chance (see the module documentation).
pub(crate) const DIRECTORY_PLACES_PER_SLOT: usize = 4;

/// The set of contexts. See the module documentation.
///
/// What the hit path reads (`Directory::cached` and the service's pin
/// check) is the first cache line: the hash keys, the leaf hasher, the
/// collector and the table's bucket array (which [`Table`] puts first).
/// Those lay on four lines, up to 0x300 bytes apart.
#[derive(Debug)]
#[repr(C, align(64))]
pub struct Directory<S: Send + Sync> {
    /// The secret keys of a context key's two bucket hashes.
    hash_keys: [u64; 2],
    /// Every slot's cache's leaf hash (`WalkCache::hasher`: one key, one
    /// capacity), for the hit path to hash before it reads a context.
    leaf_hasher: LeafHasher,
    /// The epoch collector every guard passed in must belong to.
    collector: Collector,
    table: Table<Context<S>>,
    state: Mutex<DirectoryState<S>>,
    vmids: ShadowVmids,
    capacity: Capacity,
    features: ExposedFeatures,
    /// The secret key of every slot's cache hashes (`WalkCache::new`).
    cache_key: u64,
}

/// # Panics
///
/// If `guard` is not a pin of `collector`: nodes retired through
/// `collector` are freed once its own participants unpin, whatever another
/// collector's pins say (a use after free from safe code otherwise).
#[inline]
fn check_pin(collector: &Collector, guard: &Guard) {
    assert!(
        guard.collector() == Some(collector),
        "a context directory was given a pin of another epoch collector"
    );
}

/// A well-mixed 64-bit word from `state` (splitmix64's output function).
pub(crate) const fn mix(state: u64) -> u64 {
    let z = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<S: Send + Sync + 'static> Directory<S> {
    /// A directory of at most one context per shadow VMID in `vmids` (made
    /// for `capacity.contexts`), each with the cache sizes of `capacity`.
    /// `hash_seed` keys the bucket hashes (secret entropy:
    /// `ServiceConfig::hash_seed`); `collector` is the epoch collector of
    /// every guard the directory and its contexts will be given.
    pub fn new(
        features: ExposedFeatures,
        capacity: Capacity,
        vmids: ShadowVmids,
        hash_seed: u64,
        collector: &Collector,
    ) -> Self {
        let slots = vmids.len();
        let cache_key = mix(hash_seed ^ 0x1319_8a2e_0370_7344);
        Directory {
            table: Table::with_capacity(slots * DIRECTORY_PLACES_PER_SLOT),
            state: Mutex::new(DirectoryState {
                slots: alloc::vec![None; slots],
                shadows: (0..slots).map(|_| None).collect(),
                caches: (0..slots).map(|_| None).collect(),
                live: 0,
                by_vmid: VmidIndex::with_capacity(slots),
                vmid_links: alloc::vec![(NO_SLOT, NO_SLOT); slots],
                hand: 0,
            }),
            vmids,
            capacity,
            features,
            hash_keys: [mix(hash_seed), mix(hash_seed ^ 0x243f_6a88_85a3_08d3)],
            cache_key,
            leaf_hasher: LeafHasher::new(capacity.leaves_per_context, cache_key),
            collector: collector.clone(),
        }
    }

    /// The epoch collector the directory's guards must come from.
    #[inline]
    pub fn collector(&self) -> &Collector {
        &self.collector
    }

    /// The two bucket hashes of `key`.
    #[inline]
    fn hashes(&self, key: &ContextKey) -> [u64; 2] {
        self.hash_keys.map(|k| key.hash(k))
    }

    /// The two buckets `key` may live in (for tests and models that need a
    /// context in its second bucket).
    #[doc(hidden)]
    pub fn candidate_buckets(&self, key: &ContextKey) -> [usize; 2] {
        self.hashes(key).map(|h| self.table.bucket_index(h))
    }

    /// The shadow VMIDs, one per slot.
    pub fn vmids(&self) -> ShadowVmids {
        self.vmids
    }

    /// Makes every slot's shadow now (its root frame, reserved for the
    /// slot's lifetime), so that a context created later never competes
    /// with other contexts' tables for a root. Slots whose `make_shadow`
    /// fails (a pool smaller than the budget says) get theirs when first
    /// used. Returns how many slots have a shadow.
    pub fn reserve_shadows(&self, mut make_shadow: impl FnMut(u16) -> Option<S>) -> usize {
        let mut state = self.state.lock();
        let mut reserved = 0;
        for (slot, shadow) in state.shadows.iter_mut().enumerate() {
            if let (None, Some(vmid)) = (&shadow, self.vmids.of_slot(slot)) {
                *shadow = make_shadow(vmid).map(Arc::new);
            }
            reserved += usize::from(shadow.is_some());
        }
        reserved
    }

    /// The live context for `key`, if it exists. Lock-free. A context
    /// retired by a recycle (its slot's shadow is about to pass on, or has)
    /// is not returned, even while it is still linked.
    ///
    /// # Panics
    ///
    /// If `guard` is not a pin of the directory's collector.
    ///
    /// The context borrows the directory as well as the guard: a guard
    /// keeps retired contexts alive, but dropping the directory frees every
    /// context at once (review 50 R50-1), so none can outlive it:
    ///
    /// ```compile_fail,E0515
    /// use shadow_mmu::context::{Context, ContextKey, Directory};
    /// use shadow_mmu::service::Guard;
    ///
    /// fn outlive<'g>(
    ///     directory: Directory<()>,
    ///     key: &ContextKey,
    ///     guard: &'g Guard,
    /// ) -> Option<&'g Context<()>> {
    ///     directory.get(key, guard)
    /// }
    /// ```
    pub fn get<'g>(&'g self, key: &ContextKey, guard: &'g Guard) -> Option<&'g Context<S>> {
        check_pin(&self.collector, guard);
        self.find(key, guard)
    }

    /// [`Directory::get`] for the service, whose pins are its own.
    #[inline]
    pub(crate) fn find<'g>(&self, key: &ContextKey, guard: &'g Guard) -> Option<&'g Context<S>> {
        self.linked(key, guard).filter(|c| !c.is_retired())
    }

    /// The cached leaf of `key`'s live context that translates `ipa`, if
    /// any: [`Directory::find`] and [`Context::cached`] in one, for the
    /// service's hit path (`Service::lookup`), whose pins are its own.
    ///
    /// The context is taken linked, retired or not: `Context::cached`
    /// refuses a retired one by itself. Its flush-number load comes first
    /// (Acquire) and `retired_at` after it, so a reader that may see the
    /// successor's entries (the flush number the retirement bumped) sees
    /// `retired_at` and takes none; one that saw the older number takes
    /// only entries stamped with it, the victim's own (and no invalidation
    /// can have removed them unseen: invalidations visit contexts under
    /// the directory lock, which the whole retirement holds). So the
    /// separate retired check of `find` would only repeat that one.
    #[inline]
    pub(crate) fn cached<'g>(
        &self,
        key: &ContextKey,
        ipa: u64,
        guard: &'g Guard,
    ) -> Option<&'g CachedWalk> {
        self.linked(key, guard)?
            .cached_with(ipa, &self.leaf_hasher, guard)
    }

    /// The context linked for `key`, retired or not.
    #[inline]
    fn linked<'g>(&self, key: &ContextKey, guard: &'g Guard) -> Option<&'g Context<S>> {
        self.table.get_either(*key, self.hashes(key), guard)
    }

    /// The context for `key`, creating it (and recycling another when the
    /// directory is full) if needed. `on_retire` runs under the victim's
    /// writer lock, after it is retired and before its VMID is reused (drop
    /// its shadow entries and invalidate its hardware VMID there).
    /// `make_shadow` builds the shadow table for a slot's VMID if
    /// [`Directory::reserve_shadows`] could not (later contexts of the slot
    /// take it over, after `reassigned`); `None` (no frame for a root table)
    /// leaves the context uncreated.
    ///
    /// A context found retired (a recycle is under way: its shadow is the
    /// slot's successor's from `reassigned` on) counts as absent: the call
    /// waits for the directory lock, that is for the recycle to finish, and
    /// creates the key's context anew.
    ///
    /// # Panics
    ///
    /// If `guard` is not a pin of the directory's collector.
    ///
    /// As with [`Directory::get`], the context cannot outlive the directory:
    ///
    /// ```compile_fail,E0515
    /// use shadow_mmu::context::{Context, ContextKey, Directory};
    /// use shadow_mmu::service::Guard;
    ///
    /// fn outlive<'g>(
    ///     directory: Directory<()>,
    ///     key: &ContextKey,
    ///     guard: &'g Guard,
    /// ) -> Option<&'g Context<()>> {
    ///     directory
    ///         .get_or_create(key, guard, |_, _| {}, |_| Some(()), |_| {})
    ///         .map(|(context, _)| context)
    /// }
    /// ```
    #[inline]
    pub fn get_or_create<'g>(
        &'g self,
        key: &ContextKey,
        guard: &'g Guard,
        on_retire: impl FnOnce(&Context<S>, &mut ContextState),
        make_shadow: impl FnOnce(u16) -> Option<S>,
        reassigned: impl FnOnce(&S),
    ) -> Option<(&'g Context<S>, Created)> {
        check_pin(&self.collector, guard);
        self.get_or_create_pinned(key, guard, on_retire, make_shadow, reassigned)
    }

    /// [`Directory::get_or_create`] for a caller that has already checked
    /// that `guard` is a pin of this directory's collector (the service:
    /// `Service::pin` checks its worker's collector, which is the
    /// directory's). The check costs a fault about 13 instructions; a
    /// guard of another collector here would let a context be freed under
    /// it, so only callers that made the guard themselves may use this.
    #[inline]
    pub(crate) fn get_or_create_pinned<'g>(
        &'g self,
        key: &ContextKey,
        guard: &'g Guard,
        on_retire: impl FnOnce(&Context<S>, &mut ContextState),
        make_shadow: impl FnOnce(u16) -> Option<S>,
        reassigned: impl FnOnce(&S),
    ) -> Option<(&'g Context<S>, Created)> {
        debug_assert!(guard.collector() == Some(&self.collector));
        if let Some(context) = self.find(key, guard) {
            context.mark_used();
            return Some((context, Created::Found));
        }
        self.create(key, guard, on_retire, make_shadow, reassigned)
    }

    /// [`Directory::get_or_create`] once the lock-free lookup missed: out
    /// of line, so that the lookup, which nearly every fault ends with,
    /// inlines into the caller without this path's register saves (about
    /// 30 instructions a fault).
    #[cold]
    #[inline(never)]
    fn create<'g>(
        &'g self,
        key: &ContextKey,
        guard: &'g Guard,
        on_retire: impl FnOnce(&Context<S>, &mut ContextState),
        make_shadow: impl FnOnce(u16) -> Option<S>,
        reassigned: impl FnOnce(&S),
    ) -> Option<(&'g Context<S>, Created)> {
        let mut state = self.state.lock();
        // Another thread may have created it meanwhile. (Under the lock no
        // retired context is linked: retirement unlinks before unlocking.)
        if let Some(context) = self.linked(key, guard) {
            context.mark_used();
            return Some((context, Created::Found));
        }
        let hashes = self.hashes(key);
        // A free slot, unless both of the key's buckets are full: then a
        // context of its first bucket must go, whatever the slot count;
        // with no free slot, the second-chance hand picks the victim.
        let bucket_victim = if self.table.has_room(hashes, guard) {
            None
        } else {
            self.table
                .full_bucket_victim(hashes[0], guard)
                .and_then(|victim| self.linked(&victim, guard))
                .and_then(|victim| self.vmids.slot_of(victim.shadow_vmid()))
        };
        let free = state.slots.iter().position(Option::is_none);
        let (slot, created) = match (bucket_victim, free) {
            (None, Some(slot)) => (slot, Created::New),
            _ => {
                let slot = match bucket_victim {
                    Some(slot) => slot,
                    None => self.second_chance(&mut state, guard),
                };
                let victim = self.retire_slot(&mut state, slot, guard, on_retire);
                (slot, Created::Recycled { victim })
            }
        };
        // Every slot has a VMID (the slots are the VMIDs).
        let shadow_vmid = self.vmids.of_slot(slot)?;
        let shadow = match &state.shadows[slot] {
            Some(shadow) => shadow.clone(),
            None => {
                let shadow = Arc::new(make_shadow(shadow_vmid)?);
                state.shadows[slot] = Some(shadow.clone());
                shadow
            }
        };
        // The slot's cache exists once it had a context: this one succeeds
        // it, in the cache and in the shadow.
        let cache = match &state.caches[slot] {
            Some(cache) => {
                reassigned(&shadow);
                cache.clone()
            }
            None => {
                // Under loom the cache's lock-free nodes carry a liveness
                // marker (`sync::Liveness`) holding a loom `UnsafeCell`,
                // `!Sync` like std's, so `WalkCache` is neither `Send` nor
                // `Sync` there. loom runs every model thread on one OS
                // thread (its `spawn` asks for no `Send`), so sharing it is
                // sound; in every other build the marker is zero-sized and
                // `WalkCache` is `Send + Sync` (asserted beside `Capacity`).
                #[cfg_attr(loom, allow(clippy::arc_with_non_send_sync))]
                let cache = Arc::new(WalkCache::new(
                    self.capacity.leaves_per_context,
                    self.capacity.paths_per_context,
                    self.cache_key,
                ));
                state.caches[slot] = Some(cache.clone());
                cache
            }
        };
        let context = Context::new(*key, &self.features, shadow_vmid, cache, shadow);
        // One of the two buckets has a free place: checked above, or the
        // bucket victim just left the first one. Should neither have one
        // after all, the context is simply not created (the slot stays
        // free; the caller retries).
        let (context, place) = self.table.insert_either(context, hashes, guard).ok()?;
        state.slots[slot] = Some((*key, place));
        state.live += 1;
        state.link_vmid(key.vmid, slot);
        Some((context, created))
    }

    /// The context owning shadow VMID `shadow_vmid`, if any.
    pub(crate) fn by_shadow_vmid<'g>(
        &self,
        shadow_vmid: u16,
        guard: &'g Guard,
    ) -> Option<&'g Context<S>> {
        self.in_slot(self.vmids.slot_of(shadow_vmid)?, guard)
    }

    /// The context in slot `slot` (shadow VMID `vmids().of_slot(slot)`), if any.
    /// The directory lock is held only to read the slot: the caller works
    /// on the context without it, and must expect it to be retired (and the
    /// slot to have a successor) meanwhile.
    pub(crate) fn in_slot<'g>(&self, slot: usize, guard: &'g Guard) -> Option<&'g Context<S>> {
        let (key, _) = self.state.lock().slots.get(slot).copied().flatten()?;
        self.find(&key, guard)
    }

    /// How many context slots there are (the most contexts alive at once).
    pub fn slots(&self) -> usize {
        self.vmids.len()
    }

    /// The slot the recycling hand takes when every slot is taken: the
    /// first from the hand on whose context was not used since the hand
    /// last passed (a clock, "second chance"), clearing the bits of those
    /// it skips. At most one lap: if every context was used, the lap has
    /// cleared every bit and the hand takes the slot it started from. So a
    /// recycle inspects at most `slots` slots (one hash probe each, under
    /// the directory lock it holds anyway), never waits, and an exited
    /// VM's context goes before those of VMs still running (review 12
    /// R12-2: a plain round robin took running VMs' contexts in turn, each
    /// of which recycled the next on its next entry: a cascade of up to
    /// `slots` recycles for one new VM).
    fn second_chance(&self, state: &mut DirectoryState<S>, guard: &Guard) -> usize {
        let n = state.slots.len();
        let start = state.hand % n;
        let mut slot = start;
        for _ in 0..n {
            let used = state.slots[slot]
                .and_then(|(key, _)| self.linked(&key, guard))
                .is_some_and(|context| context.take_used());
            if !used {
                break;
            }
            slot = (slot + 1) % n;
        }
        state.hand = (slot + 1) % n;
        slot
    }

    /// Retires the context in `slot` (if any) and frees the slot; returns
    /// the victim's key.
    fn retire_slot(
        &self,
        state: &mut DirectoryState<S>,
        slot: usize,
        guard: &Guard,
        on_retire: impl FnOnce(&Context<S>, &mut ContextState),
    ) -> Option<ContextKey> {
        let (victim, _) = state.slots[slot].take()?;
        if let Some(context) = self.linked(&victim, guard) {
            let mut held = context.lock();
            context.retire(&mut held);
            on_retire(context, &mut held);
        }
        self.table
            .remove_either(victim, self.hashes(&victim), guard);
        state.live -= 1;
        state.unlink_vmid(victim.vmid, slot);
        Some(victim)
    }

    /// Calls `visit` on every context of L1 VMID `vmid` (or of every VMID),
    /// holding the directory lock so no context is created or recycled
    /// meanwhile. Cost grows with the contexts visited.
    pub(crate) fn for_vmid(
        &self,
        vmid: Option<u16>,
        guard: &Guard,
        mut visit: impl FnMut(&Context<S>),
    ) {
        let state = self.state.lock();
        // Each slot's context through its recorded place: under the lock
        // the place holds exactly the slot's context (placed and removed
        // only under it, and never moved), so the key's two hashes and
        // the bucket probe (~80 instructions a page TLBI) are not needed.
        let mut visit_slot = |slot: usize| {
            if let Some((key, place)) = state.slots.get(slot).copied().flatten() {
                if let Some(context) = self.table.get_at(place, guard) {
                    debug_assert_eq!(context.key(), key);
                    visit(context);
                }
            }
        };
        match vmid {
            Some(vmid) => {
                let mut slot = state
                    .by_vmid
                    .get(&VmidKey(vmid.into()))
                    .copied()
                    .unwrap_or(NO_SLOT);
                while slot != NO_SLOT {
                    visit_slot(slot);
                    slot = state.vmid_links[slot].1;
                }
            }
            None => {
                for slot in 0..state.slots.len() {
                    visit_slot(slot);
                }
            }
        }
    }

    /// Number of live contexts.
    pub fn len(&self) -> usize {
        self.state.lock().live
    }

    /// Whether no context exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The capacities in force.
    pub fn capacity(&self) -> Capacity {
        self.capacity
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use super::*;
    use std::collections::HashSet as Set;
    use walker::IdRegisters;

    fn directory(slots: usize, collector: &Collector) -> Directory<()> {
        let features = ExposedFeatures::from_id_registers(IdRegisters {
            mmfr0: 5,
            mmfr1: 0,
            mmfr2: 0,
        })
        .unwrap();
        let capacity = Capacity {
            contexts: slots,
            leaves_per_context: 4,
            paths_per_context: 4,
        };
        let host = HostVmids {
            width: ipc::VmidWidth::Bits16,
            l1_vmid: 1,
        };
        let vmids = ShadowVmids::new(16, slots, host).unwrap();
        Directory::new(features, capacity, vmids, 0x5eed, collector)
    }

    /// The VMID index (a map to each VMID's first slot, the others linked
    /// per slot) lists exactly the live contexts of each VMID through any
    /// sequence of creations and recycles, and the live count matches.
    #[test]
    fn the_vmid_index_follows_creations_and_recycles() {
        let collector = Collector::new();
        let handle = collector.register();
        let guard = handle.pin();
        let vtcr = 25 | (1 << 6) | (5 << 16);
        let keys: Vec<ContextKey> = (0..12u64)
            .map(|i| {
                ContextKey::new(
                    (i % 4) as u16 + 2,
                    0x1000 * (i + 1),
                    vtcr,
                    Endianness::Little,
                )
            })
            .collect();
        for slots in [1, 2, 3, 5] {
            let directory = directory(slots, &collector);
            let mut state = 0x1234_5678_u64;
            for _ in 0..400 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let key = keys[(state % keys.len() as u64) as usize];
                directory
                    .get_or_create(&key, &guard, |_, _| {}, |_| Some(()), |_| {})
                    .expect("a context");
                let live: Set<ContextKey> = keys
                    .iter()
                    .copied()
                    .filter(|k| directory.get(k, &guard).is_some())
                    .collect();
                assert_eq!(live.len(), directory.len());
                assert!(live.len() <= slots && live.contains(&key));
                for vmid in 2..6u16 {
                    let mut listed = Set::new();
                    directory.for_vmid(Some(vmid), &guard, |c| {
                        assert!(listed.insert(c.key()), "listed twice");
                    });
                    let want: Set<_> = live.iter().copied().filter(|k| k.vmid == vmid).collect();
                    assert_eq!(listed, want, "VMID {vmid}, {slots} slots");
                }
                let mut all = Set::new();
                directory.for_vmid(None, &guard, |c| {
                    all.insert(c.key());
                });
                assert_eq!(all, live);
            }
        }
    }
}
