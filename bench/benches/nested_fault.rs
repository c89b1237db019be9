//! End-to-end nested-fault throughput (DESIGN.md path 1), beside a
//! KVM-style baseline in the same run.
//!
//! Every request is a real L2 stage-2 fault on a page whose shadow entry
//! is absent, resolved to the PA L0 backs it with, checked, and counted.
//! The vCPUs are host threads, each faulting its share of `PAGES` pages
//! (interleaved) in order, one fault outstanding at a time, as a vCPU
//! blocked on its fault is. Before every timed pass (untimed) the shadow
//! is emptied one of two ways:
//!
//! * `after_vmid_flush`: L1 issued TLBI VMALLS12E1IS. Umbra dropped its
//!   walk results too, so every fault walks L1's tables (from the root, or
//!   from an intermediate entry cached by an earlier fault of the pass).
//! * `after_l0_unmap`: L0 unmapped all of L1's data memory (and maps it
//!   again on demand: a memslot change, swap, migration). Umbra removes the
//!   shadow entries through its reverse map and keeps L1's walk results,
//!   which are still valid, so a refault is a cache hit, composition and a
//!   shadow map. KVM unmaps the whole shadow of every nested MMU
//!   (`kvm_nested_s2_unmap`) and every refault walks L1's tables again.
//!
//! The designs:
//!
//! * `umbra_ipc`: the deployment of path 1: each vCPU sends a translate
//!   request on its own ipc ring and waits for the reply; one service
//!   thread serves every ring with a fair `Poller` (host doorbells:
//!   spin, then sleep) and answers with `Service::reply`.
//! * `umbra_inline`: each vCPU thread calls `Service::translate` itself
//!   (the service as a library in the fault handler's thread).
//! * `kvm_style`: KVM's fault path on the vCPU thread: L1's table walked
//!   with the KVM-style walker (`kvm_walk_nested_s2`, one `kvm_read_guest`
//!   per level), composed with L0's map, mapped under the read lock
//!   (`bench::shadow_baseline::KvmStyle::fault_kvm_walk`).
//!
//! Throughput is in faults per second (criterion's elements/s). On a
//! 2-core machine `umbra_ipc` with 2 vCPUs runs three threads on two
//! cores, so its service sleeps and wakes on the doorbell; the deployment
//! gives the service a core of its own.
//!
//! Run: `chrt -f 1 cargo bench -p bench --bench nested_fault`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bench::shadow_baseline::{KvmStyle, L1Fixture, DATA_L1_IPA};
use bench::umbra::{context_key, service, UmbraService};
use bench::walker_baseline::KvmStyleMemory;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipc::message::{AccessKind as IpcAccess, ContextKey as IpcKey, L0Change, TranslateRequest};
use ipc::tlbi::{InvalidateScope, IpaRange};
use ipc::{Endpoint, HostDoorbell, Poller, RingBuffer, TranslateOutcome, VcpuClient, VcpuId};
use shadow_mmu::service::{Stats, Translated};
use shadow_mmu::shadow_table::{HeapFramePool, NoHardwareTlb};
use walker::{AbortContext, AbortOrigin, AccessKind};

/// Pages faulted per pass (64 MiB of L2 memory in 4 KiB pages).
const PAGES: u64 = 16 * 1024;
/// The most vCPUs a case runs.
const MAX_VCPUS: usize = 2;
/// L1's VMID.
const VMID: u16 = 1;

type Kvm = KvmStyle<Arc<HeapFramePool>, NoHardwareTlb>;

/// How the shadow was emptied before a pass.
#[derive(Clone, Copy, Debug)]
enum Emptied {
    VmidFlush,
    L0Unmap,
}

impl Emptied {
    fn name(self) -> &'static str {
        match self {
            Emptied::VmidFlush => "after_vmid_flush",
            Emptied::L0Unmap => "after_l0_unmap",
        }
    }
}

/// A data abort from a lower EL: level-3 translation fault, FAR valid.
fn fault_request(key: IpcKey, page: u64) -> TranslateRequest {
    let ipa = L1Fixture::l2_ipa(page);
    TranslateRequest {
        context: key,
        l2_ipa: ipa,
        access: IpcAccess::Read,
        esr: 0x24 << 26 | 1 << 25 | 0x07,
        far: 0x0000_7f00_0000_0000 | ipa,
    }
}

/// The pages vCPU `vcpu` of `vcpus` faults, in order.
fn share(vcpu: usize, vcpus: usize) -> impl Iterator<Item = u64> {
    (vcpu as u64..PAGES).step_by(vcpus)
}

/// A thread beside the vCPUs for the whole pass (the service loop):
/// `run` must return soon after `done` is set and `wake` called.
struct Beside<'a> {
    run: &'a (dyn Fn(&AtomicBool) + Sync),
    wake: &'a (dyn Fn() + Sync),
}

/// Runs `vcpu(index)` on `vcpus` threads released together and returns
/// the slowest one's time from its release to its last fault (each thread
/// times itself: the spawning thread may not run when they are released).
fn run_vcpus(vcpus: usize, vcpu: &(dyn Fn(usize) + Sync), beside: Option<Beside<'_>>) -> Duration {
    let barrier = Barrier::new(vcpus);
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        if let Some(Beside { run, .. }) = &beside {
            let done = &done;
            s.spawn(move || run(done));
        }
        let handles: Vec<_> = (0..vcpus)
            .map(|index| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    vcpu(index);
                    start.elapsed()
                })
            })
            .collect();
        let slowest = handles
            .into_iter()
            .map(|h| h.join().expect("a vCPU panicked"))
            .max()
            .unwrap_or_default();
        done.store(true, Ordering::Release);
        if let Some(Beside { wake, .. }) = beside {
            wake();
        }
        slowest
    })
}

/// The rings and doorbells between the vCPUs and the service thread.
struct Rings {
    requests: [RingBuffer<64>; MAX_VCPUS],
    replies: [RingBuffer<64>; MAX_VCPUS],
    service_bell: HostDoorbell,
    reply_bells: [HostDoorbell; MAX_VCPUS],
}

impl Rings {
    fn new() -> Rings {
        Rings {
            requests: std::array::from_fn(|_| RingBuffer::new()),
            replies: std::array::from_fn(|_| RingBuffer::new()),
            service_bell: HostDoorbell::default(),
            reply_bells: std::array::from_fn(|_| HostDoorbell::default()),
        }
    }
}

/// One pass of faults through the ipc rings.
fn umbra_ipc_pass(umbra: &UmbraService, rings: &Rings, key: IpcKey, vcpus: usize) -> Duration {
    let serve = |done: &AtomicBool| {
        let worker = umbra.worker();
        let mut endpoints: Vec<Endpoint<'_, HostDoorbell>> = (0..vcpus)
            .map(|v| {
                Endpoint::new(
                    VcpuId(v as u32),
                    rings.requests[v].ring(),
                    rings.replies[v].ring(),
                    &rings.reply_bells[v],
                )
                .expect("rings free")
            })
            .collect();
        let mut poller = Poller::new(&mut endpoints, 16);
        poller.run(
            &rings.service_bell,
            |envelope| umbra.reply(&worker, envelope),
            || !done.load(Ordering::Acquire),
        );
    };
    let vcpu = |v: usize| {
        let mut client = VcpuClient::new(
            VcpuId(v as u32),
            rings.requests[v].ring(),
            rings.replies[v].ring(),
            &rings.service_bell,
            &rings.reply_bells[v],
        )
        .expect("rings free");
        for page in share(v, vcpus) {
            match client.translate(fault_request(key, page)) {
                Ok(TranslateOutcome::Mapped(m)) if m.pa == L1Fixture::pa(page) => {}
                other => panic!("page {page}: {other:?}"),
            }
        }
    };
    // The service loop leaves `run` once `done` is set, but it may be
    // asleep on its bell: ring it (the poller's contract).
    let wake = || ipc::Doorbell::ring(&rings.service_bell);
    run_vcpus(
        vcpus,
        &vcpu,
        Some(Beside {
            run: &serve,
            wake: &wake,
        }),
    )
}

/// One pass of faults, each vCPU thread calling the service itself.
fn umbra_inline_pass(umbra: &UmbraService, key: IpcKey, vcpus: usize) -> Duration {
    let key = context_key(&key);
    let abort = AbortContext {
        far: None,
        origin: AbortOrigin::Access,
    };
    let vcpu = |v: usize| {
        let worker = umbra.worker();
        for page in share(v, vcpus) {
            let ipa = L1Fixture::l2_ipa(page);
            match umbra.translate(&worker, &key, ipa, AccessKind::Read, &abort) {
                Translated::Mapped(m) if m.pa_base == L1Fixture::pa(page) => {}
                other => panic!("page {page}: {other:?}"),
            }
        }
    };
    run_vcpus(vcpus, &vcpu, None)
}

/// One pass of KVM-style faults.
fn kvm_pass(kvm: &Kvm, memory: &KvmStyleMemory<'_>, f: &L1Fixture, vcpus: usize) -> Duration {
    let key = f.key(VMID);
    let vcpu = |v: usize| {
        for page in share(v, vcpus) {
            let ipa = L1Fixture::l2_ipa(page);
            match kvm.fault_kvm_walk(&key, memory, &f.l0, ipa) {
                Ok(m) if m.pa_base == L1Fixture::pa(page) => {}
                other => panic!("page {page}: {other:?}"),
            }
        }
    };
    run_vcpus(vcpus, &vcpu, None)
}

/// Empties Umbra's shadow of L1's VMID as `how` says.
fn empty_umbra(umbra: &UmbraService, how: Emptied) {
    let worker = umbra.worker();
    match how {
        Emptied::VmidFlush => {
            umbra.invalidate(&worker, VMID, &InvalidateScope::Vmid);
        }
        Emptied::L0Unmap => {
            let data = IpaRange::new(DATA_L1_IPA, DATA_L1_IPA + PAGES * 4096).expect("range");
            umbra.l0_unmap(&worker, data, L0Change::Unmap);
        }
    }
    debug_assert!(umbra.shadow_leaves() == 0);
}

/// What KVM does to its shadows for either event: a VMALLS12E1IS unmaps
/// the VMID's shadows; an L0 change unmaps every nested MMU's whole
/// shadow (`kvm_nested_s2_unmap`). Here both are one VMID's shadow.
fn empty_kvm(kvm: &Kvm) {
    kvm.invalidate(VMID, &InvalidateScope::Vmid);
}

fn walks_and_hits(before: Stats, after: Stats) -> String {
    format!(
        "{} full walks, {} partial walks, {} cache hits",
        after.walks - before.walks,
        after.partial_walks - before.partial_walks,
        after.hits - before.hits
    )
}

fn nested_faults(c: &mut Criterion) {
    let f = L1Fixture::new(PAGES);
    let memory = f.kvm_memory();
    let umbra = service(&f, 2, PAGES as usize);
    let kvm: Kvm = KvmStyle::new(
        Arc::new(HeapFramePool::new(PAGES.div_ceil(512) as usize + 16, 1 << 40).expect("pool")),
        NoHardwareTlb,
    );
    let key = f.key(VMID);
    let rings = Rings::new();
    // The first pass creates the contexts and their tables.
    umbra_inline_pass(&umbra, key, 1);
    kvm_pass(&kvm, &memory, &f, 1);
    for how in [Emptied::VmidFlush, Emptied::L0Unmap] {
        let mut g = c.benchmark_group(format!("nested_fault/{}", how.name()));
        g.throughput(Throughput::Elements(PAGES))
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for vcpus in 1..=MAX_VCPUS {
            let before = umbra.stats();
            g.bench_function(BenchmarkId::new("umbra_ipc", vcpus), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            empty_umbra(&umbra, how);
                            umbra_ipc_pass(&umbra, &rings, key, vcpus)
                        })
                        .sum()
                })
            });
            eprintln!(
                "nested_fault/{}/umbra_ipc/{vcpus}: {}",
                how.name(),
                walks_and_hits(before, umbra.stats())
            );
            let before = umbra.stats();
            g.bench_function(BenchmarkId::new("umbra_inline", vcpus), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            empty_umbra(&umbra, how);
                            umbra_inline_pass(&umbra, key, vcpus)
                        })
                        .sum()
                })
            });
            eprintln!(
                "nested_fault/{}/umbra_inline/{vcpus}: {}",
                how.name(),
                walks_and_hits(before, umbra.stats())
            );
            g.bench_function(BenchmarkId::new("kvm_style", vcpus), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            empty_kvm(&kvm);
                            kvm_pass(&kvm, &memory, &f, vcpus)
                        })
                        .sum()
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, nested_faults);
criterion_main!(benches);
