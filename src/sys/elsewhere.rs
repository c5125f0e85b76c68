//! What every platform but Linux lacks, said once: no TCP_INFO, no IP_RECVERR or raw ICMP
//! observer, no lab, no sysctls to read.

use std::future::Future;
use std::io;
use std::net::IpAddr;

use socket2::Socket;

use super::{AsSocket, PlatformError};
use crate::settings::{HostFacts, KernelTimers};
use crate::tcpinfo::TcpInfo;

/// Not read here (macOS's TCP_CONNECTION_INFO and Windows' SIO_TCP_INFO differ): callers use what
/// tcphb measured itself.
pub fn tcp_info(_sock: &impl AsSocket) -> Option<TcpInfo> {
    None
}

pub fn is_established(_sock: &impl AsSocket) -> Option<bool> {
    None
}

pub fn host_facts() -> HostFacts {
    HostFacts {
        os: std::env::consts::OS,
        ..HostFacts::default()
    }
}

/// Whether TCP_KEEPIDLE re-arms a running keepalive timer from the last packet heard is Linux's
/// behaviour: elsewhere the on-demand probe is not offered.
pub fn keepalive_hold(
    _sock: &impl AsSocket,
    _interval: std::time::Duration,
) -> Result<(), PlatformError> {
    Err(PlatformError::Unsupported(super::NO_KEEPALIVE_PROBE.into()))
}

pub fn keepalive_probe_now(_sock: &impl AsSocket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        super::NO_KEEPALIVE_PROBE,
    ))
}

pub fn enable_recverr(_sock: &Socket, _ipv6: bool) -> Result<(), PlatformError> {
    Err(PlatformError::Unsupported(super::NO_RECVERR.into()))
}

/// Nothing to enter: `compare` refuses before it needs a lab.
pub fn enter_lab() -> Result<(), (String, u8)> {
    Ok(())
}

/// `compare` builds its lab from Linux network namespaces: refuse.
pub fn compare(_: &crate::cli::CompareArgs) -> anyhow::Result<crate::report::Finished> {
    Err(no_lab())
}

/// `probe --verify` runs the same lab: the same refusal.
pub fn lab_matrix(_: &super::LabPlan) -> anyhow::Result<crate::report::model::CompareReport> {
    Err(no_lab())
}

fn no_lab() -> anyhow::Error {
    crate::exit::CliError::Environment(
        "compare and probe --verify build their lab from Linux network namespaces: run it on Linux (a VM or container will do)".into(),
    )
    .into()
}

pub fn lab_exit_code(_cause: &(dyn std::error::Error + 'static)) -> Option<u8> {
    None
}

/// No raw ICMP observer here: never receives.
pub struct IcmpSocket;

impl IcmpSocket {
    pub fn open(_ipv6: bool) -> IcmpSocket {
        IcmpSocket
    }

    pub fn from_socket(_sock: io::Result<Socket>) -> IcmpSocket {
        IcmpSocket
    }

    pub fn unavailable(&self) -> Option<&str> {
        Some("ICMP reports are only read on Linux")
    }

    pub fn recv(&mut self) -> impl Future<Output = (Vec<u8>, Option<IpAddr>, std::time::Instant)> {
        std::future::pending()
    }
}

/// `audit` reads other processes' sockets through Linux's sock_diag and pidfd_getfd: refuse.
/// No sock_diag here: opening one is refused ([`diag_error`]).
pub struct TcpTable;

impl TcpTable {
    pub fn open() -> std::io::Result<TcpTable> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
    pub fn dump(&mut self) -> std::io::Result<Vec<super::DiagSocket>> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

/// `audit` reads other processes' connections through Linux's sock_diag and pidfd_getfd: refuse.
pub fn diag_error(_e: std::io::Error) -> super::PlatformError {
    super::PlatformError::Unsupported(
        "audit reads other processes' connections through Linux's sock_diag and pidfd_getfd: run it on Linux".into(),
    )
}

pub fn socket_inodes(_pid: u32) -> std::io::Result<std::collections::HashMap<u32, i32>> {
    Err(std::io::ErrorKind::Unsupported.into())
}

pub fn all_socket_inodes(
    _wanted: &std::collections::HashSet<u32>,
) -> std::collections::HashMap<u32, (u32, i32)> {
    std::collections::HashMap::new()
}

pub fn holds(_pid: u32, _fd: i32, _inode: u32) -> bool {
    false
}

/// No other process's sockets are read here.
pub struct Process;

impl Process {
    pub fn open(_pid: u32) -> std::io::Result<Process> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
}

pub fn read_back_of(_process: &Process, _fd: i32) -> std::io::Result<crate::settings::Effective> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// The documented defaults (macOS's sysctl net.inet.tcp.* and Windows' registry Tcpip parameters
/// are not read yet).
pub fn kernel_timers() -> KernelTimers {
    super::capabilities().rules.defaults
}
