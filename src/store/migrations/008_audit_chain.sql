-- Issue 17: the audit trail becomes hash-chained, sharded, and signed by digests.
-- The unchained events written so far are kept, read-only history, under their old shape.
ALTER TABLE audit_events RENAME TO audit_events_unchained;
ALTER INDEX audit_events_key_idx RENAME TO audit_events_unchained_key_idx;

-- One row per event. hash = SHA-256 over the canonical serialisation of the row's own columns
-- (domain/audit.ts eventPreimage); detail is canonical JSON *text*, stored exactly as hashed.
CREATE TABLE audit_events (
  chain_id        smallint    NOT NULL,
  seq             bigint      NOT NULL,
  at              timestamptz NOT NULL,
  request_id      text,
  access_key_id   text,
  source_ip       text,
  action          text        NOT NULL,
  key_id          text,
  key_version_id  text,
  result_code     text        NOT NULL,
  detail          text        NOT NULL,
  prev_hash       text        NOT NULL,
  hash            text        NOT NULL,
  PRIMARY KEY (chain_id, seq)
);
CREATE INDEX audit_events_key_idx ON audit_events (key_id, at);
CREATE INDEX audit_events_at_idx ON audit_events (at);

-- The head of each chain, locked FOR UPDATE only at append time (the end of a transaction).
CREATE TABLE audit_chain_heads (
  chain_id  smallint PRIMARY KEY,
  seq       bigint   NOT NULL DEFAULT 0,
  hash      text     NOT NULL DEFAULT repeat('0', 64)
);
INSERT INTO audit_chain_heads (chain_id) SELECT generate_series(0, 15);

-- Signed digests, per chain: the last hash and count up to a seq, linked to the previous digest.
CREATE TABLE audit_digests (
  chain_id          smallint    NOT NULL,
  digest_seq        bigint      NOT NULL,
  first_seq         bigint      NOT NULL,
  last_seq          bigint      NOT NULL,
  event_count       bigint      NOT NULL,
  first_at          timestamptz NOT NULL,
  last_at           timestamptz NOT NULL,
  last_hash         text        NOT NULL,
  prev_digest_hash  text        NOT NULL,
  created_at        timestamptz NOT NULL,
  digest_hash       text        NOT NULL,
  -- DER ECDSA P-256 signature over the digest's canonical serialisation, made in the HSM.
  signature         bytea       NOT NULL,
  -- SHA-256 of the signing public key (DER SPKI): which of the token's digest keys signed.
  signing_key_id    text        NOT NULL,
  PRIMARY KEY (chain_id, digest_seq)
);
