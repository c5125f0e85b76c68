//! Linux: socket options read back exactly, TCP_INFO, IP_RECVERR and a raw ICMP observer, the
//! kernel's TCP sysctls, and the network-namespace lab.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;

use super::{AsSocket, Capabilities, PlatformError};
use crate::settings::{Effective, HostFacts, KernelTimers, Os};
use crate::strategy::Strategy;
use crate::tcpinfo::TcpInfo;
use crate::units::Millis;

pub use super::posix::{errno_name, raise_nofile, reuse_address, set_keepalive, shutdown};

/// Everything: Linux is where tcphb measures.
pub const CAPABILITIES: Capabilities = Capabilities {
    rules: Os::Linux.rules(),
    recverr: true,
    keepalive_probe: true,
};

/// TCP_KEEPIDLE's largest value (MAX_TCP_KEEPIDLE in include/net/tcp.h), s.
const KEEPIDLE_MAX: Duration = Duration::from_secs(32_767);

pub fn keepalive_hold(sock: &impl AsSocket, interval: Duration) -> Result<(), PlatformError> {
    let ka = socket2::TcpKeepalive::new()
        .with_time(KEEPIDLE_MAX)
        .with_interval(interval.max(Duration::from_secs(1)))
        .with_retries(1);
    socket2::SockRef::from(sock)
        .set_tcp_keepalive(&ka)
        .map_err(|e| PlatformError::Unsupported(format!("cannot arm TCP keepalive: {e}")))
}

pub fn keepalive_probe_now(sock: &impl AsSocket) -> io::Result<()> {
    // With SO_KEEPALIVE already on, setting TCP_KEEPIDLE re-arms the timer for (new idle − time
    // idle so far), i.e. now when the connection has been idle 1 s or more (tcp_sock_set_keepidle).
    // Turning SO_KEEPALIVE on here instead would arm it a whole idle from now.
    socket2::SockRef::from(sock)
        .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(Duration::from_secs(1)))
}

/// TCP_USER_TIMEOUT, in milliseconds.
pub fn set_user_timeout(sock: &Socket, uto: Duration) -> io::Result<()> {
    sock.set_tcp_user_timeout(Some(uto))
}

/// Every value is read back from the kernel: nothing is assumed.
pub fn read_back(sock: &Socket, _asked: &Strategy) -> io::Result<Effective> {
    let mut eff = super::posix::keepalive_read_back(sock)?;
    eff.user_timeout_ms = sock.tcp_user_timeout()?.map(|d| d.ms());
    Ok(eff)
}

/// The kernel's raw TCP_INFO for a socket.
fn raw(sock: &impl AsFd) -> Option<libc::tcp_info> {
    // SAFETY: tcp_info is plain old data; getsockopt writes at most `len` bytes into it.
    let mut raw: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            sock.as_fd().as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut raw as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(raw)
}

pub fn tcp_info(sock: &impl AsSocket) -> Option<TcpInfo> {
    raw(sock).as_ref().map(from_raw)
}

/// The fields tcphb uses of the kernel's `struct tcp_info` (from getsockopt, or sock_diag's copy).
pub(super) fn from_raw(raw: &libc::tcp_info) -> TcpInfo {
    TcpInfo {
        rtt_us: raw.tcpi_rtt,
        rto_us: raw.tcpi_rto,
        last_ack_recv_ms: raw.tcpi_last_ack_recv,
        last_data_recv_ms: raw.tcpi_last_data_recv,
        probes: raw.tcpi_probes,
        backoff: raw.tcpi_backoff,
        retransmits: raw.tcpi_retransmits,
        total_retrans: raw.tcpi_total_retrans,
        unacked: raw.tcpi_unacked,
    }
}

pub fn is_established(sock: &impl AsSocket) -> Option<bool> {
    // TCP_ESTABLISHED is 1 in include/net/tcp_states.h.
    raw(sock).map(|r| r.tcpi_state == 1)
}

/// A number from /proc/sys/net/ipv4 (of the calling thread's network namespace).
fn sysctl(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub fn kernel_timers() -> KernelTimers {
    let mut k = KernelTimers::default();
    if let Some(v) = sysctl("tcp_retries2") {
        k.tcp_retries2 = v as u32;
    }
    if let Some(v) = sysctl("tcp_keepalive_time") {
        k.keepalive_time_ms = v * 1000;
    }
    if let Some(v) = sysctl("tcp_keepalive_intvl") {
        k.keepalive_intvl_ms = v * 1000;
    }
    if let Some(v) = sysctl("tcp_keepalive_probes") {
        k.keepalive_probes = v as u32;
    }
    if let Some(v) = sysctl("tcp_rto_max_ms") {
        k.rto_max_ms = v;
    }
    if let Some(hz) = kernel_hz() {
        k.hz = hz;
    }
    k
}

/// CONFIG_HZ from the running kernel's configuration (/proc/config.gz, else /boot/config-RELEASE).
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

pub fn host_facts() -> HostFacts {
    HostFacts {
        os: std::env::consts::OS,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_string()),
        tcp_keepalive_time_ms: sysctl("tcp_keepalive_time").map(|s| s * 1000),
        tcp_keepalive_intvl_ms: sysctl("tcp_keepalive_intvl").map(|s| s * 1000),
        tcp_keepalive_probes: sysctl("tcp_keepalive_probes"),
        tcp_retries1: sysctl("tcp_retries1"),
        tcp_retries2: sysctl("tcp_retries2"),
        tcp_syn_retries: sysctl("tcp_syn_retries"),
        tcp_rto_min_ms: sysctl("tcp_rto_min_us").map(|us| us / 1000),
        tcp_rto_max_ms: sysctl("tcp_rto_max_ms"),
        tcp_frto: sysctl("tcp_frto"),
        tcp_thin_linear_timeouts: sysctl("tcp_thin_linear_timeouts"),
        tcp_orphan_retries: sysctl("tcp_orphan_retries"),
        tcp_fin_timeout_ms: sysctl("tcp_fin_timeout").map(|s| s * 1000),
    }
}

pub fn enable_recverr(sock: &Socket, ipv6: bool) -> Result<(), PlatformError> {
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
    } else {
        (libc::IPPROTO_IP, libc::IP_RECVERR)
    };
    let one: libc::c_int = 1;
    // SAFETY: a plain int option on a descriptor we own.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(PlatformError::Unsupported(format!(
            "cannot set IP_RECVERR: {}",
            io::Error::last_os_error()
        )))
    }
}

pub fn enter_lab() -> Result<(), (String, u8)> {
    crate::lab::ensure_lab_privileges().map_err(|e| (e.to_string(), e.exit_code() as u8))
}

pub fn compare(args: &crate::cli::CompareArgs) -> anyhow::Result<crate::report::Finished> {
    crate::lab::compare::run(args)
}

pub fn lab_matrix(plan: &super::LabPlan) -> anyhow::Result<crate::report::model::CompareReport> {
    crate::lab::compare::run_plan(plan)
}

pub fn lab_exit_code(cause: &(dyn std::error::Error + 'static)) -> Option<u8> {
    cause
        .downcast_ref::<crate::lab::LabError>()
        .map(|e| e.exit_code() as u8)
}

/// A raw ICMP socket on the event loop: every ICMP error this network namespace receives.
pub enum IcmpSocket {
    Raw(AsyncFd<Socket>, Vec<u8>),
    Unavailable(String),
}

impl IcmpSocket {
    /// Open one in the calling thread's network namespace (needs CAP_NET_RAW).
    pub fn open(ipv6: bool) -> IcmpSocket {
        let (domain, proto) = if ipv6 {
            (Domain::IPV6, Protocol::ICMPV6)
        } else {
            (Domain::IPV4, Protocol::ICMPV4)
        };
        IcmpSocket::from_socket(Socket::new(domain, Type::RAW, Some(proto)))
    }

    /// Watch a raw socket made elsewhere (in a lab namespace). Call inside a tokio runtime.
    pub fn from_socket(sock: io::Result<Socket>) -> IcmpSocket {
        let sock = match sock {
            Ok(s) => s,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                return IcmpSocket::Unavailable(
                    "the reporting router's address needs a raw ICMP socket (CAP_NET_RAW: run as root)".into(),
                );
            }
            Err(e) => return IcmpSocket::Unavailable(format!("no raw ICMP socket: {e}")),
        };
        if let Err(e) = sock.set_nonblocking(true) {
            return IcmpSocket::Unavailable(format!("raw ICMP socket: {e}"));
        }
        // The kernel stamps each packet as it arrives: a busy event loop reads it late, and the
        // prediction runs the sender's timers from when each error came. Without the stamp, the
        // packet is dated when it is read.
        let _ = nix::sys::socket::setsockopt(
            &sock,
            nix::sys::socket::sockopt::ReceiveTimestampns,
            &true,
        );
        // SAFETY: the Socket owns its descriptor and moves into the AsyncFd, which therefore keeps
        // the same open descriptor for its whole life.
        match unsafe { AsyncFd::register_with_interest(sock, tokio::io::Interest::READABLE) } {
            Ok(fd) => IcmpSocket::Raw(fd, vec![0; 2048]),
            Err(e) => IcmpSocket::Unavailable(format!("raw ICMP socket: {e}")),
        }
    }

    /// Why nothing will be received, if so.
    pub fn unavailable(&self) -> Option<&str> {
        match self {
            IcmpSocket::Raw(..) => None,
            IcmpSocket::Unavailable(why) => Some(why),
        }
    }

    /// The next packet, its sender and when it arrived (pending forever when unavailable).
    pub async fn recv(&mut self) -> (Vec<u8>, Option<IpAddr>, Instant) {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
        let (fd, buf) = match self {
            IcmpSocket::Raw(fd, buf) => (fd, buf),
            IcmpSocket::Unavailable(_) => std::future::pending().await,
        };
        loop {
            let Ok(mut guard) = fd.readable().await else {
                return std::future::pending().await;
            };
            let got = guard.try_io(|s| {
                let mut iov = [io::IoSliceMut::new(buf.as_mut_slice())];
                let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
                let msg = recvmsg::<SockaddrStorage>(
                    s.get_ref().as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::empty(),
                )
                .map_err(io::Error::from)?;
                let stamp = msg.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|m| match m {
                        ControlMessageOwned::ScmTimestampns(t) => Some(t),
                        _ => None,
                    })
                });
                let from = msg.address.and_then(|a| {
                    a.as_sockaddr_in()
                        .map(|v4| IpAddr::V4(v4.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                });
                Ok((msg.bytes, from, stamp))
            });
            match got {
                Ok(Ok((n, from, stamp))) => {
                    // The stamp is wall-clock time: its age, taken now, dates it on the monotonic
                    // clock the measurements use.
                    let now = Instant::now();
                    let arrived = stamp
                        .and_then(|t| {
                            let at = std::time::UNIX_EPOCH
                                + Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32);
                            std::time::SystemTime::now().duration_since(at).ok()
                        })
                        .and_then(|age| now.checked_sub(age))
                        .unwrap_or(now);
                    return (buf[..n].to_vec(), from, arrived);
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                // A raw socket that fails for good: stop listening rather than spin.
                Ok(Err(_)) => return std::future::pending().await,
                Err(_would_block) => {}
            }
        }
    }
}

pub use super::diag::TcpTable;

/// Why sock_diag cannot be used, and what to do.
pub fn diag_error(e: io::Error) -> PlatformError {
    PlatformError::Unsupported(format!(
        "cannot list TCP sockets through sock_diag ({e}): is the inet_diag module loaded (modprobe inet_diag tcp_diag)?"
    ))
}

pub use super::diag::{Process, all_socket_inodes, holds, socket_inodes};

pub fn read_back_of(process: &Process, fd: i32) -> io::Result<Effective> {
    let sock = process.borrow_socket(fd)?;
    read_back(&sock, &Strategy::default())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;
    use crate::sys;

    fn sock() -> Socket {
        Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap()
    }

    #[test]
    fn applies_and_reads_back_custom_keepalive_and_user_timeout() {
        let s = sock();
        let strat: Strategy = "ka=5s,2s,4+uto=20s+hb=1s,3".parse().unwrap();
        let eff = sys::apply(&s, &strat).unwrap();
        assert_eq!(eff.keepalive_idle_ms, Some(5000));
        assert_eq!(eff.keepalive_interval_ms, Some(2000));
        assert_eq!(eff.keepalive_count, Some(4));
        assert_eq!(eff.user_timeout_ms, Some(20000));
        assert_eq!(eff.heartbeat_interval_ms, Some(1000));
        assert_eq!(eff.heartbeat_misses, Some(3));
        assert!(eff.assumed.is_empty());
        assert_eq!(sys::differences(&strat, &eff), Vec::<String>::new());
    }

    #[test]
    fn os_keepalive_reads_system_defaults() {
        let s = sock();
        let eff = sys::apply(&s, &"os".parse().unwrap()).unwrap();
        let k = kernel_timers();
        assert_eq!(eff.keepalive_idle_ms, Some(k.keepalive_time_ms));
        assert_eq!(eff.keepalive_count, Some(k.keepalive_probes));
        assert_eq!(eff.user_timeout_ms, None);
    }

    #[test]
    fn host_facts_match_proc() {
        let f = host_facts();
        assert_eq!(f.os, "linux");
        let k = kernel_timers();
        assert_eq!(f.tcp_keepalive_time_ms, Some(k.keepalive_time_ms));
        assert_eq!(f.tcp_retries2, Some(u64::from(k.tcp_retries2)));
        assert!(f.kernel.is_some() && f.tcp_syn_retries.is_some());
    }

    #[test]
    fn reads_rtt_and_recent_ack_on_loopback() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        c.write_all(b"PING 1\n").unwrap();
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).unwrap();
        s.write_all(b"PONG 1\n").unwrap();
        c.read_exact(&mut buf).unwrap();
        let info = tcp_info(&c).expect("TCP_INFO on Linux");
        assert!(info.rtt_us > 0);
        assert!(
            info.rto_us >= 200_000,
            "RTO is at least TCP_RTO_MIN: {}",
            info.rto_us
        );
        assert!(info.silence_ms() < 1000, "just heard the peer: {info:?}");
        assert_eq!(info.unacked, 0);
        assert_eq!(is_established(&c), Some(true));
        drop(s);
        c.shutdown(std::net::Shutdown::Both).unwrap();
        assert_eq!(is_established(&c), Some(false));
    }

    #[test]
    fn enable_sets_ip_recverr() {
        let s = sock();
        enable_recverr(&s, false).unwrap();
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reading an int option.
        let rc = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_RECVERR,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!((rc, v), (0, 1));
    }
}
