//! loom model of an L0 unmap (issue 3 item 6) racing with a translate on
//! the real service: L0 takes away the L1 pages a shadow entry is built on
//! and then calls `l0_unmap`; a translate that composed with the old L0
//! mapping either had its entry found through the reverse map and removed,
//! or saw the L0 generation move and backed out. Once `l0_unmap` returns, no
//! shadow entry points at the removed pages, including one installed before
//! the race whose record a refused re-install replaced (a leaf never
//! outlives its reverse-map record).
#![cfg(loom)]

use crate::shadow_support;

use ipc::message::L0Change;
use ipc::tlbi::IpaRange;
use loom::thread;
use shadow_mmu::service::{Retry, Translated};
use shadow_support::*;

/// What a translate of page 0 racing with L0's change may answer: the old
/// L0 map (mapped, or reported outside L1 memory once L0 took it), or a
/// retry because the change overlapped it; never anything else.
fn assert_old_or_backed_out(t: &Translated) {
    match t {
        Translated::Mapped(_) => assert_eq!(l1_of(t, 0), Some(OLD)),
        Translated::OutsideL1 { l1_ipa } => assert_eq!(*l1_ipa, OLD),
        Translated::Retry(Retry::InvalidationRaced) => {}
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn no_shadow_entry_survives_an_l0_unmap_of_its_pages() {
    loom::model(|| {
        let s = service(1);
        let vcpu = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                assert_old_or_backed_out(&read(&s, &w, &key(ROOT), 0));
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

/// L0's map change reaches a translate only through the L0 generation,
/// also when nothing else orders it: the service thread takes the change
/// (here: makes it) while its worker is already pinned, as it is while it
/// serves a ring's requests in a [`Burst`](shadow_mmu::service::Burst)
/// (an `L0Unmap` request after the change that a requester made and the
/// ring's Acquire carried over). Then `l0_unmap`'s own pin nests and runs
/// no barrier, so the bump's Release is the only thing between the change
/// and a translate that reads the new generation; with the bump `Acquire`
/// only, the vCPU composes with the old map under the new generation, its
/// install passes the re-check after the unmap took the records, and the
/// leaf outlives the unmap. (A lone pin executes a SeqCst fence, under loom
/// on every pin (crossbeam maps its compiler fence to loom's fence), which
/// hid this from `no_shadow_entry_survives_an_l0_unmap_of_its_pages`.)
#[test]
fn an_l0_change_made_under_a_burst_reaches_every_translate_of_the_new_generation() {
    loom::model(|| {
        let s = service(1);
        let vcpu = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                assert_old_or_backed_out(&read(&s, &w, &key(ROOT), 0));
            })
        };
        let w = s.worker();
        let burst = w.burst();
        s.l0().remove_old();
        s.l0_unmap(
            &w,
            IpaRange::new(OLD, OLD + 0x2000).unwrap(),
            L0Change::Unmap,
        );
        drop(burst);
        vcpu.join().unwrap();
        assert_eq!(
            s.shadow_lookup(&w, &key(ROOT), 0),
            None,
            "a leaf composed with L0's old map outlived l0_unmap"
        );
    });
}

/// Page 0 is shadowed (L1 IPA OLD) before the race. A vCPU translates it
/// again (a cache hit that re-installs the same leaf, its reverse-map
/// record replacing the existing one) while L0 write-protects an unrelated
/// page (moving the L0 generation), then takes OLD away and calls
/// `l0_unmap`. Whatever the order, once that `l0_unmap` returns and after
/// the vCPU is done, no shadow leaf maps page 0: a translate refused by the
/// L0 generation must not leave the existing leaf without its record
/// (review F1; fails when the refusal removes only the record).
#[test]
fn a_refused_reinstall_never_hides_an_existing_leaf_from_l0_unmap() {
    loom::model(|| {
        let s = service(1);
        let w = s.worker();
        assert_eq!(l1_of(&read(&s, &w, &key(ROOT), 0), 0), Some(OLD));
        // L0 is the spawned thread and the vCPU the main one, so one
        // preemption puts the vCPU's install between the two L0 changes.
        let l0 = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                let unrelated = IpaRange::new(0xc000_0000, 0xc000_1000).unwrap();
                s.l0_unmap(&w, unrelated, L0Change::WriteProtect);
                s.l0().remove_old();
                s.l0_unmap(
                    &w,
                    IpaRange::new(OLD, OLD + 0x1000).unwrap(),
                    L0Change::Unmap,
                );
                assert_eq!(s.shadow_lookup(&w, &key(ROOT), 0), None, "after l0_unmap");
            })
        };
        assert_old_or_backed_out(&read(&s, &w, &key(ROOT), 0));
        l0.join().unwrap();
        assert_eq!(s.shadow_lookup(&w, &key(ROOT), 0), None, "after both");
    });
}

/// Pages 0 and 1 (L1 IPAs OLD and OLD + 0x1000) are shadowed before the
/// race, so the `l0_unmap` of both goes in two batches (one record each
/// under loom): the reverse-map lock is released between them, after the
/// cursor passed OLD. A vCPU translates page 0 again meanwhile, with L0's
/// old map or its new one. A record it inserts behind the cursor is never
/// seen by this `l0_unmap`, so its translate must back out by itself (the
/// L0 generation moved before the first batch); either way, once both are
/// done no shadow leaf maps page 0 or page 1. Fails with the generation
/// bumped after the first batch instead of before it. (L0 is the spawned
/// thread and the vCPU the main one, so two preemptions put the vCPU's
/// install between the batches after a composition with the old map.)
#[test]
fn a_translate_between_l0_unmap_batches_never_keeps_a_leaf_on_the_old_map() {
    loom::model(|| {
        let s = service(1);
        let w = s.worker();
        assert_eq!(l1_of(&read(&s, &w, &key(ROOT), 0), 0), Some(OLD));
        assert_eq!(
            l1_of(&read(&s, &w, &key(ROOT), 0x1000), 0x1000),
            Some(OLD + 0x1000)
        );
        let l0 = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                s.l0().remove_old();
                let removed = s.l0_unmap(
                    &w,
                    IpaRange::new(OLD, OLD + 0x2000).unwrap(),
                    L0Change::Unmap,
                );
                assert!(removed >= 1, "page 1's leaf at least");
                assert_eq!(s.shadow_lookup(&w, &key(ROOT), 0x1000), None);
            })
        };
        assert_old_or_backed_out(&read(&s, &w, &key(ROOT), 0));
        l0.join().unwrap();
        assert_eq!(s.shadow_lookup(&w, &key(ROOT), 0), None, "after both");
        assert_eq!(s.shadow_lookup(&w, &key(ROOT), 0x1000), None);
    });
}
