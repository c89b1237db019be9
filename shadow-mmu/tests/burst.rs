//! A worker serving requests in a `Burst` (one epoch pin per
//! `REQUESTS_PER_PIN` requests instead of one per request) gets the same
//! answers, and a long burst does not hold back reclamation: what was
//! retired early in the burst is freed while the burst goes on.
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use ipc::tlbi::{Shareability, Tlbi, TlbiOp, TlbiParams};
use shadow_mmu::context::ContextKey;
use shadow_mmu::service::REQUESTS_PER_PIN;
use walker::Granule;

const PAGES: u64 = 64;

/// A service over L1 tables mapping `PAGES` pages, and their context key.
fn setup() -> (TestService, ContextKey) {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    for i in 0..PAGES {
        l1.map(i << 12, 0x8000_0000 + (i << 12), 3, RW);
    }
    (service(mem), l1.key(1))
}

/// Every request of a long burst invalidates a page (its cache nodes are
/// retired) and translates it again (a walk, nested in the burst's pin).
/// The answers are those of lone requests, and a destructor deferred at
/// the start of the burst runs before the burst ends.
#[test]
fn a_long_burst_answers_alike_and_lets_reclamation_proceed() {
    let (s, key) = setup();
    let w = s.worker();
    let expected: Vec<u64> = (0..PAGES)
        .map(|p| pa_of(&read(&s, &w, &key, (p << 12) | 0x18), (p << 12) | 0x18).unwrap())
        .collect();
    let ipas2 = Tlbi {
        op: TlbiOp::Ipas2e1,
        shareability: Shareability::InnerShareable,
        nxs: false,
    };

    let freed = Arc::new(AtomicBool::new(false));
    let mut burst = w.burst();
    let flag = freed.clone();
    burst
        .guard()
        .defer(move || flag.store(true, Ordering::SeqCst));
    let requests = 16 * 128u64;
    let mut freed_after = None;
    for n in 0..requests {
        let page = (n * 7) % PAGES;
        s.invalidate(&w, 1, &ipas2.decode(page, TlbiParams::default()).unwrap());
        let ipa = (page << 12) | 0x18;
        assert_eq!(
            pa_of(&read(&s, &w, &key, ipa), ipa),
            Some(expected[page as usize]),
            "request {n}"
        );
        burst.next();
        if freed_after.is_none() && freed.load(Ordering::SeqCst) {
            freed_after = Some(n);
        }
    }
    drop(burst);
    let freed_after = freed_after.expect("a destructor deferred at the start of a burst never ran");
    // A few collections (one per 128 requests) after the pin moved on.
    assert!(
        freed_after < 4 * 128,
        "freed only after {freed_after} requests"
    );
    let stats = s.stats();
    assert_eq!(stats.invalidations, requests);
    assert_eq!(stats.walks + stats.partial_walks, PAGES + requests);
}

/// The same work under one pin held across it: the burst's pin nests in
/// it and never moves, so nothing deferred is ever freed. This is what
/// the re-pin every `REQUESTS_PER_PIN` requests prevents (and what the
/// test above would see without it).
#[test]
fn a_pin_held_across_the_burst_keeps_everything() {
    let (s, key) = setup();
    let w = s.worker();
    let held = w.pin();
    let freed = Arc::new(AtomicBool::new(false));
    let flag = freed.clone();
    held.defer(move || flag.store(true, Ordering::SeqCst));
    let mut burst = w.burst();
    for n in 0..(16 * 128u64) {
        let ipa = ((n % PAGES) << 12) | 0x18;
        assert!(pa_of(&read(&s, &w, &key, ipa), ipa).is_some());
        burst.next();
    }
    assert!(!freed.load(Ordering::SeqCst));
    drop(burst);
    drop(held);
}

// The host build amortises the pin over several requests.
const _: () = assert!(REQUESTS_PER_PIN > 1);
