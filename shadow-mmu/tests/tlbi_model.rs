//! Model-based check of invalidation against the current L1 tables, for
//! every L1 granule (written by review 3, which found no fault with it).
//! L1 changes its tables the way the Arm ARM requires (break-before-make,
//! then a TLBI that covers what changed: IPAS2E1 or IPAS2LE1 anywhere in
//! the leaf, with or without a correct TTL hint, RIPAS2E1/RIPAS2LE1 over
//! it; RIPAS2E1 or VMALLS12E1 for a table merged into a block), and after
//! every change no cached walk result or shadow descriptor may disagree
//! with the tables, and every translate must equal a fresh walk of them,
//! which must equal the model's own record of the mappings. Runs in well
//! under a second in a debug build.
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use common::*;
use ipc::tlbi::{
    Granule as TlbiGranule, InvalidateScope, RangeOperand, Shareability, Tlbi, TlbiOp, TlbiParams,
};
use shadow_mmu::service::Translated;
use walker::{AccessKind, Granule, Stage2Walker};

fn tlbi(op: TlbiOp) -> Tlbi {
    Tlbi {
        op,
        shareability: Shareability::InnerShareable,
        nxs: false,
    }
}

const PARAMS: TlbiParams = TlbiParams {
    feat_ttl: true,
    feat_lpa2: false,
    vtcr_ds: false,
};

fn tlbi_granule(g: Granule) -> TlbiGranule {
    match g {
        Granule::K4 => TlbiGranule::K4,
        Granule::K16 => TlbiGranule::K16,
        Granule::K64 => TlbiGranule::K64,
    }
}

/// One level-2 region of L2's IPA space as the model records it.
#[derive(Clone, Debug)]
enum Region {
    /// A block to this L1 IPA.
    Block(u64),
    /// A table of pages: each page's L1 IPA, if mapped.
    Table(Vec<Option<u64>>),
}

struct Model {
    l1: L1Tables,
    s: TestService,
    w: shadow_mmu::service::Worker,
    regions: Vec<(u64, Region)>,
    rng: Rng,
    vmid: u16,
}

impl Model {
    fn block(&self) -> u64 {
        self.l1.size(2)
    }
    fn page(&self) -> u64 {
        self.l1.size(3)
    }
    fn pages_per_block(&self) -> usize {
        (self.block() / self.page()) as usize
    }
    fn random_block_oa(&mut self) -> u64 {
        let n = (2u64 << 30) / self.block();
        self.rng.below(n) * self.block()
    }
    fn random_page_oa(&mut self) -> u64 {
        let n = (2u64 << 30) / self.page();
        self.rng.below(n) * self.page()
    }

    /// A TLBI that architecturally covers the leaf `[base, base+size)` at
    /// `level`: by IPA (any address inside, any level or last level, with or
    /// without a correct TTL hint) or by range.
    fn leaf_tlbi(&mut self, base: u64, size: u64, level: i8) {
        let choice = self.rng.below(4);
        let scope = match choice {
            0 | 1 => {
                let ipa = base + (self.rng.below(size / 4096) << 12);
                let ttl = if self.rng.below(2) == 0 {
                    0
                } else {
                    let g = match self.l1.granule {
                        Granule::K4 => 1,
                        Granule::K16 => 2,
                        Granule::K64 => 3,
                    };
                    (g << 2) | level as u64
                };
                let op = if choice == 0 {
                    TlbiOp::Ipas2e1
                } else {
                    TlbiOp::Ipas2le1
                };
                tlbi(op).decode((ipa >> 12) | (ttl << 44), PARAMS).unwrap()
            }
            _ => {
                let op = if choice == 2 {
                    TlbiOp::Ripas2e1
                } else {
                    TlbiOp::Ripas2le1
                };
                self.range_scope(op, base, size, level as u8)
            }
        };
        self.s.invalidate(&self.w, self.vmid, &scope);
    }

    fn range_scope(&mut self, op: TlbiOp, base: u64, size: u64, ttl: u8) -> InvalidateScope {
        let gshift = self.page().trailing_zeros();
        let pages = size >> gshift;
        let mut scale = 0u8;
        while (32u64 << (5 * u32::from(scale) + 1)) < pages {
            scale += 1;
        }
        let unit = 1u64 << (5 * u32::from(scale) + 1);
        let num = (pages.div_ceil(unit) - 1) as u8;
        let xt = RangeOperand {
            granule: Some(tlbi_granule(self.l1.granule)),
            scale,
            num,
            ttl,
            base_addr: base >> gshift,
        }
        .to_bits();
        let scope = tlbi(op).decode(xt, PARAMS).unwrap();
        if let InvalidateScope::Ipa(s) = &scope {
            assert!(s.range.start() <= base && s.range.end() >= base + size);
        }
        scope
    }

    fn walker(&self) -> Stage2Walker {
        Stage2Walker::new(self.l1.key(self.vmid).registers(), &features())
    }

    fn expected_pa(&self, ipa: u64) -> Option<u64> {
        self.walker()
            .walk(&self.l1.mem, ipa, AccessKind::Read)
            .ok()
            .map(|t| PA_OFFSET + t.output_address)
    }

    /// The PA the model's record gives for `ipa` (through L0's map).
    fn model_pa(&self, ipa: u64) -> Option<u64> {
        let block = self.block();
        let (base, region) = self
            .regions
            .iter()
            .find(|(base, _)| (*base..*base + block).contains(&ipa))?;
        let l1_ipa = match region {
            Region::Block(oa) => oa + (ipa - base),
            Region::Table(pages) => {
                let page = self.page();
                let index = ((ipa - base) / page) as usize;
                pages[index]? + (ipa - base) % page
            }
        };
        Some(PA_OFFSET + l1_ipa)
    }

    fn sample_ipas(&mut self) -> Vec<u64> {
        let mut out = Vec::new();
        let page = self.page();
        let ppb = self.pages_per_block() as u64;
        for (base, _) in self.regions.clone() {
            for _ in 0..6 {
                let p = self.rng.below(ppb.min(16));
                out.push(base + p * page + (self.rng.below(page / 4096) << 12));
            }
            let p = self.rng.below(ppb);
            out.push(base + p * page);
        }
        out
    }

    /// No cached or shadow entry disagrees with the current tables.
    fn check_no_stale(&mut self, what: &str) {
        let key = self.l1.key(self.vmid);
        for ipa in self.sample_ipas() {
            let expected = self.expected_pa(ipa);
            {
                let guard = self.w.pin();
                if let Some(hit) = self.s.lookup(&key, ipa, &guard) {
                    let got = PA_OFFSET + hit.output_address(ipa);
                    assert_eq!(
                        Some(got),
                        expected,
                        "{what}: stale cached walk for {ipa:#x}: {hit:?}"
                    );
                }
            }
            if let Some(m) = self.s.shadow_lookup(&self.w, &key, ipa) {
                let got = m.pa_base + (ipa - m.l2_ipa_base);
                assert_eq!(
                    Some(got),
                    expected,
                    "{what}: stale shadow entry for {ipa:#x}: {m:?}"
                );
            }
        }
    }

    fn check_translations(&mut self, what: &str) {
        let key = self.l1.key(self.vmid);
        for ipa in self.sample_ipas() {
            let expected = self.expected_pa(ipa);
            assert_eq!(
                expected,
                self.model_pa(ipa),
                "{what}: the tables and the model disagree at {ipa:#x}"
            );
            let mut t = read(&self.s, &self.w, &key, ipa);
            for _ in 0..4 {
                if !matches!(t, Translated::Retry(_)) {
                    break;
                }
                t = read(&self.s, &self.w, &key, ipa);
            }
            match expected {
                Some(pa) => assert_eq!(pa_of(&t, ipa), Some(pa), "{what}: {ipa:#x}: {t:?}"),
                None => assert!(
                    matches!(t, Translated::Inject(_)),
                    "{what}: {ipa:#x}: {t:?}"
                ),
            }
        }
    }

    fn step(&mut self) -> String {
        let i = self.rng.below(self.regions.len() as u64) as usize;
        let (base, region) = self.regions[i].clone();
        let page = self.page();
        let block = self.block();
        match region {
            Region::Block(_) => match self.rng.below(3) {
                0 => {
                    // Remap the block (BBM).
                    self.l1.unmap(base, 2);
                    self.leaf_tlbi(base, block, 2);
                    let oa = self.random_block_oa();
                    self.l1.map(base, oa, 2, RW);
                    self.regions[i].1 = Region::Block(oa);
                    format!("remap block {base:#x}")
                }
                1 => {
                    // Split into a table of pages.
                    self.l1.unmap(base, 2);
                    self.leaf_tlbi(base, block, 2);
                    let mut pages = vec![None; self.pages_per_block()];
                    for p in 0..pages.len().min(16) {
                        if self.rng.below(4) != 0 {
                            let oa = self.random_page_oa();
                            self.l1.map(base + p as u64 * page, oa, 3, RW);
                            pages[p] = Some(oa);
                        }
                    }
                    self.regions[i].1 = Region::Table(pages);
                    format!("split block {base:#x}")
                }
                _ => format!("no change to block {base:#x}"),
            },
            Region::Table(mut pages) => match self.rng.below(3) {
                0 => {
                    // Remap or unmap one page.
                    let p = self.rng.below(pages.len().min(16) as u64) as usize;
                    let ipa = base + p as u64 * page;
                    if pages[p].is_some() {
                        self.l1.unmap(ipa, 3);
                        self.leaf_tlbi(ipa, page, 3);
                    }
                    if self.rng.below(3) != 0 {
                        let oa = self.random_page_oa();
                        self.l1.map(ipa, oa, 3, RW);
                        pages[p] = Some(oa);
                    } else {
                        pages[p] = None;
                    }
                    self.regions[i].1 = Region::Table(pages);
                    format!("remap page {ipa:#x}")
                }
                1 => {
                    // Merge into a block: the table descriptor goes, then a
                    // TLBI of every level over the whole region.
                    self.l1.unmap(base, 2);
                    let scope = if self.rng.below(4) == 0 {
                        tlbi(TlbiOp::Vmalls12e1).decode(0, PARAMS).unwrap()
                    } else {
                        self.range_scope(TlbiOp::Ripas2e1, base, block, 0)
                    };
                    self.s.invalidate(&self.w, self.vmid, &scope);
                    let oa = self.random_block_oa();
                    self.l1.map(base, oa, 2, RW);
                    self.regions[i].1 = Region::Block(oa);
                    format!("merge table {base:#x}")
                }
                _ => format!("no change to table {base:#x}"),
            },
        }
    }
}

fn run(granule: Granule, seed: u64, steps: usize) {
    run_with(granule, seed, steps, 64 << 20, 4)
}

fn run_with(granule: Granule, seed: u64, steps: usize, bytes: usize, contexts: usize) {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), granule);
    let mut rng = Rng(seed | 1);
    let block = l1.size(2);
    let page = l1.size(3);
    let mut regions = Vec::new();
    // Six level-2 regions; with 64K (512 MiB blocks) they stay below 3 GiB.
    for r in 0..6u64 {
        let base = r * block;
        if rng.below(2) == 0 {
            let oa = rng.below((2u64 << 30) / block) * block;
            l1.map(base, oa, 2, RW);
            regions.push((base, Region::Block(oa)));
        } else {
            let ppb = (block / page) as usize;
            let mut pages = vec![None; ppb];
            for (p, slot) in pages.iter_mut().enumerate().take(16) {
                let oa = rng.below((2u64 << 30) / page) * page;
                l1.map(base + p as u64 * page, oa, 3, RW);
                *slot = Some(oa);
            }
            regions.push((base, Region::Table(pages)));
        }
    }
    let s = service_with(mem, bytes, contexts);
    let w = s.worker();
    let mut m = Model {
        l1,
        s,
        w,
        regions,
        rng,
        vmid: 3,
    };
    m.check_translations("initial");
    for n in 0..steps {
        let what = m.step();
        let what = format!("{granule:?} seed {seed} step {n}: {what}");
        m.check_no_stale(&what);
        m.check_translations(&what);
    }
}

#[test]
fn model_4k() {
    for seed in 1..6 {
        run(Granule::K4, seed, 150);
    }
}

#[test]
fn model_16k() {
    for seed in 1..6 {
        run(Granule::K16, seed, 150);
    }
}

#[test]
fn model_64k() {
    for seed in 1..4 {
        run(Granule::K64, seed, 100);
    }
}

#[test]
fn model_small_budget() {
    for (i, g) in [Granule::K4, Granule::K16, Granule::K64]
        .into_iter()
        .enumerate()
    {
        for seed in 1..4 {
            run_with(g, seed * 7 + i as u64, 120, 1 << 20, 2);
        }
    }
}
