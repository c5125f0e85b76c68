//! Recommend detection settings: the strategy that notices a silently dead peer within a deadline on a
//! measured path, idle and busy, without letting an idle connection outlive a middlebox's idle timeout.
//! Pure: everything comes in as arguments, and every recommendation is checked against
//! [`predict_on_path`] before it is returned, so it can never promise more than the prediction gives.
//!
//! The order of preference:
//! 1. kernel only — keepalive for idle connections plus TCP_USER_TIMEOUT for busy ones (keepalive is
//!    silent while data is unacknowledged). Needs no change to the application; Linux only, because
//!    elsewhere nothing bounds the retransmissions of a busy connection (~15 min).
//! 2. an application heartbeat, when the kernel cannot: deadlines under 2 s (keepalive has 1 s
//!    granularity and needs at least 1 s idle + 1 probe), an idle timeout too short for keepalive, or
//!    no user timeout on this system.
//!
//! Impossible asks are refused with the reason: below 10 ms (the heartbeat's floor), below two round
//! trips of the path (nothing can tell dead from slow faster than that).

use std::time::Duration;

use crate::predict::phase::AtCut;
use crate::predict::{
    BAND_MARGIN, Backoff, Basis, PathTimes, Prediction, assumed_effective, path_rto, predict_at,
    predict_on_path,
};
use crate::scenario::{BUSY_TICK, Fault, Load};
use crate::settings::KernelTimers;
use crate::strategy::{Heartbeat, Keepalive, Strategy};
use crate::units::Millis;
use crate::units::{format_duration, secs2};

/// The shortest deadline tcphb will plan for: its heartbeat interval floor.
pub const MIN_DEADLINE: Duration = Heartbeat::MIN_INTERVAL;
/// Keep periodic traffic this far under a known idle timeout (fraction of it), for timer slack.
const IDLE_TIMEOUT_SHARE: f64 = 0.8;
/// Retransmissions a user timeout should leave room for before a busy connection is declared dead.
const WANTED_RETRANSMISSIONS: u32 = 3;

/// The faults a kernel-only recommendation promises to notice within the deadline; a heartbeat adds
/// [`Fault::Freeze`] (a hung peer whose kernel still ACKs: nothing else notices it).
pub const KERNEL_COVERS: [Fault; 4] = [
    Fault::Blackhole,
    Fault::Unreachable,
    Fault::Reboot,
    Fault::Crash,
];
/// Every fault `--verify` makes in the lab: the ones a recommendation may cover.
pub const VERIFIED_FAULTS: [Fault; 5] = [
    Fault::Blackhole,
    Fault::Unreachable,
    Fault::Reboot,
    Fault::Freeze,
    Fault::Crash,
];
/// Linux's shortest delayed ACK (TCP_DELACK_MIN).
const DELAYED_ACK: Duration = Duration::from_millis(40);
/// IPv4 (20) + TCP (20) + the timestamp option (12): the bytes of a bare segment on the wire.
pub const BARE_SEGMENT_BYTES: u64 = 52;

/// What is asked, and what is known about the path.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    /// Notice a dead peer within this long after the last packet heard, idle or busy.
    pub within: Duration,
    /// Measured round trip and RTO of the path.
    pub path: PathTimes,
    /// The kernel's timers (retransmission budget, default keepalive).
    pub kernel: KernelTimers,
    /// An idle connection is known to survive this long on the path (the low end of a measured idle
    /// timeout bracket): keep idle traffic more frequent than that. `None`: no idle timeout known.
    pub keep_under: Option<Duration>,
    /// Whether this system has TCP_USER_TIMEOUT (Linux).
    pub user_timeout_supported: bool,
    /// Whether the peer answered a `PING n` (with `PONG n` or an echo): then a heartbeat is part of
    /// the recommendation, the only thing that notices a hung peer whose kernel still ACKs.
    pub peer_answers_ping: bool,
    /// The protocol the peer was asked in (`--ping`): the recommended heartbeat speaks it.
    pub ping_protocol: crate::strategy::Protocol,
}

/// A fault the recommendation does not promise to notice within the deadline, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncovered {
    pub fault: Fault,
    pub why: String,
}

/// What the recommended settings send on an idle connection, in steady state, each way (IPv4 with
/// TCP timestamps; IPv6 adds 20 bytes a packet).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub packets_per_min_out: f64,
    pub packets_per_min_in: f64,
    pub bytes_per_min_out: f64,
    pub bytes_per_min_in: f64,
    /// The period of the idle traffic that keeps the flow fresh in a middlebox (the shortest of the
    /// keepalive and heartbeat periods); `None` when nothing is sent on an idle connection.
    pub period: Option<Duration>,
}

/// A strategy that meets the ask, with its predictions on this path.
#[derive(Debug, Clone)]
pub struct Recommendation {
    pub strategy: Strategy,
    /// The strategy as flags for `tcphb connect` (`--keepalive 15s,5s,3 --user-timeout 30s`).
    pub flags: String,
    /// Predicted detection on an idle connection, blackhole (the expected value and its band).
    pub idle: Prediction,
    /// Predicted detection on a busy connection, blackhole.
    pub busy: Prediction,
    /// The worst case over the faults covered, since the last packet heard, band and
    /// [`BAND_MARGIN`] included: ≤ the deadline.
    pub worst_idle: Duration,
    pub worst_busy: Duration,
    /// The faults noticed within the deadline, idle and busy.
    pub covers: Vec<Fault>,
    /// The faults not promised, with the reason.
    pub uncovered: Vec<Uncovered>,
    /// What the settings send on an idle connection.
    pub cost: Cost,
    /// Where the settings meet a known limit of the path (its idle timeout), with numbers.
    pub warnings: Vec<String>,
    /// Why these values, and what to keep in mind, one sentence each.
    pub notes: Vec<String>,
}

/// Why nothing can be recommended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// Parse `--detect-within`: a duration of at least [`MIN_DEADLINE`].
pub fn parse_deadline(s: &str) -> Result<Duration, crate::strategy::SpecError> {
    let d = crate::strategy::parse_duration(s)?;
    if d < MIN_DEADLINE {
        return Err(crate::strategy::SpecError(format!(
            "--detect-within {s} is below 10 ms: nothing tcphb knows can notice a dead peer that fast"
        )));
    }
    Ok(d)
}

/// The strategy as `tcphb connect` flags.
pub fn flags(s: &Strategy) -> String {
    let mut f = Vec::new();
    if s.keepalive != Keepalive::Off {
        f.push(format!("--keepalive {}", s.keepalive));
    }
    if let Some(u) = s.user_timeout {
        f.push(format!("--user-timeout {}", format_duration(u)));
    }
    if let Some(h) = s.heartbeat {
        f.push(format!("--heartbeat {h}"));
    }
    f.join(" ")
}

/// The worst case of `s` under `fault` and `load` on the path, counted from the last packet heard (the
/// basis of the deadline and of the lab's `silence_ms`), with [`BAND_MARGIN`] added for a loaded
/// machine's timers; `None` when it may never notice.
///
/// The phase-aware band of [`predict_at`] (timer slack, every keepalive phase, the RFC 6069 revert
/// overshoot of an unreachable router, the RTO clamp) gives the high end. A band counted from the fault
/// (reboot, crash) is moved onto the last-heard basis by the longest the connection can have been
/// quiet before the cut. A reboot is a blackhole until the path heals and a RST only ends it sooner,
/// so it is never worse than the blackhole; a heartbeat gives up on every fault on its own once its
/// pongs stop, so a strategy with one is never worse than its heartbeat alone on a blackhole.
pub fn worst_case(
    s: &Strategy,
    fault: Fault,
    load: Load,
    kernel: &KernelTimers,
    path: &PathTimes,
) -> Option<Duration> {
    worst_with(
        s,
        fault,
        load,
        kernel,
        path,
        heartbeat_alone(s, load, kernel, path),
    )
}

/// The top of `s`'s band for `fault` under `load`, counted from the last packet heard.
fn band(
    s: &Strategy,
    fault: Fault,
    load: Load,
    kernel: &KernelTimers,
    path: &PathTimes,
) -> Option<Duration> {
    let eff = assumed_effective(s, kernel);
    let at = AtCut {
        rto: Some(path.rto),
        ..AtCut::default()
    };
    let p = predict_at(&eff, fault, load, kernel, path.rtt, at);
    let max = p.max?;
    Some(match p.basis {
        Basis::LastHeard => max,
        Basis::Fault => max + quiet(s, load, kernel, path)?,
    })
}

/// The band of `s`'s heartbeat alone on a blackhole: a bound on every fault (see [`worst_case`]).
fn heartbeat_alone(
    s: &Strategy,
    load: Load,
    kernel: &KernelTimers,
    path: &PathTimes,
) -> Option<Duration> {
    let alone = Strategy {
        heartbeat: Some(s.heartbeat?),
        ..Strategy::default()
    };
    band(&alone, Fault::Blackhole, load, kernel, path)
}

/// [`worst_case`] with the heartbeat's bound already worked out (it is the same for every fault).
fn worst_with(
    s: &Strategy,
    fault: Fault,
    load: Load,
    kernel: &KernelTimers,
    path: &PathTimes,
    heartbeat: Option<Duration>,
) -> Option<Duration> {
    let mut worst = band(s, fault, load, kernel, path);
    if fault == Fault::Reboot {
        worst = min_some(worst, band(s, Fault::Blackhole, load, kernel, path));
    }
    min_some(worst, heartbeat).map(|w| w + BAND_MARGIN)
}

fn min_some(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The longest a connection with `s` hears nothing from a live peer: a busy one hears an ACK within a
/// round trip of its next write (plus a delayed ACK's 40 ms), an idle one the answer to its next heartbeat or keepalive probe (a round trip after it).
fn quiet(s: &Strategy, load: Load, kernel: &KernelTimers, path: &PathTimes) -> Option<Duration> {
    if load == Load::Busy {
        return Some(path.rtt + BUSY_TICK + DELAYED_ACK);
    }
    let eff = assumed_effective(s, kernel);
    let hb = eff.heartbeat().map(|(i, _)| i);
    let ka = eff
        .keepalive()
        .map(|(idle, interval, _)| idle.max(interval));
    min_some(hb, ka).map(|q| q + path.rtt)
}

/// The faults `s` claims: the kernel's four, and a frozen peer only with a heartbeat.
pub fn claims(s: &Strategy) -> Vec<Fault> {
    let mut f = KERNEL_COVERS.to_vec();
    if s.heartbeat.is_some() {
        f.insert(3, Fault::Freeze);
    }
    f
}

/// The worst case of `s` over the faults it claims, (idle, busy); `None` if some claimed cell may
/// never notice.
pub fn worst_over_claims(
    s: &Strategy,
    kernel: &KernelTimers,
    path: &PathTimes,
) -> Option<(Duration, Duration)> {
    let hb_idle = heartbeat_alone(s, Load::Idle, kernel, path);
    let hb_busy = heartbeat_alone(s, Load::Busy, kernel, path);
    let mut w = (Duration::ZERO, Duration::ZERO);
    for f in claims(s) {
        w.0 =
            w.0.max(worst_with(s, f, Load::Idle, kernel, path, hb_idle)?);
        w.1 =
            w.1.max(worst_with(s, f, Load::Busy, kernel, path, hb_busy)?);
    }
    Some(w)
}

/// A candidate maker: a strategy for a target deadline, or why there is none.
type Maker = fn(&Ask) -> Result<(Strategy, Vec<String>), String>;

/// Lower the target from the deadline until the candidate `make` builds for it has a worst case (over
/// the faults it claims, idle and busy) within the deadline.
fn search(ask: &Ask, make: Maker) -> Result<(Strategy, Vec<String>), String> {
    let d = ask.within;
    // 1/64 of the deadline a step: a whole-second keepalive moves every few steps, a heartbeat
    // tightens by ~1.5 % a step.
    let step = (d / 64).max(Duration::from_millis(1));
    let mut target = d;
    let mut why = String::new();
    let mut late = None;
    // Whole-second keepalive values stay the same over several steps: judge each candidate once.
    let mut rejected: Option<Strategy> = None;
    while target >= MIN_DEADLINE {
        let a = Ask {
            within: target,
            ..*ask
        };
        match make(&a) {
            Ok((s, _)) if rejected.as_ref() == Some(&s) => {}
            Ok((s, notes)) => match worst_over_claims(&s, &ask.kernel, &ask.path) {
                Some((i, b)) if i <= d && b <= d => return Ok((s, notes)),
                w => {
                    late.get_or_insert(format!(
                        "the best candidate ({}) has a worst case of {} (its band plus {} ms of margin for a loaded machine), later than {}",
                        s.spec(),
                        w.map_or("never".into(), |(i, b)| secs2(i.max(b))),
                        BAND_MARGIN.as_millis(),
                        format_duration(d)
                    ));
                    rejected = Some(s);
                }
            },
            // The first reason (for the deadline itself) is the one worth saying.
            Err(e) if why.is_empty() => why = e,
            Err(_) => {}
        }
        let Some(t) = target.checked_sub(step) else {
            break;
        };
        target = t;
    }
    Err(late.unwrap_or(why))
}

/// Recommend a strategy for `ask`, or say why none exists.
pub fn recommend(ask: &Ask) -> Result<Recommendation, Refusal> {
    let d = ask.within;
    if d < MIN_DEADLINE {
        return Err(Refusal(format!(
            "{} is below 10 ms: no mechanism tcphb knows can decide that fast (its heartbeat ticks at 10 ms at best)",
            format_duration(d)
        )));
    }
    if d < ask.path.rtt * 2 {
        return Err(Refusal(format!(
            "{} is less than two round trips on this path (RTT {:.1} ms): nothing can tell a dead peer from a slow one that fast",
            format_duration(d),
            ask.path.rtt.as_secs_f64() * 1000.0
        )));
    }
    let kernel = if ask.user_timeout_supported {
        search(ask, kernel_strategy)
    } else {
        Err(
            "this system has no TCP_USER_TIMEOUT, so only retransmissions (~15 min) would end a busy connection"
                .to_string(),
        )
    };
    let (s, notes) = match (kernel, ask.peer_answers_ping) {
        (Ok((k, mut notes)), true) => {
            // Each part keeps the promise on its own; together the first to notice ends it.
            let (h, hb_notes) = search(ask, heartbeat_strategy).map_err(Refusal)?;
            notes.extend(hb_notes);
            notes.push(
                "the peer answered PING: the heartbeat is the one mechanism that notices a peer process that hangs while its kernel still ACKs"
                    .into(),
            );
            (
                Strategy {
                    heartbeat: h.heartbeat,
                    ..k
                },
                notes,
            )
        }
        (Ok((k, mut notes)), false) => {
            notes.push(
                "the peer did not answer PING, so no heartbeat: a peer process that hangs while its kernel still ACKs (freeze) goes unnoticed"
                    .into(),
            );
            (k, notes)
        }
        (Err(why_not_kernel), answers) => {
            let (s, mut notes) = search(ask, heartbeat_strategy).map_err(Refusal)?;
            notes.insert(
                0,
                format!("a heartbeat, because the kernel alone cannot: {why_not_kernel}"),
            );
            if !answers {
                notes.push(
                    "the peer did not answer PING: your application and its peer must send `PING n` lines and answer them, as tcphb listen and echo services do"
                        .into(),
                );
            }
            (s, notes)
        }
    };
    finish(ask, s, notes)
}

/// Predict the chosen strategy, check its worst case once more, and say what it covers and costs.
fn finish(ask: &Ask, s: Strategy, notes: Vec<String>) -> Result<Recommendation, Refusal> {
    let eff = assumed_effective(&s, &ask.kernel);
    let idle = predict_on_path(&eff, Load::Idle, &ask.kernel, &ask.path);
    let busy = predict_on_path(&eff, Load::Busy, &ask.kernel, &ask.path);
    let Some((worst_idle, worst_busy)) = worst_over_claims(&s, &ask.kernel, &ask.path)
        .filter(|(i, b)| *i <= ask.within && *b <= ask.within)
    else {
        return Err(Refusal(format!(
            "the best candidate ({}) could miss {} in some fault it should cover",
            s.spec(),
            format_duration(ask.within)
        )));
    };
    let covers = claims(&s);
    let uncovered = if s.heartbeat.is_none() {
        vec![Uncovered {
            fault: Fault::Freeze,
            why: "a hung peer process whose kernel still ACKs keepalive probes and data: only an application heartbeat notices it".into(),
        }]
    } else {
        Vec::new()
    };
    let cost = cost(&s, &ask.kernel);
    let warnings = warnings(ask, &s, &cost);
    Ok(Recommendation {
        flags: flags(&s),
        strategy: s,
        idle,
        busy,
        worst_idle,
        worst_busy,
        covers,
        uncovered,
        cost,
        warnings,
        notes,
    })
}

/// What `s` sends on an idle connection in steady state. A heartbeat: `PING n` out and `PONG n` in
/// (which carries the ACK of the ping), then our bare ACK of the pong. A keepalive probe (a bare
/// segment of 0–1 byte) out and its bare ACK in, every `max(idle, interval)` once answered probes
/// re-arm the timer — and none at all when heartbeats come more often than the keepalive idle time.
pub fn cost(s: &Strategy, kernel: &KernelTimers) -> Cost {
    let eff = assumed_effective(s, kernel);
    let per_min = |period: Duration| 60.0 / period.as_secs_f64().max(0.001);
    let mut c = Cost {
        packets_per_min_out: 0.0,
        packets_per_min_in: 0.0,
        bytes_per_min_out: 0.0,
        bytes_per_min_in: 0.0,
        period: None,
    };
    let hb = eff.heartbeat().map(|(i, _)| i);
    if let Some(i) = hb {
        let n = per_min(i);
        let (ping, answer) = crate::ping::exchange_bytes(
            s.heartbeat
                .map_or(crate::strategy::Protocol::Line, |h| h.protocol),
        );
        c.packets_per_min_out += 2.0 * n;
        c.packets_per_min_in += n;
        c.bytes_per_min_out += n * (2 * BARE_SEGMENT_BYTES + ping) as f64;
        c.bytes_per_min_in += n * (BARE_SEGMENT_BYTES + answer) as f64;
        c.period = Some(i);
    }
    if let Some((idle, interval, _)) = eff.keepalive()
        && hb.is_none_or(|i| i >= idle)
    {
        let p = idle.max(interval);
        let n = per_min(p);
        c.packets_per_min_out += n;
        c.packets_per_min_in += n;
        c.bytes_per_min_out += n * BARE_SEGMENT_BYTES as f64;
        c.bytes_per_min_in += n * BARE_SEGMENT_BYTES as f64;
        c.period = min_some(c.period, Some(p));
    }
    c
}

/// Where the settings meet the path's known idle timeout: the traffic that keeps the flow alive
/// through it (a NAT entry held for the connection's whole life), and how far under it they stay.
fn warnings(ask: &Ask, s: &Strategy, cost: &Cost) -> Vec<String> {
    let mut w = Vec::new();
    let Some(k) = ask.keep_under else {
        return w;
    };
    let eff = assumed_effective(s, &ask.kernel);
    if let Some(p) = cost.period
        && p < k
    {
        w.push(format!(
            "idle traffic every {} keeps this flow alive through the middlebox that forgets idle flows (idle connections survived {}): \
             its NAT/firewall entry is held as long as the connection lives, at {:.0} packets/min each way",
            format_duration(p),
            secs2(k),
            cost.packets_per_min_out.max(cost.packets_per_min_in)
        ));
    }
    if let Some((idle, _, _)) = eff.keepalive() {
        if idle < k {
            w.push(format!(
                "keepalive idle {} is under the path's idle timeout ({} survived): {} to spare",
                format_duration(idle),
                secs2(k),
                secs2(k - idle)
            ));
        } else {
            w.push(format!(
                "keepalive idle {} is above the path's idle timeout ({} survived): the middlebox may forget the flow before the first probe",
                format_duration(idle),
                secs2(k)
            ));
        }
    }
    w
}

/// Keepalive + user timeout with whole-second values, the kill at the last probe tick.
fn kernel_strategy(ask: &Ask) -> Result<(Strategy, Vec<String>), String> {
    let total = ask.within.as_secs();
    if total < 2 {
        return Err(format!(
            "{} is under 2 s, and keepalive has 1 s granularity (at least 1 s idle + 1 probe × 1 s)",
            format_duration(ask.within)
        ));
    }
    // A probe's answer must be able to come back before the next probe is due.
    let min_interval = (ask.path.rtt * 2).as_secs() + 1;
    let cap_idle = ask
        .keep_under
        .map(|k| Duration::from_secs_f64(k.as_secs_f64() * IDLE_TIMEOUT_SHARE).as_secs());
    if cap_idle == Some(0) {
        return Err(format!(
            "the path forgets idle connections after {} and keepalive cannot probe more often than every 1 s",
            secs2(ask.keep_under.expect("cap_idle is Some"))
        ));
    }
    // Three probes tolerate two lost ones; fewer only when the deadline leaves no room.
    for count in [3u64, 2, 1] {
        let mut interval = (total / (2 * count)).max(min_interval);
        let Some(mut idle) = total.checked_sub(count * interval).filter(|i| *i >= 1) else {
            continue;
        };
        let mut count = count;
        if let Some(cap) = cap_idle {
            // Under a middlebox's idle timeout, probes must come more often than it forgets, also
            // after a lost one; the deadline left over buys more probes instead (Linux: at most 127).
            idle = idle.min(cap);
            if interval > cap && cap >= min_interval {
                interval = cap;
                count = ((total - idle) / interval).clamp(1, 127);
            }
        }
        if idle < interval {
            // An answered probe re-arms the timer one interval later, so a long-lived idle
            // connection probes every `interval`, not `idle`: the deadline would hold only for a
            // cut before the first probe (predict::phase).
            continue;
        }
        // A busy connection's user timeout counts from its first retransmission, one RTO after
        // the first unacknowledged send (predict::busy_death_on): leave that RTO room. An idle
        // one gives up at the first probe tick at or after the user timeout: the last one.
        let first_rto = path_rto(Some(ask.path.rto), &ask.kernel);
        let last_tick = Duration::from_secs(idle + count * interval);
        let Some(room) = ask.within.checked_sub(first_rto).filter(|r| !r.is_zero()) else {
            continue;
        };
        let uto = Duration::from_millis(room.min(last_tick).ms());
        let s = Strategy {
            label: None,
            keepalive: Keepalive::Custom {
                idle: Duration::from_secs(idle),
                interval: Duration::from_secs(interval),
                count: Some(count as u32),
            },
            user_timeout: Some(uto),
            heartbeat: None,
        };
        let mut notes = vec![format!(
            "kernel only, no application change: keepalive probes after {idle} s idle, then every {interval} s; \
                 the user timeout ({}) ends the connection at the {}{} probe, and also ends a busy one (keepalive is silent while data is unacknowledged)",
            format_duration(uto),
            count,
            ordinal(count)
        )];
        if let (Some(k), Some(_)) = (ask.keep_under, cap_idle) {
            notes.push(format!(
                "keepalive idle {idle} s stays under the path's idle timeout (connections idle {} survived)",
                secs2(k)
            ));
        }
        let retrans = Backoff::of(&ask.kernel).within(uto, ask.path.rto);
        if retrans < WANTED_RETRANSMISSIONS {
            notes.push(format!(
                "aggressive: with the measured RTO of {} ms a busy connection gets only {retrans} retransmissions within {}, \
                 so a short loss burst would end it",
                ask.path.rto.as_millis(),
                format_duration(uto)
            ));
        }
        return Ok((s, notes));
    }
    Err(format!(
        "the round trip ({:.1} ms) leaves no room for even one keepalive probe within {}",
        ask.path.rtt.as_secs_f64() * 1000.0,
        format_duration(ask.within)
    ))
}

fn ordinal(n: u64) -> &'static str {
    match n {
        1 => "st",
        2 => "nd",
        3 => "rd",
        _ => "th",
    }
}

/// A heartbeat of `misses` intervals within the deadline, each interval long enough for a round trip
/// and short enough to keep a middlebox's idle timer fresh.
fn heartbeat_strategy(ask: &Ask) -> Result<(Strategy, Vec<String>), String> {
    let d = ask.within;
    let floor = Heartbeat::MIN_INTERVAL.max(ask.path.rtt);
    let mut misses: u32 = if d >= floor * 3 { 3 } else { 2 };
    let mut interval = Duration::from_millis((d / misses).ms());
    let mut notes = Vec::new();
    if let Some(k) = ask.keep_under {
        let cap = Duration::from_millis((k.as_secs_f64() * IDLE_TIMEOUT_SHARE * 1000.0) as u64);
        if interval > cap {
            interval = cap;
            misses = ((d.as_millis() / interval.as_millis().max(1)) as u32).min(1000);
            notes.push(format!(
                "heartbeat every {} stays under the path's idle timeout (connections idle {} survived)",
                format_duration(interval),
                secs2(k)
            ));
        }
    }
    if interval < floor || misses < 1 {
        return Err(format!(
            "a heartbeat would need an interval of {} (under {}: 10 ms or one round trip of {:.1} ms)",
            format_duration(interval),
            format_duration(floor),
            ask.path.rtt.as_secs_f64() * 1000.0
        ));
    }
    notes.push(format!(
        "heartbeat: a PING every {}, dead after {misses} silent intervals ({}), idle or busy, and also when the peer process hangs",
        format_duration(interval),
        format_duration(interval * misses)
    ));
    Ok((
        Strategy {
            label: None,
            keepalive: Keepalive::Off,
            user_timeout: None,
            heartbeat: Some(Heartbeat {
                interval,
                misses,
                protocol: ask.ping_protocol,
            }),
        },
        notes,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ask(within: Duration, rtt: Duration, keep_under: Option<Duration>, uto: bool) -> Ask {
        Ask {
            within,
            path: PathTimes {
                rtt,
                // Linux: srtt + 4·rttvar, at least 200 ms; about 3 RTT right after the handshake.
                rto: (rtt * 3).max(ms(200)),
            },
            kernel: KernelTimers::default(),
            keep_under,
            user_timeout_supported: uto,
            peer_answers_ping: false,
            ping_protocol: crate::strategy::Protocol::Line,
        }
    }

    fn pinged(a: Ask) -> Ask {
        Ask {
            peer_answers_ping: true,
            ..a
        }
    }

    #[test]
    fn thirty_seconds_on_a_lan_is_kernel_only() {
        let r = recommend(&ask(Duration::from_secs(30), ms(1), None, true)).unwrap();
        assert!(r.strategy.heartbeat.is_none(), "{r:?}");
        assert!(r.strategy.user_timeout.is_some(), "{r:?}");
        assert!(r.flags.starts_with("--keepalive "), "{}", r.flags);
        // The worst case, not the expected value, is what fits the deadline.
        assert!(r.worst_idle <= Duration::from_secs(30), "{r:?}");
        assert!(r.worst_busy <= Duration::from_secs(30), "{r:?}");
        assert!(r.idle.expected.unwrap() < r.worst_idle, "{r:?}");
        assert_eq!(r.uncovered.len(), 1);
        assert_eq!(r.uncovered[0].fault, Fault::Freeze);
        assert!(!r.covers.contains(&Fault::Freeze));
    }

    #[test]
    fn six_seconds_leaves_room_for_the_band_that_broke_the_old_promise() {
        // The old recommendation for 6 s was ka=3s,1s,3+uto=6s: measured 6.2–7.3 s. Its worst case
        // (the unreachable overshoot, timer slack) is over 6 s, so it is no longer chosen.
        let a = ask(Duration::from_secs(6), ms(0), None, true);
        let old: Strategy = "ka=3s,1s,3+uto=6s".parse().unwrap();
        let (_, busy) = worst_over_claims(&old, &a.kernel, &a.path).unwrap();
        assert!(busy > Duration::from_secs(6), "{busy:?}");
        let r = recommend(&a).unwrap();
        assert_ne!(r.strategy.spec(), old.spec());
        assert!(
            r.worst_idle.max(r.worst_busy) <= Duration::from_secs(6),
            "{r:?}"
        );
    }

    #[test]
    fn a_peer_that_answers_ping_gets_a_heartbeat_that_covers_freeze() {
        let r = recommend(&pinged(ask(Duration::from_secs(6), ms(0), None, true))).unwrap();
        let h = r.strategy.heartbeat.expect("a heartbeat");
        assert!(h.deadline() < Duration::from_secs(6), "{r:?}");
        assert!(r.covers.contains(&Fault::Freeze), "{r:?}");
        assert!(r.uncovered.is_empty(), "{r:?}");
        assert!(r.flags.contains("--heartbeat"), "{}", r.flags);
        // Its cost: a ping out and its ACK, a pong in, each interval.
        let per_min = 60.0 / h.interval.as_secs_f64();
        assert!(r.cost.packets_per_min_in >= per_min - 1e-6, "{:?}", r.cost);
        assert!(
            r.cost.packets_per_min_out >= 2.0 * per_min - 1e-6,
            "{:?}",
            r.cost
        );
    }

    #[test]
    fn cost_of_keepalive_is_two_bare_segments_a_period() {
        let s: Strategy = "ka=10s,2s,3+uto=15s".parse().unwrap();
        let c = cost(&s, &KernelTimers::default());
        assert_eq!(c.period, Some(Duration::from_secs(10)));
        assert!((c.packets_per_min_out - 6.0).abs() < 1e-9, "{c:?}");
        assert!((c.bytes_per_min_in - 6.0 * 52.0).abs() < 1e-9, "{c:?}");
        // Heartbeats more often than the keepalive idle: keepalive never fires.
        let s: Strategy = "ka=10s,2s,3+hb=1s,3".parse().unwrap();
        let c = cost(&s, &KernelTimers::default());
        assert_eq!(c.period, Some(Duration::from_secs(1)));
        assert!((c.packets_per_min_out - 120.0).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn a_heartbeat_costs_its_own_protocol_s_bytes() {
        let k = KernelTimers::default();
        let line = cost(&"hb=1s,3".parse().unwrap(), &k);
        let mqtt = cost(&"hb=1s,3/mqtt".parse().unwrap(), &k);
        // 60 pings a minute: PINGREQ is 2 bytes where `PING 1234\n` is 10.
        assert!(
            (line.bytes_per_min_out - mqtt.bytes_per_min_out - 60.0 * 8.0).abs() < 1e-9,
            "{line:?} {mqtt:?}"
        );
        assert_eq!(line.packets_per_min_out, mqtt.packets_per_min_out);
    }

    #[test]
    fn warns_with_numbers_where_traffic_holds_a_nat_entry() {
        let r = recommend(&ask(
            Duration::from_secs(30),
            ms(1),
            Some(Duration::from_secs(20)),
            true,
        ))
        .unwrap();
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("keeps this flow alive")),
            "{:?}",
            r.warnings
        );
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("under the path's idle timeout")),
            "{:?}",
            r.warnings
        );
        assert!(
            recommend(&ask(Duration::from_secs(30), ms(1), None, true))
                .unwrap()
                .warnings
                .is_empty()
        );
    }

    #[test]
    fn under_two_seconds_needs_a_heartbeat() {
        let r = recommend(&ask(ms(1500), ms(1), None, true)).unwrap();
        let h = r.strategy.heartbeat.expect("a heartbeat");
        assert_eq!(h.misses, 3);
        assert!(r.notes[0].contains("1 s granularity"), "{:?}", r.notes);
        assert!(
            r.worst_idle <= ms(1500) && r.worst_busy <= ms(1500),
            "{r:?}"
        );
    }

    #[test]
    fn without_user_timeout_busy_connections_need_a_heartbeat() {
        let r = recommend(&ask(Duration::from_secs(30), ms(1), None, false)).unwrap();
        assert!(r.strategy.spec().starts_with("hb="), "{r:?}");
        assert!(r.strategy.user_timeout.is_none());
        assert!(r.notes[0].contains("TCP_USER_TIMEOUT"), "{:?}", r.notes);
    }

    #[test]
    fn refuses_impossible_asks_with_a_reason() {
        let e = recommend(&ask(ms(5), Duration::from_micros(50), None, true)).unwrap_err();
        assert!(e.0.contains("below 10 ms"), "{e}");
        let e = recommend(&ask(ms(100), ms(80), None, true)).unwrap_err();
        assert!(e.0.contains("two round trips"), "{e}");
        // A path that forgets idle flows after 5 ms: a heartbeat would have to beat every 4 ms.
        let e = recommend(&ask(Duration::from_secs(10), ms(1), Some(ms(5)), true)).unwrap_err();
        assert!(e.0.contains("interval"), "{e}");
    }

    #[test]
    fn keeps_idle_traffic_under_the_idle_timeout() {
        let r = recommend(&ask(
            Duration::from_secs(30),
            ms(1),
            Some(Duration::from_secs(3)),
            true,
        ))
        .unwrap();
        let Keepalive::Custom {
            idle,
            interval,
            count,
        } = r.strategy.keepalive
        else {
            panic!("{r:?}")
        };
        // Probes every 2 s, idle or after a lost probe; the rest of the 30 s buys more probes.
        assert_eq!(
            (idle, interval),
            (Duration::from_secs(2), Duration::from_secs(2))
        );
        assert!(count.unwrap() >= 3, "{r:?}");
        assert!(
            r.strategy.user_timeout.unwrap() < Duration::from_secs(30),
            "{r:?}"
        );
        // An idle timeout under 1.25 s is beyond keepalive: heartbeat under it.
        let r = recommend(&ask(Duration::from_secs(30), ms(1), Some(ms(1000)), true)).unwrap();
        let h = r.strategy.heartbeat.unwrap();
        assert_eq!(h.interval, ms(800));
        assert!(h.deadline() <= Duration::from_secs(30));
    }

    #[test]
    fn long_round_trips_widen_the_probe_interval() {
        // 1.2 s RTT (a congested satellite link): probes at least 3 s apart.
        let r = recommend(&ask(Duration::from_secs(20), ms(1200), None, true)).unwrap();
        let Keepalive::Custom { interval, .. } = r.strategy.keepalive else {
            panic!("{r:?}")
        };
        assert!(interval >= Duration::from_secs(3), "{r:?}");
    }

    #[test]
    fn never_recommends_what_its_own_prediction_says_is_too_late() {
        let deadlines = [
            10u64, 15, 25, 99, 250, 999, 1000, 1999, 2000, 2500, 3000, 4999, 7000, 10_000, 59_000,
            600_000, 7_200_000,
        ];
        let rtts = [0u64, 1, 30, 120, 700, 2500];
        let keeps = [
            None,
            Some(4u64),
            Some(900),
            Some(1300),
            Some(3000),
            Some(30_000),
        ];
        let mut ok = 0;
        for &d in &deadlines {
            for &rtt in &rtts {
                for &keep in &keeps {
                    for (uto, ping) in [(true, false), (false, false), (true, true), (false, true)]
                    {
                        let a = ask(ms(d), ms(rtt), keep.map(ms), uto);
                        let a = if ping { pinged(a) } else { a };
                        match recommend(&a) {
                            Ok(r) => {
                                ok += 1;
                                // The worst case over every fault it claims, idle and busy, band
                                // and margin included, fits the deadline.
                                for f in &r.covers {
                                    for load in [Load::Idle, Load::Busy] {
                                        let w =
                                            worst_case(&r.strategy, *f, load, &a.kernel, &a.path)
                                                .expect("a covered fault is always noticed");
                                        assert!(w <= ms(d), "{f:?} {load:?} {w:?}: {a:?} -> {r:?}");
                                    }
                                }
                                assert!(r.worst_idle.max(r.worst_busy) <= ms(d), "{a:?} -> {r:?}");
                                assert_eq!(
                                    r.covers.contains(&Fault::Freeze),
                                    r.strategy.heartbeat.is_some()
                                );
                                if ping && r.strategy.heartbeat.is_none() {
                                    panic!(
                                        "the peer answers PING but no heartbeat: {a:?} -> {r:?}"
                                    );
                                }
                                let eff = assumed_effective(&r.strategy, &a.kernel);
                                if let Some(k) = keep {
                                    if let Some((idle, interval, _)) = eff.keepalive() {
                                        assert!(idle < ms(k), "{a:?} -> {r:?}");
                                        // The interval too, unless a round trip forbids it.
                                        assert!(
                                            interval < ms(k) || ms(rtt) * 2 >= ms(k * 8 / 10),
                                            "{a:?} -> {r:?}"
                                        );
                                    }
                                    if let Some((i, _)) = eff.heartbeat() {
                                        assert!(i < ms(k), "{a:?} -> {r:?}");
                                    }
                                }
                                if !uto {
                                    assert!(r.strategy.user_timeout.is_none());
                                }
                                // What is printed parses back into the same strategy.
                                let s = &r.strategy;
                                if let Some(h) = s.heartbeat {
                                    assert_eq!(h.to_string().parse::<Heartbeat>().unwrap(), h);
                                }
                                assert_eq!(
                                    s.keepalive.to_string().parse::<Keepalive>().unwrap(),
                                    s.keepalive
                                );
                            }
                            Err(Refusal(why)) => {
                                assert!(!why.is_empty());
                                // Refused only when it really is hard: short deadlines, long RTTs or
                                // tiny idle timeouts.
                                assert!(
                                    // A band plus the margin for a loaded machine (100 ms)
                                    // must fit.
                                    d < 200
                                        || d < 2 * rtt + 200
                                        || keep.is_some_and(|k| k * 8 / 10 < rtt.max(10)),
                                    "refused {a:?}: {why}"
                                );
                            }
                        }
                    }
                }
            }
        }
        assert!(ok > 300, "only {ok} recommendations");
    }
}
