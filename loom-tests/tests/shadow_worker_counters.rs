//! loom models of the workers' statistics counters on the real service
//! (review 15 F4). Each `Worker` counts with plain load-and-store
//! increments (`bump`: one writer per counters, the worker's thread), and
//! `Service::worker` hands a dropped worker's counters to the next worker
//! it makes. The handover is correct only if the old worker's last stores
//! happen before the new worker's first load: the dropped worker clears the
//! counters' `claimed` flag with Release, and `worker` issues an Acquire
//! fence after it reads the flag clear. Only then may the counts of both
//! add up.
#![cfg(loom)]

use crate::shadow_support;

use loom::thread;
use shadow_support::*;

/// The handover itself: thread 1 gets a worker, counts one hit and drops
/// the worker; thread 2 gets a worker (the first one's counters when it
/// finds them unclaimed) and counts one hit. Both hits must be in the
/// stats: a second worker that reads a count older than the first's last
/// store writes over it.
///
/// The hits are counted with `Worker::count_hit_unpinned` (the `bump` a
/// translate hit does, without the translate): the first pin of a new
/// worker runs crossbeam-epoch's collection, whose `SeqCst` fence would
/// also acquire the dropped worker's stores and hide a missing fence in
/// `worker` (see `a_translate_hit_of_each_of_two_workers_is_counted`).
/// Fails when `worker`'s Acquire fence is removed, when the Release store
/// in `Worker`'s `Drop` is made Relaxed, and when `worker` takes counters
/// without checking `claimed`.
#[test]
fn a_dropped_workers_counts_pass_to_the_next_worker() {
    loom::model(|| {
        let s = service(1);
        let first = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                w.count_hit_unpinned();
            })
        };
        let second = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                w.count_hit_unpinned();
            })
        };
        first.join().unwrap();
        second.join().unwrap();
        assert_eq!(s.stats().hits, 2);
        // The second worker took the first's counters or made its own.
        assert!(matches!(s.registered_workers(), 1 | 2));
    });
}

/// The same handover through the service's own counted operation, a
/// translate hit (the sketch of review 15 F4): page 0 is cached by a
/// worker dropped before the threads start; each thread gets a worker,
/// translates page 0 (a hit) and drops the worker. Afterwards the stats
/// hold both hits and the one miss. Fails when `worker` takes counters
/// without checking `claimed` (two live workers then race their
/// load-and-store increments) and when the Release store in `Worker`'s
/// `Drop` is made Relaxed. It passes with `worker`'s Acquire fence removed:
/// the first pin of the new worker (the translate's) runs a `SeqCst` fence
/// in crossbeam-epoch's collection after the flag was read, which acquires
/// the old worker's Release store on its own. `worker` keeps its fence so
/// the counts do not rest on when crossbeam collects; the model above
/// checks it.
#[test]
fn a_translate_hit_of_each_of_two_workers_is_counted() {
    loom::model(|| {
        let s = service(1);
        {
            let w = s.worker();
            assert_eq!(l1_of(&read(&s, &w, &key(ROOT), 0), 0), Some(OLD));
        }
        let vcpus: Vec<_> = (0..2)
            .map(|_| {
                let s = s.clone();
                thread::spawn(move || {
                    let w = s.worker();
                    assert_eq!(l1_of(&read(&s, &w, &key(ROOT), 0), 0), Some(OLD));
                })
            })
            .collect();
        for vcpu in vcpus {
            vcpu.join().unwrap();
        }
        let stats = s.stats();
        assert_eq!((stats.hits, stats.misses), (2, 1), "{stats:?}");
    });
}
