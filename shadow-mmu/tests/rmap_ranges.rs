//! The reverse map against a list model (review 13), every size class
//! spread over several L2 block-index chunks (4K: 256 KiB chunks, 2M:
//! 128 MiB, 1G: 64 GiB) up to the top of the 48-bit IPA space, aliased L1
//! blocks, page removals (deferred unlinks past the 64 that may wait),
//! short (<= 16 blocks, deferred) and long (chunk by chunk, past the 64
//! that may wait put on the detached chain) shadow ranges of every class, ranges running to u64::MAX, context
//! flushes and L1 ranges. At the end every slab slot comes back.
#![cfg(not(loom))]

use proptest::prelude::*;
use shadow_mmu::rmap::{ReverseMap, ShadowRef};

const TOP: u64 = 1 << 48;
const SIZES: [u64; 3] = [1 << 12, 1 << 21, 1 << 30];

#[derive(Clone, Debug)]
enum Op {
    Insert { l1: u64, r: ShadowRef<u32> },
    Shadow(u32, u64, u64),
    L1(u64, u64),
    Forget(u32),
}

/// L2 base of block n of class c: near 0 or near the top.
fn l2(c: usize, n: u64, high: bool) -> u64 {
    let size = SIZES[c];
    if high {
        TOP - (n + 1) * size
    } else {
        // Around the first chunk boundary of the class (block 64).
        (n + 32) * size
    }
}

fn arb_op() -> impl Strategy<Value = Op> {
    let insert = (0usize..3, 0u64..160, any::<bool>(), 0u32..2, 0u64..6).prop_map(
        |(c, n, high, ctx, l1n)| {
            let size = SIZES[c];
            Op::Insert {
                l1: (1u64 << 33) + l1n * size,
                r: ShadowRef {
                    context: ctx,
                    l2_ipa: l2(c, n % if c == 2 { 100 } else { 160 }, high),
                    size,
                },
            }
        },
    );
    let shadow = (
        0usize..3,
        0u64..160,
        any::<bool>(),
        0u32..2,
        0u64..200,
        0u8..5,
    )
        .prop_map(|(c, n, high, ctx, blocks, kind)| {
            let size = SIZES[c];
            let start =
                l2(c, n % if c == 2 { 100 } else { 160 }, high) + if kind == 4 { 0x123 } else { 0 };
            let len = match kind {
                0 => size,
                1 => (1 + blocks % 16) * size,
                2 => (17 + blocks) * size,
                3 => u64::MAX - start, // to the top of the address space
                _ => blocks * size + 1,
            };
            Op::Shadow(ctx, start, len.max(1))
        });
    prop_oneof![
        10 => insert,
        6 => shadow,
        1 => (0u64..6, 0u64..4).prop_map(|(a, n)| Op::L1((1u64 << 33) + (a << 12), (n + 1) << 12)),
        1 => (0u64..3, 1u64..3).prop_map(|(a, n)| Op::L1((1u64 << 33) + (a << 30), n << 30)),
        1 => (0u32..2).prop_map(Op::Forget),
    ]
}

fn overlaps(a: u64, alen: u64, b: u64, blen: u64) -> bool {
    a < b.saturating_add(blen) && b < a.saturating_add(alen)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn every_class_over_chunks_and_the_top(ops in prop::collection::vec(arb_op(), 50..400)) {
        let mut map: ReverseMap<u32> = ReverseMap::new();
        let mut model: Vec<(u64, ShadowRef<u32>)> = Vec::new();
        let forgot = ops.iter().any(|o| matches!(o, Op::Forget(_)));
        for op in ops {
            match op {
                Op::Insert { l1, r } => {
                    map.insert(l1, r).unwrap();
                    model.retain(|(_, m)| !(m.context == r.context && m.l2_ipa == r.l2_ipa));
                    model.push((l1, r));
                }
                Op::Shadow(c, start, len) => {
                    let before = model.len();
                    model.retain(|(_, m)| !(m.context == c && overlaps(m.l2_ipa, m.size, start, len)));
                    prop_assert_eq!(map.remove_shadow_range(c, start, len), before - model.len(), "{:#x}+{:#x}", start, len);
                }
                Op::L1(start, len) => {
                    let before = model.len();
                    model.retain(|(l1, m)| !overlaps(*l1, m.size, start, len));
                    prop_assert_eq!(map.remove_range(start, len, |_| {}), before - model.len());
                }
                Op::Forget(c) => {
                    let before = model.len();
                    model.retain(|(_, m)| m.context != c);
                    prop_assert_eq!(map.forget_context(c), before - model.len());
                }
            }
            prop_assert_eq!(map.len(), model.len());
        }
        let mut all: Vec<_> = map.entries_in(0, u64::MAX);
        all.sort();
        model.sort();
        prop_assert_eq!(&all, &model);
        // Everything goes: the slab gets every live and pending slot back
        // (dead ones of forgotten contexts are the sweep's; none without Forget).
        prop_assert_eq!(map.remove_range(0, u64::MAX, |_| {}), model.len());
        prop_assert_eq!(map.len(), 0);
        if !forgot {
            prop_assert_eq!(map.records_held(), 0);
        }
    }
}
