//! Differential check of range invalidation (from review 13 of the
//! chunk-by-chunk range path). Random mixed-size L1 mappings (4K pages under 2M regions, 2M blocks,
//! 1G blocks, aliased L1 pages), two VMIDs sharing the tables, random
//! range TLBIs (pages, short ranges, ranges crossing many 64-block chunks,
//! unaligned byte ranges, 1G, the top of the address space). After each:
//! nothing cached or shadowed in scope survives for the TLBI's VMID, an
//! AnyLevel TLBI leaves no intermediate entry covering the range (the next
//! translate in range is a full walk), and shadow leaves == live records.
//! At the end an L0 unmap of all L1 memory removes exactly the leaves left.
#![cfg(not(loom))]

use crate::common;

use common::*;
use ipc::message::L0Change;
use ipc::tlbi::{EntryLevels, InvalidateScope, IpaRange, IpaScope, TtlHint};
use walker::Granule;

const L2_BASE: u64 = 0x8000_0000;
const REGIONS: u64 = 24; // 2 MiB regions from L2_BASE
const ALIAS_POOL: u64 = 256; // L1 pages the L2 pages share
                             // 1 GiB blocks on both sides of a 64 GiB block-index chunk boundary.
const GIB_BLOCKS: [(u64, u64); 4] = [
    (62 << 30, 0),
    (63 << 30, 1 << 30),
    (64 << 30, 2 << 30),
    (65 << 30, 3 << 30),
];

#[derive(Clone, Copy, Debug)]
struct Leaf {
    ipa: u64,
    size: u64,
}

fn scope(start: u64, end: u64, levels: EntryLevels) -> InvalidateScope {
    InvalidateScope::Ipa(IpaScope {
        range: IpaRange::new(start, end).unwrap(),
        levels,
        hint: TtlHint::None,
    })
}

fn run(seed: u64, steps: usize, granule: Granule, budget_mib: usize) {
    let mut rng = Rng(seed | 1);
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), granule);
    let (block, page) = (l1.size(2), l1.size(3));
    let mut leaves = Vec::new();
    // L2 IPA of region r: 2 GiB up, block-aligned.
    let l2_base = L2_BASE.next_multiple_of(block);
    for r in 0..REGIONS {
        // Spread (stride 5 blocks): 2 MiB blocks cross 128 MiB chunks.
        let base = l2_base + r * 5 * block;
        if rng.below(4) == 0 {
            let oa = rng.below((4u64 << 30) / block) * block;
            l1.map(base, oa, 2, RW);
            leaves.push(Leaf {
                ipa: base,
                size: block,
            });
        } else {
            // The first 512 pages of the region at most.
            for p in 0..512u64.min(block / page) {
                if rng.below(10) < 6 {
                    let ipa = base + p * page;
                    l1.map(ipa, 0x2000_0000 + rng.below(ALIAS_POOL) * page, 3, RW);
                    leaves.push(Leaf { ipa, size: page });
                }
            }
        }
    }
    if granule == Granule::K4 {
        for (ipa, oa) in GIB_BLOCKS {
            l1.map(ipa, oa, 1, RW);
            leaves.push(Leaf { ipa, size: 1 << 30 });
        }
    }
    let s = service_with(mem, budget_mib << 20, 8);
    let w = s.worker();
    let (k1, k2) = (l1.key(1), l1.key(2));
    let sample = |rng: &mut Rng| {
        let leaf = leaves[rng.below(leaves.len() as u64) as usize];
        leaf.ipa + (rng.below(leaf.size) & !0xfff)
    };
    // Fill: every leaf in both contexts (above PREFETCH_FROM = 4096 leaves).
    for leaf in &leaves {
        for key in [&k1, &k2] {
            let t = read(&s, &w, key, leaf.ipa);
            assert!(pa_of(&t, leaf.ipa).is_some() || budget_mib < 96, "{t:?}");
        }
    }
    assert_eq!(s.shadow_leaves(), s.reverse_map_records());
    for step in 0..steps {
        // Some translations come back (both contexts, random pages).
        for _ in 0..rng.below(300) {
            let ipa = sample(&mut rng);
            let key = if rng.below(3) == 0 { &k2 } else { &k1 };
            let t = read(&s, &w, key, ipa);
            assert!(pa_of(&t, ipa).is_some() || budget_mib < 96, "{t:?}");
        }
        let page = sample(&mut rng) & !0xfff;
        let (start, end) = match rng.below(13) {
            0 => (page, page + 4096),
            1 => (page, page + ((2 + rng.below(16)) << 12)),
            11 => {
                let a = (62 << 30) + (rng.below(1 << 18) << 12);
                (a, (66 << 30) - (rng.below(1 << 18) << 12))
            }
            12 => {
                // 2 MiB-aligned, over many 128 MiB chunks of 2 MiB blocks.
                let b = page & !((2 << 20) - 1);
                (
                    b.saturating_sub(rng.below(200) << 21),
                    b + (rng.below(200) << 21) + 1,
                )
            }
            10 => {
                // Around a chunk boundary of 4K blocks (64 pages).
                let c = (page & !((64 << 12) - 1)) + (64 << 12);
                let a = c - (rng.below(3) << 12);
                (a, c + ((1 + rng.below(3)) << 12))
            }
            2 => (page, page + ((16 + rng.below(5000)) << 12)),
            3 => {
                let b = page & !((2 << 20) - 1);
                (b, b + ((1 + rng.below(24)) << 21))
            }
            4 => {
                let s0 = page + rng.below(4096);
                (s0, s0 + 1 + rng.below(8 << 20))
            }
            5 => (
                page & !((1 << 30) - 1),
                (page & !((1 << 30) - 1)) + (1 << 30),
            ),
            6 => (
                page.saturating_sub(rng.below(64) << 12),
                page + (rng.below(200) << 12) + 1,
            ),
            7 => (u64::MAX - ((1 + rng.below(1 << 20)) << 12), u64::MAX),
            _ => {
                if rng.below(8) == 0 {
                    (0, u64::MAX)
                } else {
                    (
                        page,
                        page + ((64 * (1 + rng.below(4)) + rng.below(3)) << 12),
                    )
                }
            }
        };
        let levels = if rng.below(2) == 0 {
            EntryLevels::AnyLevel
        } else {
            EntryLevels::LeafOnly
        };
        let vmid = if rng.below(5) == 0 { 2 } else { 1 };
        let key = if vmid == 1 { &k1 } else { &k2 };
        s.invalidate(&w, vmid, &scope(start, end, levels));
        let range = IpaRange::new(start, end).unwrap();
        let guard = w.pin();
        for leaf in leaves.iter().filter(|l| range.overlaps(l.ipa, l.size)) {
            let probe = leaf.ipa.max(start) & !0xfff;
            let last_page = leaf.ipa + leaf.size - 4096;
            let any = leaf.ipa + (rng.below(leaf.size) & !0xfff);
            for ipa in [leaf.ipa, probe, last_page, any] {
                assert!(
                    s.lookup(key, ipa, &guard).is_none(),
                    "{granule:?} seed {seed:#x} step {step}: cached {ipa:#x} survived [{start:#x}, {end:#x}) {levels:?}"
                );
                assert!(
                    s.shadow_lookup(&w, key, ipa).is_none(),
                    "{granule:?} seed {seed:#x} step {step}: shadow {ipa:#x} survived [{start:#x}, {end:#x}) {levels:?}"
                );
            }
        }
        drop(guard);
        assert_eq!(
            s.shadow_leaves(),
            s.reverse_map_records(),
            "seed {seed:#x} step {step}: leaves != records after [{start:#x}, {end:#x})"
        );
        if levels == EntryLevels::AnyLevel {
            if let Some(leaf) = leaves.iter().find(|l| range.overlaps(l.ipa, l.size)) {
                let ipa = leaf.ipa.max(start) & !0xfff;
                let before = s.stats();
                let t = read(&s, &w, key, ipa);
                let after = s.stats();
                if pa_of(&t, ipa).is_some() {
                    assert_eq!(
                    (after.walks - before.walks, after.partial_walks - before.partial_walks),
                    (1, 0),
                    "seed {seed:#x} step {step}: an intermediate entry over {ipa:#x} survived [{start:#x}, {end:#x})"
                );
                }
            }
        }
    }
    // L0 takes all of L1 memory: exactly the leaves left are found.
    let left = s.shadow_leaves();
    assert_eq!(left, s.reverse_map_records());
    let removed = s.l0_unmap(
        &w,
        IpaRange::new(0, L1_MEMORY_BYTES).unwrap(),
        L0Change::Unmap,
    );
    assert_eq!(removed as usize, left, "seed {seed:#x}");
    assert_eq!((s.shadow_leaves(), s.reverse_map_records()), (0, 0));
    for leaf in &leaves {
        for key in [&k1, &k2] {
            assert!(
                s.shadow_lookup(&w, key, leaf.ipa).is_none(),
                "seed {seed:#x} {leaf:?}"
            );
        }
    }
}

#[test]
fn random_range_tlbis_leave_nothing_in_scope() {
    for seed in 1..=6u64 {
        for granule in [Granule::K4, Granule::K16, Granule::K64] {
            run(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), 150, granule, 96);
        }
    }
}

/// The same under eviction pressure: full cache buckets evict leaves (and
/// their shadow pieces) while the ranges are removed.
#[test]
fn random_range_tlbis_under_eviction_pressure() {
    for seed in 7..=9u64 {
        for granule in [Granule::K4, Granule::K16, Granule::K64] {
            run(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15), 150, granule, 12);
        }
    }
}
