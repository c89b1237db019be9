//! loom models of hv's PSCI vCPU power states (`hv::psci`): CPU_ON moves a
//! vCPU from OFF to ON_PENDING with one compare-and-swap and then starts
//! its physical CPU (back to OFF if that fails), the started vCPU marks
//! itself ON as it enters the guest (`VcpuPower::set_on`), CPU_OFF marks the
//! caller OFF_PENDING before its physical CPU goes down, and AFFINITY_INFO
//! and CPU_ON on an OFF_PENDING vCPU ask the firmware whether that CPU is
//! off yet (`PsciHost::is_physically_off`) and settle it to OFF if so. The
//! models call `psci::handle` as hv's SMCCC exit does, on loom's atomics
//! (hv/src/sync.rs); only the machine (`PsciHost`) is a stand-in, whose
//! firmware, like QEMU's and TF-A's, refuses CPU_ON (ALREADY_ON) while the
//! CPU is still on and reports OFF only once its CPU_OFF is done (its state
//! a flag its CPU_OFF stores with release). Its AFFINITY_INFO reads that
//! flag relaxed: real firmware (TF-A's psci_affinity_info is a plain load,
//! then ERET) gives the caller no acquire, so what the target wrote before
//! CPU_OFF must reach the observer through hv's power state alone.
//!
//! What PSCI (DEN0022, CPU_ON and AFFINITY_INFO) asks, and the models check
//! whatever the interleaving:
//! - of concurrent CPU_ONs for one OFF vCPU exactly one succeeds and
//!   starts it once; the others get ALREADY_ON or ON_PENDING;
//! - a CPU_ON that fails in the firmware leaves the vCPU OFF, so it can be
//!   retried, and never lets a second CPU_ON start it twice;
//! - a CPU_ON racing the target's CPU_OFF either finds it ON (ALREADY_ON,
//!   and it stays off) or succeeds and starts it again once, never calling
//!   the firmware's CPU_ON while the physical CPU is still on (which the
//!   firmware would refuse: INTERNAL_FAILURE for the guest);
//! - a third vCPU's AFFINITY_INFO follows the target's history (ON,
//!   OFF_PENDING answered ON, OFF, ON_PENDING, ON): never ON again after OFF
//!   unless a CPU_ON succeeded, OFF only once the firmware has the physical
//!   CPU off, and an OFF answer comes after everything the target did
//!   before its CPU_OFF (a relaxed write the observer then reads relaxed, so
//!   only the power state's release and acquire can make it visible);
//! - an OFF that one caller settled and another only reads still comes
//!   after the target's last write and its physical power-down;
//! - once AFFINITY_INFO has answered OFF, a CPU_ON succeeds (R7-9).
//! - a CPU_ON that finds an OFF another caller settled reaches the
//!   firmware after its power-down (the settling CAS releases the settler's
//!   firmware query), so it never fails with INTERNAL_FAILURE.
#![cfg(loom)]

use hv::psci::{self, status, PowerState, PsciHost, PsciOutcome, VcpuPower};
use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use loom::sync::Arc;
use loom::thread;
use smccc::psci::{PSCI_AFFINITY_INFO_64, PSCI_CPU_OFF, PSCI_CPU_ON_64};

/// Where the guest starts its secondaries (the only valid entry here).
const ENTRY: u64 = 0x4008_0000;
/// The firmware's INTERNAL_FAILURE, which hv passes on.
const INTERNAL_FAILURE: i64 = -6;
const CPUS: usize = 3;

/// The physical CPUs under hv, driven as `arch`'s `PsciHost` drives them.
#[derive(Debug)]
struct Machine {
    power: VcpuPower,
    /// The firmware's view: the physical CPU is on (hv or the guest on it,
    /// or hv's exit path after CPU_OFF), so its CPU_ON is refused.
    running: [AtomicBool; CPUS],
    /// Physical power-downs the firmware completed, per CPU.
    downs: [AtomicU8; CPUS],
    /// Physical CPU_ONs that succeeded, per CPU (not the boot ones).
    starts: [AtomicU8; CPUS],
    /// The firmware refuses this many CPU_ONs before it accepts them.
    refusals: AtomicU8,
    /// Calls into PSCI that have returned (callers, not targets).
    calls_done: AtomicU8,
    /// What the guest on vCPU 1 wrote before its CPU_OFF (relaxed: only
    /// PSCI's own ordering may make it visible).
    last_words: AtomicU64,
}

impl Machine {
    /// vCPU 0 booted (and whoever is in `on`); `refusals` failing CPU_ONs.
    fn new(on: &[usize], refusals: u8) -> Arc<Self> {
        let machine = Machine {
            power: VcpuPower::new(),
            running: core::array::from_fn(|cpu| AtomicBool::new(cpu == 0 || on.contains(&cpu))),
            starts: core::array::from_fn(|_| AtomicU8::new(0)),
            downs: core::array::from_fn(|_| AtomicU8::new(0)),
            refusals: AtomicU8::new(refusals),
            calls_done: AtomicU8::new(0),
            last_words: AtomicU64::new(0),
        };
        machine.power.set_on(0);
        for &cpu in on {
            machine.power.set_on(cpu);
        }
        Arc::new(machine)
    }

    /// A PSCI call from vCPU `caller`, as hv's SMCCC exit makes it.
    fn call(&self, caller: usize, function: u32, args: [u64; 3]) -> PsciOutcome {
        psci::handle(function, args, caller, &self.power, self)
    }

    /// CPU_ON for vCPU `target` from vCPU `caller`: the status.
    fn cpu_on(&self, caller: usize, target: usize) -> i64 {
        let outcome = self.call(caller, PSCI_CPU_ON_64, [target as u64, ENTRY, 0]);
        self.calls_done.fetch_add(1, Ordering::Release);
        match outcome {
            PsciOutcome::Return(status) => status as i64,
            other => panic!("CPU_ON returned {other:?}"),
        }
    }

    /// AFFINITY_INFO's answer (On, Off or OnPending).
    fn affinity_info(&self, caller: usize, target: usize) -> PowerState {
        let answer = match self.call(caller, PSCI_AFFINITY_INFO_64, [target as u64, 0, 0]) {
            PsciOutcome::Return(0) => PowerState::On,
            PsciOutcome::Return(1) => PowerState::Off,
            PsciOutcome::Return(2) => PowerState::OnPending,
            other => panic!("AFFINITY_INFO returned {other:?}"),
        };
        if answer == PowerState::Off {
            assert!(
                self.downs[target].fetch_add(0, Ordering::Relaxed) > 0,
                "AFFINITY_INFO said OFF before the firmware had the physical CPU off"
            );
        }
        answer
    }

    /// vCPU `cpu` calls CPU_OFF; hv's exit path (`release_cpu`) then the
    /// firmware's CPU_OFF take its physical CPU down, maybe after other
    /// CPUs ran (the yield).
    fn cpu_off(&self, cpu: usize) {
        assert_eq!(self.call(cpu, PSCI_CPU_OFF, [0; 3]), PsciOutcome::CpuOff);
        thread::yield_now();
        self.firmware_cpu_off(cpu);
    }

    /// The firmware's CPU_OFF for the calling physical CPU.
    fn firmware_cpu_off(&self, cpu: usize) {
        self.downs[cpu].fetch_add(1, Ordering::Relaxed);
        self.running[cpu].store(false, Ordering::Release);
    }

    /// The physical CPU of vCPU `cpu` waits to be started until `callers`
    /// PSCI calls have returned; started, it enters the guest (marking its
    /// vCPU ON, as `enter_guest_on_this_cpu` does). Whether it started.
    fn await_start(&self, cpu: usize, callers: u8) -> bool {
        loop {
            if self.starts[cpu].load(Ordering::Acquire) > 0 {
                self.power.set_on(cpu);
                return true;
            }
            if self.calls_done.load(Ordering::Acquire) == callers {
                // Nothing can start it any more (the last check, after
                // every call returned, decides).
                if self.starts[cpu].load(Ordering::Acquire) > 0 {
                    continue;
                }
                return false;
            }
            thread::yield_now();
        }
    }
}

impl PsciHost for Machine {
    fn vcpu_index(&self, mpidr: u64) -> Option<usize> {
        (mpidr < CPUS as u64).then_some(mpidr as usize)
    }

    fn entry_is_valid(&self, entry: u64) -> bool {
        entry == ENTRY
    }

    /// The firmware's CPU_ON, as hv calls it (no retry): ALREADY_ON while
    /// the physical CPU is still on.
    fn power_on(&self, vcpu: usize, _entry: u64, _context: u64) -> Result<(), i64> {
        if self
            .refusals
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(INTERNAL_FAILURE);
        }
        if self.running[vcpu].load(Ordering::Acquire) {
            return Err(status::ALREADY_ON);
        }
        self.running[vcpu].store(true, Ordering::Relaxed);
        self.starts[vcpu].fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The firmware's AFFINITY_INFO for the physical CPU.
    fn is_physically_off(&self, vcpu: usize) -> bool {
        // Review 10: real firmware (TF-A psci_affinity_info: a plain load,
        // then ERET) gives the caller no acquire.
        !self.running[vcpu].load(Ordering::Relaxed)
    }

    /// A firmware with no uniprocessor Trusted OS (MIGRATE_INFO_TYPE 2):
    /// its CPU_OFF never returns, as the models' CPU_OFF assumes.
    fn trusted_os(&self) -> psci::FirmwareTrustedOs {
        psci::FirmwareTrustedOs::NoMigrationNeeded
    }
}

/// vCPUs 0 and 1 both start vCPU 2 while vCPU 2 may already be entering
/// the guest: exactly one SUCCESS, one start.
#[test]
fn concurrent_cpu_ons_start_the_vcpu_once() {
    loom::model(|| {
        let machine = Machine::new(&[1], 0);
        let other_caller = {
            let machine = machine.clone();
            thread::spawn(move || machine.cpu_on(1, 2))
        };
        let target = {
            let machine = machine.clone();
            thread::spawn(move || machine.await_start(2, 2))
        };
        let mine = machine.cpu_on(0, 2);
        let theirs = other_caller.join().unwrap();
        assert!(target.join().unwrap(), "nobody started vCPU 2");
        let mut results = [mine, theirs];
        results.sort_unstable();
        assert!(
            matches!(
                results,
                [status::ON_PENDING | status::ALREADY_ON, status::SUCCESS]
            ),
            "CPU_ON results {results:?}"
        );
        assert_eq!(machine.starts[2].load(Ordering::Relaxed), 1);
        assert_eq!(machine.power.get(2), PowerState::On);
    });
}

/// vCPUs 0 and 1 both start vCPU 2 and the firmware refuses the first
/// physical CPU_ON: that caller gets the failure and vCPU 2 goes back to
/// OFF, so the other call may still succeed (once), or find it pending.
#[test]
fn failed_cpu_on_leaves_the_vcpu_off_and_startable() {
    loom::model(|| {
        let machine = Machine::new(&[1], 1);
        let other_caller = {
            let machine = machine.clone();
            thread::spawn(move || machine.cpu_on(1, 2))
        };
        let target = {
            let machine = machine.clone();
            thread::spawn(move || machine.await_start(2, 2))
        };
        let mine = machine.cpu_on(0, 2);
        let theirs = other_caller.join().unwrap();
        let started = target.join().unwrap();
        let results = [mine, theirs];
        let count = |status| results.iter().filter(|&&r| r == status).count();
        assert_eq!(count(INTERNAL_FAILURE), 1, "CPU_ON results {results:?}");
        assert_eq!(
            count(INTERNAL_FAILURE) + count(status::SUCCESS) + count(status::ON_PENDING),
            2,
            "CPU_ON results {results:?}"
        );
        let starts = machine.starts[2].load(Ordering::Relaxed);
        assert_eq!(starts as usize, count(status::SUCCESS));
        assert_eq!(started, starts == 1);
        let expected = if started {
            PowerState::On
        } else {
            PowerState::Off
        };
        assert_eq!(machine.power.get(2), expected);
    });
}

/// vCPU 1 turns itself off while vCPU 0 starts it and vCPU 2 watches with
/// AFFINITY_INFO.
#[test]
fn cpu_on_racing_cpu_off_as_a_third_vcpu_sees_it() {
    loom::model(|| {
        let machine = Machine::new(&[1], 0);
        let target = {
            let machine = machine.clone();
            thread::spawn(move || {
                machine.last_words.store(1, Ordering::Relaxed);
                machine.cpu_off(1);
                machine.await_start(1, 1)
            })
        };
        let observer = {
            let machine = machine.clone();
            thread::spawn(move || {
                let seen = [machine.affinity_info(2, 1), machine.affinity_info(2, 1)];
                if seen.contains(&PowerState::Off) {
                    assert_eq!(
                        machine.last_words.load(Ordering::Relaxed),
                        1,
                        "AFFINITY_INFO said OFF before the target's last write was visible"
                    );
                }
                seen
            })
        };
        let result = machine.cpu_on(0, 1);
        let restarted = target.join().unwrap();
        let seen = observer.join().unwrap();
        assert!(
            result == status::SUCCESS || result == status::ALREADY_ON,
            "CPU_ON returned {result}"
        );
        assert_eq!(restarted, result == status::SUCCESS);
        assert_eq!(
            machine.starts[1].load(Ordering::Relaxed),
            restarted as u8,
            "started exactly once if CPU_ON succeeded, else never"
        );
        let history: &[PowerState] = if restarted {
            &[
                PowerState::On,
                PowerState::OffPending,
                PowerState::Off,
                PowerState::OnPending,
                PowerState::On,
            ]
        } else {
            &[PowerState::On, PowerState::OffPending, PowerState::Off]
        };
        // Everyone is done and the physical CPU is down unless restarted:
        // the next AFFINITY_INFO settles the end of the history.
        let last = machine.affinity_info(0, 1);
        assert_eq!(
            machine.power.get(1),
            *history.last().unwrap(),
            "AFFINITY_INFO then said {last:?}"
        );
        // The two answers appear in this order in the history, as
        // AFFINITY_INFO reports it (OFF_PENDING is ON).
        let answers: Vec<u64> = history.iter().map(|s| s.affinity_info()).collect();
        let seen = seen.map(|s| s.affinity_info());
        let first = answers.iter().position(|&a| a == seen[0]);
        let in_order = first.is_some_and(|i| answers[i..].contains(&seen[1]));
        assert!(
            in_order,
            "AFFINITY_INFO answered {seen:?}; the target went through {history:?}"
        );
    });
}

/// R7-9: vCPU 0 waits for AFFINITY_INFO to report vCPU 1 OFF after its
/// CPU_OFF, as Linux's cpu_kill does, then starts it again: that CPU_ON
/// succeeds whatever the timing of the physical power-down, and the OFF
/// comes after vCPU 1's last write.
///
/// vCPU 0 is a thread of its own, not the model's main thread: it waits
/// with `yield_now`, and loom never lets a thread that yielded read a
/// store it saw before the yield if a newer one exists. The main thread
/// made `last_words` (it saw the initial 0), so as the waiter it could
/// never read a stale 0 after the loop; with the OFF_PENDING store or the
/// settle's load weakened to Relaxed it did not fail. This thread never
/// touched `last_words` before its yields, so it can.
#[test]
fn cpu_on_after_affinity_info_off_succeeds() {
    loom::model(|| {
        let machine = Machine::new(&[1], 0);
        let target = {
            let machine = machine.clone();
            thread::spawn(move || {
                machine.last_words.store(1, Ordering::Relaxed);
                machine.cpu_off(1);
                machine.await_start(1, 1)
            })
        };
        let killer = {
            let machine = machine.clone();
            thread::spawn(move || {
                while machine.affinity_info(0, 1) != PowerState::Off {
                    thread::yield_now();
                }
                assert_eq!(
                    machine.last_words.load(Ordering::Relaxed),
                    1,
                    "AFFINITY_INFO said OFF before the target's last write was visible"
                );
                machine.cpu_on(0, 1)
            })
        };
        assert_eq!(killer.join().unwrap(), status::SUCCESS);
        assert!(target.join().unwrap(), "vCPU 1 was not started again");
        assert_eq!(machine.starts[1].load(Ordering::Relaxed), 1);
        assert_eq!(machine.power.get(1), PowerState::On);
    });
}

/// vCPU 1 powers down; then vCPU 0 asks AFFINITY_INFO (and may settle it
/// to OFF), then vCPU 2 asks and may read that settled OFF without asking
/// the firmware. Nothing else orders vCPU 2 after the others (the model's
/// thread joins come after its answer), yet its OFF answer comes after the
/// target's last write and the physical power-down: the settling
/// compare-and-swap releases what its firmware query acquired, and every
/// AFFINITY_INFO acquires the state.
#[test]
fn an_off_settled_by_another_caller_carries_the_targets_last_write() {
    loom::model(|| {
        let machine = Machine::new(&[1], 0);
        let target = {
            let machine = machine.clone();
            thread::spawn(move || {
                machine.last_words.store(1, Ordering::Relaxed);
                assert_eq!(machine.call(1, PSCI_CPU_OFF, [0; 3]), PsciOutcome::CpuOff);
                machine.firmware_cpu_off(1);
            })
        };
        let settler = {
            let machine = machine.clone();
            thread::spawn(move || machine.affinity_info(0, 1))
        };
        let reader = {
            let machine = machine.clone();
            thread::spawn(move || {
                let answer = machine.affinity_info(2, 1);
                if answer == PowerState::Off {
                    assert_eq!(
                        machine.last_words.load(Ordering::Relaxed),
                        1,
                        "AFFINITY_INFO said OFF before the target's last write was visible"
                    );
                }
                answer
            })
        };
        target.join().unwrap();
        settler.join().unwrap();
        reader.join().unwrap();
        assert_eq!(machine.affinity_info(0, 1), PowerState::Off);
    });
}

/// vCPU 1 powers down, vCPU 0 asks AFFINITY_INFO (and may settle it to
/// OFF), and vCPU 2 calls CPU_ON for vCPU 1 without asking AFFINITY_INFO
/// and with nothing ordering it after vCPU 0. Its CPU_ON may find vCPU 1
/// ON (ALREADY_ON) or start it (SUCCESS), but when it finds the OFF that
/// vCPU 0 settled it must not call the firmware's CPU_ON before the
/// firmware sees the physical CPU off (INTERNAL_FAILURE for the guest).
/// vCPU 0's firmware query is a relaxed read, so only the settling
/// compare-and-swap's release, acquired by vCPU 2's read of that OFF,
/// orders vCPU 2's firmware call after it.
#[test]
fn cpu_on_of_an_off_settled_by_another_caller_succeeds() {
    loom::model(|| {
        let machine = Machine::new(&[1], 0);
        // Relaxed: only steers vCPU 0's query after the power-down.
        let down = Arc::new(AtomicBool::new(false));
        let target = {
            let (machine, down) = (machine.clone(), down.clone());
            thread::spawn(move || {
                assert_eq!(machine.call(1, PSCI_CPU_OFF, [0; 3]), PsciOutcome::CpuOff);
                machine.firmware_cpu_off(1);
                down.store(true, Ordering::Relaxed);
            })
        };
        let settler = {
            let machine = machine.clone();
            thread::spawn(move || {
                if !down.load(Ordering::Relaxed) {
                    thread::yield_now();
                }
                machine.affinity_info(0, 1)
            })
        };
        // vCPU 2 lets the others run first (loom explores the schedules
        // where they do). A thread of its own: after a thread yields, loom
        // never lets it read a value it saw before, and the model's main
        // thread made the initial values.
        let caller = {
            let machine = machine.clone();
            thread::spawn(move || {
                for _ in 0..3 {
                    thread::yield_now();
                }
                machine.cpu_on(2, 1)
            })
        };
        let status = caller.join().unwrap();
        target.join().unwrap();
        settler.join().unwrap();
        assert!(
            status == status::SUCCESS || status == status::ALREADY_ON,
            "CPU_ON racing CPU_OFF returned {status}"
        );
        let starts = machine.starts[1].load(Ordering::Relaxed);
        assert_eq!(starts, u8::from(status == status::SUCCESS));
    });
}

/// The last CPU_OFF is noticed (`VcpuPower::others_up`, which the nested
/// L1's CPU_OFF asks to end a run no vCPU is left to end): vCPUs 0 and 1,
/// the only ones on, turn off at once; at least one of them finds the
/// other down. Without the full barrier between its `OffPending` store and
/// its loads, both could read the other's old ON (store buffering) and
/// both power down, leaving nothing running.
#[test]
fn two_last_cpu_offs_at_once_do_not_both_miss_it() {
    loom::model(|| {
        let machine = Machine::new(&[1], 0);
        let other = {
            let machine = machine.clone();
            thread::spawn(move || {
                assert_eq!(machine.call(1, PSCI_CPU_OFF, [0; 3]), PsciOutcome::CpuOff);
                machine.power.others_up(1, CPUS)
            })
        };
        assert_eq!(machine.call(0, PSCI_CPU_OFF, [0; 3]), PsciOutcome::CpuOff);
        let zero_sees_one_up = machine.power.others_up(0, CPUS);
        let one_sees_zero_up = other.join().unwrap();
        assert!(
            !(zero_sees_one_up && one_sees_zero_up),
            "both vCPUs saw the other up: neither ends the run"
        );
    });
}
