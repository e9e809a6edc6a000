#!/usr/bin/env bash
# Installs what Palisade needs, builds it and runs it on its embedded default: SQLite store,
# the shipped example configuration (examples/palisade.toml), nftables responder.
# Run as root (the firewall needs it). Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh run
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
# The dashboard (embedded into the binary) and the GeoIP database for its world map.
bash scripts/build-web.sh
[ -s /var/lib/palisade/geoip/dbip-country.mmdb ] || bash scripts/install-geoip.sh ||
  echo "quickstart: no GeoIP database; the dashboard works without the map" >&2
cargo build --release -p palisade
install -d -m 0750 /var/lib/palisade /run/palisade
./target/release/palisade config check examples/palisade.toml
exec ./target/release/palisade run --config examples/palisade.toml "$@"
