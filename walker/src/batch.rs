//! Batched walks: many IPAs, level by level, one memory batch per level.
//!
//! Requests are taken [`BATCH_CHUNK`] at a time (fixed-size state on the
//! stack, no allocation). Within a chunk every round gathers the pending
//! descriptor addresses of all walks still descending, drops duplicates,
//! and reads them with one [`GuestMemory::read_descriptors`] call.
//!
//! Equivalence with single walks in request order: descriptor reads have
//! no side effects, and the only writes are the hardware AF/dirty updates
//! made when a walk finishes. Walks finish in request order; a walk whose
//! trail includes a descriptor an earlier request of the same chunk updated
//! (or whose update loses a race), or that must set AF in a table
//! descriptor on its way down (FEAT_HAFT), is redone as a single walk,
//! which then sees exactly what a single walk made after the earlier ones
//! would see. With FEAT_HAFT a walk made singly may have set AF in any
//! table descriptor it read, and a table descriptor can be another walk's
//! descriptor at a different level (aliasing tables): its trail holds
//! those as written, and a later walk that read any descriptor of that
//! trail differently is redone too.

use crate::fault::{AccessKind, Trail};
use crate::memory::{GuestMemory, MemoryError};
use crate::walk::{
    BatchLengthMismatch, Cursor, Finish, Stage2Walker, Step, Stop, Translation, WalkError,
    WalkRequest,
};

/// Requests walked together (state for this many lives on the stack: about
/// 24 KiB of frame on x86_64). 64 rather than 32: a batch of 64 then takes
/// 4 level rounds instead of 8, and on a cold table (every read a cache and
/// TLB miss) each round costs about the same whether it has 32 or 64
/// misses in flight (`walker_cold/batch64`: 12.8-13.3 -> 11.4-12.3 us).
pub const BATCH_CHUNK: usize = 64;

#[derive(Clone, Copy)]
enum Phase {
    /// Waiting for the descriptor at the cursor's address.
    Descending,
    /// The last read was a leaf with this value.
    AtLeaf(u64),
    /// Stopped before the leaf (or during setup).
    Stopped(Stop),
    /// Needs a write before it can go on (FEAT_HAFT: AF in a table
    /// descriptor): walked again on its own, in request order.
    Redo,
}

pub(crate) fn walk_batch<M: GuestMemory + ?Sized>(
    walker: &Stage2Walker,
    memory: &M,
    requests: &[WalkRequest],
    results: &mut [Result<Translation, WalkError>],
) -> Result<(), BatchLengthMismatch> {
    if requests.len() != results.len() {
        return Err(BatchLengthMismatch {
            requests: requests.len(),
            results: results.len(),
        });
    }
    for (requests, results) in requests
        .chunks(BATCH_CHUNK)
        .zip(results.chunks_mut(BATCH_CHUNK))
    {
        walk_chunk(walker, memory, requests, results);
    }
    Ok(())
}

fn walk_chunk<M: GuestMemory + ?Sized>(
    walker: &Stage2Walker,
    memory: &M,
    requests: &[WalkRequest],
    results: &mut [Result<Translation, WalkError>],
) {
    let n = requests.len().min(BATCH_CHUNK);
    // Each cursor is written once, in place (slots past `n` stay unused).
    let mut phases = [Phase::Descending; BATCH_CHUNK];
    let mut cursors: [Cursor<Trail>; BATCH_CHUNK] = core::array::from_fn(|i| {
        let request = requests.get(i).copied().unwrap_or(WalkRequest {
            ipa: 0,
            access: AccessKind::Read,
        });
        let mut cursor = Cursor::<Trail>::new(request.ipa, request.access);
        if i < n {
            if let Err(stop) = walker.begin(&mut cursor) {
                phases[i] = Phase::Stopped(stop);
            }
        }
        cursor
    });

    let mut unique = [0u64; BATCH_CHUNK];
    let mut values: [Result<u64, MemoryError>; BATCH_CHUNK] = [Ok(0); BATCH_CHUNK];
    let mut slot_of = [0usize; BATCH_CHUNK];
    // Each round advances every descending walk by one level; a walk reads
    // at most 5 descriptors (levels -1..=3), so 5 rounds finish them all.
    for _ in 0..crate::fault::MAX_TRAIL {
        let mut seen = Dedup::new();
        let mut pending = 0;
        for i in 0..n {
            if let Phase::Descending = phases[i] {
                let address = cursors[i].address;
                slot_of[i] = seen.slot(address, &mut unique, &mut pending);
            }
        }
        if pending == 0 {
            break;
        }
        // An implementation that skipped an entry would otherwise leave the
        // previous round's value there, a silently wrong walk: a skipped
        // read is an external abort on the walk instead.
        values[..pending].fill(Err(MemoryError::OutsideMemslots));
        memory.read_descriptors(&unique[..pending], &mut values[..pending]);
        for i in 0..n {
            if let Phase::Descending = phases[i] {
                phases[i] = match walker.advance(&mut cursors[i], values[slot_of[i]]) {
                    Step::Continue => Phase::Descending,
                    Step::Leaf(descriptor) => Phase::AtLeaf(descriptor),
                    Step::Stop(stop) => Phase::Stopped(stop),
                    Step::TableAccessFlag => Phase::Redo,
                };
            }
        }
    }

    // Finish in request order, tracking what the walks finished so far may
    // have written: leaf descriptors they updated, and (FEAT_HAFT) what a
    // walk made singly saw, since it may have set AF in table descriptors.
    let mut written = Written::new();
    for i in 0..n {
        let cursor = &cursors[i];
        let request = &requests[i];
        let stale = written.makes_stale(&cursor.trail, results);
        let mut walked_singly = true;
        let outcome = match phases[i] {
            Phase::Stopped(stop) if !stale => {
                walked_singly = false;
                Err(WalkError::Fault(cursor.fault(stop)))
            }
            Phase::AtLeaf(descriptor) if !stale => {
                match walker.finish(memory, cursor, descriptor) {
                    Finish::Done(Ok(leaf)) => {
                        walked_singly = false;
                        Ok(walker.translation(cursor, &leaf))
                    }
                    Finish::Done(Err(stop)) => {
                        walked_singly = false;
                        Err(WalkError::Fault(cursor.fault(stop)))
                    }
                    Finish::Lost { .. } => walker.walk(memory, request.ipa, request.access),
                }
            }
            // A walk whose reads an earlier walk of this chunk may have
            // changed, or that must update a table descriptor, is walked
            // again on its own. (A walk still descending after 5 rounds
            // cannot exist; it would be walked again too.)
            _ => walker.walk(memory, request.ipa, request.access),
        };
        // Stored first, then inspected where it lies: a result is 184
        // bytes, and each copy of it showed in the batch's profile.
        results[i] = outcome;
        if walked_singly && walker.hardware_table_access_flag() {
            // Its table AF updates can change descriptors that later walks
            // read in the batch at any level (a table descriptor can also
            // be another walk's leaf through an aliasing table), so they
            // are compared with what this walk saw.
            written.walked_singly(i, &results[i]);
        }
        if let Ok(translation) = &results[i] {
            if translation.update.leaf_updated() {
                written.leaf(translation.leaf_address());
            }
        }
    }
}

/// The descriptors a finished walk read (its trail), if it has them.
fn trail_of(result: &Result<Translation, WalkError>) -> Option<&Trail> {
    match result {
        Ok(translation) => Some(&translation.trail),
        Err(WalkError::Fault(fault)) => Some(&fault.trail),
        Err(WalkError::Contended { .. }) => None,
    }
}

/// What the walks of a chunk finished so far may have written, to tell
/// whether a later walk's batched reads are stale.
struct Written {
    /// Leaf descriptors updated: any read of them is stale.
    leaves: [u64; BATCH_CHUNK],
    leaves_len: usize,
    /// (FEAT_HAFT) Indices in the chunk of the walks made singly, whose
    /// trails (in their results) hold the table descriptors they may have
    /// set AF in, as written.
    singly: [u8; BATCH_CHUNK],
    singly_len: usize,
    /// A write whose address is unknown (or a table overflowed): every
    /// later walk is redone.
    unknown: bool,
}

impl Written {
    fn new() -> Self {
        Written {
            leaves: [0; BATCH_CHUNK],
            leaves_len: 0,
            singly: [0; BATCH_CHUNK],
            singly_len: 0,
            unknown: false,
        }
    }

    fn leaf(&mut self, address: u64) {
        match self.leaves.get_mut(self.leaves_len) {
            Some(slot) => {
                *slot = address;
                self.leaves_len += 1;
            }
            None => self.unknown = true,
        }
    }

    /// The walk at `index` in the chunk was made singly and gave `result`:
    /// its trail holds a table descriptor it set AF in as written, so a
    /// batched read of it (AF clear) differs. A walk that gave up after
    /// losing races wrote what is unknown.
    fn walked_singly(&mut self, index: usize, result: &Result<Translation, WalkError>) {
        let slot = self.singly.get_mut(self.singly_len);
        match (trail_of(result), slot, u8::try_from(index)) {
            (Some(_), Some(slot), Ok(index)) => {
                *slot = index;
                self.singly_len += 1;
            }
            _ => self.unknown = true,
        }
    }

    /// Whether a walk that read `trail` in the batch must be redone;
    /// `results` holds the results of the chunk's walks finished so far.
    fn makes_stale(&self, trail: &Trail, results: &[Result<Translation, WalkError>]) -> bool {
        self.unknown
            || self.leaves[..self.leaves_len]
                .iter()
                .any(|address| trail.contains(*address))
            || self.singly[..self.singly_len].iter().any(|&index| {
                // Not there (cannot happen: only finished walks are
                // recorded): redo, the safe answer.
                let Some(seen) = results.get(usize::from(index)).and_then(trail_of) else {
                    return true;
                };
                seen.as_slice().iter().any(|seen| {
                    trail
                        .as_slice()
                        .iter()
                        .any(|read| read.address == seen.address && read.value != seen.value)
                })
            })
    }
}

/// Open-addressing set of the addresses gathered in one round, mapping
/// each to its slot in the batch: duplicates found in O(1) on average.
struct Dedup {
    /// Slot in the batch + 1 (0 = empty bucket).
    buckets: [u8; DEDUP_BUCKETS],
}

/// Twice the chunk, a power of two: probe sequences stay short.
const DEDUP_BUCKETS: usize = 2 * BATCH_CHUNK;
// Buckets hold slot + 1 in a byte.
const _: () = assert!(BATCH_CHUNK < u8::MAX as usize && DEDUP_BUCKETS.is_power_of_two());

impl Dedup {
    fn new() -> Self {
        Dedup {
            buckets: [0; DEDUP_BUCKETS],
        }
    }

    /// The batch slot of `address`, appending it to `unique` if new.
    fn slot(
        &mut self,
        address: u64,
        unique: &mut [u64; BATCH_CHUNK],
        pending: &mut usize,
    ) -> usize {
        let hash = (address >> 3).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // The top bits of the product pick the bucket (the best-mixed ones).
        let bits = DEDUP_BUCKETS.trailing_zeros();
        let mut bucket = (hash >> (64 - bits)) as usize % DEDUP_BUCKETS;
        // At most BATCH_CHUNK addresses are inserted into 2x as many
        // buckets, so an empty bucket is always found within the bound.
        for _ in 0..DEDUP_BUCKETS {
            match self.buckets[bucket] {
                0 => {
                    let slot = *pending;
                    unique[slot] = address;
                    *pending += 1;
                    self.buckets[bucket] = (slot + 1) as u8;
                    return slot;
                }
                b if unique[usize::from(b) - 1] == address => return usize::from(b) - 1,
                _ => bucket = (bucket + 1) % DEDUP_BUCKETS,
            }
        }
        // Not reached (see above). Reading an address twice is harmless,
        // so append without deduplicating; each walk adds at most one
        // address per round, so `pending < BATCH_CHUNK` here.
        let slot = *pending;
        unique[slot] = address;
        *pending += 1;
        slot
    }
}
