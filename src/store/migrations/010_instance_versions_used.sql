-- Key quota use kept on the instance row (issue 16): every version insert used to count the
-- instance's versions (count(*)) while holding the instance's row lock, which costs more the
-- more versions there are and serialised every CreateKey behind it. store/quota.ts is the one
-- place that changes this number, in the same transaction as the versions it counts, under the
-- row lock its UPDATE takes; it always equals count(*) of the instance's key_versions.
ALTER TABLE instances ADD COLUMN versions_used integer NOT NULL DEFAULT 0 CHECK (versions_used >= 0);
UPDATE instances i SET versions_used = v.n
  FROM (SELECT instance_id, count(*) AS n FROM key_versions WHERE instance_id IS NOT NULL GROUP BY instance_id) v
 WHERE v.instance_id = i.id;
