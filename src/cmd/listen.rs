//! `tcphb listen`: accept connections, apply the strategy to each, answer (and with --heartbeat send)
//! pings, print an event per connection that ends, and a summary on Ctrl-C/SIGTERM.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::sync::{mpsc, watch as stop_channel};

use crate::cli::ListenArgs;
use crate::detection::{Detection, Outcome};
use crate::exit::{self, CliError};
use crate::predict::predict;
use crate::report::{
    Expected, Format, ListenEvent, ListenSummary, SCHEMA, mechanism_stats, render_event,
    render_listen_summary,
};
use crate::scenario::{Fault, Load};
use crate::sockopt::{self, KernelTimers};
use crate::watch::{Watch, watch};
use crate::{signals, tcpinfo};

/// Run `tcphb listen`; returns the exit code (0, or 3 if any connection was declared dead).
pub fn run(args: &ListenArgs, format: Format) -> anyhow::Result<u8> {
    let strategy = args.strategy.strategy();
    sockopt::validate(&strategy)?;
    let addr = *super::resolve(&args.addr)?
        .first()
        .expect("at least one address");
    let listener = bind(addr)?;
    let local = listener.local_addr()?;
    // Always said, even in pipes: scripts and tests read the port chosen for port 0 from here.
    eprintln!("tcphb: listening on {local} ({strategy})");
    let kernel = KernelTimers::read();
    let rt = super::runtime()?;
    rt.block_on(serve(
        listener,
        local,
        strategy,
        kernel,
        format,
        args.rst_on_exit,
    ))
}

fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .context("cannot create a TCP socket")?;
    // Let a restarted listen reuse a port whose old connections linger in TIME_WAIT.
    #[cfg(unix)]
    sock.set_reuse_address(true)?;
    if let Err(e) = sock.bind(&addr.into()) {
        return Err(match e.kind() {
            io::ErrorKind::AddrInUse => CliError::Usage(format!(
                "address {addr} is already in use: pick another port (or 0 for any) or stop what listens there"
            ))
            .into(),
            io::ErrorKind::AddrNotAvailable => CliError::Usage(format!(
                "address {addr} is not an address of this host: use one of its addresses or 0.0.0.0"
            ))
            .into(),
            io::ErrorKind::PermissionDenied => CliError::Environment(format!(
                "not allowed to listen on {addr}: ports below 1024 need privilege; use a higher port"
            ))
            .into(),
            _ => anyhow::Error::new(e).context(format!("cannot bind {addr}")),
        });
    }
    sock.listen(4096)
        .with_context(|| format!("cannot listen on {addr}"))?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

async fn serve(
    listener: std::net::TcpListener,
    local: SocketAddr,
    strategy: crate::strategy::Strategy,
    kernel: KernelTimers,
    format: Format,
    rst_on_exit: bool,
) -> anyhow::Result<u8> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (stop_tx, stop_rx) = stop_channel::channel(false);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<(SocketAddr, Detection, Expected)>();
    let mut summary = ListenSummary {
        schema: SCHEMA,
        local: local.to_string(),
        strategy: strategy.to_string(),
        ..Default::default()
    };
    let mut samples = Vec::new();
    let shutdown = signals::shutdown();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some((peer, det, expected)) = ev_rx.recv() => {
                match det.outcome {
                    Outcome::Dead => summary.dead += 1,
                    Outcome::Closed => summary.closed += 1,
                    Outcome::Alive => continue,
                }
                if let Some(m) = det.detected_by {
                    samples.push((m.name().to_string(), det.silence_ms));
                }
                let event = ListenEvent {
                    schema: SCHEMA,
                    at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                    peer: peer.to_string(),
                    detection: det,
                    expected,
                };
                super::print(&render_event(&event, format))?;
            }
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of descriptors or a connection aborted before accept: say so, keep serving.
                        eprintln!("tcphb: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                summary.accepted += 1;
                let effective = match sockopt::apply(&SockRef::from(&stream), &strategy) {
                    Ok(e) => e,
                    Err(e) => {
                        eprintln!("tcphb: cannot apply {strategy} to {peer}: {e}");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                if rst_on_exit {
                    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                }
                let rtt = tcpinfo::read(&stream).map_or(Duration::ZERO, |i| Duration::from_micros(i.rtt_us.into()));
                let prediction = predict(&effective, Fault::Blackhole, Load::Idle, &kernel, rtt);
                let w = Watch { effective, load: Load::Idle, kernel };
                let mut stop = stop_rx.clone();
                let tx = ev_tx.clone();
                tokio::spawn(async move {
                    let stopped = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    let det = watch(stream, &w, Instant::now(), stopped).await;
                    let expected = Expected::new(&prediction, &det);
                    let _ = tx.send((peer, det, expected));
                });
            }
        }
    }
    summary.open_at_exit = summary.accepted - summary.dead - summary.closed;
    let _ = stop_tx.send(true);
    summary.by_mechanism = mechanism_stats(samples);
    super::print(&render_listen_summary(&summary, format))?;
    Ok(if summary.dead > 0 {
        exit::DETECTED
    } else {
        exit::OK
    })
}
