-- Usage per key version (issue 17): how many times each version has sealed with AES-GCM and a
-- random 96-bit IV. NIST SP 800-38D §8.3 bounds that at 2^32 invocations per key; the service
-- warns from 2^31 (domain/version-usage.ts). Counted in memory per process and added here in
-- batches (services/version-usage.ts), never one write per call.
ALTER TABLE key_versions ADD COLUMN encryption_count bigint NOT NULL DEFAULT 0;

-- The metrics scrape counts versions past the warning mark; this keeps that count an index
-- lookup over the few such versions instead of a scan of every version.
CREATE INDEX key_versions_encryption_warning_idx ON key_versions (id) WHERE encryption_count >= 2147483648;
