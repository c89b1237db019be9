//! The walk with a path hint (`Stage2Walker::walk_path_hinted`,
//! `translate_leaf_path_hinted`): where the hint predicts a walk (and
//! where not), and that its result is the plain walk's when the tables
//! change under the hint. Random tables, registers and hints are in
//! `properties.rs` (`the_path_hinted_walk_equals_the_walk`).
#![cfg(not(loom))]
// host atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use crate::common;

use common::*;
use walker::{
    AccessKind, Endianness, FaultCause, Granule, Memslot, Memslots, PathHint, SlotAccess,
    Stage2Walker, WalkError,
};

const ARENA: u64 = 0x4000_0000;
const ARENA_BYTES: u64 = 1 << 20;
/// Two 2 MiB regions side by side, sharing their level-0 to level-2
/// tables, and a third in another 1 GiB (another level-2 table).
const REGION_A: u64 = 0x12_3440_0000;
const REGION_B: u64 = REGION_A + (2 << 20);
const REGION_C: u64 = REGION_A + (1 << 30);
/// A 2 MiB block at level 2 in yet another 1 GiB.
const BLOCK: u64 = REGION_A + (2 << 30);

struct Fixture {
    mem: Mem,
    walker: Stage2Walker,
}

/// 4KB from level 0, 48-bit IPA: every page of regions A and B mapped,
/// one page of C, the block.
fn fixture() -> Fixture {
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, ARENA_BYTES, SlotAccess::ReadWrite);
    let mut b = Builder::new(
        &mem,
        Granule::K4,
        0,
        48,
        AddrFormat::Plain,
        ARENA,
        ARENA_BYTES,
    );
    for page in 0..1024 {
        let ipa = REGION_A + page * 0x1000;
        b.map(3, ipa, 0x8_0000_0000 + page * 0x1000, LEAF_RW);
    }
    b.map(3, REGION_C, 0x9_0000_0000, LEAF_RW);
    b.map(2, BLOCK, 0xa_0000_0000, LEAF_RW);
    let walker = walker(
        vtcr(Granule::K4, 16, 2, PA_48),
        b.vttbr(),
        Endianness::Little,
        &features_48(),
    );
    assert!(walker.takes_specialised_walk());
    Fixture { mem, walker }
}

/// Walks `ipa` with `hint` (full and lean, each with its own copy of the
/// hint, kept in step) and checks both against the plain walk; returns
/// whether the hint predicted the walk.
fn walk(f: &Fixture, hint: &mut PathHint, ipa: u64) -> bool {
    let predicted = f.walker.path_hint_predicts(hint, ipa);
    let mut lean_hint = *hint;
    f.mem.with(|m| {
        let expected = f.walker.walk(m, ipa, AccessKind::Read);
        assert_eq!(
            f.walker.walk_path_hinted(m, ipa, AccessKind::Read, hint),
            expected,
            "{ipa:#x}"
        );
        let expected = f.walker.translate_leaf(m, ipa, AccessKind::Read);
        let lean = f
            .walker
            .translate_leaf_path_hinted(m, ipa, AccessKind::Read, &mut lean_hint);
        assert_eq!(lean, expected, "{ipa:#x}");
    });
    assert_eq!(lean_hint, *hint, "the lean walk keeps the same path");
    predicted
}

#[test]
fn walks_in_the_region_of_the_last_one_are_predicted_others_are_not() {
    let f = fixture();
    let mut hint = PathHint::default();
    assert!(
        !walk(&f, &mut hint, REGION_A + 0x5123),
        "nothing recorded yet"
    );
    assert!(hint.is_recorded());
    for page in [0, 1, 511, 77] {
        assert!(
            walk(&f, &mut hint, REGION_A + page * 0x1000 + 8),
            "page {page} of A"
        );
    }
    // The next region: another leaf table, the tag differs.
    assert!(!walk(&f, &mut hint, REGION_B + 0x3000));
    assert!(walk(&f, &mut hint, REGION_B + 0x4000));
    assert!(!walk(&f, &mut hint, REGION_A));
    assert!(!walk(&f, &mut hint, REGION_C));
    assert!(
        walk(&f, &mut hint, REGION_C + 0x1000),
        "unmapped: a fault, from the plain walk"
    );
    // A block at level 2: predicted anywhere in its 1 GiB (the level-2
    // table's span), the leaf read at this IPA's index.
    assert!(!walk(&f, &mut hint, BLOCK + 0x1234));
    assert!(walk(&f, &mut hint, BLOCK + (1 << 21) - 8));
    assert!(
        walk(&f, &mut hint, BLOCK + (5 << 21)),
        "unmapped entry of the same table"
    );
    // A faulting walk records nothing: the block's path is still there.
    assert!(walk(&f, &mut hint, BLOCK));
    // An IPA beyond the input size is the plain walk's fault.
    assert!(!walk(&f, &mut hint, 1 << 48));
}

#[test]
fn a_hint_of_another_configuration_does_not_predict() {
    let f = fixture();
    let mut hint = PathHint::default();
    walk(&f, &mut hint, REGION_A);
    let registers = |vtcr, vttbr| walker(vtcr, vttbr, Endianness::Little, &features_48());
    let vttbr = f.walker.table_base().unwrap();
    // Another output size (PS = 40 bits), another start table, another
    // shape (start level 1, T0SZ 25).
    for other in [
        registers(vtcr(Granule::K4, 16, 2, PA_40), vttbr),
        registers(vtcr(Granule::K4, 16, 2, PA_48), vttbr + 0x1000),
        registers(vtcr(Granule::K4, 25, 1, PA_48), vttbr),
    ] {
        assert!(
            !other.path_hint_predicts(&hint, REGION_A + 0x1000),
            "{other:?}"
        );
        let mut foreign = hint;
        f.mem.with(|m| {
            assert_eq!(
                other.walk_path_hinted(m, REGION_A + 0x1000, AccessKind::Read, &mut foreign),
                other.walk(m, REGION_A + 0x1000, AccessKind::Read)
            );
        });
    }
    assert!(f.walker.path_hint_predicts(&hint, REGION_A + 0x1000));
}

#[test]
fn a_path_rewritten_under_the_hint_gives_the_new_tables_translation() {
    let f = fixture();
    let mut hint = PathHint::default();
    walk(&f, &mut hint, REGION_A);
    assert!(walk(&f, &mut hint, REGION_A + 0x1000));
    // L1 points A's level-2 entry at B's leaf table: the hint still
    // matches the IPA (it records no values of memory for that), the
    // value read differs from the one it recorded, so the walk is the
    // plain walk's: B's pages.
    let trail_a = f
        .mem
        .with(|m| f.walker.walk(m, REGION_A, AccessKind::Read).unwrap().trail);
    let trail_b = f
        .mem
        .with(|m| f.walker.walk(m, REGION_B, AccessKind::Read).unwrap().trail);
    let (a2, b2) = (trail_a.as_slice()[2], trail_b.as_slice()[2]);
    f.mem.write(a2.address, b2.value);
    assert!(f.walker.path_hint_predicts(&hint, REGION_A + 0x2000));
    walk(&f, &mut hint, REGION_A + 0x2000);
    let moved = f.mem.with(|m| {
        f.walker
            .walk(m, REGION_A + 0x2000, AccessKind::Read)
            .unwrap()
    });
    assert_eq!(moved.output_address, 0x8_0000_0000 + (512 + 2) * 0x1000);
    // And back: the level-2 entry invalid, a translation fault at level 2.
    f.mem.write(a2.address, 0);
    walk(&f, &mut hint, REGION_A + 0x3000);
    // The level-0 entry invalid: a fault at level 0.
    f.mem.write(trail_a.as_slice()[0].address, 0);
    walk(&f, &mut hint, REGION_A + 0x3000);
    walk(&f, &mut hint, REGION_A + 0x4000);
}

/// Walks `ipa` with `recorder` (recording its path in a fresh hint),
/// then with `other` given that hint, and checks `other`'s full and lean
/// results against its plain walk; returns whether `other` took the
/// hint's path.
fn hint_of_one_walker_given_to_another(
    mem: &Mem,
    recorder: &Stage2Walker,
    other: &Stage2Walker,
    ipa: u64,
) -> bool {
    assert!(recorder.takes_specialised_walk() && other.takes_specialised_walk());
    let mut hint = PathHint::default();
    mem.with(|m| recorder.walk_path_hinted(m, ipa, AccessKind::Read, &mut hint))
        .expect("the recording walk translates");
    assert!(hint.is_recorded() && recorder.path_hint_predicts(&hint, ipa));
    let predicted = other.path_hint_predicts(&hint, ipa);
    let mut lean_hint = hint;
    mem.with(|m| {
        assert_eq!(
            other.walk_path_hinted(m, ipa, AccessKind::Read, &mut hint),
            other.walk(m, ipa, AccessKind::Read),
            "{other:?}"
        );
        assert_eq!(
            other.translate_leaf_path_hinted(m, ipa, AccessKind::Read, &mut lean_hint),
            other.translate_leaf(m, ipa, AccessKind::Read),
            "{other:?}"
        );
    });
    predicted
}

/// Review 67: the same start descriptor address, output size and IPA,
/// but another descriptor format. 64KB from level 2 at PS = 48 bits,
/// exposed PARange 48 (bits 15:12 of a table descriptor ignored) and
/// PARange 52 (FEAT_LPA: they are OA[51:48], so the next table lies
/// beyond the 48-bit output size: an address size fault at level 2).
#[test]
fn a_hint_of_the_other_64k_format_does_not_predict() {
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, ARENA_BYTES, SlotAccess::ReadWrite);
    let (root, leaf_table) = (ARENA, ARENA + 0x1_0000);
    let ipa = 0x2345_0000;
    // Level 2 resolves IPA bits 41:29 (T0SZ 22), level 3 bits 28:16.
    mem.write(root + (ipa >> 29) * 8, leaf_table | (0x1 << 12) | 3);
    mem.write(
        leaf_table + ((ipa >> 16) & 0x1fff) * 8,
        0x8_0000_0000 | LEAF_RW | 3,
    );
    let registers = vtcr(Granule::K64, 22, 1, PA_48);
    let plain_format = walker(registers, root, Endianness::Little, &features_48());
    let features_52 = features(mmfr0(PA_52), mmfr1(0, true), mmfr2(false));
    let lpa_format = walker(registers, root, Endianness::Little, &features_52);
    let expected = mem.with(|m| lpa_format.walk(m, ipa, AccessKind::Read));
    assert!(
        matches!(&expected, Err(WalkError::Fault(f))
            if f.cause == FaultCause::TableAddressOutOfRange && f.level == 2),
        "{expected:?}"
    );
    assert!(!hint_of_one_walker_given_to_another(
        &mem,
        &plain_format,
        &lpa_format,
        ipa
    ));
}

/// Review 67: the same start descriptor address, output size and IPA
/// bits above the recorded leaf table's span, another granule. A 16KB
/// walk from level 1 records its path (IPA bits 35:25 select the level-2
/// entry, 0 here); a 4KB walker from level 1 on the same VTTBR reads the
/// same start descriptor, but selects its level-2 entry by bits 29:21 (1
/// here), which is invalid: a translation fault at level 2.
#[test]
fn a_hint_of_another_granule_does_not_predict() {
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, ARENA_BYTES, SlotAccess::ReadWrite);
    let (root, level_2, level_3) = (ARENA, ARENA + 0x4000, ARENA + 0x8000);
    let ipa = 0x20_0000;
    mem.write(root, level_2 | 3);
    mem.write(level_2, level_3 | 3);
    // The 16KB leaf (bits 24:14: entry 0x80), and the entry a 4KB walk
    // would take (bits 20:12: entry 0) were it to follow the 16KB path.
    mem.write(level_3 + 0x80 * 8, 0x8_0000_0000 | LEAF_RW | 3);
    mem.write(level_3, 0x9_0000_0000 | LEAF_RW | 3);
    let k16 = walker(
        vtcr(Granule::K16, 17, 2, PA_48),
        root,
        Endianness::Little,
        &features_48(),
    );
    let k4 = walker(
        vtcr(Granule::K4, 25, 1, PA_48),
        root,
        Endianness::Little,
        &features_48(),
    );
    let expected = mem.with(|m| k4.walk(m, ipa, AccessKind::Read));
    assert!(
        matches!(&expected, Err(WalkError::Fault(f))
            if f.cause == FaultCause::InvalidDescriptor && f.level == 2),
        "{expected:?}"
    );
    assert!(!hint_of_one_walker_given_to_another(&mem, &k16, &k4, ipa));
}

/// Review 67: memslots replaced between two walks with one hint. The
/// level-1 table's memslot is gone from the second walk's memory: the
/// plain walk's read there is refused, an external abort on the walk at
/// level 1, although every other read of the hint's path succeeds and
/// holds the recorded value.
#[test]
fn a_table_read_refused_by_the_next_walks_memslots_is_the_plain_walks_abort() {
    // The root (level 0) in one memslot, the level-1 table in the next,
    // the level-2 and level-3 tables in a third (the builder allocates
    // them in that order, one 4 KiB table each).
    let mem = Mem::new(Endianness::Little)
        .with_slot(ARENA, 0x1000, SlotAccess::ReadWrite)
        .with_slot(ARENA + 0x1000, 0x1000, SlotAccess::ReadWrite)
        .with_slot(ARENA + 0x2000, 0x2000, SlotAccess::ReadWrite);
    let mut b = Builder::new(&mem, Granule::K4, 0, 48, AddrFormat::Plain, ARENA, 0x4000);
    b.map(3, REGION_A, 0x8_0000_0000, LEAF_RW);
    b.map(3, REGION_A + 0x1000, 0x8_0000_1000, LEAF_RW);
    let walker = walker(
        vtcr(Granule::K4, 16, 2, PA_48),
        b.vttbr(),
        Endianness::Little,
        &features_48(),
    );
    let mut hint = PathHint::default();
    let trail = mem
        .with(|m| walker.walk_path_hinted(m, REGION_A, AccessKind::Read, &mut hint))
        .expect("mapped")
        .trail;
    let level_1_read = trail.as_slice()[1].address;
    assert_eq!(level_1_read & !0xfff, ARENA + 0x1000);
    let without_level_1 = |f: &mut dyn FnMut(&Memslots<'_>)| {
        let mut slots: Vec<Memslot<'_>> = mem
            .slots
            .iter()
            .filter(|s| s.base != ARENA + 0x1000)
            .map(|s| Memslot::new(s.base, &s.words, s.access))
            .collect();
        f(&Memslots::new(&mut slots).expect("valid memslots"));
    };
    let ipa = REGION_A + 0x1000;
    assert!(walker.path_hint_predicts(&hint, ipa));
    let mut lean_hint = hint;
    without_level_1(&mut |m| {
        let expected = walker.walk(m, ipa, AccessKind::Read);
        assert!(
            matches!(&expected, Err(WalkError::Fault(f))
                if matches!(f.cause, FaultCause::DescriptorOutsideMemslots { address } if address == level_1_read)
                    && f.level == 1),
            "{expected:?}"
        );
        assert_eq!(
            walker.walk_path_hinted(m, ipa, AccessKind::Read, &mut hint),
            expected
        );
        assert_eq!(
            walker.translate_leaf_path_hinted(m, ipa, AccessKind::Read, &mut lean_hint),
            walker.translate_leaf(m, ipa, AccessKind::Read)
        );
    });
}
