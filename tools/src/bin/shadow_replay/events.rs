//! Input lines: one JSON object per line, naming its event in `"op"`.

use std::fmt;

use ipc::message::L0Change;
use ipc::tlbi::{IpaRange, Shareability, Tlbi, TlbiFeatures, TlbiOp};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use shadow_mmu::compose::PAGE_SIZE;
use walker::AccessKind;

use crate::s2walk_setup::{access_field, hex_field};

/// One event of the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// L2 faulted on `ipa` in the context of L1's `vttbr`/`vtcr`.
    Translate {
        vttbr: u64,
        vtcr: u64,
        ipa: u64,
        access: AccessKind,
        /// FAR_EL2 to report in an injected fault (L2's VA); 0 if absent.
        far: Option<u64>,
    },
    /// L1 stores the 8-byte descriptor `value` at L1 IPA `address`.
    Write { address: u64, value: u64 },
    /// L1 executed a stage-2 TLBI (trapped), with these registers current.
    Tlbi {
        tlbi: Tlbi,
        xt: u64,
        vttbr: u64,
        vtcr: u64,
    },
    /// L0 changed its own map of L1 for these L1 IPAs.
    L0Unmap { range: IpaRange, change: L0Change },
    /// Print the service's counters.
    Stats,
}

/// The fields of one line as given: each key at most once (serde_json's
/// own map would keep only the last of a repeated key).
struct Fields(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

/// More keys than any event has: a line with more is refused while read.
const MAX_FIELDS: usize = 8;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
        let mut fields: Vec<(String, Value)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format_args!("duplicate field \"{key}\"")));
            }
            if fields.len() == MAX_FIELDS {
                return Err(de::Error::custom("too many fields"));
            }
            let value: Value = map.next_value()?;
            fields.push((key, value));
        }
        Ok(Fields(fields))
    }
}

impl Fields {
    fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// Refuses any field not in `allowed` (which includes "op").
    fn only(&self, op: &str, allowed: &[&str]) -> Result<(), String> {
        match self.0.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            Some((key, _)) => Err(format!(
                "unknown field \"{key}\" for op \"{op}\" (expected {})",
                allowed.join(", ")
            )),
            None => Ok(()),
        }
    }

    fn hex(&self, name: &str) -> Result<Option<u64>, String> {
        hex_field(self.get(name), name)
    }

    fn required_hex(&self, name: &str) -> Result<u64, String> {
        self.hex(name)?
            .ok_or_else(|| format!("missing field \"{name}\""))
    }

    fn text(&self, name: &str) -> Result<&str, String> {
        match self.get(name) {
            None => Err(format!("missing field \"{name}\"")),
            Some(Value::String(text)) => Ok(text),
            Some(other) => Err(format!("field \"{name}\" must be a string, not {other}")),
        }
    }
}

/// The mnemonic of a stage-2 TLBI form, as the Arm ARM spells it
/// (`IPAS2E1IS`, `RIPAS2LE1OSNXS`, `VMALLS12E1`, ...).
pub fn tlbi_name(tlbi: Tlbi) -> String {
    let op = match tlbi.op {
        TlbiOp::Vmalls12e1 => "VMALLS12E1",
        TlbiOp::Alle1 => "ALLE1",
        TlbiOp::Ipas2e1 => "IPAS2E1",
        TlbiOp::Ipas2le1 => "IPAS2LE1",
        TlbiOp::Ripas2e1 => "RIPAS2E1",
        TlbiOp::Ripas2le1 => "RIPAS2LE1",
    };
    let domain = match tlbi.shareability {
        Shareability::NonShareable => "",
        Shareability::InnerShareable => "IS",
        Shareability::OuterShareable => "OS",
    };
    let nxs = if tlbi.nxs { "NXS" } else { "" };
    format!("{op}{domain}{nxs}")
}

/// Every stage-2 TLBI form, from the trapped-instruction encodings hv
/// decodes ([`Tlbi::from_sys_encoding`]): the names are those of the forms
/// hv can see, no more.
pub fn all_tlbis() -> Vec<Tlbi> {
    let mut forms = Vec::new();
    for crn in [8, 9] {
        for crm in 0..8 {
            for op2 in 0..8 {
                if let Some(tlbi) = Tlbi::from_sys_encoding(1, 4, crn, crm, op2) {
                    forms.push(tlbi);
                }
            }
        }
    }
    forms
}

/// The form named `name` (case-insensitive, optional `TLBI ` prefix).
pub fn tlbi_by_name(name: &str) -> Option<Tlbi> {
    let trimmed = name.trim();
    let bare = match trimmed.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("tlbi ") => trimmed[5..].trim_start(),
        _ => trimmed,
    };
    all_tlbis()
        .into_iter()
        .find(|t| tlbi_name(*t).eq_ignore_ascii_case(bare))
}

/// Why a form L1 was not shown is UNDEFINED for it.
fn missing_features(tlbi: Tlbi, shown: TlbiFeatures) -> String {
    let mut missing = Vec::new();
    if matches!(tlbi.op, TlbiOp::Ripas2e1 | TlbiOp::Ripas2le1) && !shown.range {
        missing.push("FEAT_TLBIRANGE (ID_AA64ISAR0_EL1.TLB >= 2, --isar0)");
    }
    if tlbi.shareability == Shareability::OuterShareable && !shown.outer_shareable {
        missing.push("FEAT_TLBIOS (ID_AA64ISAR0_EL1.TLB >= 1, --isar0)");
    }
    if tlbi.nxs && !shown.nxs {
        missing.push("FEAT_XS (ID_AA64ISAR1_EL1.XS >= 1, --isar1)");
    }
    missing.join(" and ")
}

const TRANSLATE_FIELDS: &[&str] = &["op", "vttbr", "vtcr", "ipa", "access", "far"];
const WRITE_FIELDS: &[&str] = &["op", "addr", "value"];
const TLBI_FIELDS: &[&str] = &["op", "op_name", "xt", "vttbr", "vtcr"];
const L0_UNMAP_FIELDS: &[&str] = &["op", "ipa", "size", "change"];
const STATS_FIELDS: &[&str] = &["op"];

/// Parses one input line (without its line ending). `shown` is the set of
/// TLBI features L1 sees: a form outside it is refused, as hv refuses it
/// (UNDEFINED for L1).
pub fn parse_event(line: &str, shown: TlbiFeatures) -> Result<Event, String> {
    let fields: Fields = crate::json_lines::parse_object(line)?;
    let op = fields.text("op")?;
    match op {
        "translate" => {
            fields.only(op, TRANSLATE_FIELDS)?;
            let access = access_field(fields.get("access"))?;
            Ok(Event::Translate {
                vttbr: fields.required_hex("vttbr")?,
                vtcr: fields.required_hex("vtcr")?,
                ipa: fields.required_hex("ipa")?,
                access,
                far: fields.hex("far")?,
            })
        }
        "write" => {
            fields.only(op, WRITE_FIELDS)?;
            Ok(Event::Write {
                address: fields.required_hex("addr")?,
                value: fields.required_hex("value")?,
            })
        }
        "tlbi" => {
            fields.only(op, TLBI_FIELDS)?;
            let name = fields.text("op_name")?;
            let tlbi = tlbi_by_name(name).ok_or_else(|| {
                format!(
                    "no stage-2 TLBI is named \"{name}\" (expected one of IPAS2E1, IPAS2LE1, \
                     RIPAS2E1, RIPAS2LE1, VMALLS12E1, ALLE1, each with IS, OS or no suffix, \
                     optionally NXS)"
                )
            })?;
            if !tlbi.exists_for(shown) {
                return Err(format!(
                    "TLBI {} is not shown to L1: it needs {} (hv makes it UNDEFINED for L1)",
                    tlbi_name(tlbi),
                    missing_features(tlbi, shown)
                ));
            }
            Ok(Event::Tlbi {
                tlbi,
                // The whole-VMID forms ignore their operand: it may be left out.
                xt: match tlbi.op {
                    TlbiOp::Vmalls12e1 | TlbiOp::Alle1 => fields.hex("xt")?.unwrap_or(0),
                    _ => fields.required_hex("xt")?,
                },
                vttbr: fields.required_hex("vttbr")?,
                vtcr: fields.required_hex("vtcr")?,
            })
        }
        "l0_unmap" => {
            fields.only(op, L0_UNMAP_FIELDS)?;
            let start = fields.required_hex("ipa")?;
            let size = fields.required_hex("size")?;
            let change = match fields.text("change")? {
                "unmap" => L0Change::Unmap,
                "write_protect" => L0Change::WriteProtect,
                other => {
                    return Err(format!(
                        "field \"change\": `{other}` is not \"unmap\" or \"write_protect\""
                    ))
                }
            };
            if !start.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
                return Err(format!(
                    "l0_unmap of {size:#x} bytes at {start:#x}: L0 maps whole 4 KiB pages \
                     (ipa and size must be multiples of 0x1000)"
                ));
            }
            let range = start
                .checked_add(size)
                .and_then(|end| IpaRange::new(start, end))
                .ok_or_else(|| {
                    format!(
                        "l0_unmap of {size:#x} bytes at {start:#x}: the size must be non-zero \
                         and the range must not pass 2^64"
                    )
                })?;
            Ok(Event::L0Unmap { range, change })
        }
        "stats" => {
            fields.only(op, STATS_FIELDS)?;
            Ok(Event::Stats)
        }
        other => Err(format!(
            "op \"{other}\" is not one of translate, write, tlbi, l0_unmap, stats"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL_SHOWN: TlbiFeatures = TlbiFeatures {
        range: true,
        outer_shareable: true,
        nxs: true,
    };

    #[test]
    fn every_form_has_a_unique_name_that_parses_back() {
        let forms = all_tlbis();
        // 6 operations x 3 domains x (with and without nXS).
        assert_eq!(forms.len(), 36);
        for tlbi in &forms {
            let name = tlbi_name(*tlbi);
            assert_eq!(tlbi_by_name(&name), Some(*tlbi), "{name}");
            assert_eq!(tlbi_by_name(&name.to_lowercase()), Some(*tlbi), "{name}");
            assert_eq!(tlbi_by_name(&format!("TLBI {name}")), Some(*tlbi), "{name}");
        }
        assert_eq!(
            tlbi_by_name("IPAS2E1IS").map(|t| (t.op, t.shareability, t.nxs)),
            Some((TlbiOp::Ipas2e1, Shareability::InnerShareable, false))
        );
        for bad in [
            "",
            "IPAS2E1XS",
            "VAE1IS",
            "TLBI",
            "ALLE2",
            "IPAS2E1ISNXSNXS",
        ] {
            assert_eq!(tlbi_by_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn events_parse() {
        assert_eq!(
            parse_event(
                r#"{"op":"translate","vttbr":"0x1000","vtcr":"0x80053590","ipa":4096,"access":"exec_el0","far":"0x7"}"#,
                ALL_SHOWN
            ),
            Ok(Event::Translate {
                vttbr: 0x1000,
                vtcr: 0x8005_3590,
                ipa: 0x1000,
                access: AccessKind::ExecEl0,
                far: Some(7)
            })
        );
        assert_eq!(
            parse_event(
                r#"{"value":"0x3","op":"write","addr":"0x40000008"}"#,
                ALL_SHOWN
            ),
            Ok(Event::Write {
                address: 0x4000_0008,
                value: 3
            })
        );
        let Ok(Event::Tlbi { tlbi, xt, .. }) = parse_event(
            r#"{"op":"tlbi","op_name":"ripas2le1os","xt":"0x5","vttbr":"0x0","vtcr":"0x0"}"#,
            ALL_SHOWN,
        ) else {
            panic!("a tlbi");
        };
        assert_eq!((tlbi.op, xt), (TlbiOp::Ripas2le1, 5));
        assert_eq!(
            parse_event(
                r#"{"op":"l0_unmap","ipa":"0x2000","size":"0x1000","change":"write_protect"}"#,
                ALL_SHOWN
            ),
            Ok(Event::L0Unmap {
                range: IpaRange::new(0x2000, 0x3000).unwrap(),
                change: L0Change::WriteProtect
            })
        );
        assert_eq!(
            parse_event(r#"{"op":"stats"}"#, ALL_SHOWN),
            Ok(Event::Stats)
        );
    }

    #[test]
    fn malformed_events_say_what_is_wrong() {
        let none = TlbiFeatures::default();
        let cases = [
            ("", "empty line"),
            ("{", "invalid JSON"),
            ("[1]", "expected a JSON object"),
            (r#"{"ipa":"0x0"}"#, "missing field \"op\""),
            (r#"{"op":7}"#, "field \"op\" must be a string"),
            (r#"{"op":"fault"}"#, "op \"fault\" is not one of"),
            (r#"{"op":"stats","op":"stats"}"#, "duplicate field \"op\""),
            (
                r#"{"op":"stats","x":1}"#,
                "unknown field \"x\" for op \"stats\"",
            ),
            (
                r#"{"op":"translate","vttbr":"0x0","vtcr":"0x0","ipa":"0x0"}"#,
                "missing field \"access\"",
            ),
            (
                r#"{"op":"translate","vttbr":"0x0","vtcr":"0x0","ipa":"0xz","access":"read"}"#,
                "field \"ipa\"",
            ),
            (
                r#"{"op":"translate","vttbr":"0x0","vtcr":"0x0","ipa":-1,"access":"read"}"#,
                "field \"ipa\"",
            ),
            (
                r#"{"op":"translate","vttbr":"0x0","vtcr":"0x0","ipa":"0x0","access":"fetch"}"#,
                "access `fetch`",
            ),
            (r#"{"op":"write","addr":"0x0"}"#, "missing field \"value\""),
            (
                r#"{"op":"tlbi","op_name":"IPAS2E1XX","xt":"0x0","vttbr":"0x0","vtcr":"0x0"}"#,
                "no stage-2 TLBI is named \"IPAS2E1XX\"",
            ),
            (
                r#"{"op":"tlbi","op_name":"RIPAS2E1IS","xt":"0x0","vttbr":"0x0","vtcr":"0x0"}"#,
                "TLBI RIPAS2E1IS is not shown to L1: it needs FEAT_TLBIRANGE",
            ),
            (
                r#"{"op":"tlbi","op_name":"IPAS2E1OSNXS","xt":"0x0","vttbr":"0x0","vtcr":"0x0"}"#,
                "needs FEAT_TLBIOS (ID_AA64ISAR0_EL1.TLB >= 1, --isar0) and FEAT_XS",
            ),
            (
                r#"{"op":"tlbi","op_name":"IPAS2E1IS","vttbr":"0x0","vtcr":"0x0"}"#,
                "missing field \"xt\"",
            ),
            (
                r#"{"op":"l0_unmap","ipa":"0x1800","size":"0x1000","change":"unmap"}"#,
                "whole 4 KiB pages",
            ),
            (
                r#"{"op":"l0_unmap","ipa":"0x1000","size":"0x0","change":"unmap"}"#,
                "non-zero",
            ),
            (
                r#"{"op":"l0_unmap","ipa":"0xfffffffffffff000","size":"0x2000","change":"unmap"}"#,
                "must not pass 2^64",
            ),
            (
                r#"{"op":"l0_unmap","ipa":"0x1000","size":"0x1000","change":"remap"}"#,
                "`remap` is not",
            ),
        ];
        for (line, expected) in cases {
            let error = parse_event(line, none).unwrap_err();
            assert!(error.contains(expected), "{line:?}: {error}");
        }
    }

    /// Arbitrary text, and objects built from the real keys with values of
    /// every JSON type, never panic the parser (modest case count).
    fn value_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null".to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| format!("\"{n:#x}\"")),
            "[a-zA-Z0-9_ x]{0,12}".prop_map(|s| format!("\"{s}\"")),
            prop::sample::select(vec![
                "\"translate\"",
                "\"write\"",
                "\"tlbi\"",
                "\"l0_unmap\"",
                "\"stats\"",
                "\"read\"",
                "\"IPAS2E1IS\"",
                "\"RIPAS2LE1OSNXS\"",
                "\"unmap\"",
                "\"write_protect\"",
                "[]",
                "{}",
            ])
            .prop_map(str::to_string),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn the_parser_never_panics_on_text(line in "\\PC{0,80}") {
            let _ = parse_event(&line, ALL_SHOWN);
        }

        #[test]
        fn the_parser_never_panics_on_objects(
            entries in prop::collection::vec(
                (prop::sample::select(vec![
                    "op", "vttbr", "vtcr", "ipa", "access", "far", "addr", "value",
                    "op_name", "xt", "size", "change", "other",
                ]), value_strategy()),
                0..9,
            )
        ) {
            let body: Vec<String> =
                entries.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            let line = format!("{{{}}}", body.join(","));
            let _ = parse_event(&line, ALL_SHOWN);
            let _ = parse_event(&line, TlbiFeatures::default());
        }
    }
}
