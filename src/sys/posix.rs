//! What every Unix shares (Linux, macOS, the BSDs): rlimits, errno names, signals, SO_REUSEADDR.

use std::future::Future;
use std::io;

use socket2::Socket;

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
