//! The synthetic L1 of the shadow self-test: where everything lies, the
//! tables hv builds for it (L0's map of L1, L1's table for L2), the L2
//! payload, and the model of what each L2 access must give.
//!
//! The arena ([`ARENA_BYTES`] from a 2 MiB-aligned PA):
//!
//! | arena offset | what |
//! |---|---|
//! | 0 .. 64 KiB | L0's stage-2 tables of L1 (hv's own) |
//! | 1 MiB | [`ALT_OFFSET`]: the page path 3 moves an L1 page to |
//! | 2 .. 10 MiB | L1 IPA [`L1_BLOCKS`]: four 2 MiB blocks in L0's map |
//! | 10 .. 12 MiB | L1 IPA [`L1_PAGES`]: 4 KiB pages in L0's map |
//!
//! Every word of L1's memory and of the alternative page holds
//! [`pattern`]`(its PA)`, so a value read tells which PA an access reached.
//! L1's table (L2 IPA -> L1 IPA, 39-bit IPA from level 1, 4 KiB granule)
//! lives in L1's memory at [`L1_TABLES`] and mixes a 2 MiB block, 4 KiB
//! pages, a read-only page, an invalid level-3 entry, an invalid level-1
//! entry and a page whose L1 IPA L0 does not map.

use super::memory::{
    leaf_descriptor, level_shift, vtcr, Arena, BuildError, L0Stage2, L1Memory, LeafAccess,
    Stage2Builder, PAGE,
};

/// Bytes of physical memory the self-test uses.
pub const ARENA_BYTES: u64 = 12 << 20;
/// Alignment of the arena's base (2 MiB blocks in L0's map need it).
pub const ARENA_ALIGN: u64 = 2 << 20;
const L0_TABLES_OFFSET: u64 = 0;
const L0_TABLES_END: u64 = 16 * PAGE;
/// The page path 3 moves L1 page [`MOVED_L1`] to.
pub const ALT_OFFSET: u64 = 1 << 20;
const BLOCKS_OFFSET: u64 = 2 << 20;
const PAGES_OFFSET: u64 = 10 << 20;

/// L1 IPA of L1's block-mapped RAM (8 MiB, 2 MiB blocks in L0's map).
pub const L1_BLOCKS: u64 = 0x4000_0000;
const L1_BLOCKS_SIZE: u64 = 8 << 20;
/// L1 IPA of L1's page-mapped RAM (2 MiB, 4 KiB pages in L0's map).
pub const L1_PAGES: u64 = 0x4080_0000;
const L1_PAGES_SIZE: u64 = 2 << 20;
/// The end of L1's RAM (the pages follow the blocks).
const L1_RAM_END: u64 = L1_PAGES + L1_PAGES_SIZE;
const _: () = assert!(L1_BLOCKS + L1_BLOCKS_SIZE == L1_PAGES);
/// L1 IPA of L1's table frames (16 pages).
pub const L1_TABLES: u64 = L1_PAGES;
const L1_TABLES_END: u64 = L1_PAGES + 16 * PAGE;
/// L1's code page for L2 (read-only, executable).
pub const CODE_L1: u64 = 0x4081_0000;
const RW_L1: u64 = 0x4082_0000;
const RO_L1: u64 = 0x4082_1000;
const TLBI_OLD_L1: u64 = 0x4082_2000;
/// Where path 2 remaps [`TLBI_L2`].
pub const TLBI_NEW_L1: u64 = 0x4082_3000;
/// The L1 page whose L0 mapping path 3 moves to [`ALT_OFFSET`].
pub const MOVED_L1: u64 = 0x4082_4000;
/// The L1 page L0 write-protects (dirty logging) in path 3.
pub const LOGGED_L1: u64 = 0x4082_5000;
/// L2's stage-1 level-1 table before L1 remaps its page ([`S1_TABLE_L2`]).
const S1_OLD_L1: u64 = 0x4082_6000;
/// ... and after.
pub const S1_NEW_L1: u64 = 0x4082_7000;
/// L2's stage-1 level-2 table the new level-1 table points to.
const S1_LEVEL2_L1: u64 = 0x4082_8000;
const IN_BLOCK_L1: u64 = 0x4040_3000;
const BLOCK_L1: u64 = 0x4020_0000;
/// Where path 2 remaps [`BLOCK_L2`].
pub const BLOCK_NEW_L1: u64 = 0x4060_0000;
/// An L1 IPA below L1's output size that L0 does not map.
pub const OUTSIDE_L1: u64 = 0x70_0000_0000;

/// L2 IPA of the payload (EL1 runs with its MMU off: VA = L2 IPA).
pub const CODE_L2: u64 = 0x0008_0000;
/// A read/write page.
pub const RW_L2: u64 = 0x0010_0000;
/// A read-only page.
pub const RO_L2: u64 = 0x0010_1000;
/// An invalid level-3 entry: a translation fault, level 3.
pub const INVALID_L2: u64 = 0x0010_2000;
/// The page L1 remaps with break-before-make and TLBI IPAS2E1IS (path 2).
pub const TLBI_L2: u64 = 0x0010_3000;
/// The page whose L1 page L0 moves (path 3).
pub const MOVED_L2: u64 = 0x0010_4000;
/// A page on an L1 page that L0 maps with a 2 MiB block (composes to 4 KiB).
pub const IN_BLOCK_L2: u64 = 0x0010_5000;
/// A page whose L1 IPA L0 does not map: an external abort.
pub const OUTSIDE_L2: u64 = 0x0010_6000;
/// The page whose L1 page L0 write-protects (path 3's dirty logging).
pub const LOGGED_L2: u64 = 0x0010_7000;
/// The page of L2's own stage-1 level-1 table (the run with L2's MMU on),
/// which L1 remaps with break-before-make and TLBI IPAS2E1IS.
pub const S1_TABLE_L2: u64 = 0x0010_8000;
/// The page of L2's stage-1 level-2 table (only the new level-1 table
/// points to it).
pub const S1_LEVEL2_L2: u64 = 0x0010_9000;
/// An L2 VA whose stage-1 translation the remap changes: through the old
/// level-1 table it is L2 IPA `S1_ALIAS_VA - 1 GiB` ([`RW_L2`]'s page),
/// through the new one L2 IPA `S1_ALIAS_VA - 1 GiB + 4 MiB` (in
/// [`BLOCK_L2`]'s block).
pub const S1_ALIAS_VA: u64 = 0x4000_0000 + RW_L2 + 0x28;
/// TCR_EL1 for L2's stage 1: T0SZ 25 (39-bit VA, walks from level 1), 4 KiB
/// granule, Normal write-back Inner Shareable walks, TTBR1 walks disabled
/// (EPD1), IPS 32 bits.
pub const S1_TCR: u64 = 25 | (1 << 8) | (1 << 10) | (3 << 12) | (1 << 23);
/// MAIR_EL1 for L2's stage 1: attribute 0 Normal write-back.
pub const S1_MAIR: u64 = 0xff;
/// A stage-1 block descriptor of L2's (level 1: 1 GiB, level 2: 2 MiB):
/// AttrIndx 0, EL1 read/write, Inner Shareable, AF set, executable.
const fn s1_block(ipa: u64) -> u64 {
    ipa | (1 << 10) | (3 << 8) | 0b01
}
/// A stage-1 table descriptor of L2's.
const fn s1_table(ipa: u64) -> u64 {
    ipa | 0b11
}
/// A 2 MiB block in L1's table over a 2 MiB block of L0's: a 2 MiB shadow
/// block.
pub const BLOCK_L2: u64 = 0x0040_0000;
/// Under an invalid level-1 entry: a translation fault, level 1.
pub const UNMAPPED_L2: u64 = 0x40_0000_0000;

/// L1's VMID for L2 (what its TLBIs name).
pub const L1_VMID: u16 = 5;
/// L1's VTCR_EL2 for L2: 39-bit IPA from level 1, 4 KiB, PS 40 bits.
pub const L1_VTCR: u64 = vtcr(0b010);

/// The payload L2 runs at EL1 from [`CODE_L2`] (AArch64, little-endian):
/// `x0` the address; `x2` 0 to read `x1` from it, 1 to store `x3` to it
/// (then HVC #0 hands the result to hv), 2 to branch to it (an
/// instruction fetch from it).
///
/// ```text
///     cbnz x2, 1f          // b5000062
///     ldr  x1, [x0]        // f9400001
///     hvc  #0              // d4000002
/// 1:  tbnz x2, #1, 2f      // 37080062
///     str  x3, [x0]        // f9000003
///     hvc  #0              // d4000002
/// 2:  br   x0              // d61f0000
///     b    .               // 14000000 (never reached)
/// ```
pub const PAYLOAD: [u32; 8] = [
    0xb500_0062,
    0xf940_0001,
    0xd400_0002,
    0x3708_0062,
    0xf900_0003,
    0xd400_0002,
    0xd61f_0000,
    0x1400_0000,
];

/// What every 8-byte word of L1's memory holds at first: its own PA, so a
/// read shows which PA it reached.
pub const fn pattern(pa: u64) -> u64 {
    pa ^ 0x5ad0_0000_0000_0000
}

/// Pieces of L1's table the scenario changes (path 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L1Entry {
    /// [`TLBI_L2`]'s page.
    TlbiPage,
    /// [`BLOCK_L2`]'s block.
    Block,
    /// [`S1_TABLE_L2`]'s page (L2's own stage-1 table).
    S1Table,
}

/// The synthetic L1: the arena, L0's map of it, L1's table.
#[derive(Debug)]
pub struct Lab<'a> {
    arena: &'a Arena<'a>,
    l0_map: L0Stage2<'a>,
    l0_tables: Stage2Builder,
    l1_tables: Stage2Builder,
}

impl<'a> Lab<'a> {
    /// Fills the arena (patterns, tables, payload): L0's map of L1 first,
    /// then L1's table written through it, as L1 would.
    pub fn build(arena: &'a Arena<'a>) -> Result<Self, BuildError> {
        let base = arena.base();
        if !base.is_multiple_of(ARENA_ALIGN) || arena.len() < ARENA_BYTES {
            return Err(BuildError::Unbacked { address: base });
        }
        arena
            .fill(base + ALT_OFFSET, PAGE, pattern)
            .and_then(|()| arena.fill(base + BLOCKS_OFFSET, ARENA_BYTES - BLOCKS_OFFSET, pattern))
            .ok_or(BuildError::Unbacked { address: base })?;
        let mut l0_tables =
            Stage2Builder::new(arena, base + L0_TABLES_OFFSET, base + L0_TABLES_END)?;
        l0_tables.map(
            arena,
            L1_BLOCKS,
            base + BLOCKS_OFFSET,
            L1_BLOCKS_SIZE,
            2,
            LeafAccess::ALL,
        )?;
        l0_tables.map(
            arena,
            L1_PAGES,
            base + PAGES_OFFSET,
            L1_PAGES_SIZE,
            3,
            LeafAccess::ALL,
        )?;
        // L1's RAM: the blocks, then the pages right after them.
        let l0_map = L0Stage2::new(arena, l0_tables.root(), L1_BLOCKS..L1_RAM_END);
        let l1 = L1Memory::new(arena, &l0_map);
        let mut t = Stage2Builder::new(&l1, L1_TABLES, L1_TABLES_END)?;
        t.map(&l1, CODE_L2, CODE_L1, PAGE, 3, LeafAccess::CODE)?;
        t.map(&l1, RW_L2, RW_L1, PAGE, 3, LeafAccess::DATA)?;
        t.map(&l1, RO_L2, RO_L1, PAGE, 3, LeafAccess::READ_ONLY)?;
        t.set(&l1, INVALID_L2, 3, 0)?;
        t.map(&l1, TLBI_L2, TLBI_OLD_L1, PAGE, 3, LeafAccess::DATA)?;
        t.map(&l1, MOVED_L2, MOVED_L1, PAGE, 3, LeafAccess::DATA)?;
        t.map(&l1, LOGGED_L2, LOGGED_L1, PAGE, 3, LeafAccess::DATA)?;
        t.map(&l1, IN_BLOCK_L2, IN_BLOCK_L1, PAGE, 3, LeafAccess::DATA)?;
        t.map(&l1, OUTSIDE_L2, OUTSIDE_L1, PAGE, 3, LeafAccess::DATA)?;
        t.map(&l1, BLOCK_L2, BLOCK_L1, 2 << 20, 2, LeafAccess::DATA)?;
        t.map(&l1, S1_TABLE_L2, S1_OLD_L1, PAGE, 3, LeafAccess::DATA)?;
        t.map(&l1, S1_LEVEL2_L2, S1_LEVEL2_L1, PAGE, 3, LeafAccess::DATA)?;
        // L2's stage 1: VA 0 - 1 GiB is the identity (the payload, its
        // data); VA 1 - 2 GiB is an alias of L2 IPA 0 in the old level-1
        // table, and of L2 IPA 4 MiB (the block) through a level-2 table in
        // the new one. (Zero elsewhere: invalid.)
        let write_l1 = |l1_ipa: u64, index: u64, descriptor: u64| {
            let pa = l0_map
                .pa_of(l1_ipa)
                .ok_or(BuildError::Unbacked { address: l1_ipa })?;
            arena
                .fill(pa, PAGE, |_| 0)
                .ok_or(BuildError::Unbacked { address: pa })?;
            arena
                .write(pa, s1_block(0))
                .and_then(|()| arena.write(pa + 8 * index, descriptor))
                .ok_or(BuildError::Unbacked { address: pa })
        };
        write_l1(S1_OLD_L1, 1, s1_block(0))?;
        write_l1(S1_NEW_L1, 1, s1_table(S1_LEVEL2_L2))?;
        // The level-2 table: its entry 0 (VA 1 GiB + 0 - 2 MiB) is the
        // block at L2 IPA 4 MiB; entry 0 of the identity is never used.
        let level2 = l0_map.pa_of(S1_LEVEL2_L1).ok_or(BuildError::Unbacked {
            address: S1_LEVEL2_L1,
        })?;
        arena
            .fill(level2, PAGE, |_| 0)
            .and_then(|()| arena.write(level2, s1_block(BLOCK_L2)))
            .ok_or(BuildError::Unbacked { address: level2 })?;
        // The payload: two instructions per 64-bit word, the first in the
        // low half (little-endian).
        let code = l0_map
            .pa_of(CODE_L1)
            .ok_or(BuildError::Unbacked { address: CODE_L1 })?;
        for (i, pair) in PAYLOAD.chunks(2).enumerate() {
            let word = u64::from(pair[0]) | (u64::from(pair.get(1).copied().unwrap_or(0)) << 32);
            arena
                .write(code + 8 * i as u64, word)
                .ok_or(BuildError::Unbacked { address: code })?;
        }
        Ok(Lab {
            arena,
            l0_map,
            l0_tables,
            l1_tables: t,
        })
    }

    /// The arena.
    pub fn arena(&self) -> &'a Arena<'a> {
        self.arena
    }

    /// L0's map of L1, as the service composes with it.
    pub fn l0_map(&self) -> &L0Stage2<'a> {
        &self.l0_map
    }

    /// L1's memory, as the service walks L1's table in it.
    pub fn l1_memory(&self) -> L1Memory<'_> {
        L1Memory::new(self.arena, &self.l0_map)
    }

    /// L1's VTTBR_EL2 for L2: its VMID and the L1 IPA of its table.
    pub fn l1_vttbr(&self) -> u64 {
        u64::from(L1_VMID) << 48 | self.l1_tables.root()
    }

    /// PA of the arena's alternative page (path 3's new backing).
    pub fn alt_pa(&self) -> u64 {
        self.arena.base() + ALT_OFFSET
    }

    /// L1 rewrites one of its entries: `target` None makes it invalid
    /// (the "break" of break-before-make), Some(new L1 IPA) maps it there.
    pub fn set_l1_entry(&self, entry: L1Entry, target: Option<u64>) -> Result<(), BuildError> {
        let (ipa, level) = match entry {
            L1Entry::TlbiPage => (TLBI_L2, 3),
            L1Entry::Block => (BLOCK_L2, 2),
            L1Entry::S1Table => (S1_TABLE_L2, 3),
        };
        let descriptor = target.map_or(0, |l1| leaf_descriptor(level, l1, LeafAccess::DATA));
        self.l1_tables
            .rewrite(&self.l1_memory(), ipa, level, descriptor)
            .map(drop)
    }

    /// L0 changes its map of L1 page [`MOVED_L1`]: None unmaps it, Some(pa)
    /// maps it to `pa`.
    pub fn set_l0_page(&self, pa: Option<u64>) -> Result<(), BuildError> {
        let descriptor = pa.map_or(0, |pa| leaf_descriptor(3, pa, LeafAccess::ALL));
        self.l0_tables
            .rewrite(self.arena, MOVED_L1, 3, descriptor)
            .map(drop)
    }

    /// L0 write-protects L1 page [`LOGGED_L1`] (dirty logging) or makes
    /// it writable again (the page logged dirty).
    pub fn set_l0_logging(&self, write_protected: bool) -> Result<(), BuildError> {
        self.set_l0_logged_access(if write_protected {
            LeafAccess {
                s2ap: walker::S2Ap::ReadOnly,
                execute: walker::Execute::Both,
            }
        } else {
            LeafAccess::ALL
        })
    }

    /// L0 maps L1 page [`LOGGED_L1`] at its own PA with `access` (any
    /// S2AP and XN, no access at all included).
    pub fn set_l0_logged_access(&self, access: LeafAccess) -> Result<(), BuildError> {
        self.set_l0_page_access(LOGGED_L1, access)
    }

    /// L0 maps L1 page `l1_page`, one of its 4 KiB pages of L1
    /// ([`L1_PAGES`], which hold L1's table too), at its own PA with
    /// `access` (any S2AP and XN, no access at all included).
    pub fn set_l0_page_access(&self, l1_page: u64, access: LeafAccess) -> Result<(), BuildError> {
        let pa = self.own_pa(l1_page)?;
        self.l0_tables
            .rewrite(self.arena, l1_page, 3, leaf_descriptor(3, pa, access))
            .map(drop)
    }

    /// L0's break of L1 page `l1_page` (one of [`L1_PAGES`]): its leaf
    /// invalid, as in the first half of a break-before-make;
    /// [`Lab::set_l0_page_access`] is the make.
    pub fn break_l0_page(&self, l1_page: u64) -> Result<(), BuildError> {
        self.own_pa(l1_page)?;
        self.l0_tables.rewrite(self.arena, l1_page, 3, 0).map(drop)
    }

    /// The PA L0 maps L1 page `l1_page` (one of [`L1_PAGES`]) at.
    fn own_pa(&self, l1_page: u64) -> Result<u64, BuildError> {
        let offset = l1_page.wrapping_sub(L1_PAGES);
        if offset >= L1_PAGES_SIZE || !offset.is_multiple_of(PAGE) {
            return Err(BuildError::OutOfRange { ipa: l1_page });
        }
        Ok(self.arena.base() + PAGES_OFFSET + offset)
    }

    /// The L1 IPA of L1's level-`level` descriptor for L2 IPA `l2_ipa`
    /// (where the service's walk reads it).
    pub fn l1_descriptor(&self, l2_ipa: u64, level: u8) -> Result<u64, BuildError> {
        self.l1_tables
            .descriptor_address(&self.l1_memory(), l2_ipa, level)
    }
}

/// What L1's table and L0's map say now, kept by the scenario as it
/// changes them: the expected result of every L2 access, computed from
/// the layout above and not from any walk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Model {
    /// L1 remapped [`TLBI_L2`] to its new page.
    pub tlbi_page_moved: bool,
    /// L1 remapped [`BLOCK_L2`] to its new block.
    pub block_moved: bool,
    /// L0 moved [`MOVED_L1`] to the alternative page.
    pub l0_page_moved: bool,
    /// L0 write-protects [`LOGGED_L1`].
    pub l0_logging: bool,
}

/// What one L2 access must give under the [`Model`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It reaches this PA, through a shadow leaf of this size.
    Pa {
        /// The PA.
        pa: u64,
        /// Size of the composed leaf (the smaller of L1's and L0's).
        leaf_size: u64,
        /// Whether L1's leaf allows writes.
        writable: bool,
        /// Whether L0's map allows writes.
        l0_writable: bool,
        /// Whether L1's leaf allows execution at EL1 (L0's always does).
        executable: bool,
    },
    /// L1's table faults: a translation fault at this level.
    Translation {
        /// The level.
        level: u8,
    },
    /// The L1 IPA has nothing behind it.
    OutsideL1 {
        /// The L1 IPA.
        l1_ipa: u64,
    },
}

impl Model {
    /// L1's table: (L1 IPA, L1 leaf size, writable), or the fault level.
    fn l1(&self, l2: u64) -> Result<(u64, u64, bool), u8> {
        let page = l2 & !(PAGE - 1);
        let offset = l2 & (PAGE - 1);
        let block = 1 << level_shift(2);
        let target = match page {
            CODE_L2 => (CODE_L1, false),
            RW_L2 => (RW_L1, true),
            RO_L2 => (RO_L1, false),
            TLBI_L2 if self.tlbi_page_moved => (TLBI_NEW_L1, true),
            TLBI_L2 => (TLBI_OLD_L1, true),
            MOVED_L2 => (MOVED_L1, true),
            LOGGED_L2 => (LOGGED_L1, true),
            IN_BLOCK_L2 => (IN_BLOCK_L1, true),
            OUTSIDE_L2 => (OUTSIDE_L1, true),
            _ if l2 & !(block - 1) == BLOCK_L2 => {
                let base = if self.block_moved {
                    BLOCK_NEW_L1
                } else {
                    BLOCK_L1
                };
                return Ok((base + (l2 - BLOCK_L2), block, true));
            }
            // Level-1 entries other than the first are invalid.
            _ if l2 >> level_shift(1) != 0 => return Err(1),
            // The level-3 table holds only the pages above.
            _ if l2 >> level_shift(2) == 0 => return Err(3),
            _ => return Err(2),
        };
        Ok((target.0 + offset, PAGE, target.1))
    }

    /// L0's map: (PA, L0 leaf size), or None outside L1's memory.
    fn l0(&self, l1: u64, arena_base: u64) -> Option<(u64, u64)> {
        if l1 & !(PAGE - 1) == MOVED_L1 && self.l0_page_moved {
            return Some((arena_base + ALT_OFFSET + (l1 - MOVED_L1), PAGE));
        }
        if (L1_BLOCKS..L1_BLOCKS + L1_BLOCKS_SIZE).contains(&l1) {
            return Some((arena_base + BLOCKS_OFFSET + (l1 - L1_BLOCKS), 2 << 20));
        }
        if (L1_PAGES..L1_PAGES + L1_PAGES_SIZE).contains(&l1) {
            return Some((arena_base + PAGES_OFFSET + (l1 - L1_PAGES), PAGE));
        }
        None
    }

    /// What an access to `l2` gives, with the arena at `arena_base`.
    pub fn outcome(&self, l2: u64, arena_base: u64) -> Outcome {
        let (l1, l1_size, writable) = match self.l1(l2) {
            Ok(t) => t,
            Err(level) => return Outcome::Translation { level },
        };
        match self.l0(l1, arena_base) {
            Some((pa, l0_size)) => Outcome::Pa {
                pa,
                leaf_size: l1_size.min(l0_size),
                writable,
                l0_writable: !(self.l0_logging && l1 & !(PAGE - 1) == LOGGED_L1),
                executable: l2 & !(PAGE - 1) == CODE_L2,
            },
            None => Outcome::OutsideL1 { l1_ipa: l1 },
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::sync::atomic::AtomicU64;
    use shadow_mmu::compose::L0Map;
    use std::boxed::Box;
    use std::vec::Vec;
    use walker::{
        AccessKind, Endianness, ExposedFeatures, IdRegisters, Stage2Registers, Stage2Walker,
    };

    pub(crate) fn arena(base: u64) -> &'static Arena<'static> {
        let words: Vec<AtomicU64> = (0..ARENA_BYTES / 8).map(|_| AtomicU64::new(0)).collect();
        Box::leak(Box::new(
            Arena::new(Box::leak(words.into_boxed_slice()), base).unwrap(),
        ))
    }

    /// The model agrees with a software two-stage walk of the tables the
    /// lab built (the walker over L1's table, then L0's map), for every
    /// address the scenario touches and both states of each change.
    #[test]
    fn the_model_is_what_the_tables_say() {
        let arena = arena(0x4800_0000);
        let lab = Lab::build(arena).unwrap();
        let features = ExposedFeatures::from_id_registers(IdRegisters {
            mmfr0: 0b0010 | (0b0010 << 40),
            mmfr1: 0,
            mmfr2: 0,
        })
        .unwrap();
        let walker = Stage2Walker::new(
            Stage2Registers {
                vtcr: L1_VTCR,
                vttbr: lab.l1_vttbr(),
                endianness: Endianness::Little,
            },
            &features,
        );
        let check = |model: &Model| {
            for l2 in [
                CODE_L2,
                RW_L2 + 8,
                RO_L2 + 0x100,
                INVALID_L2,
                TLBI_L2 + 0x10,
                MOVED_L2 + 0x18,
                IN_BLOCK_L2 + 0x20,
                OUTSIDE_L2,
                LOGGED_L2 + 0x48,
                BLOCK_L2,
                BLOCK_L2 + 0x1f_fff8,
                UNMAPPED_L2 + 8,
                0x20_0000,
            ] {
                let expected = model.outcome(l2, arena.base());
                let walked = match walker.walk(&lab.l1_memory(), l2, AccessKind::Read) {
                    Err(walker::WalkError::Fault(f)) => {
                        assert_eq!(f.kind(), walker::FaultKind::Translation, "{l2:#x}");
                        Outcome::Translation {
                            level: f.level as u8,
                        }
                    }
                    Err(e) => panic!("{l2:#x}: {e:?}"),
                    Ok(t) => match lab.l0_map().lookup(t.output_address) {
                        None => Outcome::OutsideL1 {
                            l1_ipa: t.output_address,
                        },
                        Some(m) => Outcome::Pa {
                            pa: m.pa_base() + (t.output_address - m.ipa_base()),
                            leaf_size: t.block_size.min(m.size()),
                            writable: t.s2ap.writable(),
                            l0_writable: m
                                .permissions()
                                .contains(shadow_mmu::compose::Permissions::WRITE),
                            executable: t.execute.el1(),
                        },
                    },
                };
                assert_eq!(walked, expected, "{l2:#x} under {model:?}");
                if let Outcome::Pa { pa, .. } = expected {
                    if l2 != CODE_L2 {
                        assert_eq!(arena.read(pa), Some(pattern(pa)), "{l2:#x}");
                    }
                }
            }
        };
        let mut model = Model::default();
        check(&model);
        lab.set_l1_entry(L1Entry::TlbiPage, Some(TLBI_NEW_L1))
            .unwrap();
        lab.set_l1_entry(L1Entry::Block, Some(BLOCK_NEW_L1))
            .unwrap();
        lab.set_l0_page(Some(lab.alt_pa())).unwrap();
        lab.set_l0_logging(true).unwrap();
        model = Model {
            tlbi_page_moved: true,
            block_moved: true,
            l0_page_moved: true,
            l0_logging: true,
        };
        check(&model);
        // The payload is where L2 fetches it.
        let code = lab.l0_map().pa_of(CODE_L1).unwrap();
        assert_eq!(arena.read(code), Some(0xf940_0001_b500_0062));
    }

    #[test]
    fn a_misplaced_arena_is_refused() {
        let arena = arena(0x4810_0000);
        assert!(Lab::build(arena).is_err());
    }
}
