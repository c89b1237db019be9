//! review51: a page TLBI leaves its 4 KiB leaf's cache-index bit waiting
//! (`unindex_page_later`); a page cached again while it waits just stops
//! waiting (`keep_pending_page`). A *block* cached at the waiting page's
//! base is not that page: it must be indexed as a block. If it were taken
//! for the waiting page (the keep not limited to 4 KiB leaves), the block's
//! leaf would be linked in the cache but listed in no index, so the next
//! TLBI covering it would miss it, and after that TLBI returned L2 would
//! still be given L1's old translation (issue 3 item 7). No other test
//! pins the keep's size check.
#![cfg(not(loom))]

use crate::common;

use common::*;
use ipc::tlbi::{EntryLevels, InvalidateScope};
use walker::Granule;

const BLOCK: u64 = 0x4000_0000; // a 2 MiB-aligned L2 IPA
const OLD_PAGE: u64 = 0x8000_0000;
const OLD_BLOCK: u64 = 0x8020_0000;
const NEW_BLOCK: u64 = 0x8040_0000;

fn tlbi(start: u64, end: u64) -> InvalidateScope {
    ipa_scope(start, end, EntryLevels::AnyLevel)
}

#[test]
fn a_block_cached_at_a_waiting_pages_base_is_invalidated_with_it() {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    l1.map(BLOCK, OLD_PAGE, 3, RW);
    let key = l1.key(1);
    let s = service(mem);
    let w = s.worker();
    assert_eq!(
        pa_of(&read(&s, &w, &key, BLOCK), BLOCK),
        Some(PA_OFFSET + OLD_PAGE)
    );
    // L1 replaces its level-3 table by a 2 MiB block and invalidates the
    // page (any level: the cached table path goes too). The page's index
    // bit is left waiting.
    l1.map(BLOCK, OLD_BLOCK, 2, RW);
    s.invalidate(&w, key.vmid, &tlbi(BLOCK, BLOCK + 0x1000));
    // The block is walked and cached at the waiting page's base.
    let ipa = BLOCK + 0x5000;
    assert_eq!(
        pa_of(&read(&s, &w, &key, ipa), ipa),
        Some(PA_OFFSET + OLD_BLOCK + 0x5000)
    );
    // L1 moves the block and invalidates a page inside it: the cached block
    // overlaps that page, so it must go.
    l1.map(BLOCK, NEW_BLOCK, 2, RW);
    s.invalidate(&w, key.vmid, &tlbi(ipa, ipa + 0x1000));
    assert_eq!(
        pa_of(&read(&s, &w, &key, ipa), ipa),
        Some(PA_OFFSET + NEW_BLOCK + 0x5000),
        "after the TLBI returned, L2 still got L1's old block"
    );
}
