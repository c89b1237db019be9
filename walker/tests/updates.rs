//! Issue item 7: hardware AF and dirty-state updates by compare-and-swap,
//! lost races, and read-only memslots.
#![cfg(not(loom))]
// host atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use crate::common;

use std::cell::Cell;

use common::*;
use walker::{
    AccessKind, Endianness, FaultCause, FaultKind, Granule, GuestMemory, MemoryError, Memslots,
    S2Ap, SlotAccess, WalkError, MAX_UPDATE_ATTEMPTS,
};

const ARENA: u64 = 0x4000_0000;
const IPA: u64 = 0x12_3456_7000;

fn page_mem(attrs: u64, endian: Endianness) -> (Mem, u64, u64) {
    let mem = Mem::new(endian).with_slot(ARENA, 1 << 20, SlotAccess::ReadWrite);
    let (root, leaf) = {
        let mut b = Builder::new(&mem, Granule::K4, 1, 40, AddrFormat::Plain, ARENA, 1 << 20);
        let leaf = b.map(3, IPA, 0x8000_0000, attrs);
        (b.root, leaf)
    };
    (mem, root, leaf)
}

fn ha_hd_vtcr() -> u64 {
    vtcr(Granule::K4, 24, 1, 5) | VTCR_HA | VTCR_HD
}

const NO_AF: u64 = (3 << 8) | (0xf << 2);

#[test]
fn hardware_access_flag_is_set_by_compare_and_swap() {
    for endian in [Endianness::Little, Endianness::Big] {
        let (mem, root, leaf) = page_mem(NO_AF | (3 << 6), endian);
        let w = walker(ha_hd_vtcr(), root, endian, &features(mmfr0(PA_48), 1, 0));
        let before = mem.read(leaf);
        let t = mem.with(|m| w.walk(m, IPA, AccessKind::Read)).unwrap();
        assert!(t.update.access_flag && !t.update.dirty);
        assert_eq!(mem.read(leaf), before | (1 << 10));
        assert_eq!(t.descriptor, before | (1 << 10));
        // The trail holds the value as read, before the update.
        assert_eq!(t.trail.as_slice().last().unwrap().value, before);
        // A second walk finds AF set and writes nothing.
        let t = mem
            .with(|m| {
                let rec = Recording::new(m);
                let t = w.walk(&rec, IPA, AccessKind::Read);
                assert!(rec.swaps.borrow().is_empty());
                t
            })
            .unwrap();
        assert!(!t.update.access_flag);
    }
}

#[test]
fn access_flag_fault_without_ha_or_without_hafdbs_exposed() {
    let (mem, root, leaf) = page_mem(NO_AF | (3 << 6), Endianness::Little);
    // VTCR.HA set but HAFDBS = 0 exposed: HA is ignored.
    let w = walker(
        ha_hd_vtcr(),
        root,
        Endianness::Little,
        &features(mmfr0(PA_48), 0, 0),
    );
    let e = mem.with(|m| w.walk(m, IPA, AccessKind::Read)).unwrap_err();
    assert_eq!(e.fault().unwrap().cause, FaultCause::AccessFlagClear);
    assert_eq!(mem.read(leaf) & (1 << 10), 0, "memory untouched");
}

#[test]
fn permission_fault_does_not_set_the_access_flag() {
    // S2AP read-only, AF clear, write access: permission fault, AF stays 0
    // (this walker's CONSTRAINED UNPREDICTABLE choice).
    let (mem, root, leaf) = page_mem(NO_AF | (1 << 6), Endianness::Little);
    let w = walker(
        ha_hd_vtcr(),
        root,
        Endianness::Little,
        &features(mmfr0(PA_48), 2, 0),
    );
    let e = mem.with(|m| w.walk(m, IPA, AccessKind::Write)).unwrap_err();
    assert_eq!(e.fault().unwrap().kind(), FaultKind::Permission);
    assert_eq!(mem.read(leaf) & (1 << 10), 0);
}

/// VTCR_EL2.HA (bit 21) and HD (bit 22) are read each from its own bit,
/// and HD takes effect only with HA (AArch64.GetS2TTWParams): HA alone sets
/// AF but leaves a clean DBM page read-only; HD alone does neither. (The
/// other tests set both bits together, so they pass with HA read from
/// bit 22.)
#[test]
fn ha_and_hd_are_separate_bits_and_hd_needs_ha() {
    let dbm = 1u64 << 51;
    let clean_dbm_page = NO_AF | (1 << 6) | dbm;
    let base = vtcr(Granule::K4, 24, 1, 5);
    let hafdbs_2 = features(mmfr0(PA_48), 2, 0);
    // HA alone: a read sets AF; a write to the clean DBM page is a
    // permission fault and leaves S2AP alone.
    let (mem, root, leaf) = page_mem(clean_dbm_page, Endianness::Little);
    let w = walker(base | VTCR_HA, root, Endianness::Little, &hafdbs_2);
    let before = mem.read(leaf);
    let t = mem.with(|m| w.walk(m, IPA, AccessKind::Read)).unwrap();
    assert!(t.update.access_flag && !t.update.dirty, "{t:?}");
    let e = mem.with(|m| w.walk(m, IPA, AccessKind::Write)).unwrap_err();
    let fault = e.fault().unwrap();
    assert_eq!((fault.kind(), fault.level), (FaultKind::Permission, 3));
    assert_eq!(mem.read(leaf), before | (1 << 10));
    // HD alone: HA is off, so AF = 0 faults, and a write to a DBM page with
    // AF set is a permission fault; nothing is written. (Big-endian tables
    // take the general walk, where HD is decoded; little-endian ones with
    // HA off take the specialised walk, which has no updates at all.)
    for endian in [Endianness::Little, Endianness::Big] {
        let (mem, root, leaf) = page_mem(clean_dbm_page, endian);
        let w = walker(base | VTCR_HD, root, endian, &hafdbs_2);
        let before = mem.read(leaf);
        let e = mem.with(|m| w.walk(m, IPA, AccessKind::Read)).unwrap_err();
        assert_eq!(e.fault().unwrap().cause, FaultCause::AccessFlagClear);
        assert_eq!(mem.read(leaf), before);
        let (mem, root, leaf) = page_mem(clean_dbm_page | (1 << 10), endian);
        let w = walker(base | VTCR_HD, root, endian, &hafdbs_2);
        let before = mem.read(leaf);
        let e = mem.with(|m| w.walk(m, IPA, AccessKind::Write)).unwrap_err();
        assert_eq!(
            e.fault().unwrap().cause,
            FaultCause::WriteDenied,
            "{endian:?}"
        );
        assert_eq!(mem.read(leaf), before);
    }
}

#[test]
fn hardware_dirty_state_makes_a_dbm_descriptor_writable() {
    let dbm = 1u64 << 51;
    let (mem, root, leaf) = page_mem(NO_AF | (1 << 6) | dbm, Endianness::Little);
    let w = walker(
        ha_hd_vtcr(),
        root,
        Endianness::Little,
        &features(mmfr0(PA_48), 2, 0),
    );
    // A read sets AF only; the page stays read-only (clean).
    let t = mem.with(|m| w.walk(m, IPA, AccessKind::Read)).unwrap();
    assert_eq!(
        (t.s2ap, t.update.access_flag, t.update.dirty),
        (S2Ap::ReadOnly, true, false)
    );
    assert!(t.dirty_bit_modifier);
    // Cache maintenance never makes a dirty-state update (the pseudocode
    // excludes AccessType_DC/IC), even DC IVAC, which DBM lets through
    // (S2ApplyOutputPerms makes the entry effectively writable).
    let invalidate = AccessKind::CacheMaintenance(walker::CacheMaintenance::InvalidateEl1);
    let t = mem.with(|m| w.walk(m, IPA, invalidate)).unwrap();
    assert!(!t.update.dirty, "{t:?}");
    assert_eq!(mem.read(leaf) & (3 << 6), 1 << 6);
    // A write sets S2AP[1] by compare-and-swap.
    let t = mem.with(|m| w.walk(m, IPA, AccessKind::Write)).unwrap();
    assert_eq!((t.s2ap, t.update.dirty), (S2Ap::ReadWrite, true));
    assert_eq!(mem.read(leaf) & (3 << 6), 3 << 6);
    // With HAFDBS = 1 (no dirty state), the same write is a permission fault.
    let (mem, root, _) = page_mem((1 << 10) | (1 << 6) | (0xf << 2) | dbm, Endianness::Little);
    let w = walker(
        ha_hd_vtcr(),
        root,
        Endianness::Little,
        &features(mmfr0(PA_48), 1, 0),
    );
    let e = mem.with(|m| w.walk(m, IPA, AccessKind::Write)).unwrap_err();
    assert_eq!(e.fault().unwrap().cause, FaultCause::WriteDenied);
    // Without DBM, HD does not make a read-only page writable.
    let (mem, root, _) = page_mem((1 << 10) | (1 << 6) | (0xf << 2), Endianness::Little);
    let w = walker(
        ha_hd_vtcr(),
        root,
        Endianness::Little,
        &features(mmfr0(PA_48), 2, 0),
    );
    let e = mem.with(|m| w.walk(m, IPA, AccessKind::Write)).unwrap_err();
    assert_eq!(e.fault().unwrap().cause, FaultCause::WriteDenied);
}

#[test]
fn an_update_refused_by_a_read_only_memslot_is_an_external_abort_at_the_leaf_level() {
    let (mem, root, leaf) = page_mem(NO_AF | (3 << 6), Endianness::Little);
    let mut ro = Mem::new(Endianness::Little);
    ro.slots.push(Slot {
        base: mem.slots[0].base,
        words: mem.duplicate().slots.remove(0).words,
        access: SlotAccess::ReadOnly,
    });
    let w = walker(
        ha_hd_vtcr(),
        root,
        Endianness::Little,
        &features(mmfr0(PA_48), 2, 0),
    );
    let e = ro.with(|m| w.walk(m, IPA, AccessKind::Read)).unwrap_err();
    let f = e.fault().unwrap();
    assert_eq!(f.cause, FaultCause::UpdateRefused { address: leaf });
    assert_eq!(
        (f.kind(), f.level, f.fsc()),
        (FaultKind::ExternalAbortOnWalk, 3, 0x17)
    );
    assert_eq!(ro.read(leaf) & (1 << 10), 0);
    // Reads that need no update succeed from a read-only slot.
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5),
        root,
        Endianness::Little,
        &features_48(),
    );
    ro.write(leaf, ro.read(leaf) | (1 << 10));
    assert!(ro.with(|m| w.walk(m, IPA, AccessKind::Read)).is_ok());
}

/// Another agent changes the descriptor between the walk's read and its
/// compare-and-swap `races` times.
struct Racing<'a> {
    inner: &'a Memslots<'a>,
    races: Cell<usize>,
    change: fn(u64) -> u64,
}

impl GuestMemory for Racing<'_> {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
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
            let now = self.inner.read_descriptor(address)?;
            self.inner.store_raw(address, (self.change)(now))?;
        }
        self.inner
            .compare_exchange_descriptor(address, current, new)
    }
}

#[test]
fn a_lost_race_rereads_and_retries() {
    // The other agent sets AF itself: the retry finds nothing to update.
    let (mem, root, leaf) = page_mem(NO_AF | (3 << 6), Endianness::Little);
    let w = walker(
        ha_hd_vtcr(),
        root,
        Endianness::Little,
        &features(mmfr0(PA_48), 2, 0),
    );
    let t = mem
        .with(|m| {
            let r = Racing {
                inner: m,
                races: Cell::new(1),
                change: |raw| raw | (1u64 << 10).to_le(),
            };
            w.walk(&r, IPA, AccessKind::Read)
        })
        .unwrap();
    assert!(!t.update.access_flag);
    assert_eq!(mem.read(leaf) & (1 << 10), 1 << 10);

    // The other agent makes the page read-only (no DBM) before our write's
    // dirty update: the retry sees it and faults.
    let (mem, root, _) = page_mem(NO_AF | (1 << 6) | (1 << 51), Endianness::Little);
    let w = walker(
        ha_hd_vtcr(),
        root,
        Endianness::Little,
        &features(mmfr0(PA_48), 2, 0),
    );
    let e = mem
        .with(|m| {
            let r = Racing {
                inner: m,
                races: Cell::new(1),
                change: |raw| raw & !(1u64 << 51).to_le(),
            };
            w.walk(&r, IPA, AccessKind::Write)
        })
        .unwrap_err();
    assert_eq!(e.fault().unwrap().cause, FaultCause::WriteDenied);

    // Several lost races, fewer than the bound: still succeeds.
    let (mem, root, leaf) = page_mem(NO_AF | (3 << 6), Endianness::Little);
    let w = walker(
        ha_hd_vtcr(),
        root,
        Endianness::Little,
        &features(mmfr0(PA_48), 2, 0),
    );
    let t = mem
        .with(|m| {
            let r = Racing {
                inner: m,
                races: Cell::new(MAX_UPDATE_ATTEMPTS - 1),
                // Flip a software bit (55): the descriptor changes each time.
                change: |raw| raw ^ (1u64 << 55).to_le(),
            };
            w.walk(&r, IPA, AccessKind::Read)
        })
        .unwrap();
    assert!(t.update.access_flag);
    assert_eq!(mem.read(leaf) & (1 << 10), 1 << 10);
}

#[test]
fn endless_lost_races_end_in_contended_after_a_bounded_number_of_attempts() {
    let (mem, root, leaf) = page_mem(NO_AF | (3 << 6), Endianness::Little);
    let w = walker(
        ha_hd_vtcr(),
        root,
        Endianness::Little,
        &features(mmfr0(PA_48), 2, 0),
    );
    let (e, reads) = mem.with(|m| {
        let r = Racing {
            inner: m,
            races: Cell::new(usize::MAX),
            change: |raw| raw ^ (1u64 << 55).to_le(),
        };
        let rec = Recording::new(&r);
        let e = w.walk(&rec, IPA, AccessKind::Read).unwrap_err();
        let reads = rec.reads.borrow().len();
        (e, reads)
    });
    assert_eq!(
        e,
        WalkError::Contended {
            ipa: IPA,
            descriptor_address: leaf
        }
    );
    assert!(e.fault().is_none());
    assert_eq!(reads, MAX_UPDATE_ATTEMPTS * 3);
}

#[test]
fn concurrent_walkers_and_writers_share_memslots() {
    // Two threads walk the same AF-clear and DBM pages (HA and HD on) while
    // a third flips a software bit in the leaves: every walk ends in a
    // translation (or Contended), no update is lost, and AF ends up set.
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, 1 << 20, SlotAccess::ReadWrite);
    let (root, leaves) = {
        let mut b = Builder::new(&mem, Granule::K4, 1, 40, AddrFormat::Plain, ARENA, 1 << 20);
        let leaves: Vec<u64> = (0..8u64)
            .map(|i| {
                b.map(
                    3,
                    IPA + i * 0x1000,
                    0x8000_0000 + i * 0x1000,
                    NO_AF | (1 << 6) | (1 << 51),
                )
            })
            .collect();
        (b.root, leaves)
    };
    let w = walker(
        ha_hd_vtcr(),
        root,
        Endianness::Little,
        &features(mmfr0(PA_48), 2, 0),
    );
    mem.with(|m| {
        std::thread::scope(|scope| {
            for t in 0..2u64 {
                let w = &w;
                scope.spawn(move || {
                    for round in 0..2000u64 {
                        let page = (round + t) % 8;
                        let access = if round % 3 == 0 {
                            AccessKind::Write
                        } else {
                            AccessKind::Read
                        };
                        match w.walk(m, IPA + page * 0x1000, access) {
                            Ok(t) => assert_eq!(t.output_address, 0x8000_0000 + page * 0x1000),
                            Err(WalkError::Contended { .. }) => {}
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                });
            }
            scope.spawn(|| {
                for round in 0..2000usize {
                    let leaf = leaves[round % 8];
                    let raw = m.read_descriptor(leaf).unwrap();
                    let _ = m.compare_exchange_descriptor(leaf, raw, raw ^ (1u64 << 56).to_le());
                }
            });
        });
    });
    for leaf in leaves {
        let d = mem.read(leaf);
        assert_eq!(d & (1 << 10), 1 << 10, "AF set");
        assert_eq!(d & (3 << 6), 3 << 6, "written pages are dirty");
    }
}
