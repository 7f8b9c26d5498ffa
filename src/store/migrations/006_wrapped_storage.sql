-- HsmEncryptedDatabase storage (issue 16, Alibaba's KeyStorageMechanism): a version's key is
-- held as an AES-KWP blob under the HSM's trusted master wrapping key, in the version row
-- itself (same transaction as the row: no token object per version, nothing to reconcile).
ALTER TABLE key_versions ADD COLUMN wrapped_material bytea;

-- Only wrapped versions carry a blob, and a wrapped version has material exactly when it has its blob.
ALTER TABLE key_versions ADD CONSTRAINT key_versions_wrapped_material_check
  CHECK (CASE WHEN storage = 'wrapped' THEN has_material = (wrapped_material IS NOT NULL) ELSE wrapped_material IS NULL END);
