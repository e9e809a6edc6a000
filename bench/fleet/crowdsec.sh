#!/usr/bin/env bash
# CrowdSec peer for the fleet benchmark (issue 16 item 11): time from an alert/decision on one
# machine to the address in ANOTHER host's nftables set, with Debian 12's CrowdSec 1.4.6 LAPI,
# several registered machines and crowdsec-firewall-bouncer 0.0.25 (nftables mode).
#
#   bench/fleet/crowdsec.sh [--reps N] [--hosts K] [--mode cscli|log] [--update-frequency 10s]
#                           [--timeout SECS] [--json FILE]
#
# Layout (all created here, removed by the EXIT trap; the host's own ruleset is never touched):
#   netns csb-lapi  : bridge 10.231.0.1/24, `crowdsec -no-cs` (the LAPI, SQLite + WAL, no CAPI)
#   netns csb-h1    : machine m1, where the alert is raised
#   netns csb-h2..K : machines m2..mK, each with a crowdsec-firewall-bouncer (its own API key,
#                     nftables table `crowdsec`, set `crowdsec-blacklists`)
# Modes:
#   cscli (default) `cscli decisions add --ip X` run in csb-h1 with m1's credentials (cscli logs
#                   in to the LAPI as machine m1 and posts an alert carrying the decision)
#   log             a crowdsec agent (`crowdsec -no-api`) in csb-h1 tails an auth.log; 6 sshd
#                   failures from X are appended (ssh-bf overflows at 6); the agent pushes the alert
# Each repetition first sleeps a random 0..update_frequency so its phase against the bouncers'
# poll ticks is uniform (otherwise every repetition would start right after a tick).
# Clock: t0 = just before the injection starts; t1 = first poll (every 10 ms, inside each bouncer
# host's namespace) that sees X in its set. One sample per (repetition, bouncer host).
# Prints one JSON object on stdout (and to --json FILE): samples in ms, p50/p99/max, misses.
# Needs root, iproute2, nftables and bench/fleet/install.sh (crowdsec packages).
set -euo pipefail

REPS=20
HOSTS=4
MODE=cscli
FREQ=10s
TIMEOUT=40
JSON=""
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) REPS=$2; shift 2 ;;
        --hosts) HOSTS=$2; shift 2 ;;
        --mode) MODE=$2; shift 2 ;;
        --update-frequency) FREQ=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --json) JSON=$2; shift 2 ;;
        -h|--help) sed -n '2,22s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "crowdsec.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ "$FREQ" =~ ^([0-9]+)s$ ]] || { echo "crowdsec.sh: --update-frequency Ns (whole seconds)" >&2; exit 2; }
FREQ_S=${BASH_REMATCH[1]}
case "$MODE" in cscli|log) ;; *) echo "crowdsec.sh: --mode cscli|log" >&2; exit 2 ;; esac
[[ "$REPS" =~ ^[0-9]+$ ]] && [ "$REPS" -ge 1 ] && [ "$REPS" -le 200 ] || { echo "crowdsec.sh: --reps 1..200" >&2; exit 2; }
[[ "$HOSTS" =~ ^[0-9]+$ ]] && [ "$HOSTS" -ge 2 ] && [ "$HOSTS" -le 20 ] || { echo "crowdsec.sh: --hosts 2..20" >&2; exit 2; }
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] && [ "$TIMEOUT" -ge 1 ] && [ "$TIMEOUT" -le 600 ] || { echo "crowdsec.sh: --timeout 1..600" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "crowdsec.sh: needs root (network namespaces, nftables)" >&2; exit 1; }
for b in crowdsec cscli crowdsec-firewall-bouncer nft ip; do
    command -v "$b" >/dev/null || { echo "crowdsec.sh: $b missing (run bench/fleet/install.sh)" >&2; exit 1; }
done

log() { printf 'crowdsec.sh: %s\n' "$*" >&2; }
W=$(mktemp -d /tmp/csbench.XXXXXX)
PIDS=()
NSS=()
cleanup() {
    set +e
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    for n in "${NSS[@]}"; do ip netns del "$n" 2>/dev/null; done
    if [ -n "${KEEP_WORKDIR:-}" ]; then log "work dir kept: $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LAPI_IP=10.231.0.1
LAPI_URL="http://$LAPI_IP:8080/"
# Namespaces: unique suffix so two runs cannot collide.
SFX=$$
NS_LAPI=csb$SFX-lapi
ip netns add "$NS_LAPI"; NSS+=("$NS_LAPI")
ip -n "$NS_LAPI" link set lo up
ip -n "$NS_LAPI" link add br0 type bridge
ip -n "$NS_LAPI" addr add "$LAPI_IP/24" dev br0
ip -n "$NS_LAPI" link set br0 up
for i in $(seq 1 "$HOSTS"); do
    ns=csb$SFX-h$i
    ip netns add "$ns"; NSS+=("$ns")
    ip -n "$ns" link set lo up
    ip link add "csb${SFX}v$i" type veth peer name eth0 netns "$ns"
    ip link set "csb${SFX}v$i" netns "$NS_LAPI"
    ip -n "$NS_LAPI" link set "csb${SFX}v$i" master br0 up
    ip -n "$ns" addr add "10.231.0.$((10 + i))/24" dev eth0
    ip -n "$ns" link set eth0 up
done

mkdir -p "$W/etc/notifications" "$W/data" "$W/log"
cat > "$W/lapi.yaml" <<EOF
common:
  daemonize: false
  log_media: file
  log_level: info
  log_dir: $W/log/
  working_dir: .
config_paths:
  config_dir: $W/etc/
  data_dir: $W/data/
  simulation_path: /etc/crowdsec/simulation.yaml
  hub_dir: /var/lib/crowdsec/hub/
  index_path: /var/lib/crowdsec/hub/.index.json
  notification_dir: $W/etc/notifications/
  plugin_dir: /usr/lib/crowdsec/plugins/
crowdsec_service:
  acquisition_path: $W/etc/acquis.yaml
  parser_routines: 1
cscli:
  output: human
  color: "no"
db_config:
  log_level: info
  type: sqlite
  db_path: $W/data/crowdsec.db
  use_wal: true
  flush:
    max_items: 5000
    max_age: 7d
api:
  client:
    insecure_skip_verify: false
    credentials_path: $W/m1.yaml
  server:
    log_level: info
    listen_uri: $LAPI_IP:8080
    profiles_path: /etc/crowdsec/profiles.yaml
    trusted_ips:
      - 127.0.0.1
      - ::1
prometheus:
  enabled: false
EOF
: > "$W/etc/acquis.yaml"

# Machines m1..mK (one per host) and bouncers b2..bK: written to the DB before the LAPI starts.
for i in $(seq 1 "$HOSTS"); do
    cscli -c "$W/lapi.yaml" --error machines add "m$i" --password "pw$RANDOM$RANDOM$RANDOM$i" \
        -f "$W/m$i.yaml" --url "$LAPI_URL" >/dev/null
done
for i in $(seq 2 "$HOSTS"); do
    key=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
    cscli -c "$W/lapi.yaml" --error bouncers add "b$i" -k "$key" >/dev/null
    mkdir -p "$W/b$i"
    cat > "$W/b$i/bouncer.yaml" <<EOF
mode: nftables
pid_dir: $W/b$i/
update_frequency: $FREQ
daemonize: false
log_mode: file
log_dir: $W/b$i/
log_level: info
api_url: $LAPI_URL
api_key: $key
insecure_skip_verify: false
disable_ipv6: false
deny_action: DROP
deny_log: false
supported_decisions_types:
  - ban
nftables:
  ipv4:
    enabled: true
    set-only: false
    table: crowdsec
    chain: crowdsec-chain
  ipv6:
    enabled: true
    set-only: false
    table: crowdsec6
    chain: crowdsec6-chain
prometheus:
  enabled: false
  listen_addr: 127.0.0.1
  listen_port: 60601
EOF
done

ip netns exec "$NS_LAPI" crowdsec -c "$W/lapi.yaml" -no-cs -no-capi >"$W/log/lapi.out" 2>&1 &
PIDS+=($!)
# Wait for the LAPI to answer (any HTTP answer on the bouncer endpoint).
ok=0
for _ in $(seq 1 300); do
    if ip netns exec "csb$SFX-h1" bash -c "exec 3<>/dev/tcp/$LAPI_IP/8080" 2>/dev/null; then ok=1; break; fi
    sleep 0.1
done
[ "$ok" = 1 ] || { log "LAPI did not start"; cat "$W/log/"* >&2; exit 1; }

# Each bouncer starts after its own random delay (0..update_frequency): real hosts do not
# poll in phase, so the samples of one repetition are not copies of each other.
for i in $(seq 2 "$HOSTS"); do
    delay=$(awk -v s="$RANDOM$RANDOM" -v f="$FREQ_S" 'BEGIN{srand(s); printf "%.3f", rand()*f}')
    ip netns exec "csb$SFX-h$i" bash -c 'sleep "$1"; exec crowdsec-firewall-bouncer -c "$2"' \
        bouncer "$delay" "$W/b$i/bouncer.yaml" >"$W/b$i/out" 2>&1 &
    PIDS+=($!)
done
# Bouncers ready = their set exists.
for i in $(seq 2 "$HOSTS"); do
    ok=0
    for _ in $(seq 1 $((300 + FREQ_S * 10))); do
        if ip netns exec "csb$SFX-h$i" nft list set ip crowdsec crowdsec-blacklists >/dev/null 2>&1; then ok=1; break; fi
        sleep 0.1
    done
    [ "$ok" = 1 ] || { log "bouncer b$i did not create its set"; cat "$W/b$i/"* >&2; exit 1; }
done

# Client config for host 1 (m1's credentials; the same file works for cscli and the agent).
cp "$W/lapi.yaml" "$W/h1.yaml"

if [ "$MODE" = log ]; then
    # Agent on host 1: sshd parsers + ssh-bf only, from Debian's offline hub.
    A=$W/agent
    H=/usr/share/crowdsec/hub
    mkdir -p "$A/etc/parsers/s00-raw" "$A/etc/parsers/s01-parse" "$A/etc/parsers/s02-enrich" \
        "$A/etc/scenarios" "$A/etc/notifications" "$A/data" "$A/log"
    ln -s "$H/parsers/s00-raw/crowdsecurity/syslog-logs.yaml" "$A/etc/parsers/s00-raw/"
    ln -s "$H/parsers/s01-parse/crowdsecurity/sshd-logs.yaml" "$A/etc/parsers/s01-parse/"
    ln -s "$H/parsers/s02-enrich/crowdsecurity/dateparse-enrich.yaml" "$A/etc/parsers/s02-enrich/"
    ln -s "$H/scenarios/crowdsecurity/ssh-bf.yaml" "$A/etc/scenarios/"
    ln -s /etc/crowdsec/patterns "$A/etc/patterns"
    cp /usr/share/crowdsec/data/* "$A/data/" 2>/dev/null || true
    : > "$A/auth.log"
    cat > "$A/acquis.yaml" <<EOF
filenames:
  - $A/auth.log
labels:
  type: syslog
EOF
    sed -e "s#config_dir: $W/etc/#config_dir: $A/etc/#" -e "s#data_dir: $W/data/#data_dir: $A/data/#" \
        -e "s#acquisition_path: $W/etc/acquis.yaml#acquisition_path: $A/acquis.yaml#" \
        -e "s#log_dir: $W/log/#log_dir: $A/log/#" -e "s#db_path: $W/data/crowdsec.db#db_path: $A/data/unused.db#" \
        "$W/lapi.yaml" > "$A/agent.yaml"
    ip netns exec "csb$SFX-h1" crowdsec -c "$A/agent.yaml" -no-api >"$A/log/agent.out" 2>&1 &
    PIDS+=($!)
    sleep 3
    kill -0 "${PIDS[-1]}" 2>/dev/null || { log "agent died"; cat "$A/log/"* >&2; exit 1; }
fi

now_us() { local t=${EPOCHREALTIME/./}; printf '%s' "$t"; }

# Poller: runs inside a bouncer host's namespace; prints the epoch-µs of the first poll that
# sees the address, or "miss" after the timeout.
cat > "$W/poll.sh" <<'EOF'
ip=$1; deadline=$2
while :; do
    t=${EPOCHREALTIME/./}
    if nft list set ip crowdsec crowdsec-blacklists 2>/dev/null | grep -qwF -- "$ip"; then echo "$t"; exit 0; fi
    [ "$t" -ge "$deadline" ] && { echo miss; exit 0; }
    sleep 0.01
done
EOF

SAMPLES=()
MISSES=0
for r in $(seq 1 "$REPS"); do
    # Random phase against the bouncers' poll ticks: without it every repetition would start
    # right after a tick (the previous one just ended on a tick) and measure the worst case.
    sleep "$(awk -v s="$RANDOM$RANDOM" -v f="$FREQ_S" 'BEGIN{srand(s); printf "%.3f", rand()*f}')"
    target="198.51.$((100 + r / 250)).$((1 + r % 250))"
    t0=$(now_us)
    deadline=$((t0 + TIMEOUT * 1000000))
    pp=()
    for i in $(seq 2 "$HOSTS"); do
        ip netns exec "csb$SFX-h$i" bash "$W/poll.sh" "$target" "$deadline" >"$W/poll.$r.$i" &
        pp+=($!)
    done
    t0=$(now_us)
    if [ "$MODE" = cscli ]; then
        ip netns exec "csb$SFX-h1" cscli -c "$W/h1.yaml" --error decisions add --ip "$target" \
            --duration 1h --reason "fleetbench rep $r" >/dev/null
    else
        ts=$(date '+%b %e %H:%M:%S')
        for k in 1 2 3 4 5 6; do
            printf '%s h1 sshd[%d]: Failed password for invalid user bench%d from %s port %d ssh2\n' \
                "$ts" "$((4000 + k))" "$k" "$target" "$((40000 + k))" >> "$W/agent/auth.log"
        done
    fi
    for p in "${pp[@]}"; do wait "$p" || true; done
    for i in $(seq 2 "$HOSTS"); do
        v=$(cat "$W/poll.$r.$i")
        if [ "$v" = miss ]; then MISSES=$((MISSES + 1)); log "rep $r host h$i: miss"
        else d=$(( (v - t0) )); [ "$d" -lt 0 ] && d=0; SAMPLES+=("$d"); fi
    done
    log "rep $r/$REPS ($target): $(for i in $(seq 2 "$HOSTS"); do v=$(cat "$W/poll.$r.$i"); [ "$v" = miss ] && printf 'miss ' || printf '%dms ' $(( (v - t0) / 1000 )); done)"
done

# Percentiles (nearest rank) in ms with 1 decimal.
sorted=$(printf '%s\n' "${SAMPLES[@]}" | sort -n)
n=${#SAMPLES[@]}
pct() {
    local q=$1 k
    [ "$n" -gt 0 ] || { echo null; return; }
    k=$(( (q * n + 99) / 100 )); [ "$k" -lt 1 ] && k=1
    printf '%s\n' "$sorted" | sed -n "${k}p" | awk '{printf "%.1f", $1/1000}'
}
samples_ms=$(printf '%s\n' "$sorted" | awk 'NF{printf "%s%.1f", (NR>1?",":""), $1/1000}')
out=$(printf '{"peer":"crowdsec 1.4.6 + crowdsec-firewall-bouncer 0.0.25 (nftables)","mode":"%s","update_frequency":"%s","bouncer_hosts":%d,"machines":%d,"reps":%d,"samples":%d,"misses":%d,"p50_ms":%s,"p99_ms":%s,"max_ms":%s,"samples_ms":[%s]}' \
    "$MODE" "$FREQ" "$((HOSTS - 1))" "$HOSTS" "$REPS" "$n" "$MISSES" "$(pct 50)" "$(pct 99)" "$(pct 100)" "$samples_ms")
printf '%s\n' "$out"
[ -z "$JSON" ] || printf '%s\n' "$out" > "$JSON"
