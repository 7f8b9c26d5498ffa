-- ListKeys pages keys in creation order (ORDER BY created_at, id LIMIT … OFFSET …, the API's
-- PageNumber): without an index in that order Postgres sorted every key for every page (with
-- 100,000 keys ~290 ms, spilling to disk). With these, a page is an index-only walk to its
-- offset and 100 primary-key lookups (store/keys.ts listKeys), also for one instance's keys
-- (a key-user limited to instances). The instance index gains the order columns instead of
-- adding one more index to every CreateKey; its leading column still serves the foreign key.
CREATE INDEX keys_list_order_idx ON keys (created_at, id);
CREATE INDEX keys_instance_list_order_idx ON keys (instance_id, created_at, id);
DROP INDEX keys_instance_idx;
