//! Random but plausible worlds for the differential test: exposed ID
//! registers, memslots, VTCR_EL2/VTTBR_EL2 settings with table trees built
//! in guest memory, and requests biased towards IPAs whose walks go deep.
//!
//! The generator only has to be plausible, not right: the model decides
//! every answer from memory alone. It uses the model's decoding helpers
//! to aim at interesting corners.

use std::collections::HashMap;

use super::model::{
    baddr_is_52_bit, bit, bits, block_supported, decode_tg0, max_txsz, oa_size, s2_inconsistent_sl,
    s2_invalid_sl, s2_min_txsz, start_table_bits, Access, Features, Granule, Memory, Slot,
    WalkParams,
};

/// SplitMix64: small, deterministic, good enough for test generation.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// Index chosen with the given weights.
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut x = self.below(total);
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        unreachable!("weights sum to total")
    }

    /// A value with only bits `lo..=hi` random.
    pub fn bits(&mut self, hi: u32, lo: u32) -> u64 {
        bits(self.next_u64(), hi - lo, 0) << lo
    }
}

/// One JSON line of the batch.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub vtcr: u64,
    pub vttbr: u64,
    pub ipa: u64,
    pub access: Access,
}

/// A VTCR_EL2/VTTBR_EL2 pair and the IPAs its table tree was built for,
/// each with the number of low bits its last descriptor maps.
#[derive(Clone, Debug)]
pub struct Config {
    pub vtcr: u64,
    pub vttbr: u64,
    pub targets: Vec<(u64, u32)>,
}

/// Everything one `s2walk batch` run needs.
#[derive(Clone, Debug)]
pub struct World {
    pub features: Features,
    pub big_endian: bool,
    pub memory: Memory,
    pub requests: Vec<Request>,
}

/// Room reserved for each memslot, so slots never overlap whatever they grow to.
const SLOT_RESERVE: u64 = 32 << 20;

#[derive(Debug)]
struct SlotPlan {
    base: u64,
    /// End of the address range kept for this slot alone.
    end: u64,
    used: u64,
    read_only: bool,
    /// Set when the slot was cut short inside its last table: no more
    /// allocation, and the file ends at `used`.
    closed: bool,
}

/// Builds memory: memslots with tables bump-allocated in them, and words.
#[derive(Debug, Default)]
struct Builder {
    /// Most slots to create, and how often a table goes into an existing
    /// slot rather than a new one.
    max_slots: usize,
    reuse_percent: u64,
    slots: Vec<SlotPlan>,
    words: HashMap<u64, u64>,
    /// Where each table descriptor the generator wrote leads: entry -> table.
    links: HashMap<u64, u64>,
    /// Tables allocated, per config tree, per level (for sharing).
    tables: Vec<(usize, i32, u64)>,
}

impl Builder {
    fn reserved(&self, address: u64) -> bool {
        self.slots
            .iter()
            .any(|s| address >= s.base && address < s.end)
    }

    /// A new slot below `2^max_bits` not overlapping the others' reserves.
    fn new_slot(&mut self, rng: &mut Rng, max_bits: u32) -> Option<usize> {
        let choices: Vec<u32> = [32u32, 36, 40, 44, 48, 52]
            .into_iter()
            .filter(|b| *b <= max_bits)
            .collect();
        let top = if choices.is_empty() {
            max_bits
        } else {
            rng.pick(&choices)
        };
        if top < 26 {
            return None;
        }
        for _ in 0..20 {
            let base = align(rng.below((1u64 << top) - SLOT_RESERVE), 16);
            let clash = self
                .slots
                .iter()
                .any(|s| base < s.end && s.base < base + SLOT_RESERVE);
            if !clash {
                self.slots.push(SlotPlan {
                    base,
                    end: base + SLOT_RESERVE,
                    used: 0,
                    read_only: rng.chance(20),
                    closed: false,
                });
                return Some(self.slots.len() - 1);
            }
        }
        None
    }

    /// `size` bytes aligned to `align_bits`, below `2^max_bits`.
    fn alloc(&mut self, rng: &mut Rng, size: u64, align_bits: u32, max_bits: u32) -> Option<u64> {
        let fits = |s: &SlotPlan| {
            let start = align(s.base + s.used, align_bits);
            !s.closed && start + size <= s.end && (start + size - 1) >> max_bits == 0
        };
        let candidates: Vec<usize> = (0..self.slots.len())
            .filter(|i| fits(&self.slots[*i]))
            .collect();
        let index = if !candidates.is_empty()
            && (rng.chance(self.reuse_percent) || self.slots.len() >= self.max_slots)
        {
            rng.pick(&candidates)
        } else {
            let i = self.new_slot(rng, max_bits)?;
            if !fits(&self.slots[i]) {
                return None;
            }
            i
        };
        let slot = &mut self.slots[index];
        let start = align(slot.base + slot.used, align_bits);
        slot.used = start + size - slot.base;
        // Now and then the slot ends inside this table: entries past the
        // cut lie outside every memslot, or in another slot that starts
        // right there (perhaps read-only).
        if size >= 64 && rng.chance(4) {
            let cut = start + align(rng.below(size), 3).max(8);
            slot.used = cut - slot.base;
            slot.closed = true;
            if rng.chance(50) {
                let end = slot.end;
                slot.end = cut;
                self.slots.push(SlotPlan {
                    base: cut,
                    end,
                    used: start + size - cut,
                    read_only: rng.chance(30),
                    closed: false,
                });
            }
        }
        Some(start)
    }

    /// An address in no memslot (below `2^max_bits`).
    fn hole(&self, rng: &mut Rng, max_bits: u32, align_bits: u32) -> u64 {
        for _ in 0..50 {
            let a = align(rng.below(1u64 << max_bits.min(63)), align_bits);
            if !self.reserved(a) {
                return a;
            }
        }
        align(rng.below(1u64 << max_bits.min(63)), align_bits)
    }

    fn put(&mut self, address: u64, value: u64) {
        self.words.insert(address, value);
    }

    fn finish(self) -> Memory {
        let slots: Vec<Slot> = self
            .slots
            .iter()
            .filter(|s| s.used > 0)
            .map(|s| Slot {
                base: s.base,
                len: align(s.used, 3),
                read_only: s.read_only,
            })
            .collect();
        let mut memory = Memory {
            slots,
            words: HashMap::new(),
        };
        for (address, value) in self.words {
            // Words written past a cut are not in any file.
            if memory.read(address).is_some() {
                memory.words.insert(address, value);
            }
        }
        memory
    }
}

fn align(value: u64, align_bits: u32) -> u64 {
    let mask = (1u64 << align_bits) - 1;
    (value + mask) & !mask
}

/// ID_AA64MMFR0_EL1 that s2walk assumes when --mmfr0 is omitted (the
/// contract: PARange 48 bits, all granules, no LPA2).
pub const DEFAULT_MMFR0: u64 = 0x0222_0010_0005;

/// ID_AA64MMFR0_EL1 hv shows L1 on a host with FEAT_LPA2 (QEMU's `-cpu
/// max`; hv/src/nested/idregs.rs `shown_to_l1`): PARange 40 bits,
/// FEAT_LPA2 at stage 1 (TGran4 0b0001, TGran16 0b0010, TGran64 0b0000),
/// a 4KB stage 2 without it (TGran4_2 0b0010; TGran16_2, TGran64_2
/// 0b0001). VTCR_EL2.DS is RES0 for that stage 2.
pub const HV_L1_MMFR0: u64 =
    0b0010 | (0b0010 << 20) | (0b0001 << 28) | (0b0001 << 32) | (0b0001 << 36) | (0b0010 << 40);

/// Random ID registers within the contract (PARange 32..52 bits, TGran*_2
/// including the LPA2 encodings, HAFDBS 0..3, XNX, ST, BBM). FEAT_LPA2 is
/// drawn separately for stage 1 and for each stage-2 granule, so a stage
/// 1 with it over a stage 2 without it (hv's L1) and one stage-2 granule
/// with it beside one without are common, not chance.
pub fn gen_features(rng: &mut Rng) -> Features {
    if rng.chance(4) {
        // The CPU s2walk assumes when no ID register is given.
        return Features::decode(DEFAULT_MMFR0, 0, 0).expect("the default CPU is valid");
    }
    let mmfr1 = |rng: &mut Rng| {
        let hafdbs = [0u64, 1, 2, 2, 3][rng.below(5) as usize];
        hafdbs | if rng.chance(50) { 1 << 28 } else { 0 }
    };
    let mmfr2 =
        |rng: &mut Rng| (if rng.chance(50) { 1u64 << 28 } else { 0 }) | (rng.below(3) << 52);
    if rng.chance(6) {
        let (mmfr1, mmfr2) = (mmfr1(rng), mmfr2(rng));
        return Features::decode(HV_L1_MMFR0, mmfr1, mmfr2).expect("hv's L1 CPU is valid");
    }
    loop {
        let parange = [0u64, 1, 2, 3, 4, 5, 5, 6, 6, 6][rng.below(10) as usize];
        let lpa2 = rng.chance(if parange == 6 { 55 } else { 10 });
        // Per stage-2 granule, usually the same; stage 1 independent a
        // third of the time (then mostly with FEAT_LPA2, as hv's host).
        let lpa2_2 = [lpa2, if rng.chance(75) { lpa2 } else { !lpa2 }];
        let lpa2_1 = if rng.chance(65) { lpa2 } else { rng.chance(70) };
        let s2 = [rng.chance(85), rng.chance(65), rng.chance(70)];
        // Stage-1 support, usually the same as stage 2.
        let s1: Vec<bool> = s2
            .iter()
            .map(|s| if rng.chance(80) { *s } else { rng.chance(50) })
            .collect();
        let tgran4 = if s1[0] {
            if lpa2_1 {
                0b0001
            } else {
                0b0000
            }
        } else {
            0b1111
        };
        let tgran16 = if s1[1] {
            if lpa2_1 {
                0b0010
            } else {
                0b0001
            }
        } else {
            0b0000
        };
        let tgran64 = if s1[2] { 0b0000 } else { 0b1111 };
        // 0b0000 (as stage 1) only where it says the same as the explicit
        // value would, support and FEAT_LPA2 both.
        let field2 = |rng: &mut Rng, s1: bool, s2: bool, large: bool, large_1: bool| -> u64 {
            if s1 == s2 && (large == large_1 || !s2) && rng.chance(30) {
                0b0000
            } else if !s2 {
                0b0001
            } else if large {
                0b0011
            } else {
                0b0010
            }
        };
        let tgran4_2 = field2(rng, s1[0], s2[0], lpa2_2[0], lpa2_1);
        let tgran16_2 = field2(rng, s1[1], s2[1], lpa2_2[1], lpa2_1);
        let tgran64_2 = field2(rng, s1[2], s2[2], false, false);
        let mmfr0 = parange
            | (0b0010 << 4) // ASIDBits 16
            | (0b0001 << 8) // BigEnd
            | (tgran16 << 20)
            | (tgran64 << 24)
            | (tgran4 << 28)
            | (tgran16_2 << 32)
            | (tgran64_2 << 36)
            | (tgran4_2 << 40);
        let (mmfr1, mmfr2) = (mmfr1(rng), mmfr2(rng));
        if let Some(f) = Features::decode(mmfr0, mmfr1, mmfr2) {
            return f;
        }
    }
}

/// VTCR_EL2.SL0 (and SL2, DS for level -1) bits for a start level.
fn sl_bits(granule: Granule, start: i32) -> u64 {
    match (granule, start) {
        (Granule::K4, -1) => (1 << 33) | (1 << 32),
        (Granule::K4, 0) => 2 << 6,
        (Granule::K4, 1) => 1 << 6,
        (Granule::K4, 2) => 0,
        (Granule::K4, 3) => 3 << 6,
        (_, s) => ((3 - s) as u64) << 6,
    }
}

/// A VTCR_EL2 value, mostly one the model accepts.
fn gen_vtcr(rng: &mut Rng, f: &Features) -> u64 {
    let common = |rng: &mut Rng| -> u64 {
        let mut v = rng.bits(13, 8); // IRGN0, ORGN0, SH0
        v |= rng.bits(18, 16); // PS
        if rng.chance(60) {
            v |= 1 << 21; // HA
        }
        if rng.chance(55) {
            v |= 1 << 22; // HD
        }
        if rng.chance(50) {
            v |= 1 << 44; // HAFT
        }
        if rng.chance(5) {
            // Fields of features not exposed (VS, NSW/NSA, AssuredOnly,
            // TL0/TL1, S2PIE, S2POE, D128, GCSH, HDBSS): no effect.
            v |= rng.next_u64()
                & ((1 << 19)
                    | (3 << 29)
                    | (0xf << 34)
                    | (1 << 38)
                    | (1 << 40)
                    | (1 << 41)
                    | (1 << 45));
        }
        v
    };
    if rng.chance(6) {
        // Anything at all in the fields that matter.
        return common(rng) | rng.bits(7, 0) | rng.bits(15, 14) | rng.bits(33, 32);
    }
    let granules: Vec<Granule> = [Granule::K4, Granule::K16, Granule::K64]
        .into_iter()
        .filter(|g| f.has_granule(*g))
        .collect();
    // Mostly a supported granule; now and then the reserved TG0 or an
    // unsupported granule, which decode to the one the walk then uses.
    let tg0 = match rng.below(100) {
        0..=3 => 0b11,
        4..=7 => rng.below(3),
        _ => rng.pick(&granules).tg0(),
    };
    let granule = decode_tg0(f, tg0);
    let mut vtcr = common(rng) | (tg0 << 14);
    if f.lpa2(granule) && rng.chance(60) {
        vtcr |= 1 << 32; // DS
    } else if f.lpa2_at_stage_1(granule) && rng.chance(50) {
        // DS RES0 where an L1 reading stage 1's FEAT_LPA2 would set it
        // (hv's L1).
        vtcr |= 1 << 32;
    } else if rng.chance(8) {
        // DS where it has no effect: 64KB granule or no FEAT_LPA2 at
        // stage 2 for this granule (possibly with it at stage 1).
        vtcr |= 1 << 32;
    }
    // Pick a start level and an input size it accepts, within T0SZ limits.
    for _ in 0..20 {
        let start = match granule {
            // Level -1 (DS = 1, PAMax 52) is the rarest setting: favour it.
            Granule::K4 if bit(vtcr, 32) && f.pamax == 52 => rng.pick(&[-1, -1, -1, 0, 1, 2, 3]),
            Granule::K4 => rng.pick(&[-1, 0, 0, 1, 1, 2, 3]),
            Granule::K16 => rng.pick(&[0, 1, 1, 2, 2, 3]),
            Granule::K64 => rng.pick(&[1, 2, 2, 3]),
        };
        let trial = (vtcr & !((3 << 6) | (1 << 33))) | (sl_bits(granule, start) & !(1 << 32));
        let trial = if start == -1 {
            trial | (1 << 33)
        } else {
            trial
        };
        // SL2 where it has no effect (16KB, 64KB, or DS = 0).
        let trial = if start != -1 && granule != Granule::K4 && rng.chance(8) {
            trial | (1 << 33)
        } else {
            trial
        };
        let p = WalkParams::new(f, trial);
        // Now and then a start level S2InvalidSL refuses for this CPU
        // (PAMax or FEAT_TTST too small), with an input size it would fit.
        if p.start_level() != Some(start) || (s2_invalid_sl(f, &p) && !rng.chance(15)) {
            continue;
        }
        let lsb = granule.level_lsb(start);
        let lo_ia = (lsb + 1).max(64 - max_txsz(f, p.granule));
        let hi_ia = (lsb + granule.stride() + 4).min(64 - s2_min_txsz(f, &p));
        if lo_ia > hi_ia {
            continue;
        }
        // Bias towards large inputs (deep walks), sometimes concatenation.
        let iasize = if rng.chance(50) {
            hi_ia.min(lsb + granule.stride()).max(lo_ia)
        } else {
            rng.range(lo_ia as u64, hi_ia as u64) as u32
        };
        let t0sz = 64 - iasize as u64;
        let v = (trial & !0x3f) | t0sz;
        let p = WalkParams::new(f, v);
        if !s2_inconsistent_sl(&p) {
            return if rng.chance(2) {
                v ^ (1 << rng.below(6))
            } else {
                v
            };
        }
    }
    vtcr | rng.bits(7, 0)
}

/// Table descriptor pointing at `table`, in the format `p` selects.
fn table_descriptor(f: &Features, p: &WalkParams, table: u64, rng: &mut Rng) -> u64 {
    let mut d = 0b11 | (bits(table, 47, p.granule.bits()) << p.granule.bits());
    d |= high_oa_bits(f, p, table);
    if rng.chance(15) {
        // Bits a stage-2 table descriptor ignores (58:52, 11:10; AF unless HAFT).
        d |= rng.bits(58, 52) | rng.bits(11, 10);
        if !p.ds {
            d |= rng.bits(9, 2);
        } else {
            d |= rng.bits(7, 2);
        }
    } else if rng.chance(30) {
        d |= 1 << 10; // AF already set (FEAT_HAFT)
    }
    if rng.chance(5) {
        // Stage-1 table attributes (63:59) and bit 50: not used at stage 2.
        d |= rng.bits(63, 59) | rng.bits(50, 50);
    }
    if !high_oa_expressible(f, p) && rng.chance(5) {
        // Bits 15:12 (64KB) or 49:48 (4KB, 16KB) hold no address here.
        d |= if p.granule == Granule::K64 {
            rng.bits(15, 12)
        } else {
            rng.bits(49, 48)
        };
    }
    d
}

/// OA[51:48] placed in a descriptor where the format keeps them.
fn high_oa_bits(f: &Features, p: &WalkParams, address: u64) -> u64 {
    let high = bits(address, 51, 48);
    if p.granule == Granule::K64 && f.pamax >= 52 {
        high << 12
    } else if p.ds {
        (bits(high, 3, 2) << 8) | (bits(high, 1, 0) << 48)
    } else {
        0
    }
}

/// A block or page descriptor at `level` with random attributes.
fn leaf_descriptor(f: &Features, p: &WalkParams, level: i32, rng: &mut Rng) -> u64 {
    let oasize = oa_size(f, p);
    let size_bits = p.granule.level_lsb(level);
    let mut oa = rng.below(1u64 << oasize) & !((1u64 << size_bits) - 1);
    if rng.chance(6) {
        // Beyond the output size.
        oa |= 1u64 << rng.range(oasize.min(51) as u64, 51);
    }
    let mut d = if level == 3 { 0b11 } else { 0b01 };
    d |= bits(oa, 47, size_bits) << size_bits;
    d |= high_oa_bits(f, p, oa);
    if !high_oa_expressible(f, p) && rng.chance(5) {
        // Bits 15:12 (64KB) or 49:48 hold nothing here.
        d |= if p.granule == Granule::K64 {
            rng.bits(15, 12)
        } else {
            rng.bits(49, 48)
        };
    }
    if level < 3 && rng.chance(5) {
        d |= rng.bits(size_bits - 1, 12.max(p.granule.bits())) & !(1 << 16); // RES0 OA bits
    }
    d |= if rng.chance(55) {
        0xf << 2
    } else {
        rng.bits(5, 2)
    }; // MemAttr
    d |= if rng.chance(45) {
        3 << 6
    } else {
        rng.bits(7, 6)
    }; // S2AP
    if !p.ds {
        d |= rng.bits(9, 8); // SH
    }
    if rng.chance(82) {
        d |= 1 << 10; // AF
    }
    d |= rng.bits(11, 11); // FnXS
    if rng.chance(40) {
        d |= 1 << 51; // DBM
    }
    if rng.chance(12) {
        d |= 1 << 52; // Contiguous
    }
    if rng.chance(50) {
        d |= rng.bits(54, 53); // XN, XNX
    }
    if level < 3 && rng.chance(6) {
        d |= 1 << 16; // nT
    }
    if rng.chance(10) {
        d |= rng.bits(58, 55); // software use
    }
    if rng.chance(5) {
        d |= rng.bits(63, 59) | rng.bits(50, 50); // PBHA, bit 63, bit 50
    }
    d
}

fn high_oa_expressible(f: &Features, p: &WalkParams) -> bool {
    (p.granule == Granule::K64 && f.pamax >= 52) || p.ds
}

/// Writes descriptors along `ipa`'s path from `table` at `start`,
/// following descriptors written earlier and adding new ones. Returns the
/// level of the last descriptor on the path.
#[allow(clippy::too_many_arguments)]
fn build_path(
    rng: &mut Rng,
    b: &mut Builder,
    f: &Features,
    p: &WalkParams,
    tree: usize,
    ipa: u64,
    mut table: u64,
    start: i32,
) -> i32 {
    let oasize = oa_size(f, p);
    let granule = p.granule;
    let mut level = start;
    while level <= 3 {
        let lsb = granule.level_lsb(level);
        // The start table is indexed by every IPA bit above lsb
        // (AArch64.S2SLTTEntryAddress); the others by one stride.
        let width = if level == start {
            p.iasize() - lsb
        } else {
            granule.stride()
        };
        let entry = table | (bits(ipa, lsb + width - 1, lsb) << 3);
        if b.words.contains_key(&entry) {
            match b.links.get(&entry) {
                Some(next) => {
                    table = *next;
                    level += 1;
                    continue;
                }
                None => return level,
            }
        }
        let can_block = level < 3 && block_supported(f, p, level);
        let choice = if level == 3 {
            rng.weighted(&[0, 0, 0, 86, 5, 5, 0, 0, 4])
        } else {
            // table, shared table, hole, leaf, reserved, invalid,
            // out-of-range table, nothing, garbage
            rng.weighted(&[62, 5, 3, if can_block { 12 } else { 0 }, 3, 5, 4, 3, 2])
        };
        match choice {
            0 | 1 => {
                let shared: Vec<u64> = b
                    .tables
                    .iter()
                    .filter(|(t, l, _)| *t == tree && *l == level + 1)
                    .map(|(_, _, a)| *a)
                    .collect();
                let next = if choice == 1 && !shared.is_empty() {
                    rng.pick(&shared)
                } else {
                    match b.alloc(rng, 1 << granule.bits(), granule.bits(), oasize) {
                        Some(a) => {
                            b.tables.push((tree, level + 1, a));
                            a
                        }
                        None => return level,
                    }
                };
                b.put(entry, table_descriptor(f, p, next, rng));
                b.links.insert(entry, next);
                table = next;
                level += 1;
            }
            2 => {
                let hole = b.hole(rng, oasize, granule.bits());
                b.put(entry, table_descriptor(f, p, hole, rng));
                return level;
            }
            3 => {
                b.put(entry, leaf_descriptor(f, p, level, rng));
                return level;
            }
            4 => {
                // A block where none is allowed, or bits 1:0 = 0b01 at level 3.
                let d = leaf_descriptor(f, p, level.clamp(0, 2), rng);
                b.put(entry, (d & !0b11) | 0b01);
                return level;
            }
            5 => {
                b.put(entry, rng.next_u64() & !1);
                return level;
            }
            8 => {
                b.put(entry, rng.next_u64() | 1);
                return level;
            }
            6 => {
                let beyond = 1u64 << rng.range(oasize.min(51) as u64, 51);
                let table_addr = align(rng.below(1 << 30), granule.bits()) | beyond;
                let mut d = table_descriptor(f, p, table_addr, rng);
                if !high_oa_expressible(f, p) && beyond >> 48 != 0 {
                    d |= 1 << 47;
                }
                b.put(entry, d);
                return level;
            }
            _ => return level,
        }
    }
    3
}

/// A configuration and its table tree (fewer paths if memory runs out).
fn gen_config(rng: &mut Rng, b: &mut Builder, f: &Features, tree: usize) -> Config {
    let vtcr = gen_vtcr(rng, f);
    let p = WalkParams::new(f, vtcr);
    // A tree also for a start level S2InvalidSL refuses on this CPU, so
    // that a walker taking it anyway gives a wrong translation.
    let valid =
        p.start_level().is_some() && p.txsz >= 12 && p.txsz <= 48 && !s2_inconsistent_sl(&p);
    let oasize = oa_size(f, &p);
    let mut targets = Vec::new();
    if !valid {
        let vttbr = b.alloc(rng, 4096, 12, oasize.min(48)).unwrap_or(0) | rng.bits(63, 48);
        return Config {
            vtcr,
            vttbr,
            targets,
        };
    }
    let start = p.start_level().expect("valid");
    let is52 = baddr_is_52_bit(f, &p);
    let tbits = if is52 {
        start_table_bits(&p).max(6)
    } else {
        start_table_bits(&p)
    };
    // Now and then the start table lies outside every memslot (more often
    // for the rare level -1, so its External abort code 0x13 is seen).
    let base = if rng.chance(if start == -1 { 15 } else { 4 }) {
        Some(b.hole(rng, oasize, tbits))
    } else {
        b.alloc(rng, 1 << tbits, tbits, oasize)
    };
    let Some(base) = base else {
        return Config {
            vtcr,
            vttbr: rng.next_u64(),
            targets,
        };
    };
    b.tables.push((tree, start, base));
    let mut vttbr = if is52 {
        (bits(base, 47, 6) << 6) | (bits(base, 51, 48) << 2)
    } else {
        bits(base, 47, 1) << 1
    };
    vttbr |= rng.bits(63, 48) | rng.bits(0, 0); // VMID, CnP
    if rng.chance(8) && tbits > 6 {
        vttbr |= rng.bits(tbits - 1, 6); // misaligned: RES0 bits set
    }
    if rng.chance(6) {
        vttbr |= rng.bits(5, 1); // RES0 (or BADDR[51:48]) bits
    }
    if rng.chance(5) && oasize < 48 {
        vttbr |= 1 << rng.range(oasize as u64, 47); // BADDR beyond the output size
    }
    let n = rng.range(6, 24);
    for _ in 0..n {
        let ipa = rng.below(1u64 << p.iasize());
        let last = build_path(rng, b, f, &p, tree, ipa, base, start);
        targets.push((ipa, p.granule.level_lsb(last)));
    }
    Config {
        vtcr,
        vttbr,
        targets,
    }
}

/// A world: ID registers, memory with `1..=3` table trees (plus a variant
/// of one with other HA/HD/HAFT/PS/SH settings), and `requests` requests.
pub fn gen_world(rng: &mut Rng, requests: usize) -> World {
    let features = gen_features(rng);
    // Usually a few large memslots; now and then many small ones (a
    // table per slot), so slot lookup sees dozens of neighbours.
    let mut b = if rng.chance(15) {
        Builder {
            max_slots: 64,
            reuse_percent: 10,
            ..Builder::default()
        }
    } else {
        Builder {
            max_slots: 6,
            reuse_percent: 75,
            ..Builder::default()
        }
    };
    let trees = rng.range(1, 3) as usize;
    let mut configs: Vec<Config> = (0..trees)
        .map(|t| gen_config(rng, &mut b, &features, t))
        .collect();
    if rng.chance(50) {
        let mut variant = configs[0].clone();
        variant.vtcr ^=
            rng.next_u64() & ((1 << 21) | (1 << 22) | (1 << 44) | (7 << 16) | (3 << 12));
        configs.push(variant);
    }
    if b.slots.iter().all(|s| s.used == 0) {
        // s2walk needs at least one memslot.
        b.alloc(rng, 4096, 12, 48);
    }
    let memory = b.finish();

    let mut out: Vec<Request> = Vec::with_capacity(requests);
    for _ in 0..requests {
        let access = rng.pick(&Access::ALL);
        if !out.is_empty() && rng.chance(22) {
            // The same walk again: sees what earlier updates did. Sometimes
            // a burst of them in consecutive lines, which a batch walks in
            // the same level-by-level round.
            let previous = out[rng.below(out.len() as u64) as usize];
            let burst = if rng.chance(30) { rng.range(2, 6) } else { 1 };
            for _ in 0..burst {
                let access = if rng.chance(40) {
                    Access::Write
                } else {
                    rng.pick(&Access::ALL)
                };
                out.push(Request { access, ..previous });
            }
            continue;
        }
        let config = &configs[rng.below(configs.len() as u64) as usize];
        let iasize = 64 - bits(config.vtcr, 5, 0) as u32;
        let inside = |v: u64| {
            if iasize >= 64 {
                v
            } else {
                v & ((1u64 << iasize) - 1)
            }
        };
        let ipa = match rng.weighted(&[62, 10, 8, 4, 1]) {
            // Within the block or page the path was built for.
            0 if !config.targets.is_empty() => {
                let (target, span) = rng.pick(&config.targets);
                target ^ (rng.next_u64() & ((1u64 << span) - 1))
            }
            // A neighbour: shares the upper levels.
            1 if !config.targets.is_empty() => {
                let (target, _) = rng.pick(&config.targets);
                let low = rng.range(0, 40) as u32;
                inside(target ^ (rng.next_u64() & ((1u64 << low) - 1)))
            }
            0..=2 => inside(rng.next_u64()),
            3 if iasize < 56 => inside(rng.next_u64()) | (1u64 << rng.range(iasize as u64, 55)),
            _ => rng.next_u64(),
        };
        out.push(Request {
            vtcr: config.vtcr,
            vttbr: config.vttbr,
            ipa,
            access,
        });
    }
    World {
        features,
        big_endian: rng.chance(12),
        memory,
        requests: out,
    }
}
