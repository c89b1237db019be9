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
//! (or whose update loses a race) is redone as a single walk, which then
//! sees exactly what a single walk made after the earlier ones would see.

use crate::fault::Fault;
use crate::memory::{GuestMemory, MemoryError};
use crate::walk::{
    BatchLengthMismatch, Cursor, Finish, Stage2Walker, Step, Translation, WalkError, WalkRequest,
};

/// Requests walked together (state for this many lives on the stack).
pub const BATCH_CHUNK: usize = 32;

#[derive(Clone, Copy)]
enum State {
    /// Waiting for the descriptor at `cursor.address`.
    Descending(Cursor),
    /// The last read was a leaf with this value.
    AtLeaf(Cursor, u64),
    /// Faulted before the leaf (or during setup).
    Faulted(Fault),
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
    let mut states = [State::Faulted(placeholder_fault()); BATCH_CHUNK];
    for (state, request) in states.iter_mut().zip(&requests[..n]) {
        *state = match walker.begin(request.ipa, request.access) {
            Ok(cursor) => State::Descending(cursor),
            Err(fault) => State::Faulted(fault),
        };
    }

    let mut unique = [0u64; BATCH_CHUNK];
    let mut values: [Result<u64, MemoryError>; BATCH_CHUNK] = [Ok(0); BATCH_CHUNK];
    let mut slot_of = [0usize; BATCH_CHUNK];
    // Each round advances every descending walk by one level; a walk reads
    // at most 5 descriptors (levels -1..=3), so 5 rounds finish them all.
    for _ in 0..crate::fault::MAX_TRAIL {
        let mut pending = 0;
        for (i, state) in states[..n].iter().enumerate() {
            if let State::Descending(cursor) = state {
                let found = unique[..pending].iter().position(|a| *a == cursor.address);
                slot_of[i] = match found {
                    Some(slot) => slot,
                    None => {
                        unique[pending] = cursor.address;
                        pending += 1;
                        pending - 1
                    }
                };
            }
        }
        if pending == 0 {
            break;
        }
        memory.read_descriptors(&unique[..pending], &mut values[..pending]);
        for (i, state) in states[..n].iter_mut().enumerate() {
            if let State::Descending(cursor) = state {
                let mut cursor = *cursor;
                *state = match walker.advance(&mut cursor, values[slot_of[i]]) {
                    Step::Continue => State::Descending(cursor),
                    Step::Leaf(descriptor) => State::AtLeaf(cursor, descriptor),
                    Step::Fault(fault) => State::Faulted(fault),
                };
            }
        }
    }

    // Finish in request order, tracking the descriptors updated so far.
    let mut updated = [0u64; BATCH_CHUNK];
    let mut updated_len = 0;
    for ((state, request), result) in states[..n].iter().zip(requests).zip(results.iter_mut()) {
        let touched =
            |trail: &crate::fault::Trail| updated[..updated_len].iter().any(|a| trail.contains(*a));
        let outcome = match state {
            State::Faulted(fault) if !touched(&fault.trail) => Err(WalkError::Fault(*fault)),
            State::AtLeaf(cursor, descriptor) if !touched(&cursor.trail) => {
                match walker.finish(memory, cursor, *descriptor) {
                    Finish::Done(done) => done.map_err(WalkError::Fault),
                    Finish::Lost { .. } => walker.walk(memory, request.ipa, request.access),
                }
            }
            // A still-descending walk cannot remain after 5 rounds; treat it,
            // like a walk whose reads an earlier update invalidated, by
            // walking again on its own.
            _ => walker.walk(memory, request.ipa, request.access),
        };
        if let Ok(translation) = &outcome {
            if translation.update != Default::default() && updated_len < BATCH_CHUNK {
                updated[updated_len] = translation.leaf_address();
                updated_len += 1;
            }
        }
        *result = outcome;
    }
}

fn placeholder_fault() -> Fault {
    Fault {
        cause: crate::fault::FaultCause::InvalidDescriptor,
        level: 0,
        ipa: 0,
        access: crate::fault::AccessKind::Read,
        trail: crate::fault::Trail::default(),
    }
}
