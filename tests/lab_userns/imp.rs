//! The Linux body of the `lab_userns` test (see tests/lab_userns.rs).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use tcphb::lab::{Lab, LabError, Node, PathFault, ensure_lab_privileges};

const MODE_ENV: &str = "TCPHB_USERNS_TEST_MODE";

/// The checks an unprivileged user's lab must pass. Must run while single-threaded.
fn unprivileged_lab() -> Result<(), String> {
    ensure_lab_privileges().map_err(|e| format!("ensure_lab_privileges: {e}"))?;
    let lab = Lab::build().map_err(|e| format!("Lab::build: {e}"))?;
    let l = lab
        .enter(Node::Server, || TcpListener::bind((lab.server_addr(), 0)))
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let mut c = lab
        .enter(Node::Client, || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let (mut s, _) = l.accept().map_err(|e| e.to_string())?;
    c.write_all(b"hi").map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).map_err(|e| e.to_string())?;
    for f in PathFault::ALL {
        lab.cut(f).map_err(|e| format!("cut {f}: {e}"))?;
        lab.heal(f).map_err(|e| format!("heal {f}: {e}"))?;
    }
    match lab.enable_nat_expiry(Duration::from_secs(2)) {
        Ok(()) | Err(LabError::MissingTool { .. }) => {}
        Err(e) => return Err(format!("enable_nat_expiry: {e}")),
    }
    if lab.facts().len() < 2 {
        return Err("facts empty".into());
    }
    Ok(())
}

/// Calling it after a thread started must give a Privilege error that says so.
fn threaded_is_diagnosed() -> Result<(), String> {
    // A second thread that lives exactly until the call has returned.
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        let _ = wait.recv();
    });
    let r = ensure_lab_privileges();
    drop(done);
    t.join().unwrap();
    match r {
        Err(e @ LabError::Privilege { .. })
            if e.to_string().contains("Threads") && e.exit_code() == 4 =>
        {
            Ok(())
        }
        other => Err(format!(
            "expected a Privilege error about threads, got {other:?}"
        )),
    }
}

fn run(name: &str, f: fn() -> Result<(), String>) -> bool {
    match f() {
        Ok(()) => {
            println!("test {name} ... ok");
            true
        }
        Err(e) => {
            println!("test {name} ... FAILED: {e}");
            false
        }
    }
}

/// Runs this binary again as `nobody` in `mode`; true if it succeeded.
fn as_nobody(mode: &str) -> bool {
    // Copy the binary somewhere `nobody` can surely execute it (the build tree may be private).
    let dir = std::env::temp_dir().join(format!("tcphb-userns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("lab_userns");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new(&exe)
        .env(MODE_ENV, mode)
        .uid(65534)
        .gid(65534)
        .current_dir("/")
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.expect("spawn child as nobody");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    out.status.success()
}

pub fn main() {
    if let Ok(mode) = std::env::var(MODE_ENV) {
        let ok = match mode.as_str() {
            "lab" => run("unprivileged_lab (as nobody)", unprivileged_lab),
            _ => run("threaded_is_diagnosed (as nobody)", threaded_is_diagnosed),
        };
        std::process::exit(if ok { 0 } else { 1 });
    }
    let results = if nix::unistd::geteuid().is_root() {
        vec![as_nobody("lab"), as_nobody("threaded")]
    } else {
        // Already unprivileged: the real thing, in this very (still single-threaded) process.
        vec![run("unprivileged_lab", unprivileged_lab)]
    };
    let passed = results.iter().filter(|&&ok| ok).count();
    let failed = results.len() - passed;
    println!("\n{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
