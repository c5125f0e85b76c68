//! The platform layer: what differs between Linux, other Unixes and Windows lives here, behind
//! plain functions, so that the rest of the crate needs no OS `cfg`. (Still to move here: socket
//! options and their read-back, TCP_INFO, the ICMP observer, errno names, rlimits.)

use std::future::Future;

/// Completes when the process is asked to stop (SIGINT or SIGTERM). On Unix the handlers are
/// installed by this call, not at the first poll, so a signal sent right after the caller says it
/// is ready (`listen`'s banner) ends the run cleanly instead of killing the process. Call it
/// inside the runtime.
pub fn shutdown() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The exit code a lab error asks for, if `cause` is one (the lab exists on Linux only).
pub fn lab_exit_code(cause: &(dyn std::error::Error + 'static)) -> Option<u8> {
    #[cfg(target_os = "linux")]
    {
        cause
            .downcast_ref::<crate::lab::LabError>()
            .map(|e| e.exit_code() as u8)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cause;
        None
    }
}
