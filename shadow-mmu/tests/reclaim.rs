//! Lazy reclamation after whole-VMID flushes and context recycling: the
//! flush costs O(1)-ish on the calling path (the shadow tree is detached,
//! cache entries die with a flush number, reverse-map records with an
//! epoch), yet nothing flushed is reachable once it returns, the frames come
//! back within the budget (a few per later call, all that is needed under
//! pool pressure), and no stale cache entry or reverse-map record of a
//! flushed or recycled context ever comes back.
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use common::*;
use ipc::message::L0Change;
use ipc::tlbi::{InvalidateScope, IpaRange};
use shadow_mmu::service::{Retry, Translated};
use shadow_mmu::shadow_table::TlbEvent;
use walker::Granule;

/// L2 IPA of page `i`: one page per 2 MiB region, so each needs its own
/// shadow level-3 table.
fn spread(i: u64) -> u64 {
    0x4000_0000 + i * (2 << 20)
}

/// Translates until mapped (a fault under pool pressure may be told to
/// retry while frames are reclaimed); the PA.
fn translate_mapped(
    s: &TestService,
    w: &shadow_mmu::service::Worker,
    key: &shadow_mmu::context::ContextKey,
    ipa: u64,
) -> u64 {
    for _ in 0..8 {
        match read(s, w, key, ipa) {
            t @ Translated::Mapped(_) => return pa_of(&t, ipa).expect("maps the IPA"),
            Translated::Retry(Retry::Throttled) => {}
            other => panic!("{ipa:#x}: {other:?}"),
        }
        assert!(s.shadow_frames() <= s.config().budget.frames);
    }
    panic!("{ipa:#x} never mapped");
}

#[test]
fn a_vmid_flush_detaches_and_frames_return_lazily_within_the_budget() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let s = service_with(mem, 1 << 20, 2);
    let budget = s.config().budget.frames;
    // Root, level-1 and level-2 tables, and one level-3 table per page:
    // two contexts of `pages` pages cannot both fit.
    let pages = (budget as u64 / 2).min(60);
    assert!(
        pages + 3 > (budget as u64).saturating_sub(pages + 3),
        "budget {budget}"
    );
    for i in 0..pages {
        l1.map(spread(i), 0x8000_0000 + i * 0x1000, 3, RW);
    }
    let w = s.worker();
    let (a, b) = (l1.key(1), l1.key(2));
    for i in 0..pages {
        assert_eq!(
            translate_mapped(&s, &w, &a, spread(i)),
            PA_OFFSET + 0x8000_0000 + i * 0x1000
        );
    }
    let shadow_a = s.shadow_vmid(&w, &a).unwrap();
    let frames = s.shadow_frames();
    assert!(frames >= pages as usize + 3);
    s.backend().take_tlb_log();

    s.invalidate(&w, 1, &InvalidateScope::Vmid);
    // Nothing flushed is reachable: not by lookup, not in the shadow, and
    // the hardware TLB of the shadow VMID was invalidated.
    let log = s.backend().take_tlb_log();
    assert!(log.contains(&(shadow_a, TlbEvent::All)), "{log:?}");
    {
        let guard = w.pin();
        for i in 0..pages {
            assert!(s.lookup(&a, spread(i), &guard).is_none());
            assert!(s.shadow_lookup(&w, &a, spread(i)).is_none());
        }
    }
    // The detached frames were not walked or freed on the flush's path.
    assert_eq!(s.shadow_frames(), frames);

    // Another context needs more frames than are free: they come back from
    // the detached tree, never past the budget.
    for i in 0..pages {
        assert_eq!(
            translate_mapped(&s, &w, &b, spread(i)),
            PA_OFFSET + 0x8000_0000 + i * 0x1000
        );
        assert!(s.shadow_frames() <= budget);
    }
    // And the flushed context comes back with correct entries.
    for i in 0..pages {
        assert_eq!(
            translate_mapped(&s, &w, &a, spread(i)),
            PA_OFFSET + 0x8000_0000 + i * 0x1000
        );
        assert!(s.shadow_frames() <= budget);
    }
}

#[test]
fn recycled_and_flushed_contexts_never_resurrect_stale_entries() {
    let mem = L1Memory::new();
    // Two trees over the same L2 IPAs: A maps them to 0x8000_0000.., B to
    // 0x9000_0000...
    let tree_a = L1Tables::new(mem.clone(), Granule::K4);
    let tree_b = L1Tables::at(mem.clone(), Granule::K4, 4 << 20);
    let pages = 32u64;
    for i in 0..pages {
        tree_a.map(0x1000_0000 + i * 0x1000, 0x8000_0000 + i * 0x1000, 3, RW);
        tree_b.map(0x1000_0000 + i * 0x1000, 0x9000_0000 + i * 0x1000, 3, RW);
    }
    let ipa = |i: u64| 0x1000_0000 + i * 0x1000;
    let range_a = IpaRange::new(0x8000_0000, 0x8000_0000 + pages * 0x1000).unwrap();
    let range_b = IpaRange::new(0x9000_0000, 0x9000_0000 + pages * 0x1000).unwrap();
    // Room for one context: A and B take the same slot (and shadow VMID,
    // cache and shadow table) in turn.
    let s = service_with(mem, 4 << 20, 1);
    let w = s.worker();
    let (a, b) = (tree_a.key(1), tree_b.key(1));
    let check = |key, base: u64| {
        for i in 0..pages {
            assert_eq!(
                translate_mapped(&s, &w, &key, ipa(i)),
                PA_OFFSET + base + i * 0x1000
            );
        }
    };

    check(a, 0x8000_0000);
    check(b, 0x9000_0000); // recycles A
    assert_eq!(s.stats().recycled_contexts, 1);
    {
        let guard = w.pin();
        assert!(s.lookup(&a, ipa(0), &guard).is_none());
    }
    // A's reverse-map records died with it: an L0 unmap of A's L1 pages
    // finds nothing, and B's entries (same shadow VMID, same L2 IPAs) stay.
    assert_eq!(s.l0_unmap(&w, range_a, L0Change::Unmap), 0);
    for i in 0..pages {
        assert!(s.shadow_lookup(&w, &b, ipa(i)).is_some());
    }

    // A comes back (recycling B) and walks again: no hit from its earlier
    // incarnation or from B, though all three used one cache.
    let misses = s.stats().misses;
    check(a, 0x8000_0000);
    assert_eq!(s.stats().misses - misses, pages);
    assert_eq!(s.l0_unmap(&w, range_b, L0Change::Unmap), 0);
    assert_eq!(s.l0_unmap(&w, range_a, L0Change::Unmap), pages);
    for i in 0..pages {
        assert!(s.shadow_lookup(&w, &a, ipa(i)).is_none());
    }

    // A whole-VMID flush: the same for a context that stays.
    check(a, 0x8000_0000);
    s.invalidate(&w, 1, &InvalidateScope::Vmid);
    assert_eq!(s.l0_unmap(&w, range_a, L0Change::Unmap), 0);
    let misses = s.stats().misses;
    check(a, 0x8000_0000);
    assert_eq!(s.stats().misses - misses, pages);
    assert_eq!(s.l0_unmap(&w, range_a, L0Change::Unmap), pages);
}

/// Maps pages of context A (key VMID 1) until the shared pool is full; the
/// pages mapped.
fn fill_the_pool_from_a(s: &TestService, w: &shadow_mmu::service::Worker, l1: &L1Tables) -> u64 {
    let budget = s.config().budget.frames;
    for i in 0..(budget as u64 + 8) {
        l1.map(spread(i), 0x8000_0000 + i * 0x1000, 3, RW);
    }
    let a = l1.key(1);
    let mut i = 0;
    while s.shadow_frames() < budget {
        let t = read(s, w, &a, spread(i));
        assert!(matches!(t, Translated::Mapped(_)), "{t:?}");
        i += 1;
    }
    i
}

/// A new context, in a free slot, must map within a few faults even when
/// another context's tables hold every frame of the shared pool: its root
/// is reserved, and its faults take frames back from the other shadow.
#[test]
fn a_new_context_is_not_starved_by_a_full_pool() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let s = service_with(mem, 1 << 20, 2);
    let w = s.worker();
    let mapped = fill_the_pool_from_a(&s, &w, &l1);
    assert!(mapped > 0);
    let b = l1.key(2);
    let outcomes: Vec<_> = (0..4).map(|_| read(&s, &w, &b, spread(0))).collect();
    assert!(
        outcomes.iter().any(|t| matches!(t, Translated::Mapped(_))),
        "B never mapped after 4 faults: {outcomes:?}"
    );
    assert!(s.shadow_frames() <= s.config().budget.frames);
}

/// The same with the pool full of detached frames (A's whole VMID was
/// flushed): B's faults return them.
#[test]
fn a_new_context_is_not_starved_by_detached_frames() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let s = service_with(mem, 1 << 20, 2);
    let w = s.worker();
    fill_the_pool_from_a(&s, &w, &l1);
    let budget = s.config().budget.frames;
    s.invalidate(&w, 1, &InvalidateScope::Vmid);
    assert_eq!(s.shadow_frames(), budget, "detached, not yet reclaimed");
    let b = l1.key(2);
    let outcomes: Vec<_> = (0..4).map(|_| read(&s, &w, &b, spread(0))).collect();
    assert!(
        outcomes.iter().any(|t| matches!(t, Translated::Mapped(_))),
        "B never mapped after 4 faults: {outcomes:?}"
    );
}

/// Every slot's root frame is taken when the service is made, so a context
/// created later never needs a frame for it.
#[test]
fn every_context_slot_has_its_root_from_the_start() {
    let s = service_with(L1Memory::new(), 1 << 20, 3);
    assert_eq!(s.shadow_frames(), 3);
}

/// When the backend could not reserve a slot's root (its pool was short
/// when the service was made), the slot's first context takes frames back
/// from the other shadows to make it, rather than waiting for them.
#[test]
fn a_slot_without_a_reserved_root_still_gets_a_context() {
    use shadow_mmu::shadow_table::FramePool;
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let config = config(1 << 20, 2);
    let backend = shadow_mmu::service::HostBackend::recording(
        config.budget.frames,
        shadow_mmu::shadow_table::ShadowConfig::default(),
    )
    .unwrap();
    // Someone else holds all but one frame while the service is made.
    let held: Vec<u64> = std::iter::from_fn(|| backend.pool().allocate())
        .take(config.budget.frames - 1)
        .collect();
    let s = shadow_mmu::service::Service::new(config, mem, l0_map(), backend).unwrap();
    assert_eq!(s.shadow_frames(), config.budget.frames, "one root reserved");
    for pa in held {
        s.backend().pool().release(pa);
    }
    let w = s.worker();
    fill_the_pool_from_a(&s, &w, &l1);
    let b = l1.key(2);
    let outcomes: Vec<_> = (0..4).map(|_| read(&s, &w, &b, spread(0))).collect();
    assert!(
        outcomes.iter().any(|t| matches!(t, Translated::Mapped(_))),
        "B never mapped after 4 faults: {outcomes:?}"
    );
}
