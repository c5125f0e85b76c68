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
use crate::heartbeat::{self, Decoder, Message};
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
}

impl Observe<'static> {
    /// Nothing observed.
    pub const NONE: Observe<'static> = Observe {
        soft: None,
        pings: None,
        foreign_peer: false,
    };
}

/// The instants a connection's heartbeat pings were queued, for a reader that drains it as it goes
/// (`compare`'s timeline sampler). Bounded: past [`PingLog::CAPACITY`] undrained instants the oldest
/// is forgotten, so an undrained log (before the cut, nobody reads it) costs a fixed few hundred
/// bytes.
#[derive(Debug, Default)]
pub struct PingLog {
    sent: std::sync::Mutex<std::collections::VecDeque<Instant>>,
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
    decoder: Decoder,
    pending: Vec<u8>,
    next_seq: u64,
    /// A ping was sent and nothing has been heard since: data is in flight.
    ping_outstanding: bool,
    unknown_lines: u64,
    /// At least one PING, PONG or DATA line was received.
    spoke_protocol: bool,
    /// Soft errors and ping instants go here (see [`Observe`]).
    observe: &'a Observe<'a>,
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
    let mut c = Conn {
        opened,
        last_heard: now,
        last_io: opened,
        decoder: Decoder::new(),
        pending: Vec::new(),
        next_seq: 1,
        ping_outstanding: false,
        unknown_lines: 0,
        spoke_protocol: false,
        observe,
    };
    // A soft error wakes only a waiter for errors: without one, nothing else changes (no EPOLLIN).
    let interest = match observe.soft {
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
                let _ = read_some(&stream, &mut c);
                return finish(&c, sys::tcp_info(&stream), Outcome::Alive, None, None);
            }
            r = stream.ready(interest) => {
                let ready = match r {
                    Ok(r) => r,
                    Err(e) => return from_error(&stream, &c, e, w),
                };
                if ready.is_error() {
                    if let Some(d) = pending_error(&stream, &c, w) { return d; }
                    // Taken: clear the readiness so the loop waits for the next one.
                    let _ = stream.try_io(Interest::ERROR, || Err::<(), _>(io::ErrorKind::WouldBlock.into()));
                }
                match read_some(&stream, &mut c) {
                    Ok(Event::Lines) => {}
                    Ok(Event::Closed(d)) => return d,
                    Err(e) => if let Some(d) = failed(&stream, &c, e, w) { return d },
                }
                if let Some(d) = flush(&stream, &mut c, w) { return d; }
            }
            r = stream.writable(), if want_write => {
                if let Err(e) = r { return from_error(&stream, &c, e, w); }
                if let Some(d) = flush(&stream, &mut c, w) { return d; }
            }
            // One timer for all three deadlines: a Sleep is ~100 bytes, and 10,000 held
            // connections should cost as little user-space memory as possible.
            _ = sleep_until(hb_deadline.min(next_ping).min(next_busy)), if timers => {
                let now = TokioInstant::now();
                if hb.is_some() && now >= hb_deadline {
                    let info = sys::tcp_info(&stream);
                    return finish(&c, info, Outcome::Dead, Some(Mechanism::Heartbeat), None);
                }
                if let Some((interval, _)) = hb && now >= next_ping {
                    next_ping += interval;
                    c.pending.extend_from_slice(&heartbeat::ping(c.next_seq));
                    c.next_seq += 1;
                    c.ping_outstanding = true;
                    if let Some(log) = c.observe.pings {
                        log.push(Instant::now());
                    }
                }
                if w.load == Load::Busy && now >= next_busy {
                    next_busy += BUSY_TICK;
                    if c.pending.is_empty() {
                        c.pending.extend_from_slice(heartbeat::data_block());
                    }
                }
                if let Some(d) = flush(&stream, &mut c, w) { return d; }
            }
        }
    }
}

/// Read what is there, decode lines, queue answers. `Err` carries the socket error.
fn read_some(stream: &TcpStream, c: &mut Conn<'_>) -> io::Result<Event> {
    READ_BUFFER.with(|buf| {
        let mut buf = buf.borrow_mut();
        loop {
            match stream.try_read(&mut buf) {
                Ok(0) => {
                    // The peer's kernel sent FIN. Credited to `eof` here; `connect` and `listen`, where
                    // nothing was cut, report it as the peer closing (Detection::on_a_live_path).
                    let mut d = closed(stream, c, ClosedBy::Peer, CloseHow::Fin, None);
                    d.detected_by = Some(Mechanism::Eof);
                    return Ok(Event::Closed(d));
                }
                Ok(n) => {
                    c.last_io = Instant::now();
                    let mut answers = Vec::new();
                    let mut heard = false;
                    let mut unknown = 0;
                    let mut valid = false;
                    let res = c.decoder.feed(&buf[..n], |m| {
                        heard = true;
                        match m {
                            Message::Ping(seq) => answers.push(seq),
                            Message::Unknown => unknown += 1,
                            Message::Pong(_) | Message::Data => {}
                        }
                        valid |= m != Message::Unknown;
                    });
                    c.unknown_lines += unknown;
                    c.spoke_protocol |= valid || c.observe.foreign_peer;
                    if !c.spoke_protocol && c.unknown_lines >= MAX_UNKNOWN_WITHOUT_VALID {
                        return Ok(Event::Closed(protocol_close(
                            stream,
                            c,
                            format!("{} lines and none of them PING, PONG or DATA: not a heartbeat peer", c.unknown_lines),
                        )));
                    }
                    if heard {
                        c.last_heard = Instant::now();
                        c.ping_outstanding = false;
                    }
                    for seq in answers {
                        c.pending.extend_from_slice(&heartbeat::pong(seq));
                    }
                    if let Err(e) = res {
                        return Ok(Event::Closed(protocol_close(stream, c, e.to_string())));
                    }
                    if c.pending.len() > MAX_PENDING {
                        return Ok(Event::Closed(protocol_close(
                            stream,
                            c,
                            "peer sends pings but does not read the answers".into(),
                        )));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Event::Lines),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    })
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
        note: note.or_else(|| {
            (c.unknown_lines > 0).then(|| format!("{} unknown lines ignored", c.unknown_lines))
        }),
        closed_by: Some(by),
        how: Some(how),
        idle_ms,
        icmp: None,
        spoke_heartbeat: c.spoke_protocol,
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
    finish(c, info, Outcome::Dead, Some(mechanism), Some(errno))
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
    let note = (c.unknown_lines > 0).then(|| format!("{} unknown lines ignored", c.unknown_lines));
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
        idle_ms,
        icmp: None,
        spoke_heartbeat: c.spoke_protocol,
    }
}
