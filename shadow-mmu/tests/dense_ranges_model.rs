//! Review 61: a single-threaded model of L1 over dense pages (three
//! trees, two sharing a VMID, more keys than context slots): every page of
//! three 2 MiB regions mapped, faults in runs over them, range TLBIs that
//! cover whole level-3 shadow tables and whole reverse-map chunks and parts
//! of them (stop 31's detach and kill paths), page TLBIs, regions turned
//! into 2 MiB blocks and back, VMID flushes and L0 unmaps, at roomy, tight
//! and minimum budgets, on a level-0 and a level-1 (40-bit) host. After
//! every step every shadow leaf agrees with L1's tables, nothing built on
//! an L0-unmapped range stays shadowed, and shadow leaves == live
//! reverse-map records. `model_leaf_accounting` keeps 24 pages a region,
//! so it never fills a chunk or a level-3 table. Mutants: a reverse-map
//! range that kills chunks it covers only in part fails here (a page
//! survives an L0 unmap); a map that keeps no leaf count under the
//! caller's lock (release build) fails the leaves == records check.
//! `DENSE_MODEL_SEEDS=N` runs N seeds a test (default 4).
#![cfg(not(loom))]

use crate::common;

use std::collections::HashMap;

use common::*;
use ipc::message::L0Change;
use ipc::tlbi::{EntryLevels, InvalidateScope, IpaRange};
use shadow_mmu::service::{HostBackend, Service};
use shadow_mmu::shadow_table::ShadowConfig;
use walker::Granule;

const L2_BASE: u64 = 0x8000_0000;
const REGIONS: u64 = 3;
const PAGES: u64 = 512;
const BLOCK: u64 = 2 << 20;

struct Tree {
    tables: L1Tables,
    vmid: u16,
    pages: HashMap<u64, u64>,
    /// Regions L1 maps with a 2 MiB block: region base -> L1 block.
    blocks: HashMap<u64, u64>,
}

impl Tree {
    fn expected(&self, ipa: u64) -> Option<u64> {
        let region = ipa & !(BLOCK - 1);
        match self.blocks.get(&region) {
            Some(l1) => Some(l1 + (ipa - region)),
            None => self.pages.get(&(ipa & !0xfff)).map(|l1| l1 + (ipa & 0xfff)),
        }
    }
}

fn run(seed: u64, steps: usize, contexts: usize, budget: usize) {
    run_on(seed, steps, contexts, budget, ShadowConfig::default())
}

fn run_on(seed: u64, steps: usize, contexts: usize, budget: usize, shadow: ShadowConfig) {
    // L1 is shown the host's PA size (a 40-bit host: L1's 39-bit IPAs fit).
    let ps = if shadow.input_bits() >= 48 {
        0b101
    } else {
        0b010
    };
    let pa_offset = PA_OFFSET;
    let mut rng = Rng(seed | 1);
    let mem = L1Memory::new();
    let vmids = [1u16, 1, 2];
    let mut trees: Vec<Tree> = vmids
        .iter()
        .enumerate()
        .map(|(i, &vmid)| Tree {
            tables: L1Tables::at(mem.clone(), Granule::K4, i as u64 * (1 << 20)),
            vmid,
            pages: HashMap::new(),
            blocks: HashMap::new(),
        })
        .collect();
    for t in &mut trees {
        for r in 0..REGIONS {
            let base = L2_BASE + r * BLOCK;
            for p in 0..PAGES {
                let l1 = rng.below(1 << 18) << 12;
                t.tables.map(base + (p << 12), l1, 3, RW);
                t.pages.insert(base + (p << 12), l1);
            }
        }
    }
    let mut config = config(budget, contexts);
    config.features = features_with_pa_range(ps);
    let backend = HostBackend::recording(config.budget.frames, shadow).expect("pool");
    let s = Service::new(config, mem, l0_map_at(pa_offset), backend).expect("service");
    let w = s.worker();
    let span = REGIONS * PAGES;
    let checked_ipas: Vec<u64> = (0..span).map(|p| L2_BASE + (p << 12)).collect();
    for step in 0..steps {
        let what = rng.below(20);
        // 0-7 faults, 8-11 range TLBIs, 12-13 page TLBIs, 14-16 L0 unmaps,
        // 17 and 19 VMID flushes, 18 a region reshaped.
        let k = rng.below(trees.len() as u64) as usize;
        let key = trees[k].tables.key(trees[k].vmid);
        let note = match what {
            0..=7 => {
                // A run of faults over consecutive pages.
                let first = rng.below(span);
                let n = 1 + rng.below(300);
                for p in first..(first + n).min(span) {
                    let ipa = L2_BASE + (p << 12);
                    let t = read(&s, &w, &key, ipa);
                    let want = trees[k].expected(ipa);
                    check_fault_follows_l1(&t, ipa, want, &format!("seed {seed:#x} step {step}"));
                }
                format!("faults key {k} pages {first}+{n}")
            }
            8..=11 => {
                // A range TLBI (L1 changed nothing, or remapped pages in it).
                let first = rng.below(span);
                let n = 1 + rng.below(span - first);
                let (start, end) = (L2_BASE + (first << 12), L2_BASE + ((first + n) << 12));
                if rng.below(2) == 0 {
                    let tree = &mut trees[k];
                    for _ in 0..rng.below(8) {
                        let ipa = start + (rng.below(n) << 12);
                        if tree.blocks.contains_key(&(ipa & !(BLOCK - 1))) {
                            continue;
                        }
                        if rng.below(3) == 0 {
                            tree.tables.unmap(ipa, 3);
                            tree.pages.remove(&ipa);
                        } else {
                            let l1 = rng.below(1 << 18) << 12;
                            tree.tables.map(ipa, l1, 3, RW);
                            tree.pages.insert(ipa, l1);
                        }
                    }
                }
                let levels = if rng.below(2) == 0 {
                    EntryLevels::AnyLevel
                } else {
                    EntryLevels::LeafOnly
                };
                let vmid = trees[k].vmid;
                s.invalidate(&w, vmid, &ipa_scope(start, end, levels));
                format!("range {start:#x}..{end:#x} vmid {vmid}")
            }
            18 => {
                // L1 turns a region of pages into a block, or back.
                let r = rng.below(REGIONS);
                let base = L2_BASE + r * BLOCK;
                let tree = &mut trees[k];
                if tree.blocks.remove(&base).is_some() {
                    tree.tables.unmap(base, 2);
                    for p in 0..PAGES {
                        let l1 = rng.below(1 << 18) << 12;
                        tree.tables.map(base + (p << 12), l1, 3, RW);
                        tree.pages.insert(base + (p << 12), l1);
                    }
                } else {
                    let l1 = rng.below(256) * BLOCK;
                    tree.tables.map(base, l1, 2, RW);
                    tree.blocks.insert(base, l1);
                    for p in 0..PAGES {
                        tree.pages.remove(&(base + (p << 12)));
                    }
                }
                let vmid = tree.vmid;
                s.invalidate(
                    &w,
                    vmid,
                    &ipa_scope(base, base + BLOCK, EntryLevels::AnyLevel),
                );
                format!("reshape region {r} key {k}")
            }
            12..=13 => {
                // One page remapped, page TLBI.
                let ipa = L2_BASE + (rng.below(span) << 12);
                let tree = &mut trees[k];
                let l1 = rng.below(1 << 18) << 12;
                if !tree.blocks.contains_key(&(ipa & !(BLOCK - 1))) {
                    tree.tables.map(ipa, l1, 3, RW);
                    tree.pages.insert(ipa, l1);
                }
                let vmid = tree.vmid;
                s.invalidate(&w, vmid, &ipa_scope(ipa, ipa + 4096, EntryLevels::LeafOnly));
                format!("page {ipa:#x}")
            }
            14..=16 => {
                let start = rng.below(1 << 18) << 12;
                let len = [4096u64, 64 << 12, BLOCK, 1 << 30][rng.below(4) as usize];
                let range = IpaRange::new(start, start + len).unwrap();
                s.l0_unmap(&w, range, L0Change::WriteProtect);
                for tree in &trees {
                    let key = tree.tables.key(tree.vmid);
                    for p in 0..span {
                        let ipa = L2_BASE + (p << 12);
                        if let Some(m) = s.shadow_lookup(&w, &key, ipa) {
                            let l1_base = m.pa_base - pa_offset;
                            assert!(
                                !range.overlaps(l1_base, m.size),
                                "seed {seed:#x} step {step}: {ipa:#x} survived the L0 unmap of {range:?}"
                            );
                        }
                    }
                }
                format!("l0_unmap {range:?}")
            }
            _ => {
                let vmid = trees[k].vmid;
                s.invalidate(&w, vmid, &InvalidateScope::Vmid);
                format!("vmalls12e1 vmid {vmid}")
            }
        };
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
    if std::env::var("DENSE_MODEL_STATS").is_ok() {
        eprintln!("{:?} leaves {}", s.stats(), s.shadow_leaves());
    }
}

/// Seeds a test runs: `DENSE_MODEL_SEEDS`, else 4.
fn seeds() -> u64 {
    std::env::var("DENSE_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4)
}

#[test]
fn dense_model_roomy() {
    let seeds = seeds();
    for seed in 1..=seeds {
        run(seed * 0x9e37_79b9, 150, 2, 16 << 20);
    }
}

#[test]
fn dense_model_tight() {
    let seeds = seeds();
    for seed in 1..=seeds {
        run(seed * 0x51_7cc1_b727, 150, 2, 2 << 20);
    }
}

#[test]
fn dense_model_level_1_host() {
    let seeds = seeds();
    for seed in 1..=seeds {
        let shadow = ShadowConfig::for_pa_range(0b010, true).unwrap();
        run_on(seed * 0x2545_f491, 150, 2, 2 << 20, shadow);
        run_on(seed * 0x2545_f493, 150, 3, 16 << 20, shadow);
    }
}

fn minimum(contexts: usize) -> usize {
    shadow_mmu::budget::Budget::split(0, contexts)
        .unwrap_err()
        .minimum()
        .unwrap()
}

#[test]
fn dense_model_at_the_minimum_budget() {
    let seeds = seeds();
    for seed in 1..=seeds {
        for contexts in [1usize, 2] {
            run(
                seed * 0x7f4a_7c15 + contexts as u64,
                150,
                contexts,
                minimum(contexts) + 4096,
            );
            run(
                seed * 0x7f4a_7c17 + contexts as u64,
                150,
                contexts,
                minimum(contexts) + (64 << 10),
            );
        }
    }
}
