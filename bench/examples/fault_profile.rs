//! A driver for instruction-count profiles of the nested-fault path
//! (valgrind's callgrind or cachegrind): `fault_profile <hit|walk|kvm>
//! [pages] [passes]` runs `passes` passes of `pages` faults through
//! `bench::nested_fault`'s harness, one vCPU, after an L0 unmap (`hit`:
//! every Umbra fault a walk-cache hit), after a VMID flush (`walk`: every
//! fault walks), or KVM-style's fault path (`kvm`, after a flush); a mode
//! ending in `-scattered` (`hit-scattered`, ...) faults the pages in the
//! scattered order of `nested_fault_scattered` instead of in order.
//! Collect only the faults with
//! `valgrind --tool=callgrind --toggle-collect='*nested_fault*pass*' target/release/examples/fault_profile hit 16384 4`
//! (the vCPU threads' pass closures: a toggle on `fault_pass`, on the main
//! thread, collects nothing of theirs), and divide the difference of two
//! pass counts (4 and 2) by the faults between them, which leaves out the
//! harness's setup.
//!
//! The maps' hashing keys are drawn per run, which moves a count by tens
//! (the probes' lengths); set `UMBRA_BENCH_HASH_SEED` to a number (e.g.
//! `UMBRA_BENCH_HASH_SEED=1`) for the same keys in every run and build, so
//! two builds' counts differ only by their code.
//!
//! With `UMBRA_BENCH_PAGES=2m` (or `4k`) set, the heap goes on those pages
//! as in the criterion benchmarks (`bench::host_pages`: the process
//! re-executes itself, so leave it unset under valgrind); unset, it stays
//! on glibc's default pages. For `perf record`, whose wall-clock samples
//! depend on the TLB misses huge pages avoid.

use bench::host_pages;
use bench::nested_fault::{Design, Emptied, Harness};

fn main() {
    if std::env::var_os(host_pages::PAGES_VAR).is_some() {
        if let Err(e) = host_pages::select() {
            panic!("fault_profile: {e}");
        }
    }
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "hit".into());
    let pages: u64 = args.next().map_or(1024, |a| a.parse().expect("pages"));
    let passes: u32 = args.next().map_or(8, |a| a.parse().expect("passes"));
    let (base_mode, scattered) = match mode.strip_suffix("-scattered") {
        Some(base) => (base, true),
        None => (mode.as_str(), false),
    };
    let (design, how) = match base_mode {
        "hit" => (Design::UmbraInline, Emptied::L0Unmap),
        "walk" => (Design::UmbraInline, Emptied::VmidFlush),
        "kvm" => (Design::KvmStyle, Emptied::VmidFlush),
        other => panic!("mode {other}: hit, walk or kvm"),
    };
    let harness = if scattered {
        Harness::scattered(pages)
    } else {
        Harness::new(pages)
    };
    let mut faulting = std::time::Duration::ZERO;
    for _ in 0..passes {
        harness.empty(design, how);
        faulting += fault_pass(&harness, design);
    }
    let faults = pages * u64::from(passes);
    println!(
        "{mode}: {faults} faults, {:.1} ns a fault (wall clock, the passes alone), {:?}",
        faulting.as_nanos() as f64 / faults as f64,
        harness.umbra_stats()
    );
    eprintln!("fault_profile: {}", host_pages::summary());
}

/// The faults alone, for `--toggle-collect`; their time.
#[inline(never)]
fn fault_pass(harness: &Harness, design: Design) -> std::time::Duration {
    harness.pass(design, 1)
}
