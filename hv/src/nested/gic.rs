//! L1's GICv3 distributor and redistributors (IHI 0069), emulated in
//! software: the state a guest hypervisor programs through GICD_* and
//! GICR_* (enables, pending and active bits, priorities, SPI configuration
//! and routing, GICR_WAKER) and the SGIs its ICC_SGI1R_EL1 sends, and which
//! of them its vCPUs get (`arch::nested_gic` lists them in L1's own
//! virtual interface and takes L2 out to L1 for them).
//!
//! Why software, not hv's vGIC for ordinary guests (`crate::vgic`): that
//! one forwards enables, priorities and routing of SPIs and PPIs to the
//! physical distributor, with vCPU i on physical CPU i and the list
//! registers hv's own. L1's vCPUs are not on the CPUs of their index (vCPU
//! 1 runs on CPU 2, the service on CPU 1), and L1's own interface's list
//! registers already carry its maintenance interrupt and timer PPIs
//! (`nested::vgic`, `nested::timer`). What it shares with that vGIC: the
//! SGI decode (`vgic::decode_sgi1r`), SPI routing (`vgic::route_target`),
//! and the register map's choices (affinity routing only, everything group
//! 1, no LPIs).
//!
//! The GIC L1 is shown (the choices where the architecture leaves one):
//! - one Security state (GICD_CTLR.DS reads 1, GICD_TYPER.SecurityExtn 0),
//!   affinity routing always on (ARE RAO/WI), and every interrupt group 1
//!   (GICD_IGROUPR, GICR_IGROUPR0 RAO/WI; GICD_CTLR.EnableGrp0 RAZ/WI): hv
//!   runs L1 with HCR_EL2.FMO too, but gives it no group 0 (no virtual FIQ),
//!   as for ordinary guests;
//! - [`L1_GIC_LINES`] INTIDs (SPIs 32 to 159), 10 ID bits, no LPIs, no
//!   message-based SPIs, no extended ranges;
//! - GICD_PIDR2 and GICR_PIDR2 0x3b (ArchRev 3: GICv3);
//! - a redistributor (RD and SGI frames, [`REDISTRIBUTOR_FRAMES`] bytes)
//!   per vCPU from the platform's first redistributor base, GICR_TYPER with
//!   L1's MPIDR affinity of that vCPU (Aff0 = index, as hv gives L1's
//!   MPIDR_EL1) and Last on the last one;
//! - reset: everything disabled, not pending, not active, priority 0,
//!   level-sensitive SPIs routed to affinity 0, each redistributor asleep
//!   (GICR_WAKER.ProcessorSleep and ChildrenAsleep 1);
//! - registers not listed below, and accesses of a size a register does
//!   not support, are RAZ/WI (reserved GIC addresses are RAZ/WI; an
//!   unsupported access size is CONSTRAINED UNPREDICTABLE, and RAZ/WI is
//!   one of its permitted behaviours).
//!
//! Forwarding (what a vCPU's CPU interface gets): an interrupt pending,
//! enabled, not active (in the model; an SPI active in another vCPU's
//! list registers waits for its deactivation there), with
//! GICD_CTLR.EnableGrp1 set and the target's redistributor awake
//! (ProcessorSleep 0); SGIs and PPIs to their redistributor's vCPU, SPIs
//! to the vCPU GICD_IROUTER names (with Interrupt_Routing_Mode 1, "any
//! participating PE", hv picks the lowest-numbered awake vCPU; a vCPU that
//! is off sleeps, [`L1Gic::power_off`]), highest priority first. Once hv
//! lists one in a list register its pending state moves there (the
//! distributor's bit is cleared): an edge, sent once, is delivered once,
//! and a second send before L1 acknowledges merges into that entry; at the
//! vCPU's CPU_OFF what it holds goes back ([`L1Gic::power_off`]). hv
//! records what it listed where until it sees it acknowledged: meanwhile
//! it reads pending (GICD_ISPENDR, GICR_ISPENDR0; such a read first syncs
//! the holders, [`L1Gic::read_holders`]), a new priority L1 writes
//! reaches the entry at the holder's exit, and a clear-pending, disable,
//! set-active or re-route L1 writes kicks the holder, whose exit
//! withdraws the entry ([`L1Gic::withdraw_listed`]; GICD_CTLR.RWP and
//! GICR_CTLR.RWP read 1 until a disable has reached it).
//! One active state per SGI or SPI (IHI 0069; review 49 R49-3): once L1
//! acknowledged what hv listed it is the list register's, recorded at
//! each sync of the holder ([`L1Gic::record_lr_active`]), else the
//! model's bit; I{S,C}ACTIVER loads read both and, like their stores,
//! first sync the holders ([`L1Gic::active_holders`]); a set of an
//! interrupt active in a list register changes nothing, a clear reaches
//! the entry at the holder's sync ([`L1Gic::deactivate_cleared`]), and
//! so does L2's deactivation, on another vCPU, of an HW = 1 entry naming
//! an SPI (review 48 R48-3; [`L1Gic::deactivate`]).
//! Limits: PPIs come from hv's own paths (the maintenance interrupt,
//! `nested::vgic`; the timers, `nested::timer`), which do not consult
//! GICR_ISENABLER0 or GICR_IPRIORITYR (their enable bits and priorities
//! are kept and read back); PPI bits of the pending registers are RAZ/WI
//! here, and those of the active registers are the entries of the
//! vCPU's own interface that hold the PPIs ([`write_listed_ppis_active`]),
//! written and read, also from another vCPU, through its syncs
//! ([`L1Gic::sync_ppis`]).

use super::vgic::{lr, vmcr, LrState};
use crate::vgic::{decode_sgi1r, route_target};

/// The most vCPUs L1's GIC has redistributors for.
pub const MAX_L1_VCPUS: usize = 8;
/// The INTIDs L1's distributor implements (GICD_TYPER.ITLinesNumber 4).
pub const L1_GIC_LINES: u32 = 160;
const SPIS: usize = (L1_GIC_LINES - 32) as usize;
const SPI_WORDS: usize = SPIS / 32;
/// The distributor's frame.
pub const DISTRIBUTOR_BYTES: u64 = 0x1_0000;
/// One vCPU's redistributor: its RD frame, then its SGI frame.
pub const REDISTRIBUTOR_FRAMES: u64 = 0x2_0000;
const SGI_FRAME: u64 = 0x1_0000;
/// GICR_ICPENDR0, from a redistributor's RD frame.
pub const ICPENDR0: u64 = SGI_FRAME + 0x280;
/// GICR_ISACTIVER0 and GICR_ICACTIVER0, from a redistributor's RD frame.
pub const ISACTIVER0: u64 = SGI_FRAME + 0x300;
pub const ICACTIVER0: u64 = SGI_FRAME + 0x380;
/// The PPIs' INTIDs (bits 31:16 of GICR_ISACTIVER0 and the like).
const PPIS: core::ops::Range<u32> = 16..32;

/// GICD_CTLR (one Security state).
pub mod ctlr {
    pub const ENABLE_GRP1: u32 = 1 << 1;
    pub const ARE: u32 = 1 << 4;
    pub const DS: u32 = 1 << 6;
    /// Register Write Pending ([`super::L1Gic::distributor_write_pending`]).
    pub const RWP: u32 = 1 << 31;
    /// GICR_CTLR.RWP.
    pub const GICR_RWP: u32 = 1 << 3;
}

/// GICR_WAKER.
pub mod waker {
    pub const PROCESSOR_SLEEP: u32 = 1 << 1;
    pub const CHILDREN_ASLEEP: u32 = 1 << 2;
}

/// GICD_IROUTER<n>: Interrupt_Routing_Mode and the affinity fields.
const IROUTER_IRM: u64 = 1 << 31;
const IROUTER_WRITABLE: u64 = 0xff << 32 | IROUTER_IRM | 0xff_ffff;
/// GICD_PIDR2 / GICR_PIDR2: ArchRev 3 (GICv3), JEDEC, DES_1 3.
pub const PIDR2: u32 = 0x3b;
const PIDR2_OFFSET: u64 = 0xffe8;
/// GICR_ICFGR0: SGIs are edge-triggered (read-only).
const ICFGR0_SGIS: u32 = 0xaaaa_aaaa;

/// Where L1's GIC is in its IPA space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1GicLayout {
    pub distributor: u64,
    /// vCPU k's RD frame is at `redistributors + k * REDISTRIBUTOR_FRAMES`.
    pub redistributors: u64,
    pub vcpus: usize,
}

/// Which of L1's GIC frames an access reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicFrame {
    Distributor,
    /// vCPU k's redistributor (RD frame at offset 0, SGI frame at 0x10000).
    Redistributor(usize),
}

impl L1GicLayout {
    /// The frame and offset of `ipa`, or None when it is not L1's GIC.
    pub fn locate(&self, ipa: u64) -> Option<(GicFrame, u64)> {
        if let Some(offset) = ipa
            .checked_sub(self.distributor)
            .filter(|&o| o < DISTRIBUTOR_BYTES)
        {
            return Some((GicFrame::Distributor, offset));
        }
        let offset = ipa.checked_sub(self.redistributors)?;
        let vcpu = offset / REDISTRIBUTOR_FRAMES;
        (vcpu < self.vcpus as u64).then_some((
            GicFrame::Redistributor(vcpu as usize),
            offset % REDISTRIBUTOR_FRAMES,
        ))
    }
}

/// One vCPU's SGIs and PPIs (its redistributor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Private {
    enabled: u32,
    /// SGIs only (PPIs come from hv's own paths).
    pending: u16,
    active: u16,
    /// SGIs hv listed pending in this vCPU's list registers, not yet seen
    /// acknowledged ([`L1Gic::withdraw_listed`]).
    listed: u16,
    /// Of `listed`, those L1 cleared pending since (GICR_ICPENDR0).
    withdrawn: u16,
    /// Of `listed`, those L1 gave a new priority since (GICR_IPRIORITYR).
    reprioritized: u16,
    /// SGIs active (or pending and active) in this vCPU's list registers
    /// at its last sync: L1 acknowledged them there, and their active
    /// state is that entry's ([`L1Gic::record_lr_active`]).
    lr_active: u16,
    /// Of `lr_active`, those L1 cleared active since (GICR_ICACTIVER0):
    /// deactivated in the list register at the vCPU's next sync.
    lr_active_clear: u16,
    /// The PPIs (bit n: INTID 16 + n) active in the vCPU's own interface
    /// at its last sync ([`L1Gic::sync_ppis`]).
    ppi_active: u16,
    /// PPI active states L1 set or cleared (GICR_ISACTIVER0/ICACTIVER0,
    /// the last write of each bit) that the vCPU's list registers do not
    /// have yet: applied at its next sync; a set with no free list
    /// register waits here for one.
    ppi_active_set: u16,
    ppi_active_clear: u16,
    priority: [u8; 32],
    asleep: bool,
}

const PRIVATE_RESET: Private = Private {
    enabled: 0,
    pending: 0,
    active: 0,
    listed: 0,
    withdrawn: 0,
    reprioritized: 0,
    lr_active: 0,
    lr_active_clear: 0,
    ppi_active: 0,
    ppi_active_set: 0,
    ppi_active_clear: 0,
    priority: [0; 32],
    asleep: true,
};

/// L1's distributor and its vCPUs' redistributors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L1Gic {
    vcpus: usize,
    /// L1's maintenance interrupt, the PPI hv lists in LR 0 only
    /// ([`write_listed_ppis_active`]).
    maintenance_intid: u32,
    group1: bool,
    private: [Private; MAX_L1_VCPUS],
    spi_enabled: [u32; SPI_WORDS],
    spi_pending: [u32; SPI_WORDS],
    spi_active: [u32; SPI_WORDS],
    /// Int_config bits (GICD_ICFGR<n> odd bits), two words per 32 SPIs.
    spi_config: [u32; SPI_WORDS * 2],
    spi_priority: [u8; SPIS],
    spi_route: [u64; SPIS],
    /// SPIs hv listed pending in `spi_holder`'s list registers, not yet
    /// seen acknowledged, and those L1 cleared pending since
    /// (GICD_ICPENDR<n>), as `Private::listed` and `withdrawn`.
    spi_listed: [u32; SPI_WORDS],
    spi_withdrawn: [u32; SPI_WORDS],
    /// Of `spi_listed`, those L1 gave a new priority since
    /// (GICD_IPRIORITYR<n>), as `Private::reprioritized`.
    spi_reprioritized: [u32; SPI_WORDS],
    /// SPIs active (or pending and active) in `spi_holder`'s list
    /// registers at its last sync, and those L1 cleared active since
    /// (GICD_ICACTIVER<n>), as `Private::lr_active` and `lr_active_clear`,
    /// or L2 deactivated on another vCPU through an HW = 1 entry since
    /// (also when only listed there: [`L1Gic::deactivate_at_holder`]).
    spi_lr_active: [u32; SPI_WORDS],
    spi_lr_active_clear: [u32; SPI_WORDS],
    /// The vCPU an SPI is listed at (`spi_listed`) or active at
    /// (`spi_lr_active`): never two at once (`listed_elsewhere`).
    spi_holder: [u8; SPIS],
    /// The vCPUs whose next exit is to run [`L1Gic::withdraw_listed`]
    /// even with nothing else to do there (bit k: vCPU k): a load that
    /// reads what their list registers hold waits for it
    /// ([`L1Gic::request_sync`]).
    sync_requested: u32,
    /// How many times each vCPU ran [`L1Gic::withdraw_listed`] (wrapping):
    /// a load waiting for a vCPU's exit sees it advance.
    syncs: [u32; MAX_L1_VCPUS],
}

/// An interrupt hv listed pending in a vCPU's list registers and has not
/// seen acknowledged ([`L1Gic::withdraw_listed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Listed {
    intid: u32,
    /// L1 cleared its pending state since.
    withdrawn: bool,
    /// L1 gave it a new priority since.
    reprioritized: bool,
}

/// An interrupt the CPU interface of one vCPU is to get.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forwarded {
    pub intid: u32,
    pub priority: u8,
}

/// What a sync of a vCPU's list registers does ([`L1Gic::sync`]; each
/// field false only for a deliberate defect, hv's `gic-no-*` demos).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncSteps {
    /// Withdraw what L1 cleared pending, disabled or re-routed.
    pub withdraw: bool,
    /// Give listed entries the priority L1 last wrote.
    pub reprioritize: bool,
    /// Keep a PPI set active that finds no free list register for a later
    /// sync (else it is dropped).
    pub keep_waiting_ppi_sets: bool,
    /// Record the SGIs and SPIs active in the list registers and
    /// deactivate there those L1 cleared active
    /// ([`L1Gic::record_lr_active`], [`L1Gic::deactivate_cleared`]; else the model's active bits are
    /// only what L1 wrote, review 49 R49-3's departure).
    pub listed_active: bool,
}

impl SyncSteps {
    /// Every step.
    pub const ALL: SyncSteps = SyncSteps {
        withdraw: true,
        reprioritize: true,
        keep_waiting_ppi_sets: true,
        listed_active: true,
    };
}

/// Which vCPUs' list registers L2's deactivation of an HW = 1 entry
/// naming an SPI reaches ([`L1Gic::deactivate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwDeactivationReach {
    /// The vCPU holding it, whichever (a GIC's distributor).
    AnyHolder,
    /// Only the deactivating vCPU's own (review 48 R48-3's limit, kept
    /// for hv's `gic-no-remote-hw-deactivate` demo, which must fail).
    OwnVcpu,
}

/// What [`L1Gic::power_off`] changed that a refused CPU_OFF undoes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PowerOff {
    was_asleep: bool,
    /// The INTIDs whose active state moved from the list registers to the
    /// distributor or redistributor.
    activated: arrayvec::ArrayVec<u32, 16>,
}

/// A set/clear register's operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Set,
    Clear,
}

/// Which state a set/clear register acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bits {
    Enable,
    Pending,
    Active,
}

fn set_clear(word: &mut u32, op: Op, value: u32) {
    match op {
        Op::Set => *word |= value,
        Op::Clear => *word &= !value,
    }
}

/// An IPRIORITYR read of `size` bytes from INTID `intid` on: bytes of
/// `priorities` (INTID `base` on), 0 for the INTIDs before or after them.
fn read_priorities(priorities: &[u8], base: u64, intid: u64, size: u64) -> u64 {
    (0..size).fold(0, |value, byte| {
        let priority = (intid + byte)
            .checked_sub(base)
            .and_then(|i| priorities.get(i as usize));
        value | u64::from(priority.copied().unwrap_or(0)) << (8 * byte)
    })
}

/// An IPRIORITYR write of `size` bytes of `value` from INTID `intid` on
/// (`read_priorities`' layout; bytes of other INTIDs ignored).
fn write_priorities(priorities: &mut [u8], base: u64, intid: u64, size: u64, value: u64) {
    for byte in 0..size {
        let priority = (intid + byte)
            .checked_sub(base)
            .and_then(|i| priorities.get_mut(i as usize));
        if let Some(priority) = priority {
            *priority = (value >> (8 * byte)) as u8;
        }
    }
}

/// The set/clear register at distributor (or SGI frame) offset `offset`
/// within [0x100, 0x400): its bits, operation and word index.
fn set_clear_register(offset: u64) -> Option<(Bits, Op, usize)> {
    let (bits, op) = match offset & !0x7f {
        0x100 => (Bits::Enable, Op::Set),
        0x180 => (Bits::Enable, Op::Clear),
        0x200 => (Bits::Pending, Op::Set),
        0x280 => (Bits::Pending, Op::Clear),
        0x300 => (Bits::Active, Op::Set),
        0x380 => (Bits::Active, Op::Clear),
        _ => return None,
    };
    Some((bits, op, ((offset & 0x7f) / 4) as usize))
}

/// The SPI word (0 for SPIs 32-63) of a distributor set/clear register
/// at `offset` (its first word, SGIs and PPIs, has none).
fn spi_word(offset: u64) -> Option<usize> {
    ((offset & 0x7f) / 4)
        .checked_sub(1)
        .map(|s| s as usize)
        .filter(|&s| s < SPI_WORDS)
}

impl L1Gic {
    /// The GIC at reset, with redistributors for `vcpus` vCPUs (at most
    /// [`MAX_L1_VCPUS`]) and L1's maintenance interrupt
    /// `maintenance_intid`.
    pub const fn new(vcpus: usize, maintenance_intid: u32) -> L1Gic {
        L1Gic {
            vcpus: if vcpus > MAX_L1_VCPUS {
                MAX_L1_VCPUS
            } else {
                vcpus
            },
            maintenance_intid,
            group1: false,
            private: [PRIVATE_RESET; MAX_L1_VCPUS],
            spi_enabled: [0; SPI_WORDS],
            spi_pending: [0; SPI_WORDS],
            spi_active: [0; SPI_WORDS],
            spi_config: [0; SPI_WORDS * 2],
            spi_priority: [0; SPIS],
            spi_route: [0; SPIS],
            spi_listed: [0; SPI_WORDS],
            spi_withdrawn: [0; SPI_WORDS],
            spi_reprioritized: [0; SPI_WORDS],
            spi_lr_active: [0; SPI_WORDS],
            spi_lr_active_clear: [0; SPI_WORDS],
            spi_holder: [0; SPIS],
            sync_requested: 0,
            syncs: [0; MAX_L1_VCPUS],
        }
    }

    /// L1's MPIDR_EL1 affinities of its vCPUs (Aff0 = index).
    fn affinities(&self) -> [u64; MAX_L1_VCPUS] {
        core::array::from_fn(|k| k as u64)
    }

    /// A load of `size` bytes at `offset` in `frame` (an access not
    /// aligned to its size is RAZ/WI).
    pub fn read(&self, frame: GicFrame, offset: u64, size: u64) -> u64 {
        if size == 0 || !offset.is_multiple_of(size) {
            return 0;
        }
        match frame {
            GicFrame::Distributor => self.read_distributor(offset, size),
            GicFrame::Redistributor(k) if k < self.vcpus => {
                self.read_redistributor(k, offset, size)
            }
            GicFrame::Redistributor(_) => 0,
        }
    }

    /// A store of the low `size` bytes of `value` at `offset` in `frame`
    /// (an access not aligned to its size is RAZ/WI).
    pub fn write(&mut self, frame: GicFrame, offset: u64, size: u64, value: u64) {
        if size == 0 || !offset.is_multiple_of(size) {
            return;
        }
        match frame {
            GicFrame::Distributor => self.write_distributor(offset, size, value),
            GicFrame::Redistributor(k) if k < self.vcpus => {
                self.write_redistributor(k, offset, size, value)
            }
            GicFrame::Redistributor(_) => {}
        }
    }

    fn read_distributor(&self, offset: u64, size: u64) -> u64 {
        match (offset, size) {
            (0x6100..=0x7fdf, 4 | 8) => {
                let n = (offset - 0x6000) / 8;
                let Some(route) = self.spi_route.get(n as usize - 32) else {
                    return 0;
                };
                if size == 8 && offset.is_multiple_of(8) {
                    *route
                } else if offset.is_multiple_of(8) {
                    *route & 0xffff_ffff
                } else {
                    *route >> 32
                }
            }
            (0x400..=0x7ff, 1 | 4) => read_priorities(&self.spi_priority, 32, offset - 0x400, size),
            (_, 4) if offset.is_multiple_of(4) => u64::from(self.read_distributor_word(offset)),
            _ => 0,
        }
    }

    fn read_distributor_word(&self, offset: u64) -> u32 {
        let spi_word = |first: u64| ((offset - first) / 4).checked_sub(1).map(|w| w as usize);
        match offset {
            0x0000 => {
                ctlr::ARE
                    | ctlr::DS
                    | if self.group1 { ctlr::ENABLE_GRP1 } else { 0 }
                    | if self.distributor_write_pending() {
                        ctlr::RWP
                    } else {
                        0
                    }
            }
            // ITLinesNumber, CPUNumber, IDbits 9 (10 bits), no LPIs, MBIS
            // or SecurityExtn.
            0x0004 => (L1_GIC_LINES / 32 - 1) | ((self.vcpus.max(1) as u32 - 1) & 7) << 5 | 9 << 19,
            0x0080..=0x00ff => match spi_word(0x80) {
                Some(w) if w < SPI_WORDS => u32::MAX,
                _ => 0,
            },
            0x0100..=0x03ff => {
                let Some((bits, _, w)) = set_clear_register(offset) else {
                    return 0;
                };
                let Some(s) = w.checked_sub(1).filter(|&s| s < SPI_WORDS) else {
                    return 0;
                };
                match bits {
                    Bits::Enable => self.spi_enabled[s],
                    // Listed and not acknowledged is still pending.
                    Bits::Pending => {
                        self.spi_pending[s] | self.spi_listed[s] & !self.spi_withdrawn[s]
                    }
                    // One active state: the model's, or a list register's.
                    Bits::Active => {
                        (self.spi_active[s] | self.spi_lr_active[s]) & !self.spi_lr_active_clear[s]
                    }
                }
            }
            0x0c00..=0x0cff => {
                let w = ((offset - 0xc00) / 4) as usize;
                w.checked_sub(2)
                    .and_then(|c| self.spi_config.get(c))
                    .copied()
                    .unwrap_or(0)
            }
            PIDR2_OFFSET => PIDR2,
            _ => 0,
        }
    }

    fn write_distributor(&mut self, offset: u64, size: u64, value: u64) {
        match (offset, size) {
            (0x6100..=0x7fdf, 4 | 8) => {
                let n = (offset - 0x6000) / 8;
                let Some(route) = self.spi_route.get_mut(n as usize - 32) else {
                    return;
                };
                let new = if size == 8 && offset.is_multiple_of(8) {
                    value
                } else if offset.is_multiple_of(8) {
                    *route & !0xffff_ffff | value & 0xffff_ffff
                } else {
                    *route & 0xffff_ffff | (value & 0xffff_ffff) << 32
                };
                *route = new & IROUTER_WRITABLE;
            }
            (0x400..=0x7ff, 1 | 4) => {
                write_priorities(&mut self.spi_priority, 32, offset - 0x400, size, value);
                self.reprioritize_listed(0, offset - 0x400, size);
            }
            (_, 4) if offset.is_multiple_of(4) => self.write_distributor_word(offset, value as u32),
            _ => {}
        }
    }

    fn write_distributor_word(&mut self, offset: u64, value: u32) {
        match offset {
            0x0000 => self.group1 = value & ctlr::ENABLE_GRP1 != 0,
            0x0100..=0x03ff => {
                let Some((bits, op, w)) = set_clear_register(offset) else {
                    return;
                };
                let Some(s) = w.checked_sub(1).filter(|&s| s < SPI_WORDS) else {
                    return;
                };
                let word = match bits {
                    Bits::Enable => &mut self.spi_enabled[s],
                    Bits::Pending => &mut self.spi_pending[s],
                    Bits::Active => {
                        for b in (0..32).filter(|b| value & 1 << b != 0) {
                            self.write_active(0, 32 + (s * 32) as u32 + b, op);
                        }
                        return;
                    }
                };
                set_clear(word, op, value);
                if (bits, op) == (Bits::Pending, Op::Clear) {
                    self.spi_withdrawn[s] |= value & self.spi_listed[s];
                }
            }
            0x0c00..=0x0cff => {
                let w = ((offset - 0xc00) / 4) as usize;
                if let Some(c) = w.checked_sub(2).and_then(|c| self.spi_config.get_mut(c)) {
                    // Int_config is bit 2k+1; bit 2k is RES0.
                    *c = value & 0xaaaa_aaaa;
                }
            }
            _ => {}
        }
    }

    fn read_redistributor(&self, k: usize, offset: u64, size: u64) -> u64 {
        let p = &self.private[k];
        match (offset, size) {
            // GICR_TYPER: affinity (Aff0 = k), Processor_Number k, Last.
            (0x0008, 8) => self.redistributor_typer(k),
            (0x0008, 4) => self.redistributor_typer(k) & 0xffff_ffff,
            (0x000c, 4) => self.redistributor_typer(k) >> 32,
            (0x1_0400..=0x1_041f, 1 | 4) => {
                read_priorities(&p.priority, 0, offset - 0x1_0400, size)
            }
            (_, 4) if offset.is_multiple_of(4) => u64::from(match offset {
                // GICR_CTLR: RWP while an SGI L1 disabled (GICR_ICENABLER0)
                // is still listed here (`distributor_write_pending`).
                0x0000 if p.listed & !(p.enabled as u16) != 0 => ctlr::GICR_RWP,
                0x0014 if p.asleep => waker::PROCESSOR_SLEEP | waker::CHILDREN_ASLEEP,
                PIDR2_OFFSET => PIDR2,
                0x1_0080 => u32::MAX,
                0x1_0c00 => ICFGR0_SGIS,
                0x1_0100..=0x1_0103 | 0x1_0180..=0x1_0183 => p.enabled,
                0x1_0200..=0x1_0203 | 0x1_0280..=0x1_0283 => {
                    u32::from(p.pending | p.listed & !p.withdrawn)
                }
                0x1_0300..=0x1_0303 | 0x1_0380..=0x1_0383 => {
                    let ppis = p.ppi_active & !p.ppi_active_clear | p.ppi_active_set;
                    let sgis = (p.active | p.lr_active) & !p.lr_active_clear;
                    u32::from(sgis) | u32::from(ppis) << 16
                }
                _ => 0,
            }),
            _ => 0,
        }
    }

    fn redistributor_typer(&self, k: usize) -> u64 {
        let last = if k + 1 == self.vcpus { 1 << 4 } else { 0 };
        self.affinities()[k] << 32 | (k as u64) << 8 | last
    }

    fn write_redistributor(&mut self, k: usize, offset: u64, size: u64, value: u64) {
        let p = &mut self.private[k];
        match (offset, size) {
            (0x1_0400..=0x1_041f, 1 | 4) => {
                write_priorities(&mut p.priority, 0, offset - 0x1_0400, size, value);
                self.reprioritize_listed(k, offset - 0x1_0400, size);
            }
            (0x0014, 4) => p.asleep = value as u32 & waker::PROCESSOR_SLEEP != 0,
            (0x1_0100..=0x1_03ff, 4) if offset == (offset & !0x7f) => {
                let Some((bits, op, _)) = set_clear_register(offset - SGI_FRAME) else {
                    return;
                };
                let value = value as u32;
                match bits {
                    Bits::Enable => set_clear(&mut p.enabled, op, value),
                    Bits::Pending => {
                        let mut word = u32::from(p.pending);
                        set_clear(&mut word, op, value & 0xffff);
                        p.pending = word as u16;
                        if op == Op::Clear {
                            p.withdrawn |= value as u16 & p.listed;
                        }
                    }
                    Bits::Active => {
                        let ppis = (value >> 16) as u16;
                        let (to, other) = match op {
                            Op::Set => (&mut p.ppi_active_set, &mut p.ppi_active_clear),
                            Op::Clear => (&mut p.ppi_active_clear, &mut p.ppi_active_set),
                        };
                        *to |= ppis;
                        *other &= !ppis;
                        if ppis != 0 {
                            self.sync_requested |= 1 << k;
                        }
                        for sgi in (0..16).filter(|b| value & 1 << b != 0) {
                            self.write_active(k, sgi, op);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// vCPU `sender`'s write of `value` to ICC_SGI1R_EL1 (the only SGI
    /// register that sends one here, `vgic::sgi_write_sends`): the SGI
    /// made pending on each
    /// target's redistributor. The targets (bit k: vCPU k).
    pub fn send_sgi(&mut self, sender: usize, value: u64) -> u32 {
        let affinities = self.affinities();
        let request = decode_sgi1r(value, sender, &affinities[..self.vcpus]);
        for k in 0..self.vcpus {
            if request.targets & (1 << k) != 0 {
                self.private[k].pending |= 1 << request.intid;
            }
        }
        request.targets
    }

    /// The vCPU SPI `intid` goes to, if its routing names one that is
    /// awake.
    fn spi_target(&self, intid: u32) -> Option<usize> {
        let route = self.spi_route[(intid - 32) as usize];
        let affinities = self.affinities();
        let awake = |k: &usize| !self.private[*k].asleep;
        if route & IROUTER_IRM != 0 {
            return (0..self.vcpus).find(awake);
        }
        route_target(route, &affinities[..self.vcpus]).filter(awake)
    }

    /// Whether SGI or SPI `intid` would go to vCPU `vcpu` if it were
    /// pending (the module's comment: enabled, not active, group 1 on, to
    /// that vCPU and its redistributor awake).
    fn eligible(&self, vcpu: usize, intid: u32) -> bool {
        if !self.group1 || vcpu >= self.vcpus {
            return false;
        }
        match intid {
            0..16 => {
                let p = &self.private[vcpu];
                let bit = 1u16 << intid;
                !p.asleep && p.active & bit == 0 && p.enabled & u32::from(bit) != 0
            }
            32.. if intid < L1_GIC_LINES => {
                let s = (intid - 32) as usize;
                let (w, bit) = (s / 32, 1u32 << (s % 32));
                self.spi_enabled[w] & bit != 0
                    && self.spi_active[w] & bit == 0
                    && self.spi_target(intid) == Some(vcpu)
            }
            _ => false,
        }
    }

    /// Whether SPI `intid` is listed, or active, in another vCPU's list
    /// registers than `vcpu`'s: not forwarded to `vcpu` until that vCPU
    /// withdraws it ([`Self::withdraw_listed`]) or its sync sees it
    /// deactivated ([`Self::record_lr_active`]), so it is never in two
    /// vCPUs' list registers at once, and an active SPI that becomes
    /// pending waits for its deactivation, as on a GIC (where it is
    /// pending and active, not signalled).
    fn listed_elsewhere(&self, vcpu: usize, intid: u32) -> bool {
        let s = (intid - 32) as usize;
        let held = self.spi_listed[s / 32] | self.spi_lr_active[s / 32];
        held & 1 << (s % 32) != 0 && usize::from(self.spi_holder[s]) != vcpu
    }

    /// The interrupts the distributor and vCPU `vcpu`'s redistributor
    /// forward to that vCPU now (the module's comment), SGIs first, then
    /// SPIs, each by INTID.
    pub fn forwarded(&self, vcpu: usize) -> impl Iterator<Item = Forwarded> + '_ {
        let private = self.private.get(vcpu).filter(|_| vcpu < self.vcpus);
        let sgis = private.into_iter().flat_map(move |p| {
            (0..16u32)
                .filter(move |&i| p.pending & 1 << i != 0 && self.eligible(vcpu, i))
                .map(move |i| Forwarded {
                    intid: i,
                    priority: p.priority[i as usize],
                })
        });
        let spis = (32..L1_GIC_LINES)
            .filter(move |&intid| {
                let s = (intid - 32) as usize;
                self.spi_pending[s / 32] & 1 << (s % 32) != 0
                    && self.eligible(vcpu, intid)
                    && !self.listed_elsewhere(vcpu, intid)
            })
            .map(move |intid| Forwarded {
                intid,
                priority: self.spi_priority[(intid - 32) as usize],
            });
        sgis.chain(spis)
    }

    /// The SGIs and SPIs listed pending in vCPU `vcpu`'s list registers
    /// and not yet seen acknowledged.
    fn listed_at(&self, vcpu: usize) -> impl Iterator<Item = Listed> + '_ {
        let private = self.private.get(vcpu).filter(|_| vcpu < self.vcpus);
        let sgis = private.into_iter().flat_map(|p| {
            (0..16u32)
                .filter(move |&i| p.listed & 1 << i != 0)
                .map(move |i| Listed {
                    intid: i,
                    withdrawn: p.withdrawn & 1 << i != 0,
                    reprioritized: p.reprioritized & 1 << i != 0,
                })
        });
        let spis = (32..L1_GIC_LINES).filter_map(move |intid| {
            let s = (intid - 32) as usize;
            let (w, bit) = (s / 32, 1u32 << (s % 32));
            (self.spi_listed[w] & bit != 0 && usize::from(self.spi_holder[s]) == vcpu).then_some(
                Listed {
                    intid,
                    withdrawn: self.spi_withdrawn[w] & bit != 0,
                    reprioritized: self.spi_reprioritized[w] & bit != 0,
                },
            )
        });
        sgis.chain(spis)
    }

    /// `intid`'s priority (an SGI's at vCPU `vcpu`'s redistributor).
    fn priority(&self, vcpu: usize, intid: u32) -> u8 {
        match intid {
            0..32 => self
                .private
                .get(vcpu)
                .map_or(0, |p| p.priority[intid as usize]),
            _ => self
                .spi_priority
                .get((intid - 32) as usize)
                .copied()
                .unwrap_or(0),
        }
    }

    /// L1 wrote the priorities of `count` INTIDs from `first` (an
    /// IPRIORITYR store of vCPU `vcpu`'s redistributor, or the
    /// distributor's): those listed and not seen acknowledged are marked,
    /// so their holder is kicked and its exit gives the list register the
    /// new priority ([`Self::withdraw_listed`]).
    fn reprioritize_listed(&mut self, vcpu: usize, first: u64, count: u64) {
        for intid in first..first + count {
            match intid {
                0..16 => {
                    let p = &mut self.private[vcpu];
                    p.reprioritized |= p.listed & 1 << intid;
                }
                32.. if intid < u64::from(L1_GIC_LINES) => {
                    let s = (intid - 32) as usize;
                    let (w, bit) = (s / 32, 1u32 << (s % 32));
                    self.spi_reprioritized[w] |= self.spi_listed[w] & bit;
                }
                _ => {}
            }
        }
    }

    /// Records `intid` listed pending at `vcpu` (`listed`) or no longer
    /// (acknowledged, withdrawn or handed back); either way not withdrawn
    /// and not reprioritized.
    fn set_listed(&mut self, vcpu: usize, intid: u32, listed: bool) {
        match intid {
            0..16 => {
                if let Some(p) = self.private.get_mut(vcpu).filter(|_| vcpu < self.vcpus) {
                    let bit = 1u16 << intid;
                    p.withdrawn &= !bit;
                    p.reprioritized &= !bit;
                    p.listed = if listed {
                        p.listed | bit
                    } else {
                        p.listed & !bit
                    };
                }
            }
            32.. if intid < L1_GIC_LINES => {
                let s = (intid - 32) as usize;
                let (w, bit) = (s / 32, 1u32 << (s % 32));
                self.spi_withdrawn[w] &= !bit;
                self.spi_reprioritized[w] &= !bit;
                if listed {
                    self.spi_listed[w] |= bit;
                    self.spi_holder[s] = vcpu as u8;
                } else {
                    self.spi_listed[w] &= !bit;
                }
            }
            _ => {}
        }
    }

    /// `intid`, listed at `vcpu`, has the priority L1 last gave it in its
    /// list register: no longer marked ([`Self::reprioritize_listed`]).
    fn reprioritized(&mut self, vcpu: usize, intid: u32) {
        match intid {
            0..16 => {
                if let Some(p) = self.private.get_mut(vcpu) {
                    p.reprioritized &= !(1 << intid);
                }
            }
            32.. if intid < L1_GIC_LINES => {
                let s = (intid - 32) as usize;
                self.spi_reprioritized[s / 32] &= !(1 << (s % 32));
            }
            _ => {}
        }
    }

    /// `intid`'s pending or active state (`bits`) on vCPU `vcpu`'s
    /// redistributor (an SGI) or the distributor (an SPI) set or cleared
    /// (`op`); nothing for a PPI, an INTID beyond the lines or a vCPU
    /// beyond L1's. Whether the bit was set before.
    fn set_state(&mut self, vcpu: usize, intid: u32, bits: Bits, op: Op) -> bool {
        let (word, bit) = match intid {
            0..16 => match self.private.get_mut(vcpu).filter(|_| vcpu < self.vcpus) {
                Some(p) => {
                    let state = if bits == Bits::Active {
                        &mut p.active
                    } else {
                        &mut p.pending
                    };
                    let was = *state & 1 << intid != 0;
                    let mut word = u32::from(*state);
                    set_clear(&mut word, op, 1 << intid);
                    *state = word as u16;
                    return was;
                }
                None => return false,
            },
            32.. if intid < L1_GIC_LINES => {
                let s = (intid - 32) as usize;
                let words = if bits == Bits::Active {
                    &mut self.spi_active
                } else {
                    &mut self.spi_pending
                };
                (&mut words[s / 32], 1 << (s % 32))
            }
            _ => return false,
        };
        let was = *word & bit != 0;
        set_clear(word, op, bit);
        was
    }

    /// The vCPU whose list registers held SGI or SPI `intid` (an SGI of
    /// vCPU `vcpu`'s redistributor) active at its last sync
    /// ([`Self::record_lr_active`]), unless L1 cleared it active since.
    fn lr_active_holder(&self, vcpu: usize, intid: u32) -> Option<usize> {
        match intid {
            0..16 => {
                let p = self.private.get(vcpu).filter(|_| vcpu < self.vcpus)?;
                (p.lr_active & !p.lr_active_clear & 1 << intid != 0).then_some(vcpu)
            }
            32.. if intid < L1_GIC_LINES => {
                let s = (intid - 32) as usize;
                let (w, bit) = (s / 32, 1u32 << (s % 32));
                let active = self.spi_lr_active[w] & !self.spi_lr_active_clear[w];
                (active & bit != 0).then_some(usize::from(self.spi_holder[s]))
            }
            _ => None,
        }
    }

    /// L1's write of `intid`'s bit of an I{S,C}ACTIVER register (`op`; an
    /// SGI at vCPU `vcpu`'s redistributor), made after the holders synced
    /// ([`Self::active_holders`]). The GIC has one active state per
    /// interrupt (IHI 0069), and for what L1 acknowledged it is the list
    /// register's: a set of such an interrupt changes nothing (already
    /// active; L1's EOI or DIR deactivates it), a clear marks its entry
    /// for the holder's next sync, which deactivates it if still active
    /// ([`Self::deactivate_cleared`]: active emptied, pending and active
    /// pending) and which the holder's kick causes. Otherwise the state is
    /// the model's bit (a clear of an entry listed pending changes nothing:
    /// L1 acknowledging it afterwards makes it active). A limit: past the
    /// bound of the store's wait for the holder's sync, an acknowledgement
    /// the holder made before the store and hv has not seen is not
    /// cleared (a clear cannot tell it from one made after).
    fn write_active(&mut self, vcpu: usize, intid: u32, op: Op) {
        let holder = self.lr_active_holder(vcpu, intid);
        match (op, holder) {
            (Op::Set, Some(_)) => {}
            (Op::Set, None) => {
                self.set_state(vcpu, intid, Bits::Active, Op::Set);
            }
            (Op::Clear, _) => {
                self.set_state(vcpu, intid, Bits::Active, Op::Clear);
                let Some(holder) = holder else {
                    return;
                };
                match intid {
                    0..16 => self.private[holder].lr_active_clear |= 1 << intid,
                    _ => {
                        let s = (intid - 32) as usize;
                        self.spi_lr_active_clear[s / 32] |= 1 << (s % 32);
                    }
                }
                self.sync_requested |= 1 << holder;
            }
        }
    }

    /// vCPU `vcpu`'s list registers `lrs` (LR 1 on, during one of its
    /// exits): the SGIs and SPIs L1 cleared active while they were active
    /// there ([`Self::write_active`]) deactivated
    /// (`nested::vgic::deactivate_listed`: an active entry emptied, a
    /// pending and active one pending, still listed).
    fn deactivate_cleared(&mut self, vcpu: usize, lrs: &mut [u64]) {
        let Some(p) = self.private.get_mut(vcpu).filter(|_| vcpu < self.vcpus) else {
            return;
        };
        let sgis = core::mem::take(&mut p.lr_active_clear);
        for intid in (0..16).filter(|i| sgis & 1 << i != 0) {
            super::vgic::deactivate_listed(lrs, intid);
        }
        for s in (0..SPIS).filter(|&s| usize::from(self.spi_holder[s]) == vcpu) {
            let (w, bit) = (s / 32, 1u32 << (s % 32));
            if self.spi_lr_active_clear[w] & bit != 0 {
                self.spi_lr_active_clear[w] &= !bit;
                super::vgic::deactivate_listed(lrs, 32 + s as u32);
            }
        }
    }

    /// Forgets what vCPU `vcpu`'s list registers held active (and the
    /// clears still to reach them). The SPIs it held active, by word.
    fn forget_lr_active(&mut self, vcpu: usize) -> [u32; SPI_WORDS] {
        let mut spis = [0; SPI_WORDS];
        let Some(p) = self.private.get_mut(vcpu).filter(|_| vcpu < self.vcpus) else {
            return spis;
        };
        (p.lr_active, p.lr_active_clear) = (0, 0);
        for s in (0..SPIS).filter(|&s| usize::from(self.spi_holder[s]) == vcpu) {
            let (w, bit) = (s / 32, 1u32 << (s % 32));
            spis[w] |= self.spi_lr_active[w] & bit;
            self.spi_lr_active[w] &= !bit;
            self.spi_lr_active_clear[w] &= !bit;
        }
        spis
    }

    /// Records the SGIs and SPIs vCPU `vcpu`'s list registers `lrs` (LR 1
    /// on, during one of its exits) hold active, or pending and active
    /// (L1 acknowledged them): their active state is that entry's, read
    /// by I{S,C}ACTIVER loads, and an SPI's keeps it from other vCPUs
    /// ([`Self::listed_elsewhere`]) until L1 deactivates it. One active
    /// state per interrupt (IHI 0069): a model bit L1 set for such an
    /// interrupt (an ISACTIVER store before it saw the acknowledgement)
    /// is the same state, merged into the entry, so L1's EOI or DIR of
    /// it deactivates it (review 49 R49-3). Whether an SPI it held active
    /// is no longer (deactivated: it may now go to another vCPU, to kick).
    fn record_lr_active(&mut self, vcpu: usize, lrs: &[u64]) -> bool {
        if vcpu >= self.vcpus {
            return false;
        }
        let held = self.forget_lr_active(vcpu);
        for &v in lrs {
            let intid = v & lr::VINTID_MASK;
            if v & lr::HW != 0
                || !from_distributor(intid)
                || !matches!(LrState::of(v), LrState::Active | LrState::PendingActive)
            {
                continue;
            }
            let intid = intid as u32;
            match intid {
                0..16 => self.private[vcpu].lr_active |= 1 << intid,
                _ => {
                    let s = (intid - 32) as usize;
                    self.spi_lr_active[s / 32] |= 1 << (s % 32);
                    self.spi_holder[s] = vcpu as u8;
                }
            }
            self.set_state(vcpu, intid, Bits::Active, Op::Clear);
        }
        (0..SPI_WORDS).any(|w| held[w] & !self.spi_lr_active[w] != 0)
    }

    /// Whether vCPU `vcpu`'s list registers held an SGI or SPI active at
    /// its last sync: its exits sync until L1 deactivated them.
    pub fn holds_active(&self, vcpu: usize) -> bool {
        self.private.get(vcpu).is_some_and(|p| p.lr_active != 0)
            || (0..SPIS).any(|s| {
                usize::from(self.spi_holder[s]) == vcpu
                    && self.spi_lr_active[s / 32] & 1 << (s % 32) != 0
            })
    }

    /// `intid`'s pending state, forwarded to `vcpu`, moved into a list
    /// register: cleared here, and the interrupt recorded as listed there
    /// (pending to reads, withdrawn by a clear-pending, a disable or a
    /// re-route until that vCPU acknowledges it, [`Self::withdraw_listed`]).
    pub fn take(&mut self, vcpu: usize, intid: u32) {
        self.set_state(vcpu, intid, Bits::Pending, Op::Clear);
        self.set_listed(vcpu, intid, true);
    }

    /// Makes room in vCPU `vcpu`'s list registers `lrs` (LR 1 on) for an
    /// interrupt ranked `rank` (priority, then INTID: lower first) when
    /// none is empty: of the entries hv listed there from this GIC and L1
    /// has not acknowledged (pending only, HW = 0), the one ranked lowest,
    /// if below `rank`, is handed back (its pending state set again in the
    /// distributor or redistributor, forwarded to this vCPU again and
    /// listed when an LR is free, as at an EOI maintenance exit) and its
    /// LR emptied. On a GIC the CPU interface signals the highest-priority
    /// pending interrupt (IHI 0069, "Interrupt prioritization"), so
    /// pending interrupts L1 masks (its priority mask, as Linux's
    /// pseudo-NMIs do) never keep a higher-priority one out (review 49
    /// R49-1; `vgic::evict_for_higher_priority` does the same for hv's
    /// direct guests). The emptied LR's index.
    pub fn hand_back_lowest_listed(
        &mut self,
        vcpu: usize,
        lrs: &mut [u64],
        rank: (u8, u32),
    ) -> Option<usize> {
        let mut lowest: Option<((u8, u32), usize)> = None;
        for (n, &v) in lrs.iter().enumerate() {
            let intid = v & lr::VINTID_MASK;
            if LrState::of(v) != LrState::Pending || v & lr::HW != 0 || !from_distributor(intid) {
                continue;
            }
            let entry_rank = (
                ((v & lr::PRIORITY_MASK) >> lr::PRIORITY_SHIFT) as u8,
                intid as u32,
            );
            let ours = self
                .listed_at(vcpu)
                .any(|listed| listed.intid == entry_rank.1 && !listed.withdrawn);
            if ours && entry_rank > rank && lowest.is_none_or(|(r, _)| entry_rank > r) {
                lowest = Some((entry_rank, n));
            }
        }
        let ((_, intid), n) = lowest?;
        self.set_state(vcpu, intid, Bits::Pending, Op::Set);
        self.set_listed(vcpu, intid, false);
        lrs[n] = 0;
        Some(n)
    }

    /// GICD_CTLR.RWP: whether a disable L1 wrote (GICD_ICENABLER<n>,
    /// GICD_CTLR.EnableGrp1 0) has yet to reach a listed interrupt. L1
    /// polls it after such a write (IHI 0069: completing the store does
    /// not guarantee its effects are visible; RWP 0 does), and it reads 1
    /// until the holder's exit withdrew the entry ([`Self::withdraw_listed`];
    /// the write kicked the holder). GICR_CTLR.RWP likewise for an SGI
    /// disabled at its redistributor.
    fn distributor_write_pending(&self) -> bool {
        (0..SPI_WORDS).any(|w| self.spi_listed[w] & !self.spi_enabled[w] != 0)
            || !self.group1 && (0..self.vcpus).any(|k| self.holds_listed(k))
    }

    /// The vCPUs (bit k: vCPU k) holding, listed and not seen
    /// acknowledged, an interrupt whose pending bit a load of `size` bytes
    /// at `offset` in `frame` reads (GICD_ISPENDR<n>/ICPENDR<n>,
    /// GICR_ISPENDR0/ICPENDR0). Such a bit is 1 until the holder's exit
    /// sees the acknowledgement ([`Self::withdraw_listed`]), and a vCPU
    /// runs L1 without exits for as long as it likes, so the load is to
    /// sync them first ([`Self::request_sync`]); likewise for an active
    /// bit (GICD_ISACTIVER<n>/ICACTIVER<n>, GICR_ISACTIVER0/ICACTIVER0)
    /// the vCPUs holding the SGIs and SPIs it reads listed (L1 may have
    /// acknowledged them since) or active (L1 may have deactivated them
    /// since, [`Self::active_holders`]), and the vCPU whose PPIs' active
    /// state it reads from its list registers ([`Self::sync_ppis`]). It
    /// then reads a state no older than its own start (IHI 0069: once a PE
    /// acknowledged an interrupt, it is no longer pending, and a later
    /// read, one ordered after the acknowledgement by L1's own
    /// synchronization, must not read it pending).
    pub fn read_holders(&self, frame: GicFrame, offset: u64, size: u64) -> u32 {
        if size != 4 || !offset.is_multiple_of(4) {
            return 0;
        }
        match frame {
            GicFrame::Distributor if (0x200..0x300).contains(&offset) => {
                let Some(s) = spi_word(offset) else {
                    return 0;
                };
                self.spi_holders(s, self.spi_listed[s] & !self.spi_withdrawn[s])
            }
            GicFrame::Redistributor(k)
                if k < self.vcpus && matches!(offset, 0x1_0200 | 0x1_0280) =>
            {
                let p = &self.private[k];
                u32::from(p.listed & !p.withdrawn != 0) << k
            }
            // The PPIs' active state is in the vCPU's list registers: an
            // awake vCPU syncs (one that is off, asleep, has none to sync).
            GicFrame::Redistributor(k)
                if k < self.vcpus
                    && matches!(offset, ISACTIVER0 | ICACTIVER0)
                    && !self.private[k].asleep =>
            {
                1 << k
            }
            _ => self.active_holders(frame, offset, u32::MAX),
        }
    }

    /// The vCPUs (bit k: vCPU k) holding, listed or active in their list
    /// registers, an SGI or SPI of `bits` of the active register
    /// (GICD_ISACTIVER<n>/ICACTIVER<n>, GICR_ISACTIVER0/ICACTIVER0) at
    /// `offset` in `frame`: a load of it ([`Self::read_holders`]), or an
    /// I{S,C}ACTIVER store of `bits`, first syncs them
    /// ([`Self::request_sync`]), so the store acts on the active state as
    /// L1 left it before the store: a set of an interrupt L1 acknowledged
    /// changes nothing (already active, in the list register, where L1's
    /// EOI deactivates it), one L1 deactivated since sets the model's
    /// bit, a clear reaches the list register holding it active
    /// ([`Self::write_active`]).
    pub fn active_holders(&self, frame: GicFrame, offset: u64, bits: u32) -> u32 {
        match frame {
            GicFrame::Distributor if (0x300..0x400).contains(&offset) => {
                let Some(s) = spi_word(offset) else {
                    return 0;
                };
                self.spi_holders(s, (self.spi_listed[s] | self.spi_lr_active[s]) & bits)
            }
            GicFrame::Redistributor(k)
                if k < self.vcpus && matches!(offset, ISACTIVER0 | ICACTIVER0) =>
            {
                let p = &self.private[k];
                u32::from((p.listed | p.lr_active) & bits as u16 != 0) << k
            }
            _ => 0,
        }
    }

    /// The holders (bit k: vCPU k) of the SPIs of `bits` of SPI word `s`.
    fn spi_holders(&self, s: usize, bits: u32) -> u32 {
        (0..32)
            .filter(|b| bits & 1 << b != 0)
            .fold(0, |mask, b| mask | 1 << self.spi_holder[s * 32 + b])
    }

    /// A load is to wait for a sync of `vcpus` (bit k: vCPU k;
    /// [`Self::read_holders`]): their next exits run
    /// [`Self::withdraw_listed`] (kick them). Returns each vCPU's sync
    /// count now, for [`Self::synced_since`].
    pub fn request_sync(&mut self, vcpus: u32) -> [u32; MAX_L1_VCPUS] {
        self.sync_requested |= vcpus & ((1 << self.vcpus) - 1);
        self.syncs
    }

    /// Whether every vCPU of `vcpus` ran [`Self::withdraw_listed`] since
    /// [`Self::request_sync`] returned `since`.
    pub fn synced_since(&self, vcpus: u32, since: &[u32; MAX_L1_VCPUS]) -> bool {
        (0..self.vcpus)
            .filter(|&k| vcpus & 1 << k != 0)
            .all(|k| self.syncs[k] != since[k])
    }

    /// Whether a load waits for vCPU `vcpu`'s sync ([`Self::request_sync`]).
    pub fn sync_requested(&self, vcpu: usize) -> bool {
        self.sync_requested & 1 << vcpu != 0
    }

    /// vCPU `vcpu`'s own interface's list registers `lrs` (all of them:
    /// LR 0 holds its maintenance interrupt), during one of its exits,
    /// given the PPI active states L1 wrote for it since
    /// (GICR_ISACTIVER0/ICACTIVER0, its own or another vCPU's store;
    /// [`write_listed_ppis_active`]), and the PPIs' active state as they
    /// now hold it recorded for the loads of other vCPUs. A set that finds
    /// no free list register from LR 1 on waits in the model, read active,
    /// for an exit that has one (the EOI maintenance exit of L1's next
    /// deactivation frees one); meanwhile the PPI's path (a timer) finds
    /// no free LR either, and this runs before it at every exit.
    fn sync_ppis(&mut self, vcpu: usize, lrs: &mut [u64]) {
        let Some(p) = self.private.get_mut(vcpu).filter(|_| vcpu < self.vcpus) else {
            return;
        };
        let clear = u32::from(p.ppi_active_clear) << 16;
        let set = u32::from(p.ppi_active_set) << 16;
        write_listed_ppis_active(lrs, false, clear, self.maintenance_intid);
        let unplaced = write_listed_ppis_active(lrs, true, set, self.maintenance_intid);
        p.ppi_active_clear = 0;
        p.ppi_active_set = (unplaced >> 16) as u16;
        p.ppi_active = (listed_ppis_active(lrs) >> 16) as u16;
    }

    /// vCPU `vcpu`'s own interface's list registers `lrs` (all of them,
    /// during one of its exits) made to agree with the model: the PPI
    /// active states L1 wrote ([`Self::sync_ppis`]), then from LR 1 on the
    /// SGIs and SPIs L1 cleared active deactivated
    /// ([`Self::deactivate_cleared`]), what hv listed withdrawn or
    /// reprioritized ([`Self::withdraw_listed`]) and what they hold active
    /// recorded ([`Self::record_lr_active`]), as far as `steps` say.
    /// Whether a pending state went back or an SPI was deactivated (another
    /// vCPU may now get it: to be kicked).
    pub fn sync(&mut self, vcpu: usize, lrs: &mut [u64], steps: SyncSteps) -> bool {
        self.sync_ppis(vcpu, lrs);
        if !steps.keep_waiting_ppi_sets {
            if let Some(p) = self.private.get_mut(vcpu) {
                p.ppi_active_set = 0;
            }
        }
        let Some(listing) = lrs.get_mut(1..) else {
            return false;
        };
        if steps.listed_active {
            self.deactivate_cleared(vcpu, listing);
        }
        let handed_back = self.withdraw_listed(vcpu, listing, steps);
        let deactivated = steps.listed_active && self.record_lr_active(vcpu, listing);
        handed_back || deactivated
    }

    /// Whether vCPU `vcpu` has PPI active states to take into its list
    /// registers ([`Self::sync_ppis`]): its exits sync until it has none.
    pub fn ppi_active_waiting(&self, vcpu: usize) -> bool {
        self.private
            .get(vcpu)
            .is_some_and(|p| p.ppi_active_set | p.ppi_active_clear != 0)
    }

    /// Whether vCPU `vcpu` holds an interrupt listed and not seen
    /// acknowledged: its exits run [`Self::withdraw_listed`].
    pub fn holds_listed(&self, vcpu: usize) -> bool {
        self.listed_at(vcpu).next().is_some()
    }

    /// Whether vCPU `vcpu` holds a listed interrupt that L1 has cleared
    /// pending, disabled, made active, re-routed, given a new priority or
    /// otherwise taken from it since, or a load waits for its exit
    /// ([`Self::request_sync`]): the vCPU is to be kicked.
    fn holds_stale(&self, vcpu: usize) -> bool {
        self.sync_requested & 1 << vcpu != 0
            || self
                .listed_at(vcpu)
                .any(|l| l.withdrawn || l.reprioritized || !self.eligible(vcpu, l.intid))
    }

    /// vCPU `vcpu`'s list registers `lrs` (L1's own interface, LR 1 on,
    /// during one of its exits) made to agree with the distributor, as on
    /// a GIC, where a listed interrupt's pending state stays in the
    /// distributor or redistributor until the PE acknowledges it (IHI
    /// 0069, "Interrupt handling state machine"): for each interrupt hv
    /// listed there and has not seen acknowledged,
    /// - acknowledged since (its LR no longer pending: active, invalid or
    ///   gone): done with here;
    /// - L1 cleared its pending state (GICD_ICPENDR, GICR_ICPENDR0): the
    ///   LR's pending state is withdrawn (a pending entry made invalid, a
    ///   pending and active one active), and the interrupt is not taken;
    /// - no longer to go to this vCPU (disabled, made active, group 1
    ///   off, its redistributor asleep, an SPI re-routed): withdrawn
    ///   likewise, and its pending state back in the distributor or
    ///   redistributor, where it waits (disabled) or goes to its new
    ///   target (never in two vCPUs' LRs at once: `forwarded` skips it
    ///   until now);
    /// - else it stays listed, with the priority L1 last gave it (GICD_
    ///   or GICR_IPRIORITYR, also after it was listed: the GIC signals a
    ///   pending interrupt at its current priority; without `reprioritize`,
    ///   the `gic-no-reprioritize` defect, the LR keeps the old one).
    ///
    /// Each call counts as a sync of the vCPU ([`Self::request_sync`]).
    /// The L1 store that changed it kicked this vCPU (`wanting`), so this
    /// runs at the exit that kick causes; until then the vCPU may still
    /// acknowledge it, as a PE may acknowledge an interrupt its CPU
    /// interface already holds while the distributor's clear or disable
    /// is on its way (the GIC's changes of state are not synchronous with
    /// the register write; GICD_CTLR.RWP covers only the distributor's own
    /// forwarding, and reads 0 here). Once withdrawn it is never taken.
    /// Without `withdraw` (the `gic-no-withdraw` defect) a pending LR is
    /// left as it is. Whether a pending state went back (its new target
    /// is to be kicked).
    pub fn withdraw_listed(&mut self, vcpu: usize, lrs: &mut [u64], steps: SyncSteps) -> bool {
        let SyncSteps {
            withdraw,
            reprioritize,
            ..
        } = steps;
        let mut handed_back = false;
        if let Some(syncs) = self.syncs.get_mut(vcpu) {
            *syncs = syncs.wrapping_add(1);
            self.sync_requested &= !(1 << vcpu);
        }
        let listed: arrayvec::ArrayVec<Listed, { 16 + SPIS }> = self.listed_at(vcpu).collect();
        for Listed {
            intid, withdrawn, ..
        } in listed
        {
            let held = lrs.iter().position(|&v| {
                v & lr::HW == 0
                    && v & lr::VINTID_MASK == u64::from(intid)
                    && matches!(LrState::of(v), LrState::Pending | LrState::PendingActive)
            });
            let Some(n) = held else {
                self.set_listed(vcpu, intid, false);
                continue;
            };
            if !withdraw || (!withdrawn && self.eligible(vcpu, intid)) {
                if reprioritize {
                    lrs[n] = lrs[n] & !lr::PRIORITY_MASK
                        | u64::from(self.priority(vcpu, intid)) << lr::PRIORITY_SHIFT;
                }
                self.reprioritized(vcpu, intid);
                continue;
            }
            lrs[n] = match LrState::of(lrs[n]) {
                LrState::Pending => 0,
                _ => lrs[n] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT,
            };
            if !withdrawn {
                self.set_state(vcpu, intid, Bits::Pending, Op::Set);
                handed_back = true;
            }
            self.set_listed(vcpu, intid, false);
        }
        handed_back
    }

    /// vCPU `vcpu` powers off (L1's PSCI CPU_OFF, hv its firmware) with
    /// `lrs` its own interface's list registers (LR 1 on): what hv listed
    /// there goes back to the distributor and the redistributor sleeps, as
    /// on a GIC, where the pending and active states live in the
    /// distributor and redistributors and a firmware's CPU_OFF marks the
    /// core's redistributor asleep (GICR_WAKER.ProcessorSleep):
    /// - a pending entry's pending state is set again (an SPI then goes to
    ///   its target at that vCPU's next exit, if it is awake, and an SGI
    ///   waits on this redistributor), and leaves the LR (a pending and
    ///   active one stays active there);
    /// - an active entry (acknowledged, not deactivated) stays active in
    ///   the distributor or redistributor (GICD_ISACTIVER reads it; L1
    ///   clears it with GICD_ICACTIVER), not forwarded again until then;
    /// - ProcessorSleep set, so neither SGIs nor SPIs (also with
    ///   Interrupt_Routing_Mode 1) go to the vCPU while it is off; its
    ///   next CPU_ON starts it with its redistributor asleep, as at reset
    ///   (L1 wakes it, as when it first started the vCPU).
    ///
    /// Returns what to undo if the firmware refuses the CPU_OFF
    /// ([`Self::power_off_refused`]).
    pub fn power_off(&mut self, vcpu: usize, lrs: &mut [u64]) -> PowerOff {
        let mut undo = PowerOff {
            was_asleep: true,
            activated: arrayvec::ArrayVec::new(),
        };
        if vcpu >= self.vcpus {
            return undo;
        }
        // What L1 cleared pending since it was listed is not handed back,
        // nor active what it cleared active.
        self.deactivate_cleared(vcpu, lrs);
        self.withdraw_listed(vcpu, lrs, SyncSteps::ALL);
        // The active entries' state moves to the model below.
        self.forget_lr_active(vcpu);
        undo.was_asleep = core::mem::replace(&mut self.private[vcpu].asleep, true);
        // Its interface's state is gone with it (its PPIs restart inactive).
        let p = &mut self.private[vcpu];
        (p.ppi_active, p.ppi_active_set, p.ppi_active_clear) = (0, 0, 0);
        for v in lrs.iter_mut() {
            let intid = *v & lr::VINTID_MASK;
            if !from_distributor(intid) || *v & lr::HW != 0 {
                continue;
            }
            let intid = intid as u32;
            let state = LrState::of(*v);
            if matches!(state, LrState::Pending | LrState::PendingActive) {
                self.set_state(vcpu, intid, Bits::Pending, Op::Set);
                *v = if state == LrState::Pending {
                    0
                } else {
                    *v & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT
                };
            }
            if matches!(state, LrState::Active | LrState::PendingActive) {
                self.set_state(vcpu, intid, Bits::Active, Op::Set);
                // At most one LR per INTID and at most 16 LRs.
                let _ = undo.activated.try_push(intid);
            }
        }
        let listed: arrayvec::ArrayVec<Listed, { 16 + SPIS }> = self.listed_at(vcpu).collect();
        for l in listed {
            self.set_listed(vcpu, l.intid, false);
        }
        undo
    }

    /// The firmware refused vCPU `vcpu`'s CPU_OFF after [`Self::power_off`]
    /// (`undo` its result; `lrs` its own interface's list registers, LR 1
    /// on): the vCPU runs on with the active entries still in its list
    /// registers, so their active state leaves the distributor again (L1's
    /// deactivation there does not trap), and its redistributor is as it
    /// was. One deactivated in the distributor or redistributor meanwhile
    /// (the CPU_OFF call runs with the GIC's lock free: L2's HW = 1
    /// deactivation on another vCPU, an I{C}ACTIVER store) is deactivated
    /// in its entry too, as a GIC has one active state per interrupt
    /// (review 64 R64-1: it stayed active there, never signalled again).
    /// The pending state handed back stays in the distributor (listed
    /// again at the exit's end).
    pub fn power_off_refused(&mut self, vcpu: usize, undo: &PowerOff, lrs: &mut [u64]) {
        for &intid in &undo.activated {
            if !self.set_state(vcpu, intid, Bits::Active, Op::Clear) {
                super::vgic::deactivate_listed(lrs, intid);
            }
        }
        if let Some(p) = self.private.get_mut(vcpu) {
            p.asleep = undo.was_asleep;
        }
    }

    /// `intid` deactivated for vCPU `vcpu` by L2's deactivation of an
    /// HW = 1 list register naming it (`nested::vgic`, "Hardware
    /// interrupts"): the active bit L1 set through I{S}ACTIVER cleared, an
    /// SGI's at `vcpu`'s redistributor, an SPI's at the distributor; a
    /// PPI's set still waiting for a free list register
    /// ([`Self::sync_ppis`]) dropped (one placed is in the list register
    /// the caller deactivates); an SPI another vCPU holds
    /// ([`Self::deactivate_at_holder`], with `reach`
    /// [`HwDeactivationReach::AnyHolder`]) deactivated at that vCPU's
    /// next sync. INTIDs this GIC does not have, or not active here:
    /// nothing (the CONSTRAINED UNPREDICTABLE deactivation of an
    /// interrupt that is not active). Whether a bit was cleared or a
    /// holder is to sync (the vCPUs to kick: [`Self::wanting`]).
    pub fn deactivate(&mut self, vcpu: usize, intid: u32, reach: HwDeactivationReach) -> bool {
        if let (true, Some(p)) = (PPIS.contains(&intid), self.private.get_mut(vcpu)) {
            // A set still waiting for a free LR: deactivated before placed.
            let bit = 1 << (intid - 16);
            let waiting = p.ppi_active_set & bit != 0;
            p.ppi_active_set &= !bit;
            return waiting;
        }
        let cleared = self.set_state(vcpu, intid, Bits::Active, Op::Clear);
        let elsewhere =
            reach == HwDeactivationReach::AnyHolder && self.deactivate_at_holder(vcpu, intid);
        cleared || elsewhere
    }

    /// Review 48 R48-3: SPI `intid`, deactivated by L2 on vCPU `vcpu`
    /// through an HW = 1 list register, held by another vCPU, active in
    /// its list registers at its last sync or listed there and not seen
    /// acknowledged (L1 may have acknowledged it since: it cannot have
    /// put the pINTID in its L2's list register before). A GIC's
    /// distributor deactivates an SPI whichever PE acknowledged it; here
    /// its active state is that vCPU's list register, which only its own
    /// exits reach, so the deactivation is marked for the holder's next
    /// sync as an ICACTIVER clear is ([`Self::deactivate_cleared`]: an
    /// active entry emptied, a pending and active one pending, a pending
    /// one, never acknowledged, left as it is; review 64: the entry as it
    /// is at the sync, so an entry L2 deactivated before L1 acknowledged
    /// it, which no L1 that acknowledged first can make, loses an
    /// acknowledgement L1 makes before that sync, as a deactivation still
    /// on its way to the distributor would) and the holder is to be
    /// kicked (`sync_requested`), whatever it runs (L1, L2, or waits at
    /// EL2: the kick wakes it); nobody waits for that sync. Until it,
    /// the SPI reads inactive and goes to no other vCPU
    /// ([`Self::listed_elsewhere`]); a holder that powers off first
    /// applies it ([`Self::power_off`]). SGIs and PPIs are banked: `vcpu`
    /// deactivates its own, which the caller's list registers hold.
    /// Whether the holder is to sync.
    fn deactivate_at_holder(&mut self, vcpu: usize, intid: u32) -> bool {
        if vcpu >= self.vcpus || !(32..L1_GIC_LINES).contains(&intid) {
            return false;
        }
        let s = (intid - 32) as usize;
        let (w, bit) = (s / 32, 1u32 << (s % 32));
        let holder = usize::from(self.spi_holder[s]);
        let held = (self.spi_listed[w] | self.spi_lr_active[w]) & bit != 0;
        if !held || holder == vcpu || self.spi_lr_active_clear[w] & bit != 0 {
            return false;
        }
        self.spi_lr_active_clear[w] |= bit;
        self.sync_requested |= 1 << holder;
        true
    }

    /// Whether anything at all is pending with group 1 enabled: the cheap
    /// test hv makes at every exit before it looks further.
    pub fn anything_pending(&self) -> bool {
        self.group1
            && (self.private[..self.vcpus].iter().any(|p| p.pending != 0)
                || self.spi_pending.iter().any(|&w| w != 0))
    }

    /// The vCPUs with something forwarded to them, or with a listed
    /// interrupt to withdraw ([`Self::withdraw_listed`]) (bit k: vCPU k):
    /// those to make look again after a change (hv's kick).
    pub fn wanting(&self) -> u32 {
        (0..self.vcpus)
            .filter(|&k| self.forwarded(k).next().is_some() || self.holds_stale(k))
            .fold(0, |mask, k| mask | 1 << k)
    }
}

/// Whether `intid` is one the distributor model lists (an SGI or an SPI;
/// PPIs are hv's timer and maintenance paths').
pub fn from_distributor(intid: u64) -> bool {
    intid < 16 || (32..u64::from(L1_GIC_LINES)).contains(&intid)
}

/// Moves what `gic` forwards to `vcpu` into L1's own interface's list
/// registers `lrs` (LR 1 on: LR 0 carries its maintenance interrupt),
/// highest priority first (lowest value, then lowest INTID: a GIC forwards
/// its highest-priority pending interrupt, so with fewer free LRs than
/// interrupts the lower-priority ones wait): an INTID an LR already holds
/// pending takes the new edge (it is already pending there), one it holds
/// active becomes pending and active, else the first empty LR
/// (`nested::vgic::lr_empty`) gets it pending, group 1, with its priority
/// and, with `eoi_maintenance`, the EOI bit (HW = 0), so L1's
/// deactivation, which does not trap, raises hv's EOI maintenance
/// interrupt. The entries L1 deactivated are freed first
/// (`nested::vgic::free_deactivated`), so at that maintenance exit what
/// waited for a free LR is listed at once (the timer PPIs' LRs do the
/// same, `nested::timer::l1_timer_lrs`). L1's timer PPIs, listed after
/// this pass by `nested::timer::l1_timer_lrs` at hv's fixed priority
/// (`nested::vgic::L1_MAINTENANCE_PRIORITY`), compete by priority too:
/// `timer_ppis` are their levels (INTID, asserted), and an interrupt ranked
/// below an asserted timer PPI no LR holds leaves an empty LR for it
/// (review 48 R48-7). With no empty LR for it, an interrupt, and each
/// asserted timer PPI no LR holds, takes the LR of the lowest-ranked
/// entry hv listed below it that L1 has not acknowledged, which goes back
/// to `gic` ([`L1Gic::hand_back_lowest_listed`], review 49 R49-1): a GIC
/// signals its highest-priority pending interrupt whatever L1 masks.
/// Otherwise, with every LR in use (active entries, or entries
/// ranked above it) an interrupt stays pending in `gic`. How many were
/// listed or merged.
pub fn list_forwarded(
    gic: &mut L1Gic,
    vcpu: usize,
    lrs: &mut [u64],
    eoi_maintenance: bool,
    timer_ppis: &[(u32, bool)],
) -> usize {
    list_forwarded_with_displacement(gic, vcpu, lrs, eoi_maintenance, timer_ppis, true)
}

/// [`list_forwarded`], with `displace` false for the `gic-no-displace`
/// defect: nothing is handed back for a higher-ranked interrupt.
pub fn list_forwarded_with_displacement(
    gic: &mut L1Gic,
    vcpu: usize,
    lrs: &mut [u64],
    eoi_maintenance: bool,
    timer_ppis: &[(u32, bool)],
    displace: bool,
) -> usize {
    let mut listed = 0;
    super::vgic::free_deactivated(lrs);
    let mut forwarded: arrayvec::ArrayVec<Forwarded, { 16 + SPIS }> = gic.forwarded(vcpu).collect();
    forwarded.sort_unstable_by_key(|f| (f.priority, f.intid));
    // The asserted timer PPIs that will want an empty LR, by rank.
    let unlisted_timers: arrayvec::ArrayVec<(u8, u32), 4> = timer_ppis
        .iter()
        .filter(|&&(intid, asserted)| {
            asserted
                && !lrs.iter().any(|&v| {
                    LrState::of(v) != LrState::Invalid && v & lr::VINTID_MASK == u64::from(intid)
                })
        })
        .map(|&(intid, _)| (super::vgic::L1_MAINTENANCE_PRIORITY, intid))
        .take(4)
        .collect();
    if !gic.anything_pending() && (unlisted_timers.is_empty() || !displace) {
        return 0;
    }
    for f in forwarded {
        let ranked_above = unlisted_timers
            .iter()
            .filter(|&&timer| timer < (f.priority, f.intid))
            .count();
        let intid = u64::from(f.intid);
        let held = lrs
            .iter()
            .position(|&v| LrState::of(v) != LrState::Invalid && v & lr::VINTID_MASK == intid);
        let slot = match held {
            Some(n) => {
                if LrState::of(lrs[n]) == LrState::Active {
                    lrs[n] |= lr::PENDING << lr::STATE_SHIFT;
                }
                // The new edge is signalled at its current priority.
                lrs[n] = lrs[n] & !lr::PRIORITY_MASK | u64::from(f.priority) << lr::PRIORITY_SHIFT;
                Some(n)
            }
            None => {
                let empty = lrs.iter().filter(|&&v| super::vgic::lr_empty(v)).count();
                let free = if empty > ranked_above {
                    lrs.iter().position(|&v| super::vgic::lr_empty(v))
                } else if displace {
                    // The empty LRs are the timer PPIs' ranked above it.
                    gic.hand_back_lowest_listed(vcpu, lrs, (f.priority, f.intid))
                } else {
                    None
                };
                free.inspect(|&n| {
                    lrs[n] = lr::PENDING << lr::STATE_SHIFT
                        | lr::GROUP1
                        | u64::from(f.priority) << lr::PRIORITY_SHIFT
                        | if eoi_maintenance { lr::EOI } else { 0 }
                        | intid;
                })
            }
        };
        if slot.is_some() {
            gic.take(vcpu, f.intid);
            listed += 1;
        }
    }
    // The asserted timer PPIs (`nested::timer::l1_timer_lrs` lists them
    // next, in empty LRs): the k-th by rank needs k + 1 empty LRs. What is
    // handed back ranks below it, so never one listed above for ranking
    // above it, and each hand-back empties one LR: this ends.
    for (k, &rank) in unlisted_timers.iter().enumerate() {
        while displace && lrs.iter().filter(|&&v| super::vgic::lr_empty(v)).count() <= k {
            if gic.hand_back_lowest_listed(vcpu, lrs, rank).is_none() {
                break;
            }
        }
    }
    listed
}

/// Whether L1's own interface (list registers `lrs`, LR 1 on, and its
/// ICH_VMCR_EL2 `vmcr`, with `priority_bits` bits of priority, ICH_VTR_EL2
/// PRIbits + 1) signals one of the distributor's interrupts: a pending
/// group-1 entry with group 1 enabled and a priority, as many bits as the
/// interface implements, above the priority mask (its running priority is
/// not consulted: a limit shared with the timer PPIs,
/// `nested::timer::signalled_to_l1`). While L2 runs, such an interrupt
/// takes L2 out to L1 (when L1 routes IRQs to its virtual EL2).
pub fn signalled(lrs: &[u64], vmcr: u64, priority_bits: u32) -> bool {
    let implemented = 0xff_u64 << (8 - priority_bits.clamp(1, 8));
    let mask = (vmcr >> 24) & implemented;
    vmcr & vmcr::VENG1 != 0
        && lrs.iter().any(|&v| {
            LrState::of(v) == LrState::Pending
                && v & lr::GROUP1 != 0
                && from_distributor(v & lr::VINTID_MASK)
                && ((v & lr::PRIORITY_MASK) >> lr::PRIORITY_SHIFT) & implemented < mask
        })
}

/// The PPI bits of L1's GICR_ISACTIVER0 and GICR_ICACTIVER0 on the vCPU
/// whose own interface's list registers are `lrs` (all of them: LR 0
/// holds its maintenance interrupt). PPIs come from hv's own paths, which
/// list them there (module docs), so a PPI is active when the entry
/// holding it is active, or pending and active.
pub fn listed_ppis_active(lrs: &[u64]) -> u32 {
    lrs.iter()
        .filter(|&&v| matches!(LrState::of(v), LrState::Active | LrState::PendingActive))
        .filter_map(|&v| u32::try_from(v & lr::VINTID_MASK).ok())
        .filter(|intid| PPIS.contains(intid))
        .fold(0, |bits, intid| bits | 1 << intid)
}

/// L1's write of `value` to its own GICR_ISACTIVER0 (`set`) or
/// GICR_ICACTIVER0, PPI bits, applied to its own interface's list
/// registers `lrs` (LR 0, hv's maintenance entry, included; a new entry
/// goes into LR 1 on). KVM sets and clears its guest timer's PPI's active
/// state so at every vCPU load; an active interrupt is not signalled
/// again until deactivated (IHI 0069):
/// - clear: the entry holding the PPI active loses that state
///   (`vgic::deactivate_listed`: active emptied, pending and active
///   pending); if its level is still up, its path lists it again at this
///   exit;
/// - set: a pending entry becomes pending and active; a PPI no entry
///   holds gets an active one (group 1, the priority of hv's PPI entries,
///   `vgic::l1_maintenance_lr`, and the EOI bit as they have, so L1's own
///   deactivation of it is an exit), which its path leaves alone until L1
///   deactivates it (ICC_DIR_EL1, GICR_ICACTIVER0) or L2 does through an
///   HW = 1 entry naming it. With LRs 1 on all in use it is not placed.
///
/// L1's maintenance interrupt `maintenance_intid` is LR 0's only, which
/// `vgic::l1_maintenance_lr` fills without looking at the other LRs, so
/// its bit acts on LR 0 alone (two LRs valid with one vINTID are
/// UNPREDICTABLE, ICH_LR<n>_EL2; review 49 R49-2): a set makes a pending
/// LR 0 pending and active, and an invalid one active (without the EOI
/// bit, as hv's LR 0 entries: L1's deactivation needs no exit, the level
/// is sampled at every exit), which `l1_maintenance_lr` keeps until L1
/// deactivates it; a clear deactivates LR 0's entry.
///
/// The sets not placed (bit n: INTID n), for [`L1Gic::sync_ppis`] to keep.
pub fn write_listed_ppis_active(
    lrs: &mut [u64],
    set: bool,
    value: u32,
    maintenance_intid: u32,
) -> u32 {
    use super::vgic::{deactivate_listed, l1_maintenance_lr, lr_empty};
    let mut unplaced = 0;
    for intid in PPIS.filter(|&intid| value & (1 << intid) != 0) {
        if intid == maintenance_intid {
            let Some(lr0) = lrs.first_mut() else {
                continue;
            };
            *lr0 = match (set, LrState::of(*lr0)) {
                (false, _) => {
                    deactivate_listed(core::slice::from_mut(lr0), intid);
                    *lr0
                }
                (true, LrState::Invalid) => {
                    l1_maintenance_lr(0, true, intid) & !lr::STATE_MASK
                        | lr::ACTIVE << lr::STATE_SHIFT
                }
                (true, LrState::Pending) => {
                    *lr0 & !lr::STATE_MASK | (lr::PENDING | lr::ACTIVE) << lr::STATE_SHIFT
                }
                (true, _) => *lr0,
            };
            continue;
        }
        if !set {
            deactivate_listed(lrs, intid);
            continue;
        }
        let held = lrs.iter().position(|&v| {
            LrState::of(v) != LrState::Invalid && v & lr::VINTID_MASK == u64::from(intid)
        });
        match held {
            Some(n) if LrState::of(lrs[n]) == LrState::Pending => {
                lrs[n] = lrs[n] & !lr::STATE_MASK | (lr::PENDING | lr::ACTIVE) << lr::STATE_SHIFT;
            }
            Some(_) => {}
            None => {
                let free = lrs.iter().skip(1).position(|&v| lr_empty(v));
                match free {
                    Some(n) => {
                        lrs[n + 1] = l1_maintenance_lr(0, true, intid) & !lr::STATE_MASK
                            | lr::ACTIVE << lr::STATE_SHIFT
                            | lr::EOI
                    }
                    None => unplaced |= 1 << intid,
                }
            }
        }
    }
    unplaced
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const D: GicFrame = GicFrame::Distributor;
    const R0: GicFrame = GicFrame::Redistributor(0);
    const R1: GicFrame = GicFrame::Redistributor(1);
    const ANY: HwDeactivationReach = HwDeactivationReach::AnyHolder;

    /// Distributor on, both redistributors awake.
    fn awake_gic() -> L1Gic {
        let mut gic = L1Gic::new(2, 25);
        gic.write(D, 0, 4, u64::from(ctlr::ENABLE_GRP1 | ctlr::ARE));
        gic.write(R0, 0x14, 4, 0);
        gic.write(R1, 0x14, 4, 0);
        gic
    }

    #[test]
    fn layout_finds_the_distributor_and_each_vcpus_frames() {
        let layout = L1GicLayout {
            distributor: 0x800_0000,
            redistributors: 0x80a_0000,
            vcpus: 2,
        };
        assert_eq!(layout.locate(0x800_0004), Some((D, 4)));
        assert_eq!(layout.locate(0x80a_0014), Some((R0, 0x14)));
        assert_eq!(layout.locate(0x80c_0000 + 0x1_0100), Some((R1, 0x1_0100)));
        // A third vCPU's frame does not exist; nor does the space between.
        assert_eq!(layout.locate(0x80e_0000), None);
        assert_eq!(layout.locate(0x801_0000), None);
        assert_eq!(layout.locate(0x7ff_fffc), None);
    }

    #[test]
    fn identification_and_control_registers_read_as_a_gicv3_with_one_security_state() {
        let mut gic = L1Gic::new(2, 25);
        assert_eq!(gic.read(D, 0xffe8, 4), 0x3b);
        assert_eq!(gic.read(R1, 0xffe8, 4), 0x3b);
        // ARE and DS read 1 whatever is written; EnableGrp0 (bit 0) RAZ/WI.
        assert_eq!(gic.read(D, 0, 4), 0x50);
        gic.write(D, 0, 4, 0x13);
        assert_eq!(gic.read(D, 0, 4), 0x52);
        gic.write(D, 0, 4, 0);
        assert_eq!(gic.read(D, 0, 4), 0x50);
        // ITLinesNumber 4 (160 INTIDs), CPUNumber 1, IDbits 9.
        assert_eq!(gic.read(D, 4, 4), 4 | 1 << 5 | 9 << 19);
        // Everything is group 1 but the private word, RAZ/WI with ARE.
        assert_eq!(gic.read(D, 0x80, 4), 0);
        assert_eq!(gic.read(D, 0x84, 4), 0xffff_ffff);
        assert_eq!(gic.read(D, 0x94, 4), 0);
        assert_eq!(gic.read(R0, 0x1_0080, 4), 0xffff_ffff);
        assert_eq!(gic.read(R0, 0x1_0c00, 4), 0xaaaa_aaaa);
    }

    #[test]
    fn redistributor_typer_names_each_vcpus_affinity_and_the_last_frame() {
        let gic = L1Gic::new(2, 25);
        assert_eq!(gic.read(R0, 8, 8), 0);
        assert_eq!(gic.read(R1, 8, 8), 1 << 32 | 1 << 8 | 1 << 4);
        assert_eq!(gic.read(R1, 8, 4), 1 << 8 | 1 << 4);
        assert_eq!(gic.read(R1, 0xc, 4), 1);
    }

    #[test]
    fn waker_sleeps_at_reset_and_wakes_when_processor_sleep_is_cleared() {
        let mut gic = L1Gic::new(1, 25);
        assert_eq!(gic.read(R0, 0x14, 4), 6);
        gic.write(R0, 0x14, 4, 0);
        assert_eq!(gic.read(R0, 0x14, 4), 0);
        gic.write(R0, 0x14, 4, 2);
        assert_eq!(gic.read(R0, 0x14, 4), 6);
    }

    #[test]
    fn spi_set_clear_priority_config_and_routing_read_back() {
        let mut gic = L1Gic::new(2, 25);
        // SPI 48: word 1, bit 16.
        gic.write(D, 0x104, 4, 1 << 16);
        gic.write(D, 0x104, 4, 1 << 17);
        assert_eq!(gic.read(D, 0x104, 4), 3 << 16);
        assert_eq!(gic.read(D, 0x184, 4), 3 << 16);
        gic.write(D, 0x184, 4, 1 << 17);
        assert_eq!(gic.read(D, 0x104, 4), 1 << 16);
        gic.write(D, 0x204, 4, 1 << 16);
        assert_eq!(gic.read(D, 0x284, 4), 1 << 16);
        gic.write(D, 0x284, 4, 1 << 16);
        assert_eq!(gic.read(D, 0x204, 4), 0);
        gic.write(D, 0x304, 4, 1);
        assert_eq!(gic.read(D, 0x384, 4), 1);
        // The private word of each is RAZ/WI; past the lines too.
        gic.write(D, 0x100, 4, u64::MAX);
        assert_eq!(gic.read(D, 0x100, 4), 0);
        gic.write(D, 0x114, 4, u64::MAX);
        assert_eq!(gic.read(D, 0x114, 4), 0);
        // Priorities: bytes and words, none for private INTIDs.
        gic.write(D, 0x430, 1, 0x80);
        gic.write(D, 0x434, 4, 0x4030_2010);
        assert_eq!(gic.read(D, 0x430, 4), 0x80);
        assert_eq!(gic.read(D, 0x435, 1), 0x20);
        gic.write(D, 0x41c, 4, u64::MAX);
        assert_eq!(gic.read(D, 0x41c, 4), 0);
        // ICFGR: odd bits only, SPI words only.
        gic.write(D, 0xc08, 4, 0xffff_ffff);
        assert_eq!(gic.read(D, 0xc08, 4), 0xaaaa_aaaa);
        gic.write(D, 0xc04, 4, 0xffff_ffff);
        assert_eq!(gic.read(D, 0xc04, 4), 0);
        // IROUTER: 64-bit or two halves, reserved bits RES0.
        gic.write(D, 0x6000 + 48 * 8, 8, u64::MAX);
        assert_eq!(gic.read(D, 0x6000 + 48 * 8, 8), 0xff_8000_0000 | 0xff_ffff);
        gic.write(D, 0x6000 + 48 * 8, 4, 1);
        gic.write(D, 0x6000 + 48 * 8 + 4, 4, 0);
        assert_eq!(gic.read(D, 0x6000 + 48 * 8, 8), 1);
        assert_eq!(gic.read(D, 0x6000 + 48 * 8 + 4, 4), 0);
        // The last implemented SPI's IROUTER, and none past it.
        gic.write(D, 0x6000 + 159 * 8, 8, 1);
        assert_eq!(gic.read(D, 0x6000 + 159 * 8, 8), 1);
        gic.write(D, 0x6000 + 160 * 8, 8, 1);
        assert_eq!(gic.read(D, 0x6000 + 160 * 8, 8), 0);
    }

    #[test]
    fn unsupported_sizes_and_unaligned_words_are_raz_wi() {
        let mut gic = L1Gic::new(1, 25);
        gic.write(D, 0x104, 2, 0xffff);
        gic.write(D, 0x106, 4, 0xffff);
        gic.write(D, 0x104, 8, u64::MAX);
        assert_eq!(gic.read(D, 0x104, 4), 0);
        assert_eq!(gic.read(D, 0x104, 8), 0);
        assert_eq!(gic.read(D, 0x0, 1), 0);
        gic.write(R0, 0x1_0100, 2, 0xffff);
        assert_eq!(gic.read(R0, 0x1_0100, 4), 0);
        // Unaligned: RAZ/WI, also at the end of a register block (no
        // INTID past the last priority byte is touched).
        gic.write(R0, 0x1_041f, 4, u64::MAX);
        assert_eq!(gic.read(R0, 0x1_041f, 4), 0);
        assert_eq!(gic.read(R0, 0x1_041c, 4), 0);
        gic.write(D, 0x7fd, 4, u64::MAX);
        gic.write(D, 0x6104, 8, u64::MAX);
        assert_eq!(gic.read(D, 0x6100, 8), 0);
        assert_eq!(gic.read(D, 0x6104, 4), 0);
        gic.write(R0, 0x1_041f, 1, 0x80);
        assert_eq!(gic.read(R0, 0x1_041c, 4), 0x8000_0000);
    }

    #[test]
    fn no_access_anywhere_panics() {
        let mut gic = L1Gic::new(2, 25);
        for frame in [
            D,
            R0,
            R1,
            GicFrame::Redistributor(7),
            GicFrame::Redistributor(99),
        ] {
            for offset in (0..0x2_0000u64).step_by(1) {
                for size in [1, 2, 4, 8] {
                    gic.write(frame, offset, size, u64::MAX);
                    let _ = gic.read(frame, offset, size);
                }
            }
        }
        for value in [0, u64::MAX, 1 << 40 | 0xf << 24, 0xff << 44 | 0xffff] {
            gic.send_sgi(1, value);
            gic.send_sgi(5, value);
        }
        for vcpu in 0..MAX_L1_VCPUS + 2 {
            let _ = gic.forwarded(vcpu).count();
            gic.take(vcpu, 1);
            gic.take(vcpu, 1023);
        }
        let _ = gic.wanting();
    }

    #[test]
    fn private_registers_keep_sgi_state_and_ppi_enables() {
        let mut gic = L1Gic::new(2, 25);
        gic.write(R1, 0x1_0100, 4, 0x8000_0006);
        assert_eq!(gic.read(R1, 0x1_0100, 4), 0x8000_0006);
        assert_eq!(gic.read(R0, 0x1_0100, 4), 0);
        gic.write(R1, 0x1_0180, 4, 0x8000_0000);
        assert_eq!(gic.read(R1, 0x1_0180, 4), 6);
        // PPI pending bits are RAZ/WI; active bits wait for the vCPU's
        // sync (`another_vcpus_ppi_active_writes_reach_its_lrs_at_its_sync`).
        gic.write(R1, 0x1_0200, 4, 0x1_0004);
        assert_eq!(gic.read(R1, 0x1_0200, 4), 4);
        gic.write(R1, 0x1_0280, 4, 4);
        assert_eq!(gic.read(R1, 0x1_0200, 4), 0);
        gic.write(R1, 0x1_0300, 4, 0x1_0001);
        assert_eq!(gic.read(R1, 0x1_0380, 4), 0x1_0001);
        gic.write(R1, 0x1_0410, 1, 0x90);
        gic.write(R1, 0x1_0400, 4, 0x1122_3344);
        assert_eq!(gic.read(R1, 0x1_0410, 4), 0x90);
        assert_eq!(gic.read(R1, 0x1_0401, 1), 0x33);
    }

    #[test]
    fn a_third_vcpus_redistributor_is_raz_wi() {
        let mut gic = L1Gic::new(2, 25);
        let r2 = GicFrame::Redistributor(2);
        gic.write(r2, 0x14, 4, 0);
        assert_eq!(gic.read(r2, 0x14, 4), 0);
        assert_eq!(gic.read(r2, 8, 8), 0);
    }

    #[test]
    fn sgis_reach_the_listed_targets_and_irm_all_but_the_sender() {
        let mut gic = awake_gic();
        gic.write(R0, 0x1_0100, 4, 0xffff);
        gic.write(R1, 0x1_0100, 4, 0xffff);
        // SGI 2 to Aff0 0 from vCPU 1.
        assert_eq!(gic.send_sgi(1, 2 << 24 | 1), 1);
        assert_eq!(
            gic.forwarded(0).collect::<Vec<_>>(),
            [Forwarded {
                intid: 2,
                priority: 0
            }]
        );
        assert_eq!(gic.forwarded(1).count(), 0);
        // SGI 5 with IRM from vCPU 0: vCPU 1 only.
        assert_eq!(gic.send_sgi(0, 5 << 24 | 1 << 40), 2);
        assert_eq!(gic.forwarded(1).map(|f| f.intid).collect::<Vec<_>>(), [5]);
        // A target list naming an affinity no vCPU has.
        assert_eq!(gic.send_sgi(0, 1 << 24 | 1 << 7), 0);
        assert_eq!(gic.wanting(), 3);
    }

    #[test]
    fn nothing_is_forwarded_disabled_asleep_active_or_with_group_1_off() {
        let mut gic = awake_gic();
        gic.send_sgi(0, 3 << 24 | 1);
        assert!(gic.anything_pending());
        assert_eq!(gic.forwarded(0).count(), 0, "SGI 3 is disabled");
        gic.write(R0, 0x1_0100, 4, 1 << 3);
        assert_eq!(gic.forwarded(0).count(), 1);
        gic.write(D, 0, 4, 0);
        assert_eq!(gic.forwarded(0).count(), 0, "group 1 is off");
        assert!(!gic.anything_pending());
        gic.write(D, 0, 4, 2);
        gic.write(R0, 0x14, 4, 2);
        assert_eq!(gic.forwarded(0).count(), 0, "the redistributor sleeps");
        gic.write(R0, 0x14, 4, 0);
        gic.write(R0, 0x1_0300, 4, 1 << 3);
        assert_eq!(gic.forwarded(0).count(), 0, "SGI 3 is active");
        gic.write(R0, 0x1_0380, 4, 1 << 3);
        assert_eq!(gic.forwarded(0).count(), 1);
        assert_eq!(gic.wanting(), 1);
    }

    /// Review 47 R47-4: the same conditions for an SPI (IROUTER naming
    /// vCPU 1, Interrupt_Routing_Mode 0).
    #[test]
    fn no_spi_is_forwarded_disabled_active_or_to_a_sleeping_vcpu() {
        let mut gic = awake_gic();
        gic.write(D, 0x6000 + 48 * 8, 8, 1);
        gic.write(D, 0x204, 4, 1 << 16);
        assert!(gic.anything_pending());
        assert_eq!(gic.wanting(), 0, "SPI 48 is disabled");
        gic.write(D, 0x104, 4, 1 << 16);
        assert_eq!(gic.wanting(), 0b10);
        gic.write(D, 0x304, 4, 1 << 16);
        assert_eq!(gic.wanting(), 0, "SPI 48 is active");
        gic.write(D, 0x384, 4, 1 << 16);
        assert_eq!(gic.wanting(), 0b10);
        gic.write(R1, 0x14, 4, 2);
        assert_eq!(gic.wanting(), 0, "vCPU 1's redistributor sleeps");
        gic.write(R1, 0x14, 4, 0);
        gic.write(D, 0x184, 4, 1 << 16);
        assert_eq!(gic.wanting(), 0, "SPI 48 is disabled again");
        gic.write(D, 0x104, 4, 1 << 16);
        assert_eq!(gic.forwarded(1).map(|f| f.intid).collect::<Vec<_>>(), [48]);
    }

    #[test]
    fn spis_follow_irouter_and_irm_picks_the_lowest_awake_vcpu() {
        let mut gic = awake_gic();
        gic.write(D, 0x430, 1, 0x80);
        gic.write(D, 0x104, 4, 1 << 16);
        gic.write(D, 0x6000 + 48 * 8, 8, 1);
        gic.write(D, 0x204, 4, 1 << 16);
        assert_eq!(gic.forwarded(0).count(), 0);
        assert_eq!(
            gic.forwarded(1).collect::<Vec<_>>(),
            [Forwarded {
                intid: 48,
                priority: 0x80
            }]
        );
        // An affinity no vCPU has: nowhere (it stays pending).
        gic.write(D, 0x6000 + 48 * 8, 8, 7);
        assert_eq!(gic.wanting(), 0);
        assert_eq!(gic.read(D, 0x204, 4), 1 << 16);
        // IRM: vCPU 0, or vCPU 1 while vCPU 0 sleeps.
        gic.write(D, 0x6000 + 48 * 8, 8, IROUTER_IRM);
        assert_eq!(gic.wanting(), 1);
        gic.write(R0, 0x14, 4, 2);
        assert_eq!(gic.wanting(), 2);
        gic.take(1, 48);
        assert_eq!(gic.wanting(), 0);
    }

    fn pending_lr(intid: u64, priority: u64) -> u64 {
        lr::PENDING << lr::STATE_SHIFT
            | lr::GROUP1
            | priority << lr::PRIORITY_SHIFT
            | lr::EOI
            | intid
    }

    #[test]
    fn listing_moves_pending_into_free_lrs_once_and_merges_with_held_entries() {
        let mut gic = awake_gic();
        gic.write(R0, 0x1_0100, 4, 0b1110);
        gic.write(R0, 0x1_0400, 4, 0x0020_1000);
        gic.send_sgi(0, 1 << 24 | 1);
        gic.send_sgi(0, 2 << 24 | 1);
        // LR 0 of the slice is a timer PPI; LR 1 holds SGI 2 active.
        let active_2 = lr::ACTIVE << lr::STATE_SHIFT | lr::GROUP1 | 2;
        let mut lrs = [pending_lr(26, 0xa0), active_2, 0, 0];
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &[]), 2);
        // The new edge at SGI 2's priority now (0x20; the LR had 0).
        assert_eq!(
            lrs[1],
            active_2 | lr::PENDING << lr::STATE_SHIFT | 0x20 << lr::PRIORITY_SHIFT
        );
        assert_eq!(lrs[2], pending_lr(1, 0x10));
        assert_eq!(lrs[3], 0);
        // Listed once: nothing left to list.
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &[]), 0);
        assert_eq!(gic.wanting(), 0);
        // Sent again before L1 acknowledged: merged into the pending LR.
        gic.send_sgi(0, 1 << 24 | 1);
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &[]), 1);
        assert_eq!(lrs[3], 0);
        // No EOI bit without EOI maintenance.
        gic.send_sgi(0, 3 << 24 | 1);
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, false, &[]), 1);
        assert_eq!(lrs[3], pending_lr(3, 0) & !lr::EOI);
    }

    #[test]
    fn with_every_lr_in_use_an_interrupt_waits_in_the_distributor() {
        let mut gic = awake_gic();
        gic.write(R0, 0x1_0100, 4, 0b10);
        gic.send_sgi(0, 1 << 24 | 1);
        let active = lr::ACTIVE << lr::STATE_SHIFT | lr::GROUP1 | lr::EOI | 7;
        let mut lrs = [pending_lr(26, 0xa0), active];
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &[]), 0);
        assert_eq!(gic.wanting(), 1);
        // L1 deactivates SGI 7 (no trap): invalid with EOI set, a
        // maintenance request, not empty (ICH_ELRSR_EL2), but done with:
        // the listing frees it.
        lrs[1] = lr::EOI | 7;
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &[]), 1);
        assert_eq!(lrs[1] & lr::VINTID_MASK, 1);
        assert_eq!(gic.wanting(), 0);
    }

    /// Review 47 R47-2: at a vCPU's CPU_OFF what hv listed in its LRs goes
    /// back to the distributor and redistributor (pending and active
    /// state), and its redistributor sleeps, so that nothing, also not an
    /// SPI with Interrupt_Routing_Mode 1, goes to it while it is off; a
    /// refused CPU_OFF undoes the active state and the sleep.
    #[test]
    fn a_vcpu_powering_off_hands_its_listed_interrupts_back_and_sleeps() {
        let mut gic = awake_gic();
        gic.write(R1, 0x1_0100, 4, 1 << 3 | 1 << 1);
        // SPIs 48-50 enabled: 48 routed to vCPU 1, 49 and 50 "any PE".
        gic.write(D, 0x104, 4, 7 << 16);
        gic.write(D, 0x6000 + 8 * 48, 8, 1);
        gic.write(D, 0x6000 + 8 * 49, 8, IROUTER_IRM);
        gic.write(D, 0x6000 + 8 * 50, 8, IROUTER_IRM);
        let pending_active = |v: u64| v | lr::ACTIVE << lr::STATE_SHIFT;
        let active = |v: u64| v & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        // vCPU 1's LRs: SPI 48 pending, SGI 3 active, SPI 49 pending and
        // active, a timer PPI (not the distributor's).
        let timer = pending_lr(27, 0xa0);
        let mut lrs = [
            pending_lr(48, 0x80),
            active(pending_lr(3, 0x80)),
            pending_active(pending_lr(49, 0x80)),
            timer,
        ];
        let before = lrs;
        let undo = gic.power_off(1, &mut lrs);
        assert_eq!(lrs, [0, before[1], active(before[2]), timer]);
        // GICD_ISPENDR1: 48 and 49; GICD_ISACTIVER1: 49; GICR_ISACTIVER0
        // of vCPU 1: SGI 3; its GICR_WAKER: asleep.
        assert_eq!(gic.read(D, 0x204, 4), 3 << 16);
        assert_eq!(gic.read(D, 0x304, 4), 1 << 17);
        assert_eq!(gic.read(R1, 0x1_0300, 4), 1 << 3);
        assert_eq!(gic.read(R1, 0x14, 4), 6);
        // Nothing goes to the vCPU that is off: SPI 48 waits for L1 to
        // re-route it, SPI 50 ("any PE") goes to vCPU 0, as does an SGI
        // only once vCPU 1 is awake again.
        gic.write(D, 0x204, 4, 1 << 18);
        gic.send_sgi(0, 1 << 24 | 2);
        assert!(gic.forwarded(1).next().is_none());
        assert_eq!(gic.forwarded(0).map(|f| f.intid).collect::<Vec<_>>(), [50]);
        gic.write(D, 0x6000 + 8 * 48, 8, 0);
        assert_eq!(
            gic.forwarded(0).map(|f| f.intid).collect::<Vec<_>>(),
            [48, 50]
        );
        // Refused: the active entries stay in the LRs, so their active
        // state leaves the distributor; vCPU 1 is awake again and gets SGI
        // 1, and the SPI 49 it handed back (routed "any PE", vCPU 0 first).
        gic.power_off_refused(1, &undo, &mut lrs);
        assert_eq!(gic.read(D, 0x304, 4), 0);
        assert_eq!(gic.read(R1, 0x1_0300, 4), 0);
        assert_eq!(gic.read(R1, 0x14, 4), 0);
        assert_eq!(gic.forwarded(1).map(|f| f.intid).collect::<Vec<_>>(), [1]);
        assert_eq!(
            gic.forwarded(0).map(|f| f.intid).collect::<Vec<_>>(),
            [48, 49, 50]
        );
    }

    /// Review 47 R47-1: the exit L1's EOI maintenance interrupt causes, as
    /// `arch::nested::guest_exit` runs it (the GIC listing, then the timer
    /// PPIs' pass), lists what waited for a free LR.
    #[test]
    fn what_waited_for_an_lr_comes_at_the_eoi_maintenance_exit() {
        let mut gic = awake_gic();
        gic.write(R0, 0x1_0100, 4, 0b1110);
        // LRs 1..3 (QEMU: 4 LRs): the timer, SGIs 1 and 2; SGI 3 waits.
        gic.send_sgi(0, 1 << 24 | 1);
        gic.send_sgi(0, 2 << 24 | 1);
        let mut lrs = [pending_lr(26, 0xa0), 0, 0];
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &[]), 2);
        gic.send_sgi(0, 3 << 24 | 1);
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &[]), 0);
        // L1 acknowledges and deactivates SGI 1 (no trap): invalid, EOI set.
        lrs[1] &= !lr::STATE_MASK;
        assert!(crate::nested::vgic::lr_eoi_maintenance(lrs[1]));
        let listed = list_forwarded(&mut gic, 0, &mut lrs, true, &[]);
        crate::nested::timer::l1_timer_lrs(&mut lrs, &[(26, true)], true);
        assert_eq!(listed, 1, "SGI 3 waits for the next exit: lrs {lrs:x?}");
        assert_eq!(lrs[1] & lr::VINTID_MASK, 3);
        assert_eq!(gic.wanting(), 0);
    }

    /// Review 48 R48-7: L1's asserted timer PPI (hv lists it at 0xa0) ranks
    /// above three SGIs of priority 0xc0, so with three LRs the third SGI
    /// waits and the PPI gets the last one, as `arch::nested::guest_exit`
    /// runs the two passes; SGIs of priority 0x80 rank above it and take
    /// every LR.
    #[test]
    fn timer_ppis_compete_with_sgis_for_lrs_by_priority() {
        let sgis_at = |priority: u64| {
            let mut gic = awake_gic();
            gic.write(R0, 0x1_0100, 4, 0b1110);
            for sgi in 1..=3u64 {
                gic.write(R0, 0x1_0400 + sgi, 1, priority);
                gic.send_sgi(0, sgi << 24 | 1);
            }
            gic
        };
        let timers = [(26, true), (27, false)];
        let mut gic = sgis_at(0xc0);
        let mut lrs = [0u64; 3];
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &timers), 2);
        crate::nested::timer::l1_timer_lrs(&mut lrs, &timers, true);
        let intids = lrs.map(|v| v & lr::VINTID_MASK);
        assert_eq!(intids, [1, 2, 26], "lrs {lrs:x?}");
        assert_eq!(gic.forwarded(0).map(|f| f.intid).collect::<Vec<_>>(), [3]);
        // Listed, the PPI no longer holds an LR back: the SGI waits only
        // for a free one.
        lrs[0] = 0;
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &timers), 1);
        assert_eq!(lrs[0] & lr::VINTID_MASK, 3);

        let mut gic = sgis_at(0x80);
        let mut lrs = [0u64; 3];
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &timers), 3);
        crate::nested::timer::l1_timer_lrs(&mut lrs, &timers, true);
        assert_eq!(lrs.map(|v| v & lr::VINTID_MASK), [1, 2, 3]);
    }

    /// Review 49 R49-1: LRs 1-3 hold three SGIs of priority 0xf0 hv listed
    /// and L1 masks (its priority mask: never acknowledged). SGI 4 at
    /// 0x10 and L1's asserted timer PPI 27 (0xa0) each take the LR of the
    /// lowest-ranked of them (SGI 3, then SGI 2), whose pending state goes
    /// back to the redistributor; without displacement (`gic-no-displace`)
    /// both wait.
    #[test]
    fn a_higher_ranked_interrupt_displaces_the_lowest_listed_pending_entry() {
        let masked_sgis_listed = || {
            let mut gic = awake_gic();
            gic.write(R0, 0x1_0100, 4, 0b1_1110);
            for sgi in 1..=3u64 {
                gic.write(R0, 0x1_0400 + sgi, 1, 0xf0);
                gic.send_sgi(0, sgi << 24 | 1);
            }
            let mut lrs = [0u64; 3];
            assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &[]), 3);
            gic.write(R0, 0x1_0404, 1, 0x10);
            gic.send_sgi(0, 4 << 24 | 1);
            (gic, lrs)
        };
        let timers = [(27u32, true)];
        let (mut gic, mut lrs) = masked_sgis_listed();
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &timers), 1);
        crate::nested::timer::l1_timer_lrs(&mut lrs, &timers, true);
        assert_eq!(lrs.map(|v| v & lr::VINTID_MASK), [1, 27, 4], "lrs {lrs:x?}");
        assert_eq!(LrState::of(lrs[2]), LrState::Pending);
        assert_eq!(
            gic.forwarded(0).map(|f| f.intid).collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(
            gic.read(R0, 0x1_0200, 4) & 0b1_1110,
            0b1_1110,
            "all still pending"
        );
        assert_eq!(gic.wanting(), 1, "the handed-back SGIs wait for this vCPU");
        // At the next exit nothing moves: what waits ranks below every
        // entry listed.
        let before = lrs;
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &timers), 0);
        assert_eq!(lrs, before);
        // L1 unmasks and takes SGI 1: the LR it frees goes to SGI 2.
        lrs[0] = 0;
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &timers), 1);
        assert_eq!(lrs[0] & lr::VINTID_MASK, 2);

        let (mut gic, mut lrs) = masked_sgis_listed();
        let listed = list_forwarded_with_displacement(&mut gic, 0, &mut lrs, true, &timers, false);
        crate::nested::timer::l1_timer_lrs(&mut lrs, &timers, true);
        assert_eq!(listed, 0);
        assert_eq!(lrs.map(|v| v & lr::VINTID_MASK), [1, 2, 3]);
        assert_eq!(gic.forwarded(0).map(|f| f.intid).collect::<Vec<_>>(), [4]);
    }

    /// Review 49 R49-1: entries L1 acknowledged (active, or pending and
    /// active), and pending ones ranked above, are never displaced; an
    /// equal priority keeps the lower INTID listed.
    #[test]
    fn only_lower_ranked_pending_entries_are_displaced() {
        let mut gic = awake_gic();
        gic.write(R0, 0x1_0100, 4, 0xffff);
        for (sgi, priority) in [(1u64, 0xf0), (2, 0xf0), (3, 0x40), (5, 0x40), (6, 0x40)] {
            gic.write(R0, 0x1_0400 + sgi, 1, priority);
        }
        for sgi in [1u64, 2, 5] {
            gic.send_sgi(0, sgi << 24 | 1);
        }
        let mut lrs = [0u64; 3];
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &[]), 3);
        assert_eq!(lrs.map(|v| v & lr::VINTID_MASK), [5, 1, 2]);
        // L1 acknowledges SGIs 1 and 2 (active), then both come again.
        for v in &mut lrs[1..] {
            *v = *v & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        }
        gic.withdraw_listed(0, &mut lrs, SyncSteps::ALL);
        gic.send_sgi(0, 1 << 24 | 1);
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &[]), 1);
        assert_eq!(LrState::of(lrs[1]), LrState::PendingActive);
        // SGI 3 (0x40) ranks above SGI 5 (0x40, listed pending) and takes
        // its LR; SGI 6 then ranks below both and waits, as does the
        // asserted timer PPI (0xa0, below every pending entry).
        for sgi in [3u64, 6] {
            gic.send_sgi(0, sgi << 24 | 1);
        }
        let timers = [(26u32, true)];
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &timers), 1);
        crate::nested::timer::l1_timer_lrs(&mut lrs, &timers, true);
        assert_eq!(lrs.map(|v| v & lr::VINTID_MASK), [3, 1, 2]);
        assert_eq!(
            gic.forwarded(0).map(|f| f.intid).collect::<Vec<_>>(),
            [5, 6]
        );
    }

    /// Review 49 R49-1, properties over a fixed pseudo-random sequence of
    /// SGIs and SPIs of mixed priorities, timer PPI levels, L1's
    /// acknowledgements and deactivations, and 1 to 4 LRs: after every
    /// exit's passes (withdraw, list, timers) no two LRs hold one vINTID,
    /// no pending interrupt is lost (in the model or pending in an LR),
    /// and nothing waiting (an SGI or SPI forwarded to the vCPU, an
    /// asserted timer PPI no LR holds) ranks above a pending entry hv
    /// listed: the highest-ranked interrupts hold the LRs.
    #[test]
    fn displacement_keeps_the_highest_ranked_listed_and_loses_nothing() {
        use crate::nested::timer::l1_timer_lrs;
        use crate::nested::vgic::{free_deactivated, L1_MAINTENANCE_PRIORITY};
        const PRIORITIES: [u64; 6] = [0x10, 0x40, 0x80, 0xa0, 0xc0, 0xf0];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let rank_of = |v: u64| {
            (
                ((v & lr::PRIORITY_MASK) >> lr::PRIORITY_SHIFT) as u8,
                (v & lr::VINTID_MASK) as u32,
            )
        };
        for round in 0..400 {
            let mut gic = awake_gic();
            gic.write(R0, 0x1_0100, 4, 0xffff);
            gic.write(D, 0x104, 4, 0xff);
            for sgi in 0..16 {
                gic.write(R0, 0x1_0400 + sgi, 1, PRIORITIES[next(6) as usize]);
            }
            for spi in 32..40u64 {
                gic.write(D, 0x400 + spi, 1, PRIORITIES[next(6) as usize]);
                gic.write(D, 0x6000 + 8 * spi, 8, 0);
            }
            let mut all = [0u64; 4];
            let lrs = &mut all[..1 + next(4) as usize];
            let mut sent: Vec<u32> = Vec::new();
            for step in 0..24 {
                match next(5) {
                    0 | 1 => {
                        let sgi = next(16) as u32;
                        gic.send_sgi(0, u64::from(sgi) << 24 | 1);
                        sent.push(sgi);
                    }
                    2 => {
                        let spi = 32 + next(8) as u32;
                        gic.write(D, 0x204, 4, 1 << (spi - 32));
                        sent.push(spi);
                    }
                    3 => {
                        // L1 acknowledges a pending SGI or SPI entry.
                        let n = next(lrs.len() as u64) as usize;
                        let intid = lrs[n] & lr::VINTID_MASK;
                        if LrState::of(lrs[n]) == LrState::Pending && from_distributor(intid) {
                            lrs[n] = lrs[n] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
                            sent.retain(|&i| u64::from(i) != intid);
                        }
                    }
                    _ => {
                        // L1 deactivates an entry (EOI kept: its maintenance).
                        let n = next(lrs.len() as u64) as usize;
                        lrs[n] &= !(lr::ACTIVE << lr::STATE_SHIFT);
                    }
                }
                let timers = [(26u32, next(2) == 0), (27, next(3) == 0)];
                gic.withdraw_listed(0, lrs, SyncSteps::ALL);
                list_forwarded(&mut gic, 0, lrs, true, &timers);
                l1_timer_lrs(lrs, &timers, true);
                free_deactivated(lrs);
                let at = alloc::format!("round {round} step {step}: lrs {lrs:x?}");
                let valid: Vec<u64> = lrs
                    .iter()
                    .filter(|&&v| LrState::of(v) != LrState::Invalid)
                    .map(|&v| v & lr::VINTID_MASK)
                    .collect();
                let mut distinct = valid.clone();
                distinct.sort_unstable();
                distinct.dedup();
                assert_eq!(distinct.len(), valid.len(), "a vINTID twice, {at}");
                let waiting: Vec<Forwarded> = gic.forwarded(0).collect();
                for &intid in &sent {
                    let in_lr = lrs.iter().any(|&v| {
                        v & lr::VINTID_MASK == u64::from(intid)
                            && matches!(LrState::of(v), LrState::Pending | LrState::PendingActive)
                    });
                    let in_gic = waiting.iter().any(|f| f.intid == intid);
                    assert!(in_lr || in_gic, "SGI/SPI {intid} lost, {at}");
                }
                let lowest_displaceable = lrs
                    .iter()
                    .filter(|&&v| {
                        LrState::of(v) == LrState::Pending && from_distributor(v & lr::VINTID_MASK)
                    })
                    .map(|&v| rank_of(v))
                    .max();
                let timer_waiting = timers
                    .iter()
                    .filter(|&&(intid, asserted)| {
                        asserted
                            && !lrs.iter().any(|&v| {
                                LrState::of(v) != LrState::Invalid
                                    && v & lr::VINTID_MASK == u64::from(intid)
                            })
                    })
                    .map(|&(intid, _)| (L1_MAINTENANCE_PRIORITY, intid));
                let best_waiting = waiting
                    .iter()
                    .map(|f| (f.priority, f.intid))
                    .chain(timer_waiting)
                    .min();
                if let (Some(waiting), Some(listed)) = (best_waiting, lowest_displaceable) {
                    assert!(
                        waiting > listed,
                        "{waiting:x?} waits behind {listed:x?}, {at}"
                    );
                }
            }
        }
    }

    /// Whether hv saw L1's acknowledgement (a sync of the vCPU since).
    #[derive(Clone, Copy, PartialEq)]
    enum Acknowledgement {
        Seen,
        Unseen,
    }

    /// SPI 48 routed to vCPU 0, listed there (LR 0 of the slice a timer
    /// PPI) and acknowledged by L1 (active in its LR), `seen` or not.
    fn spi_acknowledged_at_vcpu_0(seen: Acknowledgement) -> (L1Gic, [u64; 3]) {
        let mut gic = awake_gic();
        gic.write(D, 0x104, 4, 1 << 16);
        gic.write(D, 0x6000 + 48 * 8, 8, 0);
        gic.write(D, 0x204, 4, 1 << 16);
        let mut vcpu0 = [pending_lr(26, 0xa0), 0, 0];
        assert_eq!(list_forwarded(&mut gic, 0, &mut vcpu0[1..], true, &[]), 1);
        assert_eq!(vcpu0[1], pending_lr(48, 0));
        vcpu0[1] = vcpu0[1] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        if seen == Acknowledgement::Seen {
            gic.sync(0, &mut vcpu0, SyncSteps::ALL);
            assert!(gic.holds_active(0));
        }
        (gic, vcpu0)
    }

    /// Review 48 R48-3: SPI 48, acknowledged at vCPU 0 (active in its LR),
    /// deactivated by L2 on vCPU 1 through an HW = 1 entry naming it:
    /// vCPU 0 is to be kicked and to sync (whatever it runs), the SPI
    /// reads inactive at once and goes to nobody else meanwhile, and
    /// vCPU 0's sync empties the LR, after which a new edge comes again;
    /// a second deactivation before the sync changes nothing more. With
    /// the deactivation reaching only vCPU 1's own (`OwnVcpu`, the
    /// `gic-no-remote-hw-deactivate` defect, the limit before) the entry
    /// stays active at vCPU 0 and the new edge never comes.
    #[test]
    fn an_hw_deactivation_on_another_vcpu_reaches_the_holders_lr() {
        let (mut gic, mut vcpu0) = spi_acknowledged_at_vcpu_0(Acknowledgement::Seen);
        let mut limit = (gic.clone(), vcpu0);
        assert_eq!(gic.read(D, 0x304, 4), 1 << 16, "active at vCPU 0");
        assert!(gic.deactivate(1, 48, ANY));
        assert!(gic.sync_requested(0), "vCPU 0 to sync");
        assert_eq!(gic.wanting(), 0b01, "vCPU 0 is kicked");
        assert_eq!(gic.read(D, 0x304, 4), 0, "reads inactive");
        assert!(!gic.deactivate(1, 48, ANY), "once");
        // A new edge before vCPU 0's sync: nobody else gets it, and
        // vCPU 0's LR holds it active until the sync.
        gic.write(D, 0x6000 + 48 * 8, 8, 1);
        gic.write(D, 0x204, 4, 1 << 16);
        assert_eq!(gic.forwarded(1).count(), 0, "still in vCPU 0's LR");
        assert!(gic.sync(0, &mut vcpu0, SyncSteps::ALL), "vCPU 1 to kick");
        assert_eq!(vcpu0, [pending_lr(26, 0xa0), 0, 0], "deactivated");
        assert!(!gic.sync_requested(0));
        assert!(!gic.holds_active(0));
        let mut vcpu1 = [0u64; 3];
        assert_eq!(list_forwarded(&mut gic, 1, &mut vcpu1, true, &[]), 1);
        assert_eq!(vcpu1[0], pending_lr(48, 0), "delivered again");

        // The limit: vCPU 0's LR stays active, the edge waits behind it.
        let (gic, vcpu0) = &mut limit;
        assert!(!gic.deactivate(1, 48, HwDeactivationReach::OwnVcpu));
        assert!(!gic.sync_requested(0));
        gic.write(D, 0x204, 4, 1 << 16);
        gic.sync(0, vcpu0, SyncSteps::ALL);
        assert_eq!(LrState::of(vcpu0[1]), LrState::Active);
        assert_eq!(list_forwarded(gic, 0, &mut vcpu0[1..], true, &[]), 1);
        assert_eq!(
            LrState::of(vcpu0[1]),
            LrState::PendingActive,
            "never signalled again"
        );
    }

    /// Review 48 R48-3, the holder's other states: an acknowledgement hv
    /// has not seen (SPI 48 still listed at vCPU 0) is deactivated at the
    /// sync all the same; one pending again behind its active state
    /// becomes pending (still listed at vCPU 0); one never acknowledged
    /// (pending in the LR: the deactivation of an interrupt that is not
    /// active) stays pending and is taken later as usual; a holder that
    /// powers off before its sync applies it (nothing goes to the model's
    /// active bit); vCPU 1's own entry is the caller's, no sync asked.
    #[test]
    fn an_hw_deactivation_on_another_vcpu_meets_each_holder_state() {
        // Acknowledged, not seen: marked, emptied at the sync.
        let (mut gic, mut vcpu0) = spi_acknowledged_at_vcpu_0(Acknowledgement::Unseen);
        assert!(gic.deactivate(1, 48, ANY));
        assert_eq!(gic.wanting(), 0b01);
        gic.sync(0, &mut vcpu0, SyncSteps::ALL);
        assert_eq!(vcpu0[1], 0);
        assert!(!gic.holds_active(0) && !gic.holds_listed(0));
        assert_eq!(gic.read(D, 0x304, 4), 0);
        // Pending and active: pending, still listed.
        let (mut gic, mut vcpu0) = spi_acknowledged_at_vcpu_0(Acknowledgement::Seen);
        gic.write(D, 0x204, 4, 1 << 16);
        assert_eq!(list_forwarded(&mut gic, 0, &mut vcpu0[1..], true, &[]), 1);
        assert_eq!(LrState::of(vcpu0[1]), LrState::PendingActive);
        assert!(gic.deactivate(1, 48, ANY));
        gic.sync(0, &mut vcpu0, SyncSteps::ALL);
        assert_eq!(vcpu0[1], pending_lr(48, 0));
        assert_eq!(gic.read(D, 0x304, 4), 0);
        assert_eq!(gic.read(D, 0x204, 4), 1 << 16, "listed: pending");
        // Never acknowledged: left pending; L1's later acknowledgement
        // after the sync is active as usual.
        let (mut gic, mut vcpu0) = spi_acknowledged_at_vcpu_0(Acknowledgement::Unseen);
        vcpu0[1] = pending_lr(48, 0);
        assert!(gic.deactivate(1, 48, ANY));
        gic.sync(0, &mut vcpu0, SyncSteps::ALL);
        assert_eq!(vcpu0[1], pending_lr(48, 0));
        vcpu0[1] = vcpu0[1] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        gic.sync(0, &mut vcpu0, SyncSteps::ALL);
        assert_eq!(LrState::of(vcpu0[1]), LrState::Active);
        assert_eq!(gic.read(D, 0x304, 4), 1 << 16);
        // The holder powers off before its sync: deactivated, not moved
        // to the model's active bit, so a new edge goes to vCPU 1.
        let (mut gic, mut vcpu0) = spi_acknowledged_at_vcpu_0(Acknowledgement::Seen);
        assert!(gic.deactivate(1, 48, ANY));
        gic.power_off(0, &mut vcpu0[1..]);
        assert_eq!(vcpu0[1], 0);
        assert_eq!(gic.read(D, 0x304, 4), 0);
        assert!(!gic.sync_requested(0), "nothing left to wait for");
        gic.write(D, 0x6000 + 48 * 8, 8, 1);
        gic.write(D, 0x204, 4, 1 << 16);
        assert_eq!(gic.forwarded(1).map(|f| f.intid).collect::<Vec<_>>(), [48]);
        // Held by the deactivating vCPU itself: its own LRs, the caller's
        // (`deactivate_listed`); no sync asked, no mark left behind.
        let (mut gic, mut vcpu0) = spi_acknowledged_at_vcpu_0(Acknowledgement::Seen);
        assert!(!gic.deactivate(0, 48, ANY));
        assert!(!gic.sync_requested(0));
        assert!(crate::nested::vgic::deactivate_listed(&mut vcpu0, 48));
        gic.sync(0, &mut vcpu0, SyncSteps::ALL);
        assert!(!gic.holds_active(0));
        // Held by nobody (not listed, not active): nothing.
        let mut gic = awake_gic();
        assert!(!gic.deactivate(1, 48, ANY));
        assert_eq!(gic.wanting(), 0);
    }

    /// Review 64 R64-1: vCPU 0's CPU_OFF moved the active state of SPI 48
    /// and SGI 3, active in its LRs, to the distributor and its
    /// redistributor; while the firmware call runs (the GIC's lock free),
    /// L2 on vCPU 1 deactivates SPI 48 through an HW = 1 entry and L1 on
    /// vCPU 1 clears SGI 3 active at vCPU 0's redistributor
    /// (GICR_ICACTIVER0). The firmware refuses the CPU_OFF: both entries
    /// are deactivated in vCPU 0's LRs, so both read inactive after its
    /// sync and a new edge of SPI 48 is signalled there again (not left
    /// pending behind an active state no one will deactivate).
    #[test]
    fn a_deactivation_during_a_refused_cpu_off_reaches_the_lr() {
        let (mut gic, mut vcpu0) = spi_acknowledged_at_vcpu_0(Acknowledgement::Seen);
        let active_sgi_3 = pending_lr(3, 0x80) & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        vcpu0[2] = active_sgi_3;
        gic.sync(0, &mut vcpu0, SyncSteps::ALL);
        let undo = gic.power_off(0, &mut vcpu0[1..]);
        assert_eq!(LrState::of(vcpu0[1]), LrState::Active);
        assert_eq!(vcpu0[2], active_sgi_3);
        assert_eq!(gic.read(D, 0x304, 4), 1 << 16);
        assert!(gic.deactivate(1, 48, ANY));
        gic.write(R0, ICACTIVER0, 4, 1 << 3);
        assert_eq!(gic.read(D, 0x304, 4), 0);
        assert_eq!(gic.read(R0, ISACTIVER0, 4), 0);
        gic.power_off_refused(0, &undo, &mut vcpu0[1..]);
        assert_eq!(vcpu0, [pending_lr(26, 0xa0), 0, 0], "both deactivated");
        gic.sync(0, &mut vcpu0, SyncSteps::ALL);
        assert_eq!(gic.read(D, 0x304, 4), 0);
        assert_eq!(gic.read(R0, ISACTIVER0, 4), 0);
        gic.write(D, 0x204, 4, 1 << 16);
        assert_eq!(list_forwarded(&mut gic, 0, &mut vcpu0[1..], true, &[]), 1);
        assert_eq!(vcpu0[1], pending_lr(48, 0), "signalled again");
    }

    /// Review 65 (R64-1's other state): SPI 48 pending and active in
    /// vCPU 0's LR when its CPU_OFF hands the pending state back (the LR
    /// left active); during the firmware call L2 on vCPU 1 deactivates it
    /// through an HW = 1 entry, and the pending edge, now inactive, goes to
    /// vCPU 1 (routed there meanwhile). The refusal empties vCPU 0's entry:
    /// one active state, deactivated, and the edge is vCPU 1's alone.
    #[test]
    fn a_pending_edge_handed_back_during_a_refused_cpu_off_goes_elsewhere_once() {
        let (mut gic, mut vcpu0) = spi_acknowledged_at_vcpu_0(Acknowledgement::Seen);
        gic.write(D, 0x204, 4, 1 << 16);
        assert_eq!(list_forwarded(&mut gic, 0, &mut vcpu0[1..], true, &[]), 1);
        assert_eq!(LrState::of(vcpu0[1]), LrState::PendingActive);
        let undo = gic.power_off(0, &mut vcpu0[1..]);
        assert_eq!(LrState::of(vcpu0[1]), LrState::Active);
        // Active: not forwarded anywhere while vCPU 0's CPU_OFF runs.
        gic.write(D, 0x6000 + 48 * 8, 8, 1);
        assert_eq!(gic.forwarded(1).count(), 0);
        assert!(gic.deactivate(1, 48, ANY));
        let mut vcpu1 = [0u64; 3];
        assert_eq!(list_forwarded(&mut gic, 1, &mut vcpu1, true, &[]), 1);
        assert_eq!(vcpu1[0], pending_lr(48, 0));
        gic.power_off_refused(0, &undo, &mut vcpu0[1..]);
        assert_eq!(vcpu0, [pending_lr(26, 0xa0), 0, 0], "deactivated");
        gic.sync(0, &mut vcpu0, SyncSteps::ALL);
        assert_eq!(gic.read(D, 0x304, 4), 0);
        assert_eq!(list_forwarded(&mut gic, 0, &mut vcpu0[1..], true, &[]), 0);
    }

    /// Review 64: the mark L2's HW = 1 deactivation on vCPU 1 leaves for
    /// vCPU 0's sync names SPI 48, not a list register: with the entry
    /// that held 48 now holding SPI 49, active (L1 acknowledged it there
    /// before the sync), the sync leaves 49 active where it is and only
    /// 48 inactive. A mark applied to a list register or to whatever
    /// entry is active would deactivate 49, which L1 did not.
    #[test]
    fn an_hw_deactivation_mark_never_clears_another_intids_entry() {
        let (mut gic, mut vcpu0) = spi_acknowledged_at_vcpu_0(Acknowledgement::Seen);
        gic.write(D, 0x104, 4, 1 << 16 | 1 << 17);
        gic.write(D, 0x6000 + 49 * 8, 8, 0);
        assert!(gic.deactivate(1, 48, ANY));
        let active_49 = pending_lr(49, 0) & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        vcpu0[1] = active_49;
        gic.sync(0, &mut vcpu0, SyncSteps::ALL);
        assert_eq!(vcpu0, [pending_lr(26, 0xa0), active_49, 0], "49 kept");
        assert_eq!(gic.read(D, 0x304, 4), 1 << 17, "49 active, 48 not");
        assert!(!gic.sync_requested(0));
    }

    /// Review 47 R47-3: with one free LR, the highest-priority interrupt
    /// forwarded is the one listed (a GIC forwards its highest-priority
    /// pending interrupt), whatever the INTIDs; equal priorities go by
    /// INTID.
    #[test]
    fn free_lrs_go_to_the_highest_priority_interrupts_first() {
        let mut gic = awake_gic();
        gic.write(R0, 0x1_0100, 4, 0b110);
        gic.write(R0, 0x1_0401, 1, 0xf0);
        gic.write(R0, 0x1_0402, 1, 0x10);
        gic.send_sgi(0, 1 << 24 | 1);
        gic.send_sgi(0, 2 << 24 | 1);
        gic.write(D, 0x430, 1, 0x10);
        gic.write(D, 0x104, 4, 1 << 16);
        gic.write(D, 0x204, 4, 1 << 16);
        let mut lrs = [pending_lr(26, 0xa0), 0];
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &[]), 1);
        assert_eq!(lrs[1] & lr::VINTID_MASK, 2, "lrs {lrs:x?}");
        lrs[1] = 0;
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &[]), 1);
        assert_eq!(lrs[1] & lr::VINTID_MASK, 48, "lrs {lrs:x?}");
        lrs[1] = 0;
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs, true, &[]), 1);
        assert_eq!(lrs[1] & lr::VINTID_MASK, 1, "lrs {lrs:x?}");
    }

    /// SPI 48 routed to vCPU 1 and SGI 2 sent to vCPU 0, each listed in
    /// its vCPU's LRs (LR 0 of each slice a timer PPI), not acknowledged.
    fn listed_spi_and_sgi() -> (L1Gic, [u64; 3], [u64; 3]) {
        let mut gic = awake_gic();
        gic.write(R0, 0x1_0100, 4, 1 << 2);
        gic.write(D, 0x104, 4, 1 << 16);
        gic.write(D, 0x6000 + 48 * 8, 8, 1);
        gic.write(D, 0x204, 4, 1 << 16);
        gic.send_sgi(0, 2 << 24 | 1);
        let mut lrs0 = [pending_lr(26, 0xa0), 0, 0];
        let mut lrs1 = lrs0;
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs0, true, &[]), 1);
        assert_eq!(list_forwarded(&mut gic, 1, &mut lrs1, true, &[]), 1);
        assert_eq!(lrs0[1], pending_lr(2, 0));
        assert_eq!(lrs1[1], pending_lr(48, 0));
        (gic, lrs0, lrs1)
    }

    /// Review 47 R47-2 (c): an interrupt listed and not yet acknowledged
    /// is pending (IHI 0069: pending until a PE acknowledges it):
    /// GICD_ISPENDR/ICPENDR and GICR_ISPENDR0/ICPENDR0 read it 1, and 0
    /// once the holder's exit saw it acknowledged.
    #[test]
    fn listed_and_not_acknowledged_reads_pending() {
        let (mut gic, mut lrs0, mut lrs1) = listed_spi_and_sgi();
        assert_eq!(gic.read(D, 0x204, 4), 1 << 16);
        assert_eq!(gic.read(D, 0x284, 4), 1 << 16);
        assert_eq!(gic.read(R0, 0x1_0200, 4), 1 << 2);
        assert_eq!(gic.read(R0, 0x1_0280, 4), 1 << 2);
        assert_eq!(gic.read(R1, 0x1_0200, 4), 0);
        // Nothing changed: the exits keep both, and nobody is kicked.
        assert!(!gic.withdraw_listed(0, &mut lrs0, SyncSteps::ALL));
        assert!(!gic.withdraw_listed(1, &mut lrs1, SyncSteps::ALL));
        assert_eq!(gic.wanting(), 0);
        assert_eq!(gic.read(D, 0x204, 4), 1 << 16);
        // L1 acknowledges both (no trap): active; the holders' next exits
        // see it.
        let acknowledged = |v: u64| v & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        lrs0[1] = acknowledged(lrs0[1]);
        lrs1[1] = acknowledged(lrs1[1]);
        let (before0, before1) = (lrs0, lrs1);
        assert!(!gic.withdraw_listed(0, &mut lrs0, SyncSteps::ALL));
        assert!(!gic.withdraw_listed(1, &mut lrs1, SyncSteps::ALL));
        assert_eq!((lrs0, lrs1), (before0, before1));
        assert_eq!(gic.read(D, 0x204, 4), 0);
        assert_eq!(gic.read(R0, 0x1_0200, 4), 0);
        assert!(!gic.holds_listed(0) && !gic.holds_listed(1));
    }

    /// A pending read of an interrupt listed at a vCPU that acknowledged
    /// it without an exit since: the load names the holder
    /// (`read_holders`), requests its sync (kicked: `wanting`), and once
    /// the holder's exit ran (`synced_since`) reads it not pending. Loads
    /// of bits nobody holds listed, of other registers, or of a holder's
    /// withdrawn entry wait for nobody.
    #[test]
    fn a_pending_read_waits_for_the_holders_sync() {
        let (mut gic, mut lrs0, mut lrs1) = listed_spi_and_sgi();
        assert_eq!(gic.read_holders(D, 0x204, 4), 0b10, "SPI 48 at vCPU 1");
        assert_eq!(gic.read_holders(D, 0x284, 4), 0b10);
        assert_eq!(gic.read_holders(D, 0x208, 4), 0, "no SPI 64-95 listed");
        assert_eq!(
            gic.read_holders(D, 0x104, 4),
            0,
            "enables: not listed state"
        );
        assert_eq!(gic.read_holders(D, 0x204, 1), 0, "RAZ/WI size");
        assert_eq!(gic.read_holders(R0, 0x1_0200, 4), 0b01, "SGI 2 at vCPU 0");
        assert_eq!(gic.read_holders(R1, 0x1_0280, 4), 0);
        assert_eq!(gic.wanting(), 0);
        // vCPU 1 acknowledged SPI 48 (no trap, no exit since): still read
        // pending until its sync.
        lrs1[1] = lrs1[1] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        let since = gic.request_sync(0b10);
        assert_eq!(gic.wanting(), 0b10, "the holder is kicked");
        assert!(gic.sync_requested(1) && !gic.sync_requested(0));
        assert!(!gic.synced_since(0b10, &since));
        assert_eq!(gic.read(D, 0x204, 4), 1 << 16);
        // vCPU 0's own exits do not count for vCPU 1.
        gic.withdraw_listed(0, &mut lrs0, SyncSteps::ALL);
        assert!(!gic.synced_since(0b10, &since));
        gic.withdraw_listed(1, &mut lrs1, SyncSteps::ALL);
        assert!(gic.synced_since(0b10, &since));
        assert!(!gic.sync_requested(1));
        assert_eq!(gic.wanting(), 0);
        assert_eq!(
            gic.read(D, 0x204, 4),
            0,
            "read after the sync: acknowledged"
        );
        assert_eq!(gic.read_holders(D, 0x204, 4), 0, "nothing left to wait for");
        // A withdrawn (cleared-pending) entry reads 0 already: no wait.
        gic.write(R0, 0x1_0280, 4, 1 << 2);
        assert_eq!(gic.read_holders(R0, 0x1_0200, 4), 0);
        // A sync of a vCPU L1 does not have is not waited for.
        let since = gic.request_sync(1 << 5);
        assert!(gic.synced_since(1 << 5, &since));
    }

    /// A new priority (GICD_IPRIORITYR, GICR_IPRIORITYR; byte and word)
    /// reaches an interrupt listed and not acknowledged: its holder is
    /// kicked and its exit rewrites the LR's priority, pending or pending
    /// and active, the rest of the LR unchanged; a priority write of an
    /// interrupt nobody holds listed kicks nobody; `gic-no-reprioritize`
    /// leaves the old priority.
    #[test]
    fn a_new_priority_reaches_the_listed_entry_at_the_holders_exit() {
        let (mut gic, mut lrs0, mut lrs1) = listed_spi_and_sgi();
        gic.write(D, 0x400 + 49, 1, 0x40);
        assert_eq!(gic.wanting(), 0, "SPI 49 is listed nowhere");
        gic.write(D, 0x400 + 48, 1, 0xc0);
        gic.write(R0, 0x1_0400, 4, 0x0060_0000);
        assert_eq!(gic.wanting(), 0b11, "both holders are kicked");
        let mut broken = (gic.clone(), lrs1);
        broken.0.withdraw_listed(
            1,
            &mut broken.1,
            SyncSteps {
                reprioritize: false,
                ..SyncSteps::ALL
            },
        );
        assert_eq!(broken.1, lrs1, "gic-no-reprioritize: the old priority");
        assert_eq!(broken.0.wanting(), 0b01, "vCPU 1 is not kicked again");
        assert!(!gic.withdraw_listed(1, &mut lrs1, SyncSteps::ALL));
        assert!(!gic.withdraw_listed(0, &mut lrs0, SyncSteps::ALL));
        assert_eq!(lrs1[1], pending_lr(48, 0xc0));
        assert_eq!(lrs0[1], pending_lr(2, 0x60));
        assert_eq!(
            lrs0[0],
            pending_lr(26, 0xa0),
            "the timer PPI's LR untouched"
        );
        assert_eq!(gic.wanting(), 0);
        assert!(gic.holds_listed(0) && gic.holds_listed(1), "still listed");
        // Pending and active (acknowledged, then a second edge): the
        // pending edge gets the new priority too.
        lrs0[1] = lrs0[1] & !lr::STATE_MASK | (lr::PENDING | lr::ACTIVE) << lr::STATE_SHIFT;
        gic.write(R0, 0x1_0402, 1, 0x90);
        assert_eq!(gic.wanting(), 0b01);
        gic.withdraw_listed(0, &mut lrs0, SyncSteps::ALL);
        assert_eq!(lrs0[1] & lr::PRIORITY_MASK, 0x90 << lr::PRIORITY_SHIFT);
        assert_eq!(LrState::of(lrs0[1]), LrState::PendingActive);
        // Acknowledged (active only): no longer listed, nothing to change.
        lrs1[1] = lrs1[1] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        gic.withdraw_listed(1, &mut lrs1, SyncSteps::ALL);
        let active = lrs1;
        gic.write(D, 0x400 + 48, 1, 0x10);
        assert_eq!(gic.wanting(), 0);
        gic.withdraw_listed(1, &mut lrs1, SyncSteps::ALL);
        assert_eq!(lrs1, active);
    }

    /// Review 47 R47-2 (b): L1's clear-pending of a listed, not
    /// acknowledged interrupt (here from vCPU 0, of vCPU 1's SPI, and of
    /// vCPU 0's own SGI) kicks the holder, whose next exit withdraws the
    /// LR entry: never taken, nothing handed back; `gic-no-withdraw`
    /// leaves it.
    #[test]
    fn a_clear_pending_withdraws_the_listed_entry_at_the_holders_exit() {
        let (mut gic, mut lrs0, mut lrs1) = listed_spi_and_sgi();
        gic.write(D, 0x284, 4, 1 << 16);
        gic.write(R0, 0x1_0280, 4, 1 << 2);
        assert_eq!(gic.read(D, 0x204, 4), 0);
        assert_eq!(gic.read(R0, 0x1_0200, 4), 0);
        assert_eq!(gic.wanting(), 0b11, "both holders are kicked");
        let mut broken = (gic.clone(), lrs1);
        assert!(!broken.0.withdraw_listed(
            1,
            &mut broken.1,
            SyncSteps {
                withdraw: false,
                ..SyncSteps::ALL
            }
        ));
        assert_eq!(broken.1, lrs1, "gic-no-withdraw: still pending there");
        assert!(!gic.withdraw_listed(1, &mut lrs1, SyncSteps::ALL));
        assert!(!gic.withdraw_listed(0, &mut lrs0, SyncSteps::ALL));
        assert_eq!(lrs1, [pending_lr(26, 0xa0), 0, 0]);
        assert_eq!(lrs0, [pending_lr(26, 0xa0), 0, 0]);
        assert_eq!(gic.wanting(), 0);
        assert!(!gic.anything_pending());
        assert_eq!(gic.read(D, 0x204, 4), 0);
        // Pending and active (acknowledged, then a second edge merged):
        // the clear leaves it active.
        gic.send_sgi(0, 2 << 24 | 1);
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs0, true, &[]), 1);
        lrs0[1] = lrs0[1] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        gic.withdraw_listed(0, &mut lrs0, SyncSteps::ALL);
        gic.send_sgi(0, 2 << 24 | 1);
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs0, true, &[]), 1);
        assert_eq!(LrState::of(lrs0[1]), LrState::PendingActive);
        gic.write(R0, 0x1_0280, 4, 1 << 2);
        gic.withdraw_listed(0, &mut lrs0, SyncSteps::ALL);
        assert_eq!(LrState::of(lrs0[1]), LrState::Active);
        assert_eq!(gic.read(R0, 0x1_0200, 4), 0);
    }

    /// Review 47 R47-2 (b): a disable withdraws a listed entry too, but
    /// the interrupt stays pending in the distributor (a disabled
    /// interrupt is only not forwarded) and comes, once, when enabled
    /// again; GICD_CTLR.RWP (GICR_CTLR.RWP for an SGI) reads 1 until the
    /// holder withdrew it.
    #[test]
    fn a_disable_withdraws_the_listed_entry_and_it_comes_when_enabled_again() {
        let (mut gic, mut lrs0, mut lrs1) = listed_spi_and_sgi();
        assert_eq!(gic.read(D, 0, 4) & u64::from(ctlr::RWP), 0);
        gic.write(D, 0x184, 4, 1 << 16);
        gic.write(R0, 0x1_0180, 4, 1 << 2);
        assert_eq!(
            gic.read(D, 0, 4) & u64::from(ctlr::RWP),
            u64::from(ctlr::RWP)
        );
        assert_eq!(gic.read(R0, 0, 4), u64::from(ctlr::GICR_RWP));
        assert_eq!(gic.wanting(), 0b11);
        assert!(gic.withdraw_listed(1, &mut lrs1, SyncSteps::ALL));
        assert!(gic.withdraw_listed(0, &mut lrs0, SyncSteps::ALL));
        assert_eq!((lrs0[1], lrs1[1]), (0, 0));
        assert_eq!(gic.read(D, 0, 4) & u64::from(ctlr::RWP), 0);
        assert_eq!(gic.read(R0, 0, 4), 0);
        assert_eq!(gic.read(D, 0x204, 4), 1 << 16, "still pending");
        assert_eq!(gic.read(R0, 0x1_0200, 4), 1 << 2, "still pending");
        assert_eq!(gic.wanting(), 0);
        gic.write(D, 0x104, 4, 1 << 16);
        gic.write(R0, 0x1_0100, 4, 1 << 2);
        assert_eq!(gic.wanting(), 0b11);
        assert_eq!(list_forwarded(&mut gic, 1, &mut lrs1, true, &[]), 1);
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs0, true, &[]), 1);
        assert_eq!(lrs1[1], pending_lr(48, 0));
        assert_eq!(lrs0[1], pending_lr(2, 0));
        assert_eq!(gic.wanting(), 0);
    }

    /// Review 47 R47-2 (b): an SPI re-routed while listed and not
    /// acknowledged moves to its new target once the old one withdrew it
    /// (never pending in both vCPUs' LRs, also with a second edge sent
    /// meanwhile); one the old target acknowledged first stays there.
    #[test]
    fn a_re_routed_listed_spi_moves_to_the_new_target_once() {
        let (mut gic, mut lrs0, mut lrs1) = listed_spi_and_sgi();
        gic.write(D, 0x204, 4, 1 << 16);
        gic.write(D, 0x6000 + 48 * 8, 8, 0);
        assert_eq!(
            gic.forwarded(0).map(|f| f.intid).collect::<Vec<u32>>(),
            [0u32; 0],
            "SPI 48 waits for vCPU 1 to withdraw it"
        );
        assert_eq!(gic.wanting(), 0b10);
        assert!(gic.withdraw_listed(1, &mut lrs1, SyncSteps::ALL));
        assert_eq!(lrs1[1], 0);
        assert_eq!(gic.wanting(), 0b01);
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs0, true, &[]), 1);
        assert_eq!(lrs0[2], pending_lr(48, 0));
        assert_eq!(gic.wanting(), 0);
        assert_eq!(gic.read(D, 0x204, 4), 1 << 16);
        // Acknowledged on vCPU 0 before a re-route back to vCPU 1 reached
        // it: delivered there, nothing for vCPU 1.
        lrs0[2] = lrs0[2] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        gic.write(D, 0x6000 + 48 * 8, 8, 1);
        assert_eq!(gic.wanting(), 0b01);
        assert!(!gic.withdraw_listed(0, &mut lrs0, SyncSteps::ALL));
        assert_eq!(LrState::of(lrs0[2]), LrState::Active);
        assert_eq!(gic.wanting(), 0);
        assert_eq!(gic.read(D, 0x204, 4), 0);
    }

    /// A clear-pending not yet withdrawn when the holder powers off: the
    /// entry is dropped, not handed back.
    #[test]
    fn a_power_off_does_not_hand_back_what_l1_cleared_pending() {
        let (mut gic, _, mut lrs1) = listed_spi_and_sgi();
        gic.write(D, 0x284, 4, 1 << 16);
        gic.power_off(1, &mut lrs1);
        assert_eq!(lrs1[1], 0);
        assert_eq!(gic.read(D, 0x204, 4), 0);
        assert!(!gic.holds_listed(1));
        gic.write(D, 0x6000 + 48 * 8, 8, 0);
        assert_eq!(gic.wanting(), 0);
    }

    #[test]
    fn signalled_needs_a_pending_distributor_entry_group_1_and_the_priority_mask() {
        let vmcr_on = vmcr::VENG1 | 0xf0 << 24;
        assert!(signalled(&[pending_lr(2, 0x80)], vmcr_on, 5));
        assert!(signalled(&[pending_lr(48, 0x80)], vmcr_on, 5));
        assert!(!signalled(
            &[pending_lr(2, 0x80)],
            vmcr::VENG1 | 0x80 << 24,
            5
        ));
        assert!(!signalled(&[pending_lr(2, 0x80)], 0xf0 << 24, 5));
        // Only the implemented bits count: with 5, priority 0x79 is 0x78,
        // not below a mask of 0x7f (0x78); with 8 it is.
        assert!(!signalled(
            &[pending_lr(2, 0x79)],
            vmcr::VENG1 | 0x7f << 24,
            5
        ));
        assert!(signalled(
            &[pending_lr(2, 0x79)],
            vmcr::VENG1 | 0x7f << 24,
            8
        ));
        // Active, a PPI (hv's timer and maintenance paths decide those),
        // group 0.
        let active = pending_lr(2, 0x80) & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        assert!(!signalled(&[active], vmcr_on, 5));
        assert!(!signalled(&[pending_lr(26, 0x80)], vmcr_on, 5));
        assert!(!signalled(&[pending_lr(2, 0x80) & !lr::GROUP1], vmcr_on, 5));
    }
    #[test]
    fn l2_deactivation_clears_the_active_bit_l1_set() {
        let mut gic = L1Gic::new(2, 25);
        // SGI 3 active at vCPU 1's redistributor, SPI 48 at the
        // distributor (word 1, bit 16).
        gic.write(R1, 0x1_0300, 4, 1 << 3);
        gic.write(D, 0x304, 4, 1 << 16);
        // vCPU 0's SGI 3 is another interrupt: nothing.
        assert!(!gic.deactivate(0, 3, ANY));
        assert_eq!(gic.read(R1, 0x1_0300, 4), 1 << 3);
        assert!(gic.deactivate(1, 3, ANY));
        assert_eq!(gic.read(R1, 0x1_0300, 4), 0);
        assert!(gic.deactivate(0, 48, ANY));
        assert_eq!(gic.read(D, 0x304, 4), 0);
        // Not active, a PPI, beyond L1's INTIDs, a vCPU it does not have:
        // no effect (CONSTRAINED UNPREDICTABLE).
        let before = gic.clone();
        for (vcpu, intid) in [
            (1, 3),
            (0, 48),
            (0, 27),
            (0, L1_GIC_LINES),
            (0, 8191),
            (2, 3),
            (9, 3),
        ] {
            assert!(!gic.deactivate(vcpu, intid, ANY), "{vcpu} {intid}");
        }
        assert_eq!(gic, before);
    }

    /// GICR_ISACTIVER0 / GICR_ICACTIVER0 for PPIs act on the entries of
    /// L1's own interface that hold them (KVM's timer PPI at vCPU load).
    #[test]
    fn ppi_active_bits_follow_the_listed_entries() {
        use super::super::vgic::L1_MAINTENANCE_PRIORITY;
        let state = |v: u64| LrState::of(v);
        let timer: u32 = 27;
        // LR 0: the maintenance PPI pending; LR 1: the timer PPI pending.
        let mut lrs = [pending_lr(25, 0), pending_lr(u64::from(timer), 0), 0, 0];
        assert_eq!(listed_ppis_active(&lrs), 0);
        // Set: the pending entry becomes pending and active.
        write_listed_ppis_active(&mut lrs, true, 1 << timer, 25);
        assert_eq!(state(lrs[1]), LrState::PendingActive);
        assert_eq!(listed_ppis_active(&lrs), 1 << timer);
        // Clear: back to pending (its level is still up).
        write_listed_ppis_active(&mut lrs, false, 1 << timer, 25);
        assert_eq!(state(lrs[1]), LrState::Pending);
        assert_eq!(listed_ppis_active(&lrs), 0);
        // Set for a PPI no entry holds: an active entry in the first free
        // LR from 1 on, group 1, hv's PPI priority, the EOI bit.
        lrs[1] = 0;
        write_listed_ppis_active(&mut lrs, true, 1 << timer | 1 << 26, 25);
        assert_eq!(
            lrs[1],
            lr::ACTIVE << lr::STATE_SHIFT
                | lr::GROUP1
                | lr::EOI
                | u64::from(L1_MAINTENANCE_PRIORITY) << lr::PRIORITY_SHIFT
                | 26
        );
        assert_eq!(lrs[2] & lr::VINTID_MASK, u64::from(timer));
        assert_eq!(state(lrs[2]), LrState::Active);
        assert_eq!(listed_ppis_active(&lrs), 1 << timer | 1 << 26);
        // Setting it again changes nothing; SGI bits are the model's.
        let before = lrs;
        write_listed_ppis_active(&mut lrs, true, 1 << timer | 0xffff, 25);
        assert_eq!(lrs, before);
        // Clear: the active entries emptied, the maintenance PPI's
        // pending entry in LR 0 untouched.
        write_listed_ppis_active(&mut lrs, false, u32::MAX, 25);
        assert_eq!(lrs, [pending_lr(25, 0), 0, 0, 0]);
        // With LRs 1 on all in use, the set is not placed (and said so).
        let mut full = [0, pending_lr(40, 0), pending_lr(41, 0)];
        assert_eq!(
            write_listed_ppis_active(&mut full, true, 1 << timer, 25),
            1 << timer
        );
        assert_eq!(full, [0, pending_lr(40, 0), pending_lr(41, 0)]);
        // An SGI or SPI entry active is not a PPI's.
        let spi_active = pending_lr(40, 0) & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        assert_eq!(listed_ppis_active(&[0, spi_active]), 0);
    }

    /// Another vCPU's GICR_ISACTIVER0/ICACTIVER0 PPI bits (vCPU 0 writes
    /// vCPU 1's): read back at once (what was written), the target kicked
    /// (`wanting`) and named for a load's sync (`read_holders`), applied to
    /// its list registers at its sync (`sync_ppis`), and then read from
    /// what they hold; the last write of a bit before the sync wins.
    #[test]
    fn another_vcpus_ppi_active_writes_reach_its_lrs_at_its_sync() {
        let mut gic = awake_gic();
        let maintenance = pending_lr(25, 0);
        let mut lrs1 = [maintenance, 0, 0];
        assert_eq!(gic.read_holders(R1, ISACTIVER0, 4), 0b10);
        assert_eq!(gic.read_holders(R1, ISACTIVER0, 1), 0, "RAZ/WI size");
        gic.write(R1, ISACTIVER0, 4, 1 << 27 | 1 << 3);
        assert_eq!(gic.read(R1, ISACTIVER0, 4), 1 << 27 | 1 << 3);
        assert_eq!(gic.read(R1, ICACTIVER0, 4), 1 << 27 | 1 << 3);
        assert_eq!(gic.read(R0, ISACTIVER0, 4), 0, "vCPU 0's own untouched");
        assert_eq!(gic.wanting(), 0b10, "vCPU 1 is kicked");
        assert!(gic.sync_requested(1) && gic.ppi_active_waiting(1));
        gic.sync(1, &mut lrs1, SyncSteps::ALL);
        assert_eq!(lrs1[0], maintenance);
        assert_eq!(lrs1[1] & lr::VINTID_MASK, 27);
        assert_eq!(LrState::of(lrs1[1]), LrState::Active);
        assert!(!gic.sync_requested(1) && !gic.ppi_active_waiting(1));
        assert_eq!(gic.wanting(), 0);
        assert_eq!(gic.read(R1, ISACTIVER0, 4), 1 << 27 | 1 << 3);
        // L1 deactivated it there (no trap): read so after the next sync.
        lrs1[1] = 0;
        gic.sync_ppis(1, &mut lrs1);
        assert_eq!(gic.read(R1, ISACTIVER0, 4), 1 << 3);
        // Set then clear before the sync: nothing placed; clear of an
        // active entry then set: it stays active.
        gic.write(R1, ISACTIVER0, 4, 1 << 20);
        gic.write(R1, ICACTIVER0, 4, 1 << 20);
        assert_eq!(gic.read(R1, ISACTIVER0, 4), 1 << 3);
        gic.sync_ppis(1, &mut lrs1);
        assert_eq!(lrs1, [maintenance, 0, 0]);
        gic.write(R1, ISACTIVER0, 4, 1 << 20);
        gic.sync_ppis(1, &mut lrs1);
        gic.write(R1, ICACTIVER0, 4, 1 << 20);
        gic.write(R1, ISACTIVER0, 4, 1 << 20);
        gic.sync_ppis(1, &mut lrs1);
        assert_eq!(LrState::of(lrs1[1]), LrState::Active);
        assert_eq!(gic.read(R1, ISACTIVER0, 4), 1 << 20 | 1 << 3);
        // Cleared: the entry emptied.
        gic.write(R1, ICACTIVER0, 4, 1 << 20);
        gic.sync_ppis(1, &mut lrs1);
        assert_eq!(lrs1, [maintenance, 0, 0]);
        assert_eq!(gic.read(R1, ISACTIVER0, 4), 1 << 3);
        // A vCPU that is off (asleep) is not waited for; its state gone.
        gic.write(R1, ISACTIVER0, 4, 1 << 20);
        gic.power_off(1, &mut lrs1[1..]);
        assert_eq!(gic.read_holders(R1, ISACTIVER0, 4), 0);
        assert_eq!(
            gic.read(R1, ISACTIVER0, 4),
            1 << 3,
            "SGI 3's is the model's"
        );
    }

    /// A PPI set active (GICR_ISACTIVER0) while every LR from 1 on is in
    /// use is not lost: it waits in the model, reads active, keeps the
    /// vCPU syncing at its exits, and takes the first LR that frees; an
    /// HW = 1 deactivation of it, or a clear, before then cancels it.
    #[test]
    fn a_ppi_set_active_with_every_lr_in_use_waits_for_a_free_lr() {
        let mut gic = awake_gic();
        let full = [pending_lr(25, 0), pending_lr(40, 0), pending_lr(41, 0)];
        let mut lrs = full;
        gic.write(R0, ISACTIVER0, 4, 1 << 27);
        gic.sync(0, &mut lrs, SyncSteps::ALL);
        assert_eq!(lrs, full, "no LR for it");
        assert_eq!(gic.read(R0, ISACTIVER0, 4), 1 << 27, "still active");
        assert!(gic.ppi_active_waiting(0), "the vCPU's exits keep trying");
        assert_eq!(gic.wanting(), 0, "no kick storm while it waits");
        let mut broken = (gic.clone(), lrs);
        let lost = SyncSteps {
            keep_waiting_ppi_sets: false,
            ..SyncSteps::ALL
        };
        broken.0.sync(0, &mut broken.1, lost);
        assert_eq!(
            broken.0.read(R0, ISACTIVER0, 4),
            0,
            "gic-no-ppi-active-wait"
        );
        // LR 2's SGI taken and deactivated: the next exit places it.
        lrs[2] = 0;
        gic.sync_ppis(0, &mut lrs);
        assert_eq!(lrs[2] & lr::VINTID_MASK, 27);
        assert_eq!(LrState::of(lrs[2]), LrState::Active);
        assert!(!gic.ppi_active_waiting(0));
        assert_eq!(gic.read(R0, ISACTIVER0, 4), 1 << 27);
        // Waiting, then deactivated through an HW = 1 entry naming it or
        // cleared: never placed.
        let mut lrs = full;
        gic.write(R0, ISACTIVER0, 4, 1 << 26 | 1 << 30);
        gic.sync_ppis(0, &mut lrs);
        assert!(gic.deactivate(0, 26, ANY));
        assert!(!gic.deactivate(0, 26, ANY), "once");
        gic.write(R0, ICACTIVER0, 4, 1 << 30);
        lrs[1] = 0;
        gic.sync_ppis(0, &mut lrs);
        assert_eq!(lrs[1], 0);
        assert!(!gic.ppi_active_waiting(0));
        assert_eq!(gic.read(R0, ISACTIVER0, 4), 0);
    }

    /// Review 49 R49-2: the bit of L1's maintenance PPI (25) in GICR_ISACTIVER0
    /// and GICR_ICACTIVER0 acts on LR 0 only, where hv lists it, so no two
    /// LRs ever hold vINTID 25: set with LR 0 invalid, LR 0 becomes active
    /// (no EOI bit), and the maintenance path, asserting it again, leaves it
    /// so until L1 deactivates it; set with LR 0 pending, pending and
    /// active; clear, deactivated; LRs 1 on untouched throughout.
    #[test]
    fn the_maintenance_ppis_active_bit_is_lr_0s() {
        use super::super::vgic::{l1_maintenance_lr, L1_MAINTENANCE_PRIORITY};
        let holding_25 = |lrs: &[u64]| {
            lrs.iter()
                .filter(|&&v| LrState::of(v) != LrState::Invalid && v & lr::VINTID_MASK == 25)
                .count()
        };
        let mut lrs = [0, pending_lr(27, 0), 0, 0];
        write_listed_ppis_active(&mut lrs, true, 1 << 25, 25);
        assert_eq!(
            lrs,
            [
                lr::ACTIVE << lr::STATE_SHIFT
                    | lr::GROUP1
                    | u64::from(L1_MAINTENANCE_PRIORITY) << lr::PRIORITY_SHIFT
                    | 25,
                pending_lr(27, 0),
                0,
                0
            ]
        );
        assert_eq!(listed_ppis_active(&lrs), 1 << 25);
        lrs[0] = l1_maintenance_lr(lrs[0], true, 25);
        assert_eq!(LrState::of(lrs[0]), LrState::Active);
        assert_eq!(holding_25(&lrs), 1, "lrs {lrs:x?}");
        // Clear: LR 0 emptied; the maintenance path may list it again.
        write_listed_ppis_active(&mut lrs, false, 1 << 25, 25);
        assert_eq!(lrs, [0, pending_lr(27, 0), 0, 0]);
        lrs[0] = l1_maintenance_lr(lrs[0], true, 25);
        assert_eq!(LrState::of(lrs[0]), LrState::Pending);
        // Set with LR 0 pending: pending and active, in LR 0.
        write_listed_ppis_active(&mut lrs, true, 1 << 25, 25);
        assert_eq!(LrState::of(lrs[0]), LrState::PendingActive);
        assert_eq!(holding_25(&lrs), 1, "lrs {lrs:x?}");
        let before = lrs;
        write_listed_ppis_active(&mut lrs, true, 1 << 25, 25);
        assert_eq!(lrs, before, "set again: no change");
        // Clear: pending again, in LR 0.
        write_listed_ppis_active(&mut lrs, false, 1 << 25, 25);
        assert_eq!(lrs[0], l1_maintenance_lr(0, true, 25));
        assert_eq!(lrs[1..], [pending_lr(27, 0), 0, 0]);
        // A clear with another LR holding vINTID 25 (not hv's doing) acts
        // on LR 0 only.
        let active_25 = pending_lr(25, 0) & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        let mut other = [0, active_25];
        write_listed_ppis_active(&mut other, false, 1 << 25, 25);
        assert_eq!(other, [0, active_25]);
        // Through the model (GICR_ISACTIVER0, then the vCPU's sync): LR 0
        // too, L1Gic's maintenance INTID.
        let mut gic = awake_gic();
        let mut lrs = [0, pending_lr(27, 0), 0];
        gic.write(R0, ISACTIVER0, 4, 1 << 25);
        gic.sync(0, &mut lrs, SyncSteps::ALL);
        assert_eq!(LrState::of(lrs[0]), LrState::Active);
        assert_eq!(holding_25(&lrs), 1, "lrs {lrs:x?}");
    }

    /// Review 49 R49-3: L1 acknowledged SGI 1 (its LR active) and SPI 48
    /// (at vCPU 1). (c) GICR_ISACTIVER0 and GICD_ISACTIVER1 read them
    /// active once the holders synced, and name the holders for the load
    /// (`read_holders`); (a) L1's ISACTIVER of SGI 1 changes nothing, so
    /// its EOI deactivates it and the next send comes; without the step
    /// (`gic-no-listed-active`) the model's bit outlives the EOI and the
    /// SGI never comes again.
    #[test]
    fn an_isactiver_of_an_acknowledged_sgi_leaves_its_eoi_the_deactivation() {
        let (mut gic, mut lrs0, mut lrs1) = listed_spi_and_sgi();
        let acknowledged = |v: u64| v & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        lrs0[1] = acknowledged(lrs0[1]);
        lrs1[1] = acknowledged(lrs1[1]);
        assert_eq!(gic.read_holders(R0, ISACTIVER0, 4), 0b01);
        assert_eq!(
            gic.read_holders(D, 0x304, 4),
            0b10,
            "SPI 48 listed at vCPU 1"
        );
        assert_eq!(gic.read_holders(D, 0x384, 4), 0b10);
        gic.sync(0, &mut lrs0, SyncSteps::ALL);
        gic.sync(1, &mut lrs1, SyncSteps::ALL);
        assert_eq!(gic.read(R0, ISACTIVER0, 4), 1 << 2, "(c): the LR's state");
        assert_eq!(gic.read(R0, ICACTIVER0, 4), 1 << 2);
        assert_eq!(gic.read(D, 0x304, 4), 1 << 16);
        assert_eq!(gic.read(D, 0x384, 4), 1 << 16);
        assert_eq!(
            gic.read_holders(D, 0x304, 4),
            0b10,
            "SPI 48 active at vCPU 1"
        );
        assert!(gic.holds_active(0) && gic.holds_active(1));
        let mut broken = (gic.clone(), lrs0);
        // (a): the store syncs the holder first (`active_holders`), then
        // finds it active in the LR.
        assert_eq!(gic.active_holders(R0, ISACTIVER0, 1 << 2), 0b01);
        assert_eq!(gic.active_holders(R0, ISACTIVER0, 1 << 3), 0);
        gic.write(R0, ISACTIVER0, 4, 1 << 2);
        assert_eq!(gic.read(R0, ISACTIVER0, 4), 1 << 2);
        // L1's EOI of it (EOImode 0): invalid with the EOI bit, freed.
        lrs0[1] &= !lr::STATE_MASK;
        gic.sync(0, &mut lrs0, SyncSteps::ALL);
        assert_eq!(gic.read(R0, ISACTIVER0, 4), 0);
        assert!(!gic.holds_active(0));
        gic.send_sgi(0, 2 << 24 | 1);
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs0, true, &[]), 1);
        assert_eq!(lrs0[1], pending_lr(2, 0), "delivered again");
        // gic-no-listed-active: the model's bit set, and it stays.
        let no_listed_active = SyncSteps {
            listed_active: false,
            ..SyncSteps::ALL
        };
        let (gic, lrs0) = &mut broken;
        gic.forget_lr_active(0);
        gic.write(R0, ISACTIVER0, 4, 1 << 2);
        lrs0[1] &= !lr::STATE_MASK;
        gic.sync(0, lrs0, no_listed_active);
        assert_eq!(gic.read(R0, ISACTIVER0, 4), 1 << 2);
        gic.send_sgi(0, 2 << 24 | 1);
        assert_eq!(list_forwarded(gic, 0, lrs0, true, &[]), 0, "never again");
    }

    /// Review 49 R49-3 (b): L1 clears active (GICD_ICACTIVER1, from vCPU
    /// 0) SPI 48, which vCPU 1 acknowledged: it reads inactive at once,
    /// vCPU 1 is kicked, and its sync empties the LR; a new edge is then
    /// delivered (to vCPU 0 once re-routed: never while vCPU 1 holds it
    /// active). A pending and active entry becomes pending, still
    /// listed. An SPI active in the model (L1's ISACTIVER of one nobody
    /// holds) is the model's to clear.
    #[test]
    fn an_icactiver_deactivates_the_acknowledged_entry_at_the_holders_sync() {
        let (mut gic, _, mut lrs1) = listed_spi_and_sgi();
        lrs1[1] = lrs1[1] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        gic.sync(1, &mut lrs1, SyncSteps::ALL);
        // Re-routed to vCPU 0 and pending again: not while vCPU 1 holds it.
        gic.write(D, 0x6000 + 48 * 8, 8, 0);
        gic.write(D, 0x204, 4, 1 << 16);
        assert_eq!(gic.forwarded(0).count(), 0, "active at vCPU 1");
        assert_eq!(gic.active_holders(D, 0x384, 1 << 16), 0b10);
        gic.write(D, 0x384, 4, 1 << 16);
        assert_eq!(gic.read(D, 0x304, 4), 0, "cleared");
        assert_eq!(gic.wanting() & 0b10, 0b10, "vCPU 1 is kicked");
        assert!(gic.sync_requested(1));
        let mut broken = (gic.clone(), lrs1);
        assert!(gic.sync(1, &mut lrs1, SyncSteps::ALL), "vCPU 0 to kick");
        assert_eq!(lrs1[1], 0, "deactivated in the LR");
        assert_eq!(gic.wanting(), 0b01);
        assert_eq!(
            gic.forwarded(0).map(|f| f.intid).collect::<Vec<_>>(),
            [48],
            "delivered again"
        );
        // gic-no-listed-active: the entry stays active at vCPU 1.
        let no_listed_active = SyncSteps {
            listed_active: false,
            ..SyncSteps::ALL
        };
        let (gic1, lrs1) = &mut broken;
        gic1.sync(1, lrs1, no_listed_active);
        assert_eq!(LrState::of(lrs1[1]), LrState::Active);
        // Pending and active: the clear leaves it pending, listed.
        let mut lrs0 = [pending_lr(26, 0xa0), 0, 0];
        gic.sync(0, &mut lrs0, SyncSteps::ALL);
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs0, true, &[]), 1);
        lrs0[1] = lrs0[1] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        gic.sync(0, &mut lrs0, SyncSteps::ALL);
        gic.write(D, 0x204, 4, 1 << 16);
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs0, true, &[]), 1);
        assert_eq!(LrState::of(lrs0[1]), LrState::PendingActive);
        gic.write(D, 0x384, 4, 1 << 16);
        gic.sync(0, &mut lrs0, SyncSteps::ALL);
        assert_eq!(lrs0[1], pending_lr(48, 0));
        assert_eq!(gic.read(D, 0x304, 4), 0);
        assert_eq!(gic.read(D, 0x204, 4), 1 << 16, "listed: pending");
        // Nobody holds SPI 49: set and cleared in the model.
        gic.write(D, 0x304, 4, 1 << 17);
        assert_eq!(gic.active_holders(D, 0x384, 1 << 17), 0);
        assert_eq!(gic.read(D, 0x304, 4), 1 << 17);
        gic.write(D, 0x384, 4, 1 << 17);
        assert_eq!(gic.read(D, 0x304, 4), 0);
    }

    /// An ISACTIVER store the holder had not synced before (it
    /// acknowledged the SGI after the store's sync): the model's bit and
    /// the LR's active state are one, merged into the LR at the holder's
    /// sync, so L1's EOI deactivates it. A clear then a set before the
    /// holder's sync: the LR deactivated, the model's bit active. A vCPU
    /// powering off moves what it holds active to the model.
    #[test]
    fn a_model_active_bit_merges_into_the_acknowledged_entry() {
        let (mut gic, mut lrs0, _) = listed_spi_and_sgi();
        gic.write(R0, ISACTIVER0, 4, 1 << 2);
        lrs0[1] = lrs0[1] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        gic.sync(0, &mut lrs0, SyncSteps::ALL);
        assert_eq!(LrState::of(lrs0[1]), LrState::Active);
        assert_eq!(gic.read(R0, ISACTIVER0, 4), 1 << 2);
        let mut eoi = (gic.clone(), lrs0);
        eoi.1[1] &= !lr::STATE_MASK;
        eoi.0.sync(0, &mut eoi.1, SyncSteps::ALL);
        assert_eq!(eoi.0.read(R0, ISACTIVER0, 4), 0, "one state: EOId");
        gic.write(R0, ICACTIVER0, 4, 1 << 2);
        gic.write(R0, ISACTIVER0, 4, 1 << 2);
        gic.sync(0, &mut lrs0, SyncSteps::ALL);
        assert_eq!(lrs0[1], 0);
        assert_eq!(gic.read(R0, ISACTIVER0, 4), 1 << 2, "the model's");
        gic.send_sgi(0, 2 << 24 | 1);
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs0, true, &[]), 0);
        gic.write(R0, ICACTIVER0, 4, 1 << 2);
        assert_eq!(list_forwarded(&mut gic, 0, &mut lrs0, true, &[]), 1);
        lrs0[1] = lrs0[1] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        gic.sync(0, &mut lrs0, SyncSteps::ALL);
        gic.power_off(0, &mut lrs0[1..]);
        assert!(!gic.holds_active(0));
        assert_eq!(gic.read(R0, ISACTIVER0, 4), 1 << 2, "in the model");
    }

    /// An ICACTIVER store of an SPI listed pending at vCPU 1, not yet
    /// acknowledged (the store synced vCPU 1 first): no change on a GIC,
    /// so L1's acknowledgement after it stays active, and the entry stays
    /// listed pending until then.
    #[test]
    fn a_clear_active_of_a_listed_pending_entry_changes_nothing() {
        let (mut gic, _, mut lrs1) = listed_spi_and_sgi();
        assert_eq!(gic.active_holders(D, 0x384, 1 << 16), 0b10);
        gic.sync(1, &mut lrs1, SyncSteps::ALL);
        gic.write(D, 0x384, 4, 1 << 16);
        assert!(!gic.sync_requested(1));
        assert_eq!(gic.read(D, 0x204, 4), 1 << 16, "still pending");
        lrs1[1] = lrs1[1] & !lr::STATE_MASK | lr::ACTIVE << lr::STATE_SHIFT;
        gic.sync(1, &mut lrs1, SyncSteps::ALL);
        assert_eq!(LrState::of(lrs1[1]), LrState::Active);
        assert_eq!(gic.read(D, 0x304, 4), 1 << 16);
    }
}
