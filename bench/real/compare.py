#!/usr/bin/env python3
"""Real-log evaluation: Palisade's built-in filters against fail2ban's stock filters.

  compare.py --palisade BIN --data DIR --out RESULTS.md [--work DIR]

For every real log under DIR (the loghub and elastic logs in ../shared/data) and each mode
(normal, aggressive):

* Palisade: `palisade check LOG --filter F --mode M --json` (the lines it flags, with their
  addresses) and `palisade replay LOG --config C --json` with one jail (max_retry 5,
  find_time 10m, ban_time 10m, per-address IPv6, no escalation/recidive): the addresses it
  bans.
* fail2ban: `fail2ban-regex LOG FILTER` for each matching stock filter (its own count of
  matched lines), and fail2ban's server path on the same filters (bench/fail2ban/f2b_replay.py:
  fail2ban's FilterReader/Filter/FailManager from the Debian package, maxretry 5, findtime
  600, bantime 600, the same `now` as Palisade's) for the matched line numbers and the addresses it bans. Each stock filter is a
  jail of its own, as fail2ban runs them; the union is compared.

Per log: lines matched by both / only Palisade / only fail2ban, addresses banned by each,
and every disagreement class (signature: the message with addresses and numbers masked) with
sample lines and a verdict from VERDICTS below (or "unreviewed").
"""
import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

# (log path under DATA, Palisade filter, fail2ban filters)
SSHD_F2B = ["sshd"]
APACHE_ERR_F2B = ["apache-auth", "apache-noscript", "apache-overflows", "apache-nohome",
                  "apache-botsearch", "apache-modsecurity", "apache-shellshock"]
ACCESS_F2B = ["apache-badbots", "nginx-botsearch"]
LOGS = [
    ("loghub/OpenSSH/OpenSSH_2k.log", "sshd", SSHD_F2B),
    ("elastic_examples/auth.log", "sshd", SSHD_F2B),
    ("loghub/Linux/Linux_2k.log", "sshd", SSHD_F2B),
    ("loghub_full/Linux.log", "sshd", SSHD_F2B),
    ("loghub_full/Linux_variant_BenjaminRayner.log", "sshd", SSHD_F2B),
    ("loghub/Apache/Apache_2k.log", "apache_error", APACHE_ERR_F2B),
    ("loghub_full/Apache.log", "apache_error", APACHE_ERR_F2B),
    ("elastic_examples/apache_logs", "apache_access", ACCESS_F2B),
]

# Reviewed disagreement classes: (side, modes, regex on the signature or the line, verdict).
# First match wins. Classes not listed print as "unreviewed".
R14A = ("fail2ban right, open in Palisade: `Failed none` (a client trying auth method none for an "
        "invalid user) and a client's `Auth fail` disconnect are not counted by the built-in "
        "sshd filter yet; one address on OpenSSH_2k is banned only by fail2ban because of them")
VERDICTS = [
    ("palisade", "both", r"sshd(-session|-auth)\[",
     "Palisade right: OpenSSH 9.8+/10 logs as sshd-session/sshd-auth; fail2ban 1.0.2's "
     "sshd filter only knows `sshd`"),
    ("palisade", "both", r"Disconnecting authenticating user",
     "Palisade right: modern OpenSSH wording of a pre-auth disconnect; fail2ban 1.0.2 misses it"),
    ("palisade", "both", r"message repeated N times",
     "Palisade right: rsyslog folded N identical failures into one line"),
    ("palisade", "both", r"File does not exist: \S*(\.\.|/\.\.\.)",
     "Palisade right: IIS traversal worms (`/scripts/..%5c..`), never a real file"),
    ("palisade", "both", r"File does not exist: \S*(phpmyadmin|wp-|cgi-bin|mysqladmin|_vti_bin|msadc|MSADC)",
     "Palisade right: scanner paths (phpMyAdmin, WordPress, FrontPage, cgi-bin) that do not exist"),
    ("palisade", "both", r"(File does not exist|script not found or unable to stat): \S*\.(dll|exe|cgi|pl|php\d?|asp)(,|$)",
     "Palisade right: a server-side program that does not exist (worms, open-proxy checkers); "
     "fail2ban's apache-noscript only knows php/asp/exe/pl and cgi-bin"),
    ("palisade", "aggressive", r"File does not exist: ",
     "aggressive only: any other missing file. Apache 2.0 logs only the first missing path "
     "component, so the 2005 xmlrpc/awstats worms' `/blog/xmlrpc.php` shows as "
     "`/var/www/html/blog`; a dead link looks the same"),
    ("palisade", "aggressive", r"Directory index forbidden",
     "aggressive only: a refused directory listing (scanners and some readers); fail2ban has "
     "no such rule"),
    ("palisade", "both", r'"(GET|POST|HEAD) \S*(wp-|wordpress|phpmyadmin|/administrator|\.env|\.git/)\S* HTTP/[\d.]+" 404',
     "Palisade right: a scanner path the server does not have"),
    ("palisade", "aggressive", r'" 40[04] ',
     "aggressive only: plain 404s (crawlers, static assets with the site's own referrer and "
     "browser files are excluded)"),
    ("palisade", "aggressive", r"preauth|Connection closed by|Did not receive identification|"
                               r"Bad protocol version|kex|Unable to negotiate|Connection reset",
     "aggressive only: pre-auth scanner noise"),
    ("palisade", "aggressive", r"Failed publickey for",
     "aggressive only: a key offered and refused (agents offer several keys before the "
     "accepted one); Palisade's normal mode does not count it, fail2ban's sshd neither"),
    ("fail2ban", "both", r"File does not exist: \S*/~",
     "fail2ban's apache-nohome: a missing user directory. In this log each address asks for "
     "one name only (218.95.185.247: `/~mana_` six times in 10 s and nothing else) — a dead "
     "personal page reloaded, not a user-directory scan; Palisade reports it in aggressive mode"),
    ("fail2ban", "both", r"Too many authentication failures|Received disconnect from .*Auth fail|"
                         r"Failed none for", R14A),
]


def sig(line):
    """A disagreement class: the message without the timestamp/host prefix, with addresses,
    numbers and quoted values masked."""
    s = line.rstrip("\n")
    s = re.sub(r"^\[[^\]]*\] ", "", s)  # apache error time
    s = re.sub(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ ", "", s)  # syslog
    s = re.sub(r"\[(?:\d{1,2}/\w{3}/\d{4}[^\]]*)\]", "[TIME]", s)
    s = re.sub(r"\b(?:\d{1,3}\.){3}\d{1,3}\b", "IP", s)
    s = re.sub(r"\b[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}\b", "IP6", s)
    s = re.sub(r"message repeated \d+ times", "message repeated N times", s)
    s = re.sub(r"\d+", "N", s)
    s = re.sub(r'"(GET|POST|HEAD) [^"]*"', r'"\1 PATH"', s)
    s = re.sub(r"(invalid user|Invalid user|for user|for) \S+ from", r"\1 USER from", s)
    return s[:110]


def verdict(side, mode, s, line):
    if s.startswith("(unterminated last line)"):
        return ("Palisade wrong (reading, not the filter): the file's last line has no final "
                "newline; offline check/replay hold it as unfinished (palisade-source "
                "follow=false behaviour)")
    for sd, modes, rx, v in VERDICTS:
        if sd == side and modes in ("both", mode) and (re.search(rx, s) or re.search(rx, line)):
            return v
    return "unreviewed"


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", **kw)


def palisade_check(pal, log, flt, mode, now):
    r = run([pal, "check", log, "--filter", flt, "--mode", mode, "--json", "--now", now])
    if r.returncode != 0:
        sys.exit("palisade check failed: %s" % r.stderr)
    lines = {}
    for l in r.stdout.splitlines():
        o = json.loads(l)
        if o.get("failure", True):  # recorded-only events (PAM duplicates) are not counted
            lines.setdefault(o["line"], (o["ip"], o["rule"]))
    return lines


def palisade_bans(pal, log, flt, mode, now, work):
    cfg = os.path.join(work, "replay-%s-%s.toml" % (flt, mode))
    with open(cfg, "w") as fh:
        fh.write("""[general]
state_dir = "{w}/state"
socket = "{w}/palisade.sock"
dry_run = true
timezone = "UTC"
[store]
url = "sqlite:{w}/palisade.db"
[defaults]
max_retry = 5
find_time = "10m"
ban_time = "10m"
ipv6_prefix = 128
responders = ["log"]
[escalation]
enabled = false
[recidive]
enabled = false
[allowlist]
addresses = []
[[jail]]
name = "j"
filter = "{f}"
options = {{ mode = "{m}" }}
stdin = true
""".format(w=work, f=flt, m=mode))
    r = run([pal, "replay", log, "--config", cfg, "--json", "--now", now])
    if r.returncode != 0:
        sys.exit("palisade replay failed: %s" % r.stderr)
    bans = collections.Counter()
    for l in r.stdout.splitlines():
        o = json.loads(l)
        bans[o.get("ip") or o.get("cidr")] += 1
    return bans


def f2b_regex_count(log, flt, mode):
    path = "/etc/fail2ban/filter.d/%s.conf" % flt
    arg = "%s[mode=%s]" % (path, mode) if flt in ("sshd", "apache-auth") else path
    r = run(["fail2ban-regex", "--print-no-missed", "--print-no-ignored", log, arg])
    m = re.search(r"^Lines: \d+ lines, \d+ ignored, (\d+) matched", r.stdout, re.M)
    return int(m.group(1)) if m else None


def f2b_server(peer, log, flt, mode, now, work):
    lines_out = os.path.join(work, "f2b-%s-%s.lines" % (flt, mode))
    bans_out = os.path.join(work, "f2b-%s-%s.bans" % (flt, mode))
    cmd = ["/usr/bin/python3", peer, log, flt, "--now", now,
           "--maxretry", "5", "--findtime", "600", "--bantime", "600",
           "--lines-out", lines_out, "--bans-out", bans_out]
    if flt in ("sshd", "apache-auth"):
        cmd += ["--mode", mode]
    r = run(cmd)
    if r.returncode != 0:
        sys.exit("f2b_replay failed: %s" % r.stderr)
    lines = {}
    with open(lines_out) as fh:
        for l in fh:
            n, ip = l.rstrip("\n").split("\t")
            lines.setdefault(int(n), (ip, flt))
    bans = collections.Counter()
    with open(bans_out) as fh:
        for l in fh:
            bans[l.split("\t")[0]] += 1
    return lines, bans


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--palisade", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--peer", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                                   "fail2ban", "f2b_replay.py"),
                    help="fail2ban's replay peer (default: bench/fail2ban/f2b_replay.py)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--build", default="")
    ap.add_argument("--only", default=None, help="substring of the log paths to run")
    a = ap.parse_args()
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t0 = time.time()
    work = tempfile.mkdtemp(prefix="palisade-real-")
    md = []
    summary = []
    for rel, pflt, f2bs in LOGS:
        if a.only and a.only not in rel:
            continue
        log = os.path.join(a.data, rel)
        if not os.path.exists(log):
            print("skip %s: absent" % log, file=sys.stderr)
            continue
        raw = open(log, encoding="utf-8", errors="replace").read()
        text = raw.split("\n")
        nlines = len(text) - (1 if text and text[-1] == "" else 0)
        unterminated = not raw.endswith("\n")
        for mode in ("normal", "aggressive"):
            print("%s %s…" % (rel, mode), file=sys.stderr)
            p = palisade_check(a.palisade, log, pflt, mode, now)
            pb = palisade_bans(a.palisade, log, pflt, mode, now, work)
            f = {}
            fb = collections.Counter()
            regex_counts = {}
            server_counts = {}
            for flt in f2bs:
                fl, b = f2b_server(a.peer, log, flt, mode, now, work)
                server_counts[flt] = len(fl)
                regex_counts[flt] = f2b_regex_count(log, flt, mode)
                for n, v in fl.items():
                    f.setdefault(n, v)
                fb.update(b)
            both = set(p) & set(f)
            only_p = sorted(set(p) - set(f))
            only_f = sorted(set(f) - set(p))
            wrong_ip = [n for n in both if p[n][0] != f[n][0]]
            pbans, fbans = set(pb), set(fb)
            md.append("### `%s` — %s mode (Palisade `%s`; fail2ban %s)\n" % (
                rel, mode, pflt, ", ".join("`%s`" % x for x in f2bs)))
            md.append("| | lines |\n|---|---|")
            md.append("| lines in the log | %d |" % nlines)
            md.append("| matched by both | %d |" % len(both))
            md.append("| only Palisade | %d |" % len(only_p))
            md.append("| only fail2ban | %d |" % len(only_f))
            md.append("| both, different address | %d |" % len(wrong_ip))
            md.append("")
            md.append("fail2ban per filter (server path / `fail2ban-regex` matched lines): " +
                      ", ".join("%s %d / %s" % (k, server_counts[k], regex_counts[k])
                                for k in f2bs) + "\n")
            md.append("| bans (max_retry 5, find_time 10m) | addresses |\n|---|---|")
            md.append("| Palisade | %d |" % len(pbans))
            md.append("| fail2ban | %d |" % len(fbans))
            md.append("| both | %d |" % len(pbans & fbans))
            md.append("| only Palisade | %d %s |" % (len(pbans - fbans),
                                                   " ".join(sorted(pbans - fbans)[:8])))
            md.append("| only fail2ban | %d %s |" % (len(fbans - pbans),
                                                   " ".join(sorted(fbans - pbans)[:8])))
            md.append("")
            for side, nums in (("palisade", only_p), ("fail2ban", only_f)):
                classes = collections.OrderedDict()
                for n in nums:
                    line = text[n - 1]
                    s = sig(line)
                    if n == nlines and unterminated:
                        s = "(unterminated last line) " + s
                    classes.setdefault(s, []).append(n)
                if not classes:
                    continue
                md.append("Lines only %s flags, by class:\n" % ("Palisade" if side == "palisade"
                                                               else "fail2ban"))
                md.append("| lines | class | verdict | sample |\n|---|---|---|---|")
                for s, ns in sorted(classes.items(), key=lambda x: -len(x[1]))[:15]:
                    sample = text[ns[0] - 1].strip()[:160].replace("|", "\\|")
                    md.append("| %d | `%s` | %s | %d: `%s` |" % (
                        len(ns), s.replace("|", "\\|").replace("`", "'"),
                        verdict(side, mode, s, text[ns[0] - 1]), ns[0], sample.replace("`", "'")))
                if len(classes) > 15:
                    md.append("| %d | (%d more classes) | | |" % (
                        sum(len(v) for k, v in sorted(classes.items(), key=lambda x: -len(x[1]))[15:]),
                        len(classes) - 15))
                md.append("")
            summary.append((rel, mode, len(both), len(only_p), len(only_f), len(wrong_ip),
                            len(pbans), len(fbans), len(fbans - pbans), len(pbans - fbans)))
    head = ["# Real-log evaluation: Palisade built-in filters vs fail2ban stock filters\n",
            "Generated by `bench/real/run.sh` on %s (%s); %s. Runtime %.0f s. "
            "Machine load at start: %s.\n" % (now, os.uname().nodename, a.build,
                                              time.time() - t0, open("/proc/loadavg").read().split()[0]),
            "| log | mode | both | only Palisade | only fail2ban | different address | "
            "Palisade bans | fail2ban bans | banned only by fail2ban | banned only by Palisade |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary:
        head.append("| `%s` | %s | %d | %d | %d | %d | %d | %d | %d | %d |" % r)
    head.append("")
    with open(a.out, "w") as fh:
        fh.write("\n".join(head + ["## Per log\n"] + md) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    print("wrote %s in %.0f s" % (a.out, time.time() - t0), file=sys.stderr)


if __name__ == "__main__":
    main()
