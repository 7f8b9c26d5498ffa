-- Idempotency keys (issue 19, item 6): a creating call that carries a client token
-- (ClientToken or the x-kms-idempotency-key header) reserves the id of what it creates here,
-- in its own committed statement, before it creates it; a retry with the same token finds the
-- id (and the thing, if that commit happened) instead of creating a second one. Rows count
-- for 24 hours (services/idempotency.ts) and are purged after that, a few at a time.
CREATE TABLE idempotency_keys (
  action text NOT NULL,
  client_token text NOT NULL,
  params_sha256 bytea NOT NULL,
  resource_id text NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (action, client_token)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
