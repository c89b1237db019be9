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
//!
//! `a_moved_leaf_is_found_past_a_place_another_move_refilled` (stop 26
//! audit) covers the tag a move stores in its target bucket
//! (`Table::move_to_second`, Release "as in `insert`"): the first model
//! passes with it Relaxed, because there the target place was never used.
//! It matters when the place was emptied after an earlier move out of
//! that bucket: a reader skipping it for the moved leaf's tag must then
//! find the earlier mover in its second bucket.
#![cfg(loom)]

use crate::shadow_support;

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

/// The preemption bound of
/// [`a_moved_leaf_is_found_past_a_place_another_move_refilled`] (CI's if
/// larger): the reader must pin before the writer's epoch barriers that
/// follow N's move (a later pin's SeqCst fence would order the move before
/// the reader's probes) and probe after M's move, three preemptions in all.
/// At CI's 2 the model passes with the moved tag Relaxed; at 3 it fails,
/// and at 4 the correct code takes 0.2 s (502 iterations).
const REFILL_PREEMPTIONS: usize = 4;

/// Four buckets (12 leaves). Bucket B holds leaf N (second bucket C) and
/// three leaves with no second bucket; bucket A holds leaf M (second
/// bucket B) and three with none. While a reader looks N up, the writer
/// (under the context's lock, as installs and invalidations are):
/// caches S (bucket B only: N moves to C and S takes N's place), removes S
/// (an invalidation: that place is empty), then caches P (bucket A only:
/// M moves into B's empty place, P takes M's). N is linked throughout, so
/// the reader finds it, whole; when it skips B's place for M's tag, only
/// that tag's Release (and the reader's fence) orders N's publication in C
/// before its probe of C. Fails ("N, linked throughout, missed") with the
/// tag store in `Table::move_to_second` Relaxed (at [`REFILL_PREEMPTIONS`]).
#[test]
fn a_moved_leaf_is_found_past_a_place_another_move_refilled() {
    let capacity = Capacity {
        contexts: 1,
        leaves_per_context: 12,
        paths_per_context: 4,
    };
    let leaves = page_leaves(PAGES);
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(
        builder
            .preemption_bound
            .map_or(REFILL_PREEMPTIONS, |b| b.max(REFILL_PREEMPTIONS)),
    );
    builder.check(move || {
        let (collector, directory) = directory(capacity, 0x5eed);
        let handle = collector.register();
        let (n, m, s, p) = {
            let guard = handle.pin();
            let (a, _) = directory
                .get_or_create(&key(ROOT), &guard, |_, _| {}, |_| Some(()), |_| {})
                .expect("a free slot");
            let with = |buckets: (usize, Option<usize>)| {
                (0..PAGES).filter(move |&p| a.page_buckets(p << 12) == buckets)
            };
            // Buckets with four pages of no second bucket (three fillers
            // and S, or P), and a page of each move.
            let mut choice = None;
            'search: for bucket_b in 0..4 {
                for bucket_a in (0..4).filter(|&x| x != bucket_b) {
                    let singles_b: Vec<u64> = with((bucket_b, None)).take(4).collect();
                    let singles_a: Vec<u64> = with((bucket_a, None)).take(4).collect();
                    let Some(m) = with((bucket_a, Some(bucket_b))).next() else {
                        continue;
                    };
                    let Some(n) = (0..4)
                        .filter(|&c| c != bucket_a && c != bucket_b)
                        .find_map(|c| with((bucket_b, Some(c))).next())
                    else {
                        continue;
                    };
                    if singles_b.len() == 4 && singles_a.len() == 4 {
                        choice = Some((n, m, singles_b, singles_a));
                        break 'search;
                    }
                }
            }
            let (n, m, singles_b, singles_a) = choice.expect("pages for both moves");
            let mut held = a.lock();
            // N first (the first place of B, the one a move of B takes),
            // then B's fillers; M, then A's fillers (B is full by then, so
            // M goes to A, its first bucket).
            for page in [n]
                .into_iter()
                .chain(singles_b[..3].iter().copied())
                .chain([m])
                .chain(singles_a[..3].iter().copied())
            {
                assert_eq!(a.cache_leaf(&mut held, leaves[page as usize], &guard), None);
            }
            (n, m, singles_b[3], singles_a[3])
        };
        let writer = {
            let (directory, collector) = (directory.clone(), collector.clone());
            let (leaf_s, leaf_p) = (leaves[s as usize], leaves[p as usize]);
            loom::thread::spawn(move || {
                let handle = collector.register();
                let guard = handle.pin();
                let a = directory.get(&key(ROOT), &guard).expect("A");
                let mut held = a.lock();
                let evicted_s = a.cache_leaf(&mut held, leaf_s, &guard);
                assert_eq!(
                    a.invalidate_cached_leaves(&mut held, s << 12, (s + 1) << 12, &guard),
                    1
                );
                let evicted_p = a.cache_leaf(&mut held, leaf_p, &guard);
                (evicted_s, evicted_p)
            })
        };
        {
            let guard = handle.pin();
            let a = directory.get(&key(ROOT), &guard).expect("A");
            let hit = a
                .lookup(n << 12, &guard)
                .expect("N, linked throughout, missed");
            assert_eq!(hit.output_address(n << 12), OLD + (n << 12));
        }
        assert_eq!(
            writer.join().unwrap(),
            (None, None),
            "the moves make room: nothing is evicted"
        );
        let guard = handle.pin();
        let a = directory.get(&key(ROOT), &guard).expect("A");
        for page in [n, m, p] {
            let hit = a.lookup(page << 12, &guard).expect("cached");
            assert_eq!(hit.output_address(page << 12), OLD + (page << 12));
        }
        assert!(a.lookup(s << 12, &guard).is_none(), "S was invalidated");
    });
}
