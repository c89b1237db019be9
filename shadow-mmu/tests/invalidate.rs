//! Invalidation scope, for every stage-2 TLBI form: exactly the cached walk
//! results, intermediate paths and shadow entries that overlap the scope
//! go (for the VMID named, or every VMID for ALLE1), everything else stays;
//! the shadow VMID's hardware TLB is invalidated for what went.
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use common::*;
use ipc::tlbi::{
    EntryLevels, Granule as TlbiGranule, InvalidateScope, IpaRange, IpaScope, RangeOperand,
    Shareability, Tlbi, TlbiOp, TlbiParams, TtlHint,
};
use proptest::prelude::*;
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::Worker;
use shadow_mmu::shadow_table::TlbEvent;
use walker::Granule;

/// One L1 leaf of the fixture.
#[derive(Clone, Copy, Debug)]
struct Leaf {
    ipa: u64,
    size: u64,
}

impl Leaf {
    fn overlaps(&self, range: &IpaRange) -> bool {
        range.overlaps(self.ipa, self.size)
    }
}

/// L1 tables with pages, 2 MiB and 1 GiB blocks spread over 4 GiB of L2
/// IPA, the same tables used by VMID 1 and VMID 2, every leaf translated in
/// both (so cached and shadowed).
struct Fixture {
    l1: L1Tables,
    s: TestService,
    w: Worker,
    leaves: Vec<Leaf>,
}

fn fixture(seed: u64) -> Fixture {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let mut rng = Rng(seed | 1);
    let mut leaves: Vec<Leaf> = Vec::new();
    // One 1 GiB block at 3 GiB.
    l1.map(3 << 30, 1 << 30, 1, RW);
    leaves.push(Leaf {
        ipa: 3 << 30,
        size: 1 << 30,
    });
    for _ in 0..40 {
        let level = if rng.below(3) == 0 { 2 } else { 3 };
        let size = l1.size(level);
        let ipa = rng.below(3 << 30) & !(size - 1);
        if leaves
            .iter()
            .any(|l| l.ipa < ipa + (2 << 20) && ipa < l.ipa + l.size.max(2 << 20))
        {
            continue; // keep leaves (and their level-3 tables) apart
        }
        let oa = rng.below(2 << 30) & !(size - 1);
        l1.map(ipa, oa, level, RW);
        leaves.push(Leaf { ipa, size });
    }
    let s = service_with(mem, 32 << 20, 8);
    let w = s.worker();
    for leaf in &leaves {
        for vmid in [1, 2] {
            let t = read(&s, &w, &l1.key(vmid), leaf.ipa);
            assert!(pa_of(&t, leaf.ipa).is_some(), "{t:?}");
        }
    }
    s.backend().take_tlb_log();
    Fixture { l1, s, w, leaves }
}

impl Fixture {
    fn key(&self, vmid: u16) -> ContextKey {
        self.l1.key(vmid)
    }

    fn cached(&self, vmid: u16, leaf: &Leaf) -> bool {
        let guard = self.w.pin();
        self.s
            .lookup(&self.key(vmid), leaf.ipa, &guard)
            .is_some_and(|e| e.ipa_base == leaf.ipa && e.size() == leaf.size)
    }

    fn shadowed(&self, vmid: u16, leaf: &Leaf) -> bool {
        self.s
            .shadow_lookup(&self.w, &self.key(vmid), leaf.ipa)
            .is_some()
    }

    /// After invalidating `scope` for VMID 1: every leaf overlapping it is
    /// gone from cache and shadow of the VMIDs in scope, every other leaf
    /// is still cached and shadowed, and the hardware TLB of the shadow
    /// VMID was invalidated over every leaf that went.
    fn check(&self, scope: &InvalidateScope) {
        let log = self.s.backend().take_tlb_log();
        for vmid in [1u16, 2] {
            let shadow_vmid = self.s.shadow_vmid(&self.w, &self.key(vmid)).unwrap();
            for leaf in &self.leaves {
                let gone = match scope {
                    InvalidateScope::AllVmids => true,
                    InvalidateScope::Vmid => vmid == 1,
                    InvalidateScope::Ipa(s) => vmid == 1 && leaf.overlaps(&s.range),
                };
                assert_eq!(
                    self.cached(vmid, leaf),
                    !gone,
                    "cache, vmid {vmid}, {leaf:?}, {scope:?}"
                );
                assert_eq!(
                    self.shadowed(vmid, leaf),
                    !gone,
                    "shadow, vmid {vmid}, {leaf:?}, {scope:?}"
                );
                if gone {
                    assert!(
                        log.iter()
                            .any(|(v, e)| *v == shadow_vmid && e.covers(leaf.ipa, leaf.size)),
                        "no hardware TLBI for {leaf:?} of shadow VMID {shadow_vmid}: {log:?}"
                    );
                }
            }
        }
    }
}

fn tlbi(op: TlbiOp) -> Tlbi {
    Tlbi {
        op,
        shareability: Shareability::InnerShareable,
        nxs: false,
    }
}

const TTL: TlbiParams = TlbiParams {
    feat_ttl: true,
    feat_lpa2: false,
    vtcr_ds: false,
};

#[test]
fn vmalls12e1_drops_one_vmid_only() {
    let f = fixture(1);
    let scope = tlbi(TlbiOp::Vmalls12e1).decode(0, TTL).unwrap();
    f.s.invalidate(&f.w, 1, &scope);
    f.check(&scope);
    assert!(f.s.backend().take_tlb_log().is_empty());
}

#[test]
fn alle1_drops_every_vmid() {
    let f = fixture(2);
    let scope = tlbi(TlbiOp::Alle1).decode(0, TTL).unwrap();
    f.s.invalidate(&f.w, 1, &scope);
    f.check(&scope);
}

#[test]
fn ipas2e1_drops_the_leaf_and_its_paths_ipas2le1_only_the_leaf() {
    let f = fixture(3);
    let page = *f.leaves.iter().find(|l| l.size == 4096).unwrap();
    // IPAS2LE1 (last level): the leaf goes, the table path stays, so the
    // next miss is a partial walk.
    let scope = tlbi(TlbiOp::Ipas2le1).decode(page.ipa >> 12, TTL).unwrap();
    f.s.invalidate(&f.w, 1, &scope);
    f.check(&scope);
    let before = f.s.stats();
    read(&f.s, &f.w, &f.key(1), page.ipa);
    let after = f.s.stats();
    assert_eq!(after.partial_walks, before.partial_walks + 1);
    // IPAS2E1 (any level): the paths above the leaf go too: a full walk.
    let scope = tlbi(TlbiOp::Ipas2e1).decode(page.ipa >> 12, TTL).unwrap();
    f.s.invalidate(&f.w, 1, &scope);
    f.check(&scope);
    let before = f.s.stats();
    read(&f.s, &f.w, &f.key(1), page.ipa);
    let after = f.s.stats();
    assert_eq!(after.walks, before.walks + 1);
    assert_eq!(after.partial_walks, before.partial_walks);
}

#[test]
fn a_page_inside_a_block_drops_the_whole_block_whatever_the_ttl_hint() {
    let f = fixture(4);
    let block = *f.leaves.iter().find(|l| l.size == 2 << 20).unwrap();
    // TTL says "level 3, 4K" but the entry is a 2 MiB block: the
    // architecture lets the hint be wrong (then it may invalidate nothing);
    // Umbra always removes every overlapping entry, which is permitted.
    let xt = ((block.ipa + 0x5000) >> 12) | (0b0111 << 44);
    let scope = tlbi(TlbiOp::Ipas2e1).decode(xt, TTL).unwrap();
    assert!(matches!(
        scope,
        InvalidateScope::Ipa(IpaScope {
            hint: TtlHint::Leaf { level: 3, .. },
            ..
        })
    ));
    f.s.invalidate(&f.w, 1, &scope);
    f.check(&scope);
}

#[test]
fn range_forms_drop_exactly_the_overlapping_leaves() {
    let f = fixture(5);
    let operand = RangeOperand {
        granule: Some(TlbiGranule::K4),
        scale: 2,
        num: 7,
        ttl: 0,
        base_addr: 0x20000, // 512 MiB
    };
    let scope = tlbi(TlbiOp::Ripas2e1)
        .decode(operand.to_bits(), TTL)
        .unwrap();
    f.s.invalidate(&f.w, 1, &scope);
    f.check(&scope);
    let operand = RangeOperand {
        granule: Some(TlbiGranule::K64),
        scale: 1,
        num: 3,
        ttl: 2,
        base_addr: 0x1_8000 >> 4 << 4, // 6 GiB / 64K ... within the space
    };
    let scope = tlbi(TlbiOp::Ripas2le1)
        .decode(operand.to_bits(), TTL)
        .unwrap();
    f.s.invalidate(&f.w, 1, &scope);
    f.check(&scope);
}

#[test]
fn non_stage2_tlbis_and_unknown_vmids_touch_nothing() {
    let f = fixture(6);
    // VAE1IS, VMALLE1IS, ALLE2IS, VAE2IS: not stage-2 TLBIs, never sent.
    for (crn, crm, op2, op1) in [(8, 3, 1, 0), (8, 3, 0, 0), (8, 3, 0, 4), (8, 3, 1, 4)] {
        assert_eq!(Tlbi::from_sys_encoding(1, op1, crn, crm, op2), None);
    }
    // A whole-VMID flush for a VMID with no context removes nothing.
    assert_eq!(f.s.invalidate(&f.w, 99, &InvalidateScope::Vmid), 0);
    f.check(&InvalidateScope::Ipa(IpaScope {
        range: IpaRange::new(1 << 47, (1 << 47) + 4096).unwrap(),
        levels: EntryLevels::AnyLevel,
        hint: TtlHint::None,
    }));
}

#[test]
fn invalidation_cost_follows_what_is_covered() {
    // One page among many cached: the removal visits only what overlaps
    // (the returned count), and the hardware TLBI covers only that page
    // (and its level-3 table, which the shadow frees once empty).
    let f = fixture(7);
    let page = *f.leaves.iter().find(|l| l.size == 4096).unwrap();
    let scope = tlbi(TlbiOp::Ipas2le1).decode(page.ipa >> 12, TTL).unwrap();
    let removed = f.s.invalidate(&f.w, 1, &scope);
    assert_eq!(removed, 2, "the cached leaf and its shadow leaf");
    let log = f.s.backend().take_tlb_log();
    assert!(log
        .iter()
        .all(|(_, e)| matches!(e, TlbEvent::Range { len, .. } if *len <= 2 << 20)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any IPA scope (range, levels, hint) removes exactly the overlapping
    /// leaves of the VMID it names.
    #[test]
    fn any_ipa_scope_is_exact(
        seed in 1u64..1000,
        start in 0u64..(4u64 << 30),
        len in 1u64..(1u64 << 31),
        leaf_only in any::<bool>(),
        level in 0u8..4,
    ) {
        let f = fixture(seed);
        let start = start & !0xfff;
        let range = IpaRange::new(start, start + len.max(4096)).unwrap();
        let scope = InvalidateScope::Ipa(IpaScope {
            range,
            levels: if leaf_only { EntryLevels::LeafOnly } else { EntryLevels::AnyLevel },
            hint: TtlHint::Leaf { granule: TlbiGranule::K4, level },
        });
        f.s.invalidate(&f.w, 1, &scope);
        f.check(&scope);
    }
}

#[test]
fn a_64k_page_is_shadowed_in_4k_pieces_that_all_go_with_it() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K64);
    // One 64 KiB page at L2 IPA 0x10_0000 -> L1 IPA 0x8001_0000.
    l1.map(0x10_0000, 0x8001_0000, 3, RW);
    let s = service(mem);
    let w = s.worker();
    let key = l1.key(1);
    for piece in [0x10_0000u64, 0x10_3000, 0x10_f000] {
        let t = read(&s, &w, &key, piece + 8);
        assert_eq!(
            pa_of(&t, piece + 8),
            Some(PA_OFFSET + 0x8001_0000 + (piece - 0x10_0000) + 8)
        );
        let shadow_mmu::service::Translated::Mapped(m) = t else {
            panic!("{t:?}")
        };
        assert_eq!(
            m.size, 4096,
            "the shadow uses 4 KiB pages under a 64 KiB L1 page"
        );
    }
    assert_eq!(s.stats().misses, 1, "one walk for the whole 64 KiB page");
    // TLBI of one 4 KiB unit inside it: the 64 KiB entry and every 4 KiB
    // shadow piece built from it go.
    let scope = tlbi(TlbiOp::Ipas2le1).decode(0x10_5000 >> 12, TTL).unwrap();
    s.invalidate(&w, 1, &scope);
    for piece in [0x10_0000u64, 0x10_3000, 0x10_f000] {
        assert!(s.shadow_lookup(&w, &key, piece).is_none(), "{piece:#x}");
    }
    let guard = w.pin();
    assert!(s.lookup(&key, 0x10_0000, &guard).is_none());
}
