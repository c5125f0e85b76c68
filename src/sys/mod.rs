//! The platform layer: every OS-specific call — socket options and their read-back, TCP_INFO,
//! IP_RECVERR and the raw ICMP observer, errno names, rlimits, signals, the lab's privileges —
//! behind plain functions and one [`Capabilities`] value. OS `cfg` lives here (and in `lab/`) only:
//! `linux.rs`, `unix.rs` (macOS and the BSDs) and `windows.rs` implement the same few functions.

use std::future::Future;
use std::io;
use std::time::Duration;

use socket2::Socket;

use crate::settings::{Effective, HostFacts, KeepaliveCount, KernelTimers, OsRules, UserTimeout};
use crate::strategy::{Keepalive, SpecError, Strategy};
use crate::tcpinfo::TcpInfo;
use crate::units::{Millis, format_duration};

#[cfg(target_os = "linux")]
mod diag;
#[cfg(not(target_os = "linux"))]
mod elsewhere;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(unix)]
mod posix;
#[cfg(target_os = "linux")]
use linux as imp;
#[cfg(all(unix, not(target_os = "linux")))]
mod unix;
#[cfg(all(unix, not(target_os = "linux")))]
use unix as imp;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

pub use imp::IcmpSocket;
/// Repeated sock_diag dumps of one network namespace (`audit --watch`, the lab's server
/// observer; Linux: elsewhere opening one is refused).
pub use imp::TcpTable;

/// Anything that holds a socket of this platform (a descriptor on Unix, a SOCKET on Windows):
/// `socket2::Socket`, std's and tokio's TCP streams.
#[cfg(unix)]
pub trait AsSocket: std::os::fd::AsFd {}
#[cfg(unix)]
impl<T: std::os::fd::AsFd> AsSocket for T {}
/// Anything that holds a socket of this platform (a descriptor on Unix, a SOCKET on Windows):
/// `socket2::Socket`, std's and tokio's TCP streams.
#[cfg(windows)]
pub trait AsSocket: std::os::windows::io::AsSocket {}
#[cfg(windows)]
impl<T: std::os::windows::io::AsSocket> AsSocket for T {}

/// What this platform can do, asked instead of `cfg!` by the rest of the crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The OS's rules for detection settings (resolution, ranges, count, user timeout, defaults).
    pub rules: &'static OsRules,
    /// IP_RECVERR and a raw ICMP observer (`probe --recverr`, ICMP evidence): Linux.
    pub recverr: bool,
    /// A keepalive probe sent on demand ([`keepalive_probe_now`]), the test packet of `probe
    /// --idle-timeout` against a peer that answers no PING: Linux.
    pub keepalive_probe: bool,
}

/// What this platform can do.
pub fn capabilities() -> Capabilities {
    imp::CAPABILITIES
}

/// Why a strategy cannot be used on a platform.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The value is malformed for this platform (usage error, exit 2).
    #[error(transparent)]
    Invalid(#[from] SpecError),
    /// The platform has no such option at all (exit 4).
    #[error("{0}")]
    Unsupported(String),
}

/// Check that `rules`' OS can honour the strategy exactly, before any socket is touched: values it
/// would round or clamp are refused, never silently changed.
pub fn validate(strategy: &Strategy, rules: &OsRules) -> Result<(), PlatformError> {
    let name = rules.name;
    if let Keepalive::Custom {
        idle,
        interval,
        count,
    } = strategy.keepalive
    {
        let res = rules.keepalive_resolution;
        for (what, d) in [("idle", idle), ("interval", interval)] {
            if d.as_nanos() % res.as_nanos() != 0 {
                let whole = Duration::from_nanos(
                    (d.as_nanos() / res.as_nanos()) as u64 * res.as_nanos() as u64,
                );
                return Err(SpecError(format!(
                    "keepalive {what} {} is not a whole number of {}: {name} keepalive has {} resolution, use e.g. {}",
                    format_duration(d),
                    if res >= Duration::from_secs(1) { "seconds" } else { "milliseconds" },
                    if res >= Duration::from_secs(1) { "1 s" } else { "1 ms" },
                    format_duration(whole.max(res)),
                ))
                .into());
            }
            if d > rules.keepalive_max {
                return Err(SpecError(format!(
                    "keepalive {what} {} is out of range: {name} accepts up to {}",
                    format_duration(d),
                    format_duration(rules.keepalive_max)
                ))
                .into());
            }
        }
        let max = match rules.keepalive_count {
            KeepaliveCount::Settable { max } | KeepaliveCount::SinceVersion { max, .. } => max,
        };
        if let Some(count) = count
            && count > max
        {
            return Err(SpecError(format!(
                "keepalive count {count} is out of range: {name} accepts 1..={max}"
            ))
            .into());
        }
    }
    if let Some(uto) = strategy.user_timeout {
        match rules.user_timeout {
            UserTimeout::Linux => {}
            UserTimeout::RxtConnDropTime => {
                if uto.subsec_nanos() != 0 {
                    return Err(SpecError(format!(
                        "user timeout {} is not a whole number of seconds: {name}'s TCP_RXT_CONNDROPTIME has 1 s resolution, use e.g. {}s",
                        format_duration(uto),
                        uto.as_secs().max(1)
                    ))
                    .into());
                }
            }
            UserTimeout::None { instead } => {
                return Err(PlatformError::Unsupported(format!(
                    "{name} has no TCP_USER_TIMEOUT (its nearest is {instead}, which tcphb does not \
                     treat as one): drop --user-timeout / uto="
                )));
            }
        }
    }
    Ok(())
}

/// [`validate`] against this platform's rules.
pub fn check(strategy: &Strategy) -> Result<(), PlatformError> {
    validate(strategy, capabilities().rules)
}

/// Apply the strategy's kernel options to `sock` and return what the kernel reports back (what it
/// cannot report is marked in [`Effective::assumed`]).
pub fn apply(sock: &Socket, strategy: &Strategy) -> io::Result<Effective> {
    match strategy.keepalive {
        Keepalive::Off => sock.set_keepalive(false)?,
        Keepalive::Os => sock.set_keepalive(true)?,
        Keepalive::Custom {
            idle,
            interval,
            count,
        } => imp::set_keepalive(sock, idle, interval, count)?,
    }
    if let Some(uto) = strategy.user_timeout {
        imp::set_user_timeout(sock, uto)?;
    }
    let mut eff = imp::read_back(sock, strategy)?;
    if let Some(hb) = strategy.heartbeat {
        eff.heartbeat_interval_ms = Some(hb.interval.ms());
        eff.heartbeat_misses = Some(hb.misses);
    }
    Ok(eff)
}

/// What the kernel did with a requested strategy, in words: values it changed (clamped) or options it
/// does not have (refused). Empty when the effective settings are exactly what was asked.
pub fn differences(strategy: &Strategy, eff: &Effective) -> Vec<String> {
    let mut out = Vec::new();
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
                    ("idle", Some(idle.ms()), i.ms()),
                    ("interval", Some(interval.ms()), n.ms()),
                    ("count", count.map(u64::from), u64::from(c)),
                ] {
                    if let Some(asked) = asked
                        && asked != got
                    {
                        out.push(format!(
                            "keepalive {what}: asked {asked}, the kernel has {got} (clamped)"
                        ));
                    }
                }
            }
        }
    } else if strategy.keepalive == Keepalive::Os && eff.keepalive().is_none() {
        out.push("keepalive: asked for, but SO_KEEPALIVE reads back off".to_string());
    }
    if let Some(u) = strategy.user_timeout {
        match eff.user_timeout_ms {
            None => out.push("user timeout: refused, TCP_USER_TIMEOUT reads back off".to_string()),
            Some(got) if got != u.ms() => out.push(format!(
                "user timeout: asked {} ms, the kernel has {got} ms (clamped)",
                u.ms()
            )),
            Some(_) => {}
        }
    }
    if !eff.assumed.is_empty() {
        out.push(format!(
            "{} cannot read back {}: shown as asked or as the OS documents them (assumed)",
            capabilities().rules.name,
            eff.assumed.join(", ")
        ));
    }
    out
}

/// TCP_INFO of a socket; `None` where the platform has none (only Linux's is read) or the call
/// fails.
pub fn tcp_info(sock: &impl AsSocket) -> Option<TcpInfo> {
    imp::tcp_info(sock)
}

/// Whether the connection is still ESTABLISHED in the kernel's view (`None` where unknown). A soft
/// error such as an ICMP unreachable reported through IP_RECVERR leaves it established; a timer that
/// gave up does not.
pub fn is_established(sock: &impl AsSocket) -> Option<bool> {
    imp::is_established(sock)
}

/// The kernel's TCP timers of the network namespace the calling thread is in (Linux), or the OS's
/// documented defaults.
pub fn kernel_timers() -> KernelTimers {
    imp::kernel_timers()
}

/// The host's TCP facts, read in the network namespace the calling thread is in.
pub fn host_facts() -> HostFacts {
    imp::host_facts()
}

/// Raise the open-file limit's soft value towards `wanted` (up to the hard limit) and return the
/// limit in force afterwards; `None` where the platform has no such limit.
pub fn raise_nofile(wanted: u64) -> Option<u64> {
    imp::raise_nofile(wanted)
}

/// The symbolic name of an OS error code (`ETIMEDOUT`; Windows' WSA codes by their POSIX names),
/// or `E<n>` when unknown.
pub fn errno_name(code: i32) -> String {
    imp::errno_name(code).unwrap_or_else(|| format!("E{code}"))
}

/// An I/O error's errno name, or the error's kind when it carries no OS code.
pub fn errno_text(e: &io::Error) -> String {
    e.raw_os_error()
        .map(errno_name)
        .unwrap_or_else(|| format!("{:?}", e.kind()))
}

/// Why `--recverr` cannot work where [`Capabilities::recverr`] is false.
const NO_RECVERR: &str =
    "--recverr needs IP_RECVERR, which only Linux has: drop --recverr on this system";

/// Why `probe --idle-timeout` cannot use the keepalive probe where [`Capabilities::keepalive_probe`]
/// is false.
pub const NO_KEEPALIVE_PROBE: &str = "the peer answers no PING, and sending a keepalive probe on demand (the test packet against any TCP server) needs Linux: run --idle-timeout from a Linux host, or against a tcphb listen or an echo service";

/// `--recverr` can work here, or `Unsupported` (exit 4) saying why not.
pub fn check_recverr() -> Result<(), PlatformError> {
    if capabilities().recverr {
        Ok(())
    } else {
        Err(PlatformError::Unsupported(NO_RECVERR.into()))
    }
}

/// Turn on IP_RECVERR (IPV6_RECVERR for IPv6) on a TCP socket: `Unsupported` where the platform has
/// none ([`Capabilities::recverr`]).
pub fn enable_recverr(sock: &Socket, ipv6: bool) -> Result<(), PlatformError> {
    imp::enable_recverr(sock, ipv6)
}

/// Arm a connection for [`keepalive_probe_now`]: SO_KEEPALIVE on with the longest idle the kernel
/// takes (so nothing fires while the connection idles), `interval` from the probe to giving up, and
/// one probe only: unanswered, the connection ends ETIMEDOUT `interval` after it. `Unsupported`
/// where [`Capabilities::keepalive_probe`] is false.
pub fn keepalive_hold(sock: &impl AsSocket, interval: Duration) -> Result<(), PlatformError> {
    imp::keepalive_hold(sock, interval)
}

/// Send one keepalive probe now on a connection armed by [`keepalive_hold`] and idle for at least
/// 1 s: the kernel re-arms its keepalive timer for the new idle (1 s) less the time already idle,
/// which is due at once. The probe carries no data (sequence number one below the next to send),
/// so neither the peer's application nor its idle timer sees it; its kernel answers with an ACK.
pub fn keepalive_probe_now(sock: &impl AsSocket) -> io::Result<()> {
    imp::keepalive_probe_now(sock)
}

/// Let a listening socket reuse a port whose old connections linger in TIME_WAIT (Unix only:
/// SO_REUSEADDR on Windows would let another program steal the port).
pub fn reuse_address(sock: &Socket) -> io::Result<()> {
    imp::reuse_address(sock)
}

/// Completes when the process is asked to stop (SIGINT or SIGTERM; Ctrl-C on Windows). On Unix the
/// handlers are installed by this call, not at the first poll, so a signal sent right after the
/// caller says it is ready (`listen`'s banner) ends the run cleanly instead of killing the process.
/// Call it inside the runtime.
pub fn shutdown() -> impl Future<Output = ()> {
    imp::shutdown()
}

/// Enter the lab's privileges (an unprivileged user namespace when not root). Call while the
/// process is still single-threaded. Err: the message and the exit code.
pub fn enter_lab() -> Result<(), (String, u8)> {
    imp::enter_lab()
}

/// One TCP socket of this network namespace as the kernel's socket diagnostics show it (`audit`).
#[derive(Debug, Clone)]
pub struct DiagSocket {
    pub local: std::net::SocketAddr,
    pub peer: std::net::SocketAddr,
    /// TCP state number (include/net/tcp_states.h): 1 ESTABLISHED … 11 CLOSING.
    pub state: u8,
    /// The socket's inode: which process holds it is found from `/proc/PID/fd`.
    pub inode: u32,
    /// The timer pending on it.
    pub timer: Option<DiagTimer>,
    /// Bytes received and not yet read by the owner.
    pub recv_queue: u32,
    /// Bytes sent and not yet acknowledged by the peer, or not yet sent.
    pub send_queue: u32,
    /// TCP_INFO, when the kernel sent it.
    pub info: Option<TcpInfo>,
}

/// A socket's pending timer, as sock_diag reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiagTimer {
    /// Unacknowledged data: fires `due` from now, after `retransmits` retransmissions so far.
    Retransmit { due: Duration, retransmits: u8 },
    /// The keepalive timer.
    Keepalive { due: Duration },
    /// Probing the peer's zero window.
    ZeroWindow { due: Duration },
}

/// The name of a TCP state number.
pub fn tcp_state_name(state: u8) -> &'static str {
    match state {
        1 => "ESTABLISHED",
        2 => "SYN_SENT",
        3 => "SYN_RECV",
        4 => "FIN_WAIT1",
        5 => "FIN_WAIT2",
        6 => "TIME_WAIT",
        7 => "CLOSE",
        8 => "CLOSE_WAIT",
        9 => "LAST_ACK",
        10 => "LISTEN",
        11 => "CLOSING",
        _ => "UNKNOWN",
    }
}

/// Why sock_diag could not be read, and what to do (elsewhere: that audit needs Linux).
pub fn diag_error(e: io::Error) -> PlatformError {
    imp::diag_error(e)
}

/// A sock_diag socket of this network namespace: its [`TcpTable::dump`] lists every TCP socket but
/// the listening ones (`audit`; one socket serves every look of `--watch`).
pub fn tcp_table() -> Result<TcpTable, PlatformError> {
    TcpTable::open().map_err(diag_error)
}

/// The sockets process `pid` holds: inode → descriptor (Linux: `/proc/PID/fd`).
pub fn socket_inodes(pid: u32) -> io::Result<std::collections::HashMap<u32, i32>> {
    imp::socket_inodes(pid)
}

/// Whether descriptor `fd` of process `pid` is still socket `inode` (Linux: `/proc/PID/fd`).
pub fn holds(pid: u32, fd: i32, inode: u32) -> bool {
    imp::holds(pid, fd, inode)
}

/// Which readable process holds each of the `wanted` sockets: inode → (pid, descriptor), the first
/// process that holds it; the scan stops once all are found.
pub fn all_socket_inodes(
    wanted: &std::collections::HashSet<u32>,
) -> std::collections::HashMap<u32, (u32, i32)> {
    imp::all_socket_inodes(wanted)
}

/// A process whose sockets are read back (`audit`), opened once for all of them with
/// `Process::open(pid)` (Linux: a pidfd).
pub use imp::Process;

/// Read back the detection settings of descriptor `fd` of `process`, exactly as that process set
/// them, through a duplicate that is only read and closed (Linux: `pidfd_getfd`, which needs ptrace
/// rights over the process: root or CAP_SYS_PTRACE).
pub fn read_back_of(process: &Process, fd: i32) -> io::Result<Effective> {
    imp::read_back_of(process, fd)
}

/// Run `compare` in the lab (Linux); elsewhere one clear refusal (exit 4).
pub fn compare(args: &crate::cli::CompareArgs) -> anyhow::Result<crate::report::Finished> {
    imp::compare(args)
}

/// What a lab run measures: every strategy under every fault and load, `repeat` times (`compare`,
/// and `probe --verify`).
#[derive(Debug, Clone)]
pub struct LabPlan {
    pub strategies: Vec<crate::strategy::Strategy>,
    pub faults: Vec<crate::scenario::Fault>,
    pub loads: Vec<crate::scenario::Load>,
    pub repeat: u32,
    /// After the cut, how long to wait before a cell is `never`.
    pub deadline: std::time::Duration,
    /// Quiet time before the cut, so keepalive and heartbeats have been exchanged.
    pub warmup: std::time::Duration,
    /// nat-expiry: how long the router keeps an idle flow.
    pub nat_idle: std::time::Duration,
    /// `compare --server`: the operator's server command (`{addr}`, `{port}` to fill in), run
    /// instead of `tcphb listen`, whose own detection of the dead clients is measured too.
    pub server: Option<String>,
}

/// Run `plan` in the lab and return its matrix (Linux); elsewhere the same refusal as `compare`
/// (exit 4). Call [`enter_lab`] first, while the process is single-threaded.
pub fn lab_matrix(plan: &LabPlan) -> anyhow::Result<crate::report::model::CompareReport> {
    imp::lab_matrix(plan)
}

/// The exit code a lab error asks for, if `cause` is one (the lab exists on Linux only).
pub fn lab_exit_code(cause: &(dyn std::error::Error + 'static)) -> Option<u8> {
    imp::lab_exit_code(cause)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Os;

    fn strategy(s: &str) -> Strategy {
        s.parse().unwrap()
    }

    #[test]
    fn each_os_refuses_what_it_would_round() {
        let linux = Os::Linux.rules();
        for bad in ["ka=1500ms,1s,3", "ka=1s,1s,128", "ka=40000s,1s,3"] {
            assert!(
                matches!(
                    validate(&strategy(bad), linux),
                    Err(PlatformError::Invalid(_))
                ),
                "{bad}"
            );
        }
        assert!(validate(&strategy("ka=1s,1s,127+uto=1500ms"), linux).is_ok());
        // Windows keepalive is in milliseconds, but has no user timeout.
        let windows = Os::Windows.rules();
        assert!(validate(&strategy("ka=5500ms,3s,10"), windows).is_ok());
        let e = validate(&strategy("ka=5s,5s,3+uto=20s"), windows).unwrap_err();
        assert!(
            matches!(e, PlatformError::Unsupported(_)) && e.to_string().contains("TCP_MAXRT"),
            "{e}"
        );
        // macOS: whole seconds, and the user timeout is TCP_RXT_CONNDROPTIME in whole seconds.
        let macos = Os::Macos.rules();
        assert!(validate(&strategy("ka=5s,5s,3+uto=20s"), macos).is_ok());
        let e = validate(&strategy("uto=1500ms"), macos).unwrap_err();
        assert!(e.to_string().contains("TCP_RXT_CONNDROPTIME"), "{e}");
        let e = validate(&strategy("ka=5500ms,3s,3"), macos).unwrap_err();
        assert!(e.to_string().contains("use e.g. 5s"), "{e}");
    }

    #[test]
    fn differences_name_what_the_kernel_changed() {
        let strat = strategy("ka=5s,2s,4+uto=20s");
        let exact = Effective {
            keepalive_idle_ms: Some(5000),
            keepalive_interval_ms: Some(2000),
            keepalive_count: Some(4),
            user_timeout_ms: Some(20000),
            ..Effective::default()
        };
        assert_eq!(differences(&strat, &exact), Vec::<String>::new());
        let mut clamped = exact;
        clamped.keepalive_count = Some(3);
        clamped.user_timeout_ms = None;
        let d = differences(&strat, &clamped);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d[0].contains("count: asked 4, the kernel has 3"), "{d:?}");
        assert!(d[1].contains("refused"), "{d:?}");
    }

    #[test]
    fn errno_text_names_the_code_or_the_kind() {
        assert_eq!(errno_name(-12345), "E-12345");
        let e = io::Error::new(io::ErrorKind::TimedOut, "x");
        assert_eq!(errno_text(&e), "TimedOut");
    }
}
