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
use walker::{AccessKind, Endianness, Granule, PathHint, SlotAccess, Stage2Walker};

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
