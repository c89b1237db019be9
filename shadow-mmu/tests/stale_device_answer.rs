#![cfg(not(loom))]
//! Review 20 R20-2: the answers that install nothing (`Mmio`, `OutsideL1`)
//! come from L1's leaf too, so a translate whose walk read the leaf before
//! a TLBI of it must not give them after that TLBI returned: hv would
//! emulate a device access (or inject an abort) through a translation L1
//! had already invalidated. Without a race the answers stand.
use crate::common;
use common::*;
use ipc::tlbi::{Shareability, Tlbi, TlbiOp, TlbiParams};
use shadow_mmu::compose::{L0Map, L0Mapping, L0RegionMap, Unbacked};
use shadow_mmu::service::{HostBackend, Retry, Service, Translated};
use shadow_mmu::shadow_table::ShadowConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use walker::Granule;

/// L0's map of L1, which holds the first lookup of `gate`'s page until
/// `open` is set.
struct GatedL0 {
    inner: L0RegionMap,
    gate: u64,
    reached: AtomicBool,
    open: AtomicBool,
}

impl L0Map for GatedL0 {
    fn lookup(&self, l1_ipa: u64) -> Option<L0Mapping> {
        if l1_ipa & !0xfff == self.gate && !self.reached.swap(true, Ordering::SeqCst) {
            wait_for(&self.open);
        }
        self.inner.lookup(l1_ipa)
    }
    fn unbacked(&self, l1_ipa: u64) -> Unbacked {
        self.inner.unbacked(l1_ipa)
    }
}

const PAGE: u64 = 0x7000;
/// An L1 IPA L0 emulates (a device) and one nothing backs.
const DEVICE: u64 = MMIO_BASE + 0x3000;
const NOWHERE: u64 = 0x40_0000_0000;

/// Translates a read of `PAGE`, which L1 maps to `target`; with `race`,
/// L1 moves the page to RAM and its IPAS2E1 returns while the translate
/// is between its walk and its answer.
fn answer(target: u64, race: bool) -> Translated {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(PAGE, target, 3, RW);
    let config = config(16 << 20, 2);
    let backend =
        HostBackend::recording(config.budget.frames, ShadowConfig::default()).expect("pool");
    let gated = GatedL0 {
        inner: l0_map(),
        gate: target,
        reached: AtomicBool::new(false),
        open: AtomicBool::new(!race),
    };
    let service = Service::new(config, mem, gated, backend).expect("service");
    let key = l1.key(1);
    std::thread::scope(|scope| {
        let faulting = scope.spawn(|| {
            let worker = service.worker();
            service.translate(&worker, &key, PAGE, walker::AccessKind::Read, &ABORT)
        });
        if race {
            wait_for(&service.l0().reached);
            let worker = service.worker();
            l1.unmap(PAGE, 3);
            l1.map(PAGE, 0x8000_0000, 3, RW);
            let tlbi = Tlbi {
                op: TlbiOp::Ipas2e1,
                shareability: Shareability::InnerShareable,
                nxs: false,
            };
            let scope = tlbi
                .decode(PAGE >> 12, TlbiParams::default())
                .expect("valid TLBI");
            service.invalidate(&worker, 1, &scope);
            service.l0().open.store(true, Ordering::SeqCst);
        }
        faulting.join().expect("translate")
    })
}

/// A gate that never opens fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn no_device_answer_from_a_leaf_invalidated_before_the_answer() {
    within(LIMIT, || {
        assert_eq!(
            answer(DEVICE, true),
            Translated::Retry(Retry::InvalidationRaced)
        )
    });
}

#[test]
fn no_outside_answer_from_a_leaf_invalidated_before_the_answer() {
    within(LIMIT, || {
        assert_eq!(
            answer(NOWHERE, true),
            Translated::Retry(Retry::InvalidationRaced)
        )
    });
}

#[test]
fn without_an_invalidation_the_answers_stand() {
    within(LIMIT, || {
        assert_eq!(answer(DEVICE, false), Translated::Mmio { l1_ipa: DEVICE });
        assert_eq!(
            answer(NOWHERE, false),
            Translated::OutsideL1 { l1_ipa: NOWHERE }
        );
    });
}
