//! FEAT_HAFT and cached walk paths: the walker's trail holds a table
//! descriptor it set AF in as written (AF set), so a path cached from the
//! trail matches memory and serves partial walks. (With the values as read,
//! AF clear, every partial walk tried a compare-and-swap against memory
//! that already had AF set, lost, restarted and read every level.)
#![cfg(not(loom))]
// host threads and std atomics; the loom models live in loom-tests/

// Walk results carry their descriptor trail by value (no allocator).
#![allow(clippy::result_large_err)]

use std::sync::atomic::{AtomicU64, Ordering};

use shadow_mmu::cache::{cached_paths, walk_from, WalkKind};
use walker::{
    AccessKind, Endianness, ExposedFeatures, IdRegisters, Memslot, Memslots, SlotAccess,
    Stage2Registers, Stage2Walker,
};

const AF: u64 = 1 << 10;

#[test]
fn haft_cached_path_serves_partial_walks() {
    let words: Vec<AtomicU64> = (0..0x800).map(|_| AtomicU64::new(0)).collect();
    let put = |address: u64, value: u64| {
        words[(address / 8) as usize].store(value.to_le(), Ordering::SeqCst)
    };
    let get = |address: u64| u64::from_le(words[(address / 8) as usize].load(Ordering::SeqCst));
    // 4K granule, start level 1 (T0SZ 25): root 0x1000, level-2 table
    // 0x2000, level-3 table 0x3000; both table descriptors with AF clear.
    put(0x1000, 0x2000 | 3);
    put(0x2000, 0x3000 | 3);
    let leaf = AF | (3 << 8) | (3 << 6) | (0xf << 2) | 3;
    put(0x3000, 0x8000_0000 | leaf);
    put(0x3008, 0x8000_1000 | leaf);
    let mut slots = [Memslot::new(0, &words, SlotAccess::ReadWrite)];
    let memory = Memslots::new(&mut slots).unwrap();
    // PARange 48 bits, 4K granule; HAFDBS 3 (FEAT_HAFT).
    let features = ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: 5 | (1 << 20),
        mmfr1: 3,
        mmfr2: 0,
    })
    .unwrap();
    // T0SZ 25, SL0 1 (level 1), PS 48 bits, HA, HAFT.
    let vtcr = 25 | (1 << 6) | (2 << 16) | (1 << 21) | (1 << 44);
    let walker = Stage2Walker::new(
        Stage2Registers {
            vtcr,
            vttbr: 0x1000,
            endianness: Endianness::Little,
        },
        &features,
    );
    let first = walker.walk(&memory, 0x0, AccessKind::Read).unwrap();
    assert_eq!(
        get(0x1000) & get(0x2000) & AF,
        AF,
        "the walk set AF in both tables"
    );
    // The deepest path (both table descriptors) matches memory.
    let path = cached_paths(&walker, &first).last().unwrap();
    assert_eq!(
        path.reads().iter().map(|r| r.value).collect::<Vec<_>>(),
        vec![get(0x1000), get(0x2000)]
    );
    let (result, kind) = walk_from(&walker, &memory, Some(&path), 0x1000, AccessKind::Read);
    assert_eq!(result.unwrap().output_address, 0x8000_1000);
    assert_eq!(
        kind,
        WalkKind::Partial,
        "the cached path must serve the walk"
    );
}
