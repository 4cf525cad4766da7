#!/usr/bin/env bash
# The whole test suite: formatting, lint, types, docs, then every test under
# Deno (sanitizers on) and again under Bun. `deno task test` and .ci/run run
# this. On a fresh machine it first installs what is missing (Deno and Bun
# at the pinned versions, redis-server >= 7.0, openssl; see
# scripts/bootstrap.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/bootstrap.sh deno bun redis openssl

step() { printf '\n=== %s\n' "$*"; }

echo "deno: $(deno --version | head -n 1)"
echo "bun: $(bun --version)"
echo "redis-server: $(redis-server --version)"

step "pinned Node 22 and workerd for the transport tests (npm registry; no-op once installed)"
bash scripts/install_test_runtimes.sh

step "deno fmt --check"
deno fmt --check
step "deno lint"
deno lint
step "deno check"
deno check mod.ts lib/ tests/ testing/ scripts/
step "Bun transport and adapter against bun-types (npm:bun-types@1.4.4)"
bash scripts/check_bun_types.sh
step "ioredis, node-redis for the bring-your-own-client tests under Bun (npm registry; no-op once installed)"
bash scripts/install_byo_clients.sh >/dev/null
step "deno doc --lint mod.ts"
deno doc --lint mod.ts
step "deno publish --dry-run"
deno publish --dry-run --allow-dirty 2>&1 | tail -n 3

step "deno test: documentation examples (against a throwaway redis-server)"
deno run -A scripts/with_redis.ts --cluster -- deno test -A --doc --permit-no-files mod.ts lib/

step "deno test: tests/"
deno test -A tests/

step "bun test: tests/ ($(bun --version))"
bun test --timeout 120000 ./tests/
step "all passed"
