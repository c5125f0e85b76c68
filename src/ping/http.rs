//! HTTP/1.1 keep-alive: `HEAD PATH` (or `OPTIONS *`) on one persistent connection → a status line.
//! Any status proves the server's process is serving (an error status is named); a server that
//! announces `Connection: close`, or closes the idle keep-alive connection itself, is reported as
//! closing, never as dead.
//!
//! The response head is parsed by `httparse` (sans-IO); bodies (an OPTIONS reply may carry one) are
//! skipped by Content-Length or chunk sizes, never buffered.

use super::{Codec, Heard, Options, PingError};

/// Longest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Longest chunk-size or trailer line accepted.
const MAX_CHUNK_LINE: usize = 1024;
/// Headers parsed per response at most.
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a response head into `buf`.
    Head,
    /// Skipping `n` body bytes, then reading `then`.
    Skip(u64, After),
    /// Reading a chunk-size line into `buf`.
    ChunkSize,
    /// Reading trailer lines after the last chunk, until an empty one.
    Trailers,
    /// A body delimited by the close: everything until the FIN is body.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Head,
    ChunkSize,
}

/// The `http` codec.
#[derive(Debug)]
pub struct Http {
    request: Vec<u8>,
    head: bool,
    state: State,
    buf: Vec<u8>,
    /// The first error status seen, e.g. `404 Not Found`.
    error_status: Option<String>,
    /// The server announced the end of this connection (Connection: close, or HTTP/1.0).
    closing: Option<String>,
    /// `Keep-Alive: timeout=N` as the server announced it.
    keep_alive: Option<String>,
    responses: u64,
}

impl Http {
    /// A codec requesting `o.path` from `o.authority`.
    pub fn new(o: &Options) -> Http {
        let (method, target) = if o.path == "*" {
            ("OPTIONS", "*")
        } else {
            ("HEAD", o.path.as_str())
        };
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tcphb/{}\r\n\r\n",
            o.authority,
            env!("CARGO_PKG_VERSION")
        )
        .into_bytes();
        Http {
            request,
            head: method == "HEAD",
            state: State::Head,
            buf: Vec::new(),
            error_status: None,
            closing: None,
            keep_alive: None,
            responses: 0,
        }
    }

    /// Handle one complete response head: what it says, and how its body is delimited.
    fn response(&mut self, r: &httparse::Response<'_, '_>) -> Result<(), PingError> {
        let code = r.code.unwrap_or(0);
        let reason = r.reason.unwrap_or("");
        if code == 101 {
            return Err(PingError::Protocol(
                "the server switched protocols (101) in answer to a plain request".into(),
            ));
        }
        if (100..200).contains(&code) {
            return Ok(());
        }
        self.responses += 1;
        if code >= 400 && self.error_status.is_none() {
            self.error_status = Some(super::quote(format!("{code} {reason}").as_bytes()));
        }
        let header = |name: &str| {
            r.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(",")
        };
        let connection = header("connection");
        if connection.contains("close")
            || (r.version == Some(0) && !connection.contains("keep-alive"))
        {
            self.closing.get_or_insert_with(|| {
                format!(
                    "after {} responses it said 'Connection: close' (e.g. nginx's keepalive_requests reached)",
                    self.responses
                )
            });
        }
        let ka = header("keep-alive");
        if let Some(t) = ka
            .split(',')
            .find_map(|p| p.trim().strip_prefix("timeout="))
        {
            self.keep_alive = Some(super::quote(t.as_bytes()));
        }
        let no_body = self.head || code == 204 || code == 304;
        self.state = if no_body {
            State::Head
        } else if header("transfer-encoding").contains("chunked") {
            State::ChunkSize
        } else if let Some(n) = r
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        {
            let n = std::str::from_utf8(n.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    PingError::Protocol("a response with an invalid Content-Length".into())
                })?;
            if n == 0 {
                State::Head
            } else {
                State::Skip(n, After::Head)
            }
        } else {
            State::UntilClose
        };
        Ok(())
    }

    /// Take bytes into `buf` (at most up to `max`), returning how many were taken.
    fn take(&mut self, input: &[u8], max: usize) -> usize {
        let n = input.len().min(max.saturating_sub(self.buf.len()));
        self.buf.extend_from_slice(&input[..n]);
        n
    }
}

impl Codec for Http {
    fn ping(&mut self, _seq: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.request);
    }

    fn feed(&mut self, bytes: &[u8], _out: &mut Vec<u8>) -> Result<Heard, PingError> {
        let mut heard = Heard::default();
        let mut input = bytes;
        while !input.is_empty() {
            match self.state {
                State::UntilClose => {
                    input = &[];
                }
                State::Skip(n, then) => {
                    let k = n.min(input.len() as u64);
                    input = &input[k as usize..];
                    self.state = match (n - k, then) {
                        (0, After::Head) => State::Head,
                        (0, After::ChunkSize) => State::ChunkSize,
                        (left, then) => State::Skip(left, then),
                    };
                }
                State::Head => {
                    let taken = self.take(input, MAX_HEAD);
                    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let mut r = httparse::Response::new(&mut headers);
                    // Parsed out of place: the response borrows the bytes while `self` takes note.
                    let buf = std::mem::take(&mut self.buf);
                    let parsed = r.parse(&buf);
                    let held = buf.len();
                    match parsed {
                        Ok(httparse::Status::Partial) => {
                            if held >= MAX_HEAD {
                                return Err(PingError::Protocol(format!(
                                    "a response head longer than {MAX_HEAD} bytes"
                                )));
                            }
                            self.buf = buf;
                            input = &input[taken..];
                        }
                        Ok(httparse::Status::Complete(len)) => {
                            // Bytes past the head came from this input: give them back.
                            let over = held - len;
                            // A 1xx answers nothing yet, but proves life all the same.
                            self.response(&r)?;
                            heard.replies += 1;
                            input = &input[taken - over..];
                        }
                        Err(e) => {
                            return Err(PingError::Protocol(if self.responses == 0 {
                                format!(
                                    "not an HTTP/1.1 server: its answer is not a response ({e})"
                                )
                            } else {
                                format!("a malformed HTTP response ({e})")
                            }));
                        }
                    }
                }
                State::ChunkSize | State::Trailers => {
                    let Some(nl) = memchr::memchr(b'\n', input) else {
                        self.take(input, MAX_CHUNK_LINE);
                        if self.buf.len() >= MAX_CHUNK_LINE {
                            return Err(PingError::Protocol("a chunk line too long".into()));
                        }
                        break;
                    };
                    if self.take(&input[..=nl], MAX_CHUNK_LINE) <= nl {
                        return Err(PingError::Protocol("a chunk line too long".into()));
                    }
                    input = &input[nl + 1..];
                    let line = std::mem::take(&mut self.buf);
                    self.state = if self.state == State::Trailers {
                        if line == b"\r\n" || line == b"\n" {
                            State::Head
                        } else {
                            State::Trailers
                        }
                    } else {
                        match httparse::parse_chunk_size(&line) {
                            Ok(httparse::Status::Complete((_, 0))) => State::Trailers,
                            // The chunk and its CRLF.
                            Ok(httparse::Status::Complete((_, n))) => {
                                State::Skip(n.saturating_add(2), After::ChunkSize)
                            }
                            _ => {
                                return Err(PingError::Protocol(
                                    "a malformed chunk size in a response body".into(),
                                ));
                            }
                        }
                    };
                }
            }
        }
        Ok(heard)
    }

    fn note(&self) -> Option<String> {
        let mut notes = Vec::new();
        if let Some(s) = &self.error_status {
            notes.push(format!(
                "answered {s}: any status proves the server's process is serving (choose the path with --path)"
            ));
        }
        if let Some(c) = &self.closing {
            notes.push(format!(
                "the server ends this keep-alive connection itself: {c}"
            ));
        }
        if let Some(t) = &self.keep_alive {
            notes.push(format!(
                "the server keeps an idle keep-alive connection {t} s (Keep-Alive: timeout={t}): a heartbeat interval under it keeps the connection"
            ));
        }
        (!notes.is_empty()).then(|| notes.join("; "))
    }

    fn held(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(path: &str) -> Http {
        Http::new(&Options {
            path: path.into(),
            authority: "example.test:80".into(),
            ..Options::default()
        })
    }

    #[test]
    fn head_and_options_requests() {
        let mut out = Vec::new();
        http("/health").ping(1, &mut out);
        assert!(out.starts_with(b"HEAD /health HTTP/1.1\r\nHost: example.test:80\r\n"));
        out.clear();
        http("*").ping(1, &mut out);
        assert!(out.starts_with(b"OPTIONS * HTTP/1.1\r\n"));
    }

    #[test]
    fn responses_with_bodies_chunks_and_errors() {
        let mut h = http("*");
        let mut out = Vec::new();
        let stream = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 405 Not Allowed\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        let h1 = h.feed(stream, &mut out).unwrap();
        assert_eq!(h1.replies, 3);
        let note = h.note().unwrap();
        assert!(
            note.contains("405 Not Allowed") && note.contains("Connection: close"),
            "{note}"
        );
        // The same, a byte at a time.
        let mut b = http("*");
        let n: u64 = stream
            .iter()
            .map(|c| b.feed(&[*c], &mut out).unwrap().replies)
            .sum();
        assert_eq!(n, 3);
        let e = http("/").feed(b"+PONG\r\n", &mut out).unwrap_err();
        assert!(e.to_string().contains("not an HTTP/1.1 server"), "{e}");
    }
}
