//! Review 25, R25-1: the service applies an invalidate record's scope as
//! decoded with the record's own `TlbiParams`, which nothing checks against
//! the VTCR_EL2 carried in the same record nor against the features the
//! service exposes to L1. An L1 that is not shown FEAT_LPA2 (so VTCR_EL2.DS
//! is RES0 and reads as 0) issues TLBI RIPAS2E1IS for one page: by the Arm
//! ARM (TLBI RIPAS2E1 BaseADDR; `TLBIRange`) BaseADDR is in units of the
//! granule (4 KiB) and the page is covered. A record saying
//! `feat_lpa2 = true, vtcr_ds = true` for that very TLBI is acked with the
//! range decoded in 64 KiB units, and L2 keeps the translation L1
//! invalidated (DESIGN.md path 2: "No L2 access after the ack may use a
//! dropped entry"). The VMID got this check in review 21 F3; the decode
//! parameters did not.
//!
//! Goes in shadow-mmu/tests/. Fails on main; passes once the service
//! derives the parameters itself (its exposed features, the record's
//! VTCR_EL2.DS) or refuses a record whose parameters disagree.
#![cfg(not(loom))]

mod common;

use common::*;
use ipc::message::{decode_reply, InvalidateRequest, Reply, Request, VcpuId};
use ipc::tlbi::{Granule as TlbiGranule, RangeOperand, Shareability, Tlbi, TlbiOp, TlbiParams};
use walker::Granule;

#[test]
fn review25_invalidate_params_that_contradict_the_registers_are_not_trusted() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let page = 0x8000_3000u64;
    l1.map(page, 0x1234_5000, 3, RW);
    let s = service(mem);
    let w = s.worker();
    let vmid = 1u16;
    let key = l1.key(vmid);
    assert!(pa_of(&read(&s, &w, &key, page), page).is_some());
    assert!(s.shadow_lookup(&w, &key, page).is_some());
    // L1 is not shown FEAT_LPA2 for stage 2 and its VTCR_EL2.DS (bit 32)
    // is 0.
    assert_eq!(l1.vtcr() & (1 << 32), 0);
    let tlbi = Tlbi {
        op: TlbiOp::Ripas2e1,
        shareability: Shareability::InnerShareable,
        nxs: false,
    };
    // TLBI RIPAS2E1IS, 4K granule, 2 pages from BaseADDR = page >> 12.
    let operand = RangeOperand {
        granule: Some(TlbiGranule::K4),
        scale: 0,
        num: 0,
        ttl: 0,
        base_addr: page >> 12,
    }
    .to_bits();
    let contradicting = TlbiParams {
        feat_ttl: false,
        feat_lpa2: true,
        vtcr_ds: true,
    };
    let request = InvalidateRequest::new(
        l1.root | (u64::from(vmid) << 48),
        l1.vtcr(),
        s.l1_vmid_width(),
        tlbi,
        operand,
        contradicting,
    )
    .unwrap();
    let reply = decode_reply(&s.answer(&w, &Request::Invalidate(request).encode(VcpuId(0), 1)))
        .unwrap()
        .message;
    // Either the record is refused (then hv would know), or it is acked
    // and then the page L1 named is gone.
    if let Reply::InvalidateAck(ack) = reply {
        assert!(
            s.shadow_lookup(&w, &key, page).is_none(),
            "TLBI RIPAS2E1IS of {page:#x} acked ({ack:?}) but the shadow still maps it: \
             the range was decoded with DS = 1 for an L1 whose VTCR_EL2.DS is 0"
        );
    } else {
        assert!(matches!(reply, Reply::Error(_)), "{reply:?}");
    }
}
