//! review51: an install that meets the shadow-leaf cap a second time clears
//! its own shadow (`AtLeafCap::ClearOwn`) and must then map from the root
//! again: the place its first shadow lookup stopped at (`ShadowPlace`) names
//! a table that clear just detached (and that `map`'s reclaim may already
//! have handed back to the pool). A map from that place writes the new leaf
//! into an unreachable or free frame: the translate answers `Mapped`, yet
//! the shadow does not hold the leaf, and a frame the pool hands out later
//! carries a stray descriptor. Fails if `install` keeps the old place after
//! its `ClearOwn` clear (the re-lookup there was pinned by no test).
#![cfg(not(loom))]

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;

use common::*;
use shadow_mmu::service::Translated;
use walker::Granule;

/// Pauses the second `lookup_place_excluded` of the armed L2 IPA (the
/// install's attempt after its first yielded at the cap) until `go`.
#[derive(Default)]
struct Gate {
    armed: AtomicU64,
    calls: AtomicUsize,
    paused: AtomicBool,
    go: AtomicBool,
}

impl ShadowHooks for Gate {
    fn lookup_place(&self, l2_ipa: u64) {
        if l2_ipa == self.armed.load(SeqCst) && self.calls.fetch_add(1, SeqCst) == 1 {
            self.paused.store(true, SeqCst);
            wait_for(&self.go);
        }
    }
}

/// A's pages lie in one 2 MiB region (one level-3 table); B's elsewhere.
const A_BASE: u64 = 0x1000_0000;
const B_BASE: u64 = 0x2000_0000;

#[test]
fn an_install_that_clears_its_own_shadow_at_the_cap_maps_into_the_live_tree() {
    within(std::time::Duration::from_secs(60), scenario);
}

fn scenario() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let cfg = config(1 << 20, 2);
    let cap = cfg.budget.shadow_leaves as u64;
    assert!(cap < 4096, "cap {cap}");
    for i in 0..2 {
        l1.map(A_BASE + (i << 12), 0x8000_0000 + (i << 12), 3, RW);
    }
    for i in 0..cap {
        l1.map(B_BASE + (i << 12), 0x9000_0000 + (i << 12), 3, RW);
    }
    let (a, b) = (l1.key(1), l1.key(2));
    let gate = Arc::new(Gate::default());
    let s = hooked_service(cfg, mem, gate.clone());
    let w = s.worker();
    let read = |key, ipa| s.translate(&w, key, ipa, walker::AccessKind::Read, &ABORT);
    // A holds one page (so its second page's lookup stops at a level-3
    // table), B fills the cap.
    assert!(pa_of(&read(&a, A_BASE), A_BASE).is_some());
    for i in 0..cap - 1 {
        let ipa = B_BASE + (i << 12);
        assert!(pa_of(&read(&b, ipa), ipa).is_some(), "B page {i}");
    }
    assert_eq!(s.shadow_leaves() as u64, cap);
    // A's second page: its first attempt yields at the cap (B, the
    // largest, is cleared); its second pauses in its shadow lookup while
    // B takes the cap again, so it meets the cap once more and clears its
    // own shadow, A's level-3 table with it.
    gate.armed.store(A_BASE + 0x1000, SeqCst);
    let vcpu = {
        let s = s.clone();
        thread::spawn(move || {
            let w = s.worker();
            s.translate(&w, &a, A_BASE + 0x1000, walker::AccessKind::Read, &ABORT)
        })
    };
    wait_for(&gate.paused);
    let mut refill = 0;
    while (s.shadow_leaves() as u64) < cap && refill < cap {
        let ipa = B_BASE + (refill << 12);
        assert!(
            pa_of(&read(&b, ipa), ipa).is_some(),
            "B page {refill} again"
        );
        refill += 1;
    }
    assert_eq!(s.shadow_leaves() as u64, cap, "B took the cap again");
    gate.go.store(true, SeqCst);
    let answer = vcpu.join().expect("vCPU");
    let ipa = A_BASE + 0x1000;
    assert!(
        matches!(answer, Translated::Mapped(_)),
        "A's second page: {answer:?}"
    );
    assert!(
        s.stats().evictions > 0,
        "the cap cleared shadows (B's, then A's own)"
    );
    // What the install answered is what the shadow holds, from its root.
    assert_eq!(
        s.shadow_lookup(&w, &a, ipa).map(|m| m.pa_base),
        pa_of(&answer, ipa).map(|pa| pa & !0xfff),
        "Mapped, but the leaf is not in A's shadow (mapped into a detached table)"
    );
}
