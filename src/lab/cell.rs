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
}

fn setup(step: &str, source: std::io::Error) -> LabError {
    LabError::Setup {
        step: step.to_string(),
        source,
    }
}

impl Cell {
    /// Build the lab, arm `nat-expiry` when that is the fault (middlebox forgets flows idle for
    /// `nat_idle`), and start the peer, waiting until it listens.
    pub fn new(fault: Fault, nat_idle: Duration) -> Result<Cell, LabError> {
        let lab = Lab::build()?;
        if fault == Fault::NatExpiry {
            lab.enable_nat_expiry(nat_idle)?;
        }
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
        lab.command_in(Node::Server, &mut cmd)?;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec here.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut peer = cmd
            .spawn()
            .map_err(|e| setup("start the peer (tcphb listen) in the server namespace", e))?;
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
        Ok(Cell { lab, peer, fault })
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
        let text = self
            .lab
            .enter(Node::Client, || {
                std::fs::read_to_string("/proc/thread-self/net/tcp")
            })?
            .map_err(|e| setup("read /proc/net/tcp in the client namespace", e))?;
        Ok(text
            .lines()
            .skip(1)
            .filter_map(parse_proc_net_tcp)
            .collect())
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
                Ok(())
            }
            // The middlebox was armed at build: flows idle longer than its timeout are forgotten.
            Fault::NatExpiry => Ok(()),
        }
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

/// Parse one line of `/proc/net/tcp`: local address and its timer.
fn parse_proc_net_tcp(line: &str) -> Option<(SocketAddr, KernelTimer)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (ip, port) = f.get(1)?.split_once(':')?;
    // The address is the __be32 printed as a native integer: its native bytes are the address.
    let ip = std::net::Ipv4Addr::from(u32::from_str_radix(ip, 16).ok()?.to_ne_bytes());
    let port = u16::from_str_radix(port, 16).ok()?;
    let (kind, when) = f.get(5)?.split_once(':')?;
    let ticks = u64::from_str_radix(when, 16).ok()?;
    Some((
        SocketAddr::from((ip, port)),
        KernelTimer {
            kind: u8::from_str_radix(kind, 16).ok()?,
            // USER_HZ is 100 on every Linux ABI.
            due_in: Duration::from_millis(ticks * 10),
            probes_out: f.get(8)?.parse().ok()?,
        },
    ))
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
    fn reads_a_keepalive_timer_line() {
        let ip = u32::from_ne_bytes([198, 18, 0, 10]);
        let line = format!(
            "   3: {ip:08X}:A1B2 020112C6:1ECE 01 00000000:00000000 02:000000E3 00000000     0        2 12345 1 0000000000000000 20 4 30 10 -1"
        );
        let (addr, t) = parse_proc_net_tcp(&line).unwrap();
        assert_eq!(addr, "198.18.0.10:41394".parse().unwrap());
        assert_eq!(t.kind, 2);
        assert_eq!(t.due_in, Duration::from_millis(2270));
        assert_eq!(t.probes_out, 2);
    }
}
