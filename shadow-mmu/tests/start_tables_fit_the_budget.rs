//! Review 30, R30-1: on a host under 44 PA bits `Budget::split_for` and
//! `Service::new`'s `UnusableBudget` check count a slot's start tables as
//! `root_tables` frames, but `FramePool::allocate_contiguous` needs them as
//! an ALIGNED run (AArch64.S2TTBaseAddress), and the slot's root is taken
//! first from the bottom of the pool. At the smallest budget `split_for`
//! makes for a 42-bit host (one context: 14 frames), the pool (base 1 TiB,
//! as HostBackend makes it) hands the root frame 0 and has no 8-aligned run
//! of 8 free frames (8..15 passes frame 13): the shadow is never made,
//! `Service::new` still succeeds, and every translate is answered without
//! a shadow for ever (the hang R25-3's UnusableBudget was meant to refuse).
//!
//! Goes in shadow-mmu/tests/. Fails on main (the translate is not Mapped).
#![cfg(not(loom))]

use crate::common;

use common::*;
use shadow_mmu::budget::{Budget, BudgetError};
use shadow_mmu::service::{HostBackend, Service, ServiceError, Translated};
use shadow_mmu::shadow_table::ShadowConfig;
use walker::Granule;

#[test]
fn review30_the_smallest_42_bit_budget_makes_a_shadow_or_is_refused() {
    let host = ShadowConfig::for_pa_range(0b011, true).unwrap();
    assert_eq!(host.empty_table_frames(), 9);
    let minimum = match Budget::split_for(0, 1, &host) {
        Err(BudgetError::TooSmall { minimum, .. }) => minimum,
        other => panic!("{other:?}"),
    };
    let budget = Budget::split_for(minimum, 1, &host).expect("the minimum");
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x1000, 0x8000_1000, 3, RW);
    let mut config = config(16 << 20, 1);
    config.budget = budget;
    config.features = features_with_pa_range(0b010);
    let backend = HostBackend::new(budget.frames, host).expect("pool");
    let s = match Service::new(config, mem.clone(), l0_map(), backend) {
        Ok(s) => s,
        Err(e) => panic!("the smallest budget split_for makes is refused: {e}"),
    };
    let w = s.worker();
    let t = read(&s, &w, &l1.key(1), 0x1000);
    assert!(
        matches!(t, Translated::Mapped(_)),
        "budget of {} frames accepted, but the page never maps: {t:?}",
        budget.frames
    );
}

/// A pool smaller than the budget says, with no aligned run left for the
/// start tables: refused at once with a precise error, not a service whose
/// faults retry for ever.
#[test]
fn start_tables_that_do_not_fit_the_pool_are_refused() {
    let host = ShadowConfig::for_pa_range(0b011, true).unwrap();
    let mut config = config(16 << 20, 2);
    config.budget = Budget::split_for(16 << 20, 2, &host).expect("budget");
    config.features = features_with_pa_range(0b010);
    // Room for one slot's start tables and root only.
    let backend = HostBackend::new(9, host).expect("pool");
    let Err(e) = Service::new(config, L1Memory::new(), l0_map(), backend) else {
        panic!("a pool without room for the second slot's start tables is accepted")
    };
    assert_eq!(
        e,
        ServiceError::UnusableBudget {
            what: "slots whose empty shadow the frame pool could place",
            have: 1,
            need: 2
        },
        "{e}"
    );
}
