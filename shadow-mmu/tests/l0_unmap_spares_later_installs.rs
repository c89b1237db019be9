//! Review 25, R25-2: an L0 unmap whose batch holds a record of a context
//! that is recycled before the batch reaches it unmaps, in the slot's
//! *successor*, whatever leaf the successor installed at that L2 IPA since,
//! although that leaf is built on an L1 page outside the unmapped range
//! (issue item 6: "exactly the shadow entries built on that range are
//! removed"), and leaves the successor's reverse-map record without its
//! leaf (shadow leaves != live records afterwards).
//!
//! `Service::l0_unmap` re-finds each record's context by its shadow VMID
//! (`Directory::by_shadow_vmid`, i.e. by *slot*) after the batch released
//! the reverse-map lock. The `is_retired` check under the context's lock
//! is meant for this ("Recycled since it was found: its clear removed the
//! leaf, and the shared shadow is the successor's to change now"), but
//! the lookup by slot returns the successor, which is not retired.
//!
//! Deterministic: a shadow store whose `unmap_range` runs a hook on the
//! first unmap of context X's shadow; the hook (X's lock held, the
//! reverse-map lock not) makes a third key recycle context Y and install
//! a leaf at Y's L2 IPA, on an L1 page outside the range, then lets the
//! L0 unmap go on to Y's record.
//!
//! Goes in shadow-mmu/tests/. Fails on main; passes once l0_unmap skips a
//! record whose context incarnation is gone (e.g. `remove_range_batch`
//! hands out the rmap epoch of the record's context and l0_unmap skips it
//! when the context's epoch moved on, or it skips a record whose
//! (shadow VMID, L2 IPA) has a live record again).
#![cfg(not(loom))]

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use common::*;
use ipc::message::L0Change;
use ipc::tlbi::IpaRange;
use shadow_mmu::compose::L0RegionMap;
use shadow_mmu::compose::{HostExecute, ShadowMapping};
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::{Service, ShadowBackend, ShadowStore};
use shadow_mmu::service::{Translated, Worker};
use shadow_mmu::shadow_table::{
    FramePool, HeapFramePool, MapError, MapOutcome, NoHardwareTlb, ShadowConfig, ShadowTable,
};
use walker::{AccessKind, Granule};

type Svc = Service<L1Memory, L0RegionMap, Backend>;

fn read(s: &Svc, w: &Worker, key: &ContextKey, ipa: u64) -> Translated {
    s.translate(w, key, ipa, AccessKind::Read, &ABORT)
}

type Hook = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Shared {
    /// The shadow VMID whose first unmap runs `hook`.
    armed_vmid: AtomicU16,
    armed: AtomicBool,
    hook: Mutex<Option<Hook>>,
}

struct Store {
    vmid: u16,
    inner: ShadowTable<Arc<HeapFramePool>, NoHardwareTlb>,
    shared: Arc<Shared>,
}

impl ShadowStore for Store {
    fn root_pa(&self) -> u64 {
        self.inner.root_pa()
    }
    fn map(&self, m: &ShadowMapping) -> Result<MapOutcome, MapError> {
        self.inner.map(m)
    }
    fn unmap_range(&self, l2_ipa: u64, len: u64) -> usize {
        let n = self.inner.unmap_range(l2_ipa, len);
        if self.shared.armed_vmid.load(SeqCst) == self.vmid && self.shared.armed.swap(false, SeqCst)
        {
            if let Some(hook) = self.shared.hook.lock().unwrap().take() {
                hook();
            }
        }
        n
    }
    fn clear(&self) -> usize {
        self.inner.clear()
    }
    fn reclaim(&self, max_frames: usize) -> usize {
        self.inner.reclaim_detached(max_frames)
    }
    fn lookup(&self, l2_ipa: u64) -> Option<ShadowMapping> {
        self.inner.lookup(l2_ipa)
    }
    fn frames_used(&self) -> usize {
        self.inner.frames_used()
    }
    fn leaves(&self) -> usize {
        self.inner.leaves()
    }
}

struct Backend {
    pool: Arc<HeapFramePool>,
    shared: Arc<Shared>,
}

impl ShadowBackend for Backend {
    type Shadow = Store;
    fn create(&self, vmid: u16) -> Option<Store> {
        Some(Store {
            vmid,
            inner: ShadowTable::new(self.pool.clone(), NoHardwareTlb, ShadowConfig::default())
                .ok()?,
            shared: self.shared.clone(),
        })
    }
    fn frames_in_use(&self) -> usize {
        self.pool.frames_in_use()
    }
    fn host_execute(&self) -> HostExecute {
        HostExecute::from_xnx(ShadowConfig::default().xnx)
    }
    fn input_bits(&self) -> u32 {
        ShadowConfig::default().input_bits()
    }
}

#[test]
fn review25_l0_unmap_leaves_a_recycled_slots_successor_alone() {
    let mem = L1Memory::new();
    // Three table trees, one per key (Y, X, Z), 1 MiB apart in the area.
    let ty = L1Tables::at(mem.clone(), Granule::K4, 0);
    let tx = L1Tables::at(mem.clone(), Granule::K4, 1 << 20);
    let tz = L1Tables::at(mem.clone(), Granule::K4, 2 << 20);
    let (a, b) = (0x1000_0000u64, 0x2000_0000u64);
    // X's page a and Y's page b are built on L1 pages p1 < p2 inside the
    // range L0 takes back; Z maps b on p3, far outside it.
    let (p1, p2, p3) = (0x8000_1000u64, 0x8000_2000u64, 0x9000_0000u64);
    tx.map(a, p1, 3, RW);
    ty.map(b, p2, 3, RW);
    tz.map(b, p3, 3, RW);
    let range = IpaRange::new(0x8000_0000, 0x8001_0000).unwrap();
    assert!(range.overlaps(p1, 4096) && range.overlaps(p2, 4096) && !range.overlaps(p3, 4096));

    let config = config(16 << 20, 2);
    let shared = Arc::new(Shared::default());
    let backend = Backend {
        pool: Arc::new(HeapFramePool::new(config.budget.frames, 1 << 40).unwrap()),
        shared: shared.clone(),
    };
    let s: Arc<Svc> = Arc::new(Service::new(config, mem, l0_map(), backend).unwrap());
    let w = s.worker();
    let (ky, kx, kz): (ContextKey, ContextKey, ContextKey) = (ty.key(3), tx.key(4), tz.key(5));
    // Y first (slot 0), X second (slot 1): the recycling hand, starting at
    // slot 0 with both used, takes Y.
    assert!(pa_of(&read(&s, &w, &ky, b), b).is_some());
    assert!(pa_of(&read(&s, &w, &kx, a), a).is_some());
    let vy = s.shadow_vmid(&w, &ky).unwrap();
    let vx = s.shadow_vmid(&w, &kx).unwrap();
    assert_eq!((s.shadow_leaves(), s.reverse_map_records()), (2, 2));

    // While the L0 unmap is on X's record (p1 comes before p2), Z recycles
    // Y and installs b -> p3.
    let service = s.clone();
    *shared.hook.lock().unwrap() = Some(Box::new(move || {
        std::thread::spawn(move || {
            let w = service.worker();
            let t = read(&service, &w, &kz, b);
            assert_eq!(pa_of(&t, b), Some(PA_OFFSET + p3), "{t:?}");
        })
        .join()
        .unwrap();
    }));
    shared.armed_vmid.store(vx, SeqCst);
    shared.armed.store(true, SeqCst);
    s.l0_unmap(&w, range, L0Change::Unmap);
    assert!(shared.hook.lock().unwrap().is_none(), "the hook ran");
    assert_eq!(s.shadow_vmid(&w, &ky), None, "Y was recycled");
    assert_eq!(s.shadow_vmid(&w, &kz), Some(vy), "Z took Y's slot");
    assert_eq!(s.stats().recycled_contexts, 1);

    // Z's leaf is built on p3, outside the range: it must still be there,
    // with its record.
    let left = s.shadow_lookup(&w, &kz, b);
    assert_eq!(
        left.map(|m| m.pa_base),
        Some(PA_OFFSET + p3),
        "the L0 unmap of {range:?} removed Z's leaf {b:#x} -> L1 {p3:#x}, built outside it"
    );
    assert_eq!(
        s.shadow_leaves(),
        s.reverse_map_records(),
        "shadow leaves != live reverse-map records"
    );
}
