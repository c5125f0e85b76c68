//! A bounded splitter of `\n`-ended lines for the line-based protocols (Redis replies, memcached):
//! holds at most one partial line, and refuses one longer than its bound.

/// Incremental line splitter holding at most `max` bytes of a partial line.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

/// A line reached the bound before its newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

impl Lines {
    /// Call `on_line` with each complete line of `bytes` (newline and a trailing `\r` removed); keep
    /// the trailing partial line. Stops at the first error `on_line` returns.
    pub fn feed<E>(
        &mut self,
        mut bytes: &[u8],
        max: usize,
        mut on_line: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<Result<(), E>, TooLong> {
        while let Some(nl) = memchr::memchr(b'\n', bytes) {
            let (head, rest) = bytes.split_at(nl);
            bytes = &rest[1..];
            if self.partial.len() + head.len() >= max {
                return Err(TooLong);
            }
            let r = if self.partial.is_empty() {
                on_line(strip_cr(head))
            } else {
                self.partial.extend_from_slice(head);
                let line = std::mem::take(&mut self.partial);
                on_line(strip_cr(&line))
            };
            if r.is_err() {
                return Ok(r);
            }
        }
        if self.partial.len() + bytes.len() >= max {
            return Err(TooLong);
        }
        self.partial.extend_from_slice(bytes);
        Ok(Ok(()))
    }

    /// Bytes of the partial line held.
    pub fn held(&self) -> usize {
        self.partial.len()
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}
