//! The command line.

use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use ipc::tlbi::TlbiFeatures;
use shadow_mmu::compose::L0Region;

use crate::l0::{parse_l0_arg, parse_mmio_arg, RegionArg};
use crate::s2walk_setup::{hex_arg, parse_hex, parse_mem_arg, Machine};

/// ID_AA64ISAR0_EL1 when `--isar0` is omitted: TLB = 0b0010 (FEAT_TLBIOS
/// and FEAT_TLBIRANGE), every other field 0.
pub const DEFAULT_ISAR0: u64 = 0x0200_0000_0000_0000;
/// ID_AA64ISAR1_EL1 when `--isar1` is omitted: XS = 0 (no nXS forms).
pub const DEFAULT_ISAR1: u64 = 0;
/// The service's memory budget when `--budget` is omitted (16 MiB).
pub const DEFAULT_BUDGET: usize = 16 << 20;
/// The largest `--budget` (4 GiB): the service's shadow frame pool is
/// allocated and zeroed up front on the host, so a budget is memory the
/// replay takes at once; a larger one is refused rather than aborting on
/// a failed allocation or exhausting the machine.
pub const MAX_BUDGET: usize = 4 << 30;
/// Contexts (L1 VTTBR/VTCR/VMID combinations cached at once) when
/// `--contexts` is omitted.
pub const DEFAULT_CONTEXTS: usize = 8;

const ABOUT: &str = "Replay a trace of nested-MMU events through the real Umbra shadow-stage-2 \
service, on the host.";

const LONG_ABOUT: &str = "\
Replay a trace of nested-MMU events through the real Umbra shadow-stage-2
service (shadow-mmu's Service), on the host: to reproduce a bug from a recorded
run, or to measure a fault pattern. JSON lines in on stdin, one JSON line out
per line in, in order.

L1's memory: each --mem FILE@HEXADDR is one memslot of L1's IPA space (as in
s2walk: a regular file, 8-byte aligned, length a non-zero multiple of 8, no
overlaps; --mem-ro read-only), where the walker reads L1's stage-2 tables and
where `write` events store. Descriptors are little-endian unless --big-endian.

L0's map of L1: each --l0 L1IPA:SIZE:PA[:PERMS] maps an L1 IPA range to host
PAs (hex, 4 KiB multiples; PERMS letters r, w, x, or - for none; default rwx),
Normal write-back, inner shareable. --mmio L1IPA:SIZE is a device L0 emulates.
Without --l0, each --mem slot is L1 memory at PA = its L1 IPA + 0x10000000000,
widened to whole pages. Any other L1 IPA is outside L1's memory.

ID registers L1 is shown, when omitted:
  --mmfr0 0x22200100005  PARange 48 bits, 4K/16K/64K at stage 2, no LPA/LPA2
  --mmfr1 0x0            no HAFDBS, no XNX
  --mmfr2 0x0            no TTST
  --isar0 0x200000000000000  TLB = 2: FEAT_TLBIOS and FEAT_TLBIRANGE
  --isar1 0x0            XS = 0: no nXS TLBI forms

Service: --budget BYTES (default 16M; K/M/G suffixes, or hex) and --contexts N
(default 8) size it; the budget, at most 4G, is allocated up front. The shadows
are those of a 48-bit host with FEAT_XNX.

--check: compare every translate's answer (mapped, inject, mmio, outside,
l0_denied) with a fresh walk of L1's current memory composed with L0's current
map. Where they differ, the walks a TLB with walk caches could still hold are
searched (valid descriptors each address held since the last TLBI covering it;
a fault only from memory): none gives the answer -> a line with \"ok\":false,
\"check\":\"stale\"; one does -> \"stale_allowed\" with that walk in a note;
the search hit its bound -> \"unchecked\". --ignore-tlbis acknowledges L1's
TLBIs without applying them (a defective L0, like hv's demo-no-tlbi twin):
what a lost TLBI does, and that --check catches it.

Exit status: 0 success; 1 a malformed line or a failed check; 2 bad arguments
or unreadable files (one error line).";

/// A byte count: decimal, `0x` hex, or decimal with a K, M or G suffix
/// (powers of 1024).
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let (digits, shift) = match trimmed.char_indices().last() {
        Some((at, 'K' | 'k')) => (&trimmed[..at], 10),
        Some((at, 'M' | 'm')) => (&trimmed[..at], 20),
        Some((at, 'G' | 'g')) => (&trimmed[..at], 30),
        _ => (trimmed, 0),
    };
    let value = if shift == 0 && (digits.starts_with("0x") || digits.starts_with("0X")) {
        parse_hex(digits)?
    } else {
        digits
            .parse::<u64>()
            .map_err(|_| format!("`{text}` is not a byte count (e.g. 16M, 65536, 0x10000)"))?
    };
    value
        .checked_mul(1 << shift)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| format!("`{text}` is too large"))
}

pub fn command() -> Command {
    Command::new("shadow-replay")
        .about(ABOUT)
        .long_about(LONG_ABOUT)
        .arg(hex_arg(
            "mmfr0",
            "ID_AA64MMFR0_EL1 shown to L1 [default: 0x22200100005]",
        ))
        .arg(hex_arg("mmfr1", "ID_AA64MMFR1_EL1 shown to L1 [default: 0x0]"))
        .arg(hex_arg("mmfr2", "ID_AA64MMFR2_EL1 shown to L1 [default: 0x0]"))
        .arg(hex_arg(
            "isar0",
            "ID_AA64ISAR0_EL1 shown to L1: which TLBI forms exist [default: 0x200000000000000]",
        ))
        .arg(hex_arg(
            "isar1",
            "ID_AA64ISAR1_EL1 shown to L1: the nXS forms [default: 0x0]",
        ))
        .arg(
            Arg::new("mem")
                .long("mem")
                .value_name("FILE@HEXADDR")
                .help("L1 memory: FILE's bytes at L1 IPA HEXADDR (repeatable)")
                .action(ArgAction::Append)
                .value_parser(parse_mem_arg),
        )
        .arg(
            Arg::new("mem-ro")
                .long("mem-ro")
                .value_name("FILE@HEXADDR")
                .help("Read-only L1 memory (repeatable)")
                .action(ArgAction::Append)
                .value_parser(parse_mem_arg),
        )
        .arg(
            Arg::new("big-endian")
                .long("big-endian")
                .help("L1's descriptors are big-endian (SCTLR_EL2.EE = 1)")
                .action(ArgAction::SetTrue),
        )
        .arg(
            Arg::new("l0")
                .long("l0")
                .value_name("L1IPA:SIZE:PA[:PERMS]")
                .help("L0's map of L1 memory (repeatable) [default: each --mem at PA = IPA + 0x10000000000]")
                .action(ArgAction::Append)
                .value_parser(parse_l0_arg),
        )
        .arg(
            Arg::new("mmio")
                .long("mmio")
                .value_name("L1IPA:SIZE")
                .help("A device L0 emulates for L1 (repeatable)")
                .action(ArgAction::Append)
                .value_parser(parse_mmio_arg),
        )
        .arg(
            Arg::new("budget")
                .long("budget")
                .value_name("BYTES")
                .help("The service's memory budget [default: 16M]")
                .value_parser(parse_bytes),
        )
        .arg(
            Arg::new("contexts")
                .long("contexts")
                .value_name("N")
                .help("Contexts the service keeps at once [default: 8]")
                .value_parser(value_parser!(u64).range(1..)),
        )
        .arg(
            Arg::new("ignore-tlbis")
                .long("ignore-tlbis")
                .help(
                    "Acknowledge L1's TLBIs without applying them to the service, as hv's \
                     demo-no-tlbi twin does: what a lost TLBI does (and that --check sees it)",
                )
                .action(ArgAction::SetTrue),
        )
        .arg(
            Arg::new("check")
                .long("check")
                .help("Check every answer against a fresh walk composed with L0's map")
                .action(ArgAction::SetTrue),
        )
}

/// Everything the arguments give, files loaded.
pub struct Options {
    pub machine: Machine,
    /// `--l0` and `--mmio` regions; `None`: the default map.
    pub l0: Option<Vec<L0Region>>,
    pub mmio: Vec<L0Region>,
    pub budget: usize,
    pub contexts: usize,
    pub tlbi_features: TlbiFeatures,
    pub check: bool,
    /// TLBIs are decoded and reported but not applied (a defective L0).
    pub ignore_tlbis: bool,
}

impl Options {
    pub fn from_matches(matches: &ArgMatches) -> Result<Options, String> {
        let regions = |id: &str| -> Vec<L0Region> {
            matches
                .get_many::<RegionArg>(id)
                .into_iter()
                .flatten()
                .map(|r| r.0)
                .collect()
        };
        let l0 = regions("l0");
        let get = |id: &str, default: u64| matches.get_one::<u64>(id).copied().unwrap_or(default);
        Ok(Options {
            machine: Machine::from_args(matches)?,
            l0: (!l0.is_empty()).then_some(l0),
            mmio: regions("mmio"),
            budget: match matches.get_one::<usize>("budget").copied() {
                Some(budget) if budget > MAX_BUDGET => {
                    return Err(format!(
                        "--budget {budget:#x} is over {MAX_BUDGET:#x} (4G): the shadow frame \
                         pool is allocated and zeroed up front"
                    ))
                }
                Some(budget) => budget,
                None => DEFAULT_BUDGET,
            },
            contexts: match matches.get_one::<u64>("contexts") {
                // Beyond usize is beyond any budget: Budget refuses it.
                Some(&n) => usize::try_from(n).unwrap_or(usize::MAX),
                None => DEFAULT_CONTEXTS,
            },
            tlbi_features: TlbiFeatures::from_id_registers(
                get("isar0", DEFAULT_ISAR0),
                get("isar1", DEFAULT_ISAR1),
            ),
            check: matches.get_flag("check"),
            ignore_tlbis: matches.get_flag("ignore-tlbis"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_take_suffixes_and_hex() {
        assert_eq!(parse_bytes("16M"), Ok(16 << 20));
        assert_eq!(parse_bytes("4k"), Ok(4096));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("0x1000"), Ok(4096));
        for bad in ["", "M", "-1", "1.5M", "0xzz", "99999999999999999999G", "1T"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_show_the_range_and_outer_forms_but_not_nxs() {
        let f = TlbiFeatures::from_id_registers(DEFAULT_ISAR0, DEFAULT_ISAR1);
        assert!(f.range && f.outer_shareable && !f.nxs);
        assert!(LONG_ABOUT.contains(&format!("--isar0 {DEFAULT_ISAR0:#x}")));
        assert!(LONG_ABOUT.contains(&format!(
            "--mmfr0 {:#x}",
            crate::s2walk_setup::DEFAULT_MMFR0
        )));
        assert!(LONG_ABOUT.contains(&format!("{:#x}", crate::l0::DEFAULT_PA_OFFSET)));
    }
}
