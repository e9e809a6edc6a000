#!/usr/bin/env bash
# Installs what Palisade needs on Debian 12, idempotently.
#   scripts/install-deps.sh run    runtime: firewall tools
#   scripts/install-deps.sh test   everything the test suite and benchmarks use
set -euo pipefail
what="${1:-run}"

run_pkgs=(nftables iptables ipset iproute2 ca-certificates)
build_pkgs=(gcc make pkg-config)
test_pkgs=(postgresql openssh-server openssh-client fail2ban sshguard goaccess time ufw
           python3 python3-aiosmtpd sqlite3 procps psmisc chromium chromium-driver wrk
           systemd binutils faketime)

pkgs=("${run_pkgs[@]}" "${build_pkgs[@]}")
[ "$what" = test ] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # Services some packages start on install (fail2ban, ssh) are not needed: policy-rc.d
  # keeps them from starting where invoke-rc.d is used.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  rm -f /usr/sbin/policy-rc.d
fi

# Rust: Debian 12's rustc is too old; use rustup's stable toolchain when cargo is missing.
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v cargo >/dev/null; then
  echo "installing Rust with rustup"
  command -v curl >/dev/null || apt-get install -y -q --no-install-recommends curl
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt
  export PATH="$HOME/.cargo/bin:$PATH"
fi

# Node.js >= 20.19 builds the dashboard (Vite 7). Only package registries are reachable
# (no nodejs.org download): take the distribution's nodejs/npm, and stop with a clear
# message when that is older (Debian 12's own is 18: add a Node.js 20 apt source first).
node_ok() {
  command -v node >/dev/null && command -v npm >/dev/null &&
    node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a==20&&b>=19)?0:1)'
}
if ! node_ok; then
  command -v node >/dev/null || apt-get install -y -q --no-install-recommends nodejs
  command -v npm >/dev/null || apt-get install -y -q --no-install-recommends npm
  node_ok || { echo "install-deps: the dashboard needs Node.js >= 20.19 with npm (found $(node --version 2>/dev/null || echo none))" >&2; exit 1; }
fi

if [ "$what" = test ]; then
  # The real SMTP server used by the e-mail tests: Debian's python3-aiosmtpd for
  # /usr/bin/python3, and from PyPI for another python3 first on PATH.
  if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
    python3 -m pip install --quiet aiosmtpd
  fi
  # The AWS stand-in of the cloud-audit tests (moto_server; boto3 comes with it).
  if ! command -v moto_server >/dev/null || ! python3 -c 'import moto, boto3' 2>/dev/null; then
    python3 -m pip install --quiet 'moto[server]'
  fi
fi
