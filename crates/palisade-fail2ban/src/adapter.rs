//! [`Fail2banFilter`]: a loaded fail2ban filter as a [`palisade_filter::Filter`].
//!
//! Runs fail2ban's semantics in operation mode (first matching failregex wins) and turns each
//! result into an [`Event`]: the host becomes an `IpAddr` (a DNS name or anything else that is
//! not an address makes the line [`Outcome::Ignored`]; no DNS lookups), the rule is
//! `failregex[N]`, the user comes from `<F-USER>` (or `<F-ALT_USER…>`), the other captured
//! groups go to `Event::fields`, and `<F-NOFAIL>` results are events with `failure = false`.
//!
//! In journal mode (`logtype = journal`), a line that comes with journal fields
//! ([`LineCtx::journal`]) is shown to the filter the way fail2ban's systemd backend shows it,
//! `host ident[pid]: message` ([`journal_line`]), so `__prefix_line` and `<F-MLFID>` work as in
//! fail2ban; the line is built in a buffer reused from line to line. A line without journal
//! fields (a file of such lines already formatted, as `check` reads) is used as it is.

use crate::date::TimeCx;
use crate::error::LoadError;
use crate::filter::{FilterDef, LoadOptions, MatchOptions, Matcher, RawMatch};
use crate::journal::journal_line;
use crate::name::Name;
use jiff::tz::TimeZone;
use palisade_core::{parse_ip_bytes, Event, Timestamp};
use palisade_filter::{Filter, LineCtx, Outcome};
use std::path::Path;
use std::sync::Arc;

/// Longest user name kept in an event, in bytes.
const USER_MAX: usize = 128;

/// Groups that steer fail2ban itself. `ip4`, `ip6` (and the `users` set) are reported
/// (see [`reported_fields`]): fail2ban's harness compares them.
const INTERNAL: [&str; 9] = [
    "user",
    "dns",
    "fid",
    "mlfid",
    "nofail",
    "mlfforget",
    "mlfgained",
    "content",
    "cidr",
];

/// Whether a captured group steers fail2ban itself (tags, multi-line state, `alt_` user
/// alternatives) rather than being a field of the failure: such groups are not copied into
/// `Event::fields` nor printed by `check --filter-file`.
pub fn is_internal_group(name: &str) -> bool {
    INTERNAL.contains(&name) || name.starts_with("alt_")
}

/// The fields of a result that Palisade reports (in `Event::fields` and `check
/// --filter-file --json`), in the result's order: every named group that is not internal
/// (the `ip4`/`ip6` address groups included, as fail2ban's failure dict has them) and, for
/// a `<F-MLFID>` connection on which users were seen, `users`: the sorted set of every user
/// of the connection so far, joined with `,` (fail2ban's accumulated `users` set). `ip` is
/// left out when `skip_ip` (the caller prints it as the address).
pub fn reported_fields(r: &RawMatch, skip_ip: bool) -> impl Iterator<Item = (&str, String)> {
    let users = (!r.users.is_empty()).then(|| {
        r.users
            .iter()
            .map(|u| u.as_str())
            .collect::<Vec<_>>()
            .join(",")
    });
    r.fields
        .iter()
        .filter(move |(k, _)| !(is_internal_group(k) || (skip_ip && *k == "ip")))
        .map(|(k, v)| (k.as_str(), v.to_string()))
        .chain(users.map(|u| ("users", u)))
}

/// A fail2ban filter file behind Palisade's [`Filter`] trait.
pub struct Fail2banFilter {
    name: String,
    filter: Arc<str>,
    rules: Vec<Arc<str>>,
    matcher: Matcher,
    cx: TimeCx,
    journal: bool,
    raw: Vec<RawMatch>,
    /// The events' field names, shared.
    field_names: Vec<(Name, Arc<str>)>,
    /// The journal line being examined (journal mode), reused.
    buf: String,
}

impl std::fmt::Debug for Fail2banFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fail2banFilter")
            .field("name", &self.name)
            .field("rules", &self.rules.len())
            .finish()
    }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

impl Fail2banFilter {
    /// Loads `path` with `opts` (e.g. `mode=aggressive` in `opts.init`). Dates without a zone
    /// are read in `tz` (fail2ban uses the system zone).
    pub fn load(path: &Path, opts: &LoadOptions, tz: TimeZone) -> Result<Self, LoadError> {
        let def = FilterDef::load(path, opts)?;
        let journal = opts
            .init
            .iter()
            .any(|(k, v)| k == "logtype" && v == "journal");
        Ok(Self::new(def, tz, journal))
    }

    /// Wraps a loaded filter. `journal`: lines carry no date (journald messages); the
    /// source's time is used.
    pub fn new(def: Arc<FilterDef>, tz: TimeZone, journal: bool) -> Self {
        let rules = (0..def.failregex_count())
            .map(|i| Arc::<str>::from(format!("failregex[{i}]").as_str()))
            .collect();
        let name = def.name().to_string();
        let matcher = def.matcher(MatchOptions {
            journal,
            ..MatchOptions::default()
        });
        Fail2banFilter {
            filter: Arc::from(name.as_str()),
            name,
            rules,
            matcher,
            cx: TimeCx {
                now: Timestamp::default(),
                tz,
                default_offset_min: None,
            },
            journal,
            raw: Vec::new(),
            field_names: def
                .field_names()
                .into_iter()
                .map(|n| (n, Arc::from(n.as_str())))
                .collect(),
            buf: String::new(),
        }
    }

    /// The loaded definition.
    pub fn def(&self) -> &Arc<FilterDef> {
        self.matcher.def()
    }

    fn to_event(&self, r: &RawMatch, line: &[u8], ctx: &LineCtx<'_>) -> Option<Event> {
        let ip = r
            .field("ip")
            .and_then(|s| parse_ip_bytes(s.as_bytes()))
            .or_else(|| r.fid.as_deref().and_then(|s| parse_ip_bytes(s.as_bytes())))
            .or_else(|| r.host.as_deref().and_then(|s| parse_ip_bytes(s.as_bytes())))?;
        let time = r.time.or(ctx.source_time).unwrap_or(ctx.now);
        let user = r
            .field("user")
            .map(|u| cut(u, USER_MAX).to_string().into_boxed_str());
        let fields = reported_fields(r, false)
            .map(|(k, v)| {
                let k = match self.field_names.iter().find(|(n, _)| *n == k) {
                    Some((_, a)) => a.clone(),
                    None => Arc::from(k),
                };
                (k, v.into_boxed_str())
            })
            .collect();
        Some(Event {
            time,
            ip,
            filter: self.filter.clone(),
            rule: self.rules.get(r.rule).cloned()?,
            failure: !r.nofail,
            user,
            fields,
            evidence: Event::evidence_of(line),
        })
    }
}

impl Filter for Fail2banFilter {
    fn name(&self) -> &str {
        &self.name
    }

    fn rules(&self) -> &[Arc<str>] {
        &self.rules
    }

    fn process(&mut self, line: &[u8], ctx: &LineCtx<'_>, out: &mut Vec<Event>) -> Outcome {
        self.cx.now = ctx.now;
        let given = self.journal.then(|| ctx.source_time.unwrap_or(ctx.now));
        let lossy;
        // The text the filter sees, and the event's evidence.
        let (text, evidence): (&str, &[u8]) = match ctx.journal.filter(|_| self.journal) {
            Some(fields) => {
                journal_line(&fields, line, &mut self.buf);
                (&self.buf, self.buf.as_bytes())
            }
            None => {
                lossy = String::from_utf8_lossy(line);
                (&lossy, line)
            }
        };
        let mut raw = std::mem::take(&mut self.raw);
        raw.clear();
        self.matcher.process_line(text, given, &self.cx, &mut raw);
        let mut outcome = Outcome::Missed;
        for r in &raw {
            if r.fid.is_none() {
                continue;
            }
            match self.to_event(r, evidence, ctx) {
                Some(ev) => {
                    out.push(ev);
                    outcome = Outcome::Matched;
                }
                None => {
                    if outcome == Outcome::Missed {
                        outcome = Outcome::Ignored;
                    }
                }
            }
        }
        self.raw = raw;
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sshd_events() {
        let p = Path::new("/etc/fail2ban/filter.d/sshd.conf");
        if !p.is_file() {
            return palisade_testkit::require_or_skip("F2B", "fail2ban filters not installed");
        }
        let mut f = Fail2banFilter::load(p, &LoadOptions::default(), TimeZone::UTC).unwrap();
        let ctx = LineCtx {
            now: Timestamp::from_secs(1_741_000_000),
            source_time: None,
            journal: None,
        };
        let mut out = Vec::new();
        let o = f.process(
            b"Mar  3 00:00:05 bastion sshd[1977305]: Invalid user web from 108.154.15.105 port 62448",
            &ctx,
            &mut out,
        );
        assert_eq!(o, Outcome::Matched);
        assert_eq!(out[0].ip.to_string(), "108.154.15.105");
        assert_eq!(out[0].user.as_deref(), Some("web"));
        assert!(out[0].failure);
        assert!(f.rules().contains(&out[0].rule));
        let o = f.process(b"Mar  3 00:00:05 bastion cron[1]: nothing", &ctx, &mut out);
        assert_eq!(o, Outcome::Missed);
        let o = f.process(
            b"Mar  3 00:00:06 bastion sshd[2]: Invalid user web from example.com port 1",
            &ctx,
            &mut out,
        );
        assert_eq!(o, Outcome::Ignored, "DNS names are not resolved");
    }
}
