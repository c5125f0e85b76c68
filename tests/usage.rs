//! Bad input: one clear line on stderr and the documented exit code, never a panic.
#![cfg(unix)]

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::{bin, code};

/// Run tcphb and return (exit code, stderr).
fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin()).args(args).output().expect("run tcphb");
    (code(&out), String::from_utf8(out.stderr).unwrap())
}

fn assert_one_line(stderr: &str, needle: &str) {
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr:?}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn malformed_and_out_of_range_specs_exit_2() {
    for (args, needle) in [
        (
            &["connect", "127.0.0.1:1", "--keepalive", "5s"][..],
            "IDLE,INTERVAL,COUNT",
        ),
        (
            &["connect", "127.0.0.1:1", "--keepalive", "1500ms,1s,3"],
            "1 s resolution",
        ),
        (
            &["connect", "127.0.0.1:1", "--keepalive", "1s,1s,128"],
            "1..=127",
        ),
        (
            &["connect", "127.0.0.1:1", "--keepalive", "40000,1,3"],
            "out of range",
        ),
        (
            &["connect", "127.0.0.1:1", "--heartbeat", "1s"],
            "INTERVAL,MISSES",
        ),
        (&["connect", "127.0.0.1:1", "--heartbeat", "1s,0"], "misses"),
        (
            &["connect", "127.0.0.1:1", "--user-timeout", "0"],
            "greater than zero",
        ),
        (
            &["connect", "127.0.0.1:1", "--user-timeout", "soon"],
            "invalid duration",
        ),
        (
            &["connect", "127.0.0.1:1", "--load", "heavy"],
            "possible values",
        ),
        (&["connect"], "HOST:PORT"),
        (&["frobnicate"], "unrecognized subcommand"),
    ] {
        let (c, err) = run(args);
        assert_eq!(c, 2, "{args:?}: {err}");
        assert_one_line(&err, needle);
    }
}

#[test]
fn bad_addresses_exit_2_and_refused_exits_1() {
    let (c, err) = run(&["connect", "no-such-host.invalid:80"]);
    assert_eq!(c, 2, "{err}");
    assert_one_line(&err, "cannot resolve 'no-such-host.invalid:80'");

    let (c, err) = run(&["connect", "127.0.0.1"]);
    assert_eq!(c, 2, "{err}");
    assert_one_line(&err, "no port");

    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (c, err) = run(&["listen", &addr]);
    assert_eq!(c, 2, "{err}");
    assert_one_line(&err, "already in use");

    // A port nothing listens on: bind, note it, close it.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let (c, err) = run(&["connect", &free]);
    assert_eq!(c, 1, "{err}");
    assert_one_line(
        &err,
        &format!("connection to {free} refused (ECONNREFUSED)"),
    );
}

/// `compare --svg` to a path that cannot be written fails at once, before any lab is built (so
/// without root too), in one line, exit 1 — not after the whole comparison.
#[test]
fn an_unwritable_svg_path_fails_before_measuring() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("no-such-dir").join("t.svg");
    let started = std::time::Instant::now();
    let (c, err) = run(&[
        "compare",
        "--svg",
        bad.to_str().unwrap(),
        "--deadline",
        "30s",
    ]);
    assert_eq!(c, 1, "{err}");
    assert_one_line(&err, "--svg");
    assert!(err.contains("cannot create the file"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}: the lab ran first",
        started.elapsed()
    );
    assert!(!bad.exists());
}

#[test]
fn connect_json_has_the_documented_keys_and_types() {
    let (server, port) = common::listen(&[]);
    let out = Command::new(bin())
        .args([
            "connect",
            &format!("127.0.0.1:{port}"),
            "--keepalive",
            "2s,1s,4",
            "--user-timeout",
            "3s",
        ])
        .args([
            "--heartbeat",
            "100ms,5",
            "--duration",
            "500ms",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
    let v = common::json(&out);
    common::assert_schema("connect.schema.json", &v);
    assert_eq!(v["schema"], 3);
    assert_eq!(v["peer"], format!("127.0.0.1:{port}"));
    assert_eq!(v["strategy"], "ka=2s,1s,4+uto=3s+hb=100ms,5");
    let e = &v["effective"];
    assert_eq!(e["keepalive_idle_ms"], 2000);
    assert_eq!(e["keepalive_interval_ms"], 1000);
    assert_eq!(e["keepalive_count"], 4);
    assert_eq!(e["user_timeout_ms"], 3000);
    assert_eq!(e["heartbeat_interval_ms"], 100);
    assert_eq!(e["heartbeat_misses"], 5);
    assert_eq!(v["outcome"], "alive");
    assert!(v["detected_by"].is_null() && v["errno"].is_null());
    assert!(v["silence_ms"].is_u64() && v["elapsed_ms"].as_u64().unwrap() >= 500);
    assert_eq!(v["expected_ms"], 500, "heartbeat 5 × 100ms notices first");
    assert_eq!(v["expected_by"], "heartbeat");
    drop(server);

    // Off settings are null, not absent.
    let (server, port) = common::listen(&[]);
    let out = Command::new(bin())
        .args([
            "connect",
            &format!("127.0.0.1:{port}"),
            "--duration",
            "200ms",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    let v = common::json(&out);
    common::assert_schema("connect.schema.json", &v);
    for k in [
        "keepalive_idle_ms",
        "keepalive_count",
        "user_timeout_ms",
        "heartbeat_interval_ms",
    ] {
        assert!(v["effective"][k].is_null(), "{k}: {v}");
    }
    assert!(v["expected_ms"].is_null(), "idle with nothing armed: never");
    drop(server);
}

#[test]
fn csv_output_is_one_table_with_snake_case_columns() {
    let (server, port) = common::listen(&["--format", "csv"]);
    let out = Command::new(bin())
        .args([
            "connect",
            &format!("127.0.0.1:{port}"),
            "-k",
            "2s,1s,3",
            "--duration",
            "200ms",
            "--format",
            "csv",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0);
    let mut r = csv::Reader::from_reader(&out.stdout[..]);
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    for key in [
        "peer",
        "strategy",
        "outcome",
        "detected_by",
        "silence_ms",
        "expected_ms",
        "keepalive_count",
    ] {
        assert!(header.iter().any(|h| h == key), "{key} in {header:?}");
    }
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    let col = |k: &str| rows[0][header.iter().position(|h| h == k).unwrap()].to_string();
    assert_eq!(col("outcome"), "alive");
    assert_eq!(col("expected_ms"), "5000");

    server.signal(nix::sys::signal::Signal::SIGTERM);
    let out = server.wait_output(std::time::Duration::from_secs(5));
    // listen's stdout stays one CSV table (header + one row per ended connection); the summary goes to stderr.
    let mut r = csv::Reader::from_reader(&out.stdout[..]);
    assert_eq!(r.headers().unwrap().get(2), Some("outcome"));
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][2], "closed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 accepted"));
}

/// Every CSV is one table, a header and rows and no sentence: what `--connections` and `probe` print.
#[test]
fn csv_of_many_connections_and_of_probe_is_only_a_header_and_rows() {
    let (server, port) = common::listen(&[]);
    let peer = format!("127.0.0.1:{port}");
    for (args, header) in [
        (
            &[
                "connect",
                &peer,
                "--connections",
                "2",
                "--duration",
                "200ms",
            ][..],
            "detected_by,count,silence_min_ms,silence_median_ms,silence_p99_ms,silence_max_ms",
        ),
        (
            &["probe", &peer, "-k", "2s,1s,3"],
            "mechanism,settings,idle_ms,idle_by,busy_ms,busy_by",
        ),
    ] {
        let out = Command::new(bin())
            .args(args)
            .args(["--format", "csv"])
            .output()
            .unwrap();
        assert_eq!(
            code(&out),
            0,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().next(), Some(header), "{args:?}: {text}");
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let width = r.headers().unwrap().len();
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert!(
            rows.iter().all(|row| row.len() == width),
            "{args:?}: {text}"
        );
        assert_eq!(rows.len() + 1, text.lines().count(), "{args:?}: {text}");
    }
    drop(server);
}

/// Bare `tcphb` asks for nothing: the usage with every subcommand on stderr, in full (it once said
/// only the tagline, as an error), and exit 2.
#[test]
fn bare_tcphb_shows_the_usage_and_exits_2() {
    let out = Command::new(bin()).output().expect("run tcphb");
    let err = String::from_utf8(out.stderr.clone()).unwrap();
    assert_eq!(code(&out), 2, "{err}");
    assert!(out.stdout.is_empty(), "usage goes to stderr");
    assert!(err.contains("Usage: tcphb"), "{err}");
    for sub in ["listen", "connect", "compare", "probe"] {
        assert!(
            err.lines().any(|l| l.trim_start().starts_with(sub)),
            "{sub} not listed: {err}"
        );
    }
    assert!(
        !err.contains("(see 'tcphb --help')"),
        "the usage itself, not a line about it: {err}"
    );
}
