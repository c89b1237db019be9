//! The self-test's physical memory and the stage-2 tables hv builds in it:
//! an [`Arena`] of 64-bit words at known PAs, a small builder of 4 KiB
//! granule stage-2 tables ([`Stage2Builder`]) that writes through any
//! [`TableSpace`] (PAs for L0's own map of L1, L1 IPAs for the table L1
//! writes for L2), L0's map of L1 as the service sees it ([`L0Stage2`], a
//! walk of hv's real stage-2 table of L1), and L1's memory as the walker
//! reads it ([`L1Memory`], only memory L0 maps for L1, bounds-checked).

use core::fmt;
use core::ops::Range;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::esr::FaultStatus;

use shadow_mmu::compose::{
    effective_shareability, permissions_from_stage2, L0Map, L0Mapping, MemAttr, Permissions,
    Unbacked,
};
use walker::{
    AccessKind, CacheMaintenance, Endianness, Execute, ExposedFeatures, FaultCause, GuestMemory,
    IdRegisters, MemoryError, S2Ap, Stage2Registers, Stage2Walker, Translation, WalkError,
};

/// The translation granule of every table here.
pub const PAGE: u64 = 4096;
/// Entries per table.
const ENTRIES: u64 = 512;
const VALID: u64 = 1;
/// Bit 1: table (levels 0-2) or page (level 3) descriptor.
const TABLE_OR_PAGE: u64 = 1 << 1;
const AF: u64 = 1 << 10;
/// SH\[1:0\] = 0b11, Inner Shareable.
const SH_INNER: u64 = 0b11 << 8;
/// MemAttr\[3:0\] = 0b1111: Normal, Inner and Outer Write-Back (FWB = 0).
const MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
/// Output address bits \[47:12\].
const OA_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Bits of IPA both stage-2 tables translate (T0SZ 25, one level-1 root
/// table: a 40-bit IPA at level 1 would need two concatenated roots).
pub const IPA_BITS: u32 = 39;
/// The level both tables start at (VTCR_EL2.SL0 = 0b01 with 4 KiB).
pub const START_LEVEL: u8 = 1;

/// VTCR_EL2 for a 39-bit IPA walked from level 1 with 4 KiB pages,
/// write-back cacheable inner-shareable walks, `ps` the output size field
/// (PS\[18:16\]), 8-bit VMIDs.
pub const fn vtcr(ps: u64) -> u64 {
    (64 - IPA_BITS as u64) | (0b01 << 6) | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) | (ps << 16)
}

/// Log2 of the size a descriptor at `level` maps (4 KiB granule).
pub const fn level_shift(level: u8) -> u32 {
    12 + 9 * (3 - level as u32)
}

/// Physical memory as 64-bit words from PA `base`: the only memory the
/// self-test reads and writes (besides the service's own heap).
pub struct Arena<'a> {
    words: &'a [AtomicU64],
    base: u64,
}

impl fmt::Debug for Arena<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Arena({:#x}+{:#x})", self.base, self.len())
    }
}

/// Why an [`Arena`] cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadArena {
    /// The base given.
    pub base: u64,
}

impl<'a> Arena<'a> {
    /// `words` at PAs from `base` (4 KiB aligned, the end below 2^48).
    pub fn new(words: &'a [AtomicU64], base: u64) -> Result<Self, BadArena> {
        let end = (words.len() as u64)
            .checked_mul(8)
            .and_then(|len| base.checked_add(len));
        if !base.is_multiple_of(PAGE) || end.is_none_or(|end| end > 1 << 48) {
            return Err(BadArena { base });
        }
        Ok(Arena { words, base })
    }

    /// PA of the first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Bytes.
    pub fn len(&self) -> u64 {
        self.words.len() as u64 * 8
    }

    /// Whether the arena has no memory.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    fn word(&self, pa: u64) -> Option<&AtomicU64> {
        let offset = pa.checked_sub(self.base)?;
        if !offset.is_multiple_of(8) {
            return None;
        }
        self.words.get(usize::try_from(offset / 8).ok()?)
    }

    /// The word at `pa` (8-byte aligned, inside the arena).
    pub fn read(&self, pa: u64) -> Option<u64> {
        self.word(pa).map(|w| w.load(Ordering::Acquire))
    }

    /// Writes the word at `pa`; `None` outside the arena.
    pub fn write(&self, pa: u64, value: u64) -> Option<()> {
        self.word(pa).map(|w| w.store(value, Ordering::Release))
    }

    /// Compare-and-swap of the word at `pa`.
    pub fn compare_exchange(&self, pa: u64, current: u64, new: u64) -> Option<Result<u64, u64>> {
        self.word(pa)
            .map(|w| w.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire))
    }

    /// The words of `[pa, pa + len)` (8-byte aligned, inside the arena).
    fn words(&self, pa: u64, len: u64) -> Option<&[AtomicU64]> {
        let offset = pa.checked_sub(self.base)?;
        if !offset.is_multiple_of(8) || !len.is_multiple_of(8) {
            return None;
        }
        let first = usize::try_from(offset / 8).ok()?;
        self.words
            .get(first..first.checked_add(usize::try_from(len / 8).ok()?)?)
    }

    /// Copies `[from, from + len)` to `[to, to + len)` word by word, in
    /// increasing order (8-byte aligned, both inside; `None`, nothing
    /// copied, otherwise). One bounds check for the range, not one a word:
    /// hv's move of the fault-rate case's 8 MiB is 1 Mi words.
    pub fn copy(&self, from: u64, to: u64, len: u64) -> Option<()> {
        let (source, target) = (self.words(from, len)?, self.words(to, len)?);
        for (s, t) in source.iter().zip(target) {
            t.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        Some(())
    }

    /// Fills `[pa, pa + len)` (8-byte aligned, inside) with `value(word PA)`.
    pub fn fill(&self, pa: u64, len: u64, value: impl Fn(u64) -> u64) -> Option<()> {
        let mut at = pa;
        while at < pa.checked_add(len)? {
            self.write(at, value(at))?;
            at += 8;
        }
        Some(())
    }
}

/// The arena as memory a stage-2 walk reads by PA (L0's own table of L1).
impl GuestMemory for Arena<'_> {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        if !address.is_multiple_of(8) {
            return Err(MemoryError::Misaligned);
        }
        // Descriptors are stored in the PE's (little-endian) order.
        self.read(address)
            .map(u64::to_le)
            .ok_or(MemoryError::OutsideMemslots)
    }

    fn compare_exchange_descriptor(
        &self,
        _address: u64,
        _current: u64,
        _new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        // L0's table of L1 is walked with VTCR_EL2.HA = HD = 0.
        Err(MemoryError::ReadOnly)
    }
}

/// What a stage-2 leaf allows (4 KiB granule, stage-2 S2AP and XN\[1:0\]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafAccess {
    /// S2AP.
    pub s2ap: S2Ap,
    /// XN\[1:0\].
    pub execute: Execute,
}

impl LeafAccess {
    /// Read and write, never executable.
    pub const DATA: LeafAccess = LeafAccess {
        s2ap: S2Ap::ReadWrite,
        execute: Execute::Neither,
    };
    /// Read only, never executable.
    pub const READ_ONLY: LeafAccess = LeafAccess {
        s2ap: S2Ap::ReadOnly,
        execute: Execute::Neither,
    };
    /// Read only and executable at EL0 and EL1 (code).
    pub const CODE: LeafAccess = LeafAccess {
        s2ap: S2Ap::ReadOnly,
        execute: Execute::Both,
    };
    /// Everything (L0's map of L1's RAM).
    pub const ALL: LeafAccess = LeafAccess {
        s2ap: S2Ap::ReadWrite,
        execute: Execute::Both,
    };
}

/// A stage-2 block (levels 1-2) or page (level 3) descriptor: Normal
/// write-back, inner shareable, AF set.
pub const fn leaf_descriptor(level: u8, output: u64, access: LeafAccess) -> u64 {
    let kind = if level == 3 {
        VALID | TABLE_OR_PAGE
    } else {
        VALID
    };
    (output & OA_MASK)
        | kind
        | AF
        | SH_INNER
        | MEMATTR_NORMAL_WB
        | ((access.s2ap.bits() as u64) << 6)
        | ((access.execute.xn() as u64) << 53)
}

/// A table descriptor for the next-level table at `next`.
pub const fn table_descriptor(next: u64) -> u64 {
    (next & OA_MASK) | VALID | TABLE_OR_PAGE
}

/// Where a [`Stage2Builder`] reads and writes descriptors: PAs (L0's map)
/// or L1 IPAs (L1's own table, through L0's map).
pub trait TableSpace {
    /// The descriptor at `address`.
    fn read(&self, address: u64) -> Option<u64>;
    /// Writes the descriptor at `address`.
    fn write(&self, address: u64, value: u64) -> Option<()>;
}

impl TableSpace for Arena<'_> {
    fn read(&self, address: u64) -> Option<u64> {
        Arena::read(self, address)
    }
    fn write(&self, address: u64, value: u64) -> Option<()> {
        Arena::write(self, address, value)
    }
}

/// Why a table could not be built or changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// No frame left for a table.
    OutOfFrames,
    /// A descriptor address the space does not back.
    Unbacked {
        /// The address.
        address: u64,
    },
    /// A block already maps the range a deeper entry was asked for.
    BlockInTheWay {
        /// The IPA.
        ipa: u64,
        /// The block's level.
        level: u8,
    },
    /// No table holds the entry to rewrite.
    NoTable {
        /// The IPA.
        ipa: u64,
    },
    /// The IPA is beyond [`IPA_BITS`] or the level is not 1-3.
    OutOfRange {
        /// The IPA.
        ipa: u64,
    },
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BuildError::OutOfFrames => f.write_str("no table frame left"),
            BuildError::Unbacked { address } => {
                write!(f, "descriptor address {address:#x} is not backed")
            }
            BuildError::BlockInTheWay { ipa, level } => {
                write!(f, "a level-{level} block already maps {ipa:#x}")
            }
            BuildError::NoTable { ipa } => write!(f, "no table holds the entry for {ipa:#x}"),
            BuildError::OutOfRange { ipa } => write!(f, "IPA {ipa:#x} or level out of range"),
        }
    }
}

/// A stage-2 table tree (39-bit IPA from level 1, 4 KiB granule) whose
/// tables come from a run of frames of its [`TableSpace`].
#[derive(Clone, Copy, Debug)]
pub struct Stage2Builder {
    root: u64,
    next_frame: u64,
    frames_end: u64,
}

impl Stage2Builder {
    /// A tree whose root is the first frame of `[frames, frames_end)`
    /// (addresses of `space`), zeroed here; the rest are zeroed as used.
    pub fn new(space: &impl TableSpace, frames: u64, frames_end: u64) -> Result<Self, BuildError> {
        let mut builder = Stage2Builder {
            root: 0,
            next_frame: frames,
            frames_end,
        };
        builder.root = builder.new_table(space)?;
        Ok(builder)
    }

    /// The root table's address (VTTBR_EL2.BADDR).
    pub fn root(&self) -> u64 {
        self.root
    }

    fn new_table(&mut self, space: &impl TableSpace) -> Result<u64, BuildError> {
        if self.next_frame.saturating_add(PAGE) > self.frames_end {
            return Err(BuildError::OutOfFrames);
        }
        let table = self.next_frame;
        for i in 0..ENTRIES {
            space
                .write(table + 8 * i, 0)
                .ok_or(BuildError::Unbacked { address: table })?;
        }
        self.next_frame += PAGE;
        Ok(table)
    }

    /// The address of the level-`level` descriptor for `ipa`, making the
    /// tables on the way (`make`) or failing where one is missing.
    fn slot(
        &mut self,
        space: &impl TableSpace,
        ipa: u64,
        level: u8,
        make: bool,
    ) -> Result<Option<u64>, BuildError> {
        if ipa >> IPA_BITS != 0 || !(START_LEVEL..=3).contains(&level) {
            return Err(BuildError::OutOfRange { ipa });
        }
        let mut table = self.root;
        let mut at = START_LEVEL;
        loop {
            let address = table + 8 * ((ipa >> level_shift(at)) & (ENTRIES - 1));
            if at == level {
                return Ok(Some(address));
            }
            let descriptor = space
                .read(address)
                .ok_or(BuildError::Unbacked { address })?;
            table = match descriptor & (VALID | TABLE_OR_PAGE) {
                0b11 => descriptor & OA_MASK,
                0b01 => return Err(BuildError::BlockInTheWay { ipa, level: at }),
                _ if make => {
                    let next = self.new_table(space)?;
                    space
                        .write(address, table_descriptor(next))
                        .ok_or(BuildError::Unbacked { address })?;
                    next
                }
                _ => return Ok(None),
            };
            at += 1;
        }
    }

    /// Writes the level-`level` descriptor for `ipa` (making tables above
    /// it as needed) and returns its address.
    pub fn set(
        &mut self,
        space: &impl TableSpace,
        ipa: u64,
        level: u8,
        descriptor: u64,
    ) -> Result<u64, BuildError> {
        let address = self
            .slot(space, ipa, level, true)?
            .ok_or(BuildError::OutOfFrames)?;
        space
            .write(address, descriptor)
            .ok_or(BuildError::Unbacked { address })?;
        Ok(address)
    }

    /// The address of the level-`level` descriptor for `ipa` in the
    /// tables that exist (no table is made, so `&self`).
    pub fn descriptor_address(
        &self,
        space: &impl TableSpace,
        ipa: u64,
        level: u8,
    ) -> Result<u64, BuildError> {
        // `slot` without `make` changes nothing of the builder.
        let mut walk = *self;
        walk.slot(space, ipa, level, false)?
            .ok_or(BuildError::NoTable { ipa })
    }

    /// Rewrites the level-`level` descriptor for `ipa` in the tables that
    /// exist (no table is made, so `&self`) and returns its address.
    pub fn rewrite(
        &self,
        space: &impl TableSpace,
        ipa: u64,
        level: u8,
        descriptor: u64,
    ) -> Result<u64, BuildError> {
        let address = self.descriptor_address(space, ipa, level)?;
        space
            .write(address, descriptor)
            .ok_or(BuildError::Unbacked { address })?;
        Ok(address)
    }

    /// Maps `[ipa, ipa + size)` to `output` with leaves of `1 << level_shift(level)`.
    pub fn map(
        &mut self,
        space: &impl TableSpace,
        ipa: u64,
        output: u64,
        size: u64,
        level: u8,
        access: LeafAccess,
    ) -> Result<(), BuildError> {
        let step = 1 << level_shift(level);
        let mut offset = 0;
        while offset < size {
            self.set(
                space,
                ipa + offset,
                level,
                leaf_descriptor(level, output + offset, access),
            )?;
            offset += step;
        }
        Ok(())
    }
}

/// Features for walking hv's own stage-2 tables (L0's map of L1, and the
/// shadow in host tests): a 48-bit output, 4 KiB granule.
pub fn host_walk_features() -> ExposedFeatures {
    // PARange 0b0101 (48 bits), TGran4_2 = 0b0010 (4 KiB at stage 2).
    match ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 0b0101 | (0b0010 << 40),
        mmfr1: 0,
        mmfr2: 0,
    }) {
        Ok(features) => features,
        // Constant, valid values (the host test below decodes them).
        Err(_) => unreachable!("fixed ID register values decode"),
    }
}

/// L0's map of L1 (L1 IPA -> PA): a real stage-2 table hv keeps in the
/// arena, read by a stage-2 walk, so changing a descriptor (path 3)
/// changes what the service composes with. It knows where L1's RAM is:
/// hv maps all of it, always, so an invalid leaf there is hv's own
/// break-before-make under way ([`Unbacked::L0Changing`]), never a hole.
#[derive(Debug)]
pub struct L0Stage2<'a> {
    arena: &'a Arena<'a>,
    walker: Stage2Walker,
    /// L1's RAM (L1 IPAs): what hv's table maps for L1 outside its changes.
    l1_ram: Range<u64>,
}

impl<'a> L0Stage2<'a> {
    /// The table whose root is at PA `root` in `arena`, which maps L1's
    /// RAM `l1_ram` (L1 IPAs) whenever hv is not changing it.
    pub fn new(arena: &'a Arena<'a>, root: u64, l1_ram: Range<u64>) -> Self {
        let walker = Stage2Walker::new(
            Stage2Registers {
                // PS 0b101: 48-bit output.
                vtcr: vtcr(0b101),
                vttbr: root,
                endianness: Endianness::Little,
            },
            &host_walk_features(),
        );
        L0Stage2 {
            arena,
            walker,
            l1_ram,
        }
    }

    /// The walk of hv's table for `l1_ipa` (see [`L0Map::lookup`]); its
    /// failure is the fault's cause, or None if the walk was contended (or
    /// denied or mid-change, which the arena, hv's own memory, never
    /// reports).
    fn walk(&self, l1_ipa: u64) -> Result<Translation, Option<FaultCause>> {
        self.walker
            .walk(
                self.arena,
                l1_ipa,
                AccessKind::CacheMaintenance(CacheMaintenance::CleanEl1),
            )
            .map_err(|e| match e {
                WalkError::Fault(fault) => Some(fault.cause),
                WalkError::Contended { .. }
                | WalkError::HostDenied(_)
                | WalkError::HostChanging(_) => None,
            })
    }

    /// Whether a stage-2 abort a guest took on hv's table itself (L1's
    /// own, or L2's while L1's stage 2 is off), with ESR_EL2 `esr` (EC
    /// 0x20 or 0x24) and HPFAR_EL2 `hpfar`, met hv's break-before-make of
    /// L1's RAM: a translation fault at an IPA [`L0Map::unbacked`] calls
    /// `L0Changing` (the decision the service's faults get). In the Arm
    /// ARM's two-stage model that is L0's own fault: hv lets its change
    /// finish and resumes the guest, which never sees it. HPFAR_EL2 holds
    /// the IPA for every stage-2 translation fault (FIPA \[43:4\]: IPA
    /// \[51:12\], `esr::hpfar_ipa_page`), on a stage-1 walk's read too.
    /// Any other fault (a permission fault on a valid leaf, whose retry
    /// would never end) is not one.
    pub fn mid_change_abort(&self, esr: u64, hpfar: u64) -> bool {
        let translation = matches!(
            FaultStatus::from_fsc((esr & 0x3f) as u8),
            FaultStatus::Translation { .. }
        );
        let ipa = crate::esr::hpfar_ipa_page(hpfar);
        translation && self.unbacked(ipa) == Unbacked::L0Changing
    }

    /// The PA of `l1_ipa`, if L0 maps it readable (hv reads L1's memory
    /// there on L1's behalf, as L1's own read would).
    pub fn pa_of(&self, l1_ipa: u64) -> Option<u64> {
        self.lookup(l1_ipa)
            .filter(|m| m.permissions().contains(Permissions::READ))
            .map(|m| m.pa_base() + (l1_ipa - m.ipa_base()))
    }
}

impl L0Map for L0Stage2<'_> {
    /// The leaf of hv's table holding `l1_ipa`, whatever it permits: a
    /// valid leaf is L1 memory even where S2AP or XN deny every access
    /// (L0 revoking access to a page, write-only S2AP), and the service
    /// must see its permissions to answer `L0Denied` (the fault is L0's
    /// own, a stage-2 permission fault at L0 in the Arm ARM's terms), not
    /// find nothing and answer "outside L1's memory", an external abort
    /// for L2. The walk is the one of a clean by VA at EL1, which needs no
    /// stage-2 permission (AArch64.S2CheckPermissions, AccessType_DC):
    /// it faults only where the table has no valid leaf.
    fn lookup(&self, l1_ipa: u64) -> Option<L0Mapping> {
        self.walk(l1_ipa).ok().as_ref().and_then(l0_mapping)
    }

    /// Outside L1's RAM, `Nothing`, as before. Inside it, an
    /// invalid descriptor on the walk is hv's own break-before-make
    /// (`fault_rate_l0_move`, `fault_rate_dirty_log_start`, the self-test's
    /// path 3: the old entry invalid, TLBI, the service's `l0_unmap`, the
    /// new entry), since hv maps all of L1's RAM otherwise. A hardware walk
    /// now would take a stage-2 translation fault to hv, which resolves it
    /// by letting its change finish and resuming the guest; L1 and L2 never
    /// see it (review 59 R59-7). So the service is told `L0Changing` (its
    /// answer: `Retry(L0Changing)`, L2 resumed) rather than `Nothing` (an
    /// external abort for L2 on L1's own memory). A walk that finds a
    /// mapping now is the change completed since `lookup` (the next fault
    /// maps through it): `L0Changing` too. Any other walk failure in L1's
    /// RAM is a table hv built wrongly, not a change: `Nothing`, whose
    /// abort shows it, rather than a retry for ever.
    fn unbacked(&self, l1_ipa: u64) -> Unbacked {
        if !self.l1_ram.contains(&l1_ipa) {
            return Unbacked::Nothing;
        }
        match self.walk(l1_ipa) {
            Err(Some(FaultCause::InvalidDescriptor)) => Unbacked::L0Changing,
            Ok(t) if l0_mapping(&t).is_some() => Unbacked::L0Changing,
            _ => Unbacked::Nothing,
        }
    }
}

/// L0's mapping a walk of hv's table found.
fn l0_mapping(t: &Translation) -> Option<L0Mapping> {
    L0Mapping::new(
        t.ipa_block_base(),
        t.output_block_base(),
        t.block_size,
        permissions_from_stage2(t.s2ap, t.execute),
        MemAttr::from_bits(t.mem_attr),
        effective_shareability(t.shareability),
    )
    .ok()
}

/// L1's memory as the walker reads L1's tables: an L1 IPA goes through
/// L0's map to a PA of the arena; anything L0 does not map (or the arena
/// does not hold) is outside L1's memory. An L1 IPA L0 maps with a valid
/// leaf that denies the access (no read for a read, no write for the
/// walk's AF/dirty compare-and-swap) is L1 memory all the same:
/// [`MemoryError::HostDenied`], L0's own stage-2 permission fault on the
/// walk, for hv to resolve, never an external abort for L1. An L1 IPA
/// without a leaf where [`L0Map::unbacked`] says [`Unbacked::L0Changing`]
/// (hv's break-before-make of the page under way: the decision the
/// service's own L0 lookups and hv's [`L0Stage2::mid_change_abort`] get)
/// is [`MemoryError::HostChanging`]: a hardware walk would take hv's
/// stage-2 translation fault, which hv resolves by letting its change
/// finish, so the access is retried, never aborted for L1.
#[derive(Clone, Copy, Debug)]
pub struct L1Memory<'a> {
    arena: &'a Arena<'a>,
    l0: &'a L0Stage2<'a>,
}

impl<'a> L1Memory<'a> {
    /// L1's memory as L0 maps it.
    pub fn new(arena: &'a Arena<'a>, l0: &'a L0Stage2<'a>) -> Self {
        L1Memory { arena, l0 }
    }

    /// The PA behind `l1_ipa`, if L0 maps it with `needed`: where L0 has
    /// no valid leaf, the host's change under way if [`L0Map::unbacked`]
    /// says so, else outside every memslot; the host's denial where its
    /// leaf lacks `needed`.
    fn pa(&self, l1_ipa: u64, needed: Permissions) -> Result<u64, MemoryError> {
        let Some(mapping) = self.l0.lookup(l1_ipa) else {
            return Err(match self.l0.unbacked(l1_ipa) {
                Unbacked::L0Changing => MemoryError::HostChanging,
                Unbacked::Mmio | Unbacked::Nothing => MemoryError::OutsideMemslots,
            });
        };
        if !mapping.permissions().contains(needed) {
            return Err(MemoryError::HostDenied);
        }
        Ok(mapping.pa_base() + (l1_ipa - mapping.ipa_base()))
    }
}

impl TableSpace for L1Memory<'_> {
    fn read(&self, address: u64) -> Option<u64> {
        self.arena.read(self.pa(address, Permissions::READ).ok()?)
    }
    fn write(&self, address: u64, value: u64) -> Option<()> {
        self.arena
            .write(self.pa(address, Permissions::WRITE).ok()?, value)
    }
}

impl GuestMemory for L1Memory<'_> {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        if !address.is_multiple_of(8) {
            return Err(MemoryError::Misaligned);
        }
        let pa = self.pa(address, Permissions::READ)?;
        self.arena
            .read(pa)
            .map(u64::to_le)
            .ok_or(MemoryError::OutsideMemslots)
    }

    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        if !address.is_multiple_of(8) {
            return Err(MemoryError::Misaligned);
        }
        let pa = self.pa(address, Permissions::READ.union(Permissions::WRITE))?;
        let swapped = self
            .arena
            .compare_exchange(pa, u64::from_le(current), u64::from_le(new))
            .ok_or(MemoryError::OutsideMemslots)?;
        Ok(swapped.map(u64::to_le).map_err(u64::to_le))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    fn arena(base: u64, bytes: u64) -> Arena<'static> {
        let words: Vec<AtomicU64> = (0..bytes / 8).map(|_| AtomicU64::new(0)).collect();
        Arena::new(Box::leak(words.into_boxed_slice()), base).unwrap()
    }

    #[test]
    fn arena_accesses_are_bounds_checked() {
        let a = arena(0x10_0000, 2 * PAGE);
        assert_eq!(a.write(0x10_0000, 7), Some(()));
        assert_eq!(a.read(0x10_0000), Some(7));
        assert_eq!(a.read(0x10_0000 + 2 * PAGE), None);
        assert_eq!(a.read(0x0f_fff8), None);
        assert_eq!(a.read(0x10_0004), None);
        assert_eq!(a.write(0x10_2000, 1), None);
        assert!(Arena::new(&[], 0x10_0800).is_err());
        assert_eq!(a.read_descriptor(0x10_0003), Err(MemoryError::Misaligned));
        assert_eq!(
            a.read_descriptor(0x10_2000),
            Err(MemoryError::OutsideMemslots)
        );
    }

    #[test]
    fn arena_copies_whole_ranges_inside_it() {
        let a = arena(0x10_0000, 4 * PAGE);
        a.fill(0x10_0000, 2 * PAGE, |pa| pa ^ 0x5a).unwrap();
        assert_eq!(a.copy(0x10_0000, 0x10_2000, 2 * PAGE), Some(()));
        assert_eq!(a.read(0x10_2000), Some(0x10_005a));
        assert_eq!(a.read(0x10_3ff8), Some(0x10_1ff8 ^ 0x5a));
        // Past the end, misaligned, or a length not in words: nothing.
        assert_eq!(a.copy(0x10_0000, 0x10_2008, 2 * PAGE), None);
        assert_eq!(a.copy(0x10_0004, 0x10_2000, 8), None);
        assert_eq!(a.copy(0x10_0000, 0x10_2000, 4), None);
        assert_eq!(a.copy(0x0f_f000, 0x10_2000, 8), None);
        assert_eq!(a.copy(0x10_0000, u64::MAX - 7, 8), None);
        assert_eq!(a.read(0x10_2008), Some(0x10_0052));
    }

    #[test]
    fn l0_map_answers_from_the_table_and_follows_its_changes() {
        let a = arena(0x4000_0000, 8 << 20);
        let base = a.base();
        let mut l0 = Stage2Builder::new(&a, base, base + 16 * PAGE).unwrap();
        // L1 IPA 0x8000_0000: one 2 MiB block at base + 2 MiB; the next
        // 2 MiB in pages at base + 4 MiB, one of them read-only.
        l0.map(
            &a,
            0x8000_0000,
            base + (2 << 20),
            2 << 20,
            2,
            LeafAccess::ALL,
        )
        .unwrap();
        l0.map(
            &a,
            0x8020_0000,
            base + (4 << 20),
            2 << 20,
            3,
            LeafAccess::ALL,
        )
        .unwrap();
        l0.set(
            &a,
            0x8020_1000,
            3,
            leaf_descriptor(3, base + (6 << 20), LeafAccess::READ_ONLY),
        )
        .unwrap();
        let map = L0Stage2::new(&a, l0.root(), 0x8000_0000..0x8040_0000);
        let block = map.lookup(0x8012_3456).unwrap();
        assert_eq!(
            (block.ipa_base(), block.pa_base(), block.size()),
            (0x8000_0000, base + (2 << 20), 2 << 20)
        );
        assert_eq!(map.pa_of(0x8020_0008), Some(base + (4 << 20) + 8));
        let ro = map.lookup(0x8020_1000).unwrap();
        assert_eq!(ro.size(), PAGE);
        assert!(!ro.permissions().contains(Permissions::WRITE));
        assert_eq!(map.lookup(0x8040_0000), None);
        // L1's memory: reads through the map, writes only where writable.
        let l1 = L1Memory::new(&a, &map);
        a.write(base + (4 << 20) + 16, 0x1234).unwrap();
        assert_eq!(l1.read_descriptor(0x8020_0010), Ok(0x1234));
        assert_eq!(
            l1.read_descriptor(0x8040_0000),
            Err(MemoryError::OutsideMemslots)
        );
        assert_eq!(TableSpace::write(&l1, 0x8020_1000, 1), None);
        // A walk's update where L0's leaf denies writes: L0's own fault,
        // not a read-only memslot (the architectural abort for L1).
        assert_eq!(
            l1.compare_exchange_descriptor(0x8020_1000, 0, 1),
            Err(MemoryError::HostDenied)
        );
        assert_eq!(
            l1.compare_exchange_descriptor(0x8020_0010, 0x1234, 5),
            Ok(Ok(0x1234))
        );
        // Moving a page: the map follows the descriptor.
        l0.set(
            &a,
            0x8020_0000,
            3,
            leaf_descriptor(3, base + (7 << 20), LeafAccess::ALL),
        )
        .unwrap();
        assert_eq!(map.pa_of(0x8020_0010), Some(base + (7 << 20) + 16));
        // A leaf without read permission: the walk's read (and update) is
        // L0's denial; hv's own read on L1's behalf finds nothing there
        // (`pa_of`), nor does the table builder.
        for s2ap in [S2Ap::None, S2Ap::WriteOnly] {
            let access = LeafAccess {
                s2ap,
                execute: Execute::Neither,
            };
            l0.set(
                &a,
                0x8020_2000,
                3,
                leaf_descriptor(3, base + (6 << 20), access),
            )
            .unwrap();
            assert_eq!(
                l1.read_descriptor(0x8020_2008),
                Err(MemoryError::HostDenied)
            );
            assert_eq!(
                l1.compare_exchange_descriptor(0x8020_2008, 0, 1),
                Err(MemoryError::HostDenied)
            );
            assert_eq!(map.pa_of(0x8020_2008), None);
            assert_eq!(TableSpace::read(&l1, 0x8020_2008), None);
        }
        // A page cannot go under a block.
        assert_eq!(
            l0.set(&a, 0x8000_1000, 3, 0),
            Err(BuildError::BlockInTheWay {
                ipa: 0x8000_1000,
                level: 2
            })
        );
        assert_eq!(
            l0.set(&a, 1 << IPA_BITS, 3, 0),
            Err(BuildError::OutOfRange { ipa: 1 << IPA_BITS })
        );
    }

    /// Review 59 R59-7: inside L1's RAM an invalid leaf of hv's table is
    /// hv's own break-before-make, `L0Changing` (the service retries);
    /// outside it, or where the walk fails otherwise, `Nothing` (an
    /// external abort for L2).
    #[test]
    fn an_invalid_leaf_in_l1_ram_is_l0_changing_and_nothing_outside() {
        use shadow_mmu::compose::Unbacked;
        let a = arena(0x4000_0000, 8 << 20);
        let base = a.base();
        let ram = 0x8000_0000..0x8040_0000;
        let mut l0 = Stage2Builder::new(&a, base, base + 16 * PAGE).unwrap();
        // A 2 MiB block, then 2 MiB of pages: all of L1's RAM.
        l0.map(&a, ram.start, base + (2 << 20), 2 << 20, 2, LeafAccess::ALL)
            .unwrap();
        l0.map(
            &a,
            0x8020_0000,
            base + (4 << 20),
            2 << 20,
            3,
            LeafAccess::ALL,
        )
        .unwrap();
        let map = L0Stage2::new(&a, l0.root(), ram.clone());
        // Outside L1's RAM, just below and just above it (invalid entries
        // of hv's table there too): nothing.
        for outside in [ram.start - PAGE, ram.end, ram.end + 0x1234, 1 << 38] {
            assert_eq!(map.lookup(outside), None, "{outside:#x}");
            assert_eq!(map.unbacked(outside), Unbacked::Nothing, "{outside:#x}");
        }
        // hv breaks one page (a move's first step): that page, and only
        // it, is mid-change.
        let page = 0x8020_3000;
        l0.set(&a, page, 3, 0).unwrap();
        assert_eq!(map.lookup(page + 0x10), None);
        assert_eq!(map.unbacked(page + 0x10), Unbacked::L0Changing);
        assert!(map.lookup(page + PAGE).is_some());
        // ... and the block (a move or the dirty log's split).
        l0.rewrite(&a, ram.start, 2, 0).unwrap();
        assert_eq!(map.lookup(0x8012_3456), None);
        assert_eq!(map.unbacked(0x8012_3456), Unbacked::L0Changing);
        assert_eq!(map.unbacked(ram.start), Unbacked::L0Changing);
        // Make: the new entries are L1 memory again.
        l0.set(
            &a,
            page,
            3,
            leaf_descriptor(3, base + (7 << 20), LeafAccess::ALL),
        )
        .unwrap();
        l0.rewrite(
            &a,
            ram.start,
            2,
            leaf_descriptor(2, base + (2 << 20), LeafAccess::ALL),
        )
        .unwrap();
        assert_eq!(map.pa_of(page + 0x10), Some(base + (7 << 20) + 0x10));
        assert_eq!(map.pa_of(0x8012_3456), Some(base + (2 << 20) + 0x12_3456));
        // A make that lands between the service's `lookup` (None) and its
        // `unbacked`: still a change (retried; the next fault maps), never
        // an abort.
        assert_eq!(map.unbacked(page), Unbacked::L0Changing);
        // A walk that fails for another reason than an invalid entry (an
        // IPA beyond the 39 bits hv's table translates: a map told that
        // L1's RAM reaches there) is not a change: nothing.
        let wide = L0Stage2::new(&a, l0.root(), ram.start..1 << 40);
        assert_eq!(wide.lookup(1 << IPA_BITS), None);
        assert_eq!(wide.unbacked(1 << IPA_BITS), Unbacked::Nothing);
        assert_eq!(wide.unbacked(ram.end), Unbacked::L0Changing);
    }

    /// L1's memory as the shadow walk reads L1's tables: a page of L1's
    /// RAM whose leaf hv has broken (its break-before-make under way) is
    /// `HostChanging` for the walk's read and update alike, exactly where
    /// `unbacked` says `L0Changing` (one decision); outside L1's RAM it
    /// stays outside every memslot; after the make the page reads again.
    #[test]
    fn l1_memory_mid_l0_change_is_the_hosts_change_where_unbacked_says_so() {
        use shadow_mmu::compose::Unbacked;
        let a = arena(0x4000_0000, 8 << 20);
        let base = a.base();
        let ram = 0x8000_0000..0x8020_0000;
        let mut l0 = Stage2Builder::new(&a, base, base + 16 * PAGE).unwrap();
        l0.map(&a, ram.start, base + (2 << 20), 2 << 20, 3, LeafAccess::ALL)
            .unwrap();
        let map = L0Stage2::new(&a, l0.root(), ram.clone());
        let l1 = L1Memory::new(&a, &map);
        let page = 0x8000_5000;
        a.write(base + (2 << 20) + 0x5010, 0x77).unwrap();
        assert_eq!(l1.read_descriptor(page + 0x10), Ok(0x77));
        // hv's break.
        l0.set(&a, page, 3, 0).unwrap();
        assert_eq!(map.unbacked(page + 0x10), Unbacked::L0Changing);
        assert_eq!(
            l1.read_descriptor(page + 0x10),
            Err(MemoryError::HostChanging)
        );
        assert_eq!(
            l1.compare_exchange_descriptor(page + 0x10, 0x77, 0x78),
            Err(MemoryError::HostChanging)
        );
        // hv's own reads and the table builder find nothing there.
        assert_eq!(map.pa_of(page + 0x10), None);
        assert_eq!(TableSpace::read(&l1, page + 0x10), None);
        // Its neighbour is untouched.
        assert!(l1.read_descriptor(page + PAGE).is_ok());
        // Outside L1's RAM: outside every memslot, as `unbacked` says
        // nothing there.
        for outside in [ram.start - PAGE, ram.end, 1 << 38] {
            assert_eq!(map.unbacked(outside), Unbacked::Nothing);
            assert_eq!(
                l1.read_descriptor(outside),
                Err(MemoryError::OutsideMemslots),
                "{outside:#x}"
            );
            assert_eq!(
                l1.compare_exchange_descriptor(outside, 0, 1),
                Err(MemoryError::OutsideMemslots)
            );
        }
        // hv's make, at a new PA: the walk reads the page there.
        l0.set(
            &a,
            page,
            3,
            leaf_descriptor(3, base + (7 << 20), LeafAccess::ALL),
        )
        .unwrap();
        a.write(base + (7 << 20) + 0x10, 0x99).unwrap();
        assert_eq!(l1.read_descriptor(page + 0x10), Ok(0x99));
    }

    #[test]
    fn a_guests_translation_fault_mid_l0_change_is_l0s_and_others_are_not() {
        let a = arena(0x4000_0000, 8 << 20);
        let base = a.base();
        let ram = 0x8000_0000..0x8020_0000;
        let mut l0 = Stage2Builder::new(&a, base, base + 16 * PAGE).unwrap();
        l0.map(&a, ram.start, base + (2 << 20), 2 << 20, 3, LeafAccess::ALL)
            .unwrap();
        let map = L0Stage2::new(&a, l0.root(), ram.clone());
        // HPFAR_EL2 of an IPA: FIPA (bits [43:4]) = IPA[51:12], NS (bit
        // 63) set as the hardware reports it for a Non-secure IPA.
        let hpfar = |ipa: u64| (ipa >> 12) << 4 | 1 << 63;
        // ESR_EL2: EC 0x24 data abort (write) / 0x20 instruction abort,
        // with the fault status code `fsc`.
        let data = |fsc: u64| 0x24 << 26 | 1 << 25 | 1 << 6 | fsc;
        let fetch = |fsc: u64| 0x20 << 26 | 1 << 25 | fsc;
        let page = 0x8010_3000;
        // Mapped: a permission fault is not a change (its retry would
        // never end).
        assert!(!map.mid_change_abort(data(0x0f), hpfar(page)));
        // hv breaks the page: a translation fault there (level 3, or any
        // level, on a stage-1 walk's read too: S1PTW) is L0's own.
        l0.set(&a, page, 3, 0).unwrap();
        for esr in [data(0x07), fetch(0x07), data(0x05), data(0x06) | 1 << 7] {
            assert!(map.mid_change_abort(esr, hpfar(page)), "{esr:#x}");
        }
        // Another status (permission, access flag, external abort) is not.
        for fsc in [0x0f, 0x0b, 0x10, 0x00] {
            assert!(!map.mid_change_abort(data(fsc), hpfar(page)), "{fsc:#x}");
        }
        // An IPA outside L1's RAM is not L0's: its abort stays.
        for outside in [ram.end, ram.start - PAGE, 1 << 38] {
            assert!(
                !map.mid_change_abort(data(0x07), hpfar(outside)),
                "{outside:#x}"
            );
        }
        // The make landed since the fault: still L0's (the guest's next
        // try maps); a permission fault on it is not.
        l0.set(
            &a,
            page,
            3,
            leaf_descriptor(3, base + (5 << 20), LeafAccess::ALL),
        )
        .unwrap();
        assert!(map.mid_change_abort(fetch(0x07), hpfar(page)));
        assert!(!map.mid_change_abort(fetch(0x0f), hpfar(page)));
    }

    #[test]
    fn frames_run_out_with_an_error() {
        let a = arena(0x10_0000, 4 * PAGE);
        let mut b = Stage2Builder::new(&a, 0x10_0000, 0x10_0000 + 2 * PAGE).unwrap();
        // Root + one level-2 table fit; the level-3 table does not.
        assert_eq!(b.set(&a, 0x1000, 3, 0), Err(BuildError::OutOfFrames));
    }
}
