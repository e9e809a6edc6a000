#!/usr/bin/env bash
# Builds the dashboard (web/ → web/dist) with npm and Vite. The next cargo build of
# palisade-server embeds web/dist into the binary; without it, a minimal page is embedded.
#   scripts/build-web.sh
set -euo pipefail
cd "$(dirname "$0")/../web"
command -v npm >/dev/null || { echo "build-web: npm is missing (apt-get install -y nodejs npm, Node >= 20.19)" >&2; exit 1; }
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund || npm install --no-audit --no-fund
else
  npm install --no-audit --no-fund
fi
npm run build
echo "build-web: built $(pwd)/dist"
