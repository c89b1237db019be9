//! What L1 receives for a stage-2 fault of L2's access that L0 found by
//! walking L1's tables, through the ipc adapter (the path hv's vCPU
//! handler uses: hv/src/arch/nested.rs writes `Injection::esr` into L1's
//! ESR_EL2 unchanged). Review 31 R31-3: the injected ESR was the walk's
//! syndrome alone (ISV = 0, no SAS/SRT, CM = 0) although the trapped ESR
//! in the request had the instruction syndrome. Hardware running L1's
//! stage 2 reports it, and L1 needs it: Linux KVM's `io_mem_abort` cannot
//! emulate an access to a device L1 emulates without ISV/SRT.
#![cfg(not(loom))]

use crate::common;

use common::*;
use ipc::message::{
    decode_reply, AccessKind as IpcAccess, ContextKey as IpcKey, Reply, Request, TranslateOutcome,
    TranslateRequest, VcpuId,
};
use walker::Granule;

const ESR_ISV: u32 = 1 << 24;
const ESR_WNR: u32 = 1 << 6;
const ESR_S1PTW: u32 = 1 << 7;
/// ISV with SAS, SSE, SRT, SF, AR.
const INSTRUCTION_SYNDROME: u32 = 0x7ff << 14;
/// Data abort from a lower EL, IL = 1.
const DABT: u32 = 0x24 << 26 | 1 << 25;

/// A translate request for L2 IPA `ipa` whose trapped ESR is `esr`.
fn request(l1: &L1Tables, ipa: u64, access: IpcAccess, esr: u32) -> ipc::message::Record {
    Request::Translate(TranslateRequest {
        context: IpcKey {
            vmid: 1,
            vttbr: l1.root | (1 << 48),
            vtcr: l1.vtcr(),
        },
        l2_ipa: ipa,
        access,
        esr,
        far: 0xffff_8000_0000_0000 | (ipa & 0xfff),
    })
    .encode(VcpuId(0), 1)
}

/// The ESR the service injects into L1 for the request.
fn injected_esr(l1: &L1Tables, s: &TestService, ipa: u64, access: IpcAccess, esr: u32) -> u64 {
    let w = s.worker();
    let reply = decode_reply(&s.answer(&w, &request(l1, ipa, access, esr)))
        .expect("well-formed reply")
        .message;
    let Reply::Translate(TranslateOutcome::Inject(i)) = reply else {
        panic!("{reply:?}")
    };
    i.esr
}

/// L1's tables: 0x1000 mapped read-write, 0x5000 read-only, 0x6000 not
/// mapped (the tables above it exist).
fn setup() -> (L1Tables, TestService) {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x1000, 0x8000_1000, 3, RW);
    l1.map(0x5000, 0x8000_9000, 3, RO);
    let s = service(mem);
    (l1, s)
}

/// `LDR W3, [X1]` to an L2 IPA L1 does not map (its emulated MMIO, say),
/// trapped as a level-3 translation fault on the shadow: L1 gets its
/// translation fault with ISV = 1, SAS = 0b10 (word), SRT = 3.
#[test]
fn a_load_l1_does_not_map_keeps_its_instruction_syndrome() {
    let (l1, s) = setup();
    let ldr_w3 = ESR_ISV | (0b10 << 22) | (3 << 16);
    let esr = injected_esr(&l1, &s, 0x6000, IpcAccess::Read, DABT | ldr_w3 | 0x07);
    assert_eq!(esr & 0x3f, 0x07, "L1's translation fault: {esr:#x}");
    assert_eq!(
        esr as u32 & INSTRUCTION_SYNDROME,
        ldr_w3,
        "injected ESR {esr:#x} lost the trapped instruction syndrome"
    );
}

/// `STLR X30` to a page L1 maps read-only: L1's permission fault, WnR = 1,
/// with the store's full syndrome (SAS 0b11, SRT 30, SF, AR).
#[test]
fn a_store_to_a_read_only_page_keeps_its_instruction_syndrome() {
    let (l1, s) = setup();
    let stlr_x30 = ESR_ISV | (0b11 << 22) | (30 << 16) | (1 << 15) | (1 << 14);
    let trapped = DABT | stlr_x30 | ESR_WNR | 0x07;
    let esr = injected_esr(&l1, &s, 0x5008, IpcAccess::Write, trapped);
    assert_eq!(esr, u64::from(DABT | stlr_x30 | ESR_WNR | 0x0f), "{esr:#x}");
}

/// A fault on L2's stage-1 walk (S1PTW) has no instruction syndrome, and
/// no field of the trapped ESR the walk decides leaks through: the
/// injected ESR is the walk's.
#[test]
fn a_fault_on_l2s_stage1_walk_has_no_instruction_syndrome() {
    let (l1, s) = setup();
    let trapped = DABT | ESR_S1PTW | 0x07;
    let esr = injected_esr(&l1, &s, 0x6000, IpcAccess::Read, trapped);
    assert_eq!(esr, u64::from(DABT | ESR_S1PTW | 0x07), "{esr:#x}");
}

const ESR_CM: u32 = 1 << 8;

/// Review 31 R31-2: `DC CVAC` (CM = 1, WnR = 1) at EL1 to an L2 IPA L1
/// maps read-only. A clean needs no stage-2 permission
/// (AArch64.S2CheckPermissions, AccessType_DC, not an invalidate, at EL1
/// without FEAT_CMOW), so it translates; it was walked as a write and
/// injected as a write permission fault without CM.
#[test]
fn a_cache_clean_of_a_read_only_page_translates() {
    let (l1, s) = setup();
    let w = s.worker();
    let trapped = DABT | ESR_CM | ESR_WNR | 0x07;
    let record = request(&l1, 0x5008, IpcAccess::CacheMaintenance, trapped);
    let reply = decode_reply(&s.answer(&w, &record)).unwrap().message;
    let Reply::Translate(TranslateOutcome::Mapped(m)) = reply else {
        panic!("DC CVAC to a page L1 maps read-only: {reply:?}")
    };
    // L1 IPA 0x8000_9000 as L0 maps it, read-only as L1 has it.
    assert_eq!(m.pa, PA_OFFSET + 0x8000_9000, "{m:?}");
    assert!(
        !m.permissions.contains(ipc::message::Permissions::WRITE),
        "{m:?}"
    );
}

/// A cache maintenance instruction that still faults on the read-only
/// entry installed for it (only DC IVAC needs write at EL1) gets L1's
/// write permission fault, reported with CM = 1 and WnR = 1; at EL0 the
/// instruction needs read, so a page L1 does not map faults with CM too.
#[test]
fn a_cache_invalidate_of_a_read_only_page_is_l1s_permission_fault() {
    let (l1, s) = setup();
    let trapped = DABT | ESR_CM | ESR_WNR | 0x0f;
    let esr = injected_esr(&l1, &s, 0x5008, IpcAccess::CacheMaintenance, trapped);
    assert_eq!(esr, u64::from(DABT | ESR_CM | ESR_WNR | 0x0f), "{esr:#x}");
    let trapped = DABT | ESR_CM | ESR_WNR | 0x07;
    let esr = injected_esr(&l1, &s, 0x6000, IpcAccess::CacheMaintenanceEl0, trapped);
    assert_eq!(esr, u64::from(DABT | ESR_CM | ESR_WNR | 0x07), "{esr:#x}");
}
