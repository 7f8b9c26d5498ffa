#!/usr/bin/env bash
# The test command (`npm test`). The harness creates a fresh Postgres database per run from
# DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) and its own SoftHSM2 token
# dirs; REDIS_URL defaults to redis://127.0.0.1:6379. Results also go to .test-results/vitest.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# Strict types are part of the bar: a type error fails the run before any test.
npx tsc -p tsconfig.json --noEmit
# The tests that spawn `kms` (quickstart, serve, worker, client verbs) run the compiled CLI, as
# users do: bin/kms.mjs takes dist/ only while it is newer than every file under src/.
npm run build --silent
mkdir -p .test-results
exec npx vitest run --reporter=default --reporter=json --outputFile=.test-results/vitest.json "$@"
