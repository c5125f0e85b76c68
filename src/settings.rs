//! Pure data about detection settings: what a socket runs with (`Effective`), the kernel's TCP timers
//! (`KernelTimers`), the host's TCP facts (`HostFacts`) and each operating system's rules (`Os`,
//! `OsRules`). Imports nothing of the crate; the platform layer (`sys`) fills these in.

use std::time::Duration;

use serde::Serialize;

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
    /// Keys whose value the platform cannot read back, so they hold what was asked or the OS's
    /// documented value (Windows: SIO_KEEPALIVE_VALS is write-only). Empty when all were read back.
    pub assumed: &'static [&'static str],
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

    /// The user timeout (or the OS's nearest equivalent) when set.
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

/// The kernel's TCP timer settings that predictions depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KernelTimers {
    /// Retransmissions before an established connection is given up (Linux net.ipv4.tcp_retries2,
    /// Windows TcpMaxDataRetransmissions, macOS TCP_MAXRXTSHIFT).
    pub tcp_retries2: u32,
    /// The floor of the RTO (200 ms on Linux, not a sysctl): the base of the retransmission budget.
    pub rto_min_ms: u64,
    /// The ceiling of the RTO back-off (TCP_RTO_MAX: 120 s on Linux).
    pub rto_max_ms: u64,
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
        Os::Linux.rules().defaults
    }
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

/// An operating system whose TCP detection semantics tcphb knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Macos,
    Windows,
}

impl Os {
    /// The rules of this operating system.
    pub const fn rules(self) -> &'static OsRules {
        match self {
            Os::Linux => &LINUX,
            Os::Macos => &MACOS,
            Os::Windows => &WINDOWS,
        }
    }
}

impl std::fmt::Display for Os {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.rules().name)
    }
}

/// How many keepalive probes go unanswered before the connection is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveCount {
    /// Set per socket (Linux, macOS: TCP_KEEPCNT), up to this many.
    Settable { max: u32 },
    /// Set per socket only where `TCP_KEEPCNT` exists (Windows 10 1703 and later); otherwise
    /// fixed at `fixed` whatever the program asks (10 since Vista).
    SinceVersion { fixed: u32, max: u32 },
}

/// What an operating system offers in place of Linux's TCP_USER_TIMEOUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserTimeout {
    /// TCP_USER_TIMEOUT (Linux, RFC 5482): milliseconds; bounds unacknowledged data and, with
    /// keepalive on, overrides the probe count.
    Linux,
    /// TCP_RXT_CONNDROPTIME (macOS): whole seconds of retransmission before the connection is
    /// dropped; keepalive keeps its own count.
    RxtConnDropTime,
    /// None. Windows has TCP_MAXRT (whole seconds of retransmission), which tcphb does not treat as
    /// a user timeout.
    None { instead: &'static str },
}

/// One operating system's rules for the detection settings: resolutions, ranges, the count rule,
/// the user-timeout equivalent and the defaults. Pure data, so predictions for another OS need no
/// socket of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsRules {
    pub os: Os,
    /// In words: `Linux`, `macOS`, `Windows`.
    pub name: &'static str,
    /// Keepalive idle and interval are set in multiples of this (1 s on Linux and macOS; 1 ms on
    /// Windows through SIO_KEEPALIVE_VALS).
    pub keepalive_resolution: Duration,
    /// Largest keepalive idle / interval accepted.
    pub keepalive_max: Duration,
    /// How the probe count is set.
    pub keepalive_count: KeepaliveCount,
    /// The option standing in for TCP_USER_TIMEOUT.
    pub user_timeout: UserTimeout,
    /// The system's defaults (keepalive, retransmission budget, timer granularity).
    pub defaults: KernelTimers,
}

/// Linux: tcp(7); MAX_TCP_KEEPIDLE/MAX_TCP_KEEPINTVL 32767 s, MAX_TCP_KEEPCNT 127; sysctl defaults.
const LINUX: OsRules = OsRules {
    os: Os::Linux,
    name: "Linux",
    keepalive_resolution: Duration::from_secs(1),
    keepalive_max: Duration::from_secs(32767),
    keepalive_count: KeepaliveCount::Settable { max: 127 },
    user_timeout: UserTimeout::Linux,
    defaults: KernelTimers {
        tcp_retries2: 15,
        rto_min_ms: 200,
        rto_max_ms: 120_000,
        keepalive_time_ms: 7_200_000,
        keepalive_intvl_ms: 75_000,
        keepalive_probes: 9,
        hz: 250,
    },
};

/// macOS (XNU bsd/netinet/tcp_timer.h): keepidle 7200 s, keepintvl 75 s, TCPTV_KEEPCNT 8;
/// TCP_MAXRXTSHIFT 12 retransmissions; RTO floor TCPTV_REXMTMIN (≈30 ms) plus the 200 ms
/// rexmt slop, ceiling TCPTV_REXMTMAX 64 s; timers of 10 ms granularity.
const MACOS: OsRules = OsRules {
    os: Os::Macos,
    name: "macOS",
    keepalive_resolution: Duration::from_secs(1),
    keepalive_max: Duration::from_secs(u32::MAX as u64 / 1000),
    keepalive_count: KeepaliveCount::Settable { max: 255 },
    user_timeout: UserTimeout::RxtConnDropTime,
    defaults: KernelTimers {
        tcp_retries2: 12,
        rto_min_ms: 230,
        rto_max_ms: 64_000,
        keepalive_time_ms: 7_200_000,
        keepalive_intvl_ms: 75_000,
        keepalive_probes: 8,
        hz: 100,
    },
};

/// Windows: KeepAliveTime 2 h, KeepAliveInterval 1 s, 10 probes (fixed since Vista; TCP_KEEPCNT
/// from Windows 10 1703); TcpMaxDataRetransmissions 5; RTO from 300 ms (MinRto) to 60 s; timers on
/// the 15.6 ms system tick.
const WINDOWS: OsRules = OsRules {
    os: Os::Windows,
    name: "Windows",
    keepalive_resolution: Duration::from_millis(1),
    keepalive_max: Duration::from_millis(u32::MAX as u64),
    keepalive_count: KeepaliveCount::SinceVersion {
        fixed: 10,
        max: 255,
    },
    user_timeout: UserTimeout::None {
        instead: "TCP_MAXRT (whole seconds of retransmission before the connection is dropped)",
    },
    defaults: KernelTimers {
        tcp_retries2: 5,
        rto_min_ms: 300,
        rto_max_ms: 60_000,
        keepalive_time_ms: 7_200_000,
        keepalive_intvl_ms: 1_000,
        keepalive_probes: 10,
        hz: 64,
    },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_os_has_its_own_rules() {
        assert_eq!(KernelTimers::default().tcp_retries2, 15);
        assert_eq!(Os::Windows.rules().defaults.keepalive_intvl_ms, 1_000);
        assert_eq!(
            Os::Windows.rules().keepalive_resolution,
            Duration::from_millis(1)
        );
        assert_eq!(Os::Macos.rules().defaults.keepalive_probes, 8);
        assert_eq!(Os::Macos.to_string(), "macOS");
    }
}
