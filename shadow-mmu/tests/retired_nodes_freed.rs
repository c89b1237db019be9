//! Every cache node a page TLBI unlinks is freed (review 15 F3). A cache
//! table hands the nodes its invalidations unlink to the epoch collector
//! in batches (`Table::remove_batched`: one deferred call per 16 nodes),
//! so the part-filled batch a table holds when it is dropped must be freed
//! by the table's `Drop` (300 rounds here leave 12 leaves and 8 paths in
//! each context's two tables' batches). After 300 rounds of translate +
//! IPAS2E1 in each of eight contexts, dropping the worker and the service
//! (so the collector, which runs every deferred call it still holds) gives
//! back every byte the service allocated.
//!
//! Fails when `Drop for Table` does not free its batches (12,288 bytes
//! left; a single lost node per table would hide in the slack); nothing else
//! notices that mutation (the loom models catch a node freed too early,
//! not one never freed). Its own test binary with one test: the counting
//! allocator counts the whole process.
#![cfg(not(loom))]

mod common;

use common::counting::{live_bytes, Counting};
use common::*;
use ipc::tlbi::{EntryLevels, InvalidateScope, IpaRange, IpaScope, TtlHint};
use walker::Granule;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[test]
fn page_tlbis_leave_no_unlinked_node_behind() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let page = 0x20_1000u64;
    l1.map(page, 0x1000_0000, 3, RW);
    // Eight contexts (one per VMID), so eight pairs of tables hold a
    // part-filled batch at the end.
    let keys: Vec<_> = (1..=8).map(|vmid| l1.key(vmid)).collect();
    let scope = InvalidateScope::Ipa(IpaScope {
        range: IpaRange::new(page, page + 0x1000).expect("non-empty"),
        levels: EntryLevels::AnyLevel,
        hint: TtlHint::None,
    });
    let before = live_bytes();
    {
        let s = service(mem.clone());
        let w = s.worker();
        for _ in 0..300 {
            for key in &keys {
                assert!(pa_of(&read(&s, &w, key, page), page).is_some());
                // The leaf and its paths (levels 1 and 2) go, and the
                // page's shadow leaf.
                assert!(s.invalidate(&w, key.vmid, &scope) >= 2);
            }
        }
    }
    // Far less than one node per context (the rounds unlink 7,200 nodes;
    // the slack is for the test harness's own allocations, up to ~1 KiB).
    let leaked = live_bytes() - before;
    assert!(
        leaked.abs() < 4096,
        "{leaked} bytes still allocated after the service and its worker were dropped"
    );
}
