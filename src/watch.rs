//! The watcher: drives one connection on the shared event loop until its peer is declared dead, it
//! closes, or the caller stops watching, and turns the ending into a Detection.
//!
//! Every connection of a run is a task on one current-thread tokio runtime, never a thread of its own.
//! The task keeps no read buffer of its own between wake-ups (reads go through one per-thread buffer),
//! so an idle watched connection costs a few hundred bytes of user-space memory.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant as TokioInstant, sleep_until};

use crate::detection::{CloseHow, ClosedBy, Detection, Mechanism, Outcome};
use crate::heartbeat;
use crate::ping::{Codec, Heard, PingError, Pinger, Setup};
use crate::predict::timer_death;
use crate::scenario::{BUSY_TICK, Load};
use crate::settings::{Effective, KernelTimers};
use crate::sys;
use crate::tcpinfo::TcpInfo;
use crate::units::Millis;

/// Bytes written per busy tick: enough to fill a frozen peer's receive window in well under a second,
/// little enough not to burn a core against a healthy peer on loopback (≈ 1.6 MB/s).
const BUSY_BLOCK: usize = heartbeat::DATA_BLOCK;
/// Most bytes queued for a peer that does not read (beyond what its kernel buffers took) before it is
/// dropped: room for one busy block and the heartbeat replies behind it.
const MAX_PENDING: usize = BUSY_BLOCK + 16 * 1024;
/// A peer that sends this many lines, none of them the protocol's, is not a heartbeat peer.
const MAX_UNKNOWN_WITHOUT_VALID: u64 = 64;
/// Shared read buffer size.
const READ_BUF: usize = 16 * 1024;

thread_local! {
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUF]);
}

/// What to do on a watched connection.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The settings in force (heartbeat taken from here too).
    pub effective: Effective,
    /// Idle or busy.
    pub load: Load,
    /// Kernel timers, to tell which timer gave up.
    pub kernel: KernelTimers,
    /// The protocol the heartbeat speaks, and TLS around it (`line` in the clear by default).
    pub ping: std::sync::Arc<Setup>,
}

/// The `line` protocol in the clear, shared by every watch that speaks it: `listen`'s 10,000
/// connections hold one pointer to it, not a copy each.
pub fn line() -> std::sync::Arc<Setup> {
    static LINE: std::sync::LazyLock<std::sync::Arc<Setup>> =
        std::sync::LazyLock::new(|| std::sync::Arc::new(Setup::default()));
    std::sync::Arc::clone(&LINE)
}

/// Told of each soft error: the path reported a problem (an ICMP raised through IP_RECVERR) while
/// the kernel still holds the connection open.
pub type OnSoftError<'a> = &'a (dyn Fn(&io::Error) + Sync);

/// What a caller watches of a connection besides its ending. Held by reference, so a watched
/// connection pays one pointer for it whatever it holds (`listen`'s 10,000 connections share
/// [`Observe::NONE`]).
#[derive(Clone, Copy, Default)]
pub struct Observe<'a> {
    /// Where soft errors go; without it every socket error ends the watch.
    pub soft: Option<OnSoftError<'a>>,
    /// Where each heartbeat ping's send instant goes (`compare`'s timeline).
    pub pings: Option<&'a PingLog>,
    /// The peer is not tcphb (`compare --server` runs the operator's server): whatever it sends is
    /// read and dropped, any line of it proves it alive, and none breaks the protocol.
    pub foreign_peer: bool,
    /// Notified when the peer first speaks the heartbeat's protocol ([`answers`]).
    pub spoke: Option<&'a tokio::sync::Notify>,
}

impl Observe<'static> {
    /// Nothing observed.
    pub const NONE: Observe<'static> = Observe {
        soft: None,
        pings: None,
        foreign_peer: false,
        spoke: None,
    };
}

/// The instants a connection's heartbeat pings were queued, for a reader that drains it as it goes
/// (`compare`'s timeline sampler). Bounded: past [`PingLog::CAPACITY`] undrained instants the oldest
/// is forgotten, so an undrained log (before the cut, nobody reads it) costs a fixed few hundred
/// bytes.
#[derive(Debug, Default)]
pub struct PingLog {
    sent: std::sync::Mutex<std::collections::VecDeque<Instant>>,
    /// When the next ping is due (`compare` reads it at the cut: the phase of the heartbeat).
    next: std::sync::Mutex<Option<Instant>>,
    /// When the peer was last heard in the heartbeat's protocol: the heartbeat counts its misses
    /// from here (`compare` reads it once the run ends: the last reply before the cut).
    heard: std::sync::Mutex<Option<Instant>>,
}

impl PingLog {
    /// Undrained instants kept at most.
    pub const CAPACITY: usize = 32;

    fn push(&self, at: Instant) {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        if sent.len() == Self::CAPACITY {
            sent.pop_front();
        }
        sent.push_back(at);
    }

    fn plan(&self, at: Instant) {
        *self.next.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    fn hear(&self, at: Instant) {
        *self.heard.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    /// When the peer was last heard in the heartbeat's protocol.
    pub fn heard(&self) -> Option<Instant> {
        *self.heard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the next ping is due.
    pub fn next(&self) -> Option<Instant> {
        *self.next.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest instant logged and not yet drained.
    pub fn last(&self) -> Option<Instant> {
        let sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.back().copied()
    }

    /// The instants logged since the last drain, oldest first.
    pub fn drain(&self) -> Vec<Instant> {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.drain(..).collect()
    }
}

/// Per-connection state kept across wake-ups.
struct Conn<'a> {
    opened: Instant,
    last_heard: Instant,
    /// The last byte read or written: a peer's idle timeout counts from here.
    last_io: Instant,
    /// The heartbeat protocol's codec.
    pinger: Pinger,
    /// TLS between the socket and the codec (`--tls`): boxed, as most connections have none.
    tls: Option<Box<rustls::ClientConnection>>,
    /// The TLS handshake is done (and ALPN checked).
    tls_ready: bool,
    /// Wire bytes queued for the socket (TLS records when TLS is on).
    pending: Vec<u8>,
    next_seq: u64,
    /// A ping was sent and nothing has been heard since: data is in flight.
    ping_outstanding: bool,
    unknown_lines: u64,
    /// At least one message of the heartbeat's protocol was received (a PING, PONG or DATA line, a
    /// +PONG, a status line…).
    spoke_protocol: bool,
    /// Soft errors and ping instants go here (see [`Observe`]).
    observe: &'a Observe<'a>,
    /// The heartbeat's protocol and TLS.
    setup: &'a Setup,
}

enum Event {
    Lines,
    Closed(Detection),
}

/// Watch `stream` until the peer is declared dead or closes (returns that Detection), or until `stop`
/// completes (returns an `alive` Detection).
pub async fn watch(
    stream: TcpStream,
    w: &Watch,
    opened: Instant,
    stop: impl Future<Output = ()>,
) -> Detection {
    watch_observed(stream, w, opened, stop, &Observe::NONE).await
}

/// [`watch`], telling `observe` what it asks for: soft errors — a socket error raised while the
/// connection is still ESTABLISHED (IP_RECVERR must be on) goes to [`Observe::soft`] and the watch
/// goes on, so only the kernel closing the connection ends it — and the instant of each heartbeat
/// ping.
pub async fn watch_observed(
    stream: TcpStream,
    w: &Watch,
    opened: Instant,
    stop: impl Future<Output = ()>,
    observe: &Observe<'_>,
) -> Detection {
    let now = Instant::now();
    let tls = match w.ping.tls.as_ref().map(|t| t.session()) {
        None => None,
        Some(Ok(s)) => Some(Box::new(s)),
        Some(Err(e)) => {
            let c = conn(opened, now, w, observe, None);
            return protocol_close(&stream, &c, format!("cannot start TLS: {e}"));
        }
    };
    let mut c = conn(opened, now, w, observe, tls);
    let mut hello = Vec::new();
    c.pinger.hello(&mut hello);
    c.send(&hello);
    if let Some(d) = flush(&stream, &mut c, w) {
        return d;
    }
    watch_loop(stream, w, &mut c, stop).await
}

/// Whether `peer` answers a heartbeat in `ping`'s protocol (and TLS) within `timeout`, asked on a
/// connection of its own: `probe --detect-within --ping PROTO`. A refusal in the protocol (a
/// GOAWAY, a refused CONNACK) is not an answer a heartbeat can live on.
pub async fn answers(
    peer: std::net::SocketAddr,
    ping: std::sync::Arc<Setup>,
    timeout: Duration,
    connect_timeout: Duration,
) -> bool {
    let Ok(Ok(stream)) =
        tokio::time::timeout(connect_timeout, crate::sockets::connect_plain(peer)).await
    else {
        return false;
    };
    // Two pings within the timeout, and silence for all of it is the end.
    let interval = (timeout / 2).max(crate::strategy::Heartbeat::MIN_INTERVAL);
    let w = Watch {
        effective: Effective {
            heartbeat_interval_ms: Some(interval.ms()),
            heartbeat_misses: Some(2),
            ..Effective::default()
        },
        load: Load::Idle,
        kernel: KernelTimers::default(),
        ping,
    };
    let spoke = tokio::sync::Notify::new();
    let observe = Observe {
        spoke: Some(&spoke),
        ..Observe::NONE
    };
    let stop = async {
        let _ = tokio::time::timeout(timeout, spoke.notified()).await;
    };
    let d = watch_observed(stream, &w, Instant::now(), stop, &observe).await;
    d.spoke_heartbeat && d.outcome == Outcome::Alive
}

/// A connection's state before anything was exchanged.
fn conn<'a>(
    opened: Instant,
    now: Instant,
    w: &'a Watch,
    observe: &'a Observe<'a>,
    tls: Option<Box<rustls::ClientConnection>>,
) -> Conn<'a> {
    Conn {
        opened,
        last_heard: now,
        last_io: opened,
        pinger: Pinger::new(w.ping.protocol, &w.ping.options),
        tls_ready: tls.is_none(),
        tls,
        pending: Vec::new(),
        next_seq: 1,
        ping_outstanding: false,
        unknown_lines: 0,
        spoke_protocol: false,
        observe,
        setup: &w.ping,
    }
}

impl Conn<'_> {
    /// Queue `plain` for the peer: through TLS when it is on.
    fn send(&mut self, plain: &[u8]) {
        match &mut self.tls {
            None => self.pending.extend_from_slice(plain),
            Some(tls) => {
                if !plain.is_empty() {
                    // rustls buffers plaintext written before the handshake ends, and sends it after.
                    let _ = io::Write::write_all(&mut tls.writer(), plain);
                }
                while tls.wants_write() {
                    if tls.write_tls(&mut self.pending).is_err() {
                        break;
                    }
                }
            }
        }
    }
}

async fn watch_loop(
    stream: TcpStream,
    w: &Watch,
    c: &mut Conn<'_>,
    stop: impl Future<Output = ()>,
) -> Detection {
    let c = &mut *c;
    // A soft error wakes only a waiter for errors: without one, nothing else changes (no EPOLLIN).
    let interest = match c.observe.soft {
        Some(_) => Interest::READABLE | Interest::ERROR,
        None => Interest::READABLE,
    };
    let hb = w.effective.heartbeat();
    let far = TokioInstant::now() + Duration::from_secs(86_400 * 365);
    // The first ping goes at a random point of the first interval: thousands of connections accepted
    // in the same second then do not ping (and wake) in the same millisecond, and a cut meets each
    // heartbeat at an honest, random phase.
    let mut next_ping = match hb {
        Some((interval, _)) => TokioInstant::now() + interval.mul_f64(fastrand::f64().max(0.01)),
        None => far,
    };
    if let Some(log) = c.observe.pings {
        log.plan(next_ping.into_std());
    }
    let mut next_busy = match w.load {
        Load::Busy => TokioInstant::now(),
        Load::Idle => far,
    };
    tokio::pin!(stop);
    loop {
        let hb_deadline = match hb {
            Some((interval, misses)) => TokioInstant::from_std(c.last_heard) + interval * misses,
            None => far,
        };
        // Waiting for writability is only safe without soft errors: an EPOLLERR marks tokio's
        // registration write-closed for good (mio reads EPOLLOUT|EPOLLERR as a closed pipe), after which
        // `writable()` is ready forever and would spin. With soft errors the queue is retried at the
        // next tick, read or ping instead.
        let want_write = !c.pending.is_empty() && c.observe.soft.is_none();
        let timers = hb.is_some() || w.load == Load::Busy;
        tokio::select! {
            biased;
            _ = &mut stop => {
                // Take what the peer sent before closing, so the close is a FIN, not a RST.
                let _ = read_some(&stream, c);
                // Say goodbye in the protocol (a WebSocket close, an MQTT DISCONNECT, a GOAWAY,
                // TLS close_notify), as far as the socket takes it now: the server then logs a
                // client leaving, not a broken connection.
                let mut bye = Vec::new();
                c.pinger.goodbye(&mut bye);
                c.send(&bye);
                if let Some(tls) = &mut c.tls {
                    tls.send_close_notify();
                    c.send(&[]);
                }
                let _ = stream.try_write(&c.pending);
                return finish(c, sys::tcp_info(&stream), Outcome::Alive, None, None);
            }
            r = stream.ready(interest) => {
                let ready = match r {
                    Ok(r) => r,
                    Err(e) => return from_error(&stream, c, e, w),
                };
                if ready.is_error() {
                    if let Some(d) = pending_error(&stream, c, w) { return d; }
                    // Taken: clear the readiness so the loop waits for the next one.
                    let _ = stream.try_io(Interest::ERROR, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
                }
                match read_some(&stream, c) {
                    Ok(Event::Lines) => {}
                    Ok(Event::Closed(d)) => return d,
                    Err(e) => if let Some(d) = failed(&stream, c, e, w) { return d },
                }
                if let Some(d) = flush(&stream, c, w) { return d; }
            }
            r = stream.writable(), if want_write => {
                if let Err(e) = r { return from_error(&stream, c, e, w); }
                if let Some(d) = flush(&stream, c, w) { return d; }
            }
            // One timer for all three deadlines: a Sleep is ~100 bytes, and 10,000 held
            // connections should cost as little user-space memory as possible.
            _ = sleep_until(hb_deadline.min(next_ping).min(next_busy)), if timers => {
                let now = TokioInstant::now();
                if hb.is_some() && now >= hb_deadline {
                    let info = sys::tcp_info(&stream);
                    return finish(c, info, Outcome::Dead, Some(Mechanism::Heartbeat), None);
                }
                if let Some((interval, _)) = hb && now >= next_ping {
                    next_ping += interval;
                    let mut ping = Vec::new();
                    c.pinger.ping(c.next_seq, &mut ping);
                    c.send(&ping);
                    c.next_seq += 1;
                    c.ping_outstanding = true;
                    if let Some(log) = c.observe.pings {
                        log.push(Instant::now());
                        log.plan(next_ping.into_std());
                    }
                }
                if w.load == Load::Busy && now >= next_busy {
                    next_busy += BUSY_TICK;
                    if c.pending.is_empty() {
                        c.send(heartbeat::data_block());
                    }
                }
                if let Some(d) = flush(&stream, c, w) { return d; }
            }
        }
    }
}

/// Read what is there, decode it, queue answers. `Err` carries the socket error.
fn read_some(stream: &TcpStream, c: &mut Conn<'_>) -> io::Result<Event> {
    READ_BUFFER.with(|buf| {
        let mut buf = buf.borrow_mut();
        loop {
            match stream.try_read(&mut buf) {
                Ok(0) if !c.tls_ready => {
                    return Ok(Event::Closed(tls_failed(
                        stream,
                        c,
                        "the server closed the connection during the TLS handshake".into(),
                    )));
                }
                // The peer's kernel sent FIN.
                Ok(0) => return Ok(Event::Closed(peer_fin(stream, c))),
                Ok(n) => {
                    c.last_io = Instant::now();
                    let ended = if c.tls.is_some() {
                        through_tls(stream, c, &buf[..n])
                    } else {
                        take(stream, c, &buf[..n])
                    };
                    if let Some(d) = ended {
                        return Ok(Event::Closed(d));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Event::Lines),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    })
}

/// The peer closed: credited to `eof` here; `connect` and `listen`, where nothing was cut, report
/// it as the peer closing (Detection::on_a_live_path).
fn peer_fin(stream: &TcpStream, c: &Conn<'_>) -> Detection {
    let mut d = closed(stream, c, ClosedBy::Peer, CloseHow::Fin, None);
    d.detected_by = Some(Mechanism::Eof);
    d
}

/// The peer's TLS records: decrypted and handed to the codec; what TLS must answer is queued. The
/// first time the handshake is found complete, HTTP/2 is checked to have been agreed by ALPN.
fn through_tls(stream: &TcpStream, c: &mut Conn<'_>, mut wire: &[u8]) -> Option<Detection> {
    while !wire.is_empty() {
        let tls = c.tls.as_mut()?;
        if let Err(e) = tls.read_tls(&mut wire) {
            return Some(tls_failed(stream, c, format!("TLS: {e}")));
        }
        let state = match tls.process_new_packets() {
            Ok(s) => s,
            Err(e) => {
                let why = match &c.setup.tls {
                    Some(t) => crate::ping::tls::describe(&e, &t.name),
                    None => e.to_string(),
                };
                // The alert rustls queued tells the server why, as far as it can still be sent.
                c.send(&[]);
                let _ = stream.try_write(&c.pending);
                return Some(tls_failed(stream, c, why));
            }
        };
        let (plain_len, peer_closed) = (state.plaintext_bytes_to_read(), state.peer_has_closed());
        if !c.tls_ready && !tls.is_handshaking() {
            c.tls_ready = true;
            if c.setup.protocol == crate::strategy::Protocol::H2
                && tls.alpn_protocol() != Some(b"h2")
            {
                return Some(protocol_close(
                    stream,
                    c,
                    "the server did not agree to HTTP/2 by ALPN (h2) over TLS: try --ping http"
                        .into(),
                ));
            }
        }
        if plain_len > 0 {
            let mut plain = vec![0; plain_len];
            if io::Read::read_exact(&mut tls.reader(), &mut plain).is_err() {
                return Some(tls_failed(stream, c, "TLS: plaintext lost".into()));
            }
            if let Some(d) = take(stream, c, &plain) {
                return Some(d);
            }
        }
        // Handshake messages, key updates, or what the codec answered.
        c.send(&[]);
        if peer_closed {
            return Some(peer_fin(stream, c));
        }
    }
    None
}

/// The peer's bytes in the heartbeat's protocol: decoded, answered. `Some` ends the watch.
fn take(stream: &TcpStream, c: &mut Conn<'_>, bytes: &[u8]) -> Option<Detection> {
    let mut answers = Vec::new();
    let res = c.pinger.feed(bytes, &mut answers);
    let heard = *res.as_ref().unwrap_or(&Heard::default());
    c.unknown_lines += heard.unknown;
    if !c.spoke_protocol
        && heard.replies > 0
        && let Some(n) = c.observe.spoke
    {
        n.notify_one();
    }
    // A foreign peer (`compare --server`) proves itself alive by anything it says.
    c.spoke_protocol |= heard.replies > 0 || (c.observe.foreign_peer && heard.any());
    if !c.spoke_protocol && c.unknown_lines >= MAX_UNKNOWN_WITHOUT_VALID {
        let why = match c.setup.protocol {
            crate::strategy::Protocol::Line => format!(
                "{} lines and none of them PING, PONG or DATA: not a heartbeat peer",
                c.unknown_lines
            ),
            p => format!(
                "{} messages and none of them an answer to a {p} ping: not a {p} peer",
                c.unknown_lines
            ),
        };
        return Some(protocol_close(stream, c, why));
    }
    // A refusal in the protocol is the peer's process speaking: alive until that instant.
    if heard.any() || matches!(res, Err(PingError::Refused(_))) {
        c.last_heard = Instant::now();
        c.ping_outstanding = false;
        if let Some(log) = c.observe.pings {
            log.hear(c.last_heard);
        }
    }
    c.send(&answers);
    match res {
        Err(PingError::Refused(why)) => {
            return Some(closed(
                stream,
                c,
                ClosedBy::Peer,
                CloseHow::Refused,
                Some(why),
            ));
        }
        Err(PingError::Protocol(why)) => return Some(protocol_close(stream, c, why)),
        Ok(_) => {}
    }
    if c.pending.len() > MAX_PENDING {
        return Some(protocol_close(
            stream,
            c,
            "peer sends pings but does not read the answers".into(),
        ));
    }
    None
}

/// A TLS handshake or record that failed: tcphb closes, with the reason in one sentence.
fn tls_failed(stream: &TcpStream, c: &Conn<'_>, why: String) -> Detection {
    closed(stream, c, ClosedBy::Tcphb, CloseHow::Tls, Some(why))
}

/// What the codec has to say, and the count of messages that were not the protocol's.
fn notes(c: &Conn<'_>) -> Option<String> {
    let unknown = (c.unknown_lines > 0).then(|| match c.setup.protocol {
        crate::strategy::Protocol::Line => format!("{} unknown lines ignored", c.unknown_lines),
        _ => format!("{} unexpected messages ignored", c.unknown_lines),
    });
    joined(c.pinger.note(), unknown)
}

/// Two optional notes as one, `; ` between them.
fn joined(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(format!("{a}; {b}")),
        (a, b) => a.or(b),
    }
}

/// tcphb closes a connection whose peer breaks the protocol: reported as closed with the reason.
fn protocol_close(stream: &TcpStream, c: &Conn<'_>, why: String) -> Detection {
    closed(stream, c, ClosedBy::Tcphb, CloseHow::Protocol, Some(why))
}

/// A connection that ended `closed`, by whom and how.
fn closed(
    stream: &TcpStream,
    c: &Conn<'_>,
    by: ClosedBy,
    how: CloseHow,
    note: Option<String>,
) -> Detection {
    let (elapsed_ms, idle_ms) = lifetime_and_idle(c);
    Detection {
        outcome: Outcome::Closed,
        detected_by: None,
        errno: None,
        silence_ms: 0,
        elapsed_ms,
        tcp_info: sys::tcp_info(stream),
        note: joined(note, notes(c)),
        closed_by: Some(by),
        how: Some(how),
        idled_ms: idle_ms,
        icmp: None,
        spoke_heartbeat: c.spoke_protocol,
        awaiting_answer: false,
    }
}

/// Write as much pending output as the socket takes. Returns a Detection if the write failed.
fn flush(stream: &TcpStream, c: &mut Conn<'_>, w: &Watch) -> Option<Detection> {
    while !c.pending.is_empty() {
        match stream.try_write(&c.pending) {
            Ok(n) => {
                c.pending.drain(..n);
                if n > 0 {
                    c.last_io = Instant::now();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => match failed(stream, c, e, w) {
                // Still connected: the bytes are queued again at the next tick or ping.
                None => break,
                d => return d,
            },
        }
    }
    if c.pending.is_empty() && c.pending.capacity() > 256 {
        c.pending = Vec::new();
    }
    None
}

/// The socket's pending error (readiness said there is one): soft or the end.
fn pending_error(stream: &TcpStream, c: &Conn<'_>, w: &Watch) -> Option<Detection> {
    match stream.take_error() {
        Ok(None) => None,
        Ok(Some(e)) | Err(e) => failed(stream, c, e, w),
    }
}

/// A socket error: reported as soft (`None`) while the kernel still holds the connection and a
/// caller asked for soft errors, else the Detection that ends the watch.
fn failed(stream: &TcpStream, c: &Conn<'_>, e: io::Error, w: &Watch) -> Option<Detection> {
    if let Some(soft) = c.observe.soft
        && sys::is_established(stream) == Some(true)
    {
        soft(&e);
        return None;
    }
    Some(from_error(stream, c, e, w))
}

/// Turn a socket error into a Detection, naming the mechanism from what was armed and whether data was
/// in flight — the errno alone cannot tell keepalive from retransmission from user timeout.
/// TCP_INFO is read once, here, for both the naming and the Detection.
fn from_error(stream: &TcpStream, c: &Conn<'_>, e: io::Error, w: &Watch) -> Detection {
    let info = sys::tcp_info(stream);
    let in_flight = w.load == Load::Busy || c.ping_outstanding;
    let mechanism = classify(e.kind(), in_flight, c, info, w);
    let errno = crate::sys::errno_text(&e);
    Detection {
        awaiting_answer: in_flight,
        ..finish(c, info, Outcome::Dead, Some(mechanism), Some(errno))
    }
}

fn classify(
    kind: io::ErrorKind,
    in_flight: bool,
    c: &Conn<'_>,
    info: Option<TcpInfo>,
    w: &Watch,
) -> Mechanism {
    use io::ErrorKind as K;
    if matches!(
        kind,
        K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted
    ) {
        return Mechanism::Reset;
    }
    let timer = timer_death(&w.effective, in_flight, &w.kernel);
    let icmp = matches!(
        kind,
        K::HostUnreachable | K::NetworkUnreachable | K::NetworkDown
    );
    match timer {
        // An ICMP errno long before any armed timer could have expired was reported, not timed out.
        Some((expected, _)) if icmp && silence(info, c) < expected.ms() / 2 => {
            Mechanism::Unreachable
        }
        Some((_, m)) => m,
        None if icmp => Mechanism::Unreachable,
        None => Mechanism::Retransmission,
    }
}

fn silence(info: Option<TcpInfo>, c: &Conn) -> u64 {
    info.map(|i| i.silence_ms())
        .unwrap_or_else(|| c.last_heard.elapsed().ms())
}

/// The connection's lifetime and its idle time at the end, read at one instant so that the idle
/// time (which starts no earlier than the connection) never exceeds the lifetime.
fn lifetime_and_idle(c: &Conn<'_>) -> (u64, u64) {
    let now = Instant::now();
    let ms = |since: Instant| now.saturating_duration_since(since).ms();
    (ms(c.opened), ms(c.last_io))
}

/// The Detection of a watch that ended, with `info` the connection's TCP_INFO read at its end.
fn finish(
    c: &Conn<'_>,
    info: Option<TcpInfo>,
    outcome: Outcome,
    by: Option<Mechanism>,
    errno: Option<String>,
) -> Detection {
    // A heartbeat is about the peer application, so its silence is since the last line it sent; TCP
    // timers are about the peer's kernel, so theirs is since the last packet (TCP_INFO).
    let silence_ms = match (by, info) {
        (Some(Mechanism::Heartbeat), _) | (_, None) => c.last_heard.elapsed().ms(),
        (_, Some(i)) => i.silence_ms(),
    };
    let note = notes(c);
    let (elapsed_ms, idle_ms) = lifetime_and_idle(c);
    Detection {
        outcome,
        detected_by: by,
        errno,
        silence_ms,
        elapsed_ms,
        tcp_info: info,
        note,
        closed_by: None,
        how: None,
        idled_ms: idle_ms,
        icmp: None,
        spoke_heartbeat: c.spoke_protocol,
        awaiting_answer: false,
    }
}
