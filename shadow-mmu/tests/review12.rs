//! Review 12's findings as tests (each fails without its fix).
//! - R12-2: the recycling hand takes an exited VM's context before running
//!   ones (a plain round robin: 180 recycles for 40 new VMs over 8 slots).
//! - `reclaim_leaves` leaves a context recycled between its pick and its
//!   lock alone (fails with the `is_retired` check removed).
//! - R12-1: every budget `Budget::split` accepts fits its bytes.
#![cfg(not(loom))]

use crate::common;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;

use common::*;
use ipc::message::L0Change;
use ipc::tlbi::{InvalidateScope, IpaRange};
use shadow_mmu::budget::{Budget, BudgetError};
use shadow_mmu::compose::ShadowMapping;
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::Service;
use shadow_mmu::shadow_table::MapError;
use walker::{AccessKind, Endianness, Granule};

// ---- R12-2: the recycling policy ----

fn keys(n: u64) -> Vec<ContextKey> {
    let vtcr = L1Tables::new(L1Memory::new(), Granule::K4).vtcr();
    (1u64..=n)
        .map(|i| {
            ContextKey::new(
                i as u16 + 1,
                0x4000_0000 + (i << 12),
                vtcr,
                Endianness::Little,
            )
        })
        .collect()
}

#[test]
fn a_new_short_lived_vm_recycles_only_a_stale_context() {
    const SLOTS: usize = 8;
    const NEW_VMS: usize = 40;
    let s = service_with(L1Memory::new(), 16 << 20, SLOTS);
    let w = s.worker();
    let all = keys((SLOTS - 1 + NEW_VMS + 1) as u64);
    let (running, short_lived) = all.split_at(SLOTS - 1);
    // The running VMs and the first short-lived one fill the directory.
    for key in running.iter().chain(&short_lived[..1]) {
        s.shadow_root(&w, key).expect("a context");
    }
    assert_eq!(s.stats().recycled_contexts, 0);
    for new_vm in &short_lived[1..=NEW_VMS] {
        // A new VM starts (the previous short-lived one has exited), then
        // every running VM's vCPU enters L2 again.
        s.shadow_root(&w, new_vm).expect("a context");
        for key in running {
            s.shadow_root(&w, key).expect("a context");
        }
    }
    let recycled = s.stats().recycled_contexts;
    eprintln!("{recycled} recycles for {NEW_VMS} new VMs");
    assert!(
        recycled <= 2 * NEW_VMS as u64,
        "{recycled} recycles for {NEW_VMS} new VMs, with never more VMs than slots \
         (ideal {NEW_VMS}: each new VM takes the exited one's slot)"
    );
}

// ---- reclaim_leaves vs a recycle of its victim (the `is_retired` check),
// ---- and vs a victim emptied meanwhile (R12-5) ----

thread_local!(static ROLE: Cell<Role> = const { Cell::new(Role::Other) });

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Other,
    /// P: faults in A at the shadow-leaf cap.
    AtCap,
    /// Q: faults in B, recycling A.
    Recycler,
}

fn role() -> Role {
    ROLE.with(Cell::get)
}

#[derive(Default)]
struct Steps {
    /// P's `reclaim_leaves` has A from its slot (reading its leaf count).
    at_cap_found_a: AtomicBool,
    /// P may go on (lock A): Q is in its stopping map, or the main
    /// thread's step is done.
    at_cap_go_on: AtomicBool,
    /// P's translate returned.
    at_cap_done: AtomicBool,
    /// Q's maps so far; Q stops in the one numbered `recycler_stop`
    /// (0-based), after its record.
    recycler_maps: AtomicUsize,
    recycler_stop: AtomicUsize,
    /// Calls of the shadow's `clear`.
    clears: AtomicUsize,
}

/// The steps above, run in the real shadow table's methods.
impl ShadowHooks for Steps {
    fn map(&self, _m: &ShadowMapping) -> Result<(), MapError> {
        if role() == Role::Recycler
            && self.recycler_maps.fetch_add(1, SeqCst) == self.recycler_stop.load(SeqCst)
        {
            self.at_cap_go_on.store(true, SeqCst);
            wait_for(&self.at_cap_done);
        }
        Ok(())
    }
    fn clear(&self) {
        self.clears.fetch_add(1, SeqCst);
    }
    fn leaves(&self, _leaves: usize) {
        if role() == Role::AtCap && !self.at_cap_found_a.swap(true, SeqCst) {
            // `reclaim_leaves` has A from its slot and its count, and has
            // not locked it: let the other side act.
            wait_for(&self.at_cap_go_on);
        }
    }
}

type SteppedService = HookedService<Steps>;

/// The shadow-leaf cap of these scenarios: the least `Service::new`
/// accepts (review 38 R38-1; it was two).
const CAP: u64 = shadow_mmu::budget::WORST_ACCESS_PAGES as u64;

/// One context slot, a cap of [`CAP`] shadow leaves, A holding them all
/// (pages 1 to `CAP`); B's tree maps pages 0 and 1. Returns the service,
/// the steps and the keys.
fn a_at_the_cap() -> (Arc<SteppedService>, Arc<Steps>, ContextKey, ContextKey) {
    let mem = L1Memory::new();
    let tree_a = L1Tables::new(mem.clone(), Granule::K4);
    let tree_b = L1Tables::at(mem.clone(), Granule::K4, 4 << 20);
    for i in 0..=CAP {
        tree_a.map(i << 12, 0x8000_0000 + (i << 12), 3, RW);
    }
    tree_b.map(0, 0x9000_0000, 3, RW);
    tree_b.map(1 << 12, 0x9000_1000, 3, RW);
    let (a, b) = (tree_a.key(1), tree_b.key(1));
    let mut cfg = config(4 << 20, 1);
    cfg.budget = Budget {
        shadow_leaves: CAP as usize,
        ..cfg.budget
    };
    let steps = Arc::new(Steps::default());
    let s = hooked_service(cfg, mem, steps.clone());
    {
        // A holds the cap.
        let w = s.worker();
        for i in 1..=CAP {
            let t = s.translate(&w, &a, i << 12, AccessKind::Read, &ABORT);
            assert!(pa_of(&t, i << 12).is_some(), "{t:?}");
        }
        assert_eq!(s.shadow_leaves(), CAP as usize);
    }
    (s, steps, a, b)
}

fn spawn_fault(
    s: &Arc<SteppedService>,
    steps: &Arc<Steps>,
    role: Role,
    key: ContextKey,
    l2_ipa: u64,
) -> thread::JoinHandle<shadow_mmu::service::Translated> {
    let s = s.clone();
    let steps = steps.clone();
    thread::spawn(move || {
        ROLE.with(|r| r.set(role));
        let w = s.worker();
        if role == Role::Recycler {
            // Every fault but the last completes: B has leaves before
            // the one that stops.
            for page in 0..(l2_ipa >> 12) {
                let t = s.translate(&w, &key, page << 12, AccessKind::Read, &ABORT);
                assert!(pa_of(&t, page << 12).is_some(), "{t:?}");
            }
        }
        let t = s.translate(&w, &key, l2_ipa, AccessKind::Read, &ABORT);
        if role == Role::AtCap {
            steps.at_cap_done.store(true, SeqCst);
        }
        t
    })
}

/// P, at the cap in A, has picked A in `reclaim_leaves`; Q recycles A's
/// slot for B (faulting on B's pages below `b_page` first) and stops in
/// B's map of page `b_page` after its record; P then locks A (retired).
/// Clearing A's shadow there would clear B's (same slot, same shadow) and
/// kill B's records while B's install is between record and map: a leaf
/// without a record, invisible to `l0_unmap`.
fn reclaim_leaves_vs_recycle(b_page: u64) {
    let (s, steps, a, b) = a_at_the_cap();
    steps.recycler_stop.store(b_page as usize, SeqCst);
    let at_cap = spawn_fault(&s, &steps, Role::AtCap, a, 0);
    wait_for(&steps.at_cap_found_a);
    let recycler = spawn_fault(&s, &steps, Role::Recycler, b, b_page << 12);
    let _ = at_cap.join().unwrap();
    let tq = recycler.join().unwrap();
    assert_eq!(
        pa_of(&tq, b_page << 12),
        Some(PA_OFFSET + 0x9000_0000 + (b_page << 12)),
        "{tq:?}"
    );
    let w = s.worker();
    assert_eq!(
        s.shadow_leaves(),
        s.reverse_map_records(),
        "a shadow leaf without its reverse-map record"
    );
    let range = IpaRange::new(0x9000_0000, 0x9000_2000).unwrap();
    s.l0_unmap(&w, range, L0Change::Unmap);
    for page in 0..=b_page {
        assert!(
            s.shadow_lookup(&w, &b, page << 12).is_none(),
            "L2 of B still maps the PA L0 removed from L1 (page {page})"
        );
    }
}

/// B's install is its first (B's shadow is empty when P locks A).
#[test]
fn r12_reclaim_leaves_recycle() {
    reclaim_leaves_vs_recycle(0);
}

/// B already has a leaf when P locks A, so only `reclaim_leaves`'
/// `is_retired` check (not its leaf re-check) keeps P off B's shadow:
/// fails with that check removed.
#[test]
fn r12_reclaim_leaves_recycle_successor_with_leaves() {
    reclaim_leaves_vs_recycle(1);
}

/// R12-5: P has picked A; a whole-VMID TLBI empties A's shadow before P
/// locks it. P must not clear the empty shadow again (one more whole-VMID
/// TLBI, detach and reverse-map epoch for nothing).
#[test]
fn reclaim_leaves_skips_a_victim_emptied_meanwhile() {
    let (s, steps, a, _b) = a_at_the_cap();
    let at_cap = spawn_fault(&s, &steps, Role::AtCap, a, 0);
    wait_for(&steps.at_cap_found_a);
    let w = s.worker();
    let clears_before = steps.clears.load(SeqCst);
    s.invalidate(&w, a.vmid, &InvalidateScope::Vmid);
    let clears_by_tlbi = steps.clears.load(SeqCst) - clears_before;
    assert_eq!(clears_by_tlbi, 1, "the TLBI clears A's shadow once");
    assert_eq!(s.shadow_leaves(), 0);
    steps.at_cap_go_on.store(true, SeqCst);
    // P's walk predates the TLBI: it may end in a retry; either way it
    // must not clear A's shadow again.
    let _ = at_cap.join().unwrap();
    assert_eq!(
        steps.clears.load(SeqCst) - clears_before,
        1,
        "reclaim_leaves cleared a shadow the TLBI had emptied"
    );
}

/// R12-5: at the cap, a fault whose leaf is already in the shadow (a
/// second vCPU on the same page) adds no leaf and clears nothing.
#[test]
fn a_fault_adding_no_leaf_clears_nothing_at_the_cap() {
    let (s, steps, a, _b) = a_at_the_cap();
    let w = s.worker();
    let evictions = s.stats().evictions;
    let t = s.translate(&w, &a, 1 << 12, AccessKind::Read, &ABORT);
    assert!(pa_of(&t, 1 << 12).is_some(), "{t:?}");
    assert_eq!(steps.clears.load(SeqCst), 0, "a shadow cleared at the cap");
    assert_eq!(s.shadow_leaves(), CAP as usize);
    assert_eq!(s.stats().evictions, evictions);
    for page in 1..=CAP {
        assert!(s.shadow_lookup(&w, &a, page << 12).is_some(), "page {page}");
    }
}
// ---- R12-1: Budget::split ----

#[test]
fn every_accepted_split_fits_its_bytes() {
    let mut bad = Vec::new();
    for contexts in [1usize, 2, 3, 4, 5, 8, 16, 32, 64, 128, 256] {
        let minimum = match Budget::split(0, contexts) {
            Err(e) => e.minimum().expect("a count within MAX_CONTEXTS"),
            Ok(_) => 0,
        };
        let mut bytes = minimum;
        while bytes < minimum * 64 {
            let b = Budget::split(bytes, contexts).expect("at least the minimum");
            if b.worst_case_bytes() > bytes {
                bad.push((contexts, bytes, b.worst_case_bytes()));
            }
            bytes += (minimum / 97).max(4096);
        }
    }
    for c in [1usize, 2, 3, 4, 5, 8, 16, 32, 64, 128, 256] {
        let mine: Vec<_> = bad.iter().filter(|b| b.0 == c).collect();
        if let (Some(first), Some(last)) = (mine.first(), mine.last()) {
            let min = Budget::split(0, c).unwrap_err().minimum().unwrap();
            eprintln!(
                "{c} contexts: minimum {min}, {} failing, first {:?}, last {:?} ({:.2}x minimum)",
                mine.len(),
                first,
                last,
                last.1 as f64 / min as f64
            );
        }
    }
    assert!(
        bad.is_empty(),
        "{} splits count more than their bytes, e.g. (contexts, bytes, worst case) {:?}",
        bad.len(),
        &bad[..bad.len().min(6)]
    );
}

#[test]
fn parts_at_the_minimum() {
    use shadow_mmu::budget::*;
    for contexts in [1usize, 64] {
        let min = Budget::split(0, contexts).unwrap_err().minimum().unwrap();
        let b = Budget::split(min, contexts).unwrap();
        eprintln!(
            "{contexts}: bytes {min} worst {} | rmap {} (leaves {} x {RMAP_RECORD_BYTES} = {}) | caches {} x {} ({:?}) | frames {} x {FRAME_COST_BYTES} | dir {}",
            b.worst_case_bytes(),
            b.reverse_map_bytes(),
            b.shadow_leaves,
            b.shadow_leaves * RMAP_RECORD_BYTES,
            contexts,
            b.cache_table_bytes() + b.cache_index_bytes(),
            b.capacity,
            b.frames,
            Budget::directory_bytes(contexts)
        );
    }
}

/// The minimum `BudgetError::TooSmall` names is exact: one byte less is refused
/// with the same minimum, the minimum itself is accepted.
#[test]
fn the_minimum_is_exact() {
    for contexts in 1..=64usize {
        let minimum = Budget::split(0, contexts).unwrap_err().minimum().unwrap();
        let below = Budget::split(minimum - 1, contexts).unwrap_err();
        assert_eq!(
            below,
            BudgetError::TooSmall {
                bytes: minimum - 1,
                minimum
            }
        );
        let at = Budget::split(minimum, contexts).expect("the minimum");
        assert!(at.worst_case_bytes() <= minimum);
    }
}

// ---- review 11 R11-7: the worker registry ----

/// Workers made and dropped one after another reuse one registry entry;
/// their counts stay in the totals.
#[test]
fn dropped_workers_counters_are_reused() {
    let mem = L1Memory::new();
    let tree = L1Tables::new(mem.clone(), Granule::K4);
    tree.map(0, 0x8000_0000, 3, RW);
    let key = tree.key(1);
    let s = service_with(mem, 1 << 20, 2);
    let kept: Vec<_> = (0..3).map(|_| s.worker()).collect();
    assert_eq!(s.registered_workers(), 3);
    for i in 0..1000u64 {
        let w = s.worker();
        let t = s.translate(&w, &key, 0, AccessKind::Read, &ABORT);
        assert!(pa_of(&t, 0).is_some(), "{t:?}");
        assert_eq!(s.stats().hits + s.stats().misses, i + 1);
    }
    assert_eq!(
        s.registered_workers(),
        4,
        "one entry for every transient worker"
    );
    drop(kept);
    let _more: Vec<_> = (0..4).map(|_| s.worker()).collect();
    assert_eq!(s.registered_workers(), 4);
    assert_eq!(s.stats().hits + s.stats().misses, 1000);
}

/// Review 14 R14-1: `Budget`'s fields are public, so a budget may be made
/// by hand; `Service::new` refuses one whose sizes cannot be computed
/// instead of overflowing while it sizes the reverse map.
#[test]
fn a_handmade_budget_out_of_range_is_refused() {
    let mut cfg = config(16 << 20, 1);
    cfg.budget.shadow_leaves = usize::MAX;
    let backend = shadow_mmu::service::HostBackend::recording(
        cfg.budget.frames,
        shadow_mmu::shadow_table::ShadowConfig::default(),
    )
    .unwrap();
    let r = Service::new(cfg, L1Memory::new(), l0_map(), backend);
    assert!(
        matches!(
            r,
            Err(shadow_mmu::service::ServiceError::Budget(
                BudgetError::OutOfRange {
                    what: "shadow leaves",
                    ..
                }
            ))
        ),
        "{:?}",
        r.err()
    );
}
