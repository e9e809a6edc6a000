#!/usr/bin/env bash
# API benchmark: requests/s and p99 latency of /api/v1/stats and /api/v1/ips/{ip} with
# 1,000,000 events from 50,000 addresses in the store, on SQLite and on PostgreSQL (a
# throwaway cluster from scripts/with-postgres.sh), measured with wrk on loopback.
#
#   bench/api/run.sh [sqlite|postgres|all]      (default: all)
#   EVENTS=1000000 IPS=50000 DURATION=10s CONNS=32 bench/api/run.sh
#
# The server is palisade-server's `api_bench` example (release build): the real router,
# authentication (a read API token), store pool and stats cache, with a stand-in daemon.
# The IP page is measured for the seed's heaviest offender, its 10th heaviest, and a typical
# address (number IPS/2 of the seed, a handful of events). With the dashboard built
# (scripts/build-web.sh) and /usr/bin/chromium present, the dashboard's first paint and the
# time until the overview is drawn are measured too (bench/api/paint.mjs). The machine load
# (`uptime`) is recorded before and after each backend: on a shared machine, read the
# numbers with it. Results are appended to bench/api/RESULTS.md.
# Needs: wrk (apt-get install -y wrk), curl, python3; node + chromium for the paint timing.
set -euo pipefail
# PostgreSQL clusters from scripts/with-postgres.sh run with production durability (fsync,
# synchronous commit, full-page writes) here, not the test suite's fast settings.
export PALISADE_PG_DURABLE=${PALISADE_PG_DURABLE:-1}
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
what="${1:-all}"
EVENTS="${EVENTS:-1000000}"
IPS="${IPS:-50000}"
DURATION="${DURATION:-10s}"
CONNS="${CONNS:-32}"
target="${CARGO_TARGET_DIR:-$root/target}"
results="$root/bench/api/RESULTS.md"

command -v wrk >/dev/null || { echo "bench: wrk is missing (apt-get install -y wrk)" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench: curl is missing" >&2; exit 1; }

if [ "${BENCH_INNER:-}" != 1 ]; then
  cargo build --release -p palisade-server --example api_bench
fi
bin="$target/release/examples/api_bench"

export PALISADE_BENCH_PASSWORD="${PALISADE_BENCH_PASSWORD:-bench-$$-$RANDOM}"

# ip_events BASE TOKEN IP → the address's event count (sum of its per-jail counts)
ip_events() {
  curl -fs -H "Authorization: Bearer $2" "$1/api/v1/ips/$3" |
    python3 -c 'import json,sys;print(sum(j["events"] for j in json.load(sys.stdin)["jails"]))'
}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# wrk_run NAME URL TOKEN → "req/s p99"
wrk_run() {
  local out
  out=$(wrk -t2 -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $3" "$2")
  echo "$out" >&2
  local rps p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
  local non2xx
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  [ -z "$non2xx" ] || { echo "bench: $1 answered $non2xx non-2xx responses" >&2; exit 1; }
  echo "$rps $p99"
}

bench_backend() {
  local backend="$1" url="$2"
  echo "== $backend: seeding $EVENTS events from $IPS addresses" >&2
  local t0=$SECONDS
  "$bin" seed "$url" "$EVENTS" "$IPS"
  local seed_s=$((SECONDS - t0))
  if [ "$backend" = postgres ]; then
    # Right after a bulk load PostgreSQL's autovacuum and the first readers (setting hint
    # bits) work through the fresh rows for minutes, which is not the steady state an
    # operator's dashboard sees: settle the table first.
    psql "$url" -qc 'VACUUM (ANALYZE)'
  fi
  local port tok_file pid
  port=$(free_port)
  tok_file=$(mktemp)
  "$bin" serve "$url" "127.0.0.1:$port" >"$tok_file" &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/api/v1/health" >/dev/null && [ -s "$tok_file" ] && break
    sleep 0.1
  done
  local token
  token=$(head -n1 "$tok_file")
  local base="http://127.0.0.1:$port"
  local stats
  stats=$(curl -fs -H "Authorization: Bearer $token" "$base/api/v1/stats?range=30d")
  local top ip_10 ip_typ load_before
  load_before=$(uptime)
  top=$(echo "$stats" | python3 -c 'import json,sys;print(json.load(sys.stdin)["top_ips"][0]["ip"])')
  ip_10=$(echo "$stats" | python3 -c 'import json,sys;print(json.load(sys.stdin)["top_ips"][-1]["ip"])')
  ip_typ=$("$bin" ip $((IPS / 2)))
  local n_top n_10 n_typ
  n_top=$(ip_events "$base" "$token" "$top")
  n_10=$(ip_events "$base" "$token" "$ip_10")
  n_typ=$(ip_events "$base" "$token" "$ip_typ")
  local cold_ip_ms
  cold_ip_ms=$(curl -fs -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $token" "$base/api/v1/ips/$top" | awk '{printf "%.1f", $1*1000}')
  local cold_ms
  cold_ms=$(curl -fs -o /dev/null -w '%{time_total}' -H "Authorization: Bearer $token" "$base/api/v1/stats?range=7d" | awk '{printf "%.1f", $1*1000}')
  read -r s_rps s_p99 < <(wrk_run stats "$base/api/v1/stats" "$token")
  read -r m_rps m_p99 < <(wrk_run stats30 "$base/api/v1/stats?range=30d" "$token")
  read -r i_rps i_p99 < <(wrk_run ip-top "$base/api/v1/ips/$top" "$token")
  read -r x_rps x_p99 < <(wrk_run ip-10th "$base/api/v1/ips/$ip_10" "$token")
  read -r t_rps t_p99 < <(wrk_run ip-typical "$base/api/v1/ips/$ip_typ" "$token")
  local paint="not measured (needs web/dist embedded, web/node_modules and /usr/bin/chromium)"
  if [ -d web/node_modules/playwright-core ] && [ -x "${CHROMIUM:-/usr/bin/chromium}" ] &&
    curl -fs "$base/" | grep -q 'assets/index'; then
    local pj
    if pj=$(node bench/api/paint.mjs "$base" bench "$PALISADE_BENCH_PASSWORD" 5); then
      paint=$(echo "$pj" | python3 -c '
import json,sys
d=json.load(sys.stdin)
def f(k):
    v = d.get(k)
    if not v:
        return "not reported"
    return "%d ms (max %d, %d loads)" % (v["median_ms"], v["max_ms"], v["n"])
print("median of %d cold loads: first-paint %s, first-contentful-paint %s, overview chart and map drawn %s" % (d["runs"], f("first_paint"), f("first_contentful_paint"), f("overview_drawn")))') ||
        paint="measurement failed: $pj"
    else
      paint="measurement failed"
    fi
  fi
  local load_after
  load_after=$(uptime)
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  {
    echo
    echo "### $backend — $(date -u +%Y-%m-%dT%H:%MZ), $EVENTS events, $IPS addresses"
    echo
    echo "Host: $(nproc) cores, $(uname -r); wrk -t2 -c$CONNS -d$DURATION on loopback; seeding took ${seed_s}s."
    echo "Machine shared with other work; load before: \`${load_before# }\`, after: \`${load_after# }\`."
    echo "First (uncached) /api/v1/stats?range=7d: ${cold_ms} ms; first (uncached) IP page of $top: ${cold_ip_ms} ms."
    echo "Dashboard overview: $paint."
    echo
    echo "| endpoint | req/s | p99 |"
    echo "| --- | ---: | ---: |"
    echo "| /api/v1/stats (24h) | $s_rps | $s_p99 |"
    echo "| /api/v1/stats?range=30d | $m_rps | $m_p99 |"
    echo "| /api/v1/ips/{heaviest offender} ($top, $n_top events) | $i_rps | $i_p99 |"
    echo "| /api/v1/ips/{10th heaviest} ($ip_10, $n_10 events) | $x_rps | $x_p99 |"
    echo "| /api/v1/ips/{typical address} ($ip_typ, $n_typ events) | $t_rps | $t_p99 |"
  } >>"$results"
  echo "== $backend done; results appended to $results" >&2
}

[ -f "$results" ] || printf '# API benchmark results\n\nProduced by `bench/api/run.sh`.\n' >"$results"

case "$what" in
  sqlite | all)
    dir=$(mktemp -d)
    bench_backend sqlite "sqlite:$dir/bench.db"
    rm -rf "$dir"
    ;;&
  postgres | all)
    if [ "${BENCH_INNER:-}" = 1 ]; then
      bench_backend postgres "$PALISADE_TEST_PG_URL"
    else
      BENCH_INNER=1 scripts/with-postgres.sh bench/api/run.sh postgres
    fi
    ;;
  sqlite) ;;
  *) echo "usage: bench/api/run.sh [sqlite|postgres|all]" >&2; exit 2 ;;
esac
