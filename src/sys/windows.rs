//! Windows: keepalive idle and interval in milliseconds through SIO_KEEPALIVE_VALS (write-only, so
//! they are *assumed*, not read back), the probe count through TCP_KEEPCNT where it exists (Windows
//! 10 1703 and later; read back) and fixed at 10 otherwise. No TCP_USER_TIMEOUT (`validate` refuses
//! it and names TCP_MAXRT), no TCP_INFO, no IP_RECVERR, no lab.

use std::io;
use std::time::Duration;

use socket2::{Socket, TcpKeepalive};

use super::Capabilities;
pub use super::elsewhere::*;
use crate::settings::{Effective, KeepaliveCount, Os};
use crate::strategy::{Keepalive, Strategy};
use crate::units::Millis;

pub const CAPABILITIES: Capabilities = Capabilities {
    rules: Os::Windows.rules(),
    recverr: false,
    keepalive_probe: false,
};

/// The count Windows uses when TCP_KEEPCNT is not there (10 since Vista).
const FIXED_COUNT: u32 = match Os::Windows.rules().keepalive_count {
    KeepaliveCount::SinceVersion { fixed, .. } => fixed,
    KeepaliveCount::Settable { .. } => 10,
};

/// SIO_KEEPALIVE_VALS (milliseconds), then TCP_KEEPCNT; a Windows without TCP_KEEPCNT keeps its
/// fixed count, which the read-back then shows (and `differences` names).
pub fn set_keepalive(
    sock: &Socket,
    idle: Duration,
    interval: Duration,
    count: Option<u32>,
) -> io::Result<()> {
    let times = TcpKeepalive::new().with_time(idle).with_interval(interval);
    if let Some(c) = count
        && sock
            .set_tcp_keepalive(&times.clone().with_retries(c))
            .is_ok()
    {
        return Ok(());
    }
    sock.set_tcp_keepalive(&times)
}

pub fn set_user_timeout(_sock: &Socket, _uto: Duration) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "Windows has no TCP_USER_TIMEOUT (TCP_MAXRT is the nearest)",
    ))
}

/// SO_KEEPALIVE and TCP_KEEPCNT are read back; idle and interval (set through the write-only
/// SIO_KEEPALIVE_VALS, or the registry's KeepAliveTime/KeepAliveInterval for `os`) are assumed.
pub fn read_back(sock: &Socket, asked: &Strategy) -> io::Result<Effective> {
    let mut eff = Effective::default();
    if !sock.keepalive()? {
        return Ok(eff);
    }
    let defaults = CAPABILITIES.rules.defaults;
    let (idle, interval) = match asked.keepalive {
        Keepalive::Custom { idle, interval, .. } => (idle.ms(), interval.ms()),
        _ => (defaults.keepalive_time_ms, defaults.keepalive_intvl_ms),
    };
    eff.keepalive_idle_ms = Some(idle);
    eff.keepalive_interval_ms = Some(interval);
    // TCP_KEEPCNT reads back where it exists; elsewhere the count is Windows' fixed one.
    let (count, assumed): (u32, &'static [&'static str]) = match sock.tcp_keepalive_retries() {
        Ok(c) => (c, &["keepalive_idle_ms", "keepalive_interval_ms"]),
        Err(_) => (
            FIXED_COUNT,
            &[
                "keepalive_idle_ms",
                "keepalive_interval_ms",
                "keepalive_count",
            ],
        ),
    };
    eff.keepalive_count = Some(count);
    eff.assumed = assumed;
    Ok(eff)
}

/// No per-process descriptor limit to raise.
pub fn raise_nofile(_wanted: u64) -> Option<u64> {
    None
}

/// Winsock's codes by their POSIX names, so an errno reads the same on every OS.
pub fn errno_name(code: i32) -> Option<String> {
    Some(
        match code {
            10060 => "ETIMEDOUT",
            10054 => "ECONNRESET",
            10053 => "ECONNABORTED",
            10061 => "ECONNREFUSED",
            10065 => "EHOSTUNREACH",
            10051 => "ENETUNREACH",
            10050 => "ENETDOWN",
            10052 => "ENETRESET",
            10057 => "ENOTCONN",
            10048 => "EADDRINUSE",
            10049 => "EADDRNOTAVAIL",
            10013 => "EACCES",
            _ => return None,
        }
        .to_string(),
    )
}

/// SO_REUSEADDR on Windows lets another socket steal a bound port: not set.
pub fn reuse_address(_sock: &Socket) -> io::Result<()> {
    Ok(())
}

/// Ctrl-C (or Ctrl-Break) in the console.
pub async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}
