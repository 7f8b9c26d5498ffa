-- The ops dashboard counts keys per instance by state, origin and protection level in one
-- grouped query (store/dashboard.ts): this index lets Postgres answer it from the index alone
-- (an index-only scan) instead of reading every key row. It also serves keys_instance_idx's
-- lookups (same leading column), which stays for the foreign key's deletes.
CREATE INDEX keys_dashboard_idx ON keys (instance_id, state, origin, protection_level);
