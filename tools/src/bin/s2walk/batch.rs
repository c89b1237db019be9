//! `s2walk batch`: JSON lines in, one JSON line out per line in, in order.

use std::fmt;
use std::io::{self, Read, Write};
use std::process::ExitCode;

use clap::ArgMatches;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use walker::{AccessKind, GuestMemory, Stage2Walker, WalkError};

use crate::json_lines::{self, InputLine};
use crate::output::{error_json, fault_json, translation_json};
use crate::setup::{access_field, Machine};
use crate::Outcome;

/// One parsed input line.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub vtcr: u64,
    pub vttbr: u64,
    pub ipa: u64,
    pub access: AccessKind,
    pub far: Option<u64>,
}

const FIELDS: [&str; 5] = ["vtcr", "vttbr", "ipa", "access", "far"];

/// A request's fields as given, each at most once and none unknown; their
/// values are checked afterwards, with messages naming the field.
#[derive(Default)]
struct RequestFields {
    /// In the order of `FIELDS`.
    values: [Option<Value>; 5],
}

impl<'de> Deserialize<'de> for RequestFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RequestFieldsVisitor)
    }
}

struct RequestFieldsVisitor;

impl<'de> Visitor<'de> for RequestFieldsVisitor {
    type Value = RequestFields;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RequestFields, A::Error> {
        let mut fields = RequestFields::default();
        while let Some(key) = map.next_key::<String>()? {
            let Some(index) = FIELDS.iter().position(|field| *field == key) else {
                return Err(de::Error::custom(format_args!(
                    "unknown field \"{key}\" (expected vtcr, vttbr, ipa, access, far)"
                )));
            };
            // A repeated key is ambiguous: never pick one of its values.
            if fields.values[index].is_some() {
                return Err(de::Error::custom(format_args!("duplicate field \"{key}\"")));
            }
            fields.values[index] = Some(map.next_value()?);
        }
        Ok(fields)
    }
}

impl RequestFields {
    fn get(&self, name: &str) -> Option<&Value> {
        let index = FIELDS.iter().position(|field| *field == name)?;
        self.values[index].as_ref()
    }
}

fn hex_field(fields: &RequestFields, name: &str) -> Result<Option<u64>, String> {
    crate::setup::hex_field(fields.get(name), name)
}

fn required(value: Option<u64>, name: &str) -> Result<u64, String> {
    value.ok_or_else(|| format!("missing field \"{name}\""))
}

/// Parse one input line (without its line ending).
pub fn parse_request(line: &str) -> Result<Request, String> {
    let fields: RequestFields = json_lines::parse_object(line)?;
    let vtcr = required(hex_field(&fields, "vtcr")?, "vtcr")?;
    let vttbr = required(hex_field(&fields, "vttbr")?, "vttbr")?;
    let ipa = required(hex_field(&fields, "ipa")?, "ipa")?;
    let access = access_field(fields.get("access"))?;
    Ok(Request {
        vtcr,
        vttbr,
        ipa,
        access,
        far: hex_field(&fields, "far")?,
    })
}

/// Walks requests against one machine, reusing the decoded configuration
/// while consecutive lines keep the same registers.
pub struct Session<'m, M: GuestMemory> {
    machine: &'m Machine,
    memory: M,
    walker: Option<Stage2Walker>,
}

impl<'m, M: GuestMemory> Session<'m, M> {
    pub fn new(machine: &'m Machine, memory: M) -> Self {
        Session {
            machine,
            memory,
            walker: None,
        }
    }

    /// Append the output line for `line` (no newline) to `out`; `false` if
    /// the line was malformed or could not be walked.
    pub fn process(&mut self, line: &str, out: &mut String) -> bool {
        let request = match parse_request(line) {
            Ok(request) => request,
            Err(message) => {
                error_json(out, &message);
                return false;
            }
        };
        let walker = match self.walker {
            Some(w)
                if w.registers().vtcr == request.vtcr && w.registers().vttbr == request.vttbr =>
            {
                w
            }
            _ => {
                let w = self.machine.walker(request.vtcr, request.vttbr);
                self.walker = Some(w);
                w
            }
        };
        match walker.walk(&self.memory, request.ipa, request.access) {
            Ok(translation) => {
                translation_json(out, &translation);
                true
            }
            Err(WalkError::Fault(fault)) => {
                fault_json(out, &fault, request.far);
                true
            }
            // Only another agent writing the table can cause this; nothing
            // else touches the memory of a batch run.
            Err(WalkError::Contended {
                descriptor_address, ..
            }) => {
                error_json(
                    out,
                    &format!("walk contended on the descriptor at {descriptor_address:#x}"),
                );
                false
            }
            // Memslots deny no access L1 may make (a read-only slot gives
            // the architectural fault) and are never mid a host's change;
            // a memory that is, is the host's.
            Err(denied @ (WalkError::HostDenied(_) | WalkError::HostChanging(_))) => {
                error_json(out, &denied.to_string());
                false
            }
        }
    }
}

pub fn run(args: &ArgMatches) -> Outcome {
    let machine = Machine::from_args(args)?;
    let mut storage = Vec::new();
    let memslots = machine.memslots(&mut storage)?;
    let mut session = Session::new(&machine, memslots);
    let all_good = serve(&mut session, io::stdin(), io::stdout().lock())
        .map_err(|e| format!("batch I/O: {e}"))?;
    Ok(if all_good {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reads requests from `input` until end of file and writes one answer
/// line each to `output` (the shared loop, `json_lines::serve`). Returns
/// whether every line was well-formed.
pub fn serve<M: GuestMemory>(
    session: &mut Session<'_, M>,
    input: impl Read,
    output: impl Write,
) -> io::Result<bool> {
    json_lines::serve(input, output, |line, out| match line {
        InputLine::Text(text) => session.process(text, out),
        InputLine::Refused(why) => {
            error_json(out, &why);
            false
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_hex_strings_integers_and_optional_far() {
        let r = parse_request(
            r#"{"vtcr":"0x80023558","vttbr":"0x40000000","ipa":"0x1234","access":"exec_el0"}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request {
                vtcr: 0x8002_3558,
                vttbr: 0x4000_0000,
                ipa: 0x1234,
                access: AccessKind::ExecEl0,
                far: None
            }
        );
        let r =
            parse_request(r#"{"vtcr":1,"vttbr":"2","ipa":"0x3","access":"write","far":"0xffff"}"#)
                .unwrap();
        assert_eq!((r.vtcr, r.vttbr, r.ipa, r.far), (1, 2, 3, Some(0xffff)));
        assert_eq!(r.access, AccessKind::Write);
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let cases = [
            ("", "empty line"),
            ("{", "invalid JSON"),
            ("[1]", "expected a JSON object"),
            (
                r#"{"vttbr":"0x0","ipa":"0x0","access":"read"}"#,
                "missing field \"vtcr\"",
            ),
            (
                r#"{"vtcr":"0x0","vttbr":"0x0","ipa":"0x0"}"#,
                "missing field \"access\"",
            ),
            (
                r#"{"vtcr":"0x0","vttbr":"0x0","ipa":"0xq","access":"read"}"#,
                "field \"ipa\"",
            ),
            (
                r#"{"vtcr":"0x0","vttbr":"0x0","ipa":-1,"access":"read"}"#,
                "field \"ipa\"",
            ),
            (
                r#"{"vtcr":"0x0","vttbr":"0x0","ipa":true,"access":"read"}"#,
                "field \"ipa\"",
            ),
            (
                r#"{"vtcr":"0x0","vttbr":"0x0","ipa":"0x0","access":"fetch"}"#,
                "access `fetch`",
            ),
            (
                r#"{"vtcr":"0x0","vttbr":"0x0","ipa":"0x0","access":"read","x":1}"#,
                "unknown field \"x\"",
            ),
            (
                r#"{"vtcr":"0x0","vttbr":"0x0","ipa":"0x0","ipa":"0x0","access":"read"}"#,
                "duplicate field \"ipa\"",
            ),
            (
                r#"{"vtcr":"0x0","vttbr":"0x0","ipa":"0x0","access":"read","far":1,"far":1}"#,
                "duplicate field \"far\"",
            ),
            // serde can read a struct from an array; a request is an object.
            (r#"["0x0","0x0","0x0","read"]"#, "expected a JSON object"),
            (r#"{"vtcr":"0x0"} x"#, "invalid JSON: trailing characters"),
        ];
        for (line, expected) in cases {
            let error = parse_request(line).unwrap_err();
            assert!(error.contains(expected), "{line:?}: {error}");
        }
    }
}
