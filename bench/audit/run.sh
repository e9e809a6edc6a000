#!/usr/bin/env bash
# Cloud-audit benchmark: a moto account with 2,000 security groups and 5,000 instances.
# Measures palisade-audit's CPU time and peak RSS (GNU time) for a first run (everything new)
# and a quiet re-run, straight against moto and through a paging replay stub, and prints the
# API calls per region and operation. Needs moto[server] (scripts/install-deps.sh test).
set -euo pipefail
cd "$(dirname "$0")/../.."
groups=${GROUPS_N:-2000}
instances=${INSTANCES_N:-5000}
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
moto_port=$(free_port)
MOTO_IAM_LOAD_MANAGED_POLICIES=true moto_server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
stub_pid=
cleanup() { kill "$moto_pid" ${stub_pid:+"$stub_pid"} 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
moto="http://127.0.0.1:$moto_port"
for _ in $(seq 100); do curl -fs "$moto/moto-api/" >/dev/null 2>&1 && break; sleep 0.2; done
echo "== populating: $groups security groups, $instances instances"
python3 bench/audit/populate.py "$moto" "$groups" "$instances"
cargo build --release -q -p palisade-audit --example audit_bench
bin=target/release/examples/audit_bench
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
measure() { # label endpoint state
  /usr/bin/time -f '%U %S %M' -o "$work/time" "$bin" --endpoint "$2" --state "$3" >"$work/out"
  read -r u s m <"$work/time"
  python3 - "$1" "$u" "$s" "$m" "$work/out" <<'PY'
import json, sys
label, u, s, m, out = sys.argv[1:]
o = json.load(open(out))
calls = ", ".join(f"{k.split('/',1)[1]}={v}" for k, v in sorted(o["calls"].items()))
print(f"{label}: cpu {float(u)+float(s):.2f} s (user {u}, sys {s}), peak RSS {int(m)/1024:.1f} MiB, "
      f"wall {o['wall_s']:.2f} s, findings {o['findings']}, events {o['events']}, errored {o['errored']}")
print(f"  calls: {calls}")
PY
}
echo "== straight against moto (one page per call)"
measure "first run" "$moto" "$work/state1.json"
measure "quiet re-run" "$moto" "$work/state1.json"
stub_port=$(free_port)
python3 bench/audit/replay_stub.py "$stub_port" "$moto" 2>"$work/stub.log" &
stub_pid=$!
for _ in $(seq 50); do curl -fs -o /dev/null "http://127.0.0.1:$stub_port/moto-api/" && break; sleep 0.2; done
echo "== through the paging replay stub (1000 items per page)"
measure "first run" "http://127.0.0.1:$stub_port" "$work/state2.json"
echo "  stub pages served: $(sort "$work/stub.log" | uniq -c | awk '{print $2"@"$3}' | sort | uniq -c | awk '{print $2}' | cut -d@ -f1 | sort | uniq -c | tr '\n' ' ')"
echo "== load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
