//! The JSON output contract: every document tcphb prints validates against the committed schema of its
//! command (src/report/schema/), run from the real binary against real sockets, as oha does. The
//! schemas are strict (no unknown keys, every key required, enums closed, each ending's keys tied to
//! its outcome), so a renamed, added or retyped key fails here until its schema (and README) say so —
//! and mutation tests show the validator does reject what it should.
#![cfg(target_os = "linux")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::thread;
use std::time::Duration;

use common::{
    SCHEMA_BASE, answer_first_ping, assert_rejected, assert_valid, bin, closing_server, code, json,
    lab_allowed, listen, load_schema, schema_validator, schema_validator_for,
};
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const FILES: [&str; 8] = [
    "audit.schema.json",
    "audit-event.schema.json",
    "common.schema.json",
    "connect.schema.json",
    "listen-event.schema.json",
    "probe.schema.json",
    "probe-os.schema.json",
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
        "exit {} not in {codes:?}; stdout: {}; stderr: {}",
        code(out),
        String::from_utf8_lossy(&out.stdout),
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
/// definitions stay open (they are always used inside a closed object), and every property is
/// required. Conditions (`if`/`then`/`else`) only narrow keys declared elsewhere, so they are exempt.
fn strict(file: &str, at: &str, s: &Value) {
    match s {
        Value::Object(m) => {
            let condition = ["/if", "/then", "/else"].iter().any(|c| at.ends_with(c));
            if let Some(props) = m.get("properties").and_then(Value::as_object)
                && !condition
            {
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
                    assert!(
                        required.contains(&k.as_str()),
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

/// Keys that share a name across outputs but not a meaning, so not a type either. Schema 3 renamed
/// the last ones (`connections`, `refused`); nothing may join this list without a reason.
const NAME_CLASHES: [(&str, &str); 0] = [];

/// One name, one type: every property of the same name has the same JSON type (ignoring `null`)
/// in every schema, e.g. `rto_ms` is an integer in probe's facts, tcp_info and compare's cut_phase.
#[test]
fn a_key_has_one_type_in_every_output() {
    let files: BTreeMap<&str, Value> = FILES.iter().map(|f| (*f, load_schema(f))).collect();
    let mut seen: BTreeMap<String, BTreeMap<BTreeSet<String>, Vec<String>>> = BTreeMap::new();
    for (file, s) in &files {
        collect_properties(&files, file, "", s, &mut seen);
    }
    let mut clashes = Vec::new();
    for (name, types) in &seen {
        let allowed = NAME_CLASHES.iter().any(|(n, _)| n == name);
        if types.len() > 1 && !allowed {
            clashes.push(format!("`{name}`: {types:?}"));
        }
        if allowed {
            assert!(
                types.len() > 1,
                "`{name}` no longer clashes: drop it from NAME_CLASHES"
            );
        }
    }
    assert!(
        clashes.is_empty(),
        "one name, different types:\n  {}",
        clashes.join("\n  ")
    );
    // The keys schema 2 unified are where they should be, with one type.
    for (name, ty) in [
        ("rtt_ms", "number"),
        ("rto_ms", "integer"),
        ("tcp_retries2", "integer"),
        ("reporter", "string"),
        ("messages", "integer"),
        ("icmp_type", "integer"),
        ("expected_basis", "string"),
        ("idle_ms", "integer"),
        ("idled_ms", "integer"),
        ("expected_min_ms", "integer"),
        ("first_ms", "integer"),
    ] {
        let types = &seen[name];
        assert_eq!(types.len(), 1, "{name}: {types:?}");
        let only = types.keys().next().unwrap();
        assert_eq!(only, &BTreeSet::from([ty.to_string()]), "{name}");
    }
}

/// Record the type of every named property under `s`, with where it was seen.
fn collect_properties(
    files: &BTreeMap<&str, Value>,
    file: &str,
    at: &str,
    s: &Value,
    seen: &mut BTreeMap<String, BTreeMap<BTreeSet<String>, Vec<String>>>,
) {
    match s {
        Value::Object(m) => {
            let condition = ["/if", "/then", "/else"].iter().any(|c| at.ends_with(c));
            if let Some(props) = m.get("properties").and_then(Value::as_object)
                && !condition
            {
                for (k, v) in props {
                    let mut t = types_of(files, file, v);
                    t.remove("null");
                    seen.entry(k.clone())
                        .or_default()
                        .entry(t)
                        .or_default()
                        .push(format!("{file}{at}"));
                }
            }
            for (k, v) in m {
                collect_properties(files, file, &format!("{at}/{k}"), v, seen);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                collect_properties(files, file, &format!("{at}/{i}"), v, seen);
            }
        }
        _ => {}
    }
}

/// The JSON types a schema admits, following `$ref`s across the committed files.
fn types_of(files: &BTreeMap<&str, Value>, file: &str, s: &Value) -> BTreeSet<String> {
    let name = |v: &Value| {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_f64() => "number",
            Value::Number(_) => "integer",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
        .to_string()
    };
    let mut out = BTreeSet::new();
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let (target, pointer) = r.split_once('#').expect("$ref with a fragment");
        let target = if target.is_empty() { file } else { target };
        let doc = files
            .get(target)
            .unwrap_or_else(|| panic!("$ref to {target}"));
        let def = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{r} resolves"));
        out.extend(types_of(files, target, def));
    }
    match s.get("type") {
        Some(Value::String(t)) => {
            out.insert(t.clone());
        }
        Some(Value::Array(ts)) => out.extend(ts.iter().filter_map(Value::as_str).map(String::from)),
        _ => {}
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        out.extend(e.iter().map(name));
    }
    if let Some(c) = s.get("const") {
        out.insert(name(c));
    }
    for k in ["oneOf", "anyOf"] {
        for alt in s.get(k).and_then(Value::as_array).into_iter().flatten() {
            out.extend(types_of(files, file, alt));
        }
    }
    if out.is_empty() && s.get("properties").is_some() {
        out.insert("object".into());
    }
    out
}

/// A server that answers each connection's first heartbeat and then hangs (reads, never answers):
/// a peer that spoke the protocol and fell silent, which heartbeats declare dead.
fn hung_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            thread::spawn(move || {
                let mut w = c.try_clone().unwrap();
                let mut r = BufReader::new(c);
                let mut line = String::new();
                if r.read_line(&mut line).is_err() {
                    return;
                }
                if let Some(seq) = line.trim().strip_prefix("PING ") {
                    let _ = w.write_all(format!("PONG {seq}\n").as_bytes());
                }
                let mut sink = [0u8; 1024];
                while matches!(r.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

#[test]
fn connect_output_matches_its_schema_for_every_ending() {
    let v = schema_validator("connect.schema.json");
    let check = |args: &[&str], codes: &[i32]| {
        let mut a = vec!["connect"];
        a.extend_from_slice(args);
        a.extend(["--format", "json"]);
        let doc = stdout_json(&run(&a), codes);
        assert_valid("connect.schema.json", &v, &doc);
        doc
    };
    let (_server, port) = listen(&[]);
    let alive_peer = format!("127.0.0.1:{port}");
    let hung = format!("127.0.0.1:{}", hung_server());
    let closing = format!("127.0.0.1:{}", closing_server(Duration::from_millis(300)));

    // Alive at the end of --duration: nothing judged.
    let d = check(&[&alive_peer, "-k", "1s,1s,3", "--duration", "200ms"], &[0]);
    assert_eq!(d["outcome"], "alive");
    assert!(d["agrees"].is_null() && d["closed_by"].is_null(), "{d}");

    // Dead: the peer answered once and fell silent; heartbeats notice. A judged detection, with
    // tcp_info in ms.
    let d = check(&[&hung, "--heartbeat", "100ms,3"], &[3]);
    assert_eq!(
        (&d["outcome"], &d["detected_by"]),
        (&json!("dead"), &json!("heartbeat"))
    );
    assert!(d["agrees"].is_boolean(), "{d}");
    assert!(d["tcp_info"]["rtt_ms"].is_number(), "{d}");
    assert!(d["tcp_info"]["rto_ms"].is_u64(), "{d}");

    // Closed by the peer (exit 5): closed_by, how, idled_ms; not judged.
    let d = check(&[&closing, "-k", "1s,1s,3"], &[5]);
    assert_eq!(
        (&d["closed_by"], &d["how"]),
        (&json!("peer"), &json!("fin"))
    );
    assert!(d["agrees"].is_null(), "{d}");

    // Many connections, each ending: alive, dead, closed. The prediction keys are one connection's.
    let d = check(
        &[
            &alive_peer,
            "--connections",
            "3",
            "--user-timeout",
            "5s",
            "--duration",
            "200ms",
        ],
        &[0],
    );
    assert_eq!((&d["connections"], &d["alive"]), (&json!(3), &json!(3)));
    assert!(d["agrees"].is_null(), "all alive: nothing to judge: {d}");
    let d = check(
        &[&hung, "--connections", "3", "--heartbeat", "100ms,3"],
        &[3],
    );
    assert_eq!(d["dead"], 3, "{d}");
    assert_eq!(d["by_mechanism"][0]["detected_by"], "heartbeat", "{d}");
    assert!(d["agrees"].is_boolean(), "{d}");
    let d = check(&[&closing, "--connections", "3"], &[5]);
    assert_eq!(
        (&d["closed"], &d["closed_by_tcphb"]),
        (&json!(3), &json!(0))
    );
}

#[test]
fn listen_events_match_their_schema_for_every_ending() {
    let v = schema_validator("listen-event.schema.json");
    let (server, port) = listen(&["--heartbeat", "200ms,3", "--format", "json"]);
    let events = |n: usize| {
        server.wait_stdout(&format!("{n} events"), Duration::from_secs(10), |t| {
            t.lines().count() >= n
        })
    };
    let mut peers = BTreeMap::new();

    // Closed by the client (FIN) after answering: closed_by peer, how fin.
    let c = answer_first_ping(port);
    peers.insert(
        c.local_addr().unwrap().to_string(),
        ("closed", "peer", "fin"),
    );
    c.shutdown(Shutdown::Write).unwrap();
    let _ = (&c).read_to_end(&mut Vec::new());
    events(1);

    // Answered, then fell silent: dead by heartbeat.
    let hung = answer_first_ping(port);
    peers.insert(hung.local_addr().unwrap().to_string(), ("dead", "", ""));
    events(2);

    // Never answered a heartbeat: closed by tcphb, no_heartbeat.
    let mute = TcpStream::connect(("127.0.0.1", port)).unwrap();
    peers.insert(
        mute.local_addr().unwrap().to_string(),
        ("closed", "tcphb", "no_heartbeat"),
    );
    let _ = (&mute).read_to_end(&mut Vec::new());
    events(3);

    // Broke the protocol (a line longer than the limit): closed by tcphb, protocol.
    let rude = TcpStream::connect(("127.0.0.1", port)).unwrap();
    peers.insert(
        rude.local_addr().unwrap().to_string(),
        ("closed", "tcphb", "protocol"),
    );
    let _ = (&rude).write_all(&[b'x'; 4096]);
    let _ = (&rude).read_to_end(&mut Vec::new());
    events(4);

    server.signal(Signal::SIGTERM);
    let out = server.wait_output(Duration::from_secs(10));
    assert_eq!(
        code(&out),
        3,
        "a connection died: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert_eq!(lines.len(), 5, "four events and the summary: {lines:?}");
    for doc in &lines {
        assert_valid("listen-event.schema.json", &v, doc);
    }
    for ev in &lines[..4] {
        let peer = ev["peer"].as_str().unwrap();
        let (outcome, by, how) = peers[peer];
        assert_eq!(ev["outcome"], outcome, "{ev}");
        if outcome == "closed" {
            assert_eq!(
                (&ev["closed_by"], &ev["how"]),
                (&json!(by), &json!(how)),
                "{ev}"
            );
        } else {
            assert_eq!(ev["detected_by"], "heartbeat", "{ev}");
        }
    }
    let summary = &lines[4];
    assert_eq!(
        (
            &summary["dead"],
            &summary["closed"],
            &summary["closed_by_tcphb"]
        ),
        (&json!(1), &json!(1), &json!(2)),
        "{summary}"
    );
}

#[test]
fn probe_output_matches_its_schema() {
    let v = schema_validator("probe.schema.json");
    let (_server, port) = listen(&[]);
    let peer = format!("127.0.0.1:{port}");
    // Plain; with a strategy and --detect-within; an ask that may be refused; the idle timeout;
    // the early warnings of a busy connection.
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
        assert_valid("probe.schema.json", &v, &doc);
    }
}

#[test]
fn the_validator_rejects_documents_that_break_the_contract() {
    // Real documents first, so the mutations start from something valid.
    let (_server, port) = listen(&[]);
    let peer = format!("127.0.0.1:{port}");
    let out = run(&["connect", &peer, "--duration", "100ms", "--format", "json"]);
    let alive = stdout_json(&out, &[0]);
    assert_rejected(
        "connect.schema.json",
        &alive,
        &[
            ("an unknown key", |d| d["surprise"] = json!(1)),
            ("a missing key", |d| {
                d.as_object_mut().unwrap().remove("silence_ms");
            }),
            ("a missing idled_ms", |d| {
                d.as_object_mut().unwrap().remove("idled_ms");
            }),
            ("a missing icmp", |d| {
                d.as_object_mut().unwrap().remove("icmp");
            }),
            ("a missing band", |d| {
                d.as_object_mut().unwrap().remove("expected_max_ms");
            }),
            ("ICMP evidence without its keys", |d| d["icmp"] = json!({})),
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
            ("an alive connection credited to a mechanism", |d| {
                d["detected_by"] = json!("keepalive")
            }),
            ("an alive connection with a closer", |d| {
                d["closed_by"] = json!("peer")
            }),
            ("a death with a closer", |d| {
                d["outcome"] = json!("dead");
                d["detected_by"] = json!("keepalive");
                d["closed_by"] = json!("peer");
            }),
            ("a FIN credited as a mechanism where nothing was cut", |d| {
                d["outcome"] = json!("dead");
                d["detected_by"] = json!("eof");
            }),
            ("a close without a closer", |d| {
                d["outcome"] = json!("closed")
            }),
            ("a close by the peer that is not a FIN", |d| {
                d["outcome"] = json!("closed");
                d["closed_by"] = json!("peer");
                d["how"] = json!("protocol");
            }),
            ("a close by tcphb that is a FIN", |d| {
                d["outcome"] = json!("closed");
                d["closed_by"] = json!("tcphb");
                d["how"] = json!("fin");
            }),
        ],
    );
    // A close as main prints it is valid: the conditions above are not too tight.
    let mut closed = alive.clone();
    closed["outcome"] = json!("closed");
    closed["closed_by"] = json!("peer");
    closed["how"] = json!("fin");
    assert_valid(
        "connect.schema.json",
        &schema_validator("connect.schema.json"),
        &closed,
    );

    // tcp_info in µs (schema 1) is rejected.
    let hung = format!("127.0.0.1:{}", hung_server());
    let out = run(&[
        "connect",
        &hung,
        "--heartbeat",
        "100ms,3",
        "--format",
        "json",
    ]);
    let dead = stdout_json(&out, &[3]);
    assert_rejected(
        "connect.schema.json",
        &dead,
        &[
            ("tcp_info's rtt in µs", |d| {
                let t = d["tcp_info"].as_object_mut().unwrap();
                let x = t.remove("rtt_ms").unwrap();
                t.insert("rtt_us".into(), x);
            }),
            ("a fractional rto", |d| {
                d["tcp_info"]["rto_ms"] = json!(204.5)
            }),
        ],
    );

    // --connections: the counts, closed_by_tcphb included, are required.
    let out = run(&[
        "connect",
        &peer,
        "--connections",
        "2",
        "--duration",
        "100ms",
        "--format",
        "json",
    ]);
    let many = stdout_json(&out, &[0]);
    assert_rejected(
        "connect.schema.json",
        &many,
        &[
            ("a missing closed_by_tcphb", |d| {
                d.as_object_mut().unwrap().remove("closed_by_tcphb");
            }),
            ("a missing expected_basis", |d| {
                d.as_object_mut().unwrap().remove("expected_basis");
            }),
            ("a count as a string", |d| d["dead"] = json!("0")),
        ],
    );

    // probe --idle-timeout: the method, the server's own close and each connection's response are
    // part of the contract. A silent server: the keepalive method.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_peer = silent.local_addr().unwrap().to_string();
    let out = run(&[
        "probe",
        &silent_peer,
        "--idle-timeout",
        "1s",
        "--idle-method",
        "keepalive",
        "--format",
        "json",
    ]);
    let idle = stdout_json(&out, &[0]);
    assert_eq!(idle["idle_timeout"]["method"], "keepalive", "{idle}");
    assert_rejected(
        "probe.schema.json",
        &idle,
        &[
            ("an unknown method", |d| {
                d["idle_timeout"]["method"] = json!("telepathy")
            }),
            ("a missing server_close", |d| {
                d["idle_timeout"]
                    .as_object_mut()
                    .unwrap()
                    .remove("server_close");
            }),
            ("a server close without its time", |d| {
                d["idle_timeout"]["server_close"] = json!({"how": "fin", "connections": 1})
            }),
            ("a server close that is neither FIN nor RST", |d| {
                d["idle_timeout"]["server_close"] =
                    json!({"after_ms": 2000, "latest_ms": 2000, "how": "timeout", "connections": 1})
            }),
            ("an unknown response", |d| {
                d["idle_timeout"]["evidence"][0]["response"] = json!("maybe")
            }),
            ("a connection without its response", |d| {
                d["idle_timeout"]["evidence"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("response");
            }),
        ],
    );
    // A server close as probe prints it is valid.
    let mut closing = idle.clone();
    closing["idle_timeout"]["server_close"] =
        json!({"after_ms": 2000, "latest_ms": 2003, "how": "fin", "connections": 3});
    assert_valid(
        "probe.schema.json",
        &schema_validator("probe.schema.json"),
        &closing,
    );
    drop(silent);

    // compare's facts as they were before schema 2 (sysctl names, numbers as strings) are rejected.
    let facts = schema_validator_for(&json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("{SCHEMA_BASE}common.schema.json#/$defs/kernel_facts"),
    }));
    let old = json!({"kernel": "6.18.0", "net.ipv4.tcp_retries2": "15"});
    assert!(!facts.is_valid(&old));
    // And a listen event's wall clock must be a date-time.
    let listen_schema = schema_validator("listen-event.schema.json");
    let mut event = alive.clone();
    let m = event.as_object_mut().unwrap();
    for k in ["local", "strategy", "ping", "tls", "load", "effective"] {
        m.remove(k);
    }
    m.insert("at".into(), json!("2026-11-22T16:00:15.083Z"));
    assert_valid("listen-event.schema.json", &listen_schema, &event);
    event["at"] = json!("yesterday");
    assert!(!listen_schema.is_valid(&event), "`at` must be RFC 3339");
}

/// Every fault, idle and busy, repeated, against a keepalive, a user timeout and heartbeats: the
/// report validates, and the keys that are only sometimes non-null (cut_phase's keepalive and heal,
/// icmp, a crash's closed runs) were seen non-null, so their schemas were exercised too.
#[test]
fn compare_output_matches_its_schema_for_every_fault() {
    if !lab_allowed("compare_output_matches_its_schema_for_every_fault") {
        return;
    }
    let out = run(&[
        "compare",
        "-s",
        "ka=1s,1s,3",
        "-s",
        "uto=2s",
        "-s",
        "fast=hb=300ms,3",
        "--fault",
        "blackhole,unreachable,prohibit,linkdown,reboot,freeze,crash,nat-expiry",
        "--load",
        "idle,busy",
        "--repeat",
        "2",
        "--deadline",
        "5s",
        "--format",
        "json",
    ]);
    let doc = stdout_json(&out, &[0]);
    let v = schema_validator("compare.schema.json");
    assert_valid("compare.schema.json", &v, &doc);
    // The kernel facts are probe's keys and numbers.
    assert!(doc["lab"]["facts"]["tcp_retries2"].is_u64(), "{doc}");
    let results = doc["results"].as_array().unwrap();
    assert_eq!(results.len(), 3 * 8 * 2);
    let runs: Vec<&Value> = results
        .iter()
        .flat_map(|r| r["runs"].as_array().unwrap())
        .collect();
    assert_eq!(runs.len(), 3 * 8 * 2 * 2);
    let faults: BTreeSet<&str> = results
        .iter()
        .map(|r| r["fault"].as_str().unwrap())
        .collect();
    assert_eq!(faults.len(), 8, "{faults:?}");
    let some = |what: &str, f: &dyn Fn(&Value) -> bool| {
        assert!(runs.iter().any(|r| f(r)), "no run with {what}");
    };
    some("a keepalive phase", &|r| {
        r["cut_phase"]["keepalive_due_ms"].is_u64()
    });
    some("a measured heal", &|r| r["cut_phase"]["heal_ms"].is_u64());
    some("ICMP evidence", &|r| r["icmp"]["reporter"].is_string());
    some("a crash's FIN", &|r| {
        r["outcome"] == "closed" && r["detected_by"] == "eof"
    });
    some("a band", &|r| r["expected_min_ms"].is_u64());
    assert!(results.iter().any(|r| r["icmp"].is_object()));

    assert_rejected(
        "compare.schema.json",
        &doc,
        &[
            ("schema 1's ICMP router key", |d| {
                let run = first_run_with(d, "icmp");
                let icmp = run["icmp"].as_object_mut().unwrap();
                let x = icmp.remove("reporter").unwrap();
                icmp.insert("from".into(), x);
            }),
            ("schema 1's ICMP count key", |d| {
                let run = first_run_with(d, "icmp");
                let icmp = run["icmp"].as_object_mut().unwrap();
                let x = icmp.remove("messages").unwrap();
                icmp.insert("count".into(), x);
            }),
            ("an unknown key in cut_phase", |d| {
                first_run_with(d, "cut_phase")["cut_phase"]["phase"] = json!(1)
            }),
            ("a missing ended_before_cut", |d| {
                d["results"][0]["runs"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("ended_before_cut");
            }),
            ("a run's agrees as null", |d| {
                d["results"][0]["runs"][0]["agrees"] = json!(null)
            }),
            ("a cell's agrees as null", |d| {
                d["results"][0]["agrees"] = json!(null)
            }),
            ("an unknown fault", |d| {
                d["results"][0]["fault"] = json!("meteor")
            }),
            ("a missing expected_max_ms", |d| {
                d["results"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("expected_max_ms");
            }),
        ],
    );
}

/// The first run whose `key` is not null.
fn first_run_with<'a>(d: &'a mut Value, key: &str) -> &'a mut Value {
    d["results"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .flat_map(|r| r["runs"].as_array_mut().unwrap().iter_mut())
        .find(|r| !r[key].is_null())
        .unwrap_or_else(|| panic!("a run with {key}"))
}
