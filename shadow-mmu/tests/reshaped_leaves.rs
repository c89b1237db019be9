//! Review 6 R6-2: a shadow leaf replacing leaves of another size. A
//! 2 MiB block installed over a table of 4 KiB leaves (or a 4 KiB page
//! installed into a 2 MiB block) used to be done by the shadow table's
//! break-before-make alone: the replaced leaves' reverse-map records stayed
//! live and the service's leaf count did not hear of them. In the ordinary
//! dirty-logging cycle the count climbed ~511 per cycle until it passed
//! the budget's leaf cap, and from then on every install cleared its own
//! context's shadow first. Now the install removes the overlapping leaves
//! of other sizes with their records before it maps: after every step the
//! leaf count, the live records and the leaves actually installed agree.
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use ipc::message::L0Change;
use ipc::tlbi::IpaRange;
use shadow_mmu::compose::{
    L0Map, L0Mapping, L0Region, L0RegionKind, L0RegionMap, MemAttr, MemShareability, Permissions,
    Unbacked,
};
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::{HostBackend, Service, Translated, Worker};
use shadow_mmu::shadow_table::ShadowConfig;
use walker::{AccessKind, Granule};

const ALL: Permissions = Permissions::READ
    .union(Permissions::WRITE)
    .union(Permissions::EXEC_EL0)
    .union(Permissions::EXEC_EL1);
const READ_ONLY: Permissions = Permissions::READ;

/// L1's 2 MiB block: L2 IPA `L2_BLOCK` -> L1 IPA `P`.
const P: u64 = 0x8000_0000;
const L2_BLOCK: u64 = 0x1000_0000;
const BLOCK: u64 = 2 << 20;
const PAGE: u64 = 0x1000;
/// Unrelated L1 pages (L2 IPA -> L1 IPA), for the collapse check.
const OTHER_L2: u64 = 0x2000_0000;
const OTHER_L1: u64 = 0x9000_0000;

fn region(ipa_base: u64, size: u64, perms: Permissions) -> L0Region {
    L0Region {
        ipa_base,
        size,
        kind: L0RegionKind::Memory {
            pa_base: PA_OFFSET + ipa_base,
            perms,
            mem_attr: MemAttr::from_bits(0xf),
            shareability: MemShareability::InnerShareable,
        },
    }
}

/// L0's map of L1 with one page `P + offset` given `page_perms` in 4 KiB
/// and the rest of the block `rest_perms` in pieces smaller than 2 MiB
/// (so the block composes in 4 KiB pieces); the rest of L1 gets `ALL`.
fn l0_split(offset: u64, page_perms: Permissions, rest_perms: Permissions) -> L0RegionMap {
    let page = P + offset;
    let mut regions = vec![region(0, P, ALL)];
    if offset > 0 {
        regions.push(region(P, offset, rest_perms));
    }
    regions.push(region(page, PAGE, page_perms));
    regions.push(region(page + PAGE, P + BLOCK - page - PAGE, rest_perms));
    regions.push(region(P + BLOCK, L1_MEMORY_BYTES - P - BLOCK, ALL));
    L0RegionMap::new(regions).unwrap()
}

/// L0's mapping of L1 as hv changes it: `split` while it protects (or
/// has just unprotected) one page, `whole` otherwise.
struct SwitchingL0 {
    split: L0RegionMap,
    whole: L0RegionMap,
    use_split: AtomicBool,
}

impl L0Map for SwitchingL0 {
    fn lookup(&self, l1_ipa: u64) -> Option<L0Mapping> {
        if self.use_split.load(Ordering::SeqCst) {
            self.split.lookup(l1_ipa)
        } else {
            self.whole.lookup(l1_ipa)
        }
    }
    fn unbacked(&self, _: u64) -> Unbacked {
        Unbacked::Nothing
    }
}

type Switching = Service<L1Memory, SwitchingL0, HostBackend>;

fn service(split: L0RegionMap, whole: L0RegionMap, use_split: bool) -> (Switching, L1Tables) {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(L2_BLOCK, P, 2, RW); // one 2 MiB L1 block
    for page in 0..16u64 {
        l1.map(OTHER_L2 + page * PAGE, OTHER_L1 + page * PAGE, 3, RW);
    }
    let l0 = SwitchingL0 {
        split,
        whole,
        use_split: AtomicBool::new(use_split),
    };
    let cfg = config(16 << 20, 8);
    let backend = HostBackend::recording(cfg.budget.frames, ShadowConfig::default()).unwrap();
    (Service::new(cfg, mem, l0, backend).unwrap(), l1)
}

/// The distinct shadow leaves installed over `pages` pages of L2 IPA from
/// `base` in `key`'s context.
fn installed_leaves(s: &Switching, w: &Worker, key: &ContextKey, base: u64, pages: u64) -> usize {
    (0..pages)
        .filter_map(|page| s.shadow_lookup(w, key, base + page * PAGE))
        .map(|leaf| leaf.l2_ipa_base)
        .collect::<BTreeSet<_>>()
        .len()
}

/// The leaf count and the live records equal the leaves installed.
fn assert_books_balance(s: &Switching, w: &Worker, key: &ContextKey, step: &str) {
    let installed = installed_leaves(s, w, key, L2_BLOCK, BLOCK / PAGE)
        + installed_leaves(s, w, key, OTHER_L2, 16);
    assert_eq!(
        (s.shadow_leaves(), s.reverse_map_records()),
        (installed, installed),
        "{step}: (leaf count, live records) against the leaves installed"
    );
}

/// The review's reproducer: the dirty-logging cycle (L0 write-protects
/// one page of the block, L2 reads all 512 pages in 4 KiB; hv lifts the
/// protection without an `l0_unmap`, L2's write maps the whole 2 MiB block
/// over the table). Before the fix the count went 512, 1023, 1534, ...
/// and after it passed the cap only 1 of 16 unrelated pages read stayed
/// mapped.
#[test]
fn a_block_replacing_a_table_of_pages_takes_their_records_and_count() {
    let (s, l1) = service(
        l0_split(0, READ_ONLY, ALL),
        L0RegionMap::new(vec![region(0, L1_MEMORY_BYTES, ALL)]).unwrap(),
        true,
    );
    let w = s.worker();
    let key = l1.key(1);
    let cap = s.config().budget.shadow_leaves;
    for cycle in 0..cap / 400 + 4 {
        s.l0().use_split.store(true, Ordering::SeqCst);
        s.l0_unmap(
            &w,
            IpaRange::new(P, P + PAGE).unwrap(),
            L0Change::WriteProtect,
        );
        for page in 0..BLOCK / PAGE {
            let t = s.translate(&w, &key, L2_BLOCK + page * PAGE, AccessKind::Read, &ABORT);
            assert!(matches!(t, Translated::Mapped(_)), "{t:?}");
        }
        assert_books_balance(&s, &w, &key, &format!("cycle {cycle}, 4 KiB pages"));
        assert_eq!(s.shadow_leaves(), 512);
        s.l0().use_split.store(false, Ordering::SeqCst);
        let t = s.translate(&w, &key, L2_BLOCK + PAGE, AccessKind::Write, &ABORT);
        let Translated::Mapped(m) = t else {
            panic!("{t:?}")
        };
        assert_eq!(m.size, BLOCK);
        assert_books_balance(&s, &w, &key, &format!("cycle {cycle}, the block"));
        assert_eq!(s.shadow_leaves(), 1, "cycle {cycle}");
    }
    for page in 0..16u64 {
        let t = s.translate(&w, &key, OTHER_L2 + page * PAGE, AccessKind::Read, &ABORT);
        assert!(matches!(t, Translated::Mapped(_)), "{t:?}");
    }
    let still_mapped = (0..16u64)
        .filter(|page| s.shadow_lookup(&w, &key, OTHER_L2 + page * PAGE).is_some())
        .count();
    assert_eq!(
        still_mapped, 16,
        "the leaf cap was reached by leaked counts"
    );
    assert_books_balance(&s, &w, &key, "after the unrelated reads");
    // The block's only record is its own: an L0 unmap of the written
    // page removes the block, and nothing is left recorded there.
    s.l0_unmap(
        &w,
        IpaRange::new(P + PAGE, P + 2 * PAGE).unwrap(),
        L0Change::Unmap,
    );
    assert!(s.shadow_lookup(&w, &key, L2_BLOCK).is_none());
    assert_books_balance(&s, &w, &key, "after the L0 unmap");
}

/// The mirror case: a 4 KiB install into a 2 MiB shadow block, away from
/// the block's base. L0 maps the block read-only when L2 first reads it
/// (a 2 MiB read-only leaf); hv then makes one page (not the first)
/// writable in 4 KiB, a permission increase with no `l0_unmap`, and L2's
/// write there installs a 4 KiB page, breaking the block. Before the fix
/// the block's record stayed live (two records, one leaf).
#[test]
fn a_page_breaking_a_block_takes_the_blocks_record() {
    let offset = 5 * PAGE;
    let (s, l1) = service(
        l0_split(offset, ALL, READ_ONLY),
        L0RegionMap::new(vec![
            region(0, P, ALL),
            region(P, BLOCK, READ_ONLY),
            region(P + BLOCK, L1_MEMORY_BYTES - P - BLOCK, ALL),
        ])
        .unwrap(),
        false,
    );
    let w = s.worker();
    let key = l1.key(1);
    let t = s.translate(&w, &key, L2_BLOCK + 7 * PAGE, AccessKind::Read, &ABORT);
    let Translated::Mapped(m) = t else {
        panic!("{t:?}")
    };
    assert_eq!(m.size, BLOCK);
    assert_books_balance(&s, &w, &key, "the read-only block");
    s.l0().use_split.store(true, Ordering::SeqCst);
    let t = s.translate(&w, &key, L2_BLOCK + offset, AccessKind::Write, &ABORT);
    let Translated::Mapped(m) = t else {
        panic!("{t:?}")
    };
    assert_eq!((m.l2_ipa_base, m.size), (L2_BLOCK + offset, PAGE));
    assert_books_balance(&s, &w, &key, "the page that broke the block");
    assert_eq!(s.shadow_leaves(), 1);
    // The rest of the block re-faults into 4 KiB read-only pages.
    let t = s.translate(&w, &key, L2_BLOCK, AccessKind::Read, &ABORT);
    assert!(
        matches!(t, Translated::Mapped(m) if m.size == PAGE),
        "{t:?}"
    );
    assert_books_balance(&s, &w, &key, "a read next to it");
    assert_eq!(s.shadow_leaves(), 2);
}
