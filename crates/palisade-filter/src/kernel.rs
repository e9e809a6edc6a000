//! The `kernel_fw` filter: kernel firewall `LOG` lines (ufw, iptables, nftables).
//!
//! `[UFW BLOCK] IN=eth0 OUT= MAC=… SRC=1.2.3.4 DST=… PROTO=TCP SPT=… DPT=22 …`. The prefix
//! before `IN=` is whatever the administrator configured; the fields after it are written by
//! the kernel, so `SRC=` is the first one after `IN=`.

use crate::builtin::{Base, BuiltinOptions};
use crate::scan;
use crate::time::TimeParser;
use crate::{Filter, FilterStats, LineCtx, Outcome};
use memchr::memmem;
use palisade_core::{Event, Timestamp};
use std::sync::Arc;

/// Rule names of `kernel_fw`.
pub const RULES: &[&str] = &["ufw_block", "fw_log"];

/// The `kernel_fw` filter.
pub struct KernelFw {
    base: Base,
    time: TimeParser,
    src: memmem::Finder<'static>,
    stats: FilterStats,
}

impl KernelFw {
    /// A new `kernel_fw` filter (the mode does not change it).
    pub fn new(opts: &BuiltinOptions) -> Self {
        KernelFw {
            base: Base::new("kernel_fw", RULES, &["dpt", "proto"]),
            time: TimeParser::new(opts.tz.clone()),
            src: memmem::Finder::new(b" SRC="),
            stats: FilterStats::default(),
        }
    }
}

/// Value of ` KEY=` (key given with its leading space and `=`) in the kernel field list.
fn field<'a>(b: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let p = memmem::find(b, key)?;
    let t = &b[p + key.len()..];
    Some(&t[..memchr::memchr(b' ', t).unwrap_or(t.len())])
}

impl Filter for KernelFw {
    fn name(&self) -> &str {
        &self.base.name
    }

    fn rules(&self) -> &[Arc<str>] {
        &self.base.rules
    }

    fn stats(&self) -> FilterStats {
        self.stats
    }

    fn process(&mut self, line: &[u8], ctx: &LineCtx, out: &mut Vec<Event>) -> Outcome {
        // Files written on (or copied through) Windows keep a CR before the LF.
        let line = crate::scan::trim_line_end(line);
        // Literal prefilter first: almost no line of a busy syslog has ` SRC=`.
        if self.src.find(line).is_none() {
            return Outcome::Missed;
        }
        let (msg, stamp) = match crate::syslog::split(line) {
            Ok(h) if h.prog == b"kernel" => (h.msg, Some((h.stamp_kind, h.stamp))),
            Ok(_) => return Outcome::Missed,
            // A bare kernel message (`dmesg`, journald `MESSAGE`).
            Err(crate::syslog::NotSyslog::NoHeader) => (line, None),
            Err(e) => {
                self.stats.unreadable(e.reason(line));
                return Outcome::Missed;
            }
        };
        let Some(in_pos) = memmem::find(msg, b"IN=") else {
            return Outcome::Missed;
        };
        if in_pos > 0 && msg[in_pos - 1] != b' ' && msg[in_pos - 1] != b']' {
            return Outcome::Missed;
        }
        let prefix = &msg[..in_pos];
        let fields = &msg[in_pos..];
        let rule = if memmem::find(prefix, b"[UFW ").is_some() {
            if memmem::find(prefix, b"BLOCK]").is_some() {
                0
            } else {
                // [UFW ALLOW], [UFW AUDIT], [UFW AUDIT INVALID]: not offences.
                return Outcome::Missed;
            }
        } else {
            1
        };
        let Some(src) = field(fields, b" SRC=") else {
            return Outcome::Missed;
        };
        let Some(ip) = scan::ip(src) else {
            return Outcome::Ignored;
        };
        let dpt = field(fields, b" DPT=").unwrap_or(b"");
        let proto = field(fields, b" PROTO=").unwrap_or(b"");
        let time = stamp.and_then(|(k, b)| {
            let t = self.time.parse_stamp(k, b, ctx.now);
            if t.is_none() && k != crate::syslog::StampKind::Nil {
                self.stats
                    .unreadable(crate::syslog::Unreadable::BadTimestamp);
            }
            t
        });
        let time: Timestamp = time.or(ctx.source_time).unwrap_or(ctx.now);
        out.push(
            self.base
                .event(line, time, ip, rule, true, None, &[(0, dpt), (1, proto)]),
        );
        Outcome::Matched
    }
}
