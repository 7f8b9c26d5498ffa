-- Versions as first-class objects (issue 14, seed 002): each version has an ordinal, a state
-- and its own material (fingerprint, expiry); the key has its storage mechanism, a primary
-- version that must exist, and its rotation status. The key quota has one source of truth:
-- the versions themselves (seed 002: V1, V2, V3 consume 3 units).

-- Ordinal: 1, 2, … per key, in creation order.
ALTER TABLE key_versions ADD COLUMN ordinal integer;
UPDATE key_versions v SET ordinal = s.n
  FROM (SELECT id, row_number() OVER (PARTITION BY key_id ORDER BY created_at, id) AS n FROM key_versions) s
  WHERE v.id = s.id;
ALTER TABLE key_versions ALTER COLUMN ordinal SET NOT NULL;
ALTER TABLE key_versions ADD CONSTRAINT key_versions_ordinal_unique UNIQUE (key_id, ordinal);

-- Enabled: usable (the primary one encrypts); PendingRotation: new imported material waiting
-- to be rotated in (seed 002, BYOK rotation). At most one pending version per key.
ALTER TABLE key_versions ADD COLUMN state text NOT NULL DEFAULT 'Enabled'
  CHECK (state IN ('Enabled', 'PendingRotation'));
CREATE UNIQUE INDEX key_versions_one_pending ON key_versions (key_id) WHERE state = 'PendingRotation';

-- 'wrapped' is room for the HSM-wrapped storage of the performance work (issue 16).
ALTER TABLE key_versions DROP CONSTRAINT key_versions_storage_check;
ALTER TABLE key_versions ADD CONSTRAINT key_versions_storage_check CHECK (storage IN ('token', 'sealed', 'wrapped'));

-- Seed 000's binding and MaterialExpireTime belong to the material, so to the version.
ALTER TABLE key_versions ADD COLUMN material_fingerprint bytea;
ALTER TABLE key_versions ADD COLUMN material_expire_at timestamptz;
UPDATE key_versions v SET material_fingerprint = k.material_fingerprint, material_expire_at = k.material_expire_at
  FROM keys k WHERE v.id = k.primary_version_id;
CREATE INDEX key_versions_material_expiry_idx ON key_versions (material_expire_at) WHERE material_expire_at IS NOT NULL;
CREATE INDEX key_versions_instance_idx ON key_versions (instance_id);
DROP INDEX IF EXISTS keys_material_expiry_idx;
ALTER TABLE keys DROP COLUMN material_fingerprint;
ALTER TABLE keys DROP COLUMN material_expire_at;

-- The key's storage mechanism (hardware keys), persisted rather than re-derived.
ALTER TABLE keys ADD COLUMN key_storage_mechanism text
  CHECK (key_storage_mechanism IN ('HsmInternal', 'HsmEncryptedDatabase'));
UPDATE keys SET key_storage_mechanism = 'HsmInternal' WHERE protection_level = 'HSM';

-- The primary version exists, always. Deferred: CreateKey inserts the key, then its version.
ALTER TABLE keys ADD CONSTRAINT keys_primary_version_fk
  FOREIGN KEY (primary_version_id) REFERENCES key_versions (id) DEFERRABLE INITIALLY DEFERRED;

-- Why the last due automatic rotation did not happen (the quota, say); NULL once one succeeds.
ALTER TABLE keys ADD COLUMN rotation_failure text;
CREATE INDEX keys_rotation_due_idx ON keys (next_rotation_date) WHERE automatic_rotation = 'Enabled';

-- Deletion worker: keys whose DeleteDate has passed.
CREATE INDEX keys_delete_date_idx ON keys (delete_date) WHERE state = 'PendingDeletion';

-- One source of truth for the key quota: count(key_versions) per instance.
ALTER TABLE instances DROP COLUMN used_keys;
