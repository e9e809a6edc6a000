//! Python `re` syntax → Rust.
//!
//! fail2ban filters are written for Python's backtracking `re` module. This module parses that
//! dialect into a small syntax tree and re-emits it in one of three forms:
//!
//! * **exact, `regex` crate** — when the pattern uses nothing the automaton engine lacks. The
//!   two word-boundary lookaheads fail2ban's date templates wrap around every date,
//!   `(?=^|\b|\W)` and `(?=\b|\W|$)`, are both "not between two word characters" and are
//!   rewritten as `(?:\b{start-half}|\b{end-half})`, so dates stay on the fast engine.
//! * **exact, `fancy-regex`** — lookaround, backreferences, conditionals and atomic groups.
//! * **relaxed, `regex` crate** — a superset used as a cheap pre-check in front of a fancy
//!   pattern: lookarounds become empty, conditionals become alternations, backreferences match
//!   anything. If the relaxed form does not match, the exact one cannot either.
//!
//! It also extracts *required literals*: a set of strings at least one of which occurs in every
//! match, used to reject most log lines before any regex runs.
//!
//! Python-isms handled: `\Z` (end of text), `$` (end, or before a final newline — emitted as
//! `(?m:$)`, exact on buffers whose only newline is the final one, which is how fail2ban feeds
//! single-line filters), `{` taken literally when it is not a quantifier, `{,n}`, `[` `&` `~`
//! `-` literal inside classes, `(?P=name)`, `(?(name)yes|no)`, verbose mode, scoped and global
//! inline flags (`a`/`u`/`L` are accepted; `a` is approximated by Unicode classes).

use std::fmt::Write as _;

/// A parse or translation problem, with the byte offset in the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyReError {
    /// Byte offset where the problem was found.
    pub pos: usize,
    /// What is wrong.
    pub msg: String,
}

impl std::fmt::Display for PyReError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at offset {}: {}", self.pos, self.msg)
    }
}

/// One element of a character class.
#[derive(Debug, Clone)]
enum ClassItem {
    Char(char),
    Range(char, char),
    /// `\d`, `\w`, `\s` and their negations.
    Perl(char),
}

#[derive(Debug, Clone)]
struct Class {
    negated: bool,
    items: Vec<ClassItem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assert {
    /// `^` (multi-line or not).
    LineStart(bool),
    /// `$` (multi-line or not).
    LineEnd(bool),
    /// `\A`
    TextStart,
    /// `\Z`
    TextEnd,
    /// `\b`
    Word,
    /// `\B`
    NotWord,
}

#[derive(Debug, Clone)]
enum GroupKind {
    Capture {
        index: u32,
        name: Option<String>,
    },
    NonCapture,
    /// Scoped flags `(?i-s:...)`.
    Flags(String),
    Atomic,
}

#[derive(Debug, Clone)]
enum CondRef {
    Index(u32),
    Name(String),
}

#[derive(Debug, Clone)]
enum Node {
    Empty,
    /// A literal character; the flag says case-insensitive matching is in force.
    Lit(char, bool),
    Dot,
    Class(Class, bool),
    Perl(char),
    Assert(Assert),
    /// Global flags switched on for the rest of the pattern (`(?i)`).
    SetFlags(String),
    Group(Box<Node>, GroupKind),
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
        greedy: bool,
    },
    Backref(CondRef),
    Cond {
        cond: CondRef,
        yes: Box<Node>,
        no: Box<Node>,
    },
    Look {
        ahead: bool,
        negate: bool,
        node: Box<Node>,
    },
}

/// A parsed Python pattern.
#[derive(Debug, Clone)]
pub struct PyRegex {
    root: Node,
    /// Capture group names by index (index 0 unused).
    names: Vec<Option<String>>,
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    ci: bool,
    multiline: bool,
    verbose: bool,
    dotall: bool,
    ngroups: u32,
    names: Vec<Option<String>>,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, PyReError> {
        Err(PyReError {
            pos: self.pos,
            msg: msg.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.src[self.pos..].starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn skip_verbose(&mut self) {
        if !self.verbose {
            return;
        }
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('#') => {
                    while let Some(c) = self.bump() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                _ => break,
            }
        }
    }

    fn parse_alt(&mut self) -> Result<Node, PyReError> {
        let mut branches = vec![self.parse_concat()?];
        while self.peek() == Some('|') {
            self.bump();
            branches.push(self.parse_concat()?);
        }
        Ok(if branches.len() == 1 {
            branches.pop().expect("one branch")
        } else {
            Node::Alt(branches)
        })
    }

    fn parse_concat(&mut self) -> Result<Node, PyReError> {
        let mut items = Vec::new();
        loop {
            self.skip_verbose();
            match self.peek() {
                None | Some('|') | Some(')') => break,
                _ => {}
            }
            let atom = self.parse_atom()?;
            let atom = self.parse_quant(atom)?;
            items.push(atom);
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.pop().expect("one item"),
            _ => Node::Concat(items),
        })
    }

    fn parse_number(&mut self) -> Option<u32> {
        let start = self.pos;
        while matches!(self.peek(), Some('0'..='9')) {
            self.bump();
        }
        if self.pos == start {
            None
        } else {
            self.src[start..self.pos].parse().ok()
        }
    }

    /// Tries to read `{m}`, `{m,}`, `{,n}`, `{m,n}`; restores the position if it is not one.
    fn try_brace_quant(&mut self) -> Option<(u32, Option<u32>)> {
        let save = self.pos;
        if !self.eat("{") {
            return None;
        }
        let min = self.parse_number();
        let res = if self.eat(",") {
            let max = self.parse_number();
            if min.is_none() && max.is_none() {
                // `{,}` is literal in Python
                None
            } else {
                Some((min.unwrap_or(0), max))
            }
        } else {
            min.map(|m| (m, Some(m)))
        };
        if res.is_some() && self.eat("}") {
            return res;
        }
        self.pos = save;
        None
    }

    fn parse_quant(&mut self, atom: Node) -> Result<Node, PyReError> {
        self.skip_verbose();
        let (min, max) = match self.peek() {
            Some('*') => {
                self.bump();
                (0, None)
            }
            Some('+') => {
                self.bump();
                (1, None)
            }
            Some('?') => {
                self.bump();
                (0, Some(1))
            }
            Some('{') => match self.try_brace_quant() {
                Some(q) => q,
                None => return Ok(atom),
            },
            _ => return Ok(atom),
        };
        if let Some(mx) = max {
            if mx < min {
                return self.err("min repeat greater than max repeat");
            }
        }
        if matches!(atom, Node::Assert(_) | Node::Look { .. }) {
            return self.err("nothing to repeat");
        }
        let mut greedy = true;
        let mut possessive = false;
        if self.peek() == Some('?') {
            self.bump();
            greedy = false;
        } else if self.peek() == Some('+') {
            self.bump();
            possessive = true;
        }
        let rep = Node::Repeat {
            node: Box::new(atom),
            min,
            max,
            greedy,
        };
        self.skip_verbose();
        if matches!(self.peek(), Some('*' | '+' | '?')) {
            return self.err("multiple repeat");
        }
        Ok(if possessive {
            // Python 3.11 possessive quantifier: an atomic group around a greedy repeat
            Node::Group(Box::new(rep), GroupKind::Atomic)
        } else {
            rep
        })
    }

    fn parse_group_name(&mut self, term: char) -> Result<String, PyReError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == term {
                let name = self.src[start..self.pos].to_string();
                self.bump();
                if name.is_empty()
                    || !name.chars().all(|c| c.is_alphanumeric() || c == '_')
                    || name.chars().next().is_some_and(|c| c.is_ascii_digit())
                {
                    self.pos = start;
                    return self.err(format!("bad character in group name {name:?}"));
                }
                return Ok(name);
            }
            self.bump();
        }
        self.err("missing group name terminator")
    }

    fn parse_flags(&mut self) -> Result<(String, String), PyReError> {
        let mut on = String::new();
        let mut off = String::new();
        let mut neg = false;
        while let Some(c) = self.peek() {
            match c {
                'i' | 'm' | 's' | 'x' | 'a' | 'u' | 'L' => {
                    if neg {
                        off.push(c)
                    } else {
                        on.push(c)
                    }
                    self.bump();
                }
                '-' => {
                    neg = true;
                    self.bump();
                }
                _ => break,
            }
        }
        Ok((on, off))
    }

    fn apply_flags(&mut self, on: &str, off: &str) {
        for c in on.chars() {
            match c {
                'i' => self.ci = true,
                'm' => self.multiline = true,
                'x' => self.verbose = true,
                's' => self.dotall = true,
                _ => {}
            }
        }
        for c in off.chars() {
            match c {
                'i' => self.ci = false,
                'm' => self.multiline = false,
                'x' => self.verbose = false,
                's' => self.dotall = false,
                _ => {}
            }
        }
    }

    fn parse_group(&mut self) -> Result<Node, PyReError> {
        // after '('
        let saved = (self.ci, self.multiline, self.verbose, self.dotall);
        let restore = |p: &mut Self| {
            p.ci = saved.0;
            p.multiline = saved.1;
            p.verbose = saved.2;
            p.dotall = saved.3;
        };
        if self.eat("?") {
            if self.eat("P<") {
                let name = self.parse_group_name('>')?;
                return self.capture(Some(name));
            }
            if self.eat("P=") {
                let name = self.parse_group_name(')')?;
                return Ok(Node::Backref(CondRef::Name(name)));
            }
            if self.eat("<=") || self.eat("<!") {
                let negate = self.src[..self.pos].ends_with('!');
                let inner = self.parse_alt()?;
                self.expect_close()?;
                return Ok(Node::Look {
                    ahead: false,
                    negate,
                    node: Box::new(inner),
                });
            }
            if self.eat("<") {
                // (?<name>...) is Python 3.12+ only, but harmless to accept
                let name = self.parse_group_name('>')?;
                return self.capture(Some(name));
            }
            if self.eat("=") || self.eat("!") {
                let negate = self.src[..self.pos].ends_with('!');
                let inner = self.parse_alt()?;
                self.expect_close()?;
                return Ok(Node::Look {
                    ahead: true,
                    negate,
                    node: Box::new(inner),
                });
            }
            if self.eat(":") {
                let inner = self.parse_alt()?;
                self.expect_close()?;
                return Ok(Node::Group(Box::new(inner), GroupKind::NonCapture));
            }
            if self.eat(">") {
                let inner = self.parse_alt()?;
                self.expect_close()?;
                return Ok(Node::Group(Box::new(inner), GroupKind::Atomic));
            }
            if self.eat("#") {
                while let Some(c) = self.bump() {
                    if c == ')' {
                        return Ok(Node::Empty);
                    }
                }
                return self.err("missing ), unterminated comment");
            }
            if self.eat("(") {
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if c == ')' {
                        break;
                    }
                    self.bump();
                }
                let cond = self.src[start..self.pos].to_string();
                if !self.eat(")") {
                    return self.err("missing ) in conditional");
                }
                let cond = match cond.parse::<u32>() {
                    Ok(n) => CondRef::Index(n),
                    Err(_) => CondRef::Name(cond),
                };
                let yes = self.parse_concat()?;
                let no = if self.eat("|") {
                    self.parse_concat()?
                } else {
                    Node::Empty
                };
                if self.peek() == Some('|') {
                    return self.err("conditional backref with more than two branches");
                }
                self.expect_close()?;
                return Ok(Node::Cond {
                    cond,
                    yes: Box::new(yes),
                    no: Box::new(no),
                });
            }
            let (on, off) = self.parse_flags()?;
            if on.is_empty() && off.is_empty() {
                return self.err(
                    "unknown extension ?".to_string()
                        + &self.peek().map(String::from).unwrap_or_default(),
                );
            }
            if self.eat(")") {
                if !off.is_empty() {
                    return self.err("missing :");
                }
                // global flags: in force for the rest of the pattern
                self.apply_flags(&on, "");
                return Ok(Node::SetFlags(on));
            }
            if self.eat(":") {
                self.apply_flags(&on, &off);
                let inner = self.parse_alt()?;
                restore(self);
                self.expect_close()?;
                let mut f = on;
                if !off.is_empty() {
                    f.push('-');
                    f.push_str(&off);
                }
                return Ok(Node::Group(Box::new(inner), GroupKind::Flags(f)));
            }
            return self.err("missing -, : or )");
        }
        self.capture(None)
    }

    fn capture(&mut self, name: Option<String>) -> Result<Node, PyReError> {
        if let Some(n) = &name {
            if self.names.iter().any(|x| x.as_deref() == Some(n.as_str())) {
                return self.err(format!("redefinition of group name {n:?}"));
            }
        }
        self.ngroups += 1;
        let index = self.ngroups;
        self.names.push(name.clone());
        let inner = self.parse_alt()?;
        self.expect_close()?;
        Ok(Node::Group(
            Box::new(inner),
            GroupKind::Capture { index, name },
        ))
    }

    fn expect_close(&mut self) -> Result<(), PyReError> {
        if self.eat(")") {
            Ok(())
        } else {
            self.err("missing ), unterminated subpattern")
        }
    }

    fn parse_hex(&mut self, n: usize) -> Result<char, PyReError> {
        let start = self.pos;
        for _ in 0..n {
            match self.peek() {
                Some(c) if c.is_ascii_hexdigit() => {
                    self.bump();
                }
                _ => return self.err("incomplete escape"),
            }
        }
        let v = u32::from_str_radix(&self.src[start..self.pos], 16).expect("hex digits");
        char::from_u32(v).map_or_else(|| self.err("bad escape (invalid code point)"), Ok)
    }

    /// Escape after a backslash, shared by classes (`in_class`) and atoms.
    /// Returns `Ok(Err(node))` for non-literal escapes.
    fn parse_escape(&mut self, in_class: bool) -> Result<Result<char, Node>, PyReError> {
        let c = match self.bump() {
            Some(c) => c,
            None => return self.err("bad escape (end of pattern)"),
        };
        Ok(match c {
            'd' | 'D' | 'w' | 'W' | 's' | 'S' => Err(Node::Perl(c)),
            'n' => Ok('\n'),
            't' => Ok('\t'),
            'r' => Ok('\r'),
            'f' => Ok('\x0c'),
            'v' => Ok('\x0b'),
            'a' => Ok('\x07'),
            'b' if in_class => Ok('\x08'),
            'b' => Err(Node::Assert(Assert::Word)),
            'B' if !in_class => Err(Node::Assert(Assert::NotWord)),
            'A' if !in_class => Err(Node::Assert(Assert::TextStart)),
            'Z' if !in_class => Err(Node::Assert(Assert::TextEnd)),
            'x' => Ok(self.parse_hex(2)?),
            'u' => Ok(self.parse_hex(4)?),
            'U' => Ok(self.parse_hex(8)?),
            '0' => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && matches!(self.peek(), Some('0'..='7')) {
                    v = v * 8 + self.bump().expect("digit").to_digit(8).expect("octal");
                    n += 1;
                }
                Ok(char::from_u32(v).expect("small octal"))
            }
            '1'..='9' => {
                let mut s = String::from(c);
                if let Some(d @ '0'..='9') = self.peek() {
                    s.push(d);
                    self.bump();
                }
                if in_class {
                    return self.err("bad escape in class");
                }
                Err(Node::Backref(CondRef::Index(s.parse().expect("digits"))))
            }
            c if c.is_ascii_alphanumeric() => {
                return self.err(format!("bad escape \\{c}"));
            }
            c => Ok(c),
        })
    }

    fn parse_class(&mut self) -> Result<Node, PyReError> {
        // after '['
        let mut negated = false;
        if self.peek() == Some('^') {
            self.bump();
            negated = true;
        }
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let c = match self.bump() {
                Some(c) => c,
                None => return self.err("unterminated character set"),
            };
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = if c == '\\' {
                match self.parse_escape(true)? {
                    Ok(ch) => ch,
                    Err(Node::Perl(p)) => {
                        items.push(ClassItem::Perl(p));
                        continue;
                    }
                    Err(_) => return self.err("bad escape in class"),
                }
            } else {
                c
            };
            // range?
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|c| c != ']') {
                self.bump();
                let c2 = self.bump().expect("peeked");
                let hi = if c2 == '\\' {
                    match self.parse_escape(true)? {
                        Ok(ch) => ch,
                        Err(_) => return self.err("bad character range"),
                    }
                } else {
                    c2
                };
                if hi < lo {
                    return self.err("bad character range");
                }
                items.push(ClassItem::Range(lo, hi));
            } else {
                items.push(ClassItem::Char(lo));
            }
        }
        Ok(Node::Class(Class { negated, items }, self.ci))
    }

    fn parse_atom(&mut self) -> Result<Node, PyReError> {
        let c = self.bump().expect("caller checked");
        Ok(match c {
            '(' => self.parse_group()?,
            '[' => self.parse_class()?,
            '.' => Node::Dot,
            '^' => Node::Assert(Assert::LineStart(self.multiline)),
            '$' => Node::Assert(Assert::LineEnd(self.multiline)),
            '\\' => match self.parse_escape(false)? {
                Ok(ch) => Node::Lit(ch, self.ci),
                Err(n) => n,
            },
            '*' | '+' | '?' => return self.err("nothing to repeat"),
            '{' => {
                // a `{` that is not a quantifier is literal in Python
                let save = self.pos - 1;
                self.pos = save;
                if self.try_brace_quant().is_some() {
                    return self.err("nothing to repeat");
                }
                self.bump();
                Node::Lit('{', self.ci)
            }
            c => Node::Lit(c, self.ci),
        })
    }
}

/// Which syntax to produce.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Std,
    Fancy,
    Relaxed,
    /// Std, with each guarded repetition `(?:(?!LIT).)*` emitted as a capture group of
    /// `(?:.)*` whose span is checked afterwards (see [`PyRegex::to_guarded`]).
    Guarded,
}

/// Python group index given to the capture groups [`Mode::Guarded`] adds.
pub const GUARD_GROUP: u32 = u32::MAX;

/// The literal `LIT` of a guarded repetition `(?:(?!LIT).)*` (any bounds, greedy or lazy):
/// a repeated group whose body is a negative lookahead of a case-sensitive literal followed by
/// `.`.
fn guard_literal(n: &Node) -> Option<String> {
    let Node::Repeat { node, .. } = n else {
        return None;
    };
    let mut body: &Node = node;
    while let Node::Group(i, GroupKind::NonCapture) = body {
        body = i;
    }
    let Node::Concat(v) = body else {
        return None;
    };
    match v.as_slice() {
        [Node::Look {
            ahead: true,
            negate: true,
            node,
        }, Node::Dot] => literal_string(node).filter(|l| !l.is_empty()),
        _ => None,
    }
}

fn push_lit(out: &mut String, c: char) {
    let mut b = [0u8; 4];
    regex_syntax::escape_into(c.encode_utf8(&mut b), out);
}

fn push_class_char(out: &mut String, c: char) {
    match c {
        '[' | ']' | '\\' | '-' | '^' | '&' | '~' => {
            out.push('\\');
            out.push(c);
        }
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if c.is_control() => {
            let _ = write!(out, "\\x{{{:x}}}", c as u32);
        }
        c => out.push(c),
    }
}

fn is_boundary_look(node: &Node) -> bool {
    // (?=^|\b|\W) and (?=\b|\W|$) in any order: "not between two word characters"
    if let Node::Alt(br) = node {
        if br.len() != 3 {
            return false;
        }
        let mut has_b = false;
        let mut has_w = false;
        let mut has_edge = false;
        for b in br {
            match b {
                Node::Assert(Assert::Word) => has_b = true,
                Node::Perl('W') => has_w = true,
                Node::Assert(Assert::LineStart(_)) | Node::Assert(Assert::LineEnd(_)) => {
                    has_edge = true
                }
                _ => return false,
            }
        }
        return has_b && has_w && has_edge;
    }
    false
}

impl PyRegex {
    /// Parses `src` with Python's syntax. `multiline` is `re.MULTILINE`.
    pub fn parse(src: &str, multiline: bool) -> Result<PyRegex, PyReError> {
        let mut p = Parser {
            src,
            pos: 0,
            ci: false,
            multiline,
            verbose: false,
            dotall: false,
            ngroups: 0,
            names: vec![None],
        };
        // Python applies global flags to the whole pattern; pre-scan a leading `(?flags)`.
        if let Some(rest) = src.strip_prefix("(?") {
            let n = rest
                .find(|c: char| !matches!(c, 'i' | 'm' | 's' | 'x' | 'a' | 'u' | 'L'))
                .unwrap_or(rest.len());
            if n > 0 && rest[n..].starts_with(')') {
                p.apply_flags(&rest[..n], "");
            }
        }
        let root = p.parse_alt()?;
        if p.pos < src.len() {
            return p.err("unbalanced parenthesis");
        }
        let mut r = PyRegex {
            root,
            names: p.names,
        };
        r.check_refs(&r.root)?;
        let root = std::mem::replace(&mut r.root, Node::Empty);
        let root = r.resolve_refs(root);
        r.root = elim(&root, &Known::new());
        Ok(r)
    }

    /// Turns named references into indices so the transform can compare them.
    fn resolve_refs(&self, n: Node) -> Node {
        match n {
            Node::Backref(r) => Node::Backref(CondRef::Index(self.cond_index(&r))),
            Node::Cond { cond, yes, no } => Node::Cond {
                cond: CondRef::Index(self.cond_index(&cond)),
                yes: Box::new(self.resolve_refs(*yes)),
                no: Box::new(self.resolve_refs(*no)),
            },
            Node::Group(i, k) => Node::Group(Box::new(self.resolve_refs(*i)), k),
            Node::Repeat {
                node,
                min,
                max,
                greedy,
            } => Node::Repeat {
                node: Box::new(self.resolve_refs(*node)),
                min,
                max,
                greedy,
            },
            Node::Look {
                ahead,
                negate,
                node,
            } => Node::Look {
                ahead,
                negate,
                node: Box::new(self.resolve_refs(*node)),
            },
            Node::Concat(v) => Node::Concat(v.into_iter().map(|x| self.resolve_refs(x)).collect()),
            Node::Alt(v) => Node::Alt(v.into_iter().map(|x| self.resolve_refs(x)).collect()),
            other => other,
        }
    }

    fn check_refs(&self, n: &Node) -> Result<(), PyReError> {
        let bad = |m: String| Err(PyReError { pos: 0, msg: m });
        match n {
            Node::Backref(r) | Node::Cond { cond: r, .. } => {
                let ok = match r {
                    CondRef::Index(i) => (*i as usize) < self.names.len(),
                    CondRef::Name(nm) => self.names.iter().any(|x| x.as_deref() == Some(nm)),
                };
                if !ok {
                    return bad(format!("unknown group {r:?}"));
                }
                if let Node::Cond { yes, no, .. } = n {
                    self.check_refs(yes)?;
                    self.check_refs(no)?;
                }
                Ok(())
            }
            Node::Group(i, _) | Node::Repeat { node: i, .. } | Node::Look { node: i, .. } => {
                self.check_refs(i)
            }
            Node::Concat(v) | Node::Alt(v) => v.iter().try_for_each(|x| self.check_refs(x)),
            _ => Ok(()),
        }
    }

    /// Capture group names by index (index 0 is the whole match and is `None`).
    pub fn group_names(&self) -> &[Option<String>] {
        &self.names
    }

    /// Whether the pattern needs the backtracking engine.
    pub fn needs_fancy(&self) -> bool {
        fn walk(n: &Node) -> bool {
            match n {
                Node::Backref(_) | Node::Cond { .. } => true,
                Node::Look {
                    node,
                    ahead,
                    negate,
                } => !(*ahead && !*negate && is_boundary_look(node)),
                Node::Group(_, GroupKind::Atomic) => true,
                Node::Group(i, _) | Node::Repeat { node: i, .. } => walk(i),
                Node::Concat(v) | Node::Alt(v) => v.iter().any(walk),
                _ => false,
            }
        }
        walk(&self.root)
    }

    /// Whether [`Self::to_guarded`] applies: every construct the `regex` crate lacks is a
    /// guarded repetition `(?:(?!LIT).)*` that is not itself inside a repetition (so its
    /// capture group spans every iteration).
    pub fn guardable(&self) -> bool {
        fn walk(n: &Node, in_rep: bool) -> bool {
            if guard_literal(n).is_some() {
                return !in_rep;
            }
            match n {
                Node::Backref(_) | Node::Cond { .. } => false,
                Node::Look {
                    node,
                    ahead,
                    negate,
                } => *ahead && !*negate && is_boundary_look(node),
                Node::Group(_, GroupKind::Atomic) => false,
                Node::Group(i, _) => walk(i, in_rep),
                Node::Repeat { node, .. } => walk(node, true),
                Node::Concat(v) | Node::Alt(v) => v.iter().all(|x| walk(x, in_rep)),
                _ => true,
            }
        }
        self.needs_fancy() && walk(&self.root, false)
    }

    /// A `regex`-crate pattern whose leftmost-first match, when its guards hold, is the
    /// Python pattern's: each guarded repetition `(?:(?!LIT).)*` becomes a capture group
    /// `(?:.)*` (same bounds and greediness) and a guard `(emitted group, LIT)`: no `LIT` may
    /// start at a position inside the group's span. The lookahead-free pattern matches a
    /// superset, and tries paths in the same order as a backtracking engine; so if its best
    /// path satisfies every guard, no better Python path exists and the captures are the
    /// same. When a guard fails the caller runs the exact engine. Returns the pattern, the
    /// Python index of each emitted group ([`GUARD_GROUP`] for the added ones) and the guards.
    /// Only valid when [`Self::guardable`].
    pub fn to_guarded(&self) -> (String, Vec<u32>, Vec<(usize, String)>) {
        let mut cx = EmitCx::default();
        let mut out = String::new();
        self.emit(&self.root, Mode::Guarded, &mut out, &mut cx);
        (out, cx.groups, cx.guards)
    }

    /// Syntax for the `regex` crate (exact). Only valid when [`Self::needs_fancy`] is false.
    pub fn to_std(&self) -> String {
        self.emit_root(Mode::Std)
    }

    /// Syntax for `fancy-regex` (exact).
    pub fn to_fancy(&self) -> String {
        self.emit_root(Mode::Fancy)
    }

    /// Syntax for `fancy-regex` with ASCII-only `\\w \\d \\s` classes: exact on ASCII text and
    /// much smaller to run.
    pub fn to_fancy_ascii(&self) -> String {
        let mut cx = EmitCx {
            ascii: true,
            ..EmitCx::default()
        };
        let mut out = String::new();
        self.emit(&self.root, Mode::Fancy, &mut out, &mut cx);
        out
    }

    /// A `regex`-crate pattern matching a superset of what the pattern matches (captures
    /// are dropped).
    pub fn to_relaxed(&self) -> String {
        self.emit_root(Mode::Relaxed)
    }

    fn emit_root(&self, mode: Mode) -> String {
        self.emit_with_groups(mode).0
    }

    /// Emits and returns, for each emitted capture group (in order), its Python group index.
    /// Groups duplicated by the conditional transform are emitted under `name__N`.
    fn emit_with_groups(&self, mode: Mode) -> (String, Vec<u32>) {
        let mut cx = EmitCx::default();
        let mut out = String::new();
        self.emit(&self.root, mode, &mut out, &mut cx);
        (out, cx.groups)
    }

    /// Emitted group index → Python group index, for the exact forms.
    pub fn emitted_groups(&self) -> Vec<u32> {
        let mode = if self.needs_fancy() {
            Mode::Fancy
        } else {
            Mode::Std
        };
        self.emit_with_groups(mode).1
    }

    fn cond_index(&self, r: &CondRef) -> u32 {
        match r {
            CondRef::Index(i) => *i,
            CondRef::Name(n) => self
                .names
                .iter()
                .position(|x| x.as_deref() == Some(n.as_str()))
                .expect("checked at parse") as u32,
        }
    }

    /// Group reference for fancy-regex: the name when the group has one (fancy-regex refuses
    /// numbered references in patterns with named groups), else the number.
    fn ref_name(&self, r: &CondRef, cx: &EmitCx) -> String {
        let i = self.cond_index(r);
        match cx.last_name.get(&i) {
            Some(n) => n.clone(),
            None => i.to_string(),
        }
    }

    fn emit(&self, n: &Node, mode: Mode, out: &mut String, cx: &mut EmitCx) {
        match n {
            Node::Empty => {}
            Node::Lit(c, _) => push_lit(out, *c),
            Node::Dot => out.push('.'),
            Node::Perl(c) if cx.ascii => out.push_str(ascii_perl(*c)),
            Node::Perl(c) => {
                out.push('\\');
                out.push(*c);
            }
            Node::Class(cl, _) => {
                out.push('[');
                if cl.negated {
                    out.push('^');
                }
                for it in &cl.items {
                    match it {
                        ClassItem::Char(c) => push_class_char(out, *c),
                        ClassItem::Range(a, b) => {
                            push_class_char(out, *a);
                            out.push('-');
                            push_class_char(out, *b);
                        }
                        ClassItem::Perl(p) if cx.ascii && p.is_ascii_lowercase() => {
                            let a = ascii_perl(*p);
                            out.push_str(&a[1..a.len() - 1]);
                        }
                        ClassItem::Perl(p) => {
                            out.push('\\');
                            out.push(*p);
                        }
                    }
                }
                out.push(']');
            }
            Node::Assert(a) => out.push_str(match a {
                Assert::LineStart(true) => "(?m:^)",
                Assert::LineStart(false) => r"\A",
                Assert::LineEnd(_) => "(?m:$)",
                Assert::TextStart => r"\A",
                Assert::TextEnd => r"\z",
                Assert::Word => r"\b",
                Assert::NotWord => r"\B",
            }),
            Node::SetFlags(f) => {
                let f: String = f.chars().filter(|c| matches!(c, 'i' | 'm' | 's')).collect();
                if !f.is_empty() {
                    let _ = write!(out, "(?{f})");
                }
            }
            Node::Group(inner, kind) => {
                match kind {
                    GroupKind::Capture { name, index } if mode != Mode::Relaxed => {
                        cx.groups.push(*index);
                        match name {
                            Some(nm) => {
                                let n = cx.uses.entry(nm.clone()).or_insert(0);
                                let emitted = if *n == 0 {
                                    nm.clone()
                                } else {
                                    format!("{nm}__{n}")
                                };
                                *n += 1;
                                let _ = write!(out, "(?P<{emitted}>");
                                cx.last_name.insert(*index, emitted);
                            }
                            None => out.push('('),
                        }
                    }
                    GroupKind::Flags(f) => {
                        let f: String = f
                            .chars()
                            .filter(|c| matches!(c, 'i' | 'm' | 's' | '-'))
                            .collect();
                        let f = f.trim_end_matches('-');
                        if f.is_empty() {
                            out.push_str("(?:");
                        } else {
                            let _ = write!(out, "(?{f}:");
                        }
                    }
                    GroupKind::Atomic if mode == Mode::Fancy => out.push_str("(?>"),
                    _ => out.push_str("(?:"),
                }
                self.emit(inner, mode, out, cx);
                out.push(')');
            }
            Node::Concat(v) => {
                for x in v {
                    self.emit(x, mode, out, cx);
                }
            }
            Node::Alt(v) => {
                out.push_str("(?:");
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        out.push('|');
                    }
                    self.emit(x, mode, out, cx);
                }
                out.push(')');
            }
            Node::Repeat { .. } if mode == Mode::Guarded && guard_literal(n).is_some() => {
                let Node::Repeat {
                    min, max, greedy, ..
                } = n
                else {
                    unreachable!()
                };
                cx.groups.push(GUARD_GROUP);
                cx.guards.push((
                    cx.groups.len(),
                    guard_literal(n).expect("checked in the guard"),
                ));
                out.push('(');
                self.emit(
                    &Node::Repeat {
                        node: Box::new(Node::Dot),
                        min: *min,
                        max: *max,
                        greedy: *greedy,
                    },
                    mode,
                    out,
                    cx,
                );
                out.push(')');
            }
            Node::Repeat {
                node,
                min,
                max,
                greedy,
            } => {
                out.push_str("(?:");
                self.emit(node, mode, out, cx);
                out.push(')');
                match (min, max) {
                    (0, None) => out.push('*'),
                    (1, None) => out.push('+'),
                    (0, Some(1)) => out.push('?'),
                    (m, None) => {
                        let _ = write!(out, "{{{m},}}");
                    }
                    (m, Some(x)) if m == x => {
                        let _ = write!(out, "{{{m}}}");
                    }
                    (m, Some(x)) => {
                        let _ = write!(out, "{{{m},{x}}}");
                    }
                }
                if !greedy && mode != Mode::Relaxed {
                    out.push('?');
                }
            }
            Node::Backref(r) => match mode {
                Mode::Fancy => {
                    let _ = write!(out, "(?:\\k<{}>)", self.ref_name(r, cx));
                }
                _ => out.push_str("(?s:.*?)"),
            },
            Node::Cond { cond, yes, no } => match mode {
                Mode::Fancy => {
                    let _ = write!(out, "(?(<{}>)(?:", self.ref_name(cond, cx));
                    self.emit(yes, mode, out, cx);
                    out.push_str(")|(?:");
                    self.emit(no, mode, out, cx);
                    out.push_str("))");
                }
                _ => {
                    out.push_str("(?:");
                    self.emit(yes, mode, out, cx);
                    out.push('|');
                    self.emit(no, mode, out, cx);
                    out.push(')');
                }
            },
            Node::Look {
                ahead,
                negate,
                node,
            } => {
                if *ahead && !*negate && is_boundary_look(node) && mode != Mode::Fancy {
                    out.push_str(r"(?:\b{start-half}|\b{end-half})");
                    return;
                }
                if mode == Mode::Fancy {
                    out.push_str(match (ahead, negate) {
                        (true, false) => "(?=",
                        (true, true) => "(?!",
                        (false, false) => "(?<=",
                        (false, true) => "(?<!",
                    });
                    self.emit(node, mode, out, cx);
                    out.push(')');
                }
                // Std never gets here (needs_fancy); Relaxed drops it.
            }
        }
    }

    /// A set of strings at least one of which occurs in every match, or `None` if no useful
    /// set could be found. Case-insensitive parts never contribute.
    pub fn required_literals(&self) -> Option<Vec<String>> {
        let set = req(&self.root)?;
        if set.iter().any(|s| s.is_empty()) {
            return None;
        }
        Some(set)
    }
}

/// ASCII spelling of a Perl class.
fn ascii_perl(c: char) -> &'static str {
    match c {
        'd' => "[0-9]",
        'D' => "[^0-9]",
        'w' => "[0-9A-Za-z_]",
        'W' => "[^0-9A-Za-z_]",
        's' => "[\\t\\n\\x0B\\x0C\\r ]",
        _ => "[^\\t\\n\\x0B\\x0C\\r ]",
    }
}

#[derive(Default)]
struct EmitCx {
    /// Emit ASCII-only Perl classes.
    ascii: bool,
    /// Python index of each emitted capture group, in emission order.
    groups: Vec<u32>,
    /// How often each name was emitted (for `name__N` renaming).
    uses: std::collections::HashMap<String, u32>,
    /// Name under which a Python group was most recently emitted (for backreferences).
    last_name: std::collections::HashMap<u32, String>,
    /// [`Mode::Guarded`]: (emitted group index, literal) per guarded repetition.
    guards: Vec<(usize, String)>,
}

// ---- conditional / backreference elimination ------------------------------------------
//
// `A (?P<g>X)? B (?(g)Y|N) C` becomes `A (?:(?P<g>X) B Y C | B N C)`: the element defining a
// group referenced by a later conditional is split into the paths where the group takes part
// and those where it does not, in the order a backtracking engine would try them, and the rest
// of the sequence is specialised for each. Backreferences to a group that matches one of a
// few single characters (`(?P<_sep>[-/.])…(?P=_sep)`) are split the same way by value. The
// result needs neither conditionals nor backreferences, so it runs on the `regex` crate.

#[derive(Clone, Debug, PartialEq)]
enum KnownState {
    Matched,
    Unmatched,
    Value(char),
}

type Known = std::collections::HashMap<u32, KnownState>;

fn ref_index(r: &CondRef) -> u32 {
    match r {
        CondRef::Index(i) => *i,
        CondRef::Name(_) => u32::MAX,
    }
}

fn defines(n: &Node, g: u32) -> bool {
    match n {
        Node::Group(i, GroupKind::Capture { index, .. }) => *index == g || defines(i, g),
        Node::Group(i, _) | Node::Repeat { node: i, .. } | Node::Look { node: i, .. } => {
            defines(i, g)
        }
        Node::Cond { yes, no, .. } => defines(yes, g) || defines(no, g),
        Node::Concat(v) | Node::Alt(v) => v.iter().any(|x| defines(x, g)),
        _ => false,
    }
}

fn collect_refs(n: &Node, conds: &mut Vec<u32>, backs: &mut Vec<u32>) {
    match n {
        Node::Backref(r) => backs.push(ref_index(r)),
        Node::Cond { cond, yes, no } => {
            conds.push(ref_index(cond));
            collect_refs(yes, conds, backs);
            collect_refs(no, conds, backs);
        }
        Node::Group(i, _) | Node::Repeat { node: i, .. } | Node::Look { node: i, .. } => {
            collect_refs(i, conds, backs)
        }
        Node::Concat(v) | Node::Alt(v) => v.iter().for_each(|x| collect_refs(x, conds, backs)),
        _ => {}
    }
}

fn specialize(n: &Node, known: &Known) -> Node {
    match n {
        Node::Cond { cond, yes, no } => match known.get(&ref_index(cond)) {
            Some(KnownState::Matched) | Some(KnownState::Value(_)) => specialize(yes, known),
            Some(KnownState::Unmatched) => specialize(no, known),
            None => Node::Cond {
                cond: cond.clone(),
                yes: Box::new(specialize(yes, known)),
                no: Box::new(specialize(no, known)),
            },
        },
        Node::Backref(r) => match known.get(&ref_index(r)) {
            Some(KnownState::Value(c)) => Node::Lit(*c, false),
            _ => n.clone(),
        },
        Node::Group(i, k) => Node::Group(Box::new(specialize(i, known)), k.clone()),
        Node::Repeat {
            node,
            min,
            max,
            greedy,
        } => Node::Repeat {
            node: Box::new(specialize(node, known)),
            min: *min,
            max: *max,
            greedy: *greedy,
        },
        Node::Look {
            ahead,
            negate,
            node,
        } => Node::Look {
            ahead: *ahead,
            negate: *negate,
            node: Box::new(specialize(node, known)),
        },
        Node::Concat(v) => Node::Concat(v.iter().map(|x| specialize(x, known)).collect()),
        Node::Alt(v) => Node::Alt(v.iter().map(|x| specialize(x, known)).collect()),
        other => other.clone(),
    }
}

/// The paths of `n` split by whether group `g` takes part, in backtracking order.
fn decompose(n: &Node, g: u32) -> Option<Vec<(Node, KnownState)>> {
    if !defines(n, g) {
        return Some(vec![(n.clone(), KnownState::Unmatched)]);
    }
    Some(match n {
        Node::Group(_, GroupKind::Capture { index, .. }) if *index == g => {
            vec![(n.clone(), KnownState::Matched)]
        }
        Node::Group(i, kind) => decompose(i, g)?
            .into_iter()
            .map(|(b, s)| (Node::Group(Box::new(b), kind.clone()), s))
            .collect(),
        Node::Alt(v) => {
            let mut out = Vec::new();
            for b in v {
                out.extend(decompose(b, g)?);
            }
            out
        }
        Node::Concat(v) => {
            let idx = v.iter().position(|x| defines(x, g))?;
            decompose(&v[idx], g)?
                .into_iter()
                .map(|(b, s)| {
                    let mut items = v[..idx].to_vec();
                    items.push(b);
                    items.extend_from_slice(&v[idx + 1..]);
                    (Node::Concat(items), s)
                })
                .collect()
        }
        Node::Repeat {
            node,
            min: 0,
            max: Some(1),
            greedy,
        } => {
            let mut d = decompose(node, g)?;
            if *greedy {
                d.push((Node::Empty, KnownState::Unmatched));
            } else {
                d.insert(0, (Node::Empty, KnownState::Unmatched));
            }
            d
        }
        Node::Repeat {
            node,
            min: 1,
            max: Some(1),
            ..
        } => decompose(node, g)?,
        _ => return None,
    })
}

/// Splits a group that always matches one of a few single characters by value.
fn split_values(n: &Node, g: u32) -> Option<Vec<(Node, KnownState)>> {
    let Node::Group(inner, kind @ GroupKind::Capture { index, .. }) = n else {
        return None;
    };
    if *index != g {
        return None;
    }
    let chars: Vec<char> = match &**inner {
        Node::Lit(c, false) => vec![*c],
        Node::Class(cl, false) if !cl.negated => {
            let mut v = Vec::new();
            for it in &cl.items {
                match it {
                    ClassItem::Char(c) => v.push(*c),
                    ClassItem::Range(a, b) if (*b as u32) - (*a as u32) < 8 => {
                        v.extend(*a..=*b);
                    }
                    _ => return None,
                }
            }
            v
        }
        _ => return None,
    };
    if chars.is_empty() || chars.len() > 8 {
        return None;
    }
    Some(
        chars
            .into_iter()
            .map(|c| {
                (
                    Node::Group(Box::new(Node::Lit(c, false)), kind.clone()),
                    KnownState::Value(c),
                )
            })
            .collect(),
    )
}

fn elim(n: &Node, known: &Known) -> Node {
    let n = specialize(n, known);
    match &n {
        Node::Concat(v) => Node::Concat(elim_seq(v, known, 0)),
        Node::Alt(v) => Node::Alt(v.iter().map(|x| elim(x, known)).collect()),
        Node::Group(i, k) => {
            let inner = elim(i, known);
            // a group whose body is a sequence may need the split inside it
            Node::Group(Box::new(inner), k.clone())
        }
        Node::Repeat {
            node,
            min,
            max,
            greedy,
        } => Node::Repeat {
            node: Box::new(elim(node, known)),
            min: *min,
            max: *max,
            greedy: *greedy,
        },
        Node::Look {
            ahead,
            negate,
            node,
        } => Node::Look {
            ahead: *ahead,
            negate: *negate,
            node: Box::new(elim(node, known)),
        },
        Node::Cond { cond, yes, no } => Node::Cond {
            cond: cond.clone(),
            yes: Box::new(elim(yes, known)),
            no: Box::new(elim(no, known)),
        },
        _ => n,
    }
}

fn elim_seq(items: &[Node], known: &Known, depth: u32) -> Vec<Node> {
    let mut out = Vec::new();
    for i in 0..items.len() {
        let item = elim(&items[i], known);
        let rest = &items[i + 1..];
        let (mut conds, mut backs) = (Vec::new(), Vec::new());
        for r in rest {
            collect_refs(r, &mut conds, &mut backs);
        }
        let mut split = None;
        if depth < 6 {
            for g in conds.iter().chain(backs.iter()) {
                if known.contains_key(g) || !defines(&item, *g) {
                    continue;
                }
                let by_value = backs.contains(g);
                let branches = if by_value {
                    split_values(&item, *g)
                } else {
                    decompose(&item, *g)
                };
                if let Some(b) = branches {
                    split = Some((*g, b));
                    break;
                }
            }
        }
        let Some((g, branches)) = split else {
            out.push(item);
            continue;
        };
        // merge neighbours with the same state to limit duplication
        let mut merged: Vec<(Node, KnownState)> = Vec::new();
        for (b, st) in branches {
            match merged.last_mut() {
                Some((Node::Alt(v), s)) if *s == st => v.push(b),
                Some((prev, s)) if *s == st => {
                    let p = std::mem::replace(prev, Node::Empty);
                    *prev = Node::Alt(vec![p, b]);
                }
                _ => merged.push((b, st)),
            }
        }
        let mut alts = Vec::new();
        for (b, st) in merged {
            let mut k2 = known.clone();
            k2.insert(g, st);
            let mut seq = vec![b];
            seq.extend_from_slice(rest);
            alts.push(Node::Concat(elim_seq(&seq, &k2, depth + 1)));
        }
        out.push(Node::Alt(alts));
        return out;
    }
    out
}

/// Score of a literal set: its shortest member's length (longer is more selective).
fn score(set: &[String]) -> usize {
    set.iter().map(|s| s.chars().count()).min().unwrap_or(0)
}

fn literal_string(n: &Node) -> Option<String> {
    match n {
        Node::Lit(c, false) if *c != '\n' => Some(c.to_string()),
        Node::Group(i, GroupKind::NonCapture | GroupKind::Capture { .. }) => literal_string(i),
        Node::Concat(v) => {
            let mut s = String::new();
            for x in v {
                s.push_str(&literal_string(x)?);
            }
            Some(s)
        }
        _ => None,
    }
}

fn req(n: &Node) -> Option<Vec<String>> {
    const MAX_SET: usize = 64;
    match n {
        Node::Lit(c, false) if *c != '\n' => Some(vec![c.to_string()]),
        Node::Group(i, GroupKind::Atomic | GroupKind::NonCapture | GroupKind::Capture { .. }) => {
            req(i)
        }
        Node::Repeat { node, min, .. } if *min >= 1 => req(node),
        Node::Alt(v) => {
            let mut all = Vec::new();
            for b in v {
                let s = req(b)?;
                for x in s {
                    if !all.contains(&x) {
                        all.push(x);
                    }
                }
                if all.len() > MAX_SET {
                    return None;
                }
            }
            Some(all)
        }
        Node::Concat(v) => {
            let mut best: Option<Vec<String>> = None;
            let consider = |cand: Vec<String>, best: &mut Option<Vec<String>>| {
                let better = match best {
                    None => true,
                    Some(b) => {
                        let (sc, sb) = (score(&cand), score(b));
                        sc > sb || (sc == sb && cand.len() < b.len())
                    }
                };
                if better && !cand.is_empty() {
                    *best = Some(cand);
                }
            };
            let mut run = String::new();
            for x in v {
                if let Some(s) = literal_string(x) {
                    run.push_str(&s);
                    continue;
                }
                if !run.is_empty() {
                    consider(vec![std::mem::take(&mut run)], &mut best);
                }
                if let Some(s) = req(x) {
                    consider(s, &mut best);
                }
            }
            if !run.is_empty() {
                consider(vec![run], &mut best);
            }
            best
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn std(p: &str) -> String {
        let r = PyRegex::parse(p, false).unwrap();
        assert!(!r.needs_fancy(), "{p}");
        r.to_std()
    }

    #[test]
    fn translations() {
        assert_eq!(std(r"^a\Z"), r"\Aa\z");
        assert_eq!(std(r"a{,3}"), r"(?:a){0,3}");
        let lb = regex::Regex::new(&std(r"x{^LN-BEG}")).unwrap();
        assert!(!lb.is_match("x{^LN-BEG}") && lb.as_str().contains(r"\{"));
        assert_eq!(std(r"[[&~-]"), r"[\[\&\~\-]");
        assert_eq!(std(r"doesn\'t"), r"doesn't");
        assert_eq!(std(r"(?P<x>a)(?:b)"), r"(?P<x>a)(?:b)");
        assert_eq!(
            std(r"(?=^|\b|\W)x(?=\b|\W|$)"),
            r"(?:\b{start-half}|\b{end-half})x(?:\b{start-half}|\b{end-half})"
        );
        regex::Regex::new(&std(r"(?i)a(?-i:b)[^\]\\x]")).unwrap();
    }

    #[test]
    fn conditionals_are_eliminated() {
        let p = r"^Failed (?P<cond_inv>invalid user )?(?P<u>(?P<cond_user>\S+)|(?(cond_inv)(?:(?! from ).)*?|[^:]+)) from (?P<h>\S+)(?(cond_user): |(?:(?:(?! from ).)*)$)";
        let pat = crate::engine::Pattern::new(p, false).unwrap();
        let mut s = pat.slots();
        let get = |line: &str, s: &mut crate::engine::Slots, g: &str| {
            assert!(pat.search(line, 0, s), "{line}");
            let (a, b) = s.get(pat.group_index(g).unwrap()).unwrap();
            line[a..b].to_string()
        };
        let l = "Failed invalid user a from b from 1.2.3.4 port 2\n";
        // `u` cannot contain " from " on the `invalid user` path: Python takes the other one
        assert_eq!(get(l, &mut s, "u"), "invalid user a from b");
        assert!(s.get(pat.group_index("cond_inv").unwrap()).is_none());
        assert_eq!(get(l, &mut s, "h"), "1.2.3.4");
        let l = "Failed root from 1.2.3.4: x\n";
        assert_eq!(get(l, &mut s, "u"), "root");
        let l = "Failed invalid user root from 1.2.3.4: x\n";
        assert_eq!(get(l, &mut s, "u"), "root");
        assert!(s.get(pat.group_index("cond_inv").unwrap()).is_some());
        let l = "Failed invalid user a b from 1.2.3.4 port 2\n";
        assert_eq!(get(l, &mut s, "u"), "a b");
        let b = crate::engine::Pattern::new(r"(?P<s>[-/])(?P<m>a)(?P=s)b", false).unwrap();
        assert!(!b.is_fancy());
        let mut s = b.slots();
        assert!(b.search("x/a/b", 0, &mut s));
        assert_eq!(s.get(2), Some((2, 3)));
        assert!(!b.search("-a/b", 0, &mut s));
    }

    #[test]
    fn literals() {
        let r = PyRegex::parse(
            r"^User (?:\S+|.*?) from (?:a|bc) not allowed because",
            false,
        )
        .unwrap();
        assert_eq!(
            r.required_literals().unwrap(),
            vec![" not allowed because".to_string()]
        );
        let r = PyRegex::parse(r"^(?:Failed|Invalid) x", false).unwrap();
        assert_eq!(r.required_literals().unwrap(), vec!["Failed", "Invalid"]);
        assert!(PyRegex::parse(r"(?i)abc", false)
            .unwrap()
            .required_literals()
            .is_none());
    }
}
