//! One cell of a comparison: a lab, a `tcphb listen` peer process in its server namespace, the
//! client connections under test, and the one function that makes each Fault happen there.
//!
//! The peer is a real process so that `freeze` is a real SIGSTOP (its kernel keeps ACKing) and `crash`
//! a real SIGKILL (its kernel sends FIN, or RST over unread data). It gets PR_SET_PDEATHSIG so it dies
//! with us, even when we are SIGKILLed, and never keeps a namespace alive.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use socket2::{Domain, Protocol, Socket, Type};

use super::{Lab, LabError, Node, PathFault};
use crate::scenario::Fault;
use crate::settings::{self, Effective};
use crate::strategy::Strategy;
use crate::sys;

/// The peer's receive buffer (SO_RCVBUF; see `tcphb listen --rcvbuf`).
pub const PEER_RCVBUF: u32 = 256 * 1024;

/// Port the peer listens on in the server namespace.
const PEER_PORT: u16 = 7878;

/// A lab with a live peer, ready for connections and one fault.
pub struct Cell {
    lab: Lab,
    peer: Child,
    fault: Fault,
    /// `compare --server`: the operator's server, observed.
    server: Option<Server>,
}

/// The operator's server (`compare --server`) in the server namespace.
pub struct Server {
    /// A sock_diag socket opened in the server namespace: its connections, seen from there.
    pub table: crate::sys::TcpTable,
}

/// Most of a server's output kept for an error message.
const SERVER_OUTPUT_TAIL: usize = 2048;

/// How long the operator's server may take to listen.
const SERVER_START: Duration = Duration::from_secs(15);

/// Start `tcphb listen` in the server namespace and wait until it says it listens.
fn start_listen(lab: &Lab, fault: Fault) -> Result<Child, LabError> {
    let exe = std::env::current_exe().map_err(|e| setup("find the tcphb executable", e))?;
    let mut cmd = Command::new(exe);
    cmd.args(["listen", &format!("{}:{PEER_PORT}", lab.server_addr())]);
    // A fixed receive buffer: when the peer is frozen, a busy client fills its window within
    // about 0.2 s at the busy rate, however far autotuning would have grown it.
    cmd.args(["--rcvbuf", &PEER_RCVBUF.to_string()]);
    if fault == Fault::Reboot {
        // A rebooting host forgets its connections without a word: no orphaned FIN_WAIT
        // sockets that would still answer after the path heals.
        cmd.arg("--rst-on-exit");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut peer = spawn_in(
        lab,
        &mut cmd,
        "start the peer (tcphb listen) in the server namespace",
    )?;
    let mut banner = String::new();
    let stderr = peer.stderr.take().expect("piped");
    let read = BufReader::new(stderr).read_line(&mut banner);
    if read.is_err() || !banner.contains("listening on") {
        let _ = peer.kill();
        let _ = peer.wait();
        return Err(setup(
            "start the peer (tcphb listen) in the server namespace",
            std::io::Error::other(format!("it said {:?}", banner.trim())),
        ));
    }
    Ok(peer)
}

/// Start the operator's server command (`{addr}`, `{port}` filled in) through `sh -c 'exec …'`, so
/// that the process signalled for freeze and crash is the server itself, and wait until a socket
/// listens on the port in the server namespace (an event, not a guess of its start-up time).
fn start_server(lab: &Lab, template: &str) -> Result<(Child, Server), LabError> {
    let line = template
        .replace("{addr}", &lab.server_addr().to_string())
        .replace("{port}", &PEER_PORT.to_string());
    let step = format!("start the server `{line}` in the server namespace");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &format!("exec {line}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_in(lab, &mut cmd, &step)?;
    let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        // Read for as long as it runs, so a chatty server never blocks on a full pipe.
        let tail = std::sync::Arc::clone(&output);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                t.push_str(&line);
                t.push('\n');
                if t.len() > SERVER_OUTPUT_TAIL {
                    let cut = t.len() - SERVER_OUTPUT_TAIL;
                    let cut = (cut..t.len()).find(|&i| t.is_char_boundary(i)).unwrap_or(0);
                    t.drain(..cut);
                }
            }
        });
    }
    let mut table = lab
        .enter(Node::Server, crate::sys::TcpTable::open)?
        .map_err(|e| setup("open sock_diag in the server namespace", e))?;
    let started = std::time::Instant::now();
    let said = |output: &std::sync::Arc<std::sync::Mutex<String>>| {
        let t = output.lock().unwrap_or_else(|p| p.into_inner());
        match t.trim() {
            "" => "it printed nothing".to_string(),
            t => format!("it printed: {}", t.lines().last().unwrap_or(t)),
        }
    };
    loop {
        if table
            .listens_on(PEER_PORT)
            .map_err(|e| setup("list the server namespace's sockets", e))?
        {
            return Ok((child, Server { table }));
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(setup(
                &step,
                std::io::Error::other(format!(
                    "it exited ({status}) before listening on port {PEER_PORT}; {}",
                    said(&output)
                )),
            ));
        }
        if started.elapsed() > SERVER_START {
            let _ = child.kill();
            let _ = child.wait();
            return Err(setup(
                &step,
                std::io::Error::other(format!(
                    "nothing listened on port {PEER_PORT} within {}s: does the command use {{port}}? {}",
                    SERVER_START.as_secs(),
                    said(&output)
                )),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Spawn `cmd` in the server namespace, dying with us (PR_SET_PDEATHSIG), so it never keeps a
/// namespace alive.
fn spawn_in(lab: &Lab, cmd: &mut Command, step: &str) -> Result<Child, LabError> {
    lab.command_in(Node::Server, cmd)?;
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec here.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| setup(step, e))
}

fn setup(step: &str, source: std::io::Error) -> LabError {
    LabError::Setup {
        step: step.to_string(),
        source,
    }
}

impl Cell {
    /// Build the lab, arm `nat-expiry` when that is the fault (middlebox forgets flows idle for
    /// `nat_idle`), and start the peer — `tcphb listen`, or the operator's `server` command
    /// (`compare --server`) — waiting until it listens.
    pub fn new(fault: Fault, nat_idle: Duration, server: Option<&str>) -> Result<Cell, LabError> {
        let lab = Lab::build()?;
        if fault == Fault::NatExpiry {
            lab.enable_nat_expiry(nat_idle)?;
        }
        let (peer, server) = match server {
            None => (start_listen(&lab, fault)?, None),
            Some(cmd) => {
                let (child, server) = start_server(&lab, cmd)?;
                (child, Some(server))
            }
        };
        Ok(Cell {
            lab,
            peer,
            fault,
            server,
        })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::from((self.lab.server_addr(), PEER_PORT))
    }

    /// The kernel facts in force in the lab's client namespace, the same facts `probe` reports for
    /// the host (a fresh namespace has the kernel's defaults, not the host's tuning).
    pub fn facts(&self) -> Result<settings::HostFacts, LabError> {
        self.lab.enter(Node::Client, crate::sys::host_facts)
    }

    /// The kernel timers in force in the lab's client namespace (a fresh namespace has the kernel's
    /// defaults, not the host's tuning).
    pub fn kernel_timers(&self) -> Result<crate::settings::KernelTimers, LabError> {
        self.lab.enter(Node::Client, crate::sys::kernel_timers)
    }

    /// Open a connection from the client namespace with `strategy` applied, from client address
    /// `slot` (each connection of a cell its own: see [`Lab::client_source`]); blocking, so call it
    /// before the measurement starts.
    pub fn connect(
        &self,
        strategy: &Strategy,
        slot: usize,
    ) -> Result<(TcpStream, Effective), LabError> {
        let source = self.lab.client_source(slot)?;
        let sock = self
            .lab
            .enter(Node::Client, || {
                crate::sockets::tcp_socket(self.peer_addr())
            })?
            .map_err(|e| setup("create a socket in the client namespace", e))?;
        debug_assert_eq!(
            self.lab
                .node_of_socket(std::os::fd::AsFd::as_fd(&sock))
                .ok()
                .flatten(),
            Some(Node::Client),
            "lab sockets live in the lab's client namespace"
        );
        let eff =
            sys::apply(&sock, strategy).map_err(|e| setup(&format!("apply {strategy}"), e))?;
        sock.bind(&SocketAddr::from((source, 0)).into())
            .map_err(|e| setup(&format!("bind to client address {source}"), e))?;
        sock.connect_timeout(&self.peer_addr().into(), Duration::from_secs(3))
            .map_err(|e| setup(&format!("connect to the peer {}", self.peer_addr()), e))?;
        sock.set_tcp_nodelay(true)
            .map_err(|e| setup("set TCP_NODELAY", e))?;
        sock.set_nonblocking(true)
            .map_err(|e| setup("set non-blocking", e))?;
        Ok((sock.into(), eff))
    }

    /// A raw ICMP socket in the client's namespace: it sees every ICMP error the client receives,
    /// so a cell's connections can be shown the router's errors whatever the kernel does with them.
    pub fn icmp_socket(&self) -> Result<Socket, LabError> {
        self.lab
            .enter(Node::Client, || {
                Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
            })?
            .map_err(|e| setup("open a raw ICMP socket in the client namespace", e))
    }

    /// The keepalive timer of every client connection at this instant, by local address, read
    /// from the client namespace's `/proc/net/tcp` (the kernel's own view: timer, expiry, probes).
    pub fn keepalive_timers(&self) -> Result<Vec<(SocketAddr, KernelTimer)>, LabError> {
        Ok(self
            .proc_net_tcp(Node::Client, "client")?
            .into_iter()
            .map(|s| (s.local, s.timer))
            .collect())
    }

    /// Every IPv4 TCP socket of a namespace, as its `/proc/net/tcp` shows it.
    fn proc_net_tcp(&self, node: Node, name: &str) -> Result<Vec<ProcTcp>, LabError> {
        let text = self
            .lab
            .enter(node, || {
                std::fs::read_to_string("/proc/thread-self/net/tcp")
            })?
            .map_err(|e| setup(&format!("read /proc/net/tcp in the {name} namespace"), e))?;
        Ok(parse_proc_net_tcp_all(&text))
    }

    /// Stop the peer (SIGSTOP) ahead of a busy `crash`, so that what arrives next stays unread.
    pub fn stop_peer(&self) -> Result<(), LabError> {
        self.signal_peer(Signal::SIGSTOP)
    }

    /// The peer's connections: how many hold unread data in their receive queue, of how many
    /// established, read from the server namespace's `/proc/net/tcp`.
    pub fn peer_unread(&self) -> Result<(usize, usize), LabError> {
        Ok(unread_counts(
            &self.proc_net_tcp(Node::Server, "server")?,
            PEER_PORT,
        ))
    }

    fn signal_peer(&self, sig: Signal) -> Result<(), LabError> {
        kill(Pid::from_raw(self.peer.id() as i32), sig)
            .map_err(|e| setup(&format!("send {sig} to the peer"), e.into()))
    }

    /// Make the fault happen, now. For `reboot` this is the first half (cut, peer forgets); call
    /// [`Cell::heal`] later to restore the path so the peer can answer RST.
    pub fn cut(&mut self) -> Result<(), LabError> {
        match self.fault {
            Fault::Blackhole => self.lab.cut(PathFault::Blackhole),
            Fault::Unreachable => self.lab.cut(PathFault::Unreachable),
            Fault::Prohibit => self.lab.cut(PathFault::Prohibit),
            Fault::Linkdown => self.lab.cut(PathFault::LinkDown),
            Fault::Freeze => self.signal_peer(Signal::SIGSTOP),
            Fault::Crash => self.signal_peer(Signal::SIGKILL),
            Fault::Reboot => {
                // The path goes first so the dying peer's FIN/RST are lost: its connections are
                // forgotten without a word, as when a host reboots.
                self.lab.cut(PathFault::Blackhole)?;
                self.signal_peer(Signal::SIGKILL)?;
                let _ = self.peer.wait();
                if self.server.is_some() {
                    // The operator's server left orphaned sockets behind (tcphb listen resets its
                    // own): destroy them, as a reboot does, so the healed path meets a host that
                    // knows nothing and answers RST.
                    self.forget_connections()?;
                }
                Ok(())
            }
            // The middlebox was armed at build: flows idle longer than its timeout are forgotten.
            Fault::NatExpiry => Ok(()),
        }
    }

    /// Destroy every TCP socket left in the server namespace (`ss -K`, SOCK_DESTROY): their RSTs
    /// go into the cut path, lost.
    fn forget_connections(&self) -> Result<(), LabError> {
        let mut cmd = Command::new("ss");
        cmd.args(["-K", "-t", "-n", "-a"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.lab.command_in(Node::Server, &mut cmd)?;
        cmd.status()
            .map_err(|e| setup("destroy the server's sockets (ss -K)", e))?;
        Ok(())
    }

    /// The operator's server (`compare --server`) and its pid, when it runs instead of `tcphb
    /// listen`; `None` for faults that stop or kill it (it can notice nothing then).
    pub fn observed_server(&mut self) -> Option<(&mut Server, u32)> {
        if matches!(self.fault, Fault::Freeze | Fault::Crash | Fault::Reboot) {
            return None;
        }
        let pid = self.peer.id();
        self.server.as_mut().map(|s| (s, pid))
    }

    /// The server's client address for connection `slot` (each connection has its own).
    pub fn client_source(&self, slot: usize) -> Result<std::net::Ipv4Addr, LabError> {
        self.lab.client_source(slot)
    }

    /// Second half of `reboot`: the path is back, the rebooted peer answers RST to what it no longer knows.
    pub fn heal(&self) -> Result<(), LabError> {
        if self.fault == Fault::Reboot {
            self.lab.heal(PathFault::Blackhole)?;
        }
        Ok(())
    }
}

/// One socket's timer as `/proc/net/tcp` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelTimer {
    /// 0 none, 1 retransmission, 2 keepalive (`sk_timer`), 3 TIME_WAIT, 4 zero-window probe.
    pub kind: u8,
    /// Until it fires (10 ms resolution: clock ticks).
    pub due_in: Duration,
    /// Keepalive or zero-window probes out (`icsk_probes_out`).
    pub probes_out: u32,
}

/// One socket as a line of `/proc/net/tcp` shows it.
struct ProcTcp {
    local: SocketAddr,
    /// State 01.
    established: bool,
    /// Bytes received and not yet read.
    rx_queue: u32,
    timer: KernelTimer,
}

/// Parse a whole `/proc/net/tcp` text (its header line skipped).
fn parse_proc_net_tcp_all(text: &str) -> Vec<ProcTcp> {
    text.lines()
        .skip(1)
        .filter_map(parse_proc_net_tcp)
        .collect()
}

/// Parse one line of `/proc/net/tcp`.
fn parse_proc_net_tcp(line: &str) -> Option<ProcTcp> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (ip, port) = f.get(1)?.split_once(':')?;
    // The address is the __be32 printed as a native integer: its native bytes are the address.
    let ip = std::net::Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes());
    let port = u16::from_str_radix(port, 16).ok()?;
    // Field 4 is `tx_queue:rx_queue`, both hex.
    let (_, rx) = f.get(4)?.split_once(':')?;
    let (kind, when) = f.get(5)?.split_once(':')?;
    let ticks = u64::from_str_radix(when, 16).ok()?;
    Some(ProcTcp {
        local: SocketAddr::from((ip, port)),
        established: *f.get(3)? == "01",
        rx_queue: u32::from_str_radix(rx, 16).ok()?,
        timer: KernelTimer {
            kind: u8::from_str_radix(kind, 16).ok()?,
            // USER_HZ is 100 on every Linux ABI.
            due_in: Duration::from_millis(ticks * 10),
            probes_out: f.get(8)?.parse().ok()?,
        },
    })
}

/// Of the established connections on local port `port`: how many have bytes in their receive
/// queue, and how many there are.
fn unread_counts(sockets: &[ProcTcp], port: u16) -> (usize, usize) {
    let ours: Vec<&ProcTcp> = sockets
        .iter()
        .filter(|s| s.established && s.local.port() == port)
        .collect();
    (ours.iter().filter(|s| s.rx_queue > 0).count(), ours.len())
}

impl Drop for Cell {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.peer.id() as i32);
        let _ = kill(pid, Signal::SIGCONT);
        let _ = self.peer.kill();
        let _ = self.peer.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_established_peer_sockets_holding_unread_bytes() {
        let head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        let line = |port: u16, st: &str, rx: u32| {
            format!(
                "   0: 0A0012C6:{port:04X} 0A0012C6:A1B2 {st} 00000000:{rx:08X} 00:00000000 00000000     0        0 1 1 0 20 4 30 10 -1\n"
            )
        };
        let listening = line(7878, "0A", 0);
        let full = line(7878, "01", 1448);
        let empty = line(7878, "01", 0);
        let other = line(22, "01", 0);
        let counts = |text: String| unread_counts(&parse_proc_net_tcp_all(&text), 7878);
        assert_eq!(counts(format!("{head}{listening}{full}{other}")), (1, 1));
        assert_eq!(counts(format!("{head}{full}{empty}")), (1, 2));
        assert_eq!(counts(format!("{head}{listening}")), (0, 0));
    }

    #[test]
    fn reads_a_keepalive_timer_line() {
        let ip = u32::from_ne_bytes([198, 18, 0, 10]);
        let line = format!(
            "   3: {ip:08X}:A1B2 020112C6:1ECE 01 00000000:00000000 02:000000E3 00000000     0        2 12345 1 0000000000000000 20 4 30 10 -1"
        );
        let ProcTcp {
            local: addr,
            timer: t,
            ..
        } = parse_proc_net_tcp(&line).unwrap();
        assert_eq!(addr, "198.18.0.10:41394".parse().unwrap());
        assert_eq!(t.kind, 2);
        assert_eq!(t.due_in, Duration::from_millis(2270));
        assert_eq!(t.probes_out, 2);
    }
}
