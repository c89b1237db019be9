//! The writer-side indexes (the reverse map, each slot's cache index) are
//! sized from the budget when the service and each slot's cache are made
//! and never allocate afterwards: a hostile L1 that touches every page of
//! more VMIDs than there are contexts (evictions, the shadow-leaf cap,
//! recycling) and then storms TLBIs (page and whole-VMID) leaves their
//! growth count at zero and their bytes where they started.
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use common::*;
use ipc::tlbi::{InvalidateScope, Shareability, Tlbi, TlbiOp, TlbiParams};
use shadow_mmu::service::{Retry, Translated};
use walker::{AccessKind, Granule};

#[test]
fn filling_past_the_budget_never_grows_an_index() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let pages = 4096u64;
    for i in 0..pages {
        l1.map(i << 12, 0x8000_0000 + (i << 12), 3, RW);
    }
    let s = service_with(mem, 2 << 20, 4);
    let budget = s.config().budget;
    let w = s.worker();
    let (growths, made) = s.index_allocations(&w);
    assert_eq!(growths, 0);
    assert!(made > 0, "the reverse map is allocated by Service::new");
    // The caches hold fewer pages than are touched, and the shadow-leaf
    // cap is below one VMID's pages: every bound is reached.
    assert!(budget.capacity.leaves_per_context < pages as usize);
    assert!(budget.shadow_leaves < pages as usize);
    let mut rng = Rng(7);
    let mut all_slots_made = None;
    for round in 0..2 {
        for vmid in 1..=6u16 {
            for i in 0..pages {
                match read(&s, &w, &l1.key(vmid), (i << 12) | rng.below(4096)) {
                    Translated::Mapped(_) | Translated::Retry(Retry::Throttled) => {}
                    other => panic!("round {round}: {other:?}"),
                }
            }
            let (growths, bytes) = s.index_allocations(&w);
            assert_eq!(growths, 0, "round {round}, VMID {vmid}");
            // Each slot's index is made with its cache (its first
            // context); from then on the bytes stay.
            if s.contexts() == budget.capacity.contexts {
                assert_eq!(*all_slots_made.get_or_insert(bytes), bytes);
            }
        }
    }
    let ipas2 = Tlbi {
        op: TlbiOp::Ipas2e1,
        shareability: Shareability::InnerShareable,
        nxs: false,
    };
    for n in 0..5_000u64 {
        let vmid = 1 + (n % 6) as u16;
        let page = rng.below(pages);
        if n % 500 == 499 {
            s.invalidate(&w, vmid, &InvalidateScope::Vmid);
        } else {
            let scope = ipas2.decode(page, TlbiParams::default()).unwrap();
            s.invalidate(&w, vmid, &scope);
        }
        let _ = s.translate(&w, &l1.key(vmid), page << 12, AccessKind::Write, &ABORT);
    }
    assert_eq!(s.index_allocations(&w), (0, all_slots_made.unwrap()));
}
