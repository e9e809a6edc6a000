#!/usr/bin/env bash
# Real-log evaluation: every real log in ../shared/data through Palisade's built-in filters
# (`palisade check --json`, `palisade replay`) and through fail2ban's stock filters
# (`fail2ban-regex`, and fail2ban's server path via bench/fail2ban/f2b_replay.py), normal
# and aggressive modes, in the same run. Writes bench/real/RESULTS.md: the hand-written
# findings (bench/real/FINDINGS.md) followed by the generated tables.
#
#   bench/real/run.sh            # $PALISADE, else target/release/palisade, else target/debug/palisade
#   ONLY=Apache bench/real/run.sh   # only logs whose path contains "Apache"
#
# Needs: python3, fail2ban (Debian package: fail2ban-regex, /etc/fail2ban/filter.d and the
# python module) and the real logs: BENCH_REAL_DATA, else ../shared/data beside the checkout.
# Takes a few minutes.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
data="${BENCH_REAL_DATA:-$root/../shared/data}"
if [[ ! -d "$data" ]]; then
  echo "real logs not found at $data: set BENCH_REAL_DATA to the folder holding loghub/, loghub_full/ and elastic_examples/" >&2
  exit 1
fi

PALISADE="${PALISADE:-}"
if [[ -z "$PALISADE" ]]; then
  for p in "${CARGO_TARGET_DIR:-$root/target}/release/palisade" "${CARGO_TARGET_DIR:-$root/target}/debug/palisade"; do
    if [[ -x "$p" ]]; then PALISADE="$p"; break; fi
  done
fi
if [[ -z "$PALISADE" ]]; then
  (cd "$root" && cargo build --release -p palisade)
  PALISADE="${CARGO_TARGET_DIR:-$root/target}/release/palisade"
fi
command -v fail2ban-regex > /dev/null || { echo "fail2ban-regex not found (apt-get install fail2ban)" >&2; exit 1; }

build="build $(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && git diff --quiet HEAD -- crates || echo '+dirty'), $(basename "$(dirname "$PALISADE")") binary, fail2ban $(fail2ban-regex --version 2>/dev/null | head -n1 | awk '{print $NF}')"
gen="$(mktemp /tmp/palisade-real.XXXXXX.md)"
trap 'rm -f "$gen"' EXIT
args=(--palisade "$PALISADE" --data "$data" --out "$gen" --build "$build")
[[ -n "${ONLY:-}" ]] && args+=(--only "$ONLY")
python3 "$here/compare.py" "${args[@]}"
{
  cat "$here/FINDINGS.md"
  echo
  cat "$gen"
} > "$here/RESULTS.md"
echo "wrote $here/RESULTS.md" >&2
