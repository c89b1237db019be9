//! The tool interface: decoding single descriptors and visiting every leaf
//! of a table (what `s2walk walk` and `s2walk dump` print).
#![cfg(not(loom))]
// host atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use crate::common;

use std::ops::ControlFlow;

use common::*;
use std::collections::HashSet;

use walker::{
    AccessKind, DescriptorKind, Endianness, Execute, Fault, FaultCause, Granule, Mapping,
    MappingVisitor, S2Ap, SlotAccess, TableReference, TableStep,
};

const ARENA: u64 = 0x4000_0000;

#[test]
fn decode_descriptor_per_level() {
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5),
        ARENA,
        Endianness::Little,
        &features_48(),
    );
    assert_eq!(w.decode_descriptor(1, 0), DescriptorKind::Invalid);
    assert_eq!(w.decode_descriptor(1, 2), DescriptorKind::Invalid);
    assert_eq!(w.decode_descriptor(3, 1), DescriptorKind::BlockNotPermitted);
    assert_eq!(w.decode_descriptor(0, 1), DescriptorKind::BlockNotPermitted);
    assert_eq!(
        w.decode_descriptor(2, 0x1234_5000 | 3),
        DescriptorKind::Table {
            next_table: 0x1234_5000
        }
    );
    let DescriptorKind::Leaf(a) = w.decode_descriptor(3, 0x9876_5000 | LEAF_RW | (2 << 53) | 3)
    else {
        panic!()
    };
    assert_eq!((a.output_base, a.size), (0x9876_5000, 4096));
    assert_eq!(
        (a.s2ap, a.execute, a.access_flag),
        (S2Ap::ReadWrite, Execute::Neither, true)
    );
    let DescriptorKind::Leaf(a) = w.decode_descriptor(1, 0x8000_0000 | LEAF_RW | (1 << 52) | 1)
    else {
        panic!()
    };
    assert_eq!(
        (a.size, a.contiguous, a.contiguous_size),
        (1 << 30, true, 16 << 30)
    );
}

#[test]
fn visit_mappings_lists_every_leaf_in_ipa_order_and_reports_broken_regions() {
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, 1 << 20, SlotAccess::ReadWrite);
    let mut b = Builder::new(&mem, Granule::K4, 1, 40, AddrFormat::Plain, ARENA, 1 << 20);
    b.map(3, 0x3000, 0x9000, LEAF_RW);
    b.map(3, 0x1000, 0x7000, LEAF_RW & !(1 << 10));
    b.map(
        2,
        0x4000_0000,
        0x8000_0000,
        (LEAF_RW & !(3 << 6)) | (1 << 6),
    );
    b.put(1, 0x80_0000_0000 - (1 << 30), 0x7000_0000 | 3); // table outside memory
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5),
        b.vttbr(),
        Endianness::Little,
        &features_48(),
    );
    let mut seen = Vec::new();
    mem.with(|m| {
        w.visit_mappings(m, |entry| {
            seen.push(entry);
            ControlFlow::Continue(())
        })
    })
    .unwrap();
    let leaves: Vec<&Mapping> = seen.iter().filter_map(|e| e.as_ref().ok()).collect();
    assert_eq!(
        leaves
            .iter()
            .map(|m| (m.ipa, m.output_address, m.level))
            .collect::<Vec<_>>(),
        [
            (0x1000, 0x7000, 3),
            (0x3000, 0x9000, 3),
            (0x4000_0000, 0x8000_0000, 2)
        ]
    );
    assert!(!leaves[0].attributes.access_flag);
    assert_eq!(leaves[2].attributes.s2ap, S2Ap::ReadOnly);
    // Every leaf agrees with a walk of its IPA.
    for leaf in &leaves[1..] {
        let t = mem.with(|m| w.walk(m, leaf.ipa, AccessKind::Read)).unwrap();
        assert_eq!(t.output_address, leaf.output_address);
        assert_eq!(t.leaf_address(), leaf.descriptor.address);
    }
    let faults: Vec<_> = seen.iter().filter_map(|e| e.as_ref().err()).collect();
    assert_eq!(
        faults.len(),
        512,
        "each entry of the missing level-2 table aborts"
    );
    assert!(faults
        .iter()
        .all(|f| matches!(f.cause, FaultCause::DescriptorOutsideMemslots { .. }) && f.level == 2));

    // Early stop.
    let mut count = 0;
    mem.with(|m| {
        w.visit_mappings(m, |_| {
            count += 1;
            ControlFlow::Break(())
        })
    })
    .unwrap();
    assert_eq!(count, 1);

    // A configuration fault is returned, nothing is visited.
    let bad = walker(
        vtcr(Granule::K4, 8, 1, 5),
        ARENA,
        Endianness::Little,
        &features_48(),
    );
    let e = mem
        .with(|m| bad.visit_mappings(m, |_| panic!("visited")))
        .unwrap_err();
    assert!(matches!(e.cause, FaultCause::InputSizeOutOfRange { .. }));
}

/// Expands each (table, level) once and records what it was shown.
#[derive(Default)]
struct ExpandOnce {
    seen: HashSet<(u64, i8)>,
    references: Vec<TableReference>,
    leaves: Vec<(u64, u64)>,
    stop_at_reference: Option<usize>,
}

impl MappingVisitor for ExpandOnce {
    fn table(&mut self, reference: &TableReference) -> TableStep {
        self.references.push(*reference);
        if Some(self.references.len()) == self.stop_at_reference {
            TableStep::Stop
        } else if self.seen.insert((reference.table, reference.table_level)) {
            TableStep::Descend
        } else {
            TableStep::Skip
        }
    }

    fn mapping(&mut self, item: Result<Mapping, Fault>) -> ControlFlow<()> {
        let leaf = item.expect("no faulting regions in this table");
        self.leaves.push((leaf.ipa, leaf.output_address));
        ControlFlow::Continue(())
    }
}

#[test]
fn the_table_hook_sees_every_table_descriptor_and_skipped_tables_are_not_read() {
    // 4K, start level 1, 40-bit IPA. Level-1 entries 0 and 2 point at the
    // same level-2 table, whose entry 0 points at a level-3 table with two
    // pages; level-1 entry 1 points at a table of its own with one block.
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, 1 << 20, SlotAccess::ReadWrite);
    let mut b = Builder::new(&mem, Granule::K4, 1, 40, AddrFormat::Plain, ARENA, 1 << 20);
    b.map(3, 0x0, 0x9000_0000, LEAF_RW);
    b.map(3, 0x5000, 0x9000_5000, LEAF_RW);
    b.map(2, 0x4020_0000, 0xa000_0000, LEAF_RW);
    let shared = b.table_at(2, 0);
    let level3 = b.table_at(3, 0);
    let alias_entry = b.put(1, 0x8000_0000, shared | 3);
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5),
        b.vttbr(),
        Endianness::Little,
        &features_48(),
    );
    let mut visitor = ExpandOnce::default();
    let reads = mem.with(|m| {
        let recording = Recording::new(m);
        w.visit_mappings_with(&recording, &mut visitor).unwrap();
        recording.reads.into_inner()
    });
    let references: Vec<(u64, u64, u64, i8)> = visitor
        .references
        .iter()
        .map(|r| (r.ipa, r.span, r.table, r.table_level))
        .collect();
    let own = b.table_at(2, 0x4000_0000);
    assert_eq!(
        references,
        [
            (0, 1 << 30, shared, 2),
            (0, 1 << 21, level3, 3),
            (0x4000_0000, 1 << 30, own, 2),
            (0x8000_0000, 1 << 30, shared, 2),
        ]
    );
    assert_eq!(visitor.references[3].descriptor.address, alias_entry);
    assert_eq!(visitor.references[3].descriptor.level, 1);
    assert_eq!(visitor.references[3].descriptor.value, shared | 3);
    // The aliased table's leaves are reported once, at their first IPAs.
    assert_eq!(
        visitor.leaves,
        [
            (0x0, 0x9000_0000),
            (0x5000, 0x9000_5000),
            (0x4020_0000, 0xa000_0000)
        ]
    );
    // The root (2^(40-30) entries), the shared level-2 table, its level-3
    // table and the other level-2 table, each entry once: the skipped
    // repeat reads nothing.
    assert_eq!(reads.len(), 1024 + 3 * 512);
    assert_eq!(reads.iter().collect::<HashSet<_>>().len(), reads.len());

    // Stop ends the visit at once.
    let mut visitor = ExpandOnce {
        stop_at_reference: Some(3),
        ..ExpandOnce::default()
    };
    mem.with(|m| w.visit_mappings_with(m, &mut visitor))
        .unwrap();
    assert_eq!(visitor.references.len(), 3);
    assert_eq!(visitor.leaves, [(0x0, 0x9000_0000), (0x5000, 0x9000_5000)]);
}
