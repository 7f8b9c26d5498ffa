#!/usr/bin/env bash
# One command to a running local KMS: installs what is missing, then `kms quickstart`
# (SoftHSM2 token, embedded Postgres unless DATABASE_URL, private Redis unless REDIS_URL).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
exec node bin/kms.mjs quickstart "$@"
