#!/usr/bin/env bash
# Palisade's counterpart of crowdsec.sh, measured the same way: real `palisade run` agents in
# network namespaces, a real fleet server, and the time from a ban on host 1 to the address in
# ANOTHER host's nftables set (Palisade's own table `inet palisade`, set `ban4`).
#
#   bench/fleet/palisade-netns.sh [--bin target/release/palisade] [--reps N] [--hosts K]
#                                 [--mode cli|log] [--timeout SECS] [--json FILE]
#
# Layout (created here, removed by the EXIT trap; the host's own ruleset is never touched):
#   netns pnb<pid>-srv : bridge 10.232.0.1/24, `palisade run` with [fleet] role = "server"
#   netns pnb<pid>-hI  : `palisade run` with [fleet] role = "agent" (name hI), enrolled by
#                        `palisade fleet join` with a token from `palisade fleet token add`
# Modes:
#   cli (default) `palisade decisions add X` on host 1 (a local ban, reported to the server,
#                 pushed to the others: share_bans)
#   log           6 sshd failures from X appended to host 1's auth.log (jail sshd, max_retry 6)
# Each repetition first sleeps a random 0..1 s (nothing periodic to be in phase with, but the
# same treatment as the CrowdSec side). t0 = just before the injection; t1 = first poll (every
# 10 ms, inside each other host's namespace) that sees X in its set. One JSON object on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
BIN=$here/../../target/release/palisade
REPS=20
HOSTS=4
MODE=cli
TIMEOUT=30
JSON=""
while [ $# -gt 0 ]; do
    case "$1" in
        --bin) BIN=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --hosts) HOSTS=$2; shift 2 ;;
        --mode) MODE=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --json) JSON=$2; shift 2 ;;
        -h|--help) sed -n '2,20s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "palisade-netns.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$MODE" in cli|log) ;; *) echo "palisade-netns.sh: --mode cli|log" >&2; exit 2 ;; esac
[[ "$REPS" =~ ^[0-9]+$ ]] && [ "$REPS" -ge 1 ] && [ "$REPS" -le 200 ] || { echo "palisade-netns.sh: --reps 1..200" >&2; exit 2; }
[[ "$HOSTS" =~ ^[0-9]+$ ]] && [ "$HOSTS" -ge 2 ] && [ "$HOSTS" -le 20 ] || { echo "palisade-netns.sh: --hosts 2..20" >&2; exit 2; }
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] && [ "$TIMEOUT" -ge 1 ] && [ "$TIMEOUT" -le 600 ] || { echo "palisade-netns.sh: --timeout 1..600" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "palisade-netns.sh: needs root" >&2; exit 1; }
[ -x "$BIN" ] || { echo "palisade-netns.sh: $BIN missing (cargo build --release -p palisade)" >&2; exit 1; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

log() { printf 'palisade-netns.sh: %s\n' "$*" >&2; }
W=$(mktemp -d /tmp/pnbench.XXXXXX)
chmod 755 "$W"
PIDS=()
NSS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null; done
    if [ -n "${KEEP_WORKDIR:-}" ]; then log "work dir kept: $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SRV_IP=10.232.0.1
SFX=$$
NS_SRV=pnb$SFX-srv
ip netns add "$NS_SRV"; NSS+=("$NS_SRV")
ip -n "$NS_SRV" link set lo up
ip -n "$NS_SRV" link add br0 type bridge
ip -n "$NS_SRV" addr add "$SRV_IP/24" dev br0
ip -n "$NS_SRV" link set br0 up
for i in $(seq 1 "$HOSTS"); do
    ns=pnb$SFX-h$i
    ip netns add "$ns"; NSS+=("$ns")
    ip -n "$ns" link set lo up
    ip link add "pnb${SFX}v$i" type veth peer name eth0 netns "$ns"
    ip link set "pnb${SFX}v$i" netns "$NS_SRV"
    ip -n "$NS_SRV" link set "pnb${SFX}v$i" master br0 up
    ip -n "$ns" addr add "10.232.0.$((10 + i))/24" dev eth0
    ip -n "$ns" link set eth0 up
done

mkdir -p "$W/srv/state"
cat > "$W/srv/server.toml" <<EOF
[general]
state_dir = "$W/srv/state"
socket = "$W/srv/palisade.sock"
log_level = "warn"

[store]
url = "sqlite:$W/srv/state/palisade.db"

[fleet]
role = "server"
listen = "$SRV_IP:7443"
share_bans = true
EOF
token=$("$BIN" fleet token add --config "$W/srv/server.toml" --uses "$HOSTS" --ttl 1h | tail -n 1)
ip netns exec "$NS_SRV" "$BIN" run --config "$W/srv/server.toml" >"$W/srv/out" 2>&1 &
PIDS+=($!)
ok=0
for _ in $(seq 1 300); do
    if ip netns exec "pnb$SFX-h1" bash -c "exec 3<>/dev/tcp/$SRV_IP/7443" 2>/dev/null; then ok=1; break; fi
    sleep 0.1
done
[ "$ok" = 1 ] || { log "server did not start"; cat "$W/srv/out" >&2; exit 1; }

for i in $(seq 1 "$HOSTS"); do
    d=$W/h$i
    mkdir -p "$d/state"
    : > "$d/auth.log"
    cat > "$d/agent.toml" <<EOF
[general]
state_dir = "$d/state"
socket = "$d/palisade.sock"
log_level = "warn"

[store]
url = "sqlite:$d/state/palisade.db"

[allowlist]
addresses = ["127.0.0.0/8", "::1"]

[fleet]
role = "agent"
server = "wss://$SRV_IP:7443"
name = "h$i"

[[jail]]
name = "sshd"
filter = "sshd"
files = ["$d/auth.log"]
max_retry = 6
find_time = "10m"
ban_time = "1h"
EOF
    ip netns exec "pnb$SFX-h$i" "$BIN" fleet join "wss://$SRV_IP:7443" --token "$token" \
        --config "$d/agent.toml" >"$d/join.out" 2>&1 || { log "h$i: join failed"; cat "$d/join.out" >&2; exit 1; }
    ip netns exec "pnb$SFX-h$i" "$BIN" run --config "$d/agent.toml" >"$d/out" 2>&1 &
    PIDS+=($!)
done
# Ready = the server lists every agent as connected.
ok=0
for _ in $(seq 1 600); do
    n=$("$BIN" fleet agents --config "$W/srv/server.toml" --json 2>/dev/null \
        | python3 -c 'import json,sys; print(sum(1 for a in json.load(sys.stdin) if a.get("connected")))' 2>/dev/null || echo 0)
    [ "$n" = "$HOSTS" ] && { ok=1; break; }
    sleep 0.1
done
[ "$ok" = 1 ] || { log "agents not all connected"; tail -n 20 "$W"/*/out >&2; exit 1; }

now_us() { local t=${EPOCHREALTIME/./}; printf '%s' "$t"; }
cat > "$W/poll.sh" <<'EOF'
ip=$1; deadline=$2
while :; do
    t=${EPOCHREALTIME/./}
    if nft list set inet palisade ban4 2>/dev/null | grep -qwF -- "$ip"; then echo "$t"; exit 0; fi
    [ "$t" -ge "$deadline" ] && { echo miss; exit 0; }
    sleep 0.01
done
EOF

SAMPLES=()
MISSES=0
for r in $(seq 1 "$REPS"); do
    sleep "$(awk -v s="$RANDOM$RANDOM" 'BEGIN{srand(s); printf "%.3f", rand()}')"
    target="198.51.$((100 + r / 250)).$((1 + r % 250))"
    t0=$(now_us)
    deadline=$((t0 + TIMEOUT * 1000000))
    pp=()
    for i in $(seq 2 "$HOSTS"); do
        ip netns exec "pnb$SFX-h$i" bash "$W/poll.sh" "$target" "$deadline" >"$W/poll.$r.$i" &
        pp+=($!)
    done
    t0=$(now_us)
    if [ "$MODE" = cli ]; then
        ip netns exec "pnb$SFX-h1" "$BIN" decisions add "$target" --duration 1h \
            --reason "fleetbench rep $r" --config "$W/h1/agent.toml" >/dev/null
    else
        ts=$(date '+%b %e %H:%M:%S')
        for k in 1 2 3 4 5 6; do
            printf '%s h1 sshd[%d]: Failed password for invalid user bench%d from %s port %d ssh2\n' \
                "$ts" "$((4000 + k))" "$k" "$target" "$((40000 + k))" >> "$W/h1/auth.log"
        done
    fi
    for p in "${pp[@]}"; do wait "$p" || true; done
    line=""
    for i in $(seq 2 "$HOSTS"); do
        v=$(cat "$W/poll.$r.$i")
        if [ "$v" = miss ]; then MISSES=$((MISSES + 1)); line+="miss "
        else d=$((v - t0)); [ "$d" -lt 0 ] && d=0; SAMPLES+=("$d"); line+="$((d / 1000))ms "; fi
    done
    log "rep $r/$REPS ($target): $line"
done

sorted=$(printf '%s\n' "${SAMPLES[@]}" | sort -n)
n=${#SAMPLES[@]}
pct() {
    local q=$1 k
    [ "$n" -gt 0 ] || { echo null; return; }
    k=$(( (q * n + 99) / 100 )); [ "$k" -lt 1 ] && k=1
    printf '%s\n' "$sorted" | sed -n "${k}p" | awk '{printf "%.1f", $1/1000}'
}
samples_ms=$(printf '%s\n' "$sorted" | awk 'NF{printf "%s%.1f", (NR>1?",":""), $1/1000}')
out=$(printf '{"peer":"palisade fleet (real agents, nftables)","mode":"%s","receiving_hosts":%d,"reps":%d,"samples":%d,"misses":%d,"p50_ms":%s,"p99_ms":%s,"max_ms":%s,"samples_ms":[%s]}' \
    "$MODE" "$((HOSTS - 1))" "$REPS" "$n" "$MISSES" "$(pct 50)" "$(pct 99)" "$(pct 100)" "$samples_ms")
printf '%s\n' "$out"
[ -z "$JSON" ] || printf '%s\n' "$out" > "$JSON"
