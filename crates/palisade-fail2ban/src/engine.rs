//! A compiled Python-syntax pattern: the `regex` crate when possible, `fancy-regex` otherwise
//! (behind a relaxed `regex` pre-check), with reusable capture slots and an optional
//! per-stream memo of capture results ([`Memo`]).

use crate::pyre::{PyReError, PyRegex, GUARD_GROUP};
use regex_automata::util::captures::Captures;
use regex_automata::{meta, Input};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::OnceLock;

/// Capture positions of the last search, reused across searches (no allocation on the
/// `regex`-crate path).
#[derive(Debug, Clone, Default)]
pub struct Slots {
    /// `(start, end)` per group index; `None` when the group did not participate.
    pub pos: Vec<Option<(usize, usize)>>,
    locs: Option<regex::CaptureLocations>,
    acaps: Option<Captures>,
}

impl Slots {
    /// Span of group `i`.
    pub fn get(&self, i: usize) -> Option<(usize, usize)> {
        self.pos.get(i).copied().flatten()
    }
}

/// The ASCII form of a `regex`-crate pattern (`\w`, `\d`, `\s`, `\b` ASCII-only): exact on
/// ASCII text, much smaller automata.
#[derive(Debug)]
struct Ascii {
    re: meta::Regex,
    src: String,
    /// Byte → equivalence class of the pattern's automaton, built on first use by a
    /// [`Memo`]; `None` when memoising is not sound for this pattern.
    classes: OnceLock<Option<Box<[u8; 256]>>>,
}

fn ascii_meta(p: &str) -> Option<Ascii> {
    let re = meta::Regex::builder()
        .configure(
            meta::Config::new()
                // only ever run on ASCII text: no code point to split
                .utf8_empty(false)
                .nfa_size_limit(Some(SIZE_LIMIT))
                .hybrid_cache_capacity(16 << 20),
        )
        .syntax(
            regex_automata::util::syntax::Config::new()
                .unicode(false)
                .utf8(false),
        )
        .build(p)
        .ok()?;
    Some(Ascii {
        re,
        src: p.to_string(),
        classes: OnceLock::new(),
    })
}

#[derive(Debug)]
enum Engine {
    /// The `regex` crate. `uni` is exact everywhere (built on first non-ASCII text when an
    /// ASCII form exists); `ascii` is exact on ASCII text. With guards (see
    /// [`PyRegex::to_guarded`]) a match whose guards fail is decided by the exact
    /// backtracking form.
    Auto {
        uni_src: String,
        uni: OnceLock<Result<regex::Regex, String>>,
        ascii: Option<Ascii>,
        /// (emitted group, literal that may not start inside its span).
        guards: Vec<(usize, memchr::memmem::Finder<'static>)>,
        /// The exact backtracking form, for guarded patterns (built on first need).
        fancy: Option<(Box<PyRegex>, LazyPattern)>,
    },
    Fancy {
        /// The exact form (`None`: it did not compile). Built at load for a filter's own
        /// backtracking patterns (its errors are the filter's); for the exact form of a
        /// guarded pattern, which is built during a search, only when a non-ASCII text
        /// needs it.
        exact: OnceLock<Option<Box<fancy_regex::Regex>>>,
        exact_src: String,
        /// The same with ASCII-only classes (exact on ASCII text, much smaller automata).
        exact_ascii: Option<Box<fancy_regex::Regex>>,
        /// The relaxed pre-check for non-ASCII text (built on first need, like `exact`).
        relaxed: OnceLock<Option<regex::Regex>>,
        relaxed_src: String,
        relaxed_ascii: Option<regex::bytes::Regex>,
    },
}

/// A compiled pattern.
#[derive(Debug)]
pub struct Pattern {
    engine: Engine,
    names: Vec<Option<String>>,
    /// Regex group index → Python group index (copies made by the conditional transform map
    /// to the same Python group; [`GUARD_GROUP`] for the groups of guards).
    logical: Vec<u32>,
    source: String,
    literals: Option<Vec<String>>,
    /// Every match starts at the search start with one of these (see [`Pattern::may_match_at`]).
    starts: Option<StartGate>,
    /// A `regex`-crate pattern matching wherever this one matches (the exact one, the
    /// guarded form, or the relaxed form of a backtracking pattern), if any.
    superset: Option<String>,
    /// For [`Self::find_start`] (built on first use).
    start_dfa: OnceLock<Option<StartDfa>>,
}

/// A pattern compiled on first need (`None`: it did not compile).
type LazyPattern = OnceLock<Option<Box<Pattern>>>;

/// Shape → capture positions (`2 × groups`, `u32::MAX` for a group that did not take part),
/// or `None` for "no match".
type MemoMap = HashMap<Box<[u8]>, Option<Box<[u32]>>, BuildHasherDefault<rustc_hash::FxHasher>>;

/// Most bytes (keys, values and a per-entry allowance) a [`Memo`] holds before it starts over.
const MEMO_BYTES: usize = 1 << 20;
/// Per-entry allowance of [`MEMO_BYTES`]: the map slot and the two allocations' headers.
const MEMO_ENTRY: usize = 64;

/// Capture results of one pattern by the shape of the text searched: the sequence of the
/// automaton's byte equivalence classes. Two texts with the same sequence cannot be told apart
/// by the automaton (every transition and look-around test sees only classes), so they have
/// the same match and the same capture positions; the guard literals are required to be made
/// of single-byte classes so that guards are decided by the shape too. Bounded: when full it
/// starts over.
#[derive(Debug, Default)]
pub struct Memo {
    map: MemoMap,
    key: Vec<u8>,
    /// Bytes held, as counted against [`MEMO_BYTES`].
    bytes: usize,
    /// Lookups answered from the memo.
    pub hits: u64,
    /// Lookups that ran the automaton.
    pub misses: u64,
}
/// Literal prefixes one of which begins every match of a pattern anchored at the search start.
#[derive(Debug)]
struct StartGate {
    /// Bit `b` set: some prefix starts with byte `b`.
    first: [u64; 4],
    prefixes: Vec<Vec<u8>>,
}

/// The literal prefixes of a `regex`-syntax pattern that only matches at the search start
/// (`\A` in front of every match), if every match is known to begin with one of them.
fn start_gate(src: &str) -> Option<StartGate> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = start_anchored(src)?;
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let lits = seq.literals()?;
    if lits.is_empty() || lits.iter().any(|l| l.as_bytes().is_empty()) {
        return None;
    }
    let mut first = [0u64; 4];
    for l in lits {
        let b = l.as_bytes()[0] as usize;
        first[b >> 6] |= 1 << (b & 63);
    }
    Some(StartGate {
        first,
        prefixes: lits.iter().map(|l| l.as_bytes().to_vec()).collect(),
    })
}

/// The syntax tree of a `regex`-syntax pattern that only matches at the search start (`\A`
/// in front of every match).
fn start_anchored(src: &str) -> Option<regex_syntax::hir::Hir> {
    let hir = regex_syntax::ParserBuilder::new().build().parse(src).ok()?;
    let look = hir.properties().look_set_prefix();
    look.contains(regex_syntax::hir::Look::Start).then_some(hir)
}

/// A forward lazy DFA of patterns that only match at the start of the text, for the end of
/// the leftmost-first match: what the `meta` regex's automaton computes, without a `meta`
/// search's setup per call (no captures, no strategy choice, and the scratch space is the
/// caller's, not a pool's). ASCII forms (`(?-u)`), so only for ASCII text.
#[derive(Debug)]
pub struct StartDfa {
    dfa: regex_automata::hybrid::dfa::DFA,
}

/// Scratch space of a [`StartDfa`] (one per thread, each for one automaton).
#[derive(Debug, Default)]
pub struct StartCache(Option<regex_automata::hybrid::dfa::Cache>);

impl StartDfa {
    /// The automaton of `sources` (pattern ids in order), if each only matches at the start.
    fn build(sources: &[String], capacity: usize) -> Option<StartDfa> {
        use regex_automata::{hybrid::dfa, nfa::thompson, util::syntax};
        if !sources.iter().all(|s| start_anchored(s).is_some()) {
            return None;
        }
        let dfa = dfa::DFA::builder()
            .configure(
                dfa::Config::new()
                    .match_kind(regex_automata::MatchKind::LeftmostFirst)
                    .cache_capacity(capacity),
            )
            .syntax(syntax::Config::new().unicode(false).utf8(false))
            .thompson(
                thompson::Config::new()
                    .nfa_size_limit(Some(SIZE_LIMIT))
                    .which_captures(thompson::WhichCaptures::None),
            )
            .build_many(sources)
            .ok()?;
        Some(StartDfa { dfa })
    }

    /// End and pattern id of the leftmost-first match of ASCII `hay` (matches start at 0),
    /// or `Err` if the automaton cannot tell (the caller then asks the `meta` regex).
    fn find(&self, cache: &mut StartCache, hay: &[u8]) -> Result<Option<(usize, usize)>, ()> {
        let dfa = &self.dfa;
        let cache = cache.0.get_or_insert_with(|| dfa.create_cache());
        let input = Input::new(hay).anchored(regex_automata::Anchored::Yes);
        match dfa.try_search_fwd(cache, &input) {
            Ok(m) => Ok(m.map(|m| (m.offset(), m.pattern().as_usize()))),
            Err(_) => Err(()),
        }
    }
}

/// Why a pattern did not compile.
#[derive(Debug, Clone)]
pub struct CompileError(pub String);

impl From<PyReError> for CompileError {
    fn from(e: PyReError) -> Self {
        CompileError(e.to_string())
    }
}

/// Size limit for compiled automata; fail2ban patterns are small but Unicode classes add up.
const SIZE_LIMIT: usize = 64 << 20;

fn ascii_regex(p: &str) -> Option<regex::bytes::Regex> {
    // only for the relaxed pre-check of backtracking patterns
    regex::bytes::RegexBuilder::new(&format!("(?-u){p}"))
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(16 << 20)
        .build()
        .ok()
}

fn fancy_build(p: &str) -> Result<fancy_regex::Regex, String> {
    fancy_regex::RegexBuilder::new(p)
        .backtrack_limit(1_000_000)
        .build()
        .map_err(|e| e.to_string())
}

fn std_regex(p: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(p)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(16 << 20)
        .build()
        .map_err(|e| e.to_string())
}

impl Pattern {
    /// Compiles Python-syntax `source`; `multiline` is `re.MULTILINE`.
    pub fn new(source: &str, multiline: bool) -> Result<Pattern, CompileError> {
        let py = PyRegex::parse(source, multiline)?;
        let names = py.group_names().to_vec();
        let literals = py.required_literals();
        let (src, groups, guards, fancy) = if py.guardable() {
            let (src, groups, guards) = py.to_guarded();
            (src, groups, guards, Some(Box::new(py.clone())))
        } else if !py.needs_fancy() {
            let src = py.to_std();
            let groups = py.emitted_groups();
            (src, groups, Vec::new(), None)
        } else {
            return Pattern::new_fancy(&py, source, false);
        };
        let starts = start_gate(&src);
        let ascii = ascii_meta(&src);
        let uni = OnceLock::new();
        if ascii.is_none() {
            // no ASCII form: the Unicode one is needed for every text, and must compile now
            let _ = uni.set(Ok(std_regex(&src).map_err(CompileError)?));
        } else {
            // the syntax is checked now; the (larger) Unicode automaton is built on first need
            regex_syntax::ParserBuilder::new()
                .build()
                .parse(&src)
                .map_err(|e| CompileError(e.to_string()))?;
        }
        let engine = Engine::Auto {
            uni_src: src.clone(),
            uni,
            ascii,
            guards: guards
                .into_iter()
                .map(|(g, l)| (g, memchr::memmem::Finder::new(l.as_bytes()).into_owned()))
                .collect(),
            fancy: fancy.map(|p| (p, OnceLock::new())),
        };
        let superset = Some(src);
        Ok(Pattern {
            engine,
            names,
            logical: std::iter::once(0).chain(groups).collect(),
            source: source.to_string(),
            literals,
            starts,
            superset,
            start_dfa: OnceLock::new(),
        })
    }

    /// The `fancy-regex` form (exact), with a relaxed `regex` pre-check. With `lazy`, the
    /// forms for non-ASCII text are built on first need.
    fn new_fancy(py: &PyRegex, source: &str, lazy: bool) -> Result<Pattern, CompileError> {
        let names = py.group_names().to_vec();
        let literals = py.required_literals();
        let logical = std::iter::once(0).chain(py.emitted_groups()).collect();
        let fancy = py.to_fancy();
        let exact_ascii = fancy_build(&py.to_fancy_ascii()).ok().map(Box::new);
        let exact = OnceLock::new();
        if !lazy || exact_ascii.is_none() {
            let e = fancy_build(&fancy)
                .map_err(|e| CompileError(format!("{e} (translated: {fancy})")))?;
            let _ = exact.set(Some(Box::new(e)));
        }
        // the relaxed forms are only an optimisation: if they do not compile, skip them
        let rel = py.to_relaxed();
        let starts = start_gate(&rel);
        let relaxed = OnceLock::new();
        if !lazy {
            let _ = relaxed.set(std_regex(&rel).ok());
        }
        let superset = match relaxed.get() {
            Some(r) => r.is_some().then(|| rel.clone()),
            None => None,
        };
        Ok(Pattern {
            superset,
            engine: Engine::Fancy {
                exact,
                exact_src: fancy,
                exact_ascii,
                relaxed,
                relaxed_ascii: ascii_regex(&rel),
                relaxed_src: rel,
            },
            names,
            logical,
            source: source.to_string(),
            literals,
            starts,
            start_dfa: OnceLock::new(),
        })
    }

    /// `false` when a search of `hay` from `start` certainly finds no match: the pattern only
    /// matches at the search start and `hay[start..]` begins with none of its literal
    /// prefixes. `true` means "maybe".
    #[inline]
    pub fn may_match_at(&self, hay: &[u8], start: usize) -> bool {
        let Some(g) = &self.starts else {
            return true;
        };
        let h = &hay[start.min(hay.len())..];
        let Some(&b) = h.first() else {
            return false;
        };
        let b = b as usize;
        g.first[b >> 6] & (1 << (b & 63)) != 0 && g.prefixes.iter().any(|p| h.starts_with(p))
    }

    /// A `regex`-crate pattern that matches wherever this one does (see [`RuleSet`]).
    pub fn superset(&self) -> Option<&str> {
        self.superset.as_deref()
    }

    /// Whether the [`Self::superset`] is this pattern itself on ASCII text, with no guards: a
    /// leftmost-first match of it found elsewhere (by a [`RuleSet`]) ends where this
    /// pattern's own match ends, and can be given to [`Self::search_in`] as `end`.
    pub fn superset_is_exact(&self) -> bool {
        matches!(&self.engine, Engine::Auto { ascii: Some(_), guards, .. } if guards.is_empty())
    }

    /// Whether [`Self::may_match_at`] can rule out anything.
    pub fn has_start_gate(&self) -> bool {
        self.starts.is_some()
    }

    /// The Python source as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the backtracking engine is used.
    pub fn is_fancy(&self) -> bool {
        matches!(self.engine, Engine::Fancy { .. })
    }

    /// Group names by index (0 = whole match, `None`).
    pub fn names(&self) -> &[Option<String>] {
        &self.names
    }

    /// Index of the named group.
    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.as_deref() == Some(name))
    }

    /// Whether every match of this pattern has each of the groups `names` taking part with a
    /// non-empty text: proven on the syntax tree (the group lies on the pattern's top-level
    /// sequence, through groups only, and cannot match the empty string). `false` when
    /// unsure (only patterns that are their own [`Self::superset`] are examined; a group
    /// that may be skipped).
    pub fn groups_always_nonempty(&self, names: &[&str]) -> bool {
        use regex_syntax::hir::{Hir, HirKind};
        fn walk(h: &Hir, want: &dyn Fn(u32) -> bool) -> bool {
            match h.kind() {
                HirKind::Capture(c) if want(c.index) => {
                    c.sub.properties().minimum_len().is_some_and(|n| n > 0)
                }
                HirKind::Capture(c) => walk(&c.sub, want),
                HirKind::Concat(items) => items.iter().any(|x| walk(x, want)),
                _ => false,
            }
        }
        let (true, Some(src)) = (self.superset_is_exact(), &self.superset) else {
            return false;
        };
        let Ok(hir) = regex_syntax::ParserBuilder::new().build().parse(src) else {
            return false;
        };
        names.iter().all(|name| {
            let Some(py) = self.group_index(name) else {
                return false;
            };
            let want = |i: u32| {
                self.logical
                    .get(i as usize)
                    .is_some_and(|&l| l as usize == py)
            };
            walk(&hir, &want)
        })
    }

    /// Literals at least one of which occurs in every match.
    pub fn required_literals(&self) -> Option<&[String]> {
        self.literals.as_deref()
    }

    /// New empty slots sized for this pattern.
    pub fn slots(&self) -> Slots {
        Slots {
            pos: vec![None; self.names.len()],
            locs: None,
            acaps: None,
        }
    }

    /// Python group spans from the engine's groups (`get`), skipping guard groups.
    fn fill(&self, slots: &mut Slots, get: &dyn Fn(usize) -> Option<(usize, usize)>) {
        slots.pos.iter_mut().for_each(|p| *p = None);
        for (i, &l) in self.logical.iter().enumerate() {
            if l != GUARD_GROUP && slots.pos[l as usize].is_none() {
                slots.pos[l as usize] = get(i);
            }
        }
    }

    /// Python `pattern.search(hay, start)`; fills `slots` on success.
    pub fn search(&self, hay: &str, start: usize, slots: &mut Slots) -> bool {
        self.search_in(hay, start, hay.len(), slots, None)
    }

    /// [`Self::search`] for a caller that knows the leftmost match (if any) ends by `end`
    /// (e.g. from [`Self::find_at`]): only `hay[start..end]` is searched, look-around still
    /// seeing the whole text. With a `memo` (and `start == 0`, ASCII text), results are
    /// remembered by the shape of `hay[..end + 1]`; when `end` is the text's end (the caller
    /// does not know), by the match's end `e` and the shape of `hay[..e + 1]` (guarded
    /// patterns: of the whole text).
    pub fn search_in(
        &self,
        hay: &str,
        start: usize,
        end: usize,
        slots: &mut Slots,
        memo: Option<&mut Memo>,
    ) -> bool {
        if slots.pos.len() != self.names.len() {
            *slots = self.slots();
        }
        let is_ascii = hay.is_ascii();
        match &self.engine {
            Engine::Auto {
                uni_src,
                uni,
                ascii,
                guards,
                fancy,
            } => {
                let bytes = hay.as_bytes();
                let end = end.clamp(start, hay.len());
                let holds = |get: &dyn Fn(usize) -> Option<(usize, usize)>| {
                    guards.iter().all(|(g, lit)| match get(*g) {
                        Some((a, b)) if b > a => {
                            let to = (b + lit.needle().len() - 1).min(bytes.len());
                            lit.find(&bytes[a..to]).is_none()
                        }
                        _ => true,
                    })
                };
                let verdict = match ascii {
                    Some(a) if is_ascii => {
                        // the memo's key: shape of everything the capture search may look at.
                        // Without guards that is the leftmost-first match and the byte after
                        // it (look-around); if the caller does not know where the match ends,
                        // the forward automaton finds it, so that the rest of the text (a key
                        // fingerprint, say) does not split the memo.
                        let mut end = end;
                        let memo = memo.filter(|_| start == 0);
                        let look_end = if guards.is_empty() {
                            if memo.is_some() && end == bytes.len() {
                                match a.re.search_half(&Input::new(bytes).range(start..end)) {
                                    None => return false,
                                    Some(m) => end = m.offset(),
                                }
                            }
                            (end + 1).min(bytes.len())
                        } else {
                            bytes.len()
                        };
                        let mut memo =
                            memo.and_then(|m| a.memo_key(&bytes[..look_end], end, guards, m));
                        if let Some(m) = memo.as_deref_mut() {
                            if let Some(v) = m.map.get(&m.key[..]) {
                                m.hits += 1;
                                return match v {
                                    None => false,
                                    Some(v) => {
                                        for (i, p) in slots.pos.iter_mut().enumerate() {
                                            *p = (v[2 * i] != u32::MAX).then(|| {
                                                (v[2 * i] as usize, v[2 * i + 1] as usize)
                                            });
                                        }
                                        true
                                    }
                                };
                            }
                            m.misses += 1;
                        }
                        let mut caps = slots.acaps.take().unwrap_or_else(|| a.re.create_captures());
                        a.re.search_captures(&Input::new(bytes).range(start..end), &mut caps);
                        let get = |i: usize| caps.get_group(i).map(|s| (s.start, s.end));
                        let v = caps.is_match().then(|| {
                            let ok = holds(&get);
                            if ok {
                                self.fill(slots, &get);
                            }
                            ok
                        });
                        if let (Some(m), Some(true) | None) = (memo, v) {
                            let size = MEMO_ENTRY + m.key.len() + 8 * slots.pos.len();
                            if m.bytes + size > MEMO_BYTES {
                                m.map.clear();
                                m.bytes = 0;
                            }
                            m.bytes += size;
                            let val = v.map(|_| {
                                slots
                                    .pos
                                    .iter()
                                    .flat_map(|p| match p {
                                        Some((a, b)) => [*a as u32, *b as u32],
                                        None => [u32::MAX, u32::MAX],
                                    })
                                    .collect::<Box<[u32]>>()
                            });
                            m.map.insert(m.key.as_slice().into(), val);
                        }
                        slots.acaps = Some(caps);
                        v
                    }
                    _ => {
                        let re = match uni.get_or_init(|| std_regex(uni_src)) {
                            Ok(r) => r,
                            Err(_) => return false, // checked at load; only a size limit
                        };
                        let mut locs = match slots.locs.take() {
                            Some(l) if l.len() == self.logical.len() => l,
                            _ => re.capture_locations(),
                        };
                        let v = re.captures_read_at(&mut locs, hay, start).map(|_| {
                            let get = |i: usize| locs.get(i);
                            let ok = holds(&get);
                            if ok {
                                self.fill(slots, &get);
                            }
                            ok
                        });
                        slots.locs = Some(locs);
                        v
                    }
                };
                match verdict {
                    None => false, // the superset has no match
                    Some(true) => true,
                    Some(false) => {
                        let Some((py, exact)) = fancy else {
                            return false;
                        };
                        let exact = exact.get_or_init(|| {
                            Pattern::new_fancy(py, &self.source, true)
                                .ok()
                                .map(Box::new)
                        });
                        let Some(exact) = exact else {
                            return false;
                        };
                        let mut s = exact.slots();
                        let ok = exact.search(hay, start, &mut s);
                        if ok {
                            slots.pos.clone_from(&s.pos);
                        }
                        ok
                    }
                }
            }
            Engine::Fancy {
                exact,
                exact_src,
                exact_ascii,
                relaxed,
                relaxed_src,
                relaxed_ascii,
            } => {
                let pre = match relaxed_ascii {
                    Some(ra) if is_ascii => ra.is_match_at(hay.as_bytes(), start),
                    _ => match relaxed.get_or_init(|| std_regex(relaxed_src).ok()) {
                        Some(r) => r.is_match_at(hay, start),
                        None => true,
                    },
                };
                if !pre {
                    return false;
                }
                let ex = match exact_ascii {
                    Some(e) if is_ascii => e,
                    _ => {
                        let build = || fancy_build(exact_src).ok().map(Box::new);
                        match exact.get_or_init(build) {
                            Some(e) => e,
                            None => return false, // checked at load, or only a size limit
                        }
                    }
                };
                match ex.captures_from_pos(hay, start) {
                    Ok(Some(c)) => {
                        self.fill(slots, &|i| c.get(i).map(|m| (m.start(), m.end())));
                        true
                    }
                    _ => false,
                }
            }
        }
    }

    /// Span of the leftmost match from `start`, without capture groups (automaton only,
    /// unless guards or a backtracking pattern need the captures).
    pub fn find_at(&self, hay: &str, start: usize) -> Option<(usize, usize)> {
        match &self.engine {
            Engine::Auto {
                ascii: Some(a),
                guards,
                ..
            } if guards.is_empty() && hay.is_ascii() => {
                a.re.find(Input::new(hay.as_bytes()).range(start..))
                    .map(|m| (m.start(), m.end()))
            }
            Engine::Auto {
                uni_src,
                uni,
                guards,
                ..
            } if guards.is_empty() => {
                let re = uni.get_or_init(|| std_regex(uni_src)).as_ref().ok()?;
                re.find_at(hay, start).map(|m| (m.start(), m.end()))
            }
            _ => {
                let mut s = self.slots();
                if self.search(hay, start, &mut s) {
                    s.get(0)
                } else {
                    None
                }
            }
        }
    }

    /// [`Self::find_at`] from the start of `hay`, for a pattern that only matches there:
    /// with a [`StartDfa`] on ASCII text (`cache`: the caller's, for this
    /// pattern only), else as `find_at`.
    pub fn find_start(&self, cache: &mut StartCache, hay: &str) -> Option<(usize, usize)> {
        if let Engine::Auto {
            ascii: Some(a),
            guards,
            ..
        } = &self.engine
        {
            if guards.is_empty() && hay.is_ascii() {
                let dfa = self
                    .start_dfa
                    .get_or_init(|| StartDfa::build(std::slice::from_ref(&a.src), 16 << 20));
                if let Some(Ok(m)) = dfa.as_ref().map(|d| d.find(cache, hay.as_bytes())) {
                    return m.map(|(e, _)| (0, e));
                }
            }
        }
        self.find_at(hay, 0)
    }

    /// Whether the pattern matches anywhere in `hay` (from `start`).
    pub fn is_match_at(&self, hay: &str, start: usize) -> bool {
        self.find_at(hay, start).is_some()
    }
}

impl Ascii {
    /// Writes the memo key of a search ending by `end` that may look at all of `look`
    /// into `m.key` and returns the memo, or `None` if memoising is not sound here.
    fn memo_key<'m>(
        &self,
        look: &[u8],
        end: usize,
        guards: &[(usize, memchr::memmem::Finder<'static>)],
        m: &'m mut Memo,
    ) -> Option<&'m mut Memo> {
        let classes = self
            .classes
            .get_or_init(|| {
                let nfa = regex_automata::nfa::thompson::Compiler::new()
                    .syntax(
                        regex_automata::util::syntax::Config::new()
                            .unicode(false)
                            .utf8(false),
                    )
                    .configure(
                        regex_automata::nfa::thompson::Config::new()
                            .nfa_size_limit(Some(SIZE_LIMIT)),
                    )
                    .build(&self.src)
                    .ok()?;
                let bc = nfa.byte_classes();
                let mut t = [0u8; 256];
                for b in 0..=255u8 {
                    t[b as usize] = bc.get(b);
                }
                // a guard is decided by its literal's bytes: each must be a class of its own
                let single = |c: u8| (0..=255u8).filter(|&x| t[x as usize] == c).count() == 1;
                guards
                    .iter()
                    .all(|(_, lit)| lit.needle().iter().all(|&b| single(t[b as usize])))
                    .then(|| Box::new(t))
            })
            .as_deref()?;
        m.key.clear();
        m.key.extend_from_slice(&(end as u32).to_le_bytes());
        m.key.extend(look.iter().map(|&b| classes[b as usize]));
        Some(m)
    }
}

/// One pass over a text telling which of several patterns may match it: a multi-pattern
/// automaton of their [`Pattern::superset`] forms. A pattern without such a form is always a
/// candidate. The ASCII automaton (`(?-u)`, small) serves ASCII text; the Unicode one is built
/// on first need.
#[derive(Debug)]
pub struct RuleSet {
    sources: Vec<String>,
    /// Set pattern id → pattern index.
    ids: Vec<usize>,
    always: Vec<usize>,
    ascii: Option<regex_automata::meta::Regex>,
    uni: std::sync::OnceLock<Option<regex_automata::meta::Regex>>,
    /// When every pattern only matches at the start of the text: an ASCII leftmost-first
    /// automaton of them, whose match names the first pattern (in order) that matches (built
    /// on first use).
    first: std::sync::OnceLock<Option<StartDfa>>,
    len: usize,
}

/// The automaton of several patterns for overlapping searches (which of them match).
fn build_set(sources: &[String], unicode: bool) -> Option<regex_automata::meta::Regex> {
    use regex_automata::{meta, util::syntax, MatchKind};
    meta::Regex::builder()
        .configure(
            meta::Config::new()
                .match_kind(MatchKind::All)
                // the ASCII automata only ever run on ASCII text: no code point to split
                .utf8_empty(unicode)
                .nfa_size_limit(Some(SIZE_LIMIT))
                .hybrid_cache_capacity(4 << 20),
        )
        .syntax(syntax::Config::new().unicode(unicode).utf8(unicode))
        .build_many(sources)
        .ok()
}

impl RuleSet {
    /// The set of `patterns` (all candidates when none has a `regex`-crate form).
    pub fn new<'a>(patterns: impl IntoIterator<Item = &'a Pattern>) -> RuleSet {
        let mut sources = Vec::new();
        let mut ids = Vec::new();
        let mut always = Vec::new();
        let mut len = 0;
        for (i, p) in patterns.into_iter().enumerate() {
            len += 1;
            match p.superset() {
                Some(s) => {
                    sources.push(s.to_string());
                    ids.push(i);
                }
                None => always.push(i),
            }
        }
        let ascii = if sources.is_empty() {
            None
        } else {
            build_set(&sources, false)
        };
        RuleSet {
            sources,
            ids,
            always,
            ascii,
            uni: std::sync::OnceLock::new(),
            first: std::sync::OnceLock::new(),
            len,
        }
    }

    fn build_first(&self) -> Option<StartDfa> {
        if self.sources.is_empty() || !self.always.is_empty() {
            return None;
        }
        StartDfa::build(&self.sources, 4 << 20)
    }

    /// For a caller that stops at the first pattern that matches: marks in `cand` that
    /// pattern and every later one (tried only if it fails to match exactly), from one
    /// leftmost-first pass when every pattern is anchored at the start; else as
    /// [`Self::select`]. Returns whether any may match; `end` is set to that first pattern
    /// and where its superset's leftmost-first match ends, when the pass found one (see
    /// [`Pattern::superset_is_exact`]), else `None`. `cache`: the caller's scratch for this
    /// set.
    pub fn select_first(
        &self,
        hay: &str,
        ps: &mut regex_automata::PatternSet,
        cand: &mut [bool],
        cache: &mut StartCache,
        end: &mut Option<(usize, usize)>,
    ) -> bool {
        *end = None;
        let first = match hay.is_ascii() {
            true => self.first.get_or_init(|| self.build_first()).as_ref(),
            false => None,
        };
        let found = match first.map(|f| f.find(cache, hay.as_bytes())) {
            Some(Ok(m)) => m,
            _ => return self.select(hay, ps, cand),
        };
        match found {
            None => {
                cand.iter_mut().for_each(|c| *c = false);
                false
            }
            Some((e, id)) => {
                let p = self.ids[id];
                for (i, c) in cand.iter_mut().enumerate() {
                    *c = i >= p;
                }
                *end = Some((p, e));
                true
            }
        }
    }

    /// A reusable result buffer.
    pub fn pattern_set(&self) -> regex_automata::PatternSet {
        regex_automata::PatternSet::new(self.ids.len().max(1))
    }

    /// Marks in `cand` the patterns that may match `hay` (`ps`: scratch from
    /// [`Self::pattern_set`]); returns whether any may.
    pub fn select(
        &self,
        hay: &str,
        ps: &mut regex_automata::PatternSet,
        cand: &mut [bool],
    ) -> bool {
        debug_assert_eq!(cand.len(), self.len);
        let set = match &self.ascii {
            Some(a) if hay.is_ascii() => Some(a),
            _ if self.sources.is_empty() => None,
            _ => self
                .uni
                .get_or_init(|| build_set(&self.sources, true))
                .as_ref(),
        };
        let Some(set) = set else {
            // no usable automaton: every pattern is a candidate
            cand.iter_mut().for_each(|c| *c = true);
            return self.len > 0;
        };
        cand.iter_mut().for_each(|c| *c = false);
        let mut any = false;
        for &i in &self.always {
            cand[i] = true;
            any = true;
        }
        ps.clear();
        set.which_overlapping_matches(&regex_automata::Input::new(hay), ps);
        for id in ps.iter() {
            cand[self.ids[id.as_usize()]] = true;
            any = true;
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memoised searches give what plain ones give, including when the text after the match
    /// differs (the key then covers only the match and the byte after it) and when the
    /// automaton had to read past the match to find where it ends.
    #[test]
    fn memo_agrees_with_plain_search() {
        let patterns = [
            r"^(?P<a>abcd|ab)",
            r"^Accepted (?P<m>\w+) for (?P<u>\S+) from (?P<h>\d+\.\d+)(?:\s|$)",
            r"^x(?P<n>\d+)y?$",
            r"^(?P<w>\w+) (?P<rest>(?:(?! from ).)*)$",
        ];
        let texts = [
            "abcx\n",
            "abcd\n",
            "abcdef\n",
            "ab\n",
            "Accepted password for carol from 10.20 port 1 ssh2: ED25519 SHA256:3025\n",
            "Accepted password for carol from 10.20 port 1 ssh2: ED25519 SHA256:ffff\n",
            "Accepted publickey for dave from 11.21\n",
            "Accepted publickey for dave from 11.21x\n",
            "x12y\n",
            "x12\n",
            "x12yz\n",
            "one two three\n",
            "one two from three\n",
            "uno dos tres\n",
        ];
        for (k, src) in patterns.into_iter().enumerate() {
            let p = Pattern::new(src, false).expect(src);
            let mut memo = Memo::default();
            for round in 0..2 {
                for t in texts {
                    let mut plain = p.slots();
                    let want = p.search_in(t, 0, t.len(), &mut plain, None);
                    let mut got = p.slots();
                    let found = p.search_in(t, 0, t.len(), &mut got, Some(&mut memo));
                    assert_eq!(found, want, "{src} {t:?} round {round}");
                    if want {
                        assert_eq!(got.pos, plain.pos, "{src} {t:?} round {round}");
                    }
                }
            }
            // (the last one is guarded: its memo key may be unavailable)
            assert!(
                k == 3 || memo.hits > 0,
                "{src}: the second round is answered from the memo"
            );
        }
    }

    /// A group is proven to take part with a non-empty text only on the pattern's top-level
    /// sequence, through groups, and when it cannot match the empty string.
    #[test]
    fn groups_always_nonempty_is_conservative() {
        for (src, nofail, forget) in [
            (
                r"^(?P<nofail>Received (?P<mlfforget>disconnect)) from x",
                true,
                true,
            ),
            (r"^x(?P<nofail>(?P<mlfforget>y)z)", true, true),
            (r"^(?P<nofail>a)?(?P<mlfforget>b)", false, true),
            (r"^(?:(?P<nofail>a)|b)c", false, false),
            (r"^(?P<nofail>a*)b", false, false),
            (r"^(?P<nofail>a)(?:(?P<mlfforget>b))+", true, false),
            (r"^(?P<x>a)b", false, false),
        ] {
            let p = Pattern::new(src, false).expect(src);
            assert_eq!(p.groups_always_nonempty(&["nofail"]), nofail, "{src}");
            assert_eq!(p.groups_always_nonempty(&["mlfforget"]), forget, "{src}");
            let both = p.groups_always_nonempty(&["nofail", "mlfforget"]);
            assert_eq!(both, nofail && forget, "{src}");
        }
        // a backtracking pattern is never claimed
        let p = Pattern::new(r"^(?P<nofail>a)(?=b)", false).unwrap();
        assert!(!p.groups_always_nonempty(&["nofail"]));
    }

    /// The start automaton ends matches where the `meta` regex does, alone and
    /// as a leftmost-first set (which pattern, and where), including empty matches, matches
    /// at the end of the text, look-around and texts no pattern matches.
    #[test]
    fn start_dfa_agrees_with_meta() {
        let patterns: Vec<String> = [
            r"^(?:\S+ )?(?:sshd(?:\[\d+\])?: )?",
            r"^a(?:b|bc)",
            r"^x\b",
            r"^abc$",
            r"^(?:ab|a)c?",
            r"^Received disconnect from (?:\d+\.){3}\d+ port \d+:\s*11:",
            r"^(?:\s*\w+)*",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let texts = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "x",
            "x y",
            "xy",
            "host sshd[12]: Failed",
            "host sshd: x",
            "sshd[1]: ",
            " ",
            "Received disconnect from 1.2.3.4 port 22:11: bye",
            "Received disconnect from 1.2.3.4 port 22:3: bye",
            "word word  word!",
        ];
        let meta = |srcs: &[String]| {
            meta::Regex::builder()
                .configure(meta::Config::new().match_kind(regex_automata::MatchKind::LeftmostFirst))
                .syntax(
                    regex_automata::util::syntax::Config::new()
                        .unicode(false)
                        .utf8(false),
                )
                .build_many(srcs)
                .unwrap()
        };
        let check = |srcs: &[String]| {
            let dfa = StartDfa::build(srcs, 1 << 20).expect("anchored patterns");
            let re = meta(srcs);
            let mut cache = StartCache::default();
            for t in texts {
                let input = Input::new(t).anchored(regex_automata::Anchored::Yes);
                let want = re
                    .search_half(&input)
                    .map(|m| (m.offset(), m.pattern().as_usize()));
                let got = dfa.find(&mut cache, t.as_bytes()).expect("no quit bytes");
                assert_eq!(got, want, "{srcs:?} {t:?}");
            }
        };
        for p in &patterns {
            check(std::slice::from_ref(p));
        }
        check(&patterns);
        let mut rev = patterns.clone();
        rev.reverse();
        check(&rev);
        assert!(
            StartDfa::build(&["a".to_string()], 1 << 20).is_none(),
            "not anchored"
        );
    }
}
