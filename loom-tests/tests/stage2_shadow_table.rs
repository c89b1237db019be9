//! loom models of the shadow stage-2 table's update protocol
//! (shadow-mmu/src/shadow_table.rs), on the real code: racing `map`s that
//! build the same intermediate tables (compare-and-swap publication, the
//! loser's frame never published and returned), `map` replacing a table by
//! a block while another `map` writes into that table (break-before-make,
//! retirement, reclamation), and `unmap_range` freeing tables while `map`
//! and `lookup` run (the update lock), and `clear` detaching the tree while
//! `map` and `lookup` run, its frames reclaimed at once, and the service's
//! `map_excluded` (no update lock: the context's lock held) racing an
//! `unmap_range` under that lock: no lost frame, no
//! reachable freed frame, no write into a freed frame, no torn or
//! out-of-thin-air entry.
#![cfg(loom)]

use loom::thread;
use shadow_mmu::compose::{MemAttr, MemShareability, Permissions, ShadowMapping};
use shadow_mmu::shadow_table::{
    FramePool, HeapFramePool, MapOutcome, RecordingTlb, ShadowConfig, ShadowTable, TlbEvent,
    TlbMaintenance,
};
use std::sync::Arc;

/// Frames hold 512 loom atomics each: a run takes more branches than
/// loom's default limit, none of them a spin (the only busy-wait, the
/// update lock, yields to loom's scheduler).
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 200_000;
    builder.check(f);
}

type Table = ShadowTable<Arc<HeapFramePool>, RecordingTlb>;

const PAGE: u64 = 1 << 12;
const BLOCK: u64 = 1 << 21;

fn page(l2: u64, pa: u64) -> ShadowMapping {
    ShadowMapping {
        l2_ipa_base: l2,
        pa_base: pa,
        size: PAGE,
        perms: Permissions::READ,
        mem_attr: MemAttr::NORMAL_WB,
        shareability: MemShareability::InnerShareable,
    }
}

fn block(l2: u64, pa: u64) -> ShadowMapping {
    ShadowMapping {
        size: BLOCK,
        ..page(l2, pa)
    }
}

fn table(frames: usize) -> (Arc<Table>, Arc<HeapFramePool>) {
    let pool = Arc::new(HeapFramePool::new(frames, 1 << 40).unwrap());
    let t = ShadowTable::new(pool.clone(), RecordingTlb::new(), ShadowConfig::default()).unwrap();
    (Arc::new(t), pool)
}

/// Every table reachable from the root is allocated (not on the free
/// list), and the pool's count matches the table's.
fn assert_reachable_tables_allocated(t: &Table, pool: &HeapFramePool) {
    fn walk(pool: &HeapFramePool, pa: u64, level: u32, count: &mut usize) {
        assert!(!pool.is_free(pa), "reachable table {pa:#x} is free");
        *count += 1;
        let frame = pool.frame(pa).expect("pool frame");
        for d in &frame.0 {
            let d = d.load(std::sync::atomic::Ordering::Relaxed);
            if level < 3 && d & 0b11 == 0b11 {
                walk(pool, d & 0x0000_ffff_ffff_f000, level + 1, count);
            }
        }
    }
    let mut count = 0;
    walk(pool, t.root_pa(), 0, &mut count);
    assert!(count <= t.frames_used());
}

/// Every free frame of the pool is all zero: nothing wrote into a frame
/// after it was released (a walk still inside a reclaimed table would).
fn assert_free_frames_zero(pool: &HeapFramePool) {
    for i in 0..pool.budget() as u64 {
        let pa = pool.base_pa() + i * PAGE;
        if pool.is_free(pa) {
            let frame = pool.frame(pa).expect("pool frame");
            assert!(
                frame
                    .0
                    .iter()
                    .all(|d| d.load(std::sync::atomic::Ordering::Relaxed) == 0),
                "free frame {pa:#x} was written after its release"
            );
        }
    }
}

/// After an `unmap_range(0, BLOCK)` that raced a map of `new` (at 0x2000)
/// beside the page mapped at 0x1000 before: the old page is gone, and
/// `new` was removed with it (counted: `removed` is 2) or is still mapped.
/// Returns whether `new` is left.
fn unmap_counted_the_map(t: &Table, removed: usize, new: ShadowMapping) -> bool {
    assert!((1..=2).contains(&removed));
    assert_eq!(t.lookup(0x1000), None);
    let new_left = t.lookup(0x2000);
    assert!(new_left.is_none() || new_left == Some(new));
    assert_eq!(
        removed == 2,
        new_left.is_none(),
        "the vCPU's page was lost without being counted"
    );
    new_left.is_some()
}

/// Two vCPUs map pages under the same empty 2 MiB region: both race to
/// build the level-1, -2 and -3 tables. Both pages end up mapped and no
/// frame leaks (losers return theirs).
#[test]
fn racing_maps_share_new_tables() {
    model(|| {
        let (t, pool) = table(8);
        let a = page(0x1000, 0xa000);
        let b = page(0x2000, 0xb000);
        let other = {
            let t = t.clone();
            thread::spawn(move || t.map(&b).unwrap())
        };
        assert_eq!(t.map(&a).unwrap(), MapOutcome::Installed);
        assert_eq!(other.join().unwrap(), MapOutcome::Installed);
        assert_eq!(t.lookup(0x1000), Some(a));
        assert_eq!(t.lookup(0x2000), Some(b));
        assert_eq!(t.frames_used(), 4);
        assert_eq!(pool.frames_in_use(), 4);
        assert_reachable_tables_allocated(&t, &pool);
        assert!(t.tlb().is_empty(), "no entry changed");
    });
}

/// A block replaces the level-3 table while another vCPU maps a page into
/// that table. Either order is fine, but the final entry is one of the two
/// mappings, every change went through an invalidation, and once retired
/// tables are reclaimed nothing leaks and nothing reachable is free.
#[test]
fn block_over_table_races_page_into_table() {
    model(|| {
        let (t, pool) = table(8);
        t.map(&page(0x1000, 0xa000)).unwrap();
        let b = block(0, 0x20_0000);
        let p = page(0x3000, 0xc000);
        let other = {
            let t = t.clone();
            thread::spawn(move || t.map(&p).unwrap())
        };
        t.map(&b).unwrap();
        other.join().unwrap();
        let at_page = t.lookup(0x3000);
        assert!(at_page == Some(b) || at_page == Some(p), "{at_page:?}");
        assert!(t.lookup(0x1000) == Some(b) || t.lookup(0x1000).is_none());
        let events = t.tlb().take();
        assert!(!events.is_empty());
        assert!(events
            .iter()
            .all(|e| e.covers(0, BLOCK) || *e == TlbEvent::All));
        t.reclaim();
        assert_reachable_tables_allocated(&t, &pool);
        t.clear();
        t.reclaim_detached(usize::MAX);
        assert_eq!(pool.frames_in_use(), 1);
    });
}

/// `unmap_range` empties and frees the tables under a page while another
/// vCPU looks a page up and maps one in the same region. The
/// mapper's page is either there at the end (it ran after the unmap) or
/// was removed by it; lookups only ever see a mapping that was installed;
/// no reachable table is ever free; no frame leaks.
#[test]
fn unmap_frees_tables_while_map_and_lookup_run() {
    model(|| {
        let (t, pool) = table(8);
        let old = page(0x1000, 0xa000);
        t.map(&old).unwrap();
        let new = page(0x2000, 0xb000);
        let vcpu = {
            let t = t.clone();
            thread::spawn(move || {
                let seen = t.lookup(0x1000);
                assert!(seen.is_none() || seen == Some(old), "{seen:?}");
                t.map(&new).unwrap()
            })
        };
        let removed = t.unmap_range(0, BLOCK);
        vcpu.join().unwrap();
        assert!((1..=2).contains(&removed));
        assert_eq!(t.lookup(0x1000), None);
        let new_left = t.lookup(0x2000);
        assert!(new_left.is_none() || new_left == Some(new));
        assert_eq!(removed == 2, new_left.is_none());
        assert_reachable_tables_allocated(&t, &pool);
        t.unmap_range(0, 1 << 48);
        t.reclaim_detached(usize::MAX);
        assert_eq!(pool.frames_in_use(), 1);
    });
}

/// `unmap_range` on a thread of its own while the vCPU (the thread that
/// built the tables) maps a page beside the one being unmapped: a map that
/// finished before the unmap took the exclusive side is seen by it, so the
/// page is either removed with its table (counted) or left mapped, never
/// lost uncounted in a freed table.
///
/// The roles are the other way round from
/// [`unmap_frees_tables_while_map_and_lookup_run`] on purpose: the
/// unmapper spins (`yield_now` under loom) until the vCPU leaves the shared
/// side, and loom never lets a thread read a store it saw before its last
/// yield if a newer one exists. The main thread made the tables (it saw
/// every entry's first store), so as the unmapper it could never read the
/// stale invalid entry a missing Acquire allows; a fresh thread can.
/// Fails with either Acquire of the exclusive side (`UpdateLock::exclusive`:
/// the uncontended compare-and-swap, taken when the vCPU has already left
/// the shared side, or the wait for readers to leave, when it has not)
/// weakened to Relaxed: the unmapper misses the vCPU's page, frees the
/// table holding it and reports one leaf removed.
#[test]
fn unmap_on_its_own_thread_sees_every_finished_map() {
    model(|| {
        let (t, pool) = table(8);
        let old = page(0x1000, 0xa000);
        t.map(&old).unwrap();
        let new = page(0x2000, 0xb000);
        let unmapper = {
            let t = t.clone();
            thread::spawn(move || t.unmap_range(0, BLOCK))
        };
        assert_eq!(t.map(&new).unwrap(), MapOutcome::Installed);
        unmap_counted_the_map(&t, unmapper.join().unwrap(), new);
        assert_reachable_tables_allocated(&t, &pool);
        t.unmap_range(0, 1 << 48);
        t.reclaim_detached(usize::MAX);
        assert_eq!(pool.frames_in_use(), 1);
    });
}

/// `map_excluded` (the service's install: no update lock, the context's
/// lock held instead, here a mutex) while `unmap_range`, under the same
/// mutex, frees the tables under the page beside it, and the vCPU looks a
/// page up lock-free (the update lock's shared side) before its install:
/// the mutex orders the map wholly before or after the unmap, so the page
/// is either removed with its table (counted) or left mapped, never
/// written into a freed table; no reachable table is free, no frame leaks.
/// With the mutex taken by one side only, the unmap frees the level-3
/// table under the map's walk (a freed frame written, or the leaf lost).
#[test]
fn excluded_map_and_unmap_under_one_lock() {
    model(|| {
        let (t, pool) = table(8);
        let context_lock = Arc::new(loom::sync::Mutex::new(()));
        let old = page(0x1000, 0xa000);
        t.map(&old).unwrap();
        let new = page(0x2000, 0xb000);
        let unmapper = {
            let (t, context_lock) = (t.clone(), context_lock.clone());
            thread::spawn(move || {
                let _held = context_lock.lock().unwrap();
                t.unmap_range(0, BLOCK)
            })
        };
        let seen = t.lookup(0x1000);
        assert!(seen.is_none() || seen == Some(old), "{seen:?}");
        {
            let _held = context_lock.lock().unwrap();
            assert_eq!(t.map_excluded(&new).unwrap(), MapOutcome::Installed);
        }
        let new_left = unmap_counted_the_map(&t, unmapper.join().unwrap(), new);
        assert_eq!(t.leaves(), usize::from(new_left), "leaf count");
        assert_reachable_tables_allocated(&t, &pool);
        assert_free_frames_zero(&pool);
        t.unmap_range(0, 1 << 48);
        t.reclaim_detached(usize::MAX);
        assert_eq!(pool.frames_in_use(), 1);
        assert_free_frames_zero(&pool);
    });
}

/// `clear` on a thread of its own while the vCPU (the thread that made the
/// table) maps the first page of an empty tree, linking the root's first
/// table: a map that finished before the clear took the exclusive side is
/// detached by it (its leaf counted in what `clear` returns, and gone),
/// a later one stays mapped; either way every frame comes back.
///
/// The clear is not the main thread for the same reason as in
/// [`unmap_on_its_own_thread_sees_every_finished_map`]: its wait for
/// readers yields, and the main thread saw the root's entries zero when it
/// made the table, so after a yield it could never read that stale zero
/// ([`clear_detaches_while_map_and_lookup_run`] cannot either: its root
/// entry exists before the race). Fails with either Acquire of the
/// exclusive side (`UpdateLock::exclusive`: that wait, or the uncontended
/// compare-and-swap taken when the vCPU has already left the shared side)
/// weakened to Relaxed: the clear reads the root entry as empty, counts
/// the leaf, and leaves the new tree linked.
#[test]
fn clear_on_its_own_thread_detaches_every_finished_map() {
    model(|| {
        let (t, pool) = table(8);
        let new = page(0x2000, 0xb000);
        let clearer = {
            let t = t.clone();
            thread::spawn(move || t.clear())
        };
        assert_eq!(t.map(&new).unwrap(), MapOutcome::Installed);
        let removed = clearer.join().unwrap();
        assert!(removed <= 1);
        assert_eq!(
            removed == 1,
            t.lookup(0x2000).is_none(),
            "the clear counted the vCPU's page (1) or not (0) but left it mapped or not: {removed}"
        );
        t.clear();
        t.reclaim_detached(usize::MAX);
        assert_eq!(pool.frames_in_use(), 1);
        assert_free_frames_zero(&pool);
    });
}

/// The same on a 40-bit host, whose shadow starts at level 1 from two
/// concatenated start tables (review 30 R30-2): a `clear` on its own thread
/// races a vCPU installing a 1 GiB block straight into the second start
/// table (the `root_groups` bit set for a start-level leaf) and a page below
/// the first. Whatever the order, each was removed by the clear or is still
/// mapped, the counts agree, and once cleared and reclaimed only the empty
/// table's frames (root and start tables) are in use.
#[test]
fn clear_races_maps_into_concatenated_start_tables() {
    model(|| {
        let host = ShadowConfig {
            xnx: true,
            pa_bits: 40,
        };
        let pool = Arc::new(HeapFramePool::new(8, 1 << 40).unwrap());
        let t = Arc::new(ShadowTable::new(pool.clone(), RecordingTlb::new(), host).unwrap());
        let gib = ShadowMapping {
            size: 1 << 30,
            ..page(1 << 39, 0x4000_0000)
        };
        let new = page(0x2000, 0xb000);
        let clearer = {
            let t = t.clone();
            thread::spawn(move || t.clear())
        };
        assert_eq!(t.map(&gib).unwrap(), MapOutcome::Installed);
        assert_eq!(t.map(&new).unwrap(), MapOutcome::Installed);
        let removed = clearer.join().unwrap();
        let left =
            usize::from(t.lookup(1 << 39).is_some()) + usize::from(t.lookup(0x2000).is_some());
        assert_eq!(
            removed + left,
            2,
            "every map removed by the clear or still mapped"
        );
        assert_eq!(t.leaves(), left);
        assert_eq!(t.clear(), left);
        assert!(
            t.lookup(1 << 39).is_none() && t.lookup(0x2000).is_none(),
            "a clear left an entry of a start table mapped"
        );
        t.reclaim_detached(usize::MAX);
        assert_eq!(pool.frames_in_use(), host.empty_table_frames());
        assert_free_frames_zero(&pool);
    });
}

/// The table's leaf count stays exact when an unmap races a map (review 15
/// F2): `unmap_range` lowers it by a plain load and store under the
/// exclusive side of the update lock (`forget_leaves_exclusive`), while
/// `map` raises it by a `fetch_add` under the shared side. Page A is
/// mapped; a thread of its own unmaps A while the vCPU maps page B beside
/// it (the unmapper is not the main thread for the reason given at
/// [`unmap_on_its_own_thread_sees_every_finished_map`]): whatever the
/// order, one leaf is left and `leaves()` says so.
///
/// Fails ("a map's increment was lost") when the load and store run
/// after the exclusive side is released (the map's increment falls in
/// between and is overwritten), and when either Acquire of the exclusive
/// side (`UpdateLock::exclusive`: the uncontended compare-and-swap, or
/// the wait for readers to leave) is weakened to Relaxed. 0.02 s at
/// LOOM_MAX_PREEMPTIONS=2 in release.
#[test]
fn the_leaf_count_survives_an_unmap_racing_a_map() {
    model(|| {
        let (t, pool) = table(8);
        t.map(&page(0x1000, 0xa000)).unwrap();
        let unmapper = {
            let t = t.clone();
            thread::spawn(move || t.unmap_range(0x1000, PAGE))
        };
        t.map(&page(0x2000, 0xb000)).unwrap();
        assert_eq!(unmapper.join().unwrap(), 1);
        assert_eq!(t.leaves(), 1, "a map's increment was lost");
        t.unmap_range(0, 1 << 48);
        assert_eq!(t.leaves(), 0);
        t.reclaim_detached(usize::MAX);
        assert_eq!(pool.frames_in_use(), 1);
    });
}

/// A TLB hook for `clear`'s model: when the whole-VMID invalidation runs,
/// none of the watched tables (those `clear` detaches) may be back in the
/// pool yet - a frame is reused only after it is unlinked *and* the hook has
/// run.
struct NotFreedBeforeInvalidation {
    pool: Arc<HeapFramePool>,
    watched: std::sync::Mutex<Vec<u64>>,
    invalidated: std::sync::atomic::AtomicBool,
}

impl TlbMaintenance for NotFreedBeforeInvalidation {
    fn invalidate_range(&self, _l2_ipa: u64, _len: u64) {}
    fn invalidate_all(&self) {
        // Each watched table is checked at the first invalidation after it
        // was watched (the one of the clear that detaches it).
        for pa in core::mem::take(&mut *self.watched.lock().unwrap()) {
            assert!(
                !self.pool.is_free(pa),
                "table {pa:#x} freed before the invalidation"
            );
        }
        self.invalidated
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The tables below the root (level 1 and down).
fn tables_below_root(pool: &HeapFramePool, root: u64) -> Vec<u64> {
    fn walk(pool: &HeapFramePool, pa: u64, level: u32, out: &mut Vec<u64>) {
        let frame = pool.frame(pa).expect("pool frame");
        for d in &frame.0 {
            let d = d.load(std::sync::atomic::Ordering::Relaxed);
            if level < 3 && d & 0b11 == 0b11 {
                let child = d & 0x0000_ffff_ffff_f000;
                out.push(child);
                walk(pool, child, level + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(pool, root, 0, &mut out);
    out
}

/// `clear` detaches the tree (one whole-VMID invalidation, frames kept for
/// later) while another vCPU looks a page up and maps one in the same
/// region (a map first returns a few detached frames to the pool), and the
/// detached frames are reclaimed at once, still during the vCPU's calls.
/// No detached table is back in the pool before the invalidation ran; the
/// old page is gone when `clear` returns; the vCPU's page is either mapped
/// at the end (it ran after the clear) or was removed by it; no freed frame
/// is ever written or reachable; frames balance.
#[test]
fn clear_detaches_while_map_and_lookup_run() {
    model(|| {
        let pool = Arc::new(HeapFramePool::new(8, 1 << 40).unwrap());
        let tlb = NotFreedBeforeInvalidation {
            pool: pool.clone(),
            watched: std::sync::Mutex::new(Vec::new()),
            invalidated: std::sync::atomic::AtomicBool::new(false),
        };
        let t = Arc::new(ShadowTable::new(pool.clone(), tlb, ShadowConfig::default()).unwrap());
        let old = page(0x1000, 0xa000);
        t.map(&old).unwrap();
        *t.tlb().watched.lock().unwrap() = tables_below_root(&pool, t.root_pa());
        let new = page(0x2000, 0xb000);
        let vcpu = {
            let t = t.clone();
            thread::spawn(move || {
                // The map first: it starts by returning detached frames,
                // which must not include any before the invalidation.
                let mapped = t.map(&new).unwrap();
                let seen = t.lookup(0x1000);
                assert!(seen.is_none() || seen == Some(old), "{seen:?}");
                mapped
            })
        };
        let removed = t.clear();
        assert_eq!(t.lookup(0x1000), None, "cleared entry still reachable");
        assert!(t
            .tlb()
            .invalidated
            .load(std::sync::atomic::Ordering::Relaxed));
        t.reclaim_detached(usize::MAX);
        vcpu.join().unwrap();
        assert!((1..=2).contains(&removed));
        let new_left = t.lookup(0x2000);
        assert!(new_left.is_none() || new_left == Some(new));
        assert_eq!(removed == 2, new_left.is_none());
        t.reclaim_detached(usize::MAX);
        assert_free_frames_zero(&pool);
        assert_eq!(pool.frames_in_use(), t.frames_used());
        t.clear();
        t.reclaim_detached(usize::MAX);
        assert_eq!(pool.frames_in_use(), 1);
        assert_free_frames_zero(&pool);
    });
}

/// A table frame `clear` detached goes back to the pool (zeroed there) and
/// a `map` takes it again, while another vCPU, which has seen the `clear`
/// (but not the zeroing, which runs after it without the update lock),
/// looks up and maps in the same region. The vCPU must see the reused frame
/// as the pool zeroed it, never the old tree it held: lookups give nothing
/// or the new block, never the old page, and no write lands in a free
/// frame. What makes the zeroing visible is only the publication of the
/// table descriptor (Release compare-and-swap in `map`, Acquire loads in
/// `map` and `lookup`): with any of them weakened the vCPU can follow a
/// stale descriptor of the old tree out of the reused frame (measured: the
/// publishing `compare_exchange` `AcqRel` -> `Acquire`, the table-walk load
/// in `map` or the load in `lookup` `Acquire` -> `Relaxed` each fail here).
#[test]
fn a_reused_frame_is_seen_zeroed() {
    model(|| {
        let (t, pool) = table(8);
        let old = page(0x1000, 0xa000);
        t.map(&old).unwrap();
        let cleared = Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let new_block = block(0, 0x20_0000);
        let other = page(0x2000, 0xb000);
        let l0 = {
            let (t, cleared) = (t.clone(), cleared.clone());
            thread::spawn(move || {
                assert_eq!(t.clear(), 1);
                cleared.store(true, std::sync::atomic::Ordering::Release);
                // Frees the old level-1..3 tables (those the vCPU's map did
                // not free first): last freed, first reused, so the block's
                // level-1 and -2 tables are two of them.
                t.reclaim_detached(usize::MAX);
                t.map(&new_block).unwrap();
            })
        };
        if cleared.load(std::sync::atomic::Ordering::Acquire) {
            let seen = t.lookup(0x1000);
            assert!(seen.is_none() || seen == Some(new_block), "{seen:?}");
            t.map(&other).unwrap();
        }
        l0.join().unwrap();
        let at_other = t.lookup(0x2000);
        assert!(
            at_other == Some(new_block) || at_other == Some(other),
            "{at_other:?}"
        );
        t.reclaim();
        assert_reachable_tables_allocated(&t, &pool);
        assert_free_frames_zero(&pool);
        t.clear();
        t.reclaim_detached(usize::MAX);
        assert_eq!(pool.frames_in_use(), 1);
        assert_free_frames_zero(&pool);
    });
}

/// Two vCPUs install pages into the same level-3 table at once (the shared
/// side of the update lock): each raises the leaf count that the table's
/// level-2 entry keeps, by a compare-and-swap, and an unmap of the whole
/// 2 MiB region, which unlinks the table without visiting its entries and
/// takes that count as the leaves removed, counts both and the page
/// mapped before. The table's frame comes back zeroed once reclaimed.
/// Fails ("the count lost a map") with the count raised by a load and a
/// store, as under the caller's exclusion (`ShadowTable::count_leaves`).
#[test]
fn racing_maps_into_one_table_are_all_counted() {
    model(|| {
        let (t, pool) = table(8);
        t.map(&page(0x1000, 0xa000)).unwrap();
        let other = {
            let t = t.clone();
            thread::spawn(move || t.map(&page(0x2000, 0xb000)).unwrap())
        };
        assert_eq!(t.map(&page(0x3000, 0xc000)).unwrap(), MapOutcome::Installed);
        assert_eq!(other.join().unwrap(), MapOutcome::Installed);
        assert_eq!(t.unmap_range(0, BLOCK), 3, "the count lost a map");
        assert_eq!((t.lookup(0x2000), t.lookup(0x3000)), (None, None));
        assert_eq!(t.leaves(), 0);
        t.reclaim_detached(usize::MAX);
        assert_eq!(pool.frames_in_use(), 1);
        assert_free_frames_zero(&pool);
    });
}
