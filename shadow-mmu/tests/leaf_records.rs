//! Regression tests of the reverse-map invariant: every installed shadow
//! leaf has a live reverse-map record, and a record goes only together with
//! its leaf. A leaf without a record is invisible to `l0_unmap`, so L2 would
//! keep access to host memory L0 took away from L1. Each test ends with
//! such an unmap and checks the leaf went. (Found by review: an install
//! refused by the L0 generation or by the shadow table deleting another
//! install's record, a cache eviction deleting the install's own record,
//! and frame reclamation clearing a recycled slot's shadow under the
//! retired context's lock.)
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;

use common::*;
use ipc::message::L0Change;
use ipc::tlbi::IpaRange;
use shadow_mmu::budget::Budget;
use shadow_mmu::compose::{L0Map, L0Mapping, L0RegionMap, ShadowMapping};
use shadow_mmu::context::Capacity;
use shadow_mmu::service::{HostBackend, Retry, Service, ShadowBackend, Translated, Worker};
use shadow_mmu::shadow_table::{MapError, ShadowConfig};
use walker::{AccessKind, Granule};

/// Removes L1 IPA page `l1_ipa` from L1 (as L0 does) and checks that the
/// shadow no longer maps `l2_ipa` in `key`'s context.
fn assert_l0_unmap_removes<M, L, B>(
    s: &Service<M, L, B>,
    w: &Worker,
    key: &shadow_mmu::context::ContextKey,
    l1_ipa: u64,
    l2_ipa: u64,
) where
    M: walker::GuestMemory + Sync,
    L: L0Map,
    B: ShadowBackend,
{
    let range = IpaRange::new(l1_ipa, l1_ipa + 0x1000).unwrap();
    let removed = s.l0_unmap(w, range, L0Change::Unmap);
    assert!(
        s.shadow_lookup(w, key, l2_ipa).is_none(),
        "L2 still maps the PA L0 removed from L1 (l0_unmap removed {removed})"
    );
}

type Hook = Box<dyn FnOnce() + Send>;
/// Runs once inside the next composition (only the service of
/// `a_refused_install_leaves_the_installed_leafs_record_alone` uses it).
static COMPOSE_HOOK: Mutex<Option<Hook>> = Mutex::new(None);

/// L0's map of L1 with a hook that runs inside a translate's composition,
/// after it read the generations and before it installs: an L0 change on
/// another CPU, landing mid-translate.
struct HookedL0(L0RegionMap);

impl L0Map for HookedL0 {
    fn lookup(&self, l1_ipa: u64) -> Option<L0Mapping> {
        let hook = COMPOSE_HOOK.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        self.0.lookup(l1_ipa)
    }
}

/// vCPU 1 maps X (L1 page P). vCPU 2 faults on X too; while it composes, L0
/// write-protects an unrelated page (the L0 generation moves), so its
/// install is refused. Its record had replaced vCPU 1's (same shadow key):
/// the refusal must not leave vCPU 1's leaf without a record.
#[test]
fn a_refused_install_leaves_the_installed_leafs_record_alone() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let cfg = config(16 << 20, 2);
    let backend = HostBackend::recording(cfg.budget.frames, ShadowConfig::default()).unwrap();
    let s = Arc::new(Service::new(cfg, mem, HookedL0(l0_map()), backend).unwrap());
    let w = s.worker();
    let key = l1.key(1);
    let (x, p) = (0x20_1000, 0x8000_1000);
    l1.map(x, p, 3, RW);
    let t = s.translate(&w, &key, x, AccessKind::Read, &ABORT);
    assert_eq!(pa_of(&t, x), Some(PA_OFFSET + p), "{t:?}");
    let other = s.clone();
    *COMPOSE_HOOK.lock().unwrap() = Some(Box::new(move || {
        let w = other.worker();
        let unrelated = IpaRange::new(0xc000_0000, 0xc000_1000).unwrap();
        other.l0_unmap(&w, unrelated, L0Change::WriteProtect);
    }));
    let t = s.translate(&w, &key, x, AccessKind::Read, &ABORT);
    assert_eq!(t, Translated::Retry(Retry::InvalidationRaced));
    // vCPU 1's leaf may have gone with the refused install (removing more
    // is allowed); a leaf without its record is not.
    assert_l0_unmap_removes(&s, &w, &key, p, x);
}

/// The cache has one bucket of leaves. An install's cache insert evicts a
/// read-only 2 MiB block whose shadow range holds the new page: the
/// eviction's shadow unmap must not take the install's own record (L1 made
/// the block a table without a TLBI: hostile, so it must still be safe).
#[test]
fn an_eviction_during_an_install_keeps_the_installs_record() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let mut cfg = config(16 << 20, 1);
    cfg.budget = Budget {
        capacity: Capacity {
            contexts: 1,
            leaves_per_context: 4,
            paths_per_context: 4,
        },
        ..cfg.budget
    };
    let backend = HostBackend::recording(cfg.budget.frames, ShadowConfig::default()).unwrap();
    let s = Service::new(cfg, mem, l0_map(), backend).unwrap();
    let w = s.worker();
    let key = l1.key(1);
    // A read-only block at L2 IPA 0x20_0000, then three pages elsewhere:
    // the bucket is full.
    l1.map(0x20_0000, 0x8020_0000, 2, RO);
    for i in 0..3u64 {
        l1.map(0x4000_0000 + i * 0x1000, 0x8100_0000 + i * 0x1000, 3, RW);
    }
    assert!(matches!(
        read(&s, &w, &key, 0x20_0000),
        Translated::Mapped(_)
    ));
    for i in 0..3u64 {
        let t = read(&s, &w, &key, 0x4000_0000 + i * 0x1000);
        assert!(matches!(t, Translated::Mapped(_)), "{t:?}");
    }
    // L1 turns the block into a table with a writable page at 0x20_1000;
    // L2 writes there: the cached block does not permit it, the walk's leaf
    // evicts the block.
    l1.map(0x20_1000, 0x9000_1000, 3, RW);
    let t = s.translate(&w, &key, 0x20_1000, AccessKind::Write, &ABORT);
    assert_eq!(pa_of(&t, 0x20_1000), Some(PA_OFFSET + 0x9000_1000), "{t:?}");
    assert!(s.shadow_lookup(&w, &key, 0x20_1000).is_some());
    assert_l0_unmap_removes(&s, &w, &key, 0x9000_1000, 0x20_1000);
}

/// Refuses maps on demand (as a shadow table refuses a PA beyond the
/// host's, say).
struct Refuse(AtomicBool);

impl ShadowHooks for Refuse {
    fn map(&self, m: &ShadowMapping) -> Result<(), MapError> {
        if self.0.load(SeqCst) {
            return Err(MapError::PaOutOfRange(m.pa_base));
        }
        Ok(())
    }
}

/// X is shadowed; a second translate of X has its map refused after its
/// record replaced that of X's leaf: the refusal must not leave X's leaf
/// without a record.
#[test]
fn a_refused_map_leaves_the_installed_leafs_record_alone() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let cfg = config(16 << 20, 1);
    let refuse = Arc::new(Refuse(AtomicBool::new(false)));
    let s = hooked_service(cfg, mem, refuse.clone());
    let w = s.worker();
    let key = l1.key(1);
    let (x, p) = (0x20_1000, 0x8000_1000);
    l1.map(x, p, 3, RW);
    let t = s.translate(&w, &key, x, AccessKind::Read, &ABORT);
    assert_eq!(pa_of(&t, x), Some(PA_OFFSET + p), "{t:?}");
    refuse.0.store(true, SeqCst);
    let t = s.translate(&w, &key, x, AccessKind::Read, &ABORT);
    assert!(matches!(t, Translated::Unshadowable(_)), "{t:?}");
    assert_l0_unmap_removes(&s, &w, &key, p, x);
}

// Frame reclamation vs recycling, with room for one context. P faults in
// context A under pool pressure (its maps always run out of frames), so
// `reclaim_frames` finds A, the context holding the most frames. Before P
// locks A, Q faults in context B: A is recycled (retired, its shadow
// cleared), the slot's shadow and VMID pass to B, and Q's install in B
// stops in its map, after its record. P then locks the retired A: it must
// not clear the shadow and forget the VMID's records, which are B's now (B's
// leaf would stay without its record). Hooks in the shadow store order
// every step; nothing depends on timing.

thread_local!(static ROLE: Cell<Role> = const { Cell::new(Role::Other) });

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Other,
    /// P: faults in A under pool pressure.
    Pressure,
    /// Q: faults in B, recycling A.
    Recycler,
}

fn role() -> Role {
    ROLE.with(Cell::get)
}

#[derive(Default)]
struct Steps {
    /// P is in `reclaim_frames`, holding A (found in its slot).
    pressure_found_a: AtomicBool,
    /// Q retired A (its clear).
    recycler_retired_a: AtomicBool,
    /// Q's install in B has its record and is in its map.
    recycler_in_map: AtomicBool,
    /// P's translate returned.
    pressure_done: AtomicBool,
}

/// The steps above, run in the real shadow table's methods.
impl ShadowHooks for Steps {
    fn map(&self, _m: &ShadowMapping) -> Result<(), MapError> {
        match role() {
            Role::Pressure => return Err(MapError::FramesExhausted { budget: 0 }),
            Role::Recycler => {
                self.recycler_in_map.store(true, SeqCst);
                wait_for(&self.pressure_done);
            }
            Role::Other => {}
        }
        Ok(())
    }
    fn clear(&self) {
        if role() == Role::Recycler {
            self.recycler_retired_a.store(true, SeqCst);
        }
    }
    fn reclaim(&self) {
        if role() == Role::Pressure && !self.pressure_found_a.swap(true, SeqCst) {
            // `reclaim_frames` has A from its slot and has not locked it:
            // let Q recycle A and stop in B's map.
            wait_for(&self.recycler_in_map);
        }
    }
    fn frames_used(&self, frames: usize) -> usize {
        // Worth clearing for `reclaim_frames`.
        frames.max(2)
    }
}

#[test]
fn reclaiming_frames_never_clears_a_recycled_slots_successor() {
    let mem = L1Memory::new();
    let tree_a = L1Tables::new(mem.clone(), Granule::K4);
    let tree_b = L1Tables::at(mem.clone(), Granule::K4, 4 << 20);
    tree_a.map(0, 0x8000_0000, 3, RW);
    tree_b.map(0, 0x9000_0000, 3, RW);
    let (a, b) = (tree_a.key(1), tree_b.key(1));
    let cfg = config(4 << 20, 1);
    let steps = Arc::new(Steps::default());
    let s = hooked_service(cfg, mem, steps.clone());
    let spawn = |role: Role, key| {
        let s = s.clone();
        let steps = steps.clone();
        thread::spawn(move || {
            ROLE.with(|r| r.set(role));
            let w = s.worker();
            let t = s.translate(&w, &key, 0, AccessKind::Read, &ABORT);
            if role == Role::Pressure {
                steps.pressure_done.store(true, SeqCst);
            }
            t
        })
    };
    let pressure = spawn(Role::Pressure, a);
    wait_for(&steps.pressure_found_a);
    let recycler = spawn(Role::Recycler, b);
    let tp = pressure.join().unwrap();
    let tq = recycler.join().unwrap();
    assert!(steps.recycler_retired_a.load(SeqCst), "A was recycled");
    assert_eq!(tp, Translated::Retry(Retry::Throttled));
    assert_eq!(pa_of(&tq, 0), Some(PA_OFFSET + 0x9000_0000), "{tq:?}");
    assert_l0_unmap_removes(&s, &s.worker(), &b, 0x9000_0000, 0);
}
