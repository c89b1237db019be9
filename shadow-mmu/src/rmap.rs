//! Reverse map: from L1 IPA ranges to the shadow entries built on them.
//!
//! When L0 changes its own mapping of L1 (a memslot removed, a range
//! write-protected), every shadow entry whose L1 IPA block overlaps the
//! range must go. Entries are kept in one ordered map per shadow block size
//! (4 KiB, 2 MiB, 1 GiB), keyed by L1 IPA block base: the entries of size
//! `z` overlapping `[s, e)` are exactly those with base in
//! `[align_down(s, z), e)`, one range query per size. A second index keyed
//! by (context, L2 IPA base) finds a context's entries for
//! [`ReverseMap::forget_context`] and [`ReverseMap::remove_shadow_range`].
//! Every operation costs O(log n) per entry it finds or changes.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ops::Bound;

use crate::compose::{BLOCK_1G, BLOCK_2M, PAGE_SIZE};

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
#[derive(Debug)]
pub struct ReverseMap<C> {
    /// Per size class: L1 IPA block base -> shadow entries built on it.
    by_l1: [BTreeMap<u64, Vec<(C, u64)>>; 3],
    /// (context, L2 IPA base) -> (L1 IPA base, size class).
    by_shadow: BTreeMap<(C, u64), (u64, usize)>,
}

impl<C: Copy + Ord> Default for ReverseMap<C> {
    fn default() -> Self {
        ReverseMap::new()
    }
}

impl<C: Copy + Ord> ReverseMap<C> {
    /// An empty map.
    pub const fn new() -> Self {
        ReverseMap {
            by_l1: [BTreeMap::new(), BTreeMap::new(), BTreeMap::new()],
            by_shadow: BTreeMap::new(),
        }
    }

    /// Number of shadow entries recorded.
    pub fn len(&self) -> usize {
        self.by_shadow.len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.by_shadow.is_empty()
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
        if let Some(old) = self
            .by_shadow
            .insert((shadow.context, shadow.l2_ipa), (l1_ipa, class))
        {
            self.unlink_l1(old, shadow.context, shadow.l2_ipa);
        }
        self.by_l1[class]
            .entry(l1_ipa)
            .or_default()
            .push((shadow.context, shadow.l2_ipa));
        Ok(())
    }

    /// Removes `(context, l2_ipa)` from the L1-side list it is in.
    fn unlink_l1(&mut self, (l1_ipa, class): (u64, usize), context: C, l2_ipa: u64) {
        if let Some(list) = self.by_l1[class].get_mut(&l1_ipa) {
            list.retain(|&(c, a)| (c, a) != (context, l2_ipa));
            if list.is_empty() {
                self.by_l1[class].remove(&l1_ipa);
            }
        }
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
            let from = l1_ipa_start & !(size - 1);
            let keys: Vec<u64> = self.by_l1[class]
                .range((Bound::Included(from), Bound::Included(last)))
                .map(|(k, _)| *k)
                .collect();
            for key in keys {
                let Some(list) = self.by_l1[class].remove(&key) else {
                    continue;
                };
                for (context, l2_ipa) in list {
                    self.by_shadow.remove(&(context, l2_ipa));
                    count += 1;
                    removed(ShadowRef {
                        context,
                        l2_ipa,
                        size: *size,
                    });
                }
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
        // A block starting up to 1 GiB below the range may reach into it.
        let from = l2_ipa_start.saturating_sub(BLOCK_1G - 1);
        let found: Vec<(u64, (u64, usize))> = self
            .by_shadow
            .range((
                Bound::Included((context, from)),
                Bound::Included((context, last)),
            ))
            .filter(|((_, l2), (_, class))| l2 + (SIZES[*class] - 1) >= l2_ipa_start)
            .map(|((_, l2), v)| (*l2, *v))
            .collect();
        for (l2_ipa, target) in &found {
            self.by_shadow.remove(&(context, *l2_ipa));
            self.unlink_l1(*target, context, *l2_ipa);
        }
        found.len()
    }

    /// Forgets every entry of `context` (recycled: its shadow table was
    /// cleared). Returns how many.
    pub fn forget_context(&mut self, context: C) -> usize {
        let found: Vec<(u64, (u64, usize))> = self
            .by_shadow
            .range((context, 0)..=(context, u64::MAX))
            .map(|((_, l2), v)| (*l2, *v))
            .collect();
        for (l2_ipa, target) in &found {
            self.by_shadow.remove(&(context, *l2_ipa));
            self.unlink_l1(*target, context, *l2_ipa);
        }
        found.len()
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
            for (l1, list) in self.by_l1[class].range(from..=last) {
                out.extend(list.iter().map(|&(context, l2_ipa)| {
                    (
                        *l1,
                        ShadowRef {
                            context,
                            l2_ipa,
                            size: *size,
                        },
                    )
                }));
            }
        }
        out
    }
}
