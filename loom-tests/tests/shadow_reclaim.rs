//! loom model of epoch reclamation on the real cache: a reader that found
//! a cached entry under its guard is never racing with that entry's
//! destruction, while an invalidation unlinks it and pushes the collector
//! to free it. Every lock-free node carries a loom-tracked liveness cell
//! that readers read where they dereference the node and its destructor
//! writes, so a destruction not ordered after every such read is reported
//! by loom as a causality violation.
#![cfg(loom)]

mod shadow_support;

use loom::thread;
use shadow_support::*;

#[test]
fn no_use_after_free_between_lookup_and_invalidation() {
    loom::model(|| {
        let s = service(1);
        let w = s.worker();
        // Cache IPA 0 (its leaf and paths) before the race.
        assert_eq!(l1_of(&read(&s, &w, &key(ROOT), 0), 0), Some(OLD));
        let reader = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                let guard = w.pin();
                if let Some(hit) = s.lookup(&key(ROOT), 0, &guard) {
                    // Still readable while pinned, whatever the writer did.
                    assert_eq!(hit.output_address(0x10), OLD + 0x10);
                }
            })
        };
        s.invalidate(&w, 1, &ipas2e1(0));
        // Push the collector: each flush tries to advance the epoch and
        // frees garbage two epochs old.
        for _ in 0..2 {
            w.pin().flush();
        }
        reader.join().unwrap();
        let guard = w.pin();
        assert!(s.lookup(&key(ROOT), 0, &guard).is_none());
    });
}

/// The same race with the reader serving two requests in one burst: the
/// burst's pin is moved forward between them without a barrier
/// (`Burst::next`), and a node found after the move is still never freed
/// under the reader.
#[test]
fn no_use_after_free_across_a_burst() {
    loom::model(|| {
        let s = service(1);
        let w = s.worker();
        assert_eq!(l1_of(&read(&s, &w, &key(ROOT), 0), 0), Some(OLD));
        let reader = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                let mut burst = w.burst();
                for _ in 0..2 {
                    if let Some(hit) = s.lookup(&key(ROOT), 0, burst.guard()) {
                        assert_eq!(hit.output_address(0x10), OLD + 0x10);
                    }
                    burst.next();
                }
            })
        };
        s.invalidate(&w, 1, &ipas2e1(0));
        // One more push than above: the reader's pin moves forward once.
        for _ in 0..3 {
            w.pin().flush();
        }
        reader.join().unwrap();
        let guard = w.pin();
        assert!(s.lookup(&key(ROOT), 0, &guard).is_none());
    });
}
