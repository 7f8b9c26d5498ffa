-- The metadata of hsm-kms. Postgres is the source of truth for metadata; the HSM holds material.

CREATE TABLE instances (
  id                 text PRIMARY KEY,                 -- kst-…
  name               text NOT NULL,
  type               text NOT NULL CHECK (type IN ('SOFTWARE', 'HSM')),
  key_quota          integer NOT NULL CHECK (key_quota >= 0),
  qps                integer NOT NULL CHECK (qps > 0),
  -- Versions counted against key_quota; updated in the same transaction that inserts a version,
  -- under a row lock on this instance, so concurrency can never overshoot the quota.
  used_keys          integer NOT NULL DEFAULT 0 CHECK (used_keys >= 0),
  key_storage        text NOT NULL DEFAULT 'HsmInternal' CHECK (key_storage IN ('HsmInternal', 'HsmEncryptedDatabase', 'Database')),
  status             text NOT NULL DEFAULT 'Connected',
  created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE keys (
  id                        text PRIMARY KEY,           -- key-…
  instance_id               text REFERENCES instances(id),  -- NULL: a default key
  protection_level          text NOT NULL CHECK (protection_level IN ('SOFTWARE', 'HSM')),
  key_spec                  text NOT NULL,
  key_usage                 text NOT NULL,
  origin                    text NOT NULL CHECK (origin IN ('Aliyun_KMS', 'EXTERNAL')),
  state                     text NOT NULL CHECK (state IN ('Enabled', 'Disabled', 'PendingDeletion', 'PendingImport')),
  description               text NOT NULL DEFAULT '',
  creator                   text NOT NULL DEFAULT '',
  deletion_protection       boolean NOT NULL DEFAULT false,
  deletion_protection_description text NOT NULL DEFAULT '',
  delete_date               timestamptz,
  -- Disabled | Enabled | Suspended (Alibaba's AutomaticRotation)
  automatic_rotation        text NOT NULL DEFAULT 'Disabled',
  rotation_interval_seconds integer,
  last_rotation_date        timestamptz,
  next_rotation_date        timestamptz,
  primary_version_id        uuid,
  -- Seed 000: a key is bound forever to its first imported material; the fingerprint is a MAC
  -- of a fixed block under the material, computed inside the HSM.
  material_fingerprint      bytea,
  material_expire_at        timestamptz,
  -- State to return to when a PendingDeletion key is cancelled (Enabled or PendingImport).
  created_at                timestamptz NOT NULL DEFAULT now(),
  updated_at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX keys_instance_idx ON keys (instance_id);
CREATE INDEX keys_state_idx ON keys (state);

CREATE TABLE key_versions (
  id             uuid PRIMARY KEY,
  key_id         text NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
  instance_id    text REFERENCES instances(id),
  -- 'token': an HSM object whose CKA_ID is this id; 'sealed': material sealed under the root key.
  storage        text NOT NULL CHECK (storage IN ('token', 'sealed')),
  sealed_material bytea,
  -- false once imported material expired or was deleted (the row, and the id inside old
  -- ciphertexts, stay: re-importing the same material revives the version).
  has_material   boolean NOT NULL DEFAULT true,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX key_versions_key_idx ON key_versions (key_id, created_at);

CREATE TABLE aliases (
  name        text PRIMARY KEY,
  key_id      text NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX aliases_key_idx ON aliases (key_id);

CREATE TABLE key_tags (
  key_id     text NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
  tag_key    text NOT NULL,
  tag_value  text NOT NULL,
  PRIMARY KEY (key_id, tag_key)
);

CREATE TABLE wrapping_keys (
  id              text PRIMARY KEY,                    -- CKA_ID of the private half in the token
  public_key_der  bytea NOT NULL,
  -- NULL while the pair waits in the pre-generated pool; set when handed out for a key.
  key_id          text REFERENCES keys(id) ON DELETE CASCADE,
  algorithm       text,
  issued_at       timestamptz,
  expires_at      timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX wrapping_keys_pool_idx ON wrapping_keys (created_at) WHERE key_id IS NULL;

CREATE TABLE import_tokens (
  -- Tokens are self-contained (MAC'd in the HSM); this table records issuance for audit and cleanup.
  wrapping_key_id text PRIMARY KEY REFERENCES wrapping_keys(id) ON DELETE CASCADE,
  key_id          text NOT NULL REFERENCES keys(id) ON DELETE CASCADE,
  algorithm       text NOT NULL,
  expires_at      timestamptz NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE access_keys (
  id               text PRIMARY KEY,
  -- The secret, sealed under the HSM root key: never stored in clear.
  sealed_secret    bytea NOT NULL,
  role             text NOT NULL CHECK (role IN ('admin', 'key-user')),
  instance_ids     text[],                              -- NULL: every instance
  status           text NOT NULL DEFAULT 'Enabled' CHECK (status IN ('Enabled', 'Disabled')),
  description      text NOT NULL DEFAULT '',
  created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_events (
  id             bigserial PRIMARY KEY,
  at             timestamptz NOT NULL DEFAULT now(),
  request_id     text,
  access_key_id  text,
  action         text NOT NULL,
  key_id         text,
  detail         jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_key_idx ON audit_events (key_id, at);
