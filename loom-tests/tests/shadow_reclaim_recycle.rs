//! loom model of frame reclamation racing with context recycling on the
//! real service (`Service::translate` -> `reclaim_frames` against
//! `Directory::get_or_create` recycling a slot).
//!
//! Two context slots. Context C (slot 0, shadow VMID 16) has a live shadow
//! leaf; context A (slot 1, shadow VMID 17) finds the pool dry: every map
//! into its shadow fails with `FramesExhausted`. Thread P faults in A: both
//! install attempts run out of frames, so `reclaim_frames` looks for the
//! shadow holding the most frames, finds C in slot 0 (it reads the slot
//! under the directory lock and works without it) and then locks C to
//! clear its shadow. Meanwhile thread Q faults in a third context B: the
//! directory is full, C is recycled (retired under its lock, its shadow
//! cleared, its VMID's reverse-map records forgotten) and B takes over slot
//! 0's shadow and shadow VMID, records its leaf in the reverse map and maps
//! it.
//!
//! Whoever found a context and then locks it must leave it alone if it was
//! retired meanwhile: the slot's shadow and the VMID's records are the
//! successor's. Checked after both threads end, in every interleaving:
//! - P is told to retry (`Throttled`), Q's page maps to its own tree;
//! - B's shadow leaf survives: reclamation never clears the successor (in
//!   this model a legitimate clear of B cannot happen either: once C is
//!   recycled, slot 0 holds C's detached frames, which `reclaim_frames`
//!   takes back instead of clearing a live shadow; see [`SlotShadow`]);
//! - no leaf without a record: after `l0_unmap` of every L1 page the model
//!   maps, no shadow (of either slot) holds a leaf. A leaf whose record was
//!   forgotten would be invisible to `l0_unmap`, and L2 would keep host
//!   memory L0 took from L1;
//! - no use after free: every lock-free node (directory, cache) carries a
//!   loom liveness cell, and P's `reclaim_frames` flushes its epoch guard;
//! - the fault path's lock-free shadow reads (`ShadowStore::lookup_excluded`,
//!   review 19) never overlap a change of that shadow (`map`, `unmap_range`,
//!   `clear`): each shadow counts both in flight and each side asserts the
//!   other's count is zero before and after its work (`reclaim` returns
//!   detached frames only, which no walk reaches: not a change of the
//!   tree). Fails the same way without the retired check.
//!
//! The model can fail. Checked by hand (not committed) with the retired
//! check in `Service::reclaim_frames` removed (the `if
//! !context.is_retired()` around the clear made unconditional): loom fails
//! at once with "B's shadow leaf was cleared by reclamation of the retired
//! C" (P, preempted after `in_slot` returned C, clears slot 0's shadow and
//! forgets VMID 16's records after Q's install), and with that assertion
//! also removed it fails on "a shadow leaf without a reverse-map record"
//! (P's clear and `forget_context` land between Q's record and Q's map).
//! With the check restored it passes: about 26,600 executions, 4-6 s in
//! release with `LOOM_MAX_PREEMPTIONS=2` on the 2-core VM.
#![cfg(loom)]

use crate::shadow_support;

use std::sync::Arc as StdArc;
use std::sync::Mutex as StdMutex;

use ipc::message::L0Change;
use ipc::tlbi::IpaRange;
use loom::sync::Arc;
use loom::thread;
use shadow_mmu::compose::{HostExecute, L0RegionMap, ShadowMapping};
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::{Retry, Service, ShadowBackend, ShadowStore, Translated};
use shadow_mmu::shadow_table::{MapError, MapOutcome};
use shadow_support::*;
use walker::{AccessKind, Endianness};

/// Shadow VMID of slot 1 (A's slot): its maps find no frame.
const DRY_VMID: u16 = 17;

/// One slot's shadow: its leaves in a loom mutex (the real table's own
/// concurrency has its own model; the subject here is the service's
/// protocol around it). Frames, as in the real table: the root, a table
/// per leaf (freed when the leaf is unmapped), and the frames `clear`
/// detached, which only `reclaim` returns to the pool. Unlike the real
/// table, `map` reclaims nothing: detached frames come back only through
/// `reclaim_frames`, which therefore never needs to clear a live shadow
/// while the slot holds detached frames. So in this model reclamation can
/// clear slot 0 only while C holds it live, and B's leaf must survive
/// every interleaving.
#[derive(Debug)]
struct SlotShadow {
    vmid: u16,
    state: loom::sync::Mutex<ShadowState>,
    changing: loom::sync::atomic::AtomicUsize,
    excluded_readers: loom::sync::atomic::AtomicUsize,
}

impl SlotShadow {
    fn change<R>(&self, what: &str, f: impl FnOnce() -> R) -> R {
        use loom::sync::atomic::Ordering::SeqCst;
        self.changing.fetch_add(1, SeqCst);
        assert_eq!(
            self.excluded_readers.load(SeqCst),
            0,
            "{what} during lookup_excluded"
        );
        let r = f();
        assert_eq!(
            self.excluded_readers.load(SeqCst),
            0,
            "{what} during lookup_excluded"
        );
        self.changing.fetch_sub(1, SeqCst);
        r
    }
}

#[derive(Clone, Debug, Default)]
struct ShadowState {
    leaves: Vec<ShadowMapping>,
    detached: usize,
}

/// The service owns each shadow; the backend keeps a second handle so the
/// model can inspect every shadow at the end.
#[derive(Debug)]
struct Handle(StdArc<SlotShadow>);

impl Handle {
    fn state(&self) -> loom::sync::MutexGuard<'_, ShadowState> {
        self.0.state.lock().unwrap()
    }
}

impl ShadowStore for Handle {
    fn root_pa(&self) -> u64 {
        u64::from(self.0.vmid) << 12
    }
    fn map(&self, m: &ShadowMapping) -> Result<MapOutcome, MapError> {
        self.0.change("map", || self.map_inner(m))
    }
    fn unmap_range(&self, start: u64, len: u64) -> usize {
        self.0
            .change("unmap_range", || self.unmap_inner(start, len))
    }
    fn clear(&self) -> usize {
        self.0.change("clear", || self.clear_inner())
    }
    fn lookup_excluded(&self, ipa: u64) -> Option<ShadowMapping> {
        use loom::sync::atomic::Ordering::SeqCst;
        self.0.excluded_readers.fetch_add(1, SeqCst);
        assert_eq!(
            self.0.changing.load(SeqCst),
            0,
            "lookup_excluded during a change"
        );
        let found = self.lookup(ipa);
        assert_eq!(
            self.0.changing.load(SeqCst),
            0,
            "lookup_excluded during a change"
        );
        self.0.excluded_readers.fetch_sub(1, SeqCst);
        found
    }
    fn reclaim(&self, max_frames: usize) -> usize {
        let mut state = self.state();
        let n = state.detached.min(max_frames);
        state.detached -= n;
        n
    }
    fn lookup(&self, ipa: u64) -> Option<ShadowMapping> {
        self.state()
            .leaves
            .iter()
            .copied()
            .find(|e| e.contains(ipa))
    }
    fn frames_used(&self) -> usize {
        let state = self.state();
        1 + state.leaves.len() + state.detached
    }
    fn leaves(&self) -> usize {
        self.state().leaves.len()
    }
}

impl Handle {
    fn map_inner(&self, m: &ShadowMapping) -> Result<MapOutcome, MapError> {
        if self.0.vmid == DRY_VMID {
            return Err(MapError::FramesExhausted { budget: 0 });
        }
        let mut state = self.state();
        if state.leaves.contains(m) {
            return Ok(MapOutcome::AlreadyPresent);
        }
        let before = state.leaves.len();
        state.leaves.retain(|e| !overlaps(e, m.l2_ipa_base, m.size));
        let replaced = state.leaves.len() != before;
        state.leaves.push(*m);
        Ok(if replaced {
            MapOutcome::Replaced
        } else {
            MapOutcome::Installed
        })
    }
    fn unmap_inner(&self, start: u64, len: u64) -> usize {
        let mut state = self.state();
        let before = state.leaves.len();
        state.leaves.retain(|e| !overlaps(e, start, len));
        before - state.leaves.len()
    }
    fn clear_inner(&self) -> usize {
        let mut state = self.state();
        let n = state.leaves.len();
        state.leaves.clear();
        state.detached += n;
        n
    }
}

fn overlaps(e: &ShadowMapping, start: u64, len: u64) -> bool {
    e.l2_ipa_base < start + len && start < e.l2_ipa_base + e.size
}

#[derive(Debug, Default)]
struct SlotBackend {
    made: StdMutex<Vec<StdArc<SlotShadow>>>,
}

impl SlotBackend {
    /// Every shadow's leaves, by shadow VMID.
    fn leaves(&self) -> Vec<(u16, Vec<ShadowMapping>)> {
        let made = self.made.lock().unwrap();
        made.iter()
            .map(|s| (s.vmid, s.state.lock().unwrap().leaves.clone()))
            .collect()
    }
}

impl ShadowBackend for SlotBackend {
    type Shadow = Handle;
    fn create(&self, vmid: u16) -> Option<Handle> {
        let shadow = StdArc::new(SlotShadow {
            vmid,
            state: loom::sync::Mutex::new(ShadowState::default()),
            changing: loom::sync::atomic::AtomicUsize::new(0),
            excluded_readers: loom::sync::atomic::AtomicUsize::new(0),
        });
        self.made.lock().unwrap().push(shadow.clone());
        Some(Handle(shadow))
    }
    fn frames_in_use(&self) -> usize {
        0
    }
    fn host_execute(&self) -> HostExecute {
        HostExecute::PerLevel
    }
    fn input_bits(&self) -> u32 {
        // The fake stores any mapping the 48-bit format can hold.
        shadow_mmu::compose::SHADOW_IPA_BITS
    }
}

type SlotService = Service<SparseMemory, L0RegionMap, SlotBackend>;

/// The shared fixture's service, with two slots and [`SlotBackend`].
fn service_of_two_slots() -> Arc<SlotService> {
    let (config, l0) = (config(2), l0_map());
    Arc::new(
        Service::new(config, memory(), l0, SlotBackend::default()).expect("valid shadow VMIDs"),
    )
}

/// The cache tables' hash tags are protocol atomics (loom interleaves
/// them): a run of this model, whose service fills and recycles cache
/// slots, takes more branches than loom's default limit of 1,000.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.max_branches = 20_000;
    builder.check(f);
}

#[test]
fn reclamation_never_clears_a_recycled_slots_successor() {
    model(|| {
        let s = service_of_two_slots();
        let w = s.worker();
        // C: L1 VMID 2 on tree ROOT; A: L1 VMID 1 on ROOT; B: VMID 1 on
        // ROOT_B. C takes slot 0 (shadow VMID 16) and shadows IPA 0; A takes
        // slot 1 (shadow VMID 17, dry) without faulting.
        let c = ContextKey::new(2, ROOT, VTCR, Endianness::Little);
        let (a, b) = (key(ROOT), key(ROOT_B));
        assert_eq!(
            l1_of(&s.translate(&w, &c, 0, AccessKind::Read, &ABORT), 0),
            Some(OLD)
        );
        assert_eq!(
            s.shadow_root(&w, &a),
            Some((DRY_VMID, u64::from(DRY_VMID) << 12))
        );
        assert_eq!(s.shadow_vmid(&w, &c), Some(16));

        let spawn = |key: ContextKey| {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                s.translate(&w, &key, 0, AccessKind::Read, &ABORT)
            })
        };
        // P faults in A under pool pressure; Q faults in B, for which the
        // round-robin hand recycles slot 0 (C). The main thread only waits,
        // so loom spends its preemptions on P and Q.
        let pressure = spawn(a);
        let recycler = spawn(b);
        let tp = pressure.join().unwrap();
        let tq = recycler.join().unwrap();

        assert_eq!(tp, Translated::Retry(Retry::Throttled), "P");
        assert_eq!(l1_of(&tq, 0), Some(NEW), "Q: {tq:?}");
        assert_eq!(s.stats().recycled_contexts, 1);
        assert_eq!(s.shadow_vmid(&w, &b), Some(16), "B took slot 0");
        assert!(s.shadow_vmid(&w, &c).is_none(), "C was recycled");
        let leaf = s.shadow_lookup(&w, &b, 0);
        assert!(
            leaf.is_some_and(|m| m.pa_base == PA_OFFSET + NEW),
            "B's shadow leaf was cleared by reclamation of the retired C: {:?}",
            s.backend().leaves()
        );
        // Every L1 page any context shadowed goes from L1: every leaf must
        // be found through its record.
        for page in [OLD, NEW] {
            let range = IpaRange::new(page, page + 0x2000).expect("non-empty");
            s.l0_unmap(&w, range, L0Change::Unmap);
        }
        for (vmid, leaves) in s.backend().leaves() {
            assert!(
                leaves.is_empty(),
                "a shadow leaf without a reverse-map record (shadow VMID {vmid}): {leaves:?}"
            );
        }
    });
}
