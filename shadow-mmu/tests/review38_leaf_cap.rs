//! Review 38 R38-2: the shadow-leaf cap was checked (a Relaxed load) and
//! counted (a fetch_add after `map`) in two steps under the installing
//! context's own lock, so installs in two contexts at once both passed the
//! check and the count ended above the cap (by up to the number of
//! concurrent installers). Now an install takes its place under the cap in
//! one read-modify-write before it maps: B, at the cap while A's install is
//! held in `map`, takes the leaves of the context holding the most (A,
//! once A's install is done) and never passes the cap. (The reviewer's
//! test, with the cap raised to the least `Service::new` accepts and B's
//! fault on a thread of its own, since B now waits for A's lock.)
#![cfg(not(loom))]

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use shadow_mmu::compose::ShadowMapping;
use shadow_mmu::shadow_table::MapError;
use walker::{AccessKind, Granule};

struct HoldOne {
    ipa: u64,
    reached: AtomicBool,
    open: AtomicBool,
}

impl ShadowHooks for HoldOne {
    fn map(&self, m: &ShadowMapping) -> Result<(), MapError> {
        if m.l2_ipa_base == self.ipa && !self.reached.swap(true, Ordering::SeqCst) {
            wait_for(&self.open);
        }
        Ok(())
    }
}

#[test]
fn two_contexts_installing_at_once_pass_the_leaf_cap() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    for i in 0..=CAP as u64 {
        l1.map(i << 12, 0x8000_0000 + (i << 12), 3, RW);
    }
    let mut config = config(16 << 20, 4);
    const CAP: usize = shadow_mmu::budget::WORST_ACCESS_PAGES;
    config.budget.shadow_leaves = CAP;
    let held = (CAP as u64) << 12;
    let hooks = Arc::new(HoldOne {
        ipa: held,
        reached: AtomicBool::new(false),
        open: AtomicBool::new(false),
    });
    let s = hooked_service(config, mem, hooks.clone());
    let (a, b) = (l1.key(2), l1.key(3));
    let w = s.worker();
    // Context A holds CAP - 1 leaves.
    for i in 0..CAP as u64 - 1 {
        assert!(pa_of(
            &s.translate(&w, &a, i << 12, AccessKind::Read, &ABORT),
            i << 12
        )
        .is_some());
    }
    assert_eq!(s.shadow_leaves(), CAP - 1);
    // A's next install passes the cap check and stops in `map`.
    let t = {
        let s = s.clone();
        std::thread::spawn(move || {
            let w = s.worker();
            s.translate(&w, &a, held, AccessKind::Read, &ABORT)
        })
    };
    wait_for(&hooks.reached);
    // Meanwhile B faults. It used to see CAP - 1 leaves too and install
    // at once; now it is at the cap and waits for A's lock to take A's
    // leaves. Give it time to do either before A's install goes on.
    let tb = {
        let s = s.clone();
        std::thread::spawn(move || {
            let w = s.worker();
            s.translate(&w, &b, 0x1000, AccessKind::Read, &ABORT)
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    hooks.open.store(true, Ordering::SeqCst);
    assert!(pa_of(&t.join().unwrap(), held).is_some());
    assert!(pa_of(&tb.join().unwrap(), 0x1000).is_some());
    assert_eq!(s.shadow_leaves(), s.reverse_map_records());
    println!(
        "shadow leaves {} (cap {CAP}), records {}",
        s.shadow_leaves(),
        s.reverse_map_records()
    );
    assert!(
        s.shadow_leaves() <= CAP,
        "{} shadow leaves over a cap of {CAP}",
        s.shadow_leaves()
    );
}
