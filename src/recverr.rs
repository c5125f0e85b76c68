//! Early warnings: ICMP errors from routers on the path, reported the moment they arrive, while the
//! connection is still alive (Linux only; a clear "unsupported" elsewhere).
//!
//! Without IP_RECVERR, Linux TCP keeps an ICMP "unreachable" as a *soft* error: it is only shown when a
//! timer finally gives up (EHOSTUNREACH instead of ETIMEDOUT). With IP_RECVERR set, it is raised at once
//! as the socket's pending error (`SO_ERROR`, and the next read or write fails with it once) — but the
//! connection stays ESTABLISHED and keeps retransmitting. TCP has no error queue: `recvmsg(MSG_ERRQUEUE)`
//! on a TCP socket always answers EAGAIN (measured on 6.18, and `man 7 ip` says so), so the ICMP message
//! itself — which router sent it, which type and code — is not available from the TCP socket, and the
//! socket error is raised only when the ICMP arrives while no system call holds the socket (otherwise
//! the kernel keeps it soft, for the timers), so a warning may lack its errno. tcphb
//! reads it from a raw ICMP socket instead, when it may (CAP_NET_RAW), matching the quoted TCP header
//! against the connection's addresses and ports; without the privilege it reports the errno alone.
//!
//! The platform calls (IP_RECVERR, the raw socket) are in `sys`; [`parse_icmp`] is pure and portable.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde::Serialize;
use std::sync::Mutex;

use crate::detection::{CloseHow, Outcome};
use crate::sys::{self, IcmpSocket};
use crate::units::Millis;
use crate::watch::{Observe, Watch, watch_observed};

/// One ICMP error that quotes a segment of the watched connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IcmpReport {
    /// The router (or host) that sent it.
    pub from: IpAddr,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// In words: `host unreachable`, `communication administratively prohibited`, `time exceeded`…
    pub what: &'static str,
}

/// Words for an ICMP (`ipv6 = false`) or ICMPv6 error type and code; `None` for messages that are not
/// errors about a sent packet.
pub fn describe(ipv6: bool, icmp_type: u8, code: u8) -> Option<&'static str> {
    Some(if ipv6 {
        match (icmp_type, code) {
            (1, 0) => "no route to destination",
            (1, 1) => "communication administratively prohibited",
            (1, 2) => "beyond scope of source address",
            (1, 3) => "address unreachable",
            (1, 4) => "port unreachable",
            (1, 5) => "source address failed policy",
            (1, 6) => "reject route",
            (1, _) => "destination unreachable",
            (2, _) => "packet too big",
            (3, _) => "time exceeded",
            (4, _) => "parameter problem",
            _ => return None,
        }
    } else {
        match (icmp_type, code) {
            (3, 0) => "network unreachable",
            (3, 1) => "host unreachable",
            (3, 2) => "protocol unreachable",
            (3, 3) => "port unreachable",
            (3, 4) => "fragmentation needed",
            (3, 5) => "source route failed",
            (3, 6) => "destination network unknown",
            (3, 7) => "destination host unknown",
            (3, 9) => "network administratively prohibited",
            (3, 10) => "host administratively prohibited",
            (3, 11) => "network unreachable for TOS",
            (3, 12) => "host unreachable for TOS",
            (3, 13) => "communication administratively prohibited",
            (3, _) => "destination unreachable",
            (11, _) => "time exceeded",
            (12, _) => "parameter problem",
            _ => return None,
        }
    })
}

/// Parse what a raw ICMP socket received — an IPv4 packet with its header, or an ICMPv6 message without
/// one (that is how Linux delivers them; `from` is then the sender from `recvfrom`) — and keep it only
/// if it is an error quoting a TCP segment from `local` to `peer`.
pub fn parse_icmp(
    packet: &[u8],
    from: Option<IpAddr>,
    local: SocketAddr,
    peer: SocketAddr,
) -> Option<IcmpReport> {
    let (report, src, dst) = parse_icmp_quote(packet, from, local.is_ipv6())?;
    (src == local && dst == peer).then_some(report)
}

/// Parse an ICMP error quoting a TCP segment: the report, and the quoted segment's source and
/// destination (the local and peer ends of the connection it was about).
pub fn parse_icmp_quote(
    packet: &[u8],
    from: Option<IpAddr>,
    ipv6: bool,
) -> Option<(IcmpReport, SocketAddr, SocketAddr)> {
    let (icmp, from) = if ipv6 {
        (packet, from?)
    } else {
        let ihl = usize::from(*packet.first()? & 0x0f) * 4;
        let src: [u8; 4] = packet.get(12..16)?.try_into().ok()?;
        (packet.get(ihl..)?, IpAddr::V4(Ipv4Addr::from(src)))
    };
    let (icmp_type, icmp_code) = (*icmp.first()?, *icmp.get(1)?);
    let what = describe(ipv6, icmp_type, icmp_code)?;
    // The quoted packet starts 8 bytes in: its IP header, then at least 8 bytes of the TCP header.
    let quoted = icmp.get(8..)?;
    let (proto, qsrc, qdst, tcp): (u8, IpAddr, IpAddr, &[u8]) = if ipv6 {
        let src: [u8; 16] = quoted.get(8..24)?.try_into().ok()?;
        let dst: [u8; 16] = quoted.get(24..40)?.try_into().ok()?;
        (
            *quoted.get(6)?,
            Ipv6Addr::from(src).into(),
            Ipv6Addr::from(dst).into(),
            quoted.get(40..)?,
        )
    } else {
        let qihl = usize::from(*quoted.first()? & 0x0f) * 4;
        let src: [u8; 4] = quoted.get(12..16)?.try_into().ok()?;
        let dst: [u8; 4] = quoted.get(16..20)?.try_into().ok()?;
        (
            *quoted.get(9)?,
            Ipv4Addr::from(src).into(),
            Ipv4Addr::from(dst).into(),
            quoted.get(qihl..)?,
        )
    };
    let port = |at: usize| Some(u16::from_be_bytes(tcp.get(at..at + 2)?.try_into().ok()?));
    if proto != 6 {
        return None;
    }
    Some((
        IcmpReport {
            from,
            icmp_type,
            icmp_code,
            what,
        },
        SocketAddr::new(qsrc, port(0)?),
        SocketAddr::new(qdst, port(2)?),
    ))
}

/// Every ICMP error arriving in one network namespace, on a raw socket made there.
pub struct IcmpTap {
    inner: IcmpSocket,
    ipv6: bool,
}

impl IcmpTap {
    /// Watch on `sock`, a raw ICMPv4 socket (made in the namespace to watch). Call inside a tokio
    /// runtime. Never fails: [`IcmpTap::unavailable`] says why nothing will come.
    pub fn new(sock: io::Result<socket2::Socket>) -> IcmpTap {
        IcmpTap {
            inner: IcmpSocket::from_socket(sock),
            ipv6: false,
        }
    }

    /// Why nothing will be seen, if so.
    pub fn unavailable(&self) -> Option<&str> {
        self.inner.unavailable()
    }

    /// The next ICMP error quoting a TCP segment: the report, the segment's (source, destination)
    /// and when the error arrived (the kernel's stamp where it gives one).
    pub async fn next(&mut self) -> (IcmpReport, SocketAddr, SocketAddr, std::time::Instant) {
        loop {
            let (packet, from, arrived) = self.inner.recv().await;
            if let Some((r, src, dst)) = parse_icmp_quote(&packet, from, self.ipv6) {
                return (r, src, dst, arrived);
            }
        }
    }
}

/// Listens for ICMP errors about one connection on a raw socket, on the current tokio runtime: a
/// tap that keeps only what quotes this connection.
pub struct IcmpWatch {
    tap: IcmpTap,
    local: SocketAddr,
    peer: SocketAddr,
}

impl IcmpWatch {
    /// Open the raw socket (in the calling thread's network namespace). Never fails: without the
    /// privilege, or off Linux, [`IcmpWatch::next`] simply never completes and
    /// [`IcmpWatch::unavailable`] says why. Call inside a tokio runtime.
    pub fn open(local: SocketAddr, peer: SocketAddr) -> IcmpWatch {
        IcmpWatch {
            tap: IcmpTap {
                inner: IcmpSocket::open(local.is_ipv6()),
                ipv6: local.is_ipv6(),
            },
            local,
            peer,
        }
    }

    /// Why routers' addresses cannot be shown, if they cannot.
    pub fn unavailable(&self) -> Option<&str> {
        self.tap.unavailable()
    }

    /// The next ICMP error quoting this connection (pending forever when unavailable).
    pub async fn next(&mut self) -> IcmpReport {
        loop {
            let (report, src, dst, _) = self.tap.next().await;
            if (src, dst) == (self.local, self.peer) {
                return report;
            }
        }
    }
}

/// One early warning: a soft error the path reported while the connection was still alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Measured: since the connection opened, ms.
    pub at_ms: u64,
    /// In words: `host unreachable`…
    pub what: String,
    /// The router that reported it (needs a raw ICMP socket), else `null`.
    pub reporter: Option<String>,
    /// The errno the socket raised (`EHOSTUNREACH`…), if it raised one.
    pub errno: Option<String>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    /// How many ICMP messages this warning stands for: one arrives per segment in flight, so a busy
    /// connection draws a burst; identical ones within 200 ms are one warning.
    pub messages: u32,
}

impl Warning {
    /// `host unreachable reported by 198.18.0.1 at +1.5 s (EHOSTUNREACH)`.
    pub fn sentence(&self) -> String {
        let by = self
            .reporter
            .as_deref()
            .map(|r| format!(" by {r}"))
            .unwrap_or_default();
        let errno = self
            .errno
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        format!(
            "{} reported{by} at +{:.1} s{errno}",
            self.what,
            self.at_ms as f64 / 1000.0
        )
    }
}

/// What `--recverr` saw on the busy connection.
#[derive(Debug, Clone, Serialize)]
pub struct EarlyWarnings {
    /// How long the connection was kept busy, ms.
    pub duration_ms: u64,
    pub warnings: Vec<Warning>,
    /// Why routers' addresses are missing, if they are.
    pub reporter_unavailable: Option<String>,
    /// The connection ended before the duration: when (ms since it opened) and the errno.
    pub ended_at_ms: Option<u64>,
    pub ended_errno: Option<String>,
}

/// Most warnings kept (an unreachable path reports about once per retransmission).
const MAX_WARNINGS: usize = 1000;
/// An ICMP report and the socket error it raised are one warning when this close together.
const SAME_EVENT: Duration = Duration::from_millis(200);

fn errno_words(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::HostUnreachable => {
            "host unreachable (or administratively prohibited)".into()
        }
        io::ErrorKind::NetworkUnreachable => "network unreachable".into(),
        _ => e.to_string(),
    }
}

/// Keep `stream` busy (DATA lines, as `connect --load busy`, on the one watch loop) for `duration`, and
/// report every soft error as it arrives: `on_warning` is called at once with each new one. IP_RECVERR
/// must already be on. Ends early if the connection dies.
pub async fn watch_busy(
    stream: tokio::net::TcpStream,
    w: &Watch,
    opened: Instant,
    duration: Duration,
    stop: impl std::future::Future<Output = ()>,
    on_warning: &(dyn Fn(&Warning) + Sync),
) -> EarlyWarnings {
    let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) else {
        return EarlyWarnings {
            duration_ms: 0,
            warnings: Vec::new(),
            reporter_unavailable: None,
            ended_at_ms: Some(opened.elapsed().ms()),
            ended_errno: Some("ENOTCONN".into()),
        };
    };
    let mut icmp = IcmpWatch::open(local, peer);
    let out = Mutex::new(EarlyWarnings {
        duration_ms: duration.ms(),
        warnings: Vec::new(),
        reporter_unavailable: icmp.unavailable().map(str::to_string),
        ended_at_ms: None,
        ended_errno: None,
    });
    let note = |f: &dyn Fn(&mut EarlyWarnings) -> Option<Warning>| {
        let mut out = out
            .lock()
            .expect("never poisoned: nothing panics while it is held");
        if let Some(w) = f(&mut out) {
            on_warning(&w);
            if out.warnings.len() < MAX_WARNINGS {
                out.warnings.push(w);
            }
        }
    };
    let soft = |e: &io::Error| note(&|out| out.errno(opened.elapsed(), e));
    // The watch borrows the accumulator; it ends (and is dropped) before the accumulator is taken.
    let end = {
        let until = async {
            tokio::select! {
                _ = tokio::time::sleep(duration) => {}
                _ = stop => {}
            }
        };
        let observe = Observe {
            soft: Some(&soft),
            ..Observe::NONE
        };
        let watching = watch_observed(stream, w, opened, until, &observe);
        tokio::pin!(watching);
        loop {
            tokio::select! {
                // ICMP first: the raw socket has the message before TCP raises the error, so when both are
                // ready the warning gets its reporter before the errno is attached to it.
                biased;
                r = icmp.next() => note(&|out| out.icmp(opened.elapsed(), &r)),
                d = &mut watching => break d,
            }
        }
    };
    let mut out = out.into_inner().expect("never poisoned");
    if end.outcome != Outcome::Alive {
        out.ended_at_ms = Some(end.elapsed_ms);
        out.ended_errno = Some(match (end.errno, end.how) {
            (Some(e), _) => e,
            (None, Some(CloseHow::Fin)) => "EOF".into(),
            (None, _) => end.note.unwrap_or_else(|| "closed".into()),
        });
    }
    out
}

impl EarlyWarnings {
    /// A socket error at `now` while the connection lives: the errno of the ICMP warning just seen,
    /// or a warning of its own.
    fn errno(&mut self, now: Duration, e: &io::Error) -> Option<Warning> {
        let errno = e.raw_os_error().map(sys::errno_name);
        if let Some(last) = self.warnings.last_mut()
            && last.errno.is_none()
            && now.saturating_sub(Duration::from_millis(last.at_ms)) <= SAME_EVENT
        {
            last.errno = errno;
            return None;
        }
        Some(Warning {
            at_ms: now.ms(),
            what: errno_words(e),
            reporter: None,
            errno,
            icmp_type: None,
            icmp_code: None,
            messages: 0,
        })
    }

    /// An ICMP error about the connection at `now`: one more message of the last warning, the
    /// reporter of an errno-only warning just seen, or a warning of its own.
    fn icmp(&mut self, now: Duration, r: &IcmpReport) -> Option<Warning> {
        let from = r.from.to_string();
        let recent = |w: &Warning| now.saturating_sub(Duration::from_millis(w.at_ms)) <= SAME_EVENT;
        if let Some(last) = self.warnings.last_mut()
            && recent(last)
        {
            if last.reporter.as_deref() == Some(from.as_str())
                && (last.icmp_type, last.icmp_code) == (Some(r.icmp_type), Some(r.icmp_code))
            {
                last.messages += 1;
                return None;
            }
            if last.reporter.is_none() && last.icmp_type.is_none() {
                last.reporter = Some(from);
                last.what = r.what.to_string();
                (last.icmp_type, last.icmp_code) = (Some(r.icmp_type), Some(r.icmp_code));
                last.messages = 1;
                return None;
            }
        }
        Some(Warning {
            at_ms: now.ms(),
            what: r.what.to_string(),
            reporter: Some(from),
            errno: None,
            icmp_type: Some(r.icmp_type),
            icmp_code: Some(r.icmp_code),
            messages: 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMPv4 error from `router` quoting a TCP segment from `src` to `dst`, as a raw socket sees it.
    fn icmp4(router: [u8; 4], t: u8, code: u8, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        let ip = |a: SocketAddr| match a.ip() {
            IpAddr::V4(v) => v.octets(),
            _ => unreachable!(),
        };
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        p.extend(router);
        p.extend([198, 18, 0, 2]);
        p.extend([t, code, 0, 0, 0, 0, 0, 0]);
        let mut q = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0];
        q.extend(ip(src));
        q.extend(ip(dst));
        p.extend(q);
        p.extend(src.port().to_be_bytes());
        p.extend(dst.port().to_be_bytes());
        p.extend([0, 0, 0, 1]);
        p
    }

    #[test]
    fn matches_only_errors_about_our_connection() {
        let local: SocketAddr = "198.18.0.2:40000".parse().unwrap();
        let peer: SocketAddr = "198.18.1.2:7878".parse().unwrap();
        let r = parse_icmp(
            &icmp4([198, 18, 0, 1], 3, 1, local, peer),
            None,
            local,
            peer,
        )
        .unwrap();
        assert_eq!(r.from, "198.18.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            (r.icmp_type, r.icmp_code, r.what),
            (3, 1, "host unreachable")
        );
        let r = parse_icmp(&icmp4([10, 0, 0, 1], 3, 13, local, peer), None, local, peer).unwrap();
        assert_eq!(r.what, "communication administratively prohibited");
        // Another connection (other port), the reverse direction, an echo reply, a runt.
        let other: SocketAddr = "198.18.0.2:40001".parse().unwrap();
        assert_eq!(
            parse_icmp(
                &icmp4([198, 18, 0, 1], 3, 1, other, peer),
                None,
                local,
                peer
            ),
            None
        );
        assert_eq!(
            parse_icmp(
                &icmp4([198, 18, 0, 1], 3, 1, peer, local),
                None,
                local,
                peer
            ),
            None
        );
        assert_eq!(
            parse_icmp(
                &icmp4([198, 18, 0, 1], 0, 0, local, peer),
                None,
                local,
                peer
            ),
            None
        );
        let p = icmp4([198, 18, 0, 1], 3, 1, local, peer);
        for cut in [0, 10, 25, 40, p.len() - 5] {
            assert_eq!(
                parse_icmp(&p[..cut], None, local, peer),
                None,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn parses_icmpv6_without_an_ip_header() {
        let local: SocketAddr = "[2001:db8::2]:40000".parse().unwrap();
        let peer: SocketAddr = "[2001:db8:1::2]:443".parse().unwrap();
        let ip6 = |a: SocketAddr| match a.ip() {
            IpAddr::V6(v) => v.octets(),
            _ => unreachable!(),
        };
        let mut p = vec![1, 3, 0, 0, 0, 0, 0, 0];
        p.extend([0x60, 0, 0, 0, 0, 20, 6, 64]);
        p.extend(ip6(local));
        p.extend(ip6(peer));
        p.extend(40000u16.to_be_bytes());
        p.extend(443u16.to_be_bytes());
        let router: IpAddr = "2001:db8::1".parse().unwrap();
        let r = parse_icmp(&p, Some(router), local, peer).unwrap();
        assert_eq!((r.from, r.what), (router, "address unreachable"));
        assert_eq!(
            parse_icmp(&p, None, local, peer),
            None,
            "v6 needs the sender"
        );
    }
}
