//! A leaf block larger than L1's output size (VTCR_EL2.PS): only its IPAs
//! whose output address is within the output size translate. Review 31
//! R31-1: the walk cache served the whole block, so the answer for the
//! same access depended on what was walked before. AArch64.S2Walk's
//! TLB-hit path re-checks AArch64.OAOutOfRange(StageOA) on every hit; so
//! do `Service::translate` and `Service::lookup` (through
//! `Context::cached`).
#![cfg(not(loom))]

use crate::common;

use common::*;
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::{HostBackend, Service, Translated};
use shadow_mmu::shadow_table::ShadowConfig;
use walker::{AccessKind, Endianness, ExposedFeatures, IdRegisters};

/// PARange 48 (what the test service's shadows take), 4KB with FEAT_LPA2
/// at stage 2 (DS = 1 needs no PAMax 52), HAFDBS 2, XNX as `features()`.
fn lpa2_features() -> ExposedFeatures {
    ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 0b0101 | (1 << 20) | (0b0011 << 40),
        mmfr1: 2 | (1 << 28),
        mmfr2: 0,
    })
    .unwrap()
}

/// 4KB, DS = 1, T0SZ 16, SL0 = 0b10 (level 0), PS = 0b000: 32-bit OAs.
const VTCR: u64 = 16 | (2 << 6) | (1 << 32);
/// Level-0 block (512 GiB, DS = 1 format: bits 9:8 are OA[51:50]) at OA 0.
const BLOCK_512G_AT_0: u64 = (1 << 10) | (3 << 6) | (0xf << 2) | 1;
/// In the block, OA = IPA = 4 GiB: beyond the 32-bit output size. L0 maps
/// L1 IPA [4 GiB, 5 GiB) as a device (common::l0_map).
const BEYOND: u64 = 0x1_0000_0000;

fn service_and_key() -> (
    Service<L1Memory, shadow_mmu::compose::L0RegionMap, HostBackend>,
    ContextKey,
) {
    let mem = L1Memory::new();
    mem.write(TABLES_BASE, BLOCK_512G_AT_0);
    let mut config = config(16 << 20, 8);
    config.features = lpa2_features();
    let backend = HostBackend::recording(config.budget.frames, ShadowConfig::default()).unwrap();
    let s = Service::new(config, mem, l0_map(), backend).unwrap();
    (s, ContextKey::new(1, TABLES_BASE, VTCR, Endianness::Little))
}

/// Walked first, IPA 4 GiB is the architectural Address size fault (FSC
/// 0x00, level 0) injected into L1.
#[test]
fn walked_cold_the_access_beyond_the_output_size_is_injected() {
    let (s, key) = service_and_key();
    let w = s.worker();
    let t = s.translate(&w, &key, BEYOND, AccessKind::Read, &ABORT);
    let Translated::Inject(abort) = t else {
        panic!("{t:?}")
    };
    assert_eq!(abort.esr_el2 & 0x3f, 0x00, "{abort:x?}");
}

/// After a walk of IPA 0x1000 (same block) is cached, the access to IPA
/// 4 GiB is still the Address size fault (it was a cache hit answered with
/// L1 IPA 4 GiB, here L0's MMIO region).
#[test]
fn a_cached_block_does_not_serve_an_ipa_whose_output_is_beyond_the_output_size() {
    let (s, key) = service_and_key();
    let w = s.worker();
    let first = s.translate(&w, &key, 0x1000, AccessKind::Read, &ABORT);
    assert_eq!(pa_of(&first, 0x1000), Some(PA_OFFSET + 0x1000), "{first:?}");
    let t = s.translate(&w, &key, BEYOND, AccessKind::Read, &ABORT);
    assert!(
        matches!(t, Translated::Inject(a) if a.esr_el2 & 0x3f == 0x00),
        "IPA {BEYOND:#x} after a cached walk of 0x1000: {t:?} (walked cold it is an Address size fault)"
    );
}

/// `Service::lookup`, the public hit path, serves the part of the cached
/// block that translates and nothing beyond the output size.
#[test]
fn lookup_does_not_serve_an_ipa_whose_output_is_beyond_the_output_size() {
    let (s, key) = service_and_key();
    let w = s.worker();
    let first = s.translate(&w, &key, 0x1000, AccessKind::Read, &ABORT);
    assert_eq!(pa_of(&first, 0x1000), Some(PA_OFFSET + 0x1000), "{first:?}");
    let guard = w.pin();
    let hit = s
        .lookup(&key, 0xffff_f000, &guard)
        .expect("the block's last 4 KiB below 4 GiB");
    assert_eq!(hit.output_address(0xffff_f000), 0xffff_f000);
    assert!(s.lookup(&key, BEYOND, &guard).is_none());
    assert!(s.lookup(&key, 0x7f_ffff_f000, &guard).is_none());
}
