//! Loom models of review 27 R27-7: SPIs made active through
//! GICD_ISACTIVER<n> are held by one vCPU's list registers, and another
//! vCPU's GICD_ICACTIVER<n> for them is a request to that vCPU. Both run
//! hv's own `vgic::perform_spi` on the writer's thread (vCPU 1) against the
//! holder's exit refill on its own (vCPU 0: `vgic::apply_remote_clears`,
//! then `vgic::fill_list_registers`, as `arch::gic` does), and once the
//! writer's kick arrives, another refill. The per-vCPU summary words
//! (`VirtualSpis`'s words to place and to clear, set after the SPI word
//! itself, swapped by the owner before it reads the words) are what these
//! models check: no set-active and no request may be lost to the race.
#![cfg(loom)]

use hv::vgic::{self, Backlog, GicHardware, Held, PhysicalCpuInterface, SpiAccess, VirtualSgis};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::hv_gic::{active_sgi, refill, ActiveSpi, FakeCpu, PRIORITY};

const SPI: u32 = 33;
const GICD: u64 = 0x0800_0000;
const ISACTIVER1: u64 = 0x0304;
const ICACTIVER1: u64 = 0x0384;

/// One CPU: two list registers; the distributor's active state of the SPI,
/// which the writer's set-active makes active and the holder's
/// deactivation ends (a deactivation too many fails the model).
type Cpu = FakeCpu<2, Arc<ActiveSpi>>;

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
fn writer_access(
    vcpus: &[VirtualSgis],
    distributor: &Arc<ActiveSpi>,
    offset: u64,
    value: u64,
) -> u32 {
    routed_writer_access(vcpus, distributor, offset, value, Some(0))
}

/// `writer_access` with every SPI's GICD_IROUTER naming `route` (None:
/// IRM = 1).
fn routed_writer_access(
    vcpus: &[VirtualSgis],
    distributor: &Arc<ActiveSpi>,
    offset: u64,
    value: u64,
    route: Option<usize>,
) -> u32 {
    let vgic::RegisterAction::Spi { op, first } = vgic::distributor(offset) else {
        unreachable!("an SPI register");
    };
    let access = SpiAccess {
        writer: 1,
        vcpus,
        is_on: |_| true,
        lines: 1020,
        route: move |_| route,
    };
    let mut cpu = Cpu::new([0; 2], distributor.clone());
    let mut backlog = Backlog::new();
    let (_, kicks) = vgic::perform_spi(
        op,
        first,
        GICD + offset,
        4,
        Some(value),
        &access,
        &mut Held {
            cpu: &mut cpu,
            backlog: &mut backlog,
        },
        &mut WriterHardware(distributor.clone()),
    );
    assert_eq!(cpu.lrs, [0; 2], "the writer holds nothing");
    kicks
}

/// vCPU 1 runs `write` (its access and the checks on it, then the DSB and
/// the kick SGI) while vCPU 0 runs an exit's refill; vCPU 0 then takes the
/// kick and refills again.
fn write_during_refill(
    vcpus: &Arc<[VirtualSgis; 2]>,
    cpu: &mut Cpu,
    backlog: &mut Backlog,
    write: impl FnOnce(&[VirtualSgis]) + Send + 'static,
) {
    let kicked = Arc::new(AtomicBool::new(false));
    let remote = {
        let (vcpus, kicked) = (vcpus.clone(), kicked.clone());
        thread::spawn(move || {
            write(&vcpus[..]);
            kicked.store(true, Ordering::Release);
        })
    };
    refill(cpu, &vcpus[0], backlog);
    remote.join().unwrap();
    assert!(kicked.load(Ordering::Acquire));
    refill(cpu, &vcpus[0], backlog);
}

/// vCPU 0 holds SPI 33 made active (placed or not); vCPU 1 clears it
/// while vCPU 0 refills. In every interleaving it ends inactive in the
/// list registers and physically, deactivated exactly once, nothing
/// forwarded, no request left.
fn clear_model(lrs: [u64; 2]) {
    loom::model(move || {
        let vcpus = Arc::new([VirtualSgis::new(), VirtualSgis::new()]);
        let distributor = Arc::new(ActiveSpi::new(SPI));
        // vCPU 0's own earlier set-active (physically active, recorded).
        distributor.active.store(true, Ordering::Relaxed);
        vcpus[0].spis.set_active(0, 1 << (SPI - 32));
        let mut cpu = Cpu::new(lrs, distributor.clone());
        let mut backlog = Backlog::new();
        let writers_view = distributor.clone();
        write_during_refill(&vcpus, &mut cpu, &mut backlog, move |vcpus| {
            let kicks = writer_access(vcpus, &writers_view, ICACTIVER1, 1 << (SPI - 32));
            assert_eq!(kicks, 1 << 0, "the holder is kicked");
        });
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
        let vcpus = Arc::new([VirtualSgis::new(), VirtualSgis::new()]);
        let distributor = Arc::new(ActiveSpi::new(SPI));
        let mut cpu = Cpu::new([0; 2], distributor.clone());
        let mut backlog = Backlog::new();
        let writers_view = distributor.clone();
        write_during_refill(&vcpus, &mut cpu, &mut backlog, move |vcpus| {
            let kicks = writer_access(vcpus, &writers_view, ISACTIVER1, 1 << (SPI - 32));
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
        assert!(!vcpus[0].spis.has_unplaced());
        // The guest's ICC_DIR_EL1: the HW list register's deactivation.
        cpu.lrs[n] = 0;
        cpu.deactivate(SPI);
        assert!(!distributor.active.load(Ordering::Acquire));
    });
}

/// Review 35 R35-1: vCPU 0 holds SPI 33, which hv acknowledged for it
/// (`lrs`: pending in a HW list register; or `queued`: in its backlog),
/// so it is physically active; vCPU 1 makes it active while vCPU 0
/// refills. The write has no effect on the distributor (nothing is
/// forwarded, no second holder): vCPU 0, asked, makes its own entry
/// active. After the kick's refill exactly one list register holds the
/// SPI, active and pending (hv's acknowledged instance is still pending
/// for the guest), and nothing is left to place.
fn set_active_of_a_held_spi_model(lrs: [u64; 2], queued: bool) {
    loom::model(move || {
        let vcpus = Arc::new([VirtualSgis::new(), VirtualSgis::new()]);
        let distributor = Arc::new(ActiveSpi::new(SPI));
        distributor.active.store(true, Ordering::Relaxed);
        let mut cpu = Cpu::new(lrs, distributor.clone());
        let mut backlog = Backlog::new();
        if queued {
            backlog.push(SPI as u16);
        }
        let writers_view = distributor.clone();
        write_during_refill(&vcpus, &mut cpu, &mut backlog, move |vcpus| {
            let kicks =
                routed_writer_access(vcpus, &writers_view, ISACTIVER1, 1 << (SPI - 32), None);
            assert_eq!(kicks, 1 << 0, "the holder is asked and kicked");
            assert!(!vcpus[1].spis.has_unplaced(), "no second holder");
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
        assert!(!vcpus[0].spis.has_unplaced());
        assert_eq!(vcpus[0].spis.unplaced(0), 0);
        assert!(distributor.active.load(Ordering::Acquire));
    });
}

#[test]
fn set_active_of_an_spi_held_in_a_list_register_makes_that_entry_active() {
    let pending_hw =
        0b01 << 62 | 1 << 61 | (SPI as u64) << 32 | u64::from(PRIORITY) << 48 | SPI as u64;
    set_active_of_a_held_spi_model([pending_hw, 0], false);
}

#[test]
fn set_active_of_an_spi_held_in_the_backlog_makes_it_active() {
    set_active_of_a_held_spi_model([0, 0], true);
}

/// The distributor as a writer whose posts may be taken back sees it: a
/// set-active or a clear-active of the SPI reaches it.
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
            offset => panic!("unexpected write to {offset:#x}"),
        }
    }
}

/// Review 35 R35-2: vCPU 0 writes `offset` (SPI 33 routed to vCPU 1)
/// while vCPU 1 calls CPU_OFF (marks itself off, then
/// `vgic::release_list_registers`), vCPU 0 having possibly seen it on.
/// Whatever it posted to vCPU 1 is taken by one of them: vCPU 1's release
/// (which ends the set-active) or vCPU 0, which sees vCPU 1 off after the
/// post and takes it back (a set-active becomes its own). Nothing stays
/// in vCPU 1's words, and after vCPU 0's refill the SPI is physically
/// active exactly when vCPU 0's list register holds it active.
fn post_racing_cpu_off_model(offset: u64) {
    loom::model(move || {
        let vcpus = Arc::new([VirtualSgis::new(), VirtualSgis::new()]);
        let distributor = Arc::new(ActiveSpi::new(SPI));
        let vcpu1_on = Arc::new(AtomicBool::new(true));
        let going_off = {
            let (vcpus, distributor, vcpu1_on) =
                (vcpus.clone(), distributor.clone(), vcpu1_on.clone());
            thread::spawn(move || {
                // PSCI CPU_OFF: marked off (Release), then the release.
                vcpu1_on.store(false, Ordering::Release);
                let mut cpu = Cpu::new([0; 2], distributor);
                let count = vgic::ListRegisterCount {
                    implemented: 2,
                    used: 2,
                };
                vgic::release_list_registers(&mut cpu, &vcpus[1], &mut Backlog::new(), count);
            })
        };
        let vgic::RegisterAction::Spi { op, first } = vgic::distributor(offset) else {
            unreachable!("an SPI register");
        };
        let access = SpiAccess {
            writer: 0,
            vcpus: &vcpus[..],
            is_on: |k: usize| k == 0 || vcpu1_on.load(Ordering::Acquire),
            lines: 1020,
            route: |_| Some(1),
        };
        let mut cpu = Cpu::new([0; 2], distributor.clone());
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
        assert_eq!(vcpus[1].spis.unplaced(0), 0, "a set-active stranded");
        assert_eq!(vcpus[1].spis.requested_clears(0), 0, "a request stranded");
        refill(&mut cpu, &vcpus[0], &mut backlog);
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
    post_racing_cpu_off_model(ISACTIVER1);
}

#[test]
fn clear_active_racing_a_cpu_off_leaves_no_request() {
    post_racing_cpu_off_model(ICACTIVER1);
}
