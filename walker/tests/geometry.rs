//! Issue item 2: every granule, every start level (-1..=3), concatenated
//! start tables up to 16, and FEAT_TTST small input sizes.
#![cfg(not(loom))]
// host atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use crate::common;

use common::*;
use walker::{AccessKind, Endianness, FaultCause, FaultKind, Granule, SlotAccess};

const ARENA: u64 = 0x4000_0000;
const ARENA_BYTES: u64 = 2 << 20;

/// (granule, SL0, start level, smallest input size, largest input size)
/// valid with PAMax 48 and FEAT_TTST.
const CASES: &[(Granule, u64, i32, u32, u32)] = &[
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

fn check_page_and_block(granule: Granule, sl0: u64, start: i32, ia_bits: u32) {
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, ARENA_BYTES, SlotAccess::ReadWrite);
    let mut b = Builder::new(
        &mem,
        granule,
        start,
        ia_bits,
        AddrFormat::Plain,
        ARENA,
        ARENA_BYTES,
    );
    let page = granule.size();
    // The highest page of the input range exercises the last concatenated table.
    let ipa_hi = ((1u64 << ia_bits) - page) | 0x18;
    let oa = 0x12_3456_0000 & !(page - 1);
    let leaf = b.map(3, ipa_hi, oa, LEAF_RW);
    let w = walker(
        vtcr(granule, 64 - u64::from(ia_bits), sl0, 5),
        b.vttbr(),
        Endianness::Little,
        &features_48(),
    );
    assert_eq!(w.start_level(), Some(start as i8));
    assert_eq!(w.configuration_fault(), None);
    let t = mem
        .with(|m| w.walk(m, ipa_hi, AccessKind::Read))
        .unwrap_or_else(|e| panic!("{granule:?} SL0={sl0} ia={ia_bits}: {e:?}"));
    assert_eq!(t.output_address, oa | 0x18);
    assert_eq!(t.level, 3);
    assert_eq!(t.block_size, page);
    assert_eq!(t.trail.len(), (4 - start) as usize);
    assert_eq!(t.leaf_address(), leaf);
    assert_eq!(t.trail.as_slice()[0].level, start as i8);
    assert_eq!(
        t.trail.as_slice()[0].address,
        b.entry_address(b.root, start, ipa_hi)
    );

    // A block one level up where the granule allows blocks at level 2.
    if start <= 2 {
        let ipa_lo = 0x5 * page + 0x20;
        let block = 1u64 << b.lsb(2);
        if ipa_lo >> ia_bits == 0 && block < (1u64 << ia_bits) {
            let block_oa = 7 * block;
            b.map(2, ipa_lo, block_oa, LEAF_RW);
            let t = mem.with(|m| w.walk(m, ipa_lo, AccessKind::Write)).unwrap();
            assert_eq!(t.level, 2);
            assert_eq!(t.block_size, block);
            assert_eq!(t.output_address, block_oa | (ipa_lo & (block - 1)));
        }
    }
}

#[test]
fn every_granule_and_start_level_at_smallest_and_largest_input_size() {
    for &(granule, sl0, start, min_ia, max_ia) in CASES {
        check_page_and_block(granule, sl0, start, min_ia);
        check_page_and_block(granule, sl0, start, max_ia);
    }
}

#[test]
fn input_sizes_just_outside_a_start_level_are_inconsistent() {
    for &(granule, sl0, _start, min_ia, max_ia) in CASES {
        for ia in [min_ia - 1, max_ia + 1] {
            // Skip sizes that fail the T0SZ range check first.
            if !(16..=48).contains(&ia) || (granule == Granule::K64 && ia < 17) {
                continue;
            }
            let w = walker(
                vtcr(granule, 64 - u64::from(ia), sl0, 5),
                0,
                Endianness::Little,
                &features_48(),
            );
            assert_eq!(
                w.configuration_fault(),
                Some(FaultCause::InconsistentStartLevel),
                "{granule:?} SL0={sl0} ia={ia}"
            );
        }
    }
}

#[test]
fn concatenated_start_tables_up_to_sixteen() {
    // 4KB, start level 1, 43-bit IPA: 13 index bits at level 1 = 16 tables.
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, ARENA_BYTES, SlotAccess::ReadWrite);
    let mut b = Builder::new(
        &mem,
        Granule::K4,
        1,
        43,
        AddrFormat::Plain,
        ARENA,
        ARENA_BYTES,
    );
    let w = walker(
        vtcr(Granule::K4, 64 - 43, 1, 5),
        b.vttbr(),
        Endianness::Little,
        &features_48(),
    );
    for table in 0..16u64 {
        let ipa = (table << 39) | (3 << 30) | 0x1234_5000;
        b.map(3, ipa, 0x8000_0000 + (table << 12), LEAF_RW);
        let t = mem.with(|m| w.walk(m, ipa, AccessKind::Read)).unwrap();
        assert_eq!(t.output_address, 0x8000_0000 + (table << 12));
        // The start-level entry lies in concatenated table `table`.
        let first = t.trail.as_slice()[0].address;
        assert_eq!((first - b.root) / 4096, table);
    }
    // 17 tables' worth of input (44 bits) is inconsistent with start level 1.
    let w = walker(
        vtcr(Granule::K4, 64 - 44, 1, 5),
        0,
        Endianness::Little,
        &features_48(),
    );
    assert_eq!(
        w.configuration_fault(),
        Some(FaultCause::InconsistentStartLevel)
    );
}

#[test]
fn start_table_base_is_aligned_to_the_concatenated_size() {
    // BADDR low bits below the start table size are ignored
    // (AArch64.S2TTBaseAddress aligns the base).
    let w = walker(
        vtcr(Granule::K4, 64 - 43, 1, 5),
        ARENA | 0xfff8,
        Endianness::Little,
        &features_48(),
    );
    assert_eq!(w.table_base(), Some(ARENA));
    // CnP (bit 0) and VMID (63:48) are not address bits.
    let w = walker(
        vtcr(Granule::K4, 64 - 40, 2, 5),
        (0x42 << 48) | ARENA | 1,
        Endianness::Little,
        &features_48(),
    );
    assert_eq!(w.table_base(), Some(ARENA));
}

#[test]
fn ttst_small_input_sizes() {
    // 4KB start level 3 (SL0 = 3) needs FEAT_TTST.
    let with_st = features(mmfr0(PA_48), mmfr1(0, false), mmfr2(true));
    let without_st = features(mmfr0(PA_48), mmfr1(0, false), mmfr2(false));
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, ARENA_BYTES, SlotAccess::ReadWrite);
    let mut b = Builder::new(
        &mem,
        Granule::K4,
        3,
        20,
        AddrFormat::Plain,
        ARENA,
        ARENA_BYTES,
    );
    b.map(3, 0xf_f000, 0x7000, LEAF_RW);
    let regs = vtcr(Granule::K4, 44, 3, 5);
    let w = walker(regs, b.vttbr(), Endianness::Little, &with_st);
    let t = mem.with(|m| w.walk(m, 0xf_f123, AccessKind::Read)).unwrap();
    assert_eq!((t.output_address, t.level, t.trail.len()), (0x7123, 3, 1));

    // Without ST, T0SZ = 44 > 39 is an input size fault...
    let w = walker(regs, b.vttbr(), Endianness::Little, &without_st);
    let f = mem
        .with(|m| w.walk(m, 0xf_f123, AccessKind::Read))
        .unwrap_err();
    let f = f.fault().unwrap();
    assert_eq!(f.kind(), FaultKind::Translation);
    assert_eq!((f.level, f.fsc()), (0, 0x04));
    assert!(matches!(
        f.cause,
        FaultCause::InputSizeOutOfRange {
            t0sz: 44,
            min: 16,
            max: 39
        }
    ));
    // ...and SL0 = 3 with a 25-bit input (T0SZ 39) is an invalid start level.
    let w = walker(
        vtcr(Granule::K4, 39, 3, 5),
        0,
        Endianness::Little,
        &without_st,
    );
    assert_eq!(w.configuration_fault(), Some(FaultCause::InvalidStartLevel));

    // With ST the maximum T0SZ is 48 for 4KB/16KB and 47 for 64KB.
    for (granule, sl0, max) in [
        (Granule::K4, 3, 48),
        (Granule::K16, 0, 48),
        (Granule::K64, 0, 47),
    ] {
        let ok = walker(vtcr(granule, max, sl0, 5), 0, Endianness::Little, &with_st);
        assert_eq!(ok.configuration_fault(), None, "{granule:?}");
        let bad = walker(
            vtcr(granule, max + 1, sl0, 5),
            0,
            Endianness::Little,
            &with_st,
        );
        assert!(matches!(
            bad.configuration_fault(),
            Some(FaultCause::InputSizeOutOfRange { .. })
        ));
    }
    // 16KB start level 3 with a 25-bit input needs no TTST at all.
    let w = walker(
        vtcr(Granule::K16, 39, 0, 5),
        0,
        Endianness::Little,
        &without_st,
    );
    assert_eq!((w.configuration_fault(), w.start_level()), (None, Some(3)));
}

#[test]
fn start_level_minus_one_and_16k_level_0_need_lpa2_and_pamax_52() {
    let lpa2_52 = features(mmfr0_lpa2(PA_52), 0, 0);
    let lpa2_48 = features(mmfr0_lpa2(PA_48), 0, 0);
    let no_lpa2_52 = features(mmfr0(PA_52), 0, 0);
    // 4KB, DS=1, SL2=1, SL0=0: start level -1 with a 52-bit input.
    let regs = vtcr(Granule::K4, 12, 0, 6) | VTCR_DS | VTCR_SL2;
    let w = walker(regs, 0, Endianness::Little, &lpa2_52);
    assert_eq!((w.configuration_fault(), w.start_level()), (None, Some(-1)));
    // PAMax 48: SL2 start level -1 is invalid (T0SZ 16 keeps TxSZ legal).
    let w = walker(
        vtcr(Granule::K4, 16, 0, 5) | VTCR_DS | VTCR_SL2,
        0,
        Endianness::Little,
        &lpa2_48,
    );
    assert_eq!(w.configuration_fault(), Some(FaultCause::InvalidStartLevel));
    // SL2 = 1 with SL0 != 0 is reserved.
    for sl0 in 1..4 {
        let w = walker(
            vtcr(Granule::K4, 12, sl0, 6) | VTCR_DS | VTCR_SL2,
            0,
            Endianness::Little,
            &lpa2_52,
        );
        assert_eq!(w.configuration_fault(), Some(FaultCause::InvalidStartLevel));
    }
    // Without LPA2 exposed, DS and SL2 are ignored: SL0 = 0 is start level
    // 2, inconsistent with a 52-bit input; T0SZ 12 is below the minimum 16.
    let w = walker(regs, 0, Endianness::Little, &no_lpa2_52);
    assert!(!w.lpa2());
    assert!(matches!(
        w.configuration_fault(),
        Some(FaultCause::InputSizeOutOfRange { min: 16, .. })
    ));
    // 16KB SL0 = 3 (start level 0) needs DS and PAMax 52.
    let w = walker(
        vtcr(Granule::K16, 12, 3, 6) | VTCR_DS,
        0,
        Endianness::Little,
        &lpa2_52,
    );
    assert_eq!((w.configuration_fault(), w.start_level()), (None, Some(0)));
    let w = walker(
        vtcr(Granule::K16, 16, 3, 5),
        0,
        Endianness::Little,
        &lpa2_52,
    );
    assert_eq!(w.configuration_fault(), Some(FaultCause::InvalidStartLevel));
    // AArch64.S2InvalidSL (DDI 0487 M.a.a): with DS = 1 but PAMax 48, 16KB
    // SL0 = 3 is invalid, although a 48-bit input from level 0 would be
    // consistent (the v9.4 pseudocode had no PAMax term; found by the
    // reference-model differential test, tools/tests/reference_model.rs).
    let w = walker(
        vtcr(Granule::K16, 16, 3, 5) | VTCR_DS,
        0,
        Endianness::Little,
        &lpa2_48,
    );
    assert_eq!(w.configuration_fault(), Some(FaultCause::InvalidStartLevel));
    // The same 48-bit input with PAMax 52 starts at level 0 (two entries).
    let w = walker(
        vtcr(Granule::K16, 16, 3, 5) | VTCR_DS,
        0,
        Endianness::Little,
        &lpa2_52,
    );
    assert_eq!((w.configuration_fault(), w.start_level()), (None, Some(0)));
    // 64KB SL0 = 3 is always reserved.
    let w = walker(
        vtcr(Granule::K64, 16, 3, 5),
        0,
        Endianness::Little,
        &lpa2_52,
    );
    assert_eq!(w.configuration_fault(), Some(FaultCause::InvalidStartLevel));
}
