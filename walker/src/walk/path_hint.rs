//! The predicted single walk: a walk whose descriptor reads are all
//! issued at once, at the addresses the previous walk's path predicts,
//! and whose result is the plain walk's because every read is checked to
//! be the plain walk's read.
//!
//! A single walk is a chain of dependent loads: each level's descriptor
//! gives the next level's table. A [`PathHint`] keeps the path of the
//! caller's previous walk that reached a leaf below its start level: the
//! address and value of each table descriptor it read, the leaf table's
//! address, and what they depend on: the walker's shape ([`WalkKind`]:
//! granule, start level, descriptor format), its output size (the only
//! other part of the configuration a table descriptor's decoding reads),
//! the start descriptor's address (VTTBR_EL2's base with the IPA's start
//! index), and the IPA bits above the leaf table's span (the indices of
//! every level above the leaf). A walk whose walker and IPA match the hint
//! reads every table descriptor at the recorded address and the leaf
//! table's entry for its own IPA, independently (the loads overlap), then
//! checks that each table descriptor read has the recorded value.
//!
//! Why that is the plain walk's result, read for read. The plain walk of
//! this IPA reads the start descriptor at the address `begin` gives, the
//! recorded one (checked). At each level above the leaf it reads a value
//! equal to the recorded one (checked), which it decodes as the recording
//! walk did (same granule and start level, so the same constants; same
//! output size, so the same range check; the same index bits of the IPA
//! for the next level), so it goes on to the recorded next address, and
//! from the last table descriptor to the recorded leaf table, at this
//! IPA's index (range-checked again, as the plain walk does). So every read
//! is the plain walk's, at the same address, and every table value decoded
//! is the one read; the leaf is then decoded and checked by the plain
//! walk's own code (`decode_in`, `finish_in`) with the same trail. Anything
//! else (no match, a value that changed, a read memory refused, a leaf
//! that is not a leaf: a fault or a table) falls back to the plain walk,
//! which re-reads everything and records its path in the hint. The hint is
//! never trusted for a value: it only says where to read and what the
//! value must be for the read to count.
//!
//! Why reading a lower level's descriptor without waiting for the upper
//! one is a walk the architecture allows (Arm ARM DDI 0487, chapter D8,
//! "The AArch64 Virtual Memory System Architecture"): the reads are made in
//! level order, each an Acquire load through [`GuestMemory`] as every
//! walk's read is ([`Memslots`](crate::Memslots)), so the read at a level
//! is ordered after the reads of the levels above exactly as in the plain
//! walk; only its address is known sooner. The result is a walk made at
//! one moment from memory, never staler than what the architecture already
//! permits a hardware walk to use: translation table entries of any level
//! may be held in TLBs and walk caches (intermediate table entries
//! included) and used until a TLB maintenance instruction that covers them
//! completes (D8, "Translation Lookaside Buffers"; AArch64.S2Walk may take
//! a table descriptor from such a cache instead of memory), whereas this
//! walk re-reads every level. Nor can it see a table descriptor newer than
//! the table it points to: an L1 that publishes a table writes it first
//! and the descriptor after, and the table's entry here is read after the
//! descriptor (loom: `loom-tests/tests/walker_memslots.rs`, the path-hint
//! model).
//!
//! Only the specialised configurations (`specialised::WalkKind`: DS = 0,
//! VTCR_EL2.HA = 0, little-endian) take it: their walks never write, so a
//! read made and discarded has no effect. Every other configuration takes
//! the general walk with the hint's memslot hint. The hint holds guest
//! addresses only, nothing of the host's: every read goes through the
//! memory given to this walk, whatever memslots it has now.

use super::specialised::{for_16k_64k, K64Lpa, Shape, Step, WalkKind, WalkMemo, K16, K4, K64};
use super::{failed, Cursor, Leaf, Stage2Walker, WalkError};
use crate::fault::{AccessKind, DescriptorRead, TrailSink, MAX_TRAIL};
use crate::memory::{GuestMemory, SlotHint};

/// What a caller keeps between its single walks (per vCPU, say) so that
/// the next walk near the same IPA reads every level at once: the path
/// of the previous walk that reached a leaf below its start level, and a
/// [`SlotHint`]. Any hint is safe: one that does not predict a walk
/// (another IPA's, another configuration's, a stale one, the default)
/// only makes it the plain walk. See `walk/path_hint.rs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathHint {
    /// The shape of the walker that recorded the path
    /// ([`WalkKind::General`]: none recorded).
    kind: WalkKind,
    /// Its highest output address.
    oa_max: u64,
    /// The IPA bits the path's table descriptors were selected by: the
    /// recorded IPA shifted right by `tag_shift` (the lowest bit of the
    /// level above the leaf).
    ipa_tag: u64,
    tag_shift: u32,
    /// The leaf's level, below the start level.
    leaf_level: i8,
    /// At levels start..leaf: the address of the table descriptor read
    /// there; at the leaf level, the leaf table's base.
    addresses: [u64; 4],
    /// At levels start..leaf: the table descriptor read there.
    descriptors: [u64; 4],
    /// For the reads themselves, as in [`Stage2Walker::walk_hinted`].
    slot: SlotHint,
}

impl Default for PathHint {
    /// No path recorded.
    fn default() -> Self {
        PathHint {
            kind: WalkKind::General,
            oa_max: 0,
            ipa_tag: 0,
            tag_shift: 0,
            leaf_level: 0,
            addresses: [0; 4],
            descriptors: [0; 4],
            slot: SlotHint::default(),
        }
    }
}

impl PathHint {
    /// Whether a path is recorded (for tests).
    #[doc(hidden)]
    pub fn is_recorded(&self) -> bool {
        self.kind != WalkKind::General
    }
}

/// The hint's place for `level` (0-3; the mask keeps any level inside the
/// arrays with no bounds check).
#[inline(always)]
const fn level_index(level: i8) -> usize {
    (level as usize) & 3
}

/// A plain walk with a path hint records the path of a walk that reached
/// its leaf below the start level.
impl WalkMemo for &mut PathHint {
    #[inline(always)]
    fn slot(&mut self) -> &mut SlotHint {
        &mut self.slot
    }

    #[inline(always)]
    fn reached_leaf<G: Shape, const START: i8>(
        &mut self,
        walker: &Stage2Walker,
        ipa: u64,
        level: i8,
        reads: &[DescriptorRead; MAX_TRAIL],
    ) {
        // `level` is a constant where the plain walk calls this.
        match level {
            1 if START < 1 => record::<G, START, 1>(self, walker, ipa, reads),
            2 if START < 2 => record::<G, START, 2>(self, walker, ipa, reads),
            3 if START < 3 => record::<G, START, 3>(self, walker, ipa, reads),
            _ => {}
        }
    }
}

/// [`WalkMemo::reached_leaf`] for a path hint, of a walk from `START`
/// to a leaf at `LEAF` below it: out of line, only the walks the hint did
/// not predict make it.
#[cold]
#[inline(never)]
fn record<G: Shape, const START: i8, const LEAF: i8>(
    hint: &mut PathHint,
    walker: &Stage2Walker,
    ipa: u64,
    reads: &[DescriptorRead; MAX_TRAIL],
) {
    // The table descriptors: the reads at START..LEAF (written out, the
    // levels constants).
    macro_rules! table {
        ($level:literal) => {
            if START <= $level && $level < LEAF {
                let read = reads[($level - START) as usize];
                hint.addresses[$level] = read.address;
                hint.descriptors[$level] = read.value;
            }
        };
    }
    table!(0);
    table!(1);
    table!(2);
    hint.addresses[level_index(LEAF)] = G::next_table_base(hint.descriptors[level_index(LEAF - 1)]);
    hint.kind = walker.walk_kind;
    hint.oa_max = walker.oa_max;
    hint.tag_shift = G::level_lsb(LEAF - 1);
    hint.ipa_tag = ipa >> hint.tag_shift;
    hint.leaf_level = LEAF;
}

impl Stage2Walker {
    /// Whether a walk of `ipa` with `hint` would take the predicted walk
    /// (the hint's path was recorded by a walker of this shape and output
    /// size, from the same start descriptor, for the same indices above
    /// the leaf table), memory permitting: for tests that the prediction
    /// is made where it should be.
    #[doc(hidden)]
    pub fn path_hint_predicts(&self, hint: &PathHint, ipa: u64) -> bool {
        let mut cursor = Cursor::new(ipa, AccessKind::Read);
        self.walk_kind != WalkKind::General
            && self.begin(&mut cursor).is_ok()
            && hint.leaf_level > cursor.level
            && self.path_matches(hint, &cursor)
    }

    /// The check that makes a hint's path this walk's (see the module
    /// docs): everything a table descriptor's decoding depends on
    /// besides its value.
    #[inline(always)]
    fn path_matches(&self, hint: &PathHint, cursor: &Cursor) -> bool {
        hint.kind == self.walk_kind
            && hint.oa_max == self.oa_max
            && cursor.ipa >> (hint.tag_shift & 63) == hint.ipa_tag
            && hint.addresses[level_index(cursor.level)] == cursor.address
    }

    /// The single walk with a path hint: the specialised configurations
    /// try the path first, every other one takes the general walk.
    #[inline(always)]
    pub(super) fn run_kind_path<M: GuestMemory + ?Sized, T: TrailSink, R>(
        &self,
        memory: &M,
        ipa: u64,
        access: AccessKind,
        hint: &mut PathHint,
        done: impl Fn(&Cursor, &T, &Leaf) -> R,
    ) -> Result<R, WalkError> {
        match self.walk_kind {
            WalkKind::General => self.run::<M, T, R>(memory, ipa, access, &mut hint.slot, done),
            WalkKind::K4Level0 => self.run_path::<K4, M, T, R, 0>(memory, ipa, access, hint, done),
            WalkKind::K4Level1 => self.run_path::<K4, M, T, R, 1>(memory, ipa, access, hint, done),
            _ => self.run_path_16k_64k::<M, T, R>(memory, ipa, access, hint, done),
        }
    }

    /// The 16KB and 64KB walks with a path hint, out of line for the
    /// reason `run_16k_64k` is.
    #[inline(never)]
    fn run_path_16k_64k<M: GuestMemory + ?Sized, T: TrailSink, R>(
        &self,
        memory: &M,
        ipa: u64,
        access: AccessKind,
        hint: &mut PathHint,
        done: impl Fn(&Cursor, &T, &Leaf) -> R,
    ) -> Result<R, WalkError> {
        macro_rules! walk {
            ($shape:ty, $start:literal) => {
                self.run_path::<$shape, M, T, R, $start>(memory, ipa, access, hint, done)
            };
        }
        // Only the kinds of `for_16k_64k!` call this.
        for_16k_64k!(
            self.walk_kind,
            walk,
            self.run::<M, T, R>(memory, ipa, access, &mut hint.slot, done)
        )
    }

    /// The specialised walk of granule `G` from `START` with a path hint:
    /// the predicted walk if the hint's path holds, else the plain walk,
    /// which records its path.
    #[inline(always)]
    fn run_path<G: Shape, M: GuestMemory + ?Sized, T: TrailSink, R, const START: i8>(
        &self,
        memory: &M,
        ipa: u64,
        access: AccessKind,
        hint: &mut PathHint,
        done: impl Fn(&Cursor, &T, &Leaf) -> R,
    ) -> Result<R, WalkError> {
        let mut cursor = Cursor::new(ipa, access);
        if let Err(stop) = self.begin(&mut cursor) {
            // The plain walk's fault, built here: handing it to
            // `run_from` inlines a second copy of the plain walk, which
            // cost the predicted walk 6-23 instructions (callgrind).
            let reads = [DescriptorRead::default(); MAX_TRAIL];
            return failed(ipa, access, T::from_reads(&reads, 0), stop);
        }
        // A path to a page (level 3) inline; to a block (level 1 or 2),
        // or none, out of line: each leaf level is its own copy, so that
        // the leaf checks see it as a constant, as in the plain walk.
        if hint.leaf_level != 3 {
            return self.run_path_to_block::<G, M, T, R, START>(memory, cursor, hint, done);
        }
        let mut reads = [DescriptorRead::default(); MAX_TRAIL];
        if let Some(descriptor) =
            self.read_predicted::<G, M, START, 3>(memory, &cursor, hint, &mut reads)
        {
            return self.finish_predicted::<G, T, R, START, 3>(cursor, descriptor, &reads, done);
        }
        self.run_from::<G, M, T, R, _, START>(memory, ipa, access, hint, done)
    }

    /// [`Stage2Walker::run_path`] for a hint whose path ends in a block,
    /// or that has none.
    #[inline(never)]
    fn run_path_to_block<G: Shape, M: GuestMemory + ?Sized, T: TrailSink, R, const START: i8>(
        &self,
        memory: &M,
        cursor: Cursor,
        hint: &mut PathHint,
        done: impl Fn(&Cursor, &T, &Leaf) -> R,
    ) -> Result<R, WalkError> {
        let mut reads = [DescriptorRead::default(); MAX_TRAIL];
        macro_rules! to {
            ($leaf:literal) => {
                if let Some(descriptor) =
                    self.read_predicted::<G, M, START, $leaf>(memory, &cursor, hint, &mut reads)
                {
                    return self.finish_predicted::<G, T, R, START, $leaf>(
                        cursor, descriptor, &reads, done,
                    );
                }
            };
        }
        match hint.leaf_level {
            2 => to!(2),
            1 => to!(1),
            _ => {}
        }
        self.run_from::<G, M, T, R, _, START>(memory, cursor.ipa, cursor.access, hint, done)
    }

    /// The leaf checks of a predicted walk: the plain walk's, on the same
    /// reads.
    #[inline(always)]
    fn finish_predicted<G: Shape, T: TrailSink, R, const START: i8, const LEAF: i8>(
        &self,
        mut cursor: Cursor,
        descriptor: u64,
        reads: &[DescriptorRead; MAX_TRAIL],
        done: impl Fn(&Cursor, &T, &Leaf) -> R,
    ) -> Result<R, WalkError> {
        cursor.level = LEAF;
        let trail = T::from_reads(reads, (LEAF - START) as usize + 1);
        self.finish_in::<G, T, R>(&cursor, descriptor, trail, done)
    }

    /// The reads of the walk of `cursor` (past `begin`) along the hint's
    /// path, into `reads` as the plain walk records them: the leaf
    /// descriptor, or `None` where the path does not hold, for the
    /// plain walk to make. (Returning the walk's whole result from here
    /// cost two copies of it.) Only for a hint whose leaf level is `LEAF`.
    #[inline(always)]
    fn read_predicted<G: Shape, M: GuestMemory + ?Sized, const START: i8, const LEAF: i8>(
        &self,
        memory: &M,
        cursor: &Cursor,
        hint: &mut PathHint,
        reads: &mut [DescriptorRead; MAX_TRAIL],
    ) -> Option<u64> {
        let ipa = cursor.ipa;
        // The recording walker decoded table descriptors as this one
        // does, from the same start descriptor, for the same indices.
        if LEAF <= START || !self.path_matches(hint, cursor) {
            return None;
        }
        let mut held = true;
        // Every table level's read at its recorded address, in level
        // order, none waiting for another: written out, the levels
        // constants.
        macro_rules! table {
            ($level:literal) => {
                if START <= $level && $level < LEAF {
                    let address = hint.addresses[$level];
                    match memory.read_descriptor_hinted(address, &mut hint.slot) {
                        Ok(raw) => {
                            let value = u64::from_le(raw);
                            held &= value == hint.descriptors[$level];
                            reads[($level - START) as usize] = DescriptorRead {
                                address,
                                value,
                                level: $level,
                            };
                        }
                        Err(_) => held = false,
                    }
                }
            };
        }
        table!(0);
        table!(1);
        table!(2);
        // The leaf table's entry for this IPA, range-checked as the plain
        // walk checks the next-level address.
        let index = (ipa >> G::level_lsb(LEAF)) & G::INDEX_MASK;
        let address = hint.addresses[level_index(LEAF)] | (index << 3);
        let raw = memory.read_descriptor_hinted(address, &mut hint.slot);
        let (Ok(raw), true, false) = (raw, held, self.oa_out_of_range(address)) else {
            return None;
        };
        let descriptor = u64::from_le(raw);
        if let Some(read) = reads.get_mut((LEAF - START) as usize) {
            *read = DescriptorRead {
                address,
                value: descriptor,
                level: LEAF,
            };
        }
        // The leaf decoded by the plain walk's own code; a table or a
        // fault there is the plain walk's to take.
        match self.decode_in::<G>(ipa, LEAF, descriptor) {
            Step::Leaf(descriptor) => Some(descriptor),
            _ => None,
        }
    }
}
