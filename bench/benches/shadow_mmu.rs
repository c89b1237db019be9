//! Shadow-MMU service benchmarks, each beside its baselines in the same run
//! (see `bench/src/shadow_baseline.rs` for the fixtures and baselines):
//!
//! - `shadow_hit`: a cached translation (Umbra's lock-free lookup and its
//!   full `translate` on a hit, served in a `Burst` as a service loop under
//!   load serves them (one epoch pin per 16 requests), and the lookup as a
//!   lone request with its own pin) vs `Mutex<HashMap>` vs KVM-style (a
//!   shadow table walk in the context picked once, as KVM picks
//!   `vcpu->arch.hw_mmu` at vcpu_load); 8 contexts, looked up round-robin.
//! - `shadow_hit_1M`: Umbra's lookup on a 1M-entry cache in a scattered
//!   order (bucket and node miss the CPU caches).
//! - `shadow_miss`: a translation that must walk: Umbra with a full walk
//!   (after IPAS2E1, which drops the intermediate entries too) and a partial
//!   walk (after IPAS2LE1, which keeps them) vs KVM-style (always a full
//!   walk, compose, map) and walk + `Mutex<HashMap>` insert.
//! - `shadow_read_throughput`: lookups from 1 and 2 threads (elements/s).
//! - `shadow_invalidate_page` / `shadow_invalidate_vmid`: IPAS2E1IS of one
//!   page (no TTL hint, as without FEAT_TTL) and VMALLS12E1IS with 1K and
//!   1M entries cached. The state is restored after every timed call
//!   (untimed), so each call starts from the full cache. The KVM-style
//!   page row (`kvm_style`) follows mainline KVM: its shadow probe finds
//!   the page's leaf and unmaps 4 KiB; `*_absent` invalidate a page L1 maps
//!   but the shadow lacks (its 2 MiB region's first page present), for
//!   which KVM unmaps the whole GiB. The KVM-style VMID rows unmap
//!   `[0, 2^40)` or `[0, 2^48)` in 1 GiB chunks as KVM does
//!   (`kvm_style_pa40`, `kvm_style_pa48`), and in one pass (a lower bound).
//!   `umbra_with_refault` and `kvm_style_with_refault` time the page TLBI
//!   together with the fault that maps the page again (L2's next access;
//!   the other rows restore it untimed), so work a TLBI leaves to the
//!   next use of a structure is timed too.
//!   `timer_floor` (here and in the context and range groups) times the
//!   empty timed region every per-call row pays.
//! - `shadow_invalidate_page_cold`: the same one-page invalidation (Umbra,
//!   and KVM-style with TTL=3) with the CPU caches and TLBs emptied
//!   (untimed, by reading a 64 MiB buffer) before every timed call, so 1K
//!   and 1M entries start from the same state: the algorithm's scaling
//!   apart from the memory hierarchy's.
//! - `shadow_invalidate_contexts`: a one-page IPAS2E1IS and a VMALLS12E1IS
//!   for VMID 1 while 1, 16 or 64 contexts exist (1K pages cached in each,
//!   the others of other VMIDs), and with 4 of the 64 sharing VMID 1
//!   (different VTTBRs): cost against the contexts that exist and the
//!   contexts the TLBI covers.
//! - `shadow_invalidate_range`: RIPAS2E1IS over 2, 16, 256 and 4096 pages of
//!   a 256K-entry context, and over a 1 GiB region holding 16 cached pages.
//! - `shadow_invalidate_scaling`: Umbra's one-page invalidation alone at
//!   16K and 256K entries, between the 1K and 1M of the groups above: where
//!   its cost stops growing (once the working set has left the CPU caches,
//!   a constant number of cache misses).
//! - `shadow_parts` / `shadow_parts_flush`: the reverse-map and shadow-table
//!   parts of an invalidation alone, at 1K and 1M entries; in the flush
//!   group also `clear` with the frame reclamation it defers done at once,
//!   and the KVM-style VMID unmaps of the same table (work, not latency).
//!
//! Run: `cargo bench -p bench --bench shadow_mmu -- --measurement-time 3 --warm-up-time 1`
//! (the 1M-entry invalidation groups and the cold, context and range groups
//! set their own times: every timed call there is followed by an untimed
//! restore of the cache, or an eviction, far longer than the call).
//!
//! Pages: the binary puts its whole heap (Umbra's and every baseline's) on
//! 2 MiB transparent huge pages, as hv maps the service's memory with
//! blocks, re-executing itself with glibc's `glibc.malloc.hugetlb=1`
//! tunable (`bench::host_pages`); `UMBRA_BENCH_PAGES=4k` keeps glibc's
//! 4 KiB pages. Every setup line says how much of the resident memory is
//! on huge pages (`AnonHugePages` of `Rss`).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bench::range::{
    composed, fill_contexts, kvm, ripas2e1, translate_ok, CachedPages, Kvm, RangeFixture,
    RANGE_DENSE,
};
use bench::shadow_baseline::{kvm_unmap_chunked, L1Fixture, MutexHashMapCache, VmidUnmap};
use bench::umbra::{context_key, service as umbra, UmbraService};
use bench::{host_pages, wanted};
use criterion::measurement::WallTime;
use criterion::{
    criterion_group, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use ipc::tlbi::{InvalidateScope, Shareability, Tlbi, TlbiOp, TlbiParams};
use shadow_mmu::compose::{L1Translation, ShadowMapping};
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::{Guard, Worker};
use shadow_mmu::shadow_table::{HeapFramePool, NoHardwareTlb, ShadowConfig};
use walker::{AbortContext, AbortOrigin, AccessKind, Stage2Walker};

type Umbra = UmbraService;

const ABORT: AbortContext = AbortContext {
    far: None,
    origin: AbortOrigin::Access,
    trapped_esr: None,
};

/// TLBI IPAS2E1IS / IPAS2LE1IS of the page holding `ipa`, no TTL hint.
fn ipas2(ipa: u64, leaf_only: bool) -> InvalidateScope {
    let tlbi = Tlbi {
        op: if leaf_only {
            TlbiOp::Ipas2le1
        } else {
            TlbiOp::Ipas2e1
        },
        shareability: Shareability::InnerShareable,
        nxs: false,
    };
    tlbi.decode(ipa >> 12, TlbiParams::default())
        .expect("IPAS2 operands always decode")
}

/// A page and its IPAS2E1IS (no TTL), decoded before a timed call.
fn page_tlbi(ipa: u64) -> (u64, InvalidateScope) {
    (ipa, ipas2(ipa, false))
}

/// The same with a level-3 TTL hint (FEAT_TTL exposed).
fn ipas2e1_ttl3(ipa: u64) -> InvalidateScope {
    let tlbi = Tlbi {
        op: TlbiOp::Ipas2e1,
        shareability: Shareability::InnerShareable,
        nxs: false,
    };
    let params = TlbiParams {
        feat_ttl: true,
        ..TlbiParams::default()
    };
    tlbi.decode((ipa >> 12) | (0b0111 << 44), params)
        .expect("IPAS2 operands always decode")
}

fn umbra_key(f: &L1Fixture, vmid: u16) -> ContextKey {
    context_key(&f.key(vmid))
}

/// Serves `iters` requests as the service loop does under load: in one
/// [`shadow_mmu::service::Burst`], which pins once per
/// [`shadow_mmu::service::REQUESTS_PER_PIN`] requests, with `Burst::next`
/// between requests. Returns the time taken.
fn in_bursts(worker: &Worker, iters: u64, mut request: impl FnMut(&Guard)) -> Duration {
    let start = Instant::now();
    let mut burst = worker.burst();
    for _ in 0..iters {
        request(burst.guard());
        burst.next();
    }
    start.elapsed()
}

/// KVM-style's fault (full walk, compose, map) of L2 IPA `ipa` in the
/// context of `key`, which must map it.
fn kvm_fault_ok(
    kvm: &Kvm,
    f: &L1Fixture,
    walker: &Stage2Walker,
    key: &ipc::message::ContextKey,
    ipa: u64,
) {
    kvm.fault(key, walker, &f.memory, &f.l0, ipa, AccessKind::Read)
        .expect("maps");
}

fn fill_umbra(service: &Umbra, f: &L1Fixture, vmids: &[u16], pages: u64) {
    let keys: Vec<ContextKey> = vmids.iter().map(|&vmid| umbra_key(f, vmid)).collect();
    fill_contexts(service, &service.worker(), &keys, 0..pages);
}

const CONTEXTS: u16 = 8;
const HIT_PAGES: u64 = 512;

fn hit(c: &mut Criterion) {
    if !wanted("shadow_hit") {
        return;
    }
    let f = L1Fixture::new(HIT_PAGES);
    let vmids: Vec<u16> = (1..=CONTEXTS).collect();
    let service = umbra(&f, CONTEXTS as usize, HIT_PAGES as usize);
    fill_umbra(&service, &f, &vmids, HIT_PAGES);
    let hashmap = MutexHashMapCache::new();
    let kvm = kvm(CONTEXTS as usize * 8);
    for &vmid in &vmids {
        for (leaf, shadow) in composed(&f, vmid, HIT_PAGES) {
            hashmap.insert(f.key(vmid), leaf);
            kvm.install(&f.key(vmid), &leaf, &shadow).expect("frames");
        }
    }
    // Round-robin over contexts, striding through pages.
    let probes: Vec<(u16, u64)> = (0..4096u64)
        .map(|i| {
            (
                vmids[(i % 8) as usize],
                L1Fixture::l2_ipa((i * 37) % HIT_PAGES) + 0x10,
            )
        })
        .collect();
    let umbra_keys: Vec<ContextKey> = (0..=CONTEXTS).map(|v| umbra_key(&f, v)).collect();
    let ipc_keys: Vec<ipc::message::ContextKey> = (0..=CONTEXTS).map(|v| f.key(v)).collect();
    // KVM picks the context once, at vcpu_load (`vcpu->arch.hw_mmu`), not
    // per access.
    let kvm_contexts: Vec<_> = (0..=CONTEXTS)
        .map(|v| kvm.context_index(&f.key(v)))
        .collect();

    let mut g = c.benchmark_group("shadow_hit");
    let worker = service.worker();
    let mut i = 0;
    g.bench_function("umbra_lookup", |b| {
        b.iter_custom(|iters| {
            in_bursts(&worker, iters, |guard| {
                let (vmid, ipa) = probes[i % probes.len()];
                i += 1;
                black_box(
                    service
                        .lookup(&umbra_keys[vmid as usize], ipa, guard)
                        .map(|w| w.output_base),
                );
            })
        })
    });
    // The same lookup as a lone request, with a pin of its own.
    g.bench_function("umbra_lookup_lone", |b| {
        b.iter(|| {
            let (vmid, ipa) = probes[i % probes.len()];
            i += 1;
            let guard = worker.pin();
            black_box(
                service
                    .lookup(&umbra_keys[vmid as usize], ipa, &guard)
                    .map(|w| w.output_base),
            )
        })
    });
    g.bench_function("umbra_translate_hit", |b| {
        b.iter_custom(|iters| {
            in_bursts(&worker, iters, |_| {
                let (vmid, ipa) = probes[i % probes.len()];
                i += 1;
                black_box(service.translate(
                    &worker,
                    &umbra_keys[vmid as usize],
                    ipa,
                    AccessKind::Read,
                    &ABORT,
                ));
            })
        })
    });
    g.bench_function("mutex_hashmap", |b| {
        b.iter(|| {
            let (vmid, ipa) = probes[i % probes.len()];
            i += 1;
            black_box(hashmap.lookup(&ipc_keys[vmid as usize], ipa))
        })
    });
    g.bench_function("kvm_style", |b| {
        b.iter(|| {
            let (vmid, ipa) = probes[i % probes.len()];
            i += 1;
            let context = kvm_contexts[vmid as usize].expect("installed");
            black_box(kvm.lookup_in(context, ipa))
        })
    });
    g.finish();
    let s = service.stats();
    eprintln!("shadow_hit: umbra stats {s:?}");
}

const MISS_PAGES: u64 = 4096;

fn miss(c: &mut Criterion) {
    if !wanted("shadow_miss") {
        return;
    }
    let f = L1Fixture::new(MISS_PAGES);
    let service = umbra(&f, 1, MISS_PAGES as usize);
    fill_umbra(&service, &f, &[1], MISS_PAGES);
    let key = umbra_key(&f, 1);
    let ipc_key = f.key(1);
    let walker = f.walker(1);
    let hashmap = MutexHashMapCache::new();
    let kvm = kvm(64);
    for (leaf, shadow) in composed(&f, 1, MISS_PAGES) {
        hashmap.insert(ipc_key, leaf);
        kvm.install(&ipc_key, &leaf, &shadow).expect("frames");
    }
    let worker = service.worker();
    let mut g = c.benchmark_group("shadow_miss");
    let mut page = 0u64;
    let mut next_ipa = move || {
        page = (page + 97) % MISS_PAGES;
        L1Fixture::l2_ipa(page)
    };
    for (name, leaf_only) in [("umbra_full_walk", false), ("umbra_partial_walk", true)] {
        let before = service.stats();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let ipa = next_ipa();
                    service.invalidate(&worker, 1, &ipas2(ipa, leaf_only));
                    let t0 = Instant::now();
                    translate_ok(&service, &worker, &key, black_box(ipa));
                    total += t0.elapsed();
                }
                total
            })
        });
        let after = service.stats();
        eprintln!(
            "shadow_miss/{name}: {} full walks, {} partial walks, {} hits",
            after.walks - before.walks,
            after.partial_walks - before.partial_walks,
            after.hits - before.hits
        );
    }
    g.bench_function("kvm_style_full_walk", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let ipa = next_ipa();
                kvm.invalidate(1, &ipas2e1_ttl3(ipa));
                let t0 = Instant::now();
                kvm_fault_ok(&kvm, &f, &walker, &ipc_key, black_box(ipa));
                total += t0.elapsed();
            }
            total
        })
    });
    g.bench_function("mutex_hashmap_full_walk", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let ipa = next_ipa();
                hashmap.invalidate(1, &ipas2(ipa, false));
                let t0 = Instant::now();
                let t = walker
                    .walk(&f.memory, black_box(ipa), AccessKind::Read)
                    .expect("maps");
                hashmap.insert(ipc_key, L1Translation::from_translation(&t));
                total += t0.elapsed();
            }
            total
        })
    });
    g.finish();
}

/// Runs `per_thread(iters)` on `threads` threads released together;
/// returns the slowest thread's time.
fn parallel(threads: usize, iters: u64, per_thread: &(dyn Fn(usize, u64) + Sync)) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let t0 = Instant::now();
                    per_thread(t, iters);
                    t0.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .max()
            .unwrap_or_default()
    })
}

fn read_throughput(c: &mut Criterion) {
    if !wanted("shadow_read_throughput") {
        return;
    }
    let f = L1Fixture::new(HIT_PAGES * 8);
    let pages = HIT_PAGES * 8;
    let service = umbra(&f, 2, pages as usize);
    fill_umbra(&service, &f, &[1], pages);
    let key = umbra_key(&f, 1);
    let hashmap = MutexHashMapCache::new();
    for (leaf, _) in composed(&f, 1, pages) {
        hashmap.insert(f.key(1), leaf);
    }
    let ipc_key = f.key(1);
    let mut g = c.benchmark_group("shadow_read_throughput");
    for threads in [1usize, 2] {
        g.throughput(Throughput::Elements(threads as u64));
        g.bench_with_input(
            BenchmarkId::new("umbra_lookup", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    parallel(threads, iters, &|t, iters| {
                        let worker = service.worker();
                        let mut page = t as u64 * 1013;
                        in_bursts(&worker, iters, |guard| {
                            page = (page + 37) % pages;
                            black_box(
                                service
                                    .lookup(&key, L1Fixture::l2_ipa(page), guard)
                                    .map(|w| w.output_base),
                            );
                        });
                    })
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("mutex_hashmap", threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| {
                    parallel(threads, iters, &|t, iters| {
                        let mut page = t as u64 * 1013;
                        for _ in 0..iters {
                            page = (page + 37) % pages;
                            black_box(hashmap.lookup(&ipc_key, L1Fixture::l2_ipa(page)));
                        }
                    })
                })
            },
        );
    }
    g.finish();
}

/// Cache sizes for the invalidation benchmarks.
/// A hit on a large cache: 1M 4 KiB entries in one context, looked up in
/// a scattered order, so the bucket and the node each miss the CPU caches
/// (what a guest with a large working set sees; `shadow_hit` measures the
/// hot-cache path).
fn hit_large(c: &mut Criterion) {
    if !wanted("shadow_hit_1M") {
        return;
    }
    const PAGES: u64 = 1 << 20;
    let f = L1Fixture::new(PAGES);
    let service = umbra(&f, 2, PAGES as usize);
    fill_umbra(&service, &f, &[1], PAGES);
    eprintln!(
        "shadow_hit_1M: {PAGES} entries cached; {}",
        host_pages::summary()
    );
    let key = umbra_key(&f, 1);
    let worker = service.worker();
    let mut g = c.benchmark_group("shadow_hit_1M");
    let mut page = 0u64;
    g.bench_function("umbra_lookup", |b| {
        b.iter_custom(|iters| {
            in_bursts(&worker, iters, |guard| {
                // An odd stride visits every page before repeating.
                page = (page + 611_953) % PAGES;
                black_box(
                    service
                        .lookup(&key, L1Fixture::l2_ipa(page) + 0x10, guard)
                        .map(|w| w.output_base),
                );
            })
        })
    });
    g.finish();
}

const SIZES: [(&str, u64); 2] = [("1K", 1 << 10), ("1M", 1 << 20)];

fn invalidate(c: &mut Criterion) {
    let mut evictor = None;
    for (label, pages) in SIZES {
        if !wanted(&format!("shadow_invalidate_page/{label}"))
            && !wanted(&format!("shadow_invalidate_page_cold/{label}"))
            && !wanted(&format!("shadow_invalidate_vmid/{label}"))
        {
            continue;
        }
        let big = pages > 1 << 16;
        let f = L1Fixture::new(pages);
        let setup = Instant::now();
        let service = umbra(&f, 2, pages as usize);
        fill_umbra(&service, &f, &[1], pages);
        let entries = composed(&f, 1, pages);
        let hashmap = MutexHashMapCache::new();
        let kvm = kvm(pages.div_ceil(512) as usize + 16);
        let ipc_key = f.key(1);
        for (leaf, shadow) in &entries {
            hashmap.insert(ipc_key, *leaf);
            kvm.install(&ipc_key, leaf, shadow).expect("frames");
        }
        eprintln!(
            "invalidate/{label}: {pages} entries cached in {:.1?}; umbra cache (leaves, paths) {:?}; {}",
            setup.elapsed(),
            service.cache_entries(&service.worker()),
            host_pages::summary()
        );
        let key = umbra_key(&f, 1);
        let worker = service.worker();
        let cached = CachedPages::first(pages);
        let umbra_vmid1 = UmbraTarget {
            service: &service,
            worker: &worker,
            contexts: std::slice::from_ref(&key),
            cached: &cached,
        };
        let kvm_vmid1 = KvmTarget {
            kvm: &kvm,
            contexts: std::slice::from_ref(&ipc_key),
            entries: &entries,
            cached: &cached,
            vmid_unmap: VmidUnmap::chunked(40).expect("valid"),
        };

        let mut g = c.benchmark_group(format!("shadow_invalidate_page/{label}"));
        timer_floor(&mut g);
        if big {
            // The untimed restore after each KVM-style call re-installs up
            // to 256K entries: keep the iteration count small.
            g.sample_size(10)
                .warm_up_time(Duration::from_millis(200))
                .measurement_time(Duration::from_secs(1));
        }
        let mut page = 0u64;
        let mut next_ipa = move || {
            page = (page + 7919) % pages;
            L1Fixture::l2_ipa(page)
        };
        g.bench_function("umbra", |b| {
            b.iter_custom(|iters| {
                time_page_invalidations(&umbra_vmid1, &mut next_ipa, CpuCaches::Warm, iters)
            })
        });
        g.bench_function("mutex_hashmap", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let ipa = next_ipa();
                    let scope = ipas2(ipa, false);
                    let t0 = Instant::now();
                    black_box(hashmap.invalidate(1, &scope));
                    total += t0.elapsed();
                    let i = (ipa - L1Fixture::l2_ipa(0)) / 4096;
                    hashmap.insert(ipc_key, entries[i as usize].0);
                }
                total
            })
        });
        g.bench_function("kvm_style_ttl3", |b| {
            b.iter_custom(|iters| {
                kvm_vmid1.time(iters, CpuCaches::Warm, || ipas2e1_ttl3(next_ipa()))
            })
        });
        // As mainline KVM does it: the shadow probe finds the page's leaf
        // (L1 maps it with a page) and unmaps 4 KiB.
        g.bench_function("kvm_style", |b| {
            b.iter_custom(|iters| {
                kvm_vmid1.time(iters, CpuCaches::Warm, || ipas2(next_ipa(), false))
            })
        });
        // The TLBI and the refault of its page (L2's next access), timed
        // together: work the TLBI leaves for later (the reverse-map record,
        // the cache index's bit) falls in the refault, which the rows
        // above leave untimed (their restore is this refault).
        let walker = f.walker(1);
        g.bench_function("umbra_with_refault", |b| {
            b.iter_custom(|iters| umbra_vmid1.time_with_refault(iters, &mut next_ipa))
        });
        g.bench_function("kvm_style_with_refault", |b| {
            b.iter_custom(|iters| {
                time_calls(
                    iters,
                    CpuCaches::Warm,
                    || page_tlbi(next_ipa()),
                    |(ipa, scope)| {
                        black_box(kvm.invalidate_with(1, scope, kvm_vmid1.vmid_unmap));
                        kvm_fault_ok(&kvm, &f, &walker, &ipc_key, black_box(*ipa));
                    },
                    |_| {},
                )
            })
        });
        // A page L1 maps but the shadow lacks (L2 never touched it), its
        // 2 MiB region's first page present: KVM's probe finds that page
        // (4 KiB, not covering) and unmaps the whole GiB around it; Umbra
        // removes what it caches for the page (its walk-cache paths).
        let absent = AbsentPages::new(pages);
        absent.remove(&umbra_vmid1, &kvm_vmid1);
        let without_absent = CachedPages::first_except(pages, &absent.0);
        let kvm_absent = KvmTarget {
            cached: &without_absent,
            ..kvm_vmid1
        };
        let absent_pages = &absent.0;
        let mut absent_at = 0;
        let mut next_absent = move || {
            absent_at = (absent_at + 1) % absent_pages.len();
            L1Fixture::l2_ipa(absent_pages[absent_at])
        };
        {
            let present = ipas2(L1Fixture::l2_ipa(1), false);
            let probe = ipas2(L1Fixture::l2_ipa(absent_pages[0]), false);
            let umbra_removed = service.invalidate(&worker, 1, &probe);
            umbra_vmid1.leave_out(L1Fixture::l2_ipa(absent_pages[0]));
            eprintln!(
                "shadow_invalidate_page/{label}: one call removes {} KVM-style shadow leaves for a present page, {} for an absent one; Umbra {} entries (leaves, paths, shadow leaves) for an absent one",
                kvm_vmid1.removed_by(&present),
                kvm_absent.removed_by(&probe),
                umbra_removed
            );
        }
        limit_calls(&mut g, 20, Duration::from_nanos(300), 100_000);
        g.bench_function("umbra_absent", |b| {
            b.iter_custom(|iters| umbra_vmid1.time_absent(iters, || ipas2(next_absent(), false)))
        });
        if big {
            limit_calls(&mut g, 10, Duration::from_micros(600), 100);
        } else {
            limit_calls(&mut g, 20, Duration::from_micros(3), 20_000);
        }
        g.bench_function("kvm_style_absent", |b| {
            b.iter_custom(|iters| {
                kvm_absent.time(iters, CpuCaches::Warm, || ipas2(next_absent(), false))
            })
        });
        g.finish();
        absent.put_back(&umbra_vmid1, &kvm_vmid1);

        // The same one-page invalidations, each starting with the CPU
        // caches (and TLBs) emptied of the service's structures, so that
        // 1K and 1M entries start from the same state.
        if wanted(&format!("shadow_invalidate_page_cold/{label}")) {
            let evictor: &CacheEvictor = evictor.get_or_insert_with(CacheEvictor::new);
            let mut g = c.benchmark_group(format!("shadow_invalidate_page_cold/{label}"));
            // ~5 ms of eviction per timed call of a few microseconds.
            single_calls(&mut g, 300);
            g.bench_function("umbra", |b| {
                b.iter_custom(|iters| {
                    time_page_invalidations(
                        &umbra_vmid1,
                        &mut next_ipa,
                        CpuCaches::Evicted(evictor),
                        iters,
                    )
                })
            });
            g.bench_function("kvm_style_ttl3", |b| {
                b.iter_custom(|iters| {
                    kvm_vmid1.time(iters, CpuCaches::Evicted(evictor), || {
                        ipas2e1_ttl3(next_ipa())
                    })
                })
            });
            g.finish();
        }

        let mut g = c.benchmark_group(format!("shadow_invalidate_vmid/{label}"));
        if big {
            // Each timed call is followed by re-filling 1M entries
            // (untimed): ten samples of one call each.
            g.sample_size(10)
                .sampling_mode(SamplingMode::Flat)
                .warm_up_time(Duration::from_millis(1))
                .measurement_time(Duration::from_millis(1));
        }
        g.bench_function("umbra", |b| {
            b.iter_custom(|iters| {
                // Refilled through a fresh worker each time (unlike
                // `UmbraTarget`, which keeps one, as a service loop does;
                // the timed flush measured ~17 ns slower this way).
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    black_box(service.invalidate(&worker, 1, &InvalidateScope::Vmid));
                    total += t0.elapsed();
                    fill_umbra(&service, &f, &[1], pages);
                }
                total
            })
        });
        g.bench_function("mutex_hashmap", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    black_box(hashmap.invalidate(1, &InvalidateScope::Vmid));
                    total += t0.elapsed();
                    for (leaf, _) in &entries {
                        hashmap.insert(ipc_key, *leaf);
                    }
                }
                total
            })
        });
        // KVM's VMALLS12E1: [0, 2^pa_bits) in 1 GiB chunks (pa_bits is
        // the host's IPA limit), and one pass over the range as a lower
        // bound of it.
        for (name, vmid_unmap) in [
            ("kvm_style_pa40", VmidUnmap::chunked(40).expect("valid")),
            ("kvm_style_pa48", VmidUnmap::chunked(48).expect("valid")),
            ("kvm_style_one_pass_lower_bound", VmidUnmap::OnePass),
        ] {
            let target = KvmTarget {
                vmid_unmap,
                ..kvm_vmid1
            };
            g.bench_function(name, |b| {
                b.iter_custom(|iters| target.time(iters, CpuCaches::Warm, || InvalidateScope::Vmid))
            });
        }
        timer_floor(&mut g);
        g.finish();
    }
}

/// Pages of the fixture's first `pages` that the absent-page rows leave
/// out of the shadow (and Umbra's cache): one per 2 MiB region, never its
/// first page (which stays, so KVM's 2M probe finds a leaf that does not
/// cover the absent page).
struct AbsentPages(Vec<u64>);

impl AbsentPages {
    fn new(pages: u64) -> AbsentPages {
        AbsentPages((255..pages).step_by(512).collect())
    }

    /// Leaves the absent pages out: in Umbra by a leaf-only invalidation
    /// (its walk-cache paths stay, as after L2 touched the neighbours
    /// only), in the KVM-style shadow by a TTL=3 invalidation (that page's
    /// leaf only).
    fn remove(&self, umbra: &UmbraTarget, kvm: &KvmTarget) {
        for &page in &self.0 {
            let ipa = L1Fixture::l2_ipa(page);
            umbra.leave_out(ipa);
            kvm.kvm.invalidate(kvm.contexts[0].vmid, &ipas2e1_ttl3(ipa));
        }
    }

    /// Caches and shadows the absent pages again.
    fn put_back(&self, umbra: &UmbraTarget, kvm: &KvmTarget) {
        for &page in &self.0 {
            fill_contexts(umbra.service, umbra.worker, umbra.contexts, page..page + 1);
            let (leaf, shadow) = &kvm.entries[page as usize];
            for key in kvm.contexts {
                kvm.kvm.install(key, leaf, shadow).expect("frames");
            }
        }
    }
}

/// A timing row of the empty timed region `time_calls` puts around each
/// call (an `Instant::now()` pair and the sum): the part of every
/// per-call row in the group that is the timer, not the call.
fn timer_floor(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.bench_function("timer_floor", |b| {
        b.iter_custom(|iters| {
            time_calls(
                iters,
                CpuCaches::Warm,
                || (),
                |()| {
                    black_box(());
                },
                |()| {},
            )
        })
    });
}

/// Pages cached in each context of every context group below.
const CONTEXT_PAGES: u64 = 1024;

/// A one-page IPAS2E1IS and a VMALLS12E1IS for VMID 1 while `contexts`
/// contexts exist, each with [`CONTEXT_PAGES`] pages cached and shadowed:
/// `of_vmid1` of them are VMID 1's (different VTTBRs), the others one per
/// VMID from 2 up. KVM's design finds VMID 1's contexts by scanning all of
/// them; Umbra's by its VMID index.
fn invalidate_contexts(c: &mut Criterion) {
    for (label, contexts, of_vmid1) in [
        ("1", 1usize, 1usize),
        ("16", 16, 1),
        ("64", 64, 1),
        ("64_vmid1x4", 64, 4),
    ] {
        let group = format!("shadow_invalidate_contexts/{label}");
        if !wanted(&group) {
            continue;
        }
        let f = L1Fixture::with_alias_roots(CONTEXT_PAGES, of_vmid1 - 1);
        let others = (2..).take(contexts - of_vmid1).map(|vmid| f.key(vmid));
        let ipc_keys: Vec<ipc::message::ContextKey> = (0..of_vmid1)
            .map(|root| f.key_at(1, root))
            .chain(others)
            .collect();
        let keys: Vec<ContextKey> = ipc_keys.iter().map(context_key).collect();
        let setup = Instant::now();
        // Room for four times the contexts: the directory's 4-way buckets
        // (a hash table of twice the slots) recycle a context of a full
        // bucket even while slots are free, which with 64 of these keys
        // in 64 or 128 slots happens to 2 of them (5 keys in one bucket).
        let service = umbra(&f, 4 * contexts, CONTEXT_PAGES as usize);
        let worker = service.worker();
        fill_contexts(&service, &worker, &keys, 0..CONTEXT_PAGES);
        let stats = service.stats();
        assert_eq!(
            (stats.recycled_contexts, stats.evictions),
            (0, 0),
            "every context and entry must stay cached"
        );
        let entries = composed(&f, 1, CONTEXT_PAGES);
        let kvm = kvm(contexts * 8 + 16);
        for key in &ipc_keys {
            for (leaf, shadow) in &entries {
                kvm.install(key, leaf, shadow).expect("frames");
            }
        }
        eprintln!(
            "{group}: {contexts} contexts x {CONTEXT_PAGES} pages cached in {:.1?}; {}",
            setup.elapsed(),
            host_pages::summary()
        );
        let cached = CachedPages::first(CONTEXT_PAGES);
        let umbra_vmid1 = UmbraTarget {
            service: &service,
            worker: &worker,
            contexts: &keys[..of_vmid1],
            cached: &cached,
        };
        let kvm_vmid1 = KvmTarget {
            kvm: &kvm,
            contexts: &ipc_keys[..of_vmid1],
            entries: &entries,
            cached: &cached,
            vmid_unmap: VmidUnmap::chunked(40).expect("valid"),
        };
        let mut page = 0u64;
        let mut next_ipa = move || {
            page = (page + 7919) % CONTEXT_PAGES;
            L1Fixture::l2_ipa(page)
        };
        let mut g = c.benchmark_group(group);
        // Restores: one translate (Umbra) or install (KVM-style, TTL=3) per
        // context of VMID 1 after a page, 1K after a 1 GiB unmap, 1K
        // translates (walks) after a VMID flush.
        limit_calls(&mut g, 50, Duration::from_nanos(500), 1_000_000);
        timer_floor(&mut g);
        g.bench_function("umbra_page", |b| {
            b.iter_custom(|iters| {
                time_page_invalidations(&umbra_vmid1, &mut next_ipa, CpuCaches::Warm, iters)
            })
        });
        g.bench_function("kvm_style_page_ttl3", |b| {
            b.iter_custom(|iters| {
                kvm_vmid1.time(iters, CpuCaches::Warm, || ipas2e1_ttl3(next_ipa()))
            })
        });
        limit_calls(&mut g, 50, Duration::from_micros(5), 30_000);
        g.bench_function("kvm_style_page", |b| {
            b.iter_custom(|iters| {
                kvm_vmid1.time(iters, CpuCaches::Warm, || ipas2(next_ipa(), false))
            })
        });
        g.bench_function("kvm_style_vmid", |b| {
            b.iter_custom(|iters| kvm_vmid1.time(iters, CpuCaches::Warm, || InvalidateScope::Vmid))
        });
        single_calls(&mut g, 300);
        g.bench_function("umbra_vmid", |b| {
            b.iter_custom(|iters| {
                umbra_vmid1.time(iters, CpuCaches::Warm, || InvalidateScope::Vmid)
            })
        });
        g.finish();
    }
}

/// Where a range benchmark's ranges start.
#[derive(Clone, Copy)]
enum Placement {
    /// A different base page each call, anywhere inside the full GiB (so
    /// each call meets lines the previous ones did not touch).
    Moving,
    /// Always at this page (the same lines each call: hot).
    Fixed(u64),
}

/// One range benchmark: RIPAS2E1IS of `pages` pages placed as `placement`
/// says; `umbra` and `kvm` estimate one call of each (for the run length).
struct RangeCase {
    label: &'static str,
    pages: u64,
    placement: Placement,
    umbra: Duration,
    kvm: Duration,
}

/// RIPAS2E1IS over growing ranges of a 256K-entry context, and over the
/// 1 GiB after it that holds 16 cached pages: the cost should follow the
/// entries covered, not the range's size.
fn invalidate_range(c: &mut Criterion) {
    let case = |label, pages, placement, umbra_ns, kvm_ns| RangeCase {
        label,
        pages,
        placement,
        umbra: Duration::from_nanos(umbra_ns),
        kvm: Duration::from_nanos(kvm_ns),
    };
    let cases = [
        case("2", 2, Placement::Moving, 700, 100),
        case("16", 16, Placement::Moving, 4_000, 100),
        case("256", 256, Placement::Moving, 80_000, 600),
        case("4096", 4096, Placement::Moving, 1_200_000, 11_000),
        // The same 16 pages each call, for comparison with the next.
        case(
            "16_fixed",
            16,
            Placement::Fixed(RANGE_DENSE / 2),
            2_000,
            100,
        ),
        case(
            "1G_16_cached",
            1 << 18,
            Placement::Fixed(RANGE_DENSE),
            11_000,
            10_000,
        ),
    ];
    if !cases
        .iter()
        .any(|case| wanted(&format!("shadow_invalidate_range/{}", case.label)))
    {
        return;
    }
    let setup = Instant::now();
    let fixture = RangeFixture::new();
    let (service, key) = fixture.umbra(None);
    let worker = service.worker();
    let (kvm, ipc_key) = fixture.kvm();
    let cached = &fixture.cached;
    // A few full cache buckets evict (at worst a re-walk in a restore).
    eprintln!(
        "shadow_invalidate_range: {} entries cached in {:.1?}; umbra cache (leaves, paths) {:?}, {} evicted; {}",
        cached.all().count(),
        setup.elapsed(),
        service.cache_entries(&worker),
        service.stats().evictions,
        host_pages::summary()
    );
    let umbra_vmid1 = UmbraTarget {
        service: &service,
        worker: &worker,
        contexts: std::slice::from_ref(&key),
        cached,
    };
    let kvm_vmid1 = KvmTarget {
        kvm: &kvm,
        contexts: std::slice::from_ref(&ipc_key),
        entries: &fixture.entries,
        cached,
        vmid_unmap: VmidUnmap::chunked(40).expect("valid"),
    };
    for case in cases {
        let group = format!("shadow_invalidate_range/{}", case.label);
        if !wanted(&group) {
            continue;
        }
        let pages = case.pages;
        let mut base = 0u64;
        let mut next_range = move || match case.placement {
            Placement::Moving => {
                base = (base + 7919) % (RANGE_DENSE - pages + 1);
                ripas2e1(L1Fixture::l2_ipa(base), pages)
            }
            Placement::Fixed(page) => ripas2e1(L1Fixture::l2_ipa(page), pages),
        };
        let probe = next_range();
        let covered = cached.covered_by(&probe).count() as u64;
        eprintln!(
            "{group}: {covered} cached pages covered; one call removes {} Umbra entries (leaves, paths, shadow leaves), {} KVM-style shadow leaves",
            umbra_vmid1.removed_by(&probe),
            kvm_vmid1.removed_by(&probe)
        );
        let mut g = c.benchmark_group(group);
        // Each call is followed by translating (Umbra, ~1.5 us each) or
        // installing (KVM-style) every cached page it covered again.
        let calls = (10_000_000 / (covered + 8)).clamp(1_000, 100_000) as u32;
        limit_calls(&mut g, 20, case.umbra, calls);
        timer_floor(&mut g);
        g.bench_function("umbra", |b| {
            b.iter_custom(|iters| umbra_vmid1.time(iters, CpuCaches::Warm, &mut next_range))
        });
        limit_calls(&mut g, 20, case.kvm, calls);
        g.bench_function("kvm_style", |b| {
            b.iter_custom(|iters| kvm_vmid1.time(iters, CpuCaches::Warm, &mut next_range))
        });
        g.finish();
    }
}

/// The invalidation path's parts that are this crate's shadow-table and
/// reverse-map code, alone, at both cache sizes: where the time of a
/// one-page invalidation goes.
fn parts(c: &mut Criterion) {
    use shadow_mmu::rmap::{ReverseMap, ShadowRef};
    use shadow_mmu::shadow_table::ShadowTable;
    for (label, pages) in SIZES {
        if !wanted(&format!("shadow_parts/{label}"))
            && !wanted(&format!("shadow_parts_flush/{label}"))
        {
            continue;
        }
        let f = L1Fixture::new(pages);
        let entries = composed(&f, 1, pages);
        let pool =
            Arc::new(HeapFramePool::new(pages.div_ceil(512) as usize + 16, 1 << 40).expect("pool"));
        let table = ShadowTable::new(pool, NoHardwareTlb, ShadowConfig::default()).expect("root");
        let mut rmap = ReverseMap::new();
        for (leaf, shadow) in &entries {
            table.map(shadow).expect("frames");
            let r = ShadowRef {
                context: 1u16,
                l2_ipa: shadow.l2_ipa_base,
                size: shadow.size,
            };
            rmap.insert(leaf.l1_ipa_base, r).expect("aligned");
        }
        let mut g = c.benchmark_group(format!("shadow_parts/{label}"));
        let mut page = 0u64;
        let mut next = move || {
            page = (page + 7919) % pages;
            page as usize
        };
        g.bench_function("shadow_table_unmap_page", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let shadow = entries[next()].1;
                    let t0 = Instant::now();
                    black_box(table.unmap_range(shadow.l2_ipa_base, shadow.size));
                    total += t0.elapsed();
                    table.map(&shadow).expect("frames");
                }
                total
            })
        });
        g.bench_function("rmap_remove_shadow_page", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (leaf, shadow) = entries[next()];
                    let t0 = Instant::now();
                    black_box(rmap.remove_shadow_range(1, shadow.l2_ipa_base, shadow.size));
                    total += t0.elapsed();
                    let r = ShadowRef {
                        context: 1u16,
                        l2_ipa: shadow.l2_ipa_base,
                        size: shadow.size,
                    };
                    rmap.insert(leaf.l1_ipa_base, r).expect("aligned");
                }
                total
            })
        });
        g.bench_function("rmap_remove_l1_page", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (leaf, shadow) = entries[next()];
                    let t0 = Instant::now();
                    black_box(rmap.remove_range(leaf.l1_ipa_base, 4096, |r| {
                        black_box(r);
                    }));
                    total += t0.elapsed();
                    let r = ShadowRef {
                        context: 1u16,
                        l2_ipa: shadow.l2_ipa_base,
                        size: shadow.size,
                    };
                    rmap.insert(leaf.l1_ipa_base, r).expect("aligned");
                }
                total
            })
        });
        g.finish();

        let mut g = c.benchmark_group(format!("shadow_parts_flush/{label}"));
        if pages > 1 << 16 {
            g.sample_size(10)
                .sampling_mode(SamplingMode::Flat)
                .warm_up_time(Duration::from_millis(1))
                .measurement_time(Duration::from_millis(1));
        }
        g.bench_function("shadow_table_clear", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    black_box(table.clear());
                    total += t0.elapsed();
                    for (_, shadow) in &entries {
                        table.map(shadow).expect("frames");
                    }
                }
                total
            })
        });
        // The work `clear` leaves to later calls (returning the detached
        // tables' frames, RECLAIM_STEP per later map or unmap), done at
        // once: the flush's work rather than its latency (the reverse
        // map's and the cache's deferred cleanup are not in it).
        g.bench_function("shadow_table_clear_and_reclaim", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    black_box(table.clear());
                    black_box(table.reclaim_detached(usize::MAX));
                    total += t0.elapsed();
                    for (_, shadow) in &entries {
                        table.map(shadow).expect("frames");
                    }
                }
                total
            })
        });
        // What the KVM-style VMALLS12E1 does to the same table: [0, 2^40)
        // in 1 GiB chunks, and one pass over [0, 2^48).
        for (name, vmid_unmap) in [
            (
                "kvm_unmap_chunks_pa40",
                VmidUnmap::chunked(40).expect("valid"),
            ),
            ("kvm_unmap_one_pass", VmidUnmap::OnePass),
        ] {
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let t0 = Instant::now();
                        black_box(match vmid_unmap {
                            VmidUnmap::Chunked { pa_bits } => kvm_unmap_chunked(&table, pa_bits),
                            VmidUnmap::OnePass => table.unmap_range_leaf_by_leaf(0, 1 << 48),
                        });
                        total += t0.elapsed();
                        for (_, shadow) in &entries {
                            table.map(shadow).expect("frames");
                        }
                    }
                    total
                })
            });
        }
        g.bench_function("rmap_forget_context", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    black_box(rmap.forget_context(1));
                    total += t0.elapsed();
                    for (leaf, shadow) in &entries {
                        let r = ShadowRef {
                            context: 1u16,
                            l2_ipa: shadow.l2_ipa_base,
                            size: shadow.size,
                        };
                        rmap.insert(leaf.l1_ipa_base, r).expect("aligned");
                    }
                }
                total
            })
        });
        g.finish();
    }
}

/// What the CPU caches hold when a timed call starts.
#[derive(Clone, Copy)]
enum CpuCaches<'a> {
    /// Whatever the previous call and its restore left (a hot loop: a
    /// small cache sits in L1/L2).
    Warm,
    /// Nothing of the service's: evicted (untimed) just before the call.
    Evicted(&'a CacheEvictor),
}

impl CpuCaches<'_> {
    fn prepare(self) {
        if let CpuCaches::Evicted(evictor) = self {
            evictor.evict();
        }
    }
}

/// Empties the CPU caches and TLBs of everything else by reading one word
/// of every line of a buffer twice the last-level cache (32 MiB of L3 on
/// the benchmark machine).
struct CacheEvictor {
    words: Vec<u64>,
}

impl CacheEvictor {
    const BYTES: usize = 64 << 20;

    fn new() -> CacheEvictor {
        // Written, so every page has a frame of its own (untouched zeroed
        // memory would read one shared zero page).
        CacheEvictor {
            words: (0..Self::BYTES as u64 / 8).collect(),
        }
    }

    fn evict(&self) {
        let sum = self
            .words
            .iter()
            .step_by(64 / 8)
            .fold(0u64, |sum, w| sum.wrapping_add(*w));
        black_box(sum);
    }
}

/// Times `iters` calls. Before each (untimed), `next` gives its input and
/// the CPU caches are prepared as `caches` says; after each (untimed),
/// `restore` puts back what it removed, so every call starts from the same
/// state.
fn time_calls<S>(
    iters: u64,
    caches: CpuCaches,
    mut next: impl FnMut() -> S,
    mut call: impl FnMut(&S),
    mut restore: impl FnMut(&S),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let input = next();
        caches.prepare();
        let t0 = Instant::now();
        call(&input);
        total += t0.elapsed();
        restore(&input);
    }
    total
}

/// Criterion sizes a run by the timed part alone, so an untimed restore or
/// eviction after every call can make it last far longer than asked. Sets
/// flat sampling over `samples` samples and times for about `calls` timed
/// calls (plus a quarter for warm-up) if each takes `timed`.
fn limit_calls(g: &mut BenchmarkGroup<'_, WallTime>, samples: usize, timed: Duration, calls: u32) {
    g.sample_size(samples)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(timed * (calls / 4).max(1))
        .measurement_time(timed * calls);
}

/// Samples of one call each, `samples` of them (after one warm-up call):
/// for calls whose untimed restore or eviction costs milliseconds. (Timed
/// warm-up would size the run by the first call, which can be far slower
/// than the rest.)
fn single_calls(g: &mut BenchmarkGroup<'_, WallTime>, samples: usize) {
    g.sample_size(samples)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_nanos(1))
        .measurement_time(Duration::from_nanos(1));
}

/// Umbra's contexts of one VMID (`contexts`, each caching `cached`), for
/// timing TLBIs of that VMID: each call's removals are translated back.
struct UmbraTarget<'a> {
    service: &'a Umbra,
    worker: &'a Worker,
    contexts: &'a [ContextKey],
    cached: &'a CachedPages,
}

impl UmbraTarget<'_> {
    fn time(
        &self,
        iters: u64,
        caches: CpuCaches,
        next_scope: impl FnMut() -> InvalidateScope,
    ) -> Duration {
        let vmid = self.contexts[0].vmid;
        time_calls(
            iters,
            caches,
            next_scope,
            |scope| {
                black_box(self.service.invalidate(self.worker, vmid, scope));
            },
            |scope| self.restore(scope),
        )
    }

    /// Times `iters` one-page TLBIs, each with the refault of its page in
    /// every context (the restore [`UmbraTarget::time`] leaves untimed).
    /// IPAS2E1IS without TTL, at the pages `next_ipa` gives.
    fn time_with_refault(&self, iters: u64, mut next_ipa: impl FnMut() -> u64) -> Duration {
        let vmid = self.contexts[0].vmid;
        time_calls(
            iters,
            CpuCaches::Warm,
            || page_tlbi(next_ipa()),
            |(ipa, scope)| {
                black_box(self.service.invalidate(self.worker, vmid, scope));
                for key in self.contexts {
                    translate_ok(self.service, self.worker, key, black_box(*ipa));
                }
            },
            |_| {},
        )
    }

    /// Translates again every cached page `scope` covers.
    fn restore(&self, scope: &InvalidateScope) {
        let pages = self.cached.covered_by(scope);
        fill_contexts(self.service, self.worker, self.contexts, pages);
    }

    /// Leaves the page at `ipa` out of every context: translated (so the
    /// walk-cache paths to it are cached) and then invalidated leaf only
    /// (IPAS2LE1IS, which keeps the paths).
    fn leave_out(&self, ipa: u64) {
        for key in self.contexts {
            translate_ok(self.service, self.worker, key, ipa);
        }
        self.service
            .invalidate(self.worker, self.contexts[0].vmid, &ipas2(ipa, true));
    }

    /// Times `iters` IPA invalidations of pages left out of the cache
    /// ([`UmbraTarget::leave_out`]), putting back after each what it
    /// removed.
    fn time_absent(&self, iters: u64, next_scope: impl FnMut() -> InvalidateScope) -> Duration {
        let vmid = self.contexts[0].vmid;
        time_calls(
            iters,
            CpuCaches::Warm,
            next_scope,
            |scope| {
                black_box(self.service.invalidate(self.worker, vmid, scope));
            },
            |scope| {
                if let InvalidateScope::Ipa(s) = scope {
                    self.leave_out(s.range.start());
                }
            },
        )
    }

    /// Entries one TLBI of `scope` removes (cache entries, intermediate
    /// entries, shadow leaves), restored afterwards.
    fn removed_by(&self, scope: &InvalidateScope) -> u64 {
        let removed = self
            .service
            .invalidate(self.worker, self.contexts[0].vmid, scope);
        self.restore(scope);
        removed
    }
}

/// The KVM-style baseline's contexts of one VMID, for timing TLBIs of that
/// VMID (VMALLS12E1 carried out as `vmid_unmap` says): what each call
/// unmaps is planned before it (untimed, [`KvmStyle::unmap_plan`]) and
/// installed again after it from `entries` (composed, by page number)
/// where `cached` says it was.
#[derive(Clone, Copy)]
struct KvmTarget<'a> {
    kvm: &'a Kvm,
    contexts: &'a [ipc::message::ContextKey],
    entries: &'a [(L1Translation, ShadowMapping)],
    cached: &'a CachedPages,
    vmid_unmap: VmidUnmap,
}

/// One KVM-style TLBI and what it will unmap in each context.
type PlannedTlbi = (InvalidateScope, Vec<(ipc::message::ContextKey, u64, u64)>);

impl KvmTarget<'_> {
    fn time(
        &self,
        iters: u64,
        caches: CpuCaches,
        mut next_scope: impl FnMut() -> InvalidateScope,
    ) -> Duration {
        let vmid = self.contexts[0].vmid;
        time_calls(
            iters,
            caches,
            || self.plan(next_scope()),
            |(scope, _)| {
                black_box(self.kvm.invalidate_with(vmid, scope, self.vmid_unmap));
            },
            |planned| self.restore(planned),
        )
    }

    fn plan(&self, scope: InvalidateScope) -> PlannedTlbi {
        let plan = self.kvm.unmap_plan(self.contexts[0].vmid, &scope);
        (scope, plan)
    }

    /// Installs again every cached page the TLBI unmapped.
    fn restore(&self, (_, plan): &PlannedTlbi) {
        for (key, start, len) in plan {
            for page in self.cached.within(*start, *len) {
                let (leaf, shadow) = &self.entries[page as usize];
                self.kvm.install(key, leaf, shadow).expect("frames");
            }
        }
    }

    /// Shadow leaves one TLBI of `scope` removes, restored afterwards.
    fn removed_by(&self, scope: &InvalidateScope) -> usize {
        let planned = self.plan(*scope);
        let removed = self
            .kvm
            .invalidate_with(self.contexts[0].vmid, scope, self.vmid_unmap);
        self.restore(&planned);
        removed
    }
}

/// `iters` one-page IPAS2E1IS invalidations (no TTL) of `target`'s VMID at
/// the pages `next_ipa` gives, each page translated again (untimed) in
/// every context of the VMID so every call starts from the full cache.
fn time_page_invalidations(
    target: &UmbraTarget,
    next_ipa: &mut impl FnMut() -> u64,
    caches: CpuCaches,
    iters: u64,
) -> Duration {
    target.time(iters, caches, || ipas2(next_ipa(), false))
}

/// Umbra's one-page invalidation at intermediate cache sizes.
fn scaling(c: &mut Criterion) {
    for (label, pages) in [("16K", 1u64 << 14), ("256K", 1 << 18)] {
        if !wanted(&format!("shadow_invalidate_scaling/{label}")) {
            continue;
        }
        let f = L1Fixture::new(pages);
        let service = umbra(&f, 2, pages as usize);
        fill_umbra(&service, &f, &[1], pages);
        eprintln!(
            "shadow_invalidate_scaling/{label}: {pages} entries cached; {}",
            host_pages::summary()
        );
        let key = umbra_key(&f, 1);
        let worker = service.worker();
        let cached = CachedPages::first(pages);
        let target = UmbraTarget {
            service: &service,
            worker: &worker,
            contexts: std::slice::from_ref(&key),
            cached: &cached,
        };
        let mut g = c.benchmark_group(format!("shadow_invalidate_scaling/{label}"));
        let mut page = 0u64;
        let mut next_ipa = move || {
            page = (page + 7919) % pages;
            L1Fixture::l2_ipa(page)
        };
        g.bench_function("umbra_page", |b| {
            b.iter_custom(|iters| {
                time_page_invalidations(&target, &mut next_ipa, CpuCaches::Warm, iters)
            })
        });
        g.finish();
    }
}

criterion_group!(
    benches,
    hit,
    hit_large,
    miss,
    read_throughput,
    invalidate,
    invalidate_contexts,
    invalidate_range,
    scaling,
    parts
);
/// `criterion_main!` with the heap put on the pages `UMBRA_BENCH_PAGES`
/// asks for first (huge unless `4k`; see `bench::host_pages`): hv maps
/// the service's memory with 2 MiB / 1 GiB blocks.
fn main() {
    host_pages::select_for("shadow_mmu");
    benches();
    Criterion::default().configure_from_args().final_summary();
}
