//! The `shadow_hit` benchmark's Umbra lookups (`benches/shadow_mmu.rs`
//! `hit`: 8 contexts of 512 cached pages, looked up round-robin, striding
//! through the pages) as a plain loop, for counting instructions and memory
//! accesses per hit under valgrind, which a shared machine's wall-clock
//! timings cannot give:
//!
//! ```text
//! cargo build --release -p bench --example hit_count
//! valgrind --tool=callgrind --toggle-collect='hit_count::hits*' \
//!     target/release/examples/hit_count burst 100000
//! ```
//!
//! Only the timed loop (`hits_burst` or `hits_lone`) is counted: divide
//! the callgrind totals by the requests. `burst` serves the lookups in a
//! `Burst` (one epoch pin per 16, as `umbra_lookup`), `lone` pins for each
//! (`umbra_lookup_lone`). `--cache-sim=yes` adds D1/LL misses. The hash
//! seed is fixed (`seed=` overrides it), so a run is deterministic.
//! `time` / `time-lone` (without valgrind) print the fastest of 50 rounds
//! in ns a lookup: a rough figure, not a benchmark.

use std::hint::black_box;

use bench::shadow_baseline::L1Fixture;
use bench::umbra::{context_key, service_seeded, UmbraService};
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::{Guard, Worker};
use walker::AccessKind;

const CONTEXTS: u16 = 8;
const HIT_PAGES: u64 = 512;

/// What the timed loops read: the service, a worker, the contexts' keys
/// (by VMID) and the probes (VMID, IPA) they cycle through.
struct Hits<'a> {
    service: &'a UmbraService,
    worker: &'a Worker,
    keys: Vec<ContextKey>,
    probes: Vec<(u16, u64)>,
}

impl Hits<'_> {
    /// Lookup `i` (of the probes, cycling), as the benchmark makes it (its
    /// output address to `black_box`); whether it hit.
    #[inline(always)]
    fn hit(&self, i: usize, guard: &Guard) -> bool {
        let (vmid, ipa) = self.probes[i % self.probes.len()];
        let hit = self
            .service
            .lookup(&self.keys[usize::from(vmid)], ipa, guard);
        black_box(hit.map(|w| w.output_base)).is_some()
    }
}

/// `requests` lookups in bursts; returns how many hit.
#[inline(never)]
fn hits_burst(h: &Hits, requests: usize) -> usize {
    let mut found = 0;
    let mut burst = h.worker.burst();
    for i in 0..requests {
        found += usize::from(h.hit(i, burst.guard()));
        burst.next();
    }
    found
}

/// `requests` lookups, each with a pin of its own; returns how many hit.
#[inline(never)]
fn hits_lone(h: &Hits, requests: usize) -> usize {
    (0..requests).filter(|&i| h.hit(i, &h.worker.pin())).count()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map_or("burst", String::as_str);
    let requests: usize = args.get(1).map_or(100_000, |n| n.parse().expect("a count"));
    let seed = args
        .iter()
        .find_map(|a| a.strip_prefix("seed="))
        .map_or(0x5eed_1234_abcd_0042, |s| {
            u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("a hex seed")
        });

    let f = L1Fixture::new(HIT_PAGES);
    let service = service_seeded(&f, CONTEXTS as usize, HIT_PAGES as usize, seed);
    let worker = service.worker();
    let keys: Vec<ContextKey> = (0..=CONTEXTS).map(|v| context_key(&f.key(v))).collect();
    for key in &keys[1..] {
        for i in 0..HIT_PAGES {
            let ipa = L1Fixture::l2_ipa(i);
            let abort = walker::AbortContext {
                far: None,
                origin: walker::AbortOrigin::Access,
                trapped_esr: None,
            };
            let t = service.translate(&worker, key, ipa, AccessKind::Read, &abort);
            assert!(
                matches!(t, shadow_mmu::service::Translated::Mapped(_)),
                "{t:?}"
            );
        }
    }
    // As the benchmark: round-robin over contexts, striding through pages.
    let probes: Vec<(u16, u64)> = (0..4096u64)
        .map(|i| {
            (
                (i % u64::from(CONTEXTS)) as u16 + 1,
                L1Fixture::l2_ipa((i * 37) % HIT_PAGES) + 0x10,
            )
        })
        .collect();
    let h = Hits {
        service: &service,
        worker: &worker,
        keys,
        probes,
    };
    let found = match mode {
        "burst" => hits_burst(&h, requests),
        "lone" => hits_lone(&h, requests),
        "time" | "time-lone" => {
            // A rough wall-clock figure (not under valgrind): the fastest
            // of 50 rounds, so other processes' slices mostly drop out.
            let hits = if mode == "time" {
                hits_burst
            } else {
                hits_lone
            };
            let best = (0..50)
                .map(|_| {
                    let start = std::time::Instant::now();
                    assert_eq!(hits(&h, requests), requests);
                    start.elapsed()
                })
                .min()
                .expect("rounds");
            println!(
                "{mode}: best {:.2} ns a lookup",
                best.as_nanos() as f64 / requests as f64
            );
            requests
        }
        other => panic!("mode {other}: burst, lone, time or time-lone"),
    };
    println!("{mode}: {found} of {requests} lookups hit");
    assert_eq!(found, requests, "every probe is cached");
}
