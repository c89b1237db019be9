//! `cargo xtask`: the project driver. `run` is the main job, `test` runs every
//! test; both install what they need on first use (see `setup`).
#![forbid(unsafe_code)]

mod guest;
mod hv;
mod qemu;
mod setup;
mod test;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  run [hv options]   boot hv on QEMU with a guest (the main job)
  test               run every test: fmt, clippy, host tests, loom models, QEMU boots
  build-hv           build the hv image for aarch64-unknown-none
  hv-test            only the QEMU boot matrix of hv (also part of `test`)
  setup              install the toolchain and packages the other commands need
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match command.as_str() {
        "run" => hv::run(rest),
        "test" => test::run(rest),
        "build-hv" => hv::build(rest).map(|image| {
            println!("xtask: hv image at {}", image.display());
        }),
        "hv-test" => hv::test(),
        "setup" => setup::all(),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of tools/).
pub fn workspace_root() -> PathBuf {
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    tools
        .parent()
        .expect("tools/ has a parent directory")
        .to_path_buf()
}

/// Runs a command to completion, echoing it first; an error names the command.
pub fn run_command(command: &mut Command) -> Result<(), String> {
    println!("xtask: $ {}", describe(command));
    let status = command
        .status()
        .map_err(|e| format!("cannot start `{}`: {e}", describe(command)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", describe(command)))
    }
}

/// A command as a shell-like line, for messages.
pub fn describe(command: &Command) -> String {
    let mut line = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}
