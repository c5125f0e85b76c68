//! `tcphb audit` against processes tcphb did not configure itself: a Python server whose sockets
//! have known settings, a `tcphb listen` with its own, and a connection stuck retransmitting into a
//! cut link. Reading another process's socket options needs root (CI is root).
#![cfg(target_os = "linux")]

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, bin, code, json, lab_allowed, listen, ss_in, tcphb_in, wait_until};
use serde_json::Value;
use tcphb::lab::{Lab, Node, PathFault};

/// `audit ARGS --format json`, schema-checked.
fn audit(args: &[&str]) -> Value {
    let out = Command::new(bin())
        .arg("audit")
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("run tcphb audit");
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    common::assert_schema("audit.schema.json", &v);
    v
}

fn privileged(test: &str) -> bool {
    // The same rule as the lab: root in CI, a printed skip on a laptop.
    lab_allowed(test)
}

/// A Python server: one connection with keepalive off, one with keepalive at the OS default, one with
/// keepalive 7s,3s,4 and a user timeout of 9 s, set by Python's own setsockopt calls.
const PY_SERVER: &str = r#"
import socket, sys, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(8)
print(srv.getsockname()[1], flush=True)
conns = []
for i in range(3):
    c, _ = srv.accept()
    if i == 1:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if i == 2:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 7)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 3)
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)
        c.setsockopt(socket.IPPROTO_TCP, 18, 9000)  # TCP_USER_TIMEOUT
    conns.append(c)
    print("configured", i, flush=True)
sys.stdin.read()
"#;

#[test]
fn reads_back_what_a_python_server_set_exactly() {
    if !privileged("reads_back_what_a_python_server_set_exactly") {
        return;
    }
    let mut child = Command::new("python3")
        .args(["-c", PY_SERVER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (installed by .ci/run)");
    let pid = child.id().to_string();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = line.trim().parse().expect("the server's port");
    let clients: Vec<TcpStream> = (0..3)
        .map(|i| {
            let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            // The event: the server has set this connection's options.
            let mut l = String::new();
            out.read_line(&mut l).unwrap();
            assert_eq!(l.trim(), format!("configured {i}"));
            c
        })
        .collect();
    let v = audit(&["--pid", &pid, "--detect-within", "30s"]);
    let conns = v["audited"].as_array().unwrap();
    assert_eq!(conns.len(), 3, "{v}");
    assert!(v["unreadable"].is_null(), "{v}");
    // Accepted in order: the peers' ports tell which client each one serves.
    let by_client = |c: &TcpStream| {
        let peer = c.local_addr().unwrap().to_string();
        conns
            .iter()
            .find(|a| a["peer"] == peer.as_str())
            .unwrap_or_else(|| panic!("no connection from {peer}: {v}"))
            .clone()
    };
    let off = by_client(&clients[0]);
    assert!(off["effective"]["keepalive_idle_ms"].is_null(), "{off}");
    assert!(
        off["alerts"][0]
            .as_str()
            .unwrap()
            .starts_with("keepalive off"),
        "{off}"
    );
    let os = by_client(&clients[1]);
    assert_eq!(os["effective"]["keepalive_idle_ms"], 7_200_000, "{os}");
    assert!(
        os["alerts"][0].as_str().unwrap().contains("OS default"),
        "{os}"
    );
    let set = by_client(&clients[2]);
    let e = &set["effective"];
    assert_eq!(
        (
            &e["keepalive_idle_ms"],
            &e["keepalive_interval_ms"],
            &e["keepalive_count"],
            &e["user_timeout_ms"]
        ),
        (
            &Value::from(7000),
            &Value::from(3000),
            &Value::from(4),
            &Value::from(9000)
        ),
        "{set}"
    );
    assert_eq!(set["idle_by"], "user_timeout", "{set}");
    assert_eq!(
        set["idle_ms"], 10_000,
        "the user timeout, at the next probe tick: {set}"
    );
    // Only the configured one notices within 30 s.
    assert_eq!(v["slower_than_deadline"], 2, "{v}");
    drop(clients);
    drop(child.stdin.take());
    let _ = child.wait();
}

#[test]
fn reads_a_tcphb_listen_and_finds_it_by_port_too() {
    if !privileged("reads_a_tcphb_listen_and_finds_it_by_port_too") {
        return;
    }
    let (server, port) = listen(&["--keepalive", "5s,2s,4", "--user-timeout", "7s"]);
    let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // The event: listen has accepted it (and applied its settings on accept).
    wait_until("the connection audited", Duration::from_secs(10), || {
        audit(&["--pid", &server.pid().to_string()])["audited"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && !a[0]["effective"]["keepalive_idle_ms"].is_null())
    });
    for v in [
        audit(&["--pid", &server.pid().to_string()]),
        audit(&["--port", &port.to_string()]),
    ] {
        let a = &v["audited"][0];
        assert_eq!(a["pid"], server.pid().as_raw(), "{v}");
        assert_eq!(a["state"], "ESTABLISHED", "{v}");
        assert_eq!(a["effective"]["keepalive_count"], 4, "{v}");
        assert_eq!(a["effective"]["user_timeout_ms"], 7000, "{v}");
        assert_eq!(a["timer"], "keepalive", "{v}");
    }
}

#[test]
fn a_process_that_does_not_exist_is_a_usage_error() {
    let out = Command::new(bin())
        .args(["audit", "--pid", "999999999"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// A busy connection whose path was cut: audit names it as retransmitting, with the time left.
#[test]
fn a_connection_retransmitting_into_a_cut_link_is_flagged() {
    if !lab_allowed("a_connection_retransmitting_into_a_cut_link_is_flagged") {
        return;
    }
    let lab = Lab::build().expect("build the lab");
    let addr = format!("{}:7878", lab.server_addr());
    let peer: Proc = common::listen_in(&lab, Node::Server, &addr);
    let client = tcphb_in(
        &lab,
        Node::Client,
        &["connect", &addr, "--load", "busy", "--duration", "60s"],
    );
    wait_until("the busy connection", Duration::from_secs(10), || {
        ss_in(&lab, Node::Client)
            .iter()
            .any(|s| s.state == "ESTAB" && s.num("bytes_acked") > 0)
    });
    lab.cut(PathFault::Blackhole).expect("cut");
    // The event: the kernel has retransmitted at least twice.
    wait_until("retransmissions", Duration::from_secs(10), || {
        ss_in(&lab, Node::Client).iter().any(|s| {
            s.state == "ESTAB" && s.info.contains("retrans:") && !s.info.contains("retrans:0/")
        }) && ss_in(&lab, Node::Client)
            .iter()
            .any(|s| s.num("backoff") >= 2)
    });
    let p = tcphb_in(
        &lab,
        Node::Client,
        &[
            "audit",
            "--pid",
            &client.pid().to_string(),
            "--format",
            "json",
        ],
    );
    let out = p.wait_output(Duration::from_secs(10));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    common::assert_schema("audit.schema.json", &v);
    let a = &v["audited"][0];
    assert_eq!(a["timer"], "retransmit", "{v}");
    assert!(a["retransmits"].as_u64().unwrap() >= 1, "{v}");
    let flag = a["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|f| f.starts_with("retransmitting for"))
        .unwrap_or_else(|| panic!("not flagged: {v}"));
    assert!(flag.contains("the kernel gives up in ≈"), "{flag}");
    drop(peer);
}
