//! The single walk specialised for the common configurations: DS = 0
//! (the 48-bit descriptor format; with 64KB and FEAT_LPA, PAMax 52, its
//! 52-bit variant, OA\[51:48\] in bits 15:12), no hardware AF/dirty
//! management (VTCR_EL2.HA = 0, so no HD and no FEAT_HAFT either),
//! little-endian descriptors, and a start level the granule can have
//! with DS = 0 (4KB: 0 or 1; 16KB and 64KB: 1, 2 or 3).
//! [`Stage2Walker::new`] chooses it once; every single walk
//! ([`Stage2Walker::walk`], `walk_hinted`, `translate_leaf`,
//! `translate_leaf_hinted`) of such a walker takes it, with results
//! identical to the general walk (`tests/properties.rs` compares the two
//! on random tables, registers and IPAs).
//!
//! One implementation, generic over the granule ([`Shape`]: the
//! granule's constants, taken from the general walk's own per-granule
//! tables and address decoding) and the start level (a const parameter).
//!
//! What it saves against the general walk (`run`/`descend_in`): the
//! levels are unrolled (the start level is a const parameter), so each
//! level's index shift, block permission and type decoding are constants
//! and the trail is written at constant places (the compiler keeps it in
//! registers and writes it straight into the result instead of zeroing a
//! 128-byte array, storing into it at a run-time index and copying it
//! out); there is no FEAT_HAFT table update and, with no leaf update, no
//! compare-and-swap and no restart loop; the leaf checks see constant
//! rules (where the address bits sit, no HA/HD, DS = 0).

use super::{
    failed, level_slot, mask, refused_access, AddressBits, Cursor, DescriptorAccess, Endianness,
    GranuleTables, Leaf, LeafRules, Stage2Walker, Stop, WalkError,
};
use crate::fault::{AccessKind, DescriptorRead, FaultCause, TrailSink, MAX_TRAIL};
use crate::features::Granule;
use crate::memory::{GuestMemory, MemoryError, SlotHint};

/// Which single walk a [`Stage2Walker`] takes, chosen once in
/// [`Stage2Walker::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum WalkKind {
    /// The general walk (`Stage2Walker::run`): every configuration.
    General,
    /// 4KB, DS = 0, no HA, little-endian, start level 0.
    K4Level0,
    /// The same from start level 1.
    K4Level1,
    /// 16KB, DS = 0, no HA, little-endian, start level 1.
    K16Level1,
    /// The same from start level 2.
    K16Level2,
    /// The same from start level 3.
    K16Level3,
    /// 64KB, PAMax below 52 bits, no HA, little-endian, start level 1.
    K64Level1,
    /// The same from start level 2.
    K64Level2,
    /// The same from start level 3.
    K64Level3,
    /// 64KB, PAMax 52 (FEAT_LPA: OA\[51:48\] in bits 15:12, level-1
    /// blocks), no HA, little-endian, start level 1.
    K64LpaLevel1,
    /// The same from start level 2.
    K64LpaLevel2,
    /// The same from start level 3.
    K64LpaLevel3,
}

impl WalkKind {
    /// The specialised walk for a configuration, if there is one: from
    /// the decoded fields, SL0 standing for the start level (with DS = 0,
    /// a configuration that passes its checks starts at level 2 - SL0
    /// with 4KB, 3 - SL0 with 16KB and 64KB; SL0 = 3 is level 3 with
    /// 4KB and FEAT_TTST, and no level with 16KB or 64KB). One that fails
    /// them may take the specialised walk all the same: its first step,
    /// `begin`, reports the configuration fault as the general walk's
    /// does.
    #[inline]
    pub(super) fn choose(
        granule: Granule,
        ds: bool,
        ha: bool,
        endianness: Endianness,
        sl0: u8,
        pa_max: u32,
    ) -> Self {
        // HA = 0 implies HD = 0 and HAFT = 0 (both need HA), so no walk
        // of this configuration writes memory. 64KB with PAMax 52 is the
        // 52-bit format whatever VTCR_EL2.PS (OA[51:48] in bits 15:12,
        // level-1 blocks): a shape of its own.
        if ds || ha || endianness != Endianness::Little {
            return WalkKind::General;
        }
        match (granule, sl0, pa_max >= 52) {
            (Granule::K4, 2, _) => WalkKind::K4Level0,
            (Granule::K4, 1, _) => WalkKind::K4Level1,
            (Granule::K16, 2, _) => WalkKind::K16Level1,
            (Granule::K16, 1, _) => WalkKind::K16Level2,
            (Granule::K16, 0, _) => WalkKind::K16Level3,
            (Granule::K64, 2, false) => WalkKind::K64Level1,
            (Granule::K64, 1, false) => WalkKind::K64Level2,
            (Granule::K64, 0, false) => WalkKind::K64Level3,
            (Granule::K64, 2, true) => WalkKind::K64LpaLevel1,
            (Granule::K64, 1, true) => WalkKind::K64LpaLevel2,
            (Granule::K64, 0, true) => WalkKind::K64LpaLevel3,
            _ => WalkKind::General,
        }
    }
}

/// A granule as the specialised walk sees it: its constants with DS = 0,
/// from the general walk's own per-granule tables and address-bit
/// decoding (so the two walks cannot disagree on them), folded into each
/// copy of the walk (and of the batch, `walk/specialised_batch.rs`).
pub(super) trait Shape {
    const GRANULE: Granule;
    /// 64KB with FEAT_LPA (PAMax 52): OA\[51:48\] in descriptor bits
    /// 15:12, blocks at level 1 too.
    const LPA: bool = false;
    const TABLES: GranuleTables = GranuleTables::new(Self::GRANULE);
    /// Where the output address sits in descriptors (`AddressBits::new`
    /// with DS = 0 and a PAMax that selects the format).
    const ADDRESS_BITS: AddressBits =
        AddressBits::new(Self::GRANULE, false, if Self::LPA { 52 } else { 48 });
    /// The index mask of a full table (9, 11 or 13 bits).
    const INDEX_MASK: u64 = mask(Self::GRANULE.stride());
    /// Levels with block descriptors, at `level_slot` (4KB: 1 and 2;
    /// 16KB: 2; 64KB: 2, and 1 with FEAT_LPA), as `Stage2Walker::new`
    /// works them out.
    const BLOCK_LEVELS: u8 = Self::TABLES.block_levels
        | if Self::LPA {
            Self::TABLES.optional_block_levels
        } else {
            0
        };

    /// Lowest IPA bit `level` resolves.
    #[inline(always)]
    fn level_lsb(level: i8) -> u32 {
        u32::from(Self::TABLES.level_lsbs[level_slot(level)])
    }

    /// Whether a block descriptor is permitted at `level`.
    #[inline(always)]
    fn block_permitted(level: i8) -> bool {
        Self::BLOCK_LEVELS & (1 << level_slot(level)) != 0
    }

    /// log2 of the entries a contiguous hint spans at `level`.
    #[inline(always)]
    fn contiguous_log2(level: i8) -> u32 {
        u32::from(Self::TABLES.contiguous_log2s[level_slot(level)])
    }

    /// The leaf checks' rules at `level`: constants (no HA/HD, DS = 0).
    #[inline(always)]
    fn leaf_rules(level: i8) -> LeafRules {
        LeafRules {
            block_bits: Self::level_lsb(level),
            contiguous_log2: Self::contiguous_log2(level),
            address_bits: Self::ADDRESS_BITS,
            ha: false,
            hd: false,
            ds: false,
        }
    }

    /// AArch64.NextTableBase: the table address bits, and OA\[51:48\]
    /// from bits 15:12 with FEAT_LPA.
    #[inline(always)]
    fn next_table_base(descriptor: u64) -> u64 {
        let bits = Self::ADDRESS_BITS;
        (descriptor & bits.table) | ((descriptor << bits.moved_shift) & bits.moved)
    }
}

/// The 4KB granule.
pub(super) struct K4;
/// The 16KB granule.
pub(super) struct K16;
/// The 64KB granule.
pub(super) struct K64;

impl Shape for K4 {
    const GRANULE: Granule = Granule::K4;
}
impl Shape for K16 {
    const GRANULE: Granule = Granule::K16;
}
impl Shape for K64 {
    const GRANULE: Granule = Granule::K64;
}
/// The 64KB granule with FEAT_LPA.
pub(super) struct K64Lpa;
impl Shape for K64Lpa {
    const GRANULE: Granule = Granule::K64;
    const LPA: bool = true;
}

/// What a specialised walk keeps for later walks besides its reads: a
/// memslot hint, and for a [`PathHint`](super::PathHint) the path a walk
/// took to its leaf.
pub(super) trait WalkMemo {
    /// The memslot hint the walk's reads pass on.
    fn slot(&mut self) -> &mut SlotHint;
    /// The walk of `ipa` read its leaf at `level`, after the table
    /// descriptors in `reads` (the leaf's read the last of them).
    fn reached_leaf<G: Shape, const START: i8>(
        &mut self,
        walker: &Stage2Walker,
        ipa: u64,
        level: i8,
        reads: &[DescriptorRead; MAX_TRAIL],
    );
}

/// A memslot hint alone: the walk keeps nothing else.
impl WalkMemo for &mut SlotHint {
    #[inline(always)]
    fn slot(&mut self) -> &mut SlotHint {
        self
    }

    #[inline(always)]
    fn reached_leaf<G: Shape, const START: i8>(
        &mut self,
        _: &Stage2Walker,
        _: u64,
        _: i8,
        _: &[DescriptorRead; MAX_TRAIL],
    ) {
    }
}

/// One level's outcome.
pub(super) enum Step {
    /// A table descriptor: the next level's descriptor address.
    Table(u64),
    /// The leaf descriptor.
    Leaf(u64),
    /// A fault at the descriptor read.
    Stop(Stop),
    /// Memory refused the read itself (nothing read): an external abort
    /// on the walk, or the host's denial.
    Unread(MemoryError),
}

/// The result of a walk whose read at `address`, `level` memory refused
/// with `error`: out of line, given the address as it is (built inline,
/// the fault's packed payload was prepared on every level of every walk).
#[cold]
#[inline(never)]
pub(super) fn unreadable<T: TrailSink, R>(
    ipa: u64,
    access: AccessKind,
    trail: T,
    address: u64,
    level: i8,
    error: MemoryError,
) -> Result<R, WalkError> {
    match refused_access(error, address, level, DescriptorAccess::Read) {
        Ok(stop) => failed(ipa, access, trail, stop),
        Err(denied) => Err(denied.error(ipa, access)),
    }
}

/// The 16KB and 64KB specialised kinds, each as `$walk!(shape, start)`,
/// anything else `$other`: the one list the plain and the path-hinted
/// dispatches share.
macro_rules! for_16k_64k {
    ($kind:expr, $walk:ident, $other:expr) => {
        match $kind {
            WalkKind::K16Level1 => $walk!(K16, 1),
            WalkKind::K16Level2 => $walk!(K16, 2),
            WalkKind::K16Level3 => $walk!(K16, 3),
            WalkKind::K64Level1 => $walk!(K64, 1),
            WalkKind::K64Level2 => $walk!(K64, 2),
            WalkKind::K64Level3 => $walk!(K64, 3),
            WalkKind::K64LpaLevel1 => $walk!(K64Lpa, 1),
            WalkKind::K64LpaLevel2 => $walk!(K64Lpa, 2),
            WalkKind::K64LpaLevel3 => $walk!(K64Lpa, 3),
            _ => $other,
        }
    };
}
pub(super) use for_16k_64k;

impl Stage2Walker {
    /// The single walk this walker's [`WalkKind`] names: `T` decides what
    /// is recorded of the reads, `done` what a success returns.
    #[inline(always)]
    pub(super) fn run_kind<M: GuestMemory + ?Sized, T: TrailSink, R>(
        &self,
        memory: &M,
        ipa: u64,
        access: AccessKind,
        hint: &mut SlotHint,
        done: impl Fn(&Cursor, &T, &Leaf) -> R,
    ) -> Result<R, WalkError> {
        match self.walk_kind {
            WalkKind::General => self.run::<M, T, R>(memory, ipa, access, hint, done),
            WalkKind::K4Level0 => {
                self.run_from::<K4, M, T, R, _, 0>(memory, ipa, access, hint, done)
            }
            WalkKind::K4Level1 => {
                self.run_from::<K4, M, T, R, _, 1>(memory, ipa, access, hint, done)
            }
            _ => self.run_16k_64k::<M, T, R>(memory, ipa, access, hint, done),
        }
    }

    /// The 16KB and 64KB specialised walks, out of line (one call for
    /// all of them): inline beside the 4KB ones, they made every 4KB
    /// walk of the caller's loop longer (the benchmark's: 197 -> 216
    /// instructions, `walk` at 4KB level 0, with all of them inline; 197
    /// -> 213 with just one of them), the loop keeping less in
    /// registers. Out of line they cost ~40 instructions more than
    /// inline would (walker/README.md, stop 26).
    #[inline(never)]
    fn run_16k_64k<M: GuestMemory + ?Sized, T: TrailSink, R>(
        &self,
        memory: &M,
        ipa: u64,
        access: AccessKind,
        hint: &mut SlotHint,
        done: impl Fn(&Cursor, &T, &Leaf) -> R,
    ) -> Result<R, WalkError> {
        macro_rules! walk {
            ($shape:ty, $start:literal) => {
                self.run_from::<$shape, M, T, R, _, $start>(memory, ipa, access, hint, done)
            };
        }
        // Only the kinds of `for_16k_64k!` call this.
        for_16k_64k!(
            self.walk_kind,
            walk,
            self.run::<M, T, R>(memory, ipa, access, hint, done)
        )
    }

    /// The specialised single walk of granule `G` from start level
    /// `START`: `T` decides what is recorded of the reads, `done` what a
    /// success returns, as for `run`; `memo` passes the memslot hint on and
    /// is told the path of a walk that reaches a leaf (a
    /// [`PathHint`](super::PathHint) keeps it). Only for walkers whose
    /// [`WalkKind`] is `<G>Level<START>`.
    // The level-3 copy of `level!` assigns the next address, which no
    // level reads (a table descriptor there is a page, never `Table`).
    #[allow(unused_assignments)]
    #[inline(always)]
    pub(super) fn run_from<
        G: Shape,
        M: GuestMemory + ?Sized,
        T: TrailSink,
        R,
        P: WalkMemo,
        const START: i8,
    >(
        &self,
        memory: &M,
        ipa: u64,
        access: AccessKind,
        mut memo: P,
        done: impl Fn(&Cursor, &T, &Leaf) -> R,
    ) -> Result<R, WalkError> {
        // The reads at constant places (the compiler keeps them in
        // registers), made a trail only where the walk ends.
        let mut reads = [DescriptorRead::default(); MAX_TRAIL];
        let mut cursor = Cursor::new(ipa, access);
        if let Err(stop) = self.begin(&mut cursor) {
            return failed(ipa, access, T::from_reads(&reads, 0), stop);
        }
        let mut address = cursor.address;
        // The levels unrolled: `level` and the read count are constants
        // in each copy.
        macro_rules! level {
            ($level:literal) => {
                if START <= $level {
                    let read = ($level - START) as usize;
                    let slot = memo.slot();
                    match self.step::<G, M>(memory, slot, &mut reads, ipa, $level, read, address) {
                        Step::Table(next) => address = next,
                        Step::Leaf(descriptor) => {
                            cursor.level = $level;
                            memo.reached_leaf::<G, START>(self, ipa, $level, &reads);
                            let trail = T::from_reads(&reads, read + 1);
                            return self.finish_in::<G, T, R>(&cursor, descriptor, trail, done);
                        }
                        Step::Stop(stop) => {
                            return failed(ipa, access, T::from_reads(&reads, read + 1), stop)
                        }
                        Step::Unread(error) => {
                            let trail = T::from_reads(&reads, read);
                            return unreadable(ipa, access, trail, address, $level, error);
                        }
                    }
                }
            };
        }
        level!(0);
        level!(1);
        level!(2);
        level!(3);
        // Level 3 ends every walk (a table descriptor there is a page);
        // kept as a fault rather than a panic, as in `descend_in`.
        let stop = Stop {
            cause: FaultCause::InvalidDescriptor,
            level: 3,
        };
        failed(ipa, access, T::from_reads(&reads, MAX_TRAIL), stop)
    }

    /// One level of the specialised walk: the read (into `reads[read]`),
    /// and what the descriptor means (`decode` with the granule's
    /// constants in the 48-bit format: its block levels, table addresses
    /// in bits 47 down to the granule's, no FEAT_HAFT).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn step<G: Shape, M: GuestMemory + ?Sized>(
        &self,
        memory: &M,
        hint: &mut SlotHint,
        reads: &mut [DescriptorRead; MAX_TRAIL],
        ipa: u64,
        level: i8,
        read: usize,
        address: u64,
    ) -> Step {
        let raw = match memory.read_descriptor_hinted(address, hint) {
            Ok(raw) => raw,
            Err(error) => return Step::Unread(error),
        };
        let descriptor = u64::from_le(raw);
        if let Some(slot) = reads.get_mut(read) {
            *slot = DescriptorRead {
                address,
                value: descriptor,
                level,
            };
        }
        self.decode_in::<G>(ipa, level, descriptor)
    }

    /// What the descriptor read at `level` means for the walk of `ipa`
    /// under granule `G`'s constants (a single walk's level, or a
    /// batch's): never [`Step::Unread`].
    #[inline(always)]
    pub(super) fn decode_in<G: Shape>(&self, ipa: u64, level: i8, descriptor: u64) -> Step {
        let stop = |cause| Step::Stop(Stop { cause, level });
        match descriptor & 3 {
            3 if level < 3 => {
                let index = (ipa >> G::level_lsb(level + 1)) & G::INDEX_MASK;
                let next = G::next_table_base(descriptor) | (index << 3);
                if self.oa_out_of_range(next) {
                    // Reported at the level of the table descriptor.
                    return stop(FaultCause::TableAddressOutOfRange);
                }
                Step::Table(next)
            }
            3 => Step::Leaf(descriptor),
            1 if G::block_permitted(level) => Step::Leaf(descriptor),
            1 => stop(FaultCause::BlockNotPermitted),
            _ => stop(FaultCause::InvalidDescriptor),
        }
    }

    /// The leaf checks under the configuration's constant rules; no
    /// hardware update (HA = 0), so nothing is written.
    #[inline(always)]
    pub(super) fn finish_in<G: Shape, T: TrailSink, R>(
        &self,
        cursor: &Cursor,
        descriptor: u64,
        trail: T,
        done: impl Fn(&Cursor, &T, &Leaf) -> R,
    ) -> Result<R, WalkError> {
        match self.check_leaf_by(cursor, descriptor, G::leaf_rules(cursor.level)) {
            Ok(leaf) => Ok(done(cursor, &trail, &leaf)),
            Err(stop) => failed(cursor.ipa, cursor.access, trail, stop),
        }
    }
}
