//! Splitting a byte stream into capped lines with one reused buffer.
//!
//! The [`Splitter`] owns a fixed buffer that bytes are read into; complete lines are handed out
//! as slices of it (no copy, no allocation), and the unfinished tail is kept (moved to the
//! front) until its newline arrives. A line longer than the cap is handed out once, cut, and the
//! rest of it up to its newline is discarded, so a hostile writer cannot make us buffer without
//! bound nor turn one long line into many.

use memchr::memchr;

/// The buffer grows (on demand) to at least this, whatever the cap: large reads amortise
/// syscalls when there is a backlog.
const MAX_BUF_MIN: usize = 64 * 1024;

/// Initial buffer size: a quiet file (most of them) never needs more.
const INITIAL_BUF: usize = 8 * 1024;

/// Free space kept for a read.
const MIN_READ: usize = 4096;

/// What [`Splitter::drain`] hands out for each line.
pub(crate) struct Piece<'a> {
    /// The line, without `\n` and without a trailing `\r`, at most `max_line` bytes.
    pub line: &'a [u8],
    /// Stream offset of the line's first byte.
    pub offset: u64,
    /// Whether the line was longer than the cap and has been cut.
    pub cut: bool,
}

/// A reusable line splitter over a byte stream read in chunks.
pub(crate) struct Splitter {
    buf: Vec<u8>,
    /// Size the buffer may grow to: room for a line at the cap plus a read.
    limit: usize,
    /// The last read filled all the space offered: a backlog, worth a bigger buffer.
    was_full: bool,
    /// Size of the space last offered by `spare`.
    offered: usize,
    /// Start of the bytes not yet handed out.
    start: usize,
    /// Where newline search resumes (`start <= scanned <= end`).
    scanned: usize,
    /// End of valid data.
    end: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Inside an overlong line whose cut head was already handed out: discard to the newline.
    skipping: bool,
    max_line: usize,
}

impl Splitter {
    /// A splitter for lines of at most `max_line` bytes (at least 1), positioned at `offset`.
    pub fn new(max_line: usize, offset: u64) -> Self {
        let max_line = max_line.max(1);
        let limit = MAX_BUF_MIN.max(max_line.saturating_add(MIN_READ));
        Splitter {
            buf: vec![0; INITIAL_BUF.min(limit)],
            limit,
            was_full: false,
            offered: 0,
            start: 0,
            scanned: 0,
            end: 0,
            base: offset,
            skipping: false,
            max_line,
        }
    }

    /// Forgets any pending bytes and continues at `offset`; `skip` discards up to the first
    /// newline (used to resume in the middle of a line).
    pub fn reset(&mut self, offset: u64, skip: bool) {
        self.start = 0;
        self.scanned = 0;
        self.end = 0;
        self.base = offset;
        self.skipping = skip;
    }

    /// Stream offset where the next read must start (everything before it is buffered or done).
    pub fn read_pos(&self) -> u64 {
        self.base + self.end as u64
    }

    /// Stream offset up to which every byte has been handed out or deliberately discarded:
    /// where a restart must resume (together with [`Splitter::skipping`]).
    pub fn consumed(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Whether the rest of an overlong line is being discarded.
    pub fn skipping(&self) -> bool {
        self.skipping
    }

    /// Free space to read into; always at least one byte long.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            // Nothing pending: restart at the front for free.
            self.base += self.start as u64;
            self.start = 0;
            self.scanned = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < MIN_READ && self.start > 0 {
            let n = self.end - self.start;
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.scanned -= self.start;
            self.start = 0;
            self.end = n;
        }
        // `drain` never leaves more than `max_line + 1` bytes pending and the buffer may grow
        // to `max_line + MIN_READ`, so there is always room after compaction and growth.
        let free = self.buf.len() - self.end;
        if (free < MIN_READ || self.was_full) && self.buf.len() < self.limit {
            let want = (self.buf.len() * 2)
                .max(self.end + MIN_READ)
                .min(self.limit);
            self.buf.resize(want, 0);
        }
        self.was_full = false;
        self.offered = self.buf.len() - self.end;
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`Splitter::spare`].
    pub fn filled(&mut self, n: usize) {
        self.was_full = n >= self.offered;
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Hands out every complete line buffered, then cuts the unfinished line if it is already
    /// certainly over the cap.
    pub fn drain(&mut self, mut emit: impl FnMut(Piece<'_>)) {
        while let Some(i) = memchr(b'\n', &self.buf[self.scanned..self.end]) {
            let nl = self.scanned + i;
            if self.skipping {
                self.skipping = false;
            } else {
                emit(self.piece(self.start, nl));
            }
            self.start = nl + 1;
            self.scanned = self.start;
        }
        self.scanned = self.end;
        if self.skipping {
            self.start = self.end;
        } else if self.end - self.start > self.max_line + 1 {
            // Longer than the cap even if it ends in "\r\n": hand out its head now, drop the
            // rest as it comes.
            let s = self.start;
            emit(Piece {
                line: &self.buf[s..s + self.max_line],
                offset: self.base + s as u64,
                cut: true,
            });
            self.start = self.end;
            self.skipping = true;
        }
    }

    /// Hands out the unfinished line, if any, as if it had ended (end of a stream, or a rotated
    /// file that will not be written again).
    pub fn flush(&mut self, mut emit: impl FnMut(Piece<'_>)) {
        if !self.skipping && self.start < self.end {
            emit(self.piece(self.start, self.end));
        }
        self.skipping = false;
        self.start = self.end;
        self.scanned = self.end;
    }

    fn piece(&self, s: usize, e: usize) -> Piece<'_> {
        let mut line = &self.buf[s..e];
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        let cut = line.len() > self.max_line;
        if cut {
            line = &line[..self.max_line];
        }
        Piece {
            line,
            offset: self.base + s as u64,
            cut,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `data` in chunks of the given sizes; returns (line, offset, cut) triples.
    fn split(
        data: &[u8],
        chunks: &mut dyn FnMut() -> usize,
        max: usize,
    ) -> Vec<(Vec<u8>, u64, bool)> {
        let mut s = Splitter::new(max, 0);
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let spare = s.spare();
            let n = chunks().max(1).min(spare.len()).min(data.len() - pos);
            spare[..n].copy_from_slice(&data[pos..pos + n]);
            pos += n;
            s.filled(n);
            s.drain(|p| out.push((p.line.to_vec(), p.offset, p.cut)));
            assert_eq!(s.read_pos(), pos as u64);
        }
        s.flush(|p| out.push((p.line.to_vec(), p.offset, p.cut)));
        out
    }

    /// The obvious model: split on '\n', strip one '\r', cut to `max`.
    fn model(data: &[u8], max: usize) -> Vec<(Vec<u8>, u64, bool)> {
        let mut out = Vec::new();
        let mut off = 0u64;
        let mut parts: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        if parts.last().is_some_and(|l| l.is_empty()) {
            parts.pop();
        }
        for p in parts {
            let mut l = p;
            if let [rest @ .., b'\r'] = l {
                l = rest;
            }
            let cut = l.len() > max;
            out.push((l[..l.len().min(max)].to_vec(), off, cut));
            off += p.len() as u64 + 1;
        }
        out
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn matches_model_for_random_input_and_chunking() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..300 {
            let max = [1usize, 3, 8, 40, 100][round % 5];
            let len = (rng.next() % 3000) as usize;
            let data: Vec<u8> = (0..len)
                .map(|_| match rng.next() % 10 {
                    0 => b'\n',
                    1 => b'\r',
                    2 => 0,
                    3 => 0xff,
                    _ => b'a' + (rng.next() % 26) as u8,
                })
                .collect();
            let mut r2 = Rng(rng.next() | 1);
            let got = split(&data, &mut || (r2.next() % 200) as usize, max);
            assert_eq!(got, model(&data, max), "round {round} max {max}");
        }
    }

    #[test]
    fn overlong_line_is_cut_once_across_many_reads() {
        let mut data = b"ok\n".to_vec();
        data.extend_from_slice(&[b'x'; 300_000]);
        data.extend(b"\nafter\n");
        let got = split(&data, &mut || 1000, 16);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], (vec![b'x'; 16], 3, true));
        assert_eq!(got[2].0, b"after");
        assert_eq!(got[2].1, 300_004);
    }

    #[test]
    fn buffer_grows_for_backlogs_and_long_lines() {
        let mut rng = Rng(7);
        let mut data = Vec::new();
        for _ in 0..2000 {
            let len = (rng.next() % 300) as usize;
            data.extend((0..len).map(|_| b'a' + (rng.next() % 26) as u8));
            data.push(b'\n');
        }
        data.extend_from_slice(&[b'q'; 100_000]);
        data.extend_from_slice(b"\nend\n");
        for max in [200, 20_000, 200_000] {
            let got = split(&data, &mut || usize::MAX, max);
            assert_eq!(got, model(&data, max), "max {max}");
        }
        let mut s = Splitter::new(100, 0);
        assert_eq!(s.spare().len(), INITIAL_BUF);
    }

    #[test]
    fn exact_cap_with_crlf_is_not_cut() {
        let got = split(b"abcd\r\nabcde\r\n", &mut || 1, 4);
        assert_eq!(got[0], (b"abcd".to_vec(), 0, false));
        assert_eq!(got[1], (b"abcd".to_vec(), 6, true));
    }

    #[test]
    fn resume_skipping_drops_the_partial_head() {
        let mut s = Splitter::new(100, 50);
        s.reset(50, true);
        let sp = s.spare();
        sp[..8].copy_from_slice(b"tail\nok\n");
        s.filled(8);
        let mut out = Vec::new();
        s.drain(|p| out.push((p.line.to_vec(), p.offset)));
        assert_eq!(out, vec![(b"ok".to_vec(), 55)]);
        assert_eq!(s.consumed(), 58);
    }
}
