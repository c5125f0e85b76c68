//! `tcphb probe`: measure the path once, read back the settings, predict each mechanism on this path,
//! and on request recommend settings (`--detect-within`), find the path's idle timeout
//! (`--idle-timeout`) and report ICMP warnings on a busy connection (`--recverr`).

use std::time::{Duration, Instant};

use crate::cli::{IdleMethodArg, ProbeArgs};
use crate::exit;
use crate::idle::{self, IdleTimeout};
use crate::predict::os::for_os;
use crate::predict::{PathTimes, assumed_effective, predict_on_path};
use crate::recommend::{self, Ask};
use crate::recverr::{self, EarlyWarnings};
use crate::report::model::{
    OsDefaults, OsReport, PredictionRow, ProbeFacts, ProbeReport, RecommendationReport,
    Verification,
};
use crate::report::{Finished, Report, SCHEMA, probe_summary};
use crate::scenario::Load;
use crate::settings::{Effective, KernelTimers, Os};
use crate::strategy::Strategy;
use crate::sys;
use crate::units::Millis;
use crate::units::human_ms;
use crate::watch::Watch;

/// Run `tcphb probe`; returns the exit code (0; 3 if the busy connection died during --recverr; 2 if
/// --detect-within cannot be met on this path; 6 if --verify measured a miss).
pub fn run(args: &ProbeArgs) -> anyhow::Result<Finished> {
    let mut strategy = args.strategy.strategy();
    let Some(peer) = &args.peer else {
        return offline(args, &strategy);
    };
    // --ping without --heartbeat is for --detect-within and --idle-timeout: the peer is asked in
    // that protocol.
    let ping = super::ping_setup(
        peer,
        &args.ping,
        &mut strategy,
        Load::Idle,
        args.detect_within.is_none() && args.idle_timeout.is_none(),
    )?;
    if ping.protocol != crate::strategy::Protocol::Line || ping.tls.is_some() {
        // --idle-timeout pings in the service's protocol, in the clear.
        let refused = [
            (
                args.idle_timeout.is_some() && ping.tls.is_some(),
                "--idle-timeout",
                "in the clear: not with --tls (without --ping and --tls it needs no answer from the server: the kernel's keepalive probe is its test packet)",
            ),
            (
                args.recverr,
                "--recverr",
                "tcphb's own line protocol in the clear",
            ),
            (
                args.verify,
                "--verify",
                "tcphb's own line protocol in the clear (its lab server is a tcphb listen)",
            ),
        ];
        if let Some((_, flag, how)) = refused.iter().find(|(on, _, _)| *on) {
            return Err(crate::exit::CliError::Usage(format!(
                "{flag} speaks {how}: not with --ping {} or --tls",
                ping.protocol
            ))
            .into());
        }
    }
    sys::check(&strategy)?;
    if args.recverr {
        sys::check_recverr()?;
    }
    let addrs = super::resolve_peer(peer)?;
    let started = Instant::now();
    let (sock, peer, effective) = crate::sockets::connect(&addrs, &strategy, args.connect_timeout)?;
    let handshake = started.elapsed();
    let opened = Instant::now();
    if args.recverr {
        sys::enable_recverr(&sock, peer.is_ipv6())?;
    }
    let local = super::local_text(&sock)?;
    let kernel = sys::kernel_timers();
    let busy_watch = Watch {
        effective,
        load: Load::Busy,
        kernel,
        ping: crate::watch::line(),
    };
    let info = sys::tcp_info(&sock);
    // Without TCP_INFO the handshake is the only round trip measured, and the RTO is unknown: the
    // predictions then use the RTO_min lower bound.
    let path = PathTimes {
        rtt: info.map_or(handshake, |i| i.rtt()),
        rto: info.map_or(Duration::from_millis(kernel.rto_min_ms), |i| i.rto()),
    };
    let facts = ProbeFacts {
        host: sys::host_facts(),
        rto_min_model_ms: kernel.rto_min_ms,
        rtt_ms: path.rtt.as_secs_f64() * 1000.0,
        rto_ms: info.map(|i| u64::from(i.rto_us) / 1000),
    };
    let effective_differences = sys::differences(&strategy, &effective);

    super::progress(&format!(
        "tcphb: connected to {peer}: RTT {:.2} ms, RTO {} ms",
        facts.rtt_ms,
        path.rto.as_millis()
    ));
    // The idle-timeout search and the busy --recverr connection run side by side on one event loop.
    let (idle_timeout, early_warnings, partial) = if args.idle_timeout.is_some() || args.recverr {
        let rt = super::runtime()?;
        let busy = if args.recverr {
            sock.set_nonblocking(true)?;
            let std_stream: std::net::TcpStream = sock.into();
            Some(std_stream)
        } else {
            drop(sock);
            None
        };
        // Ctrl-C or SIGTERM ends both with what they have, printed as partial.
        let interrupt = super::Interrupt::install(&rt);
        rt.block_on(async {
            let discovery = async {
                match args.idle_timeout {
                    Some(max) => {
                        let method = idle_method(args, peer, path.rtt, &ping).await?;
                        super::progress(&format!(
                            "tcphb: looking for the path's idle timeout up to {} with {} (at most {} in all)",
                            human_ms(Some(max.ms())),
                            method.describe(),
                            human_ms(Some(idle::longest(method, max, path.rtt).ms()))
                        ));
                        let search = idle::Search {
                            peer,
                            method,
                            ping: std::sync::Arc::clone(&ping),
                            max,
                            rtt: path.rtt,
                            connect_timeout: args.connect_timeout,
                        };
                        anyhow::Ok(Some(
                            idle::discover(search, &|line| super::progress(&line), interrupt.wait())
                                .await?,
                        ))
                    }
                    None => Ok(None),
                }
            };
            let warnings = async {
                match busy {
                    Some(s) => {
                        let stream = tokio::net::TcpStream::from_std(s)?;
                        anyhow::Ok(Some(
                            recverr::watch_busy(
                                stream,
                                &busy_watch,
                                opened,
                                args.duration,
                                interrupt.wait(),
                                &|w| {
                                    // A warning is a result, not progress: said even in pipes.
                                    super::say(&format!("tcphb: warning: {}", w.sentence()));
                                },
                            )
                            .await,
                        ))
                    }
                    None => Ok(None),
                }
            };
            let (found, warned) = tokio::join!(discovery, warnings);
            anyhow::Ok((found?, warned?, interrupt.raised()))
        })?
    } else {
        drop(sock);
        (None, None, false)
    };

    let rows = prediction_rows(&strategy, &effective, &kernel, &path);
    let summary = probe_summary(
        &strategy,
        &predict_on_path(&effective, Load::Idle, &kernel, &path),
        &predict_on_path(&effective, Load::Busy, &kernel, &path),
    );
    let mut code = exit::OK;
    let mut verify_partial = false;
    let mut recommended_row = None;
    let recommendation = match args.detect_within {
        None => None,
        Some(within) => {
            // Does the peer speak the heartbeat protocol? Already asked by --idle-timeout's `auto`
            // (in the same protocol: --idle-timeout refuses --tls); else asked on a connection of
            // its own.
            let asked = idle_timeout
                .as_ref()
                .filter(|_| args.idle_method == IdleMethodArg::Auto)
                .map(|i| i.method == idle::Method::Ping);
            let answers = match asked {
                Some(a) => a,
                None => super::runtime()?.block_on(peer_answers(
                    peer,
                    &ping,
                    path.rtt,
                    args.connect_timeout,
                )),
            };
            super::progress(&format!(
                "tcphb: the peer {} a {} ping",
                if answers {
                    "answered"
                } else {
                    "did not answer"
                },
                ping.protocol
            ));
            let ask = Ask {
                within,
                path,
                kernel,
                keep_under: keep_under(idle_timeout.as_ref()),
                peer_answers_ping: answers,
                ping_protocol: ping.protocol,
                user_timeout_supported: !matches!(
                    sys::capabilities().rules.user_timeout,
                    crate::settings::UserTimeout::None { .. }
                ),
            };
            let r = recommend::recommend(&ask);
            let mut verification = None;
            match &r {
                Err(why) => {
                    code = exit::USAGE;
                    super::say(&format!("tcphb: --detect-within: {why}"));
                }
                Ok(rec) => {
                    recommended_row = Some(PredictionRow::new(
                        "recommended",
                        rec.strategy.spec(),
                        &rec.idle,
                        &rec.busy,
                    ));
                    if args.verify && !partial {
                        let v = verify(within, rec)?;
                        verify_partial = v.partial;
                        if !v.holds && !v.partial {
                            code = code.max(exit::PROMISE_BROKEN);
                        }
                        verification = Some(v);
                    }
                }
            }
            let mut report = RecommendationReport::new(within, Some(answers), r);
            report.verification = verification;
            Some(report)
        }
    };
    let mut predictions = rows;
    predictions.extend(recommended_row);
    if early_warnings
        .as_ref()
        .is_some_and(|w: &EarlyWarnings| w.ended_at_ms.is_some())
    {
        code = code.max(exit::DETECTED);
    }
    let partial = partial || verify_partial;
    if partial {
        code = exit::INTERRUPTED;
    }
    let report = ProbeReport {
        schema: SCHEMA,
        partial,
        peer: peer.to_string(),
        local,
        strategy: strategy.to_string(),
        facts,
        effective,
        effective_differences,
        predictions,
        summary,
        recommendation,
        idle_timeout,
        early_warnings,
    };
    Ok(Finished {
        report: Report::Probe(Box::new(report)),
        code,
    })
}

/// Whether the peer answers a ping of the heartbeat's protocol on a connection of its own: `PING 1`
/// in the clear, or (another protocol, or TLS) the watcher's own exchange.
async fn peer_answers(
    peer: std::net::SocketAddr,
    ping: &std::sync::Arc<crate::ping::Setup>,
    rtt: Duration,
    connect_timeout: Duration,
) -> bool {
    if ping.protocol == crate::strategy::Protocol::Line && ping.tls.is_none() {
        idle::answers_ping(peer, rtt, connect_timeout).await
    } else {
        crate::watch::answers(
            peer,
            std::sync::Arc::clone(ping),
            idle::reply_timeout(rtt),
            connect_timeout,
        )
        .await
    }
}

/// The test packet of `--idle-timeout`: as asked, or (auto) PING when the peer answers `PING 1`, else
/// the keepalive probe. The keepalive probe needs Linux (exit 4 elsewhere) and idle times from 1 s
/// (exit 2 for a shorter MAX).
async fn idle_method(
    args: &ProbeArgs,
    peer: std::net::SocketAddr,
    rtt: Duration,
    ping: &std::sync::Arc<crate::ping::Setup>,
) -> anyhow::Result<idle::Method> {
    let method = match args.idle_method {
        IdleMethodArg::Ping => idle::Method::Ping,
        IdleMethodArg::Keepalive => idle::Method::Keepalive,
        IdleMethodArg::Auto => {
            let answers = peer_answers(peer, ping, rtt, args.connect_timeout).await;
            let asked = match ping.protocol {
                crate::strategy::Protocol::Line => "PING 1".to_string(),
                p => format!("a {p} ping"),
            };
            if answers {
                super::progress(&format!(
                    "tcphb: the peer answered {asked}: testing idle connections with it"
                ));
                idle::Method::Ping
            } else {
                super::progress(&format!(
                    "tcphb: the peer answered no {asked}: testing idle connections with keepalive probes"
                ));
                idle::Method::Keepalive
            }
        }
    };
    if method == idle::Method::Keepalive {
        if !sys::capabilities().keepalive_probe {
            return Err(crate::exit::CliError::Environment(sys::NO_KEEPALIVE_PROBE.into()).into());
        }
        let max = args.idle_timeout.unwrap_or_default();
        if max < idle::KEEPALIVE_FLOOR {
            return Err(crate::exit::CliError::Usage(format!(
                "--idle-timeout {} is below 1 s, the shortest idle a keepalive probe can test (TCP_KEEPIDLE is whole seconds){}: give 1s or more",
                human_ms(Some(max.ms())),
                if args.idle_method == IdleMethodArg::Auto {
                    ", and the peer answers no PING"
                } else {
                    ""
                }
            ))
            .into());
        }
    }
    Ok(method)
}

/// How many times `--verify` measures each fault × load.
const VERIFY_REPEAT: u32 = 3;

/// `--verify`: run the recommended strategy in the lab under every fault compare makes, idle and busy,
/// and judge the worst silence before each detection against the deadline. The lab waits 2 × D + 2 s
/// after each cut, so a late detection is measured rather than cut off.
fn verify(within: Duration, rec: &recommend::Recommendation) -> anyhow::Result<Verification> {
    let lab_deadline = within * 2 + Duration::from_secs(2);
    let plan = sys::LabPlan {
        strategies: vec![rec.strategy.clone()],
        faults: recommend::VERIFIED_FAULTS.to_vec(),
        loads: vec![Load::Idle, Load::Busy],
        repeat: VERIFY_REPEAT,
        deadline: lab_deadline,
        warmup: Duration::from_secs(2),
        nat_idle: Duration::from_secs(3),
        server: None,
    };
    super::progress(&format!(
        "tcphb: verifying {} in the lab: {} faults × idle, busy × {VERIFY_REPEAT} runs (up to {})",
        rec.strategy.spec(),
        plan.faults.len(),
        human_ms(Some((plan.warmup + lab_deadline).ms()))
    ));
    let report = sys::lab_matrix(&plan)?;
    Ok(Verification::judge(
        within,
        &rec.covers,
        lab_deadline,
        VERIFY_REPEAT,
        &report,
    ))
}

/// `probe --os`: what the strategy does on that OS with its defaults, predicted without a socket.
fn offline(args: &ProbeArgs, strategy: &Strategy) -> anyhow::Result<Finished> {
    let os: Os = args
        .os
        .expect("clap requires --os without HOST:PORT")
        .into();
    sys::validate(strategy, os.rules())?;
    let predictions = strategy
        .mechanism_parts()
        .iter()
        .map(|(name, s)| {
            let p = for_os(s, os);
            PredictionRow::new(name, s.spec(), &p.idle, &p.busy)
        })
        .collect();
    let whole = for_os(strategy, os);
    let report = OsReport {
        schema: SCHEMA,
        os,
        strategy: strategy.to_string(),
        defaults: OsDefaults::of(os.rules()),
        effective: whole.effective,
        predictions,
        pitfalls: whole.pitfalls,
    };
    Ok(Finished {
        report: Report::Os(report),
        code: exit::OK,
    })
}

/// What idle traffic must stay under: the longest idle a connection survived (the low end of the
/// bracket), or, when even the shortest one tried was forgotten, half the shortest forgotten.
fn keep_under(found: Option<&IdleTimeout>) -> Option<Duration> {
    let f = found?;
    let high = f.high_ms?;
    Some(Duration::from_millis(if f.low_ms > 0 {
        f.low_ms
    } else {
        high / 2
    }))
}

fn row(
    name: &'static str,
    s: &Strategy,
    eff: &Effective,
    kernel: &KernelTimers,
    path: &PathTimes,
) -> PredictionRow {
    let idle = predict_on_path(eff, Load::Idle, kernel, path);
    let busy = predict_on_path(eff, Load::Busy, kernel, path);
    PredictionRow::new(name, s.spec(), &idle, &busy)
}

/// One row per mechanism: none, the OS default keepalive, each requested mechanism alone, and all
/// requested mechanisms together as the kernel read them back.
fn prediction_rows(
    requested: &Strategy,
    effective: &Effective,
    kernel: &KernelTimers,
    path: &PathTimes,
) -> Vec<PredictionRow> {
    requested
        .mechanism_parts()
        .iter()
        .map(|(name, s)| match *name {
            "strategy" => row(name, requested, effective, kernel, path),
            _ => row(name, s, &assumed_effective(s, kernel), kernel, path),
        })
        .collect()
}
