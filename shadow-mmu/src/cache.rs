//! The walk-result cache of one context: what a TLB and its walk caches may
//! hold for L1's stage 2, and nothing else.
//!
//! - **Leaf entries** ([`CachedWalk`]): valid translations only, one per
//!   L1 block or page, keyed by (block-aligned L2 IPA, block size). A
//!   lookup probes each block size the context has ever cached (a bitmask,
//!   so a 4 KiB-only context probes once), so a 2 MiB block serves every
//!   IPA inside it.
//! - **Intermediate entries** ([`CachedPath`]): the table descriptors a
//!   walk read from the start level down to some level, keyed by (level,
//!   the IPA region one descriptor of that level spans). A miss below a
//!   cached path walks only the remaining levels: the walk runs over an
//!   overlay of guest memory ([`PathOverlay`]) that serves the cached
//!   descriptors without reading L1 memory, so the result, trail included,
//!   is by construction the walk of memory holding those values (what a
//!   hardware walk cache may use until a TLBI removes it).
//! - Reads are lock-free (epoch-protected); writes (insert, remove) hold the
//!   context's writer lock, which also guards the hashed `CacheIndex`
//!   used for range invalidation (per block size / per level, so a range
//!   query visits exactly the entries that overlap it).
//! - A whole-context flush bumps a flush number: entries stamped with an
//!   older one are dead at once for every lookup, and their slots are
//!   reused by later inserts.

use alloc::sync::Arc;
use core::cell::Cell;

use walker::{
    AccessKind, CacheMaintenance, DescriptorRead, Endianness, Execute, GuestMemory, MemoryError,
    S2Ap, Shareability, Stage2Walker, Translation, WalkError,
};

use crate::prefetch::SHORT_RANGE_BLOCKS;
use crate::sync::epoch::Guard;
use crate::sync::unmodelled::AtomicUsize;
use crate::sync::{AtomicU64, AtomicU8, Ordering};
use crate::table::{
    hash2, BlockIndex, ChunkBlocks, ChunkCursor, Displaced, HeldTable, Keyed, RemovedRun, Table,
    RUN_MIN_NODES,
};

/// A cached valid translation of one L1 block or page.
///
/// `repr(C)`, in this order: a hit reads the key (`ipa_base`,
/// `size_log2`) and `flush`, the first 24 bytes, and a node (16-byte
/// aligned, the table's `Node` puts the value first) keeps them in one
/// cache line unless it starts in a line's last 16 bytes. In the compiler's
/// order they lay 40 bytes apart, and most hits read two lines of the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct CachedWalk {
    /// L2 IPA of the start of the block.
    pub ipa_base: u64,
    /// log2 of the block size (the leaf's block size; the contiguous hint
    /// is not used to widen entries, so a hit is exactly a walk's result).
    pub size_log2: u8,
    /// Lookup level of the leaf.
    pub level: i8,
    /// S2AP after any hardware dirty update the walk made.
    pub s2ap: S2Ap,
    /// Execute permission.
    pub execute: Execute,
    /// DBM bit of the leaf.
    pub dirty_bit_modifier: bool,
    /// MemAttr\[3:0\].
    pub mem_attr: u8,
    /// Shareability.
    pub shareability: Shareability,
    /// Flush number of the context when inserted.
    flush: u64,
    /// L1 IPA (walk output) of the start of the block.
    pub output_base: u64,
    /// The leaf descriptor (after the walk's update).
    pub descriptor: u64,
    /// L1 IPA of the leaf descriptor.
    pub descriptor_address: u64,
}

impl CachedWalk {
    /// The cacheable part of a walk result.
    pub fn from_translation(t: &Translation) -> CachedWalk {
        CachedWalk {
            ipa_base: t.ipa_block_base(),
            size_log2: t.block_size.trailing_zeros() as u8,
            output_base: t.output_block_base(),
            level: t.level,
            s2ap: t.s2ap,
            execute: t.execute,
            dirty_bit_modifier: t.dirty_bit_modifier,
            mem_attr: t.mem_attr,
            shareability: t.shareability,
            descriptor: t.descriptor,
            descriptor_address: t.leaf_address(),
            flush: 0,
        }
    }

    /// Block size in bytes.
    pub const fn size(&self) -> u64 {
        1 << self.size_log2
    }

    /// Whether `ipa` lies in the block.
    pub const fn contains(&self, ipa: u64) -> bool {
        ipa & !(self.size() - 1) == self.ipa_base
    }

    /// The walk output (L1 IPA) for an `ipa` inside the block.
    pub const fn output_address(&self, ipa: u64) -> u64 {
        self.output_base | (ipa & (self.size() - 1))
    }

    /// Whether the access succeeds with this entry as it stands, by the
    /// checks of AArch64.S2CheckPermissions. `false` sends the access to a
    /// walk, which reports the precise fault or makes the hardware dirty
    /// update a DBM entry needs. This is L1's stage 2 alone: what L0's
    /// mapping of L1 allows is checked after composition, for hits and
    /// walks alike (`Service::translate` answers `L0Denied`, never
    /// `Mapped`, when the composed entry does not allow the access).
    pub const fn permits(&self, access: AccessKind) -> bool {
        let device = self.mem_attr & 0b1100 == 0;
        match access {
            AccessKind::Read => self.s2ap.readable(),
            AccessKind::Write => self.s2ap.writable(),
            // AccessType_TTW with a write: R, then W.
            AccessKind::Stage1Update => self.s2ap.readable() && self.s2ap.writable(),
            AccessKind::ExecEl1 => !device && self.execute.el1(),
            AccessKind::ExecEl0 => !device && self.execute.el0(),
            AccessKind::CacheMaintenance(CacheMaintenance::CleanEl1) => true,
            AccessKind::CacheMaintenance(CacheMaintenance::InvalidateEl1) => self.s2ap.writable(),
            AccessKind::CacheMaintenance(CacheMaintenance::El0) => self.s2ap.readable(),
        }
    }

    const fn cache_key(&self) -> u64 {
        leaf_key(self.ipa_base, self.size_log2)
    }
}

/// Block bases are at least 4 KiB aligned: the size goes in the low bits.
const fn leaf_key(ipa_base: u64, size_log2: u8) -> u64 {
    ipa_base | size_log2 as u64
}

/// log2 of a page (4 KiB, the smallest leaf of any granule) and the mask of
/// the IPA bits inside one.
const PAGE_LOG2: u8 = 12;
const PAGE_MASK: u64 = (1 << PAGE_LOG2) - 1;

/// log2 of the most pages whose leaves take consecutive buckets of the
/// cache table (see [`leaf_hash`]): 64 pages, 256 KiB of L2 IPA, in a table
/// of at least 64 buckets.
const NEIGHBOURS_LOG2: u32 = 6;

/// The page-in-region bits `o` of [`leaf_hash`] (bits 12 and up of a
/// key's low half), for regions of `2^neighbours_log2` pages.
const fn neighbour_bits(neighbours_log2: u32) -> u32 {
    ((1 << neighbours_log2) - 1) << 12
}

/// The table hash of a leaf key, for a table that puts the 4 KiB leaves of
/// each region of pages `neighbour_bits` ([`neighbour_bits`]) spans in
/// consecutive buckets: a bijection of the key (so a tag match is a key
/// match, [`Keyed::HASH_IS_KEY`]).
///
/// A fault that misses the shadow usually comes after its neighbour's
/// (L2 touching memory in order, an L0 unmap refaulting a range): with a
/// plain mix every fault's bucket is a random line of a table of
/// megabytes, a cache and often a TLB miss; here 64 such faults read the
/// consecutive lines of one 4 KiB page, which the CPU's prefetcher streams
/// in. Regions still land at mixed, independent places, so each bucket
/// receives as many leaves on average as before, and larger leaves (whose
/// bases have no page bits) spread as before. But regions whose bucket
/// ranges overlap fill those buckets together: the leaf table gives each
/// leaf a second bucket, a keyed mix of this hash that does not keep
/// neighbours together ([`Table::with_stash`], [`second_bucket_key`]), for
/// the leaves such an overlap (or plain chance) does not leave room for.
///
/// The hash keeps the key's low half verbatim as its own low half (the
/// tag's), and makes its high half (the bucket's) from a mix of the low
/// half without the page-in-region bits `o`, xored with the high half
/// times an odd number (its high bits folded into its low ones), plus `o`.
/// The low half gives `o` and the mix back, and the fold and the odd
/// multiplication are invertible, so the key is recovered from the hash: a
/// one-round Feistel network. Its two multiplications run side by side (a
/// hit computes this hash; a longer chain, such as a 58-bit mix of the
/// region, cost it a nanosecond), and in simulation it spreads structured
/// keys (runs of pages or blocks, strides, high IPAs) at least as evenly
/// as `table::hash2`. A region never has more pages than the table has
/// buckets (`WalkCache::new`), or pages of one region a multiple of the
/// bucket count apart would share a bucket.
///
/// Keyed by `secret` (from `ServiceConfig::hash_seed`), xored into both
/// halves before they are mixed: the round function's input (any function
/// keeps a Feistel round a bijection) and the high half before its odd
/// multiplication (a bijection of the high half). Unkeyed, whoever picks
/// L2 IPAs could aim every page at one bucket (review 38 R38-1).
#[inline]
fn leaf_hash(key: u64, neighbour_bits: u32, secret: u64) -> u64 {
    let low = key as u32;
    let in_region = low & neighbour_bits;
    let neighbour = in_region >> 12;
    // `low & !neighbour_bits`, without the mask's complement.
    let mixed_low = region_mix((low ^ in_region) ^ secret as u32);
    let mixed_high = ((key >> 32) as u32 ^ (secret >> 32) as u32).wrapping_mul(0x85eb_ca6b);
    // The bucket bits are the low ones: fold the product's high bits in.
    let mixed_high = mixed_high ^ (mixed_high >> 16);
    let high = (mixed_high ^ mixed_low).wrapping_add(neighbour);
    (u64::from(high) << 32) | u64::from(low)
}

/// The Feistel round function of [`leaf_hash`] (any function keeps the
/// hash a bijection): a full 32-bit avalanche mix, so that regions an
/// arithmetic progression apart do not fall on a few buckets, as they did
/// with one multiplication (a linear map: pages 30 apart evicted 73% of a
/// quarter-full cache, review 19 R19-1).
#[inline]
fn region_mix(x: u32) -> u32 {
    let x = (x ^ (x >> 16)).wrapping_mul(0x7feb_352d);
    let x = (x ^ (x >> 15)).wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// The leaf hash of a cache ([`leaf_hash`] with its parameters): its
/// secret key and how many pages of a region take consecutive buckets.
/// The same for every slot's cache of a directory (one secret, one leaf
/// capacity), so the directory keeps a copy: `Directory::cached` hashes a
/// page with it before the context and its cache are read, off the chain
/// of dependent loads a hit waits for ([`WalkCache::lookup`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LeafHasher {
    /// Keys the leaf and path hashes (secret: from
    /// `ServiceConfig::hash_seed`).
    secret: u64,
    /// The page-in-region bits ([`neighbour_bits`]) of regions of
    /// [`NEIGHBOURS_LOG2`] pages, or fewer in a table with fewer buckets
    /// than that: the pages whose leaves take consecutive buckets
    /// ([`leaf_hash`]).
    neighbour_bits: u32,
}

impl LeafHasher {
    /// The hash of a cache made for `leaf_capacity` leaves in buckets
    /// ([`WalkCache::new`]), keyed by `secret`.
    pub(crate) const fn new(leaf_capacity: usize, secret: u64) -> Self {
        let buckets = crate::table::buckets_for(leaf_capacity).trailing_zeros();
        LeafHasher {
            secret,
            neighbour_bits: neighbour_bits(if buckets < NEIGHBOURS_LOG2 {
                buckets
            } else {
                NEIGHBOURS_LOG2
            }),
        }
    }

    /// log2 of the pages of a region.
    #[cfg(all(test, not(loom)))]
    fn neighbours_log2(&self) -> u32 {
        (self.neighbour_bits >> 12).trailing_ones()
    }

    /// The table hash of leaf key `key`.
    #[inline]
    fn hash(&self, key: u64) -> u64 {
        leaf_hash(key, self.neighbour_bits, self.secret)
    }

    /// The leaf hashes of the blocks of `2^size_log2` bytes in the
    /// block-index chunk ([`CHUNK_BLOCKS`] blocks) holding `base`: see
    /// [`ChunkHashes`].
    #[inline]
    fn chunk_hashes(&self, size_log2: u8, base: u64) -> ChunkHashes {
        // A chunk of pages is one region of `leaf_hash` exactly when the
        // table keeps a whole region's pages in consecutive buckets.
        let region = (size_log2 == PAGE_LOG2
            && self.neighbour_bits == neighbour_bits(NEIGHBOURS_LOG2))
        .then(|| self.hash(leaf_key(base & !REGION_MASK, PAGE_LOG2)));
        ChunkHashes {
            hasher: *self,
            size_log2,
            region,
        }
    }
}

/// The IPA bits inside one region of [`NEIGHBOURS_LOG2`] pages (256 KiB):
/// the pages of one block-index chunk of 4 KiB blocks.
const REGION_MASK: u64 = (1 << (PAGE_LOG2 as u32 + NEIGHBOURS_LOG2)) - 1;

// A chunk of 4 KiB blocks is one region of the leaf hash (`ChunkHashes`).
const _: () = assert!(crate::table::CHUNK_BLOCKS == 1 << NEIGHBOURS_LOG2);

/// The leaf hashes of one block-index chunk's blocks, for a range removal
/// ([`WalkCache::invalidate_leaves`]), which hashes every removed leaf
/// twice (its bucket is asked for a chunk ahead, then probed).
///
/// For 4 KiB leaves in a table that keeps a whole region's pages in
/// consecutive buckets (every table of at least 64 buckets), the chunk is
/// one region, and [`leaf_hash`] of page `i` of it is the region's first
/// page's hash with `i` added to both halves: its low half is the key's
/// (`i` in bits 12-17, zero in the region's first key), and its high half
/// is the region's mix plus `i` (the mix reads the low half without those
/// bits, so it is the same for the whole region). So one full hash per
/// chunk and an addition per page, instead of about 30 instructions per
/// page and probe (`tests::chunk_hashes_are_leaf_hashes`). Other sizes
/// (and small tables) hash each block.
#[derive(Clone, Copy)]
struct ChunkHashes {
    hasher: LeafHasher,
    size_log2: u8,
    /// The hash of the chunk's first page, when the chunk is one region.
    region: Option<u64>,
}

impl ChunkHashes {
    /// The leaf hash of the block at `base` (in the chunk).
    #[inline]
    fn of(&self, base: u64) -> u64 {
        match self.region {
            Some(first) => {
                let page = (base & REGION_MASK) >> PAGE_LOG2;
                let high = ((first >> 32) as u32).wrapping_add(page as u32);
                (u64::from(high) << 32) | (u64::from(first as u32) | (page << PAGE_LOG2))
            }
            None => self.hasher.hash(leaf_key(base, self.size_log2)),
        }
    }
}

impl Keyed for CachedWalk {
    type Key = u64;
    // Looked up with `leaf_hash(key, _, _)`, a bijection of the key.
    const HASH_IS_KEY: bool = true;
    fn key(&self) -> u64 {
        self.cache_key()
    }
}

/// Most table descriptors a walk reads before its leaf (levels -1..=2).
pub const MAX_PATH: usize = 4;

/// The table descriptors of a walk from the start level down to `level`
/// (inclusive), valid for every IPA in the region one descriptor at
/// `level` spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachedPath {
    /// Level of the last (deepest) table descriptor.
    pub level: i8,
    /// First L2 IPA of the region.
    pub region_base: u64,
    /// log2 of the region size.
    pub span_log2: u8,
    reads: [DescriptorRead; MAX_PATH],
    len: u8,
    flush: u64,
}

impl CachedPath {
    /// The descriptor reads, start level first.
    pub fn reads(&self) -> &[DescriptorRead] {
        &self.reads[..usize::from(self.len)]
    }

    /// Region size in bytes.
    pub const fn span(&self) -> u64 {
        1 << self.span_log2
    }

    const fn cache_key(&self) -> u64 {
        path_key(self.region_base, self.level)
    }
}

/// Regions are at least 4 KiB aligned: the level (+1, 0..=3) goes low.
const fn path_key(region_base: u64, level: i8) -> u64 {
    region_base | (level + 1) as u64
}

/// The region base and level of a [`path_key`].
const fn path_of_key(key: u64) -> (u64, i8) {
    (key & !0xfff, (key & 0xfff) as i8 - 1)
}

impl Keyed for CachedPath {
    type Key = u64;
    // Looked up with `hash2(key, secret)`, a bijection of the key.
    const HASH_IS_KEY: bool = true;
    fn key(&self) -> u64 {
        self.cache_key()
    }
}

/// Lowest IPA bit a descriptor at `level` resolves (its span is 2^lsb).
pub(crate) fn level_lsb(walker: &Stage2Walker, level: i8) -> u32 {
    let granule = walker.granule();
    granule.bits() + (3 - i32::from(level)) as u32 * granule.stride()
}

/// The intermediate paths a successful walk yields, shallowest first (one
/// per table descriptor of its trail).
pub fn cached_paths(walker: &Stage2Walker, t: &Translation) -> impl Iterator<Item = CachedPath> {
    let (paths, count) = paths_of(walker, t);
    paths.into_iter().take(count)
}

/// The paths worth caching from a successful walk: one per table
/// descriptor of the trail (every read but the leaf).
pub(crate) fn paths_of(walker: &Stage2Walker, t: &Translation) -> ([CachedPath; MAX_PATH], usize) {
    let trail = t.trail.as_slice();
    let tables = trail.len().saturating_sub(1).min(MAX_PATH);
    let mut out = [CachedPath {
        level: 0,
        region_base: 0,
        span_log2: 0,
        reads: [DescriptorRead::default(); MAX_PATH],
        len: 0,
        flush: 0,
    }; MAX_PATH];
    for (k, path) in out.iter_mut().enumerate().take(tables) {
        let level = trail[k].level;
        let span_log2 = level_lsb(walker, level);
        path.level = level;
        path.span_log2 = span_log2 as u8;
        path.region_base = t.ipa & !((1u64 << span_log2) - 1);
        path.reads[..=k].copy_from_slice(&trail[..=k]);
        path.len = (k + 1) as u8;
    }
    (out, tables)
}

/// Guest memory with a cached walk path laid over it: the k-th descriptor
/// read of the walk is served from the path when it is the k-th read of
/// the path at the same address; any other read goes to memory. A walk
/// restarted after a lost compare-and-swap therefore reads memory again.
#[derive(Debug)]
pub struct PathOverlay<'a, M: ?Sized> {
    memory: &'a M,
    reads: &'a [DescriptorRead],
    endianness: Endianness,
    next: Cell<usize>,
    served: Cell<usize>,
}

impl<'a, M: GuestMemory + ?Sized> PathOverlay<'a, M> {
    /// An overlay serving `path` for a walk under `walker` over `memory`.
    pub fn new(memory: &'a M, walker: &Stage2Walker, path: &'a CachedPath) -> Self {
        PathOverlay {
            memory,
            reads: path.reads(),
            endianness: walker.registers().endianness,
            next: Cell::new(0),
            served: Cell::new(0),
        }
    }

    /// Whether every descriptor of the path was served from the cache
    /// (the walk read L1 memory only below the cached levels). A walk that
    /// restarted after a lost compare-and-swap read every level again from
    /// memory: see [`PathOverlay::reads`].
    pub fn served_whole_path(&self) -> bool {
        self.served.get() == self.reads.len()
    }

    /// Descriptor reads the walk made through the overlay (from the cache
    /// and from memory, over every attempt).
    pub fn reads(&self) -> usize {
        self.next.get()
    }
}

impl<M: GuestMemory + ?Sized> GuestMemory for PathOverlay<'_, M> {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        let k = self.next.get();
        self.next.set(k + 1);
        match self.reads.get(k) {
            Some(read) if read.address == address => {
                self.served.set(self.served.get() + 1);
                Ok(self.endianness.descriptor_to_raw(read.value))
            }
            _ => self.memory.read_descriptor(address),
        }
    }

    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        self.memory
            .compare_exchange_descriptor(address, current, new)
    }
}

/// How a miss was walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkKind {
    /// From the start level.
    Full,
    /// From below a cached path.
    Partial,
}

/// Walk `ipa`, from below `path` when one is given.
pub fn walk_from<M: GuestMemory + ?Sized>(
    walker: &Stage2Walker,
    memory: &M,
    path: Option<&CachedPath>,
    ipa: u64,
    access: AccessKind,
) -> (Result<Translation, WalkError>, WalkKind) {
    match path {
        None => (walker.walk(memory, ipa, access), WalkKind::Full),
        Some(path) => {
            let overlay = PathOverlay::new(memory, walker, path);
            let result = walker.walk(&overlay, ipa, access);
            // One attempt reads one descriptor per level, from the start
            // level to where it ended; more reads mean the walk restarted
            // and read the cached levels from memory again: a full walk.
            let one_attempt = |last: i8| {
                walker
                    .start_level()
                    .is_some_and(|start| overlay.reads() as i64 <= i64::from(last - start) + 1)
            };
            let partial = overlay.served_whole_path()
                && match &result {
                    Ok(t) => one_attempt(t.level),
                    Err(WalkError::Fault(fault)) => one_attempt(fault.level),
                    // The host's denial or change ends the walk at its
                    // descriptor's level as a fault there would (review 60
                    // R60-2).
                    Err(WalkError::HostDenied(denial)) => one_attempt(denial.level),
                    Err(WalkError::HostChanging(change)) => one_attempt(change.level),
                    Err(WalkError::Contended { .. }) => false,
                };
            let kind = if partial {
                WalkKind::Partial
            } else {
                WalkKind::Full
            };
            (result, kind)
        }
    }
}

/// Which entries a context's cache holds, for range invalidation: a
/// [`BlockIndex`] of leaf bases per block size and of path regions per
/// level (hashed bitmaps of 512 blocks, with an ordered level of chunks for
/// long ranges), so inserting or removing one entry costs the same at any
/// cache size and a range visits only the entries that overlap it. Held
/// under the context's writer lock.
///
/// Each slot's cache makes one index when it is made, sized for the most
/// entries its tables hold (every indexed block is a live node of the
/// table: an eviction or removal takes the block out, a flush clears the
/// index), so the index never allocates on a fault's way. A context takes
/// it at its first insert; a flush clears it in place; a retirement hands
/// it back to the slot for the successor ([`WalkCache::park_index`]).
#[derive(Debug, Default)]
pub(crate) struct CacheIndex {
    /// Made by [`CacheIndex::with_capacity`] (not an empty placeholder).
    sized: bool,
    leaves: BlockIndex<u8>,
    /// Bit n set: leaves of 2^n bytes may be in `leaves`.
    leaf_sizes: u64,
    paths: BlockIndex<i8>,
    /// Per level + 1: log2 of the region one path of that level spans (0:
    /// no path of that level indexed yet).
    path_spans: [u8; MAX_PATH],
    /// 4 KiB leaves a page invalidation unlinked from the table whose bits
    /// in `leaves` are still set ([`CacheIndex::unindex_page_later`]):
    /// every use of `leaves`' page bits clears them first
    /// ([`CacheIndex::settle_pages`]), and `live_leaves` leaves them out.
    pending_pages: WaitingKeys<PENDING_PAGE_UNINDEX>,
    /// Paths (their keys, [`path_key`]) a page invalidation unlinked from
    /// the table whose bits in `paths` are still set
    /// ([`CacheIndex::unindex_path_later`]): as for `pending_pages`, every
    /// use of `paths`' bits clears them first ([`CacheIndex::settle_paths`])
    /// and `live_paths` leaves them out.
    pending_paths: WaitingKeys<PENDING_PATH_UNINDEX>,
}

/// Page removals [`CacheIndex::unindex_page_later`] keeps waiting at most;
/// the next one clears them first.
const PENDING_PAGE_UNINDEX: usize = 16;

/// Path removals [`CacheIndex::unindex_path_later`] keeps waiting at most
/// (a page invalidation removes one path a level, four at most); the next
/// one clears them first.
const PENDING_PATH_UNINDEX: usize = 8;

impl CacheIndex {
    /// An index for at most `leaves` cached leaves and `paths` cached
    /// paths. Each level is sized for its waiting bits too: a page
    /// invalidation unlinks a node but leaves its bit, and the next insert
    /// may take the freed place in another chunk before the bit goes, so
    /// a level holds up to its places and its waiting keys' blocks
    /// (review 66 R66-1: sized for the places alone, a hostile L1 made the
    /// index grow).
    pub(crate) fn with_capacity(leaves: usize, paths: usize) -> Self {
        let (leaf_blocks, path_blocks) = Self::blocks_held(leaves, paths);
        CacheIndex {
            sized: true,
            leaves: BlockIndex::with_capacity(leaf_blocks),
            paths: BlockIndex::with_capacity(path_blocks),
            ..CacheIndex::default()
        }
    }

    /// The blocks the leaf and path levels of the index of a cache with
    /// `leaves` and `paths` places hold at most: a block per place and
    /// per bit waiting to be cleared.
    pub(crate) const fn blocks_held(leaves: usize, paths: usize) -> (usize, usize) {
        (leaves + PENDING_PAGE_UNINDEX, paths + PENDING_PATH_UNINDEX)
    }

    /// Bytes [`CacheIndex::with_capacity`] allocates.
    pub(crate) const fn preallocated_bytes(leaves: usize, paths: usize) -> usize {
        let (leaf_blocks, path_blocks) = Self::blocks_held(leaves, paths);
        BlockIndex::<u8>::preallocated_bytes(leaf_blocks)
            + BlockIndex::<i8>::preallocated_bytes(path_blocks)
    }

    /// Times the index allocated after it was made (zero while every
    /// bound holds).
    pub(crate) fn growths(&self) -> u32 {
        self.leaves.growths() + self.paths.growths()
    }

    /// Bytes of the hashed levels' slots.
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.leaves.allocated_bytes() + self.paths.allocated_bytes()
    }

    pub(crate) fn live_leaves(&self) -> usize {
        // Pending pages are no longer cached (their nodes are unlinked).
        self.leaves.len() - self.pending_pages.len()
    }

    pub(crate) fn live_paths(&self) -> usize {
        // Pending paths are no longer cached (their nodes are unlinked).
        self.paths.len() - self.pending_paths.len()
    }

    fn add_leaf(&mut self, base: u64, size_log2: u8) -> bool {
        if size_log2 == PAGE_LOG2 && self.keep_pending_page(base) {
            return true;
        }
        self.settle_pages(size_log2);
        self.leaf_sizes |= 1 << size_log2;
        self.leaves.insert(size_log2, base, u32::from(size_log2))
    }

    /// Page `base` is cached again while its bit waits to be cleared (a
    /// page invalidation, then the fault that follows on the page): the
    /// bit is still set, so it just stops waiting, and neither call reads
    /// the bit's chunk. Whether the page was waiting.
    fn keep_pending_page(&mut self, base: u64) -> bool {
        self.pending_pages.stop_waiting(base)
    }

    fn remove_leaf(&mut self, base: u64, size_log2: u8) -> bool {
        self.settle_pages(size_log2);
        self.leaves.remove(size_log2, base, u32::from(size_log2))
    }

    /// The 4 KiB leaf at `base` was just unlinked from the table by a page
    /// invalidation that did not read this index: its bit goes at the
    /// index's next use of page bits ([`CacheIndex::settle_pages`]), or
    /// stays when the page is cached again first
    /// ([`CacheIndex::keep_pending_page`]: the fault that usually follows
    /// on the same page). In a large cache the bit's chunk is a line on a
    /// random page (a page walk and a miss on this VM).
    fn unindex_page_later(&mut self, base: u64) {
        if self.pending_pages.is_full() {
            self.settle_pages_now();
        }
        self.pending_pages.push(base);
    }

    /// Before a use of `leaves`' bits of `2^size_log2`-byte blocks: clears
    /// the bits of the pages [`CacheIndex::unindex_page_later`] left when
    /// those are page bits. Every read or change of the bits (other than
    /// the prefetches, which read nothing) calls this first, so none sees
    /// a page bit whose node is gone; other sizes' bits live in their own
    /// chunks (each size is an owner of its own), so their uses leave the
    /// pages waiting.
    #[inline]
    fn settle_pages(&mut self, size_log2: u8) {
        if size_log2 == PAGE_LOG2 && !self.pending_pages.is_empty() {
            self.settle_pages_now();
        }
    }

    fn settle_pages_now(&mut self) {
        // By index, then cleared: moving the array out copies it whole.
        if self.pending_pages.len() > 1 {
            for &base in self.pending_pages.keys() {
                self.leaves.prefetch(PAGE_LOG2, base, u32::from(PAGE_LOG2));
            }
        }
        for i in 0..self.pending_pages.len() {
            let base = self.pending_pages.keys()[i];
            let listed = self.leaves.remove(PAGE_LOG2, base, u32::from(PAGE_LOG2));
            debug_assert!(listed, "a pending page's bit is set until settled");
        }
        self.pending_pages.clear();
    }

    fn add_path(&mut self, region_base: u64, level: i8, span_log2: u8) -> bool {
        self.path_spans[(level + 1) as usize] = span_log2;
        if self.keep_pending_path(level, region_base) {
            return true;
        }
        self.paths.insert(level, region_base, u32::from(span_log2))
    }

    /// The path of `level` at `region_base` is cached again while its bit
    /// waits to be cleared (a page invalidation, then the walk of the
    /// fault that follows): the bit is still set, so it just stops
    /// waiting, and neither call reads the bit's chunk. Whether it was
    /// waiting.
    fn keep_pending_path(&mut self, level: i8, region_base: u64) -> bool {
        self.pending_paths
            .stop_waiting(path_key(region_base, level))
    }

    fn remove_path(&mut self, region_base: u64, level: i8) -> bool {
        self.settle_paths();
        let span_log2 = self.path_spans[(level + 1) as usize];
        span_log2 != 0 && self.paths.remove(level, region_base, u32::from(span_log2))
    }

    /// The path of `level` at `region_base` was just unlinked from the
    /// table by a page invalidation that did not read this index
    /// ([`WalkCache::paths_without_index`]): its bit goes at the index's
    /// next use of path bits ([`CacheIndex::settle_paths`]), or stays when
    /// the path is cached again first ([`CacheIndex::keep_pending_path`]:
    /// the walk of the fault that usually follows). The bit's removal was
    /// a hash-map probe and, the region's chunk emptied, its ring's
    /// bookkeeping: ~70 instructions a level of a page invalidation, and
    /// as many again for the refault's insert (README "Stop 35").
    fn unindex_path_later(&mut self, level: i8, region_base: u64) {
        if self.pending_paths.is_full() {
            self.settle_paths_now();
        }
        self.pending_paths.push(path_key(region_base, level));
    }

    /// Before a use of `paths`' bits (other than a prefetch, which reads
    /// nothing): clears the bits [`CacheIndex::unindex_path_later`] left.
    #[inline]
    fn settle_paths(&mut self) {
        if !self.pending_paths.is_empty() {
            self.settle_paths_now();
        }
    }

    fn settle_paths_now(&mut self) {
        for i in 0..self.pending_paths.len() {
            let (base, level) = path_of_key(self.pending_paths.keys()[i]);
            let span_log2 = self.path_spans[(level + 1) as usize];
            let listed = self.paths.remove(level, base, u32::from(span_log2));
            debug_assert!(listed, "a pending path's bit is set until settled");
        }
        self.pending_paths.clear();
    }
}

/// Keys (pages' or paths') whose index bits a page invalidation left set
/// for the index's next use, at most `N` (plain fields: an `ArrayVec`'s
/// checked push and `u32` length cost the page TLBI ~20 instructions).
#[derive(Debug)]
struct WaitingKeys<const N: usize> {
    keys: [u64; N],
    len: usize,
}

impl<const N: usize> Default for WaitingKeys<N> {
    fn default() -> Self {
        WaitingKeys {
            keys: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> WaitingKeys<N> {
    fn keys(&self) -> &[u64] {
        &self.keys[..self.len]
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn is_full(&self) -> bool {
        self.len == N
    }

    /// Adds `key`; the caller settles a full list first.
    fn push(&mut self, key: u64) {
        self.keys[self.len] = key;
        self.len += 1;
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// `key` is cached again while its bit waits to be cleared: it stops
    /// waiting. Whether it was waiting.
    fn stop_waiting(&mut self, key: u64) -> bool {
        let waiting = &mut self.keys[..self.len];
        let Some(at) = waiting.iter().position(|&k| k == key) else {
            return false;
        };
        waiting.swap(at, waiting.len() - 1);
        self.len -= 1;
        true
    }
}

/// One old node fewer in `count` (`WalkCache::old_leaf_nodes` or
/// `old_path_nodes`, writers only: plain loads and stores); `linked` scans
/// the table for old nodes (debug builds check it at zero).
fn old_node_replaced(count: &AtomicUsize, linked: impl FnOnce() -> usize) {
    let old = count.load(Ordering::Relaxed);
    debug_assert_ne!(old, 0, "an old node was linked, so counted");
    // Zero would be a miscount: keep it (and the index's gate) rather
    // than wrap.
    if old == 0 {
        return;
    }
    count.store(old - 1, Ordering::Relaxed);
    if old == 1 {
        // The gate goes: nothing old may be left (a scan, debug only).
        debug_assert_eq!(linked(), 0);
    }
}

/// A flushed index of at most this many chunks is dropped on the spot;
/// a larger one (a few allocations per chunk group of its ordered level) is
/// left to the epoch collector.
const INLINE_DROP_CHUNKS: usize = 64;

/// How [`WalkCache::invalidate_range`] finds the 4 KiB leaves of a short
/// range: by probing the table for each page (what it does), or through
/// the block index as every other size (the general path the tests
/// compare it with).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PageRemoval {
    ByProbe,
    #[cfg(all(test, not(loom)))]
    ByIndex,
}

/// Which cached entries an IPA invalidation removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Levels {
    /// Leaves only (the `L` TLBI forms).
    LeafOnly,
    /// Leaves and intermediate paths.
    Any,
}

/// Stash places of a cache's leaf table ([`Table::with_stash`]): any leaf
/// whose two buckets are full (and no move makes room) may take one, and
/// the eviction takes the oldest leaf of its buckets and the stash. So the
/// leaves of any
/// `LEAF_STASH + BUCKET` pages, whatever their hashes, are held together
/// after at most twice that many faults with no other insert in the
/// context between them (the table's module documentation has the proof,
/// which holds even when they all share both buckets): 20 here, more than
/// the [`crate::budget::WORST_ACCESS_PAGES`] one L2 access may need at
/// once. Four buckets' worth: a miss scans four more cache lines (after
/// its second buckets') before it walks. One bucket under loom (the
/// models are about the protocol, not the bound).
pub const LEAF_STASH: usize = if cfg!(loom) { crate::table::BUCKET } else { 16 };

// The guarantee above covers the worst single access.
const _: () =
    assert!(LEAF_STASH + crate::table::BUCKET >= crate::budget::WORST_ACCESS_PAGES || cfg!(loom));

/// Where [`WalkCache::lookup`] looks for a leaf after every first bucket
/// missed, in this order.
#[derive(Clone, Copy)]
enum Probe {
    Second,
    Stash,
}

/// The key of the leaf table's second-bucket hash ([`Table::with_stash`]):
/// from the cache's secret, but not the key the first bucket's hash uses.
const fn second_bucket_key(secret: u64) -> u64 {
    secret.rotate_left(32) ^ 0x6a09_e667_f3bc_c909
}

/// A slot's cache as its contexts hold it: its `Arc`, with the leaf
/// table's bucket array beside it for the hit path ([`HeldTable`],
/// [`WalkCache::lookup`]).
pub(crate) type HeldCache = HeldTable<WalkCache, CachedWalk>;

/// The cache of one context. See the module documentation.
///
/// Laid out for the hit path ([`WalkCache::lookup`]): what it reads (the
/// flush number, the cached sizes, the hash's key and the leaf table's
/// bucket array, which [`Table`] puts first) is the first cache line of the
/// line-aligned struct, and no field a writer changes on every insert is
/// in it (the leaf table's insert counter and batches come after its
/// buckets). It read two lines, 1.3 KiB apart.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct WalkCache {
    flush: AtomicU64,
    /// Bit n set: blocks of 2^n bytes may be cached.
    leaf_sizes: AtomicU64,
    /// The leaf hash (its key also keys the path hash).
    hasher: LeafHasher,
    leaves: Table<CachedWalk>,
    paths: Table<CachedPath>,
    /// Bit (level + 1) set: paths ending at `level` may be cached.
    path_levels: AtomicU8,
    /// The slot's index while no context holds it (see [`CacheIndex`]).
    /// A plain spin lock: taken only under a context's writer lock, around
    /// a move, so it is never contended by more than a retiring context
    /// and its successor.
    spare_index: spin::Mutex<Option<CacheIndex>>,
    /// Leaf nodes a flush left linked in the leaf table (stamped with an
    /// older flush number) that no index lists: while any is, a probe of
    /// the table cannot stand in for the index's gate
    /// ([`WalkCache::pages_without_index`]). [`WalkCache::flush`] adds the
    /// live leaves it hides; an insert that takes such a node's place
    /// takes one off ([`Displaced::Dead`], [`WalkCache::old_leaf_replaced`]).
    /// No other path unlinks one: an eviction only takes a live node (a
    /// dead one in the key's buckets or the stash is taken first), and
    /// every removal removes only keys an index lists (a live node: keys
    /// are unique in the table) or, on the page path that skips the index,
    /// runs only while this is zero. So it is exact; a missed decrement
    /// would only keep the gated path. Writers only (under the writer
    /// lock, as every read): plain loads and stores. Last in the struct:
    /// off the hit path's line.
    old_leaf_nodes: AtomicUsize,
    /// `old_leaf_nodes` for the path table: path nodes a flush left
    /// linked that no index lists. While none is, a page invalidation's
    /// path removal probes the table alone ([`WalkCache::paths_without_index`]).
    /// Kept as `old_leaf_nodes` is ([`WalkCache::old_path_replaced`]), and
    /// exact for the same reasons: the path table has no stash and no
    /// second bucket, an eviction takes a live node only, and every other
    /// removal removes a listed key or runs while this is zero.
    old_path_nodes: AtomicUsize,
}

impl WalkCache {
    /// A cache of `leaf_capacity` leaves in buckets (and [`LEAF_STASH`]
    /// more; each leaf with a second bucket) and `path_capacity` paths,
    /// its hashes keyed by `secret`.
    pub(crate) fn new(leaf_capacity: usize, path_capacity: usize, secret: u64) -> Self {
        let leaves = Table::with_stash(leaf_capacity, LEAF_STASH, Some(second_bucket_key(secret)));
        let paths = Table::with_capacity(path_capacity);
        let index = CacheIndex::with_capacity(leaves.capacity(), paths.capacity());
        WalkCache {
            hasher: LeafHasher::new(leaf_capacity, secret),
            leaves,
            paths,
            spare_index: spin::Mutex::new(Some(index)),
            leaf_sizes: AtomicU64::new(0),
            path_levels: AtomicU8::new(0),
            flush: AtomicU64::new(0),
            old_leaf_nodes: AtomicUsize::new(0),
            old_path_nodes: AtomicUsize::new(0),
        }
    }

    /// Leaves a cache made for `leaf_capacity` leaves in buckets (a power
    /// of two, at least one bucket) holds: its buckets' and its stash's.
    pub(crate) const fn leaf_places(leaf_capacity: usize) -> usize {
        leaf_capacity + LEAF_STASH
    }

    /// The table hash of leaf key `key` ([`leaf_hash`]).
    #[inline]
    fn leaf_hash(&self, key: u64) -> u64 {
        self.hasher.hash(key)
    }

    /// Asks for the leaf bucket a lookup of the 4 KiB page at `page` reads
    /// first (a translate's guess at its next fault, see `Service::translate`).
    /// Reads nothing.
    #[inline]
    pub(crate) fn prefetch_page(&self, page: u64) {
        self.leaves
            .prefetch(self.leaf_hash(leaf_key(page & !PAGE_MASK, PAGE_LOG2)));
    }

    /// The leaf table's buckets for a 4 KiB leaf at `ipa` (see
    /// [`crate::context::Context::page_buckets`]).
    #[cfg(loom)]
    pub(crate) fn page_buckets(&self, ipa: u64) -> (usize, Option<usize>) {
        let hash = self.leaf_hash(leaf_key(ipa & !0xfff, 12));
        (
            self.leaves.bucket_index(hash),
            self.leaves.second_index(hash),
        )
    }

    /// The table hash of path key `key`: a bijection of the key, keyed.
    fn path_hash(&self, key: u64) -> u64 {
        hash2(key, self.hasher.secret)
    }

    /// Gives a context's placeholder index the slot's sized one, if the
    /// slot holds it (a context's first insert, or its first after a
    /// flush). Caller holds the writer lock that guards `index`.
    fn take_index(&self, index: &mut CacheIndex) {
        if !index.sized {
            if let Some(sized) = self.spare_index.lock().take() {
                debug_assert_eq!(index.live_leaves() + index.live_paths(), 0);
                *index = sized;
            }
        }
    }

    /// The growths and bytes of the slot's index while no context holds
    /// it.
    pub(crate) fn spare_index_allocations(&self) -> Option<(u32, usize)> {
        self.spare_index
            .lock()
            .as_ref()
            .map(|i| (i.growths(), i.allocated_bytes()))
    }

    /// The current flush number.
    pub(crate) fn flush_number(&self) -> u64 {
        self.flush.load(Ordering::Acquire)
    }

    /// The cached leaf containing `ipa`, if any, for a context whose
    /// entries are those stamped below `retired_at` (its retirement's
    /// flush number; `u64::MAX` while it is live). Lock-free.
    ///
    /// A cache passes from a retired context to its slot's next one: the
    /// retirement stores `retired_at` and then bumps the flush number
    /// (Release). A reader that loads the bumped number (Acquire) therefore
    /// sees `retired_at` and takes nothing; one that loads an older number
    /// only accepts entries stamped with it, which predate the successor.
    /// That pair (the bump's Release, this Acquire of the flush number) is
    /// what the loom model `shadow_recycle` fails without; `retired_at`'s
    /// own Release/Acquire are not needed for it.
    ///
    /// Inlined into its callers (the hit path, `Service::lookup`, is in
    /// another crate): the first-bucket probes, where a hit almost always
    /// is, run here; the second buckets and the stash, only after every
    /// first bucket missed, are [`WalkCache::lookup_beyond_first`], out of
    /// line.
    ///
    /// `hasher` is this cache's leaf hash ([`WalkCache::hasher`]), or the
    /// directory's copy of it: the page's key and hash then depend on
    /// `ipa` and the directory alone, so the CPU computes them while the
    /// context's and the cache's lines are read, not after (the 4 KiB
    /// size, the smallest a granule has, is probed first whenever the
    /// cache holds pages). A `hasher` not this cache's could only make
    /// lookups miss (keys are compared), never hit wrongly.
    ///
    /// `cache` is the cache as a context holds it ([`HeldCache`]): the
    /// first-bucket probes take the leaf table's bucket array from there,
    /// not from the cache's line, so they need not wait for that line.
    ///
    /// With the hit comes its leaf hash (of its [`CachedWalk::cache_key`]),
    /// which the probe that found it computed: for
    /// [`WalkCache::still_holds`], so that a fault's install does not hash
    /// the key again (about 30 instructions).
    #[inline(always)]
    pub(crate) fn lookup<'g>(
        cache: &HeldCache,
        ipa: u64,
        retired_at: &AtomicU64,
        hasher: &LeafHasher,
        guard: &'g Guard,
    ) -> Option<(&'g CachedWalk, u64)> {
        debug_assert_eq!(*hasher, cache.hasher);
        let page_key = leaf_key(ipa & !PAGE_MASK, PAGE_LOG2);
        let page_hash = hasher.hash(page_key);
        let flush = cache.flush.load(Ordering::Acquire);
        if flush >= retired_at.load(Ordering::Acquire) {
            return None;
        }
        // A hint (see `insert_leaf`): a bit not seen yet is a miss, and
        // the flush number's Acquire above already orders the probes.
        let all_sizes = cache.leaf_sizes.load(Ordering::Relaxed);
        // Each size's first bucket, then (out of line) each size's second,
        // then the stash: a leaf in its first bucket (the common hit) is
        // found without reading another line.
        if all_sizes & (1 << PAGE_LOG2) != 0 {
            let found = cache.get_in_bucket(page_key, page_hash, guard);
            if let Some(entry) = found.filter(|e| e.flush == flush) {
                return Some((entry, page_hash));
            }
        }
        let mut sizes = all_sizes & !(1 << PAGE_LOG2);
        while sizes != 0 {
            let size_log2 = sizes.trailing_zeros() as u8;
            sizes &= sizes - 1;
            let key = leaf_key(ipa & !((1u64 << size_log2) - 1), size_log2);
            let hash = hasher.hash(key);
            let found = cache.get_in_bucket(key, hash, guard);
            if let Some(entry) = found.filter(|e| e.flush == flush) {
                return Some((entry, hash));
            }
        }
        cache
            .lookup_beyond_first(ipa, flush, all_sizes, guard)
            .map(|entry| (entry, hasher.hash(entry.cache_key())))
    }

    /// The cache as a context holds it (see [`HeldCache`]).
    pub(crate) fn held(cache: Arc<WalkCache>) -> HeldCache {
        HeldTable::new(cache, |cache| &cache.leaves)
    }

    /// The cache's leaf hash (for [`WalkCache::lookup`]).
    pub(crate) fn hasher(&self) -> &LeafHasher {
        &self.hasher
    }

    /// [`WalkCache::lookup`] after every first bucket missed: each size's
    /// second bucket, then the stash, for entries of flush number `flush`.
    ///
    /// Except for a size whose first bucket holds its key with another
    /// flush number (an entry a flush left: the usual miss after one): the
    /// table links at most one node per key (an insert replaces the node
    /// of its key wherever it is, a move to the second bucket takes the
    /// node itself), so no entry of this flush is in that key's second
    /// bucket or the stash, and those lines (random ones, each a miss) are
    /// not read. The first buckets are probed again here, not told apart
    /// by `lookup`, so the hit path's code is unchanged; a probe again is
    /// as good as the first (an entry of this flush found now is
    /// returned), and a node of this flush linked throughout the lookup is
    /// still never missed: while it is linked no other node has its key,
    /// and the probe of its second bucket follows a probe of its first as
    /// before.
    #[cold]
    #[inline(never)]
    fn lookup_beyond_first<'g>(
        &self,
        ipa: u64,
        flush: u64,
        all_sizes: u64,
        guard: &'g Guard,
    ) -> Option<&'g CachedWalk> {
        let mut unsettled = 0u64;
        let mut sizes = all_sizes;
        while sizes != 0 {
            let size_log2 = sizes.trailing_zeros() as u8;
            sizes &= sizes - 1;
            let key = leaf_key(ipa & !((1u64 << size_log2) - 1), size_log2);
            match self.leaves.get_in_bucket(key, self.leaf_hash(key), guard) {
                Some(entry) if entry.flush == flush => return Some(entry),
                Some(_) => {}
                None => unsettled |= 1 << size_log2,
            }
        }
        for probe in [Probe::Second, Probe::Stash] {
            let mut sizes = unsettled;
            while sizes != 0 {
                let size_log2 = sizes.trailing_zeros() as u8;
                sizes &= sizes - 1;
                let key = leaf_key(ipa & !((1u64 << size_log2) - 1), size_log2);
                let hash = self.leaf_hash(key);
                let found = match probe {
                    Probe::Second => self.leaves.get_in_second(key, hash, guard),
                    Probe::Stash => self.leaves.get_in_stash(key, hash, guard),
                };
                if let Some(entry) = found.filter(|e| e.flush == flush) {
                    return Some(entry);
                }
            }
        }
        None
    }

    /// The deepest cached path for `ipa`, if any: like [`WalkCache::lookup`].
    pub(crate) fn lookup_path<'g>(
        &self,
        walker: &Stage2Walker,
        ipa: u64,
        retired_at: &AtomicU64,
        guard: &'g Guard,
    ) -> Option<&'g CachedPath> {
        let flush = self.flush.load(Ordering::Acquire);
        if flush >= retired_at.load(Ordering::Acquire) {
            return None;
        }
        let levels = self.path_levels.load(Ordering::Acquire);
        for level in (-1i8..=2).rev() {
            if levels & (1 << (level + 1)) == 0 {
                continue;
            }
            let span_log2 = level_lsb(walker, level);
            if span_log2 >= 64 {
                continue;
            }
            let key = path_key(ipa & !((1u64 << span_log2) - 1), level);
            if let Some(path) = self.paths.get(key, self.path_hash(key), guard) {
                if path.flush == flush {
                    return Some(path);
                }
            }
        }
        None
    }

    /// Inserts a walk result; returns the (base, size) of the live entry a
    /// full bucket evicted for it, if any (one insert takes one place, so
    /// at most one). Caller holds the writer lock that guards `index`.
    pub(crate) fn insert_leaf(
        &self,
        index: &mut CacheIndex,
        entry: CachedWalk,
        guard: &Guard,
    ) -> Option<(u64, u64)> {
        self.take_index(index);
        let flush = self.flush.load(Ordering::Relaxed);
        let entry = CachedWalk { flush, ..entry };
        // The size bit is a hint that only grows: a reader that does not
        // see it yet simply misses (a walk), and the entry itself is
        // published by its slot's Release store. So this Release is
        // stronger than needed (no model fails with Relaxed), and `lookup`
        // loads the bits Relaxed; `path_levels` likewise. Set only when
        // missing: a read-modify-write on every insert would take the
        // line the hit path reads (`WalkCache`'s first) away from every
        // other core's cache each time.
        let size_bit = 1 << entry.size_log2;
        if self.leaf_sizes.load(Ordering::Relaxed) & size_bit == 0 {
            self.leaf_sizes.fetch_or(size_bit, Ordering::Release);
        }
        let key = entry.cache_key();
        let (base, size_log2) = (entry.ipa_base, entry.size_log2);
        match self
            .leaves
            .insert(entry, self.leaf_hash(key), guard, |n| n.flush != flush)
            .0
        {
            Displaced::SameKey => None,
            Displaced::Nothing => {
                index.add_leaf(base, size_log2);
                None
            }
            Displaced::Dead => {
                self.old_leaf_replaced(guard);
                index.add_leaf(base, size_log2);
                None
            }
            Displaced::Evicted(old) => {
                let (old_base, old_size) = (old & !0xfff, (old & 0xfff) as u8);
                index.remove_leaf(old_base, old_size);
                index.add_leaf(base, size_log2);
                Some((old_base, 1 << old_size))
            }
        }
    }

    /// Inserts the paths of a successful walk that are not cached yet,
    /// except those ending at or above level `served_through` (the walk
    /// read them from a cached path: they are cached, or were evicted
    /// since, and leaving them out only caches less); returns how many
    /// live entries were evicted.
    pub(crate) fn insert_paths(
        &self,
        index: &mut CacheIndex,
        walker: &Stage2Walker,
        t: &Translation,
        served_through: Option<i8>,
        guard: &Guard,
    ) -> usize {
        // The deepest table descriptor of the trail: when the cached path
        // served it, there is nothing to insert (a partial walk from the
        // path above its leaf, the common miss).
        let trail = t.trail.as_slice();
        let tables = trail.len().saturating_sub(1).min(MAX_PATH);
        if tables == 0 || served_through.is_some_and(|served| trail[tables - 1].level <= served) {
            return 0;
        }
        self.take_index(index);
        let flush = self.flush.load(Ordering::Relaxed);
        let (paths, count) = paths_of(walker, t);
        let mut evicted = 0;
        for path in paths.iter().take(count) {
            if served_through.is_some_and(|served| path.level <= served) {
                continue;
            }
            let key = path.cache_key();
            let hash = self.path_hash(key);
            if self
                .paths
                .get(key, hash, guard)
                .is_some_and(|p| p.flush == flush && p == &CachedPath { flush, ..*path })
            {
                continue;
            }
            self.path_levels
                .fetch_or(1 << (path.level + 1), Ordering::Release);
            let path = CachedPath { flush, ..*path };
            evicted += usize::from(self.insert_path(index, path, hash, guard).is_some());
        }
        evicted
    }

    /// Inserts `path` (stamped with the current flush number; `hash` its
    /// path hash) and lists it in `index`; the key of the path evicted for
    /// it, if any. Caller holds the writer lock that guards `index`.
    fn insert_path(
        &self,
        index: &mut CacheIndex,
        path: CachedPath,
        hash: u64,
        guard: &Guard,
    ) -> Option<u64> {
        let flush = path.flush;
        match self.paths.insert(path, hash, guard, |n| n.flush != flush).0 {
            Displaced::SameKey => None,
            Displaced::Nothing => {
                index.add_path(path.region_base, path.level, path.span_log2);
                None
            }
            Displaced::Dead => {
                self.old_path_replaced(guard);
                index.add_path(path.region_base, path.level, path.span_log2);
                None
            }
            Displaced::Evicted(old) => {
                let (old_base, old_level) = path_of_key(old);
                index.remove_path(old_base, old_level);
                index.add_path(path.region_base, path.level, path.span_log2);
                Some(old)
            }
        }
    }

    /// Asks for the cache lines an [`WalkCache::invalidate_range`] of a
    /// short `[start, end)` will touch first: the table bucket of every
    /// leaf block in the range (up to [`SHORT_RANGE_BLOCKS`] of a size, for
    /// the sizes the context has cached) and of every path block the
    /// range's first and last IPA fall in, and their block-index chunks.
    /// Nothing is read or changed; a longer range is left alone for that
    /// size (its removal asks for its buckets chunk by chunk). Caller
    /// holds the writer lock.
    pub(crate) fn prefetch_range(&self, index: &CacheIndex, start: u64, end: u64, levels: Levels) {
        if start >= end {
            return;
        }
        let last = end - 1;
        let mut sizes = index.leaf_sizes;
        while sizes != 0 {
            let size_log2 = sizes.trailing_zeros() as u8;
            sizes &= sizes - 1;
            let mask = !((1u64 << size_log2) - 1);
            let (first, second) = (start & mask, last & mask);
            let blocks = (second.wrapping_sub(first) >> size_log2) + 1;
            if blocks > SHORT_RANGE_BLOCKS {
                continue;
            }
            for n in 0..blocks {
                let key = leaf_key(first + (n << size_log2), size_log2);
                self.leaves.prefetch(self.leaf_hash(key));
            }
            if self.pages_without_index(size_log2, first, second) {
                // Its chunk is read at the index's next use, not now.
                continue;
            }
            // At most two chunks: the first block's and the last's (one
            // for a page: each prefetch costs a TLB lookup, a page walk
            // when it misses).
            index
                .leaves
                .prefetch(size_log2, first, u32::from(size_log2));
            if second != first {
                index
                    .leaves
                    .prefetch(size_log2, second, u32::from(size_log2));
            }
        }
        if levels == Levels::Any {
            for level in -1i8..=2 {
                let span_log2 = index.path_spans[(level + 1) as usize];
                if span_log2 == 0 || span_log2 >= 64 {
                    continue;
                }
                let mask = !((1u64 << span_log2) - 1);
                let (first, second) = (start & mask, last & mask);
                if second.wrapping_sub(first) >> span_log2 > 1 {
                    continue;
                }
                // The first region's, and the last's when it is another
                // (a plain pair of calls: an iterator over the two options
                // cost ~30 instructions a level).
                if second == first && self.paths_without_index() {
                    // Its chunk is read at the index's next use, not now
                    // (`invalidate_range`'s probe path).
                    let key = path_key(first, level);
                    self.paths.prefetch(self.path_hash(key));
                    continue;
                }
                self.prefetch_path(index, level, first, span_log2);
                if second != first {
                    self.prefetch_path(index, level, second, span_log2);
                }
            }
        }
    }

    /// [`WalkCache::prefetch_range`]'s lines of the level-`level` path of
    /// the region at `base`: its table bucket and its index chunk.
    #[inline(always)]
    fn prefetch_path(&self, index: &CacheIndex, level: i8, base: u64, span_log2: u8) {
        let key = path_key(base, level);
        self.paths.prefetch(self.path_hash(key));
        index.paths.prefetch(level, base, u32::from(span_log2));
    }

    /// log2 of the largest leaf the cache has held since it was made (0
    /// when none): no shadow entry built from its leaves is larger.
    /// Lock-free (the readers' hint of the sizes, which only grows).
    pub(crate) fn largest_leaf_log2(&self) -> u32 {
        63u32.saturating_sub(self.leaf_sizes.load(Ordering::Relaxed).leading_zeros())
    }

    /// Removes every entry overlapping `[start, end)` (leaves, and paths
    /// too for [`Levels::Any`]); visits only entries that overlap. The
    /// removed leaves are reported to `removed_leaf` as spans (base,
    /// length): every removed leaf lies in a reported span, and every
    /// span lies within the removed leaves' hull (one span per block-index
    /// chunk of a long range: a call per 4 KiB leaf cost ~6 instructions a
    /// page). Returns how many went. Caller holds the writer lock.
    pub(crate) fn invalidate_range(
        &self,
        index: &mut CacheIndex,
        start: u64,
        end: u64,
        levels: Levels,
        guard: &Guard,
        removed_leaf: impl FnMut(u64, u64),
    ) -> usize {
        let pages = PageRemoval::ByProbe;
        self.invalidate_range_with(index, start, end, levels, guard, removed_leaf, pages)
    }

    /// [`WalkCache::invalidate_range`] with the page leaves removed as
    /// `pages` says ([`PageRemoval::ByIndex`] is the general path, which
    /// the tests compare the page probes with).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn invalidate_range_with(
        &self,
        index: &mut CacheIndex,
        start: u64,
        end: u64,
        levels: Levels,
        guard: &Guard,
        mut removed_leaf: impl FnMut(u64, u64),
        pages: PageRemoval,
    ) -> usize {
        let mut removed = 0;
        if start >= end {
            return 0;
        }
        let last = end - 1;
        // The intermediate entries first: there are few of them, so their
        // lines are in the CPU's caches even in a large cache, and this
        // work runs while the leaf buckets asked for by `prefetch_range`
        // (memory round trips in a large cache) are on their way.
        if levels == Levels::Any {
            for level in -1i8..=2 {
                let span_log2 = index.path_spans[(level + 1) as usize];
                if span_log2 == 0 {
                    continue;
                }
                let mask = !((1u64 << span_log2) - 1);
                if start & mask == last & mask {
                    // One region (a page's invalidation): one probe, as
                    // for a leaf, not a span walk.
                    let base = start & mask;
                    let key = path_key(base, level);
                    if self.paths_without_index() {
                        // Every node the table links is a listed one: the
                        // table's probe is the gate, and the index's bit
                        // goes at its next use.
                        if self.paths.remove_batched(key, self.path_hash(key), guard) {
                            index.unindex_path_later(level, base);
                            removed += 1;
                        }
                        continue;
                    }
                    index.settle_paths();
                    if index.paths.remove(level, base, u32::from(span_log2))
                        && self.paths.remove_batched(key, self.path_hash(key), guard)
                    {
                        removed += 1;
                    }
                    continue;
                }
                index.settle_paths();
                index
                    .paths
                    .drain_overlapping(level, u32::from(span_log2), start, last, |base| {
                        let key = path_key(base, level);
                        if self.paths.remove_batched(key, self.path_hash(key), guard) {
                            removed += 1;
                        }
                    });
            }
        }
        let mut sizes = index.leaf_sizes;
        while sizes != 0 {
            let size_log2 = sizes.trailing_zeros() as u8;
            sizes &= sizes - 1;
            let base = start & !((1u64 << size_log2) - 1);
            let last_base = last & !((1u64 << size_log2) - 1);
            if pages == PageRemoval::ByProbe && self.pages_without_index(size_log2, base, last_base)
            {
                // Up to `SHORT_RANGE_BLOCKS` 4 KiB leaves, and every node
                // the table links is one the index lists (or one waiting
                // below): each page's table probe is the gate (its bucket
                // is the one `prefetch_range` asked for), and the index's
                // bits go at its next use.
                if base != last_base {
                    removed += self.remove_pages_by_probe(
                        index,
                        base,
                        last_base,
                        guard,
                        &mut removed_leaf,
                    );
                    continue;
                }
                let key = leaf_key(base, size_log2);
                if self.leaves.remove_batched(key, self.leaf_hash(key), guard) {
                    index.unindex_page_later(base);
                    removed_leaf(base, 1 << size_log2);
                    removed += 1;
                }
                continue;
            }
            index.settle_pages(size_log2);
            removed += self.invalidate_leaves(
                &mut index.leaves,
                size_log2,
                start,
                last,
                guard,
                &mut removed_leaf,
            );
        }
        removed
    }

    /// Removes the 4 KiB leaves from `first` to `last` (page bases, at
    /// most [`SHORT_RANGE_BLOCKS`] pages, [`WalkCache::pages_without_index`]
    /// true) by a table probe per page, each removed page's index bit left
    /// to [`CacheIndex::unindex_page_later`], and reports their hull as one
    /// span. A 2-page range's chunk drain through the index cost ~450
    /// instructions more (README "Stop 32"). Out of line: the page TLBI's
    /// one-page path stays as it was. Caller holds the writer lock.
    #[inline(never)]
    fn remove_pages_by_probe(
        &self,
        index: &mut CacheIndex,
        first: u64,
        last: u64,
        guard: &Guard,
        removed_leaf: &mut impl FnMut(u64, u64),
    ) -> usize {
        let (mut removed, mut lowest, mut highest) = (0, u64::MAX, 0);
        let mut page = first;
        loop {
            let key = leaf_key(page, PAGE_LOG2);
            if self.leaves.remove_batched(key, self.leaf_hash(key), guard) {
                index.unindex_page_later(page);
                lowest = lowest.min(page);
                highest = page;
                removed += 1;
            }
            if page == last {
                break;
            }
            page += 1 << PAGE_LOG2;
        }
        if removed != 0 {
            removed_leaf(lowest, highest - lowest + (1 << PAGE_LOG2));
        }
        removed
    }

    /// Whether removing the leaves of `2^size_log2` bytes from `first` to
    /// `last` (block bases) is a page's or a short range's 4 KiB leaves (up
    /// to [`SHORT_RANGE_BLOCKS`]: the buckets `prefetch_range` asks for)
    /// that may skip the block index: their removal probes the leaf table
    /// page by page and leaves the index's bits to
    /// [`CacheIndex::unindex_page_later`].
    /// The index is the gate elsewhere because a flush leaves old nodes
    /// linked with no index listing them (a probe of the table would find
    /// and count such a node); while none is linked (`old_leaf_nodes` is
    /// zero: none yet, or inserts have taken every one's place), every node
    /// the table links is listed, so a tag match (the leaf hash is a
    /// bijection of the key) is a live leaf.
    /// Larger sizes keep the gate: a block's removal widens the shadow
    /// unmap to the block. Caller holds the writer lock.
    fn pages_without_index(&self, size_log2: u8, first: u64, last: u64) -> bool {
        size_log2 == PAGE_LOG2
            && last.wrapping_sub(first) >> PAGE_LOG2 < SHORT_RANGE_BLOCKS
            && self.old_leaf_nodes.load(Ordering::Relaxed) == 0
    }

    /// Whether a page invalidation's path removals may skip the index:
    /// while no old path node is linked (`old_path_nodes`), every node the
    /// path table links is listed, so its probe finds only live paths. (A
    /// flush leaves old nodes linked that no index lists: a probe would
    /// find and count one.) Caller holds the writer lock.
    #[inline]
    fn paths_without_index(&self) -> bool {
        self.old_path_nodes.load(Ordering::Relaxed) == 0
    }

    /// [`WalkCache::old_leaf_replaced`] for the path table.
    fn old_path_replaced(&self, guard: &Guard) {
        old_node_replaced(&self.old_path_nodes, || self.old_paths_linked(guard));
    }

    /// Old path nodes the table links, by a scan of every place: what
    /// `old_path_nodes` counts. For assertions and tests.
    fn old_paths_linked(&self, guard: &Guard) -> usize {
        let flush = self.flush.load(Ordering::Relaxed);
        self.paths.count_linked(guard, |n| n.flush != flush)
    }

    /// An insert unlinked an old node ([`Displaced::Dead`]: one the table
    /// found dead, stamped by an older flush), which no index listed: one
    /// fewer. At zero the page path may skip the index again. Caller holds
    /// the writer lock. Not cold: after a VMID flush every walking fault's
    /// insert comes here.
    fn old_leaf_replaced(&self, guard: &Guard) {
        old_node_replaced(&self.old_leaf_nodes, || self.old_leaves_linked(guard));
    }

    /// Old leaf nodes the table links, by a scan of every place: what
    /// `old_leaf_nodes` counts. For assertions and tests.
    fn old_leaves_linked(&self, guard: &Guard) -> usize {
        let flush = self.flush.load(Ordering::Relaxed);
        self.leaves.count_linked(guard, |n| n.flush != flush)
    }

    /// Removes the leaves of `2^size_log2` bytes overlapping `[start,
    /// last]`, one block-index chunk (up to 64 leaves) at a time, with the
    /// buckets of chunk k + 1 asked for before chunk k's are read: in a
    /// large cache every bucket is a miss, and this way a long range waits
    /// for about one of them per chunk, not one per leaf (a short range
    /// has been prefetched by [`WalkCache::prefetch_range`]).
    fn invalidate_leaves(
        &self,
        leaves: &mut BlockIndex<u8>,
        size_log2: u8,
        start: u64,
        last: u64,
        guard: &Guard,
        removed_leaf: &mut impl FnMut(u64, u64),
    ) -> usize {
        let mask = !((1u64 << size_log2) - 1);
        if start & mask == last & mask {
            // One block (a page's invalidation): no chunk walk.
            let base = start & mask;
            let key = leaf_key(base, size_log2);
            if leaves.remove(size_log2, base, u32::from(size_log2))
                && self.leaves.remove_batched(key, self.leaf_hash(key), guard)
            {
                removed_leaf(base, 1 << size_log2);
                return 1;
            }
            return 0;
        }
        let mut cursor = ChunkCursor::new(size_log2, u32::from(size_log2), start, last);
        let Some(mut blocks) = leaves.drain_next_chunk(&mut cursor) else {
            return 0;
        };
        // Every block of a chunk is in the chunk of its first.
        let hashes_of = |blocks: ChunkBlocks| {
            blocks
                .bases()
                .next()
                .map(|first| self.hasher.chunk_hashes(size_log2, first))
        };
        let prefetch = |blocks: ChunkBlocks, hashes: Option<ChunkHashes>| {
            if let Some(hashes) = hashes.filter(|_| blocks.len() > 1) {
                for base in blocks.bases() {
                    self.leaves.prefetch(hashes.of(base));
                }
            }
        };
        let mut hashes = hashes_of(blocks);
        prefetch(blocks, hashes);
        let mut removed = 0;
        let mut run = RemovedRun::new();
        loop {
            let more = leaves.drain_next_chunk(&mut cursor);
            let next_hashes = more.and_then(hashes_of);
            if let Some(next) = more {
                prefetch(next, next_hashes);
            }
            if let Some(hashes) = hashes {
                // The chunk's removed leaves, reported as one span (from
                // the first's base to the last's end: bases ascend).
                let mut span: Option<(u64, u64)> = None;
                // The chunk's nodes go to the collector together when
                // there are enough of them (`RUN_MIN_NODES`).
                let together = blocks.len() >= RUN_MIN_NODES;
                for base in blocks.bases() {
                    let key = leaf_key(base, size_log2);
                    let hash = hashes.of(base);
                    let unlinked = if together {
                        self.leaves.remove_into_run(key, hash, guard, &mut run)
                    } else {
                        self.leaves.remove_batched(key, hash, guard)
                    };
                    if unlinked {
                        removed += 1;
                        span = Some((span.map_or(base, |(first, _)| first), base));
                    }
                }
                if together {
                    self.leaves.retire_run(&mut run, guard);
                }
                if let Some((first, last)) = span {
                    removed_leaf(first, last - first + (1 << size_log2));
                }
            }
            match more {
                Some(next) => (blocks, hashes) = (next, next_hashes),
                None => return removed,
            }
        }
    }

    /// Drops everything at once: one flush-number bump hides every entry
    /// from lookups; their slots are reused by later inserts (and freed
    /// with the slot). The index is cleared in place (O(1): its hashed
    /// levels' stamps move on; a large ordered level is handed to the epoch
    /// collector), so the flush costs O(1) whatever the cache holds and
    /// allocates nothing (a retirement then hands the index to the slot's
    /// next context: [`WalkCache::park_index`]).
    /// Returns how many entries were live. Caller holds the writer lock.
    pub(crate) fn flush(&self, index: &mut CacheIndex, guard: &Guard) -> usize {
        self.flush.fetch_add(1, Ordering::AcqRel);
        let live = index.live_leaves() + index.live_paths();
        // Their nodes stay linked, listed nowhere once cleared below (the
        // pending pages' are unlinked already: `live_leaves` leaves them
        // out).
        let old = self.old_leaf_nodes.load(Ordering::Relaxed);
        self.old_leaf_nodes
            .store(old + index.live_leaves(), Ordering::Relaxed);
        let old = self.old_path_nodes.load(Ordering::Relaxed);
        self.old_path_nodes
            .store(old + index.live_paths(), Ordering::Relaxed);
        // Pending pages' and paths' nodes are gone already: their bits go
        // with the rest.
        index.pending_pages.clear();
        index.pending_paths.clear();
        let ordered = (index.leaves.clear(), index.paths.clear());
        if ordered.0.len() + ordered.1.len() <= INLINE_DROP_CHUNKS {
            // Small: dropping it here costs less than deferring it.
            drop(ordered);
        } else {
            guard.defer(move || drop(ordered));
        }
        index.leaf_sizes = 0;
        index.path_spans = [0; MAX_PATH];
        live
    }

    /// Hands a retired context's index (flushed: empty) back to the slot,
    /// for the slot's next context to take at its first insert: the index
    /// is made once per slot, never per context. Caller holds the retired
    /// context's writer lock.
    pub(crate) fn park_index(&self, index: &mut CacheIndex) {
        debug_assert_eq!(index.live_leaves() + index.live_paths(), 0);
        if index.sized {
            *self.spare_index.lock() = Some(core::mem::take(index));
        }
    }

    /// Whether `entry`, a live leaf a lookup of this cache returned under
    /// `guard`, is still cached and live: its node is still linked (not
    /// evicted, removed or replaced) and no flush came since. Compares the
    /// pointers of its buckets and the stash with the entry's address;
    /// reads no node. Caller holds the writer lock (so no insert, move or
    /// removal runs). `hash`: the entry's leaf hash, as
    /// [`WalkCache::lookup`] returned it (another would only send
    /// the search to other buckets: a linked node could be missed, and
    /// then inserted again, never a node that is not linked found).
    pub(crate) fn still_holds(&self, entry: &CachedWalk, hash: u64, guard: &Guard) -> bool {
        debug_assert_eq!(hash, self.leaf_hash(entry.cache_key()));
        entry.flush == self.flush.load(Ordering::Acquire) && self.leaves.links(entry, hash, guard)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::context::{mix, Capacity, ContextKey, Directory};
    use crate::sync::epoch;
    use crate::table::{BUCKET, EMPTY_RING};
    use alloc::vec::Vec;
    use walker::{ExposedFeatures, IdRegisters};

    fn leaf(ipa_base: u64, output_base: u64) -> CachedWalk {
        CachedWalk {
            ipa_base,
            size_log2: 12,
            output_base,
            level: 3,
            s2ap: S2Ap::from_bits(3),
            execute: Execute::from_xn(0),
            dirty_bit_modifier: false,
            mem_attr: 0xf,
            shareability: Shareability::InnerShareable,
            descriptor: output_base | 0x7ff,
            descriptor_address: 0x3000,
            flush: 0,
        }
    }

    /// `leaf_hash` is a bijection of leaf keys (a tag match is a key
    /// match) for every region size a table uses: its inverse, written
    /// out, recovers every key; and the 4 KiB leaves of one region take
    /// consecutive buckets.
    #[test]
    fn leaf_hash_is_invertible_and_keeps_neighbours_together() {
        // Inverse of an odd multiplier modulo 2^64 (Newton's iteration).
        let inverse_of = |k: u64| {
            let mut inv = k;
            for _ in 0..6 {
                inv = inv.wrapping_mul(2u64.wrapping_sub(k.wrapping_mul(inv)));
            }
            inv
        };
        let secret = 0x5eed_1234_abcd_0987u64;
        let unhash = |h: u64, n: u32| {
            let low = h & 0xffff_ffff;
            let neighbour_bits = ((1u64 << n) - 1) << 12;
            let neighbour = (low & neighbour_bits) >> 12;
            let mixed_low = region_mix((low & !neighbour_bits) as u32 ^ secret as u32);
            let folded = ((h >> 32) as u32).wrapping_sub(neighbour as u32) ^ mixed_low;
            let mixed_high = folded ^ (folded >> 16);
            let high =
                mixed_high.wrapping_mul(inverse_of(0x85eb_ca6b) as u32) ^ (secret >> 32) as u32;
            (u64::from(high) << 32) | low
        };
        let mut x = 0x1234_5678_9abc_def1u64;
        for n in 0..=NEIGHBOURS_LOG2 {
            for i in 0..5_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let size_log2 = [12u8, 21, 30, 14, 16, 25, 29, 42][(i % 8) as usize];
                let base = x & !((1u64 << size_log2) - 1);
                for key in [leaf_key(base, size_log2), leaf_key(i << 12, 12)] {
                    assert_eq!(
                        unhash(leaf_hash(key, neighbour_bits(n), secret), n),
                        key,
                        "{key:#x} n {n}"
                    );
                }
            }
            let bucket = |key: u64| (leaf_hash(key, neighbour_bits(n), secret) >> 32) & 0xffff;
            let region = 0x80_1234_0000u64;
            let first = bucket(leaf_key(region, 12));
            for page in 0..1u64 << n {
                assert_eq!(
                    bucket(leaf_key(region + (page << 12), 12)),
                    (first + page) & 0xffff
                );
            }
        }
    }

    /// Review 38 R38-1: the bucket of a leaf depends on the service's
    /// secret, through either half of the key: pages that collide under
    /// one secret (found with the hash, as whoever picks L2 IPAs could if
    /// it were unkeyed) are spread under another.
    #[test]
    fn leaf_buckets_are_keyed() {
        let buckets = 1024u64;
        let bucket = |key: u64, secret: u64| {
            (leaf_hash(key, neighbour_bits(6), secret) >> 32) & (buckets - 1)
        };
        for (step, secrets) in [
            // Regions of the low half, and IPAs differing above bit 32.
            (1u64 << 21, [0x1234_5678, 0x1234_5679]),
            (1u64 << 32, [0x1234_5678_0000_0000, 0x1234_5679_0000_0000]),
        ] {
            let target = bucket(leaf_key(0x3000, 12), secrets[0]);
            let colliding: alloc::vec::Vec<u64> = (0..1u64 << 16)
                .map(|r| leaf_key((r * step) | 0x3000, 12))
                .filter(|&k| bucket(k, secrets[0]) == target)
                .take(8)
                .collect();
            assert_eq!(colliding.len(), 8, "step {step:#x}");
            let other = bucket(colliding[0], secrets[1]);
            let still = colliding
                .iter()
                .filter(|&&k| bucket(k, secrets[1]) == other)
                .count();
            assert!(
                still <= 2,
                "step {step:#x}: {still} of 8 still share a bucket"
            );
        }
    }

    /// A table with fewer buckets than a region has pages uses regions of
    /// as many pages as it has buckets, so pages a multiple of the bucket
    /// count apart do not all share one bucket: 64 pages 16 apart in a
    /// 16-bucket cache spread about as under a plain mix (at most 16 of
    /// them beyond their bucket's 4 places; 40 with 64-page regions).
    #[test]
    fn a_small_cache_spreads_strided_pages() {
        let cache = WalkCache::new(64, 16, 0);
        assert_eq!(cache.hasher.neighbours_log2(), 4);
        let mut per_bucket = [0usize; 16];
        for page in 0..64u64 {
            let key = leaf_key(0x80_0000_0000 + (page << 16), 12);
            per_bucket[((cache.leaf_hash(key) >> 32) & 15) as usize] += 1;
        }
        let overflow: usize = per_bucket.iter().map(|n| n.saturating_sub(BUCKET)).sum();
        assert!(overflow <= 16, "{per_bucket:?}");
        assert_eq!(
            WalkCache::new(1 << 12, 16, 0).hasher.neighbours_log2(),
            NEIGHBOURS_LOG2
        );
        assert_eq!(WalkCache::new(4, 16, 0).hasher.neighbours_log2(), 0);
    }

    /// A hit comes with its key's leaf hash wherever the leaf lies (its
    /// first bucket, its second, the stash; a page or a block), and
    /// `still_holds` finds the leaf with that hash.
    #[test]
    fn a_hit_comes_with_its_keys_hash_wherever_it_lies() {
        let collector = epoch::Collector::new();
        let handle = collector.register();
        let live = AtomicU64::new(u64::MAX);
        // 64 places in 16 buckets: strided pages overflow their first
        // buckets (`a_small_cache_spreads_strided_pages`).
        let cache = WalkCache::held(Arc::new(WalkCache::new(64, 16, 0)));
        let mut index = CacheIndex::default();
        let guard = handle.pin();
        let pages = (0..48u64).map(|page| (0x80_0000_0000 + (page << 16), 12u8));
        let blocks = (0..8u64).map(|block| (0x40_0000_0000 + (block << 21), 21u8));
        let leaves: Vec<(u64, u8)> = pages.chain(blocks).collect();
        for &(base, size) in &leaves {
            cache.insert_leaf(&mut index, leaf_of_size(base, size), &guard);
        }
        let (mut hits, mut beyond_first) = (0, 0);
        for &(base, _) in &leaves {
            let Some((hit, hash)) = WalkCache::lookup(&cache, base, &live, cache.hasher(), &guard)
            else {
                continue;
            };
            hits += 1;
            assert_eq!(hash, cache.leaf_hash(hit.cache_key()), "{base:#x}");
            assert!(cache.still_holds(hit, hash, &guard), "{base:#x}");
            if cache
                .leaves
                .get_in_bucket(hit.cache_key(), hash, &guard)
                .is_none()
            {
                beyond_first += 1;
            }
        }
        assert!(
            hits > 40 && beyond_first > 0,
            "{hits} hits, {beyond_first} beyond their first bucket"
        );
    }

    /// A leaf of `2^size_log2` bytes at `ipa_base`.
    fn leaf_of_size(ipa_base: u64, size_log2: u8) -> CachedWalk {
        CachedWalk {
            size_log2,
            level: if size_log2 == 12 { 3 } else { 2 },
            ..leaf(ipa_base, 0x8000_0000 + ipa_base)
        }
    }

    /// The leaves (base, size) an L2 touching `pages` leaves in one of
    /// several realistic patterns caches, drawn from `next`.
    fn leaf_pattern(pattern: &str, pages: u64, next: &mut dyn FnMut() -> u64) -> Vec<(u64, u8)> {
        const PAGE: u64 = 1 << 12;
        const REGION: u64 = PAGE << NEIGHBOURS_LOG2;
        // Somewhere in a 1 TiB IPA space, aligned to `align`.
        let at = |next: &mut dyn FnMut() -> u64, align: u64| (next() % (1 << 40)) & !(align - 1);
        let mut seen = alloc::collections::BTreeSet::new();
        let mut push = |out: &mut Vec<(u64, u8)>, leaf: (u64, u8)| {
            if seen.insert(leaf) {
                out.push(leaf);
            }
        };
        let mut out: Vec<(u64, u8)> = Vec::new();
        match pattern {
            // Pages one at a time anywhere.
            "scattered" => {}
            // One run of pages (an L2's memory touched in order), from
            // anywhere in a region.
            "sequential" => {
                let base = at(next, PAGE);
                for i in 0..pages {
                    push(&mut out, (base + i * PAGE, 12));
                }
            }
            // Whole 64-page regions at random places.
            "regions" => {
                while (out.len() as u64) < pages {
                    let base = at(next, REGION);
                    for i in 0..(pages - out.len() as u64).min(1 << NEIGHBOURS_LOG2) {
                        push(&mut out, (base + i * PAGE, 12));
                    }
                }
            }
            // L1 maps 2 MiB blocks: one leaf per block.
            "blocks" => {
                while (out.len() as u64) < pages {
                    push(&mut out, (at(next, 1 << 21), 21));
                }
            }
            // A quarter of each of the others.
            _ => {
                for (k, part) in ["scattered", "sequential", "regions", "blocks"]
                    .iter()
                    .enumerate()
                {
                    let share = if k == 3 {
                        pages - 3 * (pages / 4)
                    } else {
                        pages / 4
                    };
                    for leaf in leaf_pattern(part, share, next) {
                        push(&mut out, leaf);
                    }
                }
            }
        }
        // Scattered pages, and any a mix's overlapping parts lost.
        while (out.len() as u64) < pages {
            push(&mut out, (at(next, PAGE), 12));
        }
        out
    }

    /// At 2x over-provisioning (twice as many places as leaves) the leaf
    /// cache holds every leaf of realistic patterns, under every secret: no
    /// insert evicts and every leaf hits. With the leaves of a 64-page
    /// region in consecutive buckets from a keyed offset and one bucket per
    /// leaf, regions whose bucket ranges overlapped overflowed together: up
    /// to a tenth of 1024 pages evicted (a fifth in the nested-fault bench),
    /// some in nearly every run.
    #[test]
    fn a_cache_twice_the_working_set_holds_it_under_every_secret() {
        let collector = epoch::Collector::new();
        let handle = collector.register();
        let live = AtomicU64::new(u64::MAX);
        let mut worst = alloc::string::String::new();
        let mut failed = 0;
        for pages in [1024u64, 8192] {
            for pattern in ["scattered", "sequential", "regions", "blocks", "mix"] {
                for seed in 0..64u64 {
                    let mut state = (seed + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ pages;
                    // splitmix64
                    let mut next = || {
                        let z = mix(state);
                        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                        z
                    };
                    let secret = next();
                    let leaves = leaf_pattern(pattern, pages, &mut next);
                    assert_eq!(leaves.len() as u64, pages);
                    let cache =
                        WalkCache::held(Arc::new(WalkCache::new(2 * pages as usize, 16, secret)));
                    let mut index = CacheIndex::default();
                    let guard = handle.pin();
                    let evicted = leaves
                        .iter()
                        .filter(|&&(base, size)| {
                            cache
                                .insert_leaf(&mut index, leaf_of_size(base, size), &guard)
                                .is_some()
                        })
                        .count();
                    // Its own leaf (a page of the mix may lie in one of its
                    // blocks, which a lookup may find first).
                    let missing = leaves
                        .iter()
                        .filter(|&&(base, size)| {
                            let key = leaf_key(base, size);
                            cache
                                .leaves
                                .get(key, cache.leaf_hash(key), &guard)
                                .is_none()
                        })
                        .count();
                    // And each hits.
                    assert!(leaves.iter().all(|&(base, _)| WalkCache::lookup(
                        &cache,
                        base,
                        &live,
                        cache.hasher(),
                        &guard
                    )
                    .is_some()));
                    if evicted + missing > 0 {
                        failed += 1;
                        worst = alloc::format!(
                            "{worst}\n{pattern} {pages} leaves, seed {seed}: {evicted} evicted, {missing} not held"
                        );
                    }
                }
            }
        }
        assert_eq!(failed, 0, "runs that lost leaves:{worst}");
    }

    /// A context holds its slot's cache only until it is retired: a reader
    /// still holding the retired context (it found it before the recycle)
    /// gets neither its old entries nor the successor's, which live in the
    /// same cache after the slot passed on.
    #[test]
    fn a_retired_context_never_hits_its_successors_entries() {
        let features = ExposedFeatures::from_id_registers(IdRegisters {
            mmfr0: 5,
            mmfr1: 0,
            mmfr2: 0,
        })
        .unwrap();
        let capacity = Capacity {
            contexts: 1,
            leaves_per_context: 4,
            paths_per_context: 4,
        };
        let host = crate::context::HostVmids {
            width: ipc::VmidWidth::Bits16,
            l1_vmid: 1,
        };
        let vmids = crate::context::ShadowVmids::new(16, capacity.contexts, host).unwrap();
        let collector = epoch::Collector::new();
        let directory: Directory<()> = Directory::new(features, capacity, vmids, 0, &collector);
        let handle = collector.register();
        let guard = handle.pin();
        let vtcr = 25 | (1 << 6) | (5 << 16);
        let key_a = ContextKey::new(1, 0x1000, vtcr, walker::Endianness::Little);
        let key_b = ContextKey::new(1, 0x4000, vtcr, walker::Endianness::Little);
        let (a, _) = directory
            .get_or_create(&key_a, &guard, |_, _| {}, |_| Some(()), |_| {})
            .unwrap();
        {
            let mut held = a.lock();
            a.cache
                .insert_leaf(&mut held.index, leaf(0, 0x8000_0000), &guard);
        }
        assert_eq!(a.cached(0, &guard).unwrap().output_base, 0x8000_0000);
        // B takes the only slot: A is retired, the cache flushed for B.
        let (b, created) = directory
            .get_or_create(
                &key_b,
                &guard,
                |victim, held| {
                    victim.cache.flush(&mut held.index, &guard);
                    victim.cache.park_index(&mut held.index);
                },
                |_| panic!("the slot's shadow is reused"),
                |_| {},
            )
            .unwrap();
        assert!(matches!(created, crate::context::Created::Recycled { .. }));
        assert!(core::ptr::eq(&*a.cache, &*b.cache), "one cache per slot");
        assert!(a.cached(0, &guard).is_none(), "the victim's flushed entry");
        {
            let mut held = b.lock();
            b.cache
                .insert_leaf(&mut held.index, leaf(0, 0x9000_0000), &guard);
        }
        assert_eq!(b.cached(0, &guard).unwrap().output_base, 0x9000_0000);
        assert!(a.cached(0, &guard).is_none(), "the successor's entry");
        assert!(directory.get(&key_a, &guard).is_none());
    }

    /// Caches the leaf (base, log2 size) and keeps `listed` (what is
    /// cached) in step: an evicted leaf goes, the new one is listed once.
    fn insert_listed(
        cache: &WalkCache,
        index: &mut CacheIndex,
        listed: &mut Vec<(u64, u8)>,
        (base, size): (u64, u8),
        guard: &Guard,
    ) {
        if let Some((old, old_size)) = cache.insert_leaf(index, leaf_of_size(base, size), guard) {
            listed.retain(|&l| l != (old, old_size.trailing_zeros() as u8));
        }
        if !listed.contains(&(base, size)) {
            listed.push((base, size));
        }
    }

    /// Page invalidations that leave their index bit for later
    /// (`unindex_page_later`), mixed with inserts (of the same pages and of
    /// blocks over them), evictions, range invalidations and flushes,
    /// against a list of what is cached: every invalidation removes and
    /// counts exactly the leaves it overlaps, lookups find exactly the
    /// listed leaves, and the index's count agrees. Fails when an index use
    /// does not clear the waiting bits first (a re-inserted page loses its
    /// bit and a later range invalidation misses it), and when a page's
    /// table probe stands in for the index after a flush left old nodes
    /// linked (the old node is found and counted).
    ///
    /// Flushes come from step 1000 on, and refills (every page and the
    /// block over them cached again, as L2 faults back what a VMID flush
    /// dropped): the count of old leaf nodes (`old_leaf_nodes`) equals a
    /// scan of the table after every step, the page path skips the index
    /// exactly while it is zero, and in every seed it is zero again after
    /// a flush that left old nodes, and page invalidations take the fast
    /// path again. Fails when an insert that takes an old node's place does
    /// not count it (the gated path for ever), counts it twice, or the
    /// count is cleared before the last old node is gone.
    #[test]
    fn deferred_page_unindexing_matches_a_list_of_leaves() {
        let collector = epoch::Collector::new();
        let handle = collector.register();
        let live = AtomicU64::new(u64::MAX);
        const BASE: u64 = 0x4000_0000;
        // Fewer pages than the cache holds: most inserts evict nothing
        // (an eviction's index removal clears the waiting bits too).
        const PAGES: u64 = 192;
        for seed in 0..24u64 {
            // Mixed: a multiple of the stream's increment would make seed
            // s's stream seed 0's shifted by s draws (the same run).
            let mut state = mix(seed + 7);
            let mut next = || {
                let z = mix(state);
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                z
            };
            let cache = WalkCache::held(Arc::new(WalkCache::new(256, 16, next())));
            let mut index = CacheIndex::default();
            let mut listed: Vec<(u64, u8)> = Vec::new();
            let overlaps = |&(base, size): &(u64, u8), start: u64, end: u64| {
                base < end && start < base + (1u64 << size)
            };
            // Flushes that left old nodes, times the count came back to
            // zero after one, and page invalidations of a cached page on
            // the fast path after that.
            let (mut flushed_with_leaves, mut resumed, mut fast_after_flush) = (0, 0, 0);
            let mut gated = false;
            for step in 0..3000 {
                let guard = handle.pin();
                let page = BASE + (next() % PAGES) * 4096;
                match next() % 16 {
                    0..=6 => {
                        // Mostly pages; now and then the 2 MiB block over
                        // some (which a page invalidation also removes).
                        let size = if next() % 16 == 0 { 21 } else { 12 };
                        let base = page & !((1u64 << size) - 1);
                        insert_listed(&cache, &mut index, &mut listed, (base, size), &guard);
                    }
                    7..=13 => {
                        // A page, or a few pages when the draw says so.
                        let pages = if next() % 4 == 0 { 1 + next() % 80 } else { 1 };
                        let end = page + pages * 4096;
                        let expected = listed.iter().filter(|l| overlaps(l, page, end)).count();
                        let removed = cache.invalidate_range(
                            &mut index,
                            page,
                            end,
                            Levels::LeafOnly,
                            &guard,
                            |_, _| {},
                        );
                        assert_eq!(
                            removed, expected,
                            "seed {seed} step {step}: [{page:#x}, {end:#x})"
                        );
                        listed.retain(|l| !overlaps(l, page, end));
                    }
                    // Not early, and rarely: until the first flush that
                    // leaves nodes behind, page invalidations skip the
                    // index.
                    14 if step >= 1000 && next() % 8 == 0 => {
                        flushed_with_leaves += usize::from(!listed.is_empty());
                        cache.flush(&mut index, &guard);
                        listed.clear();
                    }
                    14 if next() % 4 == 0 => {
                        // A refill: the block and every page cached again
                        // (each old node's key, so every old node's place
                        // is taken).
                        let block = (BASE & !((1 << 21) - 1), 21);
                        let pages = (0..PAGES).map(|p| (BASE + p * 4096, 12));
                        for leaf in core::iter::once(block).chain(pages) {
                            insert_listed(&cache, &mut index, &mut listed, leaf, &guard);
                        }
                    }
                    15 => {
                        // The benchmark's pattern: a cached page's
                        // invalidation, then the fault that caches it again.
                        if let Some(&(base, 12)) = listed.get(next() as usize % listed.len().max(1))
                        {
                            let fast = cache.pages_without_index(12, base, base);
                            let removed = cache.invalidate_range(
                                &mut index,
                                base,
                                base + 4096,
                                Levels::LeafOnly,
                                &guard,
                                |_, _| {},
                            );
                            let expected = listed
                                .iter()
                                .filter(|l| overlaps(l, base, base + 1))
                                .count();
                            assert_eq!(removed, expected, "seed {seed} step {step}: {base:#x}");
                            // The fast path leaves the page's bit waiting.
                            let waits = index.pending_pages.keys().contains(&base);
                            assert_eq!(waits, fast, "seed {seed} step {step}: {base:#x}");
                            fast_after_flush += usize::from(fast && flushed_with_leaves != 0);
                            listed.retain(|l| !overlaps(l, base, base + 1));
                            insert_listed(&cache, &mut index, &mut listed, (base, 12), &guard);
                        }
                    }
                    _ => {}
                }
                assert_eq!(index.live_leaves(), listed.len(), "seed {seed} step {step}");
                let old = cache.old_leaf_nodes.load(Ordering::Relaxed);
                assert_eq!(
                    old,
                    cache.old_leaves_linked(&guard),
                    "seed {seed} step {step}"
                );
                assert_eq!(cache.pages_without_index(12, BASE, BASE), old == 0);
                resumed += usize::from(gated && old == 0);
                gated = old != 0;
                if step % 64 == 0 {
                    for p in 0..PAGES {
                        let ipa = BASE + p * 4096;
                        // With the hash of the hit's key, wherever it was
                        // found (`still_holds` searches its buckets).
                        let found = WalkCache::lookup(&cache, ipa, &live, cache.hasher(), &guard)
                            .map(|(e, hash)| {
                                assert_eq!(hash, cache.leaf_hash(e.cache_key()));
                                (e.ipa_base, e.size_log2)
                            });
                        let any = listed.iter().any(|l| overlaps(l, ipa, ipa + 1));
                        assert_eq!(found.is_some(), any, "seed {seed} step {step}: {ipa:#x}");
                        if let Some(f) = found {
                            assert!(listed.contains(&f), "seed {seed} step {step}: {f:x?}");
                        }
                    }
                }
            }
            assert!(
                flushed_with_leaves > 0 && resumed > 0 && fast_after_flush > 0,
                "seed {seed}: {flushed_with_leaves} flushes, {resumed} resumed, {fast_after_flush} fast"
            );
        }
    }

    /// Page invalidations that leave their paths' index bits for later
    /// (`unindex_path_later`), mixed with path inserts (the same regions'
    /// again, as the refault's walk does, and others, with evictions),
    /// range invalidations over several regions and flushes, against a
    /// list of what is cached: every invalidation removes and counts
    /// exactly the paths whose region it overlaps, the paths found in the
    /// table are exactly the listed ones, the index's count agrees, and
    /// the count of old path nodes equals a scan of the table after every
    /// step. Fails when a range's drain does not clear the waiting bits
    /// first, when a path cached again while waiting is inserted anew
    /// (its bit then cleared under it), when a page's table probe stands
    /// in for the index while a flush's old nodes are linked (one is found
    /// and counted), and when an insert over an old node does not count it.
    #[test]
    fn deferred_path_unindexing_matches_a_list_of_paths() {
        let collector = epoch::Collector::new();
        let handle = collector.register();
        const BASE: u64 = 0x80_0000_0000;
        // (level, span_log2, regions): 2 MiB, 1 GiB and 512 GiB regions
        // from BASE, as a 4 KiB-granule walk from level 0 leaves them.
        const LEVELS: [(i8, u8, u64); 3] = [(2, 21, 12), (1, 30, 3), (0, 39, 1)];
        let universe: Vec<(i8, u64, u8)> = LEVELS
            .iter()
            .flat_map(|&(level, span, regions)| {
                (0..regions).map(move |r| (level, BASE + (r << span), span))
            })
            .collect();
        let covers = |&(_, base, span): &(i8, u64, u8), start: u64, end: u64| {
            base < end && start < base + (1u64 << span)
        };
        for seed in 0..16u64 {
            let mut state = mix(seed + 11);
            let mut next = || {
                let z = mix(state);
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                z
            };
            // 16 path places: the 16 regions do not always fit their
            // buckets, so some inserts evict.
            let cache = WalkCache::held(Arc::new(WalkCache::new(64, 16, next())));
            let mut index = CacheIndex::default();
            let mut listed: Vec<(i8, u64, u8)> = Vec::new();
            let insert = |index: &mut CacheIndex,
                          listed: &mut Vec<(i8, u64, u8)>,
                          (level, base, span): (i8, u64, u8),
                          guard: &Guard| {
                cache.take_index(index);
                let path = CachedPath {
                    level,
                    region_base: base,
                    span_log2: span,
                    reads: [DescriptorRead::default(); MAX_PATH],
                    len: 1,
                    flush: cache.flush.load(Ordering::Relaxed),
                };
                let key = path.cache_key();
                if let Some(old) = cache.insert_path(index, path, cache.path_hash(key), guard) {
                    listed.retain(|&(l, b, _)| path_key(b, l) != old);
                }
                if !listed.contains(&(level, base, span)) {
                    listed.push((level, base, span));
                }
            };
            // Flushes that left old nodes, times the count came back to
            // zero after one, and page invalidations that left a bit
            // waiting after that.
            let (mut flushed_with_paths, mut resumed, mut fast_after_flush) = (0, 0, 0);
            let mut gated = false;
            for step in 0..2000 {
                let guard = handle.pin();
                let page = BASE + (next() % (12 << 9)) * 4096;
                match next() % 16 {
                    0..=5 => {
                        let path = universe[next() as usize % universe.len()];
                        insert(&mut index, &mut listed, path, &guard);
                    }
                    6..=12 => {
                        // A page; now and then a range over several 2 MiB
                        // regions (a drain at level 2).
                        let len = if next() % 4 == 0 {
                            (1 + next() % 5) << 21
                        } else {
                            4096
                        };
                        let end = page + len;
                        let fast = len == 4096 && cache.paths_without_index();
                        let expected = listed.iter().filter(|p| covers(p, page, end)).count();
                        let removed = cache.invalidate_range(
                            &mut index,
                            page,
                            end,
                            Levels::Any,
                            &guard,
                            |_, _| {},
                        );
                        assert_eq!(
                            removed, expected,
                            "seed {seed} step {step}: [{page:#x}, {end:#x})"
                        );
                        // The page's probe path leaves every removed bit
                        // waiting.
                        if fast {
                            assert!(index.pending_paths.len() >= expected.min(1));
                            fast_after_flush +=
                                usize::from(expected != 0 && flushed_with_paths != 0);
                        }
                        let gone: Vec<_> = listed
                            .iter()
                            .copied()
                            .filter(|p| covers(p, page, end))
                            .collect();
                        listed.retain(|p| !covers(p, page, end));
                        // The refault's walk caches the page's paths again
                        // (usually; their bits still wait).
                        if next() % 4 != 0 {
                            for path in gone {
                                insert(&mut index, &mut listed, path, &guard);
                            }
                        }
                    }
                    13 if step >= 500 && next() % 4 == 0 => {
                        flushed_with_paths += usize::from(!listed.is_empty());
                        cache.flush(&mut index, &guard);
                        listed.clear();
                    }
                    14 => {
                        // A refill: every region's path cached again (each
                        // old node's key, so every old node's place is
                        // taken, unless evicted meanwhile).
                        for &path in &universe {
                            insert(&mut index, &mut listed, path, &guard);
                        }
                    }
                    _ => {}
                }
                assert_eq!(index.live_paths(), listed.len(), "seed {seed} step {step}");
                let old = cache.old_path_nodes.load(Ordering::Relaxed);
                assert_eq!(
                    old,
                    cache.old_paths_linked(&guard),
                    "seed {seed} step {step}"
                );
                resumed += usize::from(gated && old == 0);
                gated = old != 0;
                let flush = cache.flush.load(Ordering::Relaxed);
                for path in &universe {
                    let key = path_key(path.1, path.0);
                    let found = cache
                        .paths
                        .get(key, cache.path_hash(key), &guard)
                        .is_some_and(|p| p.flush == flush);
                    assert_eq!(
                        found,
                        listed.contains(path),
                        "seed {seed} step {step}: {path:x?}"
                    );
                }
            }
            assert!(
                flushed_with_paths > 0 && resumed > 0 && fast_after_flush > 0,
                "seed {seed}: {flushed_with_paths} flushes, {resumed} resumed, {fast_after_flush} fast"
            );
        }
    }

    /// Review 66 R66-1: a page invalidation's path removals leave their
    /// bits set until the index's next use, and the refault's walk may
    /// cache a path elsewhere meanwhile, so the path index holds up to
    /// `PENDING_PATH_UNINDEX` blocks more than the table has places (and
    /// `EMPTY_RING` emptied chunks besides). A hostile L1's L2 that puts
    /// every path in a block-index chunk of its own (2 MiB regions 128 MiB
    /// apart), with L1's page TLBIs between its faults, reaches that bound:
    /// the index made for the slot must hold it without growing (an
    /// allocation on the TLBI and fault paths, bytes past the budget).
    /// Fails when the index is sized for the table's places alone (4 and
    /// 16 paths: their chunk maps are full at places + `EMPTY_RING`).
    #[test]
    fn waiting_path_bits_never_grow_the_slots_index() {
        let collector = epoch::Collector::new();
        let handle = collector.register();
        const BASE: u64 = 0x80_0000_0000;
        // A chunk holds 64 blocks: 64 2 MiB regions.
        const CHUNK: u64 = 64 << 21;
        for paths in [4usize, 8, 16, 32, 64] {
            let cache = WalkCache::held(Arc::new(WalkCache::new(64, paths, mix(paths as u64))));
            let guard = handle.pin();
            let mut index = CacheIndex::default();
            let mut chunks = 0u64;
            let mut fresh = || {
                chunks += 1;
                BASE + chunks * CHUNK
            };
            let bucket_of =
                |base: u64| cache.paths.bucket_index(cache.path_hash(path_key(base, 2)));
            let insert = |index: &mut CacheIndex, base: u64| {
                cache.take_index(index);
                let path = CachedPath {
                    level: 2,
                    region_base: base,
                    span_log2: 21,
                    reads: [DescriptorRead::default(); MAX_PATH],
                    len: 1,
                    flush: cache.flush.load(Ordering::Relaxed),
                };
                let hash = cache.path_hash(path.cache_key());
                cache.insert_path(index, path, hash, &guard)
            };
            let invalidate = |index: &mut CacheIndex, start: u64, len: u64| {
                cache.invalidate_range(index, start, start + len, Levels::Any, &guard, |_, _| {})
            };
            // `EMPTY_RING` emptied chunks, kept: paths cached, then removed
            // by range invalidations (through the index).
            for _ in 0..EMPTY_RING {
                let base = fresh();
                assert_eq!(insert(&mut index, base), None);
                assert_eq!(invalidate(&mut index, base, 4 << 20), 1);
            }
            // Every place taken, each path in a chunk of its own.
            let mut taken = alloc::vec![0; paths / BUCKET];
            let mut live = Vec::new();
            while live.len() < paths {
                let base = fresh();
                if taken[bucket_of(base)] < BUCKET {
                    assert_eq!(insert(&mut index, base), None);
                    taken[bucket_of(base)] += 1;
                    live.push(base);
                }
            }
            // Page invalidations, each followed by a path cached in a new
            // chunk in the place it freed (no eviction, which would settle
            // the waiting bits).
            for _ in 0..PENDING_PATH_UNINDEX {
                let gone = live.remove(0);
                assert_eq!(invalidate(&mut index, gone, 4096), 1);
                let base = core::iter::repeat_with(&mut fresh)
                    .find(|&b| bucket_of(b) == bucket_of(gone))
                    .unwrap();
                assert_eq!(insert(&mut index, base), None);
                live.push(base);
            }
            assert_eq!(
                (index.live_paths(), index.pending_paths.len()),
                (paths, PENDING_PATH_UNINDEX)
            );
            assert_eq!(index.growths(), 0, "{paths} paths: the index grew");
        }
    }

    /// Review 66 R66-1, for every size a budget gives: the index made for
    /// a slot's cache holds, without growing, each table's places, the
    /// bits waiting to be cleared ([`PENDING_PAGE_UNINDEX`],
    /// [`PENDING_PATH_UNINDEX`]) and the emptied chunks kept
    /// ([`EMPTY_RING`]), every block in a chunk of its own. Fails for 16
    /// and 64 leaves and 4 and 16 paths when the waiting bits are not
    /// counted.
    #[test]
    fn the_slots_index_holds_its_places_and_waiting_bits_in_chunks_of_their_own() {
        for log2 in 2..14 {
            let places = 1usize << log2;
            let leaves = WalkCache::leaf_places(places);
            let mut index = CacheIndex::with_capacity(leaves, places);
            let bytes = index.allocated_bytes();
            assert_eq!(
                bytes,
                CacheIndex::preallocated_bytes(leaves, places),
                "{places} places"
            );
            // A 4 KiB chunk's 64 pages span 256 KiB; a 2 MiB region's, 128 MiB.
            for i in 0..(leaves + PENDING_PAGE_UNINDEX + EMPTY_RING) as u64 {
                assert!(index.add_leaf(i << 18, PAGE_LOG2));
            }
            for i in 0..(places + PENDING_PATH_UNINDEX + EMPTY_RING) as u64 {
                assert!(index.add_path(i << 27, 2, 21));
            }
            assert_eq!(
                (index.growths(), index.allocated_bytes()),
                (0, bytes),
                "{places} places"
            );
        }
    }

    /// `ChunkHashes` gives every block of a chunk its `leaf_hash`, for
    /// pages (one region: derived) and other sizes (hashed), in tables
    /// with and without whole regions of consecutive buckets. Mutant: the
    /// high half without `+ page` (or the low half without the page bits)
    /// fails here, and the range removals below find nothing to remove.
    #[test]
    fn chunk_hashes_are_leaf_hashes() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for capacity in [4usize, 64, 256, 4096] {
            for _ in 0..200 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let hasher = LeafHasher::new(capacity, x.rotate_left(17));
                for size_log2 in [12u8, 16, 21] {
                    let chunk_bytes = 1u64 << (size_log2 as u32 + 6);
                    let chunk = (x % (1 << 47)) & !(chunk_bytes - 1);
                    let hashes = hasher.chunk_hashes(size_log2, chunk + ((x % 64) << size_log2));
                    assert_eq!(
                        hashes.region.is_some(),
                        size_log2 == 12 && hasher.neighbours_log2() == NEIGHBOURS_LOG2
                    );
                    for i in 0..64u64 {
                        let base = chunk + (i << size_log2);
                        assert_eq!(
                            hashes.of(base),
                            hasher.hash(leaf_key(base, size_log2)),
                            "capacity {capacity} size {size_log2} {base:#x}"
                        );
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Range invalidations over random leaves (pages over several
        /// chunks, 64 KiB and 2 MiB blocks) and random ranges (one page to
        /// several whole chunks, so both the one-block path and the
        /// chunk-by-chunk one): each removes exactly the listed leaves that
        /// overlap it, reports spans that cover every removed leaf and lie
        /// in their hull, and afterwards nothing in the range is found and
        /// every other listed leaf still is; the table links exactly the
        /// listed leaves (no node left behind, none lost). Mutants killed:
        /// a wrong chunk hash (nothing removed), a span from the last
        /// leaf's base only (a removed leaf outside it), a removal loop
        /// skipping a chunk's last block.
        /// The short page path (the 4 KiB leaves of a range of up to
        /// `SHORT_RANGE_BLOCKS` pages probed in the table, their index bits
        /// left waiting) against the general path (every size through the
        /// block index) on two caches built and changed alike: page, 64 KiB
        /// and 2 MiB leaves; ranges of 1-20 pages (the short path and, past
        /// 16, the general one on both), re-inserts of pages (so waiting
        /// bits are kept or settled), flushes (after which old nodes are
        /// linked and the probe must not stand in for the index). After
        /// every step: the same count removed, the same hull of reported
        /// spans, the same live-leaf count, the same leaves linked and
        /// found at every page; at the end, with the waiting bits settled,
        /// the same index bits. Mutants killed: the probe loop stopping
        /// before the range's last page; a probed page's bit not left
        /// waiting; the probe taken while a flush's old nodes are linked;
        /// the span from the last removed page only.
        #[test]
        fn short_page_ranges_remove_what_the_index_path_removes(
            secret in proptest::prelude::any::<u64>(),
            leaves in proptest::collection::vec((0u64..256, 0u8..16), 1..300),
            steps in proptest::collection::vec((0u64..256, 1u64..21, 0u8..32), 1..40),
        ) {
            const BASE: u64 = 0x40_0000_0000;
            let collector = epoch::Collector::new();
            let handle = collector.register();
            let live = AtomicU64::new(u64::MAX);
            let guard = handle.pin();
            let (probe, general) = (
                WalkCache::held(Arc::new(WalkCache::new(512, 16, secret))),
                WalkCache::held(Arc::new(WalkCache::new(512, 16, secret))),
            );
            let (mut probe_index, mut general_index) = (CacheIndex::default(), CacheIndex::default());
            let (mut probe_listed, mut general_listed) = (Vec::new(), Vec::new());
            let leaf_of = |page: u64, kind: u8| {
                let size = match kind {
                    0 => 21,
                    1 => 16,
                    _ => 12,
                };
                ((BASE + page * 4096) & !((1u64 << size) - 1), size)
            };
            for (page, kind) in leaves {
                insert_listed(&probe, &mut probe_index, &mut probe_listed, leaf_of(page, kind), &guard);
                insert_listed(&general, &mut general_index, &mut general_listed, leaf_of(page, kind), &guard);
            }
            for (page, pages, kind) in steps {
                match kind {
                    0..=5 => {
                        let leaf = leaf_of(page, kind);
                        insert_listed(&probe, &mut probe_index, &mut probe_listed, leaf, &guard);
                        insert_listed(&general, &mut general_index, &mut general_listed, leaf, &guard);
                    }
                    6 => {
                        probe.flush(&mut probe_index, &guard);
                        general.flush(&mut general_index, &guard);
                        probe_listed.clear();
                        general_listed.clear();
                    }
                    _ => {
                        let (start, end) = (BASE + page * 4096, BASE + (page + pages) * 4096);
                        let hull = |spans: &[(u64, u64)]| {
                            spans.iter().fold(None, |h: Option<(u64, u64)>, &(lo, hi)| {
                                Some(h.map_or((lo, hi), |(l, h)| (l.min(lo), h.max(hi))))
                            })
                        };
                        let (mut probe_spans, mut general_spans) = (Vec::new(), Vec::new());
                        let by_probe = probe.invalidate_range_with(
                            &mut probe_index, start, end, Levels::LeafOnly, &guard,
                            |base, len| probe_spans.push((base, base + len)), PageRemoval::ByProbe,
                        );
                        let by_index = general.invalidate_range_with(
                            &mut general_index, start, end, Levels::LeafOnly, &guard,
                            |base, len| general_spans.push((base, base + len)), PageRemoval::ByIndex,
                        );
                        proptest::prop_assert_eq!(by_probe, by_index);
                        proptest::prop_assert_eq!(hull(&probe_spans), hull(&general_spans));
                        let overlaps = |&(base, size): &(u64, u8)| {
                            base < end && start < base + (1u64 << size)
                        };
                        probe_listed.retain(|l| !overlaps(l));
                        general_listed.retain(|l| !overlaps(l));
                    }
                }
                proptest::prop_assert_eq!(&probe_listed, &general_listed);
                proptest::prop_assert_eq!(probe_index.live_leaves(), general_index.live_leaves());
                proptest::prop_assert_eq!(probe_index.live_leaves(), probe_listed.len());
                proptest::prop_assert_eq!(
                    probe.leaves.count_linked(&guard, |_| true),
                    general.leaves.count_linked(&guard, |_| true)
                );
                for p in 0..300u64 {
                    let ipa = BASE + p * 4096;
                    let found = |cache: &HeldCache| {
                        WalkCache::lookup(cache, ipa, &live, cache.hasher(), &guard)
                            .map(|(e, _)| (e.ipa_base, e.size_log2))
                    };
                    proptest::prop_assert_eq!(found(&probe), found(&general), "{:#x}", ipa);
                }
            }
            probe_index.settle_pages(PAGE_LOG2);
            for p in 0..300u64 {
                for size in [12u32, 16, 21] {
                    let base = (BASE + p * 4096) & !((1u64 << size) - 1);
                    proptest::prop_assert_eq!(
                        probe_index.leaves.contains(size as u8, base, size),
                        general_index.leaves.contains(size as u8, base, size),
                        "{:#x} {}", base, size
                    );
                }
            }
        }

        #[test]
        fn range_invalidation_removes_exactly_its_scope(
            secret in proptest::prelude::any::<u64>(),
            leaves in proptest::collection::vec((0u64..640, 0u8..16), 1..400),
            ranges in proptest::collection::vec((0u64..640, 1u64..400), 1..6),
        ) {
            const BASE: u64 = 0x40_0000_0000;
            let collector = epoch::Collector::new();
            let handle = collector.register();
            let live = AtomicU64::new(u64::MAX);
            let cache = WalkCache::held(Arc::new(WalkCache::new(1024, 16, secret)));
            let mut index = CacheIndex::default();
            let mut listed: Vec<(u64, u8)> = Vec::new();
            let overlaps = |&(base, size): &(u64, u8), start: u64, end: u64| {
                base < end && start < base + (1u64 << size)
            };
            let guard = handle.pin();
            for (page, kind) in leaves {
                let size = match kind {
                    0 => 21,
                    1 => 16,
                    _ => 12,
                };
                let base = (BASE + page * 4096) & !((1u64 << size) - 1);
                insert_listed(&cache, &mut index, &mut listed, (base, size), &guard);
            }
            for (page, pages) in ranges {
                let (start, end) = (BASE + page * 4096, BASE + (page + pages) * 4096);
                let scope: Vec<(u64, u8)> =
                    listed.iter().copied().filter(|l| overlaps(l, start, end)).collect();
                let mut spans: Vec<(u64, u64)> = Vec::new();
                let removed = cache.invalidate_range(
                    &mut index,
                    start,
                    end,
                    Levels::LeafOnly,
                    &guard,
                    |base, len| spans.push((base, base + len)),
                );
                proptest::prop_assert_eq!(removed, scope.len());
                let hull = scope.iter().fold((start, end), |(lo, hi), &(b, s)| {
                    (lo.min(b), hi.max(b + (1u64 << s)))
                });
                for &(lo, hi) in &spans {
                    proptest::prop_assert!(hull.0 <= lo && hi <= hull.1, "{:#x?}", (lo, hi));
                }
                for &(b, s) in &scope {
                    proptest::prop_assert!(
                        spans.iter().any(|&(lo, hi)| lo <= b && b + (1u64 << s) <= hi),
                        "{:#x} not reported", b
                    );
                }
                listed.retain(|l| !overlaps(l, start, end));
                proptest::prop_assert_eq!(index.live_leaves(), listed.len());
                proptest::prop_assert_eq!(cache.leaves.count_linked(&guard, |_| true), listed.len());
                for probe in (start..end).step_by(4096) {
                    let found = WalkCache::lookup(&cache, probe, &live, cache.hasher(), &guard);
                    proptest::prop_assert!(found.is_none(), "{:#x} found after its range", probe);
                }
                // (A page inside a listed block is found before the block:
                // any listed leaf holding the address will do.)
                for &(b, _) in &listed {
                    let found = WalkCache::lookup(&cache, b, &live, cache.hasher(), &guard)
                        .map(|(e, _)| (e.ipa_base, e.size_log2));
                    proptest::prop_assert!(
                        found.is_some_and(|f| listed.contains(&f)),
                        "{:#x}: {:x?}", b, found
                    );
                }
            }
        }
    }
}
