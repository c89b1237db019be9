//! Fixtures and the KVM-style baseline for the walker benchmarks
//! (`benches/walker.rs`).
//!
//! The fixtures build real stage-2 tables in plain byte buffers (little-endian
//! descriptors, the layout of the Arm ARM's VMSAv8-64 stage-2 format), so the
//! walker under test and the baseline walk exactly the same bytes.
//!
//! The baseline reads descriptors the way KVM's nested stage-2 walker does
//! (`walk_nested_s2` -> `kvm_read_guest`): for every level it searches the
//! memslots for the one holding the descriptor and copies the eight bytes out
//! with a bounds-checked copy. It implements only what the fixtures use (valid
//! tables and leaves; no permission or size checks beyond the slot bounds), so
//! every cost it has is one the walker under test also pays or must avoid.

use core::fmt;

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

/// Builds the hot-walk fixture for `geometry`: a page mapping at the last
/// level, so the walk reads one descriptor per level from `start_level` to 3.
pub fn hot_walk(geometry: Geometry) -> HotWalk {
    let page = geometry.granule.size();
    let levels = (3 - geometry.start_level + 1) as u64;
    let start_bytes = geometry.start_table_bytes().max(page);
    let len = start_bytes + levels * page;
    let base = 0x4000_0000;
    let free: Vec<u64> = (0..levels)
        .map(|i| base + start_bytes + i * page)
        .rev()
        .collect();
    let mut builder = TableBuilder::new(
        geometry,
        TableMemory::zeroed(base, len as usize),
        base,
        free,
    );
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

/// The cold-table fixture: a 4-level 4K table (48-bit IPA, start level 0)
/// whose last-level tables are scattered over a large memslot, and a long
/// sequence of IPAs whose walks touch different cache lines of different
/// pages, so that walking them in order keeps finding descriptors out of
/// every cache level.
#[derive(Debug)]
pub struct ColdTable {
    pub geometry: Geometry,
    pub memory: TableMemory,
    pub vtcr: u64,
    pub vttbr: u64,
    /// Walk these in order (wrapping); consecutive IPAs never share a
    /// last-level table page.
    pub ipas: Vec<u64>,
}

/// `slot_bytes` of table memory (a multiple of 4 KiB, at least 4 MiB) with
/// `leaf_tables` last-level tables, each fully populated with page mappings,
/// placed at pseudo-random pages of the slot.
pub fn cold_table(slot_bytes: usize, leaf_tables: usize, ipa_count: usize) -> ColdTable {
    const BASE: u64 = 0x1_0000_0000;
    let geometry = Geometry::full_start_table(Granule::K4, 0, false);
    let pages = slot_bytes as u64 / 4096;
    let l2_tables = leaf_tables.div_ceil(512);
    assert!(l2_tables <= 512 && (leaf_tables + l2_tables + 2) as u64 <= pages);
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
    // Leaf table t maps IPA [t * 2 MiB, (t + 1) * 2 MiB) spread over the
    // L1 entries (1 GiB each) of one L0 entry; every page is mapped.
    let attrs = leaf_attributes(&geometry) | 0b11;
    for t in 0..leaf_tables as u64 {
        let region = t << 21;
        builder.map(region, region, 3);
        let desc_addr = walk_to_leaf_table(&builder, region);
        for page in 0..512u64 {
            let oa = 0x80_0000_0000 + region + (page << 12);
            builder
                .memory
                .write_u64(desc_addr + page * 8, geometry.encode_address(oa) | attrs);
        }
    }
    // IPA k: leaf table (k * stride) mod n, descriptor line (k * 7) mod 64,
    // entry within the line k mod 8: consecutive walks hit unrelated pages
    // and lines, and the sequence revisits a line only after touching far
    // more memory than the caches hold.
    let n = leaf_tables as u64;
    let stride = coprime_stride(n);
    let ipas = (0..ipa_count as u64)
        .map(|k| {
            let table = (k * stride) % n;
            let line = (k * 7 + k / n) % 64;
            let entry = line * 8 + k % 8;
            (table << 21) | (entry << 12) | 0x5a8
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

/// An odd stride near n / φ that is coprime with n, so `k * stride mod n`
/// visits every table before repeating.
fn coprime_stride(n: u64) -> u64 {
    let mut s = (n as f64 * 0.618) as u64 | 1;
    while gcd(s, n) != 1 {
        s += 2;
    }
    s
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
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

/// Guest memory as KVM sees it for the baseline: a list of memslots, each a
/// guest-physical base and its bytes.
#[derive(Debug)]
pub struct KvmStyleMemory<'a> {
    slots: Vec<(u64, &'a [u8])>,
}

/// Why the baseline walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaselineFault {
    /// The descriptor lies outside every memslot.
    ExternalAbort {
        level: i8,
    },
    /// Invalid descriptor.
    Translation {
        level: i8,
    },
    AccessFlag {
        level: i8,
    },
}

/// A successful baseline walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaselineTranslation {
    pub oa: u64,
    pub level: i8,
    pub desc: u64,
}

impl<'a> KvmStyleMemory<'a> {
    pub fn new(slots: Vec<(u64, &'a [u8])>) -> KvmStyleMemory<'a> {
        KvmStyleMemory { slots }
    }

    /// `kvm_read_guest`: find the memslot (linear search, as KVM's
    /// `gfn_to_memslot` fallback), bounds-check, copy.
    fn read_guest(&self, gpa: u64, out: &mut [u8]) -> Result<(), ()> {
        for &(base, bytes) in &self.slots {
            if gpa >= base && gpa - base < bytes.len() as u64 {
                let offset = (gpa - base) as usize;
                let end = offset.checked_add(out.len()).ok_or(())?;
                let source = bytes.get(offset..end).ok_or(())?;
                out.copy_from_slice(source);
                return Ok(());
            }
        }
        Err(())
    }

    /// Walks `ipa` the way KVM's `walk_nested_s2` does: start level and
    /// base from the registers, then per level one `read_guest` of 8 bytes.
    pub fn walk(
        &self,
        vtcr: u64,
        vttbr: u64,
        ipa: u64,
    ) -> Result<BaselineTranslation, BaselineFault> {
        let t0sz = (vtcr & 0x3f) as u32;
        let input_bits = 64 - t0sz;
        let granule = match (vtcr >> 14) & 0b11 {
            0b00 => Granule::K4,
            0b01 => Granule::K64,
            _ => Granule::K16,
        };
        let lpa2 = vtcr & (1 << 32) != 0;
        let sl0 = (vtcr >> 6) & 0b11;
        let sl2 = (vtcr >> 33) & 1;
        let start_level: i8 = match (granule, sl2, sl0) {
            (Granule::K4, 1, _) => -1,
            (Granule::K4, _, 0b11) => 3,
            (Granule::K4, _, s) => 2 - s as i8,
            (_, _, s) => 3 - s as i8,
        };
        let geometry = Geometry {
            granule,
            start_level,
            input_bits,
            lpa2,
        };
        let mut table = (vttbr & 0x0000_ffff_ffff_fffe) | (((vttbr >> 2) & 0xf) << 48);
        table &= !(geometry.start_table_bytes() - 1);
        let mut level = start_level;
        loop {
            let shift = granule.level_shift(level);
            let index_bits = if level == start_level {
                geometry.start_index_bits()
            } else {
                granule.stride()
            };
            let index = (ipa >> shift) & ((1 << index_bits) - 1);
            let mut raw = [0u8; 8];
            self.read_guest(table + index * 8, &mut raw)
                .map_err(|()| BaselineFault::ExternalAbort { level })?;
            let desc = u64::from_le_bytes(raw);
            if desc & 1 == 0 {
                return Err(BaselineFault::Translation { level });
            }
            let is_table = desc & 0b10 != 0;
            if level < 3 && is_table {
                table = geometry.decode_address(desc);
                level += 1;
                continue;
            }
            if level == 3 && !is_table {
                return Err(BaselineFault::Translation { level });
            }
            if desc & (1 << 10) == 0 {
                return Err(BaselineFault::AccessFlag { level });
            }
            let block_mask = (1u64 << shift) - 1;
            let oa = (geometry.decode_address(desc) & !block_mask) | (ipa & block_mask);
            return Ok(BaselineTranslation { oa, level, desc });
        }
    }
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
    fn cold_table_maps_every_ipa_and_spreads_leaf_tables() {
        let cold = cold_table(16 << 20, 1024, 4096);
        let memory = KvmStyleMemory::new(vec![(cold.memory.base, &cold.memory.bytes[..])]);
        let mut leaf_pages = std::collections::HashSet::new();
        for &ipa in &cold.ipas {
            let t = memory.walk(cold.vtcr, cold.vttbr, ipa).unwrap();
            assert_eq!(t.oa, 0x80_0000_0000 + ipa);
            leaf_pages.insert(ipa >> 21);
        }
        assert_eq!(leaf_pages.len(), 1024);
        for pair in cold.ipas.windows(2) {
            assert_ne!(pair[0] >> 21, pair[1] >> 21);
        }
    }
}
