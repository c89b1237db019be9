//! `hv.selftest=shadow|shadow-no-tlbi|shadow-no-vmalle1|shadow-no-ipas2e1is|shadow-stuck`
//! on the machine: the scenario of `crate::shadow_selftest` with the service
//! on CPU 1, L2's first vCPU on the boot CPU and its second vCPU (the
//! concurrent reader, `crate::shadow_selftest::reader`) on CPU 2, both at
//! EL1 on the service's shadow stage 2 (same VMID, same root).
//!
//! - The arena is the top [`ARENA_BYTES`] of the largest piece of RAM a
//!   guest would get (not hv's image, not the firmware's), which hv's
//!   stage 1 maps identity, Normal write-back.
//! - The shadow frames come from hv's heap; `AT S1E2R` checks that each
//!   one's PA is its address ([`identity_frames`]).
//! - TLB maintenance is `super::shadow_tlb::HwTlb`, run by the
//!   service CPU. [`TlbDefect`] breaks it for the failure modes: `shadow-no-tlbi` skips all of it, `shadow-no-vmalle1`
//!   the VMALLE1IS after the IPAS2E1ISs; either run must then fail on the
//!   stale value L2 reads after L1's TLBI IPAS2E1IS (QEMU keeps the
//!   combined stage 1+2 translations an MMU-off L2 uses until a TLBI
//!   that covers them). `shadow-no-ipas2e1is` leaves out the IPAS2E1ISs
//!   and keeps VMALLE1IS: the run must fail where L2, with its own stage
//!   1, walks its table after L1 remapped the table's page.
//! - `shadow-stuck` enters L2 at the payload's `b .`: the EL2 watchdog
//!   must end the run with the `Stuck` failure.
//! - L2 runs through [`hv_shadow_l2_run`]: hv's callee-saved registers and
//!   stack pointer are saved, L2 entered with ERET; its exit comes through
//!   hv's vectors to `guest_exit`, which hands it to [`leave_l2`], which
//!   copies L2's registers back and returns from `hv_shadow_l2_run`
//!   with the vector kind (a vCPU loop that returns to its caller, which
//!   the guest path does not need).

use super::gic::Gic;
use super::selftest::{start_service_cpu, GenericTimer};
use super::shadow_tlb::{stage1_pa, HwTlbs, TlbDefect};
use super::{cpu, exit, fail, phase, ExitStatus, GuestFrame};
use crate::ipc_selftest::Clock;
use crate::platform::{Platform, Region, SelfTest};
use crate::println;
use crate::shadow_selftest::backend::{identity_frames, SelftestBackend};
use crate::shadow_selftest::lab::{Lab, ARENA_ALIGN, ARENA_BYTES, CODE_L1, CODE_L2};
use crate::shadow_selftest::memory::{Arena, L0Stage2, L1Memory};
use crate::shadow_selftest::{
    context_key, run_reader, run_scenario, serve, service_config, Host, L2Cpu, L2Exit, L2Regs,
    NoStage1, ServiceSummary, ShadowExchange, Stage1Regs, WithStage1,
};
use crate::sysregs;
use alloc::boxed::Box;
use core::arch::global_asm;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use cpu::{read_sysreg, write_sysreg};
use ipc::{VmidWidth, WfeDoorbell};
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::Service;
use shadow_mmu::shadow_table::{shadow_vtcr, HeapFramePool};

/// Every wait for the service is bounded by this.
const TIMEOUT_MS: u64 = 5000;
/// HCR_EL2: RW (EL1 is AArch64), DC (EL1's MMU-off accesses are Normal
/// write-back, coherent with hv's cacheable view of the arena), IMO
/// (physical IRQs go to EL2: the watchdog's ends a run of L2 that never
/// exits), VM (stage 2 on). Everything else 0: TGE and E2H clear, so the
/// EL1&0 TLBIs act on the VMID in VTTBR_EL2.
const HCR_SHADOW: u64 = (1 << 31) | (1 << 12) | (1 << 4) | 1;
/// CNTHP_CTL_EL2.ENABLE (IMASK clear).
const TIMER_ENABLE: u64 = 1;

type HvService =
    Service<L1Memory<'static>, &'static L0Stage2<'static>, SelftestBackend<HeapFramePool, HwTlbs>>;

static EXCHANGE: ShadowExchange<WfeDoorbell> =
    ShadowExchange::new(WfeDoorbell, WfeDoorbell, WfeDoorbell);
static SERVICE: spin::Once<&'static HvService> = spin::Once::new();
/// The CPU that runs the second vCPU (the concurrent reader).
const READER_CPU: usize = 2;
/// What the reader CPU needs, set before it starts.
static READER: spin::Once<ReaderStart> = spin::Once::new();
/// The shadow stage-2's VTCR_EL2, for every CPU (VS must agree).
static SHADOW_VTCR: AtomicU64 = AtomicU64::new(0);

/// What the reader CPU needs to run the second vCPU.
struct ReaderStart {
    /// Its MPIDR (affinity bits), by which `service_main` knows it.
    mpidr: u64,
    gic: Gic,
    vttbr: u64,
    key: ipc::ContextKey,
    timeout: u64,
}

/// The CPUs that run L2 in this self-test, each its own lane: the boot
/// CPU (lane 0) and the reader CPU (lane 1).
const LANES: usize = 2;
/// Each lane's MPIDR affinity bits (set before it first runs L2).
static LANE_MPIDR: [AtomicU64; LANES] = [const { AtomicU64::new(u64::MAX) }; LANES];
/// Per lane: set while that CPU runs L2, so its exits belong to
/// [`leave_l2`] (another CPU's exit never reads this CPU's flag).
static IN_L2: [AtomicBool; LANES] = [const { AtomicBool::new(false) }; LANES];

/// hv's callee-saved registers (x19-x30), stack pointer and L2's frame
/// while L2 runs on one lane.
#[repr(C)]
struct SavedHost(UnsafeCell<[u64; 14]>);

// SAFETY: each lane's is touched only by that lane's CPU, in
// `HardwareL2::run` and the exit it takes.
unsafe impl Sync for SavedHost {}

static SAVED: [SavedHost; LANES] = [const { SavedHost(UnsafeCell::new([0; 14])) }; LANES];

/// MPIDR_EL1's affinity fields (Aff3, Aff2, Aff1, Aff0).
const MPIDR_AFFINITY: u64 = 0xff_00ff_ffff;

/// This CPU's lane, if it runs L2 in this self-test.
fn this_lane() -> Option<usize> {
    let mpidr = read_sysreg!("mpidr_el1") & MPIDR_AFFINITY;
    LANE_MPIDR
        .iter()
        .position(|m| m.load(Ordering::Acquire) == mpidr)
}

global_asm!(
    r#"
// hv_shadow_l2_run(frame: *mut GuestFrame, saved: *mut [u64; 14]) -> u64
// Saves x19-x30 and sp, enters L2 with the frame's registers, ELR and SPSR.
// Returns (through hv_shadow_l2_return) with the exit's vector kind.
.global hv_shadow_l2_run
hv_shadow_l2_run:
    stp     x19, x20, [x1, #0]
    stp     x21, x22, [x1, #16]
    stp     x23, x24, [x1, #32]
    stp     x25, x26, [x1, #48]
    stp     x27, x28, [x1, #64]
    stp     x29, x30, [x1, #80]
    mov     x2, sp
    stp     x2, x0, [x1, #96]
    ldr     x2, [x0, #248]
    msr     elr_el2, x2
    ldr     x2, [x0, #256]
    msr     spsr_el2, x2
    ldr     x30, [x0, #240]
    ldp     x28, x29, [x0, #224]
    ldp     x26, x27, [x0, #208]
    ldp     x24, x25, [x0, #192]
    ldp     x22, x23, [x0, #176]
    ldp     x20, x21, [x0, #160]
    ldp     x18, x19, [x0, #144]
    ldp     x16, x17, [x0, #128]
    ldp     x14, x15, [x0, #112]
    ldp     x12, x13, [x0, #96]
    ldp     x10, x11, [x0, #80]
    ldp     x8, x9, [x0, #64]
    ldp     x6, x7, [x0, #48]
    ldp     x4, x5, [x0, #32]
    ldp     x2, x3, [x0, #16]
    ldp     x0, x1, [x0, #0]
    eret

// hv_shadow_l2_return(exit: *const GuestFrame, kind: u64, saved: *const [u64; 14]) -> !
// Copies the exit frame (on the exception stack, below the saved sp) to
// the run's frame, restores hv's registers and returns kind from
// hv_shadow_l2_run.
.global hv_shadow_l2_return
hv_shadow_l2_return:
    ldr     x3, [x2, #104]
    mov     x4, #0
1:  ldr     x5, [x0, x4]
    str     x5, [x3, x4]
    add     x4, x4, #8
    cmp     x4, #{frame_size}
    b.lo    1b
    ldp     x19, x20, [x2, #0]
    ldp     x21, x22, [x2, #16]
    ldp     x23, x24, [x2, #32]
    ldp     x25, x26, [x2, #48]
    ldp     x27, x28, [x2, #64]
    ldp     x29, x30, [x2, #80]
    ldr     x4, [x2, #96]
    mov     sp, x4
    mov     x0, x1
    ret
"#,
    frame_size = const core::mem::size_of::<GuestFrame>(),
);

unsafe extern "C" {
    fn hv_shadow_l2_run(frame: *mut GuestFrame, saved: *mut [u64; 14]) -> u64;
    fn hv_shadow_l2_return(exit: *const GuestFrame, kind: u64, saved: *const [u64; 14]) -> !;
}

const _: () = assert!(core::mem::offset_of!(GuestFrame, elr) == 248);
const _: () = assert!(core::mem::offset_of!(GuestFrame, spsr) == 256);

/// Whether this CPU is running L2 for this self-test (`guest_exit` then
/// hands the exit to [`leave_l2`]).
pub fn in_l2() -> bool {
    this_lane().is_some_and(|lane| IN_L2[lane].load(Ordering::Relaxed))
}

/// An exit from L2: back to the `hv_shadow_l2_run` that entered it.
pub fn leave_l2(frame: &GuestFrame, kind: u64) -> ! {
    let Some(lane) = this_lane() else {
        fail(format_args!(
            "selftest shadow: an L2 exit on a CPU that runs no L2"
        ));
    };
    // SAFETY: `in_l2()` said `hv_shadow_l2_run` entered L2 on this CPU
    // (this lane) and saved its registers in SAVED[lane]; `frame` is the
    // exit frame the vectors built below that run's stack pointer, which
    // the copy and the return leave behind.
    unsafe { hv_shadow_l2_return(frame, kind, SAVED[lane].0.get()) }
}

/// L2 on this CPU (EL2 set up by [`enter_l2_setup`]), lane `lane`. Every
/// run is bounded: the EL2 physical timer (CNTHP) fires after `watchdog`
/// counts, and its PPI, routed to EL2, takes L2 out (an exit with vector
/// 1).
struct HardwareL2 {
    watchdog: u64,
    lane: usize,
}

/// SCTLR_EL1.M, C and I: L2's MMU and caches on.
const SCTLR_EL1_M_C_I: u64 = 1 | (1 << 2) | (1 << 12);
/// HCR_EL2.DC: with it set EL1 behaves as if its MMU were off.
const HCR_DC: u64 = 1 << 12;

impl L2Cpu for HardwareL2 {
    fn run(&mut self, regs: &mut L2Regs) -> L2Exit {
        let mut frame = GuestFrame::ZERO;
        frame.x[..4].copy_from_slice(&regs.x);
        frame.elr = regs.pc;
        frame.spsr = sysregs::GUEST_ENTRY_PSTATE;
        // CNTHP_CVAL_EL2 (64 bits: TVAL's 32 bits hold under 2.2 s of a
        // 1 GHz counter).
        write_sysreg!("s3_4_c14_c2_2", cpu::counter().wrapping_add(self.watchdog));
        write_sysreg!("s3_4_c14_c2_1", TIMER_ENABLE); // CNTHP_CTL_EL2
        cpu::isb();
        IN_L2[self.lane].store(true, Ordering::Relaxed);
        // SAFETY: EL2 is set up for L2 (stage 2 = the shadow, EL1 MMU off,
        // PSTATE EL1h with interrupts masked); the only way back is an
        // exception to EL2, which `guest_exit` gives to `leave_l2`, which
        // restores the registers saved here (this CPU's lane) and returns
        // the vector kind. `frame` lives across the call and is written by
        // it.
        let vector = unsafe { hv_shadow_l2_run(&mut frame, SAVED[self.lane].0.get()) };
        IN_L2[self.lane].store(false, Ordering::Relaxed);
        // Off (its level-sensitive PPI drops) until the next run.
        write_sysreg!("s3_4_c14_c2_1", 0);
        cpu::isb();
        regs.x.copy_from_slice(&frame.x[..4]);
        regs.pc = frame.elr;
        // (The exit's syndrome is read below, before anything else can
        // take an exception to EL2 on this CPU.)
        L2Exit {
            vector,
            esr: read_sysreg!("esr_el2"),
            far: read_sysreg!("far_el2"),
            hpfar: read_sysreg!("hpfar_el2"),
        }
    }

    /// Written once here, not before every run: QEMU flushes this PE's
    /// whole TLB on a TCR_EL1 write, which would hide a missing TLBI.
    fn set_stage1(&mut self, stage1: Option<Stage1Regs>) -> Result<(), NoStage1> {
        match stage1 {
            Some(s1) => {
                write_sysreg!("ttbr0_el1", s1.ttbr0);
                write_sysreg!("tcr_el1", s1.tcr);
                write_sysreg!("mair_el1", s1.mair);
                write_sysreg!("hcr_el2", HCR_SHADOW & !HCR_DC);
                write_sysreg!("sctlr_el1", sysregs::SCTLR_EL1_MMU_OFF | SCTLR_EL1_M_C_I);
            }
            None => {
                write_sysreg!("hcr_el2", HCR_SHADOW);
                write_sysreg!("sctlr_el1", sysregs::SCTLR_EL1_MMU_OFF);
            }
        }
        cpu::isb();
        Ok(())
    }
}

/// An arena of `bytes` (`align`-aligned): the top of the largest piece of
/// RAM a guest would get, clear of hv's image, the initrd and the device
/// tree (this self-test's and the nested demo's memory).
pub(super) fn arena_region(
    platform: &Platform,
    device_tree: Region,
    bytes: u64,
    align: u64,
) -> Option<Region> {
    let start = super::align_down(&raw const super::boot::__image_start as u64, 2 << 20);
    let end = super::align_up(&raw const super::boot::__image_end as u64, 2 << 20);
    let image = Region {
        base: start,
        size: end - start,
    };
    let pieces = platform.guest_memory(image).ok()?;
    let largest = pieces.iter().max_by_key(|r| r.size)?;
    let base = super::align_down(largest.end().checked_sub(bytes)?, align);
    let region = Region { base, size: bytes };
    let clear_of_initrd = platform.initrd.is_none_or(|r| !r.overlaps(&region));
    (base >= largest.base && clear_of_initrd && !device_tree.overlaps(&region)).then_some(region)
}

/// L2 that starts every access at the payload's `b .` (`shadow-stuck`):
/// it never exits by itself.
struct StuckL2(HardwareL2);

impl L2Cpu for StuckL2 {
    fn run(&mut self, regs: &mut L2Regs) -> L2Exit {
        if regs.pc == CODE_L2 {
            regs.pc = CODE_L2 + 28;
        }
        self.0.run(regs)
    }
    fn set_stage1(&mut self, stage1: Option<Stage1Regs>) -> Result<(), NoStage1> {
        self.0.set_stage1(stage1)
    }
}

/// The test's name in its verdict line and what its TLB maintenance
/// leaves out.
fn variant(test: SelfTest) -> (&'static str, TlbDefect) {
    match test {
        SelfTest::ShadowNoTlbi => ("shadow-no-tlbi", TlbDefect::NoTlbi),
        SelfTest::ShadowNoVmalle1 => ("shadow-no-vmalle1", TlbDefect::NoVmalle1),
        SelfTest::ShadowStuck => ("shadow-stuck", TlbDefect::None),
        SelfTest::ShadowNoIpas2e1is => ("shadow-no-ipas2e1is", TlbDefect::NoIpas2e1is),
        _ => ("shadow", TlbDefect::None),
    }
}

/// The boot CPU: builds the lab and the service, starts the service CPU
/// and the reader CPU, runs the scenario as L2's first vCPU, ends the run
/// with the verdict.
pub fn run(platform: &Platform, test: SelfTest, ttbr: u64, tcr: u64, device_tree: Region) -> ! {
    let (name, defect) = variant(test);
    let clock = GenericTimer;
    if platform.cpus.len() <= READER_CPU {
        fail(format_args!(
            "selftest {name} needs 3 CPUs (L2's first vCPU, the service, L2's second vCPU on the same shadow); the device tree has {}",
            platform.cpus.len()
        ));
    }
    if read_sysreg!("cntfrq_el0") == 0 {
        fail(format_args!(
            "selftest {name}: CNTFRQ_EL0 is 0, so no wait could be bounded"
        ));
    }
    let Some(region) = arena_region(platform, device_tree, ARENA_BYTES, ARENA_ALIGN) else {
        fail(format_args!(
            "selftest {name}: no {} MiB at the top of RAM clear of hv, the firmware's reservations, the initrd and the device tree",
            ARENA_BYTES >> 20
        ));
    };
    // The arena is hv's to use as memory only if hv's stage 1 maps it at
    // its PA: checked at its first and last page (the identity map covers
    // RAM in blocks, so these two stand for the range between).
    let last = region.base + ARENA_BYTES - 4096;
    for page in [region.base, last] {
        if stage1_pa(page) != Some(page) {
            fail(format_args!(
                "selftest {name}: hv's stage 1 does not map the arena's page {page:#x} at its PA (it gives {:x?})",
                stage1_pa(page)
            ));
        }
    }
    // SAFETY: the region is RAM hv's stage 1 maps read/write (identity,
    // Normal write-back: its first and last page checked above), outside
    // hv's image, the firmware's reservations, the initrd and the device
    // tree; nothing else of hv uses it (no guest runs). AtomicU64 has the
    // size and alignment of the u64 words it is made of.
    let words = unsafe {
        core::slice::from_raw_parts(region.base as *const AtomicU64, (ARENA_BYTES / 8) as usize)
    };
    let arena: &'static Arena<'static> = match Arena::new(words, region.base) {
        Ok(arena) => Box::leak(Box::new(arena)),
        Err(e) => fail(format_args!("selftest {name}: arena {e:?}")),
    };
    let lab: &'static Lab<'static> = match Lab::build(arena) {
        Ok(lab) => Box::leak(Box::new(lab)),
        Err(e) => fail(format_args!("selftest {name}: building L1: {e}")),
    };
    // The payload hv wrote is fetched by L2 (Normal Write-Back with
    // HCR_EL2.DC = 1): cleaned to the point of coherency and the
    // instruction caches invalidated, as for any code written as data.
    if let Some(code) = lab.l0_map().pa_of(CODE_L1) {
        cpu::clean_invalidate_dcache(code, 4096);
    }
    cpu::invalidate_icache();

    let mmfr0 = read_sysreg!("id_aa64mmfr0_el1");
    let ps = (mmfr0 & 0xf).min(0b101);
    let pa_bits = crate::pagetable::pa_range_bits(ps).map_or(48, u32::from);
    let Some(vtcr) = shadow_vtcr(ps as u8, false) else {
        fail(format_args!(
            "selftest {name}: ID_AA64MMFR0_EL1.PARange {ps:#06b} is reserved"
        ));
    };
    let host = Host {
        // VTCR_EL2.VS = 0 on both CPUs.
        vmids: VmidWidth::Bits8,
        xnx: (read_sysreg!("id_aa64mmfr1_el1") >> 28) & 0xf != 0,
        pa_bits,
    };
    let config = match service_config(&host, cpu::counter()) {
        Ok(config) => config,
        Err(e) => fail(format_args!("selftest {name}: budget: {e:?}")),
    };
    let pool = match identity_frames(config.budget.frames, stage1_pa) {
        Ok(pool) => pool,
        Err(e) => fail(format_args!("selftest {name}: {e}")),
    };
    let backend = SelftestBackend::new(pool, HwTlbs::new(defect), host.shadow_config());
    let service: &'static HvService =
        match Service::new(config, lab.l1_memory(), lab.l0_map(), backend) {
            Ok(service) => Box::leak(Box::new(service)),
            Err(e) => fail(format_args!("selftest {name}: service: {e}")),
        };
    SERVICE.call_once(|| service);
    SHADOW_VTCR.store(vtcr, Ordering::Relaxed);

    // L1's context for L2 (created now, before the service CPU runs:
    // nothing of it needs TLB maintenance yet).
    let worker = service.worker();
    let key = ContextKey::from_ipc(&context_key(lab), service.l1_vmid_width());
    let Some((vmid, root)) = service.shadow_root(&worker, &key) else {
        fail(format_args!(
            "selftest {name}: no shadow root for L1's context"
        ));
    };
    drop(worker);
    let vttbr = u64::from(vmid) << 48 | root;
    let timeout = clock.frequency() * TIMEOUT_MS / 1000;
    let gic = watchdog_setup(platform, name);
    LANE_MPIDR[0].store(
        read_sysreg!("mpidr_el1") & MPIDR_AFFINITY,
        Ordering::Release,
    );
    READER.call_once(|| ReaderStart {
        mpidr: platform.cpus[READER_CPU] & MPIDR_AFFINITY,
        gic,
        vttbr,
        key: context_key(lab),
        timeout,
    });
    LANE_MPIDR[1].store(
        platform.cpus[READER_CPU] & MPIDR_AFFINITY,
        Ordering::Release,
    );
    start_service_cpu(platform, 1, ttbr, tcr, name);
    start_service_cpu(platform, READER_CPU, ttbr, tcr, name);
    phase(format_args!(
        "selftest {name}: arena {:#x}+{} MiB, service on cpu 1 ({} shadow frames), L2 on shadow VMID {vmid} root {root:#x} on cpus 0 and {READER_CPU}{}",
        region.base,
        ARENA_BYTES >> 20,
        config.budget.frames,
        match test {
            SelfTest::ShadowNoTlbi => ", TLB maintenance skipped: this run must fail",
            SelfTest::ShadowNoVmalle1 => ", no TLBI VMALLE1IS after IPAS2E1IS: this run must fail",
            SelfTest::ShadowStuck => ", L2 entered at its `b .`: this run must fail",
            SelfTest::ShadowNoIpas2e1is => ", no TLBI IPAS2E1IS: this run must fail",
            _ => "",
        }
    ));
    enter_l2_setup(vtcr, vttbr);
    let started = clock.now();
    let l2 = HardwareL2 {
        watchdog: timeout,
        lane: 0,
    };
    let result = if test == SelfTest::ShadowStuck {
        run_scenario(
            lab,
            &mut StuckL2(l2),
            &EXCHANGE,
            &clock,
            timeout,
            WithStage1::Yes,
        )
    } else {
        let mut l2 = l2;
        run_scenario(lab, &mut l2, &EXCHANGE, &clock, timeout, WithStage1::Yes)
    };
    let micros = clock.now().wrapping_sub(started).saturating_mul(1_000_000) / clock.frequency();
    let stats = service.stats();
    match result {
        // hv does not implement the recycling handshake (shadow-mmu's
        // README, "Contract with hv: recycling"): with one context and one
        // key nothing may be recycled.
        Ok(_) if stats.recycled_contexts != 0 => {
            println!(
                "hv: selftest {name}: FAILED: {} context recycles, with one context for one key (hv has no recycling handshake)",
                stats.recycled_contexts
            );
            exit(ExitStatus::Failure)
        }
        Ok(report) => {
            println!(
                "hv: selftest {name}: PASS: {report}; {}; {micros} us",
                ServiceSummary(stats)
            );
            exit(ExitStatus::SELF_TEST_PASSED)
        }
        Err(failure) => {
            println!("hv: selftest {name}: FAILED: {failure}");
            exit(ExitStatus::Failure)
        }
    }
}

/// The GIC delivers the EL2 physical timer's PPI to this (the boot) CPU:
/// `Gic::init_cpu` enables the PPI it is given as the vGIC's maintenance
/// interrupt, and no vGIC runs here, so the timer's takes that place.
/// Returns the GIC for the reader CPU's own [`watchdog_cpu`].
fn watchdog_setup(platform: &Platform, name: &str) -> Gic {
    let Some(index) = platform.cpu_index(read_sysreg!("mpidr_el1")) else {
        fail(format_args!(
            "selftest {name}: the boot CPU is not under /cpus"
        ));
    };
    let gic = match Gic::init(platform, platform.timer.hypervisor, None, true) {
        Ok(gic) => gic,
        Err(e) => fail(format_args!("selftest {name}: GIC: {e}")),
    };
    watchdog_cpu(&gic, index, name);
    gic
}

/// This CPU's redistributor delivers the EL2 physical timer's PPI (see
/// [`watchdog_setup`]); the timer is off until L2 runs.
fn watchdog_cpu(gic: &Gic, index: usize, name: &str) {
    write_sysreg!("s3_4_c12_c9_5", sysregs::ICC_SRE_EL2);
    cpu::isb();
    if let Err(e) = gic.init_cpu(index) {
        fail(format_args!("selftest {name}: GIC on cpu {index}: {e}"));
    }
    write_sysreg!("s3_4_c14_c2_1", 0); // CNTHP_CTL_EL2: off until L2 runs
    cpu::isb();
}

/// EL2 of the boot CPU set for L2: the shadow stage 2, EL1 AArch64 with
/// its MMU off, this VMID's old TLB entries gone.
fn enter_l2_setup(vtcr: u64, vttbr: u64) {
    write_sysreg!("hcr_el2", HCR_SHADOW);
    write_sysreg!("vtcr_el2", vtcr);
    write_sysreg!("vttbr_el2", vttbr);
    write_sysreg!("sctlr_el1", sysregs::SCTLR_EL1_MMU_OFF);
    // L2 never takes an exception at EL1; should it, its vector at 0 is
    // an address L1's table does not map, and that fault ends the run.
    write_sysreg!("vbar_el1", 0);
    cpu::isb();
    // SAFETY: drops this PE's stage 1+2 entries of the shadow VMID.
    unsafe { core::arch::asm!("tlbi vmalls12e1", "dsb nsh", "isb", options(nostack)) };
}

/// The reader CPU: L2's second vCPU on the same shadow (VMID and root),
/// until the boot CPU says stop; then it parks.
fn reader_main(start: &ReaderStart) -> ! {
    watchdog_cpu(&start.gic, READER_CPU, "shadow");
    enter_l2_setup(SHADOW_VTCR.load(Ordering::Relaxed), start.vttbr);
    let mut l2 = HardwareL2 {
        watchdog: start.timeout,
        lane: 1,
    };
    run_reader(&EXCHANGE, &mut l2, start.key, &GenericTimer, start.timeout);
    loop {
        // SAFETY: parks this CPU; it touches no memory.
        unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
    }
}

/// The service CPU or the reader CPU (from `selftest::service_main`).
pub fn service_main() -> ! {
    if let Some(start) = READER.get() {
        if read_sysreg!("mpidr_el1") & MPIDR_AFFINITY == start.mpidr {
            reader_main(start);
        }
    }
    // The TLBIs act on VTTBR_EL2's VMID with TGE and E2H clear; VS as on
    // the boot CPU.
    write_sysreg!("hcr_el2", 1 << 31);
    write_sysreg!("vtcr_el2", SHADOW_VTCR.load(Ordering::Relaxed));
    cpu::isb();
    let Some(service) = SERVICE.get() else {
        fail(format_args!(
            "selftest shadow: service CPU started before the service existed"
        ));
    };
    let publish = || {
        // SAFETY: a barrier: the descriptor stores of the answer complete
        // for every PE's table walks before the reply is stored.
        unsafe { core::arch::asm!("dsb ishst", options(nostack, preserves_flags)) }
    };
    if let Err(e) = serve(&EXCHANGE, *service, publish) {
        fail(format_args!("selftest shadow: service rings: {e:?}"));
    }
    loop {
        // SAFETY: parks this CPU; it touches no memory.
        unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
    }
}
