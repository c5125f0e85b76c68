//! Redis (RESP): `PING` → `+PONG`. An error reply still proves the server's process is serving:
//! `-NOAUTH` (a password is required: it parsed the command and asked for AUTH first) and `-DENIED`
//! (protected mode: no password and not bound to loopback, so it refuses remote clients and closes)
//! are named in the report.
//!
//! Hand-written rather than a RESP crate: the only command sent is `PING`, whose replies are one line
//! (a simple string or an error); a line-splitter of a few lines reads them, and anything that is not
//! RESP is refused at its first byte.

use super::lines::Lines;
use super::{Codec, Heard, PingError, quote};

/// Longest reply line accepted (a protected-mode DENIED is ~1 KiB).
pub const MAX_REPLY: usize = 4096;

/// The `redis` codec.
#[derive(Debug, Default)]
pub struct Redis {
    lines: Lines,
    spoke: bool,
    /// The first error reply, and how many came.
    error: Option<(String, u64)>,
}

/// What an error reply means for liveness, by its first word.
fn meaning(word: &str) -> &'static str {
    match word {
        "NOAUTH" => {
            "the server wants AUTH before any command (requirepass): it read the PING and answered, so its process is alive; tcphb does not authenticate"
        }
        "DENIED" => {
            "the server is in protected mode (no password, not bound to loopback) and refuses this client; the reply proves its process alive, and it closes the connection"
        }
        "LOADING" => "the server is alive, loading its dataset into memory",
        "BUSY" => "the server is alive, busy running a script",
        "MASTERDOWN" => "the replica is alive, its link to the master is down",
        _ => "an error reply still proves the server's process is serving",
    }
}

impl Codec for Redis {
    fn ping(&mut self, _seq: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    }

    fn feed(&mut self, bytes: &[u8], _out: &mut Vec<u8>) -> Result<Heard, PingError> {
        let mut heard = Heard::default();
        let spoke = &mut self.spoke;
        let error = &mut self.error;
        self.lines.replies(bytes, MAX_REPLY, "Redis", |line| {
            match line.first() {
                Some(b'+') => heard.replies += 1,
                Some(b'-') => {
                    heard.replies += 1;
                    match error {
                        Some((_, n)) => *n += 1,
                        None => *error = Some((quote(&line[1..]), 1)),
                    }
                }
                // Other RESP types (a push, a bulk string) are RESP, but no answer to PING.
                Some(
                    b':' | b'$' | b'*' | b'_' | b'#' | b',' | b'(' | b'!' | b'=' | b'%' | b'~'
                    | b'>' | b'|',
                ) => heard.unknown += 1,
                _ if *spoke => heard.unknown += 1,
                _ => {
                    return Err(PingError::Protocol(format!(
                        "not a Redis server: it answered PING with '{}'",
                        quote(line)
                    )));
                }
            }
            *spoke |= heard.replies > 0;
            Ok(())
        })?;
        Ok(heard)
    }

    fn note(&self) -> Option<String> {
        let (text, n) = self.error.as_ref()?;
        let word = text.split_whitespace().next().unwrap_or("");
        let times = if *n > 1 {
            format!(" ({n} replies)")
        } else {
            String::new()
        };
        Some(format!("answered -{text}{times}: {}", meaning(word)))
    }

    fn held(&self) -> usize {
        self.lines.held()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pong_noauth_and_foreign_replies() {
        let mut r = Redis::default();
        let mut out = Vec::new();
        r.ping(1, &mut out);
        assert_eq!(out, b"*1\r\n$4\r\nPING\r\n");
        let h = r.feed(b"+PONG\r\n+PO", &mut out).unwrap();
        assert_eq!(h.replies, 1);
        let h = r
            .feed(b"NG\r\n-NOAUTH Authentication required.\r\n", &mut out)
            .unwrap();
        assert_eq!(h.replies, 2);
        assert!(r.note().unwrap().contains("NOAUTH"), "{:?}", r.note());
        let e = Redis::default()
            .feed(b"HTTP/1.1 400 Bad Request\r\n", &mut out)
            .unwrap_err();
        assert!(e.to_string().contains("not a Redis server"), "{e}");
        assert!(matches!(
            Redis::default().feed(&[b'+'; MAX_REPLY + 1], &mut out),
            Err(PingError::Protocol(_))
        ));
    }
}
