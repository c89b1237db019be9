//! loom model of epoch reclamation on the real cache: a reader that found
//! a cached entry under its guard is never racing with that entry's
//! destruction, while an invalidation unlinks it and pushes the collector
//! to free it. Every lock-free node carries a loom-tracked liveness cell
//! that readers read where they dereference the node and its destructor
//! writes, so a destruction not ordered after every such read is reported
//! by loom as a causality violation; an allocation a cache table reuses
//! from its pool of removed nodes is written as a new node, which loom
//! checks against those reads the same way.
#![cfg(loom)]

use crate::shadow_support;

use loom::thread;
use shadow_mmu::service::Worker;
use shadow_support::*;

/// Caches IPAs 0 and 0x1000, then races `reader` (on a thread of its own,
/// with its own worker) against invalidations of IPA 0 and then 0x1000 and
/// `flushes` pushes of the collector (each tries to advance the epoch and
/// frees garbage two epochs old). A table hands its removed nodes to the
/// collector in batches (two under loom): IPA 0's leaf, the one the reader
/// may hold, goes in the second invalidation's deferred call, one call
/// after its unlinking (its paths, two, go in the first's). Afterwards
/// neither IPA is cached, unless `refill` has the writer translate both
/// again after the pushes, before the reader is joined.
fn race_with_invalidation(flushes: usize, refill: bool, reader: fn(&ModelService, &Worker)) {
    loom::model(move || {
        let s = service(1);
        let w = s.worker();
        assert_eq!(l1_of(&read(&s, &w, &key(ROOT), 0), 0), Some(OLD));
        assert_eq!(
            l1_of(&read(&s, &w, &key(ROOT), 0x1000), 0x1000),
            Some(OLD + 0x1000)
        );
        let reader = {
            let s = s.clone();
            thread::spawn(move || reader(&s, &s.worker()))
        };
        s.invalidate(&w, 1, &ipas2e1(0));
        s.invalidate(&w, 1, &ipas2e1(0x1000));
        for _ in 0..flushes {
            w.pin().flush();
        }
        if refill {
            assert_eq!(l1_of(&read(&s, &w, &key(ROOT), 0), 0), Some(OLD));
            assert_eq!(
                l1_of(&read(&s, &w, &key(ROOT), 0x1000), 0x1000),
                Some(OLD + 0x1000)
            );
        }
        reader.join().unwrap();
        let guard = w.pin();
        assert_eq!(s.lookup(&key(ROOT), 0, &guard).is_some(), refill);
        assert_eq!(s.lookup(&key(ROOT), 0x1000, &guard).is_some(), refill);
    });
}

/// A hit is still readable while pinned, whatever the writer did.
fn check_hit(hit: Option<&shadow_mmu::cache::CachedWalk>) {
    if let Some(hit) = hit {
        assert_eq!(hit.output_address(0x10), OLD + 0x10);
    }
}

#[test]
fn no_use_after_free_between_lookup_and_invalidation() {
    race_with_invalidation(2, false, |s, w| {
        let guard = w.pin();
        check_hit(s.lookup(&key(ROOT), 0, &guard));
    });
}

/// The same race, then the writer caches both pages again. A cache table
/// keeps the allocations of the nodes its invalidations removed in a pool
/// once their batch's deferred call has run (`NodePool`; one batch of two
/// under loom), and its inserts take them from there before asking the
/// allocator: the refill's leaves and paths reuse the removed nodes
/// whenever the collector got that far. A node reused while the reader
/// could still hold it would be a new node written where the reader reads
/// (loom reports the write racing with the read, as it reports a free);
/// fails when the removed nodes go back to the pool when they are batched
/// rather than in the deferred call.
#[test]
fn refill_reuses_nodes_only_after_the_reader() {
    race_with_invalidation(2, true, |s, w| {
        let guard = w.pin();
        check_hit(s.lookup(&key(ROOT), 0, &guard));
    });
}

/// The same race with the reader serving two requests in one burst, which
/// (under loom) unpins and pins again between them: a node found after the
/// re-pin is still never freed under the reader. One more push of the
/// collector than above, as the reader's pin moves forward once.
#[test]
fn no_use_after_free_across_a_burst() {
    race_with_invalidation(3, false, |s, w| {
        let mut burst = w.burst();
        for _ in 0..2 {
            check_hit(s.lookup(&key(ROOT), 0, burst.guard()));
            burst.next();
        }
    });
}

/// A VMID flush leaves the cached nodes linked, stale (a lookup reads them
/// and skips them for their flush number); the next walk of each key
/// replaces its stale node, which goes to the table's batch of removed
/// nodes and, after its deferred call, to the pool like an invalidation's.
/// Here the writer flushes and walks both pages again while `reader` may
/// hold IPA 0's first leaf (a hit from before the flush, or the stale node
/// it read), pushes the collector, then flushes and walks both again, the
/// second refill reusing the replaced nodes whenever the collector got
/// that far: a node reused while the reader could still hold it would be a
/// new node written where the reader reads.
#[test]
fn replaced_stale_nodes_reused_only_after_the_reader() {
    // Three walks of two pages and two flushes: more branches than the
    // default allows in one execution.
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 20_000;
    builder.check(|| {
        let s = service(1);
        let w = s.worker();
        let both = |s: &ModelService, w: &Worker| {
            assert_eq!(l1_of(&read(s, w, &key(ROOT), 0), 0), Some(OLD));
            assert_eq!(
                l1_of(&read(s, w, &key(ROOT), 0x1000), 0x1000),
                Some(OLD + 0x1000)
            );
        };
        both(&s, &w);
        let reader = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                let guard = w.pin();
                check_hit(s.lookup(&key(ROOT), 0, &guard));
            })
        };
        s.invalidate(&w, 1, &ipc::tlbi::InvalidateScope::Vmid);
        both(&s, &w);
        for _ in 0..2 {
            w.pin().flush();
        }
        s.invalidate(&w, 1, &ipc::tlbi::InvalidateScope::Vmid);
        both(&s, &w);
        reader.join().unwrap();
        let guard = w.pin();
        assert!(s.lookup(&key(ROOT), 0, &guard).is_some());
        assert!(s.lookup(&key(ROOT), 0x1000, &guard).is_some());
    });
}
