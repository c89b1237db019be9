//! Multi-threaded stress: vCPU threads translate while another thread
//! remaps L1's tables (leaves, and whole level-3 tables) and issues TLBIs
//! of every form. Every translation returned is checked against the table
//! versions that could have been current during the call: a version written
//! before the call ended, and not yet superseded by a completed TLBI when it
//! began. At the end (quiescent), every cached and shadow entry matches the
//! current tables: no stale result was left behind.
#![cfg(not(loom))] // host threads and std atomics; the loom models live in loom-tests/

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::*;
use ipc::tlbi::{
    Granule as TlbiGranule, InvalidateScope, RangeOperand, Shareability, Tlbi, TlbiOp, TlbiParams,
};
use shadow_mmu::service::{Retry, Translated};
use walker::Granule;

const PAGES: u64 = 64;
const PAGE_BASE: u64 = 0x1000_0000;
const BLOCKS: u64 = 8;
const BLOCK_BASE: u64 = 0x4000_0000;
const BLOCK: u64 = 2 << 20;
const VMIDS: [u16; 2] = [1, 2];

/// One version of one slot: its output and when it was live.
#[derive(Clone, Copy, Debug)]
struct Version {
    l1_ipa: u64,
    written_at: u64,
    /// When the TLBI that made the next version current completed.
    superseded_at: Option<u64>,
}

struct Slot {
    ipa: u64,
    size: u64,
    level: i8,
    history: Mutex<Vec<Version>>,
}

fn page_output(page: u64, version: u64) -> u64 {
    0x8000_0000 + ((page * 32 + version % 32) << 12)
}

fn block_output(block: u64, version: u64) -> u64 {
    0xa000_0000 + (block * 8 + version % 8) * BLOCK
}

struct World {
    l1: L1Tables,
    slots: Vec<Slot>,
    clock: AtomicU64,
}

impl World {
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    /// Whether `l1_ipa` for `ipa` in `slot` matches a version live at some
    /// point in `[start, end]`.
    fn valid(&self, slot: &Slot, ipa: u64, l1_ipa: u64, start: u64, end: u64) -> bool {
        let offset = ipa - slot.ipa;
        slot.history.lock().unwrap().iter().any(|v| {
            v.written_at <= end
                && v.superseded_at.is_none_or(|s| s >= start)
                && v.l1_ipa + offset == l1_ipa
        })
    }

    /// Records the next version of slot `index` as written from now on
    /// (before the write itself), and returns its output.
    fn begin_change(&self, index: usize) -> u64 {
        let slot = &self.slots[index];
        let mut history = slot.history.lock().unwrap();
        let version = history.len() as u64;
        let output = if slot.level == 3 {
            page_output(index as u64, version)
        } else {
            block_output(index as u64 - PAGES, version)
        };
        history.push(Version {
            l1_ipa: output,
            written_at: self.tick(),
            superseded_at: None,
        });
        output
    }

    /// The TLBI for the change of slot `index` completed: the version
    /// before it may no longer be used.
    fn finish_change(&self, index: usize, done_at: u64) {
        let mut history = self.slots[index].history.lock().unwrap();
        let previous = history.len() - 2;
        history[previous].superseded_at = Some(done_at);
    }

    fn current(&self, slot: &Slot) -> u64 {
        slot.history.lock().unwrap().last().unwrap().l1_ipa
    }
}

#[test]
fn translations_always_match_a_live_version_of_the_tables() {
    stress(4);
}

/// The same with one context slot for the two VMIDs, which then recycle
/// each other's context all the time (review 25's probe).
#[test]
fn translations_always_match_with_contexts_recycling() {
    stress(1);
}

fn stress(contexts: usize) {
    let mem = L1Memory::new();
    let l1 = L1Tables::new(mem.clone(), Granule::K4);
    let mut slots = Vec::new();
    for p in 0..PAGES {
        let ipa = PAGE_BASE + (p << 12);
        l1.map(ipa, page_output(p, 0), 3, RW);
        slots.push(Slot {
            ipa,
            size: 4096,
            level: 3,
            history: Mutex::new(vec![Version {
                l1_ipa: page_output(p, 0),
                written_at: 0,
                superseded_at: None,
            }]),
        });
    }
    for b in 0..BLOCKS {
        let ipa = BLOCK_BASE + b * BLOCK;
        l1.map(ipa, block_output(b, 0), 2, RW);
        slots.push(Slot {
            ipa,
            size: BLOCK,
            level: 2,
            history: Mutex::new(vec![Version {
                l1_ipa: block_output(b, 0),
                written_at: 0,
                superseded_at: None,
            }]),
        });
    }
    let world = Arc::new(World {
        l1,
        slots,
        clock: AtomicU64::new(1),
    });
    let s = Arc::new(service_with(mem, 4 << 20, contexts));
    let done = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicU64::new(0));

    let vcpus: Vec<_> = (0..2u64)
        .map(|n| {
            let (world, s, done, checked) = (world.clone(), s.clone(), done.clone(), checked.clone());
            thread::spawn(move || {
                let w = s.worker();
                let mut rng = Rng(0x9e37 + n);
                while !done.load(Ordering::Acquire) {
                    let slot = &world.slots[rng.below(world.slots.len() as u64) as usize];
                    let ipa = slot.ipa + (rng.below(slot.size) & !7);
                    let vmid = VMIDS[rng.below(2) as usize];
                    let start = world.tick();
                    let t = read(&s, &w, &world.l1.key(vmid), ipa);
                    let end = world.tick();
                    match t {
                        Translated::Mapped(m) => {
                            assert!(m.contains(ipa));
                            let l1_ipa = m.pa_base + (ipa - m.l2_ipa_base) - PA_OFFSET;
                            assert!(
                                world.valid(slot, ipa, l1_ipa, start, end),
                                "IPA {ipa:#x} -> {l1_ipa:#x} matches no live version in [{start}, {end}]: {:?}",
                                slot.history.lock().unwrap()
                            );
                            checked.fetch_add(1, Ordering::Relaxed);
                        }
                        Translated::Retry(Retry::InvalidationRaced | Retry::Throttled) => {}
                        other => panic!("unexpected {other:?} for {ipa:#x}"),
                    }
                }
            })
        })
        .collect();

    // The remapper: L1 changing its tables and issuing the TLBIs that make
    // the change architecturally visible.
    let w = s.worker();
    let mut rng = Rng(7);
    let tlbi = |op| Tlbi {
        op,
        shareability: Shareability::InnerShareable,
        nxs: false,
    };
    let params = TlbiParams::default();
    let mut table_copies = 0;
    // At least 2000 changes, and on until the vCPUs have checked enough
    // translations to have raced with many of them.
    let mut round = 0u64;
    while round < 2000 || (checked.load(Ordering::Relaxed) < 10_000 && round < 200_000) {
        round += 1;
        thread::yield_now();
        let changed: Vec<usize>;
        let scope;
        if round.is_multiple_of(97) && table_copies < 40 {
            // Replace the whole level-3 table of the pages by a copy with
            // new outputs: a table-level change, so an any-level TLBI.
            table_copies += 1;
            let l2_slot = world.l1.slot(PAGE_BASE, 2);
            // A zeroed 4 KiB table of its own in the shared area.
            let table = L1Tables::at(
                world.l1.mem.clone(),
                Granule::K4,
                (1 << 20) + table_copies * 0x1000,
            )
            .root;
            for p in 0..PAGES {
                let output = world.begin_change(p as usize);
                world.l1.mem.write(table + 8 * p, output | RW | 3);
            }
            world.l1.mem.write(l2_slot, table | 3);
            changed = (0..PAGES as usize).collect();
            scope = if rng.below(2) == 0 {
                tlbi(TlbiOp::Vmalls12e1).decode(0, params).unwrap()
            } else {
                let operand = RangeOperand {
                    granule: Some(TlbiGranule::K4),
                    scale: 0,
                    num: 31, // 64 pages
                    ttl: 0,
                    base_addr: PAGE_BASE >> 12,
                };
                tlbi(TlbiOp::Ripas2e1)
                    .decode(operand.to_bits(), params)
                    .unwrap()
            };
        } else {
            let index = rng.below(world.slots.len() as u64) as usize;
            let slot = &world.slots[index];
            let output = world.begin_change(index);
            world.l1.map(slot.ipa, output, slot.level, RW);
            changed = vec![index];
            // Any address inside the leaf names it.
            let inside = slot.ipa + (rng.below(slot.size) & !0xfff);
            scope = match rng.below(4) {
                0 => tlbi(TlbiOp::Ipas2e1).decode(inside >> 12, params).unwrap(),
                1 => tlbi(TlbiOp::Ipas2le1).decode(inside >> 12, params).unwrap(),
                2 => {
                    let operand = RangeOperand {
                        granule: Some(TlbiGranule::K4),
                        scale: 0,
                        num: 0,
                        ttl: 0,
                        base_addr: inside >> 12,
                    };
                    tlbi(TlbiOp::Ripas2le1)
                        .decode(operand.to_bits(), params)
                        .unwrap()
                }
                _ => InvalidateScope::Vmid,
            };
        }
        for vmid in VMIDS {
            s.invalidate(&w, vmid, &scope);
        }
        let done_at = world.tick();
        for index in changed {
            world.finish_change(index, done_at);
        }
    }
    done.store(true, Ordering::Release);
    for v in vcpus {
        v.join().unwrap();
    }
    assert!(
        checked.load(Ordering::Relaxed) > 1000,
        "too few translations checked"
    );

    // Quiescent: nothing stale anywhere.
    for slot in &world.slots {
        let current = world.current(slot);
        for vmid in VMIDS {
            let key = world.l1.key(vmid);
            let guard = w.pin();
            if let Some(hit) = s.lookup(&key, slot.ipa, &guard) {
                assert_eq!(
                    hit.output_address(slot.ipa),
                    current,
                    "stale cache at {:#x}",
                    slot.ipa
                );
            }
            drop(guard);
            for probe in [slot.ipa, slot.ipa + slot.size - 4096] {
                if let Some(m) = s.shadow_lookup(&w, &key, probe) {
                    assert_eq!(
                        m.pa_base + (probe - m.l2_ipa_base),
                        PA_OFFSET + current + (probe - slot.ipa),
                        "stale shadow at {probe:#x}"
                    );
                }
            }
        }
    }
}
