//! Review 18: the L1 lists' structure after every operation, and the
//! tail walk of L1-range removals with the map changed between batches.
//!
//! `check_lists` recomputes every list from the slab (each occupied slot
//! is a record on exactly one (class, L1 block): the one its `by_shadow`
//! entry names, or its pending unlink's) and checks the list as linked:
//! `next` from the head visits exactly those records, newest first
//! (insert counts strictly decreasing), ending in NIL; every record's
//! `prev` is the one before it, and the head's `prev` is the tail. A stale
//! `prev` anywhere fails here at once, whether or not a later removal
//! would have stepped on it.

extern crate std;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use arrayvec::ArrayVec;
use proptest::prelude::*;

use super::*;

/// Records a batch removes at most: small, so removals stop inside lists.
const BATCH: usize = 3;

fn r(context: u32, l2_ipa: u64, size: u64) -> ShadowRef<u32> {
    ShadowRef {
        context,
        l2_ipa,
        size,
    }
}

/// Checks the detached chain: from its head, through each record's older
/// link, it visits exactly the chained records of the slab, once each,
/// each one's newer link naming the record before it (NIL at the head).
fn check_chain(map: &ReverseMap<u32>) -> Result<(), String> {
    let in_slab = map
        .records
        .iter()
        .filter(|r| r.is_some_and(|r| r.chained().is_some()))
        .count();
    if in_slab != map.chained {
        return Err(format!(
            "{in_slab} chained records in the slab, {} counted",
            map.chained
        ));
    }
    let (mut id, mut newer_expected, mut walked) = (map.chain_head, NIL, 0);
    while id != NIL {
        if walked >= in_slab {
            return Err(format!("the chain is longer than its {in_slab} records"));
        }
        let Some((_, _, older, newer)) = map
            .records
            .get(id as usize)
            .copied()
            .flatten()
            .and_then(|r| r.chained())
        else {
            return Err(format!("the chain reaches slot {id}, not chained"));
        };
        if newer != newer_expected {
            return Err(format!(
                "chained {id}: newer link {newer}, not {newer_expected}"
            ));
        }
        walked += 1;
        newer_expected = id;
        id = older;
    }
    if walked != in_slab {
        return Err(format!("the chain visits {walked} of {in_slab} records"));
    }
    Ok(())
}

/// Checks the killed chunks (stop 31) against `by_shadow`, the L2 block
/// index and the slab: the table's index and list agree; a record in
/// `by_shadow` has its L2 block bit exactly when no kill covers it (its
/// chunk's kill stamped at or after its insert); each kill's `left` is the
/// number of records it covers, all at blocks set in `unvisited`, and
/// `records` their sum; no bit is set without its record; and each
/// context's `stale_bits` counts the bits of its records of earlier epochs.
fn check_kills(map: &ReverseMap<u32>) -> Result<(), String> {
    let kills = &map.kills;
    if kills.index.len() != kills.list.len()
        || kills.list.len() > kills.limit.min(KILLED_CHUNKS)
        || kills.list.capacity() != KILLED_CHUNKS
    {
        return Err(format!(
            "kill table: {} keys, {} kills, room for {}",
            kills.index.len(),
            kills.list.len(),
            kills.list.capacity()
        ));
    }
    for (pos, (key, kill)) in kills.list.iter().enumerate() {
        if kills.index.get(key) != Some(&(pos as u32)) {
            return Err(format!(
                "kill {key:?} at {pos}, indexed {:?}",
                kills.index.get(key)
            ));
        }
        if kill.left == 0 || kill.unvisited == 0 {
            return Err(format!("kill {key:?} kept with nothing left: {kill:?}"));
        }
    }
    let sum: usize = kills.list.iter().map(|(_, k)| k.left as usize).sum();
    if sum != kills.records {
        return Err(format!("{sum} killed records, {} counted", kills.records));
    }
    let mut covered = alloc::vec![0u32; kills.list.len()];
    let mut stale: BTreeMap<u32, u32> = BTreeMap::new();
    let mut bits = 0;
    for (key, meta) in map.by_shadow.iter() {
        let Some(record) = map.records.get(meta.id as usize).copied().flatten() else {
            return Err(format!("{key:?} names empty slot {}", meta.id));
        };
        let size_log2 = SIZES_LOG2[usize::from(meta.class)];
        let kill_key = KillKey::of(key.context, meta.class, key.l2);
        let kill = kills
            .index
            .get(&kill_key)
            .map(|&pos| pos as usize)
            .filter(|&pos| record.inserted <= kills.list[pos].1.stamp);
        let has_bit = map
            .l2_blocks
            .contains((key.context, meta.class), key.l2, size_log2);
        match (kill, has_bit) {
            (Some(pos), false) => {
                let block = (key.l2 >> size_log2) % CHUNK_BLOCKS as u64;
                if kills.list[pos].1.unvisited & (1 << block) == 0 {
                    return Err(format!("killed {key:?} at a visited block"));
                }
                covered[pos] += 1;
            }
            (None, true) => {
                bits += 1;
                if meta.epoch != map.epoch(key.context) {
                    *stale.entry(key.context).or_default() += 1;
                }
            }
            other => return Err(format!("{key:?} (kill, bit): {other:?}")),
        }
    }
    if bits != map.l2_blocks.len() {
        return Err(format!(
            "{} L2 block bits, {bits} of unkilled records",
            map.l2_blocks.len()
        ));
    }
    for (pos, (key, kill)) in kills.list.iter().enumerate() {
        if covered[pos] != kill.left {
            return Err(format!(
                "kill {key:?}: left {} but it covers {}",
                kill.left, covered[pos]
            ));
        }
    }
    for (key, incarnation) in map.contexts.iter() {
        let context = key.context;
        let want = stale.get(&context).copied().unwrap_or(0);
        if incarnation.stale_bits != want {
            return Err(format!(
                "context {context}: stale_bits {} but {want} stale bits",
                incarnation.stale_bits
            ));
        }
    }
    Ok(())
}

/// Checks every L1 list against the slab (see the module doc), and the
/// killed chunks ([`check_kills`]).
pub(super) fn check_lists(map: &ReverseMap<u32>) -> Result<(), String> {
    check_kills(map)?;
    // (class, L1 block) -> the slab ids on it, from the slab itself.
    let mut lists: BTreeMap<(u8, u64), Vec<u32>> = BTreeMap::new();
    for (slot, record) in map.records.iter().enumerate() {
        let id = slot as u32;
        let Some(record) = record else { continue };
        let key = ShadowKey {
            l2: record.l2,
            context: record.context,
        };
        let attached = map
            .by_shadow
            .get(&key)
            .filter(|m| m.id == id)
            .map(|m| (m.class, m.l1));
        let pending = map
            .pending
            .iter()
            .find(|(p, _, _)| *p == id)
            .map(|&(_, class, l1)| (class, l1));
        let chained = record.chained().map(|(class, l1, _, _)| (class, l1));
        let block = match (attached, pending, chained) {
            (Some(b), None, None) | (None, Some(b), None) | (None, None, Some(b)) => b,
            other => return Err(format!("slot {id} is attached/pending/chained: {other:?}")),
        };
        lists.entry(block).or_default().push(id);
    }
    check_chain(map)?;
    for &id in &map.free {
        if map.records[id as usize].is_some() {
            return Err(format!("free slot {id} holds a record"));
        }
    }
    if map.l1_lists.len() != lists.len() {
        return Err(format!(
            "{} L1 lists, {} blocks with records",
            map.l1_lists.len(),
            lists.len()
        ));
    }
    for (&(class, l1), ids) in &lists {
        let Some(list) = map.l1_lists.get(&L1Key { l1, class }) else {
            return Err(format!("no list for class {class} block {l1:#x}"));
        };
        if list.len as usize != ids.len() {
            return Err(format!(
                "list {class}/{l1:#x}: len {} but {} records",
                list.len,
                ids.len()
            ));
        }
        if !map
            .l1_blocks
            .contains(class, l1, SIZES_LOG2[usize::from(class)])
        {
            return Err(format!("block {class}/{l1:#x} not in the L1 block index"));
        }
        // Forward, from the head.
        let mut walked = Vec::new();
        let mut id = list.head;
        while id != NIL {
            if walked.len() > ids.len() {
                return Err(format!("list {class}/{l1:#x}: cycle through next"));
            }
            let Some(record) = map.records.get(id as usize).copied().flatten() else {
                return Err(format!(
                    "list {class}/{l1:#x}: next reaches empty slot {id}"
                ));
            };
            walked.push((id, record));
            id = record.next;
        }
        let mut sorted_walked: Vec<u32> = walked.iter().map(|(id, _)| *id).collect();
        sorted_walked.sort_unstable();
        let mut want = ids.clone();
        want.sort_unstable();
        if sorted_walked != want {
            return Err(format!(
                "list {class}/{l1:#x}: next visits {sorted_walked:?}, slab has {want:?}"
            ));
        }
        for pair in walked.windows(2) {
            let ((newer_id, newer), (older_id, older)) = (pair[0], pair[1]);
            if newer.inserted <= older.inserted {
                return Err(format!(
                    "list {class}/{l1:#x}: {newer_id} (insert {}) before {older_id} (insert {})",
                    newer.inserted, older.inserted
                ));
            }
            if older.prev != newer_id {
                return Err(format!(
                    "list {class}/{l1:#x}: {older_id}.prev is {} not {newer_id}",
                    older.prev
                ));
            }
        }
        let (head_id, head) = walked[0];
        let tail_id = walked[walked.len() - 1].0;
        if head.prev != tail_id {
            return Err(format!(
                "list {class}/{l1:#x}: head {head_id}.prev is {} not the tail {tail_id}",
                head.prev
            ));
        }
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Step {
    Insert(u64, ShadowRef<u32>),
    RemoveShadow(u32, u64, u64),
    Forget(u32),
    /// Starts an L1-range removal (when none is under way) or runs its
    /// next batch.
    Batch(u64, u64),
    /// A whole L1-range removal at once (when none is under way).
    RemoveRange(u64, u64),
    /// Page TLBIs of one context over `count` pages from an L2 IPA, one
    /// by one (past 64 records, detached ones go on the detached chain).
    PageTlbis(u32, u64, u64),
    /// Short range TLBIs of one context, each of `pages` pages (up to 16),
    /// from an L2 IPA on, their removals left for later as the service
    /// leaves a short range's (`remove_shadow_pages_later`).
    ShortRangesLater(u32, u64, u64, usize),
    /// Inserts of one context's L2 pages 0..`count`, page i onto L1 page
    /// (`first` + i) mod 96 (dense steps' L1 pages): enough live records
    /// of one context at once that its long shadow ranges and page-TLBI
    /// bursts detach more than the 64 that wait in `pending`, so the rest
    /// go on the detached chain. Checked as that many `Insert`s.
    Fill(u32, u64, u64),
}

/// `step` as the steps [`run_in`] checks one by one (a `Fill` as its
/// inserts).
fn expand(step: Step) -> Vec<Step> {
    match step {
        Step::Fill(c, first, count) => (0..count)
            .map(|i| {
                Step::Insert(
                    0x4000_0000 + (((first + i) % 96) << 12),
                    r(c, i << 12, PAGE_SIZE),
                )
            })
            .collect(),
        step => alloc::vec![step],
    }
}

/// Few L1 pages and blocks (long aliasing lists), few L2 keys (frequent
/// replacements, identical re-installs and same-key moves between L1
/// blocks), three contexts (forgotten and reused).
fn arb_step() -> impl Strategy<Value = Step> {
    let page = (0u64..6, 0u64..48, 0u32..3)
        .prop_map(|(l1, l2, c)| Step::Insert(0x4000_0000 + (l1 << 12), r(c, l2 << 12, PAGE_SIZE)));
    let block = (0u64..2, 0u64..3, 0u32..3).prop_map(|(l1, l2, c)| {
        Step::Insert(
            0x4000_0000 + l1 * BLOCK_2M,
            r(c, 0x1000_0000 + l2 * BLOCK_2M, BLOCK_2M),
        )
    });
    let shadow_page =
        (0u32..3, 0u64..48).prop_map(|(c, p)| Step::RemoveShadow(c, p << 12, 1 << 12));
    let shadow_range =
        (0u32..3, 0u64..48, 1u64..48).prop_map(|(c, p, n)| Step::RemoveShadow(c, p << 12, n << 12));
    let l1_range = (0u64..8, 1u64..8).prop_map(|(p, n)| (0x4000_0000 + (p << 12), n << 12));
    prop_oneof![
        10 => page,
        1 => block,
        3 => shadow_page,
        1 => shadow_range,
        1 => (0u32..3).prop_map(Step::Forget),
        6 => l1_range.clone().prop_map(|(s, l)| Step::Batch(s, l)),
        1 => (0u64..2).prop_map(|b| Step::Batch(0x4000_0000 + b * BLOCK_2M, BLOCK_2M)),
        1 => l1_range.prop_map(|(s, l)| Step::RemoveRange(s, l)),
    ]
}

/// Records pile up (hundreds live, one context's removed by a range at
/// once): mostly page inserts on 96 L1 pages, page TLBIs, one-page L1
/// removals in batches, and now and then a long shadow range.
fn arb_dense_step() -> impl Strategy<Value = Step> {
    let page = (0u64..96, 0u64..256, 0u32..2)
        .prop_map(|(l1, l2, c)| Step::Insert(0x4000_0000 + (l1 << 12), r(c, l2 << 12, PAGE_SIZE)));
    prop_oneof![
        24 => page,
        8 => (0u32..2, 0u64..256).prop_map(|(c, p)| Step::RemoveShadow(c, p << 12, 1 << 12)),
        2 => (0u32..2, 0u64..256, 64u64..256)
            .prop_map(|(c, p, n)| Step::RemoveShadow(c, p << 12, n << 12)),
        // Whole L2 block-index chunks (64 pages each): killed at once
        // (stop 31), unless the context holds stale bits or the table is
        // full.
        2 => (0u32..2, 0u64..4, 1u64..5)
            .prop_map(|(c, k, n)| Step::RemoveShadow(c, k << 18, n << 18)),
        4 => (0u64..96).prop_map(|p| Step::Batch(0x4000_0000 + (p << 12), 1 << 12)),
        1 => (0u32..2).prop_map(|c| Step::PageTlbis(c, 0, 256)),
        2 => (0u32..2, 0u64..256, 1u64..20, 2usize..=16)
            .prop_map(|(c, p, ranges, pages)| Step::ShortRangesLater(c, p << 12, ranges, pages)),
        1 => (0u32..2, 0u64..96, 96u64..256).prop_map(|(c, l1, n)| Step::Fill(c, l1, n)),
        // The same keys onto the same L1 pages as a `Fill` from 0: killed
        // records (and dead ones) live again in place, or are replaced
        // where newer records sit before them on their lists.
        1 => (0u32..2, 96u64..256).prop_map(|(c, n)| Step::Fill(c, 0, n)),
    ]
}

/// A model record: (L1 block, shadow entry, present when the current
/// L1-range removal began).
type ModelRecord = (u64, ShadowRef<u32>, bool);

fn overlaps(l1: u64, size: u64, start: u64, len: u64) -> bool {
    l1 < start + len && l1 + size > start
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    run_in(ReverseMap::<u32>::new(), steps)
}

/// [`run`] on `map`, which may be bounded ([`ReverseMap::with_capacity`]):
/// then an insert may be refused, but only when nothing detached was left
/// to take back (no pending unlink, no chained record: an insert unlinks
/// two of each first, so a slab full of them always has a slot for it)
/// and no key of its own to replace, and never does any index grow.
fn run_in(mut map: ReverseMap<u32>, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut model: Vec<ModelRecord> = Vec::new();
    // The removal under way: its cursor and range.
    let mut removal: Option<(L1RangeCursor, u64, u64)> = None;
    for step in steps.into_iter().flat_map(expand) {
        match step {
            Step::Fill(..) => unreachable!("expanded"),
            Step::Insert(l1, s) => {
                // Settles the page removals left for later (which may
                // detach records) before the counts are read.
                map.records_held();
                let detached = (map.pending.len(), map.chained, map.kills.records);
                if let Err(e) = map.insert(l1, s) {
                    prop_assert_eq!(e, RmapError::Full);
                    prop_assert_eq!(
                        detached,
                        (0, 0, 0),
                        "a full slab refused an insert with records to take back"
                    );
                    prop_assert!(
                        !model
                            .iter()
                            .any(|(_, m, _)| (m.context, m.l2_ipa) == (s.context, s.l2_ipa)),
                        "refused an insert whose key held a slot"
                    );
                    prop_assert_eq!(map.records_held(), map.capacity());
                    prop_assert_eq!(map.growths(), 0);
                    check_lists(&map).map_err(TestCaseError::fail)?;
                    continue;
                }
                let same = model
                    .iter()
                    .position(|(_, m, _)| (m.context, m.l2_ipa) == (s.context, s.l2_ipa));
                match same {
                    // An identical re-install keeps the record (and its
                    // insert count: still "present at the start").
                    Some(at) if model[at].0 == l1 && model[at].1.size == s.size => {}
                    Some(at) => {
                        model.swap_remove(at);
                        model.push((l1, s, false));
                    }
                    None => model.push((l1, s, false)),
                }
            }
            Step::RemoveShadow(c, from, n) => {
                let before = model.len();
                model.retain(|(_, m, _)| {
                    !(m.context == c && m.l2_ipa < from + n && m.l2_ipa + m.size > from)
                });
                prop_assert_eq!(map.remove_shadow_range(c, from, n), before - model.len());
            }
            Step::Forget(c) => {
                let before = model.len();
                model.retain(|(_, m, _)| m.context != c);
                prop_assert_eq!(map.forget_context(c), before - model.len());
            }
            Step::PageTlbis(c, from, count) => {
                for page in 0..count {
                    let l2 = from + (page << 12);
                    let before = model.len();
                    model.retain(|(_, m, _)| {
                        !(m.context == c && m.l2_ipa <= l2 && l2 < m.l2_ipa + m.size)
                    });
                    // Every other one left for the map's next use, as
                    // the service leaves a page TLBI's.
                    if page % 2 == 1 {
                        map.remove_shadow_page_later(c, l2);
                        continue;
                    }
                    prop_assert_eq!(
                        map.remove_shadow_range(c, l2, 1 << 12),
                        before - model.len()
                    );
                }
            }
            Step::ShortRangesLater(c, from, ranges, pages) => {
                for range in 0..ranges {
                    let start = from + ((range * pages as u64) << 12);
                    let end = start + ((pages as u64) << 12);
                    model.retain(|(_, m, _)| {
                        !(m.context == c && m.l2_ipa < end && start < m.l2_ipa + m.size)
                    });
                    map.remove_shadow_pages_later(c, start, pages);
                }
            }
            Step::RemoveRange(start, len) => {
                if removal.is_some() {
                    continue;
                }
                let mut got = Vec::new();
                map.remove_range(start, len, |s| got.push(s));
                got.sort();
                let mut want: Vec<_> = model
                    .iter()
                    .filter(|(l1, m, _)| overlaps(*l1, m.size, start, len))
                    .map(|(_, m, _)| *m)
                    .collect();
                want.sort();
                model.retain(|(l1, m, _)| !overlaps(*l1, m.size, start, len));
                prop_assert_eq!(got, want);
            }
            Step::Batch(start, len) => {
                let (mut cursor, start, len) = match removal.take() {
                    Some(under_way) => under_way,
                    None => {
                        for m in &mut model {
                            m.2 = true;
                        }
                        (L1RangeCursor::new(start, len), start, len)
                    }
                };
                let mut batch = ArrayVec::<ShadowRef<u32>, BATCH>::new();
                // The lists the batch may walk: those of the range's L1
                // blocks (a batch inserts none, so none appears during it).
                let lists_in_range: usize = SIZES_LOG2
                    .iter()
                    .enumerate()
                    .map(|(class, &size_log2)| {
                        map.l1_blocks
                            .overlapping(class as u8, size_log2, start, start + len - 1)
                            .len()
                    })
                    .sum();
                let visited = map.l1_records_visited();
                let more = map.remove_range_batch(&mut cursor, &mut batch);
                // R17-2: a batch reads its room's records (chained ones
                // count: each is unlinked as it is read), plus at most the
                // one newer record that stops each list it walks.
                prop_assert!(
                    map.l1_records_visited() - visited <= (BATCH + lists_in_range) as u64,
                    "one batch visited {} records, {} lists in its range",
                    map.l1_records_visited() - visited,
                    lists_in_range
                );
                for s in batch {
                    let at = model.iter().position(|(_, m, _)| *m == s);
                    prop_assert!(at.is_some(), "{:?} reported but not live", s);
                    let (l1, _, old) = model.swap_remove(at.unwrap());
                    prop_assert!(overlaps(l1, s.size, start, len), "{:?} outside", s);
                    prop_assert!(old, "{:?} inserted after the removal began", s);
                }
                if more {
                    removal = Some((cursor, start, len));
                } else {
                    prop_assert!(cursor.is_done());
                    for (l1, m, old) in &model {
                        prop_assert!(
                            !(*old && overlaps(*l1, m.size, start, len)),
                            "missed {:?} on {:#x}",
                            m,
                            l1
                        );
                    }
                }
            }
        }
        if let Err(e) = check_lists(&map) {
            return Err(TestCaseError::fail(e));
        }
        if map.capacity() != usize::MAX {
            prop_assert_eq!(map.growths(), 0);
        }
        prop_assert_eq!(map.len(), model.len());
        let mut all = map.entries_in(0, u64::MAX);
        all.sort();
        let mut want: Vec<_> = model.iter().map(|(l1, m, _)| (*l1, *m)).collect();
        want.sort();
        prop_assert_eq!(all, want);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Random inserts (aliasing lists, replacements, identical
    /// re-installs), shadow-range removals (pending and immediate
    /// unlinks), forgotten contexts (sweeps) and L1-range removals in
    /// batches of 3 interleaved with all of them: the lists stay well
    /// formed after every step, the map matches the model, no batch visits
    /// more than its room, and a removal reports exactly the records
    /// present when it began (the newer ones stay).
    #[test]
    fn lists_stay_well_formed_under_interleaved_tail_walks(
        steps in prop::collection::vec(arb_step(), 1..300),
    ) {
        run(steps)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The same with many keys on many L1 pages and long runs (records
    /// pile up: `Fill` makes up to 256 of one context live at once, which
    /// the other steps alone never did, so before review 58 no case ever
    /// put a record on the detached chain): more than 64 records wait for
    /// their unlink, so shadow-range removals and page-TLBI bursts
    /// (`remove_shadow_blocks`, `remove_indexed_later`) chain the rest,
    /// from any place in the lists, and L1-range removals in batches meet
    /// them.
    #[test]
    fn lists_stay_well_formed_with_many_pending_unlinks(
        steps in prop::collection::vec(arb_dense_step(), 600..1200),
    ) {
        run(steps)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The same in a slab of 160 records, well below the hundreds the
    /// steps keep live: it is full most of the time, with the records of
    /// long shadow ranges and page-TLBI bursts waiting on the detached
    /// chain and in `pending`, dead records of forgotten contexts beside
    /// them, and L1-range removals under way. An insert is refused only
    /// when none of those could give it a slot, the chain and the lists
    /// stay whole, and nothing grows.
    #[test]
    fn a_full_slab_takes_back_detached_records_and_keeps_the_chain_whole(
        steps in prop::collection::vec(
            prop_oneof![
                12 => arb_dense_step(),
                1 => (0u32..2).prop_map(Step::Forget),
            ],
            600..1200,
        ),
    ) {
        run_in(ReverseMap::with_capacity(160, 4), steps)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Stop 31: the dense steps with forgotten contexts (stale bits: their
    /// ranges go record by record) and a kill table of any size (none: as
    /// before stop 31; one or two chunks: full at once, the rest record by
    /// record; the real one), in a slab bounded or not. Killed records
    /// must stay out of every answer, count, L0 unmap and refusal check,
    /// and `check_kills` holds after every step.
    #[test]
    fn killed_chunks_match_the_model_whatever_the_table_holds(
        limit in prop_oneof![Just(0usize), Just(1), Just(2), Just(KILLED_CHUNKS)],
        bounded in any::<bool>(),
        steps in prop::collection::vec(
            prop_oneof![
                16 => arb_dense_step(),
                1 => (0u32..2).prop_map(Step::Forget),
            ],
            400..1000,
        ),
    ) {
        let mut map = if bounded {
            ReverseMap::with_capacity(200, 4)
        } else {
            ReverseMap::new()
        };
        map.kills.limit = limit;
        run_in(map, steps)?;
    }
}

/// Stop 31: `count` pages of `context` from L2 page `first`, page i on L1
/// page `l1 + i`.
fn fill_pages(map: &mut ReverseMap<u32>, context: u32, first: u64, count: u64, l1: u64) {
    for i in first..first + count {
        map.insert(l1 + (i << 12), r(context, i << 12, PAGE_SIZE))
            .unwrap();
    }
}

/// Stop 31: a range kills exactly the chunks it covers whole (here 1-3
/// of 0-4; the partial ones go record by record), and from then on no
/// query reports their records: not `has_live`, `entries_in`, `len`, a
/// second shadow range, nor an L0 unmap over their L1 pages, which finds
/// exactly the other context's aliases and takes the killed records off
/// their lists as it meets them. Kills the mutants that drop the kill
/// check of `has_live`, of `l1_list` or of `detach_key`'s liveness, that
/// leave the killed records in the live counts, or that kill a chunk the
/// range covers only in part.
#[test]
fn a_range_kills_its_whole_chunks_and_no_query_reports_their_records() {
    const L1: u64 = 0x4000_0000;
    let mut map = ReverseMap::<u32>::new();
    fill_pages(&mut map, 1, 0, 300, L1);
    fill_pages(&mut map, 2, 0, 300, L1);
    // Pages 10..290: chunks 1-3 whole, 0 and 4 in part.
    assert_eq!(map.remove_shadow_range(1, 10 << 12, 280 << 12), 280);
    check_lists(&map).unwrap();
    assert_eq!(map.kills.list.len(), 3);
    assert_eq!(map.kills.records, 192);
    assert_eq!(map.pending.len(), PENDING_UNLINKS);
    assert_eq!(map.chained, 280 - 192 - PENDING_UNLINKS);
    assert_eq!(map.len(), 300 + 20);
    for i in 0..300u64 {
        let kept = !(10..290).contains(&i);
        assert_eq!(map.has_live(1, i << 12), kept, "page {i}");
        assert!(map.has_live(2, i << 12));
    }
    let mut of_1: Vec<_> = map
        .entries_in(0, u64::MAX)
        .into_iter()
        .filter(|(_, s)| s.context == 1)
        .map(|(_, s)| s.l2_ipa >> 12)
        .collect();
    of_1.sort_unstable();
    assert_eq!(of_1, (0..10).chain(290..300).collect::<Vec<_>>());
    // Again, over everything: only the 20 left.
    assert_eq!(map.remove_shadow_range(1, 0, 300 << 12), 20);
    check_lists(&map).unwrap();
    // An L0 unmap of every L1 page, a record a batch.
    let mut cursor = L1RangeCursor::new(L1, 300 << 12);
    let mut found = Vec::new();
    loop {
        let mut batch = ArrayVec::<ShadowRef<u32>, 1>::new();
        let more = map.remove_range_batch(&mut cursor, &mut batch);
        found.extend(batch);
        check_lists(&map).unwrap();
        if !more {
            break;
        }
    }
    found.sort();
    assert_eq!(
        found,
        (0..300u64)
            .map(|i| r(2, i << 12, PAGE_SIZE))
            .collect::<Vec<_>>()
    );
    assert!(map.is_empty());
    assert_eq!(map.records_held(), 0);
    assert!(map.kills.is_empty());
}

/// Stop 31: a killed record faulted again is live again: at the head of
/// its L1 list in place (its bit back, its kill one record lighter), an
/// identical re-install of it then a no-op; elsewhere replaced (onto
/// another L1 page, or behind a newer record on its own). Killing its
/// chunk again merges into the chunk's kill, which then covers the
/// revived records too. Kills the mutants that take a killed record's
/// re-install for a live one's (no change), revive it without its bit or
/// without releasing its kill, or merge a kill under its old stamp.
#[test]
fn a_killed_record_faulted_again_lives_again_or_is_replaced() {
    const L1: u64 = 0x4000_0000;
    let mut map = ReverseMap::<u32>::new();
    fill_pages(&mut map, 1, 0, 128, L1);
    assert_eq!(map.remove_shadow_range(1, 0, 128 << 12), 128);
    assert_eq!((map.kills.list.len(), map.kills.records), (2, 128));
    let id_of = |map: &ReverseMap<u32>, page: u64| {
        map.by_shadow
            .get(&ShadowKey {
                l2: page << 12,
                context: 1,
            })
            .map(|m| m.id)
    };
    // In place: the same slab slot, live, with its bit.
    let id5 = id_of(&map, 5);
    map.insert(L1 + (5 << 12), r(1, 5 << 12, PAGE_SIZE))
        .unwrap();
    assert_eq!(id_of(&map, 5), id5);
    assert!(map.has_live(1, 5 << 12));
    check_lists(&map).unwrap();
    // Twice: the second is a live record's identical re-install.
    for _ in 0..2 {
        map.insert(L1 + (6 << 12), r(1, 6 << 12, PAGE_SIZE))
            .unwrap();
        assert!(map.has_live(1, 6 << 12));
        check_lists(&map).unwrap();
    }
    // Onto another L1 page: replaced.
    map.insert(0x8000_0000, r(1, 7 << 12, PAGE_SIZE)).unwrap();
    check_lists(&map).unwrap();
    // Behind a newer record on its own list: replaced, the list in order.
    map.insert(L1 + (8 << 12), r(2, 0, PAGE_SIZE)).unwrap();
    map.insert(L1 + (8 << 12), r(1, 8 << 12, PAGE_SIZE))
        .unwrap();
    check_lists(&map).unwrap();
    // Four records out of the kills, and each of the three inserts that
    // took a slot detached four killed records of the last chunk killed
    // (pages 64-127).
    assert_eq!(map.kills.records, 128 - 4 - 3 * SWEEP_STEP);
    assert_eq!(map.len(), 5);
    // The first chunk again: one kill, covering the four revived too.
    assert_eq!(map.remove_shadow_range(1, 0, 64 << 12), 4);
    check_lists(&map).unwrap();
    assert_eq!(map.kills.list.len(), 2);
    assert_eq!(map.kills.records, 128 - 3 * SWEEP_STEP);
    for page in [5, 6, 7, 8] {
        assert!(!map.has_live(1, page << 12), "page {page}");
    }
    let mut everything = Vec::new();
    map.remove_range(0, u64::MAX, |s| everything.push(s));
    assert_eq!(everything, [r(2, 0, PAGE_SIZE)]);
    check_lists(&map).unwrap();
    assert_eq!(map.records_held(), 0);
}

/// Stop 31: killed records hold slab slots until detached: each insert
/// detaches a few (the sweep's share), and an insert into a full slab
/// unlinks them at once, so a full slab of killed records never refuses
/// one and nothing grows. Kills the mutants that leave the full slab's
/// reap to the later unlinks (refused), or that skip the per-insert reap
/// (the kills never drain).
#[test]
fn killed_records_are_reaped_by_inserts_and_a_full_slab_takes_their_slots() {
    const L1: u64 = 0x4000_0000;
    // Not full: four a call.
    let mut map = ReverseMap::<u32>::new();
    fill_pages(&mut map, 1, 0, 256, L1);
    assert_eq!(map.remove_shadow_range(1, 0, 256 << 12), 256);
    map.insert(0x8000_0000, r(2, 0, PAGE_SIZE)).unwrap();
    assert_eq!(map.kills.records, 256 - SWEEP_STEP);
    for i in 1..100u64 {
        map.insert(0x8000_0000 + (i << 12), r(2, i << 12, PAGE_SIZE))
            .unwrap();
    }
    assert!(map.kills.is_empty());
    check_lists(&map).unwrap();
    // Full.
    let mut map = ReverseMap::<u32>::with_capacity(256, 4);
    fill_pages(&mut map, 1, 0, 256, L1);
    assert_eq!(map.remove_shadow_range(1, 0, 256 << 12), 256);
    assert_eq!(map.records_held(), 256);
    for i in 0..256u64 {
        map.insert(0x8000_0000 + (i << 12), r(2, i << 12, PAGE_SIZE))
            .unwrap_or_else(|e| panic!("insert {i}: {e:?}"));
        check_lists(&map).unwrap_or_else(|e| panic!("insert {i}: {e}"));
    }
    assert_eq!(map.growths(), 0);
    assert_eq!((map.len(), map.records_held()), (256, 256));
    assert!(map.kills.is_empty());
}

/// Stop 31: a context holding bits of its earlier epochs' records (dead,
/// not swept) cannot count a chunk's live records from its bits, so its
/// ranges go record by record and count exactly; once those bits are
/// gone its whole chunks are killed again. A dead record revived in place
/// (a walk fault after a VMID flush) takes its bit back from the stale
/// ones. Kills the mutants that kill such chunks anyway (the count is
/// wrong), or that do not count the bits a forget leaves (`check_kills`).
#[test]
fn a_context_with_stale_bits_removes_record_by_record() {
    const L1: u64 = 0x4000_0000;
    let mut map = ReverseMap::<u32>::new();
    fill_pages(&mut map, 1, 0, 128, L1);
    assert_eq!(map.forget_context(1), 128);
    check_lists(&map).unwrap();
    assert_eq!(map.incarnation(1).expect("context 1").stale_bits, 128);
    map.insert(L1, r(1, 0, PAGE_SIZE)).unwrap();
    assert_eq!(map.incarnation(1).expect("context 1").stale_bits, 127);
    // Eight new records: their inserts sweep 32 slots (page 0's is live
    // again), so 31 dead records and their bits go.
    fill_pages(&mut map, 1, 128, 8, L1);
    check_lists(&map).unwrap();
    assert_eq!(map.incarnation(1).expect("context 1").stale_bits, 127 - 31);
    assert_eq!(map.remove_shadow_range(1, 0, 136 << 12), 9);
    check_lists(&map).unwrap();
    assert!(map.kills.is_empty());
    assert_eq!(
        (map.len(), map.incarnation(1).expect("context 1").stale_bits),
        (0, 0)
    );
    fill_pages(&mut map, 1, 0, 128, 0x8000_0000);
    assert_eq!(map.remove_shadow_range(1, 0, 128 << 12), 128);
    assert_eq!(map.kills.list.len(), 2);
    check_lists(&map).unwrap();
    assert_eq!(map.len(), 0);
}

/// Review 61 R61-1: the records of a forgotten context are swept while
/// chunks stay killed. Context 1 is flushed with 64 records after a 4 MiB
/// range of context 2 killed 16 chunks (1024 records, whose reap takes 256
/// inserts); then 100 inserts of context 3 (each sweeping 4 slab slots)
/// take context 1's dead records and their stale bits, so a range kills
/// context 1's whole chunks again. Before, the sweep reaped only killed
/// records while any chunk was killed: context 1 kept its 64 stale bits,
/// and its dead records their slab slots, for as long as another context
/// kept a kill (a context whose ranges keep killing chunks keeps one for
/// ever), and every range of context 1 went record by record.
#[test]
fn a_forgotten_contexts_records_are_swept_while_chunks_stay_killed() {
    const L1: u64 = 0x4000_0000;
    let mut map = ReverseMap::<u32>::new();
    fill_pages(&mut map, 1, 0, 64, L1);
    fill_pages(&mut map, 2, 0, 1024, L1 + (1 << 20));
    assert_eq!(map.remove_shadow_range(2, 0, 1024 << 12), 1024);
    assert_eq!(map.kills.list.len(), 16);
    assert_eq!(map.forget_context(1), 64);
    fill_pages(&mut map, 3, 0, 100, L1 + (8 << 20));
    check_lists(&map).unwrap();
    assert!(!map.kills.is_empty(), "the kills outlast the inserts");
    assert_eq!(
        map.incarnation(1).expect("context 1").stale_bits,
        0,
        "context 1's dead records were not swept"
    );
    fill_pages(&mut map, 1, 0, 64, L1);
    assert_eq!(map.remove_shadow_range(1, 0, 64 << 12), 64);
    assert!(
        map.kills.list.iter().any(|(key, _)| key.context == 1),
        "context 1's whole chunk is killed"
    );
    check_lists(&map).unwrap();
}

/// Stop 31: the kill table holds [`KILLED_CHUNKS`] chunks and never
/// grows; a range meeting it full goes on record by record, exactly.
/// Kills the mutant that kills past the table's room.
#[test]
fn a_full_kill_table_leaves_the_rest_record_by_record() {
    let chunks = KILLED_CHUNKS as u64 + 2;
    let mut map = ReverseMap::<u32>::new();
    fill_pages(&mut map, 1, 0, chunks * 64, 0x4000_0000);
    assert_eq!(
        map.remove_shadow_range(1, 0, chunks << 18),
        chunks as usize * 64
    );
    assert_eq!(map.kills.list.len(), KILLED_CHUNKS);
    assert_eq!(map.kills.records, KILLED_CHUNKS * 64);
    assert_eq!(map.pending.len() + map.chained, 128);
    check_lists(&map).unwrap();
    assert_eq!(map.len(), 0);
    assert!(map.entries_in(0, u64::MAX).is_empty());
}

/// Each position a record can leave its list from (the only one, the head,
/// a middle one, the tail), by each path that removes one, then a removal
/// that must find every other record.
#[test]
fn every_unlink_position_keeps_the_tail_reachable() {
    const L1: u64 = 0x4000_0000;
    for len in 1..=4u64 {
        for gone in 0..len {
            for path in 0..4 {
                let mut map = ReverseMap::<u32>::new();
                // Records 0..len on one page, record len - 1 the head.
                for i in 0..len {
                    map.insert(L1, r(1, i << 12, PAGE_SIZE)).unwrap();
                }
                match path {
                    // Same key onto another L1 page: `insert`'s `remove_key`.
                    0 => map
                        .insert(L1 + 0x1000, r(1, gone << 12, PAGE_SIZE))
                        .unwrap(),
                    // A page TLBI (pending) then an insert elsewhere (which
                    // completes pending unlinks).
                    1 => {
                        assert_eq!(map.remove_shadow_range(1, gone << 12, 0x1000), 1);
                        map.insert(L1 + 0x1000, r(2, 0, PAGE_SIZE)).unwrap();
                    }
                    // A page TLBI left pending for the removal's own
                    // `unlink_pending`.
                    2 => assert_eq!(map.remove_shadow_range(1, gone << 12, 0x1000), 1),
                    // Into another context and back (sweeps reclaim the
                    // dead record): only `gone` stays under context 1.
                    _ => {
                        for i in 0..len {
                            if i != gone {
                                map.insert(L1, r(3, i << 12, PAGE_SIZE)).unwrap();
                            }
                        }
                        map.forget_context(1);
                        map.insert(L1 + 0x1000, r(1, gone << 12, PAGE_SIZE))
                            .unwrap();
                    }
                }
                check_lists(&map)
                    .unwrap_or_else(|e| panic!("len {len} gone {gone} path {path}: {e}"));
                let expected = map.entries_in(L1, 0x1000).len();
                let mut found = 0;
                let mut cursor = L1RangeCursor::new(L1, 0x1000);
                loop {
                    let mut batch = ArrayVec::<ShadowRef<u32>, 1>::new();
                    let more = map.remove_range_batch(&mut cursor, &mut batch);
                    found += batch.len();
                    check_lists(&map)
                        .unwrap_or_else(|e| panic!("len {len} gone {gone} path {path}: {e}"));
                    if !more {
                        break;
                    }
                }
                assert_eq!(found, expected, "len {len} gone {gone} path {path}");
                assert!(map.entries_in(L1, 0x1000).is_empty());
            }
        }
    }
}

/// Past the 64 unlinks that may wait, page TLBIs (`remove_indexed_later`)
/// and a long shadow range (`remove_shadow_blocks`) put records on the
/// detached chain, from the middle, head and tail of long
/// aliasing lists shared with another context's records: the lists stay
/// whole, and an L1-range removal in batches of 1 then finds exactly the
/// other context's records and unlinks every chained one it meets.
#[test]
fn immediate_unlinks_past_the_pending_limit_keep_lists_whole() {
    const L1: u64 = 0x4000_0000;
    for by_range in [false, true] {
        let mut map = ReverseMap::<u32>::new();
        // Record by record (no chunk killed): the chain is what this test
        // is about.
        map.kills.limit = 0;
        for i in 0..150u64 {
            // Three L1 pages; contexts 1 and 2 interleaved on each list.
            map.insert(
                L1 + ((i % 3) << 12),
                r(1 + (i % 2) as u32, i << 12, PAGE_SIZE),
            )
            .unwrap();
        }
        check_lists(&map).unwrap();
        if by_range {
            assert_eq!(map.remove_shadow_range(1, 0, 150 << 12), 75);
        } else {
            for i in 0..150u64 {
                map.remove_shadow_range(1, i << 12, 1 << 12);
            }
        }
        assert_eq!(map.pending.len(), PENDING_UNLINKS, "the rest were chained");
        assert_eq!(map.chained, 75 - PENDING_UNLINKS);
        check_lists(&map).unwrap_or_else(|e| panic!("by range {by_range}: {e}"));
        let mut cursor = L1RangeCursor::new(L1, 3 << 12);
        let mut found = Vec::new();
        loop {
            let mut batch = ArrayVec::<ShadowRef<u32>, 1>::new();
            let more = map.remove_range_batch(&mut cursor, &mut batch);
            found.extend(batch);
            check_lists(&map).unwrap_or_else(|e| panic!("by range {by_range}: {e}"));
            if !more {
                break;
            }
        }
        found.sort();
        let want: Vec<_> = (0..150u64)
            .filter(|i| i % 2 == 1)
            .map(|i| r(2, i << 12, PAGE_SIZE))
            .collect();
        assert_eq!(found, want, "by range {by_range}");
        assert!(map.is_empty());
        assert_eq!(map.records_held(), 0);
    }
}

/// A dead record inserted again (its context flushed, the same page
/// faulting again onto the same L1 block) lives again: alone on its L1
/// block or at its list's head in place, elsewhere on the list replaced.
/// The lists stay whole and in insert order, and an L1-range removal that
/// began before the re-inserts leaves them alone (inserted after it
/// began) while it still finds every older live record.
#[test]
fn a_dead_record_inserted_again_lives_again() {
    const L1: u64 = 0x4000_0000;
    for shared_block in [false, true] {
        let mut map = ReverseMap::<u32>::new();
        let l1_of = |i: u64| if shared_block { L1 } else { L1 + (i << 12) };
        for i in 0..4u64 {
            map.insert(l1_of(i), r(1, i << 12, PAGE_SIZE)).unwrap();
        }
        // Another context's record on the first block, older than none.
        map.insert(L1, r(2, 0, PAGE_SIZE)).unwrap();
        assert_eq!(map.forget_context(1), 4);
        // A removal of everything begins (one record per batch) before the
        // re-inserts.
        let mut cursor = L1RangeCursor::new(L1, 4 << 12);
        let mut removed = Vec::new();
        let mut batch = ArrayVec::<ShadowRef<u32>, 1>::new();
        let mut more = map.remove_range_batch(&mut cursor, &mut batch);
        removed.extend(batch.drain(..));
        for i in (0..4u64).rev() {
            map.insert(l1_of(i), r(1, i << 12, PAGE_SIZE)).unwrap();
            check_lists(&map).unwrap_or_else(|e| panic!("shared {shared_block} i {i}: {e}"));
        }
        assert_eq!(map.len(), 4 + usize::from(removed.is_empty()));
        assert_eq!(map.records_held(), 4 + usize::from(removed.is_empty()));
        while more {
            more = map.remove_range_batch(&mut cursor, &mut batch);
            removed.extend(batch.drain(..));
            check_lists(&map).unwrap_or_else(|e| panic!("shared {shared_block}: {e}"));
        }
        // Only context 2's record was live when the removal began.
        assert_eq!(removed, [r(2, 0, PAGE_SIZE)], "shared {shared_block}");
        let mut left: Vec<_> = map
            .entries_in(L1, 4 << 12)
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        left.sort_by_key(|s| s.l2_ipa);
        let expected: Vec<_> = (0..4u64).map(|i| r(1, i << 12, PAGE_SIZE)).collect();
        assert_eq!(left, expected, "shared {shared_block}");
    }
}
