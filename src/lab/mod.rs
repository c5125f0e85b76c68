//! The lab: client A — router R — server B in three anonymous network namespaces, and the faults
//! that cut the path between them.
//!
//! ```text
//!   A (Client)                     R (Router)                      B (Server)
//!   eth0 198.18.0.2/24 ──veth── to-client 198.18.0.1/24
//!                                  to-server 198.18.1.1/24 ──veth── eth0 198.18.1.2/24
//!   default via 198.18.0.1         ip_forward = 1                   default via 198.18.1.1
//! ```
//!
//! The namespaces are held only by file descriptors of this process, never mounted under
//! `/run/netns`, so they vanish (with their veths, routes and nftables rules) when the [`Lab`] is
//! dropped or the process dies, even by `SIGKILL`. The host's own namespace is never changed.
//! Sockets are made inside a node with [`Lab::enter`], and keep that node's namespace for life.

mod cell;
pub mod compare;
mod fault;
mod netlink;
mod netns;
mod privilege;
mod server;
mod timeline;

pub use cell::{Cell, KernelTimer};

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

pub use fault::PathFault;
pub use netns::{current_netns_id, socket_netns_id};
pub use privilege::ensure_lab_privileges;

use netlink::Rtnl;
use netns::NetnsGuard;

/// Interface index of the client's and the server's `eth0`, and of R's side towards the client.
/// Fixed at creation so no request needs an index lookup.
pub(crate) const CLIENT_IF_INDEX: u32 = 100;
/// Interface index of R's side towards the server.
const ROUTER_SERVER_IF_INDEX: u32 = 100 + 1;

/// Routing table in R holding the fault routes; consulted only for packets arriving on R's lab
/// links, by two rules at this priority (before `main` at 32766).
pub(crate) const FAULT_TABLE: u8 = 100;
const FAULT_RULE_PRIORITY: u32 = 100;

// 198.18.0.0/15 is reserved for benchmarking (RFC 2544), so it cannot collide with a real
// network the host might route to, and nothing here is reachable from the host anyway.
const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const ROUTER_CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const ROUTER_SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const PREFIX: u8 = 24;
/// Connections under test each get their own client address from here on (198.18.0.10, .11, …).
/// R's ICMP errors for unreachable/prohibit routes come from `ip_error`, which rate-limits per
/// *source host* with the kernel-wide `net.ipv4.route.error_cost`/`error_burst` (1 s, burst 5; not
/// per namespace, so the lab cannot and must not change them). Connections sharing one address
/// shared that budget: whichever connection's segments reached R first took the burst, and a
/// `uto=2s` busy connection could give up before any ICMP reached it (ETIMEDOUT instead of
/// EHOSTUNREACH), depending on how fast each busy writer ran. One address each makes every
/// connection's ICMP evidence its own, as if it were alone on the path.
const FIRST_SOURCE_HOST: u8 = 10;
/// Most per-connection client addresses (198.18.0.10 … 198.18.0.249).
pub const MAX_SOURCES: usize = 240;

/// Sysctls reported by [`Lab::facts`], read in the client's namespace. Missing ones (older
/// kernels) are skipped.
const FACT_SYSCTLS: &[&str] = &[
    "net.ipv4.tcp_retries1",
    "net.ipv4.tcp_retries2",
    "net.ipv4.tcp_syn_retries",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rto_min_us",
    "net.ipv4.tcp_rto_max_ms",
    "net.ipv4.tcp_frto",
    "net.ipv4.tcp_thin_linear_timeouts",
    "net.ipv4.tcp_orphan_retries",
    "net.ipv4.tcp_fin_timeout",
];

/// A machine in the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// A: where the connection under test starts.
    Client,
    /// R: forwards between A and B; faults are made here.
    Router,
    /// B: where the listener lives.
    Server,
}

impl Node {
    /// Every node, in the order A, R, B.
    pub const ALL: [Node; 3] = [Node::Client, Node::Router, Node::Server];

    fn idx(self) -> usize {
        match self {
            Node::Client => 0,
            Node::Router => 1,
            Node::Server => 2,
        }
    }
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Node::Client => "client",
            Node::Router => "router",
            Node::Server => "server",
        })
    }
}

/// Why the lab could not be built or changed.
#[derive(thiserror::Error, Debug)]
pub enum LabError {
    /// The process lacks the privilege to build namespaces. `reason` quotes the kernel knobs
    /// involved with their current values; `remedy` says what to run instead. Exit code 4.
    #[error("cannot build the network lab: {reason}. To fix: {remedy}")]
    Privilege {
        /// What failed and which restriction is in force.
        reason: String,
        /// What the user can run instead.
        remedy: String,
    },
    /// A system call or netlink request failed while building or changing the lab. Exit code 1.
    #[error("network lab: {step} failed: {source}")]
    Setup {
        /// The step, in words (e.g. "add address 198.18.0.2/24 to link 100").
        step: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// An external program the lab needs is not installed. Exit code 4.
    #[error("network lab: `{tool}` is needed for {purpose} but was not found; {remedy}")]
    MissingTool {
        /// The program's name.
        tool: &'static str,
        /// What it is needed for.
        purpose: &'static str,
        /// How to install it.
        remedy: String,
    },
}

impl LabError {
    /// The process exit code this error maps to: 4 when the environment cannot do it (privilege,
    /// missing tool), 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            LabError::Privilege { .. } | LabError::MissingTool { .. } => 4,
            LabError::Setup { .. } => 1,
        }
    }

    fn setup(step: impl Into<String>) -> impl FnOnce(io::Error) -> LabError {
        let step = step.into();
        move |source| LabError::Setup { step, source }
    }
}

impl From<(String, io::Error)> for LabError {
    fn from((step, source): (String, io::Error)) -> Self {
        LabError::Setup { step, source }
    }
}

/// Three anonymous network namespaces wired as client — router — server.
///
/// Dropping it closes the descriptors that are the only references to the namespaces, and the
/// kernel then removes them with everything inside. Sockets created in a node keep that namespace
/// alive until they are closed too. `Lab` is `Send + Sync`: several labs may exist and be used from
/// several threads at once.
pub struct Lab {
    /// Namespace descriptors, indexed by [`Node::idx`].
    ns: [OwnedFd; 3],
    /// Namespace inode numbers, cached for [`Lab::node_of_socket`].
    ids: [u64; 3],
    /// One rtnetlink socket per namespace; a mutex so a request's ACKs are not read by another
    /// thread's request.
    rtnl: [Mutex<Rtnl>; 3],
}

impl Lab {
    /// Builds A — R — B: three anonymous network namespaces, two veth pairs, addresses from
    /// 198.18.0.0/15, default routes via R, forwarding on in R, loopback up everywhere. IPv6 is
    /// disabled on the lab links so router solicitations and DAD add no traffic.
    ///
    /// The calling thread visits each new namespace briefly and is back in its own namespace
    /// when this returns, error or not. Takes about 3 ms on a 2-core VM (mostly the kernel's
    /// namespace creation, ~0.5 ms each, and veth creation).
    pub fn build() -> Result<Lab, LabError> {
        let mut ns = Vec::with_capacity(3);
        let mut rtnl = Vec::with_capacity(3);
        for node in Node::ALL {
            let (guard, fd) = NetnsGuard::enter_new().map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM | libc::EACCES | libc::ENOSPC) => {
                    privilege::diagnose("creating a network namespace (unshare CLONE_NEWNET)", e)
                }
                _ => LabError::Setup {
                    step: format!("create {node} network namespace"),
                    source: e,
                },
            })?;
            // The netlink socket and /proc/sys/net both bind to the namespace of the thread at
            // creation/open time, so this is the moment to make them.
            rtnl.push(Mutex::new(Rtnl::open().map_err(LabError::setup(
                format!("open netlink socket in {node}"),
            ))?));
            // Best effort: a kernel without IPv6 has no such file, and the lab is IPv4-only.
            let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
            if node == Node::Router {
                std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
                    .map_err(LabError::setup("enable net.ipv4.ip_forward in router"))?;
                // The router answers every packet it cannot forward. Its default ICMP rate limit
                // (per destination host, shared by every connection of a cell) would otherwise let
                // one connection's errors starve another's, and its errno become a lottery.
                std::fs::write("/proc/sys/net/ipv4/icmp_ratelimit", "0")
                    .map_err(LabError::setup("disable net.ipv4.icmp_ratelimit in router"))?;
                std::fs::write("/proc/sys/net/ipv4/icmp_msgs_per_sec", "100000").map_err(
                    LabError::setup("raise net.ipv4.icmp_msgs_per_sec in router"),
                )?;
            }
            drop(guard);
            ns.push(fd);
        }
        let ns: [OwnedFd; 3] = ns.try_into().map_err(|_| unreachable_err())?;
        let rtnl: [Mutex<Rtnl>; 3] = rtnl.try_into().map_err(|_| unreachable_err())?;
        let mut ids = [0u64; 3];
        for (id, fd) in ids.iter_mut().zip(&ns) {
            *id = netns::fd_ns_id(fd.as_fd()).map_err(LabError::setup("stat namespace"))?;
        }
        let lab = Lab { ns, ids, rtnl };

        // R first: it creates both veth pairs, placing each peer straight into A or B.
        let lo = |n: Node| netlink::link_set(format!("set lo up in {n}"), 1, true);
        lab.netlink(
            Node::Router,
            vec![
                lo(Node::Router),
                netlink::veth(
                    "to-client",
                    CLIENT_IF_INDEX,
                    "eth0",
                    CLIENT_IF_INDEX,
                    lab.ns[Node::Client.idx()].as_fd(),
                ),
                netlink::veth(
                    "to-server",
                    ROUTER_SERVER_IF_INDEX,
                    "eth0",
                    CLIENT_IF_INDEX,
                    lab.ns[Node::Server.idx()].as_fd(),
                ),
                netlink::link_set("set to-client up in router", CLIENT_IF_INDEX, true),
                netlink::link_set("set to-server up in router", ROUTER_SERVER_IF_INDEX, true),
                netlink::addr_add(CLIENT_IF_INDEX, ROUTER_CLIENT_ADDR, PREFIX),
                netlink::addr_add(ROUTER_SERVER_IF_INDEX, ROUTER_SERVER_ADDR, PREFIX),
                netlink::rule_iif_table("to-client", FAULT_TABLE, FAULT_RULE_PRIORITY),
                netlink::rule_iif_table("to-server", FAULT_TABLE, FAULT_RULE_PRIORITY),
            ],
            &[],
        )?;
        for (node, addr, gw) in [
            (Node::Client, CLIENT_ADDR, ROUTER_CLIENT_ADDR),
            (Node::Server, SERVER_ADDR, ROUTER_SERVER_ADDR),
        ] {
            lab.netlink(
                node,
                vec![
                    lo(node),
                    netlink::link_set(format!("set eth0 up in {node}"), CLIENT_IF_INDEX, true),
                    netlink::addr_add(CLIENT_IF_INDEX, addr, PREFIX),
                    netlink::default_route(gw),
                ],
                &[],
            )?;
        }
        Ok(lab)
    }

    fn netlink(
        &self,
        node: Node,
        reqs: Vec<netlink::Request>,
        tolerate: &[i32],
    ) -> Result<(), LabError> {
        let mut sock = self.rtnl[node.idx()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        sock.run(reqs, tolerate)
            .map_err(|(step, e)| LabError::from((format!("{step} in {node}"), e)))
    }

    fn ns(&self, node: Node) -> BorrowedFd<'_> {
        self.ns[node.idx()].as_fd()
    }

    /// The client's address (A, 198.18.0.2).
    pub fn client_addr(&self) -> Ipv4Addr {
        CLIENT_ADDR
    }

    /// A client address of its own for connection `slot` (198.18.0.10 + slot), added to A's link
    /// the first time it is asked for. See [`FIRST_SOURCE_HOST`] for why connections do not share
    /// the client's address.
    pub fn client_source(&self, slot: usize) -> Result<Ipv4Addr, LabError> {
        let host = u8::try_from(slot)
            .ok()
            .filter(|_| slot < MAX_SOURCES)
            .and_then(|s| s.checked_add(FIRST_SOURCE_HOST))
            .ok_or_else(|| LabError::Setup {
                step: format!("give connection {slot} a client address"),
                source: io::Error::other(format!("a lab holds at most {MAX_SOURCES} connections")),
            })?;
        let addr = Ipv4Addr::new(198, 18, 0, host);
        self.netlink(
            Node::Client,
            vec![netlink::addr_add(CLIENT_IF_INDEX, addr, PREFIX)],
            &[libc::EEXIST],
        )?;
        Ok(addr)
    }

    /// The server's address (B, 198.18.1.2): what the client connects to.
    pub fn server_addr(&self) -> Ipv4Addr {
        SERVER_ADDR
    }

    /// The router's address on the client's side (198.18.0.1): the client's gateway, and the
    /// source of the ICMP errors the client receives.
    pub fn router_addr(&self) -> Ipv4Addr {
        ROUTER_CLIENT_ADDR
    }

    /// The router's address on the server's side (198.18.1.1).
    pub fn router_server_addr(&self) -> Ipv4Addr {
        ROUTER_SERVER_ADDR
    }

    /// Runs `f` on the current thread with its network namespace switched to `node`, and switches
    /// back afterwards, also if `f` panics. Sockets created inside keep that namespace for life;
    /// this is how every lab socket is made. Threads spawned inside `f` start in `node` too.
    ///
    /// Keep `f` short and do not `.await` across it: on a tokio worker, another task polled on the
    /// same thread meanwhile would create its sockets in the lab.
    pub fn enter<T>(&self, node: Node, f: impl FnOnce() -> T) -> Result<T, LabError> {
        let _guard = NetnsGuard::enter(self.ns(node))
            .map_err(|e| ns_error(format!("enter {node} network namespace"), e))?;
        Ok(f())
    }

    /// Makes `cmd`'s child run in `node`'s network namespace (a `setns` between fork and exec on
    /// a duplicate of the namespace descriptor, so the child works even if the `Lab` is dropped
    /// before it is spawned).
    pub fn command_in(&self, node: Node, cmd: &mut Command) -> Result<(), LabError> {
        let fd = self.ns[node.idx()]
            .try_clone()
            .map_err(LabError::setup(format!(
                "duplicate {node} namespace descriptor"
            )))?;
        // SAFETY: the closure only makes one async-signal-safe syscall on a descriptor it owns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            });
        }
        Ok(())
    }

    /// Cuts the path, at once and in both directions, as `fault` says. Cutting twice is harmless.
    pub fn cut(&self, fault: PathFault) -> Result<(), LabError> {
        let (node, reqs) = fault.requests(self, true);
        self.netlink(node, reqs, &[libc::EEXIST])
    }

    /// Undoes exactly the cut made by [`Lab::cut`] with the same `fault`. Healing an uncut path is
    /// harmless.
    pub fn heal(&self, fault: PathFault) -> Result<(), LabError> {
        let (node, reqs) = fault.requests(self, false);
        self.netlink(node, reqs, &[libc::ESRCH, libc::EEXIST])
    }

    /// Makes R behave like a stateful NAT or firewall that forgets idle TCP flows after `idle`
    /// (rounded up to whole seconds, at least 1): conntrack in R with
    /// `nf_conntrack_tcp_timeout_established` = `idle`, `nf_conntrack_tcp_loose` = 0 (a mid-flow
    /// packet cannot recreate a forgotten entry), and an nftables forward rule that drops packets
    /// conntrack finds invalid and new flows not starting with a SYN. After `idle` of silence the
    /// flow's next packets, in either direction, are dropped without a word.
    ///
    /// Call it before opening the connections: conntrack only tracks flows it saw start.
    /// Runs the `nft` binary inside R (package `nftables`).
    pub fn enable_nat_expiry(&self, idle: Duration) -> Result<(), LabError> {
        let secs = idle.as_secs() + u64::from(idle.subsec_nanos() > 0);
        let secs = secs.max(1);
        const RULES: &str = "table ip tcphb_nat {\n\
             \tchain forward {\n\
             \t\ttype filter hook forward priority filter; policy accept;\n\
             \t\tct state invalid drop\n\
             \t\ttcp flags & (fin | syn | rst | ack) != syn ct state new drop\n\
             \t}\n\
             }\n";
        let mut cmd = Command::new("nft");
        cmd.args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        self.command_in(Node::Router, &mut cmd)?;
        let mut child = cmd.spawn().map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                LabError::MissingTool {
                    tool: "nft",
                    purpose: "the nat-expiry fault",
                    remedy: "install it (Debian/Ubuntu: apt-get install nftables; Fedora: dnf install nftables)".into(),
                }
            } else {
                LabError::Setup {
                    step: "run nft in router".into(),
                    source: e,
                }
            }
        })?;
        // Write, close stdin, then always reap the child, even if the write failed (nft died
        // early): its exit status and stderr say more than the EPIPE would.
        let written = {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("stdin was piped");
            stdin.write_all(RULES.as_bytes())
        };
        let out = child
            .wait_with_output()
            .map_err(LabError::setup("wait for nft"))?;
        if out.status.success()
            && let Err(e) = written
        {
            return Err(LabError::Setup {
                step: "write nftables rules to nft".into(),
                source: e,
            });
        }
        if !out.status.success() {
            return Err(LabError::Setup {
                step: format!("load nftables rules in router ({})", out.status),
                source: io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
            });
        }
        // Per-namespace knobs: these change R only. Written after nft, so that on a kernel with
        // conntrack as a module the rule load has pulled it in (its sysctls appear with it).
        // /proc/sys/net resolves against the namespace of the thread that opens it: `enter`.
        self.enter(Node::Router, || -> Result<(), LabError> {
            for (name, value) in [
                ("nf_conntrack_tcp_timeout_established", secs.to_string()),
                ("nf_conntrack_tcp_loose", "0".to_string()),
            ] {
                let path = format!("/proc/sys/net/netfilter/{name}");
                std::fs::write(&path, value)
                    .map_err(LabError::setup(format!("write {path} in router")))?;
            }
            Ok(())
        })??;

        Ok(())
    }

    /// Facts for the report: the kernel release and the TCP sysctls in effect in the client's
    /// namespace (fresh namespaces start from kernel defaults, not the host's settings), as
    /// `(name, value)` pairs.
    pub fn facts(&self) -> Vec<(String, String)> {
        let mut facts = Vec::new();
        if let Ok(rel) = std::fs::read_to_string("/proc/sys/kernel/osrelease") {
            facts.push(("kernel".to_string(), rel.trim().to_string()));
        }
        let _ = self.enter(Node::Client, || {
            for name in FACT_SYSCTLS {
                let path = format!("/proc/sys/{}", name.replace('.', "/"));
                if let Ok(v) = std::fs::read_to_string(path) {
                    facts.push((name.to_string(), v.trim().to_string()));
                }
            }
        });
        facts
    }

    /// Network namespace id (inode) of `node`; compare with [`socket_netns_id`].
    pub fn netns_id(&self, node: Node) -> io::Result<u64> {
        Ok(self.ids[node.idx()])
    }

    /// Which node of this lab the socket `fd` lives in, or `None` if it lives outside the lab
    /// (e.g. in the host's namespace). Meant for `debug_assert!`s where lab sockets are made.
    pub fn node_of_socket(&self, fd: BorrowedFd<'_>) -> io::Result<Option<Node>> {
        let id = socket_netns_id(fd)?;
        Ok(Node::ALL.into_iter().find(|n| self.ids[n.idx()] == id))
    }
}

impl std::fmt::Debug for Lab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lab").field("netns_ids", &self.ids).finish()
    }
}

/// Classifies a failure to create, enter or leave a namespace.
fn ns_error(step: String, e: io::Error) -> LabError {
    if e.raw_os_error().is_none() && e.kind() == netns::CANNOT_RETURN {
        return LabError::Privilege {
            reason: format!(
                "{step}: this process could enter lab namespaces but not return to its own \
                 network namespace ({e}), which belongs to a user namespace where it lacks CAP_SYS_ADMIN"
            ),
            remedy: "call tcphb::lab::ensure_lab_privileges() first thing in main (it gives the process \
                     a network namespace of its own), or run as root"
                .into(),
        };
    }
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES | libc::ENOSPC) => privilege::diagnose(&step, e),
        _ => LabError::Setup { step, source: e },
    }
}

fn unreachable_err() -> LabError {
    LabError::Setup {
        step: "collect namespaces".into(),
        source: io::Error::other("internal: wrong namespace count"),
    }
}
