//! What a context key keeps of L1's registers: every VTCR_EL2 field the
//! walker reads (review 3 F2: VTCR_EL2.HAFT was masked out, so the
//! service never set AF in L1's table descriptors although L1 enabled
//! FEAT_HAFT).
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

mod common;

use common::*;
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::{HostBackend, Service, ServiceConfig, Translated};
use shadow_mmu::shadow_table::ShadowConfig;
use walker::{AccessKind, Endianness, ExposedFeatures, Granule, IdRegisters};

const AF: u64 = 1 << 10;
const VTCR_HA: u64 = 1 << 21;
const VTCR_HAFT: u64 = 1 << 44;

/// A service whose L1 was told it has FEAT_HAFT (HAFDBS = 0b0011).
fn haft_service(mem: L1Memory) -> TestService {
    let features = ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 5 | (1 << 20),
        mmfr1: 3 | (1 << 28),
        mmfr2: 0,
    })
    .unwrap();
    let config = ServiceConfig {
        features,
        ..config(16 << 20, 8)
    };
    let backend = HostBackend::recording(config.budget.frames, ShadowConfig::default()).unwrap();
    Service::new(config, mem, l0_map(), backend).unwrap()
}

/// L1 turns on HA and HAFT: a translate through the service walks with
/// FEAT_HAFT and sets AF in the table descriptors it passes (AArch64.S2Walk,
/// walkparams.haft); with HAFT off it leaves them alone.
#[test]
fn vtcr_haft_reaches_the_services_walks() {
    for (haft, expect_af) in [(VTCR_HAFT, true), (0, false)] {
        let mem = L1Memory::new();
        let l1 = L1Tables::new(mem.clone(), Granule::K4);
        l1.map(0x1000_0000, 0x8000_0000, 3, RW);
        let vtcr = l1.vtcr() | VTCR_HA | haft;
        let key = ContextKey::new(1, l1.root, vtcr, Endianness::Little);
        assert_eq!(key.vtcr & VTCR_HAFT, haft, "HAFT kept in the key");
        let s = haft_service(mem.clone());
        let w = s.worker();
        let t = s.translate(&w, &key, 0x1000_0000, AccessKind::Read, &ABORT);
        assert!(matches!(t, Translated::Mapped(_)), "{t:?}");
        // The level-1 entry (root index 0 for IPA 0x1000_0000, 39-bit IA)
        // and the level-2 entry below it are table descriptors built with
        // AF clear.
        let level1 = mem.read(l1.root);
        assert_eq!(level1 & 3, 3, "a table descriptor");
        let level2 = mem.read(l1.slot(0x1000_0000, 2));
        assert_eq!(level2 & 3, 3, "a table descriptor");
        for (level, d) in [(1, level1), (2, level2)] {
            assert_eq!(
                d & AF != 0,
                expect_af,
                "HAFT {}: AF of the level-{level} table descriptor {d:#x}",
                haft != 0
            );
        }
    }
}

/// HAFT is part of the key: the same tables with and without HAFT are two
/// contexts (their walks differ: one writes L1's memory).
#[test]
fn haft_on_and_off_are_different_contexts() {
    let with = ContextKey::new(
        1,
        0x4000_0000,
        0x2_3559 | VTCR_HA | VTCR_HAFT,
        Endianness::Little,
    );
    let without = ContextKey::new(1, 0x4000_0000, 0x2_3559 | VTCR_HA, Endianness::Little);
    assert_ne!(with, without);
    // Bits no walk reads (VS, IRGN0/ORGN0, NSW/NSA) do not split contexts.
    let noise = (1 << 19) | (3 << 8) | (3 << 10) | (3 << 29);
    let same = ContextKey::new(
        1,
        0x4000_0000,
        0x2_3559 | VTCR_HA | noise,
        Endianness::Little,
    );
    assert_eq!(same, without);
}
