//! The shadows' hardware VMIDs (review 3 F5): `first_shadow_vmid +
//! slot` used to wrap past 0xffff into VMID 0 and L1's VMID, and nothing
//! checked them against an 8-bit host VMID. A shadow sharing a VMID with
//! L1 shares its TLB entries, so the service now refuses such a
//! configuration with an error instead of running with it.
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use common::*;
use ipc::VmidWidth;
use shadow_mmu::context::{HostVmids, ShadowVmidError, ShadowVmids};
use shadow_mmu::service::{HostBackend, Service, ServiceConfig, ServiceError};
use shadow_mmu::shadow_table::ShadowConfig;
use walker::Granule;

fn try_service(
    first: u16,
    contexts: usize,
    host: HostVmids,
) -> Result<TestService, ShadowVmidError> {
    let config = ServiceConfig {
        first_shadow_vmid: first,
        host_vmids: host,
        ..config(16 << 20, contexts)
    };
    let backend = HostBackend::recording(config.budget.frames, ShadowConfig::default()).unwrap();
    Service::new(config, L1Memory::new(), l0_map(), backend).map_err(|e| match e {
        ServiceError::ShadowVmids(e) => e,
        other => panic!("refused for another reason: {other}"),
    })
}

const WIDE: HostVmids = HostVmids {
    width: VmidWidth::Bits16,
    l1_vmid: 1,
};
const NARROW: HostVmids = HostVmids {
    width: VmidWidth::Bits8,
    l1_vmid: 1,
};

/// The review's reproducer: 0xfffe with 4 contexts gave shadow VMIDs
/// [0xfffe, 0xffff, 0, 1]; now the service is not made.
#[test]
fn shadow_vmids_that_wrap_are_refused() {
    assert_eq!(
        try_service(0xfffe, 4, WIDE).unwrap_err(),
        ShadowVmidError::BeyondHostWidth {
            end: 0x1_0002,
            width_bits: 16
        }
    );
}

#[test]
fn vmid_zero_and_l1s_vmid_are_never_a_shadows() {
    assert_eq!(
        try_service(
            0,
            4,
            HostVmids {
                l1_vmid: 200,
                ..WIDE
            }
        )
        .unwrap_err(),
        ShadowVmidError::IncludesVmidZero
    );
    // L1's VMID first, last, and inside the range.
    for (first, l1_vmid) in [(5u16, 5u16), (5, 8), (5, 6)] {
        let host = HostVmids { l1_vmid, ..WIDE };
        assert_eq!(
            try_service(first, 4, host).unwrap_err(),
            ShadowVmidError::IncludesL1Vmid { l1_vmid }
        );
    }
    // Just past it on either side is fine.
    assert!(try_service(2, 4, WIDE).is_ok());
    assert!(try_service(
        9,
        4,
        HostVmids {
            l1_vmid: 13,
            ..WIDE
        }
    )
    .is_ok());
    assert!(try_service(9, 4, HostVmids { l1_vmid: 8, ..WIDE }).is_ok());
}

/// With 8-bit host VMIDs (VTCR_EL2.VS = 0) VMIDs above 255 alias: the
/// range must end by 256, and L1's VMID must fit too.
#[test]
fn an_8_bit_host_limits_the_shadow_vmids() {
    assert_eq!(
        try_service(250, 8, NARROW).unwrap_err(),
        ShadowVmidError::BeyondHostWidth {
            end: 258,
            width_bits: 8
        }
    );
    assert!(try_service(248, 8, NARROW).is_ok());
    assert_eq!(
        try_service(
            16,
            4,
            HostVmids {
                l1_vmid: 256,
                ..NARROW
            }
        )
        .unwrap_err(),
        ShadowVmidError::L1VmidBeyondHostWidth { l1_vmid: 256 }
    );
    let message = ShadowVmidError::BeyondHostWidth {
        end: 258,
        width_bits: 8,
    }
    .to_string();
    assert!(message.contains("8-bit"), "{message}");
}

/// At the top of the 16-bit space every context gets its own VMID, all
/// inside the range, none wrapped.
#[test]
fn every_context_gets_a_vmid_inside_the_range() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x1000_0000, 0x8000_0000, 3, RW);
    let config = ServiceConfig {
        first_shadow_vmid: 0xfffc,
        ..config(16 << 20, 4)
    };
    let backend = HostBackend::recording(config.budget.frames, ShadowConfig::default()).unwrap();
    let s = Service::new(config, mem, l0_map(), backend).unwrap();
    let w = s.worker();
    let mut vmids: Vec<u16> = (1..=4u16)
        .map(|vmid| s.shadow_root(&w, &l1.key(vmid)).unwrap().0)
        .collect();
    vmids.sort_unstable();
    assert_eq!(vmids, [0xfffc, 0xfffd, 0xfffe, 0xffff]);
    let range = ShadowVmids::new(0xfffc, 4, WIDE).unwrap();
    assert_eq!((range.first(), range.len()), (0xfffc, 4));
    assert_eq!(range.of_slot(3), Some(0xffff));
    assert_eq!(range.of_slot(4), None);
    assert_eq!(range.slot_of(0xfffb), None);
    assert_eq!(range.slot_of(0xffff), Some(3));
    // A directory has at least one slot.
    assert_eq!(ShadowVmids::new(7, 0, WIDE).unwrap().len(), 1);
}
