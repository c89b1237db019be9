//! Loom model of review 35 I-1: set-actives of two SPI words for one
//! vCPU, the second posted while that vCPU's refill takes the summary
//! word (`VirtualSpis`'s words to place): neither may wait for good. The
//! hv_spi_active models post one word once, so a summary word taken with
//! a load and a store instead of a swap (mutation M6) passes them; this
//! one fails it ("SPI 65 not placed").
#![cfg(loom)]

use hv::vgic::{self, Backlog, GicHardware, Held, SpiAccess, SpiHolders, VirtualSgis};
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::hv_gic::{refill, FakeCpu, PhysicalActive};

const GICD: u64 = 0x0800_0000;

/// The distributor's active SPIs 32-95 (bit n - 32), shared by the vCPUs'
/// threads.
#[derive(Debug, Clone)]
struct Distributor(Arc<AtomicU64>);

impl PhysicalActive for Distributor {
    fn deactivate(&mut self, intid: u32) {
        let bit = 1u64 << (intid - 32);
        assert!(self.0.fetch_and(!bit, Ordering::AcqRel) & bit != 0);
    }
}

/// One CPU: four list registers.
type Cpu = FakeCpu<4, Distributor>;

struct Hw(Distributor);

impl GicHardware for Hw {
    fn read(&mut self, address: u64, _size: u64) -> u64 {
        let word = (address - GICD - 0x300) / 4;
        (self.0 .0.load(Ordering::Acquire) >> (32 * (word - 1))) & 0xffff_ffff
    }
    fn write(&mut self, address: u64, _size: u64, value: u64) {
        let offset = address - GICD;
        assert!((0x304..0x380).contains(&offset), "only set-actives here");
        let word = (offset - 0x300) / 4;
        self.0
             .0
            .fetch_or(value << (32 * (word - 1)), Ordering::AcqRel);
    }
}

fn set_active(
    (vcpus, holders): &([VirtualSgis; 2], SpiHolders),
    dist: &Distributor,
    writer: usize,
    intid: u32,
) -> u32 {
    let offset = 0x300 + 4 * (intid / 32) as u64;
    let vgic::RegisterAction::Spi { op, first } = vgic::distributor(offset) else {
        unreachable!();
    };
    let access = SpiAccess {
        writer,
        vcpus,
        holders,
        is_on: |_| true,
        lines: 1020,
        route: |_| Some(0),
    };
    let mut cpu = Cpu::new([0; 4], dist.clone());
    let mut backlog = Backlog::new();
    vgic::perform_spi(
        op,
        first,
        GICD + offset,
        4,
        Some(1 << (intid % 32)),
        &access,
        &mut Held {
            cpu: &mut cpu,
            backlog: &mut backlog,
        },
        &mut Hw(dist.clone()),
    )
    .1
}

/// SPI 33 (word 0) waits for vCPU 0's refill; vCPU 1 makes SPI 65 (word 1)
/// active for vCPU 0 while that refill runs. After the kick's refill both
/// are in vCPU 0's list registers.
#[test]
fn a_set_active_of_another_word_during_the_refill_is_placed() {
    loom::model(|| {
        let shared = Arc::new(([VirtualSgis::new(), VirtualSgis::new()], SpiHolders::new()));
        let dist = Distributor(Arc::new(AtomicU64::new(0)));
        assert_eq!(set_active(&shared, &dist, 1, 33), 1);
        let writer = {
            let (shared, dist) = (shared.clone(), dist.clone());
            thread::spawn(move || set_active(&shared, &dist, 1, 65))
        };
        let mut cpu = Cpu::new([0; 4], dist.clone());
        let mut backlog = Backlog::new();
        let (vcpus, holders) = &*shared;
        refill(&mut cpu, &vcpus[0], holders, &mut backlog);
        assert_eq!(writer.join().unwrap(), 1, "vCPU 0 kicked");
        // The kick's refill.
        refill(&mut cpu, &vcpus[0], holders, &mut backlog);
        for intid in [33u64, 65] {
            assert!(
                cpu.lrs
                    .iter()
                    .any(|&lr| lr >> 62 == 0b10 && lr & 0xffff_ffff == intid),
                "SPI {intid} not placed: {:x?}",
                cpu.lrs
            );
        }
    });
}
