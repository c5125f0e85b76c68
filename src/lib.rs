//! tcphb: measure how long it takes to notice a dead TCP peer, with which mechanism, against a prediction.
//!
//! Data flows one way: spec → sockets → watcher → detections → report (see DESIGN.md).

pub mod audit;
pub mod cli;
pub mod cmd;
pub mod detection;
pub mod exit;
pub mod heartbeat;
pub mod idle;
#[cfg(target_os = "linux")]
pub mod lab;
pub mod limits;
pub mod matrix;
pub mod ping;
pub mod predict;
pub mod recommend;
pub mod recverr;
pub mod report;
pub mod scenario;
pub mod settings;
pub mod sockets;
pub mod strategy;
pub mod sys;
pub mod tcpinfo;
pub mod units;
pub mod watch;
