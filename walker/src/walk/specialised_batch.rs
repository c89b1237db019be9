//! The batched walk specialised as the single walk is
//! (`walk/specialised.rs`): for a walker whose [`WalkKind`] is not
//! `General` (DS = 0, VTCR_EL2.HA = 0, little-endian, a start level the
//! granule can have with DS = 0), a chunk of the batch is walked by
//! [`Stage2Walker::chunk_in`], generic over the granule ([`Shape`]) and
//! the start level, with the single walk's own decoding (`decode_in`)
//! and leaf checks (`finish_in`).
//!
//! The rounds are as in the general batch (`batch.rs`): each level's
//! reads of every walk still descending go to memory as one
//! [`GuestMemory::read_descriptors`] call, duplicates once. What it saves:
//! the rounds are unrolled, so each round's level, index shift, block
//! rule and trail length are constants; and, since no walk of such a
//! configuration writes memory (HA = 0: no AF, dirty or FEAT_HAFT
//! update), each walk's result is final when it ends, written at once in
//! its round, with nothing to compare with earlier walks' writes and no
//! walk redone. A walk's result then cannot depend on the walks before it
//! in the chunk, so results are those of single walks in request order.

use super::specialised::{unreadable, K64Lpa, Shape, Step, WalkKind, K16, K4, K64};
use super::{failed, Cursor, Stage2Walker, Translation, WalkError, WalkRequest};
use crate::batch::{Dedup, BATCH_CHUNK};
use crate::fault::{DescriptorRead, Trail, TrailSink, MAX_TRAIL};
use crate::memory::{GuestMemory, MemoryError};

/// Levels 0 to 3: the most reads a DS = 0 walk makes.
const LEVELS: usize = 4;
// `chunk_in`'s `written` has a bit per walk of a chunk.
const _: () = assert!(BATCH_CHUNK <= 64);

/// The reads of a chunk's walks, by round (level - start level), then by
/// walk.
struct Reads {
    addresses: [[u64; BATCH_CHUNK]; LEVELS],
    descriptors: [[u64; BATCH_CHUNK]; LEVELS],
}

impl Reads {
    /// The trail of walk `walk` from its first `len` reads, levels from
    /// `START` (the single walk's, entry for entry).
    #[inline(always)]
    fn trail<const START: i8>(&self, walk: usize, len: usize) -> Trail {
        let mut reads = [DescriptorRead::default(); MAX_TRAIL];
        for (round, read) in reads.iter_mut().enumerate().take(len.min(LEVELS)) {
            *read = DescriptorRead {
                address: self.addresses[round][walk],
                value: self.descriptors[round][walk],
                level: START + round as i8,
            };
        }
        Trail::from_reads(&reads, len)
    }
}

impl Stage2Walker {
    /// Walk a chunk of a batch (at most [`BATCH_CHUNK`] requests) with
    /// the batch specialised for this walker's configuration, if it has
    /// one: false (and nothing done) if not.
    pub(crate) fn walk_chunk_specialised<M: GuestMemory + ?Sized>(
        &self,
        memory: &M,
        requests: &[WalkRequest],
        results: &mut [Result<Translation, WalkError>],
    ) -> bool {
        match self.walk_kind {
            WalkKind::General => return false,
            WalkKind::K4Level0 => self.chunk_in::<K4, M, 0>(memory, requests, results),
            WalkKind::K4Level1 => self.chunk_in::<K4, M, 1>(memory, requests, results),
            WalkKind::K16Level1 => self.chunk_in::<K16, M, 1>(memory, requests, results),
            WalkKind::K16Level2 => self.chunk_in::<K16, M, 2>(memory, requests, results),
            WalkKind::K16Level3 => self.chunk_in::<K16, M, 3>(memory, requests, results),
            WalkKind::K64Level1 => self.chunk_in::<K64, M, 1>(memory, requests, results),
            WalkKind::K64Level2 => self.chunk_in::<K64, M, 2>(memory, requests, results),
            WalkKind::K64Level3 => self.chunk_in::<K64, M, 3>(memory, requests, results),
            WalkKind::K64LpaLevel1 => self.chunk_in::<K64Lpa, M, 1>(memory, requests, results),
            WalkKind::K64LpaLevel2 => self.chunk_in::<K64Lpa, M, 2>(memory, requests, results),
            WalkKind::K64LpaLevel3 => self.chunk_in::<K64Lpa, M, 3>(memory, requests, results),
        }
        true
    }

    /// The specialised batch of granule `G` from start level `START`, for
    /// a chunk: only for walkers whose [`WalkKind`] is `<G>Level<START>`.
    // The level-3 round's table arm assigns what no round reads (a table
    // descriptor there is a page).
    #[allow(unused_assignments)]
    #[inline(never)]
    fn chunk_in<G: Shape, M: GuestMemory + ?Sized, const START: i8>(
        &self,
        memory: &M,
        requests: &[WalkRequest],
        results: &mut [Result<Translation, WalkError>],
    ) {
        let len = requests.len().min(results.len()).min(BATCH_CHUNK);
        let (requests, results) = (&requests[..len], &mut results[..len]);
        let mut reads = Reads {
            addresses: [[0; BATCH_CHUNK]; LEVELS],
            descriptors: [[0; BATCH_CHUNK]; LEVELS],
        };
        // The walks still descending, in request order, and where each
        // finds its next read among this round's distinct addresses
        // (`unique`), as in `batch.rs`.
        let mut active = [0u8; BATCH_CHUNK];
        let mut slot_of = [0u8; BATCH_CHUNK];
        let mut active_len = 0;
        let mut unique = [0u64; BATCH_CHUNK];
        let mut pending = 0;
        let mut seen = Dedup::new();
        // Bit i: walk i's result written. Only the debug assertion at the
        // end reads it, so release builds compile it away.
        let mut written = 0u64;
        for (i, (request, result)) in requests.iter().zip(results.iter_mut()).enumerate() {
            let mut cursor = Cursor::new(request.ipa, request.access);
            match self.begin(&mut cursor) {
                // `begin` starts every walk of this kind at START.
                Ok(()) => {
                    reads.addresses[0][i] = cursor.address;
                    active[active_len] = i as u8;
                    slot_of[active_len] = seen.slot(cursor.address, &mut unique, &mut pending);
                    active_len += 1;
                }
                Err(stop) => {
                    *result = failed(request.ipa, request.access, Trail::new(), stop);
                    written |= 1 << i;
                }
            }
        }
        let mut values: [Result<u64, MemoryError>; BATCH_CHUNK] = [Ok(0); BATCH_CHUNK];
        // The rounds unrolled: the level, the round and the trail's length
        // are constants in each copy.
        macro_rules! round {
            ($level:literal) => {
                if START <= $level && active_len > 0 {
                    let round = ($level - START) as usize;
                    // A skipped entry is an external abort, as in `batch.rs`
                    // (stored in a loop: `fill` went through `clone_from`,
                    // a branch on each entry's variant).
                    for value in &mut values[..pending] {
                        *value = Err(MemoryError::OutsideMemslots);
                    }
                    memory.read_descriptors(&unique[..pending], &mut values[..pending]);
                    seen = Dedup::new();
                    pending = 0;
                    let mut still = 0;
                    for k in 0..active_len {
                        let i = active[k];
                        let walk = usize::from(i);
                        let (Some(request), Some(result)) =
                            (requests.get(walk), results.get_mut(walk))
                        else {
                            continue;
                        };
                        let address = reads.addresses[round][walk];
                        let raw = match values[usize::from(slot_of[k])] {
                            Ok(raw) => raw,
                            Err(error) => {
                                let trail = reads.trail::<START>(walk, round);
                                *result = unreadable(
                                    request.ipa,
                                    request.access,
                                    trail,
                                    address,
                                    $level,
                                    error,
                                );
                                written |= 1 << walk;
                                continue;
                            }
                        };
                        let descriptor = u64::from_le(raw);
                        reads.descriptors[round][walk] = descriptor;
                        match self.decode_in::<G>(request.ipa, $level, descriptor) {
                            Step::Table(next) => {
                                if let Some(addresses) = reads.addresses.get_mut(round + 1) {
                                    addresses[walk] = next;
                                    active[still] = i;
                                    slot_of[still] = seen.slot(next, &mut unique, &mut pending);
                                    still += 1;
                                }
                            }
                            Step::Leaf(descriptor) => {
                                let mut cursor = Cursor::new(request.ipa, request.access);
                                cursor.level = $level;
                                cursor.address = address;
                                let trail = reads.trail::<START>(walk, round + 1);
                                // The result written where it lies (through
                                // `finish_in`, it was built, then copied).
                                let rules = G::leaf_rules($level);
                                match self.check_leaf_by(&cursor, descriptor, rules) {
                                    Ok(leaf) => {
                                        *result = Ok(self.translation_of(&cursor, trail, &leaf))
                                    }
                                    Err(stop) => {
                                        *result = failed(request.ipa, request.access, trail, stop)
                                    }
                                }
                                written |= 1 << walk;
                            }
                            Step::Stop(stop) => {
                                let trail = reads.trail::<START>(walk, round + 1);
                                *result = failed(request.ipa, request.access, trail, stop);
                                written |= 1 << walk;
                            }
                            // `decode_in` never gives it.
                            Step::Unread(_) => {}
                        }
                    }
                    active_len = still;
                }
            };
        }
        round!(0);
        round!(1);
        round!(2);
        round!(3);
        // No walk keeps the caller's initial value in its result slot:
        // `begin` ends a walk (written) or starts it at START; a round ends
        // every walk it reads (written: unreadable, leaf or stop) but one
        // whose descriptor is a table, which `decode_in` gives only below
        // level 3, so the walk goes on in the next round, which exists
        // (`round!` up to 3, and `addresses` has a row per level from
        // START). The arms that write nothing are never taken: `decode_in`
        // never gives `Unread`, and `active` holds walk indexes below
        // `len`, so the `get`s succeed. Checked in debug builds (the
        // tests: the proptests compare batches with single walks); in
        // release `written` is dead and compiled away.
        debug_assert_eq!(
            (written, active_len),
            (u64::MAX.checked_shr(64 - len as u32).unwrap_or(0), 0),
            "a walk of the chunk left its result unwritten"
        );
    }
}
