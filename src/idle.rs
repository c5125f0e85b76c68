//! Idle-timeout discovery: how long the path keeps an idle connection before a NAT or firewall on it
//! silently forgets the flow.
//!
//! Several connections are opened in parallel to a peer that answers heartbeat lines (a tcphb listen,
//! or any echo service). Each is left idle for a different time, then asked `PING n`: an answer (`PONG n`
//! or the echoed `PING n`) within the reply timeout says the flow survived that much idleness; silence,
//! a RST or an ICMP error says it did not. The bracket — the longest idle that survived, the shortest
//! that did not — is narrowed by bisection in rounds, each round's connections spread inside the
//! current bracket. A round only starts if it can finish within MAX of the start, so the whole run
//! takes at most MAX plus one reply timeout (and a connect).
//!
//! All connections are tasks on the caller's current-thread runtime, never threads. The planning
//! ([`next_round`], [`Bracket`]) is pure and unit-tested; [`discover`] does the I/O.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use socket2::SockRef;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant as TokioInstant, sleep_until, timeout};

use crate::heartbeat::{self, Decoder, Message};
use crate::units::{Millis, secs2};

/// Connections per round.
pub const PER_ROUND: usize = 8;

/// What one connection showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Answered after the idle period: the flow survived.
    Alive,
    /// No answer within the reply timeout: the flow was dropped without a word.
    Silent,
    /// The ping drew a RST: the middlebox (or the peer) no longer knew the flow.
    Rst,
    /// The ping drew an ICMP error (EHOSTUNREACH, ENETUNREACH…).
    Icmp,
    /// The peer closed the connection during the idle period (its own idle timeout, or a restart).
    Closed,
    /// The peer sent something during the idle period, so the connection was not idle (a tcphb listen
    /// with --heartbeat pings its clients).
    PeerSpoke,
    /// Connecting or the first ping failed.
    Error,
}

impl Verdict {
    /// snake_case name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Alive => "alive",
            Verdict::Silent => "silent",
            Verdict::Rst => "rst",
            Verdict::Icmp => "icmp",
            Verdict::Closed => "closed",
            Verdict::PeerSpoke => "peer_spoke",
            Verdict::Error => "error",
        }
    }

    /// Whether this says the flow was forgotten.
    pub fn is_dead(self) -> bool {
        matches!(self, Verdict::Silent | Verdict::Rst | Verdict::Icmp)
    }
}

/// How the path treats a forgotten flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Behaviour {
    /// Packets of the forgotten flow are dropped silently: only timers can notice.
    SilentDrop,
    /// The middlebox answers RST: the next write fails at once.
    Rst,
    /// The middlebox answers with an ICMP error.
    Icmp,
}

impl Behaviour {
    /// In words.
    pub fn describe(self) -> &'static str {
        match self {
            Behaviour::SilentDrop => "drops the forgotten flow silently",
            Behaviour::Rst => "answers the forgotten flow with RST",
            Behaviour::Icmp => "answers the forgotten flow with an ICMP error",
        }
    }
}

/// The evidence from one connection.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub round: u32,
    /// Planned idle time, ms.
    pub idle_ms: u64,
    /// Measured idle time: from the answer to the first ping to the second ping, ms.
    pub idled_ms: u64,
    pub verdict: Verdict,
    /// Measured: how long the answer took, ms (alive only).
    pub reply_ms: Option<f64>,
    /// The socket error, if one ended it.
    pub errno: Option<String>,
}

/// What discovery found.
#[derive(Debug, Clone, Serialize)]
pub struct IdleTimeout {
    /// The longest idle time tried (`--idle-timeout MAX`), ms.
    pub max_ms: u64,
    /// Longest idle time a connection survived (0 if none did), ms.
    pub low_ms: u64,
    /// Shortest idle time after which a connection was forgotten, ms; `null` if none was within MAX.
    pub high_ms: Option<u64>,
    /// How the path treats a forgotten flow; `null` if none was forgotten.
    pub behaviour: Option<Behaviour>,
    /// How long each ping waited for its answer, ms.
    pub reply_timeout_ms: u64,
    pub rounds: u32,
    /// Measured: the whole run, ms.
    pub elapsed_ms: u64,
    /// One entry per connection.
    pub connections: Vec<Evidence>,
    /// Anything odd: connections that were not idle, answers that contradict each other.
    pub notes: Vec<String>,
    /// Interrupted: the bracket as far as the rounds got.
    pub partial: bool,
}

/// The current bracket: the idle timeout is in (`low`, `high`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bracket {
    pub low: Duration,
    pub high: Option<Duration>,
}

impl Bracket {
    /// Narrow the bracket with one connection's verdict after `idle`. Verdicts that say nothing about
    /// the path (closed by the peer, not idle, errors) leave it as it is.
    pub fn update(&mut self, idle: Duration, verdict: Verdict) {
        if verdict.is_dead() {
            if self.high.is_none_or(|h| idle < h) {
                self.high = Some(idle);
            }
        } else if verdict == Verdict::Alive && idle > self.low && self.high.is_none_or(|h| idle < h)
        {
            self.low = idle;
        }
    }
}

/// The idle times to try next, given the bracket and the time already spent. Round 1 (no expiry seen
/// yet, nothing tried) spreads `per_round` times over (0, max]; later rounds spread them inside the
/// bracket, dropping any that could not be tested before `max` from the start. Empty when done: the
/// bracket is no wider than `resolution`, nothing expired within `max`, or no time is left.
pub fn next_round(
    b: &Bracket,
    first: bool,
    max: Duration,
    elapsed: Duration,
    per_round: usize,
    resolution: Duration,
) -> Vec<Duration> {
    let per_round = per_round.max(1) as u32;
    let mut points: Vec<Duration> = match (first, b.high) {
        (true, _) => (1..=per_round).map(|i| max * i / per_round).collect(),
        (false, None) => return Vec::new(),
        (false, Some(h)) => {
            if h.saturating_sub(b.low) <= resolution {
                return Vec::new();
            }
            let w = h - b.low;
            (1..per_round).map(|i| b.low + w * i / per_round).collect()
        }
    };
    // Round 1 defines the search up to MAX; later rounds must fit in what is left of it.
    let left = if first {
        max
    } else {
        max.saturating_sub(elapsed)
    };
    for p in &mut points {
        *p = Duration::from_millis(p.ms());
    }
    points.retain(|p| !p.is_zero() && *p <= left && *p > b.low && b.high.is_none_or(|h| *p < h));
    points.dedup();
    points
}

/// Parse `--idle-timeout MAX`: more than 0, at most a day.
pub fn parse_max(s: &str) -> Result<Duration, crate::strategy::SpecError> {
    let d = crate::strategy::parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(86_400) {
        return Err(crate::strategy::SpecError(format!(
            "--idle-timeout {s} is out of range: give the longest idle time to try, between 100ms and 24h (e.g. 15m)"
        )));
    }
    Ok(d)
}

/// The slowest answer still counted as an answer: 10 round trips, at least 1 s.
pub fn reply_timeout(rtt: Duration) -> Duration {
    (rtt * 10).max(Duration::from_secs(1))
}

/// Why discovery could not say anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoEvidence(pub String);

/// Find the path's idle timeout up to `max`, against `peer`. `progress` receives one line per round
/// and per verdict. Fails when no connection told anything (the peer does not answer `PING`, or
/// cannot be reached). When `stop` completes first, the search ends with what it has: the bracket so
/// far, marked `partial`.
pub async fn discover(
    peer: SocketAddr,
    max: Duration,
    rtt: Duration,
    connect_timeout: Duration,
    progress: &dyn Fn(String),
    stop: impl std::future::Future<Output = ()>,
) -> Result<IdleTimeout, NoEvidence> {
    tokio::pin!(stop);
    let mut partial = false;
    let start = Instant::now();
    let reply = reply_timeout(rtt);
    let resolution = (rtt * 4).max(Duration::from_millis(100));
    let mut bracket = Bracket::default();
    let mut evidence = Vec::new();
    let mut notes = Vec::new();
    let mut round = 0u32;
    'rounds: loop {
        let points = next_round(
            &bracket,
            round == 0,
            max,
            start.elapsed(),
            PER_ROUND,
            resolution,
        );
        if points.is_empty() {
            break;
        }
        round += 1;
        progress(format!(
            "tcphb: round {round}: {} connections idle {} … {}",
            points.len(),
            secs2(points[0]),
            secs2(points[points.len() - 1])
        ));
        let mut set = JoinSet::new();
        let mut handles = Vec::new();
        for (i, &idle) in points.iter().enumerate() {
            let h = set.spawn(test_one(peer, idle, reply, connect_timeout, i as u64));
            handles.push((idle, h));
        }
        loop {
            let joined = tokio::select! {
                j = set.join_next() => match j {
                    Some(j) => j,
                    None => break,
                },
                // The connections still idle end with the JoinSet.
                _ = &mut stop => {
                    partial = true;
                    break 'rounds;
                }
            };
            // A task aborted because a shorter idle already expired: nothing to learn from it.
            let Ok((idle, e)) = joined else { continue };
            progress(format!(
                "tcphb:   idle {}: {}",
                secs2(idle),
                match e.verdict {
                    Verdict::Alive =>
                        format!("alive (answered in {:.1} ms)", e.reply_ms.unwrap_or(0.0)),
                    Verdict::Silent => format!("forgotten (no answer within {})", secs2(reply)),
                    v => format!("{v:?}").to_lowercase(),
                }
            ));
            bracket.update(idle, e.verdict);
            if e.verdict.is_dead() {
                for (d, h) in &handles {
                    if *d > idle {
                        h.abort();
                    }
                }
            }
            evidence.push(Evidence { round, ..e });
        }
    }
    evidence.sort_by_key(|e| (e.idle_ms, e.round));
    if !partial
        && !evidence
            .iter()
            .any(|e| e.verdict == Verdict::Alive || e.verdict.is_dead())
    {
        let why = evidence
            .iter()
            .find_map(|e| e.errno.clone())
            .unwrap_or_else(|| "no answer to the first PING".to_string());
        return Err(NoEvidence(format!(
            "no connection to {peer} answered `PING n` ({why}): --idle-timeout needs a tcphb listen or an echo service there"
        )));
    }
    // Contradictions: a longer idle that survived a shorter one that did not.
    if let Some(h) = bracket.high
        && let Some(a) = evidence
            .iter()
            .find(|e| e.verdict == Verdict::Alive && Duration::from_millis(e.idle_ms) > h)
    {
        notes.push(format!(
            "a connection idle {} survived although one idle {} did not: the path's timeout is not sharp (several middleboxes, or entries expired in batches)",
            secs2(Duration::from_millis(a.idle_ms)),
            secs2(h)
        ));
    }
    let spoke = evidence
        .iter()
        .filter(|e| e.verdict == Verdict::PeerSpoke)
        .count();
    if spoke > 0 {
        notes.push(format!(
            "{spoke} connections were not idle: the peer sent data (a tcphb listen with --heartbeat?); run it without, or use an echo service"
        ));
    }
    let closed: Vec<_> = evidence
        .iter()
        .filter(|e| e.verdict == Verdict::Closed)
        .collect();
    if let Some(first) = closed.iter().map(|e| e.idled_ms).min() {
        notes.push(format!(
            "the peer itself closed {} idle connections, the first after {}: it has an idle timeout of its own",
            closed.len(),
            secs2(Duration::from_millis(first))
        ));
    }
    let dead: Vec<_> = evidence.iter().filter(|e| e.verdict.is_dead()).collect();
    let behaviour = if dead.iter().any(|e| e.verdict == Verdict::Rst) {
        Some(Behaviour::Rst)
    } else if dead.iter().any(|e| e.verdict == Verdict::Icmp) {
        Some(Behaviour::Icmp)
    } else if dead.is_empty() {
        None
    } else {
        Some(Behaviour::SilentDrop)
    };
    Ok(IdleTimeout {
        max_ms: max.ms(),
        low_ms: bracket.low.ms(),
        high_ms: bracket.high.map(|h| h.ms()),
        behaviour,
        reply_timeout_ms: reply.ms(),
        rounds: round,
        elapsed_ms: start.elapsed().ms(),
        connections: evidence,
        notes,
        partial,
    })
}

/// One connection: connect, ping once (proves the peer answers and marks the start of the idle
/// period), stay idle for `idle`, ping again and wait up to `reply` for the answer.
async fn test_one(
    peer: SocketAddr,
    idle: Duration,
    reply: Duration,
    connect_timeout: Duration,
    n: u64,
) -> (Duration, Evidence) {
    let mut e = Evidence {
        round: 0,
        idle_ms: idle.ms(),
        idled_ms: 0,
        verdict: Verdict::Error,
        reply_ms: None,
        errno: None,
    };
    let errno = crate::sys::errno_text;
    let mut stream = match timeout(connect_timeout, crate::sockets::connect_plain(peer)).await {
        Ok(Ok(s)) => s,
        Ok(Err(err)) => {
            e.errno = Some(errno(&err));
            return (idle, e);
        }
        Err(_) => {
            e.errno = Some("ETIMEDOUT".into());
            return (idle, e);
        }
    };
    let _ = stream.set_nodelay(true);
    let mut decoder = Decoder::new();
    let first = 2 * n;
    // The first answer may take longer than later ones (a slow accept), so it gets the connect timeout.
    if let Err((_, err)) = ping(&mut stream, &mut decoder, first, reply.max(connect_timeout)).await
    {
        e.errno = err.map(|x| errno(&x));
        return (idle, e);
    }
    let quiet_from = Instant::now();
    // Idle: nothing is sent; anything the peer sends or a close means this connection is not evidence.
    let wake = TokioInstant::from_std(quiet_from + idle);
    loop {
        tokio::select! {
            _ = sleep_until(wake) => break,
            r = stream.readable() => {
                if r.is_err() { break; }
                let mut buf = [0u8; 256];
                match stream.try_read(&mut buf) {
                    Ok(0) => {
                        e.verdict = Verdict::Closed;
                        e.idled_ms = quiet_from.elapsed().ms();
                        return (idle, e);
                    }
                    Ok(_) => {
                        e.verdict = Verdict::PeerSpoke;
                        e.idled_ms = quiet_from.elapsed().ms();
                        return (idle, e);
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    // A socket error while idle: the ping below reports it.
                    Err(_) => break,
                }
            }
        }
    }
    e.idled_ms = quiet_from.elapsed().ms();
    let sent = Instant::now();
    match ping(&mut stream, &mut decoder, first + 1, reply).await {
        Ok(()) => {
            e.verdict = Verdict::Alive;
            e.reply_ms = Some((sent.elapsed().as_secs_f64() * 1e6).round() / 1000.0);
        }
        Err((verdict, err)) => {
            e.verdict = verdict;
            e.errno = err.map(|x| errno(&x));
            // The flow is gone: close without a FIN that would be retransmitted for minutes.
            let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
    }
    (idle, e)
}

/// Send `PING seq` and wait for `PONG seq` or the echoed `PING seq`. On failure, the verdict and the
/// socket error if any.
async fn ping(
    stream: &mut TcpStream,
    decoder: &mut Decoder,
    seq: u64,
    within: Duration,
) -> Result<(), (Verdict, Option<io::Error>)> {
    let classify = |err: io::Error| {
        let v = match err.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Verdict::Rst,
            io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::NetworkDown => Verdict::Icmp,
            io::ErrorKind::TimedOut => Verdict::Silent,
            _ => Verdict::Error,
        };
        (v, Some(err))
    };
    stream
        .write_all(&heartbeat::ping(seq))
        .await
        .map_err(classify)?;
    let deadline = TokioInstant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            _ = sleep_until(deadline) => return Err((Verdict::Silent, None)),
            r = stream.readable() => {
                r.map_err(classify)?;
                match stream.try_read(&mut buf) {
                    Ok(0) => return Err((Verdict::Closed, None)),
                    Ok(n) => {
                        let mut answered = false;
                        let fed = decoder.feed(&buf[..n], |m| {
                            if matches!(m, Message::Pong(s) | Message::Ping(s) if s == seq) {
                                answered = true;
                            }
                        });
                        if answered {
                            return Ok(());
                        }
                        if fed.is_err() {
                            return Err((Verdict::Error, None));
                        }
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(err) => return Err(classify(err)),
                }
            }
        }
    }
}

/// Whether `peer` answers a heartbeat: `PING 1` on a connection of its own, answered by `PONG 1` or
/// an echo within the reply timeout for `rtt` ([`reply_timeout`]). Any failure (refused, silent,
/// closed, garbage) is a no.
pub async fn answers_ping(peer: SocketAddr, rtt: Duration, connect_timeout: Duration) -> bool {
    let Ok(Ok(mut stream)) = timeout(connect_timeout, crate::sockets::connect_plain(peer)).await
    else {
        return false;
    };
    let mut decoder = Decoder::new();
    let ok = ping(&mut stream, &mut decoder, 1, reply_timeout(rtt))
        .await
        .is_ok();
    let _ = stream.shutdown().await;
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: f64) -> Duration {
        Duration::from_secs_f64(x)
    }

    #[test]
    fn first_round_spreads_over_max_then_bisects_inside_the_bracket() {
        let b = Bracket::default();
        let r1 = next_round(&b, true, s(8.0), Duration::ZERO, 8, s(0.1));
        assert_eq!(r1, (1..=8).map(|i| s(i as f64)).collect::<Vec<_>>());
        let mut b = Bracket::default();
        for (idle, v) in [
            (1.0, Verdict::Alive),
            (2.0, Verdict::Alive),
            (3.0, Verdict::Alive),
            (4.0, Verdict::Silent),
            (5.0, Verdict::Silent),
            (6.0, Verdict::Closed),
        ] {
            b.update(s(idle), v);
        }
        assert_eq!(
            b,
            Bracket {
                low: s(3.0),
                high: Some(s(4.0))
            }
        );
        let r2 = next_round(&b, false, s(10.0), s(5.0), 8, s(0.1));
        assert_eq!(r2.len(), 7);
        assert!(r2.iter().all(|p| *p > s(3.0) && *p < s(4.0)), "{r2:?}");
        assert_eq!(r2[0], Duration::from_millis(3125));
    }

    #[test]
    fn stops_when_narrow_enough_out_of_time_or_nothing_expired() {
        let narrow = Bracket {
            low: s(3.0),
            high: Some(s(3.05)),
        };
        assert!(next_round(&narrow, false, s(10.0), s(1.0), 8, s(0.1)).is_empty());
        // Only the points that fit in the time left: 2 s left, bracket (1, 3].
        let b = Bracket {
            low: s(1.0),
            high: Some(s(3.0)),
        };
        let r = next_round(&b, false, s(10.0), s(8.0), 4, s(0.1));
        assert_eq!(r, vec![s(1.5), s(2.0)]);
        assert!(next_round(&b, false, s(10.0), s(9.5), 4, s(0.1)).is_empty());
        // Round 1 found nothing: the timeout is above MAX, done.
        let none = Bracket {
            low: s(8.0),
            high: None,
        };
        assert!(next_round(&none, false, s(8.0), s(9.0), 8, s(0.1)).is_empty());
    }

    #[test]
    fn bracket_ignores_answers_that_say_nothing_and_keeps_the_tightest_ends() {
        let mut b = Bracket::default();
        b.update(s(4.0), Verdict::Rst);
        b.update(s(5.0), Verdict::Alive); // contradicts: not a lower bound beyond high
        b.update(s(2.0), Verdict::PeerSpoke);
        b.update(s(2.5), Verdict::Error);
        b.update(s(3.5), Verdict::Icmp);
        b.update(s(1.0), Verdict::Alive);
        assert_eq!(
            b,
            Bracket {
                low: s(1.0),
                high: Some(s(3.5))
            }
        );
        assert_eq!(reply_timeout(Duration::from_millis(3)), s(1.0));
        assert_eq!(reply_timeout(Duration::from_millis(300)), s(3.0));
    }

    /// Against a real echo server on loopback (no middlebox: nothing expires), every connection
    /// survives and the run stays within MAX plus the reply timeout.
    #[test]
    fn loopback_echo_never_forgets() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { return };
                std::thread::spawn(move || {
                    let mut b = [0u8; 512];
                    while let Ok(n) = c.read(&mut b) {
                        if n == 0 || c.write_all(&b[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let start = Instant::now();
        let r = rt
            .block_on(discover(
                addr,
                s(0.8),
                Duration::from_micros(50),
                s(2.0),
                &|_| {},
                std::future::pending(),
            ))
            .unwrap();
        assert!(start.elapsed() < s(0.8) + s(1.0), "{:?}", start.elapsed());
        assert_eq!((r.high_ms, r.behaviour, r.rounds), (None, None, 1), "{r:?}");
        assert_eq!(r.low_ms, 800);
        assert_eq!(r.connections.len(), PER_ROUND);
        assert!(
            r.connections.iter().all(|e| e.verdict == Verdict::Alive),
            "{r:?}"
        );
        assert!(
            r.connections.iter().all(|e| e.idled_ms >= e.idle_ms),
            "{r:?}"
        );
    }
}
