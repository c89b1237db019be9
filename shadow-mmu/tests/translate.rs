//! Translate: composition through the service, block-granular cache hits,
//! faults injected (never cached), MMIO/outside-L1, statistics, and partial
//! walks identical to full walks (property test over all three granules).
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use common::*;
use proptest::prelude::*;
use shadow_mmu::cache::{cached_paths, walk_from, WalkKind};
use shadow_mmu::compose::Permissions;
use shadow_mmu::service::Translated;
use walker::{AccessKind, Granule, Stage2Walker};

#[test]
fn page_is_composed_with_l0_and_installed() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x1000_3000, 0x8000_5000, 3, RW);
    let s = service(mem);
    let w = s.worker();
    let key = l1.key(7);
    let t = read(&s, &w, &key, 0x1000_3abc);
    assert_eq!(pa_of(&t, 0x1000_3abc), Some(PA_OFFSET + 0x8000_5abc));
    let Translated::Mapped(m) = t else {
        panic!("{t:?}")
    };
    assert_eq!(m.size, 4096);
    assert!(m
        .perms
        .contains(Permissions::READ.union(Permissions::WRITE)));
    // What the service answered is what the shadow table holds.
    assert_eq!(s.shadow_lookup(&w, &key, 0x1000_3abc), Some(m));
    let stats = s.stats();
    assert_eq!((stats.hits, stats.misses, stats.walks), (0, 1, 1));
}

#[test]
fn one_block_entry_serves_every_ipa_inside_it() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    // A 2 MiB block at L2 IPA 0x4020_0000 -> L1 IPA 0x8060_0000.
    l1.map(0x4020_0000, 0x8060_0000, 2, RW);
    // A 1 GiB block at 0 -> 0xC000_0000 (kept inside L1 memory).
    l1.map(0, 0xc000_0000, 1, RW);
    let s = service(mem);
    let w = s.worker();
    let key = l1.key(1);
    for ipa in [0x4020_0000u64, 0x4020_0008, 0x402f_f000, 0x403f_fff8] {
        let t = read(&s, &w, &key, ipa);
        assert_eq!(
            pa_of(&t, ipa),
            Some(PA_OFFSET + 0x8060_0000 + (ipa - 0x4020_0000))
        );
    }
    for ipa in [0x10_0000u64, 0x3fff_f000, 0x2000_0000] {
        let t = read(&s, &w, &key, ipa);
        assert_eq!(pa_of(&t, ipa), Some(PA_OFFSET + 0xc000_0000 + ipa));
    }
    let stats = s.stats();
    assert_eq!(stats.misses, 2, "one walk per block, {stats:?}");
    assert_eq!(stats.hits, 5);
    // The lock-free lookup finds the block entry for any IPA inside it.
    let guard = w.pin();
    let hit = s.lookup(&key, 0x4030_1234, &guard).expect("block hit");
    assert_eq!((hit.ipa_base, hit.size()), (0x4020_0000, 2 << 20));
    assert_eq!(hit.output_address(0x4030_1234), 0x8070_1234);
    assert!(s.lookup(&key, 0x4040_0000, &guard).is_none());
}

#[test]
fn faults_are_injected_and_never_cached() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x2000_0000, 0x8000_0000, 3, RO);
    let s = service(mem);
    let w = s.worker();
    let key = l1.key(1);
    // Translation fault (nothing mapped): level 3 (the tables exist).
    l1.map(0x2000_1000, 0x8000_1000, 3, RW);
    l1.unmap(0x2000_1000, 3);
    for _ in 0..2 {
        let Translated::Inject(i) = read(&s, &w, &key, 0x2000_1000) else {
            panic!()
        };
        assert_eq!(i.esr_el2 & 0x3f, 0x07, "translation fault level 3");
        assert_eq!(i.hpfar_el2, (0x2000_1000 >> 12) << 4);
        assert_eq!(i.far_el2, 0x1234_5000);
    }
    // A read of the read-only page is cached; a write to it walks again
    // and gets the permission fault (never served from the cache).
    assert!(matches!(
        read(&s, &w, &key, 0x2000_0000),
        Translated::Mapped(_)
    ));
    let write = s.translate(&w, &key, 0x2000_0000, AccessKind::Write, &ABORT);
    let Translated::Inject(i) = write else {
        panic!("{write:?}")
    };
    assert_eq!(i.esr_el2 & 0x3f, 0x0f, "permission fault level 3");
    assert_ne!(i.esr_el2 & (1 << 6), 0, "WnR");
    let stats = s.stats();
    assert_eq!(stats.hits, 0);
    assert_eq!(stats.misses, 4);
}

#[test]
fn mmio_and_outside_l1_are_reported_not_mapped() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x3000_0000, MMIO_BASE + 0x5000, 3, RW);
    l1.map(0x3000_1000, 0x2_0000_0000, 3, RW);
    let s = service(mem);
    let w = s.worker();
    let key = l1.key(1);
    assert_eq!(
        read(&s, &w, &key, 0x3000_0010),
        Translated::Mmio {
            l1_ipa: MMIO_BASE + 0x5010
        }
    );
    assert_eq!(
        read(&s, &w, &key, 0x3000_1ff8),
        Translated::OutsideL1 {
            l1_ipa: 0x2_0000_0ff8
        }
    );
    assert_eq!(s.shadow_lookup(&w, &key, 0x3000_0000), None);
    assert_eq!(s.shadow_lookup(&w, &key, 0x3000_1000), None);
}

#[test]
fn a_miss_below_a_cached_table_walks_only_the_remaining_levels() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(0x1000_0000, 0x8000_0000, 3, RW);
    l1.map(0x1000_1000, 0x8000_1000, 3, RW);
    l1.map(0x1020_0000, 0x8000_2000, 3, RW);
    let s = service(mem);
    let w = s.worker();
    let key = l1.key(1);
    read(&s, &w, &key, 0x1000_0000);
    read(&s, &w, &key, 0x1000_1000); // same level-3 table: partial
    read(&s, &w, &key, 0x1020_0000); // same level-2 table: partial
    let stats = s.stats();
    assert_eq!((stats.walks, stats.partial_walks), (1, 2), "{stats:?}");
    assert_eq!(
        pa_of(&read(&s, &w, &key, 0x1020_0000), 0x1020_0000),
        Some(PA_OFFSET + 0x8000_2000)
    );
}

#[test]
fn contexts_are_distinct_per_vmid_base_and_walk_fields() {
    let mem = L1Memory::new();
    let a = L1Tables::new(mem.clone(), Granule::K4);
    let b = L1Tables::at(mem.clone(), Granule::K4, 4 << 20);
    a.map(0x1000, 0x8000_1000, 3, RW);
    b.map(0x1000, 0x8000_2000, 3, RW);
    let s = service(mem);
    let w = s.worker();
    assert_eq!(
        pa_of(&read(&s, &w, &a.key(1), 0x1000), 0x1000),
        Some(PA_OFFSET + 0x8000_1000)
    );
    assert_eq!(
        pa_of(&read(&s, &w, &b.key(1), 0x1000), 0x1000),
        Some(PA_OFFSET + 0x8000_2000)
    );
    assert_eq!(
        pa_of(&read(&s, &w, &a.key(2), 0x1000), 0x1000),
        Some(PA_OFFSET + 0x8000_1000)
    );
    assert_eq!(s.contexts(), 3);
    // VTCR fields that do not change a walk (IRGN0/ORGN0) do not make a
    // new context; CnP in VTTBR neither.
    let same = shadow_mmu::context::ContextKey::new(
        1,
        a.root | 1,
        a.vtcr() | (1 << 8) | (1 << 10),
        walker::Endianness::Little,
    );
    assert_eq!(same, a.key(1));
    let vmids: Vec<_> = [a.key(1), b.key(1), a.key(2)]
        .iter()
        .map(|k| s.shadow_vmid(&w, k).unwrap())
        .collect();
    assert!(vmids[0] != vmids[1] && vmids[1] != vmids[2] && vmids[0] != vmids[2]);
}

/// Random tables: a few tables, leaves at random levels, garbage and
/// invalid entries, faults of every kind the walk can meet.
fn random_tables(granule: Granule, seed: u64) -> (L1Tables, Vec<u64>) {
    let l1 = L1Tables::new(L1Memory::new(), granule);
    let mut rng = Rng(seed | 1);
    let mut ipas = Vec::new();
    let page = l1.size(3);
    // Keep to a window that shares a few upper-level tables.
    let window = l1.size(1) * 2;
    for _ in 0..24 {
        let ipa = rng.below(window) & !(page - 1);
        let level = [1i8, 2, 3, 3, 3][rng.below(5) as usize];
        let level = if granule != Granule::K4 && level == 1 {
            2
        } else {
            level
        };
        let size = l1.size(level);
        let oa = (rng.below(1 << 31) & !(size - 1)) % (L1_MEMORY_BYTES - size);
        let attrs = match rng.below(6) {
            0 => RO,
            1 => RW & !(1 << 10), // AF clear: access flag fault
            2 => RW | (2 << 53),  // XN
            _ => RW,
        };
        if rng.below(8) == 0 {
            // Garbage where a leaf would go (block not permitted, etc.).
            let slot = l1.slot(ipa, level);
            l1.mem.write(slot, rng.next() & !(0xffff << 48));
        } else {
            l1.map(ipa, oa, level, attrs);
        }
        ipas.push(ipa + rng.below(page));
    }
    (l1, ipas)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// For any walk path a successful walk yields and any IPA in that
    /// path's region, the walk from below the path gives exactly the full
    /// walk's result: translation (trail included) or fault.
    #[test]
    fn partial_walks_equal_full_walks(
        granule in prop_oneof![Just(Granule::K4), Just(Granule::K16), Just(Granule::K64)],
        seed in any::<u64>(),
        picks in proptest::collection::vec((any::<u64>(), any::<u64>(), 0u8..4), 8),
    ) {
        let (l1, ipas) = random_tables(granule, seed);
        let walker = Stage2Walker::new(l1.key(1).registers(), &features());
        let accesses = [AccessKind::Read, AccessKind::Write, AccessKind::ExecEl1, AccessKind::ExecEl0];
        for (a, b, acc) in picks {
            let ipa = ipas[(a % ipas.len() as u64) as usize];
            let Ok(t) = walker.walk(&l1.mem, ipa, AccessKind::Read) else { continue };
            for path in cached_paths(&walker, &t) {
                prop_assert!(path.region_base <= ipa && ipa - path.region_base < path.span());
                // Another IPA in the region: half the time near a known leaf.
                let other = if b % 4 == 0 {
                    path.region_base + (b >> 1) % path.span()
                } else {
                    let near = ipas[((b >> 1) % ipas.len() as u64) as usize];
                    path.region_base | (near & (path.span() - 1))
                };
                let access = accesses[acc as usize];
                let full = walker.walk(&l1.mem, other, access);
                let (partial, kind) = walk_from(&walker, &l1.mem, Some(&path), other, access);
                prop_assert_eq!(kind, WalkKind::Partial);
                prop_assert_eq!(partial, full);
            }
        }
    }
}
