#!/usr/bin/python3
"""fail2ban's own detection over a whole log: the peer of `palisade replay`.

Written for Palisade; it contains no fail2ban code. It imports the fail2ban modules that the
Debian package installs (`apt-get install fail2ban`) at run time and drives them as
fail2ban-server would:
  * the filter (`/etc/fail2ban/filter.d/NAME.conf`, with `--mode`) is read by fail2ban's
    FilterReader, and the commands the client would send to the server (prefregex,
    failregex, ignoreregex, maxlines, datepattern) configure fail2ban's Filter;
  * every line goes through Filter.processLine (dates parsed by fail2ban; addresses taken
    raw, no DNS); its failures (not `nofail`, not pending multi-line ones) go into fail2ban's
    FailManager (maxretry failures within findtime make a ban);
  * a banned address is out of the server's sight for bantime: its failures are counted
    but not added while the ban lasts.
Everything runs on the log's own time (the filter's "too old" check is off), so a replay
gives the bans the live server would have given. `--now` fixes the clock fail2ban uses to
infer a year missing from the dates (default: the real time).

  f2b_replay.py LOG FILTER [--mode MODE] [--maxretry 5] [--findtime 600] [--bantime 600]
                [--now 2026-11-22T00:00:00Z] [--basedir /etc/fail2ban]
                [--lines-out FILE] [--bans-out FILE]

Prints one JSON object: lines, seconds, lines_per_s, failures, distinct_fail_ips, bans,
distinct_banned_ips, maxrss_kb. --lines-out writes `LINE<TAB>ADDRESS` for every failure,
--bans-out `ADDRESS<TAB>UNIX_TIME` for every ban, in order.
"""

import argparse
import calendar
import json
import resource
import sys
import time

try:
    from fail2ban.client.filterreader import FilterReader
    from fail2ban.server.failmanager import FailManager, FailManagerEmpty
    from fail2ban.server.filter import Filter
    from fail2ban.server.mytime import MyTime
    from fail2ban.server.ticket import FailTicket
except ImportError as e:  # pragma: no cover - depends on the machine
    sys.exit("fail2ban's Python modules are missing (%s): apt-get install fail2ban, "
             "and run with the system's /usr/bin/python3" % e)


def configure(flt, commands):
    """Applies the server commands of a FilterReader to a Filter."""
    setters = {
        "prefregex": lambda v: setattr(flt, "prefRegex", v),
        "addfailregex": flt.addFailRegex,
        "addignoreregex": flt.addIgnoreRegex,
        "maxlines": flt.setMaxLines,
        "datepattern": flt.setDatePattern,
    }
    for cmd in commands:
        kind, _jail, option, value = cmd[0], cmd[1], cmd[2], cmd[3]
        setter = setters.get(option)
        if setter is None:
            continue  # journal matches and the like: not used on a file
        for v in (value if kind == "multi-set" else [value]):
            setter(v)


def load_filter(name, basedir, mode):
    reader = FilterReader(name, "replay", {"mode": mode} if mode else {}, basedir=basedir,
                          share_config={})
    if not reader.read():
        sys.exit("cannot read filter %r under %s" % (name, basedir))
    reader.getOptions({})
    flt = Filter(None)
    flt.checkFindTime = False  # the log's own time decides, however old it is
    flt.returnRawHost = True   # addresses as written, no DNS
    configure(flt, reader.convert())
    return flt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("log")
    ap.add_argument("filter", help="filter name under BASEDIR/filter.d, e.g. sshd")
    ap.add_argument("--basedir", default="/etc/fail2ban")
    ap.add_argument("--mode", default=None, help="the filter's mode (normal, aggressive, ...)")
    ap.add_argument("--maxretry", type=int, default=5)
    ap.add_argument("--findtime", type=int, default=600)
    ap.add_argument("--bantime", type=int, default=600)
    ap.add_argument("--now", default=None, help="RFC 3339 UTC time, e.g. 2026-11-22T00:00:00Z")
    ap.add_argument("--lines-out", default=None)
    ap.add_argument("--bans-out", default=None)
    a = ap.parse_args()
    if a.now:
        MyTime.setTime(calendar.timegm(time.strptime(a.now, "%Y-%m-%dT%H:%M:%SZ")))
    flt = load_filter(a.filter, a.basedir, a.mode)
    fails = FailManager()
    fails.setMaxRetry(a.maxretry)
    fails.setMaxTime(a.findtime)
    ban_end = {}
    failing, banned = set(), set()
    n_lines = n_fail = n_ban = 0
    swept = None
    lines_out = open(a.lines_out, "w") if a.lines_out else None
    bans_out = open(a.bans_out, "w") if a.bans_out else None
    t0 = time.perf_counter()
    with open(a.log, "rb") as fh:  # lines end at "\n" only, as Palisade reads them
        for raw in fh:
            n_lines += 1
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            for _idx, fid, when, data in flt.processLine(line):
                if fid is None or data.get("nofail") or data.get("mlfpending"):
                    continue
                n_fail += 1
                addr = str(fid)
                failing.add(addr)
                if lines_out:
                    lines_out.write("%d\t%s\n" % (n_lines, addr))
                if ban_end.get(addr, when - 1) > when:
                    continue  # banned: the server does not see it
                if fails.addFailure(FailTicket(fid, when, data=data)) >= a.maxretry:
                    while True:
                        try:
                            ticket = fails.toBan(fid)
                        except FailManagerEmpty:
                            break
                        who = str(ticket.getID())
                        n_ban += 1
                        banned.add(who)
                        ban_end[who] = when + a.bantime
                        if bans_out:
                            bans_out.write("%s\t%d\n" % (who, when))
                if swept is None or when - swept > 60:
                    fails.cleanup(when)
                    swept = when
    secs = time.perf_counter() - t0
    for f in (lines_out, bans_out):
        if f:
            f.close()
    print(json.dumps({
        "log": a.log, "filter": a.filter, "mode": a.mode or "default", "lines": n_lines,
        "seconds": round(secs, 3), "lines_per_s": round(n_lines / max(secs, 1e-9)),
        "failures": n_fail, "distinct_fail_ips": len(failing), "bans": n_ban,
        "distinct_banned_ips": len(banned), "maxretry": a.maxretry, "findtime": a.findtime,
        "bantime": a.bantime, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }))


if __name__ == "__main__":
    main()
