//! A leaf block larger than the output size: a 4KB level-0 block with
//! DS = 1 (512 GiB), a 16KB level-1 block with DS = 1 (64 GiB) or a 64KB
//! level-1 block with FEAT_LPA (4 TiB) under a VTCR_EL2.PS of 32 bits
//! translates only its first 2^32 bytes: AArch64.S2Walk checks
//! OAOutOfRange(StageOA) for every IPA, and its TLB-hit path re-checks it
//! on every hit. Review 31 R31-1: `visit_mappings` (and `s2walk dump`)
//! listed such a block as one fault; shadow-mmu's walk cache served its
//! IPAs beyond the output size (tested in shadow-mmu). Also the review's
//! sweep of every VTCR_EL2 field combination for panics.
#![cfg(not(loom))]

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};

use walker::{
    AccessKind, Endianness, ExposedFeatures, FaultCause, FaultKind, IdRegisters, Memslot, Memslots,
    SlotAccess, Stage2Registers, Stage2Walker, WalkError,
};

const TABLE: u64 = 0x4000_0000;

/// PARange 48 bits, 4KB at stage 2 with FEAT_LPA2 (TGran4_2 = 0b0011), no
/// hardware updates. DS = 1 does not need PAMax 52.
fn lpa2_48() -> ExposedFeatures {
    ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 0b0101 | (1 << 20) | (0b0011 << 40),
        mmfr1: 0,
        mmfr2: 0,
    })
    .unwrap()
}

/// 4KB, DS = 1, T0SZ 16 (48-bit IPA), SL0 = 0b10 (level 0), PS = 0b000
/// (32-bit output size).
fn walker_ps32() -> Stage2Walker {
    let vtcr = 16 | (2 << 6) | (1 << 32);
    Stage2Walker::new(
        Stage2Registers {
            vtcr,
            vttbr: TABLE,
            endianness: Endianness::Little,
        },
        &lpa2_48(),
    )
}

/// Level-0 block (DS = 1): OA 0, AF, S2AP RW, MemAttr Normal WB.
const BLOCK_512G_AT_0: u64 = (1 << 10) | (3 << 6) | (0xf << 2) | 1;

fn with_table<R>(f: impl FnOnce(&Memslots<'_>) -> R) -> R {
    let words: Vec<AtomicU64> = (0..512).map(|_| AtomicU64::new(0)).collect();
    words[0].store(BLOCK_512G_AT_0.to_le(), Ordering::SeqCst);
    let mut slots = [Memslot::new(TABLE, &words, SlotAccess::ReadWrite)];
    let memory = Memslots::new(&mut slots).unwrap();
    f(&memory)
}

/// IPA 4 GiB lies in the same level-0 block as IPA 0x1000, and its OA
/// (4 GiB) is beyond the 32-bit output size: an Address size fault at
/// level 0 (FSC 0x00), as AArch64.S2Walk checks OAOutOfRange(StageOA(ipa))
/// for every IPA; the block's last IPA below 4 GiB translates.
#[test]
fn only_the_part_of_the_block_within_the_output_size_translates() {
    let w = walker_ps32();
    assert_eq!(w.start_level(), Some(0));
    assert_eq!(w.output_size_bits(), 32);
    assert!(w.lpa2());
    with_table(|m| {
        let fault = w.walk(m, 0x1_0000_0000, AccessKind::Read).unwrap_err();
        let WalkError::Fault(fault) = fault else {
            panic!("{fault:?}")
        };
        assert_eq!(fault.kind(), FaultKind::AddressSize);
        assert_eq!(fault.cause, FaultCause::OutputAddressOutOfRange);
        assert_eq!((fault.level, fault.fsc()), (0, 0x00));
        let t = w.walk(m, 0xffff_fabc, AccessKind::Read).unwrap();
        assert_eq!(t.output_address, 0xffff_fabc);
    });
}

/// The translation reports the architectural block (TranslationSize, what
/// s2walk's `size` and the reference models give: review 31 found that
/// clipping it to the output size breaks the reference model). A reuse of
/// it for another IPA of the block must re-check that IPA's output address
/// against the output size, as AArch64.S2Walk's TLB-hit path does, and
/// that check agrees with a walk of the IPA.
#[test]
fn a_translation_keeps_the_architectural_block_and_a_reuse_rechecks_the_output_size() {
    let w = walker_ps32();
    with_table(|m| {
        let t = w.walk(m, 0x1000, AccessKind::Read).unwrap();
        assert_eq!((t.block_size, t.level), (1 << 39, 0));
        let leaf = w.translate_leaf(m, 0x1000, AccessKind::Read).unwrap();
        assert_eq!(leaf.block_size(), 1 << 39);
        for ipa in [0, 0xffff_ffff, 0x1_0000_0000, 0x7f_ffff_ffff] {
            let reused = t.output_block_base() + (ipa & (t.block_size - 1));
            let translates = reused >> w.output_size_bits() == 0;
            let walked = w.walk(m, ipa, AccessKind::Read);
            assert_eq!(translates, walked.is_ok(), "{ipa:#x}: {walked:?}");
            if let Ok(walked) = walked {
                assert_eq!(walked.output_address, reused);
            }
        }
    });
}

/// `visit_mappings` (and so `s2walk dump`) lists the part of the block
/// that translates as a mapping and the rest as one Address size fault
/// (it reported the whole block as a fault, while IPA 0x1000 translates).
#[test]
fn visit_mappings_lists_the_part_of_a_block_that_translates() {
    let w = walker_ps32();
    with_table(|m| {
        let mut mapped = Vec::new();
        let mut faults = Vec::new();
        w.visit_mappings(m, |item| {
            match item {
                Ok(mapping) => mapped.push((mapping.ipa, mapping.size)),
                Err(fault) => faults.push((fault.ipa, fault.cause)),
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        assert!(w.walk(m, 0x1000, AccessKind::Read).is_ok());
        assert!(
            mapped
                .iter()
                .any(|&(ipa, size)| ipa <= 0x1000 && 0x1000 - ipa < size),
            "IPA 0x1000 translates, but the visit listed no mapping for it: mappings {mapped:x?}, faults {faults:x?}"
        );
        assert_eq!(mapped, [(0, 1 << 32)]);
        assert_eq!(faults, [(1 << 32, FaultCause::OutputAddressOutOfRange)]);
        // A visitor that stops at the mapping gets no fault after it.
        let mut items = 0;
        w.visit_mappings(m, |_| {
            items += 1;
            ControlFlow::Break(())
        })
        .unwrap();
        assert_eq!(items, 1);
    });
}

/// Every combination of the VTCR_EL2 fields the walker reads, over ID
/// register sets spanning PAMax 32..52, LPA2, TTST, HAFDBS: `new`, a walk
/// at the edges of the input size, a batch and a bounded visit never
/// panic (run in the debug profile: overflow checks on).
#[test]
fn every_vtcr_field_combination_is_panic_free() {
    let id_sets = [
        (0u64, 0u64, 0u64),
        (0b0101 | (1 << 20), 0, 0),
        (
            0b0101 | (1 << 20) | (0b0011 << 40) | (0b0011 << 32),
            3,
            1 << 28,
        ),
        (0b0110 | (2 << 20) | (1 << 28), 3 | (1 << 28), 1 << 28),
        (0b0110 | (0xf << 28) | (0xf << 24) | (1 << 20), 1, 0),
        (0b0100 | (0xf << 28) | (2 << 36), 2, 1 << 28),
    ];
    let words: Vec<AtomicU64> = (0..4096u64)
        .map(|i| {
            // Tables pointing back into the slot, blocks, pages, invalid.
            let d = match i % 5 {
                0 => (TABLE + ((i * 0x1000) % 0x8000)) | 3,
                1 => (i << 21) | (1 << 10) | (3 << 6) | (0xf << 2) | 1,
                2 => (i << 12) | (1 << 52) | (1 << 51) | (0xf << 2) | 3,
                3 => u64::MAX,
                _ => 0,
            };
            AtomicU64::new(d)
        })
        .collect();
    let mut slots = [Memslot::new(TABLE, &words, SlotAccess::ReadOnly)];
    let memory = Memslots::new(&mut slots).unwrap();
    let mut walks = 0u64;
    for (mmfr0, mmfr1, mmfr2) in id_sets {
        let features = ExposedFeatures::from_id_registers(IdRegisters {
            mmfr0,
            mmfr1,
            mmfr2,
        })
        .unwrap_or_else(|e| panic!("{mmfr0:#x}: {e}"));
        for t0sz in 0..64u64 {
            for sl0 in 0..4u64 {
                for tg0 in 0..4u64 {
                    for ps in 0..8u64 {
                        for ds_sl2 in 0..4u64 {
                            for enables in [0u64, (1 << 21) | (1 << 22) | (1 << 44)] {
                                let vtcr = t0sz
                                    | (sl0 << 6)
                                    | (tg0 << 14)
                                    | (ps << 16)
                                    | (ds_sl2 << 32)
                                    | enables;
                                for vttbr in [TABLE, TABLE | 0x3e, u64::MAX] {
                                    let w = Stage2Walker::new(
                                        Stage2Registers {
                                            vtcr,
                                            vttbr,
                                            endianness: Endianness::Big,
                                        },
                                        &features,
                                    );
                                    let top = 1u64
                                        .checked_shl(w.input_size_bits())
                                        .unwrap_or(0)
                                        .wrapping_sub(1);
                                    for ipa in [0, top, top.wrapping_add(1), u64::MAX] {
                                        for access in [AccessKind::Write, AccessKind::ExecEl0] {
                                            let _ = w.walk(&memory, ipa, access);
                                            walks += 1;
                                        }
                                    }
                                    if vttbr == TABLE && enables == 0 {
                                        let mut n = 0;
                                        let _ = w.visit_mappings(&memory, |_| {
                                            n += 1;
                                            if n > 64 {
                                                ControlFlow::Break(())
                                            } else {
                                                ControlFlow::Continue(())
                                            }
                                        });
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(walks > 1_000_000);
}
