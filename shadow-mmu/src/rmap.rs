//! Reverse map: from L1 IPA ranges to the shadow entries built on them.
//!
//! When L0 changes its own mapping of L1 (a memslot removed, a range
//! write-protected), every shadow entry whose L1 IPA block overlaps the
//! range must go. Each shadow entry is one record in a slab; three hashed
//! indexes find records without any ordered search over them:
//!
//! - `by_shadow`: (context, L2 IPA base) -> record (one shadow entry per
//!   L2 IPA base of a context, whatever its size);
//! - `l1_heads`: (size class, L1 IPA block base) -> the records built on
//!   that block, as a doubly linked list through the slab (several shadow
//!   entries, of several contexts, may alias one L1 block);
//! - `BlockIndex`es of the L1 blocks per size class and of the L2 blocks
//!   per (context, size class): bitmaps of 512 blocks in a hash map, with an
//!   ordered set of chunks for long ranges.
//!
//! So inserting or removing one record costs a few hash probes whatever
//! the map holds, and a range removal costs O(chunks that exist in the
//! range + records found), never a scan of unrelated records nor a walk
//! over the range's length in pages.
//!
//! [`ReverseMap::remove_shadow_range`] (what a TLBI's shadow unmap calls)
//! takes a record out of `by_shadow`, the L2 block index and the counts at
//! once and leaves the record's L1-side unlink (list, L1 block index, slab
//! slot: lines only its `by_shadow` entry leads to) to the next inserts,
//! two each, or to the next L1-range removal, for at most 64 records;
//! queries that walk L1 lists report only records still in `by_shadow`
//! under the same slab id. A page TLBI thus reads only lines its range
//! determines. A longer range goes one L2 block-index chunk (64 blocks) at
//! a time, software-pipelined: the `by_shadow` lines of chunk k + 1 are
//! asked for while chunk k is detached, and chunk k's slab slots as it is
//! detached, so its misses overlap instead of chaining; the records beyond
//! the 64 that may wait go on the detached chain, a doubly linked list
//! through their own slab slots (stop 29: before, they were unlinked in
//! that pass, 227 of the 678 instructions a covered page cost). Their
//! L1-side unlink is left to the next inserts (two each, which also keeps a
//! full slab from refusing an insert while any waits) and to L1-range
//! removals, which unlink those they meet; queries skip them, as the
//! sweep does.
//!
//! A chunk the range covers whole is not taken record by record at all
//! (stop 31): its bits leave the L2 block index and the chunk is killed,
//! one entry of a small table ([`Kills`]) stamped with the insert count, so
//! a long range costs O(chunks) here. Its records stay in `by_shadow` and
//! on their lists, dead for every query (each asks the table while it is
//! not empty), until the sweep detaches them a few per insert, an insert
//! at the same key revives or replaces one, or an L1-range removal meets
//! one on a list.
//!
//! An L1-range removal (an L0 unmap) goes in batches that allocate
//! nothing ([`ReverseMap::remove_range_batch`]): up to a fixed number of
//! records into the caller's fixed-size array, then a cursor (size class,
//! L1 block base) from which the next batch goes on, with the map free to
//! change in between.
//!
//! [`ReverseMap::forget_context`] is O(1): it bumps the context's epoch.
//! Records stamped with an older epoch are dead: no query reports them, a
//! query that meets one removes it, an insert at the same key replaces it,
//! and every insert sweeps a few slab slots, so dead records are reclaimed
//! at least as fast as new ones arrive (the slab never holds much more
//! than its peak of live records). Epochs are 64-bit and never wrap, so a
//! context id reused after [`ReverseMap::forget_context`] can never
//! resurrect a record of its predecessor.

use alloc::vec::Vec;
use core::hash::Hash;

use arrayvec::ArrayVec;

use crate::compose::{BLOCK_1G, BLOCK_2M, PAGE_SIZE};
use crate::flat::{FlatKey, FlatMap};
use crate::prefetch::SHORT_RANGE_BLOCKS;
use crate::table::{BlockHint, BlockIndex, ChunkBlocks, ChunkCursor, CHUNK_BLOCKS};

/// The shadow block sizes, smallest first, as log2.
const SIZES_LOG2: [u32; 3] = [12, 21, 30];

/// Slab slots an insert sweeps for dead records (when any exist).
const SWEEP_STEP: usize = 4;

/// Detached records whose L1-side unlink may wait (see
/// [`ReverseMap::remove_shadow_range`]); preallocated, so detaching never
/// allocates.
pub(crate) const PENDING_UNLINKS: usize = 64;

/// Pending unlinks an insert completes (and as many of the detached
/// chain's, see [`ReverseMap::remove_shadow_range`]).
const UNLINKS_PER_INSERT: usize = 2;

/// The bit of a slab record's `l2` that marks it a member of the detached
/// chain (L2 block bases are 4 KiB aligned, so no attached record has it):
/// removed for every query, still on its L1 list, its `l2` then holding
/// its L1 block base with this bit and its size class in the low bits, and
/// its `epoch` its chain links (see [`Record::chained`]).
const CHAINED: u64 = 1 << 11;

/// Page removals that may wait for the map's next use (see
/// [`ReverseMap::remove_shadow_page_later`]); inline, so deferring never
/// allocates, and few, so the use that completes them waits for at most
/// this many (overlapped) pairs of misses.
pub(crate) const PENDING_PAGE_REMOVALS: usize = 16;

/// No record (list ends).
const NIL: u32 = u32::MAX;

/// Chunks whose records may be killed at once and wait for their detach
/// (see [`ReverseMap::remove_shadow_range`] and [`Kills`]): preallocated,
/// so killing never allocates; past them a range goes record by record.
/// 256 chunks are 16K records (a 64 MiB range of pages).
pub(crate) const KILLED_CHUNKS: usize = 256;

/// A whole chunk holding fewer records is removed record by record: its
/// kill would take a place of [`KILLED_CHUNKS`] for the work of a few.
const KILL_MIN_RECORDS: usize = 4;

/// log2 of the blocks of an L2 block-index chunk.
const CHUNK_LOG2: u32 = CHUNK_BLOCKS.trailing_zeros();

/// Records one [`ReverseMap::remove_range_batch`] removes at most (live
/// or dead): the most the reverse-map lock is held for, in records, by an
/// L0 unmap, and the length of the stack array it hands them over in.
/// One under loom, so that two records make two batches and the models
/// reach the window between them.
pub const L0_UNMAP_BATCH: usize = if cfg!(loom) { 1 } else { 64 };

const fn size_class(size: u64) -> Option<usize> {
    match size {
        PAGE_SIZE => Some(0),
        BLOCK_2M => Some(1),
        BLOCK_1G => Some(2),
        _ => None,
    }
}

/// One shadow entry: the context (shadow table) and the L2 IPA block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShadowRef<C> {
    /// The context whose shadow table holds the entry.
    pub context: C,
    /// L2 IPA of the block start.
    pub l2_ipa: u64,
    /// Block size: 4 KiB, 2 MiB or 1 GiB.
    pub size: u64,
}

/// A context identifier usable as a reverse-map key.
pub trait ContextId: Copy + Ord + Hash + Default {
    /// The smallest value.
    const MIN: Self;
    /// The largest value.
    const MAX: Self;
    /// The value as a word, for hashing (may drop high bits).
    fn word(self) -> u64;
}

macro_rules! context_id {
    ($($t:ty),*) => {$(
        impl ContextId for $t {
            const MIN: Self = <$t>::MIN;
            const MAX: Self = <$t>::MAX;
            fn word(self) -> u64 {
                self as u64
            }
        }
    )*};
}
context_id!(u8, u16, u32, u64, usize);

/// Why [`ReverseMap::insert`] refused an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmapError {
    /// The size is not 4 KiB, 2 MiB or 1 GiB.
    UnsupportedSize(u64),
    /// The L1 or L2 IPA base is not aligned to the size.
    Misaligned {
        /// L1 IPA given.
        l1_ipa: u64,
        /// L2 IPA given.
        l2_ipa: u64,
    },
    /// The slab is full: it holds the records it was made for
    /// ([`ReverseMap::with_capacity`]) and none is dead or detached to
    /// reclaim in a bounded step (or more than 2^32 - 1 records).
    Full,
}

/// One record's slab slot: the shadow entry and its neighbours on its L1
/// block (the block itself is in its `by_shadow` entry). A record on the
/// detached chain (`l2 & CHAINED != 0`) reuses `l2` and `epoch`, which no
/// one reads of it any more: see [`Record::chained`].
#[derive(Clone, Copy, Debug)]
struct Record<C> {
    l2: u64,
    /// The context's epoch when inserted: dead once the context's moves on.
    /// On the detached chain: the chain's links.
    epoch: u64,
    /// The map's insert count when inserted (`ReverseMap::inserts`): an
    /// L1-range removal passes the records inserted after it began.
    inserted: u64,
    context: C,
    /// Neighbours in the list of records on the same (class, L1 block),
    /// newest first: `next` is the record inserted before this one (NIL at
    /// the tail), `prev` the one inserted after it, except at the head,
    /// whose `prev` is the tail, so an L1-range removal can start from the
    /// oldest record (review 17 R17-2).
    prev: u32,
    next: u32,
}

impl<C> Record<C> {
    /// For a record on the detached chain: its size class and L1 block
    /// base (where its L1 list is), and its chain links (the record
    /// detached before it, NIL at the chain's end; the one detached after
    /// it, NIL at the head). `None` for a record still in `by_shadow`, or
    /// one on the `pending` list.
    fn chained(&self) -> Option<(u8, u64, u32, u32)> {
        (self.l2 & CHAINED != 0).then_some({
            (
                (self.l2 & 3) as u8,
                self.l2 & !(PAGE_SIZE - 1),
                self.epoch as u32,
                (self.epoch >> 32) as u32,
            )
        })
    }
}

/// A `by_shadow` key: a context's shadow entry at an L2 IPA block base.
/// Bases are aligned to at least 4 KiB, so `u64::MAX` marks a vacant slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ShadowKey<C> {
    l2: u64,
    context: C,
}

impl<C: ContextId> FlatKey for ShadowKey<C> {
    fn vacant() -> Self {
        ShadowKey {
            l2: u64::MAX,
            context: C::default(),
        }
    }
    fn is_vacant(&self) -> bool {
        self.l2 == u64::MAX
    }
    fn flat_word(&self) -> u64 {
        // L2 IPAs have 48 bits at most: the context goes above them.
        self.l2 ^ (self.context.word() << 48)
    }
}

/// An `l1_lists` key: an L1 IPA block base of a size class (aligned to at
/// least 4 KiB, so `u64::MAX` marks a vacant slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct L1Key {
    l1: u64,
    class: u8,
}

impl FlatKey for L1Key {
    fn vacant() -> Self {
        L1Key {
            l1: u64::MAX,
            class: 0,
        }
    }
    fn is_vacant(&self) -> bool {
        self.l1 == u64::MAX
    }
    fn flat_word(&self) -> u64 {
        // L1 IPAs have 52 bits at most: the class goes above them.
        self.l1 ^ (u64::from(self.class) << 56)
    }
}

/// What `by_shadow` keeps of a record besides its slab index: enough to
/// unlink a record that is alone on its L1 block without reading its slab
/// slot (one memory access fewer on the common path).
#[derive(Clone, Copy, Debug, Default)]
struct Meta {
    id: u32,
    class: u8,
    l1: u64,
    epoch: u64,
}

/// The records on one L1 block: the list head (the newest record) and its
/// length.
#[derive(Clone, Copy, Debug, Default)]
struct L1List {
    head: u32,
    len: u32,
}

/// Per context: its epoch and its live record count.
#[derive(Clone, Copy, Debug, Default)]
struct Incarnation {
    epoch: u64,
    live: usize,
    /// Bit k: records of size class k were inserted in this epoch (so a
    /// shadow-range removal probes only those classes).
    classes: u8,
    /// L2 block-index bits of this context held by records of its earlier
    /// epochs (dead, not swept yet): while there are any, a drained chunk's
    /// bits are not all live records, so a range kills no chunk of this
    /// context (it could not count the live ones without reading each).
    stale_bits: u32,
}

/// A `contexts` key: a context, and whether the slot holds one (every
/// value of `C` may name a context, so vacancy needs its own flag; the
/// flag fits the key's padding for the small ids the service uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ContextKey<C> {
    context: C,
    occupied: bool,
}

impl<C: ContextId> ContextKey<C> {
    fn of(context: C) -> Self {
        ContextKey {
            context,
            occupied: true,
        }
    }
}

impl<C: ContextId> FlatKey for ContextKey<C> {
    fn vacant() -> Self {
        ContextKey {
            context: C::default(),
            occupied: false,
        }
    }
    fn is_vacant(&self) -> bool {
        !self.occupied
    }
    fn flat_word(&self) -> u64 {
        self.context.word()
    }
}

/// A chunk of one context's L2 blocks of one size class: what a range
/// removal kills at once (see [`Kills`]). Chunk numbers are below 2^58 (an
/// address shifted right by at least 18), so `u64::MAX` marks a vacant
/// slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KillKey<C> {
    chunk: u64,
    context: C,
    class: u8,
}

impl<C: ContextId> KillKey<C> {
    fn of(context: C, class: u8, l2: u64) -> Self {
        KillKey {
            chunk: l2 >> (SIZES_LOG2[usize::from(class)] + CHUNK_LOG2),
            context,
            class,
        }
    }

    /// The base of the chunk's first block.
    fn chunk_base(&self) -> u64 {
        self.chunk << (SIZES_LOG2[usize::from(self.class)] + CHUNK_LOG2)
    }
}

impl<C: ContextId> FlatKey for KillKey<C> {
    fn vacant() -> Self {
        KillKey {
            chunk: u64::MAX,
            context: C::default(),
            class: 0,
        }
    }
    fn is_vacant(&self) -> bool {
        self.chunk == u64::MAX
    }
    fn flat_word(&self) -> u64 {
        // Chunk numbers have 46 bits at most (52-bit IPAs of pages): the
        // context and the class go above them.
        self.chunk ^ (self.context.word() << 46) ^ (u64::from(self.class) << 62)
    }
}

/// A killed chunk: every record of its (context, class) on it that is
/// still in `by_shadow` and was inserted by `stamp` (the map's insert
/// count when the chunk was last killed) is removed for every query.
#[derive(Clone, Copy, Debug, Default)]
struct Kill {
    stamp: u64,
    /// The blocks whose records may still be killed (a superset: a block
    /// stays set when its record was revived or replaced, until the detach
    /// visits it).
    unvisited: u64,
    /// Killed records still in `by_shadow` (at most [`CHUNK_BLOCKS`]).
    left: u32,
}

/// The killed chunks (stop 31): a long shadow-range removal takes a whole
/// L2 block-index chunk's bits at once and records the chunk here instead
/// of taking each record out of `by_shadow` (a probe and a removal each,
/// ~110 instructions a page before). The records stay in `by_shadow`, on
/// their L1 lists and in the slab, killed: out of the live counts and
/// every query's answers (each query that meets one in `by_shadow` checks
/// here, only while any chunk is killed), and detached later, a few per
/// insert by the sweep ([`ReverseMap::reap_killed`]) or when met: by an
/// insert at the same key (which revives it in place at the head of its
/// L1 list, or replaces it), an L1-range removal or the sweep of its
/// forgotten context.
///
/// Invariant: a record in `by_shadow` has its L2 block-index bit exactly
/// when no kill covers it; the killed records of a chunk are `left` many,
/// all at blocks set in `unvisited`.
#[derive(Debug)]
struct Kills<C> {
    /// Key -> position in `list`.
    index: FlatMap<KillKey<C>, u32>,
    /// At most [`KILLED_CHUNKS`]; the sweep detaches from the last.
    list: Vec<(KillKey<C>, Kill)>,
    /// Killed records (the sum of `left`).
    records: usize,
    /// Chunks `list` may hold: [`KILLED_CHUNKS`] (fewer in tests, to
    /// reach a full table, or none, to remove record by record).
    limit: usize,
}

impl<C: ContextId> Kills<C> {
    fn new() -> Self {
        Kills {
            index: FlatMap::with_capacity(KILLED_CHUNKS),
            list: Vec::with_capacity(KILLED_CHUNKS),
            records: 0,
            limit: KILLED_CHUNKS,
        }
    }

    /// Bytes [`Kills::new`] allocates.
    const fn preallocated_bytes() -> usize {
        FlatMap::<KillKey<C>, u32>::slots_for(KILLED_CHUNKS)
            * FlatMap::<KillKey<C>, u32>::slot_bytes()
            + KILLED_CHUNKS * core::mem::size_of::<(KillKey<C>, Kill)>()
    }

    #[inline]
    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The position of the kill covering record `id` (of `context`, `class`
    /// at L2 block `l2`, in `by_shadow`), if one does. Inline: while no
    /// chunk is killed (an insert's usual case) it is one comparison.
    #[inline]
    fn covering(
        &self,
        records: &[Option<Record<C>>],
        context: C,
        class: u8,
        l2: u64,
        id: u32,
    ) -> Option<usize> {
        if self.list.is_empty() {
            return None;
        }
        self.find_covering(records, context, class, l2, id)
    }

    fn find_covering(
        &self,
        records: &[Option<Record<C>>],
        context: C,
        class: u8,
        l2: u64,
        id: u32,
    ) -> Option<usize> {
        let pos = *self.index.get(&KillKey::of(context, class, l2))? as usize;
        let inserted = records.get(id as usize).copied().flatten()?.inserted;
        (inserted <= self.list[pos].1.stamp).then_some(pos)
    }

    /// Kills the `n` records of chunk `key` at the blocks of `bitmap` (all
    /// live, just taken from the L2 block index) as of insert count
    /// `stamp`; `false` (nothing done) when no place is left.
    fn kill(&mut self, key: KillKey<C>, stamp: u64, bitmap: u64, n: usize) -> bool {
        if let Some(&pos) = self.index.get(&key) {
            // Killed before: its records still killed are older than this
            // stamp too, so one entry covers both.
            let kill = &mut self.list[pos as usize].1;
            kill.stamp = stamp;
            kill.unvisited |= bitmap;
            kill.left += n as u32;
        } else if self.list.len() < self.limit.min(KILLED_CHUNKS) {
            self.index.insert(key, self.list.len() as u32);
            self.list.push((
                key,
                Kill {
                    stamp,
                    unvisited: bitmap,
                    left: n as u32,
                },
            ));
        } else {
            return false;
        }
        self.records += n;
        true
    }

    /// One killed record of the kill at `pos` left `by_shadow` (or lives
    /// again): the kill goes with its last one.
    fn release(&mut self, pos: usize) {
        self.records -= 1;
        let kill = &mut self.list[pos].1;
        kill.left -= 1;
        if kill.left == 0 {
            self.remove(pos);
        }
    }

    fn remove(&mut self, pos: usize) {
        let (key, _) = self.list.swap_remove(pos);
        self.index.remove(&key);
        if let Some(&(moved, _)) = self.list.get(pos) {
            self.index.insert(moved, pos as u32);
        }
    }
}

/// The reverse map. `C` identifies a context (a shadow table).
#[derive(Debug)]
pub struct ReverseMap<C> {
    records: Vec<Option<Record<C>>>,
    free: Vec<u32>,
    by_shadow: FlatMap<ShadowKey<C>, Meta>,
    l1_lists: FlatMap<L1Key, L1List>,
    l1_blocks: BlockIndex<u8>,
    l2_blocks: BlockIndex<(C, u8)>,
    /// Per context (never removed: the service's contexts are its slots'
    /// VMIDs, a fixed set).
    contexts: FlatMap<ContextKey<C>, Incarnation>,
    /// The `contexts` slot an insert last found its context in: a run of
    /// inserts of one context (a vCPU's faults) checks that slot and does
    /// not hash (see [`FlatMap::get_or_insert_at`]).
    last_context: usize,
    live: usize,
    sweep: usize,
    /// Records detached from `by_shadow` (removed for every query) but
    /// still on their L1 list: (slab id, class, L1 block), unlinked a few
    /// per insert, all before an L1-range removal. At most
    /// [`PENDING_UNLINKS`].
    pending: Vec<(u32, u8, u64)>,
    /// Records detached by long shadow-range removals beyond the
    /// [`PENDING_UNLINKS`] that `pending` holds, still on their L1 lists: a
    /// doubly linked chain through their slab slots (the newest at
    /// `chain_head`; see [`Record::chained`]), so detaching one writes its
    /// own slot and allocates nothing. Unlinked two per insert (so an
    /// insert into a full slab always frees a slot while any waits) and as
    /// an L1-range removal meets them on its lists; the sweep and the
    /// queries skip them.
    chain_head: u32,
    /// Records on the detached chain.
    chained: usize,
    /// Chunks whose records a range removal killed at once, to be detached
    /// later (see [`Kills`]).
    kills: Kills<C>,
    /// Pages of shadow entries removed from their shadow tables whose
    /// records are still to be removed (context, 4 KiB L2 IPA): done by
    /// the map's next method, first (see
    /// [`ReverseMap::remove_shadow_page_later`]).
    pending_pages: ArrayVec<(C, u64), PENDING_PAGE_REMOVALS>,
    /// Records the slab holds at most (see [`ReverseMap::with_capacity`]).
    capacity: usize,
    /// Inserts so far (a 64-bit count: it never wraps).
    inserts: u64,
    /// Records the L1-range removals have visited (see
    /// [`ReverseMap::l1_records_visited`]).
    l1_records_visited: u64,
}

/// The lines an [`ReverseMap::insert`] reads first, asked for by a thread
/// that does not hold the map's lock (a fault, long before its install):
/// `by_shadow`'s home slot of the shadow entry and `l1_lists`' of its L1
/// block, which in a large map are each a memory round trip. A hint only
/// (see `SlotHint`): taken when the map is made, it never reads the map.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RmapHint<C> {
    by_shadow: crate::flat::SlotHint<ShadowKey<C>>,
    l1_lists: crate::flat::SlotHint<L1Key>,
    l2_blocks: BlockHint<(C, u8)>,
}

impl<C: ContextId> RmapHint<C> {
    /// Asks for the line of `by_shadow`'s home slot of `context`'s entry
    /// at `l2_ipa` (a block base).
    pub(crate) fn prefetch_shadow(&self, context: C, l2_ipa: u64) {
        self.by_shadow.prefetch::<Meta>(&ShadowKey {
            l2: l2_ipa,
            context,
        });
    }

    /// Readies a [`ReverseMap::remove_shadow_range`] of a short range: asks
    /// for the `by_shadow` slot of every block in the range (up to
    /// [`SHORT_RANGE_BLOCKS`] of a class) and their L2 block-index chunks,
    /// all the removal reads before the L1-side unlinks, for each class of
    /// blocks of at most `2^largest_log2` bytes: the classes `context`
    /// holds are behind the map's lock, and its entries are never larger
    /// than the largest leaf its walk cache has held. Takes no lock (the
    /// lock is a locked instruction, and finding the context's classes a
    /// lookup, on an invalidation's way), reads nothing of the map.
    pub(crate) fn prefetch_shadow_range(
        &self,
        context: C,
        l2_ipa_start: u64,
        len: u64,
        largest_log2: u32,
    ) {
        if len == 0 {
            return;
        }
        let last = l2_ipa_start.saturating_add(len - 1);
        for (class, &size_log2) in SIZES_LOG2.iter().enumerate() {
            let mask = !((1u64 << size_log2) - 1);
            let (first, second) = (l2_ipa_start & mask, last & mask);
            let blocks = ((second - first) >> size_log2) + 1;
            if size_log2 > largest_log2 || blocks > SHORT_RANGE_BLOCKS {
                continue;
            }
            // The records' slots first: in a large map each is a memory
            // round trip (and a page walk).
            for n in 0..blocks {
                let l2 = first + (n << size_log2);
                self.by_shadow
                    .prefetch_run::<Meta>(&ShadowKey { l2, context });
            }
            // At most two chunks: the first block's and the last's (one
            // for a page).
            let owner = (context, class as u8);
            self.l2_blocks.prefetch(owner, first, size_log2);
            if second != first {
                self.l2_blocks.prefetch(owner, second, size_log2);
            }
        }
    }

    /// Asks for `l1_lists`' home slot of the 4 KiB L1 page at `l1_page`,
    /// the list an insert of a page's record reads: for a fault that knows
    /// its L1 page (from L1's leaf) before it knows the composed entry's
    /// size (L0's mapping may make it a block; the guess is then only a
    /// wasted prefetch).
    pub(crate) fn prefetch_l1_page(&self, l1_page: u64) {
        self.l1_lists.prefetch::<L1List>(&L1Key {
            l1: l1_page,
            class: 0,
        });
    }

    /// Asks for the lines an insert of `shadow` on the L1 block at `l1_ipa`
    /// reads first (no effect for an unsupported size).
    pub(crate) fn prefetch_insert(&self, l1_ipa: u64, shadow: &ShadowRef<C>) {
        let Some(class) = size_class(shadow.size) else {
            return;
        };
        self.by_shadow.prefetch::<Meta>(&ShadowKey {
            l2: shadow.l2_ipa,
            context: shadow.context,
        });
        self.l1_lists.prefetch::<L1List>(&L1Key {
            l1: l1_ipa,
            class: class as u8,
        });
    }
}

/// Where a batched L1-range removal stands (see
/// [`ReverseMap::remove_range_batch`]): the size class and the L1 block
/// base to go on from, and the range's last byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1RangeCursor {
    /// Index into `SIZES_LOG2`; past its end once the range is done.
    class: usize,
    /// The first L1 IPA of the class not passed yet.
    from: u64,
    start: u64,
    last: u64,
    /// The map's insert count when the first batch began: records inserted
    /// after it are passed, not removed (see `remove_l1_list`).
    began_after: Option<u64>,
}

impl L1RangeCursor {
    /// A removal of `[l1_ipa_start, l1_ipa_start + len)`, up to the top of
    /// the address space (done at once when `len` is 0).
    pub fn new(l1_ipa_start: u64, len: u64) -> Self {
        L1RangeCursor {
            class: if len == 0 { SIZES_LOG2.len() } else { 0 },
            from: l1_ipa_start,
            start: l1_ipa_start,
            last: l1_ipa_start.saturating_add(len.saturating_sub(1)),
            began_after: None,
        }
    }

    /// Whether the whole range was removed.
    pub fn is_done(&self) -> bool {
        self.class >= SIZES_LOG2.len()
    }

    fn class(&self) -> Option<u8> {
        (!self.is_done()).then_some(self.class as u8)
    }

    fn next_class(&mut self) {
        self.class += 1;
        self.from = self.start;
    }
}

/// Which chunks a shadow-range removal may kill at once (see
/// `ReverseMap::remove_shadow_blocks`): those whose every block overlaps
/// the range (the first block from `from`, the range's start rounded down
/// to the block size, the last one at most `last`), holding at least
/// [`KILL_MIN_RECORDS`] records, when `kill` (every bit taken is a live
/// record: the context holds no stale bits, so `taken` need not be counted
/// either).
struct WholeChunks {
    kill: bool,
    from: u64,
    last: u64,
    size_log2: u32,
}

impl WholeChunks {
    /// Whether every block of `blocks`' chunk overlaps the range.
    fn covers(&self, blocks: &ChunkBlocks) -> bool {
        let base = blocks.chunk_base();
        // The chunk's last block; no overflow: a chunk ends at 2^64 at most.
        let last_block = base + ((CHUNK_BLOCKS as u64 - 1) << self.size_log2);
        base >= self.from && last_block <= self.last
    }
}

/// Slab slots an insert into a full slab sweeps for a dead record before
/// it is refused.
const FULL_SWEEP: usize = 64;

impl<C: ContextId> Default for ReverseMap<C> {
    fn default() -> Self {
        ReverseMap::new()
    }
}

impl<C: ContextId> ReverseMap<C> {
    /// An empty map without a bound: its indexes allocate as it fills, by
    /// doubling (tests and tools; the service sizes its map from the
    /// budget with [`ReverseMap::with_capacity`]).
    pub fn new() -> Self {
        ReverseMap {
            records: Vec::new(),
            free: Vec::new(),
            by_shadow: FlatMap::new(),
            l1_lists: FlatMap::new(),
            l1_blocks: BlockIndex::default(),
            l2_blocks: BlockIndex::default(),
            contexts: FlatMap::new(),
            last_context: 0,
            live: 0,
            sweep: 0,
            pending: Vec::with_capacity(PENDING_UNLINKS),
            chain_head: NIL,
            chained: 0,
            kills: Kills::new(),
            pending_pages: ArrayVec::new(),
            capacity: usize::MAX,
            inserts: 0,
            l1_records_visited: 0,
        }
    }

    /// An empty map that holds up to `records` records (live, dead ones of
    /// forgotten contexts not swept yet, killed ones awaiting their detach,
    /// and detached ones awaiting their unlink) of up to `contexts`
    /// contexts, all allocated now: every index
    /// holds at most one entry per record (`by_shadow` and the L2 block
    /// index one per record still in it, the L1 lists and the L1 block
    /// index one per L1 block with a record), so none of them ever grows.
    /// An insert that would need a slab slot beyond `records` first
    /// reclaims dead, killed and detached records (a bounded step), else
    /// is refused with [`RmapError::Full`].
    pub fn with_capacity(records: usize, contexts: usize) -> Self {
        ReverseMap {
            records: Vec::with_capacity(records),
            free: Vec::with_capacity(records),
            by_shadow: FlatMap::with_capacity(records),
            l1_lists: FlatMap::with_capacity(records),
            l1_blocks: BlockIndex::with_capacity(records),
            l2_blocks: BlockIndex::with_capacity(records),
            // At least one: the service has a slot when sized for none.
            contexts: FlatMap::with_capacity(contexts.max(1)),
            last_context: 0,
            live: 0,
            sweep: 0,
            pending: Vec::with_capacity(PENDING_UNLINKS),
            chain_head: NIL,
            chained: 0,
            kills: Kills::new(),
            pending_pages: ArrayVec::new(),
            capacity: records,
            inserts: 0,
            l1_records_visited: 0,
        }
    }

    /// Bytes [`ReverseMap::with_capacity`]`(records, _)` allocates for its
    /// records (the slab, the free list and the hashed indexes; not the
    /// ordered levels of its block indexes, which allocate a B-tree node
    /// per few chunks as they appear, nor the per-context table).
    pub const fn preallocated_bytes(records: usize) -> usize {
        records * (core::mem::size_of::<Option<Record<C>>>() + core::mem::size_of::<u32>())
            + FlatMap::<ShadowKey<C>, Meta>::slots_for(records)
                * FlatMap::<ShadowKey<C>, Meta>::slot_bytes()
            + FlatMap::<L1Key, L1List>::slots_for(records) * FlatMap::<L1Key, L1List>::slot_bytes()
            + BlockIndex::<u8>::preallocated_bytes(records)
            + BlockIndex::<(C, u8)>::preallocated_bytes(records)
    }

    /// Bytes [`ReverseMap::with_capacity`]`(_, contexts)` allocates beside
    /// its records, at most: the per-context table (a [`FlatMap`] sized
    /// for `contexts`, at least one, which never grows: the service
    /// records at most its slots' VMIDs), the pending unlinks' vector
    /// (review 38 R38-3: not counted before) and the killed chunks' table.
    pub const fn fixed_bytes(contexts: usize) -> usize {
        let contexts = if contexts == 0 { 1 } else { contexts };
        FlatMap::<ContextKey<C>, Incarnation>::slots_for(contexts)
            * FlatMap::<ContextKey<C>, Incarnation>::slot_bytes()
            + PENDING_UNLINKS * core::mem::size_of::<(u32, u8, u64)>()
            + Kills::<C>::preallocated_bytes()
    }

    /// Times an index or the slab allocated after the map was made: zero
    /// (see [`ReverseMap::with_capacity`]).
    pub fn growths(&self) -> u32 {
        let slab = u32::from(self.records.capacity() > self.capacity)
            + u32::from(self.free.capacity() > self.capacity);
        slab + self.by_shadow.growths()
            + self.contexts.growths()
            + self.l1_lists.growths()
            + self.l1_blocks.growths()
            + self.l2_blocks.growths()
    }

    /// Bytes the slab, the free list and the hashed indexes hold now.
    pub fn allocated_bytes(&self) -> usize {
        self.records.capacity() * core::mem::size_of::<Option<Record<C>>>()
            + self.free.capacity() * core::mem::size_of::<u32>()
            + self.by_shadow.allocated_bytes()
            + self.l1_lists.allocated_bytes()
            + self.l1_blocks.allocated_bytes()
            + self.l2_blocks.allocated_bytes()
    }

    /// Records the map holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records the L1-range removals (`remove_range_batch`) have read so
    /// far: a batch reads its records plus, on each L1 block it walks, at
    /// most the one newer record that ends the walk, however many records
    /// were inserted on its blocks since the removal began.
    pub fn l1_records_visited(&self) -> u64 {
        self.l1_records_visited
    }

    /// Number of live shadow entries recorded.
    pub fn len(&mut self) -> usize {
        self.settle();
        self.live
    }

    /// Whether no live entry is recorded.
    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// Records held, dead ones (of forgotten contexts, not reclaimed yet,
    /// killed ones not detached yet, and removed ones whose unlink is
    /// pending) included: what the map's memory grows with.
    pub fn records_held(&mut self) -> usize {
        self.settle();
        self.held()
    }

    fn held(&self) -> usize {
        self.records.len() - self.free.len()
    }

    fn epoch(&self, context: C) -> u64 {
        self.incarnation(context).map_or(0, |c| c.epoch)
    }

    /// `context`'s incarnation, if it has one.
    fn incarnation(&self, context: C) -> Option<&Incarnation> {
        self.contexts
            .get_at(self.last_context, &ContextKey::of(context))
    }

    fn incarnation_mut(&mut self, context: C) -> Option<&mut Incarnation> {
        self.contexts.get_mut(&ContextKey::of(context))
    }

    /// `context`'s incarnation, made (epoch 0, nothing live) if it has
    /// none; the insert's way, through the slot it found the last one in.
    fn incarnation_or_new(&mut self, context: C) -> &mut Incarnation {
        self.contexts.get_or_insert_at(
            &mut self.last_context,
            ContextKey::of(context),
            Incarnation::default,
        )
    }

    fn shadow_ref(context: C, l2_ipa: u64, class: u8) -> ShadowRef<C> {
        ShadowRef {
            context,
            l2_ipa,
            size: 1 << SIZES_LOG2[usize::from(class)],
        }
    }

    /// Records that `shadow` (an L2 IPA block of `shadow.size`) translates
    /// through the L1 IPA block at `l1_ipa` of the same size. A previous
    /// record for the same (context, L2 IPA) is replaced: the shadow table
    /// holds one entry there.
    pub fn insert(&mut self, l1_ipa: u64, shadow: ShadowRef<C>) -> Result<(), RmapError> {
        let class = size_class(shadow.size).ok_or(RmapError::UnsupportedSize(shadow.size))?;
        if (l1_ipa | shadow.l2_ipa) & (shadow.size - 1) != 0 {
            return Err(RmapError::Misaligned {
                l1_ipa,
                l2_ipa: shadow.l2_ipa,
            });
        }
        self.settle();
        let key = ShadowKey {
            l2: shadow.l2_ipa,
            context: shadow.context,
        };
        let class8 = class as u8;
        // One probe of `by_shadow` for the lookup and, when the key is
        // absent (a new record: the usual hit fault's), the insert below.
        let vacancy = match self.by_shadow.get_mut_or_vacancy(&key) {
            Ok(meta) => {
                if meta.l1 == l1_ipa && meta.class == class8 {
                    // `epoch`, on the fields (`meta` holds `by_shadow`).
                    let epoch_now = self
                        .contexts
                        .get_at(self.last_context, &ContextKey::of(shadow.context))
                        .map_or(0, |c| c.epoch);
                    let id = meta.id;
                    // Looked up only while a chunk is killed.
                    let kill = self.kills.covering(
                        &self.records,
                        shadow.context,
                        class8,
                        shadow.l2_ipa,
                        id,
                    );
                    if meta.epoch == epoch_now && kill.is_none() {
                        // This very record is live already (a translate that
                        // hit re-installs the same leaf): nothing changes.
                        return Ok(());
                    }
                    // The same record, dead (its context's shadow was cleared
                    // or flushed since, or a range removal killed its chunk,
                    // and the same page faulted again): it is still in
                    // `by_shadow` and its L1 list, so at the head of that list
                    // it lives again as it is, as if removed and inserted anew
                    // (the head is where an insert goes, and its insert count
                    // becomes the newest). Elsewhere on the list it is
                    // replaced, below, so the list stays in insert order.
                    let list = L1Key {
                        l1: l1_ipa,
                        class: class8,
                    };
                    if self.l1_lists.get(&list).is_some_and(|l| l.head == id) {
                        meta.epoch = epoch_now;
                        if let Some(pos) = kill {
                            self.unkill(pos, shadow.context, shadow.l2_ipa, class8);
                        }
                        self.revive(id, shadow.context, class, epoch_now);
                        return Ok(());
                    }
                }
                self.remove_key(shadow.context, shadow.l2_ipa);
                None
            }
            Err(vacancy) => Some(vacancy),
        };
        // Both usually have nothing to do: checked here, without a call.
        if !self.pending.is_empty() {
            self.unlink_pending(UNLINKS_PER_INSERT);
        }
        if self.chain_head != NIL {
            // Frees a slot: so the full slab below never has a chained
            // record left to reclaim.
            self.unlink_chained(UNLINKS_PER_INSERT);
        }
        if self.has_dead() {
            self.sweep_some(SWEEP_STEP, false);
        }
        if self.free.is_empty() && self.records.len() >= self.capacity {
            // Full: reclaim before anything could grow (killed records
            // unlinked at once, so their slots come back now).
            self.unlink_pending(PENDING_UNLINKS);
            self.sweep_some(FULL_SWEEP, true);
        }
        let id = match self.free.last() {
            Some(&id) => id,
            None => u32::try_from(self.records.len())
                .ok()
                .filter(|id| *id != NIL && self.records.len() < self.capacity)
                .ok_or(RmapError::Full)?,
        };
        let incarnation = self.incarnation_or_new(shadow.context);
        incarnation.live += 1;
        incarnation.classes |= 1 << class;
        let epoch = incarnation.epoch;
        self.live += 1;
        let size_log2 = SIZES_LOG2[class];
        let list = self.l1_lists.get_or_insert_with(
            L1Key {
                l1: l1_ipa,
                class: class8,
            },
            || L1List { head: NIL, len: 0 },
        );
        let next = list.head;
        list.head = id;
        list.len += 1;
        // The head's `prev` is the tail (the oldest record): an L1-range
        // removal walks from there.
        let mut prev = id;
        if next == NIL {
            self.l1_blocks.insert(class8, l1_ipa, size_log2);
        } else if let Some(r) = self.records[next as usize].as_mut() {
            prev = r.prev;
            r.prev = id;
        }
        self.l2_blocks
            .insert((shadow.context, class8), shadow.l2_ipa, size_log2);
        // Absent: probed above (and removed if it was there); the
        // unlinks and the sweep since removed keys, never added one. Where
        // the probe ended, unless `by_shadow` changed since (a removal:
        // `insert_absent_at` checks).
        let meta = Meta {
            id,
            class: class8,
            l1: l1_ipa,
            epoch,
        };
        match vacancy {
            Some(vacancy) => self.by_shadow.insert_absent_at(vacancy, key, meta),
            None => self.by_shadow.insert_absent(key, meta),
        }
        self.inserts += 1;
        let record = Some(Record {
            l2: shadow.l2_ipa,
            epoch,
            inserted: self.inserts,
            context: shadow.context,
            prev,
            next,
        });
        if self.free.pop().is_some() {
            self.records[id as usize] = record;
        } else {
            self.records.push(record);
        }
        Ok(())
    }

    /// Makes dead record `id` of `context`, still in `by_shadow` and at
    /// the head of its L1 list, live in epoch `epoch` (its `by_shadow`
    /// entry already says so): an insert of the same record that moves
    /// nothing. Its L2 block bit, kept while it was dead, counts live again
    /// (a killed record's was given back by [`ReverseMap::unkill`]). It
    /// takes no slab slot, so it sweeps nothing (the sweep keeps pace with
    /// the slots inserts take).
    fn revive(&mut self, id: u32, context: C, class: usize, epoch: u64) {
        let incarnation = self.incarnation_or_new(context);
        incarnation.live += 1;
        incarnation.classes |= 1 << class;
        incarnation.stale_bits -= 1;
        self.live += 1;
        self.inserts += 1;
        if let Some(record) = self.records[id as usize].as_mut() {
            record.epoch = epoch;
            record.inserted = self.inserts;
        }
    }

    /// Takes killed record (`context`, `l2`, `class`), about to be revived,
    /// out of the kill at `pos` and gives it its L2 block bit back, counted
    /// as stale for [`ReverseMap::revive`] to count live (so the fault
    /// path's revive of a record dead by its epoch, a walk fault after a
    /// VMID flush, pays nothing for killed ones).
    #[cold]
    fn unkill(&mut self, pos: usize, context: C, l2: u64, class: u8) {
        self.kills.release(pos);
        self.l2_blocks
            .insert((context, class), l2, SIZES_LOG2[usize::from(class)]);
        self.incarnation_or_new(context).stale_bits += 1;
    }

    /// Unlinks the record of (`context`, `l2`) from every index; its class
    /// and whether it was live.
    fn remove_key(&mut self, context: C, l2: u64) -> Option<(u8, bool)> {
        let (meta, live) = self.detach_key(context, l2)?;
        // The three lines the unlink reads, all known from `meta`: asked
        // for together, their misses overlap.
        self.prefetch_removal(meta.id, meta.class, meta.l1);
        self.unlink(meta.id, meta.class, meta.l1);
        Some((meta.class, live))
    }

    /// Removes the record of (`context`, `l2`) from `by_shadow` and the L2
    /// block index and from the live counts: from then on no query reports
    /// it (queries reach records through `by_shadow`, or check it). Its
    /// slab slot and its place on its L1 list stay until
    /// [`ReverseMap::unlink`]. Returns its metadata and whether it was live.
    fn detach_key(&mut self, context: C, l2: u64) -> Option<(Meta, bool)> {
        let meta = self.by_shadow.remove(&ShadowKey { l2, context })?;
        let kill = self
            .kills
            .covering(&self.records, context, meta.class, l2, meta.id);
        let size_log2 = SIZES_LOG2[usize::from(meta.class)];
        // A killed record has no bit (its chunk's went at the kill).
        let had_bit = self.l2_blocks.remove((context, meta.class), l2, size_log2);
        let c = self.contexts.get_mut(&ContextKey::of(context));
        let live = kill.is_none() && meta.epoch == c.as_ref().map_or(0, |c| c.epoch);
        if let Some(pos) = kill {
            self.kills.release(pos);
        } else if live {
            self.live -= 1;
            if let Some(c) = c {
                c.live -= 1;
            }
        } else if let Some(c) = c.filter(|_| had_bit) {
            c.stale_bits = c.stale_bits.saturating_sub(1);
        }
        Some((meta, live))
    }

    /// Takes a detached record off its L1 list (and the L1 block off the
    /// block index when it was alone there) and frees its slab slot.
    fn unlink(&mut self, id: u32, class: u8, l1: u64) {
        let size_log2 = SIZES_LOG2[usize::from(class)];
        let list_key = L1Key { l1, class };
        let alone = self.l1_lists.get(&list_key).is_some_and(|l| l.len == 1);
        if alone {
            // The common case: no other record on this L1 block, so the
            // slab slot need not be read.
            self.l1_lists.remove(&list_key);
            self.l1_blocks.remove(class, l1, size_log2);
            self.records[id as usize] = None;
        } else if let Some(record) = self.records[id as usize].take() {
            if let Some(list) = self.l1_lists.get_mut(&list_key) {
                let head = list.head;
                list.len -= 1;
                if head == id {
                    list.head = record.next;
                    // The new head's `prev` is the tail.
                    if let Some(r) = self.records[record.next as usize].as_mut() {
                        r.prev = record.prev;
                    }
                } else {
                    if let Some(r) = self.records[record.prev as usize].as_mut() {
                        r.next = record.next;
                    }
                    // The tail's successor is the head, through its `prev`.
                    let after = if record.next == NIL {
                        head
                    } else {
                        record.next
                    };
                    if let Some(r) = self.records[after as usize].as_mut() {
                        r.prev = record.prev;
                    }
                }
            }
        }
        self.free.push(id);
    }

    /// Puts detached record `id` (of `class`, on L1 block `l1`; already out
    /// of `by_shadow`, the L2 block index and the live counts) at the head
    /// of the detached chain, its L1-side unlink left for later: it writes
    /// the record's own slab slot and the previous head's chain link (the
    /// record detached just before it, a line a range removal has just
    /// written).
    fn chain(&mut self, id: u32, class: u8, l1: u64) {
        let older = self.chain_head;
        if let Some(record) = self.records[id as usize].as_mut() {
            record.l2 = l1 | CHAINED | u64::from(class);
            record.epoch = (u64::from(NIL) << 32) | u64::from(older);
        } else {
            // Not reached: a detached record has its slab slot.
            return;
        }
        self.set_chain_newer(older, id);
        self.chain_head = id;
        self.chained += 1;
    }

    /// Chained record `id`'s link to the record detached after it (`newer`,
    /// NIL at the head); nothing for `id` NIL (the chain's end).
    fn set_chain_newer(&mut self, id: u32, newer: u32) {
        if let Some(r) = self.records.get_mut(id as usize).and_then(Option::as_mut) {
            r.epoch = (u64::from(newer) << 32) | (r.epoch & u64::from(u32::MAX));
        }
    }

    /// Takes chained record `id` off the detached chain and unlinks it
    /// from its L1 list (freeing its slot).
    fn unlink_chained_record(&mut self, id: u32) {
        let Some((class, l1, older, newer)) =
            self.records[id as usize].as_ref().and_then(Record::chained)
        else {
            return;
        };
        self.set_chain_newer(older, newer);
        match self
            .records
            .get_mut(newer as usize)
            .and_then(Option::as_mut)
        {
            Some(r) => r.epoch = (r.epoch & !u64::from(u32::MAX)) | u64::from(older),
            None => self.chain_head = older,
        }
        self.chained -= 1;
        self.unlink(id, class, l1);
    }

    /// Completes up to `max` of the detached chain's unlinks, the latest
    /// first.
    fn unlink_chained(&mut self, max: usize) {
        for _ in 0..max {
            if self.chain_head == NIL {
                return;
            }
            self.unlink_chained_record(self.chain_head);
        }
    }

    /// Completes up to `max` pending unlinks, the latest first (the lines
    /// of all of them asked for together first).
    fn unlink_pending(&mut self, max: usize) {
        let from = self.pending.len().saturating_sub(max);
        for &(id, class, l1) in &self.pending[from..] {
            self.prefetch_removal(id, class, l1);
        }
        while self.pending.len() > from {
            if let Some((id, class, l1)) = self.pending.pop() {
                self.unlink(id, class, l1);
            }
        }
    }

    /// Removes the record of (`context`, `l2`) for every query now and
    /// leaves its L1-side unlink for later, in `pending` when there is
    /// room, else on the detached chain (see
    /// [`ReverseMap::remove_shadow_range`]). The caller has just cleared
    /// its L2 block bit in `owner`'s class and read the context's `epoch`,
    /// so a page invalidation probes the block index once and looks the
    /// context up once for both. Returns whether a live record went.
    fn remove_indexed_later(&mut self, owner: (C, u8), l2: u64, epoch: u64) -> bool {
        let (context, class) = owner;
        let Some(meta) = self.by_shadow.remove(&ShadowKey { l2, context }) else {
            // Not reached while the indexes agree: leave the index as found.
            self.l2_blocks
                .insert(owner, l2, SIZES_LOG2[usize::from(class)]);
            return false;
        };
        if meta.class != class {
            // Not reached while the indexes agree (as in `detach_key`).
            let size_log2 = SIZES_LOG2[usize::from(meta.class)];
            self.l2_blocks.remove((context, meta.class), l2, size_log2);
        }
        // A record with its bit is never killed: live, or dead by its
        // epoch (its bit was stale).
        let live = meta.epoch == epoch;
        if let Some(c) = self.incarnation_mut(context) {
            if live {
                c.live -= 1;
            } else {
                c.stale_bits = c.stale_bits.saturating_sub(1);
            }
        }
        self.live -= usize::from(live);
        self.unlink_later(meta.id, meta.class, meta.l1);
        live
    }

    /// Leaves detached record `id`'s L1-side unlink for later: in `pending`
    /// when there is room, else on the detached chain (a burst of page
    /// TLBIs, L1 unmapping a region page by page: one slab slot written,
    /// not the three lines of an unlink).
    fn unlink_later(&mut self, id: u32, class: u8, l1: u64) {
        if self.pending.len() < PENDING_UNLINKS {
            self.pending.push((id, class, l1));
        } else {
            self.chain(id, class, l1);
        }
    }

    /// Whether the slab holds dead records (of forgotten contexts, or
    /// killed). Detached records awaiting their unlink (pending or chained)
    /// are not the sweep's: it skips them (a pending one looks live to it,
    /// its epoch current; a chained one is marked).
    #[inline]
    fn has_dead(&self) -> bool {
        self.held() - self.pending.len() - self.chained != self.live
    }

    /// Reclaims dead records: while any chunk is killed, detaches up to
    /// `slots` of its blocks' records ([`ReverseMap::reap_killed`],
    /// unlinked at once when `now`); and while records of forgotten
    /// contexts remain, sweeps `slots` slab slots for them. Both, when
    /// both kinds are dead: a context whose ranges keep killing chunks
    /// must not stop the sweep of a flushed context's records, whose stale
    /// bits keep that context's own ranges from killing (review 61 R61-1).
    /// Nothing when every record is live.
    fn sweep_some(&mut self, slots: usize, now: bool) {
        if !self.has_dead() {
            return;
        }
        if !self.kills.is_empty() {
            self.reap_killed(slots, now);
            // Dead records beyond the killed ones (`reap_killed` keeps
            // `kills.records` exact): records of forgotten contexts.
            if self.held() - self.pending.len() - self.chained - self.kills.records == self.live {
                return;
            }
        }
        for _ in 0..slots {
            if self.sweep >= self.records.len() {
                self.sweep = 0;
            }
            let slot = self.sweep;
            self.sweep += 1;
            if let Some(record) = self.records[slot] {
                // Only a record still in `by_shadow` (a detached one, whose
                // key may since belong to a newer record, is `pending`'s or
                // the chain's).
                if record.chained().is_some() {
                    continue;
                }
                let key = ShadowKey {
                    l2: record.l2,
                    context: record.context,
                };
                if record.epoch != self.epoch(record.context)
                    && self
                        .by_shadow
                        .get(&key)
                        .is_some_and(|m| m.id == slot as u32)
                {
                    self.remove_key(record.context, record.l2);
                }
            }
        }
    }

    /// Detaches killed records, visiting up to `visits` blocks of the
    /// killed chunks, the last killed first: each record there still
    /// killed (in `by_shadow` and inserted by the kill's stamp; a block
    /// whose record was revived or replaced since is passed) leaves
    /// `by_shadow` and waits for its L1-side unlink as a removed record
    /// does, or, `now` (a full slab), is unlinked at once, so its slot
    /// comes back. A chunk goes from the table with its last killed
    /// record; every chunk holds one at least and its blocks are at most
    /// [`CHUNK_BLOCKS`], so 64 visits always free a record.
    fn reap_killed(&mut self, mut visits: usize, now: bool) {
        while visits > 0 {
            let Some(pos) = self.kills.list.len().checked_sub(1) else {
                return;
            };
            let (key, mut kill) = self.kills.list[pos];
            let size_log2 = SIZES_LOG2[usize::from(key.class)];
            let chunk_base = key.chunk_base();
            let left = kill.left;
            while kill.unvisited != 0 && kill.left > 0 && visits > 0 {
                let block = u64::from(kill.unvisited.trailing_zeros());
                kill.unvisited &= kill.unvisited - 1;
                visits -= 1;
                let shadow_key = ShadowKey {
                    l2: chunk_base | (block << size_log2),
                    context: key.context,
                };
                let Some(meta) = self.by_shadow.get(&shadow_key).copied() else {
                    continue;
                };
                let inserted = self.records[meta.id as usize].map_or(u64::MAX, |r| r.inserted);
                if meta.class != key.class || inserted > kill.stamp {
                    continue;
                }
                self.by_shadow.remove(&shadow_key);
                kill.left -= 1;
                if now {
                    self.prefetch_removal(meta.id, meta.class, meta.l1);
                    self.unlink(meta.id, meta.class, meta.l1);
                } else {
                    self.unlink_later(meta.id, meta.class, meta.l1);
                }
            }
            self.kills.records -= (left - kill.left) as usize;
            if kill.left == 0 || kill.unvisited == 0 {
                debug_assert_eq!(kill.left, 0, "killed records outside their blocks");
                self.kills.remove(pos);
            } else {
                self.kills.list[pos].1 = kill;
            }
        }
    }

    /// The records on L1 block `base` of `class` that are still in
    /// `by_shadow` (not detached) and not killed: (context, L2 IPA, epoch).
    fn l1_list(&self, class: u8, base: u64) -> Vec<(C, u64, u64)> {
        let mut out = Vec::new();
        let mut id = self
            .l1_lists
            .get(&L1Key { l1: base, class })
            .map_or(NIL, |l| l.head);
        while id != NIL {
            match self.records[id as usize].as_ref() {
                Some(r) => {
                    let key = ShadowKey {
                        l2: r.l2,
                        context: r.context,
                    };
                    if r.chained().is_none()
                        && self.by_shadow.get(&key).is_some_and(|m| m.id == id)
                        && self
                            .kills
                            .covering(&self.records, r.context, class, r.l2, id)
                            .is_none()
                    {
                        out.push((r.context, r.l2, r.epoch));
                    }
                    id = r.next;
                }
                None => break,
            }
        }
        out
    }

    /// Removes every entry built on an L1 IPA overlapping
    /// `[l1_ipa_start, l1_ipa_start + len)` and hands each to `removed`
    /// (to unmap from its shadow table). Returns how many were removed.
    /// A range running past the top of the address space is taken up to it.
    /// Goes in batches of [`L0_UNMAP_BATCH`] records (see
    /// [`ReverseMap::remove_range_batch`]), allocating nothing.
    pub fn remove_range(
        &mut self,
        l1_ipa_start: u64,
        len: u64,
        mut removed: impl FnMut(ShadowRef<C>),
    ) -> usize {
        let mut cursor = L1RangeCursor::new(l1_ipa_start, len);
        let mut count = 0;
        loop {
            let mut batch = ArrayVec::<ShadowRef<C>, L0_UNMAP_BATCH>::new();
            let more = self.remove_range_batch(&mut cursor, &mut batch);
            count += batch.len();
            batch.into_iter().for_each(&mut removed);
            if !more {
                return count;
            }
        }
    }

    /// Removes the next records built on `cursor`'s L1 IPA range, at most
    /// as many as `out` has room for (live and dead ones both count), and
    /// appends the live ones to `out`; moves `cursor` past what it
    /// removed. Returns whether the range may hold more (call again with
    /// the same cursor and an emptied `out`; a full `out` makes no
    /// progress): `false` once it is done. Allocates nothing.
    ///
    /// The cursor is (size class, block base): the classes go in turn, the
    /// L1 blocks of a class in ascending order, found one block-index
    /// chunk at a time from the cursor's base (never a rescan from the
    /// range's start). A block's list is walked from its tail (oldest
    /// first), each record removed (with its whole L1-side unlink) as it is
    /// passed, up to the first record inserted since the removal began;
    /// when the batch fills inside a list, the cursor stays on that block,
    /// whose list then holds only what this call has not reached yet (and
    /// records inserted since, at its head), so the next batch starts at
    /// its tail again and re-reads nothing it removed.
    ///
    /// Between batches the map may change (the caller releases its lock):
    /// - no record that was here when the first batch began is missed. A
    ///   record leaves its L1 list only by being removed, its (class, L1
    ///   block) never changes, and its block's bit is set while its list is
    ///   non-empty; the cursor passes a block only after walking its list
    ///   to the end within one batch, and a chunk only after visiting every
    ///   block set in it within one batch.
    /// - records inserted after the first batch began are never removed
    ///   (they are passed, so faults that keep refilling one L1 block cannot
    ///   keep the walk from the older records behind them): the caller must
    ///   make that safe (`Service::l0_unmap`: they are the records of
    ///   translates that either composed with the new L0 map, or back out
    ///   because the L0 generation moved before this began).
    ///
    /// Each batch first completes the pending unlinks (at most
    /// [`PENDING_UNLINKS`]), so every record on a list is in `by_shadow`
    /// or on the detached chain, and each record the walk passes is
    /// removed (a chained one unlinked, counted against the room like any
    /// other): a removal of n records costs O(n + c + (n + c) / batch +
    /// chunks holding them) probes, c the chained and dead records on the
    /// range's lists. Those are records already out of every query, each
    /// unlinked once by whichever path meets it first, so c is work moved
    /// here from the TLBIs and context flushes that left them, never more
    /// than the same records would have cost live.
    pub fn remove_range_batch<const N: usize>(
        &mut self,
        cursor: &mut L1RangeCursor,
        out: &mut ArrayVec<ShadowRef<C>, N>,
    ) -> bool {
        if cursor.is_done() {
            return false;
        }
        // A full `out` would make no progress and return `true` for ever
        // (review 16 F4): the caller passes an empty batch each time.
        debug_assert!(
            out.remaining_capacity() > 0,
            "remove_range_batch needs room"
        );
        self.settle();
        self.unlink_pending(PENDING_UNLINKS);
        let began_after = *cursor.began_after.get_or_insert(self.inserts);
        let mut room = out.remaining_capacity();
        while let Some(class) = cursor.class() {
            let size_log2 = SIZES_LOG2[usize::from(class)];
            let Some(blocks) =
                self.l1_blocks
                    .first_chunk_in(class, size_log2, cursor.from, cursor.last)
            else {
                cursor.next_class();
                continue;
            };
            // A copy of the chunk's bits: this batch removes only blocks
            // it has passed, so the bases ahead stay valid.
            for base in blocks.bases() {
                if room == 0 || !self.remove_l1_list(class, base, began_after, &mut room, out) {
                    cursor.from = base;
                    return true;
                }
            }
            match blocks.next_chunk_base() {
                Some(next) if next <= cursor.last => cursor.from = next,
                _ => cursor.next_class(),
            }
        }
        false
    }

    /// Removes the records on L1 block `base` of `class` that were inserted
    /// by the time the removal began (insert count `began_after`), from the
    /// list's tail (oldest first), while `room` lasts (one per record),
    /// appending the live ones to `out`. Returns whether every such record
    /// is gone from the list.
    ///
    /// Records inserted since are left alone (their translates composed
    /// with the new L0 map, or back out: see the caller): removing them
    /// would let faults that keep adding records to one L1 block starve
    /// the older ones (review 16 F1), and walking past them would cost a
    /// batch every record added since (review 17 R17-2). Inserts go to the
    /// head, so the first newer record met ends the walk.
    fn remove_l1_list<const N: usize>(
        &mut self,
        class: u8,
        base: u64,
        began_after: u64,
        room: &mut usize,
        out: &mut ArrayVec<ShadowRef<C>, N>,
    ) -> bool {
        let list_key = L1Key { l1: base, class };
        let Some(head) = self.l1_lists.get(&list_key).map(|l| l.head) else {
            return true;
        };
        // From the tail (the head's `prev`), oldest first: records inserted
        // since the removal began are at the head end and never walked.
        let mut id = self.records[head as usize].map_or(NIL, |r| r.prev);
        while id != NIL {
            if *room == 0 {
                return false;
            }
            let Some(record) = self.records[id as usize] else {
                // Not reached: a listed record has its slab slot.
                return true;
            };
            // Every record read counts, the newer one that ends the walk
            // too: what bounds the lock hold (review 18 R18-1).
            self.l1_records_visited += 1;
            if record.inserted > began_after {
                return true;
            }
            // The next to visit is the record inserted after `id` (its
            // `prev`; none after the head). Read before the removal below,
            // which unlinks `id` alone (it rewrites its neighbours' links,
            // not their order) and frees `id`'s slot; when `id` was last on
            // the list it drops the list and the L1 block's bit. `head` is
            // still the list's head: nothing is inserted during a batch,
            // and the walk reaches the head last.
            let next = if id == head { NIL } else { record.prev };
            let key = ShadowKey {
                l2: record.l2,
                context: record.context,
            };
            // Every listed record is in `by_shadow` after `unlink_pending`,
            // or on the detached chain: a chained one is unlinked (it counts
            // against the room, as every record removed does, so a batch's
            // work stays bounded and the next batch does not meet it again);
            // any other detached one (not reached) is passed.
            if record.chained().is_some() {
                *room -= 1;
                self.unlink_chained_record(id);
            } else if self.by_shadow.get(&key).is_some_and(|m| m.id == id) {
                *room -= 1;
                if let Some((class, true)) = self.remove_key(record.context, record.l2) {
                    out.push(Self::shadow_ref(record.context, record.l2, class));
                }
            }
            id = next;
        }
        true
    }

    /// Forgets every entry of `context` whose L2 IPA block overlaps
    /// `[l2_ipa_start, l2_ipa_start + len)` (they were removed from its
    /// shadow table by an invalidation or eviction). Returns how many.
    ///
    /// Each record leaves `by_shadow`, the L2 block index and the counts at
    /// once, so no query reports it from here on; taking it off its L1
    /// list (lines only its `by_shadow` entry leads to: a second round of
    /// misses in a large map) waits, up to 64 records (`PENDING_UNLINKS`),
    /// for the next inserts or L1-range removal, so a page TLBI reads only
    /// lines whose addresses follow from its range. A range of several
    /// blocks goes chunk by chunk and puts the records beyond those 64 on
    /// the detached chain, whose unlinks wait the same way, as many as the
    /// slab holds (chaining takes no slot: see `remove_shadow_blocks`);
    /// a chunk it covers whole is killed at once instead ([`Kills`]).
    pub fn remove_shadow_range(&mut self, context: C, l2_ipa_start: u64, len: u64) -> usize {
        self.settle();
        self.remove_shadow_range_now(context, l2_ipa_start, len)
    }

    /// [`ReverseMap::remove_shadow_range`] of the 4 KiB page at `l2_ipa`,
    /// left for the map's next method (of any kind: each first completes
    /// the removals left to it, in order), so no caller can tell it from
    /// the removal done now; only its work moves. A page TLBI thus reads
    /// none of the reverse map's lines (in a large map, the `by_shadow`
    /// slot and the L2 block-index chunk: two random pages, each a page
    /// walk and a miss), and the fault that usually follows it, on the
    /// same page, reads those lines for its own insert anyway. At most
    /// [`PENDING_PAGE_REMOVALS`] wait; the next one completes them first.
    pub fn remove_shadow_page_later(&mut self, context: C, l2_ipa: u64) {
        self.remove_shadow_pages_later(context, l2_ipa, 1);
    }

    /// [`ReverseMap::remove_shadow_page_later`] of each of the `pages`
    /// 4 KiB pages from `l2_ipa`: a short range TLBI's, so it reads none
    /// of the map's lines either. The
    /// pages' removals together remove exactly the range's (each removes
    /// the records of every class whose block holds its page, so together
    /// every record whose block overlaps the range; a record found by an
    /// earlier page is not found again). When they do not fit beside those
    /// waiting, those are completed first, so at most
    /// [`PENDING_PAGE_REMOVALS`] ever wait. More pages than the queue
    /// holds are removed now, after those waiting (review 62 R62-1: they
    /// were cut to the queue's length, the rest's records kept live), and
    /// so are pages that run past the top of the address space, up to it
    /// (review 63 R63-3: their length or their addresses overflowed).
    #[inline]
    pub fn remove_shadow_pages_later(&mut self, context: C, l2_ipa: u64, pages: usize) {
        debug_assert_eq!(l2_ipa % PAGE_SIZE, 0, "a page's base");
        let len = (pages as u64).saturating_mul(PAGE_SIZE);
        if pages > PENDING_PAGE_REMOVALS || l2_ipa.checked_add(len).is_none() {
            self.remove_shadow_range(context, l2_ipa, len);
            return;
        }
        if self.pending_pages.len() + pages > PENDING_PAGE_REMOVALS {
            self.settle_pages();
        }
        for page in 0..pages {
            self.pending_pages
                .push((context, l2_ipa + page as u64 * PAGE_SIZE));
        }
    }

    /// Completes the page removals left by
    /// [`ReverseMap::remove_shadow_page_later`]: every method that reads or
    /// changes records calls this first.
    #[inline]
    fn settle(&mut self) {
        if !self.pending_pages.is_empty() {
            self.settle_pages();
        }
    }

    fn settle_pages(&mut self) {
        // One page (a page TLBI's, then its refault): no runs to build.
        if let [(context, l2)] = self.pending_pages[..] {
            self.pending_pages.clear();
            self.remove_shadow_range_now(context, l2, PAGE_SIZE);
            return;
        }
        // Consecutive pages of one context (a short range's, or page TLBIs
        // issued in order) go as one range removal: the same records (the
        // union of the pages' removals), in one chunk-by-chunk pass, which
        // costs less than a probe per page past two pages (a 16-page
        // range's records: ~210 instructions a page against ~520).
        let mut runs = ArrayVec::<(C, u64, u64), PENDING_PAGE_REMOVALS>::new();
        for (context, l2) in core::mem::take(&mut self.pending_pages) {
            match runs.last_mut() {
                Some((c, start, len)) if *c == context && *start + *len == l2 => {
                    *len += PAGE_SIZE;
                }
                _ => runs.push((context, l2, PAGE_SIZE)),
            }
        }
        // Every line the removals probe first, asked for together (for one
        // removal, the probe itself comes next; a run asks for its own
        // lines past its first page).
        if runs.len() > 1 {
            for &(context, l2, _) in &runs {
                let classes = self.incarnation(context).map_or(0, |c| c.classes);
                for (class, &size_log2) in SIZES_LOG2.iter().enumerate() {
                    if classes & (1 << class) != 0 {
                        let base = l2 & !((1u64 << size_log2) - 1);
                        self.l2_blocks
                            .prefetch((context, class as u8), base, size_log2);
                        self.by_shadow.prefetch(&ShadowKey { l2: base, context });
                    }
                }
            }
        }
        for (context, l2, len) in runs {
            self.remove_shadow_range_now(context, l2, len);
        }
    }

    fn remove_shadow_range_now(&mut self, context: C, l2_ipa_start: u64, len: u64) -> usize {
        if len == 0 {
            return 0;
        }
        let last = l2_ipa_start.saturating_add(len - 1);
        let mut count = 0;
        // Dead records (of earlier epochs) of other classes may remain: they
        // are invisible and swept later, so they need no visit here.
        let (classes, epoch) = self
            .incarnation(context)
            .map_or((0, 0), |c| (c.classes, c.epoch));
        for (class, &size_log2) in SIZES_LOG2.iter().enumerate() {
            if classes & (1 << class) == 0 {
                continue;
            }
            let owner = (context, class as u8);
            let mask = !((1u64 << size_log2) - 1);
            if last - l2_ipa_start < 1 << size_log2 {
                // At most two candidate blocks: try their keys directly.
                let (first, second) = (l2_ipa_start & mask, last & mask);
                let candidates = [Some(first), (second != first).then_some(second)];
                for base in candidates.into_iter().flatten() {
                    // The block index first: it stays in the CPU's caches,
                    // so absent classes cost no probe of the large map.
                    // One probe tests and clears the bit.
                    if self.l2_blocks.remove(owner, base, size_log2)
                        && self.remove_indexed_later(owner, base, epoch)
                    {
                        count += 1;
                    }
                }
                continue;
            }
            count += self.remove_shadow_blocks(owner, size_log2, l2_ipa_start, last);
        }
        count
    }

    /// The long-range part of [`ReverseMap::remove_shadow_range`]: removes
    /// every record of `owner` (context, class) whose L2 block overlaps
    /// `[start, last]`, one L2 block-index chunk (up to 64 records) at a
    /// time. Returns how many were live.
    ///
    /// A chunk the range covers whole (every block of it overlaps the
    /// range) is killed at once ([`Kills`], stop 31): its bits leave the
    /// block index and the chunk goes in the kill table, its records left
    /// in `by_shadow` for the sweep or the next insert at their keys to
    /// detach. That needs every bit taken to be a live record, so the
    /// context must hold no bits of records of its earlier epochs
    /// (`stale_bits`), and a place in the table, and the chunk at least
    /// [`KILL_MIN_RECORDS`] records; other chunks go record by record:
    ///
    /// Record by record, a removal is a chain of misses: the `by_shadow`
    /// slot names the slab slot and L1 list to unlink. Chunk by chunk the
    /// chain is software-pipelined: while the records of chunk k are
    /// detached (their `by_shadow` lines asked for one stage earlier), the
    /// slab slots are asked for, and the `by_shadow` lines of chunk k + 1
    /// before chunk k is chained; so each stage's misses overlap each
    /// other and the previous stage's work, and a long range costs about
    /// the memory system's throughput per line rather than its latency.
    /// Records are left for a later unlink while fewer than 64 wait (as a
    /// page's are); the rest go on the detached chain ([`Record::chained`]),
    /// which writes only their own slab slots: their L1-side unlink (L1
    /// list, L1 block index, slab slot; before stop 29 done in this pass)
    /// waits for later inserts and L1-range removals.
    fn remove_shadow_blocks(
        &mut self,
        owner: (C, u8),
        size_log2: u32,
        start: u64,
        last: u64,
    ) -> usize {
        let (context, class) = owner;
        let (epoch, stale_bits) = self
            .incarnation(context)
            .map_or((0, 0), |c| (c.epoch, c.stale_bits));
        let whole = WholeChunks {
            kill: stale_bits == 0,
            from: start & !((1u64 << size_log2) - 1),
            last,
            size_log2,
        };
        let mut cursor = ChunkCursor::new(owner, size_log2, start, last);
        let mut detached = [(0u32, 0u8, 0u64); CHUNK_BLOCKS];
        let (mut live, mut taken, mut killed) = (0, 0, 0);
        let mut count = 0;
        loop {
            // Chunk k + 1 taken (its `by_shadow` lines asked for), then
            // chunk k chained, then chunk k + 1 detached.
            let next =
                self.next_chunk_to_detach(owner, &mut cursor, &whole, &mut killed, &mut taken);
            for &(id, class, l1) in &detached[..count] {
                self.chain(id, class, l1);
            }
            let Some(blocks) = next else {
                break;
            };
            count = 0;
            for l2 in blocks.bases() {
                let Some(meta) = self.by_shadow.remove(&ShadowKey { l2, context }) else {
                    continue;
                };
                if meta.class != class {
                    // Not reached while the indexes agree (a base is in
                    // the L2 block index of the class its record has).
                    let size_log2 = SIZES_LOG2[usize::from(meta.class)];
                    self.l2_blocks.remove((context, meta.class), l2, size_log2);
                }
                // A record with its bit is never killed: live, or dead by
                // its epoch (a stale bit).
                live += usize::from(meta.epoch == epoch);
                if self.pending.len() < PENDING_UNLINKS {
                    self.pending.push((meta.id, meta.class, meta.l1));
                    continue;
                }
                // Only the slab slot: chaining writes it alone.
                if let Some(slot) = self.records.get(meta.id as usize) {
                    crate::prefetch::prefetch(slot);
                }
                detached[count] = (meta.id, meta.class, meta.l1);
                count += 1;
            }
        }
        // No stale bit when chunks may be killed (`taken` is not counted).
        let stale = if whole.kill {
            0
        } else {
            taken.saturating_sub(live)
        };
        live += killed;
        if live > 0 || stale > 0 {
            self.live -= live;
            if let Some(c) = self.incarnation_mut(context) {
                c.live -= live;
                c.stale_bits = c.stale_bits.saturating_sub(stale as u32);
            }
        }
        live
    }

    /// The next chunk of `cursor`'s range that [`remove_shadow_blocks`]
    /// detaches record by record, taken from the L2 block index, its
    /// `by_shadow` slots asked for, its records counted into `taken` (each
    /// bit is a record in `by_shadow`: the indexes agree). Chunks before it
    /// that `whole` lets it kill are killed (their bits taken, their
    /// records counted into `killed`); `None` once the range is done.
    ///
    /// [`remove_shadow_blocks`]: ReverseMap::remove_shadow_blocks
    #[inline(always)]
    fn next_chunk_to_detach(
        &mut self,
        (context, class): (C, u8),
        cursor: &mut ChunkCursor<(C, u8)>,
        whole: &WholeChunks,
        killed: &mut usize,
        taken: &mut usize,
    ) -> Option<ChunkBlocks> {
        loop {
            let blocks = self.l2_blocks.drain_next_chunk(cursor)?;
            if !whole.kill {
                *taken += blocks.bitmap().count_ones() as usize;
            } else if whole.covers(&blocks) {
                let n = blocks.bitmap().count_ones() as usize;
                if n >= KILL_MIN_RECORDS
                    && self.kills.kill(
                        KillKey::of(context, class, blocks.chunk_base()),
                        self.inserts,
                        blocks.bitmap(),
                        n,
                    )
                {
                    *killed += n;
                    continue;
                }
                *taken += n;
            }
            for l2 in blocks.bases() {
                self.by_shadow.prefetch(&ShadowKey { l2, context });
            }
            return Some(blocks);
        }
    }

    /// Asks for the lines unlinking record `id` (on L1 block `l1` of
    /// `class`) reads: its L1 list, its L1 block chunk and its slab slot.
    fn prefetch_removal(&self, id: u32, class: u8, l1: u64) {
        self.l1_lists.prefetch(&L1Key { l1, class });
        self.l1_blocks
            .prefetch(class, l1, SIZES_LOG2[usize::from(class)]);
        if let Some(slot) = self.records.get(id as usize) {
            crate::prefetch::prefetch(slot);
        }
    }

    /// Where the records of shadow entries and of L1 blocks are looked up
    /// first, for a fault that prefetches them before it takes the lock
    /// around this map (see [`RmapHint`]).
    pub(crate) fn hint(&self) -> RmapHint<C> {
        RmapHint {
            by_shadow: self.by_shadow.slot_hint(),
            l1_lists: self.l1_lists.slot_hint(),
            l2_blocks: self.l2_blocks.hint(),
        }
    }

    /// Whether `context` has a live record for its shadow entry at
    /// `l2_ipa` (the entry's base).
    pub(crate) fn has_live(&mut self, context: C, l2_ipa: u64) -> bool {
        self.settle();
        self.by_shadow
            .get(&ShadowKey {
                l2: l2_ipa,
                context,
            })
            .is_some_and(|meta| {
                meta.epoch == self.epoch(context)
                    && self
                        .kills
                        .covering(&self.records, context, meta.class, l2_ipa, meta.id)
                        .is_none()
            })
    }

    /// Forgets every entry of `context` (recycled or flushed: its shadow
    /// table was cleared): O(1), the records die with the context's epoch.
    /// Returns how many were live.
    pub fn forget_context(&mut self, context: C) -> usize {
        self.settle();
        let Some(c) = self.incarnation_mut(context) else {
            return 0;
        };
        let n = c.live;
        // Each live record has its L2 block bit, stale from now on.
        c.stale_bits = c
            .stale_bits
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        c.live = 0;
        c.classes = 0;
        c.epoch += 1;
        self.live -= n;
        n
    }

    /// The live entries built on an L1 IPA overlapping the range, without
    /// removing them.
    pub fn entries_in(&mut self, l1_ipa_start: u64, len: u64) -> Vec<(u64, ShadowRef<C>)> {
        self.settle();
        let mut out = Vec::new();
        if len == 0 {
            return out;
        }
        let last = l1_ipa_start.saturating_add(len - 1);
        for (class, &size_log2) in SIZES_LOG2.iter().enumerate() {
            let class = class as u8;
            for base in self
                .l1_blocks
                .overlapping(class, size_log2, l1_ipa_start, last)
            {
                for (context, l2, epoch) in self.l1_list(class, base) {
                    if epoch == self.epoch(context) {
                        out.push((base, Self::shadow_ref(context, l2, class)));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn r(context: u32, l2_ipa: u64, size: u64) -> ShadowRef<u32> {
        ShadowRef {
            context,
            l2_ipa,
            size,
        }
    }

    /// Each method, called right after a page removal was left for later,
    /// answers as if the removal had been done at once (the contract of
    /// `remove_shadow_page_later`), and more removals than fit the pending
    /// list all happen. Kills the mutants that drop the `settle` of
    /// `remove_range_batch`, `has_live` and `forget_context` or the 17th
    /// removal (the proptests practically never meet those; review 50
    /// R50-2, R50-3).
    #[test]
    fn every_method_sees_a_page_removal_left_for_later() {
        let fresh = || {
            let mut map = ReverseMap::new();
            map.insert(0x8000_0000, r(1, 0x5000, PAGE_SIZE)).unwrap();
            map.insert(0x8000_1000, r(1, 0x6000, PAGE_SIZE)).unwrap();
            map.remove_shadow_page_later(1, 0x5000);
            map
        };
        let mut map = fresh();
        let mut got = vec![];
        assert_eq!(map.remove_range(0x8000_0000, 0x1000, |s| got.push(s)), 0);
        assert!(got.is_empty(), "{got:?}");
        let mut map = fresh();
        assert!(!map.has_live(1, 0x5000));
        assert!(map.has_live(1, 0x6000));
        let mut map = fresh();
        assert_eq!(map.forget_context(1), 1);
        let mut map = fresh();
        assert_eq!(map.remove_shadow_range(1, 0x5000, 0x2000), 1);
        let mut map = fresh();
        assert_eq!(
            map.entries_in(0, u64::MAX),
            vec![(0x8000_1000, r(1, 0x6000, PAGE_SIZE))]
        );
        let mut map = fresh();
        assert_eq!(map.len(), 1);
        // More than fit wait: every one still goes, none twice.
        let mut map = ReverseMap::new();
        for p in 0..40u64 {
            map.insert(0x8000_0000 + (p << 12), r(1, p << 12, PAGE_SIZE))
                .unwrap();
        }
        for p in 0..40u64 {
            map.remove_shadow_page_later(1, p << 12);
        }
        assert_eq!(map.len(), 0);
        assert_eq!(map.records_held(), map.pending.len());
        assert!(map.entries_in(0, u64::MAX).is_empty());
    }

    /// More pages than the queue holds are all removed, not cut to the
    /// queue's length (review 62 R62-1: before, a debug build panicked
    /// and a release build kept the records of the pages past the 16th).
    #[test]
    fn pages_later_beyond_the_queue_are_all_removed() {
        let pages = PENDING_PAGE_REMOVALS + 4;
        let mut map = ReverseMap::new();
        for page in 0..=pages as u64 {
            map.insert(0x8000_0000 + (page << 12), r(1u32, page << 12, PAGE_SIZE))
                .unwrap();
        }
        map.remove_shadow_page_later(1, 0);
        map.remove_shadow_pages_later(1, 0, pages);
        for page in 0..pages as u64 {
            assert!(!map.has_live(1, page << 12), "page {page}");
        }
        assert!(map.has_live(1, (pages as u64) << 12));
        assert_eq!(map.len(), 1);
    }

    /// Bad page counts remove what they cover up to the top of the
    /// address space and never panic (review 63 R63-3: `pages * 4 KiB`,
    /// or the pages' addresses past the top, overflowed).
    #[test]
    fn pages_later_past_the_top_are_removed_without_overflow() {
        let top = !(PAGE_SIZE - 1);
        let mut map = ReverseMap::new();
        map.insert(0x8000_0000, r(1u32, top, PAGE_SIZE)).unwrap();
        map.insert(0x8000_1000, r(1u32, top - PAGE_SIZE, PAGE_SIZE))
            .unwrap();
        map.insert(0x8000_2000, r(2u32, 0x1000, PAGE_SIZE)).unwrap();
        map.remove_shadow_pages_later(1, top, 2);
        assert!(!map.has_live(1, top));
        assert!(map.has_live(1, top - PAGE_SIZE));
        // The top page is removed at once (its end is past the top), so
        // no run of waiting pages wraps from it to page 0.
        map.insert(0x8000_0000, r(1u32, top, PAGE_SIZE)).unwrap();
        map.remove_shadow_page_later(1, top);
        map.remove_shadow_page_later(1, 0);
        assert!(!map.has_live(1, top));
        assert!(map.has_live(1, top - PAGE_SIZE));
        map.remove_shadow_pages_later(2, 0, usize::MAX);
        assert!(!map.has_live(2, 0x1000));
        map.remove_shadow_pages_later(1, top - PAGE_SIZE, usize::MAX);
        assert!(map.is_empty());
    }

    /// Pages left for later go as one range removal only where they are
    /// consecutive pages of one context: a page of another context, or a
    /// page past a gap, starts a new run (each scenario fails when the
    /// runs ignore the context or the gap).
    #[test]
    fn waiting_pages_merge_only_into_runs_of_one_context() {
        for (waiting, gone, kept) in [
            (
                [(1u32, 0x5000u64), (2, 0x6000)],
                [(1u32, 0x5000u64), (2, 0x6000)],
                [(1u32, 0x6000u64), (2, 0x5000), (1, 0x7000)],
            ),
            (
                [(1, 0x5000), (1, 0x7000)],
                [(1, 0x5000), (1, 0x7000)],
                [(1, 0x6000), (2, 0x5000), (2, 0x6000)],
            ),
        ] {
            let mut map = ReverseMap::new();
            for (c, l2) in [
                (1u32, 0x5000u64),
                (1, 0x6000),
                (1, 0x7000),
                (2, 0x5000),
                (2, 0x6000),
            ] {
                map.insert(0x8000_0000 + (u64::from(c) << 20) + l2, r(c, l2, PAGE_SIZE))
                    .unwrap();
            }
            for (c, l2) in waiting {
                map.remove_shadow_page_later(c, l2);
            }
            for (c, l2) in gone {
                assert!(!map.has_live(c, l2), "{waiting:?}: ({c}, {l2:#x})");
            }
            for (c, l2) in kept {
                assert!(map.has_live(c, l2), "{waiting:?}: ({c}, {l2:#x})");
            }
            assert_eq!(map.len(), 3);
        }
    }

    #[test]
    fn finds_exactly_the_overlapping_entries_of_every_size() {
        let mut map = ReverseMap::new();
        map.insert(0x4000_0000, r(1, 0xc000_0000, BLOCK_1G))
            .unwrap();
        map.insert(0x8020_0000, r(1, 0x20_0000, BLOCK_2M)).unwrap();
        map.insert(0x8040_1000, r(2, 0x5000, PAGE_SIZE)).unwrap();
        map.insert(0x8040_1000, r(3, 0x5000, PAGE_SIZE)).unwrap(); // aliased L1 page
        map.insert(0x8040_2000, r(2, 0x6000, PAGE_SIZE)).unwrap();
        assert_eq!(map.len(), 5);
        // One page inside the 1 GiB block only.
        let mut got = vec![];
        assert_eq!(map.remove_range(0x7fff_f000, 0x1000, |s| got.push(s)), 1);
        assert_eq!(got, vec![r(1, 0xc000_0000, BLOCK_1G)]);
        // The last byte of the 2 MiB block and the first of the next page.
        got.clear();
        let n = map.remove_range(0x803f_ffff, 0x2001, |s| got.push(s));
        assert_eq!(n, 3);
        got.sort();
        assert_eq!(
            got,
            vec![
                r(1, 0x20_0000, BLOCK_2M),
                r(2, 0x5000, PAGE_SIZE),
                r(3, 0x5000, PAGE_SIZE)
            ]
        );
        assert_eq!(
            map.entries_in(0, u64::MAX),
            vec![(0x8040_2000, r(2, 0x6000, PAGE_SIZE))]
        );
        assert_eq!(
            map.remove_range(0x8040_3000, 0x1000, |_| panic!("nothing there")),
            0
        );
        assert_eq!(
            map.remove_range(0x8040_2000, 0, |_| panic!("empty range")),
            0
        );
        assert_eq!(map.len(), 1);
    }

    /// The slot sizes `budget::RMAP_RECORD_BYTES` is derived from.
    #[test]
    fn slot_sizes_are_those_the_budget_counts() {
        assert!(core::mem::size_of::<(ShadowKey<u16>, Meta)>() <= 40);
        assert!(core::mem::size_of::<(L1Key, L1List)>() <= 24);
        assert!(core::mem::size_of::<Option<Record<u16>>>() <= 48);
    }

    /// Shadow-range removals detach records at once and unlink them from
    /// their L1 lists later: meanwhile nothing reports them, their keys can
    /// be reused on other L1 blocks without an L0 unmap of the old block
    /// touching the new records, and the slab gets every slot back.
    #[test]
    fn detached_records_are_invisible_until_unlinked() {
        let mut map = ReverseMap::new();
        let old_l1 = 0x4000_0000;
        let new_l1 = 0x8000_0000;
        for i in 0..100u64 {
            map.insert(old_l1 + (i << 12), r(1, i << 12, PAGE_SIZE))
                .unwrap();
        }
        // Page by page (what a page TLBI does): the first 64 wait in
        // `pending`, the rest on the detached chain.
        for i in 0..100u64 {
            assert_eq!(map.remove_shadow_range(1, i << 12, 1 << 12), 1);
        }
        assert_eq!(map.len(), 0);
        assert_eq!(map.pending.len(), PENDING_UNLINKS, "the rest chained");
        assert!(map.entries_in(0, u64::MAX).is_empty());
        assert_eq!(map.remove_shadow_range(1, 0, 100 << 12), 0);
        // Ten keys come back on other L1 pages; each insert unlinks two.
        for i in 0..10u64 {
            map.insert(new_l1 + (i << 12), r(1, i << 12, PAGE_SIZE))
                .unwrap();
        }
        assert_eq!(map.pending.len(), PENDING_UNLINKS - 20);
        let want: Vec<_> = (0..10u64)
            .map(|i| (new_l1 + (i << 12), r(1, i << 12, PAGE_SIZE)))
            .collect();
        let mut all = map.entries_in(0, u64::MAX);
        all.sort();
        assert_eq!(all, want);
        // The sweep leaves detached records (and the newer owners of their
        // keys) alone: forget context 1, sweep with context 2's inserts.
        assert_eq!(map.forget_context(1), 10);
        for i in 0..50u64 {
            map.insert(0xc000_0000 + (i << 12), r(2, i << 12, PAGE_SIZE))
                .unwrap();
        }
        assert_eq!(map.len(), 50);
        assert!(map.pending.is_empty());
        // An L0 unmap of the old L1 pages finds nothing.
        assert_eq!(
            map.remove_range(old_l1, 100 << 12, |s| panic!("detached {s:?}")),
            0
        );
        assert_eq!(map.remove_range(0xc000_0000, 50 << 12, |_| {}), 50);
        assert_eq!(map.forget_context(2), 0);
        // Dead records of context 1 are swept by later inserts.
        for i in 0..200u64 {
            map.insert(i << 12, r(3, i << 12, PAGE_SIZE)).unwrap();
        }
        assert_eq!(map.records_held(), 200);
    }

    /// A long shadow range detaches its records beyond the 64 that may
    /// wait onto the detached chain (their L1-side unlink left for later):
    /// from then on no query reports them, an L0 unmap of their L1 blocks
    /// finds nothing and unlinks those it meets, inserts unlink two each,
    /// and a full slab takes back a chained record's slot rather than
    /// refusing an insert.
    #[test]
    fn a_long_range_chains_its_records_and_every_path_reclaims_them() {
        let mut map = ReverseMap::with_capacity(300, 4);
        // Record by record, as before stop 31 (no chunk killed): the chain
        // is what this test is about.
        map.kills.limit = 0;
        let old_l1 = 0x4000_0000;
        for i in 0..300u64 {
            map.insert(old_l1 + (i << 12), r(1, i << 12, PAGE_SIZE))
                .unwrap();
        }
        assert_eq!(map.remove_shadow_range(1, 0, 300 << 12), 300);
        assert_eq!(map.len(), 0);
        assert_eq!(map.pending.len(), PENDING_UNLINKS);
        assert_eq!(map.chained, 300 - PENDING_UNLINKS);
        assert_eq!(map.records_held(), 300, "nothing unlinked yet");
        assert!(map.entries_in(0, u64::MAX).is_empty());
        assert_eq!(map.remove_shadow_range(1, 0, 300 << 12), 0);
        // An L0 unmap of 100 of the old L1 pages reports nothing and
        // unlinks the chained records on them.
        let chained_on_them = (0..100u64)
            .filter(|&i| {
                !map.pending
                    .iter()
                    .any(|&(_, _, l1)| l1 == old_l1 + (i << 12))
            })
            .count();
        assert_eq!(
            map.remove_range(old_l1, 100 << 12, |s| panic!("detached {s:?}")),
            0
        );
        assert!(map.pending.is_empty(), "the L0 unmap unlinks every pending");
        assert_eq!(map.chained, 300 - PENDING_UNLINKS - chained_on_them);
        // The slab is full (no slot ever freed by an insert); its keys come
        // back on new L1 pages: each insert reclaims slots, none refused,
        // nothing grows.
        let new_l1 = 0x8000_0000;
        for i in 0..300u64 {
            map.insert(new_l1 + (i << 12), r(1, i << 12, PAGE_SIZE))
                .unwrap();
        }
        assert_eq!(map.growths(), 0);
        assert_eq!(map.chained, 0, "inserts unlinked the whole chain");
        assert_eq!(map.records_held(), 300);
        let mut all = map.entries_in(0, u64::MAX);
        all.sort();
        let want: Vec<_> = (0..300u64)
            .map(|i| (new_l1 + (i << 12), r(1, i << 12, PAGE_SIZE)))
            .collect();
        assert_eq!(all, want);
        assert_eq!(
            map.remove_range(old_l1, 300 << 12, |s| panic!("old {s:?}")),
            0
        );
        assert_eq!(map.remove_range(new_l1, 300 << 12, |_| {}), 300);
        assert!(map.is_empty());
    }

    /// A full slab whose only reclaimable records are chained: the insert
    /// that finds no free slot unlinks one at once (not two inserts later),
    /// and the sweep, which skips chained records, never touches the
    /// records that took their keys, also in a forgotten context.
    #[test]
    fn a_full_slab_of_chained_records_takes_an_insert() {
        let mut map = ReverseMap::with_capacity(200, 4);
        map.kills.limit = 0;
        for i in 0..200u64 {
            map.insert(0x4000_0000 + (i << 12), r(1, i << 12, PAGE_SIZE))
                .unwrap();
        }
        assert_eq!(map.remove_shadow_range(1, 0, 200 << 12), 200);
        // The same keys on other L1 pages, in a context forgotten at once
        // (dead records for the sweep beside the chained ones).
        for i in 0..100u64 {
            map.insert(0x8000_0000 + (i << 12), r(1, i << 12, PAGE_SIZE))
                .unwrap();
        }
        assert_eq!(map.forget_context(1), 100);
        for i in 0..200u64 {
            map.insert(0xc000_0000 + (i << 12), r(2, i << 12, PAGE_SIZE))
                .unwrap();
        }
        assert_eq!(map.growths(), 0);
        assert_eq!(map.len(), 200);
        let mut all = map.entries_in(0, u64::MAX);
        all.sort();
        let want: Vec<_> = (0..200u64)
            .map(|i| (0xc000_0000 + (i << 12), r(2, i << 12, PAGE_SIZE)))
            .collect();
        assert_eq!(all, want);
        assert_eq!(map.records_held(), 200, "every old record reclaimed");
    }

    /// The sweep meets a detached record of a forgotten context whose key
    /// a newer record holds now: it must leave the newer record alone (it
    /// checks the slab id, not just the key).
    #[test]
    fn the_sweep_never_takes_a_detached_records_key_from_its_successor() {
        let mut map = ReverseMap::new();
        for i in 0..=10u64 {
            map.insert(0x4000_0000 + (i << 12), r(1, i << 12, PAGE_SIZE))
                .unwrap();
        }
        for i in 0..10u64 {
            assert_eq!(map.remove_shadow_range(1, i << 12, 1 << 12), 1);
        }
        assert_eq!(map.pending.len(), 10);
        assert_eq!(map.forget_context(1), 1);
        // Each insert unlinks two detached records and sweeps four slots;
        // the third sweep wraps to slot 0, the detached record of key 0,
        // whose key the first insert gave a new record.
        for i in 0..3u64 {
            map.insert(0x8000_0000 + (i << 12), r(1, i << 12, PAGE_SIZE))
                .unwrap();
        }
        assert_eq!(map.len(), 3);
        let mut all = map.entries_in(0, u64::MAX);
        all.sort();
        let want: Vec<_> = (0..3u64)
            .map(|i| (0x8000_0000 + (i << 12), r(1, i << 12, PAGE_SIZE)))
            .collect();
        assert_eq!(all, want);
        assert_eq!(map.remove_shadow_range(1, 0, 3 << 12), 3);
    }

    /// A sized map never allocates: a record beyond its capacity is
    /// refused with nothing changed, until dead (forgotten) or detached
    /// records can be reclaimed for it.
    #[test]
    fn a_full_map_reclaims_or_refuses_and_never_grows() {
        let mut map = ReverseMap::with_capacity(100, 4);
        let bytes = map.allocated_bytes();
        assert_eq!(bytes, ReverseMap::<u32>::preallocated_bytes(100));
        for i in 0..100u64 {
            map.insert(0x4000_0000 + (i << 12), r(1, i << 12, PAGE_SIZE))
                .unwrap();
        }
        let extra = r(2, 0x7000_0000, PAGE_SIZE);
        assert_eq!(map.insert(0x9000_0000, extra), Err(RmapError::Full));
        assert_eq!(map.len(), 100);
        assert!(map.entries_in(0x9000_0000, 0x1000).is_empty());
        // Re-inserting a key it holds needs no new slot.
        map.insert(0x5000_0000, r(1, 0, PAGE_SIZE)).unwrap();
        // Detached records (a shadow-range removal) make room at once.
        assert_eq!(map.remove_shadow_range(1, 0, 10 << 12), 10);
        for i in 0..10u64 {
            map.insert(0x9000_0000 + (i << 12), r(2, i << 12, PAGE_SIZE))
                .unwrap();
        }
        assert_eq!(map.insert(0xa000_0000, extra), Err(RmapError::Full));
        // Dead records of a forgotten context are swept to make room.
        assert_eq!(map.forget_context(1), 90);
        for i in 10..100u64 {
            map.insert(0xb000_0000 + (i << 12), r(3, i << 12, PAGE_SIZE))
                .unwrap();
        }
        assert_eq!(map.len(), 100);
        assert_eq!(map.remove_range(0xb000_0000, 1 << 30, |_| {}), 90);
        assert_eq!((map.growths(), map.allocated_bytes()), (0, bytes));
    }

    #[test]
    fn bad_entries_are_refused() {
        let mut map = ReverseMap::new();
        assert_eq!(
            map.insert(0, r(0, 0, 1 << 16)),
            Err(RmapError::UnsupportedSize(1 << 16))
        );
        assert_eq!(
            map.insert(0x1000, r(0, 0, BLOCK_2M)),
            Err(RmapError::Misaligned {
                l1_ipa: 0x1000,
                l2_ipa: 0
            })
        );
        assert!(map.is_empty());
    }

    #[test]
    fn reinserting_a_shadow_entry_replaces_its_l1_link() {
        let mut map = ReverseMap::new();
        map.insert(0x1000, r(7, 0x9000, PAGE_SIZE)).unwrap();
        map.insert(0x2000, r(7, 0x9000, PAGE_SIZE)).unwrap();
        assert_eq!(map.len(), 1);
        assert_eq!(
            map.remove_range(0x1000, 0x1000, |_| panic!("stale link")),
            0
        );
        assert_eq!(map.remove_range(0x2000, 0x1000, |_| {}), 1);
    }

    #[test]
    fn forgetting_a_context_and_shadow_ranges() {
        let mut map = ReverseMap::new();
        for i in 0..100u64 {
            map.insert(i << 12, r((i % 3) as u32, i << 12, PAGE_SIZE))
                .unwrap();
        }
        map.insert(0x4000_0000, r(1, 0x4000_0000, BLOCK_1G))
            .unwrap();
        assert_eq!(map.forget_context(0), 34);
        assert_eq!(map.forget_context(0), 0);
        // Context 1: pages 1, 4, ..., 97 and the block; [0x3000, 0x7000)
        // holds pages 4 (0x4000) only; a range inside the block finds it.
        assert_eq!(map.remove_shadow_range(1, 0x3000, 0x4000), 1);
        assert_eq!(map.remove_shadow_range(1, 0x7fff_0000, 1), 1);
        assert_eq!(map.remove_shadow_range(1, 0, 0), 0);
        assert_eq!(map.len(), 100 - 34 - 1);
        assert!(map
            .entries_in(0, u64::MAX)
            .iter()
            .all(|(_, s)| s.context != 0));
        let top = !(PAGE_SIZE - 1);
        map.insert(top, r(9, top, PAGE_SIZE)).unwrap();
        assert_eq!(map.forget_context(9), 1);
        assert_eq!(map.remove_range(top, u64::MAX, |_| panic!("forgotten")), 0);
    }

    #[test]
    fn forgotten_records_never_come_back_and_are_reclaimed() {
        let mut map = ReverseMap::new();
        for i in 0..1000u64 {
            map.insert(0x4000_0000 + (i << 12), r(5, i << 12, PAGE_SIZE))
                .unwrap();
        }
        assert_eq!(map.forget_context(5), 1000);
        assert_eq!(map.len(), 0);
        // Dead, not yet reclaimed: invisible to every query.
        assert!(map.entries_in(0, u64::MAX).is_empty());
        assert_eq!(map.remove_shadow_range(5, 0, 1 << 30), 0);
        // The context id is reused: only the new incarnation's records
        // exist for it, whatever the old ones were.
        map.insert(0x9000_0000, r(5, 0x7000, PAGE_SIZE)).unwrap();
        assert_eq!(
            map.entries_in(0, u64::MAX),
            vec![(0x9000_0000, r(5, 0x7000, PAGE_SIZE))]
        );
        let mut seen = vec![];
        assert_eq!(
            map.remove_range(0x4000_0000, 1 << 30, |s| seen.push(s)),
            0,
            "{seen:?}"
        );
        // Inserts sweep the slab: the dead records go, and the slab does
        // not grow past its peak while they are reclaimed.
        let peak = map.records.len();
        for i in 0..1000u64 {
            map.insert(0x8000_0000 + (i << 12), r(6, i << 12, PAGE_SIZE))
                .unwrap();
        }
        assert_eq!(map.len(), 1001);
        assert_eq!(map.records_held(), 1001, "every dead record reclaimed");
        assert!(map.records.len() <= peak + 1);
        assert_eq!(map.forget_context(5), 1);
        assert_eq!(map.forget_context(6), 1000);
        assert!(map.is_empty());
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, ShadowRef<u32>),
        RemoveRange(u64, u64),
        RemoveShadow(u32, u64, u64),
        /// `remove_shadow_pages_later` of pages (a page TLBI's one, or a
        /// short range's up to 16): the model drops them at once, and the
        /// map is not checked until another op came.
        RemoveShadowPagesLater(u32, u64, usize),
        Forget(u32),
    }

    /// Pages a deferred removal covers: a page TLBI's one, or a short
    /// range's, up to [`PENDING_PAGE_REMOVALS`].
    fn pages_later() -> impl Strategy<Value = usize> {
        prop_oneof![2 => Just(1usize), 1 => 2usize..=PENDING_PAGE_REMOVALS]
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let sized = (0usize..3, 0u64..(1 << 34), 0u64..(1 << 34), 0u32..4).prop_map(
            |(class, l1, l2, c)| {
                let size = 1u64 << SIZES_LOG2[class];
                Op::Insert(l1 & !(size - 1), r(c, l2 & !(size - 1), size))
            },
        );
        prop_oneof![
            6 => sized,
            2 => (0u64..(1 << 34), 1u64..(1 << 31)).prop_map(|(s, l)| Op::RemoveRange(s, l)),
            1 => (0u32..4, 0u64..(1 << 34), 1u64..(1 << 31)).prop_map(|(c, s, l)| Op::RemoveShadow(c, s, l)),
            1 => (0u32..4, 0u64..(1 << 22), pages_later()).prop_map(|(c, p, n)| Op::RemoveShadowPagesLater(c, p << 12, n)),
            1 => (0u32..4).prop_map(Op::Forget),
        ]
    }

    /// Dense: records of two contexts packed into 8 MiB of L2 IPA (a few
    /// hundred pages over several L2 block-index chunks, and 2 MiB blocks),
    /// on 64 L1 pages and two L1 blocks (so L1 lists hold several records),
    /// removed by page (records left for a later unlink, past the 64 that
    /// may wait) and by long shadow ranges (chunk by chunk), and by L1
    /// ranges.
    fn arb_dense_op() -> impl Strategy<Value = Op> {
        let page = (0u64..2048, 0u64..64, 0u32..2).prop_map(|(l2, l1, c)| {
            Op::Insert(0x4000_0000 + (l1 << 12), r(c, l2 << 12, PAGE_SIZE))
        });
        let block = (0u64..4, 0u64..2, 0u32..2).prop_map(|(l2, l1, c)| {
            Op::Insert(0x8000_0000 + l1 * BLOCK_2M, r(c, l2 * BLOCK_2M, BLOCK_2M))
        });
        let shadow_page =
            (0u32..2, 0u64..2048).prop_map(|(c, p)| Op::RemoveShadow(c, p << 12, 1 << 12));
        let shadow_page_later = (0u32..2, 0u64..2048, pages_later())
            .prop_map(|(c, p, n)| Op::RemoveShadowPagesLater(c, p << 12, n));
        let shadow_range = (0u32..2, 0u64..2048, 1u64..2048)
            .prop_map(|(c, p, n)| Op::RemoveShadow(c, p << 12, n << 12));
        prop_oneof![
            12 => page,
            1 => block,
            4 => shadow_page,
            4 => shadow_page_later,
            1 => shadow_range,
            1 => (0u64..80, 1u64..8).prop_map(|(p, n)| Op::RemoveRange(0x4000_0000 + (p << 12), n << 12)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Against a list model: every removal returns exactly the
        /// overlapping records.
        #[test]
        fn matches_a_linear_model(ops in prop::collection::vec(arb_op(), 1..80)) {
            check_against_model(ops)?;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The same on dense ops; besides, no slab slot is held but by a
        /// live record or one waiting for its unlink (no forgotten
        /// contexts here), so every removal freed what it removed.
        #[test]
        fn dense_ranges_match_a_linear_model(ops in prop::collection::vec(arb_dense_op(), 200..600)) {
            let mut map = check_against_model(ops)?;
            prop_assert_eq!(
                map.records_held(),
                map.len() + map.pending.len() + map.chained + map.kills.records
            );
            prop_assert!(map.pending.len() <= PENDING_UNLINKS);
        }
    }

    /// What changes the map between two batches of an L1-range removal.
    #[derive(Clone, Debug)]
    enum Between {
        Insert(u64, ShadowRef<u32>),
        RemoveShadow(u32, u64, u64),
        RemoveShadowPagesLater(u32, u64, usize),
        Forget(u32),
    }

    /// Records of three contexts, in all three sizes, with long aliasing
    /// lists (up to 48 records on one L1 page).
    fn arb_batch_record() -> impl Strategy<Value = (u64, ShadowRef<u32>)> {
        prop_oneof![
            8 => (0u64..96, 0u64..4096, 0u32..3).prop_map(|(l1, l2, c)| {
                (0x4000_0000 + (l1 << 12), r(c, l2 << 12, PAGE_SIZE))
            }),
            4 => (0u64..4, 0u64..4096, 0u32..3).prop_map(|(l1, l2, c)| {
                (0x4000_0000 + (l1 << 12), r(c, 0x1000_0000 + (l2 << 12), PAGE_SIZE))
            }),
            1 => (0u64..4, 0u64..8, 0u32..3).prop_map(|(l1, l2, c)| {
                (0x4000_0000 + l1 * BLOCK_2M, r(c, 0x2000_0000 + l2 * BLOCK_2M, BLOCK_2M))
            }),
            1 => (0u64..3, 0u64..4, 0u32..3).prop_map(|(l1, l2, c)| {
                (l1 * BLOCK_1G, r(c, 0x40_0000_0000 + l2 * BLOCK_1G, BLOCK_1G))
            }),
        ]
    }

    fn arb_between() -> impl Strategy<Value = Between> {
        prop_oneof![
            6 => arb_batch_record().prop_map(|(l1, s)| Between::Insert(l1, s)),
            2 => (0u32..3, 0u64..4096, 1u64..64)
                .prop_map(|(c, p, n)| Between::RemoveShadow(c, p << 12, n << 12)),
            2 => (0u32..3, 0u64..4096, pages_later())
                .prop_map(|(c, p, n)| Between::RemoveShadowPagesLater(c, 0x1000_0000 + (p << 12), n)),
            1 => (0u32..3).prop_map(Between::Forget),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// An L1-range removal in batches of 7, the map changed between
        /// batches (inserts anywhere, shadow-range removals, forgotten
        /// contexts), against a model: every record present when it
        /// began and still present when the cursor is done was reported
        /// once (no miss); everything reported was a live record in the
        /// range, reported once; nothing outside the range was touched;
        /// and no batch removed more than its room.
        #[test]
        fn batched_l1_range_removal_misses_nothing_present_at_its_start(
            initial in prop::collection::vec(arb_batch_record(), 100..400),
            between in prop::collection::vec(prop::collection::vec(arb_between(), 0..6), 0..200),
            (start, len) in (0u64..(5 << 30), 1u64..(3 << 30)),
        ) {
            let mut map = ReverseMap::new();
            // The model: (L1 block, record, present when the removal began).
            let mut model: Vec<(u64, ShadowRef<u32>, bool)> = Vec::new();
            let insert = |map: &mut ReverseMap<u32>, model: &mut Vec<(u64, ShadowRef<u32>, bool)>, l1, s: ShadowRef<u32>, old| {
                map.insert(l1, s).unwrap();
                model.retain(|(_, m, _)| (m.context, m.l2_ipa) != (s.context, s.l2_ipa));
                model.push((l1, s, old));
            };
            for (l1, s) in initial {
                insert(&mut map, &mut model, l1, s, true);
            }
            let overlaps = |l1: u64, size: u64| l1 < start.saturating_add(len) && l1 + size > start;
            let mut cursor = L1RangeCursor::new(start, len);
            let mut between = between.into_iter();
            let mut batches = 0;
            loop {
                let mut batch = ArrayVec::<ShadowRef<u32>, 7>::new();
                let live_before = map.len();
                let more = map.remove_range_batch(&mut cursor, &mut batch);
                batches += 1;
                prop_assert!(live_before - map.len() == batch.len());
                for s in batch {
                    let at = model.iter().position(|(_, m, _)| *m == s);
                    prop_assert!(at.is_some(), "{:?} reported twice or never live", s);
                    let (l1, _, _) = model.swap_remove(at.unwrap());
                    prop_assert!(overlaps(l1, s.size), "{:?} on {:#x} is outside", s, l1);
                }
                if !more {
                    break;
                }
                prop_assert!(batches < 100_000, "no progress");
                for op in between.next().unwrap_or_default() {
                    match op {
                        Between::Insert(l1, s) => insert(&mut map, &mut model, l1, s, false),
                        Between::RemoveShadow(c, from, n) => {
                            let before = model.len();
                            model.retain(|(_, m, _)| {
                                !(m.context == c && m.l2_ipa < from + n && m.l2_ipa + m.size > from)
                            });
                            prop_assert_eq!(map.remove_shadow_range(c, from, n), before - model.len());
                        }
                        Between::RemoveShadowPagesLater(c, page, n) => {
                            let end = page + ((n as u64) << 12);
                            model.retain(|(_, m, _)| {
                                !(m.context == c && m.l2_ipa < end && m.l2_ipa + m.size > page)
                            });
                            map.remove_shadow_pages_later(c, page, n);
                        }
                        Between::Forget(c) => {
                            let before = model.len();
                            model.retain(|(_, m, _)| m.context != c);
                            prop_assert_eq!(map.forget_context(c), before - model.len());
                        }
                    }
                }
            }
            prop_assert!(cursor.is_done());
            for (l1, m, old) in &model {
                prop_assert!(!(*old && overlaps(*l1, m.size)), "missed {:?} on {:#x}", m, l1);
            }
            let mut all = map.entries_in(0, u64::MAX);
            all.sort();
            let mut want: Vec<_> = model.iter().map(|(l1, m, _)| (*l1, *m)).collect();
            want.sort();
            // Exactly the model's records are left: nothing outside the
            // range went but by the changes between batches.
            prop_assert_eq!(&all, &want);
        }
    }

    /// Applies `ops` to a map and to a list model, checking after each that
    /// the map reports exactly the model's records; the map at the end.
    fn check_against_model(ops: Vec<Op>) -> Result<ReverseMap<u32>, TestCaseError> {
        {
            let mut map = ReverseMap::new();
            let mut model: Vec<(u64, ShadowRef<u32>)> = Vec::new();
            for op in ops {
                let later = matches!(op, Op::RemoveShadowPagesLater(..));
                match op {
                    Op::Insert(l1, s) => {
                        map.insert(l1, s).unwrap();
                        model.retain(|(_, m)| (m.context, m.l2_ipa) != (s.context, s.l2_ipa));
                        model.push((l1, s));
                    }
                    Op::RemoveRange(start, len) => {
                        let mut got = BTreeSet::new();
                        let n = map.remove_range(start, len, |s| {
                            got.insert(s);
                        });
                        let want: BTreeSet<_> = model
                            .iter()
                            .filter(|(l1, m)| *l1 < start + len && l1 + m.size > start)
                            .map(|(_, m)| *m)
                            .collect();
                        model.retain(|(_, m)| !want.contains(m));
                        prop_assert_eq!(n, want.len());
                        prop_assert_eq!(got, want);
                    }
                    Op::RemoveShadow(c, start, len) => {
                        let before = model.len();
                        model.retain(|(_, m)| {
                            !(m.context == c && m.l2_ipa < start + len && m.l2_ipa + m.size > start)
                        });
                        prop_assert_eq!(
                            map.remove_shadow_range(c, start, len),
                            before - model.len()
                        );
                    }
                    Op::RemoveShadowPagesLater(c, page, n) => {
                        let end = page + ((n as u64) << 12);
                        model.retain(|(_, m)| {
                            !(m.context == c && m.l2_ipa < end && m.l2_ipa + m.size > page)
                        });
                        if n == 1 {
                            map.remove_shadow_page_later(c, page);
                        } else {
                            map.remove_shadow_pages_later(c, page, n);
                        }
                    }
                    Op::Forget(c) => {
                        let before = model.len();
                        model.retain(|(_, m)| m.context != c);
                        prop_assert_eq!(map.forget_context(c), before - model.len());
                    }
                }
                if later {
                    // Unchecked, so the next ops meet removals still
                    // waiting (more than fit, in a run of these).
                    continue;
                }
                #[cfg(not(loom))]
                list_invariant::check_lists(&map).map_err(TestCaseError::fail)?;
                prop_assert_eq!(map.len(), model.len());
                let mut all = map.entries_in(0, u64::MAX);
                all.sort();
                let mut want = model.clone();
                want.sort();
                prop_assert_eq!(all, want);
            }
            let mut all = map.entries_in(0, u64::MAX);
            all.sort();
            model.sort();
            prop_assert_eq!(all, model);
            Ok(map)
        }
    }
}

#[cfg(all(test, not(loom)))]
mod list_invariant;
