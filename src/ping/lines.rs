//! A bounded splitter of `\n`-ended lines for the line-based protocols (tcphb's own `line` codec,
//! Redis replies, memcached): holds at most one partial line, and refuses one longer than its bound.

use super::PingError;

/// Incremental line splitter holding at most `max` bytes of a partial line.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Call `on_line` with each complete line of `bytes` (newline and a trailing `\r` removed); keep
    /// the trailing partial line. Stops at the first error `on_line` returns, or with `too_long()`
    /// at a line of `max` bytes or more.
    pub fn feed<E>(
        &mut self,
        mut bytes: &[u8],
        max: usize,
        too_long: impl FnOnce() -> E,
        mut on_line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        // memchr, not a byte loop: a busy peer's lab pushes megabytes a second through here.
        while let Some(nl) = memchr::memchr(b'\n', bytes) {
            let (head, rest) = bytes.split_at(nl);
            bytes = &rest[1..];
            if self.partial.len() + head.len() >= max {
                return Err(too_long());
            }
            if self.partial.is_empty() {
                on_line(strip_cr(head))?;
            } else {
                self.partial.extend_from_slice(head);
                // Taken, not cleared: a connection holds no buffer between partial lines.
                let line = std::mem::take(&mut self.partial);
                on_line(strip_cr(&line))?;
            }
        }
        if self.partial.len() + bytes.len() >= max {
            return Err(too_long());
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }

    /// [`Lines::feed`] for a protocol's reply lines: one of `max` bytes or more is no reply of
    /// `server` (its name, for the message).
    pub fn replies(
        &mut self,
        bytes: &[u8],
        max: usize,
        server: &str,
        on_line: impl FnMut(&[u8]) -> Result<(), PingError>,
    ) -> Result<(), PingError> {
        let too_long = || {
            PingError::Protocol(format!(
                "a reply line longer than {max} bytes: not a {server} server"
            ))
        };
        self.feed(bytes, max, too_long, on_line)
    }

    /// Bytes of the partial line held.
    pub fn held(&self) -> usize {
        self.partial.len()
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}
