//! loom models of issue 3 item 7 on the real service: a walk that started
//! before an invalidation and finishes after it never inserts its stale
//! result, and once `invalidate` returns no lookup (cache or shadow table)
//! returns anything in its scope.
#![cfg(loom)]

use crate::shadow_support;

use loom::thread;
use shadow_mmu::service::{Retry, Translated};
use shadow_support::*;

/// vCPU: translate L2 IPA 0. L1 (main): remap IPA 0 from OLD to NEW, then
/// TLBI IPAS2E1. After the TLBI returns, neither the cache nor the shadow
/// may give OLD, whatever the vCPU's walk saw; the vCPU's own answer may
/// be OLD (its walk overlapped the TLBI: a TLB may have used it), NEW, or a
/// retry.
#[test]
fn no_stale_insert_and_nothing_in_scope_after_invalidate() {
    loom::model(|| {
        let s = service(1);
        let vcpu = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                let t = read(&s, &w, &key(ROOT), 0);
                match t {
                    Translated::Mapped(_) => {
                        let l1 = l1_of(&t, 0).expect("maps IPA 0");
                        assert!(l1 == OLD || l1 == NEW, "{t:?}");
                    }
                    Translated::Retry(Retry::InvalidationRaced | Retry::Throttled) => {}
                    other => panic!("unexpected {other:?}"),
                }
            })
        };
        let w = s.worker();
        s.memory().write(L3_TABLE, NEW | PAGE);
        s.invalidate(&w, 1, &ipas2e1(0));
        assert_page_0_not_stale(&s, &w, "right after invalidate");
        vcpu.join().unwrap();
        assert_page_0_not_stale(&s, &w, "after the vCPU finished");
    });
}

/// Page 0 is cached (leaf and table paths) and shadowed with OLD. A vCPU
/// translates it (a cache hit that re-installs the shadow entry) while L1
/// remaps it to NEW and issues TLBI IPAS2E1: once the TLBI returns, and
/// after the vCPU is done, neither the cache nor the shadow may give OLD. A
/// translate that read the generation while the invalidation was removing
/// entries must not put the hit back.
#[test]
fn a_hit_racing_with_invalidate_is_not_reinstalled() {
    loom::model(|| {
        let s = service(1);
        let w = s.worker();
        assert_eq!(l1_of(&read(&s, &w, &key(ROOT), 0), 0), Some(OLD));
        assert!(s.shadow_lookup(&w, &key(ROOT), 0).is_some());
        let vcpu = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                let t = read(&s, &w, &key(ROOT), 0);
                if let Some(l1) = l1_of(&t, 0) {
                    assert!(l1 == OLD || l1 == NEW, "{t:?}");
                }
            })
        };
        s.memory().write(L3_TABLE, NEW | PAGE);
        s.invalidate(&w, 1, &ipas2e1(0));
        assert_page_0_not_stale(&s, &w, "right after invalidate");
        vcpu.join().unwrap();
        assert_page_0_not_stale(&s, &w, "after the vCPU finished");
    });
}

/// Page 0 is cached and shadowed with OLD; a vCPU translates it (a hit)
/// while L1 remaps it and flushes the whole VMID (VMALLS12E1, a flush-number
/// bump rather than per-entry removal): afterwards nothing cached or
/// shadowed maps page 0 to OLD.
#[test]
fn vmid_flush_races_with_a_hit() {
    loom::model(|| {
        let s = service(1);
        let w = s.worker();
        assert_eq!(l1_of(&read(&s, &w, &key(ROOT), 0), 0), Some(OLD));
        let vcpu = {
            let s = s.clone();
            thread::spawn(move || {
                let w = s.worker();
                let t = read(&s, &w, &key(ROOT), 0);
                if let Some(l1) = l1_of(&t, 0) {
                    assert!(l1 == OLD || l1 == NEW, "{t:?}");
                }
            })
        };
        s.memory().write(L3_TABLE, NEW | PAGE);
        s.invalidate(&w, 1, &ipc::tlbi::InvalidateScope::Vmid);
        // The vCPU may since have walked NEW and installed it; never OLD.
        let check = |when: &str| {
            if let Some(m) = s.shadow_lookup(&w, &key(ROOT), 0) {
                assert_eq!(m.pa_base, PA_OFFSET + NEW, "stale shadow {when}");
            }
            let guard = w.pin();
            if let Some(hit) = s.lookup(&key(ROOT), 0, &guard) {
                assert_eq!(hit.output_address(0), NEW, "stale cache {when}");
            }
        };
        check("right after the flush");
        vcpu.join().unwrap();
        check("after the vCPU finished");
    });
}
