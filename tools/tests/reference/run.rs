//! Running the real `s2walk batch` on a world and reading its answers into
//! the model's terms.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use super::gen::{Request, World, DEFAULT_MMFR0};
use super::model::{
    bits, esr_checked, hpfar_fipa, FaultKind, Outcome, Success, TrailEntry, ESR_CHECKED_BITS,
};
use std::fmt;

/// One answer line, normalised so that the model's outcome and s2walk's
/// line compare field by field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Ok(Success, Vec<TrailEntry>),
    Fault {
        kind: String,
        level: i64,
        fsc: u64,
        /// ESR_EL2 & ESR_CHECKED_BITS.
        esr: u64,
        /// HPFAR_EL2.FIPA bits for IPA[47:12], where HPFAR_EL2 is valid.
        fipa: Option<u64>,
        trail: Vec<TrailEntry>,
    },
    /// Anything else s2walk printed (a malformed-line error, bad JSON).
    Other(String),
}

impl Answer {
    pub fn from_model(outcome: &Outcome, request: &Request) -> Answer {
        match &outcome.result {
            Ok(s) => Answer::Ok(s.clone(), outcome.trail.clone()),
            Err(f) => Answer::Fault {
                kind: f.kind.name().to_string(),
                level: f.level as i64,
                fsc: f.kind.fsc(f.level),
                esr: esr_checked(f, request.access),
                fipa: hpfar_fipa(f, request.ipa),
                trail: outcome.trail.clone(),
            },
        }
    }

    /// The broad class of a mismatch between `self` (model) and `other`
    /// (s2walk), for grouping findings.
    pub fn mismatch_class(&self, other: &Answer) -> String {
        match (self, other) {
            (Answer::Ok(a, ta), Answer::Ok(b, tb)) => {
                let mut fields = Vec::new();
                macro_rules! cmp {
                    ($($f:ident),*) => {$(if a.$f != b.$f { fields.push(stringify!($f)); })*};
                }
                cmp!(
                    oa,
                    level,
                    size,
                    contiguous_size,
                    s2ap,
                    xn,
                    memattr,
                    sh,
                    dbm,
                    descriptor,
                    af_updated,
                    dirty_updated
                );
                if ta != tb {
                    fields.push("trail");
                }
                format!("ok/ok differ in {}", fields.join(","))
            }
            (
                Answer::Fault {
                    kind: k1,
                    level: l1,
                    fsc: f1,
                    esr: e1,
                    fipa: p1,
                    trail: t1,
                },
                Answer::Fault {
                    kind: k2,
                    level: l2,
                    fsc: f2,
                    esr: e2,
                    fipa: p2,
                    trail: t2,
                },
            ) => {
                if k1 != k2 {
                    format!("fault kind: model {k1} vs s2walk {k2}")
                } else if l1 != l2 {
                    format!("{k1} fault level: model {l1} vs s2walk {l2}")
                } else if f1 != f2 {
                    format!("{k1} fsc: model {f1:#x} vs s2walk {f2:#x}")
                } else if e1 != e2 {
                    format!("{k1} ESR_EL2 bits (EC, IL, S1PTW, WnR, FSC)")
                } else if p1 != p2 {
                    format!("{k1} HPFAR_EL2.FIPA")
                } else if t1 != t2 {
                    format!("{k1} fault trail")
                } else {
                    "equal".to_string()
                }
            }
            (Answer::Ok(..), Answer::Fault { kind, .. }) => {
                format!("model ok, s2walk {kind} fault")
            }
            (Answer::Fault { kind, .. }, Answer::Ok(..)) => {
                format!("model {kind} fault, s2walk ok")
            }
            _ => "s2walk did not answer with a translation or a fault".to_string(),
        }
    }
}

fn write_trail(f: &mut fmt::Formatter<'_>, trail: &[TrailEntry]) -> fmt::Result {
    write!(f, " trail=[")?;
    for (i, t) in trail.iter().enumerate() {
        if i > 0 {
            write!(f, ", ")?;
        }
        write!(f, "L{} {:#x}={:#x}", t.level, t.address, t.value)?;
    }
    write!(f, "]")
}

/// The same notation as the model's [`Outcome`], so the two lines of a
/// reproducer read side by side.
impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Ok(s, trail) => {
                write!(
                    f,
                    "ok oa={:#x} level={} size={:#x} contiguous_size={:#x} s2ap={} xn={} memattr={:#x} sh={} dbm={} descriptor={:#x} af_updated={} dirty_updated={}",
                    s.oa, s.level, s.size, s.contiguous_size, s.s2ap, s.xn, s.memattr, s.sh, s.dbm, s.descriptor, s.af_updated, s.dirty_updated
                )?;
                write_trail(f, trail)
            }
            Answer::Fault {
                kind,
                level,
                fsc,
                esr,
                fipa,
                trail,
            } => {
                write!(
                    f,
                    "fault {kind} level={level} fsc={fsc:#04x} esr&{ESR_CHECKED_BITS:#x}={esr:#x}"
                )?;
                if let Some(fipa) = fipa {
                    write!(f, " hpfar.fipa[IPA 47:12]={fipa:#x}")?;
                }
                write_trail(f, trail)
            }
            Answer::Other(text) => write!(f, "unexpected line: {text}"),
        }
    }
}

fn hex(line: &Value, key: &str) -> Option<u64> {
    let text = line.get(key)?.as_str()?;
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

fn trail(line: &Value) -> Option<Vec<TrailEntry>> {
    line.get("descriptors")?
        .as_array()?
        .iter()
        .map(|d| {
            Some(TrailEntry {
                level: d.get("level")?.as_i64()? as i32,
                address: hex(d, "address")?,
                value: hex(d, "value")?,
            })
        })
        .collect()
}

/// Reads one s2walk output line.
pub fn parse_answer(text: &str) -> Answer {
    let parse = || -> Option<Answer> {
        let line: Value = serde_json::from_str(text).ok()?;
        match line.get("ok")?.as_bool()? {
            true => Some(Answer::Ok(
                Success {
                    oa: hex(&line, "oa")?,
                    level: line.get("level")?.as_i64()? as i32,
                    size: hex(&line, "size")?,
                    contiguous_size: hex(&line, "contiguous_size")?,
                    s2ap: line.get("s2ap")?.as_u64()?,
                    xn: line.get("xn")?.as_u64()?,
                    memattr: hex(&line, "memattr")?,
                    sh: line.get("sh")?.as_u64()?,
                    dbm: line.get("dbm")?.as_bool()?,
                    descriptor: hex(&line, "descriptor")?,
                    af_updated: line.get("af_updated")?.as_bool()?,
                    dirty_updated: line.get("dirty_updated")?.as_bool()?,
                },
                trail(&line)?,
            )),
            false => {
                let kind = line.get("fault")?.as_str()?.to_string();
                [
                    FaultKind::Translation,
                    FaultKind::AddressSize,
                    FaultKind::AccessFlag,
                    FaultKind::Permission,
                    FaultKind::ExternalAbort,
                ]
                .iter()
                .find(|k| k.name() == kind)?;
                // HPFAR_EL2 is compared only where IPAValid() makes it valid.
                let ipa_valid = matches!(
                    kind.as_str(),
                    "translation" | "access_flag" | "address_size"
                );
                let hpfar = hex(&line, "hpfar")?;
                Some(Answer::Fault {
                    level: line.get("level")?.as_i64()?,
                    fsc: hex(&line, "fsc")?,
                    esr: hex(&line, "esr")? & ESR_CHECKED_BITS,
                    fipa: ipa_valid.then(|| bits(hpfar, 39, 4)),
                    trail: trail(&line)?,
                    kind,
                })
            }
        }
    };
    parse().unwrap_or_else(|| Answer::Other(text.to_string()))
}

/// The JSON line for a request.
pub fn request_line(r: &Request) -> String {
    format!(
        "{{\"vtcr\":\"{:#x}\",\"vttbr\":\"{:#x}\",\"ipa\":\"{:#x}\",\"access\":\"{}\"}}",
        r.vtcr,
        r.vttbr,
        r.ipa,
        r.access.name()
    )
}

/// Writes each memslot of `world` as a file in `dir`; returns the
/// `--mem`/`--mem-ro` arguments.
fn save_memory(world: &World, dir: &Path) -> Vec<String> {
    let mut args = Vec::new();
    for (i, slot) in world.memory.slots.iter().enumerate() {
        let mut bytes = vec![0u8; slot.len as usize];
        for (&address, &value) in &world.memory.words {
            if address >= slot.base && address + 8 <= slot.base + slot.len {
                let at = (address - slot.base) as usize;
                let word = if world.big_endian {
                    value.to_be_bytes()
                } else {
                    value.to_le_bytes()
                };
                bytes[at..at + 8].copy_from_slice(&word);
            }
        }
        let path = dir.join(format!("slot{i}.bin"));
        std::fs::write(&path, bytes).expect("write memslot file");
        args.push(if slot.read_only { "--mem-ro" } else { "--mem" }.to_string());
        args.push(format!("{}@{:#x}", path.display(), slot.base));
    }
    args
}

/// The command-line arguments for `world` (memslot files written to `dir`).
pub fn arguments(world: &World, dir: &Path) -> Vec<String> {
    let f = &world.features;
    let mut args = vec!["batch".to_string()];
    // Registers equal to the contract's defaults are left out, so the
    // defaults are checked too.
    for (flag, value, default) in [
        ("--mmfr0", f.mmfr0, DEFAULT_MMFR0),
        ("--mmfr1", f.mmfr1, 0),
        ("--mmfr2", f.mmfr2, 0),
    ] {
        if value != default {
            args.push(flag.to_string());
            args.push(format!("{value:#x}"));
        }
    }
    if world.big_endian {
        args.push("--big-endian".to_string());
    }
    args.extend(save_memory(world, dir));
    args
}

/// Runs `s2walk batch` on `world`'s requests in order; one answer per line.
pub fn run_s2walk(s2walk: &str, world: &World, dir: &PathBuf) -> Result<Vec<Answer>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let args = arguments(world, dir);
    let mut input = String::new();
    for r in &world.requests {
        input.push_str(&request_line(r));
        input.push('\n');
    }
    let mut child = Command::new(s2walk)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {s2walk}: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().map_err(|e| format!("wait: {e}"))?;
    writer
        .join()
        .expect("writer thread")
        .map_err(|e| format!("write stdin: {e}"))?;
    let _ = std::fs::remove_dir_all(dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "s2walk {} exited with {}: {}\n{stdout}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let answers: Vec<Answer> = stdout.lines().map(parse_answer).collect();
    if answers.len() != world.requests.len() {
        return Err(format!(
            "s2walk answered {} lines for {} requests:\n{stdout}",
            answers.len(),
            world.requests.len()
        ));
    }
    Ok(answers)
}
