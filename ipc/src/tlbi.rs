//! The stage-2 TLBI forms a guest hypervisor (L1) can execute, and the
//! decoding of their `Xt` operand into an IPA range and level hint.
//!
//! The hypervisor traps the TLBI and decodes it here; the shadow-MMU service
//! receives the same form in an invalidate message and applies the decoded
//! [`InvalidateScope`]. Both sides use this one decoder, written from the
//! Arm ARM (DDI 0487) descriptions of TLBI IPAS2E1, IPAS2LE1, RIPAS2E1,
//! RIPAS2LE1, VMALLS12E1 and ALLE1 (and their IS, OS and nXS variants).
//!
//! Reserved-as-zero operand bits (NS when L1 is Non-secure, IPA\[55:52\]
//! without FEAT_D128, bits \[62:48\]) are ignored, as the PE ignores them.

/// Translation granule named by a TLBI operand (TTL\[3:2\] or TG).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granule {
    /// 4 KiB pages.
    K4,
    /// 16 KiB pages.
    K16,
    /// 64 KiB pages.
    K64,
}

impl Granule {
    /// log2 of the granule size in bytes.
    pub const fn shift(self) -> u32 {
        match self {
            Granule::K4 => 12,
            Granule::K16 => 14,
            Granule::K64 => 16,
        }
    }

    /// Granule size in bytes.
    pub const fn size(self) -> u64 {
        1 << self.shift()
    }

    /// The 2-bit TG / TTL\[3:2\] encoding shared by both operand formats.
    const fn from_tg(tg: u64) -> Option<Granule> {
        match tg & 0b11 {
            0b01 => Some(Granule::K4),
            0b10 => Some(Granule::K16),
            0b11 => Some(Granule::K64),
            _ => None,
        }
    }

    const fn tg(self) -> u64 {
        match self {
            Granule::K4 => 0b01,
            Granule::K16 => 0b10,
            Granule::K64 => 0b11,
        }
    }
}

/// Which PEs an invalidation must reach: the suffix of the TLBI mnemonic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shareability {
    /// No suffix: the executing PE only.
    NonShareable,
    /// `IS`: the Inner Shareable domain.
    InnerShareable,
    /// `OS`: the Outer Shareable domain.
    OuterShareable,
}

/// The stage-2-relevant TLBI operations (EL1&0 regime, issued at EL2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlbiOp {
    /// VMALLS12E1: every stage-1 and stage-2 entry of the current VMID.
    Vmalls12e1,
    /// ALLE1: every entry of the EL1&0 regime, for every VMID.
    Alle1,
    /// IPAS2E1: stage-2 entries from any level that translate one IPA.
    Ipas2e1,
    /// IPAS2LE1: stage-2 leaf entries that translate one IPA.
    Ipas2le1,
    /// RIPAS2E1: stage-2 entries from any level that translate an IPA range.
    Ripas2e1,
    /// RIPAS2LE1: stage-2 leaf entries that translate an IPA range.
    Ripas2le1,
}

/// One architectural TLBI form: operation, shareability and nXS qualifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tlbi {
    /// The operation.
    pub op: TlbiOp,
    /// The shareability domain it is broadcast to.
    pub shareability: Shareability,
    /// The nXS variant (FEAT_XS): completes without waiting for XS accesses.
    pub nxs: bool,
}

impl Tlbi {
    /// Identifies a trapped `SYS` instruction (the Op0, Op1, CRn, CRm, Op2
    /// fields of an EC 0x18 syndrome) as one of the stage-2 TLBI forms.
    /// `None` for anything else, including TLBIs that do not touch stage 2.
    // FEAT_TLBIW's TLBI VMALLWS2E1{,IS,OS} (op1 4, CRm 6/2/5, op2 2) does touch
    // stage 2 but is not decoded: hv must hide FEAT_TLBIW from L1.
    pub const fn from_sys_encoding(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Option<Tlbi> {
        if op0 != 1 || op1 != 4 {
            return None;
        }
        let nxs = match crn {
            8 => false,
            9 => true,
            _ => return None,
        };
        use Shareability::*;
        use TlbiOp::*;
        let (op, shareability) = match (crm, op2) {
            (0, 1) => (Ipas2e1, InnerShareable),
            (0, 2) => (Ripas2e1, InnerShareable),
            (0, 5) => (Ipas2le1, InnerShareable),
            (0, 6) => (Ripas2le1, InnerShareable),
            (1, 4) => (Alle1, OuterShareable),
            (1, 6) => (Vmalls12e1, OuterShareable),
            (3, 4) => (Alle1, InnerShareable),
            (3, 6) => (Vmalls12e1, InnerShareable),
            (4, 0) => (Ipas2e1, OuterShareable),
            (4, 1) => (Ipas2e1, NonShareable),
            (4, 2) => (Ripas2e1, NonShareable),
            (4, 3) => (Ripas2e1, OuterShareable),
            (4, 4) => (Ipas2le1, OuterShareable),
            (4, 5) => (Ipas2le1, NonShareable),
            (4, 6) => (Ripas2le1, NonShareable),
            (4, 7) => (Ripas2le1, OuterShareable),
            (7, 4) => (Alle1, NonShareable),
            (7, 6) => (Vmalls12e1, NonShareable),
            _ => return None,
        };
        Some(Tlbi {
            op,
            shareability,
            nxs,
        })
    }

    /// Whether this form exists for an L1 shown `features`. The range
    /// forms need FEAT_TLBIRANGE, the `OS` forms FEAT_TLBIOS and the `nXS`
    /// forms FEAT_XS; without them the encoding is UNDEFINED (DDI 0487,
    /// the TLBI descriptions' configuration notes). A host that has the
    /// feature but hides it from L1 still traps L1's use of it to L0 (NV),
    /// so hv must check this at the trap and inject an Undefined
    /// Instruction exception into L1 instead of invalidating (review 21 F2).
    pub const fn exists_for(self, features: TlbiFeatures) -> bool {
        let range = matches!(self.op, TlbiOp::Ripas2e1 | TlbiOp::Ripas2le1);
        let outer = matches!(self.shareability, Shareability::OuterShareable);
        (!range || features.range)
            && (!outer || features.outer_shareable)
            && (!self.nxs || features.nxs)
    }

    /// Whether operand `xt` names any entries: every form's does except a
    /// range form's with TG = 0b00 ([`TlbiDecodeError::ReservedGranule`],
    /// the only way [`Tlbi::decode`] fails). The decode parameters change
    /// which entries, never whether, so this reads only TG.
    pub fn names_entries(self, xt: u64) -> Result<(), TlbiDecodeError> {
        match self.op {
            TlbiOp::Ripas2e1 | TlbiOp::Ripas2le1 => RangeOperand::from_bits(xt)
                .granule
                .map(|_| ())
                .ok_or(TlbiDecodeError::ReservedGranule),
            _ => Ok(()),
        }
    }

    /// Decodes the `Xt` operand into the scope this TLBI invalidates, for an
    /// L1 with the features and VTCR_EL2.DS given in `params`.
    pub fn decode(self, xt: u64, params: TlbiParams) -> Result<InvalidateScope, TlbiDecodeError> {
        match self.op {
            TlbiOp::Vmalls12e1 => Ok(InvalidateScope::Vmid),
            TlbiOp::Alle1 => Ok(InvalidateScope::AllVmids),
            TlbiOp::Ipas2e1 => Ok(InvalidateScope::Ipa(decode_ipas2(
                xt,
                params,
                EntryLevels::AnyLevel,
            ))),
            TlbiOp::Ipas2le1 => Ok(InvalidateScope::Ipa(decode_ipas2(
                xt,
                params,
                EntryLevels::LeafOnly,
            ))),
            TlbiOp::Ripas2e1 => {
                decode_ripas2(xt, params, EntryLevels::AnyLevel).map(InvalidateScope::Ipa)
            }
            TlbiOp::Ripas2le1 => {
                decode_ripas2(xt, params, EntryLevels::LeafOnly).map(InvalidateScope::Ipa)
            }
        }
    }
}

/// The TLBI features L0 shows L1 (its ID registers' view), which decide
/// which trapped forms exist ([`Tlbi::exists_for`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlbiFeatures {
    /// FEAT_TLBIRANGE: the RIPAS2 forms.
    pub range: bool,
    /// FEAT_TLBIOS: the Outer Shareable (`OS`) forms.
    pub outer_shareable: bool,
    /// FEAT_XS: the `nXS` forms.
    pub nxs: bool,
}

impl TlbiFeatures {
    /// From the ID_AA64ISAR0_EL1 and ID_AA64ISAR1_EL1 values L1 reads:
    /// ISAR0.TLB (bits \[59:56\]) is 0b0001 for FEAT_TLBIOS and 0b0010 for
    /// FEAT_TLBIOS with FEAT_TLBIRANGE; ISAR1.XS (bits \[59:56\]) is 0b0001
    /// for FEAT_XS. Larger (future) values include the smaller ones'
    /// features, as ID fields do.
    pub const fn from_id_registers(isar0: u64, isar1: u64) -> TlbiFeatures {
        let tlb = (isar0 >> 56) & 0xf;
        let xs = (isar1 >> 56) & 0xf;
        TlbiFeatures {
            range: tlb >= 2,
            outer_shareable: tlb >= 1,
            nxs: xs >= 1,
        }
    }
}

/// What the decoder must know about the L1 that issued the TLBI: the
/// features L0 exposes to it and the DS bit of its VTCR_EL2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlbiParams {
    /// FEAT_TTL exposed to L1: IPAS2 operands carry a TTL hint in
    /// bits \[47:44\]; without it those bits are RES0 and ignored.
    pub feat_ttl: bool,
    /// FEAT_LPA2 exposed to L1: enables the level-0 (4K) and level-1 (16K)
    /// TTL encodings.
    pub feat_lpa2: bool,
    /// L1's VTCR_EL2.DS. Only honoured with `feat_lpa2` (otherwise the bit
    /// is RES0): range BaseADDR is then in 64 KiB units for every granule.
    pub vtcr_ds: bool,
}

/// Why a TLBI operand names no entries to invalidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlbiDecodeError {
    /// A range TLBI with TG = 0b00 (reserved). The architecture then does
    /// not require any entry to be invalidated; the hypervisor completes the
    /// TLBI without invalidating anything, which is the permitted behaviour
    /// Umbra chooses (and cheaper than a storm of whole-VMID flushes).
    ReservedGranule,
}

/// Which levels of entries a TLBI removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryLevels {
    /// Entries from any level of the walk (IPAS2E1, RIPAS2E1).
    AnyLevel,
    /// Leaf entries only (the `L` forms: IPAS2LE1, RIPAS2LE1); cached table
    /// (non-leaf) entries may be kept.
    LeafOnly,
}

/// The TTL information in the operand: granule and level of the leaf entry
/// that maps the addresses being invalidated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TtlHint {
    /// No information: the entries may come from any granule and level.
    None,
    /// The entries come from tables with this granule, at any level (a range
    /// TLBI with TTL = 0b00, or one whose level encoding is reserved).
    Granule(Granule),
    /// The leaf entries come from tables with this granule, at this level.
    /// The architecture requires only such leaf entries (and non-leaf entries
    /// above this level) to be removed; removing more is always permitted.
    Leaf {
        /// Granule of the tables.
        granule: Granule,
        /// Lookup level of the leaf entry, 0..=3.
        level: u8,
    },
}

/// A half-open range of intermediate physical addresses, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpaRange {
    start: u64,
    end: u64,
}

impl IpaRange {
    /// `[start, end)`; `None` unless `start < end`.
    pub const fn new(start: u64, end: u64) -> Option<IpaRange> {
        if start < end {
            Some(IpaRange { start, end })
        } else {
            None
        }
    }

    /// First address in the range.
    pub const fn start(&self) -> u64 {
        self.start
    }

    /// First address past the range.
    pub const fn end(&self) -> u64 {
        self.end
    }

    /// Number of bytes covered.
    pub const fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Never true: a range holds at least one address.
    pub const fn is_empty(&self) -> bool {
        false
    }

    /// Whether `[base, base + size)` shares any address with this range;
    /// a cached entry of that extent is in scope exactly when it does.
    pub const fn overlaps(&self, base: u64, size: u64) -> bool {
        base < self.end && base.saturating_add(size) > self.start
    }
}

/// The IPA-based part of a stage-2 invalidation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpaScope {
    /// Addresses whose translations are removed. For IPAS2 this is the
    /// 4 KiB unit addressed by IPA\[51:12\], so any entry translating that
    /// IPA (whatever its size) overlaps it.
    pub range: IpaRange,
    /// Leaf entries only, or entries from any level.
    pub levels: EntryLevels,
    /// Level hint.
    pub hint: TtlHint,
}

/// What an invalidation removes, for the VMID of L1's VTTBR_EL2 at the time
/// of the TLBI (the VMID travels beside the scope in the message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvalidateScope {
    /// Everything cached for the VMID (VMALLS12E1).
    Vmid,
    /// Everything cached for every VMID of L1 (ALLE1).
    AllVmids,
    /// Translations of an IPA range for the VMID (IPAS2*, RIPAS2*).
    Ipa(IpaScope),
}

/// IPA\[51:12\] sits in bits \[39:0\] of an IPAS2 operand.
const IPAS2_IPA_MASK: u64 = (1 << 40) - 1;

fn decode_ipas2(xt: u64, params: TlbiParams, levels: EntryLevels) -> IpaScope {
    let ipa = (xt & IPAS2_IPA_MASK) << 12;
    let hint = if params.feat_ttl {
        decode_ipas2_ttl((xt >> 44) & 0xf, params.feat_lpa2)
    } else {
        TtlHint::None
    };
    IpaScope {
        // Cannot fail: ipa < 2^52, so ipa + 4096 neither overflows nor equals ipa.
        range: IpaRange {
            start: ipa,
            end: ipa + 4096,
        },
        levels,
        hint,
    }
}

/// TTL\[3:0\] of IPAS2*: TTL\[3:2\] names the granule, TTL\[1:0\] the level.
/// Reserved level encodings are treated as TTL\[3:2\] = 0b00 (no
/// information), as the Arm ARM directs.
fn decode_ipas2_ttl(ttl: u64, feat_lpa2: bool) -> TtlHint {
    let Some(granule) = Granule::from_tg(ttl >> 2) else {
        return TtlHint::None;
    };
    let level = (ttl & 0b11) as u8;
    let defined = match (granule, level) {
        (Granule::K4, 0) => feat_lpa2,
        (Granule::K16, 0) | (Granule::K64, 0) => false,
        (Granule::K16, 1) => feat_lpa2,
        _ => true,
    };
    if defined {
        TtlHint::Leaf { granule, level }
    } else {
        TtlHint::None
    }
}

fn decode_ripas2(
    xt: u64,
    params: TlbiParams,
    levels: EntryLevels,
) -> Result<IpaScope, TlbiDecodeError> {
    let operand = RangeOperand::from_bits(xt);
    let granule = operand.granule.ok_or(TlbiDecodeError::ReservedGranule)?;
    // The RIPAS2 descriptions scale BaseADDR by VTCR_EL2.DS, the register
    // that configures stage 2; the shared `TLBIRange` pseudocode asks
    // `HasLargeAddress` of the EL1&0 regime, which would read L2's
    // TCR_EL1.DS, a stage-1 setting. Umbra follows the descriptions, as
    // the reference model in tests/tlbi_reference does (review 21 F4).
    let start = if params.feat_lpa2 && params.vtcr_ds {
        // BaseADDR[52:16] for every granule; BaseADDR[15:12] reads as zero.
        operand.base_addr << 16
    } else {
        operand.base_addr << granule.shift()
    };
    // (NUM + 1) * 2^(5 * SCALE + 1) pages of the granule.
    let pages = (u64::from(operand.num) + 1) << (5 * u32::from(operand.scale) + 1);
    let len = pages << granule.shift();
    // No overflow: start < 2^53 and len <= 2^37.
    let end = start + len;
    let hint = match operand.ttl {
        0 => TtlHint::Granule(granule),
        // Level 1 with 16K pages needs FEAT_LPA2; otherwise it is reserved
        // and treated as 0b00.
        1 if granule == Granule::K16 && !params.feat_lpa2 => TtlHint::Granule(granule),
        level => TtlHint::Leaf { granule, level },
    };
    Ok(IpaScope {
        range: IpaRange { start, end },
        levels,
        hint,
    })
}

/// The fields of a range-TLBI (RIPAS2*) operand, as encoded in `Xt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RangeOperand {
    /// TG, bits \[47:46\]; `None` for the reserved 0b00.
    pub granule: Option<Granule>,
    /// SCALE, bits \[45:44\] (0..=3).
    pub scale: u8,
    /// NUM, bits \[43:39\] (0..=31).
    pub num: u8,
    /// TTL, bits \[38:37\] (0..=3).
    pub ttl: u8,
    /// BaseADDR, bits \[36:0\], in granule units (or 64 KiB units with DS).
    pub base_addr: u64,
}

impl RangeOperand {
    /// Splits an operand into its fields (no validation; see [`Tlbi::decode`]).
    pub const fn from_bits(xt: u64) -> RangeOperand {
        RangeOperand {
            granule: Granule::from_tg(xt >> 46),
            scale: ((xt >> 44) & 0b11) as u8,
            num: ((xt >> 39) & 0x1f) as u8,
            ttl: ((xt >> 37) & 0b11) as u8,
            base_addr: xt & ((1 << 37) - 1),
        }
    }

    /// Builds the operand; fields wider than their encoding are masked, so
    /// callers pass in-range values (as an L1 kernel computing one would).
    pub const fn to_bits(&self) -> u64 {
        let tg = match self.granule {
            Some(g) => g.tg(),
            None => 0,
        };
        (tg << 46)
            | (((self.scale & 0b11) as u64) << 44)
            | (((self.num & 0x1f) as u64) << 39)
            | (((self.ttl & 0b11) as u64) << 37)
            | (self.base_addr & ((1 << 37) - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NO_FEATURES: TlbiParams = TlbiParams {
        feat_ttl: false,
        feat_lpa2: false,
        vtcr_ds: false,
    };
    const TTL: TlbiParams = TlbiParams {
        feat_ttl: true,
        feat_lpa2: false,
        vtcr_ds: false,
    };
    const LPA2_DS: TlbiParams = TlbiParams {
        feat_ttl: true,
        feat_lpa2: true,
        vtcr_ds: true,
    };

    fn tlbi(op: TlbiOp) -> Tlbi {
        Tlbi {
            op,
            shareability: Shareability::InnerShareable,
            nxs: false,
        }
    }

    fn ipa_scope(op: TlbiOp, xt: u64, params: TlbiParams) -> IpaScope {
        match tlbi(op).decode(xt, params) {
            Ok(InvalidateScope::Ipa(scope)) => scope,
            other => panic!("expected an IPA scope, got {other:?}"),
        }
    }

    #[test]
    fn sys_encodings_match_the_arm_arm_tables() {
        use Shareability::*;
        use TlbiOp::*;
        let table = [
            ((0, 1), Ipas2e1, InnerShareable),
            ((4, 1), Ipas2e1, NonShareable),
            ((4, 0), Ipas2e1, OuterShareable),
            ((0, 5), Ipas2le1, InnerShareable),
            ((4, 5), Ipas2le1, NonShareable),
            ((4, 4), Ipas2le1, OuterShareable),
            ((0, 2), Ripas2e1, InnerShareable),
            ((4, 2), Ripas2e1, NonShareable),
            ((4, 3), Ripas2e1, OuterShareable),
            ((0, 6), Ripas2le1, InnerShareable),
            ((4, 6), Ripas2le1, NonShareable),
            ((4, 7), Ripas2le1, OuterShareable),
            ((7, 6), Vmalls12e1, NonShareable),
            ((3, 6), Vmalls12e1, InnerShareable),
            ((1, 6), Vmalls12e1, OuterShareable),
            ((7, 4), Alle1, NonShareable),
            ((3, 4), Alle1, InnerShareable),
            ((1, 4), Alle1, OuterShareable),
        ];
        for ((crm, op2), op, shareability) in table {
            for (crn, nxs) in [(8, false), (9, true)] {
                assert_eq!(
                    Tlbi::from_sys_encoding(1, 4, crn, crm, op2),
                    Some(Tlbi {
                        op,
                        shareability,
                        nxs
                    }),
                    "CRn={crn} CRm={crm} op2={op2}"
                );
            }
        }
        // Stage-1 and EL2-regime TLBIs are not stage-2 invalidations.
        assert_eq!(Tlbi::from_sys_encoding(1, 0, 8, 3, 1), None); // VAE1IS
        assert_eq!(Tlbi::from_sys_encoding(1, 4, 8, 3, 0), None); // ALLE2IS
        assert_eq!(Tlbi::from_sys_encoding(1, 4, 8, 3, 1), None); // VAE2IS
        assert_eq!(Tlbi::from_sys_encoding(0, 4, 8, 4, 1), None);
        assert_eq!(Tlbi::from_sys_encoding(1, 4, 7, 4, 1), None);
    }

    #[test]
    fn range_os_and_nxs_forms_exist_only_with_their_features() {
        let none = TlbiFeatures::default();
        let all = TlbiFeatures::from_id_registers(2 << 56, 1 << 56);
        assert_eq!(
            all,
            TlbiFeatures {
                range: true,
                outer_shareable: true,
                nxs: true
            }
        );
        let os_only = TlbiFeatures::from_id_registers(1 << 56, 0);
        assert_eq!(
            os_only,
            TlbiFeatures {
                range: false,
                outer_shareable: true,
                nxs: false
            }
        );
        let form = |crn, crm, op2| Tlbi::from_sys_encoding(1, 4, crn, crm, op2).expect("a TLBI");
        let ipas2e1is = form(8, 0, 1);
        let ripas2e1is = form(8, 0, 2);
        let ipas2e1os = form(8, 4, 0);
        let ipas2e1isnxs = form(9, 0, 1);
        let vmalls12e1 = form(8, 7, 6);
        for plain in [ipas2e1is, vmalls12e1] {
            assert!(plain.exists_for(none), "{plain:?}");
        }
        for needs_more in [ripas2e1is, ipas2e1os, ipas2e1isnxs] {
            assert!(!needs_more.exists_for(none), "{needs_more:?}");
            assert!(needs_more.exists_for(all), "{needs_more:?}");
        }
        assert!(ipas2e1os.exists_for(os_only));
        assert!(!ripas2e1is.exists_for(os_only));
        assert!(!ipas2e1isnxs.exists_for(os_only));
        // RIPAS2E1OS needs both.
        let ripas2e1os = form(8, 4, 3);
        assert!(!ripas2e1os.exists_for(TlbiFeatures {
            range: true,
            ..none
        }));
        assert!(ripas2e1os.exists_for(all));
    }

    #[test]
    fn whole_vmid_and_all_forms_ignore_the_operand() {
        for xt in [0, u64::MAX, 0x1234_5678] {
            assert_eq!(
                tlbi(TlbiOp::Vmalls12e1).decode(xt, NO_FEATURES),
                Ok(InvalidateScope::Vmid)
            );
            assert_eq!(
                tlbi(TlbiOp::Alle1).decode(xt, LPA2_DS),
                Ok(InvalidateScope::AllVmids)
            );
        }
    }

    #[test]
    fn ipas2_takes_ipa_51_12_from_bits_39_0() {
        let ipa = 0x000f_1234_5678_9000_u64; // a 52-bit IPA
        let scope = ipa_scope(TlbiOp::Ipas2e1, ipa >> 12, NO_FEATURES);
        assert_eq!(scope.range.start(), ipa);
        assert_eq!(scope.range.end(), ipa + 4096);
        assert_eq!(scope.levels, EntryLevels::AnyLevel);
        assert_eq!(scope.hint, TtlHint::None);
        // NS, RES0 bits and IPA[55:52] (no FEAT_D128) do not move the address.
        let noisy = (ipa >> 12) | (1 << 63) | (0x7fff << 48) | (0xf << 40);
        assert_eq!(
            ipa_scope(TlbiOp::Ipas2le1, noisy, NO_FEATURES).range,
            scope.range
        );
        assert_eq!(
            ipa_scope(TlbiOp::Ipas2le1, noisy, NO_FEATURES).levels,
            EntryLevels::LeafOnly
        );
    }

    #[test]
    fn ipas2_ttl_hint_follows_the_ttl_table() {
        let with_ttl = |ttl: u64, params| ipa_scope(TlbiOp::Ipas2e1, ttl << 44, params).hint;
        let leaf = |granule, level| TtlHint::Leaf { granule, level };
        // TTL[3:2] == 0b00: no information, whatever TTL[1:0] holds.
        for low in 0..4 {
            assert_eq!(with_ttl(low, TTL), TtlHint::None);
        }
        // 4K: level 0 only with FEAT_LPA2.
        assert_eq!(with_ttl(0b0100, TTL), TtlHint::None);
        assert_eq!(with_ttl(0b0100, LPA2_DS), leaf(Granule::K4, 0));
        assert_eq!(with_ttl(0b0101, TTL), leaf(Granule::K4, 1));
        assert_eq!(with_ttl(0b0110, TTL), leaf(Granule::K4, 2));
        assert_eq!(with_ttl(0b0111, TTL), leaf(Granule::K4, 3));
        // 16K: level 0 reserved, level 1 only with FEAT_LPA2.
        assert_eq!(with_ttl(0b1000, LPA2_DS), TtlHint::None);
        assert_eq!(with_ttl(0b1001, TTL), TtlHint::None);
        assert_eq!(with_ttl(0b1001, LPA2_DS), leaf(Granule::K16, 1));
        assert_eq!(with_ttl(0b1010, TTL), leaf(Granule::K16, 2));
        assert_eq!(with_ttl(0b1011, TTL), leaf(Granule::K16, 3));
        // 64K: level 0 reserved.
        assert_eq!(with_ttl(0b1100, LPA2_DS), TtlHint::None);
        assert_eq!(with_ttl(0b1101, TTL), leaf(Granule::K64, 1));
        assert_eq!(with_ttl(0b1110, TTL), leaf(Granule::K64, 2));
        assert_eq!(with_ttl(0b1111, TTL), leaf(Granule::K64, 3));
        // Without FEAT_TTL the field is RES0 and ignored.
        assert_eq!(with_ttl(0b0111, NO_FEATURES), TtlHint::None);
    }

    #[test]
    fn range_examples_from_the_formula() {
        // 4K, SCALE=0, NUM=0: 2 pages from BaseADDR * 4K.
        let xt = RangeOperand {
            granule: Some(Granule::K4),
            scale: 0,
            num: 0,
            ttl: 3,
            base_addr: 0x80,
        }
        .to_bits();
        let scope = ipa_scope(TlbiOp::Ripas2e1, xt, NO_FEATURES);
        assert_eq!(scope.range, IpaRange::new(0x80_000, 0x82_000).unwrap());
        assert_eq!(
            scope.hint,
            TtlHint::Leaf {
                granule: Granule::K4,
                level: 3
            }
        );
        // 64K, SCALE=3, NUM=31: 32 * 2^16 pages of 64K = 2^37 bytes.
        let xt = RangeOperand {
            granule: Some(Granule::K64),
            scale: 3,
            num: 31,
            ttl: 0,
            base_addr: 1,
        }
        .to_bits();
        let scope = ipa_scope(TlbiOp::Ripas2le1, xt, NO_FEATURES);
        assert_eq!(scope.range.start(), 0x1_0000);
        assert_eq!(scope.range.len(), 1 << 37);
        assert_eq!(scope.levels, EntryLevels::LeafOnly);
        assert_eq!(scope.hint, TtlHint::Granule(Granule::K64));
        // 16K, SCALE=1, NUM=2: 3 * 64 pages of 16K = 3 MiB.
        let xt = RangeOperand {
            granule: Some(Granule::K16),
            scale: 1,
            num: 2,
            ttl: 2,
            base_addr: 0x100,
        }
        .to_bits();
        let scope = ipa_scope(TlbiOp::Ripas2e1, xt, NO_FEATURES);
        assert_eq!(scope.range.start(), 0x100 << 14);
        assert_eq!(scope.range.len(), 3 << 20);
    }

    #[test]
    fn range_with_reserved_granule_invalidates_nothing() {
        let xt = RangeOperand {
            granule: None,
            scale: 1,
            num: 3,
            ttl: 0,
            base_addr: 7,
        }
        .to_bits();
        assert_eq!(
            tlbi(TlbiOp::Ripas2e1).decode(xt, LPA2_DS),
            Err(TlbiDecodeError::ReservedGranule)
        );
    }

    #[test]
    fn range_ttl_level_one_with_16k_needs_lpa2() {
        let xt = RangeOperand {
            granule: Some(Granule::K16),
            scale: 0,
            num: 0,
            ttl: 1,
            base_addr: 0,
        }
        .to_bits();
        assert_eq!(
            ipa_scope(TlbiOp::Ripas2e1, xt, TTL).hint,
            TtlHint::Granule(Granule::K16)
        );
        assert_eq!(
            ipa_scope(TlbiOp::Ripas2e1, xt, LPA2_DS).hint,
            TtlHint::Leaf {
                granule: Granule::K16,
                level: 1
            }
        );
    }

    #[test]
    fn range_base_is_in_64k_units_with_lpa2_and_ds() {
        let xt = RangeOperand {
            granule: Some(Granule::K4),
            scale: 0,
            num: 1,
            ttl: 0,
            base_addr: 0x3,
        }
        .to_bits();
        assert_eq!(
            ipa_scope(TlbiOp::Ripas2e1, xt, LPA2_DS).range.start(),
            0x3_0000
        );
        // DS without FEAT_LPA2 is RES0: granule units as usual.
        let ds_only = TlbiParams {
            feat_ttl: false,
            feat_lpa2: false,
            vtcr_ds: true,
        };
        assert_eq!(
            ipa_scope(TlbiOp::Ripas2e1, xt, ds_only).range.start(),
            0x3000
        );
    }

    #[test]
    fn misaligned_base_is_decoded_literally() {
        // TTL=01 (level 1, 1 GiB blocks) with BaseADDR[29:12] != 0 makes the
        // invalidated range UNPREDICTABLE; Umbra invalidates exactly the
        // literal range, so every entry overlapping it goes.
        let xt = RangeOperand {
            granule: Some(Granule::K4),
            scale: 0,
            num: 0,
            ttl: 1,
            base_addr: 0x40001,
        }
        .to_bits();
        let scope = ipa_scope(TlbiOp::Ripas2e1, xt, NO_FEATURES);
        assert_eq!(
            scope.range,
            IpaRange::new(0x4000_1000, 0x4000_3000).unwrap()
        );
        // The 1 GiB block at 0x4000_0000 overlaps it and is in scope.
        assert!(scope.range.overlaps(0x4000_0000, 1 << 30));
        assert!(!scope.range.overlaps(0x8000_0000, 1 << 30));
    }

    fn any_granule() -> impl Strategy<Value = Granule> {
        prop_oneof![Just(Granule::K4), Just(Granule::K16), Just(Granule::K64)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Range = [BaseADDR, BaseADDR + (NUM+1) * 2^(5*SCALE+1) * granule),
        /// computed here with u128 arithmetic straight from the Arm ARM text.
        #[test]
        fn range_matches_the_arm_arm_formula(
            granule in any_granule(),
            scale in 0u8..4,
            num in 0u8..32,
            ttl in 0u8..4,
            base_addr in 0u64..(1 << 37),
            lpa2 in any::<bool>(),
            ds in any::<bool>(),
            noise in any::<u16>(),
        ) {
            let operand = RangeOperand { granule: Some(granule), scale, num, ttl, base_addr };
            // NS and bits [62:48] are RES0 and must not change the result.
            let xt = operand.to_bits() | (u64::from(noise) << 48);
            prop_assert_eq!(RangeOperand::from_bits(xt), operand);
            let params = TlbiParams { feat_ttl: false, feat_lpa2: lpa2, vtcr_ds: ds };
            let scope = ipa_scope(TlbiOp::Ripas2e1, xt, params);
            let unit: u128 = if lpa2 && ds { 1 << 16 } else { 1 << granule.shift() };
            let start = u128::from(base_addr) * unit;
            let pages = (u128::from(num) + 1) * (1u128 << (5 * u32::from(scale) + 1));
            let end = start + pages * (1u128 << granule.shift());
            prop_assert_eq!(u128::from(scope.range.start()), start);
            prop_assert_eq!(u128::from(scope.range.end()), end);
        }

        #[test]
        fn any_operand_decodes_without_panicking(xt in any::<u64>(), ttl in any::<bool>(),
                                                 lpa2 in any::<bool>(), ds in any::<bool>()) {
            let params = TlbiParams { feat_ttl: ttl, feat_lpa2: lpa2, vtcr_ds: ds };
            for op in [TlbiOp::Ipas2e1, TlbiOp::Ipas2le1, TlbiOp::Ripas2e1, TlbiOp::Ripas2le1] {
                match tlbi(op).decode(xt, params) {
                    Ok(InvalidateScope::Ipa(scope)) => {
                        prop_assert!(scope.range.start() < scope.range.end());
                        prop_assert_eq!(scope.range.start() % 4096, 0);
                        prop_assert!(scope.range.end() <= (1 << 53) + (1 << 37));
                    }
                    Ok(other) => prop_assert!(false, "IPA form decoded to {:?}", other),
                    Err(TlbiDecodeError::ReservedGranule) => {
                        prop_assert!(matches!(op, TlbiOp::Ripas2e1 | TlbiOp::Ripas2le1));
                        prop_assert_eq!((xt >> 46) & 3, 0);
                    }
                }
            }
        }

        /// `names_entries` (the check a request is built with) fails
        /// exactly when a decode with any parameters does.
        #[test]
        fn names_entries_agrees_with_decode(xt in any::<u64>(), ttl in any::<bool>(),
                                            lpa2 in any::<bool>(), ds in any::<bool>()) {
            let params = TlbiParams { feat_ttl: ttl, feat_lpa2: lpa2, vtcr_ds: ds };
            for op in [TlbiOp::Vmalls12e1, TlbiOp::Alle1, TlbiOp::Ipas2e1, TlbiOp::Ipas2le1,
                       TlbiOp::Ripas2e1, TlbiOp::Ripas2le1] {
                prop_assert_eq!(tlbi(op).names_entries(xt).is_ok(),
                                tlbi(op).decode(xt, params).is_ok());
            }
        }
    }
}
