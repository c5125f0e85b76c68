//! `tcphb probe`: on loopback (any user), and in the lab (root): the idle timeout of a NAT found within
//! its bracket against tcphb listen and against an echo server tcphb did not write, predictions that
//! match what `tcphb connect` measures after a real cut, and ICMP warnings from the lab's router.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    bin, close_each_after, code, json, lab_allowed, listen, listen_in, probe_json, serve_each,
    server_listener, ss_in, tcphb_in, wait_until,
};
use serde_json::{Value, json};
use tcphb::lab::{Lab, LabError, Node, PathFault};

fn probe(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("probe")
        .args(args)
        .output()
        .expect("run tcphb probe")
}

fn row<'a>(v: &'a Value, mechanism: &str) -> &'a Value {
    v["predictions"]
        .as_array()
        .expect("predictions[]")
        .iter()
        .find(|r| r["mechanism"] == mechanism)
        .unwrap_or_else(|| panic!("no {mechanism} row in {v}"))
}

/// An echo server tcphb did not write: every line comes back as it was sent (so `PING n` is answered
/// by `PING n`). One thread per connection: this is test scaffolding, not tcphb.
fn echo_server(listener: TcpListener) {
    serve_each(listener, |mut c| {
        let mut buf = [0u8; 4096];
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 || c.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Loopback: any user.

#[test]
fn probe_reports_facts_effective_and_predictions_as_json() {
    let (_listen, port) = listen(&[]);
    let peer = format!("127.0.0.1:{port}");
    let out = probe(&[
        &peer,
        "--keepalive",
        "5s,5s,3",
        "--user-timeout",
        "20s",
        "--detect-within",
        "30s",
        "--format",
        "json",
    ]);
    let v = probe_json(&out);
    assert_eq!(v["schema"], 3);
    assert_eq!(v["strategy"], "ka=5s,5s,3+uto=20s");
    let f = &v["facts"];
    assert_eq!(f["os"], "linux");
    let retries2: u64 = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_retries2")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(f["tcp_retries2"], retries2);
    assert!(
        f["tcp_syn_retries"].is_u64() && f["tcp_retries1"].is_u64(),
        "{f}"
    );
    assert!(f["rtt_ms"].as_f64().unwrap() > 0.0, "{f}");
    let rto = f["rto_ms"].as_u64().unwrap();
    assert!(rto >= 200, "{f}");
    assert_eq!(v["effective"]["keepalive_idle_ms"], 5000);
    assert_eq!(v["effective"]["user_timeout_ms"], 20000);
    assert_eq!(v["effective_differences"], serde_json::json!([]));
    // Per mechanism, idle and busy.
    assert_eq!(row(&v, "none")["idle_ms"], Value::Null);
    let none_busy = row(&v, "none")["busy_ms"].as_u64().unwrap();
    assert!(
        none_busy >= 924_600 || retries2 != 15,
        "the budget is a lower bound: {none_busy}"
    );
    assert_eq!(row(&v, "os_keepalive")["idle_by"], "keepalive");
    assert_eq!(row(&v, "keepalive")["idle_ms"], 20_000);
    assert_eq!(row(&v, "keepalive")["busy_by"], "retransmission");
    assert_eq!(row(&v, "user_timeout")["idle_ms"], Value::Null);
    // A busy user timeout counts from the first retransmission, one RTO in.
    let rto = v["facts"]["rto_ms"].as_u64().unwrap().max(200);
    assert_eq!(row(&v, "user_timeout")["busy_ms"], 20_000 + rto);
    // Together: user timeout 20 s rounded to the keepalive tick at 5 + 3×5 = 20 s.
    assert_eq!(row(&v, "strategy")["idle_ms"], 20_000);
    assert_eq!(row(&v, "strategy")["busy_by"], "user_timeout");
    let rec = &v["recommendation"];
    assert_eq!(rec["possible"], true);
    // The peer (tcphb listen) answers PING: keepalive + user timeout, and a heartbeat.
    assert_eq!(rec["peer_answers_ping"], true, "{rec}");
    let flags = rec["flags"].as_str().unwrap();
    assert!(
        flags.starts_with("--keepalive ")
            && flags.contains("--user-timeout ")
            && flags.contains("--heartbeat "),
        "{rec}"
    );
    // The promise is the worst case, not the expected value: both within the deadline.
    assert!(rec["idle_ms"].as_u64().unwrap() <= 30_000);
    assert!(rec["busy_ms"].as_u64().unwrap() <= 30_000);
    assert!(rec["worst_idle_ms"].as_u64().unwrap() <= 30_000, "{rec}");
    assert!(rec["worst_busy_ms"].as_u64().unwrap() <= 30_000, "{rec}");
    assert!(rec["uncovered"].as_array().unwrap().is_empty(), "{rec}");
    assert!(rec["verification"].is_null(), "{rec}");
    assert_eq!(row(&v, "recommended")["settings"], rec["strategy"]);
    assert!(
        v["summary"][1].as_str().unwrap().contains("keepalive"),
        "{v}"
    );
}

#[test]
fn probe_table_names_every_mechanism_and_the_recommendation() {
    let (_listen, port) = listen(&[]);
    // Wide enough that no cell or sentence wraps: the needles are whole phrases.
    let out = Command::new(bin())
        .args([
            "probe",
            &format!("127.0.0.1:{port}"),
            "--detect-within",
            "1500ms",
        ])
        .env("COLUMNS", "1000")
        .output()
        .expect("run tcphb probe");
    assert_eq!(code(&out), 0);
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "tcp_retries1 / tcp_retries2 / tcp_syn_retries",
        "RTO (measured)",
        "os keepalive",
        "never",
        "--heartbeat ",
        "1s500ms is under 2 s",
        "worst case ",
    ] {
        assert!(text.contains(needle), "{needle:?} not in\n{text}");
    }
}

#[test]
fn probe_refuses_impossible_asks() {
    // Below 10 ms: refused before connecting.
    let out = probe(&["127.0.0.1:1", "--detect-within", "5ms"]);
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("below 10 ms"));
    // --duration belongs to --recverr.
    let out = probe(&["127.0.0.1:1", "--duration", "5s"]);
    assert_eq!(code(&out), 2);
    let out = probe(&["127.0.0.1:1", "--idle-timeout", "0"]);
    assert_eq!(code(&out), 2);
}

#[test]
fn probe_idle_timeout_on_loopback_finds_none_within_max() {
    let (_listen, port) = listen(&[]);
    let start = Instant::now();
    let out = probe(&[
        &format!("127.0.0.1:{port}"),
        "--idle-timeout",
        "1s",
        "--format",
        "json",
    ]);
    let took = start.elapsed();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let i = &json(&out)["idle_timeout"];
    assert_eq!(i["high_ms"], Value::Null, "{i}");
    assert_eq!(i["behaviour"], Value::Null);
    assert_eq!(i["method"], "ping", "a tcphb listen answers PING: {i}");
    // Measured idle: the planned 1 s, a few ms late.
    assert!((1000..1050).contains(&i["low_ms"].as_u64().unwrap()), "{i}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
}

/// A server that accepts (in the kernel's backlog) and never says a word answers no PING: `auto`
/// tests it with keepalive probes, which its kernel ACKs — no expiry on loopback, in about MAX.
#[test]
fn probe_idle_timeout_tests_a_silent_server_with_keepalive_probes() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = silent.local_addr().unwrap().to_string();
    let start = Instant::now();
    let out = probe(&[&peer, "--idle-timeout", "2s", "--format", "json"]);
    let took = start.elapsed();
    let v = probe_json(&out);
    let i = &v["idle_timeout"];
    assert_eq!(i["method"], "keepalive", "{i}");
    assert_eq!(
        (&i["high_ms"], &i["server_close"]),
        (&Value::Null, &Value::Null),
        "{i}"
    );
    assert!((2000..2100).contains(&i["low_ms"].as_u64().unwrap()), "{i}");
    for e in i["evidence"].as_array().unwrap() {
        assert_eq!(
            (&e["verdict"], &e["response"]),
            (&json!("alive"), &json!("ack")),
            "{e}"
        );
    }
    // The PING check (1 s: the server stays silent) and MAX: 3 s, with slack for a loaded machine.
    eprintln!("keepalive method, 2 s on loopback: {took:?}");
    assert!(took < Duration::from_millis(4500), "{took:?}");
    drop(silent);
}

#[test]
fn probe_idle_timeout_without_ping_needs_linux_keepalive_and_a_second() {
    // Accepts (in the kernel's backlog) but never says a word.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = silent.local_addr().unwrap().to_string();
    // Under 1 s only PING can test: a usage error, one line.
    let out = probe(&[&peer, "--idle-timeout", "500ms", "--connect-timeout", "1s"]);
    assert_eq!(code(&out), 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("below 1 s, the shortest idle a keepalive probe can test"),
        "{stderr}"
    );
    assert!(stderr.contains("the peer answers no PING"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // PING asked for, against a peer that does not answer it: an error, one line.
    let start = Instant::now();
    let out = probe(&[
        &peer,
        "--idle-timeout",
        "500ms",
        "--idle-method",
        "ping",
        "--connect-timeout",
        "1s",
    ]);
    assert_eq!(code(&out), 1);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("needs a tcphb listen or an echo service"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    drop(silent);
}

// ---------------------------------------------------------------------------------------------
// The lab: root.

/// Lab with a NAT in R forgetting idle flows after `idle`, or `None` if the test may not run here.
fn nat_lab(test: &str, idle: Duration) -> Option<Lab> {
    if !lab_allowed(test) {
        return None;
    }
    let lab = Lab::build().expect("build the lab");
    match lab.enable_nat_expiry(idle) {
        Ok(()) => Some(lab),
        Err(e @ LabError::MissingTool { .. }) if std::env::var_os("CI").is_none() => {
            eprintln!("skipping {test}: {e}");
            None
        }
        Err(e) => panic!("enable_nat_expiry: {e}"),
    }
}

/// `probe PEER --idle-timeout MAX --format json` from the lab's client namespace, ended within
/// `limit`, as [`common::probe_json`] checks it; and how long it ran, from spawn to exit.
fn idle_probe_in(lab: &Lab, peer: SocketAddr, max: &str, limit: Duration) -> (Value, Duration) {
    let start = Instant::now();
    let out = tcphb_in(
        lab,
        Node::Client,
        &[
            "probe",
            &peer.to_string(),
            "--idle-timeout",
            max,
            "--format",
            "json",
        ],
    )
    .wait_output(limit);
    let took = start.elapsed();
    (probe_json(&out), took)
}

/// Run `probe --idle-timeout 10s` from the client against `peer` and check that the NAT's 3 s is
/// inside the reported bracket, the bracket is narrow (≤ 5 % of the timeout or 200 ms), the drop is
/// silent, each connection's answer fits the bracket, and the run takes about MAX. Returns the JSON.
fn find_nat_expiry(lab: &Lab, peer: SocketAddr, method: &str) -> Value {
    let (v, took) = idle_probe_in(lab, peer, "10s", Duration::from_secs(25));
    let i = &v["idle_timeout"];
    assert_eq!(i["method"], method, "{i}");
    let low = i["low_ms"].as_u64().unwrap();
    let high = i["high_ms"].as_u64().expect("an expiry within 10 s");
    let tested = i["evidence"].as_array().unwrap().len();
    let sum: u64 = i["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["planned_idle_ms"].as_u64().unwrap())
        .sum();
    eprintln!(
        "nat-expiry 3 s against {peer} ({method}): bracket ({low} ms, {high} ms] in {} rounds, {tested} connections, search {} ms, whole run {took:?} (idle times tried add up to {sum} ms)",
        i["rounds"], i["elapsed_ms"]
    );
    // The entry expires 3 s after the last packet; the ACK of the first answer may leave a few ms
    // after tcphb starts its idle clock, and conntrack counts in jiffies: 100 ms of slack.
    assert!(
        low <= 3100 && high >= 2900,
        "3 s not in ({low}, {high}]: {i}"
    );
    assert!(
        high - low <= 200.max(high / 20),
        "the bracket should be within 5 % or 200 ms: {i}"
    );
    assert_eq!(i["behaviour"], "silent_drop", "{i}");
    assert_eq!(i["server_close"], Value::Null, "{i}");
    assert!(i["rounds"].as_u64().unwrap() >= 2, "{i}");
    // Evidence per connection: every one alive below the bracket, forgotten above it.
    let (alive, silent) = match method {
        "keepalive" => ("ack", "silence"),
        _ => ("pong", "silence"),
    };
    for e in i["evidence"].as_array().unwrap() {
        let idled = e["idled_ms"].as_u64().unwrap();
        if idled <= low {
            assert_eq!(
                (&e["verdict"], &e["response"]),
                (&json!("alive"), &json!(alive)),
                "{e}"
            );
        }
        if idled >= high {
            assert_eq!(
                (&e["verdict"], &e["response"]),
                (&json!("silent"), &json!(silent)),
                "{e}"
            );
            if method == "keepalive" {
                // The kernel's own verdict on the unanswered probe.
                assert_eq!(e["errno"], "ETIMEDOUT", "{e}");
            }
        }
    }
    // About MAX, not the sum of the idle times: MAX + two answer times (1 s each) at most, plus
    // start-up, the PING check and connecting on a loaded machine.
    let search = i["elapsed_ms"].as_u64().unwrap();
    assert!(search <= 12_000, "{i}");
    assert!(took < Duration::from_millis(14_000), "{took:?}");
    assert!(
        sum > 2 * search,
        "the idle times overlap: {sum} ms tried in {search} ms"
    );
    v
}

#[test]
fn idle_timeout_of_a_nat_is_found_against_tcphb_listen() {
    let Some(lab) = nat_lab(
        "idle_timeout_of_a_nat_is_found_against_tcphb_listen",
        Duration::from_secs(3),
    ) else {
        return;
    };
    let server = lab.server_addr();
    let listen = listen_in(&lab, Node::Server, &format!("{server}:7878"));
    find_nat_expiry(&lab, SocketAddr::from((server, 7878)), "ping");
    drop(listen);
}

#[test]
fn idle_timeout_of_a_nat_is_found_against_a_plain_echo_server() {
    let Some(lab) = nat_lab(
        "idle_timeout_of_a_nat_is_found_against_a_plain_echo_server",
        Duration::from_secs(3),
    ) else {
        return;
    };
    let (l, addr) = server_listener(&lab);
    echo_server(l);
    find_nat_expiry(&lab, addr, "ping");
}

/// A real server that answers no PING (Python's http.server, in B): the kernel's keepalive probe is
/// the test packet, no byte is sent, and the NAT's 3 s is found as precisely as with PING.
#[test]
fn idle_timeout_of_a_nat_is_found_with_keepalive_probes_against_an_http_server() {
    let Some(lab) = nat_lab(
        "idle_timeout_of_a_nat_is_found_with_keepalive_probes_against_an_http_server",
        Duration::from_secs(3),
    ) else {
        return;
    };
    let server = lab.server_addr();
    let port = 8080;
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "http.server",
        "--bind",
        &server.to_string(),
        &port.to_string(),
    ])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    lab.command_in(Node::Server, &mut cmd).unwrap();
    let http = common::Proc::new(cmd.spawn().expect("python3 -m http.server"));
    wait_until(
        "http.server listening in B",
        Duration::from_secs(10),
        || {
            ss_in(&lab, Node::Server)
                .iter()
                .any(|s| s.state == "LISTEN" && s.local_port() == port)
        },
    );
    let v = find_nat_expiry(&lab, SocketAddr::from((server, port)), "keepalive");
    // Nothing but the keepalive probes and the one PING check: the server saw no request on the
    // connections tested (http.server logs each request it parses on stderr).
    let i = &v["idle_timeout"];
    assert_eq!(i["reply_timeout_ms"], 1000, "{i}");
    let out = http.wait_output_after_kill();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.lines().count() <= 2,
        "requests seen by the server: {log}"
    );
}

/// A NAT timeout just under MAX (8 s of 9 s): round 1 only finds it at 9 s, and the round after
/// it is served by the connections opened ahead, already idle just under its idle times — so the
/// bracket still narrows to 5 % and the search ends about MAX (not MAX plus another 8 s).
#[test]
fn an_idle_timeout_near_max_is_narrowed_in_about_max() {
    let Some(lab) = nat_lab(
        "an_idle_timeout_near_max_is_narrowed_in_about_max",
        Duration::from_secs(8),
    ) else {
        return;
    };
    let (l, addr) = server_listener(&lab);
    let (v, _) = idle_probe_in(&lab, addr, "9s", Duration::from_secs(25));
    let i = &v["idle_timeout"];
    let low = i["low_ms"].as_u64().unwrap();
    let high = i["high_ms"].as_u64().expect("an expiry within 9 s");
    let search = i["elapsed_ms"].as_u64().unwrap();
    eprintln!(
        "nat-expiry 8 s, MAX 9 s (keepalive): bracket ({low} ms, {high} ms] in {} rounds, {search} ms",
        i["rounds"]
    );
    assert_eq!(i["method"], "keepalive", "{i}");
    assert!(
        low <= 8100 && high >= 7900,
        "8 s not in ({low}, {high}]: {i}"
    );
    assert!(
        high - low <= high / 20,
        "the bracket should be within 5 %: {i}"
    );
    assert!(i["rounds"].as_u64().unwrap() >= 2, "{i}");
    // Round 2 waited for no idle time of its own: MAX + 2 answers (1 s) + 0.5 s at most.
    assert!(search <= 11_500, "{i}");
    drop(l);
}

/// A server that closes idle connections itself after 2 s, behind a NAT that would forget them after
/// 4 s: the server's own close is reported with its time (FIN), and not taken for the path's expiry.
#[test]
fn a_servers_own_idle_close_is_told_apart_from_the_paths_expiry() {
    let Some(lab) = nat_lab(
        "a_servers_own_idle_close_is_told_apart_from_the_paths_expiry",
        Duration::from_secs(4),
    ) else {
        return;
    };
    let (l, addr) = server_listener(&lab);
    close_each_after(l, Duration::from_secs(2));
    let (v, _) = idle_probe_in(&lab, addr, "6s", Duration::from_secs(20));
    let i = &v["idle_timeout"];
    eprintln!("server closing at 2 s behind a 4 s NAT: {i}");
    assert_eq!(i["method"], "keepalive", "{i}");
    assert_eq!(i["high_ms"], Value::Null, "no expiry of the path: {i}");
    assert_eq!(i["behaviour"], Value::Null, "{i}");
    let c = &i["server_close"];
    assert_eq!(c["how"], "fin", "{i}");
    let after = c["after_ms"].as_u64().unwrap();
    assert!((1990..2300).contains(&after), "{i}");
    assert!(i["low_ms"].as_u64().unwrap() < 2000, "{i}");
    for e in i["evidence"].as_array().unwrap() {
        if e["verdict"] == "closed" {
            assert_eq!(e["response"], "fin_by_server", "{e}");
        } else {
            assert_eq!(
                (&e["verdict"], &e["response"]),
                (&json!("alive"), &json!("ack")),
                "{e}"
            );
        }
    }
    assert!(
        i["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("closes idle connections itself after 2.")),
        "{i}"
    );
    // Said in words in the human report too.
    let out = tcphb_in(
        &lab,
        Node::Client,
        &["probe", &addr.to_string(), "--idle-timeout", "3s"],
    )
    .wait_output(Duration::from_secs(20));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    // Prose wraps at 80 columns: compare with the words joined again.
    let text = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(text.contains("The server itself closed"), "{text}");
    assert!(text.contains("(FIN), the first after 2."), "{text}");
    assert!(text.contains("fin by server"), "{text}");
}

fn within_15_percent(what: &str, measured: u64, predicted: u64) {
    let diff = measured.abs_diff(predicted) as f64 / predicted as f64;
    eprintln!(
        "{what}: measured {measured} ms, predicted {predicted} ms ({:+.1} %)",
        (measured as f64 / predicted as f64 - 1.0) * 100.0
    );
    assert!(
        diff <= 0.15,
        "{what}: measured {measured} ms vs predicted {predicted} ms differ by {:.0} %",
        diff * 100.0
    );
}

/// What `probe` predicts on the lab path for keepalive (idle), user timeout (busy) and bare
/// retransmissions (busy, with tcp_retries2 = 5 in the client's namespace so it ends in seconds, and
/// the measured RTO) is what `connect` then measures after a blackhole.
#[test]
fn predictions_match_measured_detection_in_the_lab() {
    if !lab_allowed("predictions_match_measured_detection_in_the_lab") {
        return;
    }
    let lab = Lab::build().expect("build the lab");
    // Per-namespace sysctl: /proc/sys/net resolves against the namespace of the opening thread.
    lab.enter(Node::Client, || {
        std::fs::write("/proc/sys/net/ipv4/tcp_retries2", "5")
    })
    .unwrap()
    .expect("set tcp_retries2 in the client namespace");
    let server = lab.server_addr();
    let _listen = listen_in(&lab, Node::Server, &format!("{server}:7878"));
    let peer = format!("{server}:7878");

    let out = tcphb_in(
        &lab,
        Node::Client,
        &[
            "probe",
            &peer,
            "--keepalive",
            "2s,1s,3",
            "--user-timeout",
            "3s",
            "--format",
            "json",
        ],
    )
    .wait_output(Duration::from_secs(10));
    let v = probe_json(&out);
    assert_eq!(
        v["facts"]["tcp_retries2"], 5,
        "probe reads the client namespace"
    );
    let ka_idle = row(&v, "keepalive")["idle_ms"].as_u64().unwrap();
    let uto_busy = row(&v, "user_timeout")["busy_ms"].as_u64().unwrap();
    let none_busy = row(&v, "none")["busy_ms"].as_u64().unwrap();
    let rto = v["facts"]["rto_ms"].as_u64().unwrap().max(200);
    assert_eq!((ka_idle, uto_busy), (5000, 3000 + rto));
    // 63 × the measured RTO (≥ 200 ms): at or just above the 12.6 s budget.
    assert!((12_600..=13_500).contains(&none_busy), "{none_busy}");

    let connect = |args: &[&str]| {
        let mut a = vec!["connect", &peer, "--format", "json"];
        a.extend_from_slice(args);
        tcphb_in(&lab, Node::Client, &a)
    };
    let ka = connect(&["--keepalive", "2s,1s,3"]);
    let uto = connect(&["--user-timeout", "3s", "--load", "busy"]);
    let none = connect(&["--load", "busy"]);
    // Cut once all three are connected and both busy writers' data is being ACKed (then data is
    // in flight at the cut). The keepalive one stays idle: its silence counts from the handshake.
    wait_until(
        "three connections, two of them busy",
        Duration::from_secs(10),
        || {
            let c: Vec<_> = ss_in(&lab, Node::Client)
                .into_iter()
                .filter(|s| s.state == "ESTAB" && s.peer_port() == 7878)
                .collect();
            c.len() == 3
                && c.iter()
                    .filter(|s| s.num("bytes_acked") > 64 * 1024)
                    .count()
                    == 2
        },
    );
    lab.cut(PathFault::Blackhole).expect("cut");

    for (p, what, predicted, by) in [
        (ka, "keepalive 2s,1s,3 idle", ka_idle, "keepalive"),
        (uto, "user timeout 3s busy", uto_busy, "user_timeout"),
        (
            none,
            "retransmissions (tcp_retries2=5) busy",
            none_busy,
            "retransmission",
        ),
    ] {
        let out = p.wait_output(Duration::from_secs(30));
        assert_eq!(
            code(&out),
            3,
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let d = json(&out);
        common::assert_schema("connect.schema.json", &d);
        assert_eq!(d["detected_by"], by, "{what}: {d}");
        within_15_percent(what, d["silence_ms"].as_u64().unwrap(), predicted);
    }
}

/// `--recverr` on a busy connection reports the router's ICMP host unreachable within a second of
/// the cut, names the router, and the connection is still alive at the end (a soft error).
#[test]
fn recverr_reports_the_routers_unreachable_at_once() {
    if !lab_allowed("recverr_reports_the_routers_unreachable_at_once") {
        return;
    }
    let lab = Lab::build().expect("build the lab");
    let (l, addr) = server_listener(&lab);
    let p = tcphb_in(
        &lab,
        Node::Client,
        &[
            "probe",
            &addr.to_string(),
            "--recverr",
            "--duration",
            "4s",
            "--format",
            "json",
        ],
    );
    let (mut conn, _) = l.accept().expect("probe connects");
    let opened = Instant::now();
    let (streaming_tx, streaming) = std::sync::mpsc::channel();
    let sink = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        conn.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        let mut first = true;
        while matches!(conn.read(&mut buf), Ok(n) if n > 0) {
            if std::mem::take(&mut first) {
                let _ = streaming_tx.send(());
            }
        }
    });
    // Cut once the busy stream flows: probe watches for ICMP from then on.
    streaming
        .recv_timeout(Duration::from_secs(5))
        .expect("probe --recverr streams data");
    lab.cut(PathFault::Unreachable).expect("cut");
    let cut_ms = opened.elapsed().as_millis() as u64;
    let out = p.wait_output(Duration::from_secs(15));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 0, "still alive at the end: {stderr}");
    let v = json(&out);
    common::assert_schema("probe.schema.json", &v);
    let w = &v["early_warnings"];
    let first = &w["warnings"][0];
    let at = first["at_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no warning: {w}"));
    eprintln!("cut at +{cut_ms} ms, first warning at +{at} ms: {first}");
    assert!(
        at + 50 >= cut_ms && at <= cut_ms + 1000,
        "warning at +{at} ms, cut at +{cut_ms} ms: {w}"
    );
    assert_eq!(first["what"], "host unreachable", "{w}");
    assert_eq!(first["reporter"], lab.router_addr().to_string(), "{w}");
    assert_eq!(first["icmp_type"], 3);
    assert_eq!(first["icmp_code"], 1);
    // The kernel raises the socket error only if the ICMP arrives while tcphb is not inside a socket
    // call (else it is kept as a soft error for the timers): usually there, not always.
    assert!(
        first["errno"] == "EHOSTUNREACH" || first["errno"].is_null(),
        "{w}"
    );
    assert!(first["messages"].as_u64().unwrap() >= 1, "{w}");
    assert_eq!(w["ended_at_ms"], Value::Null, "{w}");
    assert!(
        stderr.contains("warning: host unreachable reported by 198.18.0.1 at +"),
        "{stderr}"
    );
    // Nothing before the cut.
    assert!(
        w["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["at_ms"].as_u64().unwrap() + 50 >= cut_ms),
        "{w}"
    );
    drop(sink);
}
