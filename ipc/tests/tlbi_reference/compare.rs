//! Judges `ipc::tlbi`'s decoded scope against the reference model's
//! required scope: exactly the required entries, a superset (permitted by
//! the architecture, since a TLB may drop any entry at any time, but each
//! kind must be justified by a documented choice), or a violation (some
//! required entry would survive).

use ipc::{EntryLevels, Granule, InvalidateScope, TlbiDecodeError, TtlHint};

use super::model::{EmptyRange, Pages, RefGranule, RefHint, RefScope};

/// Kinds of over-invalidation, each one a separate justification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Superset {
    /// A range TLBI whose BaseADDR has bit 36 set (4K / 16K, no DS): the
    /// field description's zero-extended BaseADDR reaches IPAs at 2^48 /
    /// 2^50 and above, `TLBIRange`'s sign extension reaches none.
    LiteralBaseAddr,
    /// More pages than the required range, for any other reason.
    WiderRange,
    /// Any-level removal where only last-level entries are required.
    AnyLevelForLastLevel,
    /// A weaker TTL / granule hint than the operand carries.
    WeakerHint,
    /// Every VMID where only the current one is required.
    AllVmidsForVmid,
    /// An IPA scope (or VMID scope) where nothing is required.
    SomethingForNothing,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Exact,
    Superset(Vec<Superset>),
    Violation(String),
}

fn granule_of(g: Granule) -> RefGranule {
    match g {
        Granule::K4 => RefGranule::K4,
        Granule::K16 => RefGranule::K16,
        Granule::K64 => RefGranule::K64,
    }
}

/// ipc's hint in the model's terms.
pub fn hint_of(hint: TtlHint) -> RefHint {
    match hint {
        TtlHint::None => RefHint::Any,
        TtlHint::Granule(g) => RefHint::Granule(granule_of(g)),
        TtlHint::Leaf { granule, level } => RefHint::Leaf(granule_of(granule), level),
    }
}

/// Compares ipc's answer with the model's required scope; `empty_reason`
/// is the model's explanation when a range TLBI requires nothing.
pub fn judge(
    ipc: Result<InvalidateScope, TlbiDecodeError>,
    required: RefScope,
    empty_reason: Option<EmptyRange>,
) -> Verdict {
    match (required, ipc) {
        (RefScope::AllVmids, Ok(InvalidateScope::AllVmids)) => Verdict::Exact,
        (RefScope::Vmid, Ok(InvalidateScope::Vmid)) => Verdict::Exact,
        (RefScope::Vmid, Ok(InvalidateScope::AllVmids)) => {
            Verdict::Superset(vec![Superset::AllVmidsForVmid])
        }
        (RefScope::Nothing, Err(TlbiDecodeError::ReservedGranule)) => {
            if empty_reason.is_none() {
                Verdict::Exact
            } else {
                Verdict::Violation("ReservedGranule for an operand whose TG names a granule".into())
            }
        }
        (RefScope::Nothing, Ok(InvalidateScope::Ipa(scope))) => {
            let Some(reason) = empty_reason else {
                // TG = 0b00: ipc documents ReservedGranule for it.
                return Verdict::Violation(format!(
                    "TG = 0b00 decoded to {scope:?}, ipc documents ReservedGranule"
                ));
            };
            match Pages::of_range(scope.range.start(), scope.range.end()) {
                // Reaches nothing of the 52-bit IPA space: the same entries.
                None => Verdict::Exact,
                Some(pages) => {
                    let EmptyRange::SignExtendedAbove52 {
                        literal_start,
                        literal_end,
                    } = reason;
                    if Pages::of_range(literal_start, literal_end) == Some(pages) {
                        Verdict::Superset(vec![Superset::LiteralBaseAddr])
                    } else {
                        Verdict::Superset(vec![Superset::SomethingForNothing])
                    }
                }
            }
        }
        (RefScope::Nothing, Ok(_)) => Verdict::Superset(vec![Superset::SomethingForNothing]),
        (
            RefScope::Ipa {
                pages,
                last_level,
                hint,
            },
            Ok(InvalidateScope::Ipa(scope)),
        ) => {
            let mut wider = Vec::new();
            match Pages::of_range(scope.range.start(), scope.range.end()) {
                Some(got) if got == pages => {}
                Some(got) if got.contains(pages) => wider.push(Superset::WiderRange),
                got => {
                    return Verdict::Violation(format!(
                        "pages {got:?} do not cover the required {pages:?}"
                    ))
                }
            }
            match (last_level, scope.levels) {
                (true, EntryLevels::LeafOnly) | (false, EntryLevels::AnyLevel) => {}
                (true, EntryLevels::AnyLevel) => wider.push(Superset::AnyLevelForLastLevel),
                (false, EntryLevels::LeafOnly) => {
                    return Verdict::Violation("LeafOnly for an any-level TLBI".into())
                }
            }
            let got = hint_of(scope.hint);
            if got != hint {
                if hint.within(got) {
                    wider.push(Superset::WeakerHint);
                } else {
                    return Verdict::Violation(format!(
                        "hint {got:?} leaves out entries the required {hint:?} covers"
                    ));
                }
            }
            if wider.is_empty() {
                Verdict::Exact
            } else {
                Verdict::Superset(wider)
            }
        }
        (RefScope::Ipa { .. }, Ok(InvalidateScope::Vmid | InvalidateScope::AllVmids)) => {
            Verdict::Superset(vec![Superset::WiderRange])
        }
        (required, got) => Verdict::Violation(format!("required {required:?}, decoded {got:?}")),
    }
}
