//! The walker side of the walker benchmarks' fixtures, shared by
//! `benches/walker.rs` and `examples/walk_count.rs`: the table memory as
//! the walker's memslots (with decoy slots below it, a typical VMM memory
//! map), the same layout for the KVM-style baseline, the exposed features,
//! the hot-walk geometries, and the cold table with its cache eviction
//! (shared with `examples/cold_ratio.rs`).

use std::hint::black_box;
use std::sync::atomic::AtomicU64;

use walker::{
    fill_words_from_bytes, AccessKind, Endianness, ExposedFeatures, IdRegisters, Memslot, Memslots,
    SlotAccess, Stage2Registers, Stage2Walker, Translation, WalkError, WalkRequest,
};

use crate::walker_baseline::{
    cold_table, ColdTable, Geometry, Granule, KvmStyleMemory, TableMemory, MMFR0_PA52_ALL_GRANULES,
    MMFR2_TTST,
};

/// Slots besides the table's in the multi-slot layout.
pub const DECOY_SLOTS: u64 = 15;

/// Table memory as words for the walker, plus decoy slots below it.
#[derive(Debug)]
pub struct WalkerMemory {
    pub base: u64,
    pub words: Vec<AtomicU64>,
    decoys: Vec<(u64, Vec<AtomicU64>)>,
}

impl WalkerMemory {
    pub fn new(memory: &TableMemory, decoys: u64) -> WalkerMemory {
        let words: Vec<AtomicU64> = (0..memory.bytes.len() / 8)
            .map(|_| AtomicU64::new(0))
            .collect();
        fill_words_from_bytes(&words, &memory.bytes).expect("table size is a multiple of 8");
        WalkerMemory {
            base: memory.base,
            words,
            decoys: decoy_bases(memory.base, decoys)
                .map(|base| (base, (0..512).map(|_| AtomicU64::new(0)).collect()))
                .collect(),
        }
    }

    pub fn memslots<'a>(&'a self, storage: &'a mut Vec<Memslot<'a>>) -> Memslots<'a> {
        storage.clear();
        storage.extend(
            self.decoys
                .iter()
                .map(|(base, words)| Memslot::new(*base, words, SlotAccess::ReadWrite)),
        );
        storage.push(Memslot::new(self.base, &self.words, SlotAccess::ReadWrite));
        Memslots::new(storage).expect("fixture memslots are valid")
    }
}

/// 4 KiB slots at 2 MiB steps below the table slot (as flash, devices and
/// firmware regions sit below RAM in a VMM's memory map).
fn decoy_bases(table_base: u64, count: u64) -> impl Iterator<Item = u64> {
    (0..count).map(move |i| table_base - (count - i) * 0x20_0000)
}

/// The baseline's memslots: the same layout (KVM keeps them in a gfn tree
/// with a last-used-slot cache). `decoy` is the bytes of each decoy slot.
pub fn kvm_slots<'a>(memory: &'a TableMemory, decoy: &'a [u8], decoys: u64) -> KvmStyleMemory<'a> {
    let mut slots: Vec<(u64, &[u8])> = decoy_bases(memory.base, decoys)
        .map(|base| (base, decoy))
        .collect();
    slots.push((memory.base, &memory.bytes[..]));
    KvmStyleMemory::new(slots)
}

/// What L0 exposes to L1 in the benchmarks: PARange 52 bits, every
/// granule with 52-bit support, FEAT_TTST.
pub fn features() -> ExposedFeatures {
    ExposedFeatures::from_id_registers(IdRegisters {
        mmfr0: MMFR0_PA52_ALL_GRANULES,
        mmfr1: 0,
        mmfr2: MMFR2_TTST,
    })
    .expect("benchmark ID registers are valid")
}

/// The walker for L1's `vtcr`/`vttbr` (little-endian descriptors).
pub fn walker_for(vtcr: u64, vttbr: u64) -> Stage2Walker {
    Stage2Walker::new(
        Stage2Registers {
            vtcr,
            vttbr,
            endianness: Endianness::Little,
        },
        &features(),
    )
}

/// The hot geometry `name` names (`4K/L0`, ...; see [`hot_geometries`]).
///
/// # Panics
///
/// If no hot geometry has that name.
pub fn hot_geometry(name: &str) -> Geometry {
    hot_geometries()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, geometry)| geometry)
        .unwrap_or_else(|| panic!("{name} is not a hot geometry"))
}

/// Every granule and start level, in the 48-bit format where it exists and
/// in the 52-bit FEAT_LPA2 format where only that has the level, named
/// `4K/L0`, `4K/L-1-lpa2`, ...
pub fn hot_geometries() -> Vec<(String, Geometry)> {
    let mut list = Vec::new();
    for (granule, levels) in [
        (Granule::K4, &[-1i8, 0, 1, 2, 3][..]),
        (Granule::K16, &[0, 1, 2, 3][..]),
        (Granule::K64, &[1, 2, 3][..]),
    ] {
        for &level in levels {
            let lpa2 = level == -1 || (granule == Granule::K16 && level == 0);
            let name = format!("{granule}/L{level}{}", if lpa2 { "-lpa2" } else { "" });
            list.push((name, Geometry::full_start_table(granule, level, lpa2)));
        }
    }
    list
}

/// 512 MiB of memslot: 512 level-1 tables, 32768 disjoint paths (a
/// level-2 and a level-3 table each, 256 MiB of tables at shuffled pages),
/// 2^20 IPAs in the walk sequence.
pub fn cold_fixture() -> ColdTable {
    cold_table(512 << 20, 64, 1 << 20)
}

/// Walks in one timed iteration of the cold rows (one `walk_batch` call).
pub const COLD_BATCH: usize = 64;

/// Levels every cold walk reads (4K, start level 0, pages).
pub const COLD_LEVELS: usize = 4;

/// The cold table's IPAs in order, as read requests.
pub fn cold_requests(fixture: &ColdTable) -> Vec<WalkRequest> {
    fixture
        .ipas
        .iter()
        .map(|&ipa| WalkRequest {
            ipa,
            access: AccessKind::Read,
        })
        .collect()
}

/// Checks what the cold rows walk, on the first `batches` batches of
/// `requests`: a batch gives what single walks give, every IPA maps where
/// the table says, and the baseline agrees. `results` holds a batch.
pub fn check_cold_batches(
    fixture: &ColdTable,
    walker: &Stage2Walker,
    memslots: &Memslots,
    baseline: &KvmStyleMemory,
    requests: &[WalkRequest],
    results: &mut [Result<Translation, WalkError>],
    batches: usize,
) {
    for chunk in requests.chunks(results.len()).take(batches) {
        walker
            .walk_batch(memslots, chunk, results)
            .expect("equal lengths");
        for (request, result) in chunk.iter().zip(&*results) {
            let single = walker.walk(memslots, request.ipa, request.access);
            assert_eq!(result, &single);
            let oa = single.expect("every cold IPA is mapped").output_address;
            assert_eq!(oa, ColdTable::expected_oa(request.ipa));
            assert_eq!(
                baseline
                    .walk(fixture.vtcr, fixture.vttbr, request.ipa)
                    .map(|t| t.oa),
                Ok(oa)
            );
        }
    }
}

/// The loads of `loads_only64` (and the rows like it): for each batch of
/// [`COLD_BATCH`] requests, level by level, the index in `memory.words`
/// of every walk's descriptor, from the single walks' trails.
pub fn cold_descriptor_words(
    walker: &Stage2Walker,
    memslots: &Memslots,
    memory: &WalkerMemory,
    requests: &[WalkRequest],
) -> Vec<u32> {
    let word_of = |address: u64| -> u32 {
        u32::try_from((address - memory.base) / 8).expect("the slot has < 2^32 words")
    };
    requests
        .chunks(COLD_BATCH)
        .flat_map(|chunk| {
            let trails: Vec<_> = chunk
                .iter()
                .map(|request| {
                    walker
                        .walk(memslots, request.ipa, request.access)
                        .expect("every cold IPA is mapped")
                        .trail
                })
                .collect();
            (0..COLD_LEVELS).flat_map(move |level| {
                trails
                    .iter()
                    .map(move |trail| word_of(trail.as_slice()[level].address))
                    .collect::<Vec<_>>()
            })
        })
        .collect()
}

/// Batches walked between two cache evictions. Any 8 consecutive batches
/// (512 walks) are disjoint below the root, so each finds its paths in no
/// cache: every level of every walk misses, as in a hypervisor whose
/// guests touch memory all over their address spaces.
pub const BATCHES_PER_EVICTION: u64 = 8;

/// Streams over a buffer larger than the last-level cache and the L2s
/// together, so what was cached before is gone (untimed, between measured
/// batches).
#[derive(Debug)]
pub struct CacheEvictor {
    lines: Vec<u64>,
}

impl Default for CacheEvictor {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheEvictor {
    pub fn new() -> CacheEvictor {
        // Twice the LLC as the host reports it (32 MiB if it does not say).
        let llc = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cache/index3/size")
            .ok()
            .and_then(|s| {
                let s = s.trim();
                let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
                let n: usize = digits.parse().ok()?;
                Some(match unit {
                    "K" => n << 10,
                    "M" => n << 20,
                    _ => n,
                })
            })
            .unwrap_or(32 << 20);
        let bytes = 2 * llc.max(8 << 20);
        CacheEvictor {
            lines: (0..bytes / 8).map(|i| i as u64).collect(),
        }
    }

    pub fn evict(&mut self) {
        // Write every line (one word each), so it is owned here and any
        // table line in any cache level is displaced.
        for line in self.lines.chunks_exact_mut(8) {
            line[0] = line[0].wrapping_add(1);
        }
        black_box(&self.lines);
    }
}
