//! Generations, deterministically: an invalidation (or L0 unmap) that
//! lands in the middle of a walk - from a hook in the memory the walker
//! reads - makes the translate answer `Retry::InvalidationRaced` and leaves
//! nothing behind; one that lands before the walk does not.
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use common::*;
use ipc::message::L0Change;
use ipc::tlbi::{InvalidateScope, IpaRange, Shareability, Tlbi, TlbiOp, TlbiParams};
use shadow_mmu::service::{Retry, Translated};
use walker::{Granule, GuestMemory, MemoryError};

type Hook = Box<dyn Fn(&TestService<HookedMemory>) + Send + Sync>;

/// L1 memory that runs a hook on the service at the n-th descriptor read.
#[derive(Clone)]
struct HookedMemory {
    inner: L1Memory,
    reads: Arc<AtomicUsize>,
    fire_at: Arc<AtomicUsize>,
    hook: Arc<Mutex<Option<Hook>>>,
    service: Arc<OnceLock<std::sync::Weak<TestService<HookedMemory>>>>,
}

impl GuestMemory for HookedMemory {
    fn read_descriptor(&self, address: u64) -> Result<u64, MemoryError> {
        let n = self.reads.fetch_add(1, Ordering::SeqCst);
        if n == self.fire_at.load(Ordering::SeqCst) {
            let service = self.service.get().and_then(|w| w.upgrade());
            if let (Some(service), Some(hook)) = (service, self.hook.lock().unwrap().take()) {
                hook(&service);
            }
        }
        self.inner.read_descriptor(address)
    }

    fn compare_exchange_descriptor(
        &self,
        address: u64,
        current: u64,
        new: u64,
    ) -> Result<Result<u64, u64>, MemoryError> {
        self.inner
            .compare_exchange_descriptor(address, current, new)
    }
}

struct Rig {
    l1: L1Tables,
    memory: HookedMemory,
    s: Arc<TestService<HookedMemory>>,
}

fn rig() -> Rig {
    let inner = L1Memory::new();
    let l1 = L1Tables::new(inner.clone(), Granule::K4);
    l1.map(0x1000, 0x8000_1000, 3, RW);
    l1.map(0x20_0000, 0x8020_0000, 2, RW);
    let memory = HookedMemory {
        inner,
        reads: Arc::new(AtomicUsize::new(0)),
        fire_at: Arc::new(AtomicUsize::new(usize::MAX)),
        hook: Arc::new(Mutex::new(None)),
        service: Arc::new(OnceLock::new()),
    };
    let s = Arc::new(service_with(memory.clone(), 16 << 20, 4));
    memory.service.set(Arc::downgrade(&s)).ok();
    Rig { l1, memory, s }
}

impl Rig {
    /// Run `hook` at the `nth` descriptor read from now.
    fn arm(&self, nth: usize, hook: Hook) {
        let now = self.memory.reads.load(Ordering::SeqCst);
        *self.memory.hook.lock().unwrap() = Some(hook);
        self.memory.fire_at.store(now + nth, Ordering::SeqCst);
    }
}

fn ipas2e1(ipa: u64) -> InvalidateScope {
    Tlbi {
        op: TlbiOp::Ipas2e1,
        shareability: Shareability::InnerShareable,
        nxs: false,
    }
    .decode(ipa >> 12, TlbiParams::default())
    .unwrap()
}

#[test]
fn a_tlbi_during_the_walk_refuses_the_insert() {
    // Every read of the walk (start level, level 2, leaf) in turn.
    for nth in 0..3 {
        let r = rig();
        let key = r.l1.key(1);
        let w = r.s.worker();
        r.arm(
            nth,
            Box::new(|s| {
                let w = s.worker();
                s.invalidate(&w, 1, &ipas2e1(0x1000));
            }),
        );
        assert_eq!(
            read(&r.s, &w, &key, 0x1000),
            Translated::Retry(Retry::InvalidationRaced),
            "TLBI at read {nth}"
        );
        let guard = w.pin();
        assert!(r.s.lookup(&key, 0x1000, &guard).is_none());
        drop(guard);
        assert!(r.s.shadow_lookup(&w, &key, 0x1000).is_none());
        assert_eq!(r.s.stats().raced, 1);
        // The retry then maps it.
        assert!(pa_of(&read(&r.s, &w, &key, 0x1000), 0x1000).is_some());
    }
}

#[test]
fn whole_vmid_flush_and_l0_unmap_during_the_walk_also_refuse() {
    let r = rig();
    let key = r.l1.key(1);
    let w = r.s.worker();
    r.arm(
        1,
        Box::new(|s| {
            let w = s.worker();
            s.invalidate(&w, 1, &InvalidateScope::Vmid);
        }),
    );
    assert_eq!(
        read(&r.s, &w, &key, 0x20_1000),
        Translated::Retry(Retry::InvalidationRaced)
    );
    r.arm(
        1,
        Box::new(|s| {
            let w = s.worker();
            let range = IpaRange::new(0x8020_0000, 0x8040_0000).unwrap();
            s.l0_unmap(&w, range, L0Change::WriteProtect);
        }),
    );
    assert_eq!(
        read(&r.s, &w, &key, 0x20_1000),
        Translated::Retry(Retry::InvalidationRaced)
    );
    assert!(r.s.shadow_lookup(&w, &key, 0x20_1000).is_none());
    assert!(pa_of(&read(&r.s, &w, &key, 0x20_1000), 0x20_1000).is_some());
}

#[test]
fn a_tlbi_for_another_vmid_during_the_walk_does_not_refuse() {
    let r = rig();
    let key = r.l1.key(1);
    let w = r.s.worker();
    // VMID 2 has a context too; its TLBI does not touch VMID 1's.
    read(&r.s, &w, &r.l1.key(2), 0x1000);
    r.arm(
        1,
        Box::new(|s| {
            let w = s.worker();
            s.invalidate(&w, 2, &InvalidateScope::Vmid);
        }),
    );
    assert!(pa_of(&read(&r.s, &w, &key, 0x1000), 0x1000).is_some());
    assert_eq!(r.s.stats().raced, 0);
}

fn scoped(op: TlbiOp, ipa: u64) -> InvalidateScope {
    Tlbi {
        op,
        shareability: Shareability::InnerShareable,
        nxs: false,
    }
    .decode(ipa >> 12, TlbiParams::default())
    .unwrap()
}

/// Runs a translate of 0x1000 with `hook` firing mid-walk; whether it was
/// refused.
fn refused_with(hook: Hook) -> bool {
    let r = rig();
    let key = r.l1.key(1);
    let w = r.s.worker();
    r.arm(1, hook);
    match read(&r.s, &w, &key, 0x1000) {
        Translated::Retry(Retry::InvalidationRaced) => true,
        t => {
            assert!(pa_of(&t, 0x1000).is_some(), "{t:?}");
            let guard = w.pin();
            assert!(r.s.lookup(&key, 0x1000, &guard).is_some());
            false
        }
    }
}

#[test]
fn only_invalidations_the_walk_depends_on_refuse_it() {
    // The walk of 0x1000 goes through the level-1 descriptor of [0, 1 GiB)
    // and ends in the page at 0x1000.
    let tlbi = |op, ipa| -> Hook {
        Box::new(move |s| {
            let w = s.worker();
            s.invalidate(&w, 1, &scoped(op, ipa));
        })
    };
    // A leaf-only TLBI of another page: not a dependency.
    assert!(!refused_with(tlbi(TlbiOp::Ipas2le1, 0x5000)));
    // A leaf-only TLBI of the page itself: refused.
    assert!(refused_with(tlbi(TlbiOp::Ipas2le1, 0x1000)));
    // An any-level TLBI elsewhere under the same level-1 descriptor: the
    // tables the walk read may have changed, refused.
    assert!(refused_with(tlbi(TlbiOp::Ipas2e1, 0x3000_0000)));
    // An any-level TLBI under another level-1 descriptor: not a dependency.
    assert!(!refused_with(tlbi(TlbiOp::Ipas2e1, 0x4000_0000)));
    // More unrelated TLBIs than the context remembers: refused, safely.
    assert!(refused_with(Box::new(|s| {
        let w = s.worker();
        for n in 0..=shadow_mmu::context::INVALIDATION_LOG as u64 {
            s.invalidate(&w, 1, &scoped(TlbiOp::Ipas2le1, 0x10_0000 + (n << 12)));
        }
    })));
}
