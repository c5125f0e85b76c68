//! The `tcphb` binary: parse, dispatch, map errors to exit codes; nothing else.

use std::process::ExitCode;

use clap::Parser;
use tcphb::cli::{Cli, Command};
use tcphb::{cmd, exit};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version: print as clap formats them; a closed pipe is not an error.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // Bare `tcphb`: the usage and the subcommands, in full (folded into one line it said only
            // the tagline), on stderr because nothing was asked for; a usage error all the same.
            cmd::say(e.render().to_string().trim_end());
            return ExitCode::from(exit::USAGE);
        }
        Err(e) => {
            eprintln!("tcphb: {}", one_line(&e.render().to_string()));
            return ExitCode::from(exit::USAGE);
        }
    };
    // compare --svg: created before the lab is built, written after the report is printed.
    let mut svg = None;
    let result = match cli.command {
        Command::Listen(args) => cmd::listen::run(&args, cli.format),
        Command::Connect(args) => cmd::connect::run(&args),
        Command::Compare(args) => {
            match args.svg.as_deref().map(cmd::SvgOut::create).transpose() {
                Ok(s) => svg = s,
                Err(e) => {
                    eprintln!("tcphb: error: {e:#}");
                    return ExitCode::from(exit::ERROR);
                }
            }
            if let Err(code) = enter_lab() {
                if let Some(out) = svg.take() {
                    out.discard();
                }
                return code;
            }
            tcphb::sys::compare(&args)
        }
        Command::Audit(args) => cmd::audit::run(&args, cli.format),
        Command::Probe(args) => {
            // --verify builds the lab, as compare does.
            if args.verify
                && let Err(code) = enter_lab()
            {
                return code;
            }
            cmd::probe::run(&args)
        }
    };
    let result = result.and_then(|f| {
        cmd::show(&f.report, cli.format)?;
        if let Some(out) = svg.take() {
            out.write(&f.report)?;
        }
        Ok(f.code)
    });
    if let Some(out) = svg {
        out.discard();
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // One line: every context joined by ": ".
            eprintln!("tcphb: error: {err:#}");
            ExitCode::from(exit::code_for(&err))
        }
    }
}

/// Enter the lab's privileges while the process is still single-threaded: the only moment an
/// unprivileged user namespace can be entered. On failure, its one error line and exit code.
fn enter_lab() -> Result<(), ExitCode> {
    tcphb::sys::enter_lab().map_err(|(message, code)| {
        eprintln!("tcphb: error: {message}");
        ExitCode::from(code)
    })
}

/// Fold clap's multi-line usage error into one line: its message and the names it lists, without the
/// usage block, plus where to read more.
fn one_line(rendered: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for line in rendered.lines() {
        let line = line.trim();
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line);
        }
    }
    format!("{} (see 'tcphb --help')", parts.join(" "))
}
