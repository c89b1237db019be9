//! How `s2walk` and `shadow-replay` end: exit status 2 with one error line
//! on stderr for bad arguments and unreadable files.

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;

/// Exit status for bad arguments and unreadable files.
pub const EXIT_USAGE: u8 = 2;

/// The command's own status, or `tool: error: ...` and [`EXIT_USAGE`].
pub fn finish(tool: &str, result: Result<ExitCode, String>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("{tool}: error: {message}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// `--help`/`--version` print as clap renders them; every other argument
/// error is one line on stderr (clap's first line, without its usage block).
pub fn report_argument_error(tool: &str, error: &clap::Error) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // Into a closed pipe (`tool --help | head -1`): one error line,
            // as for every other write error, rather than a panic.
            let mut out = std::io::stdout().lock();
            match write!(out, "{}", error.render()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{tool}: error: writing the help: {e}");
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
            eprintln!("{tool}: error: {message} (see `{tool} --help`)");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
