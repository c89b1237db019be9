//! Walker benchmarks, each beside its baseline in the same run (issue 2):
//!
//! * `walker_hot`: one walk per granule and start level, descriptors hot in
//!   cache, by the walker (`walker/...`) and by a baseline that walks and
//!   reads descriptors the way KVM's nested walker does (`kvm_style/...`:
//!   `walk_nested_s2_pgd` with `kvm_read_guest` per level: last-used-slot
//!   cache or memslot tree search, per-page split, slot checks, an
//!   out-of-line copy; see `bench::walker_baseline`).
//!   Both see the same memslot layout: the table slot plus 15 small slots
//!   below it (16 memslots, a typical VMM memory map), and, for the 4-level
//!   4K walk, also a single slot (`.../1slot`). `walker_leaf` is the lean
//!   walk (`translate_leaf`: the same walk, leaf only, no descriptor
//!   trail); `*_hinted` keep a memslot hint across walks, `*_path` a
//!   path hint (`PathHint`: every level read at once where the previous
//!   walk's path predicts it); `regions/...` walk IPAs that move inside
//!   one 2 MiB region or between two (see `regions`). These rows build
//!   the walker once, outside the timed loop (Umbra keeps one per context);
//!   `walker_new_walk` / `walker_new_leaf` build it inside, from L1's
//!   VTCR/VTTBR, on every walk, as the baseline decodes them on every walk
//!   (KVM's `kvm_walk_nested_s2`): the like-for-like comparison.
//! * `walker_cold`: what a hypervisor sees when its guests touch memory
//!   all over their address spaces. A 4-level 4K table in a 512 MiB
//!   memslot where the walks of any 512 consecutive IPAs share nothing
//!   below the root (each has its own level-1, level-2 and level-3 table,
//!   at shuffled pages), and the caches are evicted (untimed, by streaming
//!   over twice the LLC) every 8 batches: every level of every walk is a
//!   dependent cache and TLB miss unless walks overlap. One batched call
//!   of 64 walks (`batch64`) against 64 single walks (`single64`), and the
//!   baseline (`kvm_style64`), in the same run; also 64 lean single walks
//!   (`leaf_single64`, `translate_leaf`: the leaf only, no trail). Two
//!   rows explain where the batch's time goes: `loads_only64`, the same
//!   4 x 64 descriptor loads with no walk logic (each level's 64 loads
//!   independent, each walk's next load dependent on its previous one: the
//!   floor the memory system sets for any level-by-level batch of these
//!   walks), and `batch64_in_cache`, the batch's own work with every table
//!   in cache.
//! * `walker_cold_single`: one walk at a time on the cold table, the
//!   guest's tables out of the caches and the hypervisor's own state warm
//!   (`bench::cold_single`: before each walk, untimed, exactly its
//!   descriptor lines are flushed, `clflush`; x86-64 only). `in_region`:
//!   64 pages of one region after another, each walk in the previous
//!   one's last-level table (a path hint predicts 63 in 64);
//!   `across_regions`: the cold sequence (the hint never predicts);
//!   `all_levels` flushes every level's line, `leaf_only` the leaf's. One
//!   iteration is one walk, timed alone; `floor` is the timer alone after
//!   the same flush, `loads_chained` / `loads_at_once` the walk's four
//!   loads with no walk logic, one after another or at once.
//!   `examples/cold_single.rs` runs the rows interleaved.
//!
//! The process's heap, every table of every row, is on 2 MiB pages
//! (`bench::host_pages`, as the shadow-mmu benches; `UMBRA_BENCH_PAGES=4k`
//! for base pages): see `main`. `examples/cold_ratio.rs` runs the cold
//! rows interleaved batch by batch, for ratios load drift moves less.
//!
//! Goals: <= 25 ns for the hot 4-level 4K walk, >= 5x the baseline, and
//! batching >= 2x single walks on the cold table.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bench::cold_single::{with_checked_walks, Cold, ColdSingle, Row, WalkSequence};
use bench::walker_baseline::{hot_regions, hot_walk};
use bench::walker_fixture::{
    check_cold_batches, cold_descriptor_words, cold_fixture, cold_requests, features,
    hot_geometries, hot_geometry, kvm_slots, walker_for, CacheEvictor, WalkerMemory,
    BATCHES_PER_EVICTION, COLD_BATCH as BATCH, COLD_LEVELS, DECOY_SLOTS,
};
use bench::{host_pages, line_flush, wanted};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use walker::{
    AccessKind, Endianness, PathHint, SlotHint, Stage2Registers, Stage2Walker, Translation,
    WalkError, WalkRequest,
};

fn hot(c: &mut Criterion) {
    let mut group = c.benchmark_group("walker_hot");
    group.throughput(Throughput::Elements(1));
    let decoy = vec![0u8; 4096];
    for (name, geometry) in hot_geometries() {
        let fixture = hot_walk(geometry);
        let layouts: &[(u64, &str)] = if name == "4K/L0" {
            &[(DECOY_SLOTS, "16slots"), (0, "1slot")]
        } else {
            &[(DECOY_SLOTS, "16slots")]
        };
        for &(decoys, layout) in layouts {
            let memory = WalkerMemory::new(&fixture.memory, decoys);
            let mut storage = Vec::new();
            let memslots = memory.memslots(&mut storage);
            let walker = walker_for(fixture.vtcr, fixture.vttbr);
            let translation = walker
                .walk(&memslots, fixture.ipa, AccessKind::Read)
                .unwrap_or_else(|e| panic!("{name}: walker fails the fixture: {e:?}"));
            assert_eq!(translation.output_address, fixture.expected_oa, "{name}");
            assert_eq!(translation.level, 3, "{name}");
            let baseline = kvm_slots(&fixture.memory, &decoy, decoys);
            let expected = baseline
                .walk(fixture.vtcr, fixture.vttbr, fixture.ipa)
                .unwrap_or_else(|e| panic!("{name}: baseline fails the fixture: {e:?}"));
            assert_eq!(expected.oa, fixture.expected_oa, "{name}");

            let id = format!("{name}/{layout}");
            group.bench_with_input(BenchmarkId::new("walker", &id), &fixture.ipa, |b, &ipa| {
                b.iter(|| {
                    // The whole result is materialised, as a caller gets it.
                    let _ = black_box(walker.walk(&memslots, black_box(ipa), AccessKind::Read));
                })
            });
            // The memslot hint kept across walks, as KVM keeps its
            // last_used_slot across reads.
            let mut hint = SlotHint::default();
            group.bench_with_input(
                BenchmarkId::new("walker_hinted", &id),
                &fixture.ipa,
                |b, &ipa| {
                    b.iter(|| {
                        let _ = black_box(walker.walk_hinted(
                            &memslots,
                            black_box(ipa),
                            AccessKind::Read,
                            &mut hint,
                        ));
                    })
                },
            );
            // The lean walk: the leaf only, no descriptor trail.
            assert_eq!(
                walker.translate_leaf(&memslots, fixture.ipa, AccessKind::Read),
                Ok(walker::LeafTranslation::from(&translation)),
                "{name}"
            );
            group.bench_with_input(
                BenchmarkId::new("walker_leaf", &id),
                &fixture.ipa,
                |b, &ipa| {
                    b.iter(|| {
                        let _ = black_box(walker.translate_leaf(
                            &memslots,
                            black_box(ipa),
                            AccessKind::Read,
                        ));
                    })
                },
            );
            let mut hint = SlotHint::default();
            group.bench_with_input(
                BenchmarkId::new("walker_leaf_hinted", &id),
                &fixture.ipa,
                |b, &ipa| {
                    b.iter(|| {
                        let _ = black_box(walker.translate_leaf_hinted(
                            &memslots,
                            black_box(ipa),
                            AccessKind::Read,
                            &mut hint,
                        ));
                    })
                },
            );
            // The path hint kept across walks: every walk after the first
            // reads its levels at once (the same IPA: the path predicted).
            let mut path = PathHint::default();
            group.bench_with_input(
                BenchmarkId::new("walker_path", &id),
                &fixture.ipa,
                |b, &ipa| {
                    b.iter(|| {
                        let _ = black_box(walker.walk_path_hinted(
                            &memslots,
                            black_box(ipa),
                            AccessKind::Read,
                            &mut path,
                        ));
                    })
                },
            );
            let mut path = PathHint::default();
            group.bench_with_input(
                BenchmarkId::new("walker_leaf_path", &id),
                &fixture.ipa,
                |b, &ipa| {
                    b.iter(|| {
                        let _ = black_box(walker.translate_leaf_path_hinted(
                            &memslots,
                            black_box(ipa),
                            AccessKind::Read,
                            &mut path,
                        ));
                    })
                },
            );
            // The walker built inside the timed loop from L1's registers
            // (the ID registers decoded once, outside, as at L1's boot):
            // what a walk costs with the per-context decode and checks
            // `Stage2Walker::new` does, which KVM's `kvm_walk_nested_s2`
            // does on every walk (`vtcr_to_walk_info`, the start-level and
            // input-size checks of `walk_nested_s2_pgd`).
            let exposed = features();
            let new_walker = || {
                let registers = Stage2Registers {
                    vtcr: black_box(fixture.vtcr),
                    vttbr: black_box(fixture.vttbr),
                    endianness: Endianness::Little,
                };
                Stage2Walker::new(registers, &exposed)
            };
            group.bench_with_input(
                BenchmarkId::new("walker_new_walk", &id),
                &fixture.ipa,
                |b, &ipa| {
                    b.iter(|| {
                        let walker = new_walker();
                        let _ = black_box(walker.walk(&memslots, black_box(ipa), AccessKind::Read));
                    })
                },
            );
            group.bench_with_input(
                BenchmarkId::new("walker_new_leaf", &id),
                &fixture.ipa,
                |b, &ipa| {
                    b.iter(|| {
                        let walker = new_walker();
                        let _ = black_box(walker.translate_leaf(
                            &memslots,
                            black_box(ipa),
                            AccessKind::Read,
                        ));
                    })
                },
            );
            group.bench_with_input(
                BenchmarkId::new("kvm_style", &id),
                &fixture.ipa,
                |b, &ipa| {
                    b.iter(|| {
                        let _ =
                            black_box(baseline.walk(fixture.vtcr, fixture.vttbr, black_box(ipa)));
                    })
                },
            );
        }
    }
    regions(&mut group);
    group.finish();
}

/// Hot walks whose IPA moves (`walker_hot/regions/...`, 4K from level 0,
/// 16 memslots, `bench::walker_baseline::hot_regions`): `in_region`, 64
/// pages of one 2 MiB region in turn (a path hint predicts every walk),
/// and `alternating`, pages of two neighbouring regions in turn (the
/// hint's leaf table is always the other region's: every walk falls back
/// to the plain walk, which records its path). Each row walks the same
/// sequence: the plain walks, the path-hinted ones, the baseline.
fn regions(group: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>) {
    let geometry = hot_geometry("4K/L0");
    let fixture = hot_regions(geometry);
    let memory = WalkerMemory::new(&fixture.memory, DECOY_SLOTS);
    let mut storage = Vec::new();
    let memslots = memory.memslots(&mut storage);
    let walker = walker_for(fixture.vtcr, fixture.vttbr);
    let decoy = vec![0u8; 4096];
    let baseline = kvm_slots(&fixture.memory, &decoy, DECOY_SLOTS);
    let registers = (fixture.vtcr, fixture.vttbr);
    for (name, ipas) in [
        ("in_region", &fixture.in_region),
        ("alternating", &fixture.alternating),
    ] {
        let mut path = PathHint::default();
        for &ipa in ipas {
            let expected = fixture.expected_oa(ipa);
            let walked =
                walker.translate_leaf_path_hinted(&memslots, ipa, AccessKind::Read, &mut path);
            assert_eq!(walked.map(|t| t.output_address), Ok(expected), "{name}");
            let baseline_walk = baseline.walk(registers.0, registers.1, ipa);
            assert_eq!(baseline_walk.map(|t| t.oa), Ok(expected), "{name}");
        }
        // One walk an iteration, through the sequence.
        let mut each = |row: &str, walk: &mut dyn FnMut(u64)| {
            let mut next = 0;
            group.bench_function(format!("regions/{name}/{row}"), |b| {
                b.iter(|| {
                    walk(black_box(ipas[next % ipas.len()]));
                    next += 1;
                })
            });
        };
        each("walker", &mut |ipa| {
            let _ = black_box(walker.walk(&memslots, ipa, AccessKind::Read));
        });
        let mut path = PathHint::default();
        each("walker_path", &mut |ipa| {
            let _ = black_box(walker.walk_path_hinted(&memslots, ipa, AccessKind::Read, &mut path));
        });
        each("walker_leaf", &mut |ipa| {
            let _ = black_box(walker.translate_leaf(&memslots, ipa, AccessKind::Read));
        });
        let mut path = PathHint::default();
        each("walker_leaf_path", &mut |ipa| {
            let _ = black_box(walker.translate_leaf_path_hinted(
                &memslots,
                ipa,
                AccessKind::Read,
                &mut path,
            ));
        });
        each("kvm_style", &mut |ipa| {
            let _ = black_box(baseline.walk(registers.0, registers.1, ipa));
        });
    }
}

fn cold(c: &mut Criterion) {
    let fixture = cold_fixture();
    let memory = WalkerMemory::new(&fixture.memory, DECOY_SLOTS);
    let mut storage = Vec::new();
    let memslots = memory.memslots(&mut storage);
    let walker = walker_for(fixture.vtcr, fixture.vttbr);
    let requests = cold_requests(&fixture);
    let decoy = vec![0u8; 4096];
    let baseline = kvm_slots(&fixture.memory, &decoy, DECOY_SLOTS);
    let placeholder: Result<Translation, WalkError> =
        walker.walk(&memslots, requests[0].ipa, AccessKind::Read);

    // The batch must give what single walks give.
    let mut results = vec![placeholder; BATCH];
    check_cold_batches(
        &fixture,
        &walker,
        &memslots,
        &baseline,
        &requests,
        &mut results,
        64,
    );

    let chunks = requests.len() / BATCH;
    let mut evictor = CacheEvictor::new();
    let mut group = c.benchmark_group("walker_cold");
    group.throughput(Throughput::Elements(BATCH as u64));
    // One iteration is one batch of 64 walks (or 64 single walks). Every
    // BATCHES_PER_EVICTION iterations the caches are evicted, untimed; each
    // benchmark continues through the IPA sequence from where it stopped.
    let mut measure =
        |b: &mut criterion::Bencher, start: usize, walk: &mut dyn FnMut(&[WalkRequest])| {
            let mut cursor = start;
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for i in 0..iters {
                    if i % BATCHES_PER_EVICTION == 0 {
                        evictor.evict();
                    }
                    let chunk = &requests[cursor * BATCH..(cursor + 1) * BATCH];
                    cursor = (cursor + 1) % chunks;
                    let begin = Instant::now();
                    walk(chunk);
                    timed += begin.elapsed();
                }
                timed
            })
        };
    group.bench_function("batch64", |b| {
        let mut results = vec![placeholder; BATCH];
        measure(b, 0, &mut |chunk| {
            walker
                .walk_batch(&memslots, chunk, &mut results)
                .expect("equal lengths");
            black_box(&results);
        })
    });
    group.bench_function("single64", |b| {
        measure(b, chunks / 3, &mut |chunk| {
            for request in chunk {
                black_box(walker.walk(&memslots, request.ipa, request.access)).ok();
            }
        })
    });
    group.bench_function("leaf_single64", |b| {
        measure(b, chunks / 2, &mut |chunk| {
            for request in chunk {
                black_box(walker.translate_leaf(&memslots, request.ipa, request.access)).ok();
            }
        })
    });
    group.bench_function("kvm_style64", |b| {
        measure(b, 2 * chunks / 3, &mut |chunk| {
            for request in chunk {
                black_box(baseline.walk(fixture.vtcr, fixture.vttbr, request.ipa)).ok();
            }
        })
    });
    // The floor any level-by-level batch of these walks has on this
    // machine: the same 4 x 64 descriptor loads from the same memory, each
    // level's 64 loads independent and issued back to back, each walk's
    // next load waiting for its previous one (a data dependency through a
    // zero mask the compiler cannot see through), and no walk logic.
    let zero = black_box(0u64);
    let levels = COLD_LEVELS;
    let mut descriptor_words: Vec<u32> = Vec::new();
    group.bench_function("loads_only64", |b| {
        // The batch's own descriptor loads without the walks, worked out
        // once, when this row first runs (not before the other rows).
        if descriptor_words.is_empty() {
            descriptor_words = cold_descriptor_words(&walker, &memslots, &memory, &requests);
        }
        let descriptor_words = &descriptor_words;
        measure(b, chunks / 6, &mut |chunk| {
            // Which chunk of `requests` this is (`measure` hands out slices).
            let offset = chunk.as_ptr() as usize - requests.as_ptr() as usize;
            let chunk_index = offset / std::mem::size_of::<WalkRequest>() / BATCH;
            let words = &descriptor_words[chunk_index * BATCH * levels..][..BATCH * levels];
            let mut carried = [0u64; BATCH];
            for level in words.chunks_exact(BATCH) {
                for (value, &word) in carried.iter_mut().zip(level) {
                    let index = word as usize + (*value & zero) as usize;
                    *value = memory.words[index].load(std::sync::atomic::Ordering::Relaxed);
                }
            }
            black_box(&carried);
        })
    });
    // The batch's own work, without the misses: the same chunk of 64 over
    // and over, its tables in cache.
    group.bench_function("batch64_in_cache", |b| {
        let mut results = vec![placeholder; BATCH];
        let chunk = &requests[..BATCH];
        b.iter(|| {
            walker
                .walk_batch(&memslots, chunk, &mut results)
                .expect("equal lengths");
            black_box(&results);
        })
    });
    group.finish();
}

/// Cold single walks (`bench::cold_single`): each row's walks in turn
/// through its case's sequence, one walk an iteration, its lines flushed
/// first (untimed), a path hint per row kept across its walks.
fn cold_single(c: &mut Criterion) {
    let group_name = "walker_cold_single";
    if !wanted(group_name) {
        return;
    }
    if !line_flush::AVAILABLE {
        eprintln!("{group_name}: skipped, no cache-line flush on this target");
        return;
    }
    // Every row walks what the plain walk walks, and the hint predicts
    // where it should (checked before any timing).
    with_checked_walks(&cold_fixture(), 1024, |cold, hinted, missed| {
        cold_single_rows(c, group_name, cold, hinted, missed)
    });
}

/// The rows of [`cold_single`].
fn cold_single_rows(
    c: &mut Criterion,
    group_name: &str,
    cold: &ColdSingle,
    hinted: &WalkSequence,
    missed: &WalkSequence,
) {
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(1));
    for (sequence, cold_lines) in [
        (hinted, Cold::AllLevels),
        (missed, Cold::AllLevels),
        (hinted, Cold::LeafOnly),
    ] {
        for row in Row::ALL {
            let id = format!("{}/{}/{}", sequence.name, cold_lines.name(), row.name());
            let mut hint = PathHint::default();
            let mut next = 0;
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        timed += cold.time_walk(row, sequence, next, cold_lines, &mut hint).0;
                        next = (next + 1) % sequence.len();
                    }
                    timed
                })
            });
        }
    }
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = hot, cold, cold_single
}

/// `criterion_main!` with the heap put on the pages `UMBRA_BENCH_PAGES`
/// asks for first (huge unless `4k`; see `bench::host_pages`), the
/// walker's memory and the baseline's alike: hv maps L1's RAM with 1 GiB /
/// 2 MiB blocks in its own stage 1, so the walker under hv takes no
/// 4 KiB-page TLB miss on L1's tables, and a VMM backs guest RAM with
/// huge pages where it can (QEMU advises THP on it), which is what KVM's
/// `kvm_read_guest` reads through.
fn main() {
    host_pages::select_for("walker");
    benches();
    Criterion::default().configure_from_args().final_summary();
}
