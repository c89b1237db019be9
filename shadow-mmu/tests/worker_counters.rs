//! The worker registry's claim on reused counters (review 15 F4): a worker
//! made while another is alive never takes that worker's counters, even
//! when both were handed out from the dropped workers' entries. (The
//! ordering of the handover is checked by the loom model
//! `shadow_worker_counters`; this is the claim's bookkeeping.)
#![cfg(not(loom))]

use crate::common;

use common::*;
use walker::{AccessKind, Granule};

/// One entry, freed by a dropped worker: the next worker reuses it and
/// claims it, so the one after (while the first is alive) makes a second
/// entry. Fails when a reused entry is not marked claimed (both workers
/// would then share one set of counters: `bump` is a load and a store, so
/// two threads would lose each other's counts).
#[test]
fn live_workers_never_share_counters() {
    let mem = L1Memory::new();
    let tree = L1Tables::new(mem.clone(), Granule::K4);
    tree.map(0, 0x8000_0000, 3, RW);
    let key = tree.key(1);
    let s = service_with(mem, 1 << 20, 2);
    drop(s.worker());
    assert_eq!(s.registered_workers(), 1);
    let reusing = s.worker();
    let other = s.worker();
    assert_eq!(s.registered_workers(), 2, "a live worker's counters shared");
    for w in [&reusing, &other] {
        let t = s.translate(w, &key, 0, AccessKind::Read, &ABORT);
        assert!(pa_of(&t, 0).is_some(), "{t:?}");
    }
    drop((reusing, other));
    // Both dropped: the next two workers reuse the two entries.
    let _again = [s.worker(), s.worker()];
    assert_eq!(s.registered_workers(), 2);
    let stats = s.stats();
    assert_eq!((stats.misses, stats.hits), (1, 1), "{stats:?}");
}
