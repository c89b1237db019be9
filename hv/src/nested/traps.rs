//! L1's EL2 trap controls: CPTR_EL2, MDCR_EL2 and HCRX_EL2 (and what hv
//! itself keeps disabled in the hardware HCRX_EL2 for L1 and L2).
//!
//! Neither CPTR_EL2 nor MDCR_EL2 has a VNCR slot (DDI 0487, the VNCR_EL2
//! table; Linux's `vncr_mapping.h` lists none either): L1's MSR/MRS of
//! them trap (HCR_EL2.NV, EC 0x18), and hv keeps L1's value
//! ([`L1TrapControls`]). A VHE L1 (E2H = 1) also reaches its CPTR_EL2
//! through the CPACR_EL1 encoding, the way E2H = 1 software (Linux KVM)
//! writes it; with NV1 = 0 that access would reach the hardware CPACR_EL1,
//! whose TAM and TCPAC bits do not exist, so hv sets the hardware
//! CPTR_EL2.TCPAC while a VHE L1 runs ([`l1_hardware_cptr`]) and emulates
//! it as CPTR_EL2 too.
//!
//! What L1's controls do:
//! - for L2 (EL1/EL0 with TGE = 0): hv adds the traps L1 asked for to L2's
//!   hardware CPTR_EL2 and MDCR_EL2 ([`l2_hardware_cptr`],
//!   [`l2_hardware_mdcr`]); the hardware then takes such an L2 access to
//!   hv, which forwards it to L1 with its syndrome ([`l2_trap_route`]);
//! - for L1 itself at virtual EL2 (hardware EL1): CPTR_EL2's FP/SIMD, SVE,
//!   SME and trace controls apply at EL2 too (TFP/TZ/TSM/TTA with E2H = 0;
//!   FPEN/ZEN/SMEN 0bx0 and TTA with E2H = 1), so hv gives L1 a hardware
//!   CPACR_EL1 that traps the same ([`l1_hardware_cpacr`]): the hardware
//!   takes such an exception to hardware EL1, L1's virtual EL2, at L1's own
//!   vector, as the architecture takes it to EL2. MDCR_EL2's traps are of
//!   EL1 and EL0 accesses only: none applies to L1 itself.

use crate::exit::SysRegAccess;

/// CPTR_EL2 bits. With E2H = 0 (`NVHE_*`) and E2H = 1 (`VHE_*`, CPACR_EL1's
/// layout with TAM and TCPAC added).
pub mod cptr {
    /// Trap CPACR_EL1 accesses from EL1 (both layouts).
    pub const TCPAC: u64 = 1 << 31;
    /// Trap Activity Monitor accesses from EL1 and EL0 (both layouts).
    pub const TAM: u64 = 1 << 30;
    /// E2H = 0: trap SVE, FP/SIMD, SME, trace.
    pub const NVHE_TZ: u64 = 1 << 8;
    pub const NVHE_TFP: u64 = 1 << 10;
    pub const NVHE_TSM: u64 = 1 << 12;
    pub const NVHE_TTA: u64 = 1 << 20;
    /// E2H = 0: RES1 bits \[7:0\], 9 and 13.
    pub const NVHE_RES1: u64 = 0xff | 1 << 9 | 1 << 13;
    /// E2H = 1 (and CPACR_EL1): the enable fields, each 2 bits.
    pub const VHE_ZEN: u64 = 0b11 << 16;
    pub const VHE_FPEN: u64 = 0b11 << 20;
    pub const VHE_SMEN: u64 = 0b11 << 24;
    pub const VHE_TTA: u64 = 1 << 28;
}

/// MDCR_EL2 bits.
pub mod mdcr {
    /// HPMN \[4:0\]: the first counter reserved for EL2.
    pub const HPMN: u64 = 0x1f;
    pub const TPMCR: u64 = 1 << 5;
    pub const TPM: u64 = 1 << 6;
    pub const HPME: u64 = 1 << 7;
    pub const TDE: u64 = 1 << 8;
    pub const TDA: u64 = 1 << 9;
    pub const TDOSA: u64 = 1 << 10;
    pub const TDRA: u64 = 1 << 11;
    pub const E2PB: u64 = 0b11 << 12;
    pub const TPMS: u64 = 1 << 14;
    pub const HPMD: u64 = 1 << 17;
    pub const TTRF: u64 = 1 << 19;
    pub const HCCD: u64 = 1 << 23;
    pub const E2TB: u64 = 0b11 << 24;
    pub const HLP: u64 = 1 << 26;
}

/// HCRX_EL2 bits that enable EL1 state hv does not switch between L1 and
/// L2: TCR2En (TCR2_EL1, whose PIE, POE, E0POE and AIE enable permission
/// indirection, overlays and MAIR2_EL1), SCTLR2En (SCTLR2_EL1) and GCSEn
/// (GCSCR_EL1, GCSPR_EL1, GCSCRE0_EL1, GCSPR_EL0: review 39 R39-2).
pub const HCRX_UNSWITCHED: u64 = 1 << 14 | 1 << 15 | crate::sysregs::HCRX_GCSEN;

/// Which of the controlled features L1 is shown (its ID registers, as
/// `idregs::shown_to_l1` gives them), and the PMU's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShownFeatures {
    /// FEAT_SVE (ID_AA64PFR0_EL1.SVE).
    pub sve: bool,
    /// FEAT_SME (ID_AA64PFR1_EL1.SME).
    pub sme: bool,
    /// FEAT_AMUv1 (ID_AA64PFR0_EL1.AMU; hidden from L1, so TAM is RES0).
    pub amu: bool,
    /// System-register trace (ID_AA64DFR0_EL1.TraceVer).
    pub trace: bool,
    /// FEAT_PMUv3 (PMUVer neither 0 nor 0b1111), v3p1 (HPMD), v3p5 (HCCD,
    /// HLP).
    pub pmuv3: bool,
    pub pmuv3p1: bool,
    pub pmuv3p5: bool,
    /// FEAT_HPMN0 (ID_AA64DFR0_EL1.HPMN0): MDCR_EL2.HPMN may be 0.
    pub hpmn0: bool,
    /// PMCR_EL0.N at EL2: the event counters.
    pub counters: u8,
    /// FEAT_HCX (ID_AA64MMFR1_EL1.HCX; hidden from L1).
    pub hcx: bool,
}

const fn field(value: u64, shift: u32) -> u64 {
    (value >> shift) & 0xf
}

impl ShownFeatures {
    /// From the ID registers L1 is shown and the host's PMCR_EL0 (N at
    /// \[15:11\]).
    pub const fn from_id_registers(pfr0: u64, pfr1: u64, dfr0: u64, mmfr1: u64, pmcr: u64) -> Self {
        let pmu = field(dfr0, 8);
        let pmuv3 = pmu != 0 && pmu != 0xf;
        ShownFeatures {
            sve: field(pfr0, 32) != 0,
            sme: field(pfr1, 24) != 0,
            amu: field(pfr0, 44) != 0,
            trace: field(dfr0, 4) != 0,
            pmuv3,
            pmuv3p1: pmuv3 && pmu >= 4,
            pmuv3p5: pmuv3 && pmu >= 6,
            hpmn0: field(dfr0, 60) != 0,
            counters: if pmuv3 {
                ((pmcr >> 11) & 0x1f) as u8
            } else {
                0
            },
            hcx: field(mmfr1, 40) != 0,
        }
    }
}

/// CPTR_EL2's layout for L1: its virtual HCR_EL2.E2H.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CptrLayout {
    /// E2H = 0 (the non-VHE L1 of `hv.nested=mmu`): TFP, TZ, TSM, TTA.
    Nvhe,
    /// E2H = 1 (every other L1): CPACR_EL1's FPEN, ZEN, SMEN, TTA.
    Vhe,
}

/// What a CPTR_EL2 value traps to EL2 for one kind of code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CptrTraps {
    /// FP/SIMD (EC 0x07).
    pub fp: bool,
    /// SVE (EC 0x19).
    pub sve: bool,
    /// SME (EC 0x1D).
    pub sme: bool,
    /// System-register trace (EC 0x18).
    pub trace: bool,
    /// Activity Monitors (EC 0x18).
    pub amu: bool,
    /// CPACR_EL1 (EC 0x18).
    pub cpacr: bool,
}

/// An enable field (FPEN, ZEN, SMEN) of the E2H = 1 layout: 0bx0 traps at
/// EL0, EL1 and EL2; 0b01 traps only EL0 with TGE = 1 (L2 runs with TGE =
/// 0; L1's own host EL0 gets it through the hardware CPACR_EL1,
/// `L1TrapControls::l1_hardware_cpacr`); 0b11 traps nothing.
const fn enable_traps(value: u64, mask: u64) -> bool {
    let low = mask & (mask >> 1);
    value & low == 0
}

/// L1's CPTR_EL2 and MDCR_EL2 as it wrote them (what its reads return),
/// for L1 shown `features`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1TrapControls {
    pub layout: CptrLayout,
    pub features: ShownFeatures,
    pub cptr: u64,
    pub mdcr: u64,
}

impl L1TrapControls {
    /// At reset (their architectural reset values are UNKNOWN): CPTR_EL2
    /// trapping nothing (what hv gave L1 before it emulated CPTR_EL2,
    /// review 34 R34-1), MDCR_EL2 with HPMN = PMCR_EL0.N (its reset value)
    /// and no trap.
    pub const fn reset(layout: CptrLayout, features: ShownFeatures) -> Self {
        let none = L1TrapControls {
            layout,
            features,
            cptr: 0,
            mdcr: 0,
        };
        let cptr = match layout {
            CptrLayout::Nvhe => 0,
            CptrLayout::Vhe => cptr::VHE_FPEN | cptr::VHE_ZEN | cptr::VHE_SMEN,
        };
        L1TrapControls {
            cptr: none.cptr_written(cptr),
            mdcr: none.mdcr_written(features.counters as u64),
            ..none
        }
    }

    /// The CPTR_EL2 value L1's write of `value` leaves: the fields L1 has
    /// as written, RES0 bits 0, RES1 bits 1 (E2H = 0: \[7:0\], 9, 13, and
    /// TZ/TSM without SVE/SME). TAM is RES0 (FEAT_AMUv1 is not shown),
    /// E0POE too (FEAT_S1POE is not shown).
    pub const fn cptr_written(&self, value: u64) -> u64 {
        let f = self.features;
        match self.layout {
            CptrLayout::Nvhe => {
                let mut keep = cptr::TCPAC | cptr::NVHE_TFP;
                let mut res1 = cptr::NVHE_RES1;
                if f.sve {
                    keep |= cptr::NVHE_TZ;
                } else {
                    res1 |= cptr::NVHE_TZ;
                }
                if f.sme {
                    keep |= cptr::NVHE_TSM;
                } else {
                    res1 |= cptr::NVHE_TSM;
                }
                if f.trace {
                    keep |= cptr::NVHE_TTA;
                }
                if f.amu {
                    keep |= cptr::TAM;
                }
                (value & keep) | res1
            }
            CptrLayout::Vhe => {
                let mut keep = cptr::TCPAC | cptr::VHE_FPEN;
                if f.sve {
                    keep |= cptr::VHE_ZEN;
                }
                if f.sme {
                    keep |= cptr::VHE_SMEN;
                }
                if f.trace {
                    keep |= cptr::VHE_TTA;
                }
                if f.amu {
                    keep |= cptr::TAM;
                }
                value & keep
            }
        }
    }

    /// What L1's CPTR_EL2 traps for L2 (EL1 and EL0, TGE = 0).
    pub const fn cptr_traps_for_l2(&self) -> CptrTraps {
        let c = self.cptr;
        let f = self.features;
        match self.layout {
            CptrLayout::Nvhe => CptrTraps {
                fp: c & cptr::NVHE_TFP != 0,
                sve: f.sve && c & cptr::NVHE_TZ != 0,
                sme: f.sme && c & cptr::NVHE_TSM != 0,
                trace: f.trace && c & cptr::NVHE_TTA != 0,
                amu: f.amu && c & cptr::TAM != 0,
                cpacr: c & cptr::TCPAC != 0,
            },
            CptrLayout::Vhe => CptrTraps {
                fp: enable_traps(c, cptr::VHE_FPEN),
                sve: f.sve && enable_traps(c, cptr::VHE_ZEN),
                sme: f.sme && enable_traps(c, cptr::VHE_SMEN),
                trace: f.trace && c & cptr::VHE_TTA != 0,
                amu: f.amu && c & cptr::TAM != 0,
                cpacr: c & cptr::TCPAC != 0,
            },
        }
    }

    /// What L1's CPTR_EL2 traps for L1 itself at EL2: FP/SIMD, SVE, SME and
    /// trace as for L2 (E2H = 0: TFP, TZ, TSM and TTA trap EL2 too; E2H =
    /// 1: FPEN/ZEN/SMEN 0bx0 and TTA do); TAM and TCPAC trap EL1 and EL0
    /// accesses only.
    pub const fn cptr_traps_at_el2(&self) -> CptrTraps {
        CptrTraps {
            amu: false,
            cpacr: false,
            ..self.cptr_traps_for_l2()
        }
    }

    /// The hardware CPACR_EL1 while L1 runs (its code runs at hardware
    /// EL1, where CPACR_EL1 decides): FPEN, ZEN, SMEN 0b00 where L1's
    /// CPTR_EL2 traps that at EL2, 0b01 where L1's E2H = 1 field is 0b01
    /// (trap EL0 only: at hardware EL1 that is L1's host EL0, which hv
    /// runs at hardware EL0 when L1's {E2H, TGE} = {1, 1}, and which the
    /// architecture traps exactly then), else 0b11; TTA as L1's. The
    /// hardware then takes L1's trapped instruction to hardware EL1, L1's
    /// virtual EL2, with the EC the architecture gives at EL2.
    pub const fn l1_hardware_cpacr(&self) -> u64 {
        let t = self.cptr_traps_at_el2();
        let mut cpacr = 0;
        if !t.fp {
            cpacr |= self.untrapped_at_el2(cptr::VHE_FPEN);
        }
        if !t.sve {
            cpacr |= self.untrapped_at_el2(cptr::VHE_ZEN);
        }
        if !t.sme {
            cpacr |= self.untrapped_at_el2(cptr::VHE_SMEN);
        }
        if t.trace {
            cpacr |= cptr::VHE_TTA;
        }
        cpacr
    }

    /// The hardware CPACR_EL1 enable field `mask` (FPEN, ZEN, SMEN) for
    /// one L1's CPTR_EL2 does not trap at EL2: 0b01 (EL0 only) where L1's
    /// E2H = 1 field is 0b01, else 0b11.
    const fn untrapped_at_el2(&self, mask: u64) -> u64 {
        let el0_only = mask & (mask >> 1);
        match self.layout {
            CptrLayout::Vhe if self.cptr & mask == el0_only => el0_only,
            _ => mask,
        }
    }

    /// The MDCR_EL2 value L1's write of `value` leaves: the fields L1 has
    /// (TDE, TDA, TDOSA, TDRA; with FEAT_PMUv3 HPMN, TPMCR, TPM, HPME; HPMD
    /// with v3p1; HCCD and HLP with v3p5) as written, the rest RES0: TDCC
    /// needs FEAT_FGT, E2PB and TPMS FEAT_SPE, E2TB FEAT_TRBE, TTRF
    /// FEAT_TRF, none of which L1 is shown (`idregs::shown_to_l1`; review
    /// 39 R39-5: hv gives L1 and L2 no buffer, [`hidden_buffer_traps`]).
    pub const fn mdcr_written(&self, value: u64) -> u64 {
        let f = self.features;
        let mut keep = mdcr::TDE | mdcr::TDA | mdcr::TDOSA | mdcr::TDRA;
        if f.pmuv3 {
            keep |= mdcr::HPMN | mdcr::TPMCR | mdcr::TPM | mdcr::HPME;
        }
        if f.pmuv3p1 {
            keep |= mdcr::HPMD;
        }
        if f.pmuv3p5 {
            keep |= mdcr::HCCD | mdcr::HLP;
        }
        value & keep
    }

    /// The HPMN L2 runs with: L1's, where it names 1 to N counters (0 too
    /// with FEAT_HPMN0). A value above PMCR_EL0.N, or 0 without FEAT_HPMN0,
    /// is CONSTRAINED UNPREDICTABLE (MDCR_EL2.HPMN): hv picks the permitted
    /// "an UNKNOWN non-zero value not above N", namely N (every counter
    /// L2's); L1 reads back what it wrote.
    pub const fn effective_hpmn(&self) -> u64 {
        let n = self.features.counters as u64;
        let hpmn = self.mdcr & mdcr::HPMN;
        if hpmn > n || (hpmn == 0 && !self.features.hpmn0) {
            n
        } else {
            hpmn
        }
    }
}

/// hv's hardware CPTR_EL2 (E2H = 0 layout) while L1 runs, from hv's own
/// `hv_cptr` (`sysregs::cptr_el2`, trapping nothing): a VHE L1's
/// CPACR_EL1 accesses, which are its CPTR_EL2, trap (TCPAC) so hv keeps
/// their TAM and TCPAC bits, which the hardware CPACR_EL1 lacks.
pub const fn l1_hardware_cptr(hv_cptr: u64, layout: CptrLayout) -> u64 {
    match layout {
        CptrLayout::Vhe => hv_cptr | cptr::TCPAC,
        CptrLayout::Nvhe => hv_cptr,
    }
}

/// L2's hardware CPTR_EL2 (E2H = 0 layout): hv's own `hv_cptr` with the
/// traps L1's CPTR_EL2 asks for L2 added.
pub const fn l2_hardware_cptr(hv_cptr: u64, l1: &L1TrapControls) -> u64 {
    let t = l1.cptr_traps_for_l2();
    let mut cptr = hv_cptr;
    if t.fp {
        cptr |= cptr::NVHE_TFP;
    }
    if t.sve {
        cptr |= cptr::NVHE_TZ;
    }
    if t.sme {
        cptr |= cptr::NVHE_TSM;
    }
    if t.trace {
        cptr |= cptr::NVHE_TTA;
    }
    if t.amu {
        cptr |= cptr::TAM;
    }
    if t.cpacr {
        cptr |= cptr::TCPAC;
    }
    cptr
}

/// L2's hardware MDCR_EL2 from hv's own `hv_mdcr` (`sysregs::mdcr_el2`:
/// HPMN = N, hv's own execution not counted, HPMD/HCCD; the SPE and Trace
/// Buffers at EL1, E2PB/E2TB 0b11) and L1's: L1's traps (TPMCR, TPM, TDE,
/// TDA, TDOSA, TDRA) and HLP, HPMN as
/// [`L1TrapControls::effective_hpmn`]; hv's HPMD and HCCD kept. Not L1's
/// HPME (review 39 R39-1): the counters from HPMN up are EL2's, and HPMD
/// does not stop them at EL2, where they count as PMEVTYPER<n>_EL0.NSH
/// says; hv handles L2's exits at EL2 under this value (from the vector's
/// first instruction, before any write of its own MDCR_EL2 could take
/// effect), so with HPME they would count hv. Without it they are
/// disabled while L2 runs (a documented limit: L1's EL2 counters do not
/// count L2); L1 still reads back the HPME it wrote. The Profiling and
/// Trace Buffers: [`hidden_buffer_traps`], as while L1 runs.
pub const fn l2_hardware_mdcr(hv_mdcr: u64, l1: &L1TrapControls) -> u64 {
    let l1_traps =
        mdcr::TPMCR | mdcr::TPM | mdcr::TDE | mdcr::TDA | mdcr::TDOSA | mdcr::TDRA | mdcr::HLP;
    let mut value = (hv_mdcr & !(mdcr::HPMN | mdcr::E2PB | mdcr::E2TB)) | (l1.mdcr & l1_traps);
    if l1.features.pmuv3 {
        value |= l1.effective_hpmn();
    } else {
        value |= hv_mdcr & mdcr::HPMN;
    }
    value | hidden_buffer_traps(hv_mdcr)
}

/// L1's hardware MDCR_EL2 while it runs: hv's own `hv_mdcr` (which hands
/// the buffers to EL1, as to an ordinary guest) with the buffers taken
/// away ([`hidden_buffer_traps`]).
pub const fn l1_hardware_mdcr(hv_mdcr: u64) -> u64 {
    (hv_mdcr & !(mdcr::E2PB | mdcr::E2TB)) | hidden_buffer_traps(hv_mdcr)
}

/// The MDCR_EL2 controls that keep the Statistical Profiling Extension and
/// the Trace Buffer, which L1 is not shown (ID_AA64DFR0_EL1.PMSVer and
/// TraceBuffer 0, `idregs::shown_to_l1`) and whose EL1 registers hv
/// switches none of between L1 and L2, away from both (review 39 R39-5:
/// with hv's E2PB/E2TB 0b11 L1 could program a buffer at its hardware EL1
/// untrapped and leave it enabled into L2's regime). Where hv has a buffer
/// (its field set in `hv_mdcr`): that field 0b10, so the buffer's EL1
/// control registers (PMB*/TRB*_EL1) trap to hv, and for SPE also TPMS,
/// so the sampling controls (PMS*_EL1) do. hv answers those traps with an
/// UNDEFINED (for L1, its unemulated registers; for L2,
/// [`hidden_buffer_register`]), so no buffer is ever enabled
/// (PMBLIMITR_EL1.E and TRBLIMITR_EL1.E reset to 0 and nothing writes
/// them), and which regime owns one does not arise. QEMU has neither
/// buffer: host-tested only.
pub const fn hidden_buffer_traps(hv_mdcr: u64) -> u64 {
    let mut traps = 0;
    if hv_mdcr & mdcr::E2PB != 0 {
        traps |= (mdcr::E2PB & (mdcr::E2PB << 1)) | mdcr::TPMS;
    }
    if hv_mdcr & mdcr::E2TB != 0 {
        traps |= mdcr::E2TB & (mdcr::E2TB << 1);
    }
    traps
}

/// MDCR_EL2.TTRF where the CPU has FEAT_TRF (`hardware_dfr0`, the
/// hardware ID_AA64DFR0_EL1: TraceFilt, bits \[43:40\], not 0), for L1
/// and L2 alike. L1 is shown no FEAT_TRF (TraceFilt 0,
/// `idregs::shown_to_l1`), so TRFCR_EL1 is an unallocated encoding for
/// it and for L2 and must be UNDEFINED; untrapped it would be the
/// hardware register, which hv switches neither between L1 and L2 nor
/// away from itself, so a value L1 or L2 wrote would filter the other's
/// trace. hv answers the trap with an UNDEFINED (for L1 an unemulated
/// register; for L2 [`is_trfcr_el1`]). Without FEAT_TRF TTRF is RES0 and
/// the hardware makes the access UNDEFINED itself (QEMU 10's `-cpu max`
/// has no FEAT_TRF: host-tested only).
pub const fn hidden_trace_filter_trap(hardware_dfr0: u64) -> u64 {
    if (hardware_dfr0 >> 40) & 0xf != 0 {
        mdcr::TTRF
    } else {
        0
    }
}

/// FEAT_BRBE's negative fine-grained trap bits (0 traps): nBRBDATA,
/// nBRBCTL, nBRBIDR in HDFGRTR_EL2 (bits 61-59; HDFGWTR_EL2 has the first
/// two) and nBRBINJ, nBRBIALL in HFGITR_EL2 (bits 56, 55).
pub const HDFGXTR_BRBE: u64 = 0b111 << 59;
pub const HFGITR_BRBE: u64 = 0b11 << 55;

/// hv's fine-grained traps `[HFGITR_EL2, HDFGRTR_EL2, HDFGWTR_EL2]` (as
/// for an ordinary guest, `sysregs`) for L1 and L2: without the BRBE bits,
/// so the Branch Record Buffer's registers and instructions trap. L1 is
/// shown no FEAT_BRBE (ID_AA64DFR0_EL1.BRBE 0, `idregs::shown_to_l1`), so
/// they are unallocated for it and for L2 and must be UNDEFINED, and hv
/// switches none of them (the records of one would be the other's). hv
/// answers the traps with an UNDEFINED (for L1 unemulated encodings, for
/// L2 [`is_brbe_access`]). Without FEAT_BRBE those bits are 0 already and
/// the hardware makes the accesses UNDEFINED (QEMU 10's `-cpu max` has no
/// FEAT_BRBE: host-tested only).
pub const fn nested_fine_grained_traps(hv: [u64; 3]) -> [u64; 3] {
    [
        hv[0] & !HFGITR_BRBE,
        hv[1] & !HDFGXTR_BRBE,
        hv[2] & !HDFGXTR_BRBE,
    ]
}

/// A FEAT_BRBE register (op0 2, op1 1, CRn 8: BRBINF/SRC/TGT<n>_EL1; CRn
/// 9: BRBCR, BRBFCR, BRBTS, the injection registers, BRBIDR0_EL1) or
/// instruction (BRB IALL, BRB INJ: op0 1, op1 1, CRn 7, CRm 2, op2 4, 5).
pub const fn is_brbe_access(access: &SysRegAccess) -> bool {
    (access.op0 == 2 && access.op1 == 1 && (access.crn == 8 || access.crn == 9))
        || (access.op0 == 1
            && access.op1 == 1
            && access.crn == 7
            && access.crm == 2
            && (access.op2 == 4 || access.op2 == 5))
}

/// TRFCR_EL1 (op0 3, op1 0, CRn 1, CRm 2, op2 1).
pub const fn is_trfcr_el1(access: &SysRegAccess) -> bool {
    access.op0 == 3 && access.op1 == 0 && access.crn == 1 && access.crm == 2 && access.op2 == 1
}

/// Whether `access` is to a register of the hidden SPE or Trace Buffer
/// that [`hidden_buffer_traps`] traps: op0 3, op1 0, CRn 9, CRm 9 (the
/// sampling controls PMS*_EL1), 10 (the Profiling Buffer's PMB*_EL1) or
/// 11 (the Trace Buffer's TRB*_EL1).
pub const fn hidden_buffer_register(access: &SysRegAccess) -> bool {
    access.op0 == 3 && access.op1 == 0 && access.crn == 9 && access.crm >= 9 && access.crm <= 11
}

/// hv's hardware HCRX_EL2 for L1 and L2 from the one it gives an ordinary
/// guest (`sysregs::hcrx_el2`): without [`HCRX_UNSWITCHED`]. L1 is shown
/// no FEAT_TCR2, FEAT_SCTLR2, S1PIE, S1POE or AIE (`idregs`, MMFR3), and
/// hv switches none of TCR2_EL1, SCTLR2_EL1, PIR*_EL1, POR_EL1 or
/// MAIR2_EL1 between L1 and L2, so with those enabled L2 could
/// re-permission L1's own mappings (review 34 R34-2). With TCR2En and
/// SCTLR2En 0, TCR2_EL1 and SCTLR2_EL1 are 0 for every purpose but a
/// direct read at EL1&0 (so PIE, POE, E0POE and AIE are off, and the
/// permission and overlay registers change no translation), and their
/// accesses from EL1 trap to hv ([`l2_trap_route`]). Likewise GCS (hidden
/// from L1, PFR1.GCS 0): with GCSEn 0 the Guarded Control Stack is
/// disabled at EL1 and EL0, so neither L2 nor L1 (hardware EL1) runs on
/// the other's GCSCR/GCSPR, and the registers' accesses trap to hv.
pub const fn nested_hardware_hcrx(host_hcrx: u64) -> u64 {
    host_hcrx & !HCRX_UNSWITCHED
}

/// The HCRX_EL2 bits hv honours for L1 (its VNCR slot): none. hv shows
/// no FEAT_HCX (`idregs`, MMFR1.HCX 0), so the register does not exist for
/// L1, whose accesses would be UNDEFINED; but FEAT_NV2 makes them plain
/// loads and stores of the VNCR page, which no trap can refuse. hv
/// applies only these bits ([`l1_hcrx`]) and stores them back at each of
/// L1's exits (as it fixes E2H in the HCR_EL2 slot), so L1 reads back the
/// value in effect and never finds a control honoured that is not.
pub const L1_HCRX_SHOWN: u64 = 0;

/// L1's HCRX_EL2 as hv applies it, from what L1 stored in its VNCR slot.
pub const fn l1_hcrx(written: u64) -> u64 {
    written & L1_HCRX_SHOWN
}

/// Where an exit of L2 that hv's merged trap controls caused goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L2TrapRoute {
    /// L1 asked for it: forwarded to L1's virtual EL2 with its syndrome.
    ForwardToL1,
    /// Trapped only by hv for itself, for a register L2 is not shown
    /// (TCR2_EL1, SCTLR2_EL1 with HCRX_EL2.TCR2En/SCTLR2En 0): UNDEFINED
    /// at L2's EL1, as for a register that does not exist.
    UndefinedForL2,
    /// Not a trap of these controls (the caller's other rules apply).
    Other,
    /// A trap no control of L1's asked for and hv never sets for itself:
    /// hv's own failure.
    Unrequested,
}

/// EC values of the trapped classes.
const EC_FP: u64 = 0x07;
const EC_SYSREG: u64 = 0x18;
const EC_SVE: u64 = 0x19;
const EC_SME: u64 = 0x1d;
/// EC 0x1D's ISS SMTC \[2:0\], and its value for an SMCR_ELx.EZT0 trap.
const SMTC: u64 = 0b111;
const SMTC_EZT0: u64 = 0b100;

/// TCR2_EL1 and SCTLR2_EL1 (op0 3, op1 0, CRn 2/1, CRm 0, op2 3), and
/// the GCS registers GCSCR_EL1, GCSPR_EL1, GCSCRE0_EL1 (op0 3, op1 0, CRn
/// 2, CRm 5, op2 0-2) and GCSPR_EL0 (op1 3, op2 1): with TCR2En,
/// SCTLR2En and GCSEn clear their EL1 and EL0 accesses trap to EL2.
pub const fn hcrx_disabled_register(access: &SysRegAccess) -> bool {
    let tcr2_sctlr2 = access.op1 == 0
        && access.crm == 0
        && access.op2 == 3
        && (access.crn == 2 || access.crn == 1);
    let gcs = access.crn == 2
        && access.crm == 5
        && ((access.op1 == 0 && access.op2 <= 2) || (access.op1 == 3 && access.op2 == 1));
    access.op0 == 3 && (tcr2_sctlr2 || gcs)
}

/// CPACR_EL1 (op0 3, op1 0, CRn 1, CRm 0, op2 2).
pub const fn is_cpacr_el1(access: &SysRegAccess) -> bool {
    access.op0 == 3 && access.op1 == 0 && access.crn == 1 && access.crm == 0 && access.op2 == 2
}

/// HACR_EL2 (op0 3, op1 4, CRn 1, CRm 1, op2 7): IMPLEMENTATION DEFINED
/// trap controls, present wherever EL2 is. hv, as the implementation L1
/// runs on, defines none, so every bit is RES0 for L1: its reads return 0
/// and its writes are ignored (L1 traps with NV and hv answers; there is
/// no VNCR slot).
pub const fn is_hacr_el2(access: &SysRegAccess) -> bool {
    access.op0 == 3 && access.op1 == 4 && access.crn == 1 && access.crm == 1 && access.op2 == 7
}

/// CPTR_EL2 (op0 3, op1 4, CRn 1, CRm 1, op2 2) and MDCR_EL2 (op2 1).
pub const fn is_cptr_el2(access: &SysRegAccess) -> bool {
    access.op0 == 3 && access.op1 == 4 && access.crn == 1 && access.crm == 1 && access.op2 == 2
}
pub const fn is_mdcr_el2(access: &SysRegAccess) -> bool {
    access.op0 == 3 && access.op1 == 4 && access.crn == 1 && access.crm == 1 && access.op2 == 1
}

/// Where L2's exit with syndrome `esr` goes, for the classes L1's
/// CPTR_EL2 and hv's HCRX_EL2 control: an FP/SIMD, SVE or SME trap is
/// L1's exactly when L1's CPTR_EL2 traps it for L2 (hv traps none for
/// itself); a CPACR_EL1 access with L1's TCPAC is L1's; TCR2_EL1 and
/// SCTLR2_EL1 are hv's own (UNDEFINED for L2). MDCR_EL2's traps (PMU and
/// debug registers, debug exceptions with TDE) are L1's: hv's own hardware
/// MDCR_EL2 traps nothing, so every such trap is one L1 asked for, and the
/// caller's forwarding of the rest (`Other`) delivers them.
pub fn l2_trap_route(esr: u64, l1: &L1TrapControls) -> L2TrapRoute {
    let t = l1.cptr_traps_for_l2();
    let asked = match (esr >> 26) & 0x3f {
        EC_FP => t.fp,
        EC_SVE => t.sve,
        // SMTC 0b100: a ZT0 access trapped by SMCR_EL2.EZT0, which hv
        // sets for itself wherever FEAT_SME2 exists and clears for L2
        // exactly where L1's SMCR_EL2 does (`vector::l2_hardware_smcr_el2`):
        // L1's, forwarded with the rest.
        EC_SME if esr & SMTC == SMTC_EZT0 => return L2TrapRoute::Other,
        EC_SME => t.sme,
        EC_SYSREG => {
            let access = SysRegAccess::from_iss(esr & 0x1ff_ffff);
            if hcrx_disabled_register(&access)
                || hidden_buffer_register(&access)
                || is_trfcr_el1(&access)
                || is_brbe_access(&access)
            {
                return L2TrapRoute::UndefinedForL2;
            }
            if !is_cpacr_el1(&access) {
                return L2TrapRoute::Other;
            }
            t.cpacr
        }
        _ => return L2TrapRoute::Other,
    };
    if asked {
        L2TrapRoute::ForwardToL1
    } else {
        L2TrapRoute::Unrequested
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::nested::idregs::{shown_to_l1, IdRegister};

    /// SVE, SME, trace, PMUv3p5 with 6 counters, HPMN0 absent; no AMU,
    /// SPE, TRBE or HCX.
    const FEATURES: ShownFeatures = ShownFeatures {
        sve: true,
        sme: true,
        amu: false,
        trace: true,
        pmuv3: true,
        pmuv3p1: true,
        pmuv3p5: true,
        hpmn0: false,
        counters: 6,
        hcx: false,
    };
    /// hv's own CPTR_EL2 (`sysregs::cptr_el2` with SVE and SME).
    const HV_CPTR: u64 = 0x22ff;
    /// hv's own MDCR_EL2 (`sysregs::mdcr_el2`: HPMN 6, HPMD, HCCD).
    const HV_MDCR: u64 = 6 | mdcr::HPMD | mdcr::HCCD;

    fn controls(layout: CptrLayout, cptr: u64, mdcr: u64) -> L1TrapControls {
        let reset = L1TrapControls::reset(layout, FEATURES);
        L1TrapControls {
            cptr: reset.cptr_written(cptr),
            mdcr: reset.mdcr_written(mdcr),
            ..reset
        }
    }

    #[test]
    fn features_from_the_id_registers() {
        // SVE (PFR0 [35:32]), SME (PFR1 [27:24]), PMUVer 6, TraceVer 1,
        // HPMN0 (DFR0 [63:60]); PMCR_EL0.N 6; MMFR1.HCX.
        let f = ShownFeatures::from_id_registers(
            1 << 32,
            1 << 24,
            1 << 60 | 6 << 8 | 1 << 4,
            1 << 40,
            6 << 11,
        );
        assert!(f.sve && f.sme && f.trace && f.pmuv3 && f.pmuv3p1 && f.pmuv3p5 && f.hpmn0 && f.hcx);
        assert_eq!(f.counters, 6);
        assert!(!f.amu);
        // PMUVer 0b1111 (IMPLEMENTATION DEFINED): no PMUv3, no counters.
        let f = ShownFeatures::from_id_registers(0, 0, 0xf << 8, 0, 6 << 11);
        assert!(!f.pmuv3 && f.counters == 0 && !f.sve && !f.sme);
    }

    #[test]
    fn reset_traps_nothing_in_either_layout() {
        for layout in [CptrLayout::Nvhe, CptrLayout::Vhe] {
            let reset = L1TrapControls::reset(layout, FEATURES);
            assert_eq!(
                reset.cptr_traps_for_l2(),
                CptrTraps::default(),
                "{layout:?}"
            );
            assert_eq!(reset.l1_hardware_cpacr(), 0x0333_0000);
            assert_eq!(reset.mdcr, 6, "HPMN resets to N");
            assert_eq!(l2_hardware_cptr(HV_CPTR, &reset), HV_CPTR);
            assert_eq!(l2_hardware_mdcr(HV_MDCR, &reset), HV_MDCR);
        }
        assert_eq!(
            L1TrapControls::reset(CptrLayout::Nvhe, FEATURES).cptr,
            0x22ff
        );
        assert_eq!(
            L1TrapControls::reset(CptrLayout::Vhe, FEATURES).cptr,
            0x0333_0000
        );
    }

    #[test]
    fn cptr_keeps_the_fields_l1_has() {
        let nvhe = L1TrapControls::reset(CptrLayout::Nvhe, FEATURES);
        // Every bit written: RES0 bits and TAM (no AMU shown) read 0.
        assert_eq!(
            nvhe.cptr_written(!0),
            cptr::TCPAC
                | cptr::NVHE_TTA
                | cptr::NVHE_TSM
                | cptr::NVHE_TFP
                | cptr::NVHE_TZ
                | cptr::NVHE_RES1
        );
        // RES1 bits read 1 whatever is written; TZ/TSM too without SVE/SME.
        assert_eq!(nvhe.cptr_written(0), cptr::NVHE_RES1);
        let bare = L1TrapControls::reset(CptrLayout::Nvhe, ShownFeatures::default());
        assert_eq!(
            bare.cptr_written(0),
            cptr::NVHE_RES1 | cptr::NVHE_TZ | cptr::NVHE_TSM
        );
        assert_eq!(
            bare.cptr_traps_for_l2(),
            CptrTraps::default(),
            "RES1 TZ/TSM trap nothing absent"
        );
        let vhe = L1TrapControls::reset(CptrLayout::Vhe, FEATURES);
        assert_eq!(
            vhe.cptr_written(!0),
            cptr::TCPAC | cptr::VHE_TTA | cptr::VHE_SMEN | cptr::VHE_FPEN | cptr::VHE_ZEN
        );
        let bare = L1TrapControls::reset(CptrLayout::Vhe, ShownFeatures::default());
        assert_eq!(
            bare.cptr_written(!0),
            cptr::TCPAC | cptr::VHE_FPEN,
            "ZEN/SMEN/TTA RES0"
        );
        let amu = ShownFeatures {
            amu: true,
            ..FEATURES
        };
        assert_ne!(
            L1TrapControls::reset(CptrLayout::Vhe, amu).cptr_written(cptr::TAM),
            0
        );
    }

    #[test]
    fn e2h0_traps_for_l2_and_at_el2() {
        let c = controls(CptrLayout::Nvhe, cptr::NVHE_TFP | cptr::TCPAC, 0);
        assert_eq!(
            c.cptr_traps_for_l2(),
            CptrTraps {
                fp: true,
                cpacr: true,
                ..CptrTraps::default()
            }
        );
        // TFP traps EL2 too; TCPAC is about EL1's CPACR_EL1 only.
        assert_eq!(
            c.cptr_traps_at_el2(),
            CptrTraps {
                fp: true,
                ..CptrTraps::default()
            }
        );
        assert_eq!(c.l1_hardware_cpacr(), cptr::VHE_ZEN | cptr::VHE_SMEN);
        let hw = l2_hardware_cptr(HV_CPTR, &c);
        assert_eq!(hw, HV_CPTR | cptr::NVHE_TFP | cptr::TCPAC);
        let all = controls(CptrLayout::Nvhe, !0, 0);
        assert_eq!(
            l2_hardware_cptr(HV_CPTR, &all),
            HV_CPTR
                | cptr::NVHE_TFP
                | cptr::NVHE_TZ
                | cptr::NVHE_TSM
                | cptr::NVHE_TTA
                | cptr::TCPAC
        );
        assert_eq!(
            all.l1_hardware_cpacr(),
            cptr::VHE_TTA,
            "FP, SVE, SME trapped at EL2"
        );
    }

    #[test]
    fn e2h1_enable_fields_trap_as_the_architecture_says() {
        // FPEN 0b00 and 0b10 trap EL2, EL1 and EL0; 0b01 only EL0 with
        // TGE = 1 (never L2 or L1 at EL2); 0b11 nothing.
        for (fpen, traps) in [(0b00, true), (0b01, false), (0b10, true), (0b11, false)] {
            let c = controls(
                CptrLayout::Vhe,
                fpen << 20 | cptr::VHE_ZEN | cptr::VHE_SMEN,
                0,
            );
            assert_eq!(c.cptr_traps_for_l2().fp, traps, "FPEN {fpen:#b}");
            assert_eq!(c.cptr_traps_at_el2().fp, traps, "FPEN {fpen:#b}");
            assert!(!c.cptr_traps_for_l2().sve);
            let cpacr = c.l1_hardware_cpacr();
            assert_eq!(cpacr & cptr::VHE_FPEN == 0, traps);
            // 0b01 stays 0b01 in the hardware: L1's host EL0 (run at
            // hardware EL0) traps to L1, its EL2 (hardware EL1) does not.
            if fpen == 0b01 {
                assert_eq!(cpacr & cptr::VHE_FPEN, 0b01 << 20);
            }
            if fpen == 0b11 {
                assert_eq!(cpacr & cptr::VHE_FPEN, cptr::VHE_FPEN);
            }
            assert_eq!(l2_hardware_cptr(HV_CPTR, &c) & cptr::NVHE_TFP != 0, traps);
        }
        let c = controls(
            CptrLayout::Vhe,
            cptr::VHE_FPEN | cptr::TCPAC | cptr::VHE_TTA,
            0,
        );
        assert_eq!(
            c.cptr_traps_for_l2(),
            CptrTraps {
                sve: true,
                sme: true,
                trace: true,
                cpacr: true,
                ..CptrTraps::default()
            }
        );
        assert_eq!(c.l1_hardware_cpacr(), cptr::VHE_FPEN | cptr::VHE_TTA);
        assert_eq!(
            l2_hardware_cptr(HV_CPTR, &c),
            HV_CPTR | cptr::NVHE_TZ | cptr::NVHE_TSM | cptr::NVHE_TTA | cptr::TCPAC
        );
    }

    #[test]
    fn a_vhe_l1s_cpacr_accesses_trap_while_it_runs() {
        assert_eq!(
            l1_hardware_cptr(HV_CPTR, CptrLayout::Vhe),
            HV_CPTR | cptr::TCPAC
        );
        assert_eq!(l1_hardware_cptr(HV_CPTR, CptrLayout::Nvhe), HV_CPTR);
    }

    #[test]
    fn mdcr_keeps_the_fields_l1_has_and_merges_its_traps() {
        let c = controls(CptrLayout::Vhe, 0, !0);
        assert_eq!(
            c.mdcr,
            0x1f | mdcr::TPMCR
                | mdcr::TPM
                | mdcr::HPME
                | mdcr::TDE
                | mdcr::TDA
                | mdcr::TDOSA
                | mdcr::TDRA
                | mdcr::HPMD
                | mdcr::HCCD
                | mdcr::HLP,
            "no SPE, TRBE, TRF, FGT: E2PB, TPMS, E2TB, TTRF, TDCC RES0"
        );
        let c = controls(CptrLayout::Vhe, 0, 2 | mdcr::TPM | mdcr::TDA);
        assert_eq!(
            l2_hardware_mdcr(HV_MDCR, &c),
            2 | mdcr::TPM | mdcr::TDA | mdcr::HPMD | mdcr::HCCD
        );
        // L1's HPMD/HCCD concern its own EL2; hv's stay for L2. L1's HPME
        // is read back but never given to the hardware (R39-1).
        let c = controls(
            CptrLayout::Vhe,
            0,
            6 | mdcr::TDE | mdcr::TPMCR | mdcr::HPME | mdcr::TDOSA | mdcr::TDRA,
        );
        assert_ne!(c.mdcr & mdcr::HPME, 0);
        assert_eq!(
            l2_hardware_mdcr(HV_MDCR, &c),
            HV_MDCR | mdcr::TDE | mdcr::TPMCR | mdcr::TDOSA | mdcr::TDRA
        );
        let bare = L1TrapControls::reset(CptrLayout::Nvhe, ShownFeatures::default());
        assert_eq!(
            bare.mdcr_written(!0),
            mdcr::TDE | mdcr::TDA | mdcr::TDOSA | mdcr::TDRA
        );
    }

    /// R39-1: hv handles L2's exits at EL2 under L2's hardware MDCR_EL2,
    /// where HPMD stops only the counters below HPMN and HCCD the cycle
    /// counter: no L1 value may enable the counters from HPMN up.
    #[test]
    fn l2_hardware_mdcr_never_enables_el2_counters() {
        for hpmn in [0, 1, 5, 6] {
            let c = controls(CptrLayout::Vhe, 0, hpmn | mdcr::HPME);
            let hw = l2_hardware_mdcr(HV_MDCR, &c);
            assert_eq!(hw & mdcr::HPME, 0, "HPMN {hpmn}: MDCR {hw:#x}");
            assert_ne!(hw & mdcr::HPMD, 0);
            assert_ne!(hw & mdcr::HCCD, 0);
        }
    }

    #[test]
    fn hpmn_beyond_the_counters_is_all_of_them() {
        for (hpmn, effective) in [(1, 1), (5, 5), (6, 6), (7, 6), (31, 6), (0, 6)] {
            let c = controls(CptrLayout::Vhe, 0, hpmn);
            assert_eq!(c.mdcr & mdcr::HPMN, hpmn, "read back as written");
            assert_eq!(c.effective_hpmn(), effective, "HPMN {hpmn}");
            assert_eq!(l2_hardware_mdcr(HV_MDCR, &c) & mdcr::HPMN, effective);
        }
        // With FEAT_HPMN0, 0 is a value of its own.
        let f = ShownFeatures {
            hpmn0: true,
            ..FEATURES
        };
        let c = L1TrapControls {
            mdcr: 0,
            ..L1TrapControls::reset(CptrLayout::Vhe, f)
        };
        assert_eq!(c.effective_hpmn(), 0);
    }

    /// R39-5: the buffers L1 is not shown are trapped for L1 and L2 alike
    /// wherever hv has them (E2PB/E2TB 0b10, TPMS), whatever L1 wrote
    /// (E2PB, E2TB, TPMS, TTRF are RES0 for it), and their registers are
    /// UNDEFINED for L2, not forwarded to an L1 that never asked.
    #[test]
    fn hidden_buffers_are_trapped_for_l1_and_l2() {
        let hv = HV_MDCR | mdcr::E2PB | mdcr::E2TB;
        let trapped = 0b10 << 12 | 0b10 << 24 | mdcr::TPMS;
        assert_eq!(hidden_buffer_traps(hv), trapped);
        assert_eq!(
            hidden_buffer_traps(HV_MDCR | mdcr::E2PB),
            0b10 << 12 | mdcr::TPMS
        );
        assert_eq!(hidden_buffer_traps(HV_MDCR | mdcr::E2TB), 0b10 << 24);
        assert_eq!(l1_hardware_mdcr(hv), HV_MDCR | trapped);
        for l1 in [0, mdcr::E2PB | mdcr::E2TB | mdcr::TPMS | mdcr::TTRF] {
            let c = controls(CptrLayout::Vhe, 0, 6 | l1);
            assert_eq!(
                c.mdcr & (mdcr::E2PB | mdcr::E2TB | mdcr::TPMS | mdcr::TTRF),
                0
            );
            let hw = l2_hardware_mdcr(hv, &c);
            assert_eq!(
                hw & (mdcr::E2PB | mdcr::E2TB | mdcr::TPMS),
                trapped,
                "{hw:#x}"
            );
            assert_eq!(hw & mdcr::TTRF, 0);
        }
        // Without the buffers there is nothing to trap (the fields RES0).
        let c = controls(CptrLayout::Vhe, 0, 6);
        assert_eq!(
            l2_hardware_mdcr(HV_MDCR, &c) & (mdcr::E2PB | mdcr::E2TB | mdcr::TPMS),
            0
        );
        assert_eq!(l1_hardware_mdcr(HV_MDCR), HV_MDCR);
        // PMSCR_EL1 (CRm 9), PMBLIMITR_EL1 (CRm 10), TRBLIMITR_EL1 (CRm
        // 11): UNDEFINED for L2; PMCR_EL0 and PMCCFILTR-like CRn 9/14
        // registers are not the buffers'.
        let sysreg = |op1: u64, crn: u64, crm: u64, op2: u64| {
            0x18 << 26 | 1 << 25 | 3 << 20 | op2 << 17 | op1 << 14 | crn << 10 | crm << 1 | 1
        };
        let c = controls(CptrLayout::Vhe, 0, 6);
        for crm in [9, 10, 11] {
            let esr = sysreg(0, 9, crm, 0);
            assert!(hidden_buffer_register(&SysRegAccess::from_iss(
                esr & 0x1ff_ffff
            )));
            assert_eq!(
                l2_trap_route(esr, &c),
                L2TrapRoute::UndefinedForL2,
                "CRm {crm}"
            );
        }
        for esr in [sysreg(3, 9, 12, 0), sysreg(0, 9, 14, 1), sysreg(4, 9, 9, 0)] {
            assert!(!hidden_buffer_register(&SysRegAccess::from_iss(
                esr & 0x1ff_ffff
            )));
        }
    }

    /// TRFCR_EL1 (FEAT_TRF hidden from L1): trapped for L1 and L2 where
    /// the CPU has FEAT_TRF, UNDEFINED for L2 (not forwarded to L1, whose
    /// MDCR_EL2.TTRF is RES0); no trap bit without FEAT_TRF (RES0).
    #[test]
    fn hidden_trace_filter_is_trapped_and_undefined() {
        // `-cpu max`'s ID_AA64DFR0_EL1 (TraceFilt 0), and with TraceFilt 1.
        let dfr0 = 0x1000_0000_1030_560a;
        assert_eq!(hidden_trace_filter_trap(dfr0), 0);
        assert_eq!(hidden_trace_filter_trap(dfr0 | 1 << 40), mdcr::TTRF);
        assert_eq!(
            (shown_to_l1(IdRegister::Dfr0, dfr0 | 1 << 40) >> 40) & 0xf,
            0
        );
        let c = controls(CptrLayout::Vhe, 0, 6);
        for read in [true, false] {
            let esr = sysreg_esr(3, 0, 1, 2, 1, read);
            assert!(is_trfcr_el1(&SysRegAccess::from_iss(esr & 0x1ff_ffff)));
            assert_eq!(l2_trap_route(esr, &c), L2TrapRoute::UndefinedForL2);
        }
        // CPACR_EL1 (op2 2) and TRFCR_EL2 (op1 4) are not TRFCR_EL1.
        for esr in [
            sysreg_esr(3, 0, 1, 0, 2, true),
            sysreg_esr(3, 4, 1, 2, 1, true),
        ] {
            assert!(!is_trfcr_el1(&SysRegAccess::from_iss(esr & 0x1ff_ffff)));
        }
    }

    /// BRBE (hidden from L1): its negative FGT bits cleared for L1 and L2
    /// (trapped), the rest of hv's values kept; its accesses UNDEFINED for
    /// L2.
    #[test]
    fn hidden_brbe_is_trapped_and_undefined() {
        let brbe = crate::sysregs::CpuFeatures {
            id_aa64dfr0: 1 << 52,
            ..crate::sysregs::CpuFeatures::default()
        };
        let hv = [
            crate::sysregs::hfgitr_el2(&brbe) | 1 << 59,
            crate::sysregs::hdfgrtr_el2(&brbe) | 1 << 62,
            crate::sysregs::hdfgwtr_el2(&brbe) | 1 << 62,
        ];
        assert_eq!(hv[0] & HFGITR_BRBE, HFGITR_BRBE);
        assert_eq!(nested_fine_grained_traps(hv), [1 << 59, 1 << 62, 1 << 62]);
        let c = controls(CptrLayout::Vhe, 0, 6);
        // BRBCR_EL1, BRBIDR0_EL1, BRBINF15_EL1, BRBTGT31_EL1, BRB IALL, INJ.
        let accesses = [
            sysreg_esr(2, 1, 9, 0, 0, true),
            sysreg_esr(2, 1, 9, 2, 0, true),
            sysreg_esr(2, 1, 8, 15, 0, true),
            sysreg_esr(2, 1, 8, 15, 6, false),
            sysreg_esr(1, 1, 7, 2, 4, false),
            sysreg_esr(1, 1, 7, 2, 5, false),
        ];
        for esr in accesses {
            assert_eq!(
                l2_trap_route(esr, &c),
                L2TrapRoute::UndefinedForL2,
                "{esr:#x}"
            );
        }
        // MDCCINT_EL1 (op0 2, op1 0), an AT (CRm 8), CFP RCTX (CRm 3).
        for esr in [
            sysreg_esr(2, 0, 0, 2, 0, true),
            sysreg_esr(1, 0, 7, 8, 0, false),
            sysreg_esr(1, 3, 7, 3, 4, false),
        ] {
            assert!(!is_brbe_access(&SysRegAccess::from_iss(esr & 0x1ff_ffff)));
        }
    }

    #[test]
    fn hcrx_keeps_unswitched_state_off_and_l1_sees_no_hcx() {
        // MSCEn, TCR2En, SCTLR2En, GCSEn, EnFPM as `sysregs::hcrx_el2`
        // gives them: TCR2En, SCTLR2En and GCSEn go (R39-2).
        let host = 1 << 11 | 1 << 14 | 1 << 15 | 1 << 22 | 1 << 23;
        assert_eq!(nested_hardware_hcrx(host), 1 << 11 | 1 << 23);
        assert_eq!(
            nested_hardware_hcrx(crate::sysregs::HCRX_TCR2EN | crate::sysregs::HCRX_SCTLR2EN),
            0
        );
        // L1 is shown no FEAT_HCX, so no HCRX bit is honoured for it.
        let mmfr1 = shown_to_l1(IdRegister::Mmfr1, !0);
        assert_eq!((mmfr1 >> 40) & 0xf, 0);
        assert_eq!(L1_HCRX_SHOWN, 0);
        assert_eq!(l1_hcrx(!0), 0);
    }

    fn sysreg_esr(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8, read: bool) -> u64 {
        SysRegAccess {
            read,
            ..SysRegAccess::mrs(op0, op1, crn, crm, op2, 2)
        }
        .esr()
    }

    #[test]
    fn l2_traps_go_to_l1_only_when_it_asked() {
        let fp = 0x07 << 26 | 1 << 25;
        let sve = 0x19 << 26 | 1 << 25;
        let sme = 0x1d << 26 | 1 << 25;
        let cpacr = sysreg_esr(3, 0, 1, 0, 2, true);
        let trapped = controls(CptrLayout::Vhe, cptr::TCPAC, 0);
        for esr in [fp, sve, sme, cpacr] {
            assert_eq!(
                l2_trap_route(esr, &trapped),
                L2TrapRoute::ForwardToL1,
                "{esr:#x}"
            );
        }
        let untrapped = L1TrapControls::reset(CptrLayout::Vhe, FEATURES);
        for esr in [fp, sve, sme, cpacr] {
            assert_eq!(
                l2_trap_route(esr, &untrapped),
                L2TrapRoute::Unrequested,
                "{esr:#x}"
            );
        }
        // A ZT0 access trapped by SMCR_EL2.EZT0 (SMTC 0b100) is L1's
        // whatever its CPTR_EL2 says: only L1's EZT0 makes it reach hv.
        let ezt0 = sme | 0b100;
        assert_eq!(l2_trap_route(ezt0, &untrapped), L2TrapRoute::Other);
        assert_eq!(l2_trap_route(ezt0, &trapped), L2TrapRoute::Other);
        // E2H = 0: TFP alone traps FP, not SVE.
        let tfp = controls(CptrLayout::Nvhe, cptr::NVHE_TFP, 0);
        assert_eq!(l2_trap_route(fp, &tfp), L2TrapRoute::ForwardToL1);
        assert_eq!(l2_trap_route(sve, &tfp), L2TrapRoute::Unrequested);
        // TCR2_EL1 and SCTLR2_EL1: hv's own (HCRX), UNDEFINED for L2.
        for esr in [
            sysreg_esr(3, 0, 2, 0, 3, false),
            sysreg_esr(3, 0, 1, 0, 3, true),
            sysreg_esr(3, 0, 2, 5, 0, true),
            sysreg_esr(3, 3, 2, 5, 1, false),
        ] {
            assert_eq!(l2_trap_route(esr, &trapped), L2TrapRoute::UndefinedForL2);
        }
        // PMU, debug, other registers, HVC: the caller's rules.
        for esr in [
            sysreg_esr(3, 3, 9, 12, 0, true),
            sysreg_esr(2, 0, 0, 2, 2, true),
            0x16 << 26,
        ] {
            assert_eq!(l2_trap_route(esr, &trapped), L2TrapRoute::Other);
        }
    }

    #[test]
    fn register_encodings() {
        let access = |op1, crn, crm, op2| SysRegAccess {
            op0: 3,
            op1,
            crn,
            crm,
            op2,
            rt: 0,
            read: true,
        };
        assert!(is_cptr_el2(&access(4, 1, 1, 2)));
        assert!(is_mdcr_el2(&access(4, 1, 1, 1)));
        assert!(is_cpacr_el1(&access(0, 1, 0, 2)));
        assert!(!is_cpacr_el1(&access(5, 1, 0, 2)), "CPACR_EL12 is L2's");
        assert!(!is_cptr_el2(&access(4, 1, 1, 0)), "HCR_EL2");
        assert!(hcrx_disabled_register(&access(0, 2, 0, 3)));
        assert!(hcrx_disabled_register(&access(0, 1, 0, 3)));
        assert!(!hcrx_disabled_register(&access(0, 2, 0, 2)), "TCR_EL1");
        // GCSCR_EL1, GCSPR_EL1, GCSCRE0_EL1, GCSPR_EL0 (R39-2).
        for (op1, op2) in [(0, 0), (0, 1), (0, 2), (3, 1)] {
            assert!(hcrx_disabled_register(&access(op1, 2, 5, op2)));
        }
        assert!(!hcrx_disabled_register(&access(0, 2, 5, 3)));
        assert!(!hcrx_disabled_register(&access(3, 2, 5, 0)));
        assert!(!hcrx_disabled_register(&access(5, 2, 5, 0)), "GCSCR_EL12");
        // HACR_EL2 and nothing beside it.
        assert!(is_hacr_el2(&access(4, 1, 1, 7)));
        assert!(!is_hacr_el2(&access(4, 1, 1, 2)), "CPTR_EL2");
        assert!(!is_hacr_el2(&access(4, 1, 1, 3)), "HSTR_EL2");
        assert!(!is_hacr_el2(&access(0, 1, 1, 7)));
        assert!(!is_cptr_el2(&access(4, 1, 1, 7)) && !is_mdcr_el2(&access(4, 1, 1, 7)));
    }
}
