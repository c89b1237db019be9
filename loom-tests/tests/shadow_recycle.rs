//! loom models of context recycling on the real directory: with room for
//! one context, a translate in a second context recycles the first while a
//! vCPU translates in it, or while a reader looks the first one up. The
//! successor takes over the slot's cache and shadow (same shadow VMID).
//! Answers are right or retries, the recycled context never takes an
//! insert after it was cleared, the successor starts clean, a reader still
//! holding the retired context never gets one of the successor's cache
//! entries, and no context is freed while a reader holds it (liveness cells
//! on the directory's nodes).
#![cfg(loom)]

mod shadow_support;

use loom::thread;
use shadow_mmu::service::{Retry, Translated};
use shadow_support::*;

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

/// Context A (tree ROOT: IPA 0 -> OLD) is cached; a reader looks IPA 0 up
/// in A while a translate in B (tree ROOT_B: IPA 0 -> NEW) recycles A and
/// caches B's entry for IPA 0 in the cache the slot passes on. The reader,
/// whatever it holds, sees A's entry or nothing, never B's. (The reader is
/// the model's main thread, so one preemption inside its lookup lets the
/// whole recycle run there.)
#[test]
fn a_reader_of_the_retired_context_never_sees_its_successor() {
    loom::model(|| {
        let s = service(1);
        let w = s.worker();
        check(&read(&s, &w, &key(ROOT), 0), 0, OLD);
        let recycler = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                let t = read(&s, &w, &key(ROOT_B), 0);
                assert_eq!(l1_of(&t, 0), Some(NEW), "{t:?}");
            })
        };
        {
            let guard = w.pin();
            if let Some(hit) = s.lookup(&key(ROOT), 0, &guard) {
                assert_eq!(hit.output_address(0), OLD, "a hit of the successor");
            }
        }
        recycler.join().unwrap();
        assert_eq!(s.contexts(), 1);
        let guard = w.pin();
        assert!(s.lookup(&key(ROOT), 0, &guard).is_none());
        let hit = s.lookup(&key(ROOT_B), 0, &guard).expect("B cached");
        assert_eq!(hit.output_address(0), NEW);
    });
}
