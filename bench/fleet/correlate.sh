#!/usr/bin/env bash
# Throughput of the fleet correlator (palisade_detect::correlate), with two single-host
# detectors over the same stream as the yardstick, in the same run. Prints one JSON line per
# run and a Markdown summary (median of the runs) to paste into bench/fleet/CORRELATE.md.
#
#   bench/fleet/correlate.sh [RUNS]     # default 3 runs per scenario
#
# Needs: /usr/bin/time (Debian package `time`), cargo. The stream is generated in memory by
# the example (deterministic, seeded): nothing is read from disk.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
runs="${1:-3}"
out="$(mktemp -d /tmp/palisade-correlate-bench.XXXXXX)"
trap 'rm -rf "$out"' EXIT

(cd "$root" && cargo build --release -p palisade-detect --example correlate_bench >&2)
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/correlate_bench"

echo "machine: $(nproc) CPUs, $(awk '{print "load average " $1 ", " $2 ", " $3}' /proc/loadavg) at start, $(date -u +%Y-%m-%dT%H:%MZ)"
for scenario in "50000" "200000"; do
  for i in $(seq 1 "$runs"); do
    /usr/bin/time -f '%e %U %S %M' -o "$out/time" "$bin" --addresses "$scenario" --seed "$i" > "$out/json"
    read -r wall user sys rss < "$out/time"
    json="$(cat "$out/json")"
    echo "${json%\}},\"process_wall_s\":$wall,\"process_cpu_s\":$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }'),\"process_peak_rss_kb\":$rss}" | tee -a "$out/all.jsonl"
  done
done
echo "machine load at end: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$out/all.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print()
print("| background addresses | events | correlator events/s (wall) | correlator events per CPU-second | yardstick: 2 local Detectors, events per CPU-second | ratio | correlator state (RSS growth) | keys evicted | distributed attackers detected | single-host attackers detected (must be 0) | other detections (must be 0) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for a in sorted({r["addresses"] for r in rows}):
    rs = [r for r in rows if r["addresses"] == a]
    med = lambda k: statistics.median(r[k] for r in rs)
    c, b = med("events_per_cpu_s"), med("baseline_events_per_cpu_s")
    print(f"| {a:,} | {rs[0]['events']:,} | {med('events_per_s'):,.0f} | {c:,.0f} | {b:,.0f} | {b / c:.1f}× slower | {med('state_rss_kb') / 1024:.0f} MB | {med('keys_evicted'):,.0f} | "
          f"{min(r['distributed_detected'] for r in rs)}/200 | {max(r['single_host_detected'] for r in rs)} | {max(r['other_detected'] for r in rs)} |")
PY
