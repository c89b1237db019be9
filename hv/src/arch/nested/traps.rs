//! L1's EL2 trap controls on the machine (`hv.nested=traps`; the rules
//! are `crate::nested::traps`).
//!
//! - CPTR_EL2 and MDCR_EL2 have no VNCR slot: L1's MSR/MRS of them trap
//!   (EC 0x18, op1 4) and hv keeps L1's values in its `Vcpu`
//!   ([`L1TrapControls`]). A VHE L1's MSR/MRS of CPACR_EL1, which at its
//!   EL2 with E2H = 1 is CPTR_EL2, would reach the hardware CPACR_EL1
//!   (NV1 = 0), which has no TAM or TCPAC: hv runs a VHE L1 with the
//!   hardware CPTR_EL2.TCPAC set, so they trap too ([`l1_access`]).
//! - While L1 runs: the hardware CPTR_EL2 and MDCR_EL2 are hv's own (with
//!   TCPAC for a VHE L1), and the hardware CPACR_EL1 traps L1's own FP/SIMD,
//!   SVE, SME and trace use as L1's CPTR_EL2 says for EL2
//!   (`L1TrapControls::l1_hardware_cpacr`); the hardware takes those to
//!   L1's own vector.
//! - While L2 runs: hv's own values with L1's traps added ([`enter_l2`]);
//!   L2's trapped accesses come back to hv, which forwards them to L1
//!   (`l2_exit`), and TCR2_EL1/SCTLR2_EL1, which hv's HCRX_EL2 traps for
//!   itself, are UNDEFINED for L2 ([`undefined_for_l2`]).
//! - HCRX_EL2 for L1 and L2 is the ordinary guest's without TCR2En and
//!   SCTLR2En ([`start_l1`]); L1's own HCRX_EL2 (a VNCR slot) holds only
//!   what hv honours, nothing (no FEAT_HCX is shown).

use super::{
    instruction_length, read_sysreg, write_sysreg, GuestFrame, L1Vel2Mode, Nested, SysRegAccess,
    Vcpu,
};
use crate::inject::{undefined_syndrome, TargetEl1};
use crate::nested::entry::Vel2Target;
use crate::nested::traps::{
    hidden_trace_filter_trap, is_cpacr_el1, is_cptr_el2, is_mdcr_el2, l1_hardware_cptr,
    l1_hardware_mdcr, l1_hcrx, l2_hardware_cptr, l2_hardware_mdcr, mdcr, nested_fine_grained_traps,
    nested_hardware_hcrx, CptrLayout, L1TrapControls, ShownFeatures,
};
use crate::nested::vncr::HCRX_EL2;
use crate::println;
use crate::sysregs::{self, CpuFeatures};

/// A deliberately broken hv (the `traps-no-*` twins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TrapDefect {
    None,
    /// L1's CPTR_EL2 is kept but never added to L2's hardware CPTR_EL2.
    NoCptrForL2,
    /// L1's MDCR_EL2 is kept but never added to L2's hardware MDCR_EL2.
    NoMdcrForL2,
    /// L1's CPTR_EL2 is kept but never applied to L1 itself at EL2 (the
    /// hardware CPACR_EL1 keeps L1's reset value).
    NoCptrAtEl2,
    /// L1's MDCR_EL2.HPME is given to L2's hardware MDCR_EL2 (review 39
    /// R39-1's hv: L1's EL2 counters count hv's handling of L2's exits).
    HpmeForL2,
    /// An E2H = 1 enable field L1 sets to 0b01 (trap EL0 only) reaches the
    /// hardware CPACR_EL1 as 0b11: L1's host EL0 is never trapped.
    NoHostEl0Trap,
}

/// What the trap controls need, fixed at set-up.
#[derive(Clone, Copy, Debug)]
pub(super) struct TrapSetup {
    /// hv's own CPTR_EL2, MDCR_EL2 and HCRX_EL2 (`sysregs`, as for an
    /// ordinary guest; HCRX None without FEAT_HCX).
    hv_cptr: u64,
    hv_mdcr: u64,
    hv_hcrx: Option<u64>,
    /// MDCR_EL2.TTRF where the CPU has FEAT_TRF, which L1 is not shown:
    /// TRFCR_EL1 traps for L1 and L2 (`hidden_trace_filter_trap`).
    trace_filter_trap: u64,
    /// With FEAT_FGT: HFGITR_EL2, HDFGRTR_EL2, HDFGWTR_EL2 for L1 and L2
    /// (hv's without the BRBE bits: `nested_fine_grained_traps`).
    fine_grained_traps: Option<[u64; 3]>,
    /// What L1 is shown of the features they control.
    features: ShownFeatures,
    layout: CptrLayout,
    defect: TrapDefect,
}

impl TrapSetup {
    /// For an L1 in `mode` shown `pfr0`, `pfr1`, `dfr0`, `mmfr1`, on a CPU
    /// with `features`.
    pub(super) fn new(
        features: &CpuFeatures,
        mode: L1Vel2Mode,
        shown: [u64; 4],
        defect: TrapDefect,
    ) -> TrapSetup {
        let pmcr = read_sysreg!("pmcr_el0");
        let [pfr0, pfr1, dfr0, mmfr1] = shown;
        TrapSetup {
            hv_cptr: sysregs::cptr_el2(features),
            hv_mdcr: sysregs::mdcr_el2(features, pmcr),
            hv_hcrx: features.has_hcx().then(|| sysregs::hcrx_el2(features)),
            trace_filter_trap: hidden_trace_filter_trap(features.id_aa64dfr0),
            fine_grained_traps: features.has_fgt().then(|| {
                nested_fine_grained_traps([
                    sysregs::hfgitr_el2(features),
                    sysregs::hdfgrtr_el2(features),
                    sysregs::hdfgwtr_el2(features),
                ])
            }),
            features: ShownFeatures::from_id_registers(pfr0, pfr1, dfr0, mmfr1, pmcr),
            layout: match mode {
                L1Vel2Mode::Vhe => CptrLayout::Vhe,
                L1Vel2Mode::NonVhe => CptrLayout::Nvhe,
            },
            defect,
        }
    }

    /// L1's controls at reset.
    pub(super) fn reset(&self) -> L1TrapControls {
        L1TrapControls::reset(self.layout, self.features)
    }
}

/// On each vCPU's CPU before L1's first instruction: HCRX_EL2 without the
/// enables of state hv does not switch, the hardware CPACR_EL1 of L1's
/// reset CPTR_EL2 (nothing trapped), and the hardware MDSCR_EL1 L1 runs
/// with, 0 (`El1Register::Mdscr`: L1's own accesses go to the VNCR page).
pub(super) fn start_l1(nested: &Nested) {
    write_sysreg!("mdscr_el1", 0);
    if let Some(hcrx) = nested.traps.hv_hcrx {
        write_sysreg!("s3_4_c1_c2_2", nested_hardware_hcrx(hcrx)); // HCRX_EL2
    }
    write_sysreg!("cpacr_el1", nested.traps.reset().l1_hardware_cpacr());
    if let Some([hfgitr, hdfgrtr, hdfgwtr]) = nested.traps.fine_grained_traps {
        write_sysreg!("s3_4_c1_c1_6", hfgitr); // HFGITR_EL2
        write_sysreg!("s3_4_c3_c1_4", hdfgrtr); // HDFGRTR_EL2
        write_sysreg!("s3_4_c3_c1_5", hdfgwtr); // HDFGWTR_EL2
    }
}

/// The hardware CPTR_EL2 and MDCR_EL2 while L1 runs (hv's own, without
/// the Profiling and Trace Buffers L1 is not shown).
pub(super) fn enter_l1(nested: &Nested) {
    let t = &nested.traps;
    write_sysreg!("cptr_el2", l1_hardware_cptr(t.hv_cptr, t.layout));
    write_sysreg!(
        "mdcr_el2",
        l1_hardware_mdcr(t.hv_mdcr) | t.trace_filter_trap
    );
}

/// The hardware CPTR_EL2 and MDCR_EL2 for L2: hv's own with L1's traps.
pub(super) fn enter_l2(nested: &Nested, vcpu: &Vcpu) {
    let t = &nested.traps;
    let cptr = match t.defect {
        TrapDefect::NoCptrForL2 => t.hv_cptr,
        _ => l2_hardware_cptr(t.hv_cptr, &vcpu.traps),
    };
    let mdcr = match t.defect {
        TrapDefect::NoMdcrForL2 => t.hv_mdcr,
        TrapDefect::HpmeForL2 => {
            l2_hardware_mdcr(t.hv_mdcr, &vcpu.traps) | (vcpu.traps.mdcr & mdcr::HPME)
        }
        _ => l2_hardware_mdcr(t.hv_mdcr, &vcpu.traps),
    };
    write_sysreg!("cptr_el2", cptr);
    write_sysreg!("mdcr_el2", mdcr | t.trace_filter_trap);
}

/// At each of L1's exits: its HCRX_EL2 slot holds what hv applies.
pub(super) fn l1_exited(vcpu: &Vcpu) {
    let written = vcpu.vncr.get(HCRX_EL2);
    vcpu.vncr.set(HCRX_EL2, l1_hcrx(written));
}

/// What PSTATE on an entry to L1's virtual EL2 follows, with L1's regime
/// in the hardware EL1 registers: L1's shown features (no GCS), its
/// SCTLR_EL2's DSSBS and SPINTMASK (the hardware SCTLR_EL1 carries them
/// for both kinds of L1, `el2_regime`), its SPAN as a VHE L1 wrote it (the
/// hardware's is L1's only in host mode) and its host mode (virtual
/// HCR_EL2.E2H = TGE = 1; review 39 R39-4): hv's injected entries set PAN
/// as the pseudocode does. The entries the hardware takes to L1 itself
/// follow the hardware SPAN, converted again at L1's exits
/// (`el2_regime::sctlr_el1_for_vhe_vel2`, `mmu::follow_host_mode`).
pub(super) fn vel2_target(nested: &Nested, vcpu: &Vcpu) -> Vel2Target {
    let el1 = el1_target(nested);
    let l1_sctlr_el2 = match nested.mode {
        L1Vel2Mode::Vhe => vcpu.vhe_regime.sctlr,
        L1Vel2Mode::NonVhe => el1.sctlr,
    };
    Vel2Target::new(
        el1.features,
        el1.sctlr,
        el1.gcscr,
        l1_sctlr_el2,
        vcpu.vncr.hcr(),
    )
}

/// An Undefined Instruction exception at L2's EL1 (L2's registers in the
/// hardware).
pub(super) fn undefined_for_l2(nested: &Nested, frame: &mut GuestFrame) {
    super::super::inject_into_el1(frame, el1_target(nested), undefined_syndrome(), None);
}

/// The hardware EL1 as an exception target for L1 or L2: without FEAT_GCS,
/// which L1 is not shown and HCRX_EL2.GCSEn 0 disables for both
/// ([`start_l1`]), so no entry sets PSTATE.EXLOCK from a GCSCR_EL1 that
/// neither of them owns (review 39 R39-2).
pub(super) fn el1_target(nested: &Nested) -> TargetEl1 {
    let mut target = super::super::hardware_el1_target(&nested.features);
    target.features.gcs = false;
    target.gcscr = 0;
    target
}

/// L1's trapped access to CPTR_EL2 or MDCR_EL2 (either kind of L1), or to
/// CPACR_EL1 (a VHE L1: its CPTR_EL2, trapped by TCPAC; checked on QEMU
/// 10, where a VHE L1's CPACR_EL12, L2's register, goes to the VNCR page
/// without a trap). True when handled.
pub(super) fn l1_access(
    nested: &Nested,
    vcpu: &mut Vcpu,
    frame: &mut GuestFrame,
    access: SysRegAccess,
) -> bool {
    let vhe = nested.mode == L1Vel2Mode::Vhe;
    let (kind, name) = if is_cptr_el2(&access) {
        (0, "CPTR_EL2")
    } else if vhe && is_cpacr_el1(&access) {
        (
            1,
            "CPACR_EL1 (its CPTR_EL2 with E2H = 1, trapped by hv's CPTR_EL2.TCPAC)",
        )
    } else if is_mdcr_el2(&access) {
        (2, "MDCR_EL2")
    } else {
        return false;
    };
    let bit = 1u8 << (kind * 2 + u8::from(access.read));
    if vcpu.traps_seen & bit == 0 {
        vcpu.traps_seen |= bit;
        println!(
            "hv: nested: L1's {} {name} traps (first time): kept by hv{}",
            if access.read { "MRS" } else { "MSR" },
            if kind == 2 {
                ", its traps added to L2's hardware MDCR_EL2"
            } else {
                ", its traps added to L2's hardware CPTR_EL2 and applied to L1 at EL2"
            }
        );
    }
    let value = frame.reg(access.rt);
    match (kind, access.read) {
        (0 | 1, true) => frame.set_reg(access.rt, vcpu.traps.cptr),
        (0 | 1, false) => {
            vcpu.traps.cptr = vcpu.traps.cptr_written(value);
            // L1 runs: the hardware CPACR_EL1 is its own.
            let applied = match nested.traps.defect {
                TrapDefect::NoCptrAtEl2 => nested.traps.reset(),
                _ => vcpu.traps,
            };
            let cpacr = match nested.traps.defect {
                // FPEN, ZEN, SMEN 0b01 made 0b11 (0b00 stays 0b00).
                TrapDefect::NoHostEl0Trap => {
                    let el0_only =
                        applied.l1_hardware_cpacr() & (0b01 << 20 | 0b01 << 16 | 0b01 << 24);
                    applied.l1_hardware_cpacr() | el0_only << 1
                }
                _ => applied.l1_hardware_cpacr(),
            };
            write_sysreg!("cpacr_el1", cpacr);
            super::cpu::isb();
        }
        (_, true) => frame.set_reg(access.rt, vcpu.traps.mdcr),
        (_, false) => vcpu.traps.mdcr = vcpu.traps.mdcr_written(value),
    }
    frame.elr += instruction_length(read_sysreg!("esr_el2"));
    true
}
