//! loom model of what orders a translate's walk after an invalidation on
//! the real service (issue 3 item 7, audited at stop 26): L1 rewrites a
//! leaf with a plain store and issues a TLBI; the invalidation publishes
//! the context's new generation with a Release store
//! (`Context::finish_invalidation`), and a translate reads the generation
//! with an Acquire load before it walks (`Context::generation`). That pair
//! is all that makes L1's new descriptor visible to a walk that read the
//! new generation: such a walk may insert (the generation did not move), so
//! it must not read the old descriptor.
//!
//! `shadow_race` cannot see this: its L1 memory is sequentially consistent
//! std atomics (`SparseMemory`), so a walk always reads what was written
//! last, and its walk test passes with the pair weakened to Relaxed (its
//! hit tests fail, through the cache entries the invalidation removes).
//! Here L1's memory is loom atomics (`LoomMemory`): a walk reads any store
//! that does not happen before it.
//!
//! The invalidation runs twice: on its own (its lone epoch pin executes a
//! SeqCst fence after L1's store, which orders that store before even a
//! Relaxed generation store), and under a `Burst` pinned before L1's store,
//! as the service loop serves a ring's batch (the invalidation's pin nests
//! and runs no barrier: the generation's Release store alone carries L1's
//! store to the walk).
//!
//! Fails ("stale cache ...") with
//! `Context::generation`'s load Relaxed (both tests; `shadow_race`'s walk
//! test passes it, its hit tests fail it), and with
//! `Context::finish_invalidation`'s store Relaxed (the burst test).
#![cfg(loom)]

use crate::shadow_support;

use loom::thread;
use shadow_mmu::service::{Retry, Translated};
use shadow_support::*;

/// The context exists before the race (so the TLBI finds it and bumps its
/// generation: a context made after the TLBI has no generation to order
/// anything by), from a translate of IPA 0x1000, outside the TLBI's scope.
/// vCPU: translate IPA 0 (a miss: a walk). L1 (main): remap IPA 0 from OLD
/// to NEW with a plain store, then TLBI IPAS2E1 for it. Once the TLBI has
/// returned and the vCPU is done, neither the cache nor the shadow may give
/// OLD; the vCPU's own answer may be OLD (its walk overlapped the TLBI),
/// NEW, or a retry.
#[test]
fn a_walk_that_reads_the_new_generation_reads_the_new_descriptor() {
    model(false);
}

/// [`a_walk_that_reads_the_new_generation_reads_the_new_descriptor`] with
/// L1's store and the TLBI under one burst of the service's worker.
#[test]
fn a_walk_that_reads_the_new_generation_of_a_burst_reads_the_new_descriptor() {
    model(true);
}

fn model(under_burst: bool) {
    loom::model(move || {
        let s = service_on(1, LoomMemory::new());
        let w = s.worker();
        assert_eq!(
            l1_of(&read(&s, &w, &key(ROOT), 0x1000), 0x1000),
            Some(OLD + 0x1000)
        );
        let vcpu = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                let t = read(&s, &w, &key(ROOT), 0);
                match t {
                    Translated::Mapped(_) => {
                        let l1 = l1_of(&t, 0).expect("maps IPA 0");
                        assert!(l1 == OLD || l1 == NEW, "{t:?}");
                    }
                    Translated::Retry(Retry::InvalidationRaced | Retry::Throttled) => {}
                    other => panic!("unexpected {other:?}"),
                }
            })
        };
        let burst = under_burst.then(|| w.burst());
        s.memory().write(L3_TABLE, NEW | PAGE);
        s.invalidate(&w, 1, &ipas2e1(0));
        drop(burst);
        assert_page_0_not_stale(&s, &w, "right after invalidate");
        vcpu.join().unwrap();
        assert_page_0_not_stale(&s, &w, "after the vCPU finished");
    });
}
