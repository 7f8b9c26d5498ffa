-- The cache-change journal (issue 19): what each committed write changed for the metadata
-- caches, inserted in the write's own transaction right before its COMMIT. Every node reads the
-- last few seconds of it about once a second (cache/change-journal.ts): the backstop for an
-- invalidation that never went out on Redis pub/sub — the writer killed between its COMMIT and
-- its PUBLISH left the other nodes serving a disabled key, or an alias's old key, until the
-- cache's maximum age (60 s). Rows older than a few minutes are pruned by the readers.
CREATE TABLE cache_changes (
  seq bigserial PRIMARY KEY,
  changes jsonb NOT NULL,
  -- The writing node's cache invalidation id, which applied the changes itself (NULL: a process without caches).
  origin text,
  at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX cache_changes_at ON cache_changes (at);
