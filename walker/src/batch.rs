//! Batched walks: many IPAs, level by level, one memory batch per level.
//!
//! Requests are taken [`BATCH_CHUNK`] at a time (fixed-size state on the
//! stack, no allocation). Within a chunk every round reads the next
//! descriptor of every walk still descending with one
//! [`GuestMemory::read_descriptors`] call, duplicates once; as each walk
//! goes on, its next address joins the next round's distinct addresses.
//!
//! Equivalence with single walks in request order: descriptor reads have
//! no side effects, and the only writes are the hardware AF/dirty updates
//! made when a walk finishes. Walks finish after the last round, in
//! request order; a walk whose trail includes a descriptor an earlier
//! request of the same chunk updated (or whose update loses a race), or
//! that must set AF in a table descriptor on its way down (FEAT_HAFT), is
//! redone as a single walk, which then sees exactly what a single walk
//! made after the earlier ones would see. With FEAT_HAFT a walk made
//! singly may have set AF in any table descriptor it read, and a table
//! descriptor can be another walk's descriptor at a different level
//! (aliasing tables): its trail holds those as written, and a later walk
//! that read any descriptor of that trail differently is redone too.

use crate::fault::{DescriptorRead, Fault, Trail, TrailSink, MAX_TRAIL};
use crate::memory::{GuestMemory, MemoryError};
use crate::walk::{
    refused_access, BatchLengthMismatch, Cursor, DescriptorAccess, Finish, HostStop, Stage2Walker,
    Step, Stop, Translation, WalkError, WalkRequest,
};

/// Requests walked together (state for this many lives on the stack: about
/// 10 KiB of frame on x86_64). 64 rather than 32: a batch of 64 then takes
/// 4 level rounds instead of 8, and on a cold table (every read a cache and
/// TLB miss) each round costs about the same whether it has 32 or 64
/// misses in flight (`walker_cold/batch64`: 12.8-13.3 -> 11.4-12.3 us).
pub const BATCH_CHUNK: usize = 64;

/// How a walk of a chunk left the level rounds.
#[derive(Clone, Copy)]
enum End {
    /// Still descending (cannot happen after [`MAX_TRAIL`] rounds: such a
    /// walk would be walked again on its own).
    Descending,
    /// Its last read is its leaf.
    Leaf,
    /// Stopped before the leaf (or at setup).
    Stopped(Stop),
    /// The host denied a read, or was changing its mapping of the page.
    Host(HostStop),
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
        // The configurations the single walk specialises (walk/
        // specialised_batch.rs) write nothing, and take their own batch.
        if !walker.walk_chunk_specialised(memory, requests, results) {
            walk_chunk(walker, memory, requests, results);
        }
    }
    Ok(())
}

fn walk_chunk<M: GuestMemory + ?Sized>(
    walker: &Stage2Walker,
    memory: &M,
    requests: &[WalkRequest],
    results: &mut [Result<Translation, WalkError>],
) {
    let requests = &requests[..requests.len().min(BATCH_CHUNK)];
    // The walks' state, by index in the chunk: how each ended, and its
    // reads (addresses and descriptors), one array per round. Round k
    // reads every descending walk's descriptor at level `start_level + k`:
    // every walk begins at the walker's start level and goes one level
    // down a round.
    let mut walks = Walks {
        ends: [End::Descending; BATCH_CHUNK],
        read_addresses: [[0; BATCH_CHUNK]; MAX_TRAIL],
        read_values: [[0; BATCH_CHUNK]; MAX_TRAIL],
        reads: [0; BATCH_CHUNK],
        start_level: 0,
    };
    // The walks still descending, in request order, and where each finds
    // its next read among this round's distinct addresses (`unique`).
    let mut active = [0u8; BATCH_CHUNK];
    let mut slot_of = [0u8; BATCH_CHUNK];
    let mut active_len = 0;
    let mut unique = [0u64; BATCH_CHUNK];
    let mut pending = 0;
    let mut seen = Dedup::new();
    for (i, request) in requests.iter().enumerate() {
        let mut cursor = Cursor::new(request.ipa, request.access);
        match walker.begin(&mut cursor) {
            Ok(()) => {
                walks.start_level = cursor.level;
                walks.read_addresses[0][i] = cursor.address;
                active[active_len] = i as u8;
                slot_of[active_len] = seen.slot(cursor.address, &mut unique, &mut pending);
                active_len += 1;
            }
            Err(stop) => walks.ends[i] = End::Stopped(stop),
        }
    }

    let mut values: [Result<u64, MemoryError>; BATCH_CHUNK] = [Ok(0); BATCH_CHUNK];
    let mut level = walks.start_level;
    // A walk reads at most 5 descriptors (levels -1..=3), so 5 rounds
    // finish them all.
    for round in 0..MAX_TRAIL {
        if active_len == 0 {
            break;
        }
        // An implementation that skipped an entry would otherwise leave the
        // previous round's value there, a silently wrong walk: a skipped
        // read is an external abort on the walk instead.
        // (Stored in a loop: `fill` went through `clone_from`, a branch
        // on each entry's variant.)
        for value in &mut values[..pending] {
            *value = Err(MemoryError::OutsideMemslots);
        }
        memory.read_descriptors(&unique[..pending], &mut values[..pending]);
        // The next round's addresses replace this round's in `unique`
        // (read already) as the walks go on.
        seen = Dedup::new();
        pending = 0;
        let next_lsb = walker.index_lsb(level + 1);
        let mut still = 0;
        for k in 0..active_len {
            let i = active[k];
            let walk = usize::from(i);
            let address = walks.read_addresses[round][walk];
            match values[usize::from(slot_of[k])] {
                // Not read: not in the trail (as in a single walk).
                Err(error) => {
                    walks.reads[walk] = round as u8;
                    walks.ends[walk] =
                        match refused_access(error, address, level, DescriptorAccess::Read) {
                            Ok(stop) => End::Stopped(stop),
                            Err(host) => End::Host(host),
                        };
                }
                Ok(raw) => {
                    let (descriptor, step) =
                        walker.advance(requests[walk].ipa, level, raw, next_lsb);
                    walks.read_values[round][walk] = descriptor;
                    walks.reads[walk] = round as u8 + 1;
                    match (step, walks.read_addresses.get_mut(round + 1)) {
                        (Step::Continue(next), Some(addresses)) => {
                            addresses[walk] = next;
                            active[still] = i;
                            slot_of[still] = seen.slot(next, &mut unique, &mut pending);
                            still += 1;
                            continue;
                        }
                        // (Levels end at 3, so a walk cannot go on after
                        // MAX_TRAIL reads; were it to, it would stay
                        // Descending and be walked again on its own.)
                        (Step::Continue(_), None) => {}
                        (Step::Leaf, _) => walks.ends[walk] = End::Leaf,
                        (Step::Stop(stop), _) => walks.ends[walk] = End::Stopped(stop),
                        (Step::TableAccessFlag, _) => walks.ends[walk] = End::Redo,
                    }
                }
            }
        }
        active_len = still;
        level += 1;
    }
    // Finish in request order, `written` tracking what the walks finished
    // so far may have written (see `Written`). (Finishing each walk as
    // soon as every earlier one had ended, inside the last round, was
    // tried: no faster on the cold table, whose rounds cost their misses
    // plus their work whichever order the work is in.)
    let mut written = Written::new();
    for (i, request) in requests.iter().enumerate() {
        walks.finish(walker, memory, request, i, &mut written, results);
    }
}

/// The walks of a chunk: how each left the level rounds and what it read.
struct Walks {
    ends: [End; BATCH_CHUNK],
    /// By round, then by walk: the address of each read.
    read_addresses: [[u64; BATCH_CHUNK]; MAX_TRAIL],
    /// By round, then by walk: each descriptor read (L1's byte order
    /// applied).
    read_values: [[u64; BATCH_CHUNK]; MAX_TRAIL],
    /// Per walk, the descriptors it read (its trail's length).
    reads: [u8; BATCH_CHUNK],
    /// The level of every walk's first read.
    start_level: i8,
}

impl Walks {
    /// Finish walk `i` (`request`), every earlier walk of the chunk being
    /// finished: its result into `results[i]`, what it wrote into
    /// `written`.
    #[inline(always)]
    fn finish<M: GuestMemory + ?Sized>(
        &self,
        walker: &Stage2Walker,
        memory: &M,
        request: &WalkRequest,
        i: usize,
        written: &mut Written,
        results: &mut [Result<Translation, WalkError>],
    ) {
        let len = usize::from(self.reads[i]);
        let mut trail = Trail::new();
        for (k, (addresses, descriptors)) in self
            .read_addresses
            .iter()
            .zip(&self.read_values)
            .enumerate()
            .take(len)
        {
            trail.record_at(
                k,
                DescriptorRead {
                    address: addresses[i],
                    value: descriptors[i],
                    level: self.start_level + k as i8,
                },
            );
        }
        let stale = written.makes_stale(&trail, results);
        let fault = |stop: Stop| {
            WalkError::Fault(Fault {
                cause: stop.cause,
                level: stop.level,
                ipa: request.ipa,
                access: request.access,
                trail,
            })
        };
        let Some(result) = results.get_mut(i) else {
            return;
        };
        // Each result is written where it lies (a result is 184 bytes,
        // and each copy of it showed in the batch's profile).
        let walked_singly = match (self.ends[i], len.checked_sub(1)) {
            (End::Stopped(stop), _) if !stale => {
                *result = Err(fault(stop));
                false
            }
            (End::Host(host), _) if !stale => {
                *result = Err(host.error(request.ipa, request.access));
                false
            }
            (End::Leaf, Some(last)) if !stale => {
                let cursor = Cursor {
                    ipa: request.ipa,
                    access: request.access,
                    level: self.start_level + last as i8,
                    address: self.read_addresses[last][i],
                    table_access_flags: 0,
                };
                match walker.finish(memory, &cursor, self.read_values[last][i]) {
                    Finish::Done(Ok(leaf)) => {
                        *result = Ok(walker.translation_of(&cursor, trail, &leaf));
                        false
                    }
                    Finish::Done(Err(stop)) => {
                        *result = Err(fault(stop));
                        false
                    }
                    Finish::Host(host) => {
                        *result = Err(host.error(request.ipa, request.access));
                        false
                    }
                    Finish::Lost { .. } => {
                        *result = walk_singly(walker, memory, request);
                        true
                    }
                }
            }
            // A walk whose reads an earlier walk of this chunk may have
            // changed, or that must update a table descriptor, is walked
            // again on its own.
            _ => {
                *result = walk_singly(walker, memory, request);
                true
            }
        };
        if walked_singly && walker.hardware_table_access_flag() {
            // Its table AF updates can change descriptors that later walks
            // read in the batch at any level (a table descriptor can also
            // be another walk's leaf through an aliasing table), so they
            // are compared with what this walk saw.
            written.walked_singly(i, result);
        }
        if let Ok(translation) = result {
            if translation.update.leaf_updated() {
                written.leaf(translation.leaf_address());
            }
        }
    }
}

/// A walk of the batch made again on its own (rare: out of line, so the
/// batch's loop stays small).
#[cold]
#[inline(never)]
fn walk_singly<M: GuestMemory + ?Sized>(
    walker: &Stage2Walker,
    memory: &M,
    request: &WalkRequest,
) -> Result<Translation, WalkError> {
    walker.walk(memory, request.ipa, request.access)
}

/// The descriptors a finished walk read (its trail), if it has them.
fn trail_of(result: &Result<Translation, WalkError>) -> Option<&Trail> {
    match result {
        Ok(translation) => Some(&translation.trail),
        Err(WalkError::Fault(fault)) => Some(&fault.trail),
        Err(
            WalkError::Contended { .. } | WalkError::HostDenied(_) | WalkError::HostChanging(_),
        ) => None,
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
    /// Inline for the usual case, nothing written yet.
    #[inline]
    fn makes_stale(&self, trail: &Trail, results: &[Result<Translation, WalkError>]) -> bool {
        let nothing_written = !self.unknown && self.leaves_len == 0 && self.singly_len == 0;
        !nothing_written && self.compare(trail, results)
    }

    /// [`Written::makes_stale`] once something was written.
    #[inline(never)]
    fn compare(&self, trail: &Trail, results: &[Result<Translation, WalkError>]) -> bool {
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
pub(crate) struct Dedup {
    /// Slot in the batch + 1 (0 = empty bucket).
    buckets: [u8; DEDUP_BUCKETS],
}

/// Twice the chunk, a power of two: probe sequences stay short.
const DEDUP_BUCKETS: usize = 2 * BATCH_CHUNK;
// Buckets hold slot + 1 in a byte.
const _: () = assert!(BATCH_CHUNK < u8::MAX as usize && DEDUP_BUCKETS.is_power_of_two());

impl Dedup {
    pub(crate) fn new() -> Self {
        Dedup {
            buckets: [0; DEDUP_BUCKETS],
        }
    }

    /// The batch slot of `address`, appending it to `unique` if new.
    #[inline]
    pub(crate) fn slot(
        &mut self,
        address: u64,
        unique: &mut [u64; BATCH_CHUNK],
        pending: &mut usize,
    ) -> u8 {
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
                    return slot as u8;
                }
                b if unique[usize::from(b) - 1] == address => return b - 1,
                _ => bucket = (bucket + 1) % DEDUP_BUCKETS,
            }
        }
        // Not reached (see above). Reading an address twice is harmless,
        // so append without deduplicating; each walk adds at most one
        // address per round, so `pending < BATCH_CHUNK` here.
        let slot = *pending;
        unique[slot] = address;
        *pending += 1;
        slot as u8
    }
}
