#!/usr/bin/env bash
# Fleet benchmark (issue 16 item 11, issue 18 item 4): Palisade's fleet server under simulated
# agents, and CrowdSec 1.4.6's LAPI + firewall bouncers as the peer, in one run.
#
#   bench/fleet/run.sh [--quick] [--skip-crowdsec] [--skip-pg] [--big 10000] [--out DIR]
#
# Palisade side (crates/palisade-fleet/examples/fleet_load.rs, release build, loopback only):
#   propagate  1,000 agents; agent 0 reports a local ban, the server pushes it to the 999 others
#              (share_bans); latency = local_ban sent -> `bans` received, per agent (20 bans)
#   ingest     100 agents each with a 10,000-event backlog, shipped as fast as credit allows;
#              SQLite, then PostgreSQL (scripts/with-postgres.sh); exactly-once checked against
#              `palisade fleet agents --json`
#   idle       1,000 and --big (10,000) idle agents: server RSS per connection, idle CPU
#   drain      100 agents at 50 events/s each; the server is killed (-9) for --outage 60 s
#              (issue: 10 min; shortened to fit) and restarted; time until the backlog is acked
# Same-method pair, real processes in network namespaces, 20 repetitions each, 3 receiving hosts:
#   bench/fleet/crowdsec.sh       CrowdSec: `cscli decisions add` through machine m1, and 6 sshd
#                                 failures processed by an agent on host 1 -> other hosts' nft sets
#   bench/fleet/palisade-netns.sh Palisade: `palisade decisions add` on agent h1, and the same 6
#                                 sshd failures in h1's log -> other agents' nft sets
# Results: DIR/*.json (default bench/fleet/out), a summary table on stdout. Load average and CPU
# seconds are recorded with every figure (the machine is shared).
# Needs root, bench/fleet/install.sh (CrowdSec), PostgreSQL server binaries for --skip-pg off.
set -euo pipefail
# PostgreSQL clusters from scripts/with-postgres.sh run with production durability (fsync,
# synchronous commit, full-page writes) here, not the test suite's fast settings.
export PALISADE_PG_DURABLE=${PALISADE_PG_DURABLE:-1}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
QUICK=0
SKIP_CS=0
SKIP_PG=0
BIG=10000
OUT=$here/out
PHASE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; shift ;;
        --skip-crowdsec) SKIP_CS=1; shift ;;
        --skip-pg) SKIP_PG=1; shift ;;
        --big) BIG=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --pg-phase) PHASE=pg; shift ;;
        -h|--help) sed -n '2,22s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
[[ "$BIG" =~ ^[0-9]+$ ]] && [ "$BIG" -le 20000 ] || { echo "run.sh: --big 0..20000" >&2; exit 2; }
BIN=$root/target/release/palisade
GEN=$root/target/release/examples/fleet_load
log() { printf 'run.sh: %s\n' "$*" >&2; }

if [ "$QUICK" = 1 ]; then
    N_PROP=100; N_BANS=5; N_ING=20; EV=2000; N_IDLE=100; BIG=0; N_DRAIN=20; OUTAGE=10; REPS=3
else
    N_PROP=1000; N_BANS=20; N_ING=100; EV=10000; N_IDLE=1000; N_DRAIN=100; OUTAGE=60; REPS=20
fi
mkdir -p "$OUT"

# Both sides open one descriptor per agent connection.
ulimit -Hn 65536 2>/dev/null || true
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

W=$(mktemp -d /tmp/fleetbench.XXXXXX)
chmod 755 "$W"
trap 'rm -rf "$W"' EXIT

# One fresh server configuration per scenario (own state dir, store and port).
PORT=17443
mkconf() { # NAME STORE_URL -> prints the config path (listens on $PORT)
    local name=$1 url=$2 d
    d=$W/$name
    mkdir -p "$d/state"
    cat > "$d/server.toml" <<EOF
[general]
state_dir = "$d/state"
socket = "$d/palisade.sock"
log_level = "warn"

[store]
url = "$url"

[fleet]
role = "server"
listen = "127.0.0.1:$PORT"
share_bans = true
EOF
    printf '%s\n' "$d/server.toml"
}

gen() { # NAME STORE_URL SCENARIO ARGS...
    local name=$1 url=$2 sc=$3 cfg
    shift 3
    PORT=$((PORT + 1))
    cfg=$(mkconf "$name" "$url")
    log "$name: fleet_load $sc $*"
    "$GEN" --palisade "$BIN" --config "$cfg" --url "wss://127.0.0.1:$PORT" \
        --server-log "$W/$name/server.log" --json "$OUT/$name.json" "$sc" "$@" \
        || { log "$name failed; server log tail:"; tail -n 20 "$W/$name/server.log" >&2 || true; return 1; }
}

if [ "$PHASE" = pg ]; then
    [ -n "${PALISADE_TEST_PG_URL:-}" ] || { log "--pg-phase needs PALISADE_TEST_PG_URL"; exit 1; }
    gen ingest-pg "$PALISADE_TEST_PG_URL" ingest --agents "$N_ING" --events "$EV"
    exit 0
fi

log "building (release): palisade, fleet_load"
(cd "$root" && cargo build --release -q -p palisade && cargo build --release -q -p palisade-fleet --example fleet_load)

uptime > "$OUT/load-start.txt"
FAILED=()
run() { "$@" || FAILED+=("$*"); }

if [ "$SKIP_CS" = 0 ]; then
    run "$here/crowdsec.sh" --reps "$REPS" --hosts 4 --mode cscli --json "$OUT/crowdsec-cscli.json"
    run "$here/crowdsec.sh" --reps "$REPS" --hosts 4 --mode log --json "$OUT/crowdsec-log.json"
fi
run "$here/palisade-netns.sh" --bin "$BIN" --reps "$REPS" --hosts 4 --mode cli --json "$OUT/palisade-netns-cli.json"
run "$here/palisade-netns.sh" --bin "$BIN" --reps "$REPS" --hosts 4 --mode log --json "$OUT/palisade-netns-log.json"
run gen propagate-sqlite "sqlite:$W/propagate-sqlite/state/palisade.db" propagate --agents "$N_PROP" --bans "$N_BANS"
run gen ingest-sqlite "sqlite:$W/ingest-sqlite/state/palisade.db" ingest --agents "$N_ING" --events "$EV"
if [ "$SKIP_PG" = 0 ]; then
    args=(--pg-phase --out "$OUT")
    [ "$QUICK" = 1 ] && args+=(--quick)
    run bash "$root/scripts/with-postgres.sh" "$0" "${args[@]}"
fi
run gen idle-sqlite "sqlite:$W/idle-sqlite/state/palisade.db" idle --agents "$N_IDLE" --hold 20
if [ "$BIG" -gt 0 ]; then
    run gen idle-big-sqlite "sqlite:$W/idle-big-sqlite/state/palisade.db" idle --agents "$BIG" --hold 20 --max-secs 900
fi
run gen drain-sqlite "sqlite:$W/drain-sqlite/state/palisade.db" drain --agents "$N_DRAIN" --rate 50 --outage "$OUTAGE"
uptime > "$OUT/load-end.txt"

python3 "$here/summary.py" "$OUT"
if [ ${#FAILED[@]} -gt 0 ]; then
    log "failed steps:"; printf '  %s\n' "${FAILED[@]}" >&2
    exit 1
fi
