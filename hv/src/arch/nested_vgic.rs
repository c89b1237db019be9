//! The hardware side of L1's virtual GIC interface under FEAT_NV2
//! (`crate::nested::vgic` has the rules and the choices): the hardware
//! virtual interface (ICH_*_EL2) holds L1's interface for L2 while L2
//! runs and L1's own interface (what L1's ICC_* accesses reach as ICV_*,
//! with hv's list register for L1's maintenance interrupt) while L1 runs.
//!
//! Calls from `arch::nested`: [`VcpuGic::leave_l2`] first thing at every
//! exit from L2 (it gives the pINTIDs of L1's HW = 1 LRs L2 deactivated,
//! for L1's GIC model: `arch::nested_gic::deactivate`),
//! [`VcpuGic::enter_l2`] last thing before every return to L2 (also after
//! an exit hv handled itself), [`VcpuGic::l1_runs`] last
//! thing before every return to L1, [`l1_access`] for L1's trapped GIC
//! register accesses, [`maintenance_for_l1`] after an exit from L2 and
//! at L1's ERET into L2.

use super::cpu::{read_sysreg, write_sysreg};
use crate::exit::SysRegAccess;
use crate::nested::vgic::{
    deactivate_listed, eisr, l1_ich_read, l1_maintenance_lr, l1_takes_irqs_at_vel2, lr,
    maintenance_asserted, maintenance_taken_at_vel2, L1Interface, Shape, TrappedIch,
    ICC_SRE_EL2_SHOWN, L1_OWN_START, MAX_LIST_REGISTERS,
};
use crate::nested::vncr::VncrPage;

/// ICH_VTR_EL2.
fn hardware_vtr() -> u64 {
    read_sysreg!("s3_4_c12_c11_1")
}

fn read_ap0r(n: usize) -> u64 {
    match n {
        0 => read_sysreg!("s3_4_c12_c8_0"),
        1 => read_sysreg!("s3_4_c12_c8_1"),
        2 => read_sysreg!("s3_4_c12_c8_2"),
        _ => read_sysreg!("s3_4_c12_c8_3"),
    }
}

fn write_ap0r(n: usize, value: u64) {
    match n {
        0 => write_sysreg!("s3_4_c12_c8_0", value),
        1 => write_sysreg!("s3_4_c12_c8_1", value),
        2 => write_sysreg!("s3_4_c12_c8_2", value),
        _ => write_sysreg!("s3_4_c12_c8_3", value),
    }
}

fn read_ap1r(n: usize) -> u64 {
    match n {
        0 => read_sysreg!("s3_4_c12_c9_0"),
        1 => read_sysreg!("s3_4_c12_c9_1"),
        2 => read_sysreg!("s3_4_c12_c9_2"),
        _ => read_sysreg!("s3_4_c12_c9_3"),
    }
}

fn write_ap1r(n: usize, value: u64) {
    match n {
        0 => write_sysreg!("s3_4_c12_c9_0", value),
        1 => write_sysreg!("s3_4_c12_c9_1", value),
        2 => write_sysreg!("s3_4_c12_c9_2", value),
        _ => write_sysreg!("s3_4_c12_c9_3", value),
    }
}

/// The hardware virtual interface's state (the implemented LRs and APRs
/// of `shape`).
fn hardware_read(shape: &Shape) -> L1Interface {
    let mut state = L1Interface {
        hcr: read_sysreg!("s3_4_c12_c11_0"),
        vmcr: read_sysreg!("s3_4_c12_c11_7"),
        ..L1Interface::default()
    };
    for n in 0..shape.list_registers {
        state.lrs[n] = super::gic::read_lr(n);
    }
    for n in 0..shape.active_priority_registers {
        state.ap0r[n] = read_ap0r(n);
        state.ap1r[n] = read_ap1r(n);
    }
    state
}

/// Loads `state` into the hardware virtual interface. ICH_HCR_EL2 last:
/// with En set, the interface acts on the LRs and APRs just written.
fn hardware_write(state: &L1Interface, shape: &Shape) {
    write_sysreg!("s3_4_c12_c11_0", 0);
    write_sysreg!("s3_4_c12_c11_7", state.vmcr);
    for n in 0..shape.list_registers {
        super::gic::write_lr(n, state.lrs[n]);
    }
    for n in 0..shape.active_priority_registers {
        write_ap0r(n, state.ap0r[n]);
        write_ap1r(n, state.ap1r[n]);
    }
    write_sysreg!("s3_4_c12_c11_0", state.hcr);
    super::cpu::isb();
}

/// On a vCPU's CPU before L1 first runs: L1's own interface at its start
/// ([`L1_OWN_START`], what [`VcpuGic::new`] keeps) in the hardware.
pub fn start_l1_interface() {
    hardware_write(&L1_OWN_START, &Shape::from_vtr(hardware_vtr()));
}

/// A vCPU's two interfaces.
#[derive(Debug)]
pub struct VcpuGic {
    /// L1's own interface while L2 runs (while L1 runs it is in the
    /// hardware).
    l1_own: L1Interface,
    /// L1's maintenance interrupt (the platform's GIC maintenance PPI).
    maintenance_intid: u32,
    /// A deliberate defect (the `irq-no-*` demos, which must fail).
    defect: GicDefect,
}

/// A defect hv's side of L1's interface can be run with, so the `irq`
/// demo's checks are shown to fail without the part they check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicDefect {
    None,
    /// `irq-no-writeback`: the LRs' State is not written back to L1.
    NoLrWriteBack,
    /// `irq-no-maintenance`: L1's maintenance interrupt is never
    /// delivered (hv acts as if L1 took no IRQs at virtual EL2).
    NoMaintenance,
    /// `timer-hw-no-link`: L1's HW = 1 list registers are plain software
    /// entries (no EOI bit), and L2's deactivation of one leaves its
    /// pINTID active in L1's view (hv before review 40 R40-2).
    NoHwLink,
    /// `linux-no-l2-lr`: L1's list registers for L2 are loaded invalid
    /// and never written back (L1 reads them as it wrote them): L2 takes
    /// none of the interrupts L1 lists for it.
    NoL2Lists,
}

/// The pINTIDs of L1's HW = 1 list registers whose virtual interrupt L2
/// deactivated in the run that just ended (`VcpuGic::leave_l2`).
pub type HwDeactivations = arrayvec::ArrayVec<u32, MAX_LIST_REGISTERS>;

/// How an L2 exit left L1's maintenance interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Maintenance {
    /// Not asserted, or L1 does not take IRQs at virtual EL2.
    None,
    /// Asserted and L1 takes it: L2 is interrupted, L1 enters its IRQ
    /// vector.
    ForL1,
}

impl VcpuGic {
    /// A vCPU about to run L1 for the first time, with L1's maintenance
    /// interrupt `maintenance_intid`.
    pub fn new(maintenance_intid: u32, defect: GicDefect) -> VcpuGic {
        VcpuGic {
            l1_own: L1_OWN_START,
            maintenance_intid,
            defect,
        }
    }

    /// Whether L1 takes its maintenance interrupt at virtual EL2.
    fn l1_takes_irqs(&self, l1_virtual_hcr: u64) -> bool {
        self.defect != GicDefect::NoMaintenance && l1_takes_irqs_at_vel2(l1_virtual_hcr)
    }

    /// L1's maintenance interrupt.
    pub fn maintenance_intid(&self) -> u32 {
        self.maintenance_intid
    }

    /// Before a return to L2: L1's own interface saved, L1's interface
    /// for L2 (its VNCR page words, `crate::nested::vgic::hardware_lr`
    /// and the rest) loaded, with its maintenance triggers only when L1
    /// takes the maintenance interrupt at virtual EL2 (virtual HCR_EL2
    /// `l1_virtual_hcr`): otherwise the hardware's would interrupt L2 for
    /// an interrupt L1 never takes. Where the hardware's ICH_MISR_EL2 or
    /// ICH_EISR_EL2 shows a condition L1's state (hv's reading of it) does
    /// not, only that condition's trigger is withheld
    /// (`L1Interface::without_disagreeing_triggers`), so an L2 is never
    /// interrupted again and again for nothing and every trigger that
    /// agrees still works (review 33 R33-3); should the hardware still
    /// assert it then, all are withheld.
    pub fn enter_l2(&mut self, page: &VncrPage, l1_virtual_hcr: u64) {
        let shape = Shape::from_vtr(hardware_vtr());
        self.l1_own = hardware_read(&shape);
        let l1 = L1Interface::read(page, &shape);
        let hardware = self.hardware_form(&l1, &shape);
        // Without L1's maintenance triggers; the EOI bits of its HW = 1
        // entries stay (hv's, for the link: `nested::vgic`).
        let quiet = self.hardware_form(&l1.without_maintenance_triggers(), &shape);
        if self.l1_takes_irqs(l1_virtual_hcr) {
            hardware_write(&hardware, &shape);
            let l1_misr = l1.misr(&shape);
            let l1_eisr = eisr(&l1.lrs[..shape.list_registers]);
            let hardware_misr = read_sysreg!("s3_4_c12_c11_2"); // ICH_MISR_EL2
            let hardware_eisr = read_sysreg!("s3_4_c12_c11_3"); // ICH_EISR_EL2
            if hardware_misr & !l1_misr != 0 || hardware_eisr & !l1_eisr != 0 {
                let narrowed = hardware.without_disagreeing_triggers(
                    hardware_misr,
                    l1_misr,
                    hardware_eisr,
                    l1_eisr,
                );
                hardware_write(&narrowed, &shape);
                let still = read_sysreg!("s3_4_c12_c11_2");
                if maintenance_asserted(narrowed.hcr, still)
                    && !maintenance_asserted(l1.hcr, l1_misr)
                {
                    hardware_write(&quiet, &shape);
                }
            }
        } else {
            hardware_write(&quiet, &shape);
        }
    }

    /// The hardware form of L1's interface `l1` (`L1Interface::to_hardware`;
    /// under `timer-hw-no-link` its HW = 1 entries without the EOI bit).
    fn hardware_form(&self, l1: &L1Interface, shape: &Shape) -> L1Interface {
        let mut hardware = l1.to_hardware(shape);
        if self.defect == GicDefect::NoL2Lists {
            hardware.lrs = [0; MAX_LIST_REGISTERS];
        }
        if self.defect == GicDefect::NoHwLink {
            for (hw, &word) in hardware.lrs.iter_mut().zip(&l1.lrs) {
                if word & lr::HW != 0 {
                    *hw &= !lr::EOI;
                }
            }
        }
        hardware
    }

    /// After an exit from L2: what L2 did written back into L1's VNCR
    /// page (each LR's State, EOIcount, APRs, VMCR); for each HW = 1 LR
    /// L2 deactivated, its pINTID made inactive in L1's own interface
    /// (`nested::vgic::deactivate_listed`), which is then loaded again.
    /// Those pINTIDs, for the caller to deactivate in L1's GIC model too.
    pub fn leave_l2(&mut self, page: &VncrPage) -> HwDeactivations {
        let shape = Shape::from_vtr(hardware_vtr());
        let l1 = L1Interface::read(page, &shape);
        let now = hardware_read(&shape);
        let mut after = l1.written_back(&now, &shape);
        if matches!(self.defect, GicDefect::NoLrWriteBack | GicDefect::NoL2Lists) {
            after.lrs = l1.lrs;
        }
        after.write(page, &shape);
        let deactivated = if matches!(self.defect, GicDefect::NoHwLink | GicDefect::NoL2Lists) {
            HwDeactivations::new()
        } else {
            l1.hw_deactivations(&now, &shape)
        };
        for &intid in &deactivated {
            deactivate_listed(&mut self.l1_own.lrs[..shape.list_registers], intid);
        }
        hardware_write(&self.l1_own, &shape);
        deactivated
    }

    /// Whether L1's maintenance interrupt, as L1's VNCR page now says,
    /// interrupts L2 (checked after an exit from L2 hv would otherwise
    /// answer by resuming L2).
    pub fn maintenance_for_l1(&self, page: &VncrPage, l1_virtual_hcr: u64) -> Maintenance {
        let shape = Shape::from_vtr(hardware_vtr());
        let l1 = L1Interface::read(page, &shape);
        if self.defect != GicDefect::NoMaintenance
            && maintenance_taken_at_vel2(&l1, &shape, l1_virtual_hcr)
        {
            Maintenance::ForL1
        } else {
            Maintenance::None
        }
    }

    /// Before a return to L1 (its own interface in the hardware): hv's
    /// list register 0 of it made to follow L1's maintenance interrupt
    /// (`crate::nested::vgic::l1_maintenance_lr`), which the hardware then
    /// signals to L1 as a virtual IRQ when L1's PSTATE.I, PMR and group 1
    /// enable allow.
    pub fn l1_runs(&self, page: &VncrPage, l1_virtual_hcr: u64) {
        let asserted = self.maintenance_for_l1(page, l1_virtual_hcr) == Maintenance::ForL1;
        let current = super::gic::read_lr(0);
        let wanted = l1_maintenance_lr(current, asserted, self.maintenance_intid);
        if wanted != current {
            super::gic::write_lr(0, wanted);
            super::cpu::isb();
        }
    }
}

/// What L1's trapped access to a GIC register does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L1GicAccess {
    /// A read: this value into Rt.
    Read(u64),
    /// A write ignored (RAO/WI).
    Ignored,
    /// UNDEFINED (an MSR of a read-only register).
    Undefined,
}

/// L1's trapped MRS/MSR `access` (op0 3, op1 4, CRn 12) of ICH_VTR_EL2,
/// ICH_MISR_EL2, ICH_EISR_EL2, ICH_ELRSR_EL2 (answered from L1's VNCR
/// page `page`) or ICC_SRE_EL2; None for any other encoding.
pub fn l1_access(access: &SysRegAccess, page: &VncrPage) -> Option<L1GicAccess> {
    if (access.op0, access.op1, access.crn) != (3, 4, 12) {
        return None;
    }
    match (access.crm, access.op2) {
        (11, op2) => {
            let register = TrappedIch::from_op2(op2)?;
            if !access.read {
                return Some(L1GicAccess::Undefined);
            }
            let vtr = hardware_vtr();
            let shape = Shape::from_vtr(vtr);
            let state = L1Interface::read(page, &shape);
            Some(L1GicAccess::Read(l1_ich_read(
                register, &state, &shape, vtr,
            )))
        }
        (9, 5) if access.read => Some(L1GicAccess::Read(ICC_SRE_EL2_SHOWN)),
        (9, 5) => Some(L1GicAccess::Ignored),
        _ => None,
    }
}
