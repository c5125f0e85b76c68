//! Apply a Strategy to a socket2::Socket, check it fits the platform, and read back what the kernel set.
//!
//! Values the platform cannot honour are refused, never rounded: Linux keepalive times have whole-second
//! resolution (socket2 would silently truncate 1500ms to 1 s) and bounded ranges.

use std::io;
use std::time::Duration;

use serde::Serialize;
use socket2::{Socket, TcpKeepalive};

use crate::strategy::{Keepalive, SpecError, Strategy};
use crate::units::Millis;

/// Largest TCP_KEEPIDLE / TCP_KEEPINTVL Linux accepts (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL), in seconds.
#[cfg(target_os = "linux")]
const MAX_KEEP_SECS: u64 = 32767;
/// Largest TCP_KEEPCNT Linux accepts (MAX_TCP_KEEPCNT).
#[cfg(target_os = "linux")]
const MAX_KEEPCNT: u32 = 127;

/// Whether this system has TCP_USER_TIMEOUT.
pub const HAS_USER_TIMEOUT: bool = cfg!(target_os = "linux");

/// Why a strategy cannot be used on this platform.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The value is malformed for this platform (usage error, exit 2).
    #[error(transparent)]
    Invalid(#[from] SpecError),
    /// The platform has no such option at all (exit 4).
    #[error("{0}")]
    Unsupported(String),
}

/// Check that the platform can honour the strategy exactly, before any socket is touched.
pub fn validate(strategy: &Strategy) -> Result<(), PlatformError> {
    if let Keepalive::Custom {
        idle,
        interval,
        count,
    } = strategy.keepalive
    {
        validate_keepalive(idle, interval, count)?;
    }
    if strategy.user_timeout.is_some() && !cfg!(target_os = "linux") {
        return Err(PlatformError::Unsupported(
            "TCP_USER_TIMEOUT is only available on Linux: drop --user-timeout / uto= on this system".into(),
        ));
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn validate_keepalive(idle: Duration, interval: Duration, count: u32) -> Result<(), PlatformError> {
    for (what, d) in [("idle", idle), ("interval", interval)] {
        if d.subsec_nanos() != 0 {
            return Err(SpecError(format!(
                "keepalive {what} {} is not a whole number of seconds: Linux keepalive has 1 s resolution, use e.g. {}s",
                crate::units::format_duration(d),
                d.as_secs().max(1)
            ))
            .into());
        }
        if d.as_secs() > MAX_KEEP_SECS {
            return Err(SpecError(format!(
                "keepalive {what} {}s is out of range: Linux accepts 1..={MAX_KEEP_SECS} s",
                d.as_secs()
            ))
            .into());
        }
    }
    if count > MAX_KEEPCNT {
        return Err(SpecError(format!(
            "keepalive count {count} is out of range: Linux accepts 1..={MAX_KEEPCNT}"
        ))
        .into());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn validate_keepalive(idle: Duration, interval: Duration, count: u32) -> Result<(), PlatformError> {
    // macOS/BSD take whole seconds too; Windows (SIO_KEEPALIVE_VALS) takes milliseconds and a fixed count.
    if cfg!(windows) {
        if idle.subsec_nanos() % 1_000_000 != 0 || interval.subsec_nanos() % 1_000_000 != 0 {
            return Err(
                SpecError("keepalive times on Windows have millisecond resolution".into()).into(),
            );
        }
    } else if idle.subsec_nanos() != 0 || interval.subsec_nanos() != 0 {
        return Err(SpecError("keepalive times on this system have 1 s resolution".into()).into());
    }
    let _ = count;
    Ok(())
}

/// The settings in force on a socket, as read back from the kernel (heartbeat copied from the strategy,
/// since it lives in tcphb, not the kernel). `None` means off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Effective {
    pub keepalive_idle_ms: Option<u64>,
    pub keepalive_interval_ms: Option<u64>,
    pub keepalive_count: Option<u32>,
    pub user_timeout_ms: Option<u64>,
    pub heartbeat_interval_ms: Option<u64>,
    pub heartbeat_misses: Option<u32>,
}

impl Effective {
    /// Keepalive timings as durations when keepalive is on.
    pub fn keepalive(&self) -> Option<(Duration, Duration, u32)> {
        Some((
            Duration::from_millis(self.keepalive_idle_ms?),
            Duration::from_millis(self.keepalive_interval_ms?),
            self.keepalive_count?,
        ))
    }

    /// TCP_USER_TIMEOUT when set.
    pub fn user_timeout(&self) -> Option<Duration> {
        self.user_timeout_ms.map(Duration::from_millis)
    }

    /// Heartbeat interval and misses when armed.
    pub fn heartbeat(&self) -> Option<(Duration, u32)> {
        Some((
            Duration::from_millis(self.heartbeat_interval_ms?),
            self.heartbeat_misses?,
        ))
    }
}

/// Apply the strategy's kernel options to `sock` and return what the kernel reports back.
pub fn apply(sock: &Socket, strategy: &Strategy) -> io::Result<Effective> {
    match strategy.keepalive {
        Keepalive::Off => sock.set_keepalive(false)?,
        Keepalive::Os => sock.set_keepalive(true)?,
        Keepalive::Custom {
            idle,
            interval,
            count,
        } => {
            let ka = TcpKeepalive::new().with_time(idle).with_interval(interval);
            #[cfg(not(windows))]
            let ka = ka.with_retries(count);
            #[cfg(windows)]
            let _ = count;
            sock.set_tcp_keepalive(&ka)?;
        }
    }
    if let Some(uto) = strategy.user_timeout {
        set_user_timeout(sock, uto)?;
    }
    let mut eff = read_back(sock)?;
    if let Some(hb) = strategy.heartbeat {
        eff.heartbeat_interval_ms = Some(hb.interval.ms());
        eff.heartbeat_misses = Some(hb.misses);
    }
    Ok(eff)
}

#[cfg(target_os = "linux")]
fn set_user_timeout(sock: &Socket, uto: Duration) -> io::Result<()> {
    sock.set_tcp_user_timeout(Some(uto))
}

#[cfg(not(target_os = "linux"))]
fn set_user_timeout(_sock: &Socket, _uto: Duration) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "TCP_USER_TIMEOUT is only available on Linux",
    ))
}

/// Read the kernel's view of the socket's keepalive and user-timeout options.
fn read_back(sock: &Socket) -> io::Result<Effective> {
    let (keepalive_idle_ms, keepalive_interval_ms, keepalive_count) = if sock.keepalive()? {
        keepalive_read_back(sock)?
    } else {
        (None, None, None)
    };
    Ok(Effective {
        keepalive_idle_ms,
        keepalive_interval_ms,
        keepalive_count,
        user_timeout_ms: user_timeout_read_back(sock)?,
        ..Effective::default()
    })
}

/// Keepalive idle, interval (ms) and count as the kernel holds them.
#[cfg(not(windows))]
fn keepalive_read_back(sock: &Socket) -> io::Result<(Option<u64>, Option<u64>, Option<u32>)> {
    Ok((
        Some(sock.tcp_keepalive_time()?.ms()),
        Some(sock.tcp_keepalive_interval()?.ms()),
        Some(sock.tcp_keepalive_retries()?),
    ))
}

/// Windows cannot read keepalive times back (SIO_KEEPALIVE_VALS is write-only).
#[cfg(windows)]
fn keepalive_read_back(_sock: &Socket) -> io::Result<(Option<u64>, Option<u64>, Option<u32>)> {
    Ok((None, None, None))
}

#[cfg(target_os = "linux")]
fn user_timeout_read_back(sock: &Socket) -> io::Result<Option<u64>> {
    Ok(sock.tcp_user_timeout()?.map(|d| d.ms()))
}

/// Only Linux has TCP_USER_TIMEOUT.
#[cfg(not(target_os = "linux"))]
fn user_timeout_read_back(_sock: &Socket) -> io::Result<Option<u64>> {
    Ok(None)
}

/// The kernel's TCP timer settings that predictions depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KernelTimers {
    /// net.ipv4.tcp_retries2: retransmissions before an established connection is given up.
    pub tcp_retries2: u32,
    /// TCP_RTO_MIN (200 ms on Linux, not a sysctl): the base of the retransmission budget.
    pub rto_min_ms: u64,
    /// System default keepalive idle time, interval and count.
    pub keepalive_time_ms: u64,
    pub keepalive_intvl_ms: u64,
    pub keepalive_probes: u32,
    /// The kernel's tick rate (CONFIG_HZ): the timer wheel's granularity, hence how late TCP's timers
    /// fire. 250 (Debian's) when the kernel does not say.
    pub hz: u32,
}

impl Default for KernelTimers {
    /// Linux defaults (and RFC 1122's two hours of keepalive idle).
    fn default() -> Self {
        KernelTimers {
            tcp_retries2: 15,
            rto_min_ms: 200,
            keepalive_time_ms: 7_200_000,
            keepalive_intvl_ms: 75_000,
            keepalive_probes: 9,
            hz: 250,
        }
    }
}

impl KernelTimers {
    /// Read the settings of the network namespace the calling thread is in (Linux), or the defaults.
    pub fn read() -> KernelTimers {
        #[cfg(not(target_os = "linux"))]
        {
            KernelTimers::default()
        }
        #[cfg(target_os = "linux")]
        {
            let mut k = KernelTimers::default();
            let get = |name: &str| -> Option<u64> {
                std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()
            };
            if let Some(v) = get("tcp_retries2") {
                k.tcp_retries2 = v as u32;
            }
            if let Some(v) = get("tcp_keepalive_time") {
                k.keepalive_time_ms = v * 1000;
            }
            if let Some(v) = get("tcp_keepalive_intvl") {
                k.keepalive_intvl_ms = v * 1000;
            }
            if let Some(v) = get("tcp_keepalive_probes") {
                k.keepalive_probes = v as u32;
            }
            if let Some(hz) = kernel_hz() {
                k.hz = hz;
            }
            k
        }
    }
}

/// CONFIG_HZ from the running kernel's configuration (/proc/config.gz, else /boot/config-RELEASE).
#[cfg(target_os = "linux")]
fn kernel_hz() -> Option<u32> {
    use std::io::Read;
    let text = match std::fs::File::open("/proc/config.gz") {
        Ok(f) => {
            let mut s = String::new();
            flate2::read::GzDecoder::new(f)
                .read_to_string(&mut s)
                .ok()?;
            s
        }
        Err(_) => {
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
            std::fs::read_to_string(format!("/boot/config-{}", release.trim())).ok()?
        }
    };
    text.lines()
        .find_map(|l| l.strip_prefix("CONFIG_HZ="))
        .and_then(|v| v.trim().parse().ok())
}

/// The host's TCP settings that decide how soon a dead peer is noticed, as reported by `probe`.
/// `None` is "unknown": not exposed on this system (only Linux exposes them), or an older kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostFacts {
    /// Operating system (`linux`, `macos`, `windows`…).
    pub os: &'static str,
    /// Kernel release (Linux).
    pub kernel: Option<String>,
    /// net.ipv4.tcp_keepalive_time, as ms: idle time before the first keepalive probe (`--keepalive os`).
    pub tcp_keepalive_time_ms: Option<u64>,
    /// net.ipv4.tcp_keepalive_intvl, as ms.
    pub tcp_keepalive_intvl_ms: Option<u64>,
    /// net.ipv4.tcp_keepalive_probes.
    pub tcp_keepalive_probes: Option<u64>,
    /// net.ipv4.tcp_retries1: retransmissions before the route is re-checked.
    pub tcp_retries1: Option<u64>,
    /// net.ipv4.tcp_retries2: retransmissions before an established connection is given up.
    pub tcp_retries2: Option<u64>,
    /// net.ipv4.tcp_syn_retries: SYN retransmissions before connect() fails.
    pub tcp_syn_retries: Option<u64>,
    /// net.ipv4.tcp_rto_min_us (Linux ≥ 6.11), as ms: the floor of every connection's RTO.
    pub tcp_rto_min_ms: Option<u64>,
    /// net.ipv4.tcp_rto_max_ms (Linux ≥ 6.15): the ceiling of the back-off.
    pub tcp_rto_max_ms: Option<u64>,
    /// net.ipv4.tcp_frto: forward RTO-recovery mode (0 off, 1 basic, 2 SACK-enhanced).
    pub tcp_frto: Option<u64>,
    /// net.ipv4.tcp_thin_linear_timeouts: 1 = thin streams back off linearly for their first 6 RTOs.
    pub tcp_thin_linear_timeouts: Option<u64>,
    /// net.ipv4.tcp_orphan_retries: retransmissions of a closed (orphaned) socket (0 means 8).
    pub tcp_orphan_retries: Option<u64>,
    /// net.ipv4.tcp_fin_timeout, as ms: how long an orphaned connection stays in FIN-WAIT-2.
    pub tcp_fin_timeout_ms: Option<u64>,
}

impl HostFacts {
    /// Read the facts of the network namespace the calling thread is in.
    pub fn read() -> HostFacts {
        #[allow(unused_mut)]
        let mut f = HostFacts {
            os: std::env::consts::OS,
            ..HostFacts::default()
        };
        #[cfg(target_os = "linux")]
        {
            let text = |path: &str| {
                std::fs::read_to_string(path)
                    .ok()
                    .map(|s| s.trim().to_string())
            };
            let num = |name: &str| -> Option<u64> {
                text(&format!("/proc/sys/net/ipv4/{name}"))?.parse().ok()
            };
            f.kernel = text("/proc/sys/kernel/osrelease");
            f.tcp_keepalive_time_ms = num("tcp_keepalive_time").map(|s| s * 1000);
            f.tcp_keepalive_intvl_ms = num("tcp_keepalive_intvl").map(|s| s * 1000);
            f.tcp_keepalive_probes = num("tcp_keepalive_probes");
            f.tcp_retries1 = num("tcp_retries1");
            f.tcp_retries2 = num("tcp_retries2");
            f.tcp_syn_retries = num("tcp_syn_retries");
            f.tcp_rto_min_ms = num("tcp_rto_min_us").map(|us| us / 1000);
            f.tcp_rto_max_ms = num("tcp_rto_max_ms");
            f.tcp_frto = num("tcp_frto");
            f.tcp_thin_linear_timeouts = num("tcp_thin_linear_timeouts");
            f.tcp_orphan_retries = num("tcp_orphan_retries");
            f.tcp_fin_timeout_ms = num("tcp_fin_timeout").map(|s| s * 1000);
        }
        f
    }
}

/// What the kernel did with a requested strategy, in words: values it changed (clamped) or options it
/// does not have (refused). Empty when the effective settings are exactly what was asked.
pub fn differences(strategy: &Strategy, eff: &Effective) -> Vec<String> {
    let mut out = Vec::new();
    let ms = |d: Duration| d.ms();
    if let Keepalive::Custom {
        idle,
        interval,
        count,
    } = strategy.keepalive
    {
        match eff.keepalive() {
            None => out.push("keepalive: asked for, but SO_KEEPALIVE reads back off".to_string()),
            Some((i, n, c)) => {
                for (what, asked, got) in [
                    ("idle", ms(idle), ms(i)),
                    ("interval", ms(interval), ms(n)),
                    ("count", u64::from(count), u64::from(c)),
                ] {
                    if asked != got {
                        out.push(format!(
                            "keepalive {what}: asked {asked}, the kernel has {got} (clamped)"
                        ));
                    }
                }
            }
        }
    } else if strategy.keepalive == Keepalive::Os && eff.keepalive().is_none() && cfg!(not(windows))
    {
        out.push("keepalive: asked for, but SO_KEEPALIVE reads back off".to_string());
    }
    if let Some(u) = strategy.user_timeout {
        match eff.user_timeout_ms {
            None => out.push("user timeout: refused, TCP_USER_TIMEOUT reads back off".to_string()),
            Some(got) if got != ms(u) => out.push(format!(
                "user timeout: asked {} ms, the kernel has {got} ms (clamped)",
                ms(u)
            )),
            Some(_) => {}
        }
    }
    out
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use socket2::{Domain, Protocol, Type};

    fn sock() -> Socket {
        Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap()
    }

    #[test]
    fn applies_and_reads_back_custom_keepalive_and_user_timeout() {
        let s = sock();
        let strat: Strategy = "ka=5s,2s,4+uto=20s+hb=1s,3".parse().unwrap();
        let eff = apply(&s, &strat).unwrap();
        assert_eq!(eff.keepalive_idle_ms, Some(5000));
        assert_eq!(eff.keepalive_interval_ms, Some(2000));
        assert_eq!(eff.keepalive_count, Some(4));
        assert_eq!(eff.user_timeout_ms, Some(20000));
        assert_eq!(eff.heartbeat_interval_ms, Some(1000));
        assert_eq!(eff.heartbeat_misses, Some(3));
    }

    #[test]
    fn os_keepalive_reads_system_defaults() {
        let s = sock();
        let eff = apply(&s, &"os".parse().unwrap()).unwrap();
        let k = KernelTimers::read();
        assert_eq!(eff.keepalive_idle_ms, Some(k.keepalive_time_ms));
        assert_eq!(eff.keepalive_count, Some(k.keepalive_probes));
        assert_eq!(eff.user_timeout_ms, None);
    }

    #[test]
    fn host_facts_match_proc_and_exact_settings_have_no_differences() {
        let f = HostFacts::read();
        assert_eq!(f.os, "linux");
        let k = KernelTimers::read();
        assert_eq!(f.tcp_keepalive_time_ms, Some(k.keepalive_time_ms));
        assert_eq!(f.tcp_retries2, Some(u64::from(k.tcp_retries2)));
        assert!(f.kernel.is_some() && f.tcp_syn_retries.is_some());
        let s = sock();
        let strat: Strategy = "ka=5s,2s,4+uto=20s".parse().unwrap();
        let eff = apply(&s, &strat).unwrap();
        assert_eq!(differences(&strat, &eff), Vec::<String>::new());
        // A read-back that is not what was asked is flagged.
        let mut clamped = eff;
        clamped.keepalive_count = Some(3);
        clamped.user_timeout_ms = None;
        let d = differences(&strat, &clamped);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("count: asked 4, the kernel has 3"), "{d:?}");
        assert!(d[1].contains("refused"), "{d:?}");
    }

    #[test]
    fn refuses_what_linux_would_round() {
        for bad in ["ka=1500ms,1s,3", "ka=1s,1s,128", "ka=40000s,1s,3"] {
            let s: Strategy = bad.parse().unwrap();
            assert!(
                matches!(validate(&s), Err(PlatformError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(validate(&"ka=1s,1s,127+uto=1500ms".parse().unwrap()).is_ok());
    }
}
