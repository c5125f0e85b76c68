//! Pure prediction of when and how a dead peer will be noticed, from the effective settings, the fault,
//! the load and the kernel's timers. No I/O: everything it needs is passed in.
//!
//! The rules follow Linux (net/ipv4/tcp_timer.c):
//! - keepalive: the timer counts from the last packet received; it probes after `idle`, then every
//!   `interval`, and gives up when `count` probes are unanswered: idle + interval × count. It stays silent
//!   while data is unacknowledged.
//! - TCP_USER_TIMEOUT with keepalive on an idle connection: checked only at probe ticks, and it replaces the
//!   count: the first tick at or after the user timeout with at least one probe out.
//! - retransmission: gives up once the RTO back-off budget of tcp_retries2 is spent, computed from
//!   TCP_RTO_MIN: (2^(N+1)−1)·RTO_min for N ≤ 9, else 204.6 s + (N−9)·120 s (924.6 s for 15). The real RTO
//!   is at least RTO_min, so this is a lower bound. A user timeout replaces this budget. On a measured
//!   path ([`predict_on_path`]) the give-up is the first firing of the retransmission timer — which runs
//!   on the path's own RTO — at or after that budget ([`Backoff::giveup`]).
//! - heartbeat: interval × misses after the last line heard.
//!
//! Every prediction is a band: the timer wheel fires each kernel timer late by up to its level's
//! granularity ([`phase::Wheel`]), and where the keepalive timer's phase at the cut is unknown the band
//! spans every phase ([`phase::KeepaliveTimer::phases`]). Where it is known (the lab reads it at the
//! cut), [`predict_at`] predicts for that phase.

pub mod os;
pub mod phase;

use std::time::Duration;

use serde::Serialize;

use crate::detection::{Detection, Mechanism, Outcome};
use crate::scenario::{BUSY_TICK, Fault, Load};
use crate::settings::{Effective, KernelTimers};
use crate::units::Millis;

/// What the expected time is counted from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// From the last packet heard from the peer (comparable with `silence_ms`).
    LastHeard,
    /// From the instant of the fault (comparable with the latency from the cut).
    Fault,
}

/// The expected detection for one (settings, fault, load).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Prediction {
    /// Expected time, `None` for never: what the timers are asked for, in the phase predicted for.
    pub expected: Option<Duration>,
    /// The band the detection falls in: timer-wheel slack and, where the phase is unknown, every
    /// phase. Equal to `expected` for never.
    pub min: Option<Duration>,
    pub max: Option<Duration>,
    /// The mechanism expected to notice first.
    pub mechanism: Option<Mechanism>,
    /// Every mechanism that may notice first somewhere in the band (timer races, such as a RST on
    /// the next segment against a heartbeat giving up).
    #[serde(skip)]
    pub may_be: Vec<Mechanism>,
    /// What `expected` is counted from.
    pub basis: Basis,
    /// One sentence: why.
    pub reason: String,
}

impl Prediction {
    fn never(basis: Basis, reason: impl Into<String>) -> Self {
        Prediction {
            expected: None,
            min: None,
            max: None,
            mechanism: None,
            may_be: Vec::new(),
            basis,
            reason: reason.into(),
        }
    }

    /// Expected time in milliseconds, `None` for never.
    pub fn expected_ms(&self) -> Option<u64> {
        self.expected.map(|d| d.ms())
    }

    /// Low end of the band in milliseconds, `None` for never.
    pub fn expected_min_ms(&self) -> Option<u64> {
        self.min.map(|d| d.ms())
    }

    /// High end of the band in milliseconds, `None` for never.
    pub fn expected_max_ms(&self) -> Option<u64> {
        self.max.map(|d| d.ms())
    }

    /// How far `measured` lies outside the band (zero inside it); `None` when never was expected.
    pub fn outside_band(&self, measured: Duration) -> Option<Duration> {
        let (lo, hi) = (self.min?, self.max?);
        Some(if measured < lo {
            lo - measured
        } else {
            measured.saturating_sub(hi)
        })
    }
}

/// One way the peer's death can be noticed: when, the band around it, by what, and why.
#[derive(Debug, Clone)]
struct Cand {
    t: Duration,
    min: Duration,
    max: Duration,
    m: Mechanism,
    /// Other mechanisms that notice first in some phase of this candidate.
    also: Vec<Mechanism>,
    reason: String,
}

impl Cand {
    /// A single timer armed `t` ahead: it fires up to the wheel's slack late.
    fn timer(t: Duration, m: Mechanism, reason: String, kernel: &KernelTimers) -> Cand {
        Cand {
            t,
            min: t,
            max: t + wheel(kernel).max_late(t),
            m,
            also: Vec::new(),
            reason,
        }
    }

    /// Exact to the millisecond (tcphb's own timers, a RST on the next segment).
    fn exact(t: Duration, slack: Duration, m: Mechanism, reason: String) -> Cand {
        Cand {
            t,
            min: t,
            max: t + slack,
            m,
            also: Vec::new(),
            reason,
        }
    }
}

fn wheel(kernel: &KernelTimers) -> phase::Wheel {
    phase::Wheel { hz: kernel.hz }
}

/// How recently a keepalive probe out at the cut's reading may have left with its answer still on
/// the way: its timer then reads a whole interval ahead, to `/proc/net/tcp`'s 10 ms.
const JUST_PROBED: Duration = Duration::from_millis(20);

/// tcphb's heartbeat runs on tokio's millisecond timer; the event loop adds a little.
const HEARTBEAT_SLACK: Duration = Duration::from_millis(30);

/// One kernel's retransmission back-off: how many retransmissions before it gives up, the RTO
/// floor its budget is computed from, and the ceiling of each back-off interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub retries: u32,
    pub rto_min: Duration,
    pub rto_max: Duration,
}

impl Backoff {
    /// The back-off of `kernel` (tcp_retries2, TCP_RTO_MIN, TCP_RTO_MAX on Linux).
    pub fn of(kernel: &KernelTimers) -> Backoff {
        Backoff {
            retries: kernel.tcp_retries2,
            rto_min: Duration::from_millis(kernel.rto_min_ms),
            rto_max: Duration::from_millis(kernel.rto_max_ms.max(1)),
        }
    }

    /// Retransmission give-up time, from the RTO floor (tcp_model_timeout in the kernel).
    pub fn budget(&self) -> Duration {
        let base = self.rto_min.max(Duration::from_millis(1));
        let thresh = (self.rto_max.as_millis() / base.as_millis()).max(1).ilog2();
        if self.retries <= thresh {
            base * ((2u32 << self.retries) - 1)
        } else {
            base * ((2u32 << thresh) - 1) + self.rto_max * (self.retries - thresh)
        }
    }

    /// The retransmission timer's firings, counted from the first unacknowledged send: `rto`,
    /// `3·rto`, `7·rto`, … — the timeout doubles each time, each interval capped at the ceiling.
    pub fn firings(&self, rto: Duration) -> impl Iterator<Item = Duration> + use<> {
        let rto = rto.max(Duration::from_millis(1));
        let max = self.rto_max;
        (0u32..).scan(Duration::ZERO, move |t, k| {
            let step = rto.saturating_mul(1u32 << k.min(20)).min(max);
            *t += step;
            Some(*t)
        })
    }

    /// When the kernel really gives up on unacknowledged data on a path whose RTO is `rto`.
    ///
    /// The budget ([`Backoff::budget`]) is computed from the RTO floor whatever the path, but it is
    /// only checked when the retransmission timer fires, and the timer runs on the path's own RTO
    /// (≥ the floor): the kernel gives up at the first firing at or after the budget, and never at
    /// the first firing (no retransmission has been made yet). Equal to the budget only when
    /// `rto == rto_min` exactly; later on every real path, by up to one back-off interval.
    pub fn giveup(&self, rto: Duration) -> Duration {
        let budget = self.budget();
        self.firings(rto.max(self.rto_min))
            .skip(1)
            .find(|t| *t >= budget)
            .expect("the firings grow without bound")
    }

    /// How many retransmissions the kernel makes within `window` on a path whose RTO is `rto`.
    pub fn within(&self, window: Duration, rto: Duration) -> u32 {
        self.firings(rto)
            .take_while(|t| *t < window)
            .take(10_000)
            .count() as u32
    }
}

fn keepalive_timer(eff: &Effective) -> Option<phase::KeepaliveTimer> {
    let (idle, interval, count) = eff.keepalive()?;
    Some(phase::KeepaliveTimer {
        idle,
        interval,
        count,
        user_timeout: eff.user_timeout(),
    })
}

/// Idle-connection keepalive death, counted from the last packet heard: for the phase `at` when it is
/// known, else for the steady state with the band over every phase.
fn keepalive_death(
    eff: &Effective,
    kernel: &KernelTimers,
    at: Option<phase::KeepalivePhase>,
) -> Option<Cand> {
    let k = keepalive_timer(eff)?;
    let w = wheel(kernel);
    // A probe out at the reading whose timer was re-armed a whole interval ahead left just before
    // it: its answer was still on the way and, on the lab's sub-millisecond path, lands before the
    // cut takes effect. Predicted as answered, with the band reaching the unanswered case.
    let (at, unanswered) = match at {
        Some(p) if p.probes_out > 0 && p.due_in + JUST_PROBED >= k.interval => {
            // Any ACK clears the probes out (tcp_ack).
            let answered = phase::KeepalivePhase {
                heard_ago: Duration::ZERO,
                probes_out: 0,
                ..p
            };
            (Some(answered), Some(p))
        }
        _ => (at, None),
    };
    let (t, late, by_uto) = k.give_up(at.unwrap_or_else(|| k.steady_phase()), w);
    let (min, max) = match at {
        Some(_) => unanswered.map_or((t, t + late), |p| {
            let (u, u_late, _) = k.give_up(p, w);
            (t.min(u), (t + late).max(u + u_late))
        }),
        None => k.phases(16).into_iter().fold((t, t + late), |(lo, hi), p| {
            let (t, late, _) = k.give_up(p, w);
            (lo.min(t), hi.max(t + late))
        }),
    };
    let f = crate::units::format_duration;
    let mut reason = match (k.user_timeout, by_uto) {
        (Some(uto), true) => format!(
            "user timeout {} checked at keepalive ticks ({} idle, then every {}) with a probe out",
            f(uto),
            f(k.idle),
            f(k.interval)
        ),
        _ => format!(
            "keepalive: {} idle + {} × {} unanswered probes",
            f(k.idle),
            k.count,
            f(k.interval)
        ),
    };
    if k.idle < k.interval {
        reason.push_str(&format!(
            "; an answered probe re-arms the timer {} later, not {}, so the phase of the cut moves this by up to one interval",
            f(k.interval),
            f(k.idle)
        ));
    }
    let m = if by_uto {
        Mechanism::UserTimeout
    } else {
        Mechanism::Keepalive
    };
    Some(Cand {
        t,
        min,
        max,
        m,
        also: Vec::new(),
        reason,
    })
}

/// Data-in-flight death by timers: user timeout if set, else the retransmission budget.
fn busy_death(eff: &Effective, kernel: &KernelTimers) -> Cand {
    busy_death_on(eff, kernel, None, &[])
}

/// The wheel's slack summed over the retransmission timer's firings up to `until`, on `rto`.
fn retransmission_slack(rto: Duration, until: Duration, kernel: &KernelTimers) -> Duration {
    let w = wheel(kernel);
    let mut prev = Duration::ZERO;
    let mut late = Duration::ZERO;
    for t in Backoff::of(kernel).firings(rto).take(64) {
        late += w.max_late(t - prev);
        prev = t;
        if t >= until {
            break;
        }
    }
    late
}

/// [`busy_death`], with the retransmission give-up taken from the path's measured RTO when known,
/// and the router's ICMP errors about the connection when they were watched (`icmp`, counted from
/// the first unacknowledged send, as the result is).
fn busy_death_on(
    eff: &Effective,
    kernel: &KernelTimers,
    rto: Option<Duration>,
    icmp: &[Duration],
) -> Cand {
    let rto_min = Duration::from_millis(kernel.rto_min_ms);
    let backoff = Backoff::of(kernel);
    if let (None, Some(rto)) = (eff.user_timeout(), rto) {
        let t = backoff.giveup(rto);
        let reason = format!(
            "retransmissions give up at the first timer firing after the tcp_retries2={} budget of {:.1} s: \
             {:.1} s with the measured RTO of {} ms, doubling each time (keepalive stays silent while data is unacked)",
            kernel.tcp_retries2,
            backoff.budget().as_secs_f64(),
            t.as_secs_f64(),
            rto.as_millis()
        );
        let slack = retransmission_slack(rto, t, kernel);
        return Cand::exact(t, slack, Mechanism::Retransmission, reason);
    }
    match eff.user_timeout() {
        // The user timeout counts from the first retransmission (`retrans_stamp`), one RTO after
        // the first unacknowledged send, and the retransmission timer is clamped to end exactly
        // there (tcp_clamp_rto_to_user_timeout); phase::RetransmissionTimer runs it firing by firing.
        Some(uto) => {
            let first_rto = path_rto(rto, kernel);
            let first_late = first_retransmission_late(first_rto, wheel(kernel));
            user_timeout_on_timer(
                kernel,
                (first_rto, first_rto, first_late),
                uto,
                icmp,
                |reverted| {
                    format!(
                        "user timeout {} on unacknowledged data, counted from the first retransmission, one RTO ({} ms) after the first unacknowledged send{}",
                        crate::units::format_duration(uto),
                        first_rto.as_millis(),
                        if reverted > 0 {
                            format!(
                                "; {reverted} ICMP error(s) about a retransmission each undid one back-off step (RFC 6069) and re-armed the timer without the user timeout's clamp"
                            )
                        } else {
                            String::new()
                        }
                    )
                },
            )
        }
        None => {
            let t = backoff.budget();
            let reason = format!(
                "retransmissions give up after tcp_retries2={} ≈ {:.1} s (a lower bound: keepalive stays silent while data is unacked)",
                kernel.tcp_retries2,
                t.as_secs_f64()
            );
            Cand::exact(
                t,
                retransmission_slack(rto_min, t, kernel),
                Mechanism::Retransmission,
                reason,
            )
        }
    }
}

/// The user timeout on the retransmission (or zero-window probe) timer of RTO `rto`, whose first
/// firing comes at `first`, up to `first_late` later (`timer`), run firing by firing with the ICMP
/// errors that came back ([`phase::RetransmissionTimer`]); `reason` is told how many back-off steps
/// they reverted.
fn user_timeout_on_timer(
    kernel: &KernelTimers,
    (rto, first, first_late): (Duration, Duration, Duration),
    uto: Duration,
    icmp: &[Duration],
    reason: impl FnOnce(u32) -> String,
) -> Cand {
    let timer = phase::RetransmissionTimer {
        rto,
        rto_max: Backoff::of(kernel).rto_max,
        user_timeout: uto,
    };
    let (t, late, reverted) = timer.give_up(first, first_late, icmp, wheel(kernel));
    Cand {
        t,
        min: t,
        max: t + late,
        m: Mechanism::UserTimeout,
        also: Vec::new(),
        reason: reason(reverted),
    }
}

/// How late the first retransmission can go after its nominal one RTO from the last packet heard:
/// the busy writer's last sends after the cut (up to two of its ticks) are followed by a tail-loss
/// probe (at least two jiffies later, tcp_schedule_loss_probe) from which the RTO is re-armed, and
/// the wheel fires that RTO late by up to its slack.
fn first_retransmission_late(rto: Duration, w: phase::Wheel) -> Duration {
    BUSY_TICK * 2 + w.jiffy() * 2 + w.max_late(rto)
}

/// The connection's RTO when it was read, else the kernel's floor (it is never below it).
pub(crate) fn path_rto(rto: Option<Duration>, kernel: &KernelTimers) -> Duration {
    let rto_min = Duration::from_millis(kernel.rto_min_ms);
    rto.unwrap_or(rto_min).max(rto_min)
}

/// [`busy_death_on`] under a path fault. Where a router answers with ICMP host or network
/// unreachable, RFC 6069 applies: each ICMP about a retransmitted segment undoes one RTO back-off and re-arms the
/// retransmission timer without the user-timeout clamp (tcp_ld_RTO_revert), so the user timeout can
/// be checked late by up to that reverted interval. Which retransmissions draw an ICMP depends on
/// the router's rate limit; where the lab watched them (`at.icmp`) the timer is run with them, else
/// the band spans every phase of that limit.
fn busy_death_at(eff: &Effective, fault: Fault, kernel: &KernelTimers, at: &phase::AtCut) -> Cand {
    let rto = at.rto;
    if let (Some(due), Some(uto)) = (at.zero_window, eff.user_timeout()) {
        return zero_window_death(due, uto, kernel);
    }
    // Only host and network unreachable revert (tcp_v4_err); `prohibit`'s code 13 does not.
    let answers = fault == Fault::Unreachable;
    let icmp = match &at.icmp {
        Some(icmp) if answers => icmp.as_slice(),
        _ => &[],
    };
    let mut c = busy_death_on(eff, kernel, rto, icmp);
    if let (true, None, Some(uto)) = (answers, &at.icmp, eff.user_timeout()) {
        c.max += rto_revert_overshoot(path_rto(rto, kernel), uto, Backoff::of(kernel).rto_max);
        c.reason.push_str(
            "; the router's ICMP errors revert the RTO back-off (RFC 6069) and re-arm the timer past the user timeout, \
             which widens the band over every phase of the router's ICMP rate limit",
        );
    }
    c
}

/// An idle connection with heartbeats under a path fault. Until its next ping goes out, nothing is
/// in flight and keepalive runs (with the user timeout riding on its timer); the ping is data, so
/// from its send on keepalive falls silent and the retransmission / user-timeout timers run, counted
/// from that send. The ping goes within one `interval` of the last packet heard: at
/// `at.next_ping` where the lab read it, else anywhere in that interval (the band covers both).
fn pinged_idle_death(
    eff: &Effective,
    fault: Fault,
    kernel: &KernelTimers,
    at: &phase::AtCut,
    interval: Duration,
) -> Cand {
    // Counted from the ping's send, as the retransmission timer counts: the ICMP errors too.
    // Unread, the ping's phase is unknown, and so is which errors came after it: none is used.
    let from_ping = phase::AtCut {
        icmp: at
            .icmp
            .as_ref()
            .zip(at.next_ping)
            .map(|(icmp, p)| icmp.iter().filter(|&&a| a >= p).map(|&a| a - p).collect()),
        ..at.clone()
    };
    let sent = busy_death_at(eff, fault, kernel, &from_ping);
    let (lo, hi) = at.next_ping.map_or((Duration::ZERO, interval), |p| (p, p));
    let f = crate::units::format_duration;
    // Nominally the ping goes at `p`; at the latest at `last`.
    let after_ping = |p: Duration, last: Duration| Cand {
        t: p + sent.t,
        min: lo + sent.min,
        max: last + sent.max,
        m: sent.m,
        also: Vec::new(),
        reason: match at.next_ping {
            Some(p) => format!(
                "{}, counted from the heartbeat ping that went out {} after the last packet heard (keepalive is silent while it is unacked)",
                sent.reason,
                f(p)
            ),
            None => format!(
                "{}, counted from the next heartbeat ping, which goes out up to {} after the last packet heard (keepalive is silent while it is unacked)",
                sent.reason,
                f(interval)
            ),
        },
    };
    match keepalive_death(eff, kernel, at.keepalive) {
        // Keepalive gives up before the ping goes, whatever its phase.
        Some(k) if k.max <= lo => k,
        // In some phases keepalive gives up first; in the others the ping goes just before it would
        // have, and the timers start over from that send: the worst case.
        Some(k) if k.t <= hi => {
            let worst = after_ping(k.t.min(hi), k.t.min(hi));
            Cand {
                min: k.min.min(worst.min),
                max: k.max.max(worst.max),
                also: vec![worst.m],
                reason: format!(
                    "{}; unless a heartbeat ping goes out first: then {}",
                    k.reason, worst.reason
                ),
                ..k
            }
        }
        _ => after_ping((lo + hi) / 2, hi),
    }
}

/// A busy connection that was probing a zero window at the cut (its peer fell behind reading):
/// nothing but window probes is in flight, and the user timeout counts from the probe timer's first
/// firing with the window still closed (`icsk_probes_tstamp`), which may have come before the cut.
/// So it gives up from the next firing (`due` after the cut) up to one user timeout after it.
/// The kernel ignores ICMP errors about window probes (out-of-window sequence number), so an
/// unreachable router leaves ETIMEDOUT.
fn zero_window_death(due: Duration, uto: Duration, kernel: &KernelTimers) -> Cand {
    let w = wheel(kernel);
    Cand {
        t: due + uto,
        min: due,
        max: due + uto + w.max_late(due) + w.max_late(uto.min(Backoff::of(kernel).rto_max)),
        m: Mechanism::UserTimeout,
        also: Vec::new(),
        reason: format!(
            "user timeout {} on zero-window probes: the peer's window was closed at the cut (it had fallen behind \
             reading), so only window probes were in flight, and their ICMP errors are ignored",
            crate::units::format_duration(uto)
        ),
    }
}

/// The most an RFC 6069 revert delays a user timeout of `uto` on a path whose RTO is `rto`: half the
/// longest back-off interval begun before it (the revert re-arms one back-off step down).
fn rto_revert_overshoot(rto: Duration, uto: Duration, rto_max: Duration) -> Duration {
    // Back-off intervals from the first retransmission: 2·rto, 4·rto, … each capped at `rto_max`.
    let (mut start, mut interval, mut longest) = (Duration::ZERO, rto * 2, rto * 2);
    while start < uto {
        longest = interval;
        start += interval;
        interval = (interval * 2).min(rto_max);
    }
    longest / 2
}

/// The kernel timer that gives up on a silently dead peer: the user timeout or retransmissions when
/// data is in flight, keepalive (possibly overridden by the user timeout) when idle; `None` when idle with
/// no keepalive. Counted from the last packet heard; the high end of the band over every phase.
pub fn timer_death(
    eff: &Effective,
    data_in_flight: bool,
    kernel: &KernelTimers,
) -> Option<(Duration, Mechanism)> {
    if data_in_flight {
        let c = busy_death(eff, kernel);
        Some((c.max, c.m))
    } else {
        keepalive_death(eff, kernel, None).map(|c| (c.max, c.m))
    }
}

/// Heartbeat: `misses × interval` after the peer was last heard in its protocol. Counted from the
/// last packet heard, that is `at.heartbeat_heard` sooner where the lab read it. Where it was not,
/// a busy connection's last packet (an ACK of its data) may come up to one interval after the last
/// reply, and the band reaches that much sooner.
fn heartbeat_death(eff: &Effective, load: Load, at: &phase::AtCut) -> Option<Cand> {
    let (interval, misses) = eff.heartbeat()?;
    let full = interval * misses;
    let reason = format!(
        "heartbeat: {misses} × {} without an answer",
        crate::units::format_duration(interval)
    );
    let exact = |t| Cand::exact(t, HEARTBEAT_SLACK, Mechanism::Heartbeat, reason.clone());
    Some(match at.heartbeat_heard {
        Some(before) => exact(full.saturating_sub(before)),
        None if load == Load::Busy => Cand {
            min: full.saturating_sub(interval),
            ..exact(full)
        },
        None => exact(full),
    })
}

fn first(basis: Basis, candidates: Vec<Cand>, never: &str) -> Prediction {
    // The first to fire at its nominal time; the band spans every candidate that may fire first.
    let Some(best) = candidates.iter().min_by_key(|c| c.t).cloned() else {
        return Prediction::never(basis, never);
    };
    let earliest_max = candidates.iter().map(|c| c.max).min().unwrap_or(best.max);
    let min = candidates.iter().map(|c| c.min).min().unwrap_or(best.min);
    let max = earliest_max.max(best.t);
    let mut may_be = Vec::new();
    for c in candidates.iter().filter(|c| c.min <= max) {
        for m in std::iter::once(c.m).chain(c.also.iter().copied()) {
            if !may_be.contains(&m) {
                may_be.push(m);
            }
        }
    }
    Prediction {
        expected: Some(best.t),
        min: Some(min),
        max: Some(max),
        mechanism: Some(best.m),
        may_be,
        basis,
        reason: best.reason,
    }
}

/// The time after the fault at which a reboot heals the path and the peer starts answering RST.
pub const REBOOT_HEAL: Duration = Duration::from_secs(1);

/// Predict detection for settings `eff` under `fault` and `load`, over every phase of the timers.
/// `rtt` is the measured round trip.
pub fn predict(
    eff: &Effective,
    fault: Fault,
    load: Load,
    kernel: &KernelTimers,
    rtt: Duration,
) -> Prediction {
    predict_at(eff, fault, load, kernel, rtt, phase::AtCut::default())
}

/// [`predict`] for a connection whose state at the cut is known (the lab reads its keepalive
/// timer and RTO just before cutting, and times the heal); what `at` leaves unknown is predicted
/// over every phase.
pub fn predict_at(
    eff: &Effective,
    fault: Fault,
    load: Load,
    kernel: &KernelTimers,
    rtt: Duration,
    at: phase::AtCut,
) -> Prediction {
    let hb = heartbeat_death(eff, load, &at);
    match fault {
        Fault::Blackhole | Fault::Unreachable | Fault::Prohibit | Fault::Linkdown => {
            let mut c: Vec<_> = hb.into_iter().collect();
            match load {
                Load::Busy => c.push(busy_death_at(eff, fault, kernel, &at)),
                Load::Idle if let Some((interval, _)) = eff.heartbeat() => {
                    c.push(pinged_idle_death(eff, fault, kernel, &at, interval))
                }
                Load::Idle => c.extend(keepalive_death(eff, kernel, at.keepalive)),
            }
            first(
                Basis::LastHeard,
                c,
                "idle with no keepalive or heartbeat: nothing is sent, so nothing can notice",
            )
        }
        Fault::Freeze => {
            let mut c: Vec<_> = hb.into_iter().collect();
            if load == Load::Busy
                && let Some(uto) = eff.user_timeout()
            {
                let rto = path_rto(at.rto, kernel);
                let cand = match at.first_window_probe {
                    // The lab saw the first zero-window probe: the user timeout counts from it,
                    // and the probe timer backs off like the retransmission timer, clamped to its
                    // end (tcp_clamp_probe0_to_user_timeout).
                    // Its stamp is in whole jiffies.
                    Some((lo, hi)) => user_timeout_on_timer(
                        kernel,
                        (rto, lo, hi - lo + wheel(kernel).jiffy()),
                        uto,
                        &[],
                        |_| {
                            format!(
                                "user timeout {} on zero-window probes, from the first one ({}–{} after the fault): the frozen peer's window closed once its receive buffer was full",
                                crate::units::format_duration(uto),
                                crate::units::human_ms(Some(lo.ms())),
                                crate::units::human_ms(Some(hi.ms()))
                            )
                        },
                    ),
                    // The window closes once the frozen peer's receive buffer is full; the first
                    // zero-window probe goes one RTO later and the user timeout counts from there.
                    None => {
                        let mut cand = Cand::timer(
                            uto + rto,
                            Mechanism::UserTimeout,
                            format!(
                                "user timeout on zero-window probes, from one RTO after the frozen peer's window closes; \
                                 filling that window at the busy rate adds up to {} (not predicted: it depends on the peer's buffer)",
                                crate::units::format_duration(FREEZE_WINDOW_FILL)
                            ),
                            kernel,
                        );
                        cand.max += FREEZE_WINDOW_FILL;
                        cand
                    }
                };
                c.push(cand);
            }
            let basis = if c.iter().any(|x| x.m == Mechanism::UserTimeout) {
                Basis::Fault
            } else {
                Basis::LastHeard
            };
            first(
                basis,
                c,
                "a frozen peer's kernel still ACKs keepalive and window probes: only heartbeats notice",
            )
        }
        Fault::Crash => {
            let (m, reason) = match load {
                Load::Idle => (
                    Mechanism::Eof,
                    "the peer's kernel sends FIN when its process dies",
                ),
                Load::Busy => (
                    Mechanism::Reset,
                    "the peer's kernel answers RST: its socket died with unread data",
                ),
            };
            first(
                Basis::Fault,
                vec![Cand::exact(rtt, CRASH_SLACK, m, reason.into())],
                "",
            )
        }
        Fault::Reboot => predict_reboot(eff, load, kernel, at),
        Fault::NatExpiry => match at.nat_idle.and_then(|idle| kept_fresh_by(eff, load, idle)) {
            // Where the lab knows the middlebox's timeout, traffic more often than that keeps the
            // flow: nothing dies.
            Some(what) => Prediction::never(
                Basis::LastHeard,
                format!(
                    "{what} never leave the flow idle for the middlebox's {}: it is never forgotten, nothing dies",
                    crate::units::human_ms(at.nat_idle.map(|d| d.ms()))
                ),
            ),
            // Otherwise the prediction is for an entry that did expire: a silent death.
            None => predict_at(eff, Fault::Blackhole, load, kernel, rtt, at),
        },
    }
}

/// What keeps a flow fresh in a middlebox that forgets flows idle for `nat_idle`: a busy
/// connection's traffic, heartbeats or keepalive probes more often than that; `None` when nothing
/// does.
fn kept_fresh_by(eff: &Effective, load: Load, nat_idle: Duration) -> Option<&'static str> {
    if load == Load::Busy {
        Some("the busy connection's traffic")
    } else if eff
        .heartbeat()
        .is_some_and(|(interval, _)| interval < nat_idle)
    {
        Some("its heartbeats")
    } else if eff.keepalive().is_some_and(|(idle, _, _)| idle < nat_idle) {
        Some("its keepalive probes")
    } else {
        None
    }
}

/// Most the busy writer takes to fill a frozen peer's receive window: 0.33–0.39 s measured with the
/// lab peer's fixed 256 KiB buffer at tcphb's busy rate; the rest is room for a loaded machine.
const FREEZE_WINDOW_FILL: Duration = Duration::from_millis(800);
/// A dying process's FIN or RST arrives within a round trip; the peer's exit and our wake-up add this.
const CRASH_SLACK: Duration = Duration::from_millis(100);

/// Reboot: the path is cut, the peer forgets, the path heals after [`REBOOT_HEAL`]; the first segment
/// the local side sends afterwards draws a RST. Counted from the fault; `at` is the keepalive timer's
/// phase at the cut when known.
fn predict_reboot(
    eff: &Effective,
    load: Load,
    kernel: &KernelTimers,
    at: phase::AtCut,
) -> Prediction {
    let w = wheel(kernel);
    let rto = path_rto(at.rto, kernel);
    let heal = at.heal.unwrap_or(REBOOT_HEAL);
    // Retransmissions at RTO·(2^k − 1) after a send made somewhere in `sent`: (earliest, nominal,
    // latest) of the first one that meets the healed path. A firing whose slack reaches past the
    // heal may meet it or be lost just before, so the band runs from it to the first firing
    // surely after the heal.
    let rst_after_send = |sent: std::ops::RangeInclusive<Duration>| {
        let mut earliest = None;
        let mut prev = Duration::ZERO;
        let mut late = Duration::ZERO;
        for f in Backoff::of(kernel).firings(rto).take(64) {
            late += w.max_late(f - prev);
            prev = f;
            if *sent.end() + f + late >= heal {
                let lo = *earliest.get_or_insert(*sent.start() + f);
                if *sent.start() + f >= heal {
                    return Some((lo, *sent.start() + f, *sent.end() + f + late));
                }
            }
        }
        None
    };
    let rst = |(min, t, max): (Duration, Duration, Duration)| Cand {
        t,
        min,
        max,
        m: Mechanism::Reset,
        also: Vec::new(),
        reason: "the first segment after the path heals draws a RST from the rebooted peer".into(),
    };
    let mut c = Vec::new();
    if load == Load::Busy {
        // The busy writer keeps a segment in flight: its retransmissions run from its first write
        // after the cut, within one busy tick.
        c.extend(rst_after_send(Duration::ZERO..=BUSY_TICK).map(rst));
        c.push(busy_death_on(eff, kernel, at.rto, &[]));
    }
    let heartbeat = eff.heartbeat();
    // Where the lab read the heartbeat's phase on a busy connection: its own give-up, from the last
    // reply, races the RST drawn by the busy data's retransmissions (above).
    let read = heartbeat
        .filter(|_| load == Load::Busy)
        .zip(at.heard_ago)
        .zip(at.heartbeat_heard);
    if let Some((((interval, misses), ago), before)) = read {
        c.push(Cand::exact(
            (interval * misses).saturating_sub(ago + before),
            HEARTBEAT_SLACK,
            Mechanism::Heartbeat,
            format!(
                "heartbeat: {misses} × {} without an answer, from the last one {} before the fault",
                crate::units::format_duration(interval),
                crate::units::human_ms(Some((ago + before).ms()))
            ),
        ));
    } else if let Some((interval, misses)) = heartbeat {
        // The first ping after the cut goes at a phase p in (0, interval]; the last pong came
        // interval − p before the cut. Over every phase: the RST on that ping's retransmission, or
        // the heartbeat giving up, whichever comes first.
        let outcome = |p: Duration| -> (Duration, Duration, Mechanism) {
            let hb = (p + interval * misses).saturating_sub(interval);
            match rst_after_send(p..=p) {
                Some((lo, t, hi)) if t < hb => (lo.min(t), hi, Mechanism::Reset),
                _ => (hb, hb, Mechanism::Heartbeat),
            }
        };
        let (t, _, m) = outcome(interval / 2);
        let (mut lo, mut hi, mut also) = (t, t, Vec::new());
        for k in 1..=16u32 {
            let (t, t_hi, other) = outcome(interval * k / 16);
            lo = lo.min(t);
            hi = hi.max(t_hi);
            if other != m && !also.contains(&other) {
                also.push(other);
            }
        }
        c.push(Cand {
            t,
            min: lo,
            max: hi + HEARTBEAT_SLACK,
            m,
            also,
            reason: format!(
                "the first ping after the cut (at a phase of its {} interval) is retransmitted until the path heals and \
                 draws a RST, unless {misses} unanswered pings come first",
                crate::units::format_duration(interval)
            ),
        });
        if load == Load::Idle {
            c.push(busy_death_on(eff, kernel, at.rto, &[]));
        }
    } else if load == Load::Idle
        && let Some(k) = keepalive_timer(eff)
    {
        // The next keepalive probe after the heal, from the timer's phase at the cut.
        let probe_from_cut = |p: phase::KeepalivePhase| {
            k.first_probe_from(p, p.heard_ago + heal, w)
                .map(|(lo, t, hi)| (lo - p.heard_ago, t - p.heard_ago, hi - p.heard_ago))
        };
        let steady = at.keepalive.unwrap_or_else(|| k.steady_phase());
        if let Some(band) = probe_from_cut(steady) {
            let mut cand = rst(band);
            if at.keepalive.is_none() {
                for p in k.phases(16) {
                    if let Some((lo, _, hi)) = probe_from_cut(p) {
                        cand.min = cand.min.min(lo);
                        cand.max = cand.max.max(hi);
                    }
                }
            }
            c.push(cand);
        }
        c.extend(keepalive_death(eff, kernel, at.keepalive).map(|mut d| {
            // Counted from the fault, not from the last packet heard.
            let ago = at.keepalive.map_or(Duration::ZERO, |p| p.heard_ago);
            d.t = d.t.saturating_sub(ago);
            d.min = d.min.saturating_sub(ago);
            d.max = d.max.saturating_sub(ago);
            d
        }));
    }
    first(
        Basis::Fault,
        c,
        "idle with no keepalive or heartbeat: nothing is sent, so the reboot goes unnoticed",
    )
}

/// What was measured on one path: the smoothed round trip and the kernel's retransmission timeout
/// (TCP_INFO `rtt` and `rto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathTimes {
    pub rtt: Duration,
    pub rto: Duration,
}

/// The settings a strategy would have if the kernel applied it exactly (the OS keepalive taken from
/// `kernel`): for predictions about strategies not (yet) applied to a socket.
pub fn assumed_effective(strategy: &crate::strategy::Strategy, kernel: &KernelTimers) -> Effective {
    use crate::strategy::Keepalive;
    let mut e = Effective::default();
    match strategy.keepalive {
        Keepalive::Off => {}
        Keepalive::Os => {
            e.keepalive_idle_ms = Some(kernel.keepalive_time_ms);
            e.keepalive_interval_ms = Some(kernel.keepalive_intvl_ms);
            e.keepalive_count = Some(kernel.keepalive_probes);
        }
        Keepalive::Custom {
            idle,
            interval,
            count,
        } => {
            e.keepalive_idle_ms = Some(idle.ms());
            e.keepalive_interval_ms = Some(interval.ms());
            e.keepalive_count = Some(count.unwrap_or(kernel.keepalive_probes));
        }
    }
    e.user_timeout_ms = strategy.user_timeout.map(|d| d.ms());
    if let Some(h) = strategy.heartbeat {
        e.heartbeat_interval_ms = Some(h.interval.ms());
        e.heartbeat_misses = Some(h.misses);
    }
    e
}

/// Predict when a silent death (blackhole) is noticed on a measured path: like [`predict`], but
/// retransmissions give up on the path's measured RTO ([`Backoff::giveup`]) rather than at the
/// RTO_min lower bound. Counted from the last packet heard.
pub fn predict_on_path(
    eff: &Effective,
    load: Load,
    kernel: &KernelTimers,
    path: &PathTimes,
) -> Prediction {
    // A blackhole whose only known state at the cut is the path's RTO.
    let at = phase::AtCut {
        rto: Some(path.rto),
        ..phase::AtCut::default()
    };
    predict_at(eff, Fault::Blackhole, load, kernel, path.rtt, at)
}

/// How a measurement compares with its prediction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Judgement {
    /// Whether mechanism and time agree (the time within the band, ± [`BAND_MARGIN`]).
    pub agrees: bool,
    /// Said in words when they do not.
    pub note: Option<String>,
}

/// How far outside its band a measurement may fall and still agree: the instrument's own timing (the
/// event loop's wake-up, TCP_INFO read just after the error) on a shared, noisy machine.
pub const BAND_MARGIN: Duration = Duration::from_millis(100);

/// Compare one measurement (`by` after `measured` on the prediction's basis; `None` = nothing noticed
/// before `deadline`) with its prediction's band.
pub fn judge_band(
    pred: &Prediction,
    by: Option<Mechanism>,
    measured: Option<Duration>,
    deadline: Duration,
) -> Judgement {
    let f = crate::units::secs2;
    let note = match (pred.expected, measured) {
        (None, None) => None,
        // Nothing noticed yet, and the band reaches past the deadline: consistent.
        (Some(_), None) if pred.max.is_some_and(|hi| hi + BAND_MARGIN > deadline) => None,
        (Some(e), None) => Some(format!(
            "expected {} after {}, nothing noticed",
            name(pred.mechanism),
            f(e)
        )),
        (None, Some(m)) => Some(format!(
            "noticed after {} although nothing was expected to notice",
            f(m)
        )),
        (Some(e), Some(m)) => {
            let fits = |b: Option<Mechanism>| {
                same_family(pred.mechanism, b) || b.is_some_and(|b| pred.may_be.contains(&b))
            };
            if !fits(by) {
                Some(mismatch(pred, e, by, m))
            } else if pred.outside_band(m).is_some_and(|o| o > BAND_MARGIN) {
                Some(format!(
                    "took {} where {}–{} was expected",
                    f(m),
                    f(pred.min.unwrap_or(e)),
                    f(pred.max.unwrap_or(e))
                ))
            } else {
                None
            }
        }
    };
    Judgement {
        agrees: note.is_none(),
        note,
    }
}

/// FIN and RST are both the peer's kernel answering for a dead process; which one depends on whether
/// unread data was pending at that instant, a race no prediction can call.
fn same_family(a: Option<Mechanism>, b: Option<Mechanism>) -> bool {
    use Mechanism::{Eof, Reset};
    a == b || matches!((a, b), (Some(Eof | Reset), Some(Eof | Reset)))
}

/// The prediction beside a measurement, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Expected {
    /// Expected detection time, ms (`null` = never).
    pub expected_ms: Option<u64>,
    /// The band over every timer phase and the timer slack, ms (`null` = never).
    pub expected_min_ms: Option<u64>,
    pub expected_max_ms: Option<u64>,
    /// The mechanism expected to notice first.
    pub expected_by: Option<Mechanism>,
    /// What `expected_ms` is counted from: `last_heard` or `fault`.
    pub expected_basis: Basis,
    /// Why, in one sentence.
    pub expected_reason: String,
    /// Whether the measurement agrees with the prediction: `null` unless a silent death was detected
    /// (alive, closed, and a reset are not what the prediction is for).
    pub agrees: Option<bool>,
    /// How they differ, when they do.
    pub disagreement: Option<String>,
}

impl Expected {
    /// Put a detection beside its prediction. Measured time is the silence before detection. Only a
    /// death found by a timer, a heartbeat or an ICMP error is judged: a connection the peer (or
    /// tcphb) closed is not a death, and a reset is the peer's kernel answering, not the silent death
    /// the prediction is for.
    pub fn new(pred: &Prediction, det: &Detection) -> Expected {
        let j = judged(pred, det);
        Expected {
            agrees: j.as_ref().map(|j| j.agrees),
            disagreement: j.and_then(|j| j.note),
            ..Expected::unjudged(pred)
        }
    }

    /// One prediction beside many connections' ends (`connect --connections`): `agrees` is `null`
    /// unless some connection died a silent death (the only ending that is judged), else whether
    /// every judged connection agrees; `disagreement` says how many did not, and how the first of
    /// them differs.
    pub fn many(pred: &Prediction, dets: &[Detection]) -> Expected {
        let judged: Vec<Judgement> = dets.iter().filter_map(|d| judged(pred, d)).collect();
        let differing: Vec<&Judgement> = judged.iter().filter(|j| !j.agrees).collect();
        Expected {
            agrees: (!judged.is_empty()).then_some(differing.is_empty()),
            disagreement: differing.first().map(|j| {
                format!(
                    "{} of {} connections differ; the first: {}",
                    differing.len(),
                    judged.len(),
                    j.note.as_deref().unwrap_or("mechanism or time")
                )
            }),
            ..Expected::unjudged(pred)
        }
    }

    fn unjudged(pred: &Prediction) -> Expected {
        Expected {
            expected_ms: pred.expected_ms(),
            expected_min_ms: pred.expected_min_ms(),
            expected_max_ms: pred.expected_max_ms(),
            expected_by: pred.mechanism,
            expected_basis: pred.basis,
            expected_reason: pred.reason.clone(),
            agrees: None,
            disagreement: None,
        }
    }
}

/// The judgement of one ending, when it is judged at all: only a death found by a timer, a heartbeat
/// or an ICMP error (see [`Expected::new`]).
fn judged(pred: &Prediction, det: &Detection) -> Option<Judgement> {
    (det.outcome == Outcome::Dead && det.detected_by != Some(Mechanism::Reset))
        .then(|| judge_silent_death(pred, det.detected_by, det.silence_ms))
}

/// Judge a connection that ended against a prediction made for a silent death (`connect`, `listen`:
/// the fault is not known), from its silence before detection.
pub fn judge_silent_death(pred: &Prediction, by: Option<Mechanism>, silence_ms: u64) -> Judgement {
    match by {
        // A FIN or RST is the peer's kernel answering: not the silent death the prediction is for.
        Some(Mechanism::Eof | Mechanism::Reset) | None => Judgement {
            agrees: true,
            note: None,
        },
        // The user timeout fired although the peer's kernel was still acknowledging: its window was
        // closed (the application stopped reading), so the timer ran from the window closing, not
        // from the last packet heard.
        Some(Mechanism::UserTimeout) if pred.expected.is_some_and(|e| silence_ms < e.ms() / 2) => {
            Judgement {
                agrees: false,
                note: Some(format!(
                    "the peer's kernel was still acknowledging {} before the end: its application stopped reading \
                     (zero window), as a frozen peer does, and the user timeout ran from the window closing",
                    crate::units::human_ms(Some(silence_ms))
                )),
            }
        }
        // No deadline: connect and listen watch until something notices.
        _ => judge_band(
            pred,
            by,
            Some(Duration::from_millis(silence_ms)),
            Duration::MAX,
        ),
    }
}

/// "expected keepalive after 4.0 s, got heartbeat after 1.5 s"
fn mismatch(pred: &Prediction, e: Duration, by: Option<Mechanism>, m: Duration) -> String {
    format!(
        "expected {} after {:.1} s, got {} after {:.1} s",
        name(pred.mechanism),
        e.as_secs_f64(),
        name(by),
        m.as_secs_f64()
    )
}

fn name(m: Option<Mechanism>) -> &'static str {
    m.map_or("nothing", Mechanism::name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eff(spec: &str) -> Effective {
        assumed_effective(&spec.parse().unwrap(), &KernelTimers::default())
    }

    fn p(spec: &str, fault: Fault, load: Load) -> Prediction {
        predict(
            &eff(spec),
            fault,
            load,
            &KernelTimers::default(),
            Duration::from_millis(1),
        )
    }

    fn ms(p: &Prediction) -> Option<u64> {
        p.expected_ms()
    }

    /// Linux's back-off with `retries` retransmissions.
    fn linux(retries: u32) -> Backoff {
        Backoff {
            retries,
            ..Backoff::of(&KernelTimers::default())
        }
    }

    #[test]
    fn retransmission_budget_matches_the_kernel_model() {
        assert_eq!(linux(15).budget(), Duration::from_millis(924_600));
        assert_eq!(linux(9).budget(), Duration::from_millis(204_600));
        assert_eq!(linux(3).budget(), Duration::from_millis(3_000));
        assert_eq!(linux(8).budget(), Duration::from_millis(102_200));
    }

    #[test]
    fn giveup_on_the_measured_rto_is_the_first_firing_after_the_budget() {
        let min = Duration::from_millis(200);
        // RTO exactly RTO_min: firings at 0.2·(2^k − 1) hit the budget exactly.
        assert_eq!(linux(5).giveup(min), Duration::from_millis(12_600));
        assert_eq!(linux(15).giveup(min), Duration::from_millis(924_600));
        // A slightly larger RTO (LAN: 204 ms): 63 × 204 ms = 12.852 s ≥ 12.6 s.
        assert_eq!(
            linux(5).giveup(Duration::from_millis(204)),
            Duration::from_millis(12_852)
        );
        // A 1 s RTO: firings 1, 3, 7, 15, 31, 63, 127, then +120 s each; budget 924.6 s → 967 s.
        assert_eq!(
            linux(15).giveup(Duration::from_secs(1)),
            Duration::from_secs(967)
        );
        // Never before the lower bound, and an RTO below RTO_min is treated as RTO_min.
        for rto_ms in [1u64, 150, 200, 201, 250, 333, 999, 3000] {
            let t = linux(8).giveup(Duration::from_millis(rto_ms));
            assert!(t >= linux(8).budget(), "{rto_ms}: {t:?}");
        }
        assert_eq!(linux(15).within(Duration::from_millis(1500), min), 3);
        assert_eq!(linux(15).within(Duration::from_millis(100), min), 0);
    }

    #[test]
    fn predict_on_path_uses_the_measured_rto_only_where_it_matters() {
        let k = KernelTimers::default();
        let path = PathTimes {
            rtt: Duration::from_millis(40),
            rto: Duration::from_secs(1),
        };
        let r = predict_on_path(&eff("none"), Load::Busy, &k, &path);
        assert_eq!(
            (ms(&r), r.mechanism),
            (Some(967_000), Some(Mechanism::Retransmission))
        );
        assert!(r.reason.contains("1000 ms"), "{}", r.reason);
        assert_eq!(
            ms(&predict_on_path(&eff("none"), Load::Idle, &k, &path)),
            None
        );
        // Keepalive and heartbeat do not depend on the RTO; a busy user timeout starts one RTO in.
        for (spec, load, want) in [
            ("ka=2s,1s,3", Load::Idle, 5000),
            ("ka=1s,1s,3+uto=2s", Load::Idle, 2000),
            ("hb=500ms,3", Load::Idle, 1500),
            ("hb=500ms,3", Load::Busy, 1500),
        ] {
            let e = eff(spec);
            assert_eq!(
                ms(&predict_on_path(&e, load, &k, &path)),
                Some(want),
                "{spec}"
            );
            assert_eq!(
                predict_on_path(&e, load, &k, &path).expected,
                predict(&e, Fault::Blackhole, load, &k, path.rtt).expected,
                "{spec}: same as the generic prediction"
            );
        }
        // A busy user timeout starts at the first retransmission: one measured RTO (1 s) in.
        let e = eff("uto=3s");
        assert_eq!(ms(&predict_on_path(&e, Load::Busy, &k, &path)), Some(4000));
    }

    #[test]
    fn assumed_effective_matches_what_apply_would_set() {
        let k = KernelTimers::default();
        for spec in ["none", "os", "ka=5s,2s,4+uto=20s+hb=1s,3", "uto=3s"] {
            let s: crate::strategy::Strategy = spec.parse().unwrap();
            assert_eq!(assumed_effective(&s, &k), eff(spec), "{spec}");
        }
    }

    #[test]
    fn keepalive_idle_is_idle_plus_interval_times_count() {
        let r = p("ka=1s,1s,3", Fault::Blackhole, Load::Idle);
        assert_eq!(
            (ms(&r), r.mechanism),
            (Some(4000), Some(Mechanism::Keepalive))
        );
        assert_eq!(r.basis, Basis::LastHeard);
        let r = p("ka=5s,5s,3", Fault::Unreachable, Load::Idle);
        assert_eq!(ms(&r), Some(20_000));
    }

    #[test]
    fn os_keepalive_uses_system_defaults() {
        let r = p("os", Fault::Blackhole, Load::Idle);
        assert_eq!(ms(&r), Some(7_200_000 + 9 * 75_000));
    }

    #[test]
    fn user_timeout_with_keepalive_rounds_up_to_a_probe_tick_and_overrides_count() {
        // ticks at 1,2,3,4... uto 2s → tick 2 s (count 3 would have said 4 s).
        let r = p("ka=1s,1s,3+uto=2s", Fault::Blackhole, Load::Idle);
        assert_eq!(
            (ms(&r), r.mechanism),
            (Some(2000), Some(Mechanism::UserTimeout))
        );
        // ticks at 5,10,15... uto 12 s → 15 s.
        assert_eq!(
            ms(&p("ka=5s,5s,1+uto=12s", Fault::Blackhole, Load::Idle)),
            Some(15_000)
        );
        // uto shorter than idle: the first probe must still go out: idle + interval.
        assert_eq!(
            ms(&p("ka=5s,2s,9+uto=1s", Fault::Blackhole, Load::Idle)),
            Some(7_000)
        );
        // a long uto also overrides a small count.
        assert_eq!(
            ms(&p("ka=1s,1s,3+uto=10s", Fault::Blackhole, Load::Idle)),
            Some(10_000)
        );
    }

    /// `spec` predicted for `fault`/`load` with what the lab read at the cut.
    fn at_cut(spec: &str, fault: Fault, load: Load, at: phase::AtCut) -> Prediction {
        let k = KernelTimers::default();
        predict_at(&eff(spec), fault, load, &k, Duration::ZERO, at)
    }

    #[test]
    fn watched_icmp_errors_narrow_the_unreachable_band_to_the_run() {
        // RTO 200 ms. No ICMP about a retransmission: the clamp holds, as on a blackhole (and
        // `prohibit` never reverts). One about the retransmission at ≈1.4 s (back-off 3): re-armed
        // one step down, 800 ms later, past the user timeout's end (2.2 s).
        let none = phase::AtCut {
            icmp: Some(Vec::new()),
            ..Default::default()
        };
        let b = at_cut("uto=2s", Fault::Blackhole, Load::Busy, none.clone());
        let u = at_cut("uto=2s", Fault::Unreachable, Load::Busy, none);
        assert_eq!((u.expected, u.max), (b.expected, b.max));
        let one = phase::AtCut {
            icmp: Some(vec![Duration::from_millis(1490)]),
            ..Default::default()
        };
        let u = at_cut("uto=2s", Fault::Unreachable, Load::Busy, one.clone());
        assert_eq!(u.expected_ms(), Some(2290));
        assert!(u.max.unwrap() - u.expected.unwrap() <= Duration::from_millis(40));
        let x = at_cut("uto=2s", Fault::Prohibit, Load::Busy, one);
        assert_eq!(x.expected, b.expected);
    }

    #[test]
    fn a_busy_heartbeat_counts_from_its_last_reply_not_the_last_ack() {
        // Replies every 500 ms, ACKs of the busy data up to the cut: the last reply came 300 ms
        // before the last packet heard, so three misses end it 1.2 s after that packet — before
        // the user timeout (1.2 s after it at the earliest).
        let at = phase::AtCut {
            heartbeat_heard: Some(Duration::from_millis(300)),
            ..Default::default()
        };
        let r = at_cut("hb=500ms,3+uto=1s", Fault::Blackhole, Load::Busy, at);
        assert_eq!(
            (r.mechanism, r.expected_ms()),
            (Some(Mechanism::Heartbeat), Some(1200))
        );
        // Unread, the band reaches one interval sooner.
        let r = p("hb=500ms,3", Fault::Blackhole, Load::Busy);
        assert_eq!(r.min, Some(Duration::from_millis(1000)));
    }

    #[test]
    fn a_frozen_peers_user_timeout_counts_from_the_first_window_probe_seen() {
        let at = phase::AtCut {
            first_window_probe: Some((Duration::from_millis(550), Duration::from_millis(575))),
            ..Default::default()
        };
        let r = at_cut("uto=2s", Fault::Freeze, Load::Busy, at);
        assert_eq!(r.expected_ms(), Some(2550));
        assert!(r.max.unwrap() <= Duration::from_millis(2620), "{:?}", r.max);
        // Unseen: the window's filling time is unknown, and the band says so.
        let r = p("uto=2s", Fault::Freeze, Load::Busy);
        assert!(r.max.unwrap() - r.expected.unwrap() >= FREEZE_WINDOW_FILL);
    }

    #[test]
    fn a_keepalive_probe_just_sent_at_the_reading_is_predicted_answered() {
        // ka=2s,7s,2 + uto=4s read with a probe out, its timer a whole interval ahead: its answer
        // lands before the cut, so the next tick probes again and the one after gives up (14 s);
        // unanswered it would give up at the next tick (7 s): the band holds both.
        let at = phase::AtCut {
            keepalive: Some(phase::KeepalivePhase {
                heard_ago: Duration::ZERO,
                due_in: Duration::from_secs(7),
                probes_out: 1,
            }),
            ..Default::default()
        };
        let r = at_cut("ka=2s,7s,2+uto=4s", Fault::Blackhole, Load::Idle, at);
        assert_eq!(r.expected_ms(), Some(14_000));
        assert_eq!(r.min, Some(Duration::from_secs(7)));
    }

    #[test]
    fn icmp_unreachable_widens_a_busy_user_timeout_by_the_rto_revert() {
        // Back-off from the first retransmission (rto 200 ms): 400 @0, 800 @400, 1600 @1200,
        // 3200 @2800 — the last begun before 3 s; the revert re-arms one step down: 1.6 s.
        assert_eq!(
            rto_revert_overshoot(
                Duration::from_millis(200),
                Duration::from_secs(3),
                Duration::from_secs(120)
            ),
            Duration::from_millis(1600)
        );
        let b = p("uto=3s", Fault::Blackhole, Load::Busy);
        let u = p("uto=3s", Fault::Unreachable, Load::Busy);
        assert_eq!(u.expected, b.expected);
        assert_eq!(u.max.unwrap() - b.max.unwrap(), Duration::from_millis(1600));
    }

    #[test]
    fn an_idle_heartbeat_ping_starts_the_user_timeout_when_it_goes_out() {
        // Measured in the lab (debug): the ping went 3.3 s after the last packet heard, its first
        // retransmission one RTO later, and the user timeout gave up at 16.8 s of silence.
        let e = eff("ka=7s,2s,3+uto=13s+hb=6562ms,3");
        let k = KernelTimers::default();
        let at = |next_ping| phase::AtCut {
            next_ping,
            rto: Some(Duration::from_millis(204)),
            ..Default::default()
        };
        let s = Duration::from_millis;
        let r = predict_at(
            &e,
            Fault::Blackhole,
            Load::Idle,
            &k,
            s(1),
            at(Some(s(3300))),
        );
        assert_eq!(r.mechanism, Some(Mechanism::UserTimeout));
        assert_eq!(r.expected, Some(s(3300 + 204 + 13_000)));
        assert!(r.reason.contains("heartbeat ping"), "{}", r.reason);
        // Over every phase of the ping: from one RTO + 13 s up to the heartbeat's 3 × 6562 ms,
        // which comes first once the ping goes late in its interval.
        let band = predict_at(&e, Fault::Blackhole, Load::Idle, &k, s(1), at(None));
        assert_eq!(band.min, Some(s(204 + 13_000)));
        assert_eq!(band.max, Some(s(19_686) + HEARTBEAT_SLACK));
        assert!(band.may_be.contains(&Mechanism::Heartbeat), "{band:?}");
    }

    #[test]
    fn keepalive_gives_up_first_only_when_the_ping_goes_later() {
        let e = eff("ka=1s,1s,3+hb=10s,3");
        let k = KernelTimers::default();
        let s = Duration::from_millis;
        let at = |p| phase::AtCut {
            next_ping: Some(s(p)),
            ..Default::default()
        };
        let late = predict_at(&e, Fault::Blackhole, Load::Idle, &k, s(1), at(5000));
        assert_eq!(late.mechanism, Some(Mechanism::Keepalive));
        assert_eq!(late.expected, Some(s(4000)));
        // The ping went first: keepalive falls silent, retransmissions run for minutes, and the
        // heartbeat notices at 30 s.
        let early = predict_at(&e, Fault::Blackhole, Load::Idle, &k, s(1), at(2000));
        assert_eq!(early.mechanism, Some(Mechanism::Heartbeat));
        assert_eq!(early.expected, Some(s(30_000)));
        // Not knowing the phase: anything from keepalive's 4 s to the heartbeat's 30 s.
        let band = p("ka=1s,1s,3+hb=10s,3", Fault::Blackhole, Load::Idle);
        assert_eq!(band.min, Some(s(4000)));
        assert_eq!(band.max, Some(s(30_000) + HEARTBEAT_SLACK));
    }

    #[test]
    fn a_window_closed_at_the_cut_runs_the_user_timeout_on_window_probes() {
        let e = eff("uto=2s");
        let k = KernelTimers::default();
        let at = phase::AtCut {
            zero_window: Some(Duration::from_millis(300)),
            ..Default::default()
        };
        let r = predict_at(&e, Fault::Unreachable, Load::Busy, &k, Duration::ZERO, at);
        assert_eq!(r.mechanism, Some(Mechanism::UserTimeout));
        assert_eq!(r.min, Some(Duration::from_millis(300)));
        assert_eq!(r.expected, Some(Duration::from_millis(2300)));
        assert!(r.reason.contains("ICMP errors are ignored"), "{}", r.reason);
    }

    #[test]
    fn busy_ignores_keepalive() {
        let r = p("ka=1s,1s,3", Fault::Blackhole, Load::Busy);
        assert_eq!(
            (ms(&r), r.mechanism),
            (Some(924_600), Some(Mechanism::Retransmission))
        );
        // The user timeout counts from the first retransmission, one RTO (200 ms here) in.
        let r = p("ka=1s,1s,3+uto=3s", Fault::Blackhole, Load::Busy);
        assert_eq!(
            (ms(&r), r.mechanism),
            (Some(3200), Some(Mechanism::UserTimeout))
        );
    }

    #[test]
    fn nothing_armed_and_idle_is_never() {
        assert_eq!(ms(&p("none", Fault::Blackhole, Load::Idle)), None);
        assert_eq!(ms(&p("uto=3s", Fault::Blackhole, Load::Idle)), None);
        assert_eq!(ms(&p("none", Fault::Reboot, Load::Idle)), None);
    }

    #[test]
    fn heartbeat_is_interval_times_misses_and_wins_when_shorter() {
        for fault in [Fault::Blackhole, Fault::Freeze, Fault::Unreachable] {
            for load in [Load::Idle, Load::Busy] {
                let r = p("ka=1s,1s,3+hb=500ms,3", fault, load);
                assert_eq!(
                    (ms(&r), r.mechanism),
                    (Some(1500), Some(Mechanism::Heartbeat)),
                    "{fault} {load}"
                );
            }
        }
    }

    #[test]
    fn freeze_is_invisible_to_keepalive_but_not_to_busy_user_timeout() {
        assert_eq!(ms(&p("ka=1s,1s,3", Fault::Freeze, Load::Idle)), None);
        assert_eq!(ms(&p("ka=1s,1s,3+uto=3s", Fault::Freeze, Load::Idle)), None);
        let r = p("uto=3s", Fault::Freeze, Load::Busy);
        assert_eq!(
            (ms(&r), r.mechanism, r.basis),
            (Some(3200), Some(Mechanism::UserTimeout), Basis::Fault)
        );
    }

    #[test]
    fn reboot_is_noticed_by_the_first_segment_after_the_heal() {
        let r = p("ka=1s,1s,3", Fault::Reboot, Load::Idle);
        assert_eq!((ms(&r), r.mechanism), (Some(1000), Some(Mechanism::Reset)));
        // retransmissions at 0.2, 0.6, 1.4 s: the 1.4 s one draws the RST.
        let r = p("none", Fault::Reboot, Load::Busy);
        assert_eq!((ms(&r), r.mechanism), (Some(1400), Some(Mechanism::Reset)));
    }

    #[test]
    fn judge_band_allows_the_margin_but_not_another_mechanism() {
        // ka=1s,1s,3 over every phase: 4.0 s up to the wheel's slack (four firings of ≤ 36 ms).
        let pr = p("ka=1s,1s,3", Fault::Blackhole, Load::Idle);
        let at = |ms: u64, by: Mechanism| judge_silent_death(&pr, Some(by), ms).agrees;
        assert!(at(4000, Mechanism::Keepalive));
        assert!(at(4200, Mechanism::Keepalive));
        assert!(!at(4400, Mechanism::Keepalive));
        assert!(!at(3800, Mechanism::Keepalive));
        assert!(!at(4000, Mechanism::Heartbeat));
        let deadline = Duration::from_secs(8);
        assert!(!judge_band(&pr, None, None, deadline).agrees);
        let never = p("none", Fault::Blackhole, Load::Idle);
        assert!(judge_band(&never, None, None, deadline).agrees);
    }

    #[test]
    fn crash_is_eof_when_idle_and_reset_when_busy() {
        assert_eq!(
            p("none", Fault::Crash, Load::Idle).mechanism,
            Some(Mechanism::Eof)
        );
        assert_eq!(
            p("none", Fault::Crash, Load::Busy).mechanism,
            Some(Mechanism::Reset)
        );
    }
}
