//! Integration tests of the `s2walk` binary: tables are built byte by byte
//! in temporary files (independently of the walker, from the Arm ARM's
//! descriptor formats) and the real binary is run on them.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const S2WALK: &str = env!("CARGO_BIN_EXE_s2walk");

/// VTCR_EL2 for 4K granule, 48-bit IPA (T0SZ 16), start level 0 (SL0 0b10),
/// write-back inner-shareable walks, PS 48 bits, RES1 bit 31.
const VTCR_4K_L0_48: u64 = 0x8005_3590;
const HA: u64 = 1 << 21;
const HD: u64 = 1 << 22;

/// Descriptor fields (VMSAv8-64 stage 2).
const VALID_TABLE: u64 = 0b11;
const PAGE: u64 = 0b11;
const BLOCK: u64 = 0b01;
const MEMATTR_NORMAL_WB: u64 = 0xf << 2;
const S2AP_RO: u64 = 0b01 << 6;
const S2AP_WO: u64 = 0b10 << 6;
const S2AP_RW: u64 = 0b11 << 6;
const SH_INNER: u64 = 0b11 << 8;
const AF: u64 = 1 << 10;
const DBM: u64 = 1 << 51;
const XN_NONE: u64 = 0b10 << 53;
const XN_EL0_ONLY: u64 = 0b01 << 53;
const RW_PAGE: u64 = MEMATTR_NORMAL_WB | S2AP_RW | SH_INNER | AF | PAGE;

const BASE: u64 = 0x4000_0000;

/// A memory image at a guest-physical base.
struct Image {
    base: u64,
    bytes: Vec<u8>,
    big_endian: bool,
}

impl Image {
    fn new(base: u64, len: usize) -> Image {
        Image {
            base,
            bytes: vec![0; len],
            big_endian: false,
        }
    }

    fn write(&mut self, address: u64, value: u64) {
        let offset = (address - self.base) as usize;
        let bytes = if self.big_endian {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        };
        self.bytes[offset..offset + 8].copy_from_slice(&bytes);
    }

    fn read(&self, address: u64) -> u64 {
        let offset = (address - self.base) as usize;
        let raw: [u8; 8] = self.bytes[offset..offset + 8].try_into().unwrap();
        if self.big_endian {
            u64::from_be_bytes(raw)
        } else {
            u64::from_le_bytes(raw)
        }
    }

    /// Write the image to `dir/name` and return the `FILE@HEXADDR` argument.
    fn save(&self, dir: &TestDir, name: &str) -> String {
        let path = dir.0.join(name);
        std::fs::write(&path, &self.bytes).unwrap();
        format!("{}@{:#x}", path.display(), self.base)
    }
}

/// A 4K-granule, start-level-0 table built in an image: the root at the
/// image base, further tables taken from the following pages.
struct Table4k {
    image: Image,
    next_free: u64,
}

impl Table4k {
    fn new(pages: usize) -> Table4k {
        Table4k {
            image: Image::new(BASE, pages * 4096),
            next_free: BASE + 4096,
        }
    }

    fn vttbr(&self) -> u64 {
        (7 << 48) | BASE // VMID 7
    }

    /// Address of the descriptor for `ipa` at `level`, creating tables above
    /// it as needed.
    fn slot(&mut self, ipa: u64, level: u32) -> u64 {
        let mut table = BASE;
        for l in 0..level {
            let address = table + ((ipa >> (39 - 9 * l)) & 511) * 8;
            let desc = self.image.read(address);
            table = if desc & 3 == 3 {
                desc & 0x0000_ffff_ffff_f000
            } else {
                let next = self.next_free;
                self.next_free += 4096;
                self.image.write(address, next | VALID_TABLE);
                next
            };
        }
        table + ((ipa >> (39 - 9 * level)) & 511) * 8
    }

    /// Write `desc` as the descriptor of `ipa` at `level`; returns its address.
    fn set(&mut self, ipa: u64, level: u32, desc: u64) -> u64 {
        let address = self.slot(ipa, level);
        self.image.write(address, desc);
        address
    }
}

/// A fresh directory for one test's files.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("s2walk-tests")
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }
}

fn run(args: &[&str], stdin: impl AsRef<[u8]>) -> Output {
    let mut child = Command::new(S2WALK)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.as_ref().to_vec();
    let writer = std::thread::spawn(move || {
        // The tool may exit before reading everything (argument errors).
        let _ = input.write_all(&bytes);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    output
}

/// [`run`] for cases that could run away: the child is killed after
/// `deadline` (then `None`), and its output beyond 8 MiB is read, not kept.
fn run_bounded(args: &[&str], stdin: &str, deadline: Duration) -> Option<Output> {
    let mut child = Command::new(S2WALK)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let mut stdout = child.stdout.take().unwrap();
    let stdout_reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buffer = [0u8; 1 << 16];
        while let Ok(n @ 1..) = stdout.read(&mut buffer) {
            if kept.len() < 8 << 20 {
                kept.extend_from_slice(&buffer[..n]);
            }
        }
        kept
    });
    let mut stderr = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    writer.join().unwrap();
    let stdout = stdout_reader.join().unwrap();
    let stderr = stderr_reader.join().unwrap();
    status.map(|status| Output {
        status,
        stdout,
        stderr,
    })
}

/// Runs s2walk (`args[0]` onwards) under `ulimit -v kib`, so a case that
/// would take memory without bound cannot hurt the machine.
fn run_with_address_space_limit(kib: u64, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
        .arg(S2WALK)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout_lines(output: &Output) -> Vec<String> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn json_lines(output: &Output) -> Vec<Value> {
    stdout_lines(output)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn request(vtcr: u64, vttbr: u64, ipa: u64, access: &str) -> String {
    format!(
        "{{\"vtcr\":\"{vtcr:#x}\",\"vttbr\":\"{vttbr:#x}\",\"ipa\":\"{ipa:#x}\",\"access\":\"{access}\"}}\n"
    )
}

fn hex(value: &Value) -> u64 {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    u64::from_str_radix(text.strip_prefix("0x").unwrap(), 16).unwrap()
}

fn assert_fault(line: &Value, kind: &str, level: i64, fsc: u64) {
    assert_eq!(line["ok"], false, "{line}");
    assert_eq!(line["fault"], kind, "{line}");
    assert_eq!(line["level"], level, "{line}");
    assert_eq!(hex(&line["fsc"]), fsc, "{line}");
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn batch_translates_a_page_with_every_field() {
    let dir = TestDir::new("batch_success");
    let mut table = Table4k::new(8);
    let ipa = 0x0000_1234_5678_9000;
    let leaf = table.set(ipa, 3, 0x8765_4000 | RW_PAGE | XN_NONE);
    let mem = table.image.save(&dir, "t.bin");
    let out = run(
        &["batch", "--mem", &mem],
        request(VTCR_4K_L0_48, table.vttbr(), ipa | 0xabc, "read"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    let line = &lines[0];
    assert_eq!(line["ok"], true, "{line}");
    assert_eq!(hex(&line["oa"]), 0x8765_4abc);
    assert_eq!(line["level"], 3);
    assert_eq!(hex(&line["size"]), 0x1000);
    assert_eq!(line["s2ap"], 3);
    assert_eq!(line["xn"], 2);
    assert_eq!(hex(&line["memattr"]), 0xf);
    assert_eq!(line["sh"], 3);
    assert_eq!(hex(&line["descriptor"]), 0x8765_4000 | RW_PAGE | XN_NONE);
    let trail = line["descriptors"].as_array().unwrap();
    assert_eq!(trail.len(), 4);
    assert_eq!(hex(&trail[0]["address"]), BASE + ((ipa >> 39) & 511) * 8);
    assert_eq!(hex(&trail[3]["address"]), leaf);
    for (level, read) in trail.iter().enumerate() {
        assert_eq!(read["level"], level as i64);
    }
}

#[test]
fn batch_reports_blocks_and_contiguous_ranges() {
    let dir = TestDir::new("batch_blocks");
    let mut table = Table4k::new(8);
    // A 1 GiB block at level 1 and a 2 MiB block at level 2.
    table.set(
        0x4000_0000,
        1,
        0x1_c000_0000 | MEMATTR_NORMAL_WB | S2AP_RW | AF | BLOCK,
    );
    table.set(
        0x8000_0000,
        2,
        0x2_0020_0000 | MEMATTR_NORMAL_WB | S2AP_RO | AF | BLOCK,
    );
    // 16 pages with the contiguous hint (bit 52).
    for i in 0..16u64 {
        table.set(
            0xc000_0000 + i * 4096,
            3,
            (0x3_0000_0000 + i * 4096) | RW_PAGE | (1 << 52),
        );
    }
    let mem = table.image.save(&dir, "t.bin");
    let vttbr = table.vttbr();
    let input = [
        request(VTCR_4K_L0_48, vttbr, 0x4123_4567, "write"),
        request(VTCR_4K_L0_48, vttbr, 0x8012_3456, "read"),
        request(VTCR_4K_L0_48, vttbr, 0xc000_5123, "exec"),
    ]
    .concat();
    let out = run(&["batch", "--mem", &mem], &input);
    assert!(out.status.success());
    let lines = json_lines(&out);
    assert_eq!(hex(&lines[0]["oa"]), 0x1_c123_4567);
    assert_eq!(
        (lines[0]["level"].as_i64(), hex(&lines[0]["size"])),
        (Some(1), 1 << 30)
    );
    assert_eq!(hex(&lines[1]["oa"]), 0x2_0032_3456);
    assert_eq!(
        (lines[1]["level"].as_i64(), hex(&lines[1]["size"])),
        (Some(2), 2 << 20)
    );
    assert_eq!(lines[1]["s2ap"], 1);
    assert_eq!(hex(&lines[2]["oa"]), 0x3_0000_5123);
    assert_eq!(hex(&lines[2]["contiguous_size"]), 16 * 4096);
}

#[test]
fn batch_reports_every_fault_kind_with_level_and_fsc() {
    let dir = TestDir::new("batch_faults");
    let mut table = Table4k::new(16);
    let vttbr = table.vttbr();
    let v = VTCR_4K_L0_48;
    // Translation: level-2 descriptor invalid (the level-1 table exists).
    table.set(0x1_0000_0000, 3, 0x8000_0000 | RW_PAGE);
    // Access flag clear.
    table.set(0x1_0000_1000, 3, 0x8000_1000 | (RW_PAGE & !AF));
    // Permissions.
    table.set(
        0x1_0000_2000,
        3,
        0x8000_2000 | MEMATTR_NORMAL_WB | S2AP_RO | AF | PAGE,
    );
    table.set(0x1_0000_3000, 3, 0x8000_3000 | RW_PAGE | XN_NONE);
    table.set(
        0x1_0000_4000,
        3,
        0x8000_4000 | MEMATTR_NORMAL_WB | S2AP_WO | AF | PAGE,
    );
    // Output address beyond PS = 40 bits (VTCR.PS 0b010).
    table.set(0x1_0000_5000, 3, 0x100_0000_0000 | RW_PAGE);
    // Table address beyond 40 bits, in a level-1 descriptor.
    table.set(0x80_0000_0000, 1, 0x200_0000_0000 | VALID_TABLE);
    // A level-1 table descriptor pointing outside every memslot: the
    // level-2 read is the external abort.
    table.set(0x100_0000_0000, 1, 0x9000_0000 | VALID_TABLE);
    let ps40 = (v & !(0b111 << 16)) | (0b010 << 16);
    let mem = table.image.save(&dir, "t.bin");
    let cases: Vec<(String, &str, i64, u64)> = vec![
        (
            request(v, vttbr, 0x1_0020_0000, "read"),
            "translation",
            2,
            0x06,
        ),
        (
            request(v, vttbr, 0x1_0000_0000_0000, "read"),
            "translation",
            0,
            0x04,
        ),
        (
            request(v, vttbr, 0x1_0000_1000, "read"),
            "access_flag",
            3,
            0x0b,
        ),
        (
            request(v, vttbr, 0x1_0000_2000, "write"),
            "permission",
            3,
            0x0f,
        ),
        (
            request(v, vttbr, 0x1_0000_3000, "exec"),
            "permission",
            3,
            0x0f,
        ),
        (
            request(v, vttbr, 0x1_0000_4000, "read"),
            "permission",
            3,
            0x0f,
        ),
        (
            request(ps40, vttbr, 0x1_0000_5000, "read"),
            "address_size",
            3,
            0x03,
        ),
        (
            request(ps40, vttbr, 0x80_0000_0000, "read"),
            "address_size",
            1,
            0x01,
        ),
        // VTTBR_EL2.BADDR beyond the output size: level 0.
        (
            request(ps40, 0x100_0000_0000, 0x1000, "read"),
            "address_size",
            0,
            0x00,
        ),
        (
            request(v, vttbr, 0x100_0000_0000, "read"),
            "external_abort",
            2,
            0x16,
        ),
        // The start table itself outside every memslot.
        (
            request(v, 0x7000_0000, 0x1000, "read"),
            "external_abort",
            0,
            0x14,
        ),
    ];
    let input: String = cases.iter().map(|c| c.0.clone()).collect();
    let out = run(&["batch", "--mem", &mem], &input);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), cases.len());
    for (line, (input, kind, level, fsc)) in lines.iter().zip(&cases) {
        assert!(line["ok"] == false, "{input} gave {line}");
        assert_fault(line, kind, *level, *fsc);
    }
    // The syndrome L0 injects: data abort from a lower EL, IL, WnR for the
    // write, the FSC, and FnV clear (RES0 for a stage-2 fault, FAR given or
    // not); HPFAR = IPA[51:12] << 4.
    assert_eq!(
        hex(&lines[3]["esr"]),
        (0x24 << 26) | (1 << 25) | (1 << 6) | 0x0f
    );
    assert_eq!(hex(&lines[3]["hpfar"]), (0x1_0000_2000 >> 12) << 4);
    // Instruction abort for the fetch.
    assert_eq!(hex(&lines[4]["esr"]) >> 26, 0x20);
    assert_eq!(lines[9]["cause"], "descriptor_outside_memslots");
}

/// A line's `far` (the guest virtual address L2 faulted on, which the
/// walker cannot know) is echoed on its fault line, and only there: a line
/// without one has no `far`, and a mapped line never carries it.
#[test]
fn batch_echoes_a_lines_far_on_its_fault() {
    let dir = TestDir::new("batch_far");
    let mut table = Table4k::new(16);
    let vttbr = table.vttbr();
    let v = VTCR_4K_L0_48;
    table.set(0x1_0000_0000, 3, 0x8000_0000 | RW_PAGE);
    let mem = table.image.save(&dir, "t.bin");
    let with_far = |ipa: u64, far: &str| {
        format!(
            "{{\"vtcr\":\"{v:#x}\",\"vttbr\":\"{vttbr:#x}\",\"ipa\":\"{ipa:#x}\",\"access\":\"write\",\"far\":\"{far}\"}}\n"
        )
    };
    let input = [
        with_far(0x1_0000_1000, "0xffff800012345678"),
        request(v, vttbr, 0x1_0000_1000, "write"),
        with_far(0x1_0000_0000, "0x4000"),
    ]
    .concat();
    let out = run(&["batch", "--mem", &mem], &input);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    assert_fault(&lines[0], "translation", 3, 0x07);
    assert_eq!(hex(&lines[0]["far"]), 0xffff_8000_1234_5678, "{}", lines[0]);
    // The same fault without a FAR: the same syndrome, no `far`.
    assert_eq!(lines[1]["esr"], lines[0]["esr"]);
    assert!(lines[1].get("far").is_none(), "{}", lines[1]);
    assert_eq!(lines[2]["ok"], true, "{}", lines[2]);
    assert!(lines[2].get("far").is_none(), "{}", lines[2]);
}

#[test]
fn batch_execute_permissions_follow_xnx_when_exposed() {
    let dir = TestDir::new("batch_xnx");
    let mut table = Table4k::new(8);
    table.set(0x2000, 3, 0x8000_2000 | RW_PAGE | XN_EL0_ONLY);
    let mem = table.image.save(&dir, "t.bin");
    let vttbr = table.vttbr();
    let input = [
        request(VTCR_4K_L0_48, vttbr, 0x2000, "exec"),
        request(VTCR_4K_L0_48, vttbr, 0x2000, "exec_el0"),
    ]
    .concat();
    // With FEAT_XNX (ID_AA64MMFR1_EL1.XNX = 1): EL0 only.
    let out = run(&["batch", "--mmfr1", "0x10000000", "--mem", &mem], &input);
    let lines = json_lines(&out);
    assert_fault(&lines[0], "permission", 3, 0x0f);
    assert_eq!(lines[1]["ok"], true, "{}", lines[1]);
    // Without it XN[0] is ignored: both may execute.
    let out = run(&["batch", "--mem", &mem], &input);
    let lines = json_lines(&out);
    assert_eq!(lines[0]["ok"], true, "{}", lines[0]);
    assert_eq!(lines[1]["ok"], true, "{}", lines[1]);
}

/// ID_AA64MMFR0_EL1 with PARange 52 bits and 52-bit support for every granule.
const MMFR0_PA52: u64 =
    0x6 | (0b0010 << 20) | (0b0001 << 28) | (0b0011 << 32) | (0b0010 << 36) | (0b0011 << 40);

#[test]
fn level_minus_one_faults_use_their_own_codes() {
    let dir = TestDir::new("batch_level_minus_one");
    // 4K, DS = 1, SL2 = 1 / SL0 = 0 (start level -1), T0SZ 12 (52-bit IPA),
    // PS 52 bits: a 16-entry start table.
    let vtcr =
        12 | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) | (0b110 << 16) | (1 << 32) | (1 << 33);
    let mut image = Image::new(BASE, 0x3000);
    // Entry 1 -> a level-0 table outside every memslot; entry 2 -> a level-0
    // table at BASE + 0x1000 whose entry 0 -> level-1 table at BASE + 0x2000.
    image.write(BASE + 8, 0x9000_0000 | VALID_TABLE);
    image.write(BASE + 16, (BASE + 0x1000) | VALID_TABLE);
    image.write(BASE + 0x1000, (BASE + 0x2000) | VALID_TABLE);
    image.write(
        BASE + 0x2000,
        0x4_0000_0000 | MEMATTR_NORMAL_WB | S2AP_RW | AF | BLOCK,
    );
    let mem = image.save(&dir, "t.bin");
    let input = [
        request(vtcr, BASE, 3 << 48, "read"),       // entry 3: invalid
        request(vtcr, BASE, 1 << 48, "read"),       // level-0 read outside
        request(vtcr, 0x7000_0000, 0x1000, "read"), // level -1 read outside
        request(vtcr, BASE, (2 << 48) | 0x1234_5678, "read"),
    ]
    .concat();
    let mmfr0 = format!("{MMFR0_PA52:#x}");
    let out = run(&["batch", "--mmfr0", &mmfr0, "--mem", &mem], &input);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_fault(&lines[0], "translation", -1, 0x2b);
    assert_fault(&lines[1], "external_abort", 0, 0x14);
    assert_fault(&lines[2], "external_abort", -1, 0x13);
    assert_eq!(lines[3]["ok"], true, "{}", lines[3]);
    assert_eq!(hex(&lines[3]["oa"]), 0x4_1234_5678);
    assert_eq!(lines[3]["level"], 1);
    // Without 52-bit support exposed, the same registers fault at once.
    let out = run(
        &["batch", "--mem", &mem],
        request(vtcr, BASE, 0x1000, "read"),
    );
    assert_eq!(json_lines(&out)[0]["fault"], "translation");
}

#[test]
fn malformed_lines_get_an_error_line_and_the_run_goes_on() {
    let dir = TestDir::new("batch_malformed");
    let mut table = Table4k::new(8);
    table.set(0x5000, 3, 0x8000_5000 | RW_PAGE);
    let mem = table.image.save(&dir, "t.bin");
    let good = request(VTCR_4K_L0_48, table.vttbr(), 0x5008, "read");
    let input = format!(
        "{good}not json\n{{\"vtcr\":\"0x1\"}}\n\n{good}{{\"vtcr\":\"0x1\",\"vttbr\":\"0x0\",\"ipa\":\"0x0\",\"access\":\"jump\"}}\r\n{good}"
    );
    let out = run(&["batch", "--mem", &mem], &input);
    assert_eq!(
        out.status.code(),
        Some(1),
        "malformed lines must fail the run"
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 7);
    for i in [0, 4, 6] {
        assert_eq!(hex(&lines[i]["oa"]), 0x8000_5008, "{}", lines[i]);
    }
    for i in [1, 2, 3, 5] {
        assert_eq!(lines[i]["ok"], false);
        assert!(lines[i]["error"].as_str().is_some(), "{}", lines[i]);
    }
    assert!(lines[2]["error"].as_str().unwrap().contains("vttbr"));
    assert!(lines[5]["error"].as_str().unwrap().contains("jump"));
    // Invalid UTF-8 is a malformed line too, not the end of the run.
    let mut bytes = b"\xff\xfe\n".to_vec();
    bytes.extend_from_slice(good.as_bytes());
    let out = run(&["batch", "--mem", &mem], &bytes);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0]["error"].as_str().unwrap().contains("UTF-8"),
        "{}",
        lines[0]
    );
    assert_eq!(hex(&lines[1]["oa"]), 0x8000_5008);
    assert_eq!(out.status.code(), Some(1));
    // An overlong line is one error line, and the next line still works.
    let mut long = vec![b'x'; 3 << 20];
    long.push(b'\n');
    long.extend_from_slice(good.as_bytes());
    let out = run(&["batch", "--mem", &mem], &long);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0]["error"].as_str().unwrap().contains("longer than"),
        "{}",
        lines[0]
    );
    assert_eq!(hex(&lines[1]["oa"]), 0x8000_5008);
    // The limit is 64 KiB without the newline: a request padded to exactly
    // that is read, one byte more is refused.
    let request_line = good.trim_end();
    let padded = |len: usize| format!("{request_line}{}\n", " ".repeat(len - request_line.len()));
    let out = run(
        &["batch", "--mem", &mem],
        padded(64 * 1024) + &padded(64 * 1024 + 1),
    );
    let lines = json_lines(&out);
    assert_eq!(hex(&lines[0]["oa"]), 0x8000_5008, "{}", lines[0]);
    assert_eq!(
        lines[1]["error"], "line of 65537 bytes is longer than 65536",
        "{}",
        lines[1]
    );
    // A last line without a newline is still a line.
    let out = run(&["batch", "--mem", &mem], good.trim_end());
    assert_eq!(hex(&json_lines(&out)[0]["oa"]), 0x8000_5008);
    // A run with only good lines (and faults) exits 0.
    let out = run(&["batch", "--mem", &mem], format!("{good}{good}"));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_repeated_key_is_a_malformed_line() {
    let dir = TestDir::new("batch_duplicate_keys");
    let mut table = Table4k::new(8);
    table.set(0x5000, 3, 0x8000_5000 | RW_PAGE);
    let mem = table.image.save(&dir, "t.bin");
    let vttbr = table.vttbr();
    let good = request(VTCR_4K_L0_48, vttbr, 0x5008, "read");
    // Each would walk its last value if the repeat were ignored (review 7):
    // IPA 0 is unmapped, a write to this page is allowed.
    let input = format!(
        "{{\"vtcr\":\"{VTCR_4K_L0_48:#x}\",\"vttbr\":\"{vttbr:#x}\",\"ipa\":\"0x5008\",\"ipa\":\"0x0\",\"access\":\"read\"}}\n\
         {{\"vtcr\":\"{VTCR_4K_L0_48:#x}\",\"vttbr\":\"{vttbr:#x}\",\"ipa\":\"0x5008\",\"access\":\"read\",\"access\":\"write\"}}\n\
         {{\"vtcr\":\"{VTCR_4K_L0_48:#x}\",\"vttbr\":\"{vttbr:#x}\",\"ipa\":\"0x5008\",\"\\u0069pa\":\"0x5008\",\"access\":\"read\"}}\n\
         {good}"
    );
    let out = run_bounded(&["batch", "--mem", &mem], &input, Duration::from_secs(30))
        .expect("batch finishes");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4);
    for (line, key) in lines.iter().zip(["ipa", "access", "ipa"]) {
        assert_eq!(line["ok"], false, "{line}");
        let error = line["error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!("duplicate field \"{key}\"")),
            "{line}"
        );
    }
    assert_eq!(hex(&lines[3]["oa"]), 0x8000_5008);
}

#[test]
fn hardware_access_flag_updates_persist_across_lines_but_not_to_the_file() {
    let dir = TestDir::new("batch_af");
    let mut table = Table4k::new(8);
    let page = 0x8000_6000 | (RW_PAGE & !AF);
    let leaf = table.set(0x6000, 3, page);
    let mem = table.image.save(&dir, "t.bin");
    let vtcr = VTCR_4K_L0_48 | HA;
    let line = request(vtcr, table.vttbr(), 0x6000, "read");
    // HAFDBS = 1 exposed: AF is set in memory by the first walk.
    let out = run(&["batch", "--mmfr1", "0x1", "--mem", &mem], line.repeat(2));
    assert!(out.status.success());
    let lines = json_lines(&out);
    assert_eq!(lines[0]["af_updated"], true, "{}", lines[0]);
    assert_eq!(hex(&lines[0]["descriptor"]), page | AF);
    assert_eq!(lines[1]["af_updated"], false, "{}", lines[1]);
    assert_eq!(hex(&lines[1]["descriptors"][3]["value"]), page | AF);
    // The file is untouched.
    let path = mem.rsplit_once('@').unwrap().0;
    assert_eq!(std::fs::read(path).unwrap(), table.image.bytes);
    assert_eq!(table.image.read(leaf), page);
    // Without HAFDBS exposed, VTCR.HA is ignored: access flag fault.
    let out = run(&["batch", "--mem", &mem], &line);
    assert_fault(&json_lines(&out)[0], "access_flag", 3, 0x0b);
    // A read-only memslot refuses the update: external abort at the leaf.
    let out = run(&["batch", "--mmfr1", "0x1", "--mem-ro", &mem], &line);
    let lines = json_lines(&out);
    assert_fault(&lines[0], "external_abort", 3, 0x17);
    assert_eq!(lines[0]["cause"], "update_refused");
}

#[test]
fn hardware_dirty_state_makes_dbm_pages_writable_once() {
    let dir = TestDir::new("batch_dirty");
    let mut table = Table4k::new(8);
    let page = 0x8000_7000 | MEMATTR_NORMAL_WB | S2AP_RO | SH_INNER | AF | DBM | PAGE;
    table.set(0x7000, 3, page);
    let mem = table.image.save(&dir, "t.bin");
    let line = request(VTCR_4K_L0_48 | HA | HD, table.vttbr(), 0x7000, "write");
    let out = run(&["batch", "--mmfr1", "0x2", "--mem", &mem], line.repeat(2));
    let lines = json_lines(&out);
    assert_eq!(lines[0]["dirty_updated"], true, "{}", lines[0]);
    assert_eq!(lines[0]["s2ap"], 3);
    assert_eq!(lines[1]["dirty_updated"], false, "{}", lines[1]);
    assert_eq!(lines[1]["s2ap"], 3);
    // HAFDBS = 1 (no dirty state): the write is a permission fault.
    let out = run(&["batch", "--mmfr1", "0x1", "--mem", &mem], &line);
    assert_fault(&json_lines(&out)[0], "permission", 3, 0x0f);
}

#[test]
fn big_endian_tables_need_big_endian() {
    let dir = TestDir::new("batch_big_endian");
    let mut table = Table4k::new(8);
    table.image.big_endian = true;
    table.set(0x9000, 3, 0x8000_9000 | RW_PAGE);
    let mem = table.image.save(&dir, "t.bin");
    let line = request(VTCR_4K_L0_48, table.vttbr(), 0x9010, "read");
    let out = run(&["batch", "--big-endian", "--mem", &mem], &line);
    assert_eq!(hex(&json_lines(&out)[0]["oa"]), 0x8000_9010);
    let out = run(&["batch", "--mem", &mem], &line);
    assert_eq!(json_lines(&out)[0]["ok"], false);
}

#[test]
fn several_memslots_are_one_address_space() {
    let dir = TestDir::new("batch_slots");
    let mut table = Table4k::new(8);
    table.set(0xa000, 3, 0x8000_a000 | RW_PAGE);
    // Split the image into two files at 0x2000; leave a hole after it.
    let low = Image {
        base: BASE,
        bytes: table.image.bytes[..0x2000].to_vec(),
        big_endian: false,
    };
    let high = Image {
        base: BASE + 0x2000,
        bytes: table.image.bytes[0x2000..].to_vec(),
        big_endian: false,
    };
    let low_arg = low.save(&dir, "low.bin");
    let high_arg = high.save(&dir, "high.bin");
    let line = request(VTCR_4K_L0_48, table.vttbr(), 0xa000, "read");
    let out = run(&["batch", "--mem", &high_arg, "--mem", &low_arg], &line);
    assert_eq!(json_lines(&out)[0]["ok"], true);
    // Without the high slot the level-2 and level-3 tables are missing.
    let out = run(&["batch", "--mem", &low_arg], &line);
    assert_fault(&json_lines(&out)[0], "external_abort", 2, 0x16);
}

#[test]
fn large_batches_answer_every_line_in_order() {
    let dir = TestDir::new("batch_large");
    let mut table = Table4k::new(8);
    for i in 0..512u64 {
        table.set(i << 12, 3, (0x1_0000_0000 + (i << 12)) | RW_PAGE);
    }
    let mem = table.image.save(&dir, "t.bin");
    let vttbr = table.vttbr();
    let count = 20_000u64;
    let input: String = (0..count)
        .map(|k| request(VTCR_4K_L0_48, vttbr, ((k * 7919) % 600) << 12, "read"))
        .collect();
    let out = run(&["batch", "--mem", &mem], &input);
    assert!(out.status.success());
    let lines = json_lines(&out);
    assert_eq!(lines.len() as u64, count);
    for (k, line) in lines.iter().enumerate() {
        let page = (k as u64 * 7919) % 600;
        if page < 512 {
            assert_eq!(hex(&line["oa"]), 0x1_0000_0000 + (page << 12), "line {k}");
        } else {
            assert_fault(line, "translation", 2, 0x06);
        }
    }
}

#[test]
fn batch_answers_each_line_before_the_next_arrives() {
    let dir = TestDir::new("batch_interactive");
    let mut table = Table4k::new(8);
    table.set(0xb000, 3, 0x8000_b000 | RW_PAGE);
    let mem = table.image.save(&dir, "t.bin");
    let mut child = Command::new(S2WALK)
        .args(["batch", "--mem", &mem])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut output = BufReader::new(child.stdout.take().unwrap());
    let (send, receive) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        while output.read_line(&mut line).unwrap() > 0 {
            send.send(std::mem::take(&mut line)).unwrap();
        }
    });
    for offset in [0x10u64, 0x20, 0x30] {
        input
            .write_all(request(VTCR_4K_L0_48, table.vttbr(), 0xb000 + offset, "read").as_bytes())
            .unwrap();
        input.flush().unwrap();
        // stdin stays open: the answer must come without end of input.
        let line = receive
            .recv_timeout(Duration::from_secs(20))
            .expect("no answer while the input pipe is still open");
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(hex(&value["oa"]), 0x8000_b000 + offset);
    }
    drop(input);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
}

#[test]
fn bad_arguments_and_files_give_one_error_line_and_status_2() {
    let dir = TestDir::new("bad_arguments");
    let mut table = Table4k::new(4);
    table.set(0, 3, RW_PAGE);
    let mem = table.image.save(&dir, "t.bin");
    let odd = Image::new(BASE, 12).save(&dir, "odd.bin");
    let empty = Image::new(BASE, 0).save(&dir, "empty.bin");
    let missing = format!("{}@0x1000", dir.0.join("missing.bin").display());
    let shifted = mem.replace("@0x40000000", "@0x40001000");
    let unaligned = mem.replace("@0x40000000", "@0x40000004");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["batch"], "no memory"),
        (vec!["batch", "--mem", &missing], "cannot read"),
        (vec!["batch", "--mem", &odd], "multiple of 8"),
        (vec!["batch", "--mem", &empty], "empty"),
        (vec!["batch", "--mem", &mem, "--mem", &shifted], "overlap"),
        (vec!["batch", "--mem", &unaligned], "aligned"),
        (vec!["batch", "--mem", "t.bin"], "FILE@HEXADDR"),
        (
            vec!["batch", "--mmfr0", "0xzz", "--mem", &mem],
            "not a hex number",
        ),
        (vec!["batch", "--mmfr0", "0xf", "--mem", &mem], "PARange"),
        (vec!["batch", "--mmfr1", "0x4", "--mem", &mem], "HAFDBS"),
        (
            vec!["batch", "--mmfr2", "0x10000000000", "--mem", &mem],
            "FEAT_S2FWB",
        ),
        (vec!["walk", "--mem", &mem, "--vtcr", "0x1"], "--vttbr"),
        (
            vec![
                "walk", "--mem", &mem, "--vtcr", "0x1", "--vttbr", "0", "--ipa", "0", "--access",
                "x",
            ],
            "access",
        ),
        (
            vec![
                "dump",
                "--mem",
                &mem,
                "--vtcr",
                "0x1",
                "--vttbr",
                "0",
                "--max-reads",
                "0",
            ],
            "max-reads",
        ),
        (vec!["frobnicate"], "frobnicate"),
        (vec![], "subcommand"),
    ];
    for (args, expected) in cases {
        let out = run(&args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let text = stderr(&out);
        assert_eq!(
            text.lines().count(),
            1,
            "{args:?}: one line expected, got {text}"
        );
        assert!(text.starts_with("s2walk: error: "), "{args:?}: {text}");
        assert!(text.contains(expected), "{args:?}: {text} lacks {expected}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn help_states_the_default_id_registers() {
    let out = run(&["--help"], "");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "--mmfr0 0x22200100005",
        "--mmfr1 0x0",
        "--mmfr2 0x0",
        "PARange 48 bits",
        "little-endian",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
}

/// With `--mmfr0`, `--mmfr1` and `--mmfr2` omitted the walks are those of a
/// CPU with PARange 48 bits, every granule at stage 2, no FEAT_LPA/LPA2 and
/// no HAFDBS, as the contract says; the help text alone (above) would not
/// notice a different default.
#[test]
fn omitted_id_registers_walk_as_parange_48_all_granules_no_lpa2_no_hafdbs() {
    let dir = TestDir::new("default_id_registers");
    // 4K, 48-bit IPA from level 0: needs PAMax >= 44 and T0SZ 16.
    let mut table = Table4k::new(8);
    let page_ipa = 0x0000_8765_4321_0000;
    table.set(page_ipa, 3, 0x8123_4000 | RW_PAGE);
    // Shareability 0b01 (reserved): in bits 9:8 it is OA[51:50] if DS took
    // effect, which it cannot without FEAT_LPA2.
    let ds_ipa = 0x0000_0000_4000_1000;
    let sh_reserved = MEMATTR_NORMAL_WB | S2AP_RW | (0b01 << 8) | AF | PAGE;
    table.set(ds_ipa, 3, 0x8123_5000 | sh_reserved);
    // AF = 0: a fault unless hardware AF updates are exposed.
    let af_ipa = 0x0000_0000_4000_2000;
    table.set(af_ipa, 3, 0x8123_6000 | (RW_PAGE & !AF));
    let mem_4k = table.image.save(&dir, "t4k.bin");
    // 16K, start level 3 (SL0 0), 25-bit IPA: one 16 KiB table.
    let base_16k = 0x5000_0000;
    let mut image_16k = Image::new(base_16k, 0x4000);
    let ipa_16k = 0x123_4567;
    image_16k.write(
        base_16k + ((ipa_16k >> 14) & 0x7ff) * 8,
        0x9000_c000 | RW_PAGE,
    );
    let mem_16k = image_16k.save(&dir, "t16k.bin");
    let vtcr_16k = 0x8000_0000 | (5 << 16) | (0b10 << 14) | 39;
    // 64K, start level 2 (SL0 1), 30-bit IPA: a 512 MiB block in entry 1.
    let base_64k = 0x6000_0000;
    let mut image_64k = Image::new(base_64k, 0x1000);
    image_64k.write(
        base_64k + 8,
        0xa000_0000 | MEMATTR_NORMAL_WB | S2AP_RW | SH_INNER | AF | BLOCK,
    );
    let mem_64k = image_64k.save(&dir, "t64k.bin");
    let vtcr_64k = 0x8000_0000 | (5 << 16) | (0b01 << 14) | (1 << 6) | 34;
    // 64K with a 52-bit IPA (T0SZ 12, start level 1, PS 52): allowed only
    // with PAMax 52.
    let vtcr_64k_52 = 0x8000_0000 | (6 << 16) | (0b01 << 14) | (2 << 6) | 12;
    let vttbr = table.vttbr();
    let input = [
        request(VTCR_4K_L0_48, vttbr, page_ipa | 0x123, "read"),
        request(vtcr_16k, base_16k, ipa_16k, "read"),
        request(vtcr_64k, base_64k, 0x2345_6789, "read"),
        request(vtcr_64k_52, base_64k, 0, "read"),
        request(VTCR_4K_L0_48 | (1 << 32), vttbr, ds_ipa | 0x10, "read"),
        request(VTCR_4K_L0_48 | HA, vttbr, af_ipa, "read"),
    ]
    .concat();
    let out = run(
        &[
            "batch", "--mem", &mem_4k, "--mem", &mem_16k, "--mem", &mem_64k,
        ],
        input,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 6);
    let ok = |line: &Value, oa: u64, level: i64, size: u64| {
        assert_eq!(line["ok"], true, "{line}");
        assert_eq!(hex(&line["oa"]), oa, "{line}");
        assert_eq!(line["level"], level, "{line}");
        assert_eq!(hex(&line["size"]), size, "{line}");
    };
    ok(&lines[0], 0x8123_4123, 3, 0x1000);
    ok(&lines[1], 0x9000_c567, 3, 0x4000);
    ok(&lines[2], 0xa345_6789, 2, 0x2000_0000);
    // T0SZ 12 is below PAMax 48's minimum of 16: level 0, before any read.
    assert_fault(&lines[3], "translation", 0, 0x04);
    assert_eq!(lines[3]["descriptors"].as_array().unwrap().len(), 0);
    // VTCR_EL2.DS is RES0: bits 9:8 are shareability, not OA[51:50].
    ok(&lines[4], 0x8123_5010, 3, 0x1000);
    assert_eq!(lines[4]["sh"], 1, "{}", lines[4]);
    // VTCR_EL2.HA is ignored without HAFDBS: the access flag faults.
    assert_fault(&lines[5], "access_flag", 3, 0x0b);
}

#[test]
fn memory_that_is_not_a_regular_file_is_refused_at_once() {
    let dir = TestDir::new("mem_not_a_file");
    let fifo = dir.0.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let fifo = format!("{}@0x0", fifo.display());
    let directory = format!("{}@0x0", dir.0.display());
    // Read to the end, /dev/zero takes memory without bound and a FIFO
    // with no writer blocks (review 7): the limits keep a failure harmless.
    for mem in ["/dev/zero@0x0", &fifo, &directory] {
        let out = run_bounded(&["batch", "--mem", mem], "", Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{mem}: still running after 10 s"));
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{mem}: {text}");
        assert_eq!(text.lines().count(), 1, "{mem}: {text}");
        assert!(text.contains("is not a regular file"), "{mem}: {text}");
    }
    let out = run_with_address_space_limit(2_000_000, &["batch", "--mem", "/dev/zero@0x0"]);
    assert!(
        stderr(&out).contains("is not a regular file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn memory_files_are_held_once_and_a_refused_allocation_is_an_error_line() {
    let dir = TestDir::new("mem_size");
    let sparse = |name: &str, bytes: u64| {
        let path = dir.0.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .set_len(bytes)
            .unwrap();
        format!("{}@0x0", path.display())
    };
    // 256 MiB under a 390 MiB address-space limit: loads only if the file's
    // bytes are not held beside its words (review 7: two copies).
    let mid = sparse("256m.bin", 256 << 20);
    let out = run_with_address_space_limit(400_000, &["batch", "--mem", &mid]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // 4 GiB under a 2 GB limit: the allocation is refused, which is one
    // error line and status 2 (review 7: an abort, status 134).
    let big = sparse("4g.bin", 4 << 30);
    let out = run_with_address_space_limit(2_000_000, &["batch", "--mem", &big]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(
        text.contains("(4294967296 bytes) cannot be loaded"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir.0).unwrap();
}

#[test]
fn a_closed_stdout_is_an_error_line_not_a_panic() {
    let dir = TestDir::new("closed_stdout");
    let mut table = Table4k::new(8);
    table.set(0x5000, 3, 0x8000_5000 | RW_PAGE);
    let mem = table.image.save(&dir, "t.bin");
    let vtcr = format!("{VTCR_4K_L0_48:#x}");
    let vttbr = format!("{:#x}", table.vttbr());
    let walk = [
        "walk", "--mem", &mem, "--vtcr", &vtcr, "--vttbr", &vttbr, "--ipa", "0x5008",
    ];
    let dump = ["dump", "--mem", &mem, "--vtcr", &vtcr, "--vttbr", &vttbr];
    let cases: [&[&str]; 4] = [&walk, &dump, &["--help"], &["walk", "--help"]];
    for args in cases {
        // `s2walk ... | head -0`: the reader is gone before the first line.
        // The pipe is closed before the child starts (closing it after
        // `spawn` races with children other tests fork meanwhile, which
        // hold the read end until they exec).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(S2WALK)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert_eq!(text.lines().count(), 1, "{args:?}: {text}");
        assert!(text.contains("Broken pipe"), "{args:?}: {text}");
    }
}

#[test]
fn walk_prints_every_level_and_the_result() {
    let dir = TestDir::new("walk_trace");
    let mut table = Table4k::new(8);
    let ipa = 0x0000_0012_3456_7000;
    table.set(ipa, 3, 0x8765_4000 | RW_PAGE);
    let mem = table.image.save(&dir, "t.bin");
    let vtcr = format!("{VTCR_4K_L0_48:#x}");
    let vttbr = format!("{:#x}", table.vttbr());
    let ipa_arg = format!("{:#x}", ipa | 0x321);
    let out = run(
        &[
            "walk", "--mem", &mem, "--vtcr", &vtcr, "--vttbr", &vttbr, "--ipa", &ipa_arg,
        ],
        "",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = stdout_lines(&out);
    let text = lines.join("\n");
    assert!(
        lines[0].contains("4K granule") && lines[0].contains("start level 0"),
        "{text}"
    );
    for level in 0..3 {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("level  {level}:")) && l.contains("table ->")),
            "{text}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("level  3:") && l.contains("page: OA 0x87654000")),
        "{text}"
    );
    assert!(
        text.contains("result: IPA 0x1234567321 -> OA 0x87654321 (level 3, 4 KiB)"),
        "{text}"
    );
}

#[test]
fn walk_reports_a_fault_with_the_syndrome_to_inject() {
    let dir = TestDir::new("walk_fault");
    let mut table = Table4k::new(8);
    table.set(
        0xc000,
        3,
        0x8000_c000 | MEMATTR_NORMAL_WB | S2AP_RO | AF | PAGE,
    );
    let mem = table.image.save(&dir, "t.bin");
    let vtcr = format!("{VTCR_4K_L0_48:#x}");
    let vttbr = format!("{:#x}", table.vttbr());
    let out = run(
        &[
            "walk",
            "--mem",
            &mem,
            "--vtcr",
            &vtcr,
            "--vttbr",
            &vttbr,
            "--ipa",
            "0xc008",
            "--access",
            "write",
            "--far",
            "0xffff000012345008",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("level  3:"), "{text}");
    assert!(
        text.contains("fault: permission at level 3, FSC 0x0f"),
        "{text}"
    );
    let esr = (0x24u64 << 26) | (1 << 25) | (1 << 6) | 0x0f;
    assert!(
        text.contains(&format!(
            "ESR_EL2 {esr:#x}, FAR_EL2 0xffff000012345008, HPFAR_EL2 0xc0"
        )),
        "{text}"
    );
}

fn dump(mem: &[&str], vtcr: u64, vttbr: u64, extra: &[&str]) -> Output {
    let vtcr = format!("{vtcr:#x}");
    let vttbr = format!("{vttbr:#x}");
    let mut args = vec!["dump", "--vtcr", &vtcr, "--vttbr", &vttbr];
    for m in mem {
        args.extend(["--mem", m]);
    }
    args.extend(extra);
    run(&args, "")
}

#[test]
fn dump_merges_contiguous_leaves_and_splits_on_attributes() {
    let dir = TestDir::new("dump_merge");
    let mut table = Table4k::new(16);
    // 510 pages ending at IPA 2 MiB, then a 2 MiB block, OA = IPA + 4 GiB
    // throughout and all RW: one range across levels 3 and 2.
    let start = 0x20_0000 - 510 * 4096;
    let oa = |ipa: u64| ipa + 0x1_0000_0000;
    for i in 0..510u64 {
        let ipa = start + i * 4096;
        table.set(ipa, 3, oa(ipa) | RW_PAGE);
    }
    table.set(0x20_0000, 2, oa(0x20_0000) | (RW_PAGE & !PAGE) | BLOCK);
    // A read-only page right after: a new range.
    table.set(0x40_0000, 3, oa(0x40_0000) | (RW_PAGE & !S2AP_RW) | S2AP_RO);
    // A level-1 table outside memory: a faulting region.
    table.set(0x80_0000_0000, 1, 0x9000_0000 | VALID_TABLE);
    let mem = table.image.save(&dir, "t.bin");
    let out = dump(&[&mem], VTCR_4K_L0_48, table.vttbr(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = stdout_lines(&out);
    let text = lines.join("\n");
    let ranges: Vec<&String> = lines.iter().filter(|l| l.starts_with("IPA ")).collect();
    assert_eq!(ranges.len(), 2, "{text}");
    assert!(
        ranges[0].starts_with(&format!(
            "IPA {:#015x}-{:#015x} -> OA {:#015x}-{:#015x}",
            start,
            0x40_0000 - 1,
            oa(start),
            oa(0x40_0000) - 1
        )),
        "{text}"
    );
    assert!(
        ranges[0].contains("S2AP rw") && ranges[0].contains("[511 leaves, levels 2-3]"),
        "{text}"
    );
    assert!(
        ranges[1].contains("S2AP ro") && ranges[1].contains("4 KiB"),
        "{text}"
    );
    // The 512 entries of the missing level-2 table are one faulting run.
    let faults: Vec<&String> = lines.iter().filter(|l| l.starts_with("! ")).collect();
    assert_eq!(faults.len(), 1, "{text}");
    assert!(
        faults[0].starts_with("! IPA 0x0008000000000-0x000803fffffff: external abort at level 2 (FSC 0x16), 512 entries"),
        "{text}"
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("# 2 ranges, 512 leaves, 512 faulting entries"),
        "{text}"
    );
}

/// Adjacent leaves with equal attributes merge only where the output
/// addresses continue too: a jump in OA starts a new range. (The test
/// above has every OA contiguous, so it passes with OAs left unchecked.)
#[test]
fn dump_splits_where_the_output_address_jumps() {
    let dir = TestDir::new("dump_oa_jump");
    let mut table = Table4k::new(8);
    table.set(0x1000, 3, 0x8000_0000 | RW_PAGE);
    // IPA continues, OA jumps by 1 MiB; the page after continues it.
    table.set(0x2000, 3, 0x8010_0000 | RW_PAGE);
    table.set(0x3000, 3, 0x8010_1000 | RW_PAGE);
    let mem = table.image.save(&dir, "t.bin");
    let out = dump(&[&mem], VTCR_4K_L0_48, table.vttbr(), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = stdout_lines(&out);
    let text = lines.join("\n");
    let ranges: Vec<&String> = lines.iter().filter(|l| l.starts_with("IPA ")).collect();
    assert_eq!(ranges.len(), 2, "{text}");
    let range = |ipa: u64, ipa_end: u64, oa: u64, oa_end: u64| {
        format!("IPA {ipa:#015x}-{ipa_end:#015x} -> OA {oa:#015x}-{oa_end:#015x}")
    };
    assert!(
        ranges[0].starts_with(&range(0x1000, 0x1fff, 0x8000_0000, 0x8000_0fff)),
        "{text}"
    );
    assert!(
        ranges[1].starts_with(&range(0x2000, 0x3fff, 0x8010_0000, 0x8010_1fff)),
        "{text}"
    );
}

#[test]
fn dump_of_a_fully_mapped_48_bit_table_is_one_range() {
    let dir = TestDir::new("dump_full_48");
    // 512 level-1 tables of 512 1 GiB blocks each: the whole 256 TiB.
    let mut image = Image::new(BASE, 513 * 4096);
    for l0 in 0..512u64 {
        let l1 = BASE + (l0 + 1) * 4096;
        image.write(BASE + l0 * 8, l1 | VALID_TABLE);
        for i in 0..512u64 {
            let oa = (l0 << 39) | (i << 30);
            image.write(
                l1 + i * 8,
                oa | MEMATTR_NORMAL_WB | S2AP_RW | SH_INNER | AF | BLOCK,
            );
        }
    }
    let mem = image.save(&dir, "t.bin");
    let out = dump(&[&mem], VTCR_4K_L0_48, BASE, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = stdout_lines(&out);
    let ranges: Vec<&String> = lines.iter().filter(|l| l.starts_with("IPA ")).collect();
    assert_eq!(ranges.len(), 1, "{lines:?}");
    assert!(
        ranges[0].starts_with(
            "IPA 0x0000000000000-0x0ffffffffffff -> OA 0x0000000000000-0x0ffffffffffff"
        ) && ranges[0].contains(" 256 TiB "),
        "{}",
        ranges[0]
    );
    assert!(
        ranges[0].contains("[262144 leaves, level 1]"),
        "{}",
        ranges[0]
    );
}

#[test]
fn dump_of_a_fully_mapped_52_bit_table_is_one_range() {
    let dir = TestDir::new("dump_full_52");
    // 64K granule with FEAT_LPA (PARange 52): start level 1, T0SZ 12, 1024
    // level-1 blocks of 4 TiB, OA[51:48] in descriptor bits 15:12.
    let vtcr =
        12 | (0b10 << 6) | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) | (0b01 << 14) | (0b110 << 16);
    let mut image = Image::new(BASE, 0x10000);
    for i in 0..1024u64 {
        let oa = i << 42;
        let desc = (oa & 0x0000_ffff_ffff_0000) | (((oa >> 48) & 0xf) << 12);
        image.write(
            BASE + i * 8,
            desc | MEMATTR_NORMAL_WB | S2AP_RW | SH_INNER | AF | BLOCK,
        );
    }
    let mem = image.save(&dir, "t.bin");
    let mmfr0 = format!("{MMFR0_PA52:#x}");
    let out = dump(&[&mem], vtcr, BASE, &["--mmfr0", &mmfr0]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = stdout_lines(&out);
    let ranges: Vec<&String> = lines.iter().filter(|l| l.starts_with("IPA ")).collect();
    assert_eq!(ranges.len(), 1, "{lines:?}");
    assert!(
        ranges[0].starts_with(
            "IPA 0x0000000000000-0xfffffffffffff -> OA 0x0000000000000-0xfffffffffffff"
        ) && ranges[0].contains(" 4 PiB ")
            && ranges[0].contains("[1024 leaves, level 1]"),
        "{}",
        ranges[0]
    );
    // And one walk at the top agrees.
    let out = run(
        &["batch", "--mmfr0", &mmfr0, "--mem", &mem],
        request(vtcr, BASE, 0xf_ffff_ffff_f123, "read"),
    );
    assert_eq!(hex(&json_lines(&out)[0]["oa"]), 0xf_ffff_ffff_f123);
}

/// Four pages in which every entry of each level points at the one table
/// of the next level: 2^36 pages mapped, 2048 descriptors.
fn aliased_levels() -> Image {
    let mut image = Image::new(BASE, 4 * 4096);
    for i in 0..512u64 {
        image.write(BASE + i * 8, (BASE + 0x1000) | VALID_TABLE);
        image.write(BASE + 0x1000 + i * 8, (BASE + 0x2000) | VALID_TABLE);
        image.write(BASE + 0x2000 + i * 8, (BASE + 0x3000) | VALID_TABLE);
        image.write(BASE + 0x3000 + i * 8, (0x8000_0000 + i * 4096) | RW_PAGE);
    }
    image
}

#[test]
fn dump_lists_a_shared_table_once_and_refers_back_to_it() {
    let dir = TestDir::new("dump_aliased");
    let mem = aliased_levels().save(&dir, "t.bin");
    let out = dump(&[&mem], VTCR_4K_L0_48, BASE, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = stdout_lines(&out);
    let text = lines.join("\n");
    assert_eq!(lines.len(), 6, "{text}");
    assert!(
        lines[1].starts_with(
            "IPA 0x0000000000000-0x00000001fffff -> OA 0x0000080000000-0x00000801fffff     2 MiB"
        ) && lines[1].ends_with("[512 leaves, level 3]"),
        "{text}"
    );
    assert_eq!(
        lines[2..5],
        [
            "= IPA 0x0000000200000-0x000003fffffff: 511 entries of 2 MiB, each with the mappings of IPA 0x0000000000000-0x00000001fffff (the table at 0x40003000, level 3, listed there)",
            "= IPA 0x0000040000000-0x0007fffffffff: 511 entries of 1 GiB, each with the mappings of IPA 0x0000000000000-0x000003fffffff (the table at 0x40002000, level 2, listed there)",
            "= IPA 0x0008000000000-0x0ffffffffffff: 511 entries of 512 GiB, each with the mappings of IPA 0x0000000000000-0x0007fffffffff (the table at 0x40001000, level 1, listed there)",
        ],
        "{text}"
    );
    // Each descriptor read once.
    assert_eq!(
        lines[5],
        "# 1 ranges, 512 leaves, 0 faulting entries, 1533 entries referring back, 2048 descriptors read"
    );
}

#[test]
fn dump_stops_at_a_read_budget_it_is_given() {
    let dir = TestDir::new("dump_budget");
    let mem = aliased_levels().save(&dir, "t.bin");
    let out = dump(&[&mem], VTCR_4K_L0_48, BASE, &["--max-reads", "1000"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("--max-reads"), "{}", stderr(&out));
    let lines = stdout_lines(&out);
    assert!(
        lines.last().unwrap().ends_with(" 1000 descriptors read"),
        "{:?}",
        lines.last()
    );
}

#[test]
fn dump_of_a_self_referencing_table_ends_at_once() {
    let dir = TestDir::new("dump_self");
    // One table whose every entry points at itself: above level 3 a table
    // descriptor, at level 3 the same bits are a page (AF 0) at its own
    // address. Expanded blindly the 4K one is 2^36 leaves (review 7:
    // minutes and tens of GB of output); listed once per level it is 512
    // pages and a back-reference per level above. The same with the 64K
    // granule's 8192 entries (start level 1 with 64 entries, T0SZ 16).
    let vtcr_64k_l1_48 = 16
        | (0b10 << 6)
        | (0b01 << 8)
        | (0b01 << 10)
        | (0b11 << 12)
        | (0b01 << 14)
        | (0b101 << 16)
        | (1 << 31);
    // (file, VTCR, entries per table, back-references, descriptors read)
    let cases = [
        ("4k.bin", VTCR_4K_L0_48, 512u64, 3, 4 * 512),
        ("64k.bin", vtcr_64k_l1_48, 8192, 2, 64 + 2 * 8192),
    ];
    for (name, vtcr, entries, references, reads) in cases {
        let mut image = Image::new(BASE, entries as usize * 8);
        for i in 0..entries {
            image.write(BASE + i * 8, BASE | VALID_TABLE);
        }
        let mem = image.save(&dir, name);
        let vtcr = format!("{vtcr:#x}");
        let vttbr = format!("{BASE:#x}");
        let out = run_bounded(
            &["dump", "--mem", &mem, "--vtcr", &vtcr, "--vttbr", &vttbr],
            "",
            Duration::from_secs(30),
        )
        .unwrap_or_else(|| panic!("{name}: dump still running after 30 s"));
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let lines = stdout_lines(&out);
        let pages = lines.iter().filter(|l| l.starts_with("IPA ")).count() as u64;
        let back = lines.iter().filter(|l| l.starts_with("= IPA ")).count();
        assert_eq!((pages, back), (entries, references), "{name}");
        assert!(
            lines
                .last()
                .unwrap()
                .ends_with(&format!(" {reads} descriptors read")),
            "{name}: {:?}",
            lines.last()
        );
    }
}

#[test]
fn dump_skips_empty_shared_tables_and_does_not_read_missing_ones() {
    let dir = TestDir::new("dump_empty_missing");
    // Level-1 entries 0-3 share an empty level-2 table; entries 4-7 point
    // at a level-2 table outside memory; entry 8 maps a 1 GiB block.
    let mut image = Image::new(BASE, 3 * 4096);
    image.write(BASE, (BASE + 0x1000) | VALID_TABLE);
    for i in 0..4u64 {
        image.write(BASE + 0x1000 + i * 8, (BASE + 0x2000) | VALID_TABLE);
        image.write(BASE + 0x1000 + (4 + i) * 8, 0x9000_0000 | VALID_TABLE);
    }
    image.write(
        BASE + 0x1000 + 8 * 8,
        0x2_0000_0000 | (RW_PAGE & !PAGE) | BLOCK,
    );
    let mem = image.save(&dir, "t.bin");
    let out = dump(&[&mem], VTCR_4K_L0_48, BASE, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = stdout_lines(&out);
    let text = lines.join("\n");
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[1].starts_with("! IPA 0x0000100000000-0x00001ffffffff: external abort at level 2 (FSC 0x16), 2048 entries: descriptor at 0x90000000 is outside every memslot"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("IPA 0x0000200000000-0x000023fffffff -> OA 0x0000200000000"),
        "{text}"
    );
    // The root, the level-1 table and the empty level-2 table, once each.
    assert_eq!(
        lines[3],
        "# 1 ranges, 1 leaves, 2048 faulting entries, 0 entries referring back, 1536 descriptors read"
    );
}

#[test]
fn dump_of_a_faulting_configuration_says_so() {
    let dir = TestDir::new("dump_bad_config");
    let table = Table4k::new(1);
    let mem = table.image.save(&dir, "t.bin");
    // T0SZ 8: a 56-bit input size, beyond the exposed PAMax of 48.
    let out = dump(&[&mem], (VTCR_4K_L0_48 & !0x3f) | 8, BASE, &[]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("the configuration faults: translation at level 0 (FSC 0x04)"),
        "{text}"
    );
}
