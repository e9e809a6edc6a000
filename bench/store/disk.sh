#!/usr/bin/env bash
# PostgreSQL disk per million events, measured on a throwaway cluster.
#
#   bench/store/disk.sh            # 1,000,000 events
#   PALISADE_DISK_EVENTS=200000 bench/store/disk.sh
#
# Starts a cluster with scripts/with-postgres.sh, writes the events through the store's own
# `record_batch` (sshd noise, 20,000 addresses over the last 10 days, so ~11 day partitions),
# runs VACUUM ANALYZE and prints the size of every table with its indexes and TOAST. Also
# prints the machine load, to be recorded next to the numbers in bench/store/RESULTS.md.
# (Sizes do not depend on the build profile, so the debug test build is reused.)
set -euo pipefail
# PostgreSQL clusters from scripts/with-postgres.sh run with production durability (fsync,
# synchronous commit, full-page writes) here, not the test suite's fast settings.
export PALISADE_PG_DURABLE=${PALISADE_PG_DURABLE:-1}
cd "$(dirname "$0")/../.."
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
bash scripts/with-postgres.sh cargo test -p palisade-store --test perf \
    postgres_disk_per_million_events -- --ignored --nocapture
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
