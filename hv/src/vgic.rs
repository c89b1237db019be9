//! The virtual GIC: a GICv3 virtual CPU interface through list registers,
//! with the guest's distributor and redistributor accesses trapped and
//! filtered onto the physical GIC.
//!
//! hv owns the physical GIC: every physical interrupt is taken at EL2
//! (HCR_EL2.IMO/FMO), acknowledged and priority-dropped (EOImode=1), and
//! injected into a list register with the HW bit, so that the guest's own
//! deactivation deactivates the physical interrupt. SGIs are virtual: the
//! guest's ICC_SGI1R_EL1 writes trap, hv marks them pending for the target
//! vCPUs and kicks those CPUs with hv's own physical SGI. SPI and PPI
//! configuration (enable, priority, trigger, routing) is forwarded to the
//! hardware, since each vCPU runs on its own physical CPU; what hv needs
//! for itself (group 1 for everything, its SGI, the maintenance PPI, LPIs
//! off) is hidden from or protected against the guest.
//!
//! This module holds the decisions (which register does what, list-register
//! and SGI encodings), tested on the host; `arch::gic` applies them.

use crate::platform::Region;
use crate::sync::{spin_loop, unmodelled, AtomicU16, AtomicU32, AtomicU64, Ordering};

/// The physical SGI hv uses to make another CPU refill its list registers.
/// The sender makes its change visible (a DSB after the raise) before it
/// sends the kick; the target orders its refill after acknowledging it
/// with an ISB (`take_interrupts`).
pub const KICK_SGI: u32 = 0;
/// The architecture's recommended PPI for the maintenance interrupt.
pub const DEFAULT_MAINTENANCE_INTID: u32 = 25;
/// INTIDs from this value up are special (spurious and reserved).
pub const SPECIAL_INTIDS: u32 = 1020;
/// Priority of virtual SGIs until the guest sets one (Linux's default).
pub const DEFAULT_PRIORITY: u8 = 0xa0;

/// What to do with one trapped GIC register access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterAction {
    /// Perform it on the physical GIC at the same address.
    Forward,
    /// Reads come from the hardware, writes are ignored (hv owns it).
    ReadOnly,
    /// Reads come from the hardware with these bits cleared; writes ignored.
    ReadMasked(u64),
    /// Reads return the value; writes are ignored.
    Fixed(u64),
    /// A set/clear register whose SGI bits are virtual and PPI bits physical.
    SgiPpi(SetClear),
    /// IPRIORITYR bytes of SGIs (virtual); `first` is the first SGI covered.
    SgiPriority { first: u8 },
    /// IPRIORITYR bytes of PPIs, forwarded except those of hv's own PPIs;
    /// `first` is the first INTID covered.
    PpiPriority { first: u8 },
    /// GICD_ISACTIVER<n>, GICD_ICACTIVER<n> or GICD_ICPENDR<n> (`op`
    /// ActiveSet, ActiveClear or PendingClear) for the SPIs from `first`
    /// (32 to 992): the SPIs' active state is the list registers' of the
    /// vCPU that holds each (`perform_spi`).
    Spi { op: SetClear, first: u32 },
}

/// The banked SGI/PPI set and clear registers of the SGI frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetClear {
    EnableSet,
    EnableClear,
    PendingSet,
    PendingClear,
    ActiveSet,
    ActiveClear,
}

const GICD_TYPER_LPIS: u64 = 1 << 17;
const GICD_TYPER_MBIS: u64 = 1 << 16;
const GICR_TYPER_PLPIS: u64 = 1 << 0;
const GICR_TYPER_DIRECT_LPI: u64 = 1 << 3;

/// The distributor register at `offset`.
pub fn distributor(offset: u64) -> RegisterAction {
    use RegisterAction::*;
    match offset {
        // CTLR: hv keeps affinity routing and group 1 enabled.
        0x0000 => ReadOnly,
        // TYPER: no LPIs or message-based SPIs without an ITS.
        0x0004 => ReadMasked(GICD_TYPER_LPIS | GICD_TYPER_MBIS),
        0x0008 => ReadOnly,
        // IGROUPR: everything is group 1 (non-secure IRQ).
        0x0080..=0x00ff => Fixed(0xffff_ffff),
        // The first word of each set/clear register covers the private
        // INTIDs: RAZ/WI with affinity routing, as in hardware.
        0x0200..=0x0203 | 0x0280..=0x0283 | 0x0380..=0x0383 => Fixed(0),
        // ISPENDR, ICPENDR, ISACTIVER, ICACTIVER of SPIs: the interrupts hv
        // holds are the business of the vCPU holding them (`perform_spi`).
        // These are 32-bit registers; a misaligned access to them is
        // RAZ/WI.
        0x0204..=0x02ff | 0x0304..=0x03ff if !offset.is_multiple_of(4) => Fixed(0),
        0x0204..=0x027f => Spi {
            op: SetClear::PendingSet,
            first: ((offset - 0x0200) * 8) as u32,
        },
        0x0284..=0x02ff => Spi {
            op: SetClear::PendingClear,
            first: ((offset - 0x0280) * 8) as u32,
        },
        0x0304..=0x037f => Spi {
            op: SetClear::ActiveSet,
            first: ((offset - 0x0300) * 8) as u32,
        },
        0x0384..=0x03ff => Spi {
            op: SetClear::ActiveClear,
            first: ((offset - 0x0380) * 8) as u32,
        },
        // Enable, priority, configuration of SPIs (the first word of
        // each, for private INTIDs, is RAZ/WI in hardware).
        0x0100..=0x01ff | 0x0400..=0x07ff | 0x0c00..=0x0cff => Forward,
        // IROUTER: each vCPU is its physical CPU, so affinities are real.
        0x6100..=0x7fdf => Forward,
        // Identification registers.
        0xffd0..=0xfffc => ReadOnly,
        _ => Fixed(0),
    }
}

/// The redistributor register at `offset` within one CPU's frames (RD
/// frame at 0, SGI frame at 0x10000).
pub fn redistributor(offset: u64) -> RegisterAction {
    use RegisterAction::*;
    match offset {
        0x0000 | 0x0004 => ReadOnly,
        // TYPER: no physical or direct LPIs (low word); affinity (high word).
        0x0008..=0x000b => ReadMasked(GICR_TYPER_PLPIS | GICR_TYPER_DIRECT_LPI),
        0x000c..=0x000f => ReadOnly,
        // WAKER: hv woke the redistributor and keeps it awake.
        0x0014 => ReadOnly,
        0xffd0..=0xfffc => ReadOnly,
        0x1_0080 => Fixed(0xffff_ffff),
        0x1_0100 => SgiPpi(SetClear::EnableSet),
        0x1_0180 => SgiPpi(SetClear::EnableClear),
        0x1_0200 => SgiPpi(SetClear::PendingSet),
        0x1_0280 => SgiPpi(SetClear::PendingClear),
        0x1_0300 => SgiPpi(SetClear::ActiveSet),
        0x1_0380 => SgiPpi(SetClear::ActiveClear),
        0x1_0400..=0x1_040f => SgiPriority {
            first: (offset - 0x1_0400) as u8,
        },
        0x1_0410..=0x1_041f => PpiPriority {
            first: (offset - 0x1_0400) as u8,
        },
        // ICFGR0: SGIs are edge-triggered, read-only.
        0x1_0c00 => Fixed(0xaaaa_aaaa),
        0x1_0c04 => Forward,
        _ => Fixed(0),
    }
}

/// The redistributor frames hv found in one of the device tree's
/// redistributor regions at boot, walking GICR_TYPER from the region's
/// base up to the frame with Last set: `count` frames every `stride`
/// bytes (0x20000, or 0x40000 with GICv4 vLPI frames) from `region.base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedistributorFrames {
    pub region: Region,
    pub stride: u64,
    pub count: u64,
}

/// The RD and SGI frames of one CPU's redistributor: what `redistributor`
/// maps, and the only part of a frame hv lets a guest access reach.
pub const REDISTRIBUTOR_FRAMES_SIZE: u64 = 0x2_0000;
/// The distributor's register frame.
pub const DISTRIBUTOR_SIZE: u64 = 0x1_0000;

/// Where the guest's GIC lies: the distributor, each vCPU's redistributor
/// (RD frame base, by vCPU index), and what hv found in each redistributor
/// region.
#[derive(Clone, Copy, Debug)]
pub struct GicLayout<'a> {
    pub distributor: u64,
    pub redistributors: &'a [u64],
    pub regions: &'a [RedistributorFrames],
}

/// What a trapped guest access at `ipa` is: the register action, and the
/// vCPU whose redistributor it addresses; None when `ipa` is not in the
/// GIC.
///
/// The device tree's redistributor regions may be larger than the frames
/// that exist (QEMU virt: room for 123 CPUs), and nothing answers there:
/// a forwarded access would take an external abort at EL2 (R7-1). So only
/// frames hv found at boot are ever read: a vCPU's own RD and SGI frames
/// as `redistributor` says, those of a CPU hv does not run read-only;
/// everything else in a region (past the last frame, and the vLPI part of
/// a GICv4 frame, which hv does not offer) is reserved space, RAZ/WI as
/// the GICv3 architecture makes reserved redistributor addresses.
pub fn classify(ipa: u64, layout: &GicLayout) -> Option<(RegisterAction, Option<usize>)> {
    if let Some(offset) = ipa
        .checked_sub(layout.distributor)
        .filter(|&o| o < DISTRIBUTOR_SIZE)
    {
        return Some((distributor(offset), None));
    }
    for (owner, &rd) in layout.redistributors.iter().enumerate() {
        if let Some(offset) = ipa
            .checked_sub(rd)
            .filter(|&o| o < REDISTRIBUTOR_FRAMES_SIZE)
        {
            return Some((redistributor(offset), Some(owner)));
        }
    }
    let frames = layout.regions.iter().find(|f| f.region.contains(ipa))?;
    let offset = ipa - frames.region.base;
    let implemented = frames.stride != 0
        && offset / frames.stride < frames.count
        && offset % frames.stride < REDISTRIBUTOR_FRAMES_SIZE;
    Some(if implemented {
        (RegisterAction::ReadOnly, None)
    } else {
        (RegisterAction::Fixed(0), None)
    })
}

/// Whether a guest write to a redistributor's SGI/PPI registers gives its
/// vCPU something to do with its list registers: enable or pending bits
/// of SGIs, or active bits of SGIs and PPIs (`VirtualSgis::set_active`),
/// to place; clear-pending or clear-active bits of SGIs and PPIs, which
/// a remote writer only requests (`VirtualSgis::request_clear`) and the
/// owner applies to what it holds (`apply_remote_clears`). That vCPU, if
/// it is not the writer, must be kicked to refill, as for a sent SGI.
pub fn owner_must_refill(action: RegisterAction, write: Option<u64>) -> bool {
    match (action, write) {
        (RegisterAction::SgiPpi(SetClear::EnableSet | SetClear::PendingSet), Some(value)) => {
            value as u16 != 0
        }
        (
            RegisterAction::SgiPpi(
                SetClear::ActiveSet | SetClear::ActiveClear | SetClear::PendingClear,
            ),
            Some(value),
        ) => value as u32 != 0,
        _ => false,
    }
}

/// Splits a guest write to an SGI/PPI set-clear register into the virtual
/// SGI bits and the bits to write to the hardware (never hv's own PPIs).
pub fn split_sgi_ppi(value: u32, hv_ppis: u32) -> (u16, u32) {
    (value as u16, value & 0xffff_0000 & !hv_ppis)
}

/// Which bytes of a guest write of `size` bytes to the PPI priorities
/// starting at INTID `first` may reach the hardware (bit k: byte k), so the
/// guest cannot demote hv's own PPIs.
pub fn ppi_priority_bytes(first: u8, size: u64, hv_ppis: u32) -> u8 {
    let mut allowed = 0u8;
    for k in 0..size.min(8) as u8 {
        let intid = first as u32 + k as u32;
        if intid < 32 && hv_ppis & (1 << intid) == 0 {
            allowed |= 1 << k;
        }
    }
    allowed
}

/// Register access to the physical GIC (MMIO in hv, a fake in tests).
pub trait GicHardware {
    fn read(&mut self, address: u64, size: u64) -> u64;
    fn write(&mut self, address: u64, size: u64, value: u64);
}

/// GICD_CTLR.RWP: a write to CTLR, ICENABLER or ICACTIVER is not yet
/// visible everywhere.
pub const GICD_CTLR_RWP: u32 = 1 << 31;
/// GICR_CTLR.RWP, bit 3 (GICR_CTLR bit 31 is UWP, upstream write pending,
/// about writes to the distributor, which is not what hv waits for).
pub const GICR_CTLR_RWP: u32 = 1 << 3;
/// How often a register-write-pending or wake-up bit is polled.
pub const GIC_POLLS: u32 = 1_000_000;

const GICR_CTLR: u64 = 0x0000;
const GICR_WAKER: u64 = 0x0014;
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const GICR_IGROUPR0: u64 = 0x1_0080;
const GICR_ISENABLER0: u64 = 0x1_0100;
const GICR_ICENABLER0: u64 = 0x1_0180;
const GICR_ICACTIVER0: u64 = 0x1_0380;
const GICR_IPRIORITYR: u64 = 0x1_0400;

/// Waits until the register-write-pending bit `rwp` of the CTLR register
/// at `ctlr` is clear.
pub fn wait_for_rwp(hw: &mut impl GicHardware, ctlr: u64, rwp: u32) -> Result<(), &'static str> {
    for _ in 0..GIC_POLLS {
        if hw.read(ctlr, 4) as u32 & rwp == 0 {
            return Ok(());
        }
    }
    Err("the GIC never finished a register write (RWP stuck)")
}

/// Brings one CPU's redistributor (RD frame at `rd`) into hv's state:
/// awake, SGIs and PPIs group 1, disabled and inactive (whatever firmware
/// or the CPU's previous guest left), all at the default priority but
/// hv's own (`hv_priority`: the kick SGI and the maintenance PPI), which
/// are then enabled. Priorities and enables are written only once the
/// disables have taken effect (GICR_CTLR.RWP), so nothing the previous
/// owner enabled is still forwarded after this returns.
pub fn init_redistributor(
    hw: &mut impl GicHardware,
    rd: u64,
    maintenance: u32,
    hv_priority: u8,
) -> Result<(), &'static str> {
    let waker = hw.read(rd + GICR_WAKER, 4) as u32;
    hw.write(
        rd + GICR_WAKER,
        4,
        (waker & !GICR_WAKER_PROCESSOR_SLEEP) as u64,
    );
    if !(0..GIC_POLLS).any(|_| hw.read(rd + GICR_WAKER, 4) as u32 & GICR_WAKER_CHILDREN_ASLEEP == 0)
    {
        return Err("the redistributor did not wake up");
    }
    hw.write(rd + GICR_IGROUPR0, 4, u32::MAX as u64);
    hw.write(rd + GICR_ICENABLER0, 4, u32::MAX as u64);
    hw.write(rd + GICR_ICACTIVER0, 4, u32::MAX as u64);
    wait_for_rwp(hw, rd + GICR_CTLR, GICR_CTLR_RWP)?;
    for intid in 0..32u64 {
        hw.write(rd + GICR_IPRIORITYR + intid, 1, DEFAULT_PRIORITY as u64);
    }
    hw.write(
        rd + GICR_IPRIORITYR + KICK_SGI as u64,
        1,
        hv_priority as u64,
    );
    hw.write(
        rd + GICR_IPRIORITYR + maintenance as u64,
        1,
        hv_priority as u64,
    );
    hw.write(
        rd + GICR_ISENABLER0,
        4,
        (1u64 << KICK_SGI) | (1u64 << maintenance),
    );
    Ok(())
}

/// How many active-priority registers (ICC_AP1R<n>_EL1, ICH_AP<g>R<n>_EL2)
/// hold state for `bits` preemption bits: 32 levels each, so one for up
/// to 5 bits, two for 6, four for 7 (and for 8 priority bits, whose
/// lowest bit never preempts).
pub fn active_priority_registers(bits: u32) -> usize {
    match bits {
        0..=5 => 1,
        6 => 2,
        _ => 4,
    }
}

/// The priority bits the physical CPU interface implements:
/// ICC_CTLR_EL1.PRIbits (bits 10:8) plus one.
pub fn physical_priority_bits(icc_ctlr: u64) -> u32 {
    ((icc_ctlr >> 8) & 0b111) as u32 + 1
}

/// The virtual preemption bits the virtual CPU interface implements:
/// ICH_VTR_EL2.PREbits (bits 28:26) plus one.
pub fn virtual_preemption_bits(ich_vtr: u64) -> u32 {
    ((ich_vtr >> 26) & 0b111) as u32 + 1
}

/// Performs one trapped guest access of `size` bytes at `address` as
/// `action` says: a write when `write` holds the value, else a read whose
/// result is returned (masked to the access size). `sgis` is the virtual
/// SGI state of the redistributor's vCPU; `hv_ppis` are hv's own PPIs;
/// `held` the interrupts the writing CPU holds for its vCPU when the
/// register is about them (SPIs, or the PPIs of its own redistributor),
/// else `NothingHeld`.
#[allow(clippy::too_many_arguments)]
pub fn perform(
    action: RegisterAction,
    address: u64,
    size: u64,
    write: Option<u64>,
    sgis: &VirtualSgis,
    hv_ppis: u32,
    held: &mut impl HeldInterrupts,
    hw: &mut impl GicHardware,
) -> u64 {
    let mask = access_mask(size);
    let result = match (action, write) {
        (RegisterAction::Forward, Some(value)) => {
            hw.write(address, size, value);
            0
        }
        // Registers hv keeps: guest writes vanish.
        (
            RegisterAction::ReadOnly | RegisterAction::ReadMasked(_) | RegisterAction::Fixed(_),
            Some(_),
        ) => 0,
        (RegisterAction::Forward | RegisterAction::ReadOnly, None) => hw.read(address, size),
        (RegisterAction::ReadMasked(bits), None) => hw.read(address, size) & !bits,
        (RegisterAction::Fixed(value), None) => value,
        (RegisterAction::SgiPpi(op), Some(value)) => {
            let (virtual_bits, mut physical_bits) = split_sgi_ppi(value as u32, hv_ppis);
            // The owner first applies what other vCPUs asked of it, so
            // this write acts on the state they left.
            held.apply_private_clears(sgis);
            sgis.set_clear(op, virtual_bits);
            match op {
                SetClear::PendingClear | SetClear::ActiveClear => {
                    // The owner clears what it holds (list registers,
                    // backlog, PPIs made active and not placed); another
                    // vCPU's write becomes a request to the owner
                    // (`NothingHeld::clear_private`). SGIs are virtual,
                    // never forwarded.
                    physical_bits = held.clear_private(op, sgis, virtual_bits, physical_bits);
                }
                _ => {}
            }
            if physical_bits != 0 {
                hw.write(address, 4, physical_bits as u64);
            }
            // PPIs made active: physically active (forwarded just above, so
            // the hardware does not signal them while the guest has them
            // active; one hv holds is physically active already), and
            // placed in a list register by the owner's refill
            // (`place_active`) for the guest's deactivation to end. Recorded
            // only after the physical write, so whatever ends an unplaced
            // one (ICC_DIR_EL1 in `clear_private_held`) finds it active.
            if op == SetClear::ActiveSet {
                sgis.set_active(physical_bits);
            }
            0
        }
        // The guest's view: SGIs are virtual (not yet placed, or in this
        // CPU's list registers); a PPI this CPU holds shows its list
        // register's state (or pending, from the backlog), one it does not
        // hold its physical state.
        // PPIs made active and not yet placed read active (R27-4: one in
        // the backlog is masked from the physical view above). Bits a
        // remote clear asked the owner to clear and it has not yet read
        // as cleared, as they will be (`VirtualSgis::requested_clears`).
        (RegisterAction::SgiPpi(op), None) => {
            held.apply_private_clears(sgis);
            let physical = hw.read(address, 4) as u32 & 0xffff_0000 & !hv_ppis;
            let ppis = held.ppis(op);
            let ppi_view = (physical & !ppis.held) | ppis.in_state;
            let unplaced_ppis = match op {
                SetClear::ActiveSet | SetClear::ActiveClear => {
                    sgis.unplaced_active() & 0xffff_0000 & !hv_ppis
                }
                _ => 0,
            };
            let view = ppi_view | unplaced_ppis | sgis.read(op) as u32 | held.sgis(op) as u32;
            (view & !sgis.requested_clears(op)) as u64
        }
        (RegisterAction::PpiPriority { first }, Some(value)) => {
            let allowed = ppi_priority_bytes(first, size, hv_ppis);
            for k in 0..size.min(8) {
                if allowed & (1 << k) != 0 {
                    hw.write(address + k, 1, (value >> (8 * k)) & 0xff);
                }
            }
            0
        }
        (RegisterAction::PpiPriority { .. }, None) => hw.read(address, size),
        // With one vCPU's state, that vCPU is the only one: it holds
        // every SPI made active, and there is nobody to ask (`arch::gic`
        // calls `perform_spi` with every vCPU's state and hv's one table,
        // so only host tests come here). Every such caller shares one
        // table (R41-5: not a fresh one a call): each records only vCPU 0,
        // the writer, so they cannot mislead each other.
        (RegisterAction::Spi { op, first }, write) => {
            #[cfg(not(loom))]
            static ONE_VCPU_HOLDERS: SpiHolders = SpiHolders::new();
            // loom's atomics have no `const fn new`, and no model calls
            // `perform`.
            #[cfg(loom)]
            let one_vcpu_holders = SpiHolders::new();
            #[cfg(not(loom))]
            let one_vcpu_holders = &ONE_VCPU_HOLDERS;
            #[cfg(loom)]
            let one_vcpu_holders = &one_vcpu_holders;
            let only = SpiAccess {
                writer: 0,
                vcpus: core::slice::from_ref(sgis),
                holders: one_vcpu_holders,
                is_on: |_| true,
                lines: SPECIAL_INTIDS,
                route: |_| None,
            };
            perform_spi(op, first, address, size, write, &only, held, hw).0
        }
        (RegisterAction::SgiPriority { first }, write) => {
            let mut read = 0u64;
            for k in 0..size.min(16u64.saturating_sub(first as u64)) {
                let sgi = first + k as u8;
                match write {
                    Some(value) => sgis.set_priority(sgi, (value >> (8 * k)) as u8),
                    None => read |= (sgis.priority(sgi) as u64) << (8 * k),
                }
            }
            read
        }
    };
    result & mask
}

/// What a guest access to the SPIs' pending and active registers needs
/// beyond the writer's own state (`perform_spi`).
#[derive(Debug)]
pub struct SpiAccess<'a, R, P> {
    /// The vCPU making the access (an index into `vcpus`).
    pub writer: usize,
    /// Every vCPU's state, by index.
    pub vcpus: &'a [VirtualSgis],
    /// Every vCPU's SPI holders and their gate, shared by all vCPUs.
    pub holders: &'a SpiHolders,
    /// Whether vCPU k is on (PSCI ON) now; the others hold nothing. A
    /// write asks it inside `holders`' gate, which a CPU_OFF's release
    /// enters after marking its vCPU off.
    pub is_on: P,
    /// The INTIDs the distributor implements (`spi_lines`).
    pub lines: u32,
    /// The vCPU the SPI's GICD_IROUTER<n> names (`route_target`).
    pub route: R,
}

impl<R, P: Fn(usize) -> bool> SpiAccess<'_, R, P> {
    /// The running vCPUs (bit k: vCPU k), the first 32.
    fn running(&self) -> u32 {
        (0..self.vcpus.len().min(32))
            .filter(|&k| (self.is_on)(k))
            .fold(0u32, |r, k| r | 1 << k)
    }

    /// The vCPU holding `intid` if it is not the writer and runs (bit k of
    /// `running`): the one asked about it. Inside the gate.
    fn holder_elsewhere(&self, intid: u32, running: u32) -> Option<usize> {
        self.holders.holder(intid).filter(|&h| {
            h != self.writer && h < self.vcpus.len().min(32) && running & (1 << h) != 0
        })
    }
}

/// Performs a guest access to GICD_ISACTIVER<n>, GICD_ICACTIVER<n>,
/// GICD_ISPENDR<n> or GICD_ICPENDR<n> (`op`; `first`, its first INTID, 32 to 992) from
/// `access.writer`, whose CPU's list registers and backlog `held` are.
/// Returns the value read (masked to `size`), and the vCPUs to kick (bit
/// k: vCPU k), other than the writer, which now have work on their list
/// registers. Bits of INTIDs the distributor does not implement are
/// RAZ/WI (`spi_bits`); a 64-bit access reads and writes the register
/// addressed only (its upper word would be the next register, which GICv3
/// does not allow here).
///
/// Who holds an SPI: hv acknowledged it on the CPU the hardware delivered
/// it to (its routing), and that CPU's list registers or backlog hold it
/// until the guest deactivates it (HW bit); an SPI the guest makes active
/// is held by a vCPU of hv's choice, below. Each SPI hv tracks is held
/// by one vCPU at a time, and every physically active SPI is held by one
/// (an SPI no vCPU holds is physically inactive). `SpiHolders` names it
/// for the other vCPUs, and a write runs alone in its gate, from the
/// power states it reads to its last post: no acknowledgement, no
/// holder's application of a request and no CPU_OFF's release comes in
/// between.
///
/// - Set-active (R27-7): the write is forwarded (the SPI is physically
///   active, so the hardware does not signal it while the guest has it
///   active), and the SPI is recorded for a vCPU to hold
///   (`VirtualSpis::set_active`), whose next refill places it in a list
///   register as active with the HW bit (`place_spis`), so the guest's
///   deactivation (ICC_DIR_EL1, or EOI with EOImode 0) on that vCPU ends
///   the physical active state too. The vCPU: the writer if it holds the
///   SPI already (then the list register holding it is made active); else
///   the one GICD_IROUTER<n> names when IRM = 0 and that vCPU is on;
///   else (IRM = 1, where GICv3 lets the distributor pick any
///   participating PE; an affinity no vCPU has; a vCPU that is off and
///   cannot place it) the writer. Another vCPU is kicked to place it. A
///   set-active withdraws the clear-active requests not yet applied for
///   those SPIs (a clear then a set leaves the SPI active). The SPI's
///   enable and pending state do not matter, as on a GIC: a disabled SPI
///   is made active all the same; a pending one is active and pending
///   (physically: signalled again after the deactivation; held by hv,
///   acknowledged: its list register becomes active and pending,
///   `made_active`). An SPI already physically active that the writer
///   does not hold is active already (R35-1): made active and not yet
///   placed by some vCPU (nothing to do), or held by another vCPU, which
///   hv acknowledged it for; that vCPU (`SpiHolders`) is asked to make
///   its entry active (`VirtualSpis::request_active`), so the SPI never
///   gets a second holder. The gate closes R35-1's two races: an SPI the
///   hardware delivers to a CPU between the write's read of
///   GICD_ISACTIVER<n> and its forwarded write (the SPI got two holders),
///   and a clear-active request the holder takes in the instant of the
///   set-active (the holder ended its entry and ignored the set-active:
///   the SPI ended inactive).
/// - Clear-active: what the writer holds is ended on its CPU
///   (`clear_held`; one made active and not yet placed is deactivated by
///   forwarding the write). The rest may be held by another vCPU, whose
///   list registers only its own CPU can change: the holder, if it is
///   running, is asked (`VirtualSpis::request_clear`) and kicked, and
///   applies it to what it holds before its next refill
///   (`apply_remote_clears`), deactivating it through ICC_DIR_EL1. It is
///   not forwarded: that would leave a HW list register active over an
///   inactive SPI (R27-1 for SPIs). Until the holder applies it, reads
///   show it inactive. Only the holder is asked: another vCPU that
///   acknowledged the SPI later, once the holder's guest ended it, must
///   not apply an older request to its newer activation.
/// - A vCPU that is off holds nothing (its CPU released it all) and is
///   asked nothing (R35-2): its CPU_OFF marks it off and then releases
///   inside the gate, so a write either posted to it before (the release
///   takes the post) or sees it off. Reads count only running vCPUs'
///   posts.
/// - Clear-pending: what the writer holds is withdrawn (`clear_held`),
///   the write is forwarded (it clears a physical pending state only),
///   and the holder, if another running vCPU, is asked to withdraw what
///   it holds.
/// - Reads of the active registers show the guest's view: an SPI made
///   active and not yet placed is active; an SPI the writer holds is
///   active when its list register is (a backlog entry, pending, is
///   not); others show their physical state, less the clear-active
///   requests not yet applied. Reads of the pending registers (R35-4)
///   show, for what the writer holds, its list register's pending state
///   (a backlog entry is pending), and the physical pending state for
///   the rest. An SPI another running vCPU holds shows that vCPU's own
///   view once it is asked (review 41 R41-1: `begin_spi_read`, which a
///   read here is, with nobody asked: the physical state).
/// - Set-pending: an SPI the writer holds pending is pending already and
///   the write has no effect on it; one another running vCPU holds is
///   asked of it (review 44 R44-4: `VirtualSpis::request_pending`; it
///   leaves one its guest has pending, and forwards the write for the
///   rest, `apply_pending_sets`); the rest is forwarded.
/// - The vCPUs returned to kick have requests to apply (or SPIs to
///   place): the caller waits for each to answer (`PrivateView`) before
///   the guest's access ends, so the write takes effect on the holder's
///   state at one point during it (`arch::gic`).
#[allow(clippy::too_many_arguments)]
pub fn perform_spi(
    op: SetClear,
    first: u32,
    address: u64,
    size: u64,
    write: Option<u64>,
    access: &SpiAccess<'_, impl Fn(u32) -> Option<usize>, impl Fn(usize) -> bool>,
    held: &mut impl HeldInterrupts,
    hw: &mut impl GicHardware,
) -> (u64, u32) {
    let mask = access_mask(size);
    let implemented = spi_bits(first, access.lines);
    let w = (first / 32) as usize;
    let Some(own) = access
        .vcpus
        .get(access.writer)
        .filter(|_| w >= 1 && access.writer < 32)
    else {
        return (0, 0);
    };
    let w = w - 1;
    let Some(value) = write else {
        // No holder is asked here: `begin_spi_read` says what a caller
        // that can wait for them does.
        return (
            begin_spi_read(op, first, address, size, access, held, hw).value(),
            0,
        );
    };
    // The writer first applies what other vCPUs asked of it.
    let distributor = address.wrapping_sub(spi_register_offset(op, first));
    held.apply_spi_requests(own, access.holders, distributor, hw);
    let vcpu_count = access.vcpus.len().min(32);
    let bits = (value & mask) as u32 & implemented;
    if bits == 0 {
        return (0, 0);
    }
    let holders = access.holders;
    let _gate = holders.exclusive();
    let running = access.running();
    // The running vCPU other than the writer holding SPI k of the word:
    // the one asked about it.
    let holder_elsewhere = |k: u32| access.holder_elsewhere(first + k, running);
    // Posts to the holders of `bits`: (the vCPUs to kick, the bits
    // posted).
    let ask = |bits: u32, post: &dyn Fn(&VirtualSpis, u32)| {
        let (mut vcpus, mut posted) = (0u32, 0u32);
        for k in (0..32).filter(|k| bits & (1 << k) != 0) {
            if let Some(h) = holder_elsewhere(k) {
                post(&access.vcpus[h].spis, 1 << k);
                vcpus |= 1 << h;
                posted |= 1 << k;
            }
        }
        (vcpus, posted)
    };
    let mut kicks = 0u32;
    match op {
        SetClear::ActiveSet => {
            let held_here = held.held_spis(op, first).held;
            // Already active (R35-1): physically active and not held
            // here, it is either made active and not yet placed (by some
            // vCPU) or held by another vCPU (hv acknowledged it there):
            // the write has no effect on a GIC, so no second holder. The
            // holder is asked to make its entry active
            // (`VirtualSpis::request_active`).
            let unplaced = access.vcpus.iter().fold(0, |r, v| r | v.spis.unplaced(w));
            let already = hw.read(address, 4) as u32 & bits & !held_here;
            // A clear requested earlier and not yet applied is withdrawn
            // (a clear then a set leaves the SPI active).
            for vcpu in access.vcpus.iter().take(32) {
                vcpu.spis.cancel_clear_requests(w, already);
            }
            kicks |= ask(already & !unplaced, &|spis, bit| {
                spis.request_active(w, bit)
            })
            .0;
            let bits = bits & !already;
            // Physically active first, so whatever ends one not yet
            // placed finds it active, before the gate lets an
            // acknowledgement in (`forward_completed`).
            if bits != 0 {
                forward_completed(hw, address, bits);
            }
            let holder = |k: u32| {
                if held_here & (1 << k) != 0 {
                    return access.writer;
                }
                (access.route)(first + k)
                    .filter(|&t| t < vcpu_count && running & (1 << t) != 0)
                    .unwrap_or(access.writer)
            };
            let mut for_vcpu = [0u32; 32];
            for k in (0..32).filter(|k| bits & (1 << k) != 0) {
                let t = holder(k);
                for_vcpu[t] |= 1 << k;
                holders.record(first + k, t);
            }
            for (t, vcpu) in access.vcpus.iter().enumerate().take(32) {
                vcpu.spis.cancel_clear_requests(w, bits);
                vcpu.spis.set_active(w, for_vcpu[t]);
                if t != access.writer && for_vcpu[t] != 0 {
                    kicks |= 1 << t;
                }
            }
        }
        SetClear::ActiveClear => {
            let unplaced = own.spis.clear_unplaced(w, bits) & bits;
            let not_held = held.clear(op, first, bits);
            // Made active by the writer's set-active, never placed, no
            // acknowledgement of hv's behind it: physically active for
            // that write only.
            let deactivate = unplaced & not_held;
            if deactivate != 0 {
                forward_completed(hw, address, deactivate);
            }
            kicks |= ask(not_held & !unplaced, &|spis, bit| {
                spis.request_clear(SetClear::ActiveClear, w, bit)
            })
            .0;
        }
        SetClear::PendingSet => {
            // An SPI the writer holds pending is pending already: the
            // write has no effect on it (forwarded, it would deliver the
            // SPI again once the guest has handled it: R35-4). One another
            // running vCPU holds (physically active: hv acknowledged it
            // there, or a set-active gave it to it) only that vCPU can
            // judge (review 44 R44-4): it is asked (`request_pending`)
            // and kicked, and leaves it if its guest has it pending,
            // else forwards the write (`apply_pending_sets`). The rest,
            // an SPI the writer's list register holds active included
            // (active and pending), is forwarded.
            let pending_here = held.held_spis(op, first).in_state;
            let offset = first as u64 / 8;
            let active = hw.read(distributor + GICD_ISACTIVER + offset, 4) as u32;
            let (asked, posted) = ask(bits & active & !pending_here, &|spis, bit| {
                spis.request_pending(w, bit)
            });
            kicks |= asked;
            let forward = bits & !pending_here & !posted;
            if forward != 0 {
                forward_completed(hw, address, forward);
            }
        }
        SetClear::PendingClear => {
            let forward = held.clear(op, first, bits);
            if forward != 0 {
                forward_completed(hw, address, forward);
            }
            kicks |= ask(bits, &|spis, bit| {
                spis.request_clear(SetClear::PendingClear, w, bit)
            })
            .0;
        }
        // `distributor` never gives other operations here.
        _ => {}
    }
    (0, kicks)
}

/// GICD_ISPENDR<n> and GICD_ISACTIVER<n> from their first register.
const GICD_ISPENDR: u64 = 0x0200;
const GICD_ISACTIVER: u64 = 0x0300;

/// The offset of the distributor's set/clear register `op` for the SPIs
/// from `first` (`distributor`'s inverse).
fn spi_register_offset(op: SetClear, first: u32) -> u64 {
    let base = match op {
        SetClear::PendingSet => GICD_ISPENDR,
        SetClear::PendingClear => 0x0280,
        SetClear::ActiveSet => GICD_ISACTIVER,
        SetClear::ActiveClear => 0x0380,
        SetClear::EnableSet => 0x0100,
        SetClear::EnableClear => 0x0180,
    };
    base + first as u64 / 8
}

/// One vCPU's own view of SPI word `w`: what its reads of GICD_ISPENDR<n>
/// and GICD_ISACTIVER<n> show (the distributor at `distributor`), with
/// the physical active state and the SPIs its CPU holds behind it.
#[derive(Clone, Copy, Debug)]
struct OwnSpiView {
    /// The physical pending state, and the pending state of what this CPU
    /// holds (its list register's; a backlog entry is pending): R35-4,
    /// review 37 R37-1.
    pending: u32,
    /// The physical active state of what this CPU does not hold, the list
    /// register's of what it holds (a backlog entry is not active), and
    /// the SPIs made active for it and not yet placed.
    active: u32,
    physical_active: u32,
    /// The SPIs in its list registers or backlog.
    held: u32,
}

/// `OwnSpiView` of `own`'s vCPU, whose CPU's list registers and backlog
/// `held` are.
fn own_spi_view(
    own: &VirtualSgis,
    w: usize,
    distributor: u64,
    held: &mut impl HeldInterrupts,
    hw: &mut impl GicHardware,
) -> OwnSpiView {
    let first = spi_word_first(w);
    let offset = first as u64 / 8;
    // The active state first: an SPI inactive then, not held by this CPU,
    // is held by nobody, and inside `SpiHolders`' gate, alone
    // (`begin_spi_read`), nothing can make it active (no acknowledgement,
    // no set-active) before its pending state is read just after, which
    // is then the guest's view of it. Read the other way round, another
    // vCPU's guest could acknowledge (in its list register) and end an SPI
    // between the two reads, after a second edge: it read neither pending
    // nor active, pending throughout.
    let physical_active = hw.read(distributor + GICD_ISACTIVER + offset, 4) as u32;
    let physical_pending = hw.read(distributor + GICD_ISPENDR + offset, 4) as u32;
    let pending = held.held_spis(SetClear::PendingSet, first);
    let active = held.held_spis(SetClear::ActiveSet, first);
    OwnSpiView {
        pending: physical_pending | pending.in_state,
        active: (physical_active & !active.held) | active.in_state | own.spis.unplaced(w),
        physical_active,
        held: active.held,
    }
}

/// A guest read of GICD_IS/ICPENDR<n> or GICD_IS/ICACTIVER<n>, begun by
/// `begin_spi_read`: the view known on the reader's CPU, and the SPIs
/// whose state only their holder's CPU knows, to ask of it.
#[derive(Clone, Copy, Debug)]
pub struct SpiRead {
    op: SetClear,
    /// The SPI word read (0: INTIDs 32-63).
    pub word: usize,
    distributor: u64,
    pending: u32,
    active: u32,
    /// Clear-active requests not yet applied (R27-7): inactive.
    requested: u32,
    implemented: u32,
    mask: u64,
    /// By vCPU: the SPIs of the word to ask it about.
    asks: [u32; 32],
}

impl SpiRead {
    /// The vCPUs to ask for their view of `word` (bit k: vCPU k).
    pub fn holders(&self) -> u32 {
        self.asks
            .iter()
            .enumerate()
            .filter(|&(_, &bits)| bits != 0)
            .fold(0, |r, (k, _)| r | 1 << k)
    }

    /// `holder`'s answer: its own (pending, active) read of the word
    /// (`PrivateView::published_spis`), which stands for the SPIs asked of
    /// it; None if it gave none (it went off, which ends what it held, or
    /// never answered), then the distributor's state of them now.
    pub fn answer(&mut self, holder: usize, view: Option<(u32, u32)>, hw: &mut impl GicHardware) {
        let Some(&bits) = self.asks.get(holder) else {
            return;
        };
        let (pending, active) = view.unwrap_or_else(|| {
            let offset = spi_word_first(self.word) as u64 / 8;
            let distributor = self.distributor;
            let pending = hw.read(distributor + GICD_ISPENDR + offset, 4) as u32;
            let active = hw.read(distributor + GICD_ISACTIVER + offset, 4) as u32;
            (pending, active & !self.requested)
        });
        self.pending = (self.pending & !bits) | (pending & bits);
        self.active = (self.active & !bits) | (active & bits);
        self.asks[holder] = 0;
    }

    /// The value read (masked to the access size). SPIs asked of a holder
    /// that has not answered (`answer`) show the physical state of when
    /// the read began.
    pub fn value(&self) -> u64 {
        let view = match self.op {
            SetClear::PendingSet | SetClear::PendingClear => self.pending,
            _ => self.active,
        };
        (view & self.implemented) as u64 & self.mask
    }
}

/// Begins a guest read by `access.writer` of GICD_IS/ICPENDR<n> or
/// GICD_IS/ICACTIVER<n> (`op`, `first` as for `perform_spi`, which
/// describes the state shown): the reader's own view (`own_spi_view`),
/// the SPIs made active and not yet placed by any running vCPU (active),
/// the clear-active requests not yet applied (inactive), and, for each
/// SPI physically active that another running vCPU holds, that vCPU to
/// ask (review 41 R41-1). hv acknowledged such an SPI there, so it is
/// physically active from then until that vCPU's guest deactivates it,
/// but its guest may have it only pending (in a list register or the
/// backlog, not yet acknowledged), or may have ended it (an EOI entry
/// not yet ended by hv): only that vCPU's CPU sees which, and a GIC shows
/// pending and not active, or neither (a Linux guest's `synchronize_irq`
/// waits for the SPI to read inactive). The caller asks each holder
/// (`ask_spi_views`: `PrivateView::request_spis`, a kick, a wait), outside
/// the gate (the holder's exit enters it), gives the answers to
/// `SpiRead::answer` and returns `SpiRead::value`. The read of each SPI
/// takes effect when its state was read: at the start for those the
/// reader knows, at the holder's answer for the others, all during the
/// guest's access. A holder that ended the SPI before it answers, and
/// another vCPU's acknowledgement of it since, give the distributor's
/// state (active, while that vCPU's guest may have it only pending): the
/// next read asks the new holder.
///
/// The start runs inside `SpiHolders`' gate, alone, so the table names
/// the holder of every SPI physically active (no acknowledgement is
/// between the hardware's activation and its record), and no SPI is
/// acknowledged between the reads of the active and the pending state
/// (`own_spi_view`).
///
/// Except for a read of the active registers with no SPI of the word
/// held by another vCPU (review 44 R44-2: Linux's `synchronize_irq` polls
/// them; with one vCPU, or nothing of the word held elsewhere, the common
/// case): one read of GICD_ISACTIVER<n>, outside the gate. Every SPI
/// physically active is held by some vCPU (in its list registers or
/// backlog, or made active and not placed): so when every one read
/// active is the reader's own or not placed, every other SPI of the word
/// was inactive at that read, held by nobody, which is its guest view
/// then (whatever an acknowledgement does next); the reader's own list
/// registers change only on its CPU, and an SPI made active and not
/// placed is active for every vCPU. An SPI made active meanwhile by a
/// set-active (read physically active before its unplaced record) or
/// acknowledged by another CPU (physically active, not the reader's)
/// sends the read the gated way. A read of the pending registers always
/// takes the gate: an SPI pending and inactive at the active read may be
/// acknowledged by another CPU before the pending read, which would show
/// it not pending while that vCPU's guest has it pending (the loom model
/// `hv_spi_view` checks both).
pub fn begin_spi_read(
    op: SetClear,
    first: u32,
    address: u64,
    size: u64,
    access: &SpiAccess<'_, impl Fn(u32) -> Option<usize>, impl Fn(usize) -> bool>,
    held: &mut impl HeldInterrupts,
    hw: &mut impl GicHardware,
) -> SpiRead {
    let mask = access_mask(size);
    let distributor = address.wrapping_sub(spi_register_offset(op, first));
    let mut read = SpiRead {
        op,
        word: 0,
        distributor,
        pending: 0,
        active: 0,
        requested: 0,
        implemented: spi_bits(first, access.lines),
        mask,
        asks: [0; 32],
    };
    let w = (first / 32) as usize;
    let Some(own) = access
        .vcpus
        .get(access.writer)
        .filter(|_| (1..=SPI_WORDS).contains(&w) && access.writer < 32)
    else {
        read.implemented = 0;
        return read;
    };
    let w = w - 1;
    read.word = w;
    // The reader first applies what other vCPUs asked of it.
    held.apply_spi_requests(own, access.holders, distributor, hw);
    // Only running vCPUs' posts count: an off vCPU holds nothing (R35-2).
    // (SPIs made active and not placed, clear-active requests not yet
    // applied.)
    let posted = |running: u32| {
        let counted = access
            .vcpus
            .iter()
            .take(32)
            .enumerate()
            .filter(|&(k, _)| k == access.writer || running & (1 << k) != 0);
        let unplaced = counted.clone().fold(0, |r, (_, v)| r | v.spis.unplaced(w));
        let requested = counted.fold(0, |r, (_, v)| r | v.spis.requested_clears(w));
        (unplaced, requested)
    };
    if matches!(op, SetClear::ActiveSet | SetClear::ActiveClear) {
        let physical_active = hw.read(distributor + GICD_ISACTIVER + first as u64 / 8, 4) as u32;
        let (unplaced, requested) = posted(access.running());
        let here = held.held_spis(SetClear::ActiveSet, first);
        if physical_active & !here.held & !unplaced & read.implemented == 0 {
            read.requested = requested;
            read.active = ((physical_active & !here.held) | here.in_state | unplaced) & !requested;
            return read;
        }
    }
    let _gate = access.holders.exclusive();
    let mine = own_spi_view(own, w, distributor, held, hw);
    let running = access.running();
    let (unplaced, requested) = posted(running);
    read.requested = requested;
    read.pending = mine.pending;
    read.active = (mine.active | unplaced) & !read.requested;
    let elsewhere = mine.physical_active & !mine.held & !unplaced & read.implemented;
    for k in (0..32).filter(|k| elsewhere & (1 << k) != 0) {
        if let Some(h) = access.holder_elsewhere(first + k, running) {
            read.asks[h] |= 1 << k;
        }
    }
    read
}

/// Writes `bits` to the distributor register at `address` and reads it
/// back (review 41 R41-3): a read of the distributor returns only once the
/// write before it has reached it (Device-nGnRE), so the next writer in
/// the gate, on another CPU, reads the state this write made, not the one
/// before it. What stays outside any barrier: GICv3 does not promise that
/// the CPU interface has withdrawn an SPI it was offered once a
/// GICD_ISACTIVER/ICPENDR write has completed (hv/README.md).
fn forward_completed(hw: &mut impl GicHardware, address: u64, bits: u32) {
    hw.write(address, 4, bits as u64);
    hw.read(address, 4);
}

/// Physical interrupts acknowledged for a vCPU but not yet in a list
/// register. Each INTID is there at most once (`take_interrupts` never
/// queues one twice), so 1024 entries cannot overflow.
pub type Backlog = arrayvec::ArrayVec<u16, 1024>;

/// A CPU's list registers (ICH_LR<n>_EL2, ICH_ELRSR_EL2, ICH_HCR_EL2.UIE).
pub trait ListRegisters {
    fn count(&self) -> usize;
    /// Bit n set: list register n holds no interrupt.
    fn empty(&mut self) -> u32;
    fn read(&mut self, n: usize) -> u64;
    fn write(&mut self, n: usize, value: u64);
    /// Ask for a maintenance interrupt when at most one entry is valid.
    fn set_underflow_interrupt(&mut self, on: bool);
}

/// The fewest list registers hv can work with: the underflow maintenance
/// interrupt (ICH_MISR_EL2.U) is asserted while at most one entry is
/// valid, so with a single list register it would be asserted as soon as
/// it is asked for, and no guest instruction would run between the
/// maintenance interrupts.
pub const MIN_LIST_REGISTERS: usize = 2;
/// ICH_LR0_EL2 to ICH_LR15_EL2.
pub const MAX_LIST_REGISTERS: usize = 16;

/// A CPU's list registers: how many it implements (ICH_VTR_EL2.ListRegs
/// plus one) and how many of them hv fills (`used`, at most `implemented`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListRegisterCount {
    pub implemented: usize,
    pub used: usize,
}

/// How many list registers the CPU implements and hv uses: what
/// ICH_VTR_EL2 reports, at most `limit` (`hv.list-registers=`); an error
/// if that is fewer than `MIN_LIST_REGISTERS`.
pub fn list_register_count(
    ich_vtr: u64,
    limit: Option<usize>,
) -> Result<ListRegisterCount, &'static str> {
    let implemented = ((ich_vtr & 0x1f) + 1) as usize;
    if implemented < MIN_LIST_REGISTERS {
        return Err("the GIC has a single list register; hv needs at least 2 (see vgic::MIN_LIST_REGISTERS)");
    }
    let implemented = implemented.min(MAX_LIST_REGISTERS);
    let used = implemented.min(limit.unwrap_or(MAX_LIST_REGISTERS));
    if used < MIN_LIST_REGISTERS {
        return Err(
            "hv.list-registers asks for fewer than 2 list registers (see vgic::MIN_LIST_REGISTERS)",
        );
    }
    Ok(ListRegisterCount { implemented, used })
}

/// Empties every list register the CPU implements, not only those hv
/// uses (review 8 H3): they are UNKNOWN after reset and firmware or a
/// previous OS may have left entries, and the virtual CPU interface shows
/// every implemented one to the guest (a stale valid entry is a phantom
/// interrupt) and counts them all for the underflow condition
/// (ICH_MISR_EL2.U: two stale entries and it never holds).
pub fn clear_list_registers(lrs: &mut impl ListRegisters, count: ListRegisterCount) {
    for n in 0..count.implemented.min(MAX_LIST_REGISTERS) {
        lrs.write(n, 0);
    }
}

/// Before a CPU powers off: the physical interrupts hv acknowledged for
/// its vCPU (queued in `backlog`, or in a used list register with the HW
/// bit) would stay active for good, so they are deactivated, as are the
/// PPIs the guest made active that no list register holds yet (`sgis`:
/// its ISACTIVER0 write made them physically active), each once: one
/// with a backlog entry too was deactivated for that entry (R27-5), an
/// SPI with a list register too for that list register (R35-3). Then
/// every implemented list register is emptied (`clear_list_registers`).
/// Clears other vCPUs requested are applied first.
///
/// The caller marked the vCPU off first; the rest runs inside `holders`'
/// gate, alone, so a guest write to an SPI register (`perform_spi`, also
/// alone there) either posted to this vCPU before (taken here) or sees it
/// off and posts nothing to it: nothing is left in an off vCPU's words,
/// and no other CPU ever takes them (review 37 R37-2: another CPU that
/// took them over could take a post meant for the vCPU once it was on
/// again).
///
/// Set-pendings other vCPUs asked of it (review 44 R44-4) are applied as
/// its own CPU would before the release (`apply_pending_sets`): left for
/// an SPI pending in its list register or backlog (which the release
/// then withdraws with the rest), else forwarded to the distributor at
/// `distributor`.
pub fn release_list_registers(
    cpu: &mut (impl PhysicalCpuInterface + ListRegisters),
    sgis: &VirtualSgis,
    holders: &SpiHolders,
    backlog: &mut Backlog,
    count: ListRegisterCount,
    distributor: u64,
    hw: &mut impl GicHardware,
) {
    apply_remote_clears(cpu, sgis, holders, backlog);
    let _gate = holders.exclusive();
    // The physical activations the used list registers stand for, each
    // deactivated once at the end.
    let used = count.used.min(MAX_LIST_REGISTERS);
    let mut in_lrs = arrayvec::ArrayVec::<u32, MAX_LIST_REGISTERS>::new();
    for n in 0..used {
        let lr = cpu.read(n);
        if let Some(physical) = lr_physical(lr).filter(|_| lr_still_holds_physical(lr)) {
            in_lrs.push(physical);
        }
    }
    // SPIs made active for this vCPU and not placed: physically active
    // through the set-active alone unless a backlog entry or a list
    // register holds them too (deactivated for that entry just below,
    // or for the list register at the end: R35-3).
    sgis.spis.take_to_place();
    sgis.spis.take_to_set_pending();
    let mut set_pending = [0u32; SPI_WORDS];
    for (w, forward) in set_pending.iter_mut().enumerate() {
        // Every word swapped, also when it looks empty: no writer posts
        // to this vCPU after it (R35-2). Requests posted since the clears
        // above concern only what is deactivated here anyway (but the
        // set-pendings, forwarded below); an off vCPU keeps none.
        let (unplaced, pending_sets) = sgis.spis.take_word(w).unwrap_or_default();
        let first = spi_word_first(w);
        if pending_sets != 0 {
            let pending_here = held_spis_on(cpu, backlog, SetClear::PendingSet, first).in_state;
            *forward = pending_sets & !pending_here;
        }
        for intid in (0..32u32)
            .filter(|k| unplaced & (1 << k) != 0)
            .map(|k| first + k)
        {
            if !backlog.contains(&(intid as u16)) && !in_lrs.contains(&intid) {
                cpu.deactivate(intid);
            }
        }
    }
    let mut drained = 0u32;
    for intid in backlog.drain(..) {
        if (16..32).contains(&intid) {
            drained |= 1 << intid;
        }
        cpu.deactivate(intid as u32);
    }
    let unplaced = sgis.take_active() & !drained;
    for ppi in (16..32u32).filter(|i| unplaced & (1 << i) != 0) {
        cpu.deactivate(ppi);
    }
    for physical in in_lrs {
        cpu.deactivate(physical);
    }
    for (w, &forward) in set_pending.iter().enumerate().filter(|(_, &f)| f != 0) {
        let offset = spi_word_first(w) as u64 / 8;
        forward_completed(hw, distributor + GICD_ISPENDR + offset, forward);
    }
    // The deactivations visible in the distributor before a writer reads
    // it inside the gate.
    cpu.synchronize();
    clear_list_registers(cpu, count);
}

/// The physical INTID whose activation by hv `lr` stands for: with the
/// HW bit its pINTID; a software entry with the EOI bit is a PPI hv
/// acknowledged whose list register had to drop the HW bit
/// (`made_active`): its vINTID.
fn lr_physical(lr: u64) -> Option<u32> {
    if lr & LR_HW != 0 {
        Some(((lr >> 32) & 0x1fff) as u32)
    } else if lr & LR_EOI != 0 {
        Some((lr & 0xffff_ffff) as u32)
    } else {
        None
    }
}

/// Whether the physical activation `lr` stands for (`lr_physical`) is
/// still hv's to end: a HW entry's ends with the guest's deactivation of
/// it (so only while it is valid); an EOI entry's until hv deactivates it
/// (`end_eoi_list_registers`), even once the guest's EOI made it invalid.
fn lr_still_holds_physical(lr: u64) -> bool {
    lr & LR_HW == 0 || lr >> LR_STATE_SHIFT != 0
}

/// The list registers whose software PPI entry the guest has ended
/// (invalid, HW clear, EOI set: ICH_EISR_EL2, the EOI maintenance
/// interrupt): hv deactivates the physical PPI it acknowledged for that
/// entry and empties the list register (which ICH_ELRSR_EL2 does not show
/// empty until then). Computed from the list registers themselves, as
/// ICH_EISR_EL2 defines it. The caller makes the deactivations visible
/// (`synchronize`), once for all of them (`take_interrupts`).
fn end_eoi_list_registers(cpu: &mut (impl PhysicalCpuInterface + ListRegisters)) {
    let count = cpu.count().min(MAX_LIST_REGISTERS);
    for n in 0..count {
        let lr = cpu.read(n);
        if lr >> LR_STATE_SHIFT == 0 && lr & LR_HW == 0 && lr & LR_EOI != 0 {
            cpu.write(n, 0);
            cpu.deactivate((lr & 0xffff_ffff) as u32);
        }
    }
}

const LR_PENDING: u64 = 1 << 62;
const LR_HW: u64 = 1 << 61;
/// ICH_LR<n>_EL2.EOI (bit 41, with HW clear): an EOI maintenance
/// interrupt once the guest's deactivation makes the entry invalid.
const LR_EOI: u64 = 1 << 41;

/// Moves pending virtual SGIs and the backlog (in arrival order) into free
/// list registers. An SGI already in a list register is marked pending
/// there instead (an INTID must never be in two). With every list
/// register in use, a waiting interrupt of higher priority displaces a
/// pending one of lower priority (`evict_for_higher_priority`). If
/// anything is left while every list register is in use, the underflow
/// maintenance interrupt will ask for another refill once the guest has
/// consumed all but one of them.
///
/// The underflow interrupt is never asked for while a list register is
/// free: it is asserted whenever at most one entry is valid, so asking
/// with free registers would raise it at once, with nothing consumed.
/// That happens when another CPU raises an SGI for this vCPU after the
/// SGIs were taken above; that CPU's kick (`KICK_SGI`, sent after the
/// pending bit is visible) brings this CPU back to refill instead.
pub fn fill_list_registers(
    lrs: &mut impl ListRegisters,
    sgis: &VirtualSgis,
    backlog: &mut Backlog,
    priority: impl Fn(u32) -> u8,
) {
    let count = lrs.count().min(MAX_LIST_REGISTERS);
    let mut empty = lrs.empty() & ((1u32 << count) - 1);
    place_active(lrs, sgis, &mut empty, count, &priority);
    place_spis(lrs, &sgis.spis, backlog, &mut empty, count, &priority);
    while let Some(sgi) = sgis.take() {
        let holding = (0..count).find(|&n| {
            empty & (1 << n) == 0 && {
                let lr = lrs.read(n);
                lr & 0xffff_ffff == sgi as u64 && lr & LR_HW == 0
            }
        });
        if let Some(n) = holding {
            let lr = lrs.read(n);
            lrs.write(n, lr | LR_PENDING);
            continue;
        }
        if empty == 0 {
            sgis.put_back(sgi);
            break;
        }
        let n = empty.trailing_zeros() as usize;
        empty &= !(1 << n);
        lrs.write(n, list_register(sgi as u32, None, sgis.priority(sgi)));
    }
    if !backlog.is_empty() {
        // The INTIDs in list registers: two list registers with one vINTID
        // are UNPREDICTABLE (GICv3, ICH_LR<n>_EL2). A backlog entry with
        // one of them is merged into that list register: dropped, its
        // physical activation left as it is, for the guest's deactivation
        // of that list register (HW bit) to end. It comes from something hv
        // cannot see (another vCPU's GICD_ICACTIVER, out of `clear_held`'s
        // reach) deactivating the activation that list register stands
        // for; the interrupt fired again and `take_interrupts` queued it.
        //
        // Kept back instead, it would wait for that list register while
        // others are free, with nothing to bring hv back (no underflow
        // interrupt with a free list register, no EOI maintenance for a
        // HW entry), and would then be placed with its activation already
        // ended by the guest's deactivation (review 8 H5). Merged, the
        // guest sees it once, as a GIC merges a pending interrupt that
        // fires again; for an edge interrupt the guest had already taken,
        // that one re-delivery is merged away (hv's choice: the guest's
        // own ICACTIVER write broke the state), and a level interrupt
        // still asserted fires again after the deactivation.
        let mut in_lrs = arrayvec::ArrayVec::<u32, MAX_LIST_REGISTERS>::new();
        for n in 0..count {
            if empty & (1 << n) == 0 {
                in_lrs.push((lrs.read(n) & 0xffff_ffff) as u32);
            }
        }
        let mut kept = 0;
        for i in 0..backlog.len() {
            let intid = backlog[i] as u32;
            if in_lrs.contains(&intid) {
                continue;
            }
            if empty != 0 {
                let n = empty.trailing_zeros() as usize;
                empty &= !(1 << n);
                lrs.write(n, list_register(intid, Some(intid), priority(intid)));
                in_lrs.push(intid);
            } else {
                backlog[kept] = backlog[i];
                kept += 1;
            }
        }
        backlog.truncate(kept);
    }
    if empty == 0 {
        evict_for_higher_priority(lrs, count, sgis, backlog, &priority);
    }
    let waiting = !backlog.is_empty()
        || sgis.has_ready()
        || sgis.unplaced_active() != 0
        || sgis.spis.has_unplaced();
    lrs.set_underflow_interrupt(waiting && empty == 0);
}

/// Places the private interrupts the guest made active (GICR_ISACTIVER0,
/// `VirtualSgis::set_active`), first in each fill: the guest's own
/// deactivation (ICC_EOIR1_EL1/ICC_DIR_EL1 on its virtual CPU interface)
/// ends only what a list register holds. One a list register already holds
/// is made active there (`made_active`). Otherwise it takes a free list
/// register, active: an SGI without the HW bit, and active and pending if
/// it was pending and enabled; a PPI with the HW bit (the guest's write was
/// forwarded, so the physical PPI is active too and the guest's
/// deactivation ends it). A backlog entry for that PPI is merged into it by
/// the backlog pass below (`fill_list_registers`). With no list register
/// free it waits for the next fill (the underflow interrupt is asked for);
/// a guest that deactivates it before then deactivates nothing, as a
/// deactivation of an interrupt no list register holds does (EOIcount).
fn place_active(
    lrs: &mut impl ListRegisters,
    sgis: &VirtualSgis,
    empty: &mut u32,
    count: usize,
    priority: &impl Fn(u32) -> u8,
) {
    let active = sgis.take_active();
    let mut unplaced = 0u32;
    for intid in (0..32u32).filter(|i| active & (1 << i) != 0) {
        let holding = (0..count)
            .find(|&n| *empty & (1 << n) == 0 && lrs.read(n) & 0xffff_ffff == intid as u64);
        if let Some(n) = holding {
            let lr = lrs.read(n);
            lrs.write(n, made_active(lr));
            continue;
        }
        if *empty == 0 {
            unplaced |= 1 << intid;
            continue;
        }
        let n = empty.trailing_zeros() as usize;
        *empty &= !(1 << n);
        let lr = if intid < 16 {
            let sgi = intid as u8;
            let state = if sgis.take_sgi(sgi) {
                LR_STATE_ACTIVE | LR_STATE_PENDING
            } else {
                LR_STATE_ACTIVE
            };
            list_register_in(state, intid, None, sgis.priority(sgi))
        } else {
            list_register_in(LR_STATE_ACTIVE, intid, Some(intid), priority(intid))
        };
        lrs.write(n, lr);
    }
    if unplaced != 0 {
        sgis.put_back_active(unplaced);
    }
}

/// Places the SPIs made active for this vCPU to hold (`perform_spi`),
/// after the private ones. One a list register holds is made active there
/// (`made_active`); one hv acknowledged and queued in the backlog takes a
/// free list register as active and pending, its backlog entry withdrawn
/// (`made_active` of its pending HW entry: a software entry with the EOI
/// bit, so the acknowledged instance stays pending after the guest's
/// deactivation and hv deactivates the physical SPI once the guest has
/// ended that too); any other takes a free list register as active with
/// the HW bit (the set-active made it physically active, so the guest's
/// deactivation ends it). With no list register free it waits for the
/// next fill (the underflow interrupt is asked for), reading active.
fn place_spis(
    lrs: &mut impl ListRegisters,
    spis: &VirtualSpis,
    backlog: &mut Backlog,
    empty: &mut u32,
    count: usize,
    priority: &impl Fn(u32) -> u8,
) {
    let words = spis.take_to_place();
    for w in (0..SPI_WORDS).filter(|&w| words & (1 << w) != 0) {
        let bits = spis.active[w].take();
        let first = spi_word_first(w);
        let mut unplaced = 0u32;
        for k in (0..32u32).filter(|k| bits & (1 << k) != 0) {
            let intid = first + k;
            let holding = (0..count)
                .find(|&n| *empty & (1 << n) == 0 && lrs.read(n) & 0xffff_ffff == intid as u64);
            if let Some(n) = holding {
                let lr = lrs.read(n);
                lrs.write(n, made_active(lr));
                continue;
            }
            if *empty == 0 {
                unplaced |= 1 << k;
                continue;
            }
            let n = empty.trailing_zeros() as usize;
            *empty &= !(1 << n);
            let lr = match backlog.iter().position(|&e| e as u32 == intid) {
                Some(i) => {
                    backlog.remove(i);
                    made_active(list_register(intid, Some(intid), priority(intid)))
                }
                None => list_register_in(LR_STATE_ACTIVE, intid, Some(intid), priority(intid)),
            };
            lrs.write(n, lr);
        }
        if unplaced != 0 {
            spis.put_back(w, unplaced);
        }
    }
}

/// With every list register in use: while an interrupt waits (a ready SGI
/// or a backlog entry) of higher priority (a lower value) than some list
/// register that is only pending, that list register's interrupt goes
/// back (an SGI to its pending bit, a physical interrupt to the front of
/// the backlog, still acknowledged) and the waiting one takes its place,
/// the lowest-priority such list register first (review 8 H4).
///
/// A GIC always signals the highest-priority pending interrupt. Without
/// this, list registers full of pending interrupts the guest masks (by
/// ICV_PMR_EL1 or its running priority, e.g. Linux's pseudo-NMIs) would
/// keep a higher-priority one (the pseudo-NMI, a backtrace IPI) out until
/// the guest unmasks: the underflow interrupt needs entries consumed. Its
/// arrival brings hv here (the physical interrupt's exit, or the SGI's
/// kick), so one pass at each fill is enough. Active list registers stay
/// (the guest is handling them); equal priorities keep arrival order.
fn evict_for_higher_priority(
    lrs: &mut impl ListRegisters,
    count: usize,
    sgis: &VirtualSgis,
    backlog: &mut Backlog,
    priority: &impl Fn(u32) -> u8,
) {
    // Each eviction places a strictly higher priority in a list register,
    // so the sum of their priorities falls: at most one per list register
    // and waiting interrupt; the bound only makes that visible.
    for _ in 0..count * 2 {
        let in_lrs: arrayvec::ArrayVec<u64, MAX_LIST_REGISTERS> =
            (0..count).map(|n| lrs.read(n)).collect();
        let held = |intid: u32| in_lrs.iter().any(|&lr| lr & 0xffff_ffff == intid as u64);
        // The highest-priority waiting interrupt no list register holds
        // (an SGI raised since the merge above may be active in one; it
        // is marked pending there by the next fill, its kick's).
        let mut best: Option<(u8, Waiting)> = None;
        let ready = sgis.ready();
        for sgi in (0..16u8).filter(|&sgi| ready & (1 << sgi) != 0) {
            let p = sgis.priority(sgi);
            if best.is_none_or(|(b, _)| p < b) && !held(sgi as u32) {
                best = Some((p, Waiting::Sgi(sgi)));
            }
        }
        for (i, &entry) in backlog.iter().enumerate() {
            let p = priority(entry as u32);
            if best.is_none_or(|(b, _)| p < b) && !held(entry as u32) {
                best = Some((p, Waiting::Backlog(i)));
            }
        }
        let Some((best_priority, waiting)) = best else {
            return;
        };
        // The lowest-priority list register that is only pending.
        let mut victim: Option<(u8, usize, u64)> = None;
        for (n, &lr) in in_lrs.iter().enumerate() {
            let lr_priority = (lr >> 48) as u8;
            if lr >> LR_STATE_SHIFT == LR_STATE_PENDING
                && lr_priority > best_priority
                && victim.is_none_or(|(v, _, _)| lr_priority > v)
            {
                victim = Some((lr_priority, n, lr));
            }
        }
        let Some((_, n, evicted)) = victim else {
            return;
        };
        let evicted_intid = (evicted & 0xffff_ffff) as u32;
        let evicted_physical = lr_physical(evicted).is_some();
        if evicted_physical && matches!(waiting, Waiting::Sgi(_)) && backlog.is_full() {
            // Cannot happen (each INTID is queued at most once, and this
            // one, in a list register, is not), but never panic for it.
            return;
        }
        let placed = match waiting {
            Waiting::Sgi(sgi) => {
                if !sgis.take_sgi(sgi) {
                    // Withdrawn meanwhile (another vCPU's ICPENDR0).
                    continue;
                }
                list_register(sgi as u32, None, best_priority)
            }
            Waiting::Backlog(i) => {
                let intid = backlog.remove(i) as u32;
                list_register(intid, Some(intid), best_priority)
            }
        };
        if evicted_physical {
            backlog.insert(0, evicted_intid as u16);
        } else {
            sgis.put_back(evicted_intid as u8);
        }
        lrs.write(n, placed);
    }
}

/// A waiting interrupt `evict_for_higher_priority` may place.
#[derive(Clone, Copy)]
enum Waiting {
    Sgi(u8),
    /// The backlog entry at this index.
    Backlog(usize),
}

/// The physical CPU interface as hv drives it at EL2, with EOImode=1
/// (priority drop and deactivation apart).
pub trait PhysicalCpuInterface {
    /// ICC_IAR1_EL1: the INTID of the highest-priority pending interrupt,
    /// now active (1020-1023: nothing to take).
    fn acknowledge(&mut self) -> u32;
    /// ICC_EOIR1_EL1: the priority drop.
    fn drop_priority(&mut self, intid: u32);
    /// ICC_DIR_EL1: the deactivation.
    fn deactivate(&mut self, intid: u32);
    /// A DSB (the acknowledgements and deactivations made so far visible
    /// to the GIC's other observers: GICv3 does not guarantee it for an
    /// acknowledgement before one) and an ISB
    /// (context synchronization), which must also keep the compiler from
    /// moving memory accesses across them: see `take_interrupts`.
    fn synchronize(&mut self);
}

/// Takes the physical interrupts pending at EL2 for this vCPU: the
/// guest's go to the backlog (each stays active until the guest
/// deactivates its list register, HW bit set), hv's own kick SGI is done
/// with at once, then the list registers are refilled.
///
/// The maintenance interrupt (`maintenance`) is deactivated only after the
/// refill. It is level-sensitive: its line is high while the underflow
/// condition holds (ICH_HCR_EL2.UIE with at most one valid list register),
/// and only the refill changes that. Deactivated earlier, it is pending
/// again at once, the next acknowledge returns it, and this loop never
/// ends: that was the intermittent 4-vCPU hang (a CPU stuck at EL2, its
/// guest silent, as if idle with its timer lost).
///
/// Between the acknowledge loop and the refill comes an ISB
/// (`synchronize`, review 8 H1). A sender raises an SGI, executes a DSB
/// and sends the kick; the refill must see that raise once ICC_IAR1_EL1
/// has returned the kick. But an MRS of ICC_IAR1_EL1 is no memory access:
/// no memory ordering (not the acquire of `VirtualSgis::take`) keeps the
/// refill's loads of the pending bits after it, and a CPU may perform them
/// early, see the raise missing, and consume the kick with the SGI left
/// pending and (list registers free) no underflow interrupt asked for,
/// until some unrelated exit. Every value IAR returned here fed a
/// conditional branch before the loop ended (`intid >= SPECIAL_INTIDS`);
/// the instructions after an ISB are fetched only once it completes, which
/// it does not before those branches are resolved, so the refill's loads
/// come after the IAR reads (the "ctrl+ISB" ordering of the Arm memory
/// model, Arm ARM B2; Linux's GICv3 driver relies on the same with the ISB
/// after its EOIR write, whose value is IAR's). One ISB per exit covers
/// every kick the loop took. It must also be a compiler barrier: the IAR
/// read is an asm block that claims no memory access.
///
/// A physical interrupt acknowledged while a list register still holds its
/// INTID is merged into that list register by the refill right after
/// (`fill_list_registers` says why), so no entry is ever left waiting for
/// a list register.
///
/// The acknowledge loop runs inside `holders`' gate, shared, and records
/// this vCPU (`vcpu`) as the holder of each SPI it acknowledges: a guest
/// write to the SPI's registers (exclusive) then sees it either pending
/// and not active, or active and held here, never in between (R35-1's
/// first race: an SPI delivered between a set-active's read of the
/// distributor and its forwarded write got two holders). The gate's
/// acquire is a load the loop's branches depend on, and `synchronize`
/// (its ISB) follows it, so no acknowledgement is performed before the
/// gate is held; the `synchronize` after the loop (its DSB) makes the
/// acknowledgements visible in the distributor before the gate is
/// released.
#[allow(clippy::too_many_arguments)]
pub fn take_interrupts(
    gic: &mut (impl PhysicalCpuInterface + ListRegisters),
    maintenance: u32,
    sgis: &VirtualSgis,
    holders: &SpiHolders,
    vcpu: usize,
    backlog: &mut Backlog,
    priority: impl Fn(u32) -> u8,
) {
    apply_remote_clears(gic, sgis, holders, backlog);
    let mut maintenance_taken = false;
    let gate = holders.share();
    gic.synchronize();
    loop {
        let intid = gic.acknowledge();
        if intid >= SPECIAL_INTIDS {
            break;
        }
        gic.drop_priority(intid);
        if intid >= 32 {
            holders.record(intid, vcpu);
        }
        if intid == maintenance {
            // Active until after the refill, so not taken again here.
            maintenance_taken = true;
        } else if intid < 16 {
            // hv's kick: the refill below is all it asks for.
            gic.deactivate(intid);
        } else if backlog.contains(&(intid as u16)) {
            // Queued already: something hv cannot see (another vCPU's
            // GICD_ICACTIVER, see `clear_held`) deactivated the activation
            // that entry stood for, and this is the interrupt again. The
            // entry stands for this activation now; a second one would
            // let a guest grow the backlog without bound.
        } else if backlog.try_push(intid as u16).is_err() {
            // Cannot happen: at most one entry per INTID exists (above).
            gic.deactivate(intid);
        }
    }
    gic.synchronize();
    drop(gate);
    if maintenance_taken {
        // The EOI maintenance condition (a software PPI entry ended) is
        // one of the maintenance interrupt's; it ends only here.
        end_eoi_list_registers(gic);
    }
    fill_list_registers(gic, sgis, backlog, priority);
    if maintenance_taken {
        gic.deactivate(maintenance);
        // The deactivations since the loop's `synchronize` (the ended EOI
        // entries' physical interrupts and the maintenance interrupt), all
        // at once: an ICC_DIR_EL1 write's effect on the interrupt's state
        // is guaranteed only after a DSB, as an acknowledgement's is (the
        // redistributor or distributor a remote vCPU's read of
        // GICR_ISACTIVER0 or GICD_ISACTIVER<n> shows, `apply_private_clears`),
        // and its effect on this CPU interface after a context
        // synchronization (review 56 R56-1).
        gic.synchronize();
    }
}

/// The interrupts one CPU holds for its vCPU, as a guest write to a
/// clear-pending or clear-active register sees them.
pub trait HeldInterrupts {
    /// The guest writes `bits` (bit k: INTID `first + k`) to a
    /// clear-pending or clear-active register (`op`): acts on what this
    /// CPU holds, and returns the bits still to write to the hardware.
    fn clear(&mut self, op: SetClear, first: u32, bits: u32) -> u32;

    /// The guest writes the SGI bits `sgis_bits` and PPI bits `ppi_bits`
    /// (hv's own removed) to a GICR_ICPENDR0 or GICR_ICACTIVER0 (`op`) of
    /// the vCPU whose state `sgis` is (its pending SGIs not yet placed
    /// are already cleared): clears what that vCPU holds, and returns the
    /// PPI bits to write to the hardware.
    fn clear_private(
        &mut self,
        op: SetClear,
        sgis: &VirtualSgis,
        sgi_bits: u16,
        ppi_bits: u32,
    ) -> u32;

    /// On the owner's CPU: applies the clears of its SGIs and PPIs other
    /// vCPUs requested (`apply_remote_clears`); nothing elsewhere.
    fn apply_private_clears(&mut self, sgis: &VirtualSgis);

    /// On the owner's CPU: applies the requests about SPIs other vCPUs
    /// made of it (`apply_remote_clears`), and their set-pendings, whose
    /// writes it forwards to the distributor at `distributor`
    /// (`apply_pending_sets`), inside `holders`' gate; nothing elsewhere.
    fn apply_spi_requests(
        &mut self,
        sgis: &VirtualSgis,
        holders: &SpiHolders,
        distributor: u64,
        hw: &mut impl GicHardware,
    );

    /// The SGIs this CPU's list registers hold in the state a read of a
    /// set/clear-pending (`op` PendingSet/PendingClear) or
    /// set/clear-active register shows; 0 for enable registers.
    fn sgis(&mut self, op: SetClear) -> u16;

    /// The PPIs (bits 16-31) this CPU holds for its vCPU, in a list
    /// register or the backlog (`held`), and those of them in the state a
    /// read of a pending or active register (`op`) shows (`in_state`): the
    /// list register's state, and pending for a backlog entry. The
    /// physical state of a held PPI is hv's (acknowledged: active), not
    /// the guest's. (0, 0) for enable registers.
    fn ppis(&mut self, op: SetClear) -> HeldPpis;

    /// The same for the SPIs of the distributor register whose first
    /// INTID is `first` (bit k: INTID `first + k`).
    fn held_spis(&mut self, op: SetClear, first: u32) -> HeldPpis;
}

/// What `HeldInterrupts::ppis` returns (bit n: INTID n, 16-31), and
/// `HeldInterrupts::held_spis` (bit k: the register's INTID k).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeldPpis {
    pub held: u32,
    pub in_state: u32,
}

/// For registers about interrupts the writing CPU cannot hold (another
/// vCPU's PPIs): every bit goes to the hardware.
#[derive(Debug)]
pub struct NothingHeld;

impl HeldInterrupts for NothingHeld {
    fn clear(&mut self, _op: SetClear, _first: u32, bits: u32) -> u32 {
        bits
    }

    /// Another vCPU's list registers, backlog and unplaced active PPIs are
    /// its owner's: the clear is requested from the owner
    /// (`VirtualSgis::request_clear`, the caller kicks it), which applies
    /// it before it next fills its list registers or emulates an access
    /// to its own redistributor (`apply_remote_clears`), R27-1. A
    /// clear-active is not forwarded: the owner ends the physical active
    /// state of what it holds itself (ICC_DIR_EL1), a forwarded one
    /// would leave a HW list register active over an inactive PPI. A
    /// clear-pending still is: it clears a physical pending state only,
    /// which cannot break what the owner holds.
    fn clear_private(
        &mut self,
        op: SetClear,
        sgis: &VirtualSgis,
        sgi_bits: u16,
        ppi_bits: u32,
    ) -> u32 {
        sgis.request_clear(op, sgi_bits as u32 | ppi_bits);
        match op {
            SetClear::PendingClear => ppi_bits,
            _ => 0,
        }
    }

    fn apply_private_clears(&mut self, _sgis: &VirtualSgis) {}

    fn apply_spi_requests(
        &mut self,
        _sgis: &VirtualSgis,
        _holders: &SpiHolders,
        _distributor: u64,
        _hw: &mut impl GicHardware,
    ) {
    }

    /// Another CPU's list registers cannot be read here: a remote read
    /// shows the SGIs not yet placed only.
    fn sgis(&mut self, _op: SetClear) -> u16 {
        0
    }

    /// Nor its backlog: a remote read shows another vCPU's PPIs in their
    /// physical state.
    fn ppis(&mut self, _op: SetClear) -> HeldPpis {
        HeldPpis::default()
    }

    fn held_spis(&mut self, _op: SetClear, _first: u32) -> HeldPpis {
        HeldPpis::default()
    }
}

/// This CPU's list registers and backlog, and its physical CPU interface
/// to deactivate what hv acknowledged.
#[derive(Debug)]
pub struct Held<'a, C> {
    pub cpu: &'a mut C,
    pub backlog: &'a mut Backlog,
}

impl<C: PhysicalCpuInterface + ListRegisters> HeldInterrupts for Held<'_, C> {
    /// Its deactivations are made visible (`synchronize`) before the
    /// caller, a guest SPI write, leaves `SpiHolders`' gate.
    fn clear(&mut self, op: SetClear, first: u32, bits: u32) -> u32 {
        let forward = clear_held(op, first, bits, self.cpu, self.backlog);
        self.cpu.synchronize();
        forward
    }

    fn clear_private(
        &mut self,
        op: SetClear,
        sgis: &VirtualSgis,
        sgi_bits: u16,
        ppi_bits: u32,
    ) -> u32 {
        let forward =
            clear_private_held(op, sgis, sgi_bits as u32 | ppi_bits, self.cpu, self.backlog);
        // Its deactivations visible in the redistributor before a later
        // read of it (the guest's, or a view for another vCPU), as
        // `apply_private_clears` does for requested ones.
        self.cpu.synchronize();
        forward & 0xffff_0000
    }

    fn apply_private_clears(&mut self, sgis: &VirtualSgis) {
        apply_private_clears(self.cpu, sgis, self.backlog);
    }

    fn apply_spi_requests(
        &mut self,
        sgis: &VirtualSgis,
        holders: &SpiHolders,
        distributor: u64,
        hw: &mut impl GicHardware,
    ) {
        apply_spi_requests(self.cpu, sgis, holders, self.backlog);
        apply_pending_sets(self.cpu, sgis, holders, self.backlog, distributor, hw);
    }

    fn sgis(&mut self, op: SetClear) -> u16 {
        let Some(state) = lr_state_shown(op) else {
            return 0;
        };
        let count = self.cpu.count().min(MAX_LIST_REGISTERS);
        let empty = self.cpu.empty();
        let mut sgis = 0;
        for n in (0..count).filter(|n| empty & (1 << n) == 0) {
            let lr = self.cpu.read(n);
            let intid = lr & 0xffff_ffff;
            if lr & LR_HW == 0 && intid < 16 && (lr >> LR_STATE_SHIFT) & state != 0 {
                sgis |= 1 << intid;
            }
        }
        sgis
    }

    fn ppis(&mut self, op: SetClear) -> HeldPpis {
        let Some(state) = lr_state_shown(op) else {
            return HeldPpis::default();
        };
        let mut ppis = HeldPpis::default();
        let count = self.cpu.count().min(MAX_LIST_REGISTERS);
        let empty = self.cpu.empty();
        for n in (0..count).filter(|n| empty & (1 << n) == 0) {
            let lr = self.cpu.read(n);
            let intid = lr & 0xffff_ffff;
            if (16..32).contains(&intid) {
                ppis.held |= 1 << intid;
                if (lr >> LR_STATE_SHIFT) & state != 0 {
                    ppis.in_state |= 1 << intid;
                }
            }
        }
        for &entry in self.backlog.iter().filter(|&&e| (16..32).contains(&e)) {
            ppis.held |= 1 << entry;
            if state == LR_STATE_PENDING {
                ppis.in_state |= 1 << entry;
            }
        }
        ppis
    }

    /// A list register that is not empty holds its INTID (an ended EOI
    /// entry, in no state, included); a backlog entry holds it pending.
    fn held_spis(&mut self, op: SetClear, first: u32) -> HeldPpis {
        let Some(state) = lr_state_shown(op) else {
            return HeldPpis::default();
        };
        let bit = |intid: u64| {
            intid
                .checked_sub(first as u64)
                .filter(|&k| k < 32 && first >= 32)
                .map(|k| 1u32 << k)
        };
        let mut spis = HeldPpis::default();
        let count = self.cpu.count().min(MAX_LIST_REGISTERS);
        let empty = self.cpu.empty();
        for n in (0..count).filter(|n| empty & (1 << n) == 0) {
            let lr = self.cpu.read(n);
            if let Some(b) = bit(lr & 0xffff_ffff) {
                spis.held |= b;
                if (lr >> LR_STATE_SHIFT) & state != 0 {
                    spis.in_state |= b;
                }
            }
        }
        for b in self.backlog.iter().filter_map(|&e| bit(e as u64)) {
            spis.held |= b;
            if state == LR_STATE_PENDING {
                spis.in_state |= b;
            }
        }
        spis
    }
}

/// `HeldInterrupts::held_spis` of this CPU's list registers and backlog.
fn held_spis_on(
    cpu: &mut (impl PhysicalCpuInterface + ListRegisters),
    backlog: &mut Backlog,
    op: SetClear,
    first: u32,
) -> HeldPpis {
    Held { cpu, backlog }.held_spis(op, first)
}

/// The list-register state bit a read of a set/clear register shows:
/// pending for the pending registers, active for the active ones; None
/// for the enable registers.
fn lr_state_shown(op: SetClear) -> Option<u64> {
    match op {
        SetClear::PendingSet | SetClear::PendingClear => Some(LR_STATE_PENDING),
        SetClear::ActiveSet | SetClear::ActiveClear => Some(LR_STATE_ACTIVE),
        SetClear::EnableSet | SetClear::EnableClear => None,
    }
}

const LR_STATE_SHIFT: u32 = 62;
const LR_STATE_PENDING: u64 = 0b01;
const LR_STATE_ACTIVE: u64 = 0b10;

/// On the owner's CPU, a clear-pending or clear-active (`op`) of the
/// private interrupts `bits` (bit n: INTID n, SGIs and PPIs) of its vCPU
/// (`sgis`): those in its list registers or backlog as `clear_held` says;
/// a clear-active also ends the active state of those made active and
/// not yet placed (`VirtualSgis::set_active`): an SGI simply is no longer
/// active; a PPI is physically active through the guest's set-active, so
/// it is deactivated here (ICC_DIR_EL1), unless a backlog entry stands
/// for hv's own activation of it, which stays for that entry (R27-5).
/// Returns the PPI bits the caller still forwards to the hardware: the
/// ones no list register or backlog entry holds, and not deactivated
/// here (physically inactive, since hv tracks every activation of a
/// guest PPI; forwarding cannot hurt).
pub fn clear_private_held(
    op: SetClear,
    sgis: &VirtualSgis,
    bits: u32,
    cpu: &mut (impl PhysicalCpuInterface + ListRegisters),
    backlog: &mut Backlog,
) -> u32 {
    let unplaced = match op {
        SetClear::ActiveClear => sgis.clear_active(bits) & bits,
        _ => 0,
    };
    end_private(op, bits, unplaced, cpu, backlog)
}

/// `clear_private_held` once the unplaced active state of `unplaced` (of
/// `bits`) has been ended.
fn end_private(
    op: SetClear,
    bits: u32,
    unplaced: u32,
    cpu: &mut (impl PhysicalCpuInterface + ListRegisters),
    backlog: &mut Backlog,
) -> u32 {
    let not_held = clear_held(op, 0, bits, cpu, backlog);
    let deactivated = unplaced & not_held & 0xffff_0000;
    for ppi in (16..32u32).filter(|i| deactivated & (1 << i) != 0) {
        cpu.deactivate(ppi);
    }
    not_held & !deactivated
}

/// On the owner's CPU: the clears other vCPUs wrote to its vCPU's
/// GICR_ICPENDR0/GICR_ICACTIVER0 (`VirtualSgis::request_clear`), applied
/// to what it holds (`clear_private_held`). Each exit's refill starts
/// with this (`take_interrupts`, and `arch::gic`'s fill), and so does the
/// emulation of the vCPU's own SGI/PPI registers (`perform`), so the
/// guest never sees a state the clear ended.
///
/// The race with the refill: a remote clear that finds the interrupt
/// neither placed nor unplaced (the owner's `place_active` took it and
/// has not yet written its list register) is still recorded before the
/// kick, and the kick brings the owner back to apply it once the list
/// register is written. Requests are taken with a swap, so none is lost
/// to a concurrent one, and applying one to an interrupt no longer held
/// does nothing. The physical PPIs that are not held are inactive (hv
/// tracks every activation), so nothing is forwarded here.
pub fn apply_remote_clears(
    cpu: &mut (impl PhysicalCpuInterface + ListRegisters),
    sgis: &VirtualSgis,
    holders: &SpiHolders,
    backlog: &mut Backlog,
) {
    apply_private_clears(cpu, sgis, backlog);
    apply_spi_requests(cpu, sgis, holders, backlog);
}

/// `apply_remote_clears` for the SGIs and PPIs: all an access to the
/// vCPU's own redistributor needs (`perform`).
fn apply_private_clears(
    cpu: &mut (impl PhysicalCpuInterface + ListRegisters),
    sgis: &VirtualSgis,
    backlog: &mut Backlog,
) {
    let pending = sgis.take_pending_clears();
    if pending != 0 {
        // The writer cleared the SGIs not yet placed and forwarded the
        // PPIs' physical clear-pending.
        end_private(SetClear::PendingClear, pending, 0, cpu, backlog);
    }
    let (active, unplaced) = sgis.take_active_clears();
    if active != 0 {
        end_private(SetClear::ActiveClear, active, unplaced, cpu, backlog);
    }
    if pending | active != 0 {
        // The deactivations visible in the redistributor before this CPU
        // reads it (the view `publish_private_view` gives the writer, the
        // guest's own reads in `perform`): an ICC_DIR_EL1 write takes
        // effect there only by a DSB (loom `hv_remote_clear`).
        cpu.synchronize();
    }
}

/// `apply_remote_clears` for the SPIs (`perform_spi`): the same, one word
/// at a time. A clear-active ends what this CPU holds, and an SPI made
/// active for it and not placed, which no backlog entry holds too, through
/// ICC_DIR_EL1 (an SPI's deactivation is not tied to the PE that activated
/// it, as the HW list registers of SPIs made active rely on as well).
/// Inside `holders`' gate (shared): a writer's set-active sees the SPI
/// either before the request is taken (and withdraws it) or after the
/// deactivation (and forwards), never the request taken and the SPI
/// still active (R35-1's second race: the SPI then ended inactive).
fn apply_spi_requests(
    cpu: &mut (impl PhysicalCpuInterface + ListRegisters),
    sgis: &VirtualSgis,
    holders: &SpiHolders,
    backlog: &mut Backlog,
) {
    if !sgis.spis.has_requests() {
        return;
    }
    let _gate = holders.share();
    let words = sgis.spis.take_to_clear();
    for w in (0..SPI_WORDS).filter(|&w| words & (1 << w) != 0) {
        let first = spi_word_first(w);
        let pending = sgis.spis.pending_clears[w].swap(0, Ordering::AcqRel);
        if pending != 0 {
            clear_held(SetClear::PendingClear, first, pending, cpu, backlog);
        }
        let (active, unplaced) = sgis.spis.active[w].take_clears();
        if active != 0 {
            let not_held = clear_held(SetClear::ActiveClear, first, active, cpu, backlog);
            let deactivated = unplaced & not_held;
            for k in (0..32u32).filter(|k| deactivated & (1 << k) != 0) {
                cpu.deactivate(first + k);
            }
        }
        // Set-actives of SPIs already physically active (R35-1): made
        // active here if this CPU holds them (placed by the refill that
        // follows, `place_spis`), ignored otherwise (the SPI's holder entry
        // was stale: this vCPU's guest had ended it).
        let activate = sgis.spis.activate_requests[w].swap(0, Ordering::AcqRel);
        if activate != 0 {
            let here = held_spis_on(cpu, backlog, SetClear::ActiveSet, first).held;
            sgis.spis.set_active(w, activate & here);
        }
    }
    // The deactivations visible in the distributor before a writer reads
    // it inside the gate.
    cpu.synchronize();
}

/// On the owner's CPU: the GICD_ISPENDR<n> writes other vCPUs made of SPIs
/// it held (review 44 R44-4, `VirtualSpis::request_pending`), applied to
/// what it holds now, the distributor being at `distributor`: an SPI its
/// list register or backlog has pending is pending already, and the write
/// has no effect on it (as on a GIC; forwarded, the SPI hv acknowledged
/// would be delivered a second time once its guest handled it). The rest
/// is forwarded (`forward_completed`): an SPI its guest has active
/// becomes active and pending (signalled again after the guest's
/// deactivation), one its guest has ended since becomes pending. Only
/// where the distributor can be written (`HeldInterrupts` with it, and
/// the CPU_OFF release): an exit's refill leaves them for its answer
/// (`publish_private_view`), which follows it on the same exit. Inside
/// `holders`' gate (shared), as every forwarded write.
fn apply_pending_sets(
    cpu: &mut (impl PhysicalCpuInterface + ListRegisters),
    sgis: &VirtualSgis,
    holders: &SpiHolders,
    backlog: &mut Backlog,
    distributor: u64,
    hw: &mut impl GicHardware,
) {
    let words = sgis.spis.take_to_set_pending();
    if words == 0 {
        return;
    }
    let _gate = holders.share();
    for w in (0..SPI_WORDS).filter(|&w| words & (1 << w) != 0) {
        let bits = sgis.spis.take_pending_sets(w);
        if bits == 0 {
            continue;
        }
        let first = spi_word_first(w);
        let pending_here = held_spis_on(cpu, backlog, SetClear::PendingSet, first).in_state;
        let forward = bits & !pending_here;
        if forward != 0 {
            forward_completed(hw, distributor + GICD_ISPENDR + first as u64 / 8, forward);
        }
    }
}

/// A guest write of `bits` (bit k: INTID `first + k`) to GICD_ICPENDR<n>,
/// GICD_ICACTIVER<n> or the SGI and PPI bits of its own GICR_ICPENDR0 /
/// GICR_ICACTIVER0 (`op`), for the interrupts this CPU holds for its vCPU:
/// in a list register, or acknowledged and waiting in `backlog`. Returns
/// the bits to forward to the hardware.
///
/// hv acknowledged each held interrupt, so its physical active state is
/// hv's: forwarded, a clear-active would let the interrupt fire again and
/// be queued while a list register still holds it (R7-11). The choice,
/// following what the guest sees (the list register's state; a backlog
/// entry is pending, not active):
/// - clear-active of an interrupt active in a list register: the list
///   register loses its active state (active and pending becomes pending,
///   active becomes invalid) and, with the HW bit, the physical interrupt
///   is deactivated, as the guest's own deactivation would. Its active
///   priority stays, as on a GIC, until the guest's priority drop. Never
///   forwarded, also when held but not active (pending in a list register
///   or in the backlog): there is no active state to clear.
/// - clear-pending of an interrupt only pending in a list register, or
///   waiting in the backlog: withdrawn (the list register emptied, the
///   entry removed) and, for a physical one, deactivated; active and
///   pending becomes active. Still forwarded, which clears a new physical
///   pending state and cannot break what hv holds.
///
/// An interrupt held by another CPU cannot be seen here; its bits are
/// forwarded. If it fires again, that CPU's `take_interrupts` merges it
/// into the list register that holds it (or, when only the backlog holds
/// it, lets that entry stand for the new activation): never two list
/// registers, never a backlog entry waiting for one.
pub fn clear_held(
    op: SetClear,
    first: u32,
    bits: u32,
    cpu: &mut (impl PhysicalCpuInterface + ListRegisters),
    backlog: &mut Backlog,
) -> u32 {
    let selects = |intid: u32| {
        intid
            .checked_sub(first)
            .is_some_and(|k| k < 32 && bits & (1 << k) != 0)
    };
    let bit = |intid: u32| 1u32 << (intid - first);
    let mut forward = bits;
    match op {
        SetClear::ActiveClear | SetClear::PendingClear => {}
        _ => return bits,
    }
    let count = cpu.count().min(MAX_LIST_REGISTERS);
    let empty = cpu.empty();
    for n in 0..count {
        if empty & (1 << n) != 0 {
            continue;
        }
        let lr = cpu.read(n);
        let intid = (lr & 0xffff_ffff) as u32;
        if !selects(intid) {
            continue;
        }
        let state = lr >> LR_STATE_SHIFT;
        let physical = lr_physical(lr);
        let (cleared, withdrawn) = if op == SetClear::ActiveClear {
            forward &= !bit(intid);
            (LR_STATE_ACTIVE, state == LR_STATE_ACTIVE)
        } else {
            (LR_STATE_PENDING, state == LR_STATE_PENDING)
        };
        if state & cleared == 0 {
            continue;
        }
        if withdrawn {
            cpu.write(n, 0);
        } else {
            cpu.write(n, lr & !(cleared << LR_STATE_SHIFT));
        }
        // A HW list register is never active and pending, so it is
        // withdrawn here, and the activation hv made is undone; so is an
        // EOI entry's (`made_active`) once nothing is left in it.
        if let (true, Some(p)) = (withdrawn, physical) {
            cpu.deactivate(p);
        }
    }
    backlog.retain(|entry| {
        let intid = *entry as u32;
        if !selects(intid) {
            return true;
        }
        if op == SetClear::ActiveClear {
            forward &= !bit(intid);
            true
        } else {
            cpu.deactivate(intid);
            false
        }
    });
    forward
}

/// One word of interrupts made active and not yet placed in a list
/// register, with the clear-active requests of other vCPUs for them: bits
/// 0-31 the unplaced active state (bit k: the word's INTID k), bits 32-63
/// the requests. One atomic word, so that the owner takes a request
/// together with the unplaced bits it ends, and a set-active made after
/// the request (which cancels it) survives. The private interrupts of a
/// vCPU are one such word (`VirtualSgis`), its SPIs 31 more
/// (`VirtualSpis`).
#[derive(Debug)]
pub struct ActiveWord(AtomicU64);

impl Default for ActiveWord {
    fn default() -> Self {
        Self::new()
    }
}

impl ActiveWord {
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    #[cfg(loom)]
    pub fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Made active (from any CPU): unplaced until the owner's refill; a
    /// clear-active requested earlier and not yet applied is withdrawn.
    pub fn set(&self, bits: u32) {
        let mut old = self.0.load(Ordering::Acquire);
        loop {
            let new = (old | bits as u64) & !((bits as u64) << 32);
            match self
                .0
                .compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(now) => old = now,
            }
        }
    }

    /// Withdraws the clear-active requests for `bits` without making them
    /// active (a set-active that goes to another vCPU).
    pub fn cancel_requests(&self, bits: u32) {
        if self.0.load(Ordering::Acquire) >> 32 & bits as u64 != 0 {
            self.0.fetch_and(!((bits as u64) << 32), Ordering::AcqRel);
        }
    }

    /// Puts back what a refill took and could not place, keeping requests.
    pub fn put_back(&self, bits: u32) {
        self.0.fetch_or(bits as u64, Ordering::AcqRel);
    }

    /// Ends the unplaced active state of `bits`; returns what was unplaced
    /// before.
    pub fn clear(&self, bits: u32) -> u32 {
        self.0.fetch_and(!(bits as u64), Ordering::AcqRel) as u32
    }

    pub fn unplaced(&self) -> u32 {
        self.0.load(Ordering::Acquire) as u32
    }

    /// The owner takes the unplaced bits (one load when there are none);
    /// requests stay for `take_clears`.
    pub fn take(&self) -> u32 {
        if self.0.load(Ordering::Acquire) as u32 == 0 {
            return 0;
        }
        self.0.fetch_and(!0xffff_ffff, Ordering::AcqRel) as u32
    }

    /// Another vCPU asks the owner to clear the active state of `bits`.
    pub fn request_clear(&self, bits: u32) {
        self.0.fetch_or((bits as u64) << 32, Ordering::AcqRel);
    }

    /// The owner takes the requests and, in the same atomic step, ends
    /// the unplaced active state of those interrupts: returns (requested,
    /// of them those that were unplaced active).
    pub fn take_clears(&self) -> (u32, u32) {
        if self.0.load(Ordering::Acquire) >> 32 == 0 {
            return (0, 0);
        }
        let mut old = self.0.load(Ordering::Acquire);
        loop {
            let requested = old >> 32;
            let new = old & 0xffff_ffff & !requested;
            match self
                .0
                .compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return (requested as u32, (old & requested) as u32),
                Err(now) => old = now,
            }
        }
    }

    /// The requests not yet applied.
    pub fn requested(&self) -> u32 {
        (self.0.load(Ordering::Acquire) >> 32) as u32
    }
}

/// INTIDs 32-1019 in words of 32 (word w: INTIDs 32 (w + 1) to
/// 32 (w + 1) + 31); the last word's INTIDs 1020-1023 are special and
/// never valid (`spi_bits`).
pub const SPI_WORDS: usize = 31;

/// The first INTID of SPI word `w`.
pub fn spi_word_first(w: usize) -> u32 {
    32 * (w as u32 + 1)
}

/// The bits of a distributor set/clear register whose first INTID is
/// `first` that name SPIs the distributor implements: INTIDs from 32 up
/// to `lines` (32 (GICD_TYPER.ITLinesNumber + 1), `spi_lines`), never a
/// special INTID (1020-1023). Other bits are RAZ/WI, as on a GIC for
/// unimplemented INTIDs.
pub fn spi_bits(first: u32, lines: u32) -> u32 {
    let end = lines.min(SPECIAL_INTIDS);
    if first < 32 || first >= end {
        return 0;
    }
    match end - first {
        n if n >= 32 => u32::MAX,
        n => (1u32 << n) - 1,
    }
}

/// The INTIDs the distributor implements, from GICD_TYPER
/// (ITLinesNumber, bits 4:0): 32 (N + 1), at most 1020 (the rest are
/// special).
pub fn spi_lines(gicd_typer: u32) -> u32 {
    (((gicd_typer & 0x1f) + 1) * 32).min(SPECIAL_INTIDS)
}

/// The vCPU (index into `cpus`, the vCPUs' MPIDR affinities) an SPI's
/// GICD_IROUTER<n> value names, or None with IRM = 1 (any participating
/// PE) or an affinity no vCPU has.
pub fn route_target(irouter: u64, cpus: &[u64]) -> Option<usize> {
    const IRM: u64 = 1 << 31;
    if irouter & IRM != 0 {
        return None;
    }
    let affinity = (irouter & 0xff_ffff) | ((irouter >> 32) & 0xff) << 32;
    cpus.iter().position(|&c| c & 0xff_00ff_ffff == affinity)
}

/// A vCPU's SPI state: the SPIs the guest made active (GICD_ISACTIVER<n>)
/// for this vCPU to hold, not yet in a list register, and the clear-active
/// (GICD_ICACTIVER<n>) and clear-pending (GICD_ICPENDR<n>) writes other
/// vCPUs made, for this vCPU to apply to what it holds
/// (`apply_remote_clears`). Fixed size: the architecture's 988 SPIs, of
/// which only those the distributor implements are ever set (`spi_bits`).
#[derive(Debug)]
pub struct VirtualSpis {
    active: [ActiveWord; SPI_WORDS],
    pending_clears: [AtomicU32; SPI_WORDS],
    /// Set-actives of SPIs already physically active, for whichever vCPU
    /// holds them (`request_active`).
    activate_requests: [AtomicU32; SPI_WORDS],
    /// Set-pendings of SPIs this vCPU holds (review 44 R44-4,
    /// `request_pending`): applied only where the distributor can be
    /// written (`apply_pending_sets`), so apart from the others.
    pending_sets: [AtomicU32; SPI_WORDS],
    /// Bit w: word w of `active` may have unplaced bits (set after them).
    to_place: AtomicU32,
    /// Bit w: word w of `active`, `pending_clears` or `activate_requests`
    /// may have requests.
    to_clear: AtomicU32,
    /// Bit w: word w of `pending_sets` may have requests.
    to_set_pending: AtomicU32,
}

impl Default for VirtualSpis {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualSpis {
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            active: [const { ActiveWord::new() }; SPI_WORDS],
            pending_clears: [const { AtomicU32::new(0) }; SPI_WORDS],
            activate_requests: [const { AtomicU32::new(0) }; SPI_WORDS],
            pending_sets: [const { AtomicU32::new(0) }; SPI_WORDS],
            to_place: AtomicU32::new(0),
            to_clear: AtomicU32::new(0),
            to_set_pending: AtomicU32::new(0),
        }
    }

    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            active: core::array::from_fn(|_| ActiveWord::new()),
            pending_clears: core::array::from_fn(|_| AtomicU32::new(0)),
            activate_requests: core::array::from_fn(|_| AtomicU32::new(0)),
            pending_sets: core::array::from_fn(|_| AtomicU32::new(0)),
            to_place: AtomicU32::new(0),
            to_clear: AtomicU32::new(0),
            to_set_pending: AtomicU32::new(0),
        }
    }

    /// SPIs `bits` of word `w` made active for this vCPU to hold; any
    /// clear-active request for them not yet applied is withdrawn.
    pub fn set_active(&self, w: usize, bits: u32) {
        if let Some(word) = self.active.get(w).filter(|_| bits != 0) {
            word.set(bits);
            self.to_place.fetch_or(1 << w, Ordering::AcqRel);
        }
    }

    /// Withdraws clear-active requests for `bits` of word `w`.
    pub fn cancel_clear_requests(&self, w: usize, bits: u32) {
        if let Some(word) = self.active.get(w) {
            word.cancel_requests(bits);
        }
    }

    /// Ends the unplaced active state of `bits` of word `w` (the owner's
    /// own clear-active); returns what was unplaced before.
    pub fn clear_unplaced(&self, w: usize, bits: u32) -> u32 {
        self.active.get(w).map_or(0, |word| word.clear(bits))
    }

    /// The SPIs of word `w` made active and not yet placed.
    pub fn unplaced(&self, w: usize) -> u32 {
        self.active.get(w).map_or(0, ActiveWord::unplaced)
    }

    /// Whether some SPI waits to be placed.
    pub fn has_unplaced(&self) -> bool {
        self.to_place.load(Ordering::Acquire) != 0
    }

    /// Whether some request may wait to be applied.
    fn has_requests(&self) -> bool {
        self.to_clear.load(Ordering::Acquire) != 0
    }

    /// Another vCPU cleared the pending or active state (`op`) of `bits`
    /// of word `w`: recorded for this vCPU, which the writer then kicks.
    pub fn request_clear(&self, op: SetClear, w: usize, bits: u32) {
        if bits == 0 || w >= SPI_WORDS {
            return;
        }
        match op {
            SetClear::ActiveClear => self.active[w].request_clear(bits),
            SetClear::PendingClear => {
                self.pending_clears[w].fetch_or(bits, Ordering::AcqRel);
            }
            _ => return,
        }
        self.to_clear.fetch_or(1 << w, Ordering::AcqRel);
    }

    /// Another vCPU made `bits` of word `w` active while they were
    /// physically active and not held by it (R35-1): this vCPU makes its
    /// list register or backlog entry of each one it holds active
    /// (`apply_remote_clears`); the writer then kicks it.
    pub fn request_active(&self, w: usize, bits: u32) {
        if let Some(word) = self.activate_requests.get(w).filter(|_| bits != 0) {
            word.fetch_or(bits, Ordering::AcqRel);
            self.to_clear.fetch_or(1 << w, Ordering::AcqRel);
        }
    }

    /// Another vCPU wrote `bits` of word `w` to GICD_ISPENDR<n> while this
    /// vCPU held them (review 44 R44-4): this vCPU leaves those its guest
    /// has pending as they are and forwards the write for the rest
    /// (`apply_pending_sets`); the writer then kicks it.
    pub fn request_pending(&self, w: usize, bits: u32) {
        if let Some(word) = self.pending_sets.get(w).filter(|_| bits != 0) {
            word.fetch_or(bits, Ordering::AcqRel);
            self.to_set_pending.fetch_or(1 << w, Ordering::AcqRel);
        }
    }

    /// The clear-active requests of word `w` not yet applied.
    pub fn requested_clears(&self, w: usize) -> u32 {
        self.active.get(w).map_or(0, ActiveWord::requested)
    }

    /// Every request of word `w` not yet applied: clear-active,
    /// clear-pending, set-active and set-pending (`request_clear`,
    /// `request_active`, `request_pending`).
    pub fn requests(&self, w: usize) -> u32 {
        if w >= SPI_WORDS {
            return 0;
        }
        self.requested_clears(w)
            | self.pending_clears[w].load(Ordering::Acquire)
            | self.activate_requests[w].load(Ordering::Acquire)
            | self.pending_sets[w].load(Ordering::Acquire)
    }

    /// The words with unplaced bits, flags cleared (one load when none).
    fn take_to_place(&self) -> u32 {
        if self.to_place.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.to_place.swap(0, Ordering::AcqRel)
    }

    /// The words with requests, flags cleared (one load when none).
    fn take_to_clear(&self) -> u32 {
        if self.to_clear.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.to_clear.swap(0, Ordering::AcqRel)
    }

    /// The words with set-pending requests, flags cleared (one load when
    /// none).
    fn take_to_set_pending(&self) -> u32 {
        if self.to_set_pending.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.to_set_pending.swap(0, Ordering::AcqRel)
    }

    /// The set-pending requests of word `w`, taken.
    fn take_pending_sets(&self, w: usize) -> u32 {
        self.pending_sets
            .get(w)
            .map_or(0, |word| word.swap(0, Ordering::AcqRel))
    }

    /// Puts back unplaced bits a refill could not place.
    fn put_back(&self, w: usize, bits: u32) {
        if bits != 0 {
            self.active[w].put_back(bits);
            self.to_place.fetch_or(1 << w, Ordering::AcqRel);
        }
    }

    /// Takes everything posted in word `w` (unplaced set-actives,
    /// clear-active, clear-pending, set-active and set-pending requests),
    /// each word with one swap, also when it looks empty (a release relies
    /// on it): (unplaced, set-pending requested).
    fn take_word(&self, w: usize) -> Option<(u32, u32)> {
        let word = self.active.get(w)?.0.swap(0, Ordering::AcqRel);
        self.pending_clears[w].swap(0, Ordering::AcqRel);
        self.activate_requests[w].swap(0, Ordering::AcqRel);
        Some((word as u32, self.take_pending_sets(w)))
    }
}

/// The SPIs' holders, shared by every vCPU (review 37 R37-2 and the two
/// races R35-1 left): which vCPU holds each SPI, and a gate that makes a
/// holder's change and a writer's decision one step each.
///
/// Each SPI hv tracks is held by one vCPU at a time: the one hv
/// acknowledged it for (`take_interrupts`), or the one a set-active chose
/// (`perform_spi`). Only its own CPU sees its list registers, so the table
/// names the vCPU for the others: the last one that acknowledged or was
/// given it. The entry is not cleared when the holder's guest ends the SPI
/// (a HW list register's deactivation is not seen by hv); a stale entry
/// names a vCPU that holds the SPI no more, which ignores what it is asked
/// about it. While the SPI is physically active the entry is right: every
/// activation hv makes or acknowledges records its holder.
///
/// The gate is a readers-writer spin lock. Shared: an exit's acknowledge
/// loop (the hardware changes an SPI from pending to active and the
/// acknowledging CPU records itself), and a holder's application of
/// requests (it takes a clear-active request and deactivates the SPI).
/// Exclusive: a guest write to an SPI's pending or active registers
/// (`perform_spi`: it reads the physical state, forwards, records the
/// holder and posts requests, deciding on one state), and a CPU_OFF's
/// release (`release_list_registers`, once the vCPU is marked off, so
/// every writer either posted before the release, which takes the post,
/// or sees the vCPU off). So an SPI cannot be delivered between a
/// writer's read of GICD_ISACTIVER<n> and its forwarded set-active (it
/// would get two holders), a holder cannot deactivate an SPI between a
/// later set-active's read and its requests (the SPI would end inactive),
/// and nothing posted to a vCPU stays in its words once it is off, with
/// nobody but the vCPU's own CPU taking them.
///
/// The gate is phase-fair (review 41 R41-2), so every wait is bounded:
/// writers enter in ticket order, and a reader waits for at most the one
/// writer that holds or is about to hold the gate when it arrives (readers
/// that arrive while a writer is present enter together after it, before
/// the next writer; readers that arrive after a writer announced itself
/// wait for it). A reader waits for at most one writer's section; a writer
/// for the writers with earlier tickets plus one reader phase each. Every
/// section is short and never waits for another CPU.
#[derive(Debug)]
pub struct SpiHolders {
    /// Readers that arrived, by `GATE_READER` (wrapping), plus, in the low
    /// bits, the present writer (`GATE_WRITER_PRESENT`) and its ticket's
    /// parity (`GATE_PHASE`), which tells its readers' wait from the next's.
    readers_in: AtomicU32,
    /// Readers that left, by `GATE_READER` (wrapping).
    readers_out: AtomicU32,
    /// Writers' tickets taken (wrapping).
    writers_in: AtomicU32,
    /// Writers' tickets served (wrapping): the ticket allowed in.
    writers_out: AtomicU32,
    /// By SPI (INTID 32 + i: byte i % 8 of word i / 8): its holder's vCPU
    /// index, or `NO_HOLDER`. Accessed inside the gate only, which orders
    /// them; packed (loom's atomics are large, and its threads' stacks
    /// small).
    holders: [AtomicU64; HOLDER_WORDS],
}

/// The SPIs hv can track: INTIDs 32-1019, eight a word.
const HOLDER_WORDS: usize = ((SPECIAL_INTIDS - 32) as usize).div_ceil(8);
const NO_HOLDER: u8 = u8::MAX;
const GATE_PHASE: u32 = 1;
const GATE_WRITER_PRESENT: u32 = 2;
const GATE_WRITER_BITS: u32 = GATE_PHASE | GATE_WRITER_PRESENT;
const GATE_READER: u32 = 4;

impl Default for SpiHolders {
    fn default() -> Self {
        Self::new()
    }
}

impl SpiHolders {
    /// No holders, the gate open. `const` for hv's static.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            readers_in: AtomicU32::new(0),
            readers_out: AtomicU32::new(0),
            writers_in: AtomicU32::new(0),
            writers_out: AtomicU32::new(0),
            holders: [const { AtomicU64::new(u64::MAX) }; HOLDER_WORDS],
        }
    }

    /// No holders, the gate open.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            readers_in: AtomicU32::new(0),
            readers_out: AtomicU32::new(0),
            writers_in: AtomicU32::new(0),
            writers_out: AtomicU32::new(0),
            holders: core::array::from_fn(|_| AtomicU64::new(u64::MAX)),
        }
    }

    /// Enters the gate shared (with other readers, no writer). A writer
    /// present on arrival is waited for, until its phase ends, and no
    /// longer: the next writer waits for this reader.
    pub fn share(&self) -> SharedGate<'_> {
        let writer = self.readers_in.fetch_add(GATE_READER, Ordering::Acquire) & GATE_WRITER_BITS;
        if writer != 0 {
            while self.readers_in.load(Ordering::Acquire) & GATE_WRITER_BITS == writer {
                spin_loop();
            }
        }
        SharedGate(self)
    }

    /// Enters the gate alone: waits for its ticket, announces itself (so
    /// readers arriving from then on wait for it), then waits for the
    /// readers that arrived before it to leave.
    pub fn exclusive(&self) -> ExclusiveGate<'_> {
        let ticket = self.writers_in.fetch_add(1, Ordering::Relaxed);
        while self.writers_out.load(Ordering::Acquire) != ticket {
            spin_loop();
        }
        let present = GATE_WRITER_PRESENT | (ticket & GATE_PHASE);
        let arrived = self.readers_in.fetch_add(present, Ordering::Acquire) & !GATE_WRITER_BITS;
        while self.readers_out.load(Ordering::Acquire) != arrived {
            spin_loop();
        }
        ExclusiveGate(self)
    }

    /// Writers holding or waiting for the gate (for tests of its order).
    #[doc(hidden)]
    pub fn writers_waiting(&self) -> u32 {
        let taken = self.writers_in.load(Ordering::Relaxed);
        taken.wrapping_sub(self.writers_out.load(Ordering::Relaxed))
    }

    /// Whether a writer has announced itself (holds the gate, or waits for
    /// the readers before it), for tests of the gate's order.
    #[doc(hidden)]
    pub fn writer_present(&self) -> bool {
        self.readers_in.load(Ordering::Relaxed) & GATE_WRITER_PRESENT != 0
    }

    /// Readers inside or waiting for the gate (for tests of its order).
    #[doc(hidden)]
    pub fn readers_waiting(&self) -> u32 {
        let arrived = self.readers_in.load(Ordering::Relaxed) / GATE_READER;
        arrived.wrapping_sub(self.readers_out.load(Ordering::Relaxed) / GATE_READER)
    }

    /// The vCPU holding `intid` (or that last held it: see above); None for
    /// an SPI never held, or not an SPI. Inside the gate.
    fn holder(&self, intid: u32) -> Option<usize> {
        let i = intid.checked_sub(32)? as usize;
        let k = (self.holders.get(i / 8)?.load(Ordering::Relaxed) >> (8 * (i % 8))) as u8;
        (k != NO_HOLDER).then_some(k as usize)
    }

    /// `holder` for models (loom-tests), outside the gate once their
    /// threads are joined.
    #[doc(hidden)]
    pub fn recorded_holder(&self, intid: u32) -> Option<usize> {
        self.holder(intid)
    }

    /// `vcpu` holds `intid` now (nothing for a vCPU index the table cannot
    /// hold, or not an SPI). Inside the gate.
    /// Readers inside the gate record SPIs of one word together: each
    /// replaces its own byte in one atomic step.
    fn record(&self, intid: u32, vcpu: usize) {
        let Some(i) = intid.checked_sub(32).map(|i| i as usize) else {
            return;
        };
        let Some(word) = self
            .holders
            .get(i / 8)
            .filter(|_| vcpu < NO_HOLDER as usize)
        else {
            return;
        };
        let shift = 8 * (i % 8);
        let _ = word.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
            Some(w & !(0xff << shift) | (vcpu as u64) << shift)
        });
    }
}

/// Inside `SpiHolders`'s gate, shared, until dropped.
#[derive(Debug)]
pub struct SharedGate<'a>(&'a SpiHolders);

impl Drop for SharedGate<'_> {
    fn drop(&mut self) {
        self.0.readers_out.fetch_add(GATE_READER, Ordering::Release);
    }
}

/// Inside `SpiHolders`'s gate, alone, until dropped.
#[derive(Debug)]
pub struct ExclusiveGate<'a>(&'a SpiHolders);

impl Drop for ExclusiveGate<'_> {
    fn drop(&mut self) {
        // The readers that waited for this writer enter, then the next
        // writer (which waits for them).
        self.0
            .readers_in
            .fetch_and(!GATE_WRITER_BITS, Ordering::Release);
        self.0.writers_out.fetch_add(1, Ordering::Release);
    }
}

/// A vCPU's GICR_ISPENDR0 and GICR_ISACTIVER0 (and their clear twins,
/// which read the same) as its own reads show them: the state of the SGIs
/// and PPIs its list registers and backlog hold, which only its own CPU
/// can read. Another vCPU's read of them asks for it (`request`), kicks
/// the owner and waits (`wait_for_private_view`); the owner's CPU, at its
/// next refill (the kick's exit) or while it waits for a view itself,
/// computes it with `perform`, its own read, and publishes it
/// (`publish_private_view`). The read takes effect at that point, as a
/// read of a GIC's register takes effect at some point during the access.
/// Sequence numbers: a view published for request n answers every
/// request up to n.
///
/// The same exchange gives another vCPU's view of the SPIs it holds
/// (review 41 R41-1): a reader of GICD_IS/ICPENDR<n> or
/// GICD_IS/ICACTIVER<n> marks the word it wants (`request_spis`) before it
/// takes its number, and the owner publishes its own read of that word's
/// two registers (`own_spi_view`) with the view of its private
/// interrupts. The owner takes the marks after it has seen the number, so
/// the word it publishes for request n was read after the reader marked
/// it (a word marked before the number is taken: a publish between the
/// two would answer the number without the word).
#[derive(Debug)]
pub struct PrivateView {
    requested: AtomicU32,
    published: AtomicU32,
    pending: AtomicU32,
    active: AtomicU32,
    /// Bit w: some reader wants SPI word w (`request_spis`).
    spi_words: AtomicU32,
    /// By SPI word: the owner's read of its GICD_ISPENDR (bits 0-31) and
    /// GICD_ISACTIVER (bits 32-63), each word one atomic value, so a
    /// reader never sees one register of one publish and the other of
    /// another.
    spis: [AtomicU64; SPI_WORDS],
}

impl Default for PrivateView {
    fn default() -> Self {
        Self::new()
    }
}

impl PrivateView {
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            requested: AtomicU32::new(0),
            published: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            active: AtomicU32::new(0),
            spi_words: AtomicU32::new(0),
            spis: [const { AtomicU64::new(0) }; SPI_WORDS],
        }
    }

    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            requested: AtomicU32::new(0),
            published: AtomicU32::new(0),
            pending: AtomicU32::new(0),
            active: AtomicU32::new(0),
            spi_words: AtomicU32::new(0),
            spis: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// A reader asks for a fresh view; returns the request's number, for
    /// `published_for`. The reader then kicks the owner (a DSB first).
    pub fn request(&self) -> u32 {
        self.requested
            .fetch_add(1, Ordering::AcqRel)
            .wrapping_add(1)
    }

    /// On the owner's CPU: the latest request not yet answered.
    pub fn wanted(&self) -> Option<u32> {
        let requested = self.requested.load(Ordering::Acquire);
        (requested != self.published.load(Ordering::Acquire)).then_some(requested)
    }

    /// On the owner's CPU: the view for request `number` (and every
    /// earlier one).
    pub fn publish(&self, number: u32, pending: u32, active: u32) {
        self.pending.store(pending, Ordering::Relaxed);
        self.active.store(active, Ordering::Relaxed);
        self.published.store(number, Ordering::Release);
    }

    /// The (pending, active) view published for request `number` or a
    /// later one, if there is one yet.
    pub fn published_for(&self, number: u32) -> Option<(u32, u32)> {
        self.answered(number).then(|| {
            (
                self.pending.load(Ordering::Relaxed),
                self.active.load(Ordering::Relaxed),
            )
        })
    }

    /// Whether a view was published for request `number` or a later one.
    fn answered(&self, number: u32) -> bool {
        let published = self.published.load(Ordering::Acquire);
        published.wrapping_sub(number) as i32 >= 0
    }

    /// A reader asks for a fresh view of SPI word `w` (and of the private
    /// interrupts): the word is marked first, then the number taken
    /// (`request`), which the reader then waits for (`published_spis`).
    pub fn request_spis(&self, w: usize) -> u32 {
        if w < SPI_WORDS {
            self.spi_words.fetch_or(1 << w, Ordering::Release);
        }
        self.request()
    }

    /// On the owner's CPU, once `wanted` gave it a number: the SPI words
    /// to publish with it (marks cleared).
    pub fn take_spi_words(&self) -> u32 {
        if self.spi_words.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.spi_words.swap(0, Ordering::Acquire)
    }

    /// On the owner's CPU: its read of SPI word `w`, published with the
    /// next `publish`.
    pub fn set_spis(&self, w: usize, pending: u32, active: u32) {
        if let Some(word) = self.spis.get(w) {
            word.store(pending as u64 | (active as u64) << 32, Ordering::Relaxed);
        }
    }

    /// The owner's (pending, active) read of SPI word `w`, published for
    /// request `number` (`request_spis`) or a later one, if there is one
    /// yet.
    pub fn published_spis(&self, number: u32, w: usize) -> Option<(u32, u32)> {
        let word = self.spis.get(w)?;
        self.answered(number).then(|| {
            let view = word.load(Ordering::Relaxed);
            (view as u32, (view >> 32) as u32)
        })
    }
}

/// How often a reader of another vCPU's private view polls for it before
/// it gives up (`wait_for_private_view`): the owner answers at its next
/// exit, which the kick brings at once unless its CPU is busy in hv with
/// interrupts masked (a console write waits at most 50 ms).
pub const VIEW_POLLS: u32 = 4 * GIC_POLLS;

/// On the owner's CPU (its vCPU not running), whose redistributor's RD
/// frame is at `rd`: answers a request for its private view, if there is
/// one, with what its own reads of GICR_ISPENDR0 and GICR_ISACTIVER0 show
/// (`perform`, with the interrupts this CPU holds), and with its own read
/// of each SPI word a reader marked (`own_spi_view`, after the requests
/// other vCPUs made of it are applied, so a reader that posted one sees
/// its effect), the distributor being at `distributor`.
pub fn publish_private_view(
    sgis: &VirtualSgis,
    hv_ppis: u32,
    (rd, distributor): (u64, u64),
    holders: &SpiHolders,
    held: &mut impl HeldInterrupts,
    hw: &mut impl GicHardware,
) {
    let wanted = sgis.view.wanted();
    // What other vCPUs asked of it is applied before it answers (taken
    // after the number is seen, so every post made before that request
    // is applied: a writer waiting for the answer relies on it, R44-1),
    // and at every exit, for the set-pendings the refill leaves
    // (`apply_pending_sets`).
    held.apply_spi_requests(sgis, holders, distributor, hw);
    let Some(number) = wanted else {
        return;
    };
    let words = sgis.view.take_spi_words();
    for w in (0..SPI_WORDS).filter(|&w| words & (1 << w) != 0) {
        let view = own_spi_view(sgis, w, distributor, held, hw);
        sgis.view.set_spis(w, view.pending, view.active);
    }
    let mut read = |offset: u64| {
        perform(
            redistributor(offset),
            rd + offset,
            4,
            None,
            sgis,
            hv_ppis,
            held,
            hw,
        ) as u32
    };
    let pending = read(0x1_0200);
    let active = read(0x1_0300);
    sgis.view.publish(number, pending, active);
}

/// A reader of another vCPU's pending or active register, having asked
/// the owner (`PrivateView::request`, number `number`) and kicked it,
/// waits for the view: up to `polls` times, running `meanwhile` between
/// polls, which must answer requests for the reader's own view
/// (`publish_private_view`): two vCPUs reading each other's registers
/// at once would otherwise wait for each other for good; it returns
/// whether to go on waiting (false once the owner is no longer on: it
/// answers nothing more). None if the owner never answered.
pub fn wait_for_private_view(
    owner: &VirtualSgis,
    number: u32,
    polls: u32,
    meanwhile: impl FnMut() -> bool,
) -> Option<(u32, u32)> {
    wait_for_view(owner, polls, meanwhile, |view| view.published_for(number))
}

/// Asks each vCPU in `asked` (bit k: vCPU k) for its own read of SPI word
/// `w` and waits for the answers (a read of another vCPU's held SPIs,
/// `begin_spi_read`, and a write that asked vCPUs to act, `perform_spi`,
/// whose answer says they have: `publish_private_view`). Review 44 R44-3:
/// in one pass, every request posted (`PrivateView::request_spis`), then
/// one `kick` of them all (bit k: vCPU k; the caller's DSB first), then
/// the answers awaited together, `polls` polls in all whatever their
/// number (each poll runs `meanwhile`, which must answer requests for the
/// asker's own view: two vCPUs may ask each other). `answer(k, view)` is
/// given each one's (pending, active) read, or None for one that gave
/// none: it is no longer on (`is_on`; it answers nothing more), or did
/// not answer in time.
#[allow(clippy::too_many_arguments)]
pub fn ask_spi_views(
    vcpus: &[VirtualSgis],
    asked: u32,
    w: usize,
    polls: u32,
    kick: impl FnOnce(u32),
    mut meanwhile: impl FnMut(),
    is_on: impl Fn(usize) -> bool,
    mut answer: impl FnMut(usize, Option<(u32, u32)>),
) {
    let mut numbers = [0u32; 32];
    let mut waiting = 0u32;
    for (k, vcpu) in vcpus.iter().enumerate().take(32) {
        if asked & (1 << k) != 0 {
            numbers[k] = vcpu.view.request_spis(w);
            waiting |= 1 << k;
        }
    }
    if waiting == 0 {
        return;
    }
    kick(waiting);
    let mut left = polls;
    while waiting != 0 {
        let this_poll = waiting;
        for k in (0..32).filter(|k| this_poll & (1 << k) != 0) {
            let published = || vcpus[k].view.published_spis(numbers[k], w);
            let view = match published() {
                Some(view) => Some(view),
                // A last look: it may have answered just before.
                None if left == 0 || !is_on(k) => published(),
                None => continue,
            };
            answer(k, view);
            waiting &= !(1 << k);
        }
        if waiting != 0 {
            meanwhile();
            left -= 1;
        }
    }
}

/// Polls `published` on `owner`'s view as `wait_for_private_view` says.
fn wait_for_view<T>(
    owner: &VirtualSgis,
    polls: u32,
    mut meanwhile: impl FnMut() -> bool,
    published: impl Fn(&PrivateView) -> Option<T>,
) -> Option<T> {
    for _ in 0..polls {
        if let Some(view) = published(&owner.view) {
            return Some(view);
        }
        if !meanwhile() {
            break;
        }
    }
    published(&owner.view)
}

/// Per-vCPU state of the virtual SGIs.
#[derive(Debug)]
pub struct VirtualSgis {
    enabled: AtomicU16,
    pending: AtomicU16,
    /// Bits 0-31: the private interrupts (bit n: INTID n, SGIs and PPIs)
    /// the guest made active through GICR_ISACTIVER0 that no list
    /// register holds yet: the next `fill_list_registers` of the vCPU
    /// places each in one as active, so that the guest's own deactivation
    /// (EOI/DIR) ends it. Bits 32-63: the clear-active writes other vCPUs
    /// made to this vCPU's GICR_ICACTIVER0 (bit 32 + n: INTID n), for the
    /// owner to apply (`apply_remote_clears`). One word, so that the owner
    /// takes a request together with the unplaced bits it ends, and a
    /// set-active made after the request (which cancels it) survives.
    active: ActiveWord,
    /// The clear-pending writes other vCPUs made to this vCPU's
    /// GICR_ICPENDR0 (bit n: INTID n), for the owner to apply.
    pending_clears: AtomicU32,
    priority: [unmodelled::AtomicU8; 16],
    /// The SPIs made active for this vCPU to hold, and the clears other
    /// vCPUs asked of it (`perform_spi`).
    pub spis: VirtualSpis,
    /// This vCPU's pending and active SGIs and PPIs as its own reads show
    /// them, published for another vCPU's read (`PrivateView`).
    pub view: PrivateView,
}

impl Default for VirtualSgis {
    fn default() -> Self {
        Self::new()
    }
}

impl VirtualSgis {
    /// No SGI enabled or pending, all at the default priority. `const`
    /// for hv's per-CPU statics; loom's atomics cannot be built in a
    /// constant, so under loom it is an ordinary function.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            enabled: AtomicU16::new(0),
            pending: AtomicU16::new(0),
            active: ActiveWord::new(),
            pending_clears: AtomicU32::new(0),
            priority: [const { unmodelled::AtomicU8::new(DEFAULT_PRIORITY) }; 16],
            spis: VirtualSpis::new(),
            view: PrivateView::new(),
        }
    }

    /// No SGI enabled or pending, all at the default priority.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            enabled: AtomicU16::new(0),
            pending: AtomicU16::new(0),
            active: ActiveWord::new(),
            pending_clears: AtomicU32::new(0),
            priority: [const { unmodelled::AtomicU8::new(DEFAULT_PRIORITY) }; 16],
            spis: VirtualSpis::new(),
            view: PrivateView::new(),
        }
    }

    pub fn set_clear(&self, op: SetClear, bits: u16) {
        match op {
            SetClear::EnableSet => self.enabled.fetch_or(bits, Ordering::AcqRel),
            SetClear::EnableClear => self.enabled.fetch_and(!bits, Ordering::AcqRel),
            SetClear::PendingSet => self.pending.fetch_or(bits, Ordering::AcqRel),
            SetClear::PendingClear => self.pending.fetch_and(!bits, Ordering::AcqRel),
            // Active SGIs live in the list registers: one set active waits
            // in `active` for the owner's refill to place it.
            SetClear::ActiveSet => {
                self.set_active(bits as u32);
                0
            }
            SetClear::ActiveClear => {
                self.clear_active(bits as u32);
                0
            }
        };
    }

    /// The SGI bits a read of the register shows for SGIs not yet placed
    /// in a list register (the owner adds what its list registers hold;
    /// `perform` adds the PPIs of `unplaced_active`).
    pub fn read(&self, op: SetClear) -> u16 {
        match op {
            SetClear::EnableSet | SetClear::EnableClear => self.enabled.load(Ordering::Acquire),
            SetClear::PendingSet | SetClear::PendingClear => self.pending.load(Ordering::Acquire),
            SetClear::ActiveSet | SetClear::ActiveClear => self.unplaced_active() as u16,
        }
    }

    /// Another vCPU cleared the pending or active state (`op`) of `bits`
    /// (bit n: INTID n) of this vCPU: recorded for the owner, which the
    /// writer then kicks (`owner_must_refill`).
    pub fn request_clear(&self, op: SetClear, bits: u32) {
        match op {
            SetClear::PendingClear => {
                self.pending_clears.fetch_or(bits, Ordering::AcqRel);
            }
            SetClear::ActiveClear => self.active.request_clear(bits),
            _ => {}
        }
    }

    /// The owner takes the clear-pending requests (one load when there are
    /// none, as on almost every refill).
    pub fn take_pending_clears(&self) -> u32 {
        if self.pending_clears.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.pending_clears.swap(0, Ordering::AcqRel)
    }

    /// The owner takes the clear-active requests and, in the same atomic
    /// step, ends the unplaced active state of those interrupts: returns
    /// (requested, of them those that were unplaced active).
    pub fn take_active_clears(&self) -> (u32, u32) {
        self.active.take_clears()
    }

    /// The bits cleared by a request the owner has not applied yet, which
    /// a read of a pending (`op` PendingSet/Clear) or active register
    /// shows cleared already.
    pub fn requested_clears(&self, op: SetClear) -> u32 {
        match op {
            SetClear::PendingSet | SetClear::PendingClear => {
                self.pending_clears.load(Ordering::Acquire)
            }
            SetClear::ActiveSet | SetClear::ActiveClear => self.active.requested(),
            _ => 0,
        }
    }

    /// The guest made the private interrupts `bits` (bit n: INTID n)
    /// active; the owner's next refill places them (from any CPU). A
    /// clear-active of them requested earlier and not yet applied is
    /// withdrawn: after a clear then a set the interrupt is active, and
    /// one a list register holds active stays so.
    pub fn set_active(&self, bits: u32) {
        self.active.set(bits);
    }

    /// Puts back the set-actives a refill took and could not place: unlike
    /// a guest's set-active, this keeps a clear-active another vCPU
    /// requested meanwhile (the race of R27-1), which then ends them.
    pub fn put_back_active(&self, bits: u32) {
        self.active.put_back(bits);
    }

    /// The guest cleared the active state of `bits`: those not yet placed
    /// are no longer active (a placed one is the list register's
    /// business). Returns what was unplaced before.
    pub fn clear_active(&self, bits: u32) -> u32 {
        self.active.clear(bits)
    }

    /// The private interrupts made active and not yet placed.
    pub fn unplaced_active(&self) -> u32 {
        self.active.unplaced()
    }

    /// Takes the private interrupts made active and not yet placed (one
    /// load when there are none, as on almost every fill); requested
    /// clears stay for `take_active_clears`.
    fn take_active(&self) -> u32 {
        self.active.take()
    }

    pub fn priority(&self, sgi: u8) -> u8 {
        self.priority[sgi as usize & 15].load(Ordering::Relaxed)
    }

    pub fn set_priority(&self, sgi: u8, value: u8) {
        self.priority[sgi as usize & 15].store(value, Ordering::Relaxed);
    }

    /// Marks `sgi` pending (from any CPU).
    pub fn raise(&self, sgi: u8) {
        self.pending.fetch_or(1 << (sgi & 15), Ordering::AcqRel);
    }

    /// Takes one pending and enabled SGI, clearing its pending bit.
    pub fn take(&self) -> Option<u8> {
        loop {
            let pending = self.pending.load(Ordering::Acquire);
            let ready = pending & self.enabled.load(Ordering::Acquire);
            if ready == 0 {
                return None;
            }
            let sgi = ready.trailing_zeros() as u16;
            let cleared = pending & !(1 << sgi);
            if self
                .pending
                .compare_exchange(pending, cleared, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Some(sgi as u8);
            }
        }
    }

    /// The SGIs pending and enabled (bit n: SGI n).
    pub fn ready(&self) -> u16 {
        self.pending.load(Ordering::Acquire) & self.enabled.load(Ordering::Acquire)
    }

    /// Takes `sgi` if it is pending and enabled, clearing its pending bit.
    pub fn take_sgi(&self, sgi: u8) -> bool {
        let bit = 1u16 << (sgi & 15);
        self.enabled.load(Ordering::Acquire) & bit != 0
            && self.pending.fetch_and(!bit, Ordering::AcqRel) & bit != 0
    }

    /// Whether some SGI is pending and enabled.
    pub fn has_ready(&self) -> bool {
        self.pending.load(Ordering::Acquire) & self.enabled.load(Ordering::Acquire) != 0
    }

    /// Puts back an SGI that found no free list register.
    pub fn put_back(&self, sgi: u8) {
        self.raise(sgi);
    }
}

/// A list register (ICH_LR<n>_EL2) holding a pending group-1 interrupt;
/// with `physical`, the HW bit links it to that physical INTID.
pub fn list_register(virtual_intid: u32, physical: Option<u32>, priority: u8) -> u64 {
    list_register_in(LR_STATE_PENDING, virtual_intid, physical, priority)
}

/// A list register holding a group-1 interrupt in `state` (LR_STATE_*).
fn list_register_in(state: u64, virtual_intid: u32, physical: Option<u32>, priority: u8) -> u64 {
    const HW: u64 = 1 << 61;
    const GROUP1: u64 = 1 << 60;
    let mut lr = state << LR_STATE_SHIFT | GROUP1 | (priority as u64) << 48 | virtual_intid as u64;
    if let Some(p) = physical {
        lr |= HW | ((p as u64) & 0x1fff) << 32;
    }
    lr
}

/// `lr` made active (GICR_ISACTIVER0 "adds the active state"): a pending
/// one becomes active and pending. With the HW bit, GICv3 does not allow
/// both (ICH_LR<n>_EL2.HW), so a pending HW entry (a PPI hv acknowledged)
/// becomes a software entry, active and pending, with the EOI bit (R27-2):
/// the guest's deactivation leaves it pending, its acknowledge and EOI of
/// that pending instance then make it invalid, and the EOI maintenance
/// interrupt has hv deactivate the physical PPI (`end_eoi_list_registers`).
/// An active HW entry stays as it is.
fn made_active(lr: u64) -> u64 {
    let state = lr >> LR_STATE_SHIFT;
    if lr & LR_HW == 0 {
        lr | LR_STATE_ACTIVE << LR_STATE_SHIFT
    } else if state & LR_STATE_PENDING != 0 {
        // hv's HW entries have vINTID = pINTID, so the vINTID names the
        // physical PPI to deactivate.
        let software = lr & !(LR_HW | 0x1fff << 32) | LR_EOI;
        software | (LR_STATE_ACTIVE | LR_STATE_PENDING) << LR_STATE_SHIFT
    } else {
        lr
    }
}

/// Whether a write to the SGI generation register `op2` (op0 3, op1 0,
/// CRn 12, CRm 11: ICC_SGI1R_EL1 5, ICC_ASGI1R_EL1 6, ICC_SGI0R_EL1 7)
/// sends an SGI in hv's GICs, whose interrupts are all (Non-secure) group
/// 1 (this vGIC and L1's, `nested::gic`): only ICC_SGI1R_EL1's.
/// ICC_SGI0R_EL1 generates group-0 SGIs. ICC_ASGI1R_EL1 generates group-1
/// SGIs of the Security state that is not the current one: from
/// Non-secure state with two Security states those are Secure group 1,
/// and with one (GICD_CTLR.DS = 1, what L1's GIC shows) a target forwards
/// only an SGI configured as group 0 (IHI 0069, "Forwarding an SGI to a
/// target PE"), as for ICC_SGI0R_EL1: neither reaches a group-1 SGI, so
/// both complete with no effect (review 47 R47-5).
pub const fn sgi_write_sends(op2: u8) -> bool {
    op2 == 5
}

/// An SGI the guest generated through ICC_SGI1R_EL1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgiRequest {
    pub intid: u8,
    /// Bit i set: vCPU i is a target.
    pub targets: u32,
}

/// Decodes an ICC_SGI1R_EL1 value written by vCPU `sender` into its
/// targets among `cpus` (the vCPUs' MPIDR affinities, by index).
pub fn decode_sgi1r(value: u64, sender: usize, cpus: &[u64]) -> SgiRequest {
    let intid = ((value >> 24) & 0xf) as u8;
    let mut targets = 0u32;
    if value & (1 << 40) != 0 {
        // IRM: every PE but the sender.
        for i in 0..cpus.len().min(32) {
            if i != sender {
                targets |= 1 << i;
            }
        }
    } else {
        let aff1 = (value >> 16) & 0xff;
        let aff2 = (value >> 32) & 0xff;
        let aff3 = (value >> 48) & 0xff;
        // RS selects which block of 16 Aff0 values the list covers.
        let range = ((value >> 44) & 0xf) * 16;
        let list = value & 0xffff;
        for (i, &mpidr) in cpus.iter().enumerate().take(32) {
            let aff0 = mpidr & 0xff;
            let same_cluster = (mpidr >> 8) & 0xff == aff1
                && (mpidr >> 16) & 0xff == aff2
                && (mpidr >> 32) & 0xff == aff3;
            if same_cluster
                && aff0 >= range
                && aff0 < range + 16
                && list & (1 << (aff0 - range)) != 0
            {
                targets |= 1 << i;
            }
        }
    }
    SgiRequest { intid, targets }
}

/// The ICC_SGI1R_EL1 value that sends SGI `intid` to the PE with `mpidr`.
pub fn sgi1r_for(intid: u32, mpidr: u64) -> u64 {
    let aff0 = mpidr & 0xff;
    let aff1 = (mpidr >> 8) & 0xff;
    let aff2 = (mpidr >> 16) & 0xff;
    let aff3 = (mpidr >> 32) & 0xff;
    aff3 << 48
        | aff2 << 32
        | (aff0 / 16) << 44
        | ((intid as u64) & 0xf) << 24
        | aff1 << 16
        | 1 << (aff0 % 16)
}

/// Where the redistributor frames of one CPU repeat (GICR_TYPER.VLPIS adds
/// the two GICv4 vLPI frames).
pub fn redistributor_stride(gicr_typer: u64) -> u64 {
    if gicr_typer & (1 << 1) != 0 {
        0x4_0000
    } else {
        0x2_0000
    }
}

/// The affinity (Aff3.Aff2.Aff1.Aff0 as in MPIDR) a GICR_TYPER describes.
pub fn redistributor_affinity(gicr_typer: u64) -> u64 {
    let affinity = gicr_typer >> 32;
    (affinity & 0xff_ffff) | (affinity >> 24 & 0xff) << 32
}

/// The bits a `size`-byte register access carries (8 bytes or more: all).
pub(crate) fn access_mask(size: u64) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

// Host tests: under loom, VirtualSgis's atomics exist only inside a loom model
// (loom-tests/tests/hv_*.rs).
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Review 47 R47-6 (R44-2): a gated SPI read takes the active state
    /// before the pending state. The distributor here is another vCPU's
    /// guest at work: SPI 33 is active, not pending, until the first read
    /// of its word; by the second that guest ended it after a second edge
    /// (pending, inactive). Pending throughout, so it must read pending or
    /// active, never neither.
    #[test]
    fn a_gated_spi_read_takes_the_active_state_first() {
        const GICD: u64 = 0x0800_0000;
        struct Ended {
            reads: u32,
        }
        impl GicHardware for Ended {
            fn read(&mut self, address: u64, _size: u64) -> u64 {
                self.reads += 1;
                let (pending, active) = if self.reads == 1 { (0, 2) } else { (2, 0) };
                match address - GICD {
                    0x0204 => pending,
                    0x0304 => active,
                    offset => panic!("read at {offset:#x}"),
                }
            }
            fn write(&mut self, address: u64, _size: u64, value: u64) {
                panic!("write of {value:#x} at {address:#x}");
            }
        }
        let sgis = VirtualSgis::new();
        let view = own_spi_view(&sgis, 0, GICD, &mut NothingHeld, &mut Ended { reads: 0 });
        assert_ne!(view.pending | view.active, 0, "SPI 33: {view:?}");
    }

    /// Review 47 R47-5: of the SGI generation registers only ICC_SGI1R_EL1
    /// sends a group-1 SGI (ICC_ASGI1R_EL1: the other Security state's).
    #[test]
    fn only_icc_sgi1r_sends_an_sgi() {
        assert!(sgi_write_sends(5));
        assert!(!sgi_write_sends(6));
        assert!(!sgi_write_sends(7));
    }

    #[test]
    fn distributor_map() {
        assert_eq!(distributor(0x0), RegisterAction::ReadOnly);
        assert_eq!(distributor(0x4), RegisterAction::ReadMasked(3 << 16));
        assert_eq!(distributor(0x84), RegisterAction::Fixed(0xffff_ffff));
        assert_eq!(distributor(0x104), RegisterAction::Forward);
        assert_eq!(distributor(0x420), RegisterAction::Forward);
        assert_eq!(distributor(0x6100), RegisterAction::Forward);
        assert_eq!(distributor(0xffe8), RegisterAction::ReadOnly);
        assert_eq!(
            distributor(0x0f00),
            RegisterAction::Fixed(0),
            "GICD_SGIR is unused with ARE"
        );
        assert_eq!(distributor(0x0070), RegisterAction::Fixed(0));
        assert_eq!(
            distributor(0x0384),
            RegisterAction::Spi {
                op: SetClear::ActiveClear,
                first: 32
            }
        );
        assert_eq!(
            distributor(0x02fc),
            RegisterAction::Spi {
                op: SetClear::PendingClear,
                first: 992
            }
        );
        assert_eq!(
            distributor(0x0304),
            RegisterAction::Spi {
                op: SetClear::ActiveSet,
                first: 32
            }
        );
        assert_eq!(
            distributor(0x037c),
            RegisterAction::Spi {
                op: SetClear::ActiveSet,
                first: 992
            }
        );
        assert_eq!(
            distributor(0x0300),
            RegisterAction::Fixed(0),
            "ISACTIVER0 is RAZ/WI with affinity routing"
        );
        assert_eq!(distributor(0x0306), RegisterAction::Fixed(0), "misaligned");
        assert_eq!(
            distributor(0x0380),
            RegisterAction::Fixed(0),
            "ICACTIVER0 is RAZ/WI with affinity routing"
        );
        assert_eq!(distributor(0x0385), RegisterAction::Fixed(0), "misaligned");
        assert_eq!(
            distributor(0x0204),
            RegisterAction::Spi {
                op: SetClear::PendingSet,
                first: 32
            }
        );
        assert_eq!(
            distributor(0x027c),
            RegisterAction::Spi {
                op: SetClear::PendingSet,
                first: 992
            }
        );
        assert_eq!(
            distributor(0x0200),
            RegisterAction::Fixed(0),
            "ISPENDR0 is RAZ/WI with affinity routing"
        );
        assert_eq!(distributor(0x0206), RegisterAction::Fixed(0), "misaligned");
    }

    /// QEMU virt's layout: a redistributor region with room for 123 CPUs,
    /// four of them implemented, hv running the first two.
    const QEMU_REDISTRIBUTORS: [RedistributorFrames; 1] = [RedistributorFrames {
        region: Region {
            base: 0x080a_0000,
            size: 0xf6_0000,
        },
        stride: 0x2_0000,
        count: 4,
    }];

    /// Hardware that must not be touched.
    struct NoHardware;

    /// A CPU_OFF's release of `sgis`'s vCPU on `cpu`, no other vCPU and
    /// nothing to forward to the distributor.
    fn release_alone(
        cpu: &mut ModelCpu,
        sgis: &VirtualSgis,
        backlog: &mut Backlog,
        count: ListRegisterCount,
    ) {
        release_list_registers(
            cpu,
            sgis,
            &SpiHolders::new(),
            backlog,
            count,
            0x0800_0000,
            &mut NoHardware,
        );
    }

    impl GicHardware for NoHardware {
        fn read(&mut self, address: u64, _size: u64) -> u64 {
            panic!("read of {address:#x} reached the hardware");
        }
        fn write(&mut self, address: u64, _size: u64, _value: u64) {
            panic!("write of {address:#x} reached the hardware");
        }
    }

    #[test]
    fn reserved_redistributor_space_never_reaches_the_hardware() {
        let layout = GicLayout {
            distributor: 0x0800_0000,
            redistributors: &[0x080a_0000, 0x080c_0000],
            regions: &QEMU_REDISTRIBUTORS,
        };
        let sgis = VirtualSgis::new();
        // R7-1: past the last frame (the reviewer's QEMU crash address),
        // and the very last word of the region.
        for ipa in [0x0820_0000, 0x0812_0000, 0x08ff_fffc] {
            assert_eq!(
                classify(ipa, &layout),
                Some((RegisterAction::Fixed(0), None)),
                "{ipa:#x}"
            );
            for write in [None, Some(0xffff_ffff)] {
                let read = perform(
                    classify(ipa, &layout).unwrap().0,
                    ipa,
                    4,
                    write,
                    &sgis,
                    MAINTENANCE,
                    &mut NothingHeld,
                    &mut NoHardware,
                );
                assert_eq!(read, 0, "RAZ/WI");
            }
        }
        // The frames that exist: the vCPUs' own, and read-only those of
        // the CPUs hv does not run.
        assert_eq!(
            classify(0x080a_0008, &layout),
            Some((redistributor(0x8), Some(0)))
        );
        assert_eq!(
            classify(0x080d_0100, &layout),
            Some((RegisterAction::SgiPpi(SetClear::EnableSet), Some(1)))
        );
        assert_eq!(
            classify(0x0811_ffe8, &layout),
            Some((RegisterAction::ReadOnly, None))
        );
        assert_eq!(
            classify(0x0800_0004, &layout),
            Some((distributor(0x4), None))
        );
        assert_eq!(classify(0x0900_0000, &layout), None, "not the GIC");
        assert_eq!(classify(0x0809_fffc, &layout), None);
        // GICv4 frames (stride 0x40000): the vLPI half of a frame, hv's or
        // not, is reserved for the guest too.
        let v4 = [RedistributorFrames {
            stride: 0x4_0000,
            ..QEMU_REDISTRIBUTORS[0]
        }];
        let layout = GicLayout {
            redistributors: &[0x080a_0000],
            regions: &v4,
            ..layout
        };
        assert_eq!(
            classify(0x080c_0000, &layout),
            Some((RegisterAction::Fixed(0), None))
        );
        assert_eq!(
            classify(0x080f_0000, &layout),
            Some((RegisterAction::ReadOnly, None))
        );
        assert_eq!(
            classify(0x0811_0000, &layout),
            Some((RegisterAction::Fixed(0), None))
        );
        assert_eq!(
            classify(0x081a_0000, &layout),
            Some((RegisterAction::Fixed(0), None)),
            "past 4 frames"
        );
        // A region whose walk found nothing.
        let none = [RedistributorFrames {
            stride: 0,
            count: 0,
            ..QEMU_REDISTRIBUTORS[0]
        }];
        let layout = GicLayout {
            redistributors: &[],
            regions: &none,
            ..layout
        };
        assert_eq!(
            classify(0x080a_0000, &layout),
            Some((RegisterAction::Fixed(0), None))
        );
    }

    /// A redistributor whose GICR_CTLR shows RWP (bit 3) for a few reads
    /// after each write to ICENABLER0 or ICACTIVER0, and UWP (bit 31)
    /// never: priority and enable writes made while RWP is set are
    /// recorded.
    #[derive(Default)]
    struct SlowRedistributor {
        memory: FakeGic,
        rwp_reads_left: u32,
        /// Priority and enable writes made while RWP was still set.
        early_writes: std::vec::Vec<u64>,
        ctlr_reads: u32,
    }

    impl GicHardware for SlowRedistributor {
        fn read(&mut self, address: u64, size: u64) -> u64 {
            if address == RD {
                self.ctlr_reads += 1;
                if self.rwp_reads_left > 0 {
                    self.rwp_reads_left -= 1;
                    return GICR_CTLR_RWP as u64;
                }
                return 0;
            }
            self.memory.read(address, size)
        }
        fn write(&mut self, address: u64, size: u64, value: u64) {
            let priority_or_enable = address == RD + 0x1_0100 || address >= RD + 0x1_0400;
            if self.rwp_reads_left > 0 && priority_or_enable {
                self.early_writes.push(address);
            }
            if address == RD + 0x1_0180 || address == RD + 0x1_0380 {
                self.rwp_reads_left = 3;
            }
            self.memory.write(address, size, value);
        }
    }

    #[test]
    fn redistributor_init_waits_for_gicr_ctlr_rwp() {
        assert_eq!(GICR_CTLR_RWP, 1 << 3, "GICR_CTLR.RWP");
        assert_eq!(GICD_CTLR_RWP, 1 << 31, "GICD_CTLR.RWP");
        let mut hw = SlowRedistributor::default();
        init_redistributor(&mut hw, RD, DEFAULT_MAINTENANCE_INTID, 0x80).unwrap();
        // R7-8: hv polled bit 31 (UWP), saw it clear at once and wrote the
        // priorities and enables while the disables were still pending.
        assert!(
            hw.early_writes.is_empty(),
            "written before RWP cleared: {:x?}",
            hw.early_writes
        );
        assert_eq!(hw.ctlr_reads, 4);
        assert_eq!(
            hw.memory.writes.last(),
            Some(&(RD + 0x1_0100, 4, 1 | 1 << DEFAULT_MAINTENANCE_INTID as u64))
        );
        assert_eq!(hw.memory.read(RD + 0x1_0400, 1), 0x80, "kick SGI");
        assert_eq!(hw.memory.read(RD + 0x1_0419, 1), 0x80, "maintenance PPI");
        assert_eq!(hw.memory.read(RD + 0x1_041b, 1), DEFAULT_PRIORITY as u64);
        // A redistributor that never finishes is an error, not a hang.
        let mut stuck = SlowRedistributor {
            rwp_reads_left: u32::MAX,
            ..Default::default()
        };
        assert!(wait_for_rwp(&mut stuck, RD, GICR_CTLR_RWP).is_err());
    }

    #[test]
    fn active_priority_registers_follow_the_implemented_bits() {
        // QEMU: ICC_CTLR_EL1.PRIbits = 4 and ICH_VTR_EL2 0x9000_0003
        // (PRIbits = PREbits = 4): 5 bits, one register each.
        assert_eq!(physical_priority_bits(4 << 8), 5);
        assert_eq!(virtual_preemption_bits(0x9000_0003), 5);
        assert_eq!(active_priority_registers(5), 1);
        // PREbits 5 and 6: 6 and 7 preemption bits.
        assert_eq!(virtual_preemption_bits(5 << 26), 6);
        assert_eq!(active_priority_registers(6), 2);
        assert_eq!(virtual_preemption_bits(6 << 26 | 7 << 29), 7);
        assert_eq!(active_priority_registers(7), 4);
        // 8 priority bits (ICC_CTLR_EL1.PRIbits = 7): four registers.
        assert_eq!(physical_priority_bits(7 << 8 | 1 << 1), 8);
        assert_eq!(active_priority_registers(8), 4);
    }

    #[test]
    fn another_vcpus_sgi_enable_or_pending_asks_for_a_kick() {
        use RegisterAction::SgiPpi;
        assert!(owner_must_refill(SgiPpi(SetClear::EnableSet), Some(1 << 3)));
        assert!(owner_must_refill(
            SgiPpi(SetClear::PendingSet),
            Some(0x8000)
        ));
        assert!(
            !owner_must_refill(SgiPpi(SetClear::EnableSet), Some(1 << 27)),
            "PPI bits only: the hardware delivers those"
        );
        assert!(!owner_must_refill(
            SgiPpi(SetClear::EnableClear),
            Some(0xffff)
        ));
        assert!(!owner_must_refill(SgiPpi(SetClear::PendingSet), None));
        assert!(!owner_must_refill(RegisterAction::Forward, Some(0xffff)));
        // Made active: SGIs and PPIs both wait for the owner's refill.
        assert!(owner_must_refill(SgiPpi(SetClear::ActiveSet), Some(1 << 3)));
        assert!(owner_must_refill(
            SgiPpi(SetClear::ActiveSet),
            Some(1 << 27)
        ));
        // Cleared: the owner applies the clear to what it holds (R27-1).
        assert!(owner_must_refill(
            SgiPpi(SetClear::ActiveClear),
            Some(1 << 3)
        ));
        assert!(owner_must_refill(
            SgiPpi(SetClear::PendingClear),
            Some(1 << 27)
        ));
        assert!(!owner_must_refill(SgiPpi(SetClear::ActiveClear), Some(0)));
    }

    #[test]
    fn redistributor_map() {
        assert_eq!(redistributor(0x8), RegisterAction::ReadMasked(0b1001));
        assert_eq!(redistributor(0xc), RegisterAction::ReadOnly);
        assert_eq!(
            redistributor(0x70),
            RegisterAction::Fixed(0),
            "no LPI tables"
        );
        assert_eq!(
            redistributor(0x1_0100),
            RegisterAction::SgiPpi(SetClear::EnableSet)
        );
        assert_eq!(
            redistributor(0x1_0380),
            RegisterAction::SgiPpi(SetClear::ActiveClear)
        );
        assert_eq!(
            redistributor(0x1_0403),
            RegisterAction::SgiPriority { first: 3 }
        );
        assert_eq!(
            redistributor(0x1_0418),
            RegisterAction::PpiPriority { first: 24 }
        );
        assert_eq!(redistributor(0x1_0c00), RegisterAction::Fixed(0xaaaa_aaaa));
    }

    #[test]
    fn guest_cannot_touch_hv_ppis() {
        let maintenance = 1 << DEFAULT_MAINTENANCE_INTID;
        assert_eq!(
            split_sgi_ppi(0xffff_ffff, maintenance),
            (0xffff, 0xfdff_0000)
        );
        assert_eq!(split_sgi_ppi(1 << 27, maintenance), (0, 1 << 27));
    }

    /// A GIC as byte-addressed memory, recording every write.
    #[derive(Default)]
    struct FakeGic {
        bytes: std::collections::BTreeMap<u64, u8>,
        writes: std::vec::Vec<(u64, u64, u64)>,
    }

    extern crate std;

    impl GicHardware for FakeGic {
        fn read(&mut self, address: u64, size: u64) -> u64 {
            (0..size)
                .map(|k| (*self.bytes.get(&(address + k)).unwrap_or(&0) as u64) << (8 * k))
                .sum()
        }
        fn write(&mut self, address: u64, size: u64, value: u64) {
            self.writes.push((address, size, value));
            for k in 0..size {
                self.bytes.insert(address + k, (value >> (8 * k)) as u8);
            }
        }
    }

    const RD: u64 = 0x080a_0000;
    const MAINTENANCE: u32 = 1 << DEFAULT_MAINTENANCE_INTID;

    fn guest(
        offset: u64,
        size: u64,
        write: Option<u64>,
        sgis: &VirtualSgis,
        hw: &mut FakeGic,
    ) -> u64 {
        perform(
            redistributor(offset),
            RD + offset,
            size,
            write,
            sgis,
            MAINTENANCE,
            &mut NothingHeld,
            hw,
        )
    }

    #[test]
    fn linux_gic_cpu_init_on_the_fake() {
        let (sgis, mut hw) = (VirtualSgis::new(), FakeGic::default());
        // hv enabled its kick SGI and the maintenance PPI in hardware.
        hw.write(RD + 0x1_0100, 4, 1 | MAINTENANCE as u64);
        hw.writes.clear();
        // Linux: ICACTIVER0 = ICENABLER0 = ~0, then enables SGIs and PPI 27.
        guest(0x1_0380, 4, Some(0xffff_ffff), &sgis, &mut hw);
        guest(0x1_0180, 4, Some(0xffff_ffff), &sgis, &mut hw);
        guest(0x1_0100, 4, Some(0xffff), &sgis, &mut hw);
        guest(0x1_0100, 4, Some(1 << 27), &sgis, &mut hw);
        // No hardware write ever carried an SGI bit or the maintenance PPI.
        for &(_, _, value) in &hw.writes {
            assert_eq!(value & (0xffff | MAINTENANCE as u64), 0, "{:x?}", hw.writes);
        }
        assert_eq!(hw.writes.last(), Some(&(RD + 0x1_0100, 4, 1 << 27)));
        // The guest reads its own view: SGIs from hv, PPIs from hardware.
        hw.bytes.insert(RD + 0x1_0100 + 3, 0x08); // PPI 27 enabled in hardware
        hw.bytes
            .insert(RD + 0x1_0100 + 3, 0x08 | (MAINTENANCE >> 24) as u8);
        assert_eq!(guest(0x1_0100, 4, None, &sgis, &mut hw), 0x0800_ffff);
        // SGI priorities are virtual, PPI priorities reach the hardware
        // except the maintenance PPI's.
        guest(0x1_0400, 4, Some(0x8090_a0b0), &sgis, &mut hw);
        assert_eq!(sgis.priority(1), 0xa0);
        assert_eq!(guest(0x1_0400, 4, None, &sgis, &mut hw), 0x8090_a0b0);
        guest(0x1_0418, 4, Some(0xa0a0_a0a0), &sgis, &mut hw);
        assert_eq!(
            hw.read(RD + 0x1_0418, 4),
            0xa0a0_00a0,
            "INTID 25's byte skipped"
        );
        hw.writes.clear();
        guest(0x1_0419, 1, Some(0xff), &sgis, &mut hw);
        assert!(hw.writes.is_empty(), "priority of PPI 25 is hv's");
        // Registers hv keeps: writes vanish, reads are masked or fixed.
        hw.bytes.insert(RD + 0x8, 0x19);
        assert_eq!(
            guest(0x8, 4, None, &sgis, &mut hw),
            0x10,
            "PLPIS and DirectLPI hidden"
        );
        guest(0x14, 4, Some(0x2), &sgis, &mut hw);
        assert!(hw.writes.is_empty(), "WAKER is hv's");
        assert_eq!(guest(0x1_0080, 4, None, &sgis, &mut hw), 0xffff_ffff);
        assert_eq!(
            guest(0x1_0080, 2, None, &sgis, &mut hw),
            0xffff,
            "masked to the access size"
        );
    }

    #[test]
    fn distributor_forwarding_on_the_fake() {
        let (sgis, mut hw) = (VirtualSgis::new(), FakeGic::default());
        let d = 0x0800_0000;
        let access = |offset, size, write, hw: &mut FakeGic| {
            perform(
                distributor(offset),
                d + offset,
                size,
                write,
                &sgis,
                MAINTENANCE,
                &mut NothingHeld,
                hw,
            )
        };
        access(0x6108, 8, Some(0x1_0000_0203), &mut hw);
        assert_eq!(
            hw.read(d + 0x6108, 8),
            0x1_0000_0203,
            "IROUTER reaches the hardware"
        );
        access(0x0000, 4, Some(0), &mut hw);
        assert_eq!(hw.writes.len(), 1, "GICD_CTLR stays hv's");
        hw.bytes.insert(d + 0x4 + 2, 0x03);
        assert_eq!(access(0x0004, 4, None, &mut hw), 0, "no LPIs or MBIs");
        assert_eq!(access(0x0f00, 4, None, &mut hw), 0);
    }

    /// Four list registers in memory; ELRSR derived from their state.
    /// hv uses `used` of them (all four when None).
    #[derive(Default)]
    struct FakeLrs {
        lrs: [u64; 4],
        underflow: bool,
        used: Option<usize>,
    }

    impl ListRegisters for FakeLrs {
        fn count(&self) -> usize {
            self.used.unwrap_or(4)
        }
        /// ICH_ELRSR_EL2: invalid, and not a software entry with EOI
        /// (that one waits for hv's EOI maintenance).
        fn empty(&mut self) -> u32 {
            (0..4)
                .filter(|&n| {
                    let lr = self.lrs[n];
                    lr >> 62 == 0 && (lr & LR_HW != 0 || lr & LR_EOI == 0)
                })
                .map(|n| 1 << n)
                .sum()
        }
        fn read(&mut self, n: usize) -> u64 {
            self.lrs[n]
        }
        fn write(&mut self, n: usize, value: u64) {
            self.lrs[n] = value;
        }
        fn set_underflow_interrupt(&mut self, on: bool) {
            self.underflow = on;
        }
    }

    #[test]
    fn list_registers_fill_overflow_and_merge() {
        let (mut lrs, sgis, mut backlog) = (FakeLrs::default(), VirtualSgis::new(), Backlog::new());
        sgis.set_clear(SetClear::EnableSet, 0xffff);
        sgis.raise(1);
        backlog.extend([27u16, 33, 40, 41]);
        fill_list_registers(&mut lrs, &sgis, &mut backlog, |_| 0xa0);
        // SGI 1 first, then the backlog in order; one interrupt left over.
        assert_eq!(lrs.lrs[0], list_register(1, None, DEFAULT_PRIORITY));
        assert_eq!(lrs.lrs[1], list_register(27, Some(27), 0xa0));
        assert_eq!(lrs.lrs[3], list_register(40, Some(40), 0xa0));
        assert_eq!(backlog.as_slice(), &[41]);
        assert!(lrs.underflow, "a refill is needed");
        // The guest takes SGI 1 (active) and it is raised again: the same
        // list register becomes active and pending, no duplicate.
        lrs.lrs[0] = (lrs.lrs[0] & !(3 << 62)) | 2 << 62;
        sgis.raise(1);
        fill_list_registers(&mut lrs, &sgis, &mut backlog, |_| 0xa0);
        assert_eq!(lrs.lrs[0] >> 62, 0b11);
        assert_eq!(backlog.as_slice(), &[41], "still no free register");
        // The guest finishes 27 and 33: 41 goes in, nothing is left.
        lrs.lrs[1] = 0;
        lrs.lrs[2] = 0;
        fill_list_registers(&mut lrs, &sgis, &mut backlog, |_| 0xa0);
        assert_eq!(lrs.lrs[1], list_register(41, Some(41), 0xa0));
        assert!(backlog.is_empty() && !lrs.underflow);
        // Full registers: a new SGI waits, pending, with underflow asked.
        lrs.lrs[2] = list_register(50, Some(50), 0);
        sgis.raise(2);
        fill_list_registers(&mut lrs, &sgis, &mut backlog, |_| 0xa0);
        assert!(lrs.underflow && sgis.has_ready());
    }

    #[test]
    fn underflow_is_not_asked_for_while_a_list_register_is_free() {
        let (mut lrs, sgis, mut backlog) = (FakeLrs::default(), VirtualSgis::new(), Backlog::new());
        sgis.set_clear(SetClear::EnableSet, 0xffff);
        backlog.push(27);
        // Another CPU raises SGI 3 after the SGIs were taken (here: while
        // the backlog moves in). Two list registers stay free, so asking
        // for the underflow interrupt would raise it at once; the sender's
        // kick brings this CPU back instead.
        fill_list_registers(&mut lrs, &sgis, &mut backlog, |_| {
            sgis.raise(3);
            0xa0
        });
        assert!(sgis.has_ready(), "SGI 3 waits for the kick");
        assert!(
            !lrs.underflow,
            "underflow asked for with free list registers"
        );
        // The kick's refill places it.
        fill_list_registers(&mut lrs, &sgis, &mut backlog, |_| 0xa0);
        assert_eq!(lrs.lrs[1], list_register(3, None, DEFAULT_PRIORITY));
        assert!(!sgis.has_ready() && !lrs.underflow);
    }

    fn pending_lrs(priority: u8) -> [u64; 4] {
        core::array::from_fn(|n| list_register(40 + n as u32, Some(40 + n as u32), priority))
    }

    /// Review 8 H4: every list register holds a pending interrupt the
    /// guest masks by priority; a higher-priority one (a pseudo-NMI SPI, a
    /// backtrace IPI) must not wait behind them.
    #[test]
    fn a_higher_priority_interrupt_displaces_a_pending_lower_one() {
        let (mut lrs, sgis, mut backlog) = (FakeLrs::default(), VirtualSgis::new(), Backlog::new());
        sgis.set_clear(SetClear::EnableSet, 0xffff);
        let priorities = |intid: u32| if intid == 60 { 0x20 } else { 0xa0 };
        lrs.lrs = pending_lrs(0xa0);
        lrs.lrs[1] = list_register(41, Some(41), 0xc0);
        backlog.extend([44u16, 60]);
        fill_list_registers(&mut lrs, &sgis, &mut backlog, priorities);
        // 60 takes the lowest-priority pending list register (41's), which
        // goes back to the front of the backlog, still acknowledged.
        assert_eq!(lrs.lrs[1], list_register(60, Some(60), 0x20));
        assert_eq!(backlog.as_slice(), &[41, 44]);
        assert!(lrs.underflow);
        // An SGI of higher priority: a pending SGI in a list register goes
        // back to its pending bit.
        sgis.set_priority(5, 0x10);
        lrs.lrs[2] = list_register(3, None, 0xc0);
        sgis.raise(5);
        fill_list_registers(&mut lrs, &sgis, &mut backlog, priorities);
        assert_eq!(lrs.lrs[2], list_register(5, None, 0x10));
        assert_eq!(sgis.ready(), 1 << 3, "SGI 3 pending again");
        assert!(lrs.underflow);
        // Active list registers and equal priorities stay.
        let mut lrs = FakeLrs {
            lrs: pending_lrs(0xa0).map(active),
            ..Default::default()
        };
        lrs.lrs[0] = list_register(40, Some(40), 0x20);
        let mut backlog = Backlog::new();
        backlog.extend([50u16, 60]);
        fill_list_registers(&mut lrs, &VirtualSgis::new(), &mut backlog, priorities);
        assert_eq!(lrs.lrs[0], list_register(40, Some(40), 0x20));
        assert_eq!(lrs.lrs[1..], pending_lrs(0xa0).map(active)[1..]);
        assert_eq!(backlog.as_slice(), &[50, 60]);
        assert!(lrs.underflow);
    }

    #[test]
    fn list_register_counts() {
        let vtr_with = |n: u64| 0x9000_0000 | (n - 1);
        let count = |implemented, used| Ok(ListRegisterCount { implemented, used });
        assert_eq!(list_register_count(vtr_with(4), None), count(4, 4));
        assert_eq!(list_register_count(vtr_with(16), None), count(16, 16));
        assert_eq!(list_register_count(vtr_with(4), Some(2)), count(4, 2));
        assert_eq!(
            list_register_count(vtr_with(4), Some(8)),
            count(4, 4),
            "a limit above the hardware's count changes nothing"
        );
        assert!(list_register_count(vtr_with(1), None).is_err());
        assert!(list_register_count(vtr_with(4), Some(1)).is_err());
    }

    /// Review 8 H3: with hv.list-registers=2 on a CPU with four, the two
    /// hv never fills are emptied too, at CPU start and at power-off.
    #[test]
    fn every_implemented_list_register_is_cleared() {
        let count = list_register_count(0x9000_0003, Some(2)).unwrap();
        let stale = list_register(44, Some(44), 0xa0);
        let mut lrs = FakeLrs {
            lrs: [stale; 4],
            used: Some(2),
            ..Default::default()
        };
        clear_list_registers(&mut lrs, count);
        assert_eq!(lrs.lrs, [0; 4]);
        // Power-off: hv's own entries (LR0, LR1) and queued interrupts are
        // deactivated; stale entries above the limit are hv's to clear,
        // not its activations.
        let mut cpu = ModelCpu::new();
        cpu.lrs = FakeLrs {
            lrs: [
                active(list_register(33, Some(33), 0xa0)),
                list_register(2, None, 0xa0),
                stale,
                stale,
            ],
            used: Some(2),
            ..Default::default()
        };
        cpu.active.extend([33, 40, 22]);
        let mut backlog = Backlog::new();
        backlog.push(40);
        // PPI 22 and SGI 4 made active by the guest, not yet placed.
        let sgis = VirtualSgis::new();
        sgis.set_active(1 << 22 | 1 << 4);
        release_alone(&mut cpu, &sgis, &mut backlog, count);
        assert_eq!(cpu.lrs.lrs, [0; 4]);
        assert!(cpu.active.is_empty() && backlog.is_empty());
        assert_eq!(sgis.unplaced_active(), 0);
    }

    /// One CPU of a GICv3 as far as hv's interrupt taking sees it: the
    /// physical CPU interface (EOImode=1) over edge-triggered SGIs and the
    /// level-sensitive maintenance PPI, whose line is the underflow
    /// condition of the list registers (ICH_MISR_EL2.U: UIE set and at
    /// most one valid entry), as in QEMU's GICv3 and in hardware.
    struct ModelCpu {
        lrs: FakeLrs,
        /// Edge-triggered interrupts latched pending.
        pending: std::collections::BTreeSet<u32>,
        /// Acknowledged and not yet deactivated.
        active: std::collections::BTreeSet<u32>,
        maintenance: u32,
        acknowledged: std::vec::Vec<u32>,
        /// The order of acknowledges ("IAR"), deactivations ("DIR"),
        /// synchronizations ("ISB": DSB and ISB) and list register or
        /// ICH_HCR_EL2 accesses ("LR").
        trace: std::vec::Vec<&'static str>,
    }

    impl ModelCpu {
        fn new() -> Self {
            Self {
                lrs: FakeLrs::default(),
                pending: Default::default(),
                active: Default::default(),
                maintenance: DEFAULT_MAINTENANCE_INTID,
                acknowledged: std::vec::Vec::new(),
                trace: std::vec::Vec::new(),
            }
        }

        /// ICH_MISR_EL2.U (UIE and at most one valid entry) or .EOI
        /// (ICH_EISR_EL2 not zero).
        fn maintenance_line(&mut self) -> bool {
            let valid = 4 - self.lrs.lrs.iter().filter(|&&lr| lr >> 62 == 0).count();
            let eoi = self
                .lrs
                .lrs
                .iter()
                .any(|&lr| lr >> 62 == 0 && lr & LR_HW == 0 && lr & LR_EOI != 0);
            (self.lrs.underflow && valid <= 1) || eoi
        }
    }

    impl PhysicalCpuInterface for ModelCpu {
        fn acknowledge(&mut self) -> u32 {
            // A loop that keeps acknowledging is hv stuck at EL2: fail the
            // test instead of hanging it.
            assert!(
                self.acknowledged.len() < 100,
                "hv keeps acknowledging: {:?}...",
                &self.acknowledged[..10]
            );
            self.trace.push("IAR");
            let level = self.maintenance_line();
            let mut candidates = self.pending.iter().copied().collect::<std::vec::Vec<_>>();
            if level {
                candidates.push(self.maintenance);
            }
            match candidates
                .into_iter()
                .filter(|i| !self.active.contains(i))
                .min()
            {
                Some(intid) => {
                    self.pending.remove(&intid);
                    self.active.insert(intid);
                    self.acknowledged.push(intid);
                    intid
                }
                None => 1023,
            }
        }
        fn drop_priority(&mut self, _intid: u32) {}
        fn deactivate(&mut self, intid: u32) {
            self.trace.push("DIR");
            assert!(self.active.remove(&intid), "INTID {intid} was not active");
        }
        fn synchronize(&mut self) {
            self.trace.push("ISB");
        }
    }

    impl ListRegisters for ModelCpu {
        fn count(&self) -> usize {
            self.lrs.count()
        }
        fn empty(&mut self) -> u32 {
            self.trace.push("LR");
            self.lrs.empty()
        }
        fn read(&mut self, n: usize) -> u64 {
            self.trace.push("LR");
            self.lrs.read(n)
        }
        fn write(&mut self, n: usize, value: u64) {
            self.trace.push("LR");
            self.lrs.write(n, value)
        }
        fn set_underflow_interrupt(&mut self, on: bool) {
            self.trace.push("LR");
            self.lrs.set_underflow_interrupt(on)
        }
    }

    #[test]
    fn underflow_maintenance_is_deactivated_after_the_refill() {
        let (mut cpu, sgis, mut backlog) = (ModelCpu::new(), VirtualSgis::new(), Backlog::new());
        sgis.set_clear(SetClear::EnableSet, 0xffff);
        // Six interrupts for four list registers: two wait, underflow asked.
        backlog.extend([27u16, 33, 40, 41, 42, 43]);
        fill_list_registers(&mut cpu, &sgis, &mut backlog, |_| 0xa0);
        assert!(cpu.lrs.underflow && !cpu.maintenance_line());
        // The guest deactivates three of them: one valid entry is left, and
        // the maintenance line goes high.
        for n in 0..3 {
            cpu.lrs.lrs[n] = 0;
        }
        assert!(cpu.maintenance_line());
        take_interrupts(
            &mut cpu,
            DEFAULT_MAINTENANCE_INTID,
            &sgis,
            &SpiHolders::new(),
            0,
            &mut backlog,
            |_| 0xa0,
        );
        // Taken once, deactivated after the two waiting interrupts moved
        // in: the line is low, so it is not pending again.
        assert_eq!(cpu.acknowledged, [DEFAULT_MAINTENANCE_INTID]);
        assert!(cpu.active.is_empty(), "maintenance left active");
        assert!(backlog.is_empty() && !cpu.lrs.underflow);
        assert!(!cpu.maintenance_line());
        assert_eq!(cpu.lrs.lrs[0], list_register(42, Some(42), 0xa0));
        assert_eq!(cpu.lrs.lrs[1], list_register(43, Some(43), 0xa0));
    }

    #[test]
    fn kick_and_guest_interrupts_are_taken_in_one_pass() {
        let (mut cpu, sgis, mut backlog) = (ModelCpu::new(), VirtualSgis::new(), Backlog::new());
        sgis.set_clear(SetClear::EnableSet, 0xffff);
        // Another CPU raised SGI 2 and kicked; the timer PPI fired too.
        sgis.raise(2);
        cpu.pending.extend([KICK_SGI, 27]);
        take_interrupts(
            &mut cpu,
            DEFAULT_MAINTENANCE_INTID,
            &sgis,
            &SpiHolders::new(),
            0,
            &mut backlog,
            |_| 0xa0,
        );
        assert_eq!(cpu.acknowledged, [KICK_SGI, 27]);
        // The kick is done with; the timer PPI stays active for the guest
        // to deactivate through its list register's HW bit.
        assert_eq!(
            cpu.active.iter().copied().collect::<std::vec::Vec<_>>(),
            [27]
        );
        assert_eq!(cpu.lrs.lrs[0], list_register(2, None, DEFAULT_PRIORITY));
        assert_eq!(cpu.lrs.lrs[1], list_register(27, Some(27), 0xa0));
        assert!(backlog.is_empty() && !cpu.lrs.underflow);
    }

    fn active(lr: u64) -> u64 {
        (lr & !(3 << 62)) | 2 << 62
    }

    fn holding(lrs: &FakeLrs, intid: u64) -> usize {
        lrs.lrs
            .iter()
            .filter(|&&lr| lr >> 62 != 0 && lr & 0xffff_ffff == intid)
            .count()
    }

    #[test]
    fn a_physical_intid_is_never_in_two_list_registers() {
        let (mut lrs, sgis, mut backlog) = (FakeLrs::default(), VirtualSgis::new(), Backlog::new());
        // R7-11: SPI 33 is active in the guest (LR0) and, however it came
        // there, also queued, with SPI 40 after it. The queued 33 is
        // merged into LR0 (whose HW deactivation ends hv's activation),
        // not placed in a second list register, and not kept back either.
        lrs.lrs[0] = active(list_register(33, Some(33), 0xa0));
        backlog.extend([33u16, 40]);
        fill_list_registers(&mut lrs, &sgis, &mut backlog, |_| 0xa0);
        assert_eq!(holding(&lrs, 33), 1, "{:x?}", lrs.lrs);
        assert_eq!(lrs.lrs[1], list_register(40, Some(40), 0xa0), "40 passes");
        assert!(backlog.is_empty(), "nothing waits: {backlog:?}");
        assert!(!lrs.underflow, "list registers are free");
        // Also with every list register in use (nothing could be placed).
        lrs.lrs[2] = list_register(41, Some(41), 0xa0);
        lrs.lrs[3] = list_register(42, Some(42), 0xa0);
        backlog.extend([33u16, 43]);
        fill_list_registers(&mut lrs, &sgis, &mut backlog, |_| 0xa0);
        assert_eq!(holding(&lrs, 33), 1, "{:x?}", lrs.lrs);
        assert_eq!(backlog.as_slice(), &[43]);
        assert!(lrs.underflow);
    }

    /// Review 8 H5 (the reviewer's test, with the state reached through
    /// `take_interrupts`): SPI 40 is active in the guest (LR0); another
    /// vCPU's GICD_ICACTIVER1 deactivated it and it fires again. It must
    /// not wait in the backlog for LR0 while three list registers are free:
    /// nothing would bring hv back for it.
    #[test]
    fn an_interrupt_taken_again_while_in_a_list_register_is_merged() {
        let (mut cpu, sgis, mut backlog) = (ModelCpu::new(), VirtualSgis::new(), Backlog::new());
        cpu.lrs.lrs[0] = active(list_register(40, Some(40), 0xa0));
        cpu.active.insert(40);
        // The foreign deactivation, and the interrupt again.
        cpu.active.remove(&40);
        cpu.pending.insert(40);
        take_interrupts(
            &mut cpu,
            DEFAULT_MAINTENANCE_INTID,
            &sgis,
            &SpiHolders::new(),
            0,
            &mut backlog,
            |_| 0xa0,
        );
        assert_eq!(cpu.acknowledged, [40]);
        assert!(backlog.is_empty(), "SPI 40 queued: {backlog:?}");
        assert_eq!(cpu.lrs.lrs[0], active(list_register(40, Some(40), 0xa0)));
        assert_eq!(holding(&cpu.lrs, 40), 1);
        // The guest finishes SPI 40: LR0's HW bit deactivates the physical
        // interrupt, which ends the new activation; nothing is left over.
        cpu.lrs.lrs[0] = 0;
        cpu.deactivate(40);
        let stranded = !backlog.is_empty() && !cpu.maintenance_line() && cpu.pending.is_empty();
        assert!(
            !stranded,
            "SPI 40 is stranded in the backlog: free list registers, no maintenance \
             interrupt (underflow asked: {}), nothing pending at the CPU interface",
            cpu.lrs.underflow
        );
        assert!(cpu.active.is_empty() && backlog.is_empty());
        // The same with every list register in use: queued, the entry
        // would wait with the underflow interrupt asked for, and the
        // guest's deactivation of LR0 would end its activation before the
        // refill placed it (a HW entry for an inactive physical interrupt).
        for n in 0..4 {
            cpu.lrs.lrs[n] = active(list_register(40 + n as u32, Some(40 + n as u32), 0xa0));
        }
        cpu.pending.insert(40);
        cpu.acknowledged.clear();
        take_interrupts(
            &mut cpu,
            DEFAULT_MAINTENANCE_INTID,
            &sgis,
            &SpiHolders::new(),
            0,
            &mut backlog,
            |_| 0xa0,
        );
        assert_eq!(cpu.acknowledged, [40]);
        assert!(backlog.is_empty(), "SPI 40 queued: {backlog:?}");
        assert!(cpu.active.contains(&40));
        for n in 0..3 {
            cpu.lrs.lrs[n] = 0;
        }
        cpu.deactivate(40);
        fill_list_registers(&mut cpu, &sgis, &mut backlog, |_| 0xa0);
        assert_eq!(holding(&cpu.lrs, 40), 0, "{:x?}", cpu.lrs.lrs);
    }

    /// Review 8 H1: the acknowledge loop ends in an ISB before the refill
    /// touches anything, so the refill's loads of the pending SGIs come
    /// after the kick's acknowledgement.
    #[test]
    fn the_refill_is_synchronized_after_the_acknowledgements() {
        let (mut cpu, sgis, mut backlog) = (ModelCpu::new(), VirtualSgis::new(), Backlog::new());
        sgis.set_clear(SetClear::EnableSet, 0xffff);
        sgis.raise(2);
        cpu.pending.extend([KICK_SGI, 27]);
        take_interrupts(
            &mut cpu,
            DEFAULT_MAINTENANCE_INTID,
            &sgis,
            &SpiHolders::new(),
            0,
            &mut backlog,
            |_| 0xa0,
        );
        let last_acknowledge = cpu.trace.iter().rposition(|&t| t == "IAR").unwrap();
        assert_eq!(
            cpu.trace.get(last_acknowledge + 1),
            Some(&"ISB"),
            "{:?}",
            cpu.trace
        );
        // And one before the first (the SPI gate's: `take_interrupts`).
        let first_acknowledge = cpu.trace.iter().position(|&t| t == "IAR").unwrap();
        assert_eq!(
            first_acknowledge.checked_sub(1).map(|i| cpu.trace[i]),
            Some("ISB")
        );
        assert_eq!(cpu.trace.iter().filter(|&&t| t == "ISB").count(), 2);
        assert_eq!(cpu.lrs.lrs[0], list_register(2, None, DEFAULT_PRIORITY));
    }

    /// Review 56 R56-1: the guest ended two software entries with EOI
    /// (PPI 27, SPI 40: physically active, hv's acknowledgements), which
    /// raises the EOI maintenance interrupt. hv deactivates both and the
    /// maintenance interrupt, and synchronizes once, after all three
    /// ICC_DIR_EL1 writes.
    #[test]
    fn an_eoi_entry_ended_by_the_maintenance_interrupt_is_synchronized() {
        let (mut cpu, sgis, mut backlog) = (ModelCpu::new(), VirtualSgis::new(), Backlog::new());
        cpu.lrs.lrs[0] = list_register_in(0, 27, None, 0xa0) | LR_EOI;
        cpu.lrs.lrs[2] = list_register_in(0, 40, None, 0xa0) | LR_EOI;
        cpu.active.extend([27, 40]);
        assert!(cpu.maintenance_line());
        take_interrupts(
            &mut cpu,
            DEFAULT_MAINTENANCE_INTID,
            &sgis,
            &SpiHolders::new(),
            0,
            &mut backlog,
            |_| 0xa0,
        );
        assert_eq!(cpu.acknowledged, [DEFAULT_MAINTENANCE_INTID]);
        assert!(cpu.active.is_empty(), "left active: {:?}", cpu.active);
        assert_eq!(cpu.lrs.lrs, [0; 4]);
        assert!(!cpu.maintenance_line());
        // After the acknowledge loop: its ISB, the three deactivations,
        // then one ISB.
        let last_acknowledge = cpu.trace.iter().rposition(|&t| t == "IAR").unwrap();
        let after = cpu.trace[last_acknowledge..]
            .iter()
            .copied()
            .filter(|&t| t != "LR")
            .collect::<std::vec::Vec<_>>();
        assert_eq!(after, ["IAR", "ISB", "DIR", "DIR", "DIR", "ISB"]);
    }

    #[test]
    fn an_interrupt_taken_again_while_queued_is_queued_once() {
        let (mut cpu, sgis, mut backlog) = (ModelCpu::new(), VirtualSgis::new(), Backlog::new());
        // SPI 33 is queued and every list register is in use. Another
        // vCPU's GICD_ICACTIVER1 deactivated it, and it fires again, over
        // and over (a guest growing hv's backlog).
        for n in 0..4 {
            cpu.lrs.lrs[n] = active(list_register(40 + n as u32, Some(40 + n as u32), 0xa0));
        }
        backlog.push(33);
        for _ in 0..3 {
            cpu.active.remove(&33);
            cpu.pending.insert(33);
            take_interrupts(
                &mut cpu,
                DEFAULT_MAINTENANCE_INTID,
                &sgis,
                &SpiHolders::new(),
                0,
                &mut backlog,
                |_| 0xa0,
            );
            assert_eq!(cpu.acknowledged, [33]);
            assert_eq!(backlog.as_slice(), &[33]);
            // The queued entry stands for the new activation.
            assert!(cpu.active.contains(&33));
            cpu.acknowledged.clear();
        }
    }

    /// A guest write to the distributor at `offset` from vCPU 0, whose CPU
    /// is `cpu` with `backlog`.
    fn distributor_write(
        cpu: &mut ModelCpu,
        backlog: &mut Backlog,
        hw: &mut FakeGic,
        offset: u64,
        value: u64,
    ) {
        let sgis = VirtualSgis::new();
        let mut held = Held { cpu, backlog };
        perform(
            distributor(offset),
            0x0800_0000 + offset,
            4,
            Some(value),
            &sgis,
            MAINTENANCE,
            &mut held,
            hw,
        );
    }

    #[test]
    fn guest_clear_active_of_a_held_interrupt_deactivates_its_list_register() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        // hv acknowledged SPIs 33 (the guest has it active in LR0) and 40
        // (queued); 45 is not hv's.
        cpu.active.extend([33, 40]);
        cpu.lrs.lrs[0] = active(list_register(33, Some(33), 0xa0));
        backlog.push(40);
        // GICD_ICACTIVER1: INTIDs 32-63.
        let bits = 1 << (33 - 32) | 1 << (40 - 32) | 1 << (45 - 32);
        distributor_write(&mut cpu, &mut backlog, &mut hw, 0x384, bits);
        // 33: the list register is done with and the physical interrupt
        // deactivated, as the guest's own deactivation would.
        assert_eq!(cpu.lrs.lrs[0], 0);
        assert!(!cpu.active.contains(&33));
        // 40 is pending for the guest, not active: nothing to do, and
        // hv's activation stays.
        assert_eq!(backlog.as_slice(), &[40]);
        assert!(cpu.active.contains(&40));
        // Nothing reaches the hardware: 45 is held by no vCPU (the only
        // one is this), so it is physically inactive; a clear-active of
        // an SPI another vCPU holds is that vCPU's to apply (`perform_spi`).
        assert!(hw.writes.is_empty(), "{:x?}", hw.writes);
        // If 33 fires again now, it gets one list register.
        cpu.pending.insert(33);
        take_interrupts(
            &mut cpu,
            DEFAULT_MAINTENANCE_INTID,
            &VirtualSgis::new(),
            &SpiHolders::new(),
            0,
            &mut backlog,
            |_| 0xa0,
        );
        assert_eq!(holding(&cpu.lrs, 33), 1);
        assert_eq!(holding(&cpu.lrs, 40), 1);
    }

    #[test]
    fn guest_clear_pending_withdraws_a_held_interrupt() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        // 34 pending in LR0, 35 active in LR1, 40 queued: all acknowledged.
        cpu.active.extend([34, 35, 40]);
        cpu.lrs.lrs[0] = list_register(34, Some(34), 0xa0);
        cpu.lrs.lrs[1] = active(list_register(35, Some(35), 0xa0));
        backlog.push(40);
        let bits = 1 << (34 - 32) | 1 << (35 - 32) | 1 << (40 - 32);
        distributor_write(&mut cpu, &mut backlog, &mut hw, 0x284, bits);
        // The pending ones are withdrawn and hv's activations undone; the
        // active one is not pending, so it stays.
        assert_eq!(cpu.lrs.lrs[0], 0);
        assert!(backlog.is_empty());
        assert_eq!(
            cpu.active.iter().copied().collect::<std::vec::Vec<_>>(),
            [35]
        );
        assert_eq!(cpu.lrs.lrs[1], active(list_register(35, Some(35), 0xa0)));
        // Forwarded whole: clearing a physical pending state is harmless.
        assert_eq!(hw.writes, [(0x0800_0284, 4, bits)]);
    }

    #[test]
    fn guest_clear_active_of_its_own_timer_ppi() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        cpu.active.insert(27);
        cpu.lrs.lrs[2] = active(list_register(27, Some(27), 0xa0));
        let sgis = VirtualSgis::new();
        let mut held = Held {
            cpu: &mut cpu,
            backlog: &mut backlog,
        };
        // Linux's CPU bring-up: GICR_ICACTIVER0 = ~0.
        perform(
            redistributor(0x1_0380),
            RD + 0x1_0380,
            4,
            Some(0xffff_ffff),
            &sgis,
            MAINTENANCE,
            &mut held,
            &mut hw,
        );
        assert_eq!(cpu.lrs.lrs[2], 0);
        assert!(cpu.active.is_empty());
        assert_eq!(
            hw.writes,
            [(
                RD + 0x1_0380,
                4,
                0xffff_0000 & !(1 << 27) & !MAINTENANCE as u64
            )],
            "neither SGIs, nor hv's PPI, nor the held one"
        );
    }

    /// R9-6: the guest's own GICR_ICPENDR0 withdraws a pending SGI a list
    /// register holds (it cleared only the not-yet-placed pending bit), as
    /// it does a PPI; an active and pending SGI stays active; reads of
    /// GICR_ISPENDR0 / GICR_ISACTIVER0 show what the list registers hold,
    /// and GICR_ICACTIVER0 ends an SGI's active state there (no DIR: an SGI
    /// list register has no HW bit). Nothing about SGIs is forwarded.
    #[test]
    fn own_clear_pending_withdraws_a_held_sgi() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        let sgis = VirtualSgis::new();
        sgis.set_clear(SetClear::EnableSet, 0xffff);
        sgis.raise(6); // not yet placed
        cpu.active.insert(27);
        cpu.lrs.lrs[0] = list_register(3, None, 0xa0); // pending
        cpu.lrs.lrs[1] = list_register(27, Some(27), 0xa0);
        cpu.lrs.lrs[2] = active(list_register(4, None, 0xa0)) | LR_STATE_PENDING << 62;
        cpu.lrs.lrs[3] = active(list_register(5, None, 0xa0));
        let mut access = |cpu: &mut ModelCpu, offset, write| {
            let mut held = Held {
                cpu,
                backlog: &mut backlog,
            };
            perform(
                redistributor(offset),
                RD + offset,
                4,
                write,
                &sgis,
                MAINTENANCE,
                &mut held,
                &mut hw,
            )
        };
        // GICR_ISPENDR0 / ISACTIVER0 reads: placed and unplaced SGIs, and
        // PPI 27 pending as its list register holds it (physically it is
        // active, hv's acknowledgement).
        assert_eq!(
            access(&mut cpu, 0x1_0200, None),
            1 << 3 | 1 << 4 | 1 << 6 | 1 << 27
        );
        assert_eq!(access(&mut cpu, 0x1_0300, None), 1 << 4 | 1 << 5);
        // GICR_ICPENDR0 for SGIs 3, 4, 6 and PPI 27.
        let bits = 1 << 3 | 1 << 4 | 1 << 6 | 1 << 27;
        access(&mut cpu, 0x1_0280, Some(bits));
        assert_eq!(cpu.lrs.lrs[0], 0, "SGI 3 withdrawn");
        assert_eq!(cpu.lrs.lrs[1], 0, "PPI 27 withdrawn");
        assert_eq!(
            cpu.lrs.lrs[2],
            active(list_register(4, None, 0xa0)),
            "SGI 4 left active"
        );
        assert_eq!(sgis.take(), None, "SGI 6 cleared before placing");
        assert_eq!(access(&mut cpu, 0x1_0280, None) & 0xffff, 0);
        // GICR_ICACTIVER0 for SGIs 4 and 5.
        access(&mut cpu, 0x1_0380, Some(1 << 4 | 1 << 5));
        assert_eq!(cpu.lrs.lrs[2..], [0, 0]);
        assert_eq!(access(&mut cpu, 0x1_0300, None), 0);
        assert!(cpu.active.is_empty(), "only PPI 27 was deactivated");
        assert_eq!(
            hw.writes,
            [(RD + 0x1_0280, 4, 1 << 27)],
            "only the PPI reaches the hardware"
        );
    }

    /// The guest's own GICR_ISACTIVER0 makes SGIs and PPIs active in its
    /// virtual view: SGI 5 and PPI 27 (held pending in list registers)
    /// become active there (PPI 27's HW list register active only: HW
    /// entries cannot be both), SGI 2 (pending, not placed) and PPI 23 (not
    /// held) take free list registers, SGI 2 active and pending, PPI 23
    /// active with the HW bit after its physical ISACTIVER0 write. Reads
    /// show the list registers' state; GICR_ICACTIVER0 ends it, through
    /// ICC_DIR for the HW one. Before, ISACTIVER0 SGI bits were dropped and
    /// a PPI was only made physically active, with nothing the guest's
    /// deactivation could end.
    #[test]
    fn guest_set_active_sgis_and_ppis_reach_list_registers() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        let sgis = VirtualSgis::new();
        sgis.set_clear(SetClear::EnableSet, 0xffff);
        sgis.raise(2);
        cpu.active.insert(27);
        cpu.lrs.lrs[0] = list_register(5, None, 0xa0);
        cpu.lrs.lrs[1] = list_register(27, Some(27), 0xa0);
        let set = 1 << 2 | 1 << 5 | 1 << 23 | 1 << 27;
        {
            let mut held = Held {
                cpu: &mut cpu,
                backlog: &mut backlog,
            };
            perform(
                redistributor(0x1_0300),
                RD + 0x1_0300,
                4,
                Some(set),
                &sgis,
                MAINTENANCE,
                &mut held,
                &mut hw,
            );
        }
        assert_eq!(
            hw.writes,
            [(RD + 0x1_0300, 4, 1 << 23 | 1 << 27)],
            "the PPIs are made physically active, the SGIs are virtual"
        );
        // hv's own refill, before the guest runs again.
        cpu.active.insert(23);
        fill_list_registers(&mut cpu, &sgis, &mut backlog, |_| 0x80);
        assert_eq!(
            cpu.lrs.lrs[0],
            active(list_register(5, None, 0xa0)) | LR_PENDING
        );
        // PPI 27 was pending in a HW list register (hv acknowledged it):
        // now active and pending, a software entry with EOI (R27-2).
        assert_eq!(
            cpu.lrs.lrs[1],
            list_register_in(LR_STATE_ACTIVE | LR_STATE_PENDING, 27, None, 0xa0) | LR_EOI
        );
        assert_eq!(
            cpu.lrs.lrs[2],
            active(list_register(2, None, 0xa0)) | LR_PENDING
        );
        assert_eq!(cpu.lrs.lrs[3], active(list_register(23, Some(23), 0x80)));
        assert_eq!(sgis.take(), None, "SGI 2's pending state went with it");
        assert_eq!(sgis.unplaced_active(), 0);
        let mut access = |cpu: &mut ModelCpu, offset, write| {
            let mut held = Held {
                cpu,
                backlog: &mut backlog,
            };
            perform(
                redistributor(offset),
                RD + offset,
                4,
                write,
                &sgis,
                MAINTENANCE,
                &mut held,
                &mut hw,
            )
        };
        assert_eq!(access(&mut cpu, 0x1_0300, None), set, "ISACTIVER0");
        assert_eq!(access(&mut cpu, 0x1_0380, None), set, "ICACTIVER0");
        assert_eq!(
            access(&mut cpu, 0x1_0200, None),
            1 << 2 | 1 << 5 | 1 << 27,
            "ISPENDR0"
        );
        // GICR_ICACTIVER0 for SGI 2 and PPI 23.
        access(&mut cpu, 0x1_0380, Some(1 << 2 | 1 << 23));
        assert_eq!(
            cpu.lrs.lrs[2],
            list_register(2, None, 0xa0),
            "pending again"
        );
        assert_eq!(cpu.lrs.lrs[3], 0);
        assert!(!cpu.active.contains(&23), "PPI 23 deactivated (ICC_DIR)");
        // No longer held, PPI 23 shows its physical state, which this fake
        // GIC keeps as last written (it models no ICC_DIR).
        assert_eq!(access(&mut cpu, 0x1_0300, None), 1 << 5 | 1 << 27 | 1 << 23);
    }

    /// With every list register in use, an SGI or PPI made active waits
    /// (shown active, the underflow interrupt asked for) until a refill
    /// finds room; GICR_ICACTIVER0 before that just drops it (the PPI's
    /// physical active state through ICC_DIR_EL1, as for one placed).
    #[test]
    fn guest_set_active_waits_for_a_free_list_register() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        let sgis = VirtualSgis::new();
        fill_every_list_register(&mut cpu);
        let mut access = |cpu: &mut ModelCpu, offset, write| {
            let mut held = Held {
                cpu,
                backlog: &mut backlog,
            };
            perform(
                redistributor(offset),
                RD + offset,
                4,
                write,
                &sgis,
                MAINTENANCE,
                &mut held,
                &mut hw,
            )
        };
        access(&mut cpu, 0x1_0300, Some(1 << 3 | 1 << 20));
        cpu.active.insert(20); // the forwarded GICR_ISACTIVER0 write
        fill_list_registers(&mut cpu, &sgis, &mut Backlog::new(), |_| 0x80);
        assert_eq!(sgis.unplaced_active(), 1 << 3 | 1 << 20);
        assert!(cpu.lrs.underflow, "a refill is asked for");
        assert_eq!(
            access(&mut cpu, 0x1_0300, None),
            1 << 3 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11 | 1 << 20
        );
        access(&mut cpu, 0x1_0380, Some(1 << 3 | 1 << 20));
        assert_eq!(sgis.unplaced_active(), 0);
        assert!(!cpu.active.contains(&20), "PPI 20 deactivated (ICC_DIR)");
        // SGI 3 is no longer active; PPI 20 shows its physical state, which
        // this fake keeps as written to ISACTIVER0 (it models no ICC_DIR).
        assert_eq!(
            access(&mut cpu, 0x1_0300, None),
            1 << 8 | 1 << 9 | 1 << 10 | 1 << 11 | 1 << 20
        );
        assert_eq!(
            hw.writes,
            [(RD + 0x1_0300, 4, 1 << 20)],
            "deactivated once, not forwarded as well"
        );
    }

    /// Reads of a PPI hv holds show the guest's state, not the physical
    /// one (hv's acknowledgement made it physically active): one waiting
    /// in the backlog is pending and not active; one in a list register has
    /// that register's state. A PPI hv does not hold shows its physical
    /// state, and another vCPU's redistributor shows physical state only.
    #[test]
    fn ppi_reads_show_the_virtual_state_of_held_ppis() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        let sgis = VirtualSgis::new();
        // Physically: 30 and 27 active (acknowledged by hv), 29 pending
        // (not yet taken), 28 active (the guest's ISACTIVER0 long ago).
        hw.write(RD + 0x1_0300, 4, 1 << 30 | 1 << 27 | 1 << 28);
        hw.write(RD + 0x1_0200, 4, 1 << 29);
        hw.writes.clear();
        backlog.push(30);
        cpu.lrs.lrs[0] = active(list_register(27, Some(27), 0xa0));
        let mut held = Held {
            cpu: &mut cpu,
            backlog: &mut backlog,
        };
        let mut read = |offset, held: &mut dyn FnMut() -> HeldPpis| {
            struct Fixed<'a>(&'a mut dyn FnMut() -> HeldPpis);
            impl HeldInterrupts for Fixed<'_> {
                fn clear(&mut self, _op: SetClear, _first: u32, bits: u32) -> u32 {
                    bits
                }
                fn sgis(&mut self, _op: SetClear) -> u16 {
                    0
                }
                fn ppis(&mut self, _op: SetClear) -> HeldPpis {
                    (self.0)()
                }
                fn clear_private(
                    &mut self,
                    _op: SetClear,
                    _sgis: &VirtualSgis,
                    _sgi_bits: u16,
                    ppi_bits: u32,
                ) -> u32 {
                    ppi_bits
                }
                fn apply_private_clears(&mut self, _sgis: &VirtualSgis) {}
                fn apply_spi_requests(
                    &mut self,
                    _sgis: &VirtualSgis,
                    _holders: &SpiHolders,
                    _distributor: u64,
                    _hw: &mut impl GicHardware,
                ) {
                }
                fn held_spis(&mut self, _op: SetClear, _first: u32) -> HeldPpis {
                    HeldPpis::default()
                }
            }
            perform(
                redistributor(offset),
                RD + offset,
                4,
                None,
                &sgis,
                MAINTENANCE,
                &mut Fixed(held),
                &mut hw,
            )
        };
        let pending_view = held.ppis(SetClear::PendingSet);
        let active_view = held.ppis(SetClear::ActiveSet);
        assert_eq!(pending_view.held, 1 << 27 | 1 << 30);
        assert_eq!(
            read(0x1_0200, &mut || pending_view),
            1 << 29 | 1 << 30,
            "ISPENDR0: 30 pending in the backlog, 29 physically"
        );
        assert_eq!(
            read(0x1_0300, &mut || active_view),
            1 << 27 | 1 << 28,
            "ISACTIVER0: 27 active in its list register, 28 physically, not 30"
        );
        // Another vCPU's redistributor: physical state.
        assert_eq!(
            guest(0x1_0300, 4, None, &sgis, &mut hw),
            1 << 27 | 1 << 28 | 1 << 30
        );
    }

    #[test]
    fn ppi_priorities_of_hv_are_protected() {
        let maintenance = 1 << 25;
        assert_eq!(ppi_priority_bytes(24, 4, maintenance), 0b1101);
        assert_eq!(ppi_priority_bytes(25, 1, maintenance), 0);
        assert_eq!(ppi_priority_bytes(16, 4, maintenance), 0b1111);
        assert_eq!(
            ppi_priority_bytes(28, 8, 0),
            0b1111,
            "nothing past INTID 31"
        );
    }

    #[test]
    fn sgi_state() {
        let sgis = VirtualSgis::new();
        sgis.raise(3);
        assert_eq!(sgis.take(), None, "pending but disabled");
        sgis.set_clear(SetClear::EnableSet, 0xffff);
        sgis.raise(1);
        assert_eq!(sgis.take(), Some(1));
        assert_eq!(sgis.take(), Some(3));
        assert_eq!(sgis.take(), None);
        sgis.raise(5);
        sgis.set_clear(SetClear::PendingClear, 1 << 5);
        assert_eq!(sgis.take(), None);
        assert_eq!(sgis.read(SetClear::EnableClear), 0xffff);
        assert_eq!(sgis.priority(2), DEFAULT_PRIORITY);
        sgis.set_priority(2, 0x80);
        assert_eq!(sgis.priority(2), 0x80);
    }

    #[test]
    fn list_registers() {
        assert_eq!(list_register(27, Some(27), 0xa0), 0x70a0_001b_0000_001b);
        assert_eq!(list_register(1, None, 0x80), 0x5080_0000_0000_0001);
    }

    #[test]
    fn sgi_targets() {
        let cpus = [0x0, 0x1, 0x100, 0x1_0000_0000];
        // Target list {1} in cluster 0, SGI 5.
        assert_eq!(
            decode_sgi1r(5 << 24 | 0b10, 0, &cpus),
            SgiRequest {
                intid: 5,
                targets: 0b10
            }
        );
        // Aff1=1, Aff0=0.
        assert_eq!(decode_sgi1r(2 << 24 | 1 << 16 | 1, 0, &cpus).targets, 0b100);
        // Aff3=1.
        assert_eq!(decode_sgi1r(1 << 48 | 1, 0, &cpus).targets, 0b1000);
        // IRM: all but the sender.
        assert_eq!(decode_sgi1r(1 << 40, 2, &cpus).targets, 0b1011);
        // Round trip through the encoder.
        for (i, &mpidr) in cpus.iter().enumerate() {
            assert_eq!(
                decode_sgi1r(sgi1r_for(7, mpidr), 9, &cpus),
                SgiRequest {
                    intid: 7,
                    targets: 1 << i
                }
            );
        }
        // Aff0 beyond the RS block is not targeted.
        assert_eq!(decode_sgi1r(1 << 44 | 1, 0, &cpus).targets, 0);
    }

    #[test]
    fn redistributor_frames() {
        assert_eq!(redistributor_stride(0), 0x2_0000);
        assert_eq!(redistributor_stride(0b10), 0x4_0000);
        // Affinity 1.0.3.2 (Aff3.Aff2.Aff1.Aff0) is MPIDR 0x1_0000_0302.
        assert_eq!(redistributor_affinity(0x0100_0302_0000_0010), 0x1_0000_0302);
    }

    /// The list register (index) holding `intid`, if any.
    fn r27_lr_of(lrs: &FakeLrs, intid: u64) -> Option<usize> {
        lrs.lrs
            .iter()
            .position(|&lr| lr >> 62 != 0 && lr & 0xffff_ffff == intid)
    }

    /// R27-1 (SGI): vCPU 1 writes vCPU 0's GICR_ISACTIVER0 (SGI 3), vCPU 0
    /// refills (kicked), then vCPU 1 writes vCPU 0's GICR_ICACTIVER0 (SGI
    /// 3) - `Gic::emulate` performs both with `NothingHeld` on vCPU 0's
    /// `VirtualSgis`. On a GIC, SGI 3 is then inactive, and an SGI 3 sent
    /// afterwards is delivered. Here vCPU 0's list register keeps SGI 3
    /// active for good: its own ISACTIVER0 shows it active, and the next
    /// SGI 3 is merged into that list register as active+pending, which
    /// the virtual CPU interface never signals (the guest never
    /// acknowledged it, so it never deactivates it).
    #[test]
    fn r27_remote_icactiver_ends_a_remotely_set_active_sgi() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        let vcpu0 = VirtualSgis::new();
        vcpu0.set_clear(SetClear::EnableSet, 0xffff);
        // vCPU 1 -> vCPU 0's redistributor: GICR_ISACTIVER0, SGI 3.
        guest(0x1_0300, 4, Some(1 << 3), &vcpu0, &mut hw);
        assert!(owner_must_refill(
            RegisterAction::SgiPpi(SetClear::ActiveSet),
            Some(1 << 3)
        ));
        // vCPU 0, kicked, refills: SGI 3 active in a list register.
        fill_list_registers(&mut cpu, &vcpu0, &mut backlog, |_| 0xa0);
        // vCPU 1 -> vCPU 0's redistributor: GICR_ICACTIVER0, SGI 3 (no kick).
        guest(0x1_0380, 4, Some(1 << 3), &vcpu0, &mut hw);
        // vCPU 0 reads its own GICR_ISACTIVER0.
        let isactiver0 = {
            let mut held = Held {
                cpu: &mut cpu,
                backlog: &mut backlog,
            };
            perform(
                redistributor(0x1_0300),
                RD + 0x1_0300,
                4,
                None,
                &vcpu0,
                MAINTENANCE,
                &mut held,
                &mut hw,
            )
        };
        // vCPU 1 sends SGI 3 to vCPU 0 (ICC_SGI1R_EL1), vCPU 0 refills.
        vcpu0.raise(3);
        fill_list_registers(&mut cpu, &vcpu0, &mut backlog, |_| 0xa0);
        let state = r27_lr_of(&cpu.lrs, 3).map(|n| cpu.lrs.lrs[n] >> 62);
        assert_eq!(
            (isactiver0 & (1 << 3), state),
            (0, Some(0b01)),
            "after GICR_ICACTIVER0, SGI 3 reads inactive and a new SGI 3 is pending (deliverable)"
        );
    }

    /// R27-1 (PPI): the same with PPI 23 (say a level-sensitive timer). The
    /// remote ISACTIVER0 is forwarded (physically active) and vCPU 0 places
    /// a HW list register, active; the remote ICACTIVER0 is forwarded
    /// (physically inactive) but vCPU 0's list register stays active. When
    /// PPI 23 fires again, hv acknowledges it and `fill_list_registers`
    /// merges the backlog entry away into that active list register: the
    /// interrupt is never delivered and stays physically active for good.
    #[test]
    fn r27_remote_icactiver_ends_a_remotely_set_active_ppi() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        let vcpu0 = VirtualSgis::new();
        guest(0x1_0300, 4, Some(1 << 23), &vcpu0, &mut hw);
        cpu.active.insert(23); // the forwarded GICR_ISACTIVER0 write
        fill_list_registers(&mut cpu, &vcpu0, &mut backlog, |_| 0x80);
        assert!(r27_lr_of(&cpu.lrs, 23).is_some(), "placed, HW, active");
        hw.writes.clear();
        guest(0x1_0380, 4, Some(1 << 23), &vcpu0, &mut hw);
        // Adapted to the fix: not forwarded (a HW list register would stay
        // active over an inactive PPI); vCPU 0 is kicked and, at its IRQ
        // exit, withdraws the list register and deactivates PPI 23.
        assert!(hw.writes.is_empty(), "not forwarded: {:x?}", hw.writes);
        assert!(owner_must_refill(
            RegisterAction::SgiPpi(SetClear::ActiveClear),
            Some(1 << 23)
        ));
        cpu.pending.insert(KICK_SGI);
        take_interrupts(
            &mut cpu,
            DEFAULT_MAINTENANCE_INTID,
            &vcpu0,
            &SpiHolders::new(),
            0,
            &mut backlog,
            |_| 0x80,
        );
        assert_eq!(r27_lr_of(&cpu.lrs, 23), None, "virtually inactive");
        assert!(!cpu.active.contains(&23), "physically inactive");
        // PPI 23 fires again; hv takes it on vCPU 0's CPU.
        cpu.pending.insert(23);
        take_interrupts(
            &mut cpu,
            DEFAULT_MAINTENANCE_INTID,
            &vcpu0,
            &SpiHolders::new(),
            0,
            &mut backlog,
            |_| 0x80,
        );
        let state = r27_lr_of(&cpu.lrs, 23).map(|n| cpu.lrs.lrs[n] >> 62);
        assert_eq!(
            state,
            Some(0b01),
            "PPI 23 pending for the guest (it is inactive since ICACTIVER0)"
        );
    }

    /// Perform one access on this vCPU's own redistributor (as
    /// `Gic::emulate` does for owner == vcpu).
    /// Every list register of `cpu` holds an active SGI (8-11).
    fn fill_every_list_register(cpu: &mut ModelCpu) {
        for (n, intid) in [8u32, 9, 10, 11].into_iter().enumerate() {
            cpu.lrs.lrs[n] = active(list_register(intid, None, 0xa0));
        }
    }

    /// R27-4/R27-5's state: every list register in use; PPI 27, which hv
    /// acknowledged, waits in the backlog; the guest writes
    /// GICR_ISACTIVER0 bit 27 and the refill cannot place it.
    fn ppi27_set_active_behind_full_list_registers(
        cpu: &mut ModelCpu,
        backlog: &mut Backlog,
        sgis: &VirtualSgis,
        hw: &mut FakeGic,
    ) {
        fill_every_list_register(cpu);
        cpu.active.insert(27);
        backlog.push(27);
        r27_local(cpu, backlog, sgis, hw, 0x1_0300, Some(1 << 27));
        fill_list_registers(cpu, sgis, backlog, |_| 0xa0);
    }

    fn r27_local(
        cpu: &mut ModelCpu,
        backlog: &mut Backlog,
        sgis: &VirtualSgis,
        hw: &mut FakeGic,
        offset: u64,
        write: Option<u64>,
    ) -> u64 {
        let mut held = Held { cpu, backlog };
        perform(
            redistributor(offset),
            RD + offset,
            4,
            write,
            sgis,
            MAINTENANCE,
            &mut held,
            hw,
        )
    }

    /// R27-2: PPI 20 is edge-triggered; hv acknowledged one edge and holds
    /// it pending in a HW list register. The guest sets it active through
    /// GICR_ISACTIVER0: on a GIC it is now active and pending, and after
    /// the guest's GICR_ICACTIVER0 the pending edge is still there to be
    /// delivered. Here `made_active` drops the pending state (HW list
    /// registers cannot be active and pending) and ICACTIVER0 withdraws
    /// the list register and deactivates the physical PPI: the edge is
    /// gone (no list register, no backlog entry, nothing physically
    /// pending).
    #[test]
    fn r27_set_active_keeps_a_held_edge_pending() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        let sgis = VirtualSgis::new();
        cpu.active.insert(20); // hv's acknowledge of the edge
        cpu.lrs.lrs[0] = list_register(20, Some(20), 0xa0);
        r27_local(
            &mut cpu,
            &mut backlog,
            &sgis,
            &mut hw,
            0x1_0300,
            Some(1 << 20),
        );
        fill_list_registers(&mut cpu, &sgis, &mut backlog, |_| 0xa0);
        r27_local(
            &mut cpu,
            &mut backlog,
            &sgis,
            &mut hw,
            0x1_0380,
            Some(1 << 20),
        );
        let ispendr0 = r27_local(&mut cpu, &mut backlog, &sgis, &mut hw, 0x1_0200, None);
        let still_there = ispendr0 & (1 << 20) != 0
            || cpu
                .lrs
                .lrs
                .iter()
                .any(|&lr| lr >> 62 & 1 != 0 && lr & 0xffff_ffff == 20)
            || backlog.contains(&20)
            || cpu.pending.contains(&20);
        assert!(
            still_there,
            "the acknowledged edge of PPI 20 must still be pending after ISACTIVER0 + ICACTIVER0"
        );
    }

    /// R27-4: every list register in use; PPI 27 waits in the backlog (hv
    /// acknowledged it). The guest writes GICR_ISACTIVER0 bit 27: it cannot
    /// be placed yet (`place_active` keeps it in `active`). A read of
    /// GICR_ISACTIVER0 must show 27 active (the guest set it and nothing
    /// cleared it); here the held-PPI view masks the physical bit and
    /// `VirtualSgis::read` returns only the SGI bits of `active`.
    #[test]
    fn r27_unplaced_active_ppi_in_the_backlog_reads_active() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        let sgis = VirtualSgis::new();
        ppi27_set_active_behind_full_list_registers(&mut cpu, &mut backlog, &sgis, &mut hw);
        assert_eq!(sgis.unplaced_active(), 1 << 27, "not placed yet");
        let isactiver0 = r27_local(&mut cpu, &mut backlog, &sgis, &mut hw, 0x1_0300, None);
        assert_ne!(
            isactiver0 & (1 << 27),
            0,
            "GICR_ISACTIVER0 shows PPI 27 active"
        );
    }

    /// R27-5: the same state (PPI 27 in the backlog and made active by the
    /// guest, not placed) when the vCPU powers off: `release_list_registers`
    /// deactivates 27 for the backlog entry and again for the unplaced
    /// active bit, a second ICC_DIR_EL1 for an interrupt no longer active
    /// (the model CPU rejects it).
    #[test]
    fn r27_release_deactivates_each_ppi_once() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        let sgis = VirtualSgis::new();
        ppi27_set_active_behind_full_list_registers(&mut cpu, &mut backlog, &sgis, &mut hw);
        let count = ListRegisterCount {
            implemented: 4,
            used: 4,
        };
        release_alone(&mut cpu, &sgis, &mut backlog, count);
        assert!(cpu.active.is_empty());
    }

    /// R27-1, the race with the owner's refill: vCPU 0's list registers
    /// are full, so its refill takes PPI 23's set-active (`take_active`)
    /// and puts it back; a remote clear-active that lands in between finds
    /// nothing unplaced. Its request still ends the active state put back
    /// (deactivating the physical PPI once), and a remote read shows it
    /// inactive as soon as the clear is written.
    #[test]
    fn r27_remote_clear_racing_the_refill_is_not_lost() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        let vcpu0 = VirtualSgis::new();
        fill_every_list_register(&mut cpu);
        guest(0x1_0300, 4, Some(1 << 23), &vcpu0, &mut hw);
        cpu.active.insert(23); // the forwarded GICR_ISACTIVER0 write
                               // The refill's take_active ...
        let taken = vcpu0.take_active();
        assert_eq!(taken, 1 << 23);
        // ... the remote GICR_ICACTIVER0 ...
        guest(0x1_0380, 4, Some(1 << 23), &vcpu0, &mut hw);
        assert_eq!(
            guest(0x1_0300, 4, None, &vcpu0, &mut hw) & (1 << 23),
            0,
            "reads inactive at once"
        );
        // ... and the refill puts it back, unplaced.
        vcpu0.put_back_active(taken);
        cpu.pending.insert(KICK_SGI);
        take_interrupts(
            &mut cpu,
            DEFAULT_MAINTENANCE_INTID,
            &vcpu0,
            &SpiHolders::new(),
            0,
            &mut backlog,
            |_| 0x80,
        );
        assert_eq!(vcpu0.unplaced_active(), 0);
        assert!(!cpu.active.contains(&23), "deactivated");
        assert_eq!(r27_lr_of(&cpu.lrs, 23), None);
        // A set-active written after a clear request, before the owner
        // applied it, survives (the set comes last).
        guest(0x1_0380, 4, Some(1 << 3), &vcpu0, &mut hw);
        guest(0x1_0300, 4, Some(1 << 3), &vcpu0, &mut hw);
        assert_eq!(vcpu0.requested_clears(SetClear::ActiveClear), 0);
        assert_eq!(vcpu0.unplaced_active(), 1 << 3);
    }

    /// R27-1 for clear-pending: vCPU 1 writes vCPU 0's GICR_ICPENDR0 for
    /// SGI 2 (pending in vCPU 0's list register) and PPI 20 (hv's
    /// acknowledged edge, pending in a HW list register). vCPU 0, kicked,
    /// withdraws both and deactivates PPI 20's physical activation; the
    /// physical clear-pending is forwarded by the writer.
    #[test]
    fn r27_remote_icpendr_withdraws_what_the_owner_holds() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        let vcpu0 = VirtualSgis::new();
        cpu.lrs.lrs[0] = list_register(2, None, 0xa0);
        cpu.lrs.lrs[1] = list_register(20, Some(20), 0xa0);
        cpu.active.insert(20);
        guest(0x1_0280, 4, Some(1 << 2 | 1 << 20), &vcpu0, &mut hw);
        assert_eq!(hw.writes.last(), Some(&(RD + 0x1_0280, 4, 1 << 20)));
        assert!(owner_must_refill(
            RegisterAction::SgiPpi(SetClear::PendingClear),
            Some(1 << 2)
        ));
        cpu.pending.insert(KICK_SGI);
        take_interrupts(
            &mut cpu,
            DEFAULT_MAINTENANCE_INTID,
            &vcpu0,
            &SpiHolders::new(),
            0,
            &mut backlog,
            |_| 0xa0,
        );
        assert_eq!(
            (r27_lr_of(&cpu.lrs, 2), r27_lr_of(&cpu.lrs, 20)),
            (None, None)
        );
        assert!(!cpu.active.contains(&20));
    }

    /// R27-2, the rest of the life of the software entry: the guest's
    /// deactivation of the set-active leaves PPI 20 pending; it
    /// acknowledges and EOIs it (invalid, EOI set: not empty in
    /// ICH_ELRSR_EL2); the EOI maintenance interrupt has hv deactivate the
    /// physical PPI once and free the list register. CPU_OFF in between
    /// deactivates it too, once.
    #[test]
    fn r27_ended_software_ppi_entry_is_deactivated_by_eoi_maintenance() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        let sgis = VirtualSgis::new();
        cpu.active.insert(20);
        cpu.lrs.lrs[0] = list_register(20, Some(20), 0xa0);
        r27_local(
            &mut cpu,
            &mut backlog,
            &sgis,
            &mut hw,
            0x1_0300,
            Some(1 << 20),
        );
        fill_list_registers(&mut cpu, &sgis, &mut backlog, |_| 0xa0);
        let lr = cpu.lrs.lrs[0];
        assert_eq!((lr >> 62, lr & LR_HW, lr & LR_EOI), (0b11, 0, LR_EOI));
        // CPU_OFF now: deactivated once.
        let mut off = ModelCpu::new();
        off.active.insert(20);
        off.lrs.lrs[0] = lr;
        let count = ListRegisterCount {
            implemented: 4,
            used: 4,
        };
        release_alone(&mut off, &sgis, &mut Backlog::new(), count);
        assert!(off.active.is_empty());
        // The guest deactivates, acknowledges, EOIs.
        cpu.lrs.lrs[0] = lr & !(0b11 << 62);
        assert_eq!(
            cpu.lrs.empty() & 1,
            0,
            "not empty until hv's EOI maintenance"
        );
        take_interrupts(
            &mut cpu,
            DEFAULT_MAINTENANCE_INTID,
            &sgis,
            &SpiHolders::new(),
            0,
            &mut backlog,
            |_| 0xa0,
        );
        assert_eq!(cpu.acknowledged, [DEFAULT_MAINTENANCE_INTID]);
        assert!(
            cpu.active.is_empty(),
            "PPI 20 and the maintenance PPI deactivated"
        );
        assert_eq!(cpu.lrs.lrs[0], 0);
    }

    /// Review 27 R27-7: SPIs made active through GICD_ISACTIVER<n>, and
    /// the distributor's clear registers, on a machine of several vCPUs
    /// sharing one distributor (`perform_spi`).
    /// R41-2: the gate's order. Each thread notes its name inside the
    /// gate; the test waits until each is seen waiting before starting the
    /// next, so "arrived after" is certain.
    mod gate_order {
        extern crate std;
        use super::super::SpiHolders;
        use std::sync::Mutex;
        use std::vec::Vec;

        fn wait_until(condition: impl Fn() -> bool) {
            while !condition() {
                std::thread::yield_now();
            }
        }

        #[test]
        fn a_waiting_writer_is_not_overtaken_by_a_later_reader() {
            let holders = SpiHolders::new();
            let order = Mutex::new(Vec::new());
            std::thread::scope(|s| {
                let first = holders.share();
                s.spawn(|| {
                    let _gate = holders.exclusive();
                    order.lock().unwrap().push("writer");
                });
                wait_until(|| holders.writer_present());
                s.spawn(|| {
                    let _gate = holders.share();
                    order.lock().unwrap().push("reader");
                });
                wait_until(|| holders.readers_waiting() == 2);
                drop(first);
            });
            assert_eq!(*order.lock().unwrap(), ["writer", "reader"]);
        }

        /// Writers enter in arrival order, and a reader that arrived while
        /// a writer held the gate enters before the next writer: neither
        /// waits for more than the writers (and reader phases) before it.
        #[test]
        fn writers_enter_in_order_and_a_reader_waits_for_one_writer_only() {
            let holders = SpiHolders::new();
            let order = Mutex::new(Vec::new());
            std::thread::scope(|s| {
                let first = holders.exclusive();
                s.spawn(|| {
                    let _gate = holders.exclusive();
                    order.lock().unwrap().push("writer 2");
                });
                wait_until(|| holders.writers_waiting() == 2);
                s.spawn(|| {
                    let _gate = holders.share();
                    order.lock().unwrap().push("reader");
                });
                wait_until(|| holders.readers_waiting() == 1);
                s.spawn(|| {
                    let _gate = holders.exclusive();
                    order.lock().unwrap().push("writer 3");
                });
                wait_until(|| holders.writers_waiting() == 3);
                drop(first);
            });
            assert_eq!(*order.lock().unwrap(), ["reader", "writer 2", "writer 3"]);
        }
    }

    mod spi_active {
        use super::*;
        use std::cell::RefCell;
        use std::collections::BTreeSet;
        use std::rc::Rc;
        use std::vec::Vec;

        const GICD: u64 = 0x0800_0000;
        const ISACTIVER1: u64 = 0x0304;
        const ICACTIVER1: u64 = 0x0384;
        const ICPENDR1: u64 = 0x0284;
        const ISPENDR1: u64 = 0x0204;

        /// The distributor's active SPIs, which every CPU's deactivation
        /// (ICC_DIR_EL1, a HW list register's) ends.
        type Physical = Rc<RefCell<BTreeSet<u32>>>;

        /// The distributor: ISACTIVER/ICACTIVER/ICPENDR act on the shared
        /// state; every write is recorded (offset, value).
        struct Dist {
            active: Physical,
            pending: BTreeSet<u32>,
            writes: Vec<(u64, u64)>,
            /// Every read (offset).
            reads: Vec<u64>,
            /// A write not read back since (R41-3).
            unread: bool,
        }

        impl GicHardware for Dist {
            fn read(&mut self, address: u64, _size: u64) -> u64 {
                let offset = address - GICD;
                self.reads.push(offset);
                self.unread = false;
                let first = ((offset & 0x7f) * 8) as u32;
                let set = match offset {
                    0x0300..=0x03ff => self.active.borrow().clone(),
                    0x0200..=0x02ff => self.pending.clone(),
                    _ => BTreeSet::new(),
                };
                (0..32)
                    .filter(|k| set.contains(&(first + k)))
                    .map(|k| 1u64 << k)
                    .sum()
            }
            fn write(&mut self, address: u64, _size: u64, value: u64) {
                let offset = address - GICD;
                self.writes.push((offset, value));
                self.unread = true;
                let first = ((offset & 0x7f) * 8) as u32;
                for intid in (0..32).filter(|k| value & (1 << k) != 0).map(|k| first + k) {
                    match offset {
                        0x0300..=0x037f => {
                            self.active.borrow_mut().insert(intid);
                        }
                        0x0380..=0x03ff => {
                            self.active.borrow_mut().remove(&intid);
                        }
                        0x0200..=0x027f => {
                            self.pending.insert(intid);
                        }
                        0x0280..=0x02ff => {
                            self.pending.remove(&intid);
                        }
                        _ => {}
                    }
                }
            }
        }

        /// One physical CPU: four list registers; its ICC_DIR_EL1 ends the
        /// distributor's active state, and fails the test for an SPI that
        /// is not active (a deactivation too many).
        struct Cpu {
            lrs: FakeLrs,
            active: Physical,
        }

        impl PhysicalCpuInterface for Cpu {
            fn acknowledge(&mut self) -> u32 {
                1023
            }
            fn drop_priority(&mut self, _intid: u32) {}
            fn deactivate(&mut self, intid: u32) {
                assert!(
                    self.active.borrow_mut().remove(&intid),
                    "INTID {intid} deactivated while not active"
                );
            }
            fn synchronize(&mut self) {}
        }

        impl ListRegisters for Cpu {
            fn count(&self) -> usize {
                self.lrs.count()
            }
            fn empty(&mut self) -> u32 {
                self.lrs.empty()
            }
            fn read(&mut self, n: usize) -> u64 {
                self.lrs.read(n)
            }
            fn write(&mut self, n: usize, value: u64) {
                self.lrs.write(n, value)
            }
            fn set_underflow_interrupt(&mut self, on: bool) {
                self.lrs.set_underflow_interrupt(on)
            }
        }

        struct Machine {
            vcpus: Vec<VirtualSgis>,
            holders: SpiHolders,
            cpus: Vec<Cpu>,
            backlogs: Vec<Backlog>,
            dist: Dist,
            running: u32,
            /// What every SPI's GICD_IROUTER names (`route_target`).
            route: Option<usize>,
            lines: u32,
        }

        impl Machine {
            fn new(n: usize) -> Self {
                let active = Physical::default();
                Self {
                    vcpus: (0..n).map(|_| VirtualSgis::new()).collect(),
                    holders: SpiHolders::new(),
                    cpus: (0..n)
                        .map(|_| Cpu {
                            lrs: FakeLrs::default(),
                            active: active.clone(),
                        })
                        .collect(),
                    backlogs: (0..n).map(|_| Backlog::new()).collect(),
                    dist: Dist {
                        active,
                        pending: BTreeSet::new(),
                        writes: Vec::new(),
                        reads: Vec::new(),
                        unread: false,
                    },
                    running: (1 << n) - 1,
                    route: Some(0),
                    lines: SPECIAL_INTIDS,
                }
            }

            /// vCPU `writer`'s access to the distributor at `offset`:
            /// (value read, vCPUs kicked).
            fn access(&mut self, writer: usize, offset: u64, write: Option<u64>) -> (u64, u32) {
                let RegisterAction::Spi { op, first } = distributor(offset) else {
                    panic!("{offset:#x} is not an SPI register");
                };
                let (route, running) = (self.route, self.running);
                let access = SpiAccess {
                    writer,
                    vcpus: &self.vcpus,
                    holders: &self.holders,
                    is_on: move |k: usize| running & (1 << k) != 0,
                    lines: self.lines,
                    route: move |_| route,
                };
                let mut held = Held {
                    cpu: &mut self.cpus[writer],
                    backlog: &mut self.backlogs[writer],
                };
                perform_spi(
                    op,
                    first,
                    GICD + offset,
                    4,
                    write,
                    &access,
                    &mut held,
                    &mut self.dist,
                )
            }

            /// vCPU `reader`'s read of the distributor at `offset`, asking
            /// the holders of SPIs it does not hold, each answering at an
            /// exit, as `arch::gic` does (`begin_spi_read`).
            fn read(&mut self, reader: usize, offset: u64) -> u32 {
                let mut read = self.begin_read(reader, offset);
                let holders = read.holders();
                let views = self.ask(holders, read.word);
                for h in (0..32).filter(|h| holders & (1 << h) != 0) {
                    read.answer(h, views[h], &mut self.dist);
                }
                read.value() as u32
            }

            /// hv's asking of the vCPUs `asked` for their view of SPI word
            /// `w` (`ask_spi_views`), whose kick is an exit of each one
            /// running: their answers.
            fn ask(&mut self, asked: u32, w: usize) -> [Option<(u32, u32)>; 32] {
                let mut views = [None; 32];
                let running = self.running;
                let Machine {
                    vcpus,
                    holders,
                    cpus,
                    backlogs,
                    dist,
                    ..
                } = self;
                let vcpus = &vcpus[..];
                ask_spi_views(
                    vcpus,
                    asked,
                    w,
                    1,
                    |kicked| {
                        for v in (0..32).filter(|v| kicked & running & (1 << v) != 0) {
                            exit_on(v, vcpus, holders, &mut cpus[v], &mut backlogs[v], dist);
                        }
                    },
                    || {},
                    |k| running & (1 << k) != 0,
                    |k, view| views[k] = view,
                );
                views
            }

            /// The start of `read`: what the reader knows, whom to ask.
            fn begin_read(&mut self, reader: usize, offset: u64) -> SpiRead {
                let RegisterAction::Spi { op, first } = distributor(offset) else {
                    panic!("{offset:#x} is not an SPI register");
                };
                let running = self.running;
                let access = SpiAccess {
                    writer: reader,
                    vcpus: &self.vcpus,
                    holders: &self.holders,
                    is_on: move |k: usize| running & (1 << k) != 0,
                    lines: self.lines,
                    route: |_| None,
                };
                begin_spi_read(
                    op,
                    first,
                    GICD + offset,
                    4,
                    &access,
                    &mut Held {
                        cpu: &mut self.cpus[reader],
                        backlog: &mut self.backlogs[reader],
                    },
                    &mut self.dist,
                )
            }

            /// vCPU `writer`'s write of `value` at `offset`, which ends once
            /// every vCPU it asked to act has done so, as `arch::gic` waits:
            /// the vCPUs kicked.
            fn write(&mut self, writer: usize, offset: u64, value: u32) -> u32 {
                let (_, kicks) = self.access(writer, offset, Some(value as u64));
                let w = (distributor_first(offset) / 32 - 1) as usize;
                self.ask(kicks, w);
                kicks
            }

            /// One exit of vCPU `v` (`exit_on`).
            fn exit(&mut self, v: usize) {
                exit_on(
                    v,
                    &self.vcpus,
                    &self.holders,
                    &mut self.cpus[v],
                    &mut self.backlogs[v],
                    &mut self.dist,
                );
            }

            /// One exit's refill on vCPU `v`'s CPU, as `arch::gic` does.
            fn fill(&mut self, v: usize) {
                fill_on(
                    &self.vcpus[v],
                    &self.holders,
                    &mut self.cpus[v],
                    &mut self.backlogs[v],
                );
            }

            /// The guest on vCPU `v` writes ICC_DIR_EL1 = `intid`: the list
            /// register holding it active loses the active state, and with
            /// the HW bit the physical interrupt is deactivated; with no
            /// such list register nothing happens (EOIcount).
            fn guest_dir(&mut self, v: usize, intid: u32) {
                let lrs = &mut self.cpus[v].lrs.lrs;
                let Some(lr) = lrs
                    .iter_mut()
                    .find(|lr| **lr >> 62 & 0b10 != 0 && **lr & 0xffff_ffff == intid as u64)
                else {
                    return;
                };
                *lr &= !(0b10 << 62);
                if *lr & LR_HW != 0 {
                    let physical = ((*lr >> 32) & 0x1fff) as u32;
                    assert!(self.dist.active.borrow_mut().remove(&physical));
                    if *lr >> 62 == 0 {
                        *lr = 0;
                    }
                } else if *lr >> 62 == 0 && *lr & LR_EOI == 0 {
                    *lr = 0;
                }
            }

            /// hv acknowledged `intid` for vCPU `v` (physically active,
            /// `v` its holder); the test puts it in `v`'s list registers
            /// or backlog.
            fn acknowledged(&mut self, v: usize, intid: u32) {
                self.dist.active.borrow_mut().insert(intid);
                self.holders.record(intid, v);
            }

            /// vCPU `v`'s CPU_OFF: marked off, then its release.
            fn release(&mut self, v: usize, count: ListRegisterCount) {
                self.running &= !(1 << v);
                release_list_registers(
                    &mut self.cpus[v],
                    &self.vcpus[v],
                    &self.holders,
                    &mut self.backlogs[v],
                    count,
                    GICD,
                    &mut self.dist,
                );
            }

            fn lr(&self, v: usize, intid: u32) -> Option<u64> {
                self.cpus[v]
                    .lrs
                    .lrs
                    .iter()
                    .copied()
                    .find(|&lr| lr >> 62 != 0 && lr & 0xffff_ffff == intid as u64)
            }

            fn physically_active(&self, intid: u32) -> bool {
                self.dist.active.borrow().contains(&intid)
            }
        }

        /// One exit of vCPU `v` (of `vcpus`) on its CPU: the refill, then
        /// its answer to the views asked of it (`Gic::fill_list_registers`).
        fn exit_on(
            v: usize,
            vcpus: &[VirtualSgis],
            holders: &SpiHolders,
            cpu: &mut Cpu,
            backlog: &mut Backlog,
            dist: &mut Dist,
        ) {
            fill_on(&vcpus[v], holders, cpu, backlog);
            publish_private_view(
                &vcpus[v],
                1 << DEFAULT_MAINTENANCE_INTID,
                (GICD + 0xa_0000, GICD),
                holders,
                &mut Held { cpu, backlog },
                dist,
            );
        }

        /// One exit's refill on a CPU, as `arch::gic` does.
        fn fill_on(sgis: &VirtualSgis, holders: &SpiHolders, cpu: &mut Cpu, backlog: &mut Backlog) {
            apply_remote_clears(cpu, sgis, holders, backlog);
            fill_list_registers(cpu, sgis, backlog, |_| 0xa0);
        }

        fn active_hw(intid: u32) -> u64 {
            list_register_in(LR_STATE_ACTIVE, intid, Some(intid), 0xa0)
        }

        /// The first INTID of the SPI register at `offset`.
        fn distributor_first(offset: u64) -> u32 {
            match distributor(offset) {
                RegisterAction::Spi { first, .. } => first,
                _ => panic!("{offset:#x} is not an SPI register"),
            }
        }

        /// The scenario of R27-7 on one vCPU: GICD_ISACTIVER1 for SPI 33,
        /// the guest's ICC_DIR_EL1 of 33, GICD_ISACTIVER1 reads 0 (before:
        /// it read 2 for good, and the SPI was never signalled again).
        #[test]
        fn set_active_spi_is_placed_active_with_hw_and_ended_by_the_guest() {
            let mut m = Machine::new(1);
            assert_eq!(m.access(0, ISACTIVER1, Some(1 << 1)), (0, 0));
            assert!(m.physically_active(33), "the write reaches the hardware");
            assert_eq!(m.read(0, ISACTIVER1), 1 << 1, "active before placing");
            m.fill(0);
            assert_eq!(m.lr(0, 33), Some(active_hw(33)));
            assert_eq!(m.read(0, ISACTIVER1), 1 << 1);
            assert_eq!(m.read(0, ICACTIVER1), 1 << 1, "both registers read it");
            m.guest_dir(0, 33);
            assert!(!m.physically_active(33));
            assert_eq!(m.lr(0, 33), None);
            assert_eq!(m.read(0, ISACTIVER1), 0);
            // Nothing left to place: no second list register, no underflow.
            m.fill(0);
            assert_eq!(m.lr(0, 33), None);
            assert!(!m.cpus[0].lrs.underflow);
        }

        /// The SPI goes to the vCPU its GICD_IROUTER<n> names, which the
        /// writer kicks; the writer's reads show it active until that
        /// vCPU's guest deactivates it.
        #[test]
        fn set_active_spi_goes_to_the_routed_vcpu() {
            let mut m = Machine::new(2);
            m.route = Some(0);
            assert_eq!(m.access(1, ISACTIVER1, Some(1 << 8)), (0, 1 << 0));
            m.fill(1);
            assert_eq!(m.lr(1, 40), None, "not the writer's");
            assert_eq!(m.read(1, ISACTIVER1), 1 << 8);
            m.fill(0);
            assert_eq!(m.lr(0, 40), Some(active_hw(40)));
            assert_eq!(m.read(1, ISACTIVER1), 1 << 8);
            m.guest_dir(0, 40);
            assert_eq!(m.read(1, ISACTIVER1), 0);
            assert_eq!(m.read(0, ISACTIVER1), 0);
        }

        /// IRM = 1, an affinity no vCPU has, or a routed vCPU that is off:
        /// the writer holds it (hv's choice), and nobody is kicked.
        #[test]
        fn set_active_spi_with_no_running_route_stays_with_the_writer() {
            for (route, running) in [(None, 0b11), (Some(0), 0b10), (Some(7), 0b11)] {
                let mut m = Machine::new(2);
                m.route = route;
                m.running = running;
                assert_eq!(m.access(1, ISACTIVER1, Some(1 << 2)), (0, 0));
                m.fill(0);
                m.fill(1);
                assert_eq!(m.lr(0, 34), None);
                assert_eq!(m.lr(1, 34), Some(active_hw(34)), "{route:?} {running:b}");
            }
        }

        /// The route is read for SPIs the writer does not hold: one it
        /// holds (here pending in a HW list register, acknowledged by hv)
        /// is made active where it is, as active and pending (a software
        /// entry with EOI: a HW entry cannot be both).
        #[test]
        fn set_active_of_an_spi_the_writer_holds_pending_stays_there() {
            let mut m = Machine::new(2);
            m.acknowledged(1, 33);
            m.cpus[1].lrs.lrs[0] = list_register(33, Some(33), 0xa0);
            m.route = Some(0);
            assert_eq!(m.access(1, ISACTIVER1, Some(1 << 1)), (0, 0));
            m.fill(0);
            m.fill(1);
            assert_eq!(m.lr(0, 33), None);
            let lr = m.lr(1, 33).unwrap();
            assert_eq!((lr >> 62, lr & LR_HW, lr & LR_EOI), (0b11, 0, LR_EOI));
        }

        /// Pending and active: hv acknowledged SPI 40 and queued it (every
        /// list register in use); the set-active takes its backlog entry
        /// into one list register, active and pending, so the guest's
        /// deactivation leaves the acknowledged instance pending, and its
        /// acknowledge and EOI of that end the physical activation, once
        /// (EOI maintenance).
        #[test]
        fn set_active_of_a_queued_spi_is_active_and_pending() {
            let mut m = Machine::new(1);
            m.acknowledged(0, 40);
            m.backlogs[0].push(40);
            m.access(0, ISACTIVER1, Some(1 << 8));
            assert_eq!(m.read(0, ISACTIVER1), 1 << 8, "active once set");
            m.fill(0);
            assert!(m.backlogs[0].is_empty(), "one holder, the list register");
            let lr = m.lr(0, 40).unwrap();
            assert_eq!((lr >> 62, lr & LR_HW, lr & LR_EOI), (0b11, 0, LR_EOI));
            m.guest_dir(0, 40);
            assert_eq!(m.read(0, ISACTIVER1), 0, "pending only now");
            assert!(m.physically_active(40), "hv's acknowledgement stands");
            // The guest acknowledges and EOIs it.
            let n = m.cpus[0]
                .lrs
                .lrs
                .iter()
                .position(|&l| l & 0xffff_ffff == 40);
            m.cpus[0].lrs.lrs[n.unwrap()] &= !(0b11 << 62);
            end_eoi_list_registers(&mut m.cpus[0]);
            assert!(!m.physically_active(40));
            assert_eq!(m.lr(0, 40), None);
        }

        /// A disabled SPI (and one pending physically, never
        /// acknowledged) is made active all the same, as on a GIC.
        #[test]
        fn set_active_ignores_enable_and_physical_pending() {
            let mut m = Machine::new(1);
            m.dist.pending.insert(35);
            m.access(0, ISACTIVER1, Some(1 << 3));
            m.fill(0);
            assert_eq!(m.lr(0, 35), Some(active_hw(35)));
            m.guest_dir(0, 35);
            // The hardware signals it again once inactive.
            assert!(m.dist.pending.contains(&35));
            assert!(!m.physically_active(35));
        }

        /// GICD_ICACTIVER from the vCPU holding the placed SPI: the list
        /// register is withdrawn and the SPI deactivated, nothing
        /// forwarded; reads show it inactive.
        #[test]
        fn own_clear_active_of_a_placed_spi() {
            let mut m = Machine::new(1);
            m.access(0, ISACTIVER1, Some(1 << 1));
            m.fill(0);
            m.dist.writes.clear();
            assert_eq!(m.access(0, ICACTIVER1, Some(1 << 1)), (0, 0));
            assert_eq!(m.lr(0, 33), None);
            assert!(!m.physically_active(33));
            assert!(m.dist.writes.is_empty(), "{:x?}", m.dist.writes);
            assert_eq!(m.read(0, ISACTIVER1), 0);
        }

        /// Every list register in use: the set-active waits (reading
        /// active, the underflow interrupt asked for); the writer's own
        /// clear-active then ends it by forwarding the write, and the
        /// next refill places nothing.
        #[test]
        fn own_clear_active_of_an_unplaced_spi() {
            let mut m = Machine::new(1);
            m.cpus[0].lrs.lrs = [active(list_register(8, None, 0xa0)); 4];
            for (n, lr) in m.cpus[0].lrs.lrs.iter_mut().enumerate() {
                *lr |= n as u64;
            }
            m.access(0, ISACTIVER1, Some(1 << 1));
            m.fill(0);
            assert!(m.cpus[0].lrs.underflow, "waiting for a list register");
            assert_eq!(m.read(0, ISACTIVER1), 1 << 1);
            m.dist.writes.clear();
            m.access(0, ICACTIVER1, Some(1 << 1));
            assert_eq!(m.dist.writes, [(ICACTIVER1, 1 << 1)]);
            assert!(!m.physically_active(33));
            m.cpus[0].lrs.lrs = [0; 4];
            m.fill(0);
            assert_eq!(m.lr(0, 33), None);
        }

        /// GICD_ICACTIVER from vCPU 1 for the SPI vCPU 0 holds active with
        /// the HW bit (placed after a set-active, or acknowledged by hv):
        /// not forwarded, a request to vCPU 0 (kicked), which ends its list
        /// register and the physical active state once at its next refill.
        /// Reads show it inactive from the write on.
        #[test]
        fn remote_clear_active_of_a_placed_spi_reaches_the_holder() {
            for set_active in [true, false] {
                let mut m = Machine::new(2);
                if set_active {
                    m.access(0, ISACTIVER1, Some(1 << 1));
                    m.fill(0);
                } else {
                    m.acknowledged(0, 33);
                    m.cpus[0].lrs.lrs[0] = active_hw(33);
                }
                assert_eq!(m.lr(0, 33), Some(active_hw(33)));
                m.dist.writes.clear();
                assert_eq!(m.access(1, ICACTIVER1, Some(1 << 1)), (0, 1 << 0));
                assert!(m.dist.writes.is_empty(), "{:x?}", m.dist.writes);
                // Read before vCPU 0 answers (`perform_spi` asks nobody):
                // the request not yet applied already reads inactive.
                assert_eq!(m.access(1, ISACTIVER1, None).0, 0);
                m.fill(1);
                assert!(m.physically_active(33), "vCPU 1 holds nothing");
                if set_active {
                    m.fill(0);
                } else {
                    // vCPU 0's own access applies it first too.
                    assert_eq!(m.read(0, ISACTIVER1), 0);
                }
                assert_eq!(m.lr(0, 33), None);
                assert!(!m.physically_active(33));
                m.fill(0);
                assert_eq!(m.read(1, ISACTIVER1), 0);
                // Nothing left over: a later set-active is placed again.
                m.access(1, ISACTIVER1, Some(1 << 1));
                m.fill(0);
                assert_eq!(m.lr(0, 33), Some(active_hw(33)));
            }
        }

        /// The same for a set-active vCPU 0 has not placed yet: vCPU 0
        /// takes the request with it and deactivates the SPI, never
        /// placing it.
        #[test]
        fn remote_clear_active_of_an_unplaced_spi() {
            let mut m = Machine::new(2);
            m.access(1, ISACTIVER1, Some(1 << 1));
            assert_eq!(m.access(1, ICACTIVER1, Some(1 << 1)), (0, 1 << 0));
            m.fill(0);
            assert_eq!(m.lr(0, 33), None);
            assert!(!m.physically_active(33));
        }

        /// A set-active after a clear-active vCPU 0 has not applied yet:
        /// the SPI is active (the request is withdrawn), and stays placed.
        #[test]
        fn set_active_after_a_pending_remote_clear_wins() {
            let mut m = Machine::new(2);
            m.access(0, ISACTIVER1, Some(1 << 1));
            m.fill(0);
            m.access(1, ICACTIVER1, Some(1 << 1));
            assert_eq!(m.read(1, ISACTIVER1), 0);
            m.access(1, ISACTIVER1, Some(1 << 1));
            assert_eq!(m.read(1, ISACTIVER1), 1 << 1);
            m.fill(0);
            assert_eq!(m.lr(0, 33), Some(active_hw(33)));
            assert!(m.physically_active(33));
        }

        /// GICD_ICPENDR from vCPU 1 for an SPI hv acknowledged for vCPU 0
        /// (queued, and pending in a list register): forwarded, and vCPU 0
        /// is asked to withdraw what it holds, deactivating hv's
        /// activation.
        #[test]
        fn remote_clear_pending_withdraws_what_the_holder_has() {
            let mut m = Machine::new(2);
            m.acknowledged(0, 40);
            m.acknowledged(0, 41);
            m.backlogs[0].push(40);
            m.cpus[0].lrs.lrs[0] = list_register(41, Some(41), 0xa0);
            let bits = 1 << 8 | 1 << 9;
            assert_eq!(m.access(1, ICPENDR1, Some(bits)), (0, 1 << 0));
            assert_eq!(m.dist.writes, [(ICPENDR1, bits)]);
            m.fill(0);
            assert!(m.backlogs[0].is_empty());
            assert_eq!(m.lr(0, 41), None);
            assert!(m.dist.active.borrow().is_empty());
        }

        /// CPU_OFF: an SPI made active for the vCPU and not placed is
        /// deactivated, once even when a backlog entry holds it too.
        #[test]
        fn release_deactivates_unplaced_spis_once() {
            let mut m = Machine::new(1);
            m.cpus[0].lrs.lrs = [active(list_register(8, None, 0xa0)); 4];
            m.acknowledged(0, 40);
            m.backlogs[0].push(40);
            m.access(0, ISACTIVER1, Some(1 << 1 | 1 << 8));
            m.fill(0);
            let count = ListRegisterCount {
                implemented: 4,
                used: 4,
            };
            m.release(0, count);
            assert!(m.dist.active.borrow().is_empty());
            assert!(!m.vcpus[0].spis.has_unplaced());
        }

        /// Only the SPIs GICD_TYPER gives exist: with 64 INTIDs, bits of
        /// INTIDs 64 and up are RAZ/WI; INTIDs 1020-1023 never are SPIs.
        #[test]
        fn only_implemented_spis_are_kept() {
            assert_eq!(spi_lines(1), 64);
            assert_eq!(spi_lines(0x1f), 1020);
            assert_eq!(spi_bits(32, 64), u32::MAX);
            assert_eq!(spi_bits(64, 64), 0);
            assert_eq!(spi_bits(992, 1020), (1 << 28) - 1);
            assert_eq!(spi_bits(0, 1020), 0);
            let mut m = Machine::new(1);
            m.lines = 64;
            assert_eq!(m.access(0, 0x0308, Some(u32::MAX as u64)), (0, 0));
            assert!(m.dist.writes.is_empty());
            m.fill(0);
            assert!(m.cpus[0].lrs.lrs.iter().all(|&lr| lr == 0));
            let mut m = Machine::new(1);
            m.access(0, 0x037c, Some(u32::MAX as u64));
            assert_eq!(m.dist.writes, [(0x037c, (1 << 28) - 1)]);
        }

        /// Every offset, size and value of the three registers, from a
        /// vCPU that exists and one that does not: no panic, nothing
        /// outside the register written.
        #[test]
        fn any_guest_access_is_safe() {
            for offset in (0x0200..0x0400u64).step_by(4) {
                let RegisterAction::Spi { op, first } = distributor(offset) else {
                    continue;
                };
                for size in [1, 2, 4, 8] {
                    for value in [None, Some(0), Some(u64::MAX), Some(0x8000_0001)] {
                        for writer in [0, 1, 2, 40] {
                            let mut m = Machine::new(2);
                            m.route = Some(usize::MAX);
                            let access = SpiAccess {
                                writer,
                                vcpus: &m.vcpus,
                                holders: &m.holders,
                                is_on: |_| true,
                                lines: 1020,
                                route: |_| Some(usize::MAX),
                            };
                            let mut held = Held {
                                cpu: &mut m.cpus[0],
                                backlog: &mut m.backlogs[0],
                            };
                            let (read, kicks) = perform_spi(
                                op,
                                first,
                                GICD + offset,
                                size,
                                value,
                                &access,
                                &mut held,
                                &mut m.dist,
                            );
                            assert!(kicks < 1 << 2);
                            assert!(size >= 4 || read >> (size * 8) == 0);
                            assert!(m.dist.writes.iter().all(|&(o, _)| o == offset));
                        }
                    }
                }
            }
        }

        #[test]
        fn irouter_names_a_vcpu() {
            let cpus = [0x0000_0000, 0x0000_0001, 0x01_0000_0100];
            assert_eq!(route_target(0, &cpus), Some(0));
            assert_eq!(route_target(1, &cpus), Some(1));
            assert_eq!(route_target(0x01_0000_0100, &cpus), Some(2));
            assert_eq!(route_target(0x100, &cpus), None, "Aff3 differs");
            assert_eq!(route_target(1 << 31, &cpus), None, "IRM");
            assert_eq!(route_target(5, &cpus), None);
        }

        const R35_COUNT: ListRegisterCount = ListRegisterCount {
            implemented: 4,
            used: 4,
        };

        /// R35-1's set-up on `vcpus` vCPUs: vCPU 1 holds SPI 40 active (HW
        /// list register), the SPI is routed to vCPU 0, and vCPU 0 writes
        /// GICD_ISACTIVER1 bit 8.
        fn r35_spi_40_of_vcpu_1_set_active_by_vcpu_0(vcpus: usize) -> Machine {
            let mut m = Machine::new(vcpus);
            m.acknowledged(1, 40);
            m.cpus[1].lrs.lrs[0] = active_hw(40);
            m.route = Some(0);
            m.access(0, ISACTIVER1, Some(1 << 8));
            m
        }

        /// R35-1. hv acknowledged SPI 40 on vCPU 1's CPU and vCPU 1's
        /// guest acknowledged it (active, HW list register). The guest has
        /// since routed SPI 40 to vCPU 0 (GICD_IROUTER; IRM = 1 gives the
        /// same, with the writer as holder), and vCPU 0 writes
        /// GICD_ISACTIVER1 bit 8. On a GIC that write has no effect (the
        /// SPI is active already). Here vCPU 0 gets a second HW list
        /// register for the same physical SPI.
        #[test]
        fn r35_set_active_of_an_spi_another_vcpu_holds_is_not_placed_twice() {
            let mut m = r35_spi_40_of_vcpu_1_set_active_by_vcpu_0(2);
            m.fill(0);
            m.fill(1);
            let holders: Vec<usize> = (0..2).filter(|&v| m.lr(v, 40).is_some()).collect();
            assert_eq!(holders, [1], "SPI 40 must stay with vCPU 1 only");
        }

        /// Review 37 R37-3: with three vCPUs, the "make it active if you
        /// hold it" request of a set-active of an SPI held elsewhere reaches
        /// every other running vCPU; one that does not hold the SPI must
        /// ignore it (acting on it would give the SPI a second holder).
        #[test]
        fn a_set_active_request_is_ignored_by_a_vcpu_not_holding_the_spi() {
            let mut m = r35_spi_40_of_vcpu_1_set_active_by_vcpu_0(3);
            for v in 0..3 {
                m.fill(v);
            }
            let holders: Vec<usize> = (0..3).filter(|&v| m.lr(v, 40).is_some()).collect();
            assert_eq!(holders, [1], "SPI 40 must stay with vCPU 1 only");
        }

        /// R35-1, what follows: vCPU 1's guest ends its handler (DIR);
        /// on a GIC SPI 40 is now inactive for everyone. vCPU 0 still has
        /// it active in a HW list register over an inactive physical SPI.
        #[test]
        fn r35_after_the_holders_deactivation_the_spi_reads_inactive_everywhere() {
            let mut m = r35_spi_40_of_vcpu_1_set_active_by_vcpu_0(2);
            m.fill(0);
            m.fill(1);
            m.guest_dir(1, 40);
            assert!(!m.physically_active(40));
            assert_eq!(m.read(0, ISACTIVER1), 0, "vCPU 0 reads SPI 40 active");
        }

        /// R35-3. vCPU 1 holds SPI 40 (acknowledged by hv, pending in a HW
        /// list register); vCPU 0's GICD_ISACTIVER1 bit 8 goes to vCPU 1
        /// (its route) and waits for vCPU 1's refill; vCPU 1 calls CPU_OFF
        /// before that refill. `release_list_registers` deactivates SPI
        /// 40 for the unplaced set-active (no backlog entry) and again for
        /// the list register: ICC_DIR_EL1 of an inactive SPI (the fake CPU
        /// panics "INTID 40 deactivated while not active").
        #[test]
        fn r35_release_deactivates_an_spi_once() {
            let mut m = Machine::new(2);
            m.acknowledged(1, 40);
            m.cpus[1].lrs.lrs[0] = list_register(40, Some(40), 0xa0);
            m.route = Some(1);
            assert_eq!(m.access(0, ISACTIVER1, Some(1 << 8)), (0, 1 << 1));
            m.release(1, R35_COUNT);
            assert!(!m.physically_active(40));
        }

        /// R35-2. vCPU 0's GICD_ISACTIVER1 bit 8 (SPI 40 routed to vCPU 1)
        /// and vCPU 1's CPU_OFF: the release runs inside the SPI gate once
        /// vCPU 1 is marked off, so vCPU 0's write either posted before it
        /// (the release takes the set-active and ends it, below) or, as
        /// here, sees vCPU 1 off: the set-active stays with vCPU 0 (vCPU 1
        /// is not kicked), and vCPU 0's GICD_ICACTIVER1 bit 8 ends it (it
        /// used to be posted to vCPU 1 and stay physically active until
        /// vCPU 1 was turned on again).
        #[test]
        fn r35_set_active_for_a_vcpu_going_off_can_still_be_cleared() {
            let mut m = Machine::new(2);
            m.route = Some(1);
            m.release(1, R35_COUNT);
            assert_eq!(m.access(0, ISACTIVER1, Some(1 << 8)), (0, 0));
            assert_eq!(m.vcpus[1].spis.unplaced(0), 0);
            m.access(0, ICACTIVER1, Some(1 << 8));
            m.fill(0);
            assert_eq!(m.read(0, ISACTIVER1), 0, "SPI 40 reads active for good");
            assert!(
                !m.physically_active(40),
                "SPI 40 physically active for good"
            );
        }

        /// Review 37 R37-3's scenario: a set-active and a later
        /// clear-active posted to vCPU 1 (SPI 40 routed there) while it is
        /// on; its CPU_OFF's release takes both and, since the set-active
        /// made SPI 40 physically active and nothing else holds it, ends
        /// it physically, once.
        #[test]
        fn posts_a_release_takes_are_ended_physically() {
            let mut m = Machine::new(2);
            m.route = Some(1);
            m.access(0, ISACTIVER1, Some(1 << 8));
            assert_eq!(m.access(0, ICACTIVER1, Some(1 << 8)), (0, 1 << 1));
            assert!(m.physically_active(40), "the set-active was forwarded");
            m.release(1, R35_COUNT);
            assert!(!m.physically_active(40), "SPI 40 left physically active");
            assert_eq!(m.read(0, ISACTIVER1), 0);
        }

        /// R35-2, the request flavour. vCPU 0's GICD_ICACTIVER1 bit 8 after
        /// vCPU 1's CPU_OFF (it used to land in vCPU 1's word after its
        /// release and stay there while vCPU 1 was off). Later SPI 40 fires
        /// on vCPU 0 and its guest acknowledges it (active, HW list
        /// register). No stale request hides it: GICD_ISACTIVER1 shows SPI
        /// 40 active.
        #[test]
        fn r35_a_stale_request_of_an_off_vcpu_does_not_hide_an_active_spi() {
            let mut m = Machine::new(2);
            m.release(1, R35_COUNT);
            m.access(0, ICACTIVER1, Some(1 << 8));
            m.running = 0b01;
            m.acknowledged(0, 40);
            m.cpus[0].lrs.lrs[0] = active_hw(40);
            assert_eq!(
                m.read(0, ISACTIVER1),
                1 << 8,
                "an active SPI reads inactive"
            );
        }

        /// Review 37 R37-2: vCPU 2 was off when vCPU 0 read the power
        /// states for its access (`running` without it) and is on again
        /// by the time that access runs: hv acknowledged SPI 40 for it
        /// (active in a HW list register), and vCPU 1's GICD_ICACTIVER1 bit
        /// 8 asked it to end SPI 40. vCPU 0's access must leave vCPU 2's
        /// words alone (it used to take an off vCPU's words over, dropping
        /// the request: SPI 40 stayed active); vCPU 2's refill ends it.
        #[test]
        fn r37_a_vcpu_back_on_keeps_what_was_posted_to_it() {
            let mut m = Machine::new(3);
            m.acknowledged(2, 40);
            m.cpus[2].lrs.lrs[0] = active_hw(40);
            assert_eq!(m.access(1, ICACTIVER1, Some(1 << 8)), (0, 1 << 2));
            m.running = 0b011;
            m.read(0, ISACTIVER1);
            m.access(0, ISPENDR1, Some(1 << 9));
            m.running = 0b111;
            m.fill(2);
            assert_eq!(m.lr(2, 40), None, "the clear-active was dropped");
            assert!(!m.physically_active(40));
        }

        /// A request goes to the SPI's holder only. vCPU 1 holds SPI 40
        /// pending (hv acknowledged it there) and vCPU 0's GICD_ICPENDR1
        /// bit 8 asks it to withdraw it; vCPU 1 does, and SPI 40 fires
        /// again, now on vCPU 2's CPU, whose exit had applied its requests
        /// just before and acknowledges it. vCPU 2's next refill must not
        /// withdraw that newer instance: the clear was never its (it was
        /// asked of every other vCPU, and the interrupt was lost).
        #[test]
        fn a_request_reaches_only_the_holder_not_a_later_one() {
            let mut m = Machine::new(3);
            m.acknowledged(1, 40);
            m.cpus[1].lrs.lrs[0] = list_register(40, Some(40), 0xa0);
            assert_eq!(m.access(0, ICPENDR1, Some(1 << 8)), (0, 1 << 1));
            m.fill(1);
            assert!(!m.physically_active(40));
            m.acknowledged(2, 40);
            m.backlogs[2].push(40);
            m.fill(2);
            assert_eq!(m.lr(2, 40), Some(list_register(40, Some(40), 0xa0)));
            assert!(m.physically_active(40));
        }

        /// A CPU_OFF takes every request posted to the vCPU, of each kind
        /// (clear-active, clear-pending, set-active of an SPI it holds): an
        /// off vCPU keeps none. These, posted before, its release applies;
        /// one posted after that (review 37: the release's swaps of the
        /// clear-pending and set-active request words were not checked) is
        /// a race, the loom models `..._racing_a_cpu_off_leaves_no_request`.
        #[test]
        fn a_release_leaves_no_request_of_any_kind() {
            for (offset, intid) in [(ICACTIVER1, 40), (ICPENDR1, 41), (ISACTIVER1, 42)] {
                let mut m = Machine::new(2);
                m.acknowledged(1, intid);
                m.cpus[1].lrs.lrs[0] = list_register(intid, Some(intid), 0xa0);
                let bit = 1u64 << (intid - 32);
                assert_eq!(m.access(0, offset, Some(bit)), (0, 1 << 1), "{offset:#x}");
                assert_eq!(m.vcpus[1].spis.requests(0), bit as u32, "{offset:#x}");
                m.release(1, R35_COUNT);
                assert_eq!(m.vcpus[1].spis.requests(0), 0, "{offset:#x} left");
                assert!(!m.physically_active(intid));
            }
        }

        /// Review 37 R37-1: vCPU 0's guest handles SPI 40 (hv acknowledged
        /// it; an active HW list register) and the SPI is pending again
        /// physically (a level line still asserted, or a second edge): on a
        /// GIC, GICD_ISPENDR1 and GICD_ICPENDR1 read bit 8 set ("pending, or
        /// active and pending").
        #[test]
        fn r37_a_held_active_spi_pending_again_reads_pending() {
            let mut m = Machine::new(1);
            m.acknowledged(0, 40);
            m.dist.pending.insert(40);
            m.cpus[0].lrs.lrs[0] = active_hw(40);
            assert_eq!(m.read(0, ISPENDR1), 1 << 8, "ISPENDR1");
            assert_eq!(m.read(0, ICPENDR1), 1 << 8, "ICPENDR1");
        }

        /// R35-4. vCPU 0 holds SPI 40 pending (hv acknowledged it: a
        /// pending HW list register; physically active, not pending).
        /// R41-3: every write forwarded to the distributor inside the
        /// exclusive gate is read back before the gate is left.
        #[test]
        fn every_forwarded_write_is_read_back() {
            let mut m = Machine::new(2);
            for (offset, value) in [
                (ISACTIVER1, 1 << 8),
                (ICACTIVER1, 1 << 8),
                (ISPENDR1, 1 << 9),
                (ICPENDR1, 1 << 9),
            ] {
                m.dist.writes.clear();
                m.access(0, offset, Some(value));
                assert_eq!(m.dist.writes, [(offset, value)]);
                assert!(!m.dist.unread, "{offset:#x} not read back");
            }
        }

        /// GICD_ICPENDR1 (and GICD_ISPENDR1, forwarded) read it not
        /// pending, and GICD_ISACTIVER1 reads it not active: the guest's
        /// pending interrupt is in no state at all.
        #[test]
        fn r35_a_held_pending_spi_reads_pending() {
            let mut m = Machine::new(1);
            m.acknowledged(0, 40);
            m.cpus[0].lrs.lrs[0] = list_register(40, Some(40), 0xa0);
            assert_eq!(m.read(0, ISACTIVER1), 0, "not active: right");
            assert_eq!(m.read(0, ICPENDR1), 1 << 8, "pending in the list register");
        }

        /// R35-4, the write side: GICD_ISPENDR1 bit 8 for SPI 40, which
        /// vCPU 0 holds pending (hv acknowledged it), has no effect (it is
        /// pending already; forwarded, it would be delivered again after
        /// the guest handled it); bit 9 (SPI 41, not held) is forwarded.
        /// The held SPI reads pending in GICD_ISPENDR1 too.
        #[test]
        fn r35_set_pending_of_a_held_pending_spi_is_not_forwarded() {
            let mut m = Machine::new(1);
            m.acknowledged(0, 40);
            m.cpus[0].lrs.lrs[0] = list_register(40, Some(40), 0xa0);
            m.access(0, ISPENDR1, Some(0b11 << 8));
            assert_eq!(m.dist.writes, [(ISPENDR1, 1 << 9)]);
            m.dist.pending.insert(41);
            assert_eq!(m.read(0, ISPENDR1), 0b11 << 8);
            // Active in its list register (the guest took it): a set-pending
            // makes it active and pending, as on a GIC.
            m.cpus[0].lrs.lrs[0] = active_hw(40);
            m.dist.writes.clear();
            m.access(0, ISPENDR1, Some(1 << 8));
            assert_eq!(m.dist.writes, [(ISPENDR1, 1 << 8)]);
        }

        /// Review 41 R41-1 (the reviewer's test, which failed): hv
        /// acknowledged SPI 40 for vCPU 1, whose list register holds it
        /// pending (its guest has not acknowledged it). vCPU 0 reads it as
        /// a GIC shows it: pending, not active; physically it is active
        /// (hv's acknowledgement), which is what vCPU 0 read before, and
        /// still reads without vCPU 1's answer.
        #[test]
        fn review41_an_spi_pending_on_another_vcpu_reads_inactive() {
            let mut m = Machine::new(2);
            m.acknowledged(1, 40);
            m.cpus[1].lrs.lrs[0] = list_register(40, Some(40), 0xa0);
            let active = m.read(0, ISACTIVER1);
            let pending = m.read(0, ISPENDR1);
            assert_eq!(
                (active, pending),
                (0, 1 << 8),
                "vCPU 0 sees active={active:#x} pending={pending:#x}"
            );
            assert_eq!(m.read(0, ICACTIVER1), 0);
            assert_eq!(m.read(0, ICPENDR1), 1 << 8);
            assert_eq!(m.access(0, ISACTIVER1, None).0, 1 << 8, "unanswered");
            assert_eq!(m.access(0, ISPENDR1, None).0, 0, "unanswered");
        }

        /// R41-1's transitions, read from vCPU 0 while vCPU 1 holds SPI 40:
        /// pending in its backlog (every list register in use), pending in
        /// its list register, acknowledged by its guest (active), pending
        /// again there (a second edge: active and pending), deactivated by
        /// its guest (HW bit: physically too; neither), and a software
        /// entry (EOI bit) its guest ended while hv has not yet deactivated
        /// the physical SPI (neither). SPIs 41-44, active in vCPU 1's list
        /// registers, read active.
        #[test]
        fn r41_an_spi_another_vcpu_holds_reads_as_its_guest_has_it() {
            let mut m = Machine::new(2);
            let busy = 0b1111 << 9;
            for (n, intid) in (41..45).enumerate() {
                m.acknowledged(1, intid);
                m.cpus[1].lrs.lrs[n] = active_hw(intid);
            }
            m.acknowledged(1, 40);
            m.backlogs[1].push(40);
            assert_eq!(m.read(0, ISACTIVER1), busy, "backlog: not active");
            assert_eq!(m.read(0, ISPENDR1), 1 << 8, "backlog: pending");
            assert_eq!(m.backlogs[1].as_slice(), [40], "still waiting");
            // Its guest ends 41-44; 40 takes a list register.
            for intid in 41..45 {
                m.guest_dir(1, intid);
            }
            m.exit(1);
            assert_eq!(m.lr(1, 40), Some(list_register(40, Some(40), 0xa0)));
            assert_eq!((m.read(0, ISACTIVER1), m.read(0, ISPENDR1)), (0, 1 << 8));
            // Its guest acknowledges it.
            m.cpus[1].lrs.lrs[0] = active_hw(40);
            assert_eq!((m.read(0, ISACTIVER1), m.read(0, ISPENDR1)), (1 << 8, 0));
            m.dist.pending.insert(40);
            assert_eq!(
                (m.read(0, ISACTIVER1), m.read(0, ISPENDR1)),
                (1 << 8, 1 << 8)
            );
            m.dist.pending.remove(&40);
            // And deactivates it.
            m.guest_dir(1, 40);
            assert!(!m.physically_active(40));
            assert_eq!((m.read(0, ISACTIVER1), m.read(0, ISPENDR1)), (0, 0));
            // An ended software entry: physically active until hv's EOI
            // maintenance, inactive for the guest.
            m.acknowledged(1, 40);
            m.cpus[1].lrs.lrs[0] = list_register_in(0, 40, None, 0xa0) | LR_EOI;
            assert_eq!((m.read(0, ISACTIVER1), m.read(0, ISPENDR1)), (0, 0));
            assert!(m.physically_active(40));
        }

        /// R41-1's writes from vCPU 0 to SPI 40, which vCPU 1 holds
        /// pending: GICD_ICACTIVER1 has no effect (not active): still
        /// pending in vCPU 1's list register and physically active once the
        /// write has ended (vCPU 1 applied it), and read so. GICD_ICPENDR1
        /// withdraws it before the write ends: vCPU 1's list register
        /// emptied, the physical SPI deactivated, and it reads neither.
        /// Active there (its guest acknowledged it), GICD_ICACTIVER1 ends
        /// it before the write ends.
        #[test]
        fn r41_clears_of_an_spi_another_vcpu_holds_take_effect_there() {
            let mut m = Machine::new(2);
            m.acknowledged(1, 40);
            let pending = list_register(40, Some(40), 0xa0);
            m.cpus[1].lrs.lrs[0] = pending;
            m.write(0, ICACTIVER1, 1 << 8);
            assert_eq!(m.lr(1, 40), Some(pending));
            assert!(m.physically_active(40));
            assert_eq!((m.read(0, ISACTIVER1), m.read(0, ISPENDR1)), (0, 1 << 8));
            m.write(0, ICPENDR1, 1 << 8);
            assert_eq!(m.lr(1, 40), None);
            assert!(!m.physically_active(40));
            assert_eq!((m.read(0, ISACTIVER1), m.read(0, ISPENDR1)), (0, 0));
            m.acknowledged(1, 40);
            m.cpus[1].lrs.lrs[0] = active_hw(40);
            assert_eq!(m.read(0, ISACTIVER1), 1 << 8);
            m.write(0, ICACTIVER1, 1 << 8);
            assert_eq!(m.lr(1, 40), None);
            assert!(!m.physically_active(40));
            assert_eq!((m.read(0, ISACTIVER1), m.read(0, ISPENDR1)), (0, 0));
        }

        /// Review 44 R44-4: vCPU 0's GICD_ISPENDR1 of SPI 40, which vCPU 1
        /// holds pending (hv acknowledged it there: in a list register,
        /// then in its backlog), has no effect: vCPU 1 is asked and leaves
        /// it, nothing is forwarded, so it is delivered once (forwarded,
        /// the physical SPI would be active and pending, and signalled
        /// again after its guest's deactivation). Active there (its guest
        /// took it), vCPU 1 forwards the write before the write ends: it
        /// reads active and pending. One its guest has ended (physically
        /// inactive) is forwarded by the writer, nobody asked.
        #[test]
        fn r44_set_pending_of_an_spi_pending_on_another_vcpu_has_no_effect() {
            let mut m = Machine::new(2);
            m.acknowledged(1, 40);
            let pending = list_register(40, Some(40), 0xa0);
            for in_backlog in [false, true] {
                if in_backlog {
                    // Every list register busy (active SPIs of another
                    // word), so it stays there.
                    for (n, intid) in (80..84).enumerate() {
                        m.acknowledged(1, intid);
                        m.cpus[1].lrs.lrs[n] = active_hw(intid);
                    }
                    m.backlogs[1].push(40);
                } else {
                    m.cpus[1].lrs.lrs[0] = pending;
                }
                assert_eq!(m.write(0, ISPENDR1, 1 << 8), 1 << 1, "vCPU 1 asked");
                assert_eq!(m.dist.writes, [], "not forwarded");
                assert!(!m.dist.pending.contains(&40));
                assert_eq!(m.vcpus[1].spis.requests(0), 0, "applied");
                assert_eq!(m.read(0, ISPENDR1), 1 << 8);
                assert_eq!(m.read(0, ISACTIVER1), 0);
            }
            assert_eq!(m.backlogs[1].as_slice(), [40], "still waiting");
            for intid in 80..84 {
                m.guest_dir(1, intid);
            }
            m.exit(1);
            assert_eq!(m.lr(1, 40), Some(pending), "one list register");
            // Its guest takes it: the write makes it active and pending.
            m.cpus[1].lrs.lrs[0] = active_hw(40);
            assert_eq!(m.write(0, ISPENDR1, 1 << 8), 1 << 1);
            assert_eq!(m.dist.writes, [(ISPENDR1, 1 << 8)], "forwarded by vCPU 1");
            assert!(!m.dist.unread, "read back");
            assert_eq!(
                (m.read(0, ISACTIVER1), m.read(0, ISPENDR1)),
                (1 << 8, 1 << 8)
            );
            // Its guest ends it (and the second edge is taken away): vCPU 1
            // holds it no more, the writer forwards, asking nobody.
            m.guest_dir(1, 40);
            m.dist.pending.clear();
            m.dist.writes.clear();
            assert_eq!(m.write(0, ISPENDR1, 1 << 8), 0);
            assert_eq!(m.dist.writes, [(ISPENDR1, 1 << 8)]);
        }

        /// R44-4 and CPU_OFF: a set-pending posted to vCPU 1, which goes off
        /// before applying it, is applied by its release: left for the SPI
        /// its guest had pending (withdrawn with the rest), forwarded for
        /// the one it had active (pending once deactivated). Nothing stays
        /// in vCPU 1's words.
        #[test]
        fn r44_a_set_pending_the_holder_did_not_apply_is_applied_by_its_release() {
            let mut m = Machine::new(2);
            m.acknowledged(1, 40);
            m.acknowledged(1, 41);
            m.cpus[1].lrs.lrs[0] = list_register(40, Some(40), 0xa0);
            m.cpus[1].lrs.lrs[1] = active_hw(41);
            assert_eq!(m.access(0, ISPENDR1, Some(0b11 << 8)), (0, 1 << 1));
            assert_eq!(m.dist.writes, []);
            m.release(1, R35_COUNT);
            assert_eq!(m.dist.writes, [(ISPENDR1, 1 << 9)]);
            assert!(!m.physically_active(40) && !m.physically_active(41));
            assert_eq!(m.dist.pending, BTreeSet::from([41]));
            assert_eq!(m.vcpus[1].spis.requests(0), 0);
        }

        /// Review 44 R44-2: a read of GICD_ISACTIVER1 with no SPI of the
        /// word held by another vCPU reads that register alone, outside the
        /// gate: with one vCPU, and with two when the SPIs active are the
        /// reader's (in its list register), made active and not placed
        /// (for vCPU 1), or of another word. With one of the word held
        /// elsewhere (physically active, pending in vCPU 1's list
        /// register) it takes the gate and asks. A read of GICD_ISPENDR1
        /// always takes the gate (an acknowledgement between its two
        /// register reads would hide a pending SPI).
        #[test]
        fn r44_active_reads_take_the_gate_only_for_spis_held_elsewhere() {
            let gated = |m: &Machine| m.holders.writers_in.load(Ordering::Relaxed);
            let mut one = Machine::new(1);
            one.acknowledged(0, 40);
            one.cpus[0].lrs.lrs[0] = active_hw(40);
            assert_eq!(one.read(0, ISACTIVER1), 1 << 8);
            assert_eq!(
                (gated(&one), one.dist.reads.as_slice()),
                (0, [ISACTIVER1].as_slice())
            );
            let mut m = Machine::new(2);
            m.acknowledged(0, 40);
            m.cpus[0].lrs.lrs[0] = active_hw(40);
            m.route = Some(1);
            assert_eq!(m.access(0, ISACTIVER1, Some(1 << 9)), (0, 1 << 1));
            m.acknowledged(1, 70);
            m.cpus[1].lrs.lrs[0] = list_register(70, Some(70), 0xa0);
            let before = gated(&m);
            m.dist.reads.clear();
            assert_eq!(m.read(0, ISACTIVER1), 0b11 << 8);
            assert_eq!(m.read(0, ICACTIVER1), 0b11 << 8);
            assert_eq!(gated(&m), before, "not gated");
            assert_eq!(m.dist.reads, [ISACTIVER1, ICACTIVER1 - 0x80]);
            assert_eq!(m.read(0, ISPENDR1), 0);
            assert_eq!(gated(&m), before + 1, "a pending read is gated");
            m.acknowledged(1, 42);
            m.cpus[1].lrs.lrs[1] = list_register(42, Some(42), 0xa0);
            assert_eq!(m.read(0, ISACTIVER1), 0b11 << 8, "42 pending there");
            assert_eq!(gated(&m), before + 2, "42 held elsewhere: gated");
        }

        /// A holder that goes off before it answers (its release ends what
        /// it held) gives no view: the SPIs asked of it read as the
        /// distributor has them then (inactive), not as at the start of the
        /// read (active). Only running holders are asked.
        #[test]
        fn r41_a_holder_gone_off_is_read_in_the_distributor() {
            let mut m = Machine::new(2);
            m.acknowledged(1, 40);
            m.cpus[1].lrs.lrs[0] = list_register(40, Some(40), 0xa0);
            let mut read = m.begin_read(0, ISACTIVER1);
            assert_eq!(read.holders(), 1 << 1);
            assert_eq!(read.value(), 1 << 8, "not answered yet");
            m.release(1, R35_COUNT);
            read.answer(1, None, &mut m.dist);
            assert_eq!((read.holders(), read.value()), (0, 0));
            m.acknowledged(1, 41);
            assert_eq!(m.begin_read(0, ISACTIVER1).holders(), 0, "vCPU 1 is off");
        }
    }

    /// The known gap "another vCPU's PPIs read physical": vCPU 1 reads
    /// vCPU 0's GICR_ISACTIVER0/ISPENDR0 while vCPU 0 holds PPI 27 (hv
    /// acknowledged it: physically active) pending in a HW list register.
    /// The physical view (what a remote read showed) says active, not
    /// pending; the view vCPU 0 publishes says pending, not active, as its
    /// own read does. No answer yet: None after the polls.
    #[test]
    fn another_vcpus_private_reads_show_its_virtual_state() {
        let (mut cpu, mut backlog, mut hw) = (ModelCpu::new(), Backlog::new(), FakeGic::default());
        let owner = VirtualSgis::new();
        cpu.active.insert(27);
        cpu.lrs.lrs[0] = list_register(27, Some(27), 0xa0);
        hw.write(RD + 0x1_0300, 4, 1 << 27);
        hw.writes.clear();
        let physical_active = guest(0x1_0300, 4, None, &owner, &mut hw);
        assert_eq!(physical_active, 1 << 27, "the old remote view");
        let number = owner.view.request();
        let mut polls = 0;
        assert_eq!(
            wait_for_private_view(&owner, number, 3, || {
                polls += 1;
                true
            }),
            None
        );
        assert_eq!(polls, 3, "the reader serves its own view between polls");
        polls = 0;
        assert_eq!(
            wait_for_private_view(&owner, number, 3, || {
                polls += 1;
                false
            }),
            None
        );
        assert_eq!(polls, 1, "the owner went off: no more waiting");
        publish_private_view(
            &owner,
            MAINTENANCE,
            (RD, 0x0800_0000),
            &SpiHolders::new(),
            &mut Held {
                cpu: &mut cpu,
                backlog: &mut backlog,
            },
            &mut hw,
        );
        assert_eq!(
            wait_for_private_view(&owner, number, 1, || true),
            Some((1 << 27, 0))
        );
        assert_eq!(owner.view.wanted(), None, "answered");
        // Answered once per request: a later request waits for a new view.
        let next = owner.view.request();
        assert_eq!(owner.view.published_for(next), None);
        assert_eq!(owner.view.wanted(), Some(next));
    }

    /// Review 44 R44-3: the holders are asked in one pass: both requests
    /// posted before the one kick (of both), the answers awaited together
    /// (vCPU 2's at once, vCPU 1's after two polls), and the polls shared:
    /// with nobody answering, the budget (5) is spent once, not per vCPU.
    /// A vCPU gone off is not waited for.
    #[test]
    fn r44_holders_are_asked_in_one_pass() {
        let vcpus: [VirtualSgis; 3] = core::array::from_fn(|_| VirtualSgis::new());
        let answer = |k: usize| {
            let number = vcpus[k].view.wanted().unwrap();
            vcpus[k].view.set_spis(2, k as u32, 0);
            vcpus[k].view.publish(number, 0, 0);
        };
        let (mut kicks, mut polls, mut answers) = (std::vec::Vec::new(), 0, std::vec::Vec::new());
        ask_spi_views(
            &vcpus,
            0b110,
            2,
            5,
            |asked| {
                assert!(vcpus[1].view.wanted().is_some() && vcpus[2].view.wanted().is_some());
                kicks.push(asked);
                answer(2);
            },
            || {
                polls += 1;
                if polls == 2 {
                    answer(1);
                }
            },
            |_| true,
            |k, view| answers.push((k, view)),
        );
        assert_eq!(kicks, [0b110]);
        assert_eq!(answers, [(2, Some((2, 0))), (1, Some((1, 0)))]);
        assert_eq!(polls, 2);
        let (mut polls, mut answers) = (0, std::vec::Vec::new());
        ask_spi_views(
            &vcpus,
            0b111,
            2,
            5,
            |_| {},
            || polls += 1,
            |k| k != 0,
            |k, view| answers.push((k, view)),
        );
        assert_eq!(answers, [(0, None), (1, None), (2, None)]);
        assert_eq!(polls, 5, "one budget for all");
    }

    /// Request numbers wrap: a view for request n answers every request up
    /// to n, none after it.
    #[test]
    fn private_view_numbers_wrap() {
        let view = PrivateView::new();
        view.requested.store(u32::MAX - 1, Ordering::Relaxed);
        view.published.store(u32::MAX - 1, Ordering::Relaxed);
        let a = view.request();
        let b = view.request();
        assert_eq!((a, b), (u32::MAX, 0));
        assert_eq!(view.wanted(), Some(0));
        view.publish(a, 1, 2);
        assert_eq!(view.published_for(a), Some((1, 2)));
        assert_eq!(view.published_for(b), None);
        view.publish(b, 3, 4);
        assert_eq!(view.published_for(a), Some((3, 4)));
        assert_eq!(view.published_for(b), Some((3, 4)));
        assert_eq!(view.wanted(), None);
    }
}
