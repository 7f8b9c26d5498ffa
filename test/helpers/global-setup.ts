import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { createDb } from '../../src/store/db.js';
import { migrate } from '../../src/store/migrate.js';

/**
 * Once per run: a migrated template database (`kms_test_<run>_tmpl`); every test file clones
 * it (`CREATE DATABASE … TEMPLATE …`), so files run in parallel on databases of their own.
 * Everything this run created is dropped at the end.
 */
export default async function setup(): Promise<() => Promise<void>> {
  const baseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const runId = `kms_test_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  const template = `${runId}_tmpl`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${template}`);
  const templateDb = createDb(withDatabase(baseUrl, template), 1);
  await migrate(templateDb);
  await templateDb.end();
  await admin.end();

  process.env.KMS_TEST_DATABASE_BASE_URL = baseUrl;
  process.env.KMS_TEST_RUN_ID = runId;
  process.env.KMS_TEST_TEMPLATE_DB = template;

  return async () => {
    const client = new pg.Client({ connectionString: baseUrl });
    await client.connect();
    const { rows } = await client.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname LIKE $1', [`${runId}%`]);
    for (const { datname } of rows) {
      await client.query(`DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`).catch(() => undefined);
    }
    await client.end();
  };
}

export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}
