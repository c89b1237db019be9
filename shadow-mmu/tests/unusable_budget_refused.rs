//! Review 25, R25-3: `Service::new` accepts a hand-made budget (its fields
//! are public, `Budget::check` is what `Service::new` applies) under which
//! no shadow entry can ever be installed: frames for the slots' roots and
//! nothing more. Every translate then answers `Retry(Throttled)`, for ever
//! (L2 re-faults in a loop: a hang for the guest, with no error anywhere),
//! where COMMON.md asks for a precise error ("Bad input never panics, never
//! hangs ... precise error"). `Budget::split` never makes such a budget
//! (it gives `2 * contexts + 4` frames at least); `Budget::check` should
//! refuse what split never makes: fewer than one root per context plus a
//! full 4 KiB path (3 tables), or a shadow-leaf cap of 0.
//!
//! Goes in shadow-mmu/tests/. Fails on main; passes once `Budget::check`
//! (hence `Service::new`) refuses such a budget.
#![cfg(not(loom))]

use crate::common;

use common::*;
use shadow_mmu::service::{HostBackend, Service, ServiceError, Translated};
use shadow_mmu::shadow_table::ShadowConfig;
use walker::Granule;

/// The two roots and the tables of the worst single access (review 38
/// R38-1: it was the roots and one path of three tables).
const NEED: usize = 2 + 3 * shadow_mmu::budget::WORST_ACCESS_PAGES;

#[test]
fn review25_a_budget_that_can_map_nothing_is_refused() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x1000, 0x8000_1000, 3, RW);
    let mut roots_only = config(16 << 20, 2);
    // The two roots only.
    roots_only.budget.frames = 2;
    let backend = HostBackend::new(2, ShadowConfig::default()).expect("pool");
    let Err(e) = Service::new(roots_only, mem.clone(), l0_map(), backend) else {
        panic!("a budget with frames for the roots only is accepted")
    };
    assert_eq!(
        e,
        ServiceError::UnusableBudget {
            what: "shadow table frames",
            have: 2,
            need: NEED
        }
    );
    assert!(
        e.to_string().contains(&format!(
            "gives 2 shadow table frames, fewer than the {NEED}"
        )),
        "{e}"
    );
    // No shadow leaf at all: refused too.
    let mut no_leaves = config(16 << 20, 2);
    no_leaves.budget.shadow_leaves = 0;
    let backend = HostBackend::new(no_leaves.budget.frames, ShadowConfig::default()).expect("pool");
    let Err(e) = Service::new(no_leaves, mem.clone(), l0_map(), backend) else {
        panic!("a budget with no shadow leaf is accepted")
    };
    assert!(
        matches!(
            e,
            ServiceError::UnusableBudget {
                what: "shadow leaves",
                ..
            }
        ),
        "{e}"
    );
    // The smallest accepted budget maps the page.
    let mut smallest = config(16 << 20, 2);
    smallest.budget.frames = NEED;
    let backend = HostBackend::new(NEED, ShadowConfig::default()).expect("pool");
    let s = Service::new(smallest, mem, l0_map(), backend).expect("roots and the worst access");
    let w = s.worker();
    assert!(matches!(
        read(&s, &w, &l1.key(1), 0x1000),
        Translated::Mapped(_)
    ));
}
