//! L1's own EL2 translation regime when L1 is a non-VHE guest hypervisor
//! (HCR_EL2.E2H = 0, `hv.nested=mmu`): L1 programs SCTLR_EL2, TCR_EL2,
//! TTBR0_EL2, MAIR_EL2 and AMAIR_EL2 (each access traps, EC 0x18), and
//! runs at hardware EL1, so hv makes the hardware EL1&0 regime translate
//! as L1's EL2 regime would. Field positions from DDI 0487's register
//! descriptions (TCR_EL2 and SCTLR_EL2 with E2H = 0; TCR_EL1, SCTLR_EL1).
//!
//! What the hardware itself does for hv here: with HCR_EL2.{NV, NV1} =
//! {1, 1}, the EL1&0 regime reads stage-1 block and page descriptors in
//! the EL2 format (bit 54 is PXN, the effective UXN is 0, AP\[1\] is
//! treated as 0; in table descriptors bit 60 is PXNTable and APTable\[0\]
//! is treated as 0), so L1's tables need no rewriting; what is left is
//! the register formats, converted here:
//! - TCR_EL2 has one VA range (TTBR0_EL2): TCR_EL1 gets T0SZ, IRGN0,
//!   ORGN0, SH0, TG0, PS (as IPS), TBI (as TBI0 and TBI1: with E2H = 0
//!   TBI applies to the whole address space, and an address with bit 55
//!   set is out of range either way: a level 0 translation fault through
//!   EPD1 here, out of the TTBR0 range in L1's regime), HPD, HWU59-62,
//!   TBID, TCMA, DS and MTX, and EPD1 = 1 (no walk from TTBR1_EL1);
//! - SCTLR_EL2's fields that exist with E2H = 0 keep their bit positions
//!   in SCTLR_EL1 (M, A, C, SA, nAA, EOS, I, EnDB, WXN, IESB, EIS,
//!   EnDA, EnIB, EnIA, BT, ITFSB, TCF, ATA, DSSBS, NMI, SPINTMASK; EE is
//!   RES0, since L1 is shown no mixed-endian support); its
//!   RES1 bits 4, 5, 16, 18, 23, 28, 29 name EL0 controls in SCTLR_EL1
//!   (SA0, CP15BEN, nTWI, nTWE, SPAN, nTLSMD, LSMAOE) and do not leak:
//!   those are fixed at [`SCTLR_EL1_FIXED`] (L1 has no EL0 of its own
//!   with E2H = 0: an ERET to EL0 enters L2);
//! - TTBR0_EL2's bits \[63:48\] are RES0 with E2H = 0 (no ASID): TTBR0_EL1
//!   gets ASID 0. MAIR_EL2 and AMAIR_EL2 are carried as they are.
//!
//! A VHE L1 (E2H = 1) needs no format conversion (its TCR_EL2 and
//! SCTLR_EL2 have TCR_EL1's and SCTLR_EL1's layouts, NV1 = 0 keeps the
//! EL1&0 descriptor format, which is the EL2&0 one): [`VheRegime`] keeps
//! its SCTLR and TCR as written, and the hardware gets
//! [`tcr_el1_for_vhe_vel2`] (PARange, HAFDBS and TxSZ limits as below) and
//! [`sctlr_el1_for_vhe_vel2`] (SPAN).
//!
//! CONSTRAINED UNPREDICTABLE and reserved encodings (each tested):
//! - T0SZ outside \[minimum, maximum\] (AArch64.S1MinTxSZ: 12 with DS or a
//!   52-bit VA 64 KiB granule, else 16; AArch64.S1MaxTxSZ: 48, 47 for
//!   64 KiB, with FEAT_TTST, else 39): hv's choice is "behaves as if
//!   programmed with the limit" (the other permitted choice being a level 0
//!   translation fault for every access); L1 reads back what it wrote;
//! - TG0 0b11 (reserved) or a granule L1 is not shown: treated as the
//!   first implemented of 4 KiB, 16 KiB, 64 KiB (the architecture lets an
//!   implementation pick any implemented size);
//! - PS above the PARange L1 is shown, or 0b111 (reserved): the shown
//!   PARange (AArch64.PAMax: outputs wider than that are address size
//!   faults), so the hardware's IPS never names more than L1's PA size;
//! - SH0 0b01 (reserved): Non-shareable (0b00), a permitted choice;
//! - DS without FEAT_LPA2 for the granule, HA/HD (L1 is shown no
//!   FEAT_HAFDBS): RES0, dropped.

/// A 4-bit field of an ID register.
const fn id_field(value: u64, shift: u32) -> u64 {
    (value >> shift) & 0xf
}

/// A stage-1 translation granule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granule {
    K4,
    K16,
    K64,
}

impl Granule {
    /// TCR_ELx.TG0's encoding.
    pub const fn tg0(self) -> u64 {
        match self {
            Granule::K4 => 0b00,
            Granule::K64 => 0b01,
            Granule::K16 => 0b10,
        }
    }

    /// TCR_EL1.TG1's encoding (different from TG0's).
    pub const fn tg1(self) -> u64 {
        match self {
            Granule::K16 => 0b01,
            Granule::K4 => 0b10,
            Granule::K64 => 0b11,
        }
    }

    /// From TG0; None for the reserved 0b11.
    pub const fn from_tg0(tg0: u64) -> Option<Granule> {
        match tg0 & 0b11 {
            0b00 => Some(Granule::K4),
            0b01 => Some(Granule::K64),
            0b10 => Some(Granule::K16),
            _ => None,
        }
    }
}

/// What L1 is shown of the stage-1 translation features (its
/// ID_AA64MMFR0_EL1 and ID_AA64MMFR2_EL1, `idregs::shown_to_l1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage1Features {
    /// ID_AA64MMFR0_EL1.PARange.
    pub pa_range: u64,
    pub granule_4k: bool,
    pub granule_16k: bool,
    pub granule_64k: bool,
    /// FEAT_LPA2 for the 4 KiB and 16 KiB granules (TCR.DS usable).
    pub lpa2_4k: bool,
    pub lpa2_16k: bool,
    /// FEAT_LVA: 52-bit VAs with the 64 KiB granule (MMFR2.VARange 1).
    pub lva: bool,
    /// FEAT_TTST: the larger maximum TxSZ (MMFR2.ST 1).
    pub ttst: bool,
}

impl Stage1Features {
    /// From the ID_AA64MMFR0_EL1 and ID_AA64MMFR2_EL1 values L1 reads.
    pub const fn from_id_registers(mmfr0: u64, mmfr2: u64) -> Self {
        let tgran4 = id_field(mmfr0, 28);
        let tgran64 = id_field(mmfr0, 24);
        let tgran16 = id_field(mmfr0, 20);
        Stage1Features {
            pa_range: id_field(mmfr0, 0),
            // TGran4: 0b0000 implemented, 0b0001 with 52-bit (LPA2), 0b1111 not.
            granule_4k: tgran4 == 0b0000 || tgran4 == 0b0001,
            lpa2_4k: tgran4 == 0b0001,
            // TGran16: 0b0000 not implemented, 0b0001 implemented, 0b0010 with LPA2.
            granule_16k: tgran16 == 0b0001 || tgran16 == 0b0010,
            lpa2_16k: tgran16 == 0b0010,
            // TGran64: 0b0000 implemented, 0b1111 not.
            granule_64k: tgran64 == 0b0000,
            lva: id_field(mmfr2, 16) == 0b0001,
            ttst: id_field(mmfr2, 28) == 0b0001,
        }
    }

    const fn implements(&self, granule: Granule) -> bool {
        match granule {
            Granule::K4 => self.granule_4k,
            Granule::K16 => self.granule_16k,
            Granule::K64 => self.granule_64k,
        }
    }

    /// The granule a TG0 value selects: itself when implemented, else
    /// (reserved or not implemented) the first implemented of 4, 16 and
    /// 64 KiB (4 KiB if the features claim none, which no PE does).
    pub const fn granule(&self, tg0: u64) -> Granule {
        if let Some(g) = Granule::from_tg0(tg0) {
            if self.implements(g) {
                return g;
            }
        }
        if self.granule_4k {
            Granule::K4
        } else if self.granule_16k {
            Granule::K16
        } else if self.granule_64k {
            Granule::K64
        } else {
            Granule::K4
        }
    }

    /// Whether TCR.DS = 1 takes effect with `granule` (FEAT_LPA2 for it;
    /// RES0 otherwise, and always with 64 KiB).
    pub const fn ds_allowed(&self, granule: Granule) -> bool {
        match granule {
            Granule::K4 => self.lpa2_4k,
            Granule::K16 => self.lpa2_16k,
            Granule::K64 => false,
        }
    }

    /// AArch64.S1MinTxSZ.
    pub const fn min_txsz(&self, granule: Granule, ds: bool) -> u64 {
        if ds || (self.lva && matches!(granule, Granule::K64)) {
            12
        } else {
            16
        }
    }

    /// A TxSZ value as the walk uses it with `granule` and TCR.DS `ds`
    /// (DS counts only with FEAT_LPA2 for the granule): outside
    /// \[[`Self::min_txsz`], [`Self::max_txsz`]\] it is CONSTRAINED
    /// UNPREDICTABLE, and hv's choice is "as if programmed with the limit".
    pub const fn clamp_txsz(&self, txsz: u64, granule: Granule, ds: bool) -> u64 {
        let ds = ds && self.ds_allowed(granule);
        let (min, max) = (self.min_txsz(granule, ds), self.max_txsz(granule));
        if txsz < min {
            min
        } else if txsz > max {
            max
        } else {
            txsz
        }
    }

    /// AArch64.S1MaxTxSZ.
    pub const fn max_txsz(&self, granule: Granule) -> u64 {
        match (self.ttst, granule) {
            (false, _) => 39,
            (true, Granule::K64) => 47,
            (true, _) => 48,
        }
    }
}

/// TCR_EL2 fields (E2H = 0).
pub mod tcr_el2 {
    pub const T0SZ: u64 = 0x3f;
    pub const IRGN0_SHIFT: u32 = 8;
    pub const ORGN0_SHIFT: u32 = 10;
    pub const SH0_SHIFT: u32 = 12;
    pub const TG0_SHIFT: u32 = 14;
    pub const PS_SHIFT: u32 = 16;
    pub const TBI: u64 = 1 << 20;
    pub const HA: u64 = 1 << 21;
    pub const HD: u64 = 1 << 22;
    pub const RES1: u64 = (1 << 31) | (1 << 23);
    pub const HPD: u64 = 1 << 24;
    /// HWU59..HWU62.
    pub const HWU_SHIFT: u32 = 25;
    pub const TBID: u64 = 1 << 29;
    pub const TCMA: u64 = 1 << 30;
    pub const DS: u64 = 1 << 32;
    pub const MTX: u64 = 1 << 33;
}

/// TCR_EL1 fields.
pub mod tcr_el1 {
    pub const T1SZ_SHIFT: u32 = 16;
    pub const EPD1: u64 = 1 << 23;
    pub const TG1_SHIFT: u32 = 30;
    pub const IPS_SHIFT: u32 = 32;
    pub const TBI0: u64 = 1 << 37;
    pub const TBI1: u64 = 1 << 38;
    pub const HA: u64 = 1 << 39;
    pub const HD: u64 = 1 << 40;
    pub const HPD0: u64 = 1 << 41;
    /// HWU059..HWU062.
    pub const HWU0_SHIFT: u32 = 43;
    pub const TBID0: u64 = 1 << 51;
    pub const TCMA0: u64 = 1 << 57;
    pub const DS: u64 = 1 << 59;
    pub const MTX0: u64 = 1 << 60;
}

/// The hardware TCR_EL1 that translates as L1's TCR_EL2 (E2H = 0) says,
/// with L1 shown `features` (see the module docs for each field and the
/// reserved and CONSTRAINED UNPREDICTABLE choices).
pub const fn tcr_el1_for_vel2(tcr: u64, features: &Stage1Features) -> u64 {
    use tcr_el1 as o;
    use tcr_el2 as i;
    let granule = features.granule((tcr >> i::TG0_SHIFT) & 0b11);
    let ds = tcr & i::DS != 0 && features.ds_allowed(granule);
    let t0sz = features.clamp_txsz(tcr & i::T0SZ, granule, ds);
    let ps = (tcr >> i::PS_SHIFT) & 0b111;
    let ips = if ps > features.pa_range {
        features.pa_range
    } else {
        ps
    };
    let sh0 = match (tcr >> i::SH0_SHIFT) & 0b11 {
        0b01 => 0b00,
        sh => sh,
    };
    let mut out = t0sz
        | (((tcr >> i::IRGN0_SHIFT) & 0b11) << i::IRGN0_SHIFT)
        | (((tcr >> i::ORGN0_SHIFT) & 0b11) << i::ORGN0_SHIFT)
        | (sh0 << i::SH0_SHIFT)
        | (granule.tg0() << i::TG0_SHIFT)
        // TTBR1_EL1 is never walked (EPD1); its fields are valid values.
        | (t0sz << o::T1SZ_SHIFT)
        | o::EPD1
        | (granule.tg1() << o::TG1_SHIFT)
        | (ips << o::IPS_SHIFT)
        | (((tcr >> i::HWU_SHIFT) & 0xf) << o::HWU0_SHIFT);
    if tcr & i::TBI != 0 {
        out |= o::TBI0 | o::TBI1;
    }
    if tcr & i::HPD != 0 {
        out |= o::HPD0;
    }
    if tcr & i::TBID != 0 {
        out |= o::TBID0;
    }
    if tcr & i::TCMA != 0 {
        out |= o::TCMA0;
    }
    if ds {
        out |= o::DS;
    }
    if tcr & i::MTX != 0 {
        out |= o::MTX0;
    }
    out
}

/// SCTLR_EL2 (E2H = 0) fields that keep their position and meaning in
/// SCTLR_EL1: M 0, A 1, C 2, SA 3, nAA 6, EOS 11, I 12, EnDB 13, WXN 19,
/// IESB 21, EIS 22, EnDA 27, EnIB 30, EnIA 31, BT 36 (SCTLR_EL1's
/// BT1: the EL1 BTI control), ITFSB 37, TCF 41:40, ATA 43, DSSBS 44, NMI
/// 61, SPINTMASK 62. Not EE 25: L1 is shown ID_AA64MMFR0_EL1.BigEnd 0
/// (no mixed-endian support), which makes EE RES0 (little-endian), and
/// the service walks L1's tables little-endian (review 34 R34-6).
pub const SCTLR_EL2_CARRIED: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 2)
    | (1 << 3)
    | (1 << 6)
    | (1 << 11)
    | (1 << 12)
    | (1 << 13)
    | (1 << 19)
    | (1 << 21)
    | (1 << 22)
    | (1 << 27)
    | (1 << 30)
    | (1 << 31)
    | (1 << 36)
    | (1 << 37)
    | (0b11 << 40)
    | (1 << 43)
    | (1 << 44)
    | (1 << 61)
    | (1 << 62);

/// SCTLR_EL2's RES1 bits with E2H = 0 in every configuration (4, 5, 16,
/// 18, 23, 28, 29; EOS and EIS are RES1 only without FEAT_ExS and are
/// carried). hv keeps them set in what L1 reads back (RAO/WI, a permitted
/// implementation of RES1).
pub const SCTLR_EL2_RES1: u64 =
    (1 << 4) | (1 << 5) | (1 << 16) | (1 << 18) | (1 << 23) | (1 << 28) | (1 << 29);

/// SCTLR_EL2 after reset as hv gives it to L1: MMU, caches and alignment
/// checks off, EOS/EIS and the other RES1 bits set.
pub const SCTLR_EL2_RESET: u64 = SCTLR_EL2_RES1 | (1 << 11) | (1 << 22);

/// SCTLR_EL1 bits hv fixes while L1 runs, where SCTLR_EL2 has no such
/// field: nTWI 16 and nTWE 18 (EL0 WFI/WFE not trapped), TSCXT 20,
/// SPAN 23 (exception entry to EL1 leaves PSTATE.PAN alone: an EL2 with
/// E2H = 0 has no PAN), nTLSMD 28 and LSMAOE 29 (AArch32 EL0 only). Each
/// is RES1 when its feature is absent. Every other EL0 control (SA0,
/// CP15BEN, UCT, DZE, UCI, E0E, ...) is 0: L1 has no EL0 of its own.
pub const SCTLR_EL1_FIXED: u64 =
    (1 << 16) | (1 << 18) | (1 << 20) | (1 << 23) | (1 << 28) | (1 << 29);

/// The hardware SCTLR_EL1 for L1's SCTLR_EL2 (E2H = 0).
pub const fn sctlr_el1_for_vel2(sctlr: u64) -> u64 {
    (sctlr & SCTLR_EL2_CARRIED) | SCTLR_EL1_FIXED
}

/// The hardware TTBR0_EL1 for L1's TTBR0_EL2 (E2H = 0): bits \[63:48\]
/// are RES0 there (no ASID), so ASID 0; BADDR and CnP as written.
pub const fn ttbr0_el1_for_vel2(ttbr: u64) -> u64 {
    ttbr & 0x0000_ffff_ffff_ffff
}

/// L1's EL2 stage-1 registers that trap and that hv emulates for a
/// non-VHE L1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vel2Stage1Register {
    Sctlr,
    Tcr,
    Ttbr0,
    Mair,
    Amair,
}

impl Vel2Stage1Register {
    /// From an MRS/MSR with op0 3, op1 4 (the `_EL2` encodings).
    pub const fn from_encoding(crn: u8, crm: u8, op2: u8) -> Option<Self> {
        Some(match (crn, crm, op2) {
            (1, 0, 0) => Vel2Stage1Register::Sctlr,
            (2, 0, 0) => Vel2Stage1Register::Ttbr0,
            (2, 0, 2) => Vel2Stage1Register::Tcr,
            (10, 2, 0) => Vel2Stage1Register::Mair,
            (10, 3, 0) => Vel2Stage1Register::Amair,
            _ => return None,
        })
    }
}

/// `_EL2` encodings (op0 3, op1 4) that exist only with FEAT_VHE, which a
/// non-VHE L1 is not shown: TTBR1_EL2 and CONTEXTIDR_EL2, UNDEFINED for it.
pub const fn vhe_only_el2_register(crn: u8, crm: u8, op2: u8) -> bool {
    matches!((crn, crm, op2), (2, 0, 1) | (13, 0, 1))
}

/// The hardware EL1 registers that realise L1's EL2 regime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HardwareEl1Regime {
    pub sctlr: u64,
    pub tcr: u64,
    pub ttbr0: u64,
    /// Never walked (TCR_EL1.EPD1); 0.
    pub ttbr1: u64,
    pub mair: u64,
    pub amair: u64,
}

/// What a hardware regime write hv must make after L1 writes one of its
/// registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegimeChange {
    /// Only this hardware register changes.
    Sctlr(u64),
    Tcr(u64),
    Ttbr0(u64),
    Mair(u64),
    Amair(u64),
}

/// L1's virtual EL2 stage-1 registers (E2H = 0) as L1 wrote them: what
/// its MRS reads back, and what hv converts for the hardware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonVheRegime {
    pub sctlr: u64,
    pub tcr: u64,
    pub ttbr0: u64,
    pub mair: u64,
    pub amair: u64,
}

impl Default for NonVheRegime {
    fn default() -> Self {
        Self::RESET
    }
}

impl NonVheRegime {
    /// At L1's reset: SCTLR_EL2 [`SCTLR_EL2_RESET`], TCR_EL2 its RES1 bits,
    /// the rest 0 (UNKNOWN architecturally; 0 is one such value).
    pub const RESET: NonVheRegime = NonVheRegime {
        sctlr: SCTLR_EL2_RESET,
        tcr: tcr_el2::RES1,
        ttbr0: 0,
        mair: 0,
        amair: 0,
    };

    /// L1's MRS of `register`.
    pub const fn read(&self, register: Vel2Stage1Register) -> u64 {
        match register {
            Vel2Stage1Register::Sctlr => self.sctlr,
            Vel2Stage1Register::Tcr => self.tcr,
            Vel2Stage1Register::Ttbr0 => self.ttbr0,
            Vel2Stage1Register::Mair => self.mair,
            Vel2Stage1Register::Amair => self.amair,
        }
    }

    /// L1's MSR of `register`: the stored value (RES1 bits of SCTLR_EL2
    /// and TCR_EL2 read as 1) and the hardware register to write.
    pub fn write(
        &mut self,
        register: Vel2Stage1Register,
        value: u64,
        features: &Stage1Features,
    ) -> RegimeChange {
        match register {
            Vel2Stage1Register::Sctlr => {
                self.sctlr = value | SCTLR_EL2_RES1;
                RegimeChange::Sctlr(sctlr_el1_for_vel2(self.sctlr))
            }
            Vel2Stage1Register::Tcr => {
                self.tcr = value | tcr_el2::RES1;
                RegimeChange::Tcr(tcr_el1_for_vel2(self.tcr, features))
            }
            Vel2Stage1Register::Ttbr0 => {
                self.ttbr0 = value;
                RegimeChange::Ttbr0(ttbr0_el1_for_vel2(value))
            }
            Vel2Stage1Register::Mair => {
                self.mair = value;
                RegimeChange::Mair(value)
            }
            Vel2Stage1Register::Amair => {
                self.amair = value;
                RegimeChange::Amair(value)
            }
        }
    }

    /// Every hardware register of the regime.
    pub const fn hardware(&self, features: &Stage1Features) -> HardwareEl1Regime {
        HardwareEl1Regime {
            sctlr: sctlr_el1_for_vel2(self.sctlr),
            tcr: tcr_el1_for_vel2(self.tcr, features),
            ttbr0: ttbr0_el1_for_vel2(self.ttbr0),
            ttbr1: 0,
            mair: self.mair,
            amair: self.amair,
        }
    }

    /// Whether L1's EL2 stage 1 is on (SCTLR_EL2.M).
    pub const fn mmu_on(&self) -> bool {
        self.sctlr & 1 != 0
    }
}

/// The hardware TCR_EL1 for a VHE L1's TCR_EL2 (E2H = 1: TCR_EL1's
/// layout, two VA ranges): as written except IPS, clamped to the shown
/// PARange as [`tcr_el1_for_vel2`] clamps PS; HA and HD, RES0 (L1 is
/// shown no FEAT_HAFDBS); T0SZ and T1SZ outside their range, which behave
/// as the limit (the CONSTRAINED UNPREDICTABLE choice of the non-VHE
/// conversion), each with its own granule (TG1's encoding differs; a
/// reserved or unshown one is treated as [`Stage1Features::granule`]
/// says, and written in its place).
pub const fn tcr_el1_for_vhe_vel2(tcr: u64, features: &Stage1Features) -> u64 {
    let g0 = features.granule((tcr >> 14) & 0b11);
    let g1 = features.granule(match (tcr >> 30) & 0b11 {
        0b01 => Granule::K16.tg0(),
        0b10 => Granule::K4.tg0(),
        0b11 => Granule::K64.tg0(),
        _ => 0b11, // reserved
    });
    // DS needs FEAT_LPA2 for both granules in use (one TCR field); the
    // TxSZ limits are those of the DS the hardware gets (review 34 R34-5:
    // a DS dropped for a 64 KiB TG1 left a 52-bit T0SZ with DS 0).
    let ds_ok = features.ds_allowed(g0) && features.ds_allowed(g1);
    let ds = tcr & tcr_el1::DS != 0 && ds_ok;
    let t0sz = features.clamp_txsz(tcr & 0x3f, g0, ds);
    let t1sz = features.clamp_txsz((tcr >> 16) & 0x3f, g1, ds);
    let ips = (tcr >> tcr_el1::IPS_SHIFT) & 0b111;
    let ips = if ips > features.pa_range {
        features.pa_range
    } else {
        ips
    };
    let kept = tcr
        & !(0x3f
            | (0b11 << 14)
            | (0x3f << 16)
            | (0b11 << 30)
            | (0b111 << tcr_el1::IPS_SHIFT)
            | tcr_el1::HA
            | tcr_el1::HD
            | if ds_ok { 0 } else { tcr_el1::DS });
    kept | t0sz
        | (g0.tg0() << 14)
        | (t1sz << 16)
        | (g1.tg1() << tcr_el1::TG1_SHIFT)
        | (ips << tcr_el1::IPS_SHIFT)
}

/// SCTLR_EL1.SPAN.
pub const SCTLR_SPAN: u64 = 1 << 23;

/// The hardware SCTLR_EL1 for a VHE L1's SCTLR_EL2 (E2H = 1: SCTLR_EL1's
/// layout) while its virtual {E2H, TGE} are {1, 1} (`host`) or not: as
/// written, without EE (RES0: BigEnd 0 is shown, see
/// [`SCTLR_EL2_CARRIED`]); SPAN as written in host mode, where an
/// exception taken to EL2 sets PSTATE.PAN when SPAN is 0 (from L1's EL2
/// and from its host EL0, as the hardware's entry to EL1 does), else set:
/// with {E2H, TGE} = {1, 0} an exception taken to EL2 leaves PSTATE.PAN
/// alone, where the hardware's entry to EL1 would set it if SPAN were 0.
/// TGE changes without a trap (a VNCR word), so hv converts again at L1's
/// next synchronous exit (`arch::nested::mmu::follow_host_mode`; IRQ
/// exits do not); until then the hardware's PAN on L1's own exceptions
/// follows the previous mode (its host EL0 does not run before: the ERET
/// to it traps).
pub const fn sctlr_el1_for_vhe_vel2(sctlr: u64, host: bool) -> u64 {
    let span = if host { sctlr & SCTLR_SPAN } else { SCTLR_SPAN };
    ((sctlr & !SCTLR_SPAN) | span) & !SCTLR_EE
}

/// SCTLR_ELx.EE.
pub const SCTLR_EE: u64 = 1 << 25;

/// A VHE L1's SCTLR_EL2 and TCR_EL2 as it wrote them (what its reads
/// return; the hardware has their conversions). Its other EL2&0 registers
/// are the hardware EL1 ones unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VheRegime {
    pub sctlr: u64,
    pub tcr: u64,
}

impl VheRegime {
    /// At reset: SCTLR_EL2 (E2H = 1) with its RES1 bits as SCTLR_EL1 has
    /// them (11, 20, 22, 23, 28, 29) and the MMU off; TCR_EL2 0.
    pub const RESET: VheRegime = VheRegime {
        sctlr: (1 << 11) | (1 << 20) | (1 << 22) | (1 << 23) | (1 << 28) | (1 << 29),
        tcr: 0,
    };

    /// Whether L1's EL2&0 stage 1 is on.
    pub const fn mmu_on(&self) -> bool {
        self.sctlr & 1 != 0
    }
}

/// The EL1 registers whose writes HCR_EL2.TVM and reads HCR_EL2.TRVM
/// trap (op0 3, op1 0, CRn, CRm, op2): for a VHE L1 its own EL2&0
/// registers. SCTLR, TTBR0, TTBR1, TCR, AFSR0, AFSR1, ESR, FAR, MAIR,
/// AMAIR, CONTEXTIDR.
pub const fn tvm_register(crn: u8, crm: u8, op2: u8) -> bool {
    matches!(
        (crn, crm, op2),
        (1, 0, 0)
            | (2, 0, 0)
            | (2, 0, 1)
            | (2, 0, 2)
            | (5, 1, 0)
            | (5, 1, 1)
            | (5, 2, 0)
            | (6, 0, 0)
            | (10, 2, 0)
            | (10, 3, 0)
            | (13, 0, 1)
    )
}

/// How L1 runs at virtual EL2: which E2H it is shown and the hardware
/// controls that follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L1Vel2Mode {
    /// E2H RES1 (ID_AA64MMFR4_EL1.E2H0 0b1110, FEAT_VHE shown): NV1 = 0,
    /// L1's EL2&0 registers are the hardware EL1 ones, in the same format
    /// (the `demo` and `recycle` L1s keep their MMU off; `mmu-vhe` turns
    /// it on). HCR_EL2.{TVM, TRVM} trap its accesses to them (EL1
    /// encodings, as E2H = 1 software makes them), so hv sees SCTLR_EL2.M
    /// (DC follows it) and converts SCTLR and TCR ([`VheRegime`]).
    Vhe,
    /// FEAT_VHE hidden, so E2H is RES0 (`mmu`): NV1 = 1 (L1's EL1
    /// register accesses are L2's, in the VNCR page; the EL1&0 regime
    /// reads EL2-format descriptors), L1's EL2 stage-1 registers trap and
    /// are converted by [`NonVheRegime`].
    NonVhe,
}

impl L1Vel2Mode {
    /// L1's virtual HCR_EL2 with E2H as this mode fixes it (RES1 or RES0).
    pub const fn virtual_hcr(self, written: u64) -> u64 {
        match self {
            L1Vel2Mode::Vhe => written | super::hcr::E2H,
            L1Vel2Mode::NonVhe => written & !super::hcr::E2H,
        }
    }

    /// L1's hardware HCR_EL2 ([`super::L1_HCR`] adjusted): NV1 for a
    /// non-VHE L1; DC (stage 1 off is Normal write-back) only while L1's
    /// own stage 1 is off, since DC makes the EL1&0 stage 1 behave as off
    /// whatever SCTLR_EL1.M says.
    pub const fn hardware_hcr(self, l1_mmu_on: bool) -> u64 {
        let base = match self {
            L1Vel2Mode::Vhe => super::L1_HCR | super::hcr::TVM | super::hcr::TRVM,
            L1Vel2Mode::NonVhe => super::L1_HCR | super::hcr::NV1,
        };
        if l1_mmu_on {
            base & !super::hcr::DC
        } else {
            base
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::nested::hcr;
    use crate::nested::idregs::{shown_to_l1, shown_to_non_vhe_l1, IdRegister};

    /// 4 KiB and 64 KiB, no 16 KiB, no LPA2/LVA/TTST, 40-bit PA shown.
    const PLAIN: Stage1Features = Stage1Features {
        pa_range: 0b010,
        granule_4k: true,
        granule_16k: false,
        granule_64k: true,
        lpa2_4k: false,
        lpa2_16k: false,
        lva: false,
        ttst: false,
    };
    /// Every granule with LPA2, LVA and TTST.
    const RICH: Stage1Features = Stage1Features {
        pa_range: 0b010,
        granule_4k: true,
        granule_16k: true,
        granule_64k: true,
        lpa2_4k: true,
        lpa2_16k: true,
        lva: true,
        ttst: true,
    };

    const fn tcr(t0sz: u64, tg0: u64, ps: u64) -> u64 {
        tcr_el2::RES1 | t0sz | (tg0 << 14) | (ps << 16)
    }
    const fn t0sz(tcr_el1: u64) -> u64 {
        tcr_el1 & 0x3f
    }
    const fn t1sz(tcr_el1: u64) -> u64 {
        (tcr_el1 >> 16) & 0x3f
    }
    const fn tg0(tcr_el1: u64) -> u64 {
        (tcr_el1 >> 14) & 0b11
    }
    const fn tg1(tcr_el1: u64) -> u64 {
        (tcr_el1 >> 30) & 0b11
    }
    const fn ips(tcr_el1: u64) -> u64 {
        (tcr_el1 >> 32) & 0b111
    }

    #[test]
    fn the_mmu_demo_tcr_converts_field_by_field() {
        // T0SZ 25, IRGN0/ORGN0 write-back (0b01), SH0 Inner (0b11), 4 KiB,
        // PS 40 bits, RES1 bits 31 and 23.
        let l1 = tcr_el2::RES1 | 25 | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) | (0b010 << 16);
        let expected = 25
            | (0b01 << 8)
            | (0b01 << 10)
            | (0b11 << 12)
            | (25 << 16)
            | tcr_el1::EPD1
            | (0b10 << 30)
            | (0b010 << 32);
        assert_eq!(tcr_el1_for_vel2(l1, &PLAIN), expected);
    }

    #[test]
    fn one_va_range_ttbr1_never_walked_ttbr0_always() {
        for tg in [0b00, 0b01, 0b10] {
            let out = tcr_el1_for_vel2(tcr(30, tg, 0) | (1 << 7), &RICH);
            assert_ne!(out & tcr_el1::EPD1, 0);
            // TCR_EL2 bit 7 is RES0 (no EPD0 with E2H = 0): TTBR0 walks.
            assert_eq!(out & (1 << 7), 0);
            // TTBR1's fields are valid and name the same granule.
            assert_eq!(t1sz(out), t0sz(out));
            let granule = Granule::from_tg0(tg).unwrap();
            assert_eq!(tg1(out), granule.tg1());
            assert_eq!(tg0(out), granule.tg0());
        }
    }

    #[test]
    fn res1_bits_of_tcr_el2_do_not_leak() {
        // With 16 KiB, TG1 is 0b01: bit 31 (TCR_EL2's RES1) stays clear.
        let out = tcr_el1_for_vel2(tcr(30, 0b10, 0), &RICH);
        assert_eq!(tg1(out), 0b01);
        assert_eq!(out & (1 << 31), 0);
        // Bit 23 is EPD1 in TCR_EL1, set for its own reason; with RES1 clear
        // in the input (L1 wrote 0 to it) the output is the same.
        assert_eq!(
            tcr_el1_for_vel2(tcr(30, 0b10, 0) & !tcr_el2::RES1, &RICH),
            out
        );
    }

    #[test]
    fn tbi_applies_to_the_whole_address_space() {
        let on = tcr_el1_for_vel2(tcr(25, 0, 2) | tcr_el2::TBI, &PLAIN);
        assert_eq!(
            on & (tcr_el1::TBI0 | tcr_el1::TBI1),
            tcr_el1::TBI0 | tcr_el1::TBI1
        );
        let off = tcr_el1_for_vel2(tcr(25, 0, 2), &PLAIN);
        assert_eq!(off & (tcr_el1::TBI0 | tcr_el1::TBI1), 0);
    }

    #[test]
    fn ps_becomes_ips_clamped_to_the_shown_pa_range() {
        assert_eq!(ips(tcr_el1_for_vel2(tcr(25, 0, 0b000), &PLAIN)), 0b000);
        assert_eq!(ips(tcr_el1_for_vel2(tcr(25, 0, 0b001), &PLAIN)), 0b001);
        assert_eq!(ips(tcr_el1_for_vel2(tcr(25, 0, 0b010), &PLAIN)), 0b010);
        // Wider than L1's 40-bit PA, and the reserved 0b111: 40 bits.
        assert_eq!(ips(tcr_el1_for_vel2(tcr(25, 0, 0b101), &PLAIN)), 0b010);
        assert_eq!(ips(tcr_el1_for_vel2(tcr(25, 0, 0b111), &PLAIN)), 0b010);
        let wide = Stage1Features {
            pa_range: 0b101,
            ..PLAIN
        };
        assert_eq!(ips(tcr_el1_for_vel2(tcr(25, 0, 0b101), &wide)), 0b101);
        assert_eq!(ips(tcr_el1_for_vel2(tcr(25, 0, 0b110), &wide)), 0b101);
    }

    #[test]
    fn t0sz_in_range_is_carried_and_out_of_range_behaves_as_the_limit() {
        // CONSTRAINED UNPREDICTABLE: hv's choice is the limit.
        for t in 16..=39 {
            assert_eq!(t0sz(tcr_el1_for_vel2(tcr(t, 0, 2), &PLAIN)), t);
        }
        assert_eq!(t0sz(tcr_el1_for_vel2(tcr(0, 0, 2), &PLAIN)), 16);
        assert_eq!(t0sz(tcr_el1_for_vel2(tcr(15, 0, 2), &PLAIN)), 16);
        assert_eq!(t0sz(tcr_el1_for_vel2(tcr(40, 0, 2), &PLAIN)), 39);
        assert_eq!(t0sz(tcr_el1_for_vel2(tcr(63, 0, 2), &PLAIN)), 39);
        // FEAT_TTST: 48, 47 with 64 KiB.
        assert_eq!(t0sz(tcr_el1_for_vel2(tcr(63, 0b00, 2), &RICH)), 48);
        assert_eq!(t0sz(tcr_el1_for_vel2(tcr(48, 0b10, 2), &RICH)), 48);
        assert_eq!(t0sz(tcr_el1_for_vel2(tcr(63, 0b01, 2), &RICH)), 47);
        // 52-bit VAs: DS with LPA2 (4 KiB, 16 KiB), LVA with 64 KiB.
        let ds = tcr_el2::DS;
        assert_eq!(t0sz(tcr_el1_for_vel2(tcr(12, 0b00, 2) | ds, &RICH)), 12);
        assert_eq!(t0sz(tcr_el1_for_vel2(tcr(0, 0b10, 2) | ds, &RICH)), 12);
        assert_eq!(t0sz(tcr_el1_for_vel2(tcr(12, 0b01, 2), &RICH)), 12);
        assert_eq!(t0sz(tcr_el1_for_vel2(tcr(12, 0b00, 2), &RICH)), 16);
        assert_eq!(t0sz(tcr_el1_for_vel2(tcr(12, 0b01, 2), &PLAIN)), 16);
    }

    #[test]
    fn ds_needs_lpa2_for_the_granule() {
        let ds = tcr_el2::DS;
        assert_ne!(
            tcr_el1_for_vel2(tcr(16, 0b00, 2) | ds, &RICH) & tcr_el1::DS,
            0
        );
        assert_ne!(
            tcr_el1_for_vel2(tcr(16, 0b10, 2) | ds, &RICH) & tcr_el1::DS,
            0
        );
        // RES0 with 64 KiB and without FEAT_LPA2, so T0SZ 12 is below the
        // minimum there.
        let k64 = tcr_el1_for_vel2(tcr(16, 0b01, 2) | ds, &RICH);
        assert_eq!(k64 & tcr_el1::DS, 0);
        let plain = tcr_el1_for_vel2(tcr(12, 0b00, 2) | ds, &PLAIN);
        assert_eq!(plain & tcr_el1::DS, 0);
        assert_eq!(t0sz(plain), 16);
    }

    #[test]
    fn a_reserved_or_unshown_granule_is_the_first_implemented_one() {
        assert_eq!(
            tg0(tcr_el1_for_vel2(tcr(25, 0b11, 2), &PLAIN)),
            Granule::K4.tg0()
        );
        // 16 KiB not implemented in PLAIN.
        assert_eq!(
            tg0(tcr_el1_for_vel2(tcr(25, 0b10, 2), &PLAIN)),
            Granule::K4.tg0()
        );
        let no_4k = Stage1Features {
            granule_4k: false,
            ..RICH
        };
        assert_eq!(
            tg0(tcr_el1_for_vel2(tcr(25, 0b00, 2), &no_4k)),
            Granule::K16.tg0()
        );
        assert_eq!(
            tg0(tcr_el1_for_vel2(tcr(25, 0b11, 2), &no_4k)),
            Granule::K16.tg0()
        );
        let only_64k = Stage1Features {
            granule_4k: false,
            granule_16k: false,
            ..RICH
        };
        let out = tcr_el1_for_vel2(tcr(25, 0b00, 2), &only_64k);
        assert_eq!(
            (tg0(out), tg1(out)),
            (Granule::K64.tg0(), Granule::K64.tg1())
        );
    }

    #[test]
    fn reserved_sh0_is_non_shareable_and_the_others_are_carried() {
        for (sh, out) in [(0b00, 0b00), (0b01, 0b00), (0b10, 0b10), (0b11, 0b11)] {
            let t = tcr_el1_for_vel2(tcr(25, 0, 2) | (sh << 12), &PLAIN);
            assert_eq!((t >> 12) & 0b11, out, "SH0 {sh:#b}");
        }
        for cache in 0..4u64 {
            let t = tcr_el1_for_vel2(tcr(25, 0, 2) | (cache << 8) | ((3 - cache) << 10), &PLAIN);
            assert_eq!((t >> 8) & 0b11, cache);
            assert_eq!((t >> 10) & 0b11, 3 - cache);
        }
    }

    #[test]
    fn single_bit_fields_move_to_their_tcr_el1_places() {
        let base = tcr_el1_for_vel2(tcr(25, 0, 2), &PLAIN);
        for (field, to) in [
            (tcr_el2::HPD, tcr_el1::HPD0),
            (tcr_el2::TBID, tcr_el1::TBID0),
            (tcr_el2::TCMA, tcr_el1::TCMA0),
            (tcr_el2::MTX, tcr_el1::MTX0),
            (1 << 25, 1 << 43),
            (1 << 26, 1 << 44),
            (1 << 27, 1 << 45),
            (1 << 28, 1 << 46),
        ] {
            assert_eq!(tcr_el1_for_vel2(tcr(25, 0, 2) | field, &PLAIN), base | to);
        }
        // HA and HD: L1 is shown no FEAT_HAFDBS, so they are RES0.
        let hw = tcr_el1_for_vel2(tcr(25, 0, 2) | tcr_el2::HA | tcr_el2::HD, &PLAIN);
        assert_eq!(hw, base);
        assert_eq!(hw & (tcr_el1::HA | tcr_el1::HD), 0);
        // Bits not defined with E2H = 0 (34.., 19, 6) set nothing.
        let junk = tcr_el1_for_vel2(
            tcr(25, 0, 2) | (0xffff_fffc << 32) | (1 << 19) | (1 << 6),
            &PLAIN,
        );
        assert_eq!(junk, base);
    }

    #[test]
    fn sctlr_fields_keep_their_places_and_el2_res1_bits_do_not_leak() {
        assert_eq!(sctlr_el1_for_vel2(0), SCTLR_EL1_FIXED);
        assert_eq!(
            sctlr_el1_for_vel2(u64::MAX),
            SCTLR_EL2_CARRIED | SCTLR_EL1_FIXED
        );
        for bit in 0..64 {
            let out = sctlr_el1_for_vel2(1 << bit);
            if SCTLR_EL2_CARRIED & (1 << bit) != 0 {
                assert_eq!(out, SCTLR_EL1_FIXED | (1 << bit), "bit {bit}");
            } else {
                assert_eq!(out, SCTLR_EL1_FIXED, "bit {bit}");
            }
        }
        // SCTLR_EL2's RES1 bits 4 and 5 would be SA0 and CP15BEN.
        assert_eq!(sctlr_el1_for_vel2(SCTLR_EL2_RES1) & 0b11_0000, 0);
        // E2H = 1 only fields (E0E 24, UCI 26, DZE 14, UCT 15, EnRCTX 10,
        // BT0 35, TCF0 39:38, ATA0 42) are not carried.
        for bit in [10, 14, 15, 24, 26, 35, 38, 39, 42] {
            assert_eq!(SCTLR_EL2_CARRIED & (1 << bit), 0, "bit {bit}");
        }
        // SPAN stays 1: no PAN set on entry to L1's EL2.
        assert_ne!(sctlr_el1_for_vel2(0) & (1 << 23), 0);
        // The demo's value: M, C, I with the RES1 bits.
        let demo = SCTLR_EL2_RESET | 1 | (1 << 2) | (1 << 12);
        assert_eq!(
            sctlr_el1_for_vel2(demo),
            SCTLR_EL1_FIXED | 1 | (1 << 2) | (1 << 12) | (1 << 11) | (1 << 22)
        );
    }

    #[test]
    fn ttbr0_has_asid_zero() {
        assert_eq!(
            ttbr0_el1_for_vel2(0xabcd_0000_4020_0001),
            0x0000_0000_4020_0001
        );
        assert_eq!(
            ttbr0_el1_for_vel2(0x0000_ffff_ffff_fffe),
            0x0000_ffff_ffff_fffe
        );
    }

    #[test]
    fn the_regime_reads_back_what_l1_wrote_with_res1_set() {
        let mut regime = NonVheRegime::default();
        assert!(!regime.mmu_on());
        assert_eq!(regime.read(Vel2Stage1Register::Sctlr), SCTLR_EL2_RESET);
        let change = regime.write(Vel2Stage1Register::Sctlr, 0x1005, &PLAIN);
        assert_eq!(
            regime.read(Vel2Stage1Register::Sctlr),
            0x1005 | SCTLR_EL2_RES1
        );
        assert_eq!(change, RegimeChange::Sctlr(sctlr_el1_for_vel2(0x1005)));
        assert!(regime.mmu_on());
        // T0SZ 5 (below the minimum) reads back as written.
        let change = regime.write(Vel2Stage1Register::Tcr, 5, &PLAIN);
        assert_eq!(regime.read(Vel2Stage1Register::Tcr), 5 | tcr_el2::RES1);
        assert_eq!(change, RegimeChange::Tcr(tcr_el1_for_vel2(5, &PLAIN)));
        assert_eq!(t0sz(tcr_el1_for_vel2(5, &PLAIN)), 16);
        let change = regime.write(Vel2Stage1Register::Ttbr0, 0xffff_0000_4000_0000, &PLAIN);
        assert_eq!(
            regime.read(Vel2Stage1Register::Ttbr0),
            0xffff_0000_4000_0000
        );
        assert_eq!(change, RegimeChange::Ttbr0(0x4000_0000));
        assert_eq!(
            regime.write(Vel2Stage1Register::Mair, 0xff04, &PLAIN),
            RegimeChange::Mair(0xff04)
        );
        assert_eq!(
            regime.write(Vel2Stage1Register::Amair, 7, &PLAIN),
            RegimeChange::Amair(7)
        );
        let hw = regime.hardware(&PLAIN);
        assert_eq!(
            hw,
            HardwareEl1Regime {
                sctlr: sctlr_el1_for_vel2(0x1005),
                tcr: tcr_el1_for_vel2(5, &PLAIN),
                ttbr0: 0x4000_0000,
                ttbr1: 0,
                mair: 0xff04,
                amair: 7,
            }
        );
    }

    #[test]
    fn encodings() {
        use Vel2Stage1Register as R;
        assert_eq!(R::from_encoding(1, 0, 0), Some(R::Sctlr));
        assert_eq!(R::from_encoding(2, 0, 0), Some(R::Ttbr0));
        assert_eq!(R::from_encoding(2, 0, 2), Some(R::Tcr));
        assert_eq!(R::from_encoding(10, 2, 0), Some(R::Mair));
        assert_eq!(R::from_encoding(10, 3, 0), Some(R::Amair));
        assert_eq!(R::from_encoding(2, 0, 1), None);
        assert_eq!(R::from_encoding(12, 0, 0), None);
        assert!(vhe_only_el2_register(2, 0, 1));
        assert!(vhe_only_el2_register(13, 0, 1));
        assert!(!vhe_only_el2_register(2, 0, 0));
    }

    #[test]
    fn features_decode_from_the_id_registers() {
        // QEMU max: PARange 40 (shown), TGran4 0b0001 (LPA2), TGran64 0,
        // TGran16 0b0010 (LPA2); MMFR2 VARange 1, ST 1.
        let f = Stage1Features::from_id_registers(0x1000_0000 | 0x0020_0000 | 0b010, 0x1001_0000);
        assert_eq!(f, RICH);
        // TGran4 0b1111, TGran64 0b1111, TGran16 0: none; PARange 48.
        let none = Stage1Features::from_id_registers(0xf000_0000 | 0x0f00_0000 | 0b101, 0);
        assert!(!none.granule_4k && !none.granule_16k && !none.granule_64k);
        assert_eq!(none.pa_range, 0b101);
        assert_eq!(none.granule(0), Granule::K4);
    }

    #[test]
    fn modes_fix_e2h_and_the_hardware_controls() {
        assert_eq!(L1Vel2Mode::Vhe.virtual_hcr(0), hcr::E2H);
        assert_eq!(L1Vel2Mode::NonVhe.virtual_hcr(hcr::E2H | hcr::VM), hcr::VM);
        let vhe = L1Vel2Mode::Vhe.hardware_hcr(false);
        assert_eq!(vhe, crate::nested::L1_HCR | hcr::TVM | hcr::TRVM);
        assert_eq!(vhe & hcr::NV1, 0);
        assert_ne!(vhe & hcr::DC, 0);
        assert_eq!(L1Vel2Mode::Vhe.hardware_hcr(true), vhe & !hcr::DC);
        for (crn, crm, op2) in [(1, 0, 0), (2, 0, 2), (10, 2, 0), (13, 0, 1), (5, 2, 0)] {
            assert!(tvm_register(crn, crm, op2));
        }
        assert!(!tvm_register(12, 0, 0) && !tvm_register(1, 0, 2) && !tvm_register(4, 0, 1));
        let off = L1Vel2Mode::NonVhe.hardware_hcr(false);
        assert_eq!(off, crate::nested::L1_HCR | hcr::NV1);
        assert_ne!(off & hcr::DC, 0);
        let on = L1Vel2Mode::NonVhe.hardware_hcr(true);
        assert_eq!(on & hcr::DC, 0);
        assert_eq!(on | hcr::DC, off);
    }

    #[test]
    fn a_non_vhe_l1_is_shown_no_vhe_and_feat_e2h0() {
        let host_mmfr1 = 0x1122_3344_5566_7788;
        let mmfr1 = shown_to_non_vhe_l1(IdRegister::Mmfr1, host_mmfr1);
        assert_eq!((mmfr1 >> 8) & 0xf, 0);
        assert_eq!(
            mmfr1 | (0xf << 8),
            shown_to_l1(IdRegister::Mmfr1, host_mmfr1) | (0xf << 8)
        );
        let mmfr4 = shown_to_non_vhe_l1(IdRegister::Mmfr4, u64::MAX);
        assert_eq!((mmfr4 >> 24) & 0xf, 0);
        assert_eq!(
            mmfr4 | (0xf << 24),
            shown_to_l1(IdRegister::Mmfr4, u64::MAX) | (0xf << 24)
        );
        for r in [
            IdRegister::Mmfr0,
            IdRegister::Mmfr2,
            IdRegister::Pfr0,
            IdRegister::Isar3,
        ] {
            assert_eq!(shown_to_non_vhe_l1(r, u64::MAX), shown_to_l1(r, u64::MAX));
        }
    }

    /// A VHE L1's TCR_EL2: T0SZ/T1SZ 25, 4 KiB both, write-back Inner
    /// Shareable walks, IPS 40 bits, A1, AS, TBI0.
    const VHE_TCR: u64 = 25
        | (0b01 << 8)
        | (0b01 << 10)
        | (0b11 << 12)
        | (25 << 16)
        | (1 << 22)
        | (0b01 << 24)
        | (0b01 << 26)
        | (0b11 << 28)
        | (0b10 << 30)
        | (0b010 << 32)
        | (1 << 36)
        | tcr_el1::TBI0;

    #[test]
    fn a_vhe_tcr_in_range_is_the_hardware_one() {
        assert_eq!(tcr_el1_for_vhe_vel2(VHE_TCR, &PLAIN), VHE_TCR);
        assert_eq!(
            tcr_el1_for_vhe_vel2(VHE_TCR | tcr_el1::EPD1 | (1 << 7), &RICH),
            VHE_TCR | tcr_el1::EPD1 | (1 << 7)
        );
    }

    #[test]
    fn a_vhe_tcr_gets_the_shown_pa_range_no_hafdbs_and_limits() {
        let wide = (VHE_TCR & !(0b111 << 32)) | (0b101 << 32);
        assert_eq!(tcr_el1_for_vhe_vel2(wide, &PLAIN), VHE_TCR);
        let reserved = VHE_TCR | (0b111 << 32);
        assert_eq!(tcr_el1_for_vhe_vel2(reserved, &PLAIN), VHE_TCR);
        let hw = VHE_TCR | tcr_el1::HA | tcr_el1::HD;
        assert_eq!(tcr_el1_for_vhe_vel2(hw, &PLAIN), VHE_TCR);
        // T0SZ 5 and T1SZ 60: 16 and 39 (48 with FEAT_TTST).
        let out_of_range = (VHE_TCR & !(0x3f | (0x3f << 16))) | 5 | (60 << 16);
        let t = tcr_el1_for_vhe_vel2(out_of_range, &PLAIN);
        assert_eq!((t0sz(t), t1sz(t)), (16, 39));
        let t = tcr_el1_for_vhe_vel2(out_of_range, &RICH);
        assert_eq!((t0sz(t), t1sz(t)), (16, 48));
        // TG1 0b00 (reserved): the first implemented granule, 4 KiB.
        let t = tcr_el1_for_vhe_vel2(VHE_TCR & !(0b11 << 30), &PLAIN);
        assert_eq!(tg1(t), Granule::K4.tg1());
        // TG1 16 KiB, not in PLAIN: 4 KiB; in RICH: kept.
        let k16 = (VHE_TCR & !(0b11 << 30)) | (0b01 << 30);
        assert_eq!(tg1(tcr_el1_for_vhe_vel2(k16, &PLAIN)), Granule::K4.tg1());
        assert_eq!(tg1(tcr_el1_for_vhe_vel2(k16, &RICH)), 0b01);
        // DS: kept with LPA2 for both granules, else RES0 (and T0SZ 12 is
        // then below the minimum).
        let ds = (VHE_TCR & !0x3f) | 12 | tcr_el1::DS;
        let t = tcr_el1_for_vhe_vel2(ds, &RICH);
        assert_ne!(t & tcr_el1::DS, 0);
        assert_eq!(t0sz(t), 12);
        let t = tcr_el1_for_vhe_vel2(ds, &PLAIN);
        assert_eq!(t & tcr_el1::DS, 0);
        assert_eq!(t0sz(t), 16);
    }

    #[test]
    fn a_vhe_sctlr_keeps_its_fields_and_gets_span() {
        for bit in 0..64 {
            let v = 1u64 << bit;
            // Every field as written but EE (RES0, review 34 R34-6).
            assert_eq!(
                sctlr_el1_for_vhe_vel2(v, false),
                (v | SCTLR_SPAN) & !SCTLR_EE,
                "bit {bit}"
            );
            // In host mode SPAN is L1's own too.
            assert_eq!(
                sctlr_el1_for_vhe_vel2(v, true),
                v & !SCTLR_EE,
                "bit {bit}, host mode"
            );
        }
        assert!(!VheRegime::RESET.mmu_on());
        assert!(VheRegime { sctlr: 1, tcr: 0 }.mmu_on());
        assert_eq!(VheRegime::RESET.sctlr & SCTLR_SPAN, SCTLR_SPAN);
    }

    /// Review 34 R34-5: a VHE L1's TCR with TG0 4 KiB, TG1 64 KiB, DS = 1
    /// and T0SZ 12 (a 52-bit TTBR0 range, legal with LPA2 for 4 KiB): DS
    /// needs LPA2 for both granules and 64 KiB has none, so it is dropped,
    /// and T0SZ is then clamped to the DS = 0 limit (16), never left at 12.
    #[test]
    fn a_dropped_ds_clamps_txsz_to_the_limits_without_it() {
        let tcr = 12
            | (0b01 << 8)
            | (0b01 << 10)
            | (0b11 << 12)
            | (25 << 16)
            | (0b11 << 30)
            | (0b010 << 32)
            | tcr_el1::DS;
        let out = tcr_el1_for_vhe_vel2(tcr, &RICH);
        assert_eq!(out & tcr_el1::DS, 0);
        assert_eq!(t0sz(out), 16);
        // With TG1 4 KiB too, DS stays and T0SZ 12 is legal.
        let both_4k = (tcr & !(0b11 << 30)) | (0b10 << 30);
        let out = tcr_el1_for_vhe_vel2(both_4k, &RICH);
        assert_ne!(out & tcr_el1::DS, 0);
        assert_eq!(t0sz(out), 12);
    }

    /// Review 34 R34-6: L1 is shown BigEnd 0, so SCTLR_EL2.EE is RES0: it
    /// never reaches the hardware, in either mode.
    #[test]
    fn sctlr_ee_never_reaches_the_hardware() {
        assert_eq!(sctlr_el1_for_vel2(SCTLR_EL2_RESET | SCTLR_EE) & SCTLR_EE, 0);
        assert_eq!(sctlr_el1_for_vhe_vel2(SCTLR_EE, false) & SCTLR_EE, 0);
        assert_eq!(sctlr_el1_for_vhe_vel2(SCTLR_EE, true) & SCTLR_EE, 0);
    }
}
