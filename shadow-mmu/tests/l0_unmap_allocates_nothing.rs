//! An L0 unmap allocates nothing, however much it removes: the reverse
//! map hands its records over in fixed batches on the stack
//! (`ReverseMap::remove_range_batch`, `L0_UNMAP_BATCH` records each), and
//! the call seals no epoch bag. Here one `l0_unmap` removes 8,740 records
//! (137 batches or more) of four contexts and all three shadow sizes -
//! among them an L1 page that 129 L2 pages of each context alias (one L1
//! list of 516 records, longer than a batch, so a batch ends inside it) -
//! with the worker's epoch bag holding nodes an earlier TLBI unlinked.
//! Against a model, every shadow leaf built on the range is gone and every
//! other one stays.
//!
//! Fails with `l0_unmap` collecting records in a `Vec` (or the
//! reverse-map walk building them), and with the `guard.flush()` it had
//! (which moved the bag to the heap).
//! Its own test binary with one test: the counting allocator counts the
//! whole process.
#![cfg(not(loom))]

mod common;

use common::counting::{allocations, live_bytes, peak_bytes, reset_peak, Counting};
use common::*;
use ipc::message::L0Change;
use ipc::tlbi::{EntryLevels, InvalidateScope, IpaRange, IpaScope, TtlHint};
use shadow_mmu::service::{HostBackend, Service};
use shadow_mmu::shadow_table::ShadowConfig;
use walker::Granule;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PAGE: u64 = 0x1000;
const BLOCK_2M: u64 = 2 << 20;
const BLOCK_1G: u64 = 1 << 30;

/// One shadow leaf the test makes: L2 IPA, L1 IPA, size.
#[derive(Clone, Copy, Debug)]
struct Leaf {
    l2: u64,
    l1: u64,
    size: u64,
}

/// L0 unmaps L1 IPAs `[RANGE_START, RANGE_END)`.
const RANGE_START: u64 = 0x8000_0000;
const RANGE_END: u64 = 0xc000_1000;

fn leaves() -> Vec<Leaf> {
    let mut all = Vec::new();
    // In the range: 2048 pages on 2048 L1 pages (32 block-index chunks) ...
    for i in 0..2048 {
        all.push(Leaf {
            l2: 0x1000_0000 + i * PAGE,
            l1: 0x8000_0000 + i * PAGE,
            size: PAGE,
        });
    }
    // ... 128 more L2 pages on one of those L1 pages (0x8010_0000) ...
    for i in 0..128 {
        all.push(Leaf {
            l2: 0x2000_0000 + i * PAGE,
            l1: 0x8010_0000,
            size: PAGE,
        });
    }
    // ... 8 blocks of 2 MiB and one of 1 GiB, whose first page the range
    // ends on.
    for j in 0..8 {
        all.push(Leaf {
            l2: 0x4000_0000 + j * BLOCK_2M,
            l1: 0x9000_0000 + j * BLOCK_2M,
            size: BLOCK_2M,
        });
    }
    all.push(Leaf {
        l2: 0x40_0000_0000,
        l1: 0xc000_0000,
        size: BLOCK_1G,
    });
    // Outside it: pages and blocks of each size below it, and the 2 MiB
    // block just above.
    for i in 0..512 {
        all.push(Leaf {
            l2: 0x3000_0000 + i * PAGE,
            l1: 0x2000_0000 + i * PAGE,
            size: PAGE,
        });
    }
    for j in 0..8 {
        all.push(Leaf {
            l2: 0x5000_0000 + j * BLOCK_2M,
            l1: 0x7000_0000 + j * BLOCK_2M,
            size: BLOCK_2M,
        });
    }
    all.push(Leaf {
        l2: 0x7f_c000_0000,
        l1: 0,
        size: BLOCK_1G,
    });
    all
}

fn in_range(leaf: &Leaf) -> bool {
    leaf.l1 < RANGE_END && leaf.l1 + leaf.size > RANGE_START
}

#[test]
fn a_large_l0_unmap_allocates_nothing_and_removes_exactly_the_range() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let leaves = leaves();
    for leaf in &leaves {
        let level = match leaf.size {
            PAGE => 3,
            BLOCK_2M => 2,
            _ => 1,
        };
        l1.map(leaf.l2, leaf.l1, level, RW);
    }
    // Four contexts over the same tables: every L1 block has a record of
    // each.
    let keys: Vec<_> = (1..=4).map(|vmid| l1.key(vmid)).collect();
    // Not the recording backend: its TLB log is a growing `Vec`.
    let config = config(128 << 20, 8);
    let backend = HostBackend::new(config.budget.frames, ShadowConfig::default()).expect("pool");
    let s = Service::new(config, mem, l0_map(), backend).expect("valid shadow VMIDs");
    let w = s.worker();
    for key in &keys {
        for leaf in &leaves {
            let t = read(&s, &w, key, leaf.l2);
            assert_eq!(pa_of(&t, leaf.l2), Some(PA_OFFSET + leaf.l1), "{leaf:?}");
            let m = s.shadow_lookup(&w, key, leaf.l2).expect("installed");
            assert_eq!(m.size, leaf.size, "{leaf:?}");
        }
    }
    let stats = s.stats();
    assert_eq!((stats.evictions, stats.recycled_contexts), (0, 0));
    // A page TLBI outside the range leaves the nodes it unlinked in the
    // worker's epoch bag; l0_unmap must not seal the bag onto the heap.
    let gone = 0x3000_0000 + 511 * PAGE;
    let scope = InvalidateScope::Ipa(IpaScope {
        range: IpaRange::new(gone, gone + PAGE).expect("non-empty"),
        levels: EntryLevels::AnyLevel,
        hint: TtlHint::None,
    });
    assert!(s.invalidate(&w, 1, &scope) >= 1);
    assert!(s.shadow_lookup(&w, &keys[0], gone).is_none());
    read(&s, &w, &keys[0], gone);

    let want_removed = leaves.iter().filter(|l| in_range(l)).count() * keys.len();
    assert_eq!(want_removed, 8740);
    let range = IpaRange::new(RANGE_START, RANGE_END).expect("non-empty");
    let (calls, live) = (allocations(), live_bytes());
    reset_peak();
    let removed = s.l0_unmap(&w, range, L0Change::Unmap);
    let (allocated, peak) = (allocations() - calls, peak_bytes() - live);
    assert_eq!(
        (allocated, peak),
        (0, 0),
        "l0_unmap allocated {allocated} times, {peak} bytes at its peak"
    );
    assert_eq!(removed, want_removed as u64);
    for key in &keys {
        for leaf in &leaves {
            let present = s.shadow_lookup(&w, key, leaf.l2).is_some();
            assert_eq!(present, !in_range(leaf), "{key:?} {leaf:?}");
        }
    }
    // Nothing of the range is left to remove; the rest still is.
    assert_eq!(s.l0_unmap(&w, range, L0Change::Unmap), 0);
    let everything = IpaRange::new(0, L1_MEMORY_BYTES).expect("non-empty");
    let rest = leaves.iter().filter(|l| !in_range(l)).count() * keys.len();
    assert_eq!(s.l0_unmap(&w, everything, L0Change::Unmap), rest as u64);
}
