//! `cargo xtask test`: every test, in the order that fails fastest.

use crate::{run_command, workspace_root};
use std::process::Command;
use std::time::Instant;

/// loom explores every interleaving up to this many preemptions per thread;
/// 2 finds the classic ordering bugs while keeping CI within its budget.
const LOOM_MAX_PREEMPTIONS: &str = "2";

pub fn run(args: &[String]) -> Result<(), String> {
    if let Some(extra) = args.first() {
        return Err(format!("`test` takes no arguments (got `{extra}`)"));
    }
    let root = workspace_root();
    let host_cargo = || {
        let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        c.current_dir(&root);
        c
    };
    let started = Instant::now();
    step("formatting", || {
        run_command(host_cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    step("clippy (host, all targets)", || {
        run_command(host_cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    // The host tests include s2walk's differential test against QEMU.
    step("installing QEMU", crate::setup::qemu)?;
    step("host tests", || {
        run_command(host_cargo().args(["test", "--workspace"]))
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
        run_command(loom_cargo().args([
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
        ]))
    })?;
    step("loom models", || {
        run_command(
            loom_cargo()
                .env("LOOM_MAX_PREEMPTIONS", LOOM_MAX_PREEMPTIONS)
                .args(["test", "--release", "--package", "loom-tests"]),
        )
    })?;
    step(
        "hv on QEMU (boot matrix and failure modes)",
        crate::hv::test,
    )?;
    println!(
        "xtask: every test passed in {:.0} s",
        started.elapsed().as_secs_f64()
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
