//! Helpers shared by the CLI tests: spawn tcphb, find its port, end it by PID, parse its JSON.
#![allow(dead_code)]

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Path of the built binary.
pub fn bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_tcphb"))
}

/// One output pipe of a child, read by a thread as it comes (as a terminal would: a process whose
/// pipe nobody reads blocks once it is full), so a test can wait for a line while the child runs.
struct Captured {
    buf: Arc<Mutex<Vec<u8>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Captured {
    fn start(mut pipe: impl Read + Send + 'static) -> Captured {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = Arc::clone(&buf);
        let thread = std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                b.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Captured { buf, thread }
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap()).into_owned()
    }
    fn finish(self) -> Vec<u8> {
        let _ = self.thread.join();
        std::mem::take(&mut *self.buf.lock().unwrap())
    }
}

/// A child process that is continued and killed when dropped, so a failing test leaves nothing behind.
pub struct Proc {
    child: Option<Child>,
    stdout: Option<Captured>,
    stderr: Option<Captured>,
}

impl Proc {
    /// Wrap a spawned child; its piped stdout and stderr are read from now on.
    pub fn new(child: Child) -> Proc {
        let mut p = Proc::undrained(child);
        p.drain_stdout();
        p
    }
    /// Like [`Proc::new`], but nobody reads stdout until [`Proc::drain_stdout`]: a stalled consumer.
    pub fn undrained(mut child: Child) -> Proc {
        let stderr = child.stderr.take().map(Captured::start);
        Proc {
            child: Some(child),
            stdout: None,
            stderr,
        }
    }
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }
    pub fn signal(&self, s: Signal) {
        kill(self.pid(), s).expect("signal our own child");
    }
    /// The read end of the child's stdout, to read (and close) by hand; nobody else reads it then.
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .expect("stdout piped and not yet drained")
    }
    /// Start reading stdout in a thread (its pipe no longer fills up).
    pub fn drain_stdout(&mut self) {
        if let Some(out) = self.child.as_mut().and_then(|c| c.stdout.take()) {
            self.stdout = Some(Captured::start(out));
        }
    }
    /// Wait until what the child wrote to stdout so far satisfies `done`; returns that text.
    pub fn wait_stdout(&self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let out = self.stdout.as_ref().expect("stdout is drained");
        self.wait_text(out, "stdout", what, limit, done)
    }
    /// Wait until what the child wrote to stderr so far satisfies `done`; returns that text.
    pub fn wait_stderr(&self, what: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let err = self.stderr.as_ref().expect("stderr is piped");
        self.wait_text(err, "stderr", what, limit, done)
    }
    fn wait_text(
        &self,
        c: &Captured,
        name: &str,
        what: &str,
        limit: Duration,
        done: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            // Read "finished" first: if the reader was done before this read, no more will come.
            let finished = c.thread.is_finished();
            let text = c.text();
            if done(&text) {
                return text;
            }
            assert!(
                !finished && start.elapsed() < limit,
                "{what}: not seen on {name} within {limit:?} (pipe closed: {finished}); {name} so far: {text:?}; stderr: {:?}",
                self.stderr.as_ref().map(Captured::text)
            );
            std::thread::sleep(POLL);
        }
    }
    /// Wait until the kernel reports the process stopped (`T` in /proc/PID/stat), e.g. after SIGSTOP.
    #[cfg(target_os = "linux")]
    pub fn wait_stopped(&self, limit: Duration) {
        let pid = self.pid();
        wait_until("process stopped", limit, || {
            proc_state(pid.as_raw()) == Some('T')
        });
    }

    /// Kill it (SIGKILL, by its PID) and collect what it wrote: for servers that never exit alone.
    pub fn wait_output_after_kill(self) -> Output {
        self.signal(Signal::SIGKILL);
        self.wait_output(Duration::from_secs(10))
    }

    /// Wait for exit with a bound; panics if it does not exit in time.
    pub fn wait_output(mut self, limit: Duration) -> Output {
        let start = Instant::now();
        let child = self.child.as_mut().expect("running");
        while child.try_wait().expect("try_wait").is_none() {
            assert!(
                start.elapsed() < limit,
                "tcphb did not exit within {limit:?}"
            );
            std::thread::sleep(POLL);
        }
        let mut out = self
            .child
            .take()
            .unwrap()
            .wait_with_output()
            .expect("collect output");
        if let Some(c) = self.stdout.take() {
            out.stdout = c.finish();
        }
        if let Some(c) = self.stderr.take() {
            out.stderr = c.finish();
        }
        out
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Still ours: it has not been waited for, so its PID cannot have been reused.
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGCONT);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How often the wait helpers look again.
const POLL: Duration = Duration::from_millis(10);

/// Poll `cond` until it holds; panics naming `what` if it does not within `limit`. This waits on an
/// event (the condition), never on a guess of how long the event takes.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(POLL);
    }
}

/// The state letter of process `pid` from /proc/PID/stat (`R`, `S`, `T`, `Z`, …), `None` if gone.
#[cfg(target_os = "linux")]
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// One TCP socket as `ss -tin` shows it: the addresses, the queues, and TCP_INFO as `key:value` words.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone)]
pub struct TcpSock {
    pub state: String,
    pub recv_q: u64,
    pub local: String,
    pub peer: String,
    pub info: String,
}

#[cfg(target_os = "linux")]
impl TcpSock {
    /// A numeric TCP_INFO field, e.g. `bytes_received`, `segs_in`, `bytes_acked`; 0 when ss omits it
    /// (it leaves out counters that are still zero).
    pub fn num(&self, key: &str) -> u64 {
        let prefix = format!("{key}:");
        self.info
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
    pub fn local_port(&self) -> u16 {
        port_of(&self.local)
    }
    pub fn peer_port(&self) -> u16 {
        port_of(&self.peer)
    }
}

#[cfg(target_os = "linux")]
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// The TCP sockets of the network namespace `cmd` runs in (`ss -Htina`), read through sock_diag.
#[cfg(target_os = "linux")]
pub fn ss_with(mut cmd: Command) -> Vec<TcpSock> {
    let out = cmd.args(["-Htina"]).output().expect("run ss (iproute2)");
    assert!(
        out.status.success(),
        "ss: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut socks: Vec<TcpSock> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if line.starts_with(char::is_whitespace) {
            if let Some(s) = socks.last_mut() {
                s.info.push(' ');
                s.info.push_str(line.trim());
            }
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        socks.push(TcpSock {
            state: f[0].to_string(),
            recv_q: f[1].parse().unwrap_or(0),
            local: f[3].to_string(),
            peer: f[4].to_string(),
            info: f[5..].join(" "),
        });
    }
    socks
}

/// The host namespace's TCP sockets (loopback tests).
#[cfg(target_os = "linux")]
pub fn ss() -> Vec<TcpSock> {
    ss_with(Command::new("ss"))
}

/// A lab node's TCP sockets.
#[cfg(target_os = "linux")]
pub fn ss_in(lab: &tcphb::lab::Lab, node: tcphb::lab::Node) -> Vec<TcpSock> {
    let mut cmd = Command::new("ss");
    lab.command_in(node, &mut cmd).expect("ss in lab namespace");
    ss_with(cmd)
}

/// Start `tcphb listen 127.0.0.1:0 <args>` and return it with the port it bound (read from stderr).
pub fn listen(args: &[&str]) -> (Proc, u16) {
    let (mut p, port) = listen_undrained(args);
    p.drain_stdout();
    (p, port)
}

/// Like [`listen`], but nobody reads its stdout until [`Proc::drain_stdout`]: a stalled consumer.
pub fn listen_undrained(args: &[&str]) -> (Proc, u16) {
    let child = Command::new(bin())
        .args(["listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcphb listen");
    let p = Proc::undrained(child);
    let port = listening_port(&p);
    (p, port)
}

/// Wait for listen's banner ("listening on ADDR") and return the port it names: once it is printed,
/// the socket is bound and listening.
fn listening_port(p: &Proc) -> u16 {
    let text = p.wait_stderr("tcphb listen banner", Duration::from_secs(10), |t| {
        t.split_inclusive('\n')
            .any(|l| l.ends_with('\n') && l.contains("listening on "))
    });
    text.split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in banner {text:?}"))
}

/// Start `tcphb connect` with output captured.
pub fn connect(args: &[&str]) -> Proc {
    let child = Command::new(bin())
        .arg("connect")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcphb connect");
    Proc::new(child)
}

/// Parse stdout as one JSON object.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Exit code, panicking on death by signal.
pub fn code(out: &Output) -> i32 {
    out.status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal: {:?}", out.status))
}

/// Gate for lab tests: `true` if the test can run here. Not root: skip with a printed reason, or fail
/// when `CI` is set — a CI that silently skips the lab tests would prove nothing.
pub fn lab_allowed(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip(&format!(
        "{test}: the lab needs root (user namespaces cannot be entered from a multi-threaded test harness)"
    ));
    false
}

/// A test that cannot run here for reason `why`: a printed skip on a laptop, a failure when `CI` is
/// set (a CI that silently skips would prove nothing; `.ci/run` provides what tests need).
pub fn skip(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{why}; CI is set, so this is a failure, not a skip"
    );
    eprintln!("skipping {why}");
}

/// Program `name` from PATH, /usr/sbin or /usr/local/sbin.
pub fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Program `name` as [`find_program`] finds it, for a test that needs it: where it is missing, `None`
/// and a [`skip`] saying how to install it (a failure under `CI`, which installs it).
pub fn program(test: &str, name: &str, install: &str) -> Option<std::path::PathBuf> {
    let found = find_program(name);
    if found.is_none() {
        skip(&format!("{test}: {name} is not installed ({install})"));
    }
    found
}

/// Whether program `name` is installed, as [`program`] tells (skipping or failing where it is not).
pub fn installed(test: &str, name: &str, install: &str) -> bool {
    program(test, name, install).is_some()
}

/// Start `tcphb <args>` inside a lab node's network namespace, output captured.
#[cfg(target_os = "linux")]
pub fn tcphb_in(lab: &tcphb::lab::Lab, node: tcphb::lab::Node, args: &[&str]) -> Proc {
    let mut cmd = Command::new(bin());
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    lab.command_in(node, &mut cmd)
        .expect("command in lab namespace");
    Proc::new(cmd.spawn().expect("spawn tcphb"))
}

/// Start `tcphb listen ADDR` in a lab node and return once its banner says it is listening.
#[cfg(target_os = "linux")]
pub fn listen_in(lab: &tcphb::lab::Lab, node: tcphb::lab::Node, addr: &str) -> Proc {
    listen_in_with(lab, node, addr, &[])
}

/// [`listen_in`] with more arguments after the address (`--rst-on-exit`…).
#[cfg(target_os = "linux")]
pub fn listen_in_with(
    lab: &tcphb::lab::Lab,
    node: tcphb::lab::Node,
    addr: &str,
    args: &[&str],
) -> Proc {
    let mut all = vec!["listen", addr];
    all.extend_from_slice(args);
    let p = tcphb_in(lab, node, &all);
    listening_port(&p);
    p
}

/// A listener on a free port of the lab's server address, in its server namespace, and its address.
#[cfg(target_os = "linux")]
pub fn server_listener(lab: &tcphb::lab::Lab) -> (std::net::TcpListener, std::net::SocketAddr) {
    let l = lab
        .enter(tcphb::lab::Node::Server, || {
            std::net::TcpListener::bind((lab.server_addr(), 0))
        })
        .unwrap()
        .expect("bind on server");
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// Run `tcphb compare ARGS --format json`, insist it exits 0, and return its JSON.
pub fn compare_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin())
        .arg("compare")
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("run tcphb compare");
    assert_eq!(
        code(&out),
        0,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_schema("compare.schema.json", &v);
    v
}

/// Where the committed JSON Schemas live, and the base URI their `$id`s and relative `$ref`s share.
pub const SCHEMA_DIR: &str = "src/report/schema";
pub const SCHEMA_BASE: &str = "https://tcphb.invalid/schema/";

/// One committed schema (`connect.schema.json`…), parsed.
pub fn load_schema(file: &str) -> serde_json::Value {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(SCHEMA_DIR)
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?} is not JSON: {e}"))
}

/// A validator for `schema`, with common.schema.json registered (offline: nothing is fetched) and
/// formats (`date-time`) checked, not only annotated.
pub fn schema_validator_for(schema: &serde_json::Value) -> jsonschema::Validator {
    let registry = jsonschema::Registry::new()
        .add(
            format!("{SCHEMA_BASE}common.schema.json"),
            load_schema("common.schema.json"),
        )
        .expect("common schema registers")
        .prepare()
        .expect("registry prepares");
    jsonschema::options()
        .with_registry(&registry)
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}"))
}

/// The validator of one committed schema file.
pub fn schema_validator(file: &str) -> jsonschema::Validator {
    schema_validator_for(&load_schema(file))
}

/// Panic with every violation (where in the document, where in the schema) unless `doc` is valid.
pub fn assert_valid(file: &str, v: &jsonschema::Validator, doc: &serde_json::Value) {
    let errs: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("at {} ({}): {e}", e.instance_path(), e.schema_path()))
        .collect();
    assert!(
        errs.is_empty(),
        "{file} rejects real output:\n  {}\ndocument: {doc}",
        errs.join("\n  ")
    );
}

/// Check a document tcphb printed against the committed schema of its output (`connect.schema.json`…).
pub fn assert_schema(file: &str, doc: &serde_json::Value) {
    assert_valid(file, &schema_validator(file), doc);
}

/// A way to break a valid document.
pub type Mutation = fn(&mut serde_json::Value);

/// Apply each mutation to a copy of `good` and insist `file` rejects every one.
pub fn assert_rejected(file: &str, good: &serde_json::Value, mutations: &[(&str, Mutation)]) {
    let v = schema_validator(file);
    assert_valid(file, &v, good);
    for (what, mutate) in mutations {
        let mut bad = good.clone();
        mutate(&mut bad);
        assert_ne!(&bad, good, "{what}: the mutation changed nothing");
        assert!(!v.is_valid(&bad), "{what} was accepted by {file}: {bad}");
    }
}

/// Run `handle` on each connection `l` accepts, each in its own thread (test scaffolding, not tcphb),
/// until accepting fails.
pub fn serve_each(
    l: std::net::TcpListener,
    handle: impl Fn(std::net::TcpStream) + Send + Sync + 'static,
) {
    let handle = Arc::new(handle);
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            let handle = Arc::clone(&handle);
            std::thread::spawn(move || handle(c));
        }
    });
}

/// [`serve_each`] on a free loopback port, which it returns.
pub fn serve_each_on_loopback(handle: impl Fn(std::net::TcpStream) + Send + Sync + 'static) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    serve_each(l, handle);
    port
}

/// Make `l` a server that closes each connection (FIN) `after` its accept, having sent nothing.
pub fn close_each_after(l: std::net::TcpListener, after: Duration) {
    serve_each(l, move |c| {
        // The server's idle timeout: the behaviour under test, not sequencing.
        std::thread::sleep(after);
        drop(c);
    });
}

/// A server that accepts connections and closes each (FIN) `after` its accept, having sent nothing.
pub fn closing_server(after: Duration) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    close_each_after(l, after);
    port
}

/// The output of a `tcphb probe … --format json` that must succeed: exit 0 (else its stderr), its
/// JSON, checked against probe.schema.json.
pub fn probe_json(out: &Output) -> serde_json::Value {
    assert_eq!(code(out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(out);
    assert_schema("probe.schema.json", &v);
    v
}

/// `tcphb probe PEER --idle-timeout MAX ARGS --format json` on this host, as [`probe_json`] checks it.
pub fn probe_idle_timeout(peer: &str, max: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin())
        .args(["probe", peer, "--idle-timeout", max])
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("run tcphb probe");
    probe_json(&out)
}

/// Connect a raw client to `port`, answer the first PING, and hand the stream back.
pub fn answer_first_ping(port: u16) -> std::net::TcpStream {
    use std::io::{BufRead, BufReader, Write};
    let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let seq = line
        .trim()
        .strip_prefix("PING ")
        .expect("listen pings first");
    (&c).write_all(format!("PONG {seq}\n").as_bytes()).unwrap();
    c
}
