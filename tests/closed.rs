//! A live peer that closes the connection itself is reported as what it is — `closed` by the peer,
//! after how long idle, never judged against the prediction, exit 5 — not as a detection; and a peer
//! that never answers a heartbeat in any form is an error, not a death. Against real servers: an
//! nginx with short idle timeouts, and tiny servers written here.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use clap::CommandFactory;
use common::{Proc, bin, closing_server, code, json, probe_idle_timeout, serve_each_on_loopback};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

fn connect(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("connect")
        .args(args)
        .output()
        .expect("run tcphb connect")
}

/// A closed-by-peer report: no mechanism credited, no judgement against the prediction.
fn assert_closed_by_peer(v: &Value) {
    assert_eq!(v["outcome"], "closed", "{v}");
    assert_eq!(v["closed_by"], "peer", "{v}");
    assert_eq!(v["how"], "fin", "{v}");
    assert!(v["detected_by"].is_null(), "a FIN detects nothing: {v}");
    assert!(v["errno"].is_null(), "{v}");
    assert!(v["agrees"].is_null(), "a close is not judged: {v}");
    assert!(v["disagreement"].is_null(), "{v}");
}

/// The measured idle time before the close, checked against the server's timeout: never earlier
/// (less a few ms of clock granularity), and late by at most `slack` on a loaded 2-core machine.
fn assert_idle_near(v: &Value, timeout_ms: u64, slack_ms: u64) {
    let idle = v["idled_ms"].as_u64().expect("idled_ms");
    assert!(
        idle + 50 >= timeout_ms && idle <= timeout_ms + slack_ms,
        "idle {idle} ms for a {timeout_ms} ms server timeout: {v}"
    );
    let elapsed = v["elapsed_ms"].as_u64().unwrap();
    assert!(idle <= elapsed, "idle {idle} > lifetime {elapsed}: {v}");
}

#[test]
fn a_server_closing_an_idle_connection_is_closed_by_peer_exit_5() {
    let port = closing_server(Duration::from_millis(2000));
    let peer = format!("127.0.0.1:{port}");
    // The keepalive would have noticed a silent death after 1 s + 1 × 1 s: the server's own 2 s,
    // the coincidence that once made a close look like a "matching" detection.
    let out = connect(&[&peer, "--keepalive", "1s,1s,1", "--format", "json"]);
    let v = json(&out);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(code(&out), 5, "{v}");
    assert_closed_by_peer(&v);
    assert_idle_near(&v, 2000, 1000);
    assert_eq!(
        v["expected_ms"], 2000,
        "the prediction is still shown, as context: {v}"
    );

    let out = connect(&[&peer, "--keepalive", "1s,1s,1"]);
    assert_eq!(code(&out), 5);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(!table.contains("Matches the prediction"), "{table}");
    assert!(!table.contains("Differs from the prediction"), "{table}");
    assert!(
        table.contains("The server closed this idle connection after 2."),
        "{table}"
    );
    assert!(table.contains("peer (FIN)"), "{table}");

    // Many connections: none died, all were closed by the peer.
    let out = connect(&[&peer, "--connections", "3", "--format", "json"]);
    let v = json(&out);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(code(&out), 5, "{v}");
    assert_eq!(v["closed"], 3, "{v}");
    assert_eq!(v["dead"], 0, "{v}");
    assert_eq!(v["by_mechanism"], serde_json::json!([]), "{v}");
}

#[test]
fn a_peer_that_never_answers_a_heartbeat_is_an_error_not_a_death() {
    // Accepts and reads, never writes.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            thread::spawn(move || {
                let mut sink = [0u8; 1024];
                while matches!(c.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    let peer = format!("127.0.0.1:{port}");
    let out = connect(&[&peer, "--heartbeat", "200ms,3", "--format", "json"]);
    assert_eq!(code(&out), 1);
    assert!(out.stdout.is_empty(), "an error prints no report");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    let first = format!("the peer at {peer} never answered a heartbeat (no PONG or echo in");
    for needle in [
        first.as_str(),
        "does not speak tcphb's PING protocol",
        "--keepalive/--user-timeout",
        "`tcphb listen` or an echo server",
    ] {
        assert!(stderr.contains(needle), "{needle:?} in {stderr}");
    }
}

#[test]
fn a_peer_that_answered_then_fell_silent_is_dead() {
    // Answers the first ping, then keeps reading without answering: a hung application.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        let (c, _) = l.accept().unwrap();
        let mut w = c.try_clone().unwrap();
        let mut r = BufReader::new(c);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let seq = line.trim().strip_prefix("PING ").expect("a ping");
        w.write_all(format!("PONG {seq}\n").as_bytes()).unwrap();
        while matches!(r.read_line(&mut line), Ok(n) if n > 0) {}
    });
    let out = connect(&[
        &format!("127.0.0.1:{port}"),
        "--heartbeat",
        "200ms,3",
        "--format",
        "json",
    ]);
    let v = json(&out);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(code(&out), 3, "{v}");
    assert_eq!(v["outcome"], "dead");
    assert_eq!(v["detected_by"], "heartbeat");
    assert!(v["closed_by"].is_null(), "{v}");
}

/// `tcphb listen` with stdout read line by line here, so the test waits for events, not for time.
struct Listen {
    proc: Proc,
    port: u16,
    events: std::sync::mpsc::Receiver<Value>,
}

fn listen(args: &[&str]) -> Listen {
    let mut child = Command::new(bin())
        .args(["listen", "127.0.0.1:0", "--format", "json"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcphb listen");
    let mut banner = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut banner)
        .unwrap();
    let port = banner
        .rsplit(':')
        .next()
        .and_then(|p| p.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {banner:?}"));
    let stdout = child.stdout.take().unwrap();
    let (tx, events) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(serde_json::from_str(&line).expect("a JSON line"));
        }
    });
    Listen {
        proc: Proc::new(child),
        port,
        events,
    }
}

impl Listen {
    fn next_event(&self) -> Value {
        let ev = self
            .events
            .recv_timeout(Duration::from_secs(10))
            .expect("an event from tcphb listen");
        common::assert_schema("listen-event.schema.json", &ev);
        ev
    }
}

#[test]
fn listen_reports_client_closes_and_non_speakers_without_calling_them_dead() {
    let l = listen(&["--heartbeat", "300ms,3"]);
    // A client that answers the pings, then closes after about a second.
    let client = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    let closer = client.local_addr().unwrap().to_string();
    let answering = thread::spawn(move || {
        let mut w = client.try_clone().unwrap();
        let mut r = BufReader::new(client);
        let start = Instant::now();
        let mut line = String::new();
        while start.elapsed() < Duration::from_millis(1000) {
            line.clear();
            r.read_line(&mut line).unwrap();
            if let Some(seq) = line.trim().strip_prefix("PING ") {
                w.write_all(format!("PONG {seq}\n").as_bytes()).unwrap();
            }
        }
        // Close with FIN, then take what is still sent until tcphb closes too (unread data would
        // turn the close into a RST).
        w.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
    });
    answering.join().unwrap();
    let ev = l.next_event();
    assert_eq!(ev["peer"], closer);
    assert_closed_by_peer(&ev);
    // It answered the last ping a heartbeat interval ago at most.
    assert!(ev["idled_ms"].as_u64().unwrap() <= 600, "{ev}");

    // A client that never answers: tcphb closes it as a non-speaker, not a dead peer.
    let mut mute = TcpStream::connect(("127.0.0.1", l.port)).unwrap();
    let mute_addr = mute.local_addr().unwrap().to_string();
    let mut sink = Vec::new();
    mute.read_to_end(&mut sink).unwrap();
    let ev = l.next_event();
    assert_eq!(ev["peer"], mute_addr);
    assert_eq!(ev["outcome"], "closed", "{ev}");
    assert_eq!(ev["closed_by"], "tcphb", "{ev}");
    assert_eq!(ev["how"], "no_heartbeat", "{ev}");
    assert!(ev["detected_by"].is_null(), "{ev}");
    assert!(ev["agrees"].is_null(), "{ev}");
    assert!(
        ev["note"]
            .as_str()
            .unwrap()
            .contains("never answered a heartbeat"),
        "{ev}"
    );

    l.proc.signal(Signal::SIGTERM);
    let summary = l.next_event();
    assert_eq!(summary["dead"], 0, "{summary}");
    assert_eq!(summary["closed"], 1, "{summary}");
    assert_eq!(summary["closed_by_tcphb"], 1, "{summary}");
    let out = l.proc.wait_output(Duration::from_secs(10));
    assert_eq!(code(&out), 0, "client closes are not deaths");
}

#[test]
fn help_documents_exit_5() {
    let help = tcphb::cli::Cli::command().render_long_help().to_string();
    assert!(
        help.contains("5    the peer closed the connection itself, not a death"),
        "{help}"
    );
    assert!(help.contains("3    a dead connection was detected: silence or reset, only that"));
}

// ---- nginx ----

/// The nginx binary, if installed. Missing: skip with a reason, or fail when `CI` is set (.ci/run
/// installs it).
fn nginx_binary(test: &str) -> Option<PathBuf> {
    common::program(test, "nginx", "apt-get install nginx")
}

/// An nginx of our own: bound to 127.0.0.1 only, its prefix, config, logs and temp files in a temp
/// dir, one process in the foreground (no master, no daemon), killed by its PID when dropped.
struct Nginx {
    proc: Option<Proc>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(binary: &PathBuf, timeout: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        // A free port: bind 0, read it, release it for nginx (a race only with other binds of port 0).
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = dir.path().display();
        let conf = format!(
            "daemon off;\n\
             master_process off;\n\
             worker_processes 1;\n\
             pid {p}/nginx.pid;\n\
             error_log {p}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
               access_log off;\n\
               client_body_temp_path {p}/body;\n\
               proxy_temp_path {p}/proxy;\n\
               fastcgi_temp_path {p}/fastcgi;\n\
               uwsgi_temp_path {p}/uwsgi;\n\
               scgi_temp_path {p}/scgi;\n\
               keepalive_timeout {timeout};\n\
               client_header_timeout {timeout};\n\
               server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\\n\"; }} }}\n\
             }}\n"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nginx");
        let mut n = Nginx {
            proc: Some(Proc::new(child)),
            port,
            _dir: dir,
        };
        n.wait_until_it_answers();
        n
    }

    /// Wait for nginx to serve a request (the port accepts and answers), bounded.
    fn wait_until_it_answers(&mut self) {
        let start = Instant::now();
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
                let mut reply = String::new();
                let _ = s.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "nginx did not start serving on port {}",
                self.port
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // Proc's Drop kills it by its PID.
        self.proc.take();
    }
}

#[test]
fn an_nginx_closing_an_idle_connection_is_not_a_detection() {
    let Some(binary) = nginx_binary("an_nginx_closing_an_idle_connection_is_not_a_detection")
    else {
        return;
    };
    let nginx = Nginx::start(&binary, "2s");
    let peer = format!("127.0.0.1:{}", nginx.port);
    // The bug this guards: keepalive 1s,1s,1 predicts 2 s, nginx closes at 2 s, and the close was
    // once reported as "detected by eof", exit 3, "Matches the prediction."
    let json_run = {
        let peer = peer.clone();
        thread::spawn(move || connect(&[&peer, "--keepalive", "1s,1s,1", "--format", "json"]))
    };
    let out = connect(&[&peer, "--keepalive", "1s,1s,1"]);
    assert_eq!(code(&out), 5, "{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(!table.contains("Matches the prediction"), "{table}");
    assert!(!table.contains("detected by"), "{table}");
    assert!(
        table.contains("The server closed this idle connection after 2."),
        "{table}"
    );

    let out = json_run.join().unwrap();
    let v = json(&out);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(code(&out), 5, "{v}");
    assert_closed_by_peer(&v);
    assert_eq!(v["expected_ms"], 2000, "{v}");
    // nginx's timers run on its event loop: on time, late by its timer slack on a loaded machine.
    assert_idle_near(&v, 2000, 1000);
    drop(nginx);
}

/// `probe --idle-timeout` against an nginx that closes idle connections after 2 s
/// (client_header_timeout): nginx answers no PING, so keepalive probes test the connections, and
/// the 2 s is reported as the server's own close (FIN) with its time — not as the path's expiry.
#[test]
fn probe_names_an_nginxs_own_idle_close_apart_from_the_path() {
    let Some(binary) = nginx_binary("probe_names_an_nginxs_own_idle_close_apart_from_the_path")
    else {
        return;
    };
    let nginx = Nginx::start(&binary, "2s");
    let peer = format!("127.0.0.1:{}", nginx.port);
    let v = probe_idle_timeout(&peer, "4s", &[]);
    let i = &v["idle_timeout"];
    eprintln!(
        "nginx closing idle connections at 2 s: {}",
        i["server_close"]
    );
    assert_eq!(i["method"], "keepalive", "{i}");
    assert_eq!(i["high_ms"], Value::Null, "not the path's expiry: {i}");
    assert_eq!(i["behaviour"], Value::Null, "{i}");
    let c = &i["server_close"];
    assert_eq!(c["how"], "fin", "{i}");
    // nginx's timers run on its event loop: on time, late by its timer slack on a loaded machine.
    let after = c["after_ms"].as_u64().unwrap();
    assert!((1950..3000).contains(&after), "{i}");
    assert!(i["low_ms"].as_u64().unwrap() < after, "{i}");
    assert!(
        i["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["response"] == "ack" || e["response"] == "fin_by_server"),
        "{i}"
    );
    drop(nginx);
}

/// A server that aborts each connection with a RST (SO_LINGER 0) `after` its accept, having sent
/// nothing.
fn resetting_server(after: Duration) -> u16 {
    serve_each_on_loopback(move |c| {
        // The server's idle timeout: the behaviour under test, not sequencing.
        thread::sleep(after);
        socket2::SockRef::from(&c)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(c);
    })
}

/// A live server that aborts an idle connection with a RST that answers nothing tcphb sent (no
/// data, no keepalive probe unanswered) closes it itself, like a FIN: closed by the peer, how
/// `rst`, exit 5 — not a dead peer. `probe --idle-timeout` names it the same way.
#[test]
fn a_server_resetting_an_idle_connection_is_its_own_close_not_a_death() {
    let port = resetting_server(Duration::from_millis(2000));
    let peer = format!("127.0.0.1:{port}");
    // Keepalive 1s,1s,5: one probe answered at 1 s, none outstanding when the RST comes at 2 s.
    for ka in ["5s,1s,3", "1s,1s,5"] {
        let out = connect(&[&peer, "--keepalive", ka, "--format", "json"]);
        let v = json(&out);
        common::assert_schema("connect.schema.json", &v);
        assert_eq!(code(&out), 5, "{ka}: {v}");
        assert_eq!(
            (&v["outcome"], &v["closed_by"], &v["how"]),
            (&json!("closed"), &json!("peer"), &json!("rst")),
            "{ka}: {v}"
        );
        assert!(v["detected_by"].is_null() && v["agrees"].is_null(), "{v}");
        assert_eq!(v["errno"], "ECONNRESET", "the evidence stays: {v}");
        assert_idle_near(&v, 2000, 1000);
    }
    let out = connect(&[&peer, "--keepalive", "5s,1s,3"]);
    assert_eq!(code(&out), 5);
    let table = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(table.contains("peer (RST)"), "{table}");
    assert!(
        table.contains("The server closed this idle connection after 2.")
            && table.contains("a RST that answered nothing tcphb sent"),
        "{table}"
    );

    let v = probe_idle_timeout(&peer, "3s", &[]);
    let i = &v["idle_timeout"];
    assert_eq!(
        (&i["high_ms"], &i["behaviour"]),
        (&Value::Null, &Value::Null),
        "{i}"
    );
    assert_eq!(i["server_close"]["how"], "rst", "{i}");
    let after = i["server_close"]["after_ms"].as_u64().unwrap();
    assert!((1990..2500).contains(&after), "{i}");
    assert!(
        i["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["response"] == "ack" || e["response"] == "rst_by_server"),
        "{i}"
    );
}
