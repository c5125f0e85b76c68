//! `connect --ping PROTO` against real servers tcphb did not write, started here on loopback: Redis,
//! memcached, nginx (HTTP/1.1 and h2c), mosquitto, a Python `websockets` echo server and a Python
//! `grpcio` server. Each is alive while healthy (no unexpected messages), and once its process is
//! frozen (SIGSTOP: its kernel still ACKs) the heartbeat notices within interval × misses of silence.
//! Refusals are named, never called deaths: Redis's NOAUTH, a refused MQTT CONNACK, gRPC's GOAWAY
//! "too_many_pings".
//!
//! A server that is not installed fails the test when `CI` is set (`.ci/run` installs them all), and
//! is skipped with a reason otherwise.
#![cfg(target_os = "linux")]

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, code, connect, json, program, wait_until};
use nix::sys::signal::Signal;

/// Heartbeat of every test: 200 ms × 3, so a frozen server is declared dead 600 ms after its last
/// reply.
const HB: &str = "200ms,3";
const HB_MS: u64 = 600;
/// How late the detection may come beyond interval × misses on a shared, loaded 2-core machine: the
/// event loop's wake-up and a debug build's scheduling.
const LATE_MS: u64 = 600;

/// A Python with `module` importable, or `None` with a reason (a failure under `CI`).
fn python_with(test: &str, module: &str) -> Option<PathBuf> {
    let py = program(test, "python3", "apt-get install python3")?;
    let ok = Command::new(&py)
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        common::skip(&format!(
            "{test}: python3 has no {module} (pip install {module})"
        ));
        return None;
    }
    Some(py)
}

/// `connect`'s JSON for a connection the live peer closed itself (exit 5): closed by the peer, `how`,
/// and (when given) a note that says `note`.
fn closed_by_the_peer(
    out: &std::process::Output,
    how: &str,
    note: Option<&str>,
) -> serde_json::Value {
    let v = json(out);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(code(out), 5, "{v}");
    assert_eq!(
        (&v["outcome"], &v["closed_by"], &v["how"]),
        (&"closed".into(), &"peer".into(), &how.into()),
        "{v}"
    );
    if let Some(note) = note {
        assert!(v["note"].as_str().unwrap().contains(note), "{v}");
    }
    v
}

/// A free port: bind 0, read it, release it for the server (a race only with other binds of 0).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server of ours: its process (continued and killed by PID when dropped), its port, its files.
struct Server {
    proc: Proc,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Spawn `cmd` (which serves on `port`) and wait until the port accepts connections.
    fn start(mut cmd: Command, port: u16, dir: tempfile::TempDir) -> Server {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let proc = Proc::new(child);
        wait_until(
            &format!("{cmd:?} accepting on port {port}"),
            Duration::from_secs(20),
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        );
        Server {
            proc,
            port,
            _dir: dir,
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

fn redis(test: &str, extra: &[&str]) -> Option<Server> {
    let bin = program(test, "redis-server", "apt-get install redis-server")?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .args(extra);
    Some(Server::start(cmd, port, dir))
}

fn memcached(test: &str) -> Option<Server> {
    let bin = program(test, "memcached", "apt-get install memcached")?;
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.args(["-l", "127.0.0.1", "-p", &port.to_string(), "-U", "0"]);
    // memcached refuses to run as root without a user to switch to.
    if nix::unistd::geteuid().is_root() {
        cmd.args(["-u", "nobody"]);
    }
    Some(Server::start(cmd, port, tempfile::tempdir().unwrap()))
}

/// nginx in the foreground (one process, no master), its prefix and files in a temp dir; `listen`
/// is the server block's listen parameters after the address (e.g. `http2`).
fn nginx(test: &str, listen: &str, keepalive: &str) -> Option<Server> {
    nginx_with(test, listen, keepalive, "")
}

/// [`nginx`] with more directives in its server block.
fn nginx_with(test: &str, listen: &str, keepalive: &str, extra: &str) -> Option<Server> {
    let bin = program(test, "nginx", "apt-get install nginx")?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let p = dir.path().display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {p}/nginx.pid;\nerror_log {p}/error.log;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n access_log off;\n client_body_temp_path {p}/body;\n proxy_temp_path {p}/proxy;\n\
         fastcgi_temp_path {p}/fastcgi;\n uwsgi_temp_path {p}/uwsgi;\n scgi_temp_path {p}/scgi;\n\
         keepalive_timeout {keepalive};\n\
         server {{ listen 127.0.0.1:{port} {listen}; {extra} location / {{ return 200 \"ok\\n\"; }} }}\n}}\n"
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(dir.path().join("error.log"))
        .arg("-c")
        .arg(&conf_path);
    Some(Server::start(cmd, port, dir))
}

fn mosquitto(test: &str, anonymous: bool) -> Option<Server> {
    let bin = program(test, "mosquitto", "apt-get install mosquitto")?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous {anonymous}\n"),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("-c").arg(&conf);
    Some(Server::start(cmd, port, dir))
}

/// A Python server from `script` (given the port as its argument).
fn python(test: &str, module: &str, script: &str) -> Option<Server> {
    let py = python_with(test, module)?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file = dir.path().join("server.py");
    std::fs::write(&file, script).unwrap();
    let mut cmd = Command::new(py);
    cmd.arg(&file).arg(port.to_string());
    Some(Server::start(cmd, port, dir))
}

const WEBSOCKET_ECHO: &str = r#"
import asyncio, sys, websockets
async def echo(ws):
    try:
        async for m in ws:
            await ws.send(m)
    except websockets.ConnectionClosed:
        pass
async def main():
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1])):
        await asyncio.Future()
asyncio.run(main())
"#;

/// A gRPC server with no services, and grpc-core's default ping policy.
const GRPC_SERVER: &str = r#"
import sys, grpc
from concurrent import futures
s = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
s.add_insecure_port("127.0.0.1:" + sys.argv[1])
s.start()
s.wait_for_termination()
"#;

/// `connect PEER --heartbeat HB --ping PROTO ARGS --format json`, running.
fn pinger(server: &Server, proto: &str, args: &[&str]) -> Proc {
    let addr = server.addr();
    let mut all = vec![
        addr.as_str(),
        "--heartbeat",
        HB,
        "--ping",
        proto,
        "-f",
        "json",
    ];
    all.extend_from_slice(args);
    connect(&all)
}

/// The report of a healthy server watched for 1.5 s: alive, exit 0, speaking `proto`, and nothing
/// heard that was not the protocol's.
fn assert_healthy(server: &Server, proto: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--duration", "1500ms"];
    all.extend_from_slice(args);
    let out = pinger(server, proto, &all).wait_output(Duration::from_secs(20));
    let v = json(&out);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(
        code(&out),
        0,
        "{v}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v["outcome"], "alive", "{v}");
    assert_eq!(v["ping"], proto, "{v}");
    assert!(
        v["strategy"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{proto}")),
        "{v}"
    );
    let note = v["note"].as_str().unwrap_or("");
    assert!(
        !note.contains("unexpected") && !note.contains("unknown"),
        "{v}"
    );
    // Replies came all along: the last one less than two intervals before the end.
    assert!(v["silence_ms"].as_u64().unwrap() < 400, "{v}");
    v
}

/// Watch `server` until replies flow, freeze it (SIGSTOP), and check the heartbeat declares it dead
/// within interval × misses of silence (exit 3).
fn assert_freeze_detected(server: &Server, proto: &str, args: &[&str]) {
    let run = pinger(server, proto, args);
    // Replies flowing: tcphb's socket to the server has received bytes (they are read even if the
    // server is frozen the next instant).
    wait_until("the server's first reply", Duration::from_secs(10), || {
        common::ss().iter().any(|s| {
            s.state == "ESTAB" && s.peer_port() == server.port && s.num("bytes_received") > 0
        })
    });
    server.proc.signal(Signal::SIGSTOP);
    server.proc.wait_stopped(Duration::from_secs(5));
    let out = run.wait_output(Duration::from_secs(20));
    server.proc.signal(Signal::SIGCONT);
    let v = json(&out);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(
        code(&out),
        3,
        "{v}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v["outcome"], "dead", "{v}");
    assert_eq!(v["detected_by"], "heartbeat", "{v}");
    let silence = v["silence_ms"].as_u64().unwrap();
    assert!(
        (HB_MS..=HB_MS + LATE_MS).contains(&silence),
        "{proto}: a frozen server noticed after {silence} ms of silence, want {HB_MS} ms (+{LATE_MS}): {v}"
    );
}

#[test]
fn redis_alive_then_frozen() {
    let Some(s) = redis("redis_alive_then_frozen", &[]) else {
        return;
    };
    assert_healthy(&s, "redis", &[]);
    assert_freeze_detected(&s, "redis", &[]);
}

#[test]
fn redis_noauth_still_proves_life_and_is_named() {
    let Some(s) = redis("redis_noauth", &["--requirepass", "tcphb-secret"]) else {
        return;
    };
    let v = assert_healthy(&s, "redis", &[]);
    let note = v["note"].as_str().unwrap();
    assert!(note.contains("-NOAUTH") && note.contains("alive"), "{note}");
    assert_freeze_detected(&s, "redis", &[]);
}

#[test]
fn memcached_alive_then_frozen() {
    let Some(s) = memcached("memcached_alive_then_frozen") else {
        return;
    };
    let v = assert_healthy(&s, "memcached", &[]);
    assert!(
        v["note"].as_str().unwrap().starts_with("memcached 1."),
        "{v}"
    );
    assert_freeze_detected(&s, "memcached", &[]);
}

#[test]
fn a_server_of_another_protocol_is_an_error_not_a_death() {
    let Some(s) = memcached("a_server_of_another_protocol") else {
        return;
    };
    let out = pinger(&s, "redis", &["--duration", "5s"]).wait_output(Duration::from_secs(20));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("not a Redis server: it answered PING with 'ERROR'"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn nginx_http_alive_then_frozen() {
    let Some(s) = nginx("nginx_http_alive_then_frozen", "", "75s") else {
        return;
    };
    assert_healthy(&s, "http", &["--path", "/health"]);
    assert_freeze_detected(&s, "http", &[]);
}

#[test]
fn nginx_closing_an_idle_keepalive_connection_is_the_server_closing() {
    // nginx keeps an idle keep-alive connection 1 s; a heartbeat every 3 s lets it expire.
    let Some(s) = nginx("nginx_closing_an_idle_keepalive_connection", "", "1s") else {
        return;
    };
    let out = connect(&[&s.addr(), "-H", "3s,3", "--ping", "http", "-f", "json"])
        .wait_output(Duration::from_secs(30));
    let v = closed_by_the_peer(&out, "fin", None);
    // nginx's timer starts at its accept, tcphb's idle clock when connect returned: a few ms apart.
    let idle = v["idled_ms"].as_u64().unwrap();
    assert!(
        (900..2500).contains(&idle),
        "idle {idle} ms before nginx's 1 s close: {v}"
    );
}

#[test]
fn nginx_h2c_alive_then_frozen() {
    let Some(s) = nginx("nginx_h2c_alive_then_frozen", "http2", "75s") else {
        return;
    };
    assert_healthy(&s, "h2", &[]);
    assert_freeze_detected(&s, "h2", &[]);
}

#[test]
fn mosquitto_alive_then_frozen() {
    let Some(s) = mosquitto("mosquitto_alive_then_frozen", true) else {
        return;
    };
    assert_healthy(&s, "mqtt", &[]);
    assert_freeze_detected(&s, "mqtt", &[]);
}

#[test]
fn mosquitto_refusing_anonymous_clients_is_named() {
    let Some(s) = mosquitto("mosquitto_refusing_anonymous_clients", false) else {
        return;
    };
    let out = pinger(&s, "mqtt", &["--duration", "5s"]).wait_output(Duration::from_secs(20));
    closed_by_the_peer(
        &out,
        "refused",
        Some("CONNACK return code 5, not authorized"),
    );
}

#[test]
fn websocket_echo_alive_then_frozen() {
    let Some(s) = python(
        "websocket_echo_alive_then_frozen",
        "websockets",
        WEBSOCKET_ECHO,
    ) else {
        return;
    };
    assert_healthy(&s, "websocket", &["--path", "/echo"]);
    assert_freeze_detected(&s, "websocket", &[]);
}

#[test]
fn grpc_refusing_pings_is_named_not_a_death() {
    let Some(s) = python("grpc_refusing_pings", "grpc", GRPC_SERVER) else {
        return;
    };
    let out = pinger(&s, "h2", &["--duration", "10s"]).wait_output(Duration::from_secs(20));
    let v = closed_by_the_peer(&out, "refused", None);
    let note = v["note"].as_str().unwrap();
    assert!(
        note.starts_with("GOAWAY ENHANCE_YOUR_CALM \"too_many_pings\": the server is alive"),
        "{note}"
    );
    assert!(note.contains("a ping every 200ms"), "{note}");
}

/// The usage errors of --ping: one line each, exit 2.
#[test]
fn ping_usage_errors() {
    for (args, want) in [
        (&["--ping", "redis"][..], "--ping redis needs --heartbeat"),
        (
            &["-H", "1s,3", "--ping", "redis", "--load", "busy"][..],
            "--load busy writes",
        ),
        (&["-H", "1s,3", "--ping", "ftp"][..], "invalid value 'ftp'"),
        (
            &["-H", "1s,3/mqtt", "--ping", "redis"][..],
            "--heartbeat says mqtt and --ping says redis",
        ),
        (
            &["-H", "1s,3", "--ping", "http", "--path", "no-slash"][..],
            "invalid path 'no-slash'",
        ),
        (&["--ca", "x.pem"][..], "--tls"),
    ] {
        let mut all = vec!["127.0.0.1:9"];
        all.extend_from_slice(args);
        let out = connect(&all).wait_output(Duration::from_secs(10));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

// ---- TLS ----

/// Certificates made by `openssl` for the test: a CA, a server certificate it signed for
/// 127.0.0.1, one it signed for another name, and one that has expired.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn make(test: &str) -> Option<Certs> {
        let openssl = program(test, "openssl", "apt-get install openssl")?;
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new(&openssl)
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &key,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=tcphb test CA",
            ],
        ]
        .concat());
        // `-days -1`: notAfter a day before now, so "expired" has expired.
        for (name, san, days) in [
            ("good", "IP:127.0.0.1", "2"),
            ("wrong", "DNS:tcphb-wrong.invalid", "2"),
            ("expired", "IP:127.0.0.1", "-1"),
        ] {
            let ext = format!("{name}.ext");
            std::fs::write(
                dir.path().join(&ext),
                format!("subjectAltName={san}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"),
            )
            .unwrap();
            let (k, csr, pem) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            run(&[
                &["req"][..],
                &key,
                &[
                    "-keyout",
                    &k,
                    "-out",
                    &csr,
                    "-subj",
                    "/CN=tcphb test server",
                ],
            ]
            .concat());
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                days,
                "-extfile",
                &ext,
            ]);
        }
        Some(Certs { dir })
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).display().to_string()
    }

    /// nginx serving `cert` over TLS (HTTP/1.1 and h2 by ALPN).
    fn nginx(&self, test: &str, cert: &str) -> Option<Server> {
        nginx_with(
            test,
            "ssl http2",
            "75s",
            &format!(
                "ssl_certificate {}; ssl_certificate_key {};",
                self.path(&format!("{cert}.pem")),
                self.path(&format!("{cert}.key"))
            ),
        )
    }
}

#[test]
fn tls_h2_and_http_with_the_test_ca_alive_then_frozen() {
    let test = "tls_h2_and_http";
    let Some(certs) = Certs::make(test) else {
        return;
    };
    let Some(s) = certs.nginx(test, "good") else {
        return;
    };
    let ca = certs.path("ca.pem");
    let v = assert_healthy(&s, "h2", &["--tls", "--ca", &ca]);
    assert_eq!(v["tls"], true, "{v}");
    assert_healthy(&s, "http", &["--tls", "--ca", &ca]);
    assert_freeze_detected(&s, "h2", &["--tls", "--ca", &ca]);
}

#[test]
fn tls_refuses_an_unknown_ca_a_wrong_name_and_an_expired_certificate_in_one_line() {
    let test = "tls_refusals";
    let Some(certs) = Certs::make(test) else {
        return;
    };
    let Some(good) = certs.nginx(test, "good") else {
        return;
    };
    let Some(wrong) = certs.nginx(test, "wrong") else {
        return;
    };
    let ca = certs.path("ca.pem");
    let fails = |s: &Server, args: &[&str], want: &str| {
        let out = pinger(s, "h2", args).wait_output(Duration::from_secs(20));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 1, "{args:?}: {err}");
        assert!(
            err.contains("TLS handshake with 127.0.0.1:") && err.contains(want),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    };
    // Not the system's roots: a CA this machine does not trust.
    fails(
        &good,
        &["--tls"],
        "issued by a CA this machine does not trust",
    );
    fails(
        &wrong,
        &["--tls", "--ca", &ca],
        "not valid for the name '127.0.0.1'",
    );
    let Some(expired) = certs.nginx(test, "expired") else {
        return;
    };
    fails(
        &expired,
        &["--tls", "--ca", &ca],
        "the server's certificate has expired",
    );
    let v = assert_healthy(&wrong, "h2", &["--tls", "--insecure"]);
    assert_eq!(v["tls"], true, "{v}");
    // A plain server asked for TLS.
    let Some(plain) = nginx(test, "", "75s") else {
        return;
    };
    fails(&plain, &["--tls", "--insecure"], "does not speak TLS");
}

// ---- a real cut, in the lab ----

/// A real Redis and a real mosquitto in the lab's server namespace, pinged in their protocols from
/// the client namespace; the router then blackholes the path and each heartbeat notices within
/// interval × misses of silence.
#[test]
fn a_cut_path_to_real_servers_is_noticed_by_their_own_pings() {
    let test = "a_cut_path_to_real_servers";
    if !common::lab_allowed(test) {
        return;
    }
    let (Some(redis_bin), Some(mosquitto_bin)) = (
        program(test, "redis-server", "apt-get install redis-server"),
        program(test, "mosquitto", "apt-get install mosquitto"),
    ) else {
        return;
    };
    let lab = tcphb::lab::Lab::build().expect("build the lab");
    let server = lab.server_addr();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener 1883 {server}\nallow_anonymous true\n"),
    )
    .unwrap();
    // Two Redis: one open to the client's network, one in its default protected mode (no password,
    // not on loopback), which answers -DENIED and closes.
    let redis = |port: u16, protected: &str| {
        let mut cmd = Command::new(&redis_bin);
        cmd.args(["--port", &port.to_string(), "--bind", &server.to_string()])
            .args([
                "--protected-mode",
                protected,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir.path());
        cmd
    };
    let mut mqtt = Command::new(mosquitto_bin);
    mqtt.arg("-c").arg(&conf);
    let mut servers = Vec::new();
    for (mut cmd, port) in [
        (redis(6379, "no"), 6379u16),
        (redis(6380, "yes"), 6380),
        (mqtt, 1883),
    ] {
        lab.command_in(tcphb::lab::Node::Server, &mut cmd).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a server in the lab");
        servers.push(Proc::new(child));
        wait_until(
            &format!("port {port} accepting in the lab"),
            Duration::from_secs(20),
            || {
                lab.enter(tcphb::lab::Node::Client, || {
                    TcpStream::connect((server, port))
                })
                .unwrap()
                .is_ok()
            },
        );
    }
    // `connect SERVER:PORT --heartbeat HB --ping PROTO --format json` from the client namespace.
    let pinger_in = |port: u16, proto: &str| {
        let peer = format!("{server}:{port}");
        common::tcphb_in(
            &lab,
            tcphb::lab::Node::Client,
            &["connect", &peer, "-H", HB, "--ping", proto, "-f", "json"],
        )
    };
    let runs: Vec<(u16, &str, Proc)> = [(6379u16, "redis"), (1883, "mqtt")]
        .into_iter()
        .map(|(port, proto)| (port, proto, pinger_in(port, proto)))
        .collect();
    wait_until(
        "replies on both connections",
        Duration::from_secs(10),
        || {
            let socks = common::ss_in(&lab, tcphb::lab::Node::Client);
            runs.iter().all(|(port, _, _)| {
                socks.iter().any(|s| {
                    s.state == "ESTAB" && s.peer_port() == *port && s.num("bytes_received") > 0
                })
            })
        },
    );
    let denied = pinger_in(6380, "redis").wait_output(Duration::from_secs(20));
    let v = json(&denied);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(code(&denied), 5, "{v}");
    assert_eq!(
        (&v["closed_by"], &v["how"]),
        (&"peer".into(), &"fin".into()),
        "{v}"
    );
    assert!(
        v["note"].as_str().unwrap().contains("-DENIED")
            && v["note"].as_str().unwrap().contains("protected mode"),
        "{v}"
    );

    lab.cut(tcphb::lab::PathFault::Blackhole).expect("cut");
    for (_, proto, p) in runs {
        let out = p.wait_output(Duration::from_secs(20));
        let v = json(&out);
        common::assert_schema("connect.schema.json", &v);
        assert_eq!(code(&out), 3, "{proto}: {v}");
        assert_eq!(
            (&v["detected_by"], &v["ping"]),
            (&"heartbeat".into(), &proto.into()),
            "{v}"
        );
        let silence = v["silence_ms"].as_u64().unwrap();
        assert!(
            (HB_MS..=HB_MS + LATE_MS).contains(&silence),
            "{proto}: the cut noticed after {silence} ms of silence: {v}"
        );
    }
    drop(servers);
}

#[test]
fn probe_asks_the_peer_in_its_protocol() {
    let Some(s) = redis("probe_asks_the_peer_in_its_protocol", &[]) else {
        return;
    };
    let addr = s.addr();
    let run = |args: &[&str]| {
        let mut all = vec![
            "probe",
            addr.as_str(),
            "--detect-within",
            "5s",
            "-f",
            "json",
        ];
        all.extend_from_slice(args);
        let out = Command::new(common::bin()).args(&all).output().unwrap();
        assert_eq!(
            code(&out),
            0,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        json(&out)
    };
    // In its protocol, Redis answers: the recommendation pings it with PING → +PONG.
    let v = run(&["--ping", "redis"]);
    let r = &v["recommendation"];
    assert_eq!(r["peer_answers_ping"], true, "{v}");
    assert!(r["flags"].as_str().unwrap().contains("/redis"), "{v}");
    // tcphb's own PING lines get no answer Redis's way: no heartbeat.
    let v = run(&[]);
    assert_eq!(v["recommendation"]["peer_answers_ping"], false, "{v}");
}

/// `probe --idle-timeout --ping redis`: the idle connections are tested with RESP pings, which
/// Redis answers, and Redis's own idle limit (`timeout 2`: it closes clients idle 2 s) is found
/// and reported as the server closing, not as the path forgetting.
#[test]
fn idle_timeout_search_pings_in_the_services_protocol() {
    let Some(s) = redis(
        "idle_timeout_search_pings_in_the_services_protocol",
        &["--timeout", "2"],
    ) else {
        return;
    };
    let v = common::probe_idle_timeout(&s.addr(), "5s", &["--ping", "redis"]);
    let it = &v["idle_timeout"];
    assert_eq!(it["method"], "ping", "Redis answers its own PING: {it}");
    let close = &it["server_close"];
    assert_eq!(close["how"], "fin", "{it}");
    // Redis counts idleness in whole seconds, checked ten times a second: it closes them 2–3.1 s
    // idle (2.83 s seen here).
    let after = close["after_ms"].as_u64().unwrap();
    assert!((1_900..=3_600).contains(&after), "{it}");
    // Over TLS the search cannot ping: one line, exit 2.
    let out = Command::new(common::bin())
        .args([
            "probe",
            &s.addr(),
            "--idle-timeout",
            "5s",
            "--ping",
            "redis",
            "--tls",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!((code(&out), err.lines().count()), (2, 1), "{err}");
}

/// compare's lab server is a tcphb listen unless --server runs the operator's own: a heartbeat in
/// another protocol is refused up front, saying how to ping a real server.
#[test]
fn compare_refuses_a_heartbeat_in_another_protocol() {
    let out = Command::new(common::bin())
        .args(["compare", "-s", "hb=1s,3/redis", "--fault", "freeze"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 2, "{err}");
    assert!(
        err.contains(
            "strategy 'hb=1s,3/redis': the lab's server is a tcphb listen, which speaks only tcphb's line protocol"
        ) && err.contains("--server"),
        "{err}"
    );
}

/// nginx ends a keep-alive connection after keepalive_requests responses, saying
/// `Connection: close`: the server closing, named, never a death.
#[test]
fn nginx_ending_keepalive_after_its_request_limit_is_named() {
    let Some(s) = nginx_with(
        "nginx_ending_keepalive_after_its_request_limit",
        "",
        "75s",
        "keepalive_requests 2;",
    ) else {
        return;
    };
    let out = pinger(&s, "http", &["--duration", "10s"]).wait_output(Duration::from_secs(20));
    closed_by_the_peer(
        &out,
        "fin",
        Some(
            "the server ends this keep-alive connection itself: after 2 responses it said 'Connection: close'",
        ),
    );
}
