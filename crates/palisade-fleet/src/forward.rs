//! The forwarder (`[fleet] role = "forwarder"`): a tiny host that reads the files of its
//! `[[jail]]` sections and ships their raw lines; the server runs the jails' filters and the
//! detection ([`crate::forward_ingest`]). The fleet bans that come back are applied by the
//! agent connection this rides on ([`crate::agent`]), through the daemon's responders with
//! origin `fleet`.
//!
//! Streams and marks: each (jail, file) is a stream whose lines are numbered from 1. A source
//! thread per jail (the file tailer of `palisade-source`, rotation handling included) hands
//! over lines and, after each round of reads, a position that covers them
//! ([`LineSink::checkpoint`]). Lines stay in memory until the server acknowledges their
//! stream's mark (at most [`MAX_PENDING_LINES`] lines / [`MAX_PENDING_BYTES`] bytes: beyond,
//! the source waits, so a long outage slows reading down and loses nothing). A position is
//! saved (the forwarder store's `fleet_state`, key `forward/JAIL`, with every file's line
//! number at that point) once every line it covers is acknowledged; after a crash or a
//! restart the source resumes from it and numbers the lines of each file from the saved
//! number on, so the lines re-read get the numbers they had, and the server, which keeps a
//! mark per stream stored with the events, skips what it already has: nothing is lost or
//! stored twice. A new forwarder state (new `forward_epoch`) starts the server's marks over.
//!
//! Lines are sent as text: invalid UTF-8 is replaced (U+FFFD) and counted, and a line is cut
//! to [`MAX_FORWARD_LINE`] bytes.

use palisade_proto::fleet::{
    AgentMsg, ServerMsg, CAP_FORWARD, MAX_BATCH, MAX_FORWARD_FILE, MAX_FORWARD_LINE, MAX_MESSAGE,
    V_CHECKSUM,
};
use palisade_source::{LineMeta, LineSink, Position, SourceOptions, SourceSpec};
use palisade_store::fleet::FleetStore;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Most lines read and not yet acknowledged (the sources wait beyond).
pub const MAX_PENDING_LINES: usize = 50_000;
/// Most bytes of lines read and not yet acknowledged.
pub const MAX_PENDING_BYTES: usize = 16 << 20;
/// Bytes of lines in one `lines` message (JSON-escaped, upper bound), well under
/// [`MAX_MESSAGE`].
const BATCH_BYTES: usize = MAX_MESSAGE - (128 << 10);

/// One jail the forwarder reads.
#[derive(Clone, Debug)]
pub struct ForwardJail {
    /// Jail name (the server's jail of that name filters the lines).
    pub name: String,
    /// File paths or globs (resolved).
    pub patterns: Vec<String>,
}

/// Forwarder settings.
#[derive(Clone, Debug)]
pub struct ForwardOptions {
    /// The jails.
    pub jails: Vec<ForwardJail>,
    /// Store URL (saved positions, epoch).
    pub store_url: String,
    /// Read existing content when no position is saved (`palisade run --from-start`).
    pub from_start: bool,
    /// Longest line read (`[general] max_line`); lines are then cut to [`MAX_FORWARD_LINE`].
    pub max_line: usize,
}

/// Saved per jail: the position and every file's line number at that point.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Saved {
    pos: String,
    seqs: BTreeMap<String, u64>,
}

struct Checkpoint {
    pos: Position,
    seqs: BTreeMap<String, u64>,
}

struct Stream {
    /// Last line number given.
    next: u64,
    /// Acknowledged by the server.
    acked: u64,
    /// Sent on this connection.
    sent: u64,
    /// Lines above `acked`, in order.
    pending: VecDeque<(u64, String)>,
}

struct JailState {
    name: String,
    /// Line numbers of the last saved checkpoint (new streams start there).
    base: BTreeMap<String, u64>,
    checkpoints: VecDeque<Checkpoint>,
}

struct Inner {
    jails: Vec<JailState>,
    streams: BTreeMap<(usize, String), Stream>,
    pending_lines: usize,
    pending_bytes: usize,
    lossy: u64,
    cut: u64,
    store: Box<dyn FleetStore>,
}

struct Shared {
    inner: Mutex<Inner>,
    /// Signalled when acknowledged lines free room.
    room: Condvar,
    /// Signalled when lines arrive.
    wake: Arc<tokio::sync::Notify>,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn state_key(jail: &str) -> String {
    format!("forward/{jail}")
}

impl Inner {
    /// Saves the newest checkpoint of `jail` whose lines are all acknowledged.
    fn persist_covered(&mut self, jail: usize) {
        let mut done: Option<Checkpoint> = None;
        while let Some(c) = self.jails[jail].checkpoints.front() {
            // A file with no line read since the start is where the saved position left it.
            let base = &self.jails[jail].base;
            let covered = c.seqs.iter().all(|(f, &n)| {
                self.streams
                    .get(&(jail, f.clone()))
                    .map(|s| s.acked)
                    .or_else(|| base.get(f).copied())
                    .is_some_and(|acked| acked >= n)
            });
            if !covered {
                break;
            }
            done = self.jails[jail].checkpoints.pop_front();
        }
        let Some(c) = done else { return };
        let saved = Saved {
            pos: c.pos.0,
            seqs: c.seqs,
        };
        let text = serde_json::to_string(&saved).expect("positions serialise");
        let key = state_key(&self.jails[jail].name);
        if let Err(e) = self.store.set_state(&key, &text) {
            tracing::warn!(jail = %self.jails[jail].name, error = %e, "forwarder: saving the position");
        }
    }
}

/// The forwarder: source threads and the connection side, which the agent connection
/// drives ([`crate::agent::spawn_with`]).
pub struct Forwarder {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
    epoch: u64,
    names: Vec<String>,
    /// The server takes forwarded lines on this connection.
    enabled: bool,
    inflight: u32,
    credit: u32,
    /// Round-robin position over the streams.
    next_stream: Option<(usize, String)>,
}

impl Forwarder {
    /// Opens the store, reads the saved positions and starts one source thread per jail.
    pub fn start(opts: ForwardOptions) -> Result<Forwarder, crate::FleetError> {
        let mut store = palisade_store::fleet::open(&opts.store_url)?;
        let epoch = match store
            .state("forward_epoch")?
            .and_then(|s| s.parse::<u64>().ok())
        {
            Some(e) => e,
            None => {
                let e = crate::ident::random_u63();
                store.set_state("forward_epoch", &e.to_string())?;
                e
            }
        };
        let mut jails = Vec::new();
        let mut starts = Vec::new();
        for j in &opts.jails {
            let saved: Option<Saved> = store
                .state(&state_key(&j.name))?
                .and_then(|t| match serde_json::from_str(&t) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(jail = %j.name, error = %e, "forwarder: unreadable saved position; starting over");
                        None
                    }
                });
            let (resume, base) = match saved {
                Some(s) => (Some(Position(s.pos)), s.seqs),
                None => (None, BTreeMap::new()),
            };
            let spec = SourceSpec::Files {
                patterns: j.patterns.clone(),
            };
            spec.validate()
                .map_err(|e| crate::FleetError::Usage(format!("jail {:?}: {e}", j.name)))?;
            let source_opts = SourceOptions {
                // With a saved position, a file it does not know appeared since: read whole.
                from_start: opts.from_start || resume.is_some(),
                max_line: opts.max_line.clamp(1, palisade_source::MAX_MAX_LINE),
                resume,
                ..SourceOptions::default()
            };
            jails.push(JailState {
                name: j.name.clone(),
                base,
                checkpoints: VecDeque::new(),
            });
            starts.push((spec, source_opts));
        }
        let names = jails.iter().map(|j| j.name.clone()).collect();
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                jails,
                streams: BTreeMap::new(),
                pending_lines: 0,
                pending_bytes: 0,
                lossy: 0,
                cut: 0,
                store,
            }),
            room: Condvar::new(),
            wake: Arc::new(tokio::sync::Notify::new()),
            stop: AtomicBool::new(false),
        });
        let mut threads = Vec::new();
        for (i, (spec, so)) in starts.into_iter().enumerate() {
            let sh = shared.clone();
            let t = std::thread::Builder::new()
                .name(format!("forward-{i}"))
                .spawn(move || {
                    let mut sink = Sink {
                        shared: sh.clone(),
                        jail: i,
                        broken: false,
                    };
                    let name = sh.lock().jails[i].name.clone();
                    tracing::info!(jail = %name, "forwarder: reading");
                    if let Err(e) = palisade_source::run(&spec, &so, &mut sink, &sh.stop) {
                        tracing::error!(jail = %name, error = %e, "forwarder: the source stopped; this jail's lines are no longer forwarded");
                    }
                })
                .map_err(|e| crate::FleetError::Io(e.to_string()))?;
            threads.push(t);
        }
        Ok(Forwarder {
            shared,
            threads,
            epoch,
            names,
            enabled: false,
            inflight: 0,
            credit: crate::CREDIT,
            next_stream: None,
        })
    }

    /// Woken when lines arrive (for the connection's select loop).
    pub fn waker(&self) -> Arc<tokio::sync::Notify> {
        self.shared.wake.clone()
    }

    /// The capability the hello announces.
    pub fn capability(&self) -> String {
        CAP_FORWARD.to_string()
    }

    /// A new connection's `welcome`: the messages to send first (the declaration), or none
    /// when the server does not take forwarded lines.
    pub fn on_welcome(&mut self, v: u16, capabilities: &[String]) -> Vec<AgentMsg> {
        self.enabled = v >= V_CHECKSUM && capabilities.iter().any(|c| c == CAP_FORWARD);
        self.inflight = 0;
        self.credit = crate::CREDIT;
        self.next_stream = None;
        if !self.enabled {
            tracing::error!("forwarder: the server does not take forwarded lines (it lacks the `forward` capability: upgrade it); lines are kept and sent once it does");
            return Vec::new();
        }
        // Everything not acknowledged is sent again (the server skips what it has).
        for s in self.shared.lock().streams.values_mut() {
            s.sent = s.acked;
        }
        vec![AgentMsg::Forward {
            epoch: self.epoch,
            jails: self.names.clone(),
        }]
    }

    /// The next `lines` batch, within credit, if any line waits.
    pub fn next_batch(&mut self) -> Option<AgentMsg> {
        if !self.enabled || self.inflight >= self.credit {
            return None;
        }
        let mut g = self.shared.lock();
        // Round robin: the first stream after the last one served that has unsent lines.
        let after = self.next_stream.take();
        let waiting = |s: &Stream| s.pending.back().is_some_and(|l| l.0 > s.sent);
        let candidates = g.streams.iter().filter(|(_, s)| waiting(s)).map(|(k, _)| k);
        let key = match &after {
            Some(a) => candidates
                .clone()
                .find(|k| *k > a)
                .or_else(|| candidates.clone().next()),
            None => candidates.clone().next(),
        }
        .cloned()?;
        let jail = g.jails[key.0].name.clone();
        let s = g.streams.get_mut(&key).expect("found above");
        let mut lines = Vec::new();
        let mut bytes = 0usize;
        let first = s.sent + 1;
        for (n, l) in s.pending.iter().filter(|l| l.0 > s.sent) {
            let cost = json_cost(l);
            if lines.len() == MAX_BATCH || (!lines.is_empty() && bytes + cost > BATCH_BYTES) {
                break;
            }
            debug_assert_eq!(*n, first + lines.len() as u64);
            bytes += cost;
            lines.push(l.clone());
        }
        let last = first + lines.len() as u64 - 1;
        s.sent = last;
        drop(g);
        self.inflight += 1;
        self.next_stream = Some(key.clone());
        Some(AgentMsg::Lines {
            jail,
            file: key.1,
            epoch: self.epoch,
            first_seq: first,
            last_seq: last,
            lines,
        })
    }

    /// A server message for the forwarder (`lines_ack`); whether it was one.
    pub fn on_server(&mut self, m: &ServerMsg) -> bool {
        let ServerMsg::LinesAck {
            jail,
            file,
            seq,
            credit,
        } = m
        else {
            return false;
        };
        self.inflight = self.inflight.saturating_sub(1);
        self.credit = (*credit).clamp(1, 64);
        let mut g = self.shared.lock();
        let Some(j) = g.jails.iter().position(|x| &x.name == jail) else {
            return true;
        };
        let inner = &mut *g;
        if let Some(s) = inner.streams.get_mut(&(j, file.clone())) {
            // Never past what was read (a mark from elsewhere cannot skip lines).
            let seq = (*seq).min(s.next);
            if seq > s.acked {
                s.acked = seq;
                s.sent = s.sent.max(seq);
                while s.pending.front().is_some_and(|l| l.0 <= seq) {
                    let (_, l) = s.pending.pop_front().expect("checked");
                    inner.pending_lines -= 1;
                    inner.pending_bytes -= l.len();
                }
            }
        }
        inner.persist_covered(j);
        drop(g);
        self.shared.room.notify_all();
        true
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.room.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Upper bound of a line's size as a JSON string.
fn json_cost(l: &str) -> usize {
    l.len()
        + 8
        + l.bytes()
            .filter(|b| *b < 0x20 || *b == b'"' || *b == b'\\')
            .count()
            * 5
}

/// Cuts `s` to at most `max` bytes on a character boundary.
fn cut(mut s: String, max: usize) -> (String, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    s.truncate(i);
    (s, true)
}

/// Counts of rare events, logged at 1, 10, 100… .
fn rare(n: u64) -> bool {
    let mut p = 1;
    while p < n {
        p *= 10;
    }
    p == n
}

struct Sink {
    shared: Arc<Shared>,
    jail: usize,
    /// A line was given up (stop while waiting for room): no later position may be saved.
    broken: bool,
}

impl LineSink for Sink {
    fn line(&mut self, line: &[u8], meta: &LineMeta<'_>) {
        if self.broken {
            return;
        }
        let (text, lossy) = match std::str::from_utf8(line) {
            Ok(s) => (s.to_string(), false),
            Err(_) => (String::from_utf8_lossy(line).into_owned(), true),
        };
        let (text, was_cut) = cut(text, MAX_FORWARD_LINE);
        let file = if meta.source.len() > MAX_FORWARD_FILE {
            cut(meta.source.to_string(), MAX_FORWARD_FILE).0
        } else {
            meta.source.to_string()
        };
        let mut g = self.shared.lock();
        while g.pending_lines >= MAX_PENDING_LINES || g.pending_bytes >= MAX_PENDING_BYTES {
            if self.shared.stop.load(Ordering::Relaxed) {
                self.broken = true;
                return;
            }
            g = self
                .shared
                .room
                .wait_timeout(g, Duration::from_millis(200))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if lossy {
            g.lossy += 1;
            if rare(g.lossy) {
                tracing::warn!(
                    count = g.lossy,
                    file = %file,
                    "forwarder: lines that are not valid UTF-8 are sent with U+FFFD"
                );
            }
        }
        if was_cut {
            g.cut += 1;
            if rare(g.cut) {
                tracing::warn!(count = g.cut, file = %file, "forwarder: lines over {MAX_FORWARD_LINE} bytes are cut");
            }
        }
        let inner = &mut *g;
        let jail = self.jail;
        let base = inner.jails[jail].base.get(&file).copied().unwrap_or(0);
        let s = inner.streams.entry((jail, file)).or_insert_with(|| Stream {
            next: base,
            acked: base,
            sent: base,
            pending: VecDeque::new(),
        });
        s.next += 1;
        inner.pending_lines += 1;
        inner.pending_bytes += text.len();
        s.pending.push_back((s.next, text));
        drop(g);
        self.shared.wake.notify_one();
    }

    fn checkpoint(&mut self, pos: &Position) {
        if self.broken {
            return;
        }
        let jail = self.jail;
        let mut g = self.shared.lock();
        let inner = &mut *g;
        let mut seqs = inner.jails[jail].base.clone();
        for ((_, f), s) in inner
            .streams
            .range((jail, String::new())..)
            .take_while(|((j, _), _)| *j == jail)
        {
            seqs.insert(f.clone(), s.next);
        }
        let cps = &mut inner.jails[jail].checkpoints;
        match cps.back_mut() {
            Some(last) if last.seqs == seqs => last.pos = pos.clone(),
            _ => cps.push_back(Checkpoint {
                pos: pos.clone(),
                seqs,
            }),
        }
        inner.persist_covered(jail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn start(dir: &std::path::Path, file: &std::path::Path) -> Forwarder {
        Forwarder::start(ForwardOptions {
            jails: vec![ForwardJail {
                name: "sshd".into(),
                patterns: vec![file.display().to_string()],
            }],
            store_url: format!("sqlite:{}", dir.join("f.db").display()),
            from_start: true,
            max_line: 64 * 1024,
        })
        .unwrap()
    }

    /// The next batch, waiting for the source to read (fails after 10 s).
    fn batch(f: &mut Forwarder) -> (String, u64, u64, Vec<String>) {
        let t = std::time::Instant::now();
        loop {
            if let Some(AgentMsg::Lines {
                file,
                first_seq,
                last_seq,
                lines,
                ..
            }) = f.next_batch()
            {
                return (file, first_seq, last_seq, lines);
            }
            assert!(t.elapsed() < Duration::from_secs(10), "no batch");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ack(f: &mut Forwarder, file: &str, seq: u64) {
        assert!(f.on_server(&ServerMsg::LinesAck {
            jail: "sshd".into(),
            file: file.into(),
            seq,
            credit: 4,
        }));
    }

    fn append(p: &std::path::Path, b: &[u8]) {
        let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
        f.write_all(b).unwrap();
    }

    /// Lines are numbered per file; only acknowledged lines let the position be saved; after
    /// a restart, lines not acknowledged come again with the numbers they had.
    #[test]
    fn numbering_acks_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("auth.log");
        std::fs::write(&log, b"a\nb\nc\n\xff\xfed\n").unwrap();
        let mut long = vec![b'x'; MAX_FORWARD_LINE + 10];
        long.push(b'\n');
        append(&log, &long);

        let mut f = start(dir.path(), &log);
        // A server without the capability gets nothing.
        assert!(f.on_welcome(2, &[]).is_empty());
        assert!(f.next_batch().is_none());
        let first = f.on_welcome(2, &[CAP_FORWARD.to_string()]);
        let epoch = match &first[..] {
            [AgentMsg::Forward { epoch, jails }] => {
                assert_eq!(jails, &["sshd".to_string()]);
                *epoch
            }
            other => panic!("{other:?}"),
        };
        let (file, a, b, lines) = batch(&mut f);
        assert_eq!(file, log.display().to_string());
        assert_eq!((a, b), (1, 5));
        assert_eq!(&lines[..3], ["a", "b", "c"]);
        assert_eq!(lines[3], "\u{fffd}\u{fffd}d", "invalid UTF-8 replaced");
        assert_eq!(lines[4].len(), MAX_FORWARD_LINE, "cut");
        // Only part acknowledged: nothing past the start is saved.
        ack(&mut f, &file, 3);
        drop(f);

        let mut f = start(dir.path(), &log);
        let again = f.on_welcome(2, &[CAP_FORWARD.to_string()]);
        assert!(matches!(&again[..], [AgentMsg::Forward { epoch: e, .. }] if *e == epoch));
        let (_, a, b, again) = batch(&mut f);
        assert_eq!((a, b), (1, 5), "the same numbers again");
        assert_eq!(again, lines);
        ack(&mut f, &file, 5);
        append(&log, b"f\ng\n");
        let (_, a, b, more) = batch(&mut f);
        assert_eq!(
            ((a, b), &more[..]),
            ((6, 7), &["f".to_string(), "g".to_string()][..])
        );
        // Credit: 6..=7 is in flight; CREDIT - 1 more batches may go, then none.
        for i in 0..crate::CREDIT - 1 {
            append(&log, format!("h{i}\n").as_bytes());
            batch(&mut f);
        }
        append(&log, b"z\n");
        std::thread::sleep(Duration::from_millis(300));
        assert!(f.next_batch().is_none(), "over the credit");
        ack(&mut f, &file, 7);
        let (_, a, _, z) = batch(&mut f);
        assert_eq!(
            (a, &z[..]),
            (7 + u64::from(crate::CREDIT), &["z".to_string()][..])
        );
        drop(f);

        // 1..=7 acknowledged and saved: the restart starts at 8.
        let mut f = start(dir.path(), &log);
        f.on_welcome(2, &[CAP_FORWARD.to_string()]);
        let (_, a, _, rest) = batch(&mut f);
        assert_eq!((a, rest[0].as_str()), (8, "h0"));
    }
}
