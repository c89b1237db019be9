//! Loom model of review 35 I-1: set-actives of two SPI words for one
//! vCPU, the second posted while that vCPU's refill takes the summary
//! word (`VirtualSpis`'s words to place): neither may wait for good. The
//! hv_spi_active models post one word once, so a summary word taken with
//! a load and a store instead of a swap (mutation M6) passes them; this
//! one fails it ("SPI 65 not placed").
#![cfg(loom)]

use hv::vgic::{
    self, Backlog, GicHardware, Held, ListRegisters, PhysicalCpuInterface, SpiAccess, VirtualSgis,
};
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

const GICD: u64 = 0x0800_0000;

/// The distributor's active SPIs 32-95 (bit n - 32).
#[derive(Debug, Default)]
struct Distributor(AtomicU64);

struct Cpu {
    lrs: [u64; 4],
    dist: Arc<Distributor>,
}

impl ListRegisters for Cpu {
    fn count(&self) -> usize {
        4
    }
    fn empty(&mut self) -> u32 {
        (0..4)
            .filter(|&n| self.lrs[n] >> 62 == 0)
            .map(|n| 1 << n)
            .sum()
    }
    fn read(&mut self, n: usize) -> u64 {
        self.lrs[n]
    }
    fn write(&mut self, n: usize, value: u64) {
        self.lrs[n] = value;
    }
    fn set_underflow_interrupt(&mut self, _on: bool) {}
}

impl PhysicalCpuInterface for Cpu {
    fn acknowledge(&mut self) -> u32 {
        1023
    }
    fn drop_priority(&mut self, _intid: u32) {}
    fn deactivate(&mut self, intid: u32) {
        let bit = 1u64 << (intid - 32);
        assert!(self.dist.0.fetch_and(!bit, Ordering::AcqRel) & bit != 0);
    }
    fn synchronize(&mut self) {}
}

struct Hw(Arc<Distributor>);

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

fn set_active(vcpus: &[VirtualSgis], dist: &Arc<Distributor>, writer: usize, intid: u32) -> u32 {
    let offset = 0x300 + 4 * (intid / 32) as u64;
    let vgic::RegisterAction::Spi { op, first } = vgic::distributor(offset) else {
        unreachable!();
    };
    let access = SpiAccess {
        writer,
        vcpus,
        is_on: |_| true,
        lines: 1020,
        route: |_| Some(0),
    };
    let mut cpu = Cpu {
        lrs: [0; 4],
        dist: dist.clone(),
    };
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
        let vcpus = Arc::new([VirtualSgis::new(), VirtualSgis::new()]);
        let dist = Arc::new(Distributor::default());
        assert_eq!(set_active(&vcpus[..], &dist, 1, 33), 1);
        let writer = {
            let (vcpus, dist) = (vcpus.clone(), dist.clone());
            thread::spawn(move || set_active(&vcpus[..], &dist, 1, 65))
        };
        let mut cpu = Cpu {
            lrs: [0; 4],
            dist: dist.clone(),
        };
        let mut backlog = Backlog::new();
        vgic::apply_remote_clears(&mut cpu, &vcpus[0], &mut backlog);
        vgic::fill_list_registers(&mut cpu, &vcpus[0], &mut backlog, |_| 0xa0);
        assert_eq!(writer.join().unwrap(), 1, "vCPU 0 kicked");
        // The kick's refill.
        vgic::apply_remote_clears(&mut cpu, &vcpus[0], &mut backlog);
        vgic::fill_list_registers(&mut cpu, &vcpus[0], &mut backlog, |_| 0xa0);
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
