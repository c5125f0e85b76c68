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

/// `audit --pid PID --format json` in the lab's server namespace: exit 0, its JSON.
fn audit_in_server(lab: &Lab, pid: &str) -> Value {
    let out = tcphb_in(
        lab,
        Node::Server,
        &["audit", "--pid", pid, "--format", "json"],
    )
    .wait_output(Duration::from_secs(10));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    json(&out)
}

/// `audit --pid PID --watch --format json` in the lab's server namespace, once it follows the one
/// connection.
fn watch_in_server(lab: &Lab, pid: &str) -> Proc {
    let watch = tcphb_in(
        lab,
        Node::Server,
        &["audit", "--pid", pid, "--watch", "--format", "json"],
    );
    watch.wait_stderr("watch started", Duration::from_secs(10), |t| {
        t.contains("following 1 connections")
    });
    watch
}

/// The first event `audit --watch` prints, schema-checked.
fn first_event(watch: &Proc, limit: Duration) -> Value {
    let text = watch.wait_stdout("the end of the connection", limit, |t| {
        t.contains("\"outcome\"")
    });
    let ev: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    common::assert_schema("audit-event.schema.json", &ev);
    ev
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

/// A Python server in the lab's server namespace that sends to its one client all the time, ≈1.3 MB/s
/// (lines a tcphb client reads as load: paced so the client keeps up and its window stays open),
/// with a 6 s user timeout set by its own setsockopt.
const PY_SENDER: &str = r#"
import socket, sys, time
srv = socket.socket(); srv.bind((sys.argv[1], 7979)); srv.listen(1)
print("listening", flush=True)
c, _ = srv.accept()
c.setsockopt(socket.IPPROTO_TCP, 18, 6000)  # TCP_USER_TIMEOUT
print("sending", flush=True)
line = b"DATA " + b"x" * 1000 + b"\n"
try:
    while True:
        c.sendall(line * 64)
        time.sleep(0.05)
except OSError as e:
    print("gave up:", e, flush=True)
sys.stdin.read()
"#;

/// A server sending when its client's path is cut: audit flags its connection as retransmitting,
/// with the time left, then `--watch` reports it dead by its user timeout, judged from the
/// retransmissions it saw.
#[test]
fn a_server_sending_into_a_cut_link_is_flagged_then_watched_to_its_end() {
    if !lab_allowed("a_server_sending_into_a_cut_link_is_flagged_then_watched_to_its_end") {
        return;
    }
    let lab = Lab::build().expect("build the lab");
    let mut cmd = Command::new("python3");
    cmd.args(["-c", PY_SENDER, &lab.server_addr().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    lab.command_in(Node::Server, &mut cmd)
        .expect("command in lab");
    let server = Proc::new(cmd.spawn().expect("python3 (installed by .ci/run)"));
    server.wait_stdout("the server listens", Duration::from_secs(10), |t| {
        t.contains("listening")
    });
    let addr = format!("{}:7979", lab.server_addr());
    let _client = tcphb_in(&lab, Node::Client, &["connect", &addr, "--duration", "60s"]);
    server.wait_stdout("the server sends", Duration::from_secs(10), |t| {
        t.contains("sending")
    });
    wait_until("data acknowledged", Duration::from_secs(10), || {
        ss_in(&lab, Node::Server)
            .iter()
            .any(|s| s.state == "ESTAB" && s.num("bytes_acked") > 0)
    });
    let pid = server.pid().to_string();
    let watch = watch_in_server(&lab, &pid);
    lab.cut(PathFault::Blackhole).expect("cut");
    // The event: the kernel has retransmitted at least twice.
    wait_until("retransmissions", Duration::from_secs(10), || {
        ss_in(&lab, Node::Server)
            .iter()
            .any(|s| s.state == "ESTAB" && s.num("backoff") >= 2)
    });
    let v = audit_in_server(&lab, &pid);
    common::assert_schema("audit.schema.json", &v);
    let a = &v["audited"][0];
    assert_eq!(
        (&a["timer"], &a["effective"]["user_timeout_ms"]),
        (&Value::from("retransmit"), &Value::from(6000)),
        "{v}"
    );
    assert!(a["retransmits"].as_u64().unwrap() >= 1, "{v}");
    let flag = a["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|f| f.starts_with("retransmitting for"))
        .unwrap_or_else(|| panic!("not flagged: {v}"));
    assert!(flag.contains("the kernel gives up in ≈"), "{flag}");
    // Then the user timeout ends it, and --watch names it from the retransmissions it saw.
    let ev = first_event(&watch, Duration::from_secs(20));
    assert_eq!(
        (
            &ev["outcome"],
            &ev["detected_by"],
            &ev["load"],
            &ev["last_timer"]
        ),
        (
            &Value::from("dead"),
            &Value::from("user_timeout"),
            &Value::from("busy"),
            &Value::from("retransmit")
        ),
        "{ev}"
    );
    let silence = ev["silence_ms"].as_u64().unwrap();
    assert!((5_800..=7_000).contains(&silence), "6 s user timeout: {ev}");
    // The server's own view agrees: its send failed when the kernel gave up.
    server.wait_stdout("the server's send failed", Duration::from_secs(10), |t| {
        t.contains("gave up")
    });
}

/// redis-server in the lab's server namespace, with `tcp-keepalive SECS`, stdout captured; returns
/// once it says it accepts connections.
fn redis_in(lab: &Lab, keepalive_secs: u32) -> Proc {
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--bind",
        &lab.server_addr().to_string(),
        "--port",
        "6379",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--tcp-keepalive",
        &keepalive_secs.to_string(),
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    lab.command_in(Node::Server, &mut cmd)
        .expect("command in lab");
    let p = Proc::new(cmd.spawn().expect("redis-server (installed by .ci/run)"));
    p.wait_stdout("redis ready", Duration::from_secs(20), |t| {
        t.contains("Ready to accept connections")
    });
    p
}

/// Redis's own keepalive, read back as Redis sets it (`tcp-keepalive 3`: idle 3 s, interval a third
/// of it, 3 probes), then followed by `audit --watch` through a cut: the event names keepalive, at
/// the silence its settings predict.
#[test]
fn redis_keepalive_is_read_back_and_watch_sees_it_notice_a_cut_client() {
    let test = "redis_keepalive_is_read_back_and_watch_sees_it_notice_a_cut_client";
    if !lab_allowed(test)
        || !common::installed(test, "redis-server", "apt-get install redis-server")
    {
        return;
    }
    let lab = Lab::build().expect("build the lab");
    let redis = redis_in(&lab, 3);
    let pid = redis.pid().to_string();
    let addr = format!("{}:6379", lab.server_addr());
    // An idle client with no detection of its own: only Redis's keepalive can notice.
    let _client = tcphb_in(&lab, Node::Client, &["connect", &addr, "--duration", "5m"]);
    let mut seen = Value::Null;
    // The event: Redis has accepted the client (and set its keepalive, right after accept).
    wait_until(
        "redis's connection audited",
        Duration::from_secs(10),
        || {
            seen = audit_in_server(&lab, &pid);
            seen["audited"]
                .as_array()
                .is_some_and(|a| a.len() == 1 && !a[0]["effective"]["keepalive_idle_ms"].is_null())
        },
    );
    common::assert_schema("audit.schema.json", &seen);
    let e = &seen["audited"][0]["effective"];
    assert_eq!(
        (
            &e["keepalive_idle_ms"],
            &e["keepalive_interval_ms"],
            &e["keepalive_count"]
        ),
        (&Value::from(3000), &Value::from(1000), &Value::from(3)),
        "{seen}"
    );
    assert_eq!(seen["audited"][0]["idle_by"], "keepalive", "{seen}");

    let watch = watch_in_server(&lab, &pid);
    lab.cut(PathFault::Blackhole).expect("cut");
    let ev = first_event(&watch, Duration::from_secs(30));
    assert_eq!(
        (&ev["outcome"], &ev["detected_by"], &ev["errno"], &ev["pid"]),
        (
            &Value::from("dead"),
            &Value::from("keepalive"),
            &Value::from("ETIMEDOUT"),
            &Value::from(redis.pid().as_raw())
        ),
        "{ev}"
    );
    // 3 s idle + 3 probes 1 s apart: within the prediction's band (timer slack), give or take the
    // kernel's jiffies.
    let silence = ev["silence_ms"].as_u64().unwrap();
    let (lo, hi) = (
        ev["expected_min_ms"].as_u64().unwrap(),
        ev["expected_max_ms"].as_u64().unwrap(),
    );
    assert_eq!(ev["expected_ms"], 6000, "{ev}");
    assert!(
        silence + 100 >= lo && silence <= hi + 100,
        "silence {silence} ms outside [{lo}, {hi}]: {ev}"
    );
    assert_eq!(ev["agrees"], true, "{ev}");
    watch.signal(nix::sys::signal::Signal::SIGINT);
    let out = watch.wait_output(Duration::from_secs(10));
    assert_eq!(
        code(&out),
        3,
        "a death was seen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    common::assert_schema("audit-event.schema.json", &last);
    assert_eq!(
        (&last["followed"], &last["dead"]),
        (&Value::from(1), &Value::from(1)),
        "{last}"
    );
}

/// Without the privilege to read another process's sockets, audit still shows the live state and
/// says in one line what it could not read; exit 0 (a --pid of another user's process: exit 4).
#[test]
fn unprivileged_audit_shows_the_live_state_and_says_what_it_could_not_read() {
    if !privileged("unprivileged_audit_shows_the_live_state_and_says_what_it_could_not_read") {
        return;
    }
    let (server, port) = listen(&["--keepalive", "5s,2s,4"]);
    let _client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    wait_until("the connection accepted", Duration::from_secs(10), || {
        audit(&["--pid", &server.pid().to_string()])["audited"]
            .as_array()
            .is_some_and(|a| a.len() == 1)
    });
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin())
            .args(args)
            .output()
            .expect("setpriv (util-linux, installed by .ci/run)")
    };
    let out = as_nobody(&["audit", "--port", &port.to_string(), "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    common::assert_schema("audit.schema.json", &v);
    let a = &v["audited"][0];
    assert_eq!(a["state"], "ESTABLISHED", "{v}");
    assert!(a["effective"].is_null() && a["timer"] == "keepalive", "{v}");
    assert!(
        v["unreadable"].as_str().unwrap().contains("run as root"),
        "{v}"
    );
    let out = as_nobody(&["audit", "--pid", &server.pid().to_string()]);
    assert_eq!(code(&out), 4, "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("run as its user or as root"), "{err}");
}
