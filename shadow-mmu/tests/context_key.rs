//! What a context key keeps of L1's registers: every VTCR_EL2 field the
//! walker reads (review 3 F2: VTCR_EL2.HAFT was masked out, so the
//! service never set AF in L1's table descriptors although L1 enabled
//! FEAT_HAFT), and the VMID as L1's TLBIs name it (review 3 F3: with
//! VTCR_EL2.VS = 0, VTTBR_EL2[63:56] is ignored; a key that kept those
//! bits was a context no TLBI for its VMID reached).
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use common::*;
use ipc::message::{
    decode_reply, AccessKind as IpcAccess, DecodeError, Field, InvalidateRequest, Record,
    RecordKind, Reply, Request, TranslateOutcome, TranslateRequest, VcpuId,
};
use ipc::tlbi::{InvalidateScope, Shareability, Tlbi, TlbiOp};
use ipc::{l1_vmid, VmidWidth};
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::{HostBackend, Service, ServiceConfig, Translated};
use shadow_mmu::shadow_table::ShadowConfig;
use walker::{AccessKind, Endianness, ExposedFeatures, Granule, IdRegisters};

const AF: u64 = 1 << 10;
const VTCR_HA: u64 = 1 << 21;
const VTCR_HAFT: u64 = 1 << 44;

/// A service whose L1 was told it has FEAT_HAFT (HAFDBS = 0b0011).
fn haft_service(mem: L1Memory) -> TestService {
    let features = ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 5 | (1 << 20),
        mmfr1: 3 | (1 << 28),
        mmfr2: 0,
    })
    .unwrap();
    let config = ServiceConfig {
        features,
        ..config(16 << 20, 8)
    };
    let backend = HostBackend::recording(config.budget.frames, ShadowConfig::default()).unwrap();
    Service::new(config, mem, l0_map(), backend).unwrap()
}

/// L1 turns on HA and HAFT: a translate through the service walks with
/// FEAT_HAFT and sets AF in the table descriptors it passes (AArch64.S2Walk,
/// walkparams.haft); with HAFT off it leaves them alone.
#[test]
fn vtcr_haft_reaches_the_services_walks() {
    for (haft, expect_af) in [(VTCR_HAFT, true), (0, false)] {
        let mem = L1Memory::new();
        let l1 = L1Tables::new(mem.clone(), Granule::K4);
        l1.map(0x1000_0000, 0x8000_0000, 3, RW);
        let vtcr = l1.vtcr() | VTCR_HA | haft;
        let key = ContextKey::new(1, l1.root, vtcr, Endianness::Little);
        assert_eq!(key.vtcr & VTCR_HAFT, haft, "HAFT kept in the key");
        let s = haft_service(mem.clone());
        let w = s.worker();
        let t = s.translate(&w, &key, 0x1000_0000, AccessKind::Read, &ABORT);
        assert!(matches!(t, Translated::Mapped(_)), "{t:?}");
        // The level-1 entry (root index 0 for IPA 0x1000_0000, 39-bit IA)
        // and the level-2 entry below it are table descriptors built with
        // AF clear.
        let level1 = mem.read(l1.root);
        assert_eq!(level1 & 3, 3, "a table descriptor");
        let level2 = mem.read(l1.slot(0x1000_0000, 2));
        assert_eq!(level2 & 3, 3, "a table descriptor");
        for (level, d) in [(1, level1), (2, level2)] {
            assert_eq!(
                d & AF != 0,
                expect_af,
                "HAFT {}: AF of the level-{level} table descriptor {d:#x}",
                haft != 0
            );
        }
    }
}

/// HAFT is part of the key: the same tables with and without HAFT are two
/// contexts (their walks differ: one writes L1's memory).
#[test]
fn haft_on_and_off_are_different_contexts() {
    let with = ContextKey::new(
        1,
        0x4000_0000,
        0x2_3559 | VTCR_HA | VTCR_HAFT,
        Endianness::Little,
    );
    let without = ContextKey::new(1, 0x4000_0000, 0x2_3559 | VTCR_HA, Endianness::Little);
    assert_ne!(with, without);
    // Bits no walk reads (VS, IRGN0/ORGN0, NSW/NSA) do not split contexts.
    let noise = (1 << 19) | (3 << 8) | (3 << 10) | (3 << 29);
    let same = ContextKey::new(
        1,
        0x4000_0000,
        0x2_3559 | VTCR_HA | noise,
        Endianness::Little,
    );
    assert_eq!(same, without);
}

const VTCR_VS: u64 = 1 << 19;

/// A service whose L1 has 16-bit VMIDs (FEAT_VMID16: VMIDBits = 0b0010)
/// or 8-bit ones.
fn vmid_service(mem: L1Memory, vmid16: bool) -> TestService {
    let features = ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 5 | (1 << 20),
        mmfr1: 2 | (u64::from(vmid16) * 2) << 4 | (1 << 28),
        mmfr2: 0,
    })
    .unwrap();
    let config = ServiceConfig {
        features,
        ..config(16 << 20, 8)
    };
    let backend = HostBackend::recording(config.budget.frames, ShadowConfig::default()).unwrap();
    Service::new(config, mem, l0_map(), backend).unwrap()
}

/// The review's reproducer: L2 runs with VTTBR_EL2.VMID field 0x0105 and
/// VS = 0, so its VMID is 5. Even a sender that puts 0x105 in the message
/// (as the old ipc doc invited) gets the context of VMID 5, and L1's
/// VMALLS12E1 for VMID 5 removes its cached walk.
#[test]
fn the_context_vmid_comes_from_the_registers() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x1000_0000, 0x8000_0000, 3, RW);
    let s = vmid_service(mem, true);
    let w = s.worker();
    let vtcr = l1.vtcr();
    assert_eq!(vtcr & VTCR_VS, 0);
    let vttbr = (0x0105u64 << 48) | l1.root;
    let message = ipc::ContextKey {
        vmid: 0x105,
        vttbr,
        vtcr,
    };
    let key = ContextKey::from_ipc(&message, s.l1_vmid_width());
    assert_eq!(key.vmid, 5);
    assert!(pa_of(&read(&s, &w, &key, 0x1000_0000), 0x1000_0000).is_some());
    l1.unmap(0x1000_0000, 3);
    l1.map(0x1000_0000, 0x9000_0000, 3, RW);
    s.invalidate(
        &w,
        l1_vmid(vttbr, vtcr, s.l1_vmid_width()),
        &InvalidateScope::Vmid,
    );
    let guard = w.pin();
    assert!(
        s.lookup(&key, 0x1000_0000, &guard).is_none(),
        "VMALLS12E1 for VMID 5 left a cached walk of VTTBR {vttbr:#x} (VS = 0)"
    );
    drop(guard);
    assert_eq!(
        pa_of(&read(&s, &w, &key, 0x1000_0000), 0x1000_0000),
        Some(PA_OFFSET + 0x9000_0000)
    );
    // With VS = 1 and 16-bit VMIDs exposed, 0x105 is a VMID of its own:
    // a TLBI for VMID 5 leaves it, one for 0x105 removes it.
    let wide = ContextKey::from_ipc(
        &ipc::ContextKey::new(vttbr, vtcr | VTCR_VS, VmidWidth::Bits16),
        s.l1_vmid_width(),
    );
    assert_eq!(wide.vmid, 0x105);
    assert!(pa_of(&read(&s, &w, &wide, 0x1000_0000), 0x1000_0000).is_some());
    s.invalidate(&w, 5, &InvalidateScope::Vmid);
    assert!(s.lookup(&wide, 0x1000_0000, &w.pin()).is_some());
    s.invalidate(&w, 0x105, &InvalidateScope::Vmid);
    assert!(s.lookup(&wide, 0x1000_0000, &w.pin()).is_none());
}

fn translate_record(vttbr: u64, vtcr: u64, vmid: u16, seq: u64) -> Record {
    Request::Translate(TranslateRequest {
        context: ipc::ContextKey { vmid, vttbr, vtcr },
        l2_ipa: 0x1000_0000,
        access: IpcAccess::Read,
        esr: 0x24 << 26 | 1 << 25 | 0x07,
        far: 0x1000_0000,
    })
    .encode(VcpuId(3), seq)
}

/// A VMALLS12E1IS L1 issued with `vttbr` and `vtcr`, the record saying
/// `vmid` (what a sender that got the VMID wrong would send).
fn invalidate_record(vttbr: u64, vtcr: u64, vmid: u16, seq: u64) -> Record {
    let tlbi = Tlbi {
        op: TlbiOp::Vmalls12e1,
        shareability: Shareability::InnerShareable,
        nxs: false,
    };
    let request = InvalidateRequest::new(vttbr, vtcr, VmidWidth::Bits16, tlbi, 0).unwrap();
    let mut record = Request::Invalidate(request).encode(VcpuId(3), seq);
    // The body: Xt, VTTBR_EL2, VTCR_EL2, then the VMID.
    record.body[24..26].copy_from_slice(&vmid.to_ne_bytes());
    record
}

fn answer(s: &TestService, w: &shadow_mmu::service::Worker, record: &Record) -> Reply {
    decode_reply(&s.answer(w, record)).unwrap().message
}

/// Through the ipc adapter: a VMID the registers do not name is an error
/// reply naming the field, whether the message cannot be right for any
/// width (VS = 0, VMID 0x105: refused on decode) or only for another
/// width than L1 has (VS = 1, VMID 0x105, 8-bit VMIDs: refused by the
/// service); so is an invalidate whose VMID its registers do not name for
/// L1's width (review 21 F3: one naming the raw VTTBR field was acked and
/// invalidated nothing). A translate and an invalidate built with
/// `l1_vmid` meet.
#[test]
fn the_adapter_refuses_a_vmid_l1_cannot_have() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x1000_0000, 0x8000_0000, 3, RW);
    let s = vmid_service(mem, false);
    let w = s.worker();
    assert_eq!(s.l1_vmid_width(), VmidWidth::Bits8);
    let vttbr = (0x0105u64 << 48) | l1.root;
    let invalid = |kind: RecordKind| {
        Reply::Error(DecodeError::Invalid {
            kind: kind as u16,
            field: Field::Vmid,
        })
    };
    for vtcr in [l1.vtcr(), l1.vtcr() | VTCR_VS] {
        let r = answer(&s, &w, &translate_record(vttbr, vtcr, 0x105, 1));
        assert_eq!(r, invalid(RecordKind::Translate), "VTCR {vtcr:#x}");
    }
    for vtcr in [l1.vtcr(), l1.vtcr() | VTCR_VS] {
        assert_eq!(
            answer(&s, &w, &invalidate_record(vttbr, vtcr, 0x105, 2)),
            invalid(RecordKind::Invalidate),
            "VTCR {vtcr:#x}"
        );
    }
    // The sender's way: both VMIDs from l1_vmid with L1's width.
    let vtcr = l1.vtcr() | VTCR_VS;
    let key = ipc::ContextKey::new(vttbr, vtcr, VmidWidth::Bits8);
    assert_eq!(key.vmid, 5);
    let r = answer(&s, &w, &translate_record(vttbr, vtcr, key.vmid, 3));
    assert!(
        matches!(r, Reply::Translate(TranslateOutcome::Mapped(_))),
        "{r:?}"
    );
    let cached = ContextKey::from_ipc(&key, s.l1_vmid_width());
    assert!(s.lookup(&cached, 0x1000_0000, &w.pin()).is_some());
    let vmid = l1_vmid(vttbr, vtcr, VmidWidth::Bits8);
    let r = answer(&s, &w, &invalidate_record(vttbr, vtcr, vmid, 4));
    assert!(
        matches!(r, Reply::InvalidateAck(a) if a.entries_dropped >= 1),
        "{r:?}"
    );
    assert!(s.lookup(&cached, 0x1000_0000, &w.pin()).is_none());
}

/// Review 21 F3: L1 is shown 16-bit VMIDs and runs with VS = 0, so the
/// VTTBR field 0x0105 is VMID 5. An invalidate naming 0x105 (the raw
/// field: fits the 16-bit width, but not what the registers name) was
/// acked having removed nothing, leaving L2's old translation cached; now
/// it is refused, and the one with the VMID the registers name removes it.
#[test]
fn an_invalidate_naming_a_vmid_its_registers_do_not_is_refused() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x1000_0000, 0x8000_0000, 3, RW);
    let s = vmid_service(mem, true);
    let w = s.worker();
    assert_eq!(s.l1_vmid_width(), VmidWidth::Bits16);
    let (vttbr, vtcr) = ((0x0105u64 << 48) | l1.root, l1.vtcr());
    let key = ipc::ContextKey::new(vttbr, vtcr, VmidWidth::Bits16);
    assert_eq!(key.vmid, 5);
    let r = answer(&s, &w, &translate_record(vttbr, vtcr, key.vmid, 1));
    assert!(
        matches!(r, Reply::Translate(TranslateOutcome::Mapped(_))),
        "{r:?}"
    );
    let cached = ContextKey::from_ipc(&key, s.l1_vmid_width());
    assert_eq!(
        answer(&s, &w, &invalidate_record(vttbr, vtcr, 0x105, 2)),
        Reply::Error(DecodeError::Invalid {
            kind: RecordKind::Invalidate as u16,
            field: Field::Vmid,
        })
    );
    assert!(s.lookup(&cached, 0x1000_0000, &w.pin()).is_some());
    let r = answer(&s, &w, &invalidate_record(vttbr, vtcr, key.vmid, 3));
    assert!(
        matches!(r, Reply::InvalidateAck(a) if a.entries_dropped >= 1),
        "{r:?}"
    );
    assert!(s.lookup(&cached, 0x1000_0000, &w.pin()).is_none());
}
