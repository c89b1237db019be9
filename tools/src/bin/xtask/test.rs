//! `cargo xtask test`: every test, in the order that fails fastest.

use crate::supervise::run_within;
use crate::workspace_root;
use std::cell::Cell;
use std::process::Command;
use std::time::{Duration, Instant};

/// loom explores every interleaving up to this many preemptions per thread;
/// 2 finds the classic ordering bugs while keeping CI within its budget.
const LOOM_MAX_PREEMPTIONS: &str = "2";

const MINUTE: u64 = 60;

/// Time limits, each well over what its step took in a clean clone's CI run
/// on the 2-core machine (seconds, stop 31: clippy ~130, host tests 484,
/// loom clippy 35, loom models 253, QEMU matrix with the hv build 276; the
/// whole run 1077-1158), so that a hang reaches them, not a cold cache or a
/// busy machine; [`TOTAL_LIMIT`] caps them all. A step past its limit is
/// killed with everything it started, and named in the error.
const FORMAT_LIMIT: Duration = Duration::from_secs(2 * MINUTE);
const CLIPPY_LIMIT: Duration = Duration::from_secs(10 * MINUTE);
const HOST_TESTS_LIMIT: Duration = Duration::from_secs(20 * MINUTE);
const LOOM_CLIPPY_LIMIT: Duration = Duration::from_secs(5 * MINUTE);
const LOOM_MODELS_LIMIT: Duration = Duration::from_secs(12 * MINUTE);
const QEMU_MATRIX_LIMIT: Duration = Duration::from_secs(12 * MINUTE);

/// All the limited steps together: CI allows the whole command 30 minutes.
/// First-time installs and downloads run outside the limits and do not
/// count against this either (see [`TimeBudget`]).
const TOTAL_LIMIT: Duration = Duration::from_secs(27 * MINUTE);

/// The time a step may take: its own limit, cut to what is left of the total.
fn step_limit(own: Duration, total_used: Duration) -> Result<Duration, String> {
    match TOTAL_LIMIT.checked_sub(total_used) {
        Some(left) if !left.is_zero() => Ok(own.min(left)),
        _ => Err(format!(
            "the test run used up its total time limit of {} min",
            TOTAL_LIMIT.as_secs() / 60
        )),
    }
}

/// The time the limited steps have used, which alone counts against
/// [`TOTAL_LIMIT`]: what runs between them (installing QEMU, the toolchain,
/// fetching the guest) is not charged.
#[derive(Default)]
struct TimeBudget {
    used: Cell<Duration>,
}

impl TimeBudget {
    /// Runs `command` within its own limit cut to what is left of the
    /// total, and charges the time it took.
    fn run_limited(&self, command: &mut Command, own: Duration) -> Result<(), String> {
        let limit = step_limit(own, self.used.get())?;
        let started = Instant::now();
        let result = run_within(command, limit);
        self.used
            .set(self.used.get().saturating_add(started.elapsed()));
        result
    }
}

pub fn run(args: &[String]) -> Result<(), String> {
    if let Some(extra) = args.first() {
        return Err(format!("`test` takes no arguments (got `{extra}`)"));
    }
    let started = Instant::now();
    let budget = TimeBudget::default();
    let limited = |command: &mut Command, own: Duration| budget.run_limited(command, own);
    let root = workspace_root();
    let host_cargo = || {
        let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        c.current_dir(&root);
        c
    };
    step("formatting", || {
        limited(
            host_cargo().args(["fmt", "--all", "--", "--check"]),
            FORMAT_LIMIT,
        )?;
        // The test guest's VMM is its own workspace (aarch64 only).
        limited(
            host_cargo().args([
                "fmt",
                "--manifest-path",
                crate::hv::KVM_VMM_MANIFEST,
                "--",
                "--check",
            ]),
            FORMAT_LIMIT,
        )
    })?;
    step("clippy (host, all targets)", || {
        limited(
            host_cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
            CLIPPY_LIMIT,
        )?;
        // The test guest's VMM runs on aarch64 Linux only, but its Rust is
        // target-neutral (its assembly, global_asm!, is not assembled by a
        // check): linted for the host, where this clippy is (Debian's
        // toolchain, which builds it, has none). Unwinding needs std.
        limited(
            host_cargo().args([
                "clippy",
                "--manifest-path",
                crate::hv::KVM_VMM_MANIFEST,
                "--config",
                "profile.dev.panic=\"abort\"",
                "--target-dir",
                "target/kvm-vmm-host",
                "--",
                "-D",
                "warnings",
            ]),
            CLIPPY_LIMIT,
        )
    })?;
    // The host tests include s2walk's differential test against QEMU.
    step("installing QEMU", crate::setup::qemu)?;
    step("host tests", || {
        limited(host_cargo().args(["test", "--workspace"]), HOST_TESTS_LIMIT)
    })?;
    // The loom configuration is other code (the cfg shims' loom side, and
    // every model file is `#![cfg(loom)]`): lint it too.
    let loom_cargo = || {
        let mut c = host_cargo();
        // crossbeam-epoch switches to loom under its own cfg.
        c.env("RUSTFLAGS", "--cfg loom --cfg crossbeam_loom")
            .env("CARGO_TARGET_DIR", root.join("target").join("loom"));
        c
    };
    step("clippy (loom configuration)", || {
        limited(
            loom_cargo().args([
                "clippy",
                "--package",
                "walker",
                "--package",
                "ipc",
                "--package",
                "shadow-mmu",
                "--package",
                "loom-tests",
                "--package",
                "hv",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
            LOOM_CLIPPY_LIMIT,
        )
    })?;
    step("loom models", || {
        limited(
            loom_cargo()
                .env("LOOM_MAX_PREEMPTIONS", LOOM_MAX_PREEMPTIONS)
                .args(["test", "--release", "--package", "loom-tests"]),
            LOOM_MODELS_LIMIT,
        )
    })?;
    // First-time installs and downloads are not hangs: outside the limit.
    step("installing the aarch64 toolchain and the guest", || {
        crate::setup::aarch64_toolchain()?;
        crate::guest::default_guest().map(drop)
    })?;

    // `cargo xtask hv-test` as a child, so that its limit covers the hv
    // build and every boot, and a stop takes its QEMU along.
    step("hv on QEMU (boot matrix and failure modes)", || {
        let xtask =
            std::env::current_exe().map_err(|e| format!("cannot find the running xtask: {e}"))?;
        limited(
            Command::new(xtask).current_dir(&root).arg("hv-test"),
            QEMU_MATRIX_LIMIT,
        )
    })?;
    println!(
        "xtask: every test passed in {:.0} s ({:.0} s in the limited steps)",
        started.elapsed().as_secs_f64(),
        budget.used.get().as_secs_f64()
    );
    Ok(())
}

fn step(name: &str, body: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    println!("xtask: == {name}");
    let started = Instant::now();
    let result = body();
    println!(
        "xtask: == {name}: {} in {:.0} s",
        if result.is_ok() { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    result.map_err(|e| format!("{name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_limits_fit_the_total() {
        assert_eq!(
            step_limit(HOST_TESTS_LIMIT, Duration::ZERO),
            Ok(HOST_TESTS_LIMIT)
        );
        let minute = Duration::from_secs(MINUTE);
        assert_eq!(
            step_limit(HOST_TESTS_LIMIT, TOTAL_LIMIT - minute),
            Ok(minute)
        );
        for used in [TOTAL_LIMIT, TOTAL_LIMIT + minute, Duration::MAX] {
            assert_eq!(
                step_limit(FORMAT_LIMIT, used),
                Err("the test run used up its total time limit of 27 min".into())
            );
        }
        // Generous: each limit is at least twice the step's slowest run in
        // a clean clone's CI (stop 31); the total stays under CI's 30
        // minutes.
        for (limit, slowest_seconds) in [
            (FORMAT_LIMIT, 3),
            (CLIPPY_LIMIT, 130),
            (HOST_TESTS_LIMIT, 484),
            (LOOM_CLIPPY_LIMIT, 35),
            (LOOM_MODELS_LIMIT, 253),
            (QEMU_MATRIX_LIMIT, 276),
        ] {
            assert!(limit >= Duration::from_secs(2 * slowest_seconds));
        }
        assert!(TOTAL_LIMIT < 30 * minute);
    }

    /// A package with `autotests = false` (its test files are modules of
    /// one test crate, built and linked once) runs only the `[[test]]`
    /// targets its Cargo.toml lists: a file in its tests/ that is neither
    /// such a target's root nor a module declared in one would never run.
    #[test]
    fn every_test_file_is_built() {
        let read = |path: &std::path::Path| {
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let mut files_checked = 0;
        for entry in std::fs::read_dir(workspace_root()).expect("the workspace") {
            let package = entry.expect("a directory entry").path();
            let manifest_path = package.join("Cargo.toml");
            if !manifest_path.is_file() || !read(&manifest_path).contains("\nautotests = false\n") {
                continue;
            }
            let manifest = read(&manifest_path);
            let tests = package.join("tests");
            let targets: Vec<&str> = manifest
                .lines()
                .filter_map(|l| l.strip_prefix("path = \"tests/")?.strip_suffix(".rs\""))
                .collect();
            let roots: Vec<String> = targets
                .iter()
                .map(|t| read(&tests.join(format!("{t}.rs"))))
                .collect();
            for file in std::fs::read_dir(&tests).expect("tests/") {
                let file = file.expect("a directory entry").path();
                let Some(stem) = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".rs"))
                else {
                    continue;
                };
                let declared = format!("mod {stem};");
                assert!(
                    targets.contains(&stem)
                        || roots.iter().any(|r| r.lines().any(|l| l == declared)),
                    "{} is in no test target: declare `{declared}` in one of {targets:?} \
                     (or list it as a [[test]] in Cargo.toml)",
                    file.display()
                );
                files_checked += 1;
            }
        }
        // shadow-mmu alone has over 50.
        assert!(files_checked > 50, "only {files_checked} test files found");
    }

    /// T3: time spent outside the limited steps (a first-time install) is
    /// not charged; time inside them is, and cuts the next step's limit.
    #[test]
    fn only_the_limited_steps_count_against_the_total() {
        let budget = TimeBudget::default();
        budget.used.set(TOTAL_LIMIT - Duration::from_secs(1));
        // An install that takes longer than what is left of the total.
        std::thread::sleep(Duration::from_millis(1500));
        budget
            .run_limited(&mut Command::new("true"), FORMAT_LIMIT)
            .expect("an install outside the limits was charged");
        assert!(budget.used.get() < TOTAL_LIMIT);
        let started = Instant::now();
        let error = budget
            .run_limited(Command::new("sleep").arg("30"), FORMAT_LIMIT)
            .unwrap_err();
        assert!(
            error.contains("still ran after its time limit of"),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(budget.used.get() >= TOTAL_LIMIT);
        assert_eq!(
            budget.run_limited(&mut Command::new("true"), FORMAT_LIMIT),
            Err("the test run used up its total time limit of 27 min".into())
        );
    }
}
