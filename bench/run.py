#!/usr/bin/python3
"""Core-engine benchmark (issue 2): Palisade against its peers on the same logs, same run.

  bench/run.py [--bin target/release/palisade] [--out bench/out] [--md bench/RESULTS.md]
               [--lines 1000000] [--runs 3]

Generates the logs with the project's own generator, bench/gen/gen_logs.py (deterministic,
default seed; sshd_auth.log, nginx_access.log and their truth.json), if absent, then measures
wall time, CPU time and peak RSS (GNU time) of:
  palisade check --filter sshd | sshguard's parser | fail2ban (bench/fail2ban/f2b_replay.py)
  palisade check --filter nginx_access | sshguard's parser on the nginx log
  palisade replay (sshd jail, maxretry 5/findtime 10m) | f2b_replay.py with the same settings
and scores every tool's per-line detections against truth.json: lines flagged on attackers'
addresses, on benign addresses (false positives), and lines blamed on an address that is
not in the line (wrong address). Records the machine's load before and after; ratios use
lines per CPU-second. Writes a Markdown report (the figures of this run, with ratios).
Needs python3, GNU time, sshguard and fail2ban (Debian packages).
"""
import argparse, json, os, subprocess, sys, time, re

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GEN = os.path.join(HERE, "gen", "gen_logs.py")
F2B = os.path.join(HERE, "fail2ban", "f2b_replay.py")
NOW = "2025-03-20T00:00:00Z"
CPU = [0.0]  # CPU seconds (user + system) of the last timed() run


def timed(argv, stdin=None, stdout=subprocess.DEVNULL, env=None):
    """Runs argv under /usr/bin/time -v; returns (seconds, peak_rss_mb, stdout_text|None)."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + argv, stdin=stdin, stdout=stdout,
                       stderr=subprocess.PIPE, env=env, text=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit("failed (%d): %s\n%s" % (p.returncode, " ".join(argv), p.stderr[-2000:]))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) / 1024
    cpu = sum(float(re.search(r"%s time \(seconds\): ([\d.]+)" % k, p.stderr).group(1)) for k in ("User", "System"))
    CPU[0] = cpu
    return dt, rss, (p.stdout if stdout == subprocess.PIPE else None)


def best(n, f):
    """Best (lowest time) of n runs of f() -> (secs, rss, out, cpu_secs)."""
    runs = []
    for _ in range(n):
        r = f()
        runs.append(r + (CPU[0],))
    return min(runs, key=lambda r: r[0])


def json_to_tsv(text, path):
    with open(path, "w") as fh:
        for l in text.splitlines():
            o = json.loads(l)
            fh.write("%d\t%s\n" % (o["line"], o["ip"]))


def load():
    """The load averages (1, 5, 15 min) and the number of CPUs, for the record."""
    with open("/proc/loadavg") as fh:
        return "%s (%d CPUs)" % (" ".join(fh.read().split()[:3]), os.cpu_count())


def score(log, truth, bad_key, good_key, tsv, label):
    """Scores per-line detections (`LINE<TAB>ADDRESS`) against the generator's truth.

    truth[bad_key]: hostile address -> its hostile lines; truth[good_key]: benign addresses.
    Returns (text, figures)."""
    bad, good = truth[bad_key], set(truth[good_key])
    det = {}
    with open(tsv) as fh:
        for l in fh:
            n, ip = l.rstrip("\n").split("\t")
            det[int(n)] = ip
    wrong = 0
    per_ip = {}
    fp = 0
    other = 0
    with open(log, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            ip = det.get(n)
            if ip is None:
                continue
            if ip.encode() not in raw:
                wrong += 1
            if ip in good:
                fp += 1
            elif ip in bad:
                per_ip[ip] = per_ip.get(ip, 0) + 1
            else:
                other += 1
    hostile = sum(bad.values())
    found = sum(min(c, bad[ip]) for ip, c in per_ip.items())
    seen = sum(1 for ip in bad if per_ip.get(ip))
    f = {"flagged": len(det), "hostile_lines": hostile, "found": found, "extra": sum(per_ip.values()) - found,
         "hostile_ips": len(bad), "ips_seen": seen, "fp": fp, "wrong": wrong, "unknown": other}
    text = ("%s: %s lines flagged; hostile lines counted %s of %s (%.1f%%)%s; hostile addresses seen %d of %d; "
            "lines on benign addresses (false positives) %d; lines blamed on an address not in the line %d; "
            "on addresses the generator never wrote %d"
            % (label, format(f["flagged"], ","), format(found, ","), format(hostile, ","),
               100.0 * found / max(hostile, 1),
               (" (+%s further lines of hostile addresses, e.g. pre-auth disconnects)" % format(f["extra"], ","))
               if f["extra"] else "", seen, len(bad), fp, wrong, other))
    return text, f


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "palisade"))
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--md", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--lines", type=int, default=1_000_000)
    a = ap.parse_args()
    data = os.path.join(a.out, "gen-%d" % a.lines)
    sshd = os.path.join(data, "sshd_auth.log")
    nginx = os.path.join(data, "nginx_access.log")
    truth_path = os.path.join(data, "truth.json")
    if not os.path.exists(truth_path):
        subprocess.run(["/usr/bin/python3", GEN, "--out-dir", data, "--lines", str(a.lines)], check=True,
                       stdout=subprocess.DEVNULL)
    with open(truth_path) as fh:
        truth = json.load(fh)
    env = dict(os.environ, TZ="UTC")
    lines = a.lines
    rows = []
    load_before = load()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print("load before:", load_before, flush=True)

    def row(what, tool, r, note=""):
        secs, rss, cpu = r[0], r[1], (r[3] if len(r) > 3 else CPU[0])
        rows.append((what, tool, secs, lines / secs, cpu, lines / max(cpu, 1e-9), rss, note))
        print("%-28s %-34s %7.3f s %12.0f lines/s, %12.0f lines/CPU-s %7.1f MB %s"
              % (what, tool, secs, lines / secs, lines / max(cpu, 1e-9), rss, note), flush=True)
        return lines / max(cpu, 1e-9)

    def f2b_run(mode, lines_out, bans_out=None):
        argv = ["/usr/bin/python3", F2B, sshd, "sshd", "--maxretry", "5", "--findtime", "600",
                "--bantime", "600", "--now", NOW, "--lines-out", lines_out]
        if bans_out:
            argv += ["--bans-out", bans_out]
        if mode:
            argv += ["--mode", mode]
        return timed(argv, stdout=subprocess.PIPE, env=env)

    # --- sshd parsing -------------------------------------------------------------------
    p_ssh = best(a.runs, lambda: timed([a.bin, "check", sshd, "--filter", "sshd", "--now", NOW], env=env))
    r_p = row("sshd log: parse", "palisade check --filter sshd", p_ssh)
    g_ssh = best(a.runs, lambda: timed(["/usr/libexec/sshguard/sshg-parser"], stdin=open(sshd)))
    r_g = row("sshd log: parse", "sshguard sshg-parser", g_ssh)
    f2b_lines = os.path.join(a.out, "f2b_lines.tsv")
    f2b_bans = os.path.join(a.out, "f2b_bans.tsv")
    f2b = f2b_run(None, f2b_lines, f2b_bans)
    f2b_res = json.loads(f2b[2])
    r_f = row("sshd log: parse + detect", "fail2ban (bench/fail2ban/f2b_replay.py)", f2b,
              "%d failures, %d bans of %d IPs" % (f2b_res["failures"], f2b_res["bans"],
                                                  f2b_res["distinct_banned_ips"]))
    # --- replay -----------------------------------------------------------------------------
    cfg = os.path.join(a.out, "replay.toml")
    with open(cfg, "w") as fh:
        fh.write('[general]\ntimezone = "UTC"\n[defaults]\nmax_retry = 5\nfind_time = "10m"\n'
                 'ban_time = "10m"\nipv6_prefix = 128\n[escalation]\nenabled = false\n'
                 '[recidive]\nenabled = false\n[[jail]]\nname = "sshd"\nfilter = "sshd"\nstdin = true\n')
    rp = best(a.runs, lambda: timed([a.bin, "replay", sshd, "--config", cfg, "--now", NOW, "--json"],
                                    stdout=subprocess.PIPE, env=env))
    banned = {json.loads(l)["ip"] for l in rp[2].splitlines()}
    r_r = row("sshd log: replay (detect+ban)", "palisade replay", rp,
              "%d bans of %d IPs" % (len(rp[2].splitlines()), len(banned)))
    # --- nginx -------------------------------------------------------------------------------
    p_ng = best(a.runs, lambda: timed([a.bin, "check", nginx, "--filter", "nginx_access", "--now", NOW], env=env))
    r_pn = row("nginx log: parse", "palisade check --filter nginx_access", p_ng)
    g_ng = best(a.runs, lambda: timed(["/usr/libexec/sshguard/sshg-parser"], stdin=open(nginx)))
    r_gn = row("nginx log: parse", "sshguard sshg-parser", g_ng)

    # --- detection quality ------------------------------------------------------------------
    quality = []
    ssh_t = ("attackers", "benign")
    for mode in ("normal", "aggressive"):
        _, _, out = timed([a.bin, "check", sshd, "--filter", "sshd", "--mode", mode, "--json", "--now", NOW],
                          stdout=subprocess.PIPE, env=env)
        tsv = os.path.join(a.out, "palisade_sshd_%s.tsv" % mode)
        json_to_tsv(out, tsv)
        quality.append(score(sshd, truth["sshd"], *ssh_t, tsv, "palisade sshd " + mode))
    quality.append(score(sshd, truth["sshd"], *ssh_t, f2b_lines, "fail2ban sshd normal"))
    f2b_aggr_lines = os.path.join(a.out, "f2b_aggr_lines.tsv")
    f2b_run("aggressive", f2b_aggr_lines)
    quality.append(score(sshd, truth["sshd"], *ssh_t, f2b_aggr_lines, "fail2ban sshd aggressive"))
    for mode in ("normal", "aggressive"):
        _, _, out = timed([a.bin, "check", nginx, "--filter", "nginx_access", "--mode", mode, "--json",
                           "--now", NOW], stdout=subprocess.PIPE, env=env)
        tsv = os.path.join(a.out, "palisade_nginx_%s.tsv" % mode)
        json_to_tsv(out, tsv)
        quality.append(score(nginx, truth["nginx"], "scanners", "visitors", tsv, "palisade nginx_access " + mode))
    bad = set(truth["sshd"]["attackers"])
    # Bans: the same settings on both sides; no benign address may be banned.
    with open(f2b_bans) as fh:
        f2b_banned = {l.split("\t")[0] for l in fh}
    load_after = load()
    print("load after:", load_after, flush=True)

    # --- report -------------------------------------------------------------------------------
    md = ["# Benchmark results", "",
          "Measured by `bench/run.py` on this machine class (2 vCPU, Debian 12), all tools in the same run, "
          "%s-line logs from the project's own generator `bench/gen/gen_logs.py` (default seed %s), "
          "scored against its `truth.json`. fail2ban is driven through its own modules by "
          "`bench/fail2ban/f2b_replay.py` (the Debian package's filter files and FailManager). "
          "Best of %d runs for Palisade and sshguard; wall time, CPU time (user + system) and peak RSS "
          "from GNU time. Ratios use lines per CPU-second, which stays fair when the machine is "
          "loaded; wall-clock lines/s are shown too." % (format(lines, ","), truth["seed"], a.runs), "",
          "Run at %s. Load average (1/5/15 min) before: %s; after: %s. "
          "The machine is shared with other engineers' builds: compare the ratios and CPU figures, "
          "not the wall times." % (started, load_before, load_after), "",
          "## Throughput and memory", "",
          "| workload | tool | wall s | lines/s (wall) | CPU s | lines/CPU-s | peak RSS (MB) | result |",
          "|---|---|---|---|---|---|---|---|"]
    for what, tool, secs, lps, cpu, lpc, rss, note in rows:
        md.append("| %s | %s | %.3f | %s | %.3f | %s | %.1f | %s |" % (what, tool, secs, format(int(lps), ","), cpu,
                                                                     format(int(lpc), ","), rss, note))
    md += ["", "## Ratios", "",
           "| comparison (lines per CPU-second) | ratio | target |", "|---|---|---|",
           "| `check --filter sshd` vs sshguard parser | %.1f× | ≥ 4× |" % (r_p / r_g),
           "| `check --filter sshd` vs fail2ban | %.0f× | ≥ 50× |" % (r_p / r_f),
           "| `replay` vs fail2ban replay | %.0f× | (≥ 1M lines/s) |" % (r_r / r_f),
           "| `check --filter nginx_access` vs sshguard parser | %.1f× | |" % (r_pn / r_gn),
           "", "Peak RSS targets: check ≤ 30 MB (measured %.1f), replay ≤ 100 MB (measured %.1f)." % (p_ssh[1], rp[1]),
           "", "## Bans (maxretry 5, findtime 10 min, bantime 10 min, per address)", "",
           "| | attackers banned (of %d) | benign addresses banned (of %d) |" % (len(bad), len(truth["sshd"]["benign"])),
           "|---|---|---|",
           "| palisade replay | %d | %d |" % (len(banned & bad), len(banned & set(truth["sshd"]["benign"]))),
           "| fail2ban | %d | %d |" % (len(f2b_banned & bad), len(f2b_banned & set(truth["sshd"]["benign"]))),
           "", "Addresses banned by fail2ban and not by Palisade: %d." % len(f2b_banned - banned),
           "", "## Detection quality (per-line detections against truth.json)", "",
           "A hostile line is counted found up to the number of hostile lines the generator wrote "
           "for its address (`Invalid user`, `Failed password`; scanners' probes); further lines "
           "of the same address (pre-auth disconnects) are listed separately.", ""]
    for text, _ in quality:
        md += ["- " + text]
    # Sections written by hand or by other benchmarks follow a marker line: kept.
    kept = ""
    if os.path.exists(a.md):
        with open(a.md) as fh:
            text = fh.read()
        marker = text.find("\n<!-- end of bench/run.py output")
        if marker >= 0:
            kept = text[marker:]
    with open(a.md, "w") as fh:
        fh.write("\n".join(md) + "\n" + kept)
    print("wrote", a.md)


if __name__ == "__main__":
    main()
