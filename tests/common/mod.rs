//! Helpers shared by the CLI tests: spawn tcphb, find its port, end it by PID, parse its JSON.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Path of the built binary.
pub fn bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_tcphb"))
}

/// A child process that is continued and killed when dropped, so a failing test leaves nothing behind.
pub struct Proc {
    child: Option<Child>,
    /// stdout and stderr collected by threads as they come, as a terminal would read them (a
    /// process whose pipe nobody reads blocks once it is full).
    stdout: Option<std::thread::JoinHandle<Vec<u8>>>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Proc {
    pub fn new(child: Child) -> Proc {
        Proc {
            child: Some(child),
            stdout: None,
            stderr: None,
        }
    }
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }
    pub fn signal(&self, s: Signal) {
        kill(self.pid(), s).expect("signal our own child");
    }
    /// Start reading stdout in a thread (its pipe no longer fills up).
    pub fn drain_stdout(&mut self) {
        if let Some(mut out) = self.child.as_mut().and_then(|c| c.stdout.take()) {
            self.stdout = Some(std::thread::spawn(move || {
                let mut v = Vec::new();
                let _ = std::io::Read::read_to_end(&mut out, &mut v);
                v
            }));
        }
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
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut out = self
            .child
            .take()
            .unwrap()
            .wait_with_output()
            .expect("collect output");
        if let Some(t) = self.stdout.take() {
            out.stdout = t.join().unwrap_or_default();
        }
        if let Some(t) = self.stderr.take() {
            out.stderr = t.join().unwrap_or_default().into_bytes();
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

/// Start `tcphb listen 127.0.0.1:0 <args>` and return it with the port it bound (read from stderr).
pub fn listen(args: &[&str]) -> (Proc, u16) {
    let (mut p, port) = listen_undrained(args);
    p.drain_stdout();
    (p, port)
}

/// Like [`listen`], but nobody reads its stdout until [`Proc::drain_stdout`]: a stalled consumer.
pub fn listen_undrained(args: &[&str]) -> (Proc, u16) {
    let mut child = Command::new(bin())
        .args(["listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcphb listen");
    let stderr = child.stderr.take().unwrap();
    let mut reader = BufReader::new(stderr);
    let mut line = String::new();
    reader.read_line(&mut line).expect("read listen banner");
    // Keep reading stderr, as a terminal would, and hand it back with the output.
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut reader, &mut s);
        s
    });
    let port = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in banner {line:?}"));
    (
        Proc {
            stdout: None,
            child: Some(child),
            stderr: Some(rest),
        },
        port,
    )
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
    let why = format!(
        "{test}: the lab needs root (user namespaces cannot be entered from a multi-threaded test harness)"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{why}; CI is set, so this is a failure, not a skip");
    }
    eprintln!("skipping {why}");
    false
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
