//! Newline-terminated lines out of a byte stream whose reads may time out.

use std::io::{self, ErrorKind, Read};

/// Longest line forwarded as one message, bytes; a longer one is cut into pieces this long, so
/// a source that never sends a newline cannot make the buffer grow without bound.
pub const MAX_LINE: usize = 64 * 1024;

/// The lines of a stream. Bytes read before a read timed out stay buffered, so a line split
/// across reads (or across time-outs) comes out whole.
pub struct Lines<R> {
    reader: R,
    buffer: Vec<u8>,
    /// Bytes of `buffer` already searched for a newline.
    searched: usize,
    eof: bool,
}

impl<R: Read> Lines<R> {
    pub fn new(reader: R) -> Self {
        Lines {
            reader,
            buffer: Vec::new(),
            searched: 0,
            eof: false,
        }
    }

    /// The next line without its `\n` (or `\r\n`); `None` when a read timed out before a whole
    /// line came (call again later). At end-of-file an unterminated last line is still given;
    /// after it, the end is an `UnexpectedEof` error, since a service's source is meant to
    /// stay open.
    pub fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(at) = self.buffer[self.searched..]
                .iter()
                .position(|&b| b == b'\n')
                && self.searched + at <= MAX_LINE
            {
                let mut line: Vec<u8> = self.buffer.drain(..=self.searched + at).collect();
                self.searched = 0;
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            self.searched = self.buffer.len();
            // No newline within the first MAX_LINE bytes.
            if self.buffer.len() >= MAX_LINE {
                self.searched = 0;
                return Ok(Some(self.buffer.drain(..MAX_LINE).collect()));
            }
            if self.eof {
                if self.buffer.is_empty() {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the source closed the connection",
                    ));
                }
                self.searched = 0;
                return Ok(Some(std::mem::take(&mut self.buffer)));
            }
            match self.reader.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e) if timed_out(&e) => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether a read ended only because its time-out passed (`WouldBlock` on Unix-like systems,
/// `TimedOut` elsewhere).
pub fn timed_out(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A reader that answers with scripted chunks; `None` is a read that times out.
    struct Script(VecDeque<Option<Vec<u8>>>);

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.pop_front() {
                None => Ok(0),
                Some(None) => Err(ErrorKind::WouldBlock.into()),
                Some(Some(mut chunk)) => {
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        self.0.push_front(Some(chunk.split_off(n)));
                    }
                    Ok(n)
                }
            }
        }
    }

    fn lines(chunks: &[Option<&[u8]>]) -> Lines<Script> {
        Lines::new(Script(
            chunks.iter().map(|c| c.map(|c| c.to_vec())).collect(),
        ))
    }

    fn next(lines: &mut Lines<Script>) -> Option<String> {
        lines
            .next_line()
            .expect("no error")
            .map(|l| String::from_utf8(l).expect("utf-8"))
    }

    #[test]
    fn splits_lines_and_strips_crlf() {
        let mut l = lines(&[Some(b"one\ntwo\r\nthree\n")]);
        assert_eq!(next(&mut l).as_deref(), Some("one"));
        assert_eq!(next(&mut l).as_deref(), Some("two"));
        assert_eq!(next(&mut l).as_deref(), Some("three"));
        let end = l.next_line().expect_err("end of file");
        assert_eq!(end.kind(), ErrorKind::UnexpectedEof);
    }

    #[test]
    fn keeps_a_partial_line_across_time_outs() {
        let mut l = lines(&[Some(b"hel"), None, Some(b"lo"), None, Some(b"\nx\n")]);
        assert_eq!(next(&mut l), None);
        assert_eq!(next(&mut l), None);
        assert_eq!(next(&mut l).as_deref(), Some("hello"));
        assert_eq!(next(&mut l).as_deref(), Some("x"));
    }

    #[test]
    fn empty_lines_are_lines() {
        let mut l = lines(&[Some(b"\n\na\n")]);
        assert_eq!(next(&mut l).as_deref(), Some(""));
        assert_eq!(next(&mut l).as_deref(), Some(""));
        assert_eq!(next(&mut l).as_deref(), Some("a"));
    }

    #[test]
    fn gives_an_unterminated_last_line_at_end_of_file() {
        let mut l = lines(&[Some(b"a\nlast")]);
        assert_eq!(next(&mut l).as_deref(), Some("a"));
        assert_eq!(next(&mut l).as_deref(), Some("last"));
        assert!(l.next_line().is_err());
    }

    #[test]
    fn cuts_overlong_lines() {
        // Chunks that do not end on MAX_LINE, so the newline arrives past it in one read.
        let mut input = vec![b'x'; MAX_LINE + 10];
        input.extend_from_slice(b"\nshort\n");
        let chunks = input.chunks(1000).map(|c| Some(c.to_vec())).collect();
        let mut l = Lines::new(Script(chunks));
        assert_eq!(l.next_line().expect("ok").map(|l| l.len()), Some(MAX_LINE));
        assert_eq!(l.next_line().expect("ok").map(|l| l.len()), Some(10));
        assert_eq!(next(&mut l).as_deref(), Some("short"));
        // A line of exactly MAX_LINE bytes stays whole.
        let mut input = vec![b'y'; MAX_LINE];
        input.push(b'\n');
        let mut l = Lines::new(Script(VecDeque::from([Some(input)])));
        assert_eq!(l.next_line().expect("ok").map(|l| l.len()), Some(MAX_LINE));
    }
}
