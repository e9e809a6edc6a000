//! Date detection with fail2ban's semantics.
//!
//! A `datepattern` is a regular expression with strptime-like `%` directives (`%b %d %H:%M:%S`,
//! fail2ban's exact `%Ex*` variants, `%k`, `%z`…), optionally prefixed by `{^LN-BEG}` (anchor at
//! line start, allowing up to two non-word characters before the date) or `{UNB}` (no word
//! boundaries), or one of the special names `Epoch`, `LEpoch`, `TAI64N`, `{^LN-BEG}`,
//! `{DEFAULT}`, `{NONE}`, or a pattern containing `{DATE}` (the default templates wrapped in
//! it). Without a datepattern, fail2ban's default template list is used, anchored variants
//! (weight 100) first.
//!
//! The detector keeps fail2ban's adaptive state: the template that matched last is tried
//! first (within the same character boundaries), a template matching farther from the line
//! start than before is only a fallback, and templates that keep matching move up the list.
//! Year-less dates resolve against "now" (never more than a day in the future), dates without
//! a zone are local time in the configured zone.

use crate::engine::{Pattern, Slots};
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use palisade_core::Timestamp;
use std::sync::{Arc, OnceLock};

/// Template flag: anchored at line begin.
const LINE_BEGIN: u8 = 8;
/// Template flag: anchored at line end.
const LINE_END: u8 = 4;
/// Template flag: word boundary before.
const WORD_BEGIN: u8 = 2;
/// Template flag: word boundary after.
const WORD_END: u8 = 1;

/// An invalid datepattern.
#[derive(Debug, Clone)]
pub struct DateError(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WordBegin {
    No,
    Yes,
    Start,
}

#[derive(Debug)]
enum Kind {
    /// strptime-style pattern; named groups are directives.
    Pattern,
    /// Seconds since the epoch in group `grp`; `long` accepts milli/microsecond forms.
    Epoch { grp: usize, long: bool },
    /// `@4000…` TAI64N label.
    Tai64n,
}

/// One compiled date template.
#[derive(Debug)]
pub struct Template {
    name: String,
    /// The pattern as written (for `{DATE}` wrapping), if it is a pattern template.
    pattern: Option<String>,
    kind: Kind,
    re: TemplateRe,
    flags: u8,
    weight: f64,
    /// (directive, group index) for pattern templates.
    fields: Vec<(Directive, usize)>,
    /// Hand-written matcher for the common syslog form of this exact template, if any.
    fast: Option<FastBsd>,
}

/// Group indices of the line-start RFC 3164 template
/// (`{^LN-BEG}(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?`), for [`fast_bsd`].
#[derive(Debug, Clone, Copy)]
struct FastBsd {
    b: usize,
    d: usize,
    h: usize,
    m: usize,
    s: usize,
}

/// Recognises `Mmm dd HH:MM:SS ` at line start followed by a non-digit (or `Mmm  d …`),
/// a strict subset of what the line-start RFC 3164 template matches, for which the regex's
/// leftmost-first match is known: group 1 and the whole match are `0..15`, `%b` `0..3`,
/// `%d` `4..6`, `%k` `7..9`, `%M` `10..12`, `%S` `13..15`, no day name, fraction or year.
/// Anything else returns `false` and the regex decides.
///
/// Why the regex agrees: the first byte is a letter, so `\W{0,2}` is empty; month and day
/// names share no prefix, so the optional day name fails; the day alternatives
/// `[1-2]\d|[0 ]?[1-9]|3[0-1]` take exactly two characters for ` 1`–` 9`, `01`–`09`,
/// `10`–`29` and `30`–`31` (`3` alone fails at the following space); the optional space
/// before the hour is not taken (a digit follows); hour, minute and second take two digits
/// each; the fraction needs `.`, the year needs a digit after the space, and the closing
/// `(?=\b|\W|$)` holds before the space.
fn fast_bsd(b: &[u8]) -> bool {
    if b.len() < 16 {
        return false;
    }
    // the month: three letters, in any case (`| 0x20` lowers a letter)
    let month = u32::from_le_bytes([b[0], b[1], b[2], 0]) | 0x20_20_20;
    if !b[..3].iter().all(u8::is_ascii_alphabetic) || !MONTH_KEYS.contains(&month) {
        return false;
    }
    let dig = |c: u8| c.is_ascii_digit();
    let day_ok = match (b[4], b[5]) {
        (b' ', c) => (b'1'..=b'9').contains(&c),
        (b'0', c) => (b'1'..=b'9').contains(&c),
        (b'1' | b'2', c) => dig(c),
        (b'3', c) => c == b'0' || c == b'1',
        _ => false,
    };
    let hour_ok = match (b[7], b[8]) {
        (b'0' | b'1', c) => dig(c),
        (b'2', c) => (b'0'..=b'3').contains(&c),
        _ => false,
    };
    b[3] == b' '
        && day_ok
        && b[6] == b' '
        && hour_ok
        && b[9] == b':'
        && (b'0'..=b'5').contains(&b[10])
        && dig(b[11])
        && b[12] == b':'
        && (b'0'..=b'5').contains(&b[13])
        && dig(b[14])
        && b[15] == b' '
        && !b.get(16).copied().is_some_and(dig)
}

/// The regex of the line-start RFC 3164 default template, as [`Template::pattern`] builds it;
/// the fast path is only used for a template compiled from exactly this.
fn bsd_regex(now_year: i16) -> String {
    format!(
        "(?iu)^(?:\\W{{0,2}})?((?:(?P<a>mon|tue|wed|thu|fri|sat|sun) )?(?P<b>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec) (?P<d>[1-2]\\d|[0 ]?[1-9]|3[0-1])  ?(?P<H>[0-2]?\\d):(?P<M>[0-5]?\\d):(?P<S>[0-5]?\\d|6[0-1])(?:\\.(?P<f>[0-9]{{1,6}}))?(?: {})?)(?=\\b|\\W|$)",
        ex_year_re(now_year)
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Directive {
    Y,
    LowY,
    Mon,
    MonName,
    MonFull,
    Day,
    H,
    I,
    M,
    S,
    P,
    J,
    Zone,
    Other,
}

fn directive_of(name: &str) -> Directive {
    match name {
        "Y" => Directive::Y,
        "y" => Directive::LowY,
        "m" => Directive::Mon,
        "b" => Directive::MonName,
        "B" => Directive::MonFull,
        "d" => Directive::Day,
        "H" => Directive::H,
        "I" => Directive::I,
        "M" => Directive::M,
        "S" => Directive::S,
        "p" => Directive::P,
        "j" => Directive::J,
        "z" | "Z" => Directive::Zone,
        _ => Directive::Other,
    }
}

/// [`MONTHS`] as little-endian `u32`s (for [`fast_bsd`]).
const MONTH_KEYS: [u32; 12] = {
    let mut k = [0u32; 12];
    let mut i = 0;
    while i < 12 {
        let m = MONTHS[i].as_bytes();
        k[i] = u32::from_le_bytes([m[0], m[1], m[2], 0]);
        i += 1;
    }
    k
};

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const MONTHS_FULL: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Years accepted by `%ExY`: from 2000 (or the year before `now`, if earlier) to three years
/// after `now`, as three-digit prefixes.
fn ex_year_re(now_year: i16) -> String {
    let mut pre: Vec<String> = Vec::new();
    let lo = 2000.min(now_year as i32 - 1);
    let hi = now_year as i32 + 3;
    for y in lo..=hi {
        let p = y.to_string()[..3].to_string();
        if !pre.contains(&p) {
            pre.push(p);
        }
    }
    format!("(?P<Y>(?:{})\\d)", pre.join("|"))
}

/// Regex for a strptime directive (fail2ban's table over Python's `_strptime.TimeRE`).
fn directive_re(key: &str, now_year: i16) -> Option<String> {
    const TZA: &str = "[A-Z](?:[A-Z]{2,4})?";
    Some(
        match key {
            "%" => "%".into(),
            "a" => "(?P<a>mon|tue|wed|thu|fri|sat|sun)".into(),
            "A" => "(?P<A>wednesday|thursday|saturday|tuesday|monday|friday|sunday)".into(),
            "b" => "(?P<b>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)".into(),
            "B" => "(?P<B>september|february|november|december|january|october|august|march|april|june|july|may)".into(),
            "c" => "(?P<a>mon|tue|wed|thu|fri|sat|sun)\\s+(?P<b>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)\\s+(?P<d>3[01]|[12]\\d|0[1-9]|[1-9]| [1-9])\\s+(?P<H>2[0-3]|[0-1]\\d|\\d):(?P<M>[0-5]\\d|\\d):(?P<S>6[0-1]|[0-5]\\d|\\d)\\s+(?P<Y>\\d\\d\\d\\d)".into(),
            "x" => "(?P<m>1[0-2]|0[1-9]|[1-9])/(?P<d>3[01]|[12]\\d|0[1-9]|[1-9]| [1-9])/(?P<y>\\d\\d)".into(),
            "X" => "(?P<H>2[0-3]|[0-1]\\d|\\d):(?P<M>[0-5]\\d|\\d):(?P<S>6[0-1]|[0-5]\\d|\\d)".into(),
            "d" => "(?P<d>[1-2]\\d|[0 ]?[1-9]|3[0-1])".into(),
            "f" => "(?P<f>[0-9]{1,6})".into(),
            "H" => "(?P<H>[0-1]?\\d|2[0-3])".into(),
            "I" => "(?P<I>1[0-2]|0[1-9]|[1-9])".into(),
            "G" => "(?P<G>\\d\\d\\d\\d)".into(),
            "j" => "(?P<j>36[0-6]|3[0-5]\\d|[1-2]\\d\\d|0[1-9]\\d|00[1-9]|[1-9]\\d|0[1-9]|[1-9])".into(),
            "m" => "(?P<m>0?[1-9]|1[0-2])".into(),
            "M" => "(?P<M>[0-5]?\\d)".into(),
            "p" => "(?P<p>am|pm)".into(),
            "S" => "(?P<S>[0-5]?\\d|6[0-1])".into(),
            "U" => "(?P<U>5[0-3]|[0-4]\\d|\\d)".into(),
            "w" => "(?P<w>[0-6])".into(),
            "u" => "(?P<u>[1-7])".into(),
            "V" => "(?P<V>5[0-3]|0[1-9]|[1-4]\\d|\\d)".into(),
            "W" => "(?P<W>5[0-3]|[0-4]\\d|\\d)".into(),
            "y" => "(?P<y>\\d\\d)".into(),
            "Y" => "(?P<Y>\\d{4})".into(),
            "z" => "(?P<z>Z|UTC|GMT|[+-][01]\\d(?::?\\d{2})?)".into(),
            "Z" => "(?P<Z>Z|[A-Z]{3,5})".into(),
            "k" => " ?(?P<H>[0-2]?\\d)".into(),
            "l" => " ?(?P<I>1?\\d)".into(),
            "ExZ" => format!("(?P<Z>{TZA})"),
            "Exz" => format!("(?P<z>(?:{TZA})?[+-][01]\\d(?::?\\d{{2}})?|{TZA})"),
            "Exd" => "(?P<d>[1-2]\\d|0[1-9]|3[0-1])".into(),
            "Exm" => "(?P<m>0[1-9]|1[0-2])".into(),
            "ExH" => "(?P<H>[0-1]\\d|2[0-3])".into(),
            "Exk" => " ?(?P<H>[0-1]?\\d|2[0-3])".into(),
            "Exl" => " ?(?P<I>1[0-2]|\\d)".into(),
            "ExM" => "(?P<M>[0-5]\\d)".into(),
            "ExS" => "(?P<S>[0-5]\\d|6[0-1])".into(),
            "ExY" => ex_year_re(now_year),
            "Exy" => "(?P<y>\\d{2})".into(),
            _ => return None,
        },
    )
}

const MULTI_KEYS: [&str; 11] = [
    "ExZ", "Exz", "Exd", "Exm", "ExH", "Exk", "Exl", "ExM", "ExS", "ExY", "Exy",
];

/// Expands `%` directives; returns (regex, uses-alpha-directives).
fn expand_directives(pattern: &str, now_year: i16) -> Result<(String, bool), DateError> {
    let mut out = String::new();
    let mut alpha = false;
    let mut rest = pattern;
    let mut prev_pct = false;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let key = MULTI_KEYS
            .iter()
            .find(|k| after.starts_with(**k))
            .map(|k| k.to_string())
            .or_else(|| {
                after
                    .chars()
                    .next()
                    .filter(|c| directive_re(&c.to_string(), now_year).is_some())
                    .map(|c| c.to_string())
            });
        let Some(key) = key else {
            return Err(DateError(format!(
                "invalid format or unescaped percent char in {pattern:?}"
            )));
        };
        if !prev_pct && matches!(key.as_str(), "a" | "A" | "b" | "B" | "p" | "c") {
            alpha = true;
        }
        prev_pct = key == "%";
        out.push_str(&directive_re(&key, now_year).expect("checked"));
        rest = &after[key.len()..];
    }
    out.push_str(rest);
    Ok((out, alpha))
}

/// First `(?flags)` anywhere (fail2ban cuts it and puts it back in front).
fn find_global_flags(re: &str) -> Option<(usize, usize)> {
    let b = re.as_bytes();
    let mut i = 0;
    while i + 3 < b.len() {
        if b[i] == b'(' && b[i + 1] == b'?' {
            let mut j = i + 2;
            while j < b.len() && b[j].is_ascii_lowercase() {
                j += 1;
            }
            if j > i + 2 && j < b.len() && b[j] == b')' {
                return Some((i, j + 1));
            }
        }
        i += 1;
    }
    None
}

fn skip_flag_group(s: &str) -> &str {
    // (?\w+)
    if let Some(r) = s.strip_prefix("(?") {
        let n = r
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(r.len());
        if n > 0 && r[n..].starts_with(')') {
            return &r[n + 1..];
        }
    }
    s
}

/// `^\(*(?:\(\?\w+\))?(?:\^|\(*\*\*|\((?:\?:)?\^)`
fn no_word_bound_begin(re: &str) -> bool {
    let s = re.trim_start_matches('(');
    let opened = re.len() - s.len();
    let mut cands = vec![s];
    // the `\(*` may have eaten the `(` of a flag group; try that split too
    if opened > 0 {
        cands.push(&re[opened - 1..]);
    }
    for s in cands {
        let s = skip_flag_group(s);
        if s.starts_with('^') || s.trim_start_matches('(').starts_with("**") {
            return true;
        }
        if let Some(r) = s.strip_prefix('(') {
            let r = r.strip_prefix("?:").unwrap_or(r);
            if r.starts_with('^') {
                return true;
            }
        }
    }
    false
}

fn preceded_by_backslash(s: &str, i: usize) -> bool {
    i > 0 && s.as_bytes()[i - 1] == b'\\'
}

/// `(?<!\\)(?:\$\)?|\\b|\\s|\*\*\)*)$`
fn no_word_bound_end(re: &str) -> bool {
    if let Some(i) = re
        .strip_suffix("$)")
        .map(str::len)
        .or(re.strip_suffix('$').map(str::len))
    {
        if !preceded_by_backslash(re, i) {
            return true;
        }
    }
    for suf in ["\\b", "\\s"] {
        if re.ends_with(suf) && !preceded_by_backslash(re, re.len() - 2) {
            return true;
        }
    }
    let t = re.trim_end_matches(')');
    if t.ends_with("**") && !preceded_by_backslash(t, t.len() - 2) {
        return true;
    }
    false
}

/// A `(` that opens a capture group: not escaped, not `(?`, not preceded by `(?`.
fn has_capture_group(re: &str) -> bool {
    let b = re.as_bytes();
    for i in 0..b.len() {
        if b[i] != b'(' {
            continue;
        }
        if i > 0 && b[i - 1] == b'\\' {
            continue;
        }
        if i > 1 && &b[i - 2..i] == b"(?" {
            continue;
        }
        if b.get(i + 1) == Some(&b'?') {
            continue;
        }
        return true;
    }
    false
}

/// `^((?:\(\?\w+\))?\^?(?:\(\?\w+\))?)(.*?)(\$?)$` → `\1(\2)\3`
fn add_group(re: &str) -> String {
    let mut head_end = 0;
    let r1 = skip_flag_group(re);
    head_end += re.len() - r1.len();
    let r2 = r1.strip_prefix('^').unwrap_or(r1);
    head_end += r1.len() - r2.len();
    let r3 = skip_flag_group(r2);
    head_end += r2.len() - r3.len();
    let (head, body) = re.split_at(head_end);
    let (body, tail) = match body.strip_suffix('$') {
        Some(b) => (b, "$"),
        None => (body, ""),
    };
    format!("{head}({body}){tail}")
}

/// `^(?:\(\?\w+\))?(?:\^|\((?:\?:)?\^(?!\|))`
fn line_bound_begin(re: &str) -> bool {
    let s = skip_flag_group(re);
    if s.starts_with('^') {
        return true;
    }
    if let Some(r) = s.strip_prefix('(') {
        let r = r.strip_prefix("?:").unwrap_or(r);
        if let Some(r) = r.strip_prefix('^') {
            return !r.starts_with('|');
        }
    }
    false
}

/// `(?<![\\\|])(?:\$\)?)$`
fn line_bound_end(re: &str) -> bool {
    let i = match re.strip_suffix("$)") {
        Some(r) => r.len(),
        None => match re.strip_suffix('$') {
            Some(r) => r.len(),
            None => return false,
        },
    };
    !(i > 0 && matches!(re.as_bytes()[i - 1], b'\\' | b'|'))
}

/// Removes the `**` markers that disable word boundaries.
fn del_word_bounds(re: &str) -> String {
    let mut s = re.to_string();
    // leading: \(*(?:\(\?\w+\))?\(*\*\*
    let t = s.trim_start_matches('(');
    let t2 = skip_flag_group(t);
    let t3 = t2.trim_start_matches('(');
    if t3.starts_with("**") {
        let at = s.len() - t3.len();
        s.replace_range(at..at + 2, "");
    }
    // trailing: (?<!\\)\*\*\)*$
    let t = s.trim_end_matches(')');
    if t.ends_with("**") && !preceded_by_backslash(t, t.len() - 2) {
        let at = t.len() - 2;
        s.replace_range(at..at + 2, "");
    }
    s
}

/// `DateTemplate.setRegex`: word/line boundaries, group 1, flags.
fn set_regex(
    name: &mut String,
    regex: &str,
    word_begin: WordBegin,
    word_end: bool,
) -> (String, u8) {
    let mut regex = regex.trim().to_string();
    let gf = find_global_flags(&regex).map(|(a, b)| {
        let f = regex[a..b].to_string();
        regex.replace_range(a..b, "");
        f
    });
    let bound_begin = word_begin != WordBegin::No && !no_word_bound_begin(&regex);
    let bound_end = word_end && !no_word_bound_end(&regex);
    if !has_capture_group(&regex) {
        regex = add_group(&regex);
    }
    let mut flags = 0;
    if bound_begin {
        if word_begin == WordBegin::Start {
            flags |= LINE_BEGIN;
            regex = format!("^(?:\\W{{0,2}})?{regex}");
            if !name.starts_with("{^LN-BEG}") {
                *name = format!("{{^LN-BEG}}{name}");
            }
        } else {
            flags |= WORD_BEGIN;
            regex = format!("(?=^|\\b|\\W){regex}");
        }
    }
    if bound_end {
        flags |= WORD_END;
        regex.push_str("(?=\\b|\\W|$)");
    }
    if flags & LINE_BEGIN == 0 && line_bound_begin(&regex) {
        flags |= LINE_BEGIN;
    }
    if flags & LINE_END == 0 && line_bound_end(&regex) {
        flags |= LINE_END;
    }
    regex = del_word_bounds(&regex);
    if let Some(f) = gf {
        regex = f + &regex;
    }
    (regex, flags)
}

fn compile(name: &str, regex: &str) -> Result<Pattern, DateError> {
    Pattern::new(regex, false)
        .map_err(|e| DateError(format!("date template {name:?}: {} (regex {regex})", e.0)))
}

/// A template's regex, compiled on first use: a filter loads some fifty default templates
/// and a log needs one or two. The syntax and the group names are read at once.
#[derive(Debug)]
struct TemplateRe {
    name: String,
    src: String,
    names: Vec<Option<String>>,
    /// The compiled pattern (`None`: it did not compile, and the template never matches).
    cell: OnceLock<Option<Pattern>>,
}

impl TemplateRe {
    fn new(name: &str, src: &str) -> Result<TemplateRe, DateError> {
        let py = crate::pyre::PyRegex::parse(src, false)
            .map_err(|e| DateError(format!("date template {name:?}: {e} (regex {src})")))?;
        Ok(TemplateRe {
            name: name.to_string(),
            src: src.to_string(),
            names: py.group_names().to_vec(),
            cell: OnceLock::new(),
        })
    }

    /// Compiles now, reporting a failure (user-given templates).
    fn check(&self) -> Result<(), DateError> {
        if self.cell.get().is_none() {
            let p = compile(&self.name, &self.src)?;
            let _ = self.cell.set(Some(p));
        }
        Ok(())
    }

    fn get(&self) -> Option<&Pattern> {
        self.cell
            .get_or_init(|| compile(&self.name, &self.src).ok())
            .as_ref()
    }

    fn source(&self) -> &str {
        &self.src
    }

    fn names(&self) -> &[Option<String>] {
        &self.names
    }

    fn group_index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n.as_deref() == Some(name))
    }
}

impl Template {
    /// A strptime-style pattern template (`DatePatternRegex`).
    fn pattern(
        pattern: &str,
        mut word_begin: WordBegin,
        now_year: i16,
    ) -> Result<Template, DateError> {
        let orig = pattern.to_string();
        let mut p = pattern;
        let mut word_end = true;
        if let Some(r) = p.strip_prefix("{UNB}") {
            p = r;
            word_begin = WordBegin::No;
            word_end = false;
        }
        if word_begin != WordBegin::No {
            if let Some(r) = p.strip_prefix("{^LN-BEG}") {
                p = r;
                word_begin = WordBegin::Start;
            }
        }
        let (mut regex, alpha) = expand_directives(p, now_year)?;
        if alpha {
            regex = format!("(?iu){regex}");
        }
        let mut name = p.to_string();
        let (regex, flags) = set_regex(&mut name, &regex, word_begin, word_end);
        let re = TemplateRe::new(&name, &regex)?;
        let fast = if flags & LINE_BEGIN != 0 && regex == bsd_regex(now_year) {
            let g = |n: &str| re.group_index(n);
            match (g("b"), g("d"), g("H"), g("M"), g("S")) {
                (Some(b), Some(d), Some(h), Some(m), Some(s)) => Some(FastBsd { b, d, h, m, s }),
                _ => None,
            }
        } else {
            None
        };
        let fields = re
            .names()
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (directive_of(n), i)))
            .filter(|(d, _)| *d != Directive::Other)
            .collect();
        Ok(Template {
            name,
            pattern: Some(orig),
            kind: Kind::Pattern,
            re,
            flags,
            weight: 1.0,
            fields,
            fast,
        })
    }

    fn epoch(line_begin: bool, pattern: Option<&str>, long: bool) -> Result<Template, DateError> {
        let epoch = if long {
            r"\d{10,11}(?:\d{3}(?:\.\d{1,6}|\d{3})?)?"
        } else {
            r"\d{10,11}\b(?:\.\d{3,6})?"
        };
        let mut name = match (pattern, long) {
            (Some(p), _) => p.to_string(),
            (None, true) => "LongEpoch".into(),
            (None, false) => "Epoch".into(),
        };
        let (regex, flags, grp) = if let Some(p) = pattern {
            let re = replace_epoch_tag(p, &format!("({epoch})"));
            let (r, f) = set_regex(&mut name, &format!("({re})"), WordBegin::Yes, true);
            (r, f, 2)
        } else if !line_begin {
            let r = r"((?:^|(?P<square>(?<=^\[))|(?P<selinux>(?<=\baudit\()))".to_string()
                + epoch
                + r")(?:(?(selinux)(?=:\d+\)))|(?(square)(?=\])))";
            let (r, f) = set_regex(&mut name, &r, WordBegin::No, true);
            (r, f, 1)
        } else {
            let r = format!(r"((?P<square>(?<=^\[))?{epoch})(?(square)(?=\]))");
            let (r, f) = set_regex(&mut name, &r, WordBegin::Start, true);
            (r, f, 1)
        };
        Ok(Template {
            re: TemplateRe::new(&name, &regex)?,
            name,
            pattern: None,
            kind: Kind::Epoch { grp, long },
            flags,
            weight: 1.0,
            fields: Vec::new(),
            fast: None,
        })
    }

    fn tai64n(word_begin: WordBegin) -> Result<Template, DateError> {
        let mut name = "TAI64N".to_string();
        let (regex, flags) = set_regex(&mut name, "@[0-9a-f]{24}", word_begin, true);
        Ok(Template {
            re: TemplateRe::new(&name, &regex)?,
            name,
            pattern: None,
            kind: Kind::Tai64n,
            flags,
            weight: 1.0,
            fields: Vec::new(),
            fast: None,
        })
    }

    /// `_getPatternTemplate`: special names or a pattern.
    fn from_spec(pattern: &str, now_year: i16) -> Result<Template, DateError> {
        let key = if pattern.contains('%') {
            pattern.to_string()
        } else {
            pattern.to_uppercase()
        };
        if key.contains("EPOCH") {
            if has_epoch_tag(pattern) {
                return Template::epoch(false, Some(pattern), key.contains("LEPOCH"));
            }
            match key.as_str() {
                "EPOCH" | "{^LN-BEG}EPOCH" | "^EPOCH" => {
                    return Template::epoch(key != "EPOCH", None, false)
                }
                "LEPOCH" | "{^LN-BEG}LEPOCH" | "^LEPOCH" => {
                    return Template::epoch(key != "LEPOCH", None, true)
                }
                _ => {}
            }
        }
        match key.as_str() {
            "TAI64N" => Template::tai64n(WordBegin::No),
            "{^LN-BEG}TAI64N" | "^TAI64N" => Template::tai64n(WordBegin::Start),
            _ => Template::pattern(pattern, WordBegin::Yes, now_year),
        }
    }
}

fn has_epoch_tag(p: &str) -> bool {
    let u = p.to_uppercase();
    ["{EPOCH}", "{LEPOCH}"].iter().any(|t| {
        u.match_indices(t)
            .any(|(i, _)| !preceded_by_backslash(&u, i))
    })
}

fn replace_epoch_tag(p: &str, with: &str) -> String {
    let u = p.to_uppercase();
    let mut out = String::new();
    let mut last = 0;
    let mut i = 0;
    while i < p.len() {
        for t in ["{EPOCH}", "{LEPOCH}"] {
            if u[i..].starts_with(t) && !preceded_by_backslash(p, i) {
                out.push_str(&p[last..i]);
                out.push_str(with);
                last = i + t.len();
                i = last;
                break;
            }
        }
        i += p[i..].chars().next().map_or(1, |c| c.len_utf8());
    }
    out.push_str(&p[last..]);
    out
}

/// fail2ban's default templates (patterns), in order.
const DEFAULT_PATTERNS: [&str; 17] = [
    // ISO 8601 / syslog RFC 5424: 2005-08-14T12:00:00, 2005/08/14 12:00:00,123 +02:00
    r"%ExY(?P<_sep>[-/.])%m(?P=_sep)%d(?:T|  ?)%H:%M:%S(?:[.,]%f)?(?:\s*%z)?",
    // RFC 3164: [Sun ]Aug 14 12:00:00[.123][ 2005]
    r"(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    // [Sun ]Aug 14 2005 12:00:00
    r"(?:%a )?%b %d %ExY %k:%M:%S(?:\.%f)?",
    // 14-08-2005 12:00:00, 14/08/05 12:00:00
    r"%d(?P<_sep>[-/])%m(?P=_sep)(?:%ExY|%Exy) %k:%M:%S",
    // Apache: 14/Aug/2005:12:00:00 +0200
    r"%d(?P<_sep>[-/])%b(?P=_sep)%ExY[ :]?%H:%M:%S(?:\.%f)?(?: %z)?",
    // 08/14/2005:12:00:00
    r"%m/%d/%ExY:%H:%M:%S",
    // 08-14-2005 12:00:00
    r"%m-%d-%ExY %k:%M:%S(?:\.%f)?",
    "EPOCH",
    // bare time at line start
    r"{^LN-BEG}%H:%M:%S",
    // <08/14/05@12:00:00>
    r"^<%m/%d/%Exy@%H:%M:%S>",
    // 050814 12:00:00 (MySQL)
    r"%Exy%Exm%Exd  ?%H:%M:%S",
    // Aug 14, 2005 12:00:00 PM
    r"%b %d, %ExY %I:%M:%S %p",
    // Aug-14-05 12:00:00 at line start
    r"^%b-%d-%Exy %k:%M:%S",
    // 20050814T120000, 20050814 120000
    r"%ExY%Exm%Exd(?:T|  ?)%ExH%ExM%ExS(?:[.,]%f)?(?:\s*%z)?",
    // with a zone name or offset in front
    r"(?:%Z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    r"(?:%z )?(?:%a )?%b %d %k:%M:%S(?:\.%f)?(?: %ExY)?",
    "TAI64N",
];

/// The default template list: anchored variants (weight 100) of the unanchored defaults,
/// then the defaults themselves.
fn default_templates(now_year: i16) -> Result<Vec<Arc<Template>>, DateError> {
    let mut anchored = Vec::new();
    let mut plain = Vec::new();
    for p in DEFAULT_PATTERNS {
        let t = Template::from_spec(p, now_year)?;
        if !t.name.starts_with("{^LN-BEG}") && !t.name.starts_with('^') {
            let mut a = match &t.pattern {
                Some(p) => Template::from_spec(&format!("{{^LN-BEG}}{p}"), now_year)?,
                None => Template::from_spec(&format!("{{^LN-BEG}}{}", t.name), now_year)?,
            };
            if a.name != t.name {
                a.weight = 100.0;
                anchored.push(Arc::new(a));
            }
        }
        plain.push(Arc::new(t));
    }
    anchored.extend(plain);
    Ok(anchored)
}

/// Removes word/line boundary markers from a pattern (for `{DATE}` wrapping).
fn unbound_pattern(p: &str) -> String {
    let p = p.strip_prefix("{UNB}").unwrap_or(p);
    let p = p.strip_prefix("{^LN-BEG}").unwrap_or(p);
    let p = ["(?:^|\\b|\\W)", "(^|\\b|\\W)"]
        .iter()
        .find_map(|s| p.strip_prefix(s))
        .unwrap_or(p);
    let p = p.strip_suffix("(?=\\b|\\W|$)").unwrap_or(p);
    p.to_string()
}

#[derive(Clone)]
struct Slot {
    t: Arc<Template>,
    hits: u64,
    last_used: f64,
    distance: usize,
}

impl Slot {
    fn weight(&self) -> f64 {
        self.hits as f64 * self.t.weight / (self.distance.max(1) as f64)
    }
}

/// A found date: where it is in the line and what time it denotes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DateMatch {
    /// Byte range of the date text (group 1) in the line; removed before the failregex runs.
    pub span: (usize, usize),
    /// The time, or `None` if the text did not form a valid date (or is an empty match).
    pub time: Option<Timestamp>,
}

/// Time context for resolving dates.
#[derive(Debug, Clone)]
pub struct TimeCx {
    /// "Now" (year inference, `{NONE}`).
    pub now: Timestamp,
    /// Zone for dates without one.
    pub tz: TimeZone,
    /// fail2ban's `logtimezone`: fixed offset in minutes applied to dates without a zone.
    pub default_offset_min: Option<i32>,
}

/// Last resolved date: template, text, "now", group-1 offsets from the match start, time.
type DateCache = (
    Arc<Template>,
    String,
    Timestamp,
    (usize, usize),
    Option<Timestamp>,
);

/// fail2ban's `DateDetector`. Cloning is cheap (the compiled templates are shared) and gives
/// a detector with the same state.
#[derive(Clone)]
pub struct DateDetector {
    slots: Vec<Slot>,
    last_pos: (usize, Option<char>, Option<char>),
    last_end: (usize, Option<char>, Option<char>),
    last_idx: usize,
    first_unused: usize,
    caps: Slots,
    /// Last resolved date: template, text, "now", group-1 offsets from the match start, time.
    cache: Option<DateCache>,
    /// Whether every template anchors at line start with at most 2 characters before the
    /// date text (bounds the date-removal effect for the literal prefilter).
    pub max_prefix: Option<usize>,
    /// The RFC 3164 fast path's last hour: (`Mmm dd HH` bytes, "now", offset, zone, time of
    /// `HH:00:00`), kept only when every second of the hour maps linearly (no zone change,
    /// no year flip inside it).
    hour_cache: Option<HourCache>,
    /// Wall clock for the templates' `last_used`, read every [`WALL_EVERY`] detections.
    wall: (f64, u32),
}

/// `Mmm dd HH` (month lower-cased), "now", offset, zone, time of `HH:00:00` in microseconds.
type HourCache = (HourKey, Timestamp, Option<i32>, TimeZone, i64);

/// The hour of a fast-path RFC 3164 date: `Mmm dd HH` with the month in lower case, as
/// the first eight bytes (little-endian) and the ninth.
type HourKey = (u64, u8);

/// [`HourKey`] of `b` (at least 9 bytes, the first three ASCII letters).
fn hour_key(b: &[u8]) -> HourKey {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    (u64::from_le_bytes(w) | 0x20_20_20, b[8])
}

/// How many detections share one reading of the wall clock (fail2ban reads it per line to
/// age its template order by minutes; a few hundred lines apart changes nothing there).
const WALL_EVERY: u32 = 256;

impl std::fmt::Debug for DateDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DateDetector")
            .field(
                "templates",
                &self.slots.iter().map(|s| &s.t.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn wall_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn char_before(s: &str, i: usize) -> Option<char> {
    s.get(..i).and_then(|x| x.chars().next_back())
}

fn char_at(s: &str, i: usize) -> Option<char> {
    s.get(i..).and_then(|x| x.chars().next())
}

impl DateDetector {
    /// Builds the detector for a `datepattern` option value (`None` = defaults).
    pub fn new(datepattern: Option<&str>, now_year: i16) -> Result<DateDetector, DateError> {
        let mut list: Vec<Arc<Template>> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut push = |t: Arc<Template>, ignore_dup: bool, list: &mut Vec<Arc<Template>>| {
            if names.contains(&t.name) {
                if ignore_dup {
                    return Ok(());
                }
                return Err(DateError(format!("duplicate date template {}", t.name)));
            }
            names.push(t.name.clone());
            list.push(t);
            Ok(())
        };
        match datepattern {
            None => {
                for t in default_templates(now_year)? {
                    push(t, false, &mut list)?;
                }
            }
            Some(dp) => {
                let pats: Vec<&str> = dp
                    .split('\n')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect();
                for p in pats {
                    let key = if p.contains('%') {
                        p.to_string()
                    } else {
                        p.to_uppercase()
                    };
                    let ignore_dup = !list.is_empty();
                    if key == "{^LN-BEG}" || key == "{DEFAULT}" {
                        for t in default_templates(now_year)? {
                            if key == "{^LN-BEG}" && t.flags & LINE_BEGIN == 0 {
                                continue;
                            }
                            push(t, ignore_dup, &mut list)?;
                        }
                    } else if key.contains("{DATE}") {
                        for p0 in DEFAULT_PATTERNS {
                            let t0 = Template::from_spec(p0, now_year)?;
                            let inner = match &t0.pattern {
                                Some(tp) => unbound_pattern(tp),
                                None => t0.name.clone(),
                            };
                            let wrapped = replace_date_tag(p, &inner);
                            let t = Template::from_spec(&wrapped, now_year)?;
                            // a template of the filter's own: its errors are the filter's
                            t.re.check()?;
                            push(Arc::new(t), ignore_dup, &mut list)?;
                        }
                    } else if key == "{NONE}" {
                        let mut t = Template::pattern("{UNB}^", WordBegin::Yes, now_year)?;
                        t.name = "{NONE}".into();
                        t.re.check()?;
                        push(Arc::new(t), false, &mut list)?;
                    } else {
                        let t = Template::from_spec(p, now_year)?;
                        t.re.check()?;
                        push(Arc::new(t), false, &mut list)?;
                    }
                }
            }
        }
        let max_prefix = list
            .iter()
            .map(|t| {
                if t.flags & LINE_BEGIN == 0 {
                    return None;
                }
                let r = t.re.source();
                let r = find_global_flags(r)
                    .filter(|(a, _)| *a == 0)
                    .map_or(r, |(_, b)| &r[b..]);
                if r.starts_with("^(?:\\W{0,2})?(") {
                    Some(2)
                } else if r.starts_with("^(") {
                    Some(0)
                } else {
                    None
                }
            })
            .try_fold(0usize, |acc, x| x.map(|v| acc.max(v)));
        Ok(DateDetector {
            slots: list
                .into_iter()
                .map(|t| Slot {
                    t,
                    hits: 0,
                    last_used: 0.0,
                    distance: 0x7fff_ffff,
                })
                .collect(),
            last_pos: (1, None, None),
            last_end: (0x7fff_ffff, None, None),
            last_idx: usize::MAX,
            first_unused: 0,
            caps: Slots::default(),
            cache: None,
            max_prefix,
            hour_cache: None,
            wall: (0.0, 0),
        })
    }

    /// Template names in their current order (for diagnostics).
    pub fn template_names(&self) -> Vec<String> {
        self.slots.iter().map(|s| s.t.name.clone()).collect()
    }

    /// Finds template `i` in `line[..end]` from `pos` (automaton only, no groups).
    fn search(&self, i: usize, line: &str, pos: usize, end: usize) -> Option<(usize, usize)> {
        let end = end.min(line.len());
        let pos = pos.min(end);
        let hay = line.get(..end)?;
        let t = &self.slots[i].t;
        if t.fast.is_some() && pos == 0 && fast_bsd(hay.as_bytes()) {
            return Some((0, 15));
        }
        t.re.get()?.find_at(hay, pos)
    }

    /// `matchTime` + `getTime`: finds the date in `line`.
    pub fn detect(&mut self, line: &str, cx: &TimeCx) -> Option<DateMatch> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        if let Some(m) = self.detect_fast(line, cx) {
            return Some(m);
        }
        // (template, start, end, search from, search end)
        let mut found: Option<(usize, usize, usize, usize, usize)> = None;
        let mut ignore_by_search = usize::MAX;
        let mut hit: Option<(usize, usize, usize, usize, usize)> = None;
        let i = self.last_idx;
        if i < n {
            let flags = self.slots[i].t.flags;
            let mut from = (0, usize::MAX);
            let m = if flags & (LINE_BEGIN | LINE_END) != 0 {
                ignore_by_search = i;
                self.search(i, line, 0, usize::MAX)
            } else {
                let (d, pb, pa) = self.last_pos;
                let (e, eb, ea) = self.last_end;
                let ok_begin = char_before(line, d) == pb
                    || (char_at(line, d) == pa && !pa.is_some_and(char::is_alphanumeric));
                let ok_end = char_at(line, e) == ea
                    || (char_before(line, e) == eb && !eb.is_some_and(char::is_alphanumeric));
                if ok_begin && ok_end && d <= line.len() && line.is_char_boundary(d) {
                    from = (d, e);
                    self.search(i, line, d, e)
                } else {
                    ignore_by_search = i;
                    self.search(i, line, 0, usize::MAX)
                }
            };
            if let Some((s, e)) = m {
                if n == 1
                    || flags & (LINE_BEGIN | LINE_END) != 0
                    || (s == self.last_pos.0 && e == self.last_end.0)
                {
                    hit = Some((i, s, e, from.0, from.1));
                } else {
                    found = Some((i, s, e, from.0, from.1));
                }
            }
        }
        if hit.is_none() {
            for i in 0..n {
                if i == ignore_by_search {
                    continue;
                }
                let Some((s, e)) = self.search(i, line, 0, usize::MAX) else {
                    continue;
                };
                if i + 1 >= n || self.slots[i].t.flags & (LINE_BEGIN | LINE_END) != 0 {
                    hit = Some((i, s, e, 0, usize::MAX));
                    break;
                }
                if s > self.slots[i].distance || s > self.last_pos.0 {
                    if found.as_ref().is_none_or(|f| s < f.1) {
                        found = Some((i, s, e, 0, usize::MAX));
                    }
                    continue;
                }
                hit = Some((i, s, e, 0, usize::MAX));
                break;
            }
            if hit.is_none() {
                hit = found.take();
            }
        }
        let (mut i, s, e, from, upto) = hit?;
        let t = self.slots[i].t.clone();
        self.mark_used(i, s);
        self.last_pos = (s, char_before(line, s), char_at(line, s));
        let eb = if e == 0 {
            line.chars().next_back()
        } else {
            char_before(line, e)
        };
        self.last_end = (e, eb, char_at(line, e));
        if i != 0 && i != self.last_idx {
            i = self.reorder(i);
        }
        self.last_idx = i;
        let grp = match t.kind {
            Kind::Epoch { grp, .. } => grp,
            _ => 1,
        };
        if let Some((ct, text, now, off, time)) = &self.cache {
            if Arc::ptr_eq(ct, &t) && *now == cx.now && line[s..e] == **text {
                let span = (s + off.0, s + off.1);
                return Some(DateMatch { span, time: *time });
            }
        }
        // groups: the same search again, with captures
        let upto = upto.min(line.len());
        let hay = &line[..upto];
        match t.fast {
            Some(f) if from == 0 && fast_bsd(hay.as_bytes()) => {
                self.fast_caps(t.re.names().len(), f);
            }
            _ => {
                let found =
                    t.re.get()
                        .is_some_and(|re| re.search(hay, from.min(upto), &mut self.caps));
                if !found {
                    return None;
                }
            }
        }
        let span = self.caps.get(1).unwrap_or((s, e));
        let time = if span.0 == span.1 {
            None
        } else if t.fast.is_some()
            && span == (0, 15)
            && self.caps.get(0) == Some((0, 15))
            && fast_bsd(line.as_bytes())
        {
            self.bsd_time(&t, line, cx)
        } else {
            self.time_of(&t, line, grp, cx)
        };
        if span.0 >= s && span.1 >= span.0 {
            // reuse the cached text's buffer: no allocation once it is large enough
            let mut text = match self.cache.take() {
                Some((_, t, ..)) => t,
                None => String::new(),
            };
            text.clear();
            text.push_str(&line[s..e]);
            self.cache = Some((t.clone(), text, cx.now, (span.0 - s, span.1 - s), time));
        }
        Some(DateMatch { span, time })
    }

    /// [`Self::detect`] when the template that matched last is the line-start RFC 3164 one
    /// and [`fast_bsd`] recognises the line: the general path's result and bookkeeping
    /// (that template first, found at `0..15` with those groups, so no reordering), without
    /// its searches; `None` when this does not apply.
    fn detect_fast(&mut self, line: &str, cx: &TimeCx) -> Option<DateMatch> {
        let i = self.last_idx;
        let b = line.as_bytes();
        let f = self.slots.get(i)?.t.fast?;
        if !fast_bsd(b) {
            return None;
        }
        self.mark_used(i, 0);
        // `fast_bsd` holds: bytes 0..16 are ASCII
        self.last_pos = (0, None, Some(b[0] as char));
        self.last_end = (15, Some(b[14] as char), Some(b[15] as char));
        let time = match self.hour_time(b, cx) {
            Some(t) => Some(t),
            None => {
                let t = self.slots[i].t.clone();
                self.fast_caps(t.re.names().len(), f);
                self.bsd_time(&t, line, cx)
            }
        };
        Some(DateMatch {
            span: (0, 15),
            time,
        })
    }

    /// The time of a fast-path RFC 3164 date from the hour cache, if it holds that hour.
    fn hour_time(&self, b: &[u8], cx: &TimeCx) -> Option<Timestamp> {
        let (k, now, off, tz, base) = self.hour_cache.as_ref()?;
        if !(*k == hour_key(b) && *now == cx.now && *off == cx.default_offset_min && *tz == cx.tz) {
            return None;
        }
        let two = |i: usize| (b[i] - b'0') as i64 * 10 + (b[i + 1] - b'0') as i64;
        Some(Timestamp(
            base + (two(10) * 60 + two(13)) * Timestamp::MICROS,
        ))
    }

    /// Template `i` matched at `s`: fail2ban's hit count, last use and distance, and the
    /// first template not used yet.
    fn mark_used(&mut self, i: usize, s: usize) {
        let sl = &mut self.slots[i];
        sl.hits += 1;
        if self.wall.1 == 0 {
            self.wall.0 = wall_now();
        }
        self.wall.1 = (self.wall.1 + 1) % WALL_EVERY;
        sl.last_used = self.wall.0;
        sl.distance = s;
        if self.first_unused == i {
            self.first_unused += 1;
        }
    }

    /// The groups (`groups` in all) of a [`fast_bsd`] date (`line[..15]`), in `self.caps`.
    fn fast_caps(&mut self, groups: usize, f: FastBsd) {
        let pos = &mut self.caps.pos;
        pos.clear();
        pos.resize(groups, None);
        pos[0] = Some((0, 15));
        pos[1] = Some((0, 15));
        pos[f.b] = Some((0, 3));
        pos[f.d] = Some((4, 6));
        pos[f.h] = Some((7, 9));
        pos[f.m] = Some((10, 12));
        pos[f.s] = Some((13, 15));
    }

    fn reorder(&mut self, num: usize) -> usize {
        let untime = self.slots[num].last_used - 300.0;
        let weight = self.slots[num].weight();
        let mut pos = if self.first_unused < num {
            self.first_unused
        } else {
            num / 2
        };
        let moveable = |slots: &Vec<Slot>, pos: usize| {
            weight > slots[pos].weight() || untime > slots[pos].last_used
        };
        if !moveable(&self.slots, pos) {
            if pos == num - 1 {
                return num;
            }
            pos = num - 1;
            if !moveable(&self.slots, pos) {
                return num;
            }
        }
        let s = self.slots.remove(num);
        self.slots.insert(pos, s);
        while self.first_unused < self.slots.len() && self.slots[self.first_unused].hits > 0 {
            self.first_unused += 1;
        }
        pos
    }

    /// The time of a fast-path RFC 3164 date (`line[..15]`, groups in `self.caps`): from the
    /// hour cache when the same hour was seen, else by `strptime`, caching the hour when its
    /// first and last second are exactly 3599 s apart (no offset change, no year flip).
    fn bsd_time(&mut self, t: &Template, line: &str, cx: &TimeCx) -> Option<Timestamp> {
        let b = line.as_bytes();
        let key = hour_key(b);
        let two = |i: usize| (b[i] - b'0') as i64 * 10 + (b[i + 1] - b'0') as i64;
        let within = (two(10) * 60 + two(13)) * Timestamp::MICROS;
        if let Some(t) = self.hour_time(b, cx) {
            return Some(t);
        }
        let exact = self.time_of(t, line, 1, cx);
        let at = |mm: &str, ss: &str| -> Option<Timestamp> {
            let vals: Vec<(Directive, &str)> = t
                .fields
                .iter()
                .filter_map(|(d, i)| {
                    let (x, y) = self.caps.get(*i)?;
                    Some((
                        *d,
                        match d {
                            Directive::M => mm,
                            Directive::S => ss,
                            _ => &line[x..y],
                        },
                    ))
                })
                .collect();
            strptime(&vals, cx)
        };
        if let (Some(a), Some(z)) = (at("00", "00"), at("59", "59")) {
            if z.0 - a.0 == 3599 * Timestamp::MICROS && exact.is_some_and(|e| e.0 == a.0 + within) {
                self.hour_cache = Some((key, cx.now, cx.default_offset_min, cx.tz.clone(), a.0));
            }
        }
        exact
    }

    fn time_of(&self, t: &Template, line: &str, grp: usize, cx: &TimeCx) -> Option<Timestamp> {
        let text = |i: usize| self.caps.get(i).map(|(a, b)| &line[a..b]);
        match t.kind {
            Kind::Epoch { long, .. } => {
                let v = text(grp)?;
                let mut x: f64 = v.parse().ok()?;
                if long && v.len() >= 13 {
                    if v.len() >= 16 && !v.contains('.') {
                        x /= 1_000_000.0;
                    } else {
                        x /= 1000.0;
                    }
                }
                Some(Timestamp((x * 1e6).round() as i64))
            }
            Kind::Tai64n => {
                let v = text(1)?;
                let secs = i64::from_str_radix(v.get(2..17)?, 16).ok()?;
                Some(Timestamp::from_secs(secs))
            }
            Kind::Pattern => {
                let vals: Vec<(Directive, &str)> = t
                    .fields
                    .iter()
                    .filter_map(|(d, i)| text(*i).map(|v| (*d, v)))
                    .collect();
                strptime(&vals, cx)
            }
        }
    }
}

fn replace_date_tag(p: &str, with: &str) -> String {
    let u = p.to_uppercase();
    let mut out = String::new();
    let mut last = 0;
    for (i, _) in u.match_indices("{DATE}") {
        if preceded_by_backslash(p, i) {
            continue;
        }
        out.push_str(&p[last..i]);
        out.push_str(with);
        last = i + 6;
    }
    out.push_str(&p[last..]);
    out
}

/// Zone abbreviations fail2ban accepts, with their offset from UTC in minutes.
const TZ_ABBR: &[(i32, &[&str])] = &[
    (-720, &["Y"]),
    (-660, &["X", "NUT", "SST"]),
    (-600, &["W", "CKT", "HAST", "HST", "TAHT", "TKT"]),
    (-540, &["V", "AKST", "GAMT", "GIT", "HADT", "HNY"]),
    (-480, &["U", "AKDT", "CIST", "HAY", "HNP", "PST", "PT"]),
    (-420, &["T", "HAP", "HNR", "MST", "PDT"]),
    (-360, &["S", "CST", "EAST", "GALT", "HAR", "HNC", "MDT"]),
    (
        -300,
        &[
            "R", "CDT", "COT", "EASST", "ECT", "EST", "ET", "HAC", "HNE", "PET",
        ],
    ),
    (
        -240,
        &[
            "Q", "AST", "BOT", "CLT", "COST", "EDT", "FKT", "GYT", "HAE", "HNA", "PYT",
        ],
    ),
    (
        -180,
        &[
            "P", "ADT", "ART", "BRT", "CLST", "FKST", "GFT", "HAA", "PMST", "PYST", "SRT", "UYT",
            "WGT",
        ],
    ),
    (-120, &["O", "BRST", "FNT", "PMDT", "UYST", "WGST"]),
    (-60, &["N", "AZOT", "CVT", "EGT"]),
    (0, &["Z", "EGST", "GMT", "UTC", "WET", "WT"]),
    (60, &["A", "CET", "DFT", "WAT", "WEDT", "WEST"]),
    (120, &["B", "CAT", "CEDT", "CEST", "EET", "SAST", "WAST"]),
    (180, &["C", "EAT", "EEDT", "EEST", "IDT", "MSK"]),
    (
        240,
        &[
            "D", "AMT", "AZT", "GET", "GST", "KUYT", "MSD", "MUT", "RET", "SAMT", "SCT",
        ],
    ),
    (
        300,
        &[
            "E", "AMST", "AQTT", "AZST", "HMT", "MAWT", "MVT", "PKT", "TFT", "TJT", "TMT", "UZT",
            "YEKT",
        ],
    ),
    (
        360,
        &[
            "F", "ALMT", "BIOT", "BTT", "IOT", "KGT", "NOVT", "OMST", "YEKST",
        ],
    ),
    (
        420,
        &[
            "G", "CXT", "DAVT", "HOVT", "ICT", "KRAT", "NOVST", "OMSST", "THA", "WIB",
        ],
    ),
    (
        480,
        &[
            "H", "ACT", "AWST", "BDT", "BNT", "CAST", "HKT", "IRKT", "KRAST", "MYT", "PHT", "SGT",
            "ULAT", "WITA", "WST",
        ],
    ),
    (
        540,
        &[
            "I", "AWDT", "IRKST", "JST", "KST", "PWT", "TLT", "WDT", "WIT", "YAKT",
        ],
    ),
    (600, &["K", "AEST", "ChST", "PGT", "VLAT", "YAKST", "YAPT"]),
    (
        660,
        &[
            "L", "AEDT", "LHDT", "MAGT", "NCT", "PONT", "SBT", "VLAST", "VUT",
        ],
    ),
    (
        720,
        &[
            "M", "ANAST", "ANAT", "FJT", "GILT", "MAGST", "MHT", "NZST", "PETST", "PETT", "TVT",
            "WFT",
        ],
    ),
    (780, &["FJST", "NZDT"]),
    (690, &["NFT"]),
    (630, &["ACDT", "LHST"]),
    (570, &["ACST"]),
    (390, &["CCT", "MMT"]),
    (345, &["NPT"]),
    (330, &["SLT"]),
    (270, &["AFT", "IRDT"]),
    (210, &["IRST"]),
    (-150, &["HAT", "NDT"]),
    (-210, &["HNT", "NST", "NT"]),
    (-270, &["HLV", "VET"]),
    (-570, &["MART", "MIT"]),
];

fn abbr_offset(a: &str) -> Option<i32> {
    if a.is_empty() {
        return Some(0);
    }
    TZ_ABBR
        .iter()
        .find(|(_, names)| names.contains(&a))
        .map(|(o, _)| *o)
}

/// A zone as fail2ban understands it: `[ABBR][+-]hh[[:]mm]`, in minutes east of UTC.
pub fn zone_offset(z: &str) -> Option<i32> {
    if matches!(z, "Z" | "UTC" | "GMT") {
        return Some(0);
    }
    let sign_at = z.find(['+', '-']).unwrap_or(z.len());
    let (abbr, off) = z.split_at(sign_at);
    let abbr_ok = abbr.is_empty()
        || (abbr.len() == 1 || (3..=5).contains(&abbr.len()))
            && abbr.chars().all(|c| c.is_ascii_uppercase());
    if !abbr_ok {
        return None;
    }
    let base = abbr_offset(abbr)?;
    if off.is_empty() {
        return Some(base);
    }
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let digits = &off[1..];
    let b = digits.as_bytes();
    if b.len() < 2 || !b[..2].iter().all(u8::is_ascii_digit) || b[0] > b'1' {
        return None;
    }
    let hh: i32 = digits[..2].parse().ok()?;
    if off.len() <= 3 {
        return Some(base + sign * hh * 60);
    }
    let mm = digits[2..].strip_prefix(':').unwrap_or(&digits[2..]);
    if mm.len() != 2 || !mm.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mm: i32 = mm.parse().ok()?;
    Some(base + sign * (hh * 60 + mm))
}

/// Local civil time of `ts` in `tz`.
fn civil(ts: Timestamp, tz: &TimeZone) -> DateTime {
    tz.to_datetime(ts.to_jiff())
}

/// `reGroupDictStrptime` (fractions of seconds are ignored, as in fail2ban).
fn strptime(vals: &[(Directive, &str)], cx: &TimeCx) -> Option<Timestamp> {
    let mut year: Option<i32> = None;
    let mut month: Option<i32> = None;
    let mut day: Option<i32> = None;
    let mut julian: Option<i32> = None;
    let (mut hour, mut minute, mut second) = (0i32, 0i32, 0i32);
    let mut tzoff: Option<i32> = None;
    let ampm = vals
        .iter()
        .find(|(d, _)| *d == Directive::P)
        .map(|(_, v)| v.to_lowercase());
    for (d, v) in vals {
        let int = || v.trim().parse::<i32>().ok();
        match d {
            Directive::LowY => {
                let mut y = int()?;
                if y <= 2000 {
                    y += 2000;
                }
                year = Some(y);
            }
            Directive::Y => year = Some(int()?),
            Directive::Mon => month = Some(int()?),
            Directive::MonName => {
                let l = v.to_lowercase();
                month = Some(MONTHS.iter().position(|m| *m == l)? as i32 + 1);
            }
            Directive::MonFull => {
                let l = v.to_lowercase();
                month = Some(MONTHS_FULL.iter().position(|m| *m == l)? as i32 + 1);
            }
            Directive::Day => day = Some(int()?),
            Directive::H => hour = int()?,
            Directive::I => {
                hour = int()?;
                match ampm.as_deref() {
                    None | Some("") | Some("am") if hour == 12 => hour = 0,
                    Some("pm") if hour != 12 => hour += 12,
                    _ => {}
                }
            }
            Directive::M => minute = int()?,
            Directive::S => second = int()?,
            Directive::J => julian = Some(int()?),
            Directive::Zone => tzoff = Some(zone_offset(v)?),
            Directive::P | Directive::Other => {}
        }
    }
    let now = civil(cx.now, &cx.tz);
    let assume_year = year.is_none();
    let year = year.unwrap_or(now.year() as i32);
    if month.is_none() || day.is_none() {
        if let Some(j) = julian {
            let d = Date::new(year as i16, 1, 1)
                .ok()?
                .checked_add(jiff::Span::new().days(j as i64 - 1))
                .ok()?;
            month = Some(d.month() as i32);
            day = Some(d.day() as i32);
        }
    }
    let mut assume_today = false;
    if month.is_none() && day.is_none() {
        month = Some(now.month() as i32);
        day = Some(now.day() as i32);
        assume_today = true;
    }
    let (month, day) = (month?, day?);
    let date = Date::new(year as i16, month as i8, day as i8).ok()?;
    let time = Time::new(hour as i8, minute as i8, second as i8, 0).ok()?;
    let mut dt = DateTime::from_parts(date, time);
    if tzoff.is_none() {
        tzoff = cx.default_offset_min;
    }
    if let Some(off) = tzoff {
        dt = dt.checked_sub(jiff::Span::new().minutes(off as i64)).ok()?;
    }
    if assume_today && dt > now {
        dt = dt.checked_sub(jiff::Span::new().days(1)).ok()?;
    }
    if assume_year {
        let limit = now.checked_add(jiff::Span::new().days(1)).ok()?;
        if dt > limit {
            dt = DateTime::from_parts(
                Date::new(year as i16 - 1, month as i8, day as i8).ok()?,
                dt.time(),
            );
        }
    }
    let ts = if tzoff.is_some() {
        dt.to_zoned(TimeZone::UTC).ok()?.timestamp()
    } else {
        cx.tz.to_ambiguous_timestamp(dt).compatible().ok()?
    };
    Some(Timestamp::from_jiff(ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> TimeCx {
        TimeCx {
            now: Timestamp::from_secs(1124013600),
            tz: TimeZone::posix("CET-01CEST-02,M3.5.0,M10.5.0").unwrap(),
            default_offset_min: None,
        }
    }

    fn local(s: &str) -> i64 {
        let dt: DateTime = s.parse().unwrap();
        cx().tz
            .to_ambiguous_timestamp(dt)
            .compatible()
            .unwrap()
            .as_second()
    }

    #[test]
    fn defaults_resolve_like_fail2ban() {
        let mut d = DateDetector::new(None, 2026).unwrap();
        let c = cx();
        let m = d.detect("Sep 29 17:15:02 host sshd[1]: x", &c).unwrap();
        assert_eq!(m.span, (0, 15));
        assert_eq!(m.time.unwrap().secs(), local("2004-09-29T17:15:02"));
        let m = d.detect("Feb 25 14:34:10 host x", &c).unwrap();
        assert_eq!(m.time.unwrap().secs(), local("2005-02-25T14:34:10"));
        let m = d
            .detect("[2015-04-16T18:02:50.321974+00:00] x", &c)
            .unwrap();
        assert_eq!(m.time.unwrap().secs(), local("2015-04-16T20:02:50"));
        let m = d.detect("1124013600.500 x", &c).unwrap();
        assert_eq!(m.time.unwrap().0, 1_124_013_600_500_000);
        let m = d
            .detect("192.0.2.1 - - [14/Aug/2005:11:59:59 +0200] \"GET /\"", &c)
            .unwrap();
        assert_eq!(m.time.unwrap().secs(), local("2005-08-14T11:59:59"));
    }

    #[test]
    fn default_templates_compile() {
        // compiled on first use in operation: every one must compile, with the group names
        // read at load
        let d = DateDetector::new(None, 2026).unwrap();
        assert!(d.slots.len() > 20);
        for sl in &d.slots {
            let re = sl.t.re.get().unwrap_or_else(|| panic!("{}", sl.t.name));
            assert_eq!(re.names(), sl.t.re.names(), "{}", sl.t.name);
        }
    }

    #[test]
    fn a_bad_datepattern_is_reported_at_load() {
        let e = DateDetector::new(Some("%Y-%m-%d (?P<x"), 2026).unwrap_err();
        assert!(e.0.contains("date template"), "{}", e.0);
    }

    #[test]
    fn fast_bsd_agrees_with_the_regex() {
        let d = DateDetector::new(None, 2026).unwrap();
        let t = d
            .slots
            .iter()
            .map(|s| &s.t)
            .find(|t| t.fast.is_some())
            .expect("the line-start RFC 3164 template has the fast path");
        let f = t.fast.unwrap();
        let mut lines: Vec<String> = Vec::new();
        let months = ["Jan", "mar", "DEC", "Mon", "Xyz", "Ma1"];
        let days = [
            " 1", " 9", "01", "09", "10", "19", "29", "30", "31", "32", "00", " 0", "3 ",
        ];
        let hours = ["00", "09", "19", "23", "24", "29", " 1", "1:"];
        let mins = ["00", "59", "60", "5"];
        let tails = [
            " host", " 2026 x", " 2026", " 20x", "", " ", ".123 x", "x", ":", " 1", "\u{e9}",
        ];
        for m in months {
            for dd in days {
                for h in hours {
                    for mi in mins {
                        for tl in tails {
                            lines.push(format!("{m} {dd} {h}:{mi}:{mi}{tl}"));
                        }
                    }
                }
            }
        }
        lines.push("Mar  3 00:00:05 bastion sshd[1]: x".into());
        let re = t.re.get().expect("the template compiles");
        let mut caps = re.slots();
        let mut fast_hits = 0;
        for l in &lines {
            if !fast_bsd(l.as_bytes()) {
                continue;
            }
            fast_hits += 1;
            assert!(re.search(l, 0, &mut caps), "{l:?}");
            assert_eq!(re.find_at(l, 0), Some((0, 15)), "{l:?}");
            for (g, want) in [
                (0, Some((0, 15))),
                (1, Some((0, 15))),
                (f.b, Some((0, 3))),
                (f.d, Some((4, 6))),
                (f.h, Some((7, 9))),
                (f.m, Some((10, 12))),
                (f.s, Some((13, 15))),
            ] {
                assert_eq!(caps.get(g), want, "{l:?} group {g}");
            }
            for (g, n) in t.re.names().iter().enumerate() {
                if matches!(n.as_deref(), Some("a" | "f" | "Y")) {
                    assert_eq!(caps.get(g), None, "{l:?} {n:?}");
                }
            }
        }
        assert!(fast_hits > 100, "{fast_hits}");
        // the detector gives the same result with and without the fast path
        let c = cx();
        let mut a = DateDetector::new(None, 2026).unwrap();
        let mut b = DateDetector::new(None, 2026).unwrap();
        for s in &mut b.slots {
            let t = Arc::get_mut(&mut s.t).unwrap();
            t.fast = None;
        }
        for l in lines.iter().step_by(7) {
            assert_eq!(a.detect(l, &c), b.detect(l, &c), "{l:?}");
            assert_eq!(a.detect(l, &c), b.detect(l, &c), "{l:?} (second)");
            assert_eq!(a.template_names(), b.template_names());
        }
        // runs of syslog lines (after the first, the detector's own fast path and hour
        // cache), other formats and hour changes between them
        let seq = [
            "Mar  3 00:00:05 h sshd[1]: a",
            "Mar  3 00:00:06 h x",
            "2026-03-03 00:00:07 x",
            "Mar  3 00:59:59 h x",
            "Mar  3 01:00:00 h x",
            "mar 13 01:00:00 h",
            "[Mar  3 00:00:05] h",
            "Mar  3 00:00:05 h",
            "Dec 31 23:59:59 h",
            "Jan  1 00:00:00 h",
        ];
        let state = |d: &DateDetector| {
            let slots: Vec<_> = d.slots.iter().map(|s| (s.hits, s.distance)).collect();
            (slots, d.last_pos, d.last_idx, d.first_unused)
        };
        for _ in 0..3 {
            for l in seq {
                assert_eq!(a.detect(l, &c), b.detect(l, &c), "{l:?}");
                assert_eq!(a.template_names(), b.template_names());
                assert_eq!(state(&a), state(&b), "{l:?}");
            }
        }
    }

    #[test]
    fn line_begin_only() {
        let mut d = DateDetector::new(Some("{^LN-BEG}"), 2026).unwrap();
        assert_eq!(d.max_prefix, Some(2));
        let c = cx();
        assert!(d.detect("x Sep 29 17:15:02 host", &c).is_none());
        assert!(d.detect("Sep 29 17:15:02 host", &c).is_some());
    }

    #[test]
    fn custom_patterns() {
        let c = cx();
        assert!(DateDetector::new(Some("%q"), 2026).is_err());
        let mut d = DateDetector::new(Some("%Y-%m-%d %H:%M:%S"), 2026).unwrap();
        let m = d.detect("at 2005-08-01 10:00:00 x", &c).unwrap();
        assert_eq!(m.span, (3, 22));
        let mut d = DateDetector::new(Some("{NONE}"), 2026).unwrap();
        assert_eq!(d.detect("abc", &c).unwrap().time, None);
        assert_eq!(zone_offset("CEST"), Some(120));
        assert_eq!(zone_offset("+0530"), Some(330));
        assert_eq!(zone_offset("-03:00"), Some(-180));
        assert_eq!(zone_offset("UTC+2"), None);
        assert_eq!(zone_offset("UTC+02"), Some(120));
    }
}
