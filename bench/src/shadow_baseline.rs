//! Fixtures and baselines for the shadow-MMU benchmarks
//! (`benches/shadow_mmu.rs`).
//!
//! - [`L1Fixture`]: L1's stage-2 tables (4 KiB granule, 48-bit IPA, start
//!   level 0) mapping `pages` consecutive L2 pages to consecutive L1 pages,
//!   in memslots the walker reads, plus L0's map of that L1 memory; with
//!   [`L1Fixture::with_alias_roots`], further level-0 tables over the same
//!   lower tables, so one VMID can have several contexts (VTTBRs).
//! - [`MutexHashMapCache`]: the obvious cache, one `Mutex<HashMap>` keyed by
//!   (context, block base), probed once per block size present.
//! - [`KvmStyle`]: the design of Linux's nested stage-2 (arch/arm64/kvm/
//!   nested.c) as described in DESIGN.md: no walk-result cache (every
//!   shadow fault walks L1's table from the start level), contexts in a list
//!   found by linear scan, and TLBIs applied as whole-range unmaps of the
//!   shadow table of every context of the VMID, found by scanning every
//!   context (`kvm_s2_mmu_iterate_by_vmid`) - an IPAS2E1 without a level
//!   hint unmaps the largest block the granule allows around the IPA
//!   (1 GiB with 4 KiB pages), a RIPAS2E1 exactly the range it describes
//!   (its TTL ignored, as `handle_ripas2e1is` does), VMALLS12E1 the whole
//!   input range. Its shadow
//!   tables are the same [`ShadowTable`]s Umbra uses, so the comparison is
//!   about the cache and invalidation design, not the table code.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock};

use ipc::message::ContextKey;
use ipc::tlbi::{InvalidateScope, IpaScope, TtlHint};
use shadow_mmu::compose::{
    resolve, Composition, HostExecute, L0Map, L0Region, L0RegionKind, L0RegionMap, L1Translation,
    MemAttr, MemShareability, Permissions, ShadowMapping,
};
use shadow_mmu::shadow_table::{FramePool, MapError, ShadowConfig, ShadowTable, TlbMaintenance};
use walker::{
    AccessKind, Endianness, ExposedFeatures, IdRegisters, Memslot, Memslots, SlotAccess,
    Stage2Registers, Stage2Walker, WalkError,
};

/// L1 IPA of L1's stage-2 tables.
pub const TABLES_L1_IPA: u64 = 0x1_0000_0000;
/// L1 IPA of the memory L2's pages map to.
pub const DATA_L1_IPA: u64 = 0x2_0000_0000;
/// L2 IPA of the first mapped page.
pub const L2_BASE: u64 = 0x80_0000_0000;
/// PA of L1's table memory (L0's mapping).
pub const TABLES_PA: u64 = 0x10_0000_0000;
/// PA of L1's data memory (L0's mapping).
pub const DATA_PA: u64 = 0x20_0000_0000;

const PAGE: u64 = 4096;

/// VTCR_EL2 L1 programs: T0SZ 16, SL0 = 0b10 (level 0), TG0 4 KiB, PS 48 bits,
/// 16-bit VMID.
pub const L1_VTCR: u64 =
    16 | (0b10 << 6) | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) | (0b101 << 16) | (1 << 19);

/// The ID register values L0 exposes to L1 in the benchmarks: 48-bit PA,
/// 4 KiB stage-2 granule, FEAT_XNX.
pub fn exposed_features() -> ExposedFeatures {
    ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 5 | (0b0010 << 40),
        mmfr1: 1 << 28,
        mmfr2: 0,
    })
    .expect("valid ID registers")
}

/// L1's tables for `pages` L2 pages, L1's memory and L0's map of it.
#[derive(Debug)]
pub struct L1Fixture {
    /// L1's memory holding the tables, as the walker reads it.
    pub memory: Memslots<'static>,
    /// L0's map of L1 memory.
    pub l0: L0RegionMap,
    /// L1 IPA of the level-0 table (VTTBR_EL2.BADDR).
    pub root: u64,
    /// L1 IPAs of further level-0 tables, copies of `root`'s (so they
    /// translate alike): other VTTBR_EL2 values L1 may use under one VMID,
    /// each a context of its own ([`L1Fixture::key_at`]).
    pub alias_roots: Vec<u64>,
    /// Pages mapped from [`L2_BASE`].
    pub pages: u64,
}

fn leaf(oa: u64) -> u64 {
    // Page, MemAttr Normal WB, S2AP RW, Inner Shareable, AF, XN 0.
    oa | 0b11 | (0b1111 << 2) | (0b11 << 6) | (0b11 << 8) | (1 << 10)
}

impl L1Fixture {
    /// Builds the tables. The memory is leaked: fixtures live for the
    /// whole benchmark process.
    pub fn new(pages: u64) -> L1Fixture {
        L1Fixture::with_alias_roots(pages, 0)
    }

    /// The tables of [`L1Fixture::new`] plus `aliases` more level-0 tables
    /// with the same entries.
    pub fn with_alias_roots(pages: u64, aliases: usize) -> L1Fixture {
        let l3 = pages.div_ceil(512);
        let l2 = pages.div_ceil(512 * 512);
        let frames = 2 + l2 + l3 + aliases as u64;
        let words: &'static [AtomicU64] =
            Vec::from_iter((0..frames * 512).map(|_| AtomicU64::new(0))).leak();
        let slots: &'static mut [Memslot<'static>] =
            vec![Memslot::new(TABLES_L1_IPA, words, SlotAccess::ReadWrite)].leak();
        let memory = Memslots::new(slots).expect("one valid slot");
        let mut next = TABLES_L1_IPA + PAGE;
        let root = TABLES_L1_IPA;
        let store = |addr: u64, value: u64| memory.store_raw(addr, value).expect("inside the slot");
        let read = |addr: u64| {
            use walker::GuestMemory;
            memory.read_descriptor(addr).expect("inside the slot")
        };
        for i in 0..pages {
            let ipa = L2_BASE + i * PAGE;
            let mut table = root;
            for level in 0..3 {
                let shift = 12 + 9 * (3 - level);
                let slot = table + ((ipa >> shift) & 511) * 8;
                let d = read(slot);
                table = if d & 1 == 0 {
                    let new = next;
                    next += PAGE;
                    store(slot, new | 0b11);
                    new
                } else {
                    d & 0x0000_ffff_ffff_f000
                };
            }
            store(
                table + ((ipa >> 12) & 511) * 8,
                leaf(DATA_L1_IPA + i * PAGE),
            );
        }
        let alias_roots: Vec<u64> = (0..aliases)
            .map(|_| {
                let alias = next;
                next += PAGE;
                for entry in 0..512 {
                    store(alias + entry * 8, read(root + entry * 8));
                }
                alias
            })
            .collect();
        let all = Permissions::READ
            .union(Permissions::WRITE)
            .union(Permissions::EXEC_EL0)
            .union(Permissions::EXEC_EL1);
        let memory_region = |ipa_base, size, pa_base| L0Region {
            ipa_base,
            size,
            kind: L0RegionKind::Memory {
                pa_base,
                perms: all,
                mem_attr: MemAttr::NORMAL_WB,
                shareability: MemShareability::InnerShareable,
            },
        };
        let l0 = L0RegionMap::new(vec![
            memory_region(TABLES_L1_IPA, frames * PAGE, TABLES_PA),
            memory_region(DATA_L1_IPA, pages.max(1) * PAGE, DATA_PA),
        ])
        .expect("valid regions");
        L1Fixture {
            memory,
            l0,
            root,
            alias_roots,
            pages,
        }
    }

    /// L1's VTTBR_EL2 for `vmid`.
    pub fn vttbr(&self, vmid: u16) -> u64 {
        self.root | (u64::from(vmid) << 48)
    }

    /// The context key of `vmid` over these tables.
    pub fn key(&self, vmid: u16) -> ContextKey {
        self.key_at(vmid, 0)
    }

    /// The context key of `vmid` with VTTBR_EL2.BADDR the level-0 table
    /// `root`: 0 is [`L1Fixture::root`], `i` > 0 is `alias_roots[i - 1]`.
    pub fn key_at(&self, vmid: u16, root: usize) -> ContextKey {
        let baddr = match root {
            0 => self.root,
            i => self.alias_roots[i - 1],
        };
        ContextKey {
            vmid,
            vttbr: baddr | (u64::from(vmid) << 48),
            vtcr: L1_VTCR,
        }
    }

    /// A walker of these tables for `vmid`.
    pub fn walker(&self, vmid: u16) -> Stage2Walker {
        Stage2Walker::new(
            Stage2Registers {
                vtcr: L1_VTCR,
                vttbr: self.vttbr(vmid),
                endianness: Endianness::Little,
            },
            &exposed_features(),
        )
    }

    /// L2 IPA of page `i`.
    pub fn l2_ipa(i: u64) -> u64 {
        L2_BASE + i * PAGE
    }
}

/// Baseline 1: every walk result in one `Mutex<HashMap>`.
#[derive(Debug, Default)]
pub struct MutexHashMapCache {
    inner: Mutex<HashMapInner>,
}

#[derive(Debug, Default)]
struct HashMapInner {
    entries: HashMap<(ContextKey, u64), L1Translation>,
    /// Block sizes present (probed on lookup, smallest first).
    sizes: Vec<u64>,
    contexts: HashMap<u16, Vec<ContextKey>>,
}

impl MutexHashMapCache {
    /// An empty cache.
    pub fn new() -> MutexHashMapCache {
        MutexHashMapCache::default()
    }

    /// Caches a walk result.
    pub fn insert(&self, key: ContextKey, walk: L1Translation) {
        let mut inner = self.inner.lock().expect("not poisoned");
        if !inner.sizes.contains(&walk.size) {
            inner.sizes.push(walk.size);
            inner.sizes.sort_unstable();
        }
        let of_vmid = inner.contexts.entry(key.vmid).or_default();
        if !of_vmid.contains(&key) {
            of_vmid.push(key);
        }
        inner.entries.insert((key, walk.l2_ipa_base), walk);
    }

    /// The cached result translating `l2_ipa`.
    pub fn lookup(&self, key: &ContextKey, l2_ipa: u64) -> Option<L1Translation> {
        let inner = self.inner.lock().expect("not poisoned");
        inner.sizes.iter().find_map(|size| {
            inner
                .entries
                .get(&(*key, l2_ipa & !(size - 1)))
                .filter(|w| w.size == *size)
                .copied()
        })
    }

    /// Applies a TLBI for `vmid`; returns entries removed.
    pub fn invalidate(&self, vmid: u16, scope: &InvalidateScope) -> usize {
        let mut inner = self.inner.lock().expect("not poisoned");
        let before = inner.entries.len();
        match scope {
            InvalidateScope::AllVmids => inner.entries.clear(),
            InvalidateScope::Vmid => inner.entries.retain(|(k, _), _| k.vmid != vmid),
            InvalidateScope::Ipa(s) => {
                let HashMapInner {
                    entries,
                    sizes,
                    contexts,
                } = &mut *inner;
                for key in contexts.get(&vmid).into_iter().flatten() {
                    for size in sizes.iter() {
                        let mut base = s.range.start() & !(size - 1);
                        while base < s.range.end() {
                            entries.remove(&(*key, base));
                            base += size;
                        }
                    }
                }
            }
        }
        before - inner.entries.len()
    }

    /// Entries cached.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("not poisoned").entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One KVM-style context: its key and its shadow table.
#[derive(Debug)]
pub struct KvmContext<P: FramePool, T: TlbMaintenance> {
    key: ContextKey,
    shadow: ShadowTable<P, T>,
}

/// Why a KVM-style fault installed nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmFault {
    /// L1's walk faulted (its fault status code), or was contended (`None`).
    Walk(Option<u8>),
    /// Not L1 memory (MMIO or nothing).
    Unbacked,
    /// The composed entry could not be mapped.
    Map(MapError),
}

/// Baseline 2: KVM's nested stage-2 design (see the module docs).
#[derive(Debug)]
pub struct KvmStyle<P: FramePool + Clone, T: TlbMaintenance + Clone> {
    contexts: RwLock<Vec<KvmContext<P, T>>>,
    pool: P,
    tlb: T,
}

/// The range KVM unmaps for an IPA-based TLBI. A range TLBI (RIPAS2*):
/// exactly the range it describes, its TTL ignored. IPAS2*: with a level
/// hint, the hinted entry size around the IPA; without, the largest block
/// the granule can map (1 GiB for 4 KiB pages).
pub fn kvm_invalidation_range(scope: &IpaScope) -> (u64, u64) {
    // An IPAS2 scope is always the one 4 KiB unit its operand names; a
    // RIPAS2 scope at least two pages of its granule.
    if scope.range.len() > PAGE {
        return (scope.range.start(), scope.range.len());
    }
    let size = match scope.hint {
        TtlHint::Leaf { granule, level } => {
            let shift = granule.shift();
            1u64 << (shift + (3 - u32::from(level)) * (shift - 3))
        }
        TtlHint::Granule(granule) => match granule.shift() {
            12 => 1 << 30,
            14 => 1 << 25,
            _ => 1 << 29,
        },
        TtlHint::None => 1 << 30,
    };
    let start = scope.range.start() & !(size - 1);
    let end = scope.range.end().div_ceil(size).saturating_mul(size);
    (start, end - start)
}

impl<P: FramePool + Clone, T: TlbMaintenance + Clone> KvmStyle<P, T> {
    /// No contexts yet; shadow tables come from `pool`.
    pub fn new(pool: P, tlb: T) -> Self {
        KvmStyle {
            contexts: RwLock::new(Vec::new()),
            pool,
            tlb,
        }
    }

    /// Number of contexts.
    pub fn contexts(&self) -> usize {
        self.contexts.read().expect("not poisoned").len()
    }

    /// The shadow entry for `l2_ipa` (a hit: linear context scan, then a
    /// software walk of the shadow table).
    pub fn lookup(&self, key: &ContextKey, l2_ipa: u64) -> Option<ShadowMapping> {
        let contexts = self.contexts.read().expect("not poisoned");
        contexts
            .iter()
            .find(|c| c.key == *key)?
            .shadow
            .lookup(l2_ipa)
    }

    /// A shadow fault: full walk of L1's table, compose, map.
    pub fn fault(
        &self,
        key: &ContextKey,
        walker: &Stage2Walker,
        memory: &Memslots<'_>,
        l0: &impl L0Map,
        l2_ipa: u64,
        access: AccessKind,
    ) -> Result<ShadowMapping, KvmFault> {
        let t = walker
            .walk(memory, l2_ipa, access)
            .map_err(|e: WalkError| KvmFault::Walk(e.fault().map(|f| f.fsc())))?;
        let walk = L1Translation::from_translation(&t);
        // The baseline's shadows use `ShadowConfig::default()` (FEAT_XNX).
        let host = HostExecute::from_xnx(ShadowConfig::default().xnx);
        let composed = match resolve(&walk, l2_ipa, l0, host) {
            Ok(Composition::Mapped(c)) => c.shadow,
            _ => return Err(KvmFault::Unbacked),
        };
        {
            let contexts = self.contexts.read().expect("not poisoned");
            if let Some(c) = contexts.iter().find(|c| c.key == *key) {
                c.shadow.map(&composed).map_err(KvmFault::Map)?;
                return Ok(composed);
            }
        }
        let mut contexts = self.contexts.write().expect("not poisoned");
        if !contexts.iter().any(|c| c.key == *key) {
            let shadow =
                ShadowTable::new(self.pool.clone(), self.tlb.clone(), ShadowConfig::default())
                    .map_err(KvmFault::Map)?;
            contexts.push(KvmContext { key: *key, shadow });
        }
        let c = contexts.iter().find(|c| c.key == *key).expect("just added");
        c.shadow.map(&composed).map_err(KvmFault::Map)?;
        Ok(composed)
    }

    /// Installs an already composed entry (benchmark setup).
    pub fn install(&self, key: &ContextKey, m: &ShadowMapping) -> Result<(), MapError> {
        {
            let contexts = self.contexts.read().expect("not poisoned");
            if let Some(c) = contexts.iter().find(|c| c.key == *key) {
                return c.shadow.map(m).map(|_| ());
            }
        }
        let mut contexts = self.contexts.write().expect("not poisoned");
        let shadow =
            ShadowTable::new(self.pool.clone(), self.tlb.clone(), ShadowConfig::default())?;
        shadow.map(m)?;
        contexts.push(KvmContext { key: *key, shadow });
        Ok(())
    }

    /// The L2 IPA range `(start, len)` a TLBI of `scope` unmaps in each
    /// context it reaches.
    pub fn unmapped_range(scope: &InvalidateScope) -> (u64, u64) {
        match scope {
            InvalidateScope::Vmid | InvalidateScope::AllVmids => (0, 1 << 48),
            InvalidateScope::Ipa(s) => kvm_invalidation_range(s),
        }
    }

    /// Applies a TLBI for `vmid`: a whole-range unmap in the shadow table
    /// of every context of the VMID, found by scanning the list. Returns
    /// shadow leaves removed.
    pub fn invalidate(&self, vmid: u16, scope: &InvalidateScope) -> usize {
        let contexts = self.contexts.read().expect("not poisoned");
        let (start, len) = Self::unmapped_range(scope);
        let all = matches!(scope, InvalidateScope::AllVmids);
        contexts
            .iter()
            .filter(|c| all || c.key.vmid == vmid)
            .map(|c| c.shadow.unmap_range(start, len))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc::tlbi::{Shareability, Tlbi, TlbiOp, TlbiParams};
    use shadow_mmu::shadow_table::{HeapFramePool, NoHardwareTlb};
    use std::sync::Arc;

    fn ipas2e1(ipa: u64, ttl: Option<u8>) -> InvalidateScope {
        let tlbi = Tlbi {
            op: TlbiOp::Ipas2e1,
            shareability: Shareability::InnerShareable,
            nxs: false,
        };
        let params = TlbiParams {
            feat_ttl: ttl.is_some(),
            ..TlbiParams::default()
        };
        let ttl_bits = ttl.map_or(0, |level| (0b0100 | u64::from(level)) << 44);
        tlbi.decode((ipa >> 12) | ttl_bits, params)
            .expect("IPAS2E1 always decodes")
    }

    #[test]
    fn fixture_walks_every_page_to_its_l1_page() {
        let f = L1Fixture::new(1500);
        let w = f.walker(3);
        for i in [0, 1, 511, 512, 1499] {
            let t = w
                .walk(&f.memory, L1Fixture::l2_ipa(i), AccessKind::Read)
                .unwrap();
            assert_eq!(t.output_address, DATA_L1_IPA + i * PAGE);
            assert_eq!(t.block_size, PAGE);
        }
        assert!(w
            .walk(&f.memory, L1Fixture::l2_ipa(1500), AccessKind::Read)
            .is_err());
        let ipa = DATA_L1_IPA + 5 * PAGE;
        let m = f.l0.lookup(ipa).unwrap();
        assert_eq!(m.pa_base() + (ipa - m.ipa_base()), DATA_PA + 5 * PAGE);
    }

    /// RIPAS2E1IS over `pages` 4 KiB pages from `ipa`, no TTL hint.
    fn ripas2e1(ipa: u64, scale: u8, num: u8) -> InvalidateScope {
        let tlbi = Tlbi {
            op: TlbiOp::Ripas2e1,
            shareability: Shareability::InnerShareable,
            nxs: false,
        };
        let operand = ipc::tlbi::RangeOperand {
            granule: Some(ipc::tlbi::Granule::K4),
            scale,
            num,
            ttl: 0,
            base_addr: ipa >> 12,
        };
        tlbi.decode(operand.to_bits(), TlbiParams::default())
            .expect("a 4 KiB range decodes")
    }

    #[test]
    fn alias_roots_translate_like_the_root_under_their_own_keys() {
        let f = L1Fixture::with_alias_roots(1500, 3);
        assert_eq!(f.alias_roots.len(), 3);
        let keys: Vec<ContextKey> = (0..4).map(|r| f.key_at(7, r)).collect();
        assert_eq!(keys[0], f.key(7));
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(key.vmid, 7);
            assert!(keys[..i].iter().all(|k| k.vttbr != key.vttbr));
            let w = Stage2Walker::new(
                Stage2Registers {
                    vtcr: key.vtcr,
                    vttbr: key.vttbr,
                    endianness: Endianness::Little,
                },
                &exposed_features(),
            );
            for page in [0, 511, 512, 1499] {
                let t = w
                    .walk(&f.memory, L1Fixture::l2_ipa(page), AccessKind::Read)
                    .unwrap();
                assert_eq!(t.output_address, DATA_L1_IPA + page * PAGE);
            }
        }
    }

    #[test]
    fn kvm_style_range_tlbi_unmaps_exactly_its_range_in_every_context_of_the_vmid() {
        let f = L1Fixture::with_alias_roots(600, 1);
        let pool = Arc::new(HeapFramePool::new(64, 1 << 40).unwrap());
        let kvm = KvmStyle::new(pool, NoHardwareTlb);
        let keys = [f.key_at(1, 0), f.key_at(1, 1), f.key(2)];
        for key in &keys {
            for i in 0..600 {
                kvm.fault(
                    key,
                    &f.walker(key.vmid),
                    &f.memory,
                    &f.l0,
                    L1Fixture::l2_ipa(i),
                    AccessKind::Read,
                )
                .unwrap();
            }
        }
        assert_eq!(kvm.contexts(), 3);
        // 16 pages (NUM 7) from page 100: 16 in each of VMID 1's two
        // contexts, whatever the TTL would have said.
        let scope = ripas2e1(L1Fixture::l2_ipa(100), 0, 7);
        assert_eq!(
            KvmStyle::<Arc<HeapFramePool>, NoHardwareTlb>::unmapped_range(&scope),
            (L1Fixture::l2_ipa(100), 16 * PAGE)
        );
        assert_eq!(kvm.invalidate(1, &scope), 32);
        for key in &keys[..2] {
            assert!(kvm.lookup(key, L1Fixture::l2_ipa(99)).is_some());
            assert!(kvm.lookup(key, L1Fixture::l2_ipa(100)).is_none());
            assert!(kvm.lookup(key, L1Fixture::l2_ipa(115)).is_none());
            assert!(kvm.lookup(key, L1Fixture::l2_ipa(116)).is_some());
        }
        assert!(kvm.lookup(&keys[2], L1Fixture::l2_ipa(100)).is_some());
        // 256 pages (SCALE 1, NUM 3) over 200..456: 240 left in each.
        assert_eq!(
            kvm.invalidate(1, &ripas2e1(L1Fixture::l2_ipa(200), 1, 3)),
            2 * 256
        );
        assert_eq!(
            kvm.invalidate(1, &InvalidateScope::Vmid),
            2 * (600 - 16 - 256)
        );
    }

    #[test]
    fn hashmap_baseline_hits_and_invalidates() {
        let f = L1Fixture::new(64);
        let cache = MutexHashMapCache::new();
        let w = f.walker(1);
        for i in 0..64 {
            let t = w
                .walk(&f.memory, L1Fixture::l2_ipa(i), AccessKind::Read)
                .unwrap();
            cache.insert(f.key(1), L1Translation::from_translation(&t));
            cache.insert(f.key(2), L1Translation::from_translation(&t));
        }
        assert_eq!(cache.len(), 128);
        let hit = cache
            .lookup(&f.key(1), L1Fixture::l2_ipa(7) + 0x123)
            .unwrap();
        assert_eq!(hit.l1_ipa_base, DATA_L1_IPA + 7 * PAGE);
        assert_eq!(cache.invalidate(1, &ipas2e1(L1Fixture::l2_ipa(7), None)), 1);
        assert!(cache.lookup(&f.key(1), L1Fixture::l2_ipa(7)).is_none());
        assert!(cache.lookup(&f.key(2), L1Fixture::l2_ipa(7)).is_some());
        assert_eq!(cache.invalidate(2, &InvalidateScope::Vmid), 64);
        assert_eq!(cache.len(), 63);
    }

    #[test]
    fn kvm_style_unmaps_whole_ranges_in_every_context_of_the_vmid() {
        let f = L1Fixture::new(600);
        let pool = Arc::new(HeapFramePool::new(64, 1 << 40).unwrap());
        let kvm = KvmStyle::new(pool, NoHardwareTlb);
        for vmid in [1, 2] {
            let w = f.walker(vmid);
            for i in 0..600 {
                kvm.fault(
                    &f.key(vmid),
                    &w,
                    &f.memory,
                    &f.l0,
                    L1Fixture::l2_ipa(i),
                    AccessKind::Read,
                )
                .unwrap();
            }
        }
        assert_eq!(kvm.contexts(), 2);
        let hit = kvm.lookup(&f.key(2), L1Fixture::l2_ipa(9)).unwrap();
        assert_eq!(hit.pa_base, DATA_PA + 9 * PAGE);
        // With a level-3 hint only the page goes ...
        assert_eq!(
            kvm.invalidate(1, &ipas2e1(L1Fixture::l2_ipa(9), Some(3))),
            1
        );
        // ... without one, the whole 1 GiB around it, in VMID 1 only.
        assert_eq!(
            kvm.invalidate(1, &ipas2e1(L1Fixture::l2_ipa(10), None)),
            599
        );
        assert!(kvm.lookup(&f.key(1), L1Fixture::l2_ipa(100)).is_none());
        assert!(kvm.lookup(&f.key(2), L1Fixture::l2_ipa(100)).is_some());
        assert_eq!(kvm.invalidate(2, &InvalidateScope::Vmid), 600);
    }
}
