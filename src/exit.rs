//! Exit codes and the typed errors that choose them.

use crate::strategy::SpecError;
use crate::sys::PlatformError;

/// 0: no dead connection seen.
pub const OK: u8 = 0;
/// 1: an error (connection refused, I/O failure).
pub const ERROR: u8 = 1;
/// 2: usage error.
pub const USAGE: u8 = 2;
/// 3: a dead peer was detected (silence or reset) — only that.
pub const DETECTED: u8 = 3;
/// 4: this environment cannot do what was asked.
pub const ENVIRONMENT: u8 = 4;
/// 5: the peer closed the connection itself (FIN: its own idle timeout, a proxy limit): not a death.
pub const CLOSED: u8 = 5;
/// 6: a promise broken: `probe --detect-within D --verify` measured the recommended settings in the
/// lab, and they missed the deadline in some fault they claim to cover.
pub const PROMISE_BROKEN: u8 = 6;
/// 130: interrupted (SIGINT/SIGTERM) during a measurement; what was measured is printed, marked partial.
pub const INTERRUPTED: u8 = 130;

/// An error whose exit code is not 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad input: exit 2.
    #[error("{0}")]
    Usage(String),
    /// Missing privilege or unsupported option: exit 4.
    #[error("{0}")]
    Environment(String),
}

/// The exit code for an error that ended a command.
pub fn code_for(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<CliError>() {
            return match e {
                CliError::Usage(_) => USAGE,
                CliError::Environment(_) => ENVIRONMENT,
            };
        }
        if let Some(code) = crate::sys::lab_exit_code(cause) {
            return code;
        }
        if cause.downcast_ref::<SpecError>().is_some() {
            return USAGE;
        }
        if let Some(e) = cause.downcast_ref::<PlatformError>() {
            return match e {
                PlatformError::Invalid(_) => USAGE,
                PlatformError::Unsupported(_) => ENVIRONMENT,
            };
        }
    }
    ERROR
}
