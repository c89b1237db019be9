//! loom model of the walk-result cache's stash (review 38 R38-1): a leaf
//! whose bucket is full goes to the stash, and a full bucket and stash
//! evict their oldest leaf, which may be in the stash. A reader probes the
//! leaf's bucket, then the stash, without a lock, while the writer evicts
//! a stashed leaf and puts a new one in its place: the reader gets each
//! leaf whole (its own output) or a miss, never another leaf's entry, and
//! never a node freed under it (the nodes' liveness cells).
#![cfg(loom)]

use crate::shadow_support;

use shadow_mmu::cache::LEAF_STASH;
use shadow_mmu::context::Capacity;
use shadow_support::*;

/// One bucket of four leaves and, under loom, a stash of four: pages 0-3
/// fill the bucket, pages 4-7 the stash. Pages 0-3 are then cached again
/// (newer), so page 4, in the stash, is the oldest: the writer's insert of
/// page 8 evicts it and takes its place, while the reader looks up pages 4
/// and 8 (both only ever in the stash) and page 0 (in the bucket).
#[test]
fn a_stashed_leaf_is_evicted_and_replaced_under_a_reader() {
    assert_eq!(LEAF_STASH, 4, "the model counts on a stash of one bucket");
    let capacity = Capacity {
        contexts: 1,
        leaves_per_context: 4,
        paths_per_context: 4,
    };
    let leaves = page_leaves(9);
    loom::model(move || {
        let (collector, directory) = directory(capacity, 0x5eed);
        let handle = collector.register();
        {
            let guard = handle.pin();
            let (a, _) = directory
                .get_or_create(&key(ROOT), &guard, |_, _| {}, |_| Some(()), |_| {})
                .expect("a free slot");
            let mut held = a.lock();
            for page in (0..8).chain(0..4) {
                assert_eq!(a.cache_leaf(&mut held, leaves[page], &guard), None);
            }
        }
        let writer = cache_leaf_in_thread(&directory, &collector, leaves[8]);
        {
            let guard = handle.pin();
            let a = directory.get(&key(ROOT), &guard).expect("A");
            for page in [4u64, 8, 0] {
                if let Some(hit) = a.lookup(page << 12, &guard) {
                    assert_eq!(hit.output_address(page << 12), OLD + (page << 12));
                }
            }
            assert!(a.lookup(0, &guard).is_some(), "page 0 stays cached");
        }
        assert_eq!(
            writer.join().unwrap(),
            Some((4 << 12, 1 << 12)),
            "the oldest leaf, in the stash, is evicted"
        );
        let guard = handle.pin();
        let a = directory.get(&key(ROOT), &guard).expect("A");
        assert!(a.lookup(4 << 12, &guard).is_none(), "page 4 was evicted");
        for page in (0..4).chain(5..9u64) {
            let hit = a.lookup(page << 12, &guard).expect("cached");
            assert_eq!(hit.output_address(page << 12), OLD + (page << 12));
        }
    });
}
