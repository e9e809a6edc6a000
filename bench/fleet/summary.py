#!/usr/bin/env python3
"""Summarises bench/fleet/run.sh's JSON results (one file per step) as Markdown tables with
the ratios against CrowdSec and the issue's targets. Usage: summary.py OUT_DIR"""
import json
import os
import sys


def load(d, name):
    p = os.path.join(d, name + ".json")
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def fmt(x, nd=1):
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "bench/fleet/out"
    out = []
    for f in ("load-start.txt", "load-end.txt"):
        p = os.path.join(d, f)
        if os.path.exists(p):
            out.append(f"- {f[:-4]}: `{open(p).read().strip()}`")
    cs = {m: load(d, f"crowdsec-{m}") for m in ("cscli", "log")}
    prop = load(d, "propagate-sqlite")
    out.append("")
    out.append("## Ban propagation (one host's ban -> other hosts)")
    out.append("")
    out.append("| system | path | receivers | samples | missed | p50 ms | p99 ms | max ms |")
    out.append("|---|---|---|---|---|---|---|---|")
    if prop:
        out.append(
            f"| Palisade fleet | agent local_ban -> server -> `bans` at every other agent "
            f"(simulated agents) | {fmt(prop.get('receivers_per_ban'))} | {fmt(prop.get('samples'))} "
            f"| {fmt(prop.get('missing'))} | {fmt(prop.get('p50_ms'))} | {fmt(prop.get('p99_ms'))} "
            f"| {fmt(prop.get('max_ms'))} |"
        )
    for m, v in cs.items():
        if v:
            path = (
                "`cscli decisions add` as machine m1 -> LAPI -> bouncer poll -> nftables set"
                if m == "cscli"
                else "6 sshd failures in host 1's log -> agent -> LAPI -> bouncer -> nftables set"
            )
            out.append(
                f"| CrowdSec 1.4.6 (update_frequency {v['update_frequency']}) | {path} "
                f"| {v['bouncer_hosts']} | {v['samples']} | {v['misses']} | {fmt(v['p50_ms'])} "
                f"| {fmt(v['p99_ms'])} | {fmt(v['max_ms'])} |"
            )
    pn = {m: load(d, f"palisade-netns-{m}") for m in ("cli", "log")}
    for m, v in pn.items():
        if v:
            path = (
                "`palisade decisions add` on agent h1 -> server -> other agents -> nftables set"
                if m == "cli"
                else "6 sshd failures in h1's log -> jail -> server -> other agents -> nftables set"
            )
            out.append(
                f"| Palisade fleet (real agents in netns) | {path} | {v['receiving_hosts']} "
                f"| {v['samples']} | {v['misses']} | {fmt(v['p50_ms'])} | {fmt(v['p99_ms'])} "
                f"| {fmt(v['max_ms'])} |"
            )
    for pm, cm in (("cli", "cscli"), ("log", "log")):
        p, c = pn.get(pm), cs.get(cm)
        if p and c and p.get("p50_ms") and p.get("p99_ms"):
            out.append("")
            out.append(
                f"Same method ({pm} vs {cm}): CrowdSec / Palisade p50 {c['p50_ms'] / p['p50_ms']:,.1f}x, "
                f"p99 {c['p99_ms'] / p['p99_ms']:,.1f}x."
            )
    if prop and prop.get("p99_ms"):
        for m, v in cs.items():
            if v and v.get("p99_ms"):
                out.append("")
                out.append(
                    f"Ratio CrowdSec ({m}) / Palisade: p50 {v['p50_ms'] / prop['p50_ms']:,.0f}x, "
                    f"p99 {v['p99_ms'] / prop['p99_ms']:,.0f}x (target >= 10x; Palisade p99 target <= 1,000 ms)."
                )
    out.append("")
    out.append("## Ingest (events/s one server stores from agents)")
    out.append("")
    out.append("| store | agents | events | seconds | events/s | server CPU s | events per server CPU s | exactly once | load |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for name, label in (("ingest-sqlite", "SQLite"), ("ingest-pg", "PostgreSQL")):
        v = load(d, name)
        if v:
            out.append(
                f"| {label} | {v['agents']} | {fmt(v['events_total'])} | {fmt(v['secs'])} "
                f"| {fmt(v['events_per_sec'], 0)} | {fmt(v['server_cpu_secs'])} "
                f"| {fmt(v['events_per_server_cpu_sec'], 0)} | {v['exactly_once']} "
                f"| {v.get('loadavg_start')} -> {v.get('loadavg_end')} |"
            )
    out.append("")
    out.append("Targets: >= 20,000 events/s (SQLite), >= 50,000/s (PostgreSQL) on 2 vCPU.")
    out.append("")
    out.append("## Idle connections")
    out.append("")
    out.append("| agents | server RSS 0 (KiB) | server RSS N (KiB) | KiB per connection | server CPU % idle | connect s | still connected |")
    out.append("|---|---|---|---|---|---|---|")
    for name in ("idle-sqlite", "idle-big-sqlite"):
        v = load(d, name)
        if v:
            out.append(
                f"| {fmt(v['agents'])} | {fmt(v['server_rss_kib_0'])} | {fmt(v['server_rss_kib_n'])} "
                f"| {fmt(v['kib_per_idle_connection'])} | {fmt(v['server_cpu_percent_idle'], 2)} "
                f"| {fmt(v['connect_secs'])} | {fmt(v['still_connected'])} |"
            )
    out.append("")
    out.append("Targets: <= 32 KiB per idle connection; 10,000 idle agents < 5 % CPU.")
    v = load(d, "drain-sqlite")
    if v:
        out.append("")
        out.append("## Drain after an outage")
        out.append("")
        out.append("| agents | rate/agent | outage s | backlog events | all reconnected s | drain s | exactly once |")
        out.append("|---|---|---|---|---|---|---|")
        out.append(
            f"| {v['agents']} | {fmt(v['rate_per_agent'])} | {v['outage_secs']} | {fmt(v['backlog_events'])} "
            f"| {fmt(v['all_reconnected_secs'])} | {fmt(v['drain_secs'])} | {v['exactly_once']} |"
        )
    print("\n".join(out))


if __name__ == "__main__":
    main()
