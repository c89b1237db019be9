//! Reverse map: from L1 IPA ranges to the shadow entries built on them.
//!
//! When L0 changes its own mapping of L1 (a memslot removed, a range
//! write-protected), every shadow entry whose L1 IPA block overlaps the
//! range must go. Entries are kept in one ordered map per shadow block size
//! (4 KiB, 2 MiB, 1 GiB), keyed by L1 IPA block base: the entries of size
//! `z` overlapping `[s, e)` are exactly those with base in
//! `[align_down(s, z), e)`, one range query per size. A second index per
//! size, keyed by (context, L2 IPA base), finds a context's entries for
//! [`ReverseMap::forget_context`] and [`ReverseMap::remove_shadow_range`]
//! the same way. Every operation costs O(log n) per size class plus
//! O(log n) per entry it finds or changes, or - when it removes at least
//! an eighth of a size class - one ordered pass over that class, which is
//! still O(entries removed): never a scan dominated by unrelated entries.
//! Records are plain keys in ordered sets (no allocation per record).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use crate::compose::{BLOCK_1G, BLOCK_2M, PAGE_SIZE};

/// Above one in this many of a size class's records, a removal rebuilds
/// the indexes in one pass rather than descending once per record.
const BULK_FRACTION: usize = 8;

/// The shadow block sizes, smallest first.
const SIZES: [u64; 3] = [PAGE_SIZE, BLOCK_2M, BLOCK_1G];

const fn size_class(size: u64) -> Option<usize> {
    match size {
        PAGE_SIZE => Some(0),
        BLOCK_2M => Some(1),
        BLOCK_1G => Some(2),
        _ => None,
    }
}

/// One shadow entry: the context (shadow table) and the L2 IPA block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShadowRef<C> {
    /// The context whose shadow table holds the entry.
    pub context: C,
    /// L2 IPA of the block start.
    pub l2_ipa: u64,
    /// Block size: 4 KiB, 2 MiB or 1 GiB.
    pub size: u64,
}

/// A context identifier usable as a reverse-map key: ordered, with the
/// bounds range queries need.
pub trait ContextId: Copy + Ord {
    /// The smallest value.
    const MIN: Self;
    /// The largest value.
    const MAX: Self;
}

macro_rules! context_id {
    ($($t:ty),*) => {$(
        impl ContextId for $t {
            const MIN: Self = <$t>::MIN;
            const MAX: Self = <$t>::MAX;
        }
    )*};
}
context_id!(u8, u16, u32, u64, usize);

/// Why [`ReverseMap::insert`] refused an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmapError {
    /// The size is not 4 KiB, 2 MiB or 1 GiB.
    UnsupportedSize(u64),
    /// The L1 or L2 IPA base is not aligned to the size.
    Misaligned {
        /// L1 IPA given.
        l1_ipa: u64,
        /// L2 IPA given.
        l2_ipa: u64,
    },
}

/// The reverse map. `C` identifies a context (a shadow table).
///
/// Both indexes are ordered sets of plain keys (no per-record allocation),
/// so dropping many records frees only B-tree nodes.
#[derive(Debug)]
pub struct ReverseMap<C> {
    /// Per size class: (L1 IPA block base, context, L2 IPA base).
    by_l1: [BTreeSet<(u64, C, u64)>; 3],
    /// Per size class: (context, L2 IPA base) -> L1 IPA base.
    by_shadow: [BTreeMap<(C, u64), u64>; 3],
}

impl<C: ContextId> Default for ReverseMap<C> {
    fn default() -> Self {
        ReverseMap::new()
    }
}

impl<C: ContextId> ReverseMap<C> {
    /// An empty map.
    pub const fn new() -> Self {
        ReverseMap {
            by_l1: [BTreeSet::new(), BTreeSet::new(), BTreeSet::new()],
            by_shadow: [BTreeMap::new(), BTreeMap::new(), BTreeMap::new()],
        }
    }

    /// Number of shadow entries recorded.
    pub fn len(&self) -> usize {
        self.by_shadow.iter().map(BTreeMap::len).sum()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.by_shadow.iter().all(BTreeMap::is_empty)
    }

    /// Records that `shadow` (an L2 IPA block of `shadow.size`) translates
    /// through the L1 IPA block at `l1_ipa` of the same size. A previous
    /// record for the same (context, L2 IPA) is replaced: the shadow table
    /// holds one entry there.
    pub fn insert(&mut self, l1_ipa: u64, shadow: ShadowRef<C>) -> Result<(), RmapError> {
        let class = size_class(shadow.size).ok_or(RmapError::UnsupportedSize(shadow.size))?;
        if (l1_ipa | shadow.l2_ipa) & (shadow.size - 1) != 0 {
            return Err(RmapError::Misaligned {
                l1_ipa,
                l2_ipa: shadow.l2_ipa,
            });
        }
        // One shadow entry per (context, L2 IPA base), whatever its size.
        let key = (shadow.context, shadow.l2_ipa);
        for other in (0..SIZES.len()).filter(|c| *c != class) {
            if self.by_shadow[other].is_empty() {
                continue;
            }
            if let Some(old) = self.by_shadow[other].remove(&key) {
                self.by_l1[other].remove(&(old, shadow.context, shadow.l2_ipa));
            }
        }
        if let Some(old) = self.by_shadow[class].insert(key, l1_ipa) {
            self.by_l1[class].remove(&(old, shadow.context, shadow.l2_ipa));
        }
        self.by_l1[class].insert((l1_ipa, shadow.context, shadow.l2_ipa));
        Ok(())
    }

    /// Removes every entry built on an L1 IPA overlapping
    /// `[l1_ipa_start, l1_ipa_start + len)` and hands each to `removed`
    /// (to unmap from its shadow table). Returns how many were removed.
    /// A range running past the top of the address space is taken up to it.
    pub fn remove_range(
        &mut self,
        l1_ipa_start: u64,
        len: u64,
        mut removed: impl FnMut(ShadowRef<C>),
    ) -> usize {
        if len == 0 {
            return 0;
        }
        let last = l1_ipa_start.saturating_add(len - 1);
        let mut count = 0;
        for (class, size) in SIZES.iter().enumerate() {
            if self.by_l1[class].is_empty() {
                continue;
            }
            let from = l1_ipa_start & !(size - 1);
            let found: Vec<(u64, C, u64)> = self.by_l1[class]
                .range((from, C::MIN, 0)..=(last, C::MAX, u64::MAX))
                .copied()
                .collect();
            if found.len().saturating_mul(BULK_FRACTION) >= self.by_l1[class].len() {
                // Most of the class goes: one ordered pass over each index
                // beats a descent per record (and is still O(found)).
                self.by_l1[class].retain(|(l1, _, _)| *l1 < from || *l1 > last);
                self.by_shadow[class].retain(|_, l1| *l1 < from || *l1 > last);
            } else {
                for key in &found {
                    self.by_l1[class].remove(key);
                    self.by_shadow[class].remove(&(key.1, key.2));
                }
            }
            for (_, context, l2_ipa) in found {
                count += 1;
                removed(ShadowRef {
                    context,
                    l2_ipa,
                    size: *size,
                });
            }
        }
        count
    }

    /// Forgets every entry of `context` whose L2 IPA block overlaps
    /// `[l2_ipa_start, l2_ipa_start + len)` (they were removed from its
    /// shadow table by an invalidation or eviction). Returns how many.
    pub fn remove_shadow_range(&mut self, context: C, l2_ipa_start: u64, len: u64) -> usize {
        if len == 0 {
            return 0;
        }
        let last = l2_ipa_start.saturating_add(len - 1);
        let mut count = 0;
        for (class, size) in SIZES.iter().enumerate() {
            let from = l2_ipa_start & !(size - 1);
            count += self.remove_shadow_class(class, context, from, last);
        }
        count
    }

    /// Removes the records of `class` for `context` with L2 IPA base in
    /// `[from, last]`.
    fn remove_shadow_class(&mut self, class: usize, context: C, from: u64, last: u64) -> usize {
        if self.by_shadow[class].is_empty() {
            return 0;
        }
        if last - from < SIZES[class] {
            // One candidate block: remove it directly (one descent each).
            return match self.by_shadow[class].remove(&(context, from)) {
                Some(l1_ipa) => {
                    self.by_l1[class].remove(&(l1_ipa, context, from));
                    1
                }
                None => 0,
            };
        }
        let total = self.by_shadow[class].len();
        let first = self.by_shadow[class].first_key_value().map(|(k, _)| *k);
        let end = self.by_shadow[class].last_key_value().map(|(k, _)| *k);
        if let (Some((c0, a0)), Some((c1, a1))) = (first, end) {
            if c0 == context && c1 == context && a0 >= from && a1 <= last {
                // The class holds only records in scope: drop it whole.
                self.by_shadow[class] = BTreeMap::new();
                self.by_l1[class] = BTreeSet::new();
                return total;
            }
        }
        let found: Vec<(u64, u64)> = self.by_shadow[class]
            .range((context, from)..=(context, last))
            .map(|((_, l2), l1)| (*l2, *l1))
            .collect();
        if found.len().saturating_mul(BULK_FRACTION) >= total {
            let gone = |c: &C, l2: u64| *c == context && l2 >= from && l2 <= last;
            self.by_shadow[class].retain(|(c, l2), _| !gone(c, *l2));
            self.by_l1[class].retain(|(_, c, l2)| !gone(c, *l2));
        } else {
            for (l2_ipa, l1_ipa) in &found {
                self.by_shadow[class].remove(&(context, *l2_ipa));
                self.by_l1[class].remove(&(*l1_ipa, context, *l2_ipa));
            }
        }
        found.len()
    }

    /// Forgets every entry of `context` (recycled: its shadow table was
    /// cleared). Returns how many.
    pub fn forget_context(&mut self, context: C) -> usize {
        (0..SIZES.len())
            .map(|class| self.remove_shadow_class(class, context, 0, u64::MAX))
            .sum()
    }

    /// The entries built on an L1 IPA overlapping the range, without
    /// removing them.
    pub fn entries_in(&self, l1_ipa_start: u64, len: u64) -> Vec<(u64, ShadowRef<C>)> {
        let mut out = Vec::new();
        if len == 0 {
            return out;
        }
        let last = l1_ipa_start.saturating_add(len - 1);
        for (class, size) in SIZES.iter().enumerate() {
            let from = l1_ipa_start & !(size - 1);
            out.extend(
                self.by_l1[class]
                    .range((from, C::MIN, 0)..=(last, C::MAX, u64::MAX))
                    .map(|&(l1, context, l2_ipa)| {
                        (
                            l1,
                            ShadowRef {
                                context,
                                l2_ipa,
                                size: *size,
                            },
                        )
                    }),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use alloc::vec;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn r(context: u32, l2_ipa: u64, size: u64) -> ShadowRef<u32> {
        ShadowRef {
            context,
            l2_ipa,
            size,
        }
    }

    #[test]
    fn finds_exactly_the_overlapping_entries_of_every_size() {
        let mut map = ReverseMap::new();
        map.insert(0x4000_0000, r(1, 0xc000_0000, BLOCK_1G))
            .unwrap();
        map.insert(0x8020_0000, r(1, 0x20_0000, BLOCK_2M)).unwrap();
        map.insert(0x8040_1000, r(2, 0x5000, PAGE_SIZE)).unwrap();
        map.insert(0x8040_1000, r(3, 0x5000, PAGE_SIZE)).unwrap(); // aliased L1 page
        map.insert(0x8040_2000, r(2, 0x6000, PAGE_SIZE)).unwrap();
        assert_eq!(map.len(), 5);
        // One page inside the 1 GiB block only.
        let mut got = vec![];
        assert_eq!(map.remove_range(0x7fff_f000, 0x1000, |s| got.push(s)), 1);
        assert_eq!(got, vec![r(1, 0xc000_0000, BLOCK_1G)]);
        // The last byte of the 2 MiB block and the first of the next page.
        got.clear();
        let n = map.remove_range(0x803f_ffff, 0x2001, |s| got.push(s));
        assert_eq!(n, 3);
        got.sort();
        assert_eq!(
            got,
            vec![
                r(1, 0x20_0000, BLOCK_2M),
                r(2, 0x5000, PAGE_SIZE),
                r(3, 0x5000, PAGE_SIZE)
            ]
        );
        assert_eq!(
            map.entries_in(0, u64::MAX),
            vec![(0x8040_2000, r(2, 0x6000, PAGE_SIZE))]
        );
        assert_eq!(
            map.remove_range(0x8040_3000, 0x1000, |_| panic!("nothing there")),
            0
        );
        assert_eq!(
            map.remove_range(0x8040_2000, 0, |_| panic!("empty range")),
            0
        );
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn bad_entries_are_refused() {
        let mut map = ReverseMap::new();
        assert_eq!(
            map.insert(0, r(0, 0, 1 << 16)),
            Err(RmapError::UnsupportedSize(1 << 16))
        );
        assert_eq!(
            map.insert(0x1000, r(0, 0, BLOCK_2M)),
            Err(RmapError::Misaligned {
                l1_ipa: 0x1000,
                l2_ipa: 0
            })
        );
        assert!(map.is_empty());
    }

    #[test]
    fn reinserting_a_shadow_entry_replaces_its_l1_link() {
        let mut map = ReverseMap::new();
        map.insert(0x1000, r(7, 0x9000, PAGE_SIZE)).unwrap();
        map.insert(0x2000, r(7, 0x9000, PAGE_SIZE)).unwrap();
        assert_eq!(map.len(), 1);
        assert_eq!(
            map.remove_range(0x1000, 0x1000, |_| panic!("stale link")),
            0
        );
        assert_eq!(map.remove_range(0x2000, 0x1000, |_| {}), 1);
    }

    #[test]
    fn forgetting_a_context_and_shadow_ranges() {
        let mut map = ReverseMap::new();
        for i in 0..100u64 {
            map.insert(i << 12, r((i % 3) as u32, i << 12, PAGE_SIZE))
                .unwrap();
        }
        map.insert(0x4000_0000, r(1, 0x4000_0000, BLOCK_1G))
            .unwrap();
        assert_eq!(map.forget_context(0), 34);
        assert_eq!(map.forget_context(0), 0);
        // Context 1: pages 1, 4, ..., 97 and the block; [0x3000, 0x7000)
        // holds pages 4 (0x4000) only; a range inside the block finds it.
        assert_eq!(map.remove_shadow_range(1, 0x3000, 0x4000), 1);
        assert_eq!(map.remove_shadow_range(1, 0x7fff_0000, 1), 1);
        assert_eq!(map.remove_shadow_range(1, 0, 0), 0);
        assert_eq!(map.len(), 100 - 34 - 1);
        assert!(map
            .entries_in(0, u64::MAX)
            .iter()
            .all(|(_, s)| s.context != 0));
        let top = !(PAGE_SIZE - 1);
        map.insert(top, r(9, top, PAGE_SIZE)).unwrap();
        assert_eq!(map.forget_context(9), 1);
        assert_eq!(map.remove_range(top, u64::MAX, |_| panic!("forgotten")), 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, ShadowRef<u32>),
        RemoveRange(u64, u64),
        RemoveShadow(u32, u64, u64),
        Forget(u32),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        let sized = (0usize..3, 0u64..(1 << 34), 0u64..(1 << 34), 0u32..4).prop_map(
            |(class, l1, l2, c)| {
                let size = SIZES[class];
                Op::Insert(l1 & !(size - 1), r(c, l2 & !(size - 1), size))
            },
        );
        prop_oneof![
            6 => sized,
            2 => (0u64..(1 << 34), 1u64..(1 << 31)).prop_map(|(s, l)| Op::RemoveRange(s, l)),
            1 => (0u32..4, 0u64..(1 << 34), 1u64..(1 << 31)).prop_map(|(c, s, l)| Op::RemoveShadow(c, s, l)),
            1 => (0u32..4).prop_map(Op::Forget),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Against a list model: every removal returns exactly the
        /// overlapping records.
        #[test]
        fn matches_a_linear_model(ops in prop::collection::vec(arb_op(), 1..80)) {
            let mut map = ReverseMap::new();
            let mut model: Vec<(u64, ShadowRef<u32>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(l1, s) => {
                        map.insert(l1, s).unwrap();
                        model.retain(|(_, m)| (m.context, m.l2_ipa) != (s.context, s.l2_ipa));
                        model.push((l1, s));
                    }
                    Op::RemoveRange(start, len) => {
                        let mut got = BTreeSet::new();
                        let n = map.remove_range(start, len, |s| { got.insert(s); });
                        let want: BTreeSet<_> = model.iter().filter(|(l1, m)| *l1 < start + len && l1 + m.size > start).map(|(_, m)| *m).collect();
                        model.retain(|(_, m)| !want.contains(m));
                        prop_assert_eq!(n, want.len());
                        prop_assert_eq!(got, want);
                    }
                    Op::RemoveShadow(c, start, len) => {
                        let before = model.len();
                        model.retain(|(_, m)| !(m.context == c && m.l2_ipa < start + len && m.l2_ipa + m.size > start));
                        prop_assert_eq!(map.remove_shadow_range(c, start, len), before - model.len());
                    }
                    Op::Forget(c) => {
                        let before = model.len();
                        model.retain(|(_, m)| m.context != c);
                        prop_assert_eq!(map.forget_context(c), before - model.len());
                    }
                }
                prop_assert_eq!(map.len(), model.len());
            }
            let mut all = map.entries_in(0, u64::MAX);
            all.sort();
            model.sort();
            prop_assert_eq!(all, model);
        }
    }
}
