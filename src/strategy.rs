//! Strategy, Keepalive, Heartbeat: the detection settings of one connection, parsed from flags or a compare spec.
//!
//! Grammar (also in README and `--help`):
//! - durations: humantime (`500ms`, `5s`, `2m`); a bare number means seconds.
//! - keepalive: `IDLE,INTERVAL,COUNT` (e.g. `5s,5s,3`), `os` (SO_KEEPALIVE with the system's defaults) or `off`.
//! - heartbeat: `INTERVAL,MISSES[/PROTOCOL]` (e.g. `1s,3`, `1s,3/redis`): the protocol the pings are
//!   spoken in, `line` (tcphb's `PING n`) when omitted.
//! - a compare spec: `[label=]part[+part...]` where part is `none`, `os`, `ka=I,N,C`, `uto=D` or `hb=I,M`.
//!
//! `Display` writes the spec form, and parsing it back gives the same strategy.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::units::format_duration;

/// Why a spec or flag value was refused. Always a usage error (exit 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError(msg.into()))
}

impl From<crate::units::DurationError> for SpecError {
    fn from(e: crate::units::DurationError) -> SpecError {
        SpecError(e.0)
    }
}

/// A count (keepalive probes, heartbeat misses): a whole number, and one too large for any count
/// is said to be that, not "not a number".
fn whole(s: &str) -> Result<u32, &'static str> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().map_err(
            |_| "too large (keepalive counts stop at 127 on Linux, heartbeat misses at 1000)",
        )
    } else {
        Err("must be a whole number (e.g. 3)")
    }
}

/// [`crate::units::parse_duration`], refused as a usage error.
pub fn parse_duration(s: &str) -> Result<Duration, SpecError> {
    Ok(crate::units::parse_duration(s)?)
}

/// A run's duration bound (`--deadline`, `--warmup`, `--duration`, `--connect-timeout`): from
/// `MIN_MS` to `MAX_MS` milliseconds, as a usage error otherwise.
pub fn parse_bounded<const MIN_MS: u64, const MAX_MS: u64>(s: &str) -> Result<Duration, SpecError> {
    Ok(crate::units::parse_bounded(
        s,
        Duration::from_millis(MIN_MS),
        Duration::from_millis(MAX_MS),
    )?)
}

/// TCP keepalive as asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keepalive {
    /// SO_KEEPALIVE off.
    #[default]
    Off,
    /// SO_KEEPALIVE on with the system's defaults (Linux: tcp_keepalive_time/intvl/probes).
    Os,
    /// SO_KEEPALIVE on with explicit idle time and probe interval, and a probe count — or, written
    /// `IDLE,INTERVAL` (the Windows SIO_KEEPALIVE_VALS way), the system's count.
    Custom {
        idle: Duration,
        interval: Duration,
        count: Option<u32>,
    },
}

impl FromStr for Keepalive {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        match s.trim() {
            "off" | "none" => return Ok(Keepalive::Off),
            "os" | "on" => return Ok(Keepalive::Os),
            _ => {}
        }
        let parts: Vec<&str> = s.split(',').collect();
        let (idle, interval, count) = match parts[..] {
            [idle, interval, count] => (idle, interval, Some(count)),
            [idle, interval] => (idle, interval, None),
            _ => {
                return err(format!(
                    "invalid keepalive '{s}': write IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), IDLE,INTERVAL for the system's count, 'os' or 'off'"
                ));
            }
        };
        let idle = parse_duration(idle)?;
        let interval = parse_duration(interval)?;
        let count: Option<u32> = count
            .map(|c| {
                whole(c).map_err(|why| SpecError(format!("invalid keepalive count '{c}': {why}")))
            })
            .transpose()?;
        if idle.is_zero() || interval.is_zero() {
            return err(format!(
                "invalid keepalive '{s}': idle and interval must be greater than zero"
            ));
        }
        if count == Some(0) {
            return err(format!("invalid keepalive '{s}': count must be at least 1"));
        }
        Ok(Keepalive::Custom {
            idle,
            interval,
            count,
        })
    }
}

impl fmt::Display for Keepalive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Keepalive::Off => f.write_str("off"),
            Keepalive::Os => f.write_str("os"),
            Keepalive::Custom {
                idle,
                interval,
                count,
            } => {
                write!(
                    f,
                    "{},{}",
                    format_duration(*idle),
                    format_duration(*interval)
                )?;
                match count {
                    Some(c) => write!(f, ",{c}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// The protocol a heartbeat speaks: tcphb's own `PING n` lines, or a real service's liveness request
/// (the codecs are in `ping/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `PING n` → `PONG n` (or the line echoed): a `tcphb listen` or any echo service.
    #[default]
    Line,
    /// RESP `PING` → `+PONG` (Redis, Valkey, KeyDB…).
    Redis,
    /// `version` → `VERSION …`.
    Memcached,
    /// An HTTP/1.1 keep-alive request (`HEAD PATH`, or `OPTIONS *`) → a status line.
    Http,
    /// HTTP/2 PING frames → PING ACK (also gRPC servers).
    H2,
    /// An RFC 6455 upgrade, then ping frames → pong.
    Websocket,
    /// MQTT 3.1.1 CONNECT, then PINGREQ → PINGRESP.
    Mqtt,
}

impl Protocol {
    /// Every protocol, in the order `--help` lists them.
    pub const ALL: [Protocol; 7] = [
        Protocol::Line,
        Protocol::Redis,
        Protocol::Memcached,
        Protocol::Http,
        Protocol::H2,
        Protocol::Websocket,
        Protocol::Mqtt,
    ];

    /// The name written on the command line, in specs and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Line => "line",
            Protocol::Redis => "redis",
            Protocol::Memcached => "memcached",
            Protocol::Http => "http",
            Protocol::H2 => "h2",
            Protocol::Websocket => "websocket",
            Protocol::Mqtt => "mqtt",
        }
    }

    /// Every name, for `--help` and completions.
    pub fn names() -> [&'static str; 7] {
        Protocol::ALL.map(Protocol::name)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                SpecError(format!(
                    "unknown ping protocol '{s}': use one of {}",
                    Protocol::names().join(", ")
                ))
            })
    }
}

/// Application heartbeat: a ping every `interval` in `protocol`, the peer is dead after `misses`
/// intervals of silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub interval: Duration,
    pub misses: u32,
    pub protocol: Protocol,
}

impl Heartbeat {
    /// The shortest interval accepted: below it the event loop's own wake-ups would be measured.
    pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

    /// How long the peer may stay silent before it is declared dead.
    pub fn deadline(&self) -> Duration {
        self.interval * self.misses
    }
}

impl FromStr for Heartbeat {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let (s, protocol) = match s.split_once('/') {
            Some((hb, p)) => (hb, p.trim().parse()?),
            None => (s, Protocol::Line),
        };
        let Some((interval, misses)) = s.split_once(',') else {
            return err(format!(
                "invalid heartbeat '{s}': write INTERVAL,MISSES[/PROTOCOL] (e.g. 1s,3 or 1s,3/redis)"
            ));
        };
        let interval = parse_duration(interval)?;
        let misses = whole(misses)
            .map_err(|why| SpecError(format!("invalid heartbeat misses '{misses}': {why}")))?;
        if interval < Heartbeat::MIN_INTERVAL {
            return err(format!(
                "invalid heartbeat '{s}': interval must be at least 10ms"
            ));
        }
        if !(1..=1000).contains(&misses) {
            return err(format!(
                "invalid heartbeat '{s}': misses must be between 1 and 1000"
            ));
        }
        Ok(Heartbeat {
            interval,
            misses,
            protocol,
        })
    }
}

impl fmt::Display for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", format_duration(self.interval), self.misses)?;
        match self.protocol {
            Protocol::Line => Ok(()),
            p => write!(f, "/{p}"),
        }
    }
}

/// Parse a TCP_USER_TIMEOUT value: a positive duration in whole milliseconds that fits the kernel's u32.
pub fn parse_user_timeout(s: &str) -> Result<Duration, SpecError> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return err(
            "invalid user timeout '0': must be greater than zero (omit the flag to leave it off)",
        );
    }
    if d.subsec_nanos() % 1_000_000 != 0 {
        return err(format!(
            "invalid user timeout '{s}': TCP_USER_TIMEOUT has millisecond resolution"
        ));
    }
    if d.as_millis() > u128::from(i32::MAX as u32) {
        return err(format!(
            "invalid user timeout '{s}': at most {} ms",
            i32::MAX
        ));
    }
    Ok(d)
}

/// A named set of detection mechanisms for one connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Strategy {
    /// Optional label shown instead of the spec (`fast=ka=1s,1s,3`).
    pub label: Option<String>,
    pub keepalive: Keepalive,
    pub user_timeout: Option<Duration>,
    pub heartbeat: Option<Heartbeat>,
}

impl Strategy {
    /// The strategies the prediction rows are about: none, the OS default keepalive, each requested
    /// mechanism alone, and the whole request (`strategy`) when it combines two or more.
    pub fn mechanism_parts(&self) -> Vec<(&'static str, Strategy)> {
        let none = Strategy::default();
        let mut parts: Vec<(&'static str, Strategy)> = vec![
            ("none", none.clone()),
            (
                "os_keepalive",
                Strategy {
                    keepalive: Keepalive::Os,
                    ..none.clone()
                },
            ),
        ];
        if let k @ Keepalive::Custom { .. } = self.keepalive {
            let s = Strategy {
                keepalive: k,
                ..none.clone()
            };
            parts.push(("keepalive", s));
        }
        if let Some(u) = self.user_timeout {
            let s = Strategy {
                user_timeout: Some(u),
                ..none.clone()
            };
            parts.push(("user_timeout", s));
        }
        if let Some(h) = self.heartbeat {
            let s = Strategy {
                heartbeat: Some(h),
                ..none.clone()
            };
            parts.push(("heartbeat", s));
        }
        let requested_parts = [
            self.keepalive != Keepalive::Off,
            self.user_timeout.is_some(),
            self.heartbeat.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if requested_parts >= 2 {
            parts.push(("strategy", self.clone()));
        }
        parts
    }

    /// The name shown in tables: the label if any, else the spec.
    pub fn name(&self) -> String {
        match &self.label {
            Some(l) => l.clone(),
            None => self.spec(),
        }
    }

    /// Whether nothing at all is armed (an idle connection can then never notice a silent death).
    pub fn is_none(&self) -> bool {
        self.keepalive == Keepalive::Off && self.user_timeout.is_none() && self.heartbeat.is_none()
    }

    /// The spec without the label (`ka=1s,1s,3+uto=2s`, `none`).
    pub fn spec(&self) -> String {
        let mut parts = Vec::new();
        match self.keepalive {
            Keepalive::Off => {}
            Keepalive::Os => parts.push("os".to_string()),
            k @ Keepalive::Custom { .. } => parts.push(format!("ka={k}")),
        }
        if let Some(u) = self.user_timeout {
            parts.push(format!("uto={}", format_duration(u)));
        }
        if let Some(h) = self.heartbeat {
            parts.push(format!("hb={h}"));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join("+")
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.label {
            Some(l) => write!(f, "{l}={}", self.spec()),
            None => f.write_str(&self.spec()),
        }
    }
}

const KEYWORDS: [&str; 3] = ["ka", "uto", "hb"];

impl FromStr for Strategy {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let s = s.trim();
        let mut strategy = Strategy::default();
        let mut body = s;
        if let Some((head, rest)) = s.split_once('=')
            && !KEYWORDS.contains(&head)
            && !head.contains('+')
        {
            if head.is_empty()
                || !head
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return err(format!(
                    "invalid strategy label '{head}' in '{s}': use letters, digits, '-', '_' or '.'"
                ));
            }
            strategy.label = Some(head.to_string());
            body = rest;
        }
        if body.is_empty() {
            return err(format!(
                "empty strategy '{s}': write e.g. ka=5s,5s,3+uto=20s, hb=1s,3, os or none"
            ));
        }
        let mut seen_ka = false;
        for part in body.split('+') {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            match key {
                "none" if value.is_empty() && body == "none" => {}
                "os" if value.is_empty() => {
                    if seen_ka {
                        return err(format!("strategy '{s}' sets keepalive twice"));
                    }
                    seen_ka = true;
                    strategy.keepalive = Keepalive::Os;
                }
                "ka" => {
                    if seen_ka {
                        return err(format!("strategy '{s}' sets keepalive twice"));
                    }
                    seen_ka = true;
                    strategy.keepalive = value.parse()?;
                }
                "uto" => {
                    if strategy.user_timeout.is_some() {
                        return err(format!("strategy '{s}' sets the user timeout twice"));
                    }
                    strategy.user_timeout = Some(parse_user_timeout(value)?);
                }
                "hb" => {
                    if strategy.heartbeat.is_some() {
                        return err(format!("strategy '{s}' sets the heartbeat twice"));
                    }
                    strategy.heartbeat = Some(value.parse()?);
                }
                _ => {
                    return err(format!(
                        "unknown strategy part '{part}' in '{s}': use none, os, ka=IDLE,INTERVAL,COUNT, uto=DURATION or hb=INTERVAL,MISSES[/PROTOCOL] joined by '+'"
                    ));
                }
            }
        }
        Ok(strategy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protocol_is_named_alike_on_the_command_line_and_in_json() {
        for p in Protocol::ALL {
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.name())
            );
            assert_eq!(p.name().parse::<Protocol>().unwrap(), p);
        }
    }

    #[test]
    fn durations_accept_humantime_and_bare_seconds() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn huge_bare_seconds_are_refused_not_a_panic() {
        // Found by fuzzing (tests/fuzz/corpus/spec/crash-e34d65…): Duration::from_secs_f64 panicked past u64::MAX s.
        assert!(parse_duration("1e300").is_err());
        assert!(parse_duration("18446744073709551616").is_err());
        assert!("ka=1e20,1s,3".parse::<Strategy>().is_err());
        // Capped at ten years, so interval × misses cannot overflow either.
        assert!(parse_duration("1e18").is_err());
        assert!(parse_duration("500000d").is_err());
        assert_eq!(parse_duration("10y").unwrap(), crate::units::MAX_DURATION);
        let h: Heartbeat = "10y,1000".parse().unwrap();
        assert_eq!(h.deadline(), crate::units::MAX_DURATION * 1000);
    }

    #[test]
    fn keepalive_forms() {
        assert_eq!("off".parse::<Keepalive>().unwrap(), Keepalive::Off);
        assert_eq!("os".parse::<Keepalive>().unwrap(), Keepalive::Os);
        assert_eq!(
            "5s,5s,3".parse::<Keepalive>().unwrap(),
            Keepalive::Custom {
                idle: Duration::from_secs(5),
                interval: Duration::from_secs(5),
                count: Some(3)
            }
        );
        // The Windows way: idle and interval, the system's count.
        let k: Keepalive = "5500ms,3s".parse().unwrap();
        assert_eq!(
            k,
            Keepalive::Custom {
                idle: Duration::from_millis(5500),
                interval: Duration::from_secs(3),
                count: None
            }
        );
        assert_eq!(k.to_string().parse::<Keepalive>().unwrap(), k);
        assert!("5s".parse::<Keepalive>().is_err());
        assert!("5s,5s,0".parse::<Keepalive>().is_err());
        assert!("0,5s,3".parse::<Keepalive>().is_err());
        assert!("5s,5s,x".parse::<Keepalive>().is_err());
    }

    #[test]
    fn heartbeat_forms() {
        let h: Heartbeat = "500ms,3".parse().unwrap();
        assert_eq!(h.deadline(), Duration::from_millis(1500));
        assert!("1s".parse::<Heartbeat>().is_err());
        assert!("1s,0".parse::<Heartbeat>().is_err());
        assert!("1ms,3".parse::<Heartbeat>().is_err());
        let h: Heartbeat = "2s,4/websocket".parse().unwrap();
        assert_eq!(h.protocol, Protocol::Websocket);
        assert_eq!(h.to_string(), "2s,4/websocket");
        assert_eq!(
            "1s,3/line".parse::<Heartbeat>().unwrap().to_string(),
            "1s,3"
        );
        let e = "1s,3/ftp".parse::<Heartbeat>().unwrap_err().0;
        assert!(
            e.contains("line, redis, memcached, http, h2, websocket, mqtt"),
            "{e}"
        );
    }

    #[test]
    fn user_timeout_needs_whole_ms() {
        assert!(parse_user_timeout("1500us").is_err());
        assert!(parse_user_timeout("0").is_err());
        assert_eq!(parse_user_timeout("20s").unwrap(), Duration::from_secs(20));
    }

    #[test]
    fn specs_round_trip() {
        for spec in [
            "none",
            "os",
            "ka=1s,1s,3",
            "ka=1s,1s,3+uto=2s",
            "uto=3s",
            "hb=500ms,3",
            "fast=ka=1s,1s,3",
            "os+hb=1s,3",
            "ka=2m,30s,9+uto=1m30s+hb=250ms,4",
            "hb=1s,3/redis",
            "grpc=ka=5s,5s,3+hb=10m,2/h2",
        ] {
            let s: Strategy = spec.parse().unwrap();
            assert_eq!(s.to_string(), spec, "display of {spec}");
            assert_eq!(s.to_string().parse::<Strategy>().unwrap(), s);
        }
    }

    #[test]
    fn specs_refuse_nonsense() {
        for bad in [
            "",
            "ka=",
            "ka=1s,1s,3+ka=2s,2s,2",
            "foo",
            "x=",
            "ka=1,1,1+none",
            "uto=0",
            "bad label=os",
            "hb=1s,3/",
            "hb=1s,3/ftp",
            "hb=1s/redis",
        ] {
            assert!(bad.parse::<Strategy>().is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn label_and_name() {
        let s: Strategy = "fast=ka=1s,1s,3".parse().unwrap();
        assert_eq!(s.name(), "fast");
        assert_eq!(s.spec(), "ka=1s,1s,3");
        assert_eq!("none".parse::<Strategy>().unwrap(), Strategy::default());
    }
}
