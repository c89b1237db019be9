//! Review 11 R11-6: `Budget::worst_case_bytes` counts what the service
//! allocates. A counting allocator measures the bytes the service holds
//! after a hostile run (more keys than context slots, each touching more
//! pages than its cache and the shadow-leaf cap hold, TLBIs between) and
//! compares them with the budget's count. (Its own test binary: the
//! allocator counts every thread of the process.)
#![cfg(not(loom))]

mod common;

use common::counting::{live_bytes, peak_bytes, reset_peak, Counting};
use common::*;
use ipc::tlbi::{EntryLevels, InvalidateScope, IpaRange, IpaScope, TtlHint};
use shadow_mmu::budget::{CACHE_STRUCT_BYTES, CONTEXT_BYTES, CONTEXT_OVERHEAD_BYTES, FRAME_BYTES};
use shadow_mmu::service::{HostBackend, Service};
use shadow_mmu::shadow_table::ShadowConfig;
use walker::Granule;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn the_service_holds_no_more_than_the_budget_counts() {
    const CONTEXTS: usize = 4;
    let config = config(4 << 20, CONTEXTS);
    let budget = config.budget;
    let pages = 2 * budget.capacity.leaves_per_context as u64;
    assert!(pages * CONTEXTS as u64 > budget.shadow_leaves as u64);
    // L1's tables, the L0 map and the frame pool first: not the service's.
    let mem = L1Memory::new();
    let trees = [
        L1Tables::new(mem.clone(), Granule::K4),
        L1Tables::at(mem.clone(), Granule::K4, 4 << 20),
    ];
    for (t, tree) in trees.iter().enumerate() {
        for i in 0..pages {
            tree.map(i << 12, 0x8000_0000 + ((t as u64) << 28) + (i << 12), 3, RW);
        }
    }
    let l0 = l0_map();
    let backend = HostBackend::new(budget.frames, ShadowConfig::default()).expect("pool");
    let before = live_bytes();
    reset_peak();
    let s = Service::new(config, mem, l0, backend).expect("service");
    let w = s.worker();
    // One context: its node, its slot's cache (struct, both tables' bucket
    // arrays and node pools, its index, preallocated whole). On main the
    // budget counted 1024 B per context and 8 B per cache place: less than
    // this.
    let empty = live_bytes();
    s.shadow_root(&w, &trees[0].key(1)).expect("a context");
    let one_context = (live_bytes() - empty) as usize;
    // The leaf table's stash too (review 38 R38-1).
    let places = budget.capacity.leaves_per_context
        + shadow_mmu::cache::LEAF_STASH
        + budget.capacity.paths_per_context;
    let exact = CONTEXT_BYTES
        + CACHE_STRUCT_BYTES
        + places * 16
        + budget.cache_pools_preallocated_bytes()
        + budget.cache_index_preallocated_bytes();
    println!("one context: {one_context} B allocated, {exact} B counted");
    assert_eq!(one_context, exact, "creating a context");
    // The budget's share per context covers it (with the slot's other parts
    // and the index's ordered level, which grow later).
    assert!(
        one_context
            <= CONTEXT_OVERHEAD_BYTES
                + places * 16
                + budget.cache_pools_preallocated_bytes()
                + budget.cache_index_bytes()
    );
    // Six keys over four slots: recycles; every key's cache overflows, and
    // together they pass the shadow-leaf cap.
    let keys: Vec<_> = (0..6u16)
        .map(|k| trees[usize::from(k % 2)].key(k + 2))
        .collect();
    for round in 0..2u64 {
        for key in &keys {
            for i in 0..pages {
                let ipa = ((i * 7 + round) % pages) << 12;
                assert!(pa_of(&read(&s, &w, key, ipa), ipa).is_some());
            }
            // Page TLBIs remove cache nodes one by one: their allocations
            // fill the tables' node pools (review 29 R29-2), which the
            // budget must count too.
            for i in (0..pages).step_by(2) {
                let page = IpaScope {
                    range: IpaRange::new(i << 12, (i + 1) << 12).expect("a page"),
                    levels: EntryLevels::AnyLevel,
                    hint: TtlHint::None,
                };
                s.invalidate(&w, key.vmid, &InvalidateScope::Ipa(page));
            }
            s.invalidate(&w, key.vmid, &InvalidateScope::Vmid);
        }
    }
    // Let the collector free what was unlinked (not counted by the budget).
    for _ in 0..64 {
        w.pin().flush();
    }
    let held = (live_bytes() - before) as usize;
    let peak = (peak_bytes() - before) as usize;
    // The pool's frames were allocated before `before`; the rest of the
    // budget's count is the service's.
    let counted = budget.worst_case_bytes() - budget.frames * FRAME_BYTES;
    println!(
        "held {held} B, peak {peak} B, counted {counted} B of {} B",
        budget.bytes
    );
    assert!(s.stats().recycled_contexts > 0 && s.stats().evictions > 0);
    assert!(
        held <= counted,
        "the service holds {held} B, the budget counts {counted} B"
    );
    drop(w);
    drop(s);
}
