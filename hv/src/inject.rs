//! Injecting synchronous exceptions into a guest's EL1, as the hardware
//! would take them (Arm ARM AArch64.TakeException): the return state goes to
//! ELR_EL1/SPSR_EL1, the syndrome to ESR_EL1 (and FAR_EL1), and the guest
//! resumes at the right offset of VBAR_EL1 in EL1h with DAIF masked.
//!
//! The EL1 registers sit behind `El1Regs` so that the same code runs against
//! the hardware in hv and against a fake in host tests. A guest hypervisor
//! (FEAT_NV2) needs the same operation aimed at its virtual EL2.

use crate::esr::{ExceptionClass, ESR_IL};

/// The EL1 registers an exception entry writes or reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum El1Reg {
    Vbar,
    Esr,
    Far,
    Elr,
    Spsr,
}

pub trait El1Regs {
    fn read(&self, reg: El1Reg) -> u64;
    fn write(&mut self, reg: El1Reg, value: u64);
}

/// The guest's PC and PSTATE at the trap (ELR_EL2, SPSR_EL2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReturnState {
    pub pc: u64,
    pub pstate: u64,
}

const PSTATE_EL1H: u64 = 0b0101;
const PSTATE_DAIF: u64 = 0xf << 6;

/// Where in the vector table a synchronous exception from `pstate` goes.
pub fn sync_vector_offset(pstate: u64) -> u64 {
    let aarch32 = pstate & (1 << 4) != 0;
    let el = (pstate >> 2) & 3;
    match (aarch32, el, pstate & 1) {
        (true, _, _) => 0x600,
        (false, 0, _) => 0x400,
        (false, _, 0) => 0x000,
        (false, _, _) => 0x200,
    }
}

/// Takes a synchronous exception to EL1 with syndrome `esr` (and `far` for
/// aborts); returns the state the guest resumes in.
pub fn take_sync_exception(
    regs: &mut impl El1Regs,
    at: ReturnState,
    esr: u64,
    far: Option<u64>,
) -> ReturnState {
    regs.write(El1Reg::Elr, at.pc);
    regs.write(El1Reg::Spsr, at.pstate);
    regs.write(El1Reg::Esr, esr);
    if let Some(far) = far {
        regs.write(El1Reg::Far, far);
    }
    ReturnState {
        pc: regs
            .read(El1Reg::Vbar)
            .wrapping_add(sync_vector_offset(at.pstate)),
        pstate: PSTATE_EL1H | PSTATE_DAIF,
    }
}

fn from_lower_el(pstate: u64) -> bool {
    (pstate >> 2) & 3 == 0
}

/// The ESR_EL1 of a synchronous external abort on a data access, as taken
/// from `pstate` (EC differs for EL0 and EL1).
pub fn external_data_abort_syndrome(pstate: u64, write: bool) -> u64 {
    let ec = if from_lower_el(pstate) {
        ExceptionClass::DataAbortLower
    } else {
        ExceptionClass::DataAbortSame
    };
    (ec.code() as u64) << 26 | ESR_IL | (write as u64) << 6 | 0x10
}

/// The ESR_EL1 of an instruction abort (external) on a fetch.
pub fn external_instruction_abort_syndrome(pstate: u64) -> u64 {
    let ec = if from_lower_el(pstate) {
        ExceptionClass::InstructionAbortLower
    } else {
        ExceptionClass::InstructionAbortSame
    };
    (ec.code() as u64) << 26 | ESR_IL | 0x10
}

/// The ESR_EL1 of an UNDEFINED instruction.
pub fn undefined_syndrome() -> u64 {
    ESR_IL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct FakeEl1 {
        vbar: u64,
        esr: u64,
        far: u64,
        elr: u64,
        spsr: u64,
    }

    impl El1Regs for FakeEl1 {
        fn read(&self, reg: El1Reg) -> u64 {
            match reg {
                El1Reg::Vbar => self.vbar,
                El1Reg::Esr => self.esr,
                El1Reg::Far => self.far,
                El1Reg::Elr => self.elr,
                El1Reg::Spsr => self.spsr,
            }
        }
        fn write(&mut self, reg: El1Reg, value: u64) {
            match reg {
                El1Reg::Vbar => self.vbar = value,
                El1Reg::Esr => self.esr = value,
                El1Reg::Far => self.far = value,
                El1Reg::Elr => self.elr = value,
                El1Reg::Spsr => self.spsr = value,
            }
        }
    }

    #[test]
    fn vector_offsets() {
        assert_eq!(
            sync_vector_offset(0b0101),
            0x200,
            "EL1h: current EL, SP_ELx"
        );
        assert_eq!(
            sync_vector_offset(0b0100),
            0x000,
            "EL1t: current EL, SP_EL0"
        );
        assert_eq!(sync_vector_offset(0b0000), 0x400, "EL0 AArch64");
        assert_eq!(sync_vector_offset(0b10000), 0x600, "EL0 AArch32");
    }

    #[test]
    fn abort_from_el1_kernel() {
        let mut el1 = FakeEl1 {
            vbar: 0xffff_8000_1000_0000,
            ..FakeEl1::default()
        };
        let at = ReturnState {
            pc: 0xffff_8000_1234_5678,
            pstate: 0x3c5,
        };
        let esr = external_data_abort_syndrome(at.pstate, true);
        let next = take_sync_exception(&mut el1, at, esr, Some(0xffff_0000_dead_0000));
        assert_eq!(
            next,
            ReturnState {
                pc: 0xffff_8000_1000_0200,
                pstate: 0x3c5
            }
        );
        assert_eq!(el1.elr, at.pc);
        assert_eq!(el1.spsr, 0x3c5);
        assert_eq!(el1.far, 0xffff_0000_dead_0000);
        assert_eq!(el1.esr, 0x9600_0050, "EC=0x25, IL, WnR, DFSC=0x10");
    }

    #[test]
    fn undefined_from_el0() {
        let mut el1 = FakeEl1 {
            vbar: 0x1000,
            far: 7,
            ..FakeEl1::default()
        };
        let at = ReturnState {
            pc: 0x40_0000,
            pstate: 0,
        };
        let next = take_sync_exception(&mut el1, at, undefined_syndrome(), None);
        assert_eq!(next.pc, 0x1400);
        assert_eq!(el1.esr, 0x0200_0000);
        assert_eq!(el1.far, 7, "FAR untouched without an address");
        assert_eq!(external_instruction_abort_syndrome(0), 0x8200_0010);
    }
}
