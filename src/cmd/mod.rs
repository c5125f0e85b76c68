//! Subcommands: thin orchestration of strategy, sockets, watch, predict and report.

pub mod connect;
pub mod listen;
pub mod probe;

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};

use crate::exit::CliError;
use crate::report::{Format, Report};

/// Write to stdout; a closed pipe (`tcphb ... | head`) is a normal end, not an error.
pub fn print(s: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Write a command's report: to stdout in `format`, except `listen`'s summary in CSV, which goes to
/// stderr as a table because stdout there is one CSV table of events and a summary would break it.
pub fn show(report: &Report, format: Format) -> anyhow::Result<()> {
    match report {
        Report::ListenSummary(_) if format == Format::Csv => {
            say(report.render(Format::Table).trim_end());
            Ok(())
        }
        _ => print(&report.render(format)),
    }
}

/// `compare --svg FILE`: the file is created before anything is measured, so a path that cannot be
/// written fails in a second rather than after the whole comparison, and written once the report
/// is in.
pub struct SvgOut {
    path: std::path::PathBuf,
    file: std::fs::File,
    /// It did not exist before: removed again when nothing is written to it.
    created: bool,
}

impl SvgOut {
    /// Create (or truncate) `path` for writing.
    pub fn create(path: &std::path::Path) -> anyhow::Result<SvgOut> {
        let created = !path.exists();
        let file = std::fs::File::create(path).map_err(|e| {
            anyhow::anyhow!("--svg {}: cannot create the file: {e}", path.display())
        })?;
        Ok(SvgOut {
            path: path.to_path_buf(),
            file,
            created,
        })
    }

    /// Write `report`'s picture (only `compare` has one).
    pub fn write(mut self, report: &Report) -> anyhow::Result<()> {
        let Report::Compare { report, .. } = report else {
            return Ok(());
        };
        let svg = crate::report::svg::compare(report);
        self.file
            .write_all(svg.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| anyhow::anyhow!("--svg {}: cannot write: {e}", self.path.display()))
    }

    /// Nothing to draw (the comparison failed): leave no empty file behind that was not there.
    pub fn discard(self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Progress and status lines go to stderr, and only when a person is watching it.
pub fn progress(s: &str) {
    if std::io::stderr().is_terminal() {
        say(s);
    }
}

/// A line on stderr that can never panic: a closed or full stderr must not end a run that is
/// watching connections (`eprintln!` panics when stderr is gone).
pub fn say(s: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{s}");
}

/// Writes events to stdout from a thread of its own, so a slow reader of stdout (a pager, a full
/// pipe) never stalls the event loop whose timers are being measured. The queue is bounded: when a
/// reader falls that far behind, events are counted as dropped instead of blocking detection.
pub struct EventWriter {
    tx: Option<std::sync::mpsc::SyncSender<String>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dropped: u64,
}

/// Events queued for stdout at most.
const EVENT_QUEUE: usize = 100_000;

impl EventWriter {
    /// Start the writer thread.
    pub fn start() -> EventWriter {
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(EVENT_QUEUE);
        let thread = std::thread::spawn(move || {
            for line in rx {
                if print(&line).is_err() {
                    break;
                }
            }
        });
        EventWriter {
            tx: Some(tx),
            thread: Some(thread),
            dropped: 0,
        }
    }

    /// Queue one event; never blocks.
    pub fn send(&mut self, line: String) {
        if let Some(tx) = &self.tx
            && tx.try_send(line).is_err()
        {
            self.dropped += 1;
        }
    }

    /// Write out what is queued and return how many events had to be dropped.
    pub fn finish(mut self) -> u64 {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.dropped
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

/// Resolve a peer to connect to: as [`resolve`], and port 0 (which no peer listens on) is refused.
pub fn resolve_peer(what: &str) -> Result<Vec<SocketAddr>, CliError> {
    let addrs = resolve(what)?;
    if addrs.iter().all(|a| a.port() == 0) {
        return Err(CliError::Usage(format!(
            "'{what}': port 0 cannot be connected to: write the port the peer listens on"
        )));
    }
    Ok(addrs)
}

/// A connected socket's local address as text (empty where it is not an IP socket).
pub fn local_text(sock: &socket2::Socket) -> std::io::Result<String> {
    Ok(sock
        .local_addr()?
        .as_socket()
        .map(|a| a.to_string())
        .unwrap_or_default())
}

/// A current-thread runtime: one event loop watches every connection of a run.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
