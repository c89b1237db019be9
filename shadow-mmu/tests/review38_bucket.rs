//! Review 38: a context's shadow holds a leaf only while the cache holds
//! the L1 leaf it came from, and a cache bucket has four places. Five L2
//! pages whose cache keys share a bucket can never be shadowed together:
//! an L2 access that needs all five at once (its stage-1 walk's four table
//! pages and the data page) faults for ever, whatever the budget. The
//! cache's leaf hash has no secret key, so the guest can choose such pages.
//! (The reviewer's test. It failed on main; it passes now: the leaf hash is
//! keyed, so these pages no longer share a bucket, and a bucket's leaves
//! may take the stash's places: `review38_floor.rs` shows the stash alone.)
#![cfg(not(loom))]

use crate::common;

use common::*;
use walker::Granule;

/// `cache::leaf_hash` (private), copied.
fn leaf_hash(key: u64, neighbours_log2: u32) -> u64 {
    fn region_mix(x: u32) -> u32 {
        let x = (x ^ (x >> 16)).wrapping_mul(0x7feb_352d);
        let x = (x ^ (x >> 15)).wrapping_mul(0x846c_a68b);
        x ^ (x >> 16)
    }
    let low = key & 0xffff_ffff;
    let neighbour_bits = ((1u64 << neighbours_log2) - 1) << 12;
    let neighbour = (low & neighbour_bits) >> 12;
    let mixed_low = region_mix((low & !neighbour_bits) as u32);
    let mixed_high = ((key >> 32) as u32).wrapping_mul(0x85eb_ca6b);
    let mixed_high = mixed_high ^ (mixed_high >> 16);
    let high = (mixed_high ^ mixed_low).wrapping_add(neighbour as u32);
    (u64::from(high) << 32) | low
}

fn colliding_pages(buckets: u64, n: usize) -> Vec<u64> {
    let neighbours_log2 = 6.min(buckets.trailing_zeros());
    let bucket = |ipa: u64| (leaf_hash(ipa | 12, neighbours_log2) >> 32) & (buckets - 1);
    // One page per 2 MiB region (as stage-1 tables and data often are).
    let target = bucket(0x3000);
    (0..1u64 << 20)
        .map(|r| (r << 21) | 0x3000)
        .filter(|&ipa| bucket(ipa) == target)
        .take(n)
        .collect()
}

fn run(n: usize) -> Result<usize, String> {
    let cfg = config(16 << 20, 8);
    let c = cfg.budget.capacity;
    let buckets = (c.leaves_per_context / 4) as u64;
    let pages = colliding_pages(buckets, n);
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    for (i, &p) in pages.iter().enumerate() {
        l1.map(p, 0x8000_0000 + ((i as u64) << 12), 3, RW);
    }
    let s = service_with(mem, 16 << 20, 8);
    let w = s.worker();
    faults_until_all_shadowed(&s, &w, &l1.key(2), &pages, 1000).map_err(|why| {
        format!(
            "{n} pages {pages:x?} in one of {buckets} buckets ({} leaf slots): {why}",
            c.leaves_per_context
        )
    })
}

#[test]
fn four_pages_of_one_bucket_are_shadowed_together() {
    assert_eq!(run(4), Ok(4));
}

#[test]
fn five_pages_of_one_bucket_never_are() {
    let r = run(5);
    println!("{r:?}");
    assert!(r.is_ok(), "{}", r.unwrap_err());
}
