//! clap derive types for every subcommand; also the source of completions/ and man/.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::report::Format;
use crate::scenario::Load;
use crate::strategy::{
    Heartbeat, Keepalive, Protocol, Strategy, parse_bounded, parse_duration, parse_user_timeout,
};

/// Bounds of a run's durations, in ms: a deadline or warm-up of zero measures nothing, and one of
/// years is a typo.
const SECOND: u64 = 1000;
const HOUR: u64 = 3600 * SECOND;

/// Exit codes, the contract scripts rely on.
pub const EXIT_CODES: &str = "\
Exit codes:
  0    no dead connection seen (the peer stayed alive, or the comparison ran)
  1    error (e.g. connection refused, I/O failure, a peer that never answered a heartbeat, a
       failed TLS handshake)
  2    usage error (bad flag, malformed spec, out-of-range value, unresolvable host, port in use)
  3    a dead connection was detected: silence or reset, only that (connect: this one; listen and
       audit --watch: at least one)
  4    this environment cannot do what was asked (missing privilege, unsupported option)
  5    the peer closed the connection itself, not a death (connect: a FIN, or a RST answering
       nothing tcphb sent, with nothing cut, e.g. the server's own idle timeout, or a refusal in its
       protocol: an HTTP/2 GOAWAY, a refused MQTT CONNACK; listen counts such closes but does not
       exit 5)
  6    a promise broken: probe --detect-within D --verify measured the recommended settings in the
       lab and they missed D in a fault they claim to cover
  130  interrupted (Ctrl-C/SIGTERM) during compare, probe --idle-timeout/--recverr/--verify or
       connect --connections: what was measured so far is printed, marked partial (JSON
       \"partial\": true). For listen, audit --watch and a single connect, Ctrl-C is the normal way
       to stop: they exit 0 or 3.";

const ABOUT: &str = "How long until this side notices that the far end of a TCP connection died, which mechanism notices, and what would notice sooner";

const LONG_ABOUT: &str = "\
tcphb opens real TCP connections with chosen detection settings — TCP keepalive, TCP_USER_TIMEOUT,
application heartbeats — waits for the peer to die silently, and reports which mechanism noticed,
when, and what the theory predicted.";

const EXAMPLES: &str = "\
Examples:
  tcphb listen 127.0.0.1:7878 --heartbeat 1s,3
  tcphb connect 127.0.0.1:7878 --keepalive 5s,5s,3
  tcphb connect db:5432 --keepalive 5s,5s,3 --user-timeout 20s --load busy --format json";

/// tcphb: measure how long it takes to notice a dead TCP peer.
#[derive(Debug, Parser)]
#[command(name = "tcphb", version, about = ABOUT, long_about = LONG_ABOUT,
          after_help = format!("{EXAMPLES}\n\n{EXIT_CODES}"))]
pub struct Cli {
    /// Output format.
    #[arg(long, short = 'f', global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Accept connections, answer heartbeats (and send them with --heartbeat), report each dead client.
    #[command(after_help = format!("\
Prints one event per connection that ends (JSON lines with --format json) and a summary on
Ctrl-C/SIGTERM. When the reader of stdout goes (e.g. | head -n 1), it stops as if shut down and
prints the summary on stderr. The bound address is printed on stderr (useful with port 0). A client
that closes its connection is reported as closed by peer, not as dead; with --heartbeat, a client
that never answers a ping is closed by tcphb (it does not speak the protocol), not counted as dead.

Examples:
  tcphb listen 127.0.0.1:7878
  tcphb listen 0.0.0.0:7878 --heartbeat 1s,3 --format json
  tcphb listen [::1]:0 --keepalive 10s,5s,3

{EXIT_CODES}"))]
    Listen(ListenArgs),
    /// Connect to a peer and wait until it dies (or --duration passes), then report what noticed and when.
    #[command(after_help = format!("\
The peer can be a tcphb listen, an echo server, or any TCP service (without --heartbeat).
Only a dead peer (silence, or a reset) is a detection (exit 3). A peer that closes the connection
itself (a FIN: its own idle timeout, a proxy limit) is reported as outcome closed, closed by peer,
with how long the connection had been idle, never judged against the prediction (exit 5). With
--heartbeat, a peer that never answers a single ping (no PONG, no echo) does not speak the protocol:
an error (exit 1), not a death.

A real service is pinged in its own protocol with --ping: redis (PING → +PONG; -NOAUTH and -DENIED
still prove life), memcached (version), http (HEAD --path on one keep-alive connection; --path '*'
sends OPTIONS *), h2 (HTTP/2 PING frames, gRPC servers too: a GOAWAY \"too_many_pings\" is the
server refusing pings this often, exit 5), websocket (the upgrade on --path, then ping frames), mqtt
(CONNECT, then PINGREQ; a refused CONNACK is named, exit 5); --tls wraps any of them. A peer that
answers nothing in the protocol is an error (exit 1), never a death.

Examples:
  tcphb connect 127.0.0.1:7878 --keepalive 5s,5s,3
  tcphb connect 127.0.0.1:7878 --heartbeat 500ms,3 --duration 1m
  tcphb connect 127.0.0.1:6379 --heartbeat 1s,3 --ping redis
  tcphb connect api.example.com:443 --heartbeat 10s,3 --ping h2 --tls
  tcphb connect 127.0.0.1:8443 --heartbeat 5s,3 --ping http --path /healthz --tls --ca ca.pem
  tcphb connect 127.0.0.1:7878 --connections 1000 --heartbeat 1s,3 --format json
  tcphb connect db:5432 --keepalive 5s,5s,3 --user-timeout 20s --load busy --format json

{EXIT_CODES}"))]
    Connect(ConnectArgs),
    /// Build a private lab (client — router — server namespaces), cut the link for real, and print
    /// every strategy's detection time side by side (Linux; root or unprivileged user namespaces).
    #[command(after_help = format!("\
Rows are strategies, columns fault × load; each cell is the measured time from the cut to the
detection (median over --repeat, with min–max), the mechanism and errno that noticed, and a mark
where it differs from the prediction. A verdict per fault follows the table.

Strategy specs: none, os, ka=IDLE,INTERVAL,COUNT, uto=DURATION, hb=INTERVAL,MISSES, joined by '+',
optionally labelled: fast=ka=1s,1s,3+uto=2s.
Faults: {FAULTS}.

Examples:
  tcphb compare
  tcphb compare -s none -s os -s ka=1s,1s,3 -s 'ka=1s,1s,3+uto=2s' -s hb=500ms,3 \\
                --fault blackhole,unreachable,freeze,reboot --load idle,busy --repeat 5
  tcphb compare --fault nat-expiry --nat-idle 3s --format json
  tcphb compare -s ka=1s,1s,3 -s hb=500ms,3 --fault blackhole --svg timeline.svg

{EXIT_CODES}"))]
    Compare(CompareArgs),
    /// Report what decides dead-peer detection on a path: kernel defaults, measured RTT/RTO, effective
    /// settings, predictions per mechanism; recommend settings, find the path's idle timeout, watch for
    /// ICMP warnings.
    #[command(after_help = format!("\
Connects once to measure the path and read back the settings, then prints the host's TCP defaults,
the connection's measured RTT and RTO, and for each mechanism (none, the OS default keepalive, each
requested one, all of them together) when a silently dead peer would be noticed, idle and busy.
With --recverr the peer must answer `PING n` lines (a tcphb listen, or any echo service); the plain
probe, --detect-within and --idle-timeout work against any TCP service. With --os and no HOST:PORT
it opens nothing and predicts for that OS instead.

Examples:
  tcphb probe db.internal:5432 --keepalive 5s,5s,3 --user-timeout 20s
  tcphb probe db.internal:5432 --detect-within 30s
  tcphb probe 127.0.0.1:7878 --detect-within 6s --verify     (Linux, root: proven in the lab)
  tcphb probe 10.0.0.5:7878 --idle-timeout 15m
  tcphb probe 10.0.0.5:7878 --recverr --duration 30s --format json
  tcphb probe --os windows --keepalive 5500ms,3000ms      (SIO_KEEPALIVE_VALS 5500/3000: offline)

--detect-within D recommends settings whose predicted worst case — the high end of the band over
every timer phase, timer slack, an unreachable router's RTO-revert overshoot, plus 100 ms of margin,
counted from the last packet heard — is at most D in every fault they cover (blackhole,
unreachable, reboot, crash; freeze only with a heartbeat), idle and busy. It first asks the peer
`PING 1` (in --ping's protocol when given: the recommended heartbeat then speaks it) on a connection
of its own: a peer that answers (PONG or echo) gets a heartbeat in the
recommendation; one that does not is told that a frozen peer goes unnoticed. It prints what the
settings cost on an idle connection (packets and bytes per minute each way) and, with
--idle-timeout, how they sit against the path's idle timeout. --verify then runs the recommended
settings in the lab (Linux, root or user namespaces: the same lab as compare) under blackhole,
unreachable, reboot, freeze and crash, idle and busy, 3 runs each, and compares the worst silence
measured before each detection with D: exit 0 when it holds, 6 when it does not.

--idle-timeout MAX tests idle times up to MAX, each on a connection of its own, with one test
packet after that much idleness: a PING line if the peer answers `PING 1` (a ping in the service's
protocol with --ping PROTO, in the clear), else (Linux) the kernel's keepalive probe, which carries
no data (idle times from 1 s). An answer (PONG, or the ACK of the
probe) means the path still knew the flow; silence, a RST or an ICMP error means it forgot (which
one is reported). A FIN or RST while a connection idles is the server's own idle close, reported
apart with its time. Rounds narrow the bracket, the next round's connections opened ahead: about
MAX in all, at most MAX + 2 reply timeouts + 0.5 s, at most 24 connections at once.

A --detect-within that cannot be met on this path (under two round trips, or a worst case that does
not fit) prints the report with the reason and exits 2.

{EXIT_CODES}"))]
    Probe(ProbeArgs),
    /// Read the detection settings and live state of a running service's TCP connections (Linux),
    /// predict when each would notice a dead peer, and flag the ones at risk or already in trouble.
    #[command(after_help = format!("\
Lists the TCP connections held by the given processes (--pid, repeatable; their sockets are found in
/proc/PID/fd) or on a local port (--port), in this network namespace. For each: local and peer
address, state, the settings read back from the owner's socket exactly as it set them (keepalive,
user timeout: through pidfd_getfd, which needs root or CAP_SYS_PTRACE), the live state from
sock_diag (pending timer and when it fires, probes unanswered, retransmissions, queues, last heard),
when a dead peer would be noticed idle and busy on this connection's own RTT/RTO, and plain flags.
Read-only: audit never changes another process's sockets. Without the privilege to read the
settings it still shows the live state and says so in one line.

With --watch it follows those connections (and the ones opened later) and prints an event as each
one ends: dead (keepalive, user timeout, retransmissions, reset — judged from its last observed
timer, probes and retransmissions; a timer that was due dates the end exactly), closed by the peer
(FIN) or closed by its own process, with the prediction beside it; JSON lines with the same keys as
listen's events. The connections are looked at every 100 ms (less often on a host with very many
sockets, so that looking takes at most a tenth of a core); it exits 3 if any died.

Examples:
  sudo tcphb audit --pid $(pidof redis-server)
  sudo tcphb audit --port 5432 --detect-within 30s
  tcphb audit --pid 4242 --peer 10.0.0.7 --format json
  sudo tcphb audit --pid $(pidof redis-server) --watch --duration 10m --format json

{EXIT_CODES}"))]
    Audit(AuditArgs),
}

/// `tcphb audit`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).multiple(true).args(["pids", "port"]))]
pub struct AuditArgs {
    /// A process whose connections to audit (repeat for several).
    #[arg(long = "pid", short = 'p', value_name = "PID")]
    pub pids: Vec<u32>,
    /// Audit the connections on this local port (any process).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Only connections to this peer address (IP, without port).
    #[arg(long, value_name = "ADDR")]
    pub peer: Option<std::net::IpAddr>,
    /// Count the connections that would notice a dead peer later than this (idle or busy).
    #[arg(long, short = 'w', value_name = "DURATION", value_parser = parse_duration)]
    pub detect_within: Option<Duration>,
    /// Follow the connections (and those opened later) and print an event as each one ends: which
    /// mechanism ended it, judged from its last state, its silence before the end and the
    /// prediction beside it. Stops at Ctrl-C or after --duration.
    #[arg(long)]
    pub watch: bool,
    /// With --watch: stop after this long (100ms–30d). Default: until Ctrl-C.
    #[arg(long, short = 'd', value_name = "DURATION", requires = "watch", value_parser = parse_bounded::<100, { 30 * 24 * HOUR }>)]
    pub duration: Option<Duration>,
}

/// `compare --server`: a command that says where its port goes.
fn parse_server_command(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err(
            "empty command: e.g. --server 'redis-server --bind {addr} --port {port}'".into(),
        );
    }
    if !s.contains("{port}") {
        return Err(format!(
            "'{s}' has no {{port}}: put {{port}} (and {{addr}}) where the server takes the port (and address) to listen on, e.g. --server 'redis-server --bind {{addr}} --port {{port}}'"
        ));
    }
    Ok(s.to_string())
}

const FAULTS: &str =
    "blackhole, unreachable, prohibit, linkdown, reboot, freeze, crash, nat-expiry";

/// The strategies `compare` runs when none are given: one of each lesson.
pub const DEFAULT_STRATEGIES: [&str; 6] = [
    "none",
    "os",
    "ka=1s,1s,3",
    "uto=3s",
    "ka=1s,1s,3+uto=2s",
    "hb=500ms,3",
];

/// `tcphb compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A strategy spec to compare (repeat the flag for several). Default: none, os, ka=1s,1s,3,
    /// uto=3s, ka=1s,1s,3+uto=2s, hb=500ms,3.
    #[arg(long = "strategy", short = 's', value_name = "SPEC")]
    pub strategies: Vec<Strategy>,
    /// Faults to make, comma-separated.
    #[arg(
        long = "fault",
        value_enum,
        value_delimiter = ',',
        default_value = "blackhole,unreachable,freeze,reboot,crash"
    )]
    pub faults: Vec<crate::scenario::Fault>,
    /// Loads to run, comma-separated.
    #[arg(
        long = "load",
        short = 'l',
        value_enum,
        value_delimiter = ',',
        default_value = "idle,busy"
    )]
    pub loads: Vec<Load>,
    /// Runs per cell, each in a fresh lab; cells show the median and min–max.
    #[arg(long, short = 'r', default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub repeat: u32,
    /// After the cut, how long to wait before a cell is `never`.
    #[arg(long, value_name = "DURATION", value_parser = parse_bounded::<100, HOUR>, default_value = "8s")]
    pub deadline: Duration,
    /// Quiet time before the cut, so keepalive and heartbeats have been exchanged.
    #[arg(long, value_name = "DURATION", value_parser = parse_bounded::<100, { 10 * 60 * SECOND }>, default_value = "2s")]
    pub warmup: Duration,
    /// nat-expiry: how long the router keeps an idle flow (whole seconds).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "3s")]
    pub nat_idle: Duration,
    /// Run your own server in the lab's server namespace instead of `tcphb listen`, and measure when
    /// *it* notices each dead client (observed as `audit --watch` does). `{addr}` and `{port}` are
    /// replaced by the address and port it must listen on; run through `sh -c`. E.g.
    /// 'redis-server --bind {addr} --port {port} --save "" --tcp-keepalive 3'.
    #[arg(long, value_name = "CMD", value_parser = parse_server_command)]
    pub server: Option<String>,
    /// One wide table (fault × load columns) instead of one table per load fitted to 80 columns.
    #[arg(long)]
    pub wide: bool,
    /// Also draw a timeline per fault to FILE (SVG): a row per strategy and load, the packets each
    /// connection sent after the cut (keepalive probes, retransmissions, heartbeats), the instant it
    /// noticed, its predicted band and the deadline. The file is created before the lab is built.
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub svg: Option<std::path::PathBuf>,
}

/// Detection settings shared by every command that opens connections.
#[derive(Debug, Clone, Args)]
pub struct StrategyArgs {
    /// TCP keepalive: IDLE,INTERVAL,COUNT (e.g. 5s,5s,3), `os` for SO_KEEPALIVE with the system's
    /// defaults, or `off`. Durations: 500ms, 5s, 2m; a bare number means seconds.
    #[arg(
        long,
        short = 'k',
        value_name = "IDLE,INTERVAL,COUNT|os|off",
        default_value = "off"
    )]
    pub keepalive: Keepalive,
    /// TCP_USER_TIMEOUT (Linux): how long data may stay unacknowledged before the connection is dropped.
    #[arg(long, short = 'u', value_name = "DURATION", value_parser = parse_user_timeout)]
    pub user_timeout: Option<Duration>,
    /// Application heartbeat: send `PING n` every INTERVAL (in another protocol with --ping), declare
    /// the peer dead after MISSES intervals of silence.
    #[arg(long, short = 'H', value_name = "INTERVAL,MISSES")]
    pub heartbeat: Option<Heartbeat>,
}

impl StrategyArgs {
    /// The strategy these flags describe.
    pub fn strategy(&self) -> Strategy {
        Strategy {
            label: None,
            keepalive: self.keepalive,
            user_timeout: self.user_timeout,
            heartbeat: self.heartbeat,
        }
    }
}

/// How the heartbeat is spoken to a real service: its protocol, the HTTP path, TLS.
#[derive(Debug, Clone, Args)]
pub struct PingArgs {
    /// Speak the heartbeat in this service's own protocol (needs --heartbeat): redis (PING → +PONG),
    /// memcached (version), http (HEAD --path, or OPTIONS * with --path '*'), h2 (HTTP/2 PING
    /// frames; gRPC servers too), websocket (upgrade on --path, then ping frames), mqtt (CONNECT,
    /// then PINGREQ); line is tcphb's own `PING n`.
    #[arg(long = "ping", value_name = "PROTOCOL", default_value = "line",
          value_parser = clap::builder::TypedValueParser::map(
              clap::builder::PossibleValuesParser::new(Protocol::names()),
              |s: String| s.parse::<Protocol>().expect("a listed protocol")))]
    pub protocol: Protocol,
    /// The path an http heartbeat requests (`*`: OPTIONS *) and a websocket one upgrades on.
    #[arg(long, value_name = "PATH", default_value = "/", value_parser = parse_path)]
    pub path: String,
    /// Wrap the heartbeat's protocol in TLS (system roots; SNI and the name checked from HOST; ALPN
    /// h2 for --ping h2, http/1.1 for http and websocket).
    #[arg(long)]
    pub tls: bool,
    /// With --tls: trust the CA certificates in this PEM file instead of the system's roots (e.g. a
    /// self-signed server certificate).
    #[arg(long, value_name = "FILE", requires = "tls", value_hint = clap::ValueHint::FilePath)]
    pub ca: Option<std::path::PathBuf>,
    /// With --tls: do not verify the server's certificate at all (a test server; never in production).
    #[arg(long, requires = "tls", conflicts_with = "ca")]
    pub insecure: bool,
}

/// An HTTP path: `*`, or starting with `/`, without spaces or control characters (it goes on the
/// request line as written).
fn parse_path(s: &str) -> Result<String, String> {
    if s == "*" || (s.starts_with('/') && s.bytes().all(|b| b.is_ascii_graphic())) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "invalid path '{s}': write an absolute path such as / or /ws (no spaces), or * for OPTIONS *"
        ))
    }
}

/// `tcphb listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Address to listen on, e.g. 127.0.0.1:7878 or [::]:7878 (port 0 picks a free port).
    #[arg(value_name = "ADDR")]
    pub addr: String,
    #[command(flatten)]
    pub strategy: StrategyArgs,
    /// Hold at most this many connections; further ones are accepted and closed at once, and counted.
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_conns: u32,
    /// Close connections with RST (SO_LINGER 0) when this process ends, even by SIGKILL — as a
    /// rebooting host forgets them — instead of the usual FIN.
    #[arg(long)]
    pub rst_on_exit: bool,
    /// Fix each connection's receive buffer at SIZE bytes (SO_RCVBUF; the kernel doubles it for
    /// its own overhead) instead of letting it grow: when this process is frozen (SIGSTOP), a
    /// busy client's window then closes within a fraction of a second. The lab's peer uses 256 KiB.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(4096..=(64 << 20)))]
    pub rcvbuf: Option<u32>,
}

/// `tcphb connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The peer, HOST:PORT (a name, IPv4 or [IPv6]).
    #[arg(value_name = "HOST:PORT")]
    pub peer: String,
    #[command(flatten)]
    pub strategy: StrategyArgs,
    #[command(flatten)]
    pub ping: PingArgs,
    /// idle: send nothing but probes/heartbeats; busy: keep writing, so data is in flight when the link dies.
    #[arg(long, short = 'l', value_enum, default_value_t = Load::Idle)]
    pub load: Load,
    /// Stop watching after this long and exit 0 if the peer is still alive (default: watch until it dies).
    #[arg(long, short = 'd', value_name = "DURATION", value_parser = parse_bounded::<100, { 30 * 24 * HOUR }>)]
    pub duration: Option<Duration>,
    /// Give up connecting after this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_bounded::<100, { 10 * 60 * SECOND }>, default_value = "10s")]
    pub connect_timeout: Duration,
    /// Open this many connections with the same strategy and report the distribution (e.g. to load a
    /// `tcphb listen`); the open-file limit is raised as needed.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub connections: u32,
}

/// An operating system `probe --os` predicts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OsArg {
    Linux,
    Macos,
    Windows,
}

impl From<OsArg> for crate::settings::Os {
    fn from(o: OsArg) -> Self {
        match o {
            OsArg::Linux => crate::settings::Os::Linux,
            OsArg::Macos => crate::settings::Os::Macos,
            OsArg::Windows => crate::settings::Os::Windows,
        }
    }
}

/// `probe --idle-method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IdleMethodArg {
    Auto,
    Ping,
    Keepalive,
}

/// `tcphb probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The peer, HOST:PORT (a name, IPv4 or [IPv6]). Not with --os.
    #[arg(value_name = "HOST:PORT", required_unless_present = "os")]
    pub peer: Option<String>,
    #[command(flatten)]
    pub strategy: StrategyArgs,
    #[command(flatten)]
    pub ping: PingArgs,
    /// Predict offline what the strategy flags do on this OS, with its defaults and rules (Windows
    /// keepalive in ms with 10 fixed probes; macOS whole seconds, TCP_RXT_CONNDROPTIME for the user
    /// timeout): no HOST:PORT, no socket opened.
    #[arg(long, value_enum, value_name = "OS", conflicts_with_all = ["peer", "detect_within", "idle_timeout", "recverr", "verify"])]
    pub os: Option<OsArg>,
    /// Recommend settings (printed as flags) that notice a dead peer within this long, idle or busy, on
    /// this path — and keep idle traffic under the idle timeout found by --idle-timeout.
    #[arg(long, short = 'w', value_name = "DURATION", value_parser = crate::recommend::parse_deadline)]
    pub detect_within: Option<Duration>,
    /// With --detect-within: run the recommended settings in the lab (the faults of compare, idle and
    /// busy, 3 runs each) and check the measured worst case against the deadline; exit 6 if missed.
    #[arg(long, requires = "detect_within")]
    pub verify: bool,
    /// Find how long the path keeps an idle connection (NAT/firewall idle timeout), trying idle times up
    /// to MAX; the run takes about MAX (at most MAX plus two reply timeouts and 0.5 s). Against any
    /// TCP server: a peer that answers PING lines is tested with them, any other with the kernel's
    /// keepalive probe (Linux, idle times from 1 s). A server closing idle connections itself is
    /// reported apart, with its time.
    #[arg(long, short = 'i', value_name = "MAX", value_parser = crate::idle::parse_max)]
    pub idle_timeout: Option<Duration>,
    /// The test packet of --idle-timeout: `ping` (a PING line: tcphb listen, echo services; with
    /// --ping PROTO the service's own ping), `keepalive` (a TCP keepalive probe, no data: any TCP
    /// server; Linux), or `auto`: ping if the peer answers one, else keepalive.
    #[arg(
        long,
        value_enum,
        value_name = "METHOD",
        default_value = "auto",
        requires = "idle_timeout"
    )]
    pub idle_method: IdleMethodArg,
    /// Linux: set IP_RECVERR, keep the connection busy for --duration, and report ICMP errors from
    /// routers as they arrive (soft errors: the connection is not dead yet). Needs a tcphb listen or an
    /// echo service (it sends DATA lines).
    #[arg(long)]
    pub recverr: bool,
    /// How long --recverr keeps the connection busy.
    #[arg(long, short = 'd', value_name = "DURATION", value_parser = parse_bounded::<100, HOUR>, default_value = "10s", requires = "recverr")]
    pub duration: Duration,
    /// Give up connecting after this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_bounded::<100, { 10 * 60 * SECOND }>, default_value = "10s")]
    pub connect_timeout: Duration,
}
