//! L1 rewrites a live stage-2 entry (L2 page X: L1 page P1 -> P2, without
//! break-before-make or a TLBI) while one vCPU's translate walked the new
//! entry and another's, the old one, installed first; L0 unmaps P1 while
//! the second install runs. Once that `l0_unmap` returns, no shadow leaf
//! may map P1's page (L0 frees it then). The second install used to
//! replace the first's record (on P1) with its own (on P2) before replacing
//! the leaf, so an `l0_unmap` of P1 in between found no record and returned
//! while the leaf on P1 was still mapped (review 16 F3). Now a same-range
//! leaf on another page goes, with its record, before the new record is
//! inserted: this test fails without that (`unmap_other_shapes`).
#![cfg(not(loom))]

use crate::common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use common::*;
use ipc::message::L0Change;
use ipc::tlbi::IpaRange;
use shadow_mmu::compose::ShadowMapping;
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::Service;
use shadow_mmu::shadow_table::MapError;
use walker::{AccessKind, Granule};

const X: u64 = 0x1000_0000;
const P1: u64 = 0x8000_0000;
const P2: u64 = 0x8000_1000;

type Gated = Service<GatedMemory, shadow_mmu::compose::L0RegionMap, HookedBackend<UnmapP1OnMap>>;

/// When the install of X on P2 maps its leaf, L0 unmaps P1 (another
/// thread's `l0_unmap` in that window) and records what a lookup of X
/// then finds.
#[derive(Default)]
struct UnmapP1OnMap {
    service: OnceLock<Weak<Gated>>,
    key: OnceLock<ContextKey>,
    after_unmap: Mutex<Option<Option<ShadowMapping>>>,
}

impl ShadowHooks for UnmapP1OnMap {
    fn map(&self, m: &ShadowMapping) -> Result<(), MapError> {
        if m.pa_base != PA_OFFSET + P2 {
            return Ok(());
        }
        let s = self.service.get().and_then(Weak::upgrade).expect("service");
        let w = s.worker();
        s.l0_unmap(&w, IpaRange::new(P1, P1 + 0x1000).unwrap(), L0Change::Unmap);
        let seen = s.shadow_lookup(&w, self.key.get().expect("key"), X);
        *self.after_unmap.lock().unwrap() = Some(seen);
        Ok(())
    }
}

/// Bounded: `l0_unmap` runs inside `map`, under the context's spin lock,
/// so a regression that makes it take that lock hangs instead of failing.
#[test]
fn an_l0_unmap_during_a_rewritten_entrys_install_leaves_no_leaf_on_the_old_page() {
    within(std::time::Duration::from_secs(60), scenario);
}

fn scenario() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(X, P1, 3, RW);
    let key = l1.key(1);
    let gated = GatedMemory::new(mem.clone(), l1.slot(X, 3));
    let config = config(4 << 20, 2);
    let hooks = Arc::new(UnmapP1OnMap::default());
    let backend = HookedBackend {
        pool: Arc::new(
            shadow_mmu::shadow_table::HeapFramePool::new(config.budget.frames, 1 << 40)
                .expect("pool"),
        ),
        hooks: hooks.clone(),
    };
    let s: Arc<Gated> = Arc::new(Service::new(config, gated, l0_map(), backend).expect("service"));
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
        Some(PA_OFFSET + P1)
    );
    l1.map(X, P2, 3, RW);
    s.memory().open.store(true, Ordering::Release);
    let _ = new_walker.join().unwrap();

    let seen = hooks
        .after_unmap
        .lock()
        .unwrap()
        .take()
        .expect("the install of X on P2 mapped its leaf");
    assert!(
        seen.is_none_or(|leaf| leaf.pa_base != PA_OFFSET + P1),
        "after the l0_unmap of P1 returned, X still maps P1's page: {seen:?}"
    );
}
