//! The `tcphb` binary: parse, dispatch, map errors to exit codes; nothing else.

use std::process::ExitCode;

use clap::Parser;
use tcphb::cli::{Cli, Command};
use tcphb::{cmd, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Listen(args) => cmd::listen::run(&args, cli.format),
        Command::Connect(args) => cmd::connect::run(&args, cli.format),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // One line: every context joined by ": ".
            eprintln!("tcphb: error: {err:#}");
            ExitCode::from(exit::code_for(&err))
        }
    }
}
