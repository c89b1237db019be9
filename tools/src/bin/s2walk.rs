//! `s2walk`: translate IPAs through an arm64 stage-2 table held in memory
//! image files, with the Umbra walker, exactly as L0 would walk the table
//! L1 wrote.
//!
//! - `batch`: JSON lines in, JSON lines out (the conformance interface).
//! - `walk`: one IPA, with a human-readable trace of every level.
//! - `dump`: every valid mapping of the table as merged ranges.
//!
//! Exit status: 0 success; 1 a malformed batch line, a faulting `walk` or an
//! incomplete `dump`; 2 bad arguments or unreadable files (one error line).
#![forbid(unsafe_code)]

#[path = "s2walk/batch.rs"]
mod batch;
#[path = "common/cli.rs"]
mod cli;
#[path = "s2walk/dump.rs"]
mod dump;
#[path = "common/json_lines.rs"]
mod json_lines;
#[path = "s2walk/output.rs"]
mod output;
#[path = "s2walk/setup.rs"]
mod setup;
#[path = "s2walk/trace.rs"]
mod trace;

use std::process::ExitCode;

/// Every `--mem` file was readable, every argument valid: the command's own
/// outcome decides the status.
pub type Outcome = Result<ExitCode, String>;

fn main() -> ExitCode {
    let matches = match setup::command().try_get_matches() {
        Ok(matches) => matches,
        Err(error) => return cli::report_argument_error("s2walk", &error),
    };
    let result = match matches.subcommand() {
        Some(("batch", args)) => batch::run(args),
        Some(("walk", args)) => trace::run(args),
        Some(("dump", args)) => dump::run(args),
        // `subcommand_required` makes clap reject anything else.
        _ => Err("a subcommand is required: batch, walk or dump".to_string()),
    };
    cli::finish("s2walk", result)
}
