//! Output of an [`Analysis`]: terminal table, JSON, CSV, a self-contained HTML page, and
//! reviewable firewall scripts (`--emit`).

use crate::analyze::{Analysis, IpReport, Level};
use crate::svg::{self, esc};
use palisade_core::Timestamp;
use std::fmt::Write as _;
use std::io::Write;
use std::net::IpAddr;

/// `2025-03-03 10:00:00` (UTC) or `-`.
fn short(t: Option<Timestamp>) -> String {
    match t {
        None => "-".into(),
        Some(t) => t.to_jiff().strftime("%Y-%m-%d %H:%M:%S").to_string(),
    }
}

fn rules_text(r: &IpReport) -> String {
    r.rules
        .iter()
        .map(|(n, c)| format!("{n}:{c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The addresses worth listing: those with suspicious hits (all of them if `top` is 0,
/// else the first `top`).
fn listed(a: &Analysis, top: usize) -> impl Iterator<Item = &IpReport> {
    let n = if top == 0 { usize::MAX } else { top };
    a.ips.iter().filter(|r| r.suspicious > 0).take(n)
}

/// A fixed-width table for a terminal.
pub fn table(a: &Analysis, top: usize, w: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        w,
        "Analysed {} lines ({} requests, {} addresses) in {:.2} s",
        a.lines, a.requests, a.distinct_ips, a.seconds
    )?;
    for f in &a.files {
        writeln!(
            w,
            "  {:<9} {}  ({} lines, {} suspicious{}{})",
            f.level.as_str(),
            f.path,
            f.lines,
            f.suspicious,
            if f.unparsed > 0 {
                format!(", {} not access-log lines", f.unparsed)
            } else {
                String::new()
            },
            if f.outside_window > 0 {
                format!(", {} outside the window", f.outside_window)
            } else {
                String::new()
            }
        )?;
    }
    writeln!(
        w,
        "Threat level: {}  ({} suspicious hits; thresholds {}/{}/{})",
        a.level.as_str(),
        a.suspicious,
        a.levels.yellow,
        a.levels.red,
        a.levels.critical
    )?;
    if a.untracked.requests > 0 {
        writeln!(
            w,
            "  {} requests of addresses beyond the tracking bound ({} strong hits) are counted in aggregate",
            a.untracked.requests, a.untracked.strong_hits
        )?;
    }
    writeln!(w)?;
    writeln!(
        w,
        "{:<39} {:>9} {:>10} {:>5} {:>6} {:<19} {:<19} {:<7} rules",
        "address", "requests", "suspicious", "4xx%", "max/m", "first seen", "last seen", "country"
    )?;
    for r in listed(a, top) {
        let mark = if r.proposed {
            " BLOCK"
        } else if r.allowlisted {
            " (allowlisted)"
        } else {
            ""
        };
        writeln!(
            w,
            "{:<39} {:>9} {:>10} {:>5.0} {:>6} {:<19} {:<19} {:<7} {}{}",
            r.ip.to_string(),
            r.requests,
            r.suspicious,
            100.0 * r.client_errors as f64 / r.requests.max(1) as f64,
            r.peak_per_minute,
            short(r.first_seen),
            short(r.last_seen),
            r.country.as_deref().unwrap_or(""),
            rules_text(r),
            mark
        )?;
    }
    let n = a.proposed().count();
    writeln!(
        w,
        "\n{n} address{} proposed for blocking (at least {} suspicious hits)",
        if n == 1 { "" } else { "es" },
        a.threshold
    )?;
    Ok(())
}

/// The whole analysis as one JSON document (addresses limited like the table).
pub fn json(a: &Analysis, top: usize, w: &mut dyn Write) -> std::io::Result<()> {
    let ips: Vec<&IpReport> = listed(a, top).collect();
    let mut v = serde_json::to_value(a).map_err(std::io::Error::from)?;
    v["ips"] = serde_json::to_value(&ips).map_err(std::io::Error::from)?;
    v["proposed"] = a
        .proposed()
        .map(|r| r.ip.to_string())
        .collect::<Vec<_>>()
        .into();
    serde_json::to_writer_pretty(&mut *w, &v).map_err(std::io::Error::from)?;
    writeln!(w)
}

/// One CSV row per listed address.
pub fn csv(a: &Analysis, top: usize, w: &mut dyn Write) -> std::io::Result<()> {
    let mut c = csv::Writer::from_writer(w);
    let err = |e: csv::Error| std::io::Error::other(e.to_string());
    c.write_record([
        "ip",
        "requests",
        "suspicious",
        "client_errors",
        "peak_per_minute",
        "first_seen",
        "last_seen",
        "country",
        "rules",
        "proposed",
        "allowlisted",
    ])
    .map_err(err)?;
    for r in listed(a, top) {
        c.write_record([
            r.ip.to_string(),
            r.requests.to_string(),
            r.suspicious.to_string(),
            r.client_errors.to_string(),
            r.peak_per_minute.to_string(),
            r.first_seen.map(|t| t.to_string()).unwrap_or_default(),
            r.last_seen.map(|t| t.to_string()).unwrap_or_default(),
            r.country.clone().unwrap_or_default(),
            rules_text(r),
            r.proposed.to_string(),
            r.allowlisted.to_string(),
        ])
        .map_err(err)?;
    }
    c.flush()
}

fn level_color(l: Level) -> &'static str {
    match l {
        Level::Green => "#2ca02c",
        Level::Yellow => "#e6b800",
        Level::Red => "#d62728",
        Level::Critical => "#7b0000",
    }
}

/// A self-contained HTML page: summary, per-log levels, charts (inline SVG), address table.
pub fn html(a: &Analysis, top: usize, w: &mut dyn Write) -> std::io::Result<()> {
    let mut s = String::new();
    s.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Palisade access-log analysis</title><style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}.lvl{color:#fff;padding:2px 8px;border-radius:3px;font-weight:bold}.num{text-align:right}.block{background:#fde0e0}</style></head><body>");
    // What the page covers and when it was made: the window asked for (if any), the span of
    // the requests seen, and the time of generation, all in UTC.
    let first = a.ips.iter().filter_map(|r| r.first_seen).min();
    let last = a.ips.iter().filter_map(|r| r.last_seen).max();
    let asked = match (a.since, a.until) {
        (None, None) => "whole logs".to_string(),
        (since, until) => format!(
            "from {} to {}",
            since.map_or("the start".into(), |t| format!("{} UTC", short(Some(t)))),
            until.map_or("the end".into(), |t| format!("{} UTC", short(Some(t))))
        ),
    };
    let _ = write!(
        s,
        "<h1>Access-log analysis</h1><p>{} lines, {} requests from {} addresses; {} suspicious hits. Overall threat level <span class=\"lvl\" style=\"background:{}\">{}</span></p>",
        a.lines,
        a.requests,
        a.distinct_ips,
        a.suspicious,
        level_color(a.level),
        a.level.as_str()
    );
    let _ = write!(
        s,
        "<p class=\"meta\" id=\"window\">Window: {}; requests seen from {} to {} UTC. Generated {} UTC.</p>",
        esc(&asked),
        short(first),
        short(last),
        short(Some(Timestamp::from_secs(jiff::Timestamp::now().as_second())))
    );
    s.push_str(
        "<h2>Logs</h2><table><tr><th>log</th><th>lines</th><th>suspicious</th><th>level</th></tr>",
    );
    for f in &a.files {
        let _ = write!(
            s,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td><span class=\"lvl\" style=\"background:{}\">{}</span></td></tr>",
            esc(&f.path),
            f.lines,
            f.suspicious,
            level_color(f.level),
            f.level.as_str()
        );
    }
    s.push_str("</table><h2>Charts</h2>");
    let top_rows: Vec<(String, u64)> = a
        .ips
        .iter()
        .filter(|r| r.suspicious > 0)
        .take(20)
        .map(|r| (r.ip.to_string(), r.suspicious))
        .collect();
    s.push_str(&svg::hbar(
        "Top addresses by suspicious hits",
        &top_rows,
        "#d62728",
    ));
    s.push_str("<br>");
    let rules: Vec<(String, u64)> = a
        .rule_totals
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| (r.to_string(), *n))
        .collect();
    s.push_str(&svg::hbar("Suspicious hits by rule", &rules, "#ff7f0e"));
    s.push_str("<br>");
    let buckets: Vec<(String, u64, u64)> = a
        .timeline
        .iter()
        .map(|b| (short(Some(b.hour)), b.requests, b.rule_hits))
        .collect();
    s.push_str(&svg::columns(
        "Requests per hour (UTC)",
        &buckets,
        ("requests", "rule hits"),
    ));
    s.push_str("<h2>Addresses</h2><table><tr><th>address</th><th>requests</th><th>suspicious</th><th>4xx</th><th>max/min</th><th>first seen</th><th>last seen</th><th>country</th><th>rules</th><th>proposal</th></tr>");
    for r in listed(a, top) {
        let _ = write!(
            s,
            "<tr{}><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if r.proposed { " class=\"block\"" } else { "" },
            r.ip,
            r.requests,
            r.suspicious,
            r.client_errors,
            r.peak_per_minute,
            short(r.first_seen),
            short(r.last_seen),
            esc(r.country.as_deref().unwrap_or("")),
            esc(&rules_text(r)),
            if r.proposed {
                "block"
            } else if r.allowlisted {
                "allowlisted"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        s,
        "</table><p>Addresses with at least {} suspicious hits are proposed for blocking. Generated by palisade {}.</p></body></html>",
        a.threshold,
        env!("CARGO_PKG_VERSION")
    );
    w.write_all(s.as_bytes())
}

/// Firewall script flavours for `--emit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptKind {
    /// `iptables -A INPUT --source IP -j DROP` (and `ip6tables`).
    Iptables,
    /// An `nft -f` file: a table with two sets and drop rules.
    Nft,
    /// `ipset` sets plus one iptables/ip6tables rule each.
    Ipset,
    /// One address a line with `#` comments: the reviewed list `palisade fleet block FILE`
    /// reads.
    List,
}

/// Writes a reviewable script that blocks `ips`. `how` (the command line) goes into the header.
pub fn script(
    kind: ScriptKind,
    ips: &[IpAddr],
    how: &str,
    when: Timestamp,
    w: &mut dyn Write,
) -> std::io::Result<()> {
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = ips.iter().partition(|ip| ip.is_ipv4());
    let comment = |w: &mut dyn Write| -> std::io::Result<()> {
        writeln!(
            w,
            "# Generated by palisade {} at {when}",
            env!("CARGO_PKG_VERSION")
        )?;
        // The command line is user input: keep it on one comment line.
        let how: String = how
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        writeln!(w, "# Command: {how}")?;
        writeln!(
            w,
            "# {} IPv4 and {} IPv6 addresses proposed by `palisade analyze`. Review before running.",
            v4.len(),
            v6.len()
        )
    };
    match kind {
        ScriptKind::List => {
            comment(w)?;
            writeln!(
                w,
                "# Delete the lines to spare, then: palisade fleet block FILE --agents …"
            )?;
            for ip in ips {
                writeln!(w, "{ip}")?;
            }
        }
        ScriptKind::Iptables => {
            writeln!(w, "#!/bin/sh")?;
            comment(w)?;
            writeln!(w, "set -e")?;
            for ip in &v4 {
                writeln!(w, "iptables -A INPUT --source {ip} -j DROP")?;
            }
            for ip in &v6 {
                writeln!(w, "ip6tables -A INPUT --source {ip} -j DROP")?;
            }
        }
        ScriptKind::Ipset => {
            writeln!(w, "#!/bin/sh")?;
            comment(w)?;
            writeln!(w, "set -e")?;
            writeln!(
                w,
                "ipset -exist create palisade-analyze hash:ip family inet"
            )?;
            writeln!(
                w,
                "ipset -exist create palisade-analyze6 hash:ip family inet6"
            )?;
            for ip in &v4 {
                writeln!(w, "ipset -exist add palisade-analyze {ip}")?;
            }
            for ip in &v6 {
                writeln!(w, "ipset -exist add palisade-analyze6 {ip}")?;
            }
            writeln!(w, "iptables -C INPUT -m set --match-set palisade-analyze src -j DROP 2>/dev/null || iptables -I INPUT -m set --match-set palisade-analyze src -j DROP")?;
            writeln!(w, "ip6tables -C INPUT -m set --match-set palisade-analyze6 src -j DROP 2>/dev/null || ip6tables -I INPUT -m set --match-set palisade-analyze6 src -j DROP")?;
        }
        ScriptKind::Nft => {
            writeln!(w, "#!/usr/sbin/nft -f")?;
            comment(w)?;
            writeln!(w, "table inet palisade_analyze {{}}")?;
            writeln!(w, "delete table inet palisade_analyze")?;
            writeln!(w, "table inet palisade_analyze {{")?;
            let set = |w: &mut dyn Write, name: &str, ty: &str, list: &[IpAddr]| {
                writeln!(w, "  set {name} {{")?;
                writeln!(w, "    type {ty}")?;
                if !list.is_empty() {
                    let items: Vec<String> = list.iter().map(|i| i.to_string()).collect();
                    writeln!(w, "    elements = {{ {} }}", items.join(", "))?;
                }
                writeln!(w, "  }}")
            };
            set(w, "v4", "ipv4_addr", &v4)?;
            set(w, "v6", "ipv6_addr", &v6)?;
            writeln!(w, "  chain input {{")?;
            writeln!(w, "    type filter hook input priority -10; policy accept;")?;
            writeln!(w, "    ip saddr @v4 drop")?;
            writeln!(w, "    ip6 saddr @v6 drop")?;
            writeln!(w, "  }}")?;
            writeln!(w, "}}")?;
        }
    }
    Ok(())
}
