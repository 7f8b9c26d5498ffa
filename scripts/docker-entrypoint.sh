#!/bin/sh
# Container entrypoint: before `kms serve` or `kms worker`, make sure the SoftHSM2 token exists
# on the /data volume and the schema is current. Both steps are idempotent and safe when the
# serve and worker containers start together (token provisioning takes a lock file, migrations
# a Postgres advisory lock). Any other command runs as given.
set -eu

case "${1:-}:${2:-}:${3:-}" in
  node:bin/kms.mjs:serve | node:bin/kms.mjs:worker)
    node bin/kms.mjs hsm init
    node bin/kms.mjs migrate
    ;;
esac

exec "$@"
