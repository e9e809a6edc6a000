//! Streams: stdin or any reader, read to the end.

use crate::lines::{Piece, Splitter};
use crate::{LineMeta, LineSink, SourceError, SourceOptions, SourceStats};
use std::io::{ErrorKind, Read};
use std::sync::atomic::{AtomicBool, Ordering};

/// Reads `reader` to its end, delivering capped lines named `name` (offsets count from the
/// start of the stream); a last line without a newline is delivered too.
///
/// `stop` is checked between reads (a read itself may block). [`LineSink::idle`] is called
/// whenever a read came back short (the writer had nothing more for now) and at the end.
/// `opts.follow`, `poll` and `state_dir` do not apply. Useful for stdin, replays, and
/// decompressed archives.
pub fn run_reader(
    name: &str,
    mut reader: impl Read,
    opts: &SourceOptions,
    sink: &mut dyn LineSink,
    stop: &AtomicBool,
) -> Result<SourceStats, SourceError> {
    opts.validate()?;
    let mut stats = SourceStats::default();
    let mut split = Splitter::new(opts.max_line, 0);
    while !stop.load(Ordering::Relaxed) {
        let spare = split.spare();
        let want = spare.len();
        let n = match reader.read(spare) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(SourceError::Io {
                    path: name.into(),
                    source,
                })
            }
        };
        split.filled(n);
        stats.bytes += n as u64;
        split.drain(|p| deliver(sink, &mut stats, &LineMeta::plain(name, p.offset), p));
        if n < want {
            sink.idle();
        }
    }
    if !stop.load(Ordering::Relaxed) {
        split.flush(|p| deliver(sink, &mut stats, &LineMeta::plain(name, p.offset), p));
    }
    sink.idle();
    Ok(stats)
}

/// Counts and hands out one line.
pub(crate) fn deliver(
    sink: &mut dyn LineSink,
    stats: &mut SourceStats,
    meta: &LineMeta<'_>,
    p: Piece<'_>,
) {
    stats.lines += 1;
    stats.cut_lines += u64::from(p.cut);
    sink.line(p.line, meta);
}
