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
//!
//! CPU_OFF leaves the vCPU `OffPending` until the firmware reports its
//! physical CPU OFF: AFFINITY_INFO says ON and CPU_ON ALREADY_ON until then
//! (see `PowerState`), so an OFF answer means a CPU_ON will be accepted.
//! If the firmware's CPU_OFF returns (DENIED: a uniprocessor Trusted OS
//! lives on that core), the vCPU is ON again and gets the status
//! (`cpu_off_returned`).
//!
//! MIGRATE_INFO_TYPE and MIGRATE_INFO_UP_CPU report the firmware's Trusted
//! OS (`PsciHost::trusted_os`), so that a guest does not offline the core
//! whose CPU_OFF the firmware would deny (Linux: psci_tos_resident_on).

use crate::platform::MAX_CPUS;
use crate::sync::{fence, AtomicU8, Ordering};
use smccc::psci::*;

/// PSCI return codes (PSCI 1.0 section 5.2.2).
pub mod status {
    pub const SUCCESS: i64 = 0;
    pub const NOT_SUPPORTED: i64 = -1;
    pub const INVALID_PARAMETERS: i64 = -2;
    pub const DENIED: i64 = -3;
    pub const ALREADY_ON: i64 = -4;
    pub const ON_PENDING: i64 = -5;
    pub const INTERNAL_FAILURE: i64 = -6;
    pub const INVALID_ADDRESS: i64 = -9;
}

/// PSCI 1.0 in VERSION's encoding (major << 16 | minor).
pub const VERSION_1_0: u64 = 1 << 16;

/// A vCPU's power state. AFFINITY_INFO answers ON, OFF or ON_PENDING
/// (`affinity_info`); `OffPending` is hv's own: the vCPU called CPU_OFF
/// but its physical CPU may still be running hv's exit path (the vGIC
/// release, then the firmware's CPU_OFF).
///
/// PSCI (DEN0022, AFFINITY_INFO and CPU_OFF) has a caller of CPU_OFF count
/// as ON until its core is really off, and callers (Linux's cpu_kill) wait
/// for AFFINITY_INFO == OFF before a CPU_ON, which must then be accepted.
/// So an `OffPending` vCPU is reported ON, and it becomes `Off` only once
/// the firmware's own AFFINITY_INFO says its physical CPU is OFF
/// (`PsciHost::is_physically_off`), checked by whoever asks next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PowerState {
    On = 0,
    Off = 1,
    OnPending = 2,
    OffPending = 3,
}

impl PowerState {
    /// The state in a packed word (the low bits; see `VcpuPower`).
    fn unpack(word: u8) -> Self {
        match word & STATE_MASK {
            0 => Self::On,
            1 => Self::Off,
            2 => Self::OnPending,
            _ => Self::OffPending,
        }
    }

    /// AFFINITY_INFO's answer for a vCPU in this state (PSCI: 0 ON, 1 OFF,
    /// 2 ON_PENDING). A vCPU whose physical CPU is still going down is ON.
    pub fn affinity_info(self) -> u64 {
        match self {
            Self::On | Self::OffPending => 0,
            Self::Off => 1,
            Self::OnPending => 2,
        }
    }
}

/// The state's bits in a packed word; the bits above count the vCPU's
/// CPU_OFFs (`VcpuPower`).
const STATE_MASK: u8 = 0b11;
const GENERATION_STEP: u8 = STATE_MASK + 1;

/// The power state of every vCPU, shared by all physical CPUs.
///
/// Each byte holds the state and, above it, a count of the vCPU's CPU_OFFs
/// (6 bits, wrapping at 64). Settling `OffPending` to `Off` is a
/// compare-and-swap on the whole byte seen before the firmware was asked,
/// so an answer about one power-down cannot settle a later one (the vCPU
/// restarted and called CPU_OFF again while the asker waited for the
/// firmware). A stale answer could only match again after 64 further
/// off/on cycles, each a physical CPU boot and power-down, during one
/// firmware call.
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

    /// The stored state, as it is now (an `OffPending` vCPU stays so until
    /// a PSCI call asks the firmware).
    pub fn get(&self, vcpu: usize) -> PowerState {
        PowerState::unpack(self.states[vcpu].load(Ordering::Acquire))
    }

    /// Marks a vCPU running (the boot vCPU, or one that CPU_ON started).
    /// Only the vCPU's own CPU writes its state while it is ON_PENDING (or
    /// before it first starts), so a load and a store suffice.
    pub fn set_on(&self, vcpu: usize) {
        let word = self.states[vcpu].load(Ordering::Relaxed);
        self.states[vcpu].store(word & !STATE_MASK | PowerState::On as u8, Ordering::Release);
    }

    /// The vCPU called CPU_OFF: `OffPending`, one generation on. Only a
    /// running vCPU calls it and nobody else writes an ON vCPU's state.
    /// Release: whoever later sees it OFF sees all the vCPU did before.
    fn cpu_off(&self, vcpu: usize) {
        let word = self.states[vcpu].load(Ordering::Relaxed);
        let next = (word & !STATE_MASK).wrapping_add(GENERATION_STEP);
        self.states[vcpu].store(next | PowerState::OffPending as u8, Ordering::Release);
    }

    /// Whether any of vCPUs `0..vcpus` other than `caller` is up (ON or
    /// ON_PENDING; one that called CPU_OFF is down, also before it is
    /// settled OFF), asked by `caller` after its own CPU_OFF. The full
    /// barrier between
    /// that `OffPending` store and these loads makes two vCPUs turning off
    /// at once not both see the other up (store buffering): at least one
    /// of them sees every vCPU down, so the last CPU_OFF is always noticed
    /// (the nested L1's: hv then ends the run, which would otherwise wait
    /// for ever with no CPU left to call SYSTEM_OFF).
    pub fn others_up(&self, caller: usize, vcpus: usize) -> bool {
        fence(Ordering::SeqCst);
        self.states
            .iter()
            .take(vcpus)
            .enumerate()
            .any(|(vcpu, word)| {
                vcpu != caller
                    && matches!(
                        PowerState::unpack(word.load(Ordering::Acquire)),
                        PowerState::On | PowerState::OnPending
                    )
            })
    }

    /// The vCPU's state for a PSCI answer: an `OffPending` vCPU whose
    /// physical CPU the firmware reports OFF becomes `Off` here.
    fn settle(&self, vcpu: usize, host: &impl PsciHost) -> PowerState {
        let seen = self.states[vcpu].load(Ordering::Acquire);
        if PowerState::unpack(seen) != PowerState::OffPending {
            return PowerState::unpack(seen);
        }
        if !host.is_physically_off(vcpu) {
            return PowerState::OffPending;
        }
        let off = seen & !STATE_MASK | PowerState::Off as u8;
        match self.states[vcpu].compare_exchange(seen, off, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => PowerState::Off,
            // Another caller settled it, or it has moved on since (CPU_ON,
            // or even a later CPU_OFF): what it is now.
            Err(now) => PowerState::unpack(now),
        }
    }

    /// `from` -> `to` in one step, keeping the generation; the state found
    /// if it was not `from`.
    fn transition(&self, vcpu: usize, from: PowerState, to: PowerState) -> Result<(), PowerState> {
        self.states[vcpu]
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (PowerState::unpack(word) == from).then_some(word & !STATE_MASK | to as u8)
            })
            .map(|_| ())
            .map_err(PowerState::unpack)
    }
}

/// What PSCI needs from the machine.
pub trait PsciHost {
    /// The vCPU with this MPIDR affinity (Aff3..Aff0).
    fn vcpu_index(&self, mpidr: u64) -> Option<usize>;
    /// Whether the guest may start a CPU at this address (inside its memory).
    fn entry_is_valid(&self, entry: u64) -> bool;
    /// Starts vCPU `vcpu` at `entry` with `context` in x0 (a physical
    /// CPU_ON underneath); an error is a PSCI status. Called only for a
    /// vCPU whose physical CPU the firmware has reported OFF (or that never
    /// ran).
    fn power_on(&self, vcpu: usize, entry: u64, context: u64) -> Result<(), i64>;
    /// Whether the firmware reports vCPU `vcpu`'s physical CPU OFF (its
    /// AFFINITY_INFO), so that its CPU_ON will be accepted. Asked only for
    /// a vCPU that called CPU_OFF; an error from the firmware counts as
    /// not off (hv never claims OFF for a core it cannot show is off), and
    /// hv boots only on a firmware that implements AFFINITY_INFO
    /// (`firmware_is_usable`).
    fn is_physically_off(&self, vcpu: usize) -> bool;
    /// The Trusted OS the firmware reports: its MIGRATE_INFO_TYPE and,
    /// for a uniprocessor one (type 0 or 1), its MIGRATE_INFO_UP_CPU.
    fn trusted_os(&self) -> FirmwareTrustedOs;
}

/// The firmware's answer about its Trusted OS (DEN0022 MIGRATE_INFO_TYPE:
/// 0 uniprocessor and migrate capable, 1 uniprocessor and not migrate
/// capable, 2 none or multiprocessor: no migration needed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirmwareTrustedOs {
    /// Type 2, or the firmware does not say (NOT_SUPPORTED or another
    /// error): no core is known whose CPU_OFF would be denied.
    NoMigrationNeeded,
    /// Type 0 or 1: a Trusted OS resident on one core, whose MPIDR the
    /// firmware's MIGRATE_INFO_UP_CPU gave (as the firmware returned it).
    Uniprocessor { resident_mpidr: u64 },
}

/// MPIDR's affinity fields (Aff3, Aff2..Aff0): Linux's MPIDR_HWID_BITMASK,
/// all a MIGRATE_INFO_UP_CPU answer may carry.
const MPIDR_AFFINITY: u64 = 0xff_00ff_ffff;

/// The guest's MPIDR of the core its Trusted OS is resident on, if it has
/// that core. vCPU i runs on physical CPU i with VMPIDR_EL2 = that CPU's
/// MPIDR_EL1 (arch `configure_el2`), so the physical affinity is the
/// vCPU's. A Trusted OS on a core the guest does not have denies none of
/// the guest's CPU_OFFs: for the guest it needs no migration.
fn trusted_os_core(host: &impl PsciHost) -> Option<u64> {
    match host.trusted_os() {
        FirmwareTrustedOs::NoMigrationNeeded => None,
        FirmwareTrustedOs::Uniprocessor { resident_mpidr } => {
            let affinity = resident_mpidr & MPIDR_AFFINITY;
            host.vcpu_index(affinity).map(|_| affinity)
        }
    }
}

/// MIGRATE_INFO_TYPE: 1 (uniprocessor, not migrate capable) when the
/// firmware's Trusted OS lives on one of the guest's cores, else 2. A
/// firmware type 0 is also reported as 1: type 0 promises MIGRATE, which
/// hv does not offer (NOT_SUPPORTED).
fn migrate_info_type(host: &impl PsciHost) -> u64 {
    match trusted_os_core(host) {
        Some(_) => 1,
        None => 2,
    }
}

/// MIGRATE_INFO_UP_CPU: the resident core's MPIDR affinity. DEN0022 gives
/// this call a meaning only for MIGRATE_INFO_TYPE 0 or 1, so otherwise it
/// answers NOT_SUPPORTED. The SMC32 form returns the low 32 bits (Aff2..0;
/// Aff3 exists only in the SMC64 answer).
fn migrate_info_up_cpu(function: u32, host: &impl PsciHost) -> PsciOutcome {
    match trusted_os_core(host) {
        Some(mpidr) if function == PSCI_MIGRATE_INFO_UP_CPU_32 => {
            PsciOutcome::Return(mpidr & 0xffff_ffff)
        }
        Some(mpidr) => PsciOutcome::Return(mpidr),
        None => ret(status::NOT_SUPPORTED),
    }
}

/// The firmware's CPU_OFF for `vcpu`'s physical CPU returned `status`
/// (DENIED: a uniprocessor Trusted OS is resident there) instead of
/// powering it down. The vCPU, `OffPending` since its CPU_OFF, is ON
/// again (its physical CPU never stopped, so no settle can have made it
/// OFF) and the guest gets the status. Err: the vCPU was no longer
/// `OffPending` (the firmware reported OFF for a running core).
pub fn cpu_off_returned(power: &VcpuPower, vcpu: usize, status: i64) -> Result<u64, PowerState> {
    power.transition(vcpu, PowerState::OffPending, PowerState::On)?;
    Ok(status as u64)
}

/// Why the firmware's PSCI cannot carry hv's vCPU power states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnusableFirmware {
    /// PSCI_VERSION failed: PSCI 0.1 (which has no VERSION) or no PSCI.
    NoVersion(Error),
    /// A version before 0.2, which has no AFFINITY_INFO.
    TooOld(Version),
    /// PSCI 1.0 or later whose PSCI_FEATURES says AFFINITY_INFO (SMC64) is
    /// not implemented.
    NoAffinityInfo(Version, Error),
}

impl core::fmt::Display for UnusableFirmware {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const NEED: &str =
            "hv needs PSCI 0.2 or later with AFFINITY_INFO (SMC64) to tell when a CPU_OFF is done";
        match self {
            Self::NoVersion(e) => write!(f, "the firmware's PSCI_VERSION failed ({e}): {NEED}"),
            Self::TooOld(v) => write!(f, "the firmware implements PSCI {v}: {NEED}"),
            Self::NoAffinityInfo(v, e) => write!(
                f,
                "the firmware's PSCI {v} lacks AFFINITY_INFO (PSCI_FEATURES: {e}): {NEED}"
            ),
        }
    }
}

/// Whether the firmware's PSCI can settle hv's `OffPending` vCPUs: hv
/// learns that a CPU_OFF is done only from the firmware's AFFINITY_INFO
/// (`PsciHost::is_physically_off`), and one that always fails would leave
/// such a vCPU ON to its guest for ever. `version` is the firmware's
/// PSCI_VERSION; `affinity_info_features` asks its
/// PSCI_FEATURES(AFFINITY_INFO_64), only for PSCI 1.0 or later.
///
/// DEN0022: AFFINITY_INFO is mandatory from PSCI 0.2, and PSCI_FEATURES
/// exists only from 1.0, so a 0.2 firmware is taken at its word (as Linux
/// does). From 1.0 any non-negative PSCI_FEATURES answer means implemented
/// (its feature flags are reserved, zero, for AFFINITY_INFO).
pub fn firmware_is_usable(
    version: Result<Version, Error>,
    affinity_info_features: impl FnOnce() -> Result<u32, Error>,
) -> Result<Version, UnusableFirmware> {
    let version = version.map_err(UnusableFirmware::NoVersion)?;
    if version < (Version { major: 0, minor: 2 }) {
        return Err(UnusableFirmware::TooOld(version));
    }
    if version.major >= 1 {
        affinity_info_features().map_err(|e| UnusableFirmware::NoAffinityInfo(version, e))?;
    }
    Ok(version)
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

/// SMCCC_VERSION, which a caller discovers through PSCI_FEATURES (DEN0028):
/// implemented (`crate::smccc_arch` answers it, SMCCC 1.2).
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
            power.cpu_off(caller);
            PsciOutcome::CpuOff
        }
        PSCI_CPU_ON_32 | PSCI_CPU_ON_64 => ret(cpu_on(args, power, host)),
        PSCI_AFFINITY_INFO_32 | PSCI_AFFINITY_INFO_64 => {
            if args[1] != 0 {
                return ret(status::INVALID_PARAMETERS);
            }
            match host.vcpu_index(args[0]) {
                Some(vcpu) => PsciOutcome::Return(power.settle(vcpu, host).affinity_info()),
                None => ret(status::INVALID_PARAMETERS),
            }
        }
        PSCI_MIGRATE_INFO_TYPE => PsciOutcome::Return(migrate_info_type(host)),
        PSCI_MIGRATE_INFO_UP_CPU_32 | PSCI_MIGRATE_INFO_UP_CPU_64 => {
            migrate_info_up_cpu(function, host)
        }
        PSCI_SYSTEM_OFF => PsciOutcome::SystemOff,
        PSCI_SYSTEM_RESET => PsciOutcome::SystemReset,
        _ => ret(status::NOT_SUPPORTED),
    }
}

/// Whether SMCCC function id `function` (w0) is PSCI's: a fast call of the
/// Standard Secure Service (owner 4), functions 0x00-0x1f, SMC32 or SMC64
/// (DEN0022, "Function IDs").
pub fn is_psci_function(function: u32) -> bool {
    function & !(0x4000_0000 | 0x1f) == 0x8400_0000
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
        | PSCI_MIGRATE_INFO_UP_CPU_32
        | PSCI_MIGRATE_INFO_UP_CPU_64
        | PSCI_SYSTEM_OFF
        | PSCI_SYSTEM_RESET
        | SMCCC_VERSION => status::SUCCESS,
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
    // A vCPU still going down after its CPU_OFF is ON for AFFINITY_INFO,
    // so CPU_ON answers ALREADY_ON (PSCI's answer for an ON core; the
    // caller was not told OFF). ON_PENDING would claim a CPU_ON underway.
    power.settle(vcpu, host);
    match power.transition(vcpu, PowerState::Off, PowerState::OnPending) {
        Ok(()) => {}
        Err(PowerState::On | PowerState::OffPending) => return status::ALREADY_ON,
        // `transition` refuses only a state other than Off.
        Err(PowerState::OnPending | PowerState::Off) => return status::ON_PENDING,
    }
    match host.power_on(vcpu, entry, context) {
        Ok(()) => status::SUCCESS,
        Err(error) => {
            // Back to OFF (only this caller moves an ON_PENDING vCPU that
            // has not started), so the guest may retry.
            let _ = power.transition(vcpu, PowerState::OnPending, PowerState::Off);
            // The firmware reported the physical CPU OFF (or it never ran),
            // so its ALREADY_ON or ON_PENDING contradicts its own
            // AFFINITY_INFO, and passing it on would contradict ours:
            // INTERNAL_FAILURE tells the guest this attempt failed and the
            // vCPU is still OFF.
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
    use core::cell::{Cell, RefCell};
    extern crate std;
    use std::vec::Vec;

    /// Two-cluster fake: MPIDRs 0, 1, 0x100, 0x101; guest RAM at 1 GiB.
    #[derive(Default)]
    struct FakeHost {
        started: RefCell<Vec<(usize, u64, u64)>>,
        fail_with: Option<i64>,
        /// The firmware still reports the physical CPU ON after its vCPU's
        /// CPU_OFF (hv's exit path, or the firmware's power-down, running).
        going_down: Cell<bool>,
        /// Firmware AFFINITY_INFO calls hv made.
        queries: Cell<usize>,
        /// The firmware's MIGRATE_INFO_UP_CPU answer when it reports a
        /// uniprocessor Trusted OS; None: MIGRATE_INFO_TYPE 2.
        trusted_os_on: Option<u64>,
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
        fn is_physically_off(&self, _vcpu: usize) -> bool {
            self.queries.set(self.queries.get() + 1);
            !self.going_down.get()
        }
        fn trusted_os(&self) -> FirmwareTrustedOs {
            match self.trusted_os_on {
                Some(resident_mpidr) => FirmwareTrustedOs::Uniprocessor { resident_mpidr },
                None => FirmwareTrustedOs::NoMigrationNeeded,
            }
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
        // SMCCC_VERSION is discovered here (smccc_arch answers it).
        assert_eq!(
            call(PSCI_FEATURES, [0x8000_0000, 0, 0], &power, &host),
            ret(0)
        );
        assert_eq!(call(0xc400_00ff, [0; 3], &power, &host), ret(-1));
    }

    #[test]
    fn psci_function_ids() {
        for f in [
            PSCI_VERSION,
            PSCI_CPU_OFF,
            PSCI_CPU_ON_32,
            PSCI_CPU_ON_64,
            PSCI_SYSTEM_RESET,
        ] {
            assert!(is_psci_function(f), "{f:#x}");
        }
        assert!(is_psci_function(0xc400_001f));
        // SMCCC_VERSION (Arm Architecture Service), a yielding call, owner 5.
        for f in [
            0x8000_0000,
            0x0400_0000,
            0x8500_0000,
            0x8400_0020,
            0xc600_0001,
        ] {
            assert!(!is_psci_function(f), "{f:#x}");
        }
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

    /// R7-9: a vCPU that called CPU_OFF stays ON for AFFINITY_INFO, and
    /// CPU_ON answers ALREADY_ON, until the firmware reports its physical
    /// CPU OFF; then AFFINITY_INFO says OFF and CPU_ON succeeds.
    #[test]
    fn cpu_off_is_reported_only_once_the_physical_cpu_is_off() {
        let (power, host) = (VcpuPower::new(), FakeHost::default());
        power.set_on(0);
        power.set_on(1);
        let info = || call(PSCI_AFFINITY_INFO_64, [1, 0, 0], &power, &host);
        let on = || call(PSCI_CPU_ON_64, [1, 0x4008_0000, 7], &power, &host);
        assert_eq!(info(), PsciOutcome::Return(0));
        assert_eq!(
            host.queries.get(),
            0,
            "the firmware is asked only after CPU_OFF"
        );
        host.going_down.set(true);
        assert_eq!(
            handle(PSCI_CPU_OFF, [0; 3], 1, &power, &host),
            PsciOutcome::CpuOff
        );
        assert_eq!(power.get(1), PowerState::OffPending);
        assert_eq!(info(), PsciOutcome::Return(0), "ON while going down");
        assert_eq!(on(), ret(status::ALREADY_ON));
        assert!(host.started.borrow().is_empty(), "no physical CPU_ON yet");
        assert_eq!(power.get(1), PowerState::OffPending);
        assert_eq!(host.queries.get(), 2);
        host.going_down.set(false);
        assert_eq!(info(), PsciOutcome::Return(1));
        assert_eq!(power.get(1), PowerState::Off);
        assert_eq!(on(), ret(status::SUCCESS));
        assert_eq!(*host.started.borrow(), [(1, 0x4008_0000, 7)]);
        assert_eq!(host.queries.get(), 3, "an OFF vCPU needs no firmware call");
        assert_eq!(info(), PsciOutcome::Return(2));
    }

    /// A CPU_ON with no AFFINITY_INFO before it asks the firmware itself:
    /// the physical CPU is off, so it starts the vCPU at once.
    #[test]
    fn cpu_on_settles_a_powered_down_vcpu_itself() {
        let (power, host) = (VcpuPower::new(), FakeHost::default());
        power.set_on(0);
        power.set_on(3);
        handle(PSCI_CPU_OFF, [0; 3], 3, &power, &host);
        assert_eq!(
            call(PSCI_CPU_ON_64, [0x101, 0x4000_0000, 0], &power, &host),
            ret(status::SUCCESS)
        );
        assert_eq!(power.get(3), PowerState::OnPending);
        assert_eq!(*host.started.borrow(), [(3, 0x4000_0000, 0)]);
    }

    /// The firmware reported the physical CPU OFF, then refused its CPU_ON
    /// as ALREADY_ON or ON_PENDING (inconsistent firmware): the guest was
    /// told OFF, so it gets INTERNAL_FAILURE, never ALREADY_ON, and the
    /// vCPU stays OFF for a retry.
    #[test]
    fn cpu_on_after_reported_off_never_answers_already_on() {
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
            assert_eq!(info, PsciOutcome::Return(1));
            assert_eq!(
                call(PSCI_CPU_ON_64, [1, 0x4008_0000, 0], &power, &host),
                ret(status::INTERNAL_FAILURE),
                "firmware answered {physical}"
            );
            assert_eq!(power.get(1), PowerState::Off, "retryable");
        }
    }

    /// The firmware's OFF answer is about the power-down the asker saw. If
    /// meanwhile the vCPU was settled, restarted and called CPU_OFF again
    /// (its physical CPU going down once more), that answer must not settle
    /// the new power-down: the generation in the word tells them apart.
    #[test]
    fn a_stale_firmware_answer_does_not_settle_a_later_cpu_off() {
        /// Answers OFF, but first runs a whole OFF -> ON -> OFF cycle of
        /// vCPU 1 through PSCI, as other CPUs could while this one waited
        /// for the firmware.
        struct CycleDuringQuery<'a> {
            power: &'a VcpuPower,
            inner: FakeHost,
            cycled: Cell<bool>,
        }
        impl PsciHost for CycleDuringQuery<'_> {
            fn vcpu_index(&self, mpidr: u64) -> Option<usize> {
                self.inner.vcpu_index(mpidr)
            }
            fn entry_is_valid(&self, entry: u64) -> bool {
                self.inner.entry_is_valid(entry)
            }
            fn power_on(&self, vcpu: usize, entry: u64, context: u64) -> Result<(), i64> {
                self.inner.power_on(vcpu, entry, context)
            }
            fn trusted_os(&self) -> FirmwareTrustedOs {
                self.inner.trusted_os()
            }
            fn is_physically_off(&self, vcpu: usize) -> bool {
                if !self.cycled.replace(true) {
                    let (power, inner) = (self.power, &self.inner);
                    let on = handle(PSCI_CPU_ON_64, [1, 0x4000_0000, 0], 0, power, inner);
                    assert_eq!(on, ret(status::SUCCESS));
                    power.set_on(vcpu);
                    handle(PSCI_CPU_OFF, [0; 3], vcpu, power, inner);
                    inner.going_down.set(true);
                }
                true
            }
        }
        let power = VcpuPower::new();
        power.set_on(0);
        power.set_on(1);
        let host = CycleDuringQuery {
            power: &power,
            inner: FakeHost::default(),
            cycled: Cell::new(false),
        };
        handle(PSCI_CPU_OFF, [0; 3], 1, &power, &host.inner);
        assert_eq!(
            handle(PSCI_AFFINITY_INFO_64, [1, 0, 0], 0, &power, &host),
            PsciOutcome::Return(0),
            "the second power-down is still under way"
        );
        assert_eq!(power.get(1), PowerState::OffPending);
        assert_eq!(
            handle(PSCI_CPU_ON_64, [1, 0x4000_0000, 0], 0, &power, &host.inner),
            ret(status::ALREADY_ON)
        );
        host.inner.going_down.set(false);
        assert_eq!(
            handle(PSCI_AFFINITY_INFO_64, [1, 0, 0], 0, &power, &host.inner),
            PsciOutcome::Return(1)
        );
    }

    /// The generation wraps without disturbing the state bits.
    #[test]
    fn many_off_on_cycles_keep_the_states_apart() {
        let (power, host) = (VcpuPower::new(), FakeHost::default());
        power.set_on(0);
        power.set_on(1);
        for _ in 0..20_000 {
            handle(PSCI_CPU_OFF, [0; 3], 1, &power, &host);
            assert_eq!(power.get(1), PowerState::OffPending);
            assert_eq!(
                call(PSCI_CPU_ON_64, [1, 0x4000_0000, 0], &power, &host),
                ret(status::SUCCESS)
            );
            power.set_on(1);
        }
        assert_eq!(host.started.borrow().len(), 20_000);
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

    /// Review 10 P1: hv boots only on a firmware whose AFFINITY_INFO can
    /// settle an OFF_PENDING vCPU.
    #[test]
    fn firmware_without_affinity_info_is_refused() {
        use std::string::ToString;
        let v = |major, minor| Ok(Version { major, minor });
        let asked = Cell::new(0);
        let features = |answer: Result<u32, Error>| {
            let asked = &asked;
            move || {
                asked.set(asked.get() + 1);
                answer
            }
        };
        // PSCI 1.x: PSCI_FEATURES decides.
        assert_eq!(
            firmware_is_usable(v(1, 1), features(Ok(0))),
            Ok(Version { major: 1, minor: 1 })
        );
        assert_eq!(
            firmware_is_usable(v(1, 0), features(Err(Error::NotSupported))),
            Err(UnusableFirmware::NoAffinityInfo(
                Version { major: 1, minor: 0 },
                Error::NotSupported
            ))
        );
        assert_eq!(asked.get(), 2);
        // PSCI 0.2 has AFFINITY_INFO by definition and no PSCI_FEATURES.
        assert_eq!(
            firmware_is_usable(v(0, 2), features(Err(Error::NotSupported))),
            Ok(Version { major: 0, minor: 2 })
        );
        // No VERSION (PSCI 0.1 or none), or a version before 0.2.
        assert_eq!(
            firmware_is_usable(Err(Error::NotSupported), features(Ok(0))),
            Err(UnusableFirmware::NoVersion(Error::NotSupported))
        );
        assert_eq!(
            firmware_is_usable(v(0, 1), features(Ok(0))),
            Err(UnusableFirmware::TooOld(Version { major: 0, minor: 1 }))
        );
        assert_eq!(asked.get(), 2, "PSCI_FEATURES asked only from 1.0");
        let message = firmware_is_usable(v(1, 0), features(Err(Error::NotSupported)))
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "the firmware's PSCI 1.0 lacks AFFINITY_INFO (PSCI_FEATURES: PSCI call not supported): \
             hv needs PSCI 0.2 or later with AFFINITY_INFO (SMC64) to tell when a CPU_OFF is done"
        );
    }

    /// Review 10 P2: the firmware's Trusted OS reaches the guest, so a
    /// guest (Linux psci_tos_resident_on) keeps the core whose CPU_OFF the
    /// firmware would deny.
    #[test]
    fn a_resident_trusted_os_is_reported_on_its_vcpu() {
        let power = VcpuPower::new();
        let answers = |host: &FakeHost| {
            [
                call(PSCI_MIGRATE_INFO_TYPE, [0; 3], &power, host),
                call(PSCI_MIGRATE_INFO_UP_CPU_64, [0; 3], &power, host),
                call(PSCI_MIGRATE_INFO_UP_CPU_32, [0; 3], &power, host),
            ]
        };
        let on = |resident| FakeHost {
            trusted_os_on: resident,
            ..FakeHost::default()
        };
        assert_eq!(
            answers(&on(Some(1))),
            [
                PsciOutcome::Return(1),
                PsciOutcome::Return(1),
                PsciOutcome::Return(1)
            ]
        );
        // The firmware's answer may carry MPIDR_EL1's non-affinity bits
        // (bit 31 RES1, U, MT); the guest gets the affinity only.
        assert_eq!(
            answers(&on(Some(0x8000_0101))),
            [
                PsciOutcome::Return(1),
                PsciOutcome::Return(0x101),
                PsciOutcome::Return(0x101)
            ]
        );
        // No Trusted OS needing migration: 2, and UP_CPU has no meaning.
        assert_eq!(
            answers(&on(None)),
            [
                PsciOutcome::Return(2),
                ret(status::NOT_SUPPORTED),
                ret(status::NOT_SUPPORTED)
            ]
        );
        // Resident on a core the guest does not have: none of the guest's
        // CPU_OFFs is denied.
        assert_eq!(
            answers(&on(Some(0x200))),
            [
                PsciOutcome::Return(2),
                ret(status::NOT_SUPPORTED),
                ret(status::NOT_SUPPORTED)
            ]
        );
        let host = FakeHost::default();
        for f in [PSCI_MIGRATE_INFO_UP_CPU_32, PSCI_MIGRATE_INFO_UP_CPU_64] {
            assert_eq!(call(PSCI_FEATURES, [f as u64, 0, 0], &power, &host), ret(0));
        }
    }

    /// Review 10 P2: a firmware CPU_OFF that returns (DENIED) leaves the
    /// vCPU ON, visible as such, and the guest gets DENIED; a later
    /// CPU_OFF works as usual.
    #[test]
    fn a_denied_cpu_off_leaves_the_vcpu_on() {
        let (power, host) = (VcpuPower::new(), FakeHost::default());
        power.set_on(0);
        power.set_on(1);
        host.going_down.set(true);
        assert_eq!(
            handle(PSCI_CPU_OFF, [0; 3], 1, &power, &host),
            PsciOutcome::CpuOff
        );
        assert_eq!(
            cpu_off_returned(&power, 1, status::DENIED),
            Ok(status::DENIED as u64)
        );
        assert_eq!(power.get(1), PowerState::On);
        assert_eq!(
            call(PSCI_AFFINITY_INFO_64, [1, 0, 0], &power, &host),
            PsciOutcome::Return(0)
        );
        assert_eq!(
            call(PSCI_CPU_ON_64, [1, 0x4000_0000, 0], &power, &host),
            ret(status::ALREADY_ON)
        );
        assert_eq!(host.queries.get(), 0, "an ON vCPU needs no firmware call");
        // The next CPU_OFF is one generation on and settles normally.
        host.going_down.set(false);
        assert_eq!(
            handle(PSCI_CPU_OFF, [0; 3], 1, &power, &host),
            PsciOutcome::CpuOff
        );
        assert_eq!(
            call(PSCI_AFFINITY_INFO_64, [1, 0, 0], &power, &host),
            PsciOutcome::Return(1)
        );
        // A vCPU no longer OFF_PENDING (the firmware reported OFF for a
        // core whose CPU_OFF then returned) is not touched.
        assert_eq!(
            cpu_off_returned(&power, 1, status::DENIED),
            Err(PowerState::Off)
        );
        assert_eq!(power.get(1), PowerState::Off);
    }
}
