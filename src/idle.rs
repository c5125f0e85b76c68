//! Idle-timeout discovery: how long the path keeps an idle connection before a NAT or firewall on it
//! silently forgets the flow — and, apart from it, after how long the server closes idle connections
//! itself.
//!
//! Connections are opened to the peer and left idle; each is then tested once, after its own idle
//! time, with a test packet: a `PING n` line when the peer answers them (a tcphb listen, any echo
//! service: the ping method), else the kernel's keepalive probe (the keepalive method: no data, so
//! any TCP server will do; Linux). An answer (`PONG n`/the echo, or the ACK of the probe) says the
//! flow survived that much idleness; silence, a RST or an ICMP error says it did not. A FIN (or RST)
//! arriving while the connection idles is the server's own idle close, reported with its time, never
//! taken for the path's expiry.
//!
//! The bracket — the longest idle that survived, the shortest that did not — is narrowed in rounds.
//! Round 1 spreads [`PER_ROUND`] idle times over (0, MAX]; later rounds spread theirs inside the
//! bracket. A round of fresh connections also opens the next round's connections ahead, staggered so
//! that whichever gap the timeout turns out to be in, they have been idle just under the next
//! round's idle times when the round ends: the next round then waits milliseconds, not the idle
//! time again. A point is only tried if its answer can come within MAX plus two answer times of the
//! start, so the whole search takes about MAX, not the sum of the idle times; at most
//! [`MAX_IN_FLIGHT`] connections are open at once.
//!
//! All connections are tasks on the caller's current-thread runtime, never threads. The planning
//! ([`next_round`], [`assign`], [`ahead`], [`Bracket`]) is pure and unit-tested; [`discover`] and
//! `conn` do the I/O.

mod conn;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant as TokioInstant, sleep_until, timeout};

use crate::heartbeat::Decoder;
use crate::units::{Millis, secs2};

/// Idle times tried per round.
pub const PER_ROUND: usize = 8;

/// At most this many connections open at once: a round's, the next round's opened ahead, and the
/// ones of the round before still closing.
pub const MAX_IN_FLIGHT: usize = 3 * PER_ROUND;

/// The keepalive method's shortest idle: TCP_KEEPIDLE takes whole seconds from 1.
pub const KEEPALIVE_FLOOR: Duration = Duration::from_secs(1);

/// A held connection is told its idle time at least this long before it is due.
const LEAD: Duration = Duration::from_millis(5);

/// What the test packet is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A `PING n` line, answered by `PONG n` or its echo: a tcphb listen or an echo service.
    Ping,
    /// The kernel's keepalive probe (no data), answered by the peer kernel's ACK: any TCP server.
    Keepalive,
}

impl Method {
    /// snake_case name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Method::Ping => "ping",
            Method::Keepalive => "keepalive",
        }
    }
    /// The test packet, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Method::Ping => "a PING line after the idle time",
            Method::Keepalive => "one TCP keepalive probe after the idle time (no data sent)",
        }
    }
    /// The shortest idle time the method can test.
    pub fn floor(self) -> Duration {
        match self {
            Method::Ping => Duration::ZERO,
            Method::Keepalive => KEEPALIVE_FLOOR,
        }
    }
}

/// What one connection showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Answered after the idle period: the flow survived.
    Alive,
    /// No answer within the reply timeout: the flow was dropped without a word.
    Silent,
    /// The test packet drew a RST: the middlebox (or the peer) no longer knew the flow.
    Rst,
    /// The test packet drew an ICMP error (EHOSTUNREACH, ENETUNREACH…).
    Icmp,
    /// The server closed the connection itself (its own idle timeout, or a restart): says nothing
    /// about the path.
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

/// What answered, as seen on the wire: the evidence under a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// The peer's kernel ACKed the keepalive probe.
    Ack,
    /// `PONG n` or the echoed `PING n`.
    Pong,
    /// Nothing.
    Silence,
    /// A RST in answer to the test packet.
    Rst,
    /// An ICMP error in answer to the test packet.
    Icmp,
    /// A FIN from the server: it closed the connection itself.
    FinByServer,
    /// A RST from the server while nothing had been sent: it aborted the connection itself.
    RstByServer,
    /// Data from the server while the connection idled.
    DataFromServer,
    /// Nothing to tell (the connection failed before its test).
    None,
}

impl Answer {
    /// The answer a test-packet verdict implies.
    fn of(v: Verdict) -> Answer {
        match v {
            Verdict::Alive => Answer::Pong,
            Verdict::Silent => Answer::Silence,
            Verdict::Rst => Answer::Rst,
            Verdict::Icmp => Answer::Icmp,
            Verdict::Closed => Answer::FinByServer,
            Verdict::PeerSpoke => Answer::DataFromServer,
            Verdict::Error => Answer::None,
        }
    }
    /// snake_case name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Answer::Ack => "ack",
            Answer::Pong => "pong",
            Answer::Silence => "silence",
            Answer::Rst => "rst",
            Answer::Icmp => "icmp",
            Answer::FinByServer => "fin_by_server",
            Answer::RstByServer => "rst_by_server",
            Answer::DataFromServer => "data_from_server",
            Answer::None => "none",
        }
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
    /// Planned idle time, ms (0 for a connection opened ahead that the server closed before it was
    /// given one).
    pub planned_idle_ms: u64,
    /// Measured idle time: from the last packet heard (ping: the answer to the first ping) to the
    /// test packet, or to the server's close, ms.
    pub idled_ms: u64,
    pub verdict: Verdict,
    /// What answered (JSON `response`: compare's `answer` is another thing).
    #[serde(rename = "response")]
    pub answer: Answer,
    /// Measured: how long the answer took, ms (alive only).
    pub reply_ms: Option<f64>,
    /// The socket error, if one ended it.
    pub errno: Option<String>,
}

/// How the server closes idle connections itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerCloseHow {
    Fin,
    Rst,
}

/// The server's own idle limit, seen as closes of idle connections.
#[derive(Debug, Clone, Serialize)]
pub struct ServerClose {
    /// Measured: the shortest idle after which the server closed a connection, ms.
    pub after_ms: u64,
    /// Measured: the longest, ms (a server's timer has slack of its own).
    pub latest_ms: u64,
    /// FIN (an orderly close) or RST (an abort), as the first close came.
    pub how: ServerCloseHow,
    /// How many connections it closed.
    pub connections: u32,
}

/// What discovery found.
#[derive(Debug, Clone, Serialize)]
pub struct IdleTimeout {
    /// The test packet used.
    pub method: Method,
    /// The longest idle time tried (`--idle-timeout MAX`), ms.
    pub max_ms: u64,
    /// Longest idle time a connection survived (0 if none did), ms.
    pub low_ms: u64,
    /// Shortest idle time after which a connection was forgotten, ms; `null` if none was within MAX.
    pub high_ms: Option<u64>,
    /// How the path treats a forgotten flow; `null` if none was forgotten.
    pub behaviour: Option<Behaviour>,
    /// The server's own idle close, apart from the path; `null` if it closed none.
    pub server_close: Option<ServerClose>,
    /// How long each test packet waited for its answer (keepalive: the kernel's interval before it
    /// gives up on the probe), ms.
    pub reply_timeout_ms: u64,
    pub rounds: u32,
    /// Measured: the whole run, ms.
    pub elapsed_ms: u64,
    /// One entry per connection.
    pub evidence: Vec<Evidence>,
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
    /// the path (closed by the server, not idle, errors) leave it as it is.
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

/// The idle times to try next, given the bracket. Round 1 (nothing tried yet) spreads `per_round`
/// times over (0, max], none under `floor`; later rounds spread `per_round − 1` inside the bracket.
/// Empty when done: the bracket is no wider than `resolution`, or nothing expired within `max`.
pub fn next_round(
    b: &Bracket,
    first: bool,
    max: Duration,
    floor: Duration,
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
    for p in &mut points {
        *p = Duration::from_millis(p.ms()).max(floor);
    }
    points.retain(|p| !p.is_zero() && *p <= max && *p > b.low && b.high.is_none_or(|h| *p < h));
    points.dedup();
    points
}

/// Which connection tests an idle time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// The held connection at this index of `ages`, already idle that long.
    Held(usize),
    /// A connection opened now.
    Fresh,
}

/// Give each point (the longest first) the held connection idle longest but still under it (less
/// [`LEAD`]), else a fresh one, and keep only the points whose answer can come by `budget` from the
/// start: `elapsed` now, + the wait left (+ `connect` for a fresh one), + `answer`.
pub fn assign(
    points: &[Duration],
    ages: &[Duration],
    elapsed: Duration,
    budget: Duration,
    answer: Duration,
    connect: Duration,
) -> Vec<(Duration, Use)> {
    let mut sorted: Vec<Duration> = points.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let mut taken = vec![false; ages.len()];
    let mut out = Vec::new();
    for x in sorted {
        let best = ages
            .iter()
            .enumerate()
            .filter(|(i, a)| !taken[*i] && **a + LEAD <= x)
            .max_by_key(|(_, a)| **a)
            .map(|(i, _)| i);
        let (wait, u) = match best {
            Some(i) => (x - ages[i], Use::Held(i)),
            None => (x + connect, Use::Fresh),
        };
        if elapsed + wait + answer <= budget {
            if let Use::Held(i) = u {
                taken[i] = true;
            }
            out.push((x, u));
        }
    }
    out.sort_by_key(|(x, _)| *x);
    out
}

/// When to open the next round's connections, from now, after a round of fresh connections probing
/// `step` apart: that round ends `answer` after its first forgotten probe, at idle x; connection j
/// (opened at `answer` + `step`·j/`per_round`) has then been idle x − `step`·j/`per_round` — the
/// next round's points in the gap below x, whichever gap that is.
pub fn ahead(step: Duration, per_round: usize, answer: Duration) -> Vec<Duration> {
    let k = per_round.max(1) as u32;
    (1..k).map(|j| answer + step * j / k).collect()
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

/// How long a test packet of `method` waits for its answer on a path with `rtt`: the reply timeout;
/// for the keepalive probe rounded up to whole seconds (TCP_KEEPINTVL's unit).
pub fn answer_within(method: Method, rtt: Duration) -> Duration {
    let r = reply_timeout(rtt);
    match method {
        Method::Ping => r,
        Method::Keepalive => Duration::from_secs(r.as_secs() + u64::from(r.subsec_nanos() > 0)),
    }
}

/// Slack for the kernel's timers and the event loop in [`longest`].
const SLACK: Duration = Duration::from_millis(500);

/// The longest a search up to `max` takes: MAX plus two answer times (the last round's answer, and
/// the round after it, whose connections were opened ahead) and half a second of timer slack.
pub fn longest(method: Method, max: Duration, rtt: Duration) -> Duration {
    max + answer_within(method, rtt) * 2 + SLACK
}

/// Why discovery could not say anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoEvidence(pub String);

/// What to search.
#[derive(Debug, Clone)]
pub struct Search {
    pub peer: SocketAddr,
    pub method: Method,
    /// The ping method's protocol: `line`, or the service's own (`--ping PROTO`).
    pub ping: std::sync::Arc<crate::ping::Setup>,
    /// The longest idle time to try.
    pub max: Duration,
    /// The path's round-trip time, measured.
    pub rtt: Duration,
    pub connect_timeout: Duration,
}

/// A connection opened ahead, idle and not yet given an idle time.
struct Held {
    id: usize,
    born: Instant,
    go: oneshot::Sender<Duration>,
}

/// Everything the search has running: the tasks, the held connections, and the connections
/// opened ahead that are not ready yet.
struct Running {
    tasks: JoinSet<()>,
    aborts: HashMap<usize, AbortHandle>,
    held: Vec<Held>,
    opening: HashMap<usize, oneshot::Sender<Duration>>,
    tx: mpsc::UnboundedSender<conn::Msg>,
    plan: conn::Plan,
    next_id: usize,
}

impl Running {
    /// Start a connection (at `open_at`, or now); `go` already set when its idle time is known.
    fn spawn(&mut self, open_at: Option<TokioInstant>, idle: Option<Duration>) -> usize {
        let id = self.next_id;
        self.next_id += 1;
        let (go_tx, go_rx) = oneshot::channel();
        match idle {
            Some(x) => {
                let _ = go_tx.send(x);
            }
            None => {
                self.opening.insert(id, go_tx);
            }
        }
        let h = self.tasks.spawn(conn::run(
            self.plan.clone(),
            id,
            open_at,
            go_rx,
            self.tx.clone(),
        ));
        self.aborts.insert(id, h);
        id
    }
    fn stop(&mut self, id: usize) {
        if let Some(h) = self.aborts.remove(&id) {
            h.abort();
        }
        self.opening.remove(&id);
        self.held.retain(|h| h.id != id);
    }
}

/// Find the path's idle timeout up to `max`, against `peer`, with `method`'s test packet.
/// `progress` receives one line per round and per verdict. Fails when no connection told anything
/// (the peer does not answer `PING` with the ping method, or cannot be reached). When `stop`
/// completes first, the search ends with what it has: the bracket so far, marked `partial`.
pub async fn discover(
    s: Search,
    progress: &dyn Fn(String),
    stop: impl std::future::Future<Output = ()>,
) -> Result<IdleTimeout, NoEvidence> {
    tokio::pin!(stop);
    let start = Instant::now();
    let answer = answer_within(s.method, s.rtt);
    let budget = longest(s.method, s.max, s.rtt);
    // Past this nothing more can be learnt: a guard against a connection that never reports.
    let hard_stop = TokioInstant::from_std(start + budget + s.connect_timeout * 2);
    let resolution = (s.rtt * 4).max(Duration::from_millis(100));
    // The answer of a dead probe comes after `answer` (ETIMEDOUT, or the ping's timeout), a little
    // late by the kernel's timer slack: connections opened ahead for the next round are opened a
    // little later than the ideal, so they wait a few ms rather than overshoot.
    let answer_plan = answer + Duration::from_millis(100);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut run = Running {
        tasks: JoinSet::new(),
        aborts: HashMap::new(),
        held: Vec::new(),
        opening: HashMap::new(),
        tx,
        plan: conn::Plan {
            peer: s.peer,
            method: s.method,
            ping: std::sync::Arc::clone(&s.ping),
            answer_within: answer,
            connect_timeout: s.connect_timeout,
        },
        next_id: 0,
    };
    let mut partial = false;
    let mut bracket = Bracket::default();
    let mut evidence: Vec<Evidence> = Vec::new();
    let mut round = 0u32;
    // A connection's answer may come after its round ended (stopped, its answer already sent): it
    // is recorded with the round that tested it.
    let mut round_of: HashMap<usize, u32> = HashMap::new();
    let mut ran_out = false;
    'rounds: loop {
        // Held connections idle at or beyond a forgotten idle can tell nothing more.
        if let Some(h) = bracket.high {
            // Dropping its `go` closes it without a test (and without a FIN).
            let aborts = &mut run.aborts;
            run.held.retain(|c| {
                let old = c.born.elapsed() >= h;
                if old {
                    aborts.remove(&c.id);
                }
                !old
            });
        }
        let points = next_round(
            &bracket,
            round == 0,
            s.max,
            s.method.floor(),
            PER_ROUND,
            resolution,
        );
        let ages: Vec<Duration> = run.held.iter().map(|c| c.born.elapsed()).collect();
        let plan = assign(&points, &ages, start.elapsed(), budget, answer, s.rtt * 2);
        if plan.is_empty() {
            ran_out = !points.is_empty();
            break;
        }
        round += 1;
        progress(format!(
            "tcphb: round {round}: {} connections idle {} … {}",
            plan.len(),
            secs2(plan[0].0),
            secs2(plan[plan.len() - 1].0)
        ));
        let mut pending: HashMap<usize, Duration> = HashMap::new();
        let mut given: Vec<(usize, Duration)> = Vec::new();
        for &(x, u) in &plan {
            match u {
                Use::Held(i) => given.push((i, x)),
                Use::Fresh => {
                    let id = run.spawn(None, Some(x));
                    pending.insert(id, x);
                    round_of.insert(id, round);
                }
            }
        }
        // Hand the held connections their idle times, removing them from the pool (highest index
        // first, so the others keep theirs).
        given.sort_unstable_by_key(|(i, _)| std::cmp::Reverse(*i));
        for (i, x) in given {
            let c = run.held.remove(i);
            if c.go.send(x).is_ok() {
                pending.insert(c.id, x);
                round_of.insert(c.id, round);
            }
        }
        // A round of fresh connections opens the next round's ahead (see `ahead`).
        let fresh = plan.iter().all(|(_, u)| *u == Use::Fresh);
        if fresh && plan.len() >= 2 {
            let step = plan[plan.len() - 1].0 - plan[plan.len() - 2].0;
            let now = TokioInstant::now();
            // Finished tasks stay in the set until joined: reap them so the bound counts open ones.
            while run.tasks.try_join_next().is_some() {}
            for at in ahead(step, PER_ROUND, answer_plan) {
                if run.tasks.len() >= MAX_IN_FLIGHT {
                    break;
                }
                run.spawn(Some(now + at), None);
            }
        }
        while !pending.is_empty() {
            let msg = tokio::select! {
                m = rx.recv() => m,
                _ = sleep_until(hard_stop) => {
                    ran_out = true;
                    break 'rounds;
                }
                // The connections still open end with the JoinSet.
                _ = &mut stop => {
                    partial = true;
                    break 'rounds;
                }
            };
            let Some(msg) = msg else { break };
            match msg {
                conn::Msg::Ready { id, born } => {
                    if let Some(go) = run.opening.remove(&id) {
                        run.held.push(Held { id, born, go });
                    } else if let Some(h) = run.held.iter_mut().find(|h| h.id == id) {
                        h.born = born;
                    }
                }
                conn::Msg::Done {
                    id,
                    planned,
                    evidence: e,
                } => {
                    run.aborts.remove(&id);
                    let was_pending = pending.remove(&id).is_some();
                    run.stop(id);
                    if !was_pending && planned.is_none() && e.verdict == Verdict::Error {
                        // An ahead connection that could not open: nothing learnt, nothing lost.
                        continue;
                    }
                    let idled = Duration::from_millis(e.idled_ms);
                    progress(format!(
                        "tcphb:   idle {}: {}",
                        secs2(idled),
                        describe(&e, s.method, answer)
                    ));
                    bracket.update(idled, e.verdict);
                    if e.verdict.is_dead() {
                        // Longer idle times of this round can tell nothing more.
                        let longer: Vec<usize> = pending
                            .iter()
                            .filter(|(_, x)| **x > idled)
                            .map(|(id, _)| *id)
                            .collect();
                        for id in longer {
                            pending.remove(&id);
                            run.stop(id);
                        }
                    }
                    let round = round_of.get(&id).copied().unwrap_or(round);
                    evidence.push(Evidence { round, ..e });
                }
            }
        }
    }
    run.tasks.abort_all();
    evidence.sort_by_key(|e| (e.idled_ms, e.round));
    conclude(s, start, bracket, round, evidence, partial, ran_out, answer)
}

/// One verdict in words, for progress lines.
fn describe(e: &Evidence, method: Method, answer: Duration) -> String {
    match (e.verdict, method) {
        (Verdict::Alive, Method::Keepalive) => format!(
            "alive (the probe was ACKed in {:.1} ms)",
            e.reply_ms.unwrap_or(0.0)
        ),
        (Verdict::Alive, Method::Ping) => {
            format!("alive (answered in {:.1} ms)", e.reply_ms.unwrap_or(0.0))
        }
        (Verdict::Silent, _) => format!(
            "forgotten (no answer within {}{})",
            secs2(answer),
            e.errno
                .as_deref()
                .map(|x| format!(", {x}"))
                .unwrap_or_default()
        ),
        (Verdict::Closed, _) => format!(
            "closed by the server ({})",
            if e.answer == Answer::RstByServer {
                "RST"
            } else {
                "FIN"
            }
        ),
        (v, _) => format!(
            "{}{}",
            v.name().replace('_', " "),
            e.errno
                .as_deref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default()
        ),
    }
}

/// The report from the evidence: the bracket, the path's behaviour, the server's own close, notes.
#[allow(clippy::too_many_arguments)]
fn conclude(
    s: Search,
    start: Instant,
    bracket: Bracket,
    rounds: u32,
    evidence: Vec<Evidence>,
    partial: bool,
    ran_out: bool,
    answer: Duration,
) -> Result<IdleTimeout, NoEvidence> {
    let peer = s.peer;
    let mut notes = Vec::new();
    let closed: Vec<&Evidence> = evidence
        .iter()
        .filter(|e| e.verdict == Verdict::Closed)
        .collect();
    if !partial
        && !evidence
            .iter()
            .any(|e| e.verdict == Verdict::Alive || e.verdict.is_dead())
        && closed.is_empty()
    {
        let why = evidence.iter().find_map(|e| e.errno.clone());
        return Err(NoEvidence(match s.method {
            Method::Ping => format!(
                "no connection to {peer} answered `PING n` ({}): --idle-timeout needs a tcphb listen or an echo service there",
                why.unwrap_or_else(|| "no answer to the first PING".into())
            ),
            Method::Keepalive => format!(
                "no connection to {peer} could be tested with a keepalive probe ({})",
                why.unwrap_or_else(|| "every connection ended before its test".into())
            ),
        }));
    }
    // Contradictions: a longer idle that survived a shorter one that did not.
    if let Some(h) = bracket.high
        && let Some(a) = evidence
            .iter()
            .find(|e| e.verdict == Verdict::Alive && Duration::from_millis(e.idled_ms) > h)
    {
        notes.push(format!(
            "a connection idle {} survived although one idle {} did not: the path's timeout is not sharp (several middleboxes, or entries expired in batches)",
            secs2(Duration::from_millis(a.idled_ms)),
            secs2(h)
        ));
    }
    let spoke = evidence
        .iter()
        .filter(|e| e.verdict == Verdict::PeerSpoke)
        .count();
    if spoke > 0 {
        notes.push(match s.method {
            Method::Ping => format!(
                "{spoke} connections were not idle: the peer sent data (a tcphb listen with --heartbeat?); run it without, or use an echo service"
            ),
            Method::Keepalive => format!(
                "{spoke} connections were not idle: the server sent data on its own after its greeting, so its connections are never idle that long"
            ),
        });
    }
    let server_close = closed
        .iter()
        .min_by_key(|e| e.idled_ms)
        .map(|first| ServerClose {
            after_ms: first.idled_ms,
            latest_ms: closed.iter().map(|e| e.idled_ms).max().unwrap_or(0),
            how: if first.answer == Answer::RstByServer {
                ServerCloseHow::Rst
            } else {
                ServerCloseHow::Fin
            },
            connections: closed.len() as u32,
        });
    if let Some(c) = &server_close
        && bracket.high.is_none_or(|h| h.ms() > c.after_ms)
    {
        notes.push(format!(
            "the server closes idle connections itself after {} ({}): that ends them before the path's own idle timeout{}",
            secs2(Duration::from_millis(c.after_ms)),
            match c.how {
                ServerCloseHow::Fin => "FIN",
                ServerCloseHow::Rst => "RST",
            },
            if bracket.high.is_none() {
                ", which could not be measured beyond it against this server (its close came through, so the path kept the flow at least that long)"
            } else {
                ""
            }
        ));
    }
    if s.method == Method::Keepalive
        && bracket.high == Some(KEEPALIVE_FLOOR)
        && bracket.low.is_zero()
    {
        notes.push(
            "the path forgot a flow idle 1 s, the shortest a keepalive probe can test (TCP_KEEPIDLE is whole seconds): run against a tcphb listen or an echo service for shorter times".into(),
        );
    }
    // Out of time with a bracket still wider than 5 % of the timeout and 200 ms: say how to do better.
    let wide = bracket
        .high
        .is_some_and(|h| h - bracket.low > (h / 20).max(Duration::from_millis(200)));
    if ran_out && wide {
        notes.push(format!(
            "the search stopped at its time limit ({}): a longer --idle-timeout narrows the bracket further",
            secs2(longest(s.method, s.max, s.rtt))
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
        method: s.method,
        max_ms: s.max.ms(),
        low_ms: bracket.low.ms(),
        high_ms: bracket.high.map(|h| h.ms()),
        behaviour,
        server_close,
        reply_timeout_ms: answer.ms(),
        rounds,
        elapsed_ms: start.elapsed().ms(),
        evidence,
        notes,
        partial,
    })
}

/// Whether `peer` answers a heartbeat: `PING 1` on a connection of its own, answered by `PONG 1` or
/// an echo within the reply timeout for `rtt` ([`reply_timeout`]). Any failure (refused, silent,
/// closed, garbage) is a no.
pub async fn answers_ping(peer: SocketAddr, rtt: Duration, connect_timeout: Duration) -> bool {
    let Ok(Ok(mut stream)) = timeout(connect_timeout, crate::sockets::connect_plain(peer)).await
    else {
        return false;
    };
    let mut talk = conn::Talk::Line(Decoder::new());
    let ok = conn::ping(&mut stream, &mut talk, 1, reply_timeout(rtt))
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
        // The keepalive method cannot test under 1 s: the short points are raised to it, once.
        let r1 = next_round(&b, true, s(4.0), KEEPALIVE_FLOOR, 8, s(0.1));
        assert_eq!(r1[0], s(1.0));
        assert_eq!(r1[1], s(1.5));
        assert_eq!(r1.len(), 7);
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
        let r2 = next_round(&b, false, s(10.0), Duration::ZERO, 8, s(0.1));
        assert_eq!(r2.len(), 7);
        assert!(r2.iter().all(|p| *p > s(3.0) && *p < s(4.0)), "{r2:?}");
        assert_eq!(r2[0], Duration::from_millis(3125));
    }

    #[test]
    fn stops_when_narrow_enough_or_nothing_expired() {
        let narrow = Bracket {
            low: s(3.0),
            high: Some(s(3.05)),
        };
        assert!(next_round(&narrow, false, s(10.0), Duration::ZERO, 8, s(0.1)).is_empty());
        // Round 1 found nothing: the timeout is above MAX, done.
        let none = Bracket {
            low: s(8.0),
            high: None,
        };
        assert!(next_round(&none, false, s(8.0), Duration::ZERO, 8, s(0.1)).is_empty());
    }

    #[test]
    fn points_go_to_the_held_connection_idle_longest_under_them_or_to_fresh_ones_in_time() {
        let points = [s(2.0), s(3.0), s(4.0)];
        // 3.5 s idle serves 4 s; 2.9 s serves 3 s; nothing under 2 s is held: fresh.
        let ages = [s(2.9), s(3.5), s(0.5), s(4.5)];
        let a = assign(&points, &ages, s(1.0), s(20.0), s(1.0), s(0.01));
        assert_eq!(
            a,
            vec![
                (s(2.0), Use::Held(2)),
                (s(3.0), Use::Held(0)),
                (s(4.0), Use::Held(1))
            ]
        );
        // A held connection idle exactly as long as the point is too late to be told in time.
        let a = assign(&[s(3.0)], &[s(3.0)], s(1.0), s(20.0), s(1.0), s(0.01));
        assert_eq!(a, vec![(s(3.0), Use::Fresh)]);
        // Out of time: 10 s budget, 6 s gone, 1 s to answer: a fresh 4 s no longer fits, a held
        // connection 0.5 s from 4 s does.
        let a = assign(&[s(4.0)], &[], s(6.0), s(10.0), s(1.0), s(0.01));
        assert!(a.is_empty(), "{a:?}");
        let a = assign(&[s(4.0)], &[s(3.5)], s(6.0), s(10.0), s(1.0), s(0.01));
        assert_eq!(a, vec![(s(4.0), Use::Held(0))]);
    }

    /// The connections opened ahead are idle exactly the next round's points when the round ends,
    /// whichever gap the timeout is in.
    #[test]
    fn connections_opened_ahead_land_on_the_next_rounds_points() {
        let (max, answer) = (s(8.0), s(1.0));
        let r1 = next_round(&Bracket::default(), true, max, Duration::ZERO, 8, s(0.01));
        let step = r1[1] - r1[0];
        let opened = ahead(step, 8, answer);
        for gap in 0..r1.len() {
            let high = r1[gap];
            let low = if gap == 0 {
                Duration::ZERO
            } else {
                r1[gap - 1]
            };
            // Fresh connections opened at 0 probe at their idle; the round ends when the first
            // forgotten one is known.
            let ends = high + answer;
            let mut ages: Vec<Duration> = opened.iter().map(|o| ends - *o).collect();
            ages.sort();
            let b = Bracket {
                low,
                high: Some(high),
            };
            let r2 = next_round(&b, false, max, Duration::ZERO, 8, s(0.01));
            assert_eq!(ages, r2, "gap {gap}");
        }
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
        b.update(s(0.5), Verdict::Closed);
        assert_eq!(
            b,
            Bracket {
                low: s(1.0),
                high: Some(s(3.5))
            }
        );
        assert_eq!(reply_timeout(Duration::from_millis(3)), s(1.0));
        assert_eq!(reply_timeout(Duration::from_millis(300)), s(3.0));
        assert_eq!(
            answer_within(Method::Keepalive, Duration::from_millis(150)),
            s(2.0)
        );
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A whole search up to `max` seconds against `peer` on loopback, to its end.
    fn discover_on(peer: SocketAddr, method: Method, max: f64) -> IdleTimeout {
        let search = Search {
            peer,
            method,
            ping: crate::watch::line(),
            max: s(max),
            rtt: Duration::from_micros(50),
            connect_timeout: s(2.0),
        };
        runtime()
            .block_on(discover(search, &|_| {}, std::future::pending()))
            .unwrap()
    }

    /// The connections given an idle time to test (not those opened ahead and never used).
    fn tested(r: &IdleTimeout) -> Vec<&Evidence> {
        r.evidence
            .iter()
            .filter(|e| e.planned_idle_ms > 0)
            .collect()
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
        let start = Instant::now();
        let r = discover_on(addr, Method::Ping, 0.8);
        assert!(start.elapsed() < s(0.8) + s(1.0), "{:?}", start.elapsed());
        assert_eq!((r.high_ms, r.behaviour, r.rounds), (None, None, 1), "{r:?}");
        assert_eq!(r.method, Method::Ping);
        // The bracket is measured idle: a few ms over the planned 800 ms.
        assert!((800..850).contains(&r.low_ms), "{r:?}");
        let tested = tested(&r);
        assert_eq!(tested.len(), PER_ROUND, "{r:?}");
        assert!(
            tested
                .iter()
                .all(|e| e.verdict == Verdict::Alive && e.answer == Answer::Pong),
            "{r:?}"
        );
        assert!(
            tested.iter().all(|e| e.idled_ms >= e.planned_idle_ms),
            "{r:?}"
        );
    }

    /// A server that never says a word, on loopback: the kernel ACKs every keepalive probe, nothing
    /// expires, and the search takes MAX, not the sum of its idle times (8 of them, 1 … 2 s).
    #[test]
    fn loopback_keepalive_probes_are_acked_by_a_server_that_never_speaks() {
        if !crate::sys::capabilities().keepalive_probe {
            return;
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let start = Instant::now();
        let r = discover_on(addr, Method::Keepalive, 2.0);
        let took = start.elapsed();
        assert!(took >= s(2.0) && took < s(3.0), "{took:?}");
        assert_eq!((r.high_ms, r.behaviour, r.rounds), (None, None, 1), "{r:?}");
        assert_eq!(r.method, Method::Keepalive);
        assert!((2000..2050).contains(&r.low_ms), "{r:?}");
        let tested = tested(&r);
        assert!(tested.len() >= 5, "{r:?}");
        for e in &tested {
            assert_eq!(
                (e.verdict, e.answer),
                (Verdict::Alive, Answer::Ack),
                "{e:?}"
            );
            // Probed on time: never early, late by at most the poll and the scheduler.
            assert!(
                e.idled_ms >= e.planned_idle_ms && e.idled_ms < e.planned_idle_ms + 100,
                "{e:?}"
            );
        }
        drop(l);
    }

    /// A server that greets on connect (as SMTP, SSH and MySQL do) and then says nothing: the
    /// greeting restarts the idle clock instead of making the connection "not idle", and a server
    /// that keeps talking is not idle.
    #[test]
    fn a_greeting_restarts_the_idle_clock_but_a_chatty_server_is_not_idle() {
        use std::io::Write;
        if !crate::sys::capabilities().keepalive_probe {
            return;
        }
        let serve = |chatty: bool| {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            std::thread::spawn(move || {
                for c in l.incoming() {
                    let Ok(mut c) = c else { return };
                    std::thread::spawn(move || {
                        let _ = c.write_all(b"220 tcphb-test ready\r\n");
                        // A chatty server speaks again after 1.2 s: the behaviour under test.
                        if chatty {
                            std::thread::sleep(Duration::from_millis(1200));
                            let _ = c.write_all(b"250 still here\r\n");
                        }
                        std::thread::sleep(Duration::from_secs(5));
                    });
                }
            });
            addr
        };
        let r = discover_on(serve(false), Method::Keepalive, 1.5);
        assert!(!r.evidence.is_empty(), "{r:?}");
        for e in &r.evidence {
            assert_eq!(
                (e.verdict, e.answer),
                (Verdict::Alive, Answer::Ack),
                "{r:?}"
            );
        }
        let r = discover_on(serve(true), Method::Keepalive, 2.0);
        for e in &r.evidence {
            if e.planned_idle_ms > 1200 {
                assert_eq!(e.verdict, Verdict::PeerSpoke, "{r:?}");
                assert!((1150..1400).contains(&e.idled_ms), "{r:?}");
            }
        }
        assert!(
            r.notes.iter().any(|n| n.contains("sent data on its own")),
            "{r:?}"
        );
    }

    /// A server closing idle connections after 1.5 s (FIN): the connections idle longer are the
    /// server's own close with its time, not the path's expiry.
    #[test]
    fn a_server_closing_idle_connections_is_its_own_close_not_the_paths() {
        if !crate::sys::capabilities().keepalive_probe {
            return;
        }
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { return };
                std::thread::spawn(move || {
                    // The server's idle timeout: the behaviour under test, not sequencing.
                    std::thread::sleep(Duration::from_millis(1500));
                    drop(c);
                });
            }
        });
        let r = discover_on(addr, Method::Keepalive, 3.0);
        assert_eq!((r.high_ms, r.behaviour), (None, None), "{r:?}");
        let c = r.server_close.as_ref().expect("the server's close");
        assert_eq!(c.how, ServerCloseHow::Fin, "{r:?}");
        assert!(c.after_ms >= 1490 && c.after_ms < 1700, "{r:?}");
        // The server's 1.5 s is a thread's sleep, which a loaded machine wakes a few ms late: a
        // connection tested just past 1.5 s may still have been answered.
        assert!(r.low_ms < 1600, "{r:?}");
        assert!(
            r.evidence
                .iter()
                .filter(|e| e.verdict == Verdict::Closed)
                .all(|e| e.answer == Answer::FinByServer && e.idled_ms >= 1490),
            "{r:?}"
        );
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("closes idle connections itself after 1.")),
            "{r:?}"
        );
    }
}
