#!/usr/bin/env bash
# Installs, at pinned versions and from the npm registry only (no install
# scripts run), what the bring-your-own-client tests and the Bun type check
# need outside Deno's npm cache: Bun cannot import `npm:` specifiers, so under
# Bun the tests load ioredis and node-redis from here.
#
#   ioredis@IOREDIS_VERSION, redis@NODE_REDIS_VERSION  -> tests/byo_*_test.ts under Bun
#   bun-types@BUN_TYPES_VERSION                        -> the Bun transport's type check
#
# Into $RESPITE_TOOLS/byo-clients (default ~/.cache/respite-tools/byo-clients).
# A no-op once the pinned versions are there. Prints the directory.
set -euo pipefail

IOREDIS_VERSION=6.0.0
NODE_REDIS_VERSION=6.3.1
BUN_TYPES_VERSION=1.4.4

TOOLS="${RESPITE_TOOLS:-$HOME/.cache/respite-tools}"
DIR="$TOOLS/byo-clients"

version_of() {
  sed -n 's/^  "version": *"\([^"]*\)".*/\1/p' "$DIR/node_modules/$1/package.json" 2>/dev/null | head -n 1
}

installed() {
  [ "$(version_of ioredis)" = "$IOREDIS_VERSION" ] &&
    [ "$(version_of redis)" = "$NODE_REDIS_VERSION" ] &&
    [ "$(version_of bun-types)" = "$BUN_TYPES_VERSION" ]
}

if ! installed; then
  . "$(dirname "$0")/bootstrap.sh" npm
  mkdir -p "$DIR"
  [ -f "$DIR/package.json" ] || echo '{"name":"respite-byo-clients","private":true}' >"$DIR/package.json"
  npm install --prefix "$DIR" --ignore-scripts --no-audit --no-fund --loglevel=error \
    "ioredis@$IOREDIS_VERSION" "redis@$NODE_REDIS_VERSION" "bun-types@$BUN_TYPES_VERSION" >&2
  installed || {
    echo "install_byo_clients: installed, but not the pinned versions" >&2
    exit 1
  }
fi
echo "$DIR"
