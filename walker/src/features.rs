//! What L0 exposes to L1: the ID register fields that shape a stage-2 walk.
//!
//! The walk must use the features L1 was *told* it has (the PAMax that
//! L0 exposes, not the host's), so these are decoded from the ID register
//! values L0 presents to L1, once, into [`ExposedFeatures`]. A reserved or
//! unsupported ID register value is L0's own configuration error: it is a
//! precise [`IdRegisterError`], never a guest-visible fault.

use core::fmt;

/// The raw ID register values L0 exposes to L1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IdRegisters {
    /// ID_AA64MMFR0_EL1: PARange and the TGran* / TGran*_2 fields.
    pub mmfr0: u64,
    /// ID_AA64MMFR1_EL1: HAFDBS, VMIDBits and XNX.
    pub mmfr1: u64,
    /// ID_AA64MMFR2_EL1: ST (FEAT_TTST); FWB (FEAT_S2FWB) must be 0.
    ///
    /// L0 must hide FEAT_S2FWB from L1 (FWB, bits \[43:40\], read as 0):
    /// with HCR_EL2.FWB = 1 L1's stage-2 MemAttr is a different encoding
    /// (MemAttr\[2\] = 1 forces the type), and composition with L0's map
    /// (shadow-mmu) implements only the FWB = 0 table, so an exposed
    /// FEAT_S2FWB is refused ([`IdRegisterError::UnsupportedS2Fwb`]).
    pub mmfr2: u64,
}

/// A translation granule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granule {
    /// 4KB granule.
    K4,
    /// 16KB granule.
    K16,
    /// 64KB granule.
    K64,
}

impl Granule {
    /// log2 of the granule size in bytes (TGxGranuleBits).
    pub const fn bits(self) -> u32 {
        match self {
            Granule::K4 => 12,
            Granule::K16 => 14,
            Granule::K64 => 16,
        }
    }

    /// Granule size in bytes.
    pub const fn size(self) -> u64 {
        1 << self.bits()
    }

    /// Bits of input address resolved per level (granule bits - log2(8)).
    pub const fn stride(self) -> u32 {
        self.bits() - 3
    }
}

/// Whether stage 2 supports a granule, as the ID registers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GranuleSupport {
    /// Not supported at stage 2.
    Unsupported,
    /// Supported with 48-bit addresses.
    Supported,
    /// Supported, including the 52-bit FEAT_LPA2 format (VTCR_EL2.DS).
    Supported52Bit,
}

/// Hardware management of the access flag and dirty state (HAFDBS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HardwareUpdates {
    /// HAFDBS = 0: no hardware updates.
    None,
    /// HAFDBS = 1: hardware access flag only.
    AccessFlag,
    /// HAFDBS = 2: hardware access flag and dirty state.
    AccessFlagAndDirty,
    /// HAFDBS = 3 (FEAT_HAFT): as 2, and the access flag in table
    /// descriptors too (VTCR_EL2.HAFT).
    AccessFlagDirtyAndTables,
}

/// An ID register value this walker cannot honour (L0's configuration error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdRegisterError {
    /// ID_AA64MMFR0_EL1.PARange is a reserved encoding.
    ReservedPaRange(u8),
    /// PARange = 0b0111 (56 bits) needs FEAT_D128, which this walker does not implement.
    UnsupportedPaRange56,
    /// A TGran* or TGran*_2 field holds a reserved encoding.
    ReservedGranuleField {
        /// The field's name, e.g. "TGran4_2".
        field: &'static str,
        /// The field's value.
        value: u8,
    },
    /// No granule is supported at stage 2.
    NoStage2Granule,
    /// HAFDBS is 0b0100 (FEAT_HDBSS) or above; only 0 to 3 are implemented.
    UnsupportedHafdbs(u8),
    /// ID_AA64MMFR1_EL1.XNX is reserved.
    ReservedXnx(u8),
    /// ID_AA64MMFR1_EL1.VMIDBits is reserved (only 0b0000, 8 bits, and
    /// 0b0010, 16 bits, are defined).
    ReservedVmidBits(u8),
    /// ID_AA64MMFR2_EL1.ST is reserved.
    ReservedSt(u8),
    /// ID_AA64MMFR2_EL1.FWB is not 0: FEAT_S2FWB exposed to L1. Only
    /// HCR_EL2.FWB = 0 is implemented (L1's stage-2 MemAttr is decoded
    /// with the FWB = 0 table), so L0 must hide FEAT_S2FWB.
    UnsupportedS2Fwb(u8),
}

impl fmt::Display for IdRegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            IdRegisterError::ReservedPaRange(v) => {
                write!(f, "ID_AA64MMFR0_EL1.PARange {v:#x} is reserved")
            }
            IdRegisterError::UnsupportedPaRange56 => write!(
                f,
                "ID_AA64MMFR0_EL1.PARange 0b0111 (56-bit, FEAT_D128) is not supported"
            ),
            IdRegisterError::ReservedGranuleField { field, value } => {
                write!(f, "ID_AA64MMFR0_EL1.{field} {value:#x} is reserved")
            }
            IdRegisterError::NoStage2Granule => {
                write!(f, "ID_AA64MMFR0_EL1 supports no granule at stage 2")
            }
            IdRegisterError::UnsupportedHafdbs(v) => write!(
                f,
                "ID_AA64MMFR1_EL1.HAFDBS {v:#x} is not supported (only 0, 1, 2, 3)"
            ),
            IdRegisterError::ReservedXnx(v) => write!(f, "ID_AA64MMFR1_EL1.XNX {v:#x} is reserved"),
            IdRegisterError::ReservedVmidBits(v) => {
                write!(f, "ID_AA64MMFR1_EL1.VMIDBits {v:#x} is reserved")
            }
            IdRegisterError::ReservedSt(v) => write!(f, "ID_AA64MMFR2_EL1.ST {v:#x} is reserved"),
            IdRegisterError::UnsupportedS2Fwb(v) => write!(
                f,
                "ID_AA64MMFR2_EL1.FWB {v:#x} is not supported (only 0: hide FEAT_S2FWB from L1, \
                 stage-2 MemAttr is decoded with HCR_EL2.FWB = 0)"
            ),
        }
    }
}

/// The decoded features L0 exposes to L1 that matter to a stage-2 walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExposedFeatures {
    pa_max_bits: u32,
    granule_4k: GranuleSupport,
    granule_16k: GranuleSupport,
    granule_64k: GranuleSupport,
    hardware_updates: HardwareUpdates,
    xnx: bool,
    ttst: bool,
    vmid16: bool,
}

fn field(reg: u64, lsb: u32) -> u8 {
    ((reg >> lsb) & 0xf) as u8
}

impl ExposedFeatures {
    /// Decode the ID register values L0 exposes to L1.
    pub fn from_id_registers(ids: IdRegisters) -> Result<Self, IdRegisterError> {
        let pa_max_bits = match field(ids.mmfr0, 0) {
            0 => 32,
            1 => 36,
            2 => 40,
            3 => 42,
            4 => 44,
            5 => 48,
            6 => 52,
            7 => return Err(IdRegisterError::UnsupportedPaRange56),
            v => return Err(IdRegisterError::ReservedPaRange(v)),
        };
        // Stage-1 fields; the stage-2 fields may defer to them (value 0).
        let tgran4 = match field(ids.mmfr0, 28) {
            0b0000 => GranuleSupport::Supported,
            0b0001 => GranuleSupport::Supported52Bit,
            0b1111 => GranuleSupport::Unsupported,
            value => {
                return Err(IdRegisterError::ReservedGranuleField {
                    field: "TGran4",
                    value,
                })
            }
        };
        let tgran64 = match field(ids.mmfr0, 24) {
            0b0000 => GranuleSupport::Supported,
            0b1111 => GranuleSupport::Unsupported,
            value => {
                return Err(IdRegisterError::ReservedGranuleField {
                    field: "TGran64",
                    value,
                })
            }
        };
        let tgran16 = match field(ids.mmfr0, 20) {
            0b0000 => GranuleSupport::Unsupported,
            0b0001 => GranuleSupport::Supported,
            0b0010 => GranuleSupport::Supported52Bit,
            value => {
                return Err(IdRegisterError::ReservedGranuleField {
                    field: "TGran16",
                    value,
                })
            }
        };
        let stage2 =
            |name: &'static str, lsb: u32, stage1: GranuleSupport, has_52: bool| match field(
                ids.mmfr0, lsb,
            ) {
                0b0000 => Ok(stage1),
                0b0001 => Ok(GranuleSupport::Unsupported),
                0b0010 => Ok(GranuleSupport::Supported),
                0b0011 if has_52 => Ok(GranuleSupport::Supported52Bit),
                value => Err(IdRegisterError::ReservedGranuleField { field: name, value }),
            };
        let granule_4k = stage2("TGran4_2", 40, tgran4, true)?;
        let granule_64k = stage2("TGran64_2", 36, tgran64, false)?;
        let granule_16k = stage2("TGran16_2", 32, tgran16, true)?;
        if [granule_4k, granule_16k, granule_64k]
            .iter()
            .all(|g| *g == GranuleSupport::Unsupported)
        {
            return Err(IdRegisterError::NoStage2Granule);
        }
        let hardware_updates = match field(ids.mmfr1, 0) {
            0 => HardwareUpdates::None,
            1 => HardwareUpdates::AccessFlag,
            2 => HardwareUpdates::AccessFlagAndDirty,
            3 => HardwareUpdates::AccessFlagDirtyAndTables,
            v => return Err(IdRegisterError::UnsupportedHafdbs(v)),
        };
        // Not a walk's business, but L1's VMID depends on it (VTCR_EL2.VS
        // is RES0 without FEAT_VMID16), and the service keys contexts by it.
        let vmid16 = match field(ids.mmfr1, 4) {
            0b0000 => false,
            0b0010 => true,
            v => return Err(IdRegisterError::ReservedVmidBits(v)),
        };
        let xnx = match field(ids.mmfr1, 28) {
            0 => false,
            1 => true,
            v => return Err(IdRegisterError::ReservedXnx(v)),
        };
        let ttst = match field(ids.mmfr2, 28) {
            0 => false,
            1 => true,
            v => return Err(IdRegisterError::ReservedSt(v)),
        };
        // FWB = 1 is FEAT_S2FWB, other values are reserved: both refused
        // (see IdRegisters::mmfr2).
        match field(ids.mmfr2, 40) {
            0 => {}
            v => return Err(IdRegisterError::UnsupportedS2Fwb(v)),
        }
        Ok(ExposedFeatures {
            pa_max_bits,
            granule_4k,
            granule_16k,
            granule_64k,
            hardware_updates,
            xnx,
            ttst,
            vmid16,
        })
    }

    /// AArch64.PAMax(): the physical address size L1 was told it has, in bits.
    pub const fn pa_max_bits(&self) -> u32 {
        self.pa_max_bits
    }

    /// Stage-2 support for a granule.
    pub const fn stage2_granule(&self, granule: Granule) -> GranuleSupport {
        match granule {
            Granule::K4 => self.granule_4k,
            Granule::K16 => self.granule_16k,
            Granule::K64 => self.granule_64k,
        }
    }

    /// HAFDBS as exposed.
    pub const fn hardware_updates(&self) -> HardwareUpdates {
        self.hardware_updates
    }

    /// FEAT_XNX: stage-2 XN\[0\] distinguishes EL0 from EL1 execution.
    pub const fn xnx(&self) -> bool {
        self.xnx
    }

    /// FEAT_VMID16 (ID_AA64MMFR1_EL1.VMIDBits = 0b0010): L1 may use 16-bit
    /// VMIDs (with VTCR_EL2.VS = 1); otherwise its VMIDs have 8 bits.
    pub const fn vmid16(&self) -> bool {
        self.vmid16
    }

    /// FEAT_TTST: small translation tables (T0SZ up to 48/47, start level 3).
    pub const fn ttst(&self) -> bool {
        self.ttst
    }

    /// FEAT_LPA as far as stage 2 sees it: 52-bit PAs (with the 64KB granule).
    pub const fn lpa(&self) -> bool {
        self.pa_max_bits >= 52
    }
}
