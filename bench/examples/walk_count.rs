//! The `walker_hot` benchmark's single walks (`benches/walker.rs`) as plain
//! loops, for counting instructions per walk under valgrind, which a
//! shared machine's wall-clock timings cannot give:
//!
//! ```text
//! cargo build --release -p bench --example walk_count
//! valgrind --tool=callgrind --toggle-collect='walk_count::walks_*' \
//!     target/release/examples/walk_count walk 4K/L0 100000
//! ```
//!
//! Only the loop (`walks_<mode>`, `walks_new_then` for `new_*`) is counted: divide the callgrind total
//! by the walks. Modes: `walk` (`Stage2Walker::walk`, the full result with
//! its trail), `walk_hinted`, `leaf` (`translate_leaf`), `leaf_hinted`,
//! `walk_path` / `leaf_path` (`walk_path_hinted` / `translate_leaf_path_hinted`,
//! a `PathHint` kept across the walks),
//! `new_walk` / `new_leaf` (`Stage2Walker::new` from VTCR/VTTBR, then the
//! walk, every time), `new` (`Stage2Walker::new` alone) and `kvm` (the
//! KVM-style baseline, which decodes VTCR/VTTBR on every walk). The
//! geometry is a `walker_hot` name (`4K/L0`, `4K/L-1-lpa2`, `64K/L2`,
//! ...); the layout is its 16 memslots (`1slot` as a fourth argument for
//! the single slot), `pa48` as a fifth for a CPU showing PARange 48
//! bits instead of 52 (64KB walkers then take the 48-bit format).
//! `walk_count region|alternating MODE [WALKS]` walks the sequences of
//! `bench::walker_baseline::hot_regions` (4K from level 0: 64 pages of
//! one 2 MiB region, or of two in turn) with `walk`, `leaf`, `walk_path`,
//! `leaf_path` or `kvm`. Every
//! walk's result goes to `black_box`, as in the benchmark. Deterministic: the same counts on every run.

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use std::hint::black_box;

use bench::walker_baseline::{
    cold_table, hot_regions, hot_walk, ColdTable, KvmStyleMemory, MMFR0_PA52_ALL_GRANULES,
    MMFR2_TTST,
};
use bench::walker_fixture::{
    features, hot_geometries, hot_geometry, kvm_slots, walker_for, WalkerMemory, COLD_BATCH,
    DECOY_SLOTS,
};
use walker::{
    AccessKind, Endianness, ExposedFeatures, IdRegisters, Memslots, PathHint, SlotHint,
    Stage2Registers, Stage2Walker, Translation, WalkError, WalkRequest,
};

#[inline(never)]
fn walks_walk(walker: &Stage2Walker, memory: &Memslots, ipa: u64, n: usize) {
    for _ in 0..n {
        let _ = black_box(walker.walk(memory, black_box(ipa), AccessKind::Read));
    }
}

#[inline(never)]
fn walks_walk_hinted(walker: &Stage2Walker, memory: &Memslots, ipa: u64, n: usize) {
    let mut hint = SlotHint::default();
    for _ in 0..n {
        let _ = black_box(walker.walk_hinted(memory, black_box(ipa), AccessKind::Read, &mut hint));
    }
}

#[inline(never)]
fn walks_leaf(walker: &Stage2Walker, memory: &Memslots, ipa: u64, n: usize) {
    for _ in 0..n {
        let _ = black_box(walker.translate_leaf(memory, black_box(ipa), AccessKind::Read));
    }
}

#[inline(never)]
fn walks_leaf_hinted(walker: &Stage2Walker, memory: &Memslots, ipa: u64, n: usize) {
    let mut hint = SlotHint::default();
    for _ in 0..n {
        let _ = black_box(walker.translate_leaf_hinted(
            memory,
            black_box(ipa),
            AccessKind::Read,
            &mut hint,
        ));
    }
}

#[inline(never)]
fn walks_walk_path(walker: &Stage2Walker, memory: &Memslots, ipas: &[u64], n: usize) {
    let mut hint = PathHint::default();
    for ipa in ipas.iter().cycle().take(n) {
        let _ = black_box(walker.walk_path_hinted(
            memory,
            black_box(*ipa),
            AccessKind::Read,
            &mut hint,
        ));
    }
}

#[inline(never)]
fn walks_leaf_path(walker: &Stage2Walker, memory: &Memslots, ipas: &[u64], n: usize) {
    let mut hint = PathHint::default();
    for ipa in ipas.iter().cycle().take(n) {
        let _ = black_box(walker.translate_leaf_path_hinted(
            memory,
            black_box(*ipa),
            AccessKind::Read,
            &mut hint,
        ));
    }
}

/// `walk` over a sequence of IPAs, the baseline for `walk_path` on the
/// region fixtures.
#[inline(never)]
fn walks_walk_sequence(walker: &Stage2Walker, memory: &Memslots, ipas: &[u64], n: usize) {
    for ipa in ipas.iter().cycle().take(n) {
        let _ = black_box(walker.walk(memory, black_box(*ipa), AccessKind::Read));
    }
}

/// `translate_leaf` over a sequence of IPAs, the baseline for the
/// `*_path` modes on the region fixtures.
#[inline(never)]
fn walks_leaf_sequence(walker: &Stage2Walker, memory: &Memslots, ipas: &[u64], n: usize) {
    for ipa in ipas.iter().cycle().take(n) {
        let _ = black_box(walker.translate_leaf(memory, black_box(*ipa), AccessKind::Read));
    }
}

#[inline(never)]
fn walks_kvm_sequence(
    baseline: &KvmStyleMemory,
    (vtcr, vttbr): (u64, u64),
    ipas: &[u64],
    n: usize,
) {
    for ipa in ipas.iter().cycle().take(n) {
        let _ = black_box(baseline.walk(vtcr, vttbr, black_box(*ipa)));
    }
}

/// The `region` and `alternating` sequences of `HotRegions` (4K from
/// level 0, 16 memslots): `mode` one of `walk`, `leaf`, `walk_path`,
/// `leaf_path`, `kvm`.
fn regions_mode(sequence: &str, mode: &str, n: usize) {
    let geometry = hot_geometry("4K/L0");
    let fixture = hot_regions(geometry);
    let memory = WalkerMemory::new(&fixture.memory, DECOY_SLOTS);
    let mut storage = Vec::new();
    let memslots = memory.memslots(&mut storage);
    let walker = walker_for(fixture.vtcr, fixture.vttbr);
    let ipas = match sequence {
        "region" => &fixture.in_region,
        _ => &fixture.alternating,
    };
    let decoy = vec![0u8; 4096];
    let baseline = kvm_slots(&fixture.memory, &decoy, DECOY_SLOTS);
    for &ipa in ipas {
        let expected = fixture.expected_oa(ipa);
        let walked = walker.translate_leaf(&memslots, ipa, AccessKind::Read);
        assert_eq!(walked.map(|t| t.output_address), Ok(expected));
        let baseline_walk = baseline.walk(fixture.vtcr, fixture.vttbr, ipa);
        assert_eq!(baseline_walk.map(|t| t.oa), Ok(expected));
    }
    match mode {
        "leaf" => walks_leaf_sequence(&walker, &memslots, ipas, n),
        "walk" => walks_walk_sequence(&walker, &memslots, ipas, n),
        "leaf_path" => walks_leaf_path(&walker, &memslots, ipas, n),
        "walk_path" => walks_walk_path(&walker, &memslots, ipas, n),
        "kvm" => walks_kvm_sequence(&baseline, (fixture.vtcr, fixture.vttbr), ipas, n),
        other => {
            eprintln!("unknown mode {other} for {sequence}: walk, leaf, walk_path, leaf_path, kvm");
            std::process::exit(2)
        }
    }
    println!("{sequence} {mode}: {n} walks");
}

/// The walker from black-boxed registers, as `walker_new_*` build it.
#[inline(always)]
fn new_walker(exposed: &ExposedFeatures, vtcr: u64, vttbr: u64) -> Stage2Walker {
    Stage2Walker::new(
        Stage2Registers {
            vtcr: black_box(vtcr),
            vttbr: black_box(vttbr),
            endianness: Endianness::Little,
        },
        exposed,
    )
}

#[inline(never)]
fn walks_new(exposed: &ExposedFeatures, vtcr: u64, vttbr: u64, n: usize) {
    for _ in 0..n {
        black_box(new_walker(exposed, vtcr, vttbr));
    }
}

/// `n` times: build the walker from L1's registers, then `walk` with it.
#[inline(never)]
fn walks_new_then<R>(
    exposed: &ExposedFeatures,
    (vtcr, vttbr): (u64, u64),
    n: usize,
    walk: impl Fn(&Stage2Walker) -> R,
) {
    for _ in 0..n {
        let walker = new_walker(exposed, vtcr, vttbr);
        let _ = black_box(walk(&walker));
    }
}

/// `n` times a `walk_batch` of `requests` (64 walks of a small cold table,
/// in cache after the first call).
#[inline(never)]
fn walks_batch(
    walker: &Stage2Walker,
    memory: &Memslots,
    requests: &[WalkRequest],
    results: &mut [Result<Translation, WalkError>],
    n: usize,
) {
    for _ in 0..n {
        walker
            .walk_batch(memory, black_box(requests), results)
            .expect("equal lengths");
        black_box(&*results);
    }
}

/// The `batch` mode: 64 walks of a cold table (16 MiB, 1024 disjoint
/// paths: the `walker_cold` layout, small enough to build under
/// valgrind) in one `walk_batch` call, `n` times; `general`: with the
/// walker's single walks (and so its batches) forced onto the general
/// ones (`batch_general`), the batch every configuration without a
/// specialised one takes.
fn batch_mode(n: usize, general: bool) {
    let fixture = cold_table(16 << 20, 2, 4096);
    let memory = WalkerMemory::new(&fixture.memory, DECOY_SLOTS);
    let mut storage = Vec::new();
    let memslots = memory.memslots(&mut storage);
    let walker = walker_for(fixture.vtcr, fixture.vttbr);
    let walker = if general {
        walker.with_general_walk()
    } else {
        walker
    };
    let requests: Vec<WalkRequest> = fixture.ipas[..COLD_BATCH]
        .iter()
        .map(|&ipa| WalkRequest {
            ipa,
            access: AccessKind::Read,
        })
        .collect();
    let mut results: Vec<Result<Translation, WalkError>> = requests
        .iter()
        .map(|r| walker.walk(&memslots, r.ipa, r.access))
        .collect();
    for (request, result) in requests.iter().zip(&results) {
        assert_eq!(
            result.as_ref().map(|t| t.output_address),
            Ok(ColdTable::expected_oa(request.ipa))
        );
    }
    let singles = results.clone();
    walks_batch(&walker, &memslots, &requests, &mut results, n);
    assert_eq!(results, singles, "the batch gives what single walks give");
    println!("batch cold: {n} batches of {COLD_BATCH} walks");
}

#[inline(never)]
fn walks_kvm(baseline: &KvmStyleMemory, (vtcr, vttbr): (u64, u64), ipa: u64, n: usize) {
    for _ in 0..n {
        let _ = black_box(baseline.walk(vtcr, vttbr, black_box(ipa)));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: walk_count walk|walk_hinted|leaf|leaf_hinted|walk_path|leaf_path|new|new_walk|new_leaf|kvm \
                 [GEOMETRY (4K/L0)] [WALKS (100000)] [16slots|1slot] [pa52|pa48]\n       \
                 walk_count region|alternating walk|leaf|walk_path|leaf_path|kvm [WALKS (100000)]\n       \
                 walk_count batch|batch_general [BATCHES (1000)]";
    let mode = args.first().map(String::as_str).unwrap_or_else(|| {
        eprintln!("{usage}");
        std::process::exit(2)
    });
    if mode == "region" || mode == "alternating" {
        let walk = args.get(1).map_or("leaf_path", String::as_str);
        let n = args
            .get(2)
            .map_or(Ok(100_000), |s| s.parse())
            .unwrap_or_else(|e| {
                eprintln!("walk count: {e}\n{usage}");
                std::process::exit(2)
            });
        regions_mode(mode, walk, n);
        return;
    }
    if mode == "batch" || mode == "batch_general" {
        let n = args
            .get(1)
            .map_or(Ok(1000), |s| s.parse())
            .unwrap_or_else(|e| {
                eprintln!("batch count: {e}\n{usage}");
                std::process::exit(2)
            });
        batch_mode(n, mode == "batch_general");
        return;
    }
    let name = args.get(1).map_or("4K/L0", String::as_str);
    let n: usize = args
        .get(2)
        .map_or(Ok(100_000), |s| s.parse())
        .unwrap_or_else(|e| {
            eprintln!("walk count: {e}\n{usage}");
            std::process::exit(2)
        });
    let decoys = match args.get(3).map_or("16slots", String::as_str) {
        "16slots" => DECOY_SLOTS,
        "1slot" => 0,
        other => {
            eprintln!("unknown layout {other}\n{usage}");
            std::process::exit(2)
        }
    };
    // The fixture's CPU shows PARange 52 bits (64KB walkers then use
    // the FEAT_LPA format); `pa48` shows 48 (the 48-bit format, as a
    // CPU without FEAT_LPA, or hv's L1 with its 40 bits). The fixture's
    // addresses are below 2^48, the same in both formats.
    let exposed = match args.get(4).map_or("pa52", String::as_str) {
        "pa52" => features(),
        "pa48" => ExposedFeatures::from_id_registers(IdRegisters {
            // PARange 0b0101: 48 bits.
            mmfr0: (MMFR0_PA52_ALL_GRANULES & !0xf) | 0b0101,
            mmfr1: 0,
            mmfr2: MMFR2_TTST,
        })
        .expect("valid ID registers"),
        other => {
            eprintln!("unknown PARange {other}\n{usage}");
            std::process::exit(2)
        }
    };
    let Some((_, geometry)) = hot_geometries().into_iter().find(|(g, _)| g == name) else {
        let names: Vec<String> = hot_geometries().into_iter().map(|(g, _)| g).collect();
        eprintln!("unknown geometry {name}: one of {}", names.join(" "));
        std::process::exit(2)
    };
    let fixture = hot_walk(geometry);
    let memory = WalkerMemory::new(&fixture.memory, decoys);
    let mut storage = Vec::new();
    let memslots = memory.memslots(&mut storage);
    let walker = Stage2Walker::new(
        Stage2Registers {
            vtcr: fixture.vtcr,
            vttbr: fixture.vttbr,
            endianness: Endianness::Little,
        },
        &exposed,
    );
    let walked = walker.walk(&memslots, fixture.ipa, AccessKind::Read);
    assert_eq!(
        walked.map(|t| (t.output_address, t.level)),
        Ok((fixture.expected_oa, 3)),
        "{name}: the walker fails the fixture"
    );
    let decoy = vec![0u8; 4096];
    let baseline = kvm_slots(&fixture.memory, &decoy, decoys);
    assert_eq!(
        baseline
            .walk(fixture.vtcr, fixture.vttbr, fixture.ipa)
            .map(|t| t.oa),
        Ok(fixture.expected_oa),
        "{name}: the baseline fails the fixture"
    );
    let registers = (fixture.vtcr, fixture.vttbr);
    let ipa = fixture.ipa;
    match mode {
        "walk" => walks_walk(&walker, &memslots, ipa, n),
        "walk_hinted" => walks_walk_hinted(&walker, &memslots, ipa, n),
        "leaf" => walks_leaf(&walker, &memslots, ipa, n),
        "leaf_hinted" => walks_leaf_hinted(&walker, &memslots, ipa, n),
        "walk_path" => walks_walk_path(&walker, &memslots, &[ipa], n),
        "leaf_path" => walks_leaf_path(&walker, &memslots, &[ipa], n),
        "new" => walks_new(&exposed, fixture.vtcr, fixture.vttbr, n),
        "new_walk" => walks_new_then(&exposed, registers, n, |walker| {
            walker.walk(&memslots, black_box(ipa), AccessKind::Read)
        }),
        "new_leaf" => walks_new_then(&exposed, registers, n, |walker| {
            walker.translate_leaf(&memslots, black_box(ipa), AccessKind::Read)
        }),
        "kvm" => walks_kvm(&baseline, registers, ipa, n),
        other => {
            eprintln!("unknown mode {other}\n{usage}");
            std::process::exit(2)
        }
    }
    println!("{mode} {name}: {n} walks");
}
