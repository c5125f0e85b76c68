//! Detection on real loopback sockets: a peer frozen with SIGSTOP, killed with SIGKILL, or silent.
//!
//! Every step waits on an event, never on a guessed delay: a socket state or counter read with `ss`
//! (sock_diag), a process state in /proc/PID/stat, a line tcphb printed. Linux only for that reason.
#![cfg(target_os = "linux")]

mod common;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{TcpSock, code, connect, json, listen, ss, wait_until};
use nix::sys::signal::Signal;

/// Client sockets (ours or tcphb connect's) established to `port` on loopback.
fn clients_of(port: u16) -> Vec<TcpSock> {
    ss().into_iter()
        .filter(|s| s.state == "ESTAB" && s.peer_port() == port)
        .collect()
}

/// Wait until `n` client connections to `port` are established and `ready` holds for them.
fn wait_clients(port: u16, n: usize, what: &str, ready: impl Fn(&[TcpSock]) -> bool) {
    wait_until(what, Duration::from_secs(10), || {
        let c = clients_of(port);
        c.len() == n && ready(&c)
    });
}

#[test]
fn frozen_peer_is_caught_by_heartbeat_while_keepalive_stays_up() {
    let (server, port) = listen(&[]);
    let peer = format!("127.0.0.1:{port}");
    let hb = connect(&[&peer, "--heartbeat", "500ms,3", "--format", "json"]);
    let ka = connect(&[
        &peer,
        "--keepalive",
        "1s,1s,3",
        "--duration",
        "6s",
        "--format",
        "json",
    ]);
    // Both connected, and the heartbeat has had an answer (the keepalive connection is idle: it
    // never receives a byte), so the freeze silences a peer that was answering.
    wait_clients(port, 2, "both connected, a PONG received", |c| {
        c.iter().any(|s| s.num("bytes_received") > 0)
    });
    server.signal(Signal::SIGSTOP);
    server.wait_stopped(Duration::from_secs(5));
    let frozen = Instant::now();

    let out = hb.wait_output(Duration::from_secs(15));
    let after_freeze = frozen.elapsed();
    let v = json(&out);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(code(&out), 3, "{v}");
    assert_eq!(v["outcome"], "dead");
    assert_eq!(v["detected_by"], "heartbeat");
    assert_eq!(v["errno"], serde_json::Value::Null);
    let silence = v["silence_ms"].as_u64().unwrap();
    // interval × misses = 1.5 s of silence: the deadline timer never fires early, so 1500 is exact
    // as a floor; 400 ms of scheduling slack on a loaded machine, short of a fourth miss (2000).
    assert!((1500..=1900).contains(&silence), "silence {silence} ms");
    assert!(
        after_freeze < Duration::from_millis(2500),
        "noticed {after_freeze:?} after the freeze"
    );
    assert_eq!(v["expected_ms"], 1500);
    assert_eq!(v["agrees"], true);

    // The frozen peer's kernel still answers keepalive probes: that connection is alive.
    let out = ka.wait_output(Duration::from_secs(15));
    let v = json(&out);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(code(&out), 0, "{v}");
    assert_eq!(v["outcome"], "alive");
    assert_eq!(v["detected_by"], serde_json::Value::Null);
    drop(server);
}

#[test]
fn killed_peer_gives_eof_or_reset() {
    let (server, port) = listen(&[]);
    let c = connect(&[
        &format!("127.0.0.1:{port}"),
        "--keepalive",
        "1s,1s,3",
        "--format",
        "json",
    ]);
    wait_clients(port, 1, "connected", |_| true);
    server.signal(Signal::SIGKILL);
    let out = c.wait_output(Duration::from_secs(10));
    let v = json(&out);
    common::assert_schema("connect.schema.json", &v);
    // On a real path a FIN is the peer closing (exit 5, no mechanism credited); an RST is a reset.
    match code(&out) {
        5 => {
            assert_eq!(v["outcome"], "closed", "{v}");
            assert_eq!(v["closed_by"], "peer", "{v}");
            assert!(v["detected_by"].is_null(), "{v}");
        }
        3 => assert_eq!(v["detected_by"], "reset", "{v}"),
        c => panic!("exit {c}: {v}"),
    }
    assert!(v["elapsed_ms"].as_u64().unwrap() < 3000, "{v}");
}

#[test]
fn busy_connection_to_frozen_peer_is_caught_by_user_timeout() {
    let (server, port) = listen(&[]);
    let c = connect(&[
        &format!("127.0.0.1:{port}"),
        "--keepalive",
        "1s,1s,3",
        "--user-timeout",
        "2s",
        "--load",
        "busy",
        "--format",
        "json",
    ]);
    // Connected and the busy writer's data is being ACKed.
    wait_clients(port, 1, "connected, busy data ACKed", |c| {
        c[0].num("bytes_acked") > 16 * 1024
    });
    server.signal(Signal::SIGSTOP);
    server.wait_stopped(Duration::from_secs(5));
    let frozen = Instant::now();
    let out = c.wait_output(Duration::from_secs(20));
    let took = frozen.elapsed();
    let v = json(&out);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(code(&out), 3, "{v}");
    assert_eq!(v["detected_by"], "user_timeout", "{v}");
    assert_eq!(v["errno"], "ETIMEDOUT");
    // 2 s of zero-window probing after the peer's window fills (well under a second at busy rate).
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "took {took:?}"
    );
    // Keepalive stays silent on a busy connection: it did not fire at 4 s of idle.
    assert_eq!(v["effective"]["keepalive_count"], 3);
}

#[test]
fn heartbeat_counts_a_plain_echo_server_as_alive() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut w = s.try_clone().unwrap();
        let _ = std::io::copy(&mut s, &mut w);
    });
    let c = connect(&[
        &format!("127.0.0.1:{port}"),
        "--heartbeat",
        "200ms,3",
        "--duration",
        "2s",
        "--format",
        "json",
    ]);
    let out = c.wait_output(Duration::from_secs(10));
    let v = json(&out);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(code(&out), 0, "{v}");
    assert_eq!(v["outcome"], "alive");
    echo.join().unwrap();
}

#[test]
fn listen_heartbeat_declares_a_silent_client_dead_and_exits_3_on_sigterm() {
    let (server, port) = listen(&["--heartbeat", "300ms,3", "--format", "json"]);
    // A client that answers the first ping and then neither reads nor answers: its kernel ACKs, its
    // "app" is hung. (One that never answered at all would not be a dead peer but a non-speaker.)
    let client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&client), &mut first).unwrap();
    assert_eq!(first, "PING 1\n", "the server pinged first");
    std::io::Write::write_all(&mut &client, b"PONG 1\n").unwrap();
    // The event: listen prints the connection it declared dead.
    server.wait_stdout("listen's dead event", Duration::from_secs(10), |t| {
        t.lines().any(|l| l.contains(r#""outcome":"dead""#))
    });
    server.signal(Signal::SIGTERM);
    let out = server.wait_output(Duration::from_secs(10));
    assert_eq!(code(&out), 3);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "one event and the summary: {text}");
    for l in &lines {
        common::assert_schema("listen-event.schema.json", l);
    }
    let ev = &lines[0];
    assert_eq!(ev["outcome"], "dead");
    assert_eq!(ev["detected_by"], "heartbeat");
    assert_eq!(ev["peer"], client.local_addr().unwrap().to_string());
    let silence = ev["silence_ms"].as_u64().unwrap();
    // 300 ms × 3 since the connection was accepted (it never answered): 900 ms is a floor (the
    // timer never fires early); 250 ms of slack, short of a fourth miss (1200).
    assert!((900..=1150).contains(&silence), "silence {silence}");
    assert_eq!(lines[1]["dead"], 1);
    assert_eq!(lines[1]["accepted"], 1);
    // tcphb closed the connection it declared dead.
    let mut c = client;
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
}
