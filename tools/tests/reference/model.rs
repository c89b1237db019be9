//! An independent model of the stage-2 translation of the Arm ARM
//! (DDI 0487 M.a.a, J1.1.4: AArch64.S2Translate and what it calls), written
//! from the pseudocode alone to check `s2walk batch` against.
//!
//! Each function names the pseudocode function it models. Where the
//! architecture leaves a choice (IMPLEMENTATION DEFINED or CONSTRAINED
//! UNPREDICTABLE), [`Choice`] documents the one taken: the walker's
//! documented choice, so that only real departures show up as mismatches.
//!
//! Not modelled, because `s2walk` exposes no way to enable them: FEAT_D128,
//! S2PIE/S2POE, FEAT_THE, HCR_EL2.FWB/PTW, FEAT_HDBSS, Secure and Realm
//! stage 2, and AArch32 stage 1.

use std::collections::HashMap;
use std::fmt;

/// Bits `hi..=lo` of `value`.
pub fn bits(value: u64, hi: u32, lo: u32) -> u64 {
    (value >> lo) & (u64::MAX >> (63 - (hi - lo)))
}

/// Bit `n` of `value`.
pub fn bit(value: u64, n: u32) -> bool {
    (value >> n) & 1 == 1
}

/// `value` with bits below `n` cleared (pseudocode `Align(value, 2^n)`).
pub fn align_down(value: u64, n: u32) -> u64 {
    if n >= 64 {
        0
    } else {
        value & !((1u64 << n) - 1)
    }
}

/// Permitted choices where the architecture allows several. Every one is
/// the walker's documented choice (walker/README.md) or, where the README
/// is silent, the choice `s2walk` was observed to make; the report lists
/// which is which.
#[derive(Debug)]
pub struct Choice;

impl Choice {
    /// AArch64.S2DecodeTG0: `bits(2) IMPLEMENTATION_DEFINED "TG0 encoded
    /// granule size"` for TG0 = 0b11 or an unsupported granule. Walker
    /// README: the smallest supported granule.
    pub const RESERVED_TG0_IS_SMALLEST_SUPPORTED: bool = true;
    /// AArch64.S2TxSZFaults: "Fault on TxSZ value below minimum" (only
    /// asked when FEAT_LPA is absent) and "... above maximum". Walker
    /// README: T0SZ out of range is a level-0 Translation fault.
    pub const TXSZ_OUT_OF_RANGE_FAULTS: bool = true;
    /// AArch64.S2LeafBase / AArch64.NextTableBase: "descriptor[15:12] for
    /// 64KB granule are OA[51:48]" when PAMax < 52. Walker README: ignored.
    pub const DESC_15_12_ARE_OA_WITHOUT_LPA: bool = false;
    /// AArch64.S2TTBaseAddress: "BADDR expresses 52 bits for 64KB granule"
    /// when VTCR_EL2.PS = 0b110 and FEAT_LPA is absent. Not in the README;
    /// s2walk uses the 48-bit format there.
    pub const BADDR_52_WITHOUT_LPA: bool = false;
    /// VTTBR_EL2.BADDR with RES0 bits set below the table alignment is
    /// CONSTRAINED UNPREDICTABLE: treat them as zero (what the pseudocode's
    /// `Align` does) or corrupt the address. Model: treated as zero.
    pub const MISALIGNED_BADDR_BITS_IGNORED: bool = true;
    /// AArch64.ContiguousBit: "Treat Contiguous bit as 0". Walker: honours
    /// the hint (StageOA takes the IPA bits of the whole contiguous range).
    pub const CONTIGUOUS_BIT_IGNORED: bool = false;
    /// AArch64.ContiguousBitFaults: "Translation fault on misprogrammed
    /// contiguous bit". Walker README: no fault.
    pub const CONTIGUOUS_WIDER_THAN_INPUT_FAULTS: bool = false;
    /// AArch64.nTFaults (FEAT_BBML1 and above exposed): "nT bit causes
    /// Translation Fault". Not in the README; s2walk takes no fault.
    pub const NT_FAULTS: bool = false;
    /// AArch64.S2CheckPermissions: ConstrainUnpredictable(
    /// Unpredictable_INSTRDEVICE) for a fetch from Device memory. Walker
    /// README: a Permission fault.
    pub const FETCH_FROM_DEVICE_FAULTS: bool = true;
    /// AArch64.SettingAccessFlagPermitted / R_QSPMS: whether AF is set by
    /// an access that takes a Permission fault. Walker README: not set.
    pub const AF_SET_ON_PERMISSION_FAULT: bool = false;
}

/// The stage-2 translation granule (pseudocode `TGx`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granule {
    K4,
    K16,
    K64,
}

impl Granule {
    /// TGxGranuleBits.
    pub fn bits(self) -> u32 {
        match self {
            Granule::K4 => 12,
            Granule::K16 => 14,
            Granule::K64 => 16,
        }
    }

    /// Index bits resolved per level with 8-byte descriptors.
    pub fn stride(self) -> u32 {
        self.bits() - 3
    }

    /// VTCR_EL2.TG0 encoding.
    pub fn tg0(self) -> u64 {
        match self {
            Granule::K4 => 0b00,
            Granule::K64 => 0b01,
            Granule::K16 => 0b10,
        }
    }

    /// Bit position of the lowest IA bit resolved at `level`
    /// (`levels * stride + granulebits` in the pseudocode).
    pub fn level_lsb(self, level: i32) -> u32 {
        ((3 - level) as u32) * self.stride() + self.bits()
    }
}

/// What L0 exposes to L1 in ID_AA64MMFR0/1/2_EL1, decoded.
#[derive(Clone, Copy, Debug)]
pub struct Features {
    pub mmfr0: u64,
    pub mmfr1: u64,
    pub mmfr2: u64,
    /// AArch64.PAMax, from ID_AA64MMFR0_EL1.PARange.
    pub pamax: u32,
    /// AArch64.HaveS2TG for 4KB, 16KB, 64KB.
    pub s2_4k: bool,
    pub s2_16k: bool,
    pub s2_64k: bool,
    /// FEAT_LPA2 at stage 2 for the 4KB and 16KB granules, each from its
    /// own TGran*_2 field (or the stage-1 field it defers to): the 52-bit
    /// format of one granule and stage says nothing about another's.
    pub lpa2_4k: bool,
    pub lpa2_16k: bool,
    /// ID_AA64MMFR1_EL1.HAFDBS.
    pub hafdbs: u64,
    /// FEAT_XNX.
    pub xnx: bool,
    /// FEAT_TTST.
    pub ttst: bool,
}

impl Features {
    /// Decodes the ID registers. `None` for values the contract says
    /// s2walk rejects (no stage-2 granule, PARange beyond 52 bits,
    /// HAFDBS beyond 3).
    pub fn decode(mmfr0: u64, mmfr1: u64, mmfr2: u64) -> Option<Features> {
        let pamax = match bits(mmfr0, 3, 0) {
            0b0000 => 32,
            0b0001 => 36,
            0b0010 => 40,
            0b0011 => 42,
            0b0100 => 44,
            0b0101 => 48,
            0b0110 => 52,
            _ => return None,
        };
        let tgran16 = bits(mmfr0, 23, 20);
        let tgran64 = bits(mmfr0, 27, 24);
        let tgran4 = bits(mmfr0, 31, 28);
        let tgran16_2 = bits(mmfr0, 35, 32);
        let tgran64_2 = bits(mmfr0, 39, 36);
        let tgran4_2 = bits(mmfr0, 43, 40);
        // TGran*_2 = 0b0000: support is as given by the stage 1 field.
        let (s2_4k, lpa2_4k) = match tgran4_2 {
            0b0000 => (matches!(tgran4, 0b0000 | 0b0001), tgran4 == 0b0001),
            0b0010 => (true, false),
            0b0011 => (true, true),
            _ => (false, false),
        };
        let (s2_16k, lpa2_16k) = match tgran16_2 {
            0b0000 => (matches!(tgran16, 0b0001 | 0b0010), tgran16 == 0b0010),
            0b0010 => (true, false),
            0b0011 => (true, true),
            _ => (false, false),
        };
        let s2_64k = match tgran64_2 {
            0b0000 => tgran64 == 0b0000,
            0b0010 => true,
            _ => false,
        };
        let hafdbs = bits(mmfr1, 3, 0);
        if !(s2_4k || s2_16k || s2_64k) || hafdbs > 3 {
            return None;
        }
        Some(Features {
            mmfr0,
            mmfr1,
            mmfr2,
            pamax,
            s2_4k,
            s2_16k,
            s2_64k,
            lpa2_4k,
            lpa2_16k,
            hafdbs,
            xnx: bits(mmfr1, 31, 28) != 0,
            ttst: bits(mmfr2, 31, 28) != 0,
        })
    }

    /// FEAT_LPA: PARange = 52 bits.
    pub fn lpa(&self) -> bool {
        self.pamax == 52
    }

    /// AArch64.HaveS2TG.
    pub fn has_granule(&self, granule: Granule) -> bool {
        match granule {
            Granule::K4 => self.s2_4k,
            Granule::K16 => self.s2_16k,
            Granule::K64 => self.s2_64k,
        }
    }

    /// FEAT_LPA2 at stage 2 for `granule` (never for 64KB).
    pub fn lpa2(&self, granule: Granule) -> bool {
        match granule {
            Granule::K4 => self.lpa2_4k,
            Granule::K16 => self.lpa2_16k,
            Granule::K64 => false,
        }
    }

    /// FEAT_LPA2 at stage 1 for `granule` (ID_AA64MMFR0_EL1.TGran4 0b0001,
    /// TGran16 0b0010): no bearing on stage 2's DS, but an L1 might think so.
    pub fn lpa2_at_stage_1(&self, granule: Granule) -> bool {
        match granule {
            Granule::K4 => bits(self.mmfr0, 31, 28) == 0b0001,
            Granule::K16 => bits(self.mmfr0, 23, 20) == 0b0010,
            Granule::K64 => false,
        }
    }

    /// The smallest supported stage-2 granule ([`Choice`]).
    pub fn smallest_granule(&self) -> Granule {
        [Granule::K4, Granule::K16, Granule::K64]
            .into_iter()
            .find(|g| self.has_granule(*g))
            .expect("decode refuses a CPU without a stage-2 granule")
    }
}

/// AArch64.NSS2TTWParams: the walk parameters from VTCR_EL2 as the exposed
/// features let L1 set them.
#[derive(Clone, Copy, Debug)]
pub struct WalkParams {
    pub granule: Granule,
    pub txsz: u32,
    pub sl0: u64,
    pub sl2: bool,
    pub ps: u64,
    pub sh: u64,
    pub ds: bool,
    pub ha: bool,
    pub hd: bool,
    pub haft: bool,
}

impl WalkParams {
    pub fn new(features: &Features, vtcr: u64) -> WalkParams {
        let granule = decode_tg0(features, bits(vtcr, 15, 14));
        let ha = features.hafdbs >= 1 && bit(vtcr, 21);
        // VTCR_EL2.DS is RES0 unless the granule shows FEAT_LPA2 at stage 2
        // (ID_AA64MMFR0_EL1.TGran4_2/TGran16_2; FEAT_LPA2 at stage 1 alone,
        // as hv shows L1, does not make it live).
        let ds = features.lpa2(granule) && bit(vtcr, 32);
        WalkParams {
            granule,
            txsz: bits(vtcr, 5, 0) as u32,
            sl0: bits(vtcr, 7, 6),
            sl2: granule == Granule::K4 && ds && bit(vtcr, 33),
            ps: bits(vtcr, 18, 16),
            sh: bits(vtcr, 13, 12),
            ds,
            ha,
            // Dirty state needs HAFDBS >= 2 (the pseudocode's single
            // FEAT_HAFDBS covers both; ID_AA64MMFR1_EL1.HAFDBS = 1 is AF only).
            hd: ha && features.hafdbs >= 2 && bit(vtcr, 22),
            // FEAT_HAFT: HAFDBS = 3, VTCR_EL2.HAFT (bit 44), only with HA.
            haft: ha && features.hafdbs >= 3 && bit(vtcr, 44),
        }
    }

    /// AArch64.IASize.
    pub fn iasize(&self) -> u32 {
        64 - self.txsz
    }

    /// AArch64.S2StartLevel (SL2:SL0 for 4KB, SL0 otherwise). `None` for
    /// the encodings S2InvalidSL always rejects.
    pub fn start_level(&self) -> Option<i32> {
        match self.granule {
            Granule::K4 => match (self.sl2, self.sl0) {
                (false, 0) => Some(2),
                (false, 1) => Some(1),
                (false, 2) => Some(0),
                (false, 3) => Some(3),
                (true, 0) => Some(-1),
                _ => None,
            },
            Granule::K16 => Some(3 - self.sl0 as i32),
            Granule::K64 => match self.sl0 {
                3 => None,
                sl0 => Some(3 - sl0 as i32),
            },
        }
    }
}

/// AArch64.S2DecodeTG0 with the [`Choice`] for reserved/unsupported values.
pub fn decode_tg0(features: &Features, tg0: u64) -> Granule {
    let requested = match tg0 {
        0b00 => Some(Granule::K4),
        0b01 => Some(Granule::K64),
        0b10 => Some(Granule::K16),
        _ => None,
    };
    match requested {
        Some(g) if features.has_granule(g) => g,
        _ => {
            // The model implements only this choice.
            const { assert!(Choice::RESERVED_TG0_IS_SMALLEST_SUPPORTED) };
            features.smallest_granule()
        }
    }
}

/// AArch64.S2MinTxSZ (stage 1 is AArch64).
pub fn s2_min_txsz(features: &Features, p: &WalkParams) -> u32 {
    let ips = if features.pamax == 52 {
        if p.granule == Granule::K64 || p.ds {
            52
        } else {
            48
        }
    } else {
        features.pamax
    };
    64 - ips
}

/// AArch64.MaxTxSZ.
pub fn max_txsz(features: &Features, granule: Granule) -> u32 {
    if features.ttst {
        match granule {
            Granule::K4 | Granule::K16 => 48,
            Granule::K64 => 47,
        }
    } else {
        39
    }
}

/// AArch64.S2TxSZFaults.
pub fn s2_txsz_faults(features: &Features, p: &WalkParams) -> bool {
    if p.txsz < s2_min_txsz(features, p) {
        return features.lpa() || Choice::TXSZ_OUT_OF_RANGE_FAULTS;
    }
    if p.txsz > max_txsz(features, p.granule) {
        return Choice::TXSZ_OUT_OF_RANGE_FAULTS;
    }
    false
}

/// AArch64.S2InvalidSL.
pub fn s2_invalid_sl(features: &Features, p: &WalkParams) -> bool {
    match p.granule {
        Granule::K4 => match (p.sl2, p.sl0) {
            (true, sl0) if sl0 != 0 => true,
            (true, _) => features.pamax < 52,
            (false, 0b10) => features.pamax < 44,
            (false, 0b11) => !features.ttst,
            _ => false,
        },
        Granule::K16 => match p.sl0 {
            0b11 => !p.ds || features.pamax < 52,
            0b10 => features.pamax < 42,
            _ => false,
        },
        Granule::K64 => match p.sl0 {
            0b11 => true,
            0b10 => features.pamax < 44,
            _ => false,
        },
    }
}

/// AArch64.S2InconsistentSL. Only asked when S2InvalidSL is false, so the
/// start level exists.
pub fn s2_inconsistent_sl(p: &WalkParams) -> bool {
    let start = p.start_level().expect("valid SL");
    let levels = (3 - start) as u32;
    let granulebits = p.granule.bits();
    let stride = p.granule.stride();
    let sl_min_iasize = levels * stride + granulebits + 1;
    let sl_max_iasize = sl_min_iasize + (stride - 1) + 4;
    let iasize = p.iasize();
    iasize < sl_min_iasize || iasize > sl_max_iasize
}

/// AArch64.PhysicalAddressSize (VMSAv8-64).
pub fn oa_size(features: &Features, p: &WalkParams) -> u32 {
    let ps = match p.ps {
        0b000 => 32,
        0b001 => 36,
        0b010 => 40,
        0b011 => 42,
        0b100 => 44,
        0b101 => 48,
        0b110 => 52,
        _ => 56,
    };
    let max_ps = if features.lpa() && (p.granule == Granule::K64 || p.ds) {
        52.min(features.pamax)
    } else {
        48.min(features.pamax)
    };
    ps.min(max_ps)
}

/// AArch64.S2OAOutOfRange.
pub fn oa_out_of_range(features: &Features, p: &WalkParams, address: u64) -> bool {
    (address >> oa_size(features, p)) != 0
}

/// Whether VTTBR_EL2.BADDR uses the 52-bit form (BADDR[51:48] in bits 5:2),
/// as AArch64.S2TTBaseAddress decides.
pub fn baddr_is_52_bit(features: &Features, p: &WalkParams) -> bool {
    p.ds || (p.granule == Granule::K64
        && p.ps == 0b110
        && (features.lpa() || Choice::BADDR_52_WITHOUT_LPA))
}

/// log2 of the start table's size in bytes, before the 52-bit minimum
/// (`tsize` in AArch64.S2TTBaseAddress).
pub fn start_table_bits(p: &WalkParams) -> u32 {
    let start = p.start_level().expect("valid SL");
    p.iasize() - p.granule.level_lsb(start) + 3
}

/// AArch64.S2TTBaseAddress.
pub fn s2_tt_base_address(features: &Features, p: &WalkParams, vttbr: u64) -> u64 {
    let mut tsize = start_table_bits(p);
    let base = if baddr_is_52_bit(features, p) {
        tsize = tsize.max(6);
        (bits(vttbr, 5, 2) << 48) | (bits(vttbr, 47, 6) << 6)
    } else {
        bits(vttbr, 47, 1) << 1
    };
    // The model implements only this choice.
    const { assert!(Choice::MISALIGNED_BADDR_BITS_IGNORED) };
    align_down(base, tsize)
}

/// Whether descriptor bits 15:12 hold OA[51:48] with the 64KB granule.
fn desc_15_12_are_oa(features: &Features, p: &WalkParams) -> bool {
    p.granule == Granule::K64 && (features.pamax >= 52 || Choice::DESC_15_12_ARE_OA_WITHOUT_LPA)
}

/// OA[51:48] held in a descriptor, if the format has them.
fn desc_high_oa(features: &Features, p: &WalkParams, descriptor: u64) -> u64 {
    if desc_15_12_are_oa(features, p) {
        bits(descriptor, 15, 12) << 48
    } else if p.ds {
        (bits(descriptor, 9, 8) << 50) | (bits(descriptor, 49, 48) << 48)
    } else {
        0
    }
}

/// AArch64.NextTableBase (VMSAv8-64).
pub fn next_table_base(features: &Features, p: &WalkParams, descriptor: u64) -> u64 {
    let low = align_down(bits(descriptor, 47, 0), p.granule.bits());
    low | desc_high_oa(features, p, descriptor)
}

/// AArch64.S2LeafBase (VMSAv8-64).
pub fn leaf_base(features: &Features, p: &WalkParams, descriptor: u64, level: i32) -> u64 {
    let leafsize = p.granule.level_lsb(level);
    align_down(bits(descriptor, 47, 0), leafsize) | desc_high_oa(features, p, descriptor)
}

/// AArch64.BlockDescSupported (VMSAv8-64).
pub fn block_supported(features: &Features, p: &WalkParams, level: i32) -> bool {
    match p.granule {
        Granule::K4 => (level == 0 && p.ds) || level == 1 || level == 2,
        Granule::K16 => (level == 1 && p.ds) || level == 2,
        Granule::K64 => (level == 1 && features.pamax >= 52) || level == 2,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorType {
    Invalid,
    Table,
    Leaf,
}

/// AArch64.DecodeDescriptorType (VMSAv8-64).
pub fn decode_descriptor(
    features: &Features,
    p: &WalkParams,
    descriptor: u64,
    level: i32,
) -> DescriptorType {
    if !bit(descriptor, 0) {
        DescriptorType::Invalid
    } else if bit(descriptor, 1) {
        if level == 3 {
            DescriptorType::Leaf
        } else {
            DescriptorType::Table
        }
    } else if block_supported(features, p, level) {
        DescriptorType::Leaf
    } else {
        DescriptorType::Invalid
    }
}

/// AArch64.ContiguousBit (VMSAv8-64).
pub fn contiguous_bit(p: &WalkParams, level: i32, descriptor: u64) -> bool {
    if Choice::CONTIGUOUS_BIT_IGNORED {
        return false;
    }
    match (p.granule, level) {
        (Granule::K64, 1) | (Granule::K16, 1) | (Granule::K4, 0) => false,
        _ => bit(descriptor, 52),
    }
}

/// ContiguousSize (VMSAv8-64): log2 of the number of entries.
pub fn contiguous_entries_bits(granule: Granule, level: i32) -> u32 {
    match (granule, level) {
        (Granule::K4, _) => 4,
        (Granule::K16, 2) => 5,
        (Granule::K16, _) => 7,
        (Granule::K64, _) => 5,
    }
}

/// The access being translated (the contract's four kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    /// Instruction fetch at EL1.
    Exec,
    /// Instruction fetch at EL0.
    ExecEl0,
}

impl Access {
    pub const ALL: [Access; 4] = [Access::Read, Access::Write, Access::Exec, Access::ExecEl0];

    pub fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Exec => "exec",
            Access::ExecEl0 => "exec_el0",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    Translation,
    AddressSize,
    AccessFlag,
    Permission,
    ExternalAbort,
}

impl FaultKind {
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Translation => "translation",
            FaultKind::AddressSize => "address_size",
            FaultKind::AccessFlag => "access_flag",
            FaultKind::Permission => "permission",
            FaultKind::ExternalAbort => "external_abort",
        }
    }

    /// The ESR_ELx DFSC/IFSC for this fault at `level` (ESR_EL2 ISS
    /// encoding; level -1 has its own codes).
    pub fn fsc(self, level: i32) -> u64 {
        match (self, level) {
            (FaultKind::AddressSize, -1) => 0x29,
            (FaultKind::Translation, -1) => 0x2b,
            (FaultKind::ExternalAbort, -1) => 0x13,
            (FaultKind::AddressSize, l) => l as u64,
            (FaultKind::Translation, l) => 0x04 + l as u64,
            (FaultKind::AccessFlag, l) => 0x08 + l as u64,
            (FaultKind::Permission, l) => 0x0c + l as u64,
            (FaultKind::ExternalAbort, l) => 0x14 + l as u64,
        }
    }
}

/// ESR_EL2 bits the architecture fixes for a stage-2 fault on an access
/// from EL1 or EL0 (AArch64.FaultSyndrome): EC, IL, S1PTW, WnR and the
/// DFSC/IFSC. Not checked: ISV and the instruction syndrome (s2walk has no
/// instruction), EA and SET (IMPLEMENTATION DEFINED classification).
pub const ESR_CHECKED_BITS: u64 = (0x3f << 26) | (1 << 25) | 0xff;

/// The checked ESR_EL2 bits for `fault` on `access`: a Data Abort (EC
/// 0x24) or Instruction Abort (EC 0x20) from a lower Exception level, IL 1
/// (no valid instruction syndrome), S1PTW 0 (not a stage-1 walk), WnR the
/// direction of the access (not of a hardware update).
pub fn esr_checked(fault: &Fault, access: Access) -> u64 {
    let (ec, wnr) = match access {
        Access::Read => (0x24, 0),
        Access::Write => (0x24, 1),
        Access::Exec | Access::ExecEl0 => (0x20, 0),
    };
    (ec << 26) | (1 << 25) | (wnr << 6) | fault.kind.fsc(fault.level)
}

/// IPA[47:12] as HPFAR_EL2.FIPA must hold it, for the faults IPAValid()
/// says make HPFAR_EL2 valid (stage-2 Translation, Access flag, Address
/// size); `None` where it is UNKNOWN (Permission, External abort).
pub fn hpfar_fipa(fault: &Fault, ipa: u64) -> Option<u64> {
    match fault.kind {
        FaultKind::Translation | FaultKind::AccessFlag | FaultKind::AddressSize => {
            Some(bits(ipa, 47, 12))
        }
        FaultKind::Permission | FaultKind::ExternalAbort => None,
    }
}

/// One descriptor read by the walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrailEntry {
    pub level: i32,
    pub address: u64,
    /// As read, except a table descriptor whose AF the walk set (FEAT_HAFT),
    /// which is recorded as written, as the walk goes on with it.
    pub value: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Success {
    pub oa: u64,
    pub level: i32,
    pub size: u64,
    pub contiguous_size: u64,
    pub s2ap: u64,
    pub xn: u64,
    pub memattr: u64,
    pub sh: u64,
    pub dbm: bool,
    /// The leaf descriptor as it is in memory after the walk's update.
    pub descriptor: u64,
    pub af_updated: bool,
    pub dirty_updated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub level: i32,
}

/// What one translation gives: the result and the descriptors read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub result: Result<Success, Fault>,
    pub trail: Vec<TrailEntry>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.result {
            Ok(s) => write!(
                f,
                "ok oa={:#x} level={} size={:#x} contiguous_size={:#x} s2ap={} xn={} memattr={:#x} sh={} dbm={} descriptor={:#x} af_updated={} dirty_updated={}",
                s.oa, s.level, s.size, s.contiguous_size, s.s2ap, s.xn, s.memattr, s.sh, s.dbm, s.descriptor, s.af_updated, s.dirty_updated
            )?,
            Err(e) => write!(f, "fault {} level={} fsc={:#04x}", e.kind.name(), e.level, e.kind.fsc(e.level))?,
        }
        write!(f, " trail=[")?;
        for (i, t) in self.trail.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "L{} {:#x}={:#x}", t.level, t.address, t.value)?;
        }
        write!(f, "]")
    }
}

/// A memslot: guest-physical `[base, base + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub base: u64,
    pub len: u64,
    pub read_only: bool,
}

/// Guest memory: memslots and their 64-bit words (zero unless written).
/// Values are logical; byte order only matters in the files given to s2walk.
#[derive(Clone, Debug, Default)]
pub struct Memory {
    pub slots: Vec<Slot>,
    pub words: HashMap<u64, u64>,
}

impl Memory {
    fn slot(&self, address: u64) -> Option<&Slot> {
        self.slots.iter().find(|s| {
            address >= s.base
                && address
                    .checked_add(8)
                    .is_some_and(|end| end <= s.base + s.len)
        })
    }

    /// PhysMemRead of a descriptor: `None` is an external abort.
    pub fn read(&self, address: u64) -> Option<u64> {
        self.slot(address)
            .map(|_| self.words.get(&address).copied().unwrap_or(0))
    }

    /// PhysMemWrite of a hardware update: `false` is an external abort
    /// (a read-only memslot refuses it).
    pub fn write(&mut self, address: u64, value: u64) -> bool {
        match self.slot(address) {
            Some(s) if !s.read_only => {
                self.words.insert(address, value);
                true
            }
            _ => false,
        }
    }
}

const AF: u64 = 1 << 10;
const S2AP_W: u64 = 1 << 7;

/// AArch64.S2Translate for a Non-secure EL1&0 access with stage 2 enabled,
/// no FWB, EL1 using AArch64, with AArch64.S2Walk, the permission check and
/// the hardware AF/dirty update. Updates `memory` as the hardware would.
pub fn s2_translate(
    features: &Features,
    vtcr: u64,
    vttbr: u64,
    ipa: u64,
    access: Access,
    memory: &mut Memory,
) -> Outcome {
    let mut trail = Vec::new();
    let result = translate(features, vtcr, vttbr, ipa, access, memory, &mut trail);
    Outcome { result, trail }
}

fn fault(kind: FaultKind, level: i32) -> Result<Success, Fault> {
    Err(Fault { kind, level })
}

fn translate(
    features: &Features,
    vtcr: u64,
    vttbr: u64,
    ipa: u64,
    access: Access,
    memory: &mut Memory,
    trail: &mut Vec<TrailEntry>,
) -> Result<Success, Fault> {
    let p = WalkParams::new(features, vtcr);
    // AArch64.S2Translate: configuration checks, all level-0 Translation
    // faults. TxSZ out of range faults rather than being clamped (Choice).
    if s2_txsz_faults(features, &p) {
        return fault(FaultKind::Translation, 0);
    }
    if s2_invalid_sl(features, &p) || s2_inconsistent_sl(&p) {
        return fault(FaultKind::Translation, 0);
    }
    // AArch64.IPAIsOutOfRange. The pseudocode's IPA has 56 bits; s2walk's
    // has 64 and treats the bits above 55 the same way.
    if p.iasize() < 64 && (ipa >> p.iasize()) != 0 {
        return fault(FaultKind::Translation, 0);
    }

    // AArch64.S2Walk.
    let start = p.start_level().expect("valid SL");
    let base = s2_tt_base_address(features, &p, vttbr);
    // AArch64.S2SLTTEntryAddress: index from IPA[iasize-1:lsb], possibly
    // into concatenated tables.
    let lsb = p.granule.level_lsb(start);
    let mut descaddress = base | (bits(ipa, p.iasize() - 1, lsb) << 3);
    // The TTBR-based address beyond the OA size: Address size fault
    // reported at level 0 whatever the start level (R_BFHQH).
    if oa_out_of_range(features, &p, descaddress) {
        return fault(FaultKind::AddressSize, 0);
    }
    let mut level = start;
    let mut descriptor;
    loop {
        // FetchDescriptor: a read outside every memslot is a synchronous
        // External abort on the walk at this level.
        let Some(read) = memory.read(descaddress) else {
            return fault(FaultKind::ExternalAbort, level);
        };
        descriptor = read;
        trail.push(TrailEntry {
            level,
            address: descaddress,
            value: descriptor,
        });
        match decode_descriptor(features, &p, descriptor, level) {
            DescriptorType::Invalid => return fault(FaultKind::Translation, level),
            DescriptorType::Leaf => break,
            DescriptorType::Table => {
                let table = next_table_base(features, &p, descriptor);
                let next_lsb = p.granule.level_lsb(level + 1);
                let next = table | (bits(ipa, next_lsb + p.granule.stride() - 1, next_lsb) << 3);
                // Address size fault by table descriptor, at this level.
                if oa_out_of_range(features, &p, next) {
                    return fault(FaultKind::AddressSize, level);
                }
                // FEAT_HAFT: AF in the table descriptor, set by
                // AArch64.MemSwapTableDesc after the address check.
                if p.haft && descriptor & AF == 0 {
                    let updated = descriptor | AF;
                    if !memory.write(descaddress, updated) {
                        return fault(FaultKind::ExternalAbort, level);
                    }
                    trail.last_mut().expect("just pushed").value = updated;
                }
                descaddress = next;
                level += 1;
            }
        }
    }

    // The leaf: AArch64.S2NextWalkStateLeaf, then the checks at the end of
    // AArch64.S2Walk in their order.
    let contiguous = contiguous_bit(&p, level, descriptor);
    let block_bits = p.granule.level_lsb(level);
    let span_bits = block_bits
        + if contiguous {
            contiguous_entries_bits(p.granule, level)
        } else {
            0
        };
    // StageOA: the IPA supplies every bit below the (contiguous) span.
    let leaf = leaf_base(features, &p, descriptor, level);
    let oa = align_down(leaf, span_bits) | (ipa & ((1u64 << span_bits) - 1));
    if contiguous && span_bits > p.iasize() && Choice::CONTIGUOUS_WIDER_THAN_INPUT_FAULTS {
        return fault(FaultKind::Translation, level);
    }
    let bbm = bits(features.mmfr2, 55, 52) != 0;
    if level < 3 && bbm && bit(descriptor, 16) && Choice::NT_FAULTS {
        return fault(FaultKind::Translation, level);
    }
    if oa_out_of_range(features, &p, oa) {
        return fault(FaultKind::AddressSize, level);
    }
    if descriptor & AF == 0 && !p.ha {
        return fault(FaultKind::AccessFlag, level);
    }

    // AArch64.S2ApplyOutputPerms + AArch64.S2DirectBasePermissions.
    let s2ap = bits(descriptor, 7, 6);
    let dbm = bit(descriptor, 51);
    let readable = bit(s2ap, 0);
    // DBM with hardware dirty state: effectively writable.
    let writable = bit(s2ap, 1) || (dbm && p.hd);
    let xn = bit(descriptor, 54);
    let xnx = features.xnx && bit(descriptor, 53);
    let (px, ux) = match (xn, xnx) {
        (false, false) => (true, true),
        (false, true) => (false, true),
        (true, false) => (false, false),
        (true, true) => (true, false),
    };
    // S2DecodeMemAttrs: MemAttr[3:2] = 0b00 is Device.
    let device = bits(descriptor, 5, 4) == 0;
    // AArch64.S2CheckPermissions for data reads/writes and fetches.
    let permitted = match access {
        Access::Read => readable,
        Access::Write => writable,
        Access::Exec | Access::ExecEl0 => {
            let executable = if access == Access::Exec { px } else { ux };
            !(device && Choice::FETCH_FROM_DEVICE_FAULTS) && executable
        }
    };
    if !permitted {
        // The model implements only this choice.
        const { assert!(!Choice::AF_SET_ON_PERMISSION_FAULT) };
        return fault(FaultKind::Permission, level);
    }

    // Hardware updates (AArch64.SetAccessFlag, AArch64.SetDirtyState,
    // AArch64.MemSwapTableDesc): one compare-and-swap of the leaf.
    let mut updated = descriptor;
    if p.ha {
        updated |= AF;
    }
    if p.hd && dbm && access == Access::Write {
        updated |= S2AP_W;
    }
    if updated != descriptor && !memory.write(trail.last().expect("leaf read").address, updated) {
        return fault(FaultKind::ExternalAbort, level);
    }

    Ok(Success {
        oa,
        level,
        size: 1 << block_bits,
        contiguous_size: 1 << span_bits,
        s2ap: bits(updated, 7, 6),
        // XN[1] and, with FEAT_XNX, XN[0] (RES0 without it): the field
        // as the permission check reads it.
        xn: (u64::from(xn) << 1) | u64::from(xnx),
        memattr: bits(updated, 5, 2),
        sh: if p.ds { p.sh } else { bits(updated, 9, 8) },
        dbm,
        descriptor: updated,
        af_updated: updated & AF != descriptor & AF,
        dirty_updated: updated & S2AP_W != descriptor & S2AP_W,
    })
}
