//! Review 17 R17-1: review 16 F3's fix (`unmap_other_shapes` unmaps a
//! same-range leaf that maps *another page* before the new record replaces
//! the old one) decides "another L1 block" by comparing PAs. When L0 maps
//! two L1 pages to one PA (an alias: a shared zero/KSM page, two memslots
//! over the same host memory, here P2 a read-only alias of P1's page), the
//! old leaf (built on P1) and the new one (built on P2) have the same PA, so
//! the old leaf stays while `ReverseMap::insert` replaces its record (on
//! P1) by the new one (on P2). An `l0_unmap` of P1 in the window before
//! `map` finds no record on P1 and returns while the leaf built on P1's old
//! mapping (writable) is still in the shadow: L0 has just write-protected
//! P1 (dirty logging, KSM), yet L2 can still write the page through a
//! leaf nothing in L0's current map allows.
//!
//! Failed before the fix (d7c76a7..4911397); passes when the replaced record's L1
//! block (not the PA) decides, or when any leaf that differs from the new
//! one goes with its record first.
#![cfg(not(loom))]

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use common::*;
use ipc::message::L0Change;
use ipc::tlbi::IpaRange;
use shadow_mmu::compose::{
    L0Map, L0Mapping, L0RegionMap, MemAttr, MemShareability, Permissions, ShadowMapping, Unbacked,
};
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::Service;
use shadow_mmu::shadow_table::MapError;
use walker::{AccessKind, Granule};

const X: u64 = 0x1000_0000;
const P1: u64 = 0x8000_0000;
const P2: u64 = 0x8000_1000;
/// The one host page both L1 pages are backed by.
const SHARED_PA: u64 = PA_OFFSET + P1;

/// L0's map of L1: the default map, except that P1 and P2 are both backed
/// by `SHARED_PA`, P2 read-only, P1 writable until L0 write-protects it.
struct AliasedL0 {
    inner: L0RegionMap,
    p1_write_protected: AtomicBool,
}

impl L0Map for AliasedL0 {
    fn lookup(&self, l1_ipa: u64) -> Option<L0Mapping> {
        let page = l1_ipa & !0xfff;
        let read_exec = Permissions::READ
            .union(Permissions::EXEC_EL0)
            .union(Permissions::EXEC_EL1);
        let perms = if page == P1 && !self.p1_write_protected.load(Ordering::Acquire) {
            read_exec.union(Permissions::WRITE)
        } else if page == P1 || page == P2 {
            read_exec
        } else {
            return self.inner.lookup(l1_ipa);
        };
        L0Mapping::new(
            page,
            SHARED_PA,
            0x1000,
            perms,
            MemAttr::from_bits(0xf),
            MemShareability::InnerShareable,
        )
        .ok()
    }

    fn unbacked(&self, l1_ipa: u64) -> Unbacked {
        self.inner.unbacked(l1_ipa)
    }
}

type Aliased = Service<GatedMemory, AliasedL0, HookedBackend<WriteProtectP1OnMap>>;

/// When the install of X through P2 (read-only) maps its leaf, L0
/// write-protects P1 and reports it (another thread's `l0_unmap` in that
/// window), then records what the shadow holds at X.
#[derive(Default)]
struct WriteProtectP1OnMap {
    service: OnceLock<Weak<Aliased>>,
    key: OnceLock<ContextKey>,
    after_unmap: Mutex<Option<Option<ShadowMapping>>>,
}

impl ShadowHooks for WriteProtectP1OnMap {
    fn map(&self, m: &ShadowMapping) -> Result<(), MapError> {
        if m.l2_ipa_base != X || m.perms.contains(Permissions::WRITE) {
            return Ok(());
        }
        let s = self.service.get().and_then(Weak::upgrade).expect("service");
        let w = s.worker();
        s.l0().p1_write_protected.store(true, Ordering::Release);
        s.l0_unmap(
            &w,
            IpaRange::new(P1, P1 + 0x1000).unwrap(),
            L0Change::WriteProtect,
        );
        let seen = s.shadow_lookup(&w, self.key.get().expect("key"), X);
        *self.after_unmap.lock().unwrap() = Some(seen);
        Ok(())
    }
}

/// Bounded: `l0_unmap` runs inside `map`, under the context's spin lock,
/// so a regression that makes it take that lock hangs instead of failing.
#[test]
fn an_l0_write_protect_during_an_aliased_rewrite_leaves_no_writable_leaf() {
    within(std::time::Duration::from_secs(60), scenario);
}

fn scenario() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(X, P1, 3, RW);
    let key = l1.key(1);
    let gated = GatedMemory::new(mem.clone(), l1.slot(X, 3));
    let l0 = AliasedL0 {
        inner: l0_map(),
        p1_write_protected: AtomicBool::new(false),
    };
    let config = config(4 << 20, 2);
    let hooks = Arc::new(WriteProtectP1OnMap::default());
    let backend = HookedBackend {
        pool: Arc::new(
            shadow_mmu::shadow_table::HeapFramePool::new(config.budget.frames, 1 << 40)
                .expect("pool"),
        ),
        hooks: hooks.clone(),
    };
    let s: Arc<Aliased> = Arc::new(Service::new(config, gated, l0, backend).expect("service"));
    hooks.service.set(Arc::downgrade(&s)).ok();
    hooks.key.set(key).ok();

    // The new-entry walker: held at X's level-3 descriptor until the old
    // entry's translate has installed and L1 has rewritten the entry.
    let new_walker = {
        let s = s.clone();
        std::thread::spawn(move || {
            let w = s.worker();
            pa_of(&s.translate(&w, &key, X, AccessKind::Read, &ABORT), X)
        })
    };
    wait_for(&s.memory().reached);
    let w = s.worker();
    assert_eq!(
        pa_of(&s.translate(&w, &key, X, AccessKind::Read, &ABORT), X),
        Some(SHARED_PA)
    );
    let old = s.shadow_lookup(&w, &key, X).expect("the leaf built on P1");
    assert!(old.perms.contains(Permissions::WRITE), "{old:?}");
    // L1 points X at P2 (the read-only alias of the same page).
    l1.map(X, P2, 3, RW);
    s.memory().open.store(true, Ordering::Release);
    assert_eq!(new_walker.join().unwrap(), Some(SHARED_PA));

    let seen = hooks
        .after_unmap
        .lock()
        .unwrap()
        .take()
        .expect("the install of X through P2 mapped its leaf");
    assert!(
        seen.is_none_or(|leaf| !leaf.perms.contains(Permissions::WRITE)),
        "after the write-protect of P1 was reported (l0_unmap returned), X still \
         holds the writable leaf built on P1's old mapping: {seen:?}"
    );
}
