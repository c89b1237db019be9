//! The PSTATE and PC changes of the two ways between L1's virtual EL2 and
//! L2: an exception taken to virtual EL2 (hv emulates
//! `AArch64.TakeException` for it) and L1's trapped ERET (hv emulates
//! `AArch64.ExceptionReturn`). PSTATE values are the hardware's: L1 runs at
//! hardware EL1, so its virtual EL2h is the hardware's EL1h.

use super::vncr::El1Register;
use crate::inject::{entry_pstate, EntryFeatures, TargetEl1, SCTLR_SPAN};

/// PSTATE.M\[3:0\] (exception level and stack pointer).
const M_MASK: u64 = 0xf;
/// PSTATE.nRW / SPSR.M\[4\]: AArch32.
const NRW: u64 = 1 << 4;
/// PSTATE.{D, A, I, F}.
pub const DAIF: u64 = 0xf << 6;
/// PSTATE.IL: an illegal exception return happened.
pub const IL: u64 = 1 << 20;
/// PSTATE.SS.
const SS: u64 = 1 << 21;
/// M\[3:0\] values.
pub const EL0T: u64 = 0b0000;
pub const EL1T: u64 = 0b0100;
pub const EL1H: u64 = 0b0101;
pub const EL2T: u64 = 0b1000;
pub const EL2H: u64 = 0b1001;

/// The exception level M\[3:2\] names.
const fn el(pstate: u64) -> u64 {
    (pstate >> 2) & 0b11
}

/// L1's PSTATE as L1 sees it (in its SPSR_EL2 after an exception taken
/// from virtual EL2): hardware EL1 is its EL2.
pub const fn virtual_pstate(hardware: u64) -> u64 {
    if el(hardware) == 1 {
        (hardware & !M_MASK) | ((hardware & 1) | EL2T)
    } else {
        hardware
    }
}

/// Where an exception into virtual EL2 comes from, which picks the vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// From L2 (a lower EL, AArch64): VBAR + 0x400.
    LowerAarch64,
    /// From virtual EL2 using SP_EL0 (EL2t): VBAR + 0x000.
    CurrentSpEl0,
    /// From virtual EL2 using SP_EL2 (EL2h): VBAR + 0x200.
    CurrentSpElx,
}

impl Origin {
    /// The origin of an exception L1 takes from its own code, from L1's
    /// hardware PSTATE (SPSel in M\[0\]); from its host EL0 (its virtual
    /// {E2H, TGE} = {1, 1}, [`EretTarget::L1HostEl0`]) a lower EL's.
    pub const fn of_l1(hardware_pstate: u64) -> Origin {
        if el(hardware_pstate) == 0 {
            Origin::LowerAarch64
        } else if hardware_pstate & 1 == 1 {
            Origin::CurrentSpElx
        } else {
            Origin::CurrentSpEl0
        }
    }

    /// Offset of the synchronous vector from VBAR_EL2.
    pub const fn sync_offset(self) -> u64 {
        match self {
            Origin::LowerAarch64 => 0x400,
            Origin::CurrentSpEl0 => 0x000,
            Origin::CurrentSpElx => 0x200,
        }
    }
}

/// What PSTATE on entry to L1's virtual EL2 depends on besides the
/// interrupted state (AArch64.TakeException with EL2 the target).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vel2Target {
    /// The PSTATE features L1 is shown (PAN, MTE, SSBS, NMI, GCS).
    pub features: EntryFeatures,
    /// L1's SCTLR_EL2: DSSBS, SPINTMASK, and SPAN (which matters only in
    /// host mode).
    pub sctlr: u64,
    /// L1's GCSCR_EL2 (EXLOCKEN; 0 without FEAT_GCS).
    pub gcscr: u64,
    /// L1's virtual HCR_EL2.{E2H, TGE} are {1, 1}: EL2 is in host mode.
    pub host: bool,
}

impl Vel2Target {
    /// For L1 with the hardware EL1 `hardware_sctlr` (L1's SCTLR_EL2 as
    /// hv converts it: DSSBS and SPINTMASK carried, SPAN forced 1 for a
    /// VHE L1, `el2_regime::sctlr_el1_for_vhe_vel2`), L1's SCTLR_EL2 as
    /// it wrote it (`l1_sctlr_el2`: its SPAN) and its virtual HCR_EL2
    /// (`l1_virtual_hcr`: host mode when E2H = TGE = 1, which only a VHE
    /// L1 can have; review 39 R39-4).
    pub const fn new(
        features: EntryFeatures,
        hardware_sctlr: u64,
        gcscr: u64,
        l1_sctlr_el2: u64,
        l1_virtual_hcr: u64,
    ) -> Vel2Target {
        let host_mode = super::hcr::E2H | super::hcr::TGE;
        Vel2Target {
            features,
            sctlr: (hardware_sctlr & !SCTLR_SPAN) | (l1_sctlr_el2 & SCTLR_SPAN),
            gcscr,
            host: l1_virtual_hcr & host_mode == host_mode,
        }
    }
}

/// L1's hardware PSTATE on entry to its virtual EL2 from hardware PSTATE
/// `from` (L2's, or L1's own), as AArch64.TakeException sets it for EL2
/// (review 34 R34-7), by [`inject::entry_pstate`] (which sets it for EL1;
/// hardware EL1h is virtual EL2h): EL2h with D, A, I, F masked; SS, IL,
/// UAO and BTYPE 0; NZCV and DIT kept; SSBS = SCTLR_EL2.DSSBS (FEAT_SSBS);
/// ALLINT = NOT SCTLR_EL2.SPINTMASK (FEAT_NMI); TCO = 1 (FEAT_MTE); PAN
/// kept, and set when SPAN is 0 only in host mode (the pseudocode sets it
/// at EL2 only when ELIsInHost(EL0)); EXLOCK = GCSCR_EL2.EXLOCKEN for an
/// exception from L1 itself (EL2 to EL2), 0 from L2 (FEAT_GCS).
///
/// [`inject::entry_pstate`]: crate::inject::entry_pstate
pub fn vel2_entry_pstate(from: u64, origin: Origin, target: Vel2Target) -> u64 {
    let as_el1 = TargetEl1 {
        features: target.features,
        sctlr: if target.host {
            target.sctlr
        } else {
            target.sctlr | SCTLR_SPAN
        },
        gcscr: match origin {
            Origin::LowerAarch64 => 0,
            Origin::CurrentSpEl0 | Origin::CurrentSpElx => target.gcscr,
        },
    };
    entry_pstate(from, as_el1)
}

/// What taking a synchronous exception to virtual EL2 sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vel2Entry {
    /// Where L1 continues: its vector.
    pub pc: u64,
    /// L1's hardware PSTATE there ([`vel2_entry_pstate`]).
    pub pstate: u64,
    /// ELR_EL2 for L1: the preferred return address.
    pub elr: u64,
    /// SPSR_EL2 for L1: the interrupted PSTATE as L1 sees it.
    pub spsr: u64,
}

/// A synchronous exception to virtual EL2 with L1's VBAR_EL2 `vbar`, from
/// `origin`, returning to `return_pc` with hardware PSTATE `return_pstate`,
/// into L1 as `target` describes it.
pub fn exception_to_vel2(
    vbar: u64,
    origin: Origin,
    return_pc: u64,
    return_pstate: u64,
    target: Vel2Target,
) -> Vel2Entry {
    Vel2Entry {
        // VBAR_EL2 bits [10:0] are RES0.
        pc: (vbar & !0x7ff) + origin.sync_offset(),
        pstate: vel2_entry_pstate(return_pstate, origin, target),
        elr: return_pc,
        spsr: match origin {
            Origin::LowerAarch64 => return_pstate,
            _ => virtual_pstate(return_pstate),
        },
    }
}

/// Where L1's ERET goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EretTarget {
    /// Into L2 at EL1 or EL0 (AArch64), with this hardware PSTATE; or
    /// into L1's own EL0 in its EL1&0 regime when L1's virtual HCR_EL2
    /// has {E2H, TGE} = {0, 1} ([`runs_el0_with_tge`]), which hv enters
    /// the same way, with the hardware TGE set.
    L2 { pc: u64, pstate: u64 },
    /// Stays at virtual EL2 with this hardware PSTATE (a return to EL2, or
    /// an illegal return: then PSTATE.IL is set).
    Vel2 { pc: u64, pstate: u64 },
    /// To EL0 with L1's virtual HCR_EL2.{E2H, TGE} = {1, 1}: L1's own host
    /// userspace in its EL2&0 regime, not L2: hv runs it at hardware EL0
    /// on L1's own regime (the hardware EL1&0 one), where its exceptions
    /// reach L1's vector (VBAR_EL2 + 0x400, as from a lower EL) in
    /// hardware. (With {E2H, TGE} = {0, 1} EL0 is in the EL1&0 regime,
    /// L2's registers: [`EretTarget::L2`], see [`runs_el0_with_tge`].)
    L1HostEl0 { pc: u64, pstate: u64 },
}

/// Whether L1's virtual HCR_EL2 `l1_virtual_hcr` has {E2H, TGE} = {0, 1}
/// (only a non-VHE L1 can: E2H is RES0 for it). L1's ERET to EL0 then
/// runs EL0 in the EL1&0 regime, whose registers are the ones L1 keeps
/// for L2 (the VNCR page), as an L2 entry does, but with the effects DDI
/// 0487 gives HCR_EL2.TGE = 1 with E2H = 0: every exception that would be
/// taken to EL1 is taken to EL2, SCTLR_EL1.M is treated as 0 (stage 1
/// off; stage 2, HCR_EL2.VM, still applies), HCR_EL2.{FMO, IMO, AMO} are
/// treated as 1, virtual interrupts are disabled, and MDCR_EL2.{TDRA,
/// TDOSA, TDA, TDE} are treated as 1. hv gets all of them by running that
/// EL0 with the hardware HCR_EL2.TGE set ([`super::l2_hcr`]; hv's own E2H
/// is 0), and gives L1 every exception its EL0 takes but the stage-2
/// faults it resolves ([`tge_el0_exit`]).
pub const fn runs_el0_with_tge(l1_virtual_hcr: u64) -> bool {
    l1_virtual_hcr & (super::hcr::E2H | super::hcr::TGE) == super::hcr::TGE
}

/// What hv does with a synchronous exit of L1's EL0 run with
/// [`runs_el0_with_tge`] (the hardware's TGE routed it to EL2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TgeEl0Exit {
    /// A stage-2 fault (ipc's `is_stage2_fault_code`): on L1's stage 2
    /// (the service's shadow) or on L0's map of L1 (L1's stage 2 off),
    /// handled as an L2's stage-2 abort is. Its VA is its IPA.
    Stage2,
    /// An access beyond the PA size L1 is shown with stage 1 off: the
    /// stage-1 Address size fault at level 0 (AArch64.S1DisabledOutput:
    /// VA bits \[top:PAMax\] not 0), this syndrome, for L1 with FAR the
    /// VA. The hardware's PA size is larger, so it let the VA through to
    /// stage 2 as an IPA.
    AddressSize(u64),
    /// Anything else (SVC, an UNDEFINED, a trap CPACR_EL1 or SCTLR_EL1 asks
    /// for at EL0, a stage-1 abort such as an alignment fault, a debug
    /// exception...): an exception to EL2 from a lower EL, L1's, with the
    /// syndrome the hardware gave.
    ToL1,
}

/// TCR_EL1.TBI0, TBI1, TBID0, TBID1.
const TCR_TBI0: u64 = 1 << 37;
const TCR_TBID0: u64 = 1 << 51;

/// How hv takes the exit with syndrome `esr` and FAR `far` of L1's EL0 run
/// with {E2H, TGE} = {0, 1}, the EL1&0 regime's TCR_EL1 being `tcr_el1`
/// (its TBI and TBID decide which VA bits the size check covers:
/// AArch64.AddrTop) and L1 shown `pa_bits` of PA.
pub const fn tge_el0_exit(esr: u64, far: u64, tcr_el1: u64, pa_bits: u32) -> TgeEl0Exit {
    const EC_IABT_LOWER: u64 = 0x20;
    const EC_DABT_LOWER: u64 = 0x24;
    const FNV: u64 = 1 << 10;
    let ec = (esr >> 26) & 0x3f;
    let abort = ec == EC_IABT_LOWER || ec == EC_DABT_LOWER;
    if !abort || !ipc::is_stage2_fault_code((esr & 0x3f) as u32) {
        return TgeEl0Exit::ToL1;
    }
    if esr & FNV == 0 && pa_bits < 56 {
        // TBI0/TBI1 by VA bit 55; for a fetch without TBID0/TBID1.
        let half = ((far >> 55) & 1) as u32;
        let tbi = (tcr_el1 & (TCR_TBI0 << half)) != 0
            && (ec == EC_DABT_LOWER || tcr_el1 & (TCR_TBID0 << half) == 0);
        let top: u32 = if tbi { 55 } else { 63 };
        let beyond = (far >> pa_bits) & ((1u64 << (top - pa_bits + 1)) - 1);
        if beyond != 0 {
            // EC and IL kept; a data access's WnR and CM; FSC 0b000000 (level
            // 0); ISV 0: no instruction syndrome for a stage-1 fault.
            const KEEP: u64 = 0x3f << 26 | 1 << 25 | ESR_CM | ESR_WNR;
            return TgeEl0Exit::AddressSize(esr & KEEP);
        }
    }
    TgeEl0Exit::Stage2
}

/// The hardware SCTLR_EL1 while L1's EL0 runs under [`runs_el0_with_tge`]:
/// L2's (the VNCR word, `sctlr_el1`) with M clear, as TGE treats it for
/// every purpose but a direct read (which EL0 cannot make). The hardware's
/// TGE does the same on a conforming PE; QEMU 10 walks stage 1 anyway when
/// stage 2 is on (its two-stage translation checks only HCR_EL2.DC).
pub const fn el0_tge_hardware_sctlr(sctlr_el1: u64) -> u64 {
    sctlr_el1 & !1
}

/// Whether L2's stage 1 (the EL1&0 one, its registers in the hardware)
/// translates: SCTLR_EL1.M set and the hardware HCR_EL2's DC and TGE
/// clear, either of which makes it behave as off whatever SCTLR_EL1.M
/// says (AArch64.S1Enabled; TGE is set only for L1's EL0 under
/// [`runs_el0_with_tge`]).
pub const fn l2_stage1_on(sctlr_el1: u64, hardware_hcr: u64) -> bool {
    sctlr_el1 & 1 != 0 && hardware_hcr & (super::hcr::DC | super::hcr::TGE) == 0
}

/// L1's ERET with its ELR_EL2 `elr` and SPSR_EL2 `spsr`, its virtual
/// HCR_EL2 `l1_hcr` and its current hardware PSTATE `current`
/// (AArch64.ExceptionReturn and IllegalExceptionReturn). Illegal: a
/// return to AArch32 (hv runs AArch64 L2s only: L1's HCR_EL2.RW is
/// treated as 1, and EL0 as AArch64-only), to EL3, to a reserved M value,
/// to EL0 with SP_EL1 selected, or to EL1 while L1's HCR_EL2.TGE is 1.
/// An illegal return keeps the exception level and SP selection, takes
/// the other PSTATE fields from SPSR and sets PSTATE.IL; the PC is ELR.
pub const fn eret_from_vel2(elr: u64, spsr: u64, l1_hcr: u64, current: u64) -> EretTarget {
    let m = spsr & M_MASK;
    let legal = spsr & NRW == 0
        && match m {
            EL0T | EL1T | EL1H => !(el(m) == 1 && l1_hcr & super::hcr::TGE != 0),
            EL2T | EL2H => true,
            _ => false,
        };
    if !legal {
        return EretTarget::Vel2 {
            pc: elr,
            pstate: (spsr & !(M_MASK | NRW | SS)) | (current & M_MASK) | IL,
        };
    }
    match el(m) {
        0 if l1_hcr & (super::hcr::E2H | super::hcr::TGE) == super::hcr::E2H | super::hcr::TGE => {
            EretTarget::L1HostEl0 {
                pc: elr,
                pstate: spsr,
            }
        }
        2 => EretTarget::Vel2 {
            pc: elr,
            // EL2 -> hardware EL1, same SP selection.
            pstate: (spsr & !M_MASK) | (m & 1) | EL1T,
        },
        _ => EretTarget::L2 {
            pc: elr,
            pstate: spsr,
        },
    }
}

/// L1's EL2 registers that have no VNCR slot, whose accesses trap (NV1 =
/// 0: checked on QEMU). The ones with an EL1 twin live in the hardware
/// EL1 register while L1 runs, where the hardware's own exception entry
/// for L1 (an exception L1 takes from virtual EL2 to itself) uses them;
/// HPFAR_EL2 has no twin and is kept by hv. With E2H = 1 (L1 is a VHE
/// guest hypervisor) the EL1 encodings at EL2 name these same registers,
/// and they reach the twins without a trap, so the trapped `_EL2`
/// encodings of SCTLR, TTBR0/1, TCR, MAIR, AMAIR and CONTEXTIDR are the
/// twins too (review 23 F8). Their effect is that of the twin under L1's
/// hardware HCR_EL2, except SCTLR_EL2 and TCR_EL2, which hv keeps as
/// written and converts (`el2_regime::VheRegime`; DC follows SCTLR.M).
/// For a non-VHE L1 (`el2_regime`) SCTLR, TTBR0, TCR, MAIR and AMAIR_EL2
/// are emulated by `el2_regime::NonVheRegime` instead, and TTBR1_EL2 and
/// CONTEXTIDR_EL2 are UNDEFINED (FEAT_VHE is not shown). The EL2
/// trap controls are not here: CPTR_EL2 and MDCR_EL2 are kept and
/// honoured by [`super::traps`], CNTHCTL_EL2 by [`super::timer`]; the
/// others stay UNDEFINED for L1 until hv honours them for L2, since a
/// stored value hv did not honour would let L1 believe L2 is trapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vel2Register {
    Sctlr,
    Ttbr0,
    Ttbr1,
    Tcr,
    Mair,
    Amair,
    Contextidr,
    Vbar,
    Elr,
    Spsr,
    Esr,
    Far,
    Afsr0,
    Afsr1,
    Hpfar,
}

impl Vel2Register {
    /// From an MRS/MSR with op0 3, op1 4.
    pub fn from_encoding(crn: u8, crm: u8, op2: u8) -> Option<Self> {
        Some(match (crn, crm, op2) {
            (1, 0, 0) => Vel2Register::Sctlr,
            (2, 0, 0) => Vel2Register::Ttbr0,
            (2, 0, 1) => Vel2Register::Ttbr1,
            (2, 0, 2) => Vel2Register::Tcr,
            (10, 2, 0) => Vel2Register::Mair,
            (10, 3, 0) => Vel2Register::Amair,
            (13, 0, 1) => Vel2Register::Contextidr,
            (12, 0, 0) => Vel2Register::Vbar,
            (4, 0, 1) => Vel2Register::Elr,
            (4, 0, 0) => Vel2Register::Spsr,
            (5, 2, 0) => Vel2Register::Esr,
            (6, 0, 0) => Vel2Register::Far,
            (5, 1, 0) => Vel2Register::Afsr0,
            (5, 1, 1) => Vel2Register::Afsr1,
            (6, 0, 4) => Vel2Register::Hpfar,
            _ => return None,
        })
    }

    /// The hardware EL1 register that holds it while L1 runs (None:
    /// HPFAR_EL2, kept by hv).
    pub fn twin(self) -> Option<El1Register> {
        Some(match self {
            Vel2Register::Sctlr => El1Register::Sctlr,
            Vel2Register::Ttbr0 => El1Register::Ttbr0,
            Vel2Register::Ttbr1 => El1Register::Ttbr1,
            Vel2Register::Tcr => El1Register::Tcr,
            Vel2Register::Mair => El1Register::Mair,
            Vel2Register::Amair => El1Register::Amair,
            Vel2Register::Contextidr => El1Register::Contextidr,
            Vel2Register::Vbar => El1Register::Vbar,
            Vel2Register::Elr => El1Register::Elr,
            Vel2Register::Spsr => El1Register::Spsr,
            Vel2Register::Esr => El1Register::Esr,
            Vel2Register::Far => El1Register::Far,
            Vel2Register::Afsr0 => El1Register::Afsr0,
            Vel2Register::Afsr1 => El1Register::Afsr1,
            Vel2Register::Hpfar => return None,
        })
    }
}

/// Where the L2 IPA of a stage-2 abort L2 took comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultIpaSource {
    /// L2's stage 1 is off (SCTLR_EL1.M = 0, or HCR_EL2.DC = 1, which makes
    /// stage 1 behave as off): its VA, FAR_EL2, is its IPA.
    Far,
    /// HPFAR_EL2.FIPA with FAR_EL2's page offset: HPFAR_EL2 is valid for a
    /// translation or Access flag fault, and for any fault on a stage-1
    /// walk (S1PTW = 1).
    Hpfar,
    /// A permission fault not on a walk with L2's stage 1 on: HPFAR_EL2 is
    /// UNKNOWN (ESR_EL2 ISS, "HPFAR_EL2 is valid" list), so hv translates
    /// FAR_EL2 with L2's own stage 1 (`AT S1E1*`/`S1E0*`, PAR_EL1) as
    /// KVM's `__get_fault_info` does. QEMU fills HPFAR_EL2 for every
    /// stage-2 fault, so the QEMU cases cannot tell the two apart: the
    /// choice is host-tested ([`fault_ipa_source`]).
    Stage1Walk,
}

/// Where the IPA of L2's stage-2 abort with syndrome `esr` comes from,
/// L2's stage 1 being on (SCTLR_EL1.M = 1 and HCR_EL2.DC = 0) or not.
pub const fn fault_ipa_source(esr: u64, l2_stage1_on: bool) -> FaultIpaSource {
    // DFSC/IFSC 0b0011xx: a permission fault at level 0 to 3.
    let permission = esr & 0x3c == 0x0c;
    if !l2_stage1_on {
        FaultIpaSource::Far
    } else if permission && esr & ESR_S1PTW == 0 {
        FaultIpaSource::Stage1Walk
    } else {
        FaultIpaSource::Hpfar
    }
}

/// The L2 IPA from `AT`'s PAR_EL1 `par` for the fault at FAR `far`; None
/// when the translation failed (PAR_EL1.F: L2's stage 1 changed since the
/// fault, so L2 is resumed and faults afresh).
pub const fn ipa_from_par(par: u64, far: u64) -> Option<u64> {
    if par & 1 != 0 {
        None
    } else {
        // PAR_EL1.PA [51:12] (bits [47:12] for the 48-bit shadow).
        Some((par & 0x000f_ffff_ffff_f000) | (far & 0xfff))
    }
}

/// The L2 IPA of a stage-2 abort L2 took ([`FaultIpaSource::Far`] or
/// [`FaultIpaSource::Hpfar`]): with L2's stage 1 off its VA is its IPA
/// (FAR_EL2); otherwise HPFAR_EL2.FIPA (bits \[43:4\], IPA \[51:12\] for
/// the 48-bit shadow) with FAR_EL2's page offset.
pub const fn l2_fault_ipa(far: u64, hpfar: u64, l2_stage1_on: bool) -> u64 {
    if l2_stage1_on {
        crate::esr::hpfar_ipa_page(hpfar) | (far & 0xfff)
    } else {
        far
    }
}

/// ESR ISS.S1PTW: the stage-2 fault is on the stage-1 table walk.
const ESR_S1PTW: u64 = 1 << 7;
/// ESR ISS.WnR.
const ESR_WNR: u64 = 1 << 6;
/// ESR ISS.CM: the data abort came from a cache maintenance or address
/// translation instruction.
const ESR_CM: u64 = 1 << 8;

/// What the access behind a lower-EL abort syndrome `esr` (EC 0x20
/// instruction, 0x24 data) was, L2's PSTATE at the fault being `spsr`
/// (SPSR_EL2). Per the ESR ISS encoding:
/// - with S1PTW = 1 the stage-2 fault is on L2's stage-1 table walk, a
///   data read (a write only with WnR = 1, a hardware Access flag or dirty
///   state update) whatever EC says the walk was for. The service walks
///   such a write as a stage-1 descriptor update, which needs R and W
///   (AccessType_TTW), so a read the shadow denied is checked too. A cache
///   maintenance instruction's walk (CM = 1) reports WnR = 1 whatever the
///   walk did: a translation or access flag fault is a read (the update
///   comes after a successful read), and a permission fault is labelled
///   a write, whose R-and-W check covers both what the read and the update
///   need. So a walk on a table page L1 maps write-only gets L1's
///   permission fault (review 36 R36-1: checked for W alone, it was
///   answered `Mapped` and re-faulted forever);
/// - an instruction abort from EL0 (SPSR.M = EL0t) is an EL0 fetch, which
///   stage 2 may forbid apart from EL1's (FEAT_XNX);
/// - a data abort with CM = 1 is a cache maintenance instruction (WnR = 1
///   whatever it does), at EL0 or EL1 (review 31 R31-2: it was walked as a
///   write, so a DC CVAC to a page L1 maps read-only took a permission
///   fault a clean never takes);
/// - any other data abort is a write exactly when WnR = 1.
pub const fn abort_access(esr: u64, spsr: u64) -> ipc::AccessKind {
    let cache_maintenance = esr & ESR_CM != 0;
    if esr & ESR_S1PTW != 0 {
        let permission_fault = esr & 0x3c == 0x0c;
        if esr & ESR_WNR != 0 && (!cache_maintenance || permission_fault) {
            ipc::AccessKind::Write
        } else {
            ipc::AccessKind::Read
        }
    } else if (esr >> 26) & 0x3f == 0x20 {
        if el(spsr) == 0 {
            ipc::AccessKind::ExecuteEl0
        } else {
            ipc::AccessKind::Execute
        }
    } else if cache_maintenance {
        if el(spsr) == 0 {
            ipc::AccessKind::CacheMaintenanceEl0
        } else {
            ipc::AccessKind::CacheMaintenance
        }
    } else if esr & ESR_WNR != 0 {
        ipc::AccessKind::Write
    } else {
        ipc::AccessKind::Read
    }
}

/// The synchronous external abort for L2's access with stage-2 abort
/// syndrome `esr`, as taken to EL2 from L2: EC (0x20/0x24) and IL kept,
/// FSC 0b010000, WnR for a data write not on a walk, and for a cache
/// maintenance instruction CM = 1 with WnR = 1 (ESR_ELx ISS: a cache
/// maintenance abort reports WnR 1; review 24 N6). For an access on
/// L2's stage-1 walk (S1PTW) it is reported as not on a walk with WnR 0,
/// the service's own deviation (shadow-mmu `external_abort`): the walk
/// level an FSC 0b0101LL would need is not known here.
pub const fn external_abort_syndrome(esr: u64) -> u64 {
    const EC_IL: u64 = 0x3f << 26 | 1 << 25;
    let data = (esr >> 26) & 0x3f == 0x24;
    let on_access = data && esr & ESR_S1PTW == 0;
    let cm_wnr = if on_access && esr & ESR_CM != 0 {
        ESR_CM | ESR_WNR
    } else if on_access {
        esr & ESR_WNR
    } else {
        0
    };
    (esr & EC_IL) | cm_wnr | 0x10
}

/// Whether L1 takes L2's synchronous external aborts itself: its virtual
/// HCR_EL2.TEA, which is RES0 (so ignored) unless L1 is shown FEAT_RAS
/// (ID_AA64PFR0_EL1.RAS in `pfr0_shown`, bits \[31:28\]; review 24 N7),
/// or its TGE, which takes every exception for EL1 to EL2 (L1's own EL0
/// under [`runs_el0_with_tge`]: the EL1 it would go to is L1's).
pub const fn l1_routes_external_aborts(virtual_hcr: u64, pfr0_shown: u64) -> bool {
    virtual_hcr & super::hcr::TGE != 0
        || (virtual_hcr & super::hcr::TEA != 0 && (pfr0_shown >> 28) & 0xf != 0)
}
