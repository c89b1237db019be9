//! Batched walks equal sequential single walks over tiny, densely aliasing
//! tables (one walk's table descriptor is often another's leaf) with every
//! combination of HA/HD/HAFT, both endiannesses, a read-only largest
//! memslot, and batch sizes 1-200 (crossing `BATCH_CHUNK`): results,
//! faults, trails and the final memory, and no descriptor read twice in a
//! level round. (From review 5; it caught three deliberately broken batch
//! paths within half a second.)
#![cfg(not(loom))]
#![allow(clippy::result_large_err)]

use crate::common;

use common::*;
use proptest::prelude::*;
use walker::{AccessKind, Endianness, SlotAccess, WalkError, WalkRequest, BATCH_CHUNK};

/// Pages 0..4 RW at 0, page 4 RO at 0x4000, 0x5000 outside every slot.
const PAGES: [u64; 6] = [0x0, 0x1000, 0x2000, 0x3000, 0x4000, 0x5000];
const ENTRIES: u64 = 4;

fn memory(seed: u64, endian: Endianness, entries: u64) -> Mem {
    memory_in(seed, endian, entries, false)
}

/// `ro_largest`: 0..0x2000 RW, 0x2000..0x5000 RO (the largest slot, the
/// one `Memslots` keeps a copy of, is read-only).
fn memory_in(seed: u64, endian: Endianness, entries: u64, ro_largest: bool) -> Mem {
    let mem = if ro_largest {
        Mem::new(endian)
            .with_slot(0, 0x2000, SlotAccess::ReadWrite)
            .with_slot(0x2000, 0x3000, SlotAccess::ReadOnly)
    } else {
        Mem::new(endian)
            .with_slot(0, 0x4000, SlotAccess::ReadWrite)
            .with_slot(0x4000, 0x1000, SlotAccess::ReadOnly)
    };
    let mut rng = SplitMix(seed);
    for page in &PAGES[..5] {
        for e in 0..entries {
            let r = rng.next();
            let target = PAGES[(r % 6) as usize];
            let kind = (r >> 8) % 8;
            let low = match kind {
                0 => 0,    // invalid
                1 => 0b01, // block
                _ => 0b11, // table / page
            };
            let af = ((r >> 12) & 1) << 10;
            let s2ap = ((r >> 13) & 3) << 6;
            let dbm = ((r >> 15) & 1) << 51;
            let xn = ((r >> 16) & 3) << 53;
            let attr = 0xf << 2;
            let sh = ((r >> 18) & 3) << 8;
            mem.write(
                page + e * 8,
                target | low | af | s2ap | dbm | xn | attr | sh,
            );
        }
    }
    mem
}

fn access(r: u64) -> AccessKind {
    match r % 4 {
        0 => AccessKind::Read,
        1 => AccessKind::Write,
        2 => AccessKind::ExecEl1,
        _ => AccessKind::ExecEl0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn batch_equals_sequential_singles_on_aliasing_tables(
        seed in any::<u64>(),
        flags in 0u64..8,
        big in any::<bool>(),
        root in 0usize..5,
        start_l2 in any::<bool>(),
        n in 1usize..200,
        req_seed in any::<u64>(),
        wide in any::<bool>(),
        ro_largest in any::<bool>(),
    ) {
        let endian = if big { Endianness::Big } else { Endianness::Little };
        let entries = if wide { 512 } else { ENTRIES };
        let single_mem = memory_in(seed, endian, entries, ro_largest);
        let hinted_mem = single_mem.duplicate();
        let direct_mem = single_mem.duplicate();
        let batch_mem = single_mem.duplicate();
        let (ha, hd, haft) = (flags & 1, (flags >> 1) & 1, (flags >> 2) & 1);
        // 4KB; start level 1 (T0SZ 25, SL0 1) or 2 (T0SZ 34, SL0 0); PS 48.
        let (t0sz, sl0) = if start_l2 { (34, 0) } else { (25, 1) };
        let vtcr = t0sz | (sl0 << 6) | (5 << 16) | (ha << 21) | (hd << 22) | (haft << 44);
        let f = features(mmfr0(PA_48), mmfr1(3, true), 0);
        let w = walker(vtcr, PAGES[root], endian, &f);
        let mut rng = SplitMix(req_seed);
        let requests: Vec<WalkRequest> = (0..n).map(|_| {
            let r = rng.next();
            let ipa = (((r % entries) << 30) * u64::from(!start_l2))
                | (((r >> 9) % entries) << 21)
                | (((r >> 18) % entries) << 12)
                | ((r >> 27) & 0xff8);
            WalkRequest { ipa, access: access(r >> 40) }
        }).collect();
        let singles: Vec<_> = single_mem.with(|m| requests.iter().map(|r| w.walk(m, r.ipa, r.access)).collect());
        let mut batched = vec![Err(WalkError::Contended { ipa: 0, descriptor_address: 0 }); n];
        batch_mem.with(|m| {
            let rec = Recording::new(m);
            w.walk_batch(&rec, &requests, &mut batched).unwrap();
            for batch in rec.batches.borrow().iter() {
                let mut sorted = batch.clone();
                sorted.sort_unstable();
                sorted.dedup();
                prop_assert_eq!(sorted.len(), batch.len(), "duplicate read in a batch");
                prop_assert!(batch.len() <= BATCH_CHUNK);
            }
            Ok(())
        })?;
        for (i, (b, s)) in batched.iter().zip(&singles).enumerate() {
            prop_assert_eq!(b, s, "request {} of {}", i, n);
        }
        prop_assert_eq!(batch_mem.snapshot(), single_mem.snapshot());
        // Straight on Memslots::read_descriptors (grouped, hinted lookups).
        let mut direct = vec![Err(WalkError::Contended { ipa: 0, descriptor_address: 0 }); n];
        direct_mem.with(|m| w.walk_batch(m, &requests, &mut direct)).unwrap();
        prop_assert_eq!(&direct, &singles);
        prop_assert_eq!(direct_mem.snapshot(), single_mem.snapshot());
        // One hint kept across all walks (the fixed-place largest slot).
        let mut hint = walker::SlotHint::default();
        let hinted: Vec<_> = hinted_mem.with(|m| requests.iter().map(|r| w.walk_hinted(m, r.ipa, r.access, &mut hint)).collect());
        prop_assert_eq!(&hinted, &singles);
        prop_assert_eq!(hinted_mem.snapshot(), single_mem.snapshot());
    }
}

#[test]
fn wrong_result_length_is_an_error() {
    let mem = memory(1, Endianness::Little, ENTRIES);
    let w = walker(
        25 | (1 << 6) | (5 << 16),
        0,
        Endianness::Little,
        &features(mmfr0(PA_48), 0, 0),
    );
    let requests = vec![
        WalkRequest {
            ipa: 0,
            access: AccessKind::Read
        };
        70
    ];
    for len in [0usize, 1, 64, 69, 71, 128] {
        let mut results = vec![
            Err(WalkError::Contended {
                ipa: 0,
                descriptor_address: 0
            });
            len
        ];
        assert!(
            mem.with(|m| w.walk_batch(m, &requests, &mut results))
                .is_err(),
            "len {len}"
        );
    }
    let mut results = vec![
        Err(WalkError::Contended {
            ipa: 0,
            descriptor_address: 0
        });
        70
    ];
    assert!(mem
        .with(|m| w.walk_batch(m, &requests, &mut results))
        .is_ok());
}

#[test]
fn empty_memslots_abort_every_walk() {
    let mem = Mem::new(Endianness::Little);
    let w = walker(
        25 | (1 << 6) | (5 << 16) | (1 << 21),
        0,
        Endianness::Little,
        &features(mmfr0(PA_48), mmfr1(3, true), 0),
    );
    let requests = vec![
        WalkRequest {
            ipa: 0x1000,
            access: AccessKind::Write
        };
        3
    ];
    let mut results = vec![
        Err(WalkError::Contended {
            ipa: 0,
            descriptor_address: 0
        });
        3
    ];
    mem.with(|m| {
        let mut hint = walker::SlotHint::default();
        let single = w.walk_hinted(m, 0x1000, AccessKind::Write, &mut hint);
        let lean = w.translate_leaf_hinted(m, 0x1000, AccessKind::Write, &mut hint);
        assert!(matches!(single, Err(WalkError::Fault(ref f)) if f.kind() == walker::FaultKind::ExternalAbortOnWalk), "{single:?}");
        assert!(lean.is_err());
        w.walk_batch(m, &requests, &mut results).unwrap();
        assert!(results.iter().all(|r| *r == single));
    });
}
