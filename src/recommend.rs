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

use crate::predict::{Backoff, PathTimes, Prediction, assumed_effective, predict_on_path};
use crate::scenario::Load;
use crate::settings::KernelTimers;
use crate::strategy::{Heartbeat, Keepalive, Strategy};
use crate::units::Millis;
use crate::units::{format_duration, secs2};

/// The shortest deadline tcphb will plan for: its heartbeat interval floor.
pub const MIN_DEADLINE: Duration = Duration::from_millis(10);
/// Heartbeat intervals shorter than this are refused by the heartbeat parser.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(10);
/// Keep periodic traffic this far under a known idle timeout (fraction of it), for timer slack.
const IDLE_TIMEOUT_SHARE: f64 = 0.8;
/// Retransmissions a user timeout should leave room for before a busy connection is declared dead.
const WANTED_RETRANSMISSIONS: u32 = 3;

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
}

/// A strategy that meets the ask, with its predictions on this path.
#[derive(Debug, Clone)]
pub struct Recommendation {
    pub strategy: Strategy,
    /// The strategy as flags for `tcphb connect` (`--keepalive 15s,5s,3 --user-timeout 30s`).
    pub flags: String,
    /// Predicted detection on an idle connection (≤ the deadline).
    pub idle: Prediction,
    /// Predicted detection on a busy connection (≤ the deadline).
    pub busy: Prediction,
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
    let mut why_not_kernel = Vec::new();
    if ask.user_timeout_supported {
        match kernel_strategy(ask) {
            Ok((s, notes)) => return checked(ask, s, notes),
            Err(why) => why_not_kernel.push(why),
        }
    } else {
        why_not_kernel.push(
            "this system has no TCP_USER_TIMEOUT, so only retransmissions (~15 min) would end a busy connection"
                .to_string(),
        );
    }
    let (s, mut notes) = heartbeat_strategy(ask)?;
    notes.insert(
        0,
        format!(
            "a heartbeat, because the kernel alone cannot: {}",
            why_not_kernel.join("; ")
        ),
    );
    notes.push("your application (or its peer) must send `PING n` lines and answer them, as tcphb listen and echo services do".into());
    checked(ask, s, notes)
}

/// Predict the candidate on the path and refuse it if either prediction misses the deadline.
fn checked(ask: &Ask, s: Strategy, notes: Vec<String>) -> Result<Recommendation, Refusal> {
    let eff = assumed_effective(&s, &ask.kernel);
    let idle = predict_on_path(&eff, Load::Idle, &ask.kernel, &ask.path);
    let busy = predict_on_path(&eff, Load::Busy, &ask.kernel, &ask.path);
    for (load, p) in [("idle", &idle), ("busy", &busy)] {
        match p.expected {
            Some(t) if t <= ask.within => {}
            other => {
                return Err(Refusal(format!(
                    "the best candidate ({}) would notice a dead peer on a {load} connection after {}, later than {}",
                    s.spec(),
                    other.map_or("never".into(), secs2),
                    format_duration(ask.within)
                )));
            }
        }
    }
    Ok(Recommendation {
        flags: flags(&s),
        strategy: s,
        idle,
        busy,
        notes,
    })
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
        let first_rto = ask
            .path
            .rto
            .max(Duration::from_millis(ask.kernel.rto_min_ms));
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
        let mut notes = vec![
            format!(
                "kernel only, no application change: keepalive probes after {idle} s idle, then every {interval} s; \
                 the user timeout ({}) ends the connection at the {}{} probe, and also ends a busy one (keepalive is silent while data is unacknowledged)",
                format_duration(uto),
                count,
                ordinal(count)
            ),
            "only an application heartbeat notices a peer process that hangs while its kernel still ACKs: add --heartbeat if the peer can answer PING".into(),
        ];
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
fn heartbeat_strategy(ask: &Ask) -> Result<(Strategy, Vec<String>), Refusal> {
    let d = ask.within;
    let floor = MIN_HEARTBEAT_INTERVAL.max(ask.path.rtt);
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
        return Err(Refusal(format!(
            "a heartbeat would need an interval of {} (under {}: 10 ms or one round trip of {:.1} ms)",
            format_duration(interval),
            format_duration(floor),
            ask.path.rtt.as_secs_f64() * 1000.0
        )));
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
            heartbeat: Some(Heartbeat { interval, misses }),
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
        }
    }

    #[test]
    fn thirty_seconds_on_a_lan_is_kernel_only() {
        let r = recommend(&ask(Duration::from_secs(30), ms(1), None, true)).unwrap();
        // The user timeout leaves room for the first RTO (200 ms) a busy connection waits.
        assert_eq!(r.strategy.spec(), "ka=15s,5s,3+uto=29s800ms");
        assert_eq!(r.flags, "--keepalive 15s,5s,3 --user-timeout 29s800ms");
        assert_eq!(r.idle.expected, Some(Duration::from_secs(30)));
        assert_eq!(r.busy.expected, Some(Duration::from_secs(30)));
    }

    #[test]
    fn under_two_seconds_needs_a_heartbeat() {
        let r = recommend(&ask(ms(1500), ms(1), None, true)).unwrap();
        assert_eq!(r.strategy.spec(), "hb=500ms,3");
        assert!(r.notes[0].contains("1 s granularity"), "{:?}", r.notes);
        assert_eq!(r.idle.expected, Some(ms(1500)));
    }

    #[test]
    fn without_user_timeout_busy_connections_need_a_heartbeat() {
        let r = recommend(&ask(Duration::from_secs(30), ms(1), None, false)).unwrap();
        assert_eq!(r.strategy.spec(), "hb=10s,3");
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
            (idle, interval, count),
            (Duration::from_secs(2), Duration::from_secs(2), Some(14))
        );
        assert_eq!(r.strategy.user_timeout, Some(Duration::from_millis(29_800)));
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
                    for uto in [true, false] {
                        let a = ask(ms(d), ms(rtt), keep.map(ms), uto);
                        match recommend(&a) {
                            Ok(r) => {
                                ok += 1;
                                for p in [&r.idle, &r.busy] {
                                    let t = p.expected.expect("a recommendation always notices");
                                    assert!(t <= ms(d), "{a:?} -> {r:?}");
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
                                    d < 20
                                        || d < 2 * rtt
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
