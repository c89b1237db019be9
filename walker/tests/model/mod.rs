//! A second, deliberately plain transliteration of the Arm ARM stage-2
//! pseudocode (AArch64.S2Translate and what it calls), written separately
//! from the walker for differential testing. It reads memory through a
//! closure, never writes, and reports the updates the walk would make:
//! the leaf's, and (FEAT_HAFT) those of table descriptors, which it keeps
//! in an overlay so that its own later reads see them.
//! IMPLEMENTATION DEFINED choices are the walker's documented ones.

/// x<hi:lo>
fn bits(x: u64, hi: u32, lo: u32) -> u64 {
    if lo >= 64 {
        return 0;
    }
    let width = hi.min(63) - lo + 1;
    if width >= 64 {
        x >> lo
    } else {
        (x >> lo) & ((1u64 << width) - 1)
    }
}

fn bit(x: u64, n: u32) -> bool {
    (x >> n) & 1 == 1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Translation,
    AddressSize,
    AccessFlag,
    Permission,
    ExternalAbort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok {
        oa: u64,
        level: i32,
        /// (descriptor address, new descriptor value) when the walk updates.
        update: Option<(u64, u64)>,
    },
    Fault {
        kind: Kind,
        level: i32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acc {
    Read,
    Write,
    /// AccessType_TTW with `write`: a stage-1 descriptor update.
    TtwWrite,
    Exec {
        el0: bool,
    },
    /// AccessType_DC by VA (no FEAT_CMOW): `invalidate` is DC IVAC.
    Dc {
        invalidate: bool,
        el0: bool,
    },
}

pub struct Cpu {
    pub mmfr0: u64,
    pub mmfr1: u64,
    pub mmfr2: u64,
}

impl Cpu {
    fn pa_max(&self) -> u32 {
        [32, 36, 40, 42, 44, 48, 52][bits(self.mmfr0, 3, 0) as usize]
    }

    /// (supported, 52-bit) at stage 2 for a granule of `gbits`.
    fn s2_granule(&self, gbits: u32) -> (bool, bool) {
        let (s1_lsb, s2_lsb) = match gbits {
            12 => (28, 40),
            14 => (20, 32),
            _ => (24, 36),
        };
        let s1 = bits(self.mmfr0, s1_lsb + 3, s1_lsb);
        let s1v = match gbits {
            12 => (s1 != 0xf, s1 == 1),
            14 => (s1 != 0, s1 == 2),
            _ => (s1 != 0xf, false),
        };
        match bits(self.mmfr0, s2_lsb + 3, s2_lsb) {
            0 => s1v,
            1 => (false, false),
            2 => (true, false),
            _ => (true, true),
        }
    }

    fn hafdbs(&self) -> u64 {
        bits(self.mmfr1, 3, 0)
    }

    fn xnx(&self) -> bool {
        bits(self.mmfr1, 31, 28) == 1
    }

    fn ttst(&self) -> bool {
        bits(self.mmfr2, 31, 28) == 1
    }
}

struct Params {
    gbits: u32,
    txsz: u32,
    sl0: u64,
    sl2: bool,
    ps: u64,
    ds: bool,
    ha: bool,
    hd: bool,
    haft: bool,
}

fn s2_decode_tg0(cpu: &Cpu, tg0: u64) -> u32 {
    let programmed = match tg0 {
        0 => 12,
        1 => 16,
        2 => 14,
        _ => 0,
    };
    if programmed != 0 && cpu.s2_granule(programmed).0 {
        return programmed;
    }
    for g in [12, 14, 16] {
        if cpu.s2_granule(g).0 {
            return g;
        }
    }
    12
}

fn s2_ttw_params(cpu: &Cpu, vtcr: u64) -> Params {
    let gbits = s2_decode_tg0(cpu, bits(vtcr, 15, 14));
    let lpa2 = cpu.s2_granule(gbits).1 && gbits != 16;
    let ds = lpa2 && bit(vtcr, 32);
    let ha = cpu.hafdbs() >= 1 && bit(vtcr, 21);
    Params {
        gbits,
        txsz: bits(vtcr, 5, 0) as u32,
        sl0: bits(vtcr, 7, 6),
        sl2: gbits == 12 && bit(vtcr, 33) && ds,
        ps: bits(vtcr, 18, 16),
        ds,
        ha,
        hd: ha && cpu.hafdbs() >= 2 && bit(vtcr, 22),
        // FEAT_HAFT (HAFDBS 0b0011): VTCR_EL2.HAFT is bit 44, effective
        // only with HA.
        haft: ha && cpu.hafdbs() >= 3 && bit(vtcr, 44),
    }
}

fn stride(p: &Params) -> u32 {
    p.gbits - 3
}

fn s2_start_level(p: &Params) -> i32 {
    if p.gbits == 12 {
        match (p.sl2, p.sl0) {
            (false, 0) => 2,
            (false, 1) => 1,
            (false, 2) => 0,
            (false, 3) => 3,
            _ => -1,
        }
    } else {
        3 - p.sl0 as i32
    }
}

fn s2_invalid_sl(cpu: &Cpu, p: &Params) -> bool {
    match p.gbits {
        12 => match (p.sl2, p.sl0) {
            (true, 0) => cpu.pa_max() < 52,
            (true, _) => true,
            (false, 2) => cpu.pa_max() < 44,
            (false, 3) => !cpu.ttst(),
            _ => false,
        },
        14 => match p.sl0 {
            // DDI 0487 M.a.a (v9.4 had no PAMax term here).
            3 => !p.ds || cpu.pa_max() < 52,
            2 => cpu.pa_max() < 42,
            _ => false,
        },
        _ => match p.sl0 {
            3 => true,
            2 => cpu.pa_max() < 44,
            _ => false,
        },
    }
}

fn s2_inconsistent_sl(p: &Params) -> bool {
    let levels = 3 - s2_start_level(p);
    let sl_min = levels * stride(p) as i32 + p.gbits as i32 + 1;
    let sl_max = sl_min + (stride(p) as i32 - 1) + 4;
    let ia = 64 - p.txsz as i32;
    ia < sl_min || ia > sl_max
}

fn s2_tx_sz_faults(cpu: &Cpu, p: &Params) -> bool {
    let ips = if cpu.pa_max() == 52 {
        if p.gbits == 16 || p.ds {
            52
        } else {
            48
        }
    } else {
        cpu.pa_max()
    };
    let min = 64 - ips;
    let max = if cpu.ttst() {
        if p.gbits == 16 {
            47
        } else {
            48
        }
    } else {
        39
    };
    p.txsz < min || p.txsz > max
}

fn physical_address_size(cpu: &Cpu, p: &Params) -> u32 {
    let ps = [32, 36, 40, 42, 44, 48, 52, 56][p.ps as usize];
    let lpa = cpu.pa_max() == 52;
    let max = if lpa && (p.gbits == 16 || cpu.s2_granule(p.gbits).1) {
        cpu.pa_max().min(52)
    } else {
        cpu.pa_max().min(48)
    };
    ps.min(max)
}

fn oa_out_of_range(address: u64, oasize: u32) -> bool {
    bits(address, 63, oasize) != 0
}

fn align(x: u64, log2: u32) -> u64 {
    x & !((1u64 << log2) - 1)
}

fn s2_tt_base_address(cpu: &Cpu, p: &Params, vttbr: u64) -> u64 {
    let ia = 64 - p.txsz;
    let levels = (3 - s2_start_level(p)) as u32;
    let mut tsize = ia - (levels * stride(p) + p.gbits) + 3;
    let base = if p.ds || (p.gbits == 16 && p.ps == 6 && cpu.pa_max() == 52) {
        tsize = tsize.max(6);
        (bits(vttbr, 5, 2) << 48) | (bits(vttbr, 47, 6) << 6)
    } else {
        bits(vttbr, 47, 1) << 1
    };
    align(base, tsize)
}

fn high_bits(cpu: &Cpu, p: &Params, desc: u64) -> u64 {
    if p.gbits == 16 && cpu.pa_max() >= 52 {
        bits(desc, 15, 12) << 48
    } else if p.ds {
        (bits(desc, 9, 8) << 50) | (bits(desc, 49, 48) << 48)
    } else {
        0
    }
}

fn translation_size(p: &Params, level: i32) -> u32 {
    p.gbits + (3 - level) as u32 * stride(p)
}

fn block_desc_supported(cpu: &Cpu, p: &Params, level: i32) -> bool {
    match p.gbits {
        12 => (level == 0 && p.ds) || level == 1 || level == 2,
        14 => (level == 1 && p.ds) || level == 2,
        _ => (level == 1 && cpu.pa_max() >= 52) || level == 2,
    }
}

fn contiguous_size(p: &Params, level: i32, desc: u64) -> u32 {
    // RES0 on 16KB/64KB level-1 and 4KB level-0 blocks.
    let res0 = (p.gbits != 12 && level == 1) || (p.gbits == 12 && level == 0);
    if res0 || !bit(desc, 52) {
        return 0;
    }
    match p.gbits {
        12 => 4,
        14 => {
            if level == 2 {
                5
            } else {
                7
            }
        }
        _ => 5,
    }
}

/// What a walk of the model did: its outcome and the table descriptors
/// it set AF in, in order: (address, new descriptor value).
pub struct Walk {
    pub outcome: Outcome,
    pub table_updates: Vec<(u64, u64)>,
}

/// AArch64.S2Translate for one access, with memory read through `read`
/// (None = outside memory; raw = native-endian value of the 8 bytes) and
/// `writable` telling which descriptors a hardware update may write.
#[allow(clippy::too_many_arguments)]
pub fn s2_translate(
    cpu: &Cpu,
    vtcr: u64,
    vttbr: u64,
    big_endian: bool,
    ipa: u64,
    acc: Acc,
    read: &dyn Fn(u64) -> Option<u64>,
    writable: &dyn Fn(u64) -> bool,
) -> Walk {
    let mut table_updates = Vec::new();
    let outcome = s2_translate_updating(
        cpu,
        vtcr,
        vttbr,
        big_endian,
        ipa,
        acc,
        read,
        writable,
        &mut table_updates,
    );
    Walk {
        outcome,
        table_updates,
    }
}

#[allow(clippy::too_many_arguments)]
fn s2_translate_updating(
    cpu: &Cpu,
    vtcr: u64,
    vttbr: u64,
    big_endian: bool,
    ipa: u64,
    acc: Acc,
    read: &dyn Fn(u64) -> Option<u64>,
    writable: &dyn Fn(u64) -> bool,
    table_updates: &mut Vec<(u64, u64)>,
) -> Outcome {
    let p = s2_ttw_params(cpu, vtcr);
    let fault = |kind, level| Outcome::Fault { kind, level };
    if s2_tx_sz_faults(cpu, &p) {
        return fault(Kind::Translation, 0);
    }
    if s2_invalid_sl(cpu, &p) || s2_inconsistent_sl(&p) {
        return fault(Kind::Translation, 0);
    }
    let ia = 64 - p.txsz;
    if bits(ipa, 63, ia) != 0 {
        return fault(Kind::Translation, 0);
    }
    let oasize = physical_address_size(cpu, &p);
    let start = s2_start_level(&p);
    let base = s2_tt_base_address(cpu, &p, vttbr);
    let lsb = translation_size(&p, start);
    let mut desc_address = base | (bits(ipa, ia - 1, lsb) << 3);
    if oa_out_of_range(desc_address, oasize) {
        return fault(Kind::AddressSize, 0);
    }
    let mut level = start;
    let desc = loop {
        // This walk's own table updates first (a table may hold itself).
        let own = table_updates
            .iter()
            .rev()
            .find(|(a, _)| *a == desc_address)
            .map(|(_, value)| *value);
        let desc = match own {
            Some(value) => value,
            None => {
                let Some(raw) = read(desc_address) else {
                    return fault(Kind::ExternalAbort, level);
                };
                if big_endian {
                    u64::from_be_bytes(raw.to_ne_bytes())
                } else {
                    u64::from_le_bytes(raw.to_ne_bytes())
                }
            }
        };
        let kind = bits(desc, 1, 0);
        if kind == 3 && level == 3 {
            break desc;
        } else if kind == 3 {
            let table = (bits(desc, 47, p.gbits) << p.gbits) | high_bits(cpu, &p, desc);
            let next = level + 1;
            let lsb = translation_size(&p, next);
            let address = table | (bits(ipa, lsb + stride(&p) - 1, lsb) << 3);
            if oa_out_of_range(address, oasize) {
                return fault(Kind::AddressSize, level);
            }
            // walkparams.haft: new_desc<10> = '1', written by
            // MemSwapTableDesc before the next lookup; a refused write is
            // an external abort at this level.
            if p.haft && !bit(desc, 10) {
                if !writable(desc_address) {
                    return fault(Kind::ExternalAbort, level);
                }
                table_updates.push((desc_address, desc | (1 << 10)));
            }
            desc_address = address;
            level = next;
        } else if kind == 1 && block_desc_supported(cpu, &p, level) {
            break desc;
        } else {
            return fault(Kind::Translation, level);
        }
    };
    // StageOA
    let tsize = translation_size(&p, level);
    let msb = tsize + contiguous_size(&p, level, desc);
    let leaf = align(bits(desc, 47, 0), tsize) | high_bits(cpu, &p, desc);
    let oa = align(leaf, msb) | bits(ipa, msb - 1, 0);
    if oa_out_of_range(oa, oasize) {
        return fault(Kind::AddressSize, level);
    }
    if !bit(desc, 10) && !p.ha {
        return fault(Kind::AccessFlag, level);
    }
    // S2ApplyOutputPerms + S2CheckPermissions
    let dbm = bit(desc, 51);
    let r = bit(desc, 6);
    let w = bit(desc, 7) || (p.ha && p.hd && dbm);
    let xn = bit(desc, 54);
    let xnx = cpu.xnx() && bit(desc, 53);
    let (px, ux) = match (xn, xnx) {
        (false, false) => (true, true),
        (false, true) => (false, true),
        (true, false) => (false, false),
        (true, true) => (true, false),
    };
    let device = bits(desc, 5, 4) == 0;
    let permitted = match acc {
        Acc::Exec { el0 } => !device && if el0 { ux } else { px },
        Acc::Read => r,
        Acc::Write => w,
        // S2CheckPermissions, AccessType_TTW: `r == '0'`, then
        // `accdesc.write && w == '0'`.
        Acc::TtwWrite => r && w,
        // S2CheckPermissions, AccessType_DC: an invalidate needs W, then
        // at EL0 anything needs R; a clean at EL1 needs nothing.
        Acc::Dc { invalidate, el0 } => (!invalidate || w) && (!el0 || r),
    };
    if !permitted {
        return fault(Kind::Permission, level);
    }
    let mut new = desc;
    if p.ha {
        new |= 1 << 10;
    }
    if p.ha && p.hd && dbm && matches!(acc, Acc::Write | Acc::TtwWrite) {
        new |= 1 << 7;
    }
    Outcome::Ok {
        oa,
        level,
        update: (new != desc).then_some((desc_address, new)),
    }
}
