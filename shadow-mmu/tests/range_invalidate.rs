//! Range invalidations over many block-index chunks (the chunk-by-chunk,
//! prefetched removal of `WalkCache::invalidate_range` and
//! `ReverseMap::remove_shadow_range`): the scope stays exact, with pages
//! and blocks mixed, several records on one L1 block (aliases within a
//! context and across two VMIDs), and records of earlier page TLBIs still
//! waiting for their L1-side unlink (more than the 64 that may wait), and
//! the range's own records beyond those 64 on the detached chain while
//! some of its pages fault back onto the same L1 blocks. At
//! the end an L0 unmap of all of L1's memory used must find exactly the
//! shadow leaves that are left: every leaf kept its record, and no record
//! outlived its leaf.
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use common::*;
use ipc::message::L0Change;
use ipc::tlbi::{EntryLevels, InvalidateScope, IpaRange, IpaScope, TtlHint};
use walker::Granule;

/// L2 IPA of the first page.
const L2_BASE: u64 = 0x8000_0000;
/// Pages mapped from `L2_BASE` (16 chunks of 64), every seventh left out.
const PAGES: u64 = 1024;
/// Two L2 pages share each L1 page: page i and page i + 512.
const L1_PAGES: u64 = 0x1000_0000;
/// 2 MiB blocks after the pages, the first and last on one L1 block.
const BLOCKS: [(u64, u64); 3] = [
    (L2_BASE + (4 << 20), 0x2000_0000),
    (L2_BASE + (6 << 20), 0x2020_0000),
    (L2_BASE + (8 << 20), 0x2000_0000),
];

#[derive(Clone, Copy, Debug)]
struct Leaf {
    ipa: u64,
    size: u64,
}

fn scope(start: u64, end: u64) -> InvalidateScope {
    InvalidateScope::Ipa(IpaScope {
        range: IpaRange::new(start, end).unwrap(),
        levels: EntryLevels::AnyLevel,
        hint: TtlHint::None,
    })
}

#[test]
fn a_range_over_many_chunks_is_exact_after_deferred_page_removals() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let mut leaves = Vec::new();
    for i in (0..PAGES).filter(|i| i % 7 != 3) {
        let ipa = L2_BASE + (i << 12);
        l1.map(ipa, L1_PAGES + ((i % 512) << 12), 3, RW);
        leaves.push(Leaf { ipa, size: 4096 });
    }
    for (ipa, oa) in BLOCKS {
        l1.map(ipa, oa, 2, RW);
        leaves.push(Leaf { ipa, size: 2 << 20 });
    }
    let s = service_with(mem, 64 << 20, 8);
    let w = s.worker();
    let (k1, k2) = (l1.key(1), l1.key(2));
    for leaf in &leaves {
        for key in [&k1, &k2] {
            assert!(pa_of(&read(&s, &w, key, leaf.ipa), leaf.ipa).is_some());
        }
    }
    assert_eq!(s.shadow_leaves(), 2 * leaves.len());
    assert_eq!(s.reverse_map_records(), 2 * leaves.len());
    // VMID 1 is what goes; `present[n]` says whether leaf n is still
    // cached and shadowed there.
    let mut present = vec![true; leaves.len()];
    // 100 page TLBIs: 64 records wait for their L1-side unlink in
    // `pending`, the rest on the detached chain; every other page comes
    // back (each insert completes two of each).
    let pages: Vec<usize> = (0..100).map(|n| n * 8).collect();
    for &n in &pages {
        let leaf = leaves[n];
        s.invalidate(&w, 1, &scope(leaf.ipa, leaf.ipa + 4096));
        present[n] = false;
    }
    for &n in pages.iter().step_by(2) {
        assert!(pa_of(&read(&s, &w, &k1, leaves[n].ipa), leaves[n].ipa).is_some());
        present[n] = true;
    }
    // From mid-chunk (page 100) into the middle of the second block: 14
    // chunks of pages, one block whole and one overlapped in part.
    let range = IpaRange::new(L2_BASE + (100 << 12), BLOCKS[1].0 + 0x5000).unwrap();
    s.invalidate(&w, 1, &scope(range.start(), range.end()));
    for (n, leaf) in leaves.iter().enumerate() {
        present[n] &= !range.overlaps(leaf.ipa, leaf.size);
    }
    // Past the 64 that may wait, the range's records went on the detached
    // chain, still on their L1 lists (shared with VMID 2's records). Every
    // fifth page of the range comes back onto the same L1 pages (each
    // insert unlinks two chained records): the rest stay chained for the
    // L0 unmap below to meet.
    for (n, leaf) in leaves.iter().enumerate() {
        if leaf.size == 4096 && range.overlaps(leaf.ipa, leaf.size) && n % 5 == 0 {
            assert!(pa_of(&read(&s, &w, &k1, leaf.ipa), leaf.ipa).is_some());
            present[n] = true;
        }
    }
    let guard = w.pin();
    for (n, leaf) in leaves.iter().enumerate() {
        for (key, want) in [(&k1, present[n]), (&k2, true)] {
            let cached = s
                .lookup(key, leaf.ipa, &guard)
                .is_some_and(|e| e.ipa_base == leaf.ipa && e.size() == leaf.size);
            let shadowed = s.shadow_lookup(&w, key, leaf.ipa).is_some();
            assert_eq!((cached, shadowed), (want, want), "{key:?} {leaf:?}");
        }
    }
    drop(guard);
    let left = leaves.len() + present.iter().filter(|p| **p).count();
    assert_eq!(s.shadow_leaves(), left);
    assert_eq!(s.reverse_map_records(), left);
    // L0 takes all of it away: exactly the leaves left are found.
    let mut removed = 0;
    for (start, len) in [(L1_PAGES, 512 << 12), (0x2000_0000, 4 << 20)] {
        let range = IpaRange::new(start, start + len).unwrap();
        removed += s.l0_unmap(&w, range, L0Change::Unmap);
    }
    assert_eq!(removed as usize, left);
    assert_eq!((s.shadow_leaves(), s.reverse_map_records()), (0, 0));
    for leaf in &leaves {
        for key in [&k1, &k2] {
            assert!(s.shadow_lookup(&w, key, leaf.ipa).is_none(), "{leaf:?}");
        }
    }
}
