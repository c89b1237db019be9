//! The lean walk (`Stage2Walker::translate_leaf`): the same walk as
//! `walk` without the descriptor trail. Random tables and registers are
//! covered by the property test in `properties.rs`; these are the cases
//! where the two could most plausibly part: hardware AF/dirty updates, a
//! refused update, each fault kind, 52-bit formats, contiguous blocks.
#![cfg(not(loom))]
// host atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use crate::common;

use common::*;
use walker::{
    AccessKind, Endianness, Execute, Fault, FaultCause, FaultKind, Granule, LeafTranslation, S2Ap,
    Shareability, SlotAccess, SlotHint, Stage2Walker, Trail, Translation, WalkError,
};

const ARENA: u64 = 0x4000_0000;
const IPA: u64 = 0x12_3456_7abc;

/// The lean result the full one implies: the leaf, or the fault without
/// its trail.
fn lean_of(full: &Result<Translation, WalkError>) -> Result<LeafTranslation, WalkError> {
    match full {
        Ok(t) => Ok(LeafTranslation::from(t)),
        Err(WalkError::Fault(f)) => Err(WalkError::Fault(Fault {
            trail: Trail::new(),
            ..*f
        })),
        Err(e) => Err(*e),
    }
}

/// Walks `ipa` fully on one copy of `mem` and leanly (plain and hinted)
/// on two others; results, reads and memory must agree.
fn assert_same(w: &Stage2Walker, mem: &Mem, ipa: u64, access: AccessKind) -> LeafTranslationOr {
    let (lean_mem, hinted_mem) = (mem.duplicate(), mem.duplicate());
    let (full, full_reads) = mem.with(|m| {
        let rec = Recording::new(m);
        let r = w.walk(&rec, ipa, access);
        let reads: Vec<u64> = rec.reads.borrow().clone();
        (r, reads)
    });
    let (lean, lean_reads) = lean_mem.with(|m| {
        let rec = Recording::new(m);
        let r = w.translate_leaf(&rec, ipa, access);
        let reads: Vec<u64> = rec.reads.borrow().clone();
        (r, reads)
    });
    let hinted =
        hinted_mem.with(|m| w.translate_leaf_hinted(m, ipa, access, &mut SlotHint::default()));
    assert_eq!(lean, lean_of(&full), "{ipa:#x} {access:?}");
    assert_eq!(hinted, lean);
    assert_eq!(lean_reads, full_reads);
    assert_eq!(lean_mem.snapshot(), mem.snapshot());
    assert_eq!(hinted_mem.snapshot(), mem.snapshot());
    lean
}

type LeafTranslationOr = Result<LeafTranslation, WalkError>;

fn page_table(attrs: u64, level: i32) -> (Mem, u64, u64) {
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, 1 << 20, SlotAccess::ReadWrite);
    let mut b = Builder::new(&mem, Granule::K4, 1, 40, AddrFormat::Plain, ARENA, 1 << 20);
    let size = 1u64 << b.lsb(level);
    let leaf = b.map(level, IPA, 0x8000_0000 & !(size - 1), attrs);
    let root = b.root;
    (mem, root, leaf)
}

const NO_AF: u64 = (3 << 8) | (0xf << 2);

#[test]
fn lean_walk_reports_the_leaf_as_the_full_walk() {
    let (mem, root, _) = page_table(LEAF_RW | (1 << 54), 3);
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5),
        root,
        Endianness::Little,
        &features_48(),
    );
    let t = assert_same(&w, &mem, IPA, AccessKind::Read).unwrap();
    assert_eq!(t.output_address, 0x8000_0000 | (IPA & 0xfff));
    assert_eq!(
        (t.level, t.block_size(), t.contiguous_size()),
        (3, 4096, 4096)
    );
    assert_eq!(t.s2ap, S2Ap::ReadWrite);
    assert_eq!(t.execute, Execute::Neither);
    assert_eq!(t.shareability, Shareability::InnerShareable);
    assert_eq!(t.mem_attr(), 0xf);
    assert!(!t.dirty_bit_modifier() && t.update == Default::default());
    assert_eq!(t.output_block_base(), 0x8000_0000);
    // Compact: two words and nine bytes of decoded fields.
    assert_eq!(std::mem::size_of::<LeafTranslation>(), 32);
    // A 2 MiB block with the contiguous hint: 16 blocks.
    let (mem, root, _) = page_table(LEAF_RW | (1 << 52), 2);
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5),
        root,
        Endianness::Little,
        &features_48(),
    );
    let t = assert_same(&w, &mem, IPA, AccessKind::Write).unwrap();
    assert_eq!(
        (t.level, t.block_size(), t.contiguous_size()),
        (2, 2 << 20, 32 << 20)
    );
}

#[test]
fn lean_walk_makes_the_same_hardware_updates() {
    // AF by HA; dirty state by HD on a DBM descriptor; both little and big
    // endian descriptors.
    for endian in [Endianness::Little, Endianness::Big] {
        let mem = Mem::new(endian).with_slot(ARENA, 1 << 20, SlotAccess::ReadWrite);
        let mut b = Builder::new(&mem, Granule::K4, 1, 40, AddrFormat::Plain, ARENA, 1 << 20);
        let leaf = b.map(3, IPA, 0x8000_0000, NO_AF | (1 << 6) | (1 << 51));
        let root = b.root;
        let vtcr = vtcr(Granule::K4, 24, 1, 5) | VTCR_HA | VTCR_HD;
        let w = walker(vtcr, root, endian, &features(mmfr0(PA_48), 2, 0));
        let before = mem.read(leaf);
        let t = assert_same(&w, &mem, IPA, AccessKind::Write).unwrap();
        assert!(t.update.access_flag && t.update.dirty);
        assert_eq!(t.descriptor, before | (1 << 10) | (1 << 7));
        assert_eq!(t.s2ap, S2Ap::ReadWrite);
    }
    // The update refused by a read-only memslot: the same external abort.
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, 1 << 20, SlotAccess::ReadOnly);
    let mut b = Builder::new(&mem, Granule::K4, 1, 40, AddrFormat::Plain, ARENA, 1 << 20);
    let leaf = b.map(3, IPA, 0x8000_0000, NO_AF | (3 << 6));
    let root = b.root;
    let vtcr = vtcr(Granule::K4, 24, 1, 5) | VTCR_HA;
    let w = walker(
        vtcr,
        root,
        Endianness::Little,
        &features(mmfr0(PA_48), 1, 0),
    );
    let e = assert_same(&w, &mem, IPA, AccessKind::Read).unwrap_err();
    let f = e.fault().unwrap();
    assert_eq!(f.cause, FaultCause::UpdateRefused { address: leaf });
    assert!(f.trail.is_empty());
}

#[test]
fn lean_walk_faults_as_the_full_walk_without_the_trail() {
    let (mem, root, leaf) = page_table(NO_AF | (1 << 6), 3);
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5),
        root,
        Endianness::Little,
        &features_48(),
    );
    // Access flag, then permission (write to read-only), then translation
    // (invalid leaf), then an external abort (table outside the memslots),
    // then a configuration fault.
    let f = *assert_same(&w, &mem, IPA, AccessKind::Read)
        .unwrap_err()
        .fault()
        .unwrap();
    assert_eq!((f.kind(), f.level), (FaultKind::AccessFlag, 3));
    mem.write(leaf, mem.read(leaf) | (1 << 10));
    let f = *assert_same(&w, &mem, IPA, AccessKind::Write)
        .unwrap_err()
        .fault()
        .unwrap();
    assert_eq!((f.cause, f.level), (FaultCause::WriteDenied, 3));
    mem.write(leaf, 0);
    let f = *assert_same(&w, &mem, IPA, AccessKind::Read)
        .unwrap_err()
        .fault()
        .unwrap();
    assert_eq!((f.cause, f.level), (FaultCause::InvalidDescriptor, 3));
    let root_entry = root + ((IPA >> 30) & 0x3ff) * 8;
    mem.write(root_entry, 0x7000_0000 | 3);
    let f = *assert_same(&w, &mem, IPA, AccessKind::Read)
        .unwrap_err()
        .fault()
        .unwrap();
    assert_eq!(f.kind(), FaultKind::ExternalAbortOnWalk);
    assert_eq!(f.level, 2);
    let bad = walker(
        vtcr(Granule::K4, 10, 1, 5),
        root,
        Endianness::Little,
        &features_48(),
    );
    let f = *assert_same(&bad, &mem, IPA, AccessKind::Read)
        .unwrap_err()
        .fault()
        .unwrap();
    assert_eq!((f.kind(), f.level), (FaultKind::Translation, 0));
}

#[test]
fn lean_walk_on_52_bit_formats_and_level_minus_one() {
    // FEAT_LPA2 4K from level -1 (52-bit input), output above 2^48.
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, 1 << 20, SlotAccess::ReadWrite);
    let mut b = Builder::new(&mem, Granule::K4, -1, 52, AddrFormat::Ds, ARENA, 1 << 20);
    let ipa = 0x000f_edcb_a987_6543u64;
    let oa = 0x000a_bcde_f012_3000u64;
    b.map(3, ipa, oa, (1 << 10) | (3 << 6) | (0xf << 2));
    let root = b.root;
    let vttbr = b.vttbr();
    let vtcr = vtcr(Granule::K4, 12, 0, 6) | VTCR_DS | VTCR_SL2 | (3 << 12);
    let w = walker(
        vtcr,
        vttbr,
        Endianness::Little,
        &features(mmfr0_lpa2(PA_52), 0, 0),
    );
    assert_eq!(w.start_level(), Some(-1));
    let t = assert_same(&w, &mem, ipa, AccessKind::Read).unwrap();
    assert_eq!(t.output_address, oa | (ipa & 0xfff));
    assert_eq!(t.shareability, Shareability::InnerShareable);
    let _ = root;
}
