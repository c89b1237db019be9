//! `hv.nested=demo`: a guest hypervisor (L1, `arch::nested_l1`) at virtual
//! EL2 with FEAT_NV2 runs its own L2 on the shadow-mmu service's shadow
//! stage 2 (`crate::nested` has the portable rules).
//!
//! - Memory: an arena at the top of the largest piece of RAM a guest
//!   would get. Its first 64 KiB hold L0's stage-2 table of
//!   L1 (hv's own, built with `shadow_selftest::memory::Stage2Builder`);
//!   from +2 MiB, [`L1_RAM_BYTES`] (a Linux L1's
//!   `linux::LINUX_L1_RAM_BYTES`) are L1's RAM at L1 IPA [`L1_BASE`]
//!   (2 MiB blocks). The service composes with the same table
//!   (`L0Stage2`) and walks L1's tables through it (`L1Memory`).
//! - vCPUs: vCPU 0 on the boot CPU; from three CPUs on, vCPU k on CPU
//!   k + 1 (`crate::nested::vcpus`) once L1 starts it with PSCI CPU_ON,
//!   answered by `crate::psci`'s state machine ([`L1Psci`], [`vcpu_main`]);
//!   its CPU_OFF powers the CPU down, and CPU_ON starts it again. Each
//!   has its own `Vcpu` (VNCR page, registers, counts) in [`VCPUS`], found
//!   at an exit by `TPIDR_EL2`.
//! - The service: with a second CPU it runs there ([`service_main`], an
//!   `ipc::Poller` over one ring pair per vCPU, WFE/SEV doorbells), and a vCPU
//!   sends each L2 stage-2 abort as `Request::Translate` and each trapped
//!   stage-2 TLBI as `Request::Invalidate` ([`call`], every wait bounded by
//!   [`TIMEOUT_MS`]); with one CPU `Service::reply` answers them inline.
//!   The service's TLB maintenance ([`HwTlb`]) runs on whichever CPU
//!   serves. The service is bounded to one context (`demo`) or
//!   [`RECYCLE_CONTEXTS`] (`recycle`, whose L1 runs three L2s in turn), and
//!   every shadow carries hv's side of the recycling handshake
//!   (`crate::nested::handshake`, shadow-mmu/README.md "Contract with hv:
//!   recycling"): each vCPU publishes its phase in [`PES`], enters L2 by
//!   `PeHandshake::enter` on *every* return to L2 (also after an exit hv
//!   handled itself), stores `Outside` first thing at every exit from L2,
//!   and a recycle (on whichever CPU recycles) kicks it, interrupts it with
//!   hv's kick SGI if it is in the victim's L2, and waits for it to leave
//!   ([`HwPes`]).
//! - Switches: an ERET of L1 to EL1/EL0 saves L1's virtual EL2 state (the
//!   hardware EL1 registers), loads L2's EL1 registers from the VNCR page
//!   and runs L2 with VTTBR_EL2 = the shadow VMID and root
//!   (`Service::shadow_root` of L1's VTTBR_EL2/VTCR_EL2). An exception L2
//!   takes to EL2 that is L1's (an abort the service answers with a fault
//!   for L1, HVC, SMC, a trap L1 set) enters L1's vector at VBAR_EL2 +
//!   0x400 with ELR/SPSR/ESR/FAR_EL2 in the hardware EL1 registers L1's
//!   EL2 accesses reach, and HPFAR_EL2 kept by hv (L1's reads of it trap).
//! - Interrupts (`arch::nested_vgic`, rules in `crate::nested::vgic`):
//!   while L2 runs the hardware virtual GIC interface holds L1's (its
//!   ICH_*_EL2 words of the VNCR page), written back at every exit from
//!   L2; while L1 runs it holds L1's own, where hv lists L1's maintenance
//!   interrupt. L1's maintenance interrupt that L2's run raises (the GIC
//!   maintenance PPI, taken at EL2) enters L1 at VBAR_EL2 + 0x480.
//! - L1's GIC (`arch::nested_gic`, rules in `crate::nested::gic`): its
//!   distributor and redistributors in software; L1's GICD/GICR accesses
//!   and SGI writes applied to them, what they forward listed in L1's own
//!   interface at every exit, taking L2 out to L1 at VBAR_EL2 + 0x480,
//!   other vCPUs kicked with hv's kick SGI.
//! - Timers (`arch::nested_timer`, rules in `crate::nested::timer`): the
//!   hardware EL1 timers are L1's EL2 timers while L1 runs and L2's EL1
//!   timers (from the VNCR page, with L1's CNTVOFF_EL2) while L2 runs;
//!   L1's timer PPIs are listed in its own interface or take L2 out to
//!   L1 at VBAR_EL2 + 0x480, as the maintenance interrupt does; the
//!   timers not in the hardware (L1's while L2 runs, L2's while L1 runs)
//!   have their deadlines on the EL2 physical timer.
//! - A watchdog (the EL2 physical timer, [`WATCHDOG_SECONDS`], kept
//!   before any guest deadline) ends a run in which L1 or L2 hangs.

use super::gic::Gic;
use super::nested_gic::L1GicDefect;
use super::nested_timer::{HardwarePpis, TimerAccess, TimerDefect, TimerIrq, VcpuTimers};
use super::nested_vgic::{GicDefect, L1GicAccess, Maintenance, VcpuGic};
use super::shadow_tlb::{stage1_pa, with_vmid, HwTlbs, TlbDefect};
use super::{cpu, exit, fail, phase, ExitStatus, GuestFrame, SecondaryBoot, STACKS, STACK_SIZE};
use crate::esr::{instruction_length, MmioAccess, MmioKind};
use crate::exit::SysRegAccess;
use crate::inject::{
    external_cache_maintenance_abort_syndrome, external_data_abort_syndrome,
    external_instruction_abort_syndrome, undefined_syndrome,
};
use crate::nested::at::AtFeatures;
use crate::nested::el2_regime::{L1Vel2Mode, NonVheRegime, Stage1Features, VheRegime};
use crate::nested::entry::{
    abort_access, el0_tge_hardware_sctlr, eret_from_vel2, exception_to_vel2,
    external_abort_syndrome, fault_ipa_source, ipa_from_par, l1_routes_external_aborts,
    l2_fault_ipa, l2_stage1_on, runs_el0_with_tge, tge_el0_exit, EretTarget, FaultIpaSource,
    Origin, TgeEl0Exit, Vel2Register,
};
use crate::nested::fault_rate::{self, Counts as FaultRateCounts};
use crate::nested::gic::L1GicLayout;
use crate::nested::handshake::{
    Entry, HandshakeBackend, Kicks, NeverLeft, PeHandshake, PeSet, Phase,
};
use crate::nested::idregs::{
    l2_id_read, shown_to_l1, shown_to_non_vhe_l1, without_sve_sme, IdRegister, L2IdRead,
};
use crate::nested::mid_change::Resume as MidChangeResume;
use crate::nested::timer::{TimerPpis, DEFAULT_HYP_VIRTUAL_PPI};
use crate::nested::traps::{l2_trap_route, CptrLayout, L1TrapControls, L2TrapRoute, ShownFeatures};
use crate::nested::vcpus::{
    cpu_vcpu, l1_trusted_os, l1_vcpus, unkicked_vcpu, vcpu_cpu, vcpu_of_mpidr, KickCounts,
    SERVICE_CPU,
};
use crate::nested::vgic::{l2_sgi_write, L2SgiWrite, ICH_HCR_EL2};
use crate::nested::vncr::{l2_midr, l2_mpidr, El1Register, El1State, VncrPage};
use crate::nested::{
    el2_stage1_tlbi_form, hcr, l2_hcr, stage1_tlbi_form_shown, stage1_tlbi_target, FirstSeen,
    Sighting, Stage1TlbiTarget, Summary, HV_INTERRUPT_ROUTING,
};
use crate::pagetable::MAIR_EL2;
use crate::platform::{NestedDemo, Platform, Region, MAX_CPUS};
use crate::println;
use crate::psci::{self, status, FirmwareTrustedOs, PsciHost, PsciOutcome, VcpuPower};
use crate::shadow_selftest::backend::{identity_frames, SelftestBackend, VmidTlbs};
use crate::shadow_selftest::memory::{
    leaf_descriptor, Arena, L0Stage2, L1Memory, LeafAccess, Stage2Builder,
};
use crate::shadow_selftest::{BUDGET_BYTES, L1_HOST_VMID};
use crate::sysregs::{self, CpuFeatures, NestedVirt};
use crate::vgic::{sgi1r_for, KICK_SGI};
use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use cpu::{read_sysreg, write_sysreg};
use ipc::tlbi::{IpaRange, Tlbi, TlbiFeatures, TlbiOp};
use ipc::{
    ClientError, ContextKey, Endpoint, Envelope, InvalidateRequest, L0Change, L0Denial, Poller,
    Reply, Request, RetryReason, RingBuffer, TranslateOutcome, TranslateRequest, VcpuClient,
    VcpuId, VmidWidth, WfeDoorbell,
};
use shadow_mmu::budget::Budget;
use shadow_mmu::compose::L0Map;
use shadow_mmu::context::HostVmids;
use shadow_mmu::service::{Service, ServiceConfig, Worker};
use shadow_mmu::shadow_table::{shadow_vtcr, HeapFramePool, ShadowConfig, TlbMaintenance};
use smccc::psci::PSCI_FEATURES;
use walker::{ExposedFeatures, IdRegisters};

mod at;
mod linux;
mod mid_change;
mod mmu;
mod tlbi_race;
mod traps;
mod vector;

/// hv's console call for L1 (SMCCC fast call, SMC64, owner 6: vendor
/// specific hypervisor service, function 1): prints the byte in x1; x0
/// returns 0. A `\n` ends the line, which hv prints as `l1: <line>`.
pub const HVC_CONSOLE_PUTC: u64 = 0xc600_0001;
/// `hv.nested=fault-rate` only (else NOT_SUPPORTED): the start of pass x1's
/// timed window; hv snapshots its counts. x0 returns 0.
pub const HVC_FAULT_RATE_BEGIN: u64 = 0xc600_0002;
/// The end of pass x1's window, x2 the counter ticks L1 measured, x3 the
/// pages L2 touched: hv prints the pass's line and checks its counts
/// (`crate::nested::fault_rate`). x0 returns 0.
pub const HVC_FAULT_RATE_END: u64 = 0xc600_0003;
/// `hv.nested=mid-change` only (else NOT_SUPPORTED): checks the step
/// before, then runs step x1 (0: none, the end), writing x1 into L1's
/// word at L1 IPA x2 once its break is in (`mid_change::call`). x0
/// returns 0.
pub const HVC_MID_CHANGE: u64 = 0xc600_0004;
/// `hv.nested=tlbi-race` only (else NOT_SUPPORTED), vCPU 0: the start of
/// L1's generations; hv snapshots its counts. x0 returns 0.
pub const HVC_TLBI_RACE_BEGIN: u64 = 0xc600_0005;
/// Its end: x1-x8 L1's counts (`tlbi_race::end`); hv checks them and
/// prints its verdict (a failure ends the run). x0 returns 0.
pub const HVC_TLBI_RACE_END: u64 = 0xc600_0006;
/// The fault-rate case's service budget: its split holds every page's
/// shadow leaf and cached walk twice over (4608 KiB: 2293 shadow leaves,
/// 8192 cache places; the other demos' 512 KiB hold 245 leaves).
const FAULT_RATE_BUDGET_BYTES: usize = 4608 << 10;
/// `fault-rate-tight`'s service budget, below the working set of a pass
/// (2048 pages and L2's code page) in the cache and in the shadow: with
/// a 48-bit PA (QEMU's `max` CPU) 512 + 16 leaf places, 128 path places,
/// 245 shadow leaves and 53 frames (the other demos' `BUDGET_BYTES`), so
/// every pass evicts (`fault_rate::pressure`). hv refuses to run the case
/// on a split that holds the pages in either.
const FAULT_RATE_TIGHT_BUDGET_BYTES: usize = 512 << 10;

const ARENA_ALIGN: u64 = 2 << 20;
const L0_TABLES_END: u64 = 16 * 4096;
const L1_RAM_OFFSET: u64 = 2 << 20;
/// L1's RAM.
pub const L1_RAM_BYTES: u64 = 6 << 20;
/// L1's RAM's first IPA, where its image is and where it starts.
pub const L1_BASE: u64 = 0x4000_0000;

const EC_UNKNOWN_MASK: u64 = 0x3f;
/// WFI/WFE (ISS.TI says which; only WFI and WFIT trap, HCR_EL2.TWI).
const EC_WFX: u64 = 0x01;
/// ISS.TI of a trapped WFx: 0b00 WFI, 0b01 WFE, 0b10 WFIT, 0b11 WFET.
const ISS_WFX_TI: u64 = 0b11;
const EC_HVC64: u64 = 0x16;
const EC_SMC64: u64 = 0x17;
const EC_SYSREG: u64 = 0x18;
const EC_ERET: u64 = 0x1a;
const EC_IABT_LOWER: u64 = 0x20;
const EC_DABT_LOWER: u64 = 0x24;

type NestedService = Service<
    L1Memory<'static>,
    &'static L0Stage2<'static>,
    HandshakeBackend<SelftestBackend<HeapFramePool, HwTlbs>, HwPes>,
>;

/// The context bound of the `recycle` demos: below the three L2s their L1
/// runs in turn, so the service recycles while they run. With more vCPUs,
/// one context for each (`recycle_contexts`).
pub const RECYCLE_CONTEXTS: usize = 2;

/// The `recycle` demos' context bound with L1's `vcpus`: one per vCPU, at
/// least [`RECYCLE_CONTEXTS`]. Each vCPU but 0 runs one L2 for long, and
/// vCPU 0 switches among three: so many contexts hold every L2 running at
/// once and leave one free slot for vCPU 0's switches to recycle (with
/// fewer, the running L2s would take each other's slots without end),
/// and the five L2s of three vCPUs still need more than the three slots.
fn recycle_contexts(vcpus: usize) -> usize {
    vcpus.max(RECYCLE_CONTEXTS)
}

/// The vCPUs that can run L2 (PEs of the handshake, indexed like the
/// vCPUs): vCPU 0 on the boot CPU, the others on every CPU but the
/// service's (`crate::nested::vcpus`), once L1 starts them.
const NESTED_VCPUS: usize = MAX_CPUS - 1;

/// Each vCPU's handshake state (shadow-mmu/README.md, "Contract with hv:
/// recycling"), by vCPU index.
static PES: [PeHandshake; NESTED_VCPUS] = [const { PeHandshake::new() }; NESTED_VCPUS];
/// Each vCPU's physical CPU (MPIDR_EL1 affinity; None: no CPU for it), set
/// before the service exists. A PE whose vCPU is off is `Outside` (its
/// CPU_OFF was an exit from L1), so no recycle kicks or waits for it.
static PE_MPIDRS: spin::Once<[Option<u64>; NESTED_VCPUS]> = spin::Once::new();
/// The recycles' kick passes, the PEs they kicked, and those they
/// interrupted and waited for.
static KICK_PASSES: AtomicU64 = AtomicU64::new(0);
static KICKED: AtomicU64 = AtomicU64::new(0);
static WAITED: AtomicU64 = AtomicU64::new(0);
/// hv's kick SGIs each vCPU took.
static KICK_IRQS: KickCounts<NESTED_VCPUS> = KickCounts::new();

/// MPIDR_EL1's affinity fields.
const MPIDR_AFFINITY: u64 = 0xff_00ff_ffff;

/// The machine under hv's handshake: the PEs in [`PES`], hv's kick SGI as
/// the interrupt, the physical counter as the clock, and a run that ends
/// with one line when a PE never leaves L2.
#[derive(Clone, Copy, Debug)]
struct HwPes;

impl PeSet for HwPes {
    fn pes(&self) -> &[PeHandshake] {
        // `recycle-no-kick-all`: the kick pass sees vCPUs 0 and 1 only
        // (the two-vCPU PE set), so it skips a live vCPU 2.
        match NESTED.get().map(|nested| nested.demo) {
            Some(NestedDemo::RecycleNoKickAll) => &PES[..2],
            _ => &PES,
        }
    }
    fn current_pe(&self) -> Option<usize> {
        let me = read_sysreg!("mpidr_el1") & MPIDR_AFFINITY;
        PE_MPIDRS.get()?.iter().position(|&m| m == Some(me))
    }
    fn interrupt(&self, pe: usize) {
        let Some(&Some(mpidr)) = PE_MPIDRS.get().and_then(|m| m.get(pe)) else {
            fail(format_args!("nested: handshake: PE {pe} has no CPU"));
        };
        // The kick store before the SGI (a write to ICC_SGI1R_EL1 is not
        // a memory access): the target may then find it after its exit.
        cpu::dsb_ish();
        write_sysreg!("s3_0_c12_c11_5", sgi1r_for(KICK_SGI, mpidr));
        cpu::isb();
    }
    fn now(&self) -> u64 {
        cpu::counter()
    }
    fn wait_limit(&self) -> u64 {
        read_sysreg!("cntfrq_el0").saturating_mul(TIMEOUT_MS) / 1000
    }
    fn relax(&self) {
        core::hint::spin_loop();
    }
    fn recycled(&self, kicks: Kicks) {
        KICK_PASSES.fetch_add(1, Ordering::Relaxed);
        KICKED.fetch_add(u64::from(kicks.kicked), Ordering::Relaxed);
        WAITED.fetch_add(u64::from(kicks.waited), Ordering::Relaxed);
    }
    fn never_left(&self, why: NeverLeft) -> ! {
        fail(format_args!("nested: recycling handshake: {why}"))
    }
}

/// Fixed once the demo is set up.
struct Nested {
    service: &'static NestedService,
    /// `fault-rate`: where hv moves L1's data pages before the pass that
    /// needs an L0 change (`fault_rate_l0_move`).
    fault_rate_move: Option<FaultRateMove>,
    /// `mid-change`: the blocks of L1's RAM hv breaks under vCPU 1's
    /// accesses, step by step (`mid_change::call`).
    mid_change: Option<mid_change::MidChange>,
    /// `fault-rate-tight`: what its budget holds, which bounds what hv
    /// checks at each END (`fault_rate::pressure`).
    fault_rate_pressure: Option<fault_rate::pressure::Limits>,
    /// L1's hardware VTTBR_EL2 and VTCR_EL2 (L0's map of L1).
    l0_vttbr: u64,
    l0_vtcr: u64,
    /// VTCR_EL2 of every shadow.
    shadow_vtcr: u64,
    /// The TLBI forms L1 was shown (its ID_AA64ISAR0/1_EL1).
    tlbi_features: TlbiFeatures,
    /// The failure modes' L1 stage-2 TLBIs acknowledged, not applied.
    skipped_stage2_tlbis: crate::platform::SkippedStage2Tlbis,
    /// Which demo runs (`recycle` must recycle; `recycle-stale-root` reuses
    /// a key's first root instead of asking at every entry).
    demo: NestedDemo,
    /// Whether L1 is a VHE or a non-VHE guest hypervisor (`mmu`), and
    /// the stage-1 features it is shown (for its EL2 regime's conversion).
    mode: L1Vel2Mode,
    stage1: Stage1Features,
    /// `mmu-no-t0sz`: the hardware gets T0SZ 16 whatever L1's TCR_EL2
    /// says (the defect that demo must catch).
    ignore_t0sz: bool,
    /// `mmu-vhe-keep-dc`: HCR_EL2.DC stays set for L1 (its stage 1
    /// silently off; the defect that demo must catch).
    keep_dc: bool,
    /// `host-el0-no-span`: the hardware SCTLR_EL1.SPAN stays 1 while a VHE
    /// L1 is in host mode (the defect that demo must catch).
    ignore_host_span: bool,
    /// `host-el0-no-span-back`: the hardware SCTLR_EL1 is not converted
    /// again when a VHE L1 leaves host mode (SPAN stays L1's; the defect
    /// that demo must catch).
    keep_host_span: bool,
    /// `mmu-no-el2-tlbi`: L1's own EL2 stage-1 TLBIs (ALLE2, VAE2IS, ...)
    /// are acknowledged, not applied (the defect that demo must catch).
    skip_l1_own_tlbi: bool,
    /// The stage-2 features L1 is shown (the service's, and its AT
    /// emulation's, `arch::nested::at`), and which AT forms it has.
    exposed: ExposedFeatures,
    at_features: AtFeatures,
    /// `at-no-s12`: L1's AT S12E* are answered with stage 1 only (the
    /// defect that demo must catch).
    at_stage1_only: bool,
    /// `at-no-l2-fill`: the stage-2 abort of L2's own AT on its stage-1
    /// walk is answered with a PAR_EL1 fault value, the shadow left
    /// unfilled (the defect that demo must catch).
    l2_at_walk_par: bool,
    /// `el0-tge-no-at`: L1's AT instructions ignore its virtual TGE (the
    /// EL1&0 stage 1 walked as if on: the defect that demo must catch).
    at_ignores_tge: bool,
    /// L1's memory as hv reads it (its stage-1 walk aborts are found by
    /// walking its tables there, `mmu::l1_walk_abort`).
    arena: &'static Arena<'static>,
    l0_map: &'static L0Stage2<'static>,
    /// What the other vCPUs' CPUs need: the CPU's features (EL2 traps),
    /// hv's stage 1 (TTBR0/TCR_EL2), every CPU's MPIDR (by platform
    /// index), and how many vCPUs L1 has (`nested::vcpus::l1_vcpus`).
    features: CpuFeatures,
    ttbr: u64,
    tcr: u64,
    cpus: arrayvec::ArrayVec<u64, MAX_CPUS>,
    vcpus: usize,
    /// The GIC maintenance PPI: hv takes it at EL2 while L2 runs on L1's
    /// virtual interface, and L1 gets it as its own maintenance interrupt
    /// (`arch::nested_vgic`).
    gic_maintenance: u32,
    /// L1's EL2 trap controls: hv's own values, what L1 is shown
    /// (`arch::nested::traps`).
    traps: traps::TrapSetup,
    /// L1's ZCR_EL2 and SMCR_EL2: what L1 is shown of SVE and SME, hv's
    /// own values (`arch::nested::vector`).
    vector: vector::VectorSetup,
    /// L1's RAM's size (from [`L1_BASE`]).
    l1_ram_bytes: u64,
    /// L1 is a Linux kernel (`linux`): its HVCs are its own, its console
    /// UART is emulated.
    linux: bool,
    /// The console UART, emulated for a Linux L1 (`linux::uart_access`).
    uart: Region,
    /// L1's timer PPIs and the hardware's (`arch::nested_timer`).
    l1_timer_ppis: TimerPpis,
    hardware_timer_ppis: HardwarePpis,
    /// Where L1's GIC distributor and redistributors are (the platform's
    /// addresses), and the defect of a `gic-no-*` demo
    /// (`arch::nested_gic`).
    l1_gic: L1GicLayout,
    l1_gic_defect: L1GicDefect,
}

impl Nested {
    /// The value L1 reads for ID `register` (its mode's view of the host's).
    fn shown(&self, register: IdRegister) -> u64 {
        let host = read_id_register(register);
        let shown = match self.mode {
            L1Vel2Mode::Vhe => shown_to_l1(register, host),
            L1Vel2Mode::NonVhe => shown_to_non_vhe_l1(register, host),
        };
        if self.demo.linux_l1() && self.demo != NestedDemo::LinuxNoSveHiding {
            // Documented at `without_sve_sme`.
            without_sve_sme(register, shown)
        } else {
            shown
        }
    }
}

/// Where the vCPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// L1 at virtual EL2.
    L1,
    /// L2, on this shadow (VMID, root) for this key.
    L2 { key: ContextKey },
    /// L2 with L1's stage 2 off (virtual HCR_EL2.VM = 0): L2's IPA is
    /// L1's, so L2 runs on L0's map of L1 under its vCPU's [`l2_direct_vmid`].
    L2Direct,
}

/// The VMID L2 runs under while L1's stage 2 is off: L0's map of L1, but
/// not L1's VMID ([`L1_HOST_VMID`]), whose EL1&0 TLB entries are L1's own
/// virtual EL2 ones; below the shadow VMIDs ([`FIRST_SHADOW_VMID`]).
const L2_DIRECT_VMID: u16 = 2;
/// The service's first shadow VMID: above every vCPU's [`l2_direct_vmid`].
const FIRST_SHADOW_VMID: u16 = L2_DIRECT_VMID + NESTED_VCPUS as u16;
const _: () = assert!(L2_DIRECT_VMID > L1_HOST_VMID);

/// The hardware VMID vCPU `index`'s L2 runs under while L1's stage 2 is
/// off: one per vCPU, so L2s of different virtual VMIDs on two vCPUs never
/// share stage-1 TLB entries; on one vCPU the entries are flushed when the
/// virtual VMID changes ([`Vcpu::direct_owner`]; review 24 N3).
const fn l2_direct_vmid(index: usize) -> u16 {
    L2_DIRECT_VMID + index as u16
}

/// Drops the stage-1 entries (combined ones included) of each vCPU's
/// [`l2_direct_vmid`], completed in the Inner Shareable domain: what L1's
/// TLBIs of its L2s' VMIDs cover while their stage 2 is off (a superset;
/// the stage-2 entries there are L0's map of L1, which L1 cannot change).
fn flush_direct_vmids() {
    for index in 0..NESTED_VCPUS {
        with_vmid(l2_direct_vmid(index), || {
            // SAFETY: drops that VMID's stage-1 entries, completed in the
            // Inner Shareable domain.
            unsafe { core::arch::asm!("dsb ishst", "tlbi vmalle1is", "dsb ish", options(nostack)) };
        });
    }
}

/// A vCPU's state (only its CPU touches it, with interrupts masked at
/// EL2; the summary reads the others' counts when their locks are free).
struct Vcpu {
    /// Its index (the handshake's PE, `TPIDR_EL2` on its CPU) and its id
    /// on the rings.
    index: usize,
    id: VcpuId,
    mode: Mode,
    /// Written by the hardware (NV2) while L1 runs, read and written by hv
    /// at L1's exits (the exception entry and ERET are context
    /// synchronizing): shared, never `&mut` (review 23 L1).
    vncr: &'static VncrPage,
    /// L1's virtual EL2 state (the hardware EL1 registers) while L2 runs.
    l1_el1: El1State,
    /// L1's HPFAR_EL2.
    hpfar: u64,
    /// A non-VHE L1's EL2 stage-1 registers as it wrote them (unused for a
    /// VHE L1, whose are the hardware EL1 registers).
    regime: NonVheRegime,
    /// A VHE L1's SCTLR_EL2 and TCR_EL2 as it wrote them.
    vhe_regime: VheRegime,
    /// Whether the hardware SCTLR_EL1 was last converted for a VHE L1 in
    /// host mode (`mmu::follow_host_mode`).
    host_mode: bool,
    /// L1's unemulated accesses already reported.
    undefined_seen: FirstSeen<32>,
    /// L1's console line.
    line: arrayvec::ArrayVec<u8, 160>,
    /// The rings to the service CPU; `None`: the service runs inline.
    client: Option<VcpuClient<'static, WfeDoorbell>>,
    /// L1's virtual VMID whose L2 (stage 2 off) last ran under this vCPU's
    /// [`l2_direct_vmid`]: that VMID's stage-1 entries may be in the TLB,
    /// so an L2 of another virtual VMID flushes them first.
    direct_owner: Option<u16>,
    /// `recycle-stale-root` only: the (VMID, root) of each key's first
    /// entry, reused without the handshake (the defect that demo shows).
    stale_roots: arrayvec::ArrayVec<(ContextKey, u16, u64), 8>,
    /// L1's virtual GIC interface for L2 and its own (`arch::nested_vgic`).
    gic: VcpuGic,
    /// L1's CPTR_EL2 and MDCR_EL2, and which of their trapped accesses
    /// were reported (`arch::nested::traps`).
    traps: L1TrapControls,
    traps_seen: u8,
    /// L1's ZCR_EL2 and SMCR_EL2 while L2 runs (while L1 runs they are
    /// the hardware ZCR_EL1 and SMCR_EL1), and which of their trapped
    /// accesses were reported (`arch::nested::vector`).
    l1_zcr: u64,
    l1_smcr: u64,
    vector_seen: u8,
    /// L1's and L2's generic timers (`arch::nested_timer`).
    timers: VcpuTimers,
    /// L1 called PSCI CPU_OFF on it: its CPU powers down once the exit is
    /// done and its lock released (`guest_exit`).
    off_requested: bool,
    /// The exit is L1's trapped WFI: hv waits for an interrupt once the
    /// exit is done and its lock released (`wait_for_l1_interrupt`).
    wfi: bool,
    /// This vCPU's handle on the service, made at its first use and kept:
    /// a `Worker` registers with the epoch collector (two blocks of over
    /// 2 KiB and a collection), too much for every L2 entry (review 38
    /// R38-4).
    worker: Option<VcpuWorker>,
    counts: Counts,
    /// `fault-rate`: hv's counts at the last END call (or the start) and
    /// at the open pass's BEGIN call.
    fault_rate: FaultRateMarks,
}

/// hv's L0 changes of the fault-rate case: L0's table of L1 (its 2 MiB
/// blocks) and where L1's data pages are, at home or at the spare place
/// after it (locked for the whole of a move: two vCPUs' BEGINs move one
/// after the other, each from where the other left the pages), and hv's
/// dirty log of them while it keeps one: one for all vCPUs, as the write
/// protection is (`fault-rate-smp`'s vCPUs write at once; a log of the
/// vCPU that started it left another vCPU's write unresolved, hv stopped
/// on its `L0Denied`). Locked from the check of a page to its log, so
/// two vCPUs' writes never both give write access for one page.
#[derive(Debug)]
struct FaultRateMove {
    l0_tables: Stage2Builder,
    data: spin::Mutex<fault_rate::DataPlaces>,
    dirty_log: spin::Mutex<Option<fault_rate::DirtyLog>>,
}

/// The snapshots a fault-rate pass's line is the difference of.
#[derive(Clone, Copy, Debug, Default)]
struct FaultRateMarks {
    last_end: FaultRateCounts,
    begin: Option<(u64, FaultRateCounts)>,
    /// The pages of the dirty log logged from L1's own write faults, in
    /// the single-vCPU cases (reset at the dirty-log pass's BEGIN on their
    /// one vCPU; `fault-rate-smp` counts each vCPU's in
    /// [`FAULT_RATE_SMP_VCPUS`] instead).
    l1_logged: u64,
    /// hv's own counts of L2's faults (on data pages, answered `Retry`)
    /// since the start, and at the last END and the open BEGIN, for
    /// `fault-rate-tight`'s checks (`fault_rate::pressure`).
    faults: fault_rate::pressure::Faults,
    faults_at_end: fault_rate::pressure::Faults,
    faults_at_begin: fault_rate::pressure::Faults,
    /// `fault-rate-tight`: the most the service held of each part after
    /// any L2 fault since the last END (`fault_rate_occupancy`). Only a
    /// fault adds entries; invalidations and L0 changes remove them.
    peak: fault_rate::pressure::Occupancy,
    /// `fault-rate-smp`: every vCPU's counts at the open pass's BEGIN
    /// (`fault_rate::smp`).
    smp_begin: [fault_rate::smp::VcpuFaults; NESTED_VCPUS],
    /// The single-vCPU cases: [`FAULT_RATE_ORDER`] at the open pass's
    /// BEGIN.
    order_begin: fault_rate::smp::VcpuFaults,
}

/// `fault-rate-smp`: each vCPU's counts of its L2's faults and of the
/// exceptions hv gave its L1, read by vCPU 0's BEGIN and END
/// (`fault_rate::smp`).
static FAULT_RATE_SMP_VCPUS: [fault_rate::smp::VcpuCounters; NESTED_VCPUS] =
    [const { fault_rate::smp::VcpuCounters::new() }; NESTED_VCPUS];
/// The single-vCPU fault-rate cases: the one vCPU's data faults in the
/// pass's order (`fault_rate::check_page_order`; the other counts are
/// the vCPU's own).
static FAULT_RATE_ORDER: fault_rate::smp::VcpuCounters = fault_rate::smp::VcpuCounters::new();
/// `fault-rate-smp`: the data pages faulted since vCPU 0's BEGIN.
static FAULT_RATE_SMP_PAGES: fault_rate::smp::PageTally = fault_rate::smp::PageTally::new();

/// A vCPU's service [`Worker`], which lives in the vCPU's state behind
/// [`VCPUS`]' lock.
struct VcpuWorker(Worker);

// SAFETY: a `Worker` is `!Send` because its epoch handle's state is not
// synchronised for concurrent use by two threads; nothing in it is tied to
// the thread (hv has no thread-local storage). A `VcpuWorker` lives in its
// vCPU's `Vcpu`, which is only reached through that vCPU's `VCPUS` lock,
// taken by the one PE running the vCPU: it is used by one PE at a time,
// and a move between PEs (none happens) would be ordered by the lock.
unsafe impl Send for VcpuWorker {}

/// The vCPU's [`Worker`] (`slot`: its `Vcpu::worker`), made at its first use.
fn vcpu_worker<'a>(nested: &Nested, slot: &'a mut Option<VcpuWorker>) -> &'a Worker {
    &slot
        .get_or_insert_with(|| VcpuWorker(nested.service.worker()))
        .0
}

impl Vcpu {
    /// vCPU `index` about to run L1 (its first ERET enters it) on the VNCR
    /// page `vncr`, answered over `client`'s rings or inline.
    fn new(
        index: usize,
        vncr: &'static VncrPage,
        client: Option<VcpuClient<'static, WfeDoorbell>>,
    ) -> Vcpu {
        Vcpu {
            index,
            id: VcpuId(index as u32),
            client,
            mode: Mode::L1,
            vncr,
            l1_el1: El1State::default(),
            hpfar: 0,
            regime: NonVheRegime::RESET,
            vhe_regime: VheRegime::RESET,
            host_mode: false,
            undefined_seen: FirstSeen::default(),
            line: arrayvec::ArrayVec::new(),
            direct_owner: None,
            stale_roots: arrayvec::ArrayVec::new(),
            gic: match NESTED.get() {
                Some(nested) => VcpuGic::new(
                    nested.gic_maintenance,
                    match nested.demo {
                        NestedDemo::IrqNoWriteback => GicDefect::NoLrWriteBack,
                        NestedDemo::IrqNoMaintenance => GicDefect::NoMaintenance,
                        NestedDemo::TimerHwNoLink => GicDefect::NoHwLink,
                        NestedDemo::LinuxNoL2Lr => GicDefect::NoL2Lists,
                        _ => GicDefect::None,
                    },
                ),
                None => VcpuGic::new(crate::vgic::DEFAULT_MAINTENANCE_INTID, GicDefect::None),
            },
            traps: NESTED.get().map_or(
                L1TrapControls::reset(CptrLayout::Vhe, ShownFeatures::default()),
                |nested| nested.traps.reset(),
            ),
            traps_seen: 0,
            l1_zcr: 0,
            l1_smcr: 0,
            vector_seen: 0,
            timers: vcpu_timers(),
            off_requested: false,
            wfi: false,
            worker: None,
            counts: Counts::default(),
            fault_rate: FaultRateMarks::default(),
        }
    }
}

/// A vCPU's timers as the demo set up says (`Vcpu::new`).
fn vcpu_timers() -> VcpuTimers {
    let Some(nested) = NESTED.get() else {
        fail(format_args!("nested: not set up"));
    };
    VcpuTimers::new(
        nested.mode == L1Vel2Mode::Vhe,
        nested.l1_timer_ppis,
        nested.hardware_timer_ppis,
        match nested.demo {
            NestedDemo::TimerNoCntvoff => TimerDefect::NoCntvoff,
            NestedDemo::TimerNoL1Irq => TimerDefect::NoL1Irq,
            NestedDemo::TimerNoL1Deadline => TimerDefect::NoL1Deadline,
            NestedDemo::TimerNoCnthctl => TimerDefect::NoCnthctl,
            NestedDemo::TimerNoCntvoffLevels => TimerDefect::NoCntvoffLevels,
            NestedDemo::TimerNoL2Deadline => TimerDefect::NoL2Deadline,
            NestedDemo::TimerNoEoiMaintenance => TimerDefect::NoEoiMaintenance,
            NestedDemo::TimerNoIstatusRefresh => TimerDefect::NoIstatusRefresh,
            NestedDemo::TimerNoCntvoffIstatus => TimerDefect::NoCntvoffIstatus,
            NestedDemo::TimerNoL2PhysicalDeadline => TimerDefect::NoL2PhysicalDeadline,
            NestedDemo::TimerNoCnthctlCounter => TimerDefect::NoCnthctlCounter,
            NestedDemo::TimerNoCntkctlRestore => TimerDefect::NoCntkctlRestore,
            _ => TimerDefect::None,
        },
    )
}

/// What the demo counted, for the summary line.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    l2_entries: u64,
    translates: u64,
    injected: u64,
    stage2_tlbis: u64,
    stage1_tlbis: u64,
    forwarded: u64,
    /// Which trapped EL2 registers were reported (2 bits a register: MSR,
    /// MRS).
    vel2_traps_seen: u32,
    /// The same for a non-VHE L1's EL2 stage-1 registers (`mmu`, bits
    /// 0-9), and a VHE L1's trapped EL2&0 register accesses (bits 32-35:
    /// EL1 or EL2 encoding, MSR or MRS).
    vel2_stage1_seen: u64,
    /// Entries into L2 that a kick sent back to `shadow_root`.
    entry_retries: u64,
}

impl Counts {
    /// Adds another vCPU's counts (not its report-once bits).
    fn add(&mut self, other: &Counts) {
        self.l2_entries += other.l2_entries;
        self.translates += other.translates;
        self.injected += other.injected;
        self.stage2_tlbis += other.stage2_tlbis;
        self.stage1_tlbis += other.stage1_tlbis;
        self.forwarded += other.forwarded;
        self.entry_retries += other.entry_retries;
    }
}

/// vCPU `index`'s end of its ring pair to the service CPU.
fn vcpu_client(index: usize) -> Result<VcpuClient<'static, WfeDoorbell>, ipc::RingError> {
    let rings = &RINGS[index];
    VcpuClient::new(
        VcpuId(index as u32),
        rings.requests.ring(),
        rings.replies.ring(),
        &SERVICE_BELL,
        &rings.reply_bell,
    )
}

static NESTED: spin::Once<Nested> = spin::Once::new();
static VCPUS: [spin::Mutex<Option<Vcpu>>; NESTED_VCPUS] =
    [const { spin::Mutex::new(None) }; NESTED_VCPUS];
/// L1's vCPUs' PSCI power states (`crate::psci`: CPU_ON, CPU_OFF,
/// AFFINITY_INFO), by vCPU index.
static L1_POWER: VcpuPower = VcpuPower::new();
/// Where L1's last CPU_ON of each vCPU asked it to start, and with which
/// context id: written before its CPU is started ([`L1Psci::power_on`]).
static STARTS: [VcpuStart; NESTED_VCPUS] = [const {
    VcpuStart {
        entry: AtomicU64::new(0),
        context: AtomicU64::new(0),
    }
}; NESTED_VCPUS];
/// Each vCPU's `SecondaryBoot` record, made at its first CPU_ON.
static BOOT_RECORDS: [spin::Once<&'static SecondaryBoot>; NESTED_VCPUS] =
    [const { spin::Once::new() }; NESTED_VCPUS];
/// The boot vCPU's watchdog deadline (armed again when L1 starts vCPU 0
/// after its CPU_OFF).
static WATCHDOG_DEADLINE: AtomicU64 = AtomicU64::new(0);

struct VcpuStart {
    entry: AtomicU64,
    context: AtomicU64,
}
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Set once the service CPU may start serving (`secondary_main` sends CPU
/// 1 to [`service_main`]).
static SERVICE_CPU_STARTED: AtomicBool = AtomicBool::new(false);
/// Each vCPU's ring pair to the service CPU.
static RINGS: [Rings; NESTED_VCPUS] = [const {
    Rings {
        requests: RingBuffer::new(),
        replies: RingBuffer::new(),
        reply_bell: WfeDoorbell,
        answered: AtomicU64::new(0),
    }
}; NESTED_VCPUS];
/// Rung by a vCPU after a request; the service waits on it (WFE).
static SERVICE_BELL: WfeDoorbell = WfeDoorbell;

/// Slots per ring: the vCPU has one request outstanding at a time.
const RING_SLOTS: usize = 4;
/// Every wait for the service CPU is bounded by this.
const TIMEOUT_MS: u64 = 5000;
/// The whole demo is bounded by this: the EL2 physical timer (CNTHP), its
/// PPI routed to EL2 (HCR_EL2.IMO for L1 and L2), ends a run in which L1
/// or L2 hangs with one line instead of leaving it to the driver's timeout.
const WATCHDOG_SECONDS: u64 = 20;
/// A Linux L1's bound: its boot on three vCPUs takes 4-11 s on the shared
/// 2-core machine, up to three times that when the host is loaded (every
/// broadcast TLBI L1 issues stops all of QEMU's vCPUs; review 48 saw 23-32
/// s of QEMU time), still inside the driver's 60 s per boot.
const LINUX_WATCHDOG_SECONDS: u64 = 45;

/// The watchdog's bound for `demo`: a Linux L1's, the fault-rate case's
/// own, or the default, also for the twins that hang by design after
/// their defect's own line (`linux-no-ipi`, `linux-no-sve-hiding`), which
/// end sooner with it.
fn watchdog_seconds(demo: NestedDemo) -> u64 {
    match demo {
        NestedDemo::LinuxNoIpi | NestedDemo::LinuxNoSveHiding => WATCHDOG_SECONDS,
        // Its own, measured: `fault_rate::WATCHDOG_SECONDS`.
        _ if demo.is_fault_rate() => fault_rate::WATCHDOG_SECONDS,
        _ if demo.linux_l1() => LINUX_WATCHDOG_SECONDS,
        _ => WATCHDOG_SECONDS,
    }
}

/// The ring pair and reply doorbell between a vCPU and the service CPU.
struct Rings {
    requests: RingBuffer<RING_SLOTS>,
    replies: RingBuffer<RING_SLOTS>,
    /// Rung by the service after answering.
    reply_bell: WfeDoorbell,
    /// Requests the service answered.
    answered: AtomicU64,
}

/// Whether the nested demo owns guest exits.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// For an exit from a shadow's L2 with syndrome `esr` and FAR_EL2 `far`:
/// PAR_EL1 of [`l2_stage1_par`] when the abort's IPA has to be found with
/// AT ([`FaultIpaSource::Stage1Walk`]), else None.
fn l2_fault_par(esr: u64, far: u64) -> Option<u64> {
    let class = (esr >> 26) & EC_UNKNOWN_MASK;
    if class != EC_DABT_LOWER && class != EC_IABT_LOWER {
        return None;
    }
    // HCR_EL2.DC (L2's, as L1 set it) makes L2's stage 1 behave as off
    // whatever SCTLR_EL1.M says.
    let stage1_on = l2_stage1_on(read_sysreg!("sctlr_el1"), read_sysreg!("hcr_el2"));
    match fault_ipa_source(esr, stage1_on) {
        FaultIpaSource::Stage1Walk => Some(l2_stage1_par(far)),
        FaultIpaSource::Far | FaultIpaSource::Hpfar => None,
    }
}

/// PAR_EL1 of `AT S1E1R` on `va` in the EL1&0 regime now in the hardware
/// (L2's). Only the address is wanted, so always an EL1 read, whatever
/// the faulting access was: an EL1 read is allowed on every valid stage-1
/// descriptor (AT S1E1R ignores PAN), where an EL0 read would fail on an
/// execute-only page and a write on a read-only one (a DC CIVAC reports
/// WnR = 1), leaving L2 to fault for ever (review 24 N1; KVM translates the
/// FAR the same way).
fn l2_stage1_par(va: u64) -> u64 {
    let saved = read_sysreg!("par_el1");
    let par: u64;
    // SAFETY: an address translation of the EL1&0 regime now in the
    // hardware (L2's); it writes only PAR_EL1, restored below.
    unsafe {
        core::arch::asm!("at s1e1r, {va}", "isb", "mrs {par}, par_el1", va = in(reg) va, par = out(reg) par, options(nostack, preserves_flags))
    }
    write_sysreg!("par_el1", saved);
    par
}

fn read_el1(register: El1Register) -> u64 {
    match register {
        El1Register::Sctlr => read_sysreg!("sctlr_el1"),
        El1Register::Cpacr => read_sysreg!("cpacr_el1"),
        El1Register::Ttbr0 => read_sysreg!("ttbr0_el1"),
        El1Register::Ttbr1 => read_sysreg!("ttbr1_el1"),
        El1Register::Tcr => read_sysreg!("tcr_el1"),
        El1Register::Mair => read_sysreg!("mair_el1"),
        El1Register::Amair => read_sysreg!("amair_el1"),
        El1Register::Contextidr => read_sysreg!("contextidr_el1"),
        El1Register::Vbar => read_sysreg!("vbar_el1"),
        El1Register::Elr => read_sysreg!("elr_el1"),
        El1Register::Spsr => read_sysreg!("spsr_el1"),
        El1Register::Esr => read_sysreg!("esr_el1"),
        El1Register::Far => read_sysreg!("far_el1"),
        El1Register::SpEl1 => read_sysreg!("sp_el1"),
        El1Register::Afsr0 => read_sysreg!("afsr0_el1"),
        El1Register::Afsr1 => read_sysreg!("afsr1_el1"),
        El1Register::Mdscr => read_sysreg!("mdscr_el1"),
    }
}

fn write_el1(register: El1Register, value: u64) {
    match register {
        El1Register::Sctlr => write_sysreg!("sctlr_el1", value),
        El1Register::Cpacr => write_sysreg!("cpacr_el1", value),
        El1Register::Ttbr0 => write_sysreg!("ttbr0_el1", value),
        El1Register::Ttbr1 => write_sysreg!("ttbr1_el1", value),
        El1Register::Tcr => write_sysreg!("tcr_el1", value),
        El1Register::Mair => write_sysreg!("mair_el1", value),
        El1Register::Amair => write_sysreg!("amair_el1", value),
        El1Register::Contextidr => write_sysreg!("contextidr_el1", value),
        El1Register::Vbar => write_sysreg!("vbar_el1", value),
        El1Register::Elr => write_sysreg!("elr_el1", value),
        El1Register::Spsr => write_sysreg!("spsr_el1", value),
        El1Register::Esr => write_sysreg!("esr_el1", value),
        El1Register::Far => write_sysreg!("far_el1", value),
        El1Register::SpEl1 => write_sysreg!("sp_el1", value),
        El1Register::Afsr0 => write_sysreg!("afsr0_el1", value),
        El1Register::Afsr1 => write_sysreg!("afsr1_el1", value),
        El1Register::Mdscr => write_sysreg!("mdscr_el1", value),
    }
}

fn read_id_register(register: IdRegister) -> u64 {
    match register {
        IdRegister::Pfr0 => read_sysreg!("s3_0_c0_c4_0"),
        IdRegister::Pfr1 => read_sysreg!("s3_0_c0_c4_1"),
        IdRegister::Pfr2 => read_sysreg!("s3_0_c0_c4_2"),
        IdRegister::Zfr0 => read_sysreg!("s3_0_c0_c4_4"),
        IdRegister::Smfr0 => read_sysreg!("s3_0_c0_c4_5"),
        IdRegister::Dfr0 => read_sysreg!("s3_0_c0_c5_0"),
        IdRegister::Dfr1 => read_sysreg!("s3_0_c0_c5_1"),
        IdRegister::Afr0 => read_sysreg!("s3_0_c0_c5_4"),
        IdRegister::Afr1 => read_sysreg!("s3_0_c0_c5_5"),
        IdRegister::Isar0 => read_sysreg!("s3_0_c0_c6_0"),
        IdRegister::Isar1 => read_sysreg!("s3_0_c0_c6_1"),
        IdRegister::Isar2 => read_sysreg!("s3_0_c0_c6_2"),
        IdRegister::Isar3 => read_sysreg!("s3_0_c0_c6_3"),
        IdRegister::Mmfr0 => read_sysreg!("s3_0_c0_c7_0"),
        IdRegister::Mmfr1 => read_sysreg!("s3_0_c0_c7_1"),
        IdRegister::Mmfr2 => read_sysreg!("s3_0_c0_c7_2"),
        IdRegister::Mmfr3 => read_sysreg!("s3_0_c0_c7_3"),
        IdRegister::Mmfr4 => read_sysreg!("s3_0_c0_c7_4"),
    }
}

/// Sets up L0's side (memory, L0's map of L1, the service, the VNCR page,
/// EL2) and enters L1 at virtual EL2. Never returns: L1 ends the run.
pub fn run(
    platform: &Platform,
    fdt: &fdt::Fdt<'_>,
    features: &CpuFeatures,
    demo: NestedDemo,
    device_tree: Region,
    ttbr: u64,
    tcr: u64,
) -> ! {
    if features.nested_virtualization() != NestedVirt::Nv2 {
        fail(format_args!(
            "nested: this CPU has no FEAT_NV2 (ID_AA64MMFR2_EL1.NV: {:?}), which hv needs to run a guest hypervisor (QEMU: -cpu max)",
            features.nested_virtualization()
        ));
    }
    let linux = demo.linux_l1();
    let hide_sve_sme = linux && demo != NestedDemo::LinuxNoSveHiding;
    let l1_ram_bytes = if linux {
        linux::LINUX_L1_RAM_BYTES
    } else if demo.is_fault_rate() {
        super::nested_l1_fault_rate::L1_RAM_BYTES
    } else {
        L1_RAM_BYTES
    };
    // The fault-rate case's data pages move between their place in L1's
    // RAM and as many bytes at the arena's end (`fault_rate_l0_move`).
    let moved_data_bytes = if demo.is_fault_rate() {
        super::nested_l1_fault_rate::DATA_BYTES
    } else if matches!(demo, NestedDemo::MidChange | NestedDemo::MidChangeNoRetry) {
        // The free 2 MiB each of its moves takes (`mid_change`).
        2 << 20
    } else {
        0
    };
    let arena_bytes = L1_RAM_OFFSET + l1_ram_bytes + moved_data_bytes;
    let Some(region) =
        super::shadow_selftest::arena_region(platform, device_tree, arena_bytes, ARENA_ALIGN)
    else {
        fail(format_args!(
            "nested: no {} MiB at the top of RAM clear of hv, the firmware's reservations, the initrd and the device tree",
            arena_bytes >> 20
        ));
    };
    // SAFETY: the region is RAM hv's stage 1 maps read/write (identity,
    // Normal write-back), outside hv's image, the firmware's reservations,
    // the initrd and the device tree; nothing else of hv uses it (no other
    // guest runs). AtomicU64 has the size and alignment of the u64 words
    // it is made of.
    let words = unsafe {
        core::slice::from_raw_parts(region.base as *const AtomicU64, (arena_bytes / 8) as usize)
    };
    let arena: &'static Arena<'static> = match Arena::new(words, region.base) {
        Ok(arena) => Box::leak(Box::new(arena)),
        Err(e) => fail(format_args!("nested: arena {e:?}")),
    };
    let l1_ram = region.base + L1_RAM_OFFSET;
    if arena.fill(l1_ram, l1_ram_bytes, |_| 0).is_none() {
        fail(format_args!("nested: L1's RAM is not inside the arena"));
    }
    let mut l0_tables = match Stage2Builder::new(arena, region.base, region.base + L0_TABLES_END) {
        Ok(t) => t,
        Err(e) => fail(format_args!("nested: L0's table of L1: {e}")),
    };
    if let Err(e) = l0_tables.map(arena, L1_BASE, l1_ram, l1_ram_bytes, 2, LeafAccess::ALL) {
        fail(format_args!("nested: L0's table of L1: {e}"));
    }
    // hv's table maps all of L1's RAM except while hv changes it itself
    // (break-before-make), which the service must be told apart from a
    // hole (`L0Stage2`'s `unbacked`).
    let l0_map: &'static L0Stage2<'static> = Box::leak(Box::new(L0Stage2::new(
        arena,
        l0_tables.root(),
        L1_BASE..L1_BASE + l1_ram_bytes,
    )));
    let fault_rate_move = demo.is_fault_rate().then(|| FaultRateMove {
        l0_tables,
        data: spin::Mutex::new(fault_rate::DataPlaces::new(
            l1_ram + super::nested_l1_fault_rate::DATA_OFFSET,
            l1_ram + l1_ram_bytes,
        )),
        dirty_log: spin::Mutex::new(None),
    });
    let mid_change = matches!(demo, NestedDemo::MidChange | NestedDemo::MidChangeNoRetry)
        .then(|| mid_change::MidChange::new(l0_tables, l1_ram, l1_ram + l1_ram_bytes));
    let recycling = demo.is_recycle();
    // L1's image, word by word (it is a whole number of pages).
    // A non-VHE L1 (`mmu`) or a VHE one (every other demo).
    let mode = if matches!(
        demo,
        NestedDemo::Mmu
            | NestedDemo::MmuNoT0sz
            | NestedDemo::MmuNoEl2Tlbi
            | NestedDemo::TrapsNvhe
            | NestedDemo::SveNvhe
            | NestedDemo::El0Tge
            | NestedDemo::El0TgeNoTge
            | NestedDemo::El0TgeNoAt
    ) {
        L1Vel2Mode::NonVhe
    } else {
        L1Vel2Mode::Vhe
    };
    let image = match demo {
        NestedDemo::Recycle
        | NestedDemo::RecycleStaleRoot
        | NestedDemo::RecycleNoOffState
        | NestedDemo::RecycleNoKickAll
        | NestedDemo::RecycleNoIdReset => super::nested_l1_recycle::image(),
        NestedDemo::Irq | NestedDemo::IrqNoWriteback | NestedDemo::IrqNoMaintenance => {
            super::nested_l1_irq::image()
        }
        NestedDemo::TimerHw | NestedDemo::TimerHwNoLink => super::nested_l1_hw_timer::image(),
        NestedDemo::Traps
        | NestedDemo::TrapsNoCptr
        | NestedDemo::TrapsNoMdcr
        | NestedDemo::TrapsNoEl2Cptr
        | NestedDemo::TrapsNoHpmeGuard
        | NestedDemo::TrapsNvhe => super::nested_l1_traps::image(),
        NestedDemo::Timer
        | NestedDemo::TimerNoCntvoff
        | NestedDemo::TimerNoL1Irq
        | NestedDemo::TimerNoL1Deadline
        | NestedDemo::TimerNoCnthctl
        | NestedDemo::TimerNoCntvoffLevels
        | NestedDemo::TimerNoL2Deadline
        | NestedDemo::TimerNoEoiMaintenance
        | NestedDemo::TimerNoIstatusRefresh
        | NestedDemo::TimerNoCntvoffIstatus
        | NestedDemo::TimerNoL2PhysicalDeadline
        | NestedDemo::TimerNoCnthctlCounter
        | NestedDemo::TimerNoCntkctlRestore => super::nested_l1_timer::image(),
        NestedDemo::Mmu
        | NestedDemo::MmuNoT0sz
        | NestedDemo::MmuNoEl2Tlbi
        | NestedDemo::MmuVhe
        | NestedDemo::MmuVheKeepDc => super::nested_l1_mmu::image(),
        NestedDemo::At | NestedDemo::AtNoS12 | NestedDemo::AtNoL2Fill => {
            super::nested_l1_at::image()
        }
        NestedDemo::Sve
        | NestedDemo::SveNvhe
        | NestedDemo::SveNoL2Limit
        | NestedDemo::SveNoL2Fa64 => super::nested_l1_sve::image(),
        NestedDemo::Gic
        | NestedDemo::GicNoL2Exit
        | NestedDemo::GicNoKick
        | NestedDemo::GicNoList
        | NestedDemo::GicNoEoiMaintenance
        | NestedDemo::GicNoPowerOff
        | NestedDemo::GicNoWithdraw
        | NestedDemo::GicNoReadSync
        | NestedDemo::GicNoReprioritize
        | NestedDemo::GicNoRemotePpiActive
        | NestedDemo::GicNoPpiActiveWait
        | NestedDemo::GicNoDisplace
        | NestedDemo::GicNoListedActive
        | NestedDemo::GicNoRemoteHwDeactivate => super::nested_l1_gic::image(),
        NestedDemo::FaultRate | NestedDemo::FaultRateNoTlbi | NestedDemo::FaultRateTight => {
            super::nested_l1_fault_rate::image()
        }
        NestedDemo::FaultRateSmp
        | NestedDemo::FaultRateSmpNoTlbi
        | NestedDemo::FaultRateSmpOneVcpuLog
        | NestedDemo::FaultRateSmpRaceUnresolved => super::nested_l1_fault_rate_smp::image(),
        NestedDemo::MidChange | NestedDemo::MidChangeNoRetry => {
            super::nested_l1_mid_change::image()
        }
        NestedDemo::TlbiRace | NestedDemo::TlbiRaceNoRangeTlbi => {
            super::nested_l1_tlbi_race::image()
        }
        NestedDemo::Demo
        | NestedDemo::DemoNoTlbi
        | NestedDemo::DemoNoVpidr
        | NestedDemo::DemoNoL1Ids => super::nested_l1::image(),
        NestedDemo::HostEl0
        | NestedDemo::HostEl0NoEl0FpTrap
        | NestedDemo::HostEl0NoSpan
        | NestedDemo::HostEl0NoSpanBack => super::nested_l1_host::image(),
        NestedDemo::El0Tge | NestedDemo::El0TgeNoTge | NestedDemo::El0TgeNoAt => {
            super::nested_l1_tge::image()
        }
        NestedDemo::Linux
        | NestedDemo::LinuxNoSveHiding
        | NestedDemo::LinuxNoL2Syndrome
        | NestedDemo::LinuxNoL2Tlbi
        | NestedDemo::LinuxNoL2Tid3
        | NestedDemo::LinuxNoL2Lr
        | NestedDemo::LinuxNoIpi => &[],
    };
    let vcpus = l1_vcpus(platform.cpus.len(), NESTED_VCPUS);
    // Where L1 starts (x0: a Linux kernel's device tree).
    let (l1_entry, l1_x0) = if linux {
        let entry = linux::load(fdt, platform, arena, l1_ram, vcpus);
        (entry.pc, entry.dtb)
    } else {
        write_image(arena, l1_ram, image);
        (L1_BASE, 0)
    };
    cpu::clean_invalidate_dcache(region.base, arena_bytes);
    cpu::invalidate_icache();

    // What L1 is shown (its ID registers) is what the service serves.
    let shown = |r| {
        let shown = shown_to_l1(r, read_id_register(r));
        if hide_sve_sme {
            without_sve_sme(r, shown)
        } else {
            shown
        }
    };
    let exposed = match ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: shown(IdRegister::Mmfr0),
        mmfr1: shown(IdRegister::Mmfr1),
        mmfr2: shown(IdRegister::Mmfr2),
    }) {
        Ok(f) => f,
        Err(e) => fail(format_args!(
            "nested: the ID registers shown to L1 do not decode: {e:?}"
        )),
    };
    let ps = features.pa_range().min(0b101);
    let pa_bits = crate::pagetable::pa_range_bits(ps).map_or(48, u32::from);
    let xnx = (features.id_aa64mmfr1 >> 28) & 0xf != 0;
    let shadow_config = ShadowConfig { xnx, pa_bits };
    // vCPU k runs on CPU `vcpu_cpu(k)`, vCPU 0 on this, the boot CPU,
    // which must be the device tree's first (the service's is the second).
    if platform.cpu_index(read_sysreg!("mpidr_el1")) != Some(vcpu_cpu(0)) {
        fail(format_args!(
            "nested: the boot CPU is not the device tree's first CPU, where L1's vCPU 0 runs"
        ));
    }
    let contexts = if recycling {
        recycle_contexts(vcpus)
    } else {
        1
    };
    let budget_bytes = match demo {
        NestedDemo::FaultRateTight => FAULT_RATE_TIGHT_BUDGET_BYTES,
        _ if demo.is_fault_rate() => FAULT_RATE_BUDGET_BYTES,
        _ => BUDGET_BYTES,
    };
    let budget = match Budget::split_for(budget_bytes, contexts, &shadow_config) {
        Ok(b) => b,
        Err(e) => fail(format_args!("nested: budget: {e:?}")),
    };
    // Every page and L2's code page at once, with the cache at twice the
    // working set (shadow-mmu/README.md: no leaf lost there), so no
    // eviction or cleared shadow blurs the counts.
    let fault_rate_leaves = fault_rate::PAGES as usize + 1;
    let fault_rate_pressure = (demo == NestedDemo::FaultRateTight).then(|| {
        let limits = fault_rate::pressure::Limits {
            cache_leaves: (budget.capacity.leaves_per_context + shadow_mmu::cache::LEAF_STASH)
                as u64,
            cache_paths: budget.capacity.paths_per_context as u64,
            shadow_leaves: budget.shadow_leaves as u64,
            frames: budget.frames as u64,
        };
        // Under pressure in both ways, or the case proves nothing.
        if !limits.below_working_set(fault_rate::PAGES) {
            fail(format_args!(
                "nested: fault-rate-tight: the budget holds {} cache leaves and {} shadow leaves, not fewer than the pass's {fault_rate_leaves} in both",
                limits.cache_leaves, limits.shadow_leaves
            ));
        }
        limits
    });
    if demo.is_fault_rate()
        && demo != NestedDemo::FaultRateTight
        && (budget.shadow_leaves < fault_rate_leaves
            || budget.capacity.leaves_per_context < 2 * fault_rate_leaves)
    {
        fail(format_args!(
            "nested: fault-rate: the budget holds {} shadow leaves and {} cache places, not {fault_rate_leaves} and twice that",
            budget.shadow_leaves, budget.capacity.leaves_per_context
        ));
    }
    let config = ServiceConfig {
        features: exposed,
        budget,
        hash_seed: hash_seed(),
        first_shadow_vmid: FIRST_SHADOW_VMID,
        host_vmids: HostVmids {
            // VTCR_EL2.VS = 0 for L1 and every shadow.
            width: VmidWidth::Bits8,
            l1_vmid: L1_HOST_VMID,
        },
    };
    let pool = match identity_frames(config.budget.frames, stage1_pa) {
        Ok(pool) => pool,
        Err(e) => fail(format_args!("nested: {e}")),
    };
    // The handshake's PE k is vCPU k, on CPU `vcpu_cpu(k)`.
    PE_MPIDRS.call_once(|| {
        core::array::from_fn(|vcpu| {
            (vcpu < vcpus)
                .then(|| platform.cpus.get(vcpu_cpu(vcpu)))
                .flatten()
                .map(|&m| m & MPIDR_AFFINITY)
        })
    });
    let backend = HandshakeBackend::new(
        SelftestBackend::new(pool, HwTlbs::new(TlbDefect::None), shadow_config),
        HwPes,
    );
    let service: &'static NestedService =
        match Service::new(config, L1Memory::new(arena, l0_map), l0_map, backend) {
            Ok(service) => Box::leak(Box::new(service)),
            Err(e) => fail(format_args!("nested: service: {e}")),
        };
    let Some(shadow_vtcr) = shadow_vtcr(ps as u8, false) else {
        fail(format_args!(
            "nested: ID_AA64MMFR0_EL1.PARange {ps:#06b} is reserved"
        ));
    };
    let l0_vttbr = u64::from(L1_HOST_VMID) << 48 | l0_tables.root();
    // `memory::vtcr` leaves VTCR_EL2's RES1 bit 31 clear (the walker of
    // L0's map ignores it); the hardware gets it set.
    let l0_vtcr = crate::shadow_selftest::memory::vtcr(ps) | (1 << 31);
    // L1's GIC: a redistributor for each of L1's vCPUs.
    let l1_vcpus = vcpus;
    let gic_maintenance = platform
        .gic_maintenance
        .unwrap_or(crate::vgic::DEFAULT_MAINTENANCE_INTID);
    NESTED.call_once(|| Nested {
        service,
        fault_rate_move,
        mid_change,
        fault_rate_pressure,
        l0_vttbr,
        l0_vtcr,
        shadow_vtcr,
        tlbi_features: TlbiFeatures::from_id_registers(
            shown(IdRegister::Isar0),
            shown(IdRegister::Isar1),
        ),
        skipped_stage2_tlbis: demo.skipped_stage2_tlbis(),
        demo,
        mode,
        stage1: Stage1Features::from_id_registers(
            shown(IdRegister::Mmfr0),
            shown(IdRegister::Mmfr2),
        ),
        exposed,
        at_features: AtFeatures::from_id_registers(
            shown(IdRegister::Mmfr1),
            shown(IdRegister::Mmfr2),
            shown(IdRegister::Isar2),
        ),
        at_stage1_only: demo == NestedDemo::AtNoS12,
        l2_at_walk_par: demo == NestedDemo::AtNoL2Fill,
        at_ignores_tge: demo == NestedDemo::El0TgeNoAt,
        ignore_t0sz: demo == NestedDemo::MmuNoT0sz,
        keep_dc: demo == NestedDemo::MmuVheKeepDc,
        ignore_host_span: demo == NestedDemo::HostEl0NoSpan,
        keep_host_span: demo == NestedDemo::HostEl0NoSpanBack,
        skip_l1_own_tlbi: demo == NestedDemo::MmuNoEl2Tlbi,
        arena,
        l0_map,
        features: *features,
        ttbr,
        tcr,
        cpus: platform.cpus.clone(),
        vcpus,
        gic_maintenance,
        traps: traps::TrapSetup::new(
            features,
            mode,
            [
                shown(IdRegister::Pfr0),
                shown(IdRegister::Pfr1),
                shown(IdRegister::Dfr0),
                shown(IdRegister::Mmfr1),
            ],
            match demo {
                NestedDemo::TrapsNoCptr => traps::TrapDefect::NoCptrForL2,
                NestedDemo::TrapsNoMdcr => traps::TrapDefect::NoMdcrForL2,
                NestedDemo::TrapsNoEl2Cptr => traps::TrapDefect::NoCptrAtEl2,
                NestedDemo::TrapsNoHpmeGuard => traps::TrapDefect::HpmeForL2,
                NestedDemo::HostEl0NoEl0FpTrap => traps::TrapDefect::NoHostEl0Trap,
                _ => traps::TrapDefect::None,
            },
        ),
        vector: vector::VectorSetup::new(
            features,
            [
                shown(IdRegister::Pfr0),
                shown(IdRegister::Pfr1),
                shown(IdRegister::Smfr0),
            ],
            match demo {
                NestedDemo::SveNoL2Limit => vector::VectorDefect::NoL2Limit,
                NestedDemo::SveNoL2Fa64 => vector::VectorDefect::NoL2Fa64,
                _ => vector::VectorDefect::None,
            },
        ),
        l1_ram_bytes,
        linux,
        uart: platform.uart,
        l1_timer_ppis: TimerPpis {
            hyp_physical: platform.timer.hypervisor,
            hyp_virtual: platform
                .timer
                .hypervisor_virtual
                .unwrap_or(DEFAULT_HYP_VIRTUAL_PPI),
            virtual_: platform.timer.virtual_,
            physical: platform.timer.physical,
        },
        hardware_timer_ppis: HardwarePpis {
            physical: platform.timer.physical,
            virtual_: platform.timer.virtual_,
            hyp: platform.timer.hypervisor,
        },
        l1_gic: L1GicLayout {
            distributor: platform.gic_distributor.base,
            redistributors: match platform.gic_redistributors.first() {
                Some(region) => region.base,
                None => fail(format_args!("nested: the GIC has no redistributor region")),
            },
            vcpus: l1_vcpus,
        },
        l1_gic_defect: match demo {
            NestedDemo::GicNoL2Exit => L1GicDefect::NoL2Exit,
            NestedDemo::GicNoKick => L1GicDefect::NoKick,
            NestedDemo::GicNoList => L1GicDefect::NoList,
            NestedDemo::GicNoEoiMaintenance => L1GicDefect::NoEoiMaintenance,
            NestedDemo::GicNoPowerOff => L1GicDefect::NoPowerOff,
            NestedDemo::GicNoWithdraw => L1GicDefect::NoWithdraw,
            NestedDemo::GicNoReadSync => L1GicDefect::NoReadSync,
            NestedDemo::GicNoReprioritize => L1GicDefect::NoReprioritize,
            NestedDemo::GicNoRemotePpiActive => L1GicDefect::NoRemotePpiActive,
            NestedDemo::GicNoPpiActiveWait => L1GicDefect::NoPpiActiveWait,
            NestedDemo::GicNoDisplace => L1GicDefect::NoDisplace,
            NestedDemo::GicNoListedActive => L1GicDefect::NoListedActive,
            NestedDemo::GicNoRemoteHwDeactivate => L1GicDefect::NoRemoteHwDeactivate,
            NestedDemo::LinuxNoIpi => L1GicDefect::NoCrossVcpuSgi,
            _ => L1GicDefect::None,
        },
    });
    super::nested_gic::reset(l1_vcpus, gic_maintenance);

    let vncr: &'static VncrPage = Box::leak(Box::default());
    // L2's EL1 registers at reset: MMU off.
    vncr.set_el1(El1Register::Sctlr, sysregs::SCTLR_EL1_MMU_OFF);
    reset_virtual_ids(vncr, 0);
    let vncr_address = &raw const *vncr as u64;
    if stage1_pa(vncr_address) != Some(vncr_address) {
        fail(format_args!(
            "nested: the VNCR page at {vncr_address:#x} is not identity mapped"
        ));
    }
    // The GIC before the service CPU starts: a recycle there sends the
    // vCPU hv's kick SGI.
    gic_setup(platform);
    // With a second CPU the service runs there, over the rings (DESIGN.md's
    // paths 1 and 2); alone, inline.
    let client = if platform.cpus.len() > SERVICE_CPU {
        if read_sysreg!("cntfrq_el0") == 0 {
            fail(format_args!(
                "nested: CNTFRQ_EL0 is 0, so no wait for the service CPU could be bounded"
            ));
        }
        let client = match vcpu_client(0) {
            Ok(client) => client,
            Err(e) => fail(format_args!("nested: vCPU rings: {e:?}")),
        };
        start_service_cpu(platform, ttbr, tcr);
        Some(client)
    } else {
        None
    };
    let where_served = if client.is_some() {
        "on cpu 1 over an ipc ring pair (WFE/SEV doorbells)"
    } else {
        "inline (one CPU)"
    };
    *VCPUS[0].lock() = Some(Vcpu::new(0, vncr, client));

    super::configure_el2_traps(features);
    load_l1_ids(0);
    let watchdog = watchdog_setup(watchdog_seconds(demo));
    WATCHDOG_DEADLINE.store(watchdog, Ordering::Relaxed);
    if let Some(vcpu) = VCPUS[0].lock().as_mut() {
        vcpu.timers.set_watchdog(watchdog);
    }
    L1_POWER.set_on(0);
    super::nested_timer::start_on_this_cpu();
    // L1's own virtual interface (its ICC_* accesses reach it).
    super::nested_vgic::start_l1_interface();
    write_sysreg!("s3_4_c2_c2_0", vncr_address); // VNCR_EL2
    write_sysreg!("tpidr_el2", 0);
    let Some(nested) = NESTED.get() else {
        fail(format_args!("nested: not set up"));
    };
    mmu::load_l1_regime(nested, &NonVheRegime::RESET);
    traps::start_l1(nested);
    vector::start_l1(nested);
    enter_l1_regime(nested.mode.hardware_hcr(false));
    // SAFETY: drops this CPU's stale EL1&0 entries of every VMID (L1's, the
    // one L2 uses with L1's stage 2 off, the shadows'): earlier software
    // at EL1 may have left some (review 24 N4).
    unsafe { core::arch::asm!("tlbi alle1", "dsb nsh", "isb", options(nostack)) };
    ACTIVE.store(true, Ordering::Relaxed);
    phase(format_args!(
        "nested{}: L1 at virtual EL2 (HCR_EL2.NV, NV2; VNCR page at {vncr_address:#x}), {} MiB of RAM at L1 IPA {L1_BASE:#x} (PA {l1_ram:#x}), image {} KiB; shadow-mmu service {where_served} ({} shadow frames, {} context{}), L1's ID registers: PARange 40 bits, 4 KiB stage 2, no FWB/TLBIW/MixedEnd",
        match demo {
            NestedDemo::DemoNoTlbi => " (demo-no-tlbi: L1's stage-2 TLBIs are not applied; this run must fail)",
            NestedDemo::Recycle => " (recycle: more L2s than the service has contexts; recycles run hv's handshake)",
            NestedDemo::RecycleStaleRoot => " (recycle-stale-root: hv reuses each key's first shadow root instead of asking at every entry; this run must fail)",
            NestedDemo::RecycleNoOffState => " (recycle-no-off-state: L1's CPU_OFF stops its vCPU but hv keeps it ON for AFFINITY_INFO; this run must fail)",
            NestedDemo::RecycleNoKickAll => " (recycle-no-kick-all: the recycles' kick pass sees vCPUs 0 and 1 only, skipping a live vCPU 2; this run must fail)",
            NestedDemo::RecycleNoIdReset => " (recycle-no-id-reset: a vCPU restarted after CPU_OFF keeps VPIDR_EL2 and VMPIDR_EL2 0, not its own MIDR and MPIDR; this run must fail)",
            NestedDemo::Irq => " (irq: L1 injects virtual interrupts into L2 through its ICH_LR<n>_EL2)",
            NestedDemo::IrqNoWriteback => " (irq-no-writeback: hv does not write L2's list register states back to L1; this run must fail)",
            NestedDemo::IrqNoMaintenance => " (irq-no-maintenance: hv never delivers L1's maintenance interrupt; this run must fail)",
            NestedDemo::Traps => " (traps: L1's CPTR_EL2 and MDCR_EL2 trap L2's FP, CPACR, PMU and debug accesses to L1)",
            NestedDemo::TrapsNoCptr => " (traps-no-cptr: hv keeps L1's CPTR_EL2 but runs L2 without its traps; this run must fail)",
            NestedDemo::TrapsNoMdcr => " (traps-no-mdcr: hv keeps L1's MDCR_EL2 but runs L2 without its traps; this run must fail)",
            NestedDemo::TrapsNoEl2Cptr => " (traps-no-el2-cptr: hv keeps L1's CPTR_EL2 but does not apply it to L1 itself at EL2; this run must fail)",
            NestedDemo::TrapsNoHpmeGuard => " (traps-no-hpme-guard: hv gives L1's MDCR_EL2.HPME to L2's hardware, so L1's EL2 counters count hv; this run must fail)",
            NestedDemo::TrapsNvhe => " (traps-nvhe: the traps L1 as a non-VHE guest hypervisor, E2H = 0)",
            NestedDemo::TimerHw => " (timer-hw: L1 forwards L2's virtual timer interrupt to L2 with an HW = 1 list register, as KVM does)",
            NestedDemo::TimerHwNoLink => " (timer-hw-no-link: L2's deactivation of an HW = 1 list register leaves L1's interrupt active; this run must fail)",
            NestedDemo::Timer => " (timer: L1 takes its EL2 timers' interrupts, and L2's timer's while it runs, and runs an L2 on its virtual timer with L1's CNTVOFF_EL2)",
            NestedDemo::TimerNoCntvoff => " (timer-no-cntvoff: hv runs L2 with CNTVOFF_EL2 0, not L1's; this run must fail)",
            NestedDemo::TimerNoL1Irq => " (timer-no-l1-irq: hv never delivers L1's timer PPIs; this run must fail)",
            NestedDemo::TimerNoL1Deadline => " (timer-no-l1-deadline: while L2 runs hv arms no timer for L1's EL2 timers; this run must fail)",
            NestedDemo::TimerNoCnthctl => " (timer-no-cnthctl: L2 runs with hv's CNTHCTL_EL2, not the traps L1 asks for; this run must fail)",
            NestedDemo::TimerNoCntvoffLevels => " (timer-no-cntvoff-levels: while L1 runs hv computes L2's virtual timer without L1's CNTVOFF_EL2; this run must fail)",
            NestedDemo::TimerNoL2Deadline => " (timer-no-l2-deadline: while L1 runs hv arms no timer for L2's EL1 timers; this run must fail)",
            NestedDemo::TimerNoEoiMaintenance => " (timer-no-eoi-maintenance: the timer PPIs hv lists for L1 have no EOI maintenance; this run must fail)",
            NestedDemo::TimerNoIstatusRefresh => " (timer-no-istatus-refresh: hv does not recompute ISTATUS of L2's timers at returns to L1; this run must fail)",
            NestedDemo::TimerNoCnthctlCounter => " (timer-no-cnthctl-counter: L2's physical counter never traps, whatever L1's CNTHCTL_EL2 asks; this run must fail)",
            NestedDemo::TimerNoCntvoffIstatus => " (timer-no-cntvoff-istatus: the ISTATUS hv recomputes for L2's virtual timer at returns to L1 ignores L1's CNTVOFF_EL2; this run must fail)",
            NestedDemo::TimerNoL2PhysicalDeadline => " (timer-no-l2-physical-deadline: while L1 runs hv backs L2's virtual timer only, not its physical one; this run must fail)",
            NestedDemo::TimerNoCntkctlRestore => " (timer-no-cntkctl-restore: hv does not put L1's CNTKCTL_EL1, its CNTHCTL_EL2's low bits, back after L2 ran; this run must fail)",
            NestedDemo::Mmu => " (mmu: a non-VHE L1, E2H = 0, with its EL2 stage 1 on)",
            NestedDemo::MmuNoT0sz => " (mmu-no-t0sz: a non-VHE L1 with its EL2 stage 1 on, hv ignores its TCR_EL2.T0SZ; this run must fail)",
            NestedDemo::MmuVhe => " (mmu-vhe: the mmu L1 shown FEAT_VHE, a VHE guest hypervisor, E2H = 1, with its EL2&0 stage 1 on)",
            NestedDemo::MmuVheKeepDc => " (mmu-vhe-keep-dc: a VHE L1 with its EL2&0 stage 1 on, hv keeps HCR_EL2.DC; this run must fail)",
            NestedDemo::MmuNoEl2Tlbi => " (mmu-no-el2-tlbi: a non-VHE L1 with its EL2 stage 1 on, hv does not apply its own EL2 TLBIs; this run must fail)",
            NestedDemo::At => " (at: L1's address translation instructions, emulated)",
            NestedDemo::AtNoS12 => " (at-no-s12: hv answers L1's AT S12E* with stage 1 only; this run must fail)",
            NestedDemo::AtNoL2Fill => " (at-no-l2-fill: hv answers the stage-2 abort of L2's AT on its walk with a PAR_EL1 fault; this run must fail)",
            NestedDemo::Sve => " (sve: L1's ZCR_EL2 and SMCR_EL2 set its own and L2's SVE and SME vector lengths)",
            NestedDemo::SveNvhe => " (sve-nvhe: the sve L1 as a non-VHE guest hypervisor, E2H = 0, its ZCR_EL1 and SMCR_EL1 L2's)",
            NestedDemo::SveNoL2Limit => " (sve-no-l2-limit: hv runs L2 under its own ZCR_EL2 and SMCR_EL2, not limited by L1's; this run must fail)",
            NestedDemo::SveNoL2Fa64 => " (sve-no-l2-fa64: hv runs L2 with its own SMCR_EL2.FA64 and EZT0, not L1's; this run must fail)",
            NestedDemo::Gic => " (gic: L1's GICv3 distributor and redistributors; its SGIs and SPIs, also taking L2 out)",
            NestedDemo::GicNoL2Exit => " (gic-no-l2-exit: an interrupt pending for L1 does not take L2 out; this run must fail)",
            NestedDemo::GicNoKick => " (gic-no-kick: an SGI or SPI for another vCPU does not kick it; this run must fail)",
            NestedDemo::GicNoList => " (gic-no-list: what L1's GIC forwards is never listed in L1's own interface; this run must fail)",
            NestedDemo::GicNoEoiMaintenance => " (gic-no-eoi-maintenance: L1's SGIs and SPIs are listed without the EOI bit; this run must fail)",
            NestedDemo::GicNoPowerOff => " (gic-no-power-off: L1's CPU_OFF neither hands its listed interrupts back nor puts its redistributor to sleep; this run must fail)",
            NestedDemo::GicNoWithdraw => " (gic-no-withdraw: an interrupt listed and not acknowledged stays in the vCPU's list registers after L1 clears it pending, disables or re-routes it; this run must fail)",
            NestedDemo::GicNoReadSync => " (gic-no-read-sync: a pending read does not sync the vCPUs holding what it reads, so an interrupt another vCPU acknowledged reads pending until that vCPU's next exit; this run must fail)",
            NestedDemo::GicNoReprioritize => " (gic-no-reprioritize: a new priority does not reach an interrupt already listed; this run must fail)",
            NestedDemo::GicNoRemotePpiActive => " (gic-no-remote-ppi-active: the PPI bits of another vCPU's GICR_ISACTIVER0/ICACTIVER0 are RAZ/WI; this run must fail)",
            NestedDemo::GicNoPpiActiveWait => " (gic-no-ppi-active-wait: a PPI set active with every list register in use is lost; this run must fail)",
            NestedDemo::GicNoDisplace => " (gic-no-displace: an interrupt with no empty list register waits behind lower-priority entries L1 masks; this run must fail)",
            NestedDemo::GicNoListedActive => " (gic-no-listed-active: I{S,C}ACTIVER act on the model's active bits only, not on what L1 acknowledged in its list registers; this run must fail)",
            NestedDemo::GicNoRemoteHwDeactivate => " (gic-no-remote-hw-deactivate: L2's deactivation of an HW = 1 entry naming an SPI L1 acknowledged on another vCPU leaves it active there; this run must fail)",
            NestedDemo::DemoNoVpidr => " (demo-no-vpidr: L2 runs with L1's own VPIDR_EL2 and VMPIDR_EL2, not the ones L1 set for it; this run must fail)",
            NestedDemo::DemoNoL1Ids => " (demo-no-l1-ids: L1 runs on after an L2 exit with the VPIDR_EL2 and VMPIDR_EL2 it set for L2; this run must fail)",
            NestedDemo::HostEl0 => " (host-el0: a VHE L1 in host mode, E2H = TGE = 1, runs its own EL0)",
            NestedDemo::HostEl0NoEl0FpTrap => " (host-el0-no-el0-fp-trap: L1's CPTR_EL2.FPEN 0b01 reaches the hardware as 0b11; this run must fail)",
            NestedDemo::HostEl0NoSpan => " (host-el0-no-span: the hardware SCTLR_EL1.SPAN stays 1 in L1's host mode; this run must fail)",
            NestedDemo::HostEl0NoSpanBack => " (host-el0-no-span-back: the hardware SCTLR_EL1.SPAN stays L1's SPAN 0 after it leaves host mode; this run must fail)",
            NestedDemo::El0Tge => " (el0-tge: a non-VHE L1 runs its EL0 with TGE = 1, E2H = 0: stage 1 off, its exceptions to L1's EL2)",
            NestedDemo::El0TgeNoTge => " (el0-tge-no-tge: L1's EL0 under TGE runs without the hardware's TGE, as an L2's EL0; this run must fail)",
            NestedDemo::El0TgeNoAt => " (el0-tge-no-at: L1's AT instructions under TGE walk the EL1&0 stage 1 as if it were on; this run must fail)",
            NestedDemo::Linux => " (linux: the guest bundle's Linux kernel is L1, shown no SVE or SME)",
            NestedDemo::LinuxNoSveHiding => " (linux-no-sve-hiding: the guest bundle's Linux kernel is L1, shown SVE and SME; this run must fail)",
            NestedDemo::LinuxNoL2Syndrome => " (linux-no-l2-syndrome: the guest bundle's Linux kernel is L1, handed its L2's stage-2 data aborts without their instruction syndrome; this run must fail)",
            NestedDemo::LinuxNoL2Tlbi => " (linux-no-l2-tlbi: the guest bundle's Linux kernel is L1, its stage-2 TLBIs are not applied; this run must fail)",
            NestedDemo::LinuxNoL2Tid3 => " (linux-no-l2-tid3: the guest bundle's Linux kernel is L1, its L2's ID register reads answered by hv as if L1 had not set HCR_EL2.TID3; this run must fail)",
            NestedDemo::LinuxNoL2Lr => " (linux-no-l2-lr: the guest bundle's Linux kernel is L1, the list registers it writes for its L2 ignored; this run must fail)",
            NestedDemo::LinuxNoIpi => " (linux-no-ipi: the guest bundle's Linux kernel is L1, its SGIs to another vCPU dropped; this run must fail)",
            NestedDemo::FaultRate => " (fault-rate: L1's L2 touches every one of its pages once per pass; hv prints each pass's faults, time and service counts)",
            NestedDemo::FaultRateNoTlbi => " (fault-rate-no-tlbi: L1's stage-2 TLBIs are not applied; this run must fail)",
            NestedDemo::FaultRateTight => " (fault-rate-tight: the fault-rate passes on a service budget below their working set: every pass evicts; hv checks what the passes imply under pressure)",
            NestedDemo::FaultRateSmp => " (fault-rate-smp: every vCPU of L1 runs the same L2, faulting interleaved pages at once; hv prints each pass's aggregate and per-vCPU counts and checks what holds whatever the interleaving)",
            NestedDemo::FaultRateSmpNoTlbi => " (fault-rate-smp-no-tlbi: L1's stage-2 TLBIs are not applied; this run must fail)",
            NestedDemo::FaultRateSmpOneVcpuLog => " (fault-rate-smp-one-vcpu-log: hv's dirty log resolves vCPU 0's writes alone; this run must fail)",
            NestedDemo::FaultRateSmpRaceUnresolved => " (fault-rate-smp-race-unresolved: hv's dirty log leaves a write denied on a page another vCPU logged meanwhile unresolved; this run must fail)",
            NestedDemo::MidChange => " (mid-change: hv breaks its map of L1's RAM under vCPU 1's accesses and holds each break until it resumed them)",
            NestedDemo::MidChangeNoRetry => " (mid-change-no-retry: hv gives L2 an external abort for the service's Retry(L0Changing); this run must fail)",
            NestedDemo::TlbiRace => " (tlbi-race: L1's vCPU 0 remaps two L2 pages with each stage-2 TLBI form in turn while vCPU 1's L2 reads them)",
            NestedDemo::TlbiRaceNoRangeTlbi => " (tlbi-race-no-range-tlbi: hv drops the service's invalidation for L1's range TLBIs; this run must fail)",
            NestedDemo::Demo => "",
        },
        l1_ram_bytes >> 20,
        image.len() >> 10,
        config.budget.frames,
        contexts,
        if contexts == 1 { "" } else { "s" }
    ));
    let mut frame = GuestFrame {
        elr: l1_entry,
        spsr: sysregs::GUEST_ENTRY_PSTATE,
        ..GuestFrame::ZERO
    };
    frame.x[0] = l1_x0;
    // SAFETY: the frame is complete; the boot stack's top is this CPU's and
    // nothing on the current stack is needed after the jump.
    unsafe {
        super::boot::hv_enter_guest(
            &frame,
            (&raw const super::BOOT_STACK) as u64 + super::BOOT_STACK_SIZE as u64,
        )
    }
}

/// Writes `image` into the arena from `pa`, word by word (its last word
/// padded with zeros); an image that does not fit ends the run.
fn write_image(arena: &Arena<'_>, pa: u64, image: &[u8]) {
    for (i, chunk) in image.chunks(8).enumerate() {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        if arena
            .write(pa + 8 * i as u64, u64::from_le_bytes(word))
            .is_none()
        {
            fail(format_args!("nested: L1's image does not fit its RAM"));
        }
    }
}

/// The GIC, set up on the boot CPU, which delivers only hv's kick SGI and
/// the EL2 physical timer's PPI (the watchdog), to this CPU at EL2
/// (`Gic::init_cpu` enables the kick SGI and the PPI it is given as the
/// vGIC's maintenance interrupt; no vGIC runs here, as in
/// `hv.selftest=shadow`).
static GIC: spin::Once<Gic> = spin::Once::new();

fn gic_setup(platform: &Platform) {
    let Some(index) = platform.cpu_index(read_sysreg!("mpidr_el1")) else {
        fail(format_args!("nested: the boot CPU is not under /cpus"));
    };
    write_sysreg!("s3_4_c12_c9_5", sysregs::ICC_SRE_EL2);
    cpu::isb();
    let gic = match Gic::init(platform, platform.timer.hypervisor, None, true) {
        Ok(gic) => GIC.call_once(|| gic),
        Err(e) => fail(format_args!("nested: GIC: {e}")),
    };
    if let Err(e) = gic.init_cpu(index) {
        fail(format_args!("nested: GIC on cpu {index}: {e}"));
    }
    enable_l1_maintenance(gic, index);
}

/// The GIC maintenance PPI on for CPU `index` (a vCPU's): the hardware
/// raises it while L2 runs on an L1 virtual interface that asserts it,
/// and hv takes it at EL2 (`arch::nested_vgic`).
fn enable_l1_maintenance(gic: &Gic, index: usize) {
    let Some(nested) = NESTED.get() else {
        fail(format_args!("nested: not set up"));
    };
    if let Err(e) = gic.enable_private(index, nested.gic_maintenance) {
        fail(format_args!(
            "nested: the GIC maintenance interrupt on cpu {index}: {e}"
        ));
    }
    // The hardware EL1 timers' PPIs: L1's or L2's timers (`arch::nested_timer`).
    let ppis = nested.hardware_timer_ppis;
    for intid in [ppis.physical, ppis.virtual_] {
        if let Err(e) = gic.enable_private(index, intid) {
            fail(format_args!(
                "nested: timer PPI {intid} on cpu {index}: {e}"
            ));
        }
    }
}

/// The watchdog: the EL2 physical timer fires `seconds` from now; its
/// deadline (the boot vCPU's timers keep it armed,
/// `VcpuTimers::before_return`).
fn watchdog_setup(seconds: u64) -> u64 {
    let ticks = read_sysreg!("cntfrq_el0").saturating_mul(seconds);
    let deadline = cpu::counter().saturating_add(ticks);
    arm_watchdog(deadline);
    deadline
}

/// This CPU's EL2 physical timer fires at `deadline` (the watchdog's).
fn arm_watchdog(deadline: u64) {
    // CNTHP_CVAL_EL2, then CNTHP_CTL_EL2.ENABLE with IMASK clear.
    write_sysreg!("s3_4_c14_c2_2", deadline);
    write_sysreg!("s3_4_c14_c2_1", 1);
    cpu::isb();
}

/// EL2 set for L1: its HCR_EL2 (`l1_hcr`: `nested::L1_HCR` as its mode and MMU
/// need, `L1Vel2Mode::hardware_hcr`), L0's stage 2 of it. With
/// [`HV_INTERRUPT_ROUTING`] and TWI: L1's WFI traps, so hv re-evaluates
/// L1's maintenance interrupt, which L1 can raise by stores to its VNCR
/// page that never trap, before L1 waits (`l1_exit`; review 33 R33-2).
/// L2's WFI is L1's business: L2's hardware HCR_EL2 has TWI only as L1's
/// virtual one does (`l2_hcr`).
fn enter_l1_regime(l1_hcr: u64) {
    let Some(nested) = NESTED.get() else {
        fail(format_args!("nested: not set up"));
    };
    write_sysreg!("hcr_el2", l1_hcr | HV_INTERRUPT_ROUTING | hcr::TWI);
    traps::enter_l1(nested);
    write_sysreg!("vtcr_el2", nested.l0_vtcr);
    write_sysreg!("vttbr_el2", nested.l0_vttbr);
    cpu::isb();
}

/// A guest exit while the demo runs (from `arch::guest_exit`).
pub fn guest_exit(frame: &mut GuestFrame, kind: u64) {
    let Some(nested) = NESTED.get() else {
        fail(format_args!("nested: guest exit before set-up"));
    };
    // The handshake's exit store, before anything that can wait for the
    // service's directory lock (a recycler holding it waits for this
    // store). Already `Outside` unless the exit is from a shadow's L2.
    let index = read_sysreg!("tpidr_el2") as usize;
    let (Some(pe), Some(slot)) = (PES.get(index), VCPUS.get(index)) else {
        fail(format_args!(
            "nested: guest exit on a CPU with no vCPU ({index})"
        ));
    };
    // The AT that finds the IPA of some L2 permission faults walks L2's
    // stage 1 through the shadow now in VTTBR_EL2: it runs before the exit
    // store, while a recycle of that shadow still waits for this PE (after
    // it, the slot's successor could map its own pages into the same root,
    // and the walk would read another L2's memory; review 26 R26-1).
    let l2_par = match pe.phase() {
        Phase::InL2(_) if kind == 0 => {
            l2_fault_par(read_sysreg!("esr_el2"), read_sysreg!("far_el2"))
        }
        _ => None,
    };
    pe.left_l2();
    let mut guard = slot.lock();
    let Some(vcpu) = guard.as_mut() else {
        fail(format_args!("nested: guest exit without a vCPU"));
    };
    let from = vcpu.mode;
    if from != Mode::L1 {
        // What L2 did to L1's virtual interface, into L1's VNCR page; the
        // pINTIDs of the HW = 1 entries it deactivated, inactive in L1's
        // own interface and in its GIC.
        for intid in vcpu.gic.leave_l2(vcpu.vncr) {
            let wanting = super::nested_gic::deactivate(vcpu.index, intid, nested.l1_gic_defect);
            if wanting != 0 {
                kick_l1_vcpus(nested, vcpu.index, wanting);
            }
        }
    }
    match kind {
        0 => {
            let esr = read_sysreg!("esr_el2");
            if vcpu.mode == Mode::L1 {
                // L1's virtual HCR_EL2.E2H is RES1 (review 23 H2), or RES0
                // for a non-VHE L1: what L1 reads back from now on, and
                // what hv acts on.
                let vhcr = vcpu.vncr.hcr();
                vcpu.vncr
                    .set(crate::nested::vncr::HCR_EL2, nested.mode.virtual_hcr(vhcr));
                traps::l1_exited(vcpu);
                mmu::follow_host_mode(nested, vcpu);
            }
            match vcpu.mode {
                Mode::L1 => l1_exit(nested, vcpu, frame, esr),
                Mode::L2 { key } => l2_exit(nested, vcpu, frame, esr, Some((key, l2_par))),
                Mode::L2Direct => l2_exit(nested, vcpu, frame, esr, None),
            }
        }
        1 => take_irq(nested, vcpu, frame),
        _ => crash(vcpu, frame, "an FIQ or SError reached hv"),
    }
    // L1's maintenance interrupt interrupts L2 (an IRQ to L1's virtual
    // EL2), whatever the exit was.
    if from != Mode::L1
        && vcpu.mode != Mode::L1
        && vcpu.gic.maintenance_for_l1(vcpu.vncr, vcpu.vncr.hcr()) == Maintenance::ForL1
    {
        irq_to_l1_from_l2(nested, vcpu, frame, Note::L1Maintenance);
    }
    // So does an asserted timer PPI of L1's (`arch::nested_timer`).
    if from != Mode::L1
        && vcpu.mode != Mode::L1
        && vcpu.timers.interrupts_l2(vcpu.vncr, vcpu.vncr.hcr())
    {
        irq_to_l1_from_l2(nested, vcpu, frame, Note::L1Timer);
    }
    // And an SGI or SPI of L1's GIC, listed in L1's own interface at every
    // exit (`l1_gic_interrupts_l2`).
    if l1_gic_interrupts_l2(nested, vcpu) && from != Mode::L1 && vcpu.mode != Mode::L1 {
        irq_to_l1_from_l2(nested, vcpu, frame, Note::L1Distributor);
    }
    // Every return to a shadow's L2 goes through the handshake's entry,
    // also after an exit hv handled itself (a served fault, an emulated
    // ID read, hv's kick): published `Outside` above, the vCPU is no
    // longer waited for, and its root may be a recycled context's.
    if let (Mode::L2 { .. }, Mode::L2 { key }) = (from, vcpu.mode) {
        match enter_shadow(nested, vcpu, &key) {
            Some(vttbr) => {
                write_sysreg!("vttbr_el2", vttbr);
                cpu::isb();
            }
            None => crash(
                vcpu,
                frame,
                "the service has no shadow for the running L2's context (every slot's root is made with the service: hv's own failure)",
            ),
        }
    }
    let l1_virtual_hcr = vcpu.vncr.hcr();
    match vcpu.mode {
        Mode::L1 => vcpu.gic.l1_runs(vcpu.vncr, l1_virtual_hcr),
        Mode::L2 { .. } | Mode::L2Direct => vcpu.gic.enter_l2(vcpu.vncr, l1_virtual_hcr),
    }
    vcpu.timers
        .before_return(vcpu.vncr, vcpu.mode != Mode::L1, l1_virtual_hcr);
    // L1's CPU_OFF: the CPU powers down with the vCPU's lock free (its
    // next CPU_ON takes it); the firmware refusing returns to L1. What hv
    // listed in its LRs goes back to L1's GIC first (kicking whoever now
    // gets it), as a GIC keeps it in the distributor.
    if core::mem::take(&mut vcpu.off_requested) {
        let (undo, wanting) = super::nested_gic::power_off(index, nested.l1_gic_defect);
        kick_l1_vcpus(nested, index, wanting);
        drop(guard);
        frame.x[0] = super::firmware_cpu_off(&L1_POWER, index);
        if let Some(undo) = undo {
            let wanting = super::nested_gic::power_off_refused(index, &undo, nested.l1_gic_defect);
            kick_l1_vcpus(nested, index, wanting);
        }
    } else if core::mem::take(&mut vcpu.wfi) && vcpu.mode == Mode::L1 {
        drop(guard);
        wait_for_l1_interrupt(nested);
    }
}

/// The longest hv waits for L1's WFI ([`wait_for_l1_interrupt`]): 1 ms.
const L1_WFI_BOUND_HZ_DIVISOR: u64 = 1000;

/// L1's trapped WFI, its own interface in the hardware: hv waits for a
/// physical interrupt (WFIT at EL2) unless a virtual one is pending there
/// already (`nested::vgic::l1_may_sleep`). What L1 waits for comes as one
/// of hv's physical interrupts, each a wake-up event whatever PSTATE.I:
/// an SGI or SPI of L1's GIC from another vCPU comes with hv's kick SGI
/// (sent after the GIC's change, so a change this exit did not list
/// leaves the kick pending and the WFIT returns at once), L1's timers
/// with their hardware PPIs or hv's EL2 physical timer (deadlines armed
/// by this exit's `before_return`), its maintenance interrupt with hv's.
/// Back in L1 the pending physical interrupt is taken as an exit, which
/// lists what it brought. The wait is bounded (1 ms; a WFI may complete
/// spuriously): an L1 that waits in WFI for what no interrupt brings (a
/// deadline it polls, the test L1s' bounded waits for an interrupt a
/// broken hv never sends) still runs on. Without FEAT_WFxT (or with
/// `hv.wfxt=off`) hv's EL2 physical timer bounds a plain WFI instead
/// ([`wfi_bounded_by_hyp_timer`]; review 48 R48-1): a spinning WFI would
/// keep a multi-vCPU Linux L1 from booting under QEMU.
fn wait_for_l1_interrupt(nested: &Nested) {
    let (lrs, count) = super::nested_timer::hardware_lrs();
    if !crate::nested::vgic::l1_may_sleep(&lrs[..count]) {
        return;
    }
    let bound = cpu::counter_frequency() / L1_WFI_BOUND_HZ_DIVISOR;
    if !nested.features.has_wfxt() {
        once(Note::L1WfiWaitHypTimer);
        wfi_bounded_by_hyp_timer(bound);
        return;
    }
    once(Note::L1WfiWait);
    // WFIT's timeout is in the virtual count at EL2, read the same way.
    let timeout = read_sysreg!("cntvct_el0").wrapping_add(bound);
    // SAFETY: WFIT x0 (FEAT_WFxT, checked above; encoded, as the
    // assembler may not know it) waits for an interrupt or the timeout;
    // hv's state is consistent (the exit is done, the vCPU's lock free).
    unsafe {
        core::arch::asm!("dsb sy", ".inst 0xd5031020", in("x0") timeout, options(nostack, preserves_flags))
    };
}

/// A WFI at EL2 of at most `ticks` of the count without FEAT_WFxT: hv's
/// EL2 physical timer (CNTHP, whose PPI is enabled to EL2 on every CPU)
/// fires at the earlier of what `before_return` armed it for (the
/// watchdog, a guest deadline) and now + `ticks`, then gets its armed
/// state back. If the bound fired, its level falls with that restore;
/// an acknowledgement that still sees it is a CNTHP interrupt before the
/// watchdog's deadline, which `VcpuTimers::take_irq` treats as a
/// deadline's (the return re-arms it).
fn wfi_bounded_by_hyp_timer(ticks: u64) {
    const ENABLE: u64 = 1;
    const IMASK: u64 = 1 << 1;
    let armed_ctl = read_sysreg!("s3_4_c14_c2_1"); // CNTHP_CTL_EL2
    let armed_cval = read_sysreg!("s3_4_c14_c2_2"); // CNTHP_CVAL_EL2
    let bound = cpu::counter().wrapping_add(ticks);
    let wake = if armed_ctl & (ENABLE | IMASK) == ENABLE {
        armed_cval.min(bound)
    } else {
        bound
    };
    write_sysreg!("s3_4_c14_c2_2", wake);
    write_sysreg!("s3_4_c14_c2_1", ENABLE);
    cpu::isb();
    // SAFETY: WFI waits for an interrupt (CNTHP's at the latest); hv's
    // state is consistent (the exit is done, the vCPU's lock free).
    unsafe { core::arch::asm!("dsb sy", "wfi", options(nostack, preserves_flags)) };
    write_sysreg!("s3_4_c14_c2_2", armed_cval);
    write_sysreg!("s3_4_c14_c2_1", armed_ctl & (ENABLE | IMASK));
    cpu::isb();
}

/// L1's stage-2 data abort with syndrome `esr` at a device hv emulates for
/// it: its GIC's frames (`arch::nested_gic`; the vCPUs with something new
/// forwarded to them kicked) or, for a Linux L1, the console UART
/// (`linux::uart_access`). The load or store is done and L1 goes on after
/// it. False when the access is at neither, or has no syndrome to emulate
/// it by (then L1 gets the external abort of any access outside its RAM).
fn l1_device_access(nested: &Nested, vcpu: &mut Vcpu, frame: &mut GuestFrame, esr: u64) -> bool {
    let Ok(access) = MmioAccess::decode(esr, read_sysreg!("far_el2"), read_sysreg!("hpfar_el2"))
    else {
        return false;
    };
    let stored = match access.kind {
        MmioKind::Write { register } => frame.reg(register),
        MmioKind::Read { .. } => 0,
    };
    let me = vcpu.index;
    let gic = super::nested_gic::mmio(
        &nested.l1_gic,
        &access,
        stored,
        me,
        nested.l1_gic_defect,
        |targets| kick_l1_vcpus(nested, me, targets),
        || {
            once(Note::L1PpiActive);
        },
    );
    let loaded = match gic {
        Ok(raw) => raw.map(|raw| access.load_result(raw)),
        Err(()) if nested.linux => match linux::uart_access(nested.uart, &access, stored) {
            Some(loaded) => loaded,
            None => return false,
        },
        Err(()) => return false,
    };
    if let (Some(value), MmioKind::Read { register, .. }) = (loaded, access.kind) {
        frame.set_reg(register, value);
    }
    frame.elr += instruction_length(esr);
    true
}

/// During an exit (L1's own interface in the hardware, until
/// `VcpuGic::enter_l2`): what L1's GIC forwards to the vCPU listed in L1's
/// own interface (what it withdrew from there kicked to its new target),
/// and whether one of those interrupts would interrupt L2 now
/// (`arch::nested_gic::interrupts_l2`).
fn l1_gic_interrupts_l2(nested: &Nested, vcpu: &Vcpu) -> bool {
    let timer_ppis = vcpu
        .timers
        .l1_lr_candidates(vcpu.vncr, vcpu.mode == Mode::L1);
    let wanting = super::nested_gic::list_for_l1(vcpu.index, nested.l1_gic_defect, &timer_ppis);
    if wanting != 0 {
        kick_l1_vcpus(nested, vcpu.index, wanting);
    }
    super::nested_gic::interrupts_l2(vcpu.vncr.hcr(), nested.l1_gic_defect)
}

/// vCPU `vcpu`'s write of `value` to the SGI generation register `op2`
/// (ICC_SGI1R_EL1, ICC_ASGI1R_EL1 or ICC_SGI0R_EL1), L1's own or L2's that
/// L1 does not trap, done: only ICC_SGI1R_EL1 sends one
/// (`vgic::sgi_write_sends`), to L1's GIC, kicking its targets.
fn sgi_write_to_l1_gic(nested: &Nested, vcpu: &Vcpu, frame: &mut GuestFrame, op2: u8, value: u64) {
    if crate::vgic::sgi_write_sends(op2) {
        let targets = super::nested_gic::send_sgi(vcpu.index, value, nested.l1_gic_defect);
        kick_l1_vcpus(nested, vcpu.index, targets);
    }
    frame.elr += instruction_length(read_sysreg!("esr_el2"));
}

/// Sends hv's kick SGI to the CPUs of L1's vCPUs in `targets` (bit k:
/// vCPU k) but `me`'s: each exits (out of L2 too) and lists what L1's GIC
/// forwards to it at the end of that exit.
fn kick_l1_vcpus(nested: &Nested, me: usize, targets: u32) {
    if nested.l1_gic_defect == L1GicDefect::NoKick {
        return;
    }
    let Some(mpidrs) = PE_MPIDRS.get() else {
        return;
    };
    // The GIC's change (made under its lock) visible before the SGI (a
    // write to ICC_SGI1R_EL1 is not a memory access), as
    // `HwPes::interrupt` does.
    cpu::dsb_ish();
    for (k, mpidr) in mpidrs.iter().enumerate() {
        if let (true, Some(mpidr)) = (k != me && targets & (1 << k) != 0, mpidr) {
            write_sysreg!("s3_0_c12_c11_5", sgi1r_for(KICK_SGI, *mpidr));
        }
    }
    cpu::isb();
}

/// An IRQ taken at EL2: hv's kick SGI (a recycle on another CPU took the
/// vCPU out of L2; the caller re-enters through the handshake) or the
/// watchdog's timer, the only other interrupt enabled.
fn take_irq(nested: &Nested, vcpu: &mut Vcpu, frame: &GuestFrame) {
    let intid = (read_sysreg!("s3_0_c12_c12_0") & 0xff_ffff) as u32; // ICC_IAR1_EL1
    match intid {
        KICK_SGI => {
            // EOImode 1 (`Gic::init_cpu`): priority drop, then deactivate.
            write_sysreg!("s3_0_c12_c12_1", u64::from(intid)); // ICC_EOIR1_EL1
            write_sysreg!("s3_0_c12_c11_1", u64::from(intid)); // ICC_DIR_EL1
            cpu::isb();
            KICK_IRQS.took(vcpu.index);
        }
        // L1's maintenance interrupt (an exit from L2 with L1's interface
        // asserting it; `guest_exit` delivers it to L1) or its stale
        // remainder after the switch to L1's own interface.
        _ if intid == vcpu.gic.maintenance_intid() => {
            write_sysreg!("s3_0_c12_c12_1", u64::from(intid)); // ICC_EOIR1_EL1
            write_sysreg!("s3_0_c12_c11_1", u64::from(intid)); // ICC_DIR_EL1
            cpu::isb();
        }
        // Spurious: nothing to do.
        1020..=1023 => {}
        // A timer PPI: L1's or L2's timer, or one of L1's EL2 deadlines.
        _ if vcpu.timers.take_irq(intid) == TimerIrq::Taken => {}
        _ if intid == nested.hardware_timer_ppis.hyp => crash(
            vcpu,
            frame,
            &alloc::format!(
                "the demo did not end within its watchdog's {} s (an IRQ at EL2 other than hv's kick: the EL2 physical timer's)",
                watchdog_seconds(nested.demo)
            ),
        ),
        _ => crash(
            vcpu,
            frame,
            &alloc::format!("an IRQ at EL2 hv did not enable (INTID {intid})"),
        ),
    }
}

/// Whether [`hash_seed`] took the seed from RNDR: a run on a CPU with
/// FEAT_RNG whose seed is not from RNDR ends FAILED.
static SEED_FROM_RNDR: AtomicBool = AtomicBool::new(false);

/// The secret that keys the service's hashes (review 38 R38-5): RNDR when
/// the CPU has FEAT_RNG (QEMU's `max` has). Without it, the physical
/// counter, which L1 reads as CNTVCT_EL0 (CNTVOFF_EL2 is 0) and so can
/// bound to hv's setup time, mixed with the durations of a few hundred
/// counter reads around loads of hv's own memory, whose jitter (caches, the
/// other PEs, the host under emulation) L1 cannot observe. That fallback
/// is weak (a bit or two per sample at best): on a host without FEAT_RNG a
/// patient L1 may still guess the seed and flood the service's hashes
/// (its own service only).
fn hash_seed() -> u64 {
    if let Some(seed) = cpu::random() {
        SEED_FROM_RNDR.store(true, Ordering::Relaxed);
        return seed;
    }
    let mut seed = cpu::counter();
    let mut scratch = [0u64; 64];
    for round in 0..256u64 {
        let start = cpu::counter();
        for (i, word) in scratch.iter_mut().enumerate() {
            *word = core::hint::black_box(*word ^ round ^ i as u64);
        }
        let took = cpu::counter().wrapping_sub(start);
        seed = (seed ^ took)
            .rotate_left(11)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    seed
}

/// The handshake's entry into L2 for `key` (contract steps 1-4): the
/// VTTBR_EL2 to run it with, or None when the service has no shadow. With
/// `recycle-stale-root`, a key's later entries reuse its first root
/// without the handshake (the defect that demo must catch).
fn enter_shadow(nested: &Nested, vcpu: &mut Vcpu, key: &ContextKey) -> Option<u64> {
    let stale = nested.demo == NestedDemo::RecycleStaleRoot;
    if stale {
        if let Some(&(_, vmid, root)) = vcpu.stale_roots.iter().find(|(k, ..)| k == key) {
            return Some(u64::from(vmid) << 48 | root);
        }
    }
    let width = nested.service.l1_vmid_width();
    let shadow_key = shadow_mmu::context::ContextKey::from_ipc(key, width);
    let worker = vcpu_worker(nested, &mut vcpu.worker);
    match PES[vcpu.index].enter(|| nested.service.shadow_root(worker, &shadow_key)) {
        Entry::Ready {
            vmid,
            root,
            retries,
        } => {
            vcpu.counts.entry_retries += u64::from(retries);
            if stale {
                // Full: later keys are asked for at every entry.
                let _ = vcpu.stale_roots.try_push((*key, vmid, root));
            }
            Some(u64::from(vmid) << 48 | root)
        }
        Entry::NoShadow => None,
    }
}

fn crash(vcpu: &Vcpu, frame: &GuestFrame, why: &str) -> ! {
    println!(
        "hv: nested: guest crash in {}: {why} (ESR_EL2 {:#x}, PC {:#x}, PSTATE {:#x}, FAR_EL2 {:#x})",
        match vcpu.mode {
            Mode::L1 => "L1",
            Mode::L2 { .. } | Mode::L2Direct => "L2",
        },
        read_sysreg!("esr_el2"),
        frame.elr,
        frame.spsr,
        read_sysreg!("far_el2")
    );
    exit(ExitStatus::Failure)
}

/// The service answered L2's fault at `l2_ipa` with `denial`: hv's own
/// stage 2 of L1 denies L2's access (which L1's stage 2 allows) or the
/// walk's read or update of L1's stage-2 table. That is a stage-2 fault at
/// L0 (hv's to resolve, never L1's), and hv denies L1 no access to its
/// memory it does not resolve, so it is hv's own failure: the run stops
/// rather than resume L2 into the same fault forever.
fn l0_denied(nested: &Nested, l2_ipa: u64, denial: &L0Denial) -> ! {
    let leaf = nested.l0_map.lookup(denial.l1_ipa);
    println!(
        "{}",
        crate::nested::l0_denial::failed_line(l2_ipa, denial, leaf.as_ref())
    );
    exit(ExitStatus::Failure)
}

/// hv's software walk for L1's AT at `va` was denied the read of the
/// descriptor at `l1_ipa` by hv's own stage 2 of L1: hv's own failure
/// (it revokes no read access to L1's memory), as [`l0_denied`].
fn l0_denied_at(nested: &Nested, va: u64, l1_ipa: u64) -> ! {
    let leaf = nested.l0_map.lookup(l1_ipa);
    println!(
        "{}",
        crate::nested::l0_denial::at_failed_line(va, l1_ipa, leaf.as_ref())
    );
    exit(ExitStatus::Failure)
}

/// The run's counts: `vcpu`'s (the caller's, whose lock it holds) and
/// every other vCPU's whose lock is free (a vCPU inside hv now is left
/// out rather than waited for).
fn summary(vcpu: &Vcpu, nested: &Nested) -> Summary {
    let mut c = vcpu.counts;
    for (index, slot) in VCPUS.iter().enumerate() {
        if index == vcpu.index {
            continue;
        }
        if let Some(guard) = slot.try_lock() {
            if let Some(other) = guard.as_ref() {
                c.add(&other.counts);
            }
        }
    }
    let s = nested.service.stats();
    Summary {
        l2_entries: c.l2_entries,
        translates: c.translates,
        injected: c.injected,
        stage2_tlbis: c.stage2_tlbis,
        stage1_tlbis: c.stage1_tlbis,
        forwarded: c.forwarded,
        walks: s.walks,
        partial_walks: s.partial_walks,
        hits: s.hits,
        invalidations: s.invalidations,
        recycled: s.recycled_contexts,
        ring_requests: RINGS
            .iter()
            .map(|r| r.answered.load(Ordering::Relaxed))
            .sum(),
        kick_passes: KICK_PASSES.load(Ordering::Relaxed),
        kicked: KICKED.load(Ordering::Relaxed),
        waited: WAITED.load(Ordering::Relaxed),
        entry_retries: c.entry_retries,
        kick_irqs: KICK_IRQS.total(),
        workers: nested.service.workers_made() as u64,
    }
}

fn l1_exit(nested: &Nested, vcpu: &mut Vcpu, frame: &mut GuestFrame, esr: u64) {
    match (esr >> 26) & EC_UNKNOWN_MASK {
        // A Linux L1's HVC is its own hypervisor call, taken to its own
        // vector as an HVC at EL2 is (its PSCI goes through SMC); the test
        // L1s call hv with it.
        EC_HVC64 if nested.linux => exception_for_l1(vcpu, frame, esr, None),
        EC_HVC64 => hv_call(nested, vcpu, frame),
        // L1's WFI (or WFIT), trapped by TWI: it completes at once, as a
        // WFI may (DDI 0487, "Wait for Interrupt": it is a hint, and any
        // WFI may complete spuriously). `guest_exit` then re-evaluates
        // L1's maintenance interrupt (`VcpuGic::l1_runs`): one L1 raised
        // by stores is pending in L1's own interface when L1 resumes, so
        // a WFI waiting for it returns with it pending (review 33
        // R33-2). For a WFI (not WFIT, whose timeout hv would have to
        // keep) with nothing pending there, hv waits itself first, at
        // most 1 ms (`wait_for_l1_interrupt`), so an idle vCPU does not
        // spin.
        EC_WFX => {
            frame.elr += instruction_length(esr);
            vcpu.wfi = esr & ISS_WFX_TI == 0;
        }
        EC_SMC64 => {
            // A trapped SMC returns to itself; the call completes it.
            frame.elr += instruction_length(esr);
            hv_call(nested, vcpu, frame)
        }
        // ERETAA/ERETAB (ISS bit 1) return like ERET: hv shows L1 pointer
        // authentication as the host has it but does not authenticate ELR.
        EC_ERET => l1_eret(nested, vcpu, frame),
        EC_SYSREG => {
            let access = SysRegAccess::from_iss(esr & 0x1ff_ffff);
            l1_system_instruction(nested, vcpu, frame, access)
        }
        // L1's store to a page hv write-protected for its dirty log.
        EC_DABT_LOWER if fault_rate_l1_dirty_write(nested, vcpu, esr) => {}
        // A load or store to a device hv emulates for L1 (its GIC; a
        // Linux L1's console UART).
        EC_DABT_LOWER if l1_device_access(nested, vcpu, frame, esr) => {}
        // A translation fault on L1's RAM while hv changes its own map
        // of it (break-before-make): L0's own transient fault, which L1
        // never sees. L1 runs the instruction again, and faults again
        // until hv's change is made; were it never made, the demo's
        // watchdog (the EL2 physical timer) ends the run with its line.
        EC_DABT_LOWER | EC_IABT_LOWER
            if nested
                .l0_map
                .mid_change_abort(esr, read_sysreg!("hpfar_el2")) =>
        {
            vcpu.fault_rate.faults.hv_resumed += 1;
            mid_change::resumed(MidChangeResume::L1Access);
        }
        // L0 maps all of L1's RAM with every access, so any other stage-2
        // abort of L1 is an access outside it: a synchronous external
        // abort for L1, taken at its virtual EL2 (review 23 F4).
        EC_DABT_LOWER | EC_IABT_LOWER => {
            // Finding the level of an abort on L1's own stage-1 walk reads
            // L1's tables: a table page mid hv's break-before-make is hv's
            // transient fault, so L1 runs the instruction again (its walk
            // faults again, mid the change or, after it, here).
            mid_change::before_rewalk();
            let Ok(walk) = mmu::l1_walk_abort(nested, esr, frame.spsr) else {
                vcpu.fault_rate.faults.hv_resumed += 1;
                mid_change::resumed(MidChangeResume::L1WalkAbort);
                return;
            };
            once(Note::L1OutsideRam);
            let syndrome = if let Some(walk) = walk {
                // L1's own stage-1 walk read outside its RAM: an abort on
                // the walk, at the level its tables give.
                walk
            } else if (esr >> 26) & EC_UNKNOWN_MASK == EC_IABT_LOWER {
                external_instruction_abort_syndrome(frame.spsr)
            } else if esr & (1 << 8) != 0 {
                // A cache maintenance instruction: CM = 1, WnR = 1.
                external_cache_maintenance_abort_syndrome(frame.spsr)
            } else {
                external_data_abort_syndrome(frame.spsr, esr & (1 << 6) != 0)
            };
            mid_change::aborted();
            exception_for_l1(vcpu, frame, syndrome, Some(read_sysreg!("far_el2")));
        }
        // Anything else L1 can cause (a trap of an instruction hv does not
        // emulate) is UNDEFINED for L1, never an end of hv: a guest's
        // input gets a guest's fault (review 23 F3).
        _ => {
            once(Note::L1Unhandled);
            undefined_for_l1(vcpu, frame)
        }
    }
}

/// HVC (or SMC) from L1: the console, PSCI.
fn hv_call(nested: &Nested, vcpu: &mut Vcpu, frame: &mut GuestFrame) {
    const CONSOLE_PUTC: u32 = HVC_CONSOLE_PUTC as u32;
    const FAULT_RATE_BEGIN: u32 = HVC_FAULT_RATE_BEGIN as u32;
    const FAULT_RATE_END: u32 = HVC_FAULT_RATE_END as u32;
    const MID_CHANGE: u32 = HVC_MID_CHANGE as u32;
    const TLBI_RACE_BEGIN: u32 = HVC_TLBI_RACE_BEGIN as u32;
    const TLBI_RACE_END: u32 = HVC_TLBI_RACE_END as u32;
    // SMCCC: the function ID is W0 (as KVM reads it too).
    match frame.x[0] as u32 {
        CONSOLE_PUTC => {
            let byte = frame.x[1] as u8;
            if byte == b'\n' || vcpu.line.is_full() {
                let text = core::str::from_utf8(&vcpu.line).unwrap_or("(not UTF-8)");
                println!("l1: {text}");
                vcpu.line.clear();
            }
            if byte != b'\n' {
                vcpu.line.push(byte);
            }
            frame.x[0] = 0;
        }
        function if psci::is_psci_function(function) => psci_call(nested, vcpu, frame, function),
        FAULT_RATE_BEGIN if nested.demo.is_fault_rate() => {
            let number = frame.x[1];
            // A pass at a time: a BEGIN with one open would take hv's
            // change (a move, the dirty log's start) inside that pass's
            // window, whose counts could then be nothing the passes
            // imply. L1 may run a pass again after its END.
            if let Some((open, _)) = vcpu.fault_rate.begin {
                fault_rate_failed(format_args!(
                    "L1 began pass {number} while pass {open} is open (no END for it)"
                ));
            }
            let pass = fault_rate::Pass::from_number(number);
            if nested.demo.is_fault_rate_smp() {
                fault_rate_smp_begin(nested, vcpu, number);
            } else if let Some(pass) = pass {
                FAULT_RATE_ORDER.begin_pass(fault_rate::smp::page_step(pass, 1));
                vcpu.fault_rate.order_begin = FAULT_RATE_ORDER.snapshot();
            }
            if pass.is_some_and(fault_rate::Pass::l0_unmap_first) {
                fault_rate_l0_move(nested, vcpu);
            }
            if pass.is_some_and(fault_rate::Pass::dirty_log_first) {
                fault_rate_dirty_log_start(nested, vcpu);
            }
            if pass.is_some_and(fault_rate::Pass::dirty_log_end_first) {
                fault_rate_dirty_log_stop(nested, vcpu);
            }
            vcpu.fault_rate.begin = Some((number, fault_rate_counts(nested, vcpu)));
            note_service_l0_changing(nested, vcpu);
            vcpu.fault_rate.faults_at_begin = vcpu.fault_rate.faults;
            frame.x[0] = 0;
        }
        FAULT_RATE_END if nested.demo.is_fault_rate_smp() => {
            fault_rate_smp_end(nested, vcpu, frame)
        }
        FAULT_RATE_END if nested.demo.is_fault_rate() => fault_rate_end(nested, vcpu, frame),
        MID_CHANGE if nested.mid_change.is_some() => mid_change::call(nested, vcpu, frame),
        TLBI_RACE_BEGIN if nested.demo.is_tlbi_race() => tlbi_race::begin(nested, vcpu, frame),
        TLBI_RACE_END if nested.demo.is_tlbi_race() => tlbi_race::end(nested, vcpu, frame),
        _ => frame.x[0] = status::NOT_SUPPORTED as u64,
    }
}

/// hv's L0 change before the fault-rate pass that needs one (path 3 of
/// /work/shared/DESIGN.md): hv moves L1's data pages to other PAs, the
/// way a host migrates a guest's memory: from where they are now to the
/// other of their two places (`fault_rate::DataPlaces`), so L1 may run
/// the pass again and again, each time with its pages as it left them.
/// Break (its 2 MiB blocks of L0's table of L1 invalid, TLBI
/// VMALLS12E1IS of L1's VMID), the service's `l0_unmap` of their L1 IPAs
/// (the shadow leaves built on them go, the cached walks of L1's table
/// stay, so L2's next touch of each page is a walk-cache hit), the copy,
/// the old pages' patterns inverted (a stale shadow leaf would show L1 a
/// wrong value), make (the blocks at the new PAs). L2 reads the same
/// values, through the new map. What the unmap removed shows in the
/// pass's line ("before it: ... invalidations 1 removing N entries"); the
/// count check catches too little or too much.
fn fault_rate_l0_move(nested: &Nested, vcpu: &mut Vcpu) {
    use super::nested_l1_fault_rate::{DATA_BYTES, DATA_OFFSET};
    let Some(FaultRateMove {
        l0_tables, data, ..
    }) = &nested.fault_rate_move
    else {
        return;
    };
    // Held until the new blocks are in: the pages are where `data` says
    // for any other vCPU's move.
    let mut data = data.lock();
    let fault_rate::DataMove { from, to } = data.next_move();
    let (first, len) = (L1_BASE + DATA_OFFSET, DATA_BYTES);
    let arena = nested.arena;
    const DOING: &str = "moving L1's data pages";
    fault_rate_break_data_blocks(nested, vcpu, l0_tables, L0Change::Unmap, DOING);
    // Cache maintenance, not needed by this L1: it and its L2 run with
    // their stage 1 off under HCR_EL2.DC = 1 (`L1_HCR`; L2 gets DC from
    // L1's virtual HCR_EL2, `l2_hcr`), so their accesses are Normal
    // write-back (DC's stage-1 attributes) combined with hv's stage-2
    // Normal write-back Inner Shareable: write-back Inner Shareable (Arm
    // ARM, combining stage 1 and stage 2 attributes, FEAT_S2FWB off), the
    // attributes of hv's identity map of the arena, so hardware keeps the
    // two views coherent. It is here because the move stands for a host
    // moving any guest's memory, and hv's stage 2 forces no cacheability
    // (no FEAT_S2FWB): a guest whose own stage 1 (or L1's stage 2 of L2)
    // maps the pages Non-cacheable reads and writes memory past the
    // caches, a mismatched-attributes alias of hv's. So hv leaves no line
    // of its own over guest memory (as after writing L1's image,
    // `clean_invalidate_dcache` of the arena), and here invalidates the
    // old place before reading it (hv copies what reached memory) and
    // cleans both places to the PoC after writing them (such a guest then
    // reads the copy, and no line hv holds is written back over it).
    cpu::clean_invalidate_dcache(from, len);
    if data.make_move(arena, len).is_none() {
        fault_rate_failed(format_args!(
            "{DOING}: {from:#x} or {to:#x} + {len:#x} is outside the arena"
        ));
    }
    cpu::clean_invalidate_dcache(from, len);
    cpu::clean_invalidate_dcache(to, len);
    for offset in (0..len).step_by(FAULT_RATE_DATA_BLOCK as usize) {
        let block = leaf_descriptor(2, to + offset, LeafAccess::ALL);
        if let Err(e) = l0_tables.rewrite(arena, first + offset, 2, block) {
            fault_rate_failed(format_args!("{DOING}: {e}"));
        }
    }
    // The new blocks before L1 or the walker of L0's map uses them.
    cpu::dsb_ish();
    cpu::isb();
}

/// The fault-rate case stops: `what` went wrong in hv's own L0 changes.
fn fault_rate_failed(what: core::fmt::Arguments) -> ! {
    println!("hv: nested: fault-rate: FAILED: {what}");
    exit(ExitStatus::Failure)
}

/// hv's L0 table of L1 maps L1's data pages with blocks of this size
/// (until the dirty log splits them).
const FAULT_RATE_DATA_BLOCK: u64 = 2 << 20;

/// The break of hv's L0 changes of L1's data pages (a move, the dirty
/// log's start): their 2 MiB blocks of L0's table of L1 invalid, TLBI
/// VMALLS12E1IS of L1's VMID, then the service's `l0_unmap` of their L1
/// IPAs with `change` (the shadow leaves built on them go; the cached
/// walks of L1's table stay, so L2's next touch of each page is a
/// walk-cache hit). `doing` names the change in a failure.
fn fault_rate_break_data_blocks(
    nested: &Nested,
    vcpu: &mut Vcpu,
    l0_tables: &Stage2Builder,
    change: L0Change,
    doing: &str,
) {
    use super::nested_l1_fault_rate::{DATA_BYTES, DATA_OFFSET};
    let first = L1_BASE + DATA_OFFSET;
    for offset in (0..DATA_BYTES).step_by(FAULT_RATE_DATA_BLOCK as usize) {
        if let Err(e) = l0_tables.rewrite(nested.arena, first + offset, 2, 0) {
            fault_rate_failed(format_args!("{doing}: {e}"));
        }
    }
    HwTlbs::new(TlbDefect::None)
        .for_vmid(L1_HOST_VMID)
        .invalidate_all();
    // The data pages end L1's RAM: a non-empty range.
    if let Some(range) = IpaRange::new(first, first + DATA_BYTES) {
        let worker = vcpu_worker(nested, &mut vcpu.worker);
        nested.service.l0_unmap(worker, range, change);
    }
}

/// hv's L1 data pages as write-protected 4 KiB pages (the dirty log's).
const DIRTY_LOG_PROTECTED: LeafAccess = LeafAccess {
    s2ap: walker::S2Ap::ReadOnly,
    execute: walker::Execute::Both,
};

/// hv starts its dirty log of L1's data pages before the dirty-log pass,
/// as KVM does when a memslot's dirty logging starts: it splits its 2 MiB
/// blocks of them into 4 KiB pages at the same PAs, write-protected, so
/// each page's first write is its own fault. Break (the blocks invalid,
/// TLBI VMALLS12E1IS of L1's VMID), the service's `l0_unmap` with
/// `WriteProtect` (the shadow leaves built on the pages go: they allow
/// L2's writes; the cached walks of L1's table stay), make (level-3
/// tables from the frames L0's table has left). L2's writes then reach
/// hv as `L0Denied` ([`fault_rate_log_dirty`]).
fn fault_rate_dirty_log_start(nested: &Nested, vcpu: &mut Vcpu) {
    use super::nested_l1_fault_rate::{DATA_BYTES, DATA_OFFSET};
    const BLOCK: u64 = FAULT_RATE_DATA_BLOCK;
    const BLOCKS: usize = (DATA_BYTES / BLOCK) as usize;
    const DOING: &str = "starting the dirty log";
    let Some(FaultRateMove {
        l0_tables,
        dirty_log,
        ..
    }) = &nested.fault_rate_move
    else {
        return;
    };
    if dirty_log.lock().is_some() {
        fault_rate_failed(format_args!("L1 began the dirty-log pass twice"));
    }
    let (first, arena) = (L1_BASE + DATA_OFFSET, nested.arena);
    // The blocks' PAs now (the L0-unmap pass moved them).
    let mut pas = [0; BLOCKS];
    for (index, pa) in pas.iter_mut().enumerate() {
        let ipa = first + index as u64 * BLOCK;
        *pa = match nested.l0_map.lookup(ipa) {
            Some(block) if block.size() == BLOCK && block.ipa_base() == ipa => block.pa_base(),
            // Review 59 R59-6: a dirty-log pass again with the log's pages
            // still in place. hv's log is one pass long (its END checks
            // and drops it); the split stays until the log ends.
            Some(page) if page.size() == FAULT_RATE_PAGE => fault_rate_failed(format_args!(
                "{DOING}: hv's dirty log is still on (L1 IPA {ipa:#x} is a 4 KiB page since the last dirty-log pass); it ends at the BEGIN of pass {} (or a move), which must come before the dirty-log pass again",
                fault_rate::Pass::AfterDirtyLogEnd.number()
            )),
            other => fault_rate_failed(format_args!(
                "{DOING}: hv's leaf of L1 IPA {ipa:#x} is {other:?}, not a 2 MiB block"
            )),
        };
    }
    fault_rate_break_data_blocks(nested, vcpu, l0_tables, L0Change::WriteProtect, DOING);
    // The level-3 tables come after the frames L0's table of L1 took when
    // it was built, the same frames each time this runs, and nothing else
    // makes one. A second dirty-log pass reuses them only after the log's
    // end (`fault_rate_dirty_log_stop`) or a move: each break replaced the
    // tables with blocks, its TLBI VMALLS12E1IS dropped the hardware's
    // walks through them and its `l0_unmap` bumped the service's L0
    // generation, so a translate that read them before the break (the
    // service reads hv's table itself) installs nothing from them. Without
    // either, the lookup above finds 4 KiB pages and stops hv before
    // anything changes.
    let mut tables = *l0_tables;
    for (index, pa) in pas.into_iter().enumerate() {
        let ipa = first + index as u64 * BLOCK;
        if let Err(e) = tables.map(arena, ipa, pa, BLOCK, 3, DIRTY_LOG_PROTECTED) {
            fault_rate_failed(format_args!("{DOING}: {e}"));
        }
    }
    // The pages before L1 or the walker of L0's map uses them.
    cpu::dsb_ish();
    cpu::isb();
    *dirty_log.lock() = Some(fault_rate::DirtyLog::new());
    vcpu.fault_rate.l1_logged = 0;
}

/// hv's 4 KiB pages of L1 memory (its dirty log's, and the size it checks
/// the log's end finds).
const FAULT_RATE_PAGE: u64 = 4096;

/// hv ends its dirty log of L1's data pages at the BEGIN of the pass
/// after the block pass (`Pass::AfterDirtyLogEnd`, 9; the block pass, 8,
/// needs the log's 4 KiB pages), as a host does when logging stops and it restores huge pages (KVM
/// recovers them as the pages fault again; hv at once): break-before-make
/// of its four level-3 tables back to the 2 MiB blocks they were split
/// from, at the same PAs, read-write. Break (the level-2 table
/// descriptors invalid, TLBI VMALLS12E1IS of L1's VMID), the service's
/// `l0_unmap` with `L0Change::Unmap` (the range has no mapping between
/// break and make, and the new one differs in size and permission: no
/// shadow leaf built on the 4 KiB pages may stay, read-only ones would
/// deny L2's writes and keep the shadow at 4 KiB; the cached walks of
/// L1's table stay), make (the blocks). The level-3 tables' frames are
/// unreachable after the break (and the TLBI): the next dirty-log start
/// takes them again (`fault_rate_dirty_log_start`). L2's next touch of a
/// block composes L1's 2 MiB block with hv's: a 2 MiB shadow block.
fn fault_rate_dirty_log_stop(nested: &Nested, vcpu: &mut Vcpu) {
    use super::nested_l1_fault_rate::{DATA_BYTES, DATA_OFFSET};
    const BLOCK: u64 = FAULT_RATE_DATA_BLOCK;
    const BLOCKS: usize = (DATA_BYTES / BLOCK) as usize;
    const DOING: &str = "ending the dirty log";
    let Some(FaultRateMove { l0_tables, .. }) = &nested.fault_rate_move else {
        return;
    };
    let first = L1_BASE + DATA_OFFSET;
    // Each block's PA, from its first page; its last page must be at the
    // block's end (the split mapped the block's pages in order, and only
    // the log's writes changed them since, in permission alone).
    let mut pas = [0; BLOCKS];
    for (index, pa) in pas.iter_mut().enumerate() {
        let ipa = first + index as u64 * BLOCK;
        let last = ipa + BLOCK - FAULT_RATE_PAGE;
        *pa = match (nested.l0_map.lookup(ipa), nested.l0_map.lookup(last)) {
            (Some(page), Some(end))
                if page.size() == FAULT_RATE_PAGE
                    && end.size() == FAULT_RATE_PAGE
                    && page.pa_base().is_multiple_of(BLOCK)
                    && end.pa_base() == page.pa_base() + BLOCK - FAULT_RATE_PAGE =>
            {
                page.pa_base()
            }
            (Some(block), _) if block.size() == BLOCK => fault_rate_failed(format_args!(
                "{DOING}: hv's dirty log is not on (L1 IPA {ipa:#x} is a 2 MiB block): the dirty-log pass ({}) must come before pass {}",
                fault_rate::Pass::DirtyLog.number(),
                fault_rate::Pass::AfterDirtyLogEnd.number()
            )),
            (other, end) => fault_rate_failed(format_args!(
                "{DOING}: hv's leaves of L1 IPA {ipa:#x} and {last:#x} are {other:?} and {end:?}, not the 4 KiB pages of one 2 MiB block"
            )),
        };
    }
    fault_rate_break_data_blocks(nested, vcpu, l0_tables, L0Change::Unmap, DOING);
    for (index, pa) in pas.into_iter().enumerate() {
        let ipa = first + index as u64 * BLOCK;
        let block = leaf_descriptor(2, pa, LeafAccess::ALL);
        if let Err(e) = l0_tables.rewrite(nested.arena, ipa, 2, block) {
            fault_rate_failed(format_args!("{DOING}: {e}"));
        }
    }
    // The blocks before L1 or the walker of L0's map uses them.
    cpu::dsb_ish();
    cpu::isb();
}

/// The dirty log's side of an `L0Denied` answer: a write to one of L1's
/// data pages that hv write-protected and has not logged
/// ([`fault_rate_log_dirty_write`]), L2's store or DC IVAC
/// (`fault_rate::dirty_log_write`) or the service walk's AF/dirty update
/// of a descriptor of L1's stage-2 table there (a write to the page all
/// the same, as the hardware's compare-and-swap would be); L2's
/// instruction runs again and the service, walking and composing afresh,
/// makes the update or maps the page writable. Resolved too when
/// another vCPU's write to the page was denied at the same time and
/// logged it first (counted apart, `fault_rate::DirtyWrite`, which says
/// why the retried write is not denied again). False for any other
/// denial (a read, a page outside the log), which hv does not resolve.
fn fault_rate_log_dirty(nested: &Nested, vcpu: &Vcpu, denial: &L0Denial) -> bool {
    // `fault-rate-smp-one-vcpu-log`'s defect: the log the starting
    // vCPU's alone.
    let own_log = nested.demo != NestedDemo::FaultRateSmpOneVcpuLog || vcpu.index == 0;
    let outcome = if fault_rate::dirty_log_write(denial.denied) && own_log {
        if nested.demo.is_fault_rate_smp() {
            fault_rate_smp_hold_shared_denial(nested, vcpu, denial.l1_ipa);
        }
        fault_rate_log_dirty_write(nested, vcpu.index, denial.l1_ipa)
    } else {
        fault_rate::DirtyWrite::Unresolved
    };
    // `fault-rate-smp`: which vCPU's L2 wrote it, and whose write found
    // the page logged by another.
    if nested.demo.is_fault_rate_smp() {
        if let Some(counters) = FAULT_RATE_SMP_VCPUS.get(vcpu.index) {
            counters.dirty_write(outcome);
        }
    }
    outcome.resolved()
}

/// `fault-rate-smp`: the most hv holds a vCPU's denied write to a page
/// every vCPU writes, waiting for the others' ([`fault_rate_smp_hold_shared_denial`]):
/// long enough that a loaded 2-core host running QEMU's three vCPU threads
/// (a thread can wait tens of ms for a core) still meets the race on some
/// shared page, which the twin `fault-rate-smp-race-unresolved` needs;
/// a hold ends early once every vCPU was denied, so it costs the lag only.
const FAULT_RATE_SMP_HOLD_MS: u64 = 100;

/// `fault-rate-smp`: which vCPUs' writes to the pages every vCPU writes
/// in the dirty-log pass were denied (`fault_rate::smp::SharedDenials`).
static FAULT_RATE_SMP_SHARED_DENIALS: fault_rate::smp::SharedDenials<NESTED_VCPUS> =
    fault_rate::smp::SharedDenials::new();

/// `fault-rate-smp`'s dirty-log pass: vCPU `vcpu`'s write to L1 IPA
/// `l1_ipa` was denied. If it is a page every vCPU writes
/// (`smp::written_by_every_vcpu`), hv holds it, before the log's lock,
/// until every vCPU's write to the page was denied or
/// [`FAULT_RATE_SMP_HOLD_MS`] passed: so every such page is the race of
/// several vCPUs denied before one logs it, which the log resolves
/// (`DirtyWrite::LoggedByAnother`) and the case counts. A bound, not a
/// wait for ever: a vCPU whose write found the page writable (the bound
/// passed on another) is never denied, and nothing depends on the hold
/// but how often the race comes.
fn fault_rate_smp_hold_shared_denial(nested: &Nested, vcpu: &Vcpu, l1_ipa: u64) {
    use super::nested_l1_fault_rate::DATA_OFFSET;
    let n = nested.vcpus.min(NESTED_VCPUS);
    let Some(page) = l1_ipa
        .checked_sub(L1_BASE + DATA_OFFSET)
        .map(|offset| offset / FAULT_RATE_PAGE)
        .filter(|&page| fault_rate::smp::l1_page_written_by_every_vcpu(page, n as u64))
    else {
        return;
    };
    FAULT_RATE_SMP_SHARED_DENIALS.deny(vcpu.index, page);
    let limit = read_sysreg!("cntfrq_el0").saturating_mul(FAULT_RATE_SMP_HOLD_MS) / 1000;
    let start = cpu::counter();
    while !FAULT_RATE_SMP_SHARED_DENIALS.all_denied(page, n)
        && cpu::counter().wrapping_sub(start) < limit
    {
        core::hint::spin_loop();
    }
}

/// L1's own store to one of its data pages that hv write-protected for
/// its dirty log: a stage-2 permission fault at L0, taken to hv as L1's
/// data abort (`fault_rate::l1_write_protection_fault`). hv logs the page
/// dirty as for L2's ([`fault_rate_log_dirty_write`]) and returns true:
/// L1's store runs again (ELR_EL2 unchanged) through the page made
/// writable. False for any other abort.
fn fault_rate_l1_dirty_write(nested: &Nested, vcpu: &mut Vcpu, esr: u64) -> bool {
    let logging = nested
        .fault_rate_move
        .as_ref()
        .is_some_and(|m| m.dirty_log.lock().is_some());
    if !logging {
        return false;
    }
    // At L1's exit the EL1&0 regime in the hardware is L1's.
    let stage1_on = l2_stage1_on(read_sysreg!("sctlr_el1"), read_sysreg!("hcr_el2"));
    let far = read_sysreg!("far_el2");
    let l1_ipa = match fault_rate::l1_write_protection_fault(esr, far, stage1_on) {
        None => return false,
        Some(fault_rate::L1WriteAddress::Ipa(ipa)) => ipa,
        // AT S1E1R with L1's stage 1 (`l2_stage1_par` translates with the
        // regime in the hardware). A failed translation: L1 changed its
        // stage 1 since the fault, so its store runs again and faults
        // afresh, nothing logged.
        Some(fault_rate::L1WriteAddress::Stage1Va(va)) => {
            match ipa_from_par(l2_stage1_par(va), va) {
                Some(ipa) => ipa,
                None => return true,
            }
        }
    };
    // `fault-rate-smp`: vCPU 1's L1 writes some of the pages every vCPU
    // writes (`smp::written_by_l1`), for its L2; its denial is that
    // vCPU's, held as its L2's would be, so L1's write races vCPU 0's
    // L2's on the page.
    if nested.demo.is_fault_rate_smp() {
        fault_rate_smp_hold_shared_denial(nested, vcpu, l1_ipa);
    }
    let outcome = fault_rate_log_dirty_write(nested, vcpu.index, l1_ipa);
    // `fault-rate-smp`: counted as its L2's are, on the vCPU's counters,
    // which vCPU 0's BEGIN snapshots for every vCPU. The single-vCPU
    // cases count in `l1_logged`, which their one vCPU's dirty-log BEGIN
    // resets, and cannot race: nothing runs between the store's fault and
    // its log but this vCPU's exit, so `LoggedByAnother` needs a second
    // vCPU.
    if nested.demo.is_fault_rate_smp() {
        if let Some(counters) = FAULT_RATE_SMP_VCPUS.get(vcpu.index) {
            counters.l1_dirty_write(outcome);
        }
    } else if outcome == fault_rate::DirtyWrite::Logged {
        vcpu.fault_rate.l1_logged += 1;
    }
    // `LoggedByAnother`: another vCPU's write (L1's or L2's) logged the
    // page since this store's fault; the store runs again through the
    // writable page.
    outcome.resolved()
}

/// vCPU `vcpu`'s denied write to L1 IPA `l1_ipa`: under the dirty log's
/// lock, hv reads its leaf of the page and decides
/// (`fault_rate::dirty_write_outcome`, which says why none loops and
/// stops the vCPU's write denied again on the page it last resolved for
/// it). `Logged`: one of L1's data pages hv
/// write-protected and has not logged; hv gives write access back in its
/// own stage 2 (the page read-write, and a TLBI of it for L1's VMID,
/// stage-2 and combined entries, completed before the lock's release)
/// and logs it. `LoggedByAnother`: another vCPU did so since this write's
/// denial; nothing changes. `Unresolved` (nothing changed) for any other
/// address or page.
fn fault_rate_log_dirty_write(nested: &Nested, vcpu: usize, l1_ipa: u64) -> fault_rate::DirtyWrite {
    use super::nested_l1_fault_rate::{DATA_BYTES, DATA_OFFSET};
    use fault_rate::{DirtyWrite, HvPage};
    const PAGE_SIZE: u64 = 4096;
    let Some(FaultRateMove {
        l0_tables,
        dirty_log,
        ..
    }) = &nested.fault_rate_move
    else {
        return DirtyWrite::Unresolved;
    };
    let mut log = dirty_log.lock();
    let Some(log) = log.as_mut() else {
        return DirtyWrite::Unresolved;
    };
    let first = L1_BASE + DATA_OFFSET;
    let page_ipa = l1_ipa & !(PAGE_SIZE - 1);
    let page = page_ipa
        .checked_sub(first)
        .filter(|&o| o < DATA_BYTES)
        .map(|offset| offset / PAGE_SIZE);
    let leaf = nested.l0_map.lookup(page_ipa);
    let hv_page = match leaf {
        Some(leaf) if leaf.size() == PAGE_SIZE => {
            if leaf.permissions().contains(ipc::Permissions::WRITE) {
                HvPage::Writable
            } else {
                HvPage::WriteProtected
            }
        }
        _ => HvPage::Other,
    };
    // `fault-rate-smp-race-unresolved`'s defect: the race's later write
    // left unresolved, as before the fix.
    let outcome = match fault_rate::dirty_write_outcome(log, vcpu, page, hv_page) {
        DirtyWrite::LoggedByAnother if nested.demo == NestedDemo::FaultRateSmpRaceUnresolved => {
            DirtyWrite::Unresolved
        }
        outcome => outcome,
    };
    let (DirtyWrite::Logged, Some(leaf), Some(page)) = (outcome, leaf, page) else {
        return outcome;
    };
    let writable = leaf_descriptor(3, leaf.pa_base(), LeafAccess::ALL);
    if l0_tables
        .rewrite(nested.arena, page_ipa, 3, writable)
        .is_err()
    {
        return DirtyWrite::Unresolved;
    }
    HwTlbs::new(TlbDefect::None)
        .for_vmid(L1_HOST_VMID)
        .invalidate_range(page_ipa, PAGE_SIZE);
    if log.log(page) {
        DirtyWrite::Logged
    } else {
        DirtyWrite::Unresolved
    }
}

/// hv's dirty log, taken (the dirty-log pass's END checks and drops it;
/// its write protection stays until the log's end, pass 9's BEGIN).
fn fault_rate_dirty_log_take(nested: &Nested) -> Option<fault_rate::DirtyLog> {
    nested.fault_rate_move.as_ref()?.dirty_log.lock().take()
}

/// This vCPU's fault count (`fault-rate-smp`: every vCPU's) and the
/// service's counters now (the single-vCPU cases' L1 has one vCPU).
fn fault_rate_counts(nested: &Nested, vcpu: &Vcpu) -> FaultRateCounts {
    let s = nested.service.stats();
    // `fault-rate-smp`: every vCPU's (vCPU 0 alone issues L1's TLBIs).
    let faults = if nested.demo.is_fault_rate_smp() {
        FAULT_RATE_SMP_VCPUS
            .iter()
            .map(|c| c.snapshot().faults)
            .sum()
    } else {
        vcpu.counts.translates
    };
    FaultRateCounts {
        faults,
        stage2_tlbis: vcpu.counts.stage2_tlbis,
        hits: s.hits,
        misses: s.misses,
        walks: s.walks,
        partial_walks: s.partial_walks,
        invalidations: s.invalidations,
        invalidated_entries: s.invalidated_entries,
        evictions: s.evictions,
    }
}

/// L1's END of a fault-rate pass (x1 the pass, x2 its ticks, x3 its
/// pages): prints the pass's line, then ends the run with `FAILED` if its
/// counts are not what the pass implies (`fault_rate::check`), or if L1
/// calls out of order.
fn fault_rate_end(nested: &Nested, vcpu: &mut Vcpu, frame: &mut GuestFrame) {
    let (number, ticks, pages) = (frame.x[1], frame.x[2], frame.x[3]);
    let end = fault_rate_counts(nested, vcpu);
    let (pass, begin) = match (
        vcpu.fault_rate.begin.take(),
        fault_rate::Pass::from_number(number),
    ) {
        (Some((begun, begin)), Some(pass)) if begun == number && pages == fault_rate::PAGES => {
            (pass, begin)
        }
        _ => {
            println!("hv: nested: fault-rate: FAILED: L1 ended pass {number} ({pages} pages) without beginning it, or a pass or page count hv does not know");
            exit(ExitStatus::Failure)
        }
    };
    let prep = begin.since(&vcpu.fault_rate.last_end);
    let window = end.since(&begin);
    vcpu.fault_rate.last_end = end;
    let in_order = FAULT_RATE_ORDER
        .snapshot()
        .since(&vcpu.fault_rate.order_begin)
        .in_order;
    let order = if fault_rate::smp::follows_page_order(pass) {
        alloc::format!(
            "{in_order} data faults in the pass's order (each new page {} past the last); ",
            fault_rate::smp::page_step(pass, 1)
        )
    } else {
        alloc::string::String::new()
    };
    let frequency = read_sysreg!("cntfrq_el0");
    let ns = fault_rate::nanoseconds(ticks, frequency);
    let rate = fault_rate::per_second(window.faults, ticks, frequency);
    let shown = |v: Option<u64>| match v {
        Some(v) => alloc::format!("{v}"),
        None => "n/a".into(),
    };
    // The counts first (the test matrix matches them), the time last.
    println!(
        "hv: nested: fault-rate: pass {number} ({}): {} L2 faults: hits {}, misses {} (full walks {}, partial walks {}), invalidations {}, evictions {}; before it: faults {} (full walks {}), stage-2 TLBIs from L1 {}, invalidations {} removing {} entries; {order}{ticks} ticks at {frequency} Hz = {} ns, {} faults/s",
        pass.describe(),
        window.faults,
        window.hits,
        window.misses,
        window.walks,
        window.partial_walks,
        window.invalidations,
        window.evictions,
        prep.faults,
        prep.walks,
        prep.stage2_tlbis,
        prep.invalidations,
        prep.invalidated_entries,
        shown(ns),
        shown(rate),
    );
    if let Some(limits) = &nested.fault_rate_pressure {
        fault_rate_pressure_end(nested, vcpu, limits, pass, &prep, &window);
    } else if let Err(m) = fault_rate::check(pass, pages, &prep, &window)
        .and_then(|()| fault_rate::check_page_order(pass, in_order))
    {
        println!(
            "hv: nested: fault-rate: FAILED: pass {number}: {} {} where the pass implies {}",
            if m.preparation {
                "before it,"
            } else {
                "in its window,"
            },
            alloc::format!("{} {}", m.got, m.what),
            m.expected
        );
        exit(ExitStatus::Failure)
    }
    if pass.dirty_log_first() {
        fault_rate_dirty_log_end(nested, vcpu);
    }
    frame.x[0] = 0;
}

/// `fault-rate-smp`: BEGIN of pass `number`, which vCPU 0 alone calls
/// (`fault_rate::smp`): snapshots every vCPU's counts and clears the page
/// tally, and tells each vCPU's counters the pass's order (the others sit
/// in L1 until vCPU 0 starts the pass), or ends the run `FAILED` for a
/// pass the case has not or another vCPU's call.
fn fault_rate_smp_begin(nested: &Nested, vcpu: &mut Vcpu, number: u64) {
    let Some(pass) = fault_rate::smp::pass(number).filter(|_| vcpu.index == 0) else {
        fault_rate_failed(format_args!(
            "fault-rate-smp: vCPU {} began pass {number}: only vCPU 0 begins, passes {:?}",
            vcpu.index,
            fault_rate::smp::PASSES
        ))
    };
    let step = fault_rate::smp::page_step(pass, nested.vcpus.min(NESTED_VCPUS) as u64);
    for counters in &FAULT_RATE_SMP_VCPUS {
        counters.begin_pass(step);
    }
    FAULT_RATE_SMP_SHARED_DENIALS.clear();
    vcpu.fault_rate.smp_begin = core::array::from_fn(|i| FAULT_RATE_SMP_VCPUS[i].snapshot());
    FAULT_RATE_SMP_PAGES.take();
}

/// hv gave vCPU `vcpu`'s L1 an exception other than its L2's HVC (or its
/// L2 an abort): `fault-rate-smp` never expects one, `tlbi-race` only its
/// L2's stage-2 faults in a break (counted apart, `tlbi_race::injected`).
fn unexpected_for_l1(nested: &Nested, vcpu: &Vcpu) {
    if nested.demo.is_fault_rate_smp() {
        if let Some(counters) = FAULT_RATE_SMP_VCPUS.get(vcpu.index) {
            counters.to_l1();
        }
    }
    if nested.demo.is_tlbi_race() {
        tlbi_race::to_l1();
    }
}

/// `fault-rate-smp`'s END of a pass (vCPU 0's; x1 the pass, x2 its
/// ticks, x3 its pages, x4 L1's vCPUs, every one of which reported its
/// share to vCPU 0 before this call): prints the pass's line, with every
/// vCPU's fault count, then checks it (`fault_rate::smp::check`) and
/// prints the verdict, or ends the run `FAILED` naming the count.
fn fault_rate_smp_end(nested: &Nested, vcpu: &mut Vcpu, frame: &mut GuestFrame) {
    use fault_rate::smp;
    let (number, ticks, pages, vcpus) = (frame.x[1], frame.x[2], frame.x[3], frame.x[4]);
    let end = fault_rate_counts(nested, vcpu);
    let n = nested.vcpus.min(NESTED_VCPUS);
    let (pass, begin) = match (vcpu.fault_rate.begin.take(), smp::pass(number)) {
        (Some((begun, begin)), Some(pass))
            if begun == number
                && pages == fault_rate::PAGES
                && vcpu.index == 0
                && vcpus == n as u64 =>
        {
            (pass, begin)
        }
        _ => {
            println!(
                "hv: nested: fault-rate-smp: FAILED: L1 ended pass {number} ({pages} pages, {vcpus} vCPUs) on vCPU {} without beginning it there, or a pass, page or vCPU count hv does not know (L1 has {n} vCPUs)",
                vcpu.index
            );
            exit(ExitStatus::Failure)
        }
    };
    let prep = begin.since(&vcpu.fault_rate.last_end);
    let window = end.since(&begin);
    vcpu.fault_rate.last_end = end;
    let per_vcpu: [smp::VcpuFaults; NESTED_VCPUS] = core::array::from_fn(|i| {
        FAULT_RATE_SMP_VCPUS[i]
            .snapshot()
            .since(&vcpu.fault_rate.smp_begin[i])
    });
    let per_vcpu = &per_vcpu[..n];
    let tally = FAULT_RATE_SMP_PAGES.take();
    let frequency = read_sysreg!("cntfrq_el0");
    let shown = |v: Option<u64>| match v {
        Some(v) => alloc::format!("{v}"),
        None => "n/a".into(),
    };
    let each = |count| fault_rate_smp_each(per_vcpu, count);
    // The counts the interleaving cannot change first (the test matrix
    // matches them), then the walks (full ones: which vCPU's first fault
    // the service walks first) and the time.
    println!(
        "hv: nested: fault-rate-smp: pass {number} ({}) on {n} vCPUs, pages interleaved: {} L2 faults ({}): hits {}, misses {}, invalidations {}, evictions {}; before it: faults {} (full walks {}), stage-2 TLBIs from L1 {}, invalidations {} removing {} entries; walks: full {}, partial {}; {ticks} ticks at {frequency} Hz = {} ns, {} faults/s",
        smp::describe(pass),
        window.faults,
        each(|v| v.faults),
        window.hits,
        window.misses,
        window.invalidations,
        window.evictions,
        prep.faults,
        prep.walks,
        prep.stage2_tlbis,
        prep.invalidations,
        prep.invalidated_entries,
        window.walks,
        window.partial_walks,
        shown(fault_rate::nanoseconds(ticks, frequency)),
        shown(fault_rate::per_second(window.faults, ticks, frequency)),
    );
    let checked = smp::Window {
        counts: &window,
        vcpus: per_vcpu,
        pages: tally,
    };
    if let Err(m) = smp::check(pass, &prep, &checked) {
        let whose = match m.vcpu {
            Some(index) => alloc::format!("vCPU {index}'s "),
            None => alloc::string::String::new(),
        };
        fault_rate_pass_failed(
            "fault-rate-smp",
            number,
            m.preparation,
            format_args!("{whose}{} {}", m.got, m.what),
            m.relation,
            m.bound,
        )
    }
    let full = match smp::full_walks(pass, n as u64) {
        (least, most) if least == most => alloc::format!("{least}"),
        (least, most) => alloc::format!("{least} to {most}"),
    };
    let order = if smp::follows_page_order(pass) {
        alloc::format!(
            " in the pass's order (each new page {} past the vCPU's last)",
            smp::page_step(pass, n as u64)
        )
    } else {
        alloc::string::String::new()
    };
    let retries = if pass == fault_rate::Pass::AfterDirtyLogEnd {
        "at most one fault a block on each vCPU, retries (AlreadyMapped) at most faults - blocks"
    } else {
        "no retry"
    };
    println!(
        "hv: nested: fault-rate-smp: pass {number} on {n} vCPUs: ok: preparation exact, {}; data faults: {}{order}; full walks {full}, {retries}, nothing given to L1",
        smp::held(pass),
        each(|v| v.data),
    );
    if pass.dirty_log_first() {
        fault_rate_smp_dirty_log_end(nested, n as u64, per_vcpu);
    }
    frame.x[0] = 0;
}

/// `fault-rate-smp`: one count of every vCPU, "vCPU 0 <count>, vCPU 1
/// <count>, ...", for hv's lines.
fn fault_rate_smp_each(
    per_vcpu: &[fault_rate::smp::VcpuFaults],
    count: fn(&fault_rate::smp::VcpuFaults) -> u64,
) -> alloc::string::String {
    per_vcpu
        .iter()
        .enumerate()
        .map(|(i, v)| alloc::format!("vCPU {i} {}", count(v)))
        .collect::<alloc::vec::Vec<_>>()
        .join(", ")
}

/// `fault-rate-smp`'s dirty-log pass ended (its window checked, each
/// vCPU's logged pages among it): hv's one log must hold exactly the L1
/// pages the vCPUs wrote (`smp::check_dirty_log`: their L2s', vCPU 1's
/// L1's own among them), whichever vCPU's write logged each. Prints its
/// line, or ends the run `FAILED`.
fn fault_rate_smp_dirty_log_end(
    nested: &Nested,
    vcpus: u64,
    per_vcpu: &[fault_rate::smp::VcpuFaults],
) {
    use fault_rate::{smp, DirtyMismatch, PAGES};
    let Some(log) = fault_rate_dirty_log_take(nested) else {
        fault_rate_failed(format_args!(
            "fault-rate-smp: the dirty-log pass ended without hv's dirty log"
        ));
    };
    let dirty = match smp::check_dirty_log(&log, vcpus) {
        Ok(dirty) => dirty,
        Err(DirtyMismatch::Missing(page)) => fault_rate_failed(format_args!(
            "fault-rate-smp: dirty log: L2 on vCPU {} wrote L1 data page {page} and hv did not log it dirty",
            (page + PAGES - fault_rate::LAST_ROTATION) % PAGES % vcpus.max(1)
        )),
        Err(DirtyMismatch::Extra(page)) => fault_rate_failed(format_args!(
            "fault-rate-smp: dirty log: hv logged L1 data page {page} dirty, which no vCPU's L2 wrote"
        )),
    };
    let each = |count| fault_rate_smp_each(per_vcpu, count);
    println!(
        "hv: nested: fault-rate-smp: dirty log: {dirty} of {PAGES} L1 data pages logged dirty, each once: exactly the pages the vCPUs wrote (the first of every {} pages each L2 read; {} of them, vCPU 0's, written by every vCPU, {} of those by vCPU {}'s L1 itself), each logged on the vCPU whose write reached the log first (L2's writes: {}; L1's own: {}); writes denied on a page another vCPU logged meanwhile, resolved: L2's {}; L1's own {}",
        smp::DIRTY_WRITE_READS,
        smp::shared_written(vcpus),
        smp::l1_written(vcpus),
        smp::L1_WRITER,
        each(|v| v.logged),
        each(|v| v.l1_logged),
        each(|v| v.logged_by_another),
        each(|v| v.l1_logged_by_another),
    );
}

/// Takes the service's two `Retry(L0Changing)` counts into hv's fault
/// counts, for the snapshot taken next (`fault_rate::pressure::Faults`).
fn note_service_l0_changing(nested: &Nested, vcpu: &mut Vcpu) {
    let stats = nested.service.stats();
    vcpu.fault_rate
        .faults
        .note_service(stats.l0_changing_output, stats.l0_changing_table);
}

/// Ends a fault-rate `case` (`fault-rate-smp`, `fault-rate-tight`) whose
/// pass `number` has a `count` ("<got> <what>") out of its bound: "FAILED:
/// pass N: before it, / in its window, <count> where the pass implies
/// <relation> <bound>".
fn fault_rate_pass_failed(
    case: &str,
    number: u64,
    preparation: bool,
    count: core::fmt::Arguments,
    relation: fault_rate::Relation,
    bound: u64,
) -> ! {
    let when = if preparation {
        "before it,"
    } else {
        "in its window,"
    };
    println!(
        "hv: nested: {case}: FAILED: pass {number}: {when} {count} where the pass implies {} {bound}",
        relation.words()
    );
    exit(ExitStatus::Failure)
}

/// `fault-rate-tight`'s END of a pass (after its line): checks the
/// pass's counts and hv's own under pressure (`fault_rate::pressure`) and
/// the service's occupancy, prints what it checked, or ends the run
/// `FAILED` naming the count and the bound it missed.
fn fault_rate_pressure_end(
    nested: &Nested,
    vcpu: &mut Vcpu,
    limits: &fault_rate::pressure::Limits,
    pass: fault_rate::Pass,
    prep: &FaultRateCounts,
    window: &FaultRateCounts,
) {
    let number = pass.number();
    note_service_l0_changing(nested, vcpu);
    let marks = &mut vcpu.fault_rate;
    let prep_faults = marks.faults_at_begin.since(&marks.faults_at_end);
    let window_faults = marks.faults.since(&marks.faults_at_begin);
    marks.faults_at_end = marks.faults;
    let pages = fault_rate::PAGES;
    if let Err(m) = fault_rate::pressure::check(
        pass,
        pages,
        limits,
        prep,
        &prep_faults,
        window,
        &window_faults,
    ) {
        fault_rate_pass_failed(
            "fault-rate-tight",
            number,
            m.preparation,
            format_args!("{} {}", m.got, m.what),
            m.relation,
            m.bound,
        )
    }
    // The most the service held after any fault since the last END, and
    // what it holds now.
    let peak = vcpu.fault_rate.peak;
    vcpu.fault_rate.peak = fault_rate::pressure::Occupancy::default();
    let end = fault_rate_occupancy(nested, vcpu);
    for (occupancy, when) in [(&peak, "after a fault"), (&end, "at its END")] {
        if let Some((what, limit, got)) = occupancy.over(limits) {
            println!(
                "hv: nested: fault-rate-tight: FAILED: pass {number}, {when}: the service held {got} {what}, over its budget's {limit}"
            );
            exit(ExitStatus::Failure)
        }
    }
    // hv's and the occupancy's numbers, which differ from run to run
    // (the cache's hash key is drawn at boot) ...
    println!(
        "hv: nested: fault-rate-tight: pass {number}: {} data faults, {} on L2's code page, {} retried ({} more mid hv's change of L1's map: the service's {} of L1's RAM, {} of L1's table; {} of L1's or L2's own accesses hv resumed there); at most (after a fault) / at END: {} / {} of {} cached leaves, {} / {} of {} paths, {} / {} of {} shadow leaves, {} / {} of {} frames",
        window_faults.data,
        window
            .faults
            .wrapping_sub(window_faults.data)
            .wrapping_sub(window_faults.l0_changing),
        window_faults.retries,
        window_faults.l0_changing,
        window_faults.service_l0_changing_output,
        window_faults.service_l0_changing_table,
        window_faults.hv_resumed,
        peak.cache_leaves,
        end.cache_leaves,
        limits.cache_leaves,
        peak.cache_paths,
        end.cache_paths,
        limits.cache_paths,
        peak.shadow_leaves,
        end.shadow_leaves,
        limits.shadow_leaves,
        peak.frames,
        end.frames,
        limits.frames,
    );
    // ... and the verdict, whose numbers follow from the pass and the
    // budget alone (the test matrix matches it).
    let (_, normal) = pass.expected(pages);
    println!(
        "hv: nested: fault-rate-tight: pass {number} under pressure: ok: preparation exact, {} data faults exact, no retry, hits + misses = faults, full + partial walks = misses, evictions at least {}, code-page faults at most the evictions, within the budget",
        normal.faults,
        pass.data_shadow_leaves(pages)
            .saturating_sub(limits.shadow_leaves),
    );
}

/// What the service holds now (`fault-rate-tight`: read after every L2
/// fault and at each END, `pressure::Occupancy::over` checks it).
fn fault_rate_occupancy(nested: &Nested, vcpu: &mut Vcpu) -> fault_rate::pressure::Occupancy {
    let service = nested.service;
    let worker = vcpu_worker(nested, &mut vcpu.worker);
    let (cache_leaves, cache_paths) = service.cache_entries(worker);
    let (index_growths, _) = service.index_allocations(worker);
    fault_rate::pressure::Occupancy {
        cache_leaves: cache_leaves as u64,
        cache_paths: cache_paths as u64,
        shadow_leaves: service.shadow_leaves() as u64,
        frames: service.shadow_frames() as u64,
        index_growths: u64::from(index_growths),
    }
}

/// The dirty-log pass ended: hv's log must hold exactly the L1 data pages
/// L2 and L1 wrote (`fault_rate::dirty_after_dirty_log_pass`), each
/// logged from one write, and L1's own from L1's own faults. Prints its
/// line, or ends the run `FAILED`.
fn fault_rate_dirty_log_end(nested: &Nested, vcpu: &mut Vcpu) {
    use fault_rate::{
        DirtyMismatch, DIRTY_WRITE_PERIOD, L1_DIRTY_WRITE_FIRST, L1_DIRTY_WRITE_PERIOD, PAGES,
    };
    let Some(log) = fault_rate_dirty_log_take(nested) else {
        fault_rate_failed(format_args!(
            "the dirty-log pass ended without hv's dirty log"
        ));
    };
    let writer = |page| {
        if fault_rate::written_by_l1_in_dirty_log_pass(page) {
            "L1 wrote its"
        } else {
            "L2 wrote L1"
        }
    };
    let dirty = match log.check(fault_rate::dirty_after_dirty_log_pass) {
        Ok(dirty) => dirty,
        Err(DirtyMismatch::Missing(page)) => fault_rate_failed(format_args!(
            "dirty log: {} data page {page} and hv did not log it dirty",
            writer(page)
        )),
        Err(DirtyMismatch::Extra(page)) => fault_rate_failed(format_args!(
            "dirty log: hv logged L1 data page {page} dirty, which neither L2 nor L1 wrote"
        )),
    };
    let by_l1 = vcpu.fault_rate.l1_logged;
    let l1_pages = (0..PAGES)
        .filter(|&p| fault_rate::written_by_l1_in_dirty_log_pass(p))
        .count() as u64;
    if by_l1 != l1_pages {
        fault_rate_failed(format_args!(
            "dirty log: {by_l1} pages logged from L1's own write faults, where L1 wrote {l1_pages}"
        ));
    }
    println!(
        "hv: nested: fault-rate: dirty log: {dirty} of {PAGES} L1 data pages logged dirty, each from one write to hv's write-protected 4 KiB page: exactly the pages L2 wrote (every {DIRTY_WRITE_PERIOD}th L2 page; {} L0Denied answers) and L1 wrote itself (every {L1_DIRTY_WRITE_PERIOD}th from page {L1_DIRTY_WRITE_FIRST}; {by_l1} of L1's own stage-2 permission faults)",
        dirty - by_l1
    );
}

/// L1's trapped ERET: within virtual EL2, or into L2.
fn l1_eret(nested: &Nested, vcpu: &mut Vcpu, frame: &mut GuestFrame) {
    // With NV, L1's ELR_EL2 and SPSR_EL2 are the hardware ELR_EL1 and
    // SPSR_EL1 (checked on QEMU: the demo's ERET reads them here).
    let elr = read_sysreg!("elr_el1");
    let spsr = read_sysreg!("spsr_el1");
    let vhcr = vcpu.vncr.hcr();
    let target = eret_from_vel2(elr, spsr, vhcr, frame.spsr);
    if matches!(target, EretTarget::L2 { .. }) && runs_el0_with_tge(vhcr) {
        once(Note::L1El0Tge);
    }
    // L2's hardware HCR_EL2 (with TGE for L1's own EL0 under E2H = 0;
    // `el0-tge-no-tge` leaves it out, and SCTLR_EL1.M as L1 wrote it,
    // `load_l2_el1`, so that EL0 runs as an L2's).
    let hardware_hcr = if nested.demo == NestedDemo::El0TgeNoTge {
        l2_hcr(vhcr) & !hcr::TGE
    } else {
        l2_hcr(vhcr)
    } | HV_INTERRUPT_ROUTING;
    match target {
        EretTarget::Vel2 { pc, pstate } => {
            frame.elr = pc;
            frame.spsr = pstate;
        }
        // L1's host EL0 runs on L1's own EL2&0 regime, which the hardware
        // EL1&0 registers hold (a VHE L1: a non-VHE one's E2H is RES0, and
        // its EL0 under TGE is entered as L2 is, `runs_el0_with_tge`),
        // under L1's VMID: nothing to switch. Its
        // exceptions are taken to hardware EL1, L1's vector, as from a
        // lower EL; its accesses to EL0 counters and timers follow the
        // hardware CNTKCTL_EL1, which holds its CNTHCTL_EL2's EL0 bits.
        EretTarget::L1HostEl0 { pc, pstate } => {
            once(Note::L1HostEl0);
            frame.elr = pc;
            frame.spsr = pstate;
        }
        EretTarget::L2 { pc, pstate } if maintenance_at_eret(nested, vcpu, frame, pc, pstate) => {}
        EretTarget::L2 { pc, pstate } if vhcr & hcr::VM == 0 => {
            // L1's stage 2 off: L2's IPA is L1's IPA, which L0's map of L1
            // translates (review 23 F4).
            load_l2_el1(nested, vcpu, vhcr);
            write_sysreg!("hcr_el2", hardware_hcr);
            vector::enter_l2(nested, vcpu);
            traps::enter_l2(nested, vcpu);
            load_l2_ids(nested, vcpu);
            write_sysreg!("vtcr_el2", nested.l0_vtcr);
            write_sysreg!(
                "vttbr_el2",
                u64::from(l2_direct_vmid(vcpu.index)) << 48 | (nested.l0_vttbr & 0xffff_ffff_ffff)
            );
            cpu::isb();
            let virtual_vmid = ipc::l1_vmid(
                vcpu.vncr.vttbr(),
                vcpu.vncr.vtcr(),
                nested.service.l1_vmid_width(),
            );
            if vcpu.direct_owner != Some(virtual_vmid) {
                // SAFETY: drops the stage-1 entries another virtual VMID's
                // L2 left under this hardware VMID (the one just written
                // to VTTBR_EL2), completed before L2 runs.
                unsafe {
                    core::arch::asm!(
                        "dsb ishst",
                        "tlbi vmalle1is",
                        "dsb ish",
                        "isb",
                        options(nostack)
                    )
                };
                vcpu.direct_owner = Some(virtual_vmid);
            }
            frame.elr = pc;
            frame.spsr = pstate;
            vcpu.mode = Mode::L2Direct;
            vcpu.counts.l2_entries += 1;
        }
        EretTarget::L2 { pc, pstate } => {
            let width = nested.service.l1_vmid_width();
            let key = ContextKey::new(vcpu.vncr.vttbr(), vcpu.vncr.vtcr(), width);
            // The handshake's entry (steps 1-4); the ERET below is step 5.
            let Some(vttbr) = enter_shadow(nested, vcpu, &key) else {
                // Over the service's budget (review 23 F4): L1 stays at
                // its ERET (a trapped ERET's ELR_EL2 is the ERET itself)
                // and tries again; the watchdog bounds a run that never
                // gets a shadow.
                once(Note::NoShadow);
                return;
            };
            load_l2_el1(nested, vcpu, vhcr);
            write_sysreg!("hcr_el2", hardware_hcr);
            vector::enter_l2(nested, vcpu);
            traps::enter_l2(nested, vcpu);
            load_l2_ids(nested, vcpu);
            write_sysreg!("vtcr_el2", nested.shadow_vtcr);
            write_sysreg!("vttbr_el2", vttbr);
            cpu::isb();
            frame.elr = pc;
            frame.spsr = pstate;
            vcpu.mode = Mode::L2 { key };
            vcpu.counts.l2_entries += 1;
        }
    }
}

/// The switch of the hardware EL1 registers at L1's ERET into L2: L1's
/// kept in its `Vcpu`, L2's loaded from the VNCR page. For L1's own EL0
/// under {E2H, TGE} = {0, 1} SCTLR_EL1 goes in with M cleared
/// (`el0_tge_hardware_sctlr`): the architecture treats M as 0 there for
/// every purpose but a direct read, which EL0 cannot make, and the
/// hardware TGE alone does not turn stage 1 off on QEMU 10 when stage 2
/// is on (its two-stage walk checks only HCR_EL2.DC; seen as an S1PTW
/// fault on L1's table at EL0's first fetch). `el0-tge-no-tge` skips it.
fn load_l2_el1(nested: &Nested, vcpu: &mut Vcpu, l1_virtual_hcr: u64) {
    for register in El1Register::ALL {
        vcpu.l1_el1.set(register, read_el1(register));
        write_el1(register, vcpu.vncr.el1(register));
    }
    if runs_el0_with_tge(l1_virtual_hcr) && nested.demo != NestedDemo::El0TgeNoTge {
        write_el1(
            El1Register::Sctlr,
            el0_tge_hardware_sctlr(vcpu.vncr.el1(El1Register::Sctlr)),
        );
    }
}

/// L1's ERET into L2 (to `pc` with `pstate`) while its maintenance
/// interrupt is asserted as its own state says and routed to its virtual
/// EL2, or one of its timer PPIs is signalled (`VcpuTimers::interrupts_l2`):
/// the IRQ is taken before L2's first instruction, so L2 never runs
/// and L1 enters its vector for an IRQ from a lower EL (AArch64),
/// VBAR_EL2 + 0x480, with ELR_EL2 `pc` and SPSR_EL2 `pstate` (L2's EL1
/// registers stay in the VNCR page; ESR_EL2 and FAR_EL2 as L1 left them).
/// hv's own computation decides, not the hardware's ICH_MISR_EL2, which
/// may disagree (QEMU 10.0 computes VGrp0D from VENG1; review 33 R33-3).
/// Whether it was taken.
fn maintenance_at_eret(
    nested: &Nested,
    vcpu: &mut Vcpu,
    frame: &mut GuestFrame,
    pc: u64,
    pstate: u64,
) -> bool {
    let note = if vcpu.gic.maintenance_for_l1(vcpu.vncr, vcpu.vncr.hcr()) == Maintenance::ForL1 {
        Note::L1Maintenance
    } else if vcpu.timers.interrupts_l2(vcpu.vncr, vcpu.vncr.hcr()) {
        // Or an asserted timer PPI of L1's (`arch::nested_timer`).
        Note::L1Timer
    } else if l1_gic_interrupts_l2(nested, vcpu) {
        // Or an SGI or SPI of L1's GIC (`arch::nested_gic`).
        Note::L1Distributor
    } else {
        return false;
    };
    once(note);
    let entry = exception_to_vel2(
        read_sysreg!("vbar_el1"),
        Origin::LowerAarch64,
        pc,
        pstate,
        traps::vel2_target(nested, vcpu),
    );
    write_sysreg!("elr_el1", entry.elr);
    write_sysreg!("spsr_el1", entry.spsr);
    frame.elr = entry.pc + IRQ_AFTER_SYNC;
    frame.spsr = entry.pstate;
    true
}

/// An IRQ's vector is 0x80 after the synchronous one of its group.
const IRQ_AFTER_SYNC: u64 = 0x80;

/// An exception from L2 to L1's virtual EL2 (lower EL, synchronous):
/// L2's EL1 registers to the VNCR page, L1's back, the syndrome in L1's
/// EL2 registers.
fn enter_l1_from_l2(
    nested: &Nested,
    vcpu: &mut Vcpu,
    frame: &mut GuestFrame,
    esr: u64,
    far: u64,
    hpfar: u64,
) {
    // L2's own HVCs (the case's `hvc #1` and `#2`) are L1's to take; any
    // other exception hv hands L1 here is a fault the case never expects.
    if (esr >> 26) & EC_UNKNOWN_MASK != EC_HVC64 {
        unexpected_for_l1(nested, vcpu);
    }
    // After L1's EL0 under TGE (E2H = 0) the hardware SCTLR_EL1 may be the
    // one with M cleared that `load_l2_el1` gave it: L2's stays as L1
    // wrote it (nothing at EL0 writes SCTLR_EL1).
    let keep_sctlr = runs_el0_with_tge(vcpu.vncr.hcr());
    for register in El1Register::ALL {
        if !(keep_sctlr && register == El1Register::Sctlr) {
            vcpu.vncr.set_el1(register, read_el1(register));
        }
        write_el1(register, vcpu.l1_el1.get(register));
    }
    // L1's regime is in the hardware EL1 registers again.
    let entry = exception_to_vel2(
        vcpu.l1_el1.get(El1Register::Vbar),
        Origin::LowerAarch64,
        frame.elr,
        frame.spsr,
        traps::vel2_target(nested, vcpu),
    );
    write_sysreg!("elr_el1", entry.elr);
    write_sysreg!("spsr_el1", entry.spsr);
    write_sysreg!("esr_el1", esr);
    write_sysreg!("far_el1", far);
    vcpu.hpfar = hpfar;
    enter_l1_regime(mmu::l1_hcr(nested, vcpu));
    // `demo-no-l1-ids`: L1 reads L2's MIDR_EL1 and MPIDR_EL1.
    if nested.demo != NestedDemo::DemoNoL1Ids {
        load_l1_ids(vcpu.index as u64);
    }
    vector::exit_l2(nested, vcpu);
    frame.elr = entry.pc;
    frame.spsr = entry.pstate;
    vcpu.mode = Mode::L1;
}

/// An IRQ from L2 to L1's virtual EL2 (L1's maintenance interrupt, L1
/// routing IRQs to EL2): the switch of [`enter_l1_from_l2`] to L1's
/// vector for an IRQ from a lower EL (AArch64), VBAR_EL2 + 0x480, with
/// ELR_EL2 the instruction L2 would have run next (hv's exit's ELR) and
/// ESR_EL2, FAR_EL2, HPFAR_EL2 as L1 left them (an IRQ sets none).
fn irq_to_l1_from_l2(nested: &Nested, vcpu: &mut Vcpu, frame: &mut GuestFrame, why: Note) {
    once(why);
    let esr = vcpu.l1_el1.get(El1Register::Esr);
    let far = vcpu.l1_el1.get(El1Register::Far);
    let hpfar = vcpu.hpfar;
    enter_l1_from_l2(nested, vcpu, frame, esr, far, hpfar);
    frame.elr += IRQ_AFTER_SYNC;
}

/// An Undefined Instruction exception for L1, taken from L1 itself.
fn undefined_for_l1(vcpu: &Vcpu, frame: &mut GuestFrame) {
    exception_for_l1(vcpu, frame, undefined_syndrome(), None)
}

/// A synchronous exception with syndrome `esr` (and `far` for an abort)
/// for L1, taken from L1 itself to its virtual EL2.
fn exception_for_l1(vcpu: &Vcpu, frame: &mut GuestFrame, esr: u64, far: Option<u64>) {
    let Some(nested) = NESTED.get() else {
        fail(format_args!("nested: not set up"));
    };
    unexpected_for_l1(nested, vcpu);
    let entry = exception_to_vel2(
        read_sysreg!("vbar_el1"),
        Origin::of_l1(frame.spsr),
        frame.elr,
        frame.spsr,
        traps::vel2_target(nested, vcpu),
    );
    write_sysreg!("elr_el1", entry.elr);
    write_sysreg!("spsr_el1", entry.spsr);
    write_sysreg!("esr_el1", esr);
    if let Some(far) = far {
        write_sysreg!("far_el1", far);
    }
    frame.elr = entry.pc;
    frame.spsr = entry.pstate;
}

/// Reads and writes of L1's trapped EL2 registers (see
/// [`Vel2Register`]).
trait Vel2Access {
    fn read(self, vcpu: &Vcpu) -> u64;
    fn write(self, vcpu: &mut Vcpu, value: u64);
}

impl Vel2Access for Vel2Register {
    fn read(self, vcpu: &Vcpu) -> u64 {
        self.twin().map_or(vcpu.hpfar, read_el1)
    }

    fn write(self, vcpu: &mut Vcpu, value: u64) {
        match self.twin() {
            // VBAR_EL2 bits [10:0] are RES0.
            Some(El1Register::Vbar) => write_el1(El1Register::Vbar, value & !0x7ff),
            Some(twin) => write_el1(twin, value),
            None => vcpu.hpfar = value,
        }
    }
}

/// A trapped MRS/MSR/SYS of L1.
fn l1_system_instruction(
    nested: &Nested,
    vcpu: &mut Vcpu,
    frame: &mut GuestFrame,
    access: SysRegAccess,
) {
    let (op0, op1, crn, crm, op2) = (access.op0, access.op1, access.crn, access.crm, access.op2);
    if op0 == 1 && (crn == 8 || crn == 9) {
        return l1_tlbi(nested, vcpu, frame, access);
    }
    if op0 == 1 && crn == 7 && (crm == 8 || crm == 9) {
        return at::l1_at(nested, vcpu, frame, access);
    }
    if access.read && IdRegister::in_id_space(op0, op1, crn, crm) {
        let value =
            IdRegister::from_encoding(op0, op1, crn, crm, op2).map_or(0, |r| nested.shown(r));
        frame.set_reg(access.rt, value);
        frame.elr += instruction_length(read_sysreg!("esr_el2"));
        return;
    }
    // ICC_SGI1R_EL1, ICC_ASGI1R_EL1 and ICC_SGI0R_EL1 (trapped by
    // HCR_EL2.IMO/FMO): SGIs of L1's GIC.
    if (op0, op1, crn, crm) == (3, 0, 12, 11) && matches!(op2, 5..=7) && !access.read {
        sgi_write_to_l1_gic(nested, vcpu, frame, op2, frame.reg(access.rt));
        return;
    }
    // ICH_VTR/MISR/EISR/ELRSR_EL2 (not in the VNCR page) and ICC_SRE_EL2.
    if let Some(gic_access) = super::nested_vgic::l1_access(&access, vcpu.vncr) {
        match gic_access {
            L1GicAccess::Read(value) => frame.set_reg(access.rt, value),
            L1GicAccess::Ignored => {}
            L1GicAccess::Undefined => return undefined_for_l1(vcpu, frame),
        }
        frame.elr += instruction_length(read_sysreg!("esr_el2"));
        return;
    }
    // HACR_EL2: RES0 for L1 (`nested::traps::is_hacr_el2`).
    if crate::nested::traps::is_hacr_el2(&access) {
        if access.read {
            frame.set_reg(access.rt, 0);
        }
        frame.elr += instruction_length(read_sysreg!("esr_el2"));
        return;
    }
    // CPTR_EL2, MDCR_EL2 (and a VHE L1's CPACR_EL1, its CPTR_EL2).
    if traps::l1_access(nested, vcpu, frame, access) {
        return;
    }
    // ZCR_EL2 and SMCR_EL2 (L1's SVE and SME vector lengths).
    if vector::l1_access(nested, vcpu, frame, access) {
        return;
    }
    // A non-VHE L1's EL2 stage-1 registers; a VHE L1's EL2&0 registers
    // (`mmu`).
    if nested.mode == L1Vel2Mode::NonVhe
        && op0 == 3
        && op1 == 4
        && mmu::l1_el2_stage1_access(nested, vcpu, frame, access)
    {
        return;
    }
    if nested.mode == L1Vel2Mode::Vhe && mmu::vhe_el2_regime_access(nested, vcpu, frame, access) {
        return;
    }
    if op0 == 3 && op1 == 4 {
        if let Some(register) = Vel2Register::from_encoding(crn, crm, op2) {
            let bit = 1 << (register as u32 * 2 + u32::from(access.read));
            if vcpu.counts.vel2_traps_seen & bit == 0 {
                vcpu.counts.vel2_traps_seen |= bit;
                println!(
                    "hv: nested: L1's {} {register:?}_EL2 traps (first time): emulated{}",
                    if access.read { "MRS" } else { "MSR" },
                    if register.twin().is_some() {
                        " on the hardware EL1 twin"
                    } else {
                        " by hv"
                    }
                );
            }
            if access.read {
                frame.set_reg(access.rt, register.read(vcpu));
            } else {
                register.write(vcpu, frame.reg(access.rt));
            }
            frame.elr += instruction_length(read_sysreg!("esr_el2"));
            return;
        }
    }
    // CNTHCTL_EL2, CNTHP/CNTHV_*_EL2 and the timer TVALs without a VNCR
    // slot (`arch::nested_timer`).
    if let Some(done) = vcpu
        .timers
        .l1_access(&access, frame.reg(access.rt), vcpu.vncr)
    {
        if let TimerAccess::Read(value) = done {
            frame.set_reg(access.rt, value);
        }
        frame.elr += instruction_length(read_sysreg!("esr_el2"));
        return;
    }
    undefined_unemulated(vcpu, frame, access);
}

/// An UNDEFINED for L1's trapped access hv does not emulate, reported
/// once per encoding and direction (review 23 F8: no log flooding).
fn undefined_unemulated(vcpu: &mut Vcpu, frame: &mut GuestFrame, access: SysRegAccess) {
    let key = u32::from(access.op0) << 17
        | u32::from(access.op1) << 14
        | u32::from(access.crn) << 10
        | u32::from(access.crm) << 6
        | u32::from(access.op2) << 3
        | u32::from(access.read);
    match vcpu.undefined_seen.sight(key) {
        Sighting::First => println!(
            "hv: nested: L1's {access} at {:#x} is not emulated: injecting UNDEFINED (reported once)",
            frame.elr
        ),
        Sighting::Overflow => println!(
            "hv: nested: L1's {access} at {:#x} is not emulated: injecting UNDEFINED (further unemulated accesses are not reported)",
            frame.elr
        ),
        Sighting::Again => {}
    }
    undefined_for_l1(vcpu, frame);
}

/// L1's trapped TLBI: stage 2 (op1 4) goes to the service for L1's VMID;
/// stage 1 of L2's EL1&0 regime (op1 0) is applied in hardware to every
/// shadow VMID of that VMID; a form L1 was not shown is UNDEFINED.
fn l1_tlbi(nested: &Nested, vcpu: &mut Vcpu, frame: &mut GuestFrame, access: SysRegAccess) {
    let xt = frame.reg(access.rt);
    let vmid = ipc::l1_vmid(
        vcpu.vncr.vttbr(),
        vcpu.vncr.vtcr(),
        nested.service.l1_vmid_width(),
    );
    let f = nested.tlbi_features;
    match access.op1 {
        4 => match Tlbi::from_sys_encoding(
            access.op0, access.op1, access.crn, access.crm, access.op2,
        ) {
            Some(tlbi) if !tlbi.exists_for(f) => return undefined_for_l1(vcpu, frame),
            Some(tlbi) => {
                vcpu.counts.stage2_tlbis += 1;
                if nested.demo.is_tlbi_race() {
                    tlbi_race::tlbi(vcpu.index, tlbi.op);
                }
                if !nested.skipped_stage2_tlbis.skips(tlbi.op) {
                    // A decode error (a reserved range granule) names no
                    // entries: the TLBI completes with nothing to drop.
                    if let Ok(request) = InvalidateRequest::new(
                        vcpu.vncr.vttbr(),
                        vcpu.vncr.vtcr(),
                        nested.service.l1_vmid_width(),
                        tlbi,
                        xt,
                    ) {
                        // A whole VMID's (or every VMID's) stage-1 entries
                        // include those of its L2s run with stage 2 off.
                        if matches!(tlbi.op, TlbiOp::Vmalls12e1 | TlbiOp::Alle1) {
                            flush_direct_vmids();
                        }
                        match call(
                            nested,
                            vcpu.id,
                            &mut vcpu.client,
                            &mut vcpu.worker,
                            Request::Invalidate(request),
                        ) {
                            Ok(Reply::InvalidateAck(_)) => {}
                            Ok(Reply::Error(_)) => {
                                crash(vcpu, frame, "the service refused L1's TLBI")
                            }
                            Ok(_) => crash(
                                vcpu,
                                frame,
                                "the service answered L1's TLBI with something else",
                            ),
                            Err(why) => crash(vcpu, frame, why),
                        }
                    }
                }
            }
            // FEAT_TLBIW's VMALLWS2E1 forms (CRm 2/5/6, op2 2): hidden.
            None if access.op2 == 2 && matches!(access.crm, 2 | 5 | 6) => {
                return undefined_for_l1(vcpu, frame)
            }
            // L1's own EL2 stage-1 TLBIs (ALLE2, VAE2, ...): L1's virtual
            // EL2 regime is the hardware EL1&0 one of L1's VMID, current in
            // VTTBR_EL2 here; dropping all of it over-invalidates, which is
            // permitted.
            None if !el2_stage1_tlbi_form(access.crm, access.op2)
                || !stage1_tlbi_form_shown(access.crn, access.crm, f) =>
            {
                return undefined_for_l1(vcpu, frame)
            }
            // `mmu-no-el2-tlbi`: acknowledged, not applied.
            None if nested.skip_l1_own_tlbi => {}
            None => {
                // SAFETY: drops this VMID's (L1's) stage-1 entries.
                unsafe {
                    core::arch::asm!("dsb ishst", "tlbi vmalle1is", "dsb ish", options(nostack))
                };
            }
        },
        0 => {
            if !stage1_tlbi_form_shown(access.crn, access.crm, f) {
                return undefined_for_l1(vcpu, frame);
            }
            vcpu.counts.stage1_tlbis += 1;
            if stage1_tlbi_target(vcpu.vncr.hcr()) == Stage1TlbiTarget::L1Own {
                // L1's own EL2&0 regime: its VMID is the one in
                // VTTBR_EL2 now (L1 is running); all of it covers the form.
                // SAFETY: drops this VMID's (L1's) stage-1 entries,
                // completed in the Inner Shareable domain.
                unsafe {
                    core::arch::asm!("dsb ishst", "tlbi vmalle1is", "dsb ish", options(nostack))
                };
                frame.elr += instruction_length(read_sysreg!("esr_el2"));
                return;
            }
            let worker = vcpu_worker(nested, &mut vcpu.worker);
            // VMALLE1IS of each shadow VMID covers whatever L1's form
            // covered (a superset: permitted).
            // And L2's entries while L1's stage 2 is off.
            flush_direct_vmids();
            nested.service.for_each_shadow_vmid(worker, vmid, |shadow| {
                with_vmid(shadow, || {
                    // SAFETY: drops the shadow VMID's stage-1 and combined
                    // entries, completed in the Inner Shareable domain.
                    unsafe {
                        core::arch::asm!("dsb ishst", "tlbi vmalle1is", "dsb ish", options(nostack))
                    };
                })
            });
        }
        _ => return undefined_for_l1(vcpu, frame),
    }
    frame.elr += instruction_length(read_sysreg!("esr_el2"));
}

/// After an answer, before L2 can run on it: a descriptor store is visible
/// to translation table walks (another PE's, or this one's after the ERET,
/// which is context synchronizing) only after a DSB (review 22 F4).
fn publish_answer() {
    // SAFETY: a barrier; it touches no memory.
    unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) };
}

/// One request to the service: over the rings to the service CPU (every
/// wait bounded by [`TIMEOUT_MS`]), or inline on this CPU with the vCPU's
/// worker (`worker`: its `Vcpu::worker`).
fn call(
    nested: &Nested,
    id: VcpuId,
    client: &mut Option<VcpuClient<'static, WfeDoorbell>>,
    worker: &mut Option<VcpuWorker>,
    request: Request,
) -> Result<Reply, &'static str> {
    let Some(client) = client else {
        let reply = nested.service.reply(
            vcpu_worker(nested, worker),
            Envelope {
                vcpu: id,
                seq: 0,
                message: request,
            },
        );
        publish_answer();
        return Ok(reply);
    };
    let start = cpu::counter();
    let limit = read_sysreg!("cntfrq_el0") * TIMEOUT_MS / 1000;
    match client.call_within(&request, || cpu::counter().wrapping_sub(start) > limit) {
        Ok(reply) => Ok(reply),
        // The service's answer to a request it found malformed.
        Err(ClientError::Rejected(error)) => Ok(Reply::Error(error)),
        Err(ClientError::TimedOut) => Err("no reply from the service CPU within 5 s"),
        Err(ClientError::MalformedReply(_)) => Err("a reply that does not decode"),
        Err(ClientError::UnexpectedReply { .. } | ClientError::MisaddressedReply { .. }) => {
            Err("a reply that answers another request")
        }
        Err(ClientError::Outstanding) => Err("a request to the service is still outstanding"),
    }
}

/// The service CPU (from `secondary_main`): answers the vCPU's requests
/// for the rest of the run, waiting on the WFE doorbell when idle.
pub fn service_main() -> ! {
    let Some(nested) = NESTED.get() else {
        fail(format_args!(
            "nested: service CPU started before the service existed"
        ));
    };
    // A recycle here sends hv's kick SGI to a vCPU in the victim's L2
    // (ICC_SGI1R_EL1: the system register interface on, this CPU's
    // redistributor awake). It takes no interrupts itself (masked at EL2).
    write_sysreg!("s3_4_c12_c9_5", sysregs::ICC_SRE_EL2);
    cpu::isb();
    let Some(gic) = GIC.get() else {
        fail(format_args!(
            "nested: service CPU started before the GIC was set up"
        ));
    };
    if let Err(e) = gic.init_cpu(SERVICE_CPU) {
        fail(format_args!("nested: GIC on the service CPU: {e}"));
    }
    write_sysreg!("s3_4_c12_c11_0", 0); // ICH_HCR_EL2: no virtual interface
                                        // The EL1&0 TLBIs of the service's TLB maintenance act on VTTBR_EL2's
                                        // VMID with TGE and E2H clear; VTCR_EL2.VS as on the vCPU's CPU.
    write_sysreg!("hcr_el2", hcr::RW);
    write_sysreg!("vtcr_el2", nested.shadow_vtcr);
    cpu::isb();
    let worker = nested.service.worker();
    let endpoint = |index: usize| {
        let rings = &RINGS[index];
        match Endpoint::new(
            VcpuId(index as u32),
            rings.requests.ring(),
            rings.replies.ring(),
            &rings.reply_bell,
        ) {
            Ok(endpoint) => endpoint,
            Err(e) => fail(format_args!("nested: service rings of vCPU {index}: {e:?}")),
        }
    };
    let mut endpoints: [_; NESTED_VCPUS] = core::array::from_fn(endpoint);
    let mut poller = Poller::new(&mut endpoints, RING_SLOTS);
    poller.run(
        &SERVICE_BELL,
        |envelope| {
            if let Some(rings) = RINGS.get(envelope.vcpu.0 as usize) {
                rings.answered.fetch_add(1, Ordering::Relaxed);
            }
            let reply = nested.service.reply(&worker, envelope);
            // Before the poller stores the reply.
            publish_answer();
            reply
        },
        || true,
    );
    fail(format_args!("nested: the service loop ended"))
}

/// Starts CPU 1 (PSCI CPU_ON, hv's stage 1, its own stack) as the service.
fn start_service_cpu(platform: &Platform, ttbr: u64, tcr: u64) {
    SERVICE_CPU_STARTED.store(true, Ordering::Release);
    let record: &'static SecondaryBoot = Box::leak(Box::new(SecondaryBoot {
        stack_top: (&raw const STACKS) as u64 + ((SERVICE_CPU + 1) * STACK_SIZE) as u64,
        mair: MAIR_EL2,
        tcr,
        ttbr,
        sctlr: sysregs::SCTLR_EL2_MMU_ON,
        index: SERVICE_CPU as u64,
    }));
    // Read by CPU 1 before its MMU is on.
    cpu::clean_invalidate_dcache(
        record as *const SecondaryBoot as u64,
        core::mem::size_of::<SecondaryBoot>() as u64,
    );
    let entry = super::boot::hv_secondary_entry as *const () as u64;
    if let Err(e) = smccc::psci::cpu_on::<smccc::Smc>(
        platform.cpus[SERVICE_CPU],
        entry,
        record as *const SecondaryBoot as u64,
    ) {
        fail(format_args!(
            "nested: PSCI CPU_ON for the service CPU failed: {e:?}"
        ));
    }
}

/// An exit from L2.
/// `shadow`: L2's shadow context and the PAR_EL1 of [`l2_fault_par`],
/// taken before the exit store; None: L2 runs on L0's map of L1 (L1's
/// stage 2 off).
fn l2_exit(
    nested: &Nested,
    vcpu: &mut Vcpu,
    frame: &mut GuestFrame,
    esr: u64,
    shadow: Option<(ContextKey, Option<u64>)>,
) {
    let class = (esr >> 26) & EC_UNKNOWN_MASK;
    let far = read_sysreg!("far_el2");
    let hpfar = read_sysreg!("hpfar_el2");
    // L1's own EL0 under TGE (E2H = 0): every exception it takes is L1's
    // (the hardware's TGE brought it here, not a trap of hv's or of L1's
    // traps for L2) but the stage-2 faults of its accesses, and the size
    // check of its stage 1, which is off.
    if runs_el0_with_tge(vcpu.vncr.hcr()) {
        match tge_el0_exit(
            esr,
            far,
            read_sysreg!("tcr_el1"),
            nested.exposed.pa_max_bits(),
        ) {
            TgeEl0Exit::Stage2 => {}
            TgeEl0Exit::AddressSize(syndrome) => {
                vcpu.counts.injected += 1;
                return enter_l1_from_l2(nested, vcpu, frame, syndrome, far, hpfar);
            }
            TgeEl0Exit::ToL1 => {
                vcpu.counts.forwarded += 1;
                return enter_l1_from_l2(nested, vcpu, frame, esr, far, hpfar);
            }
        }
    }
    match (class, shadow) {
        // L1's stage 2 off, so the hardware's stage 2 is hv's map of L1:
        // a translation fault on L1's RAM while hv changes that map is
        // L0's own transient fault. L2 runs the instruction again until
        // hv's change is made; were it never made, the demo's watchdog
        // (the EL2 physical timer) ends the run with its line.
        (EC_DABT_LOWER | EC_IABT_LOWER, None) if nested.l0_map.mid_change_abort(esr, hpfar) => {
            vcpu.fault_rate.faults.hv_resumed += 1;
            mid_change::resumed(MidChangeResume::L2Stage2Off);
        }
        // Otherwise L0 maps all of L1's RAM with every access: L2's
        // access is outside L1's RAM.
        (EC_DABT_LOWER | EC_IABT_LOWER, None) => {
            once(Note::L2OutsideL1Ram);
            external_abort_for_l2(
                nested,
                vcpu,
                frame,
                external_abort_syndrome(esr),
                far,
                hpfar,
            );
        }
        (EC_DABT_LOWER | EC_IABT_LOWER, Some((key, par))) => {
            if at::defective_l2_walk_abort(nested, frame, esr) {
                return;
            }
            // HCR_EL2.DC (L2's, as L1 set it) and TGE (L1's own EL0 with
            // E2H = 0) make L2's stage 1 behave as off whatever
            // SCTLR_EL1.M says.
            let stage1_on = l2_stage1_on(read_sysreg!("sctlr_el1"), read_sysreg!("hcr_el2"));
            let access = abort_access(esr, frame.spsr);
            let l2_ipa = match (fault_ipa_source(esr, stage1_on), par) {
                (FaultIpaSource::Stage1Walk, Some(par)) => match ipa_from_par(par, far) {
                    Some(ipa) => ipa,
                    // L2's stage 1 changed since the fault: L2 runs
                    // again and faults afresh.
                    None => return,
                },
                // `l2_fault_par` takes the AT exactly when the IPA needs it.
                (FaultIpaSource::Stage1Walk, None) => crash(
                    vcpu,
                    frame,
                    "an L2 permission fault without its AT (hv's own failure)",
                ),
                (FaultIpaSource::Far | FaultIpaSource::Hpfar, _) => {
                    l2_fault_ipa(far, hpfar, stage1_on)
                }
            };
            let request = TranslateRequest {
                context: key,
                l2_ipa,
                access,
                esr: esr as u32,
                far,
            };
            if request.validate().is_err() {
                // Not a stage-2 fault of the shadow the service resolves
                // (an external abort on a walk, a TLB conflict abort...):
                // an exception to EL2 from L2, so L1's, as it came.
                vcpu.counts.forwarded += 1;
                return enter_l1_from_l2(nested, vcpu, frame, esr, far, hpfar);
            }
            vcpu.counts.translates += 1;
            let on_data_page =
                nested.demo.is_fault_rate() && fault_rate::pressure::on_data_page(l2_ipa);
            let reply = match call(
                nested,
                vcpu.id,
                &mut vcpu.client,
                &mut vcpu.worker,
                Request::Translate(request),
            ) {
                Ok(reply) => reply,
                // The service CPU failed: hv's own failure, not the guest's.
                Err(why) => crash(vcpu, frame, why),
            };
            if nested.fault_rate_pressure.is_some() {
                let now = fault_rate_occupancy(nested, vcpu);
                vcpu.fault_rate.peak = vcpu.fault_rate.peak.max(&now);
            }
            let retry = match reply {
                Reply::Translate(TranslateOutcome::Retry(reason)) => Some(reason),
                _ => None,
            };
            vcpu.fault_rate.faults.count(on_data_page, retry);
            let data_page = on_data_page.then(|| (l2_ipa - fault_rate::DATA_IPA) >> 12);
            if nested.demo.is_fault_rate() && !nested.demo.is_fault_rate_smp() {
                FAULT_RATE_ORDER.fault(data_page, retry);
            }
            if nested.demo.is_fault_rate_smp() {
                if let Some(counters) = FAULT_RATE_SMP_VCPUS.get(vcpu.index) {
                    counters.fault(data_page, retry);
                }
                if let (Some(page), None) = (data_page, retry) {
                    FAULT_RATE_SMP_PAGES.record(page);
                }
            }
            if retry == Some(RetryReason::L0Changing) {
                mid_change::resumed(MidChangeResume::ServiceRetry);
            }
            match reply {
                Reply::Translate(TranslateOutcome::Mapped(_)) => {}
                // L2 runs the instruction again. `Retry(L0Changing)` (hv's
                // own break-before-make of L1's RAM) repeats until hv's
                // change is made; were it never made, the demo's watchdog
                // (the EL2 physical timer) ends the run with its line.
                // `mid-change-no-retry`'s defect: an abort for it.
                Reply::Translate(TranslateOutcome::Retry(RetryReason::L0Changing))
                    if nested.demo == NestedDemo::MidChangeNoRetry =>
                {
                    external_abort_for_l2(
                        nested,
                        vcpu,
                        frame,
                        external_abort_syndrome(esr),
                        far,
                        hpfar,
                    );
                }
                Reply::Translate(TranslateOutcome::Retry(_)) => {}

                // hv's own stage 2 of L1 denies the access: resuming L2
                // would fault again, forever.
                // The fault-rate dirty log's write protection is the one
                // denial hv resolves.
                Reply::Translate(TranslateOutcome::L0Denied(denial)) => {
                    if !fault_rate_log_dirty(nested, vcpu, &denial) {
                        l0_denied(nested, l2_ipa, &denial)
                    }
                }
                Reply::Translate(TranslateOutcome::Inject(injection)) => {
                    vcpu.counts.injected += 1;
                    if nested.demo.is_tlbi_race() {
                        tlbi_race::injected();
                    }
                    // The service merged the instruction syndrome of the
                    // request's ESR[31:0]; merged again with the full ESR
                    // the same fields stay and ISS2's (Xs, GCS) join.
                    let mut esr = walker::merge_trapped_syndrome(injection.esr, esr);
                    if nested.demo == NestedDemo::LinuxNoL2Syndrome {
                        esr = crate::esr::without_instruction_syndrome(esr);
                    }
                    enter_l1_from_l2(nested, vcpu, frame, esr, injection.far, injection.hpfar);
                }
                // Nothing behind the L1 IPA: delivered where L1's virtual
                // HCR_EL2.TEA says, L2's EL1 or L1 (ipc's ExternalAbort).
                Reply::Translate(TranslateOutcome::ExternalAbort(abort)) => {
                    vcpu.counts.injected += 1;
                    let i = abort.injection;
                    external_abort_for_l2(nested, vcpu, frame, i.esr, i.far, i.hpfar);
                }
                // Answers L1's tables or L2 can provoke (review 23 F4): the
                // architectural fault for L2's access, never an hv exit.
                Reply::Translate(TranslateOutcome::Emulate(_)) => {
                    once(Note::L2DeviceAccess);
                    external_abort_for_l2(
                        nested,
                        vcpu,
                        frame,
                        external_abort_syndrome(esr),
                        far,
                        hpfar,
                    );
                }
                Reply::Translate(TranslateOutcome::Unshadowable(why)) => {
                    if once(Note::Unshadowable) {
                        println!("hv: nested: ({why:?})");
                    }
                    external_abort_for_l2(
                        nested,
                        vcpu,
                        frame,
                        external_abort_syndrome(esr),
                        far,
                        hpfar,
                    );
                }
                Reply::Error(error) => {
                    if once(Note::ServiceRefused) {
                        println!("hv: nested: ({error:?})");
                    }
                    external_abort_for_l2(
                        nested,
                        vcpu,
                        frame,
                        external_abort_syndrome(esr),
                        far,
                        hpfar,
                    );
                }
                _ => crash(
                    vcpu,
                    frame,
                    "the service answered L2's fault with a reply of another request",
                ),
            }
        }
        // L2's ID register reads (TID3, always set for L2): what L1 is
        // shown, unless L1 traps them itself (review 23 F7).
        (EC_SYSREG, _) => {
            // TCR2_EL1, SCTLR2_EL1: trapped by hv's HCRX_EL2 for itself.
            if l2_trap_route(esr, &vcpu.traps) == L2TrapRoute::UndefinedForL2 {
                return traps::undefined_for_l2(nested, frame);
            }
            let access = SysRegAccess::from_iss(esr & 0x1ff_ffff);
            let (op0, op1, crn, crm, op2) =
                (access.op0, access.op1, access.crn, access.crm, access.op2);
            // An SGI write L1 did not trap (hv's own IMO/FMO for L2 made
            // it trap): completed here (review 33 R33-5), on L1's GIC
            // (`arch::nested_gic`; group 0's has no effect).
            let sgi = l2_sgi_write(
                (op0, op1, crn, crm, op2),
                access.read,
                vcpu.vncr.hcr(),
                vcpu.vncr.get(ICH_HCR_EL2),
            );
            if sgi == Some(L2SgiWrite::ToL1Gic) {
                sgi_write_to_l1_gic(nested, vcpu, frame, op2, frame.reg(access.rt));
                return;
            }
            let l1_hcr = if nested.demo == NestedDemo::LinuxNoL2Tid3 {
                vcpu.vncr.hcr() & !hcr::TID3
            } else {
                vcpu.vncr.hcr()
            };
            match l2_id_read(l1_hcr, access.read, op0, op1, crn, crm, op2) {
                L2IdRead::Answer(register) => {
                    let value = register.map_or(0, |r| nested.shown(r));
                    frame.set_reg(access.rt, value);
                    frame.elr += instruction_length(esr);
                }
                L2IdRead::ForwardToL1 => {
                    vcpu.counts.forwarded += 1;
                    enter_l1_from_l2(nested, vcpu, frame, esr, far, hpfar);
                }
            }
        }
        // An FP/SIMD, SVE, SME or CPACR_EL1 trap L1's CPTR_EL2 did not ask
        // for: hv sets none for itself, so only a divergence of hv's own
        // reaches this; still a guest-driven exit, so it ends L2's
        // instruction (UNDEFINED at L2's EL1, one line), never hv's run
        // (review 39 R39-6).
        _ if l2_trap_route(esr, &vcpu.traps) == L2TrapRoute::Unrequested => {
            once(Note::L2Unrequested);
            traps::undefined_for_l2(nested, frame)
        }
        // HVC, SMC and the traps L1 set in its HCR_EL2, CPTR_EL2 and
        // MDCR_EL2 (FP/SIMD, SVE, SME, PMU, debug): L1's.
        _ => {
            vcpu.counts.forwarded += 1;
            enter_l1_from_l2(nested, vcpu, frame, esr, far, hpfar);
        }
    }
}

/// Events a guest can repeat at will, each reported by hv once per run so
/// a hostile guest cannot flood the console (review 23 F7/F8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Note {
    L2DeviceAccess,
    Unshadowable,
    ServiceRefused,
    L1OutsideRam,
    L2OutsideL1Ram,
    NoShadow,
    L1Unhandled,
    L1Maintenance,
    L1Timer,
    L1Distributor,
    L2Unrequested,
    L1HostEl0,
    L1El0Tge,
    L1WfiWait,
    L1PpiActive,
    L1WfiWaitHypTimer,
    L1VectorTrapAtVel2,
}

impl Note {
    const fn line(self) -> &'static str {
        match self {
            Note::L2DeviceAccess => "hv: nested: L2 accessed an L1 IPA with nothing behind it (L0 emulates no device for this L1): L2 gets a synchronous external abort (reported once)",
            Note::Unshadowable => "hv: nested: the service cannot shadow an L2 access L1's tables allow: L2 gets a synchronous external abort (reported once)",
            Note::ServiceRefused => "hv: nested: the service refused an L2 fault: L2 gets a synchronous external abort (reported once)",
            Note::L2OutsideL1Ram => "hv: nested: L2 (L1's stage 2 off) accessed an IPA outside L1's RAM: L2 gets a synchronous external abort (reported once)",
            Note::L1OutsideRam => "hv: nested: L1 accessed an IPA outside its RAM (L0 maps nothing else for it): L1 gets a synchronous external abort (reported once)",
            Note::NoShadow => "hv: nested: the service has no shadow for L1's VTTBR_EL2/VTCR_EL2 now (over its budget): L1's ERET into L2 is retried (reported once)",
            Note::L1Unhandled => "hv: nested: L1 trapped on an instruction hv does not emulate: UNDEFINED for L1 (reported once)",
            Note::L1Maintenance => "hv: nested: L1's virtual GIC interface asserted its maintenance interrupt while L2 ran: IRQ to L1's virtual EL2 at VBAR_EL2 + 0x480 (reported once)",
            Note::L2Unrequested => "hv: nested: L2 took an FP/SIMD, SVE, SME or CPACR_EL1 trap L1's CPTR_EL2 did not ask for (hv's own divergence): UNDEFINED for L2 (reported once)",
            Note::L1Distributor => "hv: nested: an SGI or SPI of L1's GIC was pending for L1 while its vCPU ran L2: IRQ to L1's virtual EL2 at VBAR_EL2 + 0x480 (reported once)",
            Note::L1HostEl0 => "hv: nested: L1 ERETs to EL0 with its virtual HCR_EL2.{E2H, TGE} = {1, 1}: its own host userspace, run at hardware EL0 on its EL2&0 regime (reported once)",
            Note::L1El0Tge => "hv: nested: a non-VHE L1 ERETs to EL0 with its virtual HCR_EL2.TGE = 1 (E2H = 0): its EL0 runs in its EL1&0 regime (the VNCR page's registers) with the hardware's TGE (stage 1 off, its exceptions to L1's virtual EL2) (reported once)",
            Note::L1WfiWait => "hv: nested: L1's WFI with nothing pending in its own interface: hv waits at EL2 for its next interrupt, at most 1 ms (WFIT; reported once)",
            Note::L1PpiActive => "hv: nested: L1 set or cleared a PPI's active state at a redistributor (GICR_ISACTIVER0/ICACTIVER0): applied to the list register of that vCPU's own interface that holds the PPI, another vCPU's at its next exit (reported once)",
            Note::L1WfiWaitHypTimer => "hv: nested: L1's WFI with nothing pending in its own interface: hv waits at EL2 for its next interrupt, at most 1 ms (WFI bounded by hv's EL2 physical timer: no FEAT_WFxT; reported once)",
            Note::L1VectorTrapAtVel2 => "hv: nested: L1's ZCR_EL2 or SMCR_EL2 access trapped by its own CPTR_EL2 (TZ/ZEN, TSM/SMEN): an SVE or SME access exception (EC 0x19/0x1D) to its virtual EL2 (reported once)",
            Note::L1Timer => "hv: nested: a timer PPI of L1's (its EL2 timers' or L2's EL1 timers') asserted while L2 ran: IRQ to L1's virtual EL2 at VBAR_EL2 + 0x480 (reported once)",
        }
    }
}

/// Which [`Note`]s were printed (a bit each), by any vCPU.
static NOTES_SEEN: AtomicU32 = AtomicU32::new(0);

/// Prints `note`'s line the first time in the run; whether it was the
/// first.
fn once(note: Note) -> bool {
    let bit = 1 << note as u32;
    let first = NOTES_SEEN.fetch_or(bit, Ordering::Relaxed) & bit == 0;
    if first {
        println!("{}", note.line());
    }
    first
}

/// A synchronous external abort on L2's access (`lower_syndrome`: as
/// taken to EL2 from L2, EC 0x20/0x24, FSC 0x10): taken to L2's EL1 (its vector at VBAR_EL1, in the hardware registers
/// while L2 runs), or to L1 when L1 routes external aborts to itself
/// (virtual HCR_EL2.TEA), as AArch64.TakeException would.
fn external_abort_for_l2(
    nested: &Nested,
    vcpu: &mut Vcpu,
    frame: &mut GuestFrame,
    lower_syndrome: u64,
    far: u64,
    hpfar: u64,
) {
    mid_change::aborted();
    unexpected_for_l1(nested, vcpu);
    let fetch = (lower_syndrome >> 26) & EC_UNKNOWN_MASK == EC_IABT_LOWER;
    let write = !fetch && lower_syndrome & (1 << 6) != 0;
    let cache_maintenance = !fetch && lower_syndrome & (1 << 8) != 0;
    let pfr0_shown = nested.shown(IdRegister::Pfr0);
    if l1_routes_external_aborts(vcpu.vncr.hcr(), pfr0_shown) {
        vcpu.counts.forwarded += 1;
        return enter_l1_from_l2(nested, vcpu, frame, lower_syndrome, far, hpfar);
    }
    let syndrome = if fetch {
        external_instruction_abort_syndrome(frame.spsr)
    } else if cache_maintenance {
        external_cache_maintenance_abort_syndrome(frame.spsr)
    } else {
        external_data_abort_syndrome(frame.spsr, write)
    };
    // As AArch64.TakeException sets it for L2's EL1: EL1h, DAIF masked,
    // PAN set when SCTLR_EL1.SPAN is 0, TCO, SSBS, ALLINT, EXLOCK as the
    // features L2 was shown (no GCS) and its SCTLR says (review 24 N5: PAN
    // left clear let L2's handler touch user memory unprotected).
    super::inject_into_el1(frame, traps::el1_target(nested), syndrome, Some(far));
}

/// SMCCC_VERSION: not offered to L1 (hv_call answers NOT_SUPPORTED, as an
/// SMCCC 1.0 implementation does), so PSCI_FEATURES does not list it.
const SMCCC_VERSION: u32 = 0x8000_0000;

/// L1's PSCI call `function` (its x1..x3 the arguments), answered by
/// `crate::psci`'s state machine over L1's vCPUs ([`L1Psci`], [`L1_POWER`]).
fn psci_call(nested: &Nested, vcpu: &mut Vcpu, frame: &mut GuestFrame, function: u32) {
    if function == PSCI_FEATURES && frame.x[1] as u32 == SMCCC_VERSION {
        frame.x[0] = status::NOT_SUPPORTED as u64;
        return;
    }
    let args = [frame.x[1], frame.x[2], frame.x[3]];
    match psci::handle(function, args, vcpu.index, &L1_POWER, &L1Psci(nested)) {
        PsciOutcome::Return(value) => frame.x[0] = value,
        PsciOutcome::CpuOff => {
            if nested.demo == NestedDemo::RecycleNoOffState {
                // The defect: the vCPU stops, its state stays ON.
                L1_POWER.set_on(vcpu.index);
            }
            if !L1_POWER.others_up(vcpu.index, nested.vcpus) {
                // No vCPU is left to call SYSTEM_OFF or CPU_ON: the run
                // would wait for ever. It ends as L1's SYSTEM_OFF would.
                system_off(
                    nested,
                    vcpu,
                    "L1 turned its last running vCPU off (PSCI CPU_OFF), so nothing is left to run",
                );
            }
            // `guest_exit` powers the CPU down once the vCPU's lock is free.
            vcpu.off_requested = true;
        }
        PsciOutcome::SystemOff => system_off(nested, vcpu, "L1 called PSCI SYSTEM_OFF"),
        PsciOutcome::SystemReset => {
            println!(
                "hv: nested: L1 called PSCI SYSTEM_RESET; {}",
                summary(vcpu, nested)
            );
            exit(ExitStatus::GuestReset)
        }
    }
}

/// The run ends as a power-off (`what` says why), after hv's checks:
/// every recycle ran hv's side of the handshake, the recycle demos did
/// recycle, and with several vCPUs their recycles took every vCPU but 0
/// that L1 started out of a victim's L2 with hv's kick SGI, in its
/// current life (a restarted vCPU's earlier life does not count; the `timer`
/// L1's second vCPU runs one L2 of the same context: nothing is
/// recycled); one service worker per vCPU; the hash seed from RNDR.
fn system_off(nested: &Nested, vcpu: &Vcpu, what: &str) -> ! {
    let summary = summary(vcpu, nested);
    println!("hv: nested: {what}; {summary}");
    let must_recycle = nested.demo.is_recycle();
    let started: [bool; NESTED_VCPUS] =
        core::array::from_fn(|index| index == 0 || BOOT_RECORDS[index].is_completed());
    let kick_irqs: [u64; NESTED_VCPUS] = core::array::from_fn(|index| KICK_IRQS.this_life(index));
    let vcpus = started.iter().filter(|&&s| s).count() as u64;
    let several = must_recycle && vcpus > 1;
    if let Err(why) = summary.handshake_verdict(must_recycle, several) {
        println!("hv: nested: FAILED: {why}");
        exit(ExitStatus::Failure);
    }
    if several {
        if let Some(index) = unkicked_vcpu(&started, &kick_irqs) {
            println!("hv: nested: FAILED: recycling handshake: vCPU {index}, started by L1 and running L2 while contexts were recycled, never took hv's kick SGI in its current life (no recycle interrupted it in a victim's L2)");
            exit(ExitStatus::Failure);
        }
    }
    if let Err(why) = summary.workers_verdict(vcpus) {
        println!("hv: nested: FAILED: {why}");
        exit(ExitStatus::Failure);
    }
    if cpu::has_rng() && !SEED_FROM_RNDR.load(Ordering::Relaxed) {
        println!("hv: nested: FAILED: the service's hash seed is not from RNDR, though the CPU has FEAT_RNG");
        exit(ExitStatus::Failure);
    }
    exit(ExitStatus::GuestPoweredOff)
}

/// What `crate::psci` needs for L1's vCPUs: they are named by MPIDR
/// affinity (`nested::vcpus`), start in L1's RAM, and each runs on a
/// physical CPU of its own that the firmware powers on and off.
struct L1Psci<'a>(&'a Nested);

impl PsciHost for L1Psci<'_> {
    fn vcpu_index(&self, mpidr: u64) -> Option<usize> {
        vcpu_of_mpidr(mpidr, self.0.vcpus)
    }

    /// An instruction in L1's RAM (word aligned).
    fn entry_is_valid(&self, entry: u64) -> bool {
        (L1_BASE..L1_BASE + self.0.l1_ram_bytes).contains(&entry) && entry.is_multiple_of(4)
    }

    fn power_on(&self, vcpu: usize, entry: u64, context: u64) -> Result<(), i64> {
        let nested = self.0;
        let cpu = vcpu_cpu(vcpu);
        let Some(&mpidr) = nested.cpus.get(cpu) else {
            return Err(status::INTERNAL_FAILURE);
        };
        prepare_vcpu(vcpu)?;
        STARTS[vcpu].entry.store(entry, Ordering::Relaxed);
        STARTS[vcpu].context.store(context, Ordering::Relaxed);
        let record: &'static SecondaryBoot = BOOT_RECORDS[vcpu].call_once(|| {
            let record = Box::leak(Box::new(SecondaryBoot {
                stack_top: stack_top(cpu),
                mair: MAIR_EL2,
                tcr: nested.tcr,
                ttbr: nested.ttbr,
                sctlr: sysregs::SCTLR_EL2_MMU_ON,
                index: cpu as u64,
            }));
            // Read by the CPU before its MMU is on.
            cpu::clean_invalidate_dcache(
                &raw const *record as u64,
                core::mem::size_of::<SecondaryBoot>() as u64,
            );
            record
        });
        // The start slots and the vCPU before the CPU that reads them.
        cpu::dsb_ish();
        let hv_entry = super::boot::hv_secondary_entry as *const () as u64;
        // Called only for a CPU the firmware reported OFF (or never ran):
        // an error is passed on (`psci::cpu_on` makes a contradiction of
        // the firmware's own AFFINITY_INFO INTERNAL_FAILURE).
        smccc::psci::cpu_on::<smccc::Smc>(mpidr, hv_entry, &raw const *record as u64)
            .map_err(i64::from)
    }

    fn is_physically_off(&self, vcpu: usize) -> bool {
        self.0
            .cpus
            .get(vcpu_cpu(vcpu))
            .is_some_and(|&mpidr| super::firmware_reports_off(mpidr))
    }

    fn trusted_os(&self) -> FirmwareTrustedOs {
        l1_trusted_os(super::firmware_trusted_os(), &self.0.cpus, self.0.vcpus)
    }
}

/// The top of CPU `cpu`'s hv stack when it runs a vCPU L1 started.
fn stack_top(cpu: usize) -> u64 {
    (&raw const STACKS) as u64 + ((cpu + 1) * STACK_SIZE) as u64
}

/// vCPU `index`'s `Vcpu` for a start by L1's CPU_ON (its CPU is off, so
/// nothing else holds its lock): at its first start a VNCR page of its own
/// and its end of its ring pair; at a later one (after its CPU_OFF) a
/// fresh `Vcpu` on the same page, cleared (nothing of its earlier life
/// shows), the same client and service worker (one per vCPU), its counts
/// carried on but its kick SGIs counted afresh (`KickCounts::started`).
/// Err: a PSCI status for L1.
fn prepare_vcpu(index: usize) -> Result<(), i64> {
    let mut slot = VCPUS[index].lock();
    let restart = slot.is_some();
    let (vncr, client, worker, counts) = match slot.take() {
        Some(old) => {
            old.vncr.clear();
            (old.vncr, old.client, old.worker, old.counts)
        }
        None => {
            let client = vcpu_client(index).map_err(|_| status::INTERNAL_FAILURE)?;
            let vncr: &'static VncrPage = Box::leak(Box::default());
            let address = &raw const *vncr as u64;
            if stage1_pa(address) != Some(address) {
                return Err(status::INTERNAL_FAILURE);
            }
            (vncr, Some(client), None, Counts::default())
        }
    };
    // L2's EL1 registers at reset: MMU off.
    vncr.set_el1(El1Register::Sctlr, sysregs::SCTLR_EL1_MMU_OFF);
    // `recycle-no-id-reset`: a restart keeps the cleared page's 0s.
    if !(restart
        && NESTED
            .get()
            .is_some_and(|n| n.demo == NestedDemo::RecycleNoIdReset))
    {
        reset_virtual_ids(vncr, index as u64);
    }
    // Its kick count starts again (`unkicked_vcpu` checks this life's).
    KICK_IRQS.started(index);
    let mut vcpu = Vcpu::new(index, vncr, client);
    vcpu.worker = worker;
    vcpu.counts = counts;
    if index == 0 {
        vcpu.timers
            .set_watchdog(WATCHDOG_DEADLINE.load(Ordering::Relaxed));
    }
    *slot = Some(vcpu);
    Ok(())
}

/// Sends hv's secondary CPUs where the nested demo needs them (from
/// `secondary_main`): the service CPU to [`service_main`], a vCPU's CPU
/// (started by L1's CPU_ON) to [`vcpu_main`]; returns for any other CPU.
pub fn secondary(index: usize) {
    if index == SERVICE_CPU && SERVICE_CPU_STARTED.load(Ordering::Acquire) {
        service_main();
    }
    if let Some(nested) = NESTED.get() {
        if let Some(vcpu) = cpu_vcpu(index, nested.vcpus) {
            vcpu_main(nested, vcpu);
        }
    }
}

/// vCPU `index`'s CPU, started by L1's CPU_ON: EL2 as on the boot CPU (GIC
/// with hv's kick SGI, traps, its VNCR page, L1's regime), then L1 at
/// virtual EL2 at the entry its CPU_ON gave, x0 = its context id.
fn vcpu_main(nested: &Nested, index: usize) -> ! {
    let cpu = vcpu_cpu(index);
    let Some(gic) = GIC.get() else {
        fail(format_args!(
            "nested: vCPU {index} started before the GIC was set up"
        ));
    };
    let Some(vncr) = VCPUS[index]
        .lock()
        .as_ref()
        .map(|v| &raw const *v.vncr as u64)
    else {
        fail(format_args!(
            "nested: vCPU {index} started without its state"
        ));
    };
    write_sysreg!("s3_4_c12_c9_5", sysregs::ICC_SRE_EL2);
    cpu::isb();
    if let Err(e) = gic.init_cpu(cpu) {
        fail(format_args!("nested: GIC on vCPU {index}'s CPU {cpu}: {e}"));
    }
    enable_l1_maintenance(gic, cpu);
    super::configure_el2_traps(&nested.features);
    load_l1_ids(index as u64);
    if index == 0 {
        // The boot vCPU's CPU keeps the run's watchdog.
        arm_watchdog(WATCHDOG_DEADLINE.load(Ordering::Relaxed));
    } else {
        // CNTHP_CTL_EL2 resets UNKNOWN: only the boot CPU's watchdog fires.
        write_sysreg!("s3_4_c14_c2_1", 0);
    }
    super::nested_timer::start_on_this_cpu();
    super::nested_vgic::start_l1_interface();
    write_sysreg!("s3_4_c2_c2_0", vncr); // VNCR_EL2
    write_sysreg!("tpidr_el2", index as u64);
    write_sysreg!("vbar_el1", 0);
    mmu::load_l1_regime(nested, &NonVheRegime::RESET);
    traps::start_l1(nested);
    vector::start_l1(nested);
    enter_l1_regime(nested.mode.hardware_hcr(false));
    // SAFETY: drops this CPU's stale EL1&0 entries of every VMID, as on the
    // boot CPU (review 24 N4), and an earlier life's of this vCPU.
    unsafe { core::arch::asm!("tlbi alle1", "dsb nsh", "isb", options(nostack)) };
    let mut frame = GuestFrame {
        elr: STARTS[index].entry.load(Ordering::Relaxed),
        spsr: sysregs::GUEST_ENTRY_PSTATE,
        ..GuestFrame::ZERO
    };
    frame.x[0] = STARTS[index].context.load(Ordering::Relaxed);
    L1_POWER.set_on(index);
    // SAFETY: the frame is complete; the stack top is this CPU's (its
    // `SecondaryBoot` record's) and nothing on the current stack is needed
    // after the jump.
    unsafe { super::boot::hv_enter_guest(&frame, stack_top(cpu)) }
}

/// The hardware VPIDR_EL2 and VMPIDR_EL2 while L1 runs on vCPU `index`:
/// what its MIDR_EL1 and MPIDR_EL1 reads return (the host's MIDR, and
/// [`l1_mpidr`]).
fn load_l1_ids(index: u64) {
    write_sysreg!("vpidr_el2", read_sysreg!("midr_el1"));
    write_sysreg!("vmpidr_el2", l1_mpidr(index));
}

/// L1's VPIDR_EL2 and VMPIDR_EL2 (VNCR words) at reset, which the
/// architecture leaves UNKNOWN: the values L1's own MIDR_EL1 and MPIDR_EL1
/// read ([`load_l1_ids`]), so an L1 that never sets them shows its L2
/// what it sees itself.
fn reset_virtual_ids(vncr: &VncrPage, index: u64) {
    vncr.set(crate::nested::vncr::VPIDR_EL2, read_sysreg!("midr_el1"));
    vncr.set(crate::nested::vncr::VMPIDR_EL2, l1_mpidr(index));
}

/// The hardware VPIDR_EL2 and VMPIDR_EL2 for L2: L1's (its VNCR words'
/// fields, `nested::vncr::l2_midr`/`l2_mpidr`), which L2's MIDR_EL1 and
/// MPIDR_EL1 reads at its EL1 return; `demo-no-vpidr` keeps L1's own.
fn load_l2_ids(nested: &Nested, vcpu: &Vcpu) {
    if nested.demo == NestedDemo::DemoNoVpidr {
        return;
    }
    write_sysreg!(
        "vpidr_el2",
        l2_midr(vcpu.vncr.get(crate::nested::vncr::VPIDR_EL2))
    );
    write_sysreg!(
        "vmpidr_el2",
        l2_mpidr(vcpu.vncr.get(crate::nested::vncr::VMPIDR_EL2))
    );
}

/// The MPIDR_EL1 L1 reads on vCPU `index` (VMPIDR_EL2): affinity 0 =
/// `index`, what its PSCI CPU_ON names the vCPU by ([`L1Psci`]); the other
/// bits (RES1 bit 31, U, MT) as the hardware's.
fn l1_mpidr(index: u64) -> u64 {
    (read_sysreg!("mpidr_el1") & !MPIDR_AFFINITY) | index
}
