//! Cold single walks (issue 2, stop 37), shared by `benches/walker.rs`
//! (`walker_cold_single`) and `examples/cold_single.rs`: one walk at a
//! time with the guest's tables out of the CPU caches and everything of
//! the hypervisor's own (memslot arrays, the walker, the path hint, the
//! code) warm, for every row alike.
//!
//! The case a path hint is for: L2 faulting its way through memory, each
//! fault's walk in the same last-level table as the previous one
//! ([`in_region`]), the tables evicted by what the guest ran in between.
//! Before each timed walk, untimed, exactly the lines of that walk's
//! descriptors are flushed ([`line_flush`]: `clflush`, then `mfence`), in
//! the walker's copy of the table memory and in the baseline's alike, so
//! every row takes the same flushes. With every level flushed
//! ([`Cold::AllLevels`]) the plain walk and the KVM-style walk chain four
//! misses; the predicted walk issues its four reads at once. With only the
//! leaf's line flushed ([`Cold::LeafOnly`]: the upper levels still cached
//! from the previous fault's walk) every walk has one miss and nothing to
//! overlap. The hint's cost when wrong, cold: [`across_regions`], the cold
//! table's sequence, whose consecutive walks share nothing below the root
//! (every path-hinted walk falls back to the plain walk).
//!
//! Each walk is timed alone (`Instant::now` on either side, its flush
//! before the first), so a row's time includes the timer's own cost,
//! which [`Row::Floor`] measures in the same run (the same flush, nothing
//! timed but the timer). The TLB is not flushed: on 2 MiB host pages
//! (`bench::host_pages`) a region's walks touch the same few pages.

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use walker::{AccessKind, LeafTranslation, Memslots, PathHint, Stage2Walker};

use crate::line_flush::{flush_line, wait_for_flushes};
use crate::walker_baseline::{ColdTable, KvmStyleMemory};
use crate::walker_fixture::{kvm_slots, walker_for, WalkerMemory, COLD_LEVELS, DECOY_SLOTS};

/// Pages walked in each region of [`in_region`], in a scattered order
/// (the first walk of each region is not predicted, the 63 after it are).
pub const PAGES_PER_REGION: u64 = 64;

/// Pages of a 4 KiB last-level table.
const PAGES_PER_TABLE: u64 = 512;

/// Which of a walk's descriptor lines are flushed before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cold {
    /// All four levels' lines: the tables evicted since the last fault.
    AllLevels,
    /// The leaf's line only: the upper levels still cached.
    LeafOnly,
}

impl Cold {
    pub const fn name(self) -> &'static str {
        match self {
            Cold::AllLevels => "all_levels",
            Cold::LeafOnly => "leaf_only",
        }
    }

    /// The levels (indices into a walk's descriptor words) flushed.
    const fn levels(self) -> std::ops::Range<usize> {
        match self {
            Cold::AllLevels => 0..COLD_LEVELS,
            Cold::LeafOnly => COLD_LEVELS - 1..COLD_LEVELS,
        }
    }
}

/// IPAs to walk one at a time, in order, with where each walk's
/// descriptors lie.
#[derive(Debug)]
pub struct WalkSequence {
    pub name: &'static str,
    pub ipas: Vec<u64>,
    /// Per walk, the index in the table memory's words of the descriptor
    /// it reads at each level, root first (the baseline's copy of the
    /// memory has them at the same offsets, times 8 bytes).
    pub words: Vec<[u32; COLD_LEVELS]>,
}

impl WalkSequence {
    /// `ipas` with each walk's descriptor words, from the plain walk's
    /// trail.
    ///
    /// # Panics
    ///
    /// If an IPA does not walk to a page through `COLD_LEVELS` levels.
    pub fn new(
        name: &'static str,
        ipas: Vec<u64>,
        walker: &Stage2Walker,
        memslots: &Memslots,
        memory: &WalkerMemory,
    ) -> WalkSequence {
        let words = ipas
            .iter()
            .map(|&ipa| {
                let trail = walker
                    .walk(memslots, ipa, AccessKind::Read)
                    .expect("every cold IPA is mapped")
                    .trail;
                let reads = trail.as_slice();
                assert_eq!(reads.len(), COLD_LEVELS, "{ipa:#x}");
                std::array::from_fn(|level| {
                    u32::try_from((reads[level].address - memory.base) / 8)
                        .expect("the slot has < 2^32 words")
                })
            })
            .collect();
        WalkSequence { name, ipas, words }
    }

    pub fn len(&self) -> usize {
        self.ipas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ipas.is_empty()
    }
}

/// `regions` regions of the cold table (the first `regions` of its
/// sequence, any 512 consecutive ones disjoint below the root), in each
/// [`PAGES_PER_REGION`] pages of its last-level table in a scattered
/// order, region after region: every walk but a region's first is in the
/// previous walk's last-level table.
///
/// # Panics
///
/// If the table's sequence has fewer than `regions` IPAs.
pub fn in_region(fixture: &ColdTable, regions: usize) -> Vec<u64> {
    let region_bytes = PAGES_PER_TABLE << 12;
    fixture.ipas[..regions]
        .iter()
        .flat_map(|&ipa| {
            let region = ipa & !(region_bytes - 1);
            (0..PAGES_PER_REGION)
                .map(move |k| region | ((k * 37 + 5) % PAGES_PER_TABLE) << 12 | 0x5a8)
        })
        .collect()
}

/// The first `walks` IPAs of the cold table's sequence: consecutive walks
/// share nothing below the root, so a path hint never predicts one.
pub fn across_regions(fixture: &ColdTable, walks: usize) -> Vec<u64> {
    fixture.ipas[..walks].to_vec()
}

/// A walk's outcome when it faults (no cold walk does).
const FAULTED: u64 = u64::MAX;

/// `work()`'s result and how long it took (`Instant::now` either side,
/// the result materialised before the second, which waits for it).
#[inline(always)]
fn timed<R>(work: impl FnOnce() -> R) -> (Duration, R) {
    let begin = Instant::now();
    let result = black_box(work());
    (begin.elapsed(), result)
}

/// The values `load` gives for a walk's descriptor `words`, each load
/// given the value before (0 for the first), so that its address can
/// wait for it.
#[inline(always)]
fn chained(
    words: &[u32; COLD_LEVELS],
    mut load: impl FnMut(u32, u64) -> u64,
) -> [u64; COLD_LEVELS] {
    let mut values = [0u64; COLD_LEVELS];
    let mut last = 0;
    for (value, &word) in values.iter_mut().zip(words) {
        last = load(word, last);
        *value = last;
    }
    values
}

/// The XOR of a walk's descriptor values.
fn xor(values: impl IntoIterator<Item = u64>) -> u64 {
    values.into_iter().fold(0, |all, value| all ^ value)
}

/// What a cold single-walk row times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Row {
    /// The KVM-style baseline (`bench::walker_baseline`).
    KvmStyle,
    /// `Stage2Walker::walk`.
    Walk,
    /// `Stage2Walker::walk_path_hinted`, the row's hint kept across walks.
    WalkPath,
    /// `Stage2Walker::translate_leaf`.
    Leaf,
    /// `Stage2Walker::translate_leaf_path_hinted`.
    LeafPath,
    /// The walk's four descriptor loads alone, each waiting for the one
    /// before (the memory floor of a plain walk).
    LoadsChained,
    /// The same chained loads from the baseline's copy of the memory (the
    /// two copies are separate allocations: where the host placed each
    /// can make one's misses slower than the other's, which this row
    /// beside `LoadsChained` shows).
    BaselineLoadsChained,
    /// The same four loads issued at once (the floor of a predicted walk).
    LoadsAtOnce,
    /// Nothing: the timer's own cost, after the same flush.
    Floor,
}

impl Row {
    /// What the row gives for a walk of `ipa` whose descriptors XOR to
    /// `descriptors` (what [`ColdSingle::time_walk`] returns beside the
    /// time): the output address for the walks, the XOR of the values
    /// loaded for the loads, the IPA for the floor.
    pub const fn outcome(self, ipa: u64, output_address: u64, descriptors: u64) -> u64 {
        match self {
            Row::LoadsChained | Row::BaselineLoadsChained | Row::LoadsAtOnce => descriptors,
            Row::Floor => ipa,
            _ => output_address,
        }
    }

    pub const ALL: [Row; 9] = [
        Row::KvmStyle,
        Row::Walk,
        Row::WalkPath,
        Row::Leaf,
        Row::LeafPath,
        Row::LoadsChained,
        Row::BaselineLoadsChained,
        Row::LoadsAtOnce,
        Row::Floor,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Row::KvmStyle => "kvm_style",
            Row::Walk => "walk",
            Row::WalkPath => "walk_path",
            Row::Leaf => "leaf",
            Row::LeafPath => "leaf_path",
            Row::LoadsChained => "loads_chained",
            Row::BaselineLoadsChained => "kvm_loads_chained",
            Row::LoadsAtOnce => "loads_at_once",
            Row::Floor => "floor",
        }
    }
}

/// The walkers and memories the rows walk: the walker on its memslots,
/// the baseline on its own copy of the same table memory.
#[derive(Debug)]
pub struct ColdSingle<'a> {
    pub fixture: &'a ColdTable,
    pub walker: &'a Stage2Walker,
    pub memslots: &'a Memslots<'a>,
    pub memory: &'a WalkerMemory,
    pub baseline: &'a KvmStyleMemory<'a>,
}

impl ColdSingle<'_> {
    /// Flushes the `cold` lines of walk `k` of `sequence` from the
    /// walker's memory and the baseline's, and waits for the flushes.
    #[inline]
    pub fn flush(&self, sequence: &WalkSequence, k: usize, cold: Cold) {
        let words = &sequence.words[k];
        for &word in &words[cold.levels()] {
            let word = word as usize;
            flush_line(&self.memory.words[word]);
            flush_line(&self.fixture.memory.bytes[word * 8]);
        }
        wait_for_flushes();
    }

    /// Walk `k` of `sequence` by `row`, its `cold` lines flushed first
    /// (untimed): how long the walk took, timer included, and what it
    /// gave ([`Row::outcome`]). `hint` is the row's, kept across its walks
    /// by the caller.
    // The walks' results carry their descriptor trail by value (no
    // allocator), as the walker returns them.
    #[allow(clippy::result_large_err)]
    #[inline(never)]
    pub fn time_walk(
        &self,
        row: Row,
        sequence: &WalkSequence,
        k: usize,
        cold: Cold,
        hint: &mut PathHint,
    ) -> (Duration, u64) {
        self.flush(sequence, k, cold);
        let ipa = black_box(sequence.ipas[k]);
        let words = &sequence.words[k];
        let load = |word: u32| self.memory.words[word as usize].load(Ordering::Relaxed);
        // The chained rows' addresses wait for the value before through a
        // zero mask the compiler cannot see through.
        let (walker, memslots, read) = (self.walker, self.memslots, AccessKind::Read);
        let (vtcr, vttbr) = (self.fixture.vtcr, self.fixture.vttbr);
        match row {
            Row::KvmStyle => {
                let (time, result) = timed(|| self.baseline.walk(vtcr, vttbr, ipa));
                (time, result.map_or(FAULTED, |t| t.oa))
            }
            Row::Walk => {
                let (time, result) = timed(|| walker.walk(memslots, ipa, read));
                (time, result.map_or(FAULTED, |t| t.output_address))
            }
            Row::WalkPath => {
                let (time, result) = timed(|| walker.walk_path_hinted(memslots, ipa, read, hint));
                (time, result.map_or(FAULTED, |t| t.output_address))
            }
            Row::Leaf => {
                let (time, result) = timed(|| walker.translate_leaf(memslots, ipa, read));
                (time, result.map_or(FAULTED, |t| t.output_address))
            }
            Row::LeafPath => {
                let (time, result) =
                    timed(|| walker.translate_leaf_path_hinted(memslots, ipa, read, hint));
                (time, result.map_or(FAULTED, |t| t.output_address))
            }
            Row::LoadsChained => {
                let zero = black_box(0u64);
                let (time, values) =
                    timed(|| chained(words, |word, last| load(word + (last & zero) as u32)));
                (time, xor(values))
            }
            Row::BaselineLoadsChained => {
                let (zero, bytes) = (black_box(0u64), &self.fixture.memory.bytes);
                let (time, values) = timed(|| {
                    chained(words, |word, last| {
                        let at = word as usize * 8 + (last & zero) as usize;
                        u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
                    })
                });
                (time, xor(values))
            }
            Row::LoadsAtOnce => {
                let (time, values) = timed(|| words.map(load));
                (time, xor(values))
            }
            Row::Floor => timed(|| ipa),
        }
    }

    /// Walks `sequence` with every row as the timed rows do
    /// ([`ColdSingle::time_walk`], a path hint per row kept across the
    /// walks, only the leaf's line flushed) and checks each row's outcome
    /// against the plain walk's; checks the plain walk against the
    /// table's mapping and the baseline, each walk's descriptor words
    /// against its trail, and the whole results of the lean and
    /// path-hinted walks against the plain walk's. Returns how many walks
    /// the hinted rows' path hints predicted (the same for both rows).
    ///
    /// # Panics
    ///
    /// On any difference.
    pub fn check(&self, sequence: &WalkSequence) -> usize {
        let (walker, memslots, read) = (self.walker, self.memslots, AccessKind::Read);
        let mut walk_hint = PathHint::default();
        let mut leaf_hint = PathHint::default();
        let mut row_hints = [PathHint::default(); Row::ALL.len()];
        let mut predicted = 0;
        for (k, &ipa) in sequence.ipas.iter().enumerate() {
            let name = sequence.name;
            let plain = walker.walk(memslots, ipa, read);
            let translation = plain.as_ref().expect("every cold IPA is mapped");
            assert_eq!(
                translation.output_address,
                ColdTable::expected_oa(ipa),
                "{name} {ipa:#x}"
            );
            for (level, read) in translation.trail.as_slice().iter().enumerate() {
                let word = u64::from(sequence.words[k][level]);
                assert_eq!(read.address, self.memory.base + word * 8, "{name} {ipa:#x}");
            }
            let baseline = self
                .baseline
                .walk(self.fixture.vtcr, self.fixture.vttbr, ipa);
            assert_eq!(
                baseline.map(|t| t.oa),
                Ok(translation.output_address),
                "{name} {ipa:#x}"
            );
            let leaf = Ok(LeafTranslation::from(translation));
            assert_eq!(walker.translate_leaf(memslots, ipa, read), leaf, "{name}");
            assert_eq!(
                walker.walk_path_hinted(memslots, ipa, read, &mut walk_hint),
                plain,
                "{name} {ipa:#x}"
            );
            assert_eq!(
                walker.translate_leaf_path_hinted(memslots, ipa, read, &mut leaf_hint),
                leaf,
                "{name} {ipa:#x}"
            );
            let descriptors = xor(translation.trail.as_slice().iter().map(|read| read.value));
            // The timed hinted rows' own hints predict this walk alike.
            let predicts = |row: Row| {
                let hint = &row_hints[Row::ALL.iter().position(|&r| r == row).expect("a row")];
                walker.path_hint_predicts(hint, ipa)
            };
            let predicts_walk = predicts(Row::WalkPath);
            assert_eq!(predicts(Row::LeafPath), predicts_walk, "{name} {ipa:#x}");
            predicted += usize::from(predicts_walk);
            for (row, hint) in Row::ALL.into_iter().zip(&mut row_hints) {
                let (_, outcome) = self.time_walk(row, sequence, k, Cold::LeafOnly, hint);
                let expected = row.outcome(ipa, translation.output_address, descriptors);
                assert_eq!(outcome, expected, "{name} {ipa:#x} {}", row.name());
            }
        }
        predicted
    }
}

/// The rows' walkers and memories on `fixture` (16 memslots, as the other
/// walker rows) and the two sequences, [`in_region`] of `regions` regions
/// and [`across_regions`] of as many walks, checked
/// ([`ColdSingle::check`]), given to `run`.
///
/// # Panics
///
/// If a row's result is not the plain walk's, or the path hint predicts
/// other than every in-region walk but each region's first (which
/// records its path) and no walk across regions.
pub fn with_checked_walks<R>(
    fixture: &ColdTable,
    regions: usize,
    run: impl FnOnce(&ColdSingle, &WalkSequence, &WalkSequence) -> R,
) -> R {
    let memory = WalkerMemory::new(&fixture.memory, DECOY_SLOTS);
    let mut storage = Vec::new();
    let memslots = memory.memslots(&mut storage);
    let walker = walker_for(fixture.vtcr, fixture.vttbr);
    let decoy = vec![0u8; 4096];
    let baseline = kvm_slots(&fixture.memory, &decoy, DECOY_SLOTS);
    let cold = ColdSingle {
        fixture,
        walker: &walker,
        memslots: &memslots,
        memory: &memory,
        baseline: &baseline,
    };
    let ipas = in_region(fixture, regions);
    let hinted = WalkSequence::new("in_region", ipas, &walker, &memslots, &memory);
    let ipas = across_regions(fixture, hinted.len());
    let missed = WalkSequence::new("across_regions", ipas, &walker, &memslots, &memory);
    let per_region = PAGES_PER_REGION as usize;
    assert_eq!(cold.check(&hinted), regions * (per_region - 1));
    assert_eq!(cold.check(&missed), 0);
    run(&cold, &hinted, &missed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walker_baseline::cold_table;

    #[test]
    fn the_hint_predicts_in_region_and_never_across_regions() {
        // 2 paths per level-1 table: 1024 regions.
        let fixture = cold_table(16 << 20, 2, 4096);
        let regions = 16;
        // The predictions are checked inside.
        with_checked_walks(&fixture, regions, |cold, hinted, missed| {
            assert_eq!(hinted.len(), regions * PAGES_PER_REGION as usize);
            assert_eq!(missed.len(), hinted.len());
            // Distinct pages in each region (the scattered order is a
            // permutation), so each walk reads its own leaf entry.
            for region in hinted.ipas.chunks(PAGES_PER_REGION as usize) {
                let pages: std::collections::HashSet<u64> =
                    region.iter().map(|ipa| ipa >> 12).collect();
                assert_eq!(pages.len(), region.len());
            }
            // Every row walks (and flushes) without failing; the times are
            // the machine's, not checked.
            let mut hint = PathHint::default();
            for row in Row::ALL {
                for cold_lines in [Cold::AllLevels, Cold::LeafOnly] {
                    for k in 0..4 {
                        cold.time_walk(row, hinted, k, cold_lines, &mut hint);
                    }
                }
            }
        });
    }
}
