//! The handshake's state machine on the host, one step at a time (the
//! interleavings are loom's: `loom-tests/tests/shadow_hv_handshake.rs`),
//! and the real service calling it on every recycle.

extern crate std;

use super::*;
use crate::shadow_selftest::backend::{identity_frames, SelftestBackend, VmidTlbs};
use crate::shadow_selftest::lab::{Lab, ARENA_BYTES};
use crate::shadow_selftest::memory::Arena;
use crate::shadow_selftest::{l1_features, Host, BUDGET_BYTES, FIRST_SHADOW_VMID, L1_HOST_VMID};
use core::cell::Cell;
use core::sync::atomic::AtomicU64;
use ipc::VmidWidth;
use shadow_mmu::budget::Budget;
use shadow_mmu::context::{ContextKey, HostVmids};
use shadow_mmu::service::{Service, ServiceConfig};
use shadow_mmu::shadow_table::{NoHardwareTlb, ShadowConfig};
use std::boxed::Box;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::vec::Vec;

/// PEs with a scripted machine: what the recycler's interrupt does to the
/// target (leave L2, or nothing), a clock that advances one tick a read.
#[derive(Debug)]
struct Script {
    pes: [PeHandshake; 3],
    current: Option<usize>,
    /// The interrupted PE leaves L2 (its exit store) when interrupted.
    leaves_on_interrupt: bool,
    interrupted: Mutex<Vec<usize>>,
    clock: AtomicUsize,
    recycles: Mutex<Vec<Kicks>>,
}

impl Script {
    fn new(leaves_on_interrupt: bool) -> Self {
        Script {
            pes: Default::default(),
            current: None,
            leaves_on_interrupt,
            interrupted: Mutex::new(Vec::new()),
            clock: AtomicUsize::new(0),
            recycles: Mutex::new(Vec::new()),
        }
    }

    fn place(&self, pe: usize, phase: Phase) {
        self.pes[pe].phase.store(phase.encode(), Ordering::SeqCst);
    }
}

impl PeSet for Script {
    fn pes(&self) -> &[PeHandshake] {
        &self.pes
    }
    fn current_pe(&self) -> Option<usize> {
        self.current
    }
    fn interrupt(&self, pe: usize) {
        self.interrupted.lock().unwrap().push(pe);
        if self.leaves_on_interrupt {
            self.pes[pe].left_l2();
        }
    }
    fn now(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) as u64
    }
    fn wait_limit(&self) -> u64 {
        100
    }
    fn relax(&self) {}
    fn recycled(&self, kicks: Kicks) {
        self.recycles.lock().unwrap().push(kicks);
    }
    fn never_left(&self, why: NeverLeft) -> ! {
        panic!("{why}")
    }
}

impl PeSet for Arc<Script> {
    fn pes(&self) -> &[PeHandshake] {
        (**self).pes()
    }
    fn current_pe(&self) -> Option<usize> {
        (**self).current_pe()
    }
    fn interrupt(&self, pe: usize) {
        (**self).interrupt(pe)
    }
    fn now(&self) -> u64 {
        (**self).now()
    }
    fn wait_limit(&self) -> u64 {
        (**self).wait_limit()
    }
    fn relax(&self) {}
    fn recycled(&self, kicks: Kicks) {
        (**self).recycled(kicks)
    }
    fn never_left(&self, why: NeverLeft) -> ! {
        (**self).never_left(why)
    }
}

#[test]
fn phases_round_trip_every_vmid() {
    for phase in [
        Phase::Outside,
        Phase::Entering,
        Phase::InL2(0),
        Phase::InL2(1),
        Phase::InL2(8),
        Phase::InL2(u16::MAX),
    ] {
        assert_eq!(Phase::decode(phase.encode()), phase);
    }
    // `InL2(0)` and `InL2(1)` are neither `Outside` nor `Entering`.
    assert_ne!(Phase::InL2(0).encode(), OUTSIDE);
    assert_ne!(Phase::InL2(1).encode(), ENTERING);
}

#[test]
fn an_entry_without_a_kick_publishes_in_l2_and_the_exit_outside() {
    let pe = PeHandshake::new();
    assert_eq!(pe.phase(), Phase::Outside);
    let calls = Cell::new(0);
    let entry = pe.enter(|| {
        calls.set(calls.get() + 1);
        // Step 2 runs with the PE published as entering.
        assert_eq!(pe.phase(), Phase::Entering);
        Some((9, 0x4000u64))
    });
    assert_eq!(
        entry,
        Entry::Ready {
            vmid: 9,
            root: 0x4000,
            retries: 0
        }
    );
    assert_eq!(calls.get(), 1);
    assert_eq!(pe.phase(), Phase::InL2(9));
    pe.left_l2();
    assert_eq!(pe.phase(), Phase::Outside);
}

#[test]
fn a_kick_during_shadow_root_sends_the_entry_back_to_step_1() {
    // A recycle runs while PE 0 is in its step 2 (as the service's
    // `reassigned` would, from inside `shadow_root`, or from another PE):
    // it kicks PE 0 (entering), and the root PE 0 got is not used.
    let script = Script::new(true);
    let roots = Cell::new(0);
    let entry = script.pes[0].enter(|| {
        roots.set(roots.get() + 1);
        if roots.get() == 1 {
            let kicks = kick_victims(&script, 8).unwrap();
            assert_eq!(
                kicks,
                Kicks {
                    kicked: 1,
                    waited: 0
                }
            );
            Some((8, 0x1000u64))
        } else {
            Some((9, 0x2000u64))
        }
    });
    assert_eq!(
        entry,
        Entry::Ready {
            vmid: 9,
            root: 0x2000,
            retries: 1
        }
    );
    assert!(!script.pes[0].kicked(), "the kick is consumed");
    assert!(script.interrupted.lock().unwrap().is_empty());
}

#[test]
fn no_shadow_leaves_the_pe_outside() {
    let pe = PeHandshake::new();
    assert_eq!(pe.enter(|| None::<(u16, u64)>), Entry::NoShadow);
    assert_eq!(pe.phase(), Phase::Outside);
}

#[test]
fn a_recycle_kicks_entering_and_victim_pes_and_waits_only_for_those_in_l2() {
    let script = Script::new(true);
    script.place(0, Phase::Entering);
    script.place(1, Phase::InL2(8));
    script.place(2, Phase::InL2(9));
    let kicks = kick_victims(&script, 8).unwrap();
    assert_eq!(
        kicks,
        Kicks {
            kicked: 2,
            waited: 1
        }
    );
    assert!(script.pes[0].kicked());
    assert!(script.pes[1].kicked());
    assert!(!script.pes[2].kicked(), "another slot's L2 is left alone");
    assert_eq!(*script.interrupted.lock().unwrap(), [1]);
    assert_eq!(script.pes[1].phase(), Phase::Outside);
    assert_eq!(script.pes[2].phase(), Phase::InL2(9));
    // An entering PE is never waited for (it may be blocked on the lock
    // the recycler holds).
    assert_eq!(script.pes[0].phase(), Phase::Entering);
}

#[test]
fn outside_pes_are_not_kicked() {
    let script = Script::new(true);
    assert_eq!(kick_victims(&script, 8).unwrap(), Kicks::default());
    assert!(script.pes.iter().all(|pe| !pe.kicked()));
}

#[test]
fn a_pe_that_never_leaves_l2_fails_within_the_bound() {
    let script = Script::new(false);
    script.place(2, Phase::InL2(8));
    assert_eq!(
        kick_victims(&script, 8),
        Err(NeverLeft::TimedOut { pe: 2, vmid: 8 })
    );
    assert_eq!(*script.interrupted.lock().unwrap(), [2]);
    let clock = script.clock.load(Ordering::Relaxed);
    assert!((100..110).contains(&clock), "bounded wait: {clock} ticks");
}

#[test]
fn a_recycler_published_in_the_victims_l2_fails_at_once() {
    let mut script = Script::new(true);
    script.current = Some(1);
    script.place(1, Phase::InL2(8));
    assert_eq!(
        kick_victims(&script, 8),
        Err(NeverLeft::Recycler { pe: 1, vmid: 8 })
    );
    assert!(script.interrupted.lock().unwrap().is_empty());
    // Entering, the recycler only kicks itself (one extra `shadow_root`).
    script.place(1, Phase::Entering);
    assert_eq!(
        kick_victims(&script, 8).unwrap(),
        Kicks {
            kicked: 1,
            waited: 0
        }
    );
}

/// Per-VMID TLB maintenance the host does not need.
struct NoTlbs;

impl VmidTlbs for NoTlbs {
    type Tlb = NoHardwareTlb;
    fn for_vmid(&self, _vmid: u16) -> NoHardwareTlb {
        NoHardwareTlb
    }
}

/// The real service with two context slots and hv's handshake as every
/// shadow's `reassigned`: three L1 stage-2 roots entered in turn recycle,
/// each recycle runs the kick pass once (kicking the entering PE itself,
/// which then re-reads its root), and the root an entry returns is always
/// its own key's context's.
#[test]
fn every_recycle_of_the_real_service_runs_the_kick_pass() {
    let words: Vec<AtomicU64> = (0..ARENA_BYTES / 8).map(|_| AtomicU64::new(0)).collect();
    let arena = Box::leak(Box::new(
        Arena::new(Box::leak(words.into_boxed_slice()), 0x4800_0000).unwrap(),
    ));
    let lab: &'static Lab<'static> = Box::leak(Box::new(Lab::build(arena).unwrap()));
    let host = Host {
        vmids: VmidWidth::Bits16,
        xnx: true,
        pa_bits: 48,
    };
    let config = ServiceConfig {
        features: l1_features(&host),
        budget: Budget::split(BUDGET_BYTES, 2).unwrap(),
        hash_seed: 7,
        first_shadow_vmid: FIRST_SHADOW_VMID,
        host_vmids: HostVmids {
            width: host.vmids,
            l1_vmid: L1_HOST_VMID,
        },
    };
    let pool = identity_frames(config.budget.frames, Some).unwrap();
    let script = Arc::new(Script::new(true));
    let backend = HandshakeBackend::new(
        SelftestBackend::new(
            pool,
            NoTlbs,
            ShadowConfig {
                xnx: true,
                pa_bits: 48,
            },
        ),
        script.clone(),
    );
    let service = Service::new(config, lab.l1_memory(), lab.l0_map(), backend).unwrap();
    let worker = service.worker();
    // 4 KiB granule, 39-bit IPA from level 1, PS 40 bits (the demo L1's).
    let vtcr = (1 << 31) | (0b010 << 16) | (0b11 << 12) | (1 << 10) | (1 << 8) | (1 << 6) | 25;
    let keys: Vec<ContextKey> = (0..3u64)
        .map(|i| {
            let ipc_key =
                ipc::ContextKey::new(5 << 48 | (0x4020_0000 + i * 0x1000), vtcr, VmidWidth::Bits8);
            ContextKey::from_ipc(&ipc_key, VmidWidth::Bits8)
        })
        .collect();
    let mut entries = 0;
    for round in 0..4 {
        for key in &keys {
            let entry = script.pes[0].enter(|| service.shadow_root(&worker, key));
            let Entry::Ready { vmid, root, .. } = entry else {
                panic!("no shadow in round {round}");
            };
            assert_eq!(service.shadow_vmid(&worker, key), Some(vmid));
            assert_eq!(service.shadow_root(&worker, key), Some((vmid, root)));
            script.pes[0].left_l2();
            entries += 1;
        }
    }
    let recycled = service.stats().recycled_contexts;
    let passes = script.recycles.lock().unwrap().clone();
    assert!(recycled > 0, "three keys over two slots recycle");
    assert_eq!(passes.len() as u64, recycled, "one kick pass per recycle");
    // Each recycle happened inside the PE's own `shadow_root`, so it
    // kicked the PE (entering) and waited for nobody.
    assert!(passes.iter().all(|k| *k
        == Kicks {
            kicked: 1,
            waited: 0
        }));
    assert_eq!(entries, 12);
}
