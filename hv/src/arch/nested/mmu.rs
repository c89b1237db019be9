//! A non-VHE L1's own EL2 stage 1 on the machine (`hv.nested=mmu`; the
//! portable rules are `crate::nested::el2_regime`).
//!
//! L1 runs at hardware EL1 with HCR_EL2.{NV, NV1, NV2}: its MSR/MRS of
//! SCTLR_EL2, TCR_EL2, TTBR0_EL2, MAIR_EL2 and AMAIR_EL2 trap (EC 0x18)
//! and land here; hv keeps the values L1 wrote (what its MRS reads) and
//! writes their conversion to the hardware SCTLR_EL1, TCR_EL1, TTBR0_EL1,
//! MAIR_EL1 and AMAIR_EL1, which translate L1's code and data; TTBR1_EL1
//! is 0 and never walked (TCR_EL1.EPD1). NV1 makes the hardware read L1's
//! descriptors in the EL2 format, and sends L1's EL1 register accesses
//! (which mean L2's registers for an E2H = 0 L1) to the VNCR page.
//!
//! A VHE L1 (`hv.nested=mmu-vhe`, E2H = 1, NV1 = 0) reaches its EL2&0
//! registers through the EL1 encodings, which are the hardware EL1
//! registers in the same format; HCR_EL2.{TVM, TRVM} trap those accesses
//! ([`vhe_el2_regime_access`]) so hv sees SCTLR.M and converts SCTLR and
//! TCR (`el2_regime::VheRegime`).
//!
//! The switch (`arch::nested`): an ERET into L2 saves the hardware EL1
//! registers (L1's converted regime) and loads L2's from the VNCR page; an
//! exception into L1 restores them, and HCR_EL2.DC follows L1's
//! SCTLR_EL2.M ([`l1_hcr`]: DC would make L1's stage 1 behave as off).
//! No TLB maintenance is needed at the switch: L1 runs under its own VMID
//! (`L1_HOST_VMID`), L2 under a shadow VMID or its vCPU's direct VMID, so
//! their stage-1 entries are tagged apart. L1's own TLBI ALLE2/VAE2/...
//! (trapped, EC 0x18, op1 4) drop every stage-1 entry of L1's VMID
//! (`arch::nested::l1_tlbi`), a superset of what each covers.
//!
//! An L1 stage-1 fault at its virtual EL2 never reaches hv: the hardware
//! takes it to EL1, at the hardware VBAR_EL1 (L1's VBAR_EL2, a VA in L1's
//! regime), with ESR_EL1/FAR_EL1, which L1 reads as ESR_EL2/FAR_EL2 (NV2
//! redirects those to the EL1 registers).

use super::at::L1Ram;
use super::{
    cpu, instruction_length, read_sysreg, undefined_for_l1, write_sysreg, GuestFrame, L1Vel2Mode,
    Nested, NonVheRegime, SysRegAccess, Vcpu,
};
use crate::inject::{external_walk_abort_syndrome, WalkedFor};
use crate::nested::el2_regime::{
    sctlr_el1_for_vhe_vel2, tcr_el1_for_vhe_vel2, tcr_el2, tvm_register, vhe_only_el2_register,
    RegimeChange, Vel2Stage1Register, VheRegime,
};
use crate::println;
use crate::s1walk::{walk_abort_level_in, Stage1Regs, TablePageChanging};

/// `mmu-no-t0sz`'s defect: the hardware gets T0SZ 16 (a 48-bit VA range)
/// whatever L1's TCR_EL2 says.
fn defective_t0sz(nested: &Nested, tcr_el1: u64) -> u64 {
    if nested.ignore_t0sz {
        (tcr_el1 & !tcr_el2::T0SZ) | 16
    } else {
        tcr_el1
    }
}

/// Writes L1's reset regime to the hardware EL1 registers: a non-VHE
/// L1's `regime` converted, or a VHE L1's [`VheRegime::RESET`] SCTLR and
/// TCR (its other EL2&0 registers are the hardware ones as they are).
pub(super) fn load_l1_regime(nested: &Nested, regime: &NonVheRegime) {
    if nested.mode == L1Vel2Mode::Vhe {
        write_sysreg!(
            "tcr_el1",
            tcr_el1_for_vhe_vel2(VheRegime::RESET.tcr, &nested.stage1)
        );
        // Out of reset L1's virtual HCR_EL2.TGE is 0 (the VNCR page is
        // zeroed): not host mode.
        write_sysreg!(
            "sctlr_el1",
            sctlr_el1_for_vhe_vel2(VheRegime::RESET.sctlr, false)
        );
        cpu::isb();
        return;
    }
    let hw = regime.hardware(&nested.stage1);
    // The hardware CPACR_EL1, which decides whether L1's own FP/SIMD use
    // traps, follows L1's CPTR_EL2 (`arch::nested::traps`; review 34
    // R34-1).
    write_sysreg!("mair_el1", hw.mair);
    write_sysreg!("amair_el1", hw.amair);
    write_sysreg!("tcr_el1", defective_t0sz(nested, hw.tcr));
    write_sysreg!("ttbr0_el1", hw.ttbr0);
    write_sysreg!("ttbr1_el1", hw.ttbr1);
    write_sysreg!("sctlr_el1", hw.sctlr);
    cpu::isb();
}

/// L1's hardware HCR_EL2 now: its mode's, with DC only while L1's EL2
/// stage 1 is off.
pub(super) fn l1_hcr(nested: &Nested, vcpu: &Vcpu) -> u64 {
    let mmu_on = match nested.mode {
        L1Vel2Mode::NonVhe => vcpu.regime.mmu_on(),
        L1Vel2Mode::Vhe => vcpu.vhe_regime.mmu_on(),
    };
    nested.mode.hardware_hcr(mmu_on && !nested.keep_dc)
}

/// After L1's SCTLR_EL2.M changed: the hardware HCR_EL2.DC (L1 runs, so
/// its HCR_EL2 is the hardware one) as [`l1_hcr`] says, every other bit
/// left as it is. HCR_EL2.DC is permitted to be cached in a TLB, and
/// SCTLR_EL2.M, the bit L1 changed, is not, so L1 owes no TLBI for it:
/// hv drops the entries of L1's VMID (the current one) made under the
/// old DC itself (review 34 R34-3).
fn follow_dc(nested: &Nested, vcpu: &Vcpu) {
    let dc = l1_hcr(nested, vcpu) & super::hcr::DC;
    let hcr = read_sysreg!("hcr_el2");
    if hcr & super::hcr::DC == dc {
        return;
    }
    write_sysreg!("hcr_el2", (hcr & !super::hcr::DC) | dc);
    cpu::isb();
    // SAFETY: TLB maintenance of the current VMID's stage-1 entries on
    // this PE (L1's, which runs here); it touches no memory hv relies on.
    unsafe {
        core::arch::asm!(
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// Whether a VHE L1's virtual HCR_EL2.{E2H, TGE} are {1, 1} (its EL2 in
/// host mode).
fn in_host_mode(vcpu: &Vcpu) -> bool {
    let host = super::hcr::E2H | super::hcr::TGE;
    vcpu.vncr.hcr() & host == host
}

/// At a synchronous exit of a VHE L1, before it is handled (its hardware
/// EL1 registers are its own): the hardware SCTLR_EL1 converted again if
/// L1 entered or left host mode since the last conversion (its TGE is a VNCR word, written without a
/// trap), so that PAN on exceptions from its host EL0 and its EL2 follows
/// its SCTLR_EL2.SPAN as the architecture has it there
/// (`sctlr_el1_for_vhe_vel2`).
pub(super) fn follow_host_mode(nested: &Nested, vcpu: &mut Vcpu) {
    if nested.mode != L1Vel2Mode::Vhe {
        return;
    }
    // `host-el0-no-span`: converted as if never in host mode;
    // `host-el0-no-span-back`: not converted again when L1 leaves it.
    let host = in_host_mode(vcpu) && !nested.ignore_host_span;
    if host != vcpu.host_mode && (host || !nested.keep_host_span) {
        vcpu.host_mode = host;
        write_sysreg!(
            "sctlr_el1",
            sctlr_el1_for_vhe_vel2(vcpu.vhe_regime.sctlr, host)
        );
        cpu::isb();
    }
}

/// A non-VHE L1's trapped MRS/MSR with op0 3, op1 4: its EL2 stage-1
/// registers (emulated, true), TTBR1_EL2 and CONTEXTIDR_EL2 (FEAT_VHE
/// only: UNDEFINED, true), anything else (false: the caller's).
pub(super) fn l1_el2_stage1_access(
    nested: &Nested,
    vcpu: &mut Vcpu,
    frame: &mut GuestFrame,
    access: SysRegAccess,
) -> bool {
    let (crn, crm, op2) = (access.crn, access.crm, access.op2);
    if vhe_only_el2_register(crn, crm, op2) {
        undefined_for_l1(vcpu, frame);
        return true;
    }
    let Some(register) = Vel2Stage1Register::from_encoding(crn, crm, op2) else {
        return false;
    };
    let bit = 1u64 << (register as u32 * 2 + u32::from(access.read));
    if vcpu.counts.vel2_stage1_seen & bit == 0 {
        vcpu.counts.vel2_stage1_seen |= bit;
        println!(
            "hv: nested: L1's {} {register:?}_EL2 traps (first time): its E2H = 0 EL2 regime, converted onto the hardware EL1 one",
            if access.read { "MRS" } else { "MSR" },
        );
    }
    if access.read {
        frame.set_reg(access.rt, vcpu.regime.read(register));
    } else {
        let was_on = vcpu.regime.mmu_on();
        match vcpu
            .regime
            .write(register, frame.reg(access.rt), &nested.stage1)
        {
            RegimeChange::Sctlr(v) => write_sysreg!("sctlr_el1", v),
            RegimeChange::Tcr(v) => write_sysreg!("tcr_el1", defective_t0sz(nested, v)),
            RegimeChange::Ttbr0(v) => write_sysreg!("ttbr0_el1", v),
            RegimeChange::Mair(v) => write_sysreg!("mair_el1", v),
            RegimeChange::Amair(v) => write_sysreg!("amair_el1", v),
        }
        if vcpu.regime.mmu_on() != was_on {
            follow_dc(nested, vcpu);
        }
        // The ERET back to L1 is context synchronizing; the ISB orders
        // the writes before it for hv's own reads too.
        cpu::isb();
    }
    frame.elr += instruction_length(read_sysreg!("esr_el2"));
    true
}

/// A VHE L1's trapped access (HCR_EL2.{TVM, TRVM}) to one of its EL2&0
/// registers through the EL1 encoding (op1 0, E2H = 1), or to SCTLR_EL2
/// or TCR_EL2 through the EL2 encoding (op1 4): SCTLR and TCR are kept as
/// written ([`VheRegime`]) and converted for the hardware (DC follows
/// SCTLR.M); the rest are the hardware registers. True when handled.
pub(super) fn vhe_el2_regime_access(
    nested: &Nested,
    vcpu: &mut Vcpu,
    frame: &mut GuestFrame,
    access: SysRegAccess,
) -> bool {
    let key = (access.crn, access.crm, access.op2);
    let handled = match access.op1 {
        0 => tvm_register(key.0, key.1, key.2),
        4 => matches!(key, (1, 0, 0) | (2, 0, 2)),
        _ => false,
    };
    if !handled || access.op0 != 3 {
        return false;
    }
    let bit = 1u64 << (32 + u32::from(access.op1 == 4) * 2 + u32::from(access.read));
    if vcpu.counts.vel2_stage1_seen & bit == 0 {
        vcpu.counts.vel2_stage1_seen |= bit;
        println!(
            "hv: nested: L1's (E2H = 1) {access} traps (HCR_EL2.{}, first time of its kind): its EL2&0 register, {}",
            if access.read { "TRVM" } else { "TVM" },
            if matches!(key, (1, 0, 0) | (2, 0, 2)) {
                "kept as written and converted onto the hardware EL1 one"
            } else {
                "the hardware EL1 one"
            }
        );
    }
    if access.read {
        let value = match key {
            (1, 0, 0) => vcpu.vhe_regime.sctlr,
            (2, 0, 2) => vcpu.vhe_regime.tcr,
            (2, 0, 0) => read_sysreg!("ttbr0_el1"),
            (2, 0, 1) => read_sysreg!("ttbr1_el1"),
            (5, 1, 0) => read_sysreg!("afsr0_el1"),
            (5, 1, 1) => read_sysreg!("afsr1_el1"),
            (5, 2, 0) => read_sysreg!("esr_el1"),
            (6, 0, 0) => read_sysreg!("far_el1"),
            (10, 2, 0) => read_sysreg!("mair_el1"),
            (10, 3, 0) => read_sysreg!("amair_el1"),
            _ => read_sysreg!("contextidr_el1"),
        };
        frame.set_reg(access.rt, value);
    } else {
        let value = frame.reg(access.rt);
        match key {
            (1, 0, 0) => {
                let was_on = vcpu.vhe_regime.mmu_on();
                vcpu.vhe_regime.sctlr = value;
                // `vcpu.host_mode`: `follow_host_mode` ran at this exit.
                write_sysreg!("sctlr_el1", sctlr_el1_for_vhe_vel2(value, vcpu.host_mode));
                if vcpu.vhe_regime.mmu_on() != was_on {
                    follow_dc(nested, vcpu);
                }
            }
            (2, 0, 2) => {
                vcpu.vhe_regime.tcr = value;
                write_sysreg!("tcr_el1", tcr_el1_for_vhe_vel2(value, &nested.stage1));
            }
            (2, 0, 0) => write_sysreg!("ttbr0_el1", value),
            (2, 0, 1) => write_sysreg!("ttbr1_el1", value),
            (5, 1, 0) => write_sysreg!("afsr0_el1", value),
            (5, 1, 1) => write_sysreg!("afsr1_el1", value),
            (5, 2, 0) => write_sysreg!("esr_el1", value),
            (6, 0, 0) => write_sysreg!("far_el1", value),
            (10, 2, 0) => write_sysreg!("mair_el1", value),
            (10, 3, 0) => write_sysreg!("amair_el1", value),
            _ => write_sysreg!("contextidr_el1", value),
        }
        cpu::isb();
    }
    frame.elr += instruction_length(read_sysreg!("esr_el2"));
    true
}

/// The syndrome for L1 when a stage-2 abort (`esr`, EC 0x20/0x24 from L1)
/// is on L1's own stage-1 table walk (S1PTW) that read an L1 IPA outside
/// its RAM: a synchronous External abort on the walk, FSC 0x14 + the
/// level (AArch64.S1Walk), found by walking L1's tables as the hardware
/// did: the hardware EL1 registers are L1's regime, converted, and L1's
/// memory is read through L0's map of it (`crate::s1walk`). None when the
/// abort is not on a walk, or the walk no longer reaches the faulting page
/// (L1 changed its tables since): the caller's plain external abort.
/// `Err` when a read of L1's tables met hv's own break-before-make of
/// the table page (`L1Memory`'s `HostChanging`, the decision
/// `L0Stage2::unbacked` makes): hv's transient fault, not L1's, so the
/// caller resumes L1, whose walk runs again.
pub(super) fn l1_walk_abort(
    nested: &Nested,
    esr: u64,
    pstate: u64,
) -> Result<Option<u64>, TablePageChanging> {
    const S1PTW: u64 = 1 << 7;
    const WNR: u64 = 1 << 6;
    const CM: u64 = 1 << 8;
    if esr & S1PTW == 0 {
        return Ok(None);
    }
    let regs = Stage1Regs {
        sctlr: read_sysreg!("sctlr_el1"),
        tcr: read_sysreg!("tcr_el1"),
        // hv runs L1 with HCRX_EL2.TCR2En 0 (`nested::traps`), which
        // makes TCR2_EL1 0 for its EL1&0 regime whatever it holds.
        tcr2: 0,
        ttbr0: read_sysreg!("ttbr0_el1"),
        ttbr1: read_sysreg!("ttbr1_el1"),
        // The hardware walk being modelled is bounded by the PE's own.
        id_aa64mmfr2: read_sysreg!("id_aa64mmfr2_el1"),
    };
    let fault_page = crate::esr::hpfar_ipa_page(read_sysreg!("hpfar_el2"));
    let va = read_sysreg!("far_el2");
    // L1's walks may be Non-cacheable: `L1Ram` drops any line hv holds
    // first, as for a plain guest's walk abort (`arch::walk_abort`).
    let Some(level) = walk_abort_level_in(&regs, va, fault_page, &L1Ram(nested))? else {
        return Ok(None);
    };
    let walked_for = if (esr >> 26) & 0x3f == 0x20 {
        WalkedFor::Fetch
    } else {
        WalkedFor::Data {
            write: esr & WNR != 0,
            cache_maintenance: esr & CM != 0,
        }
    };
    Ok(Some(external_walk_abort_syndrome(
        pstate, walked_for, level,
    )))
}
