//! The machine side of L1's distributor and redistributors
//! (`crate::nested::gic` has the model and its choices): one [`L1Gic`]
//! for all of L1's vCPUs behind a lock, L1's trapped loads and stores to
//! its GIC frames and its ICC_SGI1R_EL1 writes applied to it, and what it
//! forwards to a vCPU listed in L1's own virtual interface (the hardware
//! one during every exit, `arch::nested_vgic`).
//!
//! Calls from `arch::nested`: [`mmio`] for L1's stage-2 data aborts in
//! its GIC frames, [`deactivate`] for L2's deactivations of L1's HW = 1
//! list registers, [`send_sgi`] for its trapped SGI register writes (the
//! caller kicks the targets that run elsewhere with hv's kick SGI, which
//! takes them to hv, whose exit lists the SGI), [`list_for_l1`] at the end
//! of every exit (L1 or L2, while L1's own interface is in the hardware),
//! then [`interrupts_l2`] to take L2 out to L1's IRQ vector.
//!
//! The lock is taken inside a vCPU's exit (its own vCPU lock held, never
//! another's), briefly, and nothing is waited for while it is held. A
//! load that reads what other vCPUs hold listed waits for their exits
//! with it free, bounded ([`sync_holders`]).

use super::cpu::{self, read_sysreg};
use super::nested_timer::hardware_lrs;
use crate::esr::{MmioAccess, MmioKind};
use crate::nested::gic::{
    list_forwarded_with_displacement, signalled, GicFrame, HwDeactivationReach, L1Gic, L1GicLayout,
    PowerOff, SyncSteps, ICACTIVER0, ICPENDR0, ISACTIVER0, MAX_L1_VCPUS,
};
use crate::nested::vgic::{l1_takes_irqs_at_vel2, vtr};
use crate::println;
use core::sync::atomic::{AtomicBool, Ordering};

/// L1's GIC, shared by its vCPUs.
static L1_GIC: spin::Mutex<L1Gic> = spin::Mutex::new(L1Gic::new(
    MAX_L1_VCPUS,
    crate::vgic::DEFAULT_MAINTENANCE_INTID,
));

/// A deliberate defect of the delivery hv adds for L1's GIC (the
/// `gic-no-*` demos, which must fail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L1GicDefect {
    None,
    /// `gic-no-l2-exit`: an interrupt pending for L1 while its vCPU runs
    /// L2 does not take L2 out (it waits in L1's list registers for L2's
    /// next exit to L1).
    NoL2Exit,
    /// `gic-no-kick`: an SGI or SPI for another vCPU does not kick it (it
    /// is listed at that vCPU's next exit).
    NoKick,
    /// `gic-no-list`: nothing L1's GIC forwards is ever listed in L1's
    /// own interface.
    NoList,
    /// `gic-no-eoi-maintenance`: L1's SGIs and SPIs are listed without
    /// the EOI bit (L1's deactivation causes no exit).
    NoEoiMaintenance,
    /// `gic-no-power-off`: L1's CPU_OFF leaves what hv listed in the
    /// vCPU's list registers (lost at its restart) and its redistributor
    /// awake.
    NoPowerOff,
    /// `gic-no-withdraw`: an interrupt listed and not acknowledged stays
    /// pending in the vCPU's list registers after L1 cleared it pending,
    /// disabled or re-routed it (the vCPU still takes it).
    NoWithdraw,
    /// `gic-no-displace`: an interrupt with no empty list register waits
    /// even when one holds a lower-priority entry L1 has not acknowledged
    /// (say one it masks).
    NoDisplace,
    /// `linux-no-ipi`: an SGI L1 sends to another vCPU is dropped (one to
    /// the sender itself arrives).
    NoCrossVcpuSgi,
    /// `gic-no-read-sync`: a pending read (GICD_ISPENDR, GICR_ISPENDR0
    /// and their clear twins) neither waits for nor kicks the vCPUs
    /// holding what it reads: an interrupt another vCPU acknowledged
    /// reads pending until that vCPU's next exit.
    NoReadSync,
    /// `gic-no-reprioritize`: a new priority L1 writes does not reach an
    /// interrupt already listed (the LR keeps the old one).
    NoReprioritize,
    /// `gic-no-remote-ppi-active`: the PPI bits of another vCPU's
    /// GICR_ISACTIVER0/ICACTIVER0 are RAZ/WI.
    NoRemotePpiActive,
    /// `gic-no-ppi-active-wait`: a PPI set active (GICR_ISACTIVER0) with
    /// every list register from 1 on in use is lost.
    NoPpiActiveWait,
    /// `gic-no-listed-active`: the active state of an SGI or SPI L1
    /// acknowledged (in its list register) and the model's active bit
    /// are apart: I{S,C}ACTIVER stores and loads act on the model's only
    /// (review 49 R49-3).
    NoListedActive,
    /// `gic-no-remote-hw-deactivate`: L2's deactivation of an HW = 1 list
    /// register naming an SPI another vCPU holds active (or listed) leaves
    /// it so there (review 48 R48-3's limit): only the model's bit and
    /// the deactivating vCPU's own list registers are cleared.
    NoRemoteHwDeactivate,
}

/// The longest a load of L1's GIC waits for the vCPUs holding what it
/// reads ([`mmio`]): 10 ms.
const READ_SYNC_BOUND_HZ_DIVISOR: u64 = 100;

/// Resets L1's GIC for `vcpus` vCPUs and L1's maintenance interrupt
/// `maintenance_intid` (before L1 first runs).
pub fn reset(vcpus: usize, maintenance_intid: u32) {
    *L1_GIC.lock() = L1Gic::new(vcpus, maintenance_intid);
}

/// L1's load or store `access` (stage-2 data abort syndrome decoded) at
/// `layout`'s frames from vCPU `vcpu`, with `value` the low bytes of the
/// stored register: the load's raw value (None for a store), or Err(())
/// when `access` is not in L1's GIC. The vCPUs that now have something
/// forwarded to them go to `kick`. A load of pending bits that vCPUs hold
/// listed (`nested::gic::L1Gic::read_holders`) first syncs them
/// ([`sync_holders`]), so it reads what they acknowledged before it. The
/// PPI bits of a vCPU's GICR_ISACTIVER0 and GICR_ICACTIVER0 are the
/// entries of its own interface that hold them
/// (`nested::gic::L1Gic::sync_ppis`): a store's reach the vCPU's list
/// registers at once for its own redistributor (its interface is in the
/// hardware during the exit), else at that vCPU's next exit, which its
/// kick causes; a load syncs that vCPU first, as above
/// (`ppi_active_written` is called when a store has some). An SGI's or
/// SPI's active state is the list register's once L1 acknowledged it
/// there (`nested::gic::L1Gic::active_holders`): a load of its active
/// bit, and an I{S,C}ACTIVER store of it, first sync the vCPUs holding
/// it, and a clear reaches the holder's list register as a PPI's does.
pub fn mmio(
    layout: &L1GicLayout,
    access: &MmioAccess,
    value: u64,
    vcpu: usize,
    defect: L1GicDefect,
    kick: impl Fn(u32),
    ppi_active_written: impl FnOnce(),
) -> Result<Option<u64>, ()> {
    let (frame, offset) = layout.locate(access.ipa).ok_or(())?;
    let size = access.size.bytes();
    let ppi_active = matches!(frame, GicFrame::Redistributor(_))
        && size == 4
        && matches!(offset, ISACTIVER0 | ICACTIVER0);
    let own = frame == GicFrame::Redistributor(vcpu);
    // The `gic-no-remote-ppi-active` defect: another vCPU's PPI active
    // bits RAZ/WI.
    let ppi_mask = match (ppi_active && !own, defect) {
        (true, L1GicDefect::NoRemotePpiActive) => 0xffff,
        _ => u64::MAX,
    };
    let mut gic = L1_GIC.lock();
    match access.kind {
        MmioKind::Read { .. } => {
            let syncing = match defect {
                L1GicDefect::NoReadSync => 1 << vcpu,
                _ => u32::MAX,
            };
            let holders = gic.read_holders(frame, offset, size) & syncing;
            if holders != 0 {
                drop(gic);
                sync_holders(vcpu, holders, defect, &kick);
                gic = L1_GIC.lock();
            }
            Ok(Some(gic.read(frame, offset, size) & ppi_mask))
        }
        MmioKind::Write { .. } => {
            let value = value & access.size.mask() & ppi_mask;
            // An I{S,C}ACTIVER store acts on the active state as L1 left
            // it: the vCPUs holding its SGIs and SPIs sync first.
            let holders = match size {
                4 if offset.is_multiple_of(4) => gic.active_holders(frame, offset, value as u32),
                _ => 0,
            };
            if holders != 0 {
                drop(gic);
                sync_holders(vcpu, holders, defect, &kick);
                gic = L1_GIC.lock();
            }
            gic.write(frame, offset, size, value);
            let wanting = gic.wanting();
            // An active state for its own list registers (a PPI's, or a
            // clear of what it acknowledged) reaches them at once.
            let own_sync = gic.sync_requested(vcpu);
            drop(gic);
            if ppi_active && value as u32 & !0xffff != 0 {
                ppi_active_written();
            }
            if own_sync {
                kick(sync_own(vcpu, defect));
            }
            kick(wanting);
            Ok(None)
        }
    }
}

/// Syncs the vCPUs `holders` (bit k: vCPU k) for vCPU `vcpu`'s load:
/// `vcpu`'s own list registers at once ([`sync_own`]), the others' at
/// their next exits, which their kick causes and this waits for
/// (`nested::gic::L1Gic::request_sync`), serving its own requests
/// meanwhile (two vCPUs loading each other's state do not wait for each
/// other forever). The wait is bounded ([`READ_SYNC_BOUND_HZ_DIVISOR`]):
/// a holder that does not get to its exit in time (hv busy there) leaves
/// the load reading the state as of its last exit, a snapshot its kick
/// still refreshes for the loads after it.
fn sync_holders(vcpu: usize, holders: u32, defect: L1GicDefect, kick: &impl Fn(u32)) {
    if holders & (1 << vcpu) != 0 {
        kick(sync_own(vcpu, defect));
    }
    let others = holders & !(1 << vcpu);
    if others == 0 {
        return;
    }
    let since = L1_GIC.lock().request_sync(others);
    kick(others);
    let deadline =
        cpu::counter().wrapping_add(cpu::counter_frequency() / READ_SYNC_BOUND_HZ_DIVISOR);
    loop {
        if L1_GIC.lock().sync_requested(vcpu) {
            kick(sync_own(vcpu, defect));
        }
        if L1_GIC.lock().synced_since(others, &since)
            || cpu::counter().wrapping_sub(deadline) as i64 >= 0
        {
            return;
        }
        core::hint::spin_loop();
    }
}

/// vCPU `vcpu`'s own list registers (L1's own interface, in the hardware
/// during its exit) made to agree with L1's GIC (`nested::gic::L1Gic::
/// sync`: the PPI active states L1 wrote; LR 1 on, what it acknowledged
/// no longer listed, what L1 withdrew gone, new priorities in). The vCPUs
/// that now have something forwarded to them (to kick).
fn sync_own(vcpu: usize, defect: L1GicDefect) -> u32 {
    let (before, count) = hardware_lrs();
    if count < 2 {
        return 0;
    }
    let mut after = before;
    let mut gic = L1_GIC.lock();
    let handed_back = sync(&mut gic, vcpu, &mut after[..count], defect);
    let wanting = if handed_back { gic.wanting() } else { 0 };
    drop(gic);
    write_changed_lrs(&before[..count], &after[..count]);
    wanting
}

/// `nested::gic::L1Gic::sync` with the steps `defect` leaves.
fn sync(gic: &mut L1Gic, vcpu: usize, lrs: &mut [u64], defect: L1GicDefect) -> bool {
    let steps = SyncSteps {
        withdraw: defect != L1GicDefect::NoWithdraw,
        reprioritize: defect != L1GicDefect::NoReprioritize,
        keep_waiting_ppi_sets: defect != L1GicDefect::NoPpiActiveWait,
        listed_active: defect != L1GicDefect::NoListedActive,
    };
    gic.sync(vcpu, lrs, steps)
}

/// vCPU `vcpu`'s write of `value` to ICC_SGI1R_EL1 or ICC_ASGI1R_EL1:
/// the targets (bit k: vCPU k).
pub fn send_sgi(vcpu: usize, value: u64, defect: L1GicDefect) -> u32 {
    let mut gic = L1_GIC.lock();
    let targets = gic.send_sgi(vcpu, value);
    if defect != L1GicDefect::NoCrossVcpuSgi {
        return targets;
    }
    // The defect: the SGI withdrawn from every other target (through its
    // GICR_ICPENDR0, as L1 would clear it).
    let intid = (value >> 24) & 0xf;
    let dropped = targets & !(1 << vcpu);
    for k in (0..MAX_L1_VCPUS).filter(|&k| dropped & (1 << k) != 0) {
        gic.write(GicFrame::Redistributor(k), ICPENDR0, 4, 1 << intid);
    }
    drop(gic);
    // The twin's own line (its run then ends with the watchdog): Linux
    // hangs for the lost IPI, not for another reason.
    if dropped != 0 && !SGI_DROP_REPORTED.swap(true, Ordering::Relaxed) {
        println!(
            "hv: nested: linux-no-ipi: dropped L1's SGI {intid} from vCPU {vcpu} to vCPUs {dropped:#x} (reported once)"
        );
    }
    targets & (1 << vcpu)
}

/// Whether the `linux-no-ipi` defect reported its first dropped SGI.
static SGI_DROP_REPORTED: AtomicBool = AtomicBool::new(false);

/// L2's deactivation of an HW = 1 list register of vCPU `vcpu` naming
/// `intid` (`VcpuGic::leave_l2`): the active bit L1 set for it in its GIC
/// cleared, and an SPI another vCPU holds active in its list registers
/// marked for that vCPU's next sync (`nested::gic::L1Gic::deactivate`;
/// not with the `gic-no-remote-hw-deactivate` defect). The vCPUs to kick:
/// that holder, and those that now have something forwarded to them (an
/// SPI pending behind its active state). Nothing here waits for the
/// holder: its kicked exit deactivates the entry, whatever it was doing.
pub fn deactivate(vcpu: usize, intid: u32, defect: L1GicDefect) -> u32 {
    let reach = match defect {
        L1GicDefect::NoRemoteHwDeactivate => HwDeactivationReach::OwnVcpu,
        _ => HwDeactivationReach::AnyHolder,
    };
    let mut gic = L1_GIC.lock();
    if gic.deactivate(vcpu, intid, reach) {
        gic.wanting()
    } else {
        0
    }
}

/// L1's own interface (in the hardware during every exit), list
/// registers 1 on, made to agree with L1's GIC for vCPU `vcpu`: the PPI
/// active states L1 wrote since (all LRs, `nested::gic::L1Gic::sync_ppis`,
/// first: a waiting set gets a free LR before anything else), what L1
/// cleared pending, disabled or re-routed since it was listed there
/// withdrawn and new priorities in (`nested::gic::L1Gic::withdraw_listed`,
/// also a sync a load of another vCPU waits for), then what the GIC
/// forwards to the vCPU listed, with EOI maintenance
/// (`nested::gic::list_forwarded`), leaving LRs for the asserted timer
/// PPIs in `timer_ppis` that rank above an interrupt and handing back a
/// lower-ranked entry L1 has not acknowledged for a higher one. The vCPUs that now
/// have something forwarded to them (a withdrawn interrupt's new target,
/// for the caller to kick).
pub fn list_for_l1(vcpu: usize, defect: L1GicDefect, timer_ppis: &[(u32, bool)]) -> u32 {
    if defect == L1GicDefect::NoList {
        return 0;
    }
    let mut gic = L1_GIC.lock();
    if !gic.anything_pending()
        && !gic.holds_listed(vcpu)
        && !gic.holds_active(vcpu)
        && !gic.sync_requested(vcpu)
        && !gic.ppi_active_waiting(vcpu)
    {
        return 0;
    }
    let (before, count) = hardware_lrs();
    if count < 2 {
        return 0;
    }
    let mut after = before;
    let handed_back = sync(&mut gic, vcpu, &mut after[..count], defect);
    let eoi_maintenance = defect != L1GicDefect::NoEoiMaintenance;
    list_forwarded_with_displacement(
        &mut gic,
        vcpu,
        &mut after[1..count],
        eoi_maintenance,
        timer_ppis,
        defect != L1GicDefect::NoDisplace,
    );
    let wanting = if handed_back { gic.wanting() } else { 0 };
    drop(gic);
    write_changed_lrs(&before[..count], &after[..count]);
    wanting
}

/// L1's own list registers (in the hardware) from `before` to `after`.
fn write_changed_lrs(before: &[u64], after: &[u64]) {
    for (n, (old, new)) in before.iter().zip(after).enumerate() {
        if old != new {
            super::gic::write_lr(n, *new);
        }
    }
    cpu::isb();
}

/// vCPU `vcpu` is about to power off (L1's PSCI CPU_OFF; its own
/// interface in the hardware): what hv listed there goes back to L1's GIC
/// and its redistributor sleeps (`nested::gic::L1Gic::power_off`). Returns
/// what a refused CPU_OFF undoes ([`power_off_refused`]), None with the
/// `gic-no-power-off` defect, and the vCPUs that now have something
/// forwarded to them (to kick).
pub fn power_off(vcpu: usize, defect: L1GicDefect) -> (Option<PowerOff>, u32) {
    if defect == L1GicDefect::NoPowerOff {
        return (None, 0);
    }
    let (before, count) = hardware_lrs();
    let mut after = before;
    let mut gic = L1_GIC.lock();
    let undo = gic.power_off(vcpu, &mut after[1..count.max(1)]);
    let wanting = gic.wanting();
    drop(gic);
    write_changed_lrs(&before[..count], &after[..count]);
    (Some(undo), wanting)
}

/// The firmware refused vCPU `vcpu`'s CPU_OFF after [`power_off`]: it runs
/// on (`nested::gic::L1Gic::power_off_refused`: its active entries
/// deactivated in L1's GIC meanwhile deactivated there too), with what it
/// handed back listed again (no LR held back for its timer PPIs: their pass ran at
/// this exit's `before_return`, before the CPU_OFF). The vCPUs to kick
/// ([`list_for_l1`]).
pub fn power_off_refused(vcpu: usize, undo: &PowerOff, defect: L1GicDefect) -> u32 {
    let (before, count) = hardware_lrs();
    let mut after = before;
    L1_GIC
        .lock()
        .power_off_refused(vcpu, undo, &mut after[1..count.max(1)]);
    write_changed_lrs(&before[..count], &after[..count]);
    list_for_l1(vcpu, defect, &[])
}

/// Whether an interrupt of L1's GIC listed in its own interface (in the
/// hardware during the exit) is signalled and L1 routes IRQs to its
/// virtual EL2 (virtual HCR_EL2 `l1_virtual_hcr`): L2, if it runs, is to
/// be taken out to L1's IRQ vector.
pub fn interrupts_l2(l1_virtual_hcr: u64, defect: L1GicDefect) -> bool {
    if defect == L1GicDefect::NoL2Exit || !l1_takes_irqs_at_vel2(l1_virtual_hcr) {
        return false;
    }
    let (lrs, count) = hardware_lrs();
    let vmcr = read_sysreg!("s3_4_c12_c11_7"); // ICH_VMCR_EL2: L1's own
    let vtr = read_sysreg!("s3_4_c12_c11_1"); // ICH_VTR_EL2
    let priority_bits = ((vtr >> vtr::PRIBITS_SHIFT) & 7) as u32 + 1;
    signalled(&lrs[1..count.max(1)], vmcr, priority_bits)
}
