//! Hardware TLB maintenance for the shadow stage 2s (the service's
//! `TlbMaintenance`), shared by `hv.nested` and `hv.selftest=shadow`, and
//! hv's own stage-1 translation check of the frames it hands the service.
//!
//! [`HwTlb`] is run by whichever CPU changes a shadow (the service CPU, or
//! the vCPU's with the service inline): the shadow's VMID goes into
//! VTTBR_EL2 (the EL1&0 TLBIs act on the VMID there), then `DSB ISHST;
//! TLBI IPAS2E1IS` per page (`VMALLS12E1IS` beyond [`MAX_PAGE_TLBIS`]);
//! `DSB ISH; TLBI VMALLE1IS; DSB ISH` (IPAS2E1IS leaves the combined stage
//! 1+2 entries, which VMALLE1IS removes, as Linux's
//! `__kvm_tlb_flush_vmid_ipa` does); ISB; then the old VTTBR_EL2 back.
//! [`TlbDefect`] breaks it for the self-test's failure modes.

use super::cpu::{self, read_sysreg, write_sysreg};
use crate::shadow_selftest::backend::VmidTlbs;
use shadow_mmu::shadow_table::TlbMaintenance;

/// Pages one range invalidation names one by one; a longer range is a
/// whole-VMID invalidation (as Linux's `__kvm_tlb_flush_vmid_range` falls
/// back to one beyond a table's worth).
pub const MAX_PAGE_TLBIS: u64 = 64;

/// What the TLB maintenance leaves out (the self-test's failure modes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbDefect {
    /// Nothing: the maintenance the service asks for.
    None,
    /// Every TLBI (`shadow-no-tlbi`).
    NoTlbi,
    /// The `TLBI VMALLE1IS` after the IPAS2E1ISs (`shadow-no-vmalle1`).
    NoVmalle1,
    /// The `TLBI IPAS2E1IS`s, VMALLE1IS kept (`shadow-no-ipas2e1is`).
    NoIpas2e1is,
}

/// TLB maintenance for one shadow VMID (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct HwTlb {
    vmid: u16,
    defect: TlbDefect,
}

/// [`HwTlb`]s for the service's backend, one per shadow VMID.
#[derive(Clone, Copy, Debug)]
pub struct HwTlbs {
    defect: TlbDefect,
}

impl HwTlbs {
    /// TLB maintenance leaving out what `defect` says.
    pub const fn new(defect: TlbDefect) -> HwTlbs {
        HwTlbs { defect }
    }
}

impl VmidTlbs for HwTlbs {
    type Tlb = HwTlb;
    fn for_vmid(&self, vmid: u16) -> HwTlb {
        HwTlb {
            vmid,
            defect: self.defect,
        }
    }
}

/// Runs `f` with VMID `vmid` in VTTBR_EL2 (the VMID TLBI IPAS2E1IS,
/// VMALLE1IS and VMALLS12E1IS act on), then puts the old value back.
/// Interrupts are masked at EL2 (hv never unmasks them), so nothing else
/// runs on this PE in between, and the PE runs no guest meanwhile.
pub fn with_vmid(vmid: u16, f: impl FnOnce()) {
    let saved = read_sysreg!("vttbr_el2");
    write_sysreg!("vttbr_el2", u64::from(vmid) << 48);
    cpu::isb();
    f();
    write_sysreg!("vttbr_el2", saved);
    cpu::isb();
}

impl TlbMaintenance for HwTlb {
    fn invalidate_range(&self, l2_ipa: u64, len: u64) {
        if self.defect == TlbDefect::NoTlbi {
            return;
        }
        let first = l2_ipa >> 12;
        let last = l2_ipa.saturating_add(len.max(1) - 1) >> 12;
        if last - first >= MAX_PAGE_TLBIS {
            return self.invalidate_all();
        }
        with_vmid(self.vmid, || {
            // SAFETY: barrier: the descriptor stores before the TLBIs.
            unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) };
            for page in (first..=last).filter(|_| self.defect != TlbDefect::NoIpas2e1is) {
                // Xt[35:0] = IPA[47:12] (the shadow IPA has 48 bits), TTL 0.
                // SAFETY: invalidates stage-2 entries of this VMID only.
                unsafe {
                    core::arch::asm!("tlbi ipas2e1is, {}", in(reg) page & 0xf_ffff_ffff, options(nostack, preserves_flags))
                };
            }
            if self.defect == TlbDefect::NoVmalle1 {
                // SAFETY: completes the IPAS2E1ISs on every PE of the
                // Inner Shareable domain (the failure mode stops here).
                unsafe { core::arch::asm!("dsb ish", "isb", options(nostack, preserves_flags)) };
                return;
            }
            // SAFETY: completes the IPAS2E1ISs, then drops the combined
            // stage 1+2 entries of this VMID (which IPAS2E1IS leaves) and
            // completes that on every PE of the Inner Shareable domain.
            unsafe {
                core::arch::asm!(
                    "dsb ish",
                    "tlbi vmalle1is",
                    "dsb ish",
                    "isb",
                    options(nostack, preserves_flags)
                )
            };
        });
    }

    fn invalidate_all(&self) {
        if self.defect == TlbDefect::NoTlbi {
            return;
        }
        with_vmid(self.vmid, || {
            // SAFETY: drops every stage 1 and 2 entry of this VMID on every
            // PE of the Inner Shareable domain, after the descriptor stores.
            unsafe {
                core::arch::asm!(
                    "dsb ishst",
                    "tlbi vmalls12e1is",
                    "dsb ish",
                    "isb",
                    options(nostack, preserves_flags)
                )
            };
        });
    }
}

/// hv's stage-1 translation of `va` (`AT S1E2R`), None if unmapped.
/// PAR_EL1 is restored: it is also a guest's (a nested L1's, whose AT
/// results hv writes there, is trapped in CPU_ON when hv calls this;
/// review 42 R42-2).
pub fn stage1_pa(va: u64) -> Option<u64> {
    let saved = read_sysreg!("par_el1");
    let par: u64;
    // SAFETY: an address translation for a read at EL2; it writes only
    // PAR_EL1, restored below.
    unsafe {
        core::arch::asm!(
            "at s1e2r, {va}",
            "isb",
            "mrs {par}, par_el1",
            va = in(reg) va,
            par = out(reg) par,
            options(nostack, preserves_flags)
        )
    };
    write_sysreg!("par_el1", saved);
    (par & 1 == 0).then_some((par & 0x000f_ffff_ffff_f000) | (va & 0xfff))
}
