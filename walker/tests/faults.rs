//! Issue item 4: every fault kind at every level it can occur, with the
//! architecture's FSC, including level -1's own codes.
#![cfg(not(loom))]
// host atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use crate::common;

use common::*;
use walker::{
    AbortContext, AbortOrigin, AccessKind, CacheMaintenance, Endianness, Fault, FaultCause,
    FaultKind, Granule, SlotAccess, Stage2Walker, Translation, WalkError,
};

const ARENA: u64 = 0x4000_0000;
const ARENA_BYTES: u64 = 1 << 20;
const IPA: u64 = 0x0000_8765_4321_0abc & ((1 << 48) - 1);

fn fault(r: Result<Translation, WalkError>) -> Fault {
    match r {
        Err(WalkError::Fault(f)) => f,
        other => panic!("expected a fault, got {other:?}"),
    }
}

/// 4KB, start level 0, 48-bit input, PS = `ps`, PAMax 48.
fn setup(ps: u64) -> (Mem, impl Fn(&Mem, u64) -> Stage2Walker) {
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, ARENA_BYTES, SlotAccess::ReadWrite);
    let mk = move |_: &Mem, vttbr: u64| {
        walker(
            vtcr(Granule::K4, 16, 2, ps),
            vttbr,
            Endianness::Little,
            &features(mmfr0(PA_48), mmfr1(0, true), 0),
        )
    };
    (mem, mk)
}

fn builder(mem: &Mem) -> Builder<'_> {
    Builder::new(
        mem,
        Granule::K4,
        0,
        48,
        AddrFormat::Plain,
        ARENA,
        ARENA_BYTES,
    )
}

#[test]
fn translation_fault_for_an_invalid_descriptor_at_every_level() {
    for level in 0..=3 {
        for bad in [0u64, 0b10, 0xffff_ffff_ffff_fff0, 0x0000_0000_4000_0002] {
            let (mem, mk) = setup(5);
            let mut b = builder(&mem);
            b.put(level, IPA, bad);
            let w = mk(&mem, b.vttbr());
            let f = fault(mem.with(|m| w.walk(m, IPA, AccessKind::Read)));
            assert_eq!(f.cause, FaultCause::InvalidDescriptor);
            assert_eq!((f.kind(), f.level), (FaultKind::Translation, level as i8));
            assert_eq!(f.fsc(), 0x04 + level as u8);
            assert_eq!(f.trail.len(), level as usize + 1);
            assert_eq!(f.trail.as_slice().last().unwrap().value, bad);
        }
    }
}

#[test]
fn blocks_where_the_granule_allows_none_are_translation_faults() {
    // 4KB without DS: no level-0 block; bits[1:0] = 01 at level 3 is reserved.
    for level in [0, 3] {
        let (mem, mk) = setup(5);
        let mut b = builder(&mem);
        b.put(level, IPA, LEAF_RW | 1);
        let w = mk(&mem, b.vttbr());
        let f = fault(mem.with(|m| w.walk(m, IPA, AccessKind::Read)));
        assert_eq!(f.cause, FaultCause::BlockNotPermitted);
        assert_eq!((f.level, f.fsc()), (level as i8, 0x04 + level as u8));
    }
    // 16KB: level-1 blocks need DS; 64KB: level-1 blocks need PAMax 52.
    for (granule, t0sz, sl0) in [(Granule::K16, 16, 2), (Granule::K64, 20, 2)] {
        let mem = Mem::new(Endianness::Little).with_slot(ARENA, 4 << 20, SlotAccess::ReadWrite);
        let ia = 64 - t0sz as u32;
        let mut b = Builder::new(&mem, granule, 1, ia, AddrFormat::Plain, ARENA, 4 << 20);
        b.put(1, 0x1000, LEAF_RW | 1);
        let w = walker(
            vtcr(granule, t0sz, sl0, 5),
            b.vttbr(),
            Endianness::Little,
            &features_48(),
        );
        let f = fault(mem.with(|m| w.walk(m, 0x1000, AccessKind::Read)));
        assert_eq!(
            (f.cause, f.fsc()),
            (FaultCause::BlockNotPermitted, 0x05),
            "{granule:?}"
        );
    }
}

#[test]
fn address_size_fault_for_a_table_address_beyond_the_output_size_at_its_level() {
    // PS = 40 bits: a table descriptor naming 2^41 faults at its own level.
    for level in 0..=2 {
        let (mem, mk) = setup(2);
        let mut b = builder(&mem);
        b.put(level, IPA & ((1 << 40) - 1), (1 << 41) | 3);
        let w = mk(&mem, b.vttbr());
        let f = fault(mem.with(|m| w.walk(m, IPA & ((1 << 40) - 1), AccessKind::Read)));
        assert_eq!(f.cause, FaultCause::TableAddressOutOfRange);
        assert_eq!((f.kind(), f.level), (FaultKind::AddressSize, level as i8));
        assert_eq!(f.fsc(), level as u8);
    }
}

#[test]
fn address_size_fault_for_an_output_address_beyond_the_output_size_at_its_level() {
    let ipa = IPA & ((1 << 40) - 1);
    for level in 1..=3 {
        let (mem, mk) = setup(2);
        let mut b = builder(&mem);
        let oa = 1u64 << 42;
        b.map(level, ipa, oa, LEAF_RW);
        let w = mk(&mem, b.vttbr());
        let f = fault(mem.with(|m| w.walk(m, ipa, AccessKind::Read)));
        assert_eq!(f.cause, FaultCause::OutputAddressOutOfRange);
        assert_eq!((f.level, f.fsc()), (level as i8, level as u8));
        // The same output address fits a 48-bit output size.
        let (mem, mk) = setup(5);
        let mut b = builder(&mem);
        b.map(level, ipa, oa, LEAF_RW);
        let w = mk(&mem, b.vttbr());
        let t = mem.with(|m| w.walk(m, ipa, AccessKind::Read)).unwrap();
        assert_eq!(t.output_block_base(), oa);
    }
}

#[test]
fn access_flag_fault_at_every_leaf_level() {
    for level in 1..=3 {
        let (mem, mk) = setup(5);
        let mut b = builder(&mem);
        b.map(level, IPA, 0x8000_0000, LEAF_RW & !(1 << 10));
        let w = mk(&mem, b.vttbr());
        for access in [AccessKind::Read, AccessKind::Write, AccessKind::ExecEl1] {
            let f = fault(mem.with(|m| w.walk(m, IPA, access)));
            assert_eq!(f.cause, FaultCause::AccessFlagClear);
            assert_eq!(
                (f.kind(), f.fsc()),
                (FaultKind::AccessFlag, 0x08 + level as u8)
            );
        }
    }
}

#[test]
fn output_address_size_has_priority_over_access_flag_which_has_priority_over_permission() {
    let (mem, mk) = setup(2);
    let mut b = builder(&mem);
    let ipa = IPA & ((1 << 40) - 1);
    // AF = 0, S2AP = none, OA beyond 40 bits.
    b.map(3, ipa, 1 << 41, 0xf << 2);
    let w = mk(&mem, b.vttbr());
    let f = fault(mem.with(|m| w.walk(m, ipa, AccessKind::Read)));
    assert_eq!(f.kind(), FaultKind::AddressSize);
    b.map(3, ipa, 0x1000, 0xf << 2);
    let f = fault(mem.with(|m| w.walk(m, ipa, AccessKind::Read)));
    assert_eq!(f.kind(), FaultKind::AccessFlag);
    b.map(3, ipa, 0x1000, (0xf << 2) | (1 << 10));
    let f = fault(mem.with(|m| w.walk(m, ipa, AccessKind::Read)));
    assert_eq!(f.kind(), FaultKind::Permission);
}

#[test]
fn permission_faults_from_s2ap_at_every_leaf_level() {
    let base = (1 << 10) | (0xf << 2);
    for level in 1..=3 {
        for (s2ap, read_ok, write_ok) in [
            (0u64, false, false),
            (1, true, false),
            (2, false, true),
            (3, true, true),
        ] {
            let (mem, mk) = setup(5);
            let mut b = builder(&mem);
            b.map(level, IPA, 0x8000_0000, base | (s2ap << 6));
            let w = mk(&mem, b.vttbr());
            for (access, ok, cause) in [
                (AccessKind::Read, read_ok, FaultCause::ReadDenied),
                (AccessKind::Write, write_ok, FaultCause::WriteDenied),
            ] {
                let r = mem.with(|m| w.walk(m, IPA, access));
                if ok {
                    assert_eq!(r.unwrap().s2ap.bits(), s2ap as u8);
                } else {
                    let f = fault(r);
                    assert_eq!((f.cause, f.fsc()), (cause, 0x0c + level as u8));
                }
            }
            // Execution does not need read permission at stage 2.
            assert!(mem.with(|m| w.walk(m, IPA, AccessKind::ExecEl1)).is_ok());
        }
    }
}

/// Review 31 R31-2: cache maintenance by VA is checked as
/// AArch64.S2CheckPermissions checks AccessType_DC/IC (no FEAT_CMOW): a
/// clean at EL1 needs nothing, DC IVAC at EL1 needs write, anything at EL0
/// read. It never sets the dirty state of a DBM entry, and a fault reports
/// CM = 1 with WnR = 1.
#[test]
fn cache_maintenance_permissions() {
    let base = (1 << 10) | (0xf << 2);
    let clean = AccessKind::CacheMaintenance(CacheMaintenance::CleanEl1);
    let invalidate = AccessKind::CacheMaintenance(CacheMaintenance::InvalidateEl1);
    let el0 = AccessKind::CacheMaintenance(CacheMaintenance::El0);
    for (s2ap, read_ok, write_ok) in [
        (0u64, false, false),
        (1, true, false),
        (2, false, true),
        (3, true, true),
    ] {
        let (mem, mk) = setup(5);
        let mut b = builder(&mem);
        b.map(3, IPA, 0x8000_0000, base | (s2ap << 6));
        let w = mk(&mem, b.vttbr());
        assert!(mem.with(|m| w.walk(m, IPA, clean)).is_ok(), "S2AP {s2ap}");
        for (access, ok, cause) in [
            (invalidate, write_ok, FaultCause::WriteDenied),
            (el0, read_ok, FaultCause::ReadDenied),
        ] {
            let r = mem.with(|m| w.walk(m, IPA, access));
            if ok {
                assert_eq!(r.unwrap().s2ap.bits(), s2ap as u8);
            } else {
                let f = fault(r);
                assert_eq!((f.cause, f.fsc()), (cause, 0x0f), "S2AP {s2ap} {access:?}");
                let s = f.syndrome(&AbortContext {
                    far: Some(0x1000),
                    origin: AbortOrigin::Access,
                    trapped_esr: None,
                });
                assert_eq!(s.esr_el2, 0x9200_014f, "S2AP {s2ap} {access:?}");
            }
        }
    }
    // AF = 0 without hardware AF: an Access flag fault for cache
    // maintenance too (IMPLEMENTATION DEFINED, this walker's choice).
    let (mem, mk) = setup(5);
    let mut b = builder(&mem);
    b.map(3, IPA, 0x8000_0000, (0xf << 2) | (3 << 6));
    let w = mk(&mem, b.vttbr());
    for access in [clean, invalidate, el0] {
        let f = fault(mem.with(|m| w.walk(m, IPA, access)));
        assert_eq!(
            (f.kind(), f.fsc()),
            (FaultKind::AccessFlag, 0x0b),
            "{access:?}"
        );
    }
}

/// Review 36 R36-1: a hardware update of an L2 stage-1 descriptor
/// (AccessType_TTW, write) needs read permission first and then write
/// (AArch64.S2CheckPermissions), unlike a data write: a write-only entry
/// gives a permission fault for it, reported with S1PTW and WnR.
#[test]
fn a_stage1_descriptor_update_needs_read_and_write() {
    let base = (1 << 10) | (0xf << 2);
    for (s2ap, expected) in [
        (0u64, Some(FaultCause::ReadDenied)),
        (1, Some(FaultCause::WriteDenied)),
        (2, Some(FaultCause::ReadDenied)),
        (3, None),
    ] {
        let (mem, mk) = setup(5);
        let mut b = builder(&mem);
        b.map(3, IPA, 0x8000_0000, base | (s2ap << 6));
        let w = mk(&mem, b.vttbr());
        let r = mem.with(|m| w.walk(m, IPA, AccessKind::Stage1Update));
        match expected {
            None => assert_eq!(r.unwrap().s2ap.bits(), 3),
            Some(cause) => {
                let f = fault(r);
                assert_eq!((f.cause, f.fsc()), (cause, 0x0f), "S2AP {s2ap}");
                let s = f.syndrome(&AbortContext {
                    far: Some(0x1000),
                    origin: AbortOrigin::Stage1Walk {
                        for_instruction_fetch: false,
                    },
                    trapped_esr: None,
                });
                assert_eq!(s.esr_el2, 0x9200_00cf, "S2AP {s2ap}");
            }
        }
        // A data write needs W alone.
        let write = mem.with(|m| w.walk(m, IPA, AccessKind::Write));
        assert_eq!(write.is_ok(), s2ap & 2 != 0, "S2AP {s2ap}");
    }
}

#[test]
fn execute_never_with_feat_xnx_distinguishes_el0_and_el1() {
    // (XN[1:0], EL1 may execute, EL0 may execute) with FEAT_XNX...
    let with_xnx = [
        (0u64, true, true),
        (1, false, true),
        (2, false, false),
        (3, true, false),
    ];
    // ...and without it, where XN[0] is ignored.
    let without_xnx = [
        (0u64, true, true),
        (1, true, true),
        (2, false, false),
        (3, false, false),
    ];
    for (xnx, table) in [(true, with_xnx), (false, without_xnx)] {
        for (xn, el1, el0) in table {
            let mem =
                Mem::new(Endianness::Little).with_slot(ARENA, ARENA_BYTES, SlotAccess::ReadWrite);
            let mut b = builder(&mem);
            b.map(3, IPA, 0x8000_0000, LEAF_RW | (xn << 53));
            let w = walker(
                vtcr(Granule::K4, 16, 2, 5),
                b.vttbr(),
                Endianness::Little,
                &features(mmfr0(PA_48), mmfr1(0, xnx), 0),
            );
            for (access, allowed) in [(AccessKind::ExecEl1, el1), (AccessKind::ExecEl0, el0)] {
                let r = mem.with(|m| w.walk(m, IPA, access));
                if allowed {
                    let t = r.unwrap();
                    assert_eq!(t.execute.el1(), el1);
                    assert_eq!(t.execute.el0(), el0);
                } else {
                    let f = fault(r);
                    assert_eq!((f.cause, f.fsc()), (FaultCause::ExecuteDenied, 0x0f));
                }
            }
            // Data accesses ignore XN.
            assert!(mem.with(|m| w.walk(m, IPA, AccessKind::Read)).is_ok());
        }
    }
}

#[test]
fn instruction_fetch_from_device_memory_is_a_permission_fault() {
    for mem_attr in 0..16u64 {
        let (mem, mk) = setup(5);
        let mut b = builder(&mem);
        b.map(2, IPA, 0x8000_0000, (1 << 10) | (3 << 6) | (mem_attr << 2));
        let w = mk(&mem, b.vttbr());
        let r = mem.with(|m| w.walk(m, IPA, AccessKind::ExecEl0));
        if mem_attr & 0b1100 == 0 {
            let f = fault(r);
            assert_eq!((f.cause, f.fsc()), (FaultCause::ExecuteFromDevice, 0x0e));
            assert!(mem.with(|m| w.walk(m, IPA, AccessKind::Read)).is_ok());
        } else {
            assert_eq!(r.unwrap().mem_attr, mem_attr as u8);
        }
    }
}

#[test]
fn external_abort_when_a_descriptor_lies_outside_every_memslot_at_that_level() {
    // A table descriptor at level L naming a table outside memory: the read
    // of level L + 1 aborts.
    for level in 0..=2 {
        let (mem, mk) = setup(5);
        let mut b = builder(&mem);
        let hole = 0x7000_0000;
        b.put(level, IPA, hole | 3);
        let w = mk(&mem, b.vttbr());
        let (r, reads) = mem.with(|m| {
            let rec = Recording::new(m);
            let r = w.walk(&rec, IPA, AccessKind::Read);
            let reads = rec.reads.borrow().clone();
            (r, reads)
        });
        let f = fault(r);
        let next = level as i8 + 1;
        assert_eq!(f.kind(), FaultKind::ExternalAbortOnWalk);
        assert_eq!((f.level, f.fsc()), (next, 0x14 + next as u8));
        let FaultCause::DescriptorOutsideMemslots { address } = f.cause else {
            panic!("{:?}", f.cause)
        };
        assert_eq!(address >> 12, hole >> 12);
        // The walk stopped at the aborted read.
        assert_eq!(reads.last(), Some(&address));
        assert_eq!(reads.len(), level as usize + 2);
    }
    // The start-level table itself outside memory.
    let (mem, mk) = setup(5);
    let w = mk(&mem, 0x7000_0000);
    let f = fault(mem.with(|m| w.walk(m, IPA, AccessKind::Read)));
    assert_eq!(
        (f.kind(), f.level, f.fsc()),
        (FaultKind::ExternalAbortOnWalk, 0, 0x14)
    );
}

/// Level -1 (FEAT_LPA2, 4KB, DS = 1, SL2 = 1) uses its own codes.
#[test]
fn level_minus_one_faults_use_their_own_codes() {
    let f52 = features(mmfr0_lpa2(PA_52), 0, 0);
    let mk = |vttbr: u64, ps: u64| {
        walker(
            vtcr(Granule::K4, 12, 0, ps) | VTCR_DS | VTCR_SL2,
            vttbr,
            Endianness::Little,
            &f52,
        )
    };
    let ipa = 0x000f_1234_5678_9000;
    // Translation fault at -1: 0x2B (invalid, and a block at -1).
    for bad in [0u64, LEAF_RW | 1] {
        let mem = Mem::new(Endianness::Little).with_slot(ARENA, ARENA_BYTES, SlotAccess::ReadWrite);
        let mut b = Builder::new(
            &mem,
            Granule::K4,
            -1,
            52,
            AddrFormat::Ds,
            ARENA,
            ARENA_BYTES,
        );
        b.put(-1, ipa, bad);
        let w = mk(b.vttbr(), 6);
        let f = fault(mem.with(|m| w.walk(m, ipa, AccessKind::Read)));
        assert_eq!(
            (f.kind(), f.level, f.fsc()),
            (FaultKind::Translation, -1, 0x2b)
        );
    }
    // Address size fault at -1: 0x29 (next table at 2^50 with a 48-bit PS).
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, ARENA_BYTES, SlotAccess::ReadWrite);
    let mut b = Builder::new(
        &mem,
        Granule::K4,
        -1,
        52,
        AddrFormat::Ds,
        ARENA,
        ARENA_BYTES,
    );
    b.put(-1, ipa, encode_addr(AddrFormat::Ds, 1 << 50) | 3);
    let w = mk(b.vttbr(), 5);
    let f = fault(mem.with(|m| w.walk(m, ipa, AccessKind::Read)));
    assert_eq!(
        (f.cause, f.level, f.fsc()),
        (FaultCause::TableAddressOutOfRange, -1, 0x29)
    );
    // External abort at -1: 0x13.
    let w = mk(vttbr_for(AddrFormat::Ds, 0x7000_0000), 6);
    let f = fault(mem.with(|m| w.walk(m, ipa, AccessKind::Read)));
    assert_eq!(
        (f.kind(), f.level, f.fsc()),
        (FaultKind::ExternalAbortOnWalk, -1, 0x13)
    );
    // Level 0 blocks exist with DS: access flag 0x08 and permission 0x0C.
    let mem = Mem::new(Endianness::Little).with_slot(ARENA, ARENA_BYTES, SlotAccess::ReadWrite);
    let mut b = Builder::new(
        &mem,
        Granule::K4,
        -1,
        52,
        AddrFormat::Ds,
        ARENA,
        ARENA_BYTES,
    );
    b.map(0, ipa, 0x0008_0000_0000_0000, (0xf << 2) | (1 << 6));
    let w = mk(b.vttbr(), 6);
    let f = fault(mem.with(|m| w.walk(m, ipa, AccessKind::Read)));
    assert_eq!(
        (f.kind(), f.level, f.fsc()),
        (FaultKind::AccessFlag, 0, 0x08)
    );
    b.map(
        0,
        ipa,
        0x0008_0000_0000_0000,
        (0xf << 2) | (1 << 6) | (1 << 10),
    );
    let f = fault(mem.with(|m| w.walk(m, ipa, AccessKind::Write)));
    assert_eq!(
        (f.kind(), f.level, f.fsc()),
        (FaultKind::Permission, 0, 0x0c)
    );
    // ...and an address size fault on a level-0 block output: 0x00.
    let w48 = mk(b.vttbr(), 5);
    let f = fault(mem.with(|m| w48.walk(m, ipa, AccessKind::Read)));
    assert_eq!(
        (f.cause, f.level, f.fsc()),
        (FaultCause::OutputAddressOutOfRange, 0, 0x00)
    );
}

#[test]
fn fault_status_codes_cover_every_kind_and_level() {
    use walker::fault_status_code as fsc;
    let expect = [
        (FaultKind::AddressSize, [0x29, 0x00, 0x01, 0x02, 0x03]),
        (FaultKind::Translation, [0x2b, 0x04, 0x05, 0x06, 0x07]),
        (FaultKind::AccessFlag, [0x08, 0x08, 0x09, 0x0a, 0x0b]),
        (FaultKind::Permission, [0x0c, 0x0c, 0x0d, 0x0e, 0x0f]),
        (
            FaultKind::ExternalAbortOnWalk,
            [0x13, 0x14, 0x15, 0x16, 0x17],
        ),
    ];
    for (kind, codes) in expect {
        for (level, code) in (-1..=3).zip(codes) {
            assert_eq!(fsc(kind, level), code, "{kind:?} level {level}");
        }
    }
}

#[test]
fn faults_read_well() {
    let (mem, mk) = setup(5);
    let mut b = builder(&mem);
    b.put(2, IPA, 0);
    let w = mk(&mem, b.vttbr());
    let e = mem.with(|m| w.walk(m, IPA, AccessKind::Read)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("translation fault at level 2 (FSC 0x06) for IPA {IPA:#x}: invalid descriptor")
    );
}
