//! Waiting for the signals that end a run: Ctrl-C everywhere, SIGTERM on Unix.

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
