//! L1's generic timers under FEAT_NV2, the portable rules (the hardware
//! side is `arch::nested_timer`).
//!
//! What L1's timer accesses do on QEMU 10 (`-cpu max`, HCR_EL2.{NV, NV2}
//! set, hv's own E2H = 0, CNTHCTL_EL2.{EL1PCTEN, EL1PCEN} = 1 and no ECV
//! traps), from the Arm ARM's access pseudocode and QEMU's
//! `target/arm/helper.c` (`gt_timer_access`, the `nv2_redirect_offset`s):
//! - A VHE L1 (NV1 = 0) reaches the hardware EL1 timers with its
//!   CNTP_*_EL0 and CNTV_*_EL0 encodings and the counters without a
//!   trap: with its E2H = 1 these are its EL2 physical and virtual timers
//!   (CNTHP, CNTHV), so while L1 runs the hardware EL1 physical timer *is*
//!   L1's CNTHP and the EL1 virtual timer its CNTHV. hv keeps the hardware
//!   CNTVOFF_EL2 at 0 while L1 runs: L1's virtual count at EL2 with
//!   E2H = 1 is the physical count (no offset), and so is the EL2 virtual
//!   timer's comparison (QEMU: offset 0 for GTIMER_HYPVIRT).
//! - Its `_EL02` encodings of CNTP/CNTV_CTL and CVAL are words of the
//!   VNCR page ([`CNTV_CVAL_EL0`] ...): L2's EL1 timers as L1 programs
//!   them. CNTVOFF_EL2 is a VNCR word too (`vncr::CNTVOFF_EL2`).
//! - CNTP/CNTV_TVAL_EL02 (no VNCR slot), CNTHCTL_EL2, CNTHP_*_EL2 and
//!   CNTHV_*_EL2 trap (EC 0x18): hv emulates them ([`TrappedTimer`]).
//! - A non-VHE L1 (NV1 = 1) reaches the VNCR words with its CNTP/CNTV_CTL
//!   and CVAL_EL0 encodings (they are L2's EL1 timers for it); its
//!   CNTHP_*_EL2 trap as above and run on the hardware EL1 physical timer
//!   while it runs. Its CNTP/CNTV_TVAL_EL0 have no VNCR slot and do not
//!   trap on QEMU 10 (nor in KVM's list of NV traps): they reach the
//!   hardware EL1 timers, which then hold its CNTHP and nothing, not L2's
//!   timers (a gap: a non-VHE L1's timers are not run on QEMU). hv
//!   computes them from the VNCR words where they do trap.
//!
//! While L2 runs the hardware EL1 timers are L2's (loaded from the VNCR
//! words, CNTVOFF_EL2 = L1's), and L1's EL2 timers are kept by hv
//! ([`Timer`]); their earliest deadline is given to hv's EL2 physical
//! timer (the watchdog's, [`hyp_timer_cval`]), so an L1 timer that expires
//! while L2 runs takes L2 out to L1. Which of L1's timer PPIs are asserted
//! is [`TimerLevels`].

use super::vncr::VncrPage;

/// VNCR page byte offsets of L2's EL1 timers (DDI 0487, VNCR_EL2 table).
pub const CNTV_CVAL_EL0: usize = 0x168;
pub const CNTV_CTL_EL0: usize = 0x170;
pub const CNTP_CVAL_EL0: usize = 0x178;
pub const CNTP_CTL_EL0: usize = 0x180;

/// CNT*_CTL fields.
pub mod ctl {
    pub const ENABLE: u64 = 1 << 0;
    pub const IMASK: u64 = 1 << 1;
    pub const ISTATUS: u64 = 1 << 2;
    /// The bits software writes (ISTATUS is read-only).
    pub const WRITABLE: u64 = ENABLE | IMASK;
}

/// One timer's state: its CTL (ENABLE, IMASK; ISTATUS is computed) and
/// CVAL, compared with a count (physical, or virtual: physical minus an
/// offset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timer {
    pub ctl: u64,
    pub cval: u64,
}

impl Timer {
    /// ISTATUS: enabled and the count has reached CVAL (an unsigned
    /// comparison, DDI 0487 "Operation of the CompareValue views").
    pub const fn condition_met(&self, count: u64) -> bool {
        self.ctl & ctl::ENABLE != 0 && count >= self.cval
    }

    /// The timer's interrupt output: the condition met and not masked.
    pub const fn asserted(&self, count: u64) -> bool {
        self.condition_met(count) && self.ctl & ctl::IMASK == 0
    }

    /// CTL as read at `count`: ENABLE, IMASK, and ISTATUS.
    pub const fn ctl_read(&self, count: u64) -> u64 {
        self.ctl & ctl::WRITABLE
            | if self.condition_met(count) {
                ctl::ISTATUS
            } else {
                0
            }
    }

    /// TVAL as read at `count`: CVAL - count, its low 32 bits (the upper
    /// 32 bits of CNT*_TVAL are RES0).
    pub const fn tval_read(&self, count: u64) -> u64 {
        self.cval.wrapping_sub(count) & 0xffff_ffff
    }

    /// CVAL after a TVAL write of `value` at `count`: count plus the
    /// sign-extended low 32 bits.
    pub const fn cval_from_tval(value: u64, count: u64) -> u64 {
        count.wrapping_add(value as u32 as i32 as i64 as u64)
    }

    /// The physical count at which the timer's output rises, for a count
    /// that is the physical one minus `offset`; None if it never does
    /// (disabled, masked, or its CVAL beyond the physical count's range).
    pub const fn deadline(&self, offset: u64) -> Option<u64> {
        if self.ctl & ctl::ENABLE == 0 || self.ctl & ctl::IMASK != 0 {
            return None;
        }
        self.cval.checked_add(offset)
    }

    /// The first physical count after `count` at which the output rises,
    /// for a count that is the physical one minus `offset` (wrapping, as
    /// the virtual count does); None if it never does (disabled, masked,
    /// or beyond the physical count's range) or is high already at
    /// `count` (its level is given as it is; a hardware timer given a
    /// past deadline would interrupt hv for ever).
    pub const fn next_assertion(&self, count: u64, offset: u64) -> Option<u64> {
        if self.ctl & ctl::ENABLE == 0 || self.ctl & ctl::IMASK != 0 {
            return None;
        }
        let own = count.wrapping_sub(offset);
        if own >= self.cval {
            return None;
        }
        // The timer's own count reaches CVAL before it wraps.
        count.checked_add(self.cval - own)
    }
}

/// A hardware timer's output from its CTL as the hardware reads it
/// (ISTATUS computed by the hardware with its own count and offset):
/// enabled, condition met, not masked.
pub const fn hardware_asserted(ctl_read: u64) -> bool {
    ctl_read & (ctl::ENABLE | ctl::IMASK | ctl::ISTATUS) == ctl::ENABLE | ctl::ISTATUS
}

/// L1's EL2 physical and virtual timers (CNTHP, CNTHV), which hv keeps
/// while L2 runs (while L1 runs they are the hardware EL1 timers). Both
/// count the physical count (the EL2 virtual timer of an E2H = 1 L1 has
/// no offset).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L1HypTimers {
    pub physical: Timer,
    pub virtual_: Timer,
}

impl L1HypTimers {
    /// The earliest physical count at which one of them asserts.
    pub fn deadline(&self) -> Option<u64> {
        match (self.physical.deadline(0), self.virtual_.deadline(0)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The earliest [`Timer::next_assertion`] after `count` of `timers`
/// (each with its offset).
pub fn earliest_assertion(timers: &[(Timer, u64)], count: u64) -> Option<u64> {
    timers
        .iter()
        .filter_map(|(timer, offset)| timer.next_assertion(count, *offset))
        .min()
}

/// The guest timers whose interrupts hv's EL2 physical timer stands in
/// for at a return to the guest, each with its offset: while L2 runs,
/// L1's EL2 timers (hv's copy, `l1_hyp`; the hardware EL1 timers are
/// L2's); while L1 runs, L2's EL1 timers from the VNCR page
/// (`l2_physical`, and `l2_virtual` with L1's CNTVOFF_EL2 `cntvoff`),
/// which then have no hardware timer of their own (review 40 R40-4: an
/// L2 timer expiring while L1 ran reached L1 only at its next exit),
/// while hv's copy of L1's is stale (L1's are the hardware's).
pub fn backed_by_hyp_timer(
    l2_runs: bool,
    l1_hyp: &L1HypTimers,
    l2_physical: Timer,
    l2_virtual: Timer,
    cntvoff: u64,
) -> [(Timer, u64); 2] {
    if l2_runs {
        [(l1_hyp.physical, 0), (l1_hyp.virtual_, 0)]
    } else {
        [(l2_physical, 0), (l2_virtual, cntvoff)]
    }
}

/// hv's EL2 physical timer's CVAL at a return to the guest (None: off):
/// the earlier of the watchdog's deadline `watchdog` (None on a CPU
/// without one) and the first assertion after `count` of the `backed`
/// guest timers ([`backed_by_hyp_timer`]); `count` is the one at which hv
/// decided which of them are high already (they are delivered as levels;
/// one rising after it is still armed, review 40 R40-1). The watchdog is
/// kept whatever the guest's deadlines (a guest CVAL near the end of the
/// count does not push it out).
pub fn hyp_timer_at_return(
    watchdog: Option<u64>,
    backed: &[(Timer, u64)],
    count: u64,
) -> Option<u64> {
    hyp_timer_cval(watchdog, earliest_assertion(backed, count))
}

/// Whether one of L1's timer PPIs `levels` (INTID, asserted and routed to
/// its virtual EL2) is signalled to L1 by its own virtual interface, whose
/// list registers are `lrs` and ICH_VMCR_EL2 `vmcr`: L1's group 1 enabled
/// (VENG1), the PPIs' priority (`vgic::L1_MAINTENANCE_PRIORITY`, which
/// hv lists them with) above L1's priority mask (VPMR), and one asserted
/// and not active there (an active one, which L1 acknowledged and has
/// not deactivated, is not signalled again until it is deactivated:
/// GICv3's active state of a level interrupt; by L1, or by L2 through an
/// HW = 1 list register naming it, as KVM forwards L2's timer:
/// `vgic::deactivate_listed`, review 40 R40-2). Used while L2 runs, where
/// a signalled PPI takes L2 out to L1. L1's running priority is not
/// consulted (a limit: a timer PPI is taken out of L2 while L1 is in a
/// handler of higher priority).
pub fn signalled_to_l1(levels: &[(u32, bool)], lrs: &[u64], vmcr: u64) -> bool {
    use super::vgic::{lr, vmcr as fields, LrState, L1_MAINTENANCE_PRIORITY};
    if vmcr & fields::VENG1 == 0 || (vmcr >> 24) & 0xff <= u64::from(L1_MAINTENANCE_PRIORITY) {
        return false;
    }
    levels.iter().any(|&(intid, asserted)| {
        asserted
            && !lrs.iter().any(|&v| {
                v & lr::VINTID_MASK == u64::from(intid)
                    && matches!(LrState::of(v), LrState::Active | LrState::PendingActive)
            })
    })
}

/// L1's own virtual interface's list registers `lrs` (LR 1 onwards: LR 0
/// carries its maintenance interrupt) made to follow its timer PPIs
/// `levels` (INTID, asserted and taken at L1's virtual EL2): each PPI an
/// LR holds goes through the level transitions of
/// `vgic::l1_maintenance_lr` (withdrawn when no longer asserted and not
/// yet acknowledged; an active one stays until L1 deactivates it); an
/// asserted one not held goes into the first invalid LR. With every LR in
/// use it waits for a later exit of L1 (a limit: hv samples the levels at
/// L1's exits, as for the maintenance interrupt).
///
/// With `eoi_maintenance` each entry hv lists has its EOI bit (HW = 0):
/// L1's deactivation of it (which does not trap) raises the hardware's
/// EOI maintenance interrupt, hv's, so hv sees it at once (review 40
/// R40-3: the hardware timer PPI hv holds active for the level, and the
/// level of a timer L1 re-armed without a trap, were otherwise looked at
/// again only at L1's next exit, so its next expiry waited for one). An
/// entry L1 deactivated (invalid with EOI set, which keeps the
/// maintenance interrupt asserted, ICH_EISR_EL2) is cleared here, at the
/// exit it caused.
pub fn l1_timer_lrs(lrs: &mut [u64], levels: &[(u32, bool)], eoi_maintenance: bool) {
    use super::vgic::{free_deactivated, l1_maintenance_lr, lr, LrState};
    free_deactivated(lrs);
    for &(intid, asserted) in levels {
        let held = lrs.iter().position(|&v| {
            LrState::of(v) != LrState::Invalid && v & lr::VINTID_MASK == u64::from(intid)
        });
        let slot = match held {
            Some(n) => Some(n),
            None if asserted => lrs.iter().position(|&v| LrState::of(v) == LrState::Invalid),
            None => None,
        };
        if let Some(n) = slot {
            let current = if held.is_some() { lrs[n] } else { 0 };
            let next = l1_maintenance_lr(current, asserted, intid);
            lrs[n] = if held.is_none() && eoi_maintenance && next != 0 {
                next | lr::EOI
            } else {
                next
            };
        }
    }
}

/// L2's EL1 timers as L1 left them in its VNCR page, with L1's
/// CNTVOFF_EL2 (the virtual timer's offset).
pub fn l2_timers(page: &VncrPage) -> (Timer, Timer, u64) {
    let physical = Timer {
        ctl: page.get(CNTP_CTL_EL0),
        cval: page.get(CNTP_CVAL_EL0),
    };
    let virtual_ = Timer {
        ctl: page.get(CNTV_CTL_EL0),
        cval: page.get(CNTV_CVAL_EL0),
    };
    (physical, virtual_, page.get(super::vncr::CNTVOFF_EL2))
}

/// The levels of L1's four timer PPIs (its view: the "hardware" timer
/// interrupts of the PE it thinks it owns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerLevels {
    /// CNTHP (PPI 26 on QEMU's virt board).
    pub hyp_physical: bool,
    /// CNTHV (PPI 28).
    pub hyp_virtual: bool,
    /// The EL1 virtual timer, L2's (PPI 27).
    pub virtual_: bool,
    /// The EL1 physical timer, L2's (PPI 30).
    pub physical: bool,
}

impl TimerLevels {
    /// From L1's EL2 timers `hyp`, L2's EL1 timers (`l2_physical`,
    /// `l2_virtual` with L1's CNTVOFF_EL2 `cntvoff`), at physical count
    /// `count`.
    pub fn at(
        hyp: &L1HypTimers,
        l2_physical: &Timer,
        l2_virtual: &Timer,
        cntvoff: u64,
        count: u64,
    ) -> TimerLevels {
        TimerLevels {
            hyp_physical: hyp.physical.asserted(count),
            hyp_virtual: hyp.virtual_.asserted(count),
            virtual_: l2_virtual.asserted(count.wrapping_sub(cntvoff)),
            physical: l2_physical.asserted(count),
        }
    }

    /// Whether any is asserted.
    pub const fn any(&self) -> bool {
        self.hyp_physical || self.hyp_virtual || self.virtual_ || self.physical
    }

    /// Each PPI (from `ppis`) with its level, in the order hv lists them.
    pub const fn by_intid(&self, ppis: &TimerPpis) -> [(u32, bool); 4] {
        [
            (ppis.hyp_physical, self.hyp_physical),
            (ppis.hyp_virtual, self.hyp_virtual),
            (ppis.virtual_, self.virtual_),
            (ppis.physical, self.physical),
        ]
    }
}

/// The INTIDs of L1's timer PPIs (from the platform's device tree; the
/// EL2 virtual timer's, absent from a four-interrupt timer node, is the
/// SBSA's 28).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerPpis {
    pub hyp_physical: u32,
    pub hyp_virtual: u32,
    pub virtual_: u32,
    pub physical: u32,
}

/// The EL2 virtual timer's PPI when the device tree does not name one
/// (Arm BSA/SBSA: PPI 12, INTID 28).
pub const DEFAULT_HYP_VIRTUAL_PPI: u32 = 28;

/// hv's EL2 physical timer's CVAL (None: off) for a vCPU with watchdog
/// deadline `watchdog` (None on a CPU without one) and L1's EL2 timers'
/// earliest deadline `l1` (None while L1 runs: its timers are then the
/// hardware's, or when neither will assert).
pub fn hyp_timer_cval(watchdog: Option<u64>, l1: Option<u64>) -> Option<u64> {
    match (watchdog, l1) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// CNTHCTL_EL2 bits (E2H = 0 layout: hv's own, a non-VHE L1's).
pub mod cnthctl {
    /// EL1/EL0 accesses to the physical counter not trapped.
    pub const EL1PCTEN: u64 = 1 << 0;
    /// EL1/EL0 accesses to the EL1 physical timer not trapped.
    pub const EL1PCEN: u64 = 1 << 1;
    /// The event stream: EVNTEN, EVNTDIR, EVNTI.
    pub const EVENT_STREAM: u64 = 0xfc;
    /// E2H = 1 layout: EL0PCTEN, EL0VCTEN, the event stream, EL0VTEN,
    /// EL0PTEN, EL1PCTEN (bit 10), EL1PTEN (bit 11).
    pub const E2H_EL1PCTEN: u64 = 1 << 10;
    pub const E2H_EL1PTEN: u64 = 1 << 11;
    pub const E2H_WRITABLE: u64 = 0xfff;
    /// E2H = 0 layout's writable bits (no ECV shown: EL1PCTEN, EL1PCEN,
    /// the event stream).
    pub const WRITABLE: u64 = 0xff;
}

/// L1's virtual CNTHCTL_EL2 at its reset: UNKNOWN in the architecture;
/// hv picks the value that traps nothing of L2's (EL1PCTEN and EL1PCEN,
/// or their E2H = 1 forms, set), so an L1 that never writes it runs L2
/// as hv's own guests run.
pub const fn l1_cnthctl_reset(e2h: bool) -> u64 {
    if e2h {
        cnthctl::E2H_EL1PCTEN | cnthctl::E2H_EL1PTEN
    } else {
        cnthctl::EL1PCTEN | cnthctl::EL1PCEN
    }
}

/// L1's CNTHCTL_EL2 write `value` as kept (its RES0 bits clear: no ECV,
/// CNTVMASK/CNTPMASK or EL1NV*CT shown).
pub const fn l1_cnthctl_write(value: u64, e2h: bool) -> u64 {
    value
        & if e2h {
            cnthctl::E2H_WRITABLE
        } else {
            cnthctl::WRITABLE
        }
}

/// The hardware CNTHCTL_EL2 (hv's E2H = 0 layout) while L2 runs, from
/// L1's virtual one: L2's physical counter and timer accesses trap
/// exactly when L1 asked (its EL1PCTEN/EL1PCEN, or with E2H = 1
/// EL1PCTEN/EL1PTEN, clear), and each such trap is L1's (forwarded). The
/// event stream is not given to L2 (a limit: WFE completes on other
/// events).
pub const fn l2_cnthctl(l1_cnthctl: u64, e2h: bool) -> u64 {
    let (counter, timer) = if e2h {
        (cnthctl::E2H_EL1PCTEN, cnthctl::E2H_EL1PTEN)
    } else {
        (cnthctl::EL1PCTEN, cnthctl::EL1PCEN)
    };
    (if l1_cnthctl & counter != 0 {
        cnthctl::EL1PCTEN
    } else {
        0
    }) | (if l1_cnthctl & timer != 0 {
        cnthctl::EL1PCEN
    } else {
        0
    })
}

/// CNTKCTL_EL1's bits (EL0PCTEN, EL0VCTEN, the event stream, EL0VTEN,
/// EL0PTEN; EVNTIS needs FEAT_ECV, not shown). They are also bits [9:0]
/// of CNTHCTL_EL2's E2H = 1 layout, with the same meaning.
pub const CNTKCTL_WRITABLE: u64 = 0x3ff;

/// A VHE L1's CNTHCTL_EL2 while it runs: at its (virtual) EL2 with
/// E2H = 1 its CNTKCTL_EL1 encoding *is* CNTHCTL_EL2 (FEAT_VHE's
/// redirection), and under FEAT_NV2 that encoding reaches the hardware
/// CNTKCTL_EL1 without a trap (no VNCR slot), so bits [9:0] are the
/// hardware's `hardware_cntkctl` and bits 10/11 (EL1PCTEN, EL1PTEN: RES0
/// in CNTKCTL_EL1) hv's copy `kept`, which only the trapped CNTHCTL_EL2
/// encoding writes (a limit: bits 10/11 written through CNTKCTL_EL1 are
/// lost. Nothing traps that encoding at EL1: its accessor checks no
/// HCR_EL2, FEAT_FGT or FEAT_ECV control, DDI 0487 D24.10). Bits \[63:12\]
/// are RES0 for L1 (FEAT_ECV hidden) and read 0 here, whatever an ECV
/// hardware CNTKCTL_EL1 holds (EVNTIS, bit 17).
pub const fn vhe_l1_cnthctl(kept: u64, hardware_cntkctl: u64) -> u64 {
    hardware_cntkctl & CNTKCTL_WRITABLE | kept & !CNTKCTL_WRITABLE
}

/// L2's CNTKCTL_EL1 as hv keeps it at L2's exit, from the hardware one L2
/// wrote without a trap: bits \[9:0\]. L1 is shown no FEAT_ECV, so L2 is
/// too and EVNTIS (bit 17) and bits \[63:10\] are RES0 for both: L1's
/// CNTKCTL_EL12 reads them as 0. CONSTRAINED choice where the hardware has
/// FEAT_ECV and L2 wrote EVNTIS 1 anyway: it takes effect and reads back
/// until L2's next exit (the encoding cannot be trapped), then reads 0.
pub const fn l2_cntkctl_at_exit(hardware_cntkctl: u64) -> u64 {
    hardware_cntkctl & CNTKCTL_WRITABLE
}

/// The hardware CNTKCTL_EL1 while a VHE L1 runs: its CNTHCTL_EL2's bits
/// [9:0] (its EL0's counter and timer access, event stream).
pub const fn vhe_l1_hardware_cntkctl(cnthctl: u64) -> u64 {
    cnthctl & CNTKCTL_WRITABLE
}

/// Which timer register a trapped access of L1 names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerRegister {
    Ctl,
    Cval,
    Tval,
}

/// Which timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhichTimer {
    /// L1's EL2 physical timer (CNTHP; a VHE L1's CNTP at EL2).
    HypPhysical,
    /// L1's EL2 virtual timer (CNTHV; a VHE L1's CNTV at EL2).
    HypVirtual,
    /// L2's EL1 physical timer (its VNCR words).
    L2Physical,
    /// L2's EL1 virtual timer (its VNCR words, L1's CNTVOFF_EL2).
    L2Virtual,
}

/// An L1 timer access that traps (EC 0x18) and hv emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrappedTimer {
    /// CNTHCTL_EL2.
    Cnthctl,
    /// A VHE L1's CNTKCTL_EL12: L2's CNTKCTL_EL1 (no VNCR slot), which
    /// hv keeps and swaps into the hardware while L2 runs.
    L2Cntkctl,
    /// A timer register.
    Timer(WhichTimer, TimerRegister),
}

impl TrappedTimer {
    /// The trapped MRS/MSR (op0 3) `op1, CRn, CRm, op2` of an L1 with
    /// E2H = `e2h` (VHE) as a timer access, or None (not a timer register
    /// hv emulates, or one that does not trap for this L1). CNTHV_*_EL2
    /// exist only with FEAT_VHE (shown to a VHE L1 only).
    pub const fn decode(op1: u8, crn: u8, crm: u8, op2: u8, e2h: bool) -> Option<TrappedTimer> {
        if crn != 14 {
            return None;
        }
        if op1 == 4 && crm == 1 && op2 == 0 {
            return Some(TrappedTimer::Cnthctl);
        }
        if op1 == 5 && crm == 1 && op2 == 0 && e2h {
            return Some(TrappedTimer::L2Cntkctl);
        }
        let register = match op2 {
            0 => TimerRegister::Tval,
            1 => TimerRegister::Ctl,
            2 => TimerRegister::Cval,
            _ => return None,
        };
        let which = match (op1, crm) {
            (4, 2) => WhichTimer::HypPhysical,
            (4, 3) if e2h => WhichTimer::HypVirtual,
            // The `_EL02` TVALs of a VHE L1 (CTL/CVAL are VNCR words).
            (5, 2) if e2h && op2 == 0 => WhichTimer::L2Physical,
            (5, 3) if e2h && op2 == 0 => WhichTimer::L2Virtual,
            // A non-VHE L1's EL1-timer TVALs (CTL/CVAL are VNCR words),
            // where an implementation traps them (QEMU 10 does not).
            (3, 2) if !e2h && op2 == 0 => WhichTimer::L2Physical,
            (3, 3) if !e2h && op2 == 0 => WhichTimer::L2Virtual,
            _ => return None,
        };
        Some(TrappedTimer::Timer(which, register))
    }
}

/// A read of `register` of `timer` at `count` (the timer's own count).
pub const fn timer_read(timer: &Timer, register: TimerRegister, count: u64) -> u64 {
    match register {
        TimerRegister::Ctl => timer.ctl_read(count),
        TimerRegister::Cval => timer.cval,
        TimerRegister::Tval => timer.tval_read(count),
    }
}

/// `timer` after a write of `value` to `register` at `count`.
pub const fn timer_write(timer: Timer, register: TimerRegister, value: u64, count: u64) -> Timer {
    match register {
        TimerRegister::Ctl => Timer {
            ctl: value & ctl::WRITABLE,
            cval: timer.cval,
        },
        TimerRegister::Cval => Timer {
            ctl: timer.ctl,
            cval: value,
        },
        TimerRegister::Tval => Timer {
            ctl: timer.ctl,
            cval: Timer::cval_from_tval(value, count),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: u64 = ctl::ENABLE;

    #[test]
    fn vncr_offsets_are_the_architected_ones() {
        // DDI 0487, VNCR_EL2 table (Linux's vncr_mapping.h has the same).
        assert_eq!(
            (CNTV_CVAL_EL0, CNTV_CTL_EL0, CNTP_CVAL_EL0, CNTP_CTL_EL0),
            (0x168, 0x170, 0x178, 0x180)
        );
        assert_eq!(super::super::vncr::CNTVOFF_EL2, 0x060);
        for r in super::super::vncr::El1Register::ALL {
            assert!(!(CNTV_CVAL_EL0..=CNTP_CTL_EL0).contains(&r.vncr_offset()));
        }
    }

    #[test]
    fn condition_status_and_output() {
        let t = Timer { ctl: ON, cval: 100 };
        assert!(!t.condition_met(99));
        assert!(t.condition_met(100) && t.asserted(100));
        assert_eq!(t.ctl_read(99), ON);
        assert_eq!(t.ctl_read(100), ON | ctl::ISTATUS);
        let masked = Timer {
            ctl: ON | ctl::IMASK,
            cval: 100,
        };
        // Masked: ISTATUS still reads 1, the output stays low.
        assert!(masked.condition_met(200) && !masked.asserted(200));
        assert_eq!(masked.ctl_read(200), ON | ctl::IMASK | ctl::ISTATUS);
        // Disabled: ISTATUS 0 whatever the count.
        let off = Timer { ctl: 0, cval: 0 };
        assert!(!off.condition_met(u64::MAX) && off.ctl_read(5) == 0);
        // A written ISTATUS is ignored.
        let t = timer_write(t, TimerRegister::Ctl, ctl::ISTATUS, 0);
        assert_eq!(t.ctl, 0);
    }

    #[test]
    fn tval_is_32_bits_signed_on_write() {
        let t = Timer { ctl: ON, cval: 0 };
        let t = timer_write(t, TimerRegister::Tval, 1000, 5000);
        assert_eq!(t.cval, 6000);
        assert_eq!(timer_read(&t, TimerRegister::Tval, 5500), 500);
        // Past CVAL: the 32-bit difference, negative.
        assert_eq!(timer_read(&t, TimerRegister::Tval, 6001), 0xffff_ffff);
        // A negative TVAL (bit 31 set) moves CVAL back; upper bits ignored.
        let t = timer_write(t, TimerRegister::Tval, 0xdead_0000_ffff_fff0, 5000);
        assert_eq!(t.cval, 4984);
    }

    #[test]
    fn deadlines_with_offsets() {
        let t = Timer { ctl: ON, cval: 100 };
        assert_eq!(t.deadline(0), Some(100));
        assert_eq!(t.deadline(50), Some(150));
        assert_eq!(t.deadline(u64::MAX), None);
        let masked = Timer {
            ctl: ON | ctl::IMASK,
            cval: 1,
        };
        assert_eq!(masked.deadline(0), None);
        let hyp = L1HypTimers {
            physical: Timer { ctl: ON, cval: 300 },
            virtual_: Timer { ctl: ON, cval: 200 },
        };
        assert_eq!(hyp.deadline(), Some(200));
        assert_eq!(L1HypTimers::default().deadline(), None);
        assert_eq!(hyp_timer_cval(Some(1000), hyp.deadline()), Some(200));
        assert_eq!(hyp_timer_cval(Some(100), hyp.deadline()), Some(100));
        assert_eq!(hyp_timer_cval(None, Some(7)), Some(7));
        assert_eq!(hyp_timer_cval(Some(9), None), Some(9));
        assert_eq!(hyp_timer_cval(None, None), None);
    }

    #[test]
    fn levels_apply_cntvoff_to_l2_virtual_only() {
        let hyp = L1HypTimers {
            physical: Timer { ctl: ON, cval: 500 },
            virtual_: Timer { ctl: ON, cval: 900 },
        };
        let l2p = Timer { ctl: ON, cval: 700 };
        let l2v = Timer { ctl: ON, cval: 100 };
        // Count 600, offset 550: L2's virtual count 50, below its CVAL.
        let l = TimerLevels::at(&hyp, &l2p, &l2v, 550, 600);
        assert_eq!(
            l,
            TimerLevels {
                hyp_physical: true,
                hyp_virtual: false,
                virtual_: false,
                physical: false
            }
        );
        // Without the offset L2's virtual timer would have fired.
        assert!(TimerLevels::at(&hyp, &l2p, &l2v, 0, 600).virtual_);
        let l = TimerLevels::at(&hyp, &l2p, &l2v, 550, 950);
        assert!(l.hyp_virtual && l.physical && l.virtual_ && l.any());
        let ppis = TimerPpis {
            hyp_physical: 26,
            hyp_virtual: 28,
            virtual_: 27,
            physical: 30,
        };
        assert_eq!(
            l.by_intid(&ppis),
            [(26, true), (28, true), (27, true), (30, true)]
        );
        let page = VncrPage::default();
        page.set(CNTV_CTL_EL0, ON);
        page.set(CNTV_CVAL_EL0, 100);
        page.set(super::super::vncr::CNTVOFF_EL2, 550);
        let (p, v, off) = l2_timers(&page);
        assert_eq!((p, v, off), (Timer::default(), l2v, 550));
    }

    #[test]
    fn hardware_level_and_pending_deadline() {
        assert!(hardware_asserted(ON | ctl::ISTATUS));
        assert!(!hardware_asserted(ON | ctl::ISTATUS | ctl::IMASK));
        assert!(!hardware_asserted(ON));
        assert!(!hardware_asserted(ctl::ISTATUS));
        let hyp = L1HypTimers {
            physical: Timer { ctl: ON, cval: 300 },
            virtual_: Timer { ctl: ON, cval: 200 },
        };
        let both = [(hyp.physical, 0), (hyp.virtual_, 0)];
        assert_eq!(earliest_assertion(&both, 100), Some(200));
        // The virtual one is asserted already at 250: only the physical.
        assert_eq!(earliest_assertion(&both, 250), Some(300));
        assert_eq!(earliest_assertion(&both, 300), None);
    }

    #[test]
    fn signalled_unless_active_in_l1_interface() {
        use super::super::vgic::lr;
        let active = |intid: u64| lr::ACTIVE << lr::STATE_SHIFT | lr::GROUP1 | intid;
        let pending = |intid: u64| lr::PENDING << lr::STATE_SHIFT | lr::GROUP1 | intid;
        let pending_active = |intid: u64| 0b11 << lr::STATE_SHIFT | intid;
        use super::super::vgic::{vmcr, L1_MAINTENANCE_PRIORITY};
        // L1's group 1 on, its priority mask open.
        let open = vmcr::VENG1 | 0xff << 24;
        // Asserted, not listed or listed pending: signalled.
        assert!(signalled_to_l1(&[(26, true)], &[0, 0], open));
        assert!(signalled_to_l1(&[(26, true)], &[pending(26)], open));
        // Active (or pending and active) in L1's interface: not again.
        assert!(!signalled_to_l1(&[(26, true)], &[active(26)], open));
        assert!(!signalled_to_l1(&[(26, true)], &[pending_active(26)], open));
        // Another PPI's active entry does not hide this one.
        assert!(signalled_to_l1(
            &[(26, false), (27, true)],
            &[active(26)],
            open
        ));
        // Nothing asserted: nothing signalled.
        assert!(!signalled_to_l1(
            &[(26, false), (27, false)],
            &[pending(26)],
            open
        ));
        // Group 1 off, or a priority mask at or above the PPIs' priority:
        // not signalled; just below it: signalled.
        assert!(!signalled_to_l1(&[(26, true)], &[0], 0xff << 24));
        let at = u64::from(L1_MAINTENANCE_PRIORITY) << 24 | vmcr::VENG1;
        assert!(!signalled_to_l1(&[(26, true)], &[0], at));
        assert!(signalled_to_l1(&[(26, true)], &[0], at + (1 << 24)));
    }

    #[test]
    fn l2_eoi_of_a_hw_entry_lets_l1_timer_ppi_come_again() {
        // Review 40 R40-2, KVM's way: L1 takes L2's virtual timer as its
        // PPI 27, only priority-drops it, and lists it for L2 with HW = 1.
        use super::super::vgic::{deactivate_listed, lr, vmcr, L1Interface, LrState, Shape};
        let shape = Shape::from_vtr(0x9000_0003);
        let open = vmcr::VENG1 | 0xff << 24;
        let levels = [(27, true)];
        // L1's own interface: PPI 27 listed by hv, acknowledged by L1.
        let mut own = [0u64; 3];
        l1_timer_lrs(&mut own, &levels, true);
        own[0] = own[0] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        assert!(!signalled_to_l1(&levels, &own, open));
        // L1's LR 0 for L2: vINTID 27, HW = 1, pINTID 27, pending.
        let mut for_l2 = L1Interface::default();
        for_l2.lrs[0] = lr::PENDING << lr::STATE_SHIFT
            | lr::HW
            | 27 << 32
            | lr::GROUP1
            | 0xa0 << lr::PRIORITY_SHIFT
            | 27;
        // L2 acknowledges and EOIs it on the hardware form: invalid.
        let mut hardware = for_l2.to_hardware(&shape);
        assert_ne!(hardware.lrs[0] & lr::EOI, 0, "the exit at L2's EOI");
        hardware.lrs[0] &= !lr::STATE_MASK;
        let deactivated = for_l2.hw_deactivations(&hardware, &shape);
        assert_eq!(&deactivated[..], &[27]);
        for &intid in &deactivated {
            assert!(deactivate_listed(&mut own, intid));
        }
        // PPI 27 is no longer active for L1: the timer, asserted again,
        // is signalled (takes L2 out) and listed pending at L1's return.
        assert!(signalled_to_l1(&levels, &own, open));
        l1_timer_lrs(&mut own, &levels, true);
        assert_eq!(LrState::of(own[0]), LrState::Pending);
        // L1 reads its LR back invalid, HW and pINTID kept.
        let back = for_l2.written_back(&hardware, &shape);
        assert_eq!(back.lrs[0], for_l2.lrs[0] & !lr::STATE_MASK);
    }

    #[test]
    fn timer_ppis_in_l1_list_registers() {
        use super::super::vgic::{lr, LrState};
        let state = |v: u64| LrState::of(v);
        // LR 1-3 of a 4-LR interface; one holds a foreign active entry.
        let foreign = lr::ACTIVE << lr::STATE_SHIFT | 99;
        let mut lrs = [0, foreign, 0];
        l1_timer_lrs(
            &mut lrs,
            &[(26, true), (28, false), (27, true), (30, true)],
            false,
        );
        // 26 and 27 placed in the free LRs; 30 waits (none free); 28 not
        // asserted, not listed.
        assert_eq!(lrs[0] & lr::VINTID_MASK, 26);
        assert_eq!(state(lrs[0]), LrState::Pending);
        assert_eq!(lrs[1], foreign);
        assert_eq!(lrs[2] & lr::VINTID_MASK, 27);
        assert_ne!(lrs[0] & lr::GROUP1, 0);
        // Again: nothing doubled.
        let before = lrs;
        l1_timer_lrs(&mut lrs, &[(26, true), (27, true)], false);
        assert_eq!(lrs, before);
        // 26 no longer asserted while pending: withdrawn; 27 acknowledged
        // (active) and dropped: stays active until L1 deactivates it.
        lrs[2] = lrs[2] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        l1_timer_lrs(&mut lrs, &[(26, false), (27, false)], false);
        assert_eq!(state(lrs[0]), LrState::Invalid);
        assert_eq!(state(lrs[2]), LrState::Active);
        // Active and asserted again: left as it is (pending again once L1
        // deactivates it and hv samples the level).
        l1_timer_lrs(&mut lrs, &[(27, true)], false);
        assert_eq!(state(lrs[2]), LrState::Active);
        // An invalid LR with a stale vINTID is free, not "held".
        let mut lrs = [27, 0];
        l1_timer_lrs(&mut lrs, &[(27, true)], false);
        assert_eq!(state(lrs[0]), LrState::Pending);
        assert_eq!(lrs[1], 0);
    }

    #[test]
    fn timer_lrs_with_eoi_maintenance() {
        use super::super::vgic::{eisr, lr, LrState};
        let mut lrs = [0u64; 3];
        l1_timer_lrs(&mut lrs, &[(26, true), (27, false)], true);
        // Listed with EOI (HW = 0), so L1's deactivation is seen.
        assert_eq!(LrState::of(lrs[0]), LrState::Pending);
        assert_ne!(lrs[0] & lr::EOI, 0);
        assert_eq!(lrs[0] & lr::HW, 0);
        assert_eq!((lrs[1], lrs[2]), (0, 0));
        // L1 acknowledged it: EOI kept while active, nothing doubled.
        lrs[0] = lrs[0] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        let active = lrs[0];
        l1_timer_lrs(&mut lrs, &[(26, true)], true);
        assert_eq!(lrs, [active, 0, 0]);
        // L1 deactivated it (state 0, EOI still set): the hardware's
        // ICH_EISR_EL2 shows it, so the maintenance interrupt is up.
        lrs[0] &= !lr::STATE_MASK;
        assert_eq!(eisr(&lrs), 1);
        // Its timer quiet: the entry is cleared, the interrupt drops.
        l1_timer_lrs(&mut lrs, &[(26, false)], true);
        assert_eq!(lrs, [0, 0, 0]);
        assert_eq!(eisr(&lrs), 0);
        // Still asserted after the deactivation (a level interrupt): listed
        // pending again, with EOI, in the first free LR.
        lrs[0] = active & !lr::STATE_MASK;
        lrs[2] = lr::ACTIVE << lr::STATE_SHIFT | lr::EOI | 27;
        l1_timer_lrs(&mut lrs, &[(26, true), (27, true)], true);
        assert_eq!(LrState::of(lrs[0]), LrState::Pending);
        assert_eq!(lrs[0] & (lr::EOI | lr::VINTID_MASK), lr::EOI | 26);
        assert_eq!(lrs[1], 0);
        assert_eq!(lrs[2], lr::ACTIVE << lr::STATE_SHIFT | lr::EOI | 27);
        // A withdrawn entry (not acknowledged, level fallen) is 0: no EOI
        // maintenance for it.
        l1_timer_lrs(&mut lrs, &[(26, false)], true);
        assert_eq!(lrs[0], 0);
        // Without `eoi_maintenance` (the `timer-no-eoi-maintenance` twin):
        // no EOI bit.
        let mut lrs = [0u64; 1];
        l1_timer_lrs(&mut lrs, &[(30, true)], false);
        assert_eq!(lrs[0] & lr::EOI, 0);
    }

    #[test]
    fn next_assertion_after_a_count() {
        let t = Timer { ctl: ON, cval: 100 };
        assert_eq!(t.next_assertion(40, 0), Some(100));
        // High already at the count: left to the level, not armed.
        assert_eq!(t.next_assertion(100, 0), None);
        assert_eq!(t.next_assertion(500, 0), None);
        // Offset 1000: the timer's count 40 at physical 1040, CVAL 100 at
        // physical 1100.
        assert_eq!(t.next_assertion(1040, 1000), Some(1100));
        // An offset above the physical count: the virtual count has
        // wrapped to near 2^64, past CVAL: high already.
        assert_eq!(t.next_assertion(5, 1000), None);
        // Offset above the count, CVAL near the end: the wrapped virtual
        // count (2^64 - 10) reaches it 9 ticks later.
        let far = Timer {
            ctl: ON,
            cval: u64::MAX,
        };
        assert_eq!(far.next_assertion(10, 20), Some(19));
        assert_eq!(far.next_assertion(10, 0), Some(u64::MAX));
        // Reached only after the physical count wraps: never.
        assert_eq!(far.next_assertion(u64::MAX - 5, 10), None);
        // Disabled or masked: never.
        let masked = Timer {
            ctl: ON | ctl::IMASK,
            cval: 100,
        };
        assert_eq!(masked.next_assertion(0, 0), None);
        assert_eq!(Timer { ctl: 0, cval: 100 }.next_assertion(0, 0), None);
    }

    #[test]
    fn hyp_timer_backs_the_timers_not_in_the_hardware_and_keeps_the_watchdog() {
        let l1_hyp = L1HypTimers {
            physical: Timer { ctl: ON, cval: 300 },
            virtual_: Timer { ctl: ON, cval: 250 },
        };
        let l2_physical = Timer { ctl: ON, cval: 700 };
        let l2_virtual = Timer { ctl: ON, cval: 100 };
        // L2 runs: L1's EL2 timers are hv's to back.
        let backed = backed_by_hyp_timer(true, &l1_hyp, l2_physical, l2_virtual, 500);
        assert_eq!(backed, [(l1_hyp.physical, 0), (l1_hyp.virtual_, 0)]);
        assert_eq!(hyp_timer_at_return(Some(10_000), &backed, 200), Some(250));
        // The virtual one high already at the decision: the physical one.
        assert_eq!(hyp_timer_at_return(Some(10_000), &backed, 260), Some(300));
        // L1 runs: L2's EL1 timers, the virtual one with CNTVOFF_EL2 (its
        // CVAL 100 is physical 600), not hv's stale copy of L1's.
        let backed = backed_by_hyp_timer(false, &l1_hyp, l2_physical, l2_virtual, 500);
        assert_eq!(backed, [(l2_physical, 0), (l2_virtual, 500)]);
        assert_eq!(hyp_timer_at_return(Some(10_000), &backed, 550), Some(600));
        assert_eq!(hyp_timer_at_return(Some(10_000), &backed, 650), Some(700));
        assert_eq!(hyp_timer_at_return(None, &backed, 650), Some(700));
        // Both high already: the watchdog only; on a CPU without one, off.
        assert_eq!(
            hyp_timer_at_return(Some(10_000), &backed, 800),
            Some(10_000)
        );
        assert_eq!(hyp_timer_at_return(None, &backed, 800), None);
        // The watchdog is kept before any guest deadline, however far the
        // guest puts its own (review 40 R40-5: a CVAL near u64::MAX must
        // not push hv's watchdog out while L2 runs).
        let far = L1HypTimers {
            physical: Timer {
                ctl: ON,
                cval: u64::MAX - 1,
            },
            virtual_: Timer::default(),
        };
        let backed = backed_by_hyp_timer(true, &far, l2_physical, l2_virtual, 0);
        assert_eq!(
            hyp_timer_at_return(Some(10_000), &backed, 200),
            Some(10_000)
        );
        assert_eq!(hyp_timer_at_return(None, &backed, 200), Some(u64::MAX - 1));
        let backed = backed_by_hyp_timer(false, &far, far.physical, l2_virtual, 0);
        assert_eq!(
            hyp_timer_at_return(Some(10_000), &backed, 200),
            Some(10_000)
        );
    }

    #[test]
    fn cnthctl_for_l2_follows_l1_traps() {
        // VHE layout: EL1PCTEN bit 10, EL1PTEN bit 11.
        assert_eq!(l2_cnthctl(l1_cnthctl_reset(true), true), 0b11);
        assert_eq!(l2_cnthctl(cnthctl::E2H_EL1PCTEN, true), cnthctl::EL1PCTEN);
        assert_eq!(l2_cnthctl(cnthctl::E2H_EL1PTEN, true), cnthctl::EL1PCEN);
        // The E2H = 0 bits mean nothing to a VHE L1's L2 (its EL0 bits).
        assert_eq!(l2_cnthctl(0b11, true), 0);
        assert_eq!(l2_cnthctl(l1_cnthctl_reset(false), false), 0b11);
        assert_eq!(l2_cnthctl(cnthctl::EL1PCEN, false), cnthctl::EL1PCEN);
        assert_eq!(l2_cnthctl(0, false), 0);
        // Writes keep only what exists.
        assert_eq!(l1_cnthctl_write(u64::MAX, true), 0xfff);
        assert_eq!(l1_cnthctl_write(u64::MAX, false), 0xff);
    }

    #[test]
    fn vhe_l1_cntkctl_is_its_cnthctl_low_bits() {
        // A trapped CNTHCTL_EL2 write puts its low bits in the hardware
        // CNTKCTL_EL1; a read takes them from there, EL1PCTEN/EL1PTEN
        // from hv's copy.
        let written = l1_cnthctl_write(0xf03, true);
        let hardware = vhe_l1_hardware_cntkctl(written);
        assert_eq!(hardware, 0x303);
        assert_eq!(vhe_l1_cnthctl(written, hardware), 0xf03);
        // L1 wrote CNTKCTL_EL1 = 0x200 (untrapped): CNTHCTL_EL2 reads it,
        // bits 10/11 kept.
        assert_eq!(vhe_l1_cnthctl(written, 0x200), 0xe00);
        assert_eq!(vhe_l1_cnthctl(0x003, 0x200), 0x200);
        // Bits 10/11 written through CNTKCTL_EL1 are RES0 there: lost.
        assert_eq!(vhe_l1_cnthctl(0, 0xc00), 0);
        // An ECV hardware's EVNTIS (bit 17): RES0 for L1 and L2 (FEAT_ECV
        // hidden), read 0 through CNTHCTL_EL2 and CNTKCTL_EL12.
        assert_eq!(vhe_l1_cnthctl(0, 1 << 17 | 0x203), 0x203);
        assert_eq!(l2_cntkctl_at_exit(1 << 17 | 0xc00 | 0x203), 0x203);
        assert_eq!(l1_cnthctl_write(1 << 17 | 1 << 15 | 0xc03, true), 0xc03);
        assert_eq!(vhe_l1_hardware_cntkctl(cnthctl::E2H_WRITABLE), 0x3ff);
    }

    #[test]
    fn trapped_encodings() {
        use TimerRegister::*;
        use TrappedTimer::*;
        use WhichTimer::*;
        assert_eq!(TrappedTimer::decode(4, 14, 1, 0, true), Some(Cnthctl));
        assert_eq!(TrappedTimer::decode(4, 14, 1, 0, false), Some(Cnthctl));
        // CNTKCTL_EL12 exists with FEAT_VHE only (a VHE L1's).
        assert_eq!(TrappedTimer::decode(5, 14, 1, 0, true), Some(L2Cntkctl));
        assert_eq!(TrappedTimer::decode(5, 14, 1, 0, false), None);
        assert_eq!(
            TrappedTimer::decode(4, 14, 2, 1, true),
            Some(Timer(HypPhysical, Ctl))
        );
        assert_eq!(
            TrappedTimer::decode(4, 14, 2, 2, false),
            Some(Timer(HypPhysical, Cval))
        );
        assert_eq!(
            TrappedTimer::decode(4, 14, 2, 0, true),
            Some(Timer(HypPhysical, Tval))
        );
        assert_eq!(
            TrappedTimer::decode(4, 14, 3, 1, true),
            Some(Timer(HypVirtual, Ctl))
        );
        // CNTHV needs FEAT_VHE.
        assert_eq!(TrappedTimer::decode(4, 14, 3, 1, false), None);
        assert_eq!(
            TrappedTimer::decode(5, 14, 3, 0, true),
            Some(Timer(L2Virtual, Tval))
        );
        assert_eq!(
            TrappedTimer::decode(5, 14, 2, 0, true),
            Some(Timer(L2Physical, Tval))
        );
        // `_EL02` CTL/CVAL are VNCR words: they never trap.
        assert_eq!(TrappedTimer::decode(5, 14, 3, 1, true), None);
        assert_eq!(
            TrappedTimer::decode(3, 14, 3, 0, false),
            Some(Timer(L2Virtual, Tval))
        );
        // A VHE L1's EL0 encodings are the hardware's (no trap).
        assert_eq!(TrappedTimer::decode(3, 14, 3, 0, true), None);
        // CNTVOFF_EL2 (CRm 0, op2 3) and the rest are not timer registers
        // hv emulates here.
        assert_eq!(TrappedTimer::decode(4, 14, 0, 3, true), None);
        assert_eq!(TrappedTimer::decode(4, 14, 1, 1, true), None);
        assert_eq!(TrappedTimer::decode(4, 13, 2, 1, true), None);
    }
}
