//! Building hv for aarch64 and booting it on QEMU: `cargo xtask run` (the
//! default Debian guest, or the user's own) and the QEMU test matrix.

use crate::guest::{self, MARKER};
use crate::qemu::{Machine, Outcome};
use crate::{run_command, setup, workspace_root};
use object::{Object, ObjectSegment};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// hv never touches FP/SIMD registers (they are the guest's), so it is
/// built for the soft-float variant of the bare-metal target.
const TARGET: &str = "aarch64-unknown-none-softfloat";

/// The only dynamic relocation hv's entry code applies.
const R_AARCH64_RELATIVE: u32 = 1027;

/// Builds hv with Debian's toolchain (core and alloc built from source; the
/// target dir is separate so the host toolchain's artifacts never mix in),
/// then turns the ELF into a flat arm64 Image. Returns the Image's path.
pub fn build(args: &[String]) -> Result<PathBuf, String> {
    if let Some(extra) = args.first() {
        return Err(format!("`build-hv` takes no arguments (got `{extra}`)"));
    }
    setup::aarch64_toolchain()?;
    let root = workspace_root();
    let target_dir = root.join("target").join("aarch64");
    let mut command = bare_metal_cargo("build");
    command.args([
        "--release",
        "--package",
        "hv",
        "--bin",
        "hv",
        "-Zbuild-std=core,alloc,compiler_builtins",
    ]);
    run_command(&mut command)?;
    let elf = target_dir.join(TARGET).join("release").join("hv");
    let image = elf.with_file_name("hv.bin");
    let bytes = std::fs::read(&elf).map_err(|e| format!("cannot read {}: {e}", elf.display()))?;
    let flat = flat_image(&bytes).map_err(|e| format!("{}: {e}", elf.display()))?;
    guest::write_if_changed(&image, &flat)?;
    Ok(image)
}

/// Debian's cargo (`subcommand`) for the bare-metal target, from the
/// workspace root: core (and what the caller adds) built from source, in
/// the aarch64 target dir, so the host toolchain's artifacts never mix in.
fn bare_metal_cargo(subcommand: &str) -> Command {
    let root = workspace_root();
    let mut command = Command::new("/usr/bin/cargo");
    command
        .current_dir(&root)
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .args([
            subcommand,
            "--target",
            TARGET,
            "-Zbuild-std-features=compiler-builtins-mem",
            // Position independent: hv's Image may be loaded at any 2 MiB
            // boundary, and hv relocates itself (see hv/src/arch/boot.rs).
            // The VMM, linked static at a fixed address, takes the same
            // code model, so both share one build of core.
            "--config",
            &format!("target.{TARGET}.rustflags=[\"-Crelocation-model=pie\"]"),
        ])
        .arg("--target-dir")
        .arg(root.join("target").join("aarch64"));
    command
}

/// The test guest's VMM (`tools/kvm-vmm`, not a host workspace member).
pub const KVM_VMM_MANIFEST: &str = "tools/kvm-vmm/Cargo.toml";

/// Builds the test guest's KVM VMM, a static aarch64 Linux executable
/// (`tools/kvm-vmm`), with the same toolchain as hv; returns its path.
/// Cargo's own fingerprints make a second build a no-op.
pub fn build_kvm_vmm() -> Result<PathBuf, String> {
    setup::aarch64_toolchain()?;
    run_command(bare_metal_cargo("build").args([
        "--release",
        "--manifest-path",
        KVM_VMM_MANIFEST,
        "-Zbuild-std=core,compiler_builtins",
    ]))?;
    Ok(workspace_root()
        .join("target")
        .join("aarch64")
        .join(TARGET)
        .join("release")
        .join("kvm-vmm"))
}

/// The loadable segments of hv's ELF laid out from address 0, checked to
/// start with an arm64 Image header and to need only RELATIVE relocations.
fn flat_image(elf: &[u8]) -> Result<Vec<u8>, String> {
    let file = object::File::parse(elf).map_err(|e| format!("not an ELF file: {e}"))?;
    if let Some(relocations) = file.dynamic_relocations() {
        for (offset, relocation) in relocations {
            match relocation.flags() {
                object::RelocationFlags::Elf { r_type } if r_type == R_AARCH64_RELATIVE => {}
                other => {
                    return Err(format!(
                        "relocation {other:?} at {offset:#x} is not R_AARCH64_RELATIVE"
                    ))
                }
            }
        }
    }
    let mut out = Vec::new();
    for segment in file.segments() {
        let data = segment.data().map_err(|e| e.to_string())?;
        if data.is_empty() {
            continue;
        }
        let start = usize::try_from(segment.address()).map_err(|e| e.to_string())?;
        let end = start + data.len();
        if out.len() < end {
            out.resize(end, 0);
        }
        out[start..end].copy_from_slice(data);
    }
    if out.len() < 64 || &out[0x38..0x3c] != b"ARM\x64" {
        return Err("the linked image does not start with an arm64 Image header".into());
    }
    Ok(out)
}

const RUN_USAGE: &str = "\
usage: cargo xtask run [--linux | --kernel IMAGE --initrd FILE] [--cmdline \"...\"] [--smp N]
                       [--mem SIZE] [--cpu MODEL] [--timeout SECONDS] [--] [hv.OPTION=VALUE ...]
Without --linux or --kernel, runs the nested demo (hv.nested=demo): a guest hypervisor
at virtual EL2 (FEAT_NV2) runs its own guest on the shadow-mmu service; it passes
when the guest hypervisor prints UMBRA-NESTED-PASS. Words hv.* go to hv's command line
(hv/README.md, \"Exit status\"); an hv.nested=NAME runs that guest hypervisor instead
of the demo (e.g. `cargo xtask run -- hv.nested=fault-rate`). --linux boots Debian's arm64
cloud kernel with a busybox initramfs instead; --kernel/--initrd your own guest.
Exit status: 0 when the guest powered off (PSCI SYSTEM_OFF), 1 otherwise.";

/// The nested demo's sentinel (hv/src/arch/nested_l1.rs prints it).
const NESTED_PASS: &str = "l1: UMBRA-NESTED-PASS";

/// What `cargo xtask run` was asked for.
#[derive(Debug, PartialEq)]
struct RunOptions {
    /// `--linux`: the Debian guest instead of the nested demo.
    linux: bool,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    cmdline: Option<String>,
    /// `--smp`; by default 1 for a Linux guest, 2 for the nested demo
    /// (its service runs on the second CPU).
    smp: Option<u32>,
    memory: String,
    cpu: String,
    timeout: Duration,
    /// `hv.*` words for hv's command line.
    hv_args: Vec<String>,
}

/// The longest `--timeout`: a day is far beyond any boot, and well inside
/// what a deadline (`Instant` plus the timeout) can hold.
const MAX_RUN_TIMEOUT_SECONDS: u64 = 24 * 60 * 60;

fn parse_run_options(args: &[String]) -> Result<RunOptions, String> {
    let mut options = RunOptions {
        linux: false,
        kernel: None,
        initrd: None,
        cmdline: None,
        smp: None,
        memory: "512M".into(),
        cpu: "max,pauth-impdef=on".into(),
        timeout: Duration::from_secs(300),
        hv_args: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{RUN_USAGE}"))
        };
        match flag.as_str() {
            "--linux" => options.linux = true,
            "--kernel" => options.kernel = Some(value()?.into()),
            "--initrd" => options.initrd = Some(value()?.into()),
            "--cmdline" => options.cmdline = Some(value()?),
            "--smp" => {
                let v = value()?;
                options.smp = Some(
                    v.parse()
                        .ok()
                        .filter(|n| (1..=8).contains(n))
                        .ok_or_else(|| format!("--smp {v}: need 1 to 8 CPUs"))?,
                );
            }
            "--mem" => options.memory = value()?,
            "--cpu" => options.cpu = value()?,
            "--timeout" => {
                let v = value()?;
                let seconds = v
                    .parse()
                    .ok()
                    .filter(|s| (1..=MAX_RUN_TIMEOUT_SECONDS).contains(s))
                    .ok_or_else(|| {
                        format!("--timeout {v}: need 1 to {MAX_RUN_TIMEOUT_SECONDS} seconds")
                    })?;
                options.timeout = Duration::from_secs(seconds);
            }
            "-h" | "--help" => return Err(RUN_USAGE.into()),
            // `cargo xtask run -- hv.nested=...`: the separator is optional.
            "--" => {}
            word if word.starts_with("hv.") && word.contains('=') => {
                options.hv_args.push(word.into())
            }
            other => return Err(format!("unknown option `{other}`\n{RUN_USAGE}")),
        }
    }
    if options.kernel.is_some() != options.initrd.is_some() {
        return Err(format!("--kernel and --initrd go together\n{RUN_USAGE}"));
    }
    if options.linux && options.kernel.is_some() {
        return Err(format!(
            "--linux boots the default Linux guest; --kernel your own: not both\n{RUN_USAGE}"
        ));
    }
    if options.cmdline.is_some() && !options.linux && options.kernel.is_none() {
        return Err(format!(
            "--cmdline is the Linux guest's: give it with --linux or --kernel\n{RUN_USAGE}"
        ));
    }
    // Before the build and the installs, not after them.
    for (flag, path) in [("--kernel", &options.kernel), ("--initrd", &options.initrd)] {
        if let Some(path) = path {
            std::fs::File::open(path)
                .map_err(|e| format!("{flag} {}: cannot read it: {e}", path.display()))?;
        }
    }
    Ok(options)
}

/// hv's command line for `run`: the words given, after `hv.nested=demo`
/// for a nested run unless they name a guest hypervisor of their own.
fn run_hv_args(nested: bool, words: &[String]) -> String {
    let mut args = Vec::new();
    if nested && !words.iter().any(|w| w.starts_with("hv.nested=")) {
        args.push("hv.nested=demo");
    }
    args.extend(words.iter().map(String::as_str));
    args.join(" ")
}

/// Builds hv, prepares the guest bundle (or the nested demo), boots QEMU
/// and reports hv's exit status as the command's.
pub fn run(args: &[String]) -> Result<(), String> {
    let options = parse_run_options(args)?;
    let image = build(&[])?;
    setup::qemu()?;
    let nested = !options.linux && options.kernel.is_none();
    let bundle = if nested {
        // hv ignores its initrd in the nested demo (L1 is built into hv);
        // QEMU is always given one, so it gets an empty file.
        let dir = guest::cache_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let empty = dir.join("nested-demo-initrd.empty");
        guest::write_if_changed(&empty, &[])?;
        empty
    } else {
        let (kernel, initrd) = match (&options.kernel, &options.initrd) {
            (Some(k), Some(i)) => (k.clone(), i.clone()),
            _ => guest::default_guest()?,
        };
        let cmdline = options
            .cmdline
            .clone()
            .unwrap_or_else(|| guest::DEFAULT_CMDLINE.to_string());
        let bundle = guest::cache_dir().join("bundle-run.bin");
        guest::write_bundle(&kernel, &initrd, &cmdline, &bundle)?;
        bundle
    };
    let machine = Machine {
        machine: MACHINE.into(),
        cpu: options.cpu.clone(),
        smp: options.smp.unwrap_or(if nested { 2 } else { 1 }),
        memory: options.memory.clone(),
        hv_image: image,
        bundle,
        timeout: options.timeout,
        hv_args: run_hv_args(nested, &options.hv_args),
    };
    let outcome = machine.boot(true, &[NESTED_PASS])?;
    match (outcome.timed_out, outcome.status) {
        (true, _) => Err(format!(
            "no result after {} s: QEMU was stopped",
            options.timeout.as_secs()
        )),
        (false, Some(0)) if nested && outcome.matches.is_empty() => Err(format!(
            "hv powered off without the guest hypervisor's `{NESTED_PASS}` line"
        )),
        (false, Some(0)) if nested => {
            println!("xtask: the nested demo passed (L1 printed its PASS line and powered off)");
            Ok(())
        }
        (false, Some(0)) => {
            println!("xtask: the guest powered off cleanly");
            Ok(())
        }
        (false, Some(2)) => {
            Err("the guest reset the machine (PSCI SYSTEM_RESET) instead of powering off".into())
        }
        (false, status) => Err(format!("hv ended with status {status:?}")),
    }
}

/// The machine QEMU emulates for hv: EL2 present, GICv3.
pub const MACHINE: &str = "virt,virtualization=on,gic-version=3";

/// What a boot must show to pass.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// The guest reaches user space, prints the marker with this many
    /// CPUs and this word from the KVM VMM (`absent` where Linux has no
    /// KVM, `ok` where its L2 ran), and powers off: hv exits 0; with
    /// `requires`, the run also prints a line containing it (hv's note of
    /// the path a case is about, so a case cannot pass on another).
    Marker {
        cpus: u32,
        kvm: &'static str,
        requires: Option<&'static str>,
    },
    /// hv (or the guest) ends the run with this console line and status.
    Ends { line: &'static str, status: i32 },
    /// The run ends as one of these `Ends` says: a failure mode that more
    /// than one check can catch first, whichever the timing lets.
    EndsOneOf(&'static [(&'static str, i32)]),
    /// The run prints a line containing each of `lines` (in any order) and
    /// ends with `status`: a case whose intermediate lines carry what it
    /// checks (the fault-rate passes' counts).
    EndsWithAll {
        lines: &'static [&'static str],
        status: i32,
    },
}

/// Which guest bundle a case boots.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Guest {
    Default,
    /// The default guest with an init that does not exist: Linux panics.
    MissingInit,
    /// Not a guest bundle at all.
    NotABundle,
}

/// One QEMU boot of the test matrix.
#[derive(Clone, Copy, Debug)]
struct Case {
    machine: &'static str,
    cpu: &'static str,
    smp: u32,
    memory: &'static str,
    guest: Guest,
    /// Extra words for hv's command line.
    hv_args: &'static str,
    expect: Expect,
    /// How long the boot may take before it counts as hung.
    timeout: Duration,
}

const MAX: &str = "max,pauth-impdef=on";
/// hv's note (`Note::L1WfiWait`, hv/src/arch/nested.rs) that it waited for
/// L1's WFI with WFIT.
const L1_WFI_WFIT_NOTE: &str = "hv: nested: L1's WFI with nothing pending in its own interface: hv waits at EL2 for its next interrupt, at most 1 ms (WFIT; reported once)";
/// hv's note (`Note::L1WfiWaitHypTimer`) that it waited for L1's WFI in a
/// WFI bounded by its EL2 physical timer (no FEAT_WFxT, `hv.wfxt=off`).
const L1_WFI_HYP_TIMER_NOTE: &str = "hv: nested: L1's WFI with nothing pending in its own interface: hv waits at EL2 for its next interrupt, at most 1 ms (WFI bounded by hv's EL2 physical timer: no FEAT_WFxT; reported once)";
/// The `traps` L1's PASS line (`hv/src/arch/nested_l1_traps.rs`).
const TRAPS_PASS: &str = "l1: UMBRA-NESTED-PASS traps e2h=1 cptr=ok own-fp=ok l2-fp=ok tcpac=ok tpm=ok tda=ok hpmn=ok tde=ok";
/// The `sve` L1's PASS line (`hv/src/arch/nested_l1_sve.rs`).
const SVE_PASS: &str =
    "l1: UMBRA-NESTED-PASS sve e2h=1 zcr-el2=ok smcr-el2=ok own-vl=ok own-traps=ok l2-vl=ok l2-el1=ok fa64=ok restored=ok";
/// What the fault-rate case must print: each pass's counts (the part of
/// hv's line before its times), hv's dirty-log verdict and L1's PASS line.
const FAULT_RATE_LINES: &[&str] = &[
    "hv: nested: fault-rate: pass 1 (first touch, in order): 2048 L2 faults: hits 0, misses 2048 (full walks 1, partial walks 2047), invalidations 0, evictions 0; before it: faults 1 (full walks 1), stage-2 TLBIs from L1 0, invalidations 0 removing 0 entries; 2047 data faults in the pass's order (each new page 1 past the last); ",
    "hv: nested: fault-rate: pass 2 (after remap + TLBI VMALLS12E1IS, in order): 2048 L2 faults: hits 0, misses 2048 (full walks 1, partial walks 2047), invalidations 0, evictions 0; before it: faults 1 (full walks 1), stage-2 TLBIs from L1 1, invalidations 1 removing 4105 entries; 2047 data faults in the pass's order (each new page 1 past the last); ",
    "hv: nested: fault-rate: pass 3 (after remap + TLBI IPAS2E1IS of every page, in order): 2048 L2 faults: hits 0, misses 2048 (full walks 1, partial walks 2047), invalidations 0, evictions 0; before it: faults 0 (full walks 0), stage-2 TLBIs from L1 2048, invalidations 2048 removing 4101 entries; 2047 data faults in the pass's order (each new page 1 past the last); ",
    "hv: nested: fault-rate: pass 4 (after remap + TLBI IPAS2LE1IS of every page (walk cache kept), in order): 2048 L2 faults: hits 0, misses 2048 (full walks 0, partial walks 2048), invalidations 0, evictions 0; before it: faults 0 (full walks 0), stage-2 TLBIs from L1 2048, invalidations 2048 removing 4096 entries; 2047 data faults in the pass's order (each new page 1 past the last); ",
    "hv: nested: fault-rate: pass 5 (after remap + TLBI VMALLS12E1IS, scattered (stride 1031)): 2048 L2 faults: hits 0, misses 2048 (full walks 1, partial walks 2047), invalidations 0, evictions 0; before it: faults 1 (full walks 1), stage-2 TLBIs from L1 1, invalidations 1 removing 4105 entries; 2047 data faults in the pass's order (each new page 1031 past the last); ",
    "hv: nested: fault-rate: pass 6 (after hv moved L1's data pages (L0 unmap, walk cache kept), in order): 2048 L2 faults: hits 2048, misses 0 (full walks 0, partial walks 0), invalidations 0, evictions 0; before it: faults 0 (full walks 0), stage-2 TLBIs from L1 0, invalidations 1 removing 2048 entries; 2047 data faults in the pass's order (each new page 1 past the last); ",
    "hv: nested: fault-rate: pass 7 (after hv write-protected L1's data pages for its dirty log, every 8th page written, in order): 2560 L2 faults: hits 2560, misses 0 (full walks 0, partial walks 0), invalidations 0, evictions 0; before it: faults 0 (full walks 0), stage-2 TLBIs from L1 0, invalidations 1 removing 2048 entries; 2047 data faults in the pass's order (each new page 1 past the last); ",
    "hv: nested: fault-rate: dirty log: 384 of 2048 L1 data pages logged dirty, each from one write to hv's write-protected 4 KiB page: exactly the pages L2 wrote (every 8th L2 page; 256 L0Denied answers) and L1 wrote itself (every 16th from page 2; 128 of L1's own stage-2 permission faults)",
    "hv: nested: fault-rate: pass 8 (after remap to 2 MiB blocks rotated by one block + TLBI VMALLS12E1IS, in order): 2048 L2 faults: hits 2044, misses 4 (full walks 1, partial walks 3), invalidations 0, evictions 0; before it: faults 1 (full walks 1), stage-2 TLBIs from L1 1, invalidations 1 removing 4105 entries; 2047 data faults in the pass's order (each new page 1 past the last); ",
    "hv: nested: fault-rate: pass 9 (after hv ended its dirty log (its 2 MiB blocks back, read-write; L1's blocks kept), each block's first page written, in order): 4 L2 faults: hits 4, misses 0 (full walks 0, partial walks 0), invalidations 0, evictions 0; before it: faults 0 (full walks 0), stage-2 TLBIs from L1 0, invalidations 1 removing 2048 entries; ",
    "l1: UMBRA-NESTED-PASS fault-rate pages=2048 passes=9 values=ok",
];
/// What `fault-rate-tight` must print: hv's verdict on each pass under
/// memory pressure (its numbers follow from the pass and the budget: the
/// counts themselves differ from run to run, `hv::nested::fault_rate::
/// pressure`), the dirty log's exact line and L1's PASS line.
/// `hv.nested=mid-change`'s lines: each step's check by hv (its own
/// path resumed the access, no other path, no abort; the count after it
/// is timing's), hv's end line and L1's PASS line (vCPU 1 read each
/// step's new value).
const MID_CHANGE_LINES: &[&str] = &[
    "hv: nested: mid-change: step 1 (vCPU 1's L1 loads from its data page): ok: L1's own access resumed only, no abort injected (",
    "hv: nested: mid-change: step 2 (vCPU 1's L2 loads from its data page through the shadow (the leaf's page mid the change)): ok: the service's Retry(L0Changing) only, no abort injected (",
    "hv: nested: mid-change: step 3 (vCPU 1's L2 loads from a page it never touched (the walk reads L1's table mid the change)): ok: the service's Retry(L0Changing) only, no abort injected (",
    "hv: nested: mid-change: step 4 (vCPU 1's L1 runs AT S12E1R on its L2's page (hv's walk reads L1's table mid the change)): ok: L1's AT resumed (AtOutcome::L0Changing) only, no abort injected (",
    "hv: nested: mid-change: step 5 (vCPU 1's L2 loads from L1's data page with L1's stage 2 off): ok: L2's access with L1's stage 2 off resumed only, no abort injected (",
    "hv: nested: mid-change: step 6 (vCPU 1's L1, its stage 1 on, loads from a VA whose level-2 table is outside its RAM (hv's re-walk reads L1's table mid the change)): ok: L1's walk-abort re-walk resumed exactly once (and L1's own access resumed for the retries until the make), its one external abort injected after the make (1 resumes; the service's retries: 0 mid the change of L1's RAM, 0 of L1's table)",
    "hv: nested: mid-change: all 6 steps resumed mid hv's break-before-make",
    "l1: UMBRA-NESTED-PASS mid-change steps=6 values=ok",
];
const FAULT_RATE_TIGHT_LINES: &[&str] = &[
    "hv: nested: fault-rate-tight: pass 1 under pressure: ok: preparation exact, 2048 data faults exact, no retry, hits + misses = faults, full + partial walks = misses, evictions at least 1803, code-page faults at most the evictions, within the budget",
    "hv: nested: fault-rate-tight: pass 2 under pressure: ok: preparation exact, 2048 data faults exact, no retry, hits + misses = faults, full + partial walks = misses, evictions at least 1803, code-page faults at most the evictions, within the budget",
    "hv: nested: fault-rate-tight: pass 3 under pressure: ok: preparation exact, 2048 data faults exact, no retry, hits + misses = faults, full + partial walks = misses, evictions at least 1803, code-page faults at most the evictions, within the budget",
    "hv: nested: fault-rate-tight: pass 4 under pressure: ok: preparation exact, 2048 data faults exact, no retry, hits + misses = faults, full + partial walks = misses, evictions at least 1803, code-page faults at most the evictions, within the budget",
    "hv: nested: fault-rate-tight: pass 5 under pressure: ok: preparation exact, 2048 data faults exact, no retry, hits + misses = faults, full + partial walks = misses, evictions at least 1803, code-page faults at most the evictions, within the budget",
    "hv: nested: fault-rate-tight: pass 6 under pressure: ok: preparation exact, 2048 data faults exact, no retry, hits + misses = faults, full + partial walks = misses, evictions at least 1803, code-page faults at most the evictions, within the budget",
    "hv: nested: fault-rate-tight: pass 7 under pressure: ok: preparation exact, 2560 data faults exact, no retry, hits + misses = faults, full + partial walks = misses, evictions at least 1803, code-page faults at most the evictions, within the budget",
    "hv: nested: fault-rate-tight: pass 8 under pressure: ok: preparation exact, 2048 data faults exact, no retry, hits + misses = faults, full + partial walks = misses, evictions at least 1803, code-page faults at most the evictions, within the budget",
    "hv: nested: fault-rate-tight: pass 9 under pressure: ok: preparation exact, 4 data faults exact, no retry, hits + misses = faults, full + partial walks = misses, evictions at least 0, code-page faults at most the evictions, within the budget",
    "hv: nested: fault-rate: dirty log: 384 of 2048 L1 data pages logged dirty, each from one write to hv's write-protected 4 KiB page: exactly the pages L2 wrote (every 8th L2 page; 256 L0Denied answers) and L1 wrote itself (every 16th from page 2; 128 of L1's own stage-2 permission faults)",
    "l1: UMBRA-NESTED-PASS fault-rate pages=2048 passes=9 values=ok",
];
/// What `fault-rate-smp` must print at three CPUs (two vCPUs of L1 and
/// the service): each pass's counts up to its walks (which vCPU's first
/// fault the service walks first decides the full walks, 1 or 2: hv
/// checks that bound) and hv's verdict on it; in pass 8 the misses (1 or
/// 2 a block) and in pass 9 the faults (1 or 2 a block: which vCPU
/// touches a block first, and whether the other's fault came before the
/// block was in) are timing's, so those lines are matched up to them (the
/// rest is in the verdict: the preparation exact).
const FAULT_RATE_SMP_LINES: &[&str] = &[
    "hv: nested: fault-rate-smp: pass 1 (first touch, in order) on 2 vCPUs, pages interleaved: 2048 L2 faults (vCPU 0 1024, vCPU 1 1024): hits 0, misses 2048, invalidations 0, evictions 0; before it: faults 1 (full walks 1), stage-2 TLBIs from L1 0, invalidations 0 removing 0 entries; walks: full ",
    "hv: nested: fault-rate-smp: pass 1 on 2 vCPUs: ok: preparation exact, each data page faulted exactly once, each vCPU its share, hits 0, misses = faults, full + partial walks = misses; data faults: vCPU 0 1024, vCPU 1 1024 in the pass's order (each new page 2 past the vCPU's last); full walks 1 to 2, no retry, nothing given to L1",
    "hv: nested: fault-rate-smp: pass 2 (after remap + TLBI VMALLS12E1IS, in order) on 2 vCPUs, pages interleaved: 2048 L2 faults (vCPU 0 1024, vCPU 1 1024): hits 0, misses 2048, invalidations 0, evictions 0; before it: faults 1 (full walks 1), stage-2 TLBIs from L1 1, invalidations 1 removing 4105 entries; walks: full ",
    "hv: nested: fault-rate-smp: pass 2 on 2 vCPUs: ok: preparation exact, each data page faulted exactly once, each vCPU its share, hits 0, misses = faults, full + partial walks = misses; data faults: vCPU 0 1024, vCPU 1 1024 in the pass's order (each new page 2 past the vCPU's last); full walks 1 to 2, no retry, nothing given to L1",
    "hv: nested: fault-rate-smp: pass 5 (after remap + TLBI VMALLS12E1IS, scattered (stride 1031)) on 2 vCPUs, pages interleaved: 2048 L2 faults (vCPU 0 1024, vCPU 1 1024): hits 0, misses 2048, invalidations 0, evictions 0; before it: faults 1 (full walks 1), stage-2 TLBIs from L1 1, invalidations 1 removing 4105 entries; walks: full ",
    "hv: nested: fault-rate-smp: pass 5 on 2 vCPUs: ok: preparation exact, each data page faulted exactly once, each vCPU its share, hits 0, misses = faults, full + partial walks = misses; data faults: vCPU 0 1024, vCPU 1 1024 in the pass's order (each new page 14 past the vCPU's last); full walks 1 to 2, no retry, nothing given to L1",
    "hv: nested: fault-rate-smp: pass 6 (after hv moved L1's data pages (L0 unmap, walk cache kept), in order) on 2 vCPUs, pages interleaved: 2048 L2 faults (vCPU 0 1024, vCPU 1 1024): hits 2048, misses 0, invalidations 0, evictions 0; before it: faults 0 (full walks 0), stage-2 TLBIs from L1 0, invalidations 1 removing 2048 entries; walks: full 0, partial 0; ",
    "hv: nested: fault-rate-smp: pass 6 on 2 vCPUs: ok: preparation exact, each data page faulted exactly once, each vCPU its share, every fault a hit (misses 0, no walk); data faults: vCPU 0 1024, vCPU 1 1024 in the pass's order (each new page 2 past the vCPU's last); full walks 0, no retry, nothing given to L1",
    "hv: nested: fault-rate-smp: pass 7 (after hv write-protected L1's data pages for its dirty log, each vCPU writing the first of every 32 pages it reads, in order, and every vCPU but 0 also vCPU 0's page at the same step (vCPU 1 every other one from its L1 itself)) on 2 vCPUs, pages interleaved: ",
    "hv: nested: fault-rate-smp: pass 7 on 2 vCPUs: ok: preparation exact, each data page faulted, a page one vCPU wrote twice more (denied, then mapped writable), one every vCPU's L2 wrote 2 to 2n + 1 times in all, one vCPU 1's L1 wrote 1 to 2n - 1, each vCPU its share and two a page it alone wrote (vCPU 0 down to none on a shared page, the others up to two more on each their L2 wrote), every fault a hit (misses 0, no walk), a page one vCPU wrote logged on it, a shared page once on either (L2's write or L1's own), L1's own writes denied at most once a page it wrote; data faults: vCPU 0 ",
    "; full walks 0, no retry, nothing given to L1",
    "hv: nested: fault-rate-smp: dirty log: 64 of 2048 L1 data pages logged dirty, each once: exactly the pages the vCPUs wrote (the first of every 32 pages each L2 read; 32 of them, vCPU 0's, written by every vCPU, 16 of those by vCPU 1's L1 itself), each logged on the vCPU whose write reached the log first (L2's writes: vCPU 0 ",
    "hv: nested: fault-rate-smp: pass 8 (after remap to 2 MiB blocks rotated by one block + TLBI VMALLS12E1IS, in order) on 2 vCPUs, pages interleaved: 2048 L2 faults (vCPU 0 1024, vCPU 1 1024): hits ",
    "hv: nested: fault-rate-smp: pass 8 on 2 vCPUs: ok: preparation exact, each data page faulted exactly once, each vCPU its share, misses 1 to n a block (a vCPU's first fault in it), hits the rest, full + partial walks = misses; data faults: vCPU 0 1024, vCPU 1 1024 in the pass's order (each new page 2 past the vCPU's last); full walks 1 to 2, no retry, nothing given to L1",
    "hv: nested: fault-rate-smp: pass 9 (after hv ended its dirty log (its 2 MiB blocks back, read-write; L1's blocks kept), each vCPU writing the first of every 64 pages it reads, in order) on 2 vCPUs, pages interleaved: ",
    "hv: nested: fault-rate-smp: pass 9 on 2 vCPUs: ok: preparation exact, every 2 MiB block faulted, 1 to n pages each (a vCPU's first touch of it, at most one a block each), every fault a hit (misses 0, no walk); data faults: vCPU 0 ",
    "; full walks 0, at most one fault a block on each vCPU, retries (AlreadyMapped) at most faults - blocks, nothing given to L1",
    "l1: UMBRA-NESTED-PASS fault-rate-smp pages=2048 passes=1,2,5,6,7,8,9 values=ok",
];

/// What its twin `fault-rate-smp-one-vcpu-log` must print: hv's own
/// failure on vCPU 1's first write in the dirty-log pass, which a log that
/// resolves vCPU 0's writes alone leaves denied: its write to vCPU 0's
/// first page (L2 page 0, L1 page 4 at rotation 4), or, if vCPU 0's
/// write logged and mapped that page writable first (hv holds vCPU 0's
/// denial there at most 100 ms for vCPU 1's), its own first page (L2 page
/// 1, L1 page 5): the line up to the L2 IPA's last digits.
const FAULT_RATE_SMP_ONE_VCPU_LOG_LINES: &[&str] = &[
    "hv: nested: fault-rate-smp: pass 6 on 2 vCPUs: ok: preparation exact",
    "hv: nested: FAILED: L0 denied L2's write at L2 IPA 0x4000",
];

/// What its twin `fault-rate-smp-race-unresolved` must print: hv's own
/// failure in the dirty-log pass, on the first page both vCPUs write
/// whose race (both writes denied before either logged it; hv holds the
/// first denial for the other's) leaves the later one unresolved, as hv's
/// log did before `DirtyWrite::LoggedByAnother`: L2 page 0 (L1 page 4 at
/// rotation 4), at offset 8, if the first race comes on the first page.
const FAULT_RATE_SMP_RACE_UNRESOLVED_LINES: &[&str] = &[
    "hv: nested: fault-rate-smp: pass 6 on 2 vCPUs: ok: preparation exact",
    "hv: nested: FAILED: L0 denied L2's write at L2 IPA 0x400",
];

/// What its twin `fault-rate-smp-no-tlbi` must print: L1's failure in
/// pass 2, on whichever vCPU reports first (each reads all 1024 of its
/// pages through their old shadow entries: L2 page i shows L1 page i's
/// value, page i + 1's expected; vCPU 0's first is page 0, vCPU 1's page
/// 1, so the first value's last digit is the vCPU's).
const FAULT_RATE_SMP_NO_TLBI_LINES: &[&str] = &[
    "l1: L1 (fault-rate-smp): wrong values in pass 0x0000000000000002",
    "l1: L1 (fault-rate-smp): pages with a wrong value: 0x0000000000000400",
    "l1: UMBRA-NESTED-FAIL: L2 read another page's value (a stale or wrong translation); the first: 0xfa5700000000000",
];

/// What its twin `fault-rate-no-tlbi` must print: L1's failure in pass 2,
/// on every page (each read through its pass-1 shadow leaf), not merely a
/// failure with page 0's value, which a service mapping every page to L1
/// page 0 prints in pass 1.
const FAULT_RATE_NO_TLBI_LINES: &[&str] = &[
    "l1: L1 (fault-rate): wrong values in pass 0x0000000000000002",
    "l1: L1 (fault-rate): pages with a wrong value: 0x0000000000000800",
    "l1: UMBRA-NESTED-FAIL: L2 read another page's value (a stale or wrong translation); the first: 0xfa57000000000000",
];
/// `hv.nested=tlbi-race`'s lines: hv's verdict up to its timing's counts
/// (L2's reads, the faults in a break, the service's raced translations)
/// and L1's PASS line.
const TLBI_RACE_LINES: &[&str] = &[
    "hv: nested: tlbi-race: PASS: 0 stale reads: every read vCPU 1's L2 began after L1 published a generation saw that generation's mapping or a later one; 65 generations, each read by L2 after its publication; 91 stage-2 TLBIs from L1's vCPU 0 (VMALLS12E1IS 13, IPAS2E1IS 26, IPAS2LE1IS 26, RIPAS2E1IS (TTL level 3) 13, RIPAS2LE1IS 13), each one invalidation of the service; nothing given to L1 but its L2's stage-2 faults in a break, each resumed; L2 reads ",
    "l1: UMBRA-NESTED-PASS tlbi-race generations=65 values=ok",
];

/// What its twin `tlbi-race-no-range-tlbi` must print: hv's stale-read
/// failure, the first stale read generation 2's value of page 0 in a read
/// begun after generation 3 (the first range TLBI's) was published.
const TLBI_RACE_NO_RANGE_TLBI_LINES: &[&str] = &[
    "hv: nested: tlbi-race: FAILED: ",
    " stale reads of ",
    ": vCPU 1's L2 read values of a mapping L1's TLBI had removed; the first: 0x7b1a000000000200 in a read begun after generation 3 was published (a stale translation survived L1's completed TLBI)",
];
const N1: &str = "neoverse-n1";
/// 44-bit PA, no FEAT_XNX.
const A57: &str = "cortex-a57";
/// 40-bit PA.
const A76: &str = "cortex-a76";

const fn boot(cpu: &'static str, smp: u32, memory: &'static str) -> Case {
    Case {
        machine: MACHINE,
        cpu,
        smp,
        memory,
        guest: Guest::Default,
        hv_args: "",
        expect: Expect::Marker {
            cpus: smp,
            kvm: "absent",
            requires: None,
        },
        timeout: CASE_TIMEOUT,
    }
}

/// The full product of both CPU models, 1 and 4 CPUs, 512 MiB and 2 GiB
/// with hv's virtual GIC (each boot takes a few seconds), the passed-through
/// GIC, then the failure modes: each must end QEMU with its own line and
/// status, never hang.
const MATRIX: &[Case] = &[
    boot(MAX, 1, "512M"),
    boot(MAX, 1, "2G"),
    boot(MAX, 4, "512M"),
    boot(MAX, 4, "2G"),
    boot(N1, 1, "512M"),
    boot(N1, 1, "2G"),
    boot(N1, 4, "512M"),
    boot(N1, 4, "2G"),
    // The GIC passed through instead of virtualised: both models, 4 CPUs.
    Case {
        hv_args: "hv.gic=passthrough",
        ..boot(MAX, 4, "512M")
    },
    Case {
        hv_args: "hv.gic=passthrough",
        ..boot(N1, 4, "2G")
    },
    // Only two list registers: interrupts overflow them all the time, so
    // the refill through the underflow maintenance interrupt runs on every
    // boot (it once left a CPU acknowledging that interrupt forever at EL2:
    // the intermittent 4-vCPU hang, hv/README.md).
    Case {
        hv_args: "hv.list-registers=2",
        ..boot(MAX, 4, "512M")
    },
    Case {
        machine: "virt,gic-version=3",
        expect: Expect::Ends {
            line: "hv: error: hv must be entered at EL2",
            status: 1,
        },
        ..boot(MAX, 1, "512M")
    },
    Case {
        machine: "virt,virtualization=on,gic-version=2",
        expect: Expect::Ends {
            line: "hv: error: hv needs a GICv3; the device tree has only a GICv2",
            status: 1,
        },
        ..boot(MAX, 1, "512M")
    },
    Case {
        guest: Guest::NotABundle,
        expect: Expect::Ends {
            line: "hv: error: the initrd is not an Umbra guest bundle",
            status: 1,
        },
        ..boot(N1, 1, "512M")
    },
    Case {
        hv_args: "hv.fail=panic",
        expect: Expect::Ends {
            line: "hv: PANIC: panicked at hv/src/arch/mod.rs:",
            status: 1,
        },
        ..boot(MAX, 1, "512M")
    },
    Case {
        hv_args: "hv.fail=fault",
        expect: Expect::Ends {
            line: "hv: PANIC: exception in hv (vector 4): ESR_EL2",
            status: 1,
        },
        ..boot(N1, 1, "512M")
    },
    Case {
        hv_args: "hv.fail=write-code",
        // A permission fault (DFSC 0x0f: level 3) on a write (WnR) at EL2.
        expect: Expect::Ends {
            line: "hv: PANIC: exception in hv (vector 4): ESR_EL2 0x9600004f",
            status: 1,
        },
        ..boot(MAX, 1, "512M")
    },
    Case {
        guest: Guest::MissingInit,
        expect: Expect::Ends {
            line: "hv: the guest called PSCI SYSTEM_RESET",
            status: 2,
        },
        ..boot(N1, 4, "512M")
    },
    // hv's ipc self-test instead of a guest: two physical CPUs exchange
    // 100000 requests over a ring pair, the service sleeping on the
    // WFE/SEV doorbell when idle (hv/README.md, "Self-tests").
    Case {
        hv_args: "hv.selftest=ipc",
        expect: Expect::Ends {
            line: "hv: selftest ipc: PASS: 100000 requests answered in order, each once",
            status: 0,
        },
        ..boot(MAX, 2, "512M")
    },
    // Its failure mode: a service that stops answering must end the run
    // through the client's timeout, not hang it.
    Case {
        hv_args: "hv.selftest=ipc-stall",
        expect: Expect::Ends {
            line: "hv: selftest ipc: FAILED: timeout waiting for replies",
            status: 1,
        },
        ..boot(N1, 2, "512M")
    },
    // The same exchange with SGI doorbells: the service sleeps in WFI,
    // which QEMU (unlike WFE) makes halt until the SGI pends, so this run
    // proves the SGI bell loses no wakeup...
    Case {
        hv_args: "hv.selftest=ipc-sgi",
        expect: Expect::Ends {
            line: "hv: selftest ipc-sgi: PASS: 100000 requests answered in order, each once",
            status: 0,
        },
        ..boot(MAX, 2, "512M")
    },
    // ...because its broken twin (a service bell that never sends the
    // SGI) must fail by the client's generic-timer timeout.
    Case {
        hv_args: "hv.selftest=ipc-sgi-lost",
        expect: Expect::Ends {
            line: "hv: selftest ipc-sgi: FAILED: timeout waiting for replies",
            status: 1,
        },
        ..boot(N1, 2, "512M")
    },
    // The shadow-mmu service on CPU 1 serves an L2 payload's stage-2
    // faults on the boot CPU, which runs on the service's shadow stage 2;
    // hv plays L1 (TLBIs) and L0 (an unmap); a second L2 vCPU on CPU 2
    // reads the changing pages on the same shadow (hv/README.md,
    // "Self-tests").
    Case {
        hv_args: "hv.selftest=shadow",
        expect: Expect::Ends {
            line: "hv: selftest shadow: PASS:",
            status: 0,
        },
        ..boot(MAX, 3, "512M")
    },
    // It needs the third CPU, and says so.
    Case {
        hv_args: "hv.selftest=shadow",
        expect: Expect::Ends {
            line: "hv: error: selftest shadow needs 3 CPUs (L2's first vCPU, the service, L2's second vCPU on the same shadow); the device tree has 2",
            status: 1,
        },
        ..boot(N1, 2, "512M")
    },
    // A 44-bit host without FEAT_XNX: the shadow encodes execute
    // permission for EL0 and EL1 together; its IPA is 44 bits wide.
    Case {
        hv_args: "hv.selftest=shadow",
        expect: Expect::Ends {
            line: "hv: selftest shadow: PASS:",
            status: 0,
        },
        ..boot(A57, 3, "512M")
    },
    // A 40-bit host: a stage 2 cannot start at level 0 there
    // (AArch64.S2InvalidSL), so the hardware walks the 40-bit shadow from
    // two concatenated level-1 tables.
    Case {
        hv_args: "hv.selftest=shadow",
        expect: Expect::Ends {
            line: "hv: selftest shadow: PASS:",
            status: 0,
        },
        ..boot(A76, 3, "512M")
    },
    // Its failure mode: without the hardware TLBIs L2 reads the page L1
    // remapped through its stale TLB entry, and the run must say so.
    Case {
        hv_args: "hv.selftest=shadow-no-tlbi",
        expect: Expect::Ends {
            line: "hv: selftest shadow-no-tlbi: FAILED: after TLBI IPAS2E1IS: L2 IPA 0x103010 read",
            status: 1,
        },
        ..boot(N1, 3, "512M")
    },
    // Without the TLBI VMALLE1IS after the IPAS2E1ISs the combined stage
    // 1+2 entries an MMU-off L2 uses survive: the same stale value.
    Case {
        hv_args: "hv.selftest=shadow-no-vmalle1",
        expect: Expect::Ends {
            line: "hv: selftest shadow-no-vmalle1: FAILED: after TLBI IPAS2E1IS: L2 IPA 0x103010 read",
            status: 1,
        },
        ..boot(N1, 3, "512M")
    },
    // Without the TLBI IPAS2E1IS (VMALLE1IS kept) L2's walk of its own
    // stage-1 table still uses the stage-2 translation of the table's old
    // page: it reads through the old table.
    Case {
        hv_args: "hv.selftest=shadow-no-ipas2e1is",
        expect: Expect::Ends {
            line: "hv: selftest shadow-no-ipas2e1is: FAILED: stage 1: after TLBI IPAS2E1IS: L2 IPA 0x40100028 read",
            status: 1,
        },
        ..boot(N1, 3, "512M")
    },
    // L2 entered at the payload's `b .`: the EL2 watchdog ends it.
    Case {
        hv_args: "hv.selftest=shadow-stuck",
        expect: Expect::Ends {
            line: "hv: selftest shadow-stuck: FAILED: first touch: L2 (access to 0x100008) ran until an interrupt took it out, at PC 0x8001c: it never exited by itself",
            status: 1,
        },
        ..boot(N1, 3, "512M")
    },
    // The nested demo (`cargo xtask run`'s default): a guest hypervisor
    // (L1) at virtual EL2 with FEAT_NV2 runs its L2 on the shadow-mmu
    // service's shadow stage 2: L2's values, a demand fault injected into
    // L1 and resolved by it, and a remap L1 announces with TLBI; L1 prints
    // the sentinel (hv/README.md, "Nested virtualization").
    // Two CPUs: the service runs on CPU 1 and answers over the ipc rings.
    Case {
        hv_args: "hv.nested=demo",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS l2-values=3 demand-faults=1 tlbi-remap=ok",
            status: 0,
        },
        ..boot(MAX, 2, "512M")
    },
    // One CPU: the service answers inline.
    Case {
        hv_args: "hv.nested=demo",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS l2-values=3 demand-faults=1 tlbi-remap=ok",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // Its failure mode: hv acknowledges L1's stage-2 TLBIs without
    // applying them, and L1 must catch L2 reading the stale page, in both
    // CPU configurations of the passing demo (review 23 gap (d)).
    Case {
        hv_args: "hv.nested=demo-no-tlbi",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L2 read the stale page A after the remap and TLBI: 0xa1a1000011110001",
            status: 2,
        },
        ..boot(MAX, 2, "512M")
    },
    Case {
        hv_args: "hv.nested=demo-no-tlbi",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L2 read the stale page A after the remap and TLBI: 0xa1a1000011110001",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // Context recycling under a running guest hypervisor: L1 runs three
    // L2s (VMIDs 5, 6, 7, each its own stage 2, pages and values) in turn
    // for eight rounds on a service bounded to two contexts, so contexts
    // are recycled during the run and hv's side of the recycling handshake
    // runs at each; L1 checks every value each L2 reads and writes, hv
    // that every recycle ran its kick pass and that some happened.
    Case {
        hv_args: "hv.nested=recycle",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS recycle l2s=3 rounds=8 own-pages=ok",
            status: 0,
        },
        ..boot(MAX, 2, "512M")
    },
    Case {
        hv_args: "hv.nested=recycle",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS recycle l2s=3 rounds=8 own-pages=ok",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // Three CPUs: L1 starts vCPU 1 (PSCI CPU_ON) on CPU 2, the service on
    // CPU 1; that vCPU's L2 (VMID 8) reads its own page in a loop, so the
    // recycles vCPU 0's switches cause take its context while it is in L2:
    // hv's kick SGI, its exit and re-entry through the handshake. hv counts
    // kick SGIs per vCPU and fails the run unless vCPU 1 itself took one
    // (review 45 R45-2: a total could be met by vCPU 0's alone); at the
    // end vCPU 1 turns itself off (CPU_OFF) and L1 waits for OFF.
    Case {
        hv_args: "hv.nested=recycle",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS recycle l2s=3 rounds=8 own-pages=ok vcpus=2",
            status: 0,
        },
        ..boot(MAX, 3, "512M")
    },
    // Four CPUs: L1 has three vCPUs (the service on CPU 1). vCPU 1 runs
    // L2 3 and vCPU 2 L2 4 in reading loops on their own shadows while
    // vCPU 0's L2s take turns over three contexts; vCPU 2 first runs one
    // short life that ends in PSCI CPU_OFF, L1 waits for AFFINITY_INFO to
    // say OFF (and checks CPU_ON's ON_PENDING/ALREADY_ON and the
    // INVALID_PARAMETERS of an MPIDR it lacks), runs rounds 1-4 with it
    // off, starts it again, and at the end both turn off. hv fails the
    // run unless a recycle's kick SGI took each of vCPUs 1 and 2 out of L2.
    Case {
        hv_args: "hv.nested=recycle",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS recycle l2s=3 rounds=8 own-pages=ok vcpus=3 cpu-off-on=ok",
            status: 0,
        },
        ..boot(MAX, 4, "512M")
    },
    // Its failure modes: hv keeps a vCPU ON after its CPU_OFF, so
    // AFFINITY_INFO never says OFF and L1 cannot start it again; the
    // kick pass skips vCPU 2, live in a victim's L2.
    Case {
        hv_args: "hv.nested=recycle-no-off-state",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: AFFINITY_INFO did not report OFF within 2 s of the vCPU's CPU_OFF; vCPU 0x0000000000000002",
            status: 2,
        },
        ..boot(MAX, 4, "512M")
    },
    // A restarted vCPU's VPIDR_EL2 and VMPIDR_EL2 left as its cleared
    // VNCR page's 0 (no reset at CPU_ON after CPU_OFF): vCPU 2's second
    // life reads VMPIDR_EL2 0, not its MPIDR (review 46: no case failed
    // when the reset was removed).
    Case {
        hv_args: "hv.nested=recycle-no-id-reset",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: a started vCPU's VMPIDR_EL2 before it wrote it is not its own MPIDR_EL1 (hv's reset at every CPU_ON): 0x0000000000000000",
            status: 2,
        },
        ..boot(MAX, 4, "512M")
    },
    // The skipped vCPU 2 is never taken out of a victim's L2 (hv's check
    // at SYSTEM_OFF), and its L2 may run on the slot's successor's shadow
    // long enough to read another L2's page first (L1's check).
    Case {
        hv_args: "hv.nested=recycle-no-kick-all",
        expect: Expect::EndsOneOf(&[
            (
                "hv: nested: FAILED: recycling handshake: vCPU 2, started by L1 and running L2 while contexts were recycled, never took hv's kick SGI",
                1,
            ),
            // "an L2 (L2 3 or 4, on vCPU 1 or 2) read a value not its
            // own", or another of L1's checks that each L2 reaches only
            // its own pages.
            ("l1: UMBRA-NESTED-FAIL: an L2", 2),
        ]),
        ..boot(MAX, 4, "512M")
    },
    // Its failure mode: hv reuses the root of a key's first entry instead
    // of asking at every entry, so after a recycle an L2 runs on another
    // L2's shadow; L1 must catch it reading another L2's page.
    Case {
        hv_args: "hv.nested=recycle-stale-root",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: an L2 read a value not its own through 0x100000",
            status: 2,
        },
        ..boot(MAX, 2, "512M")
    },
    Case {
        hv_args: "hv.nested=recycle-stale-root",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: an L2 read a value not its own through 0x100000",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // On-target nested-fault throughput (hv/README.md, "Nested-fault
    // throughput on the target"): L1's L2 touches 2048 pages once per pass
    // (first touch; after a remap and TLBI VMALLS12E1IS; after TLBI
    // IPAS2E1IS of every page; after IPAS2LE1IS of every page; scattered
    // after VMALLS12E1IS; after hv moved its pages; under hv's dirty log,
    // writing every 8th page; L1's 2 MiB blocks over hv's log pages; the
    // same blocks after hv ended its log), checking every value; hv prints each pass's
    // counts (checked here and by hv itself) and its time (meaningless on
    // TCG). Two CPUs: the service on CPU 1, as on hardware.
    Case {
        hv_args: "hv.nested=fault-rate",
        expect: Expect::EndsWithAll {
            lines: FAULT_RATE_LINES,
            status: 0,
        },
        timeout: FAULT_RATE_TIMEOUT,
        ..boot(MAX, 2, "512M")
    },
    // Its failure mode: hv acknowledges L1's stage-2 TLBIs without
    // applying them (`demo-no-tlbi`'s defect), so after pass 2's remap L2
    // reads every page through its old shadow entry: page 0 holds L1 page
    // 0's value where page 1's belongs.
    Case {
        hv_args: "hv.nested=fault-rate-no-tlbi",
        expect: Expect::EndsWithAll {
            lines: FAULT_RATE_NO_TLBI_LINES,
            status: 2,
        },
        timeout: FAULT_RATE_TIMEOUT,
        ..boot(MAX, 2, "512M")
    },
    // The same passes on a service budget below their working set (512
    // KiB: 528 cache leaf places, 245 shadow leaves, for 2049 pages): every
    // pass evicts cached walks and shadow leaves, L1 checks every value,
    // hv checks what each pass implies under pressure (exact where the
    // design fixes it, bounds where the cache's hash key decides) and the
    // service's occupancy (hv/README.md, "Under memory pressure").
    Case {
        hv_args: "hv.nested=fault-rate-tight",
        expect: Expect::EndsWithAll {
            lines: FAULT_RATE_TIGHT_LINES,
            status: 0,
        },
        timeout: FAULT_RATE_TIMEOUT,
        ..boot(MAX, 2, "512M")
    },
    // The fault-rate passes but 3 and 4 (first touch; after a remap and
    // TLBI VMALLS12E1IS, in order and scattered; after hv's move of L1's
    // data, its dirty log with every vCPU's writes, L1's 2 MiB blocks,
    // the log's end) with two vCPUs of L1 running the same L2 (one
    // shadow context) and faulting interleaved pages at once: three CPUs,
    // the service on CPU 1, L1's vCPU 1 on CPU 2. L2 checks every value;
    // hv prints the aggregate and per-vCPU counts and checks what holds
    // whatever the interleaving (hv/README.md, "Several vCPUs at once").
    Case {
        hv_args: "hv.nested=fault-rate-smp",
        expect: Expect::EndsWithAll {
            lines: FAULT_RATE_SMP_LINES,
            status: 0,
        },
        timeout: FAULT_RATE_TIMEOUT,
        ..boot(MAX, 3, "512M")
    },
    // Its dirty log's failure mode: hv resolves vCPU 0's writes alone
    // (a log kept in the state of the vCPU that started it), so vCPU 1's
    // first write in the dirty-log pass stops hv.
    Case {
        hv_args: "hv.nested=fault-rate-smp-one-vcpu-log",
        expect: Expect::EndsWithAll {
            lines: FAULT_RATE_SMP_ONE_VCPU_LOG_LINES,
            status: 1,
        },
        timeout: FAULT_RATE_TIMEOUT,
        ..boot(MAX, 3, "512M")
    },
    // Its dirty log's race left unresolved: a write denied on a page
    // another vCPU logged since (both vCPUs write vCPU 0's written pages
    // in the dirty-log pass) stops hv, as before the fix.
    Case {
        hv_args: "hv.nested=fault-rate-smp-race-unresolved",
        expect: Expect::EndsWithAll {
            lines: FAULT_RATE_SMP_RACE_UNRESOLVED_LINES,
            status: 1,
        },
        timeout: FAULT_RATE_TIMEOUT,
        ..boot(MAX, 3, "512M")
    },
    // Its failure mode: hv acknowledges L1's stage-2 TLBIs without
    // applying them (`fault-rate-no-tlbi`'s defect), so in pass 2 every
    // vCPU's L2 reads its pages through their old shadow entries.
    Case {
        hv_args: "hv.nested=fault-rate-smp-no-tlbi",
        expect: Expect::EndsWithAll {
            lines: FAULT_RATE_SMP_NO_TLBI_LINES,
            status: 2,
        },
        timeout: FAULT_RATE_TIMEOUT,
        ..boot(MAX, 3, "512M")
    },
    // hv's resume paths for a guest access that meets hv's own
    // break-before-make of L1's RAM (hv/README.md, "Accesses mid hv's
    // break-before-make"): three CPUs, L1's vCPU 1 on CPU 2; for each step
    // hv on vCPU 0's CPU breaks a 2 MiB block of its map of L1 and holds
    // the break until the step's path resumed vCPU 1's access (L1's own
    // load; L2's load through the shadow, its leaf's page and then L1's
    // table page mid the change, answered Retry(L0Changing); L1's AT;
    // L2's load with L1's stage 2 off; L1's walk-abort re-walk, hv
    // breaking once the abort reached it), then moves the block and makes
    // it; vCPU 1 checks it read the new mapping's data (or took its walk
    // abort), hv that only the step's path resumed anything and no abort
    // but the step's was injected.
    Case {
        hv_args: "hv.nested=mid-change",
        expect: Expect::EndsWithAll {
            lines: MID_CHANGE_LINES,
            status: 0,
        },
        ..boot(MAX, 3, "512M")
    },
    // Its failure mode: hv gives L2 an external abort for the service's
    // Retry(L0Changing) (as when the service answered OutsideL1, review 59
    // R59-7): L2's abort goes to its EL1 vector at VBAR_EL1 0, whose fetch
    // L1's stage 2 does not map, and L1 fails on that fault (step 2).
    Case {
        hv_args: "hv.nested=mid-change-no-retry",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: unexpected exception at virtual EL2, ESR_EL2 0x0000000082000007",
            status: 2,
        },
        ..boot(MAX, 3, "512M")
    },
    // L1's stage-2 TLBIs racing its L2's reads on another vCPU
    // (hv/README.md, "L1's TLBIs racing L2 on another vCPU"): three CPUs;
    // L1's vCPU 0 remaps two L2 pages generation after generation with
    // break-before-make and each stage-2 TLBI form in turn, publishing each
    // generation after the TLBI completed, while vCPU 1's L2 reads them;
    // no read begun after a publication may see an earlier generation, and
    // hv checks the TLBIs it trapped, the service's invalidations and
    // what it gave L1.
    Case {
        hv_args: "hv.nested=tlbi-race",
        expect: Expect::EndsWithAll {
            lines: TLBI_RACE_LINES,
            status: 0,
        },
        ..boot(MAX, 3, "512M")
    },
    // Its failure mode: hv drops the service's invalidation for L1's
    // range TLBIs, so after the first range generation vCPU 1's L2 reads
    // the pages through their old shadow leaves: hv fails on the stale
    // count (not a timeout).
    Case {
        hv_args: "hv.nested=tlbi-race-no-range-tlbi",
        expect: Expect::EndsWithAll {
            lines: TLBI_RACE_NO_RANGE_TLBI_LINES,
            status: 1,
        },
        ..boot(MAX, 3, "512M")
    },
    // Interrupts for L2 through L1's virtual GIC interface: L1 puts
    // virtual interrupts in ICH_LR0_EL2 (its VNCR page), L2 acknowledges
    // and EOIs them through the hardware's ICV_* registers, and L1 checks
    // what hv wrote back (LR state, ELRSR/EISR/MISR, EOIcount, APRs,
    // VMCR) and takes its own maintenance interrupt (hv/README.md,
    // "Nested virtualization").
    Case {
        hv_args: "hv.nested=irq",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS irq vintids=42,43,44,46,47 lr-writeback=ok eoi-maintenance=ok eoicount=ok hw-entry=ok misr=ok group0=ok wfi=ok eret=ok maintenance-irqs=6",
            status: 0,
        },
        ..boot(MAX, 2, "512M")
    },
    Case {
        hv_args: "hv.nested=irq",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS irq vintids=42,43,44,46,47 lr-writeback=ok eoi-maintenance=ok eoicount=ok hw-entry=ok misr=ok group0=ok wfi=ok eret=ok maintenance-irqs=6",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // Its failure mode: hv does not write the list registers' State back
    // into L1's VNCR page after L2 ran; L1 must see its LR still pending.
    Case {
        hv_args: "hv.nested=irq-no-writeback",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: ICH_LR0_EL2 still holds the interrupt after L2 acknowledged and EOId it: 0x50a000000000002a",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // And hv that never delivers L1's maintenance interrupt: L1 must see
    // none after L2's EOI of an LR with EOI = 1.
    Case {
        hv_args: "hv.nested=irq-no-maintenance",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: wrong number of L1 maintenance interrupts: 0x0000000000000000",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // L1's EL2 trap controls (hv/README.md, "L1's EL2 trap controls"):
    // L1 sets CPTR_EL2 and MDCR_EL2, and L2's FP, CPACR_EL1, PMCR_EL0,
    // MDSCR_EL1 accesses and BRK reach L1 with their syndromes; L1's own
    // FP traps at its EL2 with FPEN 0b00.
    Case {
        hv_args: "hv.nested=traps",
        expect: Expect::Ends {
            line: TRAPS_PASS,
            status: 0,
        },
        ..boot(MAX, 2, "512M")
    },
    Case {
        hv_args: "hv.nested=traps",
        expect: Expect::Ends {
            line: TRAPS_PASS,
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // Its failure modes: hv keeps L1's CPTR_EL2 (or MDCR_EL2) but runs L2
    // without its traps; L1 must see L2's FP use (PMCR_EL0 read) untrapped.
    Case {
        hv_args: "hv.nested=traps-no-cptr",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L2's FP instruction did not trap to L1 once with L1's CPTR_EL2 trapping FP: 0x0000000000000000",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // And hv that does not apply L1's CPTR_EL2 to L1 itself: L1's own FP
    // use at its EL2 does not trap.
    Case {
        hv_args: "hv.nested=traps-no-el2-cptr",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L1's own FP instruction did not trap once at its EL2 with its CPTR_EL2 trapping FP: 0x0000000000000000",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // The same L1 as a non-VHE guest hypervisor (E2H = 0, as `mmu`): its
    // CPTR_EL2 in the TFP/TZ/TSM layout.
    Case {
        hv_args: "hv.nested=traps-nvhe",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS traps e2h=0 cptr=ok own-fp=ok l2-fp=ok tcpac=ok tpm=ok tda=ok hpmn=ok tde=ok",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    Case {
        hv_args: "hv.nested=traps-no-mdcr",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L2's MRS PMCR_EL0 did not trap to L1 (MDCR_EL2.TPM): L2 read ",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // And hv that gives L1's HPME to L2's hardware MDCR_EL2: L1's
    // EL2-only counter 5 counts hv's handling of L2's HVC exit (R39-1).
    Case {
        hv_args: "hv.nested=traps-no-hpme-guard",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L1's EL2-only counter 5 (HPMN 1, HPME, NSH) counted hv's EL2 cycles while hv handled L2's exit: ",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // L1's SVE and SME vector lengths (hv/README.md, "SVE and SME for
    // L1 and L2"): its ZCR_EL2 and SMCR_EL2 read back, set its own
    // lengths at virtual EL2 and limit L2's.
    Case {
        hv_args: "hv.nested=sve",
        expect: Expect::Ends {
            line: SVE_PASS,
            status: 0,
        },
        ..boot(MAX, 2, "512M")
    },
    // The same L1 as a non-VHE guest hypervisor (E2H = 0, NV1 = 1): its
    // ZCR_EL1 and SMCR_EL1 are L2's.
    Case {
        hv_args: "hv.nested=sve-nvhe",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS sve e2h=0 zcr-el2=ok smcr-el2=ok own-vl=ok own-traps=ok l2-vl=ok l2-el1=ok fa64=ok restored=ok",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // Its failure modes: L2 run under hv's own ZCR_EL2/SMCR_EL2, not
    // limited by L1's: L2's vector length is the longest.
    Case {
        hv_args: "hv.nested=sve-no-l2-limit",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L2's SVE vector length is not limited by L1's ZCR_EL2.LEN 1 (32 bytes): ",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // And L2 run with hv's own SMCR_EL2.FA64: its Advanced SIMD
    // instruction in Streaming SVE mode is legal, no trap.
    Case {
        hv_args: "hv.nested=sve-no-l2-fa64",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L2's Advanced SIMD instruction in streaming mode did not trap at its EL1 (L1's SMCR_EL2.FA64 0): ESR_EL1 0x0000000000000000",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // L2 run with L1's own VPIDR_EL2 and VMPIDR_EL2: its MIDR_EL1 is not
    // the one L1 set for it.
    Case {
        hv_args: "hv.nested=demo-no-vpidr",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L2's MIDR_EL1 is not L1's VPIDR_EL2: 0x00000000000f0510",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // L1 left with the VPIDR_EL2 and VMPIDR_EL2 it set for L2 after L2's
    // exit: its own MIDR_EL1 reads L2's.
    Case {
        hv_args: "hv.nested=demo-no-l1-ids",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L1's own MIDR_EL1 after L2 ran is not what it read before: 0x00000000411fd401",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // A VHE L1 in host mode (E2H = TGE = 1) runs its own EL0, as Linux
    // runs its user space: its EL0-only FP trap (CPTR_EL2.FPEN 0b01),
    // PAN set on entry by SCTLR_EL2.SPAN 0 (written before TGE, so only
    // hv's conversion at the next exit applies it), its SVC at its
    // vector, PAN set on its own SVC at EL2 in host mode and left alone
    // after it clears TGE.
    Case {
        hv_args: "hv.nested=host-el0",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS host-el0 el0-fp-trap=ok svc=ok pan=ok pan-own-el2=ok",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // Its twins: FPEN 0b01 given to the hardware as 0b11 (EL0's FP runs,
    // its SVC comes first), SPAN kept 1 (PAN clear on entry), SPAN kept
    // L1's 0 after it leaves host mode (PAN set on its own SVC at EL2).
    Case {
        hv_args: "hv.nested=host-el0-no-el0-fp-trap",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L1's host EL0 FP/SIMD instruction did not trap to L1 as FPEN 0b01 asks (the first exception from EL0 has ESR_EL2) 0x0000000056000042",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    Case {
        hv_args: "hv.nested=host-el0-no-span",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: PSTATE.PAN is not set on entry from EL0 (SCTLR_EL2.SPAN 0 in host mode): 0x0000000000000000",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    Case {
        hv_args: "hv.nested=host-el0-no-span-back",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: PSTATE.PAN is set on L1's own SVC at EL2 with TGE 0 (PAN must be left alone): 0x0000000000400000",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // A non-VHE L1 (E2H = 0) runs its own EL0 with its virtual TGE = 1:
    // EL0 in the EL1&0 regime with stage 1 off (SCTLR_EL1.M 1 is treated
    // as 0: its table would map the code elsewhere) through L1's stage 2,
    // CPACR_EL1's FP trap and an SVC taken to L1's EL2 vector, a load
    // beyond L1's 40-bit PA an Address size fault at level 0 (review 46
    // R46-4: hv ended the run here). Before it leaves, L1's AT S1E0R,
    // S12E1R and S1E1R under TGE see that regime with stage 1 off.
    Case {
        hv_args: "hv.nested=el0-tge",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS el0-tge at=ok stage1-off=ok fp-trap=ok address-size=ok svc=ok sctlr=ok",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // Its twin: that EL0 run without the hardware's TGE, as an L2's EL0:
    // its stage 1 translates its first fetch to an IPA L1's stage 2 does
    // not map, a stage-2 fault for L1 (EC 0x20, level 1).
    Case {
        hv_args: "hv.nested=el0-tge-no-tge",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: the first exception from L1's EL0 (TGE = 1, stage 1 off: it runs at IPA 0x80000) is not its FP trap, ESR_EL2 0x0000000082000005",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // Its twin for the AT step: hv's AT emulation ignores L1's TGE and
    // walks the EL1&0 stage 1 (VA 0x100000 to IPA 0x40100000, Normal made
    // Non-cacheable by SCTLR_EL1.C 0).
    Case {
        hv_args: "hv.nested=el0-tge-no-at",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: AT S1E0R of VA 0x100000 with TGE = 1 (E2H = 0: stage 1 off, the VA the output) gave a wrong PAR_EL1: 0x4400000040100b00",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // Linux as L1: the guest bundle's kernel entered at virtual EL2 (x0 =
    // its device tree, MMU off) runs its EL2 set-up, stays at EL2 as a
    // VHE kernel, probes L1's distributor and redistributor, initialises
    // KVM, and runs its user space in host mode (E2H = TGE = 1), whose
    // init runs a guest (L2) with KVM (`tools/kvm-vmm`: L2 checks and
    // writes the VMM's memory through hv's shadow stage 2, reports by
    // MMIO, takes its timer's interrupts and an SPI through KVM's vGICv3,
    // injected through L1's list registers, and powers off), prints the
    // marker and powers off (hv/README.md, "Linux as L1"). Four CPUs:
    // three vCPUs (the service on CPU 1), the secondaries started with
    // PSCI CPU_ON, Linux's IPIs SGIs of L1's GIC; init takes vCPU 1
    // offline and online again.
    // hv waits for L1's WFI with WFIT (QEMU's `max` has FEAT_WFxT).
    Case {
        hv_args: "hv.nested=linux",
        expect: Expect::Marker {
            cpus: 3,
            kvm: "ok irq=ok",
            requires: Some(L1_WFI_WFIT_NOTE),
        },
        ..boot(MAX, 4, "512M")
    },
    // The same boot with hv not using FEAT_WFxT (as on a CPU with FEAT_NV2
    // but without it, which QEMU's `max` is not): L1's WFI waits in a WFI
    // bounded by hv's EL2 physical timer. Without any wait (the WFI
    // spinning back to L1) this boot does not reach the marker in time;
    // hv's note of the bounded WFI shows it took that path (review 49
    // R49-5: the WFIT path also reaches the marker).
    Case {
        hv_args: "hv.nested=linux hv.wfxt=off",
        expect: Expect::Marker {
            cpus: 3,
            kvm: "ok irq=ok",
            requires: Some(L1_WFI_HYP_TIMER_NOTE),
        },
        ..boot(MAX, 4, "512M")
    },
    // Its twin for several vCPUs: hv drops the SGIs L1 sends to another
    // vCPU (and says so at the first), so Linux's IPIs are lost: its first
    // cross-CPU call (the system-wide alternatives, patched under
    // stop_machine) waits for ever, and hv's watchdog (20 s for this twin)
    // ends the run.
    Case {
        hv_args: "hv.nested=linux-no-ipi",
        expect: Expect::Ends {
            line: "hv: nested: linux-no-ipi: dropped L1's SGI ",
            status: 1,
        },
        ..boot(MAX, 4, "512M")
    },
    // Its twins for L2: hv hands L2's stage-2 data aborts to L1 without
    // their instruction syndrome, L1's KVM cannot emulate L2's MMIO store
    // (ENOSYS from KVM_RUN), and the VMM reports its first run failing;
    // hv does not apply L1's stage-2 TLBIs, and L2's second run, on
    // memory the VMM moved, reads the first run's page through the stale
    // shadow.
    Case {
        hv_args: "hv.nested=linux-no-l2-syndrome",
        expect: Expect::Ends {
            line: "kvm-vmm: run 1: KVM_RUN failed: errno 38",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // hv answers L2's ID register reads with L1's view instead of
    // forwarding them to L1, whose KVM set HCR_EL2.TID3 for its vCPU.
    Case {
        hv_args: "hv.nested=linux-no-l2-tid3",
        expect: Expect::Ends {
            line: "kvm-vmm: run 1: L2 read ID_AA64DFR0_EL1 0x100000001030560a; KVM shows its vCPU 0x10305006",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // hv ignores the list registers L1 writes for L2 (loaded invalid):
    // KVM's injections of L2's timer interrupts never reach it.
    Case {
        hv_args: "hv.nested=linux-no-l2-lr",
        expect: Expect::Ends {
            line: "kvm-vmm: run 1: L2 took 0 of 3 virtual timer interrupts (PPI 27) in 2 s, the last other INTID it acknowledged 1023 (report 0x3ff00000000)",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    Case {
        hv_args: "hv.nested=linux-no-l2-tlbi",
        expect: Expect::Ends {
            line: "kvm-vmm: run 2: L2's MMIO report 0xbad00001: L2 read a wrong word in page 1 (not 0x4b564d4c00020001)",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // Its twin: L1 shown SVE and SME, Linux 6.1 traps its own ZCR_EL2
    // write at EL2 (its CPTR_EL2 in the E2H = 0 layout; hv's note says
    // so) and never gets to its console; hv's watchdog (20 s for this
    // twin) ends the run.
    Case {
        hv_args: "hv.nested=linux-no-sve-hiding",
        expect: Expect::Ends {
            line: "hv: nested: L1's ZCR_EL2 or SMCR_EL2 access trapped by its own CPTR_EL2",
            status: 1,
        },
        ..boot(MAX, 1, "512M")
    },
    // L1's generic timers: its EL2 physical and virtual timers' PPIs at
    // virtual EL2 (also one expiring while L2 runs, and one re-armed and
    // EOId without a trap), L2's virtual timer expiring while L1 spins
    // without exits, CNTHCTL_EL2's trap of L2's physical timer, and L2's
    // virtual timer with L1's CNTVOFF_EL2 (hv/README.md, "Timers for L1
    // and L2"). At three CPUs L1 starts vCPU 1 (PSCI CPU_ON) on CPU 2,
    // which has no watchdog: its EL2 timer, L2's timer while it runs and
    // its EL2 timer while its L2 runs.
    Case {
        hv_args: "hv.nested=timer",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS timer el2-physical=ok el2-virtual=ok rearm=ok l2-timer-in-l1=ok l2-virtual-cntvoff=ok l2-trap=ok cntkctl12=ok el2-timer-in-l2=ok vcpus=2",
            status: 0,
        },
        ..boot(MAX, 3, "512M")
    },
    Case {
        hv_args: "hv.nested=timer",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS timer el2-physical=ok el2-virtual=ok rearm=ok l2-timer-in-l1=ok l2-virtual-cntvoff=ok l2-trap=ok cntkctl12=ok el2-timer-in-l2=ok",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // Its failure modes: L2 run with CNTVOFF_EL2 0 (its virtual count is
    // the physical one), no timer armed for L1's EL2 timers while L2 runs
    // (L2's bounded spin ends), L1's timer PPIs never delivered, and L2
    // run without the CNTHCTL_EL2 traps L1 asks for.
    Case {
        hv_args: "hv.nested=timer-no-cntvoff",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L2's CNTVCT_EL0 is not L1's physical count minus its CNTVOFF_EL2",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    Case {
        hv_args: "hv.nested=timer-no-l1-deadline",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L2 spun a second without a timer taking it out to L1: interrupts 0x0000000000000005",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    Case {
        hv_args: "hv.nested=timer-no-cnthctl",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L2's CNTP_CTL_EL0 reads did not trap exactly once: 0x0000000000000000",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    Case {
        hv_args: "hv.nested=timer-no-l1-irq",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: A: L1's EL2 physical timer interrupt did not come: interrupts 0x0000000000000000",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // L2's physical counter not trapped though L1's CNTHCTL_EL2 asks (its
    // timer trapped as asked), and L1's own CNTKCTL_EL1 left as L2's after
    // L2 ran (review 40 R40-5).
    Case {
        hv_args: "hv.nested=timer-no-cnthctl-counter",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L2's CNTPCT_EL0 reads did not trap exactly once: 0x0000000000000000",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    Case {
        hv_args: "hv.nested=timer-no-cntkctl-restore",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L1's CNTKCTL_EL1 (its CNTHCTL_EL2 at E2H = 1) is not the low bits of the CNTHCTL_EL2 it wrote last: 0x0000000000000003",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // hv's EL2 physical timer not armed for L2's timers while L1 runs
    // (review 40 R40-4): F's spin without exits ends with no interrupt.
    Case {
        hv_args: "hv.nested=timer-no-l2-deadline",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: F: L2's virtual timer did not interrupt L1 while L1 spun without exits: interrupts 0x0000000000000002",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // L2's virtual timer computed without L1's CNTVOFF_EL2 while L1 runs
    // (L2 itself runs with it): F's interrupt comes before its deadline.
    Case {
        hv_args: "hv.nested=timer-no-cntvoff-levels",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: a timer interrupt came before its deadline (physical count): ",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // The ISTATUS hv recomputes for L2's virtual timer at returns to L1
    // without L1's CNTVOFF_EL2 (review 43 R43-2): right after F's exit,
    // 8 TICKS before the deadline, CNTV_CTL_EL02 reads ISTATUS.
    Case {
        hv_args: "hv.nested=timer-no-cntvoff-istatus",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: F: CNTV_CTL_EL02 is not ENABLE alone 8 TICKS before L2's deadline (ISTATUS without CNTVOFF_EL2?): 0x0000000000000005",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // hv's EL2 physical timer backs L2's virtual timer only while L1 runs
    // (review 43 R43-2): F''s spin gets no INTID 30.
    Case {
        hv_args: "hv.nested=timer-no-l2-physical-deadline",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: F': L2's physical timer did not interrupt L1 while L1 spun without exits: interrupts 0x0000000000000003",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // ISTATUS of L2's timers not recomputed at returns to L1: F's
    // CNTV_CTL_EL02 reads ENABLE only.
    Case {
        hv_args: "hv.nested=timer-no-istatus-refresh",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: F: CNTV_CTL_EL02 does not read ENABLE and ISTATUS: 0x0000000000000001",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // No EOI maintenance on the timer PPIs hv lists (review 40 R40-3):
    // the hardware PPI hv holds stays active after L1's EOI, so E's
    // re-armed timer's next expiry never reaches hv.
    Case {
        hv_args: "hv.nested=timer-no-eoi-maintenance",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: E: the re-armed EL2 physical timer's next expiry did not come after L1's EOI without a trap: ICV_IAR1_EL1 0x00000000000003ff",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // L1 forwards L2's virtual timer interrupt (its PPI 27) with an HW = 1
    // list register, as KVM does (review 40 R40-2; hv/README.md, "Timers
    // for L1 and L2"): L2's EOI deactivates L1's PPI, so L2 takes its
    // timer interrupt again and again.
    Case {
        hv_args: "hv.nested=timer-hw",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS timer-hw l2-timer-irqs=4 hw-deactivation=ok lr-writeback=ok",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // Its failure mode: L2's deactivation leaves L1's PPI 27 active, so
    // its timer interrupts stop after the first.
    Case {
        hv_args: "hv.nested=timer-hw-no-link",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L2 waited a second for its next timer interrupt (L1's PPI 27 still active?): interrupts taken 0x0000000000000001",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // L1's GICv3 distributor and redistributors (hv/README.md, "A
    // distributor and redistributors for L1"): its own SGI, SPIs pending
    // through GICD_ISPENDR and routed with GICD_IROUTER, one pending at its
    // ERET into L2; at three CPUs vCPU 1 (CPU 2) sends vCPU 0 an SGI while
    // vCPU 0 runs L2, and takes an SPI routed to it.
    Case {
        hv_args: "hv.nested=gic",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS gic own-sgi=ok spi=ok l2-sgi=ok spi-at-eret=ok once=ok eoi-wait=ok withdraw=ok sgi-into-l2=ok spi-route=ok recall=ok off-handback=ok vcpus=2",
            status: 0,
        },
        ..boot(MAX, 3, "512M")
    },
    Case {
        hv_args: "hv.nested=gic",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS gic own-sgi=ok spi=ok l2-sgi=ok spi-at-eret=ok once=ok eoi-wait=ok withdraw=ok",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // Its failure modes: no exit from L2 for an interrupt pending for L1
    // (neither at its ERET nor while L2 runs: L2's bounded spin ends), and
    // no kick of the target vCPU's CPU (it stays in L2), and nothing
    // listed in L1's own interface (not even its own SGI comes).
    Case {
        hv_args: "hv.nested=gic-no-l2-exit",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: SPI 49, pending at L1's ERET into L2, did not take L2 out before L2 spun two seconds: IRQs from L2 0x0000000000000000",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    Case {
        hv_args: "hv.nested=gic-no-kick",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L2 spun two seconds without the SGI vCPU 1 sent taking it out to L1: IRQs from L2 0x0000000000000001",
            status: 2,
        },
        ..boot(MAX, 3, "512M")
    },
    Case {
        hv_args: "hv.nested=gic-no-list",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: the SGI L1 sent itself did not come: ICV_IAR1_EL1 0x00000000000003ff",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // L1's SGIs listed without the EOI bit: its deactivation (no trap)
    // takes nobody to hv, so the SGI waiting for a free LR never comes
    // (review 47 R47-1).
    Case {
        hv_args: "hv.nested=gic-no-eoi-maintenance",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: the SGI waiting for a free list register did not come after L1 deactivated one (EOI maintenance exit): ICV_IAR1_EL1 0x00000000000003ff",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // vCPU 1's CPU_OFF loses the SPI listed there (review 47 R47-2).
    Case {
        hv_args: "hv.nested=gic-no-power-off",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: SPI 51, listed for vCPU 1 and not acknowledged before its CPU_OFF, did not come to vCPU 0 after re-routing: ICV_IAR1_EL1 0x00000000000003ff",
            status: 2,
        },
        ..boot(MAX, 3, "512M")
    },
    // L1's clear-pending of an SGI listed and not acknowledged leaves it
    // pending in the vCPU's list registers (review 47 R47-2 b).
    Case {
        hv_args: "hv.nested=gic-no-withdraw",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: SGI 3, cleared pending (GICR_ICPENDR0) while listed, not acknowledged, is still in L1's LRs: ICV_HPPIR1_EL1 0x0000000000000003",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // A new priority does not reach SGI 3, already listed at priority 0:
    // it is signalled above L1's priority mask 0x80.
    Case {
        hv_args: "hv.nested=gic-no-reprioritize",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: SGI 3, listed at priority 0 and given 0xc0 (GICR_IPRIORITYR), was signalled above priority mask 0x80: ICV_IAR1_EL1 0x0000000000000003",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // vCPU 0's pending read does not sync vCPU 1, which acknowledged SPI
    // 56 and spins without exits: it reads pending.
    Case {
        hv_args: "hv.nested=gic-no-read-sync",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: GICD_ISPENDR1 still reads SPI 56 pending after vCPU 1 acknowledged it (no exit of vCPU 1 since): 0x0000000001000000",
            status: 2,
        },
        ..boot(MAX, 3, "512M")
    },
    // A PPI set active while every list register is in use is lost.
    Case {
        hv_args: "hv.nested=gic-no-ppi-active-wait",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: GICR_ISACTIVER0 does not read PPI 20 active, set while every list register was in use: 0x0000000000000000",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // Another vCPU's PPI active bits RAZ/WI: vCPU 0's set of vCPU 1's
    // PPI 20 is lost.
    Case {
        hv_args: "hv.nested=gic-no-remote-ppi-active",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: vCPU 1's GICR_ISACTIVER0 does not read PPI 20 active after vCPU 0 set it: 0x0000000000000000",
            status: 2,
        },
        ..boot(MAX, 3, "512M")
    },
    // A higher-priority SGI waits behind the SGIs L1 masks in every list
    // register (review 49 R49-1).
    Case {
        hv_args: "hv.nested=gic-no-displace",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: SGI 15 (priority 0x10) did not come while SGIs L1 masks (0xf0) held every list register: ICV_IAR1_EL1 0x00000000000003ff",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // An ISACTIVER of SGI 1, which L1 holds active in its list register,
    // sets the model's bit, which its EOI does not clear: never forwarded
    // again (review 49 R49-3).
    Case {
        hv_args: "hv.nested=gic-no-listed-active",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: SGI 1, set active (GICR_ISACTIVER0) while L1 held it active and then EOId, did not come when sent again: ICV_IAR1_EL1 0x00000000000003ff",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // L2 on vCPU 0 deactivates SPI 59, which vCPU 1 took and holds
    // active, through an HW = 1 list register: only vCPU 0's own list
    // registers and the model see it, so vCPU 1's entry stays active and
    // the SPI never comes there again (review 48 R48-3).
    Case {
        hv_args: "hv.nested=gic-no-remote-hw-deactivate",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: SPI 59, taken on vCPU 1 and deactivated by L2 on vCPU 0 (HW = 1 LR), did not come to vCPU 1 again: ICV_IAR1_EL1 0x00000000000003ff",
            status: 2,
        },
        ..boot(MAX, 3, "512M")
    },
    // A non-VHE guest hypervisor (E2H = 0) with its EL2 stage 1 on: hv
    // converts its TCR_EL2/SCTLR_EL2/TTBR0_EL2/MAIR_EL2 onto the hardware
    // EL1 regime (HCR_EL2.NV1); L1 checks an alias mapping, its own
    // stage-1 faults at its vector (ESR/FAR), its TLBI VAE2IS, and runs L2
    // with its vector at the alias VA (hv/README.md, "A guest hypervisor
    // with its MMU on").
    Case {
        hv_args: "hv.nested=mmu",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS mmu e2h=0 alias=ok own-faults=4 tlbi-vae2=ok l2-values=2 demand-faults=1",
            status: 0,
        },
        ..boot(MAX, 2, "512M")
    },
    Case {
        hv_args: "hv.nested=mmu",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS mmu e2h=0 alias=ok own-faults=4 tlbi-vae2=ok l2-values=2 demand-faults=1",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // Its failure mode: hv ignores TCR_EL2.T0SZ (the hardware gets 16), so
    // L1's load beyond its 39-bit VA range does not fault.
    Case {
        hv_args: "hv.nested=mmu-no-t0sz",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L1's own load that must take a stage-1 fault did not; 0x100 | the DFSC it expected: 0x0000000000000104",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // Its failure mode for L1's own TLBIs: hv acknowledges TLBI VAE2IS
    // without applying it, and L1 must read the stale block through its
    // remapped alias.
    Case {
        hv_args: "hv.nested=mmu-no-el2-tlbi",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: the alias read the stale block after L1's TLBI VAE2IS: 0xa1a10000111100a1",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // The same L1 shown FEAT_VHE: a VHE guest hypervisor (E2H = 1, as
    // Linux KVM runs) reaches its EL2&0 registers through the EL1
    // encodings, which HCR_EL2.{TVM, TRVM} trap for hv (DC follows its
    // SCTLR.M; TCR's IPS gets the shown PA size).
    Case {
        hv_args: "hv.nested=mmu-vhe",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS mmu e2h=1 alias=ok own-faults=4 tlbi-vae2=ok l2-values=2 demand-faults=1",
            status: 0,
        },
        ..boot(MAX, 2, "512M")
    },
    Case {
        hv_args: "hv.nested=mmu-vhe",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS mmu e2h=1 alias=ok own-faults=4 tlbi-vae2=ok l2-values=2 demand-faults=1",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // Its failure mode: hv keeps HCR_EL2.DC (L1's stage 1 silently off),
    // so L1's load through its alias is an L1 IPA outside its RAM: an
    // external abort where L1 expects its own value.
    Case {
        hv_args: "hv.nested=mmu-vhe-keep-dc",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: unexpected exception at virtual EL2, ESR_EL2 0x0000000096000010",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // L1's address translation instructions, emulated by hv: AT S1E1R
    // (through L1's stage 2), S12E1R, a stage-1 fault, a stage-2 fault on
    // the stage-1 walk (S = 1, PTW = 1), a stage-2 permission fault on
    // S12E1W, S1E0R, S1E2R, and an external abort on the walk taken as a
    // Data Abort (hv/README.md, "Address translation instructions"); then
    // L2's own AT S1E1R in hardware, whose walk meets a shadow page not
    // filled yet (review 42 R42-3).
    Case {
        hv_args: "hv.nested=at",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS at s1e1r=ok s12e1r=ok s1-fault=ok s2-walk-fault=ok s12e1w-s2-perm=ok s1e0r=ok s1e2r=ok walk-abort=ok l2-at=ok",
            status: 0,
        },
        ..boot(MAX, 2, "512M")
    },
    Case {
        hv_args: "hv.nested=at",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-PASS at s1e1r=ok s12e1r=ok s1-fault=ok s2-walk-fault=ok s12e1w-s2-perm=ok s1e0r=ok s1e2r=ok walk-abort=ok l2-at=ok",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // Its failure mode: hv answers AT S12E1R/W with stage 1 only, so L1
    // reads L2's IPA where it expects its own.
    Case {
        hv_args: "hv.nested=at-no-s12",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: AT S12E1R of L2's VA 0x10123 gave a wrong PAR_EL1: 0xff00000000090b80",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // The other failure mode: hv answers the stage-2 abort of L2's AT on
    // its stage-1 walk with PAR_EL1 (F, S, PTW, a level-3 translation
    // fault) instead of filling the shadow from L1's stage 2.
    Case {
        hv_args: "hv.nested=at-no-l2-fill",
        expect: Expect::Ends {
            line: "l1: UMBRA-NESTED-FAIL: L2's own AT S1E1R of 0x10123 gave a wrong PAR_EL1: 0x0000000000000b0f",
            status: 2,
        },
        ..boot(MAX, 1, "512M")
    },
    // A CPU without FEAT_NV2 is refused with one line.
    Case {
        hv_args: "hv.nested=demo",
        expect: Expect::Ends {
            line: "hv: error: nested: this CPU has no FEAT_NV2",
            status: 1,
        },
        ..boot(N1, 1, "512M")
    },
    // hv asks the firmware through its SMC conduit, at boot, which SMCCC
    // mitigations it implements (hv::smccc_arch), and the Linux guest then
    // boots and powers off (status 0) on two CPUs. The line shows the
    // boot CPU's discovery with the firmware's own answer (review 27 I-2:
    // a `query` that never asked prints "firmware not asked"): QEMU's PSCI
    // is 1.0 or later and answers PSCI_FEATURES(SMCCC_VERSION) with
    // NOT_SUPPORTED, so there is no SMCCC_ARCH_FEATURES and the guest is
    // told NOT_SUPPORTED for each call, never a mitigation. (Only cpu 0's
    // answers are printed; the second CPU's query is covered by the host
    // tests of hv::smccc_arch.)
    Case {
        expect: Expect::Ends {
            line: "hv: firmware's SMCCC Arm Architecture Service on cpu 0: PSCI_FEATURES(SMCCC_VERSION) = -1: WORKAROUND_1 not supported (-1), WORKAROUND_2 not supported (-1), WORKAROUND_3 not supported (-1), SOC_ID not supported (-1)",
            status: 0,
        },
        ..boot(N1, 2, "512M")
    },
    // hv's EL1 probe (hv/src/arch/walk_abort_probe.rs) takes the external
    // abort of a stage-1 walk that reads an IPA with nothing behind it:
    // a load and a fetch at level 1, a load at level 0, each with the FSC
    // of its level (0x15, 0x15, 0x14; before, 0x10) and FAR the VA.
    Case {
        hv_args: "hv.probe=walk-abort",
        expect: Expect::Ends {
            line: "UMBRA-WALK-ABORT-PASS data level 1, fetch level 1, data level 0",
            status: 0,
        },
        ..boot(MAX, 1, "512M")
    },
    // hv's EL1 probe (hv/src/arch/gic_active_probe.rs) makes SGI 3 and
    // PPI 23 active through its GICR_ISACTIVER0 and deactivates them with
    // ICC_DIR_EL1 (list registers, HW bit for the PPI) and with
    // GICR_ICACTIVER0, reading GICR_ISACTIVER0 after each step; then the
    // same for SPI 33 through GICD_ISACTIVER1/ICACTIVER1 (review 27
    // R27-7: before, the SPI stayed active after ICC_DIR_EL1, step 6);
    // then it starts vCPU 1, whose timer PPI hv holds pending for it, and
    // reads vCPU 1's GICR_ISPENDR0/ISACTIVER0: pending, not active, as
    // vCPU 1's own view (before, the physical state: active, step 9).
    Case {
        hv_args: "hv.probe=gic-active",
        expect: Expect::Ends {
            line: "UMBRA-GIC-ACTIVE-PASS SGI 3 and PPI 23 made active, deactivated by ICC_DIR_EL1 and by GICR_ICACTIVER0; SPI 33 by ICC_DIR_EL1 and by GICD_ICACTIVER1; vCPU 1's PPI 27 read from vCPU 0 pending, not active",
            status: 0,
        },
        ..boot(MAX, 2, "512M")
    },
    // hv's EL1 probe (hv/src/arch/spi_view_probe.rs): vCPU 1, interrupts
    // masked, has SPI 100 pending in a list register (hv acknowledged it
    // there: physically active); vCPU 0 polls GICD_ISACTIVER3 until it
    // reads inactive, as Linux's synchronize_irq does, and must see it
    // pending and not active (review 41 R41-1), then through
    // GICD_ICACTIVER3 (no effect), GICD_ICPENDR3 (withdrawn), vCPU 1's
    // acknowledgement (active) and EOI (neither); then GICD_ISPENDR3
    // while vCPU 1 has it pending (review 44 R44-4): no effect, delivered
    // once.
    Case {
        hv_args: "hv.probe=spi-view",
        expect: Expect::Ends {
            line: "UMBRA-SPI-VIEW-PASS SPI 100 held for vCPU 1 read from vCPU 0: pending, not active; after GICD_ICACTIVER3 the same; after GICD_ICPENDR3 neither, withdrawn; acknowledged, active; after its EOI, neither; GICD_ISPENDR3 while pending there: no effect, delivered once",
            status: 0,
        },
        ..boot(MAX, 2, "512M")
    },
    // Its failure mode: hv reads an SPI another vCPU holds in its physical
    // state (it asks no holder); the poll never sees it inactive.
    Case {
        hv_args: "hv.probe=spi-view-no-view",
        expect: Expect::Ends {
            line: "UMBRA-SPI-VIEW-FAIL step 4 value 00000010",
            status: 2,
        },
        ..boot(MAX, 2, "512M")
    },
    // Its failure mode for R44-4: hv forwards a GICD_ISPENDR<n> write of
    // an SPI another vCPU holds pending (as before), which is delivered a
    // second time after vCPU 1's EOI.
    Case {
        hv_args: "hv.probe=spi-view-no-set-pending",
        expect: Expect::Ends {
            line: "UMBRA-SPI-VIEW-FAIL step 10 value 00000009",
            status: 2,
        },
        ..boot(MAX, 2, "512M")
    },
];

/// Seconds one boot may take before it counts as hung.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);
/// The fault-rate cases': hv's watchdog for them (measured, its doc says
/// how: 18,949 round trips to the service CPU, up to 24 s a pass with
/// QEMU on one host core) and half a minute for the boot and the lines
/// after, so that hv's watchdog line, naming the pass, ends a slow run.
const FAULT_RATE_TIMEOUT: Duration =
    Duration::from_secs(hv::nested::fault_rate::WATCHDOG_SECONDS + 30);

/// Lines that mean something went wrong, when a marker was expected.
const TROUBLE: &[&str] = &["hv: PANIC", "hv: error", "hv: guest crash", "Kernel panic"];

/// Why a case failed, from its outcome; None if it passed.
fn verdict(case: &Case, outcome: &Outcome) -> Option<String> {
    if outcome.timed_out {
        return Some(format!("timeout after {} s", case.timeout.as_secs()));
    }
    match case.expect {
        Expect::Marker {
            cpus,
            kvm,
            requires,
        } => {
            if let Some(line) = outcome
                .matches
                .iter()
                .find(|l| TROUBLE.iter().any(|t| l.contains(t)))
            {
                return Some(format!("panic: {line}"));
            }
            let hotplug = if cpus > 1 { "ok" } else { "none" };
            let expected = format!(
                "{MARKER} cpus={cpus} online={} hotplug={hotplug} unbacked-read=sigbus kvm={kvm}",
                if cpus > 1 {
                    format!("0-{}", cpus - 1)
                } else {
                    "0".into()
                }
            );
            match outcome.matches.iter().find(|l| l.contains(MARKER)) {
                None => Some(format!(
                    "no `{MARKER}` marker; QEMU exit status {:?}",
                    outcome.status
                )),
                Some(line) if !line.trim_end().ends_with(&expected) => {
                    Some(format!("wrong marker: expected `{expected}`, got `{line}`"))
                }
                Some(_) if outcome.status != Some(0) => Some(format!(
                    "marker seen but hv's exit status was {:?}, not 0 (guest powered off)",
                    outcome.status
                )),
                Some(_) => match requires {
                    Some(required) if !outcome.matches.iter().any(|l| l.contains(required)) => {
                        Some(format!(
                            "marker seen but not the required line `{required}`"
                        ))
                    }
                    _ => None,
                },
            }
        }
        Expect::EndsOneOf(ends) => {
            if ends.iter().any(|&(line, status)| {
                outcome.status == Some(status) && outcome.matches.iter().any(|l| l.contains(line))
            }) {
                None
            } else {
                Some(format!(
                    "expected one of {ends:?} (line, exit status); QEMU exit status {:?}",
                    outcome.status
                ))
            }
        }
        Expect::EndsWithAll { lines, status } => ends_with(lines, status, outcome),
        Expect::Ends { line, status } => ends_with(&[line], status, outcome),
    }
}

/// Why a run that must print each of `lines` and end with `status` failed;
/// None if it did not.
fn ends_with(lines: &[&str], status: i32, outcome: &Outcome) -> Option<String> {
    if let Some(line) = lines
        .iter()
        .find(|line| !outcome.matches.iter().any(|l| l.contains(*line)))
    {
        Some(format!(
            "expected the line `{line}`; QEMU exit status {:?}",
            outcome.status
        ))
    } else if outcome.status != Some(status) {
        Some(format!(
            "expected exit status {status}, got {:?}",
            outcome.status
        ))
    } else {
        None
    }
}

const TEST_USAGE: &str = "\
usage: cargo xtask hv-test [--case TEXT] [--repeat N]
Boots the QEMU matrix, or only the cases whose name contains TEXT (as the
matrix prints it, e.g. \"-cpu max,pauth-impdef=on -smp 4 -m 2G\"), each N
times. With --repeat every boot counts: a hang is a failure, not retried.";

/// Which cases `cargo xtask hv-test` boots, how often.
#[derive(Debug, PartialEq)]
struct TestOptions {
    case: Option<String>,
    repeat: u32,
}

fn parse_test_options(args: &[String]) -> Result<TestOptions, String> {
    let mut options = TestOptions {
        case: None,
        repeat: 1,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value\n{TEST_USAGE}"))
        };
        match flag.as_str() {
            "--case" => options.case = Some(value()?),
            "--repeat" => {
                let v = value()?;
                options.repeat = v
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or_else(|| format!("--repeat {v}: need a count of at least 1"))?;
            }
            "-h" | "--help" => return Err(TEST_USAGE.into()),
            other => return Err(format!("unknown option `{other}`\n{TEST_USAGE}")),
        }
    }
    Ok(options)
}

/// A case's name in reports, and what `--case` matches.
fn case_name(case: &Case) -> String {
    let mut name = format!(
        "-M {} -cpu {} -smp {} -m {}",
        case.machine, case.cpu, case.smp, case.memory
    );
    if case.guest != Guest::Default {
        name.push_str(&format!(" ({:?} guest)", case.guest));
    }
    if !case.hv_args.is_empty() {
        name.push_str(&format!(" [{}]", case.hv_args));
    }
    name
}

/// The cases whose name contains `filter` (all without one); an error
/// listing the names if none does.
fn select_cases(filter: Option<&str>) -> Result<Vec<&'static Case>, String> {
    let selected: Vec<&Case> = MATRIX
        .iter()
        .filter(|case| filter.is_none_or(|text| case_name(case).contains(text)))
        .collect();
    if selected.is_empty() {
        let names: Vec<String> = MATRIX.iter().map(case_name).collect();
        return Err(format!(
            "no case's name contains `{}`; the cases are:\n  {}",
            filter.unwrap_or(""),
            names.join("\n  ")
        ));
    }
    Ok(selected)
}

/// `cargo xtask hv-test [--case TEXT] [--repeat N]`: the QEMU test
/// matrix (every case once without options), one boot at a time (the
/// machine has two cores and a 4-CPU guest uses both).
pub fn test_command(args: &[String]) -> Result<(), String> {
    let options = parse_test_options(args)?;
    run_matrix(&options)
}

fn run_matrix(options: &TestOptions) -> Result<(), String> {
    let cases = select_cases(options.case.as_deref())?;
    let image = build(&[])?;
    setup::qemu()?;
    let (kernel, initrd) = guest::default_guest()?;
    let dir = guest::cache_dir();
    let default_bundle = dir.join("bundle-test.bin");
    guest::write_bundle(&kernel, &initrd, guest::DEFAULT_CMDLINE, &default_bundle)?;
    let panic_bundle = dir.join("bundle-test-missing-init.bin");
    let panic_cmdline = guest::DEFAULT_CMDLINE.replace("rdinit=/init", "rdinit=/does-not-exist");
    guest::write_bundle(&kernel, &initrd, &panic_cmdline, &panic_bundle)?;
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut boots = 0;
    let runs = cases
        .iter()
        .flat_map(|&case| (1..=options.repeat).map(move |run| (case, run)));
    for (case, run) in runs {
        boots += 1;
        let machine = Machine {
            machine: case.machine.into(),
            cpu: case.cpu.into(),
            smp: case.smp,
            memory: case.memory.into(),
            hv_image: image.clone(),
            bundle: match case.guest {
                Guest::Default => default_bundle.clone(),
                Guest::MissingInit => panic_bundle.clone(),
                // The initramfs itself: a gzip file, not a bundle.
                Guest::NotABundle => initrd.clone(),
            },
            timeout: case.timeout,
            hv_args: case.hv_args.into(),
        };
        let mut name = case_name(case);
        if options.repeat > 1 {
            name.push_str(&format!(" (run {run}/{})", options.repeat));
        }
        let mut watch = vec![MARKER];
        watch.extend_from_slice(TROUBLE);
        match case.expect {
            Expect::Ends { line, .. } => watch.push(line),
            Expect::EndsOneOf(ends) => watch.extend(ends.iter().map(|&(line, _)| line)),
            Expect::EndsWithAll { lines, .. } => watch.extend_from_slice(lines),
            Expect::Marker { requires, .. } => watch.extend(requires),
        }
        let outcome = machine.boot(false, &watch)?;
        match verdict(case, &outcome) {
            None => println!(
                "xtask: qemu {name}: ok in {:.1} s, exit status {:?} ({})",
                outcome.elapsed.as_secs_f64(),
                outcome.status,
                outcome.matches.last().map_or("", |l| l.trim())
            ),
            Some(why) => {
                println!("xtask: qemu {name}: FAILED: {why}; last console lines:");
                for line in &outcome.tail {
                    println!("    | {line}");
                }
                failures.push(format!("{name}: {why}"));
            }
        }
    }
    println!(
        "xtask: qemu matrix: {} passed, {} failed ({:.0} s)",
        boots - failures.len(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn run_options() {
        // Any readable file will do for the parser.
        let (k, i) = (env!("CARGO_MANIFEST_PATH"), env!("CARGO_MANIFEST_PATH"));
        let o = parse_run_options(&args(&[
            "--kernel",
            k,
            "--initrd",
            i,
            "--smp",
            "4",
            "--mem",
            "2G",
            "--cmdline",
            "a b",
        ]))
        .unwrap();
        assert_eq!(o.kernel, Some(k.into()));
        assert_eq!(o.smp, Some(4));
        assert_eq!(o.memory, "2G");
        assert_eq!(o.cmdline.as_deref(), Some("a b"));
        assert!(parse_run_options(&args(&["--kernel", "k"])).is_err());
        assert!(parse_run_options(&args(&["--smp", "9"])).is_err());
        assert!(parse_run_options(&args(&["--smp"])).is_err());
        assert!(parse_run_options(&args(&["--bogus"])).is_err());
        // The nested demo is the default; --linux the Debian guest.
        let o = parse_run_options(&[]).unwrap();
        assert!(!o.linux && o.kernel.is_none());
        assert!(parse_run_options(&args(&["--linux"])).unwrap().linux);
        assert!(parse_run_options(&args(&["--linux", "--cmdline", "x"])).is_ok());
        // hv's own options, with or without cargo's `--`.
        let o = parse_run_options(&args(&["--", "hv.nested=fault-rate"])).unwrap();
        assert_eq!(o.hv_args, ["hv.nested=fault-rate"]);
        assert_eq!(run_hv_args(true, &o.hv_args), "hv.nested=fault-rate");
        assert_eq!(run_hv_args(true, &[]), "hv.nested=demo");
        let gic = args(&["hv.gic=passthrough"]);
        assert_eq!(run_hv_args(true, &gic), "hv.nested=demo hv.gic=passthrough");
        assert_eq!(run_hv_args(false, &gic), "hv.gic=passthrough");
        assert!(parse_run_options(&args(&["hv.nested"])).is_err());
        assert!(parse_run_options(&args(&["nested=demo"])).is_err());
        assert!(parse_run_options(&args(&["--cmdline", "x"])).is_err());
        assert!(parse_run_options(&args(&["--linux", "--kernel", k, "--initrd", i])).is_err());
        let missing = parse_run_options(&args(&["--kernel", "/nonexistent/k", "--initrd", i]));
        assert!(missing
            .unwrap_err()
            .starts_with("--kernel /nonexistent/k: cannot read it"));
    }

    /// R57-8: the fault-rate cases outlast hv's watchdog for them, so a
    /// slow run ends with hv's line naming the pass, not the driver's
    /// timeout; every other case keeps the default.
    #[test]
    fn fault_rate_cases_outlast_hvs_watchdog() {
        let watchdog = Duration::from_secs(hv::nested::fault_rate::WATCHDOG_SECONDS);
        let (fault_rate, others): (Vec<&Case>, Vec<&Case>) = MATRIX
            .iter()
            .partition(|c| c.hv_args.starts_with("hv.nested=fault-rate"));
        assert_eq!(fault_rate.len(), 7);
        for case in fault_rate {
            assert!(
                case.timeout >= watchdog + Duration::from_secs(30),
                "{case:?}"
            );
        }
        assert!(others.iter().all(|c| c.timeout == CASE_TIMEOUT));
    }

    /// X8: an absurd --timeout is an error line, not a panic at boot.
    #[test]
    fn timeouts_are_bounded() {
        for bad in ["18446744073709551615", "86401", "0", "-1", "1.5", "x"] {
            let error = parse_run_options(&args(&["--timeout", bad])).unwrap_err();
            assert_eq!(error, format!("--timeout {bad}: need 1 to 86400 seconds"));
        }
        let o = parse_run_options(&args(&["--timeout", "86400"])).unwrap();
        assert_eq!(o.timeout, Duration::from_secs(86400));
    }

    fn outcome(status: Option<i32>, lines: &[&str]) -> Outcome {
        Outcome {
            status,
            timed_out: status.is_none(),
            elapsed: Duration::from_secs(1),
            tail: lines.iter().map(|s| s.to_string()).collect::<VecDeque<_>>(),
            matches: lines.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn verdicts() {
        let case = boot(MAX, 4, "2G");
        let ok =
            "[ 1.0] UMBRA-GUEST-OK cpus=4 online=0-3 hotplug=ok unbacked-read=sigbus kvm=absent";
        assert_eq!(verdict(&case, &outcome(Some(0), &[ok])), None);
        // The KVM VMM's word is part of the marker: Linux at EL1 has no
        // KVM, and a Linux L1's KVM must run its guest.
        let kvm_ran = ok.replace("kvm=absent", "kvm=ok");
        assert!(verdict(&case, &outcome(Some(0), &[&kvm_ran]))
            .unwrap()
            .starts_with("wrong marker"));
        let linux_l1 = *MATRIX
            .iter()
            .find(|c| c.hv_args == "hv.nested=linux")
            .unwrap();
        let l1_ok =
            "[ 1.0] UMBRA-GUEST-OK cpus=3 online=0-2 hotplug=ok unbacked-read=sigbus kvm=ok irq=ok";
        assert_eq!(
            verdict(&linux_l1, &outcome(Some(0), &[L1_WFI_WFIT_NOTE, l1_ok])),
            None
        );
        // Each WFI path's case requires its own note (review 49 R49-5).
        let without_wfxt = *MATRIX
            .iter()
            .find(|c| c.hv_args == "hv.nested=linux hv.wfxt=off")
            .unwrap();
        assert_eq!(
            verdict(
                &without_wfxt,
                &outcome(Some(0), &[L1_WFI_HYP_TIMER_NOTE, l1_ok])
            ),
            None
        );
        for (case, other_path) in [
            (linux_l1, L1_WFI_HYP_TIMER_NOTE),
            (without_wfxt, L1_WFI_WFIT_NOTE),
        ] {
            for lines in [&[l1_ok][..], &[other_path, l1_ok]] {
                assert!(verdict(&case, &outcome(Some(0), lines))
                    .unwrap()
                    .contains("required line"));
            }
        }
        for failed in [
            "kvm=run",
            "kvm=l2-check",
            "kvm=absent",
            "kvm=",
            "kvm=ok",
            "kvm=irq-timer",
            "kvm=irq-spi",
        ] {
            let line = l1_ok.replace("kvm=ok irq=ok", failed);
            assert!(
                verdict(&linux_l1, &outcome(Some(0), &[L1_WFI_WFIT_NOTE, &line]))
                    .unwrap()
                    .starts_with("wrong marker")
            );
        }
        // The fault-rate case needs every pass's counts, not only L1's PASS
        // line (a pass line with other counts is a missing line).
        let fault_rate = *MATRIX
            .iter()
            .find(|c| c.hv_args == "hv.nested=fault-rate")
            .unwrap();
        assert_eq!(
            verdict(&fault_rate, &outcome(Some(0), FAULT_RATE_LINES)),
            None
        );
        let pass_only = &FAULT_RATE_LINES[FAULT_RATE_LINES.len() - 1..];
        assert!(verdict(&fault_rate, &outcome(Some(0), pass_only))
            .unwrap()
            .contains("pass 1 (first touch"));
        let other_walks = FAULT_RATE_LINES[2].replace("full walks 1,", "full walks 0,");
        let mut lines = FAULT_RATE_LINES.to_vec();
        lines[2] = &other_walks;
        assert!(verdict(&fault_rate, &outcome(Some(0), &lines))
            .unwrap()
            .contains("pass 3"));
        assert!(verdict(&fault_rate, &outcome(Some(1), FAULT_RATE_LINES))
            .unwrap()
            .contains("exit status 0"));
        // tlbi-race: hv's line names the generations and each form's TLBIs
        // hv's rules imply, and its twin passes only on hv's stale-read
        // failure (the first stale read as hv words it), not on another
        // failure or a timeout of L1's wait.
        {
            use hv::nested::tlbi_race::{expected_tlbis, value, Failure, TlbiForm, GENERATIONS};
            let expected = expected_tlbis(GENERATIONS);
            let forms: Vec<String> = TlbiForm::ALL
                .iter()
                .map(|f| format!("{} {}", f.name(), expected[f.index()]))
                .collect();
            let total: u64 = expected.iter().sum();
            assert!(TLBI_RACE_LINES[0].contains(&format!(
                "; {GENERATIONS} generations, each read by L2 after its publication; {total} stage-2 TLBIs from L1's vCPU 0 ({})",
                forms.join(", ")
            )));
            assert!(TLBI_RACE_LINES[1].ends_with(&format!("generations={GENERATIONS} values=ok")));
            let twin = *MATRIX
                .iter()
                .find(|c| c.hv_args == "hv.nested=tlbi-race-no-range-tlbi")
                .unwrap();
            let stale = Failure::Stale {
                stale: 52,
                reads: 4000,
                value: value(2, 0),
                published: 3,
            };
            let line = format!("hv: nested: tlbi-race: FAILED: {stale}");
            assert_eq!(verdict(&twin, &outcome(Some(1), &[&line])), None);
            let other = Failure::Invalidations {
                got: total - expected[TlbiForm::Ripas2e1isTtl.index()],
                expected: total,
            };
            let line = format!("hv: nested: tlbi-race: FAILED: {other}");
            assert!(verdict(&twin, &outcome(Some(1), &[&line])).is_some());
            let no_read = "l1: UMBRA-NESTED-FAIL: vCPU 1's L2 did not read the pages within 5 s of the publication of generation 0x0000000000000003";
            assert!(verdict(&twin, &outcome(Some(2), &[no_read])).is_some());
        }
        // The tight case needs hv's verdict on every pass (each line names
        // the data faults the normal case counts in its window), and the
        // dirty log's line.
        let tight = *MATRIX
            .iter()
            .find(|c| c.hv_args == "hv.nested=fault-rate-tight")
            .unwrap();
        assert_eq!(
            verdict(&tight, &outcome(Some(0), FAULT_RATE_TIGHT_LINES)),
            None
        );
        use hv::nested::fault_rate::{Pass, PAGES};
        for n in 1..=Pass::LAST {
            let data = Pass::from_number(n).unwrap().expected(PAGES).1.faults;
            let line = FAULT_RATE_TIGHT_LINES[n as usize - 1];
            assert!(
                line.contains(&format!(
                    "pass {n} under pressure: ok: preparation exact, {data} data faults exact"
                )),
                "{line}"
            );
        }
        let mut without_dirty_log = FAULT_RATE_TIGHT_LINES.to_vec();
        without_dirty_log.remove(Pass::LAST as usize);
        assert!(verdict(&tight, &outcome(Some(0), &without_dirty_log))
            .unwrap()
            .contains("dirty log"));
        // Its twin fails in pass 2 on every page: the same FAIL line from
        // pass 1 (a service mapping every page to L1 page 0) is not it.
        let no_tlbi = *MATRIX
            .iter()
            .find(|c| c.hv_args == "hv.nested=fault-rate-no-tlbi")
            .unwrap();
        assert_eq!(
            verdict(&no_tlbi, &outcome(Some(2), FAULT_RATE_NO_TLBI_LINES)),
            None
        );
        let fail = FAULT_RATE_NO_TLBI_LINES[2];
        let in_pass_1 = [
            "l1: L1 (fault-rate): wrong values in pass 0x0000000000000001",
            "l1: L1 (fault-rate): pages with a wrong value: 0x00000000000007ff",
            fail,
        ];
        assert!(verdict(&no_tlbi, &outcome(Some(2), &in_pass_1))
            .unwrap()
            .contains("in pass 0x0000000000000002"));
        assert!(verdict(&no_tlbi, &outcome(Some(2), &[fail]))
            .unwrap()
            .contains("expected the line"));
        assert!(verdict(&case, &outcome(None, &[]))
            .unwrap()
            .starts_with("timeout"));
        assert!(verdict(&case, &outcome(Some(1), &["hv: PANIC: at x.rs:1"]))
            .unwrap()
            .starts_with("panic"));
        assert!(verdict(
            &case,
            &outcome(Some(0), &["UMBRA-GUEST-OK cpus=1 online=0"])
        )
        .unwrap()
        .starts_with("wrong marker"));
        assert!(verdict(&case, &outcome(Some(2), &[ok]))
            .unwrap()
            .contains("exit status"));
        assert!(verdict(&case, &outcome(Some(0), &["nothing"]))
            .unwrap()
            .starts_with("no `"));
        let ends = *MATRIX
            .iter()
            .find(|c| matches!(c.expect, Expect::Ends { line, .. } if line.contains("at EL2")))
            .unwrap();
        let line = "hv: error: hv must be entered at EL2 but was entered at EL1";
        assert_eq!(verdict(&ends, &outcome(Some(1), &[line])), None);
        assert!(verdict(&ends, &outcome(Some(0), &[line]))
            .unwrap()
            .contains("exit status"));
        assert!(verdict(&ends, &outcome(Some(1), &["other"]))
            .unwrap()
            .contains("expected the line"));
    }

    #[test]
    fn test_options_and_case_selection() {
        assert_eq!(
            parse_test_options(&[]),
            Ok(TestOptions {
                case: None,
                repeat: 1
            })
        );
        let o = parse_test_options(&args(&["--case", "-smp 4 -m 2G", "--repeat", "20"])).unwrap();
        assert_eq!((o.case.as_deref(), o.repeat), (Some("-smp 4 -m 2G"), 20));
        assert!(parse_test_options(&args(&["--repeat", "0"])).is_err());
        assert!(parse_test_options(&args(&["--repeat"])).is_err());
        assert!(parse_test_options(&args(&["--bogus"])).is_err());
        assert_eq!(select_cases(None).unwrap().len(), MATRIX.len());
        let max4 = select_cases(Some("-cpu max,pauth-impdef=on -smp 4 -m 2G")).unwrap();
        assert_eq!(max4.len(), 1);
        assert_eq!((max4[0].cpu, max4[0].smp, max4[0].memory), (MAX, 4, "2G"));
        assert_eq!(
            select_cases(Some("hv.list-registers=2")).unwrap()[0].hv_args,
            "hv.list-registers=2"
        );
        let none = select_cases(Some("no such case")).unwrap_err();
        assert!(none.contains("-cpu neoverse-n1 -smp 1 -m 512M"), "{none}");
    }

    #[test]
    fn matrix_covers_every_value() {
        for cpu in [MAX, N1] {
            for smp in [1, 4] {
                for memory in ["512M", "2G"] {
                    assert!(MATRIX.iter().any(|c| c.cpu == cpu
                        && c.smp == smp
                        && c.memory == memory
                        && matches!(c.expect, Expect::Marker { .. })));
                }
            }
        }
    }
}
