//! memcached (text protocol): `version` → `VERSION 1.6.x`. `ERROR`, `CLIENT_ERROR` and
//! `SERVER_ERROR` replies still prove the server's process is serving, and are named.
//!
//! Hand-written: one command, one-line replies; a line-splitter reads them.

use super::lines::Lines;
use super::{Codec, Heard, PingError, quote};

/// Longest reply line accepted.
pub const MAX_REPLY: usize = 1024;

/// The `memcached` codec.
#[derive(Debug, Default)]
pub struct Memcached {
    lines: Lines,
    spoke: bool,
    version: Option<String>,
    error: Option<String>,
}

impl Codec for Memcached {
    fn ping(&mut self, _seq: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"version\r\n");
    }

    fn feed(&mut self, bytes: &[u8], _out: &mut Vec<u8>) -> Result<Heard, PingError> {
        let mut heard = Heard::default();
        let (spoke, version, error) = (&mut self.spoke, &mut self.version, &mut self.error);
        self.lines.replies(bytes, MAX_REPLY, "memcached", |line| {
            if let Some(v) = line.strip_prefix(b"VERSION ") {
                heard.replies += 1;
                version.get_or_insert_with(|| quote(v));
            } else if line == b"ERROR"
                || line.starts_with(b"CLIENT_ERROR")
                || line.starts_with(b"SERVER_ERROR")
            {
                heard.replies += 1;
                error.get_or_insert_with(|| quote(line));
            } else if *spoke {
                heard.unknown += 1;
            } else {
                return Err(PingError::Protocol(format!(
                    "not a memcached server: it answered version with '{}'",
                    quote(line)
                )));
            }
            *spoke = true;
            Ok(())
        })?;
        Ok(heard)
    }

    fn note(&self) -> Option<String> {
        match (&self.error, &self.version) {
            (Some(e), _) => Some(format!(
                "answered '{e}': an error reply still proves the server's process is serving"
            )),
            (None, Some(v)) => Some(format!("memcached {v}")),
            (None, None) => None,
        }
    }

    fn held(&self) -> usize {
        self.lines.held()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_and_foreign_replies() {
        let mut m = Memcached::default();
        let mut out = Vec::new();
        m.ping(1, &mut out);
        assert_eq!(out, b"version\r\n");
        assert_eq!(m.feed(b"VERSION 1.6.18\r\n", &mut out).unwrap().replies, 1);
        assert_eq!(m.note().as_deref(), Some("memcached 1.6.18"));
        assert_eq!(m.feed(b"STORED\r\n", &mut out).unwrap().unknown, 1);
        let e = Memcached::default()
            .feed(b"+PONG\r\n", &mut out)
            .unwrap_err();
        assert!(e.to_string().contains("not a memcached server"), "{e}");
    }
}
