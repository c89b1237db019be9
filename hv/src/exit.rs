//! A guest exit, classified from ESR_EL2: what the vCPU's fault handler
//! dispatches on. The classes a guest hypervisor (FEAT_NV2) adds, trapped
//! ERET and trapped system instructions (EL2 registers, TLBI, AT), are
//! decoded here already, so nested support plugs into the same dispatch.

use crate::esr::ExceptionClass;
use core::fmt;

/// A trapped MSR, MRS or system instruction (ESR_ELx.EC 0x18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    pub op0: u8,
    pub op1: u8,
    pub crn: u8,
    pub crm: u8,
    pub op2: u8,
    /// The general-purpose register (31 is XZR).
    pub rt: u8,
    /// MRS (a read into Rt); otherwise MSR or SYS.
    pub read: bool,
}

impl SysRegAccess {
    /// Decodes the ISS of an EC 0x18 syndrome.
    pub fn from_iss(iss: u64) -> Self {
        let bits = |shift: u32, width: u32| ((iss >> shift) & ((1 << width) - 1)) as u8;
        Self {
            op0: bits(20, 2),
            op2: bits(17, 3),
            op1: bits(14, 3),
            crn: bits(10, 4),
            rt: bits(5, 5),
            crm: bits(1, 4),
            read: iss & 1 == 1,
        }
    }

    /// An MRS of (op0, op1, CRn, CRm, op2) into X`rt`.
    pub const fn mrs(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8, rt: u8) -> Self {
        Self {
            op0,
            op1,
            crn,
            crm,
            op2,
            rt,
            read: true,
        }
    }

    /// The ESR_ELx of this access trapped (EC 0x18, IL 1): what
    /// [`SysRegAccess::from_iss`] decodes.
    pub const fn esr(&self) -> u64 {
        0x18 << 26
            | 1 << 25
            | (self.op0 as u64) << 20
            | (self.op2 as u64) << 17
            | (self.op1 as u64) << 14
            | (self.crn as u64) << 10
            | (self.rt as u64) << 5
            | (self.crm as u64) << 1
            | self.read as u64
    }

    /// A TLB maintenance instruction (SYS with op0=1, CRn=8): with FEAT_NV2
    /// these are how a guest hypervisor invalidates its stage 2.
    pub fn is_tlbi(&self) -> bool {
        self.op0 == 1 && self.crn == 8
    }

    /// An address translation instruction (AT: op0=1, CRn=7, CRm=8 or 9).
    pub fn is_at(&self) -> bool {
        self.op0 == 1 && self.crn == 7 && (self.crm == 8 || self.crm == 9)
    }

    /// A register in the EL2 encoding space (op0=3, op1=4) or EL12/EL02
    /// aliases (op1=5): what a guest hypervisor touches at virtual EL2.
    pub fn is_el2_register(&self) -> bool {
        self.op0 == 3 && (self.op1 == 4 || self.op1 == 5)
    }
}

impl fmt::Display for SysRegAccess {
    /// The generic assembler name, e.g. `S3_4_C1_C1_0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.op0 == 1 {
            "sys"
        } else if self.read {
            "mrs"
        } else {
            "msr"
        };
        write!(
            f,
            "{what} S{}_{}_C{}_C{}_{} (x{})",
            self.op0, self.op1, self.crn, self.crm, self.op2, self.rt
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestExit {
    /// HVC #imm: PSCI and other SMCCC calls.
    Hvc {
        imm: u16,
    },
    /// SMC #imm, trapped by HCR_EL2.TSC: treated as an SMCCC call.
    Smc {
        imm: u16,
    },
    /// A stage-2 data abort: emulated MMIO or a bad access.
    DataAbort,
    /// A stage-2 instruction abort.
    InstructionAbort,
    /// WFI or WFE, when trapped.
    Wfx {
        wfe: bool,
    },
    SysReg(SysRegAccess),
    /// ERET trapped (a guest hypervisor returning to its guest, FEAT_NV).
    Eret,
    /// An instruction the hardware could not classify (EC 0).
    Unknown,
    Other(u8),
}

impl GuestExit {
    pub fn from_esr(esr: u64) -> Self {
        let iss = esr & 0x1ff_ffff;
        match ExceptionClass::from_esr(esr) {
            ExceptionClass::HvcAarch64 => Self::Hvc { imm: iss as u16 },
            ExceptionClass::SmcAarch64 => Self::Smc { imm: iss as u16 },
            ExceptionClass::DataAbortLower => Self::DataAbort,
            ExceptionClass::InstructionAbortLower => Self::InstructionAbort,
            ExceptionClass::WfxTrap => Self::Wfx { wfe: iss & 1 == 1 },
            ExceptionClass::SysRegTrap => Self::SysReg(SysRegAccess::from_iss(iss)),
            ExceptionClass::Unknown => Self::Unknown,
            ExceptionClass::Other(0x1a) => Self::Eret,
            other => Self::Other(other.code()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn calls_and_waits() {
        assert_eq!(GuestExit::from_esr(0x5a00_0000), GuestExit::Hvc { imm: 0 });
        assert_eq!(
            GuestExit::from_esr(0x5e00_0000 | 0x1234),
            GuestExit::Smc { imm: 0x1234 }
        );
        assert_eq!(
            GuestExit::from_esr(0x0600_0001 | 1 << 25),
            GuestExit::Wfx { wfe: true }
        );
        assert_eq!(
            GuestExit::from_esr(0x0600_0000),
            GuestExit::Wfx { wfe: false }
        );
        assert_eq!(GuestExit::from_esr(0x9200_0047), GuestExit::DataAbort);
        assert_eq!(GuestExit::from_esr(0x6800_0000), GuestExit::Eret);
        assert_eq!(GuestExit::from_esr(0xbe00_0000), GuestExit::Other(0x2f));
    }

    fn sysreg_esr(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8, rt: u8, read: bool) -> u64 {
        let access = SysRegAccess {
            op0,
            op1,
            crn,
            crm,
            op2,
            rt,
            read,
        };
        assert_eq!(SysRegAccess::from_iss(access.esr() & 0x1ff_ffff), access);
        access.esr()
    }

    #[test]
    fn system_register_traps() {
        // MSR HCR_EL2, x3 (S3_4_C1_C1_0): an EL2 register.
        let GuestExit::SysReg(access) = GuestExit::from_esr(sysreg_esr(3, 4, 1, 1, 0, 3, false))
        else {
            panic!("not a sysreg exit");
        };
        assert!(access.is_el2_register() && !access.read && !access.is_tlbi());
        assert_eq!(access.to_string(), "msr S3_4_C1_C1_0 (x3)");
        // TLBI VMALLS12E1IS (sys #4, C8, C3, #6).
        let GuestExit::SysReg(tlbi) = GuestExit::from_esr(sysreg_esr(1, 4, 8, 3, 6, 31, false))
        else {
            panic!("not a sysreg exit");
        };
        assert!(tlbi.is_tlbi() && !tlbi.is_el2_register());
        assert_eq!(tlbi.to_string(), "sys S1_4_C8_C3_6 (x31)");
        // AT S12E1R (sys #4, C7, C8, #4) and an MRS of CNTPCT_EL0.
        let GuestExit::SysReg(at) = GuestExit::from_esr(sysreg_esr(1, 4, 7, 8, 4, 0, false)) else {
            panic!("not a sysreg exit");
        };
        assert!(at.is_at());
        let GuestExit::SysReg(mrs) = GuestExit::from_esr(sysreg_esr(3, 3, 14, 0, 1, 9, true))
        else {
            panic!("not a sysreg exit");
        };
        assert_eq!(mrs.to_string(), "mrs S3_3_C14_C0_1 (x9)");
    }
}
