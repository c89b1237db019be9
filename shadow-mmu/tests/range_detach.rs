//! RIPAS2E1IS ranges that cover whole 2 MiB regions of L2 pages: the
//! shadow unlinks those regions' level-3 tables without visiting their
//! leaves (`ShadowTable::unmap_range`), and returns the frames a few per
//! later call. After each range no shadow leaf in it is left, every leaf
//! outside it is, the service's leaf count and the reverse map agree with
//! what is left, and the pages fault back in with the same translation.
//! The shadow pool holds the tree's frames and one more: a run of range
//! TLBIs and refaults must never run out of frames (no eviction, no
//! throttled fault), so every detached frame comes back.
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use common::*;
use ipc::tlbi::EntryLevels;
use shadow_mmu::service::{HostBackend, Service, Translated};
use shadow_mmu::shadow_table::ShadowConfig;
use walker::Granule;

/// L2 IPA of the first page: four 2 MiB regions of pages from here.
const L2_BASE: u64 = 0x8000_0000;
const PAGES: u64 = 4 * 512;
/// L1 IPA the first page maps to.
const L1_PAGES: u64 = 0x1000_0000;
/// The service's two context slots' roots, and for the one context used
/// its level-1, level-2 and four level-3 tables: 8 frames, and one spare.
const FRAMES: usize = 9;

#[test]
fn covering_range_tlbis_leave_no_leaf_and_the_pages_refault() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    for i in 0..PAGES {
        l1.map(L2_BASE + (i << 12), L1_PAGES + (i << 12), 3, RW);
    }
    let backend = HostBackend::recording(FRAMES, ShadowConfig::default()).expect("pool");
    let s = Service::new(config(16 << 20, 2), mem, l0_map(), backend).expect("service");
    let w = s.worker();
    let key = l1.key(1);
    let page = |i: u64| L2_BASE + (i << 12);
    let pa: Vec<u64> = (0..PAGES)
        .map(|i| pa_of(&read(&s, &w, &key, page(i)), page(i)).expect("mapped"))
        .collect();
    assert_eq!(s.shadow_leaves(), PAGES as usize);
    // Whole regions; from inside region 0 into region 3 (regions 1 and 2
    // whole); one region whole with a page on each side; all of it.
    let ranges = [
        (page(512), page(1536)),
        (page(3), page(1536 + 5)),
        (page(511), page(1025)),
        (page(0), page(PAGES)),
    ];
    for round in 0..40 {
        let (start, end) = ranges[round % ranges.len()];
        s.invalidate(&w, 1, &ipa_scope(start, end, EntryLevels::AnyLevel));
        let inside = |i: u64| (start..end).contains(&page(i));
        for i in 0..PAGES {
            assert_eq!(
                s.shadow_lookup(&w, &key, page(i)).is_some(),
                !inside(i),
                "round {round}: page {i}"
            );
        }
        let left = (0..PAGES).filter(|&i| !inside(i)).count();
        assert_eq!(s.shadow_leaves(), left, "round {round}");
        assert_eq!(s.reverse_map_records(), left, "round {round}");
        for i in (0..PAGES).filter(|&i| inside(i)) {
            match read(&s, &w, &key, page(i)) {
                Translated::Mapped(m) => {
                    assert_eq!(pa_of(&Translated::Mapped(m), page(i)), Some(pa[i as usize]))
                }
                other => panic!("round {round}: page {i}: {other:?}"),
            }
            assert!(s.shadow_lookup(&w, &key, page(i)).is_some());
        }
        assert_eq!(s.shadow_leaves(), PAGES as usize);
        assert!(s.shadow_frames() <= FRAMES);
    }
    assert_eq!(s.stats().evictions, 0, "the pool ran out: {:?}", s.stats());
}
