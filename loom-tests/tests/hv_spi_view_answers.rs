//! Review 44 (R44-1, R44-5): two vCPUs each read GICD_ISPENDR1 while the other holds an
//! SPI of that word pending (hv acknowledged it there), and each answers
//! the other only from its own wait (`meanwhile`, as
//! `arch::gic::Gic::wait_for_answer` publishes this vCPU's view between
//! polls): neither may wait in vain, both must read both SPIs pending.
//! Each asks as `arch::gic` does (`vgic::ask_spi_views`, review 44 R44-3).
//!
//! Review 44 R44-4: a GICD_ISPENDR1 of an SPI the holder has pending in a
//! list register, answered from the holder's own wait, has no effect (the
//! SPI is not made physically pending: delivered once), and has been
//! applied by the time the write ends.
//!
//! Every CPU posts its deactivations (`PostedDeactivations`, stop 27):
//! they reach the distributor at the CPU's `synchronize` (the DSB). So
//! `a_write_answered_from_the_holders_wait_has_been_applied` checks the
//! DSB at the end of `apply_spi_requests`, which orders the holder's
//! deactivation before its answer (without it the write ended with the
//! SPI still active; with immediate deactivations nothing noticed).
#![cfg(loom)]

use hv::vgic::{self, Backlog, GicHardware, Held, SpiHolders, VirtualSgis};
use loom::sync::atomic::Ordering;
use loom::sync::Arc;
use loom::thread;
use loom_tests::hv_gic::{access_of, ActiveSpi, FakeCpu, PostedDeactivations};

const GICD: u64 = 0x0800_0000;
const RD: u64 = 0x080a_0000;
const ISPENDR1: u64 = 0x0204;
const MAINTENANCE: u32 = 1 << vgic::DEFAULT_MAINTENANCE_INTID;
const POLLS: u32 = 8;

struct Distributor([Arc<ActiveSpi>; 2]);

impl GicHardware for Distributor {
    fn read(&mut self, address: u64, _size: u64) -> u64 {
        let mut r = 0;
        for s in &self.0 {
            let bit = 1u64 << (s.intid - 32);
            r |= match address - GICD {
                0x0204 => s.pending.load(Ordering::Acquire) as u64 * bit,
                0x0304 => s.active.load(Ordering::Acquire) as u64 * bit,
                _ => 0,
            };
        }
        r
    }
    fn write(&mut self, address: u64, _size: u64, value: u64) {
        panic!("no write expected: {value:#x} to {address:#x}");
    }
}

type Shared = Arc<([VirtualSgis; 2], SpiHolders, [Arc<ActiveSpi>; 2])>;

/// A CPU with two list registers, its deactivations of an SPI posted.
type Cpu = FakeCpu<2, PostedDeactivations>;

/// vCPU `me`'s CPU (`cpu`, `backlog`) answers a request for its view, if
/// there is one.
fn publish(
    (vcpus, holders, spis): &([VirtualSgis; 2], SpiHolders, [Arc<ActiveSpi>; 2]),
    me: usize,
    cpu: &mut Cpu,
    backlog: &mut Backlog,
) {
    vgic::publish_private_view(
        &vcpus[me],
        MAINTENANCE,
        (RD, GICD),
        holders,
        &mut Held { cpu, backlog },
        &mut Distributor(spis.clone()),
    );
}

fn reader(
    shared: Shared,
    me: usize,
    mut cpu: Cpu,
    mut backlog: Backlog,
) -> (Option<(u32, u32)>, u64) {
    let (vcpus, holders, spis) = &*shared;
    let other = 1 - me;
    let access = access_of(me, vcpus, holders);
    let mut read = vgic::begin_spi_read(
        vgic::SetClear::PendingSet,
        32,
        GICD + ISPENDR1,
        4,
        &access,
        &mut Held {
            cpu: &mut cpu,
            backlog: &mut backlog,
        },
        &mut Distributor(spis.clone()),
    );
    assert_eq!(read.holders(), 1 << other);
    let mut view = None;
    vgic::ask_spi_views(
        vcpus,
        read.holders(),
        read.word,
        POLLS,
        |_| {},
        || {
            publish(&shared, me, &mut cpu, &mut backlog);
            thread::yield_now();
        },
        |_| true,
        |_, answer| view = answer,
    );
    read.answer(other, view, &mut Distributor(spis.clone()));
    let value = read.value();
    // Keep answering until the other is done (its last poll).
    for _ in 0..POLLS {
        publish(&shared, me, &mut cpu, &mut backlog);
        thread::yield_now();
    }
    (view, value)
}

#[test]
fn two_vcpus_asking_each_other_both_answer() {
    loom::model(|| {
        let spis = [Arc::new(ActiveSpi::new(41)), Arc::new(ActiveSpi::new(40))];
        let shared: Shared = Arc::new((
            [VirtualSgis::new(), VirtualSgis::new()],
            SpiHolders::new(),
            spis.clone(),
        ));
        // vCPU 0 holds 41, vCPU 1 holds 40, each pending in a list register.
        let mut cpus = Vec::new();
        for (me, spi) in spis.iter().enumerate() {
            spi.pending.store(true, Ordering::Release);
            let mut cpu = Cpu::new([0; 2], PostedDeactivations::new(spi.clone()));
            let mut backlog = Backlog::new();
            vgic::take_interrupts(
                &mut cpu,
                vgic::DEFAULT_MAINTENANCE_INTID,
                &shared.0[me],
                &shared.1,
                me,
                &mut backlog,
                |_| 0xa0,
            );
            assert_eq!(cpu.holding(spi.intid), 1);
            cpus.push((cpu, backlog));
        }
        let (cpu1, backlog1) = cpus.pop().unwrap();
        let (cpu0, backlog0) = cpus.pop().unwrap();
        let s1 = shared.clone();
        let t = thread::spawn(move || reader(s1, 1, cpu1, backlog1));
        let (view0, value0) = reader(shared.clone(), 0, cpu0, backlog0);
        let (view1, value1) = t.join().unwrap();
        assert!(view0.is_some() && view1.is_some(), "{view0:?} {view1:?}");
        assert_eq!(value0, 0b11 << 8, "vCPU 0 reads both pending");
        assert_eq!(value1, 0b11 << 8, "vCPU 1 reads both pending");
    });
}

/// The distributor of one SPI that also takes GICD_ICPENDR1 and
/// GICD_ISPENDR1 writes.
struct WritableDistributor(Arc<ActiveSpi>);

impl GicHardware for WritableDistributor {
    fn read(&mut self, address: u64, size: u64) -> u64 {
        Distributor([self.0.clone(), self.0.clone()]).read(address, size)
    }
    fn write(&mut self, address: u64, _size: u64, value: u64) {
        let bit = value & 1 << (self.0.intid - 32) != 0;
        match address - GICD {
            0x0284 if bit => self.0.pending.store(false, Ordering::Release),
            0x0204 if bit => self.0.pending.store(true, Ordering::Release),
            0x0284 | 0x0204 => {}
            offset => panic!("unexpected write to {offset:#x}"),
        }
    }
}

/// vCPU 0 writes GICD_ICPENDR1 for SPI 40, which vCPU 1 holds pending in a
/// list register, and waits for vCPU 1's answer as `arch::gic::emulate`
/// does; vCPU 1 is itself at EL2, waiting (it answers only from its
/// `meanwhile`, no refill). Once the write has ended (answered), vCPU 1
/// must have applied the clear: the physical SPI deactivated (README:
/// "A write that asked another vCPU to act ... ends only once that vCPU
/// has applied it").
#[test]
fn a_write_answered_from_the_holders_wait_has_been_applied() {
    write_answered_from_the_holders_wait(0x0284, |spi: &ActiveSpi| {
        assert!(
            !spi.active.load(Ordering::Acquire),
            "the write ended before vCPU 1 applied the clear"
        )
    });
}

/// Review 44 R44-4: vCPU 0 writes GICD_ISPENDR1 for SPI 40, which vCPU 1
/// holds pending in a list register (answering from its own wait only):
/// the write has no effect, the SPI is not made physically pending (it
/// would be delivered again once vCPU 1's guest handled it), and once the
/// write has ended vCPU 1 has applied it (no request left).
#[test]
fn a_set_pending_of_an_spi_pending_on_the_holder_has_no_effect() {
    write_answered_from_the_holders_wait(0x0204, |spi: &ActiveSpi| {
        assert!(
            !spi.pending.load(Ordering::Acquire),
            "made pending: delivered twice"
        );
        assert!(spi.active.load(Ordering::Acquire), "still vCPU 1's");
    });
}

/// vCPU 0 writes SPI 40's bit at `offset` while vCPU 1 holds it pending in
/// a list register and answers only from its own wait (no refill), and
/// waits for vCPU 1 as `arch::gic::emulate` does; once answered, the write
/// must have been applied (no request left) and `applied` hold.
fn write_answered_from_the_holders_wait(offset: u64, applied: fn(&ActiveSpi)) {
    loom::model(move || {
        let spi = Arc::new(ActiveSpi::new(40));
        let shared = Arc::new(([VirtualSgis::new(), VirtualSgis::new()], SpiHolders::new()));
        spi.pending.store(true, Ordering::Release);
        let mut holder_cpu = Cpu::new([0; 2], PostedDeactivations::new(spi.clone()));
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
        loom_tests::hv_gic::refill(
            &mut holder_cpu,
            &shared.0[1],
            &shared.1,
            &mut holder_backlog,
        );
        assert_eq!(holder_cpu.holding(40), 1);
        let holder = {
            let (shared, spi) = (shared.clone(), spi.clone());
            thread::spawn(move || {
                for _ in 0..2 * POLLS {
                    vgic::publish_private_view(
                        &shared.0[1],
                        MAINTENANCE,
                        (RD, GICD),
                        &shared.1,
                        &mut Held {
                            cpu: &mut holder_cpu,
                            backlog: &mut holder_backlog,
                        },
                        &mut WritableDistributor(spi.clone()),
                    );
                    thread::yield_now();
                }
            })
        };
        let (vcpus, holders) = &*shared;
        let access = access_of(0, vcpus, holders);
        let mut cpu = FakeCpu::new([0; 2], loom_tests::hv_gic::NothingActive);
        let mut backlog = Backlog::new();
        let vgic::RegisterAction::Spi { op, first } = vgic::distributor(offset) else {
            unreachable!("an SPI register");
        };
        let (_, kicks) = vgic::perform_spi(
            op,
            first,
            GICD + offset,
            4,
            Some(1 << 8),
            &access,
            &mut Held {
                cpu: &mut cpu,
                backlog: &mut backlog,
            },
            &mut WritableDistributor(spi.clone()),
        );
        assert_eq!(kicks, 1 << 1);
        let mut answered = false;
        vgic::ask_spi_views(
            vcpus,
            kicks,
            0,
            POLLS,
            |_| {},
            thread::yield_now,
            |_| true,
            |_, view| answered = view.is_some(),
        );
        if answered {
            assert_eq!(vcpus[1].spis.requests(0), 0, "a request left");
            applied(&spi);
        }
        holder.join().unwrap();
    });
}
