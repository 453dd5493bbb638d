//! A remote file read through HTTP range requests, for a wheel's `METADATA` where the index
//! serves no PEP 658 file: the zip reader asks for the end of central directory, the central
//! directory and the one entry, and only those spans are fetched (as uv does). A wheel of
//! gigabytes costs a few requests and tens of kilobytes.
//!
//! The spans come from a server that may lie: every answer's `Content-Range` is checked
//! against what was asked, the total fetched is capped, and the zip itself is parsed by the
//! same checked reader as a downloaded wheel.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom};

/// The first request: the last 64 KiB hold the end of central directory (at most 64 KiB with
/// its comment) and, for most wheels, the whole central directory.
pub(crate) const TAIL: u64 = 64 << 10;

/// At most this many bytes of one file are fetched through ranges; a central directory of the
/// largest wheels (tens of thousands of entries) is a few MiB.
pub(crate) const RANGE_LIMIT: u64 = 32 << 20;

/// A span of the file as the server answered it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: u64,
    /// The file's length, from `Content-Range`.
    pub total: u64,
    pub bytes: Vec<u8>,
}

/// Parses `Content-Range: bytes START-END/TOTAL` and checks it against the body and what was
/// asked: `asked` is the first byte wanted (None for a suffix request, which must end the
/// file).
pub(crate) fn checked_span(
    content_range: &str,
    asked: Option<u64>,
    bytes: Vec<u8>,
) -> Result<Span, String> {
    let malformed = || {
        format!(
            "the Content-Range `{}` is malformed",
            content_range.escape_debug()
        )
    };
    let rest = content_range
        .trim()
        .strip_prefix("bytes ")
        .ok_or_else(malformed)?;
    let (span, total) = rest.split_once('/').ok_or_else(malformed)?;
    let (start, end) = span.split_once('-').ok_or_else(malformed)?;
    let number = |text: &str| text.trim().parse::<u64>().map_err(|_| malformed());
    let (start, end, total) = (number(start)?, number(end)?, number(total)?);
    if start > end || end >= total {
        return Err(malformed());
    }
    if end - start + 1 != bytes.len() as u64 {
        return Err(format!(
            "the Content-Range `{}` promises {} bytes, the body has {}",
            content_range.escape_debug(),
            end - start + 1,
            bytes.len()
        ));
    }
    match asked {
        Some(first) if first != start => Err(format!(
            "asked for bytes from {first}, the server sent them from {start}"
        )),
        None if end + 1 != total => Err(format!(
            "asked for the end of the file, the server sent bytes {start}-{end} of {total}"
        )),
        _ => Ok(Span {
            start,
            total,
            bytes,
        }),
    }
}

/// `Read + Seek` over a remote file of known length, fetching what is read in spans: the first
/// miss fetches [`TAIL`] bytes, and each miss right after the previous span fetches twice as
/// much as that one did (a central directory is read front to back).
pub(crate) struct RangeReader<'f> {
    len: u64,
    pos: u64,
    spans: BTreeMap<u64, Vec<u8>>,
    /// Fetches `[start, end)`; the answer is checked to hold exactly that.
    fetch: &'f dyn Fn(u64, u64) -> io::Result<Vec<u8>>,
    fetched: u64,
    last: (u64, u64),
}

impl<'f> RangeReader<'f> {
    /// A reader of a file of `first.total` bytes that already holds `first`.
    pub(crate) fn new(first: Span, fetch: &'f dyn Fn(u64, u64) -> io::Result<Vec<u8>>) -> Self {
        let fetched = first.bytes.len() as u64;
        let last = (first.start + fetched, fetched.max(TAIL));
        let mut spans = BTreeMap::new();
        spans.insert(first.start, first.bytes);
        RangeReader {
            len: first.total,
            pos: 0,
            spans,
            fetch,
            fetched,
            last,
        }
    }

    /// How many bytes were fetched, the first span included.
    pub(crate) fn fetched(&self) -> u64 {
        self.fetched
    }

    /// The held span that covers `pos`, and where in it `pos` is.
    fn held(&self, pos: u64) -> Option<(&[u8], usize)> {
        let (start, bytes) = self.spans.range(..=pos).next_back()?;
        let at = usize::try_from(pos - start).ok()?;
        (at < bytes.len()).then_some((bytes.as_slice(), at))
    }

    fn fill(&mut self, pos: u64) -> io::Result<()> {
        let chunk = if pos == self.last.0 {
            (self.last.1 * 2).min(RANGE_LIMIT)
        } else {
            TAIL
        };
        let next_held = self
            .spans
            .range(pos..)
            .next()
            .map_or(self.len, |(start, _)| *start);
        let end = pos.saturating_add(chunk).min(self.len).min(next_held);
        let size = end - pos;
        if self.fetched + size > RANGE_LIMIT {
            return Err(io::Error::other(format!(
                "reading it would take more than {RANGE_LIMIT} bytes of range requests"
            )));
        }
        let bytes = (self.fetch)(pos, end)?;
        if bytes.len() as u64 != size {
            return Err(io::Error::other("a range request returned another length"));
        }
        self.fetched += size;
        self.last = (end, size);
        self.spans.insert(pos, bytes);
        Ok(())
    }
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        if self.held(self.pos).is_none() {
            self.fill(self.pos)?;
        }
        let (bytes, at) = self
            .held(self.pos)
            .ok_or_else(|| io::Error::other("a range request returned nothing"))?;
        let n = buf.len().min(bytes.len() - at);
        buf[..n].copy_from_slice(&bytes[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RangeReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(delta) => self.len.checked_add_signed(delta),
            SeekFrom::Current(delta) => self.pos.checked_add_signed(delta),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the file's start")
        })?;
        self.pos = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[test]
    fn content_ranges_are_checked_against_the_request() {
        let span = checked_span("bytes 90-99/100", None, vec![0; 10]).unwrap();
        assert_eq!((span.start, span.total), (90, 100));
        assert!(checked_span("bytes 90-99/100", Some(90), vec![0; 10]).is_ok());
        // Another start, a suffix that does not end the file, a length that does not match,
        // an end past the total, and no range at all.
        assert!(checked_span("bytes 80-89/100", Some(90), vec![0; 10]).is_err());
        assert!(checked_span("bytes 80-89/100", None, vec![0; 10]).is_err());
        assert!(checked_span("bytes 90-99/100", None, vec![0; 9]).is_err());
        assert!(checked_span("bytes 90-100/100", None, vec![0; 11]).is_err());
        assert!(checked_span("bytes */100", None, Vec::new()).is_err());
    }

    #[test]
    fn reads_fetch_only_the_spans_read() {
        let file: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let asked = RefCell::new(Vec::new());
        let fetch = |start: u64, end: u64| {
            asked.borrow_mut().push((start, end));
            Ok(file[start as usize..end as usize].to_vec())
        };
        let tail = file.len() as u64 - TAIL;
        let first = Span {
            start: tail,
            total: file.len() as u64,
            bytes: file[tail as usize..].to_vec(),
        };
        let mut reader = RangeReader::new(first, &fetch);
        let mut buf = [0u8; 100];
        reader.seek(SeekFrom::End(-100)).unwrap();
        reader.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..], &file[file.len() - 100..]);
        assert!(asked.borrow().is_empty());
        reader.seek(SeekFrom::Start(1000)).unwrap();
        reader.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[..], &file[1000..1100]);
        assert_eq!(*asked.borrow(), [(1000, 1000 + TAIL)]);
        assert_eq!(reader.fetched(), 2 * TAIL);
        assert!(reader.seek(SeekFrom::Current(-5000)).is_err());
    }
}
