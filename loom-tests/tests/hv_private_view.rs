//! Loom model of a vCPU's read of another vCPU's GICR_ISPENDR0 /
//! GICR_ISACTIVER0 (`vgic::PrivateView`): the reader asks the owner for
//! its view and waits, the owner's CPU answers with its own read
//! (`vgic::publish_private_view`). Two vCPUs reading each other's
//! registers at once must both get the other's view: each answers the
//! other's request while it waits (`vgic::wait_for_private_view`'s
//! `meanwhile`), so neither waits for good.
#![cfg(loom)]

use hv::vgic::{self, Backlog, GicHardware, Held, SpiHolders, VirtualSgis};
use loom::sync::Arc;
use loom::thread;
use loom_tests::hv_gic::{FakeCpu, NothingActive};

const RD: u64 = 0x080a_0000;
const MAINTENANCE: u32 = 1 << vgic::DEFAULT_MAINTENANCE_INTID;
/// Enough polls for loom, whose yield lets the other thread run.
const POLLS: u32 = 8;

/// vCPU `n`'s redistributor: PPI 20 + n pending and active physically
/// (reads only).
struct Redistributor(u32);

impl GicHardware for Redistributor {
    fn read(&mut self, _address: u64, _size: u64) -> u64 {
        1 << (20 + self.0)
    }
    fn write(&mut self, address: u64, _size: u64, value: u64) {
        panic!("no write expected: {value:#x} to {address:#x}");
    }
}

/// vCPU `me`'s CPU answers a request for its view, if there is one.
fn publish(vcpus: &[VirtualSgis; 2], me: usize) {
    // A CPU holding nothing (two empty list registers).
    let mut cpu = FakeCpu::new([0; 2], NothingActive);
    let mut backlog = Backlog::new();
    vgic::publish_private_view(
        &vcpus[me],
        MAINTENANCE,
        (RD, 0x0800_0000),
        &SpiHolders::new(),
        &mut Held {
            cpu: &mut cpu,
            backlog: &mut backlog,
        },
        &mut Redistributor(me as u32),
    );
}

/// vCPU `me` reads vCPU `other`'s view, answering requests for its own
/// meanwhile, as `arch::gic::Gic::remote_view` does; then its exit ends
/// with the refill, which answers too (`Gic::fill_list_registers`).
fn read_other(vcpus: &[VirtualSgis; 2], me: usize) -> Option<(u32, u32)> {
    let other = 1 - me;
    let number = vcpus[other].view.request();
    // (The DSB and the kick SGI.)
    let view = vgic::wait_for_private_view(&vcpus[other], number, POLLS, || {
        publish(vcpus, me);
        thread::yield_now();
        true
    });
    publish(vcpus, me);
    view
}

#[test]
fn two_vcpus_reading_each_other_both_get_an_answer() {
    loom::model(|| {
        let vcpus = Arc::new([VirtualSgis::new(), VirtualSgis::new()]);
        let one = {
            let vcpus = vcpus.clone();
            thread::spawn(move || read_other(&vcpus, 1))
        };
        let zero = read_other(&vcpus, 0);
        let one = one.join().unwrap();
        assert_eq!(zero, Some((1 << 21, 1 << 21)), "vCPU 1's view");
        assert_eq!(one, Some((1 << 20, 1 << 20)), "vCPU 0's view");
    });
}
