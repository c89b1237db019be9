//! Issue item 8: batched walks, level by level, one memory batch per level,
//! duplicates read once, results identical to single walks in order.
#![cfg(not(loom))]
// host atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use crate::common;

use std::collections::HashSet;

use common::*;
use walker::{
    AccessKind, BatchLengthMismatch, Endianness, FaultKind, Granule, GuestMemory, MemoryError,
    SlotAccess, Stage2Walker, Translation, WalkError, WalkRequest, BATCH_CHUNK,
};

const ARENA: u64 = 0x4000_0000;

fn singles(
    w: &Stage2Walker,
    mem: &Mem,
    requests: &[WalkRequest],
) -> Vec<Result<Translation, WalkError>> {
    mem.with(|m| {
        requests
            .iter()
            .map(|r| w.walk(m, r.ipa, r.access))
            .collect()
    })
}

fn batched(
    w: &Stage2Walker,
    mem: &Mem,
    requests: &[WalkRequest],
) -> (Vec<Result<Translation, WalkError>>, Vec<Vec<u64>>) {
    let (results, batches, _) = batched_with_swaps(w, mem, requests);
    (results, batches)
}

/// Each compare-and-swap's address, and how many batches came before it.
type Swaps = Vec<(u64, usize)>;

/// [`batched`], also giving the swaps.
fn batched_with_swaps(
    w: &Stage2Walker,
    mem: &Mem,
    requests: &[WalkRequest],
) -> (Vec<Result<Translation, WalkError>>, Vec<Vec<u64>>, Swaps) {
    mem.with(|m| {
        let rec = Recording::new(m);
        let mut out = vec![
            Err(WalkError::Contended {
                ipa: 0,
                descriptor_address: 0
            });
            requests.len()
        ];
        w.walk_batch(&rec, requests, &mut out).unwrap();
        let swaps = rec.swaps.borrow().clone();
        let after = rec.swaps_after_batches.borrow().clone();
        let batches = rec.batches.borrow().clone();
        (out, batches, swaps.into_iter().zip(after).collect())
    })
}

/// A table with pages, blocks, holes, AF-clear and DBM pages.
fn sample() -> (Mem, Stage2Walker, Vec<WalkRequest>) {
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, 1 << 20, SlotAccess::ReadWrite);
    let mut b = Builder::new(&mem, Granule::K4, 1, 40, AddrFormat::Plain, ARENA, 1 << 20);
    for i in 0..8u64 {
        b.map(3, 0x10_0000 + i * 0x1000, 0x9000_0000 + i * 0x1000, LEAF_RW);
    }
    b.map(3, 0x20_0000, 0xa000_0000, LEAF_RW & !(1 << 10)); // AF clear
    b.map(
        3,
        0x20_1000,
        0xa000_1000,
        (LEAF_RW & !(3 << 6)) | (1 << 6) | (1 << 51),
    ); // DBM, clean
    b.map(2, 0x4000_0000, 0xc000_0000, LEAF_RW);
    b.put(2, 0x8000_0000, 0x7000_0000 | 3); // table outside memory
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5) | VTCR_HA | VTCR_HD,
        b.vttbr(),
        Endianness::Little,
        &features(mmfr0(PA_48), 2, 0),
    );
    let mut requests = Vec::new();
    let kinds = [
        AccessKind::Read,
        AccessKind::Write,
        AccessKind::ExecEl1,
        AccessKind::ExecEl0,
    ];
    for (i, ipa) in [
        0x10_0123u64,
        0x10_1456,
        0x10_0123,
        0x20_0010,
        0x20_0020,
        0x20_1000,
        0x20_1008,
        0x20_1010,
        0x4000_1234,
        0x4010_0000,
        0x8000_0000,
        0x8000_1000,
        0x3_0000,
        1 << 40,
        0x10_7fff,
        0x20_0000,
    ]
    .into_iter()
    .enumerate()
    {
        requests.push(WalkRequest {
            ipa,
            access: kinds[i % 4],
        });
    }
    // The dirty page: read, write, read again.
    requests.push(WalkRequest {
        ipa: 0x20_1000,
        access: AccessKind::Read,
    });
    requests.push(WalkRequest {
        ipa: 0x20_1000,
        access: AccessKind::Write,
    });
    requests.push(WalkRequest {
        ipa: 0x20_1000,
        access: AccessKind::Read,
    });
    (mem, w, requests)
}

#[test]
fn batched_results_and_memory_equal_single_walks_in_order() {
    let (mem, w, requests) = sample();
    let copy = mem.duplicate();
    let expect = singles(&w, &copy, &requests);
    let (got, _) = batched(&w, &mem, &requests);
    assert_eq!(got, expect);
    assert_eq!(mem.snapshot(), copy.snapshot());
    // The sample exercises successes, faults and updates.
    assert!(got.iter().any(|r| r.is_ok()));
    assert!(got.iter().any(|r| r.is_err()));
    assert!(got
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .any(|t| t.update.dirty));
    assert!(got
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .any(|t| t.update.access_flag));
}

#[test]
fn each_level_is_one_batch_with_duplicates_read_once() {
    let (mem, w, _) = sample();
    // 32 reads of the same page: three levels, one descriptor each.
    let requests: Vec<_> = (0..BATCH_CHUNK as u64)
        .map(|i| WalkRequest {
            ipa: 0x10_0000 + i * 8,
            access: AccessKind::Read,
        })
        .collect();
    let (got, batches) = batched(&w, &mem, &requests);
    assert!(got
        .iter()
        .all(|r| r.as_ref().unwrap().output_address >> 12 == 0x9_0000));
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);

    // Eight different pages under one level-2 table: 1, 1, 8 reads.
    let requests: Vec<_> = (0..8u64)
        .map(|i| WalkRequest {
            ipa: 0x10_0000 + i * 0x1000,
            access: AccessKind::Read,
        })
        .collect();
    let (_, batches) = batched(&w, &mem, &requests);
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 8]);
    for batch in &batches {
        let unique: HashSet<_> = batch.iter().collect();
        assert_eq!(unique.len(), batch.len());
    }
}

#[test]
fn more_requests_than_one_chunk() {
    let (mem, general, base) = sample();
    let requests: Vec<_> = base
        .iter()
        .cycle()
        .take(3 * BATCH_CHUNK + 5)
        .copied()
        .collect();
    // The general batch (HA, HD) and the specialised one (without them).
    for w in [general, without_hardware_updates(&general)] {
        let mem = mem.duplicate();
        let copy = mem.duplicate();
        let expect = singles(&w, &copy, &requests);
        let (got, batches) = batched(&w, &mem, &requests);
        assert_eq!(got, expect);
        assert_eq!(mem.snapshot(), copy.snapshot());
        assert!(batches.iter().all(|b| b.len() <= BATCH_CHUNK));
    }
}

/// The sample's walker without HA and HD: one whose batches take the
/// specialised batch (`walk/specialised_batch.rs`).
fn without_hardware_updates(w: &Stage2Walker) -> Stage2Walker {
    let registers = w.registers();
    let specialised = walker(
        registers.vtcr & !(VTCR_HA | VTCR_HD),
        registers.vttbr,
        Endianness::Little,
        &features(mmfr0(PA_48), 2, 0),
    );
    assert!(!w.takes_specialised_walk() && specialised.takes_specialised_walk());
    specialised
}

#[test]
fn result_storage_of_the_wrong_length_is_an_error() {
    let (mem, w, requests) = sample();
    let mut out = vec![
        Err(WalkError::Contended {
            ipa: 0,
            descriptor_address: 0
        });
        requests.len() - 1
    ];
    let e = mem
        .with(|m| w.walk_batch(m, &requests, &mut out))
        .unwrap_err();
    assert_eq!(
        e,
        BatchLengthMismatch {
            requests: requests.len(),
            results: requests.len() - 1
        }
    );
    // Nothing was walked: no result slot was written.
    assert!(out
        .iter()
        .all(|r| matches!(r, Err(WalkError::Contended { ipa: 0, .. }))));
    let mut none: Vec<Result<Translation, WalkError>> = Vec::new();
    assert!(mem.with(|m| w.walk_batch(m, &[], &mut none)).is_ok());
}

#[test]
fn a_configuration_fault_faults_every_request_without_reading() {
    let (mem, _, requests) = sample();
    let w = walker(
        vtcr(Granule::K4, 10, 1, 5),
        ARENA,
        Endianness::Little,
        &features_48(),
    );
    let (got, batches) = batched(&w, &mem, &requests);
    assert!(batches.is_empty());
    assert!(got
        .iter()
        .all(|r| r.as_ref().unwrap_err().fault().unwrap().fsc() == 0x04));
}

/// A memory whose batched read forgets its second entry.
struct SkipsSecondEntry<'a, M>(&'a M);

impl<M: GuestMemory> GuestMemory for SkipsSecondEntry<'_, M> {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        self.0.read_descriptor(address)
    }
    fn read_descriptors(&self, addresses: &[u64], values: &mut [Result<u64, MemoryError>]) {
        for (i, (address, value)) in addresses.iter().zip(values.iter_mut()).enumerate() {
            if i != 1 {
                *value = self.0.read_descriptor(*address);
            }
        }
    }
    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        self.0.compare_exchange_descriptor(address, current, new)
    }
}

#[test]
fn an_entry_the_memory_leaves_unread_is_an_external_abort_not_a_stale_value() {
    let (mem, general, _) = sample();
    // The sample's walker (HA and HD: the general batch) and the same
    // without them (the specialised batch).
    for w in [general, without_hardware_updates(&general)] {
        a_skipped_entry_aborts_the_walk(&mem, &w);
    }
}

fn a_skipped_entry_aborts_the_walk(mem: &Mem, w: &Stage2Walker) {
    // Two pages under different level-2 tables: every round reads two
    // distinct descriptors, and the second is the one skipped.
    let requests = [
        WalkRequest {
            ipa: 0x10_0000,
            access: AccessKind::Read,
        },
        WalkRequest {
            ipa: 0x4000_0000,
            access: AccessKind::Read,
        },
    ];
    let results = mem.with(|m| {
        let mut out = vec![
            Err(WalkError::Contended {
                ipa: 0,
                descriptor_address: 0
            });
            2
        ];
        w.walk_batch(&SkipsSecondEntry(m), &requests, &mut out)
            .unwrap();
        out
    });
    let expected_first = mem.with(|m| w.walk(m, 0x10_0000, AccessKind::Read));
    assert_eq!(results[0], expected_first);
    match &results[1] {
        Err(WalkError::Fault(f)) => {
            assert_eq!(f.cause.kind(), FaultKind::ExternalAbortOnWalk, "{f:?}")
        }
        other => panic!("a skipped read must abort the walk, got {other:?}"),
    }
}

#[test]
fn walks_that_read_what_an_earlier_walk_updates_at_other_levels_are_redone() {
    // The batch keeps its reads per round and rebuilds each walk's trail
    // from them. Start level 1, HA: root entry 0 is a 1 GiB block with AF
    // clear, root entry 1 a table descriptor back to the root, so walk B
    // reads entry 0 again at level 2 (a 2 MiB block) and walk C a third
    // time at level 3 (where 0b01 is reserved: a translation fault); walk
    // D reads it at level 1, as A, which sets AF in it. B, C and D are
    // walked again on their own, after A, as single walks would be.
    let mem = Mem::new(Endianness::Little).with_slot(0, 0x4000, SlotAccess::ReadWrite);
    let block_af_clear = 0x4000_0000 | (3 << 8) | (3 << 6) | (0xf << 2) | 0b01;
    mem.write(0, block_af_clear);
    mem.write(8, 0b11);
    let w = walker(
        25 | (1 << 6) | (5 << 16) | VTCR_HA,
        0,
        Endianness::Little,
        &features(mmfr0(PA_48), mmfr1(1, false), 0),
    );
    let request = |ipa| WalkRequest {
        ipa,
        access: AccessKind::Read,
    };
    let requests = [
        request(0x1234),                        // A
        request((1 << 30) | 0x5678),            // B
        request((1 << 30) | (1 << 21) | 0x9ab), // C
        request(0x2000_0000),                   // D
    ];
    let copy = mem.duplicate();
    let expect = singles(&w, &copy, &requests);
    let (got, batches, swaps) = batched_with_swaps(&w, &mem, &requests);
    assert_eq!(got, expect);
    assert_eq!(mem.snapshot(), copy.snapshot());
    // One batch a level, entry 0 read once in each, then A's update only,
    // after the three (the walks made again see AF set and make none).
    assert_eq!(batches, [vec![0, 8], vec![0, 8], vec![0]]);
    assert_eq!(swaps, [(0, 3)]);
    assert!(got[0].as_ref().is_ok_and(|t| t.update.access_flag));
    let translation = got[1].as_ref().expect("B maps a 2 MiB block");
    assert_eq!(
        (translation.level, translation.update.access_flag),
        (2, false)
    );
    assert!(matches!(&got[2], Err(WalkError::Fault(f)) if f.level == 3));
    assert!(got[3].as_ref().is_ok_and(|t| !t.update.access_flag));
}
