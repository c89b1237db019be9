//! Test fixtures: L1 memory holding L1's stage-2 tables (written by an
//! independent table builder), L0's map of L1, and a service over them.
#![allow(dead_code)]

pub mod counting;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ipc::tlbi::{EntryLevels, InvalidateScope, IpaRange, IpaScope, TtlHint};
use shadow_mmu::budget::Budget;
use shadow_mmu::compose::{
    HostExecute, L0Region, L0RegionKind, L0RegionMap, MemAttr, MemShareability, Permissions,
    ShadowMapping,
};
use shadow_mmu::context::{ContextKey, HostVmids};
use shadow_mmu::service::{
    HostBackend, Retry, Service, ServiceConfig, ShadowBackend, ShadowStore, Translated, Worker,
};
use shadow_mmu::shadow_table::{
    FramePool, HeapFramePool, MapError, MapOutcome, NoHardwareTlb, ShadowConfig, ShadowPlace,
    ShadowTable,
};
use walker::{
    AbortContext, AbortOrigin, AccessKind, Endianness, ExposedFeatures, Granule, GuestMemory,
    IdRegisters, MemoryError,
};

/// Where L1's tables live (L1 IPA) and how much room they have.
pub const TABLES_BASE: u64 = 0x4000_0000;
pub const TABLES_BYTES: u64 = 8 << 20;
/// L1 memory (what L1 maps for L2) as L0 sees it: [0, 4 GiB) at PA + PA_OFFSET.
pub const L1_MEMORY_BYTES: u64 = 4 << 30;
pub const PA_OFFSET: u64 = 0x10_0000_0000;
/// An L1 IPA range L0 emulates as a device.
pub const MMIO_BASE: u64 = 0x1_0000_0000;
pub const MMIO_BYTES: u64 = 1 << 30;

/// Leaf attributes: AF, inner shareable, S2AP RW, normal write-back.
pub const RW: u64 = (1 << 10) | (3 << 8) | (3 << 6) | (0xf << 2);
/// Read-only.
pub const RO: u64 = (1 << 10) | (3 << 8) | (1 << 6) | (0xf << 2);

/// L1 memory holding the tables, shared between the test and the service.
#[derive(Clone)]
pub struct L1Memory(Arc<Vec<AtomicU64>>);

impl L1Memory {
    pub fn new() -> Self {
        L1Memory(Arc::new(
            (0..TABLES_BYTES / 8).map(|_| AtomicU64::new(0)).collect(),
        ))
    }

    fn word(&self, address: u64) -> Option<&AtomicU64> {
        let offset = address.checked_sub(TABLES_BASE)?;
        if offset % 8 != 0 {
            return None;
        }
        self.0.get(usize::try_from(offset / 8).ok()?)
    }

    pub fn write(&self, address: u64, value: u64) {
        self.word(address)
            .expect("test writes inside the table area")
            .store(value.to_le(), Ordering::SeqCst);
    }

    pub fn read(&self, address: u64) -> u64 {
        u64::from_le(self.word(address).expect("inside").load(Ordering::SeqCst))
    }
}

impl GuestMemory for L1Memory {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        self.word(address)
            .map(|w| w.load(Ordering::Acquire))
            .ok_or(MemoryError::OutsideMemslots)
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

/// An independent builder of L1 stage-2 tables in [`L1Memory`].
pub struct L1Tables {
    pub mem: L1Memory,
    pub granule: Granule,
    pub start_level: i8,
    pub ia_bits: u32,
    pub root: u64,
    vtcr: u64,
    next_free: AtomicU64,
}

pub fn granule_bits(g: Granule) -> u32 {
    match g {
        Granule::K4 => 12,
        Granule::K16 => 14,
        Granule::K64 => 16,
    }
}

impl L1Tables {
    /// 4K: 39-bit IA from level 1. 16K: 40-bit IA from level 1. 64K: 48-bit
    /// IA from level 1. PS = 48 bits.
    pub fn new(mem: L1Memory, granule: Granule) -> Self {
        Self::at(mem, granule, 0)
    }

    /// Like `new`, with the tables allocated from `offset` into the area
    /// (so several table trees can share one memory).
    pub fn at(mem: L1Memory, granule: Granule, offset: u64) -> Self {
        let (t0sz, sl0, tg0, ia_bits) = match granule {
            Granule::K4 => (25u64, 1u64, 0u64, 39),
            Granule::K16 => (24, 2, 2, 40),
            Granule::K64 => (16, 2, 1, 48),
        };
        let vtcr = t0sz | (sl0 << 6) | (tg0 << 14) | (5 << 16) | (3 << 12);
        let tables = L1Tables {
            mem,
            granule,
            start_level: 1,
            ia_bits,
            root: 0,
            vtcr,
            next_free: AtomicU64::new(TABLES_BASE + offset),
        };
        let root = tables.alloc_table();
        L1Tables { root, ..tables }
    }

    pub fn vtcr(&self) -> u64 {
        self.vtcr
    }

    pub fn key(&self, vmid: u16) -> ContextKey {
        ContextKey::new(vmid, self.root, self.vtcr, Endianness::Little)
    }

    fn gbits(&self) -> u32 {
        granule_bits(self.granule)
    }

    pub fn lsb(&self, level: i8) -> u32 {
        self.gbits() + (3 - level as u32) * (self.gbits() - 3)
    }

    /// Block size at a level.
    pub fn size(&self, level: i8) -> u64 {
        1 << self.lsb(level)
    }

    fn alloc_table(&self) -> u64 {
        let size = 1u64 << self.gbits();
        let at = self.next_free.fetch_add(size, Ordering::SeqCst);
        assert!(
            at + size <= TABLES_BASE + TABLES_BYTES,
            "test table area full"
        );
        at
    }

    fn index(&self, ipa: u64, level: i8) -> u64 {
        let bits = if level == self.start_level {
            self.ia_bits - self.lsb(level)
        } else {
            self.gbits() - 3
        };
        (ipa >> self.lsb(level)) & ((1 << bits) - 1)
    }

    /// Address of the descriptor for `ipa` at `level`, creating tables above.
    pub fn slot(&self, ipa: u64, level: i8) -> u64 {
        let mut table = self.root;
        for l in self.start_level..level {
            let address = table + 8 * self.index(ipa, l);
            let d = self.mem.read(address);
            let next = d & 0x0000_ffff_ffff_f000 & !((1 << self.gbits()) - 1);
            let inside = (TABLES_BASE..TABLES_BASE + TABLES_BYTES).contains(&next);
            table = if d & 3 == 3 && inside {
                next
            } else {
                let t = self.alloc_table();
                self.mem.write(address, t | 3);
                t
            };
        }
        table + 8 * self.index(ipa, level)
    }

    /// Map the block/page at `level` containing `ipa` to `oa` with `attrs`.
    pub fn map(&self, ipa: u64, oa: u64, level: i8, attrs: u64) {
        let kind = if level == 3 { 3 } else { 1 };
        let size = self.size(level);
        assert_eq!(oa % size, 0);
        self.mem.write(self.slot(ipa, level), oa | attrs | kind);
    }

    /// Invalidate the descriptor at `level` for `ipa`.
    pub fn unmap(&self, ipa: u64, level: i8) {
        self.mem.write(self.slot(ipa, level), 0);
    }
}

pub fn features() -> ExposedFeatures {
    features_with_pa_range(0b101)
}

/// [`features`] with another ID_AA64MMFR0_EL1.PARange.
pub fn features_with_pa_range(pa_range: u64) -> ExposedFeatures {
    ExposedFeatures::from_id_registers(IdRegisters {
        // PARange as given, 16K supported (TGran16 = 1), 4K and 64K too.
        mmfr0: pa_range | (1 << 20),
        // HAFDBS = 2 (AF and dirty), XNX = 1.
        mmfr1: 2 | (1 << 28),
        mmfr2: 0,
    })
    .expect("valid ID registers")
}

pub fn l0_map() -> L0RegionMap {
    l0_map_at(PA_OFFSET)
}

/// [`l0_map`] with L1's memory at PA `pa_base`.
pub fn l0_map_at(pa_base: u64) -> L0RegionMap {
    L0RegionMap::new(vec![
        L0Region {
            ipa_base: 0,
            size: L1_MEMORY_BYTES,
            kind: L0RegionKind::Memory {
                pa_base,
                perms: Permissions::READ
                    .union(Permissions::WRITE)
                    .union(Permissions::EXEC_EL0)
                    .union(Permissions::EXEC_EL1),
                mem_attr: MemAttr::from_bits(0xf),
                shareability: MemShareability::InnerShareable,
            },
        },
        L0Region {
            ipa_base: MMIO_BASE,
            size: MMIO_BYTES,
            kind: L0RegionKind::Mmio,
        },
    ])
    .expect("valid L0 regions")
}

pub type TestService<M = L1Memory> = Service<M, L0RegionMap, HostBackend>;

/// hv's VMIDs: 16 bits, L1 runs with VMID 1 (hv/src/arch).
pub const HOST_VMIDS: HostVmids = HostVmids {
    width: ipc::VmidWidth::Bits16,
    l1_vmid: 1,
};
/// The shadows' VMIDs start here (clear of VMID 0 and L1's VMID 1).
pub const FIRST_SHADOW_VMID: u16 = 16;

pub fn config(bytes: usize, contexts: usize) -> ServiceConfig {
    ServiceConfig {
        features: features(),
        // Fixed: the tests are deterministic; the hashes are mixed either way.
        hash_seed: 0x5eed,
        budget: Budget::split(bytes, contexts).expect("budget large enough"),
        first_shadow_vmid: FIRST_SHADOW_VMID,
        host_vmids: HOST_VMIDS,
    }
}

pub fn service_with<M: GuestMemory + Sync>(
    memory: M,
    bytes: usize,
    contexts: usize,
) -> TestService<M> {
    let config = config(bytes, contexts);
    let backend =
        HostBackend::recording(config.budget.frames, ShadowConfig::default()).expect("pool");
    Service::new(config, memory, l0_map(), backend).expect("valid shadow VMIDs")
}

pub fn service(memory: L1Memory) -> TestService {
    service_with(memory, 16 << 20, 8)
}

pub const ABORT: AbortContext = AbortContext {
    far: Some(0x1234_5000),
    origin: AbortOrigin::Access,
    trapped_esr: None,
};

pub fn read<M: GuestMemory + Sync>(
    s: &TestService<M>,
    w: &Worker,
    key: &ContextKey,
    ipa: u64,
) -> Translated {
    s.translate(w, key, ipa, AccessKind::Read, &ABORT)
}

/// An L2 access that needs every page of `pages` shadowed at once, run as
/// the hardware runs it: the first page whose shadow entry is missing
/// faults (a read translate), and L2 re-runs the access after each fault.
/// The faults it took, or why it never completed within `limit` faults.
pub fn faults_until_all_shadowed(
    s: &TestService,
    w: &Worker,
    key: &ContextKey,
    pages: &[u64],
    limit: usize,
) -> Result<usize, String> {
    let (mut faults, mut throttled) = (0, 0);
    for _ in 0..limit {
        let Some(&page) = pages
            .iter()
            .find(|&&p| s.shadow_lookup(w, key, p).is_none())
        else {
            return Ok(faults);
        };
        faults += 1;
        match read(s, w, key, page) {
            Translated::Mapped(_) => {}
            Translated::Retry(Retry::Throttled) => throttled += 1,
            other => return Err(format!("{other:?}")),
        }
    }
    if pages.iter().all(|&p| s.shadow_lookup(w, key, p).is_some()) {
        return Ok(faults);
    }
    Err(format!(
        "after {faults} faults ({throttled} throttled, frames {} of {}) the access never found \
         its {} pages mapped together; stats {:?}",
        s.shadow_frames(),
        s.config().budget.frames,
        pages.len(),
        s.stats()
    ))
}

/// An IPAS2/RIPAS2-style invalidation of `[start, end)` with no level hint.
pub fn ipa_scope(start: u64, end: u64, levels: EntryLevels) -> InvalidateScope {
    InvalidateScope::Ipa(IpaScope {
        range: IpaRange::new(start, end).expect("a valid range"),
        levels,
        hint: TtlHint::None,
    })
}

/// The PA a mapped result gives for `ipa`.
pub fn pa_of(t: &Translated, ipa: u64) -> Option<u64> {
    match t {
        Translated::Mapped(m) if m.contains(ipa) => Some(m.pa_base + (ipa - m.l2_ipa_base)),
        _ => None,
    }
}

/// Deterministic xorshift for tests that need many cases cheaply.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Steps a test runs inside the real shadow table's methods, to stop a
/// thread at an exact point of the service's protocol or to make a call
/// fail. Every method defaults to doing nothing, so a test writes only
/// the steps it needs; [`HookedBackend`] makes the shadows.
pub trait ShadowHooks: Send + Sync + 'static {
    /// Before `map`; an error is returned instead of mapping.
    fn map(&self, _m: &ShadowMapping) -> Result<(), MapError> {
        Ok(())
    }
    /// Before `clear`.
    fn clear(&self) {}
    /// After `clear`.
    fn cleared(&self) {}
    /// `reassigned`.
    fn reassigned(&self) {}
    /// Before `reclaim`.
    fn reclaim(&self) {}
    /// What `frames_used` reports, given the table's count.
    fn frames_used(&self, frames: usize) -> usize {
        frames
    }
    /// After `leaves` counted `leaves`, which it then reports.
    fn leaves(&self, _leaves: usize) {}
    /// Before `lookup_place_excluded` of `l2_ipa` (an install's look at
    /// its leaf's base).
    fn lookup_place(&self, _l2_ipa: u64) {}
}

/// The real shadow table (a heap frame pool, no hardware TLB) with a
/// test's [`ShadowHooks`] around its methods.
pub struct HookedShadow<H> {
    inner: ShadowTable<Arc<HeapFramePool>, NoHardwareTlb>,
    hooks: Arc<H>,
}

impl<H: ShadowHooks> ShadowStore for HookedShadow<H> {
    fn root_pa(&self) -> u64 {
        self.inner.root_pa()
    }
    fn map(&self, m: &ShadowMapping) -> Result<MapOutcome, MapError> {
        self.hooks.map(m)?;
        self.inner.map(m)
    }
    // The excluded and place-keeping forms are forwarded (with the `map`
    // hook) as hv's `HandshakeShadow` forwards them, so hooked services
    // install through the path hv runs, not the trait's root-walk defaults
    // (review 51 R51-4).
    fn map_excluded(&self, m: &ShadowMapping) -> Result<MapOutcome, MapError> {
        self.hooks.map(m)?;
        self.inner.map_excluded(m)
    }
    fn map_excluded_at(
        &self,
        m: &ShadowMapping,
        place: ShadowPlace,
    ) -> Result<MapOutcome, MapError> {
        self.hooks.map(m)?;
        self.inner.map_excluded_at(m, place)
    }
    fn lookup_excluded(&self, l2_ipa: u64) -> Option<ShadowMapping> {
        self.inner.lookup_excluded(l2_ipa)
    }
    fn lookup_place_excluded(&self, l2_ipa: u64) -> (Option<ShadowMapping>, ShadowPlace) {
        self.hooks.lookup_place(l2_ipa);
        self.inner.lookup_place_excluded(l2_ipa)
    }
    fn unmap_range(&self, l2_ipa: u64, len: u64) -> usize {
        self.inner.unmap_range(l2_ipa, len)
    }
    fn clear(&self) -> usize {
        self.hooks.clear();
        let removed = self.inner.clear();
        self.hooks.cleared();
        removed
    }
    fn reassigned(&self) {
        self.hooks.reassigned();
    }
    fn reclaim(&self, max_frames: usize) -> usize {
        self.hooks.reclaim();
        self.inner.reclaim_detached(max_frames)
    }
    fn lookup(&self, l2_ipa: u64) -> Option<ShadowMapping> {
        self.inner.lookup(l2_ipa)
    }
    fn frames_used(&self) -> usize {
        self.hooks.frames_used(self.inner.frames_used())
    }
    fn leaves(&self) -> usize {
        let leaves = self.inner.leaves();
        self.hooks.leaves(leaves);
        leaves
    }
}

/// A service over L1 memory whose shadows run a test's hooks.
pub type HookedService<H> = Service<L1Memory, L0RegionMap, HookedBackend<H>>;

/// A [`HookedService`] with `config`, its shadows' frames from a pool of
/// the budget's size, running `hooks`.
pub fn hooked_service<H: ShadowHooks>(
    config: ServiceConfig,
    memory: L1Memory,
    hooks: Arc<H>,
) -> Arc<HookedService<H>> {
    let backend = HookedBackend {
        pool: Arc::new(HeapFramePool::new(config.budget.frames, 1 << 40).expect("pool")),
        hooks,
    };
    Arc::new(Service::new(config, memory, l0_map(), backend).expect("a valid service"))
}

/// Makes [`HookedShadow`]s from one frame pool, all with the same hooks.
pub struct HookedBackend<H> {
    pub pool: Arc<HeapFramePool>,
    pub hooks: Arc<H>,
}

impl<H: ShadowHooks> ShadowBackend for HookedBackend<H> {
    type Shadow = HookedShadow<H>;
    fn create(&self, _vmid: u16) -> Option<HookedShadow<H>> {
        let inner =
            ShadowTable::new(self.pool.clone(), NoHardwareTlb, ShadowConfig::default()).ok()?;
        Some(HookedShadow {
            inner,
            hooks: self.hooks.clone(),
        })
    }
    fn frames_in_use(&self) -> usize {
        self.pool.frames_in_use()
    }
    fn host_execute(&self) -> HostExecute {
        HostExecute::from_xnx(ShadowConfig::default().xnx)
    }
    fn input_bits(&self) -> u32 {
        ShadowConfig::default().input_bits()
    }
}

/// Waits for a step's `flag` (bounded: a broken order fails the test,
/// never hangs it).
pub fn wait_for(flag: &std::sync::atomic::AtomicBool) {
    let start = std::time::Instant::now();
    while !flag.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "a step never came"
        );
        std::thread::yield_now();
    }
}

/// Runs `scenario` on a thread of its own and fails the test if it has not
/// finished within `limit` (a scenario that calls back into the service
/// under one of its spin locks deadlocks instead of failing when a
/// regression makes the callback take that lock: this turns the hang into
/// a failure). A panic in `scenario` fails the test with its message.
pub fn within(limit: std::time::Duration, scenario: impl FnOnce() + Send + 'static) {
    let (done, finished) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        scenario();
        done.send(()).ok();
    });
    match finished.recv_timeout(limit) {
        Ok(()) => thread.join().expect("the scenario finished"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // It panicked: report its panic.
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("the scenario hung for {limit:?} (a lock taken twice?)")
        }
    }
}

/// L1's memory as L0 maps it, with one page of it where every access is
/// refused and one where only compare-and-swaps are (each [`NO_PAGE`] or a
/// page's L1 IPA), both with `error`: as hv's `L1Memory` answers where L0
/// denies the access (`HostDenied`: its leaf lacks the permission) or is
/// mid-change (`HostChanging`: its break-before-make). A refused access
/// still needs the address inside L1's memory (the inner read first).
pub struct RefusedPages {
    pub mem: L1Memory,
    error: MemoryError,
    /// The page whose reads and compare-and-swaps are refused.
    pub every_access: AtomicU64,
    /// The page whose compare-and-swaps alone are refused.
    pub updates: AtomicU64,
}

/// No page refused.
pub const NO_PAGE: u64 = u64::MAX;

impl RefusedPages {
    pub fn new(mem: L1Memory, error: MemoryError) -> Self {
        RefusedPages {
            mem,
            error,
            every_access: AtomicU64::new(NO_PAGE),
            updates: AtomicU64::new(NO_PAGE),
        }
    }

    fn on(page: &AtomicU64, address: u64) -> bool {
        page.load(Ordering::SeqCst) == address & !0xfff
    }
}

impl GuestMemory for RefusedPages {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        let value = self.mem.read_descriptor(address)?;
        if Self::on(&self.every_access, address) {
            return Err(self.error);
        }
        Ok(value)
    }

    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        self.mem.read_descriptor(address)?;
        if Self::on(&self.every_access, address) || Self::on(&self.updates, address) {
            return Err(self.error);
        }
        self.mem.compare_exchange_descriptor(address, current, new)
    }
}

/// L1 memory whose descriptor at `gate` holds its first reader until `open`
/// is set: that translate walks after a later one has installed. `reached`
/// says the first reader is waiting.
pub struct GatedMemory {
    pub inner: L1Memory,
    pub gate: u64,
    pub reached: std::sync::atomic::AtomicBool,
    pub open: std::sync::atomic::AtomicBool,
}

impl GatedMemory {
    /// Gates the first read of `gate` in `inner`.
    pub fn new(inner: L1Memory, gate: u64) -> GatedMemory {
        GatedMemory {
            inner,
            gate,
            reached: std::sync::atomic::AtomicBool::new(false),
            open: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

impl GuestMemory for GatedMemory {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        if address == self.gate && !self.reached.swap(true, Ordering::AcqRel) {
            wait_for(&self.open);
        }
        self.inner.read_descriptor(address)
    }

    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        self.inner
            .compare_exchange_descriptor(address, current, new)
    }
}

/// The model tests' check after each step: every shadow leaf of each
/// context maps each of `ipas` where L1's tables do (`expected`: the L1 IPA
/// L1's tables give an L2 IPA), and the service holds one live reverse-map
/// record per shadow leaf. `step` names the seed, step and change in a
/// failure.
pub fn check_shadows_follow_l1<F: Fn(u64) -> Option<u64>>(
    s: &TestService,
    w: &Worker,
    contexts: impl IntoIterator<Item = (ContextKey, F)>,
    ipas: &[u64],
    step: &str,
) {
    for (i, (key, expected)) in contexts.into_iter().enumerate() {
        for &ipa in ipas {
            if let Some(m) = s.shadow_lookup(w, &key, ipa) {
                let got = m.pa_base + (ipa - m.l2_ipa_base) - PA_OFFSET;
                assert_eq!(
                    Some(got),
                    expected(ipa),
                    "{step}: key {i} {ipa:#x} shadowed stale"
                );
            }
        }
    }
    assert_eq!(
        s.shadow_leaves(),
        s.reverse_map_records(),
        "{step}: shadow leaves != live records"
    );
}

/// The model tests' check of one fault at `ipa`: a mapping must give the
/// L1 IPA L1's tables give (`want`), an injected fault only where they map
/// nothing; a retry is fine; anything else fails. `step` names the seed
/// and step in a failure.
pub fn check_fault_follows_l1(t: &Translated, ipa: u64, want: Option<u64>, step: &str) {
    match t {
        Translated::Mapped(m) => {
            let got = pa_of(t, ipa).map(|pa| pa - PA_OFFSET);
            assert_eq!(got, want, "{step}: {ipa:#x} {m:?}");
        }
        Translated::Inject(_) => assert_eq!(want, None, "{step}: {ipa:#x}"),
        Translated::Retry(_) => {}
        other => panic!("{step}: {ipa:#x} {other:?}"),
    }
}
