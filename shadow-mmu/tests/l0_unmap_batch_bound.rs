//! Review 17 R17-2: review 16 F1's fix passes records inserted after an
//! L1-range removal began, but walked each block's list from its head,
//! where inserts go: when a batch filled inside a list, the next batch
//! started at the head again and stepped over every record inserted since
//! (with the reverse-map lock held) before it reached the older ones, so a
//! removal of n records while faults added m to its block cost O(n/64 * m)
//! and one batch's lock hold was unbounded. Lists are walked from the tail
//! (oldest first) now and a walk stops at the first newer record: a batch
//! visits at most its records plus one. Counted, not timed.
#![cfg(not(loom))]

use arrayvec::ArrayVec;
use shadow_mmu::rmap::{L1RangeCursor, ReverseMap, ShadowRef, L0_UNMAP_BATCH};

const L1_PAGE: u64 = 0x4000_0000;
const OTHER_PAGE: u64 = 0x5000_0000;
const NEWER: u64 = 1 << 12;

fn record(map: &mut ReverseMap<u16>, l1: u64, context: u16, l2_page: u64) {
    let shadow = ShadowRef {
        context,
        l2_ipa: l2_page << 12,
        size: 0x1000,
    };
    map.insert(l1, shadow).unwrap();
}

/// Records the second and third batches of a removal of `L1_PAGE` (three
/// batches' worth of records) visit, with `NEWER` records inserted on
/// `newer_on` after the first batch.
fn later_batches_visit(newer_on: u64) -> Vec<u64> {
    let old = 3 * L0_UNMAP_BATCH as u64;
    let mut map = ReverseMap::<u16>::with_capacity((NEWER + old) as usize + 64, 4);
    for page in 0..old {
        record(&mut map, L1_PAGE, 0, page);
    }
    let mut cursor = L1RangeCursor::new(L1_PAGE, 0x1000);
    let mut batch = ArrayVec::<ShadowRef<u16>, L0_UNMAP_BATCH>::new();
    assert!(map.remove_range_batch(&mut cursor, &mut batch));
    assert_eq!(batch.len(), L0_UNMAP_BATCH);
    for page in 0..NEWER {
        record(&mut map, newer_on, 1, 0x10_0000 + page);
    }
    let mut visits = Vec::new();
    let mut removed = 0;
    loop {
        let mut batch = ArrayVec::<ShadowRef<u16>, L0_UNMAP_BATCH>::new();
        let before = map.l1_records_visited();
        let more = map.remove_range_batch(&mut cursor, &mut batch);
        visits.push(map.l1_records_visited() - before);
        assert!(
            batch.iter().all(|r| r.context == 0),
            "only the older records go"
        );
        removed += batch.len();
        if !more {
            break;
        }
    }
    assert_eq!(removed, 2 * L0_UNMAP_BATCH, "every older record goes");
    visits
}

#[test]
fn a_batch_visits_its_records_not_the_records_inserted_since_on_its_block() {
    for newer_on in [L1_PAGE, OTHER_PAGE] {
        let visits = later_batches_visit(newer_on);
        assert!(
            visits.iter().all(|&v| v <= L0_UNMAP_BATCH as u64 + 1),
            "batches visited {visits:?} records with {NEWER} newer records on \
             {newer_on:#x} (at most {} each)",
            L0_UNMAP_BATCH + 1
        );
    }
}
