//! L1's trapped address translation instructions on the machine (the
//! rules: `crate::nested::at`). L1's AT S1E1*/S1E0* trap with
//! HCR_EL2.AT, its EL2 forms with HCR_EL2.NV (EC 0x18, op0 1, CRn 7, CRm 8
//! or 9); each is walked in software, never with a hardware AT (QEMU 10
//! aborts on a hardware AT S12E1R/W that meets a stage-2 permission fault),
//! and the result goes to the hardware PAR_EL1, which is L1's (no VNCR page
//! slot). L2's registers are the VNCR page's words, L1's own regime the
//! hardware EL1 registers, L1's RAM is read through L0's map of it.

use super::{
    cpu, exception_for_l1, instruction_length, read_sysreg, undefined_unemulated, write_sysreg,
    GuestFrame, L1Vel2Mode, Nested, SysRegAccess, Vcpu,
};
use crate::nested::at::{
    address_translate, external_abort_syndrome, par_fault, AtContext, AtOp, AtOutcome,
    RegimeRegisters,
};
use crate::nested::hcr;
use crate::nested::vncr::El1Register;
use crate::shadow_selftest::memory::L1Memory;
use walker::{GuestMemory, MemoryError};

/// L1's RAM as the AT walks read it: L0's map of L1, with hv's cached copy
/// of each descriptor's line dropped first (L1 may write its tables
/// through a Non-cacheable mapping, as `mmu::l1_walk_abort` reads them).
pub(super) struct L1Ram<'a>(pub(super) &'a Nested);

impl GuestMemory for L1Ram<'_> {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        if let Some(pa) = self.0.l0_map.pa_of(address) {
            cpu::clean_invalidate_dcache(pa, 8);
        }
        L1Memory::new(self.0.arena, self.0.l0_map).read_descriptor(address)
    }

    fn compare_exchange_descriptor(
        &self,
        _: u64,
        _: u64,
        _: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        // The walks make no hardware updates: L1 is shown no FEAT_HAFDBS.
        Err(MemoryError::ReadOnly)
    }
}

/// `at-no-s12`'s defect: AT S12E* answered with stage 1 only.
fn defective(nested: &Nested, op: AtOp) -> AtOp {
    if !nested.at_stage1_only {
        return op;
    }
    match op {
        AtOp::S12E1R => AtOp::S1E1R,
        AtOp::S12E1W => AtOp::S1E1W,
        AtOp::S12E0R => AtOp::S1E0R,
        AtOp::S12E0W => AtOp::S1E0W,
        op => op,
    }
}

/// `at-no-l2-fill`'s defect, what review 42 (R42-3) supposed the hardware
/// does with L2's own AT S1E1R on an unfilled shadow: the stage-2 abort of
/// a walk made for an address translation or cache maintenance
/// instruction (EC 0x24, CM, S1PTW) is not resolved but completed with
/// PAR_EL1 F = 1, S = 1, PTW = 1 and the abort's FSC. Whether it applied.
/// (Without the defect the abort goes to the service as any other: the
/// Arm ARM takes a stage-2 fault on the stage-1 walk of an AT executed
/// at EL1 to EL2 as a Data Abort, not as a PAR_EL1 value.)
pub(super) fn defective_l2_walk_abort(nested: &Nested, frame: &mut GuestFrame, esr: u64) -> bool {
    const CM_S1PTW: u64 = 1 << 8 | 1 << 7;
    if !nested.l2_at_walk_par || (esr >> 26) & 0x3f != 0x24 || esr & CM_S1PTW != CM_S1PTW {
        return false;
    }
    write_sysreg!("par_el1", par_fault((esr & 0x3f) as u8, true, true));
    frame.elr += instruction_length(esr);
    true
}

/// L1's trapped AT (op0 1, CRn 7, CRm 8 or 9): PAR_EL1, or the Data Abort
/// of an external abort on the walk; a form L1 was not shown (or none:
/// AT S1E3*) is UNDEFINED.
pub(super) fn l1_at(
    nested: &Nested,
    vcpu: &mut Vcpu,
    frame: &mut GuestFrame,
    access: SysRegAccess,
) {
    let Some(op) = AtOp::from_encoding(access.op1, access.crm, access.op2)
        .filter(|op| op.exists_for(&nested.at_features))
    else {
        return undefined_unemulated(vcpu, frame, access);
    };
    let va = frame.reg(access.rt);
    let vncr = vcpu.vncr;
    let l2 = RegimeRegisters {
        sctlr: vncr.el1(El1Register::Sctlr),
        tcr: vncr.el1(El1Register::Tcr),
        ttbr0: vncr.el1(El1Register::Ttbr0),
        ttbr1: vncr.el1(El1Register::Ttbr1),
        mair: vncr.el1(El1Register::Mair),
    };
    // L1's own EL2 (or EL2&0) regime, as hv converted it onto the
    // hardware EL1 registers (the layout and limits the hardware walks
    // L1's own accesses with).
    let l1 = RegimeRegisters {
        sctlr: read_sysreg!("sctlr_el1"),
        tcr: read_sysreg!("tcr_el1"),
        ttbr0: read_sysreg!("ttbr0_el1"),
        ttbr1: read_sysreg!("ttbr1_el1"),
        mair: read_sysreg!("mair_el1"),
    };
    // `el0-tge-no-at`'s defect: TGE ignored, the EL1&0 stage 1 walked.
    let vhcr = if nested.at_ignores_tge {
        vncr.hcr() & !hcr::TGE
    } else {
        vncr.hcr()
    };
    let context = AtContext {
        vhcr,
        vttbr: vncr.vttbr(),
        vtcr: vncr.vtcr(),
        pstate: frame.spsr,
        l2,
        l1,
        l1_non_vhe: nested.mode == L1Vel2Mode::NonVhe,
        stage1: &nested.stage1,
        stage2: &nested.exposed,
        features: nested.at_features,
    };
    match address_translate(defective(nested, op), va, &context, &L1Ram(nested)) {
        AtOutcome::Par(par) => {
            write_sysreg!("par_el1", par);
            frame.elr += instruction_length(read_sysreg!("esr_el2"));
        }
        AtOutcome::ExternalAbort { level, s1ptw } => {
            super::mid_change::aborted();
            exception_for_l1(
                vcpu,
                frame,
                external_abort_syndrome(frame.spsr, level, s1ptw),
                Some(va),
            )
        }
        // L1 executes the AT again.
        AtOutcome::Retry => {}
        // A table page mid hv's break-before-make: hv's transient fault,
        // not L1's. L1 executes the AT again, until hv's change is made.
        AtOutcome::L0Changing { .. } => {
            vcpu.fault_rate.faults.hv_resumed += 1;
            super::mid_change::resumed(crate::nested::mid_change::Resume::L1At);
        }
        // hv's own stage 2 of L1 denies the walk a read: hv's failure,
        // not an abort for L1 (nor a retry, which would loop).
        AtOutcome::L0Denied { l1_ipa } => super::l0_denied_at(nested, va, l1_ipa),
    }
}
