//! Review 53's findings on invalidation scopes (see /work/notes/review53.md).
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

mod common;

use common::*;
use ipc::tlbi::EntryLevels;
use walker::Granule;

/// R53-1: `Service::invalidate` takes any `IpaRange`, not only the 4 KiB
/// aligned ones the TLBI decoder makes. An unaligned range one page long
/// over nothing cached took the page path with an unaligned base (a debug
/// assertion in the reverse map's deferred page removal); one that
/// overlaps parts of two pages must drop both, from the cache and the
/// shadow, and the pages around them stay.
#[test]
fn an_unaligned_scope_covers_every_page_it_touches() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    for p in 0..4u64 {
        l1.map(0x4000_0000 + (p << 12), 0x8000_0000 + (p << 12), 3, RW);
    }
    let s = service(mem);
    let w = s.worker();
    let key = l1.key(1);
    for p in 0..4u64 {
        assert!(pa_of(
            &read(&s, &w, &key, 0x4000_0000 + (p << 12)),
            0x4000_0000 + (p << 12)
        )
        .is_some());
    }
    // Nothing cached there: one page long, unaligned.
    s.invalidate(&w, 1, &ipa_scope(0x1800, 0x2800, EntryLevels::AnyLevel));
    s.invalidate(&w, 1, &ipa_scope(0x1800, 0x2800, EntryLevels::LeafOnly));
    // Half of page 1 and half of page 2.
    s.invalidate(
        &w,
        1,
        &ipa_scope(0x4000_1800, 0x4000_2800, EntryLevels::LeafOnly),
    );
    let guard = w.pin();
    for p in 0..4u64 {
        let ipa = 0x4000_0000 + (p << 12);
        let gone = p == 1 || p == 2;
        assert_eq!(
            s.lookup(&key, ipa, &guard).is_none(),
            gone,
            "cache, page {p}"
        );
        assert_eq!(
            s.shadow_lookup(&w, &key, ipa).is_none(),
            gone,
            "shadow, page {p}"
        );
    }
    drop(guard);
    // Faulted again, they translate as before.
    for p in 0..4u64 {
        let ipa = 0x4000_0000 + (p << 12);
        assert_eq!(
            pa_of(&read(&s, &w, &key, ipa), ipa),
            Some(PA_OFFSET + 0x8000_0000 + (p << 12))
        );
    }
}
