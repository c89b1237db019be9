//! loom model of a translate racing the recycle of its own context (review
//! 15 F1): a translate that found context A before a recycle retired it,
//! and read A's invalidation generation only after the retirement's bump,
//! must insert nothing. By then the slot's cache and shadow belong to the
//! successor B, written under B's lock, so such an insert would give B
//! A's walk (an isolation breach) and, with the cache tables' slots
//! written by a load and a store, would be a second writer of B's tables
//! (a node retired twice, another leaked).
//!
//! The generation check cannot refuse that insert (it read the bumped
//! generation); `Context::may_insert`'s retired check is the only thing
//! that does. The recycle models (`shadow_recycle`,
//! `shadow_reclaim_recycle`) never reach "found before, read after":
//! their victim's translate always reads the generation first.
//!
//! With one context slot: A exists; a vCPU translates IPA 0 in A while the
//! main thread translates IPA 0x1000 in B, which recycles A. Afterwards
//! B's cache and shadow hold nothing for IPA 0 (B never translated it).
//! Fails ("B's shadow maps IPA 0 it never translated") when
//! `Context::may_insert` skips its `is_retired()` check (in a debug build,
//! at the service's `debug_assert!` that the cache it inserts into is not
//! a retired context's). 0.02 s at LOOM_MAX_PREEMPTIONS=2 in release.
#![cfg(loom)]

use crate::shadow_support;

use loom::thread;
use shadow_support::*;

#[test]
fn a_translate_in_the_victim_inserts_nothing_for_the_successor() {
    loom::model(|| {
        let s = service(1);
        let w = s.worker();
        // A exists before the race (the vCPU finds it without creating it).
        assert_maps_or_retries(&read(&s, &w, &key(ROOT), 0x1000), 0x1000, OLD);
        let vcpu = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                assert_maps_or_retries(&read(&s, &w, &key(ROOT), 0), 0, OLD);
            })
        };
        assert_maps_or_retries(&read(&s, &w, &key(ROOT_B), 0x1000), 0x1000, NEW);
        vcpu.join().unwrap();
        // B still holds the slot (the vCPU did not recycle it back for A).
        if s.contexts() == 1 && s.shadow_vmid(&w, &key(ROOT_B)).is_some() {
            let guard = w.pin();
            if let Some(hit) = s.lookup(&key(ROOT_B), 0, &guard) {
                panic!("B hits A's walk of IPA 0: {hit:?}");
            }
            drop(guard);
            if let Some(m) = s.shadow_lookup(&w, &key(ROOT_B), 0) {
                panic!("B's shadow maps IPA 0 it never translated: {m:?}");
            }
        }
    });
}
