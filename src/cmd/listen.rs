//! `tcphb listen`: accept connections, apply the strategy to each, answer (and with --heartbeat send)
//! pings, print an event per connection that ends, and a summary on Ctrl-C/SIGTERM.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use socket2::SockRef;
use tokio::sync::mpsc;

use crate::cli::ListenArgs;
use crate::detection::{Detection, Outcome};
use crate::exit::{self};
use crate::matrix::mechanism_stats;
use crate::predict::{Expected, predict};
use crate::report::model::{ListenEvent, ListenSummary};
use crate::report::{Finished, Format, Report, SCHEMA};
use crate::scenario::{Fault, Load};
use crate::settings::{Effective, KernelTimers};
use crate::sys;
use crate::watch::{Watch, watch};

/// Run `tcphb listen`; returns the exit code (0, or 3 if any connection was declared dead). Clients
/// that close their connections are what clients do: counted and reported, not an exit code.
pub fn run(args: &ListenArgs, format: Format) -> anyhow::Result<Finished> {
    let strategy = args.strategy.strategy();
    sys::check(&strategy)?;
    let addr = *super::resolve(&args.addr)?
        .first()
        .expect("at least one address");
    let max_conns = crate::limits::ensure_room_for(u64::from(args.max_conns));
    let listener = crate::sockets::listen(addr, args.rcvbuf)?;
    let local = listener.local_addr()?;
    let kernel = sys::kernel_timers();
    let rt = super::runtime()?;
    let opts = Serve {
        local,
        strategy,
        kernel,
        format,
        rst_on_exit: args.rst_on_exit,
        max_conns,
    };
    // The signal handlers are installed inside the runtime, before the banner says we serve.
    rt.block_on(async { serve(listener, opts, sys::shutdown()).await })
}

/// What `serve` needs besides the listener.
pub struct Serve {
    /// The address served (for the banner and the summary).
    pub local: SocketAddr,
    /// Applied to every accepted connection.
    pub strategy: crate::strategy::Strategy,
    pub kernel: KernelTimers,
    pub format: Format,
    /// Reset open connections on exit instead of closing them.
    pub rst_on_exit: bool,
    /// Connections held at most; more are refused.
    pub max_conns: u64,
}

/// Refusals are logged at most once a second, so a flood cannot flood the log too.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(1);

/// Serve `listener` until `shutdown` completes (the binary passes SIGINT/SIGTERM; a test passes
/// its own signal) or stdout can no longer be written, printing an event per ended connection;
/// returns the summary and the exit code.
pub async fn serve(
    listener: std::net::TcpListener,
    o: Serve,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Finished> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    // Each task sends back only what it cannot recompute: the prediction is made here, per event,
    // so a held connection carries no strings.
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<(SocketAddr, Detection, Effective)>();
    let mut summary = ListenSummary {
        schema: SCHEMA,
        local: o.local.to_string(),
        strategy: o.strategy.to_string(),
        ..Default::default()
    };
    let mut samples = Vec::new();
    let mut out = super::EventWriter::start();
    if let Some(h) = o.format.exporter().listen_header() {
        out.send(h);
    }
    let mut open: u64 = 0;
    let mut refused_unlogged: u64 = 0;
    let mut last_refusal_log: Option<Instant> = None;
    tokio::pin!(shutdown);
    // Always said, even in pipes: scripts and tests read the port chosen for port 0 from here. Said
    // only once the loop below is about to run and SIGTERM is handled, so whoever waits for it (the
    // lab's peer, a test) knows that pings are answered from now on.
    super::say(&format!("tcphb: listening on {} ({})", o.local, o.strategy));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            // Whoever read the events is gone (`listen | head`): every later event would be lost
            // without a word, so stop as if shut down; the summary goes to stderr (cmd::show).
            e = out.stopped() => {
                let why = if e.kind() == std::io::ErrorKind::BrokenPipe {
                    "its reader exited".to_string()
                } else {
                    e.to_string()
                };
                super::say(&format!("tcphb: stopping: stdout can no longer be written ({why})"));
                break;
            }
            Some(ev) = ev_rx.recv() => {
                open -= 1;
                record(ev, &o, &mut summary, &mut samples, &mut out);
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of descriptors or a connection aborted before accept: say so, keep serving.
                        super::say(&format!("tcphb: accept failed: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if open >= o.max_conns {
                    // Refuse with RST: no TIME_WAIT left here, and the client learns at once.
                    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    drop(stream);
                    summary.refused += 1;
                    refused_unlogged += 1;
                    if last_refusal_log.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
                        super::say(&format!(
                            "tcphb: refused {refused_unlogged} connection(s) (last from {peer}): already holding --max-conns {}",
                            o.max_conns
                        ));
                        refused_unlogged = 0;
                        last_refusal_log = Some(Instant::now());
                    }
                    continue;
                }
                summary.accepted += 1;
                let effective = match sys::apply(&SockRef::from(&stream), &o.strategy) {
                    Ok(e) => e,
                    Err(e) => {
                        super::say(&format!("tcphb: cannot apply {} to {peer}: {e}", o.strategy));
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                if o.rst_on_exit {
                    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                }
                open += 1;
                let w = Watch { effective, load: Load::Idle, kernel: o.kernel, ping: crate::watch::line() };
                let tx = ev_tx.clone();
                // No stop signal per connection: on shutdown the summary is printed and the runtime,
                // dropped, ends every task; a held connection costs no extra receiver.
                tokio::spawn(async move {
                    let det = watch(stream, &w, Instant::now(), std::future::pending()).await;
                    let _ = tx.send((peer, det, w.effective));
                });
            }
        }
    }
    // Connections that ended as the signal came: their events are in the channel, not lost.
    while let Ok(ev) = ev_rx.try_recv() {
        open -= 1;
        record(ev, &o, &mut summary, &mut samples, &mut out);
    }
    summary.open_at_exit = open;
    if refused_unlogged > 0 {
        super::say(&format!(
            "tcphb: refused {refused_unlogged} connection(s): already holding --max-conns {}",
            o.max_conns
        ));
    }
    summary.events_dropped = out.finish();
    summary.by_mechanism = mechanism_stats(samples);
    let code = if summary.dead > 0 {
        exit::DETECTED
    } else {
        exit::OK
    };
    Ok(Finished {
        report: Report::ListenSummary(summary),
        code,
    })
}

/// Count one ended connection in the summary and print its event (alive ones, ended by shutdown,
/// are neither).
fn record(
    (peer, det, effective): (SocketAddr, Detection, Effective),
    o: &Serve,
    summary: &mut ListenSummary,
    samples: &mut Vec<(String, u64)>,
    out: &mut super::EventWriter,
) {
    // Nothing was cut here: a client's FIN is its own close, not a death.
    let det = det.on_a_live_path();
    match det.outcome {
        Outcome::Dead => summary.dead += 1,
        Outcome::Closed if det.closed_by_tcphb() => summary.closed_by_tcphb += 1,
        Outcome::Closed => summary.closed += 1,
        Outcome::Alive => return,
    }
    if let Some(m) = det.detected_by {
        samples.push((m.name().to_string(), det.silence_ms));
    }
    let prediction = predict(
        &effective,
        Fault::Blackhole,
        Load::Idle,
        &o.kernel,
        Duration::ZERO,
    );
    let event = ListenEvent {
        schema: SCHEMA,
        at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        peer: peer.to_string(),
        expected: Expected::new(&prediction, &det),
        detection: det,
    };
    out.send(o.format.exporter().listen_event(&event));
}
