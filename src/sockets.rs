//! Sockets are made here and nowhere else: a TCP socket with a strategy applied before the
//! handshake, connected to the first address that accepts; a listener; the connect errors in words.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

use crate::exit::CliError;
use crate::settings::Effective;
use crate::strategy::Strategy;
use crate::sys;

/// A blocking TCP socket of `addr`'s family, not yet bound or connected.
pub fn tcp_socket(addr: SocketAddr) -> io::Result<Socket> {
    Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
}

/// Connect to `peer` on the event loop with no strategy (idle-timeout discovery: one short-lived
/// connection per candidate idle time, and the kernel's defaults are what it measures against).
pub async fn connect_plain(peer: SocketAddr) -> io::Result<tokio::net::TcpStream> {
    tokio::net::TcpStream::connect(peer).await
}

/// Connect to the first address that accepts, with the strategy applied before the handshake, and read
/// back the effective settings afterwards.
pub fn connect(
    addrs: &[SocketAddr],
    strategy: &Strategy,
    timeout: Duration,
) -> anyhow::Result<(Socket, SocketAddr, Effective)> {
    let mut last_err = None;
    for &addr in addrs {
        let sock = tcp_socket(addr).context("cannot create a TCP socket")?;
        // Set before the handshake, the options hold for the connection's life: what `apply` read
        // back is what the connection runs with.
        let effective =
            sys::apply(&sock, strategy).with_context(|| format!("cannot apply {strategy}"))?;
        match sock.connect_timeout(&addr.into(), timeout) {
            Ok(()) => {
                sock.set_tcp_nodelay(true)?;
                return Ok((sock, addr, effective));
            }
            Err(e) => last_err = Some((addr, e)),
        }
    }
    let (addr, e) = last_err.expect("resolve returns at least one address");
    Err(connect_error(addr, e, timeout))
}

fn connect_error(addr: SocketAddr, e: io::Error, timeout: Duration) -> anyhow::Error {
    let errno = sys::errno_text(&e);
    match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            anyhow::anyhow!("connection to {addr} refused ({errno}): is anything listening there?")
        }
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => anyhow::anyhow!(
            "no answer from {addr} within {} ({errno}): check the address, routes and firewalls, or raise --connect-timeout",
            crate::units::format_duration(timeout)
        ),
        io::ErrorKind::PermissionDenied => CliError::Environment(format!(
            "not allowed to connect to {addr} ({errno}): a local firewall or policy forbids it"
        ))
        .into(),
        _ => anyhow::anyhow!("cannot connect to {addr} ({errno}): {e}"),
    }
}

/// A non-blocking listener on `addr`, with the receive buffer its connections inherit (set before
/// `listen()`, so the window scale offered in the SYN-ACK fits it).
pub fn listen(addr: SocketAddr, rcvbuf: Option<u32>) -> anyhow::Result<std::net::TcpListener> {
    let sock = tcp_socket(addr).context("cannot create a TCP socket")?;
    if let Some(size) = rcvbuf {
        // On the listener, before listen(): accepted sockets inherit it, and the window scale
        // offered in the SYN-ACK is chosen for it.
        sock.set_recv_buffer_size(size as usize)
            .with_context(|| format!("cannot set the receive buffer to {size} bytes"))?;
    }
    // Let a restarted listen reuse a port whose old connections linger in TIME_WAIT.
    sys::reuse_address(&sock)?;
    if let Err(e) = sock.bind(&addr.into()) {
        return Err(match e.kind() {
            io::ErrorKind::AddrInUse => CliError::Usage(format!(
                "address {addr} is already in use: pick another port (or 0 for any) or stop what listens there"
            ))
            .into(),
            io::ErrorKind::AddrNotAvailable => CliError::Usage(format!(
                "address {addr} is not an address of this host: use one of its addresses or 0.0.0.0"
            ))
            .into(),
            io::ErrorKind::PermissionDenied => CliError::Environment(format!(
                "not allowed to listen on {addr}: ports below 1024 need privilege; use a higher port"
            ))
            .into(),
            _ => anyhow::Error::new(e).context(format!("cannot bind {addr}")),
        });
    }
    sock.listen(4096)
        .with_context(|| format!("cannot listen on {addr}"))?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}
