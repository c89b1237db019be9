//! Shared fixture of the shadow-mmu loom models: a tiny L1 stage-2 tree in
//! plain atomics (`SparseMemory` says why; L1's table writes against a walk
//! are modelled on loom atomics in `walker_memslots.rs`, and against the
//! service's generation in `shadow_generation_memory.rs` on `LoomMemory`) and a service small enough for loom (one bucket of
//! cache slots and a stash of one bucket; the frames and shadow leaves
//! `Service::new` asks at least, counts the model shadow does not use). The
//! service is the real
//! `shadow_mmu::service::Service`: under `--cfg loom` its atomics, locks and
//! epoch reclamation all run on loom.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use loom::sync::Arc;

use ipc::tlbi::{EntryLevels, InvalidateScope, IpaRange, IpaScope, TtlHint};
use shadow_mmu::budget::{Budget, WORST_ACCESS_PAGES};
use shadow_mmu::compose::{HostExecute, ShadowMapping};
use shadow_mmu::compose::{
    L0Map, L0Mapping, L0Region, L0RegionKind, L0RegionMap, MemAttr, MemShareability, Permissions,
};
use shadow_mmu::context::{Capacity, ContextKey};
use shadow_mmu::service::{Retry, Service, ServiceConfig, ShadowBackend, ShadowStore, Translated};
use shadow_mmu::shadow_table::{MapError, MapOutcome};
use walker::{
    AbortContext, AbortOrigin, AccessKind, Endianness, ExposedFeatures, GuestMemory, IdRegisters,
    MemoryError,
};

/// 4K granule, 39-bit IPA, start level 1, PS 48 bits.
pub const VTCR: u64 = 25 | (1 << 6) | (5 << 16);
/// Level-1 table (root) of the first tree, and the tables below it.
pub const ROOT: u64 = 0x1000;
pub const L2_TABLE: u64 = 0x2000;
pub const L3_TABLE: u64 = 0x3000;
/// Root of a second tree, with its own lower tables mapping L2 IPA 0 and
/// 0x1000 to NEW and NEW + 0x1000 (so a hit of the wrong tree shows).
pub const ROOT_B: u64 = 0x4000;
pub const L2_TABLE_B: u64 = 0x5000;
pub const L3_TABLE_B: u64 = 0x6000;
/// Leaf attributes: AF, inner shareable, RW, normal write-back, page.
pub const PAGE: u64 = (1 << 10) | (3 << 8) | (3 << 6) | (0xf << 2) | 3;
/// L1 IPAs the leaves point to (inside L1 memory).
pub const OLD: u64 = 0x8000_0000;
pub const NEW: u64 = 0x9000_0000;
pub const PA_OFFSET: u64 = 0x10_0000_0000;

/// Sparse L1 memory: the few descriptor words the models use. Plain
/// sequentially consistent atomics: loom runs one thread at a time, so a
/// walk reads what the schedule wrote last, and the models need not
/// multiply their states by every descriptor read.
pub struct SparseMemory {
    words: Vec<(u64, AtomicU64)>,
}

impl SparseMemory {
    pub fn write(&self, address: u64, value: u64) {
        self.word(address)
            .expect("modelled word")
            .store(value, Ordering::Release);
    }

    fn word(&self, address: u64) -> Option<&AtomicU64> {
        self.words
            .iter()
            .find(|(a, _)| *a == address)
            .map(|(_, w)| w)
    }
}

impl GuestMemory for SparseMemory {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        // Unmodelled words of the table area read as invalid descriptors.
        Ok(self.word(address).map_or(0, |w| w.load(Ordering::Acquire)))
    }

    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        let word = self.word(address).ok_or(MemoryError::OutsideMemslots)?;
        Ok(word.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire))
    }
}

/// [`memory`]'s words as loom atomics, for the models whose subject is
/// what orders a walk's reads of L1's tables after an event of the
/// service (`shadow_generation_memory`): a walk may read any store of a
/// word that does not happen before it, as on the hardware, so only the
/// service's own Release/Acquire pairs make L1's table writes visible to
/// it. Reads are Acquire and the swap is AcqRel, as hv's L1 memory does
/// them (`hv::shadow_selftest::memory::Arena`); L1's writes are Relaxed,
/// a guest's plain store (its DSB before the TLBI is the program order of
/// the model's L1 thread, which then runs the invalidation itself).
pub struct LoomMemory {
    words: Vec<(u64, loom::sync::atomic::AtomicU64)>,
}

impl LoomMemory {
    /// [`memory`]'s words and values, as loom atomics.
    pub fn new() -> Self {
        let words = memory()
            .words
            .into_iter()
            .map(|(a, w)| (a, loom::sync::atomic::AtomicU64::new(w.into_inner())))
            .collect();
        LoomMemory { words }
    }

    /// L1's plain store of a descriptor (Relaxed: see the type).
    pub fn write(&self, address: u64, value: u64) {
        self.word(address)
            .expect("modelled word")
            .store(value, Ordering::Relaxed);
    }

    fn word(&self, address: u64) -> Option<&loom::sync::atomic::AtomicU64> {
        self.words
            .iter()
            .find(|(a, _)| *a == address)
            .map(|(_, w)| w)
    }
}

impl GuestMemory for LoomMemory {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        Ok(self.word(address).map_or(0, |w| w.load(Ordering::Acquire)))
    }

    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        let word = self.word(address).ok_or(MemoryError::OutsideMemslots)?;
        Ok(word.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire))
    }
}

/// Two trees: under ROOT, L2 IPA 0 -> OLD and 0x1000 -> OLD + 0x1000;
/// under ROOT_B, 0 -> NEW and 0x1000 -> NEW + 0x1000.
pub fn memory() -> SparseMemory {
    let words = vec![
        (ROOT, AtomicU64::new(L2_TABLE | 3)),
        (ROOT_B, AtomicU64::new(L2_TABLE_B | 3)),
        (L2_TABLE_B, AtomicU64::new(L3_TABLE_B | 3)),
        (L3_TABLE_B, AtomicU64::new(NEW | PAGE)),
        (L3_TABLE_B + 8, AtomicU64::new((NEW + 0x1000) | PAGE)),
        (L2_TABLE, AtomicU64::new(L3_TABLE | 3)),
        (L3_TABLE, AtomicU64::new(OLD | PAGE)),
        (L3_TABLE + 8, AtomicU64::new((OLD + 0x1000) | PAGE)),
    ];
    SparseMemory { words }
}

/// The cached leaves of pages `0..pages` of [`memory_with_pages`] in the
/// first tree (ROOT), walked once outside the models (walks are not their
/// subject).
pub fn page_leaves(pages: u64) -> Vec<shadow_mmu::cache::CachedWalk> {
    let memory = memory_with_pages(pages);
    let walker = walker::Stage2Walker::new(key(ROOT).registers(), &features());
    (0..pages)
        .map(|i| {
            let t = walker
                .walk(&memory, i << 12, AccessKind::Read)
                .expect("mapped");
            shadow_mmu::cache::CachedWalk::from_translation(&t)
        })
        .collect()
}

/// A model thread that caches `leaf` in the context of the first tree
/// (ROOT) under its lock, as an install does; joins to what was evicted.
pub fn cache_leaf_in_thread(
    directory: &Arc<shadow_mmu::context::Directory<()>>,
    collector: &crossbeam_epoch::Collector,
    leaf: shadow_mmu::cache::CachedWalk,
) -> loom::thread::JoinHandle<Option<(u64, u64)>> {
    let directory = directory.clone();
    let collector = collector.clone();
    loom::thread::spawn(move || {
        let handle = collector.register();
        let guard = handle.pin();
        let a = directory.get(&key(ROOT), &guard).expect("A");
        let mut held = a.lock();
        a.cache_leaf(&mut held, leaf, &guard)
    })
}

/// The first tree (ROOT) with `pages` pages from L2 IPA 0 mapped, page
/// `i` to OLD + i pages (the second tree as in [`memory`]).
pub fn memory_with_pages(pages: u64) -> SparseMemory {
    let mut memory = memory();
    memory
        .words
        .retain(|(a, _)| !(L3_TABLE..L3_TABLE + 0x1000).contains(a));
    for i in 0..pages {
        memory
            .words
            .push((L3_TABLE + 8 * i, AtomicU64::new((OLD + (i << 12)) | PAGE)));
    }
    memory
}

/// A shadow stage 2 small enough for loom: its entries in a loom mutex.
/// (The real table's own concurrency has its own model; here the subject
/// is the service's protocol around it.)
#[derive(Debug)]
pub struct ModelShadow {
    vmid: u16,
    entries: loom::sync::Mutex<Vec<ShadowMapping>>,
    log: Arc<loom::sync::Mutex<Vec<Event>>>,
}

/// What happened to a model shadow, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Created(u16),
    /// The slot's next context took the shadow over.
    Reassigned(u16),
    Mapped(u16),
    Cleared(u16),
}

/// Checks that no shadow was written after it was cleared, unless a new
/// context took the VMID's shadow over in between (a recycled context must
/// never take an insert).
pub fn assert_no_insert_after_clear(log: &[Event]) {
    for (i, event) in log.iter().enumerate() {
        if let Event::Cleared(vmid) = event {
            for later in &log[i + 1..] {
                match later {
                    Event::Created(v) | Event::Reassigned(v) if v == vmid => break,
                    Event::Mapped(v) if v == vmid => {
                        panic!("VMID {vmid} shadow written after its clear: {log:?}")
                    }
                    _ => {}
                }
            }
        }
    }
}

impl ShadowStore for ModelShadow {
    fn root_pa(&self) -> u64 {
        u64::from(self.vmid) << 12
    }
    fn map(&self, m: &ShadowMapping) -> Result<MapOutcome, MapError> {
        let mut entries = self.entries.lock().unwrap();
        if entries.contains(m) {
            return Ok(MapOutcome::AlreadyPresent);
        }
        let before = entries.len();
        entries.retain(|e| {
            !(e.l2_ipa_base < m.l2_ipa_base + m.size && m.l2_ipa_base < e.l2_ipa_base + e.size)
        });
        let replaced = entries.len() != before;
        entries.push(*m);
        self.log.lock().unwrap().push(Event::Mapped(self.vmid));
        Ok(if replaced {
            MapOutcome::Replaced
        } else {
            MapOutcome::Installed
        })
    }
    fn unmap_range(&self, start: u64, len: u64) -> usize {
        let mut entries = self.entries.lock().unwrap();
        let before = entries.len();
        entries.retain(|e| !(e.l2_ipa_base < start + len && start < e.l2_ipa_base + e.size));
        before - entries.len()
    }
    fn clear(&self) -> usize {
        self.log.lock().unwrap().push(Event::Cleared(self.vmid));
        let mut entries = self.entries.lock().unwrap();
        let n = entries.len();
        entries.clear();
        n
    }
    fn lookup(&self, ipa: u64) -> Option<ShadowMapping> {
        self.entries
            .lock()
            .unwrap()
            .iter()
            .copied()
            .find(|e| e.contains(ipa))
    }
    fn frames_used(&self) -> usize {
        1
    }
    fn leaves(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
    fn reassigned(&self) {
        self.log.lock().unwrap().push(Event::Reassigned(self.vmid));
    }
}

/// Creates [`ModelShadow`]s and logs what happens to them.
#[derive(Debug, Default)]
pub struct ModelBackend {
    pub log: Arc<loom::sync::Mutex<Vec<Event>>>,
}

impl ShadowBackend for ModelBackend {
    type Shadow = ModelShadow;
    fn create(&self, vmid: u16) -> Option<ModelShadow> {
        self.log.lock().unwrap().push(Event::Created(vmid));
        Some(ModelShadow {
            vmid,
            entries: loom::sync::Mutex::new(Vec::new()),
            log: self.log.clone(),
        })
    }
    fn frames_in_use(&self) -> usize {
        0
    }
    fn host_execute(&self) -> HostExecute {
        HostExecute::PerLevel
    }
    fn input_bits(&self) -> u32 {
        // The fake stores any mapping the 48-bit format can hold.
        shadow_mmu::compose::SHADOW_IPA_BITS
    }
}

/// L0's map of L1: all of [0, 4 GiB), except that L0 can take away the
/// two pages at OLD (a memslot removal), before telling the service.
///
/// The removal is a loom atomic written and read Relaxed: the weakest map
/// L0 could keep. The service promises that a translate which read the L0
/// generation `l0_unmap` bumped composes with L0's map as it was before
/// that call, so the only thing that may order the map change before the
/// composition is the generation's Release/Acquire pair, and loom checks
/// that it does (with a sequentially consistent flag it could not see a
/// composition read the old map).
#[derive(Debug)]
pub struct ModelL0 {
    map: L0RegionMap,
    old_removed: loom::sync::atomic::AtomicBool,
}

impl ModelL0 {
    pub fn remove_old(&self) {
        self.old_removed.store(true, Ordering::Relaxed);
    }
}

impl L0Map for ModelL0 {
    fn lookup(&self, l1_ipa: u64) -> Option<L0Mapping> {
        if self.old_removed.load(Ordering::Relaxed) && (OLD..OLD + 0x2000).contains(&l1_ipa) {
            return None;
        }
        self.map.lookup(l1_ipa)
    }
}

pub type ModelService = Service<SparseMemory, ModelL0, ModelBackend>;

/// The service on [`LoomMemory`].
pub type LoomMemoryService = Service<LoomMemory, ModelL0, ModelBackend>;

/// The models' service configuration: `contexts` slots, a few entries and
/// frames each, shadow VMIDs clear of VMID 0 and of hv's VMID for L1 (1).
pub fn config(contexts: usize) -> ServiceConfig {
    let features = features();
    let budget = Budget {
        bytes: 0,
        capacity: Capacity {
            contexts,
            leaves_per_context: 4,
            paths_per_context: 4,
        },
        // What `Service::new` asks at least: every slot's root and the
        // tables and leaves of the worst single access (review 38 R38-1);
        // the model shadow counts none of them.
        frames: 4 * contexts + 4 + 3 * WORST_ACCESS_PAGES,
        shadow_leaves: WORST_ACCESS_PAGES,
    };
    ServiceConfig {
        features,
        hash_seed: 0x5eed,
        budget,
        first_shadow_vmid: 16,
        host_vmids: HOST_VMIDS,
    }
}

/// The features L1 is shown: a 48-bit PA size, nothing else.
pub fn features() -> ExposedFeatures {
    ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 5,
        mmfr1: 0,
        mmfr2: 0,
    })
    .expect("valid ID registers")
}

/// hv's VMIDs: 16 bits, L1's own VMID 1.
pub const HOST_VMIDS: shadow_mmu::context::HostVmids = shadow_mmu::context::HostVmids {
    width: ipc::VmidWidth::Bits16,
    l1_vmid: 1,
};

/// A context directory for the models (their features, `capacity`, the
/// shadow VMIDs of [`shadow_vmids`], hash seed `seed`) and its collector.
pub fn directory(
    capacity: Capacity,
    seed: u64,
) -> (
    crossbeam_epoch::Collector,
    Arc<shadow_mmu::context::Directory<()>>,
) {
    let collector = crossbeam_epoch::Collector::new();
    let directory = shadow_mmu::context::Directory::new(
        features(),
        capacity,
        shadow_vmids(capacity.contexts),
        seed,
        &collector,
    );
    (collector, Arc::new(directory))
}

/// The shadow VMIDs of `contexts` slots, from 16 (clear of VMID 0 and L1's).
pub fn shadow_vmids(contexts: usize) -> shadow_mmu::context::ShadowVmids {
    shadow_mmu::context::ShadowVmids::new(16, contexts, HOST_VMIDS).expect("valid shadow VMIDs")
}

/// L0's map of L1: the first 4 GiB as read-write memory at `PA_OFFSET`.
pub fn l0_map() -> L0RegionMap {
    L0RegionMap::new(vec![L0Region {
        ipa_base: 0,
        size: 4 << 30,
        kind: L0RegionKind::Memory {
            pa_base: PA_OFFSET,
            perms: Permissions::READ.union(Permissions::WRITE),
            mem_attr: MemAttr::from_bits(0xf),
            shareability: MemShareability::InnerShareable,
        },
    }])
    .expect("valid L0 map")
}

pub fn service(contexts: usize) -> Arc<ModelService> {
    service_on(contexts, memory())
}

/// [`service`] on L1 memory `memory`.
pub fn service_on<M: GuestMemory + Sync>(
    contexts: usize,
    memory: M,
) -> Arc<Service<M, ModelL0, ModelBackend>> {
    let config = config(contexts);
    let l0 = l0_map();
    let l0 = ModelL0 {
        map: l0,
        old_removed: loom::sync::atomic::AtomicBool::new(false),
    };
    Arc::new(Service::new(config, memory, l0, ModelBackend::default()).expect("valid shadow VMIDs"))
}

pub fn key(root: u64) -> ContextKey {
    ContextKey::new(1, root, VTCR, Endianness::Little)
}

pub const ABORT: AbortContext = AbortContext {
    far: None,
    origin: AbortOrigin::Access,
    trapped_esr: None,
};

pub fn read<M: GuestMemory + Sync>(
    s: &Service<M, ModelL0, ModelBackend>,
    w: &shadow_mmu::service::Worker,
    key: &ContextKey,
    ipa: u64,
) -> Translated {
    s.translate(w, key, ipa, AccessKind::Read, &ABORT)
}

/// After L1 remapped page 0 from OLD to NEW and its TLBI returned:
/// neither the cache nor the shadow may give OLD for it (`when` names the
/// moment checked).
pub fn assert_page_0_not_stale<M: GuestMemory + Sync>(
    s: &Service<M, ModelL0, ModelBackend>,
    w: &shadow_mmu::service::Worker,
    when: &str,
) {
    let guard = w.pin();
    if let Some(hit) = s.lookup(&key(ROOT), 0, &guard) {
        assert_eq!(hit.output_address(0), NEW, "stale cache {when}");
    }
    drop(guard);
    if let Some(m) = s.shadow_lookup(w, &key(ROOT), 0) {
        assert_eq!(m.pa_base, PA_OFFSET + NEW, "stale shadow {when}");
    }
}

/// TLBI IPAS2E1 for the 4 KiB at `ipa`.
pub fn ipas2e1(ipa: u64) -> InvalidateScope {
    InvalidateScope::Ipa(IpaScope {
        range: IpaRange::new(ipa, ipa + 0x1000).expect("non-empty"),
        levels: EntryLevels::AnyLevel,
        hint: TtlHint::None,
    })
}

/// The L1 IPA a mapped result gives for `ipa`.
pub fn l1_of(t: &Translated, ipa: u64) -> Option<u64> {
    match t {
        Translated::Mapped(m) if m.contains(ipa) => {
            Some(m.pa_base + (ipa - m.l2_ipa_base) - PA_OFFSET)
        }
        _ => None,
    }
}

/// A translate of `ipa` either maps it to `base + ipa` in L1 (the tree
/// whose leaves start at `base`, OLD or NEW) or is told to retry.
pub fn assert_maps_or_retries(t: &Translated, ipa: u64, base: u64) {
    match t {
        Translated::Mapped(_) => assert_eq!(l1_of(t, ipa), Some(base + ipa), "{t:?}"),
        Translated::Retry(Retry::InvalidationRaced | Retry::Throttled) => {}
        other => panic!("unexpected {other:?}"),
    }
}
