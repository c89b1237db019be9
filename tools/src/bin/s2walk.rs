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

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;

/// Every `--mem` file was readable, every argument valid: the command's own
/// outcome decides the status.
pub type Outcome = Result<ExitCode, String>;

/// Exit status for bad arguments and unreadable files.
pub const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let matches = match setup::command().try_get_matches() {
        Ok(matches) => matches,
        Err(error) => return report_argument_error(&error),
    };
    let result = match matches.subcommand() {
        Some(("batch", args)) => batch::run(args),
        Some(("walk", args)) => trace::run(args),
        Some(("dump", args)) => dump::run(args),
        // `subcommand_required` makes clap reject anything else.
        _ => Err("a subcommand is required: batch, walk or dump".to_string()),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("s2walk: error: {message}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `--help`/`--version` print as clap renders them; every other argument
/// error is one line on stderr (clap's first line, without its usage block).
fn report_argument_error(error: &clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // Into a closed pipe (`s2walk --help | head -1`): one error
            // line, as for every other write error, rather than a panic.
            let mut out = std::io::stdout().lock();
            match write!(out, "{}", error.render()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("s2walk: error: writing the help: {e}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{}", error.render());
            ExitCode::from(EXIT_USAGE)
        }
        _ => {
            // clap's message is the text before its first blank line (a
            // list of missing arguments continues on indented lines).
            let rendered = error.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            let message = message.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("s2walk: error: {message} (see `s2walk --help`)");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
