//! Review 3 F1: an access L1's stage 2 allows and L0's mapping of L1 does
//! not (L0 write-protects L1 memory for dirty logging, makes it
//! execute-never, or maps it as Device, which is never executable) is
//! `L0Denied` with the L1 IPA, never `Mapped`: the composed shadow entry
//! cannot allow it, so a handler resuming L2 on `Mapped` looped forever.
//! Checked through `translate` (walks and cache hits) and through the ipc
//! adapter.
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use ipc::message::{
    decode_reply, AccessKind as IpcAccess, DeniedAccess as IpcDenied, L0Denial, Reply, Request,
    TranslateOutcome, TranslateRequest, VcpuId,
};
use shadow_mmu::compose::{
    L0Map, L0Mapping, L0Region, L0RegionKind, L0RegionMap, MemAttr, MemShareability, Permissions,
    Unbacked,
};
use shadow_mmu::service::{
    DeniedAccess, HostBackend, Service, ServiceConfig, ServiceError, Translated, Worker,
};
use shadow_mmu::shadow_table::ShadowConfig;
use walker::{AccessKind, ExposedFeatures, Granule, IdRegisters};

const EXEC: Permissions = Permissions::EXEC_EL0.union(Permissions::EXEC_EL1);
const RW_PERMS: Permissions = Permissions::READ.union(Permissions::WRITE);
const ALL: Permissions = RW_PERMS.union(EXEC);
const DEVICE_NGNRE: u8 = 0b0001;
const NORMAL_WB: u8 = 0b1111;

/// L0's map of L1 memory with the given permissions and MemAttr.
fn l0_with(perms: Permissions, mem_attr: u8) -> L0RegionMap {
    L0RegionMap::new(vec![L0Region {
        ipa_base: 0,
        size: L1_MEMORY_BYTES,
        kind: L0RegionKind::Memory {
            pa_base: PA_OFFSET,
            perms,
            mem_attr: MemAttr::from_bits(mem_attr),
            shareability: MemShareability::InnerShareable,
        },
    }])
    .unwrap()
}

/// L0's map whose write protection (dirty logging) hv can lift, as it
/// does when it resolves its own write fault.
struct DirtyLogging {
    writable: L0RegionMap,
    protected: L0RegionMap,
    write_protected: AtomicBool,
}

impl L0Map for DirtyLogging {
    fn lookup(&self, l1_ipa: u64) -> Option<L0Mapping> {
        if self.write_protected.load(Ordering::SeqCst) {
            self.protected.lookup(l1_ipa)
        } else {
            self.writable.lookup(l1_ipa)
        }
    }
    fn unbacked(&self, l1_ipa: u64) -> Unbacked {
        self.writable.unbacked(l1_ipa)
    }
}

fn service_over<L: L0Map>(mem: L1Memory, l0: L) -> Service<L1Memory, L, HostBackend> {
    let config = config(16 << 20, 8);
    let backend = HostBackend::recording(config.budget.frames, ShadowConfig::default()).unwrap();
    Service::new(config, mem, l0, backend).unwrap()
}

/// L1 maps L2 IPA 0x1000_0000 to L1 IPA 0x8000_0000, read-write and
/// executable, Normal write-back.
fn l1_tables(mem: &L1Memory) -> L1Tables {
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x1000_0000, 0x8000_0000, 3, RW);
    l1
}

const L2_IPA: u64 = 0x1000_0008;
const L1_IPA: u64 = 0x8000_0008;

fn translate<L: L0Map>(
    s: &Service<L1Memory, L, HostBackend>,
    w: &Worker,
    l1: &L1Tables,
    access: AccessKind,
) -> Translated {
    s.translate(w, &l1.key(1), L2_IPA, access, &ABORT)
}

/// L0 write-protects L1's memory: L2's write is L0Denied at the L1 IPA,
/// on the walk and on every cache hit after it; the reduced (read-only)
/// entry is installed, so reads map.
#[test]
fn a_write_l0_write_protects_is_l0_denied_on_walks_and_hits() {
    let mem = L1Memory::new();
    let l1 = l1_tables(&mem);
    let s = service_over(mem, l0_with(Permissions::READ.union(EXEC), NORMAL_WB));
    let w = s.worker();
    let denied = Translated::L0Denied {
        l1_ipa: L1_IPA,
        denied: DeniedAccess::L2Data(AccessKind::Write),
    };
    for round in 0..3 {
        assert_eq!(
            translate(&s, &w, &l1, AccessKind::Write),
            denied,
            "round {round}"
        );
    }
    let stats = s.stats();
    assert_eq!((stats.walks, stats.hits), (1, 2), "{stats:?}");
    let installed = s
        .shadow_lookup(&w, &l1.key(1), L2_IPA)
        .expect("reduced entry");
    assert_eq!(installed.perms, Permissions::READ.union(EXEC));
    let read = translate(&s, &w, &l1, AccessKind::Read);
    assert_eq!(pa_of(&read, L2_IPA), Some(PA_OFFSET + L1_IPA), "{read:?}");
    // The cached walk itself (L1's leaf) still allows the write: the
    // lookup path reports L1's stage 2 only, translate adds L0's.
    assert!(s
        .lookup(&l1.key(1), L2_IPA, &w.pin())
        .is_some_and(|hit| hit.permits(AccessKind::Write)));
}

/// The dirty-logging cycle terminates: denied, hv lifts its write
/// protection, the next fault maps the page writable over the reduced
/// entry.
#[test]
fn after_l0_lifts_its_write_protection_the_write_maps() {
    let mem = L1Memory::new();
    let l1 = l1_tables(&mem);
    let l0 = DirtyLogging {
        writable: l0_with(ALL, NORMAL_WB),
        protected: l0_with(Permissions::READ.union(EXEC), NORMAL_WB),
        write_protected: AtomicBool::new(true),
    };
    let s = service_over(mem, l0);
    let w = s.worker();
    let t = translate(&s, &w, &l1, AccessKind::Write);
    assert!(
        matches!(t, Translated::L0Denied { l1_ipa: L1_IPA, .. }),
        "{t:?}"
    );
    s.l0().write_protected.store(false, Ordering::SeqCst);
    let t = translate(&s, &w, &l1, AccessKind::Write);
    let Translated::Mapped(m) = t else {
        panic!("{t:?}")
    };
    assert!(m.perms.contains(Permissions::WRITE));
    let installed = s.shadow_lookup(&w, &l1.key(1), L2_IPA).unwrap();
    assert!(installed.perms.contains(Permissions::WRITE));
}

/// L0 makes L1's memory execute-never: fetches at EL1 and EL0 are
/// L0Denied, reads and writes map.
#[test]
fn a_fetch_l0_makes_execute_never_is_l0_denied() {
    let mem = L1Memory::new();
    let l1 = l1_tables(&mem);
    let s = service_over(mem, l0_with(RW_PERMS, NORMAL_WB));
    let w = s.worker();
    for access in [AccessKind::ExecEl1, AccessKind::ExecEl0] {
        assert_eq!(
            translate(&s, &w, &l1, access),
            Translated::L0Denied {
                l1_ipa: L1_IPA,
                denied: DeniedAccess::L2Data(access)
            }
        );
    }
    for access in [AccessKind::Read, AccessKind::Write] {
        let t = translate(&s, &w, &l1, access);
        assert_eq!(pa_of(&t, L2_IPA), Some(PA_OFFSET + L1_IPA), "{t:?}");
    }
}

/// L0 maps L1's memory as Device (and executable): the composed entry is
/// Device and, by the CONSTRAINED UNPREDICTABLE choice of a permission
/// fault for a fetch from Device memory, not executable; L2's fetch is
/// L0Denied (L1's leaf is Normal and executable), its reads map as Device.
#[test]
fn a_fetch_from_memory_l0_maps_as_device_is_l0_denied() {
    let mem = L1Memory::new();
    let l1 = l1_tables(&mem);
    let s = service_over(mem, l0_with(ALL, DEVICE_NGNRE));
    let w = s.worker();
    for access in [AccessKind::ExecEl1, AccessKind::ExecEl0] {
        assert_eq!(
            translate(&s, &w, &l1, access),
            Translated::L0Denied {
                l1_ipa: L1_IPA,
                denied: DeniedAccess::L2Data(access)
            }
        );
    }
    let Translated::Mapped(m) = translate(&s, &w, &l1, AccessKind::Read) else {
        panic!("read of Device memory")
    };
    assert_eq!(m.mem_attr, MemAttr::from_bits(DEVICE_NGNRE));
    assert_eq!(m.perms, RW_PERMS);
}

/// The same denials (and a read L0 does not allow) through the ipc
/// adapter: an `L0Denied` reply with the L1 IPA and the access.
#[test]
fn the_adapter_replies_l0_denied() {
    let cases = [
        (Permissions::READ.union(EXEC), NORMAL_WB, IpcAccess::Write),
        (RW_PERMS, NORMAL_WB, IpcAccess::Execute),
        (RW_PERMS, NORMAL_WB, IpcAccess::ExecuteEl0),
        (ALL, DEVICE_NGNRE, IpcAccess::Execute),
        (Permissions::none(), NORMAL_WB, IpcAccess::Read),
    ];
    for (seq, (perms, mem_attr, access)) in cases.into_iter().enumerate() {
        let mem = L1Memory::new();
        let l1 = l1_tables(&mem);
        let s = service_over(mem, l0_with(perms, mem_attr));
        let w = s.worker();
        let fetch = matches!(access, IpcAccess::Execute | IpcAccess::ExecuteEl0);
        let ec: u32 = if fetch { 0x20 } else { 0x24 };
        let wnr = u32::from(access == IpcAccess::Write) << 6;
        let record = Request::Translate(TranslateRequest {
            context: ipc::ContextKey::new(l1.root | 1 << 48, l1.vtcr(), s.l1_vmid_width()),
            l2_ipa: L2_IPA,
            access,
            esr: ec << 26 | 1 << 25 | wnr | 0x0f,
            far: 0x7f00_0000_0008,
        })
        .encode(VcpuId(2), seq as u64);
        let reply = decode_reply(&s.answer(&w, &record)).unwrap();
        assert_eq!(reply.seq, seq as u64);
        assert_eq!(
            reply.message,
            Reply::Translate(TranslateOutcome::L0Denied(L0Denial {
                l1_ipa: L1_IPA,
                denied: IpcDenied::L2Data(access)
            })),
            "{perms:?} MemAttr {mem_attr:#06b}"
        );
    }
}

/// L0 allows nothing at all: denied, and no useless entry installed.
#[test]
fn nothing_is_installed_when_l0_allows_nothing() {
    let mem = L1Memory::new();
    let l1 = l1_tables(&mem);
    let s = service_over(mem, l0_with(Permissions::none(), NORMAL_WB));
    let w = s.worker();
    assert_eq!(
        translate(&s, &w, &l1, AccessKind::Read),
        Translated::L0Denied {
            l1_ipa: L1_IPA,
            denied: DeniedAccess::L2Data(AccessKind::Read)
        }
    );
    assert_eq!(s.shadow_lookup(&w, &l1.key(1), L2_IPA), None);
    assert_eq!(s.shadow_leaves(), 0);
}

/// Review 6 R6-1: a host without FEAT_XNX. L1 is not shown FEAT_XNX
/// (its pages execute at both levels or neither), but L0's own grant
/// executes at one level only. The shadow descriptor cannot say "this
/// level only" (it says no execute), so a fetch at the granted level is
/// L0Denied, never `Mapped` with permissions the installed entry lacks
/// (before the fix: `Mapped` with EXEC_EL1 over an XN entry, and L2
/// re-faulted forever). Every `Mapped` answer is exactly what is
/// installed.
#[test]
fn without_host_xnx_a_one_level_execute_grant_is_l0_denied_not_mapped() {
    let without_xnx = ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 5 | (1 << 20),
        mmfr1: 2, // HAFDBS = 2, XNX = 0.
        mmfr2: 0,
    })
    .unwrap();
    let host = ShadowConfig {
        xnx: false,
        pa_bits: 48,
    };
    for (granted, access) in [
        (Permissions::EXEC_EL1, AccessKind::ExecEl1),
        (Permissions::EXEC_EL0, AccessKind::ExecEl0),
    ] {
        let mem = L1Memory::new();
        let l1 = l1_tables(&mem);
        let config = ServiceConfig {
            features: without_xnx,
            ..config(16 << 20, 8)
        };
        let backend = HostBackend::recording(config.budget.frames, host).unwrap();
        let l0 = l0_with(RW_PERMS.union(granted), NORMAL_WB);
        let s = Service::new(config, mem, l0, backend).expect("L1 is not shown FEAT_XNX");
        let w = s.worker();
        for round in 0..3 {
            assert_eq!(
                translate(&s, &w, &l1, access),
                Translated::L0Denied {
                    l1_ipa: L1_IPA,
                    denied: DeniedAccess::L2Data(access)
                },
                "{access:?} round {round}"
            );
        }
        let installed = s.shadow_lookup(&w, &l1.key(1), L2_IPA).unwrap();
        assert_eq!(installed.perms, RW_PERMS, "{access:?}");
        let Translated::Mapped(read) = translate(&s, &w, &l1, AccessKind::Read) else {
            panic!("{access:?}: the read must map")
        };
        assert_eq!(read.perms, installed.perms, "{access:?}");
    }
}

/// Review 6 R6-1 through L1's own descriptor: L1 is shown FEAT_XNX and
/// maps a page EL1-executable only (XN = 0b11); a host without FEAT_XNX
/// cannot install that, and no answer for L2's fetch is right (L1 allows
/// it, so there is no fault to inject; L0 does not deny it). Such a
/// configuration is refused at `Service::new` (as FEAT_S2FWB is refused by
/// `ExposedFeatures`): hv must hide FEAT_XNX from L1 on such a host.
#[test]
fn an_l1_shown_xnx_on_a_host_without_it_is_refused() {
    let host = ShadowConfig {
        xnx: false,
        pa_bits: 48,
    };
    let config = config(16 << 20, 8);
    assert!(config.features.xnx());
    let backend = HostBackend::recording(config.budget.frames, host).unwrap();
    let refused = Service::new(config, L1Memory::new(), l0_map(), backend).map(|_| ());
    assert_eq!(refused, Err(ServiceError::XnxWithoutHostXnx));
    assert!(ServiceError::XnxWithoutHostXnx
        .to_string()
        .contains("hide it from L1"));
    // The same L1 on a host with FEAT_XNX: its EL1-only page maps with
    // exactly EL1 execute.
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x1000_0000, 0x8000_0000, 3, RW | (3 << 53));
    let backend = HostBackend::recording(config.budget.frames, ShadowConfig::default()).unwrap();
    let s = Service::new(config, mem, l0_map(), backend).unwrap();
    let w = s.worker();
    let Translated::Mapped(m) = translate(&s, &w, &l1, AccessKind::ExecEl1) else {
        panic!("an EL1 fetch of an EL1-only page maps")
    };
    assert_eq!(m.perms, RW_PERMS.union(Permissions::EXEC_EL1));
    let t = translate(&s, &w, &l1, AccessKind::ExecEl0);
    assert!(
        matches!(t, Translated::Inject(_)),
        "an EL0 fetch of an EL1-only page is L1's fault: {t:?}"
    );
}
