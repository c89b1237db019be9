//! `cargo xtask`: the project driver. `run` is the main job, `test` runs every
//! test; both install what they need on first use (see `setup`).
#![forbid(unsafe_code)]

mod guest;
mod hv;
mod qemu;
mod setup;
mod supervise;
mod test;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  run [hv options]   boot hv on QEMU: the nested demo (a guest hypervisor and its
                     guest on the shadow-mmu service); --linux for the Linux guest
  test               run every test: fmt, clippy, host tests, loom models, QEMU boots
  build-hv           build the hv image for aarch64-unknown-none
  hv-test [options]  only the QEMU boot matrix of hv (also part of `test`);
                     --case TEXT --repeat N boots matching cases N times
  setup              install the toolchain and packages the other commands need
";

fn main() -> ExitCode {
    supervise::stop_children_on_signals();
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
        "hv-test" => hv::test_command(rest),
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

/// Writes `path` so that readers see the old file or all of `data`, never
/// a part: the data goes to a temporary file beside it (per process, so two
/// drivers in one checkout do not mix), which is synced and renamed. The
/// temporary name ends in `~`, which apt ignores should one be left behind.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<(), String> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(format!(".{}~", std::process::id()));
    let temp = PathBuf::from(temp);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        format!("cannot write {}: {e}", path.display())
    })
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
