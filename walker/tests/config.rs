//! Issue item 1: configuration from VTCR_EL2/VTTBR_EL2 and the ID registers
//! L0 exposes. PAMax comes from the exposed PARange; start-level and
//! input-size checks use it; the output size is min(PS, PAMax) with the
//! granule/LPA/LPA2 limits.
#![cfg(not(loom))]
// host atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use crate::common;

use common::*;
use walker::{
    AccessKind, Endianness, ExposedFeatures, FaultCause, FaultKind, Granule, GranuleSupport,
    HardwareUpdates, IdRegisterError, IdRegisters, SlotAccess,
};

fn decode(mmfr0: u64, mmfr1: u64, mmfr2: u64) -> Result<ExposedFeatures, IdRegisterError> {
    ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0,
        mmfr1,
        mmfr2,
    })
}

#[test]
fn pa_range_decodes_to_pamax_and_reserved_values_are_errors() {
    for (range, bits) in [
        (0, 32),
        (1, 36),
        (2, 40),
        (3, 42),
        (4, 44),
        (5, 48),
        (6, 52),
    ] {
        assert_eq!(decode(mmfr0(range), 0, 0).unwrap().pa_max_bits(), bits);
    }
    assert_eq!(
        decode(mmfr0(7), 0, 0),
        Err(IdRegisterError::UnsupportedPaRange56)
    );
    for range in 8..16 {
        assert_eq!(
            decode(mmfr0(range), 0, 0),
            Err(IdRegisterError::ReservedPaRange(range as u8))
        );
    }
}

#[test]
fn stage2_granule_fields_defer_to_stage1_fields_when_zero() {
    let f = decode(mmfr0(PA_48), 0, 0).unwrap();
    assert_eq!(f.stage2_granule(Granule::K4), GranuleSupport::Supported);
    assert_eq!(f.stage2_granule(Granule::K16), GranuleSupport::Supported);
    assert_eq!(f.stage2_granule(Granule::K64), GranuleSupport::Supported);
    // TGran4 = 1 (52-bit) with TGran4_2 = 0 gives 52-bit at stage 2 too.
    let f = decode(PA_52 | (1 << 28), 0, 0).unwrap();
    assert_eq!(
        f.stage2_granule(Granule::K4),
        GranuleSupport::Supported52Bit
    );
    assert_eq!(f.stage2_granule(Granule::K16), GranuleSupport::Unsupported);
    // TGran*_2 = 1: not supported at stage 2 even though stage 1 has it.
    let f = decode(mmfr0(PA_48) | (1 << 40) | (1 << 36), 0, 0).unwrap();
    assert_eq!(f.stage2_granule(Granule::K4), GranuleSupport::Unsupported);
    assert_eq!(f.stage2_granule(Granule::K64), GranuleSupport::Unsupported);
    assert_eq!(f.stage2_granule(Granule::K16), GranuleSupport::Supported);
    // Reserved encodings.
    assert!(matches!(
        decode(mmfr0(PA_48) | (3 << 36), 0, 0),
        Err(IdRegisterError::ReservedGranuleField {
            field: "TGran64_2",
            value: 3
        })
    ));
    assert!(matches!(
        decode(PA_48 | (5 << 28), 0, 0),
        Err(IdRegisterError::ReservedGranuleField {
            field: "TGran4",
            ..
        })
    ));
    // Nothing at stage 2.
    assert_eq!(
        decode(mmfr0(PA_48) | (1 << 40) | (1 << 36) | (1 << 32), 0, 0),
        Err(IdRegisterError::NoStage2Granule)
    );
}

#[test]
fn hafdbs_xnx_and_st_decode_and_reject_what_is_not_implemented() {
    let f = decode(mmfr0(PA_48), mmfr1(2, true), mmfr2(true)).unwrap();
    assert_eq!(f.hardware_updates(), HardwareUpdates::AccessFlagAndDirty);
    assert!(f.xnx() && f.ttst());
    // 0b0011 is FEAT_HAFT; 0b0100 (FEAT_HDBSS) and above are not implemented.
    assert_eq!(
        decode(mmfr0(PA_48), 3, 0).unwrap().hardware_updates(),
        HardwareUpdates::AccessFlagDirtyAndTables
    );
    for hafdbs in 4..16 {
        assert_eq!(
            decode(mmfr0(PA_48), hafdbs, 0),
            Err(IdRegisterError::UnsupportedHafdbs(hafdbs as u8))
        );
    }
    assert_eq!(
        decode(mmfr0(PA_48), 2 << 28, 0),
        Err(IdRegisterError::ReservedXnx(2))
    );
    assert_eq!(
        decode(mmfr0(PA_48), 0, 3 << 28),
        Err(IdRegisterError::ReservedSt(3))
    );
}

/// ID_AA64MMFR1_EL1.VMIDBits: 8 or 16 bits (FEAT_VMID16), the rest
/// reserved.
#[test]
fn vmid_bits_decode_and_reserved_values_are_errors() {
    assert!(!decode(mmfr0(PA_48), 0, 0).unwrap().vmid16());
    assert!(decode(mmfr0(PA_48), 2 << 4, 0).unwrap().vmid16());
    for v in [1u64, 3, 0xf] {
        assert_eq!(
            decode(mmfr0(PA_48), v << 4, 0),
            Err(IdRegisterError::ReservedVmidBits(v as u8))
        );
    }
}

/// Review 3 F4: composition decodes L1's stage-2 MemAttr with the
/// HCR_EL2.FWB = 0 table only, so FEAT_S2FWB exposed to L1 (MMFR2.FWB,
/// bits [43:40]) is L0's configuration error, named in the message.
#[test]
fn s2fwb_exposed_to_l1_is_refused() {
    for fwb in 1..16u64 {
        let error = decode(mmfr0(PA_48), 0, mmfr2(true) | fwb << 40).unwrap_err();
        assert_eq!(error, IdRegisterError::UnsupportedS2Fwb(fwb as u8));
        let text = error.to_string();
        assert!(
            text.contains("FWB") && text.contains("FEAT_S2FWB"),
            "{text}"
        );
    }
    // The fields around FWB are not FWB's business.
    assert!(decode(mmfr0(PA_48), 0, mmfr2(true) | 0xf << 36 | 0xf << 44).is_ok());
}

/// The review point that started the project: the start level is checked
/// against the PAMax L0 exposes, not the input size L1 programmed.
#[test]
fn start_level_limits_use_exposed_pamax() {
    // 4KB, SL0 = 2 (start level 0), 40-bit input: consistent, and valid
    // only when PAMax >= 44.
    let regs = vtcr(Granule::K4, 24, 2, 2);
    for (range, valid) in [(PA_40, false), (PA_42, false), (PA_44, true), (PA_48, true)] {
        let w = walker(regs, 0, Endianness::Little, &features(mmfr0(range), 0, 0));
        let expect = if valid {
            None
        } else {
            Some(FaultCause::InvalidStartLevel)
        };
        assert_eq!(w.configuration_fault(), expect, "PARange {range}");
    }
    // 16KB SL0 = 2 (start level 1) needs PAMax >= 42; 64KB SL0 = 2 needs 44.
    let regs16 = vtcr(Granule::K16, 64 - 37, 2, 2);
    let regs64 = vtcr(Granule::K64, 64 - 43, 2, 2);
    let w = walker(regs16, 0, Endianness::Little, &features(mmfr0(PA_40), 0, 0));
    assert_eq!(w.configuration_fault(), Some(FaultCause::InvalidStartLevel));
    let w = walker(regs16, 0, Endianness::Little, &features(mmfr0(PA_42), 0, 0));
    assert_eq!(w.configuration_fault(), None);
    // With PAMax 42 a 43-bit input already fails the T0SZ check, which
    // the pseudocode makes first.
    let w = walker(regs64, 0, Endianness::Little, &features(mmfr0(PA_42), 0, 0));
    assert!(matches!(
        w.configuration_fault(),
        Some(FaultCause::InputSizeOutOfRange { min: 22, .. })
    ));
    let w = walker(regs64, 0, Endianness::Little, &features(mmfr0(PA_44), 0, 0));
    assert_eq!(w.configuration_fault(), None);
}

/// The input-size check fails: T0SZ below 64 - PAMax (exposed) faults.
#[test]
fn input_size_check_uses_exposed_pamax_and_can_fail() {
    let mem = Mem::new(Endianness::Little).with_slot(0x1000_0000, 1 << 20, SlotAccess::ReadWrite);
    for (range, pa_bits) in [
        (PA_32, 32u64),
        (PA_36, 36),
        (PA_40, 40),
        (PA_44, 44),
        (PA_48, 48),
    ] {
        let f = features(mmfr0(range), 0, 0);
        // Start level 1 (SL0 = 1) is valid for every PAMax and takes 31..=43 bits.
        let ok = walker(
            vtcr(Granule::K4, 64 - pa_bits.min(43), 1, 0),
            0x1000_0000,
            Endianness::Little,
            &f,
        );
        assert_eq!(ok.configuration_fault(), None, "PA {pa_bits}");
        // One bit more input than PAMax.
        let w = walker(
            vtcr(Granule::K4, 63 - pa_bits, 1, 0),
            0x1000_0000,
            Endianness::Little,
            &f,
        );
        let e = mem.with(|m| w.walk(m, 0, AccessKind::Read)).unwrap_err();
        let fault = e.fault().unwrap();
        assert_eq!(
            (fault.kind(), fault.level, fault.fsc()),
            (FaultKind::Translation, 0, 0x04)
        );
        assert_eq!(
            fault.cause,
            FaultCause::InputSizeOutOfRange {
                t0sz: 63 - pa_bits as u8,
                min: 64 - pa_bits as u8,
                max: 39
            }
        );
    }
    // PAMax 52: 4KB without DS still stops at 48 bits; 64KB reaches 52.
    let f = features(mmfr0(PA_52), 0, 0);
    let w = walker(vtcr(Granule::K4, 12, 2, 6), 0, Endianness::Little, &f);
    assert!(matches!(
        w.configuration_fault(),
        Some(FaultCause::InputSizeOutOfRange { min: 16, .. })
    ));
    let w = walker(vtcr(Granule::K64, 12, 2, 6), 0, Endianness::Little, &f);
    assert_eq!(w.configuration_fault(), None);
}

#[test]
fn ipa_beyond_the_input_size_is_a_level_0_translation_fault() {
    let mem = Mem::new(Endianness::Little).with_slot(0x1000_0000, 1 << 20, SlotAccess::ReadWrite);
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5),
        0x1000_0000,
        Endianness::Little,
        &features_48(),
    );
    for ipa in [1u64 << 40, (1 << 40) | 0x1000, 1 << 55, 1 << 63, u64::MAX] {
        let e = mem.with(|m| w.walk(m, ipa, AccessKind::Read)).unwrap_err();
        let f = e.fault().unwrap();
        assert_eq!(
            (f.cause, f.level, f.fsc()),
            (FaultCause::IpaOutOfRange, 0, 0x04)
        );
        assert!(f.trail.is_empty());
    }
}

#[test]
fn output_size_is_min_of_ps_and_pamax_with_granule_limits() {
    let cases = [
        // (mmfr0, granule, t0sz, sl0, ps, extra vtcr, expected bits)
        (mmfr0(PA_40), Granule::K4, 24, 1, 5, 0, 40), // PS 48 > PAMax 40
        (mmfr0(PA_48), Granule::K4, 24, 1, 2, 0, 40), // PS 40 < PAMax
        (mmfr0(PA_48), Granule::K4, 24, 1, 7, 0, 48), // PS reserved 0b111: clamped
        (mmfr0(PA_52), Granule::K4, 24, 1, 6, 0, 48), // 52 needs 64KB or LPA2
        (mmfr0(PA_52), Granule::K64, 24, 1, 6, 0, 52), // FEAT_LPA
        (mmfr0(PA_48), Granule::K64, 24, 1, 6, 0, 48), // no LPA exposed
        (mmfr0_lpa2(PA_52), Granule::K4, 24, 1, 6, VTCR_DS, 52),
        (mmfr0_lpa2(PA_52), Granule::K16, 24, 1, 6, VTCR_DS, 52),
        (mmfr0_lpa2(PA_44), Granule::K4, 24, 1, 6, VTCR_DS, 44),
        (mmfr0(PA_32), Granule::K4, 32, 1, 0, 0, 32),
    ];
    for (m0, granule, t0sz, sl0, ps, extra, bits) in cases {
        let w = walker(
            vtcr(granule, t0sz, sl0, ps) | extra,
            0,
            Endianness::Little,
            &features(m0, 0, 0),
        );
        assert_eq!(
            w.output_size_bits(),
            bits,
            "{granule:?} PS={ps} mmfr0={m0:#x}"
        );
    }
}

/// VTTBR BADDR beyond the output size: address size fault at level 0.
#[test]
fn baddr_beyond_output_size_is_a_level_0_address_size_fault() {
    let mem = Mem::new(Endianness::Little)
        .with_slot(0x1000_0000, 1 << 16, SlotAccess::ReadWrite)
        .with_slot(1 << 40, 1 << 16, SlotAccess::ReadWrite);
    // PS = 40 bits; the table at 2^40 is in memory but beyond the output size.
    for (granule, sl0, t0sz) in [
        (Granule::K4, 1, 24),
        (Granule::K16, 1, 30),
        (Granule::K64, 1, 30),
    ] {
        let w = walker(
            vtcr(granule, t0sz, sl0, 2),
            1 << 40,
            Endianness::Little,
            &features_48(),
        );
        let rec = mem.with(|m| {
            let r = Recording::new(m);
            let e = w.walk(&r, 0x1000, AccessKind::Read).unwrap_err();
            let reads = r.reads.borrow().len();
            (e, reads)
        });
        let f = rec.0.fault().unwrap();
        assert_eq!(
            (f.cause, f.kind(), f.level, f.fsc()),
            (
                FaultCause::BaseAddressOutOfRange,
                FaultKind::AddressSize,
                0,
                0x00
            ),
            "{granule:?}"
        );
        assert_eq!(rec.1, 0, "no descriptor is read");
    }
    // PAMax (not PS alone) bounds it too: PS = 48 but PAMax 40.
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5),
        1 << 40,
        Endianness::Little,
        &features(mmfr0(PA_40), 0, 0),
    );
    let e = mem.with(|m| w.walk(m, 0, AccessKind::Read)).unwrap_err();
    assert_eq!(e.fault().unwrap().cause, FaultCause::BaseAddressOutOfRange);
    // Start level -1 (LPA2): still reported at level 0, as the pseudocode does.
    let f52 = features(mmfr0_lpa2(PA_52), 0, 0);
    let w = walker(
        vtcr(Granule::K4, 12, 0, 5) | VTCR_DS | VTCR_SL2,
        vttbr_for(AddrFormat::Ds, 1 << 50),
        Endianness::Little,
        &f52,
    );
    assert_eq!(w.start_level(), Some(-1));
    let e = mem.with(|m| w.walk(m, 0, AccessKind::Read)).unwrap_err();
    let f = e.fault().unwrap();
    assert_eq!(
        (f.cause, f.level, f.fsc()),
        (FaultCause::BaseAddressOutOfRange, 0, 0x00)
    );
}

#[test]
fn reserved_or_unsupported_tg0_picks_the_smallest_supported_granule() {
    // TG0 = 0b11 is reserved: 4KB.
    let w = walker(
        3 << 14 | 24 | (1 << 6),
        0,
        Endianness::Little,
        &features_48(),
    );
    assert_eq!(w.granule(), Granule::K4);
    // 4KB not supported at stage 2: 16KB.
    let no4k = features(mmfr0(PA_48) | (1 << 40), 0, 0);
    let w = walker(vtcr(Granule::K4, 24, 1, 5), 0, Endianness::Little, &no4k);
    assert_eq!(w.granule(), Granule::K16);
    let w = walker(3 << 14, 0, Endianness::Little, &no4k);
    assert_eq!(w.granule(), Granule::K16);
    // Only 64KB.
    let only64 = features(mmfr0(PA_48) | (1 << 40) | (1 << 32), 0, 0);
    let w = walker(vtcr(Granule::K16, 24, 1, 5), 0, Endianness::Little, &only64);
    assert_eq!(w.granule(), Granule::K64);
    // A supported programmed granule is kept.
    let w = walker(vtcr(Granule::K64, 24, 1, 5), 0, Endianness::Little, &no4k);
    assert_eq!(w.granule(), Granule::K64);
}

#[test]
fn hardware_update_enables_follow_hafdbs() {
    let regs = vtcr(Granule::K4, 24, 1, 5) | VTCR_HA | VTCR_HD | VTCR_HAFT;
    for (hafdbs, ha, hd, haft) in [
        (0, false, false, false),
        (1, true, false, false),
        (2, true, true, false),
        (3, true, true, true),
    ] {
        let w = walker(
            regs,
            0,
            Endianness::Little,
            &features(mmfr0(PA_48), hafdbs, 0),
        );
        assert_eq!(
            (
                w.hardware_access_flag(),
                w.hardware_dirty_state(),
                w.hardware_table_access_flag()
            ),
            (ha, hd, haft),
            "HAFDBS {hafdbs}"
        );
    }
    // HD without HA does nothing.
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5) | VTCR_HD,
        0,
        Endianness::Little,
        &features(mmfr0(PA_48), 2, 0),
    );
    assert!(!w.hardware_dirty_state());
}
