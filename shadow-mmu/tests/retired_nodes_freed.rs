//! Every cache node a page TLBI unlinks is freed (review 15 F3). A cache
//! table hands the nodes its invalidations unlink to the epoch collector
//! in batches (`Table::remove_batched`: one deferred call per 16 nodes),
//! so the part-filled batch a table holds when it is dropped must be freed
//! by the table's `Drop` (300 rounds here leave 12 leaves and 8 paths in
//! the two tables' batches). After 300 rounds of translate + IPAS2E1,
//! dropping the worker and the service (so the collector, which runs every
//! deferred call it still holds) gives back every byte the service
//! allocated.
//!
//! Fails when `Drop for Table` does not free its batch (2,436 bytes left),
//! or frees all but one node of it (1,068 bytes left); nothing else
//! notices those mutations (the loom models catch a node freed too early,
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
    let key = l1.key(1);
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
            assert!(pa_of(&read(&s, &w, &key, page), page).is_some());
            // The leaf and its paths (levels 1 and 2) go, and the page's
            // shadow leaf.
            assert!(s.invalidate(&w, 1, &scope) >= 2);
        }
    }
    // Less than one node (the rounds unlink 900 nodes).
    let leaked = live_bytes() - before;
    assert!(
        leaked.abs() < 512,
        "{leaked} bytes still allocated after the service and its worker were dropped"
    );
}
