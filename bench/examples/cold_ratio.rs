//! The `walker_cold` benchmark's rows (`benches/walker.rs`) interleaved
//! batch by batch in one process, for a ratio that load drift on a shared
//! machine moves less than separate criterion rows:
//!
//! ```text
//! cargo build --release -p bench --example cold_ratio
//! chrt -f 1 target/release/examples/cold_ratio [ROUNDS (200)]
//! ```
//!
//! Each round evicts the caches and walks 8 batches of 64 IPAs (the same
//! [`bench::walker_fixture::cold_fixture`], the same eviction and the same
//! 8 batches between evictions as the criterion rows) for each row in
//! turn, the rows' order rotating from round to round. Prints each row's
//! median and mean time per batch of 64 and the KVM-style row over each.
//! Rows: the criterion rows `batch64`, `kvm_style64`, `leaf_single64`,
//! `loads_only64`, and four that explain the batch's time:
//! `loads_by_level64` (the same loads with a barrier after each level, as
//! a level-by-level batch has), `read_descriptors64` (those levels read
//! through `Memslots::read_descriptors`), `read_compute64` (plus a fixed
//! computation on each value: whether work overlaps the misses),
//! `compute_only64` (the computation alone) and `kvm_loads_only64`
//! (`loads_only64` from the baseline's copy of the table memory: the two
//! copies are separate allocations whose misses can cost differently,
//! from process to process, by where the host placed them).
//! The heap is on the pages `UMBRA_BENCH_PAGES` asks for (huge unless
//! `4k`, `bench::host_pages`), as in the criterion bench.

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bench::host_pages;
use bench::walker_fixture::{
    check_cold_batches, cold_descriptor_words, cold_fixture, cold_requests, kvm_slots, walker_for,
    CacheEvictor, WalkerMemory, BATCHES_PER_EVICTION, COLD_BATCH, COLD_LEVELS, DECOY_SLOTS,
};
use walker::{AccessKind, GuestMemory, Translation, WalkError};

fn main() {
    host_pages::select_for("cold_ratio");
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(Ok(200), |s| s.parse())
        .expect("ROUNDS is a number");
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
    let mut results = vec![placeholder; COLD_BATCH];
    // The rows walk what they should (the first chunks, as the criterion
    // bench checks).
    check_cold_batches(
        &fixture,
        &walker,
        &memslots,
        &baseline,
        &requests,
        &mut results,
        16,
    );
    eprintln!("cold_ratio: fixture built ({})", host_pages::summary());

    let chunks = requests.len() / COLD_BATCH;
    // `loads_only64` and the rows like it: each batch's loads.
    let levels = COLD_LEVELS;
    let descriptor_words = cold_descriptor_words(&walker, &memslots, &memory, &requests);
    let zero = black_box(0u64);
    let mut evictor = CacheEvictor::new();
    let names = [
        "batch64",
        "kvm_style64",
        "leaf_single64",
        "loads_only64",
        "loads_by_level64",
        "read_descriptors64",
        "read_compute64",
        "compute_only64",
        "kvm_loads_only64",
    ];
    let mut cursors: Vec<usize> = (0..names.len()).map(|k| k * chunks / names.len()).collect();
    // Per row: the time of each batch, and of the first batch after each
    // eviction (which also finds the walker's own state evicted).
    let mut times: Vec<Vec<u64>> = vec![Vec::new(); names.len()];
    let mut firsts: Vec<Vec<u64>> = vec![Vec::new(); names.len()];
    let mut round_totals: Vec<Vec<u64>> = Vec::new();
    for round in 0..rounds {
        let mut totals = vec![0; names.len()];
        for k in 0..names.len() {
            let row = (round + k) % names.len();
            evictor.evict();
            for batch in 0..BATCHES_PER_EVICTION {
                let index = cursors[row];
                cursors[row] = (index + 1) % chunks;
                let chunk = &requests[index * COLD_BATCH..][..COLD_BATCH];
                let begin = Instant::now();
                match row {
                    0 => {
                        walker
                            .walk_batch(&memslots, chunk, &mut results)
                            .expect("equal lengths");
                        black_box(&results);
                    }
                    1 => {
                        for request in chunk {
                            black_box(baseline.walk(fixture.vtcr, fixture.vttbr, request.ipa)).ok();
                        }
                    }
                    2 => {
                        for request in chunk {
                            black_box(walker.translate_leaf(
                                &memslots,
                                request.ipa,
                                request.access,
                            ))
                            .ok();
                        }
                    }
                    3 => {
                        let words =
                            &descriptor_words[index * COLD_BATCH * levels..][..COLD_BATCH * levels];
                        let mut carried = [0u64; COLD_BATCH];
                        for level in words.chunks_exact(COLD_BATCH) {
                            for (value, &word) in carried.iter_mut().zip(level) {
                                let index = word as usize + (*value & zero) as usize;
                                *value = memory.words[index].load(Ordering::Relaxed);
                            }
                        }
                        black_box(&carried);
                    }
                    8 => {
                        // `loads_only64` from the baseline's copy of the
                        // table memory (a separate allocation, which the
                        // host may place where misses cost more or less:
                        // `kvm_style64` / this beside `kvm_style64` /
                        // `loads_only64` shows it).
                        let words =
                            &descriptor_words[index * COLD_BATCH * levels..][..COLD_BATCH * levels];
                        let bytes = &fixture.memory.bytes;
                        let mut carried = [0u64; COLD_BATCH];
                        for level in words.chunks_exact(COLD_BATCH) {
                            for (value, &word) in carried.iter_mut().zip(level) {
                                let at = word as usize * 8 + (*value & zero) as usize;
                                *value = u64::from_le_bytes(
                                    bytes[at..at + 8].try_into().expect("8 bytes"),
                                );
                            }
                        }
                        black_box(&carried);
                    }
                    5..=7 => {
                        // Level by level through `Memslots::read_descriptors`
                        // (each level's addresses waiting for every value of
                        // the level before); with (6), or without the reads
                        // (7), a fixed computation on each value (60
                        // dependent instructions): does a batch's own work
                        // overlap its misses?
                        let words =
                            &descriptor_words[index * COLD_BATCH * levels..][..COLD_BATCH * levels];
                        let mut all = 0u64;
                        let mut addresses = [0u64; COLD_BATCH];
                        let mut values = [Ok(0u64); COLD_BATCH];
                        for level in words.chunks_exact(COLD_BATCH) {
                            let offset = all & zero;
                            for (address, &word) in addresses.iter_mut().zip(level) {
                                *address = memory.base + u64::from(word) * 8 + offset;
                            }
                            if row != 7 {
                                memslots.read_descriptors(&addresses, &mut values);
                            }
                            for value in &values {
                                let mut x = value.unwrap_or(0);
                                if row != 5 {
                                    for k in 0..20u64 {
                                        x = (x.rotate_left(7) ^ (x >> 3)).wrapping_add(k);
                                    }
                                }
                                all ^= x;
                            }
                        }
                        black_box(all);
                    }
                    _ => {
                        // As `loads_only64`, but each level's loads wait
                        // for every load of the level before (a level
                        // barrier, as a level-by-level batch has).
                        let words =
                            &descriptor_words[index * COLD_BATCH * levels..][..COLD_BATCH * levels];
                        let mut all = 0u64;
                        for level in words.chunks_exact(COLD_BATCH) {
                            let offset = (all & zero) as usize;
                            for &word in level {
                                all ^= memory.words[word as usize + offset].load(Ordering::Relaxed);
                            }
                        }
                        black_box(all);
                    }
                }
                let elapsed = begin.elapsed().as_nanos() as u64;
                times[row].push(elapsed);
                totals[row] += elapsed;
                if batch == 0 {
                    firsts[row].push(elapsed);
                }
            }
        }
        round_totals.push(totals);
    }
    let mean = |t: &[u64]| t.iter().sum::<u64>() as f64 / t.len() as f64 / 1e3;
    let stats: Vec<(f64, f64, f64)> = times
        .iter_mut()
        .zip(&firsts)
        .map(|(t, first)| {
            t.sort_unstable();
            (t[t.len() / 2] as f64 / 1e3, mean(t), mean(first))
        })
        .collect();
    // Criterion's estimate for these rows is the mean (`iter_custom`
    // returns the total time of its iterations).
    let (kvm_median, kvm_mean, _) = stats[1];
    // Robust to load drift: each round's KVM-style total over the row's
    // total in the same round (the rows ran back to back), median of the
    // rounds.
    let per_round =
        |row: usize| -> Vec<u64> { round_totals.iter().map(|totals| totals[row]).collect() };
    let kvm_rounds = per_round(1);
    for (row, (name, (median, mean, first))) in names.iter().zip(&stats).enumerate() {
        let mut ratios: Vec<f64> = kvm_rounds
            .iter()
            .zip(per_round(row))
            .map(|(&kvm, this)| kvm as f64 / this as f64)
            .collect();
        ratios.sort_unstable_by(f64::total_cmp);
        println!(
            "{name:14} median {median:7.2} us  mean {mean:7.2} us  (first after eviction {first:7.2} us)  \
             kvm_style64 / this: median {:5.2}x  mean {:5.2}x  round by round {:5.2}x (quartiles {:5.2}-{:5.2}x)",
            kvm_median / median,
            kvm_mean / mean,
            ratios[ratios.len() / 2],
            ratios[ratios.len() / 4],
            ratios[3 * ratios.len() / 4],
        );
    }
}
