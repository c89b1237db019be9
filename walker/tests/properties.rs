//! Issue item 9 (and 8): for any bytes in memory and any register values,
//! a walk never panics, always ends within a fixed number of reads, never
//! asks for memory outside its memslots except as the aborted last read of
//! a walk that then reports that external abort, and batched walks equal
//! single walks. A second property checks tables built independently
//! translate exactly as built.
#![cfg(not(loom))]
// host atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use crate::common;
#[path = "model/mod.rs"]
mod model;

use common::*;
use proptest::prelude::*;
use walker::{
    AccessKind, CacheMaintenance, DescriptorAccess, Endianness, ExposedFeatures, Fault, FaultCause,
    FaultKind, Granule, IdRegisters, LeafTranslation, Memslot, Memslots, PathHint, SlotAccess,
    SlotHint, Stage2Walker, Trail, Translation, WalkError, WalkRequest, MAX_TRAIL,
    MAX_UPDATE_ATTEMPTS,
};

const SLOT_A: u64 = 0x4000_0000;
const SLOT_A_BYTES: u64 = 256 << 10;
const SLOT_B: u64 = 0x000b_0000_4000_0000;
const SLOT_B_BYTES: u64 = 64 << 10;

/// An address near or inside the slots, page aligned, with random high
/// format bits so 52-bit decodings see them too.
fn near_address(rng: &mut SplitMix) -> u64 {
    let r = rng.next();
    let (base, size) = if r & 1 == 0 {
        (SLOT_A, SLOT_A_BYTES)
    } else {
        (SLOT_B, SLOT_B_BYTES)
    };
    let span = size + (128 << 10);
    let offset = (rng.next() % span) & !0xfff;
    (base + offset).wrapping_sub(64 << 10)
}

/// Encoding of addresses in generated descriptors; one per memory image so
/// that deep walks in a 52-bit format happen often.
#[derive(Clone, Copy)]
enum Encoding {
    Mixed,
    Only(AddrFormat),
}

fn random_descriptor(rng: &mut SplitMix, encoding: Encoding) -> u64 {
    let r = rng.next();
    match r % 8 {
        0 | 1 => rng.next(),
        2 => 0,
        3..=5 => {
            let a = near_address(rng);
            encode(rng, encoding, a) | 3 | (rng.next() & (0x1f << 59))
        }
        _ => {
            let a = near_address(rng);
            let attrs = rng.next() & ((0x3ff << 2) | (0xf << 51));
            encode(rng, encoding, a) | attrs | if r & 8 == 0 { 1 } else { 3 }
        }
    }
}

fn encode(rng: &mut SplitMix, encoding: Encoding, address: u64) -> u64 {
    let format = match encoding {
        Encoding::Only(format) => format,
        Encoding::Mixed => match rng.next() % 3 {
            0 => AddrFormat::Plain,
            1 => AddrFormat::Lpa64k,
            _ => AddrFormat::Ds,
        },
    };
    match format {
        AddrFormat::Lpa64k => encode_addr(format, address & !0xffff),
        _ => encode_addr(format, address),
    }
}

fn random_memory(seed: u64, endian: Endianness, read_only_b: bool) -> Mem {
    let mut rng = SplitMix(seed);
    let encoding = match rng.next() % 4 {
        0 => Encoding::Mixed,
        1 => Encoding::Only(AddrFormat::Plain),
        2 => Encoding::Only(AddrFormat::Lpa64k),
        _ => Encoding::Only(AddrFormat::Ds),
    };
    let access_b = if read_only_b {
        SlotAccess::ReadOnly
    } else {
        SlotAccess::ReadWrite
    };
    let mem = Mem::new(endian)
        .with_slot(SLOT_A, SLOT_A_BYTES, SlotAccess::ReadWrite)
        .with_slot(SLOT_B, SLOT_B_BYTES, access_b);
    for slot in &mem.slots {
        for i in 0..slot.words.len() as u64 {
            mem.write(slot.base + i * 8, random_descriptor(&mut rng, encoding));
        }
    }
    mem
}

fn id_registers() -> impl Strategy<Value = ExposedFeatures> {
    raw_id_registers().prop_map(|(_, features)| features)
}

/// ID_AA64MMFR0_EL1 as hv shows L1 on a host with FEAT_LPA2
/// (hv/src/nested/idregs.rs `shown_to_l1`): PARange 40 bits, FEAT_LPA2 at
/// stage 1 (TGran4 0b0001, TGran16 0b0010), a 4KB stage 2 without it
/// (TGran4_2 0b0010, TGran16_2 = TGran64_2 = 0b0001): DS is RES0.
const HV_L1_MMFR0: u64 =
    PA_40 | (0b0010 << 20) | (0b0001 << 28) | (0b0001 << 32) | (0b0001 << 36) | (0b0010 << 40);

/// Independent fields, plus hv's L1 MMFR0 a fifth of the time (review 53
/// R53-4: a mix of FEAT_LPA2 at stage 1 without it at stage 2 that the
/// independent draw reaches only now and then).
fn raw_id_registers() -> impl Strategy<Value = (IdRegisters, ExposedFeatures)> {
    prop_oneof![
        4 => independent_id_registers(),
        1 => (0u64..=3, any::<bool>(), any::<bool>()).prop_map(|(hafdbs, xnx, st)| {
            let ids = IdRegisters { mmfr0: HV_L1_MMFR0, mmfr1: mmfr1(hafdbs, xnx), mmfr2: mmfr2(st) };
            let features = ExposedFeatures::from_id_registers(ids).expect("hv's L1 CPU is valid");
            (ids, features)
        }),
    ]
}

fn independent_id_registers() -> impl Strategy<Value = (IdRegisters, ExposedFeatures)> {
    (
        prop::sample::select(vec![0u64, 1, 2, 3, 4, 5, 5, 5, 6, 6, 6, 6]),
        prop::sample::select(vec![0u64, 1, 0xf]),
        prop::sample::select(vec![0u64, 0xf]),
        0u64..=2,
        prop::sample::select(vec![0u64, 1, 2, 3, 3, 3]),
        0u64..=2,
        prop::sample::select(vec![0u64, 1, 2, 3, 3, 3]),
        0u64..=3,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_filter_map(
            "some granule at stage 2",
            |(pa, t4, t64, t16, t4_2, t64_2, t16_2, hafdbs, xnx, st)| {
                let mmfr0 = pa
                    | (t16 << 20)
                    | (t64 << 24)
                    | (t4 << 28)
                    | (t16_2 << 32)
                    | (t64_2 << 36)
                    | (t4_2 << 40);
                let ids = IdRegisters {
                    mmfr0,
                    mmfr1: mmfr1(hafdbs, xnx),
                    mmfr2: mmfr2(st),
                };
                ExposedFeatures::from_id_registers(ids)
                    .ok()
                    .map(|features| (ids, features))
            },
        )
}

/// (TG0, SL0, DS | SL2 bits, smallest T0SZ, largest T0SZ): consistent
/// start levels, so that walks get past the configuration checks often.
const VTCR_SHAPES: &[(u64, u64, u64, u64, u64)] = &[
    (0, 2, 0, 16, 24),
    (0, 1, 0, 21, 33),
    (0, 1, VTCR_DS, 21, 33),
    (0, 0, 0, 30, 42),
    (0, 3, 0, 39, 48),
    (0, 0, VTCR_DS | VTCR_SL2, 12, 15),
    (0, 2, VTCR_DS, 12, 24),
    (2, 2, 0, 16, 27),
    (2, 1, 0, 24, 38),
    (2, 0, 0, 35, 48),
    (2, 3, VTCR_DS, 12, 16),
    (1, 2, 0, 12, 21),
    (1, 1, 0, 18, 34),
    (1, 0, 0, 31, 47),
];

fn vtcr_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => any::<u64>(),
        6 => (0..VTCR_SHAPES.len(), any::<u64>(), prop::sample::select(vec![0u64, 1, 2, 3, 4, 5, 5, 6, 6, 7]), 0u64..8, any::<u64>())
            .prop_map(|(shape, pick, ps, hahd, noise)| {
                let (tg0, sl0, extra, min, max) = VTCR_SHAPES[shape];
                let t0sz = min + pick % (max - min + 1);
                t0sz | (sl0 << 6) | (noise & (0x3f << 8)) | (tg0 << 14) | (ps << 16) | ((hahd & 3) << 21) | ((hahd >> 2) * VTCR_HAFT) | extra
            }),
        2 => (12u64..=50, 0u64..4, 0u64..4, 0u64..8, 0u64..32, any::<u64>()).prop_map(
            |(t0sz, sl0, tg0, ps, flags, noise)| {
                t0sz | (sl0 << 6)
                    | (noise & (0x3f << 8))
                    | (tg0 << 14)
                    | (ps << 16)
                    | ((flags & 3) << 21)
                    | (((flags >> 2) & 3) << 32)
                    | ((flags >> 4) * VTCR_HAFT)
            }
        ),
    ]
}

fn vttbr_value() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => any::<u64>(),
        3 => (0u64..SLOT_A_BYTES / 4096, any::<u64>())
            .prop_map(|(page, noise)| (SLOT_A + page * 4096) | (noise & 0xffff_0000_0000_003f)),
        2 => (0u64..SLOT_B_BYTES / 4096, any::<u64>()).prop_map(|(page, noise)| {
            vttbr_for(AddrFormat::Ds, SLOT_B + page * 4096) | (noise & 0xffff_0000_0000_0001)
        }),
    ]
}

fn access() -> impl Strategy<Value = AccessKind> {
    prop::sample::select(vec![
        AccessKind::Read,
        AccessKind::Write,
        AccessKind::Stage1Update,
        AccessKind::ExecEl1,
        AccessKind::ExecEl0,
        AccessKind::CacheMaintenance(CacheMaintenance::CleanEl1),
        AccessKind::CacheMaintenance(CacheMaintenance::InvalidateEl1),
        AccessKind::CacheMaintenance(CacheMaintenance::El0),
    ])
}

fn requests() -> impl Strategy<Value = Vec<WalkRequest>> {
    let ipa = prop_oneof![
        1 => any::<u64>(),
        4 => (any::<u64>(), 12u32..=52).prop_map(|(v, bits)| v & ((1u64 << bits) - 1)),
    ];
    prop::collection::vec((ipa, access(), 0usize..4), 1..48).prop_map(|items| {
        let mut out: Vec<WalkRequest> = Vec::new();
        for (ipa, access, dup) in items {
            // Repeat an earlier IPA now and then: batches must dedupe.
            let ipa = match (dup, out.last()) {
                (0, Some(prev)) => prev.ipa ^ 0x8,
                _ => ipa,
            };
            out.push(WalkRequest { ipa, access });
        }
        out
    })
}

/// Checks that hold for every single walk, given the addresses it asked for.
fn check_single<M: walker::GuestMemory>(
    w: &Stage2Walker,
    mem: &Mem,
    host: &HostDenying<'_, M>,
    result: &Result<Translation, WalkError>,
    reads: &[u64],
) -> Result<(), TestCaseError> {
    prop_assert!(reads.len() <= MAX_TRAIL * MAX_UPDATE_ATTEMPTS);
    prop_assert!(reads.iter().all(|a| a % 8 == 0));
    let outside: Vec<_> = reads.iter().filter(|a| !mem.contains(**a)).collect();
    match result {
        Ok(t) => {
            prop_assert!(
                outside.is_empty(),
                "success after reading outside: {outside:x?}"
            );
            prop_assert!((0..=3).contains(&t.level));
            prop_assert!(!t.trail.is_empty() && t.trail.len() <= MAX_TRAIL);
            prop_assert!(t.trail.as_slice().iter().all(|r| mem.contains(r.address)));
            prop_assert!(t.output_address >> w.output_size_bits() == 0);
            prop_assert_eq!(
                t.output_address & (t.block_size - 1),
                t.ipa & (t.block_size - 1)
            );
        }
        Err(WalkError::Fault(f)) => {
            prop_assert!((-1..=3).contains(&f.level));
            prop_assert_eq!(f.fsc(), walker::fault_status_code(f.kind(), f.level));
            prop_assert!(f.fsc() < 64 && f.fsc() != 0x3f);
            if let FaultCause::DescriptorOutsideMemslots { address } = f.cause {
                prop_assert!(!mem.contains(address));
                prop_assert_eq!(reads.last(), Some(&address));
                prop_assert_eq!(outside, vec![&address]);
            } else {
                prop_assert!(outside.is_empty(), "fault {f:?} after reading outside");
            }
            if matches!(f.kind(), FaultKind::AccessFlag | FaultKind::Permission) {
                prop_assert!(f.level >= 0);
            }
        }
        Err(WalkError::Contended { .. }) => {
            prop_assert!(false, "contention without a concurrent writer")
        }
        // The host's denial: of a descriptor in memory it denies, read
        // last (the read) or read before (the update), never a fault.
        Err(WalkError::HostDenied(d)) => {
            prop_assert!((-1..=3).contains(&d.level));
            prop_assert!(mem.contains(d.descriptor_address));
            prop_assert!(outside.is_empty(), "denial {d:?} after reading outside");
            match d.denied {
                DescriptorAccess::Read => {
                    prop_assert!(host.denies_read(d.descriptor_address));
                    prop_assert_eq!(reads.last(), Some(&d.descriptor_address));
                }
                DescriptorAccess::Update => {
                    prop_assert!(host.denies_write(d.descriptor_address));
                    prop_assert!(reads.contains(&d.descriptor_address));
                }
            }
        }
        // The host mid its change of a descriptor's page: the same, never
        // a fault.
        Err(WalkError::HostChanging(c)) => {
            prop_assert!((-1..=3).contains(&c.level));
            prop_assert!(mem.contains(c.descriptor_address));
            prop_assert!(outside.is_empty(), "change {c:?} after reading outside");
            match c.during {
                DescriptorAccess::Read => {
                    prop_assert!(host.changing(c.descriptor_address));
                    prop_assert_eq!(reads.last(), Some(&c.descriptor_address));
                }
                DescriptorAccess::Update => {
                    prop_assert!(host.changing_write(c.descriptor_address));
                    prop_assert!(reads.contains(&c.descriptor_address));
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn any_memory_and_registers_never_panic_stay_in_memslots_and_batch_and_lean_equal_single(
        seed in any::<u64>(),
        features in id_registers(),
        vtcr in vtcr_value(),
        vttbr in vttbr_value(),
        big_endian in any::<bool>(),
        read_only_b in any::<bool>(),
        host_denies in proptest::option::of(any::<u64>()),
        requests in requests(),
    ) {
        let endian = if big_endian { Endianness::Big } else { Endianness::Little };
        let w = walker(vtcr, vttbr, endian, &features);
        // Keep every other IPA inside the input size so walks get going.
        let input_mask = (1u64 << w.input_size_bits().min(63)) - 1;
        let requests: Vec<WalkRequest> = requests
            .into_iter()
            .enumerate()
            .map(|(i, r)| WalkRequest { ipa: if i % 2 == 0 { r.ipa & input_mask } else { r.ipa }, ..r })
            .collect();
        let single_mem = random_memory(seed, endian, read_only_b);
        let batch_mem = single_mem.duplicate();
        let hinted_mem = single_mem.duplicate();
        let single_mem_before = single_mem.duplicate();

        let mut singles = Vec::new();
        let mut single_reads = Vec::new();
        // The host (L0) denies some of the walks' accesses to the slots
        // (reads of a page in 16, updates of three more) and is mid its
        // change of others (every access to a page in 16, the updates of
        // one more), or none.
        single_mem.with(|m| -> Result<(), TestCaseError> {
            let host = HostDenying::seeded(m, host_denies);
            for r in &requests {
                let rec = Recording::new(&host);
                let result = w.walk(&rec, r.ipa, r.access);
                check_single(&w, &single_mem, &host, &result, &rec.reads.borrow())?;
                singles.push(result);
                single_reads.push(rec.reads.borrow().clone());
            }
            Ok(())
        })?;

        let mut batched = vec![Err(WalkError::Contended { ipa: 0, descriptor_address: 0 }); requests.len()];
        batch_mem.with(|m| {
            let host = HostDenying::seeded(m, host_denies);
            let rec = Recording::new(&host);
            w.walk_batch(&rec, &requests, &mut batched).unwrap();
            for batch in rec.batches.borrow().iter() {
                let mut sorted = batch.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), batch.len(), "duplicate read in a batch");
            }
        });
        prop_assert_eq!(&batched, &singles);
        prop_assert_eq!(batch_mem.snapshot(), single_mem.snapshot());

        // Straight on the memslots (their hinted lookups), one slot hint
        // kept across every walk: the same results and memory.
        let mut hint = SlotHint::default();
        let hinted: Vec<_> = hinted_mem.with(|m| {
            let host = HostDenying::seeded(m, host_denies);
            requests.iter().map(|r| w.walk_hinted(&host, r.ipa, r.access, &mut hint)).collect()
        });
        prop_assert_eq!(&hinted, &singles);
        prop_assert_eq!(hinted_mem.snapshot(), single_mem.snapshot());

        // The lean walk: the same reads, updates and memory; the leaf of
        // each translation; each fault without its trail.
        let lean_mem = single_mem_before;
        let lean: Vec<_> = lean_mem.with(|m| {
            let host = HostDenying::seeded(m, host_denies);
            let rec = Recording::new(&host);
            requests
                .iter()
                .map(|r| {
                    rec.reads.borrow_mut().clear();
                    let result = w.translate_leaf(&rec, r.ipa, r.access);
                    let reads: Vec<u64> = rec.reads.borrow().clone();
                    (result, reads)
                })
                .collect()
        });
        for ((result, reads), (single, single_reads)) in lean.iter().zip(singles.iter().zip(&single_reads)) {
            let expected = match single {
                Ok(t) => Ok(LeafTranslation::from(t)),
                Err(WalkError::Fault(f)) => Err(WalkError::Fault(Fault { trail: Trail::new(), ..*f })),
                Err(e) => Err(*e),
            };
            prop_assert_eq!(result, &expected);
            prop_assert_eq!(reads, single_reads);
        }
        prop_assert_eq!(lean_mem.snapshot(), single_mem.snapshot());
    }
}

/// (granule, SL0, start level, smallest and largest input size), PAMax 48.
const SHAPES: &[(Granule, u64, i32, u32, u32)] = &[
    (Granule::K4, 2, 0, 40, 48),
    (Granule::K4, 1, 1, 31, 43),
    (Granule::K4, 0, 2, 22, 34),
    (Granule::K4, 3, 3, 16, 25),
    (Granule::K16, 2, 1, 37, 48),
    (Granule::K16, 1, 2, 26, 40),
    (Granule::K16, 0, 3, 16, 29),
    (Granule::K64, 2, 1, 43, 48),
    (Granule::K64, 1, 2, 30, 46),
    (Granule::K64, 0, 3, 17, 33),
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn tables_built_independently_translate_as_built(
        shape in 0..SHAPES.len(),
        ia_pick in any::<u32>(),
        maps in prop::collection::vec((any::<u64>(), any::<u64>(), 0i32..4, any::<u64>()), 1..20),
    ) {
        let (granule, sl0, start, min_ia, max_ia) = SHAPES[shape];
        let ia = min_ia + ia_pick % (max_ia - min_ia + 1);
        let arena_bytes = 64 * granule.size() + (8u64 << ((ia - (3 - start) as u32 * (granule.bits() - 3) - granule.bits()).min(20)));
        let mem = Mem::new(Endianness::Little).with_slot(SLOT_A, arena_bytes.max(1 << 20), SlotAccess::ReadWrite);
        let mut b = Builder::new(&mem, granule, start, ia, AddrFormat::Plain, SLOT_A, arena_bytes.max(1 << 20));
        // Blocks only where the granule allows them (levels 1-2 for 4KB, 2 for 16/64KB).
        let mut placed: Vec<(u64, u64, i32)> = Vec::new();
        for (ipa, oa, level, _) in &maps {
            let mut level = (*level).max(start);
            if level < 3 && !(level == 2 || (level == 1 && granule == Granule::K4)) {
                level = 3;
            }
            let block = 1u64 << b.lsb(level);
            let ipa = ipa & ((1 << ia) - 1) & !(block - 1);
            let oa = oa & ((1 << 48) - 1) & !(block - 1);
            b.map(level, ipa, oa, LEAF_RW);
            placed.push((ipa, oa, level));
        }
        let w = walker(vtcr(granule, 64 - u64::from(ia), sl0, 5), b.vttbr(), Endianness::Little, &features_48());
        prop_assert_eq!(w.start_level(), Some(start as i8));
        let mut requests = Vec::new();
        for (i, &(ipa, oa, level)) in placed.iter().enumerate() {
            // Still intact unless a later mapping replaced an entry on its path.
            let intact = placed[i + 1..].iter().all(|&(other, _, other_level)| {
                let shared = b.lsb(level.min(other_level));
                ipa >> shared != other >> shared
            });
            let block = 1u64 << b.lsb(level);
            let offset = maps[i].3 & (block - 1);
            let t = mem.with(|m| w.walk(m, ipa + offset, AccessKind::Write));
            if intact {
                let t = t.unwrap();
                prop_assert_eq!(t.output_address, oa + offset);
                prop_assert_eq!(t.level as i32, level);
                prop_assert_eq!(t.block_size, block);
                prop_assert_eq!(t.trail.len() as i32, level - start + 1);
            }
            requests.push(WalkRequest { ipa: ipa + offset, access: AccessKind::Read });
        }
        let singles: Vec<_> = mem.with(|m| requests.iter().map(|r| w.walk(m, r.ipa, r.access)).collect());
        let mut batched = vec![Err(WalkError::Contended { ipa: 0, descriptor_address: 0 }); requests.len()];
        mem.with(|m| w.walk_batch(m, &requests, &mut batched)).unwrap();
        prop_assert_eq!(batched, singles);
    }
}

fn model_kind(kind: FaultKind) -> model::Kind {
    match kind {
        FaultKind::Translation => model::Kind::Translation,
        FaultKind::AddressSize => model::Kind::AddressSize,
        FaultKind::AccessFlag => model::Kind::AccessFlag,
        FaultKind::Permission => model::Kind::Permission,
        FaultKind::ExternalAbortOnWalk => model::Kind::ExternalAbort,
    }
}

/// Walk every request with the walker and with the model; they must agree.
#[allow(clippy::too_many_arguments)]
fn check_against_model(
    seed: u64,
    ids: IdRegisters,
    features: ExposedFeatures,
    vtcr: u64,
    vttbr: u64,
    big_endian: bool,
    read_only_b: bool,
    requests: &[WalkRequest],
) -> Result<(), TestCaseError> {
    let endian = if big_endian {
        Endianness::Big
    } else {
        Endianness::Little
    };
    let w = walker(vtcr, vttbr, endian, &features);
    let mem = random_memory(seed, endian, read_only_b);
    let cpu = model::Cpu {
        mmfr0: ids.mmfr0,
        mmfr1: ids.mmfr1,
        mmfr2: ids.mmfr2,
    };
    let input_mask = (1u64 << w.input_size_bits().min(63)) - 1;
    for (i, r) in requests.iter().enumerate() {
        let ipa = if i % 2 == 0 {
            r.ipa & input_mask
        } else {
            r.ipa
        };
        let acc = match r.access {
            AccessKind::Read => model::Acc::Read,
            AccessKind::Write => model::Acc::Write,
            AccessKind::Stage1Update => model::Acc::TtwWrite,
            AccessKind::ExecEl1 => model::Acc::Exec { el0: false },
            AccessKind::ExecEl0 => model::Acc::Exec { el0: true },
            AccessKind::CacheMaintenance(c) => model::Acc::Dc {
                invalidate: c == CacheMaintenance::InvalidateEl1,
                el0: c == CacheMaintenance::El0,
            },
        };
        // The model reads the same memory before the walker may update it.
        let writable = |a: u64| {
            mem.slots.iter().any(|s| {
                s.access == SlotAccess::ReadWrite
                    && a >= s.base
                    && a - s.base < s.words.len() as u64 * 8
            })
        };
        let model::Walk {
            outcome: expect,
            table_updates,
        } = mem.with(|m| {
            let read = |a: u64| walker::GuestMemory::read_descriptor(m, a).ok();
            model::s2_translate(&cpu, vtcr, vttbr, big_endian, ipa, acc, &read, &writable)
        });
        let got = mem.with(|m| w.walk(m, ipa, r.access));
        // FEAT_HAFT: every table update the model made is in memory,
        // unless the leaf update (a table may be its own leaf) came after.
        let leaf_update = match (&expect, &got) {
            (
                model::Outcome::Ok {
                    update: Some((a, _)),
                    ..
                },
                Ok(_),
            ) => Some(*a),
            _ => None,
        };
        for (address, new) in &table_updates {
            if Some(*address) != leaf_update {
                prop_assert_eq!(mem.read(*address), *new, "table AF at {:#x}", address);
            }
        }
        match (expect, got) {
            (model::Outcome::Ok { oa, level, update }, result) => {
                let read_only = update.is_some_and(|(a, _)| {
                    mem.slots.iter().any(|s| {
                        s.access == SlotAccess::ReadOnly
                            && a >= s.base
                            && a - s.base < s.words.len() as u64 * 8
                    })
                });
                if read_only {
                    let f = *result.as_ref().unwrap_err().fault().unwrap();
                    prop_assert_eq!(
                        (f.kind(), i32::from(f.level)),
                        (FaultKind::ExternalAbortOnWalk, level)
                    );
                } else {
                    let t = result.unwrap();
                    prop_assert_eq!((t.output_address, i32::from(t.level)), (oa, level));
                    // Every table AF update is counted.
                    prop_assert_eq!(
                        usize::from(t.update.table_access_flags),
                        table_updates.len()
                    );
                    match update {
                        Some((address, new)) => {
                            prop_assert_eq!(t.leaf_address(), address);
                            prop_assert_eq!(t.descriptor, new);
                            prop_assert_eq!(mem.read(address), new);
                        }
                        None => prop_assert!(!t.update.leaf_updated()),
                    }
                }
            }
            (model::Outcome::Fault { kind, level }, result) => {
                let f = *result.as_ref().unwrap_err().fault().unwrap();
                prop_assert_eq!(
                    (model_kind(f.kind()), i32::from(f.level)),
                    (kind, level),
                    "{:?}",
                    f.cause
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Differential test against the plain pseudocode transliteration in
    /// `tests/model`: same fault kind and level, same output address and
    /// level, same descriptor update, for any memory and registers.
    #[test]
    fn walker_agrees_with_the_pseudocode_model(
        seed in any::<u64>(),
        (ids, features) in raw_id_registers(),
        vtcr in vtcr_value(),
        vttbr in vttbr_value(),
        big_endian in any::<bool>(),
        read_only_b in any::<bool>(),
        requests in requests(),
    ) {
        check_against_model(seed, ids, features, vtcr, vttbr, big_endian, read_only_b, &requests)?;
    }

    /// The same, concentrated on the 52-bit formats: PAMax 52 with LPA2 at
    /// stage 2, PS = 52, tables in the slot above 2^48.
    #[test]
    fn walker_agrees_with_the_model_on_52_bit_formats(
        seed in any::<u64>(),
        shape in prop::sample::select(vec![
            // (TG0, SL0, extra, smallest T0SZ, largest T0SZ)
            (0u64, 0u64, VTCR_DS | VTCR_SL2, 12u64, 15u64),
            (0, 2, VTCR_DS, 12, 16),
            (2, 3, VTCR_DS, 12, 16),
            (2, 2, VTCR_DS, 12, 20),
            (1, 2, 0, 12, 21),
        ]),
        pick in any::<u64>(),
        hahd in 0u64..8,
        page in 0u64..SLOT_B_BYTES / 4096,
        big_endian in any::<bool>(),
        read_only_b in any::<bool>(),
        requests in requests(),
    ) {
        let ids = IdRegisters { mmfr0: mmfr0_lpa2(PA_52), mmfr1: mmfr1(3, true), mmfr2: mmfr2(true) };
        let features = ExposedFeatures::from_id_registers(ids).unwrap();
        let (tg0, sl0, extra, min, max) = shape;
        let t0sz = min + pick % (max - min + 1);
        let vtcr = t0sz | (sl0 << 6) | (3 << 8) | (3 << 10) | (3 << 12) | (tg0 << 14) | (6 << 16) | ((hahd & 3) << 21) | ((hahd >> 2) * VTCR_HAFT) | extra;
        let format = if tg0 == 1 { AddrFormat::Lpa64k } else { AddrFormat::Ds };
        let vttbr = vttbr_for(format, SLOT_B + page * 4096);
        check_against_model(seed, ids, features, vtcr, vttbr, big_endian, read_only_b, &requests)?;
    }
}

// ------------------------------------------- the specialised single walk

/// VTCR_EL2 values around the configurations the specialised walk takes
/// (DS = 0, HA = 0; 4KB from start level 0 or 1, 16KB and 64KB from 1,
/// 2 or 3, 64KB in both formats as the exposed PAMax says): T0SZ in and just outside the consistent ranges, any PS,
/// HA/HD/HAFT, DS and SL2 now and then, noise in the other fields; 16KB
/// with SL0 = 3 (no start level with DS = 0); and any value of
/// `vtcr_value`.
fn specialised_vtcr_value() -> impl Strategy<Value = u64> {
    // (TG0, SL0, T0SZ range): 4KB, 16KB (TG0 = 2), 64KB (TG0 = 1).
    let shapes = vec![
        (0u64, 2u64, 15u64, 25u64),
        (0, 1, 20, 34),
        (2, 3, 12, 28),
        (2, 2, 12, 28),
        (2, 1, 23, 39),
        (2, 0, 34, 49),
        (1, 2, 11, 22),
        // 64KB level 1 needs PAMax 44 or more and a T0SZ of 16-21 (12-21
        // with PAMax 52): twice.
        (1, 2, 15, 22),
        (1, 1, 17, 35),
        (1, 0, 30, 48),
    ];
    prop_oneof![
        4 => (
            prop::sample::select(shapes),
            any::<u64>(),
            0u64..8,
            prop::sample::select(vec![0u64, 0, 0, 0, VTCR_HA, VTCR_HA | VTCR_HD, VTCR_HA | VTCR_HD | VTCR_HAFT, VTCR_HD | VTCR_HAFT]),
            prop::sample::select(vec![0u64, 0, 0, 0, 0, 0, VTCR_DS, VTCR_SL2]),
            any::<u64>(),
        )
            .prop_map(|((tg0, sl0, min, max), pick, ps, enables, format, noise)| {
                let t0sz = min + pick % (max - min + 1);
                t0sz | (sl0 << 6) | (noise & (0x3f << 8)) | (tg0 << 14) | (ps << 16) | enables | format
            }),
        1 => vtcr_value(),
    ]
}

/// Deep walks for a configuration the specialised walk takes: tables
/// built at the walker's root (zeroed first) for `maps` (IPA, output
/// address, level 1-3, attributes: random AF, S2AP, XN, DBM, MemAttr, SH,
/// contiguous hint; output addresses within 32 or 40 bits or anywhere in
/// 48, or 52 with 64KB and FEAT_LPA), then some descriptors on their paths overwritten with random values.
/// Where the root and the tables below it do not fit in `mem`'s slots (a
/// 64KB granule's tables, a root anywhere VTTBR_EL2 says), `mem` gets a
/// zeroed slot there instead of the slots it overlaps. Returns the IPAs
/// mapped (with a page offset).
fn build_tables(
    mem: &mut Mem,
    w: &Stage2Walker,
    features: &ExposedFeatures,
    maps: &[(u64, u64, i32, u64)],
    corruptions: &[(usize, usize, u64)],
) -> Vec<u64> {
    let (Some(start), Some(root)) = (w.start_level(), w.table_base()) else {
        return Vec::new();
    };
    let granule = w.granule();
    let (bits, stride) = (granule.bits(), granule.bits() - 3);
    let start = i32::from(start);
    let ia = w.input_size_bits();
    let page = granule.size();
    let root_bytes = (8u64 << (ia - (bits + stride * (3 - start) as u32))).max(page);
    // The root's page(s) (a small root is aligned to its size only),
    // then up to 3 - start tables below it per mapping.
    let arena = root & !(page - 1);
    let arena_bytes = root_bytes + (3 - start) as u64 * maps.len() as u64 * page;
    if !(mem.contains(arena) && mem.contains(arena + arena_bytes - 1)) {
        mem.slots.retain(|s| {
            s.base + s.words.len() as u64 * 8 <= arena || s.base >= arena + arena_bytes
        });
        mem.add_slot(arena, arena_bytes, SlotAccess::ReadWrite);
    }
    for address in (arena..arena + arena_bytes).step_by(8) {
        mem.write(address, 0);
    }
    // 64KB with PAMax 52: OA[51:48] in bits 15:12.
    let lpa = granule == Granule::K64 && features.pa_max_bits() >= 52;
    let format = if lpa {
        AddrFormat::Lpa64k
    } else {
        AddrFormat::Plain
    };
    let mut b = Builder::new(mem, granule, start, ia, format, arena, arena_bytes);
    b.root = root;
    let mut ipas = Vec::new();
    for &(ipa, oa, level, attrs) in maps {
        let level = level.clamp(start.max(1), 3);
        let ipa = ipa & ((1 << ia) - 1);
        let oa = match (attrs & 1, attrs >> 60 & 1) {
            (0, 0) => oa & 0xff_ffff_f000,
            // Within every output size (PS = 32 bits up).
            (0, _) => oa & 0xffff_f000,
            // Anywhere in 52 bits where the format has them.
            _ if lpa => oa & 0xf_ffff_ffff_0000,
            _ => oa & 0xffff_ffff_f000,
        };
        let oa = if lpa { oa & !0xffff } else { oa };
        // Half of them readable and writable with AF set, so that walks
        // succeed often.
        let usable = if attrs & 2 == 0 { LEAF_RW } else { 0 };
        let attrs = (attrs & ((0x3ff << 2) | (0xf << 51))) | usable;
        b.map(level, ipa, oa, attrs);
        ipas.push(ipa | (oa >> 40 & 0xff8));
    }
    for &(which, read, descriptor) in corruptions {
        let Some(&ipa) = ipas.get(which % ipas.len().max(1)) else {
            continue;
        };
        let trail = mem.with(
            |m| match w.with_general_walk().walk(m, ipa, AccessKind::Read) {
                Ok(t) => t.trail,
                Err(WalkError::Fault(f)) => f.trail,
                Err(_) => Trail::new(),
            },
        );
        if let Some(r) = trail.as_slice().get(read % trail.len().max(1)) {
            mem.write(r.address, descriptor);
        }
    }
    ipas
}

/// Every single-walk entry point of `w` and of `general` (the same walker
/// on the general walk) on the same requests and memory: the same results
/// (translations, faults with their trail, `Contended`), the same reads,
/// the same memory after.
fn check_specialised_against_general(
    w: &Stage2Walker,
    general: &Stage2Walker,
    mem: &Mem,
    requests: &[WalkRequest],
) -> Result<(), TestCaseError> {
    let general_mem = mem.duplicate();
    type Outcomes = (
        Vec<(Result<Translation, WalkError>, Vec<u64>)>,
        Vec<(Result<LeafTranslation, WalkError>, Vec<u64>)>,
    );
    let run = |walker: &Stage2Walker, mem: &Mem| -> Outcomes {
        mem.with(|m| {
            let rec = Recording::new(m);
            let mut hint = SlotHint::default();
            let mut leaf_hint = SlotHint::default();
            let mut full = Vec::new();
            let mut lean = Vec::new();
            for r in requests {
                for hinted in [false, true] {
                    rec.reads.borrow_mut().clear();
                    let result = if hinted {
                        walker.walk_hinted(&rec, r.ipa, r.access, &mut hint)
                    } else {
                        walker.walk(&rec, r.ipa, r.access)
                    };
                    full.push((result, rec.reads.borrow().clone()));
                    rec.reads.borrow_mut().clear();
                    let result = if hinted {
                        walker.translate_leaf_hinted(&rec, r.ipa, r.access, &mut leaf_hint)
                    } else {
                        walker.translate_leaf(&rec, r.ipa, r.access)
                    };
                    lean.push((result, rec.reads.borrow().clone()));
                }
                // Straight on the memslots too (their inline first-slot read).
                full.push((walker.walk(m, r.ipa, r.access), Vec::new()));
            }
            (full, lean)
        })
    };
    let (full, lean) = run(w, mem);
    let (general_full, general_lean) = run(general, &general_mem);
    for (i, (got, expected)) in full.iter().zip(&general_full).enumerate() {
        prop_assert_eq!(got, expected, "walk {} of {:x?}", i, requests);
    }
    for (i, (got, expected)) in lean.iter().zip(&general_lean).enumerate() {
        prop_assert_eq!(got, expected, "lean walk {} of {:x?}", i, requests);
    }
    prop_assert_eq!(mem.snapshot(), general_mem.snapshot());

    // The batch (the specialised one for `w`, the general one for
    // `general`): the general single walks' results in request order, and
    // the same reads level by level, each level one batch, duplicates once.
    let batch = |walker: &Stage2Walker, mem: &Mem| {
        let mut results = vec![
            Err(WalkError::Contended {
                ipa: 0,
                descriptor_address: 0
            });
            requests.len()
        ];
        let batches = mem.with(|m| {
            let rec = Recording::new(m);
            walker.walk_batch(&rec, requests, &mut results).unwrap();
            let batches = rec.batches.borrow().clone();
            batches
        });
        (results, batches)
    };
    let singles: Vec<_> = general_mem.with(|m| {
        requests
            .iter()
            .map(|r| general.walk(m, r.ipa, r.access))
            .collect()
    });
    let (batched, batches) = batch(w, mem);
    let (general_batched, general_batches) = batch(general, &general_mem);
    for (i, (got, expected)) in batched.iter().zip(&singles).enumerate() {
        prop_assert_eq!(got, expected, "batched walk {} of {:x?}", i, requests);
    }
    prop_assert_eq!(&general_batched, &singles);
    prop_assert_eq!(&batches, &general_batches);
    for batch in &batches {
        let mut distinct = batch.clone();
        distinct.sort_unstable();
        distinct.dedup();
        prop_assert_eq!(distinct.len(), batch.len(), "duplicate read in a batch");
    }
    prop_assert_eq!(mem.snapshot(), general_mem.snapshot());
    Ok(())
}

proptest! {
    // Eleven specialised walks to cover (4KB from two start levels,
    // 16KB and 64KB from three, 64KB in two formats).
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// `Stage2Walker::vtcr_ds` (what TLBI operand decoding uses) is the DS
    /// a walker of the same VTCR_EL2 takes, for any register value and any
    /// exposed ID registers (hv's mixed FEAT_LPA2 ones among them).
    #[test]
    fn vtcr_ds_is_the_walkers_ds(features in id_registers(), vtcr in any::<u64>()) {
        let w = walker(vtcr, 0, Endianness::Little, &features);
        prop_assert_eq!(Stage2Walker::vtcr_ds(vtcr, &features), w.lpa2());
    }

    /// The walk specialised for DS = 0 (64KB with and without FEAT_LPA)
    /// / HA = 0 / little-endian / 4KB from start level 0 or 1, 16KB and
    /// 64KB from 1, 2 or 3 is taken exactly for those
    /// configurations and gives what the general walk gives, for any
    /// memory, registers and IPAs: random memory, and tables built for
    /// deep walks with random leaves and corrupted entries.
    #[test]
    fn the_specialised_walk_equals_the_general_walk(
        seed in any::<u64>(),
        features in id_registers(),
        vtcr in specialised_vtcr_value(),
        vttbr in vttbr_value(),
        big_endian in prop::bool::weighted(0.1),
        read_only_b in any::<bool>(),
        requests in requests(),
        maps in prop::collection::vec((any::<u64>(), any::<u64>(), 1i32..6, any::<u64>()), 1..4),
        corruptions in prop::collection::vec((any::<usize>(), any::<usize>(), any::<u64>()), 0..3),
    ) {
        let endian = if big_endian { Endianness::Big } else { Endianness::Little };
        let w = walker(vtcr, vttbr, endian, &features);
        let general = w.with_general_walk();
        prop_assert!(!general.takes_specialised_walk());
        // A configuration that faults may take it too (its first step
        // reports the fault as the general walk does): then SL0 says.
        let sl0 = (vtcr >> 6) & 3;
        let (levels, sl0s): (&[i8], &[u64]) = match w.granule() {
            Granule::K4 => (&[0, 1], &[2, 1]),
            // 64KB with PAMax 52 too (OA[51:48] in bits 15:12).
            Granule::K16 | Granule::K64 => (&[1, 2, 3], &[2, 1, 0]),
        };
        let specialised = !w.lpa2()
            && !w.hardware_access_flag()
            && endian == Endianness::Little
            && match w.start_level() {
                Some(level) => levels.contains(&level),
                None => sl0s.contains(&sl0),
            };
        prop_assert_eq!(w.takes_specialised_walk(), specialised);

        let input_mask = (1u64 << w.input_size_bits().min(63)) - 1;
        let mut requests: Vec<WalkRequest> = requests
            .into_iter()
            .enumerate()
            .map(|(i, r)| WalkRequest { ipa: if i % 2 == 0 { r.ipa & input_mask } else { r.ipa }, ..r })
            .collect();
        let mem = random_memory(seed, endian, read_only_b);
        check_specialised_against_general(&w, &general, &mem, &requests)?;

        // Deep walks: the same on tables built for them.
        let mut built = random_memory(seed ^ 0x5eed, endian, read_only_b);
        let ipas = if specialised { build_tables(&mut built, &w, &features, &maps, &corruptions) } else { Vec::new() };
        let accesses: Vec<AccessKind> = requests.iter().map(|r| r.access).collect();
        requests.clear();
        for (i, ipa) in ipas.iter().enumerate() {
            for (j, access) in accesses.iter().enumerate().skip(i).step_by(4) {
                let offset = (j as u64 * 0x1234_5678) & 0x3f_ffff;
                requests.push(WalkRequest { ipa: ipa ^ offset, access: *access });
            }
            requests.push(WalkRequest { ipa: *ipa, access: AccessKind::Read });
        }
        check_specialised_against_general(&w, &general, &built, &requests)?;
    }
}

/// Walks of `requests` in order with one path hint kept across them all,
/// each by `walkers[i % len]` (so the hint is often another
/// configuration's), and after walk `i` the descriptor `changes` names
/// (if any) rewritten on the path that walk read (so later hints are
/// stale): every result, full and lean, is what the plain walk gives on
/// the same memory, which gets the same changes and the plain walks'
/// updates in lockstep. Returns how many walks the hint predicted.
fn check_path_hinted(
    walkers: &[Stage2Walker],
    mem: &Mem,
    requests: &[WalkRequest],
    changes: &[(usize, usize, u64)],
) -> Result<usize, TestCaseError> {
    check_path_hinted_with_holes(walkers, mem, requests, changes, &[])
}

/// [`check_path_hinted`] with memslots that change between walks: after
/// request `h.0` (of each `h` in `holes`) the next request's walks, hinted
/// and plain, see memory without the 4 KiB page of its plain walk's read
/// `h.1` (that memslot split around it), so a read the hint's path makes
/// may be refused where it was not when the path was recorded.
fn check_path_hinted_with_holes(
    walkers: &[Stage2Walker],
    mem: &Mem,
    requests: &[WalkRequest],
    changes: &[(usize, usize, u64)],
    holes: &[(usize, usize)],
) -> Result<usize, TestCaseError> {
    let plain_mem = mem.duplicate();
    let mut hint = PathHint::default();
    let mut leaf_hint = PathHint::default();
    let mut predicted = 0;
    let mut hole = None;
    for (i, r) in requests.iter().enumerate() {
        let w = &walkers[i % walkers.len()];
        predicted += usize::from(w.path_hint_predicts(&hint, r.ipa));
        let got = with_hole(mem, hole, |m| {
            w.walk_path_hinted(m, r.ipa, r.access, &mut hint)
        });
        let expected = with_hole(&plain_mem, hole, |m| w.walk(m, r.ipa, r.access));
        prop_assert_eq!(
            &got,
            &expected,
            "walk {} of {:x?} (hole {:x?})",
            i,
            requests,
            hole
        );
        let got = with_hole(mem, hole, |m| {
            w.translate_leaf_path_hinted(m, r.ipa, r.access, &mut leaf_hint)
        });
        let expected = with_hole(&plain_mem, hole, |m| w.translate_leaf(m, r.ipa, r.access));
        prop_assert_eq!(
            &got,
            &expected,
            "lean walk {} of {:x?} (hole {:x?})",
            i,
            requests,
            hole
        );
        let trail = match &got_trail(w, &plain_mem, r) {
            Some(trail) => *trail,
            None => Trail::new(),
        };
        for &(_, read, value) in changes.iter().filter(|c| c.0 % requests.len().max(1) == i) {
            if let Some(d) = trail.as_slice().get(read % trail.len().max(1)) {
                mem.write(d.address, value);
                plain_mem.write(d.address, value);
            }
        }
        hole = holes
            .iter()
            .find(|h| h.0 % requests.len().max(1) == i)
            .and_then(|&(_, read)| trail.as_slice().get(read % trail.len().max(1)))
            .map(|d| d.address & !0xfff);
    }
    prop_assert_eq!(mem.snapshot(), plain_mem.snapshot());
    Ok(predicted)
}

/// `f` on `mem`'s memslots, without the 4 KiB page at `hole` if any (the
/// memslot holding it split into the parts before and after it).
fn with_hole<R>(mem: &Mem, hole: Option<u64>, f: impl FnOnce(&Memslots<'_>) -> R) -> R {
    let Some(hole) = hole else {
        return mem.with(f);
    };
    let mut slots: Vec<Memslot<'_>> = Vec::new();
    for s in &mem.slots {
        let end = s.base + s.words.len() as u64 * 8;
        if hole + 0x1000 <= s.base || hole >= end {
            slots.push(Memslot::new(s.base, &s.words, s.access));
            continue;
        }
        let (cut, resume) = (hole.max(s.base), (hole + 0x1000).min(end));
        let (before, after) = (
            &s.words[..((cut - s.base) / 8) as usize],
            &s.words[((resume - s.base) / 8) as usize..],
        );
        if !before.is_empty() {
            slots.push(Memslot::new(s.base, before, s.access));
        }
        if !after.is_empty() {
            slots.push(Memslot::new(resume, after, s.access));
        }
    }
    f(&Memslots::new(&mut slots).expect("valid memslots"))
}

/// The descriptors a plain walk of `r` reads now (its trail).
fn got_trail(w: &Stage2Walker, mem: &Mem, r: &WalkRequest) -> Option<Trail> {
    mem.duplicate().with(|m| match w.walk(m, r.ipa, r.access) {
        Ok(t) => Some(t.trail),
        Err(WalkError::Fault(f)) => Some(f.trail),
        Err(_) => None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// A walk with a path hint (`walk_path_hinted`,
    /// `translate_leaf_path_hinted`) gives what the plain walk gives, for
    /// any memory, registers, IPAs and hint: hints kept across walks of
    /// nearby and distant IPAs, hints recorded by another configuration
    /// (another shape, output size or VTTBR_EL2), hints made stale by
    /// rewriting descriptors on the path, on random memory and on tables
    /// built for deep walks with random leaves and corrupted entries.
    #[test]
    fn the_path_hinted_walk_equals_the_walk(
        seed in any::<u64>(),
        (ids, features) in raw_id_registers(),
        vtcr in specialised_vtcr_value(),
        vttbr in vttbr_value(),
        other_vtcr in specialised_vtcr_value(),
        other_vttbr in vttbr_value(),
        same_shape in any::<bool>(),
        twin_granule in any::<bool>(),
        holes in prop::collection::vec((any::<usize>(), any::<usize>()), 0..3),
        big_endian in prop::bool::weighted(0.1),
        requests in requests(),
        maps in prop::collection::vec((any::<u64>(), any::<u64>(), 1i32..6, any::<u64>()), 1..4),
        corruptions in prop::collection::vec((any::<usize>(), any::<usize>(), any::<u64>()), 0..3),
        changes in prop::collection::vec((any::<usize>(), any::<usize>(), any::<u64>()), 0..4),
        offsets in prop::collection::vec(0u64..0x80_0000, 1..6),
    ) {
        let endian = if big_endian { Endianness::Big } else { Endianness::Little };
        let w = walker(vtcr, vttbr, endian, &features);
        // Another configuration sharing the hint: the same registers with
        // another VTTBR_EL2 (same shape: hints match but for the start
        // descriptor), or other registers altogether.
        let other = if same_shape {
            walker(vtcr, other_vttbr, endian, &features)
        } else {
            walker(other_vtcr, other_vttbr, endian, &features)
        };
        // Review 67: a walker of another shape that reads the same start
        // descriptor for the IPAs near 0 and has the same output size (the
        // same VTTBR_EL2 and VTCR_EL2.PS): another granule and start level,
        // or the same registers with the exposed PARange moved across 52
        // bits (64KB: the FEAT_LPA descriptor format or the 48-bit one).
        let twin = if twin_granule {
            let ps = 0x7 << 16;
            walker((other_vtcr & !ps) | (vtcr & ps), vttbr, endian, &features)
        } else {
            walker(vtcr, vttbr, endian, &with_other_pa_range(ids).unwrap_or(features))
        };
        let mem = random_memory(seed, endian, false);
        check_path_hinted(&[w], &mem, &requests, &changes)?;
        check_path_hinted(&[w, other], &mem, &requests, &changes)?;
        let near_zero: Vec<WalkRequest> = requests
            .iter()
            .map(|r| WalkRequest { ipa: r.ipa % (1 << 30), access: r.access })
            .collect();
        check_path_hinted(&[w, twin], &mem, &near_zero, &changes)?;

        // Deep walks: IPAs near each mapped one (the same leaf table, the
        // next ones, other regions), in turn with the other walker's.
        let mut built = random_memory(seed ^ 0x5eed, endian, false);
        let ipas = if w.takes_specialised_walk() {
            build_tables(&mut built, &w, &features, &maps, &corruptions)
        } else {
            Vec::new()
        };
        let mut deep = Vec::new();
        for (k, access) in requests.iter().map(|r| r.access).enumerate() {
            for &ipa in &ipas {
                let offset = offsets[k % offsets.len()];
                deep.push(WalkRequest { ipa: ipa ^ offset, access });
                deep.push(WalkRequest { ipa, access: AccessKind::Read });
            }
        }
        let predicted = check_path_hinted(&[w], &built, &deep, &[])?;
        // Every walk after the first of a mapped IPA that reached a page
        // through tables is predicted: at least when the same IPA comes
        // back at once (the even requests after an odd one of it).
        if w.takes_specialised_walk() && !ipas.is_empty() {
            let again: Vec<WalkRequest> = deep.iter().flat_map(|r| [*r, *r]).collect();
            let repeated = check_path_hinted(&[w], &built, &again, &[])?;
            prop_assert!(repeated >= predicted);
        }
        check_path_hinted(&[w, other], &built, &deep, &changes)?;
        check_path_hinted(&[w, twin], &built, &deep, &changes)?;
        check_path_hinted_with_holes(&[w], &built, &deep, &[], &holes)?;
    }
}

/// The features of `ids` with the exposed PARange at 52 bits, or at 48 if
/// it is 52 already (if those ID registers are valid).
fn with_other_pa_range(ids: IdRegisters) -> Option<ExposedFeatures> {
    let pa_range = if ids.mmfr0 & 0xf == PA_52 {
        PA_48
    } else {
        PA_52
    };
    let mmfr0 = (ids.mmfr0 & !0xf) | pa_range;
    ExposedFeatures::from_id_registers(IdRegisters { mmfr0, ..ids }).ok()
}
