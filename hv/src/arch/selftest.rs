//! `hv.selftest=ipc|ipc-stall|ipc-sgi|ipc-sgi-lost`: the ipc exchange of
//! `crate::ipc_selftest` on two physical CPUs. The boot CPU is the client;
//! CPU 1 (started with PSCI CPU_ON) is the service, waiting on its doorbell
//! whenever its ring is empty. The run ends with one verdict line and the
//! exit status (0 pass, 1 fail).
//!
//! `ipc` and `ipc-stall` use the WFE/SEV doorbell (`ipc::WfeDoorbell`).
//! QEMU does not model the WFE event register (its WFE is a yield that
//! returns at once), so under QEMU that service in effect polls: the run
//! proves the ring protocol across two PEs but cannot detect a lost SEV
//! (see `crate::ipc_selftest`).
//!
//! `ipc-sgi` uses [`SgiDoorbell`]: ringing sends an SGI to the waiting PE
//! through ICC_SGI1R_EL1, and the waiter sleeps in WFI with IRQs masked at
//! PSTATE, the SGI's pending state being what arms the wait. QEMU's WFI
//! does halt until an interrupt is pending, so a lost wakeup leaves the
//! service asleep and the client's generic-timer timeout fails the run;
//! `ipc-sgi-lost` (a service bell that never sends the SGI) proves it does.

use super::gic::Gic;
use super::{cpu, exit, fail, phase, ExitStatus, SecondaryBoot, STACKS, STACK_SIZE};
use crate::ipc_selftest::{self, Clock, Exchange, ServiceMode, RECORDS};
use crate::pagetable::MAIR_EL2;
use crate::platform::{Platform, Region, SelfTest};
use crate::println;
use crate::sysregs;
use crate::vgic::{self, SPECIAL_INTIDS};
use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use cpu::{read_sysreg, write_sysreg};
use ipc::{Doorbell, WfeDoorbell};

/// The rings and bells, in hv's .data (some fields start non-zero:
/// `running`, `idle_mark`), normal cacheable memory shared by both CPUs
/// through the one stage-1 map.
static WFE_EXCHANGE: Exchange<WfeDoorbell> = Exchange::new(WfeDoorbell, WfeDoorbell);
/// The same with SGI doorbells (`ipc-sgi`).
static SGI_EXCHANGE: Exchange<SgiDoorbell> = Exchange::new(
    SgiDoorbell::new(Ringing::Sgi),
    SgiDoorbell::new(Ringing::Sgi),
);
/// `ipc-sgi-lost`: the service's bell never sends its SGI.
static LOST_SGI_EXCHANGE: Exchange<SgiDoorbell> = Exchange::new(
    SgiDoorbell::new(Ringing::WithoutSgi),
    SgiDoorbell::new(Ringing::Sgi),
);
/// Set before CPU 1 is started: `secondary_main` runs the service then.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The running test ([`test_code`]), set before CPU 1 is started.
static TEST: AtomicU8 = AtomicU8::new(0);
/// The GIC, set up by the boot CPU for the SGI tests before CPU 1 starts.
static GIC: spin::Once<Gic> = spin::Once::new();
/// The SGI the SGI doorbells raise: hv's kick SGI, which the GIC set-up
/// already enables at hv's priority, and which nothing else raises while
/// a self-test runs instead of a guest.
const DOORBELL_SGI: u32 = vgic::KICK_SGI;
/// HCR_EL2.IMO: physical IRQs target EL2, so a pending SGI is an IRQ for
/// this PE (masked by PSTATE.I, but a WFI wake-up event).
const HCR_IMO: u64 = 1 << 4;
/// The CPU that serves.
const SERVICE_CPU: usize = 1;
/// Requests a stalling service answers.
const STALL_AFTER: u64 = 1000;
/// Every wait of the client is bounded by this (generous: QEMU on a loaded
/// 2-core host has taken 3 s for the whole exchange).
const TIMEOUT_MS: u64 = 5000;
/// CNTHCTL_EL2.EVNTEN: the generic timer's event stream, which would wake
/// a WFE periodically and so hide a lost wakeup.
const CNTHCTL_EVNTEN: u64 = 1 << 2;

/// The generic timer's physical count as the self-tests' clock.
pub(super) struct GenericTimer;

impl Clock for GenericTimer {
    fn now(&self) -> u64 {
        cpu::counter()
    }
    fn frequency(&self) -> u64 {
        cpu::counter_frequency()
    }
}

/// Whether `secondary_main` should run the self-test's service.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Acquire)
}

fn test_code(test: SelfTest) -> u8 {
    match test {
        SelfTest::Ipc => 0,
        SelfTest::IpcStall => 1,
        SelfTest::IpcSgi => 2,
        SelfTest::IpcSgiLost => 3,
        SelfTest::Shadow => 4,
        SelfTest::ShadowNoTlbi => 5,
        SelfTest::ShadowNoVmalle1 => 6,
        SelfTest::ShadowStuck => 7,
        SelfTest::ShadowNoIpas2e1is => 8,
    }
}

fn test_from_code(code: u8) -> SelfTest {
    match code {
        0 => SelfTest::Ipc,
        1 => SelfTest::IpcStall,
        2 => SelfTest::IpcSgi,
        3 => SelfTest::IpcSgiLost,
        4 => SelfTest::Shadow,
        5 => SelfTest::ShadowNoTlbi,
        6 => SelfTest::ShadowNoVmalle1,
        7 => SelfTest::ShadowStuck,
        _ => SelfTest::ShadowNoIpas2e1is,
    }
}

/// What the service does in `test`.
fn service_mode(test: SelfTest) -> ServiceMode {
    match test {
        SelfTest::IpcStall => ServiceMode::StallAfter(STALL_AFTER),
        SelfTest::Ipc
        | SelfTest::IpcSgi
        | SelfTest::IpcSgiLost
        | SelfTest::Shadow
        | SelfTest::ShadowNoTlbi
        | SelfTest::ShadowNoVmalle1
        | SelfTest::ShadowStuck
        | SelfTest::ShadowNoIpas2e1is => ServiceMode::Serve,
    }
}

/// The test's name in its verdict line, and its doorbell.
fn describe(test: SelfTest) -> (&'static str, &'static str) {
    match test {
        SelfTest::Ipc | SelfTest::IpcStall => ("ipc", "WFE/SEV doorbells"),
        SelfTest::IpcSgi => ("ipc-sgi", "SGI doorbells (WFI waits)"),
        SelfTest::IpcSgiLost => (
            "ipc-sgi",
            "SGI doorbells (WFI waits), the service's bell never sending its SGI",
        ),
        SelfTest::Shadow
        | SelfTest::ShadowNoTlbi
        | SelfTest::ShadowNoVmalle1
        | SelfTest::ShadowStuck
        | SelfTest::ShadowNoIpas2e1is => ("shadow", "WFE/SEV doorbells"),
    }
}

/// The boot CPU: starts the service CPU, runs the client, ends the run.
/// `device_tree` is where hv's device tree lies (the shadow test keeps its
/// memory clear of it).
pub fn run(platform: &Platform, test: SelfTest, ttbr: u64, tcr: u64, device_tree: Region) -> ! {
    if platform.cpus.len() <= SERVICE_CPU {
        fail(format_args!(
            "hv.selftest needs at least 2 CPUs; the device tree has {}",
            platform.cpus.len()
        ));
    }
    let clock = GenericTimer;
    if clock.frequency() == 0 {
        // Firmware left CNTFRQ_EL0 unset: no wait could be bounded and no
        // time reported.
        fail(format_args!(
            "selftest ipc: CNTFRQ_EL0 is 0 (the generic timer's frequency is unknown), so the client's waits cannot be bounded"
        ));
    }
    TEST.store(test_code(test), Ordering::Relaxed);
    if test.is_shadow() {
        super::shadow_selftest::run(platform, test, ttbr, tcr, device_tree);
    }
    let mode = service_mode(test);
    let (name, bells) = describe(test);
    if matches!(test, SelfTest::IpcSgi | SelfTest::IpcSgiLost) {
        let maintenance = platform
            .gic_maintenance
            .unwrap_or(vgic::DEFAULT_MAINTENANCE_INTID);
        match Gic::init(platform, maintenance, None, true) {
            Ok(gic) => GIC.call_once(|| gic),
            Err(e) => fail(format_args!("selftest {name}: GIC: {e}")),
        };
        // The client waits (if ever) on the reply bell, the service on
        // the service bell: each bell's SGI goes to its waiter.
        for exchange in [&SGI_EXCHANGE, &LOST_SGI_EXCHANGE] {
            exchange.service_bell().aim_at(platform.cpus[SERVICE_CPU]);
            exchange.reply_bell().aim_at(platform.cpus[0]);
        }
        sgi_wait_setup(0, name);
    }
    without_event_stream();
    start_service_cpu(platform, SERVICE_CPU, ttbr, tcr, name);
    phase(format_args!(
        "selftest {name}: cpu {SERVICE_CPU} started as the service ({mode:?}); {RECORDS} requests in bursts of 1-64 over {}-slot rings, {bells}, timeout {TIMEOUT_MS} ms per wait",
        ipc_selftest::RING_CAPACITY
    ));
    let timeout = clock.frequency() * TIMEOUT_MS / 1000;
    let (result, sleep) = match test {
        // (The shadow tests never get here: they left above.)
        SelfTest::Ipc
        | SelfTest::IpcStall
        | SelfTest::Shadow
        | SelfTest::ShadowNoTlbi
        | SelfTest::ShadowNoVmalle1
        | SelfTest::ShadowStuck
        | SelfTest::ShadowNoIpas2e1is => (
            ipc_selftest::run_client(&WFE_EXCHANGE, &clock, timeout),
            "each one WFE, which QEMU does not make sleep: a lost SEV is not detectable here",
        ),
        SelfTest::IpcSgi => (
            ipc_selftest::run_client(&SGI_EXCHANGE, &clock, timeout),
            "each one WFI, which sleeps until the SGI pends: a lost wakeup would be a timeout",
        ),
        SelfTest::IpcSgiLost => (
            ipc_selftest::run_client(&LOST_SGI_EXCHANGE, &clock, timeout),
            "each one WFI, and no SGI was sent: this run should have failed",
        ),
    };
    match result {
        Ok(report) => {
            let micros = report.elapsed.saturating_mul(1_000_000) / clock.frequency();
            println!(
                "hv: selftest {name}: PASS: {} requests answered in order, each once, in {} bursts ({} sent to an idle service, {} wakes seen by the service); service idle polls {} ({sleep}); {} us ({} ns per request)",
                report.records,
                report.bursts,
                report.wakeups,
                report.service_wakes,
                report.idle_polls,
                micros,
                micros * 1000 / report.records.max(1)
            );
            exit(ExitStatus::SELF_TEST_PASSED)
        }
        Err(failure) => {
            println!("hv: selftest {name}: FAILED: {failure}");
            exit(ExitStatus::Failure)
        }
    }
}

/// Starts CPU `cpu` (1: the service; the shadow test's reader: 2) with
/// PSCI CPU_ON on hv's stage 1 and its own stack; `secondary_main` sends
/// it to [`service_main`].
pub(super) fn start_service_cpu(platform: &Platform, cpu: usize, ttbr: u64, tcr: u64, name: &str) {
    ACTIVE.store(true, Ordering::Release);
    // What the CPU reads before its MMU is on: cleaned to memory.
    let record: &'static SecondaryBoot = Box::leak(Box::new(SecondaryBoot {
        stack_top: (&raw const STACKS) as u64 + ((cpu + 1) * STACK_SIZE) as u64,
        mair: MAIR_EL2,
        tcr,
        ttbr,
        sctlr: sysregs::SCTLR_EL2_MMU_ON,
        index: cpu as u64,
    }));
    cpu::clean_invalidate_dcache(
        record as *const SecondaryBoot as u64,
        core::mem::size_of::<SecondaryBoot>() as u64,
    );
    let entry = super::boot::hv_secondary_entry as *const () as u64;
    if let Err(e) = smccc::psci::cpu_on::<smccc::Smc>(
        platform.cpus[cpu],
        entry,
        record as *const SecondaryBoot as u64,
    ) {
        fail(format_args!(
            "selftest {name}: PSCI CPU_ON for cpu {cpu} failed: {e:?}"
        ));
    }
}

/// The service CPU (from `secondary_main`, MMU on, own stack).
pub fn service_main() -> ! {
    without_event_stream();
    let test = test_from_code(TEST.load(Ordering::Relaxed));
    if test.is_shadow() {
        super::shadow_selftest::service_main();
    }
    let (name, _) = describe(test);
    let mode = service_mode(test);
    let result = match test {
        SelfTest::Ipc | SelfTest::IpcStall => ipc_selftest::run_service(&WFE_EXCHANGE, mode),
        SelfTest::IpcSgi => {
            sgi_wait_setup(SERVICE_CPU, name);
            ipc_selftest::run_service(&SGI_EXCHANGE, mode)
        }
        SelfTest::IpcSgiLost => {
            sgi_wait_setup(SERVICE_CPU, name);
            ipc_selftest::run_service(&LOST_SGI_EXCHANGE, mode)
        }
        SelfTest::Shadow
        | SelfTest::ShadowNoTlbi
        | SelfTest::ShadowNoVmalle1
        | SelfTest::ShadowStuck
        | SelfTest::ShadowNoIpas2e1is => super::shadow_selftest::service_main(),
    };
    if let Err(e) = result {
        fail(format_args!("selftest {name}: service set-up: {e:?}"));
    }
    // Done: the boot CPU ends the run.
    loop {
        // SAFETY: parks this CPU; it touches no memory.
        unsafe { core::arch::asm!("wfe", options(nomem, nostack)) };
    }
}

/// Turns the timer's event stream off on this CPU, so that only a SEV (or
/// an interrupt, none of which is enabled here) ends a WFE.
fn without_event_stream() {
    let cnthctl = read_sysreg!("cnthctl_el2");
    write_sysreg!("cnthctl_el2", cnthctl & !CNTHCTL_EVNTEN);
    cpu::isb();
}

/// This CPU ready to send and wait for SGIs at EL2: the system-register
/// CPU interface on (ICC_SRE_EL2), its redistributor awake with
/// [`DOORBELL_SGI`] enabled at hv's priority, group 1 enabled, the
/// priority mask open, and physical IRQs routed to EL2. IRQs stay masked
/// at PSTATE (hv never unmasks them), so a pending SGI is never taken:
/// it only ends a WFI, and [`acknowledge_interrupts`] consumes it.
fn sgi_wait_setup(cpu_index: usize, name: &str) {
    write_sysreg!("s3_4_c12_c9_5", sysregs::ICC_SRE_EL2);
    cpu::isb();
    let Some(gic) = GIC.get() else {
        fail(format_args!(
            "selftest {name}: cpu {cpu_index} started before the GIC was set up"
        ));
    };
    if let Err(e) = gic.init_cpu(cpu_index) {
        fail(format_args!("selftest {name}: GIC on cpu {cpu_index}: {e}"));
    }
    write_sysreg!("hcr_el2", read_sysreg!("hcr_el2") | HCR_IMO);
    cpu::isb();
    // Nothing left pending from before (firmware, an earlier ring).
    acknowledge_interrupts();
}

/// Acknowledges and deactivates every interrupt pending for this CPU
/// (only [`DOORBELL_SGI`] is enabled), so the next ring can pend it again.
fn acknowledge_interrupts() {
    loop {
        let iar: u64;
        // SAFETY: reads ICC_IAR1_EL1 (acknowledging the highest-priority
        // pending group-1 interrupt, hv's to take at EL2), then a DSB so
        // that the loads of the readiness check that follows are not
        // satisfied before the acknowledge: the ringer's stores were
        // complete (its DSB) before the SGI was sent.
        unsafe {
            core::arch::asm!(
                "mrs {iar}, s3_0_c12_c12_0",
                "dsb sy",
                iar = out(reg) iar,
                options(nostack, preserves_flags)
            )
        };
        if (iar & 0xff_ffff) as u32 >= SPECIAL_INTIDS {
            return;
        }
        write_sysreg!("s3_0_c12_c12_1", iar); // ICC_EOIR1_EL1: priority drop
        write_sysreg!("s3_0_c12_c11_1", iar); // ICC_DIR_EL1 (EOImode is 1)
        cpu::isb();
    }
}

/// How an [`SgiDoorbell`] rings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ringing {
    /// DSB, then the SGI to the waiter.
    Sgi,
    /// Nothing: the deliberately broken bell of `ipc-sgi-lost`.
    WithoutSgi,
}

/// A doorbell whose wait really sleeps under QEMU: ringing sends
/// [`DOORBELL_SGI`] to the waiting PE (ICC_SGI1R_EL1, after a DSB so the
/// records it announces are visible first); waiting is `while !ready() {
/// WFI }` with IRQs masked at PSTATE. The SGI's pending state is the
/// arming: a ring between the waiter's check and its WFI leaves the SGI
/// pending, and WFI returns at once on a pending interrupt, so no ring is
/// lost. After each WFI the waiter acknowledges the SGI, so the next ring
/// can pend it again (a ring whose SGI was acknowledged before the
/// waiter's check is seen by that check).
#[derive(Debug)]
pub struct SgiDoorbell {
    /// ICC_SGI1R_EL1's value that targets the waiter (0 until aimed).
    sgi1r: AtomicU64,
    ringing: Ringing,
}

impl SgiDoorbell {
    const fn new(ringing: Ringing) -> Self {
        SgiDoorbell {
            sgi1r: AtomicU64::new(0),
            ringing,
        }
    }

    /// Sends this bell's SGI to the CPU with affinity `mpidr` (before the
    /// service CPU starts).
    fn aim_at(&self, mpidr: u64) {
        self.sgi1r
            .store(vgic::sgi1r_for(DOORBELL_SGI, mpidr), Ordering::Relaxed);
    }
}

impl Doorbell for SgiDoorbell {
    fn ring(&self) {
        match self.ringing {
            Ringing::Sgi => {
                cpu::dsb_ish();
                write_sysreg!("s3_0_c12_c11_5", self.sgi1r.load(Ordering::Relaxed)); // ICC_SGI1R_EL1
                cpu::isb();
            }
            Ringing::WithoutSgi => {}
        }
    }

    fn wait_until<F: FnMut() -> bool>(&self, mut ready: F) {
        while !ready() {
            // SAFETY: halts this PE until an interrupt is pending; IRQs
            // are masked at PSTATE, so none is taken. Touches no memory;
            // without `nomem` the compiler reloads what `ready()` reads.
            unsafe { core::arch::asm!("wfi", options(nostack, preserves_flags)) };
            acknowledge_interrupts();
        }
    }
}
