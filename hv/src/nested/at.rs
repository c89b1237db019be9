//! L1's address translation instructions at virtual EL2, emulated
//! (AArch64.AT and what it calls). hv runs L1 with HCR_EL2.AT, so its
//! AT S1E1*/S1E0* trap; with HCR_EL2.NV its EL2 forms (AT S1E2*, S12E1*,
//! S12E0*) trap as EL2 instructions. Each is answered here in software:
//!
//! - AT S1E1R/W, S1E0R/W, S1E1RP/WP (FEAT_PAN2 shown), S1E1A (FEAT_ATS1A
//!   shown): L2's EL1&0 stage 1 (its registers in the VNCR page), whose
//!   table walk goes through L1's stage 2 when L1's virtual HCR_EL2.VM (or
//!   DC) is set: a stage-2 fault on the walk is PAR_EL1 with S = 1, PTW =
//!   1 and the stage-2 FST (PAR_EL1 has no field for the IPA: bits
//!   \[47:12\] are RES0 in the fault format); with L1's virtual
//!   HCR_EL2.PTW, a stage-1 table stage 2 maps as Device is such a fault,
//!   a stage-2 permission fault at the stage-2 leaf's level;
//! - AT S12E1R/W, S12E0R/W: the same stage 1, then L1's stage 2 on its
//!   output (the `walker` crate, with the ID registers L1 is shown); PAR_EL1
//!   has the combined attributes, or the fault (S = 1, PTW = 0 for the
//!   final IPA). With L1's stage 2 off they are the stage-1 forms;
//! - AT S1E2R/W (S1E2A): L1's own EL2 regime (E2H = 0) or EL2&0 regime
//!   (E2H = 1), whose registers are the hardware EL1 ones hv converted
//!   (`el2_regime`), its tables read in L1's RAM (no stage 2 of L1's own).
//!   With L1's virtual HCR_EL2.{E2H, TGE} = {1, 1} the EL1 and EL0 forms
//!   act on that EL2&0 regime too, without stage 2. With {E2H, TGE} =
//!   {0, 1} (a non-VHE L1) they act on the EL1&0 regime with its stage 1
//!   off (the VA is the output), S12E* with L1's stage 2 on it.
//!
//! PAR_EL1 of L1 at virtual EL2 is the hardware PAR_EL1: FEAT_NV2 gives it
//! no VNCR page slot, so L1's MRS reads the register itself (an EL1
//! register at hardware EL1, not redirected). A synchronous External abort
//! on a walk (a descriptor read outside L1's RAM, at either stage) is not
//! a PAR_EL1 value: DDI 0487's PAR_EL1.FST has no encoding for it, "these
//! MMU faults are reported as a Data Abort exception instead of being
//! recorded in PAR_EL1" (as QEMU does too). hv does the same
//! ([`AtOutcome::ExternalAbort`]): a Data Abort to L1's virtual EL2, ESR
//! CM = 1, WnR = 1, S1PTW for a stage-2 walk made for a stage-1 one, FSC
//! 0x14 + the level.

use crate::inject::{external_walk_abort_syndrome, WalkedFor};
use crate::nested::el2_regime::Stage1Features;
use crate::nested::hcr;
use crate::s1walk::{
    translate, Stage1Access, Stage1Config, Stage1Error, Stage1Output, Stage1Regime,
};
use walker::{
    fault_status_code, AccessKind, Endianness, ExposedFeatures, FaultKind, GuestMemory,
    MemoryError, Stage2Registers, Stage2Walker, WalkError,
};

/// An address translation instruction (op0 1, CRn 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtOp {
    S1E1R,
    S1E1W,
    S1E0R,
    S1E0W,
    S1E1RP,
    S1E1WP,
    S1E1A,
    S1E2R,
    S1E2W,
    S1E2A,
    S12E1R,
    S12E1W,
    S12E0R,
    S12E0W,
}

/// The features that decide which AT forms L1 has, from the ID registers
/// it is shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AtFeatures {
    /// FEAT_PAN2 (ID_AA64MMFR1_EL1.PAN >= 2): AT S1E1RP/WP.
    pub pan2: bool,
    /// FEAT_PAN3 (PAN >= 3): SCTLR_ELx.EPAN.
    pub pan3: bool,
    /// FEAT_ATS1A (ID_AA64ISAR2_EL1.ATS1A): AT S1E1A, S1E2A.
    pub ats1a: bool,
    /// FEAT_E0PD (ID_AA64MMFR2_EL1.E0PD): TCR_ELx.E0PDx.
    pub e0pd: bool,
}

impl AtFeatures {
    /// From ID_AA64MMFR1_EL1, ID_AA64MMFR2_EL1 and ID_AA64ISAR2_EL1 as L1
    /// reads them.
    pub const fn from_id_registers(mmfr1: u64, mmfr2: u64, isar2: u64) -> Self {
        let pan = (mmfr1 >> 20) & 0xf;
        AtFeatures {
            pan2: pan >= 2,
            pan3: pan >= 3,
            ats1a: (isar2 >> 60) & 0xf != 0,
            e0pd: (mmfr2 >> 60) & 0xf != 0,
        }
    }
}

impl AtOp {
    /// The instruction SYS #op1, C7, C`crm`, #op2 is (op1 0: the EL1/EL0
    /// forms, op1 4: the EL2 ones); None for the rest (S1E3*, unallocated).
    pub const fn from_encoding(op1: u8, crm: u8, op2: u8) -> Option<AtOp> {
        Some(match (op1, crm, op2) {
            (0, 8, 0) => AtOp::S1E1R,
            (0, 8, 1) => AtOp::S1E1W,
            (0, 8, 2) => AtOp::S1E0R,
            (0, 8, 3) => AtOp::S1E0W,
            (0, 9, 0) => AtOp::S1E1RP,
            (0, 9, 1) => AtOp::S1E1WP,
            (0, 9, 2) => AtOp::S1E1A,
            (4, 8, 0) => AtOp::S1E2R,
            (4, 8, 1) => AtOp::S1E2W,
            (4, 9, 2) => AtOp::S1E2A,
            (4, 8, 4) => AtOp::S12E1R,
            (4, 8, 5) => AtOp::S12E1W,
            (4, 8, 6) => AtOp::S12E0R,
            (4, 8, 7) => AtOp::S12E0W,
            _ => return None,
        })
    }

    /// Whether L1, shown `features`, has this form (the others are
    /// UNDEFINED for it).
    pub const fn exists_for(self, features: &AtFeatures) -> bool {
        match self {
            AtOp::S1E1RP | AtOp::S1E1WP => features.pan2,
            AtOp::S1E1A | AtOp::S1E2A => features.ats1a,
            _ => true,
        }
    }

    const fn writes(self) -> bool {
        matches!(
            self,
            AtOp::S1E1W | AtOp::S1E0W | AtOp::S1E1WP | AtOp::S1E2W | AtOp::S12E1W | AtOp::S12E0W
        )
    }

    const fn el0(self) -> bool {
        matches!(
            self,
            AtOp::S1E0R | AtOp::S1E0W | AtOp::S12E0R | AtOp::S12E0W
        )
    }

    const fn el2(self) -> bool {
        matches!(self, AtOp::S1E2R | AtOp::S1E2W | AtOp::S1E2A)
    }

    const fn two_stages(self) -> bool {
        matches!(
            self,
            AtOp::S12E1R | AtOp::S12E1W | AtOp::S12E0R | AtOp::S12E0W
        )
    }
}

/// PAR_EL1 bit 11: RES1 in both 64-bit formats (NSE without FEAT_RME).
const PAR_RES1: u64 = 1 << 11;
/// PAR_EL1.NS (success): UNKNOWN for a Non-secure regime; hv reports 1,
/// the physical address space every translation here is in (as QEMU
/// does).
const PAR_NS: u64 = 1 << 9;

/// PAR_EL1 for a successful translation to `pa` with MAIR-encoded `attr`
/// and shareability `sh` (AArch64.EncodePAR, 64-bit format): PA\[51:12\],
/// ATTR, SH 0b10 for Device and for Normal Inner and Outer Non-cacheable
/// memory (PAREncodeShareability), NS 1, bit 11 RES1.
pub const fn par_translated(pa: u64, attr: u8, sh: u8) -> u64 {
    let device = attr & 0xf0 == 0;
    let non_cacheable = attr >> 4 == 0b0100 && matches!(attr & 0xf, 0b0100 | 0b0000);
    let sh = if device || non_cacheable { 0b10 } else { sh };
    (attr as u64) << 56 | (pa & 0x000f_ffff_ffff_f000) | PAR_RES1 | PAR_NS | ((sh as u64) & 3) << 7
}

/// PAR_EL1 for a fault with status code `fst`: F = 1, S (a stage-2
/// fault), PTW (on a stage-1 walk), bit 11 RES1.
pub const fn par_fault(fst: u8, stage2: bool, ptw: bool) -> u64 {
    1 | ((fst as u64) & 0x3f) << 1
        | if ptw { 1 << 8 } else { 0 }
        | if stage2 { 1 << 9 } else { 0 }
        | PAR_RES1
}

/// A memory type as the attribute combination sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Memory {
    /// Device with its type: 0 nGnRnE, 1 nGnRE, 2 nGRE, 3 GRE.
    Device(u8),
    /// Normal with its outer and inner Attr nibbles (MAIR encoding).
    Normal { outer: u8, inner: u8 },
}

/// A MAIR Attr nibble's cacheability: 0 Non-cacheable, 1 Write-Through,
/// 2 Write-Back (the order S2CombineS1AttrHints takes the lower of).
const fn cacheability(nibble: u8) -> u8 {
    match nibble >> 2 {
        0b00 | 0b10 => 1,
        0b01 if nibble == 0b0100 => 0,
        _ => 2,
    }
}

impl Memory {
    /// From a MAIR Attr byte. FEAT_XS's Normal encodings with inner
    /// 0b0000 (0x40, 0xa0) and MTE's Tagged 0xf0 are their plain
    /// counterparts (0x44, 0xaa, 0xff); any other inner 0b0000 is
    /// reserved (CONSTRAINED UNPREDICTABLE), taken as Non-cacheable.
    const fn from_attr(attr: u8) -> Memory {
        if attr & 0xf0 == 0 {
            return Memory::Device((attr >> 2) & 3);
        }
        let outer = attr >> 4;
        let inner = match (attr & 0xf, outer) {
            (0, 0b0100) | (0, 0b1010) | (0, 0b1111) => outer,
            (0, _) => 0b0100,
            (inner, _) => inner,
        };
        Memory::Normal { outer, inner }
    }

    /// From stage 2's MemAttr\[3:0\] (HCR_EL2.FWB = 0): \[3:2\] 0b00 is
    /// Device with \[1:0\] its type; otherwise \[3:2\] the outer and \[1:0\]
    /// the inner cacheability (0b01 NC, 0b10 WT, 0b11 WB; the reserved
    /// inner 0b00 taken as Non-cacheable), with no allocation hints.
    const fn from_stage2(mem_attr: u8) -> Memory {
        let outer = (mem_attr >> 2) & 3;
        if outer == 0 {
            return Memory::Device(mem_attr & 3);
        }
        Memory::Normal {
            outer: stage2_nibble(outer),
            inner: stage2_nibble(mem_attr & 3),
        }
    }

    const fn attr(self) -> u8 {
        match self {
            Memory::Device(kind) => kind << 2,
            Memory::Normal { outer, inner } => outer << 4 | inner,
        }
    }
}

/// A stage-2 cacheability (0b01 NC, 0b10 WT, 0b11 WB; 0b00 reserved, as
/// NC) as a MAIR Attr nibble without allocation hints.
const fn stage2_nibble(cacheability: u8) -> u8 {
    match cacheability {
        0b10 => 0b1000,
        0b11 => 0b1100,
        _ => 0b0100,
    }
}

/// S2CombineS1AttrHints for one level of cache: the lower cacheability of
/// the two, with stage 1's allocation and transient hints when it is
/// cacheable (stage 2 has none).
const fn combine_nibble(s1: u8, s2: u8) -> u8 {
    let (c1, c2) = (cacheability(s1), cacheability(s2));
    let c = if c1 < c2 { c1 } else { c2 };
    match c {
        0 => 0b0100,
        // Write-Back from both: stage 1's nibble as it is.
        2 => s1,
        // Write-Through: stage 1's transience and hints, as WT.
        _ => match s1 >> 2 {
            // WB transient 0b01RW -> WT transient 0b00RW.
            0b01 => s1 & 0b0011,
            // WB non-transient 0b11RW -> WT non-transient 0b10RW.
            0b11 => 0b1000 | (s1 & 0b0011),
            _ => s1,
        },
    }
}

/// The attributes and shareability of a two-stage translation from stage
/// 1's (`s1_attr`, `s1_sh`) and stage 2's MemAttr and SH
/// (S2CombineS1MemAttrs, S2CombineS1Shareability, HCR_EL2.FWB = 0): Device
/// if either is, of the more restrictive type; otherwise each cache level
/// the less cacheable; shareability Outer if either is, else Inner if
/// either is, else Non-shareable (a reserved 0b01 as Non-shareable).
pub const fn combine_attributes(s1_attr: u8, s1_sh: u8, s2_mem_attr: u8, s2_sh: u8) -> (u8, u8) {
    let memory = match (Memory::from_attr(s1_attr), Memory::from_stage2(s2_mem_attr)) {
        (Memory::Device(a), Memory::Device(b)) => Memory::Device(if a < b { a } else { b }),
        (Memory::Device(a), _) => Memory::Device(a),
        (_, Memory::Device(b)) => Memory::Device(b),
        (
            Memory::Normal {
                outer: o1,
                inner: i1,
            },
            Memory::Normal {
                outer: o2,
                inner: i2,
            },
        ) => Memory::Normal {
            outer: combine_nibble(o1, o2),
            inner: combine_nibble(i1, i2),
        },
    };
    let sh = if s1_sh == 0b10 || s2_sh == 0b10 {
        0b10
    } else if s1_sh == 0b11 || s2_sh == 0b11 {
        0b11
    } else {
        0b00
    };
    (memory.attr(), sh)
}

/// A stage-1 regime's registers (TCR in the TCR_EL1 layout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegimeRegisters {
    pub sctlr: u64,
    pub tcr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub mair: u64,
}

/// Everything an AT of L1 reads besides memory.
#[derive(Clone, Copy, Debug)]
pub struct AtContext<'a> {
    /// L1's virtual HCR_EL2 (E2H as hv treats it), VTTBR_EL2, VTCR_EL2.
    pub vhcr: u64,
    pub vttbr: u64,
    pub vtcr: u64,
    /// L1's PSTATE when it executed the AT (PAN, bit 22).
    pub pstate: u64,
    /// L2's EL1&0 regime (L1's VNCR page).
    pub l2: RegimeRegisters,
    /// L1's own EL2 or EL2&0 regime (the hardware EL1 registers).
    pub l1: RegimeRegisters,
    /// L1 runs with E2H = 0 (its own regime is the one-range EL2 one).
    pub l1_non_vhe: bool,
    pub stage1: &'a Stage1Features,
    pub stage2: &'a ExposedFeatures,
    pub features: AtFeatures,
}

/// What an AT of L1 does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtOutcome {
    /// Write this to PAR_EL1 and complete the instruction.
    Par(u64),
    /// A synchronous External abort on the walk at `level` (a descriptor
    /// outside L1's RAM): a Data Abort to L1's virtual EL2
    /// ([`external_abort_syndrome`]); `s1ptw` for a stage-2 walk made for
    /// a stage-1 descriptor read.
    ExternalAbort { level: i8, s1ptw: bool },
    /// A walk lost its descriptor update races (only with hardware
    /// updates, which L1 is not shown): L1 executes the AT again.
    Retry,
    /// hv's own stage 2 of L1 maps the L1 IPA of a descriptor the walk
    /// reads (L1's stage-1 or stage-2 table) but denies the read: L0's
    /// stage-2 permission fault, hv's, never L1's (no abort for L1). hv
    /// revokes no read access to L1's memory it would resolve, so the
    /// caller stops with its own failure.
    L0Denied {
        /// The L1 IPA of the descriptor.
        l1_ipa: u64,
    },
    /// hv is in the middle of its break-before-make of the page holding
    /// a descriptor the walk reads (`MemoryError::HostChanging`): a
    /// hardware walk would take hv's own stage-2 translation fault, which
    /// hv resolves by letting its change finish. Not L1's: L1 executes the
    /// AT again (as for [`AtOutcome::Retry`]), never an abort.
    L0Changing {
        /// The L1 IPA of the descriptor.
        l1_ipa: u64,
    },
}

/// Why a stage-1 descriptor read failed.
#[derive(Clone, Copy, Debug)]
enum ReadError {
    /// A stage-2 fault (its kind, level and FSC).
    Stage2(FaultKind, i8, u8),
    OutsideRam,
    Contended,
    /// hv's stage 2 of L1 denies the read of the descriptor at this L1 IPA.
    L0Denied(u64),
    /// hv is changing its stage 2 of L1 at the descriptor at this L1 IPA.
    L0Changing(u64),
}

/// The ESR for [`AtOutcome::ExternalAbort`] taken from L1 (PSTATE
/// `pstate`) to its virtual EL2: a data abort, CM = 1 and WnR = 1 (an
/// address translation instruction), FSC 0x14 + level (0x13 for -1), S1PTW
/// as given.
pub fn external_abort_syndrome(pstate: u64, level: i8, s1ptw: bool) -> u64 {
    let access = WalkedFor::Data {
        write: true,
        cache_maintenance: true,
    };
    external_walk_abort_syndrome(pstate, access, level) | if s1ptw { 1 << 7 } else { 0 }
}

/// PSTATE.PAN.
const PSTATE_PAN: u64 = 1 << 22;
/// SCTLR_ELx.M: stage 1 on.
const SCTLR_M: u64 = 1 << 0;

/// L1's `op` on `va`, reading L1's RAM (L1 IPAs: its stage-2 tables,
/// L2's stage-1 tables behind them, its own tables) from `memory`, whose
/// reads outside L1's RAM fail.
pub fn address_translate<M: GuestMemory + ?Sized>(
    op: AtOp,
    va: u64,
    context: &AtContext,
    memory: &M,
) -> AtOutcome {
    let host_regime =
        context.vhcr & (hcr::E2H | hcr::TGE) == hcr::E2H | hcr::TGE && !context.l1_non_vhe;
    // L1's own regime: AT S1E2*, and every form under {E2H, TGE} = {1, 1}.
    let own = op.el2() || host_regime;
    let (registers, regime) = if own {
        let regime = if context.l1_non_vhe {
            Stage1Regime::El2
        } else {
            Stage1Regime::TwoRanges
        };
        (context.l1, regime)
    } else {
        (context.l2, Stage1Regime::TwoRanges)
    };
    // With TGE = 1 and E2H = 0 the EL1&0 regime's stage 1 is off, as if
    // SCTLR_EL1.M were 0 (AArch64.S1Enabled for Regime_EL10: enabled only
    // with HCR_EL2.{DC, TGE} = {0, 0}): the output is the VA, Device-nGnRnE
    // or, with DC, Normal WB Non-shareable (AArch64.S1DisabledOutput).
    // Stage 2 still follows VM and DC: only an Effective {E2H, TGE} of
    // {1, 1} makes them 0 (HCR_EL2.VM, DC), and that is `host_regime`.
    let el10_stage1_off = !own && context.vhcr & hcr::TGE != 0;
    let sctlr = if el10_stage1_off {
        registers.sctlr & !SCTLR_M
    } else {
        registers.sctlr
    };
    let stage2_on = !own && context.vhcr & (hcr::VM | hcr::DC) != 0;
    let config = Stage1Config {
        sctlr,
        tcr: registers.tcr,
        ttbr0: registers.ttbr0,
        ttbr1: registers.ttbr1,
        mair: registers.mair,
        regime,
        features: context.stage1,
        default_cacheable: !own && context.vhcr & hcr::DC != 0,
        e0pd: context.features.e0pd,
        pan3: context.features.pan3,
    };
    let access = Stage1Access {
        write: op.writes(),
        el0: op.el0(),
        pan: matches!(op, AtOp::S1E1RP | AtOp::S1E1WP) && context.pstate & PSTATE_PAN != 0,
        unchecked: matches!(op, AtOp::S1E1A | AtOp::S1E2A),
    };
    // L1's stage 2 (what a walk of L1's VTTBR_EL2/VTCR_EL2 gives, with
    // L1's descriptors little-endian: FEAT_MixedEnd is hidden).
    let stage2 = Stage2Walker::new(
        Stage2Registers {
            vtcr: context.vtcr,
            vttbr: context.vttbr,
            endianness: Endianness::Little,
        },
        context.stage2,
    );
    let protected_walk = context.vhcr & hcr::PTW != 0;
    let read = |ipa: u64| {
        let l1_ipa = if stage2_on {
            match stage2.translate_leaf(memory, ipa, AccessKind::Read) {
                // HCR_EL2.PTW (AArch64.S2CheckPermissions for a walk's
                // access): stage 2's own memory type Device (MemAttr[3:2]
                // 0b00, FWB 0: L1 is shown no FEAT_S2FWB) makes the read
                // a stage-2 permission fault at the leaf's level.
                Ok(leaf) if protected_walk && leaf.mem_attr() >> 2 == 0 => {
                    let fsc = fault_status_code(FaultKind::Permission, leaf.level);
                    return Err(ReadError::Stage2(FaultKind::Permission, leaf.level, fsc));
                }
                Ok(leaf) => leaf.output_address,
                Err(WalkError::Fault(f)) => {
                    return Err(ReadError::Stage2(f.kind(), f.level, f.fsc()))
                }
                Err(WalkError::Contended { .. }) => return Err(ReadError::Contended),
                Err(WalkError::HostDenied(d)) => {
                    return Err(ReadError::L0Denied(d.descriptor_address))
                }
                Err(WalkError::HostChanging(c)) => {
                    return Err(ReadError::L0Changing(c.descriptor_address))
                }
            }
        } else {
            ipa
        };
        memory
            .read_descriptor(l1_ipa)
            .map(u64::from_le)
            .map_err(|error| match error {
                MemoryError::HostDenied => ReadError::L0Denied(l1_ipa),
                MemoryError::HostChanging => ReadError::L0Changing(l1_ipa),
                _ => ReadError::OutsideRam,
            })
    };
    let output = match translate(&config, va, access, read) {
        Ok(output) => output,
        Err(Stage1Error::Fault { kind, level }) => {
            return AtOutcome::Par(par_fault(fault_status_code(kind, level), false, false))
        }
        Err(Stage1Error::Read { level, error }) => {
            return match error {
                ReadError::OutsideRam => AtOutcome::ExternalAbort {
                    level,
                    s1ptw: false,
                },
                ReadError::Stage2(kind, level, fsc) => stage2_fault(kind, level, fsc, true),
                ReadError::Contended => AtOutcome::Retry,
                ReadError::L0Denied(l1_ipa) => AtOutcome::L0Denied { l1_ipa },
                ReadError::L0Changing(l1_ipa) => AtOutcome::L0Changing { l1_ipa },
            }
        }
    };
    if !(op.two_stages() && stage2_on) {
        return AtOutcome::Par(par_translated(
            output.address,
            output.attr,
            output.shareability,
        ));
    }
    two_stage_par(&stage2, memory, output, op.writes())
}

/// The PAR_EL1 of stage 2 on stage 1's `output` (a write or a read).
fn two_stage_par<M: GuestMemory + ?Sized>(
    stage2: &Stage2Walker,
    memory: &M,
    output: Stage1Output,
    write: bool,
) -> AtOutcome {
    let kind = if write {
        AccessKind::Write
    } else {
        AccessKind::Read
    };
    match stage2.translate_leaf(memory, output.address, kind) {
        Ok(leaf) => {
            let (attr, sh) = combine_attributes(
                output.attr,
                output.shareability,
                leaf.mem_attr(),
                leaf.shareability.bits(),
            );
            AtOutcome::Par(par_translated(leaf.output_address, attr, sh))
        }
        Err(WalkError::Fault(f)) => stage2_fault(f.kind(), f.level, f.fsc(), false),
        Err(WalkError::Contended { .. }) => AtOutcome::Retry,
        Err(WalkError::HostDenied(d)) => AtOutcome::L0Denied {
            l1_ipa: d.descriptor_address,
        },
        Err(WalkError::HostChanging(c)) => AtOutcome::L0Changing {
            l1_ipa: c.descriptor_address,
        },
    }
}

/// A stage-2 fault of `kind` at `level` (status code `fsc`): PAR_EL1 with
/// S = 1 (PTW = `on_walk`), or, for an external abort on the stage-2
/// walk, the Data Abort.
fn stage2_fault(kind: FaultKind, level: i8, fsc: u8, on_walk: bool) -> AtOutcome {
    if kind == FaultKind::ExternalAbortOnWalk {
        AtOutcome::ExternalAbort {
            level,
            s1ptw: on_walk,
        }
    } else {
        AtOutcome::Par(par_fault(fsc, true, on_walk))
    }
}

#[cfg(test)]
mod tests;
