import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sendV1 } from '../helpers/raw-rpc.js';
import { type ServeProcess, startServeProcess } from '../helpers/serve-process.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 17, usage per key version: every AES-GCM encryption under a version is counted (in
 * memory per process, flushed in batches), summed across processes, shown by
 * DescribeKeyVersion as `EncryptionCount`, with a warning from 2^31 (NIST SP 800-38D's 2^32
 * random-IV bound).
 */
let a: TestServer;
let b: TestServer;
/** Two more nodes of a's deployment as their own OS processes. */
let nodes: ServeProcess[] = [];

beforeAll(async () => {
  a = await startServer({ env: { KMS_USAGE_FLUSH_MS: '200' } });
  b = await startServer({ databaseUrl: a.databaseUrl, env: { KMS_USAGE_FLUSH_MS: '200' } });
  nodes = await Promise.all([startServeProcess(a, { KMS_USAGE_FLUSH_MS: '200' }), startServeProcess(a, { KMS_USAGE_FLUSH_MS: '200' })]);
}, 180_000);

afterAll(async () => {
  await Promise.all(nodes.map((node) => node.stop()));
  await b?.stop();
  await a?.stop();
});

async function createKey(server: TestServer, instanceId: string): Promise<{ keyId: string; versionId: string }> {
  const answer = await sendV1(server.endpoint, 'CreateKey', { DKMSInstanceId: instanceId }, server.admin);
  expect(answer.status, answer.text).toBe(200);
  const meta = answer.body.KeyMetadata as { KeyId: string; PrimaryKeyVersion: string };
  return { keyId: meta.KeyId, versionId: meta.PrimaryKeyVersion };
}

async function describeVersion(server: TestServer, keyId: string, versionId: string): Promise<Record<string, unknown>> {
  const answer = await sendV1(server.endpoint, 'DescribeKeyVersion', { KeyId: keyId, KeyVersionId: versionId }, server.admin);
  expect(answer.status, answer.text).toBe(200);
  return answer.body.KeyVersion as Record<string, unknown>;
}

/** Polls DescribeKeyVersion until `EncryptionCount` is `expected` (or the deadline passes); returns the last answer. */
async function countReaches(keyId: string, versionId: string, expected: number, deadlineMs = 20_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const version = await describeVersion(a, keyId, versionId);
    if (version.EncryptionCount === expected || Date.now() > deadline) return version;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('usage per key version', () => {
  it.each(['hsm', 'software'] as const)('N encryptions on two kms serve processes show as N in DescribeKeyVersion (%s tier)', async (tier) => {
    const instanceId = tier === 'hsm' ? a.hsmInstanceId : a.softwareInstanceId;
    const { keyId, versionId } = await createKey(a, instanceId);
    expect(await describeVersion(b, keyId, versionId)).toMatchObject({ KeyVersionId: versionId, EncryptionCount: 0 });
    const N = 24;
    const answers = await Promise.all(
      Array.from({ length: N }, (_, i) => {
        const endpoint = nodes[i % 2]!.endpoint;
        // Encrypt and GenerateDataKey both seal under the primary version with a random IV.
        return i % 3 === 0
          ? sendV1(endpoint, 'GenerateDataKey', { KeyId: keyId }, a.admin)
          : sendV1(endpoint, 'Encrypt', { KeyId: keyId, Plaintext: `m${i}` }, a.admin);
      }),
    );
    expect(answers.map((r) => r.status)).toEqual(Array(N).fill(200));
    // A Decrypt draws no IV: not counted.
    const blob = answers.find((r) => r.body.CiphertextBlob)!.body.CiphertextBlob as string;
    expect((await sendV1(b.endpoint, 'Decrypt', { CiphertextBlob: blob }, b.admin)).status).toBe(200);

    const version = await countReaches(keyId, versionId, N);
    expect(version.EncryptionCount).toBe(N);
    expect(version).not.toHaveProperty('EncryptionCountWarning');
  });

  it('counts per version: after a rotation the new primary version counts, the old one keeps its count', async () => {
    const { keyId, versionId: first } = await createKey(a, a.softwareInstanceId);
    for (let i = 0; i < 3; i += 1) expect((await sendV1(a.endpoint, 'Encrypt', { KeyId: keyId, Plaintext: 'x' }, a.admin)).status).toBe(200);
    const rotated = await sendV1(a.endpoint, 'CreateKeyVersion', { KeyId: keyId }, a.admin);
    const second = (rotated.body.KeyVersion as { KeyVersionId: string }).KeyVersionId;
    for (let i = 0; i < 2; i += 1) expect((await sendV1(a.endpoint, 'Encrypt', { KeyId: keyId, Plaintext: 'y' }, a.admin)).status).toBe(200);
    expect((await countReaches(keyId, first, 3)).EncryptionCount).toBe(3);
    expect((await countReaches(keyId, second, 2)).EncryptionCount).toBe(2);
  });

  it('a server that stops writes the counts it holds (flush on close)', async () => {
    const lazy = await startServer({ databaseUrl: a.databaseUrl, env: { KMS_USAGE_FLUSH_MS: '300000' } });
    const { keyId, versionId } = await createKey(lazy, lazy.softwareInstanceId);
    try {
      for (let i = 0; i < 5; i += 1) expect((await sendV1(lazy.endpoint, 'Encrypt', { KeyId: keyId, Plaintext: 'z' }, lazy.admin)).status).toBe(200);
      // No flush for five minutes while it runs.
      expect((await describeVersion(a, keyId, versionId)).EncryptionCount).toBe(0);
    } finally {
      await lazy.stop();
    }
    expect((await describeVersion(a, keyId, versionId)).EncryptionCount).toBe(5);
  });

  it('warns from 2^31 encryptions, the signal to rotate before the 2^32 random-IV bound', async () => {
    const { keyId, versionId } = await createKey(a, a.softwareInstanceId);
    // Nobody makes 2^31 encryptions in a test: the count is set in SQL, then one more is made.
    await a.kms.deps.db.query('UPDATE key_versions SET encryption_count = $2 WHERE id = $1', [versionId, 2 ** 31 - 1]);
    expect(await describeVersion(a, keyId, versionId)).not.toHaveProperty('EncryptionCountWarning');
    expect((await sendV1(b.endpoint, 'Encrypt', { KeyId: keyId, Plaintext: 'w' }, b.admin)).status).toBe(200);
    const version = await countReaches(keyId, versionId, 2 ** 31);
    expect(version.EncryptionCount).toBe(2 ** 31);
    expect(version.EncryptionCountWarning).toMatch(/2\^31.*rotate/);
    await a.kms.deps.db.query('UPDATE key_versions SET encryption_count = $2 WHERE id = $1', [versionId, 2 ** 32]);
    expect((await describeVersion(a, keyId, versionId)).EncryptionCountWarning).toMatch(/reached the 2\^32/);
  });
});
