//! L1's ZCR_EL2 and SMCR_EL2 on the machine (`hv.nested=sve`; the rules
//! are `crate::nested::vector`).
//!
//! - While L1 runs, the hardware ZCR_EL1 and SMCR_EL1 hold L1's ZCR_EL2
//!   and SMCR_EL2 (a VHE L1 reaches them directly through the EL1
//!   encodings; both kinds of L1 through the trapped EL2 encodings,
//!   [`l1_access`]), under hv's own hardware ZCR_EL2/SMCR_EL2 (the
//!   longest): L1's code at hardware EL1 gets the lengths its EL2 values
//!   ask for.
//! - At L1's ERET into L2 ([`enter_l2`]): L1's values are kept in its
//!   `Vcpu`, the hardware EL1 registers get L2's from the VNCR words, and
//!   the hardware EL2 registers L1's limits (`l2_hardware_*`).
//! - At every entry into L1 from L2 ([`exit_l2`]): L2's values back to
//!   the VNCR words, L1's and hv's own back into the hardware.
//!
//! Every access here is at EL2 under hv's own CPTR_EL2 (no TZ/TSM): the
//! switch into L2 runs before `traps::enter_l2` installs L1's traps, the
//! switch out after `traps::enter_l1` removed them. Only registers the
//! CPU has are touched (an SVE or SME register access is UNDEFINED
//! without the feature).

use super::{cpu, exception_for_l1, instruction_length, read_sysreg, write_sysreg};
use super::{GuestFrame, Nested, SysRegAccess, Vcpu};
use crate::nested::vector::bits::{SMCR_EZT0, SMCR_FA64};
use crate::nested::vector::{
    l1_vector_access, l2_hardware_smcr_el2, l2_hardware_zcr_el2, L1VectorAccess, VectorFeatures,
    VectorRegister,
};
use crate::nested::vncr::{SMCR_EL1, ZCR_EL1};
use crate::println;
use crate::sysregs::{self, CpuFeatures};

/// A deliberately broken hv (the `sve-no-*` twins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VectorDefect {
    None,
    /// L2 runs under hv's own ZCR_EL2 and SMCR_EL2, not limited by L1's.
    NoL2Limit,
    /// L2's lengths are limited by L1's, but its SMCR_EL2.FA64 and EZT0
    /// are hv's own.
    NoL2Fa64,
}

/// What the vector-length switch needs, fixed at set-up.
#[derive(Clone, Copy, Debug)]
pub(super) struct VectorSetup {
    /// What L1 is shown of SVE and SME.
    features: VectorFeatures,
    /// hv's own ZCR_EL2 and SMCR_EL2 (`arch::configure_el2_traps`); None
    /// where the CPU lacks the feature.
    hv_zcr: Option<u64>,
    hv_smcr: Option<u64>,
    defect: VectorDefect,
}

impl VectorSetup {
    /// For an L1 shown `pfr0`, `pfr1`, `smfr0`, on a CPU with `features`.
    pub(super) fn new(features: &CpuFeatures, shown: [u64; 3], defect: VectorDefect) -> Self {
        let [pfr0, pfr1, smfr0] = shown;
        let mut shown = VectorFeatures::from_id_registers(pfr0, pfr1, smfr0);
        // L1 is shown the host's SVE and SME (`idregs::shown_to_l1`); never
        // more, so every register [`l1_access`] touches exists.
        shown.sve &= features.has_sve();
        shown.sme &= features.has_sme();
        VectorSetup {
            features: shown,
            hv_zcr: features.has_sve().then_some(sysregs::ZCR_EL2_LONGEST),
            hv_smcr: features.has_sme().then(|| sysregs::smcr_el2(features)),
            defect,
        }
    }
}

/// On each vCPU's CPU before L1's first instruction: L1's ZCR_EL2 and
/// SMCR_EL2 at reset in the hardware EL1 registers (L2's, in the VNCR
/// words, are 0: the shortest, UNKNOWN architecturally).
pub(super) fn start_l1(nested: &Nested) {
    let v = &nested.vector;
    if v.hv_zcr.is_some() {
        write_sysreg!("s3_0_c1_c2_0", v.features.zcr_reset()); // ZCR_EL1
    }
    if v.hv_smcr.is_some() {
        write_sysreg!("s3_0_c1_c2_6", v.features.smcr_reset()); // SMCR_EL1
    }
    cpu::isb();
}

/// At L1's ERET into L2, before `traps::enter_l2`: L1's values kept, L2's
/// in the hardware EL1 registers, L1's limits in the EL2 ones.
pub(super) fn enter_l2(nested: &Nested, vcpu: &mut Vcpu) {
    let v = &nested.vector;
    let limited = v.defect != VectorDefect::NoL2Limit;
    let hv_flags = match v.defect {
        VectorDefect::NoL2Fa64 => SMCR_FA64 | SMCR_EZT0,
        _ => 0,
    };
    if let Some(hv_zcr) = v.hv_zcr {
        vcpu.l1_zcr = read_sysreg!("s3_0_c1_c2_0");
        let zcr_el2 = if limited {
            l2_hardware_zcr_el2(hv_zcr, vcpu.l1_zcr)
        } else {
            hv_zcr
        };
        write_sysreg!("s3_4_c1_c2_0", zcr_el2); // ZCR_EL2
        write_sysreg!("s3_0_c1_c2_0", vcpu.vncr.get(ZCR_EL1));
    }
    if let Some(hv_smcr) = v.hv_smcr {
        vcpu.l1_smcr = read_sysreg!("s3_0_c1_c2_6");
        let smcr_el2 = if limited {
            l2_hardware_smcr_el2(hv_smcr, vcpu.l1_smcr) | (hv_smcr & hv_flags)
        } else {
            hv_smcr
        };
        write_sysreg!("s3_4_c1_c2_6", smcr_el2); // SMCR_EL2
        write_sysreg!("s3_0_c1_c2_6", vcpu.vncr.get(SMCR_EL1));
    }
}

/// At every entry into L1 from L2, after `traps::enter_l1`: L2's values
/// to the VNCR words, L1's and hv's own back (the ERET into L1 that
/// follows synchronizes them).
pub(super) fn exit_l2(nested: &Nested, vcpu: &Vcpu) {
    let v = &nested.vector;
    if let Some(hv_zcr) = v.hv_zcr {
        vcpu.vncr.set(ZCR_EL1, read_sysreg!("s3_0_c1_c2_0"));
        write_sysreg!("s3_0_c1_c2_0", vcpu.l1_zcr);
        write_sysreg!("s3_4_c1_c2_0", hv_zcr);
    }
    if let Some(hv_smcr) = v.hv_smcr {
        vcpu.vncr.set(SMCR_EL1, read_sysreg!("s3_0_c1_c2_6"));
        write_sysreg!("s3_0_c1_c2_6", vcpu.l1_smcr);
        write_sysreg!("s3_4_c1_c2_6", hv_smcr);
    }
}

/// L1's trapped MRS/MSR of ZCR_EL2 or SMCR_EL2 (while L1 runs, so its
/// value is the hardware EL1 register's). True when handled; false for
/// other encodings and for a register L1 is not shown (the caller's
/// UNDEFINED).
pub(super) fn l1_access(
    nested: &Nested,
    vcpu: &mut Vcpu,
    frame: &mut GuestFrame,
    access: SysRegAccess,
) -> bool {
    let Some(register) = VectorRegister::from_access(&access) else {
        return false;
    };
    let v = &nested.vector;
    let at_el2 = vcpu.traps.cptr_traps_at_el2();
    match l1_vector_access(register, &v.features, at_el2.sve, at_el2.sme) {
        L1VectorAccess::Undefined => return false,
        L1VectorAccess::Trap(esr) => {
            super::once(super::Note::L1VectorTrapAtVel2);
            exception_for_l1(vcpu, frame, esr, None);
            return true;
        }
        L1VectorAccess::Access => {}
    }
    let (bit, name) = match register {
        VectorRegister::Zcr => (0, "ZCR_EL2"),
        VectorRegister::Smcr => (2, "SMCR_EL2"),
    };
    let bit = 1u8 << (bit + u8::from(access.read));
    if vcpu.vector_seen & bit == 0 {
        vcpu.vector_seen |= bit;
        println!(
            "hv: nested: L1's {} {name} traps (first time): kept in the hardware EL1 twin while L1 runs, L2's lengths limited by it",
            if access.read { "MRS" } else { "MSR" },
        );
    }
    match (register, access.read) {
        (VectorRegister::Zcr, true) => {
            let value = v.features.zcr_written(read_sysreg!("s3_0_c1_c2_0"));
            frame.set_reg(access.rt, value);
        }
        (VectorRegister::Zcr, false) => {
            let value = v.features.zcr_written(frame.reg(access.rt));
            write_sysreg!("s3_0_c1_c2_0", value);
        }
        (VectorRegister::Smcr, true) => {
            let value = v.features.smcr_written(read_sysreg!("s3_0_c1_c2_6"));
            frame.set_reg(access.rt, value);
        }
        (VectorRegister::Smcr, false) => {
            let value = v.features.smcr_written(frame.reg(access.rt));
            write_sysreg!("s3_0_c1_c2_6", value);
        }
    }
    frame.elr += instruction_length(read_sysreg!("esr_el2"));
    true
}
