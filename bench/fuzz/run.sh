#!/usr/bin/env bash
# Longer fuzz run of the property tests (outside CI): every parser that reads outside input
# (built-in filters, syslog headers, timestamps, addresses, fail2ban INI/regex translation and
# filter files, configuration text, control and fleet messages) with many more cases than CI's 64 per property.
#
#   bench/fuzz/run.sh            # 200000 cases per property (hours on a loaded 2-core box)
#   CASES=20000 bench/fuzz/run.sh
#
# Results (cases, time, failures with proptest's minimal input) go to bench/fuzz/RESULTS.md
# when RECORD=1. Release profile: the parsers run as they do in production.
set -euo pipefail
cd "$(dirname "$0")/../.."
CASES="${CASES:-200000}"
export PROPTEST_CASES="$CASES"
start=$(date +%s)
status=0
for spec in "palisade-filter properties" "palisade-filter framing" "palisade-fail2ban properties" "palisade-config properties" "palisade-proto properties"; do
    set -- $spec
    echo "== $1 --test $2 (PROPTEST_CASES=$CASES)"
    t0=$(date +%s)
    if ! cargo test --release -p "$1" --test "$2" -- --test-threads=1; then
        status=1
    fi
    echo "   $(( $(date +%s) - t0 )) s"
done
echo "total $(( $(date +%s) - start )) s, status $status"
if [ "${RECORD:-0}" = 1 ]; then
    {
        echo "- $(date -u +%F) $(uname -m), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg):"
        echo "  PROPTEST_CASES=$CASES, $(( $(date +%s) - start )) s, status $status"
    } >> bench/fuzz/RESULTS.md
fi
exit $status
