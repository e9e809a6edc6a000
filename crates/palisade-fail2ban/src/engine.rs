//! A compiled Python-syntax pattern: the `regex` crate when possible, `fancy-regex` otherwise
//! (behind a relaxed `regex` pre-check), with reusable capture slots.

use crate::pyre::{PyReError, PyRegex};

/// Capture positions of the last search, reused across searches (no allocation on the
/// `regex`-crate path).
#[derive(Debug, Clone, Default)]
pub struct Slots {
    /// `(start, end)` per group index; `None` when the group did not participate.
    pub pos: Vec<Option<(usize, usize)>>,
    locs: Option<regex::CaptureLocations>,
    blocs: Option<regex::bytes::CaptureLocations>,
}

impl Slots {
    /// Span of group `i`.
    pub fn get(&self, i: usize) -> Option<(usize, usize)> {
        self.pos.get(i).copied().flatten()
    }
}

#[derive(Debug)]
enum Engine {
    /// `uni` is exact everywhere; `ascii` (`(?-u)`, small automata) is exact on ASCII text.
    Std {
        uni: regex::Regex,
        ascii: Option<regex::bytes::Regex>,
    },
    Fancy {
        exact: Box<fancy_regex::Regex>,
        /// The same with ASCII-only classes (exact on ASCII text, much smaller automata).
        exact_ascii: Option<Box<fancy_regex::Regex>>,
        relaxed: Option<regex::Regex>,
        relaxed_ascii: Option<regex::bytes::Regex>,
    },
}

/// A compiled pattern.
#[derive(Debug)]
pub struct Pattern {
    engine: Engine,
    names: Vec<Option<String>>,
    /// Regex group index → Python group index (copies made by the conditional transform map
    /// to the same Python group).
    logical: Vec<usize>,
    source: String,
    literals: Option<Vec<String>>,
    /// Every match starts at the search start with one of these (see [`Pattern::may_match_at`]).
    starts: Option<StartGate>,
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
    use regex_syntax::hir::Look;
    let hir = regex_syntax::ParserBuilder::new().build().parse(src).ok()?;
    if !hir.properties().look_set_prefix().contains(Look::Start) {
        return None;
    }
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
    regex::bytes::RegexBuilder::new(&format!("(?-u){p}"))
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(16 << 20)
        .build()
        .ok()
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
        let starts;
        let mut logical = vec![0usize];
        logical.extend(py.emitted_groups().into_iter().map(|g| g as usize));
        let engine = if !py.needs_fancy() {
            let src = py.to_std();
            starts = start_gate(&src);
            Engine::Std {
                uni: std_regex(&src).map_err(CompileError)?,
                ascii: ascii_regex(&src),
            }
        } else {
            let build = |p: &str| {
                fancy_regex::RegexBuilder::new(p)
                    .backtrack_limit(1_000_000)
                    .build()
                    .map_err(|e| e.to_string())
            };
            let fancy = py.to_fancy();
            let exact =
                build(&fancy).map_err(|e| CompileError(format!("{e} (translated: {fancy})")))?;
            let exact_ascii = build(&py.to_fancy_ascii()).ok().map(Box::new);
            // the relaxed forms are only an optimisation: if they do not compile, skip them
            let rel = py.to_relaxed();
            starts = start_gate(&rel);
            Engine::Fancy {
                exact: Box::new(exact),
                exact_ascii,
                relaxed: std_regex(&rel).ok(),
                relaxed_ascii: ascii_regex(&rel),
            }
        };
        Ok(Pattern {
            engine,
            names,
            logical,
            source: source.to_string(),
            literals,
            starts,
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

    /// Literals at least one of which occurs in every match.
    pub fn required_literals(&self) -> Option<&[String]> {
        self.literals.as_deref()
    }

    /// New empty slots sized for this pattern.
    pub fn slots(&self) -> Slots {
        let mut s = Slots {
            pos: vec![None; self.names.len()],
            locs: None,
            blocs: None,
        };
        if let Engine::Std { uni, ascii } = &self.engine {
            s.locs = Some(uni.capture_locations());
            s.blocs = ascii.as_ref().map(|a| a.capture_locations());
        }
        s
    }

    fn fill(&self, slots: &mut Slots, get: impl Fn(usize) -> Option<(usize, usize)>) {
        slots.pos.iter_mut().for_each(|p| *p = None);
        for (i, &l) in self.logical.iter().enumerate() {
            if slots.pos[l].is_none() {
                slots.pos[l] = get(i);
            }
        }
    }

    /// Python `pattern.search(hay, start)`; fills `slots` on success.
    pub fn search(&self, hay: &str, start: usize, slots: &mut Slots) -> bool {
        if slots.pos.len() != self.names.len() {
            *slots = self.slots();
        }
        let ascii = hay.is_ascii();
        match &self.engine {
            Engine::Std { ascii: Some(a), .. } if ascii => {
                let mut locs = match slots.blocs.take() {
                    Some(l) if l.len() == self.logical.len() => l,
                    _ => a.capture_locations(),
                };
                let ok = a
                    .captures_read_at(&mut locs, hay.as_bytes(), start)
                    .is_some();
                if ok {
                    self.fill(slots, |i| locs.get(i));
                }
                slots.blocs = Some(locs);
                ok
            }
            Engine::Std { uni, .. } => {
                let mut locs = match slots.locs.take() {
                    Some(l) if l.len() == self.logical.len() => l,
                    _ => uni.capture_locations(),
                };
                let ok = uni.captures_read_at(&mut locs, hay, start).is_some();
                if ok {
                    self.fill(slots, |i| locs.get(i));
                }
                slots.locs = Some(locs);
                ok
            }
            Engine::Fancy {
                exact,
                exact_ascii,
                relaxed,
                relaxed_ascii,
            } => {
                let pre = match (relaxed_ascii, relaxed) {
                    (Some(ra), _) if ascii => ra.is_match_at(hay.as_bytes(), start),
                    (_, Some(r)) => r.is_match_at(hay, start),
                    _ => true,
                };
                if !pre {
                    return false;
                }
                let ex = match exact_ascii {
                    Some(e) if ascii => e,
                    _ => exact,
                };
                match ex.captures_from_pos(hay, start) {
                    Ok(Some(c)) => {
                        self.fill(slots, |i| c.get(i).map(|m| (m.start(), m.end())));
                        true
                    }
                    _ => false,
                }
            }
        }
    }

    /// Span of the leftmost match from `start`, without capture groups (automaton only).
    pub fn find_at(&self, hay: &str, start: usize) -> Option<(usize, usize)> {
        match &self.engine {
            Engine::Std { ascii: Some(a), .. } if hay.is_ascii() => a
                .find_at(hay.as_bytes(), start)
                .map(|m| (m.start(), m.end())),
            Engine::Std { uni, .. } => uni.find_at(hay, start).map(|m| (m.start(), m.end())),
            Engine::Fancy { .. } => {
                let mut s = self.slots();
                if self.search(hay, start, &mut s) {
                    s.get(0)
                } else {
                    None
                }
            }
        }
    }

    /// Whether the pattern matches anywhere in `hay` (from `start`).
    pub fn is_match_at(&self, hay: &str, start: usize) -> bool {
        match &self.engine {
            Engine::Std { uni, .. } => uni.is_match_at(hay, start),
            Engine::Fancy { exact, relaxed, .. } => {
                if let Some(rx) = relaxed {
                    if !rx.is_match_at(hay, start) {
                        return false;
                    }
                }
                matches!(exact.find_from_pos(hay, start), Ok(Some(_)))
            }
        }
    }
}
