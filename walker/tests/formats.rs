//! Issue items 3 and 5: 48- and 52-bit descriptor formats (FEAT_LPA with
//! 64KB, FEAT_LPA2 with DS = 1), the fields of a successful walk, the
//! contiguous hint, and descriptor byte order.
#![cfg(not(loom))]
// host atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use crate::common;

use common::*;
use walker::{
    AccessKind, DescriptorKind, Endianness, Execute, FaultCause, Granule, S2Ap, Shareability,
    SlotAccess,
};

/// A memslot above 2^48 so that tables and outputs need OA[51:48].
const HIGH: u64 = 0x000a_0000_0000_0000 | 0x0003_4000_0000_0000 & 0x000f_ffff_ffff_0000;

#[test]
fn lpa_64k_uses_vttbr_5_2_and_descriptor_15_12_for_bits_51_48() {
    let f = features(mmfr0(PA_52), 0, 0);
    let mem = Mem::new(Endianness::Little).with_slot(HIGH, 4 << 20, SlotAccess::ReadWrite);
    // 64KB, 52-bit input, start level 1 (SL0 = 2).
    let mut b = Builder::new(&mem, Granule::K64, 1, 52, AddrFormat::Lpa64k, HIGH, 4 << 20);
    let ipa = 0x000f_edcb_a987_6543;
    let oa = 0x000c_1234_5678_0000;
    b.map(3, ipa, oa, LEAF_RW);
    let vttbr = b.vttbr();
    assert_ne!(vttbr & 0x3c, 0, "BADDR[51:48] is in VTTBR bits 5:2");
    let w = walker(vtcr(Granule::K64, 12, 2, 6), vttbr, Endianness::Little, &f);
    assert_eq!(w.table_base(), Some(b.root));
    assert_eq!(w.output_size_bits(), 52);
    let t = mem.with(|m| w.walk(m, ipa, AccessKind::Read)).unwrap();
    assert_eq!(t.output_address, oa | (ipa & 0xffff));
    assert!(t
        .trail
        .as_slice()
        .iter()
        .all(|r| r.address >> 48 == HIGH >> 48));

    // With PS = 48 the same tables are out of range: BADDR bits 5:2 are not
    // address bits then, so the base is below 2^48 and outside memory...
    let w48 = walker(vtcr(Granule::K64, 12, 2, 5), vttbr, Endianness::Little, &f);
    assert_eq!(w48.table_base(), Some(b.root & ((1 << 48) - 1)));
    let e = mem
        .with(|m| w48.walk(m, ipa, AccessKind::Read))
        .unwrap_err();
    assert_eq!(e.fault().unwrap().fsc(), 0x15);
    // ...and with PAMax 48 descriptor bits 15:12 are not OA bits either.
    let f48 = features(mmfr0(PA_48), 0, 0);
    let w = walker(vtcr(Granule::K64, 16, 2, 5), 0, Endianness::Little, &f48);
    assert_eq!(
        w.decode_descriptor(2, (0xf << 12) | 0x1234_0000 | 3),
        DescriptorKind::Table {
            next_table: 0x1234_0000
        }
    );
}

#[test]
fn lpa_64k_level_1_blocks_of_4tb() {
    let f = features(mmfr0(PA_52), 0, 0);
    let mem = Mem::new(Endianness::Little).with_slot(HIGH, 4 << 20, SlotAccess::ReadWrite);
    let mut b = Builder::new(&mem, Granule::K64, 1, 52, AddrFormat::Lpa64k, HIGH, 4 << 20);
    let ipa = 0x0001_0123_4567_89ab;
    let oa = 0x000f_4000_0000_0000;
    b.map(1, ipa, oa, LEAF_RW);
    let w = walker(
        vtcr(Granule::K64, 12, 2, 6),
        b.vttbr(),
        Endianness::Little,
        &f,
    );
    let t = mem.with(|m| w.walk(m, ipa, AccessKind::Write)).unwrap();
    assert_eq!((t.level, t.block_size), (1, 1 << 42));
    assert_eq!(t.output_address, oa | (ipa & ((1 << 42) - 1)));
}

#[test]
fn lpa2_4k_walks_from_level_minus_one_with_bits_9_8_and_sh0() {
    let f = features(mmfr0_lpa2(PA_52), 0, 0);
    let mem = Mem::new(Endianness::Little).with_slot(HIGH, 1 << 20, SlotAccess::ReadWrite);
    let mut b = Builder::new(&mem, Granule::K4, -1, 52, AddrFormat::Ds, HIGH, 1 << 20);
    let ipa = 0x000f_fedc_ba98_7654;
    let oa = 0x000d_5555_4444_3000;
    // Descriptor bits 9:8 hold OA[51:50] with DS = 1, not shareability.
    let attrs = (1 << 10) | (3 << 6) | (0xf << 2);
    b.map(3, ipa, oa, attrs);
    // SH0 = Outer Shareable.
    let regs = (vtcr(Granule::K4, 12, 0, 6) & !(3 << 12)) | (2 << 12) | VTCR_DS | VTCR_SL2;
    let w = walker(regs, b.vttbr(), Endianness::Little, &f);
    assert!(w.lpa2());
    let t = mem.with(|m| w.walk(m, ipa, AccessKind::Read)).unwrap();
    assert_eq!(t.output_address, oa | 0x654);
    assert_eq!(t.shareability, Shareability::OuterShareable);
    assert_eq!(t.trail.len(), 5);
    let levels: Vec<i8> = t.trail.as_slice().iter().map(|r| r.level).collect();
    assert_eq!(levels, [-1, 0, 1, 2, 3]);

    // A 512GB level-0 block.
    let ipa0 = 0x0004_0012_3456_789a;
    let oa0 = 0x000b_8000_0000_0000;
    b.map(0, ipa0, oa0, attrs);
    let t = mem.with(|m| w.walk(m, ipa0, AccessKind::Read)).unwrap();
    assert_eq!((t.level, t.block_size), (0, 1 << 39));
    assert_eq!(t.output_address, oa0 | (ipa0 & ((1 << 39) - 1)));
}

#[test]
fn lpa2_16k_start_level_0_and_level_1_blocks() {
    let f = features(mmfr0_lpa2(PA_52), 0, 0);
    let mem = Mem::new(Endianness::Little).with_slot(HIGH, 1 << 21, SlotAccess::ReadWrite);
    let mut b = Builder::new(&mem, Granule::K16, 0, 52, AddrFormat::Ds, HIGH, 1 << 21);
    let ipa = 0x000f_0123_4567_89ab;
    let oa = 0x000e_0000_0000_0000 | (0x9 << 36);
    b.map(1, ipa, oa, LEAF_RW);
    let regs = vtcr(Granule::K16, 12, 3, 6) | VTCR_DS;
    let w = walker(regs, b.vttbr(), Endianness::Little, &f);
    assert_eq!(w.start_level(), Some(0));
    let t = mem.with(|m| w.walk(m, ipa, AccessKind::Read)).unwrap();
    assert_eq!((t.level, t.block_size), (1, 1 << 36));
    assert_eq!(t.output_address, oa | (ipa & ((1 << 36) - 1)));
    // SH comes from VTCR.SH0 (inner, from `vtcr`), never from bits 9:8.
    assert_eq!(t.shareability, Shareability::InnerShareable);
}

#[test]
fn a_successful_walk_reports_every_field() {
    let f = features(mmfr0(PA_48), mmfr1(0, true), 0);
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
    let ipa = 0x12_3456_789a;
    // MemAttr 0b0101, SH outer, S2AP read-only, XN = 0b11, DBM set.
    let attrs = (1 << 10) | (2 << 8) | (1 << 6) | (0b0101 << 2) | (3 << 53) | (1 << 51);
    let leaf = b.map(3, ipa, 0xab_cdef_0000, attrs);
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5),
        b.vttbr(),
        Endianness::Little,
        &f,
    );
    let t = mem.with(|m| w.walk(m, ipa, AccessKind::Read)).unwrap();
    assert_eq!(t.ipa, ipa);
    assert_eq!(t.output_address, 0xab_cdef_089a);
    assert_eq!((t.level, t.block_size, t.contiguous_size), (3, 4096, 4096));
    assert_eq!(t.s2ap, S2Ap::ReadOnly);
    assert_eq!(t.execute, Execute::El1Only);
    assert!(t.dirty_bit_modifier);
    assert_eq!(t.mem_attr, 0b0101);
    assert_eq!(t.shareability, Shareability::OuterShareable);
    assert_eq!(t.descriptor, mem.read(leaf));
    assert_eq!(t.update, Default::default());
    assert_eq!(t.leaf_address(), leaf);
    assert_eq!(t.trail.len(), 3);
    assert_eq!(
        t.trail
            .as_slice()
            .iter()
            .map(|r| r.value)
            .collect::<Vec<_>>(),
        t.trail
            .as_slice()
            .iter()
            .map(|r| mem.read(r.address))
            .collect::<Vec<_>>()
    );
    assert_eq!(t.output_block_base(), 0xab_cdef_0000);
    assert_eq!(t.ipa_block_base(), 0x12_3456_7000);
}

#[test]
fn contiguous_hint_sizes_and_stage_oa() {
    // (granule, t0sz, sl0, start level, level, entries)
    let cases = [
        (Granule::K4, 24, 1, 1, 3, 16u64),
        (Granule::K4, 24, 1, 1, 2, 16),
        (Granule::K4, 24, 1, 1, 1, 16),
        (Granule::K16, 28, 1, 2, 3, 128),
        (Granule::K16, 28, 1, 2, 2, 32),
        (Granule::K64, 24, 1, 2, 3, 32),
        (Granule::K64, 24, 1, 2, 2, 32),
    ];
    for (granule, t0sz, sl0, start, level, entries) in cases {
        let mem =
            Mem::new(Endianness::Little).with_slot(0x4000_0000, 2 << 20, SlotAccess::ReadWrite);
        let ia = 64 - t0sz as u32;
        let mut b = Builder::new(
            &mem,
            granule,
            start,
            ia,
            AddrFormat::Plain,
            0x4000_0000,
            2 << 20,
        );
        let block = 1u64 << b.lsb(level);
        let span = block * entries;
        // An IPA in entry 3 of the contiguous range, and a descriptor whose
        // OA is misaligned inside the range: StageOA takes the bits below
        // the range from the IPA.
        let ipa = 5 * span + 3 * block + 0x123;
        let oa_base = 9 * span;
        b.map(level, ipa, oa_base + 7 * block, LEAF_RW | (1 << 52));
        let w = walker(
            vtcr(granule, t0sz, sl0, 5),
            b.vttbr(),
            Endianness::Little,
            &features_48(),
        );
        assert_eq!(w.start_level(), Some(start as i8));
        let t = mem.with(|m| w.walk(m, ipa, AccessKind::Read)).unwrap();
        assert_eq!(
            (t.block_size, t.contiguous_size),
            (block, span),
            "{granule:?} L{level}"
        );
        assert_eq!(t.output_address, oa_base + 3 * block + 0x123);
        // Without the hint the descriptor's own OA is used.
        b.map(level, ipa, oa_base + 7 * block, LEAF_RW);
        let t = mem.with(|m| w.walk(m, ipa, AccessKind::Read)).unwrap();
        assert_eq!(
            (t.contiguous_size, t.output_address),
            (block, oa_base + 7 * block + 0x123)
        );
    }
}

#[test]
fn contiguous_bit_is_res0_on_lpa_and_lpa2_level_0_and_1_blocks() {
    let f = features(mmfr0_lpa2(PA_52), 0, 0);
    let w = walker(
        vtcr(Granule::K4, 12, 0, 6) | VTCR_DS | VTCR_SL2,
        0,
        Endianness::Little,
        &f,
    );
    let DescriptorKind::Leaf(a) = w.decode_descriptor(0, LEAF_RW | (1 << 52) | 1) else {
        panic!()
    };
    assert!(!a.contiguous);
    assert_eq!(a.contiguous_size, 1 << 39);
    let w = walker(vtcr(Granule::K64, 12, 2, 6), 0, Endianness::Little, &f);
    let DescriptorKind::Leaf(a) = w.decode_descriptor(1, LEAF_RW | (1 << 52) | 1) else {
        panic!()
    };
    assert!(!a.contiguous);
}

#[test]
fn big_endian_descriptors_follow_sctlr_el2_ee() {
    assert_eq!(Endianness::from_sctlr_el2(1 << 25), Endianness::Big);
    assert_eq!(Endianness::from_sctlr_el2(!(1 << 25)), Endianness::Little);
    for endian in [Endianness::Little, Endianness::Big] {
        let mem = Mem::new(endian).with_slot(0x4000_0000, 1 << 20, SlotAccess::ReadWrite);
        let mut b = Builder::new(
            &mem,
            Granule::K4,
            1,
            40,
            AddrFormat::Plain,
            0x4000_0000,
            1 << 20,
        );
        b.map(3, 0x1234_5000, 0x9_8765_4000, LEAF_RW);
        let w = walker(
            vtcr(Granule::K4, 24, 1, 5),
            b.vttbr(),
            endian,
            &features_48(),
        );
        let t = mem
            .with(|m| w.walk(m, 0x1234_5678, AccessKind::Read))
            .unwrap();
        assert_eq!(t.output_address, 0x9_8765_4678);
        // The same bytes read with the other byte order are not a valid walk.
        let other = match endian {
            Endianness::Little => Endianness::Big,
            Endianness::Big => Endianness::Little,
        };
        let w = walker(
            vtcr(Granule::K4, 24, 1, 5),
            b.vttbr(),
            other,
            &features_48(),
        );
        let e = mem
            .with(|m| w.walk(m, 0x1234_5678, AccessKind::Read))
            .unwrap_err();
        assert!(e.fault().is_some());
    }
}

#[test]
fn shareability_reserved_encoding_is_reported_as_found() {
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
    b.map(2, 0x20_0000, 0x40_0000, (LEAF_RW & !(3 << 8)) | (1 << 8));
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5),
        b.vttbr(),
        Endianness::Little,
        &features_48(),
    );
    let t = mem
        .with(|m| w.walk(m, 0x20_0000, AccessKind::Read))
        .unwrap();
    assert_eq!(t.shareability, Shareability::Reserved);
    assert_eq!(
        mem.with(|m| w.walk(m, 1 << 41, AccessKind::Read))
            .unwrap_err()
            .fault()
            .unwrap()
            .cause,
        FaultCause::IpaOutOfRange
    );
}

#[test]
fn a_contiguous_hint_wider_than_the_input_size_does_not_fault() {
    // 16KB, FEAT_TTST, start level 3, 16-bit input: a contiguous page spans
    // 128 x 16KB = 2MB, more than the whole 64KB input range. This walker's
    // IMPLEMENTATION DEFINED choice is no fault; StageOA takes OA bits below
    // 2^21 from the IPA.
    let f = features(mmfr0(PA_48), 0, mmfr2(true));
    let mem = Mem::new(Endianness::Little).with_slot(0x4000_0000, 1 << 20, SlotAccess::ReadWrite);
    let mut b = Builder::new(
        &mem,
        Granule::K16,
        3,
        16,
        AddrFormat::Plain,
        0x4000_0000,
        1 << 20,
    );
    let ipa = 0xc123;
    b.map(3, ipa, 0x7654_0000 | (5 << 14), LEAF_RW | (1 << 52));
    let w = walker(
        vtcr(Granule::K16, 48, 0, 5),
        b.vttbr(),
        Endianness::Little,
        &f,
    );
    assert_eq!(w.start_level(), Some(3));
    let t = mem.with(|m| w.walk(m, ipa, AccessKind::Read)).unwrap();
    assert_eq!((t.block_size, t.contiguous_size), (1 << 14, 1 << 21));
    assert_eq!(t.output_address, 0x7640_0000 | ipa);
}
