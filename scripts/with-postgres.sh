#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL cluster.
#
#   scripts/with-postgres.sh CMD [ARGS...]
#   e.g. scripts/with-postgres.sh env CARGO_TARGET_DIR=/work/target-store cargo test -p palisade-store
#
# Uses the server binaries of Debian's `postgresql` package (/usr/lib/postgresql/*/bin),
# installing the package non-interactively when they are missing. The cluster lives in a
# fresh temp directory, listens on 127.0.0.1 only, on a free port, with its unix socket in that
# temp directory; TCP logins need a random password (scram-sha-256). Run as root, the server
# runs as the `postgres` user (PostgreSQL refuses to run as root).
#
# The command sees:
#   PALISADE_TEST_PG_URL=postgres://palisade:<password>@127.0.0.1:<port>/palisade
#   PALISADE_REQUIRE_PG=1   (so PostgreSQL tests fail instead of skipping)
# and the script exits with the command's status. The cluster is stopped and its directory
# removed on every exit path (success, failure, Ctrl-C).
#
# Tests run the cluster without durability (fsync, synchronous_commit and full_page_writes
# off: nothing in a throwaway cluster must survive a power cut, and the suite is faster).
# Benchmarks set PALISADE_PG_DURABLE=1: the server's own defaults (fsync, synchronous commit,
# full-page writes on), what a production cluster runs, so figures are not flattered.
set -euo pipefail

log() { printf 'with-postgres: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -gt 0 ] || { sed -n '2,24s/^# \{0,1\}//p' "$0" >&2; exit 2; }

bindir() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$d" ] && [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && printf '%s\n' "$d"
}

BIN=$(bindir || true)
if [ -z "$BIN" ]; then
    log "PostgreSQL server binaries not found; installing the postgresql package"
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "not root and no sudo: install the postgresql package"
        SUDO=(sudo -n)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends postgresql >&2
    BIN=$(bindir) || die "postgresql installed but no server binaries under /usr/lib/postgresql"
fi

# The server may not run as root: run it (and own its files) as `postgres` in that case.
RUN_AS=()
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user"
    RUN_AS=(runuser -u postgres --)
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/palisade-pg.XXXXXX")
DATA="$TMP/data"
STARTED=0

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ "$STARTED" = 1 ]; then
        "${RUN_AS[@]}" "$BIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 ||
            log "warning: pg_ctl stop failed"
    fi
    rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ ${#RUN_AS[@]} -eq 0 ] || chown postgres: "$TMP"
chmod 700 "$TMP"

PASSWORD=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
( umask 077; printf '%s\n' "$PASSWORD" >"$TMP/pwfile" )
[ ${#RUN_AS[@]} -eq 0 ] || chown postgres: "$TMP/pwfile"

"${RUN_AS[@]}" "$BIN/initdb" -D "$DATA" -U palisade --pwfile="$TMP/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-locale --no-sync \
    >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }
rm -f "$TMP/pwfile"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Pick a random free port; retry with another if the server still loses a race for it.
if [ "${PALISADE_PG_DURABLE:-0}" = 1 ]; then
    DURABILITY=""
    log "durable cluster (fsync, synchronous_commit, full_page_writes: server defaults)"
else
    DURABILITY="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
fi
PORT=
for _ in 1 2 3 4 5 6 7 8; do
    candidate=$((20000 + RANDOM % 40000))
    port_free "$candidate" || continue
    if "${RUN_AS[@]}" "$BIN/pg_ctl" -D "$DATA" -l "$TMP/server.log" -w -t 60 -s \
        -o "-c listen_addresses=127.0.0.1 -p $candidate -k $TMP $DURABILITY" \
        start >/dev/null 2>&1; then
        PORT=$candidate
        STARTED=1
        break
    fi
    # pg_ctl may give up while the postmaster is still shutting down after a bind failure.
    "${RUN_AS[@]}" "$BIN/pg_ctl" -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || true
done
[ -n "$PORT" ] || { tail -n 20 "$TMP/server.log" >&2 || true; die "could not start PostgreSQL"; }

PGPASSWORD=$PASSWORD "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U palisade palisade ||
    die "createdb failed"

export PALISADE_TEST_PG_URL="postgres://palisade:$PASSWORD@127.0.0.1:$PORT/palisade"
export PALISADE_REQUIRE_PG=1
log "PostgreSQL $("$BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PORT (data in $TMP)"
log "PALISADE_TEST_PG_URL=postgres://palisade:***@127.0.0.1:$PORT/palisade"

# Run the command in the background (stdin kept) so a signal to this script is handled at
# once: forwarded to the command, then the cluster is cleaned up by the EXIT trap.
CHILD=
forward() { [ -z "$CHILD" ] || kill -s "$1" "$CHILD" 2>/dev/null || true; }
trap 'forward INT' INT
trap 'forward TERM' TERM
set +e
"$@" <&0 &
CHILD=$!
while :; do
    wait "$CHILD"
    status=$?
    kill -0 "$CHILD" 2>/dev/null || break
done
set -e
exit "$status"
