//! `shadow-replay`: replay a trace of nested-MMU events (L2 faults, L1's
//! descriptor writes and TLBIs, L0's changes of its map of L1) through the
//! real shadow-mmu `Service` on the host, one JSON line in and one out per
//! event; `--check` compares every answer with a fresh walk composed with
//! L0's map, and reports those no TLB could hold.
//!
//! Exit status: 0 success; 1 a malformed line or a failed check; 2 bad
//! arguments or unreadable files (one error line).
#![forbid(unsafe_code)]

#[path = "shadow_replay/args.rs"]
mod args;
#[path = "shadow_replay/events.rs"]
mod events;
#[path = "shadow_replay/json.rs"]
mod json;
#[path = "common/json_lines.rs"]
mod json_lines;
#[path = "shadow_replay/l0.rs"]
mod l0;
#[path = "shadow_replay/memory.rs"]
mod memory;
#[path = "shadow_replay/oracle.rs"]
mod oracle;
#[path = "shadow_replay/replay.rs"]
mod replay;
// s2walk's machine setup (ID registers, --mem files): one loader for both
// tools. Its subcommand definitions are s2walk's own and unused here.
#[path = "s2walk/setup.rs"]
#[allow(dead_code)]
mod s2walk_setup;

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;

/// Exit status for bad arguments and unreadable files.
const EXIT_USAGE: u8 = 2;

fn run(matches: &clap::ArgMatches) -> Result<ExitCode, String> {
    let options = args::Options::from_matches(matches)?;
    let mut storage = Vec::new();
    let memslots = options.machine.memslots(&mut storage)?;
    let l0 = replay::initial_l0(&options, &memslots)?;
    let mut session = replay::Session::new(&options, memslots, &l0)?;
    let all_good = replay::serve(&mut session, std::io::stdin(), std::io::stdout().lock())
        .map_err(|e| format!("I/O: {e}"))?;
    Ok(if all_good {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    let matches = match args::command().try_get_matches() {
        Ok(matches) => matches,
        Err(error) => return report_argument_error(&error),
    };
    match run(&matches) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("shadow-replay: error: {message}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `--help`/`--version` print as clap renders them; every other argument
/// error is one line on stderr (clap's message without its usage block).
fn report_argument_error(error: &clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let mut out = std::io::stdout().lock();
            match write!(out, "{}", error.render()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("shadow-replay: error: writing the help: {e}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        _ => {
            let rendered = error.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            let message = message.join(" ");
            let message = message.strip_prefix("error: ").unwrap_or(&message);
            eprintln!("shadow-replay: error: {message} (see `shadow-replay --help`)");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
