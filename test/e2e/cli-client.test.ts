import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 3, the `kms` client verbs (key, alias, tag), spawned as a user runs them against a
 * running server: JSON on stdout, `--table`, `Code: Message (RequestId)` and exit 1 on a
 * refusal, and the three places credentials come from. Also `kms instance update` (an
 * operator verb on the local store).
 */
const run = promisify(execFile);
const BIN = path.resolve('bin/kms.mjs');
/** A spawn takes ~0.2 s compiled, 1–2 s through tsx (dist/ stale); a verb-heavy test needs room under a parallel run. */
const SLOW = { timeout: 240_000 };

let server: TestServer;
let call: CallApi;
let emptyDataDir: string;

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
  emptyDataDir = await mkdtemp(path.join(tmpdir(), 'kms-cli-'));
});

afterAll(async () => {
  await server?.stop();
  if (emptyDataDir) await rm(emptyDataDir, { recursive: true, force: true });
});

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** `node bin/kms.mjs …` with only the given KMS_* settings (never the developer's .kms/). */
async function kms(args: string[], env: Record<string, string> = {}): Promise<Result> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KMS_') && !k.startsWith('ALIBABA_CLOUD_')));
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], {
      env: { ...base, KMS_DATA_DIR: emptyDataDir, ...env },
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

const asAdmin = () => ({
  KMS_ENDPOINT: server.endpoint,
  KMS_ACCESS_KEY_ID: server.admin.accessKeyId,
  KMS_ACCESS_KEY_SECRET: server.admin.accessKeySecret,
});

async function json<T = Record<string, unknown>>(args: string[], env: Record<string, string> = asAdmin()): Promise<T> {
  const r = await kms(args, env);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as T;
}

describe('kms key …', SLOW, () => {
  it('creates, describes, lists, disables, schedules and cancels deletion, protects, describes, lists versions', async () => {
    const created = await json(['key', 'create', '--instance', server.softwareInstanceId, '--description', 'from the cli', '--tag', 'team=cli', '--rotation-interval', '30d']);
    const keyId = created.KeyId as string;
    expect(created).toMatchObject({ KeyState: 'Enabled', ProtectionLevel: 'SOFTWARE', Description: 'from the cli', RotationInterval: '2592000s' });

    expect(await json(['key', 'describe', keyId])).toMatchObject({ KeyId: keyId, DKMSInstanceId: server.softwareInstanceId });
    expect(await json(['key', 'disable', keyId])).toMatchObject({ KeyId: keyId, KeyState: 'Disabled', AutomaticRotation: 'Suspended' });
    const disabled = await json<Array<{ KeyId: string; KeyArn: string }>>(['key', 'list', '--state', 'Disabled']);
    expect(disabled.map((k) => k.KeyId)).toEqual([keyId]);
    expect(await json(['key', 'enable', keyId])).toMatchObject({ KeyState: 'Enabled' });

    const scheduled = await json(['key', 'schedule-deletion', keyId, '--days', '7']);
    expect(scheduled).toMatchObject({ KeyState: 'PendingDeletion' });
    expect(scheduled.DeleteDate).toMatch(/Z$/);
    expect(await json(['key', 'cancel-deletion', keyId])).toMatchObject({ KeyState: 'Enabled' });
    expect(await json(['key', 'set-deletion-protection', keyId, '--enable', '--description', 'keep'])).toMatchObject({
      DeletionProtection: 'Enabled',
      DeletionProtectionDescription: 'keep',
    });
    expect(await json(['key', 'update-description', keyId, 'renamed'])).toMatchObject({ Description: 'renamed' });
    const versions = await json<Array<{ KeyId: string; KeyVersionId: string }>>(['key', 'versions', keyId]);
    expect(versions).toEqual([expect.objectContaining({ KeyId: keyId, KeyVersionId: created.PrimaryKeyVersion })]);

    // `key list` without --page follows every page.
    for (let i = 0; i < 3; i++) await call('CreateKey', {});
    const all = await json<unknown[]>(['key', 'list']);
    const total = (await call('ListKeys', {})).TotalCount as number;
    expect(all).toHaveLength(total);
    expect(await json<unknown[]>(['key', 'list', '--page', '1', '--page-size', '2'])).toHaveLength(2);
  });

  it('prints a readable table with --table: a header, a rule, one row per item (or per field)', async () => {
    const keyId = (await call('CreateKey', { Description: 'tabled' })).KeyMetadata.KeyId as string;
    // (In the SOFTWARE instance: a later test counts the HSM instance's keys.)
    const ecKeyId = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, KeySpec: 'EC_P256', KeyUsage: 'SIGN/VERIFY' })).KeyMetadata.KeyId as string;
    const list = await kms(['key', 'list', '--table'], asAdmin());
    expect(list.code).toBe(0);
    const [header, rule, ...rows] = list.stdout.trimEnd().split('\n');
    // key list --table describes each key: what it is, not only its id.
    expect(header).toMatch(/^KeyId\s+State\s+Spec\s+Usage\s+Protection\s+Instance\s+Description$/);
    expect(rule).toMatch(/^-+(\s+-+){6}$/);
    expect(rows.find((r) => r.startsWith(keyId))).toMatch(new RegExp(`^${keyId}\\s+Enabled\\s+Aliyun_AES_256\\s+ENCRYPT/DECRYPT\\s+SOFTWARE\\s+tabled$`));
    expect(rows.find((r) => r.startsWith(ecKeyId))).toMatch(new RegExp(`^${ecKeyId}\\s+Enabled\\s+EC_P256\\s+SIGN/VERIFY\\s+SOFTWARE\\s+${server.softwareInstanceId}$`));
    expect(rows).toHaveLength((await call('ListKeys', { PageSize: 100 })).TotalCount as number);

    const one = await kms(['key', 'describe', keyId, '--table'], asAdmin());
    const lines = one.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^Field\s+Value$/);
    expect(lines).toContainEqual(expect.stringMatching(/^KeyState\s+Enabled$/));
    expect(lines).toContainEqual(expect.stringMatching(/^Description\s+tabled$/));
  });

  it('reports an API refusal as `Code: Message (RequestId)` on stderr and exits 1', async () => {
    const r = await kms(['key', 'describe', 'key-hzzdoesnotexist0000000000'], asAdmin());
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim()).toMatch(/^Forbidden\.KeyNotFound: The specified Key is not found\. \([0-9A-F-]{36}\)$/);
    const invalid = await kms(['key', 'schedule-deletion', 'key-x', '--days', '3'], asAdmin());
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toMatch(/^InvalidParameter: The specified parameter "PendingWindowInDays" is not valid/);
  });
});

describe('kms alias … and kms tag …', SLOW, () => {
  it('manages aliases', async () => {
    const a = (await call('CreateKey', {})).KeyMetadata.KeyId as string;
    const b = (await call('CreateKey', {})).KeyMetadata.KeyId as string;
    expect(await json(['alias', 'create', 'alias/cli/app', a])).toEqual({ AliasName: 'alias/cli/app', KeyId: a });
    const listed = await json<Array<{ AliasName: string; KeyId: string; AliasArn: string }>>(['alias', 'list', '--key', a]);
    expect(listed).toEqual([{ AliasName: 'alias/cli/app', KeyId: a, AliasArn: `acs:kms:${server.config.region}:${server.config.accountId}:alias/cli/app` }]);
    await json(['alias', 'update', 'alias/cli/app', b]);
    expect((await json(['key', 'describe', 'alias/cli/app'])).KeyId).toBe(b);
    expect((await json<Array<{ AliasName: string }>>(['alias', 'list'])).map((x) => x.AliasName)).toContain('alias/cli/app');
    expect(await json(['alias', 'delete', 'alias/cli/app'])).toEqual({ AliasName: 'alias/cli/app', Deleted: true });
    const dup = await kms(['alias', 'create', 'alias/acs/reserved', a], asAdmin());
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/^InvalidParameter: /);
  });

  it('manages tags', async () => {
    const keyId = (await call('CreateKey', {})).KeyMetadata.KeyId as string;
    expect(await json(['tag', 'add', keyId, 'env=prod', 'expr=a=b'])).toEqual([
      { TagKey: 'env', TagValue: 'prod' },
      { TagKey: 'expr', TagValue: 'a=b' },
    ]);
    expect(await json(['tag', 'remove', keyId, 'env'])).toEqual([{ TagKey: 'expr', TagValue: 'a=b' }]);
    expect(await json(['tag', 'list', keyId])).toEqual([{ TagKey: 'expr', TagValue: 'a=b' }]);
    const bad = await kms(['tag', 'add', keyId, 'acs:owner=me'], asAdmin());
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^InvalidParameter: /);
  });
});

describe('where the CLI finds its endpoint and credentials', SLOW, () => {
  it('reads <KMS_DATA_DIR>/credentials.json when neither flags nor env are set', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'kms-cli-creds-'));
    try {
      await writeFile(
        path.join(dataDir, 'credentials.json'),
        JSON.stringify({ AccessKeyId: server.admin.accessKeyId, AccessKeySecret: server.admin.accessKeySecret, Endpoint: server.endpoint }),
        { mode: 0o600 },
      );
      const created = await json(['key', 'create', '--description', 'via file'], { KMS_DATA_DIR: dataDir });
      expect(created.Description).toBe('via file');
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('flags win over the environment', async () => {
    const r = await kms(['key', 'list', '--access-key-secret', 'not-the-secret'], asAdmin());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^SignatureDoesNotMatch: /);
    const viaFlags = await kms(
      ['key', 'list', '--endpoint', `http://${server.endpoint}`, '--access-key-id', server.admin.accessKeyId, '--access-key-secret', server.admin.accessKeySecret],
      {},
    );
    expect(viaFlags.code).toBe(0);
  });

  it('names the endpoint and the likely cause when nothing answers there, instead of "fetch failed"', async () => {
    const closedPort = await new Promise<number>((resolve) => {
      const probe = createServer();
      probe.listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as AddressInfo;
        probe.close(() => resolve(port));
      });
    });
    const viaFlag = await kms(['key', 'list', '--endpoint', `127.0.0.1:${closedPort}`], asAdmin());
    expect(viaFlag.code).toBe(1);
    expect(viaFlag.stderr).toContain(`kms: cannot reach the KMS at http://127.0.0.1:${closedPort} (endpoint from --endpoint): connection refused`);
    expect(viaFlag.stderr).toContain('npm run quickstart');
    expect(viaFlag.stderr).not.toContain('fetch failed');

    // The endpoint of a stopped quickstart, from its credentials file: the file is named.
    const dataDir = await mkdtemp(path.join(tmpdir(), 'kms-cli-stopped-'));
    try {
      const file = path.join(dataDir, 'credentials.json');
      await writeFile(file, JSON.stringify({ AccessKeyId: server.admin.accessKeyId, AccessKeySecret: server.admin.accessKeySecret, Endpoint: `127.0.0.1:${closedPort}` }));
      const viaFile = await kms(['key', 'describe', 'key-x'], { KMS_DATA_DIR: dataDir });
      expect(viaFile.code).toBe(1);
      expect(viaFile.stderr).toContain(`cannot reach the KMS at http://127.0.0.1:${closedPort} (endpoint from ${file}`);
      expect(viaFile.stderr).toContain('Is it running?');
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('says where to put credentials when there are none', async () => {
    const r = await kms(['key', 'list'], {});
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('KMS_ENDPOINT');
  });
});

describe('kms instance update (operator verb on the local store)', SLOW, () => {
  it('changes the key quota and QPS, and refuses a quota below what is used', async () => {
    const local = {
      DATABASE_URL: server.databaseUrl,
      REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
      KMS_DATA_DIR: server.token.dataDir,
      KMS_HSM_TOKEN_LABEL: server.token.label,
      KMS_HSM_PIN: server.token.userPin,
      SOFTHSM2_CONF: server.token.confPath,
    };
    const updated = await json(['instance', 'update', server.hsmInstanceId, '--key-quota', '321', '--qps', '77'], local);
    expect(updated).toMatchObject({ InstanceId: server.hsmInstanceId, KeyNum: 321, Spec: 77 });
    const viaApi = await call('GetKmsInstanceQuotaInfos', { KmsInstanceId: server.hsmInstanceId });
    expect(viaApi.KmsInstanceQuotaInfos).toContainEqual({ ResourceType: 'key', ResourceQuota: 321, UsedQuantity: 0 });
    expect(viaApi.KmsInstanceQuotaInfos).toContainEqual({ ResourceType: 'qps', ResourceQuota: 77, UsedQuantity: 0 });

    await call('CreateKey', { DKMSInstanceId: server.hsmInstanceId });
    const tooLow = await kms(['instance', 'update', server.hsmInstanceId, '--key-quota', '0'], local);
    expect(tooLow.code).toBe(1);
    expect(tooLow.stderr).toContain('KeyQuota');
  });
});
