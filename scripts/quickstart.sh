#!/usr/bin/env bash
# Installs what Palisade needs, builds it and runs it on its embedded default: SQLite store,
# the shipped example configuration (examples/palisade.toml), nftables responder.
# Run as root (the firewall needs it). Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh run
cargo build --release -p palisade
install -d -m 0750 /var/lib/palisade /run/palisade
./target/release/palisade config check examples/palisade.toml
exec ./target/release/palisade run --config examples/palisade.toml "$@"
