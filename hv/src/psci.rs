//! PSCI 1.0 as hv offers it to its guest, reached through a trapped HVC or
//! SMC. One vCPU per physical CPU: starting a vCPU starts its physical CPU.
//!
//! CPU_SUSPEND offers standby only, implemented as a standby whose wake-up
//! event is already pending: it returns SUCCESS at once (PSCI lets a
//! standby return on any wake-up event; the guest idles in WFI anyway). A
//! powerdown request (power_state.StateType = 1, in the original format
//! that PSCI_FEATURES advertises) is refused with INVALID_PARAMETERS, the
//! answer DEN0022 gives for a power_state the implementation does not
//! support: SUCCESS would claim a powerdown whose resume at entry_point
//! never happens, which Linux's cpu_suspend treats as a failed finisher.
//! The guest's device tree has no idle states (guest_dt.rs), so a Linux
//! guest never asks for one.

use crate::platform::MAX_CPUS;
use crate::sync::{AtomicU8, Ordering};
use smccc::psci::*;

/// PSCI return codes (PSCI 1.0 section 5.2.2).
pub mod status {
    pub const SUCCESS: i64 = 0;
    pub const NOT_SUPPORTED: i64 = -1;
    pub const INVALID_PARAMETERS: i64 = -2;
    pub const ALREADY_ON: i64 = -4;
    pub const ON_PENDING: i64 = -5;
    pub const INTERNAL_FAILURE: i64 = -6;
    pub const INVALID_ADDRESS: i64 = -9;
}

/// PSCI 1.0 in VERSION's encoding (major << 16 | minor).
pub const VERSION_1_0: u64 = 1 << 16;

/// AFFINITY_INFO's answers, which are also the vCPU power states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PowerState {
    On = 0,
    Off = 1,
    OnPending = 2,
}

impl PowerState {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::On,
            2 => Self::OnPending,
            _ => Self::Off,
        }
    }
}

/// The power state of every vCPU, shared by all physical CPUs.
#[derive(Debug)]
pub struct VcpuPower {
    states: [AtomicU8; MAX_CPUS],
}

impl Default for VcpuPower {
    fn default() -> Self {
        Self::new()
    }
}

impl VcpuPower {
    /// Every vCPU off. `const` for hv's static; loom's atomics cannot be
    /// built in a constant, so under loom it is an ordinary function.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        Self {
            states: [const { AtomicU8::new(PowerState::Off as u8) }; MAX_CPUS],
        }
    }

    /// Every vCPU off.
    #[cfg(loom)]
    pub fn new() -> Self {
        Self {
            states: core::array::from_fn(|_| AtomicU8::new(PowerState::Off as u8)),
        }
    }

    pub fn get(&self, vcpu: usize) -> PowerState {
        PowerState::from_u8(self.states[vcpu].load(Ordering::Acquire))
    }

    /// Marks a vCPU running (the boot vCPU, or one that CPU_ON started).
    pub fn set_on(&self, vcpu: usize) {
        self.states[vcpu].store(PowerState::On as u8, Ordering::Release);
    }

    fn transition(&self, vcpu: usize, from: PowerState, to: PowerState) -> Result<(), PowerState> {
        self.states[vcpu]
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .map(|_| ())
            .map_err(PowerState::from_u8)
    }
}

/// What PSCI needs from the machine.
pub trait PsciHost {
    /// The vCPU with this MPIDR affinity (Aff3..Aff0).
    fn vcpu_index(&self, mpidr: u64) -> Option<usize>;
    /// Whether the guest may start a CPU at this address (inside its memory).
    fn entry_is_valid(&self, entry: u64) -> bool;
    /// Starts vCPU `vcpu` at `entry` with `context` in x0 (a physical
    /// CPU_ON underneath); an error is a PSCI status.
    fn power_on(&self, vcpu: usize, entry: u64, context: u64) -> Result<(), i64>;
}

/// What the trapping vCPU does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciOutcome {
    /// Resume the guest with this value in x0.
    Return(u64),
    /// The calling vCPU is off: power its physical CPU down.
    CpuOff,
    SystemOff,
    SystemReset,
}

fn ret(status: i64) -> PsciOutcome {
    PsciOutcome::Return(status as u64)
}

/// SMCCC_VERSION, which Linux probes through PSCI_FEATURES; hv implements
/// SMCCC 1.0 only, so it is not supported.
const SMCCC_VERSION: u32 = 0x8000_0000;

/// Handles one PSCI call from vCPU `caller`: `function` is the guest's w0,
/// `args` its x1..x3.
pub fn handle(
    function: u32,
    args: [u64; 3],
    caller: usize,
    power: &VcpuPower,
    host: &impl PsciHost,
) -> PsciOutcome {
    // SMC32/HVC32 calls pass 32-bit arguments in the low halves.
    let args = if function & 0x4000_0000 == 0 {
        args.map(|a| a & 0xffff_ffff)
    } else {
        args
    };
    match function {
        PSCI_VERSION => PsciOutcome::Return(VERSION_1_0),
        PSCI_FEATURES => ret(features(args[0] as u32)),
        PSCI_CPU_SUSPEND_32 | PSCI_CPU_SUSPEND_64 => ret(cpu_suspend(args[0])),
        PSCI_CPU_OFF => {
            power.states[caller].store(PowerState::Off as u8, Ordering::Release);
            PsciOutcome::CpuOff
        }
        PSCI_CPU_ON_32 | PSCI_CPU_ON_64 => ret(cpu_on(args, power, host)),
        PSCI_AFFINITY_INFO_32 | PSCI_AFFINITY_INFO_64 => {
            if args[1] != 0 {
                return ret(status::INVALID_PARAMETERS);
            }
            match host.vcpu_index(args[0]) {
                Some(vcpu) => PsciOutcome::Return(power.get(vcpu) as u64),
                None => ret(status::INVALID_PARAMETERS),
            }
        }
        // 2: no Trusted OS that would need migrating.
        PSCI_MIGRATE_INFO_TYPE => PsciOutcome::Return(2),
        PSCI_SYSTEM_OFF => PsciOutcome::SystemOff,
        PSCI_SYSTEM_RESET => PsciOutcome::SystemReset,
        _ => ret(status::NOT_SUPPORTED),
    }
}

fn features(function: u32) -> i64 {
    match function {
        PSCI_VERSION
        | PSCI_FEATURES
        | PSCI_CPU_SUSPEND_32
        | PSCI_CPU_SUSPEND_64
        | PSCI_CPU_OFF
        | PSCI_CPU_ON_32
        | PSCI_CPU_ON_64
        | PSCI_AFFINITY_INFO_32
        | PSCI_AFFINITY_INFO_64
        | PSCI_MIGRATE_INFO_TYPE
        | PSCI_SYSTEM_OFF
        | PSCI_SYSTEM_RESET => status::SUCCESS,
        SMCCC_VERSION => status::NOT_SUPPORTED,
        _ => status::NOT_SUPPORTED,
    }
}

/// power_state.StateType in the original format (PSCI_FEATURES(CPU_SUSPEND)
/// returns 0: flags bit 1 clear).
const POWER_STATE_POWERDOWN: u64 = 1 << 16;

/// CPU_SUSPEND(power_state, entry_point, context_id): standby only.
fn cpu_suspend(power_state: u64) -> i64 {
    if power_state & POWER_STATE_POWERDOWN != 0 {
        status::INVALID_PARAMETERS
    } else {
        status::SUCCESS
    }
}

fn cpu_on(args: [u64; 3], power: &VcpuPower, host: &impl PsciHost) -> i64 {
    let [target, entry, context] = args;
    let Some(vcpu) = host.vcpu_index(target) else {
        return status::INVALID_PARAMETERS;
    };
    if !host.entry_is_valid(entry) {
        return status::INVALID_ADDRESS;
    }
    match power.transition(vcpu, PowerState::Off, PowerState::OnPending) {
        Ok(()) => {}
        Err(PowerState::On) => return status::ALREADY_ON,
        Err(_) => return status::ON_PENDING,
    }
    match host.power_on(vcpu, entry, context) {
        Ok(()) => status::SUCCESS,
        Err(error) => {
            power.states[vcpu].store(PowerState::Off as u8, Ordering::Release);
            // The vCPU was OFF (AFFINITY_INFO said so), so ALREADY_ON or
            // ON_PENDING would contradict it: they come from a physical CPU
            // still on its way down after its vCPU's CPU_OFF, beyond the
            // host's retries. PSCI has callers act on AFFINITY_INFO == OFF;
            // INTERNAL_FAILURE tells them this attempt failed and the vCPU
            // is still OFF.
            match error {
                status::ALREADY_ON | status::ON_PENDING => status::INTERNAL_FAILURE,
                other => other,
            }
        }
    }
}

// Host tests: under loom, VcpuPower's atomics exist only inside a loom model
// (loom-tests/tests/hv_*.rs).
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use core::cell::RefCell;
    extern crate std;
    use std::vec::Vec;

    /// Two-cluster fake: MPIDRs 0, 1, 0x100, 0x101; guest RAM at 1 GiB.
    #[derive(Default)]
    struct FakeHost {
        started: RefCell<Vec<(usize, u64, u64)>>,
        fail_with: Option<i64>,
    }

    impl PsciHost for FakeHost {
        fn vcpu_index(&self, mpidr: u64) -> Option<usize> {
            [0, 1, 0x100, 0x101]
                .iter()
                .position(|&m| m == mpidr & 0xff_00ff_ffff)
        }
        fn entry_is_valid(&self, entry: u64) -> bool {
            (0x4000_0000..0x8000_0000).contains(&entry)
        }
        fn power_on(&self, vcpu: usize, entry: u64, context: u64) -> Result<(), i64> {
            if let Some(e) = self.fail_with {
                return Err(e);
            }
            self.started.borrow_mut().push((vcpu, entry, context));
            Ok(())
        }
    }

    fn call(f: u32, args: [u64; 3], power: &VcpuPower, host: &FakeHost) -> PsciOutcome {
        handle(f, args, 0, power, host)
    }

    #[test]
    fn version_and_features() {
        let (power, host) = (VcpuPower::new(), FakeHost::default());
        assert_eq!(
            call(PSCI_VERSION, [0; 3], &power, &host),
            PsciOutcome::Return(0x1_0000)
        );
        assert_eq!(
            call(PSCI_FEATURES, [PSCI_CPU_ON_64 as u64, 0, 0], &power, &host),
            ret(0)
        );
        assert_eq!(
            call(
                PSCI_FEATURES,
                [PSCI_SYSTEM_SUSPEND_64 as u64, 0, 0],
                &power,
                &host
            ),
            ret(-1)
        );
        assert_eq!(
            call(PSCI_FEATURES, [0x8000_0000, 0, 0], &power, &host),
            ret(-1)
        );
        assert_eq!(call(0xc400_00ff, [0; 3], &power, &host), ret(-1));
    }

    #[test]
    fn cpu_on_lifecycle() {
        let (power, host) = (VcpuPower::new(), FakeHost::default());
        power.set_on(0);
        let on = |target| {
            call(
                PSCI_CPU_ON_64,
                [target, 0x4008_0000, 0xc0ffee],
                &power,
                &host,
            )
        };
        assert_eq!(on(0), ret(status::ALREADY_ON));
        assert_eq!(on(0x100), ret(status::SUCCESS));
        assert_eq!(*host.started.borrow(), [(2, 0x4008_0000, 0xc0ffee)]);
        assert_eq!(power.get(2), PowerState::OnPending);
        assert_eq!(on(0x100), ret(status::ON_PENDING));
        let info = |target| call(PSCI_AFFINITY_INFO_64, [target, 0, 0], &power, &host);
        assert_eq!(info(0x100), PsciOutcome::Return(2));
        power.set_on(2);
        assert_eq!(info(0x100), PsciOutcome::Return(0));
        assert_eq!(info(1), PsciOutcome::Return(1));
        assert_eq!(info(0x200), ret(status::INVALID_PARAMETERS));
        assert_eq!(
            call(PSCI_AFFINITY_INFO_64, [0, 1, 0], &power, &host),
            ret(status::INVALID_PARAMETERS)
        );
        // vCPU 2 turns itself off; AFFINITY_INFO then says OFF.
        assert_eq!(
            handle(PSCI_CPU_OFF, [0; 3], 2, &power, &host),
            PsciOutcome::CpuOff
        );
        assert_eq!(info(0x100), PsciOutcome::Return(1));
    }

    #[test]
    fn cpu_on_errors() {
        let power = VcpuPower::new();
        let host = FakeHost {
            fail_with: Some(status::INVALID_PARAMETERS),
            ..FakeHost::default()
        };
        assert_eq!(
            call(PSCI_CPU_ON_64, [7, 0x4000_0000, 0], &power, &host),
            ret(status::INVALID_PARAMETERS)
        );
        assert_eq!(
            call(PSCI_CPU_ON_64, [1, 0x1000, 0], &power, &host),
            ret(status::INVALID_ADDRESS)
        );
        // A failed physical CPU_ON leaves the vCPU off, so it can be retried.
        assert_eq!(
            call(PSCI_CPU_ON_64, [1, 0x4000_0000, 0], &power, &host),
            ret(status::INVALID_PARAMETERS)
        );
        assert_eq!(power.get(1), PowerState::Off);
    }

    /// R7-9: a vCPU that called CPU_OFF is OFF for AFFINITY_INFO while its
    /// physical CPU may still be going down; if the firmware still says
    /// ALREADY_ON (or ON_PENDING) after the host's retries, CPU_ON must
    /// not contradict AFFINITY_INFO: INTERNAL_FAILURE, and still OFF.
    #[test]
    fn cpu_on_after_cpu_off_never_answers_already_on() {
        for physical in [status::ALREADY_ON, status::ON_PENDING] {
            let power = VcpuPower::new();
            let host = FakeHost {
                fail_with: Some(physical),
                ..FakeHost::default()
            };
            power.set_on(0);
            power.set_on(1);
            assert_eq!(
                handle(PSCI_CPU_OFF, [0; 3], 1, &power, &host),
                PsciOutcome::CpuOff
            );
            let info = call(PSCI_AFFINITY_INFO_64, [1, 0, 0], &power, &host);
            assert_eq!(info, PsciOutcome::Return(PowerState::Off as u64));
            assert_eq!(
                call(PSCI_CPU_ON_64, [1, 0x4008_0000, 0], &power, &host),
                ret(status::INTERNAL_FAILURE),
                "firmware answered {physical}"
            );
            assert_eq!(power.get(1), PowerState::Off, "retryable");
        }
    }

    #[test]
    fn smc32_arguments_are_truncated() {
        let (power, host) = (VcpuPower::new(), FakeHost::default());
        let garbage = 0xdead_0000_0000_0000;
        assert_eq!(
            call(
                PSCI_CPU_ON_32,
                [garbage | 1, garbage | 0x4000_0000, garbage | 5],
                &power,
                &host
            ),
            ret(status::SUCCESS)
        );
        assert_eq!(*host.started.borrow(), [(1, 0x4000_0000, 5)]);
    }

    #[test]
    fn system_calls() {
        let (power, host) = (VcpuPower::new(), FakeHost::default());
        assert_eq!(
            call(PSCI_SYSTEM_OFF, [0; 3], &power, &host),
            PsciOutcome::SystemOff
        );
        assert_eq!(
            call(PSCI_SYSTEM_RESET, [0; 3], &power, &host),
            PsciOutcome::SystemReset
        );
        assert_eq!(call(PSCI_CPU_SUSPEND_64, [0, 0, 0], &power, &host), ret(0));
        // R7-10: powerdown (StateType bit 16) is not offered: refused
        // rather than a SUCCESS that never resumes at the entry point.
        for suspend in [PSCI_CPU_SUSPEND_32, PSCI_CPU_SUSPEND_64] {
            assert_eq!(
                call(suspend, [0x0001_0000, 0x4008_0000, 0], &power, &host),
                ret(status::INVALID_PARAMETERS)
            );
            assert_eq!(
                call(suspend, [0x0100_0002, 0x4008_0000, 0], &power, &host),
                ret(status::SUCCESS),
                "a standby state at a higher power level"
            );
        }
        assert_eq!(
            call(PSCI_MIGRATE_INFO_TYPE, [0; 3], &power, &host),
            PsciOutcome::Return(2)
        );
    }
}
