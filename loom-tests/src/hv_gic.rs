//! The fake GIC CPU interface the hv vGIC loom models (`hv_spi_active`,
//! `hv_spi_place_two_words`, `hv_remote_clear`, `hv_private_view`,
//! `hv_spi_view`, `hv_spi_view_answers`) share: a CPU with `N` list registers whose ICC_DIR_EL1 ends a physical active
//! state kept by `P` (each model says which INTIDs a deactivation may
//! find active, and which one an acknowledgement may take), and an exit's
//! refill as `arch::gic` runs it. `PostedDeactivations` is a physical state
//! whose deactivations wait for the CPU's `synchronize` (the DSB), for a
//! model that checks that barrier (over an SPI's distributor state,
//! `ActiveSpi`, or a CPU's own PPIs, `RedistributorActive`);
//! `PostedAcknowledgements` posts an SPI's acknowledgements as well.

use hv::vgic::{
    self, Backlog, ListRegisters, PhysicalCpuInterface, SpiAccess, SpiHolders, VirtualSgis,
};
use loom::sync::atomic::{AtomicBool, Ordering};

/// The priority every refill gives a virtual interrupt.
pub const PRIORITY: u8 = 0xa0;

/// A CPU's physical active states, as its ICC_DIR_EL1 sees them: a
/// deactivation of an INTID that is not active fails the model.
pub trait PhysicalActive {
    fn deactivate(&mut self, intid: u32);
    /// ICC_IAR1_EL1: an interrupt pending and not active, now active; by
    /// default none (1023).
    fn acknowledge(&mut self) -> u32 {
        1023
    }
    /// The CPU's `synchronize` (the DSB after ICC_DIR_EL1 writes): by
    /// default nothing, the deactivations having taken effect at once.
    fn synchronize(&mut self) {}
}

/// One CPU: `N` list registers and the physical active states `physical`,
/// which say what it acknowledges.
#[derive(Debug)]
pub struct FakeCpu<const N: usize, P> {
    pub lrs: [u64; N],
    pub physical: P,
}

impl<const N: usize, P> FakeCpu<N, P> {
    pub fn new(lrs: [u64; N], physical: P) -> Self {
        FakeCpu { lrs, physical }
    }

    /// How many list registers hold `intid` (pending, active or both).
    pub fn holding(&self, intid: u32) -> usize {
        self.lrs
            .iter()
            .filter(|&&lr| lr >> 62 != 0 && lr & 0xffff_ffff == u64::from(intid))
            .count()
    }
}

impl<const N: usize, P> ListRegisters for FakeCpu<N, P> {
    fn count(&self) -> usize {
        N
    }
    fn empty(&mut self) -> u32 {
        (0..N)
            .filter(|&n| self.lrs[n] >> 62 == 0)
            .map(|n| 1 << n)
            .sum()
    }
    fn read(&mut self, n: usize) -> u64 {
        self.lrs[n]
    }
    fn write(&mut self, n: usize, value: u64) {
        self.lrs[n] = value;
    }
    fn set_underflow_interrupt(&mut self, _on: bool) {}
}

impl<const N: usize, P: PhysicalActive> PhysicalCpuInterface for FakeCpu<N, P> {
    fn acknowledge(&mut self) -> u32 {
        self.physical.acknowledge()
    }
    fn drop_priority(&mut self, _intid: u32) {}
    fn deactivate(&mut self, intid: u32) {
        self.physical.deactivate(intid);
    }
    fn synchronize(&mut self) {
        self.physical.synchronize();
    }
}

/// One exit's refill on a CPU, as `arch::gic::Gic::fill_list_registers`:
/// the remote clears first, then the list registers.
pub fn refill(
    cpu: &mut (impl PhysicalCpuInterface + ListRegisters),
    sgis: &VirtualSgis,
    holders: &SpiHolders,
    backlog: &mut Backlog,
) {
    vgic::apply_remote_clears(cpu, sgis, holders, backlog);
    vgic::fill_list_registers(cpu, sgis, backlog, |_| PRIORITY);
}

/// vCPU `writer`'s access to the SPIs' registers with every vCPU on,
/// every INTID below 1020 implemented and every SPI routed to any vCPU
/// (IRM = 1).
pub fn access_of<'a>(
    writer: usize,
    vcpus: &'a [VirtualSgis],
    holders: &'a SpiHolders,
) -> SpiAccess<'a, impl Fn(u32) -> Option<usize>, impl Fn(usize) -> bool> {
    SpiAccess {
        writer,
        vcpus,
        holders,
        is_on: |_| true,
        lines: 1020,
        route: |_| None,
    }
}

/// An active SGI in a list register (group 1), holding one the refill
/// must work around.
pub fn active_sgi(intid: u64) -> u64 {
    0b10 << 62 | 1 << 60 | u64::from(PRIORITY) << 48 | intid
}

/// The distributor's active and pending state of one SPI, shared by the
/// vCPUs' threads: only that SPI may be deactivated, and only while
/// active; a CPU acknowledges it while it is pending and not active.
#[derive(Debug)]
pub struct ActiveSpi {
    pub intid: u32,
    pub active: AtomicBool,
    pub pending: AtomicBool,
}

impl ActiveSpi {
    pub fn new(intid: u32) -> Self {
        ActiveSpi {
            intid,
            active: AtomicBool::new(false),
            pending: AtomicBool::new(false),
        }
    }
}

impl PhysicalActive for loom::sync::Arc<ActiveSpi> {
    fn deactivate(&mut self, intid: u32) {
        assert_eq!(intid, self.intid);
        assert!(
            self.active.swap(false, Ordering::AcqRel),
            "SPI {intid} deactivated while not active"
        );
    }

    /// Taken only if not active, which the swap decides (a writer's
    /// set-active stores to `active` too); `pending` is cleared only here.
    fn acknowledge(&mut self) -> u32 {
        if !self.pending.load(Ordering::Acquire) || self.active.swap(true, Ordering::AcqRel) {
            return 1023;
        }
        self.pending.store(false, Ordering::Release);
        self.intid
    }
}

/// A CPU whose deactivations are posted, as an ICC_DIR_EL1 write is: each
/// takes effect on `state` (the distributor's or the redistributor's
/// active states, which the model's `GicHardware` reads) only at the CPU's
/// next `synchronize` (the DSB that waits for it) or at
/// [`PostedDeactivations::complete`], where the model says the GIC got to
/// it on its own, as late as it may. Acknowledgements go to `state` at
/// once.
#[derive(Debug)]
pub struct PostedDeactivations<P = loom::sync::Arc<ActiveSpi>> {
    pub state: P,
    posted: Vec<u32>,
}

impl<P: PhysicalActive> PostedDeactivations<P> {
    pub fn new(state: P) -> Self {
        PostedDeactivations {
            state,
            posted: Vec::new(),
        }
    }

    /// The GIC completes the posted deactivations.
    pub fn complete(&mut self) {
        for intid in core::mem::take(&mut self.posted) {
            self.state.deactivate(intid);
        }
    }
}

impl<P: PhysicalActive> PhysicalActive for PostedDeactivations<P> {
    fn deactivate(&mut self, intid: u32) {
        self.posted.push(intid);
    }
    fn acknowledge(&mut self) -> u32 {
        self.state.acknowledge()
    }
    fn synchronize(&mut self) {
        self.complete();
    }
}

/// The physical active states of one CPU's SGIs and PPIs in its
/// redistributor (bit n: INTID n), shared between its CPU interface
/// (`PostedDeactivations`) and that CPU's own reads of GICR_ISACTIVER0
/// (the model's `GicHardware`); only that CPU touches them.
#[derive(Debug, Clone)]
pub struct RedistributorActive(pub loom::sync::Arc<loom::sync::atomic::AtomicU32>);

impl RedistributorActive {
    pub fn new(active: u32) -> Self {
        RedistributorActive(loom::sync::Arc::new(loom::sync::atomic::AtomicU32::new(
            active,
        )))
    }

    /// GICR_ISACTIVER0 as a memory-mapped read sees it.
    pub fn read(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }
}

impl PhysicalActive for RedistributorActive {
    fn deactivate(&mut self, intid: u32) {
        let before = self.0.fetch_and(!(1 << intid), Ordering::AcqRel);
        assert!(
            before & (1 << intid) != 0,
            "INTID {intid} deactivated while not active"
        );
    }
}

/// The physical active states of one CPU's SGIs and PPIs (bit n: INTID n),
/// which only that CPU touches.
#[derive(Debug, Default)]
pub struct PrivateActive(pub u32);

impl PhysicalActive for PrivateActive {
    fn deactivate(&mut self, intid: u32) {
        assert!(
            self.0 & (1 << intid) != 0,
            "INTID {intid} deactivated while not active"
        );
        self.0 &= !(1 << intid);
    }
}

/// A CPU with nothing active: any deactivation fails the model.
#[derive(Debug, Default)]
pub struct NothingActive;

impl PhysicalActive for NothingActive {
    fn deactivate(&mut self, intid: u32) {
        panic!("nothing to deactivate, {intid}");
    }
}

/// A CPU whose acknowledgements of one SPI are posted too: ICC_IAR1_EL1
/// gives this CPU the SPI at once (it is no longer pending, so no other CPU
/// takes it), but the distributor shows it active to other observers only
/// from the CPU's next `synchronize` (the DSB: GICv3 does not guarantee
/// the acknowledgement's effect visible before one). Deactivations are
/// posted as by [`PostedDeactivations`].
#[derive(Debug)]
pub struct PostedAcknowledgements {
    pub cpu: PostedDeactivations,
    acknowledged: Vec<u32>,
}

impl PostedAcknowledgements {
    pub fn new(spi: loom::sync::Arc<ActiveSpi>) -> Self {
        PostedAcknowledgements {
            cpu: PostedDeactivations::new(spi),
            acknowledged: Vec::new(),
        }
    }
}

impl PhysicalActive for PostedAcknowledgements {
    fn deactivate(&mut self, intid: u32) {
        self.cpu.deactivate(intid);
    }

    fn acknowledge(&mut self) -> u32 {
        let spi = &self.cpu.state;
        if spi.active.load(Ordering::Acquire) || !spi.pending.swap(false, Ordering::AcqRel) {
            return 1023;
        }
        self.acknowledged.push(spi.intid);
        spi.intid
    }

    fn synchronize(&mut self) {
        for _ in self.acknowledged.drain(..) {
            self.cpu.state.active.store(true, Ordering::Release);
        }
        self.cpu.synchronize();
    }
}
