//! Issue item 6: memslots (non-overlapping, O(log n) lookup, never read
//! outside) and the ESR/FAR/HPFAR injected for a fault (item 4).
#![cfg(not(loom))]
// host atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use crate::common;

use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use walker::{
    fill_words_from_bytes, AbortContext, AbortOrigin, AccessKind, Endianness, Fault, FaultCause,
    Granule, GuestMemory, LengthMismatch, MemoryError, Memslot, MemslotError, Memslots, SlotAccess,
    SlotHint, Trail, EC_DATA_ABORT_LOWER, EC_INSTRUCTION_ABORT_LOWER,
};

fn words(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|i| AtomicU64::new(i as u64)).collect()
}

#[test]
fn overlapping_misaligned_empty_and_wrapping_slots_are_rejected_precisely() {
    let a = words(4);
    let b = words(4);
    let empty = words(0);
    let rw = SlotAccess::ReadWrite;
    let mut s = [Memslot::new(0x1000, &a, rw), Memslot::new(0x1018, &b, rw)];
    assert_eq!(
        Memslots::new(&mut s).unwrap_err(),
        MemslotError::Overlap {
            first: 0x1000,
            second: 0x1018
        }
    );
    // Given in reverse order: still found (slots are sorted first).
    let mut s = [Memslot::new(0x1018, &b, rw), Memslot::new(0x1000, &a, rw)];
    assert!(matches!(
        Memslots::new(&mut s),
        Err(MemslotError::Overlap { .. })
    ));
    // Touching slots are fine.
    let mut s = [Memslot::new(0x1020, &b, rw), Memslot::new(0x1000, &a, rw)];
    let m = Memslots::new(&mut s).unwrap();
    assert_eq!(m.slots()[0].base(), 0x1000);
    let mut s = [Memslot::new(0x1004, &a, rw)];
    assert_eq!(
        Memslots::new(&mut s).unwrap_err(),
        MemslotError::Misaligned { base: 0x1004 }
    );
    let mut s = [Memslot::new(0x1000, &empty, rw)];
    assert_eq!(
        Memslots::new(&mut s).unwrap_err(),
        MemslotError::Empty { base: 0x1000 }
    );
    let mut s = [Memslot::new(u64::MAX - 15, &a, rw)];
    assert_eq!(
        Memslots::new(&mut s).unwrap_err(),
        MemslotError::WrapsAround {
            base: u64::MAX - 15
        }
    );
    // A slot ending exactly at the top of the address space is fine.
    let mut s = [Memslot::new(u64::MAX - 31, &a, rw)];
    let m = Memslots::new(&mut s).unwrap();
    assert_eq!(m.read_descriptor(u64::MAX - 7), Ok(3));
}

#[test]
fn lookup_finds_the_right_slot_among_many_and_nothing_between() {
    let backing: Vec<Vec<AtomicU64>> = (0..1000).map(|_| words(2)).collect();
    let mut slots: Vec<Memslot<'_>> = backing
        .iter()
        .enumerate()
        .rev()
        .map(|(i, w)| Memslot::new(0x10_0000 * i as u64 + 0x100, w, SlotAccess::ReadWrite))
        .collect();
    let m = Memslots::new(&mut slots).unwrap();
    for i in 0..1000u64 {
        let base = 0x10_0000 * i + 0x100;
        assert_eq!(m.find(base).map(|s| s.base()), Some(base));
        assert_eq!(m.find(base + 15).map(|s| s.base()), Some(base));
        assert!(m.find(base + 16).is_none());
        assert!(m.find(base - 1).is_none());
        assert_eq!(m.read_descriptor(base + 8), Ok(1));
        assert_eq!(
            m.read_descriptor(base + 16),
            Err(MemoryError::OutsideMemslots)
        );
    }
    assert_eq!(m.read_descriptor(0), Err(MemoryError::OutsideMemslots));
    assert_eq!(
        m.read_descriptor(u64::MAX - 7),
        Err(MemoryError::OutsideMemslots)
    );
    assert_eq!(m.read_descriptor(0x104), Err(MemoryError::Misaligned));
}

#[test]
fn hinted_reads_equal_plain_reads_whatever_the_hint() {
    let backing: Vec<Vec<AtomicU64>> = (0..64).map(|_| words(4)).collect();
    let mut slots: Vec<Memslot<'_>> = backing
        .iter()
        .enumerate()
        .map(|(i, w)| Memslot::new(0x1000 * i as u64 + 0x40, w, SlotAccess::ReadWrite))
        .collect();
    let many = Memslots::new(&mut slots).unwrap();
    let one_backing = words(4);
    let mut one_slot = [Memslot::new(0x40, &one_backing, SlotAccess::ReadOnly)];
    let one = Memslots::new(&mut one_slot).unwrap();
    let (mut hint, mut one_hint) = (SlotHint::default(), SlotHint::default());
    let mut x = 0x1234_5678_9abc_def1u64;
    for k in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Anywhere; near the slots; inside them (some misaligned); the first.
        let address = match k % 4 {
            0 => x,
            1 => x % 0x41000,
            2 => (x % 64) * 0x1000 + 0x40 + (x >> 32) % 40,
            _ => 0x40 + (x >> 40) % 40,
        };
        let plain = many.read_descriptor(address);
        assert_eq!(
            many.read_descriptor_hinted(address, &mut hint),
            plain,
            "{address:#x}"
        );
        // A hint from another memslot set is only a wasted guess.
        let mut foreign = hint;
        let plain_one = one.read_descriptor(address);
        assert_eq!(one.read_descriptor_hinted(address, &mut foreign), plain_one);
        assert_eq!(
            one.read_descriptor_hinted(address, &mut one_hint),
            plain_one
        );
    }
}

/// Every word holds its own address, and the largest slot (tried first
/// when a walk's hint is unset, through its copy in `Memslots`) sits among
/// smaller ones: a hinted read must find exactly the word a plain read
/// finds, whichever slot the hint names or whether it is set at all.
#[test]
fn hinted_reads_find_the_word_a_plain_read_finds() {
    let sizes = [4usize, 16, 512, 8, 4];
    let bases = [0x40u64, 0x1000, 0x8000, 0x9000, 0x20_0000];
    let backing: Vec<Vec<AtomicU64>> = sizes.iter().map(|&n| words(n)).collect();
    for (base, words) in bases.iter().zip(&backing) {
        for (i, word) in words.iter().enumerate() {
            word.store(base + 8 * i as u64, Ordering::Relaxed);
        }
    }
    let mut slots: Vec<Memslot<'_>> = bases
        .iter()
        .zip(&backing)
        .map(|(&base, w)| Memslot::new(base, w, SlotAccess::ReadWrite))
        .collect();
    let memory = Memslots::new(&mut slots).unwrap();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut hint = SlotHint::default();
    for k in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let slot = (x % 5) as usize;
        // Inside a slot (mostly), just past its end, or anywhere.
        let address = match k % 8 {
            0 => bases[slot] + 8 * sizes[slot] as u64,
            1 => x & !7,
            _ => bases[slot] + 8 * ((x >> 8) % sizes[slot] as u64),
        };
        if k % 16 == 0 {
            hint = SlotHint::default();
        }
        let plain = memory.read_descriptor(address);
        assert_eq!(
            memory.read_descriptor_hinted(address, &mut hint),
            plain,
            "{address:#x}"
        );
        if let Ok(value) = plain {
            assert_eq!(value, address, "the word at {address:#x}");
        }
    }
}

/// A hinted read tries the largest slot first with one compare for both
/// its bounds and the address's alignment (the offset rotated right by 3):
/// every misaligned address inside it, and every address just outside it
/// (below its base, at its end, at the top of the address space), must
/// still be the error or word a plain read gives, whatever the hint.
#[test]
fn the_largest_slot_fast_path_rejects_misaligned_and_outside_addresses() {
    let small = words(4);
    let large = words(64);
    let top = words(2);
    let top_base = u64::MAX - 15;
    let mut slots = [
        Memslot::new(0x1000, &small, SlotAccess::ReadWrite),
        Memslot::new(0x2000, &large, SlotAccess::ReadWrite),
        Memslot::new(top_base, &top, SlotAccess::ReadWrite),
    ];
    let memory = Memslots::new(&mut slots).unwrap();
    let mut probes: Vec<u64> = (0x1ff0..0x2210).collect();
    probes.extend((0..24).map(|k| top_base.wrapping_add(k)));
    probes.extend([0, 7, 8, 0x1000, 0x1001, 0x1020, u64::MAX]);
    for hint_value in [SlotHint::default(), {
        // A hint naming the small slot (set by a read found there).
        let mut hint = SlotHint::default();
        memory.read_descriptor_hinted(0x1008, &mut hint).unwrap();
        hint
    }] {
        for &address in &probes {
            let mut hint = hint_value;
            let plain = memory.read_descriptor(address);
            assert_eq!(
                memory.read_descriptor_hinted(address, &mut hint),
                plain,
                "{address:#x}"
            );
            let expected = match address {
                0x2000..=0x21ff if address % 8 == 0 => Ok((address - 0x2000) / 8),
                0x2000..=0x21ff => Err(MemoryError::Misaligned),
                _ => plain,
            };
            assert_eq!(plain, expected, "{address:#x}");
            // A compare-and-swap that writes back what is there finds the
            // same word (or error) through the same fast path.
            let value = plain.unwrap_or(0);
            assert_eq!(
                memory.compare_exchange_descriptor(address, value, value),
                plain.map(Ok),
                "{address:#x}"
            );
        }
    }
}

#[test]
fn batched_reads_equal_plain_reads_in_any_mix() {
    // Memslots::read_descriptors resolves a group of addresses, then loads
    // them: every value must be what read_descriptor gives, errors
    // included, across group boundaries (64) and slots.
    let backing: Vec<Vec<AtomicU64>> = (0..16).map(|_| words(64)).collect();
    let mut slots: Vec<Memslot<'_>> = backing
        .iter()
        .enumerate()
        .map(|(i, w)| Memslot::new(0x10_0000 * i as u64 + 0x200, w, SlotAccess::ReadWrite))
        .collect();
    let memory = Memslots::new(&mut slots).unwrap();
    let mut x = 0x0bad_cafe_1234_5677u64;
    for len in [0usize, 1, 7, 63, 64, 65, 130, 200] {
        for _ in 0..50 {
            let addresses: Vec<u64> = (0..len)
                .map(|k| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    match k % 4 {
                        0 => x,
                        1 => (x % 16) * 0x10_0000 + 0x200 + (x >> 40) % 0x220,
                        _ => (x % 16) * 0x10_0000 + 0x200 + ((x >> 40) % 64) * 8,
                    }
                })
                .collect();
            let mut values = vec![Ok(u64::MAX); len];
            memory.read_descriptors(&addresses, &mut values);
            for (address, value) in addresses.iter().zip(&values) {
                assert_eq!(*value, memory.read_descriptor(*address), "{address:#x}");
            }
        }
    }
}

#[test]
fn batched_reads_leave_values_without_an_address_alone() {
    // `values` longer than `addresses` (65 vs 128): the last group has one
    // address, and its other 63 values must stay as they were (as the
    // trait's default leaves them), not get words left from group one.
    let backing = words(0x200);
    let mut slots = [Memslot::new(0, &backing, SlotAccess::ReadWrite)];
    let memory = Memslots::new(&mut slots).unwrap();
    let addresses: Vec<u64> = (0..65u64).map(|i| i * 8).collect();
    let mut values = vec![Err(MemoryError::Misaligned); 128];
    memory.read_descriptors(&addresses, &mut values);
    for (i, value) in values.iter().enumerate() {
        let expected = if i < 65 {
            Ok(i as u64)
        } else {
            Err(MemoryError::Misaligned)
        };
        assert_eq!(*value, expected, "value {i}");
    }
}

#[test]
fn compare_and_swap_respects_read_only_slots_and_reports_the_actual_value() {
    let a = words(2);
    let b = words(2);
    let mut s = [
        Memslot::new(0x0, &a, SlotAccess::ReadWrite),
        Memslot::new(0x100, &b, SlotAccess::ReadOnly),
    ];
    let m = Memslots::new(&mut s).unwrap();
    assert_eq!(m.compare_exchange_descriptor(0x8, 1, 7), Ok(Ok(1)));
    assert_eq!(m.compare_exchange_descriptor(0x8, 1, 9), Ok(Err(7)));
    assert_eq!(m.read_descriptor(0x8), Ok(7));
    assert_eq!(
        m.compare_exchange_descriptor(0x108, 1, 7),
        Err(MemoryError::ReadOnly)
    );
    assert_eq!(
        m.compare_exchange_descriptor(0x200, 0, 7),
        Err(MemoryError::OutsideMemslots)
    );
    assert_eq!(m.read_descriptor(0x108), Ok(1));
}

#[test]
fn images_fill_words_exactly_or_not_at_all() {
    let w = words(2);
    let bytes: Vec<u8> = (1..=16).collect();
    fill_words_from_bytes(&w, &bytes).unwrap();
    let mut s = [Memslot::new(0, &w, SlotAccess::ReadOnly)];
    let m = Memslots::new(&mut s).unwrap();
    let raw = m.read_descriptor(8).unwrap();
    assert_eq!(raw.to_ne_bytes(), [9, 10, 11, 12, 13, 14, 15, 16]);
    assert_eq!(
        fill_words_from_bytes(&w, &bytes[..15]),
        Err(LengthMismatch {
            bytes: 15,
            words: 2
        })
    );
}

#[test]
fn a_walk_never_reads_outside_its_memslots() {
    // Tables straddle a hole between two slots; every read the walker asks
    // for is either inside a slot or is the aborted last read.
    let mut mem = Mem::new(Endianness::Little);
    mem.add_slot(0x4000_0000, 0x2000, SlotAccess::ReadWrite);
    mem.add_slot(0x4000_4000, 0x2000, SlotAccess::ReadWrite);
    // Root at 0x4000_0000 (start level 1, 4KB, 40-bit input: 2 tables).
    mem.write(0x4000_0000, 0x4000_4000 | 3); // L1[0] -> slot 2
    mem.write(0x4000_0008, 0x4000_2000 | 3); // L1[1] -> the hole
    mem.write(0x4000_4000, 0x4000_5000 | 3); // L2[0] -> slot 2
    mem.write(0x4000_5000, 0x9000_0000 | LEAF_RW | 3); // L3[0]
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5),
        0x4000_0000,
        Endianness::Little,
        &features_48(),
    );
    mem.with(|m| {
        let rec = Recording::new(m);
        assert_eq!(
            w.walk(&rec, 0x123, AccessKind::Read)
                .unwrap()
                .output_address,
            0x9000_0123
        );
        let f = w.walk(&rec, 1 << 30, AccessKind::Read).unwrap_err();
        assert_eq!(f.fault().unwrap().fsc(), 0x16);
        let reads = rec.reads.borrow();
        let outside: Vec<_> = reads.iter().filter(|a| !mem.contains(**a)).collect();
        assert_eq!(outside, [&0x4000_2000]);
        assert_eq!(reads.last(), Some(&0x4000_2000));
    });
}

fn fault(cause: FaultCause, level: i8, access: AccessKind) -> Fault {
    Fault {
        cause,
        level,
        ipa: 0x000f_1234_5678_9abc,
        access,
        trail: Trail::default(),
    }
}

#[test]
fn syndrome_for_data_and_instruction_aborts() {
    let va = 0xffff_8000_1234_5678;
    let ctx = AbortContext {
        far: Some(va),
        origin: AbortOrigin::Access,
        trapped_esr: None,
    };
    // A write permission fault at level 3: data abort, WnR = 1, DFSC 0x0F.
    let s = fault(FaultCause::WriteDenied, 3, AccessKind::Write).syndrome(&ctx);
    assert_eq!(s.esr_el2 >> 26, EC_DATA_ABORT_LOWER);
    assert_eq!(s.esr_el2, (0x24 << 26) | (1 << 25) | (1 << 6) | 0x0f);
    assert_eq!(s.far_el2, va);
    // HPFAR_EL2.FIPA = IPA[51:12] in bits 43:4.
    assert_eq!(s.hpfar_el2, 0x000f_1234_5678_9abc_u64 >> 12 << 4);
    // A read: WnR = 0.
    let s = fault(FaultCause::InvalidDescriptor, 1, AccessKind::Read).syndrome(&ctx);
    assert_eq!(s.esr_el2, (0x24 << 26) | (1 << 25) | 0x05);
    // An instruction fetch at EL0 and EL1: instruction abort, no WnR.
    for access in [AccessKind::ExecEl0, AccessKind::ExecEl1] {
        let s = fault(FaultCause::ExecuteDenied, 2, access).syndrome(&ctx);
        assert_eq!(s.esr_el2 >> 26, EC_INSTRUCTION_ABORT_LOWER);
        assert_eq!(s.esr_el2, (0x20 << 26) | (1 << 25) | 0x0e);
    }
    // Level -1 codes reach the ESR unchanged.
    let s = fault(FaultCause::InvalidDescriptor, -1, AccessKind::Read).syndrome(&ctx);
    assert_eq!(s.esr_el2 & 0x3f, 0x2b);
    let s = fault(
        FaultCause::DescriptorOutsideMemslots { address: 0 },
        -1,
        AccessKind::Read,
    )
    .syndrome(&ctx);
    assert_eq!(s.esr_el2 & 0x3f, 0x13);
    // External aborts on the walk carry the IPA in HPFAR_EL2 too.
    assert_eq!(s.hpfar_el2, 0x000f_1234_5678_9abc_u64 >> 12 << 4);
}

#[test]
fn syndrome_for_stage1_walks_and_unknown_far() {
    // L2's stage-1 walk read faulted at stage 2 while fetching an instruction.
    let ctx = AbortContext {
        far: Some(0x4000),
        origin: AbortOrigin::Stage1Walk {
            for_instruction_fetch: true,
        },
        trapped_esr: None,
    };
    let s = fault(FaultCause::InvalidDescriptor, 2, AccessKind::Read).syndrome(&ctx);
    assert_eq!(s.esr_el2, (0x20 << 26) | (1 << 25) | (1 << 7) | 0x06);
    // A hardware update of L2's stage-1 descriptor for a data access: WnR = 1.
    let ctx = AbortContext {
        far: None,
        origin: AbortOrigin::Stage1Walk {
            for_instruction_fetch: false,
        },
        trapped_esr: None,
    };
    let s = fault(FaultCause::WriteDenied, 3, AccessKind::Write).syndrome(&ctx);
    // No FAR given: FAR_EL2 = 0, and FnV stays clear (it is RES0 for every
    // fault but an external abort not on a walk).
    assert_eq!(
        s.esr_el2,
        (0x24 << 26) | (1 << 25) | (1 << 7) | (1 << 6) | 0x0f
    );
    assert_eq!(s.far_el2, 0);
    for (cause, level) in [
        (FaultCause::InvalidDescriptor, 3),
        (FaultCause::DescriptorOutsideMemslots { address: 0 }, 1),
        (FaultCause::DescriptorOutsideMemslots { address: 0 }, -1),
    ] {
        let s = fault(cause, level, AccessKind::Read).syndrome(&ctx);
        assert_eq!(s.esr_el2 & (1 << 10), 0, "FnV set for {cause:?}");
    }
}

#[test]
fn syndrome_of_a_real_walk_fault() {
    let mem = Mem::new(Endianness::Little).with_slot(0x4000_0000, 1 << 20, SlotAccess::ReadWrite);
    let mut b = Builder::new(
        &mem,
        Granule::K4,
        1,
        40,
        AddrFormat::Plain,
        0x4000_0000,
        1 << 20,
    );
    b.map(3, 0x5000, 0x9000, LEAF_RW & !(1 << 10));
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5),
        b.vttbr(),
        Endianness::Little,
        &features_48(),
    );
    let e = mem
        .with(|m| w.walk(m, 0x5abc, AccessKind::Write))
        .unwrap_err();
    let s = e.fault().unwrap().syndrome(&AbortContext {
        far: Some(0x7777_5abc),
        origin: AbortOrigin::Access,
        trapped_esr: None,
    });
    assert_eq!(s.esr_el2, (0x24 << 26) | (1 << 25) | (1 << 6) | 0x0b);
    assert_eq!((s.far_el2, s.hpfar_el2), (0x7777_5abc, 0x50));
}
