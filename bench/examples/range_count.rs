//! The `shadow_invalidate_range` benchmark's calls (`benches/shadow_mmu.rs`
//! `invalidate_range`, its state built by the same [`RangeFixture`]: one
//! context with the first GiB of pages cached and shadowed plus 16 pages in
//! the next GiB; RIPAS2E1IS without TTL; each call's removals put back
//! untimed) as a plain loop over Umbra or the KVM-style baseline, for
//! counting instructions per covered page under valgrind:
//!
//! ```text
//! cargo build --release -p bench --example range_count
//! valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='range_count::invalidate_umbra' \
//!     target/release/examples/range_count umbra 4096 200
//! valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='range_count::invalidate_kvm' \
//!     target/release/examples/range_count kvm 4096 200
//! ```
//!
//! Arguments: `umbra` or `kvm`; a case of the benchmark (`2`, `16`, `256`,
//! `4096`: that many pages at a moving base, stride 7919 pages through the
//! dense GiB as the benchmark moves it; `16_fixed`: 16 pages in the middle
//! of the dense GiB every call; `1G_16_cached`: the sparse GiB); the number
//! of calls (default 100). Only the invalidation call is counted: divide
//! callgrind's total by the covered pages the program prints (calls times
//! pages covered a call). The hash seed is fixed (`seed=HEX` overrides it),
//! so a run is deterministic. `wait=PATH` prints `filled` after the setup
//! and waits until PATH exists (run valgrind with `--instr-atstart=no`, then
//! `callgrind_control -i on` and create PATH: the setup then runs at near
//! native speed).
//!
//! `by_page` issues each range as L1 does without range TLBIs: an
//! IPAS2E1IS (no TTL) per page of it, each counted, nothing translated in
//! between (the pages are put back after the last, uncounted); the
//! 1 GiB case then issues 262,144 of them.
//!
//! `refault` counts each call together with the translates (Umbra) or
//! installs (KVM-style) that put back what it removed: collect
//! `range_count::invalidate_and_refault_umbra` (or `_kvm`) instead, so work
//! an invalidation leaves to the next inserts is counted where it lands.

use std::hint::black_box;

use bench::range::{
    fill_contexts, ipas2e1, range_tlbi_encoding, ripas2e1, RangeFixture, RANGE_DENSE,
};
use bench::shadow_baseline::{L1Fixture, VmidUnmap};
use ipc::tlbi::InvalidateScope;

/// The benchmark's stride of a moving range's base, in pages.
const STRIDE: u64 = 7919;

/// The call counted for Umbra.
#[inline(never)]
fn invalidate_umbra(
    service: &bench::umbra::UmbraService,
    worker: &shadow_mmu::service::Worker,
    scope: &InvalidateScope,
) -> u64 {
    service.invalidate(worker, 1, scope)
}

/// The call counted for the KVM-style baseline (VMALLS12E1 as the range
/// benchmark sets it; not issued here).
#[inline(never)]
fn invalidate_kvm(kvm: &bench::range::Kvm, scope: &InvalidateScope) -> usize {
    kvm.invalidate_with(1, scope, VmidUnmap::Chunked { pa_bits: 40 })
}

/// The Umbra call and the translates of the cached pages it covered.
#[inline(never)]
fn invalidate_and_refault_umbra(
    service: &bench::umbra::UmbraService,
    worker: &shadow_mmu::service::Worker,
    key: &shadow_mmu::context::ContextKey,
    scope: &InvalidateScope,
    pages: impl Iterator<Item = u64> + Clone,
) -> u64 {
    let removed = invalidate_umbra(service, worker, scope);
    fill_contexts(service, worker, std::slice::from_ref(key), pages);
    removed
}

/// The KVM-style call and the installs of the cached pages it covered.
#[inline(never)]
fn invalidate_and_refault_kvm(
    kvm: &bench::range::Kvm,
    key: &ipc::message::ContextKey,
    fixture: &RangeFixture,
    scope: &InvalidateScope,
    pages: impl Iterator<Item = u64>,
) -> usize {
    let removed = invalidate_kvm(kvm, scope);
    for page in pages {
        let (leaf, shadow) = &fixture.entries[page as usize];
        kvm.install(key, leaf, shadow).expect("frames");
    }
    removed
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: range_count umbra|kvm 2|16|256|4096|16_fixed|1G_16_cached [calls] [refault | by_page] [seed=HEX] [wait=PATH]";
    let umbra = match args.first().map(String::as_str) {
        Some("umbra") => true,
        Some("kvm") => false,
        _ => {
            eprintln!("{usage}");
            std::process::exit(2)
        }
    };
    let case = args.get(1).map_or("4096", String::as_str);
    let (pages, fixed) = match case {
        "16_fixed" => (16, Some(RANGE_DENSE / 2)),
        "1G_16_cached" => (1 << 18, Some(RANGE_DENSE)),
        other => (other.parse::<u64>().unwrap_or(0), None),
    };
    // A moving range stays inside the dense GiB, in a count a range TLBI
    // names (before: a panic in `ripas2e1`, or past the GiB an overflow).
    if range_tlbi_encoding(pages).is_none() || pages > RANGE_DENSE {
        eprintln!(
            "{usage}\n(a moving range's pages: a count a range TLBI names, 2 to {RANGE_DENSE})"
        );
        std::process::exit(2);
    }
    let calls: u64 = args
        .get(2)
        .filter(|a| a.parse::<u64>().is_ok())
        .map_or(100, |n| n.parse().expect("a count of calls"));
    let seed =
        args.iter()
            .find_map(|a| a.strip_prefix("seed="))
            .map_or(0x5eed_1234_abcd_0042, |s| {
                u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|_| {
                    eprintln!("{usage}\n(seed=HEX: a hexadecimal number)");
                    std::process::exit(2)
                })
            });

    let fixture = RangeFixture::new();
    let umbra_state = umbra.then(|| fixture.umbra(Some(seed)));
    let worker = umbra_state.as_ref().map(|(service, _)| service.worker());
    let kvm_state = (!umbra).then(|| fixture.kvm());
    if let Some(path) = args.iter().find_map(|a| a.strip_prefix("wait=")) {
        println!("filled");
        while !std::path::Path::new(path).exists() {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    let refault = args.iter().any(|a| a == "refault");
    let by_page = args.iter().any(|a| a == "by_page");
    let restore = |pages_covered: &mut dyn Iterator<Item = u64>| {
        if let (Some((service, key)), Some(worker)) = (&umbra_state, &worker) {
            for page in pages_covered {
                fill_contexts(service, worker, std::slice::from_ref(key), page..page + 1);
            }
        } else if let Some((kvm, key)) = &kvm_state {
            for page in pages_covered {
                let (leaf, shadow) = &fixture.entries[page as usize];
                kvm.install(key, leaf, shadow).expect("frames");
            }
        }
    };
    let mut base = 0u64;
    let (mut covered, mut removed) = (0u64, 0u64);
    for _ in 0..calls {
        let page = fixed.unwrap_or_else(|| {
            base = (base + STRIDE) % (RANGE_DENSE - pages + 1);
            base
        });
        let scope = ripas2e1(L1Fixture::l2_ipa(page), pages);
        let pages_covered = fixture.cached.covered_by(&scope);
        covered += pages_covered.clone().count() as u64;
        if refault {
            removed += if let (Some((service, key)), Some(worker)) = (&umbra_state, &worker) {
                black_box(invalidate_and_refault_umbra(
                    service,
                    worker,
                    key,
                    &scope,
                    pages_covered,
                ))
            } else if let Some((kvm, key)) = &kvm_state {
                black_box(invalidate_and_refault_kvm(
                    kvm,
                    key,
                    &fixture,
                    &scope,
                    pages_covered,
                )) as u64
            } else {
                0
            };
        } else if by_page {
            // The range as L1 issues it without range TLBIs: an IPAS2E1IS
            // per page, nothing translated in between.
            for page in page..page + pages {
                let scope = ipas2e1(L1Fixture::l2_ipa(page));
                if let (Some((service, _)), Some(worker)) = (&umbra_state, &worker) {
                    removed += black_box(invalidate_umbra(service, worker, &scope));
                } else if let Some((kvm, _)) = &kvm_state {
                    removed += black_box(invalidate_kvm(kvm, &scope)) as u64;
                }
            }
            restore(&mut pages_covered.into_iter());
        } else if let (Some((service, key)), Some(worker)) = (&umbra_state, &worker) {
            removed += black_box(invalidate_umbra(service, worker, &scope));
            fill_contexts(service, worker, std::slice::from_ref(key), pages_covered);
        } else if let Some((kvm, key)) = &kvm_state {
            removed += black_box(invalidate_kvm(kvm, &scope)) as u64;
            for page in pages_covered {
                let (leaf, shadow) = &fixture.entries[page as usize];
                kvm.install(key, leaf, shadow).expect("frames");
            }
        }
    }
    println!(
        "{} case {case}: {calls} calls covered {covered} cached pages ({} a call), removed {removed} entries",
        if umbra { "umbra" } else { "kvm" },
        covered / calls.max(1)
    );
}
