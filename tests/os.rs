//! `probe --os`: offline predictions for Linux, macOS and Windows, checked against the seeds' own
//! settings and those OSes' documented behaviour; no socket is opened.
#![cfg(unix)]

mod common;

use std::process::{Command, Output};

use common::{assert_schema, bin, code, json};
use serde_json::Value;

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run tcphb")
}

/// The prediction row named `mechanism`.
fn row<'a>(v: &'a Value, mechanism: &str) -> &'a Value {
    v["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["mechanism"] == mechanism)
        .unwrap_or_else(|| panic!("no {mechanism} row in {v}"))
}

#[test]
fn the_seeds_windows_keepalive_vals_predicted_for_windows() {
    // SIO_KEEPALIVE_VALS { keepalivetime 5500, keepaliveinterval 3000 }: no count, so Windows'
    // fixed 10 probes: 5.5 s + 10 × 3 s.
    let out = run(&[
        "probe",
        "--os",
        "windows",
        "--keepalive",
        "5500ms,3000ms",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    assert_schema("probe-os.schema.json", &v);
    assert_eq!(v["os"], "windows");
    let ka = row(&v, "keepalive");
    assert_eq!(ka["idle_ms"], 35_500);
    assert_eq!(ka["idle_by"], "keepalive");
    // TcpMaxDataRetransmissions 5 from the 300 ms floor.
    assert_eq!(ka["busy_ms"], 18_900);
    assert_eq!(v["effective"]["keepalive_count"], 10);
    assert_eq!(v["defaults"]["user_timeout_option"], Value::Null);
    let pitfalls = v["pitfalls"].to_string();
    assert!(pitfalls.contains("fixed 10 probes"), "{pitfalls}");
    // The OS default: 2 h idle + 10 × 1 s.
    assert_eq!(row(&v, "os_keepalive")["idle_ms"], 7_210_000);

    // keepaliveinterval 1 is one millisecond: named as a pitfall in the table.
    let out = run(&["probe", "--os", "windows", "-k", "3000ms,1ms"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("1 ms, not one probe"), "{text}");
}

#[test]
fn the_seeds_linux_settings_and_each_os_rules() {
    let out = run(&[
        "probe", "--os", "linux", "-k", "5s,5s,3", "--format", "json",
    ]);
    let v = json(&out);
    assert_schema("probe-os.schema.json", &v);
    assert_eq!(row(&v, "keepalive")["idle_ms"], 20_000);
    assert_eq!(row(&v, "none")["busy_ms"], 924_600);
    assert_eq!(v["pitfalls"], Value::Array(vec![]));

    // macOS: TCP_RXT_CONNDROPTIME stands for the user timeout, busy connections only.
    let out = run(&[
        "probe", "--os", "macos", "-k", "5s,5s,3", "-u", "10s", "--format", "json",
    ]);
    let v = json(&out);
    assert_schema("probe-os.schema.json", &v);
    assert_eq!(v["defaults"]["user_timeout_option"], "TCP_RXT_CONNDROPTIME");
    let s = row(&v, "strategy");
    assert_eq!(
        (s["idle_ms"].clone(), s["idle_by"].clone()),
        (20_000.into(), "keepalive".into())
    );
    assert_eq!(s["busy_by"], "user_timeout");

    // CSV is one table: the header and one row per mechanism.
    let out = run(&["probe", "--os", "macos", "-k", "5s,5s,3", "--format", "csv"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("mechanism,settings,"), "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
}

#[test]
fn what_an_os_cannot_do_is_one_line_and_its_exit_code() {
    for (args, want, needle) in [
        // Linux keepalive is whole seconds: refused, never rounded.
        (
            &["probe", "--os", "linux", "-k", "5500ms,3s"][..],
            2,
            "1 s resolution",
        ),
        (
            &["probe", "--os", "macos", "-u", "1500ms"],
            2,
            "TCP_RXT_CONNDROPTIME",
        ),
        // Windows has no user timeout: say what exists instead.
        (&["probe", "--os", "windows", "-u", "5s"], 4, "TCP_MAXRT"),
        // Offline means no peer.
        (
            &["probe", "--os", "windows", "127.0.0.1:1"],
            2,
            "cannot be used with",
        ),
        (&["probe"], 2, "HOST:PORT"),
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), want, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
