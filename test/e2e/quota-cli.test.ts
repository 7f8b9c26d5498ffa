import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendV1 } from '../helpers/raw-rpc.js';
import { type TestServer, startServer } from '../helpers/server.js';

const run = promisify(execFile);
const BIN = path.resolve('bin/kms.mjs');

/** Issue 17: `kms quota` prints every instance (versions used/total, QPS spec and used) — the API's numbers. */
let server: TestServer;
const prefix = `test-${randomUUID()}`;

beforeAll(async () => {
  server = await startServer({ env: { KMS_QUEUE_PREFIX: prefix } });
});

afterAll(async () => {
  await server?.stop();
});

async function kmsQuota(args: string[]): Promise<string> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KMS_') && !k.startsWith('ALIBABA_CLOUD_')));
  const { stdout } = await run(process.execPath, [BIN, 'quota', ...args], {
    env: {
      ...base,
      DATABASE_URL: server.databaseUrl,
      REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      KMS_DATA_DIR: server.token.dataDir,
      KMS_HSM_TOKEN_LABEL: server.token.label,
      KMS_HSM_PIN: server.token.userPin,
      SOFTHSM2_CONF: server.token.confPath,
      KMS_QUEUE_PREFIX: prefix,
    },
    timeout: 120_000,
  });
  return stdout;
}

describe('kms quota', { timeout: 240_000 }, () => {
  it('lists every instance with versions used/total and the QPS spec, as the API reports them', async () => {
    for (let i = 0; i < 2; i += 1) await sendV1(server.endpoint, 'CreateKey', { DKMSInstanceId: server.hsmInstanceId }, server.admin);
    await sendV1(server.endpoint, 'CreateKey', { DKMSInstanceId: server.softwareInstanceId }, server.admin);

    const rows = JSON.parse(await kmsQuota(['--json'])) as Array<Record<string, unknown>>;
    expect(rows.map((r) => r.InstanceId).sort()).toEqual([server.hsmInstanceId, server.softwareInstanceId].sort());
    for (const row of rows) {
      const infos = await sendV1(server.endpoint, 'GetKmsInstanceQuotaInfos', { KmsInstanceId: String(row.InstanceId) }, server.admin);
      const byType = new Map((infos.body.KmsInstanceQuotaInfos as Array<{ ResourceType: string; ResourceQuota: number; UsedQuantity: number }>).map((q) => [q.ResourceType, q]));
      expect(row).toMatchObject({
        VersionsUsed: byType.get('key')!.UsedQuantity,
        VersionsTotal: byType.get('key')!.ResourceQuota,
        QpsSpec: byType.get('qps')!.ResourceQuota,
      });
      expect(row.QpsUsed).toEqual(expect.any(Number));
    }
    expect(rows.find((r) => r.InstanceId === server.hsmInstanceId)).toMatchObject({ Type: 'HSM', VersionsUsed: 2, KeyQuotaUsedPercent: 1 });

    // The default output is a table: a header, a rule, one line per instance.
    const table = (await kmsQuota([])).trimEnd().split('\n');
    expect(table[0]).toMatch(/^InstanceId\s+Type\s+VersionsUsed\s+VersionsTotal\s+KeyQuotaUsedPercent\s+QpsSpec\s+QpsUsed$/);
    expect(table).toHaveLength(2 + rows.length);
    expect(table.find((l) => l.startsWith(server.hsmInstanceId))).toMatch(/\sHSM\s+2\s+200\s+1\s+1000\s+\d+$/);
  });
});
