//! Building hv for aarch64-unknown-none and booting it on QEMU.

use crate::{run_command, setup, workspace_root};
use std::path::PathBuf;
use std::process::Command;

/// Builds hv with Debian's toolchain (core and alloc built from source; the
/// target dir is separate so the host toolchain's artifacts never mix in).
pub fn build(_args: &[String]) -> Result<PathBuf, String> {
    setup::aarch64_toolchain()?;
    let root = workspace_root();
    let target_dir = root.join("target").join("aarch64");
    let mut command = Command::new("/usr/bin/cargo");
    command
        .current_dir(&root)
        .env("RUSTC", "/usr/bin/rustc")
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .args([
            "build",
            "--release",
            "--package",
            "hv",
            "--bin",
            "hv",
            "--target",
            "aarch64-unknown-none",
            "-Zbuild-std=core,alloc,compiler_builtins",
            "-Zbuild-std-features=compiler-builtins-mem",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    run_command(&mut command)?;
    Ok(target_dir.join("aarch64-unknown-none/release/hv"))
}

pub fn run(args: &[String]) -> Result<(), String> {
    let _image = build(args)?;
    setup::qemu()?;
    Err("booting hv on QEMU is not built yet (issue 5)".into())
}
