//! `palisade analyze`: a one-shot pass over web access logs (nginx/apache, common or
//! combined format, plain or gzip-compressed rotations) that counts, per client address, what
//! it asked for and how much of it was hostile.
//!
//! # What counts as suspicious
//!
//! Every line is classified by the built-in `nginx_access` filter (the same rules the daemon
//! uses, normal mode). A line is a **suspicious hit** when:
//!
//! 1. the filter reports it under one of the *strong* rules `probe` (traversal, injection,
//!    exploit fragments), `scanner_path` (secrets, VCS metadata, admin tools that are not
//!    served), `http_auth` (401, or 403 with a user), `bad_bot` (attack tools, harvesters) or
//!    `bad_request` (400/444, garbage on the HTTP port); these always count; or
//! 2. the filter (in its aggressive mode) reports it under `not_found` (a 404 that is not a
//!    file browsers request on their own) or as a `bad_request` 408 (request timeout), **and**
//!    its address is *error-heavy* over the whole analysis: at least
//!    [`Options::error_ratio`] (default 50 %) of its requests got a 4xx answer, or its busiest
//!    minute reached [`Options::rate_limit`] requests (default 120) while at least a fifth of
//!    its requests got a 4xx. A visitor's stray 404 among normal browsing never counts;
//!    a directory brute force ("404 storm") always does.
//!
//! An address with at least [`Options::threshold`] suspicious hits is proposed for blocking,
//! unless it is allowlisted. Each log's threat level follows from its own suspicious hits
//! ([`Levels`]).
//!
//! # Cost
//!
//! Lines are byte slices of reused chunk buffers; a benign line allocates nothing (the filter
//! only builds an event for lines its rules match). Chunks of whole lines are parsed and
//! classified on [`Options::threads`] threads while the reading thread counts the finished
//! chunks in input order, so the result is the same for any number of threads; at most
//! `6 × threads + 4` chunks of 1 MiB are in flight. Per-address state is a compact fixed-size
//! record; once [`Options::max_ips`] addresses are tracked, new addresses are only admitted
//! with a suspicious line (up to twice the bound), and the requests of the rest are counted in
//! an aggregate "untracked" bucket.

use ahash::AHashMap;
use palisade_core::{Allowlist, Timestamp};
use palisade_filter::time::TimeParser;
use palisade_filter::web::ACCESS_RULES;
use palisade_filter::{Filter, LineCtx, Outcome};
use serde::Serialize;
use std::collections::HashMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Index of the `not_found` rule in [`ACCESS_RULES`].
const NOT_FOUND: usize = 5;
/// Index of the `bad_request` rule.
const BAD_REQUEST: usize = 4;
/// Marks a weak line in the recorded candidates.
const WEAK: u8 = 0x80;
/// Number of rules.
const RULES: usize = 6;
/// Entries of the verdict cache (a power of two).
const CACHE: usize = 1 << 16;
/// Read size.
const CHUNK: usize = 1 << 20;
/// Longest line examined (longer lines are cut).
const MAX_LINE: usize = 64 * 1024;

/// Problems reading the logs.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// A log could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The GeoIP database could not be opened.
    #[error(transparent)]
    Geo(#[from] palisade_geo::GeoError),
}

/// Threat level thresholds, in suspicious hits: below `yellow` is green, below `red` yellow,
/// below `critical` red, from `critical` on critical.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Levels {
    /// First yellow count (default 100).
    pub yellow: u64,
    /// First red count (default 500).
    pub red: u64,
    /// First critical count (default 1000).
    pub critical: u64,
}

impl Default for Levels {
    fn default() -> Self {
        Levels {
            yellow: 100,
            red: 500,
            critical: 1000,
        }
    }
}

/// How threatening a log looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// Below the yellow threshold.
    Green,
    /// Yellow.
    Yellow,
    /// Red.
    Red,
    /// Critical.
    Critical,
}

impl Level {
    /// Upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Green => "GREEN",
            Level::Yellow => "YELLOW",
            Level::Red => "RED",
            Level::Critical => "CRITICAL",
        }
    }
}

impl Levels {
    /// The level of `hits` suspicious hits.
    pub fn of(&self, hits: u64) -> Level {
        if hits >= self.critical {
            Level::Critical
        } else if hits >= self.red {
            Level::Red
        } else if hits >= self.yellow {
            Level::Yellow
        } else {
            Level::Green
        }
    }
}

/// Settings of one analysis.
#[derive(Clone, Debug)]
pub struct Options {
    /// Only lines at or after this time.
    pub since: Option<Timestamp>,
    /// Only lines before this time.
    pub until: Option<Timestamp>,
    /// Suspicious hits from which an address is proposed for blocking.
    pub threshold: u64,
    /// Threat level thresholds.
    pub levels: Levels,
    /// Never proposed for blocking.
    pub allowlist: Allowlist,
    /// Addresses tracked individually before new benign ones are aggregated.
    pub max_ips: usize,
    /// Share of 4xx answers from which an address's 404s count as suspicious.
    pub error_ratio: f64,
    /// Requests in one minute that, with at least 20 % 4xx answers, make 404s suspicious.
    pub rate_limit: u32,
    /// Keep the line numbers of suspicious lines (for [`Analysis::flagged`]).
    pub record_lines: bool,
    /// Time zone of timestamps without an offset.
    pub tz: jiff::tz::TimeZone,
    /// Threads that parse and classify lines (the calling thread reads and counts). `1`
    /// classifies on the calling thread; the result is the same either way.
    pub threads: usize,
    /// Stop reading files at this instant ([`Analyzer::feed_file`] then fails with
    /// `TimedOut`): bounds a remote analysis in time.
    pub deadline: Option<std::time::Instant>,
}

/// Classifying threads by default: one per CPU, at most 8.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8)
}

impl Default for Options {
    fn default() -> Self {
        Options {
            since: None,
            until: None,
            threshold: 100,
            levels: Levels::default(),
            allowlist: default_allowlist(),
            max_ips: 500_000,
            error_ratio: 0.5,
            rate_limit: 120,
            record_lines: false,
            tz: jiff::tz::TimeZone::UTC,
            threads: default_threads(),
            deadline: None,
        }
    }
}

/// The allowlist used without a configuration: loopback (`127.0.0.0/8`, `::1`).
pub fn default_allowlist() -> Allowlist {
    Allowlist::new(
        ["127.0.0.0/8", "::1/128"]
            .iter()
            .map(|s| s.parse().expect("static network")),
    )
}

/// Per-address counters (kept small: one of these per distinct client).
#[derive(Clone, Copy, Debug, Default)]
struct IpStat {
    total: u32,
    rules: [u32; RULES],
    client_err: u32,
    /// Weak lines: `not_found`, and 408 `bad_request`.
    weak: u32,
    first: i64,
    last: i64,
    minute: i64,
    in_minute: u32,
    peak_rpm: u32,
}

/// Counts of one input file.
#[derive(Debug, Default)]
struct FileStat {
    path: String,
    lines: u64,
    parsed: u64,
    skipped_window: u64,
    unparsed: u64,
    strong: u64,
    /// Weak lines per tracked address (decided at the end).
    not_found: HashMap<u32, u32>,
    untracked_hits: u64,
}

/// Requests of addresses that were not tracked individually (beyond [`Options::max_ips`]).
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Untracked {
    /// Requests.
    pub requests: u64,
    /// Of which matched a strong rule.
    pub strong_hits: u64,
}

/// One address in the result.
#[derive(Clone, Debug, Serialize)]
pub struct IpReport {
    /// The client.
    pub ip: IpAddr,
    /// Requests in the analysed window.
    pub requests: u64,
    /// Suspicious hits (see the module documentation).
    pub suspicious: u64,
    /// Rule name → lines (all rules, `not_found` included whether or not it counted).
    pub rules: Vec<(&'static str, u64)>,
    /// Requests answered with a 4xx status.
    pub client_errors: u64,
    /// Busiest minute.
    pub peak_per_minute: u32,
    /// First request.
    pub first_seen: Option<Timestamp>,
    /// Last request.
    pub last_seen: Option<Timestamp>,
    /// ISO country code, when a GeoIP database is available.
    pub country: Option<String>,
    /// Has at least the threshold of suspicious hits and is not allowlisted.
    pub proposed: bool,
    /// In the allowlist.
    pub allowlisted: bool,
}

/// One input file in the result.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    /// As given.
    pub path: String,
    /// Lines read.
    pub lines: u64,
    /// Lines in the time window with a client address.
    pub requests: u64,
    /// Lines outside the time window.
    pub outside_window: u64,
    /// Lines that are not access-log records.
    pub unparsed: u64,
    /// Suspicious hits.
    pub suspicious: u64,
    /// Threat level of this log.
    pub level: Level,
}

/// A suspicious line, for scoring (`--flagged-lines`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flagged {
    /// 1-based line number, counted across all inputs in the order given.
    pub line: u64,
    /// The address it is attributed to.
    pub ip: IpAddr,
    /// The rule.
    pub rule: &'static str,
}

/// Requests per hour, for the timeline chart.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct HourBucket {
    /// Start of the hour.
    pub hour: Timestamp,
    /// Requests.
    pub requests: u64,
    /// Lines matched by any rule.
    pub rule_hits: u64,
}

/// The result of an analysis.
#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    /// Inputs.
    pub files: Vec<FileReport>,
    /// Addresses, most suspicious first (then most requests).
    pub ips: Vec<IpReport>,
    /// Total lines read.
    pub lines: u64,
    /// Requests in the window.
    pub requests: u64,
    /// Suspicious hits in all inputs.
    pub suspicious: u64,
    /// Overall threat level.
    pub level: Level,
    /// Distinct addresses tracked.
    pub distinct_ips: u64,
    /// Requests of addresses beyond the tracking bound.
    pub untracked: Untracked,
    /// Suspicious hits per rule.
    pub rule_totals: Vec<(&'static str, u64)>,
    /// Hourly timeline.
    pub timeline: Vec<HourBucket>,
    /// The time window asked for (`--since`), if any.
    pub since: Option<Timestamp>,
    /// The end of the time window asked for (`--until`), if any.
    pub until: Option<Timestamp>,
    /// Settings used.
    pub threshold: u64,
    /// Threat thresholds used.
    pub levels: Levels,
    /// Wall-clock seconds spent.
    pub seconds: f64,
    /// Suspicious lines (only with [`Options::record_lines`]).
    #[serde(skip)]
    pub flagged: Vec<Flagged>,
}

impl Analysis {
    /// The addresses proposed for blocking.
    pub fn proposed(&self) -> impl Iterator<Item = &IpReport> {
        self.ips.iter().filter(|i| i.proposed)
    }
}

/// Streams lines into per-address counters. Feed files (or readers), then [`Analyzer::finish`].
///
/// Work is split in two: a [`Classifier`] turns a line into a [`Rec`] (parsing, time, the
/// filter's verdict: nearly all the cost), and the counters take the records in input order
/// (so first-seen order, the tracking bound, busiest minutes and line numbers do not depend
/// on threads). With [`Options::threads`] > 1, chunks of whole lines go to that many
/// classifying threads and their records are counted in chunk order.
pub struct Analyzer {
    opts: Options,
    classifier: Classifier,
    index: AHashMap<IpAddr, u32>,
    ips: Vec<IpAddr>,
    stats: Vec<IpStat>,
    files: Vec<FileStat>,
    untracked: Untracked,
    hours: AHashMap<i64, [u64; 2]>,
    /// The hour of the last line and its counters' place in `hours` (most lines repeat it).
    last_hour: Option<(i64, [u64; 2])>,
    candidates: Vec<(u64, u32, u8)>,
    line_no: u64,
    started: std::time::Instant,
}

/// Parses and classifies lines (one per classifying thread).
struct Classifier {
    filter: Box<dyn Filter>,
    events: Vec<palisade_core::Event>,
    time: TimeParser,
    last_time: ([u8; 32], usize, Option<Timestamp>),
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    hasher: ahash::RandomState,
    cache: Vec<u64>,
    ctx: LineCtx<'static>,
}

/// What the counters need of one access line in the time window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rec {
    ip: IpAddr,
    /// Seconds, or [`NO_TIME`].
    secs: i64,
    /// 0-based index of the line in its chunk.
    idx: u32,
    /// Matched rule, or [`NO_RULE`].
    rule: u8,
    /// Answered with a 4xx status.
    client_err: bool,
    /// A weak line (`not_found`, or a 408 `bad_request`).
    weak: bool,
}

/// [`Rec::secs`] of a line without a readable time.
const NO_TIME: i64 = i64::MIN;
/// [`Rec::rule`] of a line no rule matched.
const NO_RULE: u8 = u8::MAX;

/// One line's outcome.
enum LineOut {
    /// Not an access-log record.
    Unparsed,
    /// Outside the time window.
    Outside,
    /// Counted.
    Rec(Rec),
}

/// The records of one chunk of lines.
#[derive(Default)]
struct Batch {
    lines: u64,
    unparsed: u64,
    outside: u64,
    recs: Vec<Rec>,
}

/// The fields of an access line that the counters need.
struct Head<'a> {
    client: &'a [u8],
    time: Option<&'a [u8]>,
    status: u32,
    /// Everything the filter's verdict can depend on besides the client address and time:
    /// ident and user, the request and status, and referer plus user agent (the size is left
    /// out so identical requests share one cache entry).
    key: [&'a [u8]; 3],
}

/// Parses a dotted-quad IPv4 address by hand (the common case, without UTF-8 checks);
/// anything else goes to the general parser. Same acceptance as the standard library: four
/// decimal octets of at most three digits, no leading zeros, each at most 255; addresses no
/// client can send from are refused like in [`palisade_core::parse_ip_bytes`].
#[inline]
fn parse_client(b: &[u8]) -> Option<IpAddr> {
    let mut oct = [0u8; 4];
    let mut n = 0;
    let mut val: u32 = 0;
    let mut digits = 0;
    for &c in b {
        match c {
            b'0'..=b'9' => {
                if digits > 0 && val == 0 {
                    return palisade_filter::scan::ip(b);
                }
                val = val * 10 + u32::from(c - b'0');
                digits += 1;
                if digits > 3 {
                    return palisade_filter::scan::ip(b);
                }
            }
            b'.' if digits > 0 && n < 3 && val <= 255 => {
                oct[n] = val as u8;
                n += 1;
                val = 0;
                digits = 0;
            }
            _ => return palisade_filter::scan::ip(b),
        }
    }
    if n == 3 && digits > 0 && val <= 255 {
        oct[3] = val as u8;
        // Like the filters: no client sends from 0/8, broadcast or multicast.
        Some(IpAddr::from(oct)).filter(|ip| palisade_core::is_bannable(*ip))
    } else {
        palisade_filter::scan::ip(b)
    }
}

/// Splits `client ident user [time] "request" status …` without allocating.
fn head(line: &[u8]) -> Option<Head<'_>> {
    let sp = memchr::memchr(b' ', line)?;
    let client = &line[..sp];
    let rest = &line[sp..];
    let q = memchr::memchr(b'"', rest)?;
    let before = &rest[..q];
    let lb = memchr::memrchr(b'[', before);
    let time = lb.and_then(|lb| {
        let t = &before[lb + 1..];
        memchr::memchr(b']', t).map(|rb| &t[..rb])
    });
    let user_part = &before[..lb.unwrap_or(before.len())];
    // The request, up to its closing quote (a backslash-escaped quote does not close it).
    let req = &rest[q + 1..];
    let mut from = 0;
    let close = loop {
        let i = from + memchr::memchr(b'"', &req[from..])?;
        let bs = req[..i].iter().rev().take_while(|&&c| c == b'\\').count();
        if bs % 2 == 0 {
            break i;
        }
        from = i + 1;
    };
    let after = req.get(close + 1..)?;
    let st = after.strip_prefix(b" ")?.get(..3)?;
    let status = palisade_filter::scan::digits_n(st, 3)?;
    let req_status = &rest[q..q + 1 + close + 1 + 4];
    // After the status: ` SIZE "REFERER" "UA"`; skip the size.
    let tail = &after[4..];
    let tail = match tail.strip_prefix(b" ") {
        Some(t) => &t[memchr::memchr(b' ', t).unwrap_or(t.len())..],
        None => tail,
    };
    Some(Head {
        client,
        time,
        status,
        key: [user_part, req_status, tail],
    })
}

/// Counts compressed (or raw) bytes read, for progress.
struct Counting<R> {
    inner: R,
    n: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n.set(self.n.get() + n as u64);
        Ok(n)
    }
}

/// Whether `path` looks gzip-compressed (by its magic bytes, whatever its name).
/// A reader that fails with `TimedOut` once `until` has passed.
struct Deadline<R> {
    inner: R,
    until: Option<std::time::Instant>,
}

impl<R: Read> Read for Deadline<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.until.is_some_and(|u| std::time::Instant::now() >= u) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "analysis time limit reached",
            ));
        }
        self.inner.read(buf)
    }
}

fn is_gzip(path: &Path) -> std::io::Result<bool> {
    let mut f = std::fs::File::open(path)?;
    let mut m = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        let n = f.read(&mut m[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got == 2 && m == [0x1f, 0x8b])
}

/// Cuts a reader into chunks of whole lines (the last chunk may end without a newline).
/// A line longer than [`MAX_LINE`] keeps its first [`MAX_LINE`] bytes; the rest is skipped
/// here or cut by [`Classifier::chunk`].
struct Chunker<R> {
    r: R,
    /// The unfinished last line of the previous chunk (at most [`MAX_LINE`] bytes).
    carry: Vec<u8>,
    /// Inside an overlong line whose head is in `carry`: skip up to the next newline.
    skipping: bool,
    eof: bool,
    read_total: u64,
    last_report: u64,
}

impl<R: Read> Chunker<R> {
    fn new(r: R) -> Self {
        Chunker {
            r,
            carry: Vec::new(),
            skipping: false,
            eof: false,
            read_total: 0,
            last_report: 0,
        }
    }

    /// Fills `slot` with the next chunk; false at the end of the input.
    fn next(&mut self, slot: &mut Slot, progress: &mut dyn FnMut(u64)) -> std::io::Result<bool> {
        loop {
            if self.eof && self.carry.is_empty() {
                return Ok(false);
            }
            let buf = &mut slot.buf;
            let mut filled = self.carry.len();
            buf[..filled].copy_from_slice(&self.carry);
            self.carry.clear();
            while filled < CHUNK && !self.eof {
                let n = match self.r.read(&mut buf[filled..]) {
                    Ok(0) => {
                        self.eof = true;
                        progress(self.read_total);
                        break;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                self.read_total += n as u64;
                if self.read_total - self.last_report >= 4 << 20 {
                    self.last_report = self.read_total;
                    progress(self.read_total);
                }
                if self.skipping {
                    // Drop the rest of the overlong line; its newline ends the head.
                    if let Some(i) = memchr::memchr(b'\n', &buf[filled..filled + n]) {
                        buf.copy_within(filled + i..filled + n, filled);
                        filled += n - i;
                        self.skipping = false;
                    }
                } else {
                    filled += n;
                }
            }
            let cut = if self.eof {
                filled
            } else {
                memchr::memrchr(b'\n', &buf[..filled]).map_or(0, |i| i + 1)
            };
            let rest = &buf[cut..filled];
            if rest.len() > MAX_LINE {
                self.carry.extend_from_slice(&rest[..MAX_LINE]);
                self.skipping = true;
            } else {
                self.carry.extend_from_slice(rest);
            }
            if cut > 0 {
                slot.len = cut;
                return Ok(true);
            }
        }
    }
}

impl Classifier {
    fn new(opts: &Options) -> Self {
        let bopts = palisade_filter::BuiltinOptions {
            // Aggressive: 404s and 408s become events too; they are weighed per address below.
            mode: palisade_filter::Mode::Aggressive,
            tz: opts.tz.clone(),
        };
        let filter = palisade_filter::build_builtin("nginx_access", &bopts)
            .expect("nginx_access is a built-in filter");
        let now = opts
            .until
            .unwrap_or_else(|| Timestamp::from_jiff(jiff::Timestamp::now()));
        Classifier {
            filter,
            events: Vec::with_capacity(4),
            time: TimeParser::new(opts.tz.clone()),
            last_time: ([0; 32], 0, None),
            since: opts.since,
            until: opts.until,
            hasher: ahash::RandomState::new(),
            cache: vec![0; CACHE],
            ctx: LineCtx {
                now,
                source_time: None,
                journal: None,
            },
        }
    }

    /// Classifies every line of `chunk` (lines end with `\n`; the last one may not) into
    /// `out`, which is cleared first.
    fn chunk(&mut self, chunk: &[u8], out: &mut Batch) {
        out.lines = 0;
        out.unparsed = 0;
        out.outside = 0;
        out.recs.clear();
        let mut pos = 0;
        while pos < chunk.len() {
            let end = memchr::memchr(b'\n', &chunk[pos..]).map_or(chunk.len(), |i| pos + i);
            let line = &chunk[pos..end];
            let idx = out.lines as u32;
            out.lines += 1;
            match self.line(&line[..line.len().min(MAX_LINE)], idx) {
                LineOut::Unparsed => out.unparsed += 1,
                LineOut::Outside => out.outside += 1,
                LineOut::Rec(r) => out.recs.push(r),
            }
            pos = end + 1;
        }
    }

    /// Classifies one line (without its newline).
    fn line(&mut self, line: &[u8], idx: u32) -> LineOut {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(h) = head(line) else {
            return LineOut::Unparsed;
        };
        let Some(ip) = parse_client(h.client) else {
            return LineOut::Unparsed;
        };
        let t = h.time.and_then(|tb| self.parse_time(tb));
        if self.since.is_some() || self.until.is_some() {
            let inside = t.is_some_and(|t| {
                self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
            });
            if !inside {
                return LineOut::Outside;
            }
        }
        // Classification by the built-in filter (allocates only for matching lines), through
        // a direct-mapped cache of verdicts: most lines repeat a request, status, referer and
        // user agent already seen (assets, popular pages, a scanner's fixed user agent).
        let key = {
            use std::hash::{BuildHasher, Hasher};
            let mut hs = self.hasher.build_hasher();
            for part in h.key {
                hs.write(part);
                hs.write_u8(0xff);
            }
            hs.finish() | 0xF
        };
        let slot_c = (key >> 4) as usize & (CACHE - 1);
        let cached = self.cache[slot_c];
        let rule = if cached | 0xF == key {
            match (cached & 0xF) as usize {
                r if r < RULES => Some(r),
                _ => None,
            }
        } else {
            let r = match self.filter.process(line, &self.ctx, &mut self.events) {
                Outcome::Matched => {
                    let r = self
                        .events
                        .first()
                        .and_then(|e| ACCESS_RULES.iter().position(|n| *n == &*e.rule));
                    self.events.clear();
                    r
                }
                _ => None,
            };
            self.cache[slot_c] = (key & !0xF) | r.map_or(0xF, |r| r as u64);
            r
        };
        let weak = rule.is_some_and(|r| r == NOT_FOUND || (r == BAD_REQUEST && h.status == 408));
        LineOut::Rec(Rec {
            ip,
            secs: t.map_or(NO_TIME, |t| t.secs()),
            idx,
            rule: rule.map_or(NO_RULE, |r| r as u8),
            client_err: (400..500).contains(&h.status),
            weak,
        })
    }

    fn parse_time(&mut self, tb: &[u8]) -> Option<Timestamp> {
        let (cache, len, val) = &self.last_time;
        if tb.len() <= 32 && *len == tb.len() && &cache[..*len] == tb {
            return *val;
        }
        let v = self.time.parse_clf(tb).map(|x| x.0);
        if tb.len() <= 32 {
            self.last_time.0[..tb.len()].copy_from_slice(tb);
            self.last_time.1 = tb.len();
            self.last_time.2 = v;
        }
        v
    }
}

/// Raises its flag when dropped by a panicking thread.
struct PanicFlag<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for PanicFlag<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// Finished chunks waiting for their turn to be counted.
struct InOrder {
    waiting: std::collections::BTreeMap<u64, Slot>,
    counted: u64,
}

/// A chunk buffer and the records classified from it, passed between the reading thread and
/// a classifying thread and reused.
struct Slot {
    buf: Vec<u8>,
    len: usize,
    batch: Batch,
}

impl Analyzer {
    /// A new analysis with `opts`.
    pub fn new(opts: Options) -> Self {
        Analyzer {
            classifier: Classifier::new(&opts),
            opts,
            index: AHashMap::new(),
            ips: Vec::new(),
            stats: Vec::new(),
            files: Vec::new(),
            untracked: Untracked::default(),
            hours: AHashMap::new(),
            last_hour: None,
            candidates: Vec::new(),
            line_no: 0,
            started: std::time::Instant::now(),
        }
    }

    /// Reads one file (gzip-compressed or plain, detected from its content). `progress` is
    /// told the bytes of the file read so far (compressed bytes for gzip).
    pub fn feed_file(
        &mut self,
        path: &Path,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), AnalyzeError> {
        let io = |source| AnalyzeError::Io {
            path: path.to_path_buf(),
            source,
        };
        let gz = is_gzip(path).map_err(io)?;
        let f = std::fs::File::open(path).map_err(io)?;
        let counter = std::rc::Rc::new(std::cell::Cell::new(0));
        let counting = Counting {
            inner: Deadline {
                inner: f,
                until: self.opts.deadline,
            },
            n: counter.clone(),
        };
        let name = path.display().to_string();
        let mut report = |_: u64| progress(counter.get());
        if gz {
            let r = flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(
                1 << 16,
                counting,
            ));
            self.feed_reader(&name, r, &mut report).map_err(io)
        } else {
            self.feed_reader(&name, counting, &mut report).map_err(io)
        }
    }

    /// Reads lines from any reader, as one input called `name`. Lines are cut to 64 KiB.
    pub fn feed_reader(
        &mut self,
        name: &str,
        r: impl Read,
        progress: &mut dyn FnMut(u64),
    ) -> std::io::Result<()> {
        self.files.push(FileStat {
            path: name.to_string(),
            ..Default::default()
        });
        if self.opts.threads <= 1 {
            let mut batch = Batch::default();
            let mut slot = Slot {
                buf: vec![0u8; CHUNK + MAX_LINE],
                len: 0,
                batch: Batch::default(),
            };
            let mut chunks = Chunker::new(r);
            while chunks.next(&mut slot, progress)? {
                self.classifier.chunk(&slot.buf[..slot.len], &mut batch);
                self.count_batch(&batch);
            }
            return Ok(());
        }
        self.feed_parallel(r, progress)
    }

    /// [`Analyzer::feed_reader`] with classifying threads; the calling thread reads and counts.
    fn feed_parallel(
        &mut self,
        r: impl Read,
        progress: &mut dyn FnMut(u64),
    ) -> std::io::Result<()> {
        let threads = self.opts.threads;
        // Chunks in flight (being filled, queued, classified or waiting to be counted): enough
        // queued work that the classifying threads keep busy while the reading thread waits
        // for a CPU on a loaded machine (about 20 MiB with 2 threads).
        let max_slots = threads * 6 + 4;
        let (work_tx, work_rx) = crossbeam_channel::bounded::<(u64, Slot)>(max_slots);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<(u64, Slot)>(max_slots);
        let opts = self.opts.clone();
        // Set by a classifying thread that panics, so that the reading thread stops waiting
        // for its chunk (the panic then surfaces when the scope ends).
        let failed = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            for i in 0..threads {
                let work_rx = work_rx.clone();
                let done_tx = done_tx.clone();
                let mut c = Classifier::new(&opts);
                let failed = &failed;
                std::thread::Builder::new()
                    .name(format!("analyze-{i}"))
                    .spawn_scoped(scope, move || {
                        let _flag = PanicFlag(failed);
                        for (seq, mut slot) in work_rx {
                            let Slot { buf, len, batch } = &mut slot;
                            c.chunk(&buf[..*len], batch);
                            if done_tx.send((seq, slot)).is_err() {
                                break;
                            }
                        }
                    })
                    .expect("spawning a thread");
            }
            drop(done_tx);
            let mut free: Vec<Slot> = Vec::new();
            let mut made = 0;
            let mut order = InOrder {
                waiting: Default::default(),
                counted: 0,
            };
            let mut sent = 0u64;
            let mut chunks = Chunker::new(r);
            // Counts the finished chunks that are next in order; `block` waits for one first.
            let settle = |me: &mut Self, order: &mut InOrder, free: &mut Vec<Slot>, block: bool| {
                if block {
                    loop {
                        match done_rx.recv_timeout(std::time::Duration::from_millis(200)) {
                            Ok((seq, slot)) => {
                                order.waiting.insert(seq, slot);
                                break;
                            }
                            Err(crossbeam_channel::RecvTimeoutError::Timeout)
                                if !failed.load(std::sync::atomic::Ordering::SeqCst) => {}
                            Err(_) => return false,
                        }
                    }
                }
                while let Ok((seq, slot)) = done_rx.try_recv() {
                    order.waiting.insert(seq, slot);
                }
                while let Some(slot) = order.waiting.remove(&order.counted) {
                    me.count_batch(&slot.batch);
                    order.counted += 1;
                    free.push(slot);
                }
                true
            };
            let result = loop {
                let mut slot = match free.pop() {
                    Some(s) => s,
                    None if made < max_slots => {
                        made += 1;
                        Slot {
                            buf: vec![0u8; CHUNK + MAX_LINE],
                            len: 0,
                            batch: Batch::default(),
                        }
                    }
                    None => {
                        if !settle(self, &mut order, &mut free, true) {
                            break Err(std::io::Error::other("a classifying thread stopped"));
                        }
                        continue;
                    }
                };
                match chunks.next(&mut slot, progress) {
                    Ok(true) => {
                        if work_tx.send((sent, slot)).is_err() {
                            break Err(std::io::Error::other("a classifying thread stopped"));
                        }
                        sent += 1;
                        settle(self, &mut order, &mut free, false);
                    }
                    Ok(false) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            drop(work_tx);
            while order.counted < sent {
                if !settle(self, &mut order, &mut free, true) {
                    return Err(std::io::Error::other("a classifying thread stopped"));
                }
            }
            result
        })
    }

    /// Examines one line (without its newline).
    pub fn line(&mut self, line: &[u8]) {
        if self.files.is_empty() {
            self.files.push(FileStat::default());
        }
        let out = self.classifier.line(&line[..line.len().min(MAX_LINE)], 0);
        let batch = match out {
            LineOut::Unparsed => Batch {
                lines: 1,
                unparsed: 1,
                ..Default::default()
            },
            LineOut::Outside => Batch {
                lines: 1,
                outside: 1,
                ..Default::default()
            },
            LineOut::Rec(r) => Batch {
                lines: 1,
                recs: vec![r],
                ..Default::default()
            },
        };
        self.count_batch(&batch);
    }

    /// Counts the records of one chunk (chunks in input order).
    fn count_batch(&mut self, b: &Batch) {
        let fi = self.files.len() - 1;
        let f = &mut self.files[fi];
        f.lines += b.lines;
        f.unparsed += b.unparsed;
        f.skipped_window += b.outside;
        f.parsed += b.recs.len() as u64;
        let base = self.line_no;
        for r in &b.recs {
            self.count(fi, base + u64::from(r.idx) + 1, r);
        }
        self.line_no += b.lines;
        self.flush_hour();
    }

    fn flush_hour(&mut self) {
        if let Some((h, v)) = self.last_hour.take() {
            let b = self.hours.entry(h).or_default();
            b[0] += v[0];
            b[1] += v[1];
        }
    }

    /// Counts one record; `line_no` is its line number across all inputs.
    fn count(&mut self, fi: usize, line_no: u64, r: &Rec) {
        let rule = (r.rule != NO_RULE).then_some(usize::from(r.rule));
        let has_t = r.secs != NO_TIME;
        let secs = r.secs;
        if has_t {
            let h = secs.div_euclid(3600);
            match &mut self.last_hour {
                Some((lh, v)) if *lh == h => {
                    v[0] += 1;
                    v[1] += u64::from(rule.is_some());
                }
                _ => {
                    self.flush_hour();
                    self.last_hour = Some((h, [1, u64::from(rule.is_some())]));
                }
            }
        }
        let slot = match self.index.get(&r.ip) {
            Some(&s) => Some(s),
            None => {
                let n = self.stats.len();
                let admit = n < self.opts.max_ips
                    || (rule.is_some() && n < self.opts.max_ips.saturating_mul(2));
                if admit {
                    let s = n as u32;
                    self.index.insert(r.ip, s);
                    self.ips.push(r.ip);
                    self.stats.push(IpStat {
                        first: i64::MAX,
                        last: i64::MIN,
                        minute: i64::MIN,
                        ..Default::default()
                    });
                    Some(s)
                } else {
                    None
                }
            }
        };
        let weak = r.weak;
        let Some(slot) = slot else {
            self.untracked.requests += 1;
            if rule.is_some() && !weak {
                self.untracked.strong_hits += 1;
                self.files[fi].untracked_hits += 1;
            }
            return;
        };
        let st = &mut self.stats[slot as usize];
        st.total = st.total.saturating_add(1);
        if r.client_err {
            st.client_err = st.client_err.saturating_add(1);
        }
        if has_t {
            st.first = st.first.min(secs);
            st.last = st.last.max(secs);
            let minute = secs.div_euclid(60);
            if minute == st.minute {
                st.in_minute += 1;
            } else if minute > st.minute {
                st.minute = minute;
                st.in_minute = 1;
            }
            st.peak_rpm = st.peak_rpm.max(st.in_minute);
        }
        if let Some(rl) = rule {
            st.rules[rl] = st.rules[rl].saturating_add(1);
            let f = &mut self.files[fi];
            if weak {
                st.weak = st.weak.saturating_add(1);
                *f.not_found.entry(slot).or_default() += 1;
            } else {
                f.strong += 1;
            }
            if self.opts.record_lines {
                self.candidates
                    .push((line_no, slot, rl as u8 | if weak { WEAK } else { 0 }));
            }
        }
    }

    fn heavy(&self, s: &IpStat) -> bool {
        let total = f64::from(s.total.max(1));
        let ratio = f64::from(s.client_err) / total;
        ratio >= self.opts.error_ratio || (s.peak_rpm >= self.opts.rate_limit && ratio >= 0.2)
    }

    fn suspicious(&self, s: &IpStat) -> u64 {
        let all: u64 = s.rules.iter().map(|&n| u64::from(n)).sum();
        if self.heavy(s) {
            all
        } else {
            all - u64::from(s.weak)
        }
    }

    /// Finishes: decides the 404s, levels and proposals. `geo` adds countries.
    pub fn finish(self, geo: Option<&crate::geo::GeoDb>) -> Analysis {
        let heavy: Vec<bool> = self.stats.iter().map(|s| self.heavy(s)).collect();
        let levels = self.opts.levels;
        let files: Vec<FileReport> = self
            .files
            .iter()
            .map(|f| {
                let nf: u64 = f
                    .not_found
                    .iter()
                    .filter(|(s, _)| heavy[**s as usize])
                    .map(|(_, n)| u64::from(*n))
                    .sum();
                let suspicious = f.strong + nf;
                FileReport {
                    path: f.path.clone(),
                    lines: f.lines,
                    requests: f.parsed,
                    outside_window: f.skipped_window,
                    unparsed: f.unparsed,
                    suspicious,
                    level: levels.of(suspicious),
                }
            })
            .collect();
        let mut rule_totals = [0u64; RULES];
        let mut ips = Vec::new();
        let mut requests = 0u64;
        for (i, s) in self.stats.iter().enumerate() {
            requests += u64::from(s.total);
            let susp = self.suspicious(s);
            for (t, n) in rule_totals.iter_mut().zip(s.rules) {
                *t += u64::from(n);
            }
            if !heavy[i] {
                // Weak lines that did not count: all 404s, the rest are 408s.
                let nf = u64::from(s.rules[NOT_FOUND]);
                rule_totals[NOT_FOUND] -= nf;
                rule_totals[BAD_REQUEST] -= u64::from(s.weak) - nf;
            }
            let ip = self.ips[i];
            let allowlisted = self.opts.allowlist.contains(ip);
            let ts = |v: i64| (v != i64::MAX && v != i64::MIN).then(|| Timestamp::from_secs(v));
            ips.push(IpReport {
                ip,
                requests: u64::from(s.total),
                suspicious: susp,
                rules: ACCESS_RULES
                    .iter()
                    .zip(s.rules.iter())
                    .filter(|(_, n)| **n > 0)
                    .map(|(r, n)| (*r, u64::from(*n)))
                    .collect(),
                client_errors: u64::from(s.client_err),
                peak_per_minute: s.peak_rpm,
                first_seen: ts(s.first),
                last_seen: ts(s.last),
                country: None,
                proposed: susp >= self.opts.threshold && susp > 0 && !allowlisted,
                allowlisted,
            });
        }
        ips.sort_by(|a, b| {
            b.suspicious
                .cmp(&a.suspicious)
                .then(b.requests.cmp(&a.requests))
                .then(a.ip.cmp(&b.ip))
        });
        if let Some(g) = geo {
            for r in ips.iter_mut().filter(|r| r.suspicious > 0) {
                r.country = g.country(r.ip);
            }
        }
        let suspicious = files.iter().map(|f| f.suspicious).sum::<u64>()
            + self.files.iter().map(|f| f.untracked_hits).sum::<u64>();
        let mut flagged = Vec::new();
        if self.opts.record_lines {
            for &(line, slot, r) in &self.candidates {
                if r & WEAK == 0 || heavy[slot as usize] {
                    flagged.push(Flagged {
                        line,
                        ip: self.ips[slot as usize],
                        rule: ACCESS_RULES[usize::from(r & !WEAK)],
                    });
                }
            }
        }
        let mut timeline: Vec<HourBucket> = self
            .hours
            .iter()
            .map(|(h, v)| HourBucket {
                hour: Timestamp::from_secs(h * 3600),
                requests: v[0],
                rule_hits: v[1],
            })
            .collect();
        timeline.sort_by_key(|b| b.hour);
        Analysis {
            lines: self.files.iter().map(|f| f.lines).sum(),
            requests: requests + self.untracked.requests,
            suspicious,
            level: levels.of(suspicious),
            distinct_ips: self.stats.len() as u64,
            untracked: self.untracked,
            rule_totals: ACCESS_RULES
                .iter()
                .zip(rule_totals)
                .map(|(r, n)| (*r, n))
                .collect(),
            timeline,
            since: self.opts.since,
            until: self.opts.until,
            threshold: self.opts.threshold,
            levels,
            seconds: self.started.elapsed().as_secs_f64(),
            flagged,
            files,
            ips,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_fields() {
        let h = head(
            br#"1.2.3.4 - bob [03/Mar/2025:00:00:00 +0000] "GET /a\"b HTTP/1.1" 404 5 "-" "x""#,
        )
        .unwrap();
        assert_eq!(h.client, b"1.2.3.4");
        assert_eq!(h.time.unwrap(), b"03/Mar/2025:00:00:00 +0000");
        assert_eq!(h.status, 404);
        assert!(head(b"garbage").is_none());
        assert_eq!(h.key[0], b" - bob ");
        assert_eq!(h.key[1], br#""GET /a\"b HTTP/1.1" 404"#);
        assert_eq!(h.key[2], br#" "-" "x""#);
    }

    #[test]
    fn client_parsing_matches_std() {
        for s in [
            "1.2.3.4",
            "255.255.255.255",
            "0.0.0.0",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "1..2.3",
            "1.2.3.4 ",
            "::1",
            "::ffff:1.2.3.4",
            "2001:db8::1",
            "1234.1.1.1",
            "",
            ".1.2.3",
            "1.2.3.",
            "0.0.0.00",
        ] {
            assert_eq!(
                parse_client(s.as_bytes()),
                palisade_filter::scan::ip(s.as_bytes()),
                "{s}"
            );
        }
    }

    #[test]
    fn levels() {
        let l = Levels::default();
        assert_eq!(l.of(99), Level::Green);
        assert_eq!(l.of(100), Level::Yellow);
        assert_eq!(l.of(500), Level::Red);
        assert_eq!(l.of(1000), Level::Critical);
    }
}
