//! Loom model of the walker's hardware AF/dirty update protocol: read the
//! leaf, check it, compare-and-swap the updated value, restart the walk on
//! a lost race. The walker code under test is the real one; only the guest
//! memory is loom's (the `GuestMemory` trait is the shim).
#![cfg(loom)]
#![allow(
    clippy::result_large_err,
    reason = "model threads hand back the walker's own Result so the checks see exactly what it returned"
)]

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;
use walker::{
    AccessKind, Endianness, ExposedFeatures, GuestMemory, IdRegisters, MemoryError, S2Ap,
    Stage2Registers, Stage2Walker, WalkError,
};

/// 16 descriptors: one level-3 table (4KB granule, FEAT_TTST, 16-bit IPA).
const TABLE: u64 = 0x1000;
const ENTRIES: u64 = 16;

struct LoomMemory {
    words: Vec<AtomicU64>,
}

impl LoomMemory {
    fn word(&self, address: u64) -> Result<&AtomicU64, MemoryError> {
        if !address.is_multiple_of(8) {
            return Err(MemoryError::Misaligned);
        }
        address
            .checked_sub(TABLE)
            .map(|offset| offset / 8)
            .and_then(|index| self.words.get(index as usize))
            .ok_or(MemoryError::OutsideMemslots)
    }
}

impl GuestMemory for LoomMemory {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        Ok(self.word(address)?.load(Ordering::Acquire))
    }

    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        Ok(self
            .word(address)?
            .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire))
    }
}

const AF: u64 = 1 << 10;
const S2AP_W: u64 = 1 << 7;
const SOFTWARE_BIT: u64 = 1 << 56;

fn walker() -> Stage2Walker {
    let features = ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 5 | (1 << 20), // PARange 48, all granules
        mmfr1: 2,             // HAFDBS: AF and dirty state
        mmfr2: 1 << 28,       // ST
    })
    .unwrap();
    // 4KB, T0SZ 48, SL0 3 (start level 3), PS 48, HA, HD.
    let vtcr = 48 | (3 << 6) | (5 << 16) | (1 << 21) | (1 << 22);
    Stage2Walker::new(
        Stage2Registers {
            vtcr,
            vttbr: TABLE,
            endianness: Endianness::Little,
        },
        &features,
    )
}

/// A clean, never-accessed, DBM page mapping IPA 0 to 0x8000.
fn leaf() -> u64 {
    0x8000 | (1 << 51) | (1 << 6) | (0xf << 2) | 3
}

#[test]
fn concurrent_af_and_dirty_updates_are_never_lost() {
    loom::model(|| {
        let memory = Arc::new(LoomMemory {
            words: (0..ENTRIES)
                .map(|i| AtomicU64::new(if i == 0 { leaf() } else { 0 }))
                .collect(),
        });
        let walker = Arc::new(walker());

        // A data write (AF + dirty) and a data read (AF) race, while another
        // agent flips a software bit in the same descriptor.
        let writer = {
            let (memory, walker) = (memory.clone(), walker.clone());
            thread::spawn(move || walker.walk(&*memory, 0x123, AccessKind::Write))
        };
        let reader = {
            let (memory, walker) = (memory.clone(), walker.clone());
            thread::spawn(move || walker.walk(&*memory, 0x456, AccessKind::Read))
        };
        let current = memory.words[0].load(Ordering::Acquire);
        let _ = memory.words[0].compare_exchange(
            current,
            current ^ SOFTWARE_BIT,
            Ordering::AcqRel,
            Ordering::Acquire,
        );

        let written = writer.join().unwrap();
        let read = reader.join().unwrap();
        let finally = memory.words[0].load(Ordering::Acquire);
        // Both updates landed, whatever the interleaving.
        assert_eq!(finally & (AF | S2AP_W), AF | S2AP_W);
        assert_eq!(finally & !(AF | S2AP_W | SOFTWARE_BIT), leaf());
        for result in [written, read] {
            match result {
                Ok(t) => {
                    assert_eq!(t.output_address >> 12, 0x8);
                    assert_ne!(t.descriptor & AF, 0);
                }
                Err(WalkError::Contended { .. }) => {
                    panic!("one competing writer cannot exhaust the retries")
                }
                Err(WalkError::Fault(f)) => panic!("{f:?}"),
                // Memslots deny nothing and are never mid a host's change.
                Err(e @ (WalkError::HostDenied(_) | WalkError::HostChanging(_))) => {
                    panic!("{e:?}")
                }
            }
        }
        // The write saw a writable page.
        assert_eq!(written.unwrap().s2ap, S2Ap::ReadWrite);
    });
}
