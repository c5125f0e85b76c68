//! TCP_INFO's fields tcphb uses: what the kernel knows about a connection — RTT, RTO, time since the
//! peer was last heard, probes, back-off and retransmissions. Pure data; `sys::tcp_info` reads it
//! (Linux; elsewhere callers fall back to what tcphb itself observed).

use std::time::Duration;

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
    /// The smoothed round-trip time.
    pub fn rtt(&self) -> Duration {
        Duration::from_micros(u64::from(self.rtt_us))
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        Duration::from_micros(u64::from(self.rto_us))
    }

    /// Milliseconds since anything (ACK or data) was last heard from the peer.
    pub fn silence_ms(&self) -> u64 {
        u64::from(self.last_ack_recv_ms.min(self.last_data_recv_ms))
    }
}
