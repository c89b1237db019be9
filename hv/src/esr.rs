//! Decoding ESR_EL2 for exits from a guest: the exception class and, for data
//! aborts, the syndrome of the access (Arm ARM D24.2.41, "ISS encoding for an
//! exception from a Data Abort").

use core::fmt;

/// The exception classes hv handles or reports by name (ESR_ELx.EC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    Unknown,
    WfxTrap,
    HvcAarch64,
    SmcAarch64,
    SysRegTrap,
    InstructionAbortLower,
    InstructionAbortSame,
    DataAbortLower,
    DataAbortSame,
    SError,
    BrkAarch64,
    Other(u8),
}

impl ExceptionClass {
    pub fn from_esr(esr: u64) -> Self {
        match ((esr >> 26) & 0x3f) as u8 {
            0x00 => Self::Unknown,
            0x01 => Self::WfxTrap,
            0x16 => Self::HvcAarch64,
            0x17 => Self::SmcAarch64,
            0x18 => Self::SysRegTrap,
            0x20 => Self::InstructionAbortLower,
            0x21 => Self::InstructionAbortSame,
            0x24 => Self::DataAbortLower,
            0x25 => Self::DataAbortSame,
            0x2f => Self::SError,
            0x3c => Self::BrkAarch64,
            other => Self::Other(other),
        }
    }

    /// The EC field value, for messages and for building syndromes.
    pub fn code(self) -> u8 {
        match self {
            Self::Unknown => 0x00,
            Self::WfxTrap => 0x01,
            Self::HvcAarch64 => 0x16,
            Self::SmcAarch64 => 0x17,
            Self::SysRegTrap => 0x18,
            Self::InstructionAbortLower => 0x20,
            Self::InstructionAbortSame => 0x21,
            Self::DataAbortLower => 0x24,
            Self::DataAbortSame => 0x25,
            Self::SError => 0x2f,
            Self::BrkAarch64 => 0x3c,
            Self::Other(code) => code,
        }
    }
}

/// ESR_ELx.IL: the trapped instruction was 32 bits long.
pub const ESR_IL: u64 = 1 << 25;

/// A data abort's ISS.ISV and the instruction syndrome it validates
/// (SAS, SSE, SRT, SF, AR: ISS[23:14]).
const ESR_ISV_AND_SYNDROME: u64 = 0x7ff << 14;

/// `esr` as a data abort without its instruction syndrome (ISV = 0, as
/// for an access the syndrome cannot describe): the defect of the twin
/// `hv.nested=linux-no-l2-syndrome`, which hands L2's stage-2 aborts to a
/// Linux L1 so, and L1's KVM cannot emulate L2's MMIO store. Other
/// exception classes are returned as they are.
pub fn without_instruction_syndrome(esr: u64) -> u64 {
    match ExceptionClass::from_esr(esr) {
        ExceptionClass::DataAbortLower | ExceptionClass::DataAbortSame => {
            esr & !ESR_ISV_AND_SYNDROME
        }
        _ => esr,
    }
}

/// The page of the faulting IPA a stage-2 abort reports in HPFAR_EL2:
/// bits \[43:4\] of FIPA are IPA \[51:12\], the most a 52-bit IPA
/// (FEAT_LPA) needs. FIPA's bits \[47:44\] (IPA \[55:52\]) exist only with
/// FEAT_D128's 56-bit IPAs, which hv neither uses nor shows, and are RES0
/// without it: left out, as bit 63 (NS) is. Its page offset is FAR_EL2's.
pub const fn hpfar_ipa_page(hpfar: u64) -> u64 {
    ((hpfar >> 4) & ((1 << 40) - 1)) << 12
}

/// The length in bytes of the trapped instruction, by which hv advances
/// the guest's PC when it completes the instruction for the guest (an
/// emulated load or store, a trapped SMC, system register or WFx): 2 for a
/// 16-bit T32 instruction (ESR_ELx.IL = 0), else 4 (A64, A32, 32-bit T32).
pub fn instruction_length(esr: u64) -> u64 {
    if esr & ESR_IL != 0 {
        4
    } else {
        2
    }
}

/// Width of a single-register access (ISS.SAS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessSize {
    Byte,
    Half,
    Word,
    Double,
}

impl AccessSize {
    pub fn bytes(self) -> u64 {
        match self {
            Self::Byte => 1,
            Self::Half => 2,
            Self::Word => 4,
            Self::Double => 8,
        }
    }

    /// A mask of the low `bytes()` bytes.
    pub fn mask(self) -> u64 {
        match self {
            Self::Double => u64::MAX,
            other => (1u64 << (other.bytes() * 8)) - 1,
        }
    }
}

/// The fault status code class of a data or instruction abort (DFSC/IFSC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStatus {
    AddressSize { level: i8 },
    Translation { level: i8 },
    AccessFlag { level: i8 },
    Permission { level: i8 },
    SyncExternal,
    Alignment,
    Other(u8),
}

impl FaultStatus {
    pub fn from_fsc(fsc: u8) -> Self {
        let level = (fsc & 3) as i8;
        match fsc & 0x3f {
            0x00..=0x03 => Self::AddressSize { level },
            0x29 => Self::AddressSize { level: -1 },
            0x04..=0x07 => Self::Translation { level },
            0x2b => Self::Translation { level: -1 },
            0x08..=0x0b => Self::AccessFlag { level },
            0x0c..=0x0f => Self::Permission { level },
            0x10 => Self::SyncExternal,
            0x21 => Self::Alignment,
            other => Self::Other(other),
        }
    }
}

/// A data abort syndrome, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbort {
    /// ISS.ISV: the fields below describing the access are valid.
    pub syndrome_valid: bool,
    pub size: AccessSize,
    /// ISS.SSE: a load sign-extends to the register width.
    pub sign_extend: bool,
    /// ISS.SRT: the transfer register (31 means XZR/WZR).
    pub register: u8,
    /// ISS.SF: the register is 64 bits wide (else 32).
    pub sixty_four: bool,
    /// ISS.WnR: a write.
    pub write: bool,
    /// ISS.S1PTW: the fault was on a stage-1 table walk.
    pub stage1_walk: bool,
    /// ISS.CM: a cache maintenance operation.
    pub cache_maintenance: bool,
    /// ISS.FnV: FAR is not valid.
    pub far_not_valid: bool,
    /// ISS.EA: external abort type (implementation defined).
    pub external: bool,
    pub status: FaultStatus,
}

impl DataAbort {
    pub fn from_esr(esr: u64) -> Self {
        let iss = esr & 0x1ff_ffff;
        let bit = |n: u32| (iss >> n) & 1 == 1;
        Self {
            syndrome_valid: bit(24),
            size: match (iss >> 22) & 3 {
                0 => AccessSize::Byte,
                1 => AccessSize::Half,
                2 => AccessSize::Word,
                _ => AccessSize::Double,
            },
            sign_extend: bit(21),
            register: ((iss >> 16) & 0x1f) as u8,
            sixty_four: bit(15),
            far_not_valid: bit(10),
            external: bit(9),
            cache_maintenance: bit(8),
            stage1_walk: bit(7),
            write: bit(6),
            status: FaultStatus::from_fsc((iss & 0x3f) as u8),
        }
    }
}

/// Why a data abort cannot be emulated as a single MMIO access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotEmulable {
    /// ISV=0: load/store pair, writeback, SIMD, ... (would need the instruction).
    NoSyndrome,
    /// The abort happened on the guest's own stage-1 walk, not on its access.
    Stage1Walk,
    /// A cache maintenance or address translation instruction.
    CacheMaintenance,
    /// Not a stage-2 translation fault: something other than "unmapped".
    NotTranslationFault(FaultStatus),
}

impl fmt::Display for NotEmulable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSyndrome => f.write_str("no instruction syndrome (ISV=0)"),
            Self::Stage1Walk => f.write_str("stage-1 table walk touched device memory"),
            Self::CacheMaintenance => f.write_str("cache maintenance on device memory"),
            Self::NotTranslationFault(status) => write!(f, "fault status {status:?}"),
        }
    }
}

/// One guest load or store to emulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// The intermediate physical address accessed.
    pub ipa: u64,
    pub size: AccessSize,
    pub kind: MmioKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioKind {
    /// A load into `register`, sign-extended when `sign_extend`, 64 or 32 bit.
    Read {
        register: u8,
        sign_extend: bool,
        sixty_four: bool,
    },
    /// A store of the low `size` bytes of `register` (31 stores zero).
    Write { register: u8 },
}

impl MmioAccess {
    /// The access described by a stage-2 data abort syndrome. `hpfar` is
    /// HPFAR_EL2 ([`hpfar_ipa_page`]: FIPA \[43:4\] = IPA \[51:12\]) and
    /// `far` supplies the low 12 bits of the address.
    pub fn decode(esr: u64, far: u64, hpfar: u64) -> Result<Self, NotEmulable> {
        let abort = DataAbort::from_esr(esr);
        if !matches!(abort.status, FaultStatus::Translation { .. }) {
            return Err(NotEmulable::NotTranslationFault(abort.status));
        }
        if abort.stage1_walk {
            return Err(NotEmulable::Stage1Walk);
        }
        if abort.cache_maintenance {
            return Err(NotEmulable::CacheMaintenance);
        }
        if !abort.syndrome_valid {
            return Err(NotEmulable::NoSyndrome);
        }
        let ipa = hpfar_ipa_page(hpfar) | (far & 0xfff);
        let kind = if abort.write {
            MmioKind::Write {
                register: abort.register,
            }
        } else {
            MmioKind::Read {
                register: abort.register,
                sign_extend: abort.sign_extend,
                sixty_four: abort.sixty_four,
            }
        };
        Ok(Self {
            ipa,
            size: abort.size,
            kind,
        })
    }

    /// The register value a load leaves, given what the device returned:
    /// sign extension (SSE) to the register width (SF), and a 32-bit
    /// destination zero-extends into the X register as on hardware.
    pub fn load_result(&self, raw: u64) -> u64 {
        let MmioKind::Read {
            sign_extend,
            sixty_four,
            ..
        } = self.kind
        else {
            return 0;
        };
        let value = raw & self.size.mask();
        let extended = if sign_extend && self.size != AccessSize::Double {
            let shift = 64 - self.size.bytes() * 8;
            (((value << shift) as i64) >> shift) as u64
        } else {
            value
        };
        if sixty_four {
            extended
        } else {
            extended & 0xffff_ffff
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpfar_gives_the_ipa_page_without_ns_or_res0_bits() {
        // FIPA of IPA 0x12_3456_7000, NS set, as hardware reports it.
        assert_eq!(hpfar_ipa_page(1 << 63 | 0x0123_4567 << 4), 0x12_3456_7000);
        // The top of a 52-bit IPA (FIPA bits [43:4] all set); bits [47:44]
        // RES0, left out.
        assert_eq!(hpfar_ipa_page(0xffff_ffff_fff0), 0x000f_ffff_ffff_f000);
    }

    #[test]
    fn the_instruction_syndrome_is_dropped_from_data_aborts_only() {
        // L2's `str w7, [x8]` at an IPA L1's stage 2 does not map: EC
        // 0x24, IL, ISV, SAS word, SRT 7, WnR, DFSC translation level 3.
        let store = dabt(true, 2, false, 7, false, true, 0x07);
        let without = without_instruction_syndrome(store);
        assert_eq!(without, (0x24 << 26) | ESR_IL | 1 << 6 | 0x07);
        let abort = DataAbort::from_esr(without);
        assert!(!abort.syndrome_valid && abort.write);
        assert_eq!(
            MmioAccess::decode(without, 0, 0),
            Err(NotEmulable::NoSyndrome)
        );
        // An instruction abort has no such fields; an HVC's ISS is its
        // immediate.
        for other in [
            (0x20 << 26) | ESR_IL | 0x07,
            (0x16 << 26) | ESR_IL | 0x1ff_ffff,
        ] {
            assert_eq!(without_instruction_syndrome(other), other);
        }
    }

    /// Builds a data-abort ESR from its fields.
    fn dabt(isv: bool, sas: u64, sse: bool, srt: u64, sf: bool, wnr: bool, dfsc: u64) -> u64 {
        (0x24 << 26)
            | ESR_IL
            | (isv as u64) << 24
            | sas << 22
            | (sse as u64) << 21
            | srt << 16
            | (sf as u64) << 15
            | (wnr as u64) << 6
            | dfsc
    }

    #[test]
    fn classes_round_trip() {
        for code in 0u8..64 {
            let esr = (code as u64) << 26;
            assert_eq!(ExceptionClass::from_esr(esr).code(), code);
        }
        assert_eq!(
            ExceptionClass::from_esr(0x5a00_0000),
            ExceptionClass::HvcAarch64
        );
        assert_eq!(
            ExceptionClass::from_esr(0x9200_0046),
            ExceptionClass::DataAbortLower
        );
    }

    #[test]
    fn trapped_instructions_are_skipped_by_their_length() {
        // A 16-bit T32 `ldr r2, [r0, #4]` from AArch32 EL0 at an emulated
        // device: EC 0x24, IL = 0, ISV, word load into r2.
        let t16 = dabt(true, 2, false, 2, false, false, 0x07) & !ESR_IL;
        assert_eq!(instruction_length(t16), 2);
        // The 32-bit `ldr.w` of the same access, and any A64 instruction.
        assert_eq!(
            instruction_length(dabt(true, 2, false, 2, false, false, 0x07)),
            4
        );
        assert_eq!(instruction_length(0x5e00_0000 | ESR_IL), 4, "SMC");
        assert_eq!(instruction_length(0x0600_0000 | ESR_IL), 4, "WFI");
    }

    #[test]
    fn word_store_from_w3() {
        let esr = dabt(true, 2, false, 3, false, true, 0x07);
        let access = MmioAccess::decode(esr, 0xffff_0000_0000_0018, 0x9000 << 4).unwrap();
        assert_eq!(access.ipa, 0x0900_0018);
        assert_eq!(access.size, AccessSize::Word);
        assert_eq!(access.kind, MmioKind::Write { register: 3 });
    }

    #[test]
    fn sign_extending_byte_load() {
        let esr = dabt(true, 0, true, 5, true, false, 0x06);
        let access = MmioAccess::decode(esr, 0x10, 0x1234 << 4).unwrap();
        assert_eq!(access.ipa, 0x123_4010);
        assert_eq!(access.load_result(0x80), 0xffff_ffff_ffff_ff80);
        assert_eq!(access.load_result(0x7f), 0x7f);
        // A 32-bit destination (SF=0) zero-extends past bit 31.
        let w = MmioAccess::decode(dabt(true, 0, true, 5, false, false, 0x06), 0, 0).unwrap();
        assert_eq!(w.load_result(0x80), 0xffff_ff80);
        // Bits above the access size from the device are dropped.
        let h = MmioAccess::decode(dabt(true, 1, false, 1, true, false, 0x06), 0, 0).unwrap();
        assert_eq!(h.load_result(0xdead_beef), 0xbeef);
    }

    #[test]
    fn accesses_that_cannot_be_emulated() {
        assert_eq!(
            MmioAccess::decode(dabt(false, 2, false, 0, false, false, 0x07), 0, 0),
            Err(NotEmulable::NoSyndrome)
        );
        assert_eq!(
            MmioAccess::decode(dabt(true, 2, false, 0, false, false, 0x0f), 0, 0),
            Err(NotEmulable::NotTranslationFault(FaultStatus::Permission {
                level: 3
            }))
        );
        let walk = dabt(true, 2, false, 0, false, false, 0x07) | 1 << 7;
        assert_eq!(MmioAccess::decode(walk, 0, 0), Err(NotEmulable::Stage1Walk));
        let cm = dabt(true, 2, false, 0, false, false, 0x07) | 1 << 8;
        assert_eq!(
            MmioAccess::decode(cm, 0, 0),
            Err(NotEmulable::CacheMaintenance)
        );
    }

    #[test]
    fn fault_status_levels() {
        assert_eq!(
            FaultStatus::from_fsc(0x05),
            FaultStatus::Translation { level: 1 }
        );
        assert_eq!(
            FaultStatus::from_fsc(0x2b),
            FaultStatus::Translation { level: -1 }
        );
        assert_eq!(
            FaultStatus::from_fsc(0x0a),
            FaultStatus::AccessFlag { level: 2 }
        );
        assert_eq!(FaultStatus::from_fsc(0x10), FaultStatus::SyncExternal);
        assert_eq!(FaultStatus::from_fsc(0x3f), FaultStatus::Other(0x3f));
    }
}
