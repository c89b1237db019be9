//! `ShadowTable::unmap_range` runs on the TLBI path and on a fault's
//! install (a new leaf replacing leaves of another size): it must not
//! allocate, however many tables it empties. The tables it frees wait for
//! the TLB hook on a list threaded through their own first entries. A
//! `map` of a block over a table retires the table on a list made with
//! room for `RETIRED_LIST_CAPACITY` of them, drained in place. A
//! counting allocator (its own test binary, one test, so no other thread
//! allocates meanwhile) shows an unmap that empties 18 tables allocates
//! nothing (16 of them, covered whole, go on the detached list, whose
//! first entry it was made with), and the frames come back to the pool
//! zeroed (the detached ones with the next maps).
#![cfg(not(loom))]

mod common;

use common::counting::{self, Counting};
use shadow_mmu::compose::{MemAttr, MemShareability, Permissions, ShadowMapping};
use shadow_mmu::shadow_table::{
    FramePool, HeapFramePool, NoHardwareTlb, ShadowConfig, ShadowTable, RETIRED_LIST_CAPACITY,
};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn page(l2_ipa: u64) -> ShadowMapping {
    leaf(l2_ipa, 4096)
}

fn leaf(l2_ipa: u64, size: u64) -> ShadowMapping {
    ShadowMapping {
        l2_ipa_base: l2_ipa,
        pa_base: 0x8000_0000 + l2_ipa % (1 << 30),
        size,
        perms: Permissions::READ.union(Permissions::WRITE),
        mem_attr: MemAttr::from_bits(0xff),
        shareability: MemShareability::InnerShareable,
    }
}

#[test]
fn unmaps_and_blocks_over_tables_allocate_nothing() {
    let pool = HeapFramePool::new(64, 0).unwrap();
    let table = ShadowTable::new(&pool, NoHardwareTlb, ShadowConfig::default()).unwrap();
    // 16 level-3 tables (one page at each end of 16 consecutive 2 MiB
    // regions) under one level-2 table, under one level-1 table: with
    // the root, 19 frames.
    let base = 0x4000_0000;
    for region in 0..16u64 {
        table.map(&page(base + (region << 21))).unwrap();
        table.map(&page(base + (region << 21) + 0x1f_f000)).unwrap();
    }
    assert_eq!(table.frames_used(), 19);
    let before = counting::allocations();
    let removed = table.unmap_range(base, 16 << 21);
    let allocations = counting::allocations() - before;
    assert_eq!(removed, 32);
    assert_eq!(allocations, 0, "unmap_range allocated");
    // The range covers the 16 level-3 tables whole: unlinked without a
    // visit, they wait on the detached list (one entry, made with room);
    // the level-1 and level-2 tables it emptied are freed.
    assert_eq!(table.frames_used(), 17, "the root and the detached tables");
    assert_eq!(pool.frames_in_use(), 17);
    // Every frame came back zeroed: mapping again builds the same tree and
    // finds nothing but what it maps.
    for region in 0..16u64 {
        table.map(&page(base + (region << 21) + 0x1000)).unwrap();
    }
    assert_eq!(table.frames_used(), 19);
    for region in 0..16u64 {
        assert_eq!(table.lookup(base + (region << 21)), None);
        assert!(table.lookup(base + (region << 21) + 0x1000).is_some());
        assert_eq!(table.lookup(base + (region << 21) + 0x1f_f000), None);
    }

    // Blocks over tables: each 2 MiB block retires the page table below
    // it; up to the retired list's capacity no map allocates, and the
    // unmap that frees them allocates nothing either.
    let before = counting::allocations();
    for region in 0..RETIRED_LIST_CAPACITY as u64 {
        table.map(&leaf(base + (region << 21), 2 << 20)).unwrap();
    }
    assert_eq!(
        counting::allocations() - before,
        0,
        "a retiring map allocated"
    );
    assert_eq!(table.unmap_range(base, 16 << 21), 16);
    assert_eq!(
        counting::allocations() - before,
        0,
        "freeing retired tables allocated"
    );
    assert_eq!(table.frames_used(), 1);
}
