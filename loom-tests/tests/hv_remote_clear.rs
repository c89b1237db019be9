//! Loom model of review 27 R27-1: another vCPU's GICR_ICACTIVER0 for a
//! PPI the owner's vCPU made active (GICR_ISACTIVER0, physically active,
//! waiting in `VirtualSgis` for the owner's refill) races with that
//! refill. The remote write runs hv's own `vgic::perform` with
//! `NothingHeld` (a request to the owner) and then kicks the owner; the
//! owner runs an exit's refill as `arch::gic` does
//! (`vgic::apply_remote_clears`, then `vgic::fill_list_registers`), and
//! once the kick arrives, another one. In every interleaving the PPI must
//! end inactive both in the list registers and physically, deactivated
//! exactly once; with free list registers the refill may place it first
//! (then the kick's refill withdraws it), with none free it is put back
//! unplaced (then the request ends it).
#![cfg(loom)]

use hv::vgic::{self, Backlog, GicHardware, NothingHeld, SetClear, SpiHolders, VirtualSgis};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::hv_gic::{active_sgi, refill, FakeCpu, PrivateActive};

const PPI: u32 = 23;
const RD: u64 = 0x080a_0000;
const GICR_ICACTIVER0: u64 = 0x1_0380;
const MAINTENANCE: u32 = 1 << vgic::DEFAULT_MAINTENANCE_INTID;

/// The owner's CPU: two list registers and the physical active states of
/// its PPIs (only the owner touches it).
type Owner = FakeCpu<2, PrivateActive>;

/// The remote writer's view of the GIC: a clear-active of a PPI must not
/// reach the hardware (the owner ends it), so any write fails the model.
struct NoWrites;

impl GicHardware for NoWrites {
    fn read(&mut self, _address: u64, _size: u64) -> u64 {
        0
    }
    fn write(&mut self, address: u64, _size: u64, value: u64) {
        panic!("forwarded {value:#x} to {address:#x}");
    }
}

fn model(lrs: [u64; 2]) {
    loom::model(move || {
        let sgis = Arc::new(VirtualSgis::new());
        let kicked = Arc::new(AtomicBool::new(false));
        // The guest's earlier GICR_ISACTIVER0 (forwarded: physically active).
        sgis.set_active(1 << PPI);
        let mut owner = Owner::new(lrs, PrivateActive(1 << PPI));
        let remote = {
            let (sgis, kicked) = (sgis.clone(), kicked.clone());
            thread::spawn(move || {
                vgic::perform(
                    vgic::redistributor(GICR_ICACTIVER0),
                    RD + GICR_ICACTIVER0,
                    4,
                    Some(1 << PPI),
                    &sgis,
                    MAINTENANCE,
                    &mut NothingHeld,
                    &mut NoWrites,
                );
                assert!(vgic::owner_must_refill(
                    vgic::RegisterAction::SgiPpi(SetClear::ActiveClear),
                    Some(1 << PPI)
                ));
                // The DSB and the kick SGI.
                kicked.store(true, Ordering::Release);
            })
        };
        let mut backlog = Backlog::new();
        let holders = SpiHolders::new();
        refill(&mut owner, &sgis, &holders, &mut backlog);
        remote.join().unwrap();
        // The kick is taken (its ISB orders the refill after it).
        assert!(kicked.load(Ordering::Acquire));
        refill(&mut owner, &sgis, &holders, &mut backlog);
        assert_eq!(
            owner.holding(PPI),
            0,
            "PPI {PPI} still in a list register: {:x?}",
            owner.lrs
        );
        assert_eq!(owner.physical.0, 0, "PPI {PPI} still physically active");
        assert_eq!(sgis.unplaced_active(), 0);
        assert_eq!(sgis.requested_clears(SetClear::ActiveClear), 0);
    });
}

/// Free list registers: the refill may place the PPI before the clear.
#[test]
fn remote_clear_active_with_free_list_registers() {
    model([0, 0]);
}

/// Every list register in use (two active SGIs): the refill takes the
/// set-active and puts it back, possibly around the remote clear.
#[test]
fn remote_clear_active_while_the_refill_puts_it_back() {
    model([active_sgi(8), active_sgi(9)]);
}
