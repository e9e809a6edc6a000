//! Sources of raw log lines: file tail, journald, stdin (or any reader).
//!
//! Sources are synchronous and push-based: [`run`] blocks the calling thread, reads into one
//! reused buffer per input and hands every complete line to a [`LineSink`] as a borrowed byte
//! slice, so the hot path allocates nothing per line. The pipeline runs each source on its own
//! thread and calls its filters inline from [`LineSink::line`]; [`LineSink::idle`] marks the
//! moments the source has caught up, where batches are flushed. A source stops when its
//! `stop` flag is set (checked at least every [`SourceOptions::poll`]) or, unless following,
//! at the end of its input.
//!
//! Lines are bytes: invalid UTF-8 and NUL bytes pass through untouched. Every line is capped at
//! [`SourceOptions::max_line`]: an overlong line is delivered **once, cut** to the cap (its head
//! carries the timestamp and the program prefix filters look at), and the rest of it up to its
//! newline is discarded, never delivered as further lines; it is counted in
//! [`SourceStats::cut_lines`].
//!
//! # Files
//!
//! Patterns are paths or globs; globs are re-expanded every `poll` (and at once when inotify
//! reports a file created or renamed in a watched directory). At start a file is read from its
//! saved position, else from its end (from its start with [`SourceOptions::from_start`]); a file
//! that appears later (new glob match, missing file created, rotated file) is read from its
//! start. The directories of the files are watched with inotify so that a write is seen within
//! milliseconds; `poll` is the fallback.
//!
//! - **rename + create** (logrotate's default): the old file is read to its end before the new
//!   one is followed from its start, and is kept open and read for a few seconds more, since
//!   writers keep writing to it until they reopen their log.
//! - **copytruncate**: a size below our position means truncation: read again from 0.
//! - **deleted / missing**: the open file is read to its end and closed once quiet; the path is
//!   waited for and followed from its start when it appears.
//!
//! Patterns should not match rotated names (`auth.log*` would match `auth.log.1` and read it
//! as a new file).
//!
//! # Saved positions
//!
//! With [`SourceOptions::state_dir`] set, positions are saved at most once a second while lines
//! flow, and when the source stops, to a JSON file written atomically (temporary file, fsync,
//! rename). Files are keyed by path and remembered as (device, inode, offset, fingerprint of the
//! first 256 bytes); a restart resumes exactly where delivery ended when the same file is found.
//! A saved position wins over `from_start`. The state file's name is derived from the source
//! (see [`SourceSpec::state_file`]), so several sources can share one directory.
//!
//! With [`SourceOptions::resume`], the start position comes from the caller instead, and
//! [`LineSink::checkpoint`] hands the caller each new position after the lines it covers
//! were delivered: the daemon stores it together with those lines' events and decisions
//! (acknowledged positions), so a crash never skips a line whose outcome was not persisted.
//!
//! # journald
//!
//! `journalctl -o json` is run as a child (argv, no shell) and each entry's `MESSAGE` is
//! delivered, with [`LineMeta::time`] from `__REALTIME_TIMESTAMP` and [`LineMeta::journal`]
//! holding `_HOSTNAME`, `SYSLOG_IDENTIFIER`, `_COMM`, `SYSLOG_PID`, `_PID` and the monotonic
//! times ([`JournalFields::ident`], [`JournalFields::pid`] pick the program and pid). The
//! source synthesizes no syslog-like prefix: filters get the message and the metadata (the
//! fail2ban adapter builds fail2ban's journal line from them). The `__CURSOR` of the last
//! delivered entry is saved like file positions.

#![warn(missing_docs)]

use palisade_core::{JournalFields, Timestamp};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

mod files;
mod health;
mod journald;
mod lines;
mod state;
mod stream;

pub use health::{InputHealth, InputState, SourceHealth};
pub use journald::{parse_entry, JournalEntry};
pub use stream::run_reader;

/// Default cap on a line's length: 16 KiB.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024;

/// Largest accepted [`SourceOptions::max_line`]: 64 MiB.
pub const MAX_MAX_LINE: usize = 64 * 1024 * 1024;

/// Metadata of one line, borrowed for the duration of [`LineSink::line`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineMeta<'a> {
    /// Where the line came from: the file's path as matched, `"journald"`, or the stream name
    /// (`"stdin"`).
    pub source: &'a str,
    /// Byte offset of the line's first byte in the file (or in the stream since it was opened);
    /// 0 for journald.
    pub offset: u64,
    /// Time attached by the source (journald's `__REALTIME_TIMESTAMP`); `None` for files and
    /// streams, whose lines carry their own timestamps.
    pub time: Option<Timestamp>,
    /// The journal entry's other fields (host, identifier, pids, monotonic times) for
    /// journald; `None` for files and streams.
    pub journal: Option<JournalFields<'a>>,
}

impl<'a> LineMeta<'a> {
    /// Metadata with only a source name and offset.
    pub fn plain(source: &'a str, offset: u64) -> Self {
        LineMeta {
            source,
            offset,
            time: None,
            journal: None,
        }
    }
}

/// Receives lines from a source, on the source's thread.
pub trait LineSink {
    /// One complete line, without its newline (and without a trailing `\r`), at most
    /// [`SourceOptions::max_line`] bytes. Borrowed: valid only during the call.
    fn line(&mut self, line: &[u8], meta: &LineMeta<'_>);

    /// The source has caught up with its input (or is idle): a good moment to flush batches.
    /// Positions are saved right after this call. Default: nothing.
    fn idle(&mut self) {}

    /// Every line delivered before this call is covered by `pos`: a source started again with
    /// [`SourceOptions::resume`] `= pos` delivers exactly the lines after them. Called after
    /// each round of reads that moved the position (and once at start, with the starting
    /// position, and on stop). A sink that persists what it is given makes the position move
    /// only once that is done (acknowledged positions, see the daemon). Default: nothing.
    fn checkpoint(&mut self, pos: &Position) {
        let _ = pos;
    }
}

/// Where a source is in its input: an opaque document (JSON: file positions or a journald
/// cursor) that [`SourceOptions::resume`] accepts back. Same format as the state files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position(pub String);

impl Position {
    /// Reads the position a source saved in `state_dir` (its state file), if any.
    pub fn from_state_dir(spec: &SourceSpec, state_dir: &Path) -> Option<Position> {
        let path = spec.state_file(state_dir)?;
        std::fs::read_to_string(path).ok().map(Position)
    }
}

impl<F: FnMut(&[u8], &LineMeta<'_>)> LineSink for F {
    fn line(&mut self, line: &[u8], meta: &LineMeta<'_>) {
        self(line, meta)
    }
}

/// What to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// Files given by paths or glob patterns (`/var/log/nginx/*.access.log`).
    Files {
        /// Paths or globs (`*`, `?`, `[…]`), absolute or relative to the working directory.
        patterns: Vec<String>,
    },
    /// The systemd journal, through `journalctl`.
    Journald {
        /// journalctl matches (`_SYSTEMD_UNIT=ssh.service`, `SYSLOG_IDENTIFIER=sshd`, `+` for
        /// OR, or an executable path). Empty: the whole journal.
        matches: Vec<String>,
    },
    /// Standard input, read to its end.
    Stdin,
}

impl SourceSpec {
    /// Checks the spec without touching the system: glob syntax, journald match syntax.
    pub fn validate(&self) -> Result<(), SourceError> {
        match self {
            SourceSpec::Files { patterns } => {
                if patterns.is_empty() {
                    return Err(SourceError::Invalid("no file patterns".into()));
                }
                for p in patterns {
                    if p.is_empty() {
                        return Err(SourceError::Invalid("empty file pattern".into()));
                    }
                    glob::Pattern::new(p).map_err(|source| SourceError::Pattern {
                        pattern: p.clone(),
                        source,
                    })?;
                }
                Ok(())
            }
            SourceSpec::Journald { matches } => {
                for m in matches {
                    journald::validate_match(m)?;
                }
                Ok(())
            }
            SourceSpec::Stdin => Ok(()),
        }
    }

    /// The file in `state_dir` where this source's positions are saved (`None` for stdin,
    /// which has no position). The name is `files-<hash>.json` / `journald-<hash>.json`, the
    /// hash covering the patterns or matches.
    pub fn state_file(&self, state_dir: &Path) -> Option<PathBuf> {
        match self {
            SourceSpec::Files { patterns } => Some(state::state_path(state_dir, "files", patterns)),
            SourceSpec::Journald { matches } => {
                Some(state::state_path(state_dir, "journald", matches))
            }
            SourceSpec::Stdin => None,
        }
    }
}

/// How to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceOptions {
    /// Read existing content (file history, the whole journal) when no position is saved;
    /// otherwise start at the end. Default `false`.
    pub from_start: bool,
    /// Longest line delivered, in bytes (1 ..= [`MAX_MAX_LINE`]); longer lines are cut.
    /// Default [`DEFAULT_MAX_LINE`].
    pub max_line: usize,
    /// Interval of glob re-expansion and of the stat/read fallback when inotify is silent or
    /// unavailable; the stop flag is checked at least this often. Default 250 ms.
    pub poll: Duration,
    /// Directory where positions (file offsets, journald cursor) are saved; `None`: nothing is
    /// saved nor restored. Created if missing.
    pub state_dir: Option<PathBuf>,
    /// Keep following new data (`true`, default); `false` reads what is there once and returns
    /// (tests, replay). Stdin is always read to its end.
    pub follow: bool,
    /// Start from this position (given earlier to [`LineSink::checkpoint`]) instead of the
    /// state file's. An unusable document is ignored with a warning, like a corrupt state
    /// file.
    pub resume: Option<Position>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            from_start: false,
            max_line: DEFAULT_MAX_LINE,
            poll: Duration::from_millis(250),
            state_dir: None,
            follow: true,
            resume: None,
        }
    }
}

impl SourceOptions {
    /// Checks the options (pure).
    pub fn validate(&self) -> Result<(), SourceError> {
        if self.max_line == 0 || self.max_line > MAX_MAX_LINE {
            return Err(SourceError::Invalid(format!(
                "max_line must be between 1 and {MAX_MAX_LINE}, not {}",
                self.max_line
            )));
        }
        if self.poll < Duration::from_millis(1) {
            return Err(SourceError::Invalid("poll must be at least 1ms".into()));
        }
        Ok(())
    }
}

/// Counters of one run, returned by [`run`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Lines delivered (cut lines included).
    pub lines: u64,
    /// Bytes read (files, streams) or message bytes delivered (journald).
    pub bytes: u64,
    /// Lines longer than `max_line`, delivered cut.
    pub cut_lines: u64,
    /// Files replaced under their path (rename + create, delete + create), including while
    /// stopped.
    pub rotations: u64,
    /// Files that shrank below our position (copytruncate), including while stopped.
    pub truncations: u64,
    /// Files opened.
    pub files_opened: u64,
    /// Non-fatal errors (a file that cannot be opened or read, a state file that cannot be
    /// written); each is logged.
    pub errors: u64,
    /// journald output lines that were not a usable JSON entry.
    pub bad_records: u64,
}

/// A fatal source error. Problems with one file among several are not fatal: they are logged,
/// counted in [`SourceStats::errors`] and retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// Unusable options or spec.
    #[error("invalid source: {0}")]
    Invalid(String),
    /// A file pattern is not a valid glob.
    #[error("bad file pattern {pattern:?}: {source}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        source: glob::PatternError,
    },
    /// Reading an input failed.
    #[error("{path}: {source}")]
    Io {
        /// The file, or `stdin` / the stream name.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The state directory or file cannot be used.
    #[error("source state {path}: {source}")]
    State {
        /// The directory or file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `journalctl` could not be started.
    #[error("journalctl: cannot run: {0}")]
    JournalctlSpawn(std::io::Error),
    /// `journalctl` ended by itself, unsuccessfully or while we were following.
    #[error("journalctl exited with {status}: {stderr}")]
    JournalctlExit {
        /// Exit status text.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
}

/// Runs a source until `stop` is set or, unless following, its input ends; returns its
/// counters.
///
/// Blocks the calling thread. `stop` is checked at least every [`SourceOptions::poll`] (stdin
/// is checked between reads, which block). Positions are saved on return when a state
/// directory is set.
pub fn run(
    spec: &SourceSpec,
    opts: &SourceOptions,
    sink: &mut dyn LineSink,
    stop: &AtomicBool,
) -> Result<SourceStats, SourceError> {
    run_with_health(spec, opts, sink, stop, None)
}

/// [`run`], publishing the state of each input (files: missing, unreadable, rotated) in
/// `health` as it changes. A file missing when the source starts is logged as a warning.
pub fn run_with_health(
    spec: &SourceSpec,
    opts: &SourceOptions,
    sink: &mut dyn LineSink,
    stop: &AtomicBool,
    health: Option<&SourceHealth>,
) -> Result<SourceStats, SourceError> {
    spec.validate()?;
    opts.validate()?;
    if let Some(dir) = &opts.state_dir {
        std::fs::create_dir_all(dir).map_err(|source| SourceError::State {
            path: dir.clone(),
            source,
        })?;
    }
    match spec {
        SourceSpec::Files { patterns } => files::run(spec, patterns, opts, sink, stop, health),
        SourceSpec::Journald { matches } => journald::run(spec, matches, opts, sink, stop),
        SourceSpec::Stdin => {
            let stdin = std::io::stdin();
            let lock = stdin.lock();
            run_reader("stdin", lock, opts, sink, stop)
        }
    }
}
