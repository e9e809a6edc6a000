#!/usr/bin/env bash
# Builds the dashboard (web/ → web/dist) with npm and Vite. The next cargo build of
# palisade-server embeds web/dist into the binary; without it, a minimal page is embedded.
# Installs exactly what web/package-lock.json pins (`npm ci`): the build never rewrites a
# tracked file. After changing web/package.json, refresh the lock on purpose with
# `npm install --package-lock-only` in web/ and commit it.
#   scripts/build-web.sh
set -euo pipefail
cd "$(dirname "$0")/../web"
command -v npm >/dev/null || { echo "build-web: npm is missing (scripts/install-deps.sh installs Node.js >= 20.19)" >&2; exit 1; }
node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a==20&&b>=19)?0:1)' ||
  { echo "build-web: Vite 7 needs Node.js >= 20.19 (found $(node --version))" >&2; exit 1; }
npm ci --no-audit --no-fund
npm run build
echo "build-web: built $(pwd)/dist"
