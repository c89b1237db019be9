//! Conformance of `s2walk batch` to the Arm ARM (DDI 0487) stage-2
//! pseudocode, on the corners where implementations most often differ.
//!
//! Every expectation here was derived from the pseudocode function named in
//! the test's comment (AArch64.S2Translate, AArch64.S2Walk and what they
//! call), not from the walker. Tables are built word by word in temporary
//! memory-image files and the real binary is run on them through the
//! JSON-lines contract, exactly as an independent implementation would be
//! compared with it.
//!
//! Where the architecture leaves a choice (CONSTRAINED UNPREDICTABLE or
//! IMPLEMENTATION DEFINED), the test says so and checks the walker's
//! documented choice.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

const S2WALK: &str = env!("CARGO_BIN_EXE_s2walk");

// ---------------------------------------------------------------------------
// The CPU L0 exposes: ID_AA64MMFR0/1/2_EL1.

#[derive(Clone, Copy)]
struct Cpu {
    mmfr0: u64,
    mmfr1: u64,
    mmfr2: u64,
}

/// ID_AA64MMFR0_EL1.PARange encodings.
const PA_32: u64 = 0b0000;
const PA_40: u64 = 0b0010;
const PA_42: u64 = 0b0011;
const PA_44: u64 = 0b0100;
const PA_48: u64 = 0b0101;
const PA_52: u64 = 0b0110;

impl Cpu {
    /// Every granule at stage 2 (TGran4_2/16_2/64_2 = 0b0010), 48-bit
    /// formats only, no HAFDBS, no XNX, no TTST.
    fn with_pa(parange: u64) -> Cpu {
        Cpu {
            mmfr0: parange | (0b0010 << 32) | (0b0010 << 36) | (0b0010 << 40),
            mmfr1: 0,
            mmfr2: 0,
        }
    }

    /// FEAT_LPA2 for 4KB and 16KB: TGran4 = 0b0001, TGran16 = 0b0010,
    /// TGran4_2 = TGran16_2 = 0b0011.
    fn lpa2(mut self) -> Cpu {
        self.mmfr0 &= !((0xf << 28) | (0xf << 20) | (0xf << 32) | (0xf << 40));
        self.mmfr0 |= (0b0001 << 28) | (0b0010 << 20) | (0b0011 << 32) | (0b0011 << 40);
        self
    }

    /// What hv shows its guest hypervisor on a host with FEAT_LPA2 (QEMU's
    /// `-cpu max`; hv/src/nested/idregs.rs `shown_to_l1`): MMFR0 with
    /// PARange 40 bits (`L1_PA_RANGE`), BigEnd 0, the host's FEAT_LPA2 at
    /// stage 1 (TGran4 0b0001, TGran16 0b0010, TGran64 0b0000) and a 4KB
    /// stage 2 without it (TGran4_2 0b0010, TGran16_2 = TGran64_2 =
    /// 0b0001); ASIDBits and SNSMem as the host's. MMFR1: HAFDBS 0, VH,
    /// the host's XNX. MMFR2: the host's ST, no NV/FWB/TTL/EVT.
    fn hv_l1() -> Cpu {
        Cpu {
            mmfr0: PA_40
                | (0b0010 << 4)
                | (0b0001 << 12)
                | (0b0010 << 20)
                | (0b0001 << 28)
                | (0b0001 << 32)
                | (0b0001 << 36)
                | (0b0010 << 40),
            mmfr1: (1 << 8) | (1 << 28),
            mmfr2: 1 << 28,
        }
    }

    /// ID_AA64MMFR1_EL1.HAFDBS.
    fn hafdbs(mut self, value: u64) -> Cpu {
        self.mmfr1 = (self.mmfr1 & !0xf) | value;
        self
    }

    /// ID_AA64MMFR1_EL1.XNX = 1.
    fn xnx(mut self) -> Cpu {
        self.mmfr1 |= 1 << 28;
        self
    }

    /// ID_AA64MMFR2_EL1.ST = 1 (FEAT_TTST).
    fn ttst(mut self) -> Cpu {
        self.mmfr2 |= 1 << 28;
        self
    }
}

// ---------------------------------------------------------------------------
// What L1 programs: VTCR_EL2 and VTTBR_EL2.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Granule {
    K4,
    K16,
    K64,
}

impl Granule {
    fn bits(self) -> u32 {
        match self {
            Granule::K4 => 12,
            Granule::K16 => 14,
            Granule::K64 => 16,
        }
    }

    fn stride(self) -> u32 {
        self.bits() - 3
    }

    /// VTCR_EL2.TG0.
    fn tg0(self) -> u64 {
        match self {
            Granule::K4 => 0b00,
            Granule::K64 => 0b01,
            Granule::K16 => 0b10,
        }
    }
}

/// VTCR_EL2.PS encodings.
const PS_32: u64 = 0b000;
const PS_40: u64 = 0b010;
const PS_48: u64 = 0b101;
const PS_52: u64 = 0b110;

const VTCR_HA: u64 = 1 << 21;
const VTCR_HD: u64 = 1 << 22;
const VTCR_DS: u64 = 1 << 32;
const VTCR_SL2: u64 = 1 << 33;

/// VTCR_EL2 with RES1 bit 31, write-back inner-shareable walks.
fn vtcr(granule: Granule, t0sz: u64, sl0: u64, ps: u64) -> u64 {
    (1 << 31)
        | t0sz
        | (sl0 << 6)
        | (0b01 << 8)
        | (0b01 << 10)
        | (0b11 << 12)
        | (granule.tg0() << 14)
        | (ps << 16)
}

// ---------------------------------------------------------------------------
// Descriptors (VMSAv8-64 stage 2).

/// How output and table addresses are encoded in descriptors.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    /// Bits 47:granule only.
    Bits48,
    /// FEAT_LPA, 64KB: OA[51:48] in bits 15:12.
    Lpa64k,
    /// FEAT_LPA2, DS = 1: OA[49:48] in place, OA[51:50] in bits 9:8.
    Lpa2,
}

impl Format {
    /// The address bits of a descriptor for `address` (already aligned).
    fn address(self, address: u64) -> u64 {
        let low = address & 0x0000_ffff_ffff_f000;
        match self {
            Format::Bits48 => {
                assert_eq!(address >> 48, 0, "{address:#x} needs a 52-bit format");
                low
            }
            Format::Lpa64k => low | (((address >> 48) & 0xf) << 12),
            Format::Lpa2 => low | (address & (3 << 48)) | (((address >> 50) & 3) << 8),
        }
    }

    fn table(self, address: u64) -> u64 {
        self.address(address) | 0b11
    }
}

const BLOCK: u64 = 0b01;
const PAGE: u64 = 0b11;
const MEMATTR_NORMAL_WB: u64 = 0b1111 << 2;
const MEMATTR_DEVICE_NGNRE: u64 = 0b0001 << 2;
const S2AP_NONE: u64 = 0b00 << 6;
const S2AP_RO: u64 = 0b01 << 6;
const S2AP_WO: u64 = 0b10 << 6;
const S2AP_RW: u64 = 0b11 << 6;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const NT: u64 = 1 << 16;
const DBM: u64 = 1 << 51;
const CONTIGUOUS: u64 = 1 << 52;
const XN_00: u64 = 0b00 << 53;
const XN_01: u64 = 0b01 << 53;
const XN_10: u64 = 0b10 << 53;
const XN_11: u64 = 0b11 << 53;

/// Leaf attributes of a read-write, normal, accessed mapping (SH omitted
/// so that LPA2 bits 9:8 stay free for OA[51:50]).
const RW: u64 = MEMATTR_NORMAL_WB | S2AP_RW | AF;

// ---------------------------------------------------------------------------
// Guest memory: descriptor words, saved as 64KB memslot files.

const CHUNK: u64 = 0x1_0000;

#[derive(Default)]
struct Memory {
    words: BTreeMap<u64, u64>,
    read_only: bool,
    /// Chunks given as read-only memslots whatever `read_only` says.
    read_only_chunks: Vec<u64>,
}

impl Memory {
    fn put(&mut self, address: u64, value: u64) {
        assert_eq!(address % 8, 0);
        self.words.insert(address, value);
    }

    /// One `--mem FILE@ADDR` per 64KB chunk that holds a word.
    fn save(&self, dir: &Path) -> Vec<String> {
        let mut chunks: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for (&address, &value) in &self.words {
            let base = address & !(CHUNK - 1);
            let bytes = chunks
                .entry(base)
                .or_insert_with(|| vec![0; CHUNK as usize]);
            let offset = (address - base) as usize;
            bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
        }
        let mut args = Vec::new();
        for (base, bytes) in chunks {
            let flag = if self.read_only || self.read_only_chunks.contains(&base) {
                "--mem-ro"
            } else {
                "--mem"
            };
            let path = dir.join(format!("slot-{base:x}.bin"));
            std::fs::write(&path, bytes).unwrap();
            args.push(flag.to_string());
            args.push(format!("{}@{base:#x}", path.display()));
        }
        args
    }
}

/// A walk configuration and where its tables go, to place descriptors on
/// an IPA's path (AArch64.S2SLTTEntryAddress / AArch64.TTEntryAddress).
#[derive(Clone, Copy)]
struct Layout {
    granule: Granule,
    ia_bits: u32,
    start: i8,
    format: Format,
}

impl Layout {
    fn lsb(&self, level: i8) -> u32 {
        self.granule.bits() + (3 - level as i32) as u32 * self.granule.stride()
    }

    /// Address of `ipa`'s descriptor at `level` in the table at `table`.
    fn entry(&self, table: u64, level: i8, ipa: u64) -> u64 {
        let lsb = self.lsb(level);
        let width = if level == self.start {
            self.ia_bits - lsb
        } else {
            self.granule.stride()
        };
        table + ((ipa >> lsb) & ((1 << width) - 1)) * 8
    }

    /// Table descriptors from the start level down through `tables`
    /// (`tables[0]` is the start table), then `leaf` at the level after the
    /// last table. Returns the leaf descriptor's address.
    fn map(&self, memory: &mut Memory, tables: &[u64], ipa: u64, leaf: u64) -> u64 {
        let mut level = self.start;
        for pair in tables.windows(2) {
            memory.put(self.entry(pair[0], level, ipa), self.format.table(pair[1]));
            level += 1;
        }
        let address = self.entry(*tables.last().unwrap(), level, ipa);
        memory.put(address, leaf);
        address
    }
}

// ---------------------------------------------------------------------------
// Running the real binary.

#[derive(Clone, Copy)]
struct Request {
    vtcr: u64,
    vttbr: u64,
    ipa: u64,
    access: &'static str,
}

fn req(vtcr: u64, vttbr: u64, ipa: u64, access: &'static str) -> Request {
    Request {
        vtcr,
        vttbr,
        ipa,
        access,
    }
}

static RUN_ID: AtomicUsize = AtomicUsize::new(0);

/// Run `s2walk batch` on `requests`, in order, against `memory`.
fn run(cpu: Cpu, memory: &Memory, requests: &[Request]) -> Vec<Value> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "conformance-{}-{}",
        std::process::id(),
        RUN_ID.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut args = vec![
        "batch".to_string(),
        "--mmfr0".to_string(),
        format!("{:#x}", cpu.mmfr0),
        "--mmfr1".to_string(),
        format!("{:#x}", cpu.mmfr1),
        "--mmfr2".to_string(),
        format!("{:#x}", cpu.mmfr2),
    ];
    args.extend(memory.save(&dir));
    let mut input = String::new();
    for r in requests {
        input.push_str(&format!(
            "{{\"vtcr\":\"{:#x}\",\"vttbr\":\"{:#x}\",\"ipa\":\"{:#x}\",\"access\":\"{}\"}}\n",
            r.vtcr, r.vttbr, r.ipa, r.access
        ));
    }
    let mut child = Command::new(S2WALK)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "s2walk failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), requests.len(), "{stdout}");
    lines
}

/// Run one request.
fn run1(cpu: Cpu, memory: &Memory, request: Request) -> Value {
    run(cpu, memory, &[request]).remove(0)
}

fn hex(value: &Value, key: &str) -> u64 {
    let text = value[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {value}"));
    u64::from_str_radix(text.trim_start_matches("0x"), 16).unwrap()
}

#[track_caller]
fn assert_ok(line: &Value, oa: u64, level: i64) {
    assert_eq!(line["ok"], true, "expected a translation, got {line}");
    assert_eq!(hex(line, "oa"), oa, "{line}");
    assert_eq!(line["level"], level, "{line}");
}

#[track_caller]
fn assert_fault(line: &Value, kind: &str, level: i64, fsc: u64) {
    assert_eq!(line["ok"], false, "expected a {kind} fault, got {line}");
    assert_eq!(line["fault"], kind, "{line}");
    assert_eq!(line["level"], level, "{line}");
    assert_eq!(hex(line, "fsc"), fsc, "{line}");
}

/// FSC values (ESR_ELx.ISS.DFSC) for level 0..=3.
fn fsc_address_size(level: i64) -> u64 {
    if level < 0 {
        0x29
    } else {
        level as u64
    }
}
fn fsc_translation(level: i64) -> u64 {
    if level < 0 {
        0x2b
    } else {
        0x04 + level as u64
    }
}
fn fsc_access_flag(level: i64) -> u64 {
    0x08 + level as u64
}
fn fsc_permission(level: i64) -> u64 {
    0x0c + level as u64
}
fn fsc_external(level: i64) -> u64 {
    if level < 0 {
        0x13
    } else {
        0x14 + level as u64
    }
}

#[track_caller]
fn assert_translation_fault(line: &Value, level: i64) {
    assert_fault(line, "translation", level, fsc_translation(level));
}
#[track_caller]
fn assert_address_size_fault(line: &Value, level: i64) {
    assert_fault(line, "address_size", level, fsc_address_size(level));
}
#[track_caller]
fn assert_access_flag_fault(line: &Value, level: i64) {
    assert_fault(line, "access_flag", level, fsc_access_flag(level));
}
#[track_caller]
fn assert_permission_fault(line: &Value, level: i64) {
    assert_fault(line, "permission", level, fsc_permission(level));
}

/// Four requests per level-3 page, one per access kind: `allowed[page][kind]`
/// says whether that access translates to the page at `oa` or takes a
/// level-3 permission fault.
#[track_caller]
fn assert_access_matrix(lines: &[Value], allowed: &[[bool; 4]], oa: u64) {
    assert_eq!(lines.len(), allowed.len() * 4, "one line per request");
    for (i, line) in lines.iter().enumerate() {
        if allowed[i / 4][i % 4] {
            assert_ok(line, oa, 3);
        } else {
            assert_permission_fault(line, 3);
        }
    }
}

// ---------------------------------------------------------------------------
// Common fixture: 4KB granule, 48-bit IPA, start level 0, tables at 1GB.

const T: u64 = 0x4000_0000;
const OUT: u64 = 0x8000_0000;

fn layout_4k_l0() -> Layout {
    Layout {
        granule: Granule::K4,
        ia_bits: 48,
        start: 0,
        format: Format::Bits48,
    }
}

fn vtcr_4k_l0() -> u64 {
    vtcr(Granule::K4, 16, 0b10, PS_48)
}

/// A page for `ipa` at level 3 through tables at T, T+4K, T+8K, T+12K.
fn page_4k(memory: &mut Memory, ipa: u64, leaf: u64) -> u64 {
    layout_4k_l0().map(memory, &[T, T + 0x1000, T + 0x2000, T + 0x3000], ipa, leaf)
}

// ===========================================================================
// Configuration: AArch64.S2TxSZFaults, S2MinTxSZ, MaxTxSZ, S2InvalidSL,
// S2InconsistentSL, IPAIsOutOfRange (all level-0 translation faults).
// ===========================================================================

/// AArch64.S2MinTxSZ: the minimum T0SZ is 64 - PAMax with PAMax from the
/// exposed PARange (40 bits here), not from VTCR_EL2.PS (48 here).
/// AArch64.S2TxSZFaults: below the minimum faults (IMPLEMENTATION DEFINED
/// without FEAT_LPA; the walker's documented choice is to fault).
#[test]
fn t0sz_minimum_comes_from_exposed_pamax() {
    let cpu = Cpu::with_pa(PA_40);
    let layout = Layout {
        granule: Granule::K4,
        ia_bits: 40,
        start: 1,
        format: Format::Bits48,
    };
    let mut memory = Memory::default();
    // T0SZ 24 (40-bit IPA) starting at level 1 with 2 concatenated tables.
    layout.map(
        &mut memory,
        &[T, T + 0x2000, T + 0x3000],
        0x80_1234_5000,
        OUT | PAGE | RW,
    );
    let good = vtcr(Granule::K4, 24, 0b01, PS_48);
    let below = vtcr(Granule::K4, 23, 0b01, PS_48);
    let lines = run(
        cpu,
        &memory,
        &[
            req(good, T, 0x80_1234_5678, "read"),
            req(below, T, 0x80_1234_5678, "read"),
        ],
    );
    assert_ok(&lines[0], OUT | 0x678, 3);
    assert_translation_fault(&lines[1], 0);
}

/// AArch64.MaxTxSZ: 39 without FEAT_TTST; 48 (4KB, 16KB) or 47 (64KB) with
/// it. AArch64.S2TxSZFaults: above the maximum faults (IMPLEMENTATION
/// DEFINED; the walker's documented choice). AArch64.S2InvalidSL: SL0 0b11
/// with 4KB is start level 3 only with FEAT_TTST.
#[test]
fn t0sz_maximum_and_small_tables_with_ttst() {
    let mut memory = Memory::default();
    // 4KB, T0SZ 48 (16-bit IPA), start level 3: one 16-entry table.
    memory.put(T + (0x5 << 3), OUT | PAGE | RW);
    // 64KB, T0SZ 47 (17-bit IPA), start level 3: two entries.
    memory.put(T + 0x1_0000 + 8, OUT | PAGE | RW);
    let k4_48 = vtcr(Granule::K4, 48, 0b11, PS_48);
    let k4_49 = vtcr(Granule::K4, 49, 0b11, PS_48);
    let k4_40_l2 = vtcr(Granule::K4, 40, 0b00, PS_48);
    let k64_47 = vtcr(Granule::K64, 47, 0b00, PS_48);
    let k64_48 = vtcr(Granule::K64, 48, 0b00, PS_48);
    let requests = [
        req(k4_48, T, 0x5abc, "read"),
        req(k4_49, T, 0x1abc, "read"),
        req(k64_47, T + 0x1_0000, 0x1_2345, "read"),
        req(k64_48, T + 0x1_0000, 0x2345, "read"),
        req(k4_40_l2, T, 0x5abc, "read"),
    ];
    let with = run(Cpu::with_pa(PA_48).ttst(), &memory, &requests);
    assert_ok(&with[0], OUT | 0xabc, 3);
    assert_translation_fault(&with[1], 0);
    assert_ok(&with[2], OUT | 0x2345, 3);
    assert_translation_fault(&with[3], 0);
    // T0SZ 40 (24-bit IPA) from level 2 is consistent (22..=34 bits) and
    // walks: its level-2 entry (index 0 of the table at T) is zero.
    assert_translation_fault(&with[4], 2);
    let without = run(Cpu::with_pa(PA_48), &memory, &requests);
    for line in &without[..4] {
        assert_translation_fault(line, 0);
    }
    // T0SZ 40 is above 39 without FEAT_TTST.
    assert_translation_fault(&without[4], 0);
}

/// AArch64.S2InvalidSL: 4KB SL0 0b10 (start level 0) is reserved when
/// PAMax < 44; 16KB SL0 0b10 (level 1) when PAMax < 42; 64KB SL0 0b11 is
/// always reserved. PAMax is the exposed one (the KVM review point).
#[test]
fn start_level_limits_use_exposed_pamax() {
    let mut memory = Memory::default();
    // 4KB, T0SZ 24 (40-bit IPA), start level 0: one entry at level 0.
    let layout = Layout {
        granule: Granule::K4,
        ia_bits: 40,
        start: 0,
        format: Format::Bits48,
    };
    layout.map(
        &mut memory,
        &[T, T + 0x1000, T + 0x2000, T + 0x3000],
        0x12_3456_7000,
        OUT | PAGE | RW,
    );
    let k4_l0 = vtcr(Granule::K4, 24, 0b10, PS_40);
    let line = run1(
        Cpu::with_pa(PA_40),
        &memory,
        req(k4_l0, T, 0x12_3456_7000, "read"),
    );
    assert_translation_fault(&line, 0);
    let line = run1(
        Cpu::with_pa(PA_44),
        &memory,
        req(k4_l0, T, 0x12_3456_7000, "read"),
    );
    assert_ok(&line, OUT, 3);

    // 16KB, T0SZ 24 (40-bit IPA), SL0 0b10: start level 1 (bits 39:36).
    let mut memory = Memory::default();
    let layout = Layout {
        granule: Granule::K16,
        ia_bits: 40,
        start: 1,
        format: Format::Bits48,
    };
    layout.map(
        &mut memory,
        &[T, T + 0x4000, T + 0x8000],
        0x12_3456_7000,
        OUT | PAGE | RW,
    );
    let k16_l1 = vtcr(Granule::K16, 24, 0b10, PS_40);
    let line = run1(
        Cpu::with_pa(PA_40),
        &memory,
        req(k16_l1, T, 0x12_3456_7000, "read"),
    );
    assert_translation_fault(&line, 0);
    let line = run1(
        Cpu::with_pa(PA_42),
        &memory,
        req(k16_l1, T, 0x12_3456_7000, "read"),
    );
    assert_ok(&line, OUT | 0x3000, 3);

    // 64KB SL0 0b11: reserved whatever the sizes.
    let k64_sl3 = vtcr(Granule::K64, 22, 0b11, PS_48);
    let line = run1(Cpu::with_pa(PA_48), &memory, req(k64_sl3, T, 0, "read"));
    assert_translation_fault(&line, 0);
}

/// AArch64.S2InconsistentSL: the start level must resolve the input size
/// with at most 16 concatenated tables: from 4KB level 1 the IPA is 31..=43
/// bits; 44 bits is inconsistent, and so is 39 bits from level 0.
/// AArch64.S2TTBaseAddress: 16 concatenated tables align the base to 64KB.
#[test]
fn concatenation_limits() {
    let layout = Layout {
        granule: Granule::K4,
        ia_bits: 43,
        start: 1,
        format: Format::Bits48,
    };
    let mut memory = Memory::default();
    let ipa = 0x7ff_c000_0000; // index 0x1ff in the 16th concatenated table
    layout.map(
        &mut memory,
        &[T, T + 0x1_0000, T + 0x1_1000],
        ipa,
        OUT | PAGE | RW,
    );
    let cpu = Cpu::with_pa(PA_48);
    let lines = run(
        cpu,
        &memory,
        &[
            req(vtcr(Granule::K4, 21, 0b01, PS_48), T, ipa | 0x10, "read"),
            req(vtcr(Granule::K4, 20, 0b01, PS_48), T, ipa | 0x10, "read"),
            req(vtcr(Granule::K4, 25, 0b10, PS_48), T, 0x10, "read"),
            // 17 bits at level 1 would need 32 tables: inconsistent too.
            req(vtcr(Granule::K4, 19, 0b01, PS_48), T, 0x10, "read"),
        ],
    );
    assert_ok(&lines[0], OUT | 0x10, 3);
    assert_translation_fault(&lines[1], 0);
    assert_translation_fault(&lines[2], 0);
    assert_translation_fault(&lines[3], 0);
}

/// AArch64.IPAIsOutOfRange: an IPA with bits at or above the input size is
/// a level-0 translation fault, whatever the start level.
#[test]
fn ipa_beyond_input_size_is_level_0_translation_fault() {
    let mut memory = Memory::default();
    page_4k(&mut memory, 0x1000, OUT | PAGE | RW);
    let lines = run(
        Cpu::with_pa(PA_48),
        &memory,
        &[
            req(vtcr_4k_l0(), T, 0x1000, "read"),
            req(vtcr_4k_l0(), T, (1 << 48) | 0x1000, "read"),
            req(vtcr(Granule::K4, 32, 0b00, PS_48), T, 1 << 32, "read"),
        ],
    );
    assert_ok(&lines[0], OUT, 3);
    assert_translation_fault(&lines[1], 0);
    assert_translation_fault(&lines[2], 0);
}

// ===========================================================================
// Start level -1 (FEAT_LPA2, 4KB, DS = 1, SL2:SL0 = 0b100).
// ===========================================================================

fn layout_4k_lm1() -> Layout {
    Layout {
        granule: Granule::K4,
        ia_bits: 52,
        start: -1,
        format: Format::Lpa2,
    }
}

fn vtcr_4k_lm1(ps: u64) -> u64 {
    vtcr(Granule::K4, 12, 0b00, ps) | VTCR_DS | VTCR_SL2
}

/// AArch64.S2StartLevel: SL2:SL0 = 0b100 is level -1. A full five-level
/// walk of a 52-bit IPA to a 52-bit output address (AArch64.LeafBase with
/// DS: OA[49:48] in bits 49:48, OA[51:50] in bits 9:8). The level -1 codes
/// (AArch64.S2Walk sets fault.level = -1; ESR DFSC 0x2B, 0x29, 0x13).
#[test]
fn level_minus_1_walk_and_fault_codes() {
    let cpu = Cpu::with_pa(PA_52).lpa2();
    let layout = layout_4k_lm1();
    let ipa = 0xf_8123_4567_8000;
    let out = 0xa_bcde_f012_3000; // bits 51:48 = 0b1010
    let tables = [T, T + 0x1000, T + 0x2000, T + 0x3000, T + 0x4000];
    let mut memory = Memory::default();
    layout.map(
        &mut memory,
        &tables,
        ipa,
        Format::Lpa2.address(out) | PAGE | RW,
    );
    // IPA 1 << 48 has level -1 index 1: an invalid (zero) entry.
    // IPA 2 << 48: a block descriptor at level -1 (never supported).
    memory.put(layout.entry(T, -1, 2 << 48), OUT | BLOCK | RW);
    // IPA 3 << 48: a table beyond the 48-bit output size of PS = 48.
    memory.put(layout.entry(T, -1, 3 << 48), Format::Lpa2.table(1 << 48));
    // IPA 4 << 48: a table outside every memslot.
    memory.put(
        layout.entry(T, -1, 4 << 48),
        Format::Lpa2.table(0x7000_0000),
    );
    let lines = run(
        cpu,
        &memory,
        &[
            req(vtcr_4k_lm1(PS_52), T, ipa | 0xabc, "read"),
            req(vtcr_4k_lm1(PS_52), T, 1 << 48, "read"),
            req(vtcr_4k_lm1(PS_52), T, 2 << 48, "read"),
            req(vtcr_4k_lm1(PS_48), T, 3 << 48, "read"),
            req(vtcr_4k_lm1(PS_52), T, 4 << 48, "read"),
            // The level -1 table itself outside every memslot.
            req(vtcr_4k_lm1(PS_52), 0x7000_0000, 0, "read"),
        ],
    );
    assert_ok(&lines[0], out | 0xabc, 3);
    assert_translation_fault(&lines[1], -1);
    assert_translation_fault(&lines[2], -1);
    assert_address_size_fault(&lines[3], -1);
    assert_fault(&lines[4], "external_abort", 0, fsc_external(0));
    assert_fault(&lines[5], "external_abort", -1, fsc_external(-1));
}

/// AArch64.S2InvalidSL: SL2 = 1 is valid only with SL0 = 0b00 ('1x1' and
/// '11x' are reserved). AArch64.S2TTWParams: SL2 counts only with DS = 1
/// (and DS only with FEAT_LPA2), otherwise it is ignored.
#[test]
fn sl2_encodings() {
    let cpu = Cpu::with_pa(PA_52).lpa2();
    let mut memory = Memory::default();
    // T0SZ 32 (32-bit IPA) from level 2 (SL0 0b00, SL2 ignored): 4 tables.
    let layout = Layout {
        granule: Granule::K4,
        ia_bits: 32,
        start: 2,
        format: Format::Bits48,
    };
    layout.map(&mut memory, &[T, T + 0x4000], 0xc000_5000, OUT | PAGE | RW);
    let sl2_no_ds = vtcr(Granule::K4, 32, 0b00, PS_48) | VTCR_SL2;
    let lines = run(
        cpu,
        &memory,
        &[
            req(sl2_no_ds, T, 0xc000_5000, "read"),
            req(
                vtcr(Granule::K4, 12, 0b01, PS_52) | VTCR_DS | VTCR_SL2,
                T,
                0,
                "read",
            ),
            req(
                vtcr(Granule::K4, 12, 0b10, PS_52) | VTCR_DS | VTCR_SL2,
                T,
                0,
                "read",
            ),
            req(
                vtcr(Granule::K4, 12, 0b11, PS_52) | VTCR_DS | VTCR_SL2,
                T,
                0,
                "read",
            ),
        ],
    );
    assert_ok(&lines[0], OUT, 3);
    for line in &lines[1..] {
        assert_translation_fault(line, 0);
    }
    // Without FEAT_LPA2, DS and SL2 are both ignored: the same walk.
    let line = run1(
        Cpu::with_pa(PA_48),
        &memory,
        req(sl2_no_ds | VTCR_DS, T, 0xc000_5000, "read"),
    );
    assert_ok(&line, OUT, 3);
}

/// Level -1 needs a 49..=52-bit IPA (AArch64.S2InconsistentSL: levels 4,
/// sl_min_iasize 49) and such an IPA needs PAMax 52 (AArch64.S2MinTxSZ):
/// with PAMax 48 every choice of T0SZ faults at level 0 (code 0x04, not
/// the level -1 code).
#[test]
fn level_minus_1_needs_pamax_52() {
    let mut memory = Memory::default();
    memory.put(T, T | 0b11);
    let cpu = Cpu::with_pa(PA_48).lpa2();
    let lines = run(
        cpu,
        &memory,
        &[
            req(vtcr_4k_lm1(PS_48), T, 0, "read"),
            req(
                vtcr(Granule::K4, 16, 0, PS_48) | VTCR_DS | VTCR_SL2,
                T,
                0,
                "read",
            ),
        ],
    );
    assert_translation_fault(&lines[0], 0);
    assert_translation_fault(&lines[1], 0);
}

/// AArch64.S2InvalidSL (DDI 0487 M.a.a): 16KB SL0 0b11 is start level 0
/// only when DS = 1 and PAMax is 52; with FEAT_LPA2 and PAMax 52 a 48-bit
/// IPA walks from level 0 (one bit, two entries: AArch64.S2InconsistentSL
/// sl_min_iasize = 48), and with PAMax 48 the same registers give a level-0
/// Translation fault, although the input size would be consistent (the
/// v9.4 pseudocode had no PAMax term; reference_model.rs found this).
#[test]
fn sixteen_k_start_level_0_with_ds() {
    let layout = Layout {
        granule: Granule::K16,
        ia_bits: 48,
        start: 0,
        format: Format::Lpa2,
    };
    let mut memory = Memory::default();
    let ipa = 0xffff_1234_4000;
    layout.map(
        &mut memory,
        &[T, T + 0x4000, T + 0x8000, T + 0xc000],
        ipa,
        OUT | PAGE | RW,
    );
    let ds = vtcr(Granule::K16, 16, 0b11, PS_48) | VTCR_DS;
    let no_ds = vtcr(Granule::K16, 16, 0b11, PS_48);
    for parange in [PA_48, PA_52] {
        let lines = run(
            Cpu::with_pa(parange).lpa2(),
            &memory,
            &[req(ds, T, ipa | 0x123, "read"), req(no_ds, T, ipa, "read")],
        );
        if parange == PA_52 {
            assert_ok(&lines[0], OUT | 0x123, 3);
        } else {
            assert_translation_fault(&lines[0], 0);
        }
        assert_translation_fault(&lines[1], 0);
    }
}

// ===========================================================================
// VTTBR_EL2: AArch64.S2TTBaseAddress and the TTB address size check.
// ===========================================================================

/// AArch64.S2Walk, "Detect Address Size Fault by TTB": a base address
/// beyond the output size (min(PS, PAMax)) is an address size fault at
/// level 0, whatever the start level (fault.level = 0; with start level -1
/// the code is 0x00, not 0x29).
#[test]
fn base_address_beyond_output_size_is_level_0() {
    let mut memory = Memory::default();
    page_4k(&mut memory, 0, OUT | PAGE | RW);
    let cpu = Cpu::with_pa(PA_48);
    let beyond_40 = 1 << 40;
    let lines = run(
        cpu,
        &memory,
        &[
            // PS 40 bits, start levels 0, 1 and 2.
            req(vtcr(Granule::K4, 24, 0b10, PS_40), beyond_40, 0, "read"),
            req(vtcr(Granule::K4, 25, 0b01, PS_40), beyond_40, 0, "read"),
            req(vtcr(Granule::K4, 32, 0b00, PS_40), beyond_40, 0, "read"),
            // PS 52 is limited to PAMax 48: base bit 47 is fine, and
            // PS 32 makes bit 32 too much.
            req(vtcr(Granule::K4, 32, 0b00, PS_32), 1 << 32, 0, "read"),
            req(vtcr(Granule::K4, 16, 0b10, PS_52), T, 0, "read"),
        ],
    );
    assert_address_size_fault(&lines[0], 0);
    assert_address_size_fault(&lines[1], 0);
    assert_address_size_fault(&lines[2], 0);
    assert_address_size_fault(&lines[3], 0);
    assert_ok(&lines[4], OUT, 3);

    // Start level -1 with PS 48: VTTBR[5:2] are BADDR[51:48] (DS = 1).
    let lines = run(
        Cpu::with_pa(PA_52).lpa2(),
        &memory,
        &[req(vtcr_4k_lm1(PS_48), T | (1 << 2), 0, "read")],
    );
    assert_address_size_fault(&lines[0], 0);
}

/// AArch64.S2TTBaseAddress: BADDR is VTTBR[47:1] aligned to the start
/// table(s) size (lower bits ignored, as Align() does); CnP (bit 0) and the
/// VMID (bits 63:48) take no part in the address.
#[test]
fn vttbr_low_bits_cnp_and_vmid_are_not_address_bits() {
    let mut memory = Memory::default();
    page_4k(&mut memory, 0x1000, OUT | PAGE | RW);
    let vmid = 0xabcd << 48;
    let lines = run(
        Cpu::with_pa(PA_48),
        &memory,
        &[
            req(vtcr_4k_l0(), T | 1, 0x1000, "read"),
            req(vtcr_4k_l0(), T | vmid, 0x1000, "read"),
            req(vtcr_4k_l0(), T | 0xff8, 0x1000, "read"),
        ],
    );
    for line in &lines {
        assert_ok(line, OUT, 3);
    }
}

/// AArch64.S2TTBaseAddress: with FEAT_LPA, the 64KB granule and
/// VTCR_EL2.PS = 0b110, VTTBR[5:2] are BADDR[51:48] (and the base is at
/// least 64-byte aligned). With PS = 0b101 the 48-bit format applies and
/// bits 5:2 are alignment bits of a 512-byte start table, hence ignored.
#[test]
fn vttbr_bits_5_2_with_64k_lpa() {
    let high = 1u64 << 48;
    let layout = Layout {
        granule: Granule::K64,
        ia_bits: 48,
        start: 1,
        format: Format::Lpa64k,
    };
    let mut memory = Memory::default();
    let ipa = 0x1234_5678_0000;
    // Start table at 2^48 + T (reached through VTTBR[5:2] = 0b0001) and
    // another at T (reached when bits 5:2 are not address bits).
    let tables = [high | T, T + 0x1_0000, T + 0x2_0000];
    layout.map(&mut memory, &tables, ipa, OUT | PAGE | RW);
    let tables = [T, T + 0x3_0000, T + 0x4_0000];
    layout.map(&mut memory, &tables, ipa, (OUT + 0x10_0000) | PAGE | RW);
    let vttbr = T | (1 << 2);
    let ps52 = vtcr(Granule::K64, 16, 0b10, PS_52);
    let ps48 = vtcr(Granule::K64, 16, 0b10, PS_48);
    let lines = run(
        Cpu::with_pa(PA_52),
        &memory,
        &[req(ps52, vttbr, ipa, "read"), req(ps48, vttbr, ipa, "read")],
    );
    assert_ok(&lines[0], OUT, 3);
    assert_ok(&lines[1], OUT + 0x10_0000, 3);
    // Without FEAT_LPA (PAMax 48) PS = 0b110 does not select the 52-bit
    // VTTBR format either.
    let line = run1(Cpu::with_pa(PA_48), &memory, req(ps52, vttbr, ipa, "read"));
    assert_ok(&line, OUT + 0x10_0000, 3);
}

// ===========================================================================
// Descriptor types: AArch64.DecodeDescriptorType, BlockDescSupported.
// ===========================================================================

/// AArch64.BlockDescSupported: 4KB blocks at levels 1 and 2, and at level 0
/// only with DS = 1. AArch64.DecodeDescriptorType: at level 3 type 0b01 is
/// invalid (a translation fault at level 3).
#[test]
fn block_levels_4k() {
    let mut memory = Memory::default();
    let layout = layout_4k_l0();
    // Level-0 block for IPA 0 (512GB).
    layout.map(&mut memory, &[T], 0, OUT | BLOCK | RW);
    // Level-1 block (1GB) for 1 << 39.
    layout.map(
        &mut memory,
        &[T, T + 0x1000],
        1 << 39,
        (1 << 30) | BLOCK | RW,
    );
    // Level-2 block (2MB) for 2 << 39.
    layout.map(
        &mut memory,
        &[T, T + 0x2000, T + 0x3000],
        2 << 39,
        (3 << 21) | BLOCK | RW,
    );
    // Level-3 "block" for 3 << 39.
    layout.map(
        &mut memory,
        &[T, T + 0x4000, T + 0x5000, T + 0x6000],
        3 << 39,
        OUT | BLOCK | RW,
    );
    let lines = run(
        Cpu::with_pa(PA_48),
        &memory,
        &[
            req(vtcr_4k_l0(), T, 0x1234_5678, "read"),
            req(vtcr_4k_l0(), T, (1 << 39) | 0x1234_5678, "read"),
            req(vtcr_4k_l0(), T, (2 << 39) | 0x12_3456, "read"),
            req(vtcr_4k_l0(), T, (3 << 39) | 0x456, "read"),
        ],
    );
    assert_translation_fault(&lines[0], 0);
    assert_ok(&lines[1], (1 << 30) | 0x1234_5678, 1);
    assert_ok(&lines[2], (3 << 21) | 0x12_3456, 2);
    assert_translation_fault(&lines[3], 3);

    // With DS = 1 a level-0 block maps 512GB (and may carry OA[51:48]).
    let mut memory = Memory::default();
    let layout = Layout {
        format: Format::Lpa2,
        ..layout_4k_l0()
    };
    let out = 0xf_0080_0000_0000;
    layout.map(&mut memory, &[T], 0, Format::Lpa2.address(out) | BLOCK | RW);
    let ds = vtcr(Granule::K4, 16, 0b10, PS_52) | VTCR_DS;
    let line = run1(
        Cpu::with_pa(PA_52).lpa2(),
        &memory,
        req(ds, T, 0x12_3456_789a, "read"),
    );
    assert_ok(&line, out | 0x12_3456_789a, 0);
    assert_eq!(hex(&line, "size"), 1 << 39, "{line}");
}

/// AArch64.BlockDescSupported: 16KB blocks at level 2, and at level 1 only
/// with DS = 1.
#[test]
fn block_levels_16k() {
    let layout = Layout {
        granule: Granule::K16,
        ia_bits: 47,
        start: 1,
        format: Format::Lpa2,
    };
    let mut memory = Memory::default();
    layout.map(&mut memory, &[T], 0, (1 << 36) | BLOCK | RW);
    layout.map(
        &mut memory,
        &[T, T + 0x4000],
        1 << 36,
        (5 << 25) | BLOCK | RW,
    );
    let plain = vtcr(Granule::K16, 17, 0b10, PS_48);
    let ds = plain | VTCR_DS;
    let cpu = Cpu::with_pa(PA_48).lpa2();
    let lines = run(
        cpu,
        &memory,
        &[
            req(plain, T, 0x1234_5678, "read"),
            req(ds, T, 0x1234_5678, "read"),
            req(plain, T, (1 << 36) | 0x123_4567, "read"),
        ],
    );
    assert_translation_fault(&lines[0], 1);
    assert_ok(&lines[1], (1 << 36) | 0x1234_5678, 1);
    assert_ok(&lines[2], (5 << 25) | 0x123_4567, 2);
}

/// AArch64.BlockDescSupported: 64KB blocks at level 2, and at level 1 only
/// with 52-bit PAs (PAMax >= 52, FEAT_LPA); a level-1 block's OA[51:48]
/// come from bits 15:12 (AArch64.LeafBase).
#[test]
fn block_levels_64k() {
    let layout = Layout {
        granule: Granule::K64,
        ia_bits: 48,
        start: 1,
        format: Format::Lpa64k,
    };
    let mut memory = Memory::default();
    let out = 0x3_0400_0000_0000; // 4TB-aligned, bits 49:48 set
    layout.map(
        &mut memory,
        &[T],
        0,
        Format::Lpa64k.address(out) | BLOCK | RW,
    );
    layout.map(
        &mut memory,
        &[T, T + 0x1_0000],
        1 << 42,
        (3 << 29) | BLOCK | RW,
    );
    let k64 = vtcr(Granule::K64, 16, 0b10, PS_52);
    let requests = [
        req(k64, T, 0x123_4567_89ab, "read"),
        req(k64, T, (1 << 42) | 0x1234_5678, "read"),
    ];
    let lines = run(Cpu::with_pa(PA_48), &memory, &requests);
    assert_translation_fault(&lines[0], 1);
    assert_ok(&lines[1], (3 << 29) | 0x1234_5678, 2);
    let lines = run(Cpu::with_pa(PA_52), &memory, &requests);
    assert_ok(&lines[0], out | 0x123_4567_89ab, 1);
    assert_ok(&lines[1], (3 << 29) | 0x1234_5678, 2);
}

// ===========================================================================
// Output addresses: AArch64.OAOutOfRange at each level, 52-bit formats.
// ===========================================================================

/// AArch64.S2Walk: a next-level table address beyond the output size is an
/// address size fault at the level of the table descriptor; an output
/// address beyond it one at the leaf's level ("Detect Address Size Fault
/// by final output"). Output size = min(PS, PAMax).
#[test]
fn table_and_output_addresses_beyond_output_size() {
    let layout = layout_4k_l0();
    let mut memory = Memory::default();
    let far = 1u64 << 40;
    // Level-1 table descriptor pointing at 2^40.
    layout.map(&mut memory, &[T, T + 0x1000, far], 0, OUT | PAGE | RW);
    // Level-2 block at 2^40 + 2MB for IPA 1 << 30.
    layout.map(
        &mut memory,
        &[T, T + 0x1000, T + 0x2000],
        1 << 30,
        (far | 1 << 21) | BLOCK | RW,
    );
    // Page at 2^40 for IPA 1 << 31.
    layout.map(
        &mut memory,
        &[T, T + 0x1000, T + 0x3000, T + 0x4000],
        1 << 31,
        far | PAGE | RW,
    );
    let ps40 = vtcr(Granule::K4, 16, 0b10, PS_40);
    let ps48 = vtcr(Granule::K4, 16, 0b10, PS_48);
    let lines = run(
        Cpu::with_pa(PA_48),
        &memory,
        &[
            req(ps40, T, 0x10, "read"),
            req(ps40, T, (1 << 30) | 0x10, "read"),
            req(ps40, T, (1 << 31) | 0x10, "read"),
            req(ps48, T, (1 << 30) | 0x10, "read"),
            req(ps48, T, (1 << 31) | 0x10, "read"),
        ],
    );
    assert_address_size_fault(&lines[0], 1);
    assert_address_size_fault(&lines[1], 2);
    assert_address_size_fault(&lines[2], 3);
    assert_ok(&lines[3], far | (1 << 21) | 0x10, 2);
    assert_ok(&lines[4], far | 0x10, 3);
    // The same table descriptor with PS 48 but PAMax 40 exposed, from a
    // start level 1 (two concatenated tables at T + 0x4000).
    let mut memory = Memory::default();
    memory.put(T + 0x4000, far | 0b11);
    let lines = run(
        Cpu::with_pa(PA_40),
        &memory,
        &[req(
            vtcr(Granule::K4, 24, 0b01, PS_48),
            T + 0x4000,
            0x10,
            "read",
        )],
    );
    assert_address_size_fault(&lines[0], 1);
}

/// AArch64.NextTableBase / LeafBase: with the 64KB granule and PAMax >= 52
/// bits 15:12 are OA[51:48] whatever VTCR_EL2.PS says, so with PS = 48 a
/// non-zero value there is an address size fault (AArch64.OAOutOfRange).
/// With PAMax < 52 whether they are OA bits is IMPLEMENTATION DEFINED; the
/// walker's documented choice ignores them.
#[test]
fn sixty_four_k_bits_15_12() {
    let layout = Layout {
        granule: Granule::K64,
        ia_bits: 48,
        start: 1,
        format: Format::Lpa64k,
    };
    let mut memory = Memory::default();
    let high_page = (1u64 << 48) | OUT;
    let tables = [T, T + 0x1_0000, T + 0x2_0000];
    layout.map(
        &mut memory,
        &tables,
        0,
        Format::Lpa64k.address(high_page) | PAGE | RW,
    );
    // A level-2 table at 2^48 + T for IPA 1 << 42, whose page is at OUT.
    let tables = [T, (1 << 48) | T, (1 << 48) | (T + 0x1_0000)];
    layout.map(&mut memory, &tables, 1 << 42, OUT | PAGE | RW);
    let ps48 = vtcr(Granule::K64, 16, 0b10, PS_48);
    let ps52 = vtcr(Granule::K64, 16, 0b10, PS_52);
    let requests = [
        req(ps48, T, 0x1234, "read"),
        req(ps48, T, (1 << 42) | 0x1234, "read"),
        req(ps52, T, 0x1234, "read"),
        req(ps52, T, (1 << 42) | 0x1234, "read"),
    ];
    let lines = run(Cpu::with_pa(PA_52), &memory, &requests);
    assert_address_size_fault(&lines[0], 3);
    assert_address_size_fault(&lines[1], 1);
    assert_ok(&lines[2], high_page | 0x1234, 3);
    assert_ok(&lines[3], OUT | 0x1234, 3);
    // PAMax 48: bits 15:12 ignored (the walker's choice).
    let lines = run(Cpu::with_pa(PA_48), &memory, &requests[..1]);
    assert_ok(&lines[0], OUT | 0x1234, 3);
}

/// AArch64.NextTableBase / LeafBase with DS = 1: OA[51:50] in bits 9:8 and
/// OA[49:48] in bits 49:48; with PS = 48 any of them set is an address
/// size fault at that level (AArch64.OAOutOfRange). Shareability then comes
/// from VTCR_EL2.SH0 (AArch64.S2NextWalkStateLeaf: s2_sh).
#[test]
fn lpa2_high_address_bits() {
    let layout = Layout {
        format: Format::Lpa2,
        ..layout_4k_l0()
    };
    let mut memory = Memory::default();
    let bit50 = (1u64 << 50) | OUT;
    let bit48 = (1u64 << 48) | OUT;
    let tables = [T, T + 0x1000, T + 0x2000, T + 0x3000];
    layout.map(
        &mut memory,
        &tables,
        0,
        Format::Lpa2.address(bit50) | PAGE | RW,
    );
    layout.map(
        &mut memory,
        &tables,
        0x1000,
        Format::Lpa2.address(bit48) | PAGE | RW,
    );
    let ps48 = vtcr(Granule::K4, 16, 0b10, PS_48) | VTCR_DS;
    let ps52 = vtcr(Granule::K4, 16, 0b10, PS_52) | VTCR_DS;
    let lines = run(
        Cpu::with_pa(PA_52).lpa2(),
        &memory,
        &[
            req(ps48, T, 0x10, "read"),
            req(ps48, T, 0x1010, "read"),
            req(ps52, T, 0x10, "read"),
            req(ps52, T, 0x1010, "read"),
        ],
    );
    assert_address_size_fault(&lines[0], 3);
    assert_address_size_fault(&lines[1], 3);
    assert_ok(&lines[2], bit50 | 0x10, 3);
    assert_ok(&lines[3], bit48 | 0x10, 3);
    // VTCR_EL2.SH0 is 0b11 (inner) in vtcr(); the descriptor's bits 9:8
    // (0b01 here, an address bit) are not shareability.
    assert_eq!(lines[2]["sh"], 3, "{}", lines[2]);
}

// ===========================================================================
// Contiguous hint and nT: AArch64.ContiguousBit, StageOA, BlocknTFaults.
// ===========================================================================

/// StageOA: with the contiguous bit the IPA supplies the output address
/// bits below the contiguous range (16 x 4KB here), so the descriptor's OA
/// bits 15:12 do not matter. AArch64.ContiguousBit: the bit is RES0 (so
/// ignored) for 64KB level-1 and 4KB level-0 blocks.
#[test]
fn contiguous_hint_output_address() {
    let mut memory = Memory::default();
    page_4k(&mut memory, 0x3000, (OUT | 0x5000) | PAGE | RW | CONTIGUOUS);
    page_4k(&mut memory, 0x13000, (OUT | 0x5000) | PAGE | RW);
    let lines = run(
        Cpu::with_pa(PA_48),
        &memory,
        &[
            req(vtcr_4k_l0(), T, 0x3abc, "read"),
            req(vtcr_4k_l0(), T, 0x13abc, "read"),
        ],
    );
    assert_ok(&lines[0], OUT | 0x3abc, 3);
    assert_eq!(hex(&lines[0], "contiguous_size"), 0x1_0000, "{}", lines[0]);
    assert_ok(&lines[1], OUT | 0x5abc, 3);

    // 64KB level-1 block (4TB) with the contiguous bit: RES0, ignored.
    let layout = Layout {
        granule: Granule::K64,
        ia_bits: 48,
        start: 1,
        format: Format::Lpa64k,
    };
    let mut memory = Memory::default();
    let out = 0x4_0000_0000_0000;
    layout.map(
        &mut memory,
        &[T],
        0,
        Format::Lpa64k.address(out) | BLOCK | RW | CONTIGUOUS,
    );
    let k64 = vtcr(Granule::K64, 16, 0b10, PS_52);
    let line = run1(
        Cpu::with_pa(PA_52),
        &memory,
        req(k64, T, 0x123_4567_89ab, "read"),
    );
    assert_ok(&line, out | 0x123_4567_89ab, 1);
}

/// AArch64.BlocknTFaults: the nT bit (16) of a block can fault only with
/// FEAT_BBM, which the walker does not expose to L1; the bit is ignored.
#[test]
fn nt_bit_is_ignored() {
    let layout = layout_4k_l0();
    let mut memory = Memory::default();
    layout.map(
        &mut memory,
        &[T, T + 0x1000, T + 0x2000],
        0,
        (1 << 21) | BLOCK | RW | NT,
    );
    let line = run1(
        Cpu::with_pa(PA_48),
        &memory,
        req(vtcr_4k_l0(), T, 0x1234, "read"),
    );
    assert_ok(&line, (1 << 21) | 0x1234, 2);
}

// ===========================================================================
// Fault priority at the leaf: AArch64.S2Walk (address size, then AF) and
// AArch64.S2Translate (permissions after the walk, then updates).
// ===========================================================================

/// AArch64.S2Walk checks the output address before the access flag, and
/// S2Translate checks permissions only after the walk returned no fault:
/// OA out of range beats AF = 0, and AF = 0 beats a permission fault.
#[test]
fn address_size_then_access_flag_then_permission() {
    let mut memory = Memory::default();
    page_4k(
        &mut memory,
        0x0000,
        (1 << 40) | PAGE | S2AP_RO | MEMATTR_NORMAL_WB,
    );
    page_4k(
        &mut memory,
        0x1000,
        OUT | PAGE | S2AP_RO | MEMATTR_NORMAL_WB,
    );
    page_4k(
        &mut memory,
        0x2000,
        OUT | PAGE | S2AP_NONE | MEMATTR_NORMAL_WB,
    );
    let ps40 = vtcr(Granule::K4, 16, 0b10, PS_40);
    let lines = run(
        Cpu::with_pa(PA_48),
        &memory,
        &[
            req(ps40, T, 0x0000, "write"),
            req(ps40, T, 0x1000, "write"),
            req(ps40, T, 0x2000, "read"),
            req(ps40, T, 0x2000, "exec"),
        ],
    );
    assert_address_size_fault(&lines[0], 3);
    assert_access_flag_fault(&lines[1], 3);
    assert_access_flag_fault(&lines[2], 3);
    assert_access_flag_fault(&lines[3], 3);
}

// ===========================================================================
// Permissions: AArch64.S2ApplyOutputPerms, S2CheckPermissions.
// ===========================================================================

/// AArch64.S2CheckPermissions: reads need S2AP[0], writes S2AP[1]; an
/// instruction fetch needs only execute permission (not S2AP[0]).
#[test]
fn s2ap_read_write_none() {
    let mut memory = Memory::default();
    let attrs = MEMATTR_NORMAL_WB | AF | PAGE;
    page_4k(&mut memory, 0x0000, OUT | attrs | S2AP_NONE);
    page_4k(&mut memory, 0x1000, OUT | attrs | S2AP_RO);
    page_4k(&mut memory, 0x2000, OUT | attrs | S2AP_WO);
    page_4k(&mut memory, 0x3000, OUT | attrs | S2AP_RW);
    let mut requests = Vec::new();
    for page in 0..4u64 {
        for access in ["read", "write", "exec", "exec_el0"] {
            requests.push(req(vtcr_4k_l0(), T, page << 12, access));
        }
    }
    let lines = run(Cpu::with_pa(PA_48), &memory, &requests);
    let allowed = [
        // read, write, exec, exec_el0
        [false, false, true, true], // S2AP 00
        [true, false, true, true],  // S2AP 01
        [false, true, true, true],  // S2AP 10
        [true, true, true, true],   // S2AP 11
    ];
    assert_access_matrix(&lines, &allowed, OUT);
}

/// AArch64.S2ApplyOutputPerms / S2ComputePermissions: with FEAT_XNX the
/// (XN, XNX) pair 0b00 lets EL1 and EL0 execute, 0b01 only EL0, 0b10
/// neither, 0b11 only EL1; without FEAT_XNX bit 53 is ignored. Data
/// accesses never depend on XN.
#[test]
fn xn_and_xnx() {
    let mut memory = Memory::default();
    let attrs = OUT | PAGE | RW;
    for (i, xn) in [XN_00, XN_01, XN_10, XN_11].into_iter().enumerate() {
        page_4k(&mut memory, (i as u64) << 12, attrs | xn);
    }
    let mut requests = Vec::new();
    for page in 0..4u64 {
        for access in ["exec", "exec_el0", "read", "write"] {
            requests.push(req(vtcr_4k_l0(), T, page << 12, access));
        }
    }
    let with_xnx = [
        // exec (EL1), exec_el0, read, write
        [true, true, true, true],
        [false, true, true, true],
        [false, false, true, true],
        [true, false, true, true],
    ];
    let without_xnx = [
        [true, true, true, true],
        [true, true, true, true],
        [false, false, true, true],
        [false, false, true, true],
    ];
    for (cpu, table) in [
        (Cpu::with_pa(PA_48).xnx(), with_xnx),
        (Cpu::with_pa(PA_48), without_xnx),
    ] {
        let lines = run(cpu, &memory, &requests);
        assert_access_matrix(&lines, &table, OUT);
    }
}

/// AArch64.S2CheckPermissions: an instruction fetch from stage-2 Device
/// memory is CONSTRAINED UNPREDICTABLE (Unpredictable_INSTRDEVICE: a
/// permission fault or Normal Non-cacheable); the walker's documented
/// choice is the permission fault. Data accesses to Device are fine.
#[test]
fn fetch_from_device_memory() {
    let mut memory = Memory::default();
    page_4k(
        &mut memory,
        0,
        OUT | PAGE | MEMATTR_DEVICE_NGNRE | S2AP_RW | AF,
    );
    let lines = run(
        Cpu::with_pa(PA_48).xnx(),
        &memory,
        &[
            req(vtcr_4k_l0(), T, 0, "read"),
            req(vtcr_4k_l0(), T, 0, "write"),
            req(vtcr_4k_l0(), T, 0, "exec"),
            req(vtcr_4k_l0(), T, 0, "exec_el0"),
        ],
    );
    assert_ok(&lines[0], OUT, 3);
    assert_ok(&lines[1], OUT, 3);
    assert_permission_fault(&lines[2], 3);
    assert_permission_fault(&lines[3], 3);
}

// ===========================================================================
// Hardware AF and dirty state: AArch64.S2TTWParams (HA/HD gated by
// HAFDBS), S2ApplyOutputPerms (DBM), S2Translate (updates after checks).
// ===========================================================================

fn descriptor_of(line: &Value) -> u64 {
    hex(line, "descriptor")
}

/// AArch64.S2TTWParams: walkparams.ha = VTCR_EL2.HA only with FEAT_HAFDBS;
/// without it AF = 0 is an access flag fault (AArch64.S2Walk). With it the
/// walk sets AF (S2Translate: new_desc<10> = '1') and the access succeeds.
#[test]
fn hardware_access_flag_needs_hafdbs() {
    let mut memory = Memory::default();
    page_4k(&mut memory, 0, OUT | PAGE | MEMATTR_NORMAL_WB | S2AP_RW);
    let ha = vtcr_4k_l0() | VTCR_HA;
    let line = run1(Cpu::with_pa(PA_48), &memory, req(ha, T, 0, "read"));
    assert_access_flag_fault(&line, 3);
    let lines = run(
        Cpu::with_pa(PA_48).hafdbs(1),
        &memory,
        &[req(ha, T, 0, "read"), req(ha, T, 0, "read")],
    );
    assert_ok(&lines[0], OUT, 3);
    assert_eq!(lines[0]["af_updated"], true, "{}", lines[0]);
    assert_ne!(descriptor_of(&lines[0]) & AF, 0);
    // The update is in memory: the second walk finds AF set already.
    assert_eq!(lines[1]["af_updated"], false, "{}", lines[1]);
}

/// AArch64.SettingAccessFlagPermitted: on a permission fault setting AF is
/// CONSTRAINED UNPREDICTABLE; the walker's documented choice is not to set
/// it, so a later permitted read still finds AF = 0.
#[test]
fn access_flag_not_set_on_permission_fault() {
    let mut memory = Memory::default();
    page_4k(&mut memory, 0, OUT | PAGE | MEMATTR_NORMAL_WB | S2AP_RO);
    let ha = vtcr_4k_l0() | VTCR_HA;
    let lines = run(
        Cpu::with_pa(PA_48).hafdbs(1),
        &memory,
        &[req(ha, T, 0, "write"), req(ha, T, 0, "read")],
    );
    assert_permission_fault(&lines[0], 3);
    assert_ok(&lines[1], OUT, 3);
    assert_eq!(lines[1]["af_updated"], true, "{}", lines[1]);
}

/// AArch64.S2ApplyOutputPerms: a DBM descriptor is writable only when
/// walkparams.ha and walkparams.hd are both 1; walkparams.hd needs HAFDBS
/// = 0b0010 (dirty state). S2Translate then sets S2AP[1] (new_desc<7>) on
/// the write, and only on a write.
#[test]
fn dirty_state_needs_ha_hd_and_hafdbs_2() {
    let mut memory = Memory::default();
    page_4k(
        &mut memory,
        0,
        OUT | PAGE | MEMATTR_NORMAL_WB | S2AP_RO | AF | DBM,
    );
    let ha_hd = vtcr_4k_l0() | VTCR_HA | VTCR_HD;
    let hd_only = vtcr_4k_l0() | VTCR_HD;
    // HD without HA, or HAFDBS 1: the write is a permission fault.
    let lines = run(
        Cpu::with_pa(PA_48).hafdbs(2),
        &memory,
        &[req(hd_only, T, 0, "write")],
    );
    assert_permission_fault(&lines[0], 3);
    let lines = run(
        Cpu::with_pa(PA_48).hafdbs(1),
        &memory,
        &[req(ha_hd, T, 0, "write")],
    );
    assert_permission_fault(&lines[0], 3);
    // HA + HD + HAFDBS 2: a read changes nothing, a write sets S2AP[1].
    let lines = run(
        Cpu::with_pa(PA_48).hafdbs(2),
        &memory,
        &[
            req(ha_hd, T, 0, "read"),
            req(ha_hd, T, 0, "write"),
            req(ha_hd, T, 0, "read"),
        ],
    );
    assert_ok(&lines[0], OUT, 3);
    assert_eq!(lines[0]["dirty_updated"], false, "{}", lines[0]);
    assert_eq!(lines[0]["s2ap"], 1, "{}", lines[0]);
    assert_ok(&lines[1], OUT, 3);
    assert_eq!(lines[1]["dirty_updated"], true, "{}", lines[1]);
    assert_eq!(lines[2]["s2ap"], 3, "{}", lines[2]);
    assert_eq!(lines[2]["dirty_updated"], false, "{}", lines[2]);
}

/// AArch64.S2ApplyOutputPerms sets only the effective S2AP[1]: a DBM
/// descriptor with S2AP = 0b00 may be written (and becomes 0b10) but still
/// not read. With AF = 0 and HA the one update sets both AF and S2AP[1].
#[test]
fn dirty_state_with_s2ap_none_and_af_clear() {
    let mut memory = Memory::default();
    page_4k(
        &mut memory,
        0,
        OUT | PAGE | MEMATTR_NORMAL_WB | S2AP_NONE | AF | DBM,
    );
    page_4k(
        &mut memory,
        0x1000,
        OUT | PAGE | MEMATTR_NORMAL_WB | S2AP_RO | DBM,
    );
    let ha_hd = vtcr_4k_l0() | VTCR_HA | VTCR_HD;
    let lines = run(
        Cpu::with_pa(PA_48).hafdbs(2),
        &memory,
        &[
            req(ha_hd, T, 0, "read"),
            req(ha_hd, T, 0, "write"),
            req(ha_hd, T, 0, "read"),
            req(ha_hd, T, 0x1000, "write"),
        ],
    );
    assert_permission_fault(&lines[0], 3);
    assert_ok(&lines[1], OUT, 3);
    assert_eq!(lines[1]["s2ap"], 2, "{}", lines[1]);
    assert_permission_fault(&lines[2], 3);
    assert_ok(&lines[3], OUT, 3);
    let descriptor = descriptor_of(&lines[3]);
    assert_eq!(descriptor & (AF | S2AP_RW), AF | S2AP_RW, "{}", lines[3]);
    assert_eq!(lines[3]["af_updated"], true);
    assert_eq!(lines[3]["dirty_updated"], true);
}

/// AArch64.S2Walk: HA = 1 removes the access flag fault, and without DBM a
/// write to a read-only page is still a permission fault (no dirty update
/// without DBM, S2Translate: descriptor<51> == '1').
#[test]
fn write_to_read_only_without_dbm_faults_even_with_ha_hd() {
    let mut memory = Memory::default();
    page_4k(
        &mut memory,
        0,
        OUT | PAGE | MEMATTR_NORMAL_WB | S2AP_RO | AF,
    );
    let ha_hd = vtcr_4k_l0() | VTCR_HA | VTCR_HD;
    let line = run1(
        Cpu::with_pa(PA_48).hafdbs(2),
        &memory,
        req(ha_hd, T, 0, "write"),
    );
    assert_permission_fault(&line, 3);
}

// ===========================================================================
// External aborts on the walk (FetchDescriptor, MemSwapTableDesc).
// ===========================================================================

/// A descriptor read outside every memslot is a synchronous external abort
/// on the walk at the level of that read (FSC 0x14 + level).
#[test]
fn descriptor_outside_memslots() {
    let layout = layout_4k_l0();
    let mut memory = Memory::default();
    layout.map(
        &mut memory,
        &[T, T + 0x1000, 0x7000_0000],
        0,
        OUT | PAGE | RW,
    );
    // The leaf's table (at 0x7000_0000) is not written: remove its slot.
    memory.words.retain(|&address, _| address < 0x7000_0000);
    let line = run1(
        Cpu::with_pa(PA_48),
        &memory,
        req(vtcr_4k_l0(), T, 0, "read"),
    );
    assert_fault(&line, "external_abort", 2, fsc_external(2));
}

/// AArch64.MemSwapTableDesc: a hardware update that memory refuses is an
/// external abort on the walk (the walker's memslot model: a read-only
/// slot), at the leaf's level; without an update the same walk succeeds.
#[test]
fn refused_update_is_external_abort_at_leaf_level() {
    let mut memory = Memory::default();
    page_4k(&mut memory, 0, OUT | PAGE | MEMATTR_NORMAL_WB | S2AP_RW);
    page_4k(&mut memory, 0x1000, OUT | PAGE | RW);
    memory.read_only = true;
    let ha = vtcr_4k_l0() | VTCR_HA;
    let lines = run(
        Cpu::with_pa(PA_48).hafdbs(1),
        &memory,
        &[req(ha, T, 0, "read"), req(ha, T, 0x1000, "read")],
    );
    assert_fault(&lines[0], "external_abort", 3, fsc_external(3));
    assert_ok(&lines[1], OUT, 3);
}

/// AArch64.PAMax with PARange 0b0000 (32 bits): T0SZ 32 from level 1 is
/// the largest input (AArch64.S2MinTxSZ), any output bit 32 is an address
/// size fault. Without DS the shareability is the descriptor's SH[1:0].
#[test]
fn thirty_two_bit_cpu_and_descriptor_shareability() {
    let layout = Layout {
        granule: Granule::K4,
        ia_bits: 32,
        start: 1,
        format: Format::Bits48,
    };
    let mut memory = Memory::default();
    let tables = [T, T + 0x1000, T + 0x2000];
    layout.map(&mut memory, &tables, 0x1000, OUT | PAGE | RW | SH_INNER);
    layout.map(&mut memory, &tables, 0x2000, (1 << 32) | PAGE | RW);
    let k4 = vtcr(Granule::K4, 32, 0b01, PS_48);
    let lines = run(
        Cpu::with_pa(PA_32),
        &memory,
        &[
            req(k4, T, 0x1234, "read"),
            req(k4, T, 0x2234, "read"),
            req(vtcr(Granule::K4, 31, 0b01, PS_48), T, 0x1234, "read"),
        ],
    );
    assert_ok(&lines[0], OUT | 0x234, 3);
    assert_eq!(lines[0]["sh"], 3, "{}", lines[0]);
    assert_address_size_fault(&lines[1], 3);
    assert_translation_fault(&lines[2], 0);
}

/// AArch64.S2MinTxSZ with PAMax 52: 52-bit inputs (T0SZ 12) need the 64KB
/// granule (FEAT_LPA) or DS = 1 (FEAT_LPA2); 4KB/16KB without DS stay at
/// T0SZ >= 16. With DS, 4KB SL0 0b10 resolves a 52-bit input from level 0
/// with 16 concatenated tables (AArch64.S2InconsistentSL: 40..=52 bits).
#[test]
fn fifty_two_bit_inputs() {
    let cpu = Cpu::with_pa(PA_52).lpa2();
    let layout = Layout {
        granule: Granule::K4,
        ia_bits: 52,
        start: 0,
        format: Format::Lpa2,
    };
    let mut memory = Memory::default();
    let ipa = 0xf_ff80_0000_0000 | 0x5000; // level-0 index 0x1fff
    let tables = [T, T + 0x1_0000, T + 0x1_1000, T + 0x1_2000];
    layout.map(&mut memory, &tables, ipa, OUT | PAGE | RW);
    let ds_l0 = vtcr(Granule::K4, 12, 0b10, PS_52) | VTCR_DS;
    let no_ds = vtcr(Granule::K4, 12, 0b10, PS_52);
    let k16_no_ds = vtcr(Granule::K16, 12, 0b11, PS_52);
    let lines = run(
        cpu,
        &memory,
        &[
            req(ds_l0, T, ipa | 0x10, "read"),
            req(no_ds, T, ipa | 0x10, "read"),
            req(k16_no_ds, T, 0, "read"),
        ],
    );
    assert_ok(&lines[0], OUT | 0x10, 3);
    assert_translation_fault(&lines[1], 0);
    assert_translation_fault(&lines[2], 0);

    // 64KB, T0SZ 12, start level 1 (IPA[51:42], 1024 entries).
    let layout = Layout {
        granule: Granule::K64,
        ia_bits: 52,
        start: 1,
        format: Format::Lpa64k,
    };
    let mut memory = Memory::default();
    let ipa = 0xf_fc00_0001_0000;
    layout.map(
        &mut memory,
        &[T, T + 0x1_0000, T + 0x2_0000],
        ipa,
        OUT | PAGE | RW,
    );
    let k64 = vtcr(Granule::K64, 12, 0b10, PS_52);
    let lines = run(
        Cpu::with_pa(PA_52),
        &memory,
        &[req(k64, T, ipa | 0x10, "read")],
    );
    assert_ok(&lines[0], OUT | 0x10, 3);
    // PAMax 48: T0SZ 12 is below the minimum 16.
    let lines = run(
        Cpu::with_pa(PA_48),
        &memory,
        &[req(k64, T, ipa | 0x10, "read")],
    );
    assert_translation_fault(&lines[0], 0);
}

/// StageOA / AArch64.ContiguousSize: 16KB pages are contiguous in runs of
/// 128 (2MB), 16KB level-2 blocks in runs of 32; 64KB pages in runs of 32.
/// The IPA supplies every output bit below the run.
#[test]
fn contiguous_sizes_per_granule() {
    let k16 = Layout {
        granule: Granule::K16,
        ia_bits: 47,
        start: 1,
        format: Format::Bits48,
    };
    let mut memory = Memory::default();
    // Descriptor OA bits 20:14 set: ignored under the hint.
    let ipa = 0x12_3450_0000 | (0x7f << 14);
    k16.map(
        &mut memory,
        &[T, T + 0x4000, T + 0x8000],
        ipa,
        (OUT | 0x1f_c000) | PAGE | RW | CONTIGUOUS,
    );
    let ipa2 = 0x40_0000_0000 | (0x1f << 25);
    k16.map(
        &mut memory,
        &[T, T + 0xc000],
        ipa2,
        (OUT | 0x3e00_0000) | BLOCK | RW | CONTIGUOUS,
    );
    let v16 = vtcr(Granule::K16, 17, 0b10, PS_48);
    let lines = run(
        Cpu::with_pa(PA_48),
        &memory,
        &[
            req(v16, T, ipa | 0x123, "read"),
            req(v16, T, ipa2 | 0x123, "read"),
        ],
    );
    assert_ok(&lines[0], OUT | (ipa & 0x1f_ffff) | 0x123, 3);
    assert_eq!(hex(&lines[0], "contiguous_size"), 2 << 20, "{}", lines[0]);
    assert_ok(&lines[1], OUT | (ipa2 & 0x3fff_ffff) | 0x123, 2);
    assert_eq!(hex(&lines[1], "contiguous_size"), 1 << 30, "{}", lines[1]);

    let k64 = Layout {
        granule: Granule::K64,
        ia_bits: 48,
        start: 1,
        format: Format::Bits48,
    };
    let mut memory = Memory::default();
    let ipa = 0x1234_5000_0000 | (0x1f << 16);
    k64.map(
        &mut memory,
        &[T, T + 0x1_0000, T + 0x2_0000],
        ipa,
        (OUT | 0x1f_0000) | PAGE | RW | CONTIGUOUS,
    );
    let v64 = vtcr(Granule::K64, 16, 0b10, PS_48);
    let line = run1(
        Cpu::with_pa(PA_48),
        &memory,
        req(v64, T, ipa | 0x123, "read"),
    );
    assert_ok(&line, OUT | (ipa & 0x1f_ffff) | 0x123, 3);
}

/// StageOA takes the output bits below a contiguous run from the IPA, and
/// AArch64.S2Walk checks that full output address against the output size:
/// sixteen contiguous 1GB blocks under PS = 32 bits put IPA bits 33:30 in
/// the OA, an address size fault at level 1 when they reach bit 32.
#[test]
fn contiguous_output_beyond_output_size() {
    let layout = layout_4k_l0();
    let mut memory = Memory::default();
    layout.map(&mut memory, &[T, T + 0x1000], 0, BLOCK | RW | CONTIGUOUS);
    // All sixteen entries of the run hold the same descriptor (OA 0): the
    // output address of each comes from the IPA.
    for entry in 1..16 {
        memory.put(T + 0x1000 + entry * 8, BLOCK | RW | CONTIGUOUS);
    }
    let ps32 = vtcr(Granule::K4, 16, 0b10, PS_32);
    let lines = run(
        Cpu::with_pa(PA_48),
        &memory,
        &[
            req(ps32, T, (3 << 30) | 0x10, "read"),
            req(ps32, T, (1 << 32) | 0x10, "read"),
        ],
    );
    assert_ok(&lines[0], (3 << 30) | 0x10, 1);
    assert_address_size_fault(&lines[1], 1);
}

/// AArch64.ContiguousBitFaults: a contiguous run wider than the input size
/// may fault (IMPLEMENTATION DEFINED "Translation fault on misprogrammed
/// contiguous bit"); the walker's documented choice is no fault, with the
/// output address as StageOA gives it. 64KB, T0SZ 47 (17-bit IPA), a page
/// run of 32 x 64KB = 2MB.
#[test]
fn contiguous_run_wider_than_input_does_not_fault() {
    let mut memory = Memory::default();
    memory.put(T + 8, (OUT | 0x1_0000) | PAGE | RW | CONTIGUOUS);
    let v = vtcr(Granule::K64, 47, 0b00, PS_48);
    let line = run1(
        Cpu::with_pa(PA_48).ttst(),
        &memory,
        req(v, T, 0x1_2345, "read"),
    );
    assert_ok(&line, OUT | 0x1_2345, 3);
}

/// Fault status codes carry the level of the leaf for blocks too: access
/// flag at level 1 (0x09), permission at level 2 (0x0E), and with DS an
/// access flag fault on a level-0 block (0x08).
#[test]
fn block_fault_levels() {
    let layout = layout_4k_l0();
    let mut memory = Memory::default();
    layout.map(
        &mut memory,
        &[T, T + 0x1000],
        0,
        OUT | BLOCK | MEMATTR_NORMAL_WB | S2AP_RW,
    );
    layout.map(
        &mut memory,
        &[T, T + 0x2000, T + 0x3000],
        1 << 39,
        OUT | BLOCK | MEMATTR_NORMAL_WB | S2AP_RO | AF,
    );
    let lines = run(
        Cpu::with_pa(PA_48),
        &memory,
        &[
            req(vtcr_4k_l0(), T, 0x10, "read"),
            req(vtcr_4k_l0(), T, (1 << 39) | 0x10, "write"),
            req(vtcr_4k_l0(), T, (1 << 39) | 0x10, "read"),
        ],
    );
    assert_access_flag_fault(&lines[0], 1);
    assert_permission_fault(&lines[1], 2);
    assert_ok(&lines[2], OUT | 0x10, 2);

    let mut memory = Memory::default();
    memory.put(T, OUT | BLOCK | MEMATTR_NORMAL_WB | S2AP_RW);
    let ds = vtcr(Granule::K4, 16, 0b10, PS_52) | VTCR_DS;
    let line = run1(
        Cpu::with_pa(PA_52).lpa2(),
        &memory,
        req(ds, T, 0x10, "read"),
    );
    assert_access_flag_fault(&line, 0);
}

/// AArch64.S2DecodeTG0: a reserved TG0 (0b11), or a granule stage 2 does
/// not support, selects an IMPLEMENTATION DEFINED granule; the walker's
/// documented choice is the smallest supported one (4KB here).
#[test]
fn reserved_or_unsupported_tg0_walks_as_4k() {
    let mut memory = Memory::default();
    page_4k(&mut memory, 0x1000, OUT | PAGE | RW);
    let reserved = vtcr_4k_l0() | (0b11 << 14);
    let sixteen = (vtcr_4k_l0() & !(0b11 << 14)) | (Granule::K16.tg0() << 14);
    // TGran16_2 = 0b0001: 16KB not supported at stage 2.
    let mut cpu = Cpu::with_pa(PA_48);
    cpu.mmfr0 = (cpu.mmfr0 & !(0xf << 32)) | (0b0001 << 32);
    let lines = run(
        cpu,
        &memory,
        &[
            req(reserved, T, 0x1010, "read"),
            req(sixteen, T, 0x1010, "read"),
        ],
    );
    assert_ok(&lines[0], OUT | 0x10, 3);
    assert_ok(&lines[1], OUT | 0x10, 3);
}

/// AArch64.NextTableBase / LeafBase without DS take the address from bits
/// 47:granule only: bits 49:48 (RES0) are not OA bits even on a FEAT_LPA2
/// CPU, and block bits below the block size (RES0, nT) are not either.
/// With DS, bits 9:8 of a *table* descriptor are its OA[51:50], so with
/// PS = 48 they make an address size fault at the table's level.
#[test]
fn res0_bits_are_not_address_bits() {
    let layout = layout_4k_l0();
    let mut memory = Memory::default();
    let tables = [T, T + 0x1000, T + 0x2000, T + 0x3000];
    layout.map(&mut memory, &tables, 0, OUT | (3 << 48) | PAGE | RW);
    layout.map(
        &mut memory,
        &tables[..3],
        1 << 21,
        OUT | (0xf << 17) | (1 << 13) | BLOCK | RW,
    );
    let lines = run(
        Cpu::with_pa(PA_52).lpa2(),
        &memory,
        &[
            req(vtcr(Granule::K4, 16, 0b10, PS_48), T, 0x10, "read"),
            req(vtcr(Granule::K4, 16, 0b10, PS_52), T, 0x10, "read"),
            req(
                vtcr(Granule::K4, 16, 0b10, PS_48),
                T,
                (1 << 21) | 0x10,
                "read",
            ),
        ],
    );
    assert_ok(&lines[0], OUT | 0x10, 3);
    assert_ok(&lines[1], OUT | 0x10, 3);
    assert_ok(&lines[2], OUT | 0x10, 2);

    let mut memory = Memory::default();
    memory.put(T, (T + 0x1000) | (0b01 << 8) | 0b11); // table at 2^50 + T + 4K
    let ds48 = vtcr(Granule::K4, 16, 0b10, PS_48) | VTCR_DS;
    let line = run1(Cpu::with_pa(PA_52).lpa2(), &memory, req(ds48, T, 0, "read"));
    assert_address_size_fault(&line, 0);
}

/// Review 53 (R53-3, R53-4): with hv's L1 ID registers
/// ([`Cpu::hv_l1`]), VTCR_EL2.DS is RES0 for the 4KB stage 2: the
/// TGran4_2 field shows no FEAT_LPA2, whatever stage 1 shows
/// (AArch64.NSS2TTWParams with the ID_AA64MMFR0_EL1 field descriptions;
/// QEMU's `aa64_va_parameters` agrees, per granule and stage). An L1 that
/// sets DS (and SL2) gets the 48-bit format: descriptor bits 9:8 are SH in
/// a leaf and ignored in a table, bits 49:48 are not output address, and
/// SL2 is RES0. With DS honoured, every request below would fault
/// (address size: OA[51:48] beyond PS 40 bits; SL2 with SL0 0b01: invalid
/// start level).
#[test]
fn hv_l1_ds_is_res0_for_a_4k_stage_2_without_lpa2() {
    let cpu = Cpu::hv_l1();
    let mut memory = Memory::default();
    // 4KB, 39-bit IPA from level 1 (T0SZ 25, SL0 0b01), PS 40 bits.
    let (l2a, l3a, l2b) = (T + 0x1000, T + 0x2000, T + 0x3000);
    let ipa_page = 0x4020_3000; // level-1 index 1, level-2 1, level-3 3
    let ipa_block = 0x8040_0000; // level-1 index 2, level-2 2

    // A table descriptor with bits 9:8 set: ignored, or OA[51:50] with DS.
    memory.put(T + 8, l2a | (0b11 << 8) | 0b11);
    memory.put(l2a + 8, Format::Bits48.table(l3a));
    // A page with SH Outer (0b10 in bits 9:8) and bit 48 set.
    let page_oa = 0xff_ffff_f000;
    memory.put(l3a + 3 * 8, page_oa | (0b10 << 8) | (1 << 48) | PAGE | RW);
    memory.put(T + 2 * 8, Format::Bits48.table(l2b));
    // A 2MB block with SH Inner and bit 49 set.
    let block_oa = 0xff_ffe0_0000;
    memory.put(l2b + 2 * 8, block_oa | SH_INNER | (1 << 49) | BLOCK | RW);
    let no_ds = vtcr(Granule::K4, 25, 0b01, PS_40);
    let requests: Vec<Request> = [no_ds, no_ds | VTCR_DS, no_ds | VTCR_DS | VTCR_SL2]
        .into_iter()
        .flat_map(|v| {
            [
                req(v, T, ipa_page | 0x123, "read"),
                req(v, T, ipa_block | 0x1_2345, "write"),
            ]
        })
        .collect();
    let lines = run(cpu, &memory, &requests);
    let model_cpu = reference::Cpu::from_id_registers(cpu.mmfr0, cpu.mmfr1, cpu.mmfr2);
    let mut model_memory = reference::Chunks::new();
    for (&address, &word) in &memory.words {
        let (_, chunk) = model_memory
            .entry(address & !(CHUNK - 1))
            .or_insert_with(|| (true, vec![0; (CHUNK / 8) as usize]));
        chunk[((address % CHUNK) / 8) as usize] = word;
    }
    for (line, r) in lines.iter().zip(&requests) {
        let expected = reference::translate(
            &model_cpu,
            &mut model_memory,
            r.vtcr,
            r.vttbr,
            r.ipa,
            r.access,
        );
        assert_eq!(
            observed(line),
            expected,
            "vtcr {:#x} ipa {:#x}\n{line}",
            r.vtcr,
            r.ipa
        );
    }
    for pair in lines.chunks(2) {
        assert_ok(&pair[0], page_oa | 0x123, 3);
        assert_eq!(pair[0]["sh"], 0b10, "{}", pair[0]);
        assert_ok(&pair[1], block_oa | 0x1_2345, 2);
        assert_eq!(pair[1]["sh"], 0b11, "{}", pair[1]);
    }
}

// ===========================================================================
// Differential check against a reference model on random tables.
//
// `reference` is a second, deliberately plain transliteration of
// AArch64.S2Translate / S2Walk written for this review (not derived from
// the walker), with the walker's documented choices where the architecture
// leaves one. Random memory images and registers, biased towards deep
// walks, are walked by the real binary and by the model in the same order
// (hardware updates included) and every output line must agree.
// ===========================================================================

mod reference {
    use std::collections::BTreeMap;

    /// The exposed CPU, decoded.
    pub struct Cpu {
        pub pa_max: u32,
        /// Stage-2 support per granule (4K, 16K, 64K): None = unsupported,
        /// Some(true) = with the 52-bit (LPA2) format.
        pub granules: [Option<bool>; 3],
        pub hafdbs: u64,
        pub xnx: bool,
        pub ttst: bool,
    }

    impl Cpu {
        pub fn from_id_registers(mmfr0: u64, mmfr1: u64, mmfr2: u64) -> Cpu {
            let field = |reg: u64, lsb: u32| (reg >> lsb) & 0xf;
            let pa_max = [32, 36, 40, 42, 44, 48, 52][field(mmfr0, 0) as usize];
            // Stage-1 fields, used when the stage-2 field is 0b0000.
            let s1_4k = match field(mmfr0, 28) {
                0 => Some(false),
                1 => Some(true),
                _ => None,
            };
            let s1_16k = match field(mmfr0, 20) {
                1 => Some(false),
                2 => Some(true),
                _ => None,
            };
            let s1_64k = match field(mmfr0, 24) {
                0 => Some(false),
                _ => None,
            };
            let s2 = |lsb: u32, s1: Option<bool>| match field(mmfr0, lsb) {
                0 => s1,
                2 => Some(false),
                3 => Some(true),
                _ => None,
            };
            Cpu {
                pa_max,
                granules: [s2(40, s1_4k), s2(32, s1_16k), s2(36, s1_64k)],
                hafdbs: field(mmfr1, 0),
                xnx: field(mmfr1, 28) == 1,
                ttst: field(mmfr2, 28) == 1,
            }
        }
    }

    #[derive(Debug, PartialEq, Eq, Clone)]
    pub enum Outcome {
        Ok {
            oa: u64,
            level: i64,
            size: u64,
            contiguous_size: u64,
            s2ap: u64,
            xn: u64,
            memattr: u64,
            sh: u64,
            af_updated: bool,
            dirty_updated: bool,
        },
        Fault {
            kind: &'static str,
            level: i64,
        },
    }

    fn fault(kind: &'static str, level: i64) -> Outcome {
        Outcome::Fault { kind, level }
    }

    /// Guest memory: 64KB chunks of little-endian words, each writable
    /// (true) or a read-only memslot (false).
    pub type Chunks = BTreeMap<u64, (bool, Vec<u64>)>;

    fn read(memory: &Chunks, address: u64) -> Option<u64> {
        let (_, chunk) = memory.get(&(address & !0xffff))?;
        Some(chunk[((address & 0xffff) / 8) as usize])
    }

    /// A hardware update; `false` if memory refuses it.
    fn write(memory: &mut Chunks, address: u64, value: u64) -> bool {
        let (writable, chunk) = memory.get_mut(&(address & !0xffff)).unwrap();
        if *writable {
            chunk[((address & 0xffff) / 8) as usize] = value;
        }
        *writable
    }

    fn bits(value: u64, hi: u32, lo: u32) -> u64 {
        (value >> lo) & ((1u64 << (hi - lo + 1)) - 1)
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Tgx {
        K4,
        K16,
        K64,
    }

    fn granule_bits(tgx: Tgx) -> u32 {
        match tgx {
            Tgx::K4 => 12,
            Tgx::K16 => 14,
            Tgx::K64 => 16,
        }
    }

    /// AArch64.S2Translate for one access ("read", "write", "exec",
    /// "exec_el0"), updating `memory` as the hardware would.
    pub fn translate(
        cpu: &Cpu,
        memory: &mut Chunks,
        vtcr: u64,
        vttbr: u64,
        ipa: u64,
        access: &str,
    ) -> Outcome {
        // AArch64.S2DecodeTG0, with the walker's choice (smallest
        // supported granule) for reserved or unsupported encodings.
        let supported = |t: Tgx| cpu.granules[t as usize].is_some();
        let mut tgx = match bits(vtcr, 15, 14) {
            0 => Some(Tgx::K4),
            1 => Some(Tgx::K64),
            2 => Some(Tgx::K16),
            _ => None,
        }
        .filter(|t| supported(*t));
        if tgx.is_none() {
            tgx = [Tgx::K4, Tgx::K16, Tgx::K64]
                .into_iter()
                .find(|t| supported(*t));
        }
        let tgx = tgx.unwrap();
        let lpa2 = cpu.granules[tgx as usize] == Some(true);
        let lpa = cpu.pa_max >= 52;
        // AArch64.NSS2TTWParams.
        let ds = tgx != Tgx::K64 && lpa2 && bits(vtcr, 32, 32) == 1;
        let sl2 = tgx == Tgx::K4 && lpa2 && bits(vtcr, 33, 33) == 1 && ds;
        let sl0 = bits(vtcr, 7, 6);
        let ha = cpu.hafdbs >= 1 && bits(vtcr, 21, 21) == 1;
        let hd = cpu.hafdbs >= 2 && bits(vtcr, 22, 22) == 1;
        let ps = bits(vtcr, 18, 16);
        let txsz = bits(vtcr, 5, 0) as u32;
        let sh0 = bits(vtcr, 13, 12);
        // AArch64.PhysicalAddressSize.
        let ps_bits = [32, 36, 40, 42, 44, 48, 52, 56][ps as usize];
        let max_ps = if lpa && (tgx == Tgx::K64 || lpa2) {
            cpu.pa_max.min(52)
        } else {
            cpu.pa_max.min(48)
        };
        let oasize = ps_bits.min(max_ps);
        let out_of_range = |address: u64| address >> oasize != 0;

        // AArch64.S2TxSZFaults (faulting in both IMPLEMENTATION DEFINED cases).
        let ips = if lpa && (tgx == Tgx::K64 || ds) {
            cpu.pa_max.min(52)
        } else {
            cpu.pa_max.min(48)
        };
        let min_txsz = 64 - ips;
        let max_txsz = match (cpu.ttst, tgx) {
            (false, _) => 39,
            (true, Tgx::K64) => 47,
            (true, _) => 48,
        };
        if txsz < min_txsz || txsz > max_txsz {
            return fault("translation", 0);
        }
        // AArch64.S2StartLevel and AArch64.S2InvalidSL.
        let (startlevel, invalid): (i64, bool) = match tgx {
            Tgx::K4 => match (sl2 as u64) << 2 | sl0 {
                0b000 => (2, false),
                0b001 => (1, false),
                0b010 => (0, cpu.pa_max < 44),
                0b011 => (3, !cpu.ttst),
                0b100 => (-1, cpu.pa_max < 52),
                _ => (0, true),
            },
            // DDI 0487 M.a.a (the v9.4 pseudocode had no PAMax terms for
            // 4KB level -1 and 16KB level 0).
            Tgx::K16 => match sl0 {
                0b11 => (0, !ds || cpu.pa_max < 52),
                0b10 => (1, cpu.pa_max < 42),
                s => (3 - s as i64, false),
            },
            Tgx::K64 => match sl0 {
                0b11 => (0, true),
                0b10 => (1, cpu.pa_max < 44),
                s => (3 - s as i64, false),
            },
        };
        let granulebits = granule_bits(tgx);
        let stride = granulebits - 3;
        let iasize = 64 - txsz;
        // AArch64.S2InconsistentSL.
        let levels = (3 - startlevel) as u32;
        let sl_min_iasize = levels * stride + granulebits + 1;
        let sl_max_iasize = sl_min_iasize + (stride - 1) + 4;
        if invalid || iasize < sl_min_iasize || iasize > sl_max_iasize {
            return fault("translation", 0);
        }
        // AArch64.IPAIsOutOfRange.
        if iasize < 64 && ipa >> iasize != 0 {
            return fault("translation", 0);
        }
        // AArch64.S2TTBaseAddress.
        let mut tsize = iasize - (levels * stride + granulebits) + 3;
        let mut base = if (lpa && tgx == Tgx::K64 && ps == 0b110) || ds {
            tsize = tsize.max(6);
            (bits(vttbr, 5, 2) << 48) | (bits(vttbr, 47, 6) << 6)
        } else {
            bits(vttbr, 47, 1) << 1
        };
        base &= !((1u64 << tsize) - 1);
        // AArch64.S2Walk: address size fault by TTB, at level 0.
        if out_of_range(base) {
            return fault("address_size", 0);
        }
        // Where descriptors keep OA[51:48] (NextTableBase / LeafBase).
        let high = |d: u64| -> u64 {
            if tgx == Tgx::K64 && cpu.pa_max >= 52 {
                bits(d, 15, 12) << 48
            } else if ds {
                (bits(d, 9, 8) << 50) | (bits(d, 49, 48) << 48)
            } else {
                0
            }
        };
        let lsb = |level: i64| granulebits + (3 - level) as u32 * stride;
        let mut level = startlevel;
        let mut table = base;
        let (descaddr, descriptor) = loop {
            let width = if level == startlevel {
                iasize - lsb(level)
            } else {
                stride
            };
            let index = (ipa >> lsb(level)) & ((1u64 << width) - 1);
            let descaddr = table + index * 8;
            let Some(d) = read(memory, descaddr) else {
                return fault("external_abort", level);
            };
            // AArch64.DecodeDescriptorType / BlockDescSupported.
            if d & 1 == 0 {
                return fault("translation", level);
            }
            if level == 3 {
                if d & 2 == 0 {
                    return fault("translation", level);
                }
                break (descaddr, d);
            }
            if d & 2 != 0 {
                // AArch64.NextTableBase, then the address size check.
                table = (bits(d, 47, granulebits) << granulebits) | high(d);
                if out_of_range(table) {
                    return fault("address_size", level);
                }
                level += 1;
                continue;
            }
            let block_ok = match tgx {
                Tgx::K4 => (level == 0 && ds) || level == 1 || level == 2,
                Tgx::K16 => (level == 1 && ds) || level == 2,
                Tgx::K64 => (level == 1 && cpu.pa_max >= 52) || level == 2,
            };
            if !block_ok {
                return fault("translation", level);
            }
            break (descaddr, d);
        };
        // AArch64.ContiguousBit / ContiguousSize.
        let contiguous = bits(descriptor, 52, 52) == 1
            && !matches!((tgx, level), (Tgx::K4, 0) | (Tgx::K16, 1) | (Tgx::K64, 1));
        let csize = if !contiguous {
            0
        } else {
            match (tgx, level) {
                (Tgx::K4, _) => 4,
                (Tgx::K16, 2) => 5,
                (Tgx::K16, _) => 7,
                (Tgx::K64, _) => 5,
            }
        };
        // AArch64.LeafBase and StageOA.
        let leafsize = lsb(level);
        let leafbase = (bits(descriptor, 47, leafsize) << leafsize) | high(descriptor);
        let msb = leafsize + csize;
        let oa = (leafbase & !((1u64 << msb) - 1)) | (ipa & ((1u64 << msb) - 1));
        if out_of_range(oa) {
            return fault("address_size", level);
        }
        if bits(descriptor, 10, 10) == 0 && !ha {
            return fault("access_flag", level);
        }
        // AArch64.S2ApplyOutputPerms / S2CheckPermissions.
        let dbm = bits(descriptor, 51, 51) == 1;
        let mut s2ap = bits(descriptor, 7, 6);
        if ha && hd && dbm {
            s2ap |= 2;
        }
        let xn = bits(descriptor, 54, 54);
        let xnx = if cpu.xnx { bits(descriptor, 53, 53) } else { 0 };
        let (px, ux) = match (xn, xnx) {
            (0, 0) => (true, true),
            (0, _) => (false, true),
            (1, 0) => (false, false),
            _ => (true, false),
        };
        let device = bits(descriptor, 5, 4) == 0;
        let permitted = match access {
            "read" => s2ap & 1 != 0,
            "write" => s2ap & 2 != 0,
            // Fetch from Device: the walker's permission-fault choice.
            "exec" => px && !device,
            "exec_el0" => ux && !device,
            _ => unreachable!(),
        };
        if !permitted {
            return fault("permission", level);
        }
        // Hardware updates (S2Translate), by the one swap.
        let mut new = descriptor;
        if ha {
            new |= 1 << 10;
        }
        if ha && hd && dbm && access == "write" {
            new |= 1 << 7;
        }
        // A refused update (read-only memslot): the walker's choice of a
        // synchronous external abort on the walk at the leaf's level.
        if new != descriptor && !write(memory, descaddr, new) {
            return fault("external_abort", level);
        }
        Outcome::Ok {
            oa,
            level,
            size: 1 << leafsize,
            contiguous_size: 1 << msb,
            s2ap: bits(new, 7, 6),
            xn: xn << 1 | xnx,
            memattr: bits(new, 5, 2),
            sh: if ds { sh0 } else { bits(new, 9, 8) },
            af_updated: (new ^ descriptor) & (1 << 10) != 0,
            dirty_updated: (new ^ descriptor) & (1 << 7) != 0,
        }
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// The line the binary printed, in the model's terms.
fn observed(line: &Value) -> reference::Outcome {
    if line["ok"] == true {
        reference::Outcome::Ok {
            oa: hex(line, "oa"),
            level: line["level"].as_i64().unwrap(),
            size: hex(line, "size"),
            contiguous_size: hex(line, "contiguous_size"),
            s2ap: line["s2ap"].as_u64().unwrap(),
            xn: line["xn"].as_u64().unwrap(),
            memattr: hex(line, "memattr"),
            sh: line["sh"].as_u64().unwrap(),
            af_updated: line["af_updated"].as_bool().unwrap(),
            dirty_updated: line["dirty_updated"].as_bool().unwrap(),
        }
    } else {
        let kind = match line["fault"].as_str().unwrap_or_else(|| panic!("{line}")) {
            "translation" => "translation",
            "address_size" => "address_size",
            "access_flag" => "access_flag",
            "permission" => "permission",
            "external_abort" => "external_abort",
            other => panic!("unknown fault kind {other} in {line}"),
        };
        let level = line["level"].as_i64().unwrap();
        let fsc = match kind {
            "translation" => fsc_translation(level),
            "address_size" => fsc_address_size(level),
            "access_flag" => fsc_access_flag(level),
            "permission" => fsc_permission(level),
            _ => fsc_external(level),
        };
        assert_eq!(
            hex(line, "fsc"),
            fsc,
            "FSC does not match kind and level: {line}"
        );
        reference::Outcome::Fault { kind, level }
    }
}

/// One random memory image: chunks near 1GB, and (for 52-bit CPUs) near
/// 2^48 and 2^50, full of descriptors that mostly point at each other.
fn random_image(rng: &mut Rng, wide: bool) -> reference::Chunks {
    let mut bases: Vec<u64> = (0..6).map(|i| T + i * CHUNK).collect();
    if wide {
        bases.push((1 << 48) | T);
        bases.push((1 << 50) | T);
    }
    let outputs = [
        0u64,
        OUT,
        1 << 32,
        (1 << 40) - CHUNK,
        1 << 40,
        1 << 44,
        (1 << 48) - CHUNK,
        1 << 48,
        1 << 50,
        0xf << 48,
    ];
    let mut chunks = reference::Chunks::new();
    for &base in &bases {
        let mut words = vec![0u64; (CHUNK / 8) as usize];
        for word in words.iter_mut() {
            let roll = rng.below(100);
            *word = if roll < 12 {
                0
            } else if roll < 55 {
                // A table descriptor to a granule-aligned spot in some chunk
                // (4KB aligned: a 16KB/64KB walk ignores the low bits).
                let target = rng.pick(&bases) + rng.below(16) * 0x1000;
                let mut d = (target & 0x0000_ffff_ffff_f000) | 0b11;
                if target >> 48 != 0 {
                    // Spell the high bits in either 52-bit format.
                    d |= if rng.chance(50) {
                        ((target >> 48) & 0xf) << 12
                    } else {
                        (target & (3 << 48)) | (((target >> 50) & 3) << 8)
                    };
                }
                d
            } else if roll < 97 {
                // A leaf: block or page with random attributes.
                let oa = if rng.chance(50) {
                    OUT
                } else {
                    rng.pick(&outputs)
                } + (rng.below(1 << 20) << 12);
                let mut d = (oa & 0x0000_ffff_ffff_f000) | rng.pick(&[BLOCK, PAGE]);
                d |= rng.below(16) << 2; // MemAttr
                d |= rng.below(4) << 6; // S2AP
                d |= rng.below(4) << 8; // SH or OA[51:50]
                if rng.chance(85) {
                    d |= AF;
                }
                d |= rng.below(4) << 53; // XN, XNX
                if rng.chance(30) {
                    d |= DBM;
                }
                if rng.chance(15) {
                    d |= CONTIGUOUS;
                }
                if rng.chance(10) {
                    d |= NT;
                }
                if oa >> 48 != 0 || rng.chance(10) {
                    d |= ((oa >> 48) & 0xf) << 12;
                    d |= oa & (3 << 48);
                }
                d
            } else {
                rng.next()
            };
        }
        // One chunk in eight is a read-only memslot.
        chunks.insert(base, (!rng.chance(12), words));
    }
    chunks
}

/// Random register values, biased towards configurations that walk: most
/// pick a granule, a start level and an input size that AArch64.S2InvalidSL
/// and S2InconsistentSL accept for this CPU; the rest are anything.
fn random_registers(rng: &mut Rng, cpu: &reference::Cpu) -> (u64, u64) {
    let wide = cpu.pa_max >= 52;
    let granule = rng.pick(&[Granule::K4, Granule::K16, Granule::K64]);
    let lpa2 = cpu.granules[match granule {
        Granule::K4 => 0,
        Granule::K16 => 1,
        Granule::K64 => 2,
    }] == Some(true);
    let ds = lpa2 && rng.chance(60);
    let mut vtcr = (1 << 31) | (rng.below(64) << 8) | (granule.tg0() << 14);
    if rng.chance(85) {
        // A consistent configuration.
        let levels: &[i64] = match granule {
            Granule::K4 if ds => &[-1, 0, 1, 2, 3],
            Granule::K4 => &[0, 1, 2, 3],
            Granule::K16 if ds => &[0, 1, 2, 3],
            Granule::K16 => &[1, 2, 3],
            Granule::K64 => &[1, 2, 3],
        };
        let stride = u64::from(granule.stride());
        let top = if wide && (ds || granule == Granule::K64) {
            52
        } else {
            u64::from(cpu.pa_max.min(48))
        };
        let bottom = if cpu.ttst { 16 } else { 25 };
        // Input sizes each start level can resolve (S2InconsistentSL),
        // within T0SZ's limits, and only where S2InvalidSL allows.
        let range = |start: i64| {
            let sl_min = (3 - start) as u64 * stride + u64::from(granule.bits()) + 1;
            let sl_max = sl_min + stride - 1 + 4;
            let invalid = match (granule, start) {
                (Granule::K4, 0) => cpu.pa_max < 44,
                (Granule::K4, 3) => !cpu.ttst,
                (Granule::K16, 1) => cpu.pa_max < 42,
                (Granule::K64, 1) => cpu.pa_max < 44,
                _ => false,
            };
            (sl_min.max(bottom), sl_max.min(top), invalid)
        };
        let feasible: Vec<i64> = levels
            .iter()
            .copied()
            .filter(|&l| {
                let (lo, hi, invalid) = range(l);
                lo <= hi && !invalid
            })
            .collect();
        let start = if feasible.is_empty() {
            rng.pick(levels)
        } else {
            rng.pick(&feasible)
        };
        let (lo, hi, _) = range(start);
        let ia = if lo <= hi {
            lo + rng.below(hi - lo + 1)
        } else {
            lo
        };
        vtcr |= 64 - ia;
        let (sl0, sl2) = match (granule, start) {
            (Granule::K4, -1) => (0, true),
            (Granule::K4, 0) => (2, false),
            (Granule::K4, 1) => (1, false),
            (Granule::K4, 2) => (0, false),
            (Granule::K4, _) => (3, false),
            (_, level) => (3 - level as u64, false),
        };
        vtcr |= sl0 << 6;
        if sl2 {
            vtcr |= VTCR_SL2;
        }
        // DS is RES0 without FEAT_LPA2 at stage 2 for the granule, but an
        // L1 may set it (hv's L1 sees FEAT_LPA2 at stage 1): now and then.
        if ds || (granule != Granule::K64 && rng.chance(25)) {
            vtcr |= VTCR_DS;
        }
        vtcr |= rng.pick(&[2, 4, 5, 5, 6, 6, 6, 7]) << 16;
    } else {
        vtcr |= rng.below(64) | (rng.below(4) << 6) | (rng.below(8) << 16);
        if rng.chance(5) {
            vtcr |= 0b11 << 14;
        }
        for bit in [32, 33] {
            if rng.chance(40) {
                vtcr |= 1 << bit;
            }
        }
    }
    for bit in [21, 22] {
        if rng.chance(50) {
            vtcr |= 1 << bit;
        }
    }
    let table = T + rng.below(6) * CHUNK + rng.below(16) * 0x1000;
    let table = if wide && rng.chance(15) {
        table | (1 << 48)
    } else {
        table
    };
    let mut vttbr = (table & 0x0000_ffff_ffff_f000) | (rng.below(1 << 16) << 48);
    if table >> 48 != 0 {
        vttbr |= ((table >> 48) & 0xf) << 2;
    }
    if rng.chance(10) {
        vttbr |= rng.below(64); // CnP and low bits
    }
    (vtcr, vttbr)
}

fn random_ipa(rng: &mut Rng, vtcr: u64) -> u64 {
    let ia_bits = 64 - (vtcr & 0x3f);
    let ipa = rng.next() & ((1u64 << ia_bits.min(63)) - 1);
    if rng.chance(3) {
        ipa | (1 << ia_bits.min(63))
    } else {
        ipa
    }
}

#[test]
fn random_tables_match_the_reference_model() {
    let mut rng = Rng(0x5eed_2026_0001);
    let parangs = [PA_32, 0b0001, PA_40, PA_42, PA_44, PA_48, PA_52];
    let mut compared = 0;
    let mut translations = 0;
    for image in 0..48 {
        let mut cpu = Cpu::with_pa(rng.pick(&parangs));
        if rng.chance(20) {
            // hv's L1: FEAT_LPA2 at stage 1 only, so DS is RES0.
            cpu.mmfr0 = Cpu::hv_l1().mmfr0;
        } else if rng.chance(50) {
            cpu = cpu.lpa2();
        }
        cpu = cpu.hafdbs(rng.below(3));
        if rng.chance(50) {
            cpu = cpu.xnx();
        }
        if rng.chance(50) {
            cpu = cpu.ttst();
        }
        if rng.chance(15) {
            // 16KB not supported at stage 2.
            cpu.mmfr0 = (cpu.mmfr0 & !(0xf << 32)) | (0b0001 << 32);
        }
        let wide = cpu.mmfr0 & 0xf == PA_52;
        let mut model_memory = random_image(&mut rng, wide);
        let mut memory = Memory::default();
        for (&base, (writable, words)) in &model_memory {
            for (i, &word) in words.iter().enumerate() {
                memory.put(base + 8 * i as u64, word);
            }
            if !writable {
                memory.read_only_chunks.push(base);
            }
        }
        let model_cpu = reference::Cpu::from_id_registers(cpu.mmfr0, cpu.mmfr1, cpu.mmfr2);
        let mut requests = Vec::new();
        for _ in 0..10 {
            let (vtcr, vttbr) = random_registers(&mut rng, &model_cpu);
            for _ in 0..25 {
                let access = rng.pick(&["read", "write", "exec", "exec_el0"]);
                requests.push(req(vtcr, vttbr, random_ipa(&mut rng, vtcr), access));
            }
        }
        let lines = run(cpu, &memory, &requests);
        for (r, line) in requests.iter().zip(&lines) {
            let expected = reference::translate(
                &model_cpu,
                &mut model_memory,
                r.vtcr,
                r.vttbr,
                r.ipa,
                r.access,
            );
            assert_eq!(
                observed(line),
                expected,
                "image {image}: mmfr0 {:#x} mmfr1 {:#x} mmfr2 {:#x} vtcr {:#x} vttbr {:#x} ipa {:#x} {}\n{line}",
                cpu.mmfr0,
                cpu.mmfr1,
                cpu.mmfr2,
                r.vtcr,
                r.vttbr,
                r.ipa,
                r.access
            );
            compared += 1;
            if line["ok"] == true {
                translations += 1;
            }
        }
    }
    // The generator must reach the interesting part: real translations.
    assert!(translations * 20 > compared, "{translations} of {compared}");
}

/// Priorities across the walk: AArch64.S2Translate checks the input size
/// (IPAIsOutOfRange) before S2Walk checks the TTB; S2Walk decodes a
/// descriptor's type before looking at its address, so an invalid entry or
/// a block where none is allowed is a translation fault even when its
/// address is beyond the output size; a table address beyond the output
/// size faults at the table's level before the next level is read.
#[test]
fn translation_before_address_size() {
    let layout = layout_4k_l0();
    let mut memory = Memory::default();
    let far = 1u64 << 44;
    // IPA 0: a level-0 block (not allowed without DS) at 2^44.
    memory.put(T, far | BLOCK | RW);
    // IPA 1 << 39: an invalid level-0 entry with address bits beyond.
    memory.put(T + 8, far | 0b10);
    // IPA 2 << 39: level-1 table to 2^44, whose (absent) entries would be
    // external aborts if they were read.
    layout.map(&mut memory, &[T, T + 0x1000, far], 2 << 39, OUT | PAGE | RW);
    let ps40 = vtcr(Granule::K4, 16, 0b10, PS_40);
    let lines = run(
        Cpu::with_pa(PA_48),
        &memory,
        &[
            req(ps40, T, 0x10, "read"),
            req(ps40, T, (1 << 39) | 0x10, "read"),
            req(ps40, T, (2 << 39) | 0x10, "read"),
            // IPA beyond 48 bits with a TTB beyond 40 bits: translation.
            req(ps40, far, 1 << 48, "read"),
            req(ps40, far, 0, "read"),
        ],
    );
    assert_translation_fault(&lines[0], 0);
    assert_translation_fault(&lines[1], 0);
    assert_address_size_fault(&lines[2], 1);
    assert_translation_fault(&lines[3], 0);
    assert_address_size_fault(&lines[4], 0);
}

/// AArch64.S2InvalidSL sets no condition on 16KB SL0 0b00 (level 3): a
/// 25-bit input (T0SZ 39) is resolved from level 3 with 4 concatenated
/// tables without FEAT_TTST (AArch64.S2InconsistentSL: 15..=29 bits).
#[test]
fn sixteen_k_start_level_3() {
    let layout = Layout {
        granule: Granule::K16,
        ia_bits: 25,
        start: 3,
        format: Format::Bits48,
    };
    let mut memory = Memory::default();
    let ipa = 0x1ff_c000;
    layout.map(&mut memory, &[T], ipa, OUT | PAGE | RW);
    let v = vtcr(Granule::K16, 39, 0b00, PS_48);
    let line = run1(Cpu::with_pa(PA_48), &memory, req(v, T, ipa | 0x123, "read"));
    assert_ok(&line, OUT | 0x123, 3);
}
