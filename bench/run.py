#!/usr/bin/python3
"""Core-engine benchmark (issue 2): Palisade against its peers on the same logs, same run.

  bench/run.py [--bin target/release/palisade] [--out bench/out] [--md bench/RESULTS.md]

Generates the 1,000,000-line logs with ../shared/bench/gen_sshd.py and gen_nginx.py (default
seeds) if absent, then measures wall time and peak RSS (GNU time) of:
  palisade check --filter sshd | sshguard's parser | fail2ban (f2b_replay.py)
  palisade check --filter nginx_access | sshguard's parser on the nginx log
  palisade replay (sshd jail, maxretry 5/findtime 10m) | f2b_replay.py with the same settings
and scores detection against the generators' truth with ../shared/bench/analyze_detect.py.
Writes a Markdown report (the figures of this run, with ratios).
"""
import argparse, json, os, subprocess, sys, time, re

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "bench")
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


def score(truth, tsv, label):
    out = subprocess.run(["/usr/bin/python3", os.path.join(SHARED, "analyze_detect.py"), truth, tsv,
                          "--label", label, "--json", tsv + ".json"],
                         capture_output=True, text=True, check=True).stdout
    return out, json.load(open(tsv + ".json"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "palisade"))
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--md", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    sshd = os.path.join(a.out, "sshd_auth.log")
    nginx = os.path.join(a.out, "nginx_access.log")
    if not os.path.exists(sshd):
        subprocess.run(["/usr/bin/python3", os.path.join(SHARED, "gen_sshd.py"), "--out", sshd], check=True,
                       stdout=subprocess.DEVNULL)
    if not os.path.exists(nginx):
        subprocess.run(["/usr/bin/python3", os.path.join(SHARED, "gen_nginx.py"), "--out", nginx], check=True,
                       stdout=subprocess.DEVNULL)
    env = dict(os.environ, TZ="UTC")
    lines = 1_000_000
    rows = []

    def row(what, tool, r, note=""):
        secs, rss, cpu = r[0], r[1], (r[3] if len(r) > 3 else CPU[0])
        rows.append((what, tool, secs, lines / secs, cpu, lines / max(cpu, 1e-9), rss, note))
        print("%-28s %-34s %7.3f s %12.0f lines/s, %12.0f lines/CPU-s %7.1f MB %s"
              % (what, tool, secs, lines / secs, lines / max(cpu, 1e-9), rss, note), flush=True)
        return lines / max(cpu, 1e-9)

    # --- sshd parsing -------------------------------------------------------------------
    p_ssh = best(a.runs, lambda: timed([a.bin, "check", sshd, "--filter", "sshd", "--now", NOW], env=env))
    r_p = row("sshd log: parse", "palisade check --filter sshd", p_ssh)
    g_ssh = best(a.runs, lambda: timed(["/usr/libexec/sshguard/sshg-parser"], stdin=open(sshd)))
    r_g = row("sshd log: parse", "sshguard sshg-parser", g_ssh)
    f2b_json = os.path.join(a.out, "f2b.json")
    f2b_lines = os.path.join(a.out, "f2b_lines.tsv")
    f2b = timed(["/usr/bin/python3", os.path.join(SHARED, "f2b_replay.py"), sshd, "sshd", "--maxretry", "5",
                 "--findtime", "600", "--bantime", "600", "--lines-out", f2b_lines],
                stdout=subprocess.PIPE, env=env)
    f2b_res = json.loads(f2b[2])
    r_f = row("sshd log: parse + detect", "fail2ban 1.0.2 (f2b_replay.py)", f2b,
              "%d failures, %d bans of %d IPs" % (f2b_res["failures"], f2b_res["bans"],
                                                  f2b_res["distinct_banned_ips"]))
    # --- replay -----------------------------------------------------------------------------
    cfg = os.path.join(a.out, "replay.toml")
    with open(cfg, "w") as fh:
        fh.write('[general]\ntimezone = "UTC"\n[defaults]\nmax_retry = 5\nfind_time = "10m"\n'
                 'ban_time = "10m"\nipv6_prefix = 128\n[escalation]\nenabled = false\n'
                 '[recidive]\nenabled = false\n[[jail]]\nname = "sshd"\nfilter = "sshd"\nstdin = true\n')
    rp = best(a.runs, lambda: timed([a.bin, "replay", sshd, "--config", cfg, "--now", NOW], stdout=subprocess.PIPE,
                                    env=env))
    m = re.search(r"failures: (\d+), bans: (\d+) of (\d+) targets", rp[2])
    r_r = row("sshd log: replay (detect+ban)", "palisade replay", rp,
              "%s failures, %s bans of %s IPs" % m.groups())
    # --- nginx -------------------------------------------------------------------------------
    p_ng = best(a.runs, lambda: timed([a.bin, "check", nginx, "--filter", "nginx_access", "--now", NOW], env=env))
    r_pn = row("nginx log: parse", "palisade check --filter nginx_access", p_ng)
    g_ng = best(a.runs, lambda: timed(["/usr/libexec/sshguard/sshg-parser"], stdin=open(nginx)))
    r_gn = row("nginx log: parse", "sshguard sshg-parser", g_ng)

    # --- detection quality ------------------------------------------------------------------
    quality = []
    for mode in ("normal", "aggressive"):
        _, _, out = timed([a.bin, "check", sshd, "--filter", "sshd", "--mode", mode, "--json", "--now", NOW],
                          stdout=subprocess.PIPE, env=env)
        tsv = os.path.join(a.out, "palisade_sshd_%s.tsv" % mode)
        json_to_tsv(out, tsv)
        quality.append(("palisade sshd " + mode, score(sshd + ".truth.tsv.gz", tsv, "palisade " + mode)))
    quality.append(("fail2ban sshd normal", score(sshd + ".truth.tsv.gz", f2b_lines, "fail2ban normal")))
    f2b_aggr_lines = os.path.join(a.out, "f2b_aggr_lines.tsv")
    subprocess.run(["/usr/bin/python3", os.path.join(SHARED, "f2b_replay.py"), sshd, "sshd", "--mode", "aggressive",
                    "--lines-out", f2b_aggr_lines], check=True, stdout=subprocess.DEVNULL, env=env)
    quality.append(("fail2ban sshd aggressive", score(sshd + ".truth.tsv.gz", f2b_aggr_lines, "fail2ban aggressive")))
    for mode in ("normal", "aggressive"):
        _, _, out = timed([a.bin, "check", nginx, "--filter", "nginx_access", "--mode", mode, "--json",
                           "--now", NOW], stdout=subprocess.PIPE, env=env)
        tsv = os.path.join(a.out, "palisade_nginx_%s.tsv" % mode)
        json_to_tsv(out, tsv)
        quality.append(("palisade nginx_access " + mode, score(nginx + ".truth.tsv.gz", tsv, "palisade nginx " + mode)))

    # --- report -------------------------------------------------------------------------------
    md = ["# Benchmark results", "",
          "Measured by `bench/run.py` on this machine class (2 vCPU, Debian 12), all tools in the same run, "
          "1,000,000-line logs from `../shared/bench/gen_sshd.py` and `gen_nginx.py` (default seeds). "
          "Best of %d runs for Palisade and sshguard; wall time, CPU time (user + system) and peak RSS "
          "from GNU time. Ratios use lines per CPU-second, which stays fair when the machine is "
          "loaded; wall-clock lines/s are shown too. "
          "Run at %s." % (a.runs, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())), "",
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
           "", "## Detection quality (analyze_detect.py against the generators' truth)", ""]
    for label, (text, js) in quality:
        md += ["### " + label, "", "```", text.strip(), "```", ""]
    with open(a.md, "w") as fh:
        fh.write("\n".join(md) + "\n")
    print("wrote", a.md)


if __name__ == "__main__":
    main()
