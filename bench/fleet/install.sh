#!/usr/bin/env bash
# Installs what bench/fleet needs beyond scripts/install-deps.sh: Debian 12's CrowdSec 1.4.6
# (LAPI + agent + cscli) and crowdsec-firewall-bouncer 0.0.25 (nftables). Bench-only: no CI
# test uses them, so they are not in scripts/install-deps.sh.
#
# The crowdsec postinst registers to the Central API unless online_api_credentials.yaml exists
# and is non-empty; the bench host is offline, so we pre-create it (CAPI stays disabled). Its
# systemd steps fail harmlessly on hosts without systemd; the bench never uses the services:
# bench/fleet/crowdsec.sh runs its own LAPI, agent and bouncers with private configs.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" -ne 0 ]; then echo "install.sh: run as root" >&2; exit 1; fi
mkdir -p /etc/crowdsec
if [ ! -s /etc/crowdsec/online_api_credentials.yaml ]; then
    echo "# Central API disabled (offline benchmark host)" > /etc/crowdsec/online_api_credentials.yaml
fi
apt-get install -y --no-install-recommends crowdsec crowdsec-firewall-bouncer nftables iproute2 \
    || dpkg --configure -a || true
# Without systemd the postinst's unit start fails once; the second configure run completes.
dpkg --configure -a || true
for p in crowdsec crowdsec-firewall-bouncer; do
    st=$(dpkg-query -W -f '${Status}' "$p" 2>/dev/null || true)
    [ "$st" = "install ok installed" ] || { echo "install.sh: $p not installed ($st)" >&2; exit 1; }
done
crowdsec -version 2>&1 | head -n 1
