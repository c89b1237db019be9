//! `--check`: what a TLB with walk caches may still hold for an IPA.
//!
//! The model (Arm ARM DDI 0487, D8.15 "Translation Lookaside Buffers",
//! D8.16 "TLB maintenance"): a TLB or walk cache may hold any *valid*
//! translation-table entry that was valid at some moment since the last
//! TLBI covering it (walks, speculative ones included, happen at any
//! time), and never an invalid or faulting one (Translation, Access flag
//! and Address size faults are not cached: L1 needs no TLBI after making
//! an entry valid). So the tracker keeps, per descriptor address, every
//! value it held (the value before its first change, then each change,
//! stamped with the input line), plus the log of TLBIs; `replay.rs`
//! enumerates the walks such entries allow (see [`MAX_CHECKED_WALKS`])
//! and compares each with the answer.
//!
//! Which TLBI covers which entry, for a descriptor at level L of the walk
//! of IPA X under VMID V:
//! - a TLBI covers a *leaf* (block or page) entry when its VMID is V (or
//!   all VMIDs) and its range overlaps the entry's span, the level-L
//!   region holding X (a whole-VMID form overlaps every span); a
//!   leaf-only form (IPAS2LE1, RIPAS2LE1) covers leaves too. So a page
//!   TLBI of another page of an L1 block removes the block's entry: by
//!   address, an invalidation removes every entry that translates the
//!   address, and the block's entry (however a TLB splits it) does;
//! - it covers a *table* (walk-cache) entry when its VMID is V and its
//!   range holds X itself, except that a leaf-only form never does. On
//!   hardware a TLBI of any address the table spans removes the entry,
//!   but a leaf entry built through it earlier outlives it (a TLB entry
//!   has no path): counting only TLBIs of X for tables keeps every path
//!   to such a leaf open. Conservative: every TLBI counted for a table
//!   also covers the leaf below it, so a leaf allowed this way was built
//!   by a walk after the table's last counted TLBI, through values held
//!   since then.
//!
//! Hardware AF/dirty updates are recorded like L1's writes: they are
//! values the descriptor held. They create no new translation by
//! themselves: the walk of an AF=0 leaf with VTCR_EL2.HA gives what the
//! AF=1 leaf gives (the walker sets AF and goes on), and without HA it
//! faults (Access flag), which no TLB holds; a DBM leaf before its dirty
//! update gives the same translation without write permission, which is
//! exactly the permission difference a TLB may show. A write that stores
//! the value already there is no change at all.
//!
//! Bounds (each can only turn a `stale` into `unchecked`, never the other
//! way): the last [`MAX_REMEMBERED_INVALIDATIONS`] TLBIs are kept (a
//! forgotten one counts as never issued, so more is allowed); the last
//! [`MAX_VALUES_PER_DESCRIPTOR`] values per descriptor are kept (a walk
//! that would need an older one is "unchecked"). An ALLE1 covers every
//! entry, so it lets the tracker forget every old value.
//!
//! L0's own map is judged apart (`replay.rs`): its changes are applied
//! together with their invalidation, so every answer must be backed by L0's
//! current map; the walks enumerated here are composed with L0's current
//! map (the service keeps L1's walk results across L0's changes, and
//! composes them with L0's new map).

use std::collections::{HashMap, VecDeque};

/// How many TLBIs the tracker remembers.
pub const MAX_REMEMBERED_INVALIDATIONS: usize = 1 << 16;

/// How many values per descriptor address the tracker remembers.
pub const MAX_VALUES_PER_DESCRIPTOR: usize = 64;

/// How many walks one check may try before it gives up ("unchecked"):
/// each level of a walk may use the current value or any remembered one,
/// so the number of walks is the product of the values per level.
pub const MAX_CHECKED_WALKS: usize = 512;

/// A TLBI applied to the service, in input order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalidation {
    pub line: u64,
    /// `None`: every VMID (ALLE1).
    pub vmid: Option<u16>,
    /// `[start, end)`; `None`: the whole VMID.
    pub range: Option<(u64, u64)>,
    pub leaf_only: bool,
}

/// The kind of cached entry a TLBI is asked to cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A walk-cache entry: a table descriptor above the leaf.
    Table,
    /// A TLB entry: a block or page descriptor.
    Leaf,
}

/// The values one descriptor held, oldest first: (first line it held the
/// value, value). The first value's line is 0 (held from the start).
#[derive(Debug, Default)]
struct History {
    values: VecDeque<(u64, u64)>,
    /// Older values were dropped (more than [`MAX_VALUES_PER_DESCRIPTOR`]).
    truncated: bool,
}

/// The values a descriptor held at some moment after a TLBI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// (first line it held the value, value), oldest first; the last is
    /// the current value.
    pub values: Vec<(u64, u64)>,
    /// `false`: some value held then may have been forgotten.
    pub complete: bool,
}

/// Descriptor values and invalidations seen so far.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Only descriptors that changed: any other holds what it always held.
    histories: HashMap<u64, History>,
    invalidations: VecDeque<Invalidation>,
}

impl Tracker {
    /// The descriptor at `address` changed from `old` to `new` (decoded
    /// values) on `line`, by L1 or by a hardware update.
    pub fn record_write(&mut self, address: u64, old: u64, new: u64, line: u64) {
        let history = self.histories.entry(address).or_insert_with(|| History {
            values: VecDeque::from([(0, old)]),
            truncated: false,
        });
        if history.values.back().is_some_and(|&(_, v)| v == new) {
            return;
        }
        history.values.push_back((line, new));
        if history.values.len() > MAX_VALUES_PER_DESCRIPTOR {
            history.values.pop_front();
            history.truncated = true;
        }
    }

    /// An invalidation was applied; lines must not decrease.
    pub fn record_invalidation(&mut self, invalidation: Invalidation) {
        if invalidation.vmid.is_none() && invalidation.range.is_none() {
            // ALLE1: no entry built before it survives, so no value held
            // before it can be cached; memory holds the rest.
            self.histories.clear();
        }
        if self.invalidations.len() == MAX_REMEMBERED_INVALIDATIONS {
            self.invalidations.pop_front();
        }
        self.invalidations.push_back(invalidation);
    }

    /// The line of the last TLBI under `vmid` covering `entry`s whose
    /// range overlaps `span` (`[start, end)`: a leaf entry's input range,
    /// or one IPA for a table entry, see the module docs); `None` if no
    /// remembered one does (then every value since the start may be
    /// cached).
    pub fn last_covering(&self, vmid: u16, span: (u64, u64), entry: Entry) -> Option<u64> {
        self.invalidations
            .iter()
            .rev()
            .find(|i| {
                i.vmid.is_none_or(|v| v == vmid)
                    && i.range
                        .is_none_or(|(start, end)| start < span.1 && span.0 < end)
                    && !(i.leaf_only && entry == Entry::Table)
            })
            .map(|i| i.line)
    }

    /// The values the descriptor at `address` held at some moment after
    /// line `after` (`None`: since the start). Empty for a descriptor
    /// that never changed (it holds what memory holds).
    pub fn held_after(&self, address: u64, after: Option<u64>) -> Held {
        let Some(history) = self.histories.get(&address) else {
            return Held {
                values: Vec::new(),
                complete: true,
            };
        };
        let after = after.unwrap_or(0);
        let values: Vec<(u64, u64)> = history
            .values
            .iter()
            .enumerate()
            .filter(|&(i, _)| {
                // Held until the next value's line.
                history
                    .values
                    .get(i + 1)
                    .is_none_or(|&(next, _)| next > after)
            })
            .map(|(_, &v)| v)
            .collect();
        // A dropped value was held until the first kept one's line.
        let complete = !history.truncated
            || history
                .values
                .front()
                .is_some_and(|&(first, _)| first <= after);
        Held { values, complete }
    }

    /// How many descriptors have a remembered history.
    #[cfg(test)]
    fn descriptors(&self) -> usize {
        self.histories.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPA: u64 = 0x20_3000;
    const LEAF: u64 = 0x4000_3018;

    fn page_tlbi(line: u64, vmid: u16, ipa: u64, leaf_only: bool) -> Invalidation {
        Invalidation {
            line,
            vmid: Some(vmid),
            range: Some((ipa & !0xfff, (ipa & !0xfff) + 0x1000)),
            leaf_only,
        }
    }

    /// The 4 KiB page holding IPA.
    const PAGE_SPAN: (u64, u64) = (IPA & !0xfff, (IPA & !0xfff) + 0x1000);

    fn values(held: &Held) -> Vec<u64> {
        held.values.iter().map(|&(_, v)| v).collect()
    }

    /// Break-before-make: after "write invalid, TLBI, write new" only the
    /// invalid and the new value were held since the TLBI.
    #[test]
    fn values_held_after_a_tlbi_are_those_from_its_line_on() {
        let mut t = Tracker::default();
        t.record_write(LEAF, 0x8000_0743, 0, 2);
        t.record_invalidation(page_tlbi(3, 1, IPA, false));
        t.record_write(LEAF, 0, 0x9000_0743, 4);
        let covering = t.last_covering(1, PAGE_SPAN, Entry::Leaf);
        assert_eq!(covering, Some(3));
        let held = t.held_after(LEAF, covering);
        assert_eq!(values(&held), vec![0, 0x9000_0743]);
        assert!(held.complete);
        // Without the TLBI, everything since the start.
        assert_eq!(
            values(&t.held_after(LEAF, None)),
            vec![0x8000_0743, 0, 0x9000_0743]
        );
        assert_eq!(t.held_after(LEAF, None).values[1], (2, 0));
        // A descriptor never written has no history: memory holds it.
        assert_eq!(
            t.held_after(0x4000_5000, None),
            Held {
                values: Vec::new(),
                complete: true
            }
        );
    }

    #[test]
    fn a_rewrite_of_the_same_value_is_no_change() {
        let mut t = Tracker::default();
        t.record_write(LEAF, 0x8000_0743, 0x8000_0743, 2);
        t.record_write(LEAF, 0x8000_0743, 0x8000_0743, 3);
        assert_eq!(values(&t.held_after(LEAF, None)), vec![0x8000_0743]);
    }

    #[test]
    fn which_tlbis_cover_tables_and_leaves() {
        let mut t = Tracker::default();
        for other in [
            page_tlbi(1, 2, IPA, false),
            page_tlbi(2, 1, IPA + 0x1000, false),
            Invalidation {
                line: 3,
                vmid: Some(2),
                range: None,
                leaf_only: false,
            },
        ] {
            t.record_invalidation(other);
        }
        assert_eq!(t.last_covering(1, PAGE_SPAN, Entry::Leaf), None);
        t.record_invalidation(page_tlbi(4, 1, IPA, false));
        t.record_invalidation(page_tlbi(5, 1, IPA, true));
        // The leaf-only form covers leaves, not walk-cache entries.
        assert_eq!(t.last_covering(1, PAGE_SPAN, Entry::Leaf), Some(5));
        assert_eq!(t.last_covering(1, PAGE_SPAN, Entry::Table), Some(4));
        t.record_invalidation(Invalidation {
            line: 6,
            vmid: Some(1),
            range: Some((0, 1 << 30)),
            leaf_only: true,
        });
        assert_eq!(t.last_covering(1, PAGE_SPAN, Entry::Leaf), Some(6));
        assert_eq!(t.last_covering(1, PAGE_SPAN, Entry::Table), Some(4));
        t.record_invalidation(Invalidation {
            line: 7,
            vmid: Some(1),
            range: None,
            leaf_only: false,
        });
        assert_eq!(t.last_covering(1, PAGE_SPAN, Entry::Table), Some(7));
        t.record_invalidation(Invalidation {
            line: 8,
            vmid: None,
            range: None,
            leaf_only: false,
        });
        assert_eq!(t.last_covering(1, PAGE_SPAN, Entry::Table), Some(8));
        assert_eq!(t.last_covering(9, PAGE_SPAN, Entry::Leaf), Some(8));
    }

    /// A 2 MiB block's entry (or a level-2 table's walk-cache entry) is
    /// covered by a TLBI of any page it spans, and only by those.
    #[test]
    fn a_tlbi_of_any_page_of_a_block_covers_the_block() {
        let mut t = Tracker::default();
        let block = (IPA & !0x1f_ffff, (IPA & !0x1f_ffff) + 0x20_0000);
        t.record_invalidation(page_tlbi(1, 1, block.1, false));
        t.record_invalidation(page_tlbi(2, 1, block.0 - 0x1000, false));
        assert_eq!(t.last_covering(1, block, Entry::Leaf), None);
        t.record_invalidation(page_tlbi(3, 1, block.1 - 0x1000, false));
        assert_eq!(t.last_covering(1, block, Entry::Leaf), Some(3));
        assert_eq!(t.last_covering(1, block, Entry::Table), Some(3));
        // The page itself is not covered by that TLBI.
        assert_eq!(t.last_covering(1, PAGE_SPAN, Entry::Leaf), None);
        t.record_invalidation(page_tlbi(4, 1, block.0, true));
        assert_eq!(t.last_covering(1, block, Entry::Leaf), Some(4));
        assert_eq!(t.last_covering(1, block, Entry::Table), Some(3));
    }

    #[test]
    fn alle1_forgets_every_old_value() {
        let mut t = Tracker::default();
        t.record_write(LEAF, 1, 3, 2);
        assert_eq!(t.descriptors(), 1);
        t.record_invalidation(Invalidation {
            line: 3,
            vmid: None,
            range: None,
            leaf_only: false,
        });
        assert_eq!(t.descriptors(), 0);
    }

    #[test]
    fn old_values_beyond_the_bound_make_the_history_incomplete() {
        let mut t = Tracker::default();
        for line in 1..=MAX_VALUES_PER_DESCRIPTOR as u64 {
            t.record_write(LEAF, (line - 1) << 12 | 3, line << 12 | 3, line);
        }
        // The value from the start is gone: a question about it is open.
        let held = t.held_after(LEAF, None);
        assert_eq!(held.values.len(), MAX_VALUES_PER_DESCRIPTOR);
        assert!(!held.complete);
        // After line 5 everything held is still known.
        assert!(t.held_after(LEAF, Some(5)).complete);
        assert_eq!(t.held_after(LEAF, Some(5)).values[0], (5, 5 << 12 | 3));
    }

    #[test]
    fn only_the_latest_invalidations_are_remembered() {
        let mut t = Tracker::default();
        t.record_invalidation(page_tlbi(3, 1, IPA, false));
        for line in 0..MAX_REMEMBERED_INVALIDATIONS as u64 {
            t.record_invalidation(page_tlbi(4 + line, 2, IPA, false));
        }
        assert_eq!(t.invalidations.len(), MAX_REMEMBERED_INVALIDATIONS);
        // The covering TLBI is forgotten: every value since the start
        // counts (more allowed, never less).
        assert_eq!(t.last_covering(1, PAGE_SPAN, Entry::Leaf), None);
    }
}
