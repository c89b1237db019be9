//! Review 53 (R53-3, R53-4): the ID registers hv shows L1 on a host with
//! FEAT_LPA2 (QEMU's `-cpu max`): FEAT_LPA2 at stage 1 (TGran4 0b0001,
//! TGran16 0b0010), a 48-bit 4KB stage 2 (TGran4_2 0b0010, TGran16_2 and
//! TGran64_2 0b0001), PARange 40. VTCR_EL2.DS is RES0 for that stage 2 (the
//! TGran4_2 field shows no FEAT_LPA2; QEMU's `aa64_va_parameters`: "DS is
//! RES0 unless FEAT_LPA2 is supported for the given page size", per stage):
//! an L1 that sets it gets the 48-bit format, SH from the descriptor. The
//! reference models' generators never produce this combination on purpose.
#![cfg(not(loom))]

use crate::common;

use common::*;
use walker::{AccessKind, Endianness, Granule, Shareability, SlotAccess};

const HV_L1_MMFR0: u64 =
    PA_40 | (0b0010 << 20) | (0b0001 << 28) | (0b0001 << 32) | (0b0001 << 36) | (0b0010 << 40);

#[test]
fn ds_is_res0_for_a_stage_2_granule_without_lpa2_even_with_lpa2_at_stage_1() {
    let f = features(HV_L1_MMFR0, mmfr1(0, true), mmfr2(false));
    let mem = Mem::new(Endianness::Little).with_slot(0x4000_0000, 1 << 20, SlotAccess::ReadWrite);
    // 4KB, T0SZ 25 (39 bits), SL0 1 (level 1), PS 40 bits, SH0 Inner, DS.
    let vtcr = vtcr(Granule::K4, 25, 1, 2) | VTCR_DS;
    let mut b = Builder::new(
        &mem,
        Granule::K4,
        1,
        39,
        AddrFormat::Plain,
        0x4000_0000,
        1 << 20,
    );
    let ipa = 0x1234_5000;
    // SH = Outer (0b10) in bits [9:8], which DS = 1 would read as OA[51:50].
    let attrs = (1 << 10) | (0b10 << 8) | (3 << 6) | (0xf << 2);
    b.map(3, ipa, 0x80_0000_0000 - 0x1000, attrs);
    let w = walker(vtcr, b.vttbr(), Endianness::Little, &f);
    assert!(!w.lpa2(), "DS is RES0 here");
    let t = mem.with(|m| {
        w.walk(m, ipa, AccessKind::Read)
            .expect("a 48-bit walk: bits [9:8] are SH, not OA[51:50]")
    });
    assert_eq!(t.output_address, 0x80_0000_0000 - 0x1000);
    assert_eq!(t.shareability, Shareability::OuterShareable);
    // T0SZ 24 is the minimum with PAMax 40 either way; 23 faults.
    let w = walker((vtcr & !0x3f) | 23, b.vttbr(), Endianness::Little, &f);
    assert!(w.configuration_fault().is_some());
}
