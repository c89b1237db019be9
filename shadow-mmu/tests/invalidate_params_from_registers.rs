//! The service decodes an invalidate's operand with its own parameters
//! (review 25 R25-1, review 32 R32-2): the FEAT_LPA2 it shows L1 and the
//! VTCR_EL2.DS in the request. An L1 that is not shown FEAT_LPA2 (so
//! VTCR_EL2.DS is RES0 and reads as 0) issues TLBI RIPAS2E1IS for one page:
//! by the Arm ARM (TLBI RIPAS2E1 BaseADDR; `TLBIRange`) BaseADDR is in
//! units of the granule (4 KiB) and the page is covered; decoded in 64 KiB
//! units (as DS = 1 would have it) it would not be, and L2 would keep the
//! translation L1 invalidated. Requests no longer carry decode parameters
//! of their own (they once did, and the service trusted them).
#![cfg(not(loom))]

use crate::common;

use common::*;
use ipc::message::{decode_reply, InvalidateRequest, Reply, Request, VcpuId};
use ipc::tlbi::{Granule as TlbiGranule, RangeOperand, Shareability, Tlbi, TlbiOp};
use walker::Granule;

#[test]
fn a_range_tlbi_is_decoded_with_the_services_parameters() {
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
    let request = InvalidateRequest::new(
        l1.root | (u64::from(vmid) << 48),
        l1.vtcr(),
        s.l1_vmid_width(),
        tlbi,
        operand,
    )
    .unwrap();
    let reply = decode_reply(&s.answer(&w, &Request::Invalidate(request).encode(VcpuId(0), 1)))
        .unwrap()
        .message;
    let Reply::InvalidateAck(ack) = reply else {
        panic!("{reply:?}")
    };
    assert!(
        s.shadow_lookup(&w, &key, page).is_none(),
        "TLBI RIPAS2E1IS of {page:#x} acked ({ack:?}) but the shadow still maps it: \
         the range was decoded with DS = 1 for an L1 whose VTCR_EL2.DS is 0"
    );
}
