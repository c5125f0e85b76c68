//! Subcommands: thin orchestration of strategy, sockets, watch, predict and report.

pub mod audit;
pub mod connect;
pub mod listen;
pub mod probe;

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::exit::CliError;
use crate::report::{Format, Report};

/// Set once a write to stdout found its reader gone (`tcphb listen | head`): whatever comes later
/// has nowhere to go there.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Write to stdout, and say whether its reader has gone: the one place stdout is written.
fn write_stdout(s: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let r = out.write_all(s.as_bytes()).and_then(|_| out.flush());
    if matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe) {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
    r
}

/// Write to stdout; a closed pipe (`tcphb ... | head`) is a normal end, not an error.
pub fn print(s: &str) -> anyhow::Result<()> {
    match write_stdout(s) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Write a command's report: to stdout in `format`, except `listen`'s summary in CSV, which goes to
/// stderr as a table because stdout there is one CSV table of events and a summary would break it,
/// and `listen`'s summary once stdout's reader has gone (it stopped because of that), which goes
/// to stderr as a table so that it is still seen.
pub fn show(report: &Report, format: Format) -> anyhow::Result<()> {
    match report {
        Report::ListenSummary(_) | Report::AuditWatch(_)
            if format == Format::Csv || STDOUT_CLOSED.load(Ordering::Relaxed) =>
        {
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
///
/// When stdout cannot be written any more — its reader exited (`tcphb listen | head -n 1`), or an
/// I/O error — the writer stops and [`EventWriter::stopped`] completes: every later event would be
/// lost without a word, so `listen` ends as if shut down instead of serving on for nobody.
pub struct EventWriter {
    tx: Option<std::sync::mpsc::SyncSender<String>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dropped: u64,
    /// Notified (once) when the writer gave up on stdout.
    stopped: Arc<tokio::sync::Notify>,
    /// Why it gave up.
    failure: Arc<std::sync::Mutex<Option<std::io::Error>>>,
}

/// Events queued for stdout at most.
const EVENT_QUEUE: usize = 100_000;

impl EventWriter {
    /// Start the writer thread.
    pub fn start() -> EventWriter {
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(EVENT_QUEUE);
        let stopped = Arc::new(tokio::sync::Notify::new());
        let failure = Arc::new(std::sync::Mutex::new(None));
        let (notify, why) = (Arc::clone(&stopped), Arc::clone(&failure));
        let thread = std::thread::spawn(move || {
            for line in rx {
                if let Err(e) = write_stdout(&line) {
                    *why.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    // A permit is kept if nobody is waiting yet: the loop sees it on its next turn.
                    notify.notify_one();
                    break;
                }
            }
        });
        EventWriter {
            tx: Some(tx),
            thread: Some(thread),
            dropped: 0,
            stopped,
            failure,
        }
    }

    /// Completes when stdout can no longer be written, with what the write failed with; pending as
    /// long as it can. Cancel-safe: a `select!` may drop it and call it again.
    pub async fn stopped(&self) -> std::io::Error {
        loop {
            self.stopped.notified().await;
            if let Some(e) = self
                .failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
            {
                return e;
            }
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

/// How `connect` and `probe` speak the heartbeat (`--ping`, `--path`, `--tls`): the protocol is set
/// on the strategy's heartbeat (so its spec says it: `hb=1s,3/redis`), TLS is configured for the
/// host `peer` names. Usage errors say what to write instead.
pub fn ping_setup(
    peer: &str,
    args: &crate::cli::PingArgs,
    strategy: &mut crate::strategy::Strategy,
    load: crate::scenario::Load,
    needs_heartbeat: bool,
) -> Result<std::sync::Arc<crate::ping::Setup>, CliError> {
    use crate::ping::tls::{self, Trust};
    use crate::strategy::Protocol;
    let protocol = match (&mut strategy.heartbeat, args.protocol) {
        (None, Protocol::Line) => Protocol::Line,
        (None, p) if !needs_heartbeat => p,
        (None, p) => {
            return Err(CliError::Usage(format!(
                "--ping {p} needs --heartbeat INTERVAL,MISSES: it says how often to ping (e.g. --heartbeat 1s,3 --ping {p})"
            )));
        }
        (Some(h), p) => {
            if p != Protocol::Line && h.protocol != Protocol::Line && h.protocol != p {
                return Err(CliError::Usage(format!(
                    "--heartbeat says {} and --ping says {p}: give the protocol once",
                    h.protocol
                )));
            }
            if p != Protocol::Line {
                h.protocol = p;
            }
            h.protocol
        }
    };
    if protocol != Protocol::Line && load == crate::scenario::Load::Busy {
        return Err(CliError::Usage(format!(
            "--load busy writes tcphb's DATA lines, which a {protocol} server would take for requests: use --load idle with --ping {protocol}"
        )));
    }
    let authority = peer.to_string();
    let setup_tls = if args.tls {
        // The host as written, without the port: the name sent by SNI and checked on the certificate.
        let host = peer.rsplit_once(':').map_or(peer, |(h, _)| h);
        let trust = match (&args.ca, args.insecure) {
            (_, true) => Trust::Insecure,
            (Some(f), false) => Trust::CaFile(f),
            (None, false) => Trust::System,
        };
        Some(tls::setup(host, trust, protocol).map_err(CliError::Usage)?)
    } else {
        None
    };
    let (interval, misses) = strategy
        .heartbeat
        .map_or((std::time::Duration::ZERO, 0), |h| (h.interval, h.misses));
    Ok(std::sync::Arc::new(crate::ping::Setup {
        protocol,
        options: crate::ping::Options {
            path: args.path.clone(),
            authority,
            interval,
            misses,
        },
        tls: setup_tls,
    }))
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

/// Ctrl-C or SIGTERM during a measurement, as a flag: a run checks it between steps and awaits it
/// in its event loop, then reports what it measured before the signal as partial (exit 130).
#[derive(Clone)]
pub struct Interrupt(tokio::sync::watch::Receiver<bool>);

impl Interrupt {
    /// Install the handlers now, on `rt`: a signal that comes while nothing runs on the runtime (labs
    /// being built, connections being opened) is kept, not lost.
    pub fn install(rt: &tokio::runtime::Runtime) -> Interrupt {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let _in_runtime = rt.enter();
        let signal = crate::sys::shutdown();
        rt.spawn(async move {
            signal.await;
            let _ = tx.send(true);
        });
        Interrupt(rx)
    }

    /// Whether a signal came, from outside the runtime: the handler task runs only while the runtime
    /// does, so it is let run first.
    pub fn seen(&self, rt: &tokio::runtime::Runtime) -> bool {
        rt.block_on(tokio::task::yield_now());
        self.raised()
    }

    /// Whether a signal came (as far as the handler task has run).
    pub fn raised(&self) -> bool {
        *self.0.borrow()
    }

    /// Completes when a signal comes.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|i| *i).await;
    }
}
