-- ListKeys answers TotalCount with every page. Counting 100,000 keys (an index-only scan) took
-- ~50 ms of a loaded 2-core machine per page, more than the page itself; the instance row now
-- keeps its key count too, moved by store/quota.ts in the same statement as versions_used (the
-- row is already locked there, so it costs no extra statement or lock). ListKeys without
-- filters, or filtered by instance only, adds these to a count of the default keys (those
-- without an instance); other filters still count.
ALTER TABLE instances ADD COLUMN keys_used integer NOT NULL DEFAULT 0 CHECK (keys_used >= 0);
UPDATE instances i SET keys_used = k.n
  FROM (SELECT instance_id, count(*) AS n FROM keys WHERE instance_id IS NOT NULL GROUP BY instance_id) k
 WHERE k.instance_id = i.id;
