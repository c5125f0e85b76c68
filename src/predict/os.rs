//! Predictions for another operating system, offline: what a strategy does on Linux, macOS or
//! Windows with that OS's defaults and rules, without opening a socket — and the pitfalls of
//! writing it the way that OS's APIs invite (SIO_KEEPALIVE_VALS's milliseconds, Windows' fixed
//! probe count).

use std::time::Duration;

use super::{Prediction, assumed_effective, predict};
use crate::scenario::{Fault, Load};
use crate::settings::{Effective, KeepaliveCount, Os, UserTimeout};
use crate::strategy::{Keepalive, Strategy};
use crate::units::{Millis, format_duration};

/// Below this, a keepalive interval reads like a probe count written into a millisecond field.
const COUNT_LIKE_INTERVAL: Duration = Duration::from_millis(10);

/// What one strategy does on one OS when the peer silently dies, idle and busy.
#[derive(Debug, Clone)]
pub struct OsPrediction {
    /// The settings the OS would run with (its defaults filling what the strategy leaves).
    pub effective: Effective,
    /// A blackhole on an idle connection, counted from the last packet heard.
    pub idle: Prediction,
    /// A blackhole while the local side keeps writing.
    pub busy: Prediction,
    /// What differs from what the writer probably meant, in words.
    pub pitfalls: Vec<String>,
}

/// Predict `strategy` on `os`. The strategy must already fit the OS (`sys::validate`).
pub fn for_os(strategy: &Strategy, os: Os) -> OsPrediction {
    let rules = os.rules();
    let kernel = &rules.defaults;
    let effective = assumed_effective(strategy, kernel);
    let mut pitfalls = Vec::new();
    if let Keepalive::Custom {
        idle,
        interval,
        count,
    } = strategy.keepalive
    {
        if let KeepaliveCount::SinceVersion { fixed, .. } = rules.keepalive_count {
            match count {
                None => pitfalls.push(format!(
                    "{} keeps its fixed {fixed} probes: SIO_KEEPALIVE_VALS sets only the idle time and \
                     the interval, whatever a comment beside it says",
                    rules.name
                )),
                Some(c) if c != fixed => pitfalls.push(format!(
                    "a count of {c} needs TCP_KEEPCNT (Windows 10 1703 and later); older Windows keeps \
                     {fixed} probes: {} + {fixed} × {} = {} instead",
                    format_duration(idle),
                    format_duration(interval),
                    format_duration(idle + interval * fixed)
                )),
                Some(_) => {}
            }
        }
        if rules.keepalive_resolution < Duration::from_secs(1) && interval < COUNT_LIKE_INTERVAL {
            let probes = effective.keepalive_count.unwrap_or(1);
            pitfalls.push(format!(
                "an interval of {} is {} ms, not one probe: all {probes} probes go out within {}, so \
                 a brief loss kills a live connection — write the interval in milliseconds (e.g. 1000 \
                 for 1 s)",
                format_duration(interval),
                interval.ms(),
                format_duration(interval * probes)
            ));
        }
    }
    let idle_eff = match rules.user_timeout {
        // TCP_RXT_CONNDROPTIME bounds retransmission only: keepalive keeps its own count.
        UserTimeout::RxtConnDropTime if strategy.user_timeout.is_some() => {
            pitfalls.push(format!(
                "on {} the user timeout is TCP_RXT_CONNDROPTIME: it bounds retransmission of data \
                 (busy) only, and does not shorten keepalive as Linux's TCP_USER_TIMEOUT does",
                rules.name
            ));
            Effective {
                user_timeout_ms: None,
                ..effective
            }
        }
        _ => effective,
    };
    if strategy.keepalive == Keepalive::Off && strategy.heartbeat.is_none() {
        pitfalls.push("keepalive off and no heartbeat: an idle dead peer is never noticed".into());
    }
    let rtt = Duration::ZERO;
    OsPrediction {
        idle: predict(&idle_eff, Fault::Blackhole, Load::Idle, kernel, rtt),
        busy: predict(&effective, Fault::Blackhole, Load::Busy, kernel, rtt),
        effective,
        pitfalls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::Mechanism;

    fn on(os: Os, spec: &str) -> OsPrediction {
        let s: Strategy = spec.parse().unwrap();
        crate::sys::validate(&s, os.rules()).unwrap();
        for_os(&s, os)
    }

    fn idle_ms(p: &OsPrediction) -> Option<u64> {
        p.idle.expected_ms()
    }

    /// The seeds' Windows code: SIO_KEEPALIVE_VALS { keepalivetime, keepaliveinterval } in ms, no
    /// count, so Windows' fixed 10 probes: idle + 10 × interval.
    #[test]
    fn seeds_windows_sio_keepalive_vals() {
        for (idle, interval, expected_ms) in [
            (5500, 3000, 35_500),
            (3000, 1, 3_010),
            (15000, 5000, 65_000),
            (5000, 5000, 55_000),
        ] {
            let p = on(Os::Windows, &format!("ka={idle}ms,{interval}ms"));
            assert_eq!(
                idle_ms(&p),
                Some(expected_ms),
                "{idle}/{interval}: {:?}",
                p.idle
            );
            assert_eq!(p.idle.mechanism, Some(Mechanism::Keepalive));
            assert_eq!(p.effective.keepalive_count, Some(10));
            assert!(
                p.pitfalls.iter().any(|w| w.contains("fixed 10 probes")),
                "{:?}",
                p.pitfalls
            );
            let ms_pitfall = p.pitfalls.iter().any(|w| w.contains("not one probe"));
            assert_eq!(
                ms_pitfall,
                interval == 1,
                "{idle}/{interval}: {:?}",
                p.pitfalls
            );
        }
        // Busy: TcpMaxDataRetransmissions 5 from a 300 ms RTO: 0.3 × (2^6 − 1) = 18.9 s.
        let p = on(Os::Windows, "ka=5500ms,3000ms");
        assert_eq!(p.busy.expected_ms(), Some(18_900));
        assert_eq!(p.busy.mechanism, Some(Mechanism::Retransmission));
    }

    /// A count on Windows holds only where TCP_KEEPCNT exists; the note says what older ones do.
    #[test]
    fn windows_count_needs_tcp_keepcnt() {
        let p = on(Os::Windows, "ka=5s,1s,3");
        assert_eq!(idle_ms(&p), Some(8_000));
        assert!(
            p.pitfalls
                .iter()
                .any(|w| w.contains("TCP_KEEPCNT") && w.contains("15s")),
            "{:?}",
            p.pitfalls
        );
    }

    /// The seeds' Linux code: idle 5, interval 5, count 3 → 5 + 3 × 5 = 20 s; busy without a user
    /// timeout: tcp_retries2 15 ≈ 924.6 s.
    #[test]
    fn seeds_linux_5_5_3() {
        let p = on(Os::Linux, "ka=5s,5s,3");
        assert_eq!(idle_ms(&p), Some(20_000));
        assert_eq!(p.busy.expected_ms(), Some(924_600));
        assert!(p.pitfalls.is_empty(), "{:?}", p.pitfalls);
        // Linux takes whole seconds only: the Windows-style 5500 ms is refused, not rounded.
        let s: Strategy = "ka=5500ms,3s".parse().unwrap();
        assert!(crate::sys::validate(&s, Os::Linux.rules()).is_err());
    }

    /// macOS: the same settings, its own retransmission budget, and a user timeout that only
    /// bounds busy connections.
    #[test]
    fn macos_user_timeout_is_busy_only() {
        let p = on(Os::Macos, "ka=5s,5s,3+uto=10s");
        assert_eq!(idle_ms(&p), Some(20_000));
        assert_eq!(p.idle.mechanism, Some(Mechanism::Keepalive));
        assert_eq!(p.busy.mechanism, Some(Mechanism::UserTimeout));
        assert!(
            p.pitfalls
                .iter()
                .any(|w| w.contains("TCP_RXT_CONNDROPTIME"))
        );
        // Defaults: 2 h idle + 8 × 75 s.
        let p = on(Os::Macos, "os");
        assert_eq!(idle_ms(&p), Some(7_200_000 + 8 * 75_000));
    }
}
