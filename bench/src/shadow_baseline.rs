//! Fixtures and baselines for the shadow-MMU benchmarks
//! (`benches/shadow_mmu.rs`).
//!
//! - [`L1Fixture`]: L1's stage-2 tables (4 KiB granule, 48-bit IPA, start
//!   level 0) mapping `pages` consecutive L2 pages to consecutive L1 pages,
//!   in memslots the walker reads, plus L0's map of that L1 memory; with
//!   [`L1Fixture::with_alias_roots`], further level-0 tables over the same
//!   lower tables, so one VMID can have several contexts (VTTBRs).
//! - [`MutexHashMapCache`]: the obvious cache, one `Mutex<HashMap>` keyed by
//!   (context, block base), probed once per block size present (hashbrown,
//!   foldhash: not std's slower SipHash).
//! - [`KvmStyle`]: the design of Linux's nested stage-2 (arch/arm64/kvm/
//!   nested.c, sys_regs.c, mmu.c), function by function: no walk-result
//!   cache (every shadow fault walks L1's table from the start level and
//!   installs the shadow leaf tagged with L1's leaf level,
//!   `kvm_encode_nested_level`), contexts in a list found by linear scan,
//!   and TLBIs applied under the write lock to the shadow table of every
//!   context of the VMID, found by scanning every context
//!   (`kvm_s2_mmu_iterate_by_vmid`):
//!   - IPAS2E1 without a TTL probes the shadow at the 4K-, 2M- and
//!     1G-aligned addresses for a tagged leaf (`get_guest_mapping_ttl`) and
//!     unmaps that leaf's L1 size around the IPA if it covers the IPA; only
//!     when no probe finds one (or the one found does not cover the IPA)
//!     does it unmap the largest size (1 GiB with 4 KiB pages,
//!     `compute_tlb_inval_range`). With a TTL: the TTL's size.
//!   - RIPAS2E1: exactly the range it describes (its TTL ignored, as
//!     `handle_ripas2e1is` does).
//!   - VMALLS12E1: `[0, 2^pa_bits)` in 1 GiB chunks, each walked from the
//!     root (`handle_vmalls12e1is` -> `stage2_apply_range`), or, as a
//!     lower bound, one pass over the whole input range ([`VmidUnmap`]).
//!
//!   Its shadow tables are the same [`ShadowTable`]s Umbra uses, so the
//!   comparison is about the cache and invalidation design, not the table
//!   code. Left out, all in KVM's favour: KVM's per-leaf indirect callback,
//!   `put_page` refcount atomic and TABLE_POST visits, the hardware TLBIs
//!   (one range TLBI per 1 GiB chunk on FWB + FEAT_TLBIRANGE hardware, else
//!   one per leaf), and the per-chunk `cond_resched_rwlock_write` check.
//!   Against KVM (costing the model more than KVM pays): the level tags
//!   live beside the table rather than in its descriptors' software bits
//!   (a few ns per install and per probe that finds a leaf; see
//!   `GuestLevelTags`), and a TTL whose level
//!   encoding is reserved reaches the baseline as "no TTL" (the decoder
//!   reads it so), so it probes where KVM would go straight to 1 GiB.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, RwLock};

use hashbrown::HashMap;
use ipc::message::ContextKey;
use ipc::tlbi::{InvalidateScope, IpaScope, TtlHint};
use shadow_mmu::compose::{
    resolve, Composition, HostExecute, L0Map, L0Region, L0RegionKind, L0RegionMap, L1Translation,
    MemAttr, MemShareability, Permissions, ShadowMapping,
};
use shadow_mmu::shadow_table::{FramePool, MapError, ShadowConfig, ShadowTable, TlbMaintenance};
use walker::{
    AccessKind, Endianness, Execute, ExposedFeatures, IdRegisters, Memslot, Memslots, S2Ap,
    Shareability, SlotAccess, Stage2Registers, Stage2Walker, WalkError,
};

use crate::walker_baseline::{BaselineTranslation, KvmStyleMemory};

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
    /// The words of L1's table memory (from [`TABLES_L1_IPA`]).
    pub table_words: &'static [AtomicU64],
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
            table_words: words,
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

    /// PA L0 backs L2 page `i` with (through L1's page).
    pub fn pa(i: u64) -> u64 {
        DATA_PA + i * PAGE
    }

    /// L1's table memory as KVM's memslots hold it (bytes in host memory,
    /// little-endian), for the KVM-style walker: a copy, taken now (the
    /// fixtures never change L1's tables after building them). Leaked,
    /// as the fixture is.
    pub fn kvm_memory(&self) -> KvmStyleMemory<'static> {
        let bytes: &'static [u8] = self
            .table_words
            .iter()
            .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
            .collect::<Vec<u8>>()
            .leak();
        KvmStyleMemory::new(vec![(TABLES_L1_IPA, bytes)])
    }
}

/// Baseline 1: every walk result in one `Mutex<HashMap>` (hashbrown with
/// its default foldhash hasher, as the project's own maps use).
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

/// The size a TLBI TTL names (`ttl_to_size` in nested.c): L1's granule
/// (log2 of its size) and the level of L1's leaf; `None` where KVM's
/// function returns 0 (level 0 with any granule, level 1 with 16K or 64K).
pub fn ttl_to_size(granule_shift: u32, level: u8) -> Option<u64> {
    match (granule_shift, level) {
        (12, 1) => Some(1 << 30),
        (12, 2) => Some(1 << 21),
        (12, 3) => Some(1 << 12),
        (14, 2) => Some(1 << 25),
        (14, 3) => Some(1 << 14),
        (16, 2) => Some(1 << 29),
        (16, 3) => Some(1 << 16),
        _ => None,
    }
}

/// log2 of the granule VTCR_EL2.TG0 names, read as KVM reads
/// `mmu->tlb_vtcr` (0b00 4K, 0b10 16K, anything else 64K: "IMPDEF: treat
/// any other value as 64k").
pub fn vtcr_granule_shift(vtcr: u64) -> u32 {
    match (vtcr >> 14) & 3 {
        0b00 => 12,
        0b10 => 14,
        _ => 16,
    }
}

/// The fallback of `compute_tlb_inval_range` when it has no size: the
/// largest block L1's granule maps at level 2 or above that KVM handles
/// (1 GiB for 4K, 32 MiB for 16K, 512 MiB for 64K).
pub fn max_invalidation_size(granule_shift: u32) -> u64 {
    match granule_shift {
        12 => 1 << 30,
        14 => 1 << 25,
        _ => 1 << 29,
    }
}

/// L1's leaf level for a leaf of `size` bytes in tables of granule
/// `granule_shift`: what KVM's `kvm_s2_trans.level` holds after the walk.
/// `None` for a size no level of that granule maps.
pub fn l1_leaf_level(granule_shift: u32, size: u64) -> Option<u8> {
    let bits = size.trailing_zeros();
    if !size.is_power_of_two() || bits < granule_shift {
        return None;
    }
    let stride = granule_shift - 3;
    let above = bits - granule_shift;
    (above.is_multiple_of(stride) && above / stride <= 3).then(|| 3 - (above / stride) as u8)
}

/// The level tag KVM keeps in the two software bits of every shadow leaf
/// it installs for a nested fault: L1's leaf level (mmu.c
/// `adjust_nested_fault_perms` -> `kvm_encode_nested_level`, the
/// `KVM_NV_GUEST_MAP_SZ` bits), read back by `get_guest_mapping_ttl`.
///
/// Umbra's [`ShadowTable`] keeps no software bits in its descriptors, so the
/// baseline keeps the tag beside the table instead: one byte per 4 KiB of
/// L2 IPA space, in 1 GiB regions allocated on first use, indexed by the
/// shadow leaf's base address. Reading a tag is a search of the (few)
/// regions and one byte load, where KVM gets the bits with the descriptor
/// it has just read: a few nanoseconds more than KVM pays, charged to the
/// baseline on the probe of a TLBI without a TTL that finds a leaf, and on
/// every install (a fault writes the tag beside the table; KVM ORs it into
/// the descriptor it writes anyway).
/// A tag outlives its leaf (KVM's goes with the descriptor); it is read
/// only for a leaf the shadow table holds, and every install rewrites it,
/// so a stale tag is never read.
#[derive(Debug, Default)]
struct GuestLevelTags {
    /// (L2 IPA >> 30, one tag per 4 KiB of that GiB), sorted by region.
    regions: Vec<(u64, Box<[AtomicU8]>)>,
}

const TAG_REGION_SHIFT: u32 = 30;

impl GuestLevelTags {
    fn slot(&self, l2_ipa: u64) -> Option<&AtomicU8> {
        let region = l2_ipa >> TAG_REGION_SHIFT;
        let i = self
            .regions
            .binary_search_by_key(&region, |(r, _)| *r)
            .ok()?;
        let index = (l2_ipa & ((1 << TAG_REGION_SHIFT) - 1)) >> 12;
        self.regions[i].1.get(index as usize)
    }

    /// The tag of the shadow leaf at `leaf_base` (0: none).
    fn get(&self, leaf_base: u64) -> u8 {
        self.slot(leaf_base)
            .map_or(0, |tag| tag.load(Ordering::Relaxed))
    }

    /// Tags the leaf at `leaf_base`; false if its region is not allocated
    /// yet ([`GuestLevelTags::set_allocating`]).
    fn set(&self, leaf_base: u64, level: u8) -> bool {
        self.slot(leaf_base)
            .map(|tag| tag.store(level, Ordering::Relaxed))
            .is_some()
    }

    fn set_allocating(&mut self, leaf_base: u64, level: u8) {
        let region = leaf_base >> TAG_REGION_SHIFT;
        if let Err(i) = self.regions.binary_search_by_key(&region, |(r, _)| *r) {
            let tags = (0..1usize << (TAG_REGION_SHIFT - 12))
                .map(|_| AtomicU8::new(0))
                .collect();
            self.regions.insert(i, (region, tags));
        }
        self.set(leaf_base, level);
    }
}

/// Whether the 1 GiB chunk of `shadow` at `chunk_base` holds anything:
/// the descriptors a KVM walk of an empty chunk reads (the root entry, and
/// the level-1 entry under it if the root entry is a table), read from the
/// table's frames in the stage-2 descriptor format.
fn chunk_in_use<P: FramePool, T: TlbMaintenance>(
    shadow: &ShadowTable<P, T>,
    chunk_base: u64,
) -> bool {
    const TABLE: u64 = 0b11;
    const OA: u64 = 0x0000_ffff_ffff_f000;
    let pool = shadow.pool();
    let Some(root) = pool.frame(shadow.root_pa()) else {
        return false;
    };
    let d0 = root.0[((chunk_base >> 39) & 511) as usize].load(Ordering::Relaxed);
    if d0 & TABLE != TABLE {
        // Invalid (no level-0 blocks with 4 KiB pages).
        return d0 != 0;
    }
    pool.frame(d0 & OA).is_none_or(|level1| {
        level1.0[((chunk_base >> 30) & 511) as usize].load(Ordering::Relaxed) != 0
    })
}

/// mmu.c `kvm_stage2_unmap_range` of `shadow` over `[0, 2^pa_bits)`
/// (`pa_bits` clamped to 32..=48): `stage2_apply_range` walks it in chunks
/// of `kvm_granule_size(KVM_PGTABLE_MIN_BLOCK_LEVEL)` (1 GiB with 4 KiB host
/// pages), each a `kvm_pgtable_stage2_unmap` from the root. An empty chunk
/// costs the baseline the descriptor reads of that walk (not
/// `ShadowTable::unmap_range`, whose locking and emptiness checks KVM's
/// walk of an empty chunk does not have); KVM's walker also makes its
/// indirect callback call for the invalid entry, and on FWB +
/// FEAT_TLBIRANGE hardware issues a range TLBI per chunk, neither charged
/// here. A chunk in use gets one `ShadowTable::unmap_range_leaf_by_leaf`
/// (KVM's `stage2_unmap_walker` visits every leaf). Returns leaves
/// removed.
pub fn kvm_unmap_chunked<P: FramePool, T: TlbMaintenance>(
    shadow: &ShadowTable<P, T>,
    pa_bits: u8,
) -> usize {
    (0..1u64 << (pa_bits.clamp(32, 48) - 30))
        .map(|chunk| chunk << 30)
        .filter(|&base| chunk_in_use(shadow, base))
        .map(|base| shadow.unmap_range_leaf_by_leaf(base, 1 << 30))
        .sum()
}

/// One KVM-style context (a `kvm_s2_mmu`): its key, its shadow table and
/// the level tags of its leaves.
#[derive(Debug)]
pub struct KvmContext<P: FramePool, T: TlbMaintenance> {
    key: ContextKey,
    shadow: ShadowTable<P, T>,
    tags: GuestLevelTags,
}

impl<P: FramePool, T: TlbMaintenance> KvmContext<P, T> {
    /// log2 of L1's granule (`mmu->tlb_vtcr`'s TG0).
    fn granule_shift(&self) -> u32 {
        vtcr_granule_shift(self.key.vtcr)
    }

    /// nested.c `get_guest_mapping_ttl`: probes the shadow at `addr`
    /// aligned to each block size of L1's granule, smallest first (4K, 2M,
    /// 1G for 4K pages), for a valid leaf carrying a level tag; the first
    /// one found decides: its level's size if that range, from the probed
    /// address, covers `addr`, else nothing (no further probe). `None` when
    /// no probe finds a tagged leaf.
    fn guest_mapping_size(&self, addr: u64) -> Option<u64> {
        let g = self.granule_shift();
        let sizes: &[u64] = match g {
            12 => &[1 << 12, 1 << 21, 1 << 30],
            14 => &[1 << 14, 1 << 25],
            _ => &[1 << 16, 1 << 29],
        };
        for &sz in sizes {
            let probed = addr & !(sz - 1);
            // `kvm_pgtable_get_leaf`: the leaf (of any size) translating
            // the probed address; an error or an invalid entry: next size.
            let Some(leaf) = self.shadow.lookup(probed) else {
                continue;
            };
            let level = self.tags.get(leaf.l2_ipa_base);
            if level == 0 {
                continue;
            }
            let size = ttl_to_size(g, level).unwrap_or(0);
            return (addr < probed + size).then_some(size);
        }
        None
    }

    /// nested.c `compute_tlb_inval_range` with `s2_mmu_unmap_ipa`'s
    /// alignment for an IPAS2* (a 4 KiB `scope`), or `handle_ripas2e1is`'s
    /// exact range for a RIPAS2*: the `(start, len)` unmapped here.
    fn ipa_unmap_range(&self, scope: &IpaScope) -> (u64, u64) {
        if scope.range.len() > PAGE {
            // RIPAS2*: the range as described, TTL ignored.
            return (scope.range.start(), scope.range.len());
        }
        let addr = scope.range.start();
        let size = match scope.hint {
            TtlHint::Leaf { granule, level } => ttl_to_size(granule.shift(), level),
            // A TTL naming a granule but no level: `ttl_to_size` gives 0,
            // and KVM does not probe (the TTL is not 0).
            TtlHint::Granule(_) => None,
            // No TTL (or no FEAT_TTL): ask the shadow.
            TtlHint::None => self.guest_mapping_size(addr),
        }
        .unwrap_or_else(|| max_invalidation_size(self.granule_shift()));
        (addr & !(size - 1), size)
    }

    fn unmap_chunked(&self, pa_bits: u8) -> usize {
        kvm_unmap_chunked(&self.shadow, pa_bits)
    }

    /// Installs `m` tagged with L1's `level`, if the tag's region exists.
    fn map_tagged(&self, m: &ShadowMapping, level: u8) -> Option<Result<(), MapError>> {
        self.tags
            .set(m.l2_ipa_base, level)
            .then(|| self.shadow.map(m).map(|_| ()))
    }
}

/// The leaf of a KVM-style walk of `l2_ipa` in the form composition takes:
/// block bases from the block size, S2AP, XN, MemAttr and SH from the
/// descriptor (no FEAT_LPA2 in these fixtures, so SH is in the
/// descriptor).
pub fn l1_translation_of(t: &BaselineTranslation, l2_ipa: u64) -> L1Translation {
    let offset = t.block_size - 1;
    let bits = |shift: u32, width: u32| ((t.desc >> shift) & ((1 << width) - 1)) as u8;
    L1Translation {
        l2_ipa_base: l2_ipa & !offset,
        l1_ipa_base: t.oa & !offset,
        size: t.block_size,
        s2ap: S2Ap::from_bits(bits(6, 2)),
        execute: Execute::from_xn(bits(53, 2)),
        mem_attr: MemAttr::from_bits(bits(2, 4)),
        shareability: Shareability::from_bits(bits(8, 2)),
    }
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

/// How a VMALLS12E1 (or ALLE1) is carried out in each context it reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmidUnmap {
    /// What KVM does (sys_regs.c `handle_vmalls12e1is`): unmap
    /// `[0, 2^pa_bits)`, `pa_bits` being `kvm_get_pa_bits` (reset.c: the
    /// host's `kvm_ipa_limit`, its PARange), in 1 GiB chunks, each walked
    /// from the root ([`VmidUnmap::chunked`]).
    Chunked {
        /// log2 of the IPA space unmapped, 32..=48.
        pa_bits: u8,
    },
    /// One `ShadowTable::unmap_range_leaf_by_leaf` over `[0, 2^48)`: less work than
    /// KVM's chunked walk, so a lower bound of KVM's cost (not KVM's
    /// algorithm).
    OnePass,
}

impl VmidUnmap {
    /// KVM's chunked unmap of `[0, 2^pa_bits)`; `None` unless `pa_bits` is
    /// in 32..=48 (KVM's nested stage 2 has no 52-bit IPA).
    pub const fn chunked(pa_bits: u8) -> Option<VmidUnmap> {
        if pa_bits >= 32 && pa_bits <= 48 {
            Some(VmidUnmap::Chunked { pa_bits })
        } else {
            None
        }
    }
}

/// Baseline 2: KVM's nested stage-2 design (see the module docs).
#[derive(Debug)]
pub struct KvmStyle<P: FramePool + Clone, T: TlbMaintenance + Clone> {
    contexts: RwLock<Vec<KvmContext<P, T>>>,
    pool: P,
    tlb: T,
}

/// Index of a context in a [`KvmStyle`] (contexts are never removed, so it
/// stays valid): what KVM's `vcpu->arch.hw_mmu` is, chosen once at
/// vcpu_load (`get_s2_mmu_nested`) rather than per fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvmContextIndex(usize);

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

    /// The context of `key`, found by a linear scan (`lookup_s2_mmu`), as
    /// KVM does once at vcpu_load.
    pub fn context_index(&self, key: &ContextKey) -> Option<KvmContextIndex> {
        let contexts = self.contexts.read().expect("not poisoned");
        contexts
            .iter()
            .position(|c| c.key == *key)
            .map(KvmContextIndex)
    }

    /// The shadow entry for `l2_ipa` in the context found by
    /// [`KvmStyle::context_index`]: a software walk of its shadow table
    /// (a hit; in KVM a present shadow entry never traps, so this is the
    /// software cost of finding one).
    pub fn lookup_in(&self, context: KvmContextIndex, l2_ipa: u64) -> Option<ShadowMapping> {
        let contexts = self.contexts.read().expect("not poisoned");
        contexts.get(context.0)?.shadow.lookup(l2_ipa)
    }

    /// The shadow entry for `l2_ipa` (linear context scan, then a software
    /// walk of the shadow table).
    pub fn lookup(&self, key: &ContextKey, l2_ipa: u64) -> Option<ShadowMapping> {
        let contexts = self.contexts.read().expect("not poisoned");
        contexts
            .iter()
            .find(|c| c.key == *key)?
            .shadow
            .lookup(l2_ipa)
    }

    /// A shadow fault: full walk of L1's table, compose, map (tagged with
    /// L1's leaf level).
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
        self.compose_and_map(key, &walk, t.level, l0, l2_ipa)
    }

    /// A shadow fault as KVM takes it end to end: L1's table walked with
    /// the KVM-style walker (`kvm_walk_nested_s2`: registers decoded, one
    /// `kvm_read_guest` per level), the leaf decoded as KVM's
    /// `kvm_s2_trans_*` accessors read `kvm_s2_trans.desc`, composed with
    /// L0's map and mapped tagged with L1's level, under the read lock.
    pub fn fault_kvm_walk(
        &self,
        key: &ContextKey,
        memory: &KvmStyleMemory<'_>,
        l0: &impl L0Map,
        l2_ipa: u64,
    ) -> Result<ShadowMapping, KvmFault> {
        let t = memory
            .walk(key.vtcr, key.vttbr, l2_ipa)
            .map_err(|_| KvmFault::Walk(None))?;
        let walk = l1_translation_of(&t, l2_ipa);
        self.compose_and_map(key, &walk, t.level, l0, l2_ipa)
    }

    /// The end of a fault, after L1's walk found `walk` at `level`: compose
    /// with L0's map, map tagged with L1's level.
    fn compose_and_map(
        &self,
        key: &ContextKey,
        walk: &L1Translation,
        level: i8,
        l0: &impl L0Map,
        l2_ipa: u64,
    ) -> Result<ShadowMapping, KvmFault> {
        // The baseline's shadows use `ShadowConfig::default()` (FEAT_XNX).
        let host = HostExecute::from_xnx(ShadowConfig::default().xnx);
        let composed = match resolve(walk, l2_ipa, l0, host) {
            Ok(Composition::Mapped(c)) => c.shadow,
            _ => return Err(KvmFault::Unbacked),
        };
        // `kvm_encode_nested_level(trans->level)`: 2 bits, level 0 (or an
        // LPA2 level -1) leaves no tag.
        let level = u8::try_from(level).unwrap_or(0) & 3;
        self.map_tagged(key, &composed, level)
            .map_err(KvmFault::Map)?;
        Ok(composed)
    }

    /// Installs an already composed entry (benchmark setup) for L1's leaf
    /// `l1` (whose size gives the level tag).
    pub fn install(
        &self,
        key: &ContextKey,
        l1: &L1Translation,
        m: &ShadowMapping,
    ) -> Result<(), MapError> {
        let level = l1_leaf_level(vtcr_granule_shift(key.vtcr), l1.size).unwrap_or(0) & 3;
        self.map_tagged(key, m, level)
    }

    fn map_tagged(&self, key: &ContextKey, m: &ShadowMapping, level: u8) -> Result<(), MapError> {
        {
            // The fault path holds `mmu_lock` for read (`kvm_fault_lock`).
            let contexts = self.contexts.read().expect("not poisoned");
            if let Some(c) = contexts.iter().find(|c| c.key == *key) {
                if let Some(done) = c.map_tagged(m, level) {
                    return done;
                }
            }
        }
        // A new context, or a tag region not allocated yet.
        let mut contexts = self.contexts.write().expect("not poisoned");
        let index = match contexts.iter().position(|c| c.key == *key) {
            Some(i) => i,
            None => {
                let shadow =
                    ShadowTable::new(self.pool.clone(), self.tlb.clone(), ShadowConfig::default())?;
                contexts.push(KvmContext {
                    key: *key,
                    shadow,
                    tags: GuestLevelTags::default(),
                });
                contexts.len() - 1
            }
        };
        let c = &mut contexts[index];
        c.tags.set_allocating(m.l2_ipa_base, level);
        c.shadow.map(m).map(|_| ())
    }

    /// What a TLBI of `scope` for `vmid` will unmap, context by context
    /// (the same decisions [`KvmStyle::invalidate`] makes, without making
    /// any change): for restoring afterwards.
    pub fn unmap_plan(&self, vmid: u16, scope: &InvalidateScope) -> Vec<(ContextKey, u64, u64)> {
        let contexts = self.contexts.read().expect("not poisoned");
        let all = matches!(scope, InvalidateScope::AllVmids);
        contexts
            .iter()
            .filter(|c| all || c.key.vmid == vmid)
            .map(|c| {
                let (start, len) = match scope {
                    InvalidateScope::Vmid | InvalidateScope::AllVmids => (0, 1 << 48),
                    InvalidateScope::Ipa(s) => c.ipa_unmap_range(s),
                };
                (c.key, start, len)
            })
            .collect()
    }

    /// Applies a TLBI for `vmid` as KVM does, a VMALLS12E1 in 1 GiB chunks
    /// over a 40-bit IPA space ([`KvmStyle::invalidate_with`]). Returns
    /// shadow leaves removed.
    pub fn invalidate(&self, vmid: u16, scope: &InvalidateScope) -> usize {
        self.invalidate_with(vmid, scope, VmidUnmap::Chunked { pa_bits: 40 })
    }

    /// Applies a TLBI for `vmid` under the write lock (`mmu_lock`, taken
    /// by `kvm_s2_mmu_iterate_by_vmid`), in every context of the VMID
    /// (every context for ALLE1), found by scanning the list:
    /// - IPAS2*: `compute_tlb_inval_range` (the TTL's size, else the
    ///   shadow probe `get_guest_mapping_ttl` models, else the
    ///   granule's maximum) around the IPA;
    /// - RIPAS2*: exactly its range;
    /// - VMALLS12E1 / ALLE1: as `vmid_unmap` says.
    ///
    /// Returns shadow leaves removed.
    pub fn invalidate_with(
        &self,
        vmid: u16,
        scope: &InvalidateScope,
        vmid_unmap: VmidUnmap,
    ) -> usize {
        let contexts = self.contexts.write().expect("not poisoned");
        let all = matches!(scope, InvalidateScope::AllVmids);
        contexts
            .iter()
            .filter(|c| all || c.key.vmid == vmid)
            .map(|c| match (scope, vmid_unmap) {
                (InvalidateScope::Ipa(s), _) => {
                    let (start, len) = c.ipa_unmap_range(s);
                    // KVM's walker visits every leaf (`stage2_unmap_walker`);
                    // Umbra's `unmap_range` unlinks whole level-3 tables.
                    c.shadow.unmap_range_leaf_by_leaf(start, len)
                }
                (_, VmidUnmap::Chunked { pa_bits }) => c.unmap_chunked(pa_bits),
                (_, VmidUnmap::OnePass) => c.shadow.unmap_range_leaf_by_leaf(0, 1 << 48),
            })
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

    /// The KVM-style walker's leaf, decoded for composition, is Umbra's
    /// walker's, and a fault through it installs the same shadow entry.
    #[test]
    fn kvm_walk_faults_install_what_the_walker_faults_install() {
        let f = L1Fixture::new(1100);
        let memory = f.kvm_memory();
        let w = f.walker(2);
        let key = f.key(2);
        let by_walker = KvmStyle::new(
            Arc::new(HeapFramePool::new(16, 1 << 40).unwrap()),
            NoHardwareTlb,
        );
        let by_kvm_walk = KvmStyle::new(
            Arc::new(HeapFramePool::new(16, 1 << 40).unwrap()),
            NoHardwareTlb,
        );
        for i in [0, 1, 511, 512, 1099] {
            let ipa = L1Fixture::l2_ipa(i) + 0x18;
            let t = w.walk(&f.memory, ipa, AccessKind::Read).unwrap();
            let kvm = memory.walk(key.vtcr, key.vttbr, ipa).unwrap();
            assert_eq!(
                l1_translation_of(&kvm, ipa),
                L1Translation::from_translation(&t)
            );
            let expected = by_walker
                .fault(&key, &w, &f.memory, &f.l0, ipa, AccessKind::Read)
                .unwrap();
            let got = by_kvm_walk
                .fault_kvm_walk(&key, &memory, &f.l0, ipa)
                .unwrap();
            assert_eq!(got, expected);
            assert_eq!(got.pa_base, L1Fixture::pa(i));
            assert_eq!(by_kvm_walk.lookup(&key, ipa), Some(got));
        }
        // Past the last page: L1's walk faults, nothing is installed.
        let beyond = L1Fixture::l2_ipa(1100);
        assert_eq!(
            by_kvm_walk.fault_kvm_walk(&key, &memory, &f.l0, beyond),
            Err(KvmFault::Walk(None))
        );
        assert_eq!(by_kvm_walk.lookup(&key, beyond), None);
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
            kvm.unmap_plan(1, &scope),
            vec![
                (keys[0], L1Fixture::l2_ipa(100), 16 * PAGE),
                (keys[1], L1Fixture::l2_ipa(100), 16 * PAGE)
            ]
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

    fn faulted_kvm(
        f: &L1Fixture,
        vmids: &[u16],
        pages: u64,
    ) -> KvmStyle<Arc<HeapFramePool>, NoHardwareTlb> {
        let pool = Arc::new(HeapFramePool::new(64, 1 << 40).unwrap());
        let kvm = KvmStyle::new(pool, NoHardwareTlb);
        for &vmid in vmids {
            let w = f.walker(vmid);
            for i in 0..pages {
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
        kvm
    }

    #[test]
    fn kvm_style_page_tlbi_without_ttl_unmaps_the_tagged_leaf_in_every_context_of_the_vmid() {
        let f = L1Fixture::new(600);
        let kvm = faulted_kvm(&f, &[1, 2], 600);
        assert_eq!(kvm.contexts(), 2);
        let hit = kvm.lookup(&f.key(2), L1Fixture::l2_ipa(9)).unwrap();
        assert_eq!(hit.pa_base, DATA_PA + 9 * PAGE);
        // With a level-3 hint only the page goes ...
        assert_eq!(
            kvm.invalidate(1, &ipas2e1(L1Fixture::l2_ipa(9), Some(3))),
            1
        );
        // ... and without one too: the probe finds page 10's leaf, tagged
        // level 3 by the fault (L1 maps it with a page).
        let scope = ipas2e1(L1Fixture::l2_ipa(10), None);
        assert_eq!(
            kvm.unmap_plan(1, &scope),
            vec![(f.key(1), L1Fixture::l2_ipa(10), PAGE)]
        );
        assert_eq!(kvm.invalidate(1, &scope), 1);
        assert!(kvm.lookup(&f.key(1), L1Fixture::l2_ipa(10)).is_none());
        assert!(kvm.lookup(&f.key(1), L1Fixture::l2_ipa(11)).is_some());
        assert!(kvm.lookup(&f.key(2), L1Fixture::l2_ipa(10)).is_some());
        // The VMID flush, chunked over 40 bits, reaches the fixture's GiB
        // (L2 IPA 512 GiB) and removes the 598 left in VMID 1 only.
        assert_eq!(kvm.invalidate(1, &InvalidateScope::Vmid), 598);
        assert_eq!(kvm.invalidate(2, &InvalidateScope::Vmid), 600);
    }

    #[test]
    fn kvm_style_page_tlbi_without_ttl_unmaps_a_gib_for_a_page_the_shadow_lacks() {
        let f = L1Fixture::new(600);
        let kvm = faulted_kvm(&f, &[1], 600);
        // Pages 10 (inside a 2 MiB region whose first page is present),
        // 512 (the first page of the next 2 MiB) and 0 (the first of the
        // GiB) leave the shadow, as if L2 never touched them.
        for page in [10, 512, 0] {
            assert_eq!(
                kvm.invalidate(1, &ipas2e1(L1Fixture::l2_ipa(page), Some(3))),
                1
            );
        }
        let gib = L1Fixture::l2_ipa(0) & !((1 << 30) - 1);
        // Page 10: the 4K probe finds nothing, the 2M probe finds page 0's
        // leaf... which is gone too; the 1G probe (page 0 again) nothing:
        // the whole GiB.
        assert_eq!(
            kvm.unmap_plan(1, &ipas2e1(L1Fixture::l2_ipa(10), None)),
            vec![(f.key(1), gib, 1 << 30)]
        );
        // Page 0 back: page 10's 2M probe finds it, tagged level 3, and a
        // 4 KiB page at the region's start does not cover page 10: still
        // the GiB (KVM does not go on to the 1G probe).
        let w = f.walker(1);
        kvm.fault(
            &f.key(1),
            &w,
            &f.memory,
            &f.l0,
            L1Fixture::l2_ipa(0),
            AccessKind::Read,
        )
        .unwrap();
        assert_eq!(
            kvm.unmap_plan(1, &ipas2e1(L1Fixture::l2_ipa(10), None)),
            vec![(f.key(1), gib, 1 << 30)]
        );
        assert_eq!(
            kvm.unmap_plan(1, &ipas2e1(L1Fixture::l2_ipa(512), None)),
            vec![(f.key(1), gib, 1 << 30)]
        );
        assert_eq!(
            kvm.invalidate(1, &ipas2e1(L1Fixture::l2_ipa(10), None)),
            600 - 2
        );
        assert!(kvm.lookup(&f.key(1), L1Fixture::l2_ipa(599)).is_none());
    }

    #[test]
    fn kvm_style_level_tag_of_a_2m_l1_block_unmaps_its_2m() {
        // L1 maps a 2 MiB block that L0 backs with 4 KiB pages: the shadow
        // holds 4 KiB leaves tagged level 2.
        let f = L1Fixture::new(1024);
        let pool = Arc::new(HeapFramePool::new(64, 1 << 40).unwrap());
        let kvm = KvmStyle::new(pool, NoHardwareTlb);
        let key = f.key(1);
        let w = f.walker(1);
        let region = L1Fixture::l2_ipa(512);
        for page in (512..520).chain([600]) {
            let t = w
                .walk(&f.memory, L1Fixture::l2_ipa(page), AccessKind::Read)
                .unwrap();
            let page_leaf = L1Translation::from_translation(&t);
            let Ok(Composition::Mapped(c)) = resolve(
                &page_leaf,
                L1Fixture::l2_ipa(page),
                &f.l0,
                HostExecute::PerLevel,
            ) else {
                panic!("L1 memory")
            };
            let shadow = c.shadow;
            assert_eq!(shadow.size, PAGE);
            // The tag comes from L1's leaf: a 2 MiB block.
            let l1 = L1Translation {
                l2_ipa_base: region,
                size: 1 << 21,
                ..page_leaf
            };
            kvm.install(&key, &l1, &shadow).unwrap();
        }
        // A present page: its tag names 2 MiB, which covers it.
        assert_eq!(
            kvm.unmap_plan(1, &ipas2e1(L1Fixture::l2_ipa(515), None)),
            vec![(key, region, 1 << 21)]
        );
        // An absent page of the block: the 2M probe finds the region's
        // first page, whose tag (2 MiB) covers it.
        assert_eq!(
            kvm.unmap_plan(1, &ipas2e1(L1Fixture::l2_ipa(700), None)),
            vec![(key, region, 1 << 21)]
        );
        assert_eq!(kvm.invalidate(1, &ipas2e1(L1Fixture::l2_ipa(700), None)), 9);
    }

    #[test]
    fn kvm_style_vmid_flush_covers_pa_bits_in_chunks_or_one_pass() {
        let f = L1Fixture::new(600);
        let kvm = faulted_kvm(&f, &[1], 600);
        // The fixture sits at 512 GiB: a 32-bit IPA space (as a host with
        // PARange 32 bits gives) does not reach it; KVM's walk of its
        // shadow would not either.
        let pa32 = VmidUnmap::chunked(32).unwrap();
        assert_eq!(kvm.invalidate_with(1, &InvalidateScope::Vmid, pa32), 0);
        let pa48 = VmidUnmap::chunked(48).unwrap();
        assert_eq!(kvm.invalidate_with(1, &InvalidateScope::Vmid, pa48), 600);
        let kvm = faulted_kvm(&f, &[1], 600);
        assert_eq!(
            kvm.invalidate_with(1, &InvalidateScope::Vmid, VmidUnmap::OnePass),
            600
        );
        assert_eq!(VmidUnmap::chunked(31), None);
        assert_eq!(VmidUnmap::chunked(52), None);
    }

    #[test]
    fn ttl_sizes_levels_and_fallbacks_follow_nested_c() {
        assert_eq!(ttl_to_size(12, 0), None);
        assert_eq!(ttl_to_size(12, 1), Some(1 << 30));
        assert_eq!(ttl_to_size(12, 3), Some(PAGE));
        assert_eq!(ttl_to_size(14, 1), None);
        assert_eq!(ttl_to_size(14, 2), Some(1 << 25));
        assert_eq!(ttl_to_size(16, 1), None);
        assert_eq!(ttl_to_size(16, 2), Some(1 << 29));
        assert_eq!(vtcr_granule_shift(L1_VTCR), 12);
        assert_eq!(vtcr_granule_shift(0b01 << 14), 16);
        assert_eq!(vtcr_granule_shift(0b10 << 14), 14);
        assert_eq!(vtcr_granule_shift(0b11 << 14), 16);
        assert_eq!(max_invalidation_size(12), 1 << 30);
        assert_eq!(max_invalidation_size(14), 1 << 25);
        assert_eq!(max_invalidation_size(16), 1 << 29);
        assert_eq!(l1_leaf_level(12, PAGE), Some(3));
        assert_eq!(l1_leaf_level(12, 1 << 21), Some(2));
        assert_eq!(l1_leaf_level(12, 1 << 30), Some(1));
        assert_eq!(l1_leaf_level(16, 1 << 29), Some(2));
        assert_eq!(l1_leaf_level(12, 1 << 20), None);
        assert_eq!(l1_leaf_level(12, 3 << 12), None);
        assert_eq!(l1_leaf_level(14, PAGE), None);
    }
}
