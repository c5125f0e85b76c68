//! `tcphb audit`: find the connections of the given processes (or on a port), read their settings
//! back from the owners' sockets and their state from the kernel, and judge each.

use std::collections::HashMap;

use crate::audit::{judge, slower_than};
use crate::cli::AuditArgs;
use crate::exit::{self, CliError};
use crate::report::model::AuditReport;
use crate::report::{Finished, Report, SCHEMA};
use crate::sys;
use crate::units::Millis;

/// Run `tcphb audit`; exit 0 when something could be read, 4 when nothing can.
pub fn run(args: &AuditArgs) -> anyhow::Result<Finished> {
    let mut sockets = sys::tcp_sockets()?;
    sockets.retain(|s| {
        args.port.is_none_or(|p| s.local.port() == p) && args.peer.is_none_or(|p| s.peer.ip() == p)
    });
    // Which process holds which socket: the ones asked for, or (for --port alone) any readable one.
    let mut owners: HashMap<u32, (u32, i32)> = HashMap::new();
    for &pid in &args.pids {
        let held = sys::socket_inodes(pid).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                CliError::Usage(format!("no process {pid}: check the PID (pidof, pgrep)"))
            }
            _ => CliError::Environment(format!(
                "cannot read the descriptors of process {pid} ({e}): run as its user or as root"
            )),
        })?;
        owners.extend(held.into_iter().map(|(inode, fd)| (inode, (pid, fd))));
    }
    if args.pids.is_empty() && !sockets.is_empty() {
        owners = sys::all_socket_inodes(&sockets.iter().map(|s| s.inode).collect());
    }
    let kernel = sys::kernel_timers();
    let mut unread = 0usize;
    let mut why_unread = None;
    let mut connections = Vec::new();
    // Each owner is opened once for all its connections; a failure to open it is each one's reason.
    let mut processes: HashMap<u32, Result<sys::Process, String>> = HashMap::new();
    for s in &sockets {
        let owner = owners.get(&s.inode).copied();
        if !args.pids.is_empty() && owner.is_none() {
            continue;
        }
        let read = match owner {
            Some((pid, fd)) => match processes
                .entry(pid)
                .or_insert_with(|| sys::Process::open(pid).map_err(|e| e.to_string()))
            {
                Ok(process) => sys::read_back_of(process, fd).map_err(|e| e.to_string()),
                Err(why) => Err(why.clone()),
            },
            None => Err("no readable process holds it".into()),
        };
        let effective = match read {
            Ok(e) => Some(e),
            Err(why) => {
                unread += 1;
                why_unread.get_or_insert(why);
                None
            }
        };
        connections.push(judge(s, owner, effective, &kernel));
    }
    let unreadable = why_unread.map(|why| {
        format!(
            "the settings of {unread} of {} connections ({why}); reading another process's socket options needs ptrace rights over it: run as root (or with CAP_SYS_PTRACE)",
            connections.len()
        )
    });
    let report = AuditReport {
        schema: SCHEMA,
        pids: args.pids.clone(),
        port: args.port,
        kernel_timers: kernel,
        slower_than_deadline: args.detect_within.map(|d| slower_than(&connections, d)),
        detect_within_ms: args.detect_within.map(|d| d.ms()),
        audited: connections,
        unreadable,
    };
    Ok(Finished {
        report: Report::Audit(report),
        code: exit::OK,
    })
}
