#!/usr/bin/env bash
# Fleet scale figures (issue 18 item 4, issue 16 targets), one step at a time, loopback only:
#
#   bench/fleet/scale.sh [--out DIR] STEP...
#
#   idle N          N idle agents (SQLite server): server RSS per connection, idle CPU
#   ingest-sqlite   100 agents x 10,000 events, one server on SQLite
#   ingest-pg K [R] 100 agents x 10,000 events, K servers (1 or 2) on ONE throwaway PostgreSQL
#                   (scripts/with-postgres.sh); PostgreSQL's own CPU seconds recorded too;
#                   R events in a row per address (default 1: every event a new address)
#   failover N [R]    N agents at R (default 1) events/s on 2 servers on one PostgreSQL, each agent listing
#                   both URLs; kill -9 server 1; time until every agent is connected again,
#                   snapshots at reconnect, exactly-once
#   propagate-pg K [N]  N agents (default 1,000) on K servers (1 or 2) on ONE PostgreSQL,
#                   agent i on server i mod K; agent 0 shares 20 bans; receipt time at every
#                   other agent, also apart for the agents on the other server
#   drain [SECS]    100 agents at 50 events/s each (SQLite server); kill -9 of the server,
#                   down SECS (default 600, issue 16's 10 minutes), restart; time until every
#                   agent's backlog is stored, exactly-once
#   agent-rss       a real agent vs a plain single-host daemon (bench/fleet/agent-rss.sh)
#
# Each step writes DIR/<step>.json (default bench/fleet/out) with the load average at its
# start and end. Needs the release build: cargo build --release -p palisade &&
# cargo build --release -p palisade-fleet --example fleet_load.
set -euo pipefail
# PostgreSQL clusters from scripts/with-postgres.sh run with production durability (fsync,
# synchronous commit, full-page writes) here, not the test suite's fast settings.
export PALISADE_PG_DURABLE=${PALISADE_PG_DURABLE:-1}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BIN=$root/target/release/palisade
GEN=$root/target/release/examples/fleet_load
OUT=$here/out
log() { printf 'scale.sh: %s\n' "$*" >&2; }
if [ "${1:-}" = --out ]; then OUT=$2; shift 2; fi
mkdir -p "$OUT"
ulimit -Hn 65536 2>/dev/null || true
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
W=${SCALE_WORK:-$(mktemp -d /tmp/fleetscale.XXXXXX)}
chmod 755 "$W"
# Work files go on exit (SCALE_KEEP=1 keeps them; an exec into with-postgres.sh hands $W on).
[ -n "${SCALE_KEEP:-}" ] || trap 'rm -rf "$W"' EXIT
PORT=$((21000 + RANDOM % 10000))

mkconf() { # NAME STORE_URL PORT -> config path
    local d=$W/$1
    mkdir -p "$d/state"
    cat > "$d/server.toml" <<C
[general]
state_dir = "$d/state"
socket = "$d/palisade.sock"
log_level = "${SCALE_LOG_LEVEL:-warn}"

[store]
url = "$2"

[fleet]
role = "server"
listen = "127.0.0.1:$3"
share_bans = true
max_handshakes = 1024
C
    printf '%s\n' "$d/server.toml"
}

# Two servers on one store share one certificate (the agents pin its fingerprint).
pair() { # NAME STORE_URL -> "cfgA,cfgB urlA,urlB"
    local a b pa=$((PORT + 1)) pb=$((PORT + 2))
    PORT=$((PORT + 2))
    a=$(mkconf "$1-a" "$2" "$pa")
    b=$(mkconf "$1-b" "$2" "$pb")
    "$BIN" fleet token add --config "$a" >/dev/null 2>&1
    mkdir -p "$W/$1-b/state/fleet"
    cp -a "$W/$1-a/state/fleet/server.crt" "$W/$1-a/state/fleet/server.key" "$W/$1-b/state/fleet/"
    printf '%s,%s wss://127.0.0.1:%s,wss://127.0.0.1:%s\n' "$a" "$b" "$pa" "$pb"
}

step=${1:-}
[ -n "$step" ] || { sed -n '2,20s/^# \{0,1\}//p' "$0"; exit 2; }
shift
case "$step" in
    idle)
        n=${1:-1000}
        PORT=$((PORT + 1))
        cfg=$(mkconf "idle-$n" "sqlite:$W/idle-$n/state/palisade.db" "$PORT")
        "$GEN" --palisade "$BIN" --config "$cfg" --url "wss://127.0.0.1:$PORT" --sources 8 \
            --server-log "$W/idle-$n/server.log" --json "$OUT/idle-$n.json" idle \
            --agents "$n" --hold 30 --max-secs 900 ;;
    ingest-sqlite)
        PORT=$((PORT + 1))
        cfg=$(mkconf ingest-sqlite "sqlite:$W/ingest-sqlite/state/palisade.db" "$PORT")
        "$GEN" --palisade "$BIN" --config "$cfg" --url "wss://127.0.0.1:$PORT" \
            --server-log "$W/ingest-sqlite/server.log" --json "$OUT/ingest-sqlite.json" ingest \
            --agents 100 --events 10000 ;;
    ingest-pg|failover|propagate-pg)
        if [ -z "${PALISADE_TEST_PG_URL:-}" ]; then
            exec bash "$root/scripts/with-postgres.sh" env SCALE_WORK="$W" "$0" --out "$OUT" "$step" "$@"
        fi
        if [ "$step" = propagate-pg ]; then
            k=${1:-2}; n=${2:-1000}
            name=propagate-pg-$k-$n
            if [ "$k" = 2 ]; then
                read -r cfgs urls < <(pair "$name" "$PALISADE_TEST_PG_URL")
            else
                PORT=$((PORT + 1))
                cfgs=$(mkconf "$name" "$PALISADE_TEST_PG_URL" "$PORT"); urls="wss://127.0.0.1:$PORT"
            fi
            "$GEN" --palisade "$BIN" --config "$cfgs" --url "$urls" --sources 4 \
                --server-log "$W/$name.log" --json "$OUT/$name.json" propagate --agents "$n" \
                --bans 20 --max-secs 300
        elif [ "$step" = ingest-pg ]; then
            k=${1:-1}
            name=ingest-pg-$k
            if [ "$k" = 2 ]; then
                read -r cfgs urls < <(pair "$name" "$PALISADE_TEST_PG_URL")
            else
                PORT=$((PORT + 1))
                cfgs=$(mkconf "$name" "$PALISADE_TEST_PG_URL" "$PORT"); urls="wss://127.0.0.1:$PORT"
            fi
            r=${2:-1}
            [ "$r" = 1 ] || name=$name-repeat$r
            "$GEN" --palisade "$BIN" --config "$cfgs" --url "$urls" --repeat "$r" \
                --server-log "$W/$name.log" --json "$OUT/$name.json" ingest --agents 100 --events 10000
        else
            n=${1:-1000}
            name=failover-$n-rate${2:-1}
            read -r cfgs urls < <(pair "$name" "$PALISADE_TEST_PG_URL")
            "$GEN" --palisade "$BIN" --config "$cfgs" --url "$urls" --sources 4 \
                --server-log "$W/$name.log" --json "$OUT/$name.json" failover --agents "$n" --rate "${2:-1}" \
                --max-secs 300
        fi ;;
    drain)
        secs=${1:-600}
        PORT=$((PORT + 1))
        cfg=$(mkconf "drain-$secs" "sqlite:$W/drain-$secs/state/palisade.db" "$PORT")
        "$GEN" --palisade "$BIN" --config "$cfg" --url "wss://127.0.0.1:$PORT" \
            --server-log "$W/drain-$secs/server.log" --json "$OUT/drain-$secs.json" drain \
            --agents 100 --rate 50 --outage "$secs" --max-secs $((secs + 900)) ;;
    agent-rss)
        "$here/agent-rss.sh" --bin "$BIN" --secs "${1:-60}" --json "$OUT/agent-rss.json" ;;
    *) log "unknown step $step"; exit 2 ;;
esac
