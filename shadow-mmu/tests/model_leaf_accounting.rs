//! Review 25 probe: a single-threaded model of L1 (several table trees,
//! VMIDs shared between them, more keys than context slots) driving the
//! service through translate, L1 remaps followed by the TLBI the
//! architecture asks for, and L0 unmaps. After every step: every shadow
//! leaf agrees with L1's current tables, nothing on an L0-unmapped range
//! stays shadowed, and shadow leaves == live reverse-map records.
#![cfg(not(loom))]

use crate::common;

use std::collections::HashMap;

use common::*;
use ipc::message::L0Change;
use ipc::tlbi::{EntryLevels, InvalidateScope, IpaRange, IpaScope, TtlHint};
use walker::Granule;

const L2_BASE: u64 = 0x8000_0000;
const REGIONS: u64 = 6;
const PAGES: u64 = 24;
const BLOCK: u64 = 2 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Block(u64),
    Pages,
}

struct Tree {
    tables: L1Tables,
    vmid: u16,
    shapes: Vec<Shape>,
    /// L2 page -> L1 page (only for Pages regions).
    pages: HashMap<u64, u64>,
}

impl Tree {
    fn expected(&self, ipa: u64) -> Option<u64> {
        let r = (ipa - L2_BASE) / BLOCK;
        match self.shapes[r as usize] {
            Shape::Block(oa) => Some(oa + (ipa & (BLOCK - 1))),
            Shape::Pages => self.pages.get(&(ipa & !0xfff)).map(|p| p + (ipa & 0xfff)),
        }
    }
}

fn page_ipa(rng: &mut Rng) -> u64 {
    L2_BASE + rng.below(REGIONS) * BLOCK + (rng.below(PAGES + 4) << 12)
}

fn ipa_scope(start: u64, end: u64, levels: EntryLevels) -> InvalidateScope {
    InvalidateScope::Ipa(IpaScope {
        range: IpaRange::new(start, end).unwrap(),
        levels,
        hint: TtlHint::None,
    })
}

fn run(seed: u64, steps: usize, contexts: usize, budget: usize) {
    let mut rng = Rng(seed | 1);
    let mem = L1Memory::new();
    let vmids = [1u16, 1, 2, 2, 3];
    let mut trees: Vec<Tree> = vmids
        .iter()
        .enumerate()
        .map(|(i, &vmid)| Tree {
            tables: L1Tables::at(mem.clone(), Granule::K4, i as u64 * (1 << 20)),
            vmid,
            shapes: vec![Shape::Pages; REGIONS as usize],
            pages: HashMap::new(),
        })
        .collect();
    for t in &mut trees {
        for r in 0..REGIONS {
            let base = L2_BASE + r * BLOCK;
            if rng.below(3) == 0 {
                let oa = rng.below(2048) * BLOCK;
                t.tables.map(base, oa, 2, RW);
                t.shapes[r as usize] = Shape::Block(oa);
            } else {
                for p in 0..PAGES {
                    let l1 = rng.below(1 << 20) << 12;
                    t.tables.map(base + (p << 12), l1, 3, RW);
                    t.pages.insert(base + (p << 12), l1);
                }
            }
        }
    }
    let s = service_with(mem, budget, contexts);
    let w = s.worker();
    // Each region's pages and the four after it.
    let checked_ipas: Vec<u64> = (0..REGIONS)
        .flat_map(|r| (0..PAGES + 4).map(move |p| L2_BASE + r * BLOCK + (p << 12)))
        .collect();
    for step in 0..steps {
        let what = rng.below(20);
        let k = rng.below(trees.len() as u64) as usize;
        let note;
        match what {
            0..=11 => {
                let ipa = page_ipa(&mut rng);
                let t = read(&s, &w, &trees[k].tables.key(trees[k].vmid), ipa);
                let want = trees[k].expected(ipa);
                check_fault_follows_l1(&t, ipa, want, &format!("seed {seed:#x} step {step}"));
                note = format!("translate key {k} {ipa:#x}");
            }
            12..=15 => {
                // L1 remaps (break-before-make done by L1 with the TLBI at
                // the end; the service sees only the final state).
                let r = rng.below(REGIONS);
                let base = L2_BASE + r * BLOCK;
                let tree = &mut trees[k];
                let vmid = tree.vmid;
                let scope = match (tree.shapes[r as usize], rng.below(3)) {
                    (Shape::Pages, 0) => {
                        // Pages -> block.
                        let oa = rng.below(2048) * BLOCK;
                        tree.tables.map(base, oa, 2, RW);
                        tree.shapes[r as usize] = Shape::Block(oa);
                        for p in 0..PAGES {
                            tree.pages.remove(&(base + (p << 12)));
                        }
                        ipa_scope(base, base + BLOCK, EntryLevels::AnyLevel)
                    }
                    (Shape::Block(_), 0) => {
                        // Block -> pages (a fresh table under it).
                        tree.tables.unmap(base, 2);
                        for p in 0..PAGES {
                            let l1 = rng.below(1 << 20) << 12;
                            tree.tables.map(base + (p << 12), l1, 3, RW);
                            tree.pages.insert(base + (p << 12), l1);
                        }
                        tree.shapes[r as usize] = Shape::Pages;
                        ipa_scope(base, base + 4096, EntryLevels::AnyLevel)
                    }
                    (Shape::Pages, _) => {
                        let p = rng.below(PAGES);
                        let ipa = base + (p << 12);
                        if rng.below(4) == 0 {
                            tree.tables.unmap(ipa, 3);
                            tree.pages.remove(&ipa);
                        } else {
                            let l1 = rng.below(1 << 20) << 12;
                            tree.tables.map(ipa, l1, 3, RW);
                            tree.pages.insert(ipa, l1);
                        }
                        ipa_scope(ipa, ipa + 4096, EntryLevels::LeafOnly)
                    }
                    (Shape::Block(_), _) => {
                        let oa = rng.below(2048) * BLOCK;
                        tree.tables.map(base, oa, 2, RW);
                        tree.shapes[r as usize] = Shape::Block(oa);
                        ipa_scope(
                            base + (rng.below(512) << 12),
                            base + BLOCK,
                            EntryLevels::LeafOnly,
                        )
                    }
                };
                let scope = if rng.below(6) == 0 {
                    InvalidateScope::Vmid
                } else {
                    scope
                };
                s.invalidate(&w, vmid, &scope);
                note = format!("remap key {k} region {r}, {scope:?}");
            }
            16..=17 => {
                // L0 takes an L1 range back (and gives it again: the map
                // is fixed, so only what was built on it must go).
                let start = rng.below(1 << 20) << 12;
                let len = [4096u64, BLOCK, 64 << 20, 1 << 30][rng.below(4) as usize];
                let range = IpaRange::new(start, start + len).unwrap();
                s.l0_unmap(&w, range, L0Change::WriteProtect);
                for (i, tree) in trees.iter().enumerate() {
                    let key = tree.tables.key(tree.vmid);
                    for r in 0..REGIONS {
                        for p in 0..PAGES {
                            let ipa = L2_BASE + r * BLOCK + (p << 12);
                            if let Some(m) = s.shadow_lookup(&w, &key, ipa) {
                                let l1 = m.pa_base + (ipa - m.l2_ipa_base) - PA_OFFSET;
                                let l1_base = m.pa_base - PA_OFFSET;
                                assert!(
                                    !range.overlaps(l1_base, m.size),
                                    "seed {seed:#x} step {step}: key {i} {ipa:#x} -> L1 {l1:#x} survived the L0 unmap of {range:?}"
                                );
                            }
                        }
                    }
                }
                note = format!("l0_unmap {range:?}");
            }
            _ => {
                let vmid = trees[k].vmid;
                s.invalidate(&w, vmid, &InvalidateScope::Vmid);
                note = format!("vmalls12e1 vmid {vmid}");
            }
        }
        // Every shadow leaf agrees with L1's tables now (L1 TLBIs after
        // every change it makes).
        check_shadows_follow_l1(
            &s,
            &w,
            trees
                .iter()
                .map(|t| (t.tables.key(t.vmid), |ipa| t.expected(ipa))),
            &checked_ipas,
            &format!("seed {seed:#x} step {step} ({note})"),
        );
    }
    if std::env::var("R25_STATS").is_ok() {
        eprintln!("{:?} {:?}", s.stats(), s.config().budget);
    }
}

#[test]
fn review25_model_with_recycling() {
    for seed in 1..=40u64 {
        run(seed * 0x9e37_79b9, 400, 2, 1 << 20);
    }
}

#[test]
fn review25_model_one_slot() {
    for seed in 1..=40u64 {
        run(seed * 0x1234_5677, 400, 1, 1 << 20);
    }
}

fn minimum(contexts: usize) -> usize {
    shadow_mmu::budget::Budget::split(0, contexts)
        .unwrap_err()
        .minimum()
        .unwrap()
}

#[test]
fn review25_model_tight() {
    for contexts in [1usize, 2, 3] {
        for seed in 1..=30u64 {
            run(
                seed * 0x51_7cc1_b727,
                400,
                contexts,
                minimum(contexts) + 4096,
            );
        }
    }
}

#[test]
fn review25_model_roomy() {
    for seed in 1..=20u64 {
        run(seed * 0x7f4a_7c15, 400, 8, 16 << 20);
    }
}
