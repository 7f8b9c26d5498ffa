-- Alias names are unique and found regardless of case (issue 13; docs/api.md, Aliases):
-- `alias/Orders` and `alias/orders` are one alias, spelled as it was created. Names are ASCII
-- (domain/alias.ts), so lower() means the same under every collation.

-- Installations that already hold names differing only in case must choose which to keep:
-- this migration refuses to guess (and deleting an alias would break whoever uses it).
DO $$
DECLARE
  clashes text;
BEGIN
  SELECT string_agg(names, '; ') INTO clashes FROM (
    SELECT string_agg(name, ', ' ORDER BY name) AS names FROM aliases GROUP BY lower(name) HAVING count(*) > 1
  ) c;
  IF clashes IS NOT NULL THEN
    RAISE EXCEPTION 'Aliases differing only in case exist (%). Delete or rename all but one of each, then migrate again.', clashes;
  END IF;
END $$;

-- Uniqueness and lookups by lower(name) (store/aliases.ts compares lower(name) = lower($1)).
CREATE UNIQUE INDEX aliases_name_lower_unique ON aliases (lower(name));
