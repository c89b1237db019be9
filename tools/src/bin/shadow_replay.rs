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
#[path = "common/cli.rs"]
mod cli;
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

use std::process::ExitCode;

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
        Err(error) => return cli::report_argument_error("shadow-replay", &error),
    };
    cli::finish("shadow-replay", run(&matches))
}
