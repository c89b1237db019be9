//! The EL2 control-register values hv runs a guest with, composed from the
//! CPU's ID registers. Pure functions: the values are tested on the host,
//! the `arch` module only writes them.

/// Which nested-virtualization extension the CPU has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NestedVirt {
    None,
    Nv,
    Nv2,
}

/// The ID registers that decide what to enable or leave untrapped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    pub id_aa64pfr0: u64,
    pub id_aa64pfr1: u64,
    /// ID_AA64PFR2_EL1 (RAZ on CPUs that predate it).
    pub id_aa64pfr2: u64,
    pub id_aa64mmfr0: u64,
    pub id_aa64mmfr1: u64,
    pub id_aa64mmfr2: u64,
    pub id_aa64mmfr3: u64,
    /// ID_AA64MMFR4_EL1 (RAZ on CPUs that predate it).
    pub id_aa64mmfr4: u64,
    pub id_aa64dfr0: u64,
    /// ID_AA64DFR1_EL1 (RAZ on CPUs that predate it).
    pub id_aa64dfr1: u64,
    pub id_aa64isar2: u64,
    /// ID_AA64SMFR0_EL1 (RAZ without SME).
    pub id_aa64smfr0: u64,
}

fn field(value: u64, shift: u32) -> u64 {
    (value >> shift) & 0xf
}

impl CpuFeatures {
    /// EL2 implemented in AArch64 (ID_AA64PFR0_EL1.EL2).
    pub fn has_el2(&self) -> bool {
        field(self.id_aa64pfr0, 8) != 0
    }
    /// The GICv3 system-register CPU interface (ID_AA64PFR0_EL1.GIC).
    pub fn has_gic_sysregs(&self) -> bool {
        field(self.id_aa64pfr0, 24) != 0
    }
    pub fn has_sve(&self) -> bool {
        field(self.id_aa64pfr0, 32) != 0
    }
    pub fn has_sme(&self) -> bool {
        field(self.id_aa64pfr1, 24) != 0
    }
    /// FEAT_MTE (ID_AA64PFR1_EL1.MTE >= 1): PSTATE.TCO exists.
    pub fn has_mte(&self) -> bool {
        field(self.id_aa64pfr1, 8) >= 1
    }
    /// FEAT_SSBS (ID_AA64PFR1_EL1.SSBS): PSTATE.SSBS exists.
    pub fn has_ssbs(&self) -> bool {
        field(self.id_aa64pfr1, 4) != 0
    }
    /// FEAT_NMI (ID_AA64PFR1_EL1.NMI): PSTATE.ALLINT exists.
    pub fn has_nmi(&self) -> bool {
        field(self.id_aa64pfr1, 36) != 0
    }
    /// FEAT_PAN (ID_AA64MMFR1_EL1.PAN).
    pub fn has_pan(&self) -> bool {
        field(self.id_aa64mmfr1, 20) != 0
    }
    pub fn has_mte2(&self) -> bool {
        field(self.id_aa64pfr1, 8) >= 2
    }
    pub fn has_gcs(&self) -> bool {
        field(self.id_aa64pfr1, 44) != 0
    }
    /// FEAT_AMUv1 (ID_AA64PFR0_EL1.AMU).
    pub fn has_amu(&self) -> bool {
        field(self.id_aa64pfr0, 44) != 0
    }
    /// HAFGRTR_EL2 exists (FEAT_FGT with FEAT_AMUv1). Its reset value is
    /// UNKNOWN, so hv clears it (no AMU traps), as booting.rst asks.
    pub fn has_hafgrtr(&self) -> bool {
        self.has_fgt() && self.has_amu()
    }
    pub fn has_fgt(&self) -> bool {
        field(self.id_aa64mmfr0, 56) != 0
    }
    /// FEAT_FGT2 (ID_AA64MMFR0_EL1.FGT >= 0b0010): HFGRTR2_EL2,
    /// HFGWTR2_EL2, HFGITR2_EL2, HDFGRTR2_EL2 and HDFGWTR2_EL2 exist, with
    /// UNKNOWN reset values.
    pub fn has_fgt2(&self) -> bool {
        field(self.id_aa64mmfr0, 56) >= 2
    }
    /// FEAT_PMUv3p9 (ID_AA64DFR0_EL1.PMUVer >= 0b1001, 0b1111 being an
    /// IMPLEMENTATION DEFINED PMU): PMUACR_EL1 and PMZR_EL0.
    pub fn has_pmuv3p9(&self) -> bool {
        let version = field(self.id_aa64dfr0, 8);
        (0b1001..0xf).contains(&version)
    }
    /// FEAT_PMUv3_ICNTR (ID_AA64DFR1_EL1.PMICNTR, bits [39:36]): the
    /// instruction counter PMICNTR_EL0 and PMICFILTR_EL0.
    pub fn has_pmuv3_icntr(&self) -> bool {
        field(self.id_aa64dfr1, 36) != 0
    }
    /// FEAT_EBEP (ID_AA64DFR1_EL1.EBEP, bits [51:48]): PMU exceptions and
    /// PSTATE.PM, which hv's injected exception entries do not model
    /// (`inject::entry_pstate`); QEMU `-cpu max` does not have it.
    pub fn has_ebep(&self) -> bool {
        field(self.id_aa64dfr1, 48) != 0
    }
    pub fn has_hcx(&self) -> bool {
        field(self.id_aa64mmfr1, 40) != 0
    }
    pub fn has_mops(&self) -> bool {
        field(self.id_aa64isar2, 16) != 0
    }
    /// FEAT_WFxT (ID_AA64ISAR2_EL1.WFxT, bits [3:0], 0b0010): WFIT and
    /// WFET.
    pub fn has_wfxt(&self) -> bool {
        field(self.id_aa64isar2, 0) >= 2
    }
    /// These features as a CPU without FEAT_WFxT has them (`hv.wfxt=off`).
    pub fn without_wfxt(self) -> Self {
        Self {
            id_aa64isar2: self.id_aa64isar2 & !0xf,
            ..self
        }
    }
    /// FEAT_TCR2 (ID_AA64MMFR3_EL1.TCRX): TCR2_EL1 exists.
    pub fn has_tcr2(&self) -> bool {
        field(self.id_aa64mmfr3, 0) != 0
    }
    /// FEAT_SCTLR2 (ID_AA64MMFR3_EL1.SCTLRX): SCTLR2_EL1 exists.
    pub fn has_sctlr2(&self) -> bool {
        field(self.id_aa64mmfr3, 4) != 0
    }
    /// FEAT_SME_FA64 (ID_AA64SMFR0_EL1.FA64, bit 63).
    pub fn has_sme_fa64(&self) -> bool {
        self.has_sme() && self.id_aa64smfr0 >> 63 != 0
    }
    /// FEAT_SME2 (ID_AA64SMFR0_EL1.SMEver >= 1): the ZT0 register.
    pub fn has_sme2(&self) -> bool {
        self.has_sme() && field(self.id_aa64smfr0, 56) >= 1
    }
    /// FEAT_E2H0: HCR_EL2.E2H may be 0. ID_AA64MMFR4_EL1.E2H0 (bits
    /// [27:24]) is a signed field: 0 means implemented, 0b1110 and 0b1111
    /// (negative) mean HCR_EL2.E2H is RES1. hv runs only with E2H = 0
    /// (nVHE layouts of CPTR_EL2, CNTHCTL_EL2 and the EL2 regime).
    pub fn has_e2h0(&self) -> bool {
        field(self.id_aa64mmfr4, 24) < 0b1000
    }
    pub fn has_s1pie(&self) -> bool {
        field(self.id_aa64mmfr3, 8) != 0
    }
    pub fn has_s1poe(&self) -> bool {
        field(self.id_aa64mmfr3, 16) != 0
    }
    /// Nested virtualization (ID_AA64MMFR2_EL1.NV): 0 none, 1 FEAT_NV,
    /// 2 FEAT_NV2 (the VNCR page) which hv's nested mode requires.
    pub fn nested_virtualization(&self) -> NestedVirt {
        match field(self.id_aa64mmfr2, 24) {
            0 => NestedVirt::None,
            1 => NestedVirt::Nv,
            _ => NestedVirt::Nv2,
        }
    }
    /// FEAT_BRBE (ID_AA64DFR0_EL1.BRBE).
    pub fn has_brbe(&self) -> bool {
        field(self.id_aa64dfr0, 52) != 0
    }
    /// FEAT_SPE (ID_AA64DFR0_EL1.PMSVer != 0): the Profiling Buffer.
    pub fn has_spe(&self) -> bool {
        field(self.id_aa64dfr0, 32) != 0
    }
    /// FEAT_TRBE (ID_AA64DFR0_EL1.TraceBuffer != 0): the Trace Buffer.
    pub fn has_trbe(&self) -> bool {
        field(self.id_aa64dfr0, 44) != 0
    }
    /// FEAT_FPMR (ID_AA64PFR2_EL1.FPMR != 0): the FPMR register.
    pub fn has_fpmr(&self) -> bool {
        field(self.id_aa64pfr2, 32) != 0
    }
    /// FEAT_SPEv1p2 (ID_AA64DFR0_EL1.PMSVer >= 3): PMSNEVFR_EL1.
    pub fn has_spe_v1p2(&self) -> bool {
        field(self.id_aa64dfr0, 32) >= 3
    }
    pub fn has_pmuv3(&self) -> bool {
        let version = field(self.id_aa64dfr0, 8);
        version != 0 && version != 0xf
    }
    pub fn pa_range(&self) -> u64 {
        field(self.id_aa64mmfr0, 0)
    }
}

// HCR_EL2 bits.
pub const HCR_VM: u64 = 1 << 0;
pub const HCR_SWIO: u64 = 1 << 1;
pub const HCR_FMO: u64 = 1 << 3;
pub const HCR_IMO: u64 = 1 << 4;
pub const HCR_FB: u64 = 1 << 9;
pub const HCR_BSU_INNER: u64 = 1 << 10;
pub const HCR_TSC: u64 = 1 << 19;
pub const HCR_RW: u64 = 1 << 31;
pub const HCR_APK: u64 = 1 << 40;
pub const HCR_API: u64 = 1 << 41;
pub const HCR_ATA: u64 = 1 << 56;

/// HCR_EL2 for a guest that runs AArch64 at EL1 and reaches hv through HVC
/// or a trapped SMC. With a virtual GIC, physical IRQs and FIQs go to EL2
/// (IMO/FMO) and the guest's GIC CPU interface is the virtual one; with the
/// GIC passed through they go straight to the guest. SErrors stay with the
/// guest (AMO clear). WFI/WFE run natively (TWI/TWE clear): both physical
/// interrupts (taken to EL2) and virtual ones in list registers wake them.
pub fn hcr_el2(features: &CpuFeatures, virtual_gic: bool) -> u64 {
    let mut hcr = HCR_VM | HCR_SWIO | HCR_FB | HCR_BSU_INNER | HCR_TSC | HCR_RW | HCR_APK | HCR_API;
    if virtual_gic {
        hcr |= HCR_IMO | HCR_FMO;
    }
    if features.has_mte2() {
        hcr |= HCR_ATA;
    }
    hcr
}

/// CPTR_EL2 (E2H=0 layout) trapping nothing: FP/SIMD, SVE and SME belong to
/// the guest (hv itself never touches FP/SIMD registers). TZ and TSM are
/// RES1 where their feature is absent.
pub fn cptr_el2(features: &CpuFeatures) -> u64 {
    let res1 = 1 << 13 | 1 << 9 | 0xff;
    let mut cptr = res1;
    if !features.has_sve() {
        cptr |= 1 << 8;
    }
    if !features.has_sme() {
        cptr |= 1 << 12;
    }
    cptr
}

// MDCR_EL2 bits.
pub const MDCR_HPMD: u64 = 1 << 17;
pub const MDCR_HCCD: u64 = 1 << 23;
/// E2PB = 0b11: the Profiling Buffer uses the EL1&0 regime, its EL1
/// registers untrapped.
pub const MDCR_E2PB_EL1: u64 = 0b11 << 12;
/// E2TB = 0b11: the Trace Buffer likewise.
pub const MDCR_E2TB_EL1: u64 = 0b11 << 24;

/// MDCR_EL2: all PMU counters (HPMN = PMCR_EL0.N) and debug to the guest,
/// but hv's own execution at EL2 is not counted, so the guest's counters
/// cannot watch hv: HPMD (event counters, FEAT_PMUv3p1) and HCCD (cycle
/// counter, FEAT_PMUv3p5). The SPE Profiling Buffer and the Trace Buffer
/// belong to the guest's EL1 (E2PB, E2TB = 0b11, as Linux's booting.rst
/// asks; 0b00 would trap their registers to hv, which makes them
/// UNDEFINED), with or without a PMU. Where EL3 owns a buffer (its
/// PMBIDR_EL1.P / TRBIDR_EL1.P read 1), EL3's own trap wins and these
/// bits change nothing.
pub fn mdcr_el2(features: &CpuFeatures, pmcr_el0: u64) -> u64 {
    let mut mdcr = 0;
    if features.has_spe() {
        mdcr |= MDCR_E2PB_EL1;
    }
    if features.has_trbe() {
        mdcr |= MDCR_E2TB_EL1;
    }
    if !features.has_pmuv3() {
        return mdcr;
    }
    mdcr |= (pmcr_el0 >> 11) & 0x1f;
    let version = field(features.id_aa64dfr0, 8);
    if version >= 4 {
        mdcr |= MDCR_HPMD;
    }
    if version >= 6 {
        mdcr |= MDCR_HCCD;
    }
    mdcr
}

// HCRX_EL2 bits.
pub const HCRX_MSCEN: u64 = 1 << 11;
pub const HCRX_TCR2EN: u64 = 1 << 14;
pub const HCRX_SCTLR2EN: u64 = 1 << 15;
pub const HCRX_GCSEN: u64 = 1 << 22;
pub const HCRX_ENFPM: u64 = 1 << 23;

/// HCRX_EL2 when FEAT_HCX exists, enabling at EL1 what the guest sees in
/// its (untrapped) ID registers, as Linux's booting.rst asks of EL2:
/// MSCEn for FEAT_MOPS, TCR2En for FEAT_TCR2 (else TCR2_EL1 accesses trap
/// to hv, which makes them UNDEFINED: a 6.5+ kernel's `__cpu_setup`
/// dies), SCTLR2En for FEAT_SCTLR2, GCSEn for FEAT_GCS, EnFPM for
/// FEAT_FPMR (else FPMR accesses trap: a 6.8+ kernel switching FPMR on
/// such a CPU takes an UNDEFINED exception). MCE2 stays 0:
/// MOPS exceptions from EL1 go to the guest's EL1; the EL2 handling
/// booting.rst asks for exists for a vCPU that moves between physical
/// CPUs with different MOPS options mid-instruction, and hv's vCPUs never
/// move.
pub fn hcrx_el2(features: &CpuFeatures) -> u64 {
    let mut hcrx = 0;
    if features.has_mops() {
        hcrx |= HCRX_MSCEN;
    }
    if features.has_tcr2() {
        hcrx |= HCRX_TCR2EN;
    }
    if features.has_sctlr2() {
        hcrx |= HCRX_SCTLR2EN;
    }
    if features.has_gcs() {
        hcrx |= HCRX_GCSEN;
    }
    if features.has_fpmr() {
        hcrx |= HCRX_ENFPM;
    }
    hcrx
}

/// HFGITR_EL2 with FEAT_FGT: no instruction trapped; the negative (nXXX)
/// bits set for the features this CPU has, as booting.rst asks: nGCSEPP,
/// nGCSSTR_EL1, nGCSPUSHM_EL1 (FEAT_GCS); nBRBINJ, nBRBIALL (FEAT_BRBE).
pub fn hfgitr_el2(features: &CpuFeatures) -> u64 {
    let mut value = 0;
    if features.has_gcs() {
        value |= 1 << 59 | 1 << 58 | 1 << 57;
    }
    if features.has_brbe() {
        value |= 1 << 56 | 1 << 55;
    }
    value
}

/// HDFGRTR_EL2 with FEAT_FGT: nothing trapped; nPMSNEVFR_EL1
/// (FEAT_SPEv1p2) and nBRBDATA, nBRBCTL, nBRBIDR (FEAT_BRBE) set.
pub fn hdfgrtr_el2(features: &CpuFeatures) -> u64 {
    let mut value = 0;
    if features.has_spe_v1p2() {
        value |= 1 << 62;
    }
    if features.has_brbe() {
        value |= 1 << 61 | 1 << 60 | 1 << 59;
    }
    value
}

/// HDFGWTR_EL2 with FEAT_FGT: as HDFGRTR_EL2 without the read-only
/// BRBIDR.
pub fn hdfgwtr_el2(features: &CpuFeatures) -> u64 {
    hdfgrtr_el2(features) & !(1 << 59)
}

// FEAT_FGT2 negative (nXXX: trap when 0) controls of HDFGRTR2_EL2 and
// HDFGWTR2_EL2.
pub const HDFGXTR2_NPMICNTR_EL0: u64 = 1 << 2;
pub const HDFGXTR2_NPMICFILTR_EL0: u64 = 1 << 3;
pub const HDFGXTR2_NPMUACR_EL1: u64 = 1 << 4;
pub const HDFGWTR2_NPMZR_EL0: u64 = 1 << 21;

/// HFGRTR2_EL2, HFGWTR2_EL2 and HFGITR2_EL2 with FEAT_FGT2: 0. Every
/// positive trap (TSBCSYNC) is off; the negative controls (nPFAR_EL1,
/// nERXGSR_EL1, the FEAT_SRMASK alias/mask registers, nRCWSMASK_EL1,
/// nDCCIVAPS) are RES0 unless their feature exists, and hv detects none
/// of those features, so they stay 0: on a CPU with one of them its
/// registers trap to hv, which makes them UNDEFINED for the guest (the
/// value Linux's booting.rst asks of EL2 for these registers too).
pub const FGT2_UNTRAPPED: u64 = 0;

/// HDFGRTR2_EL2 with FEAT_FGT2: the PMU registers the guest sees in its
/// ID registers untrapped, as booting.rst asks (else a 6.13+ kernel's PMU
/// driver takes UNDEFINED on PMUACR_EL1): nPMUACR_EL1 with FEAT_PMUv3p9,
/// nPMICNTR_EL0 and nPMICFILTR_EL0 with FEAT_PMUv3_ICNTR (each bit is RES0
/// without its feature, so it is set only with it). The other negative
/// controls (FEAT_SPMU, PMUv3_SS, SEBEP/EBEP, SPE_FDS/nVM, STEP2, ITE,
/// Debugv8p9, TRBE_MPAM) stay 0, as for `FGT2_UNTRAPPED`.
pub fn hdfgrtr2_el2(features: &CpuFeatures) -> u64 {
    let mut value = 0;
    if features.has_pmuv3p9() {
        value |= HDFGXTR2_NPMUACR_EL1;
    }
    if features.has_pmuv3_icntr() {
        value |= HDFGXTR2_NPMICNTR_EL0 | HDFGXTR2_NPMICFILTR_EL0;
    }
    value
}

/// HDFGWTR2_EL2 with FEAT_FGT2: as HDFGRTR2_EL2, plus the write-only
/// PMZR_EL0's nPMZR_EL0 (FEAT_PMUv3p9).
pub fn hdfgwtr2_el2(features: &CpuFeatures) -> u64 {
    let mut value = hdfgrtr2_el2(features);
    if features.has_pmuv3p9() {
        value |= HDFGWTR2_NPMZR_EL0;
    }
    value
}

/// ZCR_EL2 for hv's guests: LEN 0xf, the longest vectors the CPU has.
pub const ZCR_EL2_LONGEST: u64 = 0xf;

// SMCR_EL2 bits.
pub const SMCR_LEN_MAX: u64 = 0xf;
pub const SMCR_EZT0: u64 = 1 << 30;
pub const SMCR_FA64: u64 = 1 << 31;

/// SMCR_EL2 with FEAT_SME: the longest streaming vectors, full A64 in
/// streaming mode with FEAT_SME_FA64 and ZT0 untrapped with FEAT_SME2
/// (booting.rst; without EZT0 every ZT0 access traps to hv, which cannot
/// handle it).
pub fn smcr_el2(features: &CpuFeatures) -> u64 {
    let mut smcr = SMCR_LEN_MAX;
    if features.has_sme_fa64() {
        smcr |= SMCR_FA64;
    }
    if features.has_sme2() {
        smcr |= SMCR_EZT0;
    }
    smcr
}

/// HFGRTR_EL2/HFGWTR_EL2 with FEAT_FGT: nothing trapped. Most bits trap
/// when set, but some (named nXXX) trap when clear; those are set for the
/// features this CPU has.
pub fn hfgxtr_el2(features: &CpuFeatures) -> u64 {
    let mut value = 0;
    if features.has_sme() {
        value |= 1 << 55 | 1 << 54; // nTPIDR2_EL0, nSMPRI_EL1
    }
    if features.has_s1pie() {
        value |= 1 << 58 | 1 << 57; // nPIR_EL1, nPIRE0_EL1
    }
    if features.has_s1poe() {
        value |= 1 << 60 | 1 << 59; // nPOR_EL1, nPOR_EL0
    }
    if features.has_gcs() {
        value |= 1 << 53 | 1 << 52; // nGCS_EL1, nGCS_EL0
    }
    value
}

/// CNTHCTL_EL2 (E2H=0): EL1 may use the physical counter and timer.
pub const CNTHCTL_EL2: u64 = 0b11;

/// ICC_SRE_EL2: system-register GIC interface, and EL1 may use it too.
pub const ICC_SRE_EL2: u64 = 1 << 3 | 1 << 0;

/// SCTLR_EL1 as the Linux boot protocol wants it: MMU and caches off (the
/// RES1 bits of the register set).
pub const SCTLR_EL1_MMU_OFF: u64 = 0x30d0_0800;

/// SCTLR_EL2 with the MMU, alignment checks on SP, both caches, and WXN
/// (writable memory is never executable) on.
pub const SCTLR_EL2_MMU_ON: u64 = 0x30c5_0830 | 1 << 0 | 1 << 2 | 1 << 3 | 1 << 12 | 1 << 19;

/// The guest's first PSTATE: EL1h, all exceptions masked.
pub const GUEST_ENTRY_PSTATE: u64 = 0x3c5;

#[cfg(test)]
mod tests {
    use super::*;

    /// ID values of QEMU's `-cpu max` (SVE, SME, FGT, HCX, MOPS, PMUv3).
    const MAX: CpuFeatures = CpuFeatures {
        id_aa64pfr0: 0x1201_1111_1101_1111 | 1 << 32,
        id_aa64pfr1: 0x0000_0000_0100_0121,
        id_aa64pfr2: 0,
        id_aa64mmfr0: 0x1000_0000_0010_1125 | 1 << 56,
        id_aa64mmfr1: 0x1000_1101_1121_1122,
        id_aa64mmfr2: 0x1221_0011_1201_1011,
        id_aa64mmfr3: 0,
        id_aa64mmfr4: 0,
        id_aa64dfr0: 0x0000_0000_0000_0906,
        id_aa64dfr1: 0,
        id_aa64isar2: 0x0000_0000_0001_0000,
        id_aa64smfr0: 0x80f1_00fd_0000_0000,
    };

    /// Neoverse N1: no SVE/SME/FGT/HCX/MOPS.
    const N1: CpuFeatures = CpuFeatures {
        id_aa64pfr0: 0x1100_0000_1011_1112,
        id_aa64pfr1: 0x0000_0000_0000_0020,
        id_aa64pfr2: 0,
        id_aa64mmfr0: 0x0000_0000_0010_1125,
        id_aa64mmfr1: 0x0000_0000_1012_2122,
        id_aa64mmfr2: 0x0000_0000_0000_1011,
        id_aa64mmfr3: 0,
        id_aa64mmfr4: 0,
        id_aa64dfr0: 0x0000_0000_1030_5408,
        id_aa64dfr1: 0,
        id_aa64isar2: 0,
        id_aa64smfr0: 0,
    };

    /// `hv.wfxt=off` hides only FEAT_WFxT (ISAR2 bits [3:0]).
    #[test]
    fn without_wfxt_clears_only_its_field() {
        let wfxt = CpuFeatures {
            id_aa64isar2: MAX.id_aa64isar2 | 2,
            ..MAX
        };
        assert!(wfxt.has_wfxt() && !N1.has_wfxt());
        assert!(!wfxt.without_wfxt().has_wfxt());
        assert_eq!(wfxt.without_wfxt(), MAX);
    }

    /// FEAT_FGT2 is ID_AA64MMFR0_EL1.FGT = 2 (QEMU `-cpu max` has 1: no
    /// FGT2, so these registers are never written there); its debug trap
    /// registers open the FEAT_PMUv3p9 registers only on a PMUv3p9 CPU.
    #[test]
    fn fgt2_registers_follow_the_id_registers() {
        assert!(MAX.has_fgt() && !MAX.has_fgt2());
        assert!(!N1.has_fgt2());
        let fgt2 = CpuFeatures {
            id_aa64mmfr0: MAX.id_aa64mmfr0 & !(0xf << 56) | 2 << 56,
            ..MAX
        };
        assert!(fgt2.has_fgt() && fgt2.has_fgt2());
        assert!(fgt2.has_pmuv3p9(), "-cpu max's PMUVer is 0b1001");
        assert!(!fgt2.has_pmuv3_icntr() && !fgt2.has_ebep());
        assert_eq!(hdfgrtr2_el2(&fgt2), 1 << 4, "nPMUACR_EL1");
        assert_eq!(hdfgwtr2_el2(&fgt2), 1 << 21 | 1 << 4, "and nPMZR_EL0");
        let icntr = CpuFeatures {
            id_aa64dfr1: 1 << 36,
            ..fgt2
        };
        assert!(icntr.has_pmuv3_icntr());
        assert_eq!(hdfgrtr2_el2(&icntr), 0b1_1100);
        assert_eq!(hdfgwtr2_el2(&icntr), 1 << 21 | 0b1_1100);
        let before_p9 = CpuFeatures {
            id_aa64dfr0: fgt2.id_aa64dfr0 & !(0xf << 8) | 0b1000 << 8,
            ..fgt2
        };
        assert!(!before_p9.has_pmuv3p9());
        assert_eq!(hdfgrtr2_el2(&before_p9), 0);
        assert_eq!(hdfgwtr2_el2(&before_p9), 0);
        let imp_def = CpuFeatures {
            id_aa64dfr0: fgt2.id_aa64dfr0 | 0xf << 8,
            ..fgt2
        };
        assert!(!imp_def.has_pmuv3p9(), "PMUVer 0b1111 is not PMUv3");
        assert_eq!(hdfgrtr2_el2(&imp_def), 0);
        let ebep = CpuFeatures {
            id_aa64dfr1: 1 << 48,
            ..N1
        };
        assert!(ebep.has_ebep());
    }

    #[test]
    fn features_are_read_from_the_right_fields() {
        assert!(MAX.has_el2() && MAX.has_gic_sysregs() && MAX.has_sve() && MAX.has_sme());
        assert!(MAX.has_fgt() && MAX.has_hcx() && MAX.has_mops() && MAX.has_pmuv3());
        assert!(N1.has_el2() && !N1.has_sve() && !N1.has_sme() && !N1.has_fgt() && !N1.has_hcx());
        assert_eq!(N1.pa_range(), 5);
        assert_eq!(MAX.nested_virtualization(), NestedVirt::Nv2);
        assert_eq!(N1.nested_virtualization(), NestedVirt::None);
        let no_el2 = CpuFeatures {
            id_aa64pfr0: 0x11,
            ..N1
        };
        assert!(!no_el2.has_el2() && !no_el2.has_gic_sysregs());
        // What an exception entry sets (inject::entry_pstate).
        assert!(MAX.has_pan() && MAX.has_mte() && MAX.has_ssbs() && !MAX.has_nmi());
        assert!(N1.has_pan() && !N1.has_mte() && N1.has_ssbs() && !N1.has_nmi());
        let nmi = CpuFeatures {
            id_aa64pfr1: 1 << 36,
            ..CpuFeatures::default()
        };
        assert!(nmi.has_nmi() && !nmi.has_mte() && !nmi.has_ssbs() && !nmi.has_pan());
    }

    /// R7-4: what the guest sees in its ID registers is enabled at EL2.
    #[test]
    fn features_the_guest_sees_are_enabled_for_it() {
        // QEMU -cpu max: SME with FA64 but not SME2.
        assert!(MAX.has_sme_fa64() && !MAX.has_sme2());
        assert_eq!(smcr_el2(&MAX), SMCR_FA64 | 0xf);
        let sme2 = CpuFeatures {
            id_aa64smfr0: 1 << 56,
            ..MAX
        };
        assert_eq!(smcr_el2(&sme2), SMCR_EZT0 | 0xf);
        // FA64/SMEver bits are meaningless without SME.
        let no_sme = CpuFeatures {
            id_aa64pfr1: 0,
            id_aa64smfr0: u64::MAX,
            ..MAX
        };
        assert!(!no_sme.has_sme_fa64() && !no_sme.has_sme2());
        // FEAT_TCR2 and FEAT_SCTLR2 (ID_AA64MMFR3_EL1.TCRX, SCTLRX).
        let tcr2 = CpuFeatures {
            id_aa64mmfr3: 0x1,
            ..MAX
        };
        assert_eq!(hcrx_el2(&tcr2), HCRX_MSCEN | HCRX_TCR2EN);
        let sctlr2 = CpuFeatures {
            id_aa64mmfr3: 0x10,
            id_aa64isar2: 0,
            ..MAX
        };
        assert_eq!(hcrx_el2(&sctlr2), HCRX_SCTLR2EN);
        // R7-12: a CPU without FEAT_E2H0 (E2H RES1) is recognised.
        assert!(MAX.has_e2h0() && N1.has_e2h0());
        for e2h0 in [0b1110, 0b1111] {
            let vhe_only = CpuFeatures {
                id_aa64mmfr4: e2h0 << 24,
                ..MAX
            };
            assert!(!vhe_only.has_e2h0());
        }
        // FEAT_GCS: GCSEn and the negative HFGITR bits; FEAT_BRBE and
        // FEAT_SPEv1p2: the negative HFGITR/HDFGxTR bits.
        assert_eq!(hfgitr_el2(&MAX), 0);
        assert_eq!(hdfgrtr_el2(&N1) | hdfgwtr_el2(&N1), 0);
        let gcs = CpuFeatures {
            id_aa64pfr1: MAX.id_aa64pfr1 | 1 << 44,
            ..MAX
        };
        assert_eq!(hcrx_el2(&gcs), HCRX_MSCEN | HCRX_GCSEN);
        assert_eq!(hfgitr_el2(&gcs), 7 << 57);
        assert_eq!(hfgxtr_el2(&gcs) & 3 << 52, 3 << 52, "nGCS_EL1, nGCS_EL0");
        let brbe_spe = CpuFeatures {
            id_aa64dfr0: MAX.id_aa64dfr0 | 1 << 52 | 3 << 32,
            ..MAX
        };
        assert_eq!(hfgitr_el2(&brbe_spe), 3 << 55);
        assert_eq!(hdfgrtr_el2(&brbe_spe), 0xf << 59);
        assert_eq!(hdfgwtr_el2(&brbe_spe), 7 << 60);
        // HAFGRTR_EL2 needs FEAT_FGT and FEAT_AMUv1.
        assert!(MAX.has_amu() && MAX.has_hafgrtr());
        let no_amu = CpuFeatures {
            id_aa64pfr0: MAX.id_aa64pfr0 & !(0xf << 44),
            ..MAX
        };
        assert!(!no_amu.has_hafgrtr());
        let amu_without_fgt = CpuFeatures {
            id_aa64pfr0: N1.id_aa64pfr0 | 1 << 44,
            ..N1
        };
        assert!(amu_without_fgt.has_amu() && !amu_without_fgt.has_hafgrtr());
    }

    #[test]
    fn register_values() {
        assert_eq!(hcr_el2(&N1, false), 0x0000_0300_8008_0603);
        assert_eq!(hcr_el2(&N1, true), 0x0000_0300_8008_061b);
        assert_eq!(cptr_el2(&MAX), 0x22ff, "SVE and SME untrapped");
        assert_eq!(
            cptr_el2(&N1),
            0x33ff,
            "TZ and TSM RES1 without the features"
        );
        assert_eq!(hfgxtr_el2(&MAX), 3 << 54);
        assert_eq!(hfgxtr_el2(&N1), 0);
        assert_eq!(hcrx_el2(&MAX), 1 << 11);
        assert_eq!(hcrx_el2(&N1), 0);
        // MAX: PMUVer 9 (PMUv3p9): HPMD and HCCD; N1: PMUVer 4 (PMUv3p1):
        // HPMD only.
        assert_eq!(mdcr_el2(&MAX, 6 << 11), 6 | MDCR_HPMD | MDCR_HCCD);
        assert_eq!(mdcr_el2(&N1, 6 << 11), 6 | MDCR_HPMD);
        let pmuv3 = CpuFeatures {
            id_aa64dfr0: 1 << 8,
            ..N1
        };
        assert_eq!(mdcr_el2(&pmuv3, 6 << 11), 6, "PMUv3 without p1: no HPMD");
        assert_eq!(mdcr_el2(&CpuFeatures::default(), 6 << 11), 0);
    }

    /// R9-5: with FEAT_SPE / FEAT_TRBE the guest's EL1 owns the Profiling
    /// and Trace Buffers (E2PB, E2TB = 0b11, also without a PMU: they were
    /// 0b00, trapping the buffer registers); FEAT_FPMR gets HCRX_EL2.EnFPM.
    #[test]
    fn spe_trbe_buffers_and_fpmr_belong_to_the_guest() {
        assert!(!MAX.has_spe() && !MAX.has_trbe() && !MAX.has_fpmr());
        assert!(!N1.has_spe() && !N1.has_trbe());
        for pmu_version in [0u64, 1, 6] {
            let spe = CpuFeatures {
                id_aa64dfr0: pmu_version << 8 | 1 << 32,
                ..CpuFeatures::default()
            };
            let trbe = CpuFeatures {
                id_aa64dfr0: pmu_version << 8 | 1 << 44,
                ..CpuFeatures::default()
            };
            let pmu_bits = mdcr_el2(
                &CpuFeatures {
                    id_aa64dfr0: pmu_version << 8,
                    ..CpuFeatures::default()
                },
                4 << 11,
            );
            assert_eq!(mdcr_el2(&spe, 4 << 11), pmu_bits | 0b11 << 12);
            assert_eq!(mdcr_el2(&trbe, 4 << 11), pmu_bits | 0b11 << 24);
        }
        assert_eq!(MDCR_E2PB_EL1 | MDCR_E2TB_EL1, 0x0300_3000);
        let fpmr = CpuFeatures {
            id_aa64pfr2: 1 << 32,
            ..MAX
        };
        assert!(fpmr.has_fpmr());
        assert_eq!(hcrx_el2(&fpmr), HCRX_MSCEN | 1 << 23);
        let other_pfr2_fields = CpuFeatures {
            id_aa64pfr2: 0xfff,
            ..MAX
        };
        assert_eq!(hcrx_el2(&other_pfr2_fields), HCRX_MSCEN);
        assert_eq!(SCTLR_EL2_MMU_ON & 0x100d, 0x100d);
    }
}
