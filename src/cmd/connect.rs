//! `tcphb connect`: open one connection with the chosen strategy, watch it until the peer dies or
//! `--duration` passes, and report the detection beside its prediction.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::cli::ConnectArgs;
use crate::detection::{CloseHow, Detection, IcmpSeen, Outcome};
use crate::exit::{self, CliError};
use crate::matrix::mechanism_stats;
use crate::ping::Setup;
use crate::predict::{Expected, predict};
use crate::recverr::{IcmpReport, IcmpWatch};
use crate::report::model::{ConnectManyReport, ConnectReport};
use crate::report::{Finished, Report, SCHEMA, expected_text};
use crate::scenario::Fault;
use crate::settings::Effective;
use crate::strategy::{Protocol, Strategy};
use crate::sys;
use crate::units::Millis;
use crate::units::human_ms;
use crate::watch::{Watch, watch};

/// Run `tcphb connect`; returns the exit code (0 alive, 3 a dead peer detected, 5 the peer closed the
/// connection itself). A peer that never answered a heartbeat, or broke the protocol, is an error.
pub fn run(args: &ConnectArgs) -> anyhow::Result<Finished> {
    let mut strategy = args.strategy.strategy();
    let ping = super::ping_setup(&args.peer, &args.ping, &mut strategy, args.load, true)?;
    sys::check(&strategy)?;
    let addrs = super::resolve_peer(&args.peer)?;
    if args.connections > 1 {
        return run_many(args, &strategy, &addrs, ping);
    }
    let (sock, peer, effective) = crate::sockets::connect(&addrs, &strategy, args.connect_timeout)?;
    let local = super::local_text(&sock)?;
    let kernel = sys::kernel_timers();
    let rtt = sys::tcp_info(&sock).map_or(Duration::ZERO, |i| i.rtt());
    // The prediction is for a silent death (cable pulled, host gone): what connect is there to measure.
    let prediction = predict(&effective, Fault::Blackhole, args.load, &kernel, rtt);

    sock.set_nonblocking(true)?;
    let std_stream: std::net::TcpStream = sock.into();
    let w = Watch {
        effective,
        load: args.load,
        kernel,
        ping: ping.clone(),
    };
    super::progress(&format!(
        "tcphb: connected to {peer} ({}, {} load); a silent death would be noticed after {}. Ctrl-C to stop.",
        strategy,
        args.load,
        expected_text(prediction.expected_ms(), prediction.mechanism),
    ));
    let opened = Instant::now();
    let ends = (std_stream.local_addr()?, std_stream.peer_addr()?);
    let rt = super::runtime()?;
    let detection = rt.block_on(async {
        let stream = tokio::net::TcpStream::from_std(std_stream)?;
        anyhow::Ok(
            watch_with_icmp(
                stream,
                &w,
                opened,
                ends,
                stop_after(args.duration, sys::shutdown()),
            )
            .await,
        )
    })?;
    // Nothing was cut here: a FIN is the peer's own close, not a death.
    let detection = detection.on_a_live_path();
    if detection.closed_by_tcphb() {
        return Err(not_a_heartbeat_peer(peer, &detection, &ping));
    }
    let report = ConnectReport {
        schema: SCHEMA,
        peer: peer.to_string(),
        local,
        strategy: strategy.to_string(),
        ping: ping.protocol,
        tls: ping.tls.is_some(),
        load: args.load,
        effective,
        expected: Expected::new(&prediction, &detection),
        detection,
    };
    let code = exit_code(&[&report.detection]);
    Ok(Finished {
        report: Report::Connect(report),
        code,
    })
}

/// [`watch`], and beside it a raw ICMP observer (it needs root or CAP_NET_RAW; without, nothing is
/// recorded) that keeps the errors routers sent about this connection: the detection's evidence,
/// counted from the last packet heard.
async fn watch_with_icmp(
    stream: tokio::net::TcpStream,
    w: &Watch,
    opened: Instant,
    (local, peer): (SocketAddr, SocketAddr),
    stop: impl std::future::Future<Output = ()>,
) -> Detection {
    let mut icmp = IcmpWatch::open(local, peer);
    let mut seen: Option<(IcmpReport, Instant, Instant, u32)> = None;
    let watching = watch(stream, w, opened, stop);
    tokio::pin!(watching);
    let mut d = loop {
        tokio::select! {
            d = &mut watching => break d,
            report = icmp.next() => {
                let now = Instant::now();
                match &mut seen {
                    Some((_, _, last, count)) => {
                        *last = now;
                        *count += 1;
                    }
                    None => seen = Some((report, now, now, 1)),
                }
            }
        }
    };
    if let Some((report, first, last, count)) = seen {
        // The silence began `silence_ms` before the ending, which is now.
        let heard = Instant::now() - Duration::from_millis(d.silence_ms);
        let mut e = IcmpSeen::new(&report, first.saturating_duration_since(heard));
        e.messages = count;
        e.last_ms = last.saturating_duration_since(heard).ms();
        d.icmp = Some(e);
    }
    d
}

/// 3 if any connection died, else 5 if the peer closed any itself, else 0.
fn exit_code(detections: &[&Detection]) -> u8 {
    if detections.iter().any(|d| d.is_death()) {
        exit::DETECTED
    } else if detections.iter().any(|d| d.closed_by_peer()) {
        exit::CLOSED
    } else {
        exit::OK
    }
}

/// The one-line error for a peer tcphb closed: its TLS handshake failed, it never answered a
/// heartbeat, or it broke the protocol.
fn not_a_heartbeat_peer(peer: SocketAddr, d: &Detection, ping: &Setup) -> anyhow::Error {
    let p = ping.protocol;
    if d.how == Some(CloseHow::Tls) {
        return anyhow::anyhow!(
            "TLS handshake with {peer} failed: {}",
            d.note.as_deref().unwrap_or("see the server's log")
        );
    }
    // What to do instead, and what the peer broke when no note says it, for this protocol.
    let (advice, broke) = match p {
        Protocol::Line => (
            "use --keepalive/--user-timeout, or point at `tcphb listen` or an echo server".into(),
            "the peer broke the heartbeat protocol",
        ),
        p => (
            format!(
                "check that it speaks {p} (and --tls, --path), or choose its protocol with --ping"
            ),
            "the peer broke the protocol",
        ),
    };
    match (d.how, p) {
        (Some(CloseHow::NoHeartbeat), Protocol::Line) => anyhow::anyhow!(
            "the peer at {peer} never answered a heartbeat (no PONG or echo in {}): it does not speak tcphb's PING protocol; {advice}",
            human_ms(Some(d.silence_ms))
        ),
        (Some(CloseHow::NoHeartbeat), p) => anyhow::anyhow!(
            "the peer at {peer} never answered a {p} ping in {}: {advice}",
            human_ms(Some(d.silence_ms))
        ),
        _ => anyhow::anyhow!(
            "closed the connection to {peer} after {}: {}; {advice}",
            human_ms(Some(d.elapsed_ms)),
            d.note.as_deref().unwrap_or(broke)
        ),
    }
}

/// Completes after `duration` (if any) or when `signal` does.
async fn stop_after(duration: Option<Duration>, signal: impl std::future::Future<Output = ()>) {
    match duration {
        Some(d) => tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = signal => {}
        },
        None => signal.await,
    }
}

/// `--connections N`: open N connections, watch them all on one event loop, report the distribution.
fn run_many(
    args: &ConnectArgs,
    strategy: &Strategy,
    addrs: &[SocketAddr],
    ping: Arc<Setup>,
) -> anyhow::Result<Finished> {
    let wanted = u64::from(args.connections);
    let fit = crate::limits::ensure_room_for(wanted);
    if fit < wanted {
        return Err(CliError::Environment(format!(
            "cannot open {wanted} connections with the open-file limit in force (room for {fit})"
        ))
        .into());
    }
    let rt = super::runtime()?;
    // Ctrl-C or SIGTERM, from now on: the connections as they stand are reported, marked partial.
    let interrupt = super::Interrupt::install(&rt);
    let bar = indicatif::ProgressBar::new(wanted).with_message("connecting");
    let mut socks = Vec::with_capacity(wanted as usize);
    let mut peer = addrs[0];
    let mut effective = Effective::default();
    for i in 0..wanted {
        if interrupt.seen(&rt) {
            break;
        }
        let (sock, p, eff) = crate::sockets::connect(addrs, strategy, args.connect_timeout)
            .with_context(|| format!("connection {} of {wanted}", i + 1))?;
        sock.set_nonblocking(true)?;
        (peer, effective) = (p, eff);
        socks.push(std::net::TcpStream::from(sock));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let kernel = sys::kernel_timers();
    let prediction = predict(
        &effective,
        Fault::Blackhole,
        args.load,
        &kernel,
        Duration::ZERO,
    );
    super::progress(&format!(
        "tcphb: {wanted} connections to {peer} ({strategy}); a silent death would be noticed after {}. Ctrl-C to stop.",
        expected_text(prediction.expected_ms(), prediction.mechanism)
    ));
    let w = Watch {
        effective,
        load: args.load,
        kernel,
        ping: Arc::clone(&ping),
    };
    let opened = socks.len() as u64;
    let detections = rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut set = tokio::task::JoinSet::new();
        for s in socks {
            let stream = tokio::net::TcpStream::from_std(s)?;
            let w = w.clone();
            let mut stop = stop_rx.clone();
            set.spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                watch(stream, &w, Instant::now(), stopped).await
            });
        }
        let stop = stop_after(args.duration, interrupt.wait());
        tokio::pin!(stop);
        let mut out = Vec::with_capacity(wanted as usize);
        let mut stopped = false;
        while !set.is_empty() {
            tokio::select! {
                Some(d) = set.join_next() => out.push(d?),
                _ = &mut stop, if !stopped => {
                    stopped = true;
                    let _ = stop_tx.send(true);
                }
            }
        }
        anyhow::Ok(out)
    })?;
    let detections: Vec<Detection> = detections
        .into_iter()
        .map(Detection::on_a_live_path)
        .collect();
    // A peer that does not speak the protocol fails every connection alike: an error, said once.
    if !detections.iter().any(Detection::is_death)
        && let Some(d) = detections.iter().find(|d| d.closed_by_tcphb())
    {
        return Err(not_a_heartbeat_peer(peer, d, &ping));
    }
    let count = |o: Outcome| detections.iter().filter(|d| d.outcome == o).count() as u64;
    let by = |f: fn(&Detection) -> bool| detections.iter().filter(|d| f(d)).count() as u64;
    let samples = detections
        .iter()
        .filter_map(|d| d.detected_by.map(|m| (m.name().to_string(), d.silence_ms)))
        .collect();
    let partial = interrupt.raised();
    let report = ConnectManyReport {
        schema: SCHEMA,
        partial,
        peer: peer.to_string(),
        strategy: strategy.to_string(),
        ping: ping.protocol,
        tls: ping.tls.is_some(),
        load: args.load,
        effective,
        connections: opened,
        alive: count(Outcome::Alive),
        dead: count(Outcome::Dead),
        closed: by(Detection::closed_by_peer),
        closed_by_tcphb: by(Detection::closed_by_tcphb),
        by_mechanism: mechanism_stats(samples),
        expected: Expected::many(&prediction, &detections),
    };
    let code = if partial {
        exit::INTERRUPTED
    } else {
        exit_code(&detections.iter().collect::<Vec<_>>())
    };
    Ok(Finished {
        report: Report::ConnectMany(report),
        code,
    })
}
