#![cfg(not(loom))]
//! Review 20 R20-1: a hit whose cached leaf is evicted between the lock-free
//! lookup and the install must put the leaf back (`still_holds` false),
//! or the shadow piece it installs outlives the cached block: a later page
//! TLBI elsewhere in the block leaves it mapped.
use crate::common;
use common::*;
use ipc::message::L0Change;
use ipc::tlbi::{IpaRange, Shareability, Tlbi, TlbiOp, TlbiParams};
use shadow_mmu::compose::{L0Map, L0Mapping, L0RegionMap, Unbacked};
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::{HostBackend, Service, Translated, Worker};
use shadow_mmu::shadow_table::ShadowConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use walker::Granule;

const BLOCK_L1: u64 = 0x8000_0000;

/// L0 backs L1 with 4 KiB pages; the first lookup in the gated block waits
/// for `open` once `armed`.
struct GatedL0 {
    inner: L0RegionMap,
    armed: AtomicBool,
    reached: AtomicBool,
    open: AtomicBool,
}

impl L0Map for GatedL0 {
    fn lookup(&self, l1_ipa: u64) -> Option<L0Mapping> {
        if self.armed.load(Ordering::SeqCst)
            && (BLOCK_L1..BLOCK_L1 + (2 << 20)).contains(&l1_ipa)
            && !self.reached.swap(true, Ordering::SeqCst)
        {
            wait_for(&self.open);
        }
        let m = self.inner.lookup(l1_ipa)?;
        let page = l1_ipa & !0xfff;
        L0Mapping::new(
            page,
            m.pa_base() + (page - m.ipa_base()),
            4096,
            m.permissions(),
            m.mem_attr(),
            m.shareability(),
        )
        .ok()
    }
    fn unbacked(&self, l1_ipa: u64) -> Unbacked {
        self.inner.unbacked(l1_ipa)
    }
}

type Gated = Service<L1Memory, GatedL0, HostBackend>;

/// A read fault on `ipa`.
fn rd(s: &Gated, w: &Worker, key: &ContextKey, ipa: u64) -> Translated {
    s.translate(w, key, ipa, walker::AccessKind::Read, &ABORT)
}

/// The gates make the interleaving deterministic; one that never opens
/// fails the test instead of hanging it.
#[test]
fn an_evicted_hit_is_cached_again_and_a_block_tlbi_removes_its_piece() {
    within(std::time::Duration::from_secs(60), scenario);
}

fn scenario() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let block = 0x20_0000u64;
    l1.map(block, BLOCK_L1, 2, RW);
    for i in 0..64u64 {
        l1.map(0x60_0000 + (i << 12), 0x9000_0000 + (i << 12), 3, RW);
    }
    let mut config = config(16 << 20, 2);
    // One bucket of leaves (and the stash, review 38): inserts soon evict.
    config.budget.capacity.leaves_per_context = 4;
    let backend =
        HostBackend::recording(config.budget.frames, ShadowConfig::default()).expect("pool");
    let gated = GatedL0 {
        inner: l0_map(),
        armed: AtomicBool::new(false),
        reached: AtomicBool::new(false),
        open: AtomicBool::new(false),
    };
    let s = Service::new(config, mem, gated, backend).expect("service");
    let w = s.worker();
    let key = l1.key(1);
    assert!(matches!(rd(&s, &w, &key, block), Translated::Mapped(_)));
    // L0 takes the page back: the shadow piece goes, the walk result stays.
    s.l0_unmap(
        &w,
        IpaRange::new(BLOCK_L1, BLOCK_L1 + 4096).unwrap(),
        L0Change::Unmap,
    );
    assert!(s.shadow_lookup(&w, &key, block).is_none());
    assert!(
        s.lookup(&key, block, &w.pin()).is_some(),
        "the walk result stays"
    );
    s.l0().armed.store(true, Ordering::SeqCst);
    std::thread::scope(|scope| {
        let a = scope.spawn(|| {
            let w = s.worker();
            rd(&s, &w, &key, block)
        });
        wait_for(&s.l0().reached);
        // Another vCPU's faults evict the hit's cached leaf.
        let mut i = 0;
        while s.lookup(&key, block, &w.pin()).is_some() {
            assert!(i < 64, "never evicted");
            let _ = rd(&s, &w, &key, 0x60_0000 + (i << 12));
            i += 1;
        }
        s.l0().open.store(true, Ordering::SeqCst);
        assert!(matches!(a.join().unwrap(), Translated::Mapped(_)));
    });
    assert!(s.shadow_lookup(&w, &key, block).is_some());
    assert!(
        s.lookup(&key, block, &w.pin()).is_some(),
        "a shadow piece without its cached block"
    );
    // L1 moves the block and invalidates another page of it: the old piece
    // at `block` must go too (the TLBI covers the whole block entry).
    l1.map(block, BLOCK_L1 + (2 << 20), 2, RW);
    let tlbi = Tlbi {
        op: TlbiOp::Ipas2e1,
        shareability: Shareability::InnerShareable,
        nxs: false,
    };
    let scope = tlbi
        .decode((block + 0x1000) >> 12, TlbiParams::default())
        .unwrap();
    s.invalidate(&w, 1, &scope);
    assert_eq!(
        s.shadow_lookup(&w, &key, block),
        None,
        "a stale shadow piece after the TLBI of its block returned"
    );
}
