//! Subcommands: thin orchestration of strategy, sockopt, watch, predict and report.

pub mod connect;
pub mod listen;
pub mod probe;

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};

use crate::exit::CliError;

/// Write to stdout; a closed pipe (`tcphb ... | head`) is a normal end, not an error.
pub fn print(s: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Progress and status lines go to stderr, and only when a person is watching it.
pub fn progress(s: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("{s}");
    }
}

/// Resolve HOST:PORT, refusing with a usage error that says what to write.
pub fn resolve(what: &str) -> Result<Vec<SocketAddr>, CliError> {
    if let Ok(a) = what.parse::<SocketAddr>() {
        return Ok(vec![a]);
    }
    if !what.contains(':') {
        return Err(CliError::Usage(format!(
            "'{what}' has no port: write HOST:PORT, e.g. 127.0.0.1:7878 or [::1]:7878"
        )));
    }
    let addrs: Vec<SocketAddr> = what
        .to_socket_addrs()
        .map_err(|e| {
            CliError::Usage(format!(
                "cannot resolve '{what}': {e}: check the host name and port"
            ))
        })?
        .collect();
    if addrs.is_empty() {
        return Err(CliError::Usage(format!(
            "'{what}' resolves to no address: check the host name"
        )));
    }
    Ok(addrs)
}

/// A current-thread runtime: one event loop watches every connection of a run.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
