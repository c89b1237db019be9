extern crate std;

use super::entry::*;
use super::idregs::*;
use super::vncr::*;
use super::*;

#[test]
fn vncr_offsets_are_the_architected_ones() {
    // DDI 0487, VNCR_EL2 table (Linux's vncr_mapping.h lists the same).
    assert_eq!((VTTBR_EL2, VTCR_EL2, HCR_EL2), (0x20, 0x40, 0x78));
    let expected = [
        (El1Register::Sctlr, 0x110),
        (El1Register::Cpacr, 0x100),
        (El1Register::Ttbr0, 0x200),
        (El1Register::Ttbr1, 0x210),
        (El1Register::Tcr, 0x120),
        (El1Register::Mair, 0x140),
        (El1Register::Amair, 0x148),
        (El1Register::Contextidr, 0x108),
        (El1Register::Vbar, 0x250),
        (El1Register::Elr, 0x230),
        (El1Register::Spsr, 0x160),
        (El1Register::Esr, 0x138),
        (El1Register::Far, 0x220),
        (El1Register::SpEl1, 0x240),
        (El1Register::Afsr0, 0x128),
        (El1Register::Afsr1, 0x130),
        (El1Register::Mdscr, 0x158),
    ];
    assert_eq!(expected.len(), El1Register::ALL.len());
    for (register, offset) in expected {
        assert_eq!(register.vncr_offset(), offset, "{register:?}");
    }
    // Distinct, aligned, inside the page, and in `ALL` at their index.
    for (i, a) in El1Register::ALL.iter().enumerate() {
        assert_eq!(*a as usize, i);
        assert_eq!(a.vncr_offset() % 8, 0);
        assert!(a.vncr_offset() < PAGE_BYTES);
        for b in &El1Register::ALL[i + 1..] {
            assert_ne!(a.vncr_offset(), b.vncr_offset());
        }
    }
}

/// Review 39 R39-3: L1's MDSCR_EL1 accesses at virtual EL2 are the VNCR
/// word 0x158 (L2's MDSCR_EL1: KVM's guest debugging sets SS, KDE, MDE
/// there), so hv swaps it: loaded into the hardware at L1's ERET into L2,
/// saved at L2's exit with L1's own value restored.
#[test]
fn mdscr_el1_is_swapped_between_l1_and_l2() {
    assert!(El1Register::ALL
        .iter()
        .any(|register| register.vncr_offset() == 0x158));
}

#[test]
fn vncr_page_reads_what_l1_stored() {
    // Written through a shared reference: the hardware writes the page
    // too, so hv never holds a `&mut` to it (review 23 L1).
    let page: &VncrPage = &std::boxed::Box::<VncrPage>::default();
    assert_eq!(core::mem::align_of::<VncrPage>(), 4096);
    assert_eq!(core::mem::size_of::<VncrPage>(), 4096);
    page.set(VTTBR_EL2, 5 << 48 | 0x4020_0000);
    page.set(VTCR_EL2, 0x8002_3559);
    page.set(HCR_EL2, hcr::RW | hcr::VM);
    page.set_el1(El1Register::Elr, 0x1234);
    assert_eq!(page.vttbr(), 5 << 48 | 0x4020_0000);
    assert_eq!(page.vtcr(), 0x8002_3559);
    assert_eq!(page.hcr(), hcr::RW | hcr::VM);
    assert_eq!(page.el1(El1Register::Elr), 0x1234);
    assert_eq!(page.get(0x230), 0x1234);
    let mut state = El1State::default();
    state.set(El1Register::SpEl1, 7);
    assert_eq!(state.get(El1Register::SpEl1), 7);
    assert_eq!(state.get(El1Register::Sctlr), 0);
}

#[test]
fn exception_from_l2_enters_the_lower_el_vector() {
    // L2 at EL1h, interrupts unmasked, NZCV set.
    let l2 = 0xf000_0000 | EL1H;
    let entry = exception_to_vel2(
        0x4000_0800 | 0x7ff,
        Origin::LowerAarch64,
        0x8_0004,
        l2,
        Vel2Target::default(),
    );
    assert_eq!(entry.pc, 0x4000_0c00);
    // NZCV are not written by the entry (AArch64.TakeException).
    assert_eq!(entry.pstate, EL1H | DAIF | 0xf000_0000);
    assert_eq!(entry.elr, 0x8_0004);
    // SPSR_EL2 holds L2's PSTATE unchanged (an EL1 one).
    assert_eq!(entry.spsr, l2);
}

#[test]
fn exception_from_l1_itself_uses_the_current_el_vectors() {
    let l1_h = DAIF | EL1H | IL;
    let target = Vel2Target::default();
    let entry = exception_to_vel2(0x4000_0800, Origin::of_l1(l1_h), 0x4000_0100, l1_h, target);
    assert_eq!(entry.pc, 0x4000_0a00);
    // L1 sees its own PSTATE as EL2h.
    assert_eq!(entry.spsr, DAIF | EL2H | IL);
    let l1_t = EL1T;
    let entry = exception_to_vel2(0x4000_0800, Origin::of_l1(l1_t), 0x10, l1_t, target);
    assert_eq!(entry.pc, 0x4000_0800);
    assert_eq!(entry.spsr, EL2T);
    assert_eq!(entry.pstate & IL, 0);
}

/// An exception hv gives L1 while its host EL0 runs (virtual E2H = TGE =
/// 1, hardware EL0) is taken from a lower EL: VBAR_EL2 + 0x400, SPSR_EL2
/// the EL0 PSTATE as it was.
#[test]
fn exception_from_l1s_host_el0_uses_the_lower_el_vector() {
    let el0 = EL0T | (1 << 29);
    assert_eq!(Origin::of_l1(el0), Origin::LowerAarch64);
    let target = Vel2Target {
        host: true,
        ..Vel2Target::default()
    };
    let entry = exception_to_vel2(0x4000_0800, Origin::of_l1(el0), 0x40_1000, el0, target);
    assert_eq!(entry.pc, 0x4000_0c00);
    assert_eq!(entry.spsr, el0);
    assert_eq!(entry.elr, 0x40_1000);
    assert_eq!(
        entry.pstate & 0xf,
        EL1H,
        "L1's vector runs at its EL2h (hardware EL1h)"
    );
}

/// Review 34 R34-7: the entry to L1's virtual EL2 sets SSBS from
/// SCTLR_EL2.DSSBS, ALLINT from NOT SCTLR_EL2.SPINTMASK, TCO with MTE, PAN
/// only in host mode, EXLOCK only from L1 itself; it was EL2h | DAIF and
/// nothing else.
#[test]
fn entry_to_vel2_sets_pstate_from_l1s_sctlr_el2() {
    use crate::inject::{
        EntryFeatures, GCSCR_EXLOCKEN, PSTATE_ALLINT, PSTATE_EXLOCK, PSTATE_PAN, PSTATE_SSBS,
        PSTATE_TCO, SCTLR_DSSBS, SCTLR_SPAN, SCTLR_SPINTMASK,
    };
    let all = EntryFeatures {
        pan: true,
        mte: true,
        ssbs: true,
        nmi: true,
        gcs: true,
    };
    let l2 = EL1H;
    let l1 = EL1H;
    // SCTLR_EL2 with DSSBS, SPINTMASK clear, SPAN clear.
    let target = Vel2Target {
        features: all,
        sctlr: SCTLR_DSSBS,
        gcscr: GCSCR_EXLOCKEN,
        host: false,
    };
    let from_l2 = vel2_entry_pstate(l2, Origin::LowerAarch64, target);
    assert_eq!(
        from_l2,
        EL1H | DAIF | PSTATE_SSBS | PSTATE_ALLINT | PSTATE_TCO,
        "SSBS, ALLINT, TCO; no PAN outside host mode; no EXLOCK from a lower EL"
    );
    let from_l1 = vel2_entry_pstate(l1, Origin::of_l1(l1), target);
    assert_eq!(from_l1, from_l2 | PSTATE_EXLOCK, "EXLOCK from EL2 to EL2");
    // DSSBS clear, SPINTMASK set: SSBS and ALLINT 0.
    let masked = Vel2Target {
        sctlr: SCTLR_SPINTMASK,
        ..target
    };
    assert_eq!(
        vel2_entry_pstate(
            l2 | PSTATE_SSBS | PSTATE_ALLINT,
            Origin::LowerAarch64,
            masked
        ),
        EL1H | DAIF | PSTATE_TCO
    );
    // PAN: kept from the interrupted state; set by SPAN 0 only in host mode.
    assert_eq!(
        vel2_entry_pstate(l2 | PSTATE_PAN, Origin::LowerAarch64, masked) & PSTATE_PAN,
        PSTATE_PAN
    );
    let host = Vel2Target {
        host: true,
        ..masked
    };
    assert_eq!(
        vel2_entry_pstate(l1, Origin::of_l1(l1), host) & PSTATE_PAN,
        PSTATE_PAN
    );
    let host_span = Vel2Target {
        sctlr: SCTLR_SPAN,
        ..host
    };
    assert_eq!(
        vel2_entry_pstate(l1, Origin::of_l1(l1), host_span) & PSTATE_PAN,
        0
    );
    // Without the features none of them exists.
    let none = Vel2Target {
        features: EntryFeatures::default(),
        ..host
    };
    assert_eq!(vel2_entry_pstate(l1, Origin::of_l1(l1), none), EL1H | DAIF);
}

/// Review 39 R39-4: an L1 in host mode (virtual HCR_EL2.E2H = TGE = 1)
/// with SCTLR_EL2.SPAN 0, as Linux runs, gets PAN set on entry; its
/// hardware SCTLR_EL1 has SPAN forced 1, so the target takes L1's own.
#[test]
fn entry_to_vel2_in_host_mode_sets_pan_from_l1s_span() {
    use crate::inject::{EntryFeatures, PSTATE_PAN, SCTLR_DSSBS, SCTLR_SPAN};
    let features = EntryFeatures {
        pan: true,
        ..EntryFeatures::default()
    };
    let hardware = SCTLR_SPAN | SCTLR_DSSBS;
    let pan = |l1_sctlr: u64, vhcr: u64| {
        let target = Vel2Target::new(features, hardware, 0, l1_sctlr, vhcr);
        vel2_entry_pstate(EL1H, Origin::of_l1(EL1H), target) & PSTATE_PAN
    };
    let host = hcr::E2H | hcr::TGE;
    assert_eq!(pan(0, host), PSTATE_PAN, "host mode, SPAN 0");
    assert_eq!(pan(SCTLR_SPAN, host), 0, "host mode, SPAN 1");
    assert_eq!(pan(0, hcr::E2H), 0, "TGE 0: not host mode");
    assert_eq!(pan(0, hcr::TGE), 0, "E2H 0: not host mode");
    // The other fields are the hardware's.
    let target = Vel2Target::new(features, hardware, 0, 0, host);
    assert_eq!(target.sctlr, SCTLR_DSSBS);
    assert!(target.host);
}

#[test]
fn eret_to_el1_or_el0_enters_l2() {
    let vhcr = hcr::RW | hcr::VM;
    for spsr in [EL1H | DAIF, EL1T, EL0T, EL1H | 0xf000_0000] {
        assert_eq!(
            eret_from_vel2(0x8_0000, spsr, vhcr, EL1H),
            EretTarget::L2 {
                pc: 0x8_0000,
                pstate: spsr
            }
        );
    }
}

/// Review 23 H2: with virtual TGE = 1 an ERET to EL0 is L1's own host
/// userspace (EL2&0), not L2; to EL1 it is illegal.
#[test]
fn eret_to_el0_with_tge_is_l1_host_userspace() {
    let vhcr = hcr::RW | hcr::E2H | hcr::TGE;
    assert_eq!(
        eret_from_vel2(0x40_0000, EL0T, vhcr, EL1H),
        EretTarget::L1HostEl0 {
            pc: 0x40_0000,
            pstate: EL0T
        }
    );
    assert!(matches!(
        eret_from_vel2(0x40_0000, EL1H, vhcr, EL1H),
        EretTarget::Vel2 { pstate, .. } if pstate & IL != 0
    ));
    // TGE clear: EL0 is L2's.
    assert!(matches!(
        eret_from_vel2(0x40_0000, EL0T, hcr::RW | hcr::E2H, EL1H),
        EretTarget::L2 { .. }
    ));
}

#[test]
fn eret_to_el2_stays_in_l1_at_hardware_el1() {
    let vhcr = hcr::RW | hcr::VM;
    assert_eq!(
        eret_from_vel2(0x4000_1000, EL2H | DAIF, vhcr, EL1H),
        EretTarget::Vel2 {
            pc: 0x4000_1000,
            pstate: EL1H | DAIF
        }
    );
    assert_eq!(
        eret_from_vel2(0x4000_1000, EL2T, vhcr, EL1H),
        EretTarget::Vel2 {
            pc: 0x4000_1000,
            pstate: EL1T
        }
    );
}

#[test]
fn illegal_erets_set_il_and_keep_the_level() {
    let vhcr = hcr::RW | hcr::VM;
    let illegal = |spsr, hcr| eret_from_vel2(0x40, spsr, hcr, EL1H | DAIF);
    // EL3, reserved M values, AArch32, EL0 with SP_ELx, EL1 under TGE.
    for spsr in [
        0b1100,
        0b1101,
        0b0010,
        0b0011,
        0b0110,
        0b0001,
        0b1_0000 | EL1H,
    ] {
        assert_eq!(
            illegal(spsr | 0x8000_0000, vhcr),
            EretTarget::Vel2 {
                pc: 0x40,
                pstate: 0x8000_0000 | EL1H | IL
            },
            "SPSR {spsr:#b}"
        );
    }
    assert!(matches!(
        illegal(EL1H, vhcr | hcr::TGE),
        EretTarget::Vel2 { pstate, .. } if pstate & IL != 0
    ));
    // EL0 under TGE is legal: a return to EL0 of L1's EL2&0 regime (E2H
    // = 1), or of its EL1&0 regime, entered as L2's EL0 is (E2H = 0).
    assert!(matches!(
        illegal(EL0T, vhcr | hcr::TGE | hcr::E2H),
        EretTarget::L1HostEl0 { .. }
    ));
    assert_eq!(
        illegal(EL0T, vhcr | hcr::TGE),
        EretTarget::L2 {
            pc: 0x40,
            pstate: EL0T
        }
    );
}

/// Review 46 R46-4: a non-VHE L1's EL0 under TGE ({E2H, TGE} = {0, 1})
/// runs as L2's EL0 does, with the hardware TGE (stage 1 off, exceptions
/// to EL2); with E2H = 1 it is L1's host EL0, and TGE never reaches L2's
/// hardware.
#[test]
fn el0_with_tge_and_e2h_0_runs_with_the_hardware_tge() {
    assert!(runs_el0_with_tge(hcr::TGE | hcr::RW));
    assert!(!runs_el0_with_tge(hcr::TGE | hcr::E2H));
    assert!(!runs_el0_with_tge(hcr::E2H | hcr::RW | hcr::VM));
    let vhcr = hcr::RW | hcr::VM | hcr::TGE;
    assert_eq!(l2_hcr(vhcr), l2_hcr(hcr::RW | hcr::VM) | hcr::TGE);
    assert_eq!(l2_hcr(vhcr | hcr::E2H) & hcr::TGE, 0);
    // TGE routes every exception for EL1, external aborts too, to L1.
    assert!(l1_routes_external_aborts(vhcr, 0));
    assert!(!l1_routes_external_aborts(hcr::RW | hcr::VM, 0));
    // Stage 1 off under TGE or DC, whatever SCTLR_EL1.M says.
    assert!(l2_stage1_on(1, hcr::RW | hcr::VM));
    assert!(!l2_stage1_on(1, hcr::RW | hcr::VM | hcr::TGE));
    assert!(!l2_stage1_on(1, hcr::RW | hcr::VM | hcr::DC));
    assert!(!l2_stage1_on(0, hcr::RW | hcr::VM));
    // The hardware SCTLR_EL1 for that EL0: M clear, every other bit kept.
    assert_eq!(el0_tge_hardware_sctlr(0x30d0_0805), 0x30d0_0804);
    assert_eq!(el0_tge_hardware_sctlr(0x30d0_0800), 0x30d0_0800);
}

/// The exits of L1's EL0 under {E2H, TGE} = {0, 1}: stage-2 faults are
/// hv's to resolve, everything else L1's as taken, and a VA beyond the
/// 40-bit PA L1 is shown an Address size fault at level 0 of the disabled
/// stage 1, with the top byte ignored where TCR_EL1.TBI (not TBID for a
/// fetch) says.
#[test]
fn tge_el0_exits() {
    const TBI0: u64 = 1 << 37;
    const TBID0: u64 = 1 << 51;
    let pa = 40;
    // Translation faults (level 1 data read, level 3 fetch) in range.
    assert_eq!(
        tge_el0_exit(0x9200_0005, 0x10_0000, 0, pa),
        TgeEl0Exit::Stage2
    );
    assert_eq!(
        tge_el0_exit(0x8200_0007, 0x8_0000, 0, pa),
        TgeEl0Exit::Stage2
    );
    // SVC, an FP trap, an UNDEFINED, an alignment fault (stage 1), an
    // external abort, WFI: L1's as they came.
    for esr in [
        0x5600_0042,
        0x1fe0_0000,
        0x0200_0000,
        0x9200_0061,
        0x9200_0010,
        0x0600_0001,
    ] {
        assert_eq!(
            tge_el0_exit(esr, 1 << 45, 0, pa),
            TgeEl0Exit::ToL1,
            "{esr:#x}"
        );
    }
    // Beyond 40 bits: a write keeps WnR, the instruction syndrome goes.
    assert_eq!(
        tge_el0_exit(0x9300_0046 | 1 << 24 | 3 << 16, 1 << 40, 0, pa),
        TgeEl0Exit::AddressSize(0x9200_0040)
    );
    assert_eq!(
        tge_el0_exit(0x8200_0006, 0xff00_0000_0000_1000, 0, pa),
        TgeEl0Exit::AddressSize(0x8200_0000)
    );
    // A cache maintenance instruction keeps CM and WnR.
    assert_eq!(
        tge_el0_exit(0x9200_0145, 1 << 50, 0, pa),
        TgeEl0Exit::AddressSize(0x9200_0140)
    );
    // The top byte: ignored with TBI0 for data, not for a fetch with TBID0.
    let tagged = 0x5a00_0000_0010_0000;
    assert_eq!(
        tge_el0_exit(0x9200_0005, tagged, TBI0, pa),
        TgeEl0Exit::Stage2
    );
    assert_eq!(
        tge_el0_exit(0x9200_0005, tagged, 0, pa),
        TgeEl0Exit::AddressSize(0x9200_0000)
    );
    assert_eq!(
        tge_el0_exit(0x8200_0005, tagged, TBI0 | TBID0, pa),
        TgeEl0Exit::AddressSize(0x8200_0000)
    );
    assert_eq!(
        tge_el0_exit(0x8200_0005, tagged, TBI0, pa),
        TgeEl0Exit::Stage2
    );
    // TBI1 for the upper half (bit 55 set): bits [55:40] still count.
    let upper = 0xff80_0000_0000_0000;
    assert_eq!(
        tge_el0_exit(0x9200_0005, upper, 1 << 38, pa),
        TgeEl0Exit::AddressSize(0x9200_0000)
    );
    // FAR not valid (FnV): no size check.
    assert_eq!(
        tge_el0_exit(0x9200_0405, 1 << 45, 0, pa),
        TgeEl0Exit::Stage2
    );
}

#[test]
fn l2_hcr_keeps_l1_traps_and_never_nv() {
    let vhcr = hcr::RW | hcr::VM | hcr::DC | hcr::TWI | hcr::TVM | hcr::NV | hcr::NV2 | hcr::E2H;
    let l2 = l2_hcr(vhcr);
    assert_eq!(l2 & (hcr::NV | hcr::NV2 | hcr::E2H | hcr::TGE), 0);
    assert_eq!(
        l2,
        hcr::RW | hcr::VM | hcr::TSC | hcr::TID3 | hcr::DC | hcr::TWI | hcr::TVM
    );
    assert_eq!(l2_hcr(0), hcr::RW | hcr::VM | hcr::TSC | hcr::TID3);
    // Pointer authentication: L2's as L1 set it (review 23 F3); L1's own
    // never trapped.
    assert_eq!(
        l2_hcr(hcr::API | hcr::APK) & (hcr::API | hcr::APK),
        hcr::API | hcr::APK
    );
    assert_eq!(L1_HCR & (hcr::API | hcr::APK), hcr::API | hcr::APK);
    assert_eq!(
        L1_HCR & (hcr::NV | hcr::NV2 | hcr::TTLB),
        hcr::NV | hcr::NV2 | hcr::TTLB
    );
    assert_eq!(L1_HCR & (hcr::NV1 | hcr::E2H | hcr::TGE), 0);
}

#[test]
fn id_registers_hide_what_the_service_cannot_serve() {
    // A -cpu max-like host: 52-bit PA, every granule at stage 2, BigEnd,
    // FGT, ECV; 16-bit VMIDs, HAFDBS, XNX, HCX; FWB, TTL, NV2, EVT.
    let mmfr0 = 0x1122_2110_0010_1106u64 | (0b0010 << 32) | (0b0010 << 36) | (0b0011 << 40);
    let shown = shown_to_l1(IdRegister::Mmfr0, mmfr0);
    assert_eq!(shown & 0xf, L1_PA_RANGE);
    assert_eq!((shown >> 8) & 0xf, 0, "BigEnd");
    assert_eq!((shown >> 32) & 0xfff, 0x211, "TGran4_2 only");
    assert_eq!(shown >> 56, 0, "FGT, ECV");
    assert_eq!((shown >> 4) & 0xf, (mmfr0 >> 4) & 0xf, "ASIDBits kept");
    let mmfr1 = 0x0000_0100_1000_0022u64;
    let shown = shown_to_l1(IdRegister::Mmfr1, mmfr1);
    assert_eq!(shown & 0xff, 0, "HAFDBS, VMIDBits");
    assert_eq!((shown >> 28) & 0xf, 1, "XNX kept");
    assert_eq!((shown >> 40) & 0xf, 0, "HCX");
    let mmfr2 = (1u64 << 56) | (1 << 48) | (1 << 40) | (2 << 24);
    let shown = shown_to_l1(IdRegister::Mmfr2, mmfr2);
    assert_eq!(shown, 0, "NV, FWB, TTL, EVT");
    assert_eq!(shown_to_l1(IdRegister::Isar3, 0x111), 0, "TLBIW");
    // ISAR2: SYSREG_128 [35:32] and SYSINSTR_128 [39:36] hidden, WFxT
    // [3:0] and CSSC [55:52] kept.
    assert_eq!(
        shown_to_l1(IdRegister::Isar2, 0x0010_0011_0000_0002),
        0x0010_0000_0000_0002
    );
    // PFR1: GCS [47:44] hidden (R39-2), NMI [39:36], SME [27:24], MTE
    // [11:8] and SSBS [7:4] kept.
    assert_eq!(
        shown_to_l1(IdRegister::Pfr1, 0x0000_1010_0100_0120),
        0x0000_0010_0100_0120
    );
    // MMFR3: TCRX..D128_2 ([39:0]) hidden, ADERR [59:56] kept.
    assert_eq!(
        shown_to_l1(IdRegister::Mmfr3, 0x0200_0011_1111_1111),
        0x0200_0000_0000_0000
    );
    assert_eq!(
        IdRegister::from_encoding(3, 0, 0, 7, 3),
        Some(IdRegister::Mmfr3)
    );
    assert_eq!(
        shown_to_l1(IdRegister::Isar0, 0x0200_0000_0000_0000),
        0x0200_0000_0000_0000
    );
    assert_eq!(
        IdRegister::from_encoding(3, 0, 0, 7, 2),
        Some(IdRegister::Mmfr2)
    );
    assert_eq!(
        IdRegister::from_encoding(3, 0, 0, 6, 3),
        Some(IdRegister::Isar3)
    );
    assert_eq!(IdRegister::from_encoding(3, 0, 0, 1, 0), None);
    assert_eq!(IdRegister::from_encoding(3, 4, 0, 7, 2), None);
    assert!(IdRegister::in_id_space(3, 0, 0, 1));
    assert!(!IdRegister::in_id_space(3, 0, 0, 0));
}

#[test]
fn summary_says_where_the_service_answered() {
    let mut s = Summary {
        l2_entries: 4,
        translates: 5,
        injected: 1,
        ..Summary::default()
    };
    let inline = std::format!("{s}");
    assert!(inline.starts_with(
        "4 entries into L2, 5 L2 stage-2 faults sent to the service (1 answered with a fault for L1 or L2)"
    ));
    assert!(inline.contains("service (inline)"));
    s.ring_requests = 7;
    assert!(std::format!("{s}").contains("service (7 requests answered over the ipc rings)"));
}

/// The summary's walks are the full and the partial ones (it once showed
/// the full ones alone as every walk).
#[test]
fn summary_counts_full_and_partial_walks() {
    let s = Summary {
        walks: 2,
        partial_walks: 2047,
        hits: 5,
        ..Summary::default()
    };
    assert!(
        std::format!("{s}").contains(": 2049 walks of L1's table (2 full, 2047 partial), 5 hits,")
    );
}

#[test]
fn the_summary_checks_every_recycle_ran_the_handshake() {
    let mut s = Summary::default();
    // Nothing recycled: fine unless the run had to.
    assert_eq!(s.handshake_verdict(false, false), Ok(()));
    assert_eq!(
        s.handshake_verdict(true, false),
        Err(HandshakeFault::NoRecycle)
    );
    s.recycled = 3;
    s.kick_passes = 3;
    s.kicked = 3;
    s.entry_retries = 3;
    assert_eq!(s.handshake_verdict(true, false), Ok(()));
    let line = std::format!("{s}");
    assert!(line.contains("3 recycled contexts; recycling handshake: 3 kick passes (3 PEs kicked, 0 interrupted and waited for), 3 entries retried after a kick, 0 kick SGIs taken"), "{line}");
    // A recycle the kick pass did not see (a shadow without hv's
    // `reassigned`).
    s.kick_passes = 2;
    let fault = s.handshake_verdict(false, false).unwrap_err();
    assert_eq!(
        fault,
        HandshakeFault::UnkickedRecycles {
            recycled: 3,
            kick_passes: 2
        }
    );
    assert_eq!(
        std::format!("{fault}"),
        "the service recycled 3 contexts but hv's recycling handshake ran 2 kick passes"
    );
    // Two vCPUs: a PE must have been interrupted out of a victim's L2 and
    // the kick SGI taken.
    s.kick_passes = 3;
    assert_eq!(
        s.handshake_verdict(true, true),
        Err(HandshakeFault::NoInterrupt {
            waited: 0,
            kick_irqs: 0
        })
    );
    s.waited = 2;
    assert_eq!(
        s.handshake_verdict(true, true),
        Err(HandshakeFault::NoInterrupt {
            waited: 2,
            kick_irqs: 0
        })
    );
    s.kick_irqs = 2;
    assert_eq!(s.handshake_verdict(true, true), Ok(()));
}

#[test]
fn trapped_el2_registers_and_their_el1_twins() {
    let cases = [
        ((12, 0, 0), Vel2Register::Vbar, Some(El1Register::Vbar)),
        ((4, 0, 1), Vel2Register::Elr, Some(El1Register::Elr)),
        ((4, 0, 0), Vel2Register::Spsr, Some(El1Register::Spsr)),
        ((5, 2, 0), Vel2Register::Esr, Some(El1Register::Esr)),
        ((6, 0, 0), Vel2Register::Far, Some(El1Register::Far)),
        ((5, 1, 0), Vel2Register::Afsr0, Some(El1Register::Afsr0)),
        ((5, 1, 1), Vel2Register::Afsr1, Some(El1Register::Afsr1)),
        ((6, 0, 4), Vel2Register::Hpfar, None),
    ];
    for ((crn, crm, op2), register, twin) in cases {
        assert_eq!(Vel2Register::from_encoding(crn, crm, op2), Some(register));
        assert_eq!(register.twin(), twin);
    }
    // HCR_EL2 (VNCR), VTTBR_EL2 (VNCR): not trapped; CPTR_EL2, MDCR_EL2
    // (`traps`), CNTHCTL_EL2 (`timer`): trap controls, not EL1-twinned
    // registers.
    for (crn, crm, op2) in [(1, 1, 0), (2, 1, 0), (1, 1, 2), (1, 1, 1), (14, 1, 0)] {
        assert_eq!(Vel2Register::from_encoding(crn, crm, op2), None);
    }
}

#[test]
fn l2_fault_ipa_and_access() {
    // MMU off: FAR is the IPA.
    assert_eq!(l2_fault_ipa(0x10_1008, 0, false), 0x10_1008);
    // MMU on: HPFAR.FIPA (IPA[47:12] in bits [43:4]) and FAR's offset.
    assert_eq!(
        l2_fault_ipa(0xffff_0000_1234_5678, 0x101 << 4, true),
        0x10_1678
    );
    assert_eq!(
        l2_fault_ipa(0, (0xf_ffff_ffff << 4) | (1 << 63), true),
        0xffff_ffff_f000
    );
    assert_eq!(abort_access(0x9200_0007, EL1H), ipc::AccessKind::Read);
    assert_eq!(abort_access(0x9200_0047, EL1H), ipc::AccessKind::Write);
    assert_eq!(abort_access(0x8200_0007, EL1H), ipc::AccessKind::Execute);
}

/// Review 23 H1: the access kinds the service's decode accepts for the
/// syndromes L2's aborts carry.
#[test]
fn abort_access_of_walks_and_el0_fetches() {
    let key = ipc::ContextKey::new(5 << 48 | 0x4020_0000, 0x8002_3559, ipc::VmidWidth::Bits8);
    let request = |esr: u64, spsr: u64| ipc::TranslateRequest {
        context: key,
        l2_ipa: 0x10_1000,
        access: abort_access(esr, spsr),
        esr: esr as u32,
        far: 0x10_1000,
    };
    // IABT with S1PTW: the fetch's stage-1 walk read faulted at stage 2.
    assert_eq!(abort_access(0x8200_0087, EL1H), ipc::AccessKind::Read);
    assert_eq!(request(0x8200_0087, EL1H).validate(), Ok(()));
    // The same from EL0, and a DABT walk with WnR (a hardware AF update).
    assert_eq!(abort_access(0x8200_0087, EL0T), ipc::AccessKind::Read);
    assert_eq!(abort_access(0x9200_00c7, EL0T), ipc::AccessKind::Write);
    assert_eq!(request(0x9200_00c7, EL1H).validate(), Ok(()));
    // An EL0 fetch: ExecuteEl0 (stage 2 may forbid it apart from EL1's).
    assert_eq!(abort_access(0x8200_000f, EL0T), ipc::AccessKind::ExecuteEl0);
    assert_eq!(request(0x8200_000f, EL0T).validate(), Ok(()));
    assert_eq!(abort_access(0x8200_000f, EL1T), ipc::AccessKind::Execute);
    // A data read from EL0 stays a read.
    assert_eq!(abort_access(0x9200_0007, EL0T), ipc::AccessKind::Read);
}

/// Review 31 R31-2: a cache maintenance instruction (CM = 1, WnR = 1) is
/// not a write: stage 2 checks it by its own rules, at EL1 apart from
/// EL0. Its stage-1 walk (S1PTW, WnR always 1) is the walk's read, unless
/// the shadow denied the walk a permission (a hardware update's write).
#[test]
fn cache_maintenance_is_not_a_write() {
    let key = ipc::ContextKey::new(5 << 48 | 0x4020_0000, 0x8002_3559, ipc::VmidWidth::Bits8);
    let request = |esr: u64, spsr: u64| ipc::TranslateRequest {
        context: key,
        l2_ipa: 0x10_1000,
        access: abort_access(esr, spsr),
        esr: esr as u32,
        far: 0x10_1000,
    };
    // DC CVAC: translation fault at level 3, then a permission fault.
    for esr in [0x9200_0147, 0x9200_014f] {
        assert_eq!(abort_access(esr, EL1H), ipc::AccessKind::CacheMaintenance);
        assert_eq!(abort_access(esr, EL1T), ipc::AccessKind::CacheMaintenance);
        assert_eq!(
            abort_access(esr, EL0T),
            ipc::AccessKind::CacheMaintenanceEl0
        );
        assert_eq!(request(esr, EL1H).validate(), Ok(()));
        assert_eq!(request(esr, EL0T).validate(), Ok(()));
    }
    // On the stage-1 walk: a read, or a write after a permission fault.
    assert_eq!(abort_access(0x9200_01c7, EL1H), ipc::AccessKind::Read);
    assert_eq!(abort_access(0x9200_01cf, EL1H), ipc::AccessKind::Write);
    assert_eq!(request(0x9200_01c7, EL1H).validate(), Ok(()));
    assert_eq!(request(0x9200_01cf, EL1H).validate(), Ok(()));
    // A store is still a write, a load a read.
    assert_eq!(abort_access(0x9200_0047, EL1H), ipc::AccessKind::Write);
    assert_eq!(abort_access(0x9200_0007, EL1H), ipc::AccessKind::Read);
}

#[test]
fn mmfr4_hides_nv_frac() {
    assert_eq!(shown_to_l1(IdRegister::Mmfr4, 0x0110_0000), 0x0e00_0000);
}

/// Review 23 H2: L1 runs with NV1 = 0, the FEAT_NV2 layout of a guest
/// hypervisor with HCR_EL2.E2H = 1, so E2H is shown RES1: FEAT_E2H0 not
/// implemented (MMFR4.E2H0 0b1110) and FEAT_VHE present (MMFR1.VH 1),
/// whatever the host has.
#[test]
fn e2h_is_shown_res1() {
    for host in [0, u64::MAX, 0x0000_0000_0f00_0000] {
        let mmfr4 = shown_to_l1(IdRegister::Mmfr4, host);
        assert_eq!((mmfr4 >> 24) & 0xf, 0b1110, "{host:#x}");
        assert_eq!((mmfr4 >> 20) & 0xf, 0, "NV_frac, {host:#x}");
        assert_eq!(
            (shown_to_l1(IdRegister::Mmfr1, host) >> 8) & 0xf,
            1,
            "{host:#x}"
        );
    }
    // Other MMFR4 fields stay the host's.
    assert_eq!(shown_to_l1(IdRegister::Mmfr4, 0x0110_0000) & 0xf, 0);
    assert_eq!(shown_to_l1(IdRegister::Mmfr4, 0x3) & 0xf, 0x3);
}

/// Review 23 F5: HPFAR_EL2 is UNKNOWN for a permission fault not on a
/// walk with L2's stage 1 on; hv then translates FAR with L2's stage 1.
#[test]
fn fault_ipa_source_follows_hpfar_validity() {
    // DABT permission fault level 3 (DFSC 0x0f), stage 1 on: AT.
    assert_eq!(
        fault_ipa_source(0x9200_004f, true),
        FaultIpaSource::Stage1Walk
    );
    // IABT permission fault level 2 (IFSC 0x0e).
    assert_eq!(
        fault_ipa_source(0x8200_000e, true),
        FaultIpaSource::Stage1Walk
    );
    // The same on a stage-1 walk (S1PTW): HPFAR is valid.
    assert_eq!(fault_ipa_source(0x9200_008f, true), FaultIpaSource::Hpfar);
    // Translation (0x07) and Access flag (0x0b) faults: HPFAR is valid.
    assert_eq!(fault_ipa_source(0x9200_0007, true), FaultIpaSource::Hpfar);
    assert_eq!(fault_ipa_source(0x9200_000b, true), FaultIpaSource::Hpfar);
    // Stage 1 off (or DC): FAR.
    assert_eq!(fault_ipa_source(0x9200_004f, false), FaultIpaSource::Far);
    assert_eq!(fault_ipa_source(0x9200_0007, false), FaultIpaSource::Far);
    // PAR_EL1: PA [51:12] and FAR's offset; F set: none.
    assert_eq!(
        ipa_from_par(0x0000_0012_3456_7000 | 0xf00 << 44, 0xffff_0000_0000_0abc),
        Some(0x12_3456_7abc)
    );
    assert_eq!(ipa_from_par(0x809, 0x1000), None);
}

/// Review 23 F7: L1 and L2 see AArch64-only EL0 and EL1, and L2's ID
/// reads (TID3, always set for L2) are answered by hv with L1's values
/// unless L1 set TID3 itself.
#[test]
fn pfr0_is_aarch64_only_and_l2_id_reads_are_answered() {
    // Host EL0/EL1 with AArch32 (0b0010), EL2 and EL3 AArch64 only.
    let host = 0x0000_0000_0000_1122;
    let shown = shown_to_l1(IdRegister::Pfr0, host);
    assert_eq!(shown & 0xff, 0x11);
    assert_eq!(shown & 0xff00, 0x1100);
    assert_eq!(l2_hcr(0) & hcr::TID3, hcr::TID3);
    // ID_AA64PFR0_EL1 (3, 0, 0, 4, 0) read by L2: hv's, unless L1 traps it.
    assert_eq!(
        l2_id_read(0, true, 3, 0, 0, 4, 0),
        L2IdRead::Answer(Some(IdRegister::Pfr0))
    );
    // An AArch32 or reserved ID encoding reads 0 (None).
    assert_eq!(l2_id_read(0, true, 3, 0, 0, 1, 0), L2IdRead::Answer(None));
    assert_eq!(
        l2_id_read(hcr::TID3, true, 3, 0, 0, 4, 0),
        L2IdRead::ForwardToL1
    );
    // Not an ID register read: L1's (a trap L1 set).
    assert_eq!(l2_id_read(0, false, 3, 0, 1, 0, 0), L2IdRead::ForwardToL1);
}

/// Review 23 F8: the trapped `_EL2` encodings of L1's EL1-twinned
/// registers (E2H = 1: the EL1 encodings name them too) are the twins.
#[test]
fn el2_registers_with_el1_twins_are_emulated() {
    let cases = [
        ((1, 0, 0), El1Register::Sctlr),
        ((2, 0, 0), El1Register::Ttbr0),
        ((2, 0, 1), El1Register::Ttbr1),
        ((2, 0, 2), El1Register::Tcr),
        ((10, 2, 0), El1Register::Mair),
        ((10, 3, 0), El1Register::Amair),
        ((13, 0, 1), El1Register::Contextidr),
    ];
    for ((crn, crm, op2), twin) in cases {
        let register = Vel2Register::from_encoding(crn, crm, op2);
        assert_eq!(
            register.and_then(Vel2Register::twin),
            Some(twin),
            "{twin:?}"
        );
    }
    // Two bits a register in a u32 (hv's first-trap report).
    assert!(Vel2Register::Hpfar as u32 * 2 + 1 < 32);
}

/// Review 23 F8: each key is reported once, and beyond the capacity one
/// overflow report, then silence.
#[test]
fn first_seen_reports_each_key_once() {
    let mut seen = FirstSeen::<2>::default();
    assert_eq!(seen.sight(7), Sighting::First);
    assert_eq!(seen.sight(7), Sighting::Again);
    assert_eq!(seen.sight(8), Sighting::First);
    assert_eq!(seen.sight(9), Sighting::Overflow);
    assert_eq!(seen.sight(10), Sighting::Again);
    assert_eq!(seen.sight(9), Sighting::Again);
    assert_eq!(seen.sight(8), Sighting::Again);
}

/// Review 24 N2: with {E2H, TGE} = {1, 1} L1's EL1-encoded stage-1 TLBIs
/// are for its own EL2&0 regime, not L2's.
#[test]
fn stage1_tlbis_with_tge_are_l1s_own() {
    assert_eq!(
        stage1_tlbi_target(hcr::E2H | hcr::TGE | hcr::VM),
        Stage1TlbiTarget::L1Own
    );
    assert_eq!(stage1_tlbi_target(hcr::E2H | hcr::VM), Stage1TlbiTarget::L2);
    assert_eq!(stage1_tlbi_target(hcr::TGE), Stage1TlbiTarget::L2);
}

/// Review 23 L3: L1's own EL2 stage-1 TLBIs (op1 4) in OS, range and nXS
/// forms exist only when L1 was shown FEAT_TLBIOS, FEAT_TLBIRANGE, FEAT_XS.
#[test]
fn stage1_tlbi_forms_follow_the_features_shown() {
    use ipc::tlbi::TlbiFeatures;
    let none = TlbiFeatures::default();
    let all = TlbiFeatures {
        range: true,
        outer_shareable: true,
        nxs: true,
    };
    // TLBI ALLE2IS (CRn 8, CRm 3), ALLE2 (CRm 7): always.
    assert!(stage1_tlbi_form_shown(8, 3, none));
    assert!(stage1_tlbi_form_shown(8, 7, none));
    // ALLE2OS (CRm 1), RVAE2IS (CRm 2), RVAE2OS (CRm 5), RVAE2 (CRm 6),
    // ALLE2ISnXS (CRn 9): only with the feature.
    for (crn, crm) in [(8, 1), (8, 2), (8, 5), (8, 6), (9, 3), (9, 7)] {
        assert!(!stage1_tlbi_form_shown(crn, crm, none), "{crn} {crm}");
        assert!(stage1_tlbi_form_shown(crn, crm, all), "{crn} {crm}");
    }
    let os_only = TlbiFeatures {
        outer_shareable: true,
        ..none
    };
    assert!(stage1_tlbi_form_shown(8, 1, os_only));
    assert!(!stage1_tlbi_form_shown(8, 5, os_only));
}

/// Review 23 F4: the external abort hv gives L2 for an access the service
/// cannot resolve (nothing behind the L1 IPA).
#[test]
fn external_abort_syndrome_of_l2_accesses() {
    // Data write, translation fault level 3: EC 0x24, IL, WnR, FSC 0x10.
    assert_eq!(external_abort_syndrome(0x9200_0047), 0x9200_0050);
    // Data read: no WnR.
    assert_eq!(external_abort_syndrome(0x9200_0007), 0x9200_0010);
    // Instruction fetch: EC 0x20.
    assert_eq!(external_abort_syndrome(0x8200_000f), 0x8200_0010);
    // On a walk with WnR (a hardware update): neither S1PTW nor WnR.
    assert_eq!(external_abort_syndrome(0x9200_00c7), 0x9200_0010);
    assert_eq!(external_abort_syndrome(0x8200_0087), 0x8200_0010);
    // A cache maintenance instruction (CM, WnR 1 as reported): CM and WnR
    // kept (review 24 N6).
    assert_eq!(external_abort_syndrome(0x9200_0147), 0x9200_0150);
    // CM with WnR 0 in the stage-2 syndrome still reports WnR 1.
    assert_eq!(external_abort_syndrome(0x9200_0107), 0x9200_0150);
}

/// Review 24 N7: virtual HCR_EL2.TEA routes L2's external aborts to L1 only
/// when L1 is shown FEAT_RAS; without it the bit is RES0.
#[test]
fn tea_routes_external_aborts_only_with_ras() {
    let tea = 1u64 << 37;
    let ras = 1u64 << 28;
    assert!(l1_routes_external_aborts(tea, ras));
    assert!(!l1_routes_external_aborts(tea, 0));
    assert!(!l1_routes_external_aborts(0, ras));
    assert!(l1_routes_external_aborts(tea | 1, 2 << 28));
}

/// The EL2 stage-1 TLBI forms L1 may issue (op1 4), and nothing else: every
/// (CRm, op2) of CRn 8 that is neither such a form nor a stage-2 form ipc
/// decodes is unallocated (review 34 R34-8).
#[test]
fn el2_stage1_tlbi_forms_are_the_allocated_ones() {
    use crate::nested::el2_stage1_tlbi_form;
    let allocated = [
        (7, 0),
        (3, 0),
        (1, 0), // ALLE2, ALLE2IS, ALLE2OS
        (7, 1),
        (3, 1),
        (1, 1), // VAE2
        (7, 5),
        (3, 5),
        (1, 5), // VALE2
        (6, 1),
        (2, 1),
        (5, 1), // RVAE2
        (6, 5),
        (2, 5),
        (5, 5), // RVALE2
    ];
    for crm in 0..16u8 {
        for op2 in 0..8u8 {
            let stage2 = ipc::tlbi::Tlbi::from_sys_encoding(1, 4, 8, crm, op2).is_some();
            let expected = allocated.contains(&(crm, op2));
            assert_eq!(
                el2_stage1_tlbi_form(crm, op2),
                expected,
                "CRm {crm} op2 {op2}"
            );
            assert!(!(stage2 && expected), "CRm {crm} op2 {op2} is both");
        }
    }
}

/// Review 38 R38-4: a run that made a service `Worker` per L2 entry (or
/// per inline call) fails its end-of-run check; one per vCPU and one for
/// the service CPU passes.
#[test]
fn the_summary_checks_one_worker_per_vcpu() {
    let mut s = Summary {
        l2_entries: 40,
        workers: 3,
        ..Summary::default()
    };
    assert_eq!(s.workers_verdict(2), Ok(()));
    assert!(std::format!("{s}").ends_with("; 3 service workers"));
    s.workers = 41;
    let fault = s.workers_verdict(2).unwrap_err();
    assert_eq!(
        fault,
        TooManyWorkers {
            workers: 41,
            most: 3
        }
    );
    assert_eq!(
        std::format!("{fault}"),
        "hv made 41 service workers, more than the 3 of one per vCPU and one for the service CPU"
    );
    s.workers = 3;
    assert!(
        s.workers_verdict(1).is_err(),
        "one vCPU: two workers at most"
    );
}

#[test]
fn a_linux_l1_is_shown_no_sve_or_sme() {
    // `-cpu max`-like host values: SVE 1 in PFR0, SME 2 in PFR1 (with BT
    // and SSBS beside it), nonzero ZFR0 and SMFR0.
    let pfr0 = 0x1201_1111_1111_2222_u64;
    let pfr1 = 0x0000_0000_0200_0121_u64;
    let shown_pfr0 = without_sve_sme(IdRegister::Pfr0, shown_to_l1(IdRegister::Pfr0, pfr0));
    assert_eq!((shown_pfr0 >> 32) & 0xf, 0, "PFR0.SVE");
    assert_eq!(
        shown_pfr0 & !(0xf << 32),
        shown_to_l1(IdRegister::Pfr0, pfr0) & !(0xf << 32),
        "the rest of PFR0 as any L1 is shown it"
    );
    let shown_pfr1 = without_sve_sme(IdRegister::Pfr1, shown_to_l1(IdRegister::Pfr1, pfr1));
    assert_eq!(shown_pfr1, 0x121, "PFR1: SME 0, BT and SSBS kept");
    assert_eq!(without_sve_sme(IdRegister::Zfr0, 0x0110_0110_0011_0011), 0);
    assert_eq!(without_sve_sme(IdRegister::Smfr0, 0x8ff3_0000_0000_0000), 0);
    for other in [
        IdRegister::Mmfr0,
        IdRegister::Mmfr4,
        IdRegister::Isar0,
        IdRegister::Dfr0,
    ] {
        assert_eq!(
            without_sve_sme(other, 0x1234_5678_9abc_def0),
            0x1234_5678_9abc_def0
        );
    }
}

#[test]
fn l2_reads_l1s_vpidr_and_vmpidr_fields_only() {
    assert_eq!(l2_midr(0x410f_d0c1), 0x410f_d0c1);
    assert_eq!(l2_midr(0xdead_beef_410f_d0c1), 0x410f_d0c1, "[63:32] RES0");
    // Aff3, U, MT and Aff2..0 kept, bit 31 RES1, the rest RES0.
    assert_eq!(l2_mpidr(0x12_4112_3456), 0x12_c112_3456);
    assert_eq!(l2_mpidr(0), 1 << 31);
    assert_eq!(l2_mpidr(u64::MAX), 0xff_c1ff_ffff);
}

#[test]
fn spe_trf_trbe_and_brbe_are_hidden_from_l1() {
    // DebugVer 9, TraceVer 1, PMUVer 8, BRPs 5, WRPs 3, CTX_CMPs 1,
    // PMSVer 3, DoubleLock 0xf, TraceFilt 1, TraceBuffer 1, MTPMU 1,
    // BRBE 1, HPMN0 1.
    let host = 0x1011_1111_f300_5519_u64 | 0xf << 36;
    let shown = shown_to_l1(IdRegister::Dfr0, host);
    for (shift, what) in [
        (32, "PMSVer"),
        (40, "TraceFilt"),
        (44, "TraceBuffer"),
        (52, "BRBE"),
    ] {
        assert_eq!((shown >> shift) & 0xf, 0, "{what}");
    }
    let kept = !(0xf_u64 << 32 | 0xf << 40 | 0xf << 44 | 0xf << 52);
    assert_eq!(
        shown & kept,
        host & kept,
        "the PMU, debug and trace fields as the host's"
    );
    assert_eq!(shown_to_non_vhe_l1(IdRegister::Dfr0, host), shown);
}
