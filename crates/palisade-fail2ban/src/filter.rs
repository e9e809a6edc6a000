//! A loaded fail2ban filter ([`FilterDef`]) and its stateful line processor ([`Matcher`]),
//! following fail2ban's `Filter.processLine` / `findFailure`: date detection and removal,
//! `prefregex` with `<F-CONTENT>`, failregexes, ignoreregexes, the `maxlines` buffer with
//! `<SKIPLINES>`, and the `<F-MLFID>` connection cache with `<F-NOFAIL>`, `<F-MLFFORGET>` and
//! `<F-MLFGAINED>`.

use crate::config::{ConfigSet, ResolvedOptions};
use crate::date::{DateDetector, TimeCx};
use crate::engine::{Memo, Pattern, RuleSet, Slots, StartCache};
use crate::error::LoadError;
use crate::ini::OMap;
use crate::name::{Name, KNOWN};
use crate::tags;
use palisade_core::Timestamp;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How to load a filter file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Caller options, as fail2ban's `filter = name[key=value, …]` or `--filter-option`:
    /// `mode`, `logtype`, `publickey`, or any `[Definition]`/`[Init]` option.
    pub init: Vec<(String, String)>,
    /// Directories where an `[INCLUDES]` file that does not exist at its relative path is
    /// looked up by file name (e.g. `/etc/fail2ban/filter.d` for fail2ban's test filters).
    pub include_fallback: Vec<PathBuf>,
    /// The year "now" is in, for the `%ExY` year range (`None`: the current year).
    pub now_year: Option<i16>,
}

/// One compiled regex of a filter with the indices of the groups fail2ban gives meaning to.
#[derive(Debug)]
pub(crate) struct Rx {
    pat: Pattern,
    /// `(name, group)` for every named group.
    named: Vec<(Name, usize)>,
    /// `alt_*` groups: (group name, merged name), sorted by group name.
    alt: Vec<(Name, Name)>,
    skiplines: Vec<usize>,
    /// Every match has non-empty `nofail` and `mlfforget` groups and no `mlfid` or
    /// `mlfgained` group of its own: on a connection without a cache entry its result is "no
    /// failure" and nothing is kept, whatever else it captures (see `find_failure_inner`).
    nofail_forget: bool,
}

impl Rx {
    fn new(src: &str, multiline: bool) -> Result<Rx, String> {
        let pat = Pattern::new(src, multiline).map_err(|e| e.0)?;
        let mut named = Vec::new();
        let mut alt = Vec::new();
        let mut skip = Vec::new();
        for (i, n) in pat.names().iter().enumerate() {
            let Some(n) = n else { continue };
            named.push((Name::new(n), i));
            if let Some(k) = n.strip_prefix("skiplines") {
                skip.push((k.parse::<usize>().unwrap_or(0), i));
            }
            if n.len() > 4 {
                if let Some(r) = n.strip_prefix("alt_") {
                    // alt_user_1 -> user
                    let base = match r.rfind('_') {
                        Some(p)
                            if r[p + 1..].chars().all(|c| c.is_ascii_digit())
                                && p + 1 < r.len() =>
                        {
                            &r[..p]
                        }
                        _ => r,
                    };
                    alt.push((Name::new(n), Name::new(&tags::map_tag(base))));
                }
            }
        }
        alt.sort();
        skip.sort();
        let nofail_forget = pat.superset_is_exact()
            && pat.groups_always_nonempty(&["nofail", "mlfforget"])
            && pat.group_index("mlfid").is_none()
            && pat.group_index("mlfgained").is_none();
        Ok(Rx {
            pat,
            named,
            alt,
            skiplines: skip.into_iter().map(|(_, i)| i).collect(),
            nofail_forget,
        })
    }

    fn has_group(&self, n: &str) -> bool {
        self.named.iter().any(|(x, _)| &**x == n)
    }

    fn group(&self, n: Name) -> Option<usize> {
        self.named.iter().find(|(x, _)| *x == n).map(|(_, i)| *i)
    }

    /// The group dict of the last match, with `alt_*` values merged.
    fn groups(&self, buf: &str, s: &Slots) -> Fail {
        let mut f = Fail {
            vals: Vec::with_capacity(self.named.len() + 8),
            ..Fail::default()
        };
        for &(n, i) in &self.named {
            f.vals
                .push((n, s.get(i).map(|(a, b)| Val::from(&buf[a..b]))));
        }
        for &(k, n) in &self.alt {
            let v = f.get(k).map(Val::from);
            if v.as_deref().is_some_and(|v| !v.is_empty()) && !f.truthy(n) {
                f.set(n, v);
            }
        }
        f
    }
}

/// A group value: short ones (addresses, user names, connection ids) are stored inline.
pub type Val = compact_str::CompactString;

/// A failure's data, as fail2ban's dict: named groups (a `None` value is a group that did not
/// take part), plus the counters fail2ban keeps in the same dict.
#[derive(Debug, Clone, Default)]
struct Fail {
    vals: Vec<(Name, Option<Val>)>,
    /// `matches`: number of lines (absent = `None`).
    matches: Option<usize>,
    /// `nofail-matches`.
    nofail_matches: Option<usize>,
    /// `users`: sorted, without duplicates.
    users: Option<Vec<Val>>,
    /// `mlfpending`.
    pending: bool,
}

impl Fail {
    fn get(&self, k: Name) -> Option<&str> {
        self.vals
            .iter()
            .find(|(n, _)| *n == k)
            .and_then(|(_, v)| v.as_deref())
    }
    fn truthy(&self, k: Name) -> bool {
        self.get(k).is_some_and(|v| !v.is_empty())
    }
    fn set(&mut self, k: Name, v: Option<Val>) {
        match self.vals.iter_mut().find(|(n, _)| *n == k) {
            Some(e) => e.1 = v,
            None => self.vals.push((k, v)),
        }
    }
    fn pop(&mut self, k: Name) -> Option<Val> {
        let i = self.vals.iter().position(|(n, _)| *n == k)?;
        self.vals.remove(i).1
    }
    /// `dict.update(other)`; with `skip_none`, `None` values do not overwrite.
    fn update(&mut self, other: &Fail, skip_none: bool) {
        self.vals.reserve(other.vals.len());
        for (k, v) in &other.vals {
            if skip_none && v.is_none() {
                continue;
            }
            self.set(*k, v.clone());
        }
        if other.matches.is_some() {
            self.matches = other.matches;
        }
        if other.nofail_matches.is_some() {
            self.nofail_matches = other.nofail_matches;
        }
        if other.users.is_some() {
            self.users = other.users.clone();
        }
        if other.pending {
            self.pending = true;
        }
    }
}

/// One result of [`Matcher::process_line`], as fail2ban's harness sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMatch {
    /// Index of the failregex that matched.
    pub rule: usize,
    /// The failure id: the host (`ip4`, `ip6` or `dns` group, or `fid`) as fail2ban reports
    /// it — addresses normalised like fail2ban's `IPAddr` (`::ffff:1.2.3.4` → `1.2.3.4`, a
    /// `<CIDR>` applied), anything else verbatim. `None` while a multi-line failure waits for
    /// its address.
    pub fid: Option<String>,
    /// The captured host exactly as written in the line (`192.030.0.6`, `example.com`).
    pub host: Option<String>,
    /// Line time (`None` if the line had no usable date and no earlier one applies).
    pub time: Option<Timestamp>,
    /// Every named group with a value (merged over the connection for `<F-MLFID>` filters;
    /// `prefregex` groups included), plus `ip` when the failure id is not the address.
    pub fields: Vec<(Name, Val)>,
    /// All users seen on the connection (`<F-MLFID>` filters), sorted.
    pub users: Vec<Val>,
    /// Number of log lines that make up this failure (fail2ban's `attempts`).
    pub matches: usize,
    /// A "no failure" observation (`<F-NOFAIL>`, or `<F-MLFGAINED>` success).
    pub nofail: bool,
}

impl RawMatch {
    /// Value of a field.
    pub fn field(&self, k: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(a, _)| *a == k)
            .map(|(_, v)| v.as_str())
    }
}

/// A loaded, compiled fail2ban filter. Immutable; create a [`Matcher`] per log stream.
#[derive(Debug)]
pub struct FilterDef {
    name: String,
    path: PathBuf,
    options: ResolvedOptions,
    pref: Option<Rx>,
    /// The prefregex without its final `(?P<content>.+)$` (single-line filters only): its
    /// leftmost-first match decides the full one's (see [`content_head`]).
    pref_head: Option<Rx>,
    fail: Vec<Rx>,
    /// Which failregexes may match a text, in one pass.
    rule_set: RuleSet,
    ignore: Vec<Rx>,
    maxlines: usize,
    /// The date detector each matcher starts from (templates compiled once).
    date: DateDetector,
}

/// The part of a prefregex before a final `(?P<content>.+)$`, when that split is sound: the
/// head is anchored (`^`), balanced, without top-level alternation or inline flags (`(?s)`
/// would let `.` take the newline). Then, on a single-line buffer `text\n`, if the head's
/// leftmost-first match ends at `h < len - 1` with no newline in `buf[h..len-1]`, the full
/// pattern's leftmost-first match takes the same path through the head (its remainder `.+$`
/// succeeds there) and `content` is `h..len-1`.
fn content_head(src: &str) -> Option<&str> {
    let head = src.strip_suffix("(?P<content>.+)$")?;
    if !head.starts_with('^') {
        return None;
    }
    let b = head.as_bytes();
    let (mut depth, mut i, mut class) = (0i32, 0usize, false);
    while i < b.len() {
        match b[i] {
            b'\\' => {
                i += 2;
                continue;
            }
            b'[' if !class => {
                class = true;
                i += 1;
                if b.get(i) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i) == Some(&b']') {
                    i += 1;
                }
                continue;
            }
            b']' if class => class = false,
            _ if class => {}
            b'(' => {
                depth += 1;
                if b.get(i + 1) == Some(&b'?')
                    && b.get(i + 2)
                        .is_some_and(|c| c.is_ascii_lowercase() || *c == b'-')
                {
                    return None;
                }
            }
            b')' => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            b'|' if depth == 0 => return None,
            _ => {}
        }
        i += 1;
    }
    (i == b.len() && depth == 0 && !class).then_some(head)
}

fn current_year() -> i16 {
    jiff::Zoned::now().year()
}

impl FilterDef {
    /// Loads `path` (`…/filter.d/name.conf`, with its `.local`, `.d/` and includes).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Arc<FilterDef>, LoadError> {
        let set = ConfigSet::read(path, &opts.include_fallback)?;
        let init = OMap(opts.init.clone());
        let resolved = set.resolve(path, &init)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::from_options(
            name,
            path,
            resolved,
            opts.now_year.unwrap_or_else(current_year),
        )
        .map(Arc::new)
    }

    /// Compiles already resolved options.
    pub fn from_options(
        name: String,
        path: &Path,
        options: ResolvedOptions,
        now_year: i16,
    ) -> Result<FilterDef, LoadError> {
        let p = path.to_path_buf();
        let maxlines = match options.maxlines.as_deref() {
            None => 1,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if n > 0 => n as usize,
                Ok(_) => {
                    return Err(LoadError::BadOption {
                        path: p,
                        option: "maxlines".into(),
                        reason: format!("must be an integer greater than zero, not {v:?}"),
                    })
                }
                // fail2ban warns and keeps the default
                Err(_) => 1,
            },
        };
        let use_dns = !matches!(options.usedns.as_deref(), Some("no"));
        let compile = |opt: &str, idx: usize, src: &str, ml: bool| -> Result<Rx, LoadError> {
            let (re, unknown) = tags::resolve(src, use_dns);
            if let Some(t) = unknown.first() {
                return Err(LoadError::UnknownTag {
                    path: p.clone(),
                    option: opt.into(),
                    index: idx,
                    tag: t.clone(),
                });
            }
            if re.trim().is_empty() {
                return Err(LoadError::Regex {
                    path: p.clone(),
                    option: opt.into(),
                    index: idx,
                    regex: re,
                    reason: "empty regex".into(),
                });
            }
            let re = tags::glob_to_local_flags(&re);
            Rx::new(&re, ml).map_err(|reason| LoadError::Regex {
                path: p.clone(),
                option: opt.into(),
                index: idx,
                regex: re.clone(),
                reason,
            })
        };
        let pref = match options.prefregex.as_deref() {
            Some(s) if !s.is_empty() => Some(compile("prefregex", 0, s, false)?),
            _ => None,
        };
        if options.failregex.is_empty() {
            return Err(LoadError::NoFailregex { path: p });
        }
        let ml = maxlines > 1;
        let pref_head = match (&pref, ml) {
            (Some(pr), false) => content_head(pr.pat.source()).and_then(|h| Rx::new(h, false).ok()),
            _ => None,
        };
        let mut fail = Vec::new();
        for (i, s) in options.failregex.iter().enumerate() {
            let rx = compile("failregex", i, s, ml)?;
            const IDS: [&str; 5] = ["fid", "ip4", "ip6", "dns", "mlfid"];
            let has = |r: &Rx| IDS.iter().any(|g| r.has_group(g));
            if !has(&rx) && !pref.as_ref().is_some_and(has) {
                return Err(LoadError::Regex {
                    path: p.clone(),
                    option: "failregex".into(),
                    index: i,
                    regex: rx.pat.source().into(),
                    reason: "no failure-id group (<HOST>, <ADDR>, <F-ID/>, <F-MLFID>…)".into(),
                });
            }
            fail.push(rx);
        }
        let mut ignore = Vec::new();
        for (i, s) in options.ignoreregex.iter().enumerate() {
            ignore.push(compile("ignoreregex", i, s, false)?);
        }
        // the date patterns must compile too; matchers start from copies of this detector
        let date = DateDetector::new(options.datepattern.as_deref(), now_year).map_err(|e| {
            LoadError::Regex {
                path: p.clone(),
                option: "datepattern".into(),
                index: 0,
                regex: options.datepattern.clone().unwrap_or_default(),
                reason: e.0,
            }
        })?;
        Ok(FilterDef {
            name,
            path: path.to_path_buf(),
            options,
            pref,
            pref_head,
            rule_set: RuleSet::new(fail.iter().map(|r| &r.pat)),
            fail,
            ignore,
            maxlines,
            date,
        })
    }

    /// Filter name (file stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// File the filter was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The resolved options (regex sources after substitution, `journalmatch`, …).
    pub fn options(&self) -> &ResolvedOptions {
        &self.options
    }

    /// Every name a [`RawMatch`] field of this filter can have.
    pub fn field_names(&self) -> Vec<Name> {
        let mut v = vec![KNOWN.ip];
        let rxs = self.pref.iter().chain(&self.pref_head).chain(&self.fail);
        for rx in rxs.chain(&self.ignore) {
            v.extend(rx.named.iter().map(|(n, _)| *n));
            v.extend(rx.alt.iter().map(|(_, n)| *n));
        }
        v.sort();
        v.dedup();
        v
    }

    /// Number of failregexes.
    pub fn failregex_count(&self) -> usize {
        self.fail.len()
    }

    /// `maxlines`.
    pub fn maxlines(&self) -> usize {
        self.maxlines
    }

    /// Failregex sources after tag substitution (as fail2ban compiles them).
    pub fn failregex_sources(&self) -> Vec<&str> {
        self.fail.iter().map(|r| r.pat.source()).collect()
    }

    /// Per failregex: (source, uses the backtracking engine, required literals).
    pub fn rule_info(&self) -> Vec<(String, bool, Option<Vec<String>>)> {
        self.fail
            .iter()
            .map(|r| {
                (
                    r.pat.source().to_string(),
                    r.pat.is_fancy(),
                    r.pat.required_literals().map(<[String]>::to_vec),
                )
            })
            .collect()
    }

    /// A new stateful matcher.
    pub fn matcher(self: &Arc<Self>, opts: MatchOptions) -> Matcher {
        let date = self.date.clone();
        let st = MatchState {
            date,
            opts,
            line_buffer: Vec::new(),
            last_time_text: String::new(),
            last_date: None,
            cache: MlfidCache::default(),
            buf: String::new(),
            cur: String::new(),
            slots_pref: self
                .pref
                .as_ref()
                .map(|r| r.pat.slots())
                .unwrap_or_default(),
            slots_head: self
                .pref_head
                .as_ref()
                .map(|r| r.pat.slots())
                .unwrap_or_default(),
            pattern_set: self.rule_set.pattern_set(),
            rule_cache: StartCache::default(),
            head_cache: StartCache::default(),
            memos: self.fail.iter().map(|_| Memo::default()).collect(),
            memo_head: Memo::default(),
            spare_hint: None,
            cand: vec![true; self.fail.len()],
            first_end: None,
            rule_slots: self.fail.iter().map(|r| r.pat.slots()).collect(),
            stats: MatchStats::default(),
        };
        Matcher {
            def: self.clone(),
            st,
        }
    }
}

/// Behaviour switches of a [`Matcher`].
#[derive(Debug, Clone)]
pub struct MatchOptions {
    /// Try every failregex on each line (fail2ban's test harness) instead of stopping at the
    /// first that matches (fail2ban in operation).
    pub check_all: bool,
    /// Lines carry no date; the caller gives the time (journal).
    pub journal: bool,
    /// Try only the failregexes that the one-pass rule automaton says may match (else every
    /// failregex, for comparison).
    pub prefilter: bool,
    /// Expiry of `<F-MLFID>` connection entries (fail2ban: 5 minutes, 100 entries).
    pub mlfid_ttl: Duration,
    /// Maximum `<F-MLFID>` entries.
    pub mlfid_max: usize,
    /// Remember capture results by text shape ([`crate::engine::Memo`]); off only to compare.
    pub memo: bool,
}

impl Default for MatchOptions {
    fn default() -> Self {
        MatchOptions {
            check_all: false,
            journal: false,
            prefilter: true,
            mlfid_ttl: Duration::from_secs(300),
            mlfid_max: 100,
            memo: true,
        }
    }
}

/// Counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct MatchStats {
    /// Lines seen.
    pub lines: u64,
    /// Lines on which the rule automaton found no candidate failregex.
    pub prefiltered: u64,
    /// Lines dropped by an `ignoreregex`.
    pub ignored: u64,
    /// Capture searches answered from the shape memo.
    pub memo_hits: u64,
    /// Capture searches that ran the capture automaton (a text that the forward automaton
    /// finds no match in counts as neither).
    pub memo_misses: u64,
}

impl MatchStats {
    /// Sums the counters of the two stages of a split matcher.
    pub fn plus(self, o: MatchStats) -> MatchStats {
        MatchStats {
            lines: self.lines + o.lines,
            prefiltered: self.prefiltered + o.prefiltered,
            ignored: self.ignored + o.ignored,
            memo_hits: self.memo_hits + o.memo_hits,
            memo_misses: self.memo_misses + o.memo_misses,
        }
    }
}

/// Lines kept by [`MatchState::prepare`], handed to the second stage in one go.
#[derive(Default)]
struct Batch {
    text: String,
    /// (line number, text range, findings)
    recs: Vec<(u64, usize, usize, Prepared)>,
    slots: Vec<Option<(usize, usize)>>,
}

/// Lines per hand-over between the two stages.
const BATCH_LINES: usize = 1024;

/// Runs a log through a filter on two threads, with the results of
/// [`Matcher::process_line`] in line order: `feed` (on a second thread) calls its argument
/// with every line (`line number, text, journal time`), `first` prepares them there, and
/// `second` completes the kept ones on this thread, calling `sink(line number, text,
/// results)` for each line with results. Both matchers must be of the same filter and
/// [`Matcher::can_split`]. Returns what `feed` returns.
pub fn run_split<R: Send>(
    first: &mut Matcher,
    second: &mut Matcher,
    cx: &TimeCx,
    feed: impl FnOnce(&mut dyn FnMut(u64, &str, Option<Timestamp>)) -> R + Send,
    mut sink: impl FnMut(u64, &str, &[RawMatch]),
) -> R {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    let (tx, rx) = mpsc::sync_channel::<Batch>(8);
    let (back_tx, back_rx) = mpsc::channel::<Batch>();
    // batches handed over and not finished: when the second stage falls behind, the first
    // takes the captures itself
    let in_flight = AtomicUsize::new(0);
    let in_flight = &in_flight;
    std::thread::scope(|s| {
        let worker = s.spawn(move || {
            let mut batch = Batch::default();
            let mut eager = false;
            let r = feed(&mut |no, line, given| {
                let before = batch.slots.len();
                let prepared =
                    first
                        .st
                        .prepare(&first.def, line, given, cx, &mut batch.slots, eager);
                if let Some(p) = prepared {
                    let a = batch.text.len();
                    batch.text.push_str(line);
                    batch.recs.push((no, a, batch.text.len(), p));
                    if batch.recs.len() >= BATCH_LINES {
                        let next = back_rx.try_recv().unwrap_or_default();
                        let full = std::mem::replace(&mut batch, next);
                        eager = in_flight.fetch_add(1, Ordering::Relaxed) >= 2;
                        // the receiver only stops early if it panicked
                        let _ = tx.send(full);
                    }
                } else {
                    batch.slots.truncate(before);
                }
            });
            if !batch.recs.is_empty() {
                let _ = tx.send(batch);
            }
            r
        });
        let mut res = Vec::new();
        for mut b in rx.iter() {
            // the lines of a batch are read within milliseconds: one clock reading
            second.st.cache.tick();
            for (no, a, e, p) in &b.recs {
                let line = &b.text[*a..*e];
                res.clear();
                second.st.complete(&second.def, line, p, &b.slots, &mut res);
                if !res.is_empty() {
                    sink(*no, line, &res);
                }
            }
            b.text.clear();
            b.recs.clear();
            b.slots.clear();
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = back_tx.send(b);
        }
        match worker.join() {
            Ok(r) => r,
            Err(e) => std::panic::resume_unwind(e),
        }
    })
}

/// Where failregex `i`'s match ends, if the rule automaton's pass (`first`: its first
/// candidate and that candidate's match end) tells.
fn known_end(first: Option<(usize, usize)>, i: usize, rx: &Rx) -> Option<usize> {
    match first {
        Some((p, e)) if p == i && rx.pat.superset_is_exact() => Some(e),
        _ => None,
    }
}

/// fail2ban's `Utils.Cache(maxCount, maxTime)`: insertion-ordered, oldest dropped first.
/// The clock is read at most once per line ([`MlfidCache::tick`]).
#[derive(Debug, Default)]
struct MlfidCache {
    map: HashMap<Val, (Fail, Instant, u64), BuildHasherDefault<rustc_hash::FxHasher>>,
    order: BTreeMap<u64, Val>,
    seq: u64,
    now: Option<Instant>,
}

impl MlfidCache {
    /// A new line (or, in [`run_split`], a new batch of lines processed together): the clock
    /// will be read again.
    fn tick(&mut self) {
        self.now = None;
    }
    fn now(&mut self) -> Instant {
        *self.now.get_or_insert_with(Instant::now)
    }
    /// The live entry for `k` (an expired one is dropped).
    fn get_mut(&mut self, k: &str) -> Option<&mut Fail> {
        let now = self.now();
        match self.map.get(k) {
            None => return None,
            Some(e) if e.1 <= now => {
                self.unset(k);
                return None;
            }
            Some(_) => {}
        }
        self.map.get_mut(k).map(|e| &mut e.0)
    }
    /// The entry for `k`, live or not.
    fn entry_mut(&mut self, k: &str) -> Option<&mut Fail> {
        self.map.get_mut(k).map(|e| &mut e.0)
    }
    fn set(&mut self, k: &str, v: Fail, ttl: Duration, max: usize) {
        let now = self.now();
        if self.map.len() >= max {
            while let Some((&seq, _)) = self.order.iter().next() {
                let key = self.order.remove(&seq).expect("present");
                let e = self.map.remove(&key).expect("in map");
                if e.1 > now && self.map.len() < max {
                    break;
                }
            }
        }
        if let Some(e) = self.map.get_mut(k) {
            e.0 = v;
            e.1 = now + ttl;
            return;
        }
        self.seq += 1;
        let k = Val::from(k);
        self.order.insert(self.seq, k.clone());
        self.map.insert(k, (v, now + ttl, self.seq));
    }
    /// Removes the entry for `k`, returning its data.
    fn remove(&mut self, k: &str) -> Option<Fail> {
        let (f, _, seq) = self.map.remove(k)?;
        self.order.remove(&seq);
        Some(f)
    }
    fn unset(&mut self, k: &str) {
        self.remove(k);
    }
}

/// A buffered line: text before the date, the date text, text after it.
#[derive(Debug, Clone)]
struct TupleLine {
    pre: String,
    /// The date text (kept for parity with fail2ban's tuples; not part of the buffer).
    #[allow(dead_code)]
    date: String,
    post: String,
}

impl TupleLine {
    fn text(&self) -> String {
        format!("{}{}", self.pre, self.post)
    }
}

fn tuple_buf(lines: &[TupleLine], out: &mut String) {
    out.clear();
    for (i, l) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&l.pre);
        out.push_str(&l.post);
    }
    out.push('\n');
}

/// The buffer of a single-line filter: the line without its date, and a newline.
fn single_buf(buf: &mut String, line: &str, span: (usize, usize)) {
    buf.clear();
    buf.push_str(&line[..span.0]);
    buf.push_str(&line[span.1..]);
    buf.push('\n');
}

/// The content after a prefregex head ending at `e` in a single-line buffer, when the full
/// prefregex matches (see [`content_head`]: it needs a non-empty content without newline).
fn head_content(buf: &str, e: usize) -> Option<(usize, usize)> {
    let end = buf.len() - 1;
    (e < end && !buf.as_bytes()[e..end].contains(&b'\n')).then_some((e, end))
}

/// The text failregexes run on: the content and a newline, or the whole buffer.
fn content_text(cur: &mut String, buf: &str, content: Option<(usize, usize)>) {
    cur.clear();
    match content {
        Some((a, b)) => {
            cur.push_str(&buf[a..b]);
            cur.push('\n');
        }
        None => cur.push_str(buf),
    }
}

/// Result of a regex search over the buffer, in lines.
struct LineSplit {
    matched: Vec<TupleLine>,
    unmatched: Vec<TupleLine>,
}

/// `Regex.search`'s bookkeeping: which buffered lines the match covers.
fn split_lines(
    buf: &str,
    span: (usize, usize),
    org: &[TupleLine],
    skipped: &[String],
) -> LineSplit {
    if org.len() <= 1 {
        return LineSplit {
            matched: org.to_vec(),
            unmatched: Vec::new(),
        };
    }
    let upto = (span.0 + 1).min(buf.len());
    let start = buf[..upto].rfind('\n').map_or(0, |i| i + 1);
    let from = if span.1 == 0 {
        buf.len().saturating_sub(1)
    } else {
        span.1 - 1
    };
    let end = buf[from..].find('\n').map_or(buf.len(), |i| from + i + 1);
    let c1 = buf[..start].matches('\n').count().min(org.len());
    let c2 = buf[..end].matches('\n').count().min(org.len()).max(c1);
    let mut matched = org[c1..c2].to_vec();
    let mut unmatched = org[..c1].to_vec();
    let mut n = 0;
    for sk in skipped {
        if let Some(m) = matched[n.min(matched.len())..]
            .iter()
            .position(|t| t.text() == *sk)
        {
            unmatched.push(matched.remove(n + m));
            n += m;
        }
    }
    unmatched.extend_from_slice(&org[c2..]);
    LineSplit { matched, unmatched }
}

/// Result of [`MatchState::merge_failure`].
enum Merged {
    /// A "no failure" observation that is not wanted.
    NoFailure,
    /// The merged data, no longer (or never) in the cache.
    Own(Fail),
    /// The merged data is the connection's cache entry.
    Entry,
}

/// What [`MatchState::prepare`] found in a line, for [`MatchState::complete`].
#[derive(Debug, Clone, Copy)]
struct Prepared {
    span: (usize, usize),
    date: Option<Timestamp>,
    rule: usize,
    /// Where the rule's match ends, if known (`usize::MAX`: not known).
    rule_end: usize,
    head_end: usize,
    /// Where the failregex's and the prefregex head's captures start in the slot buffer
    /// (`usize::MAX`: not captured yet).
    slots_at: usize,
    head_at: Option<usize>,
}

/// The first stage's findings, used by `find_failure_inner` instead of searching again.
#[derive(Debug, Default)]
struct Hint {
    rule: usize,
    /// As [`Prepared::rule_end`].
    rule_end: usize,
    head_end: usize,
    slots: Vec<Option<(usize, usize)>>,
    head: Option<Vec<Option<(usize, usize)>>>,
}

/// Stateful processing of one log stream with a [`FilterDef`].
#[derive(Debug)]
pub struct Matcher {
    def: Arc<FilterDef>,
    st: MatchState,
}

/// A [`Matcher`]'s state. Its methods take the definition as an argument: the matcher's `Arc`
/// is not cloned per line (two matchers of one filter on two threads would fight over the
/// reference count's cache line).
#[derive(Debug)]
struct MatchState {
    date: DateDetector,
    opts: MatchOptions,
    line_buffer: Vec<TupleLine>,
    last_time_text: String,
    last_date: Option<Timestamp>,
    cache: MlfidCache,
    buf: String,
    cur: String,
    slots_pref: Slots,
    slots_head: Slots,
    /// Scratch for the rule automaton.
    pattern_set: regex_automata::PatternSet,
    rule_cache: StartCache,
    /// Scratch for the prefregex head's automaton.
    head_cache: StartCache,
    /// Capture results per failregex, and of the prefregex head, by text shape.
    memos: Vec<Memo>,
    memo_head: Memo,
    /// The last hint of [`MatchState::complete`], kept for its buffers.
    spare_hint: Option<Hint>,
    /// Candidate failregexes for the current line.
    cand: Vec<bool>,
    /// From the last [`Self::select_rules`]: the first candidate and where its match ends,
    /// when the rule automaton found that (see [`RuleSet::select_first`]).
    first_end: Option<(usize, usize)>,
    rule_slots: Vec<Slots>,
    stats: MatchStats,
}

/// Normalises a host like fail2ban's `IPAddr(host, cidr)`.
pub fn ipaddr_string(host: &str, cidr: Option<u8>, v4: Option<bool>) -> String {
    use std::net::IpAddr;
    let parsed: Option<IpAddr> = match v4 {
        Some(true) => host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
        Some(false) => host.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse().ok(),
    };
    let Some(ip) = parsed else {
        return host.to_string();
    };
    match (ip, cidr) {
        (IpAddr::V4(a), Some(c)) if c < 32 => {
            let m = if c == 0 {
                0
            } else {
                u32::MAX << (32 - c as u32)
            };
            format!("{}/{}", std::net::Ipv4Addr::from(u32::from(a) & m), c)
        }
        // the text parsed, so it is already in canonical form (std rejects leading zeros)
        (IpAddr::V4(_), _) => host.to_string(),
        (IpAddr::V6(a), Some(c)) if c < 128 => {
            let m = if c == 0 {
                0
            } else {
                u128::MAX << (128 - c as u32)
            };
            format!("{}/{}", std::net::Ipv6Addr::from(u128::from(a) & m), c)
        }
        (IpAddr::V6(a), _) => match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => a.to_string(),
        },
    }
}

impl Matcher {
    /// The filter.
    pub fn def(&self) -> &Arc<FilterDef> {
        &self.def
    }

    /// Counters.
    pub fn stats(&self) -> MatchStats {
        self.st.stats()
    }

    /// fail2ban's `processLine`: examines one line (no trailing newline) and appends the
    /// failures found. `given` is the time for journal-style lines that carry no date.
    pub fn process_line(
        &mut self,
        line: &str,
        given: Option<Timestamp>,
        cx: &TimeCx,
        out: &mut Vec<RawMatch>,
    ) {
        self.st.process_line(&self.def, line, given, cx, out)
    }

    /// Whether this matcher can be split in two stages on two threads ([`run_split`]):
    /// single-line filters in server mode whose prefregex, if any, splits at its content.
    pub fn can_split(&self) -> bool {
        self.st.can_split(&self.def)
    }
}

impl MatchState {
    /// Counters.
    fn stats(&self) -> MatchStats {
        let mut s = self.stats;
        for m in self.memos.iter().chain(std::iter::once(&self.memo_head)) {
            s.memo_hits += m.hits;
            s.memo_misses += m.misses;
        }
        s
    }

    /// fail2ban's `processLine`: examines one line (no trailing newline) and appends the
    /// failures found. `given` is the time for journal-style lines that carry no date.
    fn process_line(
        &mut self,
        def: &FilterDef,
        line: &str,
        given: Option<Timestamp>,
        cx: &TimeCx,
        out: &mut Vec<RawMatch>,
    ) {
        self.stats.lines += 1;
        self.cache.tick();
        let (span, date) = self.line_date(line, given, cx);
        self.find_failure(def, line, span, date, None, out)
    }

    /// `processLine`'s date part: the date's span in `line` (removed before matching) and the
    /// line's time.
    fn line_date(
        &mut self,
        line: &str,
        given: Option<Timestamp>,
        cx: &TimeCx,
    ) -> ((usize, usize), Option<Timestamp>) {
        let mut date: Option<Timestamp> = None;
        if let Some(g) = given {
            self.last_time_text.clear();
            self.last_date = Some(g);
            return ((0, 0), Some(g));
        }
        let recent =
            |ld: Option<Timestamp>| ld.is_some_and(|d| d.0 > cx.now.0 - 60 * Timestamp::MICROS);
        let mut span = (0usize, 0usize);
        let mut use_last = false;
        if let Some(m) = self.date.detect(line, cx) {
            span = m.span;
            if m.span.0 != m.span.1 {
                if let Some(t) = m.time {
                    date = Some(t);
                    self.last_time_text.clear();
                    self.last_time_text.push_str(&line[span.0..span.1]);
                    self.last_date = Some(t);
                }
            } else if recent(self.last_date) {
                use_last = true;
                date = self.last_date;
            } else {
                date = Some(cx.now);
            }
        }
        if date.is_none() && recent(self.last_date) {
            use_last = true;
            date = self.last_date;
        }
        if use_last {
            span = (0, 0);
        }
        (span, date)
    }

    /// Whether this matcher can be split in two stages ([`Self::prepare`] on one thread,
    /// [`Self::complete`] on another): single-line filters in server mode whose prefregex,
    /// if any, splits at its content.
    fn can_split(&self, def: &FilterDef) -> bool {
        def.maxlines == 1 && !self.opts.check_all && (def.pref.is_none() || def.pref_head.is_some())
    }

    /// First stage of [`Self::process_line`] (see [`Self::can_split`]): the date, the
    /// prefregex head and the first failregex the rule automaton allows (with `eager`: the
    /// first that matches, with its captures). Everything here depends only on the line and
    /// the date detector, so a second matcher can finish the line on another thread with
    /// [`Self::complete`], which searches the rule (and, if it does not match after all, the
    /// later ones) unless the captures are given; a line that no failregex can match returns
    /// `None`. Call it for every line, in order. `eager` balances the two threads: the
    /// results are the same either way.
    fn prepare(
        &mut self,
        def: &FilterDef,
        line: &str,
        given: Option<Timestamp>,
        cx: &TimeCx,
        slots_out: &mut Vec<Option<(usize, usize)>>,
        eager: bool,
    ) -> Option<Prepared> {
        debug_assert!(self.can_split(def));
        self.stats.lines += 1;
        let (span, date) = self.line_date(line, given, cx);
        let mut buf = std::mem::take(&mut self.buf);
        let mut cur = std::mem::take(&mut self.cur);
        single_buf(&mut buf, line, span);
        let r = self.prepare_inner(def, &buf, &mut cur, slots_out, eager);
        self.buf = buf;
        self.cur = cur;
        let (rule, rule_end, head_end, slots_at, head_at) = r?;
        Some(Prepared {
            span,
            date,
            rule,
            rule_end,
            head_end,
            slots_at,
            head_at,
        })
    }

    fn prepare_inner(
        &mut self,
        def: &FilterDef,
        buf: &str,
        cur: &mut String,
        slots_out: &mut Vec<Option<(usize, usize)>>,
        eager: bool,
    ) -> Option<(usize, usize, usize, usize, Option<usize>)> {
        if !def.ignore.is_empty()
            && (def.ignore.len() as isize) < def.fail.len() as isize - 2
            && self.ignore_line(def, buf, None).is_some()
        {
            self.stats.ignored += 1;
            return None;
        }
        let mut head_end = 0;
        let mut content = None;
        if let Some(h) = &def.pref_head {
            let (_, e) = h.pat.find_start(&mut self.head_cache, buf)?;
            head_end = e;
            // no content: the prefregex does not match
            content = Some(head_content(buf, e)?);
        }
        content_text(cur, buf, content);
        if !self.select_rules(def, cur) {
            self.stats.prefiltered += 1;
            return None;
        }
        for (i, rx) in def.fail.iter().enumerate() {
            if !self.cand[i] || !rx.pat.may_match_at(cur.as_bytes(), 0) {
                continue;
            }
            let end = known_end(self.first_end, i, rx);
            if !eager && self.opts.prefilter {
                // the second stage searches this rule (and, if it does not match after all,
                // the later ones)
                return Some((i, end.unwrap_or(usize::MAX), head_end, usize::MAX, None));
            }
            let mut slots = std::mem::take(&mut self.rule_slots[i]);
            let memo = self.opts.memo.then_some(&mut self.memos[i]);
            let found = rx
                .pat
                .search_in(cur, 0, end.unwrap_or(cur.len()), &mut slots, memo);
            if found {
                let slots_at = slots_out.len();
                slots_out.extend_from_slice(&slots.pos);
                self.rule_slots[i] = slots;
                // the prefregex head's groups: here if eager, else by the second stage
                let head_at = match &def.pref_head {
                    Some(h) if eager => {
                        let at = slots_out.len();
                        let memo = self.opts.memo.then_some(&mut self.memo_head);
                        let ok = h
                            .pat
                            .search_in(buf, 0, head_end, &mut self.slots_head, memo);
                        debug_assert!(ok, "the head matched before");
                        slots_out.extend_from_slice(&self.slots_head.pos);
                        Some(at)
                    }
                    _ => None,
                };
                return Some((i, usize::MAX, head_end, slots_at, head_at));
            }
            self.rule_slots[i] = slots;
        }
        None
    }

    /// Second stage of [`Self::process_line`] for a line [`Self::prepare`] (on another
    /// matcher of the same filter) kept: the connection state and the results. `slots` is
    /// the buffer `prepare` wrote the captures into. Call it for those lines, in order.
    fn complete(
        &mut self,
        def: &FilterDef,
        line: &str,
        p: &Prepared,
        slots: &[Option<(usize, usize)>],
        out: &mut Vec<RawMatch>,
    ) {
        // the clock is read once per batch ([`run_split`])
        let n = def.fail.get(p.rule).map_or(0, |r| r.pat.names().len());
        // the buffers of the previous hint are reused
        let mut h = self.spare_hint.take().unwrap_or_default();
        h.rule = p.rule;
        h.rule_end = p.rule_end;
        h.head_end = p.head_end;
        h.slots.clear();
        if p.slots_at != usize::MAX {
            h.slots
                .extend_from_slice(&slots[p.slots_at..p.slots_at + n]);
        }
        h.head = p.head_at.map(|at| {
            let hn = def.pref_head.as_ref().map_or(0, |h| h.pat.names().len());
            slots[at..at + hn].to_vec()
        });
        self.find_failure(def, line, p.span, p.date, Some(&h), out);
        self.spare_hint = Some(h);
    }

    fn tuple_of(line: &str, span: (usize, usize)) -> TupleLine {
        TupleLine {
            pre: line[..span.0].to_string(),
            date: line[span.0..span.1].to_string(),
            post: line[span.1..].to_string(),
        }
    }

    /// `findFailure` for the line without its date (`span`); `hint`: what the first stage of
    /// a split matcher found.
    fn find_failure(
        &mut self,
        def: &FilterDef,
        line: &str,
        span: (usize, usize),
        date: Option<Timestamp>,
        hint: Option<&Hint>,
        out: &mut Vec<RawMatch>,
    ) {
        let mut buf = std::mem::take(&mut self.buf);
        let mut cur = std::mem::take(&mut self.cur);
        self.find_failure_inner(def, line, span, date, hint, out, &mut buf, &mut cur);
        self.buf = buf;
        self.cur = cur;
    }

    #[allow(clippy::too_many_arguments)]
    fn find_failure_inner(
        &mut self,
        def: &FilterDef,
        line: &str,
        span: (usize, usize),
        date: Option<Timestamp>,
        hint: Option<&Hint>,
        out: &mut Vec<RawMatch>,
        buf: &mut String,
        cur: &mut String,
    ) {
        let kn = &*KNOWN;
        let ml = def.maxlines > 1;
        let check_all = self.opts.check_all;
        // the buffer: for single-line filters no per-line allocation
        let mut org: Vec<TupleLine> = Vec::new();
        if ml {
            self.line_buffer.push(Self::tuple_of(line, span));
            if self.line_buffer.len() > def.maxlines {
                let cut = self.line_buffer.len() - def.maxlines;
                self.line_buffer.drain(..cut);
            }
            org = self.line_buffer.clone();
            tuple_buf(&org, buf);
        } else {
            single_buf(buf, line, span);
        }
        let org_len = if ml { org.len() } else { 1 };
        // lazily materialised single-line buffer for the rare paths that need tuples
        let org_single = |line: &str| vec![Self::tuple_of(line, span)];

        if hint.is_none()
            && !def.ignore.is_empty()
            && (def.ignore.len() as isize) < def.fail.len() as isize - 2
            && self.ignore_line(def, buf, None).is_some()
        {
            self.stats.ignored += 1;
            return;
        }
        // prefregex: its groups are only materialised once a failregex matches
        let mut pre_matched = false;
        let mut content: Option<(usize, usize)> = None;
        // head split: the prefregex groups come from a capture search of the head, run only
        // once a failregex matches
        let mut pref_lazy = false;
        let mut head_end = 0;
        if let Some(h) = &def.pref_head {
            let found = match &hint {
                Some(x) => Some((0, x.head_end)),
                None => h.pat.find_start(&mut self.head_cache, buf),
            };
            let Some((_, e)) = found else {
                return; // every match of the prefregex starts with one of the head
            };
            head_end = e;
            if let Some(c) = head_content(buf, e) {
                content = Some(c);
                pre_matched = true;
                pref_lazy = true;
            }
        }
        if let (Some(pr), false) = (&def.pref, pref_lazy) {
            if !pr.pat.search(buf, 0, &mut self.slots_pref) {
                return;
            }
            pre_matched = true;
            content = pr
                .group(kn.content)
                .and_then(|g| self.slots_pref.get(g))
                .filter(|(a, b)| b > a);
            if let (Some((a, b)), true) = (content, ml) {
                self.line_buffer = vec![TupleLine {
                    pre: String::new(),
                    date: String::new(),
                    post: buf[a..b].to_string(),
                }];
            }
        }
        let mut pre: Option<Fail> = None;
        content_text(cur, buf, content);
        match &hint {
            // rules before the hinted one do not match; later ones are tried if need be
            Some(x) => {
                for (i, c) in self.cand.iter_mut().enumerate() {
                    *c = i >= x.rule;
                }
                self.first_end = (x.rule_end != usize::MAX).then_some((x.rule, x.rule_end));
            }
            None => {
                if !self.select_rules(def, cur) {
                    self.stats.prefiltered += 1;
                    return;
                }
            }
        }
        let mut cur_valid = true;
        // line buffer used to rebuild `cur` after a change (single-line: content or line)
        let mut single_buffer: Option<Vec<TupleLine>> = None;
        for (i, rx) in def.fail.iter().enumerate() {
            if !self.cand[i] {
                continue;
            }
            if !cur_valid {
                if ml {
                    tuple_buf(&self.line_buffer, cur);
                } else {
                    let b = single_buffer.get_or_insert_with(|| match content {
                        Some((a, b)) => vec![TupleLine {
                            pre: String::new(),
                            date: String::new(),
                            post: buf[a..b].to_string(),
                        }],
                        None => org_single(line),
                    });
                    tuple_buf(b, cur);
                }
                cur_valid = true;
                // the text changed: ask the automaton again
                self.select_rules(def, cur);
                if !self.cand[i] {
                    continue;
                }
            }
            if !rx.pat.may_match_at(cur.as_bytes(), 0) {
                continue;
            }
            // A rule that certainly matches here (the automaton found its match) and whose
            // every match is "no failure, forget the connection" (`Rx::nofail_forget`): when
            // the connection has no cache entry, fail2ban's merge ends in "no failure" and
            // keeps nothing, so its captures are not needed.
            let known = known_end(self.first_end, i, rx);
            if rx.nofail_forget
                && pref_lazy
                && !ml
                && !check_all
                && def.ignore.is_empty()
                && known.is_some()
            {
                if pre.is_none() {
                    pre = self.pref_groups(def, buf, hint, pref_lazy, head_end);
                }
                if let Some(id) = pre.as_ref().and_then(|p| p.get(kn.mlfid)) {
                    // (the same lookup as the merge's: an expired entry is dropped)
                    if self.cache.get_mut(id).is_none() {
                        return;
                    }
                }
            }
            let mut slots = std::mem::take(&mut self.rule_slots[i]);
            let hinted = match &hint {
                Some(x) if x.rule == i && !x.slots.is_empty() => {
                    slots.pos.clone_from(&x.slots);
                    true
                }
                _ => false,
            };
            let end = known.unwrap_or(cur.len());
            let memo = self.opts.memo.then_some(&mut self.memos[i]);
            if !hinted && !rx.pat.search_in(cur, 0, end, &mut slots, memo) {
                self.rule_slots[i] = slots;
                continue;
            }
            let mut fail = rx.groups(cur, &slots);
            let whole = slots.get(0).unwrap_or((0, 0));
            let skipped: Vec<String> = {
                let mut s = String::new();
                for &g in &rx.skiplines {
                    if let Some((a, b)) = slots.get(g) {
                        s.push_str(&cur[a..b]);
                    }
                }
                s.lines().map(String::from).collect()
            };
            self.rule_slots[i] = slots;
            let orgv: Vec<TupleLine> = if ml { org.clone() } else { Vec::new() };
            let split = if ml {
                split_lines(cur, whole, &orgv, &skipped)
            } else {
                LineSplit {
                    matched: Vec::new(),
                    unmatched: Vec::new(),
                }
            };
            let matched_count = if org_len <= 1 { 1 } else { split.matched.len() };
            if !def.ignore.is_empty() {
                let fr = if ml { Some(&split) } else { None };
                if self.ignore_line(def, cur, fr).is_some() {
                    self.stats.ignored += 1;
                    cur_valid = false;
                    if !check_all {
                        break;
                    }
                    continue;
                }
            }
            if !check_all || ml {
                if ml {
                    self.line_buffer = split.unmatched.clone();
                }
                cur_valid = false;
                if !ml {
                    // fail2ban: `__lineBuffer = unmatched lines` (empty) — later regexes
                    // run on an empty buffer
                    single_buffer = Some(Vec::new());
                }
            }
            if pre_matched && pre.is_none() {
                pre = self.pref_groups(def, buf, hint, pref_lazy, head_end);
            }
            // the prefregex groups, overridden by the failregex's (in server mode they are
            // used once: a later rule, if any, captures them again)
            let merged = if check_all { pre.clone() } else { pre.take() };
            if let Some(mut merged) = merged {
                merged.update(&fail, false);
                fail = merged;
            }
            let mlfid = fail.get(kn.mlfid).map(Val::from);
            // the merged data: the connection's cache entry itself (changes below are the
            // entry's), or this line's own
            let mut own: Fail;
            let fail: &mut Fail = match &mlfid {
                Some(id) => match self.merge_failure(id, fail, matched_count, check_all) {
                    Merged::NoFailure => return,
                    Merged::Own(f) => {
                        own = f;
                        &mut own
                    }
                    Merged::Entry => self.cache.entry_mut(id).expect("merged into the entry"),
                },
                None => {
                    fail.matches = Some(fail.matches.unwrap_or(0) + matched_count);
                    own = fail;
                    &mut own
                }
            };
            let mut fid = fail.get(kn.fid).map(String::from);
            let mut cidr: Option<u8> = None;
            let mut v4 = None;
            let host: Option<String>;
            if let Some(ip) = fail.get(kn.ip4) {
                host = Some(ip.to_string());
                v4 = Some(true);
            } else if let Some(ip) = fail.get(kn.ip6) {
                host = Some(ip.to_string());
                v4 = Some(false);
            } else if let Some(d) = fail.get(kn.dns) {
                host = Some(d.to_string());
            } else {
                host = None;
            }
            if v4.is_some() {
                cidr = fail.get(kn.cidr).and_then(|c| c.parse::<u8>().ok());
            }
            let ip_for_fid: Option<String> = match &host {
                Some(h) => Some(h.clone()),
                None => {
                    if fid.is_none() && mlfid.is_none() {
                        // no failure id at all: fail2ban logs an error and skips the regex
                        continue;
                    }
                    fid.clone()
                }
            };
            let out_fid: Option<String>;
            match ip_for_fid {
                None => {
                    fail.pending = true;
                    if !check_all {
                        return;
                    }
                    out_fid = None;
                }
                Some(ip) => {
                    let is_dns_host = v4.is_none() && host.is_some();
                    let norm = if is_dns_host {
                        ip.clone()
                    } else {
                        ipaddr_string(&ip, cidr, v4)
                    };
                    match &fid {
                        Some(f) if *f != ip => {
                            fail.set(kn.ip, Some(Val::from(norm)));
                            out_fid = Some(f.clone());
                        }
                        _ => {
                            out_fid = Some(norm);
                        }
                    }
                    fid = out_fid.clone();
                }
            }
            let _ = &fid;
            out.push(RawMatch {
                rule: i,
                fid: out_fid,
                host,
                time: date,
                fields: fail
                    .vals
                    .iter()
                    .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v.clone())))
                    .collect(),
                users: fail.users.clone().unwrap_or_default(),
                matches: fail.matches.unwrap_or(0),
                nofail: fail.truthy(kn.nofail),
            });
            if !check_all {
                break;
            }
        }
    }

    /// The prefregex's groups of the line in `buf` (its content removed): from the first
    /// stage's captures of the head, a memoised capture search of the head (`head_end`: where
    /// it ends), or the whole prefregex's last search.
    fn pref_groups(
        &mut self,
        def: &FilterDef,
        buf: &str,
        hint: Option<&Hint>,
        pref_lazy: bool,
        head_end: usize,
    ) -> Option<Fail> {
        match (&def.pref, &def.pref_head) {
            (Some(_), Some(h)) if pref_lazy && hint.is_some_and(|x| x.head.is_some()) => {
                let x = hint.and_then(|x| x.head.as_ref()).expect("checked");
                self.slots_head.pos.clone_from(x);
                Some(h.groups(buf, &self.slots_head))
            }
            (Some(_), Some(h)) if pref_lazy => {
                let memo = self.opts.memo.then_some(&mut self.memo_head);
                let found = h
                    .pat
                    .search_in(buf, 0, head_end, &mut self.slots_head, memo);
                debug_assert!(found, "the head matched before");
                Some(h.groups(buf, &self.slots_head))
            }
            (Some(pr), _) => {
                let mut g = pr.groups(buf, &self.slots_pref);
                g.pop(KNOWN.content);
                Some(g)
            }
            _ => None,
        }
    }

    /// Marks the failregexes that may match `cur`; whether there is any.
    fn select_rules(&mut self, def: &FilterDef, cur: &str) -> bool {
        self.first_end = None;
        if !self.opts.prefilter {
            self.cand.iter_mut().for_each(|c| *c = true);
            return !self.cand.is_empty();
        }
        if self.opts.check_all {
            def.rule_set
                .select(cur, &mut self.pattern_set, &mut self.cand)
        } else {
            def.rule_set.select_first(
                cur,
                &mut self.pattern_set,
                &mut self.cand,
                &mut self.rule_cache,
                &mut self.first_end,
            )
        }
    }

    fn ignore_line(
        &mut self,
        def: &FilterDef,
        buf: &str,
        fail_split: Option<&LineSplit>,
    ) -> Option<usize> {
        let ml = def.maxlines > 1;
        let mut own = String::new();
        let buf = match (fail_split, ml) {
            (Some(s), true) => {
                tuple_buf(&s.matched, &mut own);
                own.as_str()
            }
            _ => buf,
        };
        let mut fnd = None;
        for (i, rx) in def.ignore.iter().enumerate() {
            if rx.pat.find_at(buf, 0).is_some() {
                fnd = Some(i);
                if !self.opts.check_all || ml {
                    if let Some(s) = fail_split {
                        self.line_buffer = s.unmatched.clone();
                    }
                }
                if !self.opts.check_all {
                    break;
                }
            }
        }
        fnd
    }

    /// Adds `user` to the connection's users; returns how many there are.
    fn update_users(f: &mut Fail, user: Option<&str>) -> usize {
        if let Some(u) = user.filter(|u| !u.is_empty()) {
            let set = f.users.get_or_insert_with(Vec::new);
            if let Err(i) = set.binary_search_by(|x| x.as_str().cmp(u)) {
                set.insert(i, Val::from(u));
            }
        }
        f.users.as_ref().map_or(0, Vec::len)
    }

    /// `_mergeFailure`: merges with the connection's earlier data, in the cache entry itself
    /// while the connection stays known. Says where the merged data is (nothing when it is a
    /// "no failure" observation and `want_nofail` is false).
    fn merge_failure(
        &mut self,
        mlfid: &str,
        mut fail: Fail,
        matched: usize,
        want_nofail: bool,
    ) -> Merged {
        let kn = &*KNOWN;
        let mut nf: u8 = 0;
        if fail.truthy(kn.mlfgained) {
            nf |= 8 | 1;
            if !fail.truthy(kn.nofail) {
                let g = fail.get(kn.mlfgained).map(Val::from);
                fail.set(kn.nofail, g);
            }
        } else if fail.truthy(kn.nofail) {
            nf |= 1;
        }
        if fail.pop(kn.mlfforget).is_some_and(|v| !v.is_empty()) {
            nf |= 2;
        }
        let (ttl, max) = (self.opts.mlfid_ttl, self.opts.mlfid_max);
        let users;
        // `cur`: the merged data, either the cache entry (attached) or `local`
        let mut local: Option<Fail> = None;
        if let Some(g) = self.cache.get_mut(mlfid) {
            users = Self::update_users(g, fail.get(kn.user));
            if g.pop(kn.nofail).is_some_and(|v| !v.is_empty()) {
                nf |= 4;
            }
            if g.pop(kn.mlfgained).is_some_and(|v| !v.is_empty()) {
                nf |= 4;
            }
            if nf & 8 != 0 {
                g.pending = false;
            }
            if nf & 4 == 0 && !g.pending {
                g.matches = None;
            }
            g.update(&fail, true);
            if nf & 2 != 0 {
                local = self.cache.remove(mlfid);
            }
        } else if nf & 2 == 0 {
            let u = fail.get(kn.user).map(Val::from);
            users = Self::update_users(&mut fail, u.as_deref());
            self.cache.set(mlfid, fail, ttl, max);
        } else {
            users = 0;
            local = Some(fail);
        }
        let cur: &mut Fail = match local.as_mut() {
            Some(f) => f,
            None => self.cache.entry_mut(mlfid).expect("attached"),
        };
        let was_pending = std::mem::take(&mut cur.pending);
        if was_pending || users > 1 {
            cur.pop(kn.nofail);
            cur.pop(kn.mlfgained);
            nf &= !(8 | 1);
        }
        if nf & 1 == 0 {
            let mut m = cur.nofail_matches.take().unwrap_or(0);
            m += cur.matches.unwrap_or(0);
            if nf & 8 == 0 {
                m += matched;
            }
            cur.matches = Some(m);
        } else if nf & 3 == 1 {
            cur.nofail_matches = Some(cur.nofail_matches.unwrap_or(0) + matched);
        }
        if cur.truthy(kn.nofail) && !want_nofail {
            return Merged::NoFailure;
        }
        match local {
            Some(f) => Merged::Own(f),
            None => Merged::Entry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipaddr_string_normalises_like_fail2ban() {
        for (host, cidr, v4, want) in [
            ("1.2.3.4", None, Some(true), "1.2.3.4"),
            ("255.255.255.255", None, Some(true), "255.255.255.255"),
            ("0.0.0.0", None, None, "0.0.0.0"),
            // not an address for std (leading zeros): kept as written
            ("192.030.0.6", None, Some(true), "192.030.0.6"),
            ("1.2.3.4", Some(24), Some(true), "1.2.3.0/24"),
            ("1.2.3.4", Some(32), Some(true), "1.2.3.4"),
            ("::ffff:1.2.3.4", None, Some(false), "1.2.3.4"),
            ("2001:DB8::1", None, Some(false), "2001:db8::1"),
            ("2001:db8::1", Some(32), Some(false), "2001:db8::/32"),
            ("example.com", None, None, "example.com"),
        ] {
            assert_eq!(ipaddr_string(host, cidr, v4), want, "{host} {cidr:?}");
        }
    }

    #[test]
    fn content_head_split() {
        let h = content_head(r"^(?P<mlfid>\s*\S+ sshd:)(?:error: )?(?P<content>.+)$");
        assert_eq!(h, Some(r"^(?P<mlfid>\s*\S+ sshd:)(?:error: )?"));
        assert_eq!(content_head(r"^a\[(?P<content>.+)$"), Some(r"^a\["));
        assert_eq!(content_head(r"^[(](?P<content>.+)$"), Some(r"^[(]"));
        assert_eq!(content_head(r"^[]|](?P<content>.+)$"), Some(r"^[]|]"));
        // not sound to split
        for bad in [
            r"a(?P<content>.+)$",
            r"^a|b(?P<content>.+)$",
            r"^(?:a(?P<content>.+)$)",
            r"^a\(?P<content>.+)$",
            r"^(?s)a(?P<content>.+)$",
            r"^(?s:a)(?P<content>.+)$",
            r"^a(?P<content>.+)$x",
            r"^a(?P<content>.+?)$",
            r"^a\\\(?P<content>.+)$",
        ] {
            assert_eq!(content_head(bad), None, "{bad}");
        }
    }

    /// The head split gives the same prefregex groups and content as the full prefregex.
    #[test]
    fn content_head_agrees_with_the_prefregex() {
        let p = Path::new("/etc/fail2ban/filter.d/sshd.conf");
        if !p.is_file() {
            return palisade_testkit::require_or_skip("F2B", "fail2ban filters not installed");
        }
        let def = FilterDef::load(p, &LoadOptions::default()).unwrap();
        let (pr, h) = (def.pref.as_ref().unwrap(), def.pref_head.as_ref().unwrap());
        let (mut sp, mut sh) = (pr.pat.slots(), h.pat.slots());
        let content = pr.group(KNOWN.content).unwrap();
        for l in [
            " bastion sshd[1]: Invalid user a from 1.2.3.4 port 5",
            " bastion sshd[1]: error: PAM: Authentication failure for x from 1.2.3.4",
            " bastion sshd[1]:",
            " bastion sshd[1]: ",
            " bastion sshd[1]:  ",
            " bastion",
            " ",
            "",
            "x",
            " bastion CRON[2]: pam_unix(cron:session): session opened",
            "[] <auth.info> host kernel: [ 1.5]: sshd[3]: [ID 1 auth.info] fatal: x",
            " host sshd(pam_unix)[7]: error: ",
            " host sshd(pam_unix)[7]: error:  y",
            " host sshd\u{e9}[7]: \u{e9}",
        ] {
            let buf = format!("{l}\n");
            let full = pr.pat.search(&buf, 0, &mut sp);
            let end = buf.len() - 1;
            let split = h
                .pat
                .find_at(&buf, 0)
                .and_then(|(_, e)| (e < end && !buf[e..end].contains('\n')).then_some((e, end)));
            match split {
                Some(c) => {
                    assert!(full, "{l:?}");
                    assert_eq!(sp.get(content), Some(c), "{l:?}");
                    assert!(h.pat.search(&buf, 0, &mut sh));
                    for (name, gi) in &h.named {
                        assert_eq!(
                            sh.get(*gi),
                            sp.get(pr.group(*name).unwrap()),
                            "{l:?} {name}"
                        );
                    }
                }
                None => {
                    if h.pat.find_at(&buf, 0).is_none() {
                        assert!(!full, "{l:?}");
                    }
                }
            }
        }
    }
}
