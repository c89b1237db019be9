//! Translation tables with the 4 KiB granule: descriptor encodings for hv's
//! own EL2 stage 1 and for a guest's stage 2, and a builder that maps ranges
//! with the largest blocks that fit (1 GiB, 2 MiB, 4 KiB).
//!
//! The builder owns its tables in a pool handed to it; a table's physical
//! address is the address of its slot, because hv runs identity-mapped (and
//! host tests only look at the tables, they never hand them to hardware).

use core::fmt;

pub const PAGE_SIZE: u64 = 4096;
const ENTRIES: usize = 512;

/// One 4 KiB translation table.
#[derive(Clone)]
#[repr(C, align(4096))]
pub struct Table(pub [u64; ENTRIES]);

impl Table {
    pub const EMPTY: Table = Table([0; ENTRIES]);
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let used = self.0.iter().filter(|d| **d & 1 == 1).count();
        write!(f, "Table({used} valid entries)")
    }
}

/// What kind of memory a mapping is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Normal, inner and outer write-back cacheable, inner shareable;
    /// read/write; in hv's own stage 1 never executable (W^X).
    Normal,
    /// Normal memory holding hv's code: read-only and executable.
    Code,
    /// Normal memory, read-only and never executable (constants).
    ReadOnly,
    /// Device-nGnRE, never executable.
    Device,
}

/// Which translation regime the descriptors are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Regime {
    /// hv's own EL2 stage 1 (no EL2&0 host, so a single VA range).
    El2Stage1,
    /// A guest's stage 2 (IPA to PA), MemAttr encoded directly (FWB off).
    Stage2,
}

/// MAIR_EL2 as hv programs it: index 0 Device-nGnRE, index 1 Normal WB.
pub const MAIR_EL2: u64 = 0x04 | 0xff << 8;
const ATTR_INDEX_DEVICE: u64 = 0;
const ATTR_INDEX_NORMAL: u64 = 1;

const DESC_VALID: u64 = 1;
const DESC_TABLE_OR_PAGE: u64 = 1 << 1;
const DESC_AF: u64 = 1 << 10;
const DESC_SH_INNER: u64 = 3 << 8;
const OUTPUT_MASK: u64 = 0x0000_ffff_ffff_f000;

impl Regime {
    /// The attribute bits of a block or page descriptor.
    pub fn leaf_attributes(self, kind: MemoryKind) -> u64 {
        // Stage 1 at EL2: AP[2] (bit 7) makes a page read-only, AP[1] (bit 6)
        // is RES1, XN is bit 54.
        const S1_RO: u64 = 1 << 7;
        const S1_AP1: u64 = 1 << 6;
        const S1_XN: u64 = 1 << 54;
        const S1_NORMAL: u64 = ATTR_INDEX_NORMAL << 2 | S1_AP1 | DESC_SH_INNER | DESC_AF;
        // Stage 2: MemAttr[5:2], S2AP[7:6] (0b01 read-only, 0b11 read/write),
        // XN[54:53] (0b10: never executable).
        const S2_NORMAL: u64 = 0b1111 << 2 | DESC_SH_INNER | DESC_AF;
        const S2_RO: u64 = 0b01 << 6;
        const S2_RW: u64 = 0b11 << 6;
        const S2_XN: u64 = 0b10 << 53;
        match (self, kind) {
            (Regime::El2Stage1, MemoryKind::Normal) => S1_NORMAL | S1_XN,
            (Regime::El2Stage1, MemoryKind::Code) => S1_NORMAL | S1_RO,
            (Regime::El2Stage1, MemoryKind::ReadOnly) => S1_NORMAL | S1_RO | S1_XN,
            (Regime::El2Stage1, MemoryKind::Device) => {
                ATTR_INDEX_DEVICE << 2 | S1_AP1 | DESC_AF | S1_XN
            }
            // A guest's memory is its own to execute.
            (Regime::Stage2, MemoryKind::Normal) => S2_NORMAL | S2_RW,
            (Regime::Stage2, MemoryKind::Code) => S2_NORMAL | S2_RO,
            (Regime::Stage2, MemoryKind::ReadOnly) => S2_NORMAL | S2_RO | S2_XN,
            // MemAttr 0b0001: Device-nGnRE.
            (Regime::Stage2, MemoryKind::Device) => 0b0001 << 2 | S2_RW | DESC_AF | S2_XN,
        }
    }
}

/// Why a mapping was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Addresses or size not multiples of 4 KiB.
    Unaligned { va: u64, pa: u64, size: u64 },
    /// The range runs past the input address space of the tables.
    OutOfRange { va: u64, size: u64 },
    /// Part of the range is already mapped differently.
    Overlap { va: u64 },
    /// The pool has no table left.
    PoolExhausted,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned { va, pa, size } => {
                write!(
                    f,
                    "mapping {va:#x}->{pa:#x} size {size:#x} is not 4 KiB aligned"
                )
            }
            Self::OutOfRange { va, size } => {
                write!(
                    f,
                    "mapping {va:#x} size {size:#x} exceeds the address space"
                )
            }
            Self::Overlap { va } => write!(f, "{va:#x} is already mapped differently"),
            Self::PoolExhausted => f.write_str("out of translation-table frames"),
        }
    }
}

/// A translation table tree built in a fixed pool of tables.
#[derive(Debug)]
pub struct TableTree<'a> {
    pool: &'a mut [Table],
    used: usize,
    regime: Regime,
    start_level: u8,
    input_bits: u8,
}

impl<'a> TableTree<'a> {
    /// An empty tree for `input_bits` of address (VA or IPA) starting its
    /// walk at `start_level` (0 or 1 with 4 KiB pages, no concatenation).
    /// The pool must hold at least the root table.
    pub fn new(
        pool: &'a mut [Table],
        regime: Regime,
        start_level: u8,
        input_bits: u8,
    ) -> Option<Self> {
        let top_bits = 12 + 9 * (4 - start_level as u32);
        if pool.is_empty()
            || start_level > 1
            || input_bits as u32 > top_bits
            || (input_bits as u32) + 9 <= top_bits
        {
            return None;
        }
        pool[0] = Table::EMPTY;
        Some(Self {
            pool,
            used: 1,
            regime,
            start_level,
            input_bits,
        })
    }

    pub fn regime(&self) -> Regime {
        self.regime
    }

    /// The physical address of the root table (for TTBR0_EL2 / VTTBR_EL2).
    pub fn root_address(&self) -> u64 {
        &self.pool[0] as *const Table as u64
    }

    /// How many tables of the pool are in use.
    pub fn tables_used(&self) -> usize {
        self.used
    }

    /// The tables in use, for cache maintenance before the MMU uses them.
    pub fn tables(&self) -> &[Table] {
        &self.pool[..self.used]
    }

    fn index_of(&self, address: u64) -> Option<usize> {
        let base = self.pool.as_ptr() as u64;
        let offset = address.checked_sub(base)?;
        let index = (offset / PAGE_SIZE) as usize;
        (offset % PAGE_SIZE == 0 && index < self.used).then_some(index)
    }

    /// Maps `size` bytes at `va` to `pa`. Re-mapping a page identically is
    /// accepted (so overlapping regions of the same kind may be mapped twice).
    pub fn map(&mut self, va: u64, pa: u64, size: u64, kind: MemoryKind) -> Result<(), MapError> {
        if !va.is_multiple_of(PAGE_SIZE)
            || !pa.is_multiple_of(PAGE_SIZE)
            || !size.is_multiple_of(PAGE_SIZE)
        {
            return Err(MapError::Unaligned { va, pa, size });
        }
        let end = va
            .checked_add(size)
            .ok_or(MapError::OutOfRange { va, size })?;
        if end > 1u64 << self.input_bits || pa.checked_add(size).is_none() {
            return Err(MapError::OutOfRange { va, size });
        }
        let attributes = self.regime.leaf_attributes(kind);
        let (mut va, mut pa) = (va, pa);
        while va < end {
            let level = (1..=3u8)
                .find(|&level| {
                    let block = level_size(level);
                    level >= self.start_level.max(1)
                        && va % block == 0
                        && pa % block == 0
                        && end - va >= block
                })
                .unwrap_or(3);
            self.set_leaf(va, pa, level, attributes)?;
            va += level_size(level);
            pa += level_size(level);
        }
        Ok(())
    }

    fn set_leaf(&mut self, va: u64, pa: u64, level: u8, attributes: u64) -> Result<(), MapError> {
        let mut table = 0usize;
        for walk_level in self.start_level..level {
            let index = table_index(va, walk_level);
            let entry = self.pool[table].0[index];
            table = if entry & DESC_VALID == 0 {
                if self.used == self.pool.len() {
                    return Err(MapError::PoolExhausted);
                }
                let new = self.used;
                self.used += 1;
                self.pool[new] = Table::EMPTY;
                let address = &self.pool[new] as *const Table as u64;
                self.pool[table].0[index] = address | DESC_TABLE_OR_PAGE | DESC_VALID;
                new
            } else if entry & DESC_TABLE_OR_PAGE != 0 {
                self.index_of(entry & OUTPUT_MASK)
                    .ok_or(MapError::Overlap { va })?
            } else {
                // A block already covers this range: only an identical
                // block-sized request could have been merged, so refuse.
                return Err(MapError::Overlap { va });
            };
        }
        let index = table_index(va, level);
        let leaf = pa | attributes | DESC_VALID | if level == 3 { DESC_TABLE_OR_PAGE } else { 0 };
        let slot = &mut self.pool[table].0[index];
        if *slot & DESC_VALID != 0 && *slot != leaf {
            return Err(MapError::Overlap { va });
        }
        *slot = leaf;
        Ok(())
    }

    /// Translates `va` by walking the tables as the MMU would: the output
    /// address and the leaf's attribute bits, or None if unmapped.
    pub fn translate(&self, va: u64) -> Option<(u64, u64)> {
        if va >> self.input_bits != 0 {
            return None;
        }
        let mut table = 0usize;
        let mut level = self.start_level;
        loop {
            let entry = self.pool[table].0[table_index(va, level)];
            if entry & DESC_VALID == 0 {
                return None;
            }
            let is_table = entry & DESC_TABLE_OR_PAGE != 0 && level < 3;
            if !is_table {
                let block = level_size(level);
                let out = (entry & OUTPUT_MASK & !(block - 1)) | (va & (block - 1));
                return Some((
                    out,
                    entry & !OUTPUT_MASK & !DESC_VALID & !DESC_TABLE_OR_PAGE,
                ));
            }
            table = self.index_of(entry & OUTPUT_MASK)?;
            level += 1;
        }
    }
}

/// The bytes mapped by one entry at `level` (1 GiB, 2 MiB, 4 KiB ...).
pub fn level_size(level: u8) -> u64 {
    1 << (12 + 9 * (3 - level as u32))
}

fn table_index(va: u64, level: u8) -> usize {
    ((va >> (12 + 9 * (3 - level as u32))) & 0x1ff) as usize
}

/// The stage-2 geometry hv uses for a given physical address size: the IPA
/// size (capped at 48 bits, the 4 KiB granule's limit without LPA2) and the
/// start level. Below 44 bits of PA a level-0 start is not permitted
/// (AArch64.S2InvalidSL), so such hosts get a 39-bit IPA space starting at
/// level 1 rather than concatenated tables.
pub fn stage2_geometry(pa_bits: u8) -> (u8, u8) {
    let ipa_bits = pa_bits.min(48);
    if ipa_bits >= 44 {
        (ipa_bits, 0)
    } else {
        (39, 1)
    }
}

/// PARange (ID_AA64MMFR0_EL1[3:0]) as a number of bits; None for reserved.
pub fn pa_range_bits(parange: u64) -> Option<u8> {
    match parange & 0xf {
        0 => Some(32),
        1 => Some(36),
        2 => Some(40),
        3 => Some(42),
        4 => Some(44),
        5 => Some(48),
        6 => Some(52),
        7 => Some(56),
        _ => None,
    }
}

/// PS/IPS encoding of a PA size (the inverse of `pa_range_bits`).
pub fn ps_field(bits: u8) -> u64 {
    match bits {
        0..=32 => 0,
        33..=36 => 1,
        37..=40 => 2,
        41..=42 => 3,
        43..=44 => 4,
        45..=48 => 5,
        49..=52 => 6,
        _ => 7,
    }
}

/// TCR_EL2 for hv's stage 1: 48-bit VA (or the PA size if smaller, as hv is
/// identity mapped), 4 KiB granule, walks cacheable inner shareable.
pub fn tcr_el2(pa_bits: u8) -> u64 {
    let va_bits = pa_bits.min(48) as u64;
    let res1 = 1 << 31 | 1 << 23;
    res1 | ps_field(pa_bits.min(48)) << 16 | 0b11 << 12 | 0b01 << 10 | 0b01 << 8 | (64 - va_bits)
}

/// VTCR_EL2 for a guest's stage 2 of `ipa_bits` starting at `start_level`.
pub fn vtcr_el2(pa_bits: u8, ipa_bits: u8, start_level: u8) -> u64 {
    let res1 = 1 << 31;
    // SL0 with 4 KiB pages: 2 = level 0, 1 = level 1.
    let sl0 = if start_level == 0 { 2 } else { 1 };
    res1 | ps_field(pa_bits.min(48)) << 16
        | 0b11 << 12
        | 0b01 << 10
        | 0b01 << 8
        | sl0 << 6
        | (64 - ipa_bits as u64)
}

/// The start level hv's stage 1 uses for a VA size (see `tcr_el2`).
pub fn stage1_start_level(pa_bits: u8) -> u8 {
    if pa_bits.min(48) > 39 {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    fn pool(n: usize) -> std::boxed::Box<[Table]> {
        vec![Table::EMPTY; n].into_boxed_slice()
    }

    #[test]
    fn largest_blocks_are_used() {
        let mut tables = pool(8);
        let mut tree = TableTree::new(&mut tables, Regime::Stage2, 0, 48).unwrap();
        // 1 GiB + 2 MiB + 4 KiB, aligned to 1 GiB.
        tree.map(0x4000_0000, 0x4000_0000, 0x4020_1000, MemoryKind::Normal)
            .unwrap();
        // L0 + L1 + L2 (for the 2 MiB) + L3 (for the 4 KiB).
        assert_eq!(tree.tables_used(), 4);
        let (pa, attrs) = tree.translate(0x4000_1234).unwrap();
        assert_eq!(pa, 0x4000_1234);
        assert_eq!(attrs, Regime::Stage2.leaf_attributes(MemoryKind::Normal));
        assert_eq!(tree.translate(0x8020_0fff).map(|t| t.0), Some(0x8020_0fff));
        assert_eq!(tree.translate(0x8020_1000), None);
        assert_eq!(tree.translate(0x3fff_ffff), None);
    }

    #[test]
    fn non_identity_and_device() {
        let mut tables = pool(8);
        let mut tree = TableTree::new(&mut tables, Regime::El2Stage1, 0, 48).unwrap();
        tree.map(0x0900_0000, 0x1_0900_0000, 0x1000, MemoryKind::Device)
            .unwrap();
        let (pa, attrs) = tree.translate(0x0900_0abc).unwrap();
        assert_eq!(pa, 0x1_0900_0abc);
        assert_eq!(attrs & (1 << 54), 1 << 54, "devices are never executable");
        assert_eq!(attrs & 0b11100, 0, "MAIR index 0 is Device-nGnRE");
    }

    #[test]
    fn write_xor_execute_in_hv_stage1() {
        let at = |kind| Regime::El2Stage1.leaf_attributes(kind);
        let (writable, executable) = (|a: u64| a & (1 << 7) == 0, |a: u64| a & (1 << 54) == 0);
        assert!(writable(at(MemoryKind::Normal)) && !executable(at(MemoryKind::Normal)));
        assert!(!writable(at(MemoryKind::Code)) && executable(at(MemoryKind::Code)));
        assert!(!writable(at(MemoryKind::ReadOnly)) && !executable(at(MemoryKind::ReadOnly)));
        assert!(!executable(at(MemoryKind::Device)));
        // The guest may execute its memory; devices never.
        let s2 = |kind| Regime::Stage2.leaf_attributes(kind);
        assert_eq!(s2(MemoryKind::Normal) & (3 << 53), 0);
        assert_eq!(s2(MemoryKind::Normal) >> 6 & 3, 0b11);
        assert_eq!(s2(MemoryKind::ReadOnly) >> 6 & 3, 0b01);
        assert_eq!(s2(MemoryKind::Device) >> 53 & 3, 0b10);
    }

    #[test]
    fn errors_are_precise() {
        let mut tables = pool(2);
        let mut tree = TableTree::new(&mut tables, Regime::Stage2, 0, 48).unwrap();
        assert_eq!(
            tree.map(0x1000, 0x1001, 0x1000, MemoryKind::Normal),
            Err(MapError::Unaligned {
                va: 0x1000,
                pa: 0x1001,
                size: 0x1000
            })
        );
        assert_eq!(
            tree.map(1 << 48, 0, 0x1000, MemoryKind::Normal),
            Err(MapError::OutOfRange {
                va: 1 << 48,
                size: 0x1000
            })
        );
        // A 4 KiB page needs L1, L2 and L3 tables: only one is left.
        assert_eq!(
            tree.map(0, 0, 0x1000, MemoryKind::Normal),
            Err(MapError::PoolExhausted)
        );
    }

    #[test]
    fn overlap_is_refused_identical_accepted() {
        let mut tables = pool(8);
        let mut tree = TableTree::new(&mut tables, Regime::Stage2, 0, 48).unwrap();
        tree.map(0x20_0000, 0x20_0000, 0x20_0000, MemoryKind::Normal)
            .unwrap();
        tree.map(0x20_0000, 0x20_0000, 0x20_0000, MemoryKind::Normal)
            .unwrap();
        assert_eq!(
            tree.map(0x20_0000, 0x20_0000, 0x20_0000, MemoryKind::Device),
            Err(MapError::Overlap { va: 0x20_0000 })
        );
        // A page inside an existing 2 MiB block is an overlap, not a split.
        assert_eq!(
            tree.map(0x20_1000, 0x20_1000, 0x1000, MemoryKind::Normal),
            Err(MapError::Overlap { va: 0x20_1000 })
        );
    }

    #[test]
    fn level1_start_for_small_pa() {
        assert_eq!(stage2_geometry(40), (39, 1));
        assert_eq!(stage2_geometry(48), (48, 0));
        assert_eq!(stage2_geometry(52), (48, 0));
        let mut tables = pool(4);
        let mut tree = TableTree::new(&mut tables, Regime::Stage2, 1, 39).unwrap();
        tree.map(0x4000_0000, 0x4000_0000, 0x4000_0000, MemoryKind::Normal)
            .unwrap();
        assert_eq!(tree.tables_used(), 1, "one 1 GiB block in the root");
        assert_eq!(tree.translate(0x7fff_fff0).map(|t| t.0), Some(0x7fff_fff0));
        assert!(tree.map(1 << 39, 0, 0x1000, MemoryKind::Normal).is_err());
        // Geometry the tables cannot express is refused.
        assert!(TableTree::new(&mut tables, Regime::Stage2, 1, 40).is_none());
        assert!(TableTree::new(&mut tables, Regime::Stage2, 0, 30).is_none());
    }

    #[test]
    fn control_registers() {
        // 48-bit PA, T0SZ=16, 4 KiB, inner shareable WB walks.
        assert_eq!(tcr_el2(48), 0x8085_3510);
        // VTCR: SL0=2 (level 0), PS=5, T0SZ=16.
        assert_eq!(vtcr_el2(48, 48, 0), 0x8005_3590);
        assert_eq!(vtcr_el2(40, 39, 1), 0x8002_3559);
        assert_eq!(pa_range_bits(5), Some(48));
        assert_eq!(pa_range_bits(9), None);
        assert_eq!(stage1_start_level(40), 0);
        assert_eq!(stage1_start_level(36), 1);
    }
}
