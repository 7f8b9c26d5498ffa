#!/usr/bin/env bash
# One command to a running local KMS: installs what is missing (only what this configuration
# needs: no redis-server when REDIS_URL is set), builds dist/ when it is missing or older than
# src/, then runs the compiled `kms quickstart` (SoftHSM2 token, embedded Postgres unless
# DATABASE_URL, private Redis unless REDIS_URL). Flags go to it: --port N, --host ADDR, --data-dir DIR.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh --for quickstart
if ! node -e "import('./bin/build-state.mjs').then((m) => process.exit(m.buildState().current ? 0 : 1))"; then
  printf 'quickstart: building dist/ (npm run build; first run or sources changed)\n' >&2
  started=${SECONDS}
  if npm run build --silent; then
    printf 'quickstart: [%s s] build done\n' "$((SECONDS - started))" >&2
  else
    # A type error in an edited tree: the sources still run (through tsx, slower).
    printf 'quickstart: the build failed (above); running the TypeScript sources instead\n' >&2
  fi
fi
exec node bin/kms.mjs quickstart "$@"
