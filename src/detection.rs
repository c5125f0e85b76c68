//! Detection: what ended a connection, when, and the kernel's counters at that moment.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::tcpinfo::TcpInfo;
use crate::units::Millis;

/// The mechanism that noticed the dead peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mechanism {
    /// TCP keepalive probes went unanswered (idle connection).
    Keepalive,
    /// Retransmissions of unacknowledged data gave up (tcp_retries2).
    Retransmission,
    /// TCP_USER_TIMEOUT expired.
    UserTimeout,
    /// Application heartbeats went unanswered.
    Heartbeat,
    /// The peer answered RST.
    Reset,
    /// The peer's kernel sent FIN. On a real path (`connect`, `listen`) that is the peer closing, not a
    /// mechanism noticing a death, and is reported as `closed_by: peer`; only where tcphb made the fault
    /// (`compare`'s crash) is a FIN credited as what noticed.
    Eof,
    /// An ICMP error was reported before any timer could have given up.
    Unreachable,
}

impl Mechanism {
    /// snake_case name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Keepalive => "keepalive",
            Mechanism::Retransmission => "retransmission",
            Mechanism::UserTimeout => "user_timeout",
            Mechanism::Heartbeat => "heartbeat",
            Mechanism::Reset => "reset",
            Mechanism::Eof => "eof",
            Mechanism::Unreachable => "unreachable",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How watching a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A mechanism declared the peer dead (timeout, heartbeat, reset, ICMP).
    Dead,
    /// The connection was closed, not found dead: by the peer (FIN: its own idle timeout, a proxy
    /// limit, its process ending) or by tcphb (the peer broke or never spoke the heartbeat protocol).
    /// `closed_by` says which.
    Closed,
    /// The peer was still alive when watching stopped (duration reached or interrupted).
    Alive,
}

impl Outcome {
    /// snake_case name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Dead => "dead",
            Outcome::Closed => "closed",
            Outcome::Alive => "alive",
        }
    }

    /// Whether the watcher saw the connection end (dead or closed). `compare` counts both, since there
    /// tcphb made the fault and a FIN is the crash it caused; `connect` and `listen`, where nothing was
    /// cut, judge only [`Outcome::Dead`] as a detection (exit code 3).
    pub fn is_detection(self) -> bool {
        !matches!(self, Outcome::Alive)
    }
}

/// Who closed a connection that ended `closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClosedBy {
    /// The peer closed it: its own decision (idle timeout, proxy limit) or its process ended.
    Peer,
    /// tcphb closed it: the peer broke the heartbeat protocol, or never answered one (see `note`).
    Tcphb,
    /// The process that holds it closed it (`audit --watch`, `compare --server`: a connection of
    /// another process).
    Owner,
}

impl ClosedBy {
    /// snake_case name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            ClosedBy::Peer => "peer",
            ClosedBy::Tcphb => "tcphb",
            ClosedBy::Owner => "owner",
        }
    }
}

/// How a `closed` connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseHow {
    /// The peer sent FIN.
    Fin,
    /// The peer sent RST while nothing tcphb sent could have drawn it (no data for a while, no
    /// keepalive probe unanswered): it aborted the idle connection itself (or a middlebox on the
    /// path did, for it).
    Rst,
    /// tcphb closed it because the peer broke the heartbeat protocol (over-long line, only unknown
    /// lines, pings whose answers it never reads).
    Protocol,
    /// tcphb closed it because the peer never answered a heartbeat in any form (no PONG, no echo).
    NoHeartbeat,
    /// Another process's connection left the kernel's table with no timer running out, and its
    /// process no longer holds it: an abortive close, or a reset the process closed at once.
    Vanished,
    /// The peer, alive, refused or ended the conversation in the heartbeat's protocol: an HTTP/2
    /// GOAWAY (gRPC's "too_many_pings"), a refused MQTT CONNACK, a WebSocket close (see `note`).
    Refused,
    /// tcphb closed it because the TLS handshake failed (an expired or unknown certificate, a wrong
    /// name, a server that does not speak TLS: see `note`).
    Tls,
}

impl CloseHow {
    /// snake_case name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            CloseHow::Fin => "fin",
            CloseHow::Rst => "rst",
            CloseHow::Protocol => "protocol",
            CloseHow::NoHeartbeat => "no_heartbeat",
            CloseHow::Vanished => "vanished",
            CloseHow::Refused => "refused",
            CloseHow::Tls => "tls",
        }
    }
}

/// The end of one watched connection. All durations are measured with a monotonic clock.
#[derive(Debug, Clone, Serialize)]
pub struct Detection {
    pub outcome: Outcome,
    /// What noticed, when the outcome is not `alive`.
    pub detected_by: Option<Mechanism>,
    /// The errno name the socket reported (`ETIMEDOUT`, `ECONNRESET`…), if any.
    pub errno: Option<String>,
    /// Time since the last packet heard from the peer (TCP_INFO on Linux; the last heartbeat line for
    /// heartbeat detections and elsewhere), ms.
    pub silence_ms: u64,
    /// Time since the connection opened, ms.
    pub elapsed_ms: u64,
    /// Kernel counters at the moment of detection (Linux).
    pub tcp_info: Option<TcpInfo>,
    /// Why the connection was closed by tcphb itself (protocol violation), if it was.
    pub note: Option<String>,
    /// Who closed a `closed` connection (`null` otherwise).
    pub closed_by: Option<ClosedBy>,
    /// How it was closed (`null` unless `closed`).
    pub how: Option<CloseHow>,
    /// Time since the last byte exchanged in either direction (or since the connection opened) when
    /// watching ended, ms: for a connection the peer closed, how long it had been idle — a peer's
    /// own idle timeout shows here. Keepalive probes carry no bytes and do not count.
    pub idled_ms: u64,
    /// The ICMP errors this connection received (a raw ICMP observer, as root): evidence of the cause
    /// whatever errno the kernel ends with; `null` when none came or none could be watched.
    pub icmp: Option<IcmpSeen>,
    /// The peer sent at least one heartbeat-protocol line (PING, PONG, DATA). Not reported: it tells
    /// a peer that fell silent (dead) from one that never spoke the protocol.
    #[serde(skip)]
    pub spoke_heartbeat: bool,
    /// When it ended, tcphb was waiting for an answer to something it sent (a heartbeat ping,
    /// busy data), which the kernel may have been retransmitting for a while. Not reported: a RST
    /// then answers it, however long ago tcphb wrote it ([`Detection::unprompted_reset`]).
    #[serde(skip)]
    pub awaiting_answer: bool,
}

impl Detection {
    /// The ending as `connect` and `listen` report it, where tcphb cut nothing: only a silence or a
    /// reset is a death. A FIN is the peer's own close and credits no mechanism, and so is a RST
    /// nothing could have drawn ([`Detection::unprompted_reset`]); a heartbeat
    /// "death" of a peer that never once answered is a peer that does not speak the protocol, which
    /// tcphb closed.
    pub fn on_a_live_path(mut self) -> Detection {
        match (self.outcome, self.detected_by) {
            (Outcome::Closed, Some(Mechanism::Eof)) => self.detected_by = None,
            (Outcome::Dead, Some(Mechanism::Reset)) if self.unprompted_reset() => {
                self.outcome = Outcome::Closed;
                self.detected_by = None;
                self.closed_by = Some(ClosedBy::Peer);
                self.how = Some(CloseHow::Rst);
            }
            (Outcome::Dead, Some(Mechanism::Heartbeat)) if !self.spoke_heartbeat => {
                self.outcome = Outcome::Closed;
                self.detected_by = None;
                self.closed_by = Some(ClosedBy::Tcphb);
                self.how = Some(CloseHow::NoHeartbeat);
                let why = format!(
                    "never answered a heartbeat (no PONG or echo in {}): does not speak tcphb's PING protocol",
                    crate::units::human_ms(Some(self.silence_ms))
                );
                self.note = Some(match self.note.take() {
                    Some(n) => format!("{why}; {n}"),
                    None => why,
                });
            }
            _ => {}
        }
        self
    }

    /// A RST that answers nothing: a host that forgot the connection (rebooted) only resets a segment
    /// it receives, so a RST after a quiet spell longer than anything in flight could take — no byte
    /// either way for max(4 RTT, 200 ms), nothing of tcphb's awaiting an answer (a ping the kernel
    /// may be retransmitting after a cut), no keepalive probe unanswered (TCP_INFO's probes) — is the
    /// peer aborting the idle connection itself. Needs TCP_INFO: without it, a reset stays a death.
    pub fn unprompted_reset(&self) -> bool {
        let Some(info) = self.tcp_info else {
            return false;
        };
        let quiet = (4 * u64::from(info.rtt_us) / 1000).max(200);
        !self.awaiting_answer && info.probes == 0 && self.idled_ms >= quiet
    }

    /// Whether this is a death (`connect`/`listen` exit code 3), once seen [on a live
    /// path](Detection::on_a_live_path).
    pub fn is_death(&self) -> bool {
        self.outcome == Outcome::Dead
    }

    /// The peer closed the connection itself (`connect` exit code 5).
    pub fn closed_by_peer(&self) -> bool {
        self.outcome == Outcome::Closed && self.closed_by == Some(ClosedBy::Peer)
    }

    /// tcphb closed the connection because the peer broke or never spoke the protocol.
    pub fn closed_by_tcphb(&self) -> bool {
        self.outcome == Outcome::Closed && self.closed_by == Some(ClosedBy::Tcphb)
    }
}

/// The ICMP errors one connection received: evidence of the cause, whatever errno the kernel ends
/// with (it ignores those about keepalive probes, and keeps the others as soft errors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IcmpSeen {
    /// In words, of the first: `host unreachable`…
    pub what: &'static str,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// The router that sent the first (`reporter`, as in `probe`'s early warnings).
    pub reporter: String,
    /// How many arrived (`messages`, as in `probe`'s early warnings).
    pub messages: u32,
    /// Measured: the first and the last, ms after the cut (`compare`) or after the last packet
    /// heard from the peer (`connect`, which cuts nothing).
    pub first_ms: u64,
    pub last_ms: u64,
}

impl IcmpSeen {
    /// Start the evidence with one report, `at` after the cut (or the last packet heard).
    pub fn new(r: &crate::recverr::IcmpReport, at: Duration) -> IcmpSeen {
        let ms = at.ms();
        IcmpSeen {
            what: r.what,
            icmp_type: r.icmp_type,
            icmp_code: r.icmp_code,
            reporter: r.from.to_string(),
            messages: 1,
            first_ms: ms,
            last_ms: ms,
        }
    }

    /// One more, `at` after the same instant.
    pub fn add(&mut self, at: Duration) {
        self.messages += 1;
        self.last_ms = at.ms();
    }

    /// The cause in words: `host unreachable from 198.18.0.1, 12×`.
    pub fn cause(&self) -> String {
        format!("{} from {}, {}×", self.what, self.reporter, self.messages)
    }
}

#[cfg(test)]
mod live_path_tests {
    use super::*;

    fn det(outcome: Outcome, by: Option<Mechanism>, spoke: bool) -> Detection {
        Detection {
            outcome,
            detected_by: by,
            errno: None,
            silence_ms: 900,
            elapsed_ms: 950,
            tcp_info: None,
            note: None,
            closed_by: (outcome == Outcome::Closed).then_some(ClosedBy::Peer),
            how: (outcome == Outcome::Closed).then_some(CloseHow::Fin),
            idled_ms: 950,
            icmp: None,
            spoke_heartbeat: spoke,
            awaiting_answer: false,
        }
    }

    #[test]
    fn a_fin_is_the_peer_closing_not_a_detection() {
        let d = det(Outcome::Closed, Some(Mechanism::Eof), false).on_a_live_path();
        assert_eq!(d.detected_by, None);
        assert!(d.closed_by_peer() && !d.is_death());
    }

    #[test]
    fn a_heartbeat_never_answered_is_not_a_death_but_one_that_stopped_is() {
        let d = det(Outcome::Dead, Some(Mechanism::Heartbeat), false).on_a_live_path();
        assert!(d.closed_by_tcphb() && !d.is_death());
        assert_eq!(d.how, Some(CloseHow::NoHeartbeat));
        assert!(d.note.unwrap().contains("never answered a heartbeat"));
        let d = det(Outcome::Dead, Some(Mechanism::Heartbeat), true).on_a_live_path();
        assert!(d.is_death() && d.closed_by.is_none());
        let d = det(Outcome::Dead, Some(Mechanism::Reset), false).on_a_live_path();
        assert!(d.is_death());
    }

    #[test]
    fn a_reset_that_answers_nothing_is_the_peer_closing() {
        let info = |probes, rtt_us| TcpInfo {
            probes,
            rtt_us,
            ..TcpInfo::default()
        };
        let reset = |idle_ms, tcp_info| Detection {
            idled_ms: idle_ms,
            tcp_info,
            ..det(Outcome::Dead, Some(Mechanism::Reset), false)
        };
        // Quiet for 950 ms, no probe out: the peer aborted it itself.
        let d = reset(950, Some(info(0, 100))).on_a_live_path();
        assert!(d.closed_by_peer() && !d.is_death(), "{d:?}");
        assert_eq!((d.how, d.detected_by), (Some(CloseHow::Rst), None));
        // A keepalive probe unanswered: the RST answers it (a rebooted peer).
        assert!(reset(950, Some(info(1, 100))).on_a_live_path().is_death());
        // A ping sent long ago and still unanswered (retransmitted after a cut): the RST answers it.
        let awaiting = Detection {
            awaiting_answer: true,
            ..reset(950, Some(info(0, 100)))
        };
        assert!(awaiting.on_a_live_path().is_death());
        // Data 150 ms ago (under 200 ms), or within 4 RTT on a slow path: it may answer that.
        assert!(reset(150, Some(info(0, 100))).on_a_live_path().is_death());
        assert!(
            reset(950, Some(info(0, 300_000)))
                .on_a_live_path()
                .is_death()
        );
        // No TCP_INFO: nothing says what was in flight, so it stays a death.
        assert!(reset(950, None).on_a_live_path().is_death());
    }
}

/// Measured: what one connection sent after the cut — keepalive probes, window probes,
/// retransmissions (sampled from TCP_INFO) and heartbeat pings (logged by the watcher as they were
/// queued) — up to its detection or the deadline, beside its predicted band: the data of
/// `compare --svg`'s picture.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// How often TCP_INFO was read, ms. A kernel event's `at_ms` is when a sample saw it: it
    /// happened up to this much earlier (heartbeats are logged at the instant they were queued).
    pub sample_ms: u64,
    /// Sampled from the cut until this long after it (the detection, or the deadline), ms.
    pub sampled_ms: u64,
    /// In time order, at most [`Timeline::MAX_EVENTS`].
    pub events: Vec<TimelineEvent>,
    /// Events past that bound, not kept.
    pub events_dropped: u64,
    /// From the cut to the detection (the run's `latency_ms`); `null` = never.
    pub detected_ms: Option<u64>,
    /// The run's own predicted band (`expected_min_ms`/`expected_max_ms`) on this axis, from the
    /// cut: a band counted from the last packet heard is moved back by the silence already
    /// elapsed at the cut. `null` = never.
    pub expected_min_ms: Option<u64>,
    pub expected_max_ms: Option<u64>,
}

impl Timeline {
    /// Events kept per run at most.
    pub const MAX_EVENTS: usize = 200;
}

/// One packet the connection sent after the cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimelineEvent {
    /// After the cut, ms.
    pub at_ms: u64,
    pub kind: PacketKind,
}

/// What a packet on a timeline was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PacketKind {
    /// A keepalive probe (TCP_INFO's probes rose with nothing unacknowledged on an idle connection).
    KeepaliveProbe,
    /// A zero-window probe (probes rose on a busy connection: data waits for a window to open).
    WindowProbe,
    /// A retransmission of unacknowledged data (TCP_INFO's total_retrans rose).
    Retransmission,
    /// An application heartbeat ping, as the watcher queued it.
    Heartbeat,
}

impl PacketKind {
    /// Every kind, in legend order.
    pub const ALL: [PacketKind; 4] = [
        PacketKind::KeepaliveProbe,
        PacketKind::WindowProbe,
        PacketKind::Retransmission,
        PacketKind::Heartbeat,
    ];

    /// snake_case name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            PacketKind::KeepaliveProbe => "keepalive_probe",
            PacketKind::WindowProbe => "window_probe",
            PacketKind::Retransmission => "retransmission",
            PacketKind::Heartbeat => "heartbeat",
        }
    }
}
