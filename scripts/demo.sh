#!/usr/bin/env bash
# The stampede demo, on a fresh machine too: installs what is missing (Deno,
# and redis-server >= 7.0 unless REDIS_URL names a server; see
# scripts/bootstrap.sh), then runs the demo (`deno task demo` does the same
# once Deno is there). Arguments go to scripts/demo.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${REDIS_URL:-}" ]; then
  . scripts/bootstrap.sh deno
else
  . scripts/bootstrap.sh deno redis
fi
exec deno run -A scripts/demo.ts "$@"
