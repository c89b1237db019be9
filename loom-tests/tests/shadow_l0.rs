//! loom model of an L0 unmap (issue 3 item 6) racing with a translate on
//! the real service: L0 takes away the L1 pages a shadow entry is built on
//! and then calls `l0_unmap`; a translate that composed with the old L0
//! mapping either had its entry found through the reverse map and removed,
//! or saw the L0 generation move and backed out. Once `l0_unmap` returns, no
//! shadow entry points at the removed pages.
#![cfg(loom)]

mod shadow_support;

use ipc::message::L0Change;
use ipc::tlbi::IpaRange;
use loom::thread;
use shadow_mmu::service::{Retry, Translated};
use shadow_support::*;

#[test]
fn no_shadow_entry_survives_an_l0_unmap_of_its_pages() {
    loom::model(|| {
        let s = service(1);
        let vcpu = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                match read(&s, &w, &key(ROOT), 0) {
                    t @ Translated::Mapped(_) => assert_eq!(l1_of(&t, 0), Some(OLD)),
                    Translated::OutsideL1 { l1_ipa } => assert_eq!(l1_ipa, OLD),
                    Translated::Retry(Retry::InvalidationRaced) => {}
                    other => panic!("unexpected {other:?}"),
                }
            })
        };
        let w = s.worker();
        s.l0().remove_old();
        s.l0_unmap(
            &w,
            IpaRange::new(OLD, OLD + 0x2000).unwrap(),
            L0Change::Unmap,
        );
        assert_eq!(s.shadow_lookup(&w, &key(ROOT), 0), None, "after l0_unmap");
        vcpu.join().unwrap();
        assert_eq!(s.shadow_lookup(&w, &key(ROOT), 0), None, "after the vCPU");
    });
}
