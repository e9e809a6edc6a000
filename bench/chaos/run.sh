#!/usr/bin/env bash
# Crash chaos benchmark (issue 19, finding 4): a real `palisade run` follows a log file that
# receives a burst of failures from 5,000 distinct addresses (4,000 offenders with max_retry
# failures, 1,000 below it); the daemon is killed with SIGKILL at seeded random moments (one or
# two kills per run), restarted, and at the end the store must hold every line's event exactly
# once, one ban per offender and none for the others.
#
# Same code as `cargo test -p palisade --test chaos` (3 runs in CI), here with RUNS runs.
# Usage: bench/chaos/run.sh [RUNS] [SEED]    (defaults: 20 runs, seed 0x5eed0019)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-20}
seed=${2:-1592590361}
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
PALISADE_CHAOS_RUNS=$runs PALISADE_CHAOS_SEED=$seed \
    cargo test -p palisade --test chaos -- --nocapture 2>&1 |
    grep -E '^chaos run|panicked|seed|test result'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
