//! L0 maps a page of L1's stage-2 tables but its own stage 2 denies the
//! walk's access to it: no read (L0 revoked access to the page), or no
//! write while L1's VTCR_EL2.HA asks for the hardware AF update there (L0
//! write-protects the page, say for its dirty log). L1 did nothing wrong:
//! by the Arm ARM's two-stage model it is L0's own stage-2 permission
//! fault on the walk, so the answer is `L0Denied` naming L1's table, the
//! descriptor's L1 IPA and whether the read or the update was denied,
//! never `Inject` (the external abort on the walk that treating the page
//! as outside L1's memory, or as read-only to L1, gave). Nothing is
//! cached or installed; once L0 gives the permission back the same fault
//! translates, and the update is made in L1's table.
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use std::sync::atomic::Ordering;

use common::*;
use ipc::message::{
    decode_reply, AccessKind as IpcAccess, DeniedAccess as IpcDenied, L0Change, L0Denial, Reply,
    Request, TranslateOutcome, TranslateRequest, VcpuId,
};
use ipc::tlbi::{InvalidateScope, IpaRange};
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::{DeniedAccess, Translated};
use walker::{AccessKind, Endianness, Granule, MemoryError};

/// L1's memory with a page whose reads L0 denies
/// (`RefusedPages::every_access`) and one whose writes it denies
/// (`RefusedPages::updates`).
fn denying_memory(mem: L1Memory) -> RefusedPages {
    RefusedPages::new(mem, MemoryError::HostDenied)
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

fn page(address: u64) -> IpaRange {
    let base = address & !0xfff;
    IpaRange::new(base, base + 0x1000).unwrap()
}

/// L0 maps the page of L1's level-3 table (and, next, of its level-2
/// table) without read permission: `L0Denied` with the descriptor's L1
/// IPA and the read, for reads and writes alike; nothing cached or
/// installed. With the read allowed again the fault maps.
#[test]
fn a_table_page_l0_maps_without_read_is_l0_denied_not_an_abort() {
    let mem = L1Memory::new();
    let (l1, key) = l1_tables(&mem, RW, false);
    let s = service_with(denying_memory(mem), 16 << 20, 8);
    let w = s.worker();
    for level in [3, 2] {
        let descriptor = l1.slot(L2_IPA, level);
        s.memory()
            .every_access
            .store(descriptor & !0xfff, Ordering::SeqCst);
        for access in [AccessKind::Read, AccessKind::Write] {
            let t = s.translate(&w, &key, L2_IPA, access, &ABORT);
            assert_eq!(
                t,
                Translated::L0Denied {
                    l1_ipa: descriptor,
                    denied: DeniedAccess::L1TableRead,
                },
                "level {level} {access:?}"
            );
        }
        assert_eq!(s.shadow_lookup(&w, &key, L2_IPA), None, "nothing installed");
        assert!(s.lookup(&key, L2_IPA, &w.pin()).is_none(), "nothing cached");
        s.memory().every_access.store(NO_PAGE, Ordering::SeqCst);
    }
    let t = s.translate(&w, &key, L2_IPA, AccessKind::Write, &ABORT);
    assert_eq!(pa_of(&t, L2_IPA), Some(PA_OFFSET + L1_IPA + 8), "{t:?}");
}

/// VTCR_EL2.HA, L1's leaf with AF = 0, its table page L0 maps read-only:
/// the walk's AF update is denied, `L0Denied` with the leaf descriptor's
/// L1 IPA and the update; AF stays clear, nothing installed. L0 gives
/// write permission back (and drops what it built on the page, its
/// `l0_unmap`): the retried fault maps and AF is set in L1's table.
#[test]
fn an_af_update_l0_write_protects_is_l0_denied_then_made_once_allowed() {
    let mem = L1Memory::new();
    let (l1, key) = l1_tables(&mem, RW & !AF, true);
    let leaf = l1.slot(L2_IPA, 3);
    let s = service_with(denying_memory(mem.clone()), 16 << 20, 8);
    let w = s.worker();
    s.memory().updates.store(leaf & !0xfff, Ordering::SeqCst);
    for round in 0..2 {
        let t = s.translate(&w, &key, L2_IPA, AccessKind::Read, &ABORT);
        assert_eq!(
            t,
            Translated::L0Denied {
                l1_ipa: leaf,
                denied: DeniedAccess::L1TableUpdate,
            },
            "round {round}"
        );
    }
    assert_eq!(mem.read(leaf) & AF, 0, "nothing written");
    assert_eq!(s.shadow_lookup(&w, &key, L2_IPA), None);
    // L0 resolves its own fault.
    s.memory().updates.store(NO_PAGE, Ordering::SeqCst);
    s.l0_unmap(&w, page(leaf), L0Change::Unmap);
    let t = s.translate(&w, &key, L2_IPA, AccessKind::Read, &ABORT);
    assert_eq!(pa_of(&t, L2_IPA), Some(PA_OFFSET + L1_IPA + 8), "{t:?}");
    assert_ne!(mem.read(leaf) & AF, 0, "AF set in L1's table");
    // Without HA the same leaf is L1's own access flag fault: injected.
    let mem = L1Memory::new();
    let (_, key) = l1_tables(&mem, RW & !AF, false);
    let s = service_with(denying_memory(mem), 16 << 20, 8);
    let t = s.translate(&s.worker(), &key, L2_IPA, AccessKind::Read, &ABORT);
    assert!(matches!(t, Translated::Inject(_)), "{t:?}");
}

/// Through the ipc adapter: an `L0Denied` reply naming L1's table, the
/// descriptor's L1 IPA, read or update, as the record hv decodes.
#[test]
fn the_table_denial_reaches_hv_as_an_l0_denied_reply() {
    let mem = L1Memory::new();
    let (l1, key) = l1_tables(&mem, RW & !AF, true);
    let leaf = l1.slot(L2_IPA, 3);
    let level2 = l1.slot(L2_IPA, 2);
    assert_eq!(key.vtcr & VTCR_HA, VTCR_HA);
    let s = service_with(denying_memory(mem), 16 << 20, 8);
    let w = s.worker();
    let ask = |seq: u64| {
        let record = Request::Translate(TranslateRequest {
            context: ipc::ContextKey::new(
                l1.root | 1 << 48,
                l1.vtcr() | VTCR_HA,
                s.l1_vmid_width(),
            ),
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
        Reply::Translate(TranslateOutcome::L0Denied(L0Denial {
            l1_ipa: level2,
            denied: IpcDenied::L1TableRead,
        }))
    );
    s.memory().every_access.store(NO_PAGE, Ordering::SeqCst);
    s.memory().updates.store(leaf & !0xfff, Ordering::SeqCst);
    assert_eq!(
        ask(2),
        Reply::Translate(TranslateOutcome::L0Denied(L0Denial {
            l1_ipa: leaf,
            denied: IpcDenied::L1TableUpdate,
        }))
    );
}

/// Review 60 R60-2: a walk that starts below a cached path and is denied
/// at the first level it reads from memory is a partial walk, as the same
/// walk ending in a fault there is: the service's walk counts (which the
/// fault-rate verdicts add up) do not call it a full walk. With the path
/// gone (a TLBI of the whole VMID) the same denial is a full walk.
#[test]
fn a_denial_below_a_cached_path_counts_as_a_partial_walk() {
    let mem = L1Memory::new();
    let (l1, key) = l1_tables(&mem, RW, false);
    // A neighbour in the same level-3 table, walked first: its walk caches
    // the path down to that table.
    let neighbour = L2_IPA + 0x1000;
    l1.map(neighbour, L1_IPA + 0x1000, 3, RW);
    let s = service_with(denying_memory(mem), 16 << 20, 8);
    let w = s.worker();
    let t = s.translate(&w, &key, neighbour, AccessKind::Read, &ABORT);
    assert!(matches!(t, Translated::Mapped(_)), "{t:?}");
    let leaf = l1.slot(L2_IPA, 3);
    s.memory()
        .every_access
        .store(leaf & !0xfff, Ordering::SeqCst);
    let before = s.stats();
    let t = s.translate(&w, &key, L2_IPA, AccessKind::Read, &ABORT);
    assert_eq!(
        t,
        Translated::L0Denied {
            l1_ipa: leaf,
            denied: DeniedAccess::L1TableRead,
        }
    );
    let after = s.stats();
    assert_eq!(after.misses - before.misses, 1);
    assert_eq!(
        (
            after.walks - before.walks,
            after.partial_walks - before.partial_walks
        ),
        (0, 1),
        "a walk from the cached path, denied at its first read"
    );
    // No path: a full walk, denied at level 3 all the same.
    s.invalidate(&w, 1, &InvalidateScope::Vmid);
    let before = s.stats();
    let t = s.translate(&w, &key, L2_IPA, AccessKind::Read, &ABORT);
    assert!(matches!(t, Translated::L0Denied { .. }), "{t:?}");
    let after = s.stats();
    assert_eq!(
        (
            after.walks - before.walks,
            after.partial_walks - before.partial_walks
        ),
        (1, 0)
    );
}
