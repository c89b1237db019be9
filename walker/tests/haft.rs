//! FEAT_HAFT (ID_AA64MMFR1_EL1.HAFDBS = 0b0011): with VTCR_EL2.HAFT (bit
//! 44) and VTCR_EL2.HA, the walk sets AF in every table descriptor it goes
//! through, by compare-and-swap, before the next lookup (AArch64.S2Walk:
//! `new_desc<10> = '1'` for a table with walkparams.haft, then
//! AArch64.MemSwapTableDesc).
#![cfg(not(loom))]
// host atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use crate::common;

use std::cell::Cell;

use common::*;
use walker::{
    AccessKind, Endianness, FaultCause, FaultKind, Granule, GuestMemory, HardwareUpdates,
    MemoryError, Memslots, SlotAccess, WalkError, WalkRequest, MAX_UPDATE_ATTEMPTS,
};

const ARENA: u64 = 0x4000_0000;
const IPA: u64 = 0x12_3456_7000;
const AF: u64 = 1 << 10;

/// A 4K table from level 1 (40-bit input) mapping IPA's page; every table
/// descriptor has AF clear. Returns the memory, root, the two table
/// descriptors' addresses (levels 1, 2) and the leaf's.
fn tables(endian: Endianness, access: SlotAccess, leaf_attrs: u64) -> (Mem, u64, [u64; 2], u64) {
    let mem = Mem::new(endian).with_slot(ARENA, 1 << 20, access);
    let (root, l1, l2, leaf) = {
        let mut b = Builder::new(&mem, Granule::K4, 1, 40, AddrFormat::Plain, ARENA, 1 << 20);
        let leaf = b.map(3, IPA, 0x8000_0000, leaf_attrs);
        (b.root, b.slot(1, IPA), b.slot(2, IPA), leaf)
    };
    (mem, root, [l1, l2], leaf)
}

fn haft_vtcr() -> u64 {
    vtcr(Granule::K4, 24, 1, 5) | VTCR_HA | VTCR_HAFT
}

fn haft_features() -> walker::ExposedFeatures {
    features(mmfr0(PA_48), 3, 0)
}

#[test]
fn hafdbs_3_is_feat_haft() {
    let f = haft_features();
    assert_eq!(
        f.hardware_updates(),
        HardwareUpdates::AccessFlagDirtyAndTables
    );
    // It includes dirty state (HAFDBS 2).
    let w = walker(haft_vtcr() | VTCR_HD, 0, Endianness::Little, &f);
    assert!(w.hardware_access_flag() && w.hardware_dirty_state());
    assert!(w.hardware_table_access_flag());
}

#[test]
fn table_access_flags_are_set_on_the_way_down() {
    for endian in [Endianness::Little, Endianness::Big] {
        let (mem, root, [l1, l2], leaf) = tables(endian, SlotAccess::ReadWrite, LEAF_RW);
        let w = walker(haft_vtcr(), root, endian, &haft_features());
        let before = [mem.read(l1), mem.read(l2)];
        assert!(before.iter().all(|d| d & AF == 0));
        let (t, swaps) = mem.with(|m| {
            let rec = Recording::new(m);
            let t = w.walk(&rec, IPA, AccessKind::Read).unwrap();
            let swaps: Vec<u64> = rec.swaps.borrow().clone();
            (t, swaps)
        });
        // One compare-and-swap per table descriptor, in walk order; the
        // leaf had AF already.
        assert_eq!(swaps, vec![l1, l2]);
        assert_eq!([mem.read(l1), mem.read(l2)], before.map(|d| d | AF));
        assert_eq!(t.output_address, 0x8000_0000);
        assert!(!t.update.leaf_updated(), "the leaf needed nothing");
        assert_eq!(t.update.table_access_flags, 2);
        // The trail holds the table descriptors as written (AF set), as
        // AArch64.S2Walk goes on with them: what memory now holds.
        let values: Vec<u64> = t.trail.as_slice().iter().map(|r| r.value).collect();
        assert_eq!(values, vec![before[0] | AF, before[1] | AF, mem.read(leaf)]);
        assert_eq!(values, vec![mem.read(l1), mem.read(l2), mem.read(leaf)]);
        // A second walk writes nothing.
        let swaps = mem.with(|m| {
            let rec = Recording::new(m);
            w.walk(&rec, IPA, AccessKind::Read).unwrap();
            let swaps: Vec<u64> = rec.swaps.borrow().clone();
            swaps
        });
        assert!(swaps.is_empty());
        // The lean walk makes the same updates and says so.
        let (mem2, root2, [m1, m2], _) = tables(endian, SlotAccess::ReadWrite, LEAF_RW);
        let w2 = walker(haft_vtcr(), root2, endian, &haft_features());
        let lean = mem2
            .with(|m| w2.translate_leaf(m, IPA, AccessKind::Read))
            .unwrap();
        assert_eq!(mem2.read(m1) & mem2.read(m2) & AF, AF);
        assert_eq!(lean.update, t.update);
        let again = mem2
            .with(|m| w2.translate_leaf(m, IPA, AccessKind::Read))
            .unwrap();
        assert_eq!(again.update.table_access_flags, 0, "nothing left to set");
    }
}

#[test]
fn haft_needs_hafdbs_3_ha_and_the_vtcr_bit() {
    let base = vtcr(Granule::K4, 24, 1, 5);
    for (hafdbs, vtcr, on) in [
        (3, base | VTCR_HA | VTCR_HAFT, true),
        (3, base | VTCR_HAFT, false),
        (3, base | VTCR_HA, false),
        (2, base | VTCR_HA | VTCR_HAFT, false),
        (1, base | VTCR_HA | VTCR_HAFT, false),
    ] {
        let (mem, root, [l1, l2], _) = tables(Endianness::Little, SlotAccess::ReadWrite, LEAF_RW);
        let w = walker(
            vtcr,
            root,
            Endianness::Little,
            &features(mmfr0(PA_48), hafdbs, 0),
        );
        assert_eq!(
            w.hardware_table_access_flag(),
            on,
            "HAFDBS {hafdbs} VTCR {vtcr:#x}"
        );
        mem.with(|m| w.walk(m, IPA, AccessKind::Read)).unwrap();
        let set = mem.read(l1) & mem.read(l2) & AF != 0;
        assert_eq!(set, on, "HAFDBS {hafdbs} VTCR {vtcr:#x}");
    }
}

#[test]
fn table_access_flags_stay_set_when_the_walk_faults_below() {
    // An invalid leaf: translation fault at level 3, tables updated.
    let (mem, root, [l1, l2], leaf) = tables(Endianness::Little, SlotAccess::ReadWrite, LEAF_RW);
    mem.write(leaf, 0);
    let w = walker(haft_vtcr(), root, Endianness::Little, &haft_features());
    let e = mem.with(|m| w.walk(m, IPA, AccessKind::Read)).unwrap_err();
    let f = e.fault().unwrap();
    assert_eq!((f.cause, f.level), (FaultCause::InvalidDescriptor, 3));
    assert_eq!(mem.read(l1) & mem.read(l2) & AF, AF);
    // A level-2 table descriptor pointing beyond the output size: address
    // size fault at level 2, checked before its AF would be set.
    let (mem, root, [l1, l2], _) = tables(Endianness::Little, SlotAccess::ReadWrite, LEAF_RW);
    mem.write(l2, (1 << 47) | 3);
    let w = walker(
        vtcr(Granule::K4, 24, 1, 2) | VTCR_HA | VTCR_HAFT, // PS = 40 bits
        root,
        Endianness::Little,
        &haft_features(),
    );
    let e = mem.with(|m| w.walk(m, IPA, AccessKind::Read)).unwrap_err();
    let f = e.fault().unwrap();
    assert_eq!((f.cause, f.level), (FaultCause::TableAddressOutOfRange, 2));
    assert_eq!(mem.read(l1) & AF, AF);
    assert_eq!(mem.read(l2), (1 << 47) | 3);
}

#[test]
fn a_refused_table_update_is_an_external_abort_at_the_table_level() {
    let (mem, root, [l1, _], _) = tables(Endianness::Little, SlotAccess::ReadOnly, LEAF_RW);
    let w = walker(haft_vtcr(), root, Endianness::Little, &haft_features());
    let e = mem.with(|m| w.walk(m, IPA, AccessKind::Read)).unwrap_err();
    let f = e.fault().unwrap();
    assert_eq!(f.cause, FaultCause::UpdateRefused { address: l1 });
    assert_eq!(
        (f.kind(), f.level, f.fsc()),
        (FaultKind::ExternalAbortOnWalk, 1, 0x15)
    );
    assert_eq!(mem.read(l1) & AF, 0);
    // The same table with AF already set needs no write: the walk goes on.
    mem.write(l1, mem.read(l1) | AF);
    let e = mem.with(|m| w.walk(m, IPA, AccessKind::Read)).unwrap_err();
    assert_eq!(e.fault().unwrap().level, 2);
}

/// Another agent changes a table descriptor between the walk's read and
/// its compare-and-swap `races` times.
struct Racing<'a> {
    inner: &'a Memslots<'a>,
    races: Cell<usize>,
    reads: Cell<usize>,
}

impl GuestMemory for Racing<'_> {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        self.reads.set(self.reads.get() + 1);
        self.inner.read_descriptor(address)
    }
    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        if self.races.get() > 0 {
            self.races.set(self.races.get() - 1);
            // Flip a software bit (55): the descriptor changes each time.
            let now = self.inner.read_descriptor(address)?;
            self.inner.store_raw(address, now ^ (1u64 << 55).to_le())?;
        }
        self.inner
            .compare_exchange_descriptor(address, current, new)
    }
}

#[test]
fn a_lost_table_race_restarts_the_walk_within_the_bound() {
    let (mem, root, [l1, l2], _) = tables(Endianness::Little, SlotAccess::ReadWrite, LEAF_RW);
    let w = walker(haft_vtcr(), root, Endianness::Little, &haft_features());
    let (t, reads) = mem.with(|m| {
        let r = Racing {
            inner: m,
            races: Cell::new(1),
            reads: Cell::new(0),
        };
        (w.walk(&r, IPA, AccessKind::Read), r.reads.get())
    });
    let t = t.unwrap();
    // One read lost to the race, then the whole walk: 1 + 3.
    assert_eq!(reads, 4);
    assert_eq!(mem.read(l1) & mem.read(l2) & AF, AF);
    assert_eq!(
        mem.read(l1) & (1 << 55),
        1 << 55,
        "the other agent's change stays"
    );
    // The restarted walk read the other agent's value and wrote AF in it.
    assert_eq!(t.trail.as_slice()[0].value, mem.read(l1));
    // Two table descriptors written, none twice (the lost attempt wrote none).
    assert_eq!(t.update.table_access_flags, 2);
    // Losing every time: Contended, nothing injected.
    let (mem, root, [l1, _], _) = tables(Endianness::Little, SlotAccess::ReadWrite, LEAF_RW);
    let w = walker(haft_vtcr(), root, Endianness::Little, &haft_features());
    let e = mem
        .with(|m| {
            let r = Racing {
                inner: m,
                races: Cell::new(MAX_UPDATE_ATTEMPTS),
                reads: Cell::new(0),
            };
            w.walk(&r, IPA, AccessKind::Read)
        })
        .unwrap_err();
    assert_eq!(
        e,
        WalkError::Contended {
            ipa: IPA,
            descriptor_address: l1
        }
    );
}

#[test]
fn batches_with_table_updates_equal_single_walks() {
    // Requests sharing the level-1 and level-2 tables, all with AF clear:
    // the first walk sets them, the later ones must see that.
    let endian = Endianness::Little;
    let make = || {
        let mem = Mem::new(endian).with_slot(ARENA, 1 << 20, SlotAccess::ReadWrite);
        let root = {
            let mut b = Builder::new(&mem, Granule::K4, 1, 40, AddrFormat::Plain, ARENA, 1 << 20);
            for page in 0..8u64 {
                b.map(
                    3,
                    IPA + (page << 12),
                    0x8000_0000 + (page << 12),
                    LEAF_RW & !AF,
                );
            }
            b.root
        };
        (mem, root)
    };
    let (single_mem, root) = make();
    let (batch_mem, _) = make();
    let w = walker(haft_vtcr() | VTCR_HD, root, endian, &haft_features());
    let requests: Vec<WalkRequest> = (0..8u64)
        .flat_map(|page| {
            [AccessKind::Read, AccessKind::Write].map(|access| WalkRequest {
                ipa: IPA + (page << 12),
                access,
            })
        })
        .collect();
    let singles: Vec<_> = single_mem.with(|m| {
        requests
            .iter()
            .map(|r| w.walk(m, r.ipa, r.access))
            .collect()
    });
    let mut batched = vec![
        Err(WalkError::Contended {
            ipa: 0,
            descriptor_address: 0
        });
        requests.len()
    ];
    batch_mem
        .with(|m| w.walk_batch(m, &requests, &mut batched))
        .unwrap();
    assert_eq!(batched, singles);
    assert_eq!(batch_mem.snapshot(), single_mem.snapshot());
    assert!(singles.iter().all(|r| r.is_ok()));
}

/// A level-2 table descriptor T (AF clear) that another walk of the batch
/// reads as its level-3 page, through a level-2 entry pointing back at the
/// level-2 table. Walk A (through T as a table) is made singly and sets AF
/// in T; walk B's batched read of T is then stale and must be redone, so
/// its permission fault carries T with AF set, as a single walk after A's.
#[test]
fn a_table_update_makes_an_aliased_leaf_read_in_the_batch_stale() {
    let make = || {
        let mem = Mem::new(Endianness::Little).with_slot(0, 0x4000, SlotAccess::ReadWrite);
        mem.write(0x1000, 0x2000 | 3 | AF); // level 1 [0] -> 0x2000
        mem.write(0x2000, 0x2000 | 3); // level 2 [0] = T: table to itself, AF clear
        mem.write(0x2008, 0x2000 | 3 | AF); // level 2 [1]: table to 0x2000, AF set
        mem
    };
    let w = walker(
        vtcr(Granule::K4, 25, 1, 2) | VTCR_HA | VTCR_HAFT,
        0x1000,
        Endianness::Little,
        &haft_features(),
    );
    let requests = [
        // A: through T as a table (sets AF in T).
        WalkRequest {
            ipa: 0x1000,
            access: AccessKind::Read,
        },
        // B: level 2 [1], then T read as its level-3 page.
        WalkRequest {
            ipa: 0x20_0000,
            access: AccessKind::Read,
        },
    ];
    let single_mem = make();
    let singles: Vec<_> = single_mem.with(|m| {
        requests
            .iter()
            .map(|r| w.walk(m, r.ipa, r.access))
            .collect()
    });
    let batch_mem = make();
    let mut batched = vec![
        Err(WalkError::Contended {
            ipa: 0,
            descriptor_address: 0,
        });
        2
    ];
    batch_mem
        .with(|m| w.walk_batch(m, &requests, &mut batched))
        .unwrap();
    assert_eq!(batch_mem.snapshot(), single_mem.snapshot());
    assert_eq!(batched, singles);
    // B's leaf is T, with AF set by A.
    let Err(WalkError::Fault(fault)) = &batched[1] else {
        panic!("B must fault: {:?}", batched[1]);
    };
    let leaf = fault.trail.as_slice().last().unwrap();
    assert_eq!((leaf.address, leaf.value & AF), (0x2000, AF));
}

/// As above, but walk A faults below T (an invalid level-3 entry) after
/// setting AF in T: a walk made singly that faults still wrote T, so B's
/// batched read of T is stale all the same and B is redone.
#[test]
fn a_table_update_by_a_walk_that_then_faults_makes_an_aliased_read_stale() {
    let make = || {
        let mem = Mem::new(Endianness::Little).with_slot(0, 0x4000, SlotAccess::ReadWrite);
        mem.write(0x1000, 0x2000 | 3 | AF); // level 1 [0] -> 0x2000
        mem.write(0x2000, 0x2000 | 3); // level 2 [0] = T: table to itself, AF clear
        mem.write(0x2008, 0x2000 | 3 | AF); // level 2 [1]: table to 0x2000, AF set
        mem // level 2 [2] (0x2010) stays 0: invalid
    };
    let w = walker(
        vtcr(Granule::K4, 25, 1, 2) | VTCR_HA | VTCR_HAFT,
        0x1000,
        Endianness::Little,
        &haft_features(),
    );
    let requests = [
        // A: through T as a table (sets AF in T), then level 3 [2]: invalid.
        WalkRequest {
            ipa: 0x2000,
            access: AccessKind::Read,
        },
        // B: level 2 [1], then T read as its level-3 page.
        WalkRequest {
            ipa: 0x20_0000,
            access: AccessKind::Read,
        },
    ];
    let single_mem = make();
    let singles: Vec<_> = single_mem.with(|m| {
        requests
            .iter()
            .map(|r| w.walk(m, r.ipa, r.access))
            .collect()
    });
    let batch_mem = make();
    let mut batched = vec![
        Err(WalkError::Contended {
            ipa: 0,
            descriptor_address: 0,
        });
        2
    ];
    batch_mem
        .with(|m| w.walk_batch(m, &requests, &mut batched))
        .unwrap();
    assert_eq!(batch_mem.snapshot(), single_mem.snapshot());
    assert_eq!(batched, singles);
    let Err(WalkError::Fault(a)) = &batched[0] else {
        panic!("A must fault: {:?}", batched[0]);
    };
    assert_eq!((a.kind(), a.level), (FaultKind::Translation, 3));
    assert_eq!(a.trail.as_slice()[1].value & AF, AF, "A wrote AF in T");
    let Err(WalkError::Fault(b)) = &batched[1] else {
        panic!("B must fault: {:?}", batched[1]);
    };
    let leaf = b.trail.as_slice().last().unwrap();
    assert_eq!((leaf.address, leaf.value & AF), (0x2000, AF));
}
