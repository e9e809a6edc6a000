#!/usr/bin/python3
"""Firewall benchmark (issue 4): Palisade's nftables responder against fail2ban's stock
`nftables-multiport` action, same machine, same run. Everything happens inside a throwaway
network namespace; the host's ruleset is never touched.

  bench/firewall/run.sh [--bin target/release/palisade] [--md bench/firewall/RESULTS.md] ...

Measures:
  (a) line-to-ban latency: one offending sshd line appended to the followed log (max_retry 1),
      until `nft monitor` in the namespace reports the element (p50/p99 over --latency-n bans);
  (b) restore at start: N active bans in the store (Palisade: rows in its SQLite store;
      fail2ban: rows in its dbfile), firewall table absent, start the daemon, time until the
      set holds N elements;
  (c) burst: N offending lines (N distinct addresses, max_retry 1) written at once, time until
      the set holds N elements. For fail2ban also `fail2ban-client set sshd banip` with N
      addresses in one call.
fail2ban runs one `nft` process per ban; its sizes are smaller (--f2b-*) and the report
extrapolates linearly to Palisade's sizes, saying so.
"""
import argparse, atexit, ipaddress, os, re, shutil, signal, socket, sqlite3, subprocess, sys
import tempfile, threading, time

IP = "/usr/sbin/ip"
NFT = "/usr/sbin/nft"
PY = "/usr/bin/python3"


def sh(argv, check=True, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        sys.exit("failed (%d): %s\n%s%s" % (p.returncode, " ".join(argv), p.stdout, p.stderr))
    return p.stdout


class Netns:
    def __init__(self):
        self.name = "palbench-%d" % os.getpid()
        sh([IP, "netns", "add", self.name])
        sh([IP, "-n", self.name, "link", "set", "lo", "up"])
        atexit.register(self.close)

    def argv(self, argv):
        return [IP, "netns", "exec", self.name] + list(argv)

    def run(self, argv, check=True):
        return sh(self.argv(argv), check=check)

    def close(self):
        subprocess.run([IP, "netns", "del", self.name], capture_output=True)


def addr(i):
    """The i-th benchmark address (198.18.0.0/15, RFC 2544 benchmarking range)."""
    return str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("198.18.0.0")) + 1 + i))


def syslog_line(ip, ts=None):
    ts = ts or time.strftime("%b %e %H:%M:%S", time.localtime())
    return "%s bench sshd[4242]: Invalid user bench from %s port 4242\n" % (ts, ip)


class Monitor:
    """`nft monitor` in the namespace: first time each address was added to a set."""

    RE = re.compile(r"^add element inet (\S+) (\S+) \{ ([0-9.]+)")

    def __init__(self, ns, table):
        self.table = table
        self.seen = {}
        self.cv = threading.Condition()
        self.p = subprocess.Popen(ns.argv(["stdbuf", "-oL", NFT, "monitor", "elements"]),
                                  stdout=subprocess.PIPE, text=True, bufsize=1)
        self.t = threading.Thread(target=self.read, daemon=True)
        self.t.start()
        time.sleep(0.3)

    def read(self):
        for line in self.p.stdout:
            now = time.perf_counter()
            m = self.RE.match(line)
            if m and m.group(1) == self.table:
                # One batch can carry several elements: `{ a timeout 1h, b timeout 1h }`.
                for ip in re.findall(r"(?:\{ |, )([0-9.]+)", line):
                    with self.cv:
                        self.seen.setdefault(ip, now)
                        self.cv.notify_all()

    def wait(self, ips, timeout):
        deadline = time.perf_counter() + timeout
        with self.cv:
            while not all(i in self.seen for i in ips):
                left = deadline - time.perf_counter()
                if left <= 0:
                    return False
                self.cv.wait(left)
        return True

    def close(self):
        self.p.kill()
        self.p.wait()


def set_count(ns, table, setname):
    out = subprocess.run(ns.argv([NFT, "list", "set", "inet", table, setname]),
                         capture_output=True, text=True).stdout
    m = re.search(r"elements = \{(.*?)\}", out, re.S)
    return 0 if not m else m.group(1).count(",") + 1


def wait_count(ns, table, setname, n, timeout, every=0.05):
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if set_count(ns, table, setname) >= n:
            return True
        time.sleep(every)
    return False


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def append(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def latency(ns, log, mon, start, n, label):
    lat = []
    for i in range(n):
        ip = addr(start + i)
        t0 = time.perf_counter()
        append(log, syslog_line(ip))
        if not mon.wait([ip], 10):
            sys.exit("%s: %s not banned within 10 s" % (label, ip))
        lat.append((mon.seen[ip] - t0) * 1000)
        time.sleep(0.02)
    return {"n": n, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": max(lat)}


def proc_cpu(pid):
    """CPU seconds of a process so far: (own user+system, its waited-for children's). The
    daemon runs `nft` as a waited-for child, so the second figure is nft's CPU."""
    try:
        f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    except OSError:
        return (float("nan"), float("nan"))
    tck = os.sysconf("SC_CLK_TCK")
    return ((int(f[11]) + int(f[12])) / tck, (int(f[13]) + int(f[14])) / tck)


def loadavg():
    return open("/proc/loadavg").read().split()[0]


# --------------------------------------------------------------------------------- Palisade

class Palisade:
    def __init__(self, ns, bin_, dir_, name):
        self.ns, self.bin, self.dir = ns, bin_, os.path.join(dir_, name)
        os.makedirs(self.dir)
        self.log = os.path.join(self.dir, "auth.log")
        open(self.log, "w").close()
        self.cfg = os.path.join(self.dir, "palisade.toml")
        with open(self.cfg, "w") as f:
            f.write("""
[general]
state_dir = "{d}/state"
socket = "{d}/palisade.sock"
log_level = "warn"
[store]
url = "sqlite:{d}/palisade.db"
[defaults]
max_retry = 1
find_time = "10m"
ban_time = "1h"
max_keys = 1000000
responders = ["nftables"]
[[jail]]
name = "sshd"
filter = "sshd"
files = ["{log}"]
""".format(d=self.dir, log=self.log))
        self.p = None

    def start(self):
        self.t_start = time.perf_counter()
        self.p = subprocess.Popen(self.ns.argv([self.bin, "run", "--config", self.cfg]),
                                  stderr=open(os.path.join(self.dir, "err.log"), "a"))
        sock = os.path.join(self.dir, "palisade.sock")
        while True:
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(sock)
                s.close()
                break
            except OSError:
                if self.p.poll() is not None:
                    sys.exit("palisade exited; see %s/err.log" % self.dir)
                time.sleep(0.005)
        self.t_ready = time.perf_counter()
        self.cpu_ready = proc_cpu(self.p.pid)
        time.sleep(0.3)  # the tailer seeks to the end of the log

    def stop(self):
        if self.p:
            self.p.terminate()
            self.p.wait(60)
            self.p = None

    def seed_store(self, n):
        """n active bans, straight into the store (schema made by the binary itself)."""
        sh([self.bin, "decisions", "list", "--config", self.cfg])
        now = int(time.time() * 1e6)
        db = sqlite3.connect(os.path.join(self.dir, "palisade.db"))
        db.executemany(
            "INSERT INTO decisions (target, jail, origin, reason, created, expires, simulated,"
            " level, status, updated) VALUES (?, 'sshd', 'jail', 'bench', ?, ?, 0, 0, 'active', ?)",
            ((addr(i) + "/32", now, now + 3600 * 10**6, now) for i in range(n)))
        db.commit()
        db.close()


def bench_palisade(ns, bin_, tmp, a):
    r = {}
    ns.run([NFT, "flush", "ruleset"])
    p = Palisade(ns, bin_, tmp, "pal-live")
    mon = Monitor(ns, "palisade")
    p.start()
    r["latency"] = latency(ns, p.log, mon, 0, a.latency_n, "palisade")
    # (c) burst: N lines in one write.
    base = 100_000
    ips = [addr(base + i) for i in range(a.burst_n)]
    text = "".join(syslog_line(ip) for ip in ips)
    t0 = time.perf_counter()
    append(p.log, text)
    ok = mon.wait(ips, 300)
    t1 = time.perf_counter()
    if not ok or set_count(ns, "palisade", "ban4") < a.latency_n + a.burst_n:
        sys.exit("palisade burst incomplete")
    r["burst"] = {"n": a.burst_n, "secs": t1 - t0}
    mon.close()
    p.stop()
    # (b) restore: N active decisions in a fresh store, no table in the firewall. No
    # `nft monitor` here: its 100,000 notifications cost the kernel and the monitor more CPU
    # than the restore itself. The daemon opens its control socket only after the reconcile
    # transaction committed, so "socket accepts" = "all elements present" (checked below).
    runs = []
    for i in range(a.restore_runs):
        ns.run([NFT, "flush", "ruleset"])
        q = Palisade(ns, bin_, tmp, "pal-restore-%d" % i)
        q.seed_store(a.restore_n)
        load = loadavg()
        q.start()
        if set_count(ns, "palisade", "ban4") < a.restore_n:
            sys.exit("palisade restore: set incomplete")
        runs.append({"ready_secs": q.t_ready - q.t_start, "cpu_self": q.cpu_ready[0],
                     "cpu_nft": q.cpu_ready[1], "load": load})
        q.stop()
    runs.sort(key=lambda x: x["ready_secs"])
    r["restore"] = dict(runs[len(runs) // 2], n=a.restore_n, runs=runs)
    ns.run([NFT, "flush", "ruleset"])
    return r


# --------------------------------------------------------------------------------- fail2ban

class Fail2ban:
    def __init__(self, ns, dir_, name):
        self.ns, self.dir = ns, os.path.join(dir_, name)
        self.etc = os.path.join(self.dir, "etc")
        shutil.copytree("/etc/fail2ban", self.etc)
        for f in os.listdir(os.path.join(self.etc, "jail.d")):
            os.remove(os.path.join(self.etc, "jail.d", f))
        self.log = os.path.join(self.dir, "auth.log")
        open(self.log, "w").close()
        self.sock = os.path.join(self.dir, "f2b.sock")
        self.pid = os.path.join(self.dir, "f2b.pid")
        self.db = os.path.join(self.dir, "f2b.sqlite3")
        with open(os.path.join(self.etc, "fail2ban.local"), "w") as f:
            f.write("[Definition]\nloglevel = NOTICE\nlogtarget = %s/f2b.log\nsocket = %s\n"
                    "pidfile = %s\ndbfile = %s\ndbpurgeage = 1d\n"
                    % (self.dir, self.sock, self.pid, self.db))
        with open(os.path.join(self.etc, "jail.local"), "w") as f:
            f.write("[DEFAULT]\nbanaction = nftables-multiport\nbanaction_allports = "
                    "nftables-allports\nbackend = pyinotify\nmaxretry = 1\nfindtime = 10m\n"
                    "bantime = 1h\nignoreip =\nusedns = no\n\n"
                    "[sshd]\nenabled = true\nport = ssh\nlogpath = %s\nbackend = pyinotify\n"
                    % self.log)
        self.p = None

    def client(self, *args, check=True):
        return self.ns.run(["fail2ban-client", "-c", self.etc, "-s", self.sock, "-p", self.pid]
                           + list(args), check=check)

    def start(self):
        self.t_start = time.perf_counter()
        self.p = subprocess.Popen(
            self.ns.argv(["fail2ban-server", "-f", "-x", "-c", self.etc, "-s", self.sock,
                          "-p", self.pid]),
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "err.log"), "a"))
        while self.client("ping", check=False).find("pong") < 0:
            if self.p.poll() is not None:
                sys.exit("fail2ban-server exited; see %s" % self.dir)
            time.sleep(0.05)
        self.t_ready = time.perf_counter()
        time.sleep(0.5)

    def stop(self):
        if self.p:
            self.client("stop", check=False)
            try:
                self.p.wait(600)
            except subprocess.TimeoutExpired:
                self.p.kill()
            self.p = None

    def seed_db(self, n):
        """n current bans in the dbfile (schema made by fail2ban at its first start)."""
        now = int(time.time())
        db = sqlite3.connect(self.db)
        rows = [(addr(500_000 + i), now) for i in range(n)]
        # `bans` is the history; `bips` (fail2ban >= 0.11) the current bans restored at start.
        for table in ("bans", "bips"):
            db.executemany(
                "INSERT INTO %s (jail, ip, timeofban, bantime, bancount, data) "
                "VALUES ('sshd', ?, ?, 3600, 1, '{}')" % table, rows)
        db.commit()
        db.close()


def step(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def bench_fail2ban(ns, tmp, a):
    r = {}
    ns.run([NFT, "flush", "ruleset"])
    f = Fail2ban(ns, tmp, "f2b-live")
    mon = Monitor(ns, "f2b-table")
    f.start()
    step("fail2ban: latency")
    r["latency"] = latency(ns, f.log, mon, 200_000, a.latency_n, "fail2ban")
    step("fail2ban: burst")
    # (c) burst through the log.
    ips = [addr(300_000 + i) for i in range(a.f2b_burst_n)]
    t0 = time.perf_counter()
    append(f.log, "".join(syslog_line(ip) for ip in ips))
    ok = mon.wait(ips, 1800)
    r["burst"] = {"n": a.f2b_burst_n, "secs": time.perf_counter() - t0, "complete": ok}
    step("fail2ban: banip")
    # (c') burst through banip, all addresses in one call.
    ips = [addr(400_000 + i) for i in range(a.f2b_burst_n)]
    t0 = time.perf_counter()
    f.client("set", "sshd", "banip", *ips)
    ok = mon.wait(ips, 1800)
    r["banip"] = {"n": a.f2b_burst_n, "secs": time.perf_counter() - t0, "complete": ok}
    mon.close()
    f.p.kill()  # `stop` would unban every address one by one; the ruleset is flushed anyway
    f.p.wait()
    f.p = None
    # (b) restore from the dbfile, for each size.
    r["restore"] = []
    for n in a.f2b_restore_n:
        ns.run([NFT, "flush", "ruleset"])
        g = Fail2ban(ns, tmp, "f2b-restore-%d" % n)
        g.start()
        g.stop()
        ns.run([NFT, "flush", "ruleset"])
        g.seed_db(n)
        step("fail2ban: restore %d" % n)
        g.start()
        ok = wait_count(ns, "f2b-table", "addr-set-sshd", n, 1800, every=0.25)
        r["restore"].append({"n": n, "secs": time.perf_counter() - g.t_start, "complete": ok})
        g.p.kill()  # `stop` would unban every address one by one
        g.p.wait()
        g.p = None
    ns.run([NFT, "flush", "ruleset"])
    return r


def report(pal, f2b, a):
    L = []
    L.append("## Firewall (issue 4): line-to-ban latency, restore, burst\n")
    L.append("Palisade `nftables` responder vs fail2ban %s `nftables-multiport` action, both in "
             "a private network namespace on this machine, same run (nft %s, %d cores). "
             "Palisade: built-in `sshd` filter; fail2ban: its `sshd` filter with the "
             "`pyinotify` backend; max_retry 1, ban 1 h. Load average %s at the start of "
             "the run (the machine may be shared: wall times then include waiting for a "
             "core).\n"
             % (sh(["fail2ban-server", "--version"]).split()[-1],
                sh([NFT, "--version"]).split()[1], os.cpu_count(), a.load_start))
    L.append("| measure | Palisade | fail2ban | ratio |")
    L.append("| --- | --- | --- | --- |")
    pl, fl = pal["latency"], f2b["latency"]
    L.append("| line-to-ban latency p50 (%d bans) | %.1f ms | %.1f ms | %.0f× |"
             % (pl["n"], pl["p50_ms"], fl["p50_ms"], fl["p50_ms"] / pl["p50_ms"]))
    L.append("| line-to-ban latency p99 | %.1f ms | %.1f ms | %.0f× |"
             % (pl["p99_ms"], fl["p99_ms"], fl["p99_ms"] / pl["p99_ms"]))
    pb, fb, fbi = pal["burst"], f2b["burst"], f2b["banip"]
    per_f = fb["secs"] / fb["n"]
    est = per_f * pb["n"]
    L.append("| burst: %d lines at once → all in the set | %.2f s | %.1f s for %d (%.1f ms/ban) "
             "→ ~%.0f s for %d (extrapolated) | ~%.0f× |"
             % (pb["n"], pb["secs"], fb["secs"], fb["n"], per_f * 1000, est, pb["n"],
                est / pb["secs"]))
    est_b = fbi["secs"] / fbi["n"] * pb["n"]
    L.append("| burst: `fail2ban-client set sshd banip` × %d in one call | — | %.1f s "
             "(~%.0f s for %d, extrapolated) | |" % (fbi["n"], fbi["secs"], est_b, pb["n"]))
    pr = pal["restore"]
    rows = ", ".join("%d: %.1f s" % (x["n"], x["secs"]) for x in f2b["restore"])
    big = f2b["restore"][-1]
    if len(f2b["restore"]) >= 2:
        # The slope between the two largest sizes (start-up cost excluded).
        small = f2b["restore"][-2]
        slope = (big["secs"] - small["secs"]) / (big["n"] - small["n"])
    else:
        slope = big["secs"] / big["n"]
    est_r = big["secs"] + (pr["n"] - big["n"]) * slope
    L.append("| restore %d active bans at start → all in the set | %.2f s (¹) | "
             "%s → ~%.0f s for %d (extrapolated) | ~%.0f× |"
             % (pr["n"], pr["ready_secs"], rows, est_r, pr["n"], est_r / pr["ready_secs"]))
    L.append("")
    L.append("(¹) median of %d runs (%s), from process start to the control socket "
             "accepting, which the daemon opens only after its reconcile transaction has "
             "committed (the set then holds all %d elements: checked). CPU used by then in "
             "the median run: %.2f s by Palisade, %.2f s by its `nft` child, %.2f s in all; "
             "load average %s when it started. No `nft monitor` runs during the restore (its "
             "%d notifications would cost more CPU than the restore)."
             % (len(pr["runs"]), ", ".join("%.2f s" % x["ready_secs"] for x in pr["runs"]),
                pr["n"], pr["cpu_self"], pr["cpu_nft"], pr["cpu_self"] + pr["cpu_nft"],
                pr["load"], pr["n"]))
    L.append("")
    L.append("fail2ban runs one `nft add element` process per ban (restore included), so its "
             "times grow linearly; its large-N figures are extrapolated from the sizes "
             "measured, as marked. Palisade applies a batch in one `nft -j -f -` transaction "
             "and restores in one `nft -f -` transaction in nft's native syntax. Latency is "
             "measured from the `write(2)` of the line to the `nft monitor` event of the "
             "element (both in this process), polled with nothing else running.\n")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/palisade")
    ap.add_argument("--latency-n", type=int, default=200)
    ap.add_argument("--burst-n", type=int, default=10_000)
    ap.add_argument("--restore-n", type=int, default=100_000)
    ap.add_argument("--restore-runs", type=int, default=3, help="the median is reported")
    ap.add_argument("--f2b-burst-n", type=int, default=1000)
    ap.add_argument("--f2b-restore-n", default="1000,2000",
                    help="sizes, ascending; >= 2 sizes extrapolate with the slope between the last two")
    ap.add_argument("--skip-f2b", action="store_true")
    ap.add_argument("--md", help="write the Markdown section here")
    a = ap.parse_args()
    a.f2b_restore_n = [int(x) for x in a.f2b_restore_n.split(",")]
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    bin_ = os.path.abspath(a.bin)
    a.load_start = loadavg()
    ns = Netns()
    tmp = tempfile.mkdtemp(prefix="palbench-")
    atexit.register(shutil.rmtree, tmp, True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    pal = bench_palisade(ns, bin_, tmp, a)
    print("palisade:", pal, flush=True)
    if a.skip_f2b:
        return
    f2b = bench_fail2ban(ns, tmp, a)
    print("fail2ban:", f2b, flush=True)
    md = report(pal, f2b, a)
    print(md)
    if a.md:
        with open(a.md, "w") as fh:
            fh.write(md)


if __name__ == "__main__":
    main()
