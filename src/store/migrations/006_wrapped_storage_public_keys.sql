-- HsmEncryptedDatabase key pairs (RSA, EC): the private half is the wrapped blob; the public
-- half (DER SubjectPublicKeyInfo, no secret) is kept beside it, since no token object holds it.
ALTER TABLE key_versions ADD COLUMN public_key bytea;
ALTER TABLE key_versions ADD CONSTRAINT key_versions_public_key_check CHECK (public_key IS NULL OR storage = 'wrapped');
