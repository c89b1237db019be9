#![cfg(not(loom))]
//! Review 21 F1: L1's stage-1 TLBIs for L2 cover every entry of its VMID,
//! whatever its stage-2 root; each (VTTBR, VTCR) of one L1 VMID is a
//! context with its own shadow VMID, and `for_each_shadow_vmid` gives hv
//! all of them (and no other VMID's).
use crate::common;
use common::*;
use shadow_mmu::service::Translated;
use walker::{AccessKind, Granule};

#[test]
fn every_root_of_an_l1_vmid_gives_its_shadow_vmid() {
    let mem = L1Memory::new();
    let root_a = L1Tables::new(mem.clone(), Granule::K4);
    let root_b = L1Tables::at(mem.clone(), Granule::K4, 1 << 20);
    let root_c = L1Tables::at(mem.clone(), Granule::K4, 2 << 20);
    for tables in [&root_a, &root_b, &root_c] {
        tables.map(0x1000_0000, 0x8000_0000, 3, RW);
    }
    let s = service(mem);
    let w = s.worker();
    // L1 VMID 7 on roots A and B, VMID 8 on root C.
    let keys = [root_a.key(7), root_b.key(7), root_c.key(8)];
    for key in &keys {
        let t = s.translate(&w, key, 0x1000_0000, AccessKind::Read, &ABORT);
        assert!(matches!(t, Translated::Mapped(_)), "{t:?}");
    }
    let shadow = |key| s.shadow_vmid(&w, key).expect("a context");
    let (a, b, c) = (shadow(&keys[0]), shadow(&keys[1]), shadow(&keys[2]));
    assert!(a != b && b != c && a != c, "{a} {b} {c}");
    let of = |vmid| {
        let mut vmids = Vec::new();
        s.for_each_shadow_vmid(&w, vmid, |v| vmids.push(v));
        vmids.sort();
        vmids
    };
    let mut both = vec![a, b];
    both.sort();
    assert_eq!(of(7), both);
    assert_eq!(of(8), vec![c]);
    assert_eq!(of(9), Vec::<u16>::new());
}
