//! `tcphb compare`: build labs, open one connection per strategy in each, cut every lab at one
//! instant, watch all connections on one event loop until each notices or the deadline passes, and
//! report the matrix beside the predictions.
//!
//! Cells (fault × load × repeat) run concurrently, each in its own lab, so the run takes about
//! warm-up + deadline rather than their sum. Set-up (blocking: netlink, exec of the peer, connects)
//! happens before any measurement starts, so it cannot delay a timer being measured.

use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::watch as stop_channel;
use tokio::task::JoinSet;
use tokio::time::{Instant as TokioInstant, sleep_until};

use crate::cli::{CompareArgs, DEFAULT_STRATEGIES};
use crate::cmd::Interrupt;
use crate::detection::{Detection, IcmpSeen, Timeline};
use crate::lab::Cell;
use crate::lab::server::ServerWatch;
use crate::lab::timeline::{self, Tracked};
use crate::matrix::{CellResult, CutPhase, Run, ServerRun, aggregate, answer, verdicts};
use crate::predict::phase::{AtCut, KeepalivePhase};
use crate::predict::{REBOOT_HEAL, predict_at};
use crate::recverr::IcmpTap;
use crate::report::model::{CompareReport, LabFacts};
use crate::report::{Finished, Report, SCHEMA};
use crate::scenario::{Fault, Load};
use crate::settings::{Effective, KernelTimers};
use crate::strategy::Strategy;
use crate::sys;
use crate::sys::LabPlan;
use crate::units::Millis;
use crate::watch::{Observe, PingLog, Watch, watch_observed};

/// How often `--server`'s connections are looked at (as `audit --watch` does).
const SERVER_LOOK: Duration = Duration::from_millis(100);

/// Most labs alive at once; more repeats run in further rounds.
const MAX_LABS_PER_ROUND: usize = 40;

/// How long a `crash` waits for the peer's receive queues to settle, and how often it looks.
const UNREAD_WAIT: Duration = Duration::from_secs(2);
const UNREAD_LOOK: Duration = Duration::from_millis(5);

/// Bring the peer's receive queues to the state the crash is defined by, just before the kill:
/// a busy peer dies with unread data, so its kernel answers RST; an idle one has read everything,
/// so its kernel sends FIN. Left to chance, which one happened would depend on how fast the peer
/// and the writers run (a debug build, a loaded machine), and so would `eof` or `reset`.
async fn crash_with_queues_settled(cell: &Cell, load: Load) -> anyhow::Result<()> {
    if load == Load::Busy {
        // Stopped, it reads nothing more: the busy writers' next segments stay queued.
        cell.stop_peer()?;
    }
    let settled = |(unread, established): (usize, usize)| match load {
        Load::Busy => unread == established && established > 0,
        Load::Idle => unread == 0,
    };
    let until = TokioInstant::now() + UNREAD_WAIT;
    while !settled(cell.peer_unread()?) && TokioInstant::now() < until {
        tokio::time::sleep(UNREAD_LOOK).await;
    }
    Ok(())
}

/// One lab's worth of work: which fault and load (repeats are further cells alike).
#[derive(Clone, Copy)]
struct CellSpec {
    fault: Fault,
    load: Load,
}

/// A measured connection.
struct Measured {
    cell: usize,
    strategy: usize,
    detection: Detection,
    /// From the cut to the detection.
    latency: Option<Duration>,
    /// It ended before the cut.
    before_cut: bool,
    /// Its timers at the cut, when they could be read.
    at: Option<AtCut>,
    /// The ICMP errors it received after the cut.
    icmp: Option<IcmpSeen>,
    /// What it sent from the cut to its detection.
    timeline: Timeline,
    /// `compare --server`: when the server noticed this client dead (`None`: it did not, or no
    /// `--server`).
    server: Option<ServerRun>,
}

/// Run `tcphb compare`; exit 0 when the comparison ran.
pub fn run(args: &CompareArgs) -> anyhow::Result<Finished> {
    let strategies: Vec<Strategy> = if args.strategies.is_empty() {
        DEFAULT_STRATEGIES
            .iter()
            .map(|s| s.parse().expect("default specs parse"))
            .collect()
    } else {
        args.strategies.clone()
    };
    // Without --server the lab's server is a tcphb listen: it answers only tcphb's own PING lines.
    if args.server.is_none()
        && let Some(s) = strategies.iter().find(|s| {
            s.heartbeat
                .is_some_and(|h| h.protocol != crate::strategy::Protocol::Line)
        })
    {
        return Err(crate::exit::CliError::Usage(format!(
            "strategy '{s}': the lab's server is a tcphb listen, which speaks only tcphb's line protocol; ping your own server in its protocol with --server 'CMD {{addr}} {{port}}', or measure a real service with `tcphb connect HOST:PORT --heartbeat I,M --ping PROTO`"
        ))
        .into());
    }
    let plan = LabPlan {
        strategies,
        faults: args.faults.clone(),
        loads: args.loads.clone(),
        repeat: args.repeat,
        deadline: args.deadline,
        warmup: args.warmup,
        nat_idle: args.nat_idle,
        server: args.server.clone(),
    };
    let report = run_plan(&plan)?;
    let partial = report.partial;
    Ok(Finished {
        report: Report::Compare {
            report,
            wide: args.wide,
        },
        code: if partial {
            crate::exit::INTERRUPTED
        } else {
            crate::exit::OK
        },
    })
}

/// Build the labs of `plan`, measure, and return the matrix (used by `compare` and `probe --verify`).
/// Interrupted (Ctrl-C/SIGTERM): what was measured, marked partial.
pub fn run_plan(args: &LabPlan) -> anyhow::Result<CompareReport> {
    let strategies = args.strategies.clone();
    for s in &strategies {
        sys::check(s).with_context(|| format!("strategy '{s}'"))?;
    }
    let mut faults = args.faults.clone();
    faults.dedup();
    let mut loads = args.loads.clone();
    loads.sort();
    loads.dedup();
    let mut specs = Vec::new();
    for _ in 0..args.repeat {
        for &fault in &faults {
            for &load in &loads {
                specs.push(CellSpec { fault, load });
            }
        }
    }

    let rounds = specs.len().div_ceil(MAX_LABS_PER_ROUND);
    let bar = progress_bar((specs.len() * strategies.len()) as u64);
    let rt = crate::cmd::runtime()?;
    // Ctrl-C or SIGTERM: the round under way stops, keeps what it detected, and the report is printed
    // as partial.
    let interrupt = Interrupt::install(&rt);
    let started = Instant::now();
    let mut measured: Vec<(CellSpec, Measured)> = Vec::new();
    let mut facts = None;
    let mut effective: Vec<Option<Effective>> = vec![None; strategies.len()];
    let mut kernel = KernelTimers::default();
    for (round, chunk) in specs.chunks(MAX_LABS_PER_ROUND).enumerate() {
        if interrupt.seen(&rt) {
            break;
        }
        bar.set_message(format!(
            "round {}/{rounds}: building {} labs",
            round + 1,
            chunk.len()
        ));
        let mut cells = Vec::with_capacity(chunk.len());
        for spec in chunk {
            let cell = Cell::new(spec.fault, args.nat_idle, args.server.as_deref())?;
            if facts.is_none() {
                facts = Some(cell.facts()?);
                kernel = cell.kernel_timers()?;
            }
            cells.push(cell);
        }
        // Connect only once every lab of the round is built, just before the watchers start: a
        // connection made while later labs were still being built would be silent for that long
        // before its watcher (and its first heartbeat) began, and its silence at detection would
        // count that unwatched time too.
        let mut conns = Vec::new();
        for (i, cell) in cells.iter().enumerate() {
            for (j, s) in strategies.iter().enumerate() {
                let (stream, eff) = cell.connect(s, j)?;
                effective[j].get_or_insert(eff);
                conns.push((i, j, stream, eff));
            }
        }
        let out = rt.block_on(measure(
            args, chunk, &mut cells, conns, kernel, &bar, &interrupt,
        ))?;
        measured.extend(out.into_iter().map(|m| (chunk[m.cell], m)));
        drop(cells);
    }
    bar.finish_and_clear();
    let partial = interrupt.raised();

    let mut results: Vec<CellResult> = Vec::new();
    for (j, s) in strategies.iter().enumerate() {
        let eff = effective[j].unwrap_or_default();
        for &fault in &faults {
            for &load in &loads {
                // What the lab knows of every cell, when nothing was read at the cut: its
                // middlebox's timeout.
                let known = AtCut {
                    nat_idle: Some(args.nat_idle),
                    ..AtCut::default()
                };
                let runs: Vec<(Run, _)> = measured
                    .iter()
                    .filter(|(c, m)| m.strategy == j && c.fault == fault && c.load == load)
                    .map(|(_, m)| {
                        let d = &m.detection;
                        let run = Run {
                            latency_ms: m.latency.map(|l| l.ms()),
                            silence_ms: d.silence_ms,
                            detected_by: d.detected_by,
                            errno: d.errno.clone(),
                            outcome: d.outcome,
                            cut_phase: m.at.as_ref().map(|a| CutPhase {
                                heard_ago_ms: a.heard_ago.unwrap_or_default().ms(),
                                rto_ms: a.rto.unwrap_or_default().ms(),
                                keepalive_due_ms: a.keepalive.map(|k| k.due_in.ms()),
                                probes_out: a.keepalive.map(|k| k.probes_out),
                                heal_ms: a.heal.map(|h| h.ms()),
                                zero_window_probe_due_ms: a.zero_window.map(|d| d.ms()),
                                ping_at_ms: a.next_ping.map(|p| p.ms()),
                            }),
                            ended_before_cut: m.before_cut,
                            expected_ms: None,
                            expected_min_ms: None,
                            expected_max_ms: None,
                            agrees: false,
                            icmp: m.icmp.clone(),
                            timeline: m.timeline.clone(),
                            server: m.server.clone(),
                        };
                        let at = m.at.clone().unwrap_or_else(|| known.clone());
                        let own = predict_at(&eff, fault, load, &kernel, Duration::ZERO, at);
                        (run, own)
                    })
                    .collect();
                if runs.is_empty() {
                    // Interrupted before this cell was measured: not shown, rather than `never`.
                    continue;
                }
                // Over every phase.
                let pred = predict_at(&eff, fault, load, &kernel, Duration::ZERO, known);
                results.push(aggregate(s, fault, load, &pred, args.deadline, runs));
            }
        }
    }
    let report = CompareReport {
        schema: SCHEMA,
        partial,
        lab: LabFacts {
            facts: facts.unwrap_or_default(),
            deadline_ms: args.deadline.ms(),
            warmup_ms: args.warmup.ms(),
            reboot_heal_ms: REBOOT_HEAL.ms(),
            nat_idle_ms: args.nat_idle.ms(),
            repeat: args.repeat,
            wall_ms: started.elapsed().ms(),
            server_command: args.server.clone(),
        },
        answer: answer(&results),
        verdicts: verdicts(&results, &faults),
        results,
    };
    Ok(report)
}

fn progress_bar(total: u64) -> ProgressBar {
    // indicatif draws only when stderr is a terminal, so pipes stay quiet.
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            // One row at 80 columns: the message takes what is left and is cut, never wrapped.
            "{spinner} {elapsed:>3} {bar:20} {pos}/{len} ended  {wide_msg}",
        )
        .expect("valid template"),
    );
    bar
}

/// Watch every connection, cut every cell at one instant, heal reboots, stop at the deadline. Each
/// connection's keepalive timer is read from the kernel just before its cell is cut (its phase), and
/// a raw ICMP socket per cell collects the router's errors for each connection (the evidence).
async fn measure(
    args: &LabPlan,
    chunk: &[CellSpec],
    cells: &mut [Cell],
    conns: Vec<(usize, usize, std::net::TcpStream, Effective)>,
    kernel: KernelTimers,
    bar: &ProgressBar,
    interrupt: &Interrupt,
) -> anyhow::Result<Vec<Measured>> {
    let (stop_tx, stop_rx) = stop_channel::channel(false);
    // Each cell's cut instant, published as it is made.
    let (cut_tx, cut_rx) = stop_channel::channel::<Vec<Option<Instant>>>(vec![None; cells.len()]);
    let mut set = JoinSet::new();
    // Per cell, its connections as the timeline sampler reads them, and the cut too.
    let mut tracked: Vec<Vec<Tracked>> = (0..cells.len()).map(|_| Vec::new()).collect();
    let foreign_peer = args.server.is_some();
    for (i, j, stream, effective) in conns {
        let pings = effective
            .heartbeat()
            .map(|_| std::sync::Arc::new(PingLog::default()));
        tracked[i].push(Tracked {
            strategy: j,
            local: stream.local_addr()?,
            stream: std::sync::Arc::new(stream.try_clone()?),
            pings: pings.clone(),
        });
        let stream = tokio::net::TcpStream::from_std(stream)?;
        let w = Watch {
            effective,
            load: chunk[i].load,
            kernel,
            // compare --server: a heartbeat in the server's own protocol (`hb=1s,3/redis`).
            ping: match args.strategies[j].heartbeat.map(|h| h.protocol) {
                Some(protocol) if protocol != crate::strategy::Protocol::Line => {
                    std::sync::Arc::new(crate::ping::Setup {
                        protocol,
                        ..crate::ping::Setup::default()
                    })
                }
                _ => crate::watch::line(),
            },
        };
        let mut stop = stop_rx.clone();
        let cut_rx = cut_rx.clone();
        set.spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            let opened = Instant::now();
            let observe = Observe {
                pings: pings.as_deref(),
                foreign_peer,
                ..Observe::NONE
            };
            let d = watch_observed(stream, &w, opened, stopped, &observe).await;
            let ended = opened + Duration::from_millis(d.elapsed_ms);
            let cut = cut_rx.borrow()[i];
            let latency = match (cut, d.outcome.is_detection()) {
                (Some(cut), true) => Some(ended.saturating_duration_since(cut)),
                _ => None,
            };
            (i, j, d, latency, cut.is_none())
        });
    }
    let mut taps = JoinSet::new();
    for (i, cell) in cells.iter().enumerate() {
        let mut tap = IcmpTap::new(cell.icmp_socket().map_err(std::io::Error::other));
        if let Some(why) = tap.unavailable() {
            anyhow::bail!("network lab: cannot watch the router's ICMP errors: {why}");
        }
        let mut stop = stop_rx.clone();
        let mut cut_rx = cut_rx.clone();
        taps.spawn(async move {
            // Per connection: the evidence, and each arrival (from the cut) for its timer's prediction.
            let mut seen: Vec<(std::net::SocketAddr, IcmpSeen, Vec<Duration>)> = Vec::new();
            let Ok(cut) = cut_rx.wait_for(|c| c[i].is_some()).await.map(|c| c[i]) else {
                return (i, seen);
            };
            let Some(cut) = cut else { return (i, seen) };
            loop {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return (i, seen),
                    (report, local, _peer, arrived) = tap.next() => {
                        let at = arrived.saturating_duration_since(cut);
                        match seen.iter_mut().find(|(a, ..)| *a == local) {
                            Some((_, e, times)) => {
                                e.add(at);
                                times.push(at);
                            }
                            None => seen.push((local, IcmpSeen::new(&report, at), vec![at])),
                        }
                    }
                }
            }
        });
    }
    let mut samplers = JoinSet::new();
    for (i, conns) in tracked.iter().cloned().enumerate() {
        let mut stop = stop_rx.clone();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let load = chunk[i].load;
        samplers.spawn(timeline::sample(i, conns, load, cut_rx.clone(), stopped));
    }
    bar.set_message(format!(
        "warming up {}",
        crate::units::format_duration(args.warmup)
    ));
    tokio::select! {
        _ = tokio::time::sleep(args.warmup) => {}
        // Nothing cut yet, so nothing measured: the watchers and taps end with their JoinSets.
        _ = interrupt.wait() => return Ok(Vec::new()),
    }
    let mut cut_at = Vec::with_capacity(cells.len());
    // compare --server: each cell's server, followed from its cut (none for faults that stop it).
    let mut servers: Vec<Option<ServerWatch>> = (0..cells.len()).map(|_| None).collect();
    // (cell, strategy) → its timers at the cut and the time since it last heard the peer.
    let mut phases = std::collections::HashMap::new();
    // (cell, strategy) → its heartbeat's ping log and when it last heard the peer at the cut.
    let mut heartbeats = std::collections::HashMap::new();
    // Reboot cells heal, each REBOOT_HEAL after its own cut, in the order they were cut.
    let mut heals = std::collections::VecDeque::new();
    for (i, c) in cells.iter_mut().enumerate() {
        // Read just before this cell's cut: the phase its predictions are made for.
        let read_at = Instant::now();
        let timers = c.keepalive_timers()?;
        for t in &tracked[i] {
            let Some(info) = crate::sys::tcp_info(&t.stream) else {
                continue;
            };
            let now = Instant::now();
            let heard_ago = Duration::from_millis(info.silence_ms());
            let keepalive = timers
                .iter()
                .find(|(a, k)| *a == t.local && k.kind == 2)
                .map(|(_, k)| KeepalivePhase {
                    heard_ago,
                    due_in: k.due_in,
                    probes_out: k.probes_out,
                });
            let zero_window = timers
                .iter()
                .find(|(a, k)| *a == t.local && k.kind == 4)
                .map(|(_, k)| k.due_in);
            let at = AtCut {
                keepalive,
                heard_ago: Some(heard_ago),
                rto: Some(info.rto()),
                heal: None,
                zero_window,
                nat_idle: Some(args.nat_idle),
                // Filled in once the cell's ICMP tap and sampler have seen everything.
                icmp: None,
                first_window_probe: None,
                // Filled in at the end, from the last reply before the cut: one racing this reading
                // still counts.
                heartbeat_heard: None,
                // The ping that will be unacked after the cut: the last one, if it is unacked now
                // (its answer lost to the cut), else the next one due. Counted from the last
                // packet heard. Which one is read from the kernel, not from the clocks:
                // `heard_ago` has only jiffy resolution, and a pong comes back within a
                // millisecond of its ping here.
                next_ping: t.pings.as_ref().and_then(|log| {
                    Some(if info.unacked > 0 {
                        heard_ago.saturating_sub(now.saturating_duration_since(log.last()?))
                    } else {
                        heard_ago + log.next()?.saturating_duration_since(now)
                    })
                }),
            };
            phases.insert((i, t.strategy), at);
            if let Some(log) = &t.pings {
                heartbeats.insert(
                    (i, t.strategy),
                    (std::sync::Arc::clone(log), now - heard_ago),
                );
            }
        }
        if args.server.is_some() {
            // The operator's server: its connections followed from the cut, each known by the
            // client address (the strategy) at the other end.
            let port = c.peer_addr().port();
            let mut clients = Vec::new();
            for t in &tracked[i] {
                clients.push((
                    t.strategy,
                    std::net::IpAddr::V4(c.client_source(t.strategy)?),
                ));
            }
            if let Some((server, pid)) = c.observed_server() {
                servers[i] = Some(
                    ServerWatch::start(server, pid, port, &clients, kernel)
                        .context("compare --server: read the server's connections")?,
                );
            }
        }
        if chunk[i].fault == Fault::Crash {
            crash_with_queues_settled(c, chunk[i].load).await?;
        }
        c.cut()?;
        let now = Instant::now();
        // What was read before the cut (and before a crash's wait), as it stood at the cut.
        let gap = now.saturating_duration_since(read_at);
        for ((cell, _), at) in phases.iter_mut() {
            if *cell == i {
                at.age(gap);
            }
        }
        cut_at.push(now);
        cut_tx.send_modify(|c| c[i] = Some(now));
        if chunk[i].fault == Fault::Reboot {
            heals.push_back((TokioInstant::from_std(now) + REBOOT_HEAL, i));
        }
        // Let the cells already cut be watched while the next ones are prepared: a detection is
        // timed when its watcher runs, so a blocked loop would add to it.
        tokio::task::yield_now().await;
    }
    let cut = TokioInstant::now();
    bar.set_message("cut: waiting for detections");
    let deadline_at = cut + args.deadline;
    let far = deadline_at + Duration::from_secs(86_400);
    let mut stopped = false;
    let mut out = Vec::new();
    // The servers are looked at as `audit --watch` does; they may notice after every client has.
    let mut look = tokio::time::interval(SERVER_LOOK);
    let watching_servers = servers.iter().any(Option::is_some);
    while !set.is_empty() || (watching_servers && !stopped) {
        let next_heal = heals.front().map_or(far, |h| h.0);
        tokio::select! {
            _ = look.tick(), if watching_servers => {
                for (i, w) in servers.iter_mut().enumerate() {
                    if let (Some(w), Some((server, _))) = (w.as_mut(), cells[i].observed_server()) {
                        w.poll(server).context("compare --server: read the server's connections")?;
                    }
                }
            }
            Some(r) = set.join_next() => {
                out.push(r.context("a watcher task failed")?);
                bar.inc(1);
            }
            _ = sleep_until(next_heal), if !heals.is_empty() => {
                let (_, i) = heals.pop_front().expect("a heal is due");
                cells[i].heal()?;
                // Its own heal, from its own cut: what its reboot runs are predicted for.
                let heal = cut_at[i].elapsed();
                for ((cell, _), at) in phases.iter_mut() {
                    if *cell == i {
                        at.heal = Some(heal);
                    }
                }
            }
            _ = sleep_until(deadline_at), if !stopped => {
                stopped = true;
                let _ = stop_tx.send(true);
            }
            _ = interrupt.wait(), if !stopped => {
                stopped = true;
                let _ = stop_tx.send(true);
            }
        }
    }
    let _ = stop_tx.send(true);
    let mut noticed_by_server = std::collections::HashMap::new();
    for (i, w) in servers.into_iter().enumerate() {
        if let Some(w) = w {
            for (j, run) in w.finish() {
                noticed_by_server.insert((i, j), run);
            }
        }
    }
    let mut icmp = std::collections::HashMap::new();
    while let Some(r) = taps.join_next().await {
        let (i, seen) = r.context("an ICMP watcher task failed")?;
        for (local, e, times) in seen {
            if let Some(t) = tracked[i].iter().find(|t| t.local == local) {
                icmp.insert((i, t.strategy), (e, times));
            }
        }
    }
    let mut sampled = std::collections::HashMap::new();
    while let Some(r) = samplers.join_next().await {
        let (i, by_strategy) = r.context("a timeline sampler task failed")?;
        for (j, s) in by_strategy {
            sampled.insert((i, j), s);
        }
    }
    // Interrupted: a connection still watched at the signal was not watched to the deadline, so it is
    // no `never`; only what ended is kept.
    let cut_short = interrupt.raised();
    Ok(out
        .into_iter()
        .filter(|(_, _, d, _, _)| !(cut_short && d.outcome == crate::detection::Outcome::Alive))
        .map(|(i, j, detection, latency, before_cut)| {
            let (icmp, arrivals) = icmp.remove(&(i, j)).unzip();
            let sampled = sampled.remove(&(i, j));
            let window_probe = sampled.as_ref().and_then(|s| s.first_window_probe());
            Measured {
                cell: i,
                strategy: j,
                detection,
                latency,
                before_cut,
                // The tap watched every connection of the cell from its cut: no ICMP is known none.
                at: phases.get(&(i, j)).cloned().map(|mut at| {
                    let heard_ago = at.heard_ago.unwrap_or_default();
                    at.first_window_probe = window_probe;
                    at.heartbeat_heard = heartbeats.get(&(i, j)).and_then(|(log, heard_at)| {
                        Some(heard_at.saturating_duration_since(log.heard()?))
                    });
                    at.icmp = Some(
                        arrivals
                            .unwrap_or_default()
                            .into_iter()
                            .map(|a| heard_ago + a)
                            .collect(),
                    );
                    at
                }),
                icmp,
                timeline: sampled.map(|s| s.finish(latency)).unwrap_or_default(),
                server: noticed_by_server.remove(&(i, j)),
            }
        })
        .collect())
}
