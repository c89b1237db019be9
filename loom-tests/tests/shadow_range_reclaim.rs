//! loom model of a range removal's deferred free (stop 31): the leaves a
//! range invalidation removes from one block-index chunk go to the epoch
//! collector in one deferred call (`Table::retire_run`, whole batches of
//! `RETIRE_BATCH`, two under loom, in one allocation) instead of a call
//! per batch. A reader that found one of them under its guard never races
//! with its destruction, nor with the reuse of its allocation by a later
//! insert (the deferred call gives the allocations to the table's pool):
//! every node carries a loom-tracked liveness cell that a reader reads
//! where it dereferences the node and the destructor (or a new node
//! written over the allocation) writes, so a destruction not ordered after
//! the reader's read is reported as a causality violation. Mutant checked:
//! `retire_run` dropping the run's nodes at once instead of deferring them
//! fails this model.
#![cfg(loom)]

use crate::shadow_support;

use shadow_mmu::context::Capacity;
use shadow_support::*;

/// Pages cached and then removed by one range: four, so the chunk's run
/// holds two whole batches (a run of fewer than two batches goes through
/// the per-batch path that `shadow_reclaim` models).
const PAGES: u64 = 4;

#[test]
fn no_use_after_free_between_lookup_and_a_range_removal() {
    let capacity = Capacity {
        contexts: 1,
        leaves_per_context: 8,
        paths_per_context: 4,
    };
    let leaves = page_leaves(PAGES);
    loom::model(move || {
        let (collector, directory) = directory(capacity, 0x5eed);
        let handle = collector.register();
        let cache_all = |handle: &crossbeam_epoch::LocalHandle| {
            let guard = handle.pin();
            let (a, _) = directory
                .get_or_create(&key(ROOT), &guard, |_, _| {}, |_| Some(()), |_| {})
                .expect("a free slot");
            let mut held = a.lock();
            for leaf in &leaves {
                assert_eq!(a.cache_leaf(&mut held, *leaf, &guard), None);
            }
        };
        cache_all(&handle);
        let reader = {
            let (directory, collector) = (directory.clone(), collector.clone());
            loom::thread::spawn(move || {
                let handle = collector.register();
                let guard = handle.pin();
                let a = directory.get(&key(ROOT), &guard).expect("A");
                for page in [0, PAGES - 1] {
                    if let Some(hit) = a.lookup(page << 12, &guard) {
                        let ipa = (page << 12) | 0x10;
                        assert_eq!(hit.output_address(ipa), OLD + ipa);
                    }
                }
            })
        };
        {
            let guard = handle.pin();
            let a = directory.get(&key(ROOT), &guard).expect("A");
            let mut held = a.lock();
            let removed = a.invalidate_cached_leaves(&mut held, 0, PAGES << 12, &guard);
            assert_eq!(removed, PAGES as usize);
            for page in 0..PAGES {
                assert!(
                    a.lookup(page << 12, &guard).is_none(),
                    "page {page} after its range"
                );
            }
        }
        // Pushes of the collector (each may advance the epoch and run the
        // deferred call), then the inserts that reuse the pooled nodes.
        for _ in 0..2 {
            handle.pin().flush();
        }
        cache_all(&handle);
        reader.join().unwrap();
    });
}
