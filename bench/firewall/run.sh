#!/bin/sh
# Firewall benchmark (issue 4): Palisade's nftables responder vs fail2ban's nftables action,
# inside a private network namespace (the host ruleset is never touched). Needs root and the
# Debian packages iproute2, nftables, fail2ban, python3-pyinotify (fail2ban's inotify
# backend), coreutils (stdbuf).
#
#   bench/firewall/run.sh [--bin target/release/palisade] [--md bench/firewall/RESULTS.md]
#                         [--latency-n 200] [--burst-n 10000] [--restore-n 100000]
#                         [--restore-runs 3] [--f2b-burst-n 1000] [--f2b-restore-n 1000,2000] [--skip-f2b]
#
# Build the binary first: cargo build --release -p palisade
set -eu
here=$(dirname "$0")
exec /usr/bin/python3 "$here/fwbench.py" "$@"
