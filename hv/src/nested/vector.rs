//! L1's SVE and SME vector-length controls: ZCR_EL2 (FEAT_SVE) and
//! SMCR_EL2 (FEAT_SME), which exist for L1 because it is shown both
//! features and EL2 (`idregs::shown_to_l1`: ID_AA64PFR0/PFR1 as the
//! host's).
//!
//! What traps and where each register lives (DDI 0487, the accessibility
//! pseudocode of ZCR_EL1/EL2/EL12 and SMCR_EL1/EL2/EL12, and the VNCR_EL2
//! table; QEMU 10's `target/arm` agrees):
//! - MRS/MSR ZCR_EL2 and SMCR_EL2 at EL1 with HCR_EL2.NV trap to EL2 (EC
//!   0x18) before any SVE/SME enable check: hv emulates them, applying
//!   L1's CPTR_EL2 first as the architecture does at EL2 (TZ/TSM with E2H
//!   = 0, ZEN/SMEN 0bx0 with E2H = 1: EC 0x19/0x1D, ISS 0, at L1's virtual
//!   EL2; [`L1VectorAccess`]).
//! - ZCR_EL12 and SMCR_EL12 (a VHE L1, NV1 = 0) and a non-VHE L1's
//!   ZCR_EL1 and SMCR_EL1 (NV1 = 1) are L2's registers: the VNCR words
//!   0x1E0 and 0x1F0 (`vncr::ZCR_EL1`, `vncr::SMCR_EL1`), no trap.
//! - A VHE L1's ZCR_EL1 and SMCR_EL1 (NV1 = 0: no redirection, no trap)
//!   reach the hardware ZCR_EL1 and SMCR_EL1, which at its virtual EL2
//!   with E2H = 1 name its ZCR_EL2 and SMCR_EL2. So while L1 runs the
//!   hardware EL1 registers hold L1's EL2 values, for both kinds of L1:
//!   they set the vector lengths of L1's code at hardware EL1, within hv's
//!   own ZCR_EL2/SMCR_EL2 (the longest), as the architecture gives EL2.
//!   The fields the hardware EL1 registers have are those of the EL2 ones
//!   (LEN; SMCR: FA64, EZT0), so L1 reads back the same either way.
//! - While L2 runs the hardware EL1 registers hold L2's (from the VNCR
//!   words) and the hardware ZCR_EL2/SMCR_EL2 limit them with L1's EL2
//!   values ([`l2_hardware_zcr_el2`], [`l2_hardware_smcr_el2`]): L2's
//!   Effective length is min(L2's request, L1's EL2 length), as the
//!   architecture's selection order gives at EL1 ("if the requested length
//!   is greater than the Effective length at EL2, [that] is used"), and
//!   FA64/EZT0 hold at L2's EL1 only where L1's SMCR_EL2 enables them.
//!
//! The Z, P and ZA registers themselves are never touched by hv (it is
//! built soft-float); L1 switches them between itself and L2 as on
//! hardware. A change of Effective vector length between L1 and L2 leaves
//! the bits above the shorter length as the hardware leaves them, which is
//! what hardware nesting would do with the same registers.

use crate::exit::SysRegAccess;

/// ZCR_ELx and SMCR_ELx fields.
pub mod bits {
    /// LEN \[3:0\]: the requested length, (LEN + 1) * 128 bits. Bits
    /// \[8:4\] are RAZ/WI, the rest RES0.
    pub const LEN: u64 = 0xf;
    /// SMCR_ELx.EZT0 (FEAT_SME2): 0 traps ZT0 accesses (EC 0x1D, ISS 4).
    pub const SMCR_EZT0: u64 = 1 << 30;
    /// SMCR_ELx.FA64 (FEAT_SME_FA64): every A64 instruction legal in
    /// Streaming SVE mode.
    pub const SMCR_FA64: u64 = 1 << 31;
}

/// What of SVE and SME L1 is shown (its ID registers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VectorFeatures {
    /// FEAT_SVE (ID_AA64PFR0_EL1.SVE): ZCR_EL2 exists.
    pub sve: bool,
    /// FEAT_SME (ID_AA64PFR1_EL1.SME): SMCR_EL2 exists.
    pub sme: bool,
    /// FEAT_SME_FA64 (ID_AA64SMFR0_EL1.FA64, bit 63).
    pub sme_fa64: bool,
    /// FEAT_SME2 (ID_AA64SMFR0_EL1.SMEver \[59:56\] >= 1): ZT0, EZT0.
    pub sme2: bool,
}

impl VectorFeatures {
    /// From the ID registers L1 is shown.
    pub const fn from_id_registers(pfr0: u64, pfr1: u64, smfr0: u64) -> Self {
        let sme = (pfr1 >> 24) & 0xf != 0;
        VectorFeatures {
            sve: (pfr0 >> 32) & 0xf != 0,
            sme,
            sme_fa64: sme && smfr0 >> 63 != 0,
            sme2: sme && (smfr0 >> 56) & 0xf >= 1,
        }
    }

    /// The ZCR_EL2 value L1's write of `value` leaves (what it reads
    /// back): LEN; bits \[8:4\] RAZ/WI and the rest RES0.
    pub const fn zcr_written(&self, value: u64) -> u64 {
        value & bits::LEN
    }

    /// The SMCR_EL2 value L1's write of `value` leaves: LEN, FA64 with
    /// FEAT_SME_FA64, EZT0 with FEAT_SME2; the rest RES0 (RAZ/WI).
    pub const fn smcr_written(&self, value: u64) -> u64 {
        let mut keep = bits::LEN;
        if self.sme_fa64 {
            keep |= bits::SMCR_FA64;
        }
        if self.sme2 {
            keep |= bits::SMCR_EZT0;
        }
        value & keep
    }

    /// L1's ZCR_EL2 at reset (architecturally UNKNOWN): the longest
    /// vectors, what hv's own ZCR_EL2 requests.
    pub const fn zcr_reset(&self) -> u64 {
        self.zcr_written(bits::LEN)
    }

    /// L1's SMCR_EL2 at reset (UNKNOWN): the longest streaming vectors,
    /// FA64 and EZT0 set where they exist, as hv's own
    /// (`sysregs::smcr_el2`).
    pub const fn smcr_reset(&self) -> u64 {
        self.smcr_written(bits::LEN | bits::SMCR_FA64 | bits::SMCR_EZT0)
    }
}

/// L2's hardware ZCR_EL2: hv's own `hv_zcr` limited by L1's ZCR_EL2
/// (the shorter LEN). Bits other than LEN are RES0 or RAZ/WI in both.
pub const fn l2_hardware_zcr_el2(hv_zcr: u64, l1_zcr: u64) -> u64 {
    min_len(hv_zcr, l1_zcr)
}

/// L2's hardware SMCR_EL2: hv's own `hv_smcr` limited by L1's SMCR_EL2:
/// the shorter LEN, FA64 and EZT0 only where both set them. EZT0 clear
/// makes L2's ZT0 accesses trap to hv (EC 0x1D, ISS 4), which forwards
/// them to L1 (`traps::l2_trap_route`): hv's own EZT0 is set wherever
/// FEAT_SME2 exists, so such a trap is always L1's.
pub const fn l2_hardware_smcr_el2(hv_smcr: u64, l1_smcr: u64) -> u64 {
    let flags = hv_smcr & l1_smcr & (bits::SMCR_FA64 | bits::SMCR_EZT0);
    min_len(hv_smcr, l1_smcr) | flags
}

const fn min_len(a: u64, b: u64) -> u64 {
    let (a, b) = (a & bits::LEN, b & bits::LEN);
    if a < b {
        a
    } else {
        b
    }
}

/// Which of L1's vector-length registers a trapped access names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorRegister {
    /// ZCR_EL2 (op0 3, op1 4, CRn 1, CRm 2, op2 0).
    Zcr,
    /// SMCR_EL2 (op2 6).
    Smcr,
}

impl VectorRegister {
    /// The register of a trapped MRS/MSR, or None.
    pub const fn from_access(access: &SysRegAccess) -> Option<Self> {
        if access.op0 != 3 || access.op1 != 4 || access.crn != 1 || access.crm != 2 {
            return None;
        }
        match access.op2 {
            0 => Some(VectorRegister::Zcr),
            6 => Some(VectorRegister::Smcr),
            _ => None,
        }
    }
}

/// What hv does with L1's trapped access to [`VectorRegister`] `register`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L1VectorAccess {
    /// The register does not exist for L1 (its feature is not shown):
    /// UNDEFINED, as for any unemulated encoding.
    Undefined,
    /// L1's CPTR_EL2 traps SVE (or SME) at EL2: this exception (its
    /// ESR_EL2: EC 0x19 or 0x1D, IL 1, ISS 0) at L1's virtual EL2.
    Trap(u64),
    /// The access proceeds.
    Access,
}

/// EC 0x19 (SVE) and 0x1D (SME) with IL set: a system-register access
/// trapped by CPTR_EL2, ISS 0 (for SME: SMTC 0b000).
pub const ESR_SVE_ACCESS: u64 = 0x19 << 26 | 1 << 25;
pub const ESR_SME_ACCESS: u64 = 0x1d << 26 | 1 << 25;

/// L1's trapped access to `register`, L1 shown `features`, with L1's
/// CPTR_EL2 trapping SVE (`sve_trapped_at_el2`) and SME
/// (`sme_trapped_at_el2`) at its EL2 (`traps::L1TrapControls::
/// cptr_traps_at_el2`), as the pseudocode checks them at EL2 (no FP
/// check: ZCR/SMCR accesses are governed by TZ/ZEN and TSM/SMEN only).
pub const fn l1_vector_access(
    register: VectorRegister,
    features: &VectorFeatures,
    sve_trapped_at_el2: bool,
    sme_trapped_at_el2: bool,
) -> L1VectorAccess {
    match register {
        VectorRegister::Zcr if !features.sve => L1VectorAccess::Undefined,
        VectorRegister::Smcr if !features.sme => L1VectorAccess::Undefined,
        VectorRegister::Zcr if sve_trapped_at_el2 => L1VectorAccess::Trap(ESR_SVE_ACCESS),
        VectorRegister::Smcr if sme_trapped_at_el2 => L1VectorAccess::Trap(ESR_SME_ACCESS),
        _ => L1VectorAccess::Access,
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// QEMU `-cpu max`: SVE, SME with FA64 and SMEver 1.
    const ALL: VectorFeatures = VectorFeatures {
        sve: true,
        sme: true,
        sme_fa64: true,
        sme2: true,
    };

    #[test]
    fn features_from_the_id_registers() {
        let pfr0 = 1 << 32;
        let pfr1 = 2 << 24;
        let smfr0 = 1 << 63 | 1 << 56;
        assert_eq!(VectorFeatures::from_id_registers(pfr0, pfr1, smfr0), ALL);
        assert_eq!(
            VectorFeatures::from_id_registers(0, 0, smfr0),
            VectorFeatures::default(),
            "no SME: FA64 and SME2 are not there whatever SMFR0 says"
        );
        let sme1 = VectorFeatures::from_id_registers(pfr0, pfr1, 0);
        assert!(sme1.sve && sme1.sme && !sme1.sme_fa64 && !sme1.sme2);
    }

    #[test]
    fn written_values_keep_the_defined_fields_only() {
        // LEN kept, [8:4] RAZ/WI, RES0 above.
        assert_eq!(ALL.zcr_written(0xffff_ffff_ffff_fff1), 1);
        assert_eq!(ALL.zcr_written(0x1f0), 0);
        assert_eq!(
            ALL.smcr_written(u64::MAX),
            bits::LEN | bits::SMCR_FA64 | bits::SMCR_EZT0
        );
        let sme1 = VectorFeatures {
            sme_fa64: false,
            sme2: false,
            ..ALL
        };
        assert_eq!(sme1.smcr_written(u64::MAX), bits::LEN, "FA64, EZT0 RES0");
        assert_eq!(ALL.zcr_reset(), 0xf);
        assert_eq!(ALL.smcr_reset(), 0xf | bits::SMCR_FA64 | bits::SMCR_EZT0);
        assert_eq!(sme1.smcr_reset(), 0xf);
    }

    #[test]
    fn l2_is_limited_by_l1s_el2_registers() {
        assert_eq!(l2_hardware_zcr_el2(0xf, 1), 1);
        assert_eq!(l2_hardware_zcr_el2(3, 0xf), 3, "never above hv's own");
        assert_eq!(l2_hardware_zcr_el2(0xf, 0xf), 0xf);
        let hv = 0xf | bits::SMCR_FA64 | bits::SMCR_EZT0;
        assert_eq!(l2_hardware_smcr_el2(hv, 2), 2, "FA64 and EZT0 off");
        assert_eq!(
            l2_hardware_smcr_el2(hv, 0xf | bits::SMCR_EZT0),
            0xf | bits::SMCR_EZT0
        );
        assert_eq!(
            l2_hardware_smcr_el2(1 | bits::SMCR_FA64, 0xf | bits::SMCR_FA64 | bits::SMCR_EZT0),
            1 | bits::SMCR_FA64,
            "hv's own limits stay"
        );
    }

    #[test]
    fn trapped_accesses_decode() {
        let zcr = SysRegAccess::mrs(3, 4, 1, 2, 0, 1);
        let smcr = SysRegAccess::mrs(3, 4, 1, 2, 6, 1);
        assert_eq!(VectorRegister::from_access(&zcr), Some(VectorRegister::Zcr));
        assert_eq!(
            VectorRegister::from_access(&smcr),
            Some(VectorRegister::Smcr)
        );
        // ZCR_EL1/EL12, SMCR_EL1/EL12, HCRX_EL2 (op2 2) are not these.
        for (op1, op2) in [(0, 0), (5, 0), (0, 6), (5, 6), (4, 2)] {
            let other = SysRegAccess::mrs(3, op1, 1, 2, op2, 1);
            assert_eq!(VectorRegister::from_access(&other), None);
        }
    }

    #[test]
    fn l1s_access_follows_its_cptr_el2_and_what_it_is_shown() {
        use L1VectorAccess::*;
        use VectorRegister::*;
        assert_eq!(l1_vector_access(Zcr, &ALL, false, false), Access);
        assert_eq!(l1_vector_access(Smcr, &ALL, false, false), Access);
        // The SVE trap does not cover SMCR_EL2, nor SME's ZCR_EL2.
        assert_eq!(l1_vector_access(Zcr, &ALL, true, false), Trap(0x6600_0000));
        assert_eq!(l1_vector_access(Smcr, &ALL, true, false), Access);
        assert_eq!(l1_vector_access(Smcr, &ALL, false, true), Trap(0x7600_0000));
        assert_eq!(l1_vector_access(Zcr, &ALL, false, true), Access);
        let none = VectorFeatures::default();
        assert_eq!(l1_vector_access(Zcr, &none, true, true), Undefined);
        assert_eq!(l1_vector_access(Smcr, &none, false, false), Undefined);
    }
}
