//! loom model of context recycling on the real directory: with room for
//! one context, a translate in a second context recycles the first while a
//! vCPU translates in it. Answers are right or retries, the recycled
//! context never takes an insert after it was cleared, the successor that
//! reuses its shadow VMID starts clean, and no context is freed while a
//! reader holds it (liveness cells on the directory's nodes).
#![cfg(loom)]

mod shadow_support;

use loom::thread;
use shadow_mmu::service::{Retry, Translated};
use shadow_support::*;

fn check(t: &Translated, ipa: u64) {
    match t {
        Translated::Mapped(_) => assert_eq!(l1_of(t, ipa), Some(OLD + ipa), "{t:?}"),
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
                check(&read(&s, &w, &key(ROOT), 0), 0);
            })
        };
        let w = s.worker();
        check(&read(&s, &w, &key(ROOT_B), 0x1000), 0x1000);
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
