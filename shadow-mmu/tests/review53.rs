//! Review 53's findings on invalidation scopes (see /work/notes/review53.md).
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use common::*;
use ipc::tlbi::EntryLevels;
use walker::Granule;

/// R53-1: `Service::invalidate` takes any `IpaRange`, not only the 4 KiB
/// aligned ones the TLBI decoder makes. An unaligned range one page long
/// over nothing cached took the page path with an unaligned base (a debug
/// assertion in the reverse map's deferred page removal); one that
/// overlaps parts of two pages must drop both, from the cache and the
/// shadow, and the pages around them stay.
#[test]
fn an_unaligned_scope_covers_every_page_it_touches() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    for p in 0..4u64 {
        l1.map(0x4000_0000 + (p << 12), 0x8000_0000 + (p << 12), 3, RW);
    }
    let s = service(mem);
    let w = s.worker();
    let key = l1.key(1);
    for p in 0..4u64 {
        assert!(pa_of(
            &read(&s, &w, &key, 0x4000_0000 + (p << 12)),
            0x4000_0000 + (p << 12)
        )
        .is_some());
    }
    // Nothing cached there: one page long, unaligned.
    s.invalidate(&w, 1, &ipa_scope(0x1800, 0x2800, EntryLevels::AnyLevel));
    s.invalidate(&w, 1, &ipa_scope(0x1800, 0x2800, EntryLevels::LeafOnly));
    // Half of page 1 and half of page 2.
    s.invalidate(
        &w,
        1,
        &ipa_scope(0x4000_1800, 0x4000_2800, EntryLevels::LeafOnly),
    );
    let guard = w.pin();
    for p in 0..4u64 {
        let ipa = 0x4000_0000 + (p << 12);
        let gone = p == 1 || p == 2;
        assert_eq!(
            s.lookup(&key, ipa, &guard).is_none(),
            gone,
            "cache, page {p}"
        );
        assert_eq!(
            s.shadow_lookup(&w, &key, ipa).is_none(),
            gone,
            "shadow, page {p}"
        );
    }
    drop(guard);
    // Faulted again, they translate as before.
    for p in 0..4u64 {
        let ipa = 0x4000_0000 + (p << 12);
        assert_eq!(
            pa_of(&read(&s, &w, &key, ipa), ipa),
            Some(PA_OFFSET + 0x8000_0000 + (p << 12))
        );
    }
}

/// Whether a TLBI RIPAS2E1IS of `base_addr` (4K TG, `num`) from an L1
/// running its 4KB stage 2 with VTCR_EL2.DS = 1, shown `mmfr0`, removes
/// the page at 0x8000_3000 from the cache and the shadow.
fn ds_range_tlbi_drops_the_page(mmfr0: u64, base_addr: u64, num: u8) -> bool {
    use ipc::message::{decode_reply, InvalidateRequest, Reply, Request, VcpuId};
    use ipc::tlbi::{Granule as TlbiGranule, RangeOperand, Shareability, Tlbi, TlbiOp};
    use shadow_mmu::context::ContextKey;
    use shadow_mmu::service::{HostBackend, Service};
    use shadow_mmu::shadow_table::ShadowConfig;
    use walker::{Endianness, ExposedFeatures, IdRegisters};

    let features = ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0,
        mmfr1: 1 << 28,
        mmfr2: 0,
    })
    .unwrap();
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let page = 0x8000_3000u64;
    let vmid = 1u16;
    let vtcr = l1.vtcr() | (1 << 32); // DS

    // Bits [9:8] zero: SH Non-shareable without DS, OA[51:50] with it.
    l1.map(page, 0x1234_5000, 3, RW & !(3 << 8));
    let mut config = config(16 << 20, 8);
    config.features = features;
    let backend = HostBackend::recording(config.budget.frames, ShadowConfig::default()).unwrap();
    let s = Service::new(config, mem, l0_map(), backend).unwrap();
    let w = s.worker();
    let key = ContextKey::new(vmid, l1.root, vtcr, Endianness::Little);
    assert!(pa_of(&read(&s, &w, &key, page), page).is_some());
    assert!(s.shadow_lookup(&w, &key, page).is_some());
    let operand = RangeOperand {
        granule: Some(TlbiGranule::K4),
        scale: 0,
        num,
        ttl: 0,
        base_addr,
    }
    .to_bits();
    let tlbi = Tlbi {
        op: TlbiOp::Ripas2e1,
        shareability: Shareability::InnerShareable,
        nxs: false,
    };
    let request = InvalidateRequest::new(
        l1.root | (u64::from(vmid) << 48),
        vtcr,
        s.l1_vmid_width(),
        tlbi,
        operand,
    )
    .unwrap();
    let reply = decode_reply(&s.answer(&w, &Request::Invalidate(request).encode(VcpuId(0), 1)))
        .unwrap()
        .message;
    assert!(matches!(reply, Reply::InvalidateAck(_)), "{reply:?}");
    let guard = w.pin();
    let cached = s.lookup(&key, page, &guard).is_some();
    let shadowed = s.shadow_lookup(&w, &key, page).is_some();
    assert_eq!(cached, shadowed, "cache and shadow agree");
    !shadowed
}

/// R53-2: VTCR_EL2.DS is RES0 for a granule whose stage-2 field does not
/// show FEAT_LPA2 (TGran4_2 = 0b0010 here, while TGran16_2 = 0b0011): the
/// walker then takes DS as 0 (QEMU's `aa64_va_parameters` too, "DS is RES0
/// unless FEAT_LPA2 is supported for the given page size"), and so must the
/// decoding of L1's range TLBIs, whose BaseADDR is then in granule units.
/// It was decoded with DS = 1 (FEAT_LPA2 shown for 16KB), in 64 KiB units:
/// the range lay 16 times too high and the page L1 invalidated stayed
/// mapped after the ack. Where the granule shows FEAT_LPA2 at stage 2, DS
/// is live and BaseADDR in 64 KiB units.
#[test]
fn a_range_tlbi_takes_ds_as_the_walker_does() {
    use walker::{Endianness, ExposedFeatures, IdRegisters, Stage2Registers, Stage2Walker};
    let page = 0x8000_3000u64;
    // PARange 48; 4KB at stage 2 without LPA2 (TGran4_2 0b0010), 16KB
    // with it (TGran16 0b0010, TGran16_2 0b0011), 64KB (TGran64_2 0b0010).
    let mixed = 0b0101 | (0b0010 << 20) | (0b0011 << 32) | (0b0010 << 36) | (0b0010 << 40);
    let features = ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: mixed,
        mmfr1: 0,
        mmfr2: 0,
    })
    .unwrap();
    let vtcr = L1Tables::new(L1Memory::new(), Granule::K4).vtcr() | (1 << 32);
    let registers = Stage2Registers {
        vtcr,
        vttbr: 0,
        endianness: Endianness::Little,
    };
    assert!(
        !Stage2Walker::new(registers, &features).lpa2(),
        "the walker takes DS as 0"
    );
    // BaseADDR in 4 KiB units, 2 pages from the page.
    assert!(
        ds_range_tlbi_drops_the_page(mixed, page >> 12, 0),
        "TLBI RIPAS2E1IS over {page:#x} acked, the page still mapped"
    );
    // 4KB with FEAT_LPA2 at stage 2 (TGran4 0b0001, TGran4_2 0b0011): DS is
    // live, BaseADDR[52:16], 4 pages from 0x8000_0000.
    let lpa2 = 0b0101 | (0b0001 << 28) | (0b0011 << 32) | (0b0010 << 36) | (0b0011 << 40);
    assert!(ds_range_tlbi_drops_the_page(lpa2, page >> 16, 1));
    assert!(
        !ds_range_tlbi_drops_the_page(lpa2, page >> 12, 0),
        "read in 64 KiB units"
    );
}
