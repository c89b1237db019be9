//! A batched L1-range removal (`ReverseMap::remove_range_batch`, what
//! `Service::l0_unmap` runs) finishes and removes every record present when
//! it began, even while faults keep adding records to the L1 block its
//! cursor stands on (review 16 F1). Inserts go to the head of a block's
//! list, where each batch starts again: when they were removed too, 64 new
//! records between batches kept the removal from ever reaching the older
//! ones (this test then ran out of its 1000 batches). Records inserted
//! after the removal began are passed instead, and left in place.
#![cfg(not(loom))]

use arrayvec::ArrayVec;
use shadow_mmu::rmap::{L1RangeCursor, ReverseMap, ShadowRef, L0_UNMAP_BATCH};

const L1_PAGE: u64 = 0x4000_0000;

fn on_page(map: &mut ReverseMap<u16>, context: u16, l2_page: u64) {
    let shadow = ShadowRef {
        context,
        l2_ipa: l2_page << 12,
        size: 0x1000,
    };
    map.insert(L1_PAGE, shadow).unwrap();
}

#[test]
fn an_l1_range_removal_reaches_the_records_present_at_its_start() {
    let mut map = ReverseMap::<u16>::with_capacity(1 << 16, 4);
    // Present when the removal begins: two batches' worth on one L1 page.
    let old = 2 * L0_UNMAP_BATCH as u64;
    for page in 0..old {
        on_page(&mut map, 0, page);
    }
    let mut cursor = L1RangeCursor::new(L1_PAGE, 0x1000);
    let mut old_removed = 0;
    let mut new_removed = 0;
    let mut fresh = 0x10_0000;
    let mut batches = 0;
    for _ in 0..1000 {
        batches += 1;
        let mut batch = ArrayVec::<ShadowRef<u16>, L0_UNMAP_BATCH>::new();
        let more = map.remove_range_batch(&mut cursor, &mut batch);
        for r in &batch {
            if r.l2_ipa < old << 12 {
                old_removed += 1;
            } else {
                new_removed += 1;
            }
        }
        if !more {
            break;
        }
        // Concurrent faults (of L2 pages aliasing that L1 page, composed
        // with L0's new map) refill the block before the next batch.
        for _ in 0..L0_UNMAP_BATCH {
            on_page(&mut map, 1, fresh);
            fresh += 1;
        }
    }
    assert!(cursor.is_done(), "1000 batches and the removal is not done");
    assert_eq!(old_removed, old, "records present at the start were left");
    assert_eq!(
        new_removed, 0,
        "records inserted after the start are passed"
    );
    assert!(batches <= 4, "{batches} batches for {old} records");
    // What the faults added stays: a later removal finds all of it.
    let added = fresh - 0x10_0000;
    let mut cursor = L1RangeCursor::new(L1_PAGE, 0x1000);
    let mut later = 0;
    loop {
        let mut batch = ArrayVec::<ShadowRef<u16>, L0_UNMAP_BATCH>::new();
        let more = map.remove_range_batch(&mut cursor, &mut batch);
        later += batch.len() as u64;
        if !more {
            break;
        }
    }
    assert_eq!(later, added);
}
