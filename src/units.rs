//! Durations: parsed from the command line, written back in the same form, shown to people, and
//! turned into the whole milliseconds of the JSON. A leaf: it imports nothing from the crate.

use std::time::Duration;

/// Why a duration was refused (the caller wraps it in its own usage error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(pub String);

/// Longest duration accepted anywhere (ten years as humantime counts them, so `10y` is accepted): far
/// beyond any sane timer, and small enough that interval × misses or idle + interval × count can never
/// overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(10 * 31_557_600);

/// Parse a duration: humantime syntax, or a bare (possibly fractional) number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let refuse = |msg: String| Err(DurationError(msg));
    if s.is_empty() {
        return refuse("empty duration: write e.g. 500ms, 5s or 2m".into());
    }
    let d = if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs < 0.0 {
            return refuse(format!(
                "invalid duration '{s}': must be a non-negative number of seconds"
            ));
        }
        // try_: a huge number of seconds (1e300) is bad input, not a panic.
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    } else {
        humantime::parse_duration(s).map_err(|e| {
            DurationError(format!(
                "invalid duration '{s}' ({e}): write e.g. 500ms, 5s or 2m"
            ))
        })?
    };
    if d > MAX_DURATION {
        return refuse(format!(
            "invalid duration '{s}': too long (at most 10 years)"
        ));
    }
    Ok(d)
}

/// Parse a duration that must lie within `min..=max` (a run's deadline, warm-up, duration, connect
/// timeout): zero and years are refused with the bounds in the message.
pub fn parse_bounded(s: &str, min: Duration, max: Duration) -> Result<Duration, DurationError> {
    let d = parse_duration(s)?;
    if d < min || d > max {
        return Err(DurationError(format!(
            "'{s}' is out of range: write a duration from {} to {}",
            format_duration(min),
            format_duration(max)
        )));
    }
    Ok(d)
}

/// Write a duration the way [`parse_duration`] reads it back (`1s`, `500ms`, `1m30s`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    humantime::format_duration(d).to_string().replace(' ', "")
}

/// A time in milliseconds for people: `850 ms`, `4.0 s`, `15m 24s`; `never` for none.
pub fn human_ms(ms: Option<u64>) -> String {
    match ms {
        None => "never".into(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) if ms < 600_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => humantime::format_duration(Duration::from_secs(ms / 1000)).to_string(),
    }
}

/// A predicted time, roughly, as far as a prediction deserves: `3.0 s`, `15 min`, `2 h 11 m`.
pub fn rough_ms(ms: u64) -> String {
    match ms {
        ms if ms < 600_000 => human_ms(Some(ms)),
        ms if ms < 3_600_000 => format!("{} min", (ms + 30_000) / 60_000),
        ms => {
            let m = (ms + 30_000) / 60_000;
            match m % 60 {
                0 => format!("{} h", m / 60),
                rest => format!("{} h {rest} m", m / 60),
            }
        }
    }
}

/// Seconds with two decimals (`4.04 s`), where a band's edges must be told apart.
pub fn secs2(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Whole milliseconds, saturating: the unit of every `_ms` key.
pub trait Millis {
    /// The duration in whole milliseconds (`u64::MAX` beyond).
    fn ms(&self) -> u64;
}

impl Millis for Duration {
    fn ms(&self) -> u64 {
        u64::try_from(self.as_millis()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_writes() {
        for s in ["500ms", "5s", "1m30s", "1h"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(parse_duration(&format_duration(d)).unwrap(), d, "{s}");
        }
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn refuses_bad_and_huge_durations_with_a_reason() {
        assert!(parse_duration("").unwrap_err().0.contains("empty"));
        assert!(parse_duration("-1").unwrap_err().0.contains("non-negative"));
        assert!(
            parse_duration("10y1d")
                .unwrap_err()
                .0
                .contains("at most 10 years")
        );
        assert!(
            parse_duration("1e300")
                .unwrap_err()
                .0
                .contains("at most 10 years")
        );
        assert!(parse_duration("5 parsecs").unwrap_err().0.contains("500ms"));
        assert_eq!(parse_duration("10y").unwrap(), MAX_DURATION);
        let (lo, hi) = (Duration::from_millis(100), Duration::from_secs(3600));
        assert!(
            parse_bounded("0", lo, hi)
                .unwrap_err()
                .0
                .contains("from 100ms to 1h")
        );
        assert!(
            parse_bounded("9y", lo, hi)
                .unwrap_err()
                .0
                .contains("out of range")
        );
        assert_eq!(parse_bounded("8s", lo, hi).unwrap(), Duration::from_secs(8));
    }

    #[test]
    fn human_forms() {
        assert_eq!(human_ms(None), "never");
        assert_eq!(human_ms(Some(850)), "850 ms");
        assert_eq!(human_ms(Some(4040)), "4.0 s");
        assert_eq!(human_ms(Some(924_600)), "15m 24s");
        assert_eq!(secs2(Duration::from_millis(4040)), "4.04 s");
        assert_eq!(rough_ms(3000), "3.0 s");
        assert_eq!(rough_ms(924_600), "15 min");
        assert_eq!(rough_ms(7_875_000), "2 h 11 m");
        assert_eq!(rough_ms(7_200_000), "2 h");
    }

    #[test]
    fn milliseconds_saturate() {
        assert_eq!(Duration::from_millis(1234).ms(), 1234);
        assert_eq!(Duration::MAX.ms(), u64::MAX);
    }
}
