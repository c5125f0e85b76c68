//! macOS and the BSDs: keepalive through TCP_KEEPALIVE (idle, macOS's name for TCP_KEEPIDLE),
//! TCP_KEEPINTVL and TCP_KEEPCNT, read back; on macOS TCP_RXT_CONNDROPTIME stands in for the user
//! timeout (whole seconds of retransmission before the connection is dropped). No TCP_INFO, no
//! IP_RECVERR, no lab: callers fall back to what tcphb itself observes.

use std::io;
use std::time::Duration;

use socket2::Socket;

use super::Capabilities;
use crate::settings::{Effective, Os};
use crate::strategy::Strategy;

pub use super::elsewhere::*;
pub use super::posix::{errno_name, raise_nofile, reuse_address, set_keepalive, shutdown};

/// macOS's rules (the other BSDs are close: whole-second keepalive, settable count).
pub const CAPABILITIES: Capabilities = Capabilities {
    rules: Os::Macos.rules(),
    recverr: false,
    keepalive_probe: false,
};

/// TCP_RXT_CONNDROPTIME from macOS's <netinet/tcp.h> (the libc crate does not define it).
#[cfg(target_vendor = "apple")]
const TCP_RXT_CONNDROPTIME: libc::c_int = 0x80;

/// TCP_RXT_CONNDROPTIME in whole seconds (`validate` refused fractions).
#[cfg(target_vendor = "apple")]
pub fn set_user_timeout(sock: &Socket, uto: Duration) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let secs = libc::c_int::try_from(uto.as_secs()).unwrap_or(libc::c_int::MAX);
    // SAFETY: a plain int option on a descriptor we own.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            TCP_RXT_CONNDROPTIME,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The BSDs other than macOS have no user timeout at all.
#[cfg(not(target_vendor = "apple"))]
pub fn set_user_timeout(_sock: &Socket, _uto: Duration) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "this system has no TCP_USER_TIMEOUT nor TCP_RXT_CONNDROPTIME",
    ))
}

#[cfg(target_vendor = "apple")]
fn user_timeout_read_back(sock: &Socket) -> io::Result<Option<u64>> {
    use std::os::fd::AsRawFd;
    let mut secs: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: reading an int option into an int.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            TCP_RXT_CONNDROPTIME,
            (&mut secs as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((secs > 0).then(|| u64::from(secs.unsigned_abs()) * 1000))
}

#[cfg(not(target_vendor = "apple"))]
fn user_timeout_read_back(_sock: &Socket) -> io::Result<Option<u64>> {
    Ok(None)
}

/// Keepalive and the drop time are read back from the kernel.
pub fn read_back(sock: &Socket, _asked: &Strategy) -> io::Result<Effective> {
    let mut eff = super::posix::keepalive_read_back(sock)?;
    eff.user_timeout_ms = user_timeout_read_back(sock)?;
    Ok(eff)
}
