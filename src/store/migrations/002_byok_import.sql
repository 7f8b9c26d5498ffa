-- BYOK import (issue #4, seed 000).

-- Whether the private half may also C_Decrypt with CKM_RSA_X_509: only pairs generated while
-- the host OAEP fallback was allowed (KMS_IMPORT_STRICT=false) may. The pool hands out pairs
-- of the current mode only, so switching strict mode on never issues a pair that can do raw
-- RSA, and switching it off never issues one that cannot do the fallback.
ALTER TABLE wrapping_keys ADD COLUMN raw_decrypt boolean NOT NULL DEFAULT true;
DROP INDEX IF EXISTS wrapping_keys_pool_idx;
CREATE INDEX wrapping_keys_pool_idx ON wrapping_keys (raw_decrypt, created_at) WHERE key_id IS NULL;
-- The cleanup job destroys issued pairs once their import token has expired.
CREATE INDEX wrapping_keys_expiry_idx ON wrapping_keys (expires_at) WHERE expires_at IS NOT NULL;

-- The expiry sweeper finds imported material that is due.
CREATE INDEX keys_material_expiry_idx ON keys (material_expire_at) WHERE material_expire_at IS NOT NULL;
