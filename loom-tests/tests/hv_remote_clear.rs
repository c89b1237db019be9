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
//!
//! The owner's CPU posts its deactivations (`PostedDeactivations` over its
//! redistributor's active states, stop 27): they reach the redistributor
//! at its `synchronize` (the DSB) or, at the latest, once the model ends.
//! `a_view_after_a_remote_clear_reads_it_inactive` has the writer then
//! read the owner's GICR_ISACTIVER0 as `arch::gic` does (a view the owner
//! publishes at its exit, computed from its own read of the register): it
//! must read the PPI inactive, which needs the DSB after
//! `apply_private_clears`' deactivations (without it the view read the
//! PPI still active; with immediate deactivations nothing noticed).
#![cfg(loom)]

use hv::vgic::{self, Backlog, GicHardware, Held, NothingHeld, SetClear, SpiHolders, VirtualSgis};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::hv_gic::{active_sgi, refill, FakeCpu, PostedDeactivations, RedistributorActive};

const PPI: u32 = 23;
const RD: u64 = 0x080a_0000;
const GICR_ICACTIVER0: u64 = 0x1_0380;
const GICD: u64 = 0x0800_0000;
const GICR_ISACTIVER0: u64 = 0x1_0300;
const MAINTENANCE: u32 = 1 << vgic::DEFAULT_MAINTENANCE_INTID;
/// Enough polls for loom, whose yield lets the other thread run.
const POLLS: u32 = 8;

/// The owner's CPU: two list registers and the physical active states of
/// its PPIs, its deactivations posted (only the owner touches them).
type Owner = FakeCpu<2, PostedDeactivations<RedistributorActive>>;

/// The owner's CPU with `lrs`, PPI 23 physically active.
fn owner(lrs: [u64; 2]) -> Owner {
    Owner::new(
        lrs,
        PostedDeactivations::new(RedistributorActive::new(1 << PPI)),
    )
}

/// The owner's own reads of its redistributor: GICR_ISACTIVER0 as its
/// deactivations have reached it, nothing pending.
struct OwnRedistributor(RedistributorActive);

impl GicHardware for OwnRedistributor {
    fn read(&mut self, address: u64, _size: u64) -> u64 {
        match address - RD {
            GICR_ISACTIVER0 => u64::from(self.0.read()),
            _ => 0,
        }
    }
    fn write(&mut self, address: u64, _size: u64, value: u64) {
        panic!("no write expected: {value:#x} to {address:#x}");
    }
}

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

/// vCPU 1's GICR_ICACTIVER0 of vCPU 0's (`sgis`') PPI 23: a request to
/// vCPU 0, which it must then kick.
fn remote_clear(sgis: &VirtualSgis) {
    vgic::perform(
        vgic::redistributor(GICR_ICACTIVER0),
        RD + GICR_ICACTIVER0,
        4,
        Some(1 << PPI),
        sgis,
        MAINTENANCE,
        &mut NothingHeld,
        &mut NoWrites,
    );
    assert!(vgic::owner_must_refill(
        vgic::RegisterAction::SgiPpi(SetClear::ActiveClear),
        Some(1 << PPI)
    ));
}

fn model(lrs: [u64; 2]) {
    loom::model(move || {
        let sgis = Arc::new(VirtualSgis::new());
        let kicked = Arc::new(AtomicBool::new(false));
        // The guest's earlier GICR_ISACTIVER0 (forwarded: physically active).
        sgis.set_active(1 << PPI);
        let mut owner = owner(lrs);
        let remote = {
            let (sgis, kicked) = (sgis.clone(), kicked.clone());
            thread::spawn(move || {
                remote_clear(&sgis);
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
        // The GIC completes whatever deactivation is still posted.
        owner.physical.complete();
        assert_eq!(
            owner.physical.state.read(),
            0,
            "PPI {PPI} still physically active"
        );
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

/// vCPU 1 clears the active state of vCPU 0's PPI 23 (made active, placed
/// or not), then reads vCPU 0's GICR_ISACTIVER0 as `arch::gic` does
/// (`PrivateView::request`, the kick, `wait_for_private_view`); vCPU 0
/// runs an exit, then, kicked, another, each a refill followed by the
/// answer to a request for its view (`arch::gic::Gic::fill_list_registers`:
/// `apply_remote_clears`, `fill_list_registers`, `publish_private_view`).
/// The view must show the PPI inactive: vCPU 1's clear came first.
fn view_after_clear_model(lrs: [u64; 2]) {
    loom::model(move || {
        let sgis = Arc::new(VirtualSgis::new());
        let kicked = Arc::new(AtomicBool::new(false));
        sgis.set_active(1 << PPI);
        let mut owner = owner(lrs);
        let redistributor = owner.physical.state.clone();
        let reader = {
            let (sgis, kicked) = (sgis.clone(), kicked.clone());
            thread::spawn(move || {
                remote_clear(&sgis);
                // vCPU 1's read of vCPU 0's GICR_ISACTIVER0.
                let number = sgis.view.request();
                // The DSB and the kick SGI (for the clear and the read).
                kicked.store(true, Ordering::Release);
                vgic::wait_for_private_view(&sgis, number, POLLS, || {
                    thread::yield_now();
                    true
                })
            })
        };
        let holders = SpiHolders::new();
        let mut backlog = Backlog::new();
        let mut exit = |owner: &mut Owner| {
            refill(owner, &sgis, &holders, &mut backlog);
            vgic::publish_private_view(
                &sgis,
                MAINTENANCE,
                (RD, GICD),
                &holders,
                &mut Held {
                    cpu: owner,
                    backlog: &mut backlog,
                },
                &mut OwnRedistributor(redistributor.clone()),
            );
        };
        exit(&mut owner);
        while !kicked.load(Ordering::Acquire) {
            thread::yield_now();
        }
        exit(&mut owner);
        let (_, active) = reader.join().unwrap().expect("vCPU 0 answered");
        assert_eq!(
            active & (1 << PPI),
            0,
            "vCPU 0's view shows PPI {PPI} active after vCPU 1 cleared it"
        );
    });
}

#[test]
fn a_view_after_a_remote_clear_reads_it_inactive() {
    view_after_clear_model([0, 0]);
}

#[test]
fn a_view_after_a_remote_clear_of_an_unplaced_ppi_reads_it_inactive() {
    view_after_clear_model([active_sgi(8), active_sgi(9)]);
}

/// vCPU 0 clears the active state of its own PPI 23 (made active and
/// placed by a refill: `Held::clear_private`), then reads its
/// GICR_ISACTIVER0: the PPI must read inactive, which needs the DSB after
/// `Held::clear_private`'s deactivation (one thread: the posted
/// deactivation, not an interleaving, is what this checks).
#[test]
fn the_owners_own_clear_then_read_reads_it_inactive() {
    loom::model(|| {
        let sgis = VirtualSgis::new();
        sgis.set_active(1 << PPI);
        let mut owner = owner([0, 0]);
        let redistributor = owner.physical.state.clone();
        let holders = SpiHolders::new();
        let mut backlog = Backlog::new();
        refill(&mut owner, &sgis, &holders, &mut backlog);
        assert_eq!(owner.holding(PPI), 1);
        let mut access = |offset: u64, write: Option<u64>| {
            vgic::perform(
                vgic::redistributor(offset),
                RD + offset,
                4,
                write,
                &sgis,
                MAINTENANCE,
                &mut Held {
                    cpu: &mut owner,
                    backlog: &mut backlog,
                },
                &mut OwnRedistributor(redistributor.clone()),
            )
        };
        access(GICR_ICACTIVER0, Some(1 << PPI));
        let active = access(GICR_ISACTIVER0, None);
        assert_eq!(active & (1 << PPI), 0, "read active after its own clear");
    });
}
