//! End-to-end nested-fault throughput (DESIGN.md path 1), beside a
//! KVM-style baseline in the same run: see `bench::nested_fault` for the
//! scenarios and the designs. Throughput is in faults per second
//! (criterion's elements/s), one pass of `PAGES` faults per iteration.
//!
//! The heap is on 2 MiB pages, as hv maps the service's memory
//! (`bench::host_pages`; `UMBRA_BENCH_PAGES=4k` for 4 KiB pages).
//!
//! Run: `chrt -f 1 cargo bench -p bench --bench nested_fault`.

use std::time::Duration;

use bench::nested_fault::{Design, Emptied, Harness, MAX_VCPUS};
use bench::{host_pages, wanted};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use shadow_mmu::service::Stats;

/// Pages faulted per pass (64 MiB of L2 memory in 4 KiB pages).
const PAGES: u64 = 16 * 1024;
/// Pages of the scattered case (4 GiB of L2 memory: L1's level-3 tables
/// alone are 8 MiB, beyond what this VM's caches keep).
const SCATTERED_PAGES: u64 = 1 << 20;

fn nested_faults(c: &mut Criterion) {
    let harness = Harness::new(PAGES);
    for how in [Emptied::VmidFlush, Emptied::L0Unmap] {
        let mut g = c.benchmark_group(format!("nested_fault/{}", how.name()));
        g.throughput(Throughput::Elements(PAGES))
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for vcpus in 1..=MAX_VCPUS {
            for design in Design::ALL {
                harness.settle();
                let before = harness.umbra_stats();
                g.bench_function(BenchmarkId::new(design.name(), vcpus), |b| {
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| {
                                harness.empty(design, how);
                                harness.pass(design, vcpus)
                            })
                            .sum()
                    })
                });
                report_umbra_work(
                    &format!("nested_fault/{}/{}/{vcpus}", how.name(), design.name()),
                    design,
                    &before,
                    &harness.umbra_stats(),
                );
            }
        }
        g.finish();
    }
}

/// One vCPU faulting 1M pages in a scattered order after an L0 unmap:
/// Umbra answers from its walk cache, KVM walks L1's tables, both mostly
/// from memory.
fn scattered_faults(c: &mut Criterion) {
    let group = "nested_fault_scattered/after_l0_unmap";
    if !wanted(group) {
        return;
    }
    let harness = Harness::scattered(SCATTERED_PAGES);
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(SCATTERED_PAGES))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(8));
    for design in [Design::UmbraInline, Design::KvmStyle] {
        harness.settle();
        let before = harness.umbra_stats();
        g.bench_function(BenchmarkId::new(design.name(), 1), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        harness.empty(design, Emptied::L0Unmap);
                        harness.pass(design, 1)
                    })
                    .sum()
            })
        });
        report_umbra_work(
            &format!("{group}/{}/1", design.name()),
            design,
            &before,
            &harness.umbra_stats(),
        );
    }
    g.finish();
}

/// What Umbra's service did over a benchmark's passes: its "hit" faults
/// are hits only as far as these counts say (should a leaf's buckets and
/// the stash be full, an eviction, and the evicted page's next fault
/// walks).
fn report_umbra_work(id: &str, design: Design, before: &Stats, after: &Stats) {
    if design != Design::KvmStyle {
        eprintln!(
            "{id}: {} full walks, {} partial walks, {} cache hits, {} evictions",
            after.walks - before.walks,
            after.partial_walks - before.partial_walks,
            after.hits - before.hits,
            after.evictions - before.evictions
        );
    }
}

criterion_group!(benches, nested_faults, scattered_faults);

fn main() {
    host_pages::select_for("nested_fault");
    benches();
    Criterion::default().configure_from_args().final_summary();
}
