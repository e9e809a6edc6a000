//! File tail: globs, rotation, truncation, saved positions, inotify wake-ups.
//!
//! Every path is tracked by a [`Tail`]; each check stats the path, compares the device and
//! inode with the open file's, and reads what is new with positional reads (`pread`), so our
//! position is ours alone and truncation is a matter of resetting it. The directories holding
//! the files are watched with inotify (through `notify`): any change wakes the loop at once,
//! and the poll interval is only the fallback.

use crate::health::{InputState, SourceHealth};
use crate::lines::Splitter;
use crate::state::{self, FilePos, FilesState, FINGERPRINT_LEN};
use crate::stream::deliver;
use crate::{LineMeta, LineSink, Position, SourceError, SourceOptions, SourceSpec, SourceStats};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, Metadata};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A rotated or deleted file is read until it has been quiet this long, because writers keep
/// writing to it until they reopen their log (logrotate's postrotate runs after the rename).
const RETIRE_QUIET: Duration = Duration::from_secs(5);

/// Reads per file per round (of up to the splitter's buffer each), so that one file with a
/// large backlog cannot starve the others nor delay the stop flag.
const READ_BUDGET: usize = 16;

/// Positions are saved at most this often while lines flow.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// An open file and where we are in it.
struct Open {
    file: File,
    dev: u64,
    ino: u64,
    split: Splitter,
    /// Fingerprint once it covers the full [`FINGERPRINT_LEN`] bytes (it cannot change then).
    fp: Option<(u64, u64)>,
}

impl Open {
    /// `(fp_len, fp)` of the file's head, as long as it is now (up to 256 bytes).
    fn fingerprint(&mut self) -> std::io::Result<(u64, u64)> {
        if let Some(fp) = self.fp {
            return Ok(fp);
        }
        let mut head = [0u8; FINGERPRINT_LEN as usize];
        let n = read_full_at(&self.file, &mut head, 0)?;
        let fp = (n as u64, state::fnv1a(&head[..n]));
        if n as u64 == FINGERPRINT_LEN {
            self.fp = Some(fp);
        }
        Ok(fp)
    }
}

/// A file no longer under its path, read until quiet.
struct Retired {
    open: Open,
    quiet_since: Instant,
}

/// One path being followed.
struct Tail {
    path: PathBuf,
    /// The path as text, for [`LineMeta::source`] and the state file.
    name: String,
    /// Given literally (kept while missing) rather than found by a glob (dropped when gone).
    literal: bool,
    /// Found by the initial scan: its first open starts at the saved position, else at the end
    /// (or start, with `from_start`). Files found later are read from their start.
    fresh: bool,
    cur: Option<Open>,
    retired: Vec<Retired>,
    /// Has had a file open: a different one under the path is a rotation.
    had_file: bool,
    /// The last open or read failed and was logged: do not log again until it works.
    failing: bool,
    /// The state last published (`None`: not yet).
    state: Option<InputState>,
}

/// What [`Tail::check`] needs besides the tail.
struct Ctx<'a> {
    opts: &'a SourceOptions,
    sink: &'a mut dyn LineSink,
    stats: &'a mut SourceStats,
    saved: &'a mut BTreeMap<String, FilePos>,
    /// Bumped whenever a position changes.
    dirty: &'a mut u64,
    health: Option<&'a SourceHealth>,
}

/// Reads from `pos` until `buf` is full or the file ends.
fn read_full_at(file: &File, buf: &mut [u8], pos: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], pos + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads `open` from its position, delivering lines, for at most `budget` reads (`None`: to
/// the end). Returns whether bytes were read and whether the budget ran out first.
fn read_open(
    open: &mut Open,
    name: &str,
    budget: Option<usize>,
    cx: &mut Ctx<'_>,
) -> std::io::Result<(bool, bool)> {
    let mut got = false;
    let mut reads = 0;
    loop {
        if budget.is_some_and(|b| reads >= b) {
            return Ok((got, true));
        }
        reads += 1;
        let pos = open.split.read_pos();
        let spare = open.split.spare();
        let n = loop {
            match open.file.read_at(spare, pos) {
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                r => break r?,
            }
        };
        if n == 0 {
            return Ok((got, false));
        }
        got = true;
        *cx.dirty += 1;
        open.split.filled(n);
        cx.stats.bytes += n as u64;
        let (sink, stats) = (&mut *cx.sink, &mut *cx.stats);
        open.split
            .drain(|p| deliver(sink, stats, &LineMeta::plain(name, p.offset), p));
    }
}

/// Delivers the unfinished last line of a file that will not grow any more.
fn flush_open(open: &mut Open, name: &str, cx: &mut Ctx<'_>) {
    let (sink, stats) = (&mut *cx.sink, &mut *cx.stats);
    open.split
        .flush(|p| deliver(sink, stats, &LineMeta::plain(name, p.offset), p));
}

/// `path` with `suffix` appended to its last component (`auth.log` → `auth.log.1`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The fingerprint of `file`'s first `len` bytes, `None` if it is shorter.
fn fingerprint_of(file: &File, len: u64) -> std::io::Result<Option<u64>> {
    let mut head = [0u8; FINGERPRINT_LEN as usize];
    let want = len.min(FINGERPRINT_LEN) as usize;
    let n = read_full_at(file, &mut head[..want], 0)?;
    Ok((n == want).then(|| state::fnv1a(&head[..n])))
}

impl Tail {
    fn new(path: PathBuf, literal: bool, fresh: bool) -> Self {
        Tail {
            name: path.to_string_lossy().into_owned(),
            path,
            literal,
            fresh,
            cur: None,
            retired: Vec::new(),
            had_file: false,
            failing: false,
            state: None,
        }
    }

    /// Publishes this file's state when it changed.
    fn set_state(&mut self, state: InputState, error: Option<String>, cx: &Ctx<'_>) {
        if self.state == Some(state) {
            return;
        }
        if state == InputState::Missing && !self.had_file {
            // Never seen (typically a typo or a service not installed): say so once.
            tracing::warn!(path = %self.path.display(), "log file missing; waiting for it to appear");
        }
        self.state = Some(state);
        if let Some(h) = cx.health {
            h.set(&self.name, state, error);
        }
    }

    /// Logs a problem with this file once per failure streak.
    fn fail(&mut self, what: &str, e: &std::io::Error, cx: &mut Ctx<'_>) {
        if !self.failing {
            self.failing = true;
            cx.stats.errors += 1;
            tracing::warn!(path = %self.path.display(), error = %e, "{what}");
        }
        self.set_state(InputState::Unreadable, Some(format!("{what}: {e}")), cx);
    }

    /// Brings this path up to date; returns whether a read budget ran out (more to read).
    fn check(&mut self, cx: &mut Ctx<'_>) -> bool {
        let mut busy = false;
        // Older data first: files rotated away.
        let now = Instant::now();
        let mut i = 0;
        while i < self.retired.len() {
            let r = &mut self.retired[i];
            let mut more = false;
            match read_open(&mut r.open, &self.name, Some(READ_BUDGET), cx) {
                Ok((got, m)) => {
                    more = m;
                    if got {
                        r.quiet_since = now;
                    }
                }
                Err(e) => {
                    tracing::debug!(path = %self.path.display(), error = %e, "rotated file unreadable; closed");
                    r.quiet_since = now.checked_sub(RETIRE_QUIET).unwrap_or(now);
                }
            }
            busy |= more;
            if !more && r.quiet_since.elapsed() >= RETIRE_QUIET {
                let mut r = self.retired.remove(i);
                flush_open(&mut r.open, &self.name, cx);
                continue;
            }
            i += 1;
        }

        let meta = match fs::metadata(&self.path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => {
                let e = std::io::Error::other("not a regular file");
                self.fail("cannot follow log file", &e, cx);
                return busy;
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // Renamed or deleted: finish it and wait for a new file under the path.
                if let Some(open) = self.cur.take() {
                    self.retire(open, cx);
                    *cx.dirty += 1;
                }
                self.failing = false;
                self.set_state(InputState::Missing, None, cx);
                return busy;
            }
            Err(e) => {
                self.fail("cannot stat log file", &e, cx);
                return busy;
            }
        };

        if let Some(open) = self
            .cur
            .take_if(|c| (c.dev, c.ino) != (meta.dev(), meta.ino()))
        {
            // Replaced (rename + create, delete + create).
            self.retire(open, cx);
            *cx.dirty += 1;
        }

        let just_opened = self.cur.is_none();
        if just_opened {
            let rotated = self.had_file;
            match self.open(cx) {
                Ok(open) => {
                    self.cur = Some(open);
                    self.failing = false;
                    *cx.dirty += 1;
                    let st = if rotated {
                        InputState::Rotated
                    } else {
                        InputState::Ok
                    };
                    self.set_state(st, None, cx);
                }
                Err(e) => {
                    self.fail("cannot open log file", &e, cx);
                    return busy;
                }
            }
        }
        let Some(cur) = self.cur.as_mut() else {
            return busy;
        };

        // Only for a file opened before the stat: a fresh position may be past a stale size.
        if !just_opened && meta.len() < cur.split.read_pos() {
            // copytruncate: start over. What was pending belonged to the old content.
            let (sink, stats) = (&mut *cx.sink, &mut *cx.stats);
            cur.split
                .flush(|p| deliver(sink, stats, &LineMeta::plain(&self.name, p.offset), p));
            cur.split.reset(0, false);
            cur.fp = None;
            cx.stats.truncations += 1;
            *cx.dirty += 1;
            tracing::info!(path = %self.path.display(), "log file truncated; reading from its start");
        }

        match read_open(cur, &self.name, Some(READ_BUDGET), cx) {
            Ok((got, more)) => {
                self.failing = false;
                if self.state != Some(InputState::Ok)
                    && (got || self.state != Some(InputState::Rotated))
                {
                    // Back to normal: readable again, or lines read since the rotation.
                    self.set_state(InputState::Ok, None, cx);
                }
                busy | more
            }
            Err(e) => {
                self.fail("cannot read log file", &e, cx);
                busy
            }
        }
    }

    /// Reads a file that left its path to its current end, then keeps it for late writes.
    fn retire(&mut self, mut open: Open, cx: &mut Ctx<'_>) {
        if let Err(e) = read_open(&mut open, &self.name, None, cx) {
            tracing::debug!(path = %self.path.display(), error = %e, "rotated file unreadable");
        }
        self.retired.push(Retired {
            open,
            quiet_since: Instant::now(),
        });
    }

    /// Opens the file now under the path, positioned where reading must start.
    fn open(&mut self, cx: &mut Ctx<'_>) -> std::io::Result<Open> {
        let file = File::open(&self.path)?;
        let meta = file.metadata()?;
        cx.stats.files_opened += 1;
        let mut open = Open {
            dev: meta.dev(),
            ino: meta.ino(),
            split: Splitter::new(cx.opts.max_line, 0),
            fp: None,
            file,
        };
        let saved = cx.saved.remove(&self.name);
        let (offset, skip) = if self.fresh {
            self.initial_position(&open, &meta, saved, cx)?
        } else {
            if self.had_file {
                cx.stats.rotations += 1;
                tracing::info!(path = %self.path.display(), "log file replaced; reading the new one from its start");
            }
            (0, false)
        };
        self.had_file = true;
        open.split.reset(offset, skip);
        Ok(open)
    }

    /// Where to start in a file found at startup: the saved position if it is the same file,
    /// else its end (or start, with `from_start`).
    fn initial_position(
        &mut self,
        open: &Open,
        meta: &Metadata,
        saved: Option<FilePos>,
        cx: &mut Ctx<'_>,
    ) -> std::io::Result<(u64, bool)> {
        if let Some(s) = saved {
            if (s.dev, s.ino) == (open.dev, open.ino) {
                let same = fingerprint_of(&open.file, s.fp_len)? == Some(s.fp);
                if same && meta.len() >= s.offset {
                    return Ok((s.offset, s.skip));
                }
                if meta.len() < s.offset {
                    // (Its head may be gone too: a shrunk file is a truncation either way.)
                    cx.stats.truncations += 1;
                    tracing::info!(path = %self.path.display(), "log file truncated while stopped; reading from its start");
                } else {
                    tracing::info!(path = %self.path.display(), "log file is a new file on a reused inode; reading from its start");
                }
                return Ok((0, false));
            }
            // Rotated while stopped: finish the old file if it is found at `path.1`.
            cx.stats.rotations += 1;
            self.read_rotated_remainder(&s, cx);
            tracing::info!(path = %self.path.display(), "log file rotated while stopped; reading the new one from its start");
            return Ok((0, false));
        }
        if cx.opts.from_start {
            return Ok((0, false));
        }
        let len = meta.len();
        let mut last = [0u8; 1];
        // Starting at the end inside an unfinished line: skip its rest rather than deliver a
        // fragment.
        let skip =
            len > 0 && read_full_at(&open.file, &mut last, len - 1)? == 1 && last[0] != b'\n';
        Ok((len, skip))
    }

    fn read_rotated_remainder(&mut self, s: &FilePos, cx: &mut Ctx<'_>) {
        let old = with_suffix(&self.path, ".1");
        let Ok(file) = File::open(&old) else { return };
        let Ok(meta) = file.metadata() else { return };
        if (meta.dev(), meta.ino()) != (s.dev, s.ino) || meta.len() < s.offset {
            return;
        }
        if !matches!(fingerprint_of(&file, s.fp_len), Ok(Some(fp)) if fp == s.fp) {
            return;
        }
        tracing::info!(path = %old.display(), "reading the rest of the rotated log file");
        let mut open = Open {
            file,
            dev: s.dev,
            ino: s.ino,
            split: Splitter::new(cx.opts.max_line, s.offset),
            fp: None,
        };
        open.split.reset(s.offset, s.skip);
        if let Err(e) = read_open(&mut open, &self.name, None, cx) {
            tracing::warn!(path = %old.display(), error = %e, "cannot read rotated log file");
        }
        flush_open(&mut open, &self.name, cx);
    }
}

/// Whether a pattern has glob syntax.
fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

/// The directory to watch for a pattern: the parent of a literal path, or the longest
/// glob-free leading directory of a glob.
fn pattern_dir(p: &str) -> PathBuf {
    let path = Path::new(p);
    let mut dir = PathBuf::new();
    let comps: Vec<Component<'_>> = path.components().collect();
    for (i, c) in comps.iter().enumerate() {
        if i + 1 == comps.len() || is_glob(&c.as_os_str().to_string_lossy()) {
            break;
        }
        dir.push(c);
    }
    if dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        dir
    }
}

fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// inotify wake-ups for the watched directories.
struct Watch {
    watcher: notify::RecommendedWatcher,
    /// Watched directory → its (dev, ino) when watched: a directory replaced since needs a new
    /// watch.
    dirs: HashMap<PathBuf, (u64, u64)>,
    rx: Receiver<()>,
    rescan: Arc<AtomicBool>,
}

impl Watch {
    fn new() -> Option<Self> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let rescan = Arc::new(AtomicBool::new(false));
        let flag = rescan.clone();
        let handler = move |res: notify::Result<notify::Event>| {
            use notify::event::{EventKind, ModifyKind};
            match res {
                Ok(ev) => match ev.kind {
                    // Reads and closes say nothing new.
                    EventKind::Access(_) => return,
                    EventKind::Modify(ModifyKind::Data(_)) => {}
                    EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Modify(ModifyKind::Name(_))
                    | EventKind::Any
                    | EventKind::Other => flag.store(true, Ordering::Relaxed),
                    EventKind::Modify(_) => {}
                },
                // Queue overflow and the like: look at everything again.
                Err(_) => flag.store(true, Ordering::Relaxed),
            }
            // A full channel already holds a wake-up: nothing is lost.
            let _ = tx.try_send(());
        };
        match notify::recommended_watcher(handler) {
            Ok(watcher) => Some(Watch {
                watcher,
                dirs: HashMap::new(),
                rx,
                rescan,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable; polling log files");
                None
            }
        }
    }

    /// Watches exactly `wanted` (those that exist); re-watches replaced directories.
    fn update(&mut self, wanted: &HashSet<PathBuf>) {
        use notify::{RecursiveMode, Watcher};
        let mut drop_dirs = Vec::new();
        for (dir, id) in &self.dirs {
            let now = fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()));
            if !wanted.contains(dir) || now != Some(*id) {
                drop_dirs.push(dir.clone());
            }
        }
        for dir in drop_dirs {
            let _ = self.watcher.unwatch(&dir);
            self.dirs.remove(&dir);
        }
        for dir in wanted {
            if self.dirs.contains_key(dir) {
                continue;
            }
            let Ok(m) = fs::metadata(dir) else { continue };
            match self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.dirs.insert(dir.clone(), (m.dev(), m.ino()));
                }
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "cannot watch directory; polling it")
                }
            }
        }
    }

    /// Waits for a change or `timeout`; returns whether a rescan was asked for.
    fn wait(&self, timeout: Duration) -> bool {
        match self.rx.recv_timeout(timeout) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {}
            // The watcher's thread is gone: fall back to sleeping.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(timeout),
        }
        self.rescan.swap(false, Ordering::Relaxed)
    }
}

/// The file source.
struct Tailer<'a> {
    opts: &'a SourceOptions,
    /// (pattern, is a glob)
    patterns: Vec<(String, bool)>,
    tails: Vec<Tail>,
    known: HashSet<PathBuf>,
    saved: BTreeMap<String, FilePos>,
    stats: SourceStats,
    /// Generation of the positions: bumped whenever one changes.
    dirty: u64,
    /// Generation last saved to the state file.
    saved_gen: u64,
    /// Generation last handed to [`LineSink::checkpoint`].
    ck_gen: u64,
    state_path: Option<PathBuf>,
    last_save: Option<Instant>,
    save_failing: bool,
    health: Option<&'a SourceHealth>,
}

impl<'a> Tailer<'a> {
    /// Expands the patterns; tails created by the first call are `fresh`.
    fn rescan(&mut self, fresh: bool) {
        let mut matched = HashSet::new();
        for (pat, glob) in &self.patterns {
            if !*glob {
                let p = PathBuf::from(pat);
                if self.known.insert(p.clone()) {
                    self.tails.push(Tail::new(p, true, fresh));
                }
                continue;
            }
            let Ok(paths) = glob::glob(pat) else { continue };
            for entry in paths {
                let p = match entry {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::debug!(error = %e, "glob: unreadable path");
                        continue;
                    }
                };
                if !fs::metadata(&p).is_ok_and(|m| m.is_file()) {
                    continue;
                }
                if self.known.insert(p.clone()) {
                    self.tails.push(Tail::new(p.clone(), false, fresh));
                    self.dirty += 1;
                }
                matched.insert(p);
            }
        }
        // Glob matches that are gone and finished with are forgotten.
        let before = self.tails.len();
        let health = self.health;
        self.tails.retain(|t| {
            let keep =
                t.literal || t.cur.is_some() || !t.retired.is_empty() || matched.contains(&t.path);
            if let (false, Some(h)) = (keep, health) {
                h.remove(&t.name);
            }
            keep
        });
        if self.tails.len() != before {
            self.known = self.tails.iter().map(|t| t.path.clone()).collect();
            self.dirty += 1;
        }
    }

    fn wanted_dirs(&self) -> HashSet<PathBuf> {
        let mut dirs: HashSet<PathBuf> =
            self.patterns.iter().map(|(p, _)| pattern_dir(p)).collect();
        for t in &self.tails {
            dirs.insert(parent_dir(&t.path));
            // A symlinked file is written in its target's directory.
            if fs::symlink_metadata(&t.path).is_ok_and(|m| m.file_type().is_symlink()) {
                if let Ok(real) = fs::canonicalize(&t.path) {
                    dirs.insert(parent_dir(&real));
                }
            }
        }
        dirs
    }

    /// Checks every path once; returns whether some file has more to read right away.
    fn check_all(&mut self, sink: &mut dyn LineSink, stop: &AtomicBool) -> bool {
        let mut busy = false;
        let mut cx = Ctx {
            opts: self.opts,
            sink,
            stats: &mut self.stats,
            saved: &mut self.saved,
            dirty: &mut self.dirty,
            health: self.health,
        };
        for t in &mut self.tails {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            busy |= t.check(&mut cx);
        }
        busy
    }

    /// Ends the startup phase: later files are read from their start, and saved positions of
    /// files not found are dropped.
    fn end_initial(&mut self) {
        for t in &mut self.tails {
            t.fresh = false;
        }
        self.saved.clear();
    }

    /// The positions of every open file: everything delivered so far.
    fn snapshot(&mut self) -> FilesState {
        let mut st = FilesState::default();
        for t in &mut self.tails {
            let Some(cur) = &mut t.cur else { continue };
            let (fp_len, fp) = match cur.fingerprint() {
                Ok(fp) => fp,
                Err(e) => {
                    tracing::debug!(path = %t.path.display(), error = %e, "cannot fingerprint log file");
                    continue;
                }
            };
            st.files.insert(
                t.name.clone(),
                FilePos {
                    dev: cur.dev,
                    ino: cur.ino,
                    offset: cur.split.consumed(),
                    skip: cur.split.skipping(),
                    fp_len,
                    fp,
                },
            );
        }
        st
    }

    /// Hands the sink the current positions if they moved since the last checkpoint.
    fn checkpoint(&mut self, sink: &mut dyn LineSink) {
        if self.dirty == self.ck_gen {
            return;
        }
        let gen = self.dirty;
        let mut st = self.snapshot();
        sink.checkpoint(&Position(state::to_doc(&mut st)));
        self.ck_gen = gen;
    }

    /// Saves positions if due (or `force`d, on stop) and something changed.
    fn maybe_save(&mut self, force: bool) {
        let Some(path) = self.state_path.clone() else {
            return;
        };
        if self.dirty == self.saved_gen
            || (!force && self.last_save.is_some_and(|t| t.elapsed() < SAVE_EVERY))
        {
            return;
        }
        let gen = self.dirty;
        let mut st = self.snapshot();
        self.last_save = Some(Instant::now());
        match state::save(&path, &mut st) {
            Ok(()) => {
                self.saved_gen = gen;
                self.save_failing = false;
            }
            Err(e) => {
                if !self.save_failing {
                    self.save_failing = true;
                    self.stats.errors += 1;
                    tracing::warn!(error = %e, "cannot save file positions");
                }
            }
        }
    }
}

pub(crate) fn run(
    spec: &SourceSpec,
    patterns: &[String],
    opts: &SourceOptions,
    sink: &mut dyn LineSink,
    stop: &AtomicBool,
    health: Option<&SourceHealth>,
) -> Result<SourceStats, SourceError> {
    let state_path = opts.state_dir.as_deref().and_then(|d| spec.state_file(d));
    let saved = match &opts.resume {
        Some(pos) => state::parse::<FilesState>(&pos.0)
            .map(|s| s.files)
            .unwrap_or_default(),
        None => state_path
            .as_deref()
            .map(|p| state::load::<FilesState>(p).files)
            .unwrap_or_default(),
    };
    let mut t = Tailer {
        opts,
        patterns: patterns.iter().map(|p| (p.clone(), is_glob(p))).collect(),
        tails: Vec::new(),
        known: HashSet::new(),
        saved,
        stats: SourceStats::default(),
        // Positions taken at startup (the end of each file) must be saved even if nothing is
        // read, or lines written while stopped would be skipped on the next start.
        dirty: 1,
        saved_gen: 0,
        ck_gen: 0,
        state_path,
        last_save: None,
        save_failing: false,
        health,
    };
    let mut watch = if opts.follow { Watch::new() } else { None };
    t.rescan(true);
    if let Some(w) = &mut watch {
        w.update(&t.wanted_dirs());
    }
    let mut last_rescan = Instant::now();
    let mut first = true;
    loop {
        let busy = t.check_all(sink, stop);
        if first {
            t.end_initial();
            first = false;
        }
        t.checkpoint(sink);
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut rescan = false;
        if !busy {
            sink.idle();
            t.maybe_save(false);
            if !opts.follow {
                break;
            }
            // Wake on a change, at the latest when the next rescan is due.
            let timeout = opts.poll.saturating_sub(last_rescan.elapsed());
            rescan = match &watch {
                Some(w) => w.wait(timeout),
                None => {
                    std::thread::sleep(timeout);
                    false
                }
            };
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
        if rescan || last_rescan.elapsed() >= opts.poll {
            t.rescan(false);
            if let Some(w) = &mut watch {
                w.update(&t.wanted_dirs());
            }
            last_rescan = Instant::now();
        }
    }
    t.checkpoint(sink);
    t.maybe_save(true);
    Ok(t.stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_dirs_of_patterns() {
        assert_eq!(pattern_dir("/var/log/auth.log"), PathBuf::from("/var/log"));
        assert_eq!(
            pattern_dir("/var/log/nginx/*.log"),
            PathBuf::from("/var/log/nginx")
        );
        assert_eq!(
            pattern_dir("/var/log/*/access.log"),
            PathBuf::from("/var/log")
        );
        assert_eq!(pattern_dir("auth.log"), PathBuf::from("."));
        assert_eq!(parent_dir(Path::new("auth.log")), PathBuf::from("."));
        assert!(is_glob("a/*.log") && !is_glob("/var/log/syslog"));
        assert_eq!(
            with_suffix(Path::new("/a/b.log"), ".1"),
            PathBuf::from("/a/b.log.1")
        );
    }
}
