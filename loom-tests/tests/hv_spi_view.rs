//! Loom model of review 41 R41-1's fix: a vCPU's read of an SPI another
//! vCPU holds asks that vCPU for its own view of the SPI's register word
//! (`vgic::begin_spi_read`, `PrivateView::request_spis`), and the holder's
//! CPU answers at its exits (`vgic::publish_private_view`, after its
//! refill, as `arch::gic::Gic::fill_list_registers` does). hv
//! acknowledged SPI 40 for vCPU 1 and holds it pending in a list register
//! (physically active, not pending); vCPU 0's read of GICD_ISPENDR1 must
//! show it pending, whenever vCPU 1's exits come. The reader marks the
//! word before it takes its request number; marked after, an answer
//! published between the two answers the number without the word, and
//! the read shows the word as it was before (not pending).
//!
//! Review 44 R44-2: `an_spi_acknowledged_during_a_read_*`: vCPU 1's CPU
//! acknowledges SPI 40 (pending, inactive) while vCPU 0 reads it: a read
//! of GICD_ISACTIVER1, which takes the gate only when an SPI of the word
//! is held elsewhere, must read it inactive, and one of GICD_ISPENDR1
//! pending, whenever the acknowledgement comes (a pending read outside
//! the gate shows it not pending when the acknowledgement falls between
//! its active and pending reads). The holders are asked as `arch::gic`
//! does (`vgic::ask_spi_views`, review 44 R44-3).
#![cfg(loom)]

use hv::vgic::{self, Backlog, GicHardware, Held, SpiHolders, VirtualSgis};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::hv_gic::{access_of, refill, ActiveSpi, FakeCpu, NothingActive};

const SPI: u32 = 40;
const GICD: u64 = 0x0800_0000;
const RD: u64 = 0x080a_0000;
const ISPENDR1: u64 = 0x0204;
const ISACTIVER1: u64 = 0x0304;
const MAINTENANCE: u32 = 1 << vgic::DEFAULT_MAINTENANCE_INTID;
/// Enough polls for loom, whose yield lets the other thread run.
const POLLS: u32 = 8;

/// What the vCPUs share: their states, the SPI holders and the SPI's
/// distributor state.
type Shared = Arc<([VirtualSgis; 2], SpiHolders, Arc<ActiveSpi>)>;

/// The distributor's GICD_ISPENDR1 and GICD_ISACTIVER1 (SPI 40's bit);
/// everything else (the redistributors) reads 0. No writes.
struct Distributor(Arc<ActiveSpi>);

impl GicHardware for Distributor {
    fn read(&mut self, address: u64, _size: u64) -> u64 {
        let bit = 1 << (SPI - 32);
        match address - GICD {
            0x0204 => self.0.pending.load(Ordering::Acquire) as u64 * bit,
            0x0304 => self.0.active.load(Ordering::Acquire) as u64 * bit,
            _ => 0,
        }
    }
    fn write(&mut self, address: u64, _size: u64, value: u64) {
        panic!("no write expected: {value:#x} to {address:#x}");
    }
}

/// vCPU `me`'s CPU (`cpu`, `backlog`) answers a request for its view, if
/// there is one.
fn publish(
    (vcpus, holders, spi): &([VirtualSgis; 2], SpiHolders, Arc<ActiveSpi>),
    me: usize,
    cpu: &mut FakeCpu<2, Arc<ActiveSpi>>,
    backlog: &mut Backlog,
) {
    vgic::publish_private_view(
        &vcpus[me],
        MAINTENANCE,
        (RD, GICD),
        holders,
        &mut Held { cpu, backlog },
        &mut Distributor(spi.clone()),
    );
}

#[test]
fn an_spi_pending_on_another_vcpu_reads_pending() {
    loom::model(|| {
        let (spi, shared) = machine();
        // vCPU 1's CPU acknowledges the pending SPI (its holder now) and
        // puts it in a list register, pending.
        spi.pending.store(true, Ordering::Release);
        let mut holder_cpu = FakeCpu::new([0; 2], spi.clone());
        let mut holder_backlog = Backlog::new();
        vgic::take_interrupts(
            &mut holder_cpu,
            vgic::DEFAULT_MAINTENANCE_INTID,
            &shared.0[1],
            &shared.1,
            1,
            &mut holder_backlog,
            |_| 0xa0,
        );
        assert_eq!(holder_cpu.holding(SPI), 1);
        assert_eq!(shared.1.recorded_holder(SPI), Some(1));
        let kicked = Arc::new(AtomicBool::new(false));
        // vCPU 1: an exit before the kick (or after it: loom decides),
        // then the kick's.
        let holder = {
            let (shared, kicked) = (shared.clone(), kicked.clone());
            thread::spawn(move || {
                let mut exit = || {
                    let (vcpus, holders, _) = &*shared;
                    refill(&mut holder_cpu, &vcpus[1], holders, &mut holder_backlog);
                    publish(&shared, 1, &mut holder_cpu, &mut holder_backlog);
                };
                exit();
                while !kicked.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                exit();
            })
        };
        // vCPU 0 reads GICD_ISPENDR1, asking vCPU 1, as `arch::gic` does.
        let vcpus = &shared.0;
        let mut read = begin_read(&shared, ISPENDR1);
        assert_eq!(read.holders(), 1 << 1, "vCPU 1 is asked");
        ask(vcpus, &mut read, &spi, || {
            // (The DSB and the kick SGI.)
            kicked.store(true, Ordering::Release)
        });
        assert_eq!(read.value(), 1 << (SPI - 32), "pending, as vCPU 1 has it");
        holder.join().unwrap();
    });
}

/// SPI 40's distributor state and two vCPUs sharing it.
fn machine() -> (Arc<ActiveSpi>, Shared) {
    let spi = Arc::new(ActiveSpi::new(SPI));
    let shared = Arc::new((
        [VirtualSgis::new(), VirtualSgis::new()],
        SpiHolders::new(),
        spi.clone(),
    ));
    (spi, shared)
}

/// vCPU 0's read of the distributor register at `offset` begins, its CPU
/// holding nothing (`vgic::begin_spi_read`).
fn begin_read(shared: &Shared, offset: u64) -> vgic::SpiRead {
    let (vcpus, holders, spi) = &**shared;
    let vgic::RegisterAction::Spi { op, first } = vgic::distributor(offset) else {
        unreachable!("an SPI register");
    };
    vgic::begin_spi_read(
        op,
        first,
        GICD + offset,
        4,
        &access_of(0, vcpus, holders),
        &mut Held {
            cpu: &mut FakeCpu::new([0; 2], NothingActive),
            backlog: &mut Backlog::new(),
        },
        &mut Distributor(spi.clone()),
    )
}

/// vCPU 0 asks the holders `read` names (`vgic::ask_spi_views`, as
/// `arch::gic`), `kick` standing for the kick SGI, and gives their answers
/// to `read`.
fn ask(vcpus: &[VirtualSgis], read: &mut vgic::SpiRead, spi: &Arc<ActiveSpi>, kick: impl FnOnce()) {
    let mut views = [None; 2];
    vgic::ask_spi_views(
        vcpus,
        read.holders(),
        read.word,
        POLLS,
        |_| kick(),
        thread::yield_now,
        |_| true,
        |k, view| views[k] = view,
    );
    for (k, view) in views.into_iter().enumerate() {
        if read.holders() & (1 << k) != 0 {
            read.answer(k, view, &mut Distributor(spi.clone()));
        }
    }
}

/// Review 44 R44-2: vCPU 1's CPU takes SPI 40 (pending, not active) at an
/// IRQ exit (`take_interrupts`: acknowledged, recorded, pending in a list
/// register), then answers at its exits until vCPU 0 is done; vCPU 0 reads
/// `offset` meanwhile: `expected`, as a GIC shows the SPI before and after
/// (pending, not active).
fn acknowledged_during_a_read(offset: u64, expected: u64) {
    loom::model(move || {
        let (spi, shared) = machine();
        spi.pending.store(true, Ordering::Release);
        let done = Arc::new(AtomicBool::new(false));
        let holder = {
            let (shared, done, spi) = (shared.clone(), done.clone(), spi.clone());
            thread::spawn(move || {
                let mut cpu = FakeCpu::new([0; 2], spi);
                let mut backlog = Backlog::new();
                let (vcpus, holders, _) = &*shared;
                vgic::take_interrupts(
                    &mut cpu,
                    vgic::DEFAULT_MAINTENANCE_INTID,
                    &vcpus[1],
                    holders,
                    1,
                    &mut backlog,
                    |_| 0xa0,
                );
                while !done.load(Ordering::Acquire) {
                    publish(&shared, 1, &mut cpu, &mut backlog);
                    thread::yield_now();
                }
            })
        };
        let mut read = begin_read(&shared, offset);
        ask(&shared.0, &mut read, &spi, || {});
        assert_eq!(read.value(), expected, "{offset:#x}");
        done.store(true, Ordering::Release);
        holder.join().unwrap();
    });
}

#[test]
fn an_spi_acknowledged_during_a_read_reads_inactive() {
    acknowledged_during_a_read(ISACTIVER1, 0);
}

#[test]
fn an_spi_acknowledged_during_a_read_reads_pending() {
    acknowledged_during_a_read(ISPENDR1, 1 << (SPI - 32));
}
