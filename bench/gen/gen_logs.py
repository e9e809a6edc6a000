#!/usr/bin/env python3
"""Palisade's own deterministic log generators (Python standard library only).

Writes, into --out-dir:
  sshd_auth.log     syslog-style sshd lines: benign logins and sessions, noise, and brute
                    force from attacker addresses (password failures, invalid users,
                    pre-auth disconnects), IPv4 and IPv6;
  nginx_access.log  combined-format access log: ordinary visitors and scanners probing for
                    admin pages, secrets and exploits;
  truth.json        the ground truth: per attacker the number of authentication failure
                    lines ("Invalid user", "Failed password"; the pre-auth disconnect after a
                    burst is not counted), per scanner the number of probe lines, and the
                    benign addresses (which must never be banned).

The same --seed and --lines give byte-identical files on every machine (no clock, no
locale, no hash randomisation). Usage:
  bench/gen/gen_logs.py --out-dir target/bench-data/own --lines 1000000 [--seed 7]
"""

import argparse
import json
import os
import random

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
USERS = ["alice", "bob", "deploy", "backup", "git", "ci"]
BAD_USERS = ["admin", "test", "oracle", "ubuntu", "postgres", "guest", "user", "pi", "ftp",
             "support", "nagios", "hadoop", "minecraft", "tomcat", "www"]
PAGES = ["/", "/index.html", "/about", "/blog/", "/blog/post-1", "/blog/post-2", "/contact",
         "/static/app.css", "/static/app.js", "/img/logo.png", "/favicon.ico", "/feed.xml"]
PROBES = ["/wp-login.php", "/xmlrpc.php", "/.env", "/.git/config", "/phpmyadmin/index.php",
          "/admin/config.php", "/cgi-bin/luci", "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
          "/boaform/admin/formLogin", "/HNAP1/", "/actuator/env", "/server-status",
          "/index.php?s=/Index/\\think\\app/invokefunction", "/shell.php", "/wp-content/plugins/x/y.php"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
          "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
          "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"]
SCAN_AGENTS = ["zgrab/0.x", "Mozilla/5.0 zgrab/0.x", "python-requests/2.31.0", "curl/8.5.0",
               "Go-http-client/1.1", "masscan/1.3"]


def v4(rng, first):
    return "%d.%d.%d.%d" % (first, rng.randrange(256), rng.randrange(256), rng.randrange(1, 255))


def v6(rng):
    return "2001:db8:%x:%x::%x" % (rng.randrange(65536), rng.randrange(65536), rng.randrange(1, 65535))


def addresses(rng, n, firsts, v6_share):
    out = []
    seen = set()
    while len(out) < n:
        a = v6(rng) if rng.random() < v6_share else v4(rng, rng.choice(firsts))
        if a not in seen:
            seen.add(a)
            out.append(a)
    return out


def syslog_time(t):
    # t: seconds since 2025-03-01 00:00:00 (a year without leap-day trouble, 31-day March).
    day, rest = divmod(int(t), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    month, dom = 2, day + 1
    for length in (31, 30, 31, 30, 31, 31, 30, 31, 30, 31):
        if dom <= length:
            break
        dom -= length
        month += 1
    return "%s %2d %02d:%02d:%02d" % (MONTHS[month], dom, h, m, s)


def clf_time(t):
    day, rest = divmod(int(t), 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    month, dom = 2, day + 1
    for length in (31, 30, 31, 30, 31, 31, 30, 31, 30, 31):
        if dom <= length:
            break
        dom -= length
        month += 1
    return "%02d/%s/2025:%02d:%02d:%02d +0000" % (dom, MONTHS[month], h, m, s)


def gen_sshd(rng, lines, path):
    attackers = addresses(rng, max(50, lines // 300), [45, 61, 91, 103, 185, 193, 218], 0.1)
    benign = addresses(rng, max(20, lines // 5000), [10, 172, 192], 0.2)
    failures = {a: 0 for a in attackers}
    t = 0.0
    pid = 1000
    with open(path, "w", encoding="ascii", newline="\n") as f:
        n = 0
        while n < lines:
            t += rng.expovariate(1 / 0.25)
            pid += 1
            host = "bastion"
            r = rng.random()
            if r < 0.45:
                # A brute-force burst from one attacker: several failures, then a disconnect.
                a = rng.choice(attackers)
                port = rng.randrange(1024, 65535)
                for _ in range(rng.randrange(1, 6)):
                    if n >= lines:
                        break
                    if rng.random() < 0.5:
                        u = rng.choice(BAD_USERS)
                        f.write("%s %s sshd[%d]: Invalid user %s from %s port %d\n"
                                % (syslog_time(t), host, pid, u, a, port))
                        failures[a] += 1
                        n += 1
                        if n >= lines:
                            break
                        f.write("%s %s sshd[%d]: Failed password for invalid user %s from %s port %d ssh2\n"
                                % (syslog_time(t), host, pid, u, a, port))
                    else:
                        f.write("%s %s sshd[%d]: Failed password for root from %s port %d ssh2\n"
                                % (syslog_time(t), host, pid, a, port))
                    failures[a] += 1
                    n += 1
                    t += rng.random()
                if n < lines:
                    f.write("%s %s sshd[%d]: Connection closed by authenticating user root %s port %d [preauth]\n"
                            % (syslog_time(t), host, pid, a, port))
                    n += 1
            elif r < 0.75:
                # A benign login with its session.
                a = rng.choice(benign)
                u = rng.choice(USERS)
                port = rng.randrange(1024, 65535)
                for line in (
                    "Accepted publickey for %s from %s port %d ssh2: ED25519 SHA256:%016x" % (u, a, port, rng.getrandbits(64)),
                    "pam_unix(sshd:session): session opened for user %s(uid=%d) by (uid=0)" % (u, 1000 + USERS.index(u)),
                    "Received disconnect from %s port %d:11: disconnected by user" % (a, port),
                    "Disconnected from user %s %s port %d" % (u, a, port),
                    "pam_unix(sshd:session): session closed for user %s" % u,
                ):
                    if n >= lines:
                        break
                    f.write("%s %s sshd[%d]: %s\n" % (syslog_time(t), host, pid, line))
                    n += 1
                    t += rng.random() * 3
            else:
                # Noise from other programs and harmless sshd lines.
                choice = rng.randrange(3)
                if choice == 0:
                    f.write("%s %s CRON[%d]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)\n"
                            % (syslog_time(t), host, pid))
                elif choice == 1:
                    f.write("%s %s systemd[1]: Started session-%d.scope - Session %d of User %s.\n"
                            % (syslog_time(t), host, pid, pid, rng.choice(USERS)))
                else:
                    f.write("%s %s sshd[%d]: Server listening on 0.0.0.0 port 22.\n"
                            % (syslog_time(t), host, pid))
                n += 1
    return {"attackers": {a: c for a, c in failures.items() if c}, "benign": benign}


def gen_nginx(rng, lines, path):
    scanners = addresses(rng, max(30, lines // 1000), [5, 45, 89, 134, 167, 195], 0.05)
    visitors = addresses(rng, max(100, lines // 200), [24, 66, 73, 81, 98, 176], 0.15)
    probes = {a: 0 for a in scanners}
    t = 0.0
    with open(path, "w", encoding="ascii", newline="\n") as f:
        for _ in range(lines):
            t += rng.expovariate(1 / 0.05)
            if rng.random() < 0.2:
                a = rng.choice(scanners)
                p = rng.choice(PROBES)
                status = rng.choice((404, 404, 404, 403, 400))
                ua = rng.choice(SCAN_AGENTS)
                probes[a] += 1
            else:
                a = rng.choice(visitors)
                p = rng.choice(PAGES)
                status = rng.choice((200, 200, 200, 200, 304, 301))
                ua = rng.choice(AGENTS)
            method = "POST" if p in ("/wp-login.php", "/xmlrpc.php", "/contact") and rng.random() < 0.5 else "GET"
            size = 0 if status == 304 else rng.randrange(150, 50000)
            f.write('%s - - [%s] "%s %s HTTP/1.1" %d %d "-" "%s"\n'
                    % (a, clf_time(t), method, p, status, size, ua))
    return {"scanners": {a: c for a, c in probes.items() if c}, "visitors": visitors}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--lines", type=int, default=1_000_000, help="lines per log (default 1,000,000)")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    truth = {"seed": args.seed, "lines": args.lines}
    truth["sshd"] = gen_sshd(random.Random(args.seed), args.lines, os.path.join(args.out_dir, "sshd_auth.log"))
    truth["nginx"] = gen_nginx(random.Random(args.seed + 1), args.lines, os.path.join(args.out_dir, "nginx_access.log"))
    with open(os.path.join(args.out_dir, "truth.json"), "w", encoding="ascii") as f:
        json.dump(truth, f, indent=1, sort_keys=True)
        f.write("\n")
    s, w = truth["sshd"], truth["nginx"]
    print("sshd: %d attackers (%d failures), %d benign; nginx: %d scanners (%d probes), %d visitors"
          % (len(s["attackers"]), sum(s["attackers"].values()), len(s["benign"]),
             len(w["scanners"]), sum(w["scanners"].values()), len(w["visitors"])))


if __name__ == "__main__":
    main()
