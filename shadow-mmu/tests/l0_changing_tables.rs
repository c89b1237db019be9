//! L0 is in the middle of changing its own map of a page of L1's stage-2
//! tables (its break-before-make: the old entry invalid, TLBI,
//! `l0_unmap`, the new entry) when the shadow walk reads a descriptor
//! there, or makes its hardware AF update there (VTCR_EL2.HA). L1 did
//! nothing wrong: a hardware walk would take L0's own stage-2 translation
//! fault, which L0 resolves by waiting for its change, so the answer is
//! `Retry(L0Changing)` (counted in `Stats::l0_changing_table`, apart from
//! `Stats::l0_changing_output`), as for L2's own
//! access mid-change (tests/l0_changing.rs), never `Inject` (the external
//! abort on the walk that treating the page as outside L1's memory gave).
//! Nothing is cached or installed, nothing written; once L0's change is
//! made the same fault translates.
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use std::sync::atomic::Ordering;

use common::*;
use ipc::message::{
    decode_reply, AccessKind as IpcAccess, Reply, Request, RetryReason, TranslateOutcome,
    TranslateRequest, VcpuId,
};
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::{Retry, Translated};
use walker::{AccessKind, Endianness, Granule, MemoryError};

/// L1's memory with a page L0 is changing (`RefusedPages::every_access`)
/// and one whose change began after the walk's read
/// (`RefusedPages::updates`: only its compare-and-swaps are refused).
fn changing_memory(mem: L1Memory) -> RefusedPages {
    RefusedPages::new(mem, MemoryError::HostChanging)
}

const L2_IPA: u64 = 0x1000_0008;
const L1_IPA: u64 = 0x8000_0000;
const AF: u64 = 1 << 10;
/// VTCR_EL2.HA.
const VTCR_HA: u64 = 1 << 21;

/// L1's table mapping L2_IPA's page read-write at L1_IPA, and the
/// context key (VTCR_EL2.HA as given).
fn l1_tables(mem: &L1Memory, leaf_attrs: u64, ha: bool) -> (L1Tables, ContextKey) {
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(L2_IPA, L1_IPA, 3, leaf_attrs);
    let vtcr = l1.vtcr() | if ha { VTCR_HA } else { 0 };
    let key = ContextKey::new(1, l1.root, vtcr, Endianness::Little);
    (l1, key)
}

/// L0 is changing the page of L1's level-3 table (and, next, of its
/// level-2 table): `Retry(L0Changing)` for reads and writes alike, each
/// counted; nothing cached or installed. Once the change is made the same
/// fault maps.
#[test]
fn a_table_page_mid_l0s_change_is_retried_not_an_abort() {
    for level in [3, 2] {
        let mem = L1Memory::new();
        let (l1, key) = l1_tables(&mem, RW, false);
        let s = service_with(changing_memory(mem), 16 << 20, 8);
        let w = s.worker();
        let descriptor = l1.slot(L2_IPA, level);
        s.memory()
            .every_access
            .store(descriptor & !0xfff, Ordering::SeqCst);
        for access in [AccessKind::Read, AccessKind::Write] {
            let before = s.stats();
            let t = s.translate(&w, &key, L2_IPA, access, &ABORT);
            assert_eq!(
                t,
                Translated::Retry(Retry::L0Changing),
                "level {level} {access:?}"
            );
            // A table page mid L0's change, not the leaf's output.
            let after = s.stats();
            assert_eq!(
                after.l0_changing_table - before.l0_changing_table,
                1,
                "counted"
            );
            assert_eq!(after.l0_changing_output, before.l0_changing_output);
        }
        assert_eq!(s.shadow_lookup(&w, &key, L2_IPA), None, "nothing installed");
        assert!(s.lookup(&key, L2_IPA, &w.pin()).is_none(), "nothing cached");
        // L0's change made: the same fault maps.
        s.memory().every_access.store(NO_PAGE, Ordering::SeqCst);
        let t = s.translate(&w, &key, L2_IPA, AccessKind::Write, &ABORT);
        assert_eq!(pa_of(&t, L2_IPA), Some(PA_OFFSET + L1_IPA + 8), "{t:?}");
    }
}

/// VTCR_EL2.HA, L1's leaf with AF = 0 in a table page whose change L0
/// began after the walk read it: the AF update meets the change,
/// `Retry(L0Changing)`; AF stays clear, nothing installed. Once the change
/// is made the retried fault maps and AF is set in L1's table.
#[test]
fn an_af_update_mid_l0s_change_is_retried_then_made() {
    let mem = L1Memory::new();
    let (l1, key) = l1_tables(&mem, RW & !AF, true);
    let leaf = l1.slot(L2_IPA, 3);
    let s = service_with(changing_memory(mem.clone()), 16 << 20, 8);
    let w = s.worker();
    s.memory().updates.store(leaf & !0xfff, Ordering::SeqCst);
    for round in 0..2 {
        let t = s.translate(&w, &key, L2_IPA, AccessKind::Read, &ABORT);
        assert_eq!(t, Translated::Retry(Retry::L0Changing), "round {round}");
    }
    let stats = s.stats();
    assert_eq!((stats.l0_changing_table, stats.l0_changing_output), (2, 0));
    assert_eq!(mem.read(leaf) & AF, 0, "nothing written");
    assert_eq!(s.shadow_lookup(&w, &key, L2_IPA), None);
    s.memory().updates.store(NO_PAGE, Ordering::SeqCst);
    let t = s.translate(&w, &key, L2_IPA, AccessKind::Read, &ABORT);
    assert_eq!(pa_of(&t, L2_IPA), Some(PA_OFFSET + L1_IPA + 8), "{t:?}");
    assert_ne!(mem.read(leaf) & AF, 0, "AF set in L1's table");
}

/// Through the ipc adapter: the `Retry(L0Changing)` reply (reason 4) hv
/// decodes and resumes L2 on.
#[test]
fn the_tables_change_reaches_hv_as_a_retry_l0_changing_reply() {
    let mem = L1Memory::new();
    let (l1, _) = l1_tables(&mem, RW, false);
    let level2 = l1.slot(L2_IPA, 2);
    let s = service_with(changing_memory(mem), 16 << 20, 8);
    let w = s.worker();
    let ask = |seq: u64| {
        let record = Request::Translate(TranslateRequest {
            context: ipc::ContextKey::new(l1.root | 1 << 48, l1.vtcr(), s.l1_vmid_width()),
            l2_ipa: L2_IPA,
            access: IpcAccess::Read,
            // A data abort from a lower EL, translation fault level 3.
            esr: 0x24 << 26 | 1 << 25 | 0x07,
            far: 0x7f00_0000_0008,
        })
        .encode(VcpuId(1), seq);
        decode_reply(&s.answer(&w, &record)).unwrap().message
    };
    s.memory()
        .every_access
        .store(level2 & !0xfff, Ordering::SeqCst);
    assert_eq!(
        ask(1),
        Reply::Translate(TranslateOutcome::Retry(RetryReason::L0Changing))
    );
    s.memory().every_access.store(NO_PAGE, Ordering::SeqCst);
    assert!(matches!(
        ask(2),
        Reply::Translate(TranslateOutcome::Mapped(_))
    ));
}
