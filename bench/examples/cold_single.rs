//! Cold single walks (`bench::cold_single`, issue 2, stop 37): the
//! `walker_cold_single` rows of `benches/walker.rs` interleaved in one
//! process, block by block, for ratios that load drift on a shared
//! machine moves less than separate criterion rows:
//!
//! ```text
//! cargo build --release -p bench --example cold_single
//! chrt -f 1 target/release/examples/cold_single [ROUNDS (100)]
//! ```
//!
//! Each round walks, for each case in turn (`in_region` with every level's
//! line flushed before each walk, `across_regions` the same, `in_region`
//! with only the leaf's line flushed), a block of 64 walks by each row,
//! the rows' order rotating from round to round, each walk timed alone
//! after its untimed flush. Per case and row it prints the median and mean
//! time of a walk, the median less the `floor` row's (the timer itself,
//! which reads in steps of 10 ns on the benchmark VM), and the KVM-style
//! row over each row round by round (each round's KVM-style block of 64
//! walks over the row's, both less the floor's block: median and
//! quartiles of the rounds), also as if the baseline's misses were to the
//! walker's copy of the table memory ("same memory": the baseline's
//! copy's chained loads replaced by the walker's copy's, same round; the
//! two copies are separate allocations the host may place differently,
//! which `kvm_loads_chained` beside `loads_chained` shows). The heap
//! is on the pages `UMBRA_BENCH_PAGES` asks for (huge unless `4k`,
//! `bench::host_pages`), as in the criterion bench.

use std::time::Duration;

use bench::cold_single::{with_checked_walks, Cold, ColdSingle, Row, WalkSequence};
use bench::host_pages;
use bench::line_flush;
use bench::walker_fixture::cold_fixture;
use walker::PathHint;

/// Walks of each row in a block (one region of `in_region`).
const BLOCK: usize = bench::cold_single::PAGES_PER_REGION as usize;

/// Regions of `in_region` (and `BLOCK` times as many walks of
/// `across_regions`).
const REGIONS: usize = 1024;

fn main() {
    host_pages::select_for("cold_single");
    if !line_flush::AVAILABLE {
        eprintln!("cold_single: no cache-line flush on this target");
        std::process::exit(2);
    }
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(Ok(100), |s| s.parse())
        .expect("ROUNDS is a number");
    with_checked_walks(&cold_fixture(), REGIONS, |cold, hinted, missed| {
        eprintln!(
            "cold_single: {} walks in region (all but each region's first predicted by the path hint), \
             {} across regions (none predicted), every row's result the plain walk's; fixture built ({})",
            hinted.len(),
            missed.len(),
            host_pages::summary()
        );
        measure(cold, hinted, missed, rounds);
    });
}

/// The rounds, and what they measured.
fn measure(cold: &ColdSingle, hinted: &WalkSequence, missed: &WalkSequence, rounds: usize) {
    let cases = [
        (hinted, Cold::AllLevels),
        (missed, Cold::AllLevels),
        (hinted, Cold::LeafOnly),
    ];
    let rows = Row::ALL;
    // Per case and row: every walk's time, each round's block total, the
    // row's path hint and where it is in its sequence (rows start at
    // different regions, a block apart at least).
    let mut times = vec![vec![Vec::<u64>::new(); rows.len()]; cases.len()];
    let mut blocks = vec![vec![Vec::<u64>::new(); rows.len()]; cases.len()];
    let mut hints = vec![vec![PathHint::default(); rows.len()]; cases.len()];
    let mut cursors: Vec<Vec<usize>> = cases
        .iter()
        .map(|(sequence, _)| {
            let regions = sequence.len() / BLOCK;
            (0..rows.len())
                .map(|r| r * regions / rows.len() * BLOCK)
                .collect()
        })
        .collect();
    for round in 0..rounds {
        for (c, &(sequence, cold_lines)) in cases.iter().enumerate() {
            for k in 0..rows.len() {
                let r = (round + k) % rows.len();
                let mut block = Duration::ZERO;
                for _ in 0..BLOCK {
                    let walk = cursors[c][r];
                    cursors[c][r] = (walk + 1) % sequence.len();
                    let (time, _) =
                        cold.time_walk(rows[r], sequence, walk, cold_lines, &mut hints[c][r]);
                    times[c][r].push(time.as_nanos() as u64);
                    block += time;
                }
                blocks[c][r].push(block.as_nanos() as u64);
            }
        }
    }

    let median = |values: &mut Vec<f64>| -> f64 {
        values.sort_unstable_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let position = |row: Row| rows.iter().position(|&r| r == row).expect("a row");
    let (kvm, floor) = (position(Row::KvmStyle), position(Row::Floor));
    let (loads, kvm_loads) = (
        position(Row::LoadsChained),
        position(Row::BaselineLoadsChained),
    );
    for (c, &(sequence, cold_lines)) in cases.iter().enumerate() {
        println!(
            "{} walks, {} lines flushed ({rounds} rounds of {BLOCK} walks a row):",
            sequence.name,
            cold_lines.name()
        );
        let floor_ns = median(&mut times[c][floor].iter().map(|&n| n as f64).collect());
        // Per round, the KVM-style block and the row's, less the floor
        // block; and the KVM-style block as if its misses were to the
        // walker's copy of the memory (its copy's chained loads replaced
        // by the walker's copy's, same round).
        let block = |r: usize, round: usize| blocks[c][r][round] as f64;
        let ratios = |r: usize, same_memory: bool| -> Vec<f64> {
            let mut ratios: Vec<f64> = (0..rounds)
                .map(|round| {
                    let mut kvm_block = block(kvm, round);
                    if same_memory {
                        kvm_block += block(loads, round) - block(kvm_loads, round);
                    }
                    (kvm_block - block(floor, round)) / (block(r, round) - block(floor, round))
                })
                .collect();
            median(&mut ratios);
            ratios
        };
        for (r, row) in rows.iter().enumerate() {
            let mut ns: Vec<f64> = times[c][r].iter().map(|&n| n as f64).collect();
            let mean = ns.iter().sum::<f64>() / ns.len() as f64;
            let row_median = median(&mut ns);
            let quartiles = |ratios: &[f64]| {
                let n = ratios.len();
                (ratios[n / 4], ratios[n / 2], ratios[3 * n / 4])
            };
            let (q1, q2, q3) = quartiles(&ratios(r, false));
            let (s1, s2, s3) = quartiles(&ratios(r, true));
            println!(
                "  {:17} median {row_median:6.1} ns  mean {mean:6.1} ns  less floor {:6.1} ns  \
                 kvm_style / this, less floor, round by round: {q2:5.2}x ({q1:5.2}-{q3:5.2}x)  \
                 same memory {s2:5.2}x ({s1:5.2}-{s3:5.2}x)",
                row.name(),
                row_median - floor_ns,
            );
        }
    }
}
