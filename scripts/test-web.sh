#!/usr/bin/env bash
# Browser tests of the dashboard against the real `palisade run`:
# builds the dashboard, builds the binary (embedding it), then drives Debian's headless
# Chromium with playwright-core (web/tests/browser.test.mjs). Screenshots of every page go to
# target/screenshots/. Needs: npm (Node >= 20.19), chromium (apt-get install -y chromium), and
# moto_server (PyPI moto[server]) for the Audit page, whose data comes from a real audit run
# against it (skipped without moto unless PALISADE_REQUIRE_MOTO is set).
#   scripts/test-web.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
if [ ! -x /usr/bin/chromium ]; then
  echo "test-web: /usr/bin/chromium is missing: apt-get install -y chromium chromium-driver" >&2
  exit 1
fi
scripts/build-web.sh
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build -p palisade
geo="${PALISADE_TEST_GEOIP:-}"
if [ -z "$geo" ]; then
  # The project's test setup uses DB-IP Lite, installed under the target folder.
  geo="$target/geoip/dbip-country.mmdb"
  [ -s "$geo" ] || scripts/install-geoip.sh "$target/geoip" || geo=""
fi
if [ -z "$geo" ] && [ -n "${PALISADE_REQUIRE_GEOIP:-}" ]; then
  echo "test-web: PALISADE_REQUIRE_GEOIP is set but no GeoIP database could be installed" >&2
  exit 1
fi
export PALISADE_BIN="$target/debug/palisade"
export PALISADE_TEST_GEOIP="$geo"
export SCREENSHOTS="${SCREENSHOTS:-$root/target/screenshots}"
mkdir -p "$SCREENSHOTS"
node web/tests/browser.test.mjs
