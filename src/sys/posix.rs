//! What every Unix shares (Linux, macOS, the BSDs): rlimits, errno names, signals, SO_REUSEADDR.

use std::future::Future;
use std::io;

use std::time::Duration;

use socket2::{Socket, TcpKeepalive};

use crate::settings::Effective;
use crate::units::Millis;

/// SO_KEEPALIVE's idle, interval and (when given) count: TCP_KEEPIDLE (macOS: TCP_KEEPALIVE),
/// TCP_KEEPINTVL, TCP_KEEPCNT, in whole seconds (`validate` refused anything else).
pub fn set_keepalive(
    sock: &Socket,
    idle: Duration,
    interval: Duration,
    count: Option<u32>,
) -> io::Result<()> {
    let ka = TcpKeepalive::new().with_time(idle).with_interval(interval);
    sock.set_tcp_keepalive(&match count {
        Some(c) => ka.with_retries(c),
        None => ka,
    })
}

/// The keepalive settings as the kernel holds them (all off when SO_KEEPALIVE is).
pub fn keepalive_read_back(sock: &Socket) -> io::Result<Effective> {
    let mut eff = Effective::default();
    if sock.keepalive()? {
        eff.keepalive_idle_ms = Some(sock.tcp_keepalive_time()?.ms());
        eff.keepalive_interval_ms = Some(sock.tcp_keepalive_interval()?.ms());
        eff.keepalive_count = Some(sock.tcp_keepalive_retries()?);
    }
    Ok(eff)
}

/// Raise RLIMIT_NOFILE's soft limit towards `wanted` (up to the hard limit).
pub fn raise_nofile(wanted: u64) -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let target = wanted.min(hard);
    if target > soft && setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
        return Some(target);
    }
    Some(soft)
}

/// `ETIMEDOUT` for ETIMEDOUT; `None` for codes this system does not know.
pub fn errno_name(code: i32) -> Option<String> {
    let e = nix::errno::Errno::from_raw(code);
    (e != nix::errno::Errno::UnknownErrno).then(|| format!("{e:?}"))
}

/// SO_REUSEADDR: a restarted listener may bind a port whose old connections are in TIME_WAIT.
pub fn reuse_address(sock: &Socket) -> io::Result<()> {
    sock.set_reuse_address(true)
}

/// SIGINT or SIGTERM, with the handlers installed now.
pub fn shutdown() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn errno_names() {
        assert_eq!(super::errno_name(libc::ETIMEDOUT), Some("ETIMEDOUT".into()));
        assert_eq!(
            super::errno_name(libc::ECONNRESET),
            Some("ECONNRESET".into())
        );
        assert_eq!(
            super::errno_name(libc::EHOSTUNREACH),
            Some("EHOSTUNREACH".into())
        );
        assert_eq!(super::errno_name(-5), None);
    }
}
