//! An independent reference decoder of the stage-2 TLBI forms, written from
//! DDI 0487 M.a.a (not from `ipc::tlbi`):
//!
//! * C5.5.13-C5.5.26: the TLBI IPAS2E1 / IPAS2LE1 / RIPAS2E1 / RIPAS2LE1
//!   descriptions (IS, OS, nXS forms) and their `Xt` field tables;
//! * J1.1.3: `AArch64.TLBI_IPAS2` (`r.address = Xt<39:0> : Zeros(12)`,
//!   `r.ttl = Xt<47:44>`), `AArch64.TLBI_RIPAS2` (`r.ttl<1:0> = Xt<38:37>`,
//!   `if !valid then return`), `TLBIRange`, `ResTLBITTL`, `ResTLBIRTTL`,
//!   `DecodeTLBITG`, and the `TLBIOp_IPAS2` / `TLBIOp_RIPAS2` /
//!   `TLBIOp_VMALLS12` / `TLBIOp_ALL` clauses of `TLBIMatch`.
//!
//! The model answers with the *required* scope: the entries the
//! architecture obliges an implementation to remove. It expresses an IPA
//! scope as the 4 KiB pages whose translations go (every stage-2 entry is a
//! whole number of 4 KiB-aligned pages, so "the entry overlaps the range"
//! and "the entry holds one of the pages" are the same test).

/// First IPA beyond the 52-bit space: without FEAT_D128 no stage-2 entry
/// translates an IPA at or above 2^52 (IPA\[55:52\] is RES0).
pub const IPA_SPACE_END: u64 = 1 << 52;
/// Pages in the 52-bit IPA space.
pub const IPA_SPACE_PAGES: u64 = IPA_SPACE_END >> PAGE_SHIFT;
const PAGE_SHIFT: u32 = 12;

/// A translation granule as `DecodeTLBITG` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefGranule {
    K4,
    K16,
    K64,
}

impl RefGranule {
    /// `TGBits`: log2 of the granule size.
    pub const fn bits(self) -> u32 {
        match self {
            RefGranule::K4 => 12,
            RefGranule::K16 => 14,
            RefGranule::K64 => 16,
        }
    }

    /// `DecodeTLBITG`: TG / TTL\[3:2\] = 0b01, 0b10, 0b11; 0b00 names none.
    pub const fn from_tg(tg: u64) -> Option<RefGranule> {
        match tg & 0b11 {
            0b01 => Some(RefGranule::K4),
            0b10 => Some(RefGranule::K16),
            0b11 => Some(RefGranule::K64),
            _ => None,
        }
    }

    pub const fn tg(self) -> u64 {
        match self {
            RefGranule::K4 => 0b01,
            RefGranule::K16 => 0b10,
            RefGranule::K64 => 0b11,
        }
    }
}

/// What L0 exposes to L1, and L1's VTCR_EL2.DS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefFeatures {
    pub feat_ttl: bool,
    pub feat_lpa2: bool,
    pub vtcr_ds: bool,
}

impl RefFeatures {
    /// Every combination of the three bits.
    pub fn all() -> impl Iterator<Item = RefFeatures> {
        (0..8u8).map(|bits| RefFeatures {
            feat_ttl: bits & 1 != 0,
            feat_lpa2: bits & 2 != 0,
            vtcr_ds: bits & 4 != 0,
        })
    }

    /// The RIPAS2 BaseADDR description: "When FEAT_LPA2 is implemented and
    /// VTCR_EL2.DS == 1 ... BaseADDR\[52:16\] for all translation granules".
    /// (The pseudocode's `HasLargeAddress(Regime_EL10)` reads TCR_EL1.DS
    /// instead; the instruction text names VTCR_EL2.DS, the register that
    /// actually configures stage 2, and the model follows the text. DS is
    /// RES0 without FEAT_LPA2, which `HasLargeAddress` also checks first.)
    pub const fn large_address(self) -> bool {
        self.feat_lpa2 && self.vtcr_ds
    }
}

/// The operation, with the levels it reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefOp {
    Vmalls12e1,
    Alle1,
    Ipas2 { last_level: bool },
    Ripas2 { last_level: bool },
}

/// Which leaf entries a TTL hint (or a range TG) still requires to go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefHint {
    /// Entries of every granule and level.
    Any,
    /// Entries of this granule, any level (a range TLBI's TG with TTL 0b00
    /// or a reserved TTL: `TLBIMatch` still requires `DecodeTLBITG(tg) ==
    /// tlb_entry.context.tg`).
    Granule(RefGranule),
    /// Leaf entries of this granule at this level (and the non-leaf entries
    /// above it, which the model does not distinguish further).
    Leaf(RefGranule, u8),
}

impl RefHint {
    /// Whether every entry `self` requires is also required by `wider`.
    pub fn within(self, wider: RefHint) -> bool {
        match (wider, self) {
            (RefHint::Any, _) => true,
            (RefHint::Granule(g), RefHint::Granule(h)) => g == h,
            (RefHint::Granule(g), RefHint::Leaf(h, _)) => g == h,
            (RefHint::Leaf(g, l), RefHint::Leaf(h, m)) => g == h && l == m,
            _ => false,
        }
    }
}

/// Half-open page interval `[first, end)` in 4 KiB pages, inside the 52-bit
/// IPA space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pages {
    pub first: u64,
    pub end: u64,
}

impl Pages {
    /// The pages an IPA-range scope `[start, end)` (byte addresses, any u64,
    /// possibly beyond the IPA space) reaches inside the 52-bit space; `None`
    /// when it reaches none.
    pub fn of_range(start: u64, end: u64) -> Option<Pages> {
        let first = start >> PAGE_SHIFT;
        let end = end.div_ceil(1 << PAGE_SHIFT).min(IPA_SPACE_PAGES);
        (first < end).then_some(Pages { first, end })
    }

    pub fn contains(self, inner: Pages) -> bool {
        self.first <= inner.first && inner.end <= self.end
    }
}

/// The required scope of one TLBI, for the current VMID unless stated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefScope {
    /// No entry is required to go.
    Nothing,
    /// Every stage-1 and stage-2 entry of the current VMID (VMALLS12E1).
    Vmid,
    /// Every EL1&0 entry of every VMID (ALLE1).
    AllVmids,
    /// Stage-2 entries translating these pages.
    Ipa {
        pages: Pages,
        last_level: bool,
        hint: RefHint,
    },
}

/// Why the required scope of a range TLBI is empty although TG names a
/// granule: which reading left it empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmptyRange {
    /// `TLBIRange` replicates Xt\<36\> above BaseADDR's top bit; with
    /// Xt\<36\> = 1 the start has IPA\[55:52\] set, so no IPA of the 52-bit
    /// space is in `[start, end)`. The field description places BaseADDR
    /// without that extension: for 4K / 16K without DS the literal start is
    /// then 2^48 / 2^50 and above, which the pseudocode excludes.
    SignExtendedAbove52 {
        literal_start: u64,
        literal_end: u64,
    },
}

/// The reference decoding of `Xt` for `op`.
pub fn decode(op: RefOp, xt: u64, features: RefFeatures) -> RefScope {
    match op {
        // TLBI VMALLS12E1 / ALLE1 {, <Xt>}: Xt is not an operand.
        RefOp::Vmalls12e1 => RefScope::Vmid,
        RefOp::Alle1 => RefScope::AllVmids,
        RefOp::Ipas2 { last_level } => decode_ipas2(xt, features, last_level),
        RefOp::Ripas2 { last_level } => decode_ripas2(xt, features, last_level).0,
    }
}

/// `AArch64.TLBI_IPAS2`: `r.address = ZeroExtend(Xt<39:0> : Zeros(12))`
/// (IPA\[55:52\] in Xt\<43:40\> exists only with FEAT_D128 and is not read
/// by the 64-bit form); TTL = Xt\<47:44\> with FEAT_TTL, RES0 otherwise.
fn decode_ipas2(xt: u64, features: RefFeatures, last_level: bool) -> RefScope {
    let address = (xt & ((1 << 40) - 1)) << PAGE_SHIFT;
    let pages = Pages::of_range(address, address + 1).expect("IPAS2 addresses lie below 2^52");
    let hint = if features.feat_ttl {
        ipas2_ttl_hint(((xt >> 44) & 0xf) as u8, features.feat_lpa2)
    } else {
        RefHint::Any
    };
    RefScope::Ipa {
        pages,
        last_level,
        hint,
    }
}

/// The TTL table of IPAS2*: `ResTLBITTL` lists the encodings that mean "no
/// information" (0b00xx; 0b0100 and 0b1001 without FEAT_LPA2; 0b1000 and
/// 0b1100 always, levels the 16K / 64K granules do not have); every other
/// value names TTL\[3:2\]'s granule and TTL\[1:0\]'s level.
pub fn ipas2_ttl_hint(ttl: u8, feat_lpa2: bool) -> RefHint {
    let reserved = match ttl {
        0b0000..=0b0011 => true,
        0b0100 | 0b1001 => !feat_lpa2,
        0b1000 | 0b1100 => true,
        _ => false,
    };
    if reserved {
        return RefHint::Any;
    }
    let granule = RefGranule::from_tg(u64::from(ttl >> 2)).expect("TTL[3:2] != 0b00 here");
    RefHint::Leaf(granule, ttl & 0b11)
}

/// The range TLBI's TTL (`ResTLBIRTTL`): 0b00 is no information; 0b01 is
/// reserved for the 16K granule without FEAT_LPA2; otherwise a level. The
/// field exists with FEAT_TLBIRANGE itself, whatever FEAT_TTL says.
pub fn ripas2_ttl_hint(granule: RefGranule, ttl: u8, feat_lpa2: bool) -> RefHint {
    let reserved = match ttl & 0b11 {
        0b00 => true,
        0b01 => granule == RefGranule::K16 && !feat_lpa2,
        _ => false,
    };
    if reserved {
        RefHint::Granule(granule)
    } else {
        RefHint::Leaf(granule, ttl & 0b11)
    }
}

/// `TLBIRange` as the start and end address (64-bit values, as the
/// pseudocode computes them); `None` for TG = 0b00 (`valid = FALSE`, and
/// `AArch64.TLBI_RIPAS2` returns without invalidating anything).
pub fn tlbi_range(xt: u64, features: RefFeatures) -> Option<(RefGranule, u64, u64)> {
    let granule = RefGranule::from_tg(xt >> 46)?;
    let scale = (xt >> 44) & 0b11;
    let num = (xt >> 39) & 0b1_1111;
    let base = xt & ((1 << 37) - 1);
    let base_top = (xt >> 36) & 1;
    // start_address<hi:lo> = Xt<36:0>; start_address<63:hi+1> = Replicate(Xt<36>).
    let lo = match granule {
        RefGranule::K64 => 16,
        _ if features.large_address() => 16,
        g => g.bits(),
    };
    let hi = lo + 36;
    let mut start = base << lo;
    if base_top == 1 {
        start |= !0u64 << (hi + 1);
    }
    let range = (num + 1) << (5 * scale + 1 + u64::from(granule.bits()));
    let mut end = start.wrapping_add(range);
    // Without FEAT_LVA3: an end whose bit 52 differs from the start's
    // saturates to Replicate(start<52>, 12) : Ones(52).
    let bit52 = |a: u64| (a >> 52) & 1;
    if bit52(end) != bit52(start) {
        let ones52 = (1u64 << 52) - 1;
        end = if bit52(start) == 1 { !0 } else { ones52 };
    }
    Some((granule, start, end))
}

/// RIPAS2*: the required scope, and when it is empty for a named granule,
/// why (see [`EmptyRange`]).
pub fn decode_ripas2(
    xt: u64,
    features: RefFeatures,
    last_level: bool,
) -> (RefScope, Option<EmptyRange>) {
    let Some((granule, start, end)) = tlbi_range(xt, features) else {
        return (RefScope::Nothing, None);
    };
    // TLBIMatch compares address<55:0>: an entry is in scope when
    // start <= entry_end && end > entry_start.
    let mask56 = (1u64 << 56) - 1;
    let (start56, end56) = (start & mask56, end & mask56);
    let hint = ripas2_ttl_hint(granule, ((xt >> 37) & 0b11) as u8, features.feat_lpa2);
    match Pages::of_range(start56, end56) {
        Some(pages) => (
            RefScope::Ipa {
                pages,
                last_level,
                hint,
            },
            None,
        ),
        None => {
            let (literal_start, literal_end) = literal_range(granule, xt, features);
            let reason = EmptyRange::SignExtendedAbove52 {
                literal_start,
                literal_end,
            };
            (RefScope::Nothing, Some(reason))
        }
    }
}

/// The range as the BaseADDR field description reads: BaseADDR placed at
/// IPA\[48:12\] / \[50:14\] / \[52:16\] (or \[52:16\] with DS), zero-extended,
/// plus `(NUM + 1) * 2^(5 * SCALE + 1) * granule`; no saturation (the
/// caller clips to the IPA space).
pub fn literal_range(granule: RefGranule, xt: u64, features: RefFeatures) -> (u64, u64) {
    let lo = if features.large_address() || granule == RefGranule::K64 {
        16
    } else {
        granule.bits()
    };
    let start = (xt & ((1 << 37) - 1)) << lo;
    let num = (xt >> 39) & 0x1f;
    let scale = (xt >> 44) & 0b11;
    (
        start,
        start + ((num + 1) << (5 * scale + 1 + u64::from(granule.bits()))),
    )
}
