//! Review 38 R38-1: at the budget's floor (a leaf cache of one bucket,
//! the fewest frames `Budget::split` gives) an L2 access that needs the
//! most pages one access can need at once (`WORST_ACCESS_PAGES`: an
//! instruction fetch and a page-crossing data access, each through a
//! 5-level stage 1) completes: the shadow holds a leaf only while the
//! cache holds its L1 leaf, so the cache (bucket and stash) and the frame
//! pool must hold them all together. Each page is in its own 1 GiB region
//! of L2's IPA space, so each needs a level-2 and a level-3 shadow table.
//! Before the fix the floor was one bucket and six frames, and an access
//! of five pages faulted for ever.
#![cfg(not(loom))]

use crate::common;

use common::*;
use shadow_mmu::budget::{Budget, WORST_ACCESS_PAGES};
use shadow_mmu::service::{HostBackend, Service, ServiceError};
use shadow_mmu::shadow_table::ShadowConfig;
use walker::Granule;

/// Runs the access of `pages` (the first page whose shadow entry is
/// missing faults, and L2 re-runs the access after each fault, as the
/// hardware walk does) on a service with `budget`; the faults it took, or
/// why it never completed.
fn access(budget: Budget, pages: &[u64]) -> Result<usize, String> {
    let mut cfg = config(16 << 20, 1);
    cfg.budget = budget;
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    for (i, &p) in pages.iter().enumerate() {
        l1.map(p, 0x8000_0000 + ((i as u64) << 12), 3, RW);
    }
    let backend = HostBackend::new(cfg.budget.frames, ShadowConfig::default()).unwrap();
    let s = Service::new(cfg, mem, l0_map(), backend).unwrap();
    let w = s.worker();
    faults_until_all_shadowed(&s, &w, &l1.key(2), pages, 1000)
}

fn worst_access() -> Vec<u64> {
    (0..WORST_ACCESS_PAGES as u64)
        .map(|i| (i << 30) | 0x3000)
        .collect()
}

#[test]
fn the_worst_access_completes_at_the_floor_budget() {
    let minimum = Budget::split(0, 1).unwrap_err().minimum().unwrap();
    let floor = Budget::split(minimum, 1).unwrap();
    println!("floor budget: {floor:?}");
    let pages = worst_access();
    let faults = access(floor, &pages).unwrap();
    // Each page at most twice (the cache's bound), plus a pool refill.
    assert!(faults <= 2 * pages.len() + 2, "{faults} faults");
}

/// A budget made by hand below that floor is refused when the service is
/// made, not left to livelock.
#[test]
fn a_budget_below_the_worst_access_is_refused() {
    let minimum = Budget::split(0, 1).unwrap_err().minimum().unwrap();
    let floor = Budget::split(minimum, 1).unwrap();
    let shape = ShadowConfig::default();
    let frames = shape.empty_table_frames() + Budget::worst_access_frames(&shape);
    for budget in [
        Budget {
            frames: frames - 1,
            ..floor
        },
        Budget {
            shadow_leaves: WORST_ACCESS_PAGES - 1,
            ..floor
        },
    ] {
        let mut cfg = config(16 << 20, 1);
        cfg.budget = budget;
        let backend = HostBackend::new(cfg.budget.frames, shape).unwrap();
        let made = Service::new(cfg, L1Memory::new(), l0_map(), backend);
        assert!(
            matches!(made, Err(ServiceError::UnusableBudget { .. })),
            "{budget:?}"
        );
    }
    let at_the_bound = Budget { frames, ..floor };
    assert_eq!(
        access(at_the_bound, &worst_access()).map(|_| ()),
        Ok(()),
        "the bound Service::new enforces is enough"
    );
}
