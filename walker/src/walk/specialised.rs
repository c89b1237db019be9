//! The single walk specialised for the most common configuration: 4KB
//! granule, DS = 0 (48-bit descriptor format), no hardware AF/dirty
//! management (VTCR_EL2.HA = 0, so no HD and no FEAT_HAFT either),
//! little-endian descriptors, start level 0 or 1. [`Stage2Walker::new`]
//! chooses it once; every single walk ([`Stage2Walker::walk`],
//! `walk_hinted`, `translate_leaf`, `translate_leaf_hinted`) of such a
//! walker takes it, with results identical to the general walk
//! (`tests/properties.rs` compares the two on random tables, registers
//! and IPAs).
//!
//! What it saves against the general walk (`run`/`descend_in`): the
//! levels are unrolled (the start level is a const parameter), so each
//! level's index shift, block permission and type decoding are constants
//! and the trail is written at constant places (the compiler keeps it in
//! registers and writes it straight into the result instead of zeroing a
//! 128-byte array, storing into it at a run-time index and copying it
//! out); there is no FEAT_HAFT table update and, with no leaf update, no
//! compare-and-swap and no restart loop; the leaf checks see constant
//! rules (no 52-bit address bits, no HA/HD, DS = 0).

use super::{
    failed, AddressBits, Cursor, Endianness, Leaf, LeafRules, Stage2Walker, Stop, WalkError,
};
use crate::fault::{AccessKind, DescriptorRead, FaultCause, TrailSink, MAX_TRAIL};
use crate::features::Granule;
use crate::memory::{GuestMemory, SlotHint};

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
}

impl WalkKind {
    /// The specialised walk for a configuration, if there is one: from
    /// the decoded fields, SL0 standing for the start level (with 4KB and
    /// DS = 0, a configuration that passes its checks starts at level 0
    /// exactly when SL0 = 2 and at level 1 when SL0 = 1). One that fails
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
    ) -> Self {
        // HA = 0 implies HD = 0 and HAFT = 0 (both need HA), so no walk
        // of this configuration writes memory.
        let eligible = granule == Granule::K4 && !ds && !ha && endianness == Endianness::Little;
        match (eligible, sl0) {
            (true, 2) => WalkKind::K4Level0,
            (true, 1) => WalkKind::K4Level1,
            _ => WalkKind::General,
        }
    }
}

/// Table address bits of a 4KB, DS = 0 descriptor: 47:12.
const TABLE_ADDRESS_4K: u64 = ((1 << 48) - 1) & !0xfff;

/// Lowest IPA bit a 4KB level resolves (0..=3).
const fn level_lsb_4k(level: i8) -> u32 {
    12 + 9 * (3 - level as u32)
}

/// One level's outcome.
enum Step {
    /// A table descriptor: the next level's descriptor address.
    Table(u64),
    /// The leaf descriptor.
    Leaf(u64),
    /// A fault at the descriptor read.
    Stop(Stop),
    /// An external abort on the read itself (nothing read).
    Unread,
}

/// The result of a walk whose read at `address`, `level` found no
/// memslot: out of line, given the address as it is (built inline, the
/// fault's packed payload was prepared on every level of every walk).
#[cold]
#[inline(never)]
fn unreadable<T: TrailSink, R>(
    ipa: u64,
    access: AccessKind,
    trail: T,
    address: u64,
    level: i8,
) -> Result<R, WalkError> {
    let cause = FaultCause::DescriptorOutsideMemslots { address };
    failed(ipa, access, trail, Stop { cause, level })
}

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
            WalkKind::K4Level0 => self.run_4k::<M, T, R, 0>(memory, ipa, access, hint, done),
            WalkKind::K4Level1 => self.run_4k::<M, T, R, 1>(memory, ipa, access, hint, done),
        }
    }

    /// The specialised single walk from start level `START` (0 or 1):
    /// `T` decides what is recorded of the reads, `done` what a success
    /// returns, as for `run`. Only for walkers whose [`WalkKind`] is
    /// `K4Level<START>`.
    // The level-3 copy of `level!` assigns the next address, which no
    // level reads (a table descriptor there is a page, never `Table`).
    #[allow(unused_assignments)]
    #[inline(always)]
    pub(super) fn run_4k<M: GuestMemory + ?Sized, T: TrailSink, R, const START: i8>(
        &self,
        memory: &M,
        ipa: u64,
        access: AccessKind,
        hint: &mut SlotHint,
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
                    match self.step_4k(memory, hint, &mut reads, ipa, $level, read, address) {
                        Step::Table(next) => address = next,
                        Step::Leaf(descriptor) => {
                            cursor.level = $level;
                            cursor.address = address;
                            let trail = T::from_reads(&reads, read + 1);
                            return self.finish_4k(&cursor, descriptor, trail, done);
                        }
                        Step::Stop(stop) => {
                            return failed(ipa, access, T::from_reads(&reads, read + 1), stop)
                        }
                        Step::Unread => {
                            let trail = T::from_reads(&reads, read);
                            return unreadable(ipa, access, trail, address, $level);
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
    /// and what the descriptor means (`decode` with the configuration's
    /// constants: blocks at levels 1 and 2, table addresses in bits
    /// 47:12, no FEAT_HAFT).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn step_4k<M: GuestMemory + ?Sized>(
        &self,
        memory: &M,
        hint: &mut SlotHint,
        reads: &mut [DescriptorRead; MAX_TRAIL],
        ipa: u64,
        level: i8,
        read: usize,
        address: u64,
    ) -> Step {
        let Ok(raw) = memory.read_descriptor_hinted(address, hint) else {
            return Step::Unread;
        };
        let descriptor = u64::from_le(raw);
        if let Some(slot) = reads.get_mut(read) {
            *slot = DescriptorRead {
                address,
                value: descriptor,
                level,
            };
        }
        let stop = |cause| Step::Stop(Stop { cause, level });
        match descriptor & 3 {
            3 if level < 3 => {
                let index = (ipa >> level_lsb_4k(level + 1)) & 0x1ff;
                let next = (descriptor & TABLE_ADDRESS_4K) | (index << 3);
                if self.oa_out_of_range(next) {
                    // Reported at the level of the table descriptor.
                    return stop(FaultCause::TableAddressOutOfRange);
                }
                Step::Table(next)
            }
            3 => Step::Leaf(descriptor),
            1 if level == 1 || level == 2 => Step::Leaf(descriptor),
            1 => stop(FaultCause::BlockNotPermitted),
            _ => stop(FaultCause::InvalidDescriptor),
        }
    }

    /// The leaf checks under the configuration's constant rules; no
    /// hardware update (HA = 0), so nothing is written.
    #[inline(always)]
    fn finish_4k<T: TrailSink, R>(
        &self,
        cursor: &Cursor,
        descriptor: u64,
        trail: T,
        done: impl Fn(&Cursor, &T, &Leaf) -> R,
    ) -> Result<R, WalkError> {
        let rules = LeafRules {
            block_bits: level_lsb_4k(cursor.level),
            // 16 entries at every 4KB level with leaves (1..=3).
            contiguous_log2: 4,
            address_bits: AddressBits {
                in_place: (1 << 48) - 1,
                table: TABLE_ADDRESS_4K,
                moved_shift: 0,
                moved: 0,
            },
            ha: false,
            hd: false,
            ds: false,
        };
        match self.check_leaf_by(cursor, descriptor, rules) {
            Ok(leaf) => Ok(done(cursor, &trail, &leaf)),
            Err(stop) => failed(cursor.ipa, cursor.access, trail, stop),
        }
    }
}
