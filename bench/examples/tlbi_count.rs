//! The `shadow_invalidate_page` benchmark's Umbra calls (`benches/shadow_mmu.rs`
//! `invalidate`: one context with 1K or 1M pages cached and shadowed, a
//! one-page IPAS2E1IS without TTL at stride 7919, each page translated
//! again untimed so every call starts from the full cache) as a plain loop,
//! for counting instructions and simulated cache misses per invalidation
//! under valgrind, which a shared machine's wall-clock timings cannot give:
//!
//! ```text
//! cargo build --release -p bench --example tlbi_count
//! valgrind --tool=callgrind --cache-sim=yes --collect-atstart=no \
//!     --toggle-collect='tlbi_count::invalidate_page' \
//!     target/release/examples/tlbi_count 1M 20000
//! ```
//!
//! Only `invalidate_page` (the call the benchmark times) is counted: divide
//! the callgrind totals by the calls. The hash seed is fixed (`seed=`
//! overrides it), so a run is deterministic. `flushed` issues a VMALLS12E1IS
//! after the fill and fills the cache again, as a context L1 has flushed
//! before: its cache holds old leaf nodes no index lists, so page TLBIs
//! take the block index's gate (shadow-mmu README, "A page TLBI's
//! cache-index bit left to the index's next use"). A simulated miss count says
//! how many lines the call misses, not whether their misses overlap.
//!
//! `refault` counts each invalidation together with the translate that maps
//! its page again (the fault L2's next access takes; the benchmark's
//! `*_with_refault` rows): collect `tlbi_count::invalidate_and_refault`
//! instead, so work the invalidation leaves to a structure's next use is
//! counted where it lands.
//!
//! `wait=PATH`: after the fill, print `filled` and wait until PATH exists
//! before the counted calls, so that a 1M run can leave valgrind's
//! instrumentation off through the fill (`--instr-atstart=no`, at near
//! native speed) and turn it on then (`callgrind_control -i on`, then
//! create PATH). The simulated caches then start empty at the first call,
//! which a few thousand calls of random pages soon make up for.

use std::hint::black_box;

use bench::range::ipas2e1;
use bench::shadow_baseline::L1Fixture;
use bench::umbra::{context_key, service_seeded, UmbraService};
use ipc::tlbi::InvalidateScope;
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::{Translated, Worker};
use walker::{AbortContext, AbortOrigin, AccessKind};

const ABORT: AbortContext = AbortContext {
    far: None,
    origin: AbortOrigin::Access,
    trapped_esr: None,
};

/// The benchmark's stride through the cached pages.
const STRIDE: u64 = 7919;

fn translate(service: &UmbraService, worker: &Worker, key: &ContextKey, ipa: u64) {
    let t = service.translate(worker, key, ipa, AccessKind::Read, &ABORT);
    assert!(matches!(t, Translated::Mapped(_)), "{ipa:#x}: {t:?}");
}

/// The timed call.
#[inline(never)]
fn invalidate_page(service: &UmbraService, worker: &Worker, scope: &InvalidateScope) -> u64 {
    service.invalidate(worker, 1, scope)
}

/// The invalidation and the refault of its page, counted together.
#[inline(never)]
fn invalidate_and_refault(
    service: &UmbraService,
    worker: &Worker,
    key: &ContextKey,
    scope: &InvalidateScope,
    ipa: u64,
) -> u64 {
    let removed = invalidate_page(service, worker, scope);
    translate(service, worker, key, ipa);
    removed
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pages: u64 = match args.first().map_or("1K", String::as_str) {
        "1K" => 1 << 10,
        "1M" => 1 << 20,
        other => other.parse().expect("1K, 1M or a page count"),
    };
    let calls: u64 = args.get(1).map_or(20_000, |n| n.parse().expect("a count"));
    let seed = args
        .iter()
        .find_map(|a| a.strip_prefix("seed="))
        .map_or(0x5eed_1234_abcd_0042, |s| {
            u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("a hex seed")
        });

    let f = L1Fixture::new(pages);
    // As the benchmark: room for two contexts, one filled.
    let service = service_seeded(&f, 2, pages as usize, seed);
    let worker = service.worker();
    let key = context_key(&f.key(1));
    for i in 0..pages {
        translate(&service, &worker, &key, L1Fixture::l2_ipa(i));
    }
    if args.iter().any(|a| a == "flushed") {
        service.invalidate(&worker, 1, &InvalidateScope::Vmid);
        for i in 0..pages {
            translate(&service, &worker, &key, L1Fixture::l2_ipa(i));
        }
    }
    if let Some(path) = args.iter().find_map(|a| a.strip_prefix("wait=")) {
        println!("filled");
        while !std::path::Path::new(path).exists() {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    let refault = args.iter().any(|a| a == "refault");
    let mut page = 0;
    let mut removed = 0;
    for _ in 0..calls {
        page = (page + STRIDE) % pages;
        let ipa = L1Fixture::l2_ipa(page);
        let scope = ipas2e1(ipa);
        if refault {
            removed += black_box(invalidate_and_refault(&service, &worker, &key, &scope, ipa));
        } else {
            removed += black_box(invalidate_page(&service, &worker, &scope));
            translate(&service, &worker, &key, ipa);
        }
    }
    println!(
        "{pages} pages, {calls} page invalidations removed {removed} entries; {:?}",
        service.stats()
    );
}
