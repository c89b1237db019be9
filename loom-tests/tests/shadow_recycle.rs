//! loom models of context recycling on the real directory: with room for
//! one context, a translate in a second context recycles the first while a
//! vCPU translates in it, or while a reader looks the first one up. The
//! successor takes over the slot's cache and shadow (same shadow VMID).
//! Answers are right or retries, the recycled context never takes an
//! insert after it was cleared, the successor starts clean, a reader still
//! holding the retired context never gets one of the successor's cache
//! entries (a model on the directory and cache alone, small enough for
//! loom to reach that interleaving), and no context is freed while a reader
//! holds it (liveness cells on the directory's nodes).
#![cfg(loom)]

mod shadow_support;

use crossbeam_epoch::Collector;
use loom::sync::Arc;
use loom::thread;
use shadow_mmu::cache::CachedWalk;
use shadow_mmu::context::{Capacity, Created, Directory, HostVmids, ShadowVmids};
use shadow_mmu::service::{Retry, Translated};
use shadow_support::*;
use walker::{AccessKind, ExposedFeatures, IdRegisters, Stage2Walker};

fn check(t: &Translated, ipa: u64, base: u64) {
    match t {
        Translated::Mapped(_) => assert_eq!(l1_of(t, ipa), Some(base + ipa), "{t:?}"),
        Translated::Retry(Retry::InvalidationRaced | Retry::Throttled) => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn recycling_races_with_a_translate_in_the_victim() {
    loom::model(|| {
        let s = service(1);
        let vcpu = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                check(&read(&s, &w, &key(ROOT), 0), 0, OLD);
            })
        };
        let w = s.worker();
        check(&read(&s, &w, &key(ROOT_B), 0x1000), 0x1000, NEW);
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

/// The directory alone, with room for one context. Context A (tree ROOT:
/// IPA 0 -> OLD) has IPA 0 cached, and a reader holds A, as a translate
/// does between finding its context and looking up the cache. Meanwhile a
/// second thread creates context B (tree ROOT_B: IPA 0 -> NEW): A is
/// retired and the slot's cache flushed (as the service's retirement does),
/// and B caches its own entry for IPA 0 in that same cache. The reader's
/// lookup in A gives A's entry or nothing, never B's: a retired context
/// takes no hit from its retirement's flush number on. (Fails when
/// `WalkCache::lookup` ignores `retired_at`: the reader then finds B's entry,
/// stamped with the current flush number.)
#[test]
fn a_reader_of_the_retired_context_never_sees_its_successor() {
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
    // The two leaves, walked from the trees once (walks are not the subject).
    let memory = memory();
    let leaf = |root| {
        let walker = Stage2Walker::new(key(root).registers(), &features);
        let walked = walker.walk(&memory, 0, AccessKind::Read).expect("mapped");
        CachedWalk::from_translation(&walked)
    };
    let (leaf_a, leaf_b) = (leaf(ROOT), leaf(ROOT_B));
    assert_eq!(leaf_b.output_address(0), NEW);
    let host = HostVmids {
        width: ipc::VmidWidth::Bits16,
        l1_vmid: 1,
    };
    let vmids = ShadowVmids::new(16, capacity.contexts, host).expect("valid shadow VMIDs");
    loom::model(move || {
        let directory = Arc::new(Directory::<()>::new(features, capacity, vmids));
        let collector = Collector::new();
        let handle = collector.register();
        let guard = handle.pin();
        let (a, _) = directory
            .get_or_create(&key(ROOT), &guard, |_, _| {}, |_| Some(()), |_| {})
            .expect("a free slot");
        a.cache_leaf(&mut a.lock(), leaf_a, &guard, |_, _| {});
        let recycler = {
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
                b.cache_leaf(&mut b.lock(), leaf_b, &guard, |_, _| {});
                assert_eq!(b.lookup(0, &guard).map(|h| h.output_address(0)), Some(NEW));
            })
        };
        // Yield first: loom then starts from the recycle done before the
        // lookup (the order that shows a successor's entry) and preempts
        // the recycler at every point to put the lookup inside it.
        thread::yield_now();
        if let Some(hit) = a.lookup(0, &guard) {
            assert_eq!(hit.output_address(0), OLD, "a hit of the successor");
        }
        recycler.join().unwrap();
        assert!(a.lookup(0, &guard).is_none(), "after the recycle");
    });
}
