//! loom model of the walk-result cache's second buckets: a leaf whose
//! buckets are full makes room by moving a leaf that lives in its first
//! bucket to that leaf's own second bucket (the node itself: published
//! there, then cleared from its old place), and takes the place it left.
//! A reader looks up the moving leaf and the new one without a lock while
//! the writer does this: it always finds the moving leaf (linked
//! throughout: in its first bucket, its second, or both), whole (its own
//! output), gets the new one whole or a miss (a reader racing an insert),
//! never another leaf's entry, and never a node freed under it (the nodes'
//! liveness cells). Afterwards every leaf is cached, nothing having been
//! evicted. The moving leaf was missed (the reader skipping its old place
//! for the new key's tag, then reading its second bucket from before the
//! move) until writers stored tags with Release and readers ran an Acquire
//! fence before a second-bucket probe; removing either fails here.
#![cfg(loom)]

mod shadow_support;

use shadow_mmu::context::Capacity;
use shadow_support::*;

/// Pages the model chooses its leaves from (by where their leaves go).
const PAGES: u64 = 64;

/// Two buckets of leaves (and the one-bucket stash loom has): four leaves
/// whose first bucket is 0 and second 1 fill bucket 0; a fifth whose
/// buckets are both 0 then finds its only bucket full, and the first of
/// the four moves to bucket 1 to make room.
#[test]
fn a_leaf_moves_to_its_second_bucket_under_a_reader() {
    let capacity = Capacity {
        contexts: 1,
        leaves_per_context: 8,
        paths_per_context: 4,
    };
    let leaves = page_leaves(PAGES);
    loom::model(move || {
        let (collector, directory) = directory(capacity, 0x5eed);
        let handle = collector.register();
        let (movers, single) = {
            let guard = handle.pin();
            let (a, _) = directory
                .get_or_create(&key(ROOT), &guard, |_, _| {}, |_| Some(()), |_| {})
                .expect("a free slot");
            let with = |buckets: (usize, Option<usize>)| {
                (0..PAGES).filter(move |&p| a.page_buckets(p << 12) == buckets)
            };
            let movers: Vec<u64> = with((0, Some(1))).take(4).collect();
            let single = with((0, None))
                .next()
                .expect("a page whose buckets are both 0");
            assert_eq!(movers.len(), 4, "four pages of buckets 0 and 1");
            let mut held = a.lock();
            for &page in &movers {
                assert_eq!(a.cache_leaf(&mut held, leaves[page as usize], &guard), None);
            }
            (movers, single)
        };
        let moving = movers[0];
        let writer = cache_leaf_in_thread(&directory, &collector, leaves[single as usize]);
        {
            let guard = handle.pin();
            let a = directory.get(&key(ROOT), &guard).expect("A");
            for page in [moving, single] {
                if let Some(hit) = a.lookup(page << 12, &guard) {
                    assert_eq!(hit.output_address(page << 12), OLD + (page << 12));
                } else {
                    assert_ne!(page, moving, "the moving leaf, linked throughout, missed");
                }
            }
        }
        assert_eq!(
            writer.join().unwrap(),
            None,
            "a move makes room: nothing is evicted"
        );
        let guard = handle.pin();
        let a = directory.get(&key(ROOT), &guard).expect("A");
        for page in movers.iter().copied().chain([single]) {
            let hit = a.lookup(page << 12, &guard).expect("cached");
            assert_eq!(hit.output_address(page << 12), OLD + (page << 12));
        }
    });
}
