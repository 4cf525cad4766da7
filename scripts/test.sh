#!/usr/bin/env bash
# The whole test suite: formatting, lint, types, docs, then every test under
# Deno (sanitizers on) and again under Bun. `deno task test` runs this.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "pinned Node 22 and workerd for the transport tests (npm registry; no-op once installed)"
bash scripts/install_test_runtimes.sh

step "deno fmt --check"
deno fmt --check
step "deno lint"
deno lint
step "deno check"
deno check mod.ts lib/ tests/ scripts/
step "deno doc --lint mod.ts"
deno doc --lint mod.ts
step "deno publish --dry-run"
deno publish --dry-run --allow-dirty 2>&1 | tail -n 3

step "deno test: documentation examples (against a throwaway redis-server)"
deno run -A scripts/with_redis.ts -- deno test -A --doc --permit-no-files mod.ts lib/

step "deno test: tests/"
deno test -A tests/

if command -v bun >/dev/null 2>&1; then
  step "bun test: tests/ ($(bun --version))"
  bun test --timeout 120000 ./tests/
elif [ "${CI:-}" = "true" ]; then
  echo "ERROR: bun is not installed, and CI=true requires the Bun run." >&2
  exit 1
else
  printf '\n%s\n' "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" \
    "!!! SKIPPED the Bun half of the suite: bun is not on PATH.               !!!" \
    "!!! Install it (npm install -g bun@1.4.4) to run the tests under Bun.    !!!" \
    "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
fi
step "all passed"
