#!/bin/sh
# Container entrypoint (also runnable outside a container: test/e2e/docker-entrypoint.test.ts).
# Before `kms serve` or `kms worker` it makes sure the SoftHSM2 token exists on the data volume
# and the schema is current; before `kms serve` also that instances exist: `hsm-default` and
# `software-default` unless instances of those types exist, then the seed file KMS_SEED_FILE
# (instances, keys, aliases, known BYOK material, access keys) when it is set. Every step is
# idempotent and safe when the serve and worker containers start together (token provisioning
# takes a lock file, migrations a Postgres advisory lock). Any other command runs as given.
set -eu

kms() { node bin/kms.mjs "$@"; }
say() { printf 'entrypoint: %s\n' "$*"; }

case "${1:-}:${2:-}:${3:-}" in
  node:bin/kms.mjs:serve | node:bin/kms.mjs:worker)
    kms hsm init >/dev/null
    say "HSM token ready under ${KMS_DATA_DIR:-.kms}/hsm"
    kms migrate >/dev/null
    say "database schema current"
    ;;
esac

if [ "${1:-}:${2:-}:${3:-}" = "node:bin/kms.mjs:serve" ]; then
  instances="$(kms instance ensure-defaults)"
  say "instances: $(printf '%s' "${instances}" | tr -d '\n ')"
  if [ -n "${KMS_SEED_FILE:-}" ]; then
    say "applying the seed file ${KMS_SEED_FILE}"
    kms seed "${KMS_SEED_FILE}"
  fi
  if [ -n "${KMS_BOOTSTRAP_ACCESS_KEY_ID:-}" ]; then
    say "admin access key pinned by KMS_BOOTSTRAP_ACCESS_KEY_ID=${KMS_BOOTSTRAP_ACCESS_KEY_ID} (its secret: KMS_BOOTSTRAP_ACCESS_KEY_SECRET)"
  fi
  say "credentials (AccessKeyId, AccessKeySecret, Endpoint) go to ${KMS_DATA_DIR:-.kms}/credentials.json once the API listens;"
  say "  from the host: docker compose exec kms cat ${KMS_DATA_DIR:-.kms}/credentials.json — endpoint 127.0.0.1:${KMS_PORT:-8080}, protocol http"
fi

exec "$@"
