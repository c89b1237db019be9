//! A fixed-capacity, lock-free-for-readers hash table of epoch-managed
//! nodes: the storage under the walk-result cache, the intermediate-level
//! cache and the context directory.
//!
//! - Buckets of [`BUCKET`] slots (one cache line of pointers); a key lives
//!   in the bucket its hash selects, in any of its slots. A lookup reads
//!   every slot of that one bucket, so removal is a plain store of null
//!   (no tombstones, no probe chains to keep intact).
//! - Writers are serialised by the owner (each table belongs to a context
//!   or to the directory, whose writer lock every mutating call holds);
//!   readers take no lock and only need an epoch [`Guard`].
//! - A full bucket evicts one of its entries (rotating choice): an insert
//!   never fails and never allocates beyond one node, so the table's
//!   memory is bounded by its capacity.
//! - A node leaves a slot by one swap and is destroyed only through the
//!   epoch collector, after every reader that could hold it has unpinned.
//!
//! This is the only module with `unsafe`: crossbeam-epoch's dereference
//! and deferred destruction are unsafe functions whose contracts the
//! comments below discharge.
#![allow(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec::Vec;

use crate::sync::epoch::{self, Atomic, Guard, Owned, Shared};
use crate::sync::unmodelled::AtomicUsize;
use crate::sync::{Liveness, Ordering};

/// Slots per bucket: four 8-byte pointers, half a cache line.
pub(crate) const BUCKET: usize = 4;

/// A node stored in a [`Table`]: found by its key.
pub(crate) trait Keyed {
    /// What lookups compare.
    type Key: Copy + Eq;
    /// This node's key.
    fn key(&self) -> Self::Key;
}

/// What an insert displaced, for the owner's indexes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Displaced<K> {
    /// The slot was free (or held a node the caller declared dead).
    Nothing,
    /// A node with the same key was replaced.
    SameKey,
    /// The bucket was full: this live node was evicted.
    Evicted(K),
}

/// A stored node: the value and its loom liveness marker.
struct Node<T> {
    value: T,
    alive: Liveness,
}

impl<T> Node<T> {
    fn new(value: T) -> Self {
        Node {
            value,
            alive: Liveness::default(),
        }
    }

    /// The value, for a reader that just dereferenced the node.
    fn read(&self) -> &T {
        self.alive.touch();
        &self.value
    }
}

/// See the module documentation.
pub(crate) struct Table<T: Keyed> {
    slots: Box<[Atomic<Node<T>>]>,
    bucket_mask: usize,
    /// Rotates the eviction victim within a full bucket (writers only).
    victim: AtomicUsize,
}

impl<T: Keyed> core::fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Table")
            .field("capacity", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// A 64-bit mix of two words (a multiply-xorshift: cheap, and every input
/// bit reaches the high bits the bucket index is taken from).
pub(crate) fn hash2(a: u64, b: u64) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let x = (a ^ b.rotate_left(29)).wrapping_mul(K);
    let x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

impl<T: Keyed> Table<T> {
    /// A table with room for at least `capacity` nodes (rounded up to a
    /// power of two buckets).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let buckets = capacity.div_ceil(BUCKET).max(1).next_power_of_two();
        let mut slots = Vec::with_capacity(buckets * BUCKET);
        slots.resize_with(buckets * BUCKET, Atomic::null);
        Table {
            slots: slots.into_boxed_slice(),
            bucket_mask: buckets - 1,
            victim: AtomicUsize::new(0),
        }
    }

    fn bucket(&self, hash: u64) -> &[Atomic<Node<T>>] {
        // High bits: the mix puts its best entropy there.
        let index = ((hash >> 32) as usize) & self.bucket_mask;
        &self.slots[index * BUCKET..(index + 1) * BUCKET]
    }

    /// The node with `key`, if present. Lock-free.
    pub(crate) fn get<'g>(&self, key: T::Key, hash: u64, guard: &'g Guard) -> Option<&'g T> {
        self.bucket(hash).iter().find_map(|slot| {
            let shared = slot.load(Ordering::Acquire, guard);
            // SAFETY: `shared` was loaded from a slot under `guard`. Nodes
            // are destroyed only by `defer_destroy` after being swapped out
            // of their slot (or by `Drop` with exclusive access), so the
            // node stays allocated at least until `guard` unpins, which
            // outlives the returned reference ('g). It was fully written
            // before the Release store that published it.
            let node = unsafe { shared.as_ref() }?.read();
            (node.key() == key).then_some(node)
        })
    }

    /// Inserts `node`, replacing a node with the same key, else taking a
    /// free slot or one whose node `dead` reports as dead, else evicting a
    /// live node of the bucket. Caller holds the owner's writer lock.
    pub(crate) fn insert<'g>(
        &self,
        node: T,
        hash: u64,
        guard: &'g Guard,
        dead: impl Fn(&T) -> bool,
    ) -> (Displaced<T::Key>, &'g T) {
        let key = node.key();
        let bucket = self.bucket(hash);
        let mut free = None;
        let mut same = None;
        for (i, slot) in bucket.iter().enumerate() {
            let shared = slot.load(Ordering::Acquire, guard);
            // SAFETY: as in `get`: loaded under `guard`, freed only after
            // unlinking and a grace period.
            match unsafe { shared.as_ref() }.map(Node::read) {
                None => free = free.or(Some(i)),
                // A dead node with the same key is replaced like a free
                // slot: the caller's indexes no longer list it.
                Some(n) if n.key() == key => {
                    same = Some((i, dead(n)));
                    break;
                }
                Some(n) if dead(n) => free = free.or(Some(i)),
                Some(_) => {}
            }
        }
        let (index, outcome) = match (same, free) {
            (Some((i, false)), _) => (i, Displaced::SameKey),
            (Some((i, true)), _) => (i, Displaced::Nothing),
            (None, Some(i)) => (i, Displaced::Nothing),
            (None, None) => {
                let i = self.victim.fetch_add(1, Ordering::Relaxed) % BUCKET;
                let shared = bucket[i].load(Ordering::Acquire, guard);
                // SAFETY: as in `get`.
                let evicted = unsafe { shared.as_ref() }.map(|n| n.read().key());
                (i, evicted.map_or(Displaced::Nothing, Displaced::Evicted))
            }
        };
        let new = Owned::new(Node::new(node)).into_shared(guard);
        let old = bucket[index].swap(new, Ordering::AcqRel, guard);
        retire(old, guard);
        // SAFETY: `new` was allocated just now and published in a slot; it
        // is destroyed only after being unlinked and a grace period, which
        // cannot end while `guard` ('g) is pinned.
        (outcome, unsafe { new.deref() }.read())
    }

    /// When the bucket for `hash` has no free slot, the key of one of its
    /// nodes (the one the next insert there would evict).
    pub(crate) fn full_bucket_victim(&self, hash: u64, guard: &Guard) -> Option<T::Key> {
        let bucket = self.bucket(hash);
        let mut keys = bucket.iter().map(|slot| {
            let shared = slot.load(Ordering::Acquire, guard);
            // SAFETY: as in `get`.
            unsafe { shared.as_ref() }.map(|n| n.read().key())
        });
        let first = keys.next().flatten()?;
        keys.all(|k| k.is_some()).then_some(first)
    }

    /// Removes the node with `key`; whether one was there. Caller holds the
    /// owner's writer lock.
    pub(crate) fn remove(&self, key: T::Key, hash: u64, guard: &Guard) -> bool {
        for slot in self.bucket(hash) {
            let shared = slot.load(Ordering::Acquire, guard);
            // SAFETY: as in `get`.
            if unsafe { shared.as_ref() }.is_some_and(|n| n.read().key() == key) {
                let old = slot.swap(Shared::null(), Ordering::AcqRel, guard);
                retire(old, guard);
                return true;
            }
        }
        false
    }
}

/// Hands an unlinked node to the collector.
fn retire<T>(old: Shared<'_, T>, guard: &Guard) {
    if !old.is_null() {
        // SAFETY: `old` was just swapped out of its slot by the only writer
        // (the owner's writer lock is held), so no new reader can reach it
        // and it is retired exactly once; readers that loaded it before the
        // swap are pinned, and the collector destroys it only after all of
        // them have unpinned.
        unsafe { guard.defer_destroy(old) };
    }
}

impl<T: Keyed> Drop for Table<T> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: the table is being destroyed, which happens
        // only once its owner is unreachable (an owner unlinked from the
        // directory is itself destroyed through the collector, after every
        // reader unpinned), so no guard can still reach these nodes.
        let guard = unsafe { epoch::unprotected() };
        for slot in self.slots.iter() {
            let shared = slot.swap(Shared::null(), Ordering::Relaxed, guard);
            if !shared.is_null() {
                // SAFETY: as above, exclusive access; each node is owned by
                // exactly one slot, taken out just now.
                drop(unsafe { shared.into_owned() });
            }
        }
    }
}
