import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { withDatabase } from './global-setup.js';

/** A fresh database cloned from the run's migrated template. */
export async function createTestDatabase(): Promise<string> {
  const baseUrl = process.env.KMS_TEST_DATABASE_BASE_URL;
  const runId = process.env.KMS_TEST_RUN_ID;
  const template = process.env.KMS_TEST_TEMPLATE_DB;
  if (!baseUrl || !runId || !template) throw new Error('The test global setup did not run (see vitest.config.ts).');
  const name = `${runId}_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: baseUrl });
  await admin.connect();
  try {
    // CREATE DATABASE … TEMPLATE needs the template to be idle; parallel files may collide briefly.
    for (let attempt = 0; ; attempt++) {
      try {
        await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
        break;
      } catch (error) {
        if (attempt >= 20) throw error;
        await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
      }
    }
  } finally {
    await admin.end();
  }
  return withDatabase(baseUrl, name);
}
