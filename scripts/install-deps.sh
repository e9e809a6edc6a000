#!/usr/bin/env bash
# Installs what Palisade needs on Debian 12, idempotently.
#   scripts/install-deps.sh run    runtime: firewall tools
#   scripts/install-deps.sh test   everything the test suite and benchmarks use
set -euo pipefail
what="${1:-run}"

run_pkgs=(nftables iptables ipset iproute2 ca-certificates)
build_pkgs=(gcc make pkg-config)
test_pkgs=(postgresql openssh-server openssh-client fail2ban sshguard goaccess time ufw
           python3 python3-aiosmtpd sqlite3 procps psmisc chromium chromium-driver wrk)

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

if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install Rust (https://rustup.rs) first" >&2
  exit 1
fi

if [ "$what" = test ]; then
  # The real SMTP server used by the e-mail tests: Debian's python3-aiosmtpd for
  # /usr/bin/python3, and from PyPI for another python3 first on PATH.
  if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
    python3 -m pip install --quiet aiosmtpd
  fi
fi
