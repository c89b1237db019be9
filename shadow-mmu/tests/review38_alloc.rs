//! Review 38 R38-3: `Service::new` allocated parts the budget did not count
//! (the reverse map's per-context table and pending unlinks, the epoch
//! collector): about 6 KiB at 64 contexts, so near the minimum
//! `worst_case_bytes() <= bytes` no longer bounded what the service held.
//! A counting allocator measures them against the budget's count. (Its own
//! test binary: the allocator counts every thread of the process. After
//! the reviewer's test, which also measured a `Worker`'s lifecycle: that
//! one is checked by hv's nested runs now, R38-4.)
#![cfg(not(loom))]

mod common;

use common::counting::{live_bytes, Counting};
use common::*;
use shadow_mmu::budget::{
    Budget, COLLECTOR_BYTES, DIRECTORY_ARRAYS_SLOT_BYTES, SHADOW_STRUCT_BYTES,
};
use shadow_mmu::rmap::ReverseMap;
use shadow_mmu::service::{HostBackend, Service};
use shadow_mmu::shadow_table::{ShadowConfig, SHADOW_LISTS_BYTES};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn service_new_allocates_no_more_than_the_budget_counts() {
    for contexts in [1, 3, 8, 64, 200] {
        let config = config(16 << 20, contexts);
        let budget = config.budget;
        let backend = HostBackend::new(budget.frames, ShadowConfig::default()).expect("pool");
        let (memory, l0) = (L1Memory::new(), l0_map());
        let before = live_bytes();
        let s = Service::new(config, memory, l0, backend).expect("service");
        let made = (live_bytes() - before) as usize;
        // What the budget counts of what `new` makes: the directory's
        // tables and its per-slot arrays, the reverse map's preallocated
        // part, every slot's shadow struct (at most SHADOW_STRUCT_BYTES)
        // and its lists, and the fixed parts.
        let counted = Budget::directory_bytes(contexts)
            + ReverseMap::<u16>::preallocated_bytes(budget.reverse_map_records())
            + contexts * (DIRECTORY_ARRAYS_SLOT_BYTES + SHADOW_STRUCT_BYTES + SHADOW_LISTS_BYTES)
            + Budget::service_fixed_bytes(contexts);
        println!(
            "{contexts} contexts: Service::new allocated {made} B, the budget counts {counted} B"
        );
        assert!(
            made <= counted,
            "{contexts} contexts: {made} B > {counted} B"
        );
        drop(s);

        let before = live_bytes();
        let rmap = ReverseMap::<u16>::with_capacity(budget.reverse_map_records(), contexts);
        let made = (live_bytes() - before) as usize;
        let counted = ReverseMap::<u16>::preallocated_bytes(budget.reverse_map_records())
            + ReverseMap::<u16>::fixed_bytes(contexts);
        assert!(
            made <= counted,
            "reverse map, {contexts} contexts: {made} B > {counted} B"
        );
        assert!(
            counted - made <= 64,
            "reverse map, {contexts} contexts: {made} B, counted {counted} B"
        );
        drop(rmap);
    }
    let before = live_bytes();
    let collector = crossbeam_epoch::Collector::new();
    let made = (live_bytes() - before) as usize;
    assert!(made <= COLLECTOR_BYTES, "the collector: {made} B");
    drop(collector);
}
