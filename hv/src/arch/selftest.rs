//! `hv.selftest=ipc|ipc-stall`: the ipc exchange of `crate::ipc_selftest`
//! on two physical CPUs. The boot CPU is the client; CPU 1 (started with
//! PSCI CPU_ON) is the service, waiting on the WFE/SEV doorbell whenever
//! its ring is empty. The run ends with one verdict line and the exit
//! status (0 pass, 1 fail).
//!
//! QEMU does not model the WFE event register (its WFE is a yield that
//! returns at once), so under QEMU the service in effect polls: the run
//! proves the ring protocol across two PEs but cannot detect a lost SEV
//! (see `crate::ipc_selftest`).

use super::{cpu, exit, fail, phase, ExitStatus, SecondaryBoot, STACKS, STACK_SIZE};
use crate::ipc_selftest::{self, Clock, Exchange, ServiceMode, RECORDS};
use crate::pagetable::MAIR_EL2;
use crate::platform::{Platform, SelfTest};
use crate::println;
use crate::sysregs;
use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use cpu::{read_sysreg, write_sysreg};
use ipc::WfeDoorbell;

/// The rings and bells, in hv's .data (some fields start non-zero:
/// `running`, `idle_mark`), normal cacheable memory shared by both CPUs
/// through the one stage-1 map.
static EXCHANGE: Exchange<WfeDoorbell> = Exchange::new(WfeDoorbell, WfeDoorbell);
/// Set before CPU 1 is started: `secondary_main` runs the service then.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// 0: serve; 1: stall after 1000 requests.
static MODE: AtomicU8 = AtomicU8::new(0);
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

struct GenericTimer;

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

/// The boot CPU: starts the service CPU, runs the client, ends the run.
pub fn run(platform: &Platform, test: SelfTest, ttbr: u64, tcr: u64) -> ! {
    if platform.cpus.len() <= SERVICE_CPU {
        fail(format_args!(
            "hv.selftest=ipc needs at least 2 CPUs; the device tree has {}",
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
    let mode = match test {
        SelfTest::Ipc => ServiceMode::Serve,
        SelfTest::IpcStall => ServiceMode::StallAfter(STALL_AFTER),
    };
    MODE.store(u8::from(test == SelfTest::IpcStall), Ordering::Relaxed);
    ACTIVE.store(true, Ordering::Release);
    without_event_stream();
    // What CPU 1 reads before its MMU is on: cleaned to memory.
    let record: &'static SecondaryBoot = Box::leak(Box::new(SecondaryBoot {
        stack_top: (&raw const STACKS) as u64 + ((SERVICE_CPU + 1) * STACK_SIZE) as u64,
        mair: MAIR_EL2,
        tcr,
        ttbr,
        sctlr: sysregs::SCTLR_EL2_MMU_ON,
        index: SERVICE_CPU as u64,
    }));
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
            "selftest ipc: PSCI CPU_ON for cpu {SERVICE_CPU} failed: {e:?}"
        ));
    }
    phase(format_args!(
        "selftest ipc: cpu {SERVICE_CPU} started as the service ({mode:?}); {RECORDS} requests in bursts of 1-64 over {}-slot rings, WFE/SEV doorbells, timeout {TIMEOUT_MS} ms per wait",
        ipc_selftest::RING_CAPACITY
    ));
    let timeout = clock.frequency() * TIMEOUT_MS / 1000;
    match ipc_selftest::run_client(&EXCHANGE, &clock, timeout) {
        Ok(report) => {
            let micros = report.elapsed.saturating_mul(1_000_000) / clock.frequency();
            println!(
                "hv: selftest ipc: PASS: {} requests answered in order, each once, in {} bursts ({} sent to an idle service, {} wakes seen by the service); service idle polls {} (each one WFE, which QEMU does not make sleep: a lost SEV is not detectable here); {} us ({} ns per request)",
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
            println!("hv: selftest ipc: FAILED: {failure}");
            exit(ExitStatus::Failure)
        }
    }
}

/// The service CPU (from `secondary_main`, MMU on, own stack).
pub fn service_main() -> ! {
    without_event_stream();
    let mode = match MODE.load(Ordering::Relaxed) {
        0 => ServiceMode::Serve,
        _ => ServiceMode::StallAfter(STALL_AFTER),
    };
    if let Err(e) = ipc_selftest::run_service(&EXCHANGE, mode) {
        fail(format_args!("selftest ipc: service set-up: {e:?}"));
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
