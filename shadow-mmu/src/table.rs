//! A fixed-capacity, lock-free-for-readers hash table of epoch-managed
//! nodes: the storage under the walk-result cache, the intermediate-level
//! cache and the context directory.
//!
//! - Buckets of [`BUCKET`] slots with a hash tag per slot (one cache
//!   line); a key lives in the bucket its hash selects, in any of its
//!   slots. A lookup reads that one bucket and dereferences only a node
//!   whose tag matches, so removal is a plain store of null (no
//!   tombstones, no probe chains to keep intact).
//! - Writers are serialised by the owner; readers take no lock and only
//!   need an epoch [`Guard`]. The directory's table is written under the
//!   directory's lock. A slot's cache tables pass from a retired context
//!   to its successor, and each context has its own writer lock, so the
//!   invariant is: writers of a context's cache slots are serialised by
//!   its lock, and a retired context's cache is never written (its
//!   inserts are refused by `Context::may_insert`, its index is flushed
//!   and parked so a removal finds nothing, and invalidations visit only
//!   live contexts, under the directory's lock). The service
//!   `debug_assert!`s the second half where it writes.
//! - A table may give each key a **second bucket** (the walk-result
//!   cache's leaves: [`Table::with_stash`]), chosen by a keyed mix of the
//!   key's hash, so it does not follow the first bucket's layout. A key
//!   goes to a free place of its first bucket, else of its second; when
//!   both are full, a node living in its first bucket whose second bucket
//!   has room is moved there ([`Table::move_to_second`]) and the key takes
//!   its place. A reader probes the first bucket, and the second only when
//!   the first misses, so a hit in the first bucket costs what it did
//!   without a second; the tag of a key is its (first) hash in either
//!   bucket. A reader never misses a node that stays linked throughout its
//!   lookup, moved or not (the tags' Release stores and an Acquire fence
//!   before a second probe: [`Table::get_in_second`]). Why (found after review 38 keyed the leaf hash): with one
//!   bucket per key, a cache of twice as many places as leaves overflowed
//!   its 4-place buckets for 2-4% of its leaves, and where the leaf hash
//!   puts a region's pages in consecutive buckets (`cache::leaf_hash`),
//!   regions whose buckets overlapped overflowed together, up to a fifth of
//!   the leaves in one run. Spilled to independent second buckets, and
//!   with the move, no leaf was lost at that provisioning in 4,000 runs
//!   of 1,024 and 8,192 leaves and 80 of 65,536 (scattered pages, runs,
//!   whole regions, 2 MiB blocks, a mix; 640 of them are the test
//!   `cache::tests::a_cache_twice_the_working_set_holds_it_under_every_secret`),
//!   and in simulation about 4% of the leaves live in their second bucket.
//! - A table may have a **stash**: a few buckets' worth of places any key
//!   may take when its buckets are full (the walk-result cache's leaves
//!   have one: [`Table::with_stash`]). A reader probes a key's buckets, and
//!   the stash only when they miss. A key lives in one place at a time;
//!   it moves only from its first bucket to its second (so at most once
//!   while linked), never into or out of the stash.
//! - A full table evicts the **oldest** entry (by insertion stamp) of the
//!   key's buckets and the stash: an insert never fails and never
//!   allocates beyond one node, so the table's memory is bounded by its
//!   capacity. Why the oldest, and why a stash (review 38 R38-1): with the
//!   bucket alone, five keys of one bucket could never be held together,
//!   and an access that needs them all (the shadow holds a leaf only while
//!   its cached leaf is held) faulted for ever. With a stash of `S` places,
//!   any `W <= S + BUCKET` keys needed together are all held after at most
//!   `2W` inserts of them with no other insert in between, whatever their
//!   hashes (second buckets included: they may all share both): an
//!   eviction chooses among at least `S + BUCKET` live entries, at most
//!   `W - 1` of them needed, so among them is an entry that is not needed;
//!   every needed key inserted during the sequence is newer than every
//!   entry that is not (no other insert came in between; a move keeps a
//!   node's stamp and evicts nothing), so it is never the oldest there, and
//!   a needed key is evicted at most once (only while it predates the
//!   sequence).
//! - Two-choice use (the context directory): a key may live in either of
//!   two buckets chosen by two hashes; readers probe the first, then the
//!   second ([`Table::get_either`]); a writer puts a new key in the emptier
//!   one and never evicts ([`Table::insert_either`]), so a bucket that
//!   fills spills into its keys' other buckets instead of giving one up.
//! - A node leaves a slot by a load and a store (writers are serialised,
//!   so no swap is needed: two overlapping writers would both retire the
//!   node they loaded) and is destroyed only through the epoch collector
//!   (`defer_destroy`, or the deferred call of a batch of removed nodes,
//!   [`Table::remove_batched`]), after every reader that could hold it has
//!   unpinned.
//!
//! This is the only module with `unsafe`: crossbeam-epoch's dereference
//! and deferred destruction are unsafe functions whose contracts the
//! comments below discharge.
#![allow(unsafe_code)]

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::mem::MaybeUninit;
use core::ptr::NonNull;

use crate::flat::{FlatKey, FlatMap};
use crate::sync::epoch::{self, Atomic, Guard, Owned, Shared};
use crate::sync::unmodelled::{AtomicU64, AtomicUsize};
use crate::sync::{fence, Liveness, Mutex, Ordering};

/// Slots per bucket: four 8-byte pointers and their four tags, one cache
/// line.
pub(crate) const BUCKET: usize = 4;

/// A node stored in a [`Table`]: found by its key. `Send`: a node a writer
/// unlinks is destroyed by the epoch collector on whichever thread collects
/// (review 50 R50-4).
pub(crate) trait Keyed: Send {
    /// What lookups compare.
    type Key: Copy + Eq;
    /// Whether the callers' hash of a key is a bijection of the key (two
    /// keys never share a hash), so a writer may take a tag match for a key
    /// match without dereferencing the node.
    const HASH_IS_KEY: bool = false;
    /// This node's key.
    fn key(&self) -> Self::Key;
}

/// What an insert displaced, for the owner's indexes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Displaced<K> {
    /// The slot was free.
    Nothing,
    /// The slot held a node the caller's `dead` declared dead (replaced
    /// like a free place: the caller's indexes no longer list it). Said
    /// of the one node the insert unlinked, however often `dead` was
    /// asked: the walk-result cache counts its old leaves by it.
    Dead,
    /// A node with the same key was replaced.
    SameKey,
    /// The bucket was full: this live node was evicted.
    Evicted(K),
}

/// A stored node: the value, when it was inserted, and its loom liveness
/// marker. The value first (`repr(C)`), at the allocation's start: a type
/// that orders its fields for the hit path (`CachedWalk`) knows where its
/// hot fields fall.
#[repr(C)]
struct Node<T> {
    value: T,
    /// The table's insert count when this node was made (written before
    /// the node is published, never after): the eviction takes the lowest.
    stamp: u64,
    alive: Liveness,
}

impl<T> Node<T> {
    fn new(value: T, stamp: u64) -> Self {
        Node {
            value,
            stamp,
            alive: Liveness::default(),
        }
    }

    /// The value, for a reader that just dereferenced the node.
    fn read(&self) -> &T {
        self.alive.touch();
        &self.value
    }
}

/// One bucket: its slots and, beside them, each slot's hash as a tag, in
/// one cache line. A probe compares tags before it dereferences a node, so
/// a lookup touches the bucket's line and at most the one node whose tag
/// matches (instead of every node of the bucket).
///
/// Tags are hints, never trusted by readers: a reader that finds a matching
/// tag still checks the node's key after dereferencing it, so a tag and a
/// pointer read from two different writes (a reader racing with a writer)
/// can only cause a miss, never a wrong hit. Writers (serialised by the
/// owner) keep each tag equal to the hash of the node in its slot, and
/// store it with Release: a reader that skipped a slot because its tag had
/// changed synchronises through it before it probes a second bucket (see
/// [`Table::get_in_second`]), so the tags are protocol atomics (loom
/// interleaves them).
#[repr(C, align(64))]
struct Bucket<T> {
    slots: [Atomic<Node<T>>; BUCKET],
    tags: [crate::sync::AtomicU64; BUCKET],
}

impl<T> Bucket<T> {
    fn new() -> Self {
        Bucket {
            slots: core::array::from_fn(|_| Atomic::null()),
            tags: core::array::from_fn(|_| crate::sync::AtomicU64::new(0)),
        }
    }
}

/// Where [`Table::insert_either`] put a node: its bucket and its index
/// there ([`Table::get_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NodePlace {
    bucket: usize,
    index: usize,
}

/// A place holding a node: its bucket (or the stash's), its index there
/// and the node.
type Place<'t, 'g, T> = (&'t Bucket<T>, usize, Shared<'g, Node<T>>);

/// A place an insert may take (its bucket and index there), and what
/// taking it displaces.
type OpenPlace<'t, T> = (&'t Bucket<T>, usize, Displaced<<T as Keyed>::Key>);

/// See the module documentation.
///
/// The fields a lookup reads come first (`repr(C)`): a hit reads the
/// bucket array's pointer, length and mask, so an owner that puts the
/// table after a few hot words of its own keeps them in one cache line
/// (`WalkCache`); the writers' counter and batches come last.
#[repr(C)]
pub(crate) struct Table<T: Keyed> {
    buckets: Box<[Bucket<T>]>,
    bucket_mask: usize,
    /// Keys the hash of a key's second bucket ([`Table::with_stash`]);
    /// `None`: one bucket per key.
    second: Option<u64>,
    /// Places any key may take when its buckets are full (see the module
    /// documentation); empty for most tables.
    stash: Box<[Bucket<T>]>,
    /// Inserts so far: each new node's stamp (writers only).
    inserts: AtomicU64,
    /// Nodes [`Table::remove_batched`] unlinked and has not yet handed to
    /// the collector (writers only).
    retiring: RetireBatch,
    /// Node allocations whose grace period has ended, taken by this
    /// table's inserts before the allocator is asked (see [`NodePool`]).
    pool: Arc<NodePool<T>>,
    /// Allocations taken from `pool` a batch at a time and not yet reused
    /// (writers only; contents dropped, memory uninitialised).
    reusable: RetireBatch,
}

/// The bucket `hash` selects in a table whose bucket count minus one is
/// `bucket_mask`: its high bits (the mixes put their best entropy there).
#[inline]
const fn masked_bucket_index(hash: u64, bucket_mask: usize) -> usize {
    ((hash >> 32) as usize) & bucket_mask
}

/// A shared owner of a table (the `Arc` of the struct that holds it) with
/// the table's bucket array address and mask beside it. A probe through it
/// reads the bucket without first reading the owner's line for the array's
/// address, so the bucket's load does not wait for that line: the hit
/// path's leaf bucket (each `Context` keeps its cache's leaf table this
/// way, in its own first line) comes one load earlier in the chain of
/// dependent loads a hit waits for. Dereferences to the owner.
pub(crate) struct HeldTable<O, T: Keyed> {
    buckets: NonNull<Bucket<T>>,
    bucket_mask: usize,
    owner: Arc<O>,
}

impl<O, T: Keyed + 'static> HeldTable<O, T> {
    /// `owner`'s table `table` (which returns a table `owner` holds).
    pub(crate) fn new(owner: Arc<O>, table: fn(&O) -> &Table<T>) -> Self {
        let held = table(&owner);
        HeldTable {
            buckets: NonNull::from(&*held.buckets).cast(),
            bucket_mask: held.bucket_mask,
            owner,
        }
    }

    /// [`Table::get_in_bucket`] of the held table.
    #[inline]
    pub(crate) fn get_in_bucket<'g>(
        &self,
        key: T::Key,
        hash: u64,
        guard: &'g Guard,
    ) -> Option<&'g T> {
        let index = masked_bucket_index(hash, self.bucket_mask);
        // SAFETY: `buckets` is the address of the held table's bucket array
        // (a pointer to the whole slice, cast) and `bucket_mask` its bucket
        // count minus one (a power of two): `index` is in the array. The
        // table was borrowed from `owner` (`table` returns a reference
        // that lives as long as the borrow of the owner given to it), which
        // this struct keeps alive, and a table's bucket array is never
        // replaced or freed while it lives (no method takes `&mut Table`
        // but `Drop`), so the array outlives `self`. Only shared references
        // to the buckets (atomics) are made, as through `&Table`.
        let bucket = unsafe { &*self.buckets.as_ptr().add(index) };
        Table::get_in(bucket, key, hash, guard)
    }
}

impl<O, T: Keyed> core::ops::Deref for HeldTable<O, T> {
    type Target = O;
    fn deref(&self) -> &O {
        &self.owner
    }
}

impl<O: core::fmt::Debug, T: Keyed> core::fmt::Debug for HeldTable<O, T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HeldTable")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

// SAFETY: a `HeldTable` is its owner's `Arc` and a shared view of a table
// the owner holds: sending it sends the `Arc` and lets the receiver read
// the table through `&Table` (so the table must be `Sync`), as sending the
// `Arc` alone would.
unsafe impl<O, T: Keyed> Send for HeldTable<O, T>
where
    Arc<O>: Send,
    Table<T>: Sync,
{
}

// SAFETY: sharing a `HeldTable` shares the `Arc` and reads of the table
// through `&Table`, as sharing the `Arc` alone would.
unsafe impl<O, T: Keyed> Sync for HeldTable<O, T>
where
    Arc<O>: Sync,
    Table<T>: Sync,
{
}

/// A table's pool keeps at most one node allocation per this many places
/// of the table (and at most [`POOL_BATCHES`] batches): what the budget
/// charges a place for it ([`pooled_bytes_per_place`]).
pub(crate) const POOL_SHARE: usize = 16;

/// Batches a table's pool keeps at most. A collect runs the deferred calls
/// of a whole bag of the collector at once (64 calls, a quarter of them a
/// batch of leaves, most of the rest paths, in a page-invalidation loop),
/// so the pool must take that many to spare the allocator's frees; the
/// inserts that follow take them back. Under loom one, whatever the size.
const POOL_BATCHES: usize = if cfg!(loom) { 1 } else { 64 };

/// Node allocations of one table whose grace period has ended (their
/// values dropped, the memory uninitialised), in batches of
/// [`RETIRE_BATCH`]: the deferred call of a batch of removed nodes puts
/// its batch here instead of freeing the nodes, and the table's inserts
/// take them back a batch at a time.
///
/// In a large cache a removed node is out of the CPU's caches by the time
/// its grace period ends, and the allocator's free reads and writes the
/// words around it (its boundary tags in glibc, a buddy's header in hv's
/// allocator): at 1M entries that was most of the collector's cost in a
/// page invalidation (README, "Invalidation performance"). Given back
/// here, nothing reads or writes the node until an insert writes its new
/// value, which the allocator's malloc would have handed out just the
/// same.
///
/// Reusing an allocation after its grace period is as safe as the
/// allocator reusing it after the free the collector would have done: no
/// reader pinned before the node's unlinking is still pinned when its
/// deferred call runs. Behind a lock (a spin lock; loom's under loom)
/// because the deferred call runs on whichever thread collects.
pub(crate) struct NodePool<T> {
    /// Made with room for every batch it may keep: it never grows.
    batches: Mutex<Vec<[usize; RETIRE_BATCH]>>,
    nodes: PhantomData<fn() -> T>,
}

impl<T> NodePool<T> {
    /// A pool for a table made for `capacity` nodes.
    fn for_capacity(capacity: usize) -> Self {
        NodePool {
            batches: Mutex::new(Vec::with_capacity(pool_batches(capacity))),
            nodes: PhantomData,
        }
    }

    /// Keeps `batch` (allocations of `Node<T>` whose values were dropped)
    /// for reuse, or frees it when the pool is full.
    fn give(&self, batch: &[usize; RETIRE_BATCH]) {
        {
            let mut batches = self.batches.lock();
            if batches.len() < batches.capacity() {
                batches.push(*batch);
                return;
            }
        }
        Self::free(batch);
    }

    /// Frees `batch` (allocations of `Node<T>` whose values were dropped).
    fn free(batch: &[usize; RETIRE_BATCH]) {
        // Freeing a node reads the allocator's words on both sides of it
        // (its boundary tags in glibc): ask for both lines of every node
        // first, so their misses overlap.
        for &node in batch.iter() {
            let at = node as *const u8;
            crate::prefetch::prefetch(at.wrapping_sub(8));
            crate::prefetch::prefetch(at.wrapping_add(core::mem::size_of::<Node<T>>()));
        }
        for &node in batch.iter() {
            // SAFETY: the pool's batches hold allocations of a `Node<T>`
            // made by `Box` (crossbeam's `Owned`) whose value was dropped
            // in place, owned by nobody else: freed once, as the
            // uninitialised memory they are.
            drop(unsafe { Box::from_raw(node as *mut MaybeUninit<Node<T>>) });
        }
    }

    /// A batch of allocations to reuse, if any.
    fn take(&self) -> Option<[usize; RETIRE_BATCH]> {
        self.batches.lock().pop()
    }
}

impl<T> Drop for NodePool<T> {
    fn drop(&mut self) {
        for batch in self.batches.lock().drain(..) {
            for &node in batch.iter() {
                // SAFETY: as in `give`: allocations made by `Box`, values
                // dropped, owned by the pool alone (which is being
                // dropped: every deferred call holding it has run).
                drop(unsafe { Box::from_raw(node as *mut MaybeUninit<Node<T>>) });
            }
        }
    }
}

/// Batches the pool of a table made for `capacity` nodes keeps at most.
const fn pool_batches(capacity: usize) -> usize {
    if cfg!(loom) {
        1
    } else {
        let share = capacity / (POOL_SHARE * RETIRE_BATCH);
        if share < POOL_BATCHES {
            share
        } else {
            POOL_BATCHES
        }
    }
}

/// Bytes a table made for `capacity` nodes allocates for its pool when it
/// is made: the pool in its `Arc` and its array of batches, whole.
pub(crate) const fn pool_preallocated_bytes(capacity: usize) -> usize {
    2 * core::mem::size_of::<usize>()
        + core::mem::size_of::<NodePool<()>>()
        + pool_batches(capacity) * core::mem::size_of::<[usize; RETIRE_BATCH]>()
}

/// Bytes the budget charges each place of a table for the nodes its pool
/// keeps: at most one per [`POOL_SHARE`] places (the pool's array of
/// batches is counted whole when it is made: [`pool_preallocated_bytes`]).
/// Like the nodes awaiting the collector (and those in a table's batch of
/// removed nodes), the batch a writer took from the pool and has not
/// reused yet (fewer than [`RETIRE_BATCH`] nodes) is not counted.
pub(crate) const fn pooled_bytes_per_place<T>() -> usize {
    node_bytes::<T>().div_ceil(POOL_SHARE)
}

/// Unlinked nodes a table hands to the epoch collector in one deferred
/// call. One under loom would be the old one-call-per-removal scheme; two
/// makes the models run removals whose node waits for a later one.
const RETIRE_BATCH: usize = if cfg!(loom) { 2 } else { 16 };

/// Nodes a [`RemovedRun`] holds: a block-index chunk's blocks.
const RUN_NODES: usize = CHUNK_BLOCKS;

/// Removals from which a run pays ([`Table::retire_run`] defers its whole
/// batches in one call only when there are two or more): with fewer, each
/// node going through the run and then [`Table::retire_batched`] out of
/// line cost a 16-page range ~35 instructions a page more than
/// [`Table::remove_batched`], which batches inline.
pub(crate) const RUN_MIN_NODES: usize = 2 * RETIRE_BATCH;

/// The nodes one run of a range removal unlinked ([`Table::remove_into_run`])
/// and not yet handed to the collector ([`Table::retire_run`]): on the
/// writer's stack, so a chunk's removal allocates once, not once per
/// [`RETIRE_BATCH`] nodes. Dropping one that still holds nodes leaks them
/// (never freed, never reused): `retire_run` empties it.
pub(crate) struct RemovedRun {
    nodes: [usize; RUN_NODES],
    len: usize,
}

impl RemovedRun {
    /// An empty run.
    pub(crate) const fn new() -> Self {
        RemovedRun {
            nodes: [0; RUN_NODES],
            len: 0,
        }
    }
}

/// The nodes removed since the table's last deferred call, as addresses
/// (the node type is the table's). Written only by the table's writers,
/// which are serialised, with loads and stores (no read-modify-write);
/// read by nobody else, so not a protocol atomic.
struct RetireBatch {
    nodes: [AtomicUsize; RETIRE_BATCH],
    len: AtomicUsize,
}

impl RetireBatch {
    fn new() -> Self {
        RetireBatch {
            nodes: core::array::from_fn(|_| AtomicUsize::new(0)),
            len: AtomicUsize::new(0),
        }
    }
}

impl<T: Keyed> core::fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Table")
            .field(
                "capacity",
                &((self.buckets.len() + self.stash.len()) * BUCKET),
            )
            .finish_non_exhaustive()
    }
}

/// A 64-bit mix of two words (a multiply-xorshift: cheap, and every input
/// bit reaches the high bits the bucket index is taken from). For a fixed
/// `b` it is a bijection of `a` (xor with a constant, multiplication by an
/// odd constant and `x ^ (x >> k)` are each invertible), so two different
/// `a` never share a hash: see [`Keyed::HASH_IS_KEY`].
#[inline]
pub(crate) fn hash2(a: u64, b: u64) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let x = (a ^ b.rotate_left(29)).wrapping_mul(K);
    let x = (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 29)
}

/// Buckets a table made for `capacity` nodes has: a power of two.
pub(crate) const fn buckets_for(capacity: usize) -> usize {
    let count = capacity.div_ceil(BUCKET);
    if count <= 1 {
        1
    } else {
        count.next_power_of_two()
    }
}

/// Bytes of the node a table allocates for one `T`.
pub(crate) const fn node_bytes<T>() -> usize {
    core::mem::size_of::<Node<T>>()
}

/// Bytes one place of a bucket costs (its pointer and its tag).
pub(crate) const PLACE_BYTES: usize = core::mem::size_of::<Bucket<()>>() / BUCKET;

/// Bytes of the bucket array of a table made for `capacity` nodes (nodes
/// not included).
pub(crate) const fn table_bytes(capacity: usize) -> usize {
    buckets_for(capacity) * core::mem::size_of::<Bucket<()>>()
}

/// Bytes of the stash of a table made with `places` stash places (nodes
/// not included): [`Table::with_stash`].
pub(crate) const fn stash_bytes(places: usize) -> usize {
    places.div_ceil(BUCKET) * core::mem::size_of::<Bucket<()>>()
}

// A bucket is one cache line: four pointers, four tags.
const _: () = assert!(core::mem::size_of::<Bucket<()>>() == 64 && PLACE_BYTES == 16);

// `T: 'static`: a node unlinked from a slot is destroyed by the epoch
// collector, which may run after the table's owner is gone (a worker's
// handle keeps the collector alive): the node must not borrow anything
// (crossbeam's `defer_destroy` contract).
impl<T: Keyed + 'static> Table<T> {
    /// A table with room for at least `capacity` nodes (rounded up to a
    /// power of two buckets).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self::with_stash(capacity, 0, None)
    }

    /// A table with room for at least `capacity` nodes in buckets, and a
    /// stash of `stash` places (rounded up to whole buckets) that any key
    /// may take when its buckets are full. With `second` each key also has
    /// a second bucket, chosen by a hash keyed by `second` of the key's
    /// hash (see the module documentation).
    pub(crate) fn with_stash(capacity: usize, stash: usize, second: Option<u64>) -> Self {
        let count = buckets_for(capacity);
        let mut buckets = Vec::with_capacity(count);
        buckets.resize_with(count, Bucket::new);
        let mut stashed = Vec::with_capacity(stash.div_ceil(BUCKET));
        stashed.resize_with(stash.div_ceil(BUCKET), Bucket::new);
        Table {
            buckets: buckets.into_boxed_slice(),
            stash: stashed.into_boxed_slice(),
            bucket_mask: count - 1,
            second,
            inserts: AtomicU64::new(0),
            retiring: RetireBatch::new(),
            pool: Arc::new(NodePool::for_capacity(capacity)),
            reusable: RetireBatch::new(),
        }
    }

    /// A node holding `value`, in an allocation from the pool when it has
    /// one (see [`NodePool`]), else from the allocator. Caller holds the
    /// owner's writer lock (the batch taken from the pool is writer-only).
    fn new_node<'g>(&self, value: T, guard: &'g Guard) -> Shared<'g, Node<T>> {
        // Writers are serialised: no read-modify-write needed.
        let stamp = self.inserts.load(Ordering::Relaxed);
        self.inserts.store(stamp.wrapping_add(1), Ordering::Relaxed);
        let Some(at) = self.reusable_allocation() else {
            return Owned::new(Node::new(value, stamp)).into_shared(guard);
        };
        let at = at as *mut Node<T>;
        // SAFETY: `at` is an allocation of a `Node<T>` made by `Box` whose
        // value was dropped after its grace period (`NodePool`), taken
        // from the pool by this writer alone: nothing else reads or
        // writes it, so writing a new node there is an initialisation,
        // and the result is a `Box`-made node as `Owned::new` gives.
        unsafe { at.write(Node::new(value, stamp)) };
        Shared::from(at.cast_const())
    }

    /// An allocation from the batch this writer took from the pool, taking
    /// the next batch when it is empty. Caller holds the writer lock.
    fn reusable_allocation(&self) -> Option<usize> {
        // Writers are serialised: loads and stores, no read-modify-write.
        let len = self.reusable.len.load(Ordering::Relaxed);
        if len > 0 {
            self.reusable.len.store(len - 1, Ordering::Relaxed);
            return Some(self.reusable.nodes[len - 1].load(Ordering::Relaxed));
        }
        let batch = self.pool.take()?;
        for (slot, &node) in self.reusable.nodes.iter().zip(&batch[1..]) {
            slot.store(node, Ordering::Relaxed);
        }
        self.reusable.len.store(RETIRE_BATCH - 1, Ordering::Relaxed);
        Some(batch[0])
    }

    /// Nodes the table holds at most (its buckets' and its stash's).
    pub(crate) fn capacity(&self) -> usize {
        (self.buckets.len() + self.stash.len()) * BUCKET
    }

    #[inline]
    fn bucket(&self, hash: u64) -> &Bucket<T> {
        // High bits: the mix puts its best entropy there.
        let index = self.bucket_index(hash);
        debug_assert!(index < self.buckets.len());
        // SAFETY: `index` is masked with `bucket_mask`, which `with_stash`
        // set to the bucket count (a power of two) minus one; neither
        // field changes after. Unchecked because this is every lookup's
        // bucket: the check was a load of the length, a compare and a
        // branch on the hit path, twice (the directory's and the leaf's).
        unsafe { self.buckets.get_unchecked(index) }
    }

    /// Asks for the bucket `hash` selects (its cache line), ahead of a
    /// `get`, `insert` or `remove` with that hash.
    pub(crate) fn prefetch(&self, hash: u64) {
        crate::prefetch::prefetch(self.bucket(hash));
    }

    /// The bucket index `hash` selects.
    #[inline]
    pub(crate) fn bucket_index(&self, hash: u64) -> usize {
        masked_bucket_index(hash, self.bucket_mask)
    }

    /// The index of the second bucket of the key whose hash is `hash`, if
    /// the table gives keys one and it is not the first. A keyed mix of
    /// the whole hash, so it does not follow the first bucket's layout:
    /// keys that crowd one first bucket (the pages of regions whose
    /// buckets overlap, [`crate::cache`]'s leaf hash) have independent
    /// second ones.
    pub(crate) fn second_index(&self, hash: u64) -> Option<usize> {
        let index = ((hash2(hash, self.second?) >> 32) as usize) & self.bucket_mask;
        (index != self.bucket_index(hash)).then_some(index)
    }

    /// The buckets a key with `hash` may live in: its first, then its
    /// second if it has one.
    fn homes(&self, hash: u64) -> impl Iterator<Item = &Bucket<T>> {
        core::iter::once(self.bucket(hash)).chain(self.second_index(hash).map(|i| &self.buckets[i]))
    }

    /// The node with `key`, if present: its bucket(s), then the stash.
    /// Lock-free.
    #[inline]
    pub(crate) fn get<'g>(&self, key: T::Key, hash: u64, guard: &'g Guard) -> Option<&'g T> {
        self.get_in_bucket(key, hash, guard)
            .or_else(|| self.get_in_second(key, hash, guard))
            .or_else(|| self.get_in_stash(key, hash, guard))
    }

    /// The node with `key` if it is in its first bucket (not its second
    /// or the stash): what a caller probing several keys asks first, so
    /// that a hit in a first bucket never reads another line. Lock-free.
    #[inline]
    pub(crate) fn get_in_bucket<'g>(
        &self,
        key: T::Key,
        hash: u64,
        guard: &'g Guard,
    ) -> Option<&'g T> {
        Self::get_in(self.bucket(hash), key, hash, guard)
    }

    /// The node with `key` if it is in its second bucket. Lock-free: a key
    /// moves at most once while linked, from its first bucket to its
    /// second, so a reader probing the first (before this call, under the
    /// same guard) and then the second misses it only while it is being
    /// inserted or removed, never while it moves (see below and
    /// [`Table::move_to_second`]). The fence costs nothing on x86 and a
    /// load barrier on arm64, paid only when every first bucket missed.
    pub(crate) fn get_in_second<'g>(
        &self,
        key: T::Key,
        hash: u64,
        guard: &'g Guard,
    ) -> Option<&'g T> {
        let index = self.second_index(hash)?;
        // A node moves from its first bucket to its second: published there,
        // then its first place cleared (Release) and perhaps given to
        // another key (its tag, Release, then its node). The probe of the
        // first bucket that missed it read that place's pointer (Acquire:
        // null or the new node, each stored after the publication) or, when
        // it skipped the place for its tag, the new key's tag: this fence
        // makes that tag's Release store, and so the publication before it,
        // happen before the probe below. So a node linked throughout a
        // lookup is found in one of its buckets (loom `shadow_leaf_move`
        // fails without the fence or with Relaxed tag stores).
        fence(Ordering::Acquire);
        Self::get_in(&self.buckets[index], key, hash, guard)
    }

    /// The node with `key` if it is in the stash. Lock-free: a key never
    /// moves between its buckets and the stash while linked, so a reader
    /// probing both misses it only while it is being inserted or removed.
    pub(crate) fn get_in_stash<'g>(
        &self,
        key: T::Key,
        hash: u64,
        guard: &'g Guard,
    ) -> Option<&'g T> {
        self.stash
            .iter()
            .find_map(|bucket| Self::get_in(bucket, key, hash, guard))
    }

    /// Whether `node`, a reference a `get` with `hash` returned under
    /// `guard`, is still linked in its buckets or the stash: pointers
    /// compared, no node read. (The node cannot have been freed and its
    /// address reused while `guard` is pinned.)
    pub(crate) fn links(&self, node: &T, hash: u64, guard: &Guard) -> bool {
        let holds = |bucket: &Bucket<T>| {
            bucket.slots.iter().any(|slot| {
                let shared = slot.load(Ordering::Acquire, guard);
                // SAFETY: as in `get`: loaded under `guard`, and destroyed only
                // after being unlinked and a grace period that cannot end while
                // `guard` is pinned. Only the value's address is taken.
                unsafe { shared.as_ref() }.is_some_and(|n| core::ptr::eq(&n.value, node))
            })
        };
        // The first bucket on its own (where nearly every node lives): a
        // fault's install asks this of every hit, and the chained
        // iterator over both buckets and the stash cost it ~100
        // instructions.
        holds(self.bucket(hash))
            || self
                .second_index(hash)
                .is_some_and(|i| holds(&self.buckets[i]))
            || self.stash.iter().any(holds)
    }

    /// Linked nodes (its buckets' and its stash's) for which `pred` holds,
    /// by a scan of every place: for assertions and tests. Caller holds
    /// the owner's writer lock.
    pub(crate) fn count_linked(&self, guard: &Guard, pred: impl Fn(&T) -> bool) -> usize {
        self.buckets
            .iter()
            .chain(self.stash.iter())
            .flat_map(|b| b.slots.iter())
            .filter(|slot| {
                let shared = slot.load(Ordering::Acquire, guard);
                // SAFETY: as in `get`: loaded under `guard`, and destroyed
                // only after being unlinked and a grace period that cannot
                // end while `guard` is pinned.
                unsafe { shared.as_ref() }.is_some_and(|n| pred(&n.value))
            })
            .count()
    }

    /// The node with `key` in either of its two buckets (`hashes`), the
    /// first probed first. Lock-free: a key is never moved between its
    /// buckets while linked, so a reader misses it only while it is being
    /// inserted or removed. For a two-choice table (the directory's),
    /// which has no stash and no second buckets of its own
    /// ([`Table::insert_either`] uses neither), so the two buckets are all
    /// there is to probe.
    ///
    /// Always inlined: with the directory's lookup also inlined into the
    /// fault path (`Directory::get_or_create`), `#[inline]` left it out of
    /// line on the hit path (`Service::lookup`: 178 -> 195 instructions a
    /// burst hit, `examples/hit_count.rs`).
    #[inline(always)]
    pub(crate) fn get_either<'g>(
        &self,
        key: T::Key,
        hashes: [u64; 2],
        guard: &'g Guard,
    ) -> Option<&'g T> {
        debug_assert!(self.stash.is_empty() && self.second.is_none());
        let [first, second] = hashes;
        self.get_in_bucket(key, first, guard).or_else(|| {
            if self.bucket_index(first) == self.bucket_index(second) {
                return None;
            }
            self.get_in_bucket(key, second, guard)
        })
    }

    #[inline(always)]
    fn get_in<'g>(bucket: &Bucket<T>, key: T::Key, hash: u64, guard: &'g Guard) -> Option<&'g T> {
        bucket
            .slots
            .iter()
            .zip(&bucket.tags)
            .find_map(|(slot, tag)| {
                if tag.load(Ordering::Relaxed) != hash {
                    return None;
                }
                let shared = slot.load(Ordering::Acquire, guard);
                // SAFETY: `shared` was loaded from a slot under `guard`. Nodes
                // are destroyed only through the epoch collector (`retire`'s
                // `defer_destroy` or a batch's deferred call) after
                // being unlinked from their slot by its only writer's store
                // (or by `Drop` with exclusive access), so the node stays
                // allocated at least until `guard` unpins, which outlives the
                // returned reference ('g). It was fully written before the
                // Release store that published it.
                let node = unsafe { shared.as_ref() }?.read();
                (node.key() == key).then_some(node)
            })
    }

    /// The place holding `key` (its buckets', else the stash's), for a
    /// writer (whose tags are exact): tags alone decide when hashes are
    /// keys. The first bucket is searched before the second's hash is
    /// computed: a walk after a flush finds its key's stale node there.
    fn find_slot<'t, 'g>(
        &'t self,
        key: T::Key,
        hash: u64,
        guard: &'g Guard,
    ) -> Option<Place<'t, 'g, T>> {
        let first = self.bucket(hash);
        if let Some((i, n)) = Self::find_in(first, key, hash, guard) {
            return Some((first, i, n));
        }
        self.second_index(hash)
            .map(|i| &self.buckets[i])
            .into_iter()
            .chain(self.stash.iter())
            .find_map(|b| Self::find_in(b, key, hash, guard).map(|(i, n)| (b, i, n)))
    }

    /// [`Table::find_slot`] in one bucket.
    fn find_in<'g>(
        bucket: &Bucket<T>,
        key: T::Key,
        hash: u64,
        guard: &'g Guard,
    ) -> Option<(usize, Shared<'g, Node<T>>)> {
        (0..BUCKET).find_map(|i| {
            if bucket.tags[i].load(Ordering::Relaxed) != hash {
                return None;
            }
            let shared = bucket.slots[i].load(Ordering::Acquire, guard);
            if shared.is_null() {
                return None;
            }
            if T::HASH_IS_KEY {
                return Some((i, shared));
            }
            // SAFETY: as in `get`: loaded under `guard`, freed only after
            // unlinking and a grace period.
            unsafe { shared.as_ref() }
                .is_some_and(|n| n.read().key() == key)
                .then_some((i, shared))
        })
    }

    /// Inserts `node`, replacing a node with the same key, else taking a
    /// free place or one whose node `dead` reports as dead (in its first
    /// bucket, else its second), else a place made in either by moving a
    /// node to its own second bucket, else a free or dead place of the
    /// stash, else evicting the oldest live node of its buckets and the
    /// stash (see the module documentation); [`Displaced::Dead`] when the
    /// node it unlinked was a dead one. Caller holds the owner's writer
    /// lock.
    pub(crate) fn insert<'g>(
        &self,
        node: T,
        hash: u64,
        guard: &'g Guard,
        dead: impl Fn(&T) -> bool,
    ) -> (Displaced<T::Key>, &'g T) {
        let key = node.key();
        let (bucket, index, outcome) = match self.find_slot(key, hash, guard) {
            Some((bucket, i, shared)) => {
                // SAFETY: as in `get`.
                let is_dead = unsafe { shared.as_ref() }.is_some_and(|n| dead(n.read()));
                // A dead node with the same key is replaced like a free
                // place: the caller's indexes no longer list it.
                let outcome = if is_dead {
                    Displaced::Dead
                } else {
                    Displaced::SameKey
                };
                (bucket, i, outcome)
            }
            None => self.place_for(hash, guard, &dead),
        };
        let new = self.new_node(node, guard);
        // The tag first: a reader that sees the new pointer (Acquire on
        // the store's Release) also sees its tag. Release: a reader that
        // skips this place for the new tag then sees what came before it
        // (a move that freed the place, `get_in_second`).
        bucket.tags[index].store(hash, Ordering::Release);
        let old = replace(&bucket.slots[index], new, guard);
        // The replaced node (a stale one after a flush, the usual case of a
        // walking fault then, or an evicted or dead one) goes with the
        // invalidations' removed nodes, so its allocation comes back to
        // this table's inserts through the pool: a walk after a flush then
        // neither mallocs its node nor frees the old one, and pays a
        // deferred call per batch, not per node.
        self.retire_batched(old, guard);
        // SAFETY: `new` was allocated just now and published in a slot; it
        // is destroyed only after being unlinked and a grace period, which
        // cannot end while `guard` ('g) is pinned.
        (outcome, unsafe { new.deref() }.read())
    }

    /// Where a key not in the table goes (see [`Table::insert`]): a free
    /// or dead place of its buckets, or one a move freed there, or of the
    /// stash, else the place of the oldest node of all three (evicted).
    /// Caller holds the owner's writer lock.
    fn place_for<'t>(
        &'t self,
        hash: u64,
        guard: &Guard,
        dead: &impl Fn(&T) -> bool,
    ) -> (&'t Bucket<T>, usize, Displaced<T::Key>) {
        for b in self.homes(hash) {
            if let Some((i, outcome)) = Self::open_place(b, guard, dead) {
                return (b, i, outcome);
            }
        }
        if let Some((b, i, outcome)) = self.move_to_second(hash, guard, dead) {
            return (b, i, outcome);
        }
        for b in self.stash.iter() {
            if let Some((i, outcome)) = Self::open_place(b, guard, dead) {
                return (b, i, outcome);
            }
        }
        // (bucket, place, stamp, key) of the oldest live node: every place
        // of the key's buckets and the stash holds one now.
        let mut oldest: Option<(&Bucket<T>, usize, u64, T::Key)> = None;
        for b in self.homes(hash).chain(self.stash.iter()) {
            for (i, slot) in b.slots.iter().enumerate() {
                // SAFETY: as in `get`.
                let Some(n) = (unsafe { slot.load(Ordering::Acquire, guard).as_ref() }) else {
                    continue;
                };
                // Stamps wrap after 2^64 inserts: never, in practice.
                if oldest.is_none_or(|(_, _, stamp, _)| n.stamp < stamp) {
                    oldest = Some((b, i, n.stamp, n.read().key()));
                }
            }
        }
        match oldest {
            Some((b, i, _, key)) => (b, i, Displaced::Evicted(key)),
            // Unreachable: a bucket has places, and each was live.
            None => (self.bucket(hash), 0, Displaced::Nothing),
        }
    }

    /// The first free place of `bucket`, or one whose node `dead` reports
    /// as dead ([`Displaced::Dead`]). Caller holds the owner's writer
    /// lock.
    fn open_place(
        bucket: &Bucket<T>,
        guard: &Guard,
        dead: &impl Fn(&T) -> bool,
    ) -> Option<(usize, Displaced<T::Key>)> {
        bucket.slots.iter().enumerate().find_map(|(i, slot)| {
            // SAFETY: as in `get`.
            match unsafe { slot.load(Ordering::Acquire, guard).as_ref() } {
                None => Some((i, Displaced::Nothing)),
                Some(n) if dead(n.read()) => Some((i, Displaced::Dead)),
                Some(_) => None,
            }
        })
    }

    /// Makes room in a key's full buckets (`hash`'s) by moving one of
    /// their nodes that lives in its own first bucket to its own second,
    /// when that has a free or dead place; the place it left (now free),
    /// and [`Displaced::Dead`] when the node moved took a dead node's
    /// place (unlinked here). Caller holds the owner's writer lock.
    ///
    /// The node is published in its second bucket (its tag first, then
    /// the pointer with Release) before its old place is cleared
    /// (Release), and the new key's insert into that place stores its tag
    /// (Release) and node after the clear, so a reader probing the node's
    /// first bucket and then its second finds it in one of them: whatever
    /// it read of the old place is a Release store made after the
    /// publication, or the node itself, and [`Table::get_in_second`]'s
    /// fence orders the tag it skipped the place for before its second
    /// probe (loom `shadow_leaf_move`: a leaf linked throughout a lookup is
    /// never missed). A node moves only from its first bucket to its
    /// second, so at most once while it is linked.
    /// Nothing is evicted or allocated, and the node keeps its stamp (the
    /// eviction order, which the bound in the module documentation rests
    /// on, is unchanged).
    fn move_to_second<'t>(
        &'t self,
        hash: u64,
        guard: &Guard,
        dead: &impl Fn(&T) -> bool,
    ) -> Option<OpenPlace<'t, T>> {
        self.second?;
        let first = self.bucket_index(hash);
        for from in core::iter::once(first).chain(self.second_index(hash)) {
            let bucket = &self.buckets[from];
            for i in 0..BUCKET {
                // Writers' tags are exact: the node's hash.
                let tag = bucket.tags[i].load(Ordering::Relaxed);
                if self.bucket_index(tag) != from {
                    continue;
                }
                let Some(to) = self.second_index(tag) else {
                    continue;
                };
                let target = &self.buckets[to];
                let Some((j, outcome)) = Self::open_place(target, guard, dead) else {
                    continue;
                };
                let node = bucket.slots[i].load(Ordering::Relaxed, guard);
                // The tag first, as in `insert`, and Release as there: the
                // place may have been emptied after an earlier move out of
                // this bucket, which a reader skipping it for this tag must
                // then see (loom `shadow_leaf_move`'s
                // `a_moved_leaf_is_found_past_a_place_another_move_refilled`
                // fails with it Relaxed).
                target.tags[j].store(tag, Ordering::Release);
                // A dead node there goes as a replaced one does (`insert`).
                self.retire_batched(replace(&target.slots[j], node, guard), guard);
                bucket.slots[i].store(Shared::null(), Ordering::Release);
                return Some((bucket, i, outcome));
            }
        }
        None
    }

    /// Free places in the bucket `hash` selects. Caller holds the owner's
    /// writer lock.
    fn free_places(&self, hash: u64, guard: &Guard) -> usize {
        self.bucket(hash)
            .slots
            .iter()
            .filter(|slot| slot.load(Ordering::Acquire, guard).is_null())
            .count()
    }

    /// Whether either of a key's two buckets has a free place (so
    /// [`Table::insert_either`] succeeds). Caller holds the writer lock.
    pub(crate) fn has_room(&self, hashes: [u64; 2], guard: &Guard) -> bool {
        hashes.iter().any(|&h| self.free_places(h, guard) > 0)
    }

    /// Inserts `node`, whose key is in neither of its buckets, into the
    /// emptier of the two (the first on a tie), with that bucket's hash as
    /// its tag; nothing is evicted. Gives the node back when both buckets
    /// are full. Caller holds the owner's writer lock. Returns the node and
    /// its place, which it keeps until removed: such a table (no stash, no
    /// second hash) never moves a node ([`Table::get_at`]).
    pub(crate) fn insert_either<'g>(
        &self,
        node: T,
        hashes: [u64; 2],
        guard: &'g Guard,
    ) -> Result<(&'g T, NodePlace), T> {
        debug_assert!(self.stash.is_empty() && self.second.is_none());
        let [first, second] = hashes;
        let (free_first, free_second) = (
            self.free_places(first, guard),
            self.free_places(second, guard),
        );
        let hash = if free_second > free_first {
            second
        } else {
            first
        };
        let bucket_index = self.bucket_index(hash);
        let bucket = &self.buckets[bucket_index];
        let Some(index) = bucket
            .slots
            .iter()
            .position(|slot| slot.load(Ordering::Acquire, guard).is_null())
        else {
            return Err(node);
        };
        let new = self.new_node(node, guard);
        // The tag first, as in `insert`.
        bucket.tags[index].store(hash, Ordering::Release);
        let old = replace(&bucket.slots[index], new, guard);
        retire(old, guard);
        // SAFETY: as in `insert`: allocated just now, published, destroyed
        // only after unlinking and a grace period ('g is pinned).
        let node = unsafe { new.deref() }.read();
        Ok((
            node,
            NodePlace {
                bucket: bucket_index,
                index,
            },
        ))
    }

    /// The node at `place`, if any: for an owner that keeps the place
    /// [`Table::insert_either`] returned for as long as it keeps the node
    /// linked (nothing moves a node of such a table), so a probe by key,
    /// its hashes and tag compares are not needed to reach it again. The
    /// node is whatever the place holds: the caller makes sure that is
    /// the one it put there (it holds the owner's writer lock, under which
    /// the node is removed and the place reused).
    #[inline]
    pub(crate) fn get_at<'g>(&self, place: NodePlace, guard: &'g Guard) -> Option<&'g T> {
        debug_assert!(self.stash.is_empty() && self.second.is_none());
        let shared =
            self.buckets.get(place.bucket)?.slots[place.index].load(Ordering::Acquire, guard);
        // SAFETY: as in `get_in`: loaded from a slot under `guard`, freed
        // only through the collector after its unlinking, so alive until
        // 'g ends; fully written before the Release store that published
        // it.
        unsafe { shared.as_ref() }.map(Node::read)
    }

    /// Removes the node with `key` from whichever of its two buckets holds
    /// it; whether one was there. Caller holds the owner's writer lock.
    pub(crate) fn remove_either(&self, key: T::Key, hashes: [u64; 2], guard: &Guard) -> bool {
        let [first, second] = hashes;
        self.remove(key, first, guard)
            || (self.bucket_index(first) != self.bucket_index(second)
                && self.remove(key, second, guard))
    }

    /// When the bucket for `hash` has no free slot, the key of its oldest
    /// node. For a table without a stash (the directory's).
    pub(crate) fn full_bucket_victim(&self, hash: u64, guard: &Guard) -> Option<T::Key> {
        debug_assert!(self.stash.is_empty());
        let mut oldest: Option<(u64, T::Key)> = None;
        for slot in &self.bucket(hash).slots {
            let shared = slot.load(Ordering::Acquire, guard);
            // SAFETY: as in `get`.
            let n = unsafe { shared.as_ref() }?;
            if oldest.is_none_or(|(stamp, _)| n.stamp < stamp) {
                oldest = Some((n.stamp, n.read().key()));
            }
        }
        oldest.map(|(_, key)| key)
    }

    /// Removes the node with `key`; whether one was there. Caller holds the
    /// owner's writer lock.
    pub(crate) fn remove(&self, key: T::Key, hash: u64, guard: &Guard) -> bool {
        match self.find_slot(key, hash, guard) {
            Some((bucket, i, old)) => {
                // Writers are serialised: `old` is still the slot's node.
                bucket.slots[i].store(Shared::null(), Ordering::Release);
                retire(old, guard);
                true
            }
            None => false,
        }
    }

    /// [`Table::remove`] for an invalidation: the node joins the table's
    /// batch of removed nodes, which goes to the epoch collector in one
    /// deferred call once [`RETIRE_BATCH`] are in it
    /// ([`Table::retire_batched`]). Caller holds the owner's writer lock.
    pub(crate) fn remove_batched(&self, key: T::Key, hash: u64, guard: &Guard) -> bool {
        match self.find_slot(key, hash, guard) {
            Some((bucket, i, old)) => {
                // Writers are serialised: `old` is still the slot's node.
                bucket.slots[i].store(Shared::null(), Ordering::Release);
                self.retire_batched(old, guard);
                true
            }
            None => false,
        }
    }

    /// [`Table::remove_batched`] for a range removal's run of keys (one
    /// block-index chunk): the unlinked node goes into `run`, which
    /// [`Table::retire_run`] hands to the collector after the run's last
    /// removal. Caller holds the owner's writer lock, from this call to
    /// that one.
    pub(crate) fn remove_into_run(
        &self,
        key: T::Key,
        hash: u64,
        guard: &Guard,
        run: &mut RemovedRun,
    ) -> bool {
        match self.find_slot(key, hash, guard) {
            Some((bucket, i, old)) => {
                // Writers are serialised: `old` is still the slot's node.
                bucket.slots[i].store(Shared::null(), Ordering::Release);
                if run.len == RUN_NODES {
                    // Not a chunk's run: the rest go one by one.
                    self.retire_batched(old, guard);
                } else {
                    run.nodes[run.len] = old.as_raw() as usize;
                    run.len += 1;
                }
                true
            }
            None => false,
        }
    }

    /// Hands the nodes [`Table::remove_into_run`] put in `run` to the
    /// collector and empties it: the whole [`RETIRE_BATCH`]es of them in
    /// one deferred call with one allocation (a chunk of 64 leaves was four
    /// calls and four allocations: ~30 instructions a removed leaf, stop
    /// 31), the rest through the table's batch ([`Table::retire_batched`]).
    /// As safe as `retire_batched`, by its argument: every node was
    /// unlinked by this table's writer before this deferral. Caller holds
    /// the owner's writer lock.
    pub(crate) fn retire_run(&self, run: &mut RemovedRun, guard: &Guard) {
        let len = core::mem::take(&mut run.len);
        let whole = if len >= RUN_MIN_NODES {
            len - len % RETIRE_BATCH
        } else {
            0
        };
        for &node in &run.nodes[whole..len] {
            self.retire_batched(Shared::from(node as *const Node<T>), guard);
        }
        if whole == 0 {
            return;
        }
        let nodes: Box<[usize]> = Box::from(&run.nodes[..whole]);
        let pool = Arc::clone(&self.pool);
        // SAFETY: as in `retire_batched`: every address in `nodes` is a
        // node this table's writer unlinked from its slot under the owner's
        // writer lock (`remove_into_run`), put in the run once and taken
        // out of it here (the run is emptied above), so each is destroyed
        // exactly once and no new reader can reach it; a reader that
        // loaded one was pinned before its unlinking, which happened before
        // this call, and the collector runs this only after every thread
        // pinned now has unpinned. `T: 'static` and `Send`, and the pool
        // is kept alive by the call's `Arc`, as there.
        unsafe {
            guard.defer_unchecked(move || {
                for &node in nodes.iter() {
                    // The value only: the allocation goes to the pool.
                    core::ptr::drop_in_place(node as *mut Node<T>);
                }
                for batch in nodes.chunks_exact(RETIRE_BATCH) {
                    if let Ok(batch) = <&[usize; RETIRE_BATCH]>::try_from(batch) {
                        pool.give(batch);
                    }
                }
            });
        }
    }

    /// Adds `old`, just unlinked from its slot by this writer, to the
    /// batch; a full batch goes to the collector in one deferred call,
    /// which asks for every node's lines before it frees the first.
    ///
    /// A page invalidation used to hand its leaf and its paths to the
    /// collector in a deferred call per table. The collector runs them a
    /// few hundred calls later, so in a large cache the nodes are out of
    /// the CPU's caches by then, and the allocator's free of each (it reads
    /// and writes the words around the node) was a memory round trip, one
    /// after the other: about 100 ns a page invalidation at 1M entries,
    /// paid inside whichever later pin collects (README, "Invalidation
    /// performance"). Freed together after their lines were asked for, the
    /// misses overlap; and the collector's bag (sealed every 64 deferred
    /// calls, which allocates 2 KiB) fills several times more slowly.
    ///
    /// Handing a node to the collector later than its unlinking is as safe
    /// as at once, whichever writer fills the batch (writers are
    /// serialised, so the unlinking happens before the deferral): the
    /// collector destroys it only after every thread pinned at the
    /// deferral has unpinned, and a reader that could still hold it was
    /// pinned before the unlinking, so it is either pinned at the deferral
    /// or no longer holds it. The batch holds at most [`RETIRE_BATCH`] - 1
    /// nodes between writer calls (memory the budget does not count, like
    /// nodes awaiting the collector); [`Table`]'s drop frees what is left.
    ///
    /// Always inlined, its full batch's deferral out of line
    /// ([`Table::defer_batch`]): out of line as a whole (as it went when
    /// `retire_run` became its fourth caller), a call per removed node cost
    /// a 16-page range ~17 instructions a page (stop 31).
    #[inline(always)]
    fn retire_batched(&self, old: Shared<'_, Node<T>>, guard: &Guard) {
        if old.is_null() {
            return;
        }
        // Writers are serialised: load and store, no read-modify-write.
        let len = self.retiring.len.load(Ordering::Relaxed);
        self.retiring.nodes[len].store(old.as_raw() as usize, Ordering::Relaxed);
        if len + 1 < RETIRE_BATCH {
            self.retiring.len.store(len + 1, Ordering::Relaxed);
            return;
        }
        self.defer_batch(guard);
    }

    /// Hands the table's full batch of removed nodes
    /// ([`Table::retire_batched`]) to the collector in one deferred call.
    #[inline(never)]
    fn defer_batch(&self, guard: &Guard) {
        self.retiring.len.store(0, Ordering::Relaxed);
        let nodes: Box<[usize; RETIRE_BATCH]> = Box::new(core::array::from_fn(|i| {
            self.retiring.nodes[i].load(Ordering::Relaxed)
        }));
        let pool = Arc::clone(&self.pool);
        // SAFETY: every address in `nodes` is a node this table's writers
        // unlinked from its slot (a store of null, or of an insert's or a
        // move's replacement, by the slot's only writer: the owner's writer
        // lock is held, and for a cache that is the lock of the slot's live
        // context, as a retired context's cache
        // is never written), so no other writer unlinked it too; each was
        // put in the batch once and the batch is emptied here, so each is
        // destroyed exactly once, and no new reader can reach it. A reader
        // that loaded one did so under a pin taken before its unlinking,
        // which happened before this call: it is pinned now or no longer
        // holds it, and the collector runs this only after every thread
        // pinned now has unpinned. `T: 'static`, so destroying the nodes
        // later (even after the table is gone) reads nothing freed, and
        // `T: Keyed` is `Send`, so destroying them on the thread that
        // collects is sound; the pool they go back to is kept alive by the
        // call's `Arc`.
        unsafe {
            guard.defer_unchecked(move || {
                for &node in nodes.iter() {
                    // The value only: the allocation goes back to the
                    // table's pool (or is freed there when it is full).
                    core::ptr::drop_in_place(node as *mut Node<T>);
                }
                pool.give(&nodes);
            });
        }
    }
}

/// Puts `new` in `slot` and returns the node it held. Writers are
/// serialised by the owner's writer lock (for a cache, the lock of the
/// slot's live context: a retired context's cache is never written), so
/// nothing else changes the slot between the load and the store: a load
/// and a Release store (readers' Acquire loads of the new node see it
/// whole) do what a swap would, without a locked read-modify-write (one of
/// several a page invalidation or an install used to pay, ~5 ns each on
/// x86). Two overlapping writers would both load and retire the same node
/// (a double free) and leak one new node.
fn replace<'g, T>(
    slot: &Atomic<Node<T>>,
    new: Shared<'g, Node<T>>,
    guard: &'g Guard,
) -> Shared<'g, Node<T>> {
    let old = slot.load(Ordering::Relaxed, guard);
    slot.store(new, Ordering::Release);
    old
}

/// Hands an unlinked node to the collector in a deferred call of its own
/// (an insert's replaced or evicted node, a directory removal), asking for
/// its line: the allocator's free reads and writes it. `T: 'static`: the
/// collector may destroy it after everything a borrow could point to is
/// gone.
fn retire<T: Send + 'static>(old: Shared<'_, T>, guard: &Guard) {
    if !old.is_null() {
        crate::prefetch::prefetch(old.as_raw());
        // SAFETY: `old` was just unlinked from its slot (a store of null or
        // of its replacement) by the slot's only writer (the owner's writer
        // lock is held: for a cache, the lock of the slot's live context,
        // as a retired context's cache is never written), so no other
        // writer loaded it to unlink it too, no new reader can reach it,
        // and it is retired exactly once; readers that loaded it before the
        // unlinking store are pinned, and the collector destroys it only
        // after all of them have unpinned. `T: 'static`, so destroying it
        // later (even after the table's owner is gone) reads nothing freed;
        // `T: Send`, so destroying it on another thread is sound.
        unsafe { guard.defer_destroy(old) };
    }
}

impl<T: Keyed> Drop for Table<T> {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: the table is being destroyed, which happens
        // only once its owner is unreachable (an owner unlinked from the
        // directory is itself destroyed through the collector, after every
        // reader unpinned; the top-level owners' public lookups,
        // `Service::lookup` and `Directory::get`/`get_or_create`, return
        // references that borrow the owner as well as the guard, review 50
        // R50-1), so no guard can still reach these nodes.
        let guard = unsafe { epoch::unprotected() };
        let batched = self.retiring.len.load(Ordering::Relaxed);
        for node in &self.retiring.nodes[..batched] {
            let node = node.load(Ordering::Relaxed) as *const Node<T>;
            // SAFETY: unlinked from its slot before (so in no slot now),
            // put in the batch once and never handed to the collector; no
            // guard can still reach it, as above.
            drop(unsafe { Shared::from(node).into_owned() });
        }
        let reusable = self.reusable.len.load(Ordering::Relaxed);
        for node in &self.reusable.nodes[..reusable] {
            let node = node.load(Ordering::Relaxed) as *mut MaybeUninit<Node<T>>;
            // SAFETY: an allocation taken from the pool and not reused:
            // made by `Box`, value dropped, owned by this table alone.
            drop(unsafe { Box::from_raw(node) });
        }
        for slot in self
            .buckets
            .iter()
            .chain(self.stash.iter())
            .flat_map(|b| b.slots.iter())
        {
            let shared = slot.swap(Shared::null(), Ordering::Relaxed, guard);
            if !shared.is_null() {
                // SAFETY: as above, exclusive access; each node is owned by
                // exactly one slot, taken out just now.
                drop(unsafe { shared.into_owned() });
            }
        }
    }
}

/// Which blocks of one size are present, for one owner (a context, a
/// block size, ...): what range invalidations and reverse-map queries use
/// to find exactly the entries that overlap a range.
///
/// - **Hashed level**: a bitmap per chunk of 64 blocks, in a hash map
///   keyed by (owner, chunk number). Setting, clearing or testing one
///   block is one probe of a map with one entry per 64 blocks, so its
///   cost does not grow with the number of blocks (at a million 4 KiB
///   blocks the map holds 16K words, a few hundred KiB that stay in the
///   CPU's caches).
/// - **Ordered level**: the chunk numbers in an ordered set, touched only
///   when a chunk appears or empties (once per 64 blocks at most). A
///   range covering more chunks than [`PROBE_CHUNKS`] is enumerated from
///   it, so a range visits only the chunks that exist inside it, however
///   long it is; a short range probes the hash level directly.
///
/// Block `base` of size `2^size_log2` lives in chunk
/// `base >> (size_log2 + 6)` at bit `(base >> size_log2) % 64`.
#[derive(Debug)]
pub(crate) struct BlockIndex<O> {
    bits: FlatMap<ChunkKey<O>, [u64; CHUNK_WORDS]>,
    ordered: alloc::collections::BTreeSet<(O, u64)>,
    len: usize,
    /// The last chunks that emptied, kept (with an empty bitmap) for a
    /// while: a block removed and soon inserted again (an invalidation and
    /// the fault that follows) then costs no ordered-set update. When a
    /// chunk leaves this ring and is still empty it is removed, so at most
    /// [`EMPTY_RING`] empty chunks are ever kept.
    emptied: [Option<(O, u64)>; EMPTY_RING],
    next_emptied: usize,
    /// The hashed level's slot of the chunk the last insert set a bit in
    /// ([`FlatMap::get_or_insert_at`]): the next insert of a block of that
    /// chunk (the next page of a run of faults) neither hashes nor probes.
    last_insert: usize,
}

/// A chunk of a [`BlockIndex`]: its owner and number. A chunk number is an
/// address shifted right by at least [`CHUNK_BLOCKS_LOG2`], below 2^58, so
/// `u64::MAX` marks a vacant slot. The clear stamp lives in what would be
/// the owner's padding (the key stays 16 bytes), so clearing an index is
/// O(1) ([`BlockIndex::clear`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ChunkKey<O> {
    owner: O,
    stamp: u32,
    chunk: u64,
}

impl<O: Copy> ChunkKey<O> {
    fn of((owner, chunk): (O, u64)) -> Self {
        ChunkKey {
            owner,
            stamp: 0,
            chunk,
        }
    }

    fn new(owner: O, chunk: u64) -> Self {
        ChunkKey::of((owner, chunk))
    }
}

impl<O: IndexOwner> FlatKey for ChunkKey<O> {
    fn vacant() -> Self {
        ChunkKey::new(O::default(), u64::MAX)
    }
    fn is_vacant(&self) -> bool {
        self.chunk == u64::MAX
    }
    fn flat_word(&self) -> u64 {
        // Chunk numbers are small: the owner goes in the high bits.
        self.chunk ^ (self.owner.word() << 40)
    }
    const STAMPED: bool = true;
    fn stamp(&self) -> u32 {
        self.stamp
    }
    fn with_stamp(self, stamp: u32) -> Self {
        ChunkKey { stamp, ..self }
    }
}

/// Who a [`BlockIndex`] chunk belongs to (a block size, a level, a
/// context's size class): a small value, folded into the chunk's hash.
pub(crate) trait IndexOwner: Copy + Ord + Default {
    /// The owner as one word (a hash input; equal owners, equal words).
    fn word(self) -> u64;
}

impl IndexOwner for u8 {
    fn word(self) -> u64 {
        u64::from(self)
    }
}

impl IndexOwner for i8 {
    fn word(self) -> u64 {
        u64::from(self as u8)
    }
}

impl<C: crate::rmap::ContextId> IndexOwner for (C, u8) {
    fn word(self) -> u64 {
        (self.0.word() << 8) | u64::from(self.1)
    }
}

/// Where a [`BlockIndex`] keeps its chunks, for prefetches by a thread
/// that does not hold its owner's lock: a [`crate::flat::SlotHint`] of its
/// hashed level, taken when the index is made (its slots never move
/// unless it grows, which its owners' sizing prevents; a stale hint only
/// wastes its prefetches). It reads nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct BlockHint<O> {
    bits: crate::flat::SlotHint<ChunkKey<O>>,
}

impl<O: IndexOwner> BlockHint<O> {
    /// [`BlockIndex::prefetch`] (the same two lines) through the hint.
    pub(crate) fn prefetch(&self, owner: O, base: u64, size_log2: u32) {
        if size_log2 + CHUNK_BLOCKS_LOG2 < 64 {
            self.bits.prefetch_run::<[u64; CHUNK_WORDS]>(&ChunkKey::new(
                owner,
                base >> chunk_shift(size_log2),
            ));
        }
    }
}

/// Empty chunks a [`BlockIndex`] keeps.
pub(crate) const EMPTY_RING: usize = 8;

/// log2 of the blocks per chunk: 64, one word of bitmap. Small chunks keep
/// a sparse index cheap (one block alone in its chunk costs one hash entry
/// of 24 bytes and one ordered-set key), while a dense one still needs one
/// chunk per 64 blocks (16K chunks for a million blocks).
const CHUNK_BLOCKS_LOG2: u32 = 6;
/// Words of one chunk's bitmap.
const CHUNK_WORDS: usize = 1 << (CHUNK_BLOCKS_LOG2 - 6);
/// Blocks per chunk: what one [`BlockIndex::drain_next_chunk`] returns
/// at most.
pub(crate) const CHUNK_BLOCKS: usize = 1 << CHUNK_BLOCKS_LOG2;
/// Bit index mask within a chunk.
const CHUNK_MASK: u64 = (1 << CHUNK_BLOCKS_LOG2) - 1;
/// A range spanning at most this many chunks probes the hash level for
/// each; a longer one enumerates the ordered level.
pub(crate) const PROBE_CHUNKS: u64 = 8;

impl<O: IndexOwner> Default for BlockIndex<O> {
    fn default() -> Self {
        BlockIndex {
            bits: FlatMap::new(),
            ordered: alloc::collections::BTreeSet::new(),
            len: 0,
            emptied: [None; EMPTY_RING],
            next_emptied: 0,
            last_insert: 0,
        }
    }
}

const fn chunk_shift(size_log2: u32) -> u32 {
    size_log2 + CHUNK_BLOCKS_LOG2
}

const fn bit_of(base: u64, size_log2: u32) -> (usize, u64) {
    let index = ((base >> size_log2) & CHUNK_MASK) as usize;
    (index / 64, 1 << (index % 64))
}

impl<O: IndexOwner> BlockIndex<O> {
    /// An index with room for `blocks` blocks without allocating in its
    /// hashed level: a block alone in its chunk takes one chunk, and up to
    /// [`EMPTY_RING`] empty chunks are kept besides. (The ordered level
    /// allocates one B-tree node per few chunks as they appear; its bytes
    /// are counted per block by the budget.)
    pub(crate) fn with_capacity(blocks: usize) -> Self {
        BlockIndex {
            bits: FlatMap::with_capacity(Self::chunks_for(blocks)),
            ..Self::default()
        }
    }

    /// Chunks the hashed level of an index of at most `blocks` blocks
    /// holds at worst.
    pub(crate) const fn chunks_for(blocks: usize) -> usize {
        blocks + EMPTY_RING
    }

    /// Bytes [`BlockIndex::with_capacity`]`(blocks)` allocates.
    pub(crate) const fn preallocated_bytes(blocks: usize) -> usize {
        FlatMap::<ChunkKey<O>, [u64; CHUNK_WORDS]>::slots_for(Self::chunks_for(blocks))
            * FlatMap::<ChunkKey<O>, [u64; CHUNK_WORDS]>::slot_bytes()
    }

    /// Times the hashed level allocated after the index was made (zero
    /// when it was sized for the blocks it holds).
    pub(crate) fn growths(&self) -> u32 {
        self.bits.growths()
    }

    /// Bytes of the hashed level's slots.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.bits.allocated_bytes()
    }

    /// Removes every block, keeping the hashed level's slots: O(1) (the
    /// hashed level's stamp moves on). Returns the old ordered level, for
    /// the caller to drop when it suits (a large one is many allocations).
    pub(crate) fn clear(&mut self) -> alloc::collections::BTreeSet<(O, u64)> {
        let ordered = core::mem::take(&mut self.ordered);
        self.bits.clear();
        self.len = 0;
        self.emptied = [None; EMPTY_RING];
        self.next_emptied = 0;
        ordered
    }

    /// Blocks present.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Marks block `base` (aligned to `2^size_log2`) present; whether it
    /// was absent. Inline: in a run of inserts (a fault's record) the
    /// chunk is the last one's, and the call's register saves cost more
    /// than the bit's update.
    #[inline]
    pub(crate) fn insert(&mut self, owner: O, base: u64, size_log2: u32) -> bool {
        let chunk = base >> chunk_shift(size_log2);
        let (word, bit) = bit_of(base, size_log2);
        // The last chunk's slot checked here; the rest out of line, where
        // the new chunk's ordered entry is made (a closure made here for
        // it cost its captures' stores on every insert).
        let slot = match self
            .bits
            .slot_holding(self.last_insert, &ChunkKey::new(owner, chunk))
        {
            Some(slot) => slot,
            None => self.insert_chunk(owner, chunk),
        };
        let words = self.bits.value_mut(slot);
        let added = words[word] & bit == 0;
        words[word] |= bit;
        self.len += usize::from(added);
        added
    }

    /// The hashed level's slot of chunk `chunk` of `owner`, made (empty,
    /// with its ordered entry) if absent; remembered for the next insert.
    #[cold]
    #[inline(never)]
    fn insert_chunk(&mut self, owner: O, chunk: u64) -> usize {
        let ordered = &mut self.ordered;
        let slot = self.bits.slot_or_place(ChunkKey::new(owner, chunk), || {
            ordered.insert((owner, chunk));
            [0; CHUNK_WORDS]
        });
        self.last_insert = slot;
        slot
    }

    /// Marks block `base` absent; whether it was present.
    pub(crate) fn remove(&mut self, owner: O, base: u64, size_log2: u32) -> bool {
        let chunk = base >> chunk_shift(size_log2);
        let (word, bit) = bit_of(base, size_log2);
        let Some(words) = self.bits.get_mut(&ChunkKey::new(owner, chunk)) else {
            return false;
        };
        let present = words[word] & bit != 0;
        words[word] &= !bit;
        if present {
            self.len -= 1;
            if words.iter().all(|w| *w == 0) {
                self.emptied((owner, chunk));
            }
        }
        present
    }

    /// Chunk `key` just emptied: keep it in the ring, and drop the chunk it
    /// displaces if that one is still empty.
    fn emptied(&mut self, key: (O, u64)) {
        let slot = self.next_emptied;
        self.next_emptied = (slot + 1) % EMPTY_RING;
        if let Some(old) = self.emptied[slot].replace(key) {
            if old != key
                && self
                    .bits
                    .get(&ChunkKey::of(old))
                    .is_some_and(|w| w.iter().all(|w| *w == 0))
            {
                self.bits.remove(&ChunkKey::of(old));
                self.ordered.remove(&old);
            }
        }
    }

    /// Where this index keeps its chunks now, for prefetches by a thread
    /// that does not hold the index's owner's lock (see [`BlockHint`]).
    pub(crate) fn hint(&self) -> BlockHint<O> {
        BlockHint {
            bits: self.bits.slot_hint(),
        }
    }

    /// Asks for the cache lines holding block `base`'s chunk, ahead of an
    /// `insert`, `remove`, `contains` or short `drain_overlapping` there.
    pub(crate) fn prefetch(&self, owner: O, base: u64, size_log2: u32) {
        if size_log2 + CHUNK_BLOCKS_LOG2 < 64 {
            self.bits
                .prefetch(&ChunkKey::new(owner, base >> chunk_shift(size_log2)));
        }
    }

    /// Whether block `base` is present (the model tests; the service
    /// tests and clears a bit in one probe with [`BlockIndex::remove`]).
    #[cfg(all(test, not(loom)))]
    pub(crate) fn contains(&self, owner: O, base: u64, size_log2: u32) -> bool {
        let (word, bit) = bit_of(base, size_log2);
        self.bits
            .get(&ChunkKey::new(owner, base >> chunk_shift(size_log2)))
            .is_some_and(|w| w[word] & bit != 0)
    }

    /// The bases of the present blocks of `owner` that overlap
    /// `[start, last]` (inclusive), in ascending order. Visits only chunks
    /// that exist in the range (or at most [`PROBE_CHUNKS`] probes) and
    /// the set bits inside them.
    pub(crate) fn overlapping(&self, owner: O, size_log2: u32, start: u64, last: u64) -> Vec<u64> {
        let mut out = Vec::new();
        let Some(span) = BlockSpan::new(size_log2, start, last) else {
            return out;
        };
        let mut visit = |chunk: u64, words: &[u64; CHUNK_WORDS]| {
            for (w, bits) in span.masked(chunk, words) {
                span.push_bases(chunk, w, bits, &mut |base| out.push(base));
            }
        };
        if span.probes() {
            for chunk in span.first_chunk..=span.last_chunk {
                if let Some(words) = self.bits.get(&ChunkKey::new(owner, chunk)) {
                    visit(chunk, words);
                }
            }
        } else {
            for &(_, chunk) in self
                .ordered
                .range((owner, span.first_chunk)..=(owner, span.last_chunk))
            {
                if let Some(words) = self.bits.get(&ChunkKey::new(owner, chunk)) {
                    visit(chunk, words);
                }
            }
        }
        out
    }
}

impl<O: IndexOwner> BlockIndex<O> {
    /// The present blocks of `owner` in the first chunk that holds any
    /// overlapping `[start, last]` (inclusive), without removing them: a
    /// caller can walk a range one chunk at a time, resuming from any
    /// block base with the index changed meanwhile. Visits only chunks
    /// that exist in the range (or at most [`PROBE_CHUNKS`] probes);
    /// allocates nothing.
    pub(crate) fn first_chunk_in(
        &self,
        owner: O,
        size_log2: u32,
        start: u64,
        last: u64,
    ) -> Option<ChunkBlocks> {
        if self.len == 0 {
            return None;
        }
        let span = BlockSpan::new(size_log2, start, last)?;
        let blocks_of = |chunk: u64| {
            let words = self.bits.get(&ChunkKey::new(owner, chunk))?;
            let mut found = ChunkBlocks {
                chunk_base: chunk << span.shift,
                size_log2,
                bits: [0; CHUNK_WORDS],
            };
            for (w, bits) in span.masked(chunk, words) {
                found.bits[w] = bits;
            }
            (found.len() > 0).then_some(found)
        };
        if span.probes() {
            (span.first_chunk..=span.last_chunk).find_map(blocks_of)
        } else {
            // An empty chunk kept in the ring is skipped (at most
            // `EMPTY_RING` of them).
            self.ordered
                .range((owner, span.first_chunk)..=(owner, span.last_chunk))
                .find_map(|&(_, chunk)| blocks_of(chunk))
        }
    }
}

impl<O: IndexOwner> BlockIndex<O> {
    /// Removes the present blocks of `owner` that overlap `[start, last]`
    /// and hands each base to `removed`, in ascending order: what
    /// [`BlockIndex::overlapping`] returns, without building a list.
    pub(crate) fn drain_overlapping(
        &mut self,
        owner: O,
        size_log2: u32,
        start: u64,
        last: u64,
        mut removed: impl FnMut(u64),
    ) {
        if self.len == 0 {
            return;
        }
        match BlockSpan::new(size_log2, start, last) {
            // Few chunks (a page's invalidation): probe each in place.
            Some(span) if span.probes() => {
                for chunk in span.first_chunk..=span.last_chunk {
                    let Some(words) = self.bits.get_mut(&ChunkKey::new(owner, chunk)) else {
                        continue;
                    };
                    let mut taken_any = false;
                    for (w, taken) in span.masked(chunk, words) {
                        words[w] &= !taken;
                        taken_any |= taken != 0;
                        self.len -= taken.count_ones() as usize;
                        span.push_bases(chunk, w, taken, &mut removed);
                    }
                    if taken_any && words.iter().all(|w| *w == 0) {
                        self.emptied((owner, chunk));
                    }
                }
            }
            Some(_) => {
                let mut cursor = ChunkCursor::new(owner, size_log2, start, last);
                while let Some(blocks) = self.drain_next_chunk(&mut cursor) {
                    blocks.bases().for_each(&mut removed);
                }
            }
            None => {}
        }
    }

    /// Removes the present blocks of the next chunk of `cursor`'s range
    /// that holds any and returns them; `None` once the range is done. A
    /// caller can thus work on a range one chunk (up to [`CHUNK_BLOCKS`]
    /// blocks) at a time, asking for the lines of a whole chunk's entries
    /// before it touches any, with the index free to change between
    /// chunks. Visits only chunks that exist in the range (or at most
    /// [`PROBE_CHUNKS`] probes); allocates nothing.
    pub(crate) fn drain_next_chunk(&mut self, cursor: &mut ChunkCursor<O>) -> Option<ChunkBlocks> {
        let span = cursor.span.as_ref()?;
        let owner = cursor.owner;
        loop {
            let next = cursor.next_chunk?;
            if self.len == 0 {
                cursor.next_chunk = None;
                return None;
            }
            let chunk = if span.probes() {
                next
            } else {
                if cursor.ahead.is_empty() {
                    // The next few chunks that exist, from one search of
                    // the ordered level (a search per chunk costs more
                    // than a sparse chunk's work). A chunk listed here may
                    // be dropped meanwhile (an emptied one leaving the
                    // ring): it is skipped below.
                    let upcoming = self
                        .ordered
                        .range((owner, next)..=(owner, span.last_chunk))
                        .take(LOOKAHEAD_CHUNKS)
                        .map(|&(_, chunk)| chunk);
                    cursor.ahead.refill(upcoming);
                }
                match cursor.ahead.pop() {
                    Some(chunk) => chunk,
                    None => {
                        cursor.next_chunk = None;
                        return None;
                    }
                }
            };
            cursor.next_chunk = (chunk < span.last_chunk).then(|| chunk + 1);
            let Some(words) = self.bits.get_mut(&ChunkKey::new(owner, chunk)) else {
                continue;
            };
            let mut taken = ChunkBlocks {
                chunk_base: chunk << span.shift,
                size_log2: span.size_log2,
                bits: [0; CHUNK_WORDS],
            };
            for (w, bits) in span.masked(chunk, words) {
                words[w] &= !bits;
                taken.bits[w] = bits;
            }
            let n = taken.len();
            if n == 0 {
                continue;
            }
            self.len -= n;
            if words.iter().all(|w| *w == 0) {
                self.emptied((owner, chunk));
            }
            return Some(taken);
        }
    }
}

/// The blocks [`BlockIndex::drain_next_chunk`] took from one chunk.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChunkBlocks {
    /// Base of the chunk's first block.
    chunk_base: u64,
    size_log2: u32,
    bits: [u64; CHUNK_WORDS],
}

impl ChunkBlocks {
    /// How many.
    pub(crate) fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The base of the chunk's first block.
    pub(crate) fn chunk_base(&self) -> u64 {
        self.chunk_base
    }

    /// Which of the chunk's [`CHUNK_BLOCKS`] blocks these are: bit `i` for
    /// the block at `chunk_base() + (i << size_log2)`.
    pub(crate) fn bitmap(&self) -> u64 {
        const _: () = assert!(CHUNK_WORDS == 1, "a chunk's bitmap is one word");
        self.bits[0]
    }

    /// The base of the chunk after this one; `None` at the top of the
    /// address space.
    pub(crate) fn next_chunk_base(&self) -> Option<u64> {
        self.chunk_base
            .checked_add(1 << (self.size_log2 + CHUNK_BLOCKS_LOG2))
    }

    /// Their bases, in ascending order.
    pub(crate) fn bases(self) -> impl Iterator<Item = u64> {
        let (chunk_base, size_log2) = (self.chunk_base, self.size_log2);
        self.bits
            .into_iter()
            .enumerate()
            .flat_map(move |(w, mut bits)| {
                core::iter::from_fn(move || {
                    (bits != 0).then(|| {
                        let bit = u64::from(bits.trailing_zeros());
                        bits &= bits - 1;
                        chunk_base | ((w as u64 * 64 + bit) << size_log2)
                    })
                })
            })
    }
}

/// Where a chunk-by-chunk drain of a [`BlockIndex`] range stands (see
/// [`BlockIndex::drain_next_chunk`]). The caller does not insert blocks
/// of the range between drains (a range removal only removes).
#[derive(Debug)]
pub(crate) struct ChunkCursor<O> {
    owner: O,
    /// `None` for an empty range or a block size too large for chunks.
    span: Option<BlockSpan>,
    /// The first chunk not visited yet; `None` once past the range.
    next_chunk: Option<u64>,
    /// Chunks of a long range known to exist, not visited yet.
    ahead: ChunksAhead,
}

/// Chunks a long range's cursor looks up at once.
const LOOKAHEAD_CHUNKS: usize = 16;

/// A few chunk numbers, in ascending order, taken from the front.
#[derive(Debug, Default)]
struct ChunksAhead {
    chunks: [u64; LOOKAHEAD_CHUNKS],
    next: usize,
    len: usize,
}

impl ChunksAhead {
    fn is_empty(&self) -> bool {
        self.next == self.len
    }

    fn refill(&mut self, chunks: impl Iterator<Item = u64>) {
        self.next = 0;
        self.len = 0;
        for (slot, chunk) in self.chunks.iter_mut().zip(chunks) {
            *slot = chunk;
            self.len += 1;
        }
    }

    fn pop(&mut self) -> Option<u64> {
        let chunk = self
            .chunks
            .get(self.next)
            .filter(|_| self.next < self.len)?;
        self.next += 1;
        Some(*chunk)
    }
}

impl<O: IndexOwner> ChunkCursor<O> {
    /// The blocks of `owner` of `2^size_log2` bytes overlapping
    /// `[start, last]` (inclusive).
    pub(crate) fn new(owner: O, size_log2: u32, start: u64, last: u64) -> Self {
        let span = BlockSpan::new(size_log2, start, last);
        let next_chunk = span.as_ref().map(|s| s.first_chunk);
        ChunkCursor {
            owner,
            span,
            next_chunk,
            ahead: ChunksAhead::default(),
        }
    }
}

/// The blocks of one size that overlap `[start, last]`, chunk by chunk:
/// what [`BlockIndex::overlapping`] and [`BlockIndex::drain_overlapping`]
/// share.
#[derive(Debug)]
struct BlockSpan {
    /// `start` rounded down to the block size.
    from: u64,
    last: u64,
    size_log2: u32,
    shift: u32,
    first_chunk: u64,
    last_chunk: u64,
}

impl BlockSpan {
    /// `None` for an empty range or a block size too large for chunks.
    fn new(size_log2: u32, start: u64, last: u64) -> Option<Self> {
        if start > last || size_log2 + CHUNK_BLOCKS_LOG2 >= 64 {
            return None;
        }
        let from = start & !((1u64 << size_log2) - 1);
        let shift = chunk_shift(size_log2);
        Some(BlockSpan {
            from,
            last,
            size_log2,
            shift,
            first_chunk: from >> shift,
            last_chunk: last >> shift,
        })
    }

    /// Few chunks: probe each; otherwise enumerate the ones that exist.
    fn probes(&self) -> bool {
        self.last_chunk - self.first_chunk < PROBE_CHUNKS
    }

    /// `chunk`'s words with only the bits inside the span kept, as (word
    /// index, bits), for the words the span reaches.
    fn masked(&self, chunk: u64, words: &[u64; CHUNK_WORDS]) -> impl Iterator<Item = (usize, u64)> {
        let lo = if chunk == self.first_chunk {
            ((self.from >> self.size_log2) & CHUNK_MASK) as usize
        } else {
            0
        };
        let hi = if chunk == self.last_chunk {
            ((self.last >> self.size_log2) & CHUNK_MASK) as usize
        } else {
            CHUNK_MASK as usize
        };
        let words = *words;
        (lo / 64..=hi / 64).map(move |w| {
            let mut bits = words[w];
            if w == lo / 64 {
                bits &= !0u64 << (lo % 64);
            }
            if w == hi / 64 && hi % 64 != 63 {
                bits &= (1u64 << (hi % 64 + 1)) - 1;
            }
            (w, bits)
        })
    }

    /// Hands the base of every block set in `bits` (word `w` of `chunk`)
    /// to `out`, in ascending order.
    fn push_bases(&self, chunk: u64, w: usize, mut bits: u64, out: &mut impl FnMut(u64)) {
        while bits != 0 {
            let bit = u64::from(bits.trailing_zeros());
            bits &= bits - 1;
            out((chunk << self.shift) | ((w as u64 * 64 + bit) << self.size_log2));
        }
    }
}

#[cfg(all(test, not(loom)))]
mod block_index_tests {
    extern crate std;
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    /// The clear stamp fits in the key's padding: a chunk's slot is the
    /// 24 bytes the budget counts.
    #[test]
    fn a_chunk_slot_is_24_bytes() {
        assert_eq!(
            core::mem::size_of::<(ChunkKey<u8>, [u64; CHUNK_WORDS])>(),
            24
        );
        assert_eq!(
            core::mem::size_of::<(ChunkKey<i8>, [u64; CHUNK_WORDS])>(),
            24
        );
        assert_eq!(
            core::mem::size_of::<(ChunkKey<(u16, u8)>, [u64; CHUNK_WORDS])>(),
            24
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Against a set of (owner, base): `overlapping` returns exactly
        /// the blocks of that owner overlapping the range, whether the
        /// range probes or enumerates chunks.
        #[test]
        fn matches_a_set(
            ops in prop::collection::vec((any::<bool>(), 0u8..2, 0u64..(1 << 16)), 1..200),
            queries in prop::collection::vec((0u8..2, 0u64..(1 << 30), 0u64..(1 << 31)), 1..20),
            size_log2 in prop::sample::select(vec![12u32, 14, 21]),
        ) {
            // Sized for the most blocks the ops can hold: never grows.
            let mut index = BlockIndex::with_capacity(200);
            let mut model = BTreeSet::new();
            for (add, owner, n) in ops {
                // Spread blocks over several chunks, some far apart.
                let base = ((n * 7919) % (1 << 16)) << size_log2;
                if !add && n % 16 == 0 {
                    // Cleared in O(1): nothing of before is found again.
                    let _ = index.clear();
                    model.clear();
                } else if add {
                    prop_assert_eq!(index.insert(owner, base, size_log2), model.insert((owner, base)));
                } else {
                    prop_assert_eq!(index.remove(owner, base, size_log2), model.remove(&(owner, base)));
                }
                prop_assert_eq!(index.contains(owner, base, size_log2), model.contains(&(owner, base)));
                prop_assert_eq!(index.len(), model.len());
                let empty = index.bits.iter().map(|(_, w)| w).filter(|w| w.iter().all(|w| *w == 0)).count();
                prop_assert!(empty <= EMPTY_RING, "{} empty chunks kept", empty);
                prop_assert_eq!(index.ordered.len(), index.bits.len());
            }
            for (owner, start, len) in queries {
                let start = start << (size_log2 - 12);
                let last = start.saturating_add(len << (size_log2 - 12));
                let size = 1u64 << size_log2;
                let want: Vec<u64> = model
                    .iter()
                    .filter(|(o, b)| *o == owner && *b <= last && b + size > start)
                    .map(|(_, b)| *b)
                    .collect();
                prop_assert_eq!(index.overlapping(owner, size_log2, start, last), want.clone());
                let mut drained = Vec::new();
                if len % 2 == 0 {
                    index.drain_overlapping(owner, size_log2, start, last, |b| drained.push(b));
                } else {
                    // Chunk by chunk: each batch is one chunk's blocks, in
                    // ascending order, and no batch is empty.
                    let mut cursor = ChunkCursor::new(owner, size_log2, start, last);
                    while let Some(blocks) = index.drain_next_chunk(&mut cursor) {
                        let bases: Vec<u64> = blocks.bases().collect();
                        let chunk = |b: u64| b >> (size_log2 + CHUNK_BLOCKS_LOG2);
                        prop_assert!(!bases.is_empty() && bases.len() <= CHUNK_BLOCKS);
                        prop_assert_eq!(bases.len(), blocks.len());
                        prop_assert!(bases.iter().all(|b| chunk(*b) == chunk(bases[0])));
                        prop_assert!(bases.windows(2).all(|p| p[0] < p[1]));
                        prop_assert!(drained.last().is_none_or(|l| *l < bases[0]));
                        drained.extend(bases);
                    }
                    prop_assert!(index.drain_next_chunk(&mut cursor).is_none());
                }
                prop_assert_eq!(&drained, &want);
                for base in &drained {
                    model.remove(&(owner, *base));
                }
                prop_assert_eq!(index.len(), model.len());
                prop_assert!(index.overlapping(owner, size_log2, start, last).is_empty());
            }
            prop_assert_eq!(index.growths(), 0);
        }
    }

    #[test]
    fn whole_address_space_and_top_blocks() {
        let mut index = BlockIndex::default();
        let top = !0xfff_u64;
        assert!(index.insert(0u8, top, 12));
        assert!(index.insert(0u8, 0, 12));
        assert_eq!(index.overlapping(0, 12, 0, u64::MAX), vec![0, top]);
        assert_eq!(index.overlapping(0, 12, top + 5, u64::MAX), vec![top]);
        assert_eq!(index.overlapping(1, 12, 0, u64::MAX), Vec::<u64>::new());
        assert!(index.remove(0, top, 12));
        assert!(!index.remove(0, top, 12));
        assert_eq!(index.len(), 1);
    }
}

#[cfg(all(test, not(loom)))]
mod hint_tests {
    use super::*;

    /// A block index made for `n` blocks keeps its chunks where its hint
    /// (taken when it is made, as the walk cache and the reverse map take
    /// theirs) says, through every fill up to `n` scattered blocks (one
    /// chunk each, the most chunks it may need) and every clear: lock-free
    /// prefetches through the hint ask for the lines its probes read.
    #[test]
    fn a_block_index_hint_outlives_fills_and_clears() {
        for blocks in [1usize, 100, 4096] {
            let mut index: BlockIndex<u8> = BlockIndex::with_capacity(blocks);
            let hint = index.hint();
            for round in 0..3u64 {
                for b in 0..blocks as u64 {
                    // 64 pages apart: a chunk per block.
                    assert!(index.insert(12, (round << 40) | (b << 18), 12));
                }
                assert_eq!(index.hint(), hint, "{blocks} blocks, round {round}");
                drop(index.clear());
            }
            assert_eq!(index.growths(), 0);
            assert_eq!(index.hint(), hint);
        }
        // A grown index names another array: the old hint is only stale.
        let mut index: BlockIndex<u8> = BlockIndex::with_capacity(1);
        let hint = index.hint();
        for b in 0..4096u64 {
            index.insert(12, b << 18, 12);
        }
        assert!(index.growths() > 0);
        assert_ne!(index.hint(), hint);
    }
}

#[cfg(all(test, not(loom)))]
mod pool_tests {
    extern crate std;
    use super::*;
    use std::vec::Vec as StdVec;

    #[derive(Debug, PartialEq, Eq)]
    pub(super) struct Item(pub(super) u64);

    impl Keyed for Item {
        type Key = u64;
        const HASH_IS_KEY: bool = true;
        fn key(&self) -> u64 {
            self.0
        }
    }

    fn insert(table: &Table<Item>, k: u64, guard: &Guard) -> usize {
        let (_, item) = table.insert(Item(k), hash2(k, 7), guard, |_| false);
        core::ptr::from_ref(item) as usize
    }

    fn collect(handle: &epoch::LocalHandle) {
        for _ in 0..8 {
            handle.pin().flush();
        }
    }

    /// Nodes removed by invalidations come back to the table's inserts once
    /// their grace period has ended, and no sooner: while a guard pinned
    /// before their removal lives, inserts get other allocations.
    #[test]
    fn removed_nodes_are_reused_after_their_grace_period() {
        let collector = epoch::Collector::new();
        let writer = collector.register();
        let reader = collector.register();
        // Room for 4 batches in the pool.
        let table = Table::<Item>::with_capacity(4 * POOL_SHARE * RETIRE_BATCH);
        let batch = RETIRE_BATCH as u64;
        let (first, second): (StdVec<usize>, StdVec<usize>) = {
            let guard = writer.pin();
            (
                (0..batch).map(|k| insert(&table, k, &guard)).collect(),
                (100..100 + batch)
                    .map(|k| insert(&table, k, &guard))
                    .collect(),
            )
        };
        {
            let guard = writer.pin();
            for k in 0..batch {
                assert!(table.remove_batched(k, hash2(k, 7), &guard));
            }
        }
        collect(&writer);
        // A reader pinned from here on holds back the grace period of the
        // second batch, removed now.
        let held = reader.pin();
        {
            let guard = writer.pin();
            for k in 100..100 + batch {
                assert!(table.remove_batched(k, hash2(k, 7), &guard));
            }
        }
        collect(&writer);
        let guard = writer.pin();
        for k in 1000..1000 + batch {
            let at = insert(&table, k, &guard);
            assert!(
                first.contains(&at),
                "an insert after the first batch's grace period reuses its nodes"
            );
        }
        let at = insert(&table, 2000, &guard);
        assert!(!first.contains(&at) && !second.contains(&at));
        drop(guard);
        drop(held);
        collect(&writer);
        let guard = writer.pin();
        let at = insert(&table, 3000, &guard);
        assert!(
            second.contains(&at),
            "once the reader unpinned, the second batch is reused"
        );
        assert_eq!(table.get(3000, hash2(3000, 7), &guard), Some(&Item(3000)));
        assert_eq!(table.get(1000, hash2(1000, 7), &guard), Some(&Item(1000)));
    }

    /// Nodes an insert replaced (the stale node of its key after a flush,
    /// here simply an older node of the same key) come back to the table's
    /// inserts like removed ones: once their grace period has ended, and
    /// no sooner (a reader pinned before the replacement may still hold
    /// them). Fails if a replaced node is freed at once (never reused) or
    /// goes to the pool as it is replaced.
    #[test]
    fn replaced_nodes_are_reused_after_their_grace_period() {
        let collector = epoch::Collector::new();
        let writer = collector.register();
        let reader = collector.register();
        let table = Table::<Item>::with_capacity(4 * POOL_SHARE * RETIRE_BATCH);
        let batch = RETIRE_BATCH as u64;
        let first: StdVec<usize> = {
            let guard = writer.pin();
            (0..batch).map(|k| insert(&table, k, &guard)).collect()
        };
        // A reader pinned before the replacements holds back their grace
        // period.
        let held = reader.pin();
        let second: StdVec<usize> = {
            let guard = writer.pin();
            (0..batch).map(|k| insert(&table, k, &guard)).collect()
        };
        assert!(second.iter().all(|at| !first.contains(at)));
        collect(&writer);
        assert!(table.pool.batches.lock().is_empty());
        {
            let guard = writer.pin();
            let at = insert(&table, 1000, &guard);
            assert!(
                !first.contains(&at),
                "a replaced node is not reused while a reader pinned before its replacement is"
            );
        }
        drop(held);
        collect(&writer);
        // (The allocator might hand a freed node out again too: the pool
        // is what shows the replaced nodes were kept.)
        assert_eq!(table.pool.batches.lock().len(), 1);
        let guard = writer.pin();
        let at = insert(&table, 2000, &guard);
        assert!(
            first.contains(&at),
            "once the reader unpinned, the replaced nodes are reused"
        );
        for k in (0..batch).chain([1000, 2000]) {
            assert_eq!(table.get(k, hash2(k, 7), &guard), Some(&Item(k)));
        }
    }

    /// A pool keeps at most its share of the table's places: the rest is
    /// freed, and a table too small for one batch keeps none.
    #[test]
    fn the_pool_is_bounded_by_the_table() {
        let pool = NodePool::<Item>::for_capacity(3 * POOL_SHARE * RETIRE_BATCH);
        assert_eq!(pool.batches.lock().capacity(), 3);
        let small = NodePool::<Item>::for_capacity(POOL_SHARE * RETIRE_BATCH - 1);
        assert_eq!(small.batches.lock().capacity(), 0);
        let huge = NodePool::<Item>::for_capacity(usize::MAX);
        assert_eq!(huge.batches.lock().capacity(), POOL_BATCHES);
        let batch = || -> [usize; RETIRE_BATCH] {
            core::array::from_fn(|_| {
                Box::into_raw(Box::new(MaybeUninit::<Node<Item>>::uninit())) as usize
            })
        };
        for _ in 0..5 {
            pool.give(&batch());
            small.give(&batch());
        }
        assert_eq!(pool.batches.lock().len(), 3);
        assert!(small.batches.lock().is_empty());
    }
}

#[cfg(all(test, not(loom)))]
mod stash_tests {
    extern crate std;
    use super::pool_tests::Item;
    use super::*;
    use std::vec::Vec as StdVec;

    /// A hash of `k` in bucket 0 of any table: the bucket bits (32 and up)
    /// are zero, the low half is `k` (distinct keys, distinct tags).
    fn same_bucket(k: u64) -> u64 {
        k & 0xffff_ffff
    }

    /// Inserts the first of `needed` that `table` misses, as an access
    /// re-run after each fault would, until none is missing; how many
    /// inserts that took, or `None` after `limit`.
    fn faults_until_held(table: &Table<Item>, needed: &[u64], limit: usize) -> Option<usize> {
        let collector = epoch::Collector::new();
        let handle = collector.register();
        let guard = handle.pin();
        for faults in 0..=limit {
            let missing = needed
                .iter()
                .find(|&&k| table.get(k, same_bucket(k), &guard).is_none());
            let Some(&k) = missing else {
                return Some(faults);
            };
            table.insert(Item(k), same_bucket(k), &guard, |_| false);
        }
        None
    }

    /// The key of the second-bucket hash in these tests' two-bucket tables.
    const SECOND: u64 = 0x5eed_0f5e_c011_d5ed;

    /// The first `count` keys from `from` (all of bucket 0) whose second
    /// bucket in `table` is `second` (`None`: bucket 0 too, or no second).
    fn keys_with_second(
        table: &Table<Item>,
        from: u64,
        second: Option<usize>,
        count: usize,
    ) -> StdVec<u64> {
        (from..)
            .filter(|&k| table.second_index(same_bucket(k)) == second)
            .take(count)
            .collect()
    }

    /// Review 38 R38-1: keys that all share one bucket, as many as the
    /// bucket and the stash have places, are held together after at most
    /// twice that many inserts, even when the table is full of other keys
    /// of that bucket first, and whichever order the access needs them in.
    /// (With the bucket alone, or with a rotating victim, such an access
    /// faulted for ever.) With second buckets too: for keys that share
    /// both their buckets (the worst case, which the keyed second hash
    /// keeps anyone from choosing) and for keys whose second buckets differ.
    #[test]
    fn a_bucket_and_its_stash_hold_any_working_set_that_fits() {
        let places = 4 * BUCKET;
        let w = places + BUCKET;
        for (second, share_both) in [(None, true), (Some(SECOND), true), (Some(SECOND), false)] {
            let table = Table::<Item>::with_stash(64, places, second);
            assert_eq!(table.capacity(), 64 + places);
            let pick = |from: u64, count: usize| {
                if share_both {
                    keys_with_second(&table, from, None, count)
                } else {
                    (from..from + count as u64).collect()
                }
            };
            let collector = epoch::Collector::new();
            let handle = collector.register();
            for k in pick(100_000, places + BUCKET) {
                let guard = handle.pin();
                table.insert(Item(k), same_bucket(k), &guard, |_| false);
            }
            for rotation in 0..w {
                let mut needed = pick(1, w);
                needed.rotate_left(rotation);
                let faults = faults_until_held(&table, &needed, 10 * w);
                assert!(
                    faults.is_some_and(|f| f <= 2 * w),
                    "{second:?}, rotation {rotation}: {faults:?} faults for {w} keys"
                );
            }
            // Reversed: the needed keys evict each other in another order.
            let mut needed = pick(50_000, w);
            needed.reverse();
            assert!(faults_until_held(&table, &needed, 10 * w).is_some_and(|f| f <= 2 * w));
        }
    }

    /// One more key than the places: never held together (the bound is
    /// exact, which is why `cache::LEAF_STASH` covers the worst access),
    /// also with second buckets when the keys share both of theirs.
    #[test]
    fn one_key_more_than_the_places_is_never_held() {
        let table = Table::<Item>::with_stash(4, BUCKET, None);
        let needed: StdVec<u64> = (1..=2 * BUCKET as u64 + 1).collect();
        assert_eq!(faults_until_held(&table, &needed, 1000), None);
        let table = Table::<Item>::with_stash(64, BUCKET, Some(SECOND));
        let needed = keys_with_second(&table, 1, None, 2 * BUCKET + 1);
        assert_eq!(faults_until_held(&table, &needed, 1000), None);
    }

    /// A key whose buckets are full makes room in its first by moving a
    /// key that lives there to its own second bucket: the same node (a
    /// reference taken before the move still is the linked one), found
    /// there by readers, by `links` and by its removal; nothing is evicted
    /// while a move can make room, and a key moves only from its first
    /// bucket (one already in its second stays).
    #[test]
    fn a_full_first_bucket_moves_a_key_to_its_second() {
        let table = Table::<Item>::with_stash(64, BUCKET, Some(SECOND));
        let collector = epoch::Collector::new();
        let handle = collector.register();
        let guard = handle.pin();
        // Four keys of bucket 0 whose second buckets differ from it: the
        // first of them moves.
        let movable: StdVec<u64> = (1..)
            .filter(|&k| table.second_index(same_bucket(k)).is_some())
            .take(BUCKET)
            .collect();
        let moved = movable[0];
        let moved_to = table.second_index(same_bucket(moved)).unwrap();
        for &k in &movable {
            assert_eq!(
                table.insert(Item(k), same_bucket(k), &guard, |_| false).0,
                Displaced::Nothing
            );
        }
        let before = table
            .get_in_bucket(moved, same_bucket(moved), &guard)
            .unwrap();
        // A key with no second bucket of its own: only a move makes room.
        let single = keys_with_second(&table, 1000, None, 1)[0];
        let (displaced, _) = table.insert(Item(single), same_bucket(single), &guard, |_| false);
        assert_eq!(displaced, Displaced::Nothing);
        assert!(table
            .get_in_bucket(single, same_bucket(single), &guard)
            .is_some());
        assert!(table
            .get_in_bucket(moved, same_bucket(moved), &guard)
            .is_none());
        let after = table
            .get_in_second(moved, same_bucket(moved), &guard)
            .unwrap();
        assert!(core::ptr::eq(before, after), "the node itself moved");
        assert!(table.links(before, same_bucket(moved), &guard));
        assert!(table.buckets[moved_to].slots.iter().any(|slot| {
            core::ptr::eq(
                slot.load(Ordering::Acquire, &guard).as_raw(),
                before as *const Item as *const Node<Item>,
            )
        }));
        for &k in &movable[1..] {
            assert!(table.get_in_bucket(k, same_bucket(k), &guard).is_some());
        }
        // Inserting it again replaces it where it is, in its second bucket.
        let (displaced, again) = table.insert(Item(moved), same_bucket(moved), &guard, |_| false);
        assert_eq!(displaced, Displaced::SameKey);
        assert!(core::ptr::eq(
            table
                .get_in_second(moved, same_bucket(moved), &guard)
                .unwrap(),
            again
        ));
        assert!(table.remove(moved, same_bucket(moved), &guard));
        assert!(table.get(moved, same_bucket(moved), &guard).is_none());
        assert!(!table.links(again, same_bucket(moved), &guard));
    }

    /// A reader finds a key in the stash, `links` sees it there, and its
    /// removal takes it out; a bucket with room takes a key before the
    /// stash does.
    #[test]
    fn stashed_keys_are_found_linked_and_removed() {
        let table = Table::<Item>::with_stash(8, BUCKET, None);
        let collector = epoch::Collector::new();
        let handle = collector.register();
        let guard = handle.pin();
        for k in 1..=BUCKET as u64 {
            table.insert(Item(k), same_bucket(k), &guard, |_| false);
            assert!(table.get_in_bucket(k, same_bucket(k), &guard).is_some());
        }
        let stashed = 99;
        let (displaced, item) =
            table.insert(Item(stashed), same_bucket(stashed), &guard, |_| false);
        assert_eq!(displaced, Displaced::Nothing);
        assert!(table
            .get_in_bucket(stashed, same_bucket(stashed), &guard)
            .is_none());
        assert_eq!(
            table.get_in_stash(stashed, same_bucket(stashed), &guard),
            Some(&Item(99))
        );
        assert_eq!(
            table.get(stashed, same_bucket(stashed), &guard),
            Some(&Item(99))
        );
        assert!(table.links(item, same_bucket(stashed), &guard));
        // The same key again replaces it where it is.
        let (displaced, _) = table.insert(Item(stashed), same_bucket(stashed), &guard, |_| false);
        assert_eq!(displaced, Displaced::SameKey);
        assert!(table.remove(stashed, same_bucket(stashed), &guard));
        assert!(table.get(stashed, same_bucket(stashed), &guard).is_none());
        // Full bucket and stash: the oldest (key 1) goes.
        for k in 200..200 + BUCKET as u64 {
            table.insert(Item(k), same_bucket(k), &guard, |_| false);
        }
        let (displaced, _) = table.insert(Item(300), same_bucket(300), &guard, |_| false);
        assert_eq!(displaced, Displaced::Evicted(1));
    }

    /// A node stamped with the "flush" it was inserted in, dead once a
    /// later one came (as the walk-result cache's leaves).
    struct Aged {
        key: u64,
        flush: u64,
        /// Counts the value's destructions, when a test asks.
        drops: Option<Arc<core::sync::atomic::AtomicUsize>>,
    }

    impl Drop for Aged {
        fn drop(&mut self) {
            if let Some(drops) = &self.drops {
                drops.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// The tests' xorshift stream.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    impl Keyed for Aged {
        type Key = u64;
        const HASH_IS_KEY: bool = true;
        fn key(&self) -> u64 {
            self.key
        }
    }

    /// What the walk-result cache's count of old leaf nodes rests on
    /// (`WalkCache::old_leaf_replaced`): an insert says [`Displaced::Dead`]
    /// exactly when it unlinks a dead node, however often it asked `dead`,
    /// and nothing else unlinks one (an eviction takes a live node).
    /// Inserts of keys in few buckets, with second buckets, a stash, moves
    /// and evictions, and now and then a "flush" that makes every linked
    /// node dead; the dead nodes linked are counted by a scan before and
    /// after each insert.
    #[test]
    fn an_insert_says_dead_exactly_when_it_unlinks_a_dead_node() {
        let collector = epoch::Collector::new();
        let handle = collector.register();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || xorshift(&mut state);
        let table = Table::<Aged>::with_stash(16, 2 * BUCKET, Some(SECOND));
        let mut flush = 0;
        let (mut same_key, mut other_key, mut evicted_dead) = (0, 0, 0);
        for _ in 0..20_000 {
            let guard = handle.pin();
            if next() % 64 == 0 {
                flush += 1;
                continue;
            }
            let dead_before = table.count_linked(&guard, |n| n.flush != flush);
            let key = next() % 96;
            let had_key = table.count_linked(&guard, |n| n.key == key) != 0;
            let dead = |n: &Aged| n.flush != flush;
            let node = Aged {
                key,
                flush,
                drops: None,
            };
            let (displaced, _) = table.insert(node, hash2(key, 7), &guard, dead);
            let dead_after = table.count_linked(&guard, |n| n.flush != flush);
            assert_eq!(
                dead_before - dead_after,
                usize::from(displaced == Displaced::Dead),
                "{displaced:?}"
            );
            match displaced {
                Displaced::Dead if had_key => same_key += 1,
                Displaced::Dead => other_key += 1,
                Displaced::Evicted(_) if dead_before != 0 => evicted_dead += 1,
                _ => {}
            }
        }
        // Every kind happened: a key's own dead node replaced, another
        // key's dead place taken, and evictions while some dead node was
        // linked elsewhere.
        assert!(
            same_key > 100 && other_key > 100 && evicted_dead > 0,
            "{same_key} {other_key} {evicted_dead}"
        );
    }

    /// Every node an insert unlinks (its key's node, live or dead, a dead
    /// place of its buckets or the stash, the dead place a move to a second
    /// bucket takes, an evicted node) is destroyed only after a grace
    /// period: while a reader pinned before them all is pinned, none is;
    /// once it unpins they are, and each value exactly once. Inserts as in
    /// `an_insert_says_dead_exactly_when_it_unlinks_a_dead_node` (moves,
    /// stash, evictions, "flushes"). Fails if any of those nodes is
    /// destroyed as it is unlinked (review 52: `move_to_second`'s displaced
    /// dead node freed at once passed every other test).
    #[test]
    fn no_node_an_insert_unlinks_is_destroyed_while_a_reader_is_pinned() {
        let collector = epoch::Collector::new();
        let writer = collector.register();
        let reader = collector.register();
        let drops = Arc::new(core::sync::atomic::AtomicUsize::new(0));
        let dropped = || drops.load(core::sync::atomic::Ordering::Relaxed);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || xorshift(&mut state);
        let table = Table::<Aged>::with_stash(16, 2 * BUCKET, Some(SECOND));
        let held = reader.pin();
        let (mut flush, mut inserts) = (0, 0);
        let (mut dead, mut same_key, mut evicted) = (0, 0, 0);
        for _ in 0..20_000 {
            let guard = writer.pin();
            if next() % 64 == 0 {
                flush += 1;
                continue;
            }
            let key = next() % 96;
            let node = Aged {
                key,
                flush,
                drops: Some(Arc::clone(&drops)),
            };
            inserts += 1;
            match table
                .insert(node, hash2(key, 7), &guard, |n| n.flush != flush)
                .0
            {
                Displaced::Dead => dead += 1,
                Displaced::SameKey => same_key += 1,
                Displaced::Evicted(_) => evicted += 1,
                Displaced::Nothing => {}
            }
            // Hands the writer's deferred calls to the collector, which
            // may run those no pinned thread can reach any more.
            guard.flush();
            assert_eq!(
                dropped(),
                0,
                "a node was destroyed while the reader was pinned"
            );
        }
        assert!(
            dead > 100 && same_key > 100 && evicted > 100,
            "{dead} {same_key} {evicted}"
        );
        drop(held);
        for _ in 0..8 {
            writer.pin().flush();
        }
        assert!(
            dropped() > 0,
            "unlinked nodes are destroyed once the reader unpinned"
        );
        drop(table);
        drop((writer, reader));
        drop(collector);
        assert_eq!(dropped(), inserts, "every value destroyed exactly once");
    }
}
