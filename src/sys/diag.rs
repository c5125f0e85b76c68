//! Another process's TCP connections (Linux): every TCP socket of this network namespace through
//! `NETLINK_SOCK_DIAG` (state, pending timer, queues, TCP_INFO), which sockets a process holds from
//! `/proc/PID/fd`, and a duplicate of one of them through `pidfd_getfd(2)` to read its options back.
//! Read-only: the duplicate is only ever read and closed, which leaves the owner's connection as it was.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_sock_diag::SockDiagMessage;
use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
use netlink_packet_sock_diag::inet::nlas::Nla;
use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
use netlink_sys::{
    Socket as NetlinkSocket, SocketAddr as NetlinkAddr, protocols::NETLINK_SOCK_DIAG,
};
use socket2::Socket;

use super::{DiagSocket, DiagTimer};
use crate::tcpinfo::TcpInfo;

/// A sock_diag socket of the network namespace it was opened in, for repeated dumps (`audit
/// --watch`, `compare --server`'s observer): one netlink socket and one receive buffer serve every
/// dump, whatever namespace the thread is in later.
pub struct TcpTable {
    socket: NetlinkSocket,
    rx: Vec<u8>,
}

impl TcpTable {
    /// Open it in the calling thread's network namespace.
    pub fn open() -> io::Result<TcpTable> {
        let mut socket = NetlinkSocket::new(NETLINK_SOCK_DIAG)?;
        socket.bind_auto()?;
        socket.connect(&NetlinkAddr::new(0, 0))?;
        Ok(TcpTable {
            socket,
            rx: vec![0u8; 64 * 1024],
        })
    }

    /// Every TCP socket, IPv4 and IPv6, listening ones left out.
    pub fn dump(&mut self) -> io::Result<Vec<DiagSocket>> {
        let mut states = StateFlags::all();
        states.remove(StateFlags::LISTEN);
        let mut out = Vec::new();
        for family in [AF_INET, AF_INET6] {
            dump(&self.socket, &mut self.rx, family, states.clone(), &mut out)?;
        }
        Ok(out)
    }

    /// Whether a socket listens on `port` (IPv4 or IPv6).
    pub fn listens_on(&mut self, port: u16) -> io::Result<bool> {
        let mut out = Vec::new();
        for family in [AF_INET, AF_INET6] {
            dump(
                &self.socket,
                &mut self.rx,
                family,
                StateFlags::LISTEN,
                &mut out,
            )?;
        }
        Ok(out.iter().any(|s| s.local.port() == port))
    }
}

/// Ask for one address family's sockets on `socket` and read the answer to its end.
fn dump(
    socket: &NetlinkSocket,
    rx: &mut [u8],
    family: u8,
    states: StateFlags,
    out: &mut Vec<DiagSocket>,
) -> io::Result<()> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: IPPROTO_TCP,
            extensions: ExtensionFlags::INFO,
            states,
            socket_id: if family == AF_INET {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            },
        })
        .into(),
    );
    packet.finalize();
    let mut buf = vec![0; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;
    loop {
        let n = socket.recv(&mut &mut rx[..], 0)?;
        let mut offset = 0;
        while offset < n {
            let msg = <NetlinkMessage<SockDiagMessage>>::deserialize(&rx[offset..n])
                .map_err(|e| io::Error::other(format!("sock_diag: {e}")))?;
            let len = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r)) => {
                    let id = &r.header.socket_id;
                    let info = r.nlas.iter().find_map(|n| match n {
                        Nla::TcpInfo(bytes) => Some(parse_tcp_info(bytes)),
                        _ => None,
                    });
                    out.push(DiagSocket {
                        local: SocketAddr::new(id.source_address, id.source_port),
                        peer: SocketAddr::new(id.destination_address, id.destination_port),
                        state: r.header.state,
                        inode: r.header.inode,
                        timer: r.header.timer.and_then(|t| timer(&t)),
                        recv_queue: r.header.recv_queue,
                        send_queue: r.header.send_queue,
                        info,
                    });
                }
                NetlinkPayload::Done(_) => return Ok(()),
                NetlinkPayload::Error(e) => {
                    return Err(io::Error::other(format!("sock_diag answered {e:?}")));
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

fn timer(t: &netlink_packet_sock_diag::inet::Timer) -> Option<DiagTimer> {
    use netlink_packet_sock_diag::inet::Timer as T;
    Some(match *t {
        T::Retransmit(due, retransmits) => DiagTimer::Retransmit { due, retransmits },
        T::KeepAlive(due) => DiagTimer::Keepalive { due },
        T::Probe(due) => DiagTimer::ZeroWindow { due },
        T::TimeWait => return None,
    })
}

/// TCP_INFO as sock_diag sends it (the same `struct tcp_info` as getsockopt, possibly shorter on an
/// older kernel): the fields tcphb uses.
fn parse_tcp_info(bytes: &[u8]) -> TcpInfo {
    // SAFETY: tcp_info is plain old data; at most its size is copied from the kernel's bytes.
    let mut raw: libc::tcp_info = unsafe { std::mem::zeroed() };
    let n = bytes.len().min(std::mem::size_of::<libc::tcp_info>());
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), (&mut raw as *mut libc::tcp_info).cast(), n)
    };
    super::linux::from_raw(&raw)
}

/// The sockets process `pid` holds: inode → descriptor number, from `/proc/PID/fd`.
pub fn socket_inodes(pid: u32) -> io::Result<HashMap<u32, i32>> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        let Ok(entry) = entry else { continue };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let (Some(inode), Ok(fd)) = (
            socket_inode(&target),
            entry.file_name().to_string_lossy().parse::<i32>(),
        ) else {
            continue;
        };
        out.insert(inode, fd);
    }
    Ok(out)
}

/// Whether descriptor `fd` of process `pid` is still socket `inode`.
pub fn holds(pid: u32, fd: i32, inode: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .is_ok_and(|t| socket_inode(&t) == Some(inode))
}

/// The inode of a `/proc/PID/fd/N` link's target `socket:[INODE]` (`None`: not a socket).
fn socket_inode(target: &std::path::Path) -> Option<u32> {
    target
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Which process holds each of the `wanted` sockets (for `--port` without `--pid`): inode → (pid,
/// fd), the first process in `/proc` order that holds it. The scan stops once every wanted socket is
/// found. Processes whose descriptors cannot be read (another user's, without privilege) are skipped.
pub fn all_socket_inodes(wanted: &HashSet<u32>) -> HashMap<u32, (u32, i32)> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        if out.len() == wanted.len() {
            break;
        }
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(socks) = socket_inodes(pid) {
            for (inode, fd) in socks {
                if wanted.contains(&inode) {
                    out.entry(inode).or_insert((pid, fd));
                }
            }
        }
    }
    out
}

/// A process whose descriptors are borrowed: its pidfd, opened once for all of them.
pub struct Process(OwnedFd);

impl Process {
    /// `pidfd_open` on `pid`.
    pub fn open(pid: u32) -> io::Result<Process> {
        use rustix::process::{Pid, PidfdFlags, pidfd_open};
        let pid = Pid::from_raw(pid as i32).ok_or_else(|| io::Error::other("pid 0"))?;
        Ok(Process(pidfd_open(pid, PidfdFlags::empty())?))
    }

    /// A duplicate of the process's descriptor `fd` (`pidfd_getfd`, needs ptrace rights over it:
    /// root or CAP_SYS_PTRACE). Only read from, then closed: the owner's connection is untouched.
    pub fn borrow_socket(&self, fd: i32) -> io::Result<Socket> {
        use rustix::process::{PidfdGetfdFlags, pidfd_getfd};
        let dup: OwnedFd = pidfd_getfd(&self.0, fd, PidfdGetfdFlags::empty())?;
        // SAFETY: the descriptor was just duplicated for us and is owned by nothing else.
        Ok(unsafe { Socket::from_raw_fd(dup.into_raw_fd()) })
    }
}
