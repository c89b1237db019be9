//! Review 55 (of stop 26's specialised walk for 16KB and 64KB and of
//! `begin`'s single IPA-range compare against `Geometry::ipa_max`).
#![cfg(not(loom))]
// host atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use crate::common;

use common::*;
use walker::{AccessKind, Endianness, FaultCause, Granule, SlotAccess};

const ARENA: u64 = 0x4000_0000;
const ARENA_BYTES: u64 = 4 << 20;

/// R55-1: AArch64.IPAIsOutOfRange is `ipa<55:iasize> != 0`, so the last
/// byte of the input range, `2^iasize - 1`, walks (through the last entry
/// of the start table, the last of up to 16 concatenated ones, with no
/// index mask in `begin`) and `2^iasize` is a level-0 translation fault
/// before any read. Every granule and DS = 0 start level, at the smallest
/// and largest input size, the specialised walk and the general one; 64KB
/// also in the FEAT_LPA format (PAMax 52, 52-bit input, OA\[51:48\] in
/// bits 15:12). The other tests walk at most the last page's offset 0x18
/// and fault from `2^iasize` on, so `begin` comparing with `>=` passed them.
#[test]
fn the_last_ipa_in_range_walks_and_the_next_one_faults_at_level_0() {
    let pa48 = features_48();
    let pa52 = features(mmfr0(PA_52), mmfr1(0, false), mmfr2(true));
    // (granule, SL0, start level, input sizes, PAMax 52 (the FEAT_LPA
    // format with 64KB, PS 52), the specialised walk takes it)
    let cases = [
        (Granule::K4, 2, 0, [40, 48], false, true),
        (Granule::K4, 1, 1, [31, 43], false, true),
        (Granule::K4, 0, 2, [22, 34], false, false),
        (Granule::K4, 3, 3, [16, 25], false, false),
        (Granule::K16, 2, 1, [37, 48], false, true),
        (Granule::K16, 1, 2, [26, 40], false, true),
        (Granule::K16, 0, 3, [16, 29], false, true),
        (Granule::K64, 2, 1, [43, 48], false, true),
        (Granule::K64, 1, 2, [30, 46], false, true),
        (Granule::K64, 0, 3, [17, 33], false, true),
        (Granule::K64, 2, 1, [43, 52], true, true),
        (Granule::K64, 1, 2, [30, 46], true, true),
        (Granule::K64, 0, 3, [17, 33], true, true),
    ];
    for (granule, sl0, start, sizes, lpa, specialised) in cases {
        let (features, format, ps) = if lpa {
            (&pa52, AddrFormat::Lpa64k, 6)
        } else {
            (&pa48, AddrFormat::Plain, 5)
        };
        for ia in sizes {
            let what = format!("{granule:?} SL0={sl0} ia={ia} {format:?}");
            let mem =
                Mem::new(Endianness::Little).with_slot(ARENA, ARENA_BYTES, SlotAccess::ReadWrite);
            let mut b = Builder::new(&mem, granule, start, ia, format, ARENA, ARENA_BYTES);
            let page = granule.size();
            let ipa_max = (1u64 << ia) - 1;
            // OA[51:48] set where the format has them.
            let oa = if format == AddrFormat::Lpa64k {
                0xa_0012_3456_0000
            } else {
                0x12_3456_0000 & !(page - 1)
            };
            b.map(3, ipa_max, oa, LEAF_RW);
            let w = walker(
                vtcr(granule, 64 - u64::from(ia), sl0, ps),
                b.vttbr(),
                Endianness::Little,
                features,
            );
            assert_eq!(w.configuration_fault(), None, "{what}");
            assert_eq!(w.takes_specialised_walk(), specialised, "{what}");
            let last_entry = b.root + ((1u64 << (ia - b.lsb(start))) - 1) * 8;
            for w in [w, w.with_general_walk()] {
                let t = mem
                    .with(|m| w.walk(m, ipa_max, AccessKind::Read))
                    .unwrap_or_else(|e| panic!("{what}: {e:?}"));
                assert_eq!(t.output_address, oa | (page - 1), "{what}");
                assert_eq!(t.trail.as_slice()[0].address, last_entry, "{what}");
                assert_eq!(t.trail.len(), (4 - start) as usize, "{what}");
                for ipa in [ipa_max + 1, (ipa_max + 1) | (ipa_max & !0xfff)] {
                    let e = mem
                        .with(|m| w.translate_leaf(m, ipa, AccessKind::Read))
                        .unwrap_err();
                    let f = e.fault().unwrap();
                    assert_eq!(
                        (f.cause, f.level, f.fsc(), f.trail.len()),
                        (FaultCause::IpaOutOfRange, 0, 0x04, 0),
                        "{what} {ipa:#x}"
                    );
                }
            }
        }
    }
}
