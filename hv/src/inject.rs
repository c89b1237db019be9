//! Injecting synchronous exceptions into a guest's EL1, as the hardware
//! would take them (Arm ARM AArch64.TakeException): the return state goes to
//! ELR_EL1/SPSR_EL1, the syndrome to ESR_EL1 (and FAR_EL1), and the guest
//! resumes at the right offset of VBAR_EL1 in EL1h with DAIF masked and
//! the rest of PSTATE as the pseudocode sets it for an exception taken to
//! EL1 (`entry_pstate`: PAN, TCO, SSBS, ALLINT follow the CPU's features
//! and SCTLR_EL1).
//!
//! The EL1 registers sit behind `El1Regs` so that the same code runs against
//! the hardware in hv and against a fake in host tests. A guest hypervisor
//! (FEAT_NV2) needs the same operation aimed at its virtual EL2.

use crate::esr::{ExceptionClass, ESR_IL};
use crate::sysregs::CpuFeatures;

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
/// PSTATE.nRW in SPSR: the interrupted state was AArch32.
const PSTATE_AARCH32: u64 = 1 << 4;
const PSTATE_NZCV: u64 = 0xf << 28;
// PSTATE bits in the AArch64 SPSR layout.
pub const PSTATE_SSBS: u64 = 1 << 12;
pub const PSTATE_PAN: u64 = 1 << 22;
pub const PSTATE_DIT: u64 = 1 << 24;
pub const PSTATE_TCO: u64 = 1 << 25;
pub const PSTATE_ALLINT: u64 = 1 << 13;
pub const PSTATE_EXLOCK: u64 = 1 << 34;
/// PSTATE.DIT in the AArch32 SPSR layout (PAN and NZCV share the AArch64
/// positions).
const PSTATE_AARCH32_DIT: u64 = 1 << 21;

// SCTLR_EL1 bits that decide PSTATE on exception entry to EL1.
pub const SCTLR_SPAN: u64 = 1 << 23;
pub const SCTLR_DSSBS: u64 = 1 << 44;
pub const SCTLR_SPINTMASK: u64 = 1 << 62;
/// GCSCR_EL1.EXLOCKEN: exceptions taken from EL1 to EL1 lock ELR/SPSR.
pub const GCSCR_EXLOCKEN: u64 = 1 << 6;

/// The features whose PSTATE bits an exception entry sets or keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryFeatures {
    /// FEAT_PAN (ID_AA64MMFR1_EL1.PAN).
    pub pan: bool,
    /// FEAT_MTE (ID_AA64PFR1_EL1.MTE >= 1): PSTATE.TCO exists.
    pub mte: bool,
    /// FEAT_SSBS (ID_AA64PFR1_EL1.SSBS).
    pub ssbs: bool,
    /// FEAT_NMI (ID_AA64PFR1_EL1.NMI): PSTATE.ALLINT exists.
    pub nmi: bool,
    /// FEAT_GCS (ID_AA64PFR1_EL1.GCS): PSTATE.EXLOCK exists.
    pub gcs: bool,
}

impl From<&CpuFeatures> for EntryFeatures {
    fn from(features: &CpuFeatures) -> Self {
        Self {
            pan: features.has_pan(),
            mte: features.has_mte(),
            ssbs: features.has_ssbs(),
            nmi: features.has_nmi(),
            gcs: features.has_gcs(),
        }
    }
}

/// The EL1 an exception is taken to: its features, SCTLR_EL1 and
/// GCSCR_EL1 (0 without FEAT_GCS, where the register does not exist).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TargetEl1 {
    pub features: EntryFeatures,
    pub sctlr: u64,
    pub gcscr: u64,
}

/// PSTATE after taking an exception to EL1 from `from` (the SPSR of the
/// interrupted state, AArch64 or AArch32 layout), as AArch64.TakeException
/// sets it:
/// - EL1h, AArch64, D, A, I and F masked; IL, SS, UAO and BTYPE 0 (they
///   are left out); IT and T of an AArch32 state do not exist in AArch64;
/// - PAN keeps its value, and is set when SCTLR_EL1.SPAN is 0 (FEAT_PAN);
/// - TCO is set (FEAT_MTE): handlers start with tag checks overridden;
/// - SSBS = SCTLR_EL1.DSSBS (FEAT_SSBS);
/// - ALLINT = NOT SCTLR_EL1.SPINTMASK (FEAT_NMI);
/// - NZCV and DIT keep their values (the pseudocode does not write them);
/// - EXLOCK (FEAT_GCS, which hv enables for the guest with HCRX_EL2.GCSEn)
///   is set when taken from EL1 (to EL1, its own level) with
///   GCSCR_EL1.EXLOCKEN set (GetCurrentEXLOCKEN at EL1), else cleared.
///
/// Not modelled: FEAT_EBEP's PSTATE.PM (left 0). hv detects FEAT_EBEP
/// (`CpuFeatures::has_ebep`) and says so at boot; QEMU `-cpu max` does not
/// have it.
pub fn entry_pstate(from: u64, target: TargetEl1) -> u64 {
    let features = target.features;
    let mut pstate = PSTATE_EL1H | PSTATE_DAIF | (from & PSTATE_NZCV);
    let dit = if from & PSTATE_AARCH32 != 0 {
        from & PSTATE_AARCH32_DIT != 0
    } else {
        from & PSTATE_DIT != 0
    };
    if dit {
        pstate |= PSTATE_DIT;
    }
    if features.pan && (from & PSTATE_PAN != 0 || target.sctlr & SCTLR_SPAN == 0) {
        pstate |= PSTATE_PAN;
    }
    if features.mte {
        pstate |= PSTATE_TCO;
    }
    if features.ssbs && target.sctlr & SCTLR_DSSBS != 0 {
        pstate |= PSTATE_SSBS;
    }
    if features.nmi && target.sctlr & SCTLR_SPINTMASK == 0 {
        pstate |= PSTATE_ALLINT;
    }
    let from_el1 = from & PSTATE_AARCH32 == 0 && (from >> 2) & 3 == 1;
    if features.gcs && from_el1 && target.gcscr & GCSCR_EXLOCKEN != 0 {
        pstate |= PSTATE_EXLOCK;
    }
    pstate
}

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
    target: TargetEl1,
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
        pstate: entry_pstate(at.pstate, target),
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

/// ISS.CM: the abort came from a cache maintenance instruction.
const ISS_CM: u64 = 1 << 8;
/// ISS.WnR.
const ISS_WNR: u64 = 1 << 6;

/// The ESR_EL1 of a synchronous external abort on a data cache
/// maintenance instruction (DC by VA) at an address with nothing behind
/// it: CM = 1, and WnR = 1, which the Arm ARM gives every fault on a cache
/// maintenance instruction.
pub fn external_cache_maintenance_abort_syndrome(pstate: u64) -> u64 {
    external_data_abort_syndrome(pstate, true) | ISS_CM
}

/// The access whose stage-1 translation table walk took an external
/// abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkedFor {
    /// An instruction fetch: an instruction abort.
    Fetch,
    /// A data access: a data abort with this WnR and CM (a cache
    /// maintenance instruction, whose WnR is always 1).
    Data {
        write: bool,
        cache_maintenance: bool,
    },
}

/// The ESR_EL1 of a synchronous External abort on the guest's stage-1
/// translation table walk at `level`, as AArch64.S1Walk reports a failed
/// descriptor read: DFSC/IFSC 0x14 + level (0x13 for level -1 with
/// FEAT_LPA2, `s1walk::walk_abort_fsc`); S1PTW stays 0 (it names a stage-2
/// fault on a walk, which is hv's business, not the guest's), EA 0, FnV 0
/// (FAR_EL1 holds the VA being translated).
pub fn external_walk_abort_syndrome(pstate: u64, access: WalkedFor, level: i8) -> u64 {
    let fsc = crate::s1walk::walk_abort_fsc(level);
    match access {
        WalkedFor::Fetch => external_instruction_abort_syndrome(pstate) & !0x3f | fsc,
        WalkedFor::Data {
            write,
            cache_maintenance,
        } => {
            let mut esr = external_data_abort_syndrome(pstate, write) & !0x3f | fsc;
            if cache_maintenance {
                esr |= ISS_CM | ISS_WNR;
            }
            esr
        }
    }
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

    /// A CPU without PAN, MTE, SSBS or NMI (SCTLR_EL1 as hv first sets it).
    const NO_FEATURES: TargetEl1 = TargetEl1 {
        features: EntryFeatures {
            pan: false,
            mte: false,
            ssbs: false,
            nmi: false,
            gcs: false,
        },
        sctlr: crate::sysregs::SCTLR_EL1_MMU_OFF,
        gcscr: 0,
    };

    /// Every feature, and SCTLR_EL1 as Linux programs it with
    /// CONFIG_ARM64_PAN: SPAN clear (PAN set on entry), DSSBS clear,
    /// SPINTMASK clear.
    const LINUX: TargetEl1 = TargetEl1 {
        features: EntryFeatures {
            pan: true,
            mte: true,
            ssbs: true,
            nmi: true,
            gcs: true,
        },
        sctlr: 0x0000_0000_3445_d91d & !SCTLR_SPAN,
        gcscr: 0,
    };

    /// R9-3: with FEAT_GCS an exception taken from EL1 enters with
    /// PSTATE.EXLOCK = GCSCR_EL1.EXLOCKEN; from EL0 (or AArch32), without
    /// EXLOCKEN, or without the feature, EXLOCK is 0 (also when it was set
    /// in the interrupted state).
    #[test]
    fn entry_sets_exlock_from_el1_when_gcscr_el1_enables_it() {
        let locking = TargetEl1 {
            gcscr: GCSCR_EXLOCKEN,
            ..LINUX
        };
        let base = entry_pstate(0x3c5, LINUX);
        assert_eq!(base & PSTATE_EXLOCK, 0);
        for from_el1 in [0x3c5, 0x3c4, 0x3c5 | PSTATE_EXLOCK] {
            assert_eq!(entry_pstate(from_el1, locking), base | PSTATE_EXLOCK);
        }
        // From EL0 (AArch64 or AArch32): not the target's own level.
        assert_eq!(entry_pstate(0, locking) & PSTATE_EXLOCK, 0);
        assert_eq!(entry_pstate(0x10, locking) & PSTATE_EXLOCK, 0);
        // EXLOCKEN clear, or other GCSCR_EL1 bits only.
        let others = TargetEl1 {
            gcscr: !GCSCR_EXLOCKEN,
            ..LINUX
        };
        assert_eq!(entry_pstate(0x3c5 | PSTATE_EXLOCK, others), base);
        // No FEAT_GCS: the bit does not exist.
        let no_gcs = TargetEl1 {
            features: EntryFeatures {
                gcs: false,
                ..LINUX.features
            },
            ..locking
        };
        assert_eq!(entry_pstate(0x3c5, no_gcs) & PSTATE_EXLOCK, 0);
        // The injection path takes the same value.
        let mut el1 = FakeEl1::default();
        let at = ReturnState {
            pc: 0xffff_8000_0000_1000,
            pstate: 0x3c5,
        };
        let next = take_sync_exception(&mut el1, locking, at, undefined_syndrome(), None);
        assert_ne!(next.pstate & PSTATE_EXLOCK, 0);
    }

    #[test]
    fn entry_sets_pan_when_span_is_clear_and_keeps_it_otherwise() {
        let mut el1 = FakeEl1::default();
        let pan_only = TargetEl1 {
            features: EntryFeatures {
                pan: true,
                ..EntryFeatures::default()
            },
            sctlr: SCTLR_SPAN,
            gcscr: 0,
        };
        let from_kernel = ReturnState {
            pc: 0xffff_8000_1234_5678,
            pstate: 0x3c5 | PSTATE_PAN,
        };
        // SPAN set: PAN is kept as it was.
        let next = take_sync_exception(&mut el1, pan_only, from_kernel, undefined_syndrome(), None);
        assert_eq!(next.pstate, 0x3c5 | PSTATE_PAN);
        let from_user = ReturnState {
            pc: 0x40_0000,
            pstate: 0,
        };
        let next = take_sync_exception(&mut el1, pan_only, from_user, undefined_syndrome(), None);
        assert_eq!(next.pstate, 0x3c5, "SPAN set and PAN clear before: clear");
        // SPAN clear: PAN is set whatever it was.
        let span_clear = TargetEl1 {
            sctlr: 0,
            ..pan_only
        };
        let next = take_sync_exception(&mut el1, span_clear, from_user, undefined_syndrome(), None);
        assert_eq!(next.pstate, 0x3c5 | PSTATE_PAN);
        // Without FEAT_PAN the bit does not exist.
        let next = take_sync_exception(
            &mut el1,
            NO_FEATURES,
            from_kernel,
            undefined_syndrome(),
            None,
        );
        assert_eq!(next.pstate, 0x3c5);
    }

    #[test]
    fn entry_pstate_follows_features_and_sctlr() {
        // Linux's SCTLR_EL1 with every feature: PAN, TCO, ALLINT set; SSBS
        // clear (DSSBS clear).
        assert_eq!(
            entry_pstate(0, LINUX),
            0x3c5 | PSTATE_PAN | PSTATE_TCO | PSTATE_ALLINT
        );
        // DSSBS set: SSBS set. SPINTMASK set: ALLINT clear.
        let other = TargetEl1 {
            sctlr: SCTLR_SPAN | SCTLR_DSSBS | SCTLR_SPINTMASK,
            ..LINUX
        };
        assert_eq!(entry_pstate(0, other), 0x3c5 | PSTATE_TCO | PSTATE_SSBS);
        // The same SCTLR without the features: nothing but EL1h and DAIF.
        let featureless = TargetEl1 {
            features: EntryFeatures::default(),
            ..other
        };
        assert_eq!(entry_pstate(0, featureless), 0x3c5);
        // IL, SS, UAO and BTYPE are cleared; NZCV and DIT kept; an
        // AArch32 state's DIT (bit 21) moves to bit 24, its IT/T/GE go.
        let il_ss_uao_btype_ssbs = 1 << 20 | 1 << 21 | 1 << 23 | 3 << 10 | PSTATE_SSBS;
        let busy = 0xa << 28 | PSTATE_DIT | il_ss_uao_btype_ssbs | 0x3c5;
        assert_eq!(
            entry_pstate(busy, featureless),
            0xa << 28 | PSTATE_DIT | 0x3c5
        );
        let aarch32_user = 0x5 << 28 | 1 << 21 | 0xf << 16 | 1 << 5 | 0x10;
        assert_eq!(
            entry_pstate(aarch32_user, featureless),
            0x5 << 28 | PSTATE_DIT | 0x3c5
        );
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
        let next = take_sync_exception(&mut el1, NO_FEATURES, at, esr, Some(0xffff_0000_dead_0000));
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

    /// A walk abort names its level in the FSC (0x14 + level, 0x13 for
    /// -1), for data and instruction aborts, from EL0 and EL1; a cache
    /// maintenance instruction's abort has CM and WnR set, with or
    /// without a walk.
    #[test]
    fn walk_and_cache_maintenance_abort_syndromes() {
        let el1 = 0x3c5;
        let el0 = 0x0;
        let read = WalkedFor::Data {
            write: false,
            cache_maintenance: false,
        };
        assert_eq!(external_walk_abort_syndrome(el1, read, 0), 0x9600_0014);
        assert_eq!(external_walk_abort_syndrome(el1, read, 3), 0x9600_0017);
        assert_eq!(external_walk_abort_syndrome(el0, read, -1), 0x9200_0013);
        let write = WalkedFor::Data {
            write: true,
            cache_maintenance: false,
        };
        assert_eq!(external_walk_abort_syndrome(el1, write, 2), 0x9600_0056);
        let dc = WalkedFor::Data {
            write: false,
            cache_maintenance: true,
        };
        assert_eq!(external_walk_abort_syndrome(el0, dc, 1), 0x9200_0155);
        assert_eq!(
            external_walk_abort_syndrome(el1, WalkedFor::Fetch, 1),
            0x8600_0015
        );
        assert_eq!(
            external_walk_abort_syndrome(el0, WalkedFor::Fetch, 0),
            0x8200_0014
        );
        assert_eq!(external_cache_maintenance_abort_syndrome(el1), 0x9600_0150);
        // Not on a walk: FSC 0x10 as before.
        assert_eq!(external_data_abort_syndrome(el1, false), 0x9600_0010);
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
        let next = take_sync_exception(&mut el1, NO_FEATURES, at, undefined_syndrome(), None);
        assert_eq!(next.pc, 0x1400);
        assert_eq!(el1.esr, 0x0200_0000);
        assert_eq!(el1.far, 7, "FAR untouched without an address");
        assert_eq!(external_instruction_abort_syndrome(0), 0x8200_0010);
    }
}
