//! loom models of context recycling on the real directory: with room for
//! one context, a translate in a second context recycles the first while a
//! vCPU translates in it, or while a reader looks the first one up. The
//! successor takes over the slot's cache and shadow (same shadow VMID).
//! Answers are right or retries, the recycled context never takes an
//! insert after it was cleared, the successor starts clean, a reader still
//! holding the retired context never gets one of the successor's cache
//! entries (a model on the directory and cache alone, small enough for
//! loom to reach that interleaving), and no context is freed while a reader
//! holds it (liveness cells on the directory's nodes). A context living in
//! the second of its two directory buckets is found by a concurrent lookup
//! until it is retired, and never confused with its successor.
#![cfg(loom)]

use crate::shadow_support;

use crossbeam_epoch::Collector;
use loom::sync::atomic::AtomicBool;
use loom::sync::Arc;
use loom::thread;
use shadow_mmu::cache::CachedWalk;
use shadow_mmu::context::{Capacity, ContextKey, Created, Directory, HostVmids, ShadowVmids};
use shadow_support::*;
use std::sync::atomic::Ordering;
use walker::{AccessKind, Endianness, ExposedFeatures, IdRegisters, Stage2Walker};

#[test]
fn recycling_races_with_a_translate_in_the_victim() {
    loom::model(|| {
        let s = service(1);
        let vcpu = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                assert_maps_or_retries(&read(&s, &w, &key(ROOT), 0), 0, OLD);
            })
        };
        let w = s.worker();
        assert_maps_or_retries(&read(&s, &w, &key(ROOT_B), 0x1000), 0x1000, NEW);
        vcpu.join().unwrap();
        assert_eq!(s.contexts(), 1);
        let log = s.backend().log.lock().unwrap().clone();
        assert_no_insert_after_clear(&log);
        // Whichever context holds the one slot, its shadow holds only its
        // own tree's entries.
        if let Some(m) = s.shadow_lookup(&w, &key(ROOT_B), 0) {
            panic!("context B shadows IPA 0 it never translated: {m:?}");
        }
        if let Some(m) = s.shadow_lookup(&w, &key(ROOT), 0x1000) {
            panic!("context A shadows IPA 0x1000 it never translated: {m:?}");
        }
    });
}

/// What the reader of the retired context looks up.
#[derive(Clone, Copy)]
enum Probe {
    /// The cached leaf (`Context::lookup`).
    Leaf,
    /// The deepest cached intermediate path (`Context::lookup_path`).
    Path,
}

/// The directory alone, with room for one context. Context A (tree ROOT:
/// IPA 0 -> OLD) has IPA 0 cached (leaf and paths), and a reader holds A,
/// as a translate does between finding its context and looking up the
/// cache. Meanwhile a second thread creates context B (tree ROOT_B: IPA 0
/// -> NEW): A is retired and the slot's cache flushed (as the service's
/// retirement does), and B caches its own leaf and paths for IPA 0 in that
/// same cache. The reader's lookup in A gives A's entry or nothing, never
/// B's: a retired context takes no hit from its retirement's flush number
/// on.
///
/// Fails when `WalkCache::lookup` (or `lookup_path`) ignores `retired_at`:
/// the reader then finds B's entry, stamped with the current flush number.
/// Fails too when the retirement's flush bump is not a Release (or the
/// lookup's load of the flush number not an Acquire): the reader then reads
/// the bumped number but the `retired_at` A had before its retirement
/// (measured: `flush.fetch_add(1, AcqRel)` weakened to `Acquire` in
/// `WalkCache::flush`, or either load in `lookup`/`lookup_path` to
/// `Relaxed`). The reader must not `yield_now` before its lookup: loom lets
/// a thread that yielded read only stores newer than those it saw before
/// the yield, which hides exactly that stale `retired_at` (A's creation
/// store, seen by the thread that made A).
fn retired_reader_never_sees_its_successor(probe: Probe) {
    let features = ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 5,
        mmfr1: 0,
        mmfr2: 0,
    })
    .expect("valid ID registers");
    let capacity = Capacity {
        contexts: 1,
        leaves_per_context: 4,
        paths_per_context: 4,
    };
    // The two walks, made once (walks are not the subject).
    let memory = memory();
    let walk = |root| {
        let walker = Stage2Walker::new(key(root).registers(), &features);
        walker.walk(&memory, 0, AccessKind::Read).expect("mapped")
    };
    let (walk_a, walk_b) = (walk(ROOT), walk(ROOT_B));
    let (leaf_a, leaf_b) = (
        CachedWalk::from_translation(&walk_a),
        CachedWalk::from_translation(&walk_b),
    );
    assert_eq!(leaf_b.output_address(0), NEW);
    let host = HostVmids {
        width: ipc::VmidWidth::Bits16,
        l1_vmid: 1,
    };
    let vmids = ShadowVmids::new(16, capacity.contexts, host).expect("valid shadow VMIDs");
    loom::model(move || {
        let collector = Collector::new();
        let directory = Arc::new(Directory::<()>::new(
            features, capacity, vmids, 0, &collector,
        ));
        let handle = collector.register();
        let guard = handle.pin();
        let (a, _) = directory
            .get_or_create(&key(ROOT), &guard, |_, _| {}, |_| Some(()), |_| {})
            .expect("a free slot");
        {
            let mut held = a.lock();
            a.cache_leaf(&mut held, leaf_a, &guard);
            a.cache_paths(&mut held, &walk_a, &guard);
        }
        // Set (Relaxed) once the recycle is done; see the reader.
        let recycled = Arc::new(AtomicBool::new(false));
        let recycler = {
            let recycled = recycled.clone();
            let directory = directory.clone();
            let collector = collector.clone();
            thread::spawn(move || {
                let handle = collector.register();
                let guard = handle.pin();
                let (b, created) = directory
                    .get_or_create(
                        &key(ROOT_B),
                        &guard,
                        |victim, held| {
                            victim.flush_cache(held, &guard);
                        },
                        |_| panic!("the slot keeps its shadow"),
                        |_| {},
                    )
                    .expect("recycles A");
                assert!(matches!(created, Created::Recycled { .. }));
                let mut held = b.lock();
                b.cache_leaf(&mut held, leaf_b, &guard);
                b.cache_paths(&mut held, &walk_b, &guard);
                drop(held);
                assert_eq!(b.lookup(0, &guard).map(|h| h.output_address(0)), Some(NEW));
                let path = b.lookup_path(0, &guard).expect("B's path");
                assert_eq!(path.reads()[0].address, ROOT_B);
                recycled.store(true, Ordering::Relaxed);
            })
        };
        // A Relaxed load: a point where loom switches to the recycler
        // without ordering anything (a yield would hide the stale reads the
        // model is about, an Acquire would order the recycle before the
        // lookup). Without it loom's bounded search never ran the recycle
        // between the spawn and the lookup's first load.
        let _ = recycled.load(Ordering::Relaxed);
        match probe {
            Probe::Leaf => {
                if let Some(hit) = a.lookup(0, &guard) {
                    assert_eq!(hit.output_address(0), OLD, "a hit of the successor");
                }
            }
            Probe::Path => {
                if let Some(path) = a.lookup_path(0, &guard) {
                    assert_eq!(path.reads()[0].address, ROOT, "a path of the successor");
                }
            }
        }
        recycler.join().unwrap();
        assert!(a.lookup(0, &guard).is_none(), "after the recycle");
        assert!(a.lookup_path(0, &guard).is_none(), "after the recycle");
    });
}

/// The two-choice directory (review 11 R11-4): with two slots (two buckets
/// of four places), context B is made to live in the *second* of its two
/// buckets (A, created first, holds B's first bucket, so B goes to the
/// emptier one). A reader looks B up - probing B's first bucket, then its
/// second - while another thread recycles B's slot for C: B is retired,
/// its cache flushed, unlinked from its second bucket, and C linked and
/// given its own cache entry. The recycler raises a flag before it starts.
/// The reader must find B (with B's entry or none) unless that flag was
/// raised by the time its lookup returned (a miss is only allowed once the
/// recycle may have retired or unlinked B: both are Release stores, so a
/// reader that saw either also sees the flag), never C or C's entry, and
/// never a freed node (liveness cells). Fails when `Directory::get` skips
/// the second bucket, before the race and in it (review 12 R12-4: the
/// reader accepted a miss in every case). It does not test R11-1 (a
/// retired context handed out): a retired B returned here still passes
/// every assertion (its key is B's, and `retired_at` hides its successor's
/// entries from its lookups); `tests/review11.rs` covers that.
#[test]
fn a_context_in_its_second_bucket_is_found_until_retired() {
    let features = ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 5,
        mmfr1: 0,
        mmfr2: 0,
    })
    .expect("valid ID registers");
    let capacity = Capacity {
        contexts: 2,
        leaves_per_context: 4,
        paths_per_context: 4,
    };
    let memory = memory();
    let leaf = |root| {
        let walker = Stage2Walker::new(key(root).registers(), &features);
        let walked = walker.walk(&memory, 0, AccessKind::Read).expect("mapped");
        CachedWalk::from_translation(&walked)
    };
    let (leaf_old, leaf_new) = (leaf(ROOT), leaf(ROOT_B));
    let host = HostVmids {
        width: ipc::VmidWidth::Bits16,
        l1_vmid: 1,
    };
    let vmids = ShadowVmids::new(16, capacity.contexts, host).expect("valid shadow VMIDs");
    let candidate = |i: u64| ContextKey::new(1, 0x10_0000 + (i << 12), VTCR, Endianness::Little);
    loom::model(move || {
        let collector = Collector::new();
        let directory = Arc::new(Directory::<()>::new(
            features, capacity, vmids, 0x5eed, &collector,
        ));
        // A: two different buckets; B: first bucket A's, second another.
        let (ka, [first, _]) = (0..)
            .map(|i| (candidate(i), directory.candidate_buckets(&candidate(i))))
            .find(|(_, [x, y])| x != y)
            .expect("two buckets");
        let (kb, [_, second]) = (0..)
            .map(|i| (candidate(i), directory.candidate_buckets(&candidate(i))))
            .find(|(k, [x, y])| *k != ka && *x == first && *y != first)
            .expect("a key sharing A's first bucket");
        let kc = (0..)
            .map(candidate)
            .find(|k| *k != ka && *k != kb)
            .expect("a third key");
        let kd = (0..)
            .map(candidate)
            .find(|k| *k != ka && *k != kb && *k != kc)
            .expect("a fourth key");
        let handle = collector.register();
        let guard = handle.pin();
        let make = |k: &ContextKey| {
            directory
                .get_or_create(
                    k,
                    &guard,
                    |v, held| {
                        v.flush_cache(held, &guard);
                    },
                    |_| Some(()),
                    |_| {},
                )
                .expect("a context")
        };
        let (_, created) = make(&ka);
        assert_eq!(created, Created::New);
        let (b, created) = make(&kb);
        assert_eq!(created, Created::New);
        assert_ne!(second, first);
        b.cache_leaf(&mut b.lock(), leaf_old, &guard);
        // D recycles A (slot 0): the hand now points at B's slot.
        let (_, created) = make(&kd);
        assert!(matches!(created, Created::Recycled { victim: Some(v) } if v == ka));
        assert!(
            directory.get(&kb, &guard).is_some(),
            "B in its second bucket"
        );
        drop(guard);
        let recycling = Arc::new(AtomicBool::new(false));
        let recycler = {
            let directory = directory.clone();
            let collector = collector.clone();
            let recycling = recycling.clone();
            thread::spawn(move || {
                let handle = collector.register();
                let guard = handle.pin();
                recycling.store(true, Ordering::SeqCst);
                let (c, created) = directory
                    .get_or_create(
                        &kc,
                        &guard,
                        |victim, held| {
                            victim.flush_cache(held, &guard);
                        },
                        |_| panic!("the slot keeps its shadow"),
                        |_| {},
                    )
                    .expect("recycles B");
                assert!(matches!(created, Created::Recycled { victim: Some(v) } if v == kb));
                c.cache_leaf(&mut c.lock(), leaf_new, &guard);
            })
        };
        let guard = handle.pin();
        let found = directory.get(&kb, &guard);
        // Read after the lookup: a miss needs the recycle to have begun.
        let recycle_began = recycling.load(Ordering::SeqCst);
        match found {
            Some(found) => {
                assert_eq!(found.key(), kb, "another context under B's key");
                if let Some(hit) = found.lookup(0, &guard) {
                    assert_eq!(hit.output_address(0), OLD, "a hit of B's successor");
                }
            }
            None => assert!(recycle_began, "B missed while live (no recycle yet)"),
        }
        drop(guard);
        recycler.join().unwrap();
        let guard = handle.pin();
        assert!(directory.get(&kb, &guard).is_none(), "B after its recycle");
        let c = directory.get(&kc, &guard).expect("C");
        assert_eq!(c.lookup(0, &guard).map(|h| h.output_address(0)), Some(NEW));
    });
}

#[test]
fn a_reader_of_the_retired_context_never_sees_its_successors_leaf() {
    retired_reader_never_sees_its_successor(Probe::Leaf);
}

#[test]
fn a_reader_of_the_retired_context_never_sees_its_successors_path() {
    retired_reader_never_sees_its_successor(Probe::Path);
}
