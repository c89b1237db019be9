//! Where L1's vCPUs run, and how L1 names them (portable; the machine side
//! is `arch::nested`, which answers L1's PSCI calls with `crate::psci`'s
//! state machine over this layout).
//!
//! vCPU 0 runs on the boot CPU (platform index 0), the shadow-mmu service
//! on [`SERVICE_CPU`], and vCPU k (k >= 1) on CPU k + 1: with N CPUs, L1
//! has N - 1 vCPUs from three CPUs on, one below (one CPU: the service
//! runs inline; two: the second CPU is the service's alone). L1 names
//! vCPU k by MPIDR_EL1 affinity k (Aff0 = k, Aff1-Aff3 zero: VMPIDR_EL2),
//! which is what its PSCI CPU_ON and AFFINITY_INFO take.

use crate::psci::FirmwareTrustedOs;
use core::sync::atomic::{AtomicU64, Ordering};

/// The physical CPU (platform index) the service runs on when there are
/// two or more.
pub const SERVICE_CPU: usize = 1;

/// MPIDR_EL1's affinity fields (Aff3, Aff2..Aff0).
const MPIDR_AFFINITY: u64 = 0xff_00ff_ffff;

/// L1's vCPUs on a machine of `cpus` CPUs, at most `most` (hv's tables).
pub fn l1_vcpus(cpus: usize, most: usize) -> usize {
    let vcpus = if cpus > SERVICE_CPU + 1 { cpus - 1 } else { 1 };
    vcpus.min(most).max(1)
}

/// The physical CPU (platform index) of vCPU `vcpu`.
pub const fn vcpu_cpu(vcpu: usize) -> usize {
    if vcpu == 0 {
        0
    } else {
        vcpu + SERVICE_CPU
    }
}

/// The vCPU physical CPU `cpu` runs, among L1's `vcpus` (None: the service
/// CPU, or a CPU beyond them).
pub fn cpu_vcpu(cpu: usize, vcpus: usize) -> Option<usize> {
    let vcpu = match cpu {
        0 => 0,
        SERVICE_CPU => return None,
        _ => cpu - SERVICE_CPU,
    };
    (vcpu < vcpus).then_some(vcpu)
}

/// The vCPU L1 names by `mpidr` (its MPIDR_EL1 value, of which only the
/// affinity fields count, as PSCI's target_cpu), among L1's `vcpus`.
pub fn vcpu_of_mpidr(mpidr: u64, vcpus: usize) -> Option<usize> {
    let affinity = mpidr & MPIDR_AFFINITY;
    usize::try_from(affinity).ok().filter(|&vcpu| vcpu < vcpus)
}

/// The Trusted OS as L1 is told of it (MIGRATE_INFO_TYPE/UP_CPU): the
/// firmware's answer with the resident core's physical MPIDR
/// (`physical_mpidrs`, by platform index) put in L1's terms, the MPIDR of
/// the vCPU that runs on that core; a core no vCPU of L1 runs on (the
/// service's, or one beyond) is none of L1's business: no migration needed.
pub fn l1_trusted_os(
    firmware: FirmwareTrustedOs,
    physical_mpidrs: &[u64],
    vcpus: usize,
) -> FirmwareTrustedOs {
    let FirmwareTrustedOs::Uniprocessor { resident_mpidr } = firmware else {
        return firmware;
    };
    let affinity = resident_mpidr & MPIDR_AFFINITY;
    physical_mpidrs
        .iter()
        .position(|&m| m & MPIDR_AFFINITY == affinity)
        .and_then(|cpu| cpu_vcpu(cpu, vcpus))
        .map_or(FirmwareTrustedOs::NoMigrationNeeded, |vcpu| {
            FirmwareTrustedOs::Uniprocessor {
                resident_mpidr: vcpu as u64,
            }
        })
}

/// hv's kick SGIs each of `N` vCPUs took: in all (the run's summary) and
/// in its current life, since L1's last CPU_ON of it (review 47 R47-8: a
/// restarted vCPU's check is not met by what its earlier life took).
#[derive(Debug)]
pub struct KickCounts<const N: usize> {
    total: [AtomicU64; N],
    at_start: [AtomicU64; N],
}

impl<const N: usize> KickCounts<N> {
    pub const fn new() -> Self {
        KickCounts {
            total: [const { AtomicU64::new(0) }; N],
            at_start: [const { AtomicU64::new(0) }; N],
        }
    }

    /// vCPU `vcpu` took a kick SGI (on its own CPU).
    pub fn took(&self, vcpu: usize) {
        if let Some(total) = self.total.get(vcpu) {
            total.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// vCPU `vcpu` is (re)started (L1's CPU_ON; its CPU is off, so it
    /// takes none meanwhile): its life's count starts at 0.
    pub fn started(&self, vcpu: usize) {
        if let (Some(total), Some(at_start)) = (self.total.get(vcpu), self.at_start.get(vcpu)) {
            at_start.store(total.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// The kicks vCPU `vcpu` took in its current life.
    pub fn this_life(&self, vcpu: usize) -> u64 {
        match (self.total.get(vcpu), self.at_start.get(vcpu)) {
            (Some(total), Some(at_start)) => total
                .load(Ordering::Relaxed)
                .wrapping_sub(at_start.load(Ordering::Relaxed)),
            _ => 0,
        }
    }

    /// The kicks all vCPUs took, in all their lives.
    pub fn total(&self) -> u64 {
        self.total.iter().map(|k| k.load(Ordering::Relaxed)).sum()
    }
}

impl<const N: usize> Default for KickCounts<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// With several vCPUs under the recycling demo, whose vCPUs but 0 each run
/// one L2 for long while vCPU 0's switches recycle contexts: the first vCPU
/// but 0 that L1 started (`started`, by vCPU) and that never took hv's
/// kick SGI in its current life (`kick_irqs`, [`KickCounts::this_life`]),
/// i.e. that no recycle interrupted in a victim's L2 (a kick pass that
/// skips a live vCPU leaves it so).
pub fn unkicked_vcpu(started: &[bool], kick_irqs: &[u64]) -> Option<usize> {
    started
        .iter()
        .zip(kick_irqs)
        .enumerate()
        .skip(1)
        .find(|&(_, (&started, &kicks))| started && kicks == 0)
        .map(|(vcpu, _)| vcpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::psci::{handle, status, PowerState, PsciHost, PsciOutcome, VcpuPower};
    use core::cell::{Cell, RefCell};
    use smccc::psci::*;
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn layout() {
        assert_eq!(l1_vcpus(1, 7), 1);
        assert_eq!(l1_vcpus(2, 7), 1, "the second CPU is the service's");
        assert_eq!(l1_vcpus(3, 7), 2);
        assert_eq!(l1_vcpus(4, 7), 3);
        assert_eq!(l1_vcpus(8, 7), 7);
        assert_eq!(l1_vcpus(8, 3), 3, "bounded by hv's tables");
        assert_eq!([0, 1, 2].map(vcpu_cpu), [0, 2, 3]);
        for vcpu in 0..3 {
            assert_eq!(cpu_vcpu(vcpu_cpu(vcpu), 3), Some(vcpu));
        }
        assert_eq!(cpu_vcpu(SERVICE_CPU, 3), None);
        assert_eq!(cpu_vcpu(4, 3), None);
        assert_eq!(
            vcpu_of_mpidr(0x8000_0002, 3),
            Some(2),
            "RES1 bit 31 ignored"
        );
        assert_eq!(vcpu_of_mpidr(3, 3), None);
        assert_eq!(vcpu_of_mpidr(0x100, 3), None, "Aff1 names no vCPU");
        assert_eq!(vcpu_of_mpidr(1 << 32, 3), None, "Aff3 names no vCPU");
    }

    #[test]
    fn a_restarted_vcpus_vncr_page_is_cleared() {
        use crate::nested::vncr::{El1Register, VncrPage, HCR_EL2};
        let page = VncrPage::default();
        page.set(HCR_EL2, 0x8000_0000);
        page.set_el1(El1Register::Vbar, 0x4000_0800);
        page.clear();
        assert_eq!(page.hcr(), 0);
        assert_eq!(page.el1(El1Register::Vbar), 0);
    }

    #[test]
    fn every_started_vcpu_but_0_was_kicked() {
        assert_eq!(unkicked_vcpu(&[true, true, true], &[0, 3, 1]), None);
        assert_eq!(unkicked_vcpu(&[true, true, true], &[5, 3, 0]), Some(2));
        assert_eq!(
            unkicked_vcpu(&[true, true, false], &[0, 1, 0]),
            None,
            "a vCPU L1 never started is not asked"
        );
        assert_eq!(unkicked_vcpu(&[true], &[0]), None, "vCPU 0 alone");
    }

    /// Review 47 R47-8: what a vCPU took in its first life does not meet
    /// the check for its second.
    #[test]
    fn a_restarted_vcpu_is_checked_for_kicks_in_its_new_life() {
        let kicks = KickCounts::<3>::new();
        let lives = |kicks: &KickCounts<3>| [0, 1, 2].map(|v| kicks.this_life(v));
        for vcpu in 0..3 {
            kicks.started(vcpu);
        }
        kicks.took(1);
        kicks.took(2);
        kicks.took(2);
        assert_eq!(unkicked_vcpu(&[true; 3], &lives(&kicks)), None);
        // vCPU 2 turns off and is started again.
        kicks.started(2);
        assert_eq!(lives(&kicks), [0, 1, 0]);
        assert_eq!(unkicked_vcpu(&[true; 3], &lives(&kicks)), Some(2));
        kicks.took(2);
        assert_eq!(unkicked_vcpu(&[true; 3], &lives(&kicks)), None);
        assert_eq!(kicks.total(), 4, "the summary counts every life");
        // Out of range: nothing.
        kicks.took(3);
        kicks.started(3);
        assert_eq!(kicks.this_life(3), 0);
        assert_eq!(kicks.total(), 4);
    }

    #[test]
    fn trusted_os_in_l1_terms() {
        let physical = [0x8000_0000, 0x8000_0001, 0x8000_0002, 0x8000_0003];
        let on = |mpidr| FirmwareTrustedOs::Uniprocessor {
            resident_mpidr: mpidr,
        };
        assert_eq!(l1_trusted_os(on(0x8000_0003), &physical, 3), on(2));
        assert_eq!(l1_trusted_os(on(0), &physical, 3), on(0));
        assert_eq!(
            l1_trusted_os(on(1), &physical, 3),
            FirmwareTrustedOs::NoMigrationNeeded,
            "the service's core is not L1's"
        );
        assert_eq!(
            l1_trusted_os(on(0x100), &physical, 3),
            FirmwareTrustedOs::NoMigrationNeeded
        );
        assert_eq!(
            l1_trusted_os(FirmwareTrustedOs::NoMigrationNeeded, &physical, 3),
            FirmwareTrustedOs::NoMigrationNeeded
        );
    }

    /// L1's three vCPUs (four CPUs) as `arch::nested` runs them: a
    /// firmware whose CPUs go down some time after their CPU_OFF.
    #[derive(Default)]
    struct FakeL1 {
        started: RefCell<Vec<(usize, u64, u64)>>,
        /// The physical CPUs still running after their vCPU's CPU_OFF.
        going_down: Cell<[bool; 3]>,
    }

    impl PsciHost for FakeL1 {
        fn vcpu_index(&self, mpidr: u64) -> Option<usize> {
            vcpu_of_mpidr(mpidr, 3)
        }
        fn entry_is_valid(&self, entry: u64) -> bool {
            (0x4000_0000..0x4060_0000).contains(&entry) && entry.is_multiple_of(4)
        }
        fn power_on(&self, vcpu: usize, entry: u64, context: u64) -> Result<(), i64> {
            self.started.borrow_mut().push((vcpu, entry, context));
            Ok(())
        }
        fn is_physically_off(&self, vcpu: usize) -> bool {
            !self.going_down.get()[vcpu]
        }
        fn trusted_os(&self) -> FirmwareTrustedOs {
            FirmwareTrustedOs::NoMigrationNeeded
        }
    }

    #[test]
    fn three_vcpus_on_off_on() {
        let (power, l1) = (VcpuPower::new(), FakeL1::default());
        power.set_on(0);
        let call = |caller, function, args| handle(function, args, caller, &power, &l1);
        let on = |target, context| call(0, PSCI_CPU_ON_64, [target, 0x4000_1000, context]);
        let affinity = |target| call(0, PSCI_AFFINITY_INFO_64, [target, 0, 0]);
        let ret = |status: i64| PsciOutcome::Return(status as u64);
        // No vCPU 3 with four CPUs; Aff1 names none either.
        assert_eq!(on(3, 0), ret(status::INVALID_PARAMETERS));
        assert_eq!(on(0x100, 0), ret(status::INVALID_PARAMETERS));
        assert_eq!(affinity(3), ret(status::INVALID_PARAMETERS));
        assert_eq!(on(0, 0), ret(status::ALREADY_ON));
        assert_eq!(
            call(0, PSCI_CPU_ON_64, [1, 0x4000_1002, 0]),
            ret(status::INVALID_ADDRESS),
            "not an instruction's address"
        );
        assert_eq!(on(1, 11), ret(status::SUCCESS));
        assert_eq!(on(2, 22), ret(status::SUCCESS));
        // Started, not yet running on their CPUs.
        assert_eq!(on(2, 0), ret(status::ON_PENDING));
        assert_eq!(affinity(2), PsciOutcome::Return(2));
        power.set_on(1);
        power.set_on(2);
        assert_eq!(on(1, 0), ret(status::ALREADY_ON));
        assert_eq!(affinity(1), PsciOutcome::Return(0));
        // vCPU 2 turns itself off: ON while its CPU goes down, then OFF.
        l1.going_down.set([false, false, true]);
        assert_eq!(call(2, PSCI_CPU_OFF, [0; 3]), PsciOutcome::CpuOff);
        assert!(power.others_up(2, 3));
        assert_eq!(affinity(2), PsciOutcome::Return(0));
        assert_eq!(on(2, 0), ret(status::ALREADY_ON));
        l1.going_down.set([false; 3]);
        assert_eq!(affinity(2), PsciOutcome::Return(1));
        assert_eq!(power.get(2), PowerState::Off);
        // Started again, with its new context.
        assert_eq!(on(2, 33), ret(status::SUCCESS));
        assert_eq!(
            *l1.started.borrow(),
            [
                (1, 0x4000_1000, 11),
                (2, 0x4000_1000, 22),
                (2, 0x4000_1000, 33)
            ]
        );
        assert_eq!(affinity(2), PsciOutcome::Return(2));
    }

    #[test]
    fn the_last_cpu_off_is_noticed() {
        let power = VcpuPower::new();
        let l1 = FakeL1::default();
        power.set_on(0);
        assert!(!power.others_up(0, 3), "vCPUs 1 and 2 never started");
        assert_eq!(
            handle(PSCI_CPU_ON_64, [2, 0x4000_0000, 0], 0, &power, &l1),
            PsciOutcome::Return(0)
        );
        assert!(power.others_up(0, 3), "ON_PENDING is up");
        power.set_on(2);
        assert_eq!(
            handle(PSCI_CPU_OFF, [0; 3], 0, &power, &l1),
            PsciOutcome::CpuOff
        );
        assert!(power.others_up(0, 3));
        assert_eq!(
            handle(PSCI_CPU_OFF, [0; 3], 2, &power, &l1),
            PsciOutcome::CpuOff
        );
        assert!(
            !power.others_up(2, 3),
            "vCPU 0 going down (OFF_PENDING) is down for the last one"
        );
    }
}
