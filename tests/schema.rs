//! The JSON output contract: every document tcphb prints validates against the committed schema of its
//! command (src/report/schema/), run from the real binary against real sockets, as oha does. The
//! schemas are strict (no unknown keys, every key required, enums closed), so a renamed, added or
//! retyped key fails here until its schema (and README) say so — and a mutation test shows the
//! validator does reject what it should.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::{
    SCHEMA_BASE, assert_valid, bin, code, json, lab_allowed, listen, load_schema, schema_validator,
    schema_validator_for,
};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const FILES: [&str; 5] = [
    "common.schema.json",
    "connect.schema.json",
    "listen-event.schema.json",
    "probe.schema.json",
    "compare.schema.json",
];

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run tcphb {args:?}: {e}"))
}

fn stdout_json(out: &Output, codes: &[i32]) -> Value {
    assert!(
        codes.contains(&code(out)),
        "exit {} not in {codes:?}; stderr: {}",
        code(out),
        String::from_utf8_lossy(&out.stderr)
    );
    json(out)
}

#[test]
fn schemas_are_draft_2020_12_and_strict() {
    for file in FILES {
        let s = load_schema(file);
        assert_eq!(
            s["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{file}"
        );
        assert_eq!(s["$id"], format!("{SCHEMA_BASE}{file}"), "{file}");
        if let Err(e) = jsonschema::meta::validate(&s) {
            panic!("{file} is not a valid JSON Schema: {e}");
        }
        schema_validator_for(&s);
        strict(file, "", &s);
    }
}

/// Every object schema with properties closes itself: `additionalProperties: false`, or
/// `unevaluatedProperties: false` when it takes shared keys through `$ref`. Only the shared `*_keys`
/// definitions stay open (they are always used inside a closed object), and every property is required.
fn strict(file: &str, at: &str, s: &Value) {
    match s {
        Value::Object(m) => {
            if let Some(props) = m.get("properties").and_then(Value::as_object) {
                let open = at.ends_with("_keys");
                let closed = m.get("additionalProperties") == Some(&Value::Bool(false))
                    || m.get("unevaluatedProperties") == Some(&Value::Bool(false));
                assert!(open || closed, "{file} {at}: object schema is not closed");
                let required: Vec<&str> = m
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                for k in props.keys() {
                    // A property that only narrows a shared key (compare's `agrees`) is required there.
                    let narrows = k == "agrees";
                    assert!(
                        narrows || required.contains(&k.as_str()),
                        "{file} {at}: `{k}` is not required (nullable keys are present as null)"
                    );
                }
            }
            for (k, v) in m {
                strict(file, &format!("{at}/{k}"), v);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                strict(file, &format!("{at}/{i}"), v);
            }
        }
        _ => {}
    }
}

#[test]
fn listen_connect_and_probe_output_match_their_schemas() {
    let connect_schema = schema_validator("connect.schema.json");
    let probe_schema = schema_validator("probe.schema.json");
    let listen_schema = schema_validator("listen-event.schema.json");
    let (server, port) = listen(&["--format", "json"]);
    let peer = format!("127.0.0.1:{port}");

    // One connection, alive at the end of --duration.
    let out = run(&[
        "connect",
        &peer,
        "-k",
        "1s,1s,3",
        "--duration",
        "200ms",
        "--format",
        "json",
    ]);
    let doc = stdout_json(&out, &[0]);
    assert_valid("connect.schema.json", &connect_schema, &doc);
    assert_eq!(doc["outcome"], "alive");

    // Many connections: the distribution, with the same prediction keys.
    let out = run(&[
        "connect",
        &peer,
        "--connections",
        "3",
        "--user-timeout",
        "5s",
        "--duration",
        "200ms",
        "--format",
        "json",
    ]);
    let doc = stdout_json(&out, &[0]);
    assert_valid("connect.schema.json", &connect_schema, &doc);
    assert_eq!(doc["connections"], 3);
    assert!(
        doc["agrees"].is_null(),
        "all alive: nothing to judge: {doc}"
    );

    // A dead peer: listen frozen, its kernel still ACKs, only heartbeats notice. A real detection,
    // with tcp_info, errno null, a judgement.
    server.signal(Signal::SIGSTOP);
    let out = run(&[
        "connect",
        &peer,
        "--heartbeat",
        "100ms,3",
        "--duration",
        "10s",
        "--format",
        "json",
    ]);
    server.signal(Signal::SIGCONT);
    let doc = stdout_json(&out, &[3]);
    assert_valid("connect.schema.json", &connect_schema, &doc);
    assert_eq!(doc["outcome"], "dead");
    assert_eq!(doc["detected_by"], "heartbeat");
    assert!(doc["tcp_info"]["rtt_ms"].is_number(), "{doc}");

    // probe: plain; with a strategy and --detect-within; an ask that may be refused; the idle
    // timeout; the early warnings of a busy connection.
    for (args, codes) in [
        (vec![], &[0][..]),
        (
            vec![
                "-k",
                "5s,5s,3",
                "--user-timeout",
                "20s",
                "--detect-within",
                "10s",
            ],
            &[0],
        ),
        (
            vec!["--heartbeat", "1s,3", "--detect-within", "10ms"],
            &[0, 2],
        ),
        (vec!["--idle-timeout", "300ms"], &[0]),
        (vec!["--recverr", "--duration", "200ms"], &[0]),
    ] {
        let mut a = vec!["probe", peer.as_str(), "--format", "json"];
        a.extend(args.iter().copied());
        let doc = stdout_json(&run(&a), codes);
        assert_valid("probe.schema.json", &probe_schema, &doc);
    }

    server.signal(Signal::SIGTERM);
    let out = server.wait_output(Duration::from_secs(10));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 2, "events and a summary: {lines:?}");
    for doc in &lines {
        assert_valid("listen-event.schema.json", &listen_schema, doc);
    }
    let summary = lines.last().unwrap();
    assert!(summary["accepted"].is_u64(), "summary last: {summary}");
    assert!(lines[..lines.len() - 1].iter().all(|e| e["at"].is_string()));
}

/// A way to break a valid document.
type Mutation = fn(&mut Value);

#[test]
fn the_validator_rejects_documents_that_break_the_contract() {
    // A real document first, so the mutations start from something valid.
    let (_server, port) = listen(&[]);
    let out = run(&[
        "connect",
        &format!("127.0.0.1:{port}"),
        "--duration",
        "100ms",
        "--format",
        "json",
    ]);
    let good = stdout_json(&out, &[0]);
    let v = schema_validator("connect.schema.json");
    assert_valid("connect.schema.json", &v, &good);

    let mutations: [(&str, Mutation); 9] = [
        ("an unknown key", |d| d["surprise"] = json!(1)),
        ("a missing key", |d| {
            d.as_object_mut().unwrap().remove("silence_ms");
        }),
        ("a renamed key", |d| {
            let m = d.as_object_mut().unwrap();
            let x = m.remove("expected_basis").unwrap();
            m.insert("basis".into(), x);
        }),
        ("a duration as a string", |d| d["silence_ms"] = json!("12")),
        ("a negative duration", |d| d["elapsed_ms"] = json!(-1)),
        ("an unknown outcome", |d| d["outcome"] = json!("gone")),
        ("an unknown mechanism", |d| {
            d["detected_by"] = json!("magic")
        }),
        ("the old schema version", |d| d["schema"] = json!(1)),
        ("an unknown key in a shared object", |d| {
            d["effective"]["keepalive_idle_s"] = json!(5)
        }),
    ];
    for (what, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        assert!(
            !v.is_valid(&bad),
            "{what} was accepted by connect.schema.json: {bad}"
        );
    }

    // compare's facts as they were before schema 2 (sysctl names, numbers as strings) are rejected.
    let facts = schema_validator_for(&json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("{SCHEMA_BASE}common.schema.json#/$defs/kernel_facts"),
    }));
    let old = json!({"kernel": "6.18.0", "net.ipv4.tcp_retries2": "15"});
    assert!(!facts.is_valid(&old));
    // And a listen event's wall clock must be a date-time.
    let listen_schema = schema_validator("listen-event.schema.json");
    let mut event = good.clone();
    let m = event.as_object_mut().unwrap();
    for k in ["local", "strategy", "load", "effective"] {
        m.remove(k);
    }
    m.insert("at".into(), json!("2026-11-22T16:00:15.083Z"));
    assert_valid("listen-event.schema.json", &listen_schema, &event);
    event["at"] = json!("yesterday");
    assert!(!listen_schema.is_valid(&event), "`at` must be RFC 3339");
}

#[cfg(target_os = "linux")]
#[test]
fn compare_output_matches_its_schema() {
    if !lab_allowed("compare_output_matches_its_schema") {
        return;
    }
    let out = run(&[
        "compare",
        "-s",
        "ka=1s,1s,3",
        "-s",
        "fast=hb=200ms,3",
        "--fault",
        "blackhole",
        "--load",
        "idle,busy",
        "--deadline",
        "3s",
        "--format",
        "json",
    ]);
    let doc = stdout_json(&out, &[0]);
    assert_valid(
        "compare.schema.json",
        &schema_validator("compare.schema.json"),
        &doc,
    );
    // The kernel facts are probe's keys and numbers.
    assert!(doc["lab"]["facts"]["tcp_retries2"].is_u64(), "{doc}");
    assert_eq!(doc["results"].as_array().map(Vec::len), Some(4));
}
