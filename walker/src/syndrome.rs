//! What of the syndrome L0 trapped goes into the ESR injected into L1.
//!
//! L0 takes a stage-2 fault on its shadow for an L2 access; its walk of
//! L1's stage 2 then finds L1's fault for the same access. Hardware running
//! L1's stage 2 would have reported that fault with the ISS of the same
//! instruction: the fields that describe the instruction (ISV with
//! SAS/SSE/SRT/SF/AR, FnP, CM, LST, the ISS2 register and access-type
//! fields) come from the trapped ESR; the fields that describe the fault
//! (DFSC, S1PTW, WnR, and the fields only an external abort or a
//! translation feature the walker does not model defines) come from L1's
//! walk. [`merge_trapped_syndrome`] is that rule, field by field, from the
//! ESR_ELx "ISS encoding for an exception from a Data Abort" and "ISS2
//! encoding for an exception from a Data Abort" (Arm ARM D24.2.46).

/// ESR_ELx.EC, bits \[31:26\].
const EC_SHIFT: u32 = 26;
/// Data Abort from a lower Exception level.
const EC_DATA_ABORT_LOWER: u64 = 0x24;

/// ISV, bit 24: ISS\[23:14\] hold a valid instruction syndrome.
const ESR_ISV: u64 = 1 << 24;
/// With ISV = 1: SAS \[23:22\], SSE 21, SRT \[20:16\], SF 15, AR 14.
const ESR_INSTRUCTION_SYNDROME: u64 = 0x3ff << 14;
/// With ISV = 0, bit 15 is FnP (FEAT_SVE/FEAT_SME: FAR not precise for a
/// contiguous vector load/store), a property of the instruction.
const ESR_FNP: u64 = 1 << 15;
/// VNCR, bit 13: the fault came from EL1's use of VNCR_EL2 (always 0 with
/// EC 0x24, which excludes those aborts; kept as the instruction's).
const ESR_VNCR: u64 = 1 << 13;
/// Bits \[12:11\]: LST (the LS64 instruction) for a translation, access
/// flag or permission fault; SET for an external abort.
const ESR_LST: u64 = 0b11 << 11;
/// CM, bit 8: a cache maintenance or address translation instruction.
const ESR_CM: u64 = 1 << 8;
/// S1PTW, bit 7.
const ESR_S1PTW: u64 = 1 << 7;
/// WnR, bit 6.
const ESR_WNR: u64 = 1 << 6;
/// DFSC/IFSC, bits \[5:0\].
const ESR_FSC: u64 = 0x3f;

/// ISS2 Xs, ESR_ELx\[36:32\] (FEAT_LS64_V/ACCDATA): the ST64BV/ST64BV0
/// status register, defined (like LST) only for a translation, access flag
/// or permission fault, RES0 otherwise.
const ESR_ISS2_XS: u64 = 0x1f << 32;
/// ISS2 GCS, ESR_ELx bit 40: a Guarded Control Stack access, set for every
/// data abort of one (AArch64.FaultSyndrome).
///
/// ISS2.TnD (bit 42) is not taken: it is defined only for a *stage 1*
/// permission fault, and AArch64.S2Translate clears `s1tagnotdata`, so it
/// is 0 in every stage-2 syndrome, the trapped one included.
const ESR_ISS2_GCS: u64 = 1 << 40;

/// The ESR_EL2 to inject into L1 for a fault L1's stage 2 gives: `walk` as
/// [`Fault::syndrome`](crate::Fault::syndrome) builds it from the walk
/// (EC, IL, DFSC/IFSC, S1PTW, WnR) with the instruction's fields of
/// `trapped`, the ESR_EL2 L0 took for the stage-2 fault of the same access
/// on its shadow.
///
/// Only a data abort takes anything (both `walk` and `trapped` EC 0x24);
/// an instruction abort's ISS holds nothing but what the walk decides
/// (SET, FnV and EA are for external aborts, the rest RES0). For a data
/// abort, field by field:
/// - ISV and ISS\[23:14\]: the trapped instruction syndrome when `trapped`
///   has ISV = 1 and L1's fault can have one: not on a stage-1 walk ("a
///   stage 2 abort on a stage 1 translation table walk does not return a
///   valid instruction syndrome") and not an external abort on the walk
///   (with FEAT_RAS ISV is 0 for any synchronous External abort; without
///   it ISV is IMPLEMENTATION DEFINED there, and 0 is chosen), and, for
///   an LS64 instruction (trapped LST != 0: LD64B, ST64B, ST64BV, ST64BV0),
///   only on a translation, access flag or permission fault
///   (AArch64.InstructionSyndromeValid: `if fault.accessdesc.ls64 then
///   return fault.statuscode IN {AccessFlag, Translation, Permission}`;
///   an LS64 access is not a single-register load/store). Otherwise
///   ISV = 0 and of ISS\[23:14\] only FnP is kept, an ISV = 0 instruction
///   property; TopLevel (FEAT_THE), WU (FEAT_RASv2) and PFV (FEAT_PFAR)
///   describe faults the walker does not produce, so they are 0.
/// - VNCR: the trapped one.
/// - LST \[12:11\]: the trapped one for a translation, access flag or
///   permission fault (DFSC 0b00xxxx but not 0b0000xx, or 0b10101x);
///   otherwise SET or RES0, 0 (SET = 0b00, recoverable, for an external
///   abort on L1's walk, which is an emulated abort: nothing is lost).
/// - FnV, EA: 0. FnV is RES0 except for DFSC 0b010000, which the walker
///   never reports; EA is 0 for anything but an external abort and its
///   classification is IMPLEMENTATION DEFINED there. Any synchronous
///   external abort (IsExternalSyncAbort: DFSC 0b010000 and 0b0101LL,
///   0b010011) is treated as one on the walk above, so a caller passing
///   0x10 also gets ISV = 0.
/// - CM: the trapped one, and with CM = 1 WnR is 1 ("for faults on cache
///   maintenance and address translation instructions, this bit always
///   returns a value of 1").
/// - S1PTW, WnR, DFSC: the walk's.
/// - ISS2: GCS from `trapped`, and Xs from `trapped` where LST is (it is
///   RES0 for other faults); TnD is a stage-1 permission-fault field, 0 in
///   every stage-2 syndrome, so it is the walk's 0; the rest (HDBSSF,
///   TagAccess, AssuredOnly, Overlay, DirtyBit) describe stage-2 features
///   the walker does not model, so they are 0 as the walk has them.
pub const fn merge_trapped_syndrome(walk: u64, trapped: u64) -> u64 {
    if !is_data_abort(walk) || !is_data_abort(trapped) {
        return walk;
    }
    let fsc = walk & ESR_FSC;
    let on_stage1_walk = walk & ESR_S1PTW != 0;
    // IsExternalSyncAbort: DFSC 0b010000 (not on a walk), 0b0101LL
    // (levels 0..3) and 0b010011 (level -1).
    let external_abort = fsc == 0b01_0000 || fsc & 0b11_1100 == 0b01_0100 || fsc == 0b01_0011;
    // DFSC 0b00xxxx other than 0b0000xx, or 0b10101x: translation, access
    // flag or permission faults (levels -2..3).
    let lst_defined =
        (fsc & 0b11_0000 == 0 && fsc & 0b11_1100 != 0) || fsc & 0b11_1110 == 0b10_1010;
    let ls64 = trapped & ESR_LST != 0;
    let mut esr = walk & !(ESR_ISV | ESR_INSTRUCTION_SYNDROME | ESR_VNCR | ESR_LST | ESR_CM);
    if trapped & ESR_ISV != 0 {
        if !on_stage1_walk && !external_abort && (!ls64 || lst_defined) {
            esr |= trapped & (ESR_ISV | ESR_INSTRUCTION_SYNDROME);
        }
    } else {
        esr |= trapped & ESR_FNP;
    }
    esr |= trapped & ESR_VNCR;
    if lst_defined {
        esr |= trapped & (ESR_LST | ESR_ISS2_XS);
    }
    if trapped & ESR_CM != 0 {
        esr |= ESR_CM | ESR_WNR;
    }
    esr | (trapped & ESR_ISS2_GCS)
}

/// Whether `esr` is a Data Abort from a lower Exception level.
const fn is_data_abort(esr: u64) -> bool {
    (esr >> EC_SHIFT) & 0x3f == EC_DATA_ABORT_LOWER
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FnV, bit 10, and EA, bit 9: never taken from the trapped ESR.
    const ESR_FNV: u64 = 1 << 10;
    const ESR_EA: u64 = 1 << 9;

    /// EC 0x24, IL = 1.
    const DATA: u64 = 0x24 << 26 | 1 << 25;
    /// EC 0x20, IL = 1.
    const INSTRUCTION: u64 = 0x20 << 26 | 1 << 25;
    /// LDR W3, \[X1\]: ISV, SAS = 0b10 (word), SRT = 3.
    const LDR_W3: u64 = ESR_ISV | 0b10 << 22 | 3 << 16;
    /// STLR X30: ISV, SAS 0b11, SRT 30, SF, AR.
    const STLR_X30: u64 = ESR_ISV | 0b11 << 22 | 30 << 16 | 1 << 15 | 1 << 14 | ESR_WNR;
    /// LDRSH W5: ISV, SAS 0b01, SSE, SRT 5.
    const LDRSH_W5: u64 = ESR_ISV | 0b01 << 22 | 1 << 21 | 5 << 16;

    /// A load's instruction syndrome survives; L1's translation fault level
    /// replaces the shadow's.
    #[test]
    fn a_single_register_access_keeps_its_instruction_syndrome() {
        for trapped_iss in [LDR_W3, STLR_X30, LDRSH_W5] {
            let trapped = DATA | trapped_iss | 0x07;
            // L1: translation fault, level 1; WnR as the walk gives it.
            let walk = DATA | (trapped_iss & ESR_WNR) | 0x05;
            assert_eq!(
                merge_trapped_syndrome(walk, trapped),
                DATA | trapped_iss | 0x05,
                "{trapped:#x}"
            );
        }
        // Address size, access flag and permission faults, levels -1..3.
        for fsc in [0x00, 0x03, 0x29, 0x08, 0x0b, 0x0c, 0x0f, 0x2b] {
            let merged = merge_trapped_syndrome(DATA | fsc, DATA | LDR_W3 | 0x07);
            assert_eq!(merged, DATA | LDR_W3 | fsc, "FSC {fsc:#x}");
        }
    }

    /// What describes the fault is the walk's: DFSC, S1PTW and WnR, even
    /// where the trapped fault said otherwise.
    #[test]
    fn the_walk_decides_the_fault_fields() {
        // The shadow lacked write permission (0x0f, WnR) for a store; L1's
        // table has no entry at level 2: L1 sees a translation fault with
        // the store's WnR, which the walk reports for a write.
        let trapped = DATA | STLR_X30 | 0x0f;
        assert_eq!(
            merge_trapped_syndrome(DATA | ESR_WNR | 0x06, trapped),
            DATA | STLR_X30 | 0x06
        );
        // Trapped fields the walk owns never leak: FnV, EA, S1PTW, the
        // shadow's FSC.
        let noisy = DATA | ESR_FNV | ESR_EA | ESR_S1PTW | 0x3f;
        assert_eq!(merge_trapped_syndrome(DATA | 0x04, noisy), DATA | 0x04);
    }

    /// A fault on L2's stage-1 walk has no instruction syndrome (ISV = 0,
    /// ISS\[23:14\] RES0), even if the trapped ESR claimed one.
    #[test]
    fn a_fault_on_the_stage1_walk_has_no_instruction_syndrome() {
        let walk = DATA | ESR_S1PTW | 0x07;
        assert_eq!(merge_trapped_syndrome(walk, DATA | LDR_W3 | 0x07), walk);
        assert_eq!(
            merge_trapped_syndrome(walk, DATA | STLR_X30 | ESR_S1PTW | 0x07),
            walk
        );
    }

    /// A synchronous external abort (FSC 0b010000, or on L1's walk
    /// 0b0101LL, 0b010011) reports ISV = 0 (required with FEAT_RAS) and
    /// SET = 0, not the trapped LST.
    #[test]
    fn an_external_abort_has_no_instruction_syndrome() {
        for fsc in [0x10, 0x13, 0x14, 0x15, 0x16, 0x17] {
            let trapped = DATA | LDR_W3 | ESR_LST | 0x07;
            assert_eq!(
                merge_trapped_syndrome(DATA | fsc, trapped),
                DATA | fsc,
                "FSC {fsc:#x}"
            );
        }
    }

    /// CM comes from the instruction, and a cache maintenance fault always
    /// reports WnR = 1; ISV = 0 keeps FnP; VNCR is kept.
    #[test]
    fn instruction_properties_without_a_syndrome_are_kept() {
        let dc_cvac = DATA | ESR_CM | ESR_WNR | 0x0f;
        assert_eq!(
            merge_trapped_syndrome(DATA | 0x05, dc_cvac),
            DATA | ESR_CM | ESR_WNR | 0x05
        );
        let sve_ld1 = DATA | ESR_FNP | 0x07;
        assert_eq!(
            merge_trapped_syndrome(DATA | 0x06, sve_ld1),
            DATA | ESR_FNP | 0x06
        );
        assert_eq!(
            merge_trapped_syndrome(DATA | 0x06, DATA | ESR_VNCR | 0x07),
            DATA | ESR_VNCR | 0x06
        );
    }

    /// LST is the instruction's for translation, access flag and permission
    /// faults (levels -1..3); for an address size fault the bits are RES0.
    #[test]
    fn lst_is_kept_only_where_it_is_defined() {
        let st64b = DATA | (0b10 << 11) | 0x07;
        for fsc in [0x04, 0x07, 0x08, 0x0b, 0x0c, 0x0f, 0x2b] {
            assert_eq!(
                merge_trapped_syndrome(DATA | fsc, st64b),
                DATA | (0b10 << 11) | fsc,
                "FSC {fsc:#x}"
            );
        }
        for fsc in [0x00, 0x03, 0x29] {
            assert_eq!(
                merge_trapped_syndrome(DATA | fsc, st64b),
                DATA | fsc,
                "FSC {fsc:#x}"
            );
        }
    }

    /// ISS2: the instruction's Xs and GCS are kept; TnD (a stage-1
    /// permission-fault field, 0 in any stage-2 syndrome) and the stage-2
    /// feature fields (HDBSSF 43, TagAccess 41, AssuredOnly 39, Overlay 38,
    /// DirtyBit 37) are the walk's, 0.
    #[test]
    fn iss2_keeps_the_instruction_fields() {
        let xs = 17 << 32;
        let gcs = 1 << 40;
        let tnd = 1 << 42;
        let walk_fields = (1 << 43) | (1 << 41) | (1 << 39) | (1 << 38) | (1 << 37);
        let trapped = DATA | xs | gcs | tnd | walk_fields | 0x07;
        assert_eq!(
            merge_trapped_syndrome(DATA | 0x07, trapped),
            DATA | xs | gcs | 0x07
        );
    }

    /// ST64BV X5 (ISV, SAS 0b11, SF, LST 0b01, Xs 5) trapped on a
    /// translation fault: L1's translation or permission fault keeps all
    /// of it; L1's Address size fault has ISV = 0 and Xs RES0
    /// (AArch64.InstructionSyndromeValid for an LS64 access), though a
    /// single-register access keeps its syndrome there. GCS stays.
    #[test]
    fn an_ls64_syndrome_is_kept_only_where_lst_is_defined() {
        let st64bv = ESR_ISV | 0b11 << 22 | 1 << 15 | 0b01 << 11 | ESR_WNR;
        let xs = 5 << 32;
        let gcs = 1 << 40;
        let trapped = DATA | st64bv | xs | gcs | 0x07;
        for fsc in [0x05, 0x0b, 0x0f] {
            assert_eq!(
                merge_trapped_syndrome(DATA | ESR_WNR | fsc, trapped),
                DATA | st64bv | xs | gcs | fsc,
                "FSC {fsc:#x}"
            );
        }
        for fsc in [0x00, 0x01, 0x02, 0x03, 0x29] {
            assert_eq!(
                merge_trapped_syndrome(DATA | ESR_WNR | fsc, trapped),
                DATA | ESR_WNR | gcs | fsc,
                "FSC {fsc:#x}"
            );
        }
    }

    /// Merging again with the full trapped ESR, as hv does with the ESR the
    /// service built from ESR\[31:0\], changes nothing but adds ISS2's
    /// instruction fields: the merge is idempotent.
    #[test]
    fn merging_again_with_the_full_esr_only_adds_iss2() {
        let iss2 = (17 << 32) | (1 << 40) | (1 << 42) | (1 << 43) | (1 << 37);
        let walks = [
            DATA | 0x05,
            DATA | ESR_WNR | 0x0f,
            DATA | ESR_S1PTW | 0x07,
            DATA | 0x15,
            DATA | 0x29,
            INSTRUCTION | 0x0f,
        ];
        let trapped = [
            DATA | LDR_W3 | 0x07,
            DATA | STLR_X30 | ESR_LST | 0x0f,
            DATA | ESR_CM | ESR_WNR | ESR_FNP | ESR_VNCR | 0x07,
            DATA | ESR_S1PTW | 0x07,
            INSTRUCTION | 0x07,
        ];
        for walk in walks {
            for t in trapped {
                let full = t | iss2;
                let by_service = merge_trapped_syndrome(walk, full & 0xffff_ffff);
                assert_eq!(
                    merge_trapped_syndrome(by_service, full),
                    merge_trapped_syndrome(walk, full),
                    "{walk:#x} {full:#x}"
                );
            }
        }
    }

    /// An instruction abort takes nothing from the trapped ESR; neither does
    /// a data abort from a trapped syndrome of another class.
    #[test]
    fn only_data_aborts_merge() {
        let iabt = INSTRUCTION | 0x07;
        assert_eq!(merge_trapped_syndrome(iabt, INSTRUCTION | 0x1ff_ff00), iabt);
        assert_eq!(
            merge_trapped_syndrome(DATA | 0x07, INSTRUCTION | LDR_W3),
            DATA | 0x07
        );
        assert_eq!(merge_trapped_syndrome(iabt, DATA | LDR_W3 | 0x07), iabt);
    }
}
