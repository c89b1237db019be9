//! The hardware side of L1's generic timers (`crate::nested::timer` has
//! the rules and what traps): while L1 runs the hardware EL1 physical and
//! virtual timers are L1's EL2 timers (CNTHP, CNTHV) and CNTVOFF_EL2 is 0;
//! while L2 runs they are L2's EL1 timers from L1's VNCR page with
//! CNTVOFF_EL2 = L1's, and hv keeps L1's EL2 timers, whose earliest
//! deadline it gives its own EL2 physical timer (the watchdog's).
//!
//! While L1 runs, L2's EL1 timers (VNCR words) have no hardware timer:
//! hv's EL2 physical timer is armed for their first assertion as well
//! (review 40 R40-4), so one expiring while L1 runs, even while L1 spins
//! at its EL2 without an exit, reaches L1 when it expires. hv reads the
//! VNCR words at L1's exits: a timer L1 arms there after its last exit
//! (stores that do not trap) is backed from its next exit on (its ERET
//! into L2 is one, as is the EOI of any timer PPI hv listed, below).
//!
//! Interrupts: the hardware EL1 timers' PPIs are hv's (HCR_EL2.IMO),
//! taken at EL2 ([`VcpuTimers::take_irq`]): hv drops their priority and
//! holds them active while their level is high (so a level that stays up
//! does not interrupt hv again), deactivating each at a return to the
//! guest once the timer now in the hardware is quiet
//! ([`VcpuTimers::before_return`]). L1 gets its timer PPIs in software:
//! listed in its own virtual interface (list registers 1 on) while it
//! runs, and, while L2 runs, as an IRQ that takes L2 out to L1's virtual
//! EL2 ([`VcpuTimers::interrupts_l2`]).
//!
//! Those list registers have their EOI bit (`nested::timer::l1_timer_lrs`):
//! L1's deactivation of a timer PPI, which does not trap, raises the EOI
//! maintenance interrupt (hv's: L1's own interface has ICH_HCR_EL2.En),
//! so hv looks at the hardware timer again then: a VHE L1 that re-armed
//! its EL2 timer (CNTP/CNTV_*_EL0, no trap) before it deactivated the PPI
//! gets the next expiry with no other exit, where the held hardware PPI
//! used to wait for one (review 40 R40-3: it held only because L1's
//! handlers end in an ERET, which traps). hv does not list them with
//! HW = 1 (pINTID the hardware PPI, as KVM does for its guests' timers):
//! the hardware PPI stands for L1's EL2 timer while L1 runs and for L2's
//! EL1 timer while L2 runs, and an HW = 1 entry L1 keeps active across
//! an L2 run would let L1's late deactivation end the active state hv
//! holds for L2's timer (an interrupt storm at EL2 while L2's level
//! stays up). The cost is one exit per deactivated timer PPI. L1's own
//! HW = 1 entries for L2 (KVM's mapping of L2's timer to its PPI 27) are
//! another matter, `arch::nested_vgic`'s: L2's deactivation of one makes
//! L2 exit and ends the active state of the PPI hv listed for L1, and
//! that exit's [`VcpuTimers::before_return`] deactivates the hardware PPI
//! hv held for L2's re-armed timer.
//!
//! Calls from `arch::nested`: [`VcpuTimers::take_irq`] for an IRQ at EL2,
//! [`VcpuTimers::l1_access`] for L1's trapped timer accesses,
//! [`VcpuTimers::interrupts_l2`] and [`VcpuTimers::before_return`] at the
//! end of every exit.

use super::cpu::{self, read_sysreg, write_sysreg};
use crate::exit::SysRegAccess;
use crate::nested::timer::{
    backed_by_hyp_timer, hardware_asserted, hyp_timer_at_return, l1_cnthctl_reset,
    l1_cnthctl_write, l1_timer_lrs, l2_cnthctl, l2_cntkctl_at_exit, signalled_to_l1, timer_read,
    timer_write, vhe_l1_cnthctl, vhe_l1_hardware_cntkctl, L1HypTimers, Timer, TimerLevels,
    TimerPpis, TrappedTimer, WhichTimer, CNTKCTL_WRITABLE, CNTP_CTL_EL0, CNTP_CVAL_EL0,
    CNTV_CTL_EL0, CNTV_CVAL_EL0,
};
use crate::nested::vgic::{l1_takes_irqs_at_vel2, Shape, MAX_LIST_REGISTERS};
use crate::nested::vncr::{VncrPage, CNTVOFF_EL2};

/// A deliberate defect of hv's timer support (the `timer-no-*` demos,
/// which must fail).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerDefect {
    None,
    /// `timer-no-cntvoff`: L2 runs with CNTVOFF_EL2 0, not L1's (the
    /// levels hv computes while L1 runs still apply L1's).
    NoCntvoff,
    /// `timer-no-cntvoff-levels`: the levels and deadlines of L2's virtual
    /// timer hv computes while L1 runs ignore L1's CNTVOFF_EL2 (L2 runs
    /// with it).
    NoCntvoffLevels,
    /// `timer-no-l2-deadline`: while L1 runs, L2's EL1 timers' deadlines
    /// are not given to hv's EL2 physical timer.
    NoL2Deadline,
    /// `timer-no-eoi-maintenance`: the timer PPIs hv lists for L1 have no
    /// EOI bit, so L1's deactivation of one is seen only at its next exit.
    NoEoiMaintenance,
    /// `timer-no-istatus-refresh`: ISTATUS of L2's timers in the VNCR page
    /// is not recomputed at returns to L1.
    NoIstatusRefresh,
    /// `timer-no-cntvoff-istatus`: the ISTATUS recomputed for L2's
    /// virtual timer at returns to L1 ignores L1's CNTVOFF_EL2 (its levels
    /// and deadline keep it).
    NoCntvoffIstatus,
    /// `timer-no-l2-physical-deadline`: while L1 runs, hv's EL2 physical
    /// timer backs L2's virtual timer only.
    NoL2PhysicalDeadline,
    /// `timer-no-cnthctl-counter`: L2's physical counter never traps,
    /// whatever L1's CNTHCTL_EL2 asks (its timer traps as asked).
    NoCnthctlCounter,
    /// `timer-no-cntkctl-restore`: a VHE L1's CNTKCTL_EL1 (its
    /// CNTHCTL_EL2's low bits) is not put back when L2 stops running (L1
    /// reads L2's).
    NoCntkctlRestore,
    /// `timer-no-l1-irq`: L1's timer PPIs are never delivered to it.
    NoL1Irq,
    /// `timer-no-l1-deadline`: while L2 runs, L1's EL2 timers' deadlines
    /// are not given to hv's EL2 physical timer.
    NoL1Deadline,
    /// `timer-no-cnthctl`: L2 runs with hv's own CNTHCTL_EL2, whatever
    /// L1's asks.
    NoCnthctl,
}

/// The hardware PPIs hv takes for the timers.
#[derive(Clone, Copy, Debug)]
pub struct HardwarePpis {
    /// The EL1 physical and virtual timers' (what L1's or L2's timers
    /// raise), and the EL2 physical timer's (hv's watchdog, L1's EL2
    /// deadlines while L2 runs).
    pub physical: u32,
    pub virtual_: u32,
    pub hyp: u32,
}

/// What L1's trapped timer access did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerAccess {
    /// An MRS: this value into Rt.
    Read(u64),
    /// An MSR, done.
    Written,
}

/// What an IRQ at EL2 was, for the timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerIrq {
    /// A timer PPI, handled.
    Taken,
    /// The EL2 physical timer at or past the watchdog's deadline.
    Watchdog,
    /// Not a timer PPI.
    Other,
}

const HELD_PHYSICAL: u8 = 1 << 0;
const HELD_VIRTUAL: u8 = 1 << 1;

/// A vCPU's timers (only its CPU touches them).
#[derive(Debug)]
pub struct VcpuTimers {
    /// L1's EL2 timers while L2 runs (while L1 runs they are the
    /// hardware's).
    l1_hyp: L1HypTimers,
    /// Whether the hardware EL1 timers hold L2's now.
    l2_loaded: bool,
    /// L1's virtual CNTHCTL_EL2 (its E2H's layout). For a VHE L1 bits
    /// [9:0] are the hardware CNTKCTL_EL1's while L1 runs (its CNTKCTL_EL1
    /// encoding, untrapped: `nested::timer::vhe_l1_cnthctl`), and this
    /// copy's while L2 runs.
    cnthctl: u64,
    /// A VHE L1's: L2's CNTKCTL_EL1 (its CNTKCTL_EL12) while L1 runs.
    l2_cntkctl: u64,
    /// L1 is a VHE (E2H = 1) guest hypervisor.
    e2h: bool,
    /// The hardware EL1 timers' PPIs hv acknowledged and holds active.
    held: u8,
    /// The watchdog's deadline on this CPU (physical count), if it has one.
    watchdog: Option<u64>,
    /// L1's timer PPIs and the hardware's.
    l1_ppis: TimerPpis,
    hardware: HardwarePpis,
    defect: TimerDefect,
    /// The count at which [`Self::interrupts_l2`] last decided that no
    /// timer of L1's takes L2 out: the L2 entry arms L1's deadlines after
    /// it, not after a count read later (review 40 R40-1: a deadline
    /// passing while hv entered L2 was dropped as "already asserted" and
    /// L1's interrupt was lost for as long as L2 ran). A deadline kept
    /// this way fires at once; the exit it causes decides again, with a
    /// later count, so nothing repeats.
    decided_at: core::cell::Cell<Option<u64>>,
}

fn hardware_physical() -> Timer {
    Timer {
        ctl: read_sysreg!("cntp_ctl_el0"),
        cval: read_sysreg!("cntp_cval_el0"),
    }
}

fn hardware_virtual() -> Timer {
    Timer {
        ctl: read_sysreg!("cntv_ctl_el0"),
        cval: read_sysreg!("cntv_cval_el0"),
    }
}

/// Loads `timer` into the hardware EL1 physical timer (CVAL first: the
/// old CTL never meets the new CVAL with an interrupt hv would miss,
/// since hv runs with IRQs masked and samples the levels before the
/// guest runs).
fn set_hardware_physical(timer: Timer) {
    write_sysreg!("cntp_cval_el0", timer.cval);
    write_sysreg!(
        "cntp_ctl_el0",
        timer.ctl & crate::nested::timer::ctl::WRITABLE
    );
}

fn set_hardware_virtual(timer: Timer) {
    write_sysreg!("cntv_cval_el0", timer.cval);
    write_sysreg!(
        "cntv_ctl_el0",
        timer.ctl & crate::nested::timer::ctl::WRITABLE
    );
}

/// The hardware's list registers (the implemented ones first) and how
/// many are implemented.
pub(super) fn hardware_lrs() -> ([u64; MAX_LIST_REGISTERS], usize) {
    let count = Shape::from_vtr(read_sysreg!("s3_4_c12_c11_1")).list_registers;
    let mut lrs = [0u64; MAX_LIST_REGISTERS];
    for (n, lr) in lrs.iter_mut().enumerate().take(count) {
        *lr = super::gic::read_lr(n);
    }
    (lrs, count)
}

/// ICC_EOIR1_EL1 (priority drop; hv runs with EOImode 1).
fn priority_drop(intid: u32) {
    write_sysreg!("s3_0_c12_c12_1", u64::from(intid));
}

/// ICC_DIR_EL1.
fn deactivate(intid: u32) {
    write_sysreg!("s3_0_c12_c11_1", u64::from(intid));
}

/// On a vCPU's CPU before L1 first runs: the hardware EL1 timers (L1's
/// EL2 timers, whose reset CTL.ENABLE hv chooses as 0) off.
pub fn start_on_this_cpu() {
    write_sysreg!("cntp_ctl_el0", 0);
    write_sysreg!("cntv_ctl_el0", 0);
    // A VHE L1's CNTHCTL_EL2 low bits at reset (`l1_cnthctl_reset`: 0;
    // a non-VHE L1's CNTKCTL_EL1, UNKNOWN at reset, hv's pick).
    write_sysreg!("cntkctl_el1", 0);
    cpu::isb();
}

impl VcpuTimers {
    /// A vCPU about to run L1 for the first time (E2H = `e2h`), its
    /// hardware EL1 timers off (L1's EL2 timers at reset have ENABLE 0 as
    /// hv chooses for their UNKNOWN reset value).
    pub fn new(
        e2h: bool,
        l1_ppis: TimerPpis,
        hardware: HardwarePpis,
        defect: TimerDefect,
    ) -> VcpuTimers {
        VcpuTimers {
            l1_hyp: L1HypTimers::default(),
            l2_loaded: false,
            cnthctl: l1_cnthctl_reset(e2h),
            // UNKNOWN at reset but EVNTEN (0): hv picks 0, no EL0 access.
            l2_cntkctl: 0,
            e2h,
            held: 0,
            watchdog: None,
            l1_ppis,
            hardware,
            defect,
            decided_at: core::cell::Cell::new(None),
        }
    }

    /// This CPU's watchdog deadline (the boot CPU's).
    pub fn set_watchdog(&mut self, deadline: u64) {
        self.watchdog = Some(deadline);
    }

    /// The offset L2's virtual timer runs with in the hardware: L1's
    /// CNTVOFF_EL2 (0 under `timer-no-cntvoff`).
    fn l2_hardware_offset(&self, page: &VncrPage) -> u64 {
        if self.defect == TimerDefect::NoCntvoff {
            0
        } else {
            page.get(CNTVOFF_EL2)
        }
    }

    /// The offset hv computes L2's virtual timer with while L1 runs (its
    /// level, ISTATUS and deadline): L1's CNTVOFF_EL2 (0 under
    /// `timer-no-cntvoff-levels`).
    fn l2_software_offset(&self, page: &VncrPage) -> u64 {
        if self.defect == TimerDefect::NoCntvoffLevels {
            0
        } else {
            page.get(CNTVOFF_EL2)
        }
    }

    /// The levels of L1's timer PPIs at physical count `count` (now): L1's
    /// EL2 timers from the hardware while L1 runs, from hv's copy while L2
    /// runs; L2's from the hardware while L2 runs (its own ISTATUS), from
    /// the VNCR page while L1 runs.
    fn levels(&self, page: &VncrPage, count: u64) -> TimerLevels {
        if self.l2_loaded {
            let hyp = TimerLevels::at(&self.l1_hyp, &Timer::default(), &Timer::default(), 0, count);
            TimerLevels {
                virtual_: hardware_asserted(read_sysreg!("cntv_ctl_el0")),
                physical: hardware_asserted(read_sysreg!("cntp_ctl_el0")),
                ..hyp
            }
        } else {
            let (l2_physical, l2_virtual, _) = crate::nested::timer::l2_timers(page);
            let l2 = TimerLevels::at(
                &L1HypTimers::default(),
                &l2_physical,
                &l2_virtual,
                self.l2_software_offset(page),
                count,
            );
            TimerLevels {
                hyp_physical: hardware_asserted(read_sysreg!("cntp_ctl_el0")),
                hyp_virtual: hardware_asserted(read_sysreg!("cntv_ctl_el0")),
                ..l2
            }
        }
    }

    /// Whether L1 takes one of its timer PPIs at its virtual EL2 now
    /// (asserted, L1 routing IRQs to EL2 in its virtual HCR_EL2
    /// `l1_virtual_hcr`, signalled by L1's own interface, which the
    /// hardware holds during every exit: `crate::nested::timer::
    /// signalled_to_l1`): while L2 runs, L2 is interrupted and L1 enters
    /// its IRQ vector (as for its maintenance interrupt).
    pub fn interrupts_l2(&self, page: &VncrPage, l1_virtual_hcr: u64) -> bool {
        let now = cpu::counter();
        self.decided_at.set(Some(now));
        if self.defect == TimerDefect::NoL1Irq || !l1_takes_irqs_at_vel2(l1_virtual_hcr) {
            return false;
        }
        let levels = self.levels(page, now);
        if !levels.any() {
            return false;
        }
        let (lrs, count) = hardware_lrs();
        let vmcr = read_sysreg!("s3_4_c12_c11_7"); // ICH_VMCR_EL2: L1's own
        signalled_to_l1(&levels.by_intid(&self.l1_ppis), &lrs[..count], vmcr)
    }

    /// An IRQ at EL2 with INTID `intid` (acknowledged by the caller): a
    /// hardware EL1 timer's is held active (priority dropped, deactivated
    /// once its level falls, [`Self::before_return`]); the EL2 physical
    /// timer's is the watchdog's at or past its deadline, else one of L1's
    /// EL2 deadlines while L2 ran or L2's EL1 deadlines while L1 ran
    /// (delivered as a level and re-armed at the return).
    pub fn take_irq(&mut self, intid: u32) -> TimerIrq {
        let held = if intid == self.hardware.physical {
            HELD_PHYSICAL
        } else if intid == self.hardware.virtual_ {
            HELD_VIRTUAL
        } else if intid == self.hardware.hyp {
            if self.watchdog.is_some_and(|d| cpu::counter() >= d) {
                return TimerIrq::Watchdog;
            }
            priority_drop(intid);
            deactivate(intid);
            cpu::isb();
            return TimerIrq::Taken;
        } else {
            return TimerIrq::Other;
        };
        priority_drop(intid);
        cpu::isb();
        self.held |= held;
        TimerIrq::Taken
    }

    /// Last thing before the guest runs, in mode `l2_runs` (L2, else L1),
    /// with L1's own interface in the hardware when L1 runs: the hardware
    /// timers follow the switch (L2's loaded from the VNCR page with L1's
    /// CNTVOFF_EL2 and CNTHCTL_EL2, or saved there and L1's restored),
    /// each held timer PPI whose timer is now quiet deactivated, (while L1
    /// runs) L1's asserted timer PPIs listed in its own interface, and
    /// hv's EL2 physical timer armed for the watchdog and the first
    /// assertion of the guest timers not in the hardware
    /// (`nested::timer::hyp_timer_at_return`), after the count at which
    /// hv took their levels: [`Self::interrupts_l2`]'s when L2 runs, the
    /// listing's when L1 runs (review 40 R40-1).
    pub fn before_return(&mut self, page: &VncrPage, l2_runs: bool, l1_virtual_hcr: u64) {
        match (self.l2_loaded, l2_runs) {
            (false, true) => self.load_l2(page),
            (true, false) => self.save_l2(page),
            _ => {}
        }
        for (bit, intid, ctl) in [
            (
                HELD_PHYSICAL,
                self.hardware.physical,
                read_sysreg!("cntp_ctl_el0"),
            ),
            (
                HELD_VIRTUAL,
                self.hardware.virtual_,
                read_sysreg!("cntv_ctl_el0"),
            ),
        ] {
            if self.held & bit != 0 && !hardware_asserted(ctl) {
                deactivate(intid);
                self.held &= !bit;
            }
        }
        let decided_at = self.decided_at.take();
        let now = if l2_runs {
            decided_at.unwrap_or_else(cpu::counter)
        } else {
            let now = cpu::counter();
            if self.defect != TimerDefect::NoIstatusRefresh {
                self.refresh_l2_istatus(page, now);
            }
            self.list_for_l1(page, l1_virtual_hcr, now);
            now
        };
        let (l2_physical, l2_virtual, _) = crate::nested::timer::l2_timers(page);
        let backed = match (l2_runs, self.defect) {
            (true, TimerDefect::NoL1Deadline) | (false, TimerDefect::NoL2Deadline) => None,
            (_, TimerDefect::NoL2PhysicalDeadline) if !l2_runs => Some(backed_by_hyp_timer(
                l2_runs,
                &self.l1_hyp,
                Timer::default(),
                l2_virtual,
                self.l2_software_offset(page),
            )),
            _ => Some(backed_by_hyp_timer(
                l2_runs,
                &self.l1_hyp,
                l2_physical,
                l2_virtual,
                self.l2_software_offset(page),
            )),
        };
        match hyp_timer_at_return(self.watchdog, backed.as_ref().map_or(&[], |b| &b[..]), now) {
            Some(cval) => {
                write_sysreg!("s3_4_c14_c2_2", cval); // CNTHP_CVAL_EL2
                write_sysreg!("s3_4_c14_c2_1", 1); // CNTHP_CTL_EL2: on
            }
            None => write_sysreg!("s3_4_c14_c2_1", 0),
        }
        cpu::isb();
    }

    /// L2's EL1 timers into the hardware (L1's EL2 timers kept by hv).
    fn load_l2(&mut self, page: &VncrPage) {
        self.l1_hyp = L1HypTimers {
            physical: hardware_physical(),
            virtual_: hardware_virtual(),
        };
        let (physical, virtual_, _) = crate::nested::timer::l2_timers(page);
        write_sysreg!("cntvoff_el2", self.l2_hardware_offset(page));
        // A non-VHE L1's CNTKCTL_EL1 encoding reaches the hardware
        // register, L2's for it, so only a VHE L1's (its CNTHCTL_EL2's low
        // bits) is swapped.
        if self.e2h {
            self.cnthctl = vhe_l1_cnthctl(self.cnthctl, read_sysreg!("cntkctl_el1"));
            write_sysreg!("cntkctl_el1", self.l2_cntkctl);
        }
        let cnthctl = match self.defect {
            TimerDefect::NoCnthctl => crate::sysregs::CNTHCTL_EL2,
            TimerDefect::NoCnthctlCounter => {
                l2_cnthctl(self.cnthctl, self.e2h) | crate::nested::timer::cnthctl::EL1PCTEN
            }
            _ => l2_cnthctl(self.cnthctl, self.e2h),
        };
        write_sysreg!("cnthctl_el2", cnthctl);
        set_hardware_physical(physical);
        set_hardware_virtual(virtual_);
        self.l2_loaded = true;
    }

    /// L2's EL1 timers back into the VNCR page (CTL with the hardware's
    /// ISTATUS), L1's EL2 timers into the hardware.
    fn save_l2(&mut self, page: &VncrPage) {
        let physical = hardware_physical();
        let virtual_ = hardware_virtual();
        page.set(CNTP_CTL_EL0, physical.ctl);
        page.set(CNTP_CVAL_EL0, physical.cval);
        page.set(CNTV_CTL_EL0, virtual_.ctl);
        page.set(CNTV_CVAL_EL0, virtual_.cval);
        write_sysreg!("cntvoff_el2", 0);
        write_sysreg!("cnthctl_el2", crate::sysregs::CNTHCTL_EL2);
        if self.e2h {
            self.l2_cntkctl = l2_cntkctl_at_exit(read_sysreg!("cntkctl_el1"));
            if self.defect != TimerDefect::NoCntkctlRestore {
                write_sysreg!("cntkctl_el1", vhe_l1_hardware_cntkctl(self.cnthctl));
            }
        }
        set_hardware_physical(self.l1_hyp.physical);
        set_hardware_virtual(self.l1_hyp.virtual_);
        self.l2_loaded = false;
    }

    /// L2's timers' CTL words in the VNCR page with ISTATUS as of now (L1
    /// reads them with CNTP/CNTV_CTL_EL02, no trap): a timer whose
    /// condition came while L1 ran reads ISTATUS at L1's next entry. A
    /// limit: between L1's exits the word does not change by itself.
    fn refresh_l2_istatus(&self, page: &VncrPage, count: u64) {
        let (physical, virtual_, _) = crate::nested::timer::l2_timers(page);
        // L1's CNTVOFF_EL2 (`timer-no-cntvoff-levels` keeps it here, so
        // that twin and `timer-no-cntvoff-istatus` each fail their check).
        let offset = if self.defect == TimerDefect::NoCntvoffIstatus {
            0
        } else {
            page.get(CNTVOFF_EL2)
        };
        page.set(CNTP_CTL_EL0, physical.ctl_read(count));
        page.set(CNTV_CTL_EL0, virtual_.ctl_read(count.wrapping_sub(offset)));
    }

    /// L1's timer PPIs with whether each wants an LR of its own interface
    /// at `count` (asserted and routed to its virtual EL2).
    fn wanted_in_lrs(&self, page: &VncrPage, l1_virtual_hcr: u64, count: u64) -> [(u32, bool); 4] {
        let routed = self.defect != TimerDefect::NoL1Irq && l1_takes_irqs_at_vel2(l1_virtual_hcr);
        let levels = self.levels(page, count).by_intid(&self.l1_ppis);
        levels.map(|(intid, level)| (intid, level && routed))
    }

    /// The timer PPIs [`Self::before_return`] will list for L1 (as L1
    /// runs: none while L2 runs), for the GIC's listing pass to leave LRs
    /// for those that rank above its interrupts
    /// (`nested::gic::list_forwarded`).
    pub fn l1_lr_candidates(&self, page: &VncrPage, l1_runs: bool) -> [(u32, bool); 4] {
        let wanted = self.wanted_in_lrs(page, page.hcr(), cpu::counter());
        wanted.map(|(intid, asserted)| (intid, asserted && l1_runs))
    }

    /// L1's timer PPIs (asserted at `count` and routed to its virtual EL2)
    /// in its own interface's list registers 1 onwards, with EOI
    /// maintenance (the module's comment).
    fn list_for_l1(&self, page: &VncrPage, l1_virtual_hcr: u64, count: u64) {
        let wanted = self.wanted_in_lrs(page, l1_virtual_hcr, count);
        let (before, count) = hardware_lrs();
        let mut after = before;
        // LR 0 carries L1's maintenance interrupt (`arch::nested_vgic`).
        let lrs = &mut after[1..count.max(1)];
        l1_timer_lrs(lrs, &wanted, self.defect != TimerDefect::NoEoiMaintenance);
        for (n, (&new, &old)) in lrs.iter().zip(&before[1..]).enumerate() {
            if new != old {
                super::gic::write_lr(n + 1, new);
            }
        }
    }

    /// L1's trapped MRS/MSR `access` of a timer register
    /// (`crate::nested::timer::TrappedTimer`; `value` is what an MSR
    /// writes), run while L1 runs (its EL2 timers in the hardware); None
    /// when `access` is not one.
    pub fn l1_access(
        &mut self,
        access: &SysRegAccess,
        value: u64,
        page: &VncrPage,
    ) -> Option<TimerAccess> {
        if access.op0 != 3 {
            return None;
        }
        let trapped =
            TrappedTimer::decode(access.op1, access.crn, access.crm, access.op2, self.e2h)?;
        let count = cpu::counter();
        let (which, register) = match trapped {
            // L1 runs: a VHE L1's low bits are the hardware CNTKCTL_EL1's.
            TrappedTimer::Cnthctl => {
                if access.read {
                    let cnthctl = if self.e2h {
                        vhe_l1_cnthctl(self.cnthctl, read_sysreg!("cntkctl_el1"))
                    } else {
                        self.cnthctl
                    };
                    return Some(TimerAccess::Read(cnthctl));
                }
                self.cnthctl = l1_cnthctl_write(value, self.e2h);
                if self.e2h {
                    write_sysreg!("cntkctl_el1", vhe_l1_hardware_cntkctl(self.cnthctl));
                    cpu::isb();
                }
                return Some(TimerAccess::Written);
            }
            TrappedTimer::L2Cntkctl => {
                if access.read {
                    return Some(TimerAccess::Read(self.l2_cntkctl));
                }
                self.l2_cntkctl = value & CNTKCTL_WRITABLE;
                return Some(TimerAccess::Written);
            }
            TrappedTimer::Timer(which, register) => (which, register),
        };
        // Each timer, its count, and where it is written back.
        let (timer, timer_count) = match which {
            WhichTimer::HypPhysical => (hardware_physical(), count),
            WhichTimer::HypVirtual => (hardware_virtual(), count),
            WhichTimer::L2Physical => (crate::nested::timer::l2_timers(page).0, count),
            WhichTimer::L2Virtual => (
                crate::nested::timer::l2_timers(page).1,
                count.wrapping_sub(page.get(CNTVOFF_EL2)),
            ),
        };
        if access.read {
            return Some(TimerAccess::Read(timer_read(&timer, register, timer_count)));
        }
        let written = timer_write(timer, register, value, timer_count);
        match which {
            WhichTimer::HypPhysical => set_hardware_physical(written),
            WhichTimer::HypVirtual => set_hardware_virtual(written),
            WhichTimer::L2Physical => {
                page.set(CNTP_CTL_EL0, written.ctl);
                page.set(CNTP_CVAL_EL0, written.cval);
            }
            WhichTimer::L2Virtual => {
                page.set(CNTV_CTL_EL0, written.ctl);
                page.set(CNTV_CVAL_EL0, written.cval);
            }
        }
        cpu::isb();
        Some(TimerAccess::Written)
    }
}
