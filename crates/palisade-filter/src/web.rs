//! Web server filters: `nginx_access`/`apache_access` (common and combined log formats),
//! `nginx_error` and `apache_error`.
//!
//! The client address is taken from the position the server writes it (the first field of
//! an access line, the `client:` / `[client …]` field of an error line), never from request
//! text, user names or user agents, which the client controls.

use crate::builtin::{Base, BuiltinOptions, Mode};
use crate::logformat::LogFormat;
use crate::scan::{self, strip_prefix};
use crate::time::TimeParser;
use crate::{Filter, LineCtx, Outcome};
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use memchr::memmem;
use palisade_core::{Allowlist, Event};
use std::sync::Arc;

/// Rule names of the access-log filters, in rule-index order (also their priority: a line
/// that fits several rules is reported under the first).
pub const ACCESS_RULES: &[&str] = &[
    "probe",
    "scanner_path",
    "http_auth",
    "bad_bot",
    "bad_request",
    "not_found",
];
const PROBE: usize = 0;
const SCANNER_PATH: usize = 1;
const HTTP_AUTH: usize = 2;
const BAD_BOT: usize = 3;
const BAD_REQUEST: usize = 4;
const NOT_FOUND: usize = 5;

const F_PATH: usize = 0;
const F_STATUS: usize = 1;
const F_METHOD: usize = 2;

/// Traversal, injection and exploit fragments in a request line (ASCII case-insensitive).
const PROBES: &[&str] = &[
    "../",
    "..\\",
    "..%2f",
    "..%5c",
    "%2e%2e",
    ".%2e/",
    "/etc/passwd",
    "/etc/shadow",
    "%2fetc%2fpasswd",
    "/proc/self/environ",
    "<script",
    "%3cscript",
    "' or '",
    "'+or+'",
    "union select",
    "union+select",
    "union%20select",
    "union all select",
    "information_schema",
    "xp_cmdshell",
    "call_user_func",
    "invokefunction",
    ";wget",
    ";curl",
    "|wget",
    "%3bwget",
    "%7cwget",
    "`wget",
    "$(wget",
    "%24%28wget",
    "%3bcurl",
    "/bin/sh",
    "/bin/bash",
    "cmd.exe",
    "${jndi:",
    "%24%7bjndi",
    "php://",
    "base64_decode(",
    "allow_url_include",
    "auto_prepend_file",
    "<?php",
    "%3c%3fphp",
    "() {",
    "%00",
];

/// Command downloads (`=wget+http://…`): a probe only after a shell metacharacter and
/// before `://`, since articles and searches about the tools have them in their words.
/// Then `%27` (an encoded quote: a probe only before SQL syntax, since names like O'Reilly
/// have one) and `/backup.` (a scanner path only for an archive or dump).
const CMD_PROBES: &[&str] = &[
    "wget+http",
    "wget%20http",
    "curl+http",
    "curl%20http",
    "%27",
    "/backup.",
];
const CTX_QUOTE: usize = 4;
const CTX_BACKUP: usize = 5;

/// Whether `rest` (after an encoded quote) goes on as SQL: `' OR `, `' AND `, `' UNION`,
/// `'--`, `'#`, `';`.
fn sql_after_quote(rest: &[u8]) -> bool {
    let mut r = rest;
    // separators: `+`, `%20`, ` `
    loop {
        if let Some(x) = strip_prefix(r, b"+").or_else(|| strip_prefix(r, b" ")) {
            r = x;
        } else if r.len() >= 3 && scan::eq_ignore_case(&r[..3], b"%20") {
            r = &r[3..];
        } else {
            break;
        }
    }
    let word = |w: &[u8]| {
        r.len() > w.len()
            && scan::eq_ignore_case(&r[..w.len()], w)
            && matches!(r[w.len()], b'+' | b' ' | b'%' | b'(' | b'\'')
    };
    let starts = |w: &[u8]| r.len() >= w.len() && scan::eq_ignore_case(&r[..w.len()], w);
    word(b"or")
        || word(b"and")
        || word(b"union")
        || word(b"select")
        || starts(b"--")
        || starts(b"%23")
        || starts(b"%3b")
        || starts(b"#")
        || starts(b";")
}

/// Whether the path after `/backup.` names an archive or a dump.
fn backup_archive(rest: &[u8]) -> bool {
    const EXT: &[&[u8]] = &[
        b"zip", b"tar", b"tgz", b"gz", b"rar", b"7z", b"sql", b"bak", b"bz2", b"xz",
    ];
    EXT.iter().any(|e| {
        rest.len() >= e.len()
            && scan::eq_ignore_case(&rest[..e.len()], e)
            && matches!(rest.get(e.len()), None | Some(b'.' | b'?' | b' '))
    })
}

/// Paths that only scanners request, whatever the answer (secrets, VCS metadata, exploits).
const SCANNER_HARD: &[&str] = &[
    "/.env",
    "/.git/",
    "/.gitconfig",
    "/.svn/",
    "/.hg/",
    "/.bzr/",
    "/.aws/",
    "/.ssh/",
    "/.ds_store",
    "/.htpasswd",
    "/.htaccess",
    "/.vscode/",
    "/.idea/",
    "/.docker",
    "/.npmrc",
    "/.bash_history",
    "/.kube/",
    "/.terraform",
    "/boaform/",
    "/db.sql",
    "/dump.sql",
    "/database.sql",
    "/backup.sql",
    ".sql.gz",
    ".sql.zip",
    ".php.bak",
    ".php~",
    ".php.save",
    ".php.old",
    "/config.php.bak",
    "/wp-config.php.",
    "/web.config",
    "/vendor/phpunit",
    "/hnap1",
    "/gponform",
    "/setup.cgi",
];

/// Paths of real applications that scanners probe: only suspicious when the server does not
/// serve them (status 4xx), so a host that runs WordPress or webmail is safe.
const SCANNER_SOFT: &[&str] = &[
    "wp-login.php",
    "xmlrpc.php",
    "/wp-admin",
    "/wp-includes",
    "/wp-content",
    "/wp-signup",
    "/wordpress/",
    "/phpmyadmin",
    "/pma/",
    "/pma20",
    "/myadmin",
    "/mysqladmin",
    "/sqladmin",
    "/dbadmin",
    "/adminer",
    "/cgi-bin/",
    "/roundcube",
    "/webmail",
    "/mail/",
    "/server-status",
    "/server-info",
    "/manager/html",
    "/owa/",
    "/autodiscover/",
    "/actuator/",
    "/solr/",
    "/config.json",
    "/credentials.json",
    "/secrets.json",
    // Names real sites use too (`/info.php?id=3`, `/blog/tags/shell?page=2`): only a 4xx
    // at the start of the path counts (see ROOT_ONLY).
    "/phpinfo",
    "/info.php",
    "/shell?",
];

/// Scanner paths that only count at the very start of the path: elsewhere they are words of
/// a real page's path.
const ROOT_ONLY: &[&str] = &["/phpinfo", "/info.php", "/shell?"];

/// Extensions of static assets a page references (styles, scripts, fonts, images): a 404 for
/// one with the site's own referrer is a broken page, not a scan.
const STATIC_EXT: &[&[u8]] = &[
    b".css", b".js", b".mjs", b".map", b".woff", b".woff2", b".ttf", b".otf", b".eot", b".svg",
    b".png", b".jpg", b".jpeg", b".gif", b".webp", b".avif", b".ico",
];

/// User agents of e-mail harvesters, spam bots and attack tools (ASCII case-insensitive
/// substrings). General HTTP clients (curl, python-requests, Go-http-client) and search
/// engine crawlers are deliberately absent.
const BAD_BOTS: &[&str] = &[
    "emailcollector",
    "webemailextrac",
    "atomic_email_hunter",
    "contactbot",
    "datacha0s",
    "emailsiphon",
    "emailwolf",
    "email extractor",
    "extractorpro",
    "webbandit",
    "cherrypicker",
    "zmeu",
    "morfeus",
    "jorgee",
    "sqlmap",
    "nikto",
    "masscan",
    "zgrab",
    "nmap scripting engine",
    "gobuster",
    "fuzz faster u fool",
    "ffuf",
    "dirbuster",
    "feroxbuster",
    "wfuzz",
    "wpscan",
    "nuclei",
    "acunetix",
    "netsparker",
    "openvas",
    "w3af",
    "havij",
    "whatweb",
    "indy library",
    "dts agent",
];

/// Search-engine and archive crawlers: they follow whatever links exist, dead ones included,
/// so their plain 404s (aggressive mode) are not a scan. Only that rule looks at this list
/// (a claimed crawler is still caught by probe, path and bad-request rules).
const CRAWLERS: &[&str] = &[
    "googlebot",
    "bingbot",
    "yandexbot",
    "duckduckbot",
    "baiduspider",
    "applebot",
    "slurp",
    "mj12bot",
    "ahrefsbot",
    "semrushbot",
    "dotbot",
    "petalbot",
    "ezooms",
    "archive.org_bot",
    "ia_archiver",
    "facebookexternalhit",
];

/// Attack fragments in a user agent (shellshock, log4shell, XSS).
const UA_PROBES: &[&str] = &["() {", "${jndi:", "%24%7bjndi", "<script", "union select"];

/// Files browsers request on their own; a 404 for them is not an event.
const BROWSER_404: &[&[u8]] = &[
    b"/favicon.ico",
    b"/favicon.png",
    b"/favicon.svg",
    b"/robots.txt",
    b"/sitemap.xml",
    b"/ads.txt",
    b"/app-ads.txt",
    b"/humans.txt",
    b"/browserconfig.xml",
    b"/site.webmanifest",
    b"/manifest.json",
];

fn ac(patterns: &[&str]) -> AhoCorasick {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .kind(Some(AhoCorasickKind::DFA))
        .build(patterns)
        .expect("static patterns compile")
}

/// The first `"…"` field at the start of `b` (which must start with `"`): its inside and the
/// rest after the closing quote. A quote escaped with a backslash (apache) does not close it.
fn quoted(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let inner = strip_prefix(b, b"\"")?;
    let mut from = 0;
    loop {
        let i = from + memchr::memchr(b'"', &inner[from..])?;
        let backslashes = inner[..i].iter().rev().take_while(|&&c| c == b'\\').count();
        if backslashes % 2 == 0 {
            return Some((&inner[..i], &inner[i + 1..]));
        }
        from = i + 1;
    }
}

/// `nginx_access` / `apache_access`.
pub struct Access {
    base: Base,
    aggressive: bool,
    time: TimeParser,
    req_ac: AhoCorasick,
    n_probe: usize,
    n_cmd: usize,
    n_hard: usize,
    /// Pattern ids (in `req_ac`) that only count at the start of the path.
    root_only: Vec<usize>,
    ua_ac: AhoCorasick,
    crawler_ac: AhoCorasick,
    /// A configured format; `None`: the built-in combined/common parser.
    format: Option<LogFormat>,
    /// Proxies whose `X-Forwarded-For` names the client.
    trusted: Option<Allowlist>,
}

impl Access {
    /// An access-log filter called `name` reading `format` (`None`: combined or common),
    /// taking the client from `X-Forwarded-For` behind the `trusted` proxies.
    pub fn with_format(
        name: &str,
        opts: &BuiltinOptions,
        format: Option<LogFormat>,
        trusted: Option<Allowlist>,
    ) -> Self {
        let mut f = Self::new(name, opts);
        f.format = format;
        f.trusted = trusted;
        f
    }

    /// A new access-log filter called `name`.
    pub fn new(name: &str, opts: &BuiltinOptions) -> Self {
        let req: Vec<&str> = PROBES
            .iter()
            .chain(CMD_PROBES)
            .chain(SCANNER_HARD)
            .chain(SCANNER_SOFT)
            .copied()
            .collect();
        let ua: Vec<&str> = BAD_BOTS.iter().chain(UA_PROBES).copied().collect();
        let root_only = req
            .iter()
            .enumerate()
            .filter(|(_, p)| ROOT_ONLY.contains(p))
            .map(|(i, _)| i)
            .collect();
        Access {
            base: Base::new(name, ACCESS_RULES, &["path", "status", "method"]),
            aggressive: opts.mode == Mode::Aggressive,
            time: TimeParser::new(opts.tz.clone()),
            req_ac: ac(&req),
            n_probe: PROBES.len(),
            n_cmd: PROBES.len() + CMD_PROBES.len(),
            n_hard: PROBES.len() + CMD_PROBES.len() + SCANNER_HARD.len(),
            ua_ac: ac(&ua),
            crawler_ac: ac(CRAWLERS),
            root_only,
            format: None,
            trusted: None,
        }
    }
}

/// The fields of one access line that the rules look at.
struct AccessLine<'a> {
    client: &'a [u8],
    user: &'a [u8],
    time: &'a [u8],
    req: &'a [u8],
    status: u32,
    status_b: &'a [u8],
    referer: &'a [u8],
    ua: &'a [u8],
}

fn split_access(line: &[u8]) -> Option<AccessLine<'_>> {
    let sp = memchr::memchr(b' ', line)?;
    let client = &line[..sp];
    let q1 = sp + memchr::memchr(b'"', &line[sp..])?;
    let head = &line[sp + 1..q1];
    // `IDENT USER [TIME] `: the time is the last bracketed field before the request.
    let lb = memchr::memrchr(b'[', head)?;
    let time = &head[lb + 1..];
    let (_, after_ident) = scan::split_first_token(head);
    let s = head.len() - after_ident.len();
    let user = if lb < s {
        &b""[..]
    } else {
        let u = &head[s..lb];
        u.strip_suffix(b" ").unwrap_or(u)
    };
    let (req, rest) = quoted(&line[q1..])?;
    let rest = strip_prefix(rest, b" ")?;
    let status_b = rest.get(..3)?;
    let status = scan::digits_n(status_b, 3)?;
    let rest = &rest[3..];
    // ` SIZE "REFERER" "UA"` (combined) or nothing more (common).
    let mut ua: &[u8] = &[];
    let mut referer: &[u8] = &[];
    if let Some(r) = strip_prefix(rest, b" ") {
        let (_, r) = scan::split_first_token(r);
        if let Some((rf, r)) = quoted(r) {
            referer = rf;
            if let Some(r) = strip_prefix(r, b" ") {
                if let Some((u, _)) = quoted(r) {
                    ua = u;
                }
            }
        }
    }
    Some(AccessLine {
        client,
        user,
        time,
        req,
        status,
        status_b,
        referer,
        ua,
    })
}

/// Whether `path` (query excluded) names a static asset.
fn static_asset(path: &[u8]) -> bool {
    let p = match memchr::memchr(b'?', path) {
        Some(i) => &path[..i],
        None => path,
    };
    let last = memchr::memrchr(b'/', p).map_or(p, |i| &p[i..]);
    memchr::memrchr(b'.', last).is_some_and(|i| {
        STATIC_EXT
            .iter()
            .any(|e| scan::eq_ignore_case(&last[i..], e))
    })
}

/// The host of an `http(s)://host[:port]/…` referrer.
fn referer_host(r: &[u8]) -> Option<&[u8]> {
    let r = strip_prefix(r, b"https://").or_else(|| strip_prefix(r, b"http://"))?;
    let end = r
        .iter()
        .position(|&c| c == b'/' || c == b'?' || c == b'#')
        .unwrap_or(r.len());
    let h = &r[..end];
    // without a port (not for a bracketed IPv6 host)
    Some(match memchr::memrchr(b':', h) {
        Some(i) if !h.ends_with(b"]") => &h[..i],
        _ => h,
    })
}

/// A page's own referrer: an http(s) URL of the virtual host, or of any host when the format
/// does not log the virtual host.
fn own_referer(referer: &[u8], host: &[u8]) -> bool {
    let Some(rh) = referer_host(referer) else {
        return false;
    };
    if host.is_empty() || host == b"-" || host == b"_" {
        return !rh.is_empty();
    }
    let host = match memchr::memrchr(b':', host) {
        Some(i) if !host.ends_with(b"]") && memchr::memchr(b':', &host[..i]).is_none() => {
            &host[..i]
        }
        _ => host,
    };
    rh.eq_ignore_ascii_case(host)
}

/// Whether the command-download fragment at `at` in `req` follows a shell metacharacter
/// (`;wget`, `|curl`, `=wget`, `%3bwget`, `` `wget ``), not a word of a title.
fn after_shell_meta(req: &[u8], at: usize) -> bool {
    let before = &req[..at];
    matches!(before.last(), Some(b';' | b'|' | b'&' | b'`' | b'(' | b'='))
        || [&b"%3b"[..], b"%7c", b"%26", b"%60", b"%28", b"%3d"]
            .iter()
            .any(|e| before.len() >= 3 && scan::eq_ignore_case(&before[before.len() - 3..], e))
}

fn browser_404(path: &[u8]) -> bool {
    let p = match memchr::memchr(b'?', path) {
        Some(i) => &path[..i],
        None => path,
    };
    if BROWSER_404.iter().any(|b| scan::eq_ignore_case(p, b)) {
        return true;
    }
    let lower_starts =
        |pre: &[u8]| p.len() >= pre.len() && scan::eq_ignore_case(&p[..pre.len()], pre);
    (lower_starts(b"/apple-touch-icon")
        && p.len() >= 4
        && scan::eq_ignore_case(&p[p.len() - 4..], b".png"))
        || lower_starts(b"/.well-known/")
}

impl Filter for Access {
    fn name(&self) -> &str {
        &self.base.name
    }

    fn rules(&self) -> &[Arc<str>] {
        &self.base.rules
    }

    fn process(&mut self, line: &[u8], ctx: &LineCtx, out: &mut Vec<Event>) -> Outcome {
        // Files written on (or copied through) Windows keep a CR before the LF.
        let line = crate::scan::trim_line_end(line);
        let (l, host, iso) = match &self.format {
            None => match split_access(line) {
                Some(l) => (l, &b""[..], false),
                None => return Outcome::Missed,
            },
            Some(f) => {
                let Some(x) = f.split(line) else {
                    return Outcome::Missed;
                };
                let Some(status) = (x.status.len() == 3)
                    .then(|| scan::digits_n(x.status, 3))
                    .flatten()
                else {
                    return Outcome::Missed;
                };
                let iso = x.time.is_empty();
                (
                    AccessLine {
                        client: &[],
                        user: x.user,
                        time: if iso { x.time_iso } else { x.time },
                        req: x.req,
                        status,
                        status_b: x.status,
                        referer: x.referer,
                        ua: x.ua,
                    },
                    x.host,
                    iso,
                )
            }
        };
        let (method, after) = scan::split_first_token(l.req);
        let (path, _) = scan::split_first_token(after);
        let path_at = l.req.len() - after.len();
        let garbage = l.req == b"-"
            || l.req.first() == Some(&0x16)
            || l.req.starts_with(b"\\x")
            || after.is_empty()
            || !method.iter().all(u8::is_ascii_uppercase);
        let mut rule = None;
        for m in self.req_ac.find_iter(l.req) {
            let id = m.pattern().as_usize();
            if id < self.n_probe {
                rule = Some(PROBE);
                break;
            }
            if id - self.n_probe == CTX_QUOTE {
                if sql_after_quote(&l.req[m.end()..]) {
                    rule = Some(PROBE);
                    break;
                }
                continue;
            }
            if id - self.n_probe == CTX_BACKUP {
                if backup_archive(&l.req[m.end()..]) {
                    rule = Some(SCANNER_PATH);
                }
                continue;
            }
            if id < self.n_cmd {
                // `wget+http` is a command only after a shell metacharacter, not in a title.
                let rest = &l.req[m.end()..];
                let url = rest.starts_with(b"://")
                    || (rest.len() >= 9 && scan::eq_ignore_case(&rest[..9], b"%3a%2f%2f"));
                if url && after_shell_meta(l.req, m.start()) {
                    rule = Some(PROBE);
                    break;
                }
                continue;
            }
            // A name real sites use too counts only as the whole start of the path.
            if self.root_only.contains(&id) && m.start() != path_at {
                continue;
            }
            // Soft paths (real applications) only count when the server did not serve them.
            if id < self.n_hard || l.status >= 400 {
                rule = Some(SCANNER_PATH);
            }
        }
        if rule.is_none()
            && (l.status == 401 || (l.status == 403 && l.user != b"-" && !l.user.is_empty()))
        {
            rule = Some(HTTP_AUTH);
        }
        if rule.is_none() && !l.ua.is_empty() {
            if let Some(m) = self.ua_ac.find(l.ua) {
                rule = Some(if m.pattern().as_usize() < BAD_BOTS.len() {
                    BAD_BOT
                } else {
                    PROBE
                });
            }
        }
        if rule.is_none()
            && (l.status == 400
                || l.status == 444
                || (l.status == 408 && self.aggressive)
                || (garbage && l.status >= 400))
        {
            rule = Some(BAD_REQUEST);
        }
        // Every other 404 is an event in aggressive mode only: real sites have broken links,
        // and normal mode must never flag a benign visitor (404 storms from scanner tools are
        // caught by user agent and path in both modes). A static asset a page of the site
        // referenced (its own referrer) is a broken page, never a scan; a crawler follows
        // dead links.
        if rule.is_none()
            && self.aggressive
            && l.status == 404
            && !browser_404(path)
            && !(static_asset(path) && own_referer(l.referer, host))
            && !self.crawler_ac.is_match(l.ua)
        {
            rule = Some(NOT_FOUND);
        }
        let Some(rule) = rule else {
            return Outcome::Missed;
        };
        let ip = match &self.format {
            None => scan::ip(l.client),
            Some(f) => {
                // split again only for a matching line (the fields borrow `line`)
                f.split(line)
                    .and_then(|x| f.client(&x, self.trusted.as_ref()))
            }
        };
        let Some(ip) = ip else {
            return Outcome::Ignored;
        };
        let parsed = if iso {
            self.time.parse_rfc3339(l.time)
        } else {
            self.time.parse_clf(l.time)
        };
        let time = parsed.map(|t| t.0).or(ctx.source_time).unwrap_or(ctx.now);
        let user = (rule == HTTP_AUTH && l.user != b"-" && !l.user.is_empty()).then_some(l.user);
        let path_field = if garbage { l.req } else { path };
        out.push(self.base.event(
            line,
            time,
            ip,
            rule,
            true,
            user,
            &[
                (F_PATH, path_field),
                (F_STATUS, l.status_b),
                (F_METHOD, if garbage { &b"-"[..] } else { method }),
            ],
        ));
        Outcome::Matched
    }
}

/// Rule names of `nginx_error`.
pub const NGINX_ERROR_RULES: &[&str] = &[
    "auth_failure",
    "user_not_found",
    "auth_missing",
    "limit_req",
];

/// `nginx_error`: basic-auth failures and `limit_req` rejections.
pub struct NginxError {
    base: Base,
    aggressive: bool,
    time: TimeParser,
}

impl NginxError {
    /// A new `nginx_error` filter.
    pub fn new(opts: &BuiltinOptions) -> Self {
        NginxError {
            base: Base::new("nginx_error", NGINX_ERROR_RULES, &[]),
            aggressive: opts.mode == Mode::Aggressive,
            time: TimeParser::new(opts.tz.clone()),
        }
    }
}

/// The address after the first `, client: ` in `b`.
fn nginx_client(b: &[u8]) -> Option<&[u8]> {
    let p = memmem::find(b, b", client: ")?;
    let t = &b[p + 10..];
    let end = memchr::memchr2(b',', b' ', t).unwrap_or(t.len());
    Some(&t[..end])
}

impl Filter for NginxError {
    fn name(&self) -> &str {
        &self.base.name
    }

    fn rules(&self) -> &[Arc<str>] {
        &self.base.rules
    }

    fn process(&mut self, line: &[u8], ctx: &LineCtx, out: &mut Vec<Event>) -> Outcome {
        // Files written on (or copied through) Windows keep a CR before the LF.
        let line = crate::scan::trim_line_end(line);
        // `YYYY/MM/DD HH:MM:SS [level] PID#TID: *CID MSG`
        if line.len() < 24 || line[4] != b'/' || line[19] != b' ' || line[20] != b'[' {
            return Outcome::Missed;
        }
        let Some(rb) = memchr::memchr(b']', &line[20..]) else {
            return Outcome::Missed;
        };
        let rest = &line[20 + rb + 1..];
        let Some(rest) = strip_prefix(rest, b" ") else {
            return Outcome::Missed;
        };
        let Some(c) = memmem::find(rest, b": ") else {
            return Outcome::Missed;
        };
        let mut msg = &rest[c + 2..];
        if msg.first() == Some(&b'*') {
            let (_, m) = scan::split_first_token(msg);
            msg = m;
        }
        let (rule, host, user): (usize, Option<&[u8]>, Option<&[u8]>) =
            if let Some(r) = strip_prefix(msg, b"user \"") {
                // The user name is not escaped and request text follows the client field, so
                // the fixed wording must occur exactly once or the line is ambiguous.
                const MISMATCH: &[u8] = b"\": password mismatch, client: ";
                const NOTFOUND: &[u8] = b"\" was not found in \"";
                if let Some(p) = memmem::find(r, MISMATCH) {
                    if memmem::find_iter(r, MISMATCH).nth(1).is_some() {
                        return Outcome::Ignored;
                    }
                    (0, nginx_client(&r[p + 1..]), Some(&r[..p]))
                } else if let Some(p) = memmem::find(r, NOTFOUND) {
                    if memmem::find_iter(r, NOTFOUND).nth(1).is_some() {
                        return Outcome::Ignored;
                    }
                    (1, nginx_client(&r[p..]), Some(&r[..p]))
                } else {
                    return Outcome::Missed;
                }
            } else if let Some(r) = strip_prefix(
                msg,
                b"no user/password was provided for basic authentication",
            ) {
                if !self.aggressive {
                    return Outcome::Missed;
                }
                (2, nginx_client(r), None)
            } else if let Some(r) = strip_prefix(msg, b"limiting requests, excess: ") {
                (3, nginx_client(r), None)
            } else {
                return Outcome::Missed;
            };
        let Some(ip) = host.and_then(scan::ip) else {
            return Outcome::Ignored;
        };
        let time = self
            .time
            .parse_rfc3339(line)
            .map(|t| t.0)
            .or(ctx.source_time)
            .unwrap_or(ctx.now);
        out.push(self.base.event(line, time, ip, rule, true, user, &[]));
        Outcome::Matched
    }
}

/// Rule names of `apache_error`.
pub const APACHE_ERROR_RULES: &[&str] = &[
    "auth_failure",
    "user_not_found",
    "denied",
    "invalid_uri",
    "modsecurity",
    "dir_forbidden",
    "invalid_method",
    "script_not_found",
    "probe",
    "not_found",
];
const AE_INVALID_URI: usize = 3;
const AE_DIR_FORBIDDEN: usize = 5;
const AE_INVALID_METHOD: usize = 6;
const AE_SCRIPT_NOT_FOUND: usize = 7;
const AE_PROBE: usize = 8;
const AE_NOT_FOUND: usize = 9;

/// File extensions of server-side programs: a `File does not exist` for one of them is a
/// probe for an exploitable script (worms, scanners), not a broken link to a page or image.
const SCRIPT_EXT: &[&[u8]] = &[
    b".php", b".php3", b".php4", b".php5", b".phtml", b".asp", b".aspx", b".exe", b".dll", b".pl",
    b".cgi", b".jsp", b".cfm", b".sh",
];

/// `apache_error`: basic-auth failures, access denials, invalid URIs and methods,
/// ModSecurity blocks, requests for missing scripts and scanner paths.
pub struct ApacheError {
    base: Base,
    aggressive: bool,
    time: TimeParser,
    /// Traversal/injection fragments and scanner paths of the access filter, applied to the
    /// file path of `File does not exist`.
    path_ac: AhoCorasick,
}

impl ApacheError {
    /// A new `apache_error` filter.
    pub fn new(opts: &BuiltinOptions) -> Self {
        let pats: Vec<&str> = PROBES
            .iter()
            .chain(SCANNER_HARD)
            .chain(SCANNER_SOFT)
            .copied()
            .collect();
        ApacheError {
            base: Base::new("apache_error", APACHE_ERROR_RULES, &["path"]),
            aggressive: opts.mode == Mode::Aggressive,
            time: TimeParser::new(opts.tz.clone()),
            path_ac: ac(&pats),
        }
    }
}

/// The address of an apache `[client …]` field.
///
/// Apache 2.4 (`v24`: the line has 2.4's `[module:level]` or `[pid …]` fields) always appends
/// the port: `1.2.3.4:5678`, `[2001:db8::1]:5678`, and IPv6 without brackets as
/// `2001:db8::a:49152` — the last `:` group is the port, whatever its length. Apache 2.2 never
/// writes a port: `1.2.3.4`, `2001:db8::a` are the address as they stand. A field that does
/// not read as an address this way gives `None` (the line is ignored, never blamed on a
/// guess).
fn apache_client(c: &[u8], v24: bool) -> Option<std::net::IpAddr> {
    if let Some(r) = strip_prefix(c, b"[") {
        let i = memchr::memchr(b']', r)?;
        let port = &r[i + 1..];
        if !(port.is_empty() || (port.len() > 1 && port[0] == b':')) {
            return None;
        }
        return scan::ip(&r[..i]);
    }
    if !v24 {
        // 2.2: no port; a 2.4 line stripped of its fields (`[client 1.2.3.4:80]` after an
        // old-style header) still reads when the address alone does not.
        if let Some(ip) = scan::ip(c) {
            return Some(ip);
        }
        if memchr::memchr_iter(b':', c).count() != 1 {
            return None;
        }
    }
    let i = memchr::memrchr(b':', c)?;
    let port = &c[i + 1..];
    if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
        return None;
    }
    scan::ip(&c[..i])
}

/// A path of an error message without the `, referer: URL` apache appends.
fn without_referer(p: &[u8]) -> &[u8] {
    match memmem::find(p, b", referer: ") {
        Some(i) => &p[..i],
        None => p,
    }
}

impl ApacheError {
    /// The rule for `File does not exist: PATH` / `script not found …: PATH`, or `None`.
    fn missing_file(&self, path: &[u8], script: bool) -> Option<usize> {
        // Files browsers ask for on their own are not evidence of anything.
        if let Some(i) = memchr::memrchr(b'/', path) {
            if browser_404(&path[i..]) {
                return None;
            }
        }
        let hit = self.path_ac.find(path).map(|m| m.pattern().as_usize());
        // Traversal and injection fragments; `..` in a file path that does not exist (IIS
        // worms).
        if hit.is_some_and(|i| i < PROBES.len()) || memmem::find(path, b"/..").is_some() {
            return Some(AE_PROBE);
        }
        if script {
            return Some(AE_SCRIPT_NOT_FOUND);
        }
        if hit.is_some() {
            return Some(AE_PROBE);
        }
        let last = memchr::memrchr(b'/', path).map_or(path, |i| &path[i..]);
        let ext = memchr::memrchr(b'.', last).map(|i| &last[i..]);
        if ext.is_some_and(|e| SCRIPT_EXT.iter().any(|x| scan::eq_ignore_case(e, x))) {
            return Some(AE_SCRIPT_NOT_FOUND);
        }
        // Any other missing file: a broken link as often as a scan.
        self.aggressive.then_some(AE_NOT_FOUND)
    }
}

impl Filter for ApacheError {
    fn name(&self) -> &str {
        &self.base.name
    }

    fn rules(&self) -> &[Arc<str>] {
        &self.base.rules
    }

    fn process(&mut self, line: &[u8], ctx: &LineCtx, out: &mut Vec<Event>) -> Outcome {
        // Files written on (or copied through) Windows keep a CR before the LF.
        let line = crate::scan::trim_line_end(line);
        if line.first() != Some(&b'[') {
            return Outcome::Missed;
        }
        // Walk the leading `[…] ` fields: time, [module:]level, pid, client. Everything the
        // client controls comes after them.
        let mut rest = line;
        let mut client: Option<&[u8]> = None;
        let mut fields = 0;
        let mut v24 = false;
        while let Some(r) = strip_prefix(rest, b"[") {
            fields += 1;
            if fields > 6 {
                break;
            }
            let Some(i) = (if r.starts_with(b"client [") {
                // `[client [v6]:port]`: the field ends at the second `]`.
                memchr::memchr(b']', &r[8..])
                    .and_then(|j| memchr::memchr(b']', &r[8 + j + 1..]).map(|k| 8 + j + 1 + k))
            } else {
                memchr::memchr(b']', r)
            }) else {
                return Outcome::Missed;
            };
            let field = &r[..i];
            if let Some(c) = strip_prefix(field, b"client ") {
                client = Some(c);
            } else if (fields == 2 && memchr::memchr(b':', field).is_some())
                || (fields > 2 && field.starts_with(b"pid "))
            {
                // `[core:error]`, `[pid 123:tid 456]`: Apache 2.4.
                v24 = true;
            }
            rest = strip_prefix(&r[i + 1..], b" ").unwrap_or(&r[i + 1..]);
            if client.is_some() {
                break;
            }
        }
        let Some(client) = client else {
            return Outcome::Missed;
        };
        // ModSecurity 2 repeats the client field: `[client a:p] [client a] ModSecurity: …`.
        let mut msg = rest;
        while let Some(r) = strip_prefix(msg, b"[client ") {
            match memchr::memchr(b']', r) {
                Some(i) => msg = strip_prefix(&r[i + 1..], b" ").unwrap_or(&r[i + 1..]),
                None => break,
            }
        }
        // `AH01617: ` style codes.
        let (code, body) = match memmem::find(&msg[..msg.len().min(10)], b": ") {
            Some(i) if msg.starts_with(b"AH") => (&msg[..i], &msg[i + 2..]),
            _ => (&b""[..], msg),
        };
        let mut user = None;
        let mut path: Option<&[u8]> = None;
        let rule = if code == b"AH01617"
            || memmem::find(body, b": authentication failure for ").is_some()
        {
            if let Some(u) = strip_prefix(body, b"user ") {
                user = memmem::find(u, b": authentication failure").map(|i| &u[..i]);
            }
            0
        } else if code == b"AH01618"
            || (body.starts_with(b"user ") && memmem::find(body, b" not found").is_some())
        {
            if let Some(u) = strip_prefix(body, b"user ") {
                user = memmem::find(u, b" not found").map(|i| &u[..i]);
            }
            1
        } else if body.starts_with(b"client denied by server configuration")
            || code == b"AH01797"
            || code == b"AH01630"
        {
            2
        } else if code == b"AH10244"
            || code == b"AH00126"
            || body.starts_with(b"invalid URI path")
            || body.starts_with(b"Invalid URI in request")
            || body.starts_with(b"request failed: URI too long")
            || body.starts_with(b"request failed: invalid characters in URI")
            || body.starts_with(b"request failed: erroneous characters after protocol string")
        {
            AE_INVALID_URI
        } else if code == b"AH00135" || body.starts_with(b"Invalid method in request") {
            AE_INVALID_METHOD
        } else if body.starts_with(b"ModSecurity: Access denied") {
            4
        } else if let Some(p) = strip_prefix(body, b"File does not exist: ") {
            let p = without_referer(p);
            path = Some(p);
            match self.missing_file(p, false) {
                Some(r) => r,
                None => return Outcome::Missed,
            }
        } else if let Some(p) =
            strip_prefix(body, b"script not found or unable to stat: ").or_else(|| {
                // 2.4: `script '/srv/x.php' not found or unable to stat`
                let r = strip_prefix(body, b"script '")?;
                let q = memchr::memchr(b'\'', r)?;
                strip_prefix(&r[q..], b"' not found or unable to stat").map(|_| &r[..q])
            })
        {
            let p = without_referer(p);
            path = Some(p);
            match self.missing_file(p, true) {
                Some(r) => r,
                None => return Outcome::Missed,
            }
        } else if code == b"AH01071" && body.starts_with(b"Got error 'Primary script unknown") {
            // php-fpm behind mod_proxy_fcgi: the script does not exist.
            AE_SCRIPT_NOT_FOUND
        } else if self.aggressive
            && (body.starts_with(b"Directory index forbidden by rule") || code == b"AH01276")
        {
            AE_DIR_FORBIDDEN
        } else {
            return Outcome::Missed;
        };
        let Some(ip) = apache_client(client, v24) else {
            return Outcome::Ignored;
        };
        let time = self
            .time
            .parse_apache_error(&line[1..])
            .map(|t| t.0)
            .or(ctx.source_time)
            .unwrap_or(ctx.now);
        let fields: &[(usize, &[u8])] = match &path {
            Some(p) => &[(0, p)],
            None => &[],
        };
        out.push(self.base.event(line, time, ip, rule, true, user, fields));
        Outcome::Matched
    }
}
