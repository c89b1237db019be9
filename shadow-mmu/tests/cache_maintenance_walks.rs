//! Cache maintenance instructions and their stage-1 walks through the
//! service's ipc adapter, as hv asks (review 36: R36-1, R36-2).
#![cfg(not(loom))]

use crate::common;

use common::*;
use ipc::message::{
    decode_reply, AccessKind as IpcAccess, ContextKey as IpcKey, Permissions, Reply, Request,
    TranslateOutcome, TranslateRequest, VcpuId,
};
use walker::Granule;

const ESR_WNR: u32 = 1 << 6;
const ESR_S1PTW: u32 = 1 << 7;
const ESR_CM: u32 = 1 << 8;
/// Data abort from a lower EL, IL = 1.
const DABT: u32 = 0x24 << 26 | 1 << 25;
/// S2AP = 0b10: write-only (AF, inner shareable, normal write-back).
const WO: u64 = (1 << 10) | (3 << 8) | (2 << 6) | (0xf << 2);
/// DBM (bit 51), S2AP = 0b01: writable-clean with hardware dirty state.
const DBM_CLEAN: u64 = RO | (1 << 51);
/// VTCR_EL2.HA (bit 21) and HD (bit 22).
const VTCR_HA_HD: u64 = (1 << 21) | (1 << 22);

fn ask(s: &TestService, l1: &L1Tables, vtcr: u64, ipa: u64, access: IpcAccess, esr: u32) -> Reply {
    let record = Request::Translate(TranslateRequest {
        context: IpcKey {
            vmid: 1,
            vttbr: l1.root | (1 << 48),
            vtcr,
        },
        l2_ipa: ipa,
        access,
        esr,
        far: 0xffff_8000_0000_0000 | (ipa & 0xfff),
    })
    .encode(VcpuId(0), 1);
    let w = s.worker();
    decode_reply(&s.answer(&w, &record))
        .expect("well-formed reply")
        .message
}

/// Review 36 R36-1 (was a livelock). L1 maps the page holding L2's stage-1 table
/// write-only (S2AP 0b10). An L2 store to it installs a write-only shadow
/// entry. Then a DC CVAC (or IC IVAU, or AT S1E1R) whose stage-1 walk
/// reads that table faults on the shadow: a permission fault with
/// S1PTW = 1, CM = 1 and WnR = 1 (always 1 with CM), ESR 0x920001cf.
/// hv's `abort_access(0x9200_01cf, EL1h)` labels it `Write` (tested in
/// hv/src/nested/tests.rs `cache_maintenance_is_not_a_write`). Walked as
/// a data write it was checked for W only, found it, and the service
/// answered `Mapped` with the same write-only entry: L2 re-executed the
/// instruction and took the same fault forever. AArch64.S2CheckPermissions (AccessType_TTW) needs R
/// first: L1's stage 2 gives a permission fault, to be injected with
/// S1PTW, CM, WnR, on the first request.
#[test]
fn a_cache_maintenance_walk_on_a_write_only_table_page_is_injected_not_mapped() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x7000, 0x8000_7000, 3, WO);
    let s = service(mem);
    let vtcr = l1.vtcr();
    // The store that installs the write-only shadow entry.
    let store = ask(
        &s,
        &l1,
        vtcr,
        0x7008,
        IpcAccess::Write,
        DABT | ESR_WNR | 0x07,
    );
    assert!(
        matches!(store, Reply::Translate(TranslateOutcome::Mapped(_))),
        "{store:?}"
    );
    let trapped = DABT | ESR_CM | ESR_WNR | ESR_S1PTW | 0x0f;
    let reply = ask(&s, &l1, vtcr, 0x7000, IpcAccess::Write, trapped);
    let Reply::Translate(TranslateOutcome::Inject(i)) = reply else {
        panic!("the walk of a cache maintenance instruction on a write-only table page: {reply:?}")
    };
    assert_eq!(i.esr, u64::from(trapped), "{i:?}");
    // A store to the page is still allowed: a data write needs W only.
    let store = ask(
        &s,
        &l1,
        vtcr,
        0x7010,
        IpcAccess::Write,
        DABT | ESR_WNR | 0x0f,
    );
    assert!(
        matches!(store, Reply::Translate(TranslateOutcome::Mapped(_))),
        "{store:?}"
    );
}

/// Review 36 R36-2 (was a livelock). L1 has VTCR_EL2.HA/HD and a DBM
/// descriptor that is writable-clean (S2AP 0b01, DBM 1). DC IVAC at EL1
/// needs W; S2ApplyOutputPerms makes the DBM entry writable, and
/// AArch64.SetDirtyState never updates the descriptor for AccessType_DC.
/// The composed shadow entry, from the clean S2AP, was read-only, so the
/// service answered `L0Denied` although L0 maps the page read-write, and hv
/// resumed L2 into the same fault forever. The service now walks that DC
/// IVAC again as a write (a documented deviation at `Service::translate`):
/// L1's descriptor becomes dirty and the entry writable, so the second
/// request is `Mapped` with write permission and the third never comes.
#[test]
fn dc_ivac_to_a_dbm_clean_page_is_mapped_writable() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x5000, 0x8000_9000, 3, DBM_CLEAN);
    let s = service(mem.clone());
    let vtcr = l1.vtcr() | VTCR_HA_HD;
    // First DC IVAC: translation fault on the shadow, walked as a clean.
    let first = ask(
        &s,
        &l1,
        vtcr,
        0x5040,
        IpcAccess::CacheMaintenance,
        DABT | ESR_CM | ESR_WNR | 0x07,
    );
    let Reply::Translate(TranslateOutcome::Mapped(m)) = first else {
        panic!("{first:?}")
    };
    assert!(!m.permissions.contains(Permissions::WRITE), "{m:?}");
    let slot = l1.slot(0x5000, 3);
    assert_eq!(
        mem.read(slot) & (1 << 7),
        0,
        "a clean leaves L1's entry clean"
    );
    // The read-only entry denies DC IVAC: a permission fault, walked as
    // DC IVAC, then again as a write.
    let trapped = DABT | ESR_CM | ESR_WNR | 0x0f;
    let reply = ask(&s, &l1, vtcr, 0x5040, IpcAccess::CacheMaintenance, trapped);
    let Reply::Translate(TranslateOutcome::Mapped(m)) = reply else {
        panic!("DC IVAC to a DBM-clean page L0 maps read-write: {reply:?}")
    };
    assert!(
        m.permissions
            .contains(Permissions::READ.union(Permissions::WRITE)),
        "{m:?}"
    );
    assert_ne!(mem.read(slot) & (1 << 7), 0, "L1's entry is dirty");
    // Without hardware dirty state the DBM bit grants nothing: L1's
    // permission fault, CM and WnR.
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x5000, 0x8000_9000, 3, DBM_CLEAN);
    let s = service(mem.clone());
    let reply = ask(
        &s,
        &l1,
        l1.vtcr(),
        0x5040,
        IpcAccess::CacheMaintenance,
        trapped,
    );
    let Reply::Translate(TranslateOutcome::Inject(i)) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(i.esr, u64::from(trapped));
    assert_eq!(mem.read(l1.slot(0x5000, 3)) & (1 << 7), 0);
}

/// DC CVAC at EL1 to a page L1 maps with no permission
/// at all (S2AP 0b00, XN 0b10) needs none: the service installs the
/// permissionless entry and answers `Mapped` (a clean then runs).
#[test]
fn a_clean_of_a_page_without_any_permission_is_mapped() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let none = (1 << 10) | (3 << 8) | (0xf << 2) | (2u64 << 53);
    l1.map(0x3000, 0x8000_3000, 3, none);
    let s = service(mem);
    let reply = ask(
        &s,
        &l1,
        l1.vtcr(),
        0x3000,
        IpcAccess::CacheMaintenance,
        DABT | ESR_CM | ESR_WNR | 0x07,
    );
    assert!(
        matches!(reply, Reply::Translate(TranslateOutcome::Mapped(_))),
        "{reply:?}"
    );
    // DC IVAC then faults on it: L1's write permission fault, CM, WnR.
    let reply = ask(
        &s,
        &l1,
        l1.vtcr(),
        0x3000,
        IpcAccess::CacheMaintenance,
        DABT | ESR_CM | ESR_WNR | 0x0f,
    );
    let Reply::Translate(TranslateOutcome::Inject(i)) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(i.esr, u64::from(DABT | ESR_CM | ESR_WNR | 0x0f));
}
