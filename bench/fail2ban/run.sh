#!/usr/bin/env bash
# Palisade with fail2ban's own sshd filter vs fail2ban itself, on the generated 1M-line sshd
# log: `palisade check --filter-file`, `palisade replay` (maxretry 5, findtime 10m, bantime
# 10m, per address) and fail2ban's server path (bench/fail2ban/f2b_replay.py, which drives the
# Debian package's fail2ban modules); fail2ban-regex too with FAIL2BAN_REGEX=1. The default log
# is the project's generated one (bench/gen/gen_logs.py, 1M lines). Prints lines/s, peak
# RSS, failures/bans/banned addresses, ratio.
# `check` and fail2ban run in turns, ROUNDS times (default 3); the ratio is the rounds' median.
#
#   [ROUNDS=N] bash bench/fail2ban/run.sh [LOG]
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
peer="$root/bench/fail2ban/f2b_replay.py"
export TZ=UTC
target="${CARGO_TARGET_DIR:-$root/target}"
log="${1:-$target/bench-data/own/sshd_auth.log}"
if [ ! -s "$log" ] && [ $# -eq 0 ]; then
  /usr/bin/python3 "$root/bench/gen/gen_logs.py" --out-dir "$(dirname "$log")" --lines 1000000 >/dev/null
fi
cargo build --release -q -p palisade
bin="$target/release/palisade"
filter=/etc/fail2ban/filter.d/sshd.conf
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
lines=$(wc -l <"$log")

rss() { awk -F': ' '/Maximum resident/ {print $2}' "$1"; }
secs() { awk -F': ' '/Elapsed \(wall/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$1"; }

# CPU seconds (user + sys): what a loaded machine disturbs least. Compare these; the wall
# times are given for the record, with the load they were taken at.
cpu() { awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} END {print u+s}' "$1"; }

echo "log: $log ($lines lines)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs); a ratio taken at a load above ~1 per CPU is not a result"

rounds="${ROUNDS:-3}"
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# The machine's speed drifts over a minute, so the two tools are run in turns, each round a
# `check` then a fail2ban run, and the median of the rounds' ratios is the result.
: >"$work/wall.ratios"
: >"$work/rate.ratios"
: >"$work/f2b.secs"
: >"$work/cpu.ratios"
for r in $(seq "$rounds"); do
  /usr/bin/time -v "$bin" check "$log" --filter-file "$filter" --now "$now" \
    >"$work/check.out" 2>"$work/check.time"
  chk_secs=$(secs "$work/check.time")
  chk_matched=$(grep -o '[0-9]* matched' "$work/check.out" | cut -d' ' -f1)
  chk_rate=$(sed -n 's/^Time: .*(\([0-9]*\) lines\/s)$/\1/p' "$work/check.out")
  /usr/bin/time -v /usr/bin/python3 "$peer" "$log" sshd --now "$now" \
    --maxretry 5 --findtime 600 --bantime 600 >"$work/f2b.json" 2>"$work/f2b.time"
  f2b_secs=$(secs "$work/f2b.time")
  f2b_rate=$(sed -n 's/.*"lines_per_s": \([0-9]*\).*/\1/p' "$work/f2b.json")
  echo "$f2b_secs" >>"$work/f2b.secs"
  echo "$f2b_secs / $chk_secs" | bc -l >>"$work/wall.ratios"
  echo "$chk_rate / $f2b_rate" | bc -l >>"$work/rate.ratios"
  chk_cpu=$(cpu "$work/check.time")
  f2b_cpu=$(cpu "$work/f2b.time")
  echo "$f2b_cpu / $chk_cpu" | bc -l >>"$work/cpu.ratios"
  printf 'round %s: palisade check --filter-file: %s matched, %.2f s, %.0f lines/s (processing %s lines/s), peak RSS %s KB\n' \
    "$r" "$chk_matched" "$chk_secs" "$(echo "$lines / $chk_secs" | bc -l)" "$chk_rate" "$(rss "$work/check.time")"
  printf '         fail2ban (f2b_replay.py): %.2f s, processing %s lines/s, peak RSS %s KB; ratio %.1fx wall, %.1fx processing\n' \
    "$f2b_secs" "$f2b_rate" "$(rss "$work/f2b.time")" \
    "$(tail -1 "$work/wall.ratios")" "$(tail -1 "$work/rate.ratios")"
  printf '         CPU (user+sys): check %.2f s, fail2ban %.2f s: %.1fx; load now %s\n' \
    "$chk_cpu" "$f2b_cpu" "$(tail -1 "$work/cpu.ratios")" "$(cut -d' ' -f1-3 /proc/loadavg)"
done
printf 'median CPU ratio %.1fx (wall %.1fx); load after: %s\n' "$(median <"$work/cpu.ratios")" \
  "$(median <"$work/wall.ratios")" "$(cut -d' ' -f1-3 /proc/loadavg)"
echo "fail2ban (f2b_replay.py), last round: $(cat "$work/f2b.json")"

cat >"$work/replay.toml" <<TOML
[general]
state_dir = "$work"
socket = "$work/palisade.sock"
timezone = "UTC"
[store]
url = "sqlite:$work/palisade.db"
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
name = "sshd"
filter_file = "$filter"
stdin = true
TOML
/usr/bin/time -v "$bin" replay "$log" --config "$work/replay.toml" --json --now "$now" \
  >"$work/replay.json" 2>"$work/replay.err"
rp_summary=$(grep '^Lines:' "$work/replay.err")
rp_secs=$(secs "$work/replay.err")
printf 'palisade replay:  %s\n                  %.2f s wall, %.0f lines/s, peak RSS %s KB\n' \
  "$rp_summary" "$rp_secs" "$(echo "$lines / $rp_secs" | bc -l)" "$(rss "$work/replay.err")"

printf 'ratio (fail2ban wall / palisade check wall), median of %s rounds: %.1fx (rounds: %s)\n' \
  "$rounds" "$(median <"$work/wall.ratios")" "$(xargs printf '%.1f ' <"$work/wall.ratios")"
printf 'processing rate ratio, median of %s rounds: %.1fx (rounds: %s)\n' \
  "$rounds" "$(median <"$work/rate.ratios")" "$(xargs printf '%.1f ' <"$work/rate.ratios")"
printf 'replay: %.1fx (median fail2ban wall / replay wall)\n' \
  "$(echo "$(median <"$work/f2b.secs") / $rp_secs" | bc -l)"

if [ "${FAIL2BAN_REGEX:-0}" = 1 ] && command -v fail2ban-regex >/dev/null; then
  /usr/bin/time -v fail2ban-regex "$log" "$filter" >"$work/f2br.out" 2>"$work/f2br.time" || true
  printf 'fail2ban-regex: %s s, peak RSS %s KB, %s\n' "$(secs "$work/f2br.time")" \
    "$(rss "$work/f2br.time")" "$(grep -m1 'Lines:' "$work/f2br.out" || true)"
fi
