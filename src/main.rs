//! The `threadsd` binary: parses the command line and maps failures to exit codes
//! (64 usage, 78 configuration; see `cli::exit`).

use std::process::ExitCode;

use clap::Parser;
use threadsd::cli::{Cli, exit};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            // Printing help or a usage error to the terminal cannot usefully fail.
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match threadsd::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("threadsd: {e}");
            e.exit_code()
        }
    }
}
