//! The host (L0) maps L1's table pages but its own stage 2 denies the
//! walk's access to one ([`MemoryError::HostDenied`]): it revoked read
//! access to the page, or write-protected it (for its dirty log) while
//! L1's VTCR_EL2.HA asks for hardware AF updates there. L1 did nothing
//! wrong: by the Arm ARM's two-stage model it is L0's own stage-2
//! permission fault, so the walk ends in [`WalkError::HostDenied`] with
//! the descriptor's address, level and whether it was the read or the
//! update, never a fault for L1 (no external abort, no FSC), and nothing
//! is written. A read-only memslot (read-only *to L1*) keeps the
//! architectural external abort.
#![cfg(not(loom))]
// host atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use crate::common;

use common::*;
use walker::{
    AccessKind, DescriptorAccess, Endianness, FaultCause, Granule, HostDenial, SlotAccess,
    WalkError, WalkRequest,
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
fn tables(endian: Endianness, access: SlotAccess, leaf_attrs: u64, table_af: bool) -> Tables {
    let mem = Mem::new(endian).with_slot(ARENA, 1 << 20, access);
    let (root, path, far_leaf) = {
        let mut b = Builder::new(&mem, Granule::K4, 1, 40, AddrFormat::Plain, ARENA, 1 << 20);
        let leaf = b.map(3, IPA, 0x8000_0000, leaf_attrs);
        b.map(3, IPA_NEAR, 0x8000_1000, leaf_attrs);
        let far_leaf = b.map(3, IPA_FAR, 0x8000_2000, leaf_attrs);
        let path = [b.slot(1, IPA), b.slot(2, IPA), leaf];
        if table_af {
            for table in [path[0], path[1], b.slot(1, IPA_FAR), b.slot(2, IPA_FAR)] {
                mem.write(table, mem.read(table) | AF);
            }
        }
        (b.root, path, far_leaf)
    };
    Tables {
        mem,
        root,
        path,
        far_leaf,
    }
}

fn denial(
    ipa: u64,
    access: AccessKind,
    address: u64,
    level: i8,
    denied: DescriptorAccess,
) -> WalkError {
    WalkError::HostDenied(HostDenial {
        ipa,
        access,
        descriptor_address: address,
        level,
        denied,
    })
}

/// A table page L0 maps without read permission: every walk through it
/// (the general and the specialised walk, single and batched) ends in
/// the host's denial of the read, at the level of the descriptor there.
#[test]
fn a_table_page_the_host_denies_reading_is_the_hosts_denial_not_an_abort() {
    for (endian, vtcr_extra) in [
        // Little-endian, no HA: the specialised walk and batch.
        (Endianness::Little, 0),
        // Big-endian with HA and HD: the general walk and batch.
        (Endianness::Big, VTCR_HA | VTCR_HD),
    ] {
        let t = tables(endian, SlotAccess::ReadWrite, LEAF_RW, false);
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
                host.no_read.push(page_of(address));
                let expected = Err(denial(
                    IPA,
                    AccessKind::Read,
                    address,
                    level,
                    DescriptorAccess::Read,
                ));
                every_walk_gives(&w, &host, IPA, AccessKind::Read, &expected);
                let e = w.walk(&host, IPA, AccessKind::Write).unwrap_err();
                assert_eq!(e.fault(), None, "no fault for L1: {e:?}");
                // The same walk where L0 allows the read translates.
                assert_eq!(
                    w.walk(m, IPA, AccessKind::Read).unwrap().output_address,
                    0x8000_0000
                );
            });
        }
        // Outside every memslot stays the external abort on the walk,
        // whatever the host denies elsewhere.
        let outside = t.mem.with(|m| {
            let mut host = HostDenying::new(m);
            host.no_read.push(page_of(t.path[1]));
            let w = walker(
                vtcr(Granule::K4, 24, 1, 5) | vtcr_extra,
                0x10_0000,
                endian,
                &features(mmfr0(PA_48), 2, 0),
            );
            w.walk(&host, IPA, AccessKind::Read).unwrap_err()
        });
        assert!(
            matches!(
                outside.fault().map(|f| f.cause),
                Some(FaultCause::DescriptorOutsideMemslots { .. })
            ),
            "{outside:?}"
        );
    }
}

/// VTCR_EL2.HA, a leaf with AF = 0 in a table page L0 maps read-only (its
/// dirty log): the walk's AF update is the host's denial of the update,
/// nothing is written; once L0 gives write permission back, the same walk
/// sets AF. A read-only memslot (read-only to L1) still gives the
/// architectural external abort.
#[test]
fn an_af_update_the_host_denies_is_its_denial_and_succeeds_once_allowed() {
    for endian in [Endianness::Little, Endianness::Big] {
        let t = tables(endian, SlotAccess::ReadWrite, NO_AF, false);
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
            host.no_write.push(page_of(leaf));
            let expected = Err(denial(
                IPA,
                AccessKind::Read,
                leaf,
                3,
                DescriptorAccess::Update,
            ));
            every_walk_gives(&w, &host, IPA, AccessKind::Read, &expected);
        });
        assert_eq!(t.mem.read(leaf), before, "nothing written");
        // L0 resolves its fault (write permission back): the walk sets AF.
        let ok = t
            .mem
            .with(|m| w.walk(&HostDenying::new(m), IPA, AccessKind::Read));
        assert!(ok.unwrap().update.access_flag);
        assert_eq!(t.mem.read(leaf), before | AF);

        // Read-only to L1: the external abort at the leaf's level.
        let ro = tables(endian, SlotAccess::ReadOnly, NO_AF, false);
        let w = walker(
            vtcr(Granule::K4, 24, 1, 5) | VTCR_HA | VTCR_HD,
            ro.root,
            endian,
            &features(mmfr0(PA_48), 2, 0),
        );
        let e = ro
            .mem
            .with(|m| w.walk(m, IPA, AccessKind::Read))
            .unwrap_err();
        assert_eq!(
            e.fault().map(|f| (f.cause, f.level, f.fsc())),
            Some((
                FaultCause::UpdateRefused {
                    address: ro.path[2]
                },
                3,
                0x17
            ))
        );
    }
}

/// FEAT_HAFT: a table descriptor with AF = 0 in a page the host
/// write-protects: the denial of that table descriptor's update.
#[test]
fn a_table_af_update_the_host_denies_is_its_denial() {
    let t = tables(Endianness::Little, SlotAccess::ReadWrite, LEAF_RW, false);
    let w = walker(
        vtcr(Granule::K4, 24, 1, 5) | VTCR_HA | VTCR_HAFT,
        t.root,
        Endianness::Little,
        &features(mmfr0(PA_48), 3, 0),
    );
    let before = t.mem.read(t.path[1]);
    t.mem.with(|m| {
        let mut host = HostDenying::new(m);
        host.no_write.push(page_of(t.path[1]));
        let expected = Err(denial(
            IPA,
            AccessKind::Write,
            t.path[1],
            2,
            DescriptorAccess::Update,
        ));
        every_walk_gives(&w, &host, IPA, AccessKind::Write, &expected);
    });
    // The level-1 descriptor (another page) got its AF; the denied one not.
    assert_eq!(t.mem.read(t.path[1]), before);
    assert_ne!(t.mem.read(t.path[0]) & AF, 0);
}

/// A batch mixing denied and allowed walks (reads denied at one level,
/// updates denied at the leaf) gives the single walks' results in order,
/// and leaves memory as they do.
#[test]
fn batches_with_host_denials_equal_single_walks() {
    for (endian, vtcr_extra, leaf_attrs) in [
        (Endianness::Little, 0, LEAF_RW),
        (Endianness::Little, VTCR_HA | VTCR_HD, NO_AF),
        (Endianness::Big, VTCR_HA | VTCR_HD | VTCR_HAFT, NO_AF),
    ] {
        let single = tables(endian, SlotAccess::ReadWrite, leaf_attrs, false);
        let batch_mem = single.mem.duplicate();
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
        // IPA's level-3 table page: reads denied; IPA_FAR's leaf page:
        // updates denied.
        let (no_read, no_write) = (page_of(single.path[2]), page_of(single.far_leaf));
        let singles: Vec<_> = single.mem.with(|m| {
            let mut host = HostDenying::new(m);
            host.no_read.push(no_read);
            host.no_write.push(no_write);
            requests
                .iter()
                .map(|r| w.walk(&host, r.ipa, r.access))
                .collect()
        });
        assert!(singles.iter().any(|r| matches!(
            r,
            Err(WalkError::HostDenied(HostDenial {
                denied: DescriptorAccess::Read,
                ..
            }))
        )));
        if vtcr_extra != 0 {
            assert!(singles.iter().any(|r| matches!(
                r,
                Err(WalkError::HostDenied(HostDenial {
                    denied: DescriptorAccess::Update,
                    ..
                }))
            )));
        }
        let mut batched = vec![
            Err(WalkError::Contended {
                ipa: 0,
                descriptor_address: 0
            });
            requests.len()
        ];
        batch_mem.with(|m| {
            let mut host = HostDenying::new(m);
            host.no_read.push(no_read);
            host.no_write.push(no_write);
            w.walk_batch(&host, &requests, &mut batched).unwrap();
        });
        assert_eq!(batched, singles);
        assert_eq!(batch_mem.snapshot(), single.mem.snapshot());
    }
}
