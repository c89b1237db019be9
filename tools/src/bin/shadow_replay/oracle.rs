//! `--check`: whether an answer that differs from a fresh walk of L1's
//! current tables composed with L0's current map is one a TLB (or a walk
//! cache: a fault can come from a stale table pointer) could still hold.
//!
//! A TLB may keep a translation it read until a TLBI covering it completes
//! (L1's TLBIs for L1's own stage 2; L0's invalidation for L0's map). So a
//! cached answer may differ from the current tables only if some change
//! behind the difference has not been followed by such an invalidation.
//! Where the old and the new walk of an IPA part, the descriptor that
//! differs lies on both walks, so on the current one: the answer is
//! allowed exactly when some descriptor on the current walk was written
//! (by L1, or by a hardware AF/dirty update) and no covering invalidation
//! came after its last write. The tracker applies that conservatively: it
//! never reports an answer as stale that a TLB could hold, and may let
//! through a few it could not:
//! - a TLBI counts as covering an IPA only if its range holds the IPA
//!   (a page TLBI of another page of an L1 block also removes the block's
//!   entry on hardware; the tracker does not count it);
//! - a leaf-only TLBI (IPAS2LE1, RIPAS2LE1) does not cover a write that
//!   put or removed a table descriptor above level 3 (the walk cache may
//!   keep the old table pointer), judged by the level of the address on
//!   the current walk;
//! - any write on the current walk that is not covered allows the answer,
//!   even one made after the entry was already dropped.
//!
//! L0's own map is judged apart (`replay.rs`): its changes are applied
//! together with their invalidation, so every answer must be backed by L0's
//! current map, while L1's part (L2 IPA -> L1 IPA) may be one a TLB still
//! holds (the service keeps L1's walk results across L0's changes, and
//! composes them with L0's new map).
//!
//! - only the last [`MAX_REMEMBERED_INVALIDATIONS`] invalidations are
//!   kept: a forgotten one can only turn a stale report into a note.

use std::collections::{HashMap, VecDeque};

/// How many TLBIs the tracker remembers.
pub const MAX_REMEMBERED_INVALIDATIONS: usize = 1 << 16;

/// Who changed a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// An L1 store (a `write` event).
    L1,
    /// A hardware AF/dirty update by one of the service's walks.
    Hardware,
}

/// The last change of one descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescriptorWrite {
    /// The input line of the last change.
    pub line: u64,
    /// Who made it.
    pub by: Writer,
    /// Some value this descriptor ever held or was given had bits\[1:0\] =
    /// 0b11 (a table descriptor above level 3).
    pub table_bits: bool,
}

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

/// What the checker knows about an answer that differs from the
/// current translation.
#[derive(Clone, Copy, Debug)]
pub struct Observation<'o> {
    /// L1's VMID for the context.
    pub vmid: u16,
    /// The L2 IPA translated.
    pub ipa: u64,
    /// The current walk: (descriptor address, level), root first.
    pub trail: &'o [(u64, i8)],
}

/// The checker's judgement of a differing answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A TLB could hold it: the change at `address` is not yet covered.
    Allowed {
        address: u64,
        level: i8,
        write: DescriptorWrite,
    },
    /// No TLB could hold it.
    Stale { reason: String },
}

/// Descriptor changes and invalidations seen so far.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Last change per descriptor address: at most one entry per word of
    /// the `--mem` files.
    writes: HashMap<u64, DescriptorWrite>,
    invalidations: VecDeque<Invalidation>,
}

const fn table_bits(descriptor: u64) -> bool {
    descriptor & 0b11 == 0b11
}

impl Tracker {
    /// The descriptor at `address` changed from `old` to `new` (decoded
    /// values) on `line`.
    pub fn record_write(&mut self, address: u64, old: u64, new: u64, line: u64, by: Writer) {
        let before = self.writes.get(&address).is_some_and(|w| w.table_bits);
        self.writes.insert(
            address,
            DescriptorWrite {
                line,
                by,
                table_bits: before || table_bits(old) || table_bits(new),
            },
        );
    }

    /// An invalidation was applied; lines must not decrease.
    pub fn record_invalidation(&mut self, invalidation: Invalidation) {
        if self.invalidations.len() == MAX_REMEMBERED_INVALIDATIONS {
            self.invalidations.pop_front();
        }
        self.invalidations.push_back(invalidation);
    }

    /// The first TLBI after `write` that covers the observed translation
    /// through the descriptor at `level`.
    fn covering(&self, write: &DescriptorWrite, level: i8, o: &Observation<'_>) -> Option<u64> {
        self.invalidations
            .iter()
            .rev()
            .take_while(|i| i.line > write.line)
            .filter(|i| {
                i.vmid.is_none_or(|v| v == o.vmid)
                    && i.range
                        .is_none_or(|(start, end)| start <= o.ipa && o.ipa < end)
                    && !(i.leaf_only && write.table_bits && level < 3)
            })
            .last()
            .map(|i| i.line)
    }

    /// Judges an answer whose L1 part (L2 IPA -> L1 IPA block and L1's
    /// attributes) differs from the current walk's.
    pub fn judge(&self, o: &Observation<'_>) -> Verdict {
        let mut covered = None;
        for &(address, level) in o.trail {
            let Some(write) = self.writes.get(&address) else {
                continue;
            };
            match self.covering(write, level, o) {
                None => {
                    return Verdict::Allowed {
                        address,
                        level,
                        write: *write,
                    }
                }
                Some(line) => covered = Some((address, level, write.line, line)),
            }
        }
        let reason = match covered {
            Some((address, level, written, line)) => format!(
                "the level {level} descriptor at {address:#x} on the walk of IPA {:#x} last \
                 changed on line {written}, and line {line} invalidated what it translated \
                 (every other descriptor on the walk is unchanged or covered too): a TLB \
                 cannot still hold the old translation",
                o.ipa
            ),
            None => format!(
                "no descriptor on the walk of IPA {:#x} has changed since the start: the \
                 answer never was its translation",
                o.ipa
            ),
        };
        Verdict::Stale { reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IPA: u64 = 0x20_3000;
    /// A 4-level walk: root, L1, L2 (table descriptors), L3 leaf.
    const TRAIL: [(u64, i8); 4] = [
        (0x4000_0000, 0),
        (0x4000_1000, 1),
        (0x4000_2008, 2),
        (0x4000_3018, 3),
    ];
    const LEAF: u64 = 0x4000_3018;
    const TABLE: u64 = 0x4000_2008;
    fn observe(vmid: u16) -> Observation<'static> {
        Observation {
            vmid,
            ipa: IPA,
            trail: &TRAIL,
        }
    }

    fn page_tlbi(line: u64, vmid: u16, ipa: u64, leaf_only: bool) -> Invalidation {
        Invalidation {
            line,
            vmid: Some(vmid),
            range: Some((ipa & !0xfff, (ipa & !0xfff) + 0x1000)),
            leaf_only,
        }
    }

    fn is_stale(v: &Verdict) -> bool {
        matches!(v, Verdict::Stale { .. })
    }

    /// The bug the checker exists for: L1 rewrote the leaf and issued the
    /// TLBI, yet the answer is still the old one.
    #[test]
    fn a_leaf_change_followed_by_its_tlbi_makes_the_old_answer_stale() {
        let mut t = Tracker::default();
        t.record_write(LEAF, 0x8000_0743, 0x9000_0743, 2, Writer::L1);
        t.record_invalidation(page_tlbi(3, 1, IPA, false));
        let v = t.judge(&observe(1));
        let Verdict::Stale { reason } = &v else {
            panic!("{v:?}")
        };
        assert!(reason.contains("changed on line 2, and line 3"), "{reason}");
        // The leaf-only form covers a leaf change too.
        let mut t = Tracker::default();
        t.record_write(LEAF, 0x8000_0743, 0x9000_0743, 2, Writer::L1);
        t.record_invalidation(page_tlbi(3, 1, IPA, true));
        assert!(is_stale(&t.judge(&observe(1))));
    }

    #[test]
    fn a_change_without_a_covering_tlbi_allows_the_old_answer() {
        let mut t = Tracker::default();
        t.record_write(LEAF, 0x8000_0743, 0x9000_0743, 2, Writer::L1);
        assert_eq!(
            t.judge(&observe(1)),
            Verdict::Allowed {
                address: LEAF,
                level: 3,
                write: DescriptorWrite {
                    line: 2,
                    by: Writer::L1,
                    table_bits: true
                }
            }
        );
        // Each of these misses the IPA or the VMID, or comes before the write.
        for other in [
            page_tlbi(3, 2, IPA, false),
            page_tlbi(3, 1, IPA + 0x1000, false),
            Invalidation {
                line: 3,
                vmid: Some(2),
                range: None,
                leaf_only: false,
            },
        ] {
            let mut t = Tracker::default();
            t.record_write(LEAF, 0x8000_0743, 0x9000_0743, 2, Writer::L1);
            t.record_invalidation(other);
            assert!(!is_stale(&t.judge(&observe(1))), "{other:?}");
        }
        let mut t = Tracker::default();
        t.record_invalidation(page_tlbi(1, 1, IPA, false));
        t.record_write(LEAF, 0x8000_0743, 0x9000_0743, 2, Writer::L1);
        assert!(!is_stale(&t.judge(&observe(1))));
    }

    #[test]
    fn vmid_wide_all_vmid_and_range_tlbis_cover() {
        for tlbi in [
            Invalidation {
                line: 3,
                vmid: Some(1),
                range: None,
                leaf_only: false,
            },
            Invalidation {
                line: 3,
                vmid: None,
                range: None,
                leaf_only: false,
            },
            Invalidation {
                line: 3,
                vmid: Some(1),
                range: Some((0, 1 << 30)),
                leaf_only: true,
            },
        ] {
            let mut t = Tracker::default();
            t.record_write(LEAF, 0x8000_0743, 0x9000_0743, 2, Writer::L1);
            t.record_invalidation(tlbi);
            assert!(is_stale(&t.judge(&observe(1))), "{tlbi:?}");
        }
    }

    /// IPAS2LE1 may leave the walk cache's table pointer: a table
    /// descriptor's change is not covered by it, only by IPAS2E1.
    #[test]
    fn a_leaf_only_tlbi_does_not_cover_a_table_descriptor_change() {
        let mut t = Tracker::default();
        t.record_write(TABLE, 0x4000_3003, 0x4000_7003, 2, Writer::L1);
        t.record_invalidation(page_tlbi(3, 1, IPA, true));
        assert!(matches!(
            t.judge(&observe(1)),
            Verdict::Allowed {
                address: TABLE,
                level: 2,
                ..
            }
        ));
        t.record_invalidation(page_tlbi(4, 1, IPA, false));
        assert!(is_stale(&t.judge(&observe(1))));
    }

    #[test]
    fn a_hardware_update_counts_as_a_change() {
        let mut t = Tracker::default();
        t.record_write(LEAF, 0x8000_0343, 0x8000_0743, 5, Writer::Hardware);
        assert!(matches!(
            t.judge(&observe(1)),
            Verdict::Allowed {
                write: DescriptorWrite {
                    by: Writer::Hardware,
                    line: 5,
                    ..
                },
                ..
            }
        ));
    }

    #[test]
    fn with_nothing_changed_on_the_walk_every_difference_is_stale() {
        let t = Tracker::default();
        let Verdict::Stale { reason } = t.judge(&observe(1)) else {
            panic!()
        };
        assert!(reason.contains("has changed since the start"), "{reason}");
        // A write elsewhere than the walk allows nothing.
        let mut t = Tracker::default();
        t.record_write(0x4000_5000, 0, 1, 2, Writer::L1);
        assert!(is_stale(&t.judge(&observe(1))));
    }

    #[test]
    fn only_the_latest_invalidations_are_remembered() {
        let mut t = Tracker::default();
        t.record_write(LEAF, 0x8000_0743, 0x9000_0743, 2, Writer::L1);
        t.record_invalidation(page_tlbi(3, 1, IPA, false));
        for line in 0..MAX_REMEMBERED_INVALIDATIONS as u64 {
            t.record_invalidation(page_tlbi(4 + line, 2, IPA, false));
        }
        assert_eq!(t.invalidations.len(), MAX_REMEMBERED_INVALIDATIONS);
        // The covering TLBI is forgotten: the answer is (conservatively) allowed.
        assert!(!is_stale(&t.judge(&observe(1))));
    }
}
