#![cfg(not(loom))]
//! Review 59 R59-7: L0 changes its own map of L1's memory with
//! break-before-make (the old entry invalid, TLBI, `l0_unmap`, the new
//! entry). A translate whose L0 lookup falls between the break and the make
//! finds no mapping, but the memory is L1's: a hardware walk of L0's table
//! would take a stage-2 translation fault to L0, which waits for its own
//! change and resumes the guest. So the service answers
//! `Retry(L0Changing)`: not `OutsideL1` (an external abort for L2), and
//! nothing installed or cached. Once L0's new entry is in, the same fault
//! maps through it.
use crate::common;
use common::*;
use ipc::{IpaRange, L0Change};
use shadow_mmu::compose::{L0Map, L0Mapping, L0RegionMap, Unbacked};
use shadow_mmu::service::{HostBackend, Retry, Service, Translated};
use shadow_mmu::shadow_table::ShadowConfig;
use std::sync::atomic::{AtomicU64, Ordering};
use walker::{AccessKind, Granule};

/// L0's map of L1 in which L0 is moving one 4 KiB page: while `moving` is
/// set the page has no mapping (its old entry broken, the new one not yet
/// written) and `unbacked` says so; otherwise the page is at `pa`.
struct MovingL0 {
    inner: L0RegionMap,
    page: u64,
    /// The page's PA now; 0 while L0 is between its break and its make.
    pa: AtomicU64,
}

impl L0Map for MovingL0 {
    fn lookup(&self, l1_ipa: u64) -> Option<L0Mapping> {
        let inner = self.inner.lookup(l1_ipa)?;
        if l1_ipa & !0xfff != self.page {
            if !inner.contains(self.page) {
                return Some(inner);
            }
            // L0 maps the moving page on its own: its neighbours in the
            // same block are pages too.
            let base = l1_ipa & !0xfff;
            return L0Mapping::new(
                base,
                inner.pa_base() + (base - inner.ipa_base()),
                0x1000,
                inner.permissions(),
                inner.mem_attr(),
                inner.shareability(),
            )
            .ok();
        }
        match self.pa.load(Ordering::SeqCst) {
            0 => None,
            pa => L0Mapping::new(
                self.page,
                pa,
                0x1000,
                inner.permissions(),
                inner.mem_attr(),
                inner.shareability(),
            )
            .ok(),
        }
    }

    fn unbacked(&self, l1_ipa: u64) -> Unbacked {
        if l1_ipa & !0xfff == self.page {
            Unbacked::L0Changing
        } else {
            self.inner.unbacked(l1_ipa)
        }
    }
}

const L2_PAGE: u64 = 0x7000;
/// L1's page behind [`L2_PAGE`], which L0 moves.
const L1_PAGE: u64 = 0x8000_0000;
const OLD_PA: u64 = PA_OFFSET + L1_PAGE;
const NEW_PA: u64 = 0x20_0000_0000;

#[test]
fn l1_memory_mid_l0_change_is_retried_never_faulted_or_installed() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(L2_PAGE, L1_PAGE, 3, RW);
    let config = config(16 << 20, 2);
    let backend =
        HostBackend::recording(config.budget.frames, ShadowConfig::default()).expect("pool");
    let l0 = MovingL0 {
        inner: l0_map(),
        page: L1_PAGE,
        pa: AtomicU64::new(0),
    };
    let service = Service::new(config, mem, l0, backend).expect("service");
    let worker = service.worker();
    let key = l1.key(1);
    let read = |l2_ipa| service.translate(&worker, &key, l2_ipa, AccessKind::Read, &ABORT);

    // L0's break-before-make under way from the first fault on: a walk of
    // L1's table (a miss), then no L0 mapping.
    let before = service.stats();
    assert_eq!(read(L2_PAGE + 0x18), Translated::Retry(Retry::L0Changing));
    let after = service.stats();
    assert_eq!(after.misses - before.misses, 1);
    // The leaf's output (L1's RAM) is what L0 is changing, not a table
    // page: counted as that kind only.
    assert_eq!(after.l0_changing_output - before.l0_changing_output, 1);
    assert_eq!(after.l0_changing_table, before.l0_changing_table);
    assert_eq!(after.raced, before.raced);
    // Nothing installed, nothing cached: no shadow leaf, no walk result.
    assert_eq!(service.shadow_lookup(&worker, &key, L2_PAGE), None);
    assert_eq!(service.shadow_leaves(), 0);
    assert_eq!(service.reverse_map_records(), 0);
    assert_eq!(service.cache_entries(&worker).0, 0);
    // Asked again, the same: a retry is not remembered as anything.
    assert_eq!(read(L2_PAGE + 0x20), Translated::Retry(Retry::L0Changing));
    assert_eq!(
        service.stats().l0_changing_output - before.l0_changing_output,
        2
    );

    // L0's make: the page at its new PA. The same fault now maps.
    service.l0().pa.store(OLD_PA, Ordering::SeqCst);
    let Translated::Mapped(m) = read(L2_PAGE + 0x18) else {
        panic!("the page must map once L0's entry is in");
    };
    assert_eq!(
        (m.l2_ipa_base, m.pa_base, m.size),
        (L2_PAGE, OLD_PA, 0x1000)
    );
    assert_eq!(
        service
            .shadow_lookup(&worker, &key, L2_PAGE)
            .map(|m| m.pa_base),
        Some(OLD_PA)
    );

    // L0 moves the page again: break (the entry invalid, then the
    // service's `l0_unmap`), L2 faults meanwhile (a walk-cache hit now),
    // make (the new PA).
    service.l0().pa.store(0, Ordering::SeqCst);
    let range = IpaRange::new(L1_PAGE, L1_PAGE + 0x1000).expect("range");
    assert_eq!(service.l0_unmap(&worker, range, L0Change::Unmap), 1);
    let hits = service.stats().hits;
    assert_eq!(read(L2_PAGE + 0x18), Translated::Retry(Retry::L0Changing));
    assert_eq!(service.stats().hits - hits, 1, "the hit path composes too");
    assert_eq!(service.shadow_lookup(&worker, &key, L2_PAGE), None);
    assert_eq!(service.shadow_leaves(), 0);
    service.l0().pa.store(NEW_PA, Ordering::SeqCst);
    let Translated::Mapped(m) = read(L2_PAGE + 0x18) else {
        panic!("the page must map at its new PA");
    };
    assert_eq!(m.pa_base, NEW_PA);
    let after = service.stats();
    assert_eq!(after.l0_changing_output - before.l0_changing_output, 3);
    assert_eq!(after.l0_changing_table, before.l0_changing_table);
}

/// The other unbacked answers are untouched: a device L0 emulates is
/// `Mmio`, nothing at all is `OutsideL1`, and neither counts as an L0
/// change.
#[test]
fn devices_and_nothing_keep_their_answers() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let device = MMIO_BASE + 0x3000;
    let nowhere = 0x40_0000_0000;
    l1.map(L2_PAGE, device, 3, RW);
    l1.map(L2_PAGE + 0x1000, nowhere, 3, RW);
    let config = config(16 << 20, 2);
    let backend =
        HostBackend::recording(config.budget.frames, ShadowConfig::default()).expect("pool");
    let l0 = MovingL0 {
        inner: l0_map(),
        page: L1_PAGE,
        pa: AtomicU64::new(0),
    };
    let service = Service::new(config, mem, l0, backend).expect("service");
    let worker = service.worker();
    let key = l1.key(1);
    let read = |l2_ipa| service.translate(&worker, &key, l2_ipa, AccessKind::Read, &ABORT);
    assert_eq!(read(L2_PAGE), Translated::Mmio { l1_ipa: device });
    assert_eq!(
        read(L2_PAGE + 0x1000),
        Translated::OutsideL1 { l1_ipa: nowhere }
    );
    let stats = service.stats();
    assert_eq!((stats.l0_changing_output, stats.l0_changing_table), (0, 0));
}
