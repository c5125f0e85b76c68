//! TCP_INFO (Linux): what the kernel knows about a connection — RTT, RTO, time since the peer was last
//! heard, probes, back-off and retransmissions. Other systems report nothing and callers fall back to
//! what tcphb itself observed.

use serde::Serialize;

/// The fields of TCP_INFO tcphb uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TcpInfo {
    /// Smoothed round-trip time, µs. JSON: `rtt_ms`, fractional ms, like `probe`'s `facts.rtt_ms`.
    #[serde(rename = "rtt_ms", serialize_with = "us_as_ms")]
    pub rtt_us: u32,
    /// Current retransmission timeout, µs. JSON: `rto_ms`, whole ms, like `probe`'s `facts.rto_ms`.
    #[serde(rename = "rto_ms", serialize_with = "us_as_whole_ms")]
    pub rto_us: u32,
    /// Milliseconds since the last ACK was received from the peer.
    pub last_ack_recv_ms: u32,
    /// Milliseconds since the last data was received from the peer.
    pub last_data_recv_ms: u32,
    /// Keepalive or zero-window probes sent without an answer.
    pub probes: u8,
    /// Exponential back-off count of the retransmission timer.
    pub backoff: u8,
    /// Retransmissions of the current head segment.
    pub retransmits: u8,
    /// Retransmissions over the connection's life.
    pub total_retrans: u32,
    /// Segments sent and not yet acknowledged.
    pub unacked: u32,
}

/// JSON durations are milliseconds: µs as fractional ms.
fn us_as_ms<S: serde::Serializer>(us: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(f64::from(*us) / 1000.0)
}

/// µs as whole ms (the kernel's RTO has jiffy resolution, never below 1 ms).
fn us_as_whole_ms<S: serde::Serializer>(us: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::from(*us) / 1000)
}

impl TcpInfo {
    /// Milliseconds since anything (ACK or data) was last heard from the peer.
    pub fn silence_ms(&self) -> u64 {
        u64::from(self.last_ack_recv_ms.min(self.last_data_recv_ms))
    }
}

/// The kernel's raw TCP_INFO for a socket.
#[cfg(target_os = "linux")]
fn raw<S: std::os::fd::AsRawFd>(sock: &S) -> Option<libc::tcp_info> {
    // SAFETY: tcp_info is plain old data; getsockopt writes at most `len` bytes into it.
    let mut raw: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut raw as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(raw)
}

/// Read TCP_INFO from a socket. `None` where the platform has no TCP_INFO or the call fails.
#[cfg(target_os = "linux")]
pub fn read<S: std::os::fd::AsRawFd>(sock: &S) -> Option<TcpInfo> {
    let raw = raw(sock)?;
    Some(TcpInfo {
        rtt_us: raw.tcpi_rtt,
        rto_us: raw.tcpi_rto,
        last_ack_recv_ms: raw.tcpi_last_ack_recv,
        last_data_recv_ms: raw.tcpi_last_data_recv,
        probes: raw.tcpi_probes,
        backoff: raw.tcpi_backoff,
        retransmits: raw.tcpi_retransmits,
        total_retrans: raw.tcpi_total_retrans,
        unacked: raw.tcpi_unacked,
    })
}

/// Read TCP_INFO from a socket. `None` where the platform has no TCP_INFO or the call fails.
#[cfg(not(target_os = "linux"))]
pub fn read<S>(_sock: &S) -> Option<TcpInfo> {
    None
}

/// Whether the connection is still ESTABLISHED in the kernel's view (Linux; `None` elsewhere). A soft
/// error such as an ICMP unreachable reported through IP_RECVERR leaves it established; a timer that
/// gave up does not.
#[cfg(target_os = "linux")]
pub fn is_established<S: std::os::fd::AsRawFd>(sock: &S) -> Option<bool> {
    // TCP_ESTABLISHED is 1 in include/net/tcp_states.h.
    raw(sock).map(|r| r.tcpi_state == 1)
}

/// Whether the connection is still ESTABLISHED in the kernel's view (Linux; `None` elsewhere).
#[cfg(not(target_os = "linux"))]
pub fn is_established<S>(_sock: &S) -> Option<bool> {
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

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
        let info = super::read(&c).expect("TCP_INFO on Linux");
        assert!(info.rtt_us > 0);
        assert!(
            info.rto_us >= 200_000,
            "RTO is at least TCP_RTO_MIN: {}",
            info.rto_us
        );
        assert!(info.silence_ms() < 1000, "just heard the peer: {info:?}");
        assert_eq!(info.unacked, 0);
        assert_eq!(super::is_established(&c), Some(true));
        drop(s);
        c.shutdown(std::net::Shutdown::Both).unwrap();
        assert_eq!(super::is_established(&c), Some(false));
    }
}
