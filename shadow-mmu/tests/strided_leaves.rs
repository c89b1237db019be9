//! Review 19 R19-1: the walk cache's leaf hash (`leaf_hash`, commits
//! 3653670/e45bc83) piles the 4 KiB leaves of a plainly strided access
//! pattern into a few buckets: L2 touching one page every 30 pages (a
//! 120 KiB stride) fills a quarter of the leaf table, and a second pass
//! finds a large part of them evicted (each eviction also unmapped its
//! shadow leaf), where a mix of the whole key (`hash2`, before 3653670)
//! loses under 1%. Only a quarter of the table is used: a uniform hash
//! overflows almost no 4-place bucket.
#![cfg(not(loom))]

use crate::common;

use common::*;
use shadow_mmu::budget::Budget;
use shadow_mmu::service::Translated;
use walker::Granule;

/// Budget bytes whose single context caches `leaves` leaves.
fn bytes_for(leaves: usize) -> usize {
    let mut bytes = 1 << 20;
    while Budget::split(bytes, 1).map_or(true, |b| b.capacity.leaves_per_context < leaves) {
        bytes += bytes / 8;
    }
    bytes
}

fn second_pass_misses(leaves: usize, stride_pages: u64) -> (u64, u64) {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let s = service_with(mem, bytes_for(leaves), 1);
    let capacity = s.config().budget.capacity.leaves_per_context;
    assert_eq!(capacity, leaves, "a table of exactly {leaves} leaves");
    let pages = (capacity / 4) as u64;
    // (The shadow-leaf cap may clear shadows meanwhile: that keeps the
    // cached walks, so a second-pass miss is a cache eviction.)
    for i in 0..pages {
        l1.map((i * stride_pages) << 12, 0x8000_0000 + (i << 12), 3, RW);
    }
    let w = s.worker();
    let key = l1.key(1);
    for i in 0..pages {
        assert!(matches!(
            read(&s, &w, &key, (i * stride_pages) << 12),
            Translated::Mapped(_)
        ));
    }
    let before = s.stats();
    for i in 0..pages {
        assert!(matches!(
            read(&s, &w, &key, (i * stride_pages) << 12),
            Translated::Mapped(_)
        ));
    }
    (s.stats().misses - before.misses, pages)
}

#[test]
fn strided_pages_at_a_quarter_load_stay_cached() {
    let results: Vec<_> = [(1 << 14, 30u64), (1 << 14, 11), (1 << 12, 87), (1 << 14, 1)]
        .into_iter()
        .map(|(leaves, stride)| (leaves, stride, second_pass_misses(leaves, stride)))
        .collect();
    for (leaves, stride, (misses, pages)) in &results {
        println!("{leaves} leaves, stride {stride} pages: {misses} of {pages} evicted");
    }
    for (leaves, stride, (misses, pages)) in results {
        assert!(
            misses * 32 <= pages,
            "{leaves} leaves, stride {stride} pages: {misses} of {pages} leaves evicted at 25% load"
        );
    }
}
