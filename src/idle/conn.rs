//! One connection of the idle-timeout search: open it, hold it idle (watching for the server's own
//! close), and when told an idle time, send the test packet at that idle and say what answered — a
//! ping — tcphb's `PING n` line, or with `--ping PROTO` the service's own (the ping method) — or the
//! kernel's keepalive probe (the keepalive method, no data).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant as TokioInstant, sleep, sleep_until, timeout};

use super::{Answer, Evidence, Method, Verdict};
use crate::heartbeat::{self, Decoder, Message};
use crate::ping::{Codec, PingError, Pinger, Setup};
use crate::strategy::Protocol;
use crate::units::Millis;

/// What a connection tells the search.
#[derive(Debug)]
pub(super) enum Msg {
    /// Open and idle since `born` (the last packet heard): it may be told an idle time now. Sent
    /// again when a greeting from the server restarts the idle clock.
    Ready { id: usize, born: Instant },
    /// Tested, or ended while idle; `planned` is the idle it was told, if any.
    Done {
        id: usize,
        planned: Option<Duration>,
        evidence: Evidence,
    },
}

/// How one connection is opened and tested.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub peer: SocketAddr,
    pub method: Method,
    /// The ping method's protocol (`line` unless `--ping PROTO`; never TLS).
    pub ping: std::sync::Arc<Setup>,
    /// Ping: how long the PING waits for its answer. Keepalive: how long after the probe the
    /// kernel gives up (TCP_KEEPINTVL with one probe), whole seconds.
    pub answer_within: Duration,
    pub connect_timeout: Duration,
}

/// How often the keepalive method reads TCP_INFO for the ACK of its probe (an ACK without data
/// wakes nobody).
const ACK_POLL: Duration = Duration::from_millis(5);

/// Run one connection: open it (after `open_at`, if given), report it ready, hold it idle until
/// `go` says which idle to test (dropped: close without testing), test, report. The sequence
/// number `n` keeps PING lines of different connections apart.
pub(super) async fn run(
    plan: Plan,
    id: usize,
    open_at: Option<TokioInstant>,
    go: oneshot::Receiver<Duration>,
    tx: mpsc::UnboundedSender<Msg>,
) {
    if let Some(at) = open_at {
        sleep_until(at).await;
    }
    let (planned, evidence) = match held(plan, id, go, &tx).await {
        Some(x) => x,
        None => return,
    };
    let _ = tx.send(Msg::Done {
        id,
        planned,
        evidence,
    });
}

fn blank() -> Evidence {
    Evidence {
        round: 0,
        planned_idle_ms: 0,
        idled_ms: 0,
        verdict: Verdict::Error,
        answer: Answer::None,
        reply_ms: None,
        errno: None,
    }
}

async fn held(
    plan: Plan,
    id: usize,
    mut go: oneshot::Receiver<Duration>,
    tx: &mpsc::UnboundedSender<Msg>,
) -> Option<(Option<Duration>, Evidence)> {
    let errno = crate::sys::errno_text;
    // Ended before it could be held idle: an error, with the socket's error if one came.
    let failed = |errno: Option<String>| Some((None, Evidence { errno, ..blank() }));
    let mut stream = match timeout(
        plan.connect_timeout,
        crate::sockets::connect_plain(plan.peer),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(err)) => return failed(Some(errno(&err))),
        Err(_) => return failed(Some("ETIMEDOUT".into())),
    };
    let _ = stream.set_nodelay(true);
    let mut talk = Talk::new(&plan.ping);
    if let Err(err) = talk.hello(&mut stream).await {
        return failed(Some(errno(&err)));
    }
    let seq = 2 * id as u64;
    let mut born = match plan.method {
        Method::Ping => {
            // The first answer may take longer than later ones (a slow accept): the connect timeout.
            let within = plan.answer_within.max(plan.connect_timeout);
            if let Err((_, err)) = ping(&mut stream, &mut talk, seq, within).await {
                return failed(err.map(|x| errno(&x)));
            }
            Instant::now()
        }
        Method::Keepalive => {
            if let Err(err) = crate::sys::keepalive_hold(&stream, plan.answer_within) {
                return failed(Some(err.to_string()));
            }
            // Idle since the last packet heard (the SYN-ACK, or a banner the server sent): the
            // kernel's keepalive clock and the middlebox's both start there.
            heard_since(&stream)
        }
    };
    let opened = Instant::now();
    let mut e = blank();
    let _ = tx.send(Msg::Ready { id, born });
    // Idle until told what to test, then until that idle time; anything the peer sends or a close
    // ends it as evidence.
    let mut idle: Option<Duration> = None;
    loop {
        let due = idle.map_or(TokioInstant::now() + Duration::from_secs(86_400), |x| {
            TokioInstant::from_std(born + x)
        });
        tokio::select! {
            x = &mut go, if idle.is_none() => match x {
                Ok(x) => {
                    idle = Some(x);
                    e.planned_idle_ms = x.ms();
                }
                Err(_) => {
                    // Not needed any more (older than the timeout already found, or the search
                    // is over): the flow may be gone, so no FIN to retransmit for minutes.
                    let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                    return None;
                }
            },
            _ = sleep_until(due), if idle.is_some() => break,
            ended = while_idle(&stream) => {
                let (verdict, answer, err) = ended;
                // A greeting (SMTP, SSH, MySQL send one on connect) does not keep a connection
                // busy: the idle clock starts again after it. Data later than that is a server
                // speaking on an idle connection: not idle.
                if plan.method == Method::Keepalive
                    && answer == Answer::DataFromServer
                    && opened.elapsed() < plan.answer_within
                {
                    born = heard_since(&stream);
                    let _ = tx.send(Msg::Ready { id, born });
                    continue;
                }
                e.verdict = verdict;
                e.answer = answer;
                e.errno = err;
                e.idled_ms = born.elapsed().ms();
                return Some((idle, e));
            }
        }
    }
    e.idled_ms = born.elapsed().ms();
    match plan.method {
        Method::Ping => {
            let sent = Instant::now();
            match ping(&mut stream, &mut talk, seq + 1, plan.answer_within).await {
                Ok(()) => {
                    e.verdict = Verdict::Alive;
                    e.answer = Answer::Pong;
                    e.reply_ms = Some(frac_ms(sent.elapsed()));
                }
                Err((verdict, err)) => {
                    e.verdict = verdict;
                    e.answer = Answer::of(verdict);
                    e.errno = err.map(|x| errno(&x));
                }
            }
        }
        Method::Keepalive => {
            let (verdict, answer, reply, err) = keepalive_test(&stream, plan.answer_within).await;
            e.verdict = verdict;
            e.answer = answer;
            e.reply_ms = reply;
            e.errno = err;
        }
    }
    if e.verdict != Verdict::Alive {
        // The flow is gone: close without a FIN that would be retransmitted for minutes.
        let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
    Some((idle, e))
}

/// The instant the peer was last heard (TCP_INFO), now where unknown.
fn heard_since(stream: &TcpStream) -> Instant {
    let heard = crate::sys::tcp_info(stream).map_or(0, |i| i.silence_ms());
    let now = Instant::now();
    now.checked_sub(Duration::from_millis(heard)).unwrap_or(now)
}

fn frac_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1000.0
}

/// Completes when something happens on an idle connection: the server closed it (FIN, or RST — its
/// own idle timeout or a restart), or sent data (so it was not idle).
async fn while_idle(stream: &TcpStream) -> (Verdict, Answer, Option<String>) {
    let mut buf = [0u8; 4096];
    loop {
        if stream.readable().await.is_err() {
            return (Verdict::Error, Answer::None, None);
        }
        match stream.try_read(&mut buf) {
            Ok(0) => return (Verdict::Closed, Answer::FinByServer, None),
            Ok(_) => return (Verdict::PeerSpoke, Answer::DataFromServer, None),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            // Nothing was sent on the connection: a reset now is the server's own doing.
            Err(err) if err.kind() == io::ErrorKind::ConnectionReset => {
                return (
                    Verdict::Closed,
                    Answer::RstByServer,
                    Some(crate::sys::errno_text(&err)),
                );
            }
            Err(err) => {
                return (
                    Verdict::Error,
                    Answer::None,
                    Some(crate::sys::errno_text(&err)),
                );
            }
        }
    }
}

/// Send one keepalive probe and wait for what answers: an ACK (TCP_INFO's last ACK moves to after
/// the probe), a RST (ECONNRESET), an ICMP error, or nothing — the kernel then gives up after
/// `interval` with ETIMEDOUT (one probe). Data or a FIN arriving instead say the server spoke or
/// closed. Returns the verdict, the answer, the ACK's delay (ms) and the errno.
async fn keepalive_test(
    stream: &TcpStream,
    interval: Duration,
) -> (Verdict, Answer, Option<f64>, Option<String>) {
    let heard_before = crate::sys::tcp_info(stream).map_or(0, |i| i.silence_ms());
    if let Err(err) = crate::sys::keepalive_probe_now(stream) {
        return (
            Verdict::Error,
            Answer::None,
            None,
            Some(crate::sys::errno_text(&err)),
        );
    }
    let sent = Instant::now();
    // The kernel's own verdict comes `interval` after the probe; past that (plus timer slack), the
    // silence is taken as it is.
    let give_up = TokioInstant::from_std(sent + interval + Duration::from_secs(1));
    let mut buf = [0u8; 256];
    loop {
        tokio::select! {
            _ = sleep(ACK_POLL) => {
                if let Some(i) = crate::sys::tcp_info(stream) {
                    let since = sent.elapsed().ms();
                    let last_ack = u64::from(i.last_ack_recv_ms);
                    // Without an answer the last ACK ages with the clock (heard_before + since); an
                    // answer brings it under `since`. heard_before is at least 1 s: half of it is a
                    // margin no jiffy rounding crosses.
                    if last_ack + heard_before / 2 < heard_before + since {
                        let delay = sent.elapsed().saturating_sub(Duration::from_millis(last_ack));
                        return (Verdict::Alive, Answer::Ack, Some(frac_ms(delay)), None);
                    }
                }
                if TokioInstant::now() >= give_up {
                    return (Verdict::Silent, Answer::Silence, None, None);
                }
            }
            r = stream.readable() => {
                if r.is_err() {
                    return (Verdict::Error, Answer::None, None, None);
                }
                match stream.try_read(&mut buf) {
                    Ok(0) => return (Verdict::Closed, Answer::FinByServer, None, None),
                    Ok(_) => return (Verdict::PeerSpoke, Answer::DataFromServer, None, None),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(err) => {
                        let v = classify(err.kind());
                        return (v, Answer::of(v), None, Some(crate::sys::errno_text(&err)));
                    }
                }
            }
        }
    }
}

/// What a socket error after the test packet says about the flow.
fn classify(kind: io::ErrorKind) -> Verdict {
    match kind {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => Verdict::Rst,
        io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::NetworkDown => Verdict::Icmp,
        io::ErrorKind::TimedOut => Verdict::Silent,
        _ => Verdict::Error,
    }
}

/// The ping method's conversation on one connection: tcphb's line protocol (a `PING n` answered by
/// `PONG n` or its echo), or a service's own protocol (`--ping PROTO`), whose codec says when the
/// peer answered.
pub(super) enum Talk {
    Line(Decoder),
    Service(Box<Pinger>),
}

impl Talk {
    pub(super) fn new(setup: &Setup) -> Talk {
        match setup.protocol {
            Protocol::Line => Talk::Line(Decoder::new()),
            p => Talk::Service(Box::new(Pinger::new(p, &setup.options))),
        }
    }

    /// What the protocol sends as the connection opens (an HTTP/2 preface, a WebSocket upgrade, an
    /// MQTT CONNECT; nothing for the others).
    async fn hello(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        if let Talk::Service(p) = self {
            let mut out = Vec::new();
            p.hello(&mut out);
            stream.write_all(&out).await?;
        }
        Ok(())
    }
}

/// Send ping `seq` and wait for its answer: `PONG seq` or the echoed `PING seq` in the line
/// protocol, a reply of the protocol otherwise (a ping a protocol cannot send before its handshake
/// is sent once the handshake is through). On failure, the verdict and the socket error if any.
pub(super) async fn ping(
    stream: &mut TcpStream,
    talk: &mut Talk,
    seq: u64,
    within: Duration,
) -> Result<(), (Verdict, Option<io::Error>)> {
    let fail = |err: io::Error| (classify(err.kind()), Some(err));
    let mut out = Vec::new();
    let mut sent = match talk {
        Talk::Line(_) => {
            out.extend_from_slice(&heartbeat::ping(seq));
            true
        }
        Talk::Service(p) => {
            p.ping(seq, &mut out);
            !out.is_empty()
        }
    };
    stream.write_all(&out).await.map_err(fail)?;
    let deadline = TokioInstant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            _ = sleep_until(deadline) => return Err((Verdict::Silent, None)),
            r = stream.readable() => {
                r.map_err(fail)?;
                match stream.try_read(&mut buf) {
                    Ok(0) => return Err((Verdict::Closed, None)),
                    Ok(n) => match talk {
                        Talk::Line(decoder) => {
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
                        Talk::Service(p) => {
                            let mut answers = Vec::new();
                            let heard = p.feed(&buf[..n], &mut answers);
                            if !sent {
                                p.ping(seq, &mut answers);
                                sent = !answers.is_empty();
                            }
                            stream.write_all(&answers).await.map_err(fail)?;
                            match heard {
                                Ok(h) if sent && h.replies > 0 => return Ok(()),
                                Ok(_) => {}
                                // The peer refused in its protocol: alive, but this
                                // connection is over — as if it had closed.
                                Err(PingError::Refused(_)) => return Err((Verdict::Closed, None)),
                                Err(PingError::Protocol(_)) => return Err((Verdict::Error, None)),
                            }
                        }
                    },
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                    Err(err) => return Err(fail(err)),
                }
            }
        }
    }
}
