//! `tcphb connect`: open one connection with the chosen strategy, watch it until the peer dies or
//! `--duration` passes, and report the detection beside its prediction.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

use crate::cli::ConnectArgs;
use crate::detection::errno_name;
use crate::exit::{self, CliError};
use crate::predict::predict;
use crate::report::{ConnectReport, Expected, Format, SCHEMA, human_ms, render_connect};
use crate::scenario::Fault;
use crate::sockopt::{self, Effective, KernelTimers};
use crate::strategy::Strategy;
use crate::watch::{Watch, watch};
use crate::{signals, tcpinfo};

/// Run `tcphb connect`; returns the exit code (0 alive, 3 detected).
pub fn run(args: &ConnectArgs, format: Format) -> anyhow::Result<u8> {
    let strategy = args.strategy.strategy();
    sockopt::validate(&strategy)?;
    let addrs = super::resolve(&args.peer)?;
    let (sock, peer, effective) = open(&addrs, &strategy, args.connect_timeout)?;
    let local = sock
        .local_addr()?
        .as_socket()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let kernel = KernelTimers::read();
    let rtt =
        tcpinfo::read(&sock).map_or(Duration::ZERO, |i| Duration::from_micros(i.rtt_us.into()));
    // The prediction is for a silent death (cable pulled, host gone): what connect is there to measure.
    let prediction = predict(&effective, Fault::Blackhole, args.load, &kernel, rtt);

    sock.set_nonblocking(true)?;
    let std_stream: std::net::TcpStream = sock.into();
    let w = Watch {
        effective,
        load: args.load,
        kernel,
    };
    super::progress(&format!(
        "tcphb: connected to {peer} ({}, {} load); a silent death would be noticed after {} by {}. Ctrl-C to stop.",
        strategy,
        args.load,
        human_ms(prediction.expected_ms()),
        prediction.mechanism.map_or("nothing", |m| m.name()),
    ));
    let opened = Instant::now();
    let rt = super::runtime()?;
    let detection = rt.block_on(async {
        let stream = tokio::net::TcpStream::from_std(std_stream)?;
        let stop = async {
            match args.duration {
                Some(d) => tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = signals::shutdown() => {}
                },
                None => signals::shutdown().await,
            }
        };
        anyhow::Ok(watch(stream, &w, opened, stop).await)
    })?;
    let report = ConnectReport {
        schema: SCHEMA,
        peer: peer.to_string(),
        local,
        strategy: strategy.to_string(),
        load: args.load,
        effective,
        expected: Expected::new(&prediction, &detection),
        detection,
    };
    super::print(&render_connect(&report, format))?;
    Ok(if report.detection.outcome.is_detection() {
        exit::DETECTED
    } else {
        exit::OK
    })
}

/// Connect to the first address that accepts, with the strategy applied before the handshake, and read
/// back the effective settings afterwards.
pub(crate) fn open(
    addrs: &[SocketAddr],
    strategy: &Strategy,
    timeout: Duration,
) -> anyhow::Result<(Socket, SocketAddr, Effective)> {
    let mut last_err = None;
    for &addr in addrs {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .context("cannot create a TCP socket")?;
        let mut effective =
            sockopt::apply(&sock, strategy).with_context(|| format!("cannot apply {strategy}"))?;
        match sock.connect_timeout(&addr.into(), timeout) {
            Ok(()) => {
                // Read back once connected: some systems only settle options on an established socket.
                let heartbeat = (effective.heartbeat_interval_ms, effective.heartbeat_misses);
                effective = sockopt::read_back(&sock)?;
                (effective.heartbeat_interval_ms, effective.heartbeat_misses) = heartbeat;
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
    let errno = e
        .raw_os_error()
        .map(errno_name)
        .unwrap_or_else(|| format!("{:?}", e.kind()));
    match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            anyhow::anyhow!("connection to {addr} refused ({errno}): is anything listening there?")
        }
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => anyhow::anyhow!(
            "no answer from {addr} within {} ({errno}): check the address, routes and firewalls, or raise --connect-timeout",
            crate::strategy::format_duration(timeout)
        ),
        io::ErrorKind::PermissionDenied => CliError::Environment(format!(
            "not allowed to connect to {addr} ({errno}): a local firewall or policy forbids it"
        ))
        .into(),
        _ => anyhow::anyhow!("cannot connect to {addr} ({errno}): {e}"),
    }
}
