//! The host (L0) is in the middle of changing its own mapping of one of
//! L1's table pages (a break-before-make: its old entry invalid, TLBI, the
//! new entry not yet written; [`MemoryError::HostChanging`]) when the walk
//! reads or updates a descriptor there. L1 did nothing wrong: a hardware
//! walk would take L0's own stage-2 translation fault, which L0 resolves
//! by waiting for its change, so every walk form ends in
//! [`WalkError::HostChanging`] with the descriptor's address, level and
//! whether it was the read or the update: never a fault for L1 (no
//! external abort, no FSC), nothing written, and once the change is made
//! the same walk translates.
#![cfg(not(loom))]
// host atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use crate::common;

use common::*;
use walker::{
    AccessKind, DescriptorAccess, Endianness, Granule, HostChange, MemoryError, SlotAccess,
    SlotHint, WalkError, WalkRequest,
};

const ARENA: u64 = 0x4000_0000;
const IPA: u64 = 0x12_3456_7000;
/// Another page, under the same level-2 table.
const IPA_NEAR: u64 = 0x12_3456_8000;
/// A page under another level-1 entry (its own level-2 and level-3 tables).
const IPA_FAR: u64 = 0x02_0000_0000;
const AF: u64 = 1 << 10;
const NO_AF: u64 = (3 << 8) | (3 << 6) | (0xf << 2);

struct Tables {
    mem: Mem,
    root: u64,
    /// Descriptor addresses of IPA's walk, levels 1, 2, 3.
    path: [u64; 3],
    far_leaf: u64,
}

/// A 4K table from level 1 (40-bit input): IPA and IPA_NEAR share their
/// level-2 and level-3 tables, IPA_FAR has its own.
fn tables(endian: Endianness, leaf_attrs: u64) -> Tables {
    let mem = Mem::new(endian).with_slot(ARENA, 1 << 20, SlotAccess::ReadWrite);
    let (root, path, far_leaf) = {
        let mut b = Builder::new(&mem, Granule::K4, 1, 40, AddrFormat::Plain, ARENA, 1 << 20);
        let leaf = b.map(3, IPA, 0x8000_0000, leaf_attrs);
        b.map(3, IPA_NEAR, 0x8000_1000, leaf_attrs);
        let far_leaf = b.map(3, IPA_FAR, 0x8000_2000, leaf_attrs);
        let path = [b.slot(1, IPA), b.slot(2, IPA), leaf];
        (b.root, path, far_leaf)
    };
    Tables {
        mem,
        root,
        path,
        far_leaf,
    }
}

fn change(
    ipa: u64,
    access: AccessKind,
    address: u64,
    level: i8,
    during: DescriptorAccess,
) -> WalkError {
    WalkError::HostChanging(HostChange {
        ipa,
        access,
        descriptor_address: address,
        level,
        during,
    })
}

/// A table page mid the host's change, at each level: every walk through
/// it (the general and the specialised walk, single, hinted, lean and
/// batched) ends in the host's change at that descriptor's read, never a
/// fault; the host's denial elsewhere does not change that; once the
/// change is made the same walk translates.
#[test]
fn a_table_page_mid_the_hosts_change_is_its_change_not_an_abort() {
    for (endian, vtcr_extra) in [
        // Little-endian, no HA: the specialised walk and batch.
        (Endianness::Little, 0),
        // Big-endian with HA and HD: the general walk and batch.
        (Endianness::Big, VTCR_HA | VTCR_HD),
    ] {
        let t = tables(endian, LEAF_RW);
        let w = walker(
            vtcr(Granule::K4, 24, 1, 5) | vtcr_extra,
            t.root,
            endian,
            &features(mmfr0(PA_48), 2, 0),
        );
        assert_eq!(w.takes_specialised_walk(), vtcr_extra == 0);
        for (level, address) in [(1i8, t.path[0]), (2, t.path[1]), (3, t.path[2])] {
            t.mem.with(|m| {
                let mut host = HostDenying::new(m);
                host.changing.push(page_of(address));
                // The host's change comes before its permissions: a page
                // with no mapping at all is being changed, not denied.
                host.no_read.push(page_of(address));
                for access in [AccessKind::Read, AccessKind::Write] {
                    let expected = Err(change(IPA, access, address, level, DescriptorAccess::Read));
                    every_walk_gives(&w, &host, IPA, access, &expected);
                    let e = w.walk(&host, IPA, access).unwrap_err();
                    assert_eq!(e.fault(), None, "no fault for L1: {e:?}");
                }
                // The change made: the same walk translates.
                let host = HostDenying::new(m);
                let done = w.walk(&host, IPA, AccessKind::Read).unwrap();
                assert_eq!(done.output_address, 0x8000_0000);
            });
        }
    }
}

/// VTCR_EL2.HA, a leaf with AF = 0 in a page whose change began after the
/// walk read it: the update meets the change (HostChanging, during the
/// update), nothing is written; once the change is made, the same walk
/// sets AF.
#[test]
fn an_af_update_mid_the_hosts_change_is_its_change_and_succeeds_after_it() {
    for endian in [Endianness::Little, Endianness::Big] {
        let t = tables(endian, NO_AF);
        let leaf = t.path[2];
        let w = walker(
            vtcr(Granule::K4, 24, 1, 5) | VTCR_HA | VTCR_HD,
            t.root,
            endian,
            &features(mmfr0(PA_48), 2, 0),
        );
        let before = t.mem.read(leaf);
        t.mem.with(|m| {
            let mut host = HostDenying::new(m);
            host.changing_writes.push(page_of(leaf));
            let expected = Err(change(
                IPA,
                AccessKind::Read,
                leaf,
                3,
                DescriptorAccess::Update,
            ));
            every_walk_gives(&w, &host, IPA, AccessKind::Read, &expected);
        });
        assert_eq!(t.mem.read(leaf), before, "nothing written");
        let ok = t
            .mem
            .with(|m| w.walk(&HostDenying::new(m), IPA, AccessKind::Read));
        assert!(ok.unwrap().update.access_flag);
        assert_eq!(t.mem.read(leaf), before | AF);
    }
}

/// FEAT_HAFT: a table descriptor with AF = 0 in a page whose change began
/// after the read: the change at that table descriptor's update.
#[test]
fn a_table_af_update_mid_the_hosts_change_is_its_change() {
    let t = tables(Endianness::Little, LEAF_RW);
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5) | VTCR_HA | VTCR_HAFT,
        t.root,
        Endianness::Little,
        &features(mmfr0(PA_48), 3, 0),
    );
    let before = t.mem.read(t.path[1]);
    t.mem.with(|m| {
        let mut host = HostDenying::new(m);
        host.changing_writes.push(page_of(t.path[1]));
        let expected = Err(change(
            IPA,
            AccessKind::Write,
            t.path[1],
            2,
            DescriptorAccess::Update,
        ));
        every_walk_gives(&w, &host, IPA, AccessKind::Write, &expected);
    });
    // The level-1 descriptor (another page) got its AF; the changing one
    // not.
    assert_eq!(t.mem.read(t.path[1]), before);
    assert_ne!(t.mem.read(t.path[0]) & AF, 0);
}

/// A batch mixing walks that meet the host's change (a read at level 3, an
/// update at a leaf), its denial (a read at level 2) and none gives the
/// single walks' results in order, and leaves memory as they do.
#[test]
fn batches_with_host_changes_equal_single_walks() {
    for (endian, vtcr_extra, leaf_attrs) in [
        (Endianness::Little, 0, LEAF_RW),
        (Endianness::Little, VTCR_HA | VTCR_HD, NO_AF),
        (Endianness::Big, VTCR_HA | VTCR_HD | VTCR_HAFT, NO_AF),
    ] {
        let single = tables(endian, leaf_attrs);
        let batch_mem = single.mem.duplicate();
        let hinted_mem = single.mem.duplicate();
        let w = walker(
            vtcr(Granule::K4, 24, 1, 5) | vtcr_extra,
            single.root,
            endian,
            &features(mmfr0(PA_48), 3, 0),
        );
        let requests: Vec<WalkRequest> = [IPA, IPA_FAR, IPA_NEAR, IPA, IPA_FAR, 1 << 41]
            .iter()
            .zip([
                AccessKind::Read,
                AccessKind::Write,
                AccessKind::Write,
                AccessKind::Read,
                AccessKind::Read,
                AccessKind::Read,
            ])
            .map(|(&ipa, access)| WalkRequest { ipa, access })
            .collect();
        // IPA's level-3 table page mid-change; IPA_FAR's leaf page's
        // change begins after its read.
        let (changing, changing_write) = (page_of(single.path[2]), page_of(single.far_leaf));
        fn host_over<M>(m: &M, changing: u64, changing_write: u64) -> HostDenying<'_, M> {
            let mut host = HostDenying::new(m);
            host.changing.push(changing);
            host.changing_writes.push(changing_write);
            host
        }
        let singles: Vec<_> = single.mem.with(|m| {
            let host = host_over(m, changing, changing_write);
            requests
                .iter()
                .map(|r| w.walk(&host, r.ipa, r.access))
                .collect()
        });
        assert!(singles.iter().any(|r| matches!(
            r,
            Err(WalkError::HostChanging(HostChange {
                during: DescriptorAccess::Read,
                ..
            }))
        )));
        if vtcr_extra != 0 {
            assert!(singles.iter().any(|r| matches!(
                r,
                Err(WalkError::HostChanging(HostChange {
                    during: DescriptorAccess::Update,
                    ..
                }))
            )));
        }
        if vtcr_extra == 0 {
            // IPA_FAR needs no update: it translates.
            assert!(singles.iter().any(|r| r.is_ok()));
        }
        let mut batched = vec![
            Err(WalkError::Contended {
                ipa: 0,
                descriptor_address: 0
            });
            requests.len()
        ];
        batch_mem.with(|m| {
            w.walk_batch(
                &host_over(m, changing, changing_write),
                &requests,
                &mut batched,
            )
            .unwrap();
        });
        assert_eq!(batched, singles);
        assert_eq!(batch_mem.snapshot(), single.mem.snapshot());
        let mut hint = SlotHint::default();
        let hinted: Vec<_> = hinted_mem.with(|m| {
            let host = host_over(m, changing, changing_write);
            requests
                .iter()
                .map(|r| w.walk_hinted(&host, r.ipa, r.access, &mut hint))
                .collect()
        });
        assert_eq!(hinted, singles);
        assert_eq!(hinted_mem.snapshot(), single.mem.snapshot());
    }
}

/// The memslots themselves never answer "changing": a table outside them
/// stays the external abort on the walk.
#[test]
fn memslots_never_answer_changing() {
    let t = tables(Endianness::Little, LEAF_RW);
    t.mem.with(|m| {
        for address in [t.path[0], t.path[2], ARENA + (1 << 20), 0] {
            let read = walker::GuestMemory::read_descriptor(m, address);
            assert_ne!(read, Err(MemoryError::HostChanging), "{address:#x}");
        }
    });
}
