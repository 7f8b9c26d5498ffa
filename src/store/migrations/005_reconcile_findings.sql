-- The reconciler's memory between runs (services/reconciler.ts, DESIGN.md "Crash consistency"):
-- what the last run found out of step between Postgres and the HSM. An orphan object is
-- destroyed, and a row whose object is missing is flagged, only when consecutive runs at least
-- the grace period apart found the same thing (an object of a creation still in flight, or a
-- row of a deletion still in flight, is out of step only for a moment).
CREATE TABLE reconcile_findings (
  kind          text NOT NULL CHECK (kind IN ('orphan-version-key', 'orphan-wrapping-pair', 'missing-version-key', 'missing-wrapping-pair')),
  -- The object's CKA_ID: a version id or a wrapping key id.
  object_id     text NOT NULL,
  -- The key of a missing object's row (no foreign key: the finding outlives nothing it names).
  key_id        text,
  first_seen_at timestamptz NOT NULL,
  last_seen_at  timestamptz NOT NULL,
  -- Missing objects: when the row was flagged (logged, counted); never a silent delete.
  flagged_at    timestamptz,
  PRIMARY KEY (kind, object_id)
);
