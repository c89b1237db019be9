//! Fixtures and the KVM-style baseline for the walker benchmarks
//! (`benches/walker.rs`).
//!
//! The fixtures build real stage-2 tables in plain byte buffers (little-endian
//! descriptors, the layout of the Arm ARM's VMSAv8-64 stage-2 format), so the
//! walker under test and the baseline walk exactly the same bytes.
//!
//! The baseline ([`KvmStyleMemory::walk`]) is Linux KVM's nested stage-2
//! walker (arch/arm64/kvm/nested.c) and its guest-memory read path
//! (virt/kvm/kvm_main.c, include/linux/kvm_host.h) done step by step in
//! user space, so the comparison is against what KVM really does per level,
//! no more and no less. Per walk and per level:
//!
//! | KVM | here |
//! |---|---|
//! | `kvm_walk_nested_s2`: read VTCR/VTTBR, `vtcr_to_walk_info`, `be` from SCTLR_EL2.EE | [`KvmStyleMemory::walk`] decodes the registers on every walk, builds an `S2WalkInfo` |
//! | `walk_nested_s2_pgd`: input-size range, `check_base_s2_limits`, base masked with `GENMASK_ULL(47, base_lower_bound)`, `check_output_size(base)` | same checks, once per walk |
//! | per level: index from `GENMASK_ULL(addr_top, addr_bottom)`, `wi->read_desc(paddr, &desc, wi->data)` through the function pointer | same, through a `fn` pointer in the walk info (which the compiler may resolve to a direct call, as GCC may within nested.c) |
//! | `read_guest_s2_desc` -> `kvm_read_guest(kvm, pa, desc, 8)` (kvm_main.c: another translation unit, a real call) | `read_guest`, `#[inline(never)]` |
//! | `kvm_read_guest`: `next_segment` loop, one `kvm_read_guest_page` per page | same loop |
//! | `kvm_read_guest_page` -> `gfn_to_memslot` -> `____gfn_to_memslot`: `try_get_memslot(last_used_slot)`, else `search_memslots` (gfn red-black tree descent) and `atomic_long_set(last_used_slot)` | `last_used_slot` as a relaxed `AtomicUsize`, the slots linked into a balanced gfn tree and searched node by node |
//! | `__kvm_read_guest_page`: `WARN_ON_ONCE(offset + len > PAGE_SIZE)`, `gfn_to_hva_memslot_prot` -> `__gfn_to_hva_many` (no slot / `KVM_MEMSLOT_INVALID` / read-only-and-write checks) -> `__gfn_to_hva_memslot` (`array_index_nospec`), `kvm_is_error_hva` | same checks; `array_index_nospec` as its branch-free mask |
//! | `__copy_from_user` -> `raw_copy_from_user` -> `__arch_copy_from_user(to, from, n)`: an out-of-line copy of `n` bytes | `arch_copy_from_user`, `#[inline(never)]`, a length-generic slice copy; the slice bounds check stands in for the MMU + exception-table fault handling |
//! | per level: `le64_to_cpu`/`be64_to_cpu`, valid/level-3-block check, leaf/block break, `check_output_size(desc)`, next base `desc & GENMASK_ULL(47, pgshift)` | same |
//! | leaf: `first_block_level`, `check_output_size`, AF, `contiguous_bit_shift`, output address, `kvm_s2_trans` fields | same |
//!
//! Not modelled, because user space cannot do them or they are kernel
//! configuration: `uaccess_ttbr0_enable/disable` (or PAN toggling) around
//! the copy, `__uaccess_mask_ptr`, the CSDB barrier of
//! `array_index_nospec`, `might_fault`/KASAN/hardened-usercopy
//! instrumentation, the `srcu_dereference` of `kvm->memslots` (one load,
//! hoisted here). These all add cost in KVM, so the baseline errs fast.
//!
//! Where KVM's walker refuses a geometry the fixtures use (52-bit input
//! with FEAT_LPA2, VTCR_EL2.SL2 start level -1, 4K start level 3 with
//! FEAT_TTST and inputs under 25 bits), the baseline takes the
//! architecture's start level and limits instead and does the same
//! per-level work, so those rows compare the read path rather than a
//! missing feature. All fixture addresses are below 2^48, so KVM's 48-bit
//! address decoding gives the right addresses there too.

use core::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A translation granule and its geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granule {
    K4,
    K16,
    K64,
}

impl Granule {
    pub const ALL: [Granule; 3] = [Granule::K4, Granule::K16, Granule::K64];

    /// log2 of the granule size in bytes.
    pub const fn page_shift(self) -> u32 {
        match self {
            Granule::K4 => 12,
            Granule::K16 => 14,
            Granule::K64 => 16,
        }
    }

    pub const fn size(self) -> u64 {
        1 << self.page_shift()
    }

    /// Address bits resolved by one full table of this granule.
    pub const fn stride(self) -> u32 {
        self.page_shift() - 3
    }

    /// VTCR_EL2.TG0 encoding.
    const fn tg0(self) -> u64 {
        match self {
            Granule::K4 => 0b00,
            Granule::K64 => 0b01,
            Granule::K16 => 0b10,
        }
    }

    /// VTCR_EL2.{SL2, SL0} for `start_level`, as (SL2, SL0); `None` where the
    /// granule has no encoding for that level.
    const fn sl_encoding(self, start_level: i8) -> Option<(u64, u64)> {
        match (self, start_level) {
            (Granule::K4, -1) => Some((1, 0b00)),
            (Granule::K4, 0) => Some((0, 0b10)),
            (Granule::K4, 1) => Some((0, 0b01)),
            (Granule::K4, 2) => Some((0, 0b00)),
            (Granule::K4, 3) => Some((0, 0b11)),
            (Granule::K16 | Granule::K64, 1) => Some((0, 0b10)),
            (Granule::K16 | Granule::K64, 2) => Some((0, 0b01)),
            (Granule::K16 | Granule::K64, 3) => Some((0, 0b00)),
            (Granule::K16, 0) => Some((0, 0b11)),
            _ => None,
        }
    }

    /// Bits of input address resolved below `level` (the shift of that
    /// level's index).
    pub const fn level_shift(self, level: i8) -> u32 {
        self.page_shift() + (3 - level as i32) as u32 * self.stride()
    }
}

impl fmt::Display for Granule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Granule::K4 => "4K",
            Granule::K16 => "16K",
            Granule::K64 => "64K",
        })
    }
}

/// The stage-2 geometry a fixture is built for: granule, start level and
/// input size, and whether it uses the 52-bit FEAT_LPA2 format (DS = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub granule: Granule,
    pub start_level: i8,
    pub input_bits: u32,
    pub lpa2: bool,
}

/// ID_AA64MMFR0_EL1 for a CPU with PARange 52 bits (0b0110), 4K/16K/64K
/// stage-2 granules with 52-bit support (TGran4_2 = TGran16_2 = 0b0011,
/// TGran64_2 = 0b0010) and the matching stage-1 fields.
/// TGran64 (bits 27:24) is 0b0000: supported.
pub const MMFR0_PA52_ALL_GRANULES: u64 = 0b0110 // PARange: 52 bits
    | (0b0010 << 20) // TGran16: supported, 52-bit
    | (0b0001 << 28) // TGran4: supported, 52-bit
    | (0b0011 << 32) // TGran16_2: 52-bit supported
    | (0b0010 << 36) // TGran64_2: supported
    | (0b0011 << 40); // TGran4_2: 52-bit supported

/// ID_AA64MMFR2_EL1 with ST = 1 (FEAT_TTST: small input sizes, start level 3
/// with 4K).
pub const MMFR2_TTST: u64 = 1 << 28;

impl Geometry {
    /// The geometry with the most input bits a single (unconcatenated) start
    /// table resolves: the shape every hot-walk fixture uses.
    pub const fn full_start_table(granule: Granule, start_level: i8, lpa2: bool) -> Geometry {
        let input_bits = granule.level_shift(start_level) + granule.stride();
        let max_bits = if lpa2 { 52 } else { 48 };
        let input_bits = if input_bits > max_bits {
            max_bits
        } else {
            input_bits
        };
        Geometry {
            granule,
            start_level,
            input_bits,
            lpa2,
        }
    }

    /// Index bits of the start table (more than a stride means concatenated
    /// start tables).
    pub const fn start_index_bits(&self) -> u32 {
        self.input_bits - self.granule.level_shift(self.start_level)
    }

    /// Bytes of the start table (or of the concatenated start tables).
    pub const fn start_table_bytes(&self) -> u64 {
        8 << self.start_index_bits()
    }

    /// VTCR_EL2 for this geometry: PS = 52 bits when LPA2 is used, else
    /// 48 bits; inner/outer write-back cacheable, inner shareable tables.
    pub fn vtcr(&self) -> u64 {
        let (sl2, sl0) = self
            .granule
            .sl_encoding(self.start_level)
            .unwrap_or_else(|| panic!("no SL0 encoding for {self:?}"));
        let t0sz = 64 - u64::from(self.input_bits);
        let ps: u64 = if self.lpa2 { 0b110 } else { 0b101 };
        t0sz | (sl0 << 6)
            | (0b01 << 8) // IRGN0: write-back
            | (0b01 << 10) // ORGN0: write-back
            | (0b11 << 12) // SH0: inner shareable
            | (self.granule.tg0() << 14)
            | (ps << 16)
            | (u64::from(self.lpa2) << 32) // DS
            | (sl2 << 33)
    }

    /// VTTBR_EL2 for a start table at `base` (VMID 1).
    pub fn vttbr(&self, base: u64) -> u64 {
        let high = if self.lpa2 || self.granule == Granule::K64 {
            ((base >> 48) & 0xf) << 2
        } else {
            assert!(base >> 48 == 0, "base {base:#x} needs a 52-bit format");
            0
        };
        (1 << 48) | (base & 0xffff_ffff_ffc0 & !(self.start_table_bytes() - 1)) | high
    }

    /// The output-address bits of a descriptor for `addr` (table or leaf).
    pub fn encode_address(&self, addr: u64) -> u64 {
        let low = addr & 0x0000_ffff_ffff_ffff & !(self.granule.size() - 1);
        if self.lpa2 {
            (low & 0x0003_ffff_ffff_ffff) | (((addr >> 50) & 0b11) << 8)
        } else if self.granule == Granule::K64 {
            low | (((addr >> 48) & 0xf) << 12)
        } else {
            assert!(addr >> 48 == 0, "address {addr:#x} needs a 52-bit format");
            low
        }
    }

    /// The output address held in descriptor `desc` (table or leaf).
    pub fn decode_address(&self, desc: u64) -> u64 {
        let page_mask = !(self.granule.size() - 1);
        if self.lpa2 {
            (desc & 0x0003_ffff_ffff_ffff & page_mask) | (((desc >> 8) & 0b11) << 50)
        } else if self.granule == Granule::K64 {
            (desc & 0x0000_ffff_ffff_ffff & page_mask) | (((desc >> 12) & 0xf) << 48)
        } else {
            desc & 0x0000_ffff_ffff_ffff & page_mask
        }
    }
}

/// Leaf attributes every fixture mapping uses: Normal write-back memory
/// (MemAttr 0b1111), S2AP read/write, inner shareable (when the format has SH
/// bits), AF set, executable.
pub fn leaf_attributes(geometry: &Geometry) -> u64 {
    let sh = if geometry.lpa2 { 0 } else { 0b11 << 8 };
    (0b1111 << 2) | (0b11 << 6) | sh | (1 << 10)
}

/// A guest-physical region of table memory: the bytes of one memslot.
#[derive(Clone, PartialEq, Eq)]
pub struct TableMemory {
    pub base: u64,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for TableMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableMemory")
            .field("base", &format_args!("{:#x}", self.base))
            .field("len", &format_args!("{:#x}", self.bytes.len()))
            .finish()
    }
}

impl TableMemory {
    pub fn zeroed(base: u64, len: usize) -> TableMemory {
        TableMemory {
            base,
            bytes: vec![0; len],
        }
    }

    pub fn read_u64(&self, gpa: u64) -> u64 {
        let offset = (gpa - self.base) as usize;
        u64::from_le_bytes(self.bytes[offset..offset + 8].try_into().unwrap())
    }

    pub fn write_u64(&mut self, gpa: u64, value: u64) {
        let offset = (gpa - self.base) as usize;
        self.bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    }
}

/// Builds a stage-2 table inside one `TableMemory`, taking table pages from a
/// caller-chosen sequence of free page addresses.
#[derive(Debug)]
pub struct TableBuilder {
    pub geometry: Geometry,
    pub memory: TableMemory,
    pub root: u64,
    free_pages: Vec<u64>,
}

impl TableBuilder {
    /// `root` is the start table's address (aligned to its size);
    /// `free_pages` are the granule-aligned addresses to take further tables
    /// from, last first.
    pub fn new(
        geometry: Geometry,
        memory: TableMemory,
        root: u64,
        free_pages: Vec<u64>,
    ) -> TableBuilder {
        assert_eq!(root % geometry.start_table_bytes().max(64), 0);
        TableBuilder {
            geometry,
            memory,
            root,
            free_pages,
        }
    }

    pub fn vtcr(&self) -> u64 {
        self.geometry.vtcr()
    }

    pub fn vttbr(&self) -> u64 {
        self.geometry.vttbr(self.root)
    }

    /// Maps the page (or block, when `leaf_level` < 3) holding `ipa` to `oa`.
    pub fn map(&mut self, ipa: u64, oa: u64, leaf_level: i8) {
        let g = self.geometry;
        let mut table = self.root;
        let mut level = g.start_level;
        loop {
            let shift = g.granule.level_shift(level);
            let index_bits = if level == g.start_level {
                g.start_index_bits()
            } else {
                g.granule.stride()
            };
            let index = (ipa >> shift) & ((1 << index_bits) - 1);
            let slot = table + index * 8;
            if level == leaf_level {
                let kind = if level == 3 { 0b11 } else { 0b01 };
                let desc = g.encode_address(oa & !((1 << shift) - 1)) | leaf_attributes(&g) | kind;
                self.memory.write_u64(slot, desc);
                return;
            }
            let desc = self.memory.read_u64(slot);
            table = if desc & 0b11 == 0b11 {
                g.decode_address(desc)
            } else {
                let next = self
                    .free_pages
                    .pop()
                    .expect("fixture ran out of table pages");
                self.memory.write_u64(slot, g.encode_address(next) | 0b11);
                next
            };
            level += 1;
        }
    }
}

/// One hot-descriptor walk: a table with a single mapping, the registers that
/// select it and the IPA to translate.
#[derive(Debug)]
pub struct HotWalk {
    pub geometry: Geometry,
    pub memory: TableMemory,
    pub vtcr: u64,
    pub vttbr: u64,
    pub ipa: u64,
    pub expected_oa: u64,
}

/// A table builder for `geometry` with room, at 1 GiB, for the start
/// table, one table per level below it and one more (`hot_regions`'
/// second last-level table).
fn one_path_builder(geometry: Geometry) -> TableBuilder {
    let page = geometry.granule.size();
    let tables = (3 - geometry.start_level + 1) as u64;
    let start_bytes = geometry.start_table_bytes().max(page);
    let base = 0x4000_0000;
    let free: Vec<u64> = (0..tables)
        .map(|i| base + start_bytes + i * page)
        .rev()
        .collect();
    TableBuilder::new(
        geometry,
        TableMemory::zeroed(base, (start_bytes + tables * page) as usize),
        base,
        free,
    )
}

/// Builds the hot-walk fixture for `geometry`: a page mapping at the last
/// level, so the walk reads one descriptor per level from `start_level` to 3.
pub fn hot_walk(geometry: Geometry) -> HotWalk {
    let page = geometry.granule.size();
    let mut builder = one_path_builder(geometry);
    // An IPA near the top of the input range with every index non-zero.
    let ipa = ((1u64 << geometry.input_bits) - 1) & !0xfff & 0x000f_7b5a_d3c6_e000 | 0x123;
    let oa = 0x0000_8765_4321_0000 & !(page - 1);
    builder.map(ipa, oa, 3);
    HotWalk {
        geometry,
        vtcr: builder.vtcr(),
        vttbr: builder.vttbr(),
        memory: builder.memory,
        ipa,
        expected_oa: oa | (ipa & (page - 1)),
    }
}

/// Hot walks that move around: the hot-walk geometry with two whole
/// last-level tables mapped (every page of two regions, each one
/// last-level table's span: 2 MiB with 4K), the regions sharing every
/// table above (they differ in the lowest bit of the index one level up),
/// and two sequences of IPAs to walk in turn: `in_region`, pages of the
/// first region in a scattered order (a path hint predicts every walk),
/// and `alternating`, pages of the two regions in turn (a path hint's
/// last-level table is always the other region's).
#[derive(Debug)]
pub struct HotRegions {
    pub geometry: Geometry,
    pub memory: TableMemory,
    pub vtcr: u64,
    pub vttbr: u64,
    pub in_region: Vec<u64>,
    pub alternating: Vec<u64>,
}

impl HotRegions {
    /// Walks in each sequence.
    pub const WALKS: usize = 64;

    /// The output address the fixture maps `ipa` to.
    pub fn expected_oa(&self, ipa: u64) -> u64 {
        let page = self.geometry.granule.size();
        let region_bits = self.geometry.granule.level_shift(2);
        HOT_REGION_OA + (ipa & ((2 << region_bits) - 1) & !(page - 1)) + (ipa & (page - 1))
    }
}

/// Where [`HotRegions`] maps its first region's first page.
const HOT_REGION_OA: u64 = 0x0000_8765_0000_0000;

/// Builds [`HotRegions`] for a geometry starting at level 2 or above
/// (from level 2 the regions share only the start table).
pub fn hot_regions(geometry: Geometry) -> HotRegions {
    let g = geometry.granule;
    assert!(geometry.start_level <= 2, "{geometry:?}: no two regions");
    let page = g.size();
    let mut builder = one_path_builder(geometry);
    let span = 1u64 << g.level_shift(2);
    // The hot walk's IPA, aligned to two regions: region 0 and region 1.
    let hot = ((1u64 << geometry.input_bits) - 1) & 0x000f_7b5a_d3c6_e000;
    let first = hot & !(2 * span - 1);
    let entries = span / page;
    for region in 0..2 {
        for entry in 0..entries {
            let offset = region * span + entry * page;
            builder.map(first + offset, HOT_REGION_OA + offset, 3);
        }
    }
    // Scattered pages (an odd stride through the table), a byte offset.
    let page_of = |k: u64| ((k * 37 + 5) % entries) * page + 0x123 % page;
    let in_region = (0..HotRegions::WALKS as u64)
        .map(|k| first + page_of(k))
        .collect();
    let alternating = (0..HotRegions::WALKS as u64)
        .map(|k| first + (k & 1) * span + page_of(k))
        .collect();
    HotRegions {
        geometry,
        vtcr: builder.vtcr(),
        vttbr: builder.vttbr(),
        memory: builder.memory,
        in_region,
        alternating,
    }
}

/// The cold-table fixture: a 4-level 4K table (48-bit IPA, start level 0)
/// in which the walks of any 512 consecutive IPAs share nothing below the
/// root: each has its own level-1, level-2 and level-3 table, at
/// pseudo-random pages of a memslot much larger than the last-level cache.
/// This is what a hypervisor sees when it walks the tables of a guest
/// hypervisor whose L2 touches memory all over its address space: every
/// level of a walk is a dependent cache (and TLB) miss, unless walks are
/// overlapped.
#[derive(Debug)]
pub struct ColdTable {
    pub geometry: Geometry,
    pub memory: TableMemory,
    pub vtcr: u64,
    pub vttbr: u64,
    /// Walk these in order (wrapping); any 512 consecutive IPAs have
    /// pairwise distinct level-1, level-2 and level-3 tables.
    pub ipas: Vec<u64>,
}

/// Output address bit the cold table flips (every IPA maps to
/// `ipa ^ COLD_OA_FLIP`, inside the 48-bit output size).
pub const COLD_OA_FLIP: u64 = 1 << 47;

impl ColdTable {
    /// Where the cold table maps `ipa`.
    pub const fn expected_oa(ipa: u64) -> u64 {
        ipa ^ COLD_OA_FLIP
    }
}

/// Level-1 tables of the cold table: one per root entry.
const COLD_L1_TABLES: u64 = 512;

/// `slot_bytes` of memory (a multiple of 4 KiB) holding the root, 512
/// level-1 tables (one per root entry) and `paths_per_l1` paths below each:
/// a level-2 table with one table descriptor to a fully populated level-3
/// table (every page mapped), 2 + 2 * 512 * `paths_per_l1` pages in all,
/// scattered over the slot. Path `p` hangs below root entry `p % 512`, so
/// any 512 consecutive paths are disjoint below the root; IPA `k` of the
/// `ipa_count` in the sequence walks path `k % paths` and a page whose line
/// in the level-3 table moves on each time the sequence comes back.
pub fn cold_table(slot_bytes: usize, paths_per_l1: usize, ipa_count: usize) -> ColdTable {
    const BASE: u64 = 0x1_0000_0000;
    let geometry = Geometry::full_start_table(Granule::K4, 0, false);
    let pages = slot_bytes as u64 / 4096;
    let per_l1 = paths_per_l1 as u64;
    // Each path's level-1 entry sits on its own line of the level-1 table
    // (8 entries per line, 64 lines).
    assert!((1..=64).contains(&per_l1), "1..=64 paths per level-1 table");
    let paths = COLD_L1_TABLES * per_l1;
    assert!(1 + COLD_L1_TABLES + 2 * paths <= pages, "slot too small");
    // A shuffled list of every page except page 0 (the root).
    let mut order: Vec<u64> = (1..pages).collect();
    let mut rng = SplitMix64(0x5eed_cafe_f00d_0001);
    for i in (1..order.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let free: Vec<u64> = order.iter().map(|p| BASE + p * 4096).collect();
    let mut builder =
        TableBuilder::new(geometry, TableMemory::zeroed(BASE, slot_bytes), BASE, free);
    let attrs = leaf_attributes(&geometry) | 0b11;
    // The level-2 index of each path (one table descriptor per level-2
    // table), pseudo-random so paths do not share a line offset.
    let l2_index = |p: u64| SplitMix64(p).next() % 512;
    let path_region = |p: u64| {
        let l0 = p % COLD_L1_TABLES;
        let l1 = (p / COLD_L1_TABLES) * 8 + l0 % 8;
        (l0 << 39) | (l1 << 30) | (l2_index(p) << 21)
    };
    for p in 0..paths {
        let region = path_region(p);
        builder.map(region, ColdTable::expected_oa(region), 3);
        let leaf_table = walk_to_leaf_table(&builder, region);
        for page in 0..512u64 {
            let ipa = region | (page << 12);
            builder.memory.write_u64(
                leaf_table + page * 8,
                geometry.encode_address(ColdTable::expected_oa(ipa)) | attrs,
            );
        }
    }
    let ipas = (0..ipa_count as u64)
        .map(|k| {
            let p = k % paths;
            let visit = k / paths;
            // A different level-3 line (8 entries) on each visit.
            let page = (l2_index(p) + visit * 8 + visit / 64) % 512;
            path_region(p) | (page << 12) | 0x5a8
        })
        .collect();
    ColdTable {
        geometry,
        vtcr: builder.vtcr(),
        vttbr: builder.vttbr(),
        memory: builder.memory,
        ipas,
    }
}

/// The address of the last-level table that maps `ipa` in `builder`'s table.
fn walk_to_leaf_table(builder: &TableBuilder, ipa: u64) -> u64 {
    let g = builder.geometry;
    let mut table = builder.root;
    for level in g.start_level..3 {
        let index = (ipa >> g.granule.level_shift(level)) & 511;
        table = g.decode_address(builder.memory.read_u64(table + index * 8));
    }
    table
}

/// A tiny deterministic generator for fixture layout (not for anything that
/// needs statistical quality).
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Host page size KVM's guest-memory accessors split reads at
/// (`PAGE_SHIFT`; 4 KiB, the usual arm64 host configuration).
const PAGE_SHIFT: u32 = 12;
const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;

/// `KVM_MEMSLOT_INVALID` in `kvm_memory_slot::flags`.
const KVM_MEMSLOT_INVALID: u32 = 1 << 16;
/// `KVM_MEM_READONLY` in `kvm_memory_slot::flags`.
const KVM_MEM_READONLY: u32 = 1 << 1;

/// A guest-memory access KVM fails with -EFAULT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Efault;

/// No slot: a null `rb_node` / `last_used_slot` pointer.
const NIL: usize = usize::MAX;

/// `struct kvm_memory_slot`, the fields the read path touches, with its
/// node in the gfn-ordered red-black tree (`gfn_node`) embedded as KVM
/// embeds it. `userspace` stands for the host mapping at `userspace_addr`.
#[derive(Debug)]
struct KvmMemorySlot<'a> {
    base_gfn: u64,
    npages: u64,
    flags: u32,
    userspace: &'a [u8],
    /// `gfn_node.rb_left` / `rb_right` (indices; [`NIL`] for none).
    left: usize,
    right: usize,
}

/// Guest memory as KVM sees it for the baseline: `struct kvm_memslots`,
/// the slots in a gfn-ordered balanced search tree (KVM's `gfn_tree` is a
/// red-black tree), and the `last_used_slot` cache.
#[derive(Debug)]
pub struct KvmStyleMemory<'a> {
    slots: Vec<KvmMemorySlot<'a>>,
    root: usize,
    /// `kvm_memslots::last_used_slot` (an `atomic_long_t` holding a slot
    /// pointer, read and set with plain atomic loads and stores).
    last_used_slot: AtomicUsize,
}

/// Why the baseline walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaselineFault {
    /// The descriptor read failed (`kvm_read_guest` returned -EFAULT:
    /// outside every memslot).
    ExternalAbort {
        level: i8,
    },
    /// Invalid descriptor, or a block where none is allowed.
    Translation {
        level: i8,
    },
    /// A table or output address beyond the output size.
    AddressSize {
        level: i8,
    },
    AccessFlag {
        level: i8,
    },
    /// A configuration `walk_nested_s2_pgd` refuses (-EFAULT).
    Configuration,
}

/// A successful baseline walk (`struct kvm_s2_trans`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaselineTranslation {
    pub oa: u64,
    pub level: i8,
    pub desc: u64,
    pub block_size: u64,
    pub readable: bool,
    pub writable: bool,
}

/// `struct s2_walk_info`: the walk parameters `vtcr_to_walk_info` decodes,
/// and the descriptor reader called through a function pointer.
struct S2WalkInfo<'m, 'a> {
    read_desc: fn(u64, &mut u64, &'m KvmStyleMemory<'a>) -> Result<(), Efault>,
    data: &'m KvmStyleMemory<'a>,
    baddr: u64,
    max_oa_bits: u32,
    pgshift: u32,
    sl: u32,
    t0sz: u32,
    be: bool,
    /// Beyond KVM (see [`KvmStyleMemory::walk`]): VTCR_EL2.DS and SL2.
    lpa2: bool,
    sl2: bool,
}

/// The host's IPA limit (`get_kvm_ipa_limit()`), 48 bits on a typical host.
const KVM_IPA_LIMIT: u32 = 48;

/// `GENMASK_ULL(h, l)`: bits h..=l set (empty when l > h).
const fn genmask(h: u32, l: u32) -> u64 {
    if l > h || h > 63 {
        0
    } else {
        (u64::MAX << l) & (u64::MAX >> (63 - h))
    }
}

/// `ps_to_output_size`.
const fn ps_to_output_size(ps: u64) -> u32 {
    match ps {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        6 => 52,
        _ => 48,
    }
}

/// `__arch_copy_from_user`: an out-of-line copy of any length (KVM's
/// `__copy_from_user` ends in this assembly routine, which copies `n`
/// bytes with size-dispatched loads and stores). Returns the bytes not
/// copied, 0 here: the slot bounds were checked by the caller, where
/// the kernel relies on the MMU and the exception table instead.
#[inline(never)]
fn arch_copy_from_user(to: &mut [u8], from: &[u8]) -> usize {
    to.copy_from_slice(from);
    0
}

impl<'a> KvmStyleMemory<'a> {
    /// Memslots from (guest-physical base, host bytes) pairs; bases and
    /// sizes must be page multiples, as KVM_SET_USER_MEMORY_REGION requires.
    pub fn new(mut slots: Vec<(u64, &'a [u8])>) -> KvmStyleMemory<'a> {
        slots.sort_by_key(|s| s.0);
        for (base, bytes) in &slots {
            assert!(
                base.is_multiple_of(PAGE_SIZE) && (bytes.len() as u64).is_multiple_of(PAGE_SIZE),
                "memslots are page multiples"
            );
        }
        let mut nodes: Vec<KvmMemorySlot<'a>> = slots
            .into_iter()
            .map(|(base, bytes)| KvmMemorySlot {
                base_gfn: base >> PAGE_SHIFT,
                npages: bytes.len() as u64 >> PAGE_SHIFT,
                flags: 0,
                userspace: bytes,
                left: NIL,
                right: NIL,
            })
            .collect();
        let count = nodes.len();
        let root = Self::link_balanced(&mut nodes, 0, count);
        KvmStyleMemory {
            slots: nodes,
            root,
            last_used_slot: AtomicUsize::new(NIL),
        }
    }

    /// Links sorted slots `[start, end)` into a balanced tree (a red-black
    /// tree over these keys has the same search paths up to depth
    /// 2 log n); returns the subtree root.
    fn link_balanced(nodes: &mut [KvmMemorySlot<'a>], start: usize, end: usize) -> usize {
        if start >= end {
            return NIL;
        }
        let middle = start + (end - start) / 2;
        nodes[middle].left = Self::link_balanced(nodes, start, middle);
        nodes[middle].right = Self::link_balanced(nodes, middle + 1, end);
        middle
    }

    /// `try_get_memslot`.
    #[inline]
    fn try_get_memslot(&self, index: usize, gfn: u64) -> Option<usize> {
        let slot = self.slots.get(index)?;
        (gfn >= slot.base_gfn && gfn < slot.base_gfn + slot.npages).then_some(index)
    }

    /// `search_memslots` (not approximate): descend the gfn tree.
    #[inline]
    fn search_memslots(&self, gfn: u64) -> Option<usize> {
        let mut node = self.root;
        while let Some(slot) = self.slots.get(node) {
            if gfn >= slot.base_gfn {
                if gfn < slot.base_gfn + slot.npages {
                    return Some(node);
                }
                node = slot.right;
            } else {
                node = slot.left;
            }
        }
        None
    }

    /// `gfn_to_memslot` -> `__gfn_to_memslot` -> `____gfn_to_memslot`:
    /// the last used slot first, else the tree search, which updates it.
    #[inline]
    fn gfn_to_memslot(&self, gfn: u64) -> Option<usize> {
        let last = self.last_used_slot.load(Ordering::Relaxed);
        if let Some(slot) = self.try_get_memslot(last, gfn) {
            return Some(slot);
        }
        let slot = self.search_memslots(gfn)?;
        self.last_used_slot.store(slot, Ordering::Relaxed);
        Some(slot)
    }

    /// `gfn_to_hva_memslot_prot(slot, gfn, NULL)` -> `__gfn_to_hva_many(
    /// slot, gfn, NULL, false)`: the slot checks, then
    /// `__gfn_to_hva_memslot` (offset clamped by `array_index_nospec`).
    /// `Err` is an error hva (`kvm_is_error_hva`).
    #[inline]
    fn gfn_to_hva_memslot_prot(
        &self,
        slot: Option<usize>,
        gfn: u64,
    ) -> Result<(usize, u64), Efault> {
        let write = false;
        let index = slot.ok_or(Efault)?;
        let slot = self.slots.get(index).ok_or(Efault)?;
        if slot.flags & KVM_MEMSLOT_INVALID != 0 {
            return Err(Efault);
        }
        if slot.flags & KVM_MEM_READONLY != 0 && write {
            return Err(Efault);
        }
        let offset = gfn.wrapping_sub(slot.base_gfn);
        // array_index_nospec: offset if below npages, else 0, without a
        // branch (the kernel adds a CSDB speculation barrier).
        let in_range = 0u64.wrapping_sub(u64::from(offset < slot.npages));
        Ok((index, (offset & in_range) << PAGE_SHIFT))
    }

    /// `__kvm_read_guest_page`.
    #[inline]
    fn read_guest_page_in(
        &self,
        slot: Option<usize>,
        gfn: u64,
        data: &mut [u8],
        offset: usize,
    ) -> Result<(), Efault> {
        let len = data.len();
        // WARN_ON_ONCE(offset + len > PAGE_SIZE)
        if offset + len > PAGE_SIZE as usize {
            return Err(Efault);
        }
        let (index, hva) = self.gfn_to_hva_memslot_prot(slot, gfn)?;
        let start = hva as usize + offset;
        let source = self.slots[index]
            .userspace
            .get(start..start + len)
            .ok_or(Efault)?;
        if arch_copy_from_user(data, source) != 0 {
            return Err(Efault);
        }
        Ok(())
    }

    /// `kvm_read_guest_page`.
    #[inline]
    fn read_guest_page(&self, gfn: u64, data: &mut [u8], offset: usize) -> Result<(), Efault> {
        let slot = self.gfn_to_memslot(gfn);
        self.read_guest_page_in(slot, gfn, data, offset)
    }

    /// `kvm_read_guest`: split at page boundaries (`next_segment`), one
    /// `kvm_read_guest_page` per page. Out of line: it lives in
    /// kvm_main.c, a different translation unit from nested.c.
    #[inline(never)]
    pub fn read_guest(&self, gpa: u64, data: &mut [u8]) -> Result<(), Efault> {
        let mut gfn = gpa >> PAGE_SHIFT;
        let mut offset = (gpa & (PAGE_SIZE - 1)) as usize;
        let mut rest = data;
        loop {
            // next_segment(len, offset)
            let seg = rest.len().min(PAGE_SIZE as usize - offset);
            if seg == 0 {
                return Ok(());
            }
            let (chunk, tail) = rest.split_at_mut(seg);
            self.read_guest_page(gfn, chunk, offset)?;
            offset = 0;
            rest = tail;
            gfn += 1;
        }
    }

    /// `read_guest_s2_desc`: `kvm_read_guest` of `sizeof(*desc)` bytes into
    /// the descriptor (raw, in memory byte order).
    fn read_guest_s2_desc(
        pa: u64,
        desc: &mut u64,
        memory: &KvmStyleMemory<'a>,
    ) -> Result<(), Efault> {
        let mut raw = [0u8; 8];
        memory.read_guest(pa, &mut raw)?;
        *desc = u64::from_ne_bytes(raw);
        Ok(())
    }

    /// `kvm_walk_nested_s2`: decode the registers (`vtcr_to_walk_info`,
    /// SCTLR_EL2.EE little-endian here) and walk.
    pub fn walk(
        &self,
        vtcr: u64,
        vttbr: u64,
        ipa: u64,
    ) -> Result<BaselineTranslation, BaselineFault> {
        let wi = S2WalkInfo {
            read_desc: Self::read_guest_s2_desc,
            data: self,
            baddr: vttbr,
            t0sz: (vtcr & 0x3f) as u32,
            pgshift: match (vtcr >> 14) & 0b11 {
                0b00 => 12,
                0b10 => 14,
                _ => 16,
            },
            sl: ((vtcr >> 6) & 0b11) as u32,
            max_oa_bits: KVM_IPA_LIMIT.min(ps_to_output_size((vtcr >> 16) & 0b111)),
            be: false,
            lpa2: vtcr & (1 << 32) != 0,
            sl2: vtcr & (1 << 33) != 0,
        };
        walk_nested_s2_pgd(ipa, &wi)
    }
}

/// `check_output_size`.
#[inline]
fn check_output_size(wi: &S2WalkInfo<'_, '_>, output: u64) -> bool {
    wi.max_oa_bits != 48 && output & genmask(47, wi.max_oa_bits) != 0
}

/// `contiguous_bit_shift`: 0 unless the contiguous bit (52) is set, else
/// log2 of the entries the hint spans for this granule and level.
#[inline]
fn contiguous_bit_shift(desc: u64, wi: &S2WalkInfo<'_, '_>, level: i8) -> u32 {
    if desc & (1 << 52) == 0 {
        return 0;
    }
    match (wi.pgshift, level) {
        (12, _) => 4,
        (14, 2) => 5,
        (14, _) => 7,
        _ => 5,
    }
}

/// `check_base_s2_limits`, widened where noted in [`KvmStyleMemory::walk`].
fn check_base_s2_limits(wi: &S2WalkInfo<'_, '_>, level: i8, input_size: u32, stride: u32) -> bool {
    let ia_size = 64 - wi.t0sz;
    let refused = match wi.pgshift {
        16 => level == 0 || (level == 1 && ia_size <= 42),
        14 => (level == 0 && !wi.lpa2) || (level == 1 && ia_size <= 40),
        _ => (level < 0 && !wi.lpa2) || (level == 0 && ia_size <= 42),
    };
    if refused || input_size > ia_size {
        return false;
    }
    let start_size =
        input_size as i32 - ((3 - i32::from(level)) * stride as i32 + wi.pgshift as i32);
    (1..=stride as i32 + 4).contains(&start_size)
}

/// `walk_nested_s2_pgd`, step by step.
fn walk_nested_s2_pgd(
    ipa: u64,
    wi: &S2WalkInfo<'_, '_>,
) -> Result<BaselineTranslation, BaselineFault> {
    let (mut level, first_block_level): (i8, i8) = match wi.pgshift {
        12 if wi.sl2 => (-1, 0),
        12 if wi.sl == 3 => (3, 1),
        12 => (2 - wi.sl as i8, 1),
        _ => (3 - wi.sl as i8, 2),
    };
    let stride = wi.pgshift - 3;
    let input_size = 64 - wi.t0sz;
    let max_input = if wi.lpa2 { 52 } else { 48 };
    if input_size > max_input || input_size < 16 {
        return Err(BaselineFault::Configuration);
    }
    if !check_base_s2_limits(wi, level, input_size, stride) {
        return Err(BaselineFault::Configuration);
    }
    let base_lower_bound = 3 + input_size - ((3 - i32::from(level)) as u32 * stride + wi.pgshift);
    let mut base_addr = wi.baddr & genmask(47, base_lower_bound);
    if check_output_size(wi, base_addr) {
        return Err(BaselineFault::AddressSize { level });
    }
    let mut addr_top = input_size - 1;
    let mut desc = 0u64;
    let mut addr_bottom;
    loop {
        addr_bottom = (3 - i32::from(level)) as u32 * stride + wi.pgshift;
        let index = (ipa & genmask(addr_top, addr_bottom)) >> (addr_bottom - 3);
        let paddr = base_addr | index;
        (wi.read_desc)(paddr, &mut desc, wi.data)
            .map_err(|Efault| BaselineFault::ExternalAbort { level })?;
        desc = if wi.be {
            u64::from_be(desc)
        } else {
            u64::from_le(desc)
        };
        if desc & 1 == 0 || (desc & 3 == 1 && level == 3) {
            return Err(BaselineFault::Translation { level });
        }
        if desc & 3 == 1 || level == 3 {
            break;
        }
        if check_output_size(wi, desc) {
            return Err(BaselineFault::AddressSize { level });
        }
        base_addr = desc & genmask(47, wi.pgshift);
        level += 1;
        addr_top = addr_bottom - 1;
    }
    if level < first_block_level {
        return Err(BaselineFault::Translation { level });
    }
    if check_output_size(wi, desc) {
        return Err(BaselineFault::AddressSize { level });
    }
    if desc & (1 << 10) == 0 {
        return Err(BaselineFault::AccessFlag { level });
    }
    let block_bits = addr_bottom;
    addr_bottom += contiguous_bit_shift(desc, wi, level);
    let oa = (desc & genmask(47, addr_bottom)) | (ipa & genmask(addr_bottom - 1, 0));
    Ok(BaselineTranslation {
        oa,
        level,
        desc,
        block_size: 1 << block_bits,
        readable: desc & (0b01 << 6) != 0,
        writable: desc & (0b10 << 6) != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_walks_every_hot_fixture() {
        for granule in Granule::ALL {
            for start_level in -1..=3 {
                for lpa2 in [false, true] {
                    if granule.sl_encoding(start_level).is_none()
                        || (lpa2 && granule == Granule::K64)
                        || (start_level == -1 && !lpa2)
                        || (granule == Granule::K16 && start_level == 0 && !lpa2)
                    {
                        continue;
                    }
                    let geometry = Geometry::full_start_table(granule, start_level, lpa2);
                    let fixture = hot_walk(geometry);
                    let memory =
                        KvmStyleMemory::new(vec![(fixture.memory.base, &fixture.memory.bytes[..])]);
                    let result = memory.walk(fixture.vtcr, fixture.vttbr, fixture.ipa);
                    assert_eq!(
                        result.map(|t| (t.oa, t.level)),
                        Ok((fixture.expected_oa, 3)),
                        "{geometry:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn baseline_reports_reads_outside_memslots() {
        let fixture = hot_walk(Geometry::full_start_table(Granule::K4, 0, false));
        let memory = KvmStyleMemory::new(vec![(
            fixture.memory.base + 0x1000,
            &fixture.memory.bytes[0x1000..],
        )]);
        assert_eq!(
            memory.walk(fixture.vtcr, fixture.vttbr, fixture.ipa),
            Err(BaselineFault::ExternalAbort { level: 0 })
        );
    }

    #[test]
    fn read_guest_splits_at_pages_and_searches_the_slot_tree() {
        let low: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
        let high: Vec<u8> = (0..8192u32).map(|i| (i as u8) ^ 0xff).collect();
        let far = vec![7u8; 4096];
        let memory = KvmStyleMemory::new(vec![
            (0x10_0000, &far[..]),
            (0x2000, &low[..]),
            (0x3000, &high[..]),
        ]);
        // Across the boundary of two slots: one kvm_read_guest_page each.
        let mut data = [0u8; 16];
        memory.read_guest(0x2ff8, &mut data).unwrap();
        assert_eq!(&data[..8], &low[4088..]);
        assert_eq!(&data[8..], &high[..8]);
        // Alternating slots: the last-used cache misses and the tree finds them.
        let mut word = [0u8; 8];
        for gpa in [0x10_0ff8u64, 0x2000, 0x4ff8, 0x10_0000] {
            memory.read_guest(gpa, &mut word).unwrap();
        }
        assert_eq!(word, [7; 8]);
        // A hole and the end of the last slot.
        assert_eq!(memory.read_guest(0x5000, &mut word), Err(Efault));
        assert_eq!(memory.read_guest(0x10_0ffc, &mut word), Err(Efault));
        assert_eq!(memory.read_guest(0x1ffc, &mut word), Err(Efault));
    }

    #[test]
    fn baseline_faults_as_walk_nested_s2_pgd_does() {
        let geometry = Geometry::full_start_table(Granule::K4, 0, false);
        let mut fixture = hot_walk(geometry);
        // Clear AF of the leaf: access flag fault at level 3.
        let leaf_table = walk_to_leaf_table(
            &TableBuilder {
                geometry,
                memory: fixture.memory.clone(),
                root: fixture.memory.base,
                free_pages: Vec::new(),
            },
            fixture.ipa,
        );
        let leaf = leaf_table + ((fixture.ipa >> 12) & 511) * 8;
        let desc = fixture.memory.read_u64(leaf);
        fixture.memory.write_u64(leaf, desc & !(1 << 10));
        let memory = KvmStyleMemory::new(vec![(fixture.memory.base, &fixture.memory.bytes[..])]);
        assert_eq!(
            memory.walk(fixture.vtcr, fixture.vttbr, fixture.ipa),
            Err(BaselineFault::AccessFlag { level: 3 })
        );
        // A 64-bit input size is refused like KVM's input_size check.
        assert_eq!(
            memory.walk(fixture.vtcr & !0x3f, fixture.vttbr, fixture.ipa),
            Err(BaselineFault::Configuration)
        );
        // An invalid leaf: translation fault at level 3.
        drop(memory);
        fixture.memory.write_u64(leaf, 0);
        let memory = KvmStyleMemory::new(vec![(fixture.memory.base, &fixture.memory.bytes[..])]);
        assert_eq!(
            memory.walk(fixture.vtcr, fixture.vttbr, fixture.ipa),
            Err(BaselineFault::Translation { level: 3 })
        );
    }

    #[test]
    fn cold_table_maps_every_ipa_with_disjoint_paths() {
        // 2 paths per level-1 table: 1024 paths, 2 + 2048 + 512 pages.
        let cold = cold_table(16 << 20, 2, 4096);
        let memory = KvmStyleMemory::new(vec![(cold.memory.base, &cold.memory.bytes[..])]);
        let g = cold.geometry;
        let tables_of = |ipa: u64| {
            let mut table = g.decode_address(cold.vttbr);
            let mut tables = Vec::new();
            for level in 0..3i8 {
                let index = (ipa >> g.granule.level_shift(level)) & 511;
                table = g.decode_address(cold.memory.read_u64(table + index * 8));
                tables.push(table);
            }
            tables
        };
        for &ipa in &cold.ipas {
            let t = memory.walk(cold.vtcr, cold.vttbr, ipa).unwrap();
            assert_eq!(t.oa, ColdTable::expected_oa(ipa));
        }
        // Any 512 consecutive walks: pairwise distinct tables at every
        // level below the root, and 3 * 1024 + 1 distinct pages in all.
        for window in cold.ipas.chunks(512) {
            let mut seen = std::collections::HashSet::new();
            for &ipa in window {
                for table in tables_of(ipa) {
                    assert!(seen.insert(table), "{ipa:#x} shares {table:#x}");
                }
            }
        }
        let all: std::collections::HashSet<u64> =
            cold.ipas.iter().flat_map(|&ipa| tables_of(ipa)).collect();
        assert_eq!(all.len(), 512 + 2 * 1024);
    }
}
