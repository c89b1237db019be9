//! Loom models of review 27 R27-7: SPIs made active through
//! GICD_ISACTIVER<n> are held by one vCPU's list registers, and another
//! vCPU's GICD_ICACTIVER<n> for them is a request to that vCPU. They run
//! hv's own `vgic::perform_spi` on the writer's thread (vCPU 1) against the
//! holder's exit refill on its own (vCPU 0: `vgic::apply_remote_clears`,
//! then `vgic::fill_list_registers`, as `arch::gic` does), and once the
//! writer's kick arrives, another refill. The per-vCPU summary words
//! (`VirtualSpis`'s words to place and to clear, set after the SPI word
//! itself, swapped by the owner before it reads the words) are what the
//! first models check: no set-active and no request may be lost to the
//! race. The later ones check `vgic::SpiHolders`'s gate: an SPI the
//! hardware delivers during a set-active, a clear-active request taken at
//! a later set-active, and posts racing a CPU_OFF.
//!
//! Every CPU here posts its deactivations (`PostedDeactivations`, stop 26
//! audit), as ICC_DIR_EL1 writes are: they reach the distributor at the
//! CPU's `synchronize` (the DSB) or where a model says the GIC completed
//! them, so the DSBs hv issues before a writer reads the distributor inside
//! the gate are checked: removing `release_list_registers`',
//! `apply_spi_requests`' or `Held::clear`'s fails a model here. In
//! `an_spi_delivered_during_a_set_active_has_one_holder` vCPU 0's
//! acknowledgement is posted as well (`PostedAcknowledgements`), which
//! checks that `take_interrupts`' DSB after its acknowledge loop comes
//! before it releases the gate.
#![cfg(loom)]

use hv::vgic::{
    self, Backlog, GicHardware, Held, PhysicalCpuInterface, SetClear, SpiAccess, SpiHolders,
    VirtualSgis,
};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::hv_gic::{
    active_sgi, refill, ActiveSpi, FakeCpu, PostedAcknowledgements, PostedDeactivations, PRIORITY,
};

const SPI: u32 = 33;
const GICD: u64 = 0x0800_0000;
const ISACTIVER1: u64 = 0x0304;
const ICACTIVER1: u64 = 0x0384;
const ICPENDR1: u64 = 0x0284;
const ISPENDR1: u64 = 0x0204;

/// One CPU: two list registers; the distributor's active state of the SPI,
/// which the writer's set-active makes active and the holder's
/// deactivation ends once it is complete (a deactivation too many fails
/// the model).
type Cpu = FakeCpu<2, PostedDeactivations>;

/// What the vCPUs share: their states and the SPI holders.
type Shared = Arc<([VirtualSgis; 2], SpiHolders)>;

fn shared() -> Shared {
    Arc::new(([VirtualSgis::new(), VirtualSgis::new()], SpiHolders::new()))
}

/// The writer's view of the distributor: a set-active reaches it, any
/// other write (a forwarded clear-active of an SPI another vCPU holds)
/// fails the model.
struct WriterHardware(Arc<ActiveSpi>);

impl GicHardware for WriterHardware {
    fn read(&mut self, _address: u64, _size: u64) -> u64 {
        self.0.active.load(Ordering::Acquire) as u64 * (1 << (SPI - 32))
    }
    fn write(&mut self, address: u64, _size: u64, value: u64) {
        assert_eq!(
            (address, value),
            (GICD + ISACTIVER1, 1 << (SPI - 32)),
            "only the set-active is forwarded"
        );
        self.0.active.store(true, Ordering::Release);
    }
}

/// vCPU 1's write of `value` to the distributor register at `offset`, its
/// own CPU holding nothing; every SPI routed to vCPU 0. Returns the kicks.
fn writer_access(shared: &Shared, distributor: &Arc<ActiveSpi>, offset: u64, value: u64) -> u32 {
    routed_writer_access(shared, distributor, offset, value, Some(0))
}

/// `writer_access` with every SPI's GICD_IROUTER naming `route` (None:
/// IRM = 1).
fn routed_writer_access(
    shared: &Shared,
    distributor: &Arc<ActiveSpi>,
    offset: u64,
    value: u64,
    route: Option<usize>,
) -> u32 {
    let mut cpu = Cpu::new([0; 2], PostedDeactivations::new(distributor.clone()));
    let kicks = access(
        shared,
        1,
        &mut cpu,
        &mut WriterHardware(distributor.clone()),
        offset,
        value,
        route,
    );
    assert_eq!(cpu.lrs, [0; 2], "the writer holds nothing");
    kicks
}

/// vCPU `writer`'s write of `value` at `offset` on its CPU `cpu` (its
/// backlog empty), both vCPUs on, every SPI routed to `route`.
fn access(
    (vcpus, holders): &([VirtualSgis; 2], SpiHolders),
    writer: usize,
    cpu: &mut Cpu,
    hw: &mut impl GicHardware,
    offset: u64,
    value: u64,
    route: Option<usize>,
) -> u32 {
    let vgic::RegisterAction::Spi { op, first } = vgic::distributor(offset) else {
        unreachable!("an SPI register");
    };
    let access = SpiAccess {
        writer,
        vcpus,
        holders,
        is_on: |_| true,
        lines: 1020,
        route: move |_| route,
    };
    let mut backlog = Backlog::new();
    let (_, kicks) = vgic::perform_spi(
        op,
        first,
        GICD + offset,
        4,
        Some(value),
        &access,
        &mut Held {
            cpu,
            backlog: &mut backlog,
        },
        hw,
    );
    assert!(backlog.is_empty());
    kicks
}

/// vCPU 1 runs `write` (its access and the checks on it, then the DSB and
/// the kick SGI) while vCPU 0 runs an exit's refill; vCPU 0 then takes the
/// kick and refills again.
fn write_during_refill(
    shared: &Shared,
    cpu: &mut Cpu,
    backlog: &mut Backlog,
    write: impl FnOnce(&Shared) + Send + 'static,
) {
    let kicked = Arc::new(AtomicBool::new(false));
    let remote = {
        let (shared, kicked) = (shared.clone(), kicked.clone());
        thread::spawn(move || {
            write(&shared);
            kicked.store(true, Ordering::Release);
        })
    };
    let (vcpus, holders) = &**shared;
    refill(cpu, &vcpus[0], holders, backlog);
    remote.join().unwrap();
    assert!(kicked.load(Ordering::Acquire));
    refill(cpu, &vcpus[0], holders, backlog);
    // The GIC completes whatever deactivation is still posted.
    cpu.physical.complete();
}

/// vCPU 0's own GICD_ISACTIVER1 for SPI 33, before the model's threads:
/// physically active, recorded for vCPU 0 (its holder), placed by `cpu`'s
/// next refill.
fn own_set_active(shared: &Shared, cpu: &mut Cpu, distributor: &Arc<ActiveSpi>) {
    let kicks = access(
        shared,
        0,
        cpu,
        &mut WriterHardware(distributor.clone()),
        ISACTIVER1,
        1 << (SPI - 32),
        None,
    );
    assert_eq!(kicks, 0);
}

/// vCPU 0 holds SPI 33 made active (placed or not); vCPU 1 clears it
/// while vCPU 0 refills. In every interleaving it ends inactive in the
/// list registers and physically, deactivated exactly once, nothing
/// forwarded, no request left.
fn clear_model(lrs: [u64; 2]) {
    loom::model(move || {
        let shared = shared();
        let distributor = Arc::new(ActiveSpi::new(SPI));
        let mut cpu = Cpu::new(lrs, PostedDeactivations::new(distributor.clone()));
        own_set_active(&shared, &mut cpu, &distributor);
        let mut backlog = Backlog::new();
        let writers_view = distributor.clone();
        write_during_refill(&shared, &mut cpu, &mut backlog, move |shared| {
            let kicks = writer_access(shared, &writers_view, ICACTIVER1, 1 << (SPI - 32));
            assert_eq!(kicks, 1 << 0, "the holder is kicked");
        });
        let vcpus = &shared.0;
        assert_eq!(cpu.holding(SPI), 0, "SPI {SPI} still in a list register");
        assert!(!distributor.active.load(Ordering::Acquire));
        assert_eq!(vcpus[0].spis.unplaced(0), 0);
        assert_eq!(vcpus[0].spis.requested_clears(0), 0);
    });
}

/// Free list registers: the refill may place the SPI before the clear.
#[test]
fn remote_spi_clear_active_with_free_list_registers() {
    clear_model([0, 0]);
}

/// Every list register in use (two active SGIs): the refill takes the
/// set-active and puts it back, possibly around the remote clear.
#[test]
fn remote_spi_clear_active_while_the_refill_puts_it_back() {
    clear_model([active_sgi(8), active_sgi(9)]);
}

/// vCPU 1 makes SPI 33 active, routed to vCPU 0, while vCPU 0 refills:
/// after the kick's refill it is in exactly one of vCPU 0's list
/// registers, active with the HW bit, physically active; the guest's
/// deactivation of it ends the physical active state.
#[test]
fn remote_spi_set_active_is_placed_once() {
    loom::model(|| {
        let shared = shared();
        let distributor = Arc::new(ActiveSpi::new(SPI));
        let mut cpu = Cpu::new([0; 2], PostedDeactivations::new(distributor.clone()));
        let mut backlog = Backlog::new();
        let writers_view = distributor.clone();
        write_during_refill(&shared, &mut cpu, &mut backlog, move |shared| {
            let kicks = writer_access(shared, &writers_view, ISACTIVER1, 1 << (SPI - 32));
            assert_eq!(kicks, 1 << 0, "the routed vCPU is kicked");
        });
        assert_eq!(cpu.holding(SPI), 1, "{:x?}", cpu.lrs);
        let n = cpu
            .lrs
            .iter()
            .position(|&lr| lr & 0xffff_ffff == SPI as u64)
            .unwrap();
        let lr = cpu.lrs[n];
        assert_eq!(lr >> 62, 0b10, "active");
        assert_eq!((lr >> 61) & 1, 1, "HW");
        assert_eq!((lr >> 32) & 0x1fff, SPI as u64);
        assert!(!shared.0[0].spis.has_unplaced());
        // The guest's ICC_DIR_EL1: the HW list register's deactivation.
        cpu.lrs[n] = 0;
        cpu.deactivate(SPI);
        cpu.physical.complete();
        assert!(!distributor.active.load(Ordering::Acquire));
    });
}

/// hv acknowledges SPI 33 on vCPU 0's CPU, before the model's threads
/// (one exit's `take_interrupts`): physically active, in `cpu`'s list
/// registers (pending, HW) or, with none free, its backlog; vCPU 0 its
/// recorded holder.
fn acknowledged_on_vcpu0(shared: &Shared, cpu: &mut Cpu, backlog: &mut Backlog) {
    cpu.physical.state.pending.store(true, Ordering::Relaxed);
    let (vcpus, holders) = &**shared;
    vgic::take_interrupts(cpu, 25, &vcpus[0], holders, 0, backlog, |_| PRIORITY);
    assert!(cpu.physical.state.active.load(Ordering::Relaxed));
}

/// Review 35 R35-1: vCPU 0 holds SPI 33, which hv acknowledged for it
/// (pending in a HW list register, or with every list register in use
/// (`lrs`) in its backlog), so it is physically active; vCPU 1 makes it
/// active while vCPU 0 refills. The write has no effect on the
/// distributor (nothing is forwarded, no second holder): vCPU 0, asked,
/// makes its own entry active. After the kick's refill exactly one list
/// register holds the SPI, active and pending (hv's acknowledged instance
/// is still pending for the guest), and nothing is left to place.
fn set_active_of_a_held_spi_model(lrs: [u64; 2]) {
    loom::model(move || {
        let shared = shared();
        let distributor = Arc::new(ActiveSpi::new(SPI));
        let mut cpu = Cpu::new(lrs, PostedDeactivations::new(distributor.clone()));
        let mut backlog = Backlog::new();
        acknowledged_on_vcpu0(&shared, &mut cpu, &mut backlog);
        if lrs != [0; 2] {
            assert_eq!(backlog.as_slice(), [SPI as u16]);
            // The guest's EOI of SGI 9 frees a list register for it.
            cpu.lrs[1] = 0;
        }
        let writers_view = distributor.clone();
        write_during_refill(&shared, &mut cpu, &mut backlog, move |shared| {
            let kicks =
                routed_writer_access(shared, &writers_view, ISACTIVER1, 1 << (SPI - 32), None);
            assert_eq!(kicks, 1 << 0, "the holder is asked and kicked");
            assert!(!shared.0[1].spis.has_unplaced(), "no second holder");
        });
        assert_eq!(cpu.holding(SPI), 1, "{:x?}", cpu.lrs);
        assert!(backlog.is_empty());
        let lr = cpu
            .lrs
            .iter()
            .copied()
            .find(|&lr| lr & 0xffff_ffff == SPI as u64)
            .unwrap();
        assert_eq!(lr >> 62, 0b11, "active and pending: {lr:x}");
        assert!(!shared.0[0].spis.has_unplaced());
        assert_eq!(shared.0[0].spis.unplaced(0), 0);
        assert!(distributor.active.load(Ordering::Acquire));
    });
}

#[test]
fn set_active_of_an_spi_held_in_a_list_register_makes_that_entry_active() {
    set_active_of_a_held_spi_model([0, 0]);
}

#[test]
fn set_active_of_an_spi_held_in_the_backlog_makes_it_active() {
    set_active_of_a_held_spi_model([active_sgi(8), active_sgi(9)]);
}

/// R35-1's first race, closed by `SpiHolders`'s gate: SPI 33 is pending
/// (routed to vCPU 0) when vCPU 1 makes it active (IRM = 1: the writer
/// holds what it makes active), and vCPU 0's CPU takes the interrupt
/// meanwhile (an exit's `take_interrupts`). Delivered before the write's
/// read of GICD_ISACTIVER1, the SPI is vCPU 0's and the write asks it to
/// make it active; after the forwarded write it is not delivered. Never
/// both: once each vCPU has refilled, exactly one list register of the two
/// CPUs holds SPI 33, and it is physically active. Without the gate,
/// delivered between the read and the write, it was held by both.
///
/// vCPU 0's acknowledgement is posted (`PostedAcknowledgements`, stop 27):
/// the distributor shows the SPI active only from its CPU's next
/// `synchronize`, so the one after the acknowledge loop must come before
/// the gate is released (moved after `drop(gate)`, which `hv_sgis` does
/// not notice, both vCPUs held it).
#[test]
fn an_spi_delivered_during_a_set_active_has_one_holder() {
    loom::model(|| {
        let shared = shared();
        let distributor = Arc::new(ActiveSpi::new(SPI));
        distributor.pending.store(true, Ordering::Relaxed);
        let writer = {
            let (shared, distributor) = (shared.clone(), distributor.clone());
            thread::spawn(move || {
                let mut cpu = Cpu::new([0; 2], PostedDeactivations::new(distributor.clone()));
                access(
                    &shared,
                    1,
                    &mut cpu,
                    &mut WriterHardware(distributor),
                    ISACTIVER1,
                    1 << (SPI - 32),
                    None,
                );
                // vCPU 1's next refill.
                let mut backlog = Backlog::new();
                refill(&mut cpu, &shared.0[1], &shared.1, &mut backlog);
                cpu
            })
        };
        // vCPU 0's acknowledgement shows in the distributor only from its
        // CPU's next `synchronize` (stop 27).
        let mut cpu =
            FakeCpu::<2, _>::new([0; 2], PostedAcknowledgements::new(distributor.clone()));
        let mut backlog = Backlog::new();
        let (vcpus, holders) = &*shared;
        vgic::take_interrupts(&mut cpu, 25, &vcpus[0], holders, 0, &mut backlog, |_| {
            PRIORITY
        });
        let writers_cpu = writer.join().unwrap();
        // The kick's refill.
        refill(&mut cpu, &vcpus[0], holders, &mut backlog);
        assert_eq!(
            cpu.holding(SPI) + writers_cpu.holding(SPI),
            1,
            "vCPU 0 {:x?}, vCPU 1 {:x?}",
            cpu.lrs,
            writers_cpu.lrs
        );
        assert!(backlog.is_empty());
        assert!(distributor.active.load(Ordering::Acquire));
    });
}

/// R35-1's second race, closed by `SpiHolders`'s gate: vCPU 0 holds SPI
/// 33 active (its own set-active, placed), and vCPU 1 has asked it to
/// clear it (GICD_ICACTIVER1, not yet applied). vCPU 1 then makes it
/// active again while vCPU 0 refills, applying the request. A clear then a
/// set: in every interleaving SPI 33 ends active, physically and in
/// exactly one list register of vCPU 0. Without the gate, vCPU 0 could
/// take the request after the set-active read the SPI active: it ended
/// the SPI and ignored the set-active, and the SPI ended inactive.
#[test]
fn a_clear_taken_during_a_later_set_active_leaves_it_active() {
    loom::model(|| {
        let shared = shared();
        let distributor = Arc::new(ActiveSpi::new(SPI));
        let mut cpu = Cpu::new([0; 2], PostedDeactivations::new(distributor.clone()));
        own_set_active(&shared, &mut cpu, &distributor);
        let mut backlog = Backlog::new();
        refill(&mut cpu, &shared.0[0], &shared.1, &mut backlog);
        let bit = 1 << (SPI - 32);
        assert_eq!(writer_access(&shared, &distributor, ICACTIVER1, bit), 1);
        let writers_view = distributor.clone();
        write_during_refill(&shared, &mut cpu, &mut backlog, move |shared| {
            routed_writer_access(shared, &writers_view, ISACTIVER1, bit, Some(0));
        });
        assert!(distributor.active.load(Ordering::Acquire), "ended inactive");
        assert_eq!(cpu.holding(SPI), 1, "{:x?}", cpu.lrs);
        assert!(cpu
            .lrs
            .iter()
            .any(|&lr| lr >> 62 == 0b10 && lr & 0xffff_ffff == SPI as u64));
    });
}

/// vCPU 0 holds SPI 33 active (its own set-active, placed) and clears it
/// itself (GICD_ICACTIVER1: `Held::clear` deactivates it on its own CPU,
/// posted until that CPU's `synchronize`) while vCPU 1 makes it active
/// again (stop 26 audit). When vCPU 1's write, inside its gate, sees vCPU
/// 0's write over, it follows the clear: the SPI must end active. Without
/// `Held::clear`'s `synchronize` the set-active reads the SPI still active
/// and has no effect, and the late deactivation leaves it inactive.
#[test]
fn a_set_active_after_the_holders_own_clear_leaves_it_active() {
    // Interleavings in which vCPU 1's look inside its gate came after the
    // clear, so the assertion below ran (a std counter, outside loom's
    // model): if none did, the model would pass without proving anything
    // (review 55 R55-5).
    static ASSERTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    loom::model(|| {
        let shared = shared();
        let distributor = Arc::new(ActiveSpi::new(SPI));
        let mut cpu = Cpu::new([0; 2], PostedDeactivations::new(distributor.clone()));
        own_set_active(&shared, &mut cpu, &distributor);
        let mut backlog = Backlog::new();
        refill(&mut cpu, &shared.0[0], &shared.1, &mut backlog);
        assert_eq!(cpu.holding(SPI), 1);
        let bit = 1 << (SPI - 32);
        let cleared = Arc::new(AtomicBool::new(false));
        let setter = {
            let (shared, distributor, cleared) =
                (shared.clone(), distributor.clone(), cleared.clone());
            thread::spawn(move || {
                let (vcpus, holders) = &*shared;
                // Whether vCPU 1's last look at the power states (the one
                // inside its gate) came after vCPU 0's clear.
                let after_clear = core::cell::Cell::new(false);
                let access = SpiAccess {
                    writer: 1,
                    vcpus,
                    holders,
                    is_on: |_| {
                        after_clear.set(cleared.load(Ordering::Acquire));
                        true
                    },
                    lines: 1020,
                    route: |_| None,
                };
                let mut cpu = Cpu::new([0; 2], PostedDeactivations::new(distributor.clone()));
                let mut backlog = Backlog::new();
                vgic::perform_spi(
                    SetClear::ActiveSet,
                    32,
                    GICD + ISACTIVER1,
                    4,
                    Some(bit),
                    &access,
                    &mut Held {
                        cpu: &mut cpu,
                        backlog: &mut backlog,
                    },
                    &mut WriterHardware(distributor),
                );
                after_clear.get()
            })
        };
        access(
            &shared,
            0,
            &mut cpu,
            &mut WriterHardware(distributor.clone()),
            ICACTIVER1,
            bit,
            None,
        );
        cleared.store(true, Ordering::Release);
        // The GIC completes whatever the clear left posted.
        cpu.physical.complete();
        let after_clear = setter.join().unwrap();
        if after_clear {
            assert!(
                distributor.active.load(Ordering::Acquire),
                "a set-active after the holder's own clear ended by its deactivation"
            );
            ASSERTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    assert!(
        ASSERTED.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "no interleaving had vCPU 1 look after the clear: the model proved nothing"
    );
}

/// The distributor as a writer whose posts a release may take sees it: a
/// set-active, a clear-active, a clear-pending or a set-pending of the SPI
/// reaches it (the last also from the release, review 44 R44-4).
struct PowerHardware(Arc<ActiveSpi>);

impl GicHardware for PowerHardware {
    fn read(&mut self, _address: u64, _size: u64) -> u64 {
        self.0.active.load(Ordering::Acquire) as u64 * (1 << (SPI - 32))
    }
    fn write(&mut self, address: u64, _size: u64, value: u64) {
        assert_eq!(value, 1 << (SPI - 32));
        match address - GICD {
            ISACTIVER1 => self.0.active.store(true, Ordering::Release),
            ICACTIVER1 => assert!(self.0.active.swap(false, Ordering::AcqRel)),
            ICPENDR1 => self.0.pending.store(false, Ordering::Release),
            ISPENDR1 => self.0.pending.store(true, Ordering::Release),
            offset => panic!("unexpected write to {offset:#x}"),
        }
    }
}

/// Review 35 R35-2 and review 37: vCPU 0 writes `offset` (SPI 33 routed to
/// vCPU 1; with `held`, hv acknowledged it for vCPU 1 before, which holds
/// it pending) while vCPU 1 calls CPU_OFF (marks itself off, then
/// `vgic::release_list_registers`), vCPU 0 having possibly seen it on.
/// Whatever vCPU 0 posted to vCPU 1 is taken by vCPU 1's release (inside
/// the gate, which vCPU 0's write holds from its power-state reads to its
/// last post): nothing of any kind stays in vCPU 1's words, also a post
/// landing after the release applied the requests it found (the release's
/// swap of each word takes it). After vCPU 0's refill the SPI is
/// physically active exactly when vCPU 0's list register holds it active.
///
/// vCPU 1's deactivations are posted (`PostedDeactivations`): they reach
/// the distributor at its `synchronize` (the release's DSB, inside the
/// gate) or, at the latest, once its release has returned. So a
/// deactivation the release leaves in flight can undo a set-active vCPU 0
/// makes after the release: checked whenever vCPU 0's write, inside its
/// gate, saw the release over (stop 26 audit; without the release's
/// `synchronize`, `set_active_of_a_held_spi_racing_a_cpu_off_leaves_no_request`
/// fails: "a set-active after the holder's release ended by its
/// deactivation").
fn post_racing_cpu_off_model(offset: u64, held: bool) {
    loom::model(move || {
        let shared = shared();
        let distributor = Arc::new(ActiveSpi::new(SPI));
        let vcpu1_on = Arc::new(AtomicBool::new(true));
        let mut vcpu1_cpu = Cpu::new([0; 2], PostedDeactivations::new(distributor.clone()));
        let mut vcpu1_backlog = Backlog::new();
        if held {
            distributor.pending.store(true, Ordering::Relaxed);
            let (vcpus, holders) = &*shared;
            vgic::take_interrupts(
                &mut vcpu1_cpu,
                25,
                &vcpus[1],
                holders,
                1,
                &mut vcpu1_backlog,
                |_| PRIORITY,
            );
            assert_eq!(vcpu1_cpu.holding(SPI), 1);
        }
        // Set by vCPU 1 once its release (and so its gate) is over: a
        // write of vCPU 0 that reads it set inside its own gate follows
        // the release.
        let released = Arc::new(AtomicBool::new(false));
        let going_off = {
            let (shared, vcpu1_on) = (shared.clone(), vcpu1_on.clone());
            let released = released.clone();
            let mut hw = PowerHardware(distributor.clone());
            thread::spawn(move || {
                // PSCI CPU_OFF: marked off (Release), then the release.
                vcpu1_on.store(false, Ordering::Release);
                let count = vgic::ListRegisterCount {
                    implemented: 2,
                    used: 2,
                };
                let (vcpus, holders) = &*shared;
                vgic::release_list_registers(
                    &mut vcpu1_cpu,
                    &vcpus[1],
                    holders,
                    &mut vcpu1_backlog,
                    count,
                    GICD,
                    &mut hw,
                );
                released.store(true, Ordering::Release);
                // The GIC completes whatever the release left posted.
                vcpu1_cpu.physical.complete();
            })
        };
        let vgic::RegisterAction::Spi { op, first } = vgic::distributor(offset) else {
            unreachable!("an SPI register");
        };
        let (vcpus, holders) = &*shared;
        // Whether vCPU 0's last look at vCPU 1's power state (the one
        // inside its gate) came after the release.
        let after_release = core::cell::Cell::new(false);
        let access = SpiAccess {
            writer: 0,
            vcpus,
            holders,
            is_on: |k: usize| {
                after_release.set(released.load(Ordering::Acquire));
                k == 0 || vcpu1_on.load(Ordering::Acquire)
            },
            lines: 1020,
            route: |_| Some(1),
        };
        let mut cpu = Cpu::new([0; 2], PostedDeactivations::new(distributor.clone()));
        let mut backlog = Backlog::new();
        vgic::perform_spi(
            op,
            first,
            GICD + offset,
            4,
            Some(1 << (SPI - 32)),
            &access,
            &mut Held {
                cpu: &mut cpu,
                backlog: &mut backlog,
            },
            &mut PowerHardware(distributor.clone()),
        );
        going_off.join().unwrap();
        if offset == ISACTIVER1 && after_release.get() {
            assert!(
                distributor.active.load(Ordering::Acquire),
                "a set-active after the holder's release ended by its deactivation"
            );
        }
        assert_eq!(vcpus[1].spis.unplaced(0), 0, "a set-active stranded");
        assert_eq!(vcpus[1].spis.requests(0), 0, "a request stranded");
        refill(&mut cpu, &vcpus[0], holders, &mut backlog);
        assert_eq!(
            distributor.active.load(Ordering::Acquire),
            cpu.holding(SPI) == 1,
            "{:x?}",
            cpu.lrs
        );
    });
}

#[test]
fn set_active_racing_the_holders_cpu_off_is_not_stranded() {
    post_racing_cpu_off_model(ISACTIVER1, false);
}

#[test]
fn clear_active_racing_a_cpu_off_leaves_no_request() {
    post_racing_cpu_off_model(ICACTIVER1, true);
}

/// Review 37: a clear-pending request landing after the release applied
/// the requests it found is taken by the release's swap.
#[test]
fn clear_pending_racing_a_cpu_off_leaves_no_request() {
    post_racing_cpu_off_model(ICPENDR1, true);
}

/// Review 37: the same for a set-active of the SPI vCPU 1 holds (a request
/// to make its entry active, R35-1). A set-active that follows the
/// release reads the distributor inside its gate: the release's
/// deactivation of the old activation must have reached it by then (the
/// release's `synchronize`), or the write finds the SPI still active, has
/// no effect, and the late deactivation leaves it inactive.
#[test]
fn set_active_of_a_held_spi_racing_a_cpu_off_leaves_no_request() {
    post_racing_cpu_off_model(ISACTIVER1, true);
}

/// Review 44 R44-4: the same for a set-pending of the SPI vCPU 1 holds
/// pending (a request to judge it, `request_pending`): taken by the
/// release (which leaves it: pending there) or, seen off, forwarded.
#[test]
fn set_pending_of_a_held_spi_racing_a_cpu_off_leaves_no_request() {
    post_racing_cpu_off_model(ISPENDR1, true);
}

/// Review 41 R41-4: two CPUs acknowledge two SPIs of one holder word (33
/// on vCPU 0's, 34 on vCPU 1's) at once, each inside the shared gate; both
/// holders are recorded (each CPU replaces its own byte of the word in one
/// step, so neither update is lost).
#[test]
fn two_spis_of_one_holder_word_acknowledged_at_once_are_both_recorded() {
    loom::model(|| {
        let shared = shared();
        let acknowledge = |shared: Shared, vcpu: usize, intid: u32| {
            let mut cpu = Cpu::new(
                [0; 2],
                PostedDeactivations::new(Arc::new(ActiveSpi::new(intid))),
            );
            cpu.physical.state.pending.store(true, Ordering::Relaxed);
            let mut backlog = Backlog::new();
            let (vcpus, holders) = &*shared;
            vgic::take_interrupts(
                &mut cpu,
                25,
                &vcpus[vcpu],
                holders,
                vcpu,
                &mut backlog,
                |_| PRIORITY,
            );
            assert!(cpu.physical.state.active.load(Ordering::Relaxed));
        };
        let other = {
            let shared = shared.clone();
            thread::spawn(move || acknowledge(shared, 1, SPI + 1))
        };
        acknowledge(shared.clone(), 0, SPI);
        other.join().unwrap();
        let holders = &shared.1;
        assert_eq!(holders.recorded_holder(SPI), Some(0));
        assert_eq!(holders.recorded_holder(SPI + 1), Some(1));
    });
}
