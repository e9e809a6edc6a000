#!/usr/bin/env bash
# Agent memory overhead (issue 16 target: <= 15 MB RSS over a plain single-host daemon).
#
#   bench/fleet/agent-rss.sh [--bin target/release/palisade] [--secs 60] [--rate 200] [--json F]
#
# Two `palisade run` processes side by side, same configuration (one sshd jail on its own log
# file, SQLite store, log responder, no root needed) except that one is a fleet agent of a
# local fleet server (SQLite, loopback). The same sshd failure lines (a few hundred
# addresses, so bans happen and are shared) are appended to both logs at --rate lines/s for
# --secs; VmRSS, VmHWM and CPU seconds of both are read every 5 s. Overhead = agent - plain.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BIN=$root/target/release/palisade
SECS=60
RATE=200
JSON=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN=$2; shift 2 ;;
        --secs) SECS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --json) JSON=$2; shift 2 ;;
        *) echo "agent-rss.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ "$SECS" =~ ^[0-9]+$ ]] && [ "$SECS" -le 600 ] || { echo "--secs 0..600" >&2; exit 2; }
[[ "$RATE" =~ ^[0-9]+$ ]] && [ "$RATE" -le 5000 ] || { echo "--rate 0..5000" >&2; exit 2; }
W=$(mktemp -d /tmp/agentrss.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
PORT=$((20000 + RANDOM % 20000))

mkdir -p "$W/server/state" "$W/plain/state" "$W/agent/state"
cat > "$W/server/palisade.toml" <<C
[general]
state_dir = "$W/server/state"
socket = "$W/server/palisade.sock"
log_level = "warn"
[store]
url = "sqlite:$W/server/palisade.db"
[fleet]
role = "server"
listen = "127.0.0.1:$PORT"
C
host_cfg() { # DIR EXTRA
    cat > "$1/palisade.toml" <<C
[general]
state_dir = "$1/state"
socket = "$1/palisade.sock"
log_level = "warn"
timezone = "UTC"
[store]
url = "sqlite:$1/palisade.db"
[defaults]
max_retry = 5
find_time = "10m"
ban_time = "1h"
responders = ["log"]
$2
[[jail]]
name = "sshd"
filter = "sshd"
files = ["$1/auth.log"]
C
    : > "$1/auth.log"
}
host_cfg "$W/plain" ""
host_cfg "$W/agent" "[fleet]
role = \"agent\"
server = \"wss://127.0.0.1:$PORT\"
name = \"rss-agent\""

"$BIN" run --config "$W/server/palisade.toml" 2>"$W/server.err" & PIDS+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
TOKEN=$("$BIN" fleet token add --config "$W/server/palisade.toml" 2>/dev/null | tail -n1)
"$BIN" fleet join "wss://127.0.0.1:$PORT" --token "$TOKEN" --config "$W/agent/palisade.toml" >/dev/null
"$BIN" run --config "$W/plain/palisade.toml" 2>"$W/plain.err" & PLAIN=$!; PIDS+=($PLAIN)
"$BIN" run --config "$W/agent/palisade.toml" 2>"$W/agent.err" & AGENT=$!; PIDS+=($AGENT)
sleep 3

kib() { awk -v k="$2" '$1==k {print $2}' "/proc/$1/status"; }
cpu() { awk '{print ($14+$15)/100}' "/proc/$1/stat"; }
samples=()
t0=$(date +%s)
n=0
while [ $(( $(date +%s) - t0 )) -lt "$SECS" ]; do
    # One second of lines, the same to both logs.
    batch=""
    for _ in $(seq "$RATE"); do
        n=$((n + 1))
        ip="203.0.$(( (n / 250) % 4 )).$(( 1 + n % 250 ))"
        batch+="$(date -u '+%b %e %H:%M:%S') host sshd[$((1000 + n % 9000))]: Failed password for root from $ip port $((1024 + n % 60000)) ssh2"$'\n'
    done
    printf '%s' "$batch" >> "$W/plain/auth.log"
    printf '%s' "$batch" >> "$W/agent/auth.log"
    if [ $(( ( $(date +%s) - t0 ) % 5 )) -eq 0 ]; then
        samples+=("$(kib $PLAIN VmRSS:) $(kib $AGENT VmRSS:)")
    fi
    sleep 1
done
sleep 3
P_RSS=$(kib $PLAIN VmRSS:); A_RSS=$(kib $AGENT VmRSS:)
P_HWM=$(kib $PLAIN VmHWM:); A_HWM=$(kib $AGENT VmHWM:)
P_CPU=$(cpu $PLAIN); A_CPU=$(cpu $AGENT)
EVENTS=$("$BIN" fleet agents --json --config "$W/server/palisade.toml" | python3 -c 'import json,sys; print(sum(a["events"] for a in json.load(sys.stdin)))')
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
out=$(python3 - "$P_RSS" "$A_RSS" "$P_HWM" "$A_HWM" "$P_CPU" "$A_CPU" "$n" "$EVENTS" "$LOAD" "$SECS" "$RATE" "${samples[@]}" <<'PY'
import json, sys
a = sys.argv[1:]
p_rss, a_rss, p_hwm, a_hwm = map(int, a[0:4])
p_cpu, a_cpu = float(a[4]), float(a[5])
lines, events, load, secs, rate = int(a[6]), int(a[7]), a[8], int(a[9]), int(a[10])
samples = [list(map(int, s.split())) for s in a[11:] if len(s.split()) == 2]
print(json.dumps({
    "lines_per_host": lines, "secs": secs, "rate": rate,
    "server_events_from_agent": events,
    "plain_rss_kib": p_rss, "agent_rss_kib": a_rss,
    "overhead_rss_kib": a_rss - p_rss,
    "plain_hwm_kib": p_hwm, "agent_hwm_kib": a_hwm,
    "overhead_hwm_kib": a_hwm - p_hwm,
    "plain_cpu_secs": p_cpu, "agent_cpu_secs": a_cpu,
    "samples_plain_agent_kib": samples,
    "loadavg_end": load,
}))
PY
)
echo "$out"
[ -n "$JSON" ] && printf '%s\n' "$out" > "$JSON"
