//! Shadow-MMU service benchmarks, each beside its baselines in the same run
//! (see `bench/src/shadow_baseline.rs` for the fixtures and baselines):
//!
//! - `shadow_hit`: a cached translation (Umbra's lock-free lookup and its
//!   full `translate` on a hit, served in a `Burst` as a service loop under
//!   load serves them (one epoch pin per 16 requests), and the lookup as a
//!   lone request with its own pin) vs `Mutex<HashMap>` vs KVM-style (linear
//!   context scan + shadow table walk); 8 contexts, looked up round-robin.
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
//!   (untimed), so each call starts from the full cache.
//! - `shadow_invalidate_scaling`: Umbra's one-page invalidation alone at
//!   16K and 256K entries, between the 1K and 1M of the groups above: where
//!   its cost stops growing (once the working set has left the CPU caches,
//!   a constant number of cache misses).
//! - `shadow_parts` / `shadow_parts_flush`: the reverse-map and shadow-table
//!   parts of an invalidation alone, at 1K and 1M entries.
//!
//! Run: `cargo bench -p bench --bench shadow_mmu -- --measurement-time 3 --warm-up-time 1`
//! (the 1M-entry invalidation groups set their own shorter times: every
//! timed call there is followed by an untimed restore of the cache).

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bench::shadow_baseline::{exposed_features, KvmStyle, L1Fixture, MutexHashMapCache};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use ipc::tlbi::{InvalidateScope, Shareability, Tlbi, TlbiOp, TlbiParams};
use shadow_mmu::budget::Budget;
use shadow_mmu::compose::{
    resolve, Composition, HostExecute, L0RegionMap, L1Translation, ShadowMapping,
};
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::{Guard, HostBackend, Service, ServiceConfig, Translated, Worker};
use shadow_mmu::shadow_table::{HeapFramePool, NoHardwareTlb, ShadowConfig};
use walker::{AbortContext, AbortOrigin, AccessKind, Endianness, Memslots};

type Umbra = Service<Memslots<'static>, L0RegionMap, HostBackend>;
type Kvm = KvmStyle<Arc<HeapFramePool>, NoHardwareTlb>;

const ABORT: AbortContext = AbortContext {
    far: None,
    origin: AbortOrigin::Access,
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
    let k = f.key(vmid);
    ContextKey::new(k.vmid, k.vttbr, k.vtcr, Endianness::Little)
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

/// A service whose budget holds `entries_per_context` 4 KiB entries in
/// each of `contexts` contexts (cache slots, shadow tables, reverse map).
fn umbra(f: &L1Fixture, contexts: usize, entries_per_context: usize) -> Umbra {
    let frames_needed = contexts * (entries_per_context.div_ceil(512) + 8);
    let mut bytes = 1 << 22;
    let budget = loop {
        if let Ok(b) = Budget::split(bytes, contexts) {
            if b.capacity.leaves_per_context >= 2 * entries_per_context
                && b.frames >= frames_needed
                && b.shadow_leaves >= contexts * entries_per_context
            {
                break b;
            }
        }
        bytes *= 2;
    };
    let config = ServiceConfig {
        features: exposed_features(),
        // A random key per run, as a deployment has.
        hash_seed: std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            0u64,
        ),
        budget,
        first_shadow_vmid: 100,
        host_vmids: shadow_mmu::context::HostVmids {
            width: ipc::VmidWidth::Bits16,
            l1_vmid: 1,
        },
    };
    let backend = HostBackend::new(budget.frames, ShadowConfig::default()).expect("pool");
    Service::new(config, f.memory, f.l0.clone(), backend).expect("valid shadow VMIDs")
}

fn translate_ok(service: &Umbra, worker: &shadow_mmu::service::Worker, key: &ContextKey, ipa: u64) {
    match service.translate(worker, key, ipa, AccessKind::Read, &ABORT) {
        Translated::Mapped(_) => {}
        other => panic!("translate {ipa:#x}: {other:?}"),
    }
}

fn fill_umbra(service: &Umbra, f: &L1Fixture, vmids: &[u16], pages: u64) {
    let worker = service.worker();
    for &vmid in vmids {
        let key = umbra_key(f, vmid);
        for i in 0..pages {
            translate_ok(service, &worker, &key, L1Fixture::l2_ipa(i));
        }
    }
}

fn composed(f: &L1Fixture, vmid: u16, pages: u64) -> Vec<(L1Translation, ShadowMapping)> {
    let w = f.walker(vmid);
    (0..pages)
        .map(|i| {
            let ipa = L1Fixture::l2_ipa(i);
            let t = w.walk(&f.memory, ipa, AccessKind::Read).expect("mapped");
            let leaf = L1Translation::from_translation(&t);
            let Ok(Composition::Mapped(c)) = resolve(&leaf, ipa, &f.l0, HostExecute::PerLevel)
            else {
                panic!("L1 memory")
            };
            (leaf, c.shadow)
        })
        .collect()
}

fn kvm(frames: usize) -> Kvm {
    KvmStyle::new(
        Arc::new(HeapFramePool::new(frames, 1 << 40).expect("pool")),
        NoHardwareTlb,
    )
}

/// Whether the command line's filter (criterion's positional argument, read
/// here as `|`-separated name prefixes) can select benchmarks of `group`,
/// so the expensive setup of unselected groups (1M entries) is skipped.
fn wanted(group: &str) -> bool {
    const VALUED: [&str; 13] = [
        "--measurement-time",
        "--warm-up-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--load-baseline",
        "--noise-threshold",
        "--significance-level",
        "--confidence-level",
        "--nresamples",
        "--output-format",
        "--color",
        "--profile-time",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let filters: Vec<&str> = args
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            !a.starts_with('-') && (*i == 0 || !VALUED.contains(&args[i - 1].as_str()))
        })
        .flat_map(|(_, a)| a.split('|'))
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| group.starts_with(f) || f.starts_with(group))
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
            kvm.install(&f.key(vmid), &shadow).expect("frames");
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
            black_box(kvm.lookup(&ipc_keys[vmid as usize], ipa))
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
        kvm.install(&ipc_key, &shadow).expect("frames");
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
                kvm.fault(
                    &ipc_key,
                    &walker,
                    &f.memory,
                    &f.l0,
                    black_box(ipa),
                    AccessKind::Read,
                )
                .expect("maps");
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
    for (label, pages) in SIZES {
        if !wanted(&format!("shadow_invalidate_page/{label}"))
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
            kvm.install(&ipc_key, shadow).expect("frames");
        }
        eprintln!(
            "invalidate/{label}: {pages} entries cached in {:.1?}; umbra cache (leaves, paths) {:?}",
            setup.elapsed(),
            service.cache_entries(&service.worker())
        );
        let key = umbra_key(&f, 1);
        let worker = service.worker();
        let restore_kvm = |start: u64, len: u64| {
            let first = (start.saturating_sub(L1Fixture::l2_ipa(0)) / 4096).min(pages);
            let last = ((start + len).saturating_sub(L1Fixture::l2_ipa(0)) / 4096).min(pages);
            for (_, shadow) in &entries[first as usize..last as usize] {
                kvm.install(&ipc_key, shadow).expect("frames");
            }
        };

        let mut g = c.benchmark_group(format!("shadow_invalidate_page/{label}"));
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
                time_page_invalidations(&service, &worker, &key, &mut next_ipa, iters)
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
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let ipa = next_ipa();
                    let scope = ipas2e1_ttl3(ipa);
                    let t0 = Instant::now();
                    black_box(kvm.invalidate(1, &scope));
                    total += t0.elapsed();
                    restore_kvm(ipa, 4096);
                }
                total
            })
        });
        g.bench_function("kvm_style", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let ipa = next_ipa();
                    let scope = ipas2(ipa, false);
                    let t0 = Instant::now();
                    black_box(kvm.invalidate(1, &scope));
                    total += t0.elapsed();
                    restore_kvm(ipa & !((1 << 30) - 1), 1 << 30);
                }
                total
            })
        });
        g.finish();

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
        g.bench_function("kvm_style", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    black_box(kvm.invalidate(1, &InvalidateScope::Vmid));
                    total += t0.elapsed();
                    restore_kvm(0, 1 << 48);
                }
                total
            })
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
        if !wanted(&format!("shadow_parts/{label}")) {
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

/// `iters` one-page IPAS2E1IS invalidations of VMID 1 at the pages
/// `next_ipa` gives, each page translated again (untimed) so every call
/// starts from the full cache.
fn time_page_invalidations(
    service: &Umbra,
    worker: &shadow_mmu::service::Worker,
    key: &ContextKey,
    next_ipa: &mut impl FnMut() -> u64,
    iters: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let ipa = next_ipa();
        let scope = ipas2(ipa, false);
        let t0 = Instant::now();
        black_box(service.invalidate(worker, 1, &scope));
        total += t0.elapsed();
        translate_ok(service, worker, key, ipa);
    }
    total
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
        let key = umbra_key(&f, 1);
        let worker = service.worker();
        let mut g = c.benchmark_group(format!("shadow_invalidate_scaling/{label}"));
        let mut page = 0u64;
        let mut next_ipa = move || {
            page = (page + 7919) % pages;
            L1Fixture::l2_ipa(page)
        };
        g.bench_function("umbra_page", |b| {
            b.iter_custom(|iters| {
                time_page_invalidations(&service, &worker, &key, &mut next_ipa, iters)
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
    scaling,
    parts
);
criterion_main!(benches);
