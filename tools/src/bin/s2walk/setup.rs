//! Command line, ID registers and memory: what every subcommand shares.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;

use clap::{value_parser, Arg, ArgAction, ArgMatches, Command};
use walker::{
    fill_words_from_bytes, AccessKind, Endianness, ExposedFeatures, IdRegisters, Memslot,
    MemslotError, Memslots, SlotAccess, Stage2Registers, Stage2Walker,
};

/// ID_AA64MMFR0_EL1 when `--mmfr0` is omitted: PARange 0b0101 (48 bits),
/// TGran4 = 0b0000, TGran64 = 0b0000, TGran16 = 0b0001 (supported, no
/// 52-bit), TGran16_2 = TGran64_2 = TGran4_2 = 0b0010 (supported at stage 2,
/// no 52-bit), every other field 0.
pub const DEFAULT_MMFR0: u64 = 0x0000_0222_0010_0005;
/// ID_AA64MMFR1_EL1 when `--mmfr1` is omitted: HAFDBS = 0, XNX = 0.
pub const DEFAULT_MMFR1: u64 = 0;
/// ID_AA64MMFR2_EL1 when `--mmfr2` is omitted: ST = 0 (no FEAT_TTST).
pub const DEFAULT_MMFR2: u64 = 0;

const ABOUT: &str = "Walk arm64 stage-2 translation tables held in memory image files, \
as a hypervisor (L0) walks the table its guest hypervisor (L1) wrote.";

const LONG_ABOUT: &str = "\
Walk arm64 stage-2 translation tables held in memory image files, as a
hypervisor (L0) walks the table its guest hypervisor (L1) wrote, following the
Arm ARM pseudocode (AArch64.S2Walk).

Memory: each --mem FILE@HEXADDR is one memslot holding the bytes of FILE at
guest-physical address HEXADDR (a regular file, 8-byte aligned; the file
length must be a non-zero multiple of 8; slots must not overlap). --mem-ro adds a read-only
slot (a hardware AF/dirty update there is refused: external abort). A
descriptor read outside every slot is a synchronous external abort on the
walk. Hardware AF/dirty updates change the in-memory copy only, never FILE,
and persist for the rest of the run.

Byte order: descriptors are little-endian (SCTLR_EL2.EE = 0) unless
--big-endian (SCTLR_EL2.EE = 1) is given.

ID registers (what L0 exposes to L1), when omitted:
  --mmfr0 0x22200100005  PARange 48 bits; 4K, 16K and 64K granules at stage 2
                        (TGran4_2 = TGran16_2 = TGran64_2 = 0b0010, TGran16 = 1),
                        no 52-bit (LPA/LPA2) support
  --mmfr1 0x0           HAFDBS = 0 (no hardware AF/dirty), XNX = 0
                        (HAFDBS 1: AF, 2: AF and dirty, 3: also AF in table
                        descriptors, FEAT_HAFT, with VTCR_EL2.HAFT = bit 44)
  --mmfr2 0x0           ST = 0 (no FEAT_TTST)

Exit status: 0 success; 1 a malformed batch line, a faulting walk or an
incomplete dump; 2 bad arguments or unreadable files.";

const BATCH_ABOUT: &str = "Translate JSON lines from stdin, one JSON line out per line in";

const BATCH_LONG_ABOUT: &str = "\
Translate JSON lines from stdin; print one JSON line per input line, in order.

Input:  {\"vtcr\":\"0x..\",\"vttbr\":\"0x..\",\"ipa\":\"0x..\",\"access\":\"read\"|\"write\"|\"exec\"|\"exec_el0\"}
        (exec = instruction fetch at EL1, exec_el0 at EL0; optional \"far\":\"0x..\"
        is the L2 virtual address reported in FAR_EL2, otherwise 0).
        Values are hex strings (0x prefix optional) or JSON integers (decimal:
        \"ipa\":16 and \"ipa\":\"0x10\" are the same IPA). Each key at most once.
Success: {\"ok\":true,\"oa\":\"0x..\",\"level\":N,\"size\":\"0x..\",\"contiguous_size\":\"0x..\",
         \"s2ap\":N,\"xn\":N,\"memattr\":\"0x.\",\"sh\":N,\"dbm\":B,\"descriptor\":\"0x..\",
         \"af_updated\":B,\"dirty_updated\":B,\"descriptors\":[{\"level\":N,\"address\":\"0x..\",\"value\":\"0x..\"},..]}
Fault:  {\"ok\":false,\"fault\":\"translation\"|\"address_size\"|\"access_flag\"|\"permission\"|\"external_abort\",
         \"level\":N,\"fsc\":\"0x..\",\"cause\":\"..\",\"esr\":\"0x..\",\"hpfar\":\"0x..\",[\"far\":\"0x..\",]\"descriptors\":[..]}
Malformed line: {\"ok\":false,\"error\":\"..\"}; the run goes on and exits with status 1.

Output is flushed whenever no further input is already waiting, so the tool
can be driven line by line through a pipe while large batches stay buffered.";

/// A `--mem`/`--mem-ro` argument: a file and the guest-physical address it
/// is mapped at.
#[derive(Clone, Debug)]
pub struct MemArg {
    pub path: PathBuf,
    pub base: u64,
}

/// Parse a 64-bit hex value: optional `0x`, hex digits, optional `_`.
pub fn parse_hex(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    let cleaned: String = digits.chars().filter(|c| *c != '_').collect();
    if cleaned.is_empty() {
        return Err(format!("`{text}` is not a hex number"));
    }
    if let Some(bad) = cleaned.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!("`{text}` is not a hex number (bad digit `{bad}`)"));
    }
    u64::from_str_radix(&cleaned, 16).map_err(|_| format!("`{text}` does not fit in 64 bits"))
}

/// A JSON field holding an address or register value: a hex string
/// (`0x` optional) or an integer in 0..2^64; `None` when absent.
pub fn hex_field(value: Option<&serde_json::Value>, name: &str) -> Result<Option<u64>, String> {
    match value {
        None => Ok(None),
        Some(serde_json::Value::String(text)) => parse_hex(text)
            .map(Some)
            .map_err(|e| format!("field \"{name}\": {e}")),
        Some(serde_json::Value::Number(number)) => number
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("field \"{name}\": {number} is not an integer in 0..2^64")),
        Some(other) => Err(format!(
            "field \"{name}\" must be a hex string like \"0x1000\", not {other}"
        )),
    }
}

/// The JSON field `access` of a request: one of [`parse_access`]'s words.
pub fn access_field(value: Option<&serde_json::Value>) -> Result<AccessKind, String> {
    match value {
        None => Err("missing field \"access\"".to_string()),
        Some(serde_json::Value::String(text)) => parse_access(text),
        Some(other) => Err(format!(
            "field \"access\" must be \"read\", \"write\", \"exec\" or \"exec_el0\", not {other}"
        )),
    }
}

/// A `--mem FILE@HEXADDR` argument.
pub fn parse_mem_arg(text: &str) -> Result<MemArg, String> {
    let (path, base) = text
        .rsplit_once('@')
        .ok_or_else(|| format!("`{text}` is not FILE@HEXADDR"))?;
    if path.is_empty() {
        return Err(format!("`{text}` has no file name before `@`"));
    }
    Ok(MemArg {
        path: PathBuf::from(path),
        base: parse_hex(base)?,
    })
}

pub fn parse_access(text: &str) -> Result<AccessKind, String> {
    match text {
        "read" => Ok(AccessKind::Read),
        "write" => Ok(AccessKind::Write),
        "exec" => Ok(AccessKind::ExecEl1),
        "exec_el0" => Ok(AccessKind::ExecEl0),
        other => Err(format!(
            "access `{other}` is not one of read, write, exec, exec_el0"
        )),
    }
}

/// `--NAME HEX`: an option whose value reads with [`parse_hex`].
pub fn hex_arg(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .value_name("HEX")
        .help(help)
        .value_parser(parse_hex)
}

/// Options every subcommand takes: ID registers, memory, byte order.
fn machine_args() -> Vec<Arg> {
    vec![
        hex_arg(
            "mmfr0",
            "ID_AA64MMFR0_EL1 exposed to L1 [default: 0x22200100005]",
        ),
        hex_arg("mmfr1", "ID_AA64MMFR1_EL1 exposed to L1 [default: 0x0]"),
        hex_arg("mmfr2", "ID_AA64MMFR2_EL1 exposed to L1 [default: 0x0]"),
        Arg::new("mem")
            .long("mem")
            .value_name("FILE@HEXADDR")
            .help("A read-write memslot: FILE's bytes at guest-physical HEXADDR (repeatable)")
            .action(ArgAction::Append)
            .value_parser(parse_mem_arg),
        Arg::new("mem-ro")
            .long("mem-ro")
            .value_name("FILE@HEXADDR")
            .help("A read-only memslot (repeatable)")
            .action(ArgAction::Append)
            .value_parser(parse_mem_arg),
        Arg::new("big-endian")
            .long("big-endian")
            .help("Descriptors are big-endian (L1's SCTLR_EL2.EE = 1)")
            .action(ArgAction::SetTrue),
    ]
}

fn table_args() -> Vec<Arg> {
    vec![
        hex_arg("vtcr", "L1's VTCR_EL2").required(true),
        hex_arg("vttbr", "L1's VTTBR_EL2").required(true),
    ]
}

pub fn command() -> Command {
    Command::new("s2walk")
        .about(ABOUT)
        .long_about(LONG_ABOUT)
        .subcommand_required(true)
        .subcommand(
            Command::new("batch")
                .about(BATCH_ABOUT)
                .long_about(BATCH_LONG_ABOUT)
                .args(machine_args()),
        )
        .subcommand(
            Command::new("walk")
                .about("Translate one IPA and print each level's descriptor and its decoding")
                .args(machine_args())
                .args(table_args())
                .arg(hex_arg("ipa", "The IPA to translate").required(true))
                .arg(
                    Arg::new("access")
                        .long("access")
                        .value_name("KIND")
                        .help("read, write, exec (EL1 fetch) or exec_el0 (EL0 fetch)")
                        .default_value("read")
                        .value_parser(parse_access),
                )
                .arg(hex_arg(
                    "far",
                    "L2 virtual address for FAR_EL2 in the fault report [default: 0]",
                )),
        )
        .subcommand(
            Command::new("dump")
                .about("Print every valid mapping of the table as merged IPA -> OA ranges")
                .args(machine_args())
                .args(table_args())
                .arg(
                    Arg::new("max-reads")
                        .long("max-reads")
                        .value_name("N")
                        .help(
                            "Stop (exit status 1) after reading this many descriptors \
                             [default: the most a dump of the memory given can need]",
                        )
                        .value_parser(value_parser!(u64).range(1..)),
                ),
        )
}

/// The machine L1 runs on as far as a walk sees it.
pub struct Machine {
    pub features: ExposedFeatures,
    pub endianness: Endianness,
    images: Vec<(MemArg, SlotAccess, Vec<AtomicU64>)>,
}

impl Machine {
    /// ID registers, byte order and every memory file from the arguments.
    pub fn from_args(args: &ArgMatches) -> Result<Machine, String> {
        let ids = IdRegisters {
            mmfr0: args
                .get_one::<u64>("mmfr0")
                .copied()
                .unwrap_or(DEFAULT_MMFR0),
            mmfr1: args
                .get_one::<u64>("mmfr1")
                .copied()
                .unwrap_or(DEFAULT_MMFR1),
            mmfr2: args
                .get_one::<u64>("mmfr2")
                .copied()
                .unwrap_or(DEFAULT_MMFR2),
        };
        let features = ExposedFeatures::from_id_registers(ids)
            .map_err(|e| format!("ID registers rejected: {e}"))?;
        let endianness = if args.get_flag("big-endian") {
            Endianness::Big
        } else {
            Endianness::Little
        };
        let mut images = Vec::new();
        for (id, access) in [
            ("mem", SlotAccess::ReadWrite),
            ("mem-ro", SlotAccess::ReadOnly),
        ] {
            for arg in args.get_many::<MemArg>(id).into_iter().flatten() {
                let words = load_image(arg)?;
                images.push((arg.clone(), access, words));
            }
        }
        if images.is_empty() {
            return Err("no memory given: pass at least one --mem FILE@HEXADDR".to_string());
        }
        Ok(Machine {
            features,
            endianness,
            images,
        })
    }

    /// The memslots over the loaded images (validated: aligned, no overlap).
    pub fn memslots<'a>(
        &'a self,
        storage: &'a mut Vec<Memslot<'a>>,
    ) -> Result<Memslots<'a>, String> {
        storage.clear();
        storage.extend(
            self.images
                .iter()
                .map(|(arg, access, words)| Memslot::new(arg.base, words, *access)),
        );
        Memslots::new(storage).map_err(|e| self.describe_slot_error(e))
    }

    fn name_of(&self, base: u64) -> String {
        self.images
            .iter()
            .find(|(arg, _, _)| arg.base == base)
            .map_or_else(
                || format!("{base:#x}"),
                |(arg, _, _)| format!("{}@{base:#x}", arg.path.display()),
            )
    }

    fn describe_slot_error(&self, error: MemslotError) -> String {
        match error {
            MemslotError::Misaligned { base } => format!(
                "memory {} is not 8-byte aligned (descriptors are 8 bytes)",
                self.name_of(base)
            ),
            MemslotError::Empty { base } => format!("memory {} is empty", self.name_of(base)),
            MemslotError::WrapsAround { base } => format!(
                "memory {} runs past the end of the 64-bit address space",
                self.name_of(base)
            ),
            MemslotError::Overlap { first, second } => format!(
                "memory {} and {} overlap",
                self.name_of(first),
                self.name_of(second)
            ),
        }
    }

    /// A walker for L1's registers on this machine.
    pub fn walker(&self, vtcr: u64, vttbr: u64) -> Stage2Walker {
        Stage2Walker::new(
            Stage2Registers {
                vtcr,
                vttbr,
                endianness: self.endianness,
            },
            &self.features,
        )
    }
}

/// Bytes read from a `--mem` file at a time: the file is never held in
/// memory beside its words.
const LOAD_CHUNK: usize = 64 * 1024;

/// The words of a `--mem` file, read in bounded chunks into one allocation
/// of the file's size that is reserved up front (a refused allocation is an
/// error line, not an abort).
fn load_image(arg: &MemArg) -> Result<Vec<AtomicU64>, String> {
    let name = arg.path.display();
    // Checked on the path before opening: opening a FIFO blocks until a
    // writer appears, and a device has no length to read up to. (A file
    // swapped for one in between is caught by the second check below,
    // unless the swap is to a FIFO: not a case a command-line tool defends.)
    let metadata = std::fs::metadata(&arg.path).map_err(|e| format!("cannot read {name}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!(
            "memory file {name} is not a regular file (a directory, device or FIFO has no fixed length)"
        ));
    }
    let mut file = File::open(&arg.path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let metadata = file
        .metadata()
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("memory file {name} is not a regular file"));
    }
    let length = metadata.len();
    if length == 0 {
        return Err(format!("memory file {name} is empty"));
    }
    if length % 8 != 0 {
        return Err(format!(
            "memory file {name} is {length} bytes, not a multiple of 8 (descriptors are 8 bytes)"
        ));
    }
    let too_big =
        |reason: String| format!("memory file {name} ({length} bytes) cannot be loaded: {reason}");
    let word_count = usize::try_from(length / 8)
        .map_err(|_| too_big("too large for this machine".to_string()))?;
    let mut words: Vec<AtomicU64> = Vec::new();
    words
        .try_reserve_exact(word_count)
        .map_err(|e| too_big(e.to_string()))?;
    words.resize_with(word_count, || AtomicU64::new(0));
    let mut buffer = vec![0u8; LOAD_CHUNK];
    for chunk in words.chunks(LOAD_CHUNK / 8) {
        let bytes = &mut buffer[..chunk.len() * 8];
        file.read_exact(bytes).map_err(|e| {
            if e.kind() == ErrorKind::UnexpectedEof {
                format!("cannot read {name}: it shrank below {length} bytes while being read")
            } else {
                format!("cannot read {name}: {e}")
            }
        })?;
        fill_words_from_bytes(chunk, bytes).map_err(|e| format!("loading {name}: {e}"))?;
    }
    // No silent truncation: a file that grew while being read is refused.
    match file.read(&mut buffer[..1]) {
        Ok(0) => Ok(words),
        Ok(_) => Err(format!(
            "cannot read {name}: it grew beyond {length} bytes while being read"
        )),
        Err(e) => Err(format!("cannot read {name}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_parsing_accepts_prefixes_and_separators_and_rejects_garbage() {
        assert_eq!(parse_hex("0x10"), Ok(16));
        assert_eq!(parse_hex("10"), Ok(16));
        assert_eq!(parse_hex("0XfF_00"), Ok(0xff00));
        assert_eq!(parse_hex("0xffffffffffffffff"), Ok(u64::MAX));
        assert!(parse_hex("0x1_0000_0000_0000_0000").is_err());
        assert!(parse_hex("0x").is_err());
        assert!(parse_hex("").is_err());
        assert!(parse_hex("0xg").is_err());
        assert!(parse_hex("-1").is_err());
    }

    #[test]
    fn mem_argument_splits_at_the_last_at_sign() {
        let arg = parse_mem_arg("dir@x/table.bin@0x4000_0000").unwrap();
        assert_eq!(arg.path, PathBuf::from("dir@x/table.bin"));
        assert_eq!(arg.base, 0x4000_0000);
        assert!(parse_mem_arg("table.bin").is_err());
        assert!(parse_mem_arg("@0x1000").is_err());
        assert!(parse_mem_arg("t.bin@zz").is_err());
    }

    #[test]
    fn hafdbs_3_is_feat_haft_and_walks_set_table_access_flags() {
        use walker::{AccessKind, HardwareUpdates};
        // 4K from level 2 (T0SZ 34): a table descriptor with AF clear at
        // 0x4000_0000 to the page table at 0x4000_1000, which maps page 0.
        let mut image = vec![0u8; 0x2000];
        image[..8].copy_from_slice(&(0x4000_1000u64 | 3).to_le_bytes());
        let page = 0x8000_0000u64 | (1 << 10) | (3 << 6) | (0xf << 2) | 3;
        image[0x1000..0x1008].copy_from_slice(&page.to_le_bytes());
        let path = std::env::temp_dir().join(format!("s2walk-haft-{}.bin", std::process::id()));
        std::fs::write(&path, &image).unwrap();
        let mem = format!("{}@0x40000000", path.display());
        let args = command()
            .try_get_matches_from(["s2walk", "batch", "--mmfr1", "0x3", "--mem", &mem])
            .unwrap();
        let machine = Machine::from_args(args.subcommand().unwrap().1);
        std::fs::remove_file(&path).unwrap();
        let machine = machine.unwrap();
        assert_eq!(
            machine.features.hardware_updates(),
            HardwareUpdates::AccessFlagDirtyAndTables
        );
        // VTCR_EL2: T0SZ 34, SL0 0 (level 2), PS 48 bits, HA, HAFT (bit 44).
        let vtcr = 34 | (5 << 16) | (1 << 21) | (1 << 44);
        let walker = machine.walker(vtcr, 0x4000_0000);
        let mut storage = Vec::new();
        let memslots = machine.memslots(&mut storage).unwrap();
        let t = walker.walk(&memslots, 0x123, AccessKind::Read).unwrap();
        assert_eq!(t.output_address, 0x8000_0123);
        let table = memslots.slots()[0].words()[0].load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(u64::from_le(table), 0x4000_1000 | (1 << 10) | 3);
    }

    #[test]
    fn default_id_registers_are_48_bit_all_granules_no_lpa2_no_hafdbs() {
        use walker::{Granule, GranuleSupport, HardwareUpdates};
        let f = ExposedFeatures::from_id_registers(IdRegisters {
            mmfr0: DEFAULT_MMFR0,
            mmfr1: DEFAULT_MMFR1,
            mmfr2: DEFAULT_MMFR2,
        })
        .unwrap();
        assert_eq!(f.pa_max_bits(), 48);
        for g in [Granule::K4, Granule::K16, Granule::K64] {
            assert_eq!(f.stage2_granule(g), GranuleSupport::Supported, "{g:?}");
        }
        assert_eq!(f.hardware_updates(), HardwareUpdates::None);
        assert!(!f.ttst());
        assert!(LONG_ABOUT.contains(&format!("--mmfr0 {DEFAULT_MMFR0:#x}")));
    }
}
