//! L1's virtual GIC interface (GICv3 ICH_*_EL2, IHI 0069 chapter 12)
//! under FEAT_NV2: the portable rules. `arch::nested_vgic` moves the
//! state between L1's VNCR page and the hardware.
//!
//! Where the state lives: L1's ICH_LR<n>_EL2, ICH_AP0R<n>_EL2,
//! ICH_AP1R<n>_EL2, ICH_HCR_EL2 and ICH_VMCR_EL2 are words of its VNCR
//! page (DDI 0487, the VNCR_EL2 table: NV2 turns L1's MRS/MSR of them into
//! loads and stores, no trap). ICH_VTR_EL2, ICH_MISR_EL2, ICH_EISR_EL2 and
//! ICH_ELRSR_EL2 are not in the page: L1's reads trap (EC 0x18, op0 3,
//! op1 4, CRn 12, CRm 11) and hv answers them from L1's words here
//! ([`l1_ich_read`]); they are read-only, so an MSR is UNDEFINED.
//!
//! While L2 runs, the hardware virtual interface is L1's ([`HardwareLoad`]
//! from the page at each entry into L2, [`written_back`] into the page
//! at each exit), so L2 acknowledges, drops priority and deactivates
//! through the real ICV_* registers and L1 then reads exactly what L2
//! did: each LR's State, ICH_HCR_EL2.EOIcount, the active priorities and
//! ICH_VMCR_EL2 (L2's PMR, BPRs, group enables, EOImode). While L1 runs,
//! the hardware interface is hv's again.
//!
//! Choices where L1's input is not a plain virtual interrupt:
//! - An LR with HW = 1 names an interrupt of L1's (pINTID) that L2's
//!   deactivation of the virtual one deactivates (IHI 0069, "Hardware
//!   interrupts" and ICH_LR<n>_EL2.HW): KVM as L1 maps its guest's
//!   virtual timer so, pINTID 27, the PPI that is L2's timer in L1's view
//!   and that L1 only priority-drops. hv never gives the hardware such an
//!   entry (its pINTID would name one of hv's own interrupts, and hv's
//!   direct guests' HW = 1 entries are hv's alone): it loads it as a
//!   software entry with the EOI bit while it is valid
//!   ([`hardware_lr`]), so L2's deactivation, which does not trap, raises
//!   hv's EOI maintenance interrupt and L2 exits. At that exit (every
//!   exit from L2, [`L1Interface::hw_deactivations`]) hv deactivates
//!   pINTID in L1's view: the list register of this vCPU's L1 interface
//!   that holds it active ([`deactivate_listed`]; a timer PPI or an
//!   SGI/SPI hv listed, which L1 acknowledged on this vCPU: an SPI L1
//!   acknowledged on another vCPU stays active there, a limit,
//!   `nested::gic::L1Gic::deactivate`) and the active bit L1 may have set
//!   in its distributor model (`nested::gic::L1Gic::deactivate`). L1 reads
//!   back its LR as the hardware leaves it: State from the hardware, HW,
//!   pINTID and the rest as written (the EOI bit is hv's: EOI is not a
//!   field of an HW = 1 entry, and ICH_EISR_EL2 never shows one).
//!   CONSTRAINED UNPREDICTABLE: a pINTID that is not active in L1's view
//!   (never acknowledged, already deactivated, or no interrupt L1 has:
//!   a PPI hv does not list, an INTID above L1's GIC's) is left as it is,
//!   the deactivation of an interrupt that is not active having no effect.
//! - vINTIDs 1020-1023 are special: an LR holding one is UNPREDICTABLE
//!   (GICv3, ICH_LR<n>_EL2.vINTID). hv loads such an entry as invalid and
//!   leaves L1's word as L1 wrote it (L2 never sees it).
//! - L1 is shown as many LRs and priority bits as the hardware has
//!   ([`vtr_shown_to_l1`]), so every LR L1 can use is loaded; the page's
//!   words beyond them are never read or changed.
//! - Group 0 entries are signalled to L2 as virtual FIQs, as the
//!   architecture has it: hv runs L1 and L2 with HCR_EL2.IMO and FMO
//!   (`nested::HV_INTERRUPT_ROUTING`), so their group-0 ICC_* accesses
//!   reach a virtual interface too (L1's own, or L1's for L2, where
//!   ICH_HCR_EL2.TALL0 traps them) and never hv's physical one. hv does
//!   so whatever L1's virtual HCR_EL2.IMO/FMO say: L2 reaches L1's
//!   virtual interface even where L1 left L2 its "physical" one, which hv
//!   does not emulate.
//! - The maintenance interrupt is decided by hv's computation from L1's
//!   words ([`misr`]), not by the hardware's ICH_MISR_EL2, which may
//!   disagree (QEMU 10.0 computes VGrp0D from VENG1): an asserted one is
//!   delivered when L1 ERETs into L2 and at every exit from L2; the
//!   hardware's interrupt is only the event that makes L2 exit, and a
//!   hardware trigger L1's state does not assert is withheld for that L2
//!   run ([`L1Interface::without_disagreeing_triggers`]).

use super::vncr::VncrPage;

/// VNCR page byte offsets (DDI 0487, VNCR_EL2 table).
pub const ICH_LR0_EL2: usize = 0x400;
pub const ICH_AP0R0_EL2: usize = 0x480;
pub const ICH_AP1R0_EL2: usize = 0x4a0;
pub const ICH_HCR_EL2: usize = 0x4c0;
pub const ICH_VMCR_EL2: usize = 0x4c8;

/// The architecture's most list registers (ICH_LR0..15_EL2) and active
/// priority registers per group (ICH_AP<g>R0..3_EL2).
pub const MAX_LIST_REGISTERS: usize = 16;
pub const MAX_ACTIVE_PRIORITY_REGISTERS: usize = 4;

/// ICH_LR<n>_EL2 fields.
pub mod lr {
    pub const STATE_SHIFT: u32 = 62;
    pub const STATE_MASK: u64 = 0b11 << STATE_SHIFT;
    pub const PENDING: u64 = 0b01;
    pub const ACTIVE: u64 = 0b10;
    pub const HW: u64 = 1 << 61;
    pub const GROUP1: u64 = 1 << 60;
    pub const PRIORITY_SHIFT: u32 = 48;
    pub const PRIORITY_MASK: u64 = 0xff << PRIORITY_SHIFT;
    /// pINTID, bits [44:32] (HW = 1).
    pub const PINTID_MASK: u64 = 0x1fff << 32;
    /// EOI, bit 41 (HW = 0).
    pub const EOI: u64 = 1 << 41;
    pub const VINTID_MASK: u64 = 0xffff_ffff;
}

/// ICH_HCR_EL2 fields.
pub mod hcr {
    pub const EN: u64 = 1 << 0;
    pub const UIE: u64 = 1 << 1;
    pub const LRENPIE: u64 = 1 << 2;
    pub const NPIE: u64 = 1 << 3;
    pub const VGRP0EIE: u64 = 1 << 4;
    pub const VGRP0DIE: u64 = 1 << 5;
    pub const VGRP1EIE: u64 = 1 << 6;
    pub const VGRP1DIE: u64 = 1 << 7;
    pub const TC: u64 = 1 << 10;
    pub const TALL0: u64 = 1 << 11;
    pub const TALL1: u64 = 1 << 12;
    pub const TDIR: u64 = 1 << 14;
    pub const EOICOUNT_SHIFT: u32 = 27;
    pub const EOICOUNT_MASK: u64 = 0x1f << EOICOUNT_SHIFT;
}

/// ICH_MISR_EL2 fields.
pub mod misr {
    pub const EOI: u64 = 1 << 0;
    pub const U: u64 = 1 << 1;
    pub const LRENP: u64 = 1 << 2;
    pub const NP: u64 = 1 << 3;
    pub const VGRP0E: u64 = 1 << 4;
    pub const VGRP0D: u64 = 1 << 5;
    pub const VGRP1E: u64 = 1 << 6;
    pub const VGRP1D: u64 = 1 << 7;
}

/// ICH_VMCR_EL2 group enables.
pub mod vmcr {
    pub const VENG0: u64 = 1 << 0;
    pub const VENG1: u64 = 1 << 1;
}

/// ICH_VTR_EL2 fields.
pub mod vtr {
    pub const LIST_REGS_MASK: u64 = 0x1f;
    pub const DVIM: u64 = 1 << 18;
    pub const TDS: u64 = 1 << 19;
    pub const NV4: u64 = 1 << 20;
    pub const A3V: u64 = 1 << 21;
    pub const SEIS: u64 = 1 << 22;
    pub const IDBITS_SHIFT: u32 = 23;
    pub const PREBITS_SHIFT: u32 = 26;
    pub const PRIBITS_SHIFT: u32 = 29;
}

/// The hardware virtual interface's shape, from its ICH_VTR_EL2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Implemented list registers (1 to 16).
    pub list_registers: usize,
    /// Active priority registers per group (1, 2 or 4).
    pub active_priority_registers: usize,
    /// vINTID bits implemented (16 or 24).
    pub id_bits: u32,
    /// ICH_HCR_EL2.TDIR is implemented.
    pub tdir: bool,
}

impl Shape {
    /// From the hardware's ICH_VTR_EL2. A reserved IDbits value is
    /// taken as 16 bits (the fewer: never more than the hardware holds).
    pub fn from_vtr(vtr: u64) -> Shape {
        let list_registers = (vtr & vtr::LIST_REGS_MASK) as usize + 1;
        let pre_bits = ((vtr >> vtr::PREBITS_SHIFT) & 0b111) as u32 + 1;
        Shape {
            list_registers: if list_registers > MAX_LIST_REGISTERS {
                MAX_LIST_REGISTERS
            } else {
                list_registers
            },
            active_priority_registers: crate::vgic::active_priority_registers(pre_bits),
            id_bits: if (vtr >> vtr::IDBITS_SHIFT) & 0b111 == 0b001 {
                24
            } else {
                16
            },
            tdir: vtr & vtr::TDS != 0,
        }
    }
}

/// ICH_VTR_EL2 as L1 reads it: the hardware's list registers, priority,
/// preemption and ID bits, A3V and TDS (each L1 LR is a hardware LR,
/// L1's traps are the hardware's), with SEIS clear (no SEI for L1), nV4
/// set (no direct injection of virtual LPIs: no GICv4) and DVIM clear.
/// ListRegs is at most 16 by its encoding's use (values above 15 do not
/// exist), kept as the hardware's when it is in range.
pub fn vtr_shown_to_l1(hardware_vtr: u64) -> u64 {
    let kept = vtr::LIST_REGS_MASK
        | 0b111 << vtr::IDBITS_SHIFT
        | 0b111 << vtr::PREBITS_SHIFT
        | 0b111 << vtr::PRIBITS_SHIFT
        | vtr::A3V
        | vtr::TDS;
    let shown = hardware_vtr & kept & !vtr::LIST_REGS_MASK;
    let list_regs = Shape::from_vtr(hardware_vtr).list_registers as u64 - 1;
    shown | list_regs | vtr::NV4
}

/// An LR's State field (GICv3 ICH_LR<n>_EL2.State).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrState {
    Invalid,
    Pending,
    Active,
    PendingActive,
}

impl LrState {
    pub const fn of(value: u64) -> LrState {
        match (value & lr::STATE_MASK) >> lr::STATE_SHIFT {
            0 => LrState::Invalid,
            1 => LrState::Pending,
            2 => LrState::Active,
            _ => LrState::PendingActive,
        }
    }
}

/// Whether hv may wait (WFI at EL2) for L1's trapped WFI while L1's own
/// interface holds `lrs` (every list register): none holds a pending
/// interrupt. A virtual interrupt is no wake-up event for a WFI executed
/// at EL2 (DDI 0487, "Wait for Interrupt": virtual interrupts wake a WFI
/// at EL1 and EL0 only), so one already pending must return L1 from its
/// WFI at once; physical interrupts, which are hv's (its kick SGI, the
/// timers' PPIs, its maintenance interrupt), wake hv's WFI whatever
/// PSTATE.I. Conservative: a pending entry its priority mask or group
/// enable hides also returns at once (a WFI may complete spuriously).
pub fn l1_may_sleep(lrs: &[u64]) -> bool {
    !lrs.iter()
        .any(|&v| matches!(LrState::of(v), LrState::Pending | LrState::PendingActive))
}

/// Whether an LR is "empty" as ICH_ELRSR_EL2 defines it: State 0b00 and
/// either HW = 1 or EOI = 0 (an invalid software entry with EOI = 1 still
/// holds an EOI maintenance request).
pub const fn lr_empty(value: u64) -> bool {
    LrState::of(value) as u8 == LrState::Invalid as u8
        && (value & lr::HW != 0 || value & lr::EOI == 0)
}

/// Whether an LR asks for EOI maintenance (ICH_EISR_EL2): State 0b00,
/// HW = 0, EOI = 1.
pub const fn lr_eoi_maintenance(value: u64) -> bool {
    LrState::of(value) as u8 == LrState::Invalid as u8
        && value & lr::HW == 0
        && value & lr::EOI != 0
}

/// Frees the entries of L1's own list registers `lrs` that L1 deactivated
/// and that wait only for hv's EOI maintenance ([`lr_eoi_maintenance`]):
/// the interrupt is done with, and the LR is free for what waits. Both
/// passes that fill those LRs at an exit (`nested::gic::list_forwarded`,
/// `nested::timer::l1_timer_lrs`) run it first, whichever runs first.
pub fn free_deactivated(lrs: &mut [u64]) {
    for v in lrs.iter_mut().filter(|v| lr_eoi_maintenance(**v)) {
        *v = 0;
    }
}

/// ICH_ELRSR_EL2 of the implemented LRs `lrs` (bit n for LR n; bits of
/// unimplemented LRs RES0).
pub fn elrsr(lrs: &[u64]) -> u64 {
    bits(lrs, lr_empty)
}

/// ICH_EISR_EL2 of the implemented LRs `lrs`.
pub fn eisr(lrs: &[u64]) -> u64 {
    bits(lrs, lr_eoi_maintenance)
}

fn bits(lrs: &[u64], f: fn(u64) -> bool) -> u64 {
    lrs.iter()
        .take(MAX_LIST_REGISTERS)
        .enumerate()
        .filter(|&(_, &v)| f(v))
        .fold(0, |acc, (n, _)| acc | 1 << n)
}

/// ICH_MISR_EL2 from the implemented LRs, ICH_HCR_EL2 and ICH_VMCR_EL2,
/// as IHI 0069 defines each bit:
/// - EOI: ICH_EISR_EL2 is not zero;
/// - U: UIE and at most one LR is valid (State not 0b00);
/// - LRENP: LRENPIE and EOIcount is not zero;
/// - NP: NPIE and no LR is in the pending state (State 0b01; a pending
///   and active entry is not "in the pending state");
/// - VGrp0E/VGrp0D/VGrp1E/VGrp1D: the enable bit and VMCR's VENG0/VENG1
///   set/clear.
///
/// The bits do not depend on ICH_HCR_EL2.En; the maintenance interrupt
/// does ([`maintenance_asserted`]).
pub fn misr(lrs: &[u64], ich_hcr: u64, ich_vmcr: u64) -> u64 {
    let lrs = &lrs[..lrs.len().min(MAX_LIST_REGISTERS)];
    let valid = lrs
        .iter()
        .filter(|&&v| LrState::of(v) != LrState::Invalid)
        .count();
    let pending = lrs.iter().any(|&v| LrState::of(v) == LrState::Pending);
    let eng0 = ich_vmcr & vmcr::VENG0 != 0;
    let eng1 = ich_vmcr & vmcr::VENG1 != 0;
    let conditions = [
        (eisr(lrs) != 0, misr::EOI),
        (ich_hcr & hcr::UIE != 0 && valid <= 1, misr::U),
        (
            ich_hcr & hcr::LRENPIE != 0 && ich_hcr & hcr::EOICOUNT_MASK != 0,
            misr::LRENP,
        ),
        (ich_hcr & hcr::NPIE != 0 && !pending, misr::NP),
        (ich_hcr & hcr::VGRP0EIE != 0 && eng0, misr::VGRP0E),
        (ich_hcr & hcr::VGRP0DIE != 0 && !eng0, misr::VGRP0D),
        (ich_hcr & hcr::VGRP1EIE != 0 && eng1, misr::VGRP1E),
        (ich_hcr & hcr::VGRP1DIE != 0 && !eng1, misr::VGRP1D),
    ];
    conditions
        .iter()
        .filter(|(holds, _)| *holds)
        .fold(0, |acc, (_, bit)| acc | bit)
}

/// Whether L1's virtual interface asserts its maintenance interrupt:
/// ICH_HCR_EL2.En and some ICH_MISR_EL2 bit set.
pub const fn maintenance_asserted(ich_hcr: u64, ich_misr: u64) -> bool {
    ich_hcr & hcr::EN != 0 && ich_misr != 0
}

/// Whether `value` holds a special vINTID (1020-1023) once cut to the
/// implemented ID bits.
const fn special_vintid(value: u64, shape: &Shape) -> bool {
    let vintid = value & lr::VINTID_MASK & ((1 << shape.id_bits) - 1);
    vintid >= 1020 && vintid <= 1023
}

/// The hardware LR for L1's LR `value` (see the module docs): RES0 bits
/// and vINTID bits above the implemented ones cleared (the hardware
/// ignores them), a HW = 1 entry as a software one without pINTID, with
/// the EOI bit while it is valid (L2's deactivation of it then makes L2
/// exit, and hv deactivates pINTID in L1's view), a special vINTID as an
/// invalid entry. Never HW = 1.
pub const fn hardware_lr(value: u64, shape: &Shape) -> u64 {
    if special_vintid(value, shape) {
        return 0;
    }
    let vintid = value & lr::VINTID_MASK & ((1 << shape.id_bits) - 1);
    let common = value & (lr::STATE_MASK | lr::GROUP1 | lr::PRIORITY_MASK);
    if value & lr::HW != 0 {
        let linked = if value & lr::STATE_MASK != 0 {
            lr::EOI
        } else {
            0
        };
        common | linked | vintid
    } else {
        common | (value & lr::EOI) | vintid
    }
}

/// pINTID of an HW = 1 LR (bits [44:32]).
pub const fn pintid(value: u64) -> u32 {
    ((value & lr::PINTID_MASK) >> 32) as u32
}

/// Whether L2's run deactivated the virtual interrupt of L1's HW = 1 LR
/// `l1` (as loaded at the entry), whose hardware LR is `hardware` now:
/// its active state is gone (active or pending and active before, now
/// invalid or pending), or it went from pending to invalid (acknowledged
/// and deactivated in the run; nothing else empties a software LR). A
/// special vINTID (loaded invalid) never is.
pub const fn hw_deactivated(l1: u64, hardware: u64, shape: &Shape) -> bool {
    if l1 & lr::HW == 0 || special_vintid(l1, shape) {
        return false;
    }
    let before = LrState::of(l1) as u8;
    let now = LrState::of(hardware) as u8;
    let was_active = before == LrState::Active as u8 || before == LrState::PendingActive as u8;
    let now_inactive = now == LrState::Invalid as u8 || now == LrState::Pending as u8;
    (was_active && now_inactive)
        || (before == LrState::Pending as u8 && now == LrState::Invalid as u8)
}

/// L1's own interface's list registers `lrs` after the deactivation of
/// its interrupt `intid` by L2 (an HW = 1 LR's pINTID): the entry holding
/// it active loses its active state (active: emptied, as hv empties an
/// entry L1 deactivated itself, `nested::timer::l1_timer_lrs`; pending
/// and active: pending, EOI kept). Whether one did; none is the
/// CONSTRAINED UNPREDICTABLE case of the module docs (no effect).
pub fn deactivate_listed(lrs: &mut [u64], intid: u32) -> bool {
    let Some(v) = lrs.iter_mut().find(|v| {
        **v & lr::VINTID_MASK == u64::from(intid)
            && matches!(LrState::of(**v), LrState::Active | LrState::PendingActive)
    }) else {
        return false;
    };
    *v = if LrState::of(*v) == LrState::Active {
        0
    } else {
        *v & !lr::STATE_MASK | lr::PENDING << lr::STATE_SHIFT
    };
    true
}

/// L1's LR after L2 ran: what L1 wrote, with the State the hardware LR
/// `hardware` holds now (the only LR field the virtual CPU interface
/// changes). An entry loaded as invalid (special vINTID) keeps L1's.
pub const fn written_back_lr(l1: u64, hardware: u64, shape: &Shape) -> u64 {
    if special_vintid(l1, shape) {
        return l1;
    }
    (l1 & !lr::STATE_MASK) | (hardware & lr::STATE_MASK)
}

/// The ICH_HCR_EL2 bits of L1's the hardware gets: En, the maintenance
/// enables, TC, TALL0, TALL1, TDIR (if implemented) and EOIcount. The
/// rest (vSGIEOICount, TSEI, DVIM) are features L1 is not shown.
pub const fn hardware_hcr(l1_ich_hcr: u64, shape: &Shape) -> u64 {
    let kept = hcr::EN
        | hcr::UIE
        | hcr::LRENPIE
        | hcr::NPIE
        | hcr::VGRP0EIE
        | hcr::VGRP0DIE
        | hcr::VGRP1EIE
        | hcr::VGRP1DIE
        | hcr::TC
        | hcr::TALL0
        | hcr::TALL1
        | hcr::EOICOUNT_MASK;
    let tdir = if shape.tdir { hcr::TDIR } else { 0 };
    l1_ich_hcr & (kept | tdir)
}

/// L1's ICH_HCR_EL2 after L2 ran: L1's, with the hardware's EOIcount
/// (incremented by L2's EOIs that matched no LR).
pub const fn written_back_hcr(l1_ich_hcr: u64, hardware_hcr: u64) -> u64 {
    (l1_ich_hcr & !hcr::EOICOUNT_MASK) | (hardware_hcr & hcr::EOICOUNT_MASK)
}

/// ICH_VMCR_EL2's defined fields: VPMR [31:24], VBPR0 [23:21], VBPR1
/// [20:18], VEOIM [9], VCBPR [4], VFIQEn [3], VAckCtl [2], VENG1, VENG0.
pub const VMCR_FIELDS: u64 = 0xff << 24
    | 0b111 << 21
    | 0b111 << 18
    | 1 << 9
    | 1 << 4
    | 1 << 3
    | 1 << 2
    | vmcr::VENG1
    | vmcr::VENG0;

/// What L1's virtual interface state is, read from its VNCR page: the
/// words hv loads into the hardware at an entry into L2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L1Interface {
    pub lrs: [u64; MAX_LIST_REGISTERS],
    pub ap0r: [u64; MAX_ACTIVE_PRIORITY_REGISTERS],
    pub ap1r: [u64; MAX_ACTIVE_PRIORITY_REGISTERS],
    pub hcr: u64,
    pub vmcr: u64,
}

impl L1Interface {
    /// L1's words of `page` (the implemented LRs and APRs of `shape`; the
    /// rest zero).
    pub fn read(page: &VncrPage, shape: &Shape) -> L1Interface {
        let mut state = L1Interface {
            hcr: page.get(ICH_HCR_EL2),
            vmcr: page.get(ICH_VMCR_EL2),
            ..L1Interface::default()
        };
        for n in 0..shape.list_registers {
            state.lrs[n] = page.get(ICH_LR0_EL2 + 8 * n);
        }
        for n in 0..shape.active_priority_registers {
            state.ap0r[n] = page.get(ICH_AP0R0_EL2 + 8 * n);
            state.ap1r[n] = page.get(ICH_AP1R0_EL2 + 8 * n);
        }
        state
    }

    /// What the hardware gets: [`hardware_lr`] of each LR,
    /// [`hardware_hcr`], ICH_VMCR_EL2's defined fields, the APRs (32 bits
    /// each) as L1 wrote them.
    pub fn to_hardware(&self, shape: &Shape) -> L1Interface {
        let mut hw = L1Interface {
            hcr: hardware_hcr(self.hcr, shape),
            vmcr: self.vmcr & VMCR_FIELDS,
            ..L1Interface::default()
        };
        for n in 0..shape.list_registers {
            hw.lrs[n] = hardware_lr(self.lrs[n], shape);
        }
        for n in 0..shape.active_priority_registers {
            hw.ap0r[n] = self.ap0r[n] & 0xffff_ffff;
            hw.ap1r[n] = self.ap1r[n] & 0xffff_ffff;
        }
        hw
    }

    /// L1's state after L2 ran, from L1's state before (`self`) and the
    /// hardware's now (`hardware`, read back): [`written_back_lr`] of each
    /// LR, [`written_back_hcr`], the hardware's VMCR and APRs.
    pub fn written_back(&self, hardware: &L1Interface, shape: &Shape) -> L1Interface {
        let mut after = L1Interface {
            hcr: written_back_hcr(self.hcr, hardware.hcr),
            vmcr: hardware.vmcr,
            ..*self
        };
        for n in 0..shape.list_registers {
            after.lrs[n] = written_back_lr(self.lrs[n], hardware.lrs[n], shape);
        }
        for n in 0..shape.active_priority_registers {
            after.ap0r[n] = hardware.ap0r[n];
            after.ap1r[n] = hardware.ap1r[n];
        }
        after
    }

    /// The pINTIDs L2's run deactivated ([`hw_deactivated`] of each HW = 1
    /// LR of L1's state before, `self`, against the hardware's now), in
    /// LR order.
    pub fn hw_deactivations(
        &self,
        hardware: &L1Interface,
        shape: &Shape,
    ) -> arrayvec::ArrayVec<u32, MAX_LIST_REGISTERS> {
        (0..shape.list_registers)
            .filter(|&n| hw_deactivated(self.lrs[n], hardware.lrs[n], shape))
            .map(|n| pintid(self.lrs[n]))
            .collect()
    }

    /// Stores the implemented words into `page`.
    pub fn write(&self, page: &VncrPage, shape: &Shape) {
        page.set(ICH_HCR_EL2, self.hcr);
        page.set(ICH_VMCR_EL2, self.vmcr);
        for n in 0..shape.list_registers {
            page.set(ICH_LR0_EL2 + 8 * n, self.lrs[n]);
        }
        for n in 0..shape.active_priority_registers {
            page.set(ICH_AP0R0_EL2 + 8 * n, self.ap0r[n]);
            page.set(ICH_AP1R0_EL2 + 8 * n, self.ap1r[n]);
        }
    }

    /// ICH_MISR_EL2 of this state.
    pub fn misr(&self, shape: &Shape) -> u64 {
        misr(&self.lrs[..shape.list_registers], self.hcr, self.vmcr)
    }
}

/// L1's trapped ICH register reads (op0 3, op1 4, CRn 12, CRm 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrappedIch {
    Vtr,
    Misr,
    Eisr,
    Elrsr,
}

impl TrappedIch {
    /// From op2 of an access with op0 3, op1 4, CRn 12, CRm 11 (op2 0
    /// and 7, ICH_HCR_EL2 and ICH_VMCR_EL2, are VNCR page words and never
    /// trap).
    pub const fn from_op2(op2: u8) -> Option<TrappedIch> {
        match op2 {
            1 => Some(TrappedIch::Vtr),
            2 => Some(TrappedIch::Misr),
            3 => Some(TrappedIch::Eisr),
            5 => Some(TrappedIch::Elrsr),
            _ => None,
        }
    }
}

/// The value of L1's read of `register`, its virtual interface being
/// `state` on hardware of `shape` with ICH_VTR_EL2 `hardware_vtr`.
pub fn l1_ich_read(
    register: TrappedIch,
    state: &L1Interface,
    shape: &Shape,
    hardware_vtr: u64,
) -> u64 {
    let lrs = &state.lrs[..shape.list_registers];
    match register {
        TrappedIch::Vtr => vtr_shown_to_l1(hardware_vtr),
        TrappedIch::Misr => state.misr(shape),
        TrappedIch::Eisr => eisr(lrs),
        TrappedIch::Elrsr => elrsr(lrs),
    }
}

/// ICC_SRE_EL2 as L1 reads it (its MRS traps: op1 4): SRE (the system
/// register interface, the only one there is), DFB, DIB (no bypass) and
/// Enable (L2 may use ICC_SRE_EL1) all 1. L1's writes are ignored: SRE,
/// DFB and DIB are RAO/WI on an implementation with only the system
/// register interface; Enable = 0 (L1 trapping L2's ICC_SRE_EL1) is not
/// honoured, a limit of this support (L2 then reads ICC_SRE_EL1 as the
/// hardware's virtual one, SRE 1).
pub const ICC_SRE_EL2_SHOWN: u64 = 0b1111;

/// Whether L1 takes an IRQ (its maintenance interrupt is one) at virtual
/// EL2: its virtual HCR_EL2.IMO or TGE routes IRQs to EL2. Otherwise they
/// target EL1, and at (virtual) EL2 an interrupt for a lower EL is never
/// taken: the maintenance interrupt stays asserted and undelivered.
pub const fn l1_takes_irqs_at_vel2(l1_virtual_hcr: u64) -> bool {
    l1_virtual_hcr & (super::hcr::IMO | super::hcr::TGE) != 0
}

/// Whether L1's maintenance interrupt, as its interface `l1` (on hardware
/// of `shape`) says, is taken at L1's virtual EL2 now (virtual HCR_EL2
/// `l1_virtual_hcr`): asserted ([`maintenance_asserted`] of hv's
/// [`misr`]) and routed there ([`l1_takes_irqs_at_vel2`]). An L1 that
/// routes IRQs to EL1 never takes it at virtual EL2, and L2 is not
/// interrupted for it.
pub fn maintenance_taken_at_vel2(l1: &L1Interface, shape: &Shape, l1_virtual_hcr: u64) -> bool {
    l1_takes_irqs_at_vel2(l1_virtual_hcr) && maintenance_asserted(l1.hcr, l1.misr(shape))
}

/// What hv does with L2's trapped MSR of an SGI generation register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L2SgiWrite {
    /// L1 asked for the trap: its virtual HCR_EL2.IMO or FMO, or its
    /// ICH_HCR_EL2.TC (DDI 0487, ICC_SGI0R_EL1/ICC_SGI1R_EL1/
    /// ICC_ASGI1R_EL1: an EL1 write traps to EL2 under any of them; KVM
    /// forwards them to a guest hypervisor on the same three bits).
    ForwardToL1,
    /// L1 did not: the write reaches L1's "physical" GIC, its distributor
    /// and redistributors hv emulates (`nested::gic`): ICC_SGI1R_EL1
    /// sends the SGI to the vCPUs of L1 its affinities name (the sender is
    /// the vCPU L2 runs on), ICC_ASGI1R_EL1 and ICC_SGI0R_EL1 (no group-1
    /// SGI, `vgic::sgi_write_sends`) complete with no effect. The trap is hv's
    /// own (HCR_EL2.IMO/FMO for L2, so that L2 reaches L1's virtual
    /// interface), not one L1 set.
    ToL1Gic,
}

/// For L2's trapped system register access (op0, op1, CRn, CRm, op2,
/// a read or a write) with L1's virtual HCR_EL2 `l1_virtual_hcr` and
/// ICH_HCR_EL2 `l1_ich_hcr`: what an MSR of ICC_SGI1R_EL1 (op2 5),
/// ICC_ASGI1R_EL1 (6) or ICC_SGI0R_EL1 (7) (op0 3, op1 0, CRn 12,
/// CRm 11) does; None for any other access (MRS of these write-only
/// registers included).
pub const fn l2_sgi_write(
    encoding: (u8, u8, u8, u8, u8),
    read: bool,
    l1_virtual_hcr: u64,
    l1_ich_hcr: u64,
) -> Option<L2SgiWrite> {
    let (op0, op1, crn, crm, op2) = encoding;
    if read || op0 != 3 || op1 != 0 || crn != 12 || crm != 11 || op2 < 5 {
        return None;
    }
    let routed = super::hcr::IMO | super::hcr::FMO;
    if l1_virtual_hcr & routed != 0 || l1_ich_hcr & hcr::TC != 0 {
        Some(L2SgiWrite::ForwardToL1)
    } else {
        Some(L2SgiWrite::ToL1Gic)
    }
}

/// ICH_HCR_EL2's maintenance interrupt enables.
const MAINTENANCE_ENABLES: u64 = hcr::UIE
    | hcr::LRENPIE
    | hcr::NPIE
    | hcr::VGRP0EIE
    | hcr::VGRP0DIE
    | hcr::VGRP1EIE
    | hcr::VGRP1DIE;

impl L1Interface {
    /// The hardware form with nothing that raises the hardware's
    /// maintenance interrupt (the enables and each LR's EOI cleared): for
    /// an L2 run in which L1 would not take it. L1's view is unchanged:
    /// its MISR/EISR are computed from its own words, and only State,
    /// EOIcount, APRs and VMCR come back from the hardware.
    pub fn without_maintenance_triggers(&self) -> L1Interface {
        let mut quiet = *self;
        quiet.hcr &= !MAINTENANCE_ENABLES;
        for lr in &mut quiet.lrs {
            if *lr & lr::HW == 0 {
                *lr &= !lr::EOI;
            }
        }
        quiet
    }
}

impl L1Interface {
    /// The hardware form without the maintenance triggers where the
    /// hardware disagrees with L1's state: the enable of each ICH_MISR_EL2
    /// condition the hardware asserts (`hardware_misr`) and L1's state
    /// does not (`l1_misr`), and the EOI bit of each LR whose EOI
    /// maintenance request the hardware shows (`hardware_eisr`) and L1's
    /// state does not (`l1_eisr`). Every other trigger stays, so a
    /// condition that arises while L2 runs still makes L2 exit. A limit
    /// (review 37 R37-4): a withheld trigger stays withheld for the whole
    /// L2 run, so if L1's own state comes to assert that condition while
    /// L2 runs (say L2 writes ICC_IGRPEN0_EL1 = 0), L2 exits only at its
    /// next unrelated exit; only where the hardware disagrees with the
    /// GIC spec (QEMU 10's VGrp0D).
    pub fn without_disagreeing_triggers(
        &self,
        hardware_misr: u64,
        l1_misr: u64,
        hardware_eisr: u64,
        l1_eisr: u64,
    ) -> L1Interface {
        let mut narrowed = *self;
        // ICH_MISR_EL2 bits 1-7 sit where their ICH_HCR_EL2 enables do.
        narrowed.hcr &= !(hardware_misr & !l1_misr & MAINTENANCE_ENABLES);
        let disagreeing_eoi = hardware_eisr & !l1_eisr;
        for (n, lr) in narrowed.lrs.iter_mut().enumerate() {
            if disagreeing_eoi & 1 << n != 0 && *lr & lr::HW == 0 {
                *lr &= !lr::EOI;
            }
        }
        narrowed
    }
}

/// L1's own virtual CPU interface (what its ICC_* accesses reach while it
/// runs at hardware EL1 with HCR_EL2.IMO and FMO: the ICV_* registers) at the
/// start: enabled, nothing listed, L1's PMR and group enables 0 until it
/// writes them.
pub const L1_OWN_START: L1Interface = L1Interface {
    lrs: [0; MAX_LIST_REGISTERS],
    ap0r: [0; MAX_ACTIVE_PRIORITY_REGISTERS],
    ap1r: [0; MAX_ACTIVE_PRIORITY_REGISTERS],
    hcr: hcr::EN,
    vmcr: 0,
};

/// The priority hv lists L1's maintenance interrupt and timer PPIs with:
/// the reset priority hv's vGIC gives every guest interrupt (L1's
/// GICR_IPRIORITYR values for its PPIs are kept and read back but not
/// used, `nested::gic`).
pub const L1_MAINTENANCE_PRIORITY: u8 = crate::vgic::DEFAULT_PRIORITY;

/// The list register of L1's own interface that carries its maintenance
/// interrupt (`intid`, a level-sensitive PPI), from what it holds now
/// (`current`) and whether L1's interface asserts it and L1 takes it at
/// virtual EL2 (`asserted`): asserted and not listed, it is made pending;
/// no longer asserted, a pending entry L1 has not acknowledged is
/// withdrawn (a pending and active one keeps only its active state); an
/// active entry stays until L1 deactivates it. hv samples the level at
/// L1's exits (L1 changes its LRs by stores to the VNCR page, which do not
/// trap; its WFI does trap, so an L1 waiting for a condition it raised by
/// stores gets it), so L1 may acknowledge an instance whose condition it
/// has just cleared; it then reads an ICH_MISR_EL2 of 0, as after any
/// level interrupt that dropped while being acknowledged. A spinning L1
/// that raised one by stores and never traps does not get it (a limit).
pub const fn l1_maintenance_lr(current: u64, asserted: bool, intid: u32) -> u64 {
    let state = LrState::of(current);
    match (state, asserted) {
        (LrState::Invalid, true) => {
            lr::PENDING << lr::STATE_SHIFT
                | lr::GROUP1
                | (L1_MAINTENANCE_PRIORITY as u64) << lr::PRIORITY_SHIFT
                | intid as u64
        }
        (LrState::Pending, false) => 0,
        (LrState::PendingActive, false) => {
            current & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT
        }
        _ => current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4-LR interface with 5 priority and preemption bits, 16 ID bits,
    /// nothing else.
    const QEMU_VTR: u64 = 0x9000_0003;
    /// QEMU 10's GICv3 (`gic-version=3`, `-cpu max`): also 24 ID bits,
    /// TDS, A3V and nV4 (what L1 reads there on the `irq` demo's console).
    const QEMU_10_MAX_VTR: u64 = 0x90b8_0003;

    const fn lr_value(state: u64, hw: bool, eoi: bool) -> u64 {
        let mut v = state << lr::STATE_SHIFT | lr::GROUP1 | 0xa0 << lr::PRIORITY_SHIFT | 42;
        if hw {
            v |= lr::HW | 7 << 32;
        } else if eoi {
            v |= lr::EOI;
        }
        v
    }

    #[test]
    fn l1_sleeps_only_with_nothing_pending() {
        assert!(l1_may_sleep(&[]));
        assert!(l1_may_sleep(&[
            0,
            lr_value(0b10, false, true),
            lr_value(0, false, true)
        ]));
        assert!(!l1_may_sleep(&[0, lr_value(0b01, false, true)]));
        assert!(
            !l1_may_sleep(&[lr_value(0b11, false, false), 0]),
            "pending and active"
        );
        // Masked by L1's priority or group enable: still not slept on.
        assert!(!l1_may_sleep(&[lr_value(0b01, true, false) & !lr::GROUP1]));
    }

    #[test]
    fn vncr_offsets_are_the_architected_ones() {
        // DDI 0487, VNCR_EL2 table: LRs from 0x400, AP0Rs 0x480, AP1Rs
        // 0x4a0, HCR 0x4c0, VMCR 0x4c8, all inside the page, disjoint.
        assert_eq!(ICH_LR0_EL2 + 8 * 15, 0x478);
        assert_eq!(ICH_AP0R0_EL2 + 8 * 3, 0x498);
        assert_eq!(ICH_AP1R0_EL2 + 8 * 3, 0x4b8);
        assert_eq!((ICH_HCR_EL2, ICH_VMCR_EL2), (0x4c0, 0x4c8));
        const { assert!(ICH_LR0_EL2 + 8 * MAX_LIST_REGISTERS <= ICH_AP0R0_EL2) };
        const { assert!(ICH_AP0R0_EL2 + 8 * MAX_ACTIVE_PRIORITY_REGISTERS <= ICH_AP1R0_EL2) };
        const { assert!(ICH_AP1R0_EL2 + 8 * MAX_ACTIVE_PRIORITY_REGISTERS <= ICH_HCR_EL2) };
        // None of them overlaps the EL1 registers or EL2 words hv uses.
        for r in super::super::vncr::El1Register::ALL {
            assert!(!(ICH_LR0_EL2..=ICH_VMCR_EL2).contains(&r.vncr_offset()));
        }
    }

    #[test]
    fn shape_and_vtr_shown() {
        let shape = Shape::from_vtr(QEMU_VTR);
        assert_eq!(
            shape,
            Shape {
                list_registers: 4,
                active_priority_registers: 1,
                id_bits: 16,
                tdir: false,
            }
        );
        // L1 sees the hardware's LRs and bits, nV4 set, nothing more.
        assert_eq!(vtr_shown_to_l1(QEMU_VTR), QEMU_VTR | vtr::NV4);
        assert_eq!(vtr_shown_to_l1(QEMU_10_MAX_VTR), 0x90b8_0003);
        assert_eq!(
            Shape::from_vtr(QEMU_10_MAX_VTR),
            Shape {
                list_registers: 4,
                active_priority_registers: 1,
                id_bits: 24,
                tdir: true,
            }
        );
        // 16 LRs, 7 preemption bits (4 APRs), 24 ID bits, TDS, A3V; SEIS,
        // DVIM and RES0 bits are hidden.
        let big = 0xf
            | 0b111 << 29
            | 0b110 << 26
            | 0b001 << 23
            | vtr::SEIS
            | vtr::A3V
            | vtr::TDS
            | vtr::DVIM
            | 1 << 10;
        let shape = Shape::from_vtr(big);
        assert_eq!(
            (
                shape.list_registers,
                shape.active_priority_registers,
                shape.id_bits,
                shape.tdir
            ),
            (16, 4, 24, true)
        );
        let shown = vtr_shown_to_l1(big);
        assert_eq!(shown & vtr::LIST_REGS_MASK, 0xf);
        assert_eq!(shown & (vtr::SEIS | vtr::DVIM | 1 << 10), 0);
        assert_eq!(
            shown & (vtr::NV4 | vtr::A3V | vtr::TDS),
            vtr::NV4 | vtr::A3V | vtr::TDS
        );
        assert_eq!(shown >> 23, big >> 23 & 0x1ff);
        // ListRegs 16..31 is not a count the architecture has: at most 16.
        assert_eq!(Shape::from_vtr(0x1f).list_registers, 16);
        assert_eq!(vtr_shown_to_l1(0x1f) & vtr::LIST_REGS_MASK, 15);
    }

    #[test]
    fn elrsr_and_eisr_follow_the_spec_for_every_lr_kind() {
        // ELRSR: State 0b00 and (HW or !EOI). EISR: State 0b00, !HW, EOI.
        for state in 0..4u64 {
            for hw in [false, true] {
                for eoi in [false, true] {
                    let v = lr_value(state, hw, eoi);
                    let invalid = state == 0;
                    assert_eq!(lr_empty(v), invalid && (hw || !eoi), "{v:#x}");
                    assert_eq!(lr_eoi_maintenance(v), invalid && !hw && eoi, "{v:#x}");
                    assert!(!(lr_empty(v) && lr_eoi_maintenance(v)));
                }
            }
        }
        let lrs = [
            lr_value(0, false, false),
            lr_value(1, false, true),
            lr_value(0, false, true),
            lr_value(0, true, false),
        ];
        assert_eq!(elrsr(&lrs), 0b1001);
        assert_eq!(eisr(&lrs), 0b0100);
        // Only the implemented LRs count.
        assert_eq!(elrsr(&lrs[..2]), 0b01);
        assert_eq!(elrsr(&[]), 0);
    }

    #[test]
    fn misr_bits_each_as_defined() {
        let invalid = lr_value(0, false, false);
        let pending = lr_value(1, false, false);
        let active = lr_value(2, false, false);
        let pending_active = lr_value(3, false, false);
        let eoi_done = lr_value(0, false, true);
        // No enables, no EOI request: nothing.
        assert_eq!(misr(&[invalid, pending], 0, 0), 0);
        // EOI needs no enable, only an EISR bit.
        assert_eq!(misr(&[eoi_done, pending], 0, 0), misr::EOI);
        // U: UIE and at most one valid LR.
        assert_eq!(misr(&[invalid, invalid], hcr::UIE, 0), misr::U);
        assert_eq!(misr(&[active, invalid], hcr::UIE, 0), misr::U);
        assert_eq!(misr(&[active, pending], hcr::UIE, 0), 0);
        // LRENP: LRENPIE and EOIcount not zero.
        assert_eq!(misr(&[pending], hcr::LRENPIE, 0), 0);
        assert_eq!(
            misr(&[pending], hcr::LRENPIE | 1 << hcr::EOICOUNT_SHIFT, 0),
            misr::LRENP
        );
        assert_eq!(misr(&[pending], 3 << hcr::EOICOUNT_SHIFT, 0), 0);
        // NP: NPIE and no LR in the pending state (0b01 only).
        assert_eq!(misr(&[pending, invalid], hcr::NPIE, 0), 0);
        assert_eq!(misr(&[active, invalid], hcr::NPIE, 0), misr::NP);
        assert_eq!(misr(&[pending_active], hcr::NPIE, 0), misr::NP);
        // Group enables and disables against VMCR.VENG0/VENG1.
        let groups = hcr::VGRP0EIE | hcr::VGRP0DIE | hcr::VGRP1EIE | hcr::VGRP1DIE;
        assert_eq!(misr(&[pending], groups, 0), misr::VGRP0D | misr::VGRP1D);
        assert_eq!(
            misr(&[pending], groups, vmcr::VENG0 | vmcr::VENG1),
            misr::VGRP0E | misr::VGRP1E
        );
        assert_eq!(
            misr(&[pending], groups, vmcr::VENG1),
            misr::VGRP0D | misr::VGRP1E
        );
        // En does not gate the bits, only the interrupt.
        assert_eq!(misr(&[eoi_done], hcr::EN, 0), misr(&[eoi_done], 0, 0));
        assert!(maintenance_asserted(hcr::EN, misr::EOI));
        assert!(!maintenance_asserted(0, misr::EOI));
        assert!(!maintenance_asserted(hcr::EN, 0));
    }

    #[test]
    fn lrs_load_and_write_back() {
        let shape = Shape::from_vtr(QEMU_VTR);
        // A plain software entry goes to the hardware as it is.
        let sw = lr_value(1, false, true);
        assert_eq!(hardware_lr(sw, &shape), sw);
        // RES0 bits and vINTID bits above the 16 implemented are dropped.
        assert_eq!(hardware_lr(sw | 1 << 45 | 1 << 56 | 0x1_0000, &shape), sw);
        // HW = 1: a software entry without pINTID (0x200 has bit 41 set,
        // which is not what makes EOI here), with EOI while valid, so
        // L2's deactivation makes it exit; never HW = 1 in the hardware.
        let hw = lr::HW
            | 0x200 << 32
            | 1 << lr::STATE_SHIFT
            | lr::GROUP1
            | 0x80 << lr::PRIORITY_SHIFT
            | 27;
        let loaded = hardware_lr(hw, &shape);
        assert_eq!(
            loaded,
            1 << lr::STATE_SHIFT | lr::GROUP1 | 0x80 << lr::PRIORITY_SHIFT | lr::EOI | 27
        );
        assert_eq!(loaded & (lr::HW | lr::PINTID_MASK & !lr::EOI), 0);
        for state in 1..4u64 {
            let v = hw & !lr::STATE_MASK | state << lr::STATE_SHIFT;
            assert_eq!(hardware_lr(v, &shape) & (lr::HW | lr::EOI), lr::EOI);
        }
        // Invalid: no EOI (nothing for L2 to deactivate, no maintenance).
        let hw_invalid = hw & !lr::STATE_MASK;
        assert_eq!(
            hardware_lr(hw_invalid, &shape),
            lr::GROUP1 | 0x80 << lr::PRIORITY_SHIFT | 27
        );
        // ... and L1 reads back HW and its pINTID with the new State.
        let back = written_back_lr(hw, loaded & !lr::STATE_MASK, &shape);
        assert_eq!(back, hw & !lr::STATE_MASK);
        // With the EOI bit hv added, the hardware shows an EOI request L1's
        // ICH_EISR_EL2 never does for a HW = 1 entry.
        assert!(lr_eoi_maintenance(loaded & !lr::STATE_MASK));
        assert!(!lr_eoi_maintenance(back));
        assert!(lr_empty(back));
        // Special vINTIDs are loaded invalid and L1's word is kept.
        for special in 1020..=1023u64 {
            let v = 1 << lr::STATE_SHIFT | lr::GROUP1 | special;
            assert_eq!(hardware_lr(v, &shape), 0);
            assert_eq!(written_back_lr(v, 0, &shape), v);
            // 0x10000 + 1020 is 1020 in 16 ID bits.
            assert_eq!(hardware_lr(v | 0x1_0000, &shape), 0);
        }
        // With 24 ID bits, 0x1_03fc is an ordinary vINTID.
        let wide = Shape {
            id_bits: 24,
            ..shape
        };
        assert_eq!(
            hardware_lr(lr::GROUP1 | 0x1_03fc, &wide),
            lr::GROUP1 | 0x1_03fc
        );
        // Write-back takes only State from the hardware: the priority the
        // hardware cut to its bits, or anything else, stays L1's.
        let l1 = lr_value(1, false, false) | 0x07 << lr::PRIORITY_SHIFT;
        let hw_now = 0xa0 << lr::PRIORITY_SHIFT | 42;
        assert_eq!(written_back_lr(l1, hw_now, &shape), l1 & !lr::STATE_MASK);
    }

    #[test]
    fn hcr_load_and_write_back() {
        let shape = Shape::from_vtr(QEMU_VTR);
        let all = u64::MAX >> 32;
        let loaded = hardware_hcr(all, &shape);
        assert_eq!(
            loaded,
            0xff | hcr::TC | hcr::TALL0 | hcr::TALL1 | hcr::EOICOUNT_MASK
        );
        // TDIR only where implemented; vSGIEOICount (8), TSEI (13), DVIM (15) never.
        let tds = Shape {
            tdir: true,
            ..shape
        };
        assert_eq!(hardware_hcr(all, &tds), loaded | hcr::TDIR);
        assert_eq!(hardware_hcr(1 << 8 | 1 << 13 | 1 << 15, &tds), 0);
        // Write-back: EOIcount from the hardware, every other bit L1's.
        let l1 = hcr::EN | hcr::LRENPIE | 1 << 13 | 2 << hcr::EOICOUNT_SHIFT;
        assert_eq!(
            written_back_hcr(l1, hcr::EN | 5 << hcr::EOICOUNT_SHIFT),
            hcr::EN | hcr::LRENPIE | 1 << 13 | 5 << hcr::EOICOUNT_SHIFT
        );
    }

    #[test]
    fn interface_round_trip_through_the_page() {
        let shape = Shape::from_vtr(QEMU_VTR);
        let page = VncrPage::default();
        // Words beyond the implemented LRs and APRs are never read or written.
        page.set(ICH_LR0_EL2 + 8 * 4, 0x5555);
        page.set(ICH_AP1R0_EL2 + 8, 0x6666);
        page.set(ICH_LR0_EL2, lr_value(1, false, false));
        page.set(ICH_LR0_EL2 + 8, lr_value(1, false, true));
        page.set(ICH_HCR_EL2, hcr::EN | hcr::LRENPIE | 1 << 13);
        page.set(ICH_VMCR_EL2, vmcr::VENG1 | 0xff << 24 | 1 << 40);
        let l1 = L1Interface::read(&page, &shape);
        assert_eq!(l1.lrs[4], 0);
        assert_eq!(l1.ap1r[1], 0);
        let hw = l1.to_hardware(&shape);
        assert_eq!(hw.hcr, hcr::EN | hcr::LRENPIE);
        assert_eq!(hw.vmcr, vmcr::VENG1 | 0xff << 24);
        // L2 acknowledged and EOId LR 0, acknowledged LR 1 (active), EOId
        // one interrupt no LR held (EOIcount 1), lowered its PMR.
        let mut after_l2 = hw;
        after_l2.lrs[0] &= !lr::STATE_MASK;
        after_l2.lrs[1] = after_l2.lrs[1] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        after_l2.ap1r[0] = 1 << 20;
        after_l2.hcr |= 1 << hcr::EOICOUNT_SHIFT;
        after_l2.vmcr = vmcr::VENG1 | 0xf0 << 24;
        let back = l1.written_back(&after_l2, &shape);
        back.write(&page, &shape);
        assert_eq!(LrState::of(page.get(ICH_LR0_EL2)), LrState::Invalid);
        assert_eq!(LrState::of(page.get(ICH_LR0_EL2 + 8)), LrState::Active);
        assert_eq!(page.get(ICH_LR0_EL2 + 8) & lr::EOI, lr::EOI);
        assert_eq!(page.get(ICH_AP1R0_EL2), 1 << 20);
        // L1's TSEI bit (13) stays as L1 wrote it; EOIcount is the hardware's.
        assert_eq!(
            page.get(ICH_HCR_EL2),
            hcr::EN | hcr::LRENPIE | 1 << 13 | 1 << hcr::EOICOUNT_SHIFT
        );
        assert_eq!(page.get(ICH_VMCR_EL2), vmcr::VENG1 | 0xf0 << 24);
        assert_eq!(page.get(ICH_LR0_EL2 + 8 * 4), 0x5555);
        assert_eq!(page.get(ICH_AP1R0_EL2 + 8), 0x6666);
        // What L1's trapped reads then return.
        let now = L1Interface::read(&page, &shape);
        let read = |r| l1_ich_read(r, &now, &shape, QEMU_VTR);
        assert_eq!(read(TrappedIch::Elrsr), 0b1101);
        assert_eq!(read(TrappedIch::Eisr), 0);
        assert_eq!(read(TrappedIch::Misr), misr::LRENP);
        assert_eq!(read(TrappedIch::Vtr), QEMU_VTR | vtr::NV4);
        assert!(maintenance_asserted(now.hcr, now.misr(&shape)));
    }

    #[test]
    fn trapped_encodings() {
        assert_eq!(TrappedIch::from_op2(1), Some(TrappedIch::Vtr));
        assert_eq!(TrappedIch::from_op2(2), Some(TrappedIch::Misr));
        assert_eq!(TrappedIch::from_op2(3), Some(TrappedIch::Eisr));
        assert_eq!(TrappedIch::from_op2(5), Some(TrappedIch::Elrsr));
        // HCR (0) and VMCR (7) are page words; 4 and 6 are unallocated.
        for op2 in [0, 4, 6, 7] {
            assert_eq!(TrappedIch::from_op2(op2), None);
        }
    }

    #[test]
    fn maintenance_taken_only_where_l1_routes_irqs_to_el2() {
        use super::super::hcr as vhcr;
        let shape = Shape::from_vtr(QEMU_VTR);
        // An EOI maintenance request (invalid LR0 with EOI), En set.
        let mut l1 = L1Interface {
            hcr: hcr::EN,
            ..L1Interface::default()
        };
        l1.lrs[0] = lr_value(0, false, true);
        assert!(maintenance_asserted(l1.hcr, l1.misr(&shape)));
        // Routed to EL2 by IMO or TGE: taken; IRQs to EL1: never.
        assert!(maintenance_taken_at_vel2(&l1, &shape, vhcr::IMO | vhcr::RW));
        assert!(maintenance_taken_at_vel2(
            &l1,
            &shape,
            vhcr::TGE | vhcr::E2H
        ));
        assert!(!maintenance_taken_at_vel2(&l1, &shape, vhcr::RW | vhcr::VM));
        assert!(!maintenance_taken_at_vel2(&l1, &shape, vhcr::FMO));
        // Not asserted: never, whatever the routing.
        let quiet = L1Interface { hcr: 0, ..l1 };
        assert!(!maintenance_taken_at_vel2(&quiet, &shape, vhcr::IMO));
        l1.lrs[0] = 0;
        assert!(!maintenance_taken_at_vel2(&l1, &shape, vhcr::IMO));
    }

    #[test]
    fn l2_sgi_writes_go_to_l1_only_when_it_traps_them() {
        use super::super::hcr as vhcr;
        let sgi1r = (3, 0, 12, 11, 5);
        let asgi1r = (3, 0, 12, 11, 6);
        let sgi0r = (3, 0, 12, 11, 7);
        for reg in [sgi1r, asgi1r, sgi0r] {
            // IMO, FMO or ICH_HCR_EL2.TC: L1's trap.
            for (hcr_bits, ich) in [(vhcr::IMO, 0), (vhcr::FMO, 0), (vhcr::RW, hcr::TC)] {
                assert_eq!(
                    l2_sgi_write(reg, false, hcr_bits, ich),
                    Some(L2SgiWrite::ForwardToL1)
                );
            }
            // None of them: not L1's trap.
            assert_eq!(
                l2_sgi_write(reg, false, vhcr::RW | vhcr::VM, hcr::EN | hcr::TALL1),
                Some(L2SgiWrite::ToL1Gic)
            );
            // MRS of a write-only register is not this rule's.
            assert_eq!(l2_sgi_write(reg, true, 0, 0), None);
        }
        // Other CRm 11 registers (ICC_DIR_EL1 op2 1, ICC_RPR_EL1 op2 3),
        // other op1/CRn: not SGI registers.
        for other in [
            (3, 0, 12, 11, 1),
            (3, 0, 12, 11, 3),
            (3, 4, 12, 11, 5),
            (3, 0, 12, 12, 5),
        ] {
            assert_eq!(l2_sgi_write(other, false, 0, 0), None);
        }
    }

    #[test]
    fn only_the_disagreeing_triggers_are_withheld() {
        // The MISR bits 1-7 are their HCR enables' positions.
        assert_eq!(
            [
                misr::U,
                misr::LRENP,
                misr::NP,
                misr::VGRP0E,
                misr::VGRP0D,
                misr::VGRP1E,
                misr::VGRP1D
            ],
            [
                hcr::UIE,
                hcr::LRENPIE,
                hcr::NPIE,
                hcr::VGRP0EIE,
                hcr::VGRP0DIE,
                hcr::VGRP1EIE,
                hcr::VGRP1DIE
            ]
        );
        let shape = Shape::from_vtr(QEMU_VTR);
        // Review 33 R3b: VENG0 set, VENG1 clear, VGrp0DIE; LR0 active
        // with EOI. L1's MISR is 0; hardware that takes VGrp0D from VENG1
        // asserts VGrp0D. Only VGrp0DIE goes: LR0's EOI (what L2's
        // deactivation must raise) and En stay.
        let mut l1 = L1Interface {
            hcr: hcr::EN | hcr::VGRP0DIE,
            vmcr: vmcr::VENG0 | 1 << 9,
            ..L1Interface::default()
        };
        l1.lrs[0] = lr_value(2, false, true);
        l1.lrs[1] = lr_value(0, true, false);
        let l1_misr = l1.misr(&shape);
        assert_eq!(l1_misr, 0);
        let hw = l1.to_hardware(&shape);
        let narrowed = hw.without_disagreeing_triggers(misr::VGRP0D, l1_misr, 0, 0);
        assert_eq!(narrowed.hcr, hcr::EN);
        assert_eq!(narrowed.lrs, hw.lrs);
        // An EISR bit L1 does not show drops only that LR's EOI; one L1
        // shows too, and HW entries (bit 41 is pINTID there), stay.
        let mut two = l1;
        two.lrs[1] = lr_value(0, false, true);
        two.lrs[2] = lr_value(0, false, true);
        let narrowed = two.without_disagreeing_triggers(misr::EOI, misr::EOI, 0b011, 0b010);
        assert_eq!(narrowed.lrs[0], two.lrs[0] & !lr::EOI);
        assert_eq!(narrowed.lrs[1], two.lrs[1]);
        assert_eq!(narrowed.lrs[2], two.lrs[2]);
        assert_eq!(narrowed.hcr, two.hcr);
        let hw_entry = lr::HW | 0x200 << 32;
        two.lrs[0] = hw_entry;
        assert_eq!(
            two.without_disagreeing_triggers(0, 0, 1, 0).lrs[0],
            hw_entry
        );
        // Agreement withholds nothing; the EOI MISR bit never touches En.
        assert_eq!(two.without_disagreeing_triggers(misr::EOI, 0, 0, 0), two);
        let all = u64::MAX >> 56;
        assert_eq!(
            two.without_disagreeing_triggers(all, 0, 0, 0).hcr,
            two.hcr & !MAINTENANCE_ENABLES
        );
    }

    #[test]
    fn maintenance_for_l1() {
        use super::super::hcr as vhcr;
        assert!(!l1_takes_irqs_at_vel2(vhcr::RW | vhcr::VM));
        assert!(l1_takes_irqs_at_vel2(vhcr::IMO));
        assert!(l1_takes_irqs_at_vel2(vhcr::TGE | vhcr::E2H));
        // Quiet: no enable and no software EOI left; HW entries' pINTID
        // bit 41 untouched (it is not EOI there), everything else kept.
        let l1 = L1Interface {
            lrs: [
                lr_value(1, false, true),
                lr_value(0, true, false),
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ],
            hcr: hcr::EN
                | hcr::UIE
                | hcr::NPIE
                | hcr::VGRP1EIE
                | hcr::TALL1
                | 3 << hcr::EOICOUNT_SHIFT,
            ..L1Interface::default()
        };
        let quiet = l1.without_maintenance_triggers();
        assert_eq!(quiet.hcr, hcr::EN | hcr::TALL1 | 3 << hcr::EOICOUNT_SHIFT);
        assert_eq!(quiet.lrs[0], l1.lrs[0] & !lr::EOI);
        assert_eq!(quiet.lrs[1], l1.lrs[1]);
        assert_eq!(quiet.misr(&Shape::from_vtr(QEMU_VTR)), 0);
        // The LR of L1's own maintenance interrupt follows the level.
        let pending = l1_maintenance_lr(0, true, 25);
        assert_eq!(LrState::of(pending), LrState::Pending);
        assert_eq!(pending & lr::VINTID_MASK, 25);
        assert_eq!(pending & (lr::HW | lr::EOI), 0);
        assert_ne!(pending & lr::GROUP1, 0);
        assert_eq!(pending >> lr::PRIORITY_SHIFT & 0xff, 0xa0);
        assert_eq!(l1_maintenance_lr(pending, true, 25), pending);
        assert_eq!(l1_maintenance_lr(pending, false, 25), 0);
        let active = pending & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        assert_eq!(l1_maintenance_lr(active, false, 25), active);
        assert_eq!(l1_maintenance_lr(active, true, 25), active);
        let both = pending | lr::STATE_MASK;
        assert_eq!(l1_maintenance_lr(both, false, 25), active);
        assert_eq!(l1_maintenance_lr(both, true, 25), both);
        assert_eq!(l1_maintenance_lr(0, false, 25), 0);
        assert_eq!(L1_OWN_START.hcr, hcr::EN);
    }

    /// An HW = 1 LR for vINTID 27 naming L1's PPI 27 (KVM's timer
    /// mapping), in `state`.
    const fn hw_timer_lr(state: u64) -> u64 {
        state << lr::STATE_SHIFT | lr::HW | 27 << 32 | lr::GROUP1 | 0xa0 << lr::PRIORITY_SHIFT | 27
    }

    #[test]
    fn l2_deactivations_of_hw_entries_are_seen_from_the_state_change() {
        let shape = Shape::from_vtr(QEMU_VTR);
        let (invalid, pending, active, both) = (0u64, 1u64, 2u64, 3u64);
        // (state at the entry, hardware state at the exit, deactivated)
        let cases = [
            (pending, invalid, true),  // acknowledged and EOId (EOImode 0)
            (pending, pending, false), // not taken
            (pending, active, false),  // taken, not yet deactivated
            (active, invalid, true),   // deactivated (DIR, EOImode 1)
            (active, active, false),   // still in L2's handler
            (both, pending, true),     // active part deactivated
            (both, both, false),       // untouched
            (invalid, invalid, false), // nothing listed
        ];
        for (before, now, expected) in cases {
            let l1 = hw_timer_lr(before);
            let hardware = hardware_lr(l1, &shape) & !lr::STATE_MASK | now << lr::STATE_SHIFT;
            assert_eq!(
                hw_deactivated(l1, hardware, &shape),
                expected,
                "{before} -> {now}"
            );
            // A software entry going through the same never links.
            let sw = l1 & !(lr::HW | lr::PINTID_MASK);
            assert!(!hw_deactivated(sw, hardware, &shape));
        }
        // A special vINTID (loaded invalid) never links.
        let special = hw_timer_lr(pending) & !lr::VINTID_MASK | 1023;
        assert!(!hw_deactivated(special, 0, &shape));
        assert_eq!(pintid(lr::HW | 0x1fff << 32 | 5), 0x1fff);
        // Over the interface: LR 1 and 3 deactivated, their pINTIDs in LR
        // order; LR 2 (HW, still active) and LR 0 (software) not.
        let mut l1 = L1Interface::default();
        l1.lrs[0] = lr_value(1, false, true);
        l1.lrs[1] = hw_timer_lr(pending);
        l1.lrs[2] = hw_timer_lr(active) & !lr::PINTID_MASK | 30 << 32;
        l1.lrs[3] = hw_timer_lr(active) & !lr::PINTID_MASK | 48 << 32;
        let mut after = l1.to_hardware(&shape);
        for n in [0, 1, 3] {
            after.lrs[n] &= !lr::STATE_MASK;
        }
        assert_eq!(&l1.hw_deactivations(&after, &shape)[..], &[27, 48]);
        // Beyond the implemented LRs nothing is looked at.
        let one = Shape {
            list_registers: 1,
            ..shape
        };
        assert!(l1.hw_deactivations(&after, &one).is_empty());
    }

    #[test]
    fn a_deactivation_from_l2_ends_the_active_state_l1_holds() {
        let listed = |state: u64, intid: u64| {
            state << lr::STATE_SHIFT | lr::GROUP1 | 0xa0 << lr::PRIORITY_SHIFT | lr::EOI | intid
        };
        // L1's own interface: LR 0 its maintenance interrupt, LR 1 PPI 27
        // acknowledged and priority-dropped (active), LR 2 SGI 3 pending
        // and active, LR 3 PPI 26 pending only.
        let mut lrs = [listed(2, 25), listed(2, 27), listed(3, 3), listed(1, 26)];
        assert!(deactivate_listed(&mut lrs, 27));
        assert_eq!(lrs[1], 0);
        assert!(deactivate_listed(&mut lrs, 3));
        assert_eq!(lrs[2], listed(1, 3));
        // CONSTRAINED UNPREDICTABLE: not active (pending only, already
        // deactivated, or never listed): no effect.
        let before = lrs;
        for intid in [26, 27, 3, 30, 1020, 8191] {
            assert!(!deactivate_listed(&mut lrs, intid), "{intid}");
        }
        assert_eq!(lrs, before);
        // Only the vINTID names the entry (LR 0 holds 25 active).
        assert!(deactivate_listed(&mut lrs, 25));
        assert_eq!(lrs[0], 0);
    }
}
