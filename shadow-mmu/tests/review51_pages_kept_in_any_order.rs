//! review51: page TLBIs leave their leaves' cache-index bits waiting; a page
//! cached again while its bit waits stops waiting (`keep_pending_page`),
//! whichever of the waiting pages it is. Two pages invalidated one after
//! the other and then faulted in again in the same order: the first one's
//! keep must take *it* off the waiting list, not the last one. Taking the
//! wrong one leaves the first page waiting while it is cached again, so the
//! next use of the page bits clears the first page's bit under its live
//! leaf, and a range TLBI over both pages then misses that leaf: after the
//! TLBI returned, L2 would still be given L1's old page (issue 3 item 7).
#![cfg(not(loom))]

use crate::common;

use common::*;
use ipc::tlbi::{EntryLevels, InvalidateScope};
use walker::Granule;

const P1: u64 = 0x4000_0000;
const P2: u64 = 0x4000_1000;
const OLD: u64 = 0x8000_0000;
const NEW: u64 = 0x8010_0000;

fn tlbi(start: u64, end: u64) -> InvalidateScope {
    ipa_scope(start, end, EntryLevels::LeafOnly)
}

#[test]
fn pages_cached_again_while_their_bits_wait_stay_indexed() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(P1, OLD, 3, RW);
    l1.map(P2, OLD + 0x1000, 3, RW);
    let key = l1.key(1);
    let s = service(mem);
    let w = s.worker();
    for (ipa, pa) in [(P1, OLD), (P2, OLD + 0x1000)] {
        assert_eq!(pa_of(&read(&s, &w, &key, ipa), ipa), Some(PA_OFFSET + pa));
    }
    // Both pages invalidated (each leaves its bit waiting), then both
    // faulted in again, first page first.
    for ipa in [P1, P2] {
        s.invalidate(&w, key.vmid, &tlbi(ipa, ipa + 0x1000));
    }
    for (ipa, pa) in [(P1, OLD), (P2, OLD + 0x1000)] {
        assert_eq!(pa_of(&read(&s, &w, &key, ipa), ipa), Some(PA_OFFSET + pa));
    }
    // L1 moves the first page and invalidates both pages at once.
    l1.map(P1, NEW, 3, RW);
    s.invalidate(&w, key.vmid, &tlbi(P1, P2 + 0x1000));
    assert_eq!(
        pa_of(&read(&s, &w, &key, P1), P1),
        Some(PA_OFFSET + NEW),
        "after the TLBI returned, L2 still got L1's old page"
    );
}
