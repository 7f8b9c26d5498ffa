import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccessKey } from '../../src/services/access.js';
import { systemCaller } from '../../src/services/context.js';
import { deleteKeyIfDue } from '../../src/services/key-deletion.js';
import { rotateKeyIfDue } from '../../src/services/rotation.js';
import { updateKey } from '../../src/store/keys.js';
import { createInstanceIn } from '../helpers/fixtures.js';
import { encodeQuery, sendAcs3 } from '../helpers/raw-rpc.js';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Adversarial pass on the new crypto surface: concurrency on one key, two processes on one
 * database, and hostile values on the new actions. Every refusal must be a documented 4xx.
 */
let a: TestServer;
let b: TestServer;
let callA: CallApi;
let callB: CallApi;

beforeAll(async () => {
  a = await startServer();
  // One deployment: the same database and the same Redis queue prefix, which carries the cache
  // invalidation channel (issue 16), as two `kms serve` of one installation share them.
  b = await startServer({ databaseUrl: a.databaseUrl, env: { KMS_QUEUE_PREFIX: a.config.jobs.queuePrefix } });
  callA = openApiClient(a.endpoint, a.admin);
  callB = openApiClient(b.endpoint, a.admin);
}, 120_000);

afterAll(async () => {
  await b?.stop();
  await a?.stop();
});

type Outcome = { ok: true; body: Record<string, any> } | { ok: false; code: string; status: number | undefined; message: string };
async function outcome(p: () => Promise<Record<string, any>>): Promise<Outcome> {
  try {
    return { ok: true, body: await p() };
  } catch (error) {
    const e = error as { code?: string; statusCode?: number; message: string; data?: any };
    return { ok: false, code: e.data?.Code ?? String(e.code ?? ''), status: e.statusCode ?? e.data?.HttpStatus, message: e.message };
  }
}
/** A refusal with this code and status (never a success, never a 5xx). */
async function refused(p: () => Promise<Record<string, any>>, code: string, status: number) {
  const o = await outcome(p);
  expect(o.ok ? { ok: true } : { code: o.code, status: o.status }, JSON.stringify(o).slice(0, 400)).toEqual({ code, status });
}

async function instance(type: 'HSM' | 'SOFTWARE', keyQuota = 50): Promise<string> {
  return createInstanceIn(a, { type, keyQuota, qps: 10_000 });
}
const versionsOf = async (call: CallApi, keyId: string) =>
  (await call('ListKeyVersions', { KeyId: keyId, PageSize: 100 })).KeyVersions.KeyVersion as Array<{ KeyVersionId: string; CreationDate: string }>;
const usedQuota = async (instanceId: string) =>
  ((await callA('GetKmsInstanceQuotaInfos', { KmsInstanceId: instanceId, ResourceType: 'key' })).KmsInstanceQuotaInfos[0] as { UsedQuantity: number }).UsedQuantity;

describe.each(['HSM', 'SOFTWARE'] as const)('%s: concurrency on one key', (tier) => {
  it('50 Encrypts during 5 parallel CreateKeyVersion: every blob names a version of the key and decrypts; quota = versions', async () => {
    const inst = await instance(tier);
    const keyId = (await callA('CreateKey', { DKMSInstanceId: inst })).KeyMetadata.KeyId as string;
    const encrypts = Array.from({ length: 50 }, (_, i) => outcome(() => (i % 2 ? callA : callB)('Encrypt', { KeyId: keyId, Plaintext: `p${i}` })));
    const rotations = Array.from({ length: 5 }, (_, i) => outcome(() => (i % 2 ? callB : callA)('CreateKeyVersion', { KeyId: keyId })));
    const [enc, rot] = await Promise.all([Promise.all(encrypts), Promise.all(rotations)]);
    for (const o of [...enc, ...rot]) if (!o.ok) expect(o.status, `${o.code} ${o.message}`).toBeLessThan(500);
    expect(enc.every((o) => o.ok)).toBe(true);
    const rotated = rot.filter((o) => o.ok).length;
    // A concurrent write may lose with the documented 409; every other outcome is a success.
    for (const o of rot) if (!o.ok) expect(o.code).toBe('Rejected.StateModifiedFailed');
    const versions = await versionsOf(callA, keyId);
    expect(versions).toHaveLength(1 + rotated);
    expect(new Set(versions.map((v) => v.KeyVersionId)).size).toBe(versions.length);
    const ids = new Set(versions.map((v) => v.KeyVersionId));
    for (const [i, o] of enc.entries()) {
      if (!o.ok) continue;
      expect(ids.has(o.body.KeyVersionId)).toBe(true);
      const d = await (i % 2 ? callB : callA)('Decrypt', { CiphertextBlob: o.body.CiphertextBlob });
      expect([d.Plaintext, d.KeyId, d.KeyVersionId]).toEqual([`p${i}`, keyId, o.body.KeyVersionId]);
    }
    expect(await usedQuota(inst)).toBe(versions.length);
    const ordinals = (await a.kms.deps.db.query<{ ordinal: number }>('SELECT ordinal FROM key_versions WHERE key_id = $1 ORDER BY ordinal', [keyId])).rows.map((r) => Number(r.ordinal));
    expect(ordinals).toEqual(versions.map((_, i) => i + 1));
    const meta = (await callB('DescribeKey', { KeyId: keyId })).KeyMetadata;
    // The primary is the newest version, and a fresh Encrypt on either process uses it.
    const newest = [...versions].sort((x, y) => (x.CreationDate < y.CreationDate ? 1 : -1))[0]!;
    expect(versions.map((v) => v.KeyVersionId)).toContain(meta.PrimaryKeyVersion);
    expect(meta.PrimaryKeyVersion === newest.KeyVersionId || versions.filter((v) => v.CreationDate === newest.CreationDate).length > 1).toBe(true);
    for (const call of [callA, callB]) expect((await call('Encrypt', { KeyId: keyId, Plaintext: 'x' })).KeyVersionId).toBe(meta.PrimaryKeyVersion);
  }, 120_000);

  it('parallel ReEncrypt between two keys while the destination is disabled midway: no 5xx, every answer consistent', async () => {
    const inst = await instance(tier);
    const src = (await callA('CreateKey', { DKMSInstanceId: inst })).KeyMetadata.KeyId as string;
    const dst = (await callA('CreateKey', { DKMSInstanceId: inst })).KeyMetadata.KeyId as string;
    const blob = (await callA('Encrypt', { KeyId: src, Plaintext: 'secret' })).CiphertextBlob as string;
    const runs = Array.from({ length: 30 }, (_, i) => outcome(() => (i % 2 ? callA : callB)('ReEncrypt', { CiphertextBlob: blob, DestinationKeyId: dst })));
    const disable = outcome(() => callB('DisableKey', { KeyId: dst }));
    const results = await Promise.all([...runs, disable]);
    for (const o of results) {
      if (o.ok) continue;
      expect([o.code, o.status], o.message).toEqual(['Rejected.Disabled', 409]);
    }
    for (const o of results.slice(0, 30)) {
      if (!o.ok) continue;
      expect(o.body.KeyId).toBe(dst);
      expect((await callA('EnableKey', { KeyId: dst }).then(() => callA('Decrypt', { CiphertextBlob: o.body.CiphertextBlob }))).Plaintext).toBe('secret');
    }
  }, 120_000);
});

describe.each(['HSM', 'SOFTWARE'] as const)('%s: rotation at the quota edge and against DisableKey', (tier) => {
  it('8 parallel CreateKeyVersion on two processes with room for 2: exactly 2 versions, the rest Rejected.LimitExceeded', async () => {
    const inst = await instance(tier, 3);
    const keyId = (await callA('CreateKey', { DKMSInstanceId: inst })).KeyMetadata.KeyId as string;
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => outcome(() => (i % 2 ? callA : callB)('CreateKeyVersion', { KeyId: keyId }))));
    for (const o of results) if (!o.ok) expect([o.code, o.status], o.message).toEqual(['Rejected.LimitExceeded', 400]);
    expect(results.filter((o) => o.ok)).toHaveLength(2);
    expect(await versionsOf(callA, keyId)).toHaveLength(3);
    expect(await usedQuota(inst)).toBe(3);
    if (tier === 'HSM') for (const v of await versionsOf(callA, keyId)) expect(await b.kms.deps.hsm.hasVersionKey(v.KeyVersionId)).toBe(true);
  }, 120_000);

  it('CreateKeyVersion racing UpdateRotationPolicy: in the end NextRotationDate = LastRotationDate + interval', async () => {
    const inst = await instance(tier);
    const keyId = (await callA('CreateKey', { DKMSInstanceId: inst })).KeyMetadata.KeyId as string;
    const calls = Array.from({ length: 10 }, (_, i) =>
      outcome(() =>
        i % 2
          ? (i % 4 === 1 ? callA : callB)('CreateKeyVersion', { KeyId: keyId })
          : (i % 4 === 0 ? callB : callA)('UpdateRotationPolicy', { KeyId: keyId, EnableAutomaticRotation: 'true', RotationInterval: `${7 + i}d` }),
      ),
    );
    for (const o of await Promise.all(calls)) if (!o.ok) expect([o.code, o.status], o.message).toEqual(['Rejected.StateModifiedFailed', 409]);
    const meta = (await callB('DescribeKey', { KeyId: keyId })).KeyMetadata;
    expect(meta.AutomaticRotation).toBe('Enabled');
    const interval = Number(String(meta.RotationInterval).replace(/s$/, ''));
    expect(new Date(meta.NextRotationDate).getTime() - new Date(meta.LastRotationDate).getTime()).toBe(interval * 1000);
    const versions = await versionsOf(callA, keyId);
    expect(meta.PrimaryKeyVersion).toBe(versions[versions.length - 1]!.KeyVersionId);
  }, 120_000);

  it('CreateKeyVersion racing DisableKey: each rotation either happened or was Rejected.Disabled, never a 5xx', async () => {
    const inst = await instance(tier);
    const keyId = (await callA('CreateKey', { DKMSInstanceId: inst })).KeyMetadata.KeyId as string;
    const rotations = Array.from({ length: 6 }, (_, i) => outcome(() => (i % 2 ? callA : callB)('CreateKeyVersion', { KeyId: keyId })));
    const disable = outcome(() => callB('DisableKey', { KeyId: keyId }));
    const results = await Promise.all([...rotations, disable]);
    for (const o of results) if (!o.ok) expect([o.code, o.status], o.message).toEqual(['Rejected.Disabled', 409]);
    expect(results[6]!.ok).toBe(true);
    const made = results.slice(0, 6).filter((o) => o.ok).length;
    expect(await versionsOf(callA, keyId)).toHaveLength(1 + made);
    expect(await usedQuota(inst)).toBe(1 + made);
    await refused(() => callA('CreateKeyVersion', { KeyId: keyId }), 'Rejected.Disabled', 409);
  }, 120_000);
});

describe('two processes see each other\'s state changes at once', () => {
  it('Disable, Enable and ScheduleKeyDeletion on A are enforced on B on the next request', async () => {
    const keyId = (await callA('CreateKey', { DKMSInstanceId: a.softwareInstanceId })).KeyMetadata.KeyId as string;
    const blob = (await callB('Encrypt', { KeyId: keyId, Plaintext: 'x' })).CiphertextBlob as string;
    await callA('DisableKey', { KeyId: keyId });
    await refused(() => callB('Encrypt', { KeyId: keyId, Plaintext: 'x' }), 'Rejected.Disabled', 409);
    await refused(() => callB('Decrypt', { CiphertextBlob: blob }), 'Rejected.Disabled', 409);
    await callA('EnableKey', { KeyId: keyId });
    expect((await callB('Decrypt', { CiphertextBlob: blob })).Plaintext).toBe('x');
    await callA('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 });
    await refused(() => callB('Encrypt', { KeyId: keyId, Plaintext: 'x' }), 'Rejected.PendingDeletion', 409);
    await refused(() => callB('CreateKeyVersion', { KeyId: keyId }), 'Rejected.PendingDeletion', 409);
  }, 60_000);

  it('a change A commits while B\'s request sits between its cached read and its Redis round trip is honoured by that request', async () => {
    // The window of the next-request guarantee: B read the key from its cache, and the change's
    // invalidation reaches B only while B waits on Redis. Run the change exactly there: just
    // before B's own Redis call (the QPS admission with the nonce; the nonce claim alone when
    // B's cached state refuses). Real Redis orders the two: B must judge the key as it is now.
    const keyId = (await callA('CreateKey', { DKMSInstanceId: a.softwareInstanceId })).KeyMetadata.KeyId as string;
    const blob = (await callB('Encrypt', { KeyId: keyId, Plaintext: 'x' })).CiphertextBlob as string;
    const rates = b.kms.deps.rates;
    const admitClaiming = rates.admitClaiming.bind(rates);
    rates.admitClaiming = async (...args) => {
      rates.admitClaiming = admitClaiming;
      await callA('DisableKey', { KeyId: keyId });
      return admitClaiming(...args);
    };
    await refused(() => callB('Encrypt', { KeyId: keyId, Plaintext: 'x' }), 'Rejected.Disabled', 409);
    expect(rates.admitClaiming).toBe(admitClaiming);
    const nonces = b.kms.nonces;
    const claimKey = nonces.claimKey.bind(nonces);
    nonces.claimKey = async (...args) => {
      nonces.claimKey = claimKey;
      await callA('EnableKey', { KeyId: keyId });
      return claimKey(...args);
    };
    expect((await callB('Decrypt', { CiphertextBlob: blob })).Plaintext).toBe('x');
    expect(nonces.claimKey).toBe(claimKey);
  }, 60_000);

  it('DeleteKeyMaterial on A stops B at once, though B had the material warm; re-importing it on A serves B again', async () => {
    const { wrapKeyMaterial } = await import('../../src/domain/client-wrap.js');
    const keyId = (await callA('CreateKey', { DKMSInstanceId: a.softwareInstanceId, Origin: 'EXTERNAL' })).KeyMetadata.KeyId as string;
    const m = randomBytes(32);
    const importIt = async () => {
      const p = await callA('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' });
      const wrapped = wrapKeyMaterial(Buffer.from(p.PublicKey as string, 'base64'), 'RSAES_OAEP_SHA_256', m).toString('base64');
      await callA('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: wrapped, ImportToken: p.ImportToken });
    };
    await importIt();
    const blob = (await callB('Encrypt', { KeyId: keyId, Plaintext: 'warm' })).CiphertextBlob as string;
    expect((await callB('Decrypt', { CiphertextBlob: blob })).Plaintext).toBe('warm');
    await callA('DeleteKeyMaterial', { KeyId: keyId });
    await refused(() => callB('Encrypt', { KeyId: keyId, Plaintext: 'x' }), 'Rejected.PendingImport', 409);
    await refused(() => callB('Decrypt', { CiphertextBlob: blob }), 'Rejected.PendingImport', 409);
    await refused(() => callB('ReEncrypt', { CiphertextBlob: blob, DestinationKeyId: keyId }), 'Rejected.PendingImport', 409);
    await refused(() => callB('GenerateDataKey', { KeyId: keyId }), 'Rejected.PendingImport', 409);
    await importIt();
    expect((await callB('Decrypt', { CiphertextBlob: blob })).Plaintext).toBe('warm');
  }, 60_000);
});

describe.each(['HSM', 'SOFTWARE'] as const)('%s: one due date, two processes\' workers and a manual rotation', (tier) => {
  it('makes exactly one automatic version, whatever races it; Encrypts during it all decrypt', async () => {
    const inst = await instance(tier);
    const keyId = (await callA('CreateKey', { DKMSInstanceId: inst })).KeyMetadata.KeyId as string;
    await callA('UpdateRotationPolicy', { KeyId: keyId, EnableAutomaticRotation: 'true', RotationInterval: '7d' });
    const dueAt = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
    await updateKey(a.kms.deps.db, keyId, { nextRotationDate: dueAt });
    const workers = Array.from({ length: 6 }, (_, i) => rotateKeyIfDue((i % 2 ? b : a).kms.deps, keyId, dueAt).catch((e: Error) => `thrown ${e.message}`));
    const encrypts = Array.from({ length: 10 }, (_, i) => (i % 2 ? callA : callB)('Encrypt', { KeyId: keyId, Plaintext: `e${i}` }));
    const outcomes = await Promise.all(workers);
    expect(outcomes.filter((o) => o === 'rotated'), outcomes.join(',')).toHaveLength(1);
    for (const o of outcomes) expect(['rotated', 'stale']).toContain(o);
    for (const [i, e] of (await Promise.all(encrypts)).entries()) expect((await callB('Decrypt', { CiphertextBlob: e.CiphertextBlob })).Plaintext).toBe(`e${i}`);
    expect(await versionsOf(callA, keyId)).toHaveLength(2);
    const meta = (await callB('DescribeKey', { KeyId: keyId })).KeyMetadata;
    expect(new Date(meta.NextRotationDate).getTime()).toBeGreaterThan(Date.now());
    expect(meta.RotationFailure).toBeUndefined();
  }, 120_000);
});

describe('a suspended rotation that fell due, resumed by parallel EnableKey on two processes', () => {
  it('rotates once, and the next date is one interval after that rotation', async () => {
    const inst = await instance('SOFTWARE');
    const keyId = (await callA('CreateKey', { DKMSInstanceId: inst })).KeyMetadata.KeyId as string;
    await callA('UpdateRotationPolicy', { KeyId: keyId, EnableAutomaticRotation: 'true', RotationInterval: '7d' });
    await callA('DisableKey', { KeyId: keyId });
    const dueAt = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
    await updateKey(a.kms.deps.db, keyId, { nextRotationDate: dueAt });
    expect(await rotateKeyIfDue(b.kms.deps, keyId, dueAt)).toBe('suspended');
    const enables = await Promise.all([0, 1, 2, 3].map((i) => outcome(() => (i % 2 ? callA : callB)('EnableKey', { KeyId: keyId }))));
    for (const o of enables) if (!o.ok) expect([o.code, o.status], o.message).toEqual(['Rejected.StateModifiedFailed', 409]);
    const meta0 = (await callA('DescribeKey', { KeyId: keyId })).KeyMetadata;
    expect(meta0.AutomaticRotation).toBe('Enabled');
    const due = new Date(meta0.NextRotationDate);
    const outcomes = await Promise.all([0, 1, 2, 3].map((i) => rotateKeyIfDue((i % 2 ? a : b).kms.deps, keyId, due)));
    // The enable itself may already have rotated it (then every worker finds its date stale).
    const versions = await versionsOf(callA, keyId);
    // Due while suspended: exactly one rotation, whoever made it (the enable's job or these workers).
    expect(versions.length, outcomes.join(',')).toBe(2);
    expect(outcomes.filter((o) => o === 'rotated').length).toBeLessThanOrEqual(1);
    const meta = (await callB('DescribeKey', { KeyId: keyId })).KeyMetadata;
    expect(new Date(meta.NextRotationDate).getTime() - new Date(meta.LastRotationDate).getTime()).toBe(7 * 86_400_000);
    expect(new Date(meta.NextRotationDate).getTime()).toBeGreaterThan(Date.now() - 5000);
  }, 120_000);
});

describe.each(['HSM', 'SOFTWARE'] as const)('%s: a due deletion raced by two processes\' workers, CancelKeyDeletion and Decrypt', (tier) => {
  it('deletes once, frees the quota, and every other answer is a documented 4xx', async () => {
    const inst = await instance(tier);
    const keyId = (await callA('CreateKey', { DKMSInstanceId: inst })).KeyMetadata.KeyId as string;
    const blob = (await callA('Encrypt', { KeyId: keyId, Plaintext: 'x' })).CiphertextBlob as string;
    await callA('CreateKeyVersion', { KeyId: keyId });
    const doomed = (await versionsOf(callA, keyId)).map((v) => v.KeyVersionId);
    await callA('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 });
    const deleteAt = new Date(Math.floor(Date.now() / 1000) * 1000 - 1000);
    await updateKey(a.kms.deps.db, keyId, { deleteDate: deleteAt });
    const workers = Array.from({ length: 4 }, (_, i) => deleteKeyIfDue((i % 2 ? b : a).kms.deps, keyId, deleteAt).catch((e: Error) => `thrown ${e.message}`));
    const others = [
      outcome(() => callB('CancelKeyDeletion', { KeyId: keyId })),
      outcome(() => callA('Decrypt', { CiphertextBlob: blob })),
      outcome(() => callB('Encrypt', { KeyId: keyId, Plaintext: 'x' })),
      outcome(() => callA('CreateKeyVersion', { KeyId: keyId })),
    ];
    const [outcomes, answers] = await Promise.all([Promise.all(workers), Promise.all(others)]);
    expect(outcomes.filter((o) => o === 'deleted'), outcomes.join(',')).toHaveLength(1);
    for (const o of outcomes) expect(['deleted', 'stale']).toContain(o);
    const allowed = ['Rejected.StateModifiedFailed 409', 'Rejected.PendingDeletion 409', 'Forbidden.KeyNotFound 404'];
    for (const o of answers) expect(allowed, JSON.stringify(o)).toContain(o.ok ? 'ok' : `${o.code} ${o.status}`);
    await refused(() => callB('DescribeKey', { KeyId: keyId }), 'Forbidden.KeyNotFound', 404);
    await refused(() => callB('Decrypt', { CiphertextBlob: blob }), 'Forbidden.KeyNotFound', 404);
    expect(await usedQuota(inst)).toBe(0);
    if (tier === 'HSM') for (const id of doomed) expect(await a.kms.deps.hsm.hasVersionKey(id)).toBe(false);
  }, 120_000);
});

describe('HSM: deleting asymmetric and MAC keys', () => {
  it('leaves no token object of theirs, public halves included, and B answers Forbidden.KeyNotFound', async () => {
    const keys = [
      (await callA('CreateKey', { DKMSInstanceId: a.hsmInstanceId, KeySpec: 'RSA_2048' })).KeyMetadata,
      (await callA('CreateKey', { DKMSInstanceId: a.hsmInstanceId, KeySpec: 'EC_P256' })).KeyMetadata,
      (await callA('CreateKey', { DKMSInstanceId: a.hsmInstanceId, KeySpec: 'HMAC_SHA256', KeyUsage: 'GENERATE/VERIFY_MAC' })).KeyMetadata,
    ];
    for (const k of keys.slice(0, 2)) await callB('GetPublicKey', { KeyId: k.KeyId, KeyVersionId: k.PrimaryKeyVersion });
    const deleteAt = new Date(Math.floor(Date.now() / 1000) * 1000 - 1000);
    for (const k of keys) {
      await callA('ScheduleKeyDeletion', { KeyId: k.KeyId, PendingWindowInDays: 7 });
      await updateKey(a.kms.deps.db, k.KeyId, { deleteDate: deleteAt });
      expect(await deleteKeyIfDue(a.kms.deps, k.KeyId, deleteAt)).toBe('deleted');
      expect(await a.kms.deps.hsm.hasVersionKey(k.PrimaryKeyVersion)).toBe(false);
      expect(await b.kms.deps.hsm.hasVersionKey(k.PrimaryKeyVersion)).toBe(false);
      await refused(() => callB('GetPublicKey', { KeyId: k.KeyId, KeyVersionId: k.PrimaryKeyVersion }), 'Forbidden.KeyNotFound', 404);
    }
    for (const k of keys.slice(0, 2)) await expect(a.kms.deps.hsm.versionPublicKey(k.PrimaryKeyVersion)).rejects.toThrow();
  }, 120_000);
});

describe('SOFTWARE BYOK: parallel NEW_KEY_MATERIAL imports', () => {
  it('exactly one PendingRotation version, the rest refused with a 4xx', async () => {
    const { wrapKeyMaterial } = await import('../../src/domain/client-wrap.js');
    const inst = await instance('SOFTWARE');
    const keyId = (await callA('CreateKey', { DKMSInstanceId: inst, Origin: 'EXTERNAL' })).KeyMetadata.KeyId as string;
    const importOne = async (call: CallApi, extra: Record<string, unknown>) => {
      const p = await call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' });
      const wrapped = wrapKeyMaterial(Buffer.from(p.PublicKey as string, 'base64'), 'RSAES_OAEP_SHA_256', randomBytes(32)).toString('base64');
      return call('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: wrapped, ImportToken: p.ImportToken, ...extra });
    };
    await importOne(callA, {});
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => outcome(() => importOne(i % 2 ? callA : callB, { ImportType: 'NEW_KEY_MATERIAL' }))));
    for (const o of results) if (!o.ok) expect(o.status, `${o.code} ${o.message}`).toBeLessThan(500);
    expect(results.filter((o) => o.ok)).toHaveLength(1);
    const states = (await versionsOf(callA, keyId)).map((v) => (v as any).KeyVersionState);
    expect(states.filter((s) => s === 'PendingRotation')).toHaveLength(1);
    expect(states).toHaveLength(2);
    // Parallel CreateKeyVersion rotate the pending version in once; the others find none waiting.
    const promotions = await Promise.all(Array.from({ length: 6 }, (_, i) => outcome(() => (i % 2 ? callA : callB)('CreateKeyVersion', { KeyId: keyId }))));
    for (const o of promotions) if (!o.ok) expect([o.code, o.status], o.message).toEqual(['Rejected.UnsupportedOperation', 400]);
    expect(promotions.filter((o) => o.ok)).toHaveLength(1);
    const after = await versionsOf(callA, keyId);
    expect(after).toHaveLength(2);
    expect(after.map((v) => (v as any).KeyVersionState)).not.toContain('PendingRotation');
    expect((await callB('Encrypt', { KeyId: keyId, Plaintext: 'x' })).KeyVersionId).toBe((promotions.find((o) => o.ok) as any).body.KeyVersion.KeyVersionId);
    expect(await usedQuota(inst)).toBe(2);
  }, 120_000);
});

describe('SOFTWARE BYOK: the pending version and the quota', () => {
  it('a pending version takes a unit; at the edge NEW_KEY_MATERIAL is LimitExceeded, and the material of another version is InvalidKeyMaterial', async () => {
    const { wrapKeyMaterial } = await import('../../src/domain/client-wrap.js');
    const inst = await instance('SOFTWARE', 2);
    const keyId = (await callA('CreateKey', { DKMSInstanceId: inst, Origin: 'EXTERNAL' })).KeyMetadata.KeyId as string;
    const importOne = async (call: CallApi, m: Buffer, extra: Record<string, unknown> = {}) => {
      const p = await call('GetParametersForImport', { KeyId: keyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' });
      const wrapped = wrapKeyMaterial(Buffer.from(p.PublicKey as string, 'base64'), 'RSAES_OAEP_SHA_256', m).toString('base64');
      return call('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: wrapped, ImportToken: p.ImportToken, ...extra });
    };
    const m1 = randomBytes(32);
    await importOne(callA, m1);
    await refused(() => importOne(callB, m1, { ImportType: 'NEW_KEY_MATERIAL' }), 'InvalidKeyMaterial', 400);
    await importOne(callB, randomBytes(32), { ImportType: 'NEW_KEY_MATERIAL' });
    expect(await usedQuota(inst)).toBe(2);
    await refused(() => callA('CreateKey', { DKMSInstanceId: inst }), 'Rejected.LimitExceeded', 400);
    await callA('CreateKeyVersion', { KeyId: keyId });
    expect(await usedQuota(inst)).toBe(2);
    await refused(() => importOne(callA, randomBytes(32), { ImportType: 'NEW_KEY_MATERIAL' }), 'Rejected.LimitExceeded', 400);
    // The first material again revives/keeps version 1 and adds nothing.
    await importOne(callB, m1);
    expect(await versionsOf(callA, keyId)).toHaveLength(2);
    expect(await usedQuota(inst)).toBe(2);
  }, 120_000);
});

describe.each(['HSM', 'SOFTWARE'] as const)('%s: asymmetric keys under parallel load on two processes', (tier) => {
  it('40 ECDSA signs and 20 RSA-OAEP decrypts, half of them bad, all answer right', async () => {
    const ec = (await callA('CreateKey', { DKMSInstanceId: tier === 'HSM' ? a.hsmInstanceId : a.softwareInstanceId, KeySpec: 'EC_P256' })).KeyMetadata;
    const rsa = (await callA('CreateKey', { DKMSInstanceId: tier === 'HSM' ? a.hsmInstanceId : a.softwareInstanceId, KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT/DECRYPT' })).KeyMetadata;
    const good = (await callA('AsymmetricEncrypt', { KeyId: rsa.KeyId, KeyVersionId: rsa.PrimaryKeyVersion, Algorithm: 'RSAES_OAEP_SHA_256', Plaintext: 'aGVsbG8=' })).CiphertextBlob as string;
    const digests = Array.from({ length: 40 }, (_, i) => createHash('sha256').update(`m${i}`).digest('base64'));
    const signs = digests.map((Digest, i) =>
      outcome(() => (i % 2 ? callA : callB)('AsymmetricSign', { KeyId: ec.KeyId, KeyVersionId: ec.PrimaryKeyVersion, Algorithm: 'ECDSA_SHA_256', Digest })),
    );
    const decrypts = Array.from({ length: 20 }, (_, i) =>
      outcome(() => (i % 2 ? callA : callB)('AsymmetricDecrypt', { KeyId: rsa.KeyId, KeyVersionId: rsa.PrimaryKeyVersion, Algorithm: 'RSAES_OAEP_SHA_256', CiphertextBlob: i % 2 ? good : randomBytes(256).toString('base64') })),
    );
    const [s, d] = await Promise.all([Promise.all(signs), Promise.all(decrypts)]);
    for (const [i, o] of s.entries()) {
      expect(o.ok, JSON.stringify(o)).toBe(true);
      if (!o.ok) continue;
      const v = await callB('AsymmetricVerify', { KeyId: ec.KeyId, KeyVersionId: ec.PrimaryKeyVersion, Algorithm: 'ECDSA_SHA_256', Digest: digests[i], Value: o.body.Value });
      expect(v.Value).toBe(true);
    }
    for (const [i, o] of d.entries()) {
      if (i % 2) expect(o.ok && o.body.Plaintext, JSON.stringify(o)).toBe('aGVsbG8=');
      else expect(o.ok ? 'ok' : `${o.code} ${o.status}`).toBe('InvalidCiphertext 400');
    }
  }, 120_000);
});

describe('SOFTWARE BYOK: hostile imports of new material', () => {
  it('a token of another key, a tampered token, wrong-length material and a hostile ImportType are each one 4xx, and nothing is added', async () => {
    const { wrapKeyMaterial } = await import('../../src/domain/client-wrap.js');
    const inst = await instance('SOFTWARE');
    const keyId = (await callA('CreateKey', { DKMSInstanceId: inst, Origin: 'EXTERNAL' })).KeyMetadata.KeyId as string;
    const otherId = (await callA('CreateKey', { DKMSInstanceId: inst, Origin: 'EXTERNAL' })).KeyMetadata.KeyId as string;
    const params = (k: string) => callA('GetParametersForImport', { KeyId: k, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' });
    const wrap = (p: Record<string, any>, m: Buffer) => wrapKeyMaterial(Buffer.from(p.PublicKey as string, 'base64'), 'RSAES_OAEP_SHA_256', m).toString('base64');
    const first = await params(keyId);
    await callA('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: wrap(first, randomBytes(32)), ImportToken: first.ImportToken });
    const NEW = { ImportType: 'NEW_KEY_MATERIAL' };
    const foreign = await params(otherId);
    await refused(() => callA('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: wrap(foreign, randomBytes(32)), ImportToken: foreign.ImportToken, ...NEW }), 'InvalidImportToken', 400);
    const own = await params(keyId);
    const token = String(own.ImportToken);
    const tampered = `${token.slice(0, -2)}${token.slice(-2) === 'AA' ? 'AB' : 'AA'}`;
    await refused(() => callA('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: wrap(own, randomBytes(32)), ImportToken: tampered, ...NEW }), 'InvalidImportToken', 400);
    for (const m of [randomBytes(16), randomBytes(31), randomBytes(33), Buffer.alloc(0)]) {
      const o = await outcome(() => callA('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: m.length ? wrap(own, m) : 'AAAA', ImportToken: own.ImportToken, ...NEW }));
      expect(o.ok ? 'ok' : `${o.code} ${o.status}`, `${m.length} bytes`).toBe('InvalidKeyMaterial 400');
    }
    for (const ImportType of ['new_key_material', 'NEW_KEY_MATERIAL ', 'BOTH', '']) {
      const o = await outcome(() => callA('ImportKeyMaterial', { KeyId: keyId, EncryptedKeyMaterial: wrap(own, randomBytes(32)), ImportToken: own.ImportToken, ImportType }));
      expect(o.ok ? 'ok' : `${o.code} ${o.status}`, ImportType).toBe('InvalidParameter 400');
    }
    expect(await versionsOf(callA, keyId)).toHaveLength(1);
    expect(await usedQuota(inst)).toBe(2);
  }, 120_000);
});

describe('two processes on one database', () => {
  it('a key created and rotated on A encrypts with the new primary on B and B opens old blobs; an asymmetric key made on A signs on B', async () => {
    const keyId = (await callA('CreateKey', { DKMSInstanceId: a.hsmInstanceId })).KeyMetadata.KeyId as string;
    const old = (await callB('Encrypt', { KeyId: keyId, Plaintext: 'old' })).CiphertextBlob as string;
    const v2 = (await callA('CreateKeyVersion', { KeyId: keyId })).KeyVersion.KeyVersionId as string;
    expect((await callB('Encrypt', { KeyId: keyId, Plaintext: 'new' })).KeyVersionId).toBe(v2);
    expect((await callB('Decrypt', { CiphertextBlob: old })).Plaintext).toBe('old');
    for (const inst of [a.hsmInstanceId, a.softwareInstanceId]) {
      const meta = (await callA('CreateKey', { DKMSInstanceId: inst, KeySpec: 'EC_P256' })).KeyMetadata;
      const digest = createHash('sha256').update('m').digest('base64');
      const sig = await callB('AsymmetricSign', { KeyId: meta.KeyId, KeyVersionId: meta.PrimaryKeyVersion, Algorithm: 'ECDSA_SHA_256', Digest: digest });
      expect((await callA('AsymmetricVerify', { KeyId: meta.KeyId, KeyVersionId: meta.PrimaryKeyVersion, Algorithm: 'ECDSA_SHA_256', Digest: digest, Value: sig.Value })).Value).toBe(true);
    }
    for (const inst of [a.hsmInstanceId, a.softwareInstanceId]) {
      const macKey = (await callA('CreateKey', { DKMSInstanceId: inst, KeySpec: 'HMAC_SHA384', KeyUsage: 'GENERATE/VERIFY_MAC' })).KeyMetadata.KeyId as string;
      const m = await callB('GenerateMac', { KeyId: macKey, Algorithm: 'HMAC_SHA_384', Message: 'aGVsbG8=' });
      expect(Buffer.from(m.Mac as string, 'base64')).toHaveLength(48);
      expect((await callA('VerifyMac', { KeyId: macKey, Algorithm: 'HMAC_SHA_384', Message: 'aGVsbG8=', Mac: m.Mac })).Value).toBe(true);
      const rsa = (await callA('CreateKey', { DKMSInstanceId: inst, KeySpec: 'RSA_3072', KeyUsage: 'ENCRYPT/DECRYPT' })).KeyMetadata;
      const c = await callA('AsymmetricEncrypt', { KeyId: rsa.KeyId, KeyVersionId: rsa.PrimaryKeyVersion, Algorithm: 'RSAES_OAEP_SHA_1', Plaintext: 'aGVsbG8=' });
      expect((await callB('AsymmetricDecrypt', { KeyId: rsa.KeyId, KeyVersionId: rsa.PrimaryKeyVersion, Algorithm: 'RSAES_OAEP_SHA_1', CiphertextBlob: c.CiphertextBlob })).Plaintext).toBe('aGVsbG8=');
      const moved = await callB('ReEncrypt', { SourceKeyId: rsa.KeyId, SourceKeyVersionId: rsa.PrimaryKeyVersion, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_1', CiphertextBlob: c.CiphertextBlob, DestinationKeyId: keyId });
      expect(moved.KeyVersionId).toBe(v2);
      expect((await callA('Decrypt', { CiphertextBlob: moved.CiphertextBlob })).Plaintext).toBe('aGVsbG8=');
    }
  }, 120_000);
});

describe('hostile values on the new actions', () => {
  let sym: string;
  let symOther: string;
  let rsaEnc: { KeyId: string; PrimaryKeyVersion: string };
  let rsaSign: { KeyId: string; PrimaryKeyVersion: string };
  let mac: string;
  let symBlob: string;
  let dataKeyBlob: string;
  beforeAll(async () => {
    sym = (await callA('CreateKey', { DKMSInstanceId: a.hsmInstanceId })).KeyMetadata.KeyId;
    symOther = (await callA('CreateKey', { DKMSInstanceId: a.softwareInstanceId })).KeyMetadata.KeyId;
    rsaEnc = (await callA('CreateKey', { DKMSInstanceId: a.hsmInstanceId, KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT/DECRYPT' })).KeyMetadata;
    rsaSign = (await callA('CreateKey', { DKMSInstanceId: a.hsmInstanceId, KeySpec: 'RSA_2048' })).KeyMetadata;
    mac = (await callA('CreateKey', { DKMSInstanceId: a.hsmInstanceId, KeySpec: 'HMAC_SHA256', KeyUsage: 'GENERATE/VERIFY_MAC' })).KeyMetadata.KeyId;
    symBlob = (await callA('Encrypt', { KeyId: sym, Plaintext: 'hello' })).CiphertextBlob;
    dataKeyBlob = (await callA('GenerateDataKeyWithoutPlaintext', { KeyId: sym, NumberOfBytes: 32 })).CiphertextBlob;
  }, 120_000);

  it('Digest: wrong length, not base64, empty, 1 MB', async () => {
    const base = { KeyId: rsaSign.KeyId, KeyVersionId: rsaSign.PrimaryKeyVersion, Algorithm: 'RSA_PKCS1_SHA_256' };
    for (const Digest of [randomBytes(31).toString('base64'), randomBytes(33).toString('base64'), randomBytes(64).toString('base64'), '!!!!', 'AAAA=AAA', ' ', 'A'.repeat(43), `${randomBytes(32).toString('base64url')}`]) {
      await refused(() => callA('AsymmetricSign', { ...base, Digest }), 'InvalidParameter', 400);
      await refused(() => callA('AsymmetricVerify', { ...base, Digest, Value: 'AAAA' }), 'InvalidParameter', 400);
    }
  }, 60_000);

  it('large values in a signed form body (past the URL limit): the documented 4xx of each action, never a 5xx', async () => {
    const big = randomBytes(150_000).toString('base64');
    const cases: Array<[string, Record<string, string>, string]> = [
      ['GenerateMac', { KeyId: mac, Algorithm: 'HMAC_SHA_256', Message: big }, 'InvalidParameter'],
      ['VerifyMac', { KeyId: mac, Algorithm: 'HMAC_SHA_256', Message: big, Mac: 'AAAA' }, 'InvalidParameter'],
      ['VerifyMac', { KeyId: mac, Algorithm: 'HMAC_SHA_256', Message: 'AAAA', Mac: big }, 'InvalidParameter'],
      ['AsymmetricEncrypt', { KeyId: rsaEnc.KeyId, KeyVersionId: rsaEnc.PrimaryKeyVersion, Algorithm: 'RSAES_OAEP_SHA_256', Plaintext: big }, 'InvalidParameter'],
      // Past the field's 8192-character cap: a length rule, the same for every key (no padding oracle).
      ['AsymmetricDecrypt', { KeyId: rsaEnc.KeyId, KeyVersionId: rsaEnc.PrimaryKeyVersion, Algorithm: 'RSAES_OAEP_SHA_256', CiphertextBlob: big }, 'InvalidParameter|InvalidCiphertext'],
      ['AsymmetricSign', { KeyId: rsaSign.KeyId, KeyVersionId: rsaSign.PrimaryKeyVersion, Algorithm: 'RSA_PKCS1_SHA_256', Digest: big }, 'InvalidParameter'],
      ['Encrypt', { KeyId: sym, Plaintext: big }, 'InvalidParameter'],
      ['Decrypt', { CiphertextBlob: big }, 'InvalidParameter|InvalidCiphertext'],
      ['ReEncrypt', { CiphertextBlob: big, DestinationKeyId: sym }, 'InvalidParameter|InvalidCiphertext'],
      ['ExportDataKey', { CiphertextBlob: dataKeyBlob, PublicKeyBlob: big, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' }, 'InvalidParameter'],
      ['ExportDataKey', { CiphertextBlob: big, PublicKeyBlob: rsaPub(2048), WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' }, 'InvalidParameter|InvalidCiphertext'],
      ['Encrypt', { KeyId: sym, Plaintext: 'x', EncryptionContext: JSON.stringify({ k: 'v'.repeat(150_000) }) }, 'InvalidParameter'],
      ['GenerateMac', { KeyId: mac, Algorithm: 'HMAC_SHA_256', Message: 'A'.repeat(300_000) }, 'InvalidParameter'],
    ];
    for (const [action, params, code] of cases) {
      const r = await inBody(action, params);
      const why = `${action} ${Object.keys(params).join(',')}: ${r.text.slice(0, 300)}`;
      expect(r.status, why).toBe(400);
      expect(code.split('|'), why).toContain(r.body.Code);
    }
  }, 60_000);

  it('a 1 MB Message / Plaintext is refused with a 4xx, not a 5xx or hang', async () => {
    const big = randomBytes(768 * 1024).toString('base64');
    for (const [action, params] of [
      ['GenerateMac', { KeyId: mac, Algorithm: 'HMAC_SHA_256', Message: big }],
      ['VerifyMac', { KeyId: mac, Algorithm: 'HMAC_SHA_256', Message: big, Mac: 'AAAA' }],
      ['AsymmetricEncrypt', { KeyId: rsaEnc.KeyId, KeyVersionId: rsaEnc.PrimaryKeyVersion, Algorithm: 'RSAES_OAEP_SHA_256', Plaintext: big }],
      ['Encrypt', { KeyId: sym, Plaintext: big }],
    ] as const) {
      const o = await outcome(() => callA(action, params));
      expect(o.ok, action).toBe(false);
      if (!o.ok) {
        expect(o.status, `${action} ${o.code}`).toBeGreaterThanOrEqual(400);
        expect(o.status, `${action} ${o.code}`).toBeLessThan(500);
      }
    }
  }, 60_000);

  it('a CiphertextBlob naming a version of another kind of key is a 4xx', async () => {
    const raw = Buffer.from(symBlob, 'base64');
    // Swap the version id (the first 36 bytes) for the MAC key's, the RSA key's and a random uuid.
    const macVersion = (await callA('DescribeKey', { KeyId: mac })).KeyMetadata.PrimaryKeyVersion as string;
    for (const version of [macVersion, rsaEnc.PrimaryKeyVersion, rsaSign.PrimaryKeyVersion, '00000000-0000-4000-8000-000000000000', macVersion.toUpperCase()]) {
      const forged = Buffer.concat([Buffer.from(version, 'ascii'), raw.subarray(36)]).toString('base64');
      const d = await outcome(() => callA('Decrypt', { CiphertextBlob: forged }));
      expect(d.ok).toBe(false);
      if (!d.ok) expect(d.status, `${d.code} ${d.message}`).toBeLessThan(500);
      const r = await outcome(() => callA('ReEncrypt', { CiphertextBlob: forged, DestinationKeyId: symOther }));
      if (!r.ok) expect(r.status, `${r.code} ${r.message}`).toBeLessThan(500);
      expect(r.ok).toBe(false);
      const e = await outcome(() => callA('ExportDataKey', { CiphertextBlob: forged, PublicKeyBlob: rsaPub(2048), WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' }));
      if (!e.ok) expect(e.status, `${e.code} ${e.message}`).toBeLessThan(500);
      expect(e.ok).toBe(false);
    }
  }, 60_000);

  it('a KeyVersionId of another key, or not a uuid, is Forbidden.KeyNotFound; upper case names the same version', async () => {
    const upper = await callA('GetPublicKey', { KeyId: rsaSign.KeyId, KeyVersionId: rsaSign.PrimaryKeyVersion.toUpperCase() });
    expect(upper.KeyVersionId).toBe(rsaSign.PrimaryKeyVersion);
    for (const KeyVersionId of [rsaEnc.PrimaryKeyVersion, 'not-a-uuid', `${rsaSign.PrimaryKeyVersion}x`, '00000000-0000-0000-0000-000000000000']) {
      await refused(() => callA('GetPublicKey', { KeyId: rsaSign.KeyId, KeyVersionId }), 'Forbidden.KeyNotFound', 404);
    }
    await refused(() => callA('DescribeKeyVersion', { KeyId: sym, KeyVersionId: rsaSign.PrimaryKeyVersion }), 'Forbidden.KeyNotFound', 404);
    // Every asymmetric action and ReEncrypt's asymmetric source form take the same rule.
    const digest = createHash('sha256').update('m').digest('base64');
    for (const KeyVersionId of ['not-a-uuid', `${rsaEnc.PrimaryKeyVersion}x`, rsaSign.PrimaryKeyVersion]) {
      await refused(() => callA('AsymmetricEncrypt', { KeyId: rsaEnc.KeyId, KeyVersionId, Algorithm: 'RSAES_OAEP_SHA_256', Plaintext: 'AAAA' }), 'Forbidden.KeyNotFound', 404);
      await refused(() => callA('AsymmetricDecrypt', { KeyId: rsaEnc.KeyId, KeyVersionId, Algorithm: 'RSAES_OAEP_SHA_256', CiphertextBlob: 'AAAA' }), 'Forbidden.KeyNotFound', 404);
      await refused(() => callA('AsymmetricVerify', { KeyId: rsaSign.KeyId, KeyVersionId: KeyVersionId === rsaSign.PrimaryKeyVersion ? rsaEnc.PrimaryKeyVersion : KeyVersionId, Algorithm: 'RSA_PKCS1_SHA_256', Digest: digest, Value: 'AAAA' }), 'Forbidden.KeyNotFound', 404);
      await refused(
        () => callA('ReEncrypt', { SourceKeyId: rsaEnc.KeyId, SourceKeyVersionId: KeyVersionId, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', CiphertextBlob: 'AAAA', DestinationKeyId: sym }),
        'Forbidden.KeyNotFound',
        404,
      );
    }
    const upperSource = await callA('AsymmetricEncrypt', { KeyId: rsaEnc.KeyId, KeyVersionId: rsaEnc.PrimaryKeyVersion.toUpperCase(), Algorithm: 'RSAES_OAEP_SHA_256', Plaintext: 'AAAA' });
    expect(upperSource.KeyVersionId).toBe(rsaEnc.PrimaryKeyVersion);
  });

  it('a blob whose own version id is upper-cased is not a second valid ciphertext of the same plaintext: InvalidCiphertext', async () => {
    // The prefix is outside the GCM tag and the store matches uuids in any case, so only the
    // parser can keep one ciphertext from having 2^n spellings (found by a probe: it decrypted).
    const raw = Buffer.from(symBlob, 'base64');
    const upper = Buffer.concat([Buffer.from(raw.subarray(0, 36).toString('latin1').toUpperCase(), 'latin1'), raw.subarray(36)]).toString('base64');
    expect(upper).not.toBe(symBlob);
    await refused(() => callA('Decrypt', { CiphertextBlob: upper }), 'InvalidCiphertext', 400);
    await refused(() => callA('ReEncrypt', { CiphertextBlob: upper, DestinationKeyId: sym }), 'InvalidCiphertext', 400);
    expect((await callA('Decrypt', { CiphertextBlob: symBlob })).Plaintext).toBe('hello');
  });

  it('NumberOfBytes 1e3, 0x10, 1.5, -1, +32, 1025 are InvalidParameter', async () => {
    for (const NumberOfBytes of ['1e3', '0x10', '1.5', '-1', '+32', ' 32', '1025', '99999999999999999999']) {
      await refused(() => callA('GenerateDataKey', { KeyId: sym, NumberOfBytes }), 'InvalidParameter', 400);
      await refused(() => callA('GenerateAndExportDataKey', { KeyId: sym, NumberOfBytes, PublicKeyBlob: rsaPub(2048), WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' }), 'InvalidParameter', 400);
    }
  });

  it('PublicKeyBlob that is an EC key, a 1024-bit RSA key, garbage, or a mismatched spec is InvalidParameter', async () => {
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
    for (const [PublicKeyBlob, WrappingKeySpec] of [[ec, 'RSA_2048'], [rsaPub(1024), 'RSA_2048'], [rsaPub(1024), 'RSA_3072'], [rsaPub(3072), 'RSA_2048'], ['AAAA', 'RSA_2048'], [rsaPub(4096), 'RSA_3072']] as const) {
      await refused(() => callA('ExportDataKey', { CiphertextBlob: dataKeyBlob, PublicKeyBlob, WrappingKeySpec, WrappingAlgorithm: 'RSAES_OAEP_SHA_256' }), 'InvalidParameter', 400);
    }
  });

  it('AsymmetricDecrypt of a wrong-length or foreign ciphertext is InvalidCiphertext', async () => {
    const base = { KeyId: rsaEnc.KeyId, KeyVersionId: rsaEnc.PrimaryKeyVersion, Algorithm: 'RSAES_OAEP_SHA_256' };
    for (const CiphertextBlob of [randomBytes(255).toString('base64'), randomBytes(257).toString('base64'), randomBytes(256).toString('base64'), randomBytes(1).toString('base64'), Buffer.alloc(256, 0xff).toString('base64'), symBlob]) {
      await refused(() => callA('AsymmetricDecrypt', { ...base, CiphertextBlob }), 'InvalidCiphertext', 400);
    }
  });

  it('DryRun=yes and huge or odd RotationInterval values are InvalidParameter', async () => {
    for (const DryRun of ['yes', '1', 'TRUE ', '']) {
      const o = await outcome(() => callA('Encrypt', { KeyId: sym, Plaintext: 'x', DryRun }));
      expect(o.ok).toBe(false);
      if (!o.ok) expect([o.code, o.status], `${DryRun}: ${o.message}`).toEqual(['InvalidParameter', 400]);
    }
    for (const RotationInterval of ['99999999999999999999d', '9007199254740993s', '1e3d', '7.5d', '-7d', '7D', '604800', '31536001s', '0d']) {
      await refused(() => callA('UpdateRotationPolicy', { KeyId: sym, EnableAutomaticRotation: 'true', RotationInterval }), 'InvalidParameter', 400);
    }
    for (const EnableAutomaticRotation of ['yes', '1', '']) {
      const o = await outcome(() => callA('UpdateRotationPolicy', { KeyId: sym, EnableAutomaticRotation, RotationInterval: '30d' }));
      expect(o.ok, EnableAutomaticRotation).toBe(false);
      if (!o.ok) expect(o.status).toBe(400);
    }
  });

  it('boundaries: Value of 200 KiB, Mac of 65 bytes, OAEP plaintext one byte over, PKCS#1 data key one byte over', async () => {
    const digest = createHash('sha256').update('m').digest('base64');
    // A Value past the field's length cap is InvalidParameter; one under it that is no signature is false.
    const v = await inBody('AsymmetricVerify', { KeyId: rsaSign.KeyId, KeyVersionId: rsaSign.PrimaryKeyVersion, Algorithm: 'RSA_PKCS1_SHA_256', Digest: digest, Value: randomBytes(150_000).toString('base64') });
    expect([v.status, v.body.Code], v.text.slice(0, 300)).toEqual([400, 'InvalidParameter']);
    const w = await inBody('AsymmetricVerify', { KeyId: rsaSign.KeyId, KeyVersionId: rsaSign.PrimaryKeyVersion, Algorithm: 'RSA_PKCS1_SHA_256', Digest: digest, Value: randomBytes(3000).toString('base64') });
    expect([w.status, w.body.Value], w.text.slice(0, 300)).toEqual([200, false]);
    await refused(() => callA('VerifyMac', { KeyId: mac, Algorithm: 'HMAC_SHA_256', Message: 'AAAA', Mac: randomBytes(65).toString('base64') }), 'InvalidParameter', 400);
    expect((await callA('VerifyMac', { KeyId: mac, Algorithm: 'HMAC_SHA_256', Message: 'AAAA', Mac: randomBytes(64).toString('base64') })).Value).toBe(false);
    const base = { KeyId: rsaEnc.KeyId, KeyVersionId: rsaEnc.PrimaryKeyVersion };
    await callA('AsymmetricEncrypt', { ...base, Algorithm: 'RSAES_OAEP_SHA_256', Plaintext: randomBytes(190).toString('base64') });
    await refused(() => callA('AsymmetricEncrypt', { ...base, Algorithm: 'RSAES_OAEP_SHA_256', Plaintext: randomBytes(191).toString('base64') }), 'InvalidParameter', 400);
    await refused(() => callA('AsymmetricEncrypt', { ...base, Algorithm: 'RSAES_OAEP_SHA_1', Plaintext: randomBytes(215).toString('base64') }), 'InvalidParameter', 400);
    await refused(() => callA('AsymmetricEncrypt', { ...base, Algorithm: 'RSAES_OAEP_SHA_256', Plaintext: '' }), 'InvalidParameter', 400);
    const pub = rsaPub(2048);
    const wrap = { PublicKeyBlob: pub, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_PKCS1_V1_5' };
    await callA('GenerateAndExportDataKey', { KeyId: sym, NumberOfBytes: 245, ...wrap });
    await refused(() => callA('GenerateAndExportDataKey', { KeyId: sym, NumberOfBytes: 246, ...wrap }), 'InvalidParameter', 400);
    const big = (await callA('GenerateDataKeyWithoutPlaintext', { KeyId: sym, NumberOfBytes: 1024 })).CiphertextBlob;
    await refused(() => callA('ExportDataKey', { CiphertextBlob: big, ...wrap }), 'InvalidParameter', 400);
    // A free-text blob is not a data key.
    await refused(() => callA('ExportDataKey', { CiphertextBlob: symBlob, ...wrap }), 'InvalidParameter', 400);
    // Algorithms of another spec.
    const ec = (await callA('CreateKey', { DKMSInstanceId: a.hsmInstanceId, KeySpec: 'EC_P256' })).KeyMetadata;
    await refused(() => callA('AsymmetricSign', { KeyId: ec.KeyId, KeyVersionId: ec.PrimaryKeyVersion, Algorithm: 'RSA_PSS_SHA_256', Digest: digest }), 'InvalidParameter', 400);
    await refused(() => callA('AsymmetricEncrypt', { KeyId: ec.KeyId, KeyVersionId: ec.PrimaryKeyVersion, Algorithm: 'RSAES_OAEP_SHA_256', Plaintext: 'AAAA' }), 'Rejected.UnsupportedOperation', 400);
    await refused(() => callA('Encrypt', { KeyId: ec.KeyId, Plaintext: 'x' }), 'Rejected.UnsupportedOperation', 400);
    await refused(() => callA('GenerateMac', { KeyId: sym, Algorithm: 'HMAC_SHA_256', Message: 'AAAA' }), 'Rejected.UnsupportedOperation', 400);
    await refused(() => callA('ReEncrypt', { CiphertextBlob: symBlob, DestinationKeyId: mac }), 'Rejected.UnsupportedOperation', 400);
    await refused(() => callA('ReEncrypt', { CiphertextBlob: symBlob, DestinationKeyId: ec.KeyId }), 'Rejected.UnsupportedOperation', 400);
  }, 60_000);

  it('every field of the new actions, given odd values: never a 5xx', async () => {
    const ec = (await callA('CreateKey', { DKMSInstanceId: a.softwareInstanceId, KeySpec: 'EC_P256K' })).KeyMetadata;
    const digest = createHash('sha256').update('m').digest('base64');
    const actions: Array<[string, Record<string, string>]> = [
      ['GetPublicKey', { KeyId: ec.KeyId, KeyVersionId: ec.PrimaryKeyVersion }],
      ['AsymmetricSign', { KeyId: ec.KeyId, KeyVersionId: ec.PrimaryKeyVersion, Algorithm: 'ECDSA_SHA_256', Digest: digest }],
      ['AsymmetricVerify', { KeyId: ec.KeyId, KeyVersionId: ec.PrimaryKeyVersion, Algorithm: 'ECDSA_SHA_256', Digest: digest, Value: 'MAYCAQECAQE=' }],
      ['AsymmetricEncrypt', { KeyId: rsaEnc.KeyId, KeyVersionId: rsaEnc.PrimaryKeyVersion, Algorithm: 'RSAES_OAEP_SHA_1', Plaintext: 'AAAA' }],
      ['AsymmetricDecrypt', { KeyId: rsaEnc.KeyId, KeyVersionId: rsaEnc.PrimaryKeyVersion, Algorithm: 'RSAES_OAEP_SHA_1', CiphertextBlob: 'AAAA' }],
      ['GenerateMac', { KeyId: mac, Algorithm: 'HMAC_SHA_256', Message: 'AAAA' }],
      ['VerifyMac', { KeyId: mac, Algorithm: 'HMAC_SHA_256', Message: 'AAAA', Mac: 'AAAA' }],
      ['GenerateDataKey', { KeyId: sym, NumberOfBytes: '16', KeySpec: 'AES_128', EncryptionContext: '{"a":"b"}' }],
      ['GenerateAndExportDataKey', { KeyId: sym, NumberOfBytes: '16', PublicKeyBlob: rsaPub(2048), WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_1' }],
      ['ExportDataKey', { CiphertextBlob: dataKeyBlob, PublicKeyBlob: rsaPub(2048), WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_1' }],
      ['ReEncrypt', { CiphertextBlob: symBlob, DestinationKeyId: symOther, SourceEncryptionContext: '{}', DestinationEncryptionContext: '{"x":"y"}' }],
      ['ReEncrypt', { SourceKeyId: rsaEnc.KeyId, SourceKeyVersionId: rsaEnc.PrimaryKeyVersion, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_1', CiphertextBlob: 'AAAA', DestinationKeyId: sym }],
      ['CreateKeyVersion', { KeyId: symOther }],
      ['UpdateRotationPolicy', { KeyId: symOther, EnableAutomaticRotation: 'false' }],
      ['ListKeyVersions', { KeyId: sym, PageSize: '10', PageNumber: '1' }],
      ['DescribeKeyVersion', { KeyId: sym, KeyVersionId: rsaEnc.PrimaryKeyVersion }],
    ];
    const odd = ['', ' ', 'null', '[]', '{}', '{"a":1}', '0', '-0', 'NaN', 'Infinity', '1e308', 'é', '\uFFFF', '😀', '%00', '../..', 'alias/', 'acs:kms:cn-hangzhou:1:key/', 'A'.repeat(70_000), '====', 'AA==AA==', 'true'];
    const fivexx: string[] = [];
    for (const [action, params] of actions) {
      for (const name of Object.keys(params)) {
        for (const value of odd) {
          const r = await inBody(action, { ...params, [name]: value });
          if (r.status >= 500 || r.status === 0) fivexx.push(`${action} ${name}=${JSON.stringify(value.slice(0, 20))}: ${r.status} ${r.text.slice(0, 200)}`);
        }
      }
    }
    expect(fivexx).toEqual([]);
  }, 300_000);

  it('ACS3 JSON bodies with non-string values: a 4xx or the text of the value, never a 5xx', async () => {
    const bodies: Array<[string, Record<string, unknown>]> = [
      ['GenerateDataKey', { KeyId: sym, NumberOfBytes: 32 }],
      ['GenerateDataKey', { KeyId: sym, NumberOfBytes: 1e3 }],
      ['GenerateDataKey', { KeyId: sym, NumberOfBytes: 1.5 }],
      ['GenerateDataKey', { KeyId: sym, NumberOfBytes: null }],
      ['GenerateDataKey', { KeyId: [sym, symOther] }],
      ['GenerateDataKey', { KeyId: { a: sym } }],
      ['Encrypt', { KeyId: sym, Plaintext: 'x', DryRun: true }],
      ['Encrypt', { KeyId: sym, Plaintext: 'x', EncryptionContext: { a: 'b' } }],
      ['Encrypt', { KeyId: sym, Plaintext: 12345678901234567890 }],
      ['AsymmetricSign', { KeyId: rsaSign.KeyId, KeyVersionId: rsaSign.PrimaryKeyVersion, Algorithm: 'RSA_PKCS1_SHA_256', Digest: ['AAAA'] }],
      ['UpdateRotationPolicy', { KeyId: symOther, EnableAutomaticRotation: true, RotationInterval: 604800 }],
      ['UpdateRotationPolicy', { KeyId: symOther, EnableAutomaticRotation: false }],
      ['GenerateMac', { KeyId: mac, Algorithm: 'HMAC_SHA_256', Message: { toString: 'x' } }],
    ];
    const bad: string[] = [];
    for (const [action, params] of bodies) {
      const r = await sendAcs3(a.endpoint, { action, body: JSON.stringify(params), contentType: 'application/json' }, a.admin);
      if (r.status >= 500) bad.push(`${action} ${JSON.stringify(params)}: ${r.status} ${r.text.slice(0, 200)}`);
      const bytes = typeof params.NumberOfBytes === 'number' ? params.NumberOfBytes : 32;
      if (r.status === 200 && action === 'GenerateDataKey' && Buffer.from(String(r.body.Plaintext), 'base64').length !== bytes) bad.push(`${action} ${JSON.stringify(params)}: ${r.text.slice(0, 200)}`);
      if (r.status === 200 && action === 'Encrypt' && 'DryRun' in params) bad.push(`DryRun true answered 200`);
    }
    expect(bad).toEqual([]);
  });

  it('a limited key-user learns nothing about keys, versions or blobs of another instance', async () => {
    const otherInst = await instance('HSM');
    const user = await createAccessKey(a.kms.deps, { role: 'key-user', instanceIds: [otherInst] }, systemCaller);
    const u = openApiClient(a.endpoint, { accessKeyId: user.accessKeyId, accessKeySecret: user.accessKeySecret } as any);
    const mine = (await callA('CreateKey', { DKMSInstanceId: otherInst })).KeyMetadata.KeyId as string;
    const digest = createHash('sha256').update('m').digest('base64');
    const probes: Array<[string, Record<string, unknown>]> = [
      ['GetPublicKey', { KeyId: rsaSign.KeyId, KeyVersionId: rsaSign.PrimaryKeyVersion }],
      ['AsymmetricSign', { KeyId: rsaSign.KeyId, KeyVersionId: rsaSign.PrimaryKeyVersion, Algorithm: 'RSA_PKCS1_SHA_256', Digest: digest }],
      ['AsymmetricSign', { KeyId: rsaSign.KeyId, KeyVersionId: rsaSign.PrimaryKeyVersion, Algorithm: 'RSA_PKCS1_SHA_256', Digest: 'AAAA' }],
      ['AsymmetricDecrypt', { KeyId: rsaEnc.KeyId, KeyVersionId: rsaEnc.PrimaryKeyVersion, Algorithm: 'RSAES_OAEP_SHA_256', CiphertextBlob: 'AAAA' }],
      ['GenerateMac', { KeyId: mac, Algorithm: 'HMAC_SHA_256', Message: 'AAAA' }],
      ['GenerateMac', { KeyId: mac, Algorithm: 'HMAC_SHA_1', Message: '' }],
      ['VerifyMac', { KeyId: mac, Algorithm: 'HMAC_SHA_256', Message: 'AAAA', Mac: '!!' }],
      ['Decrypt', { CiphertextBlob: symBlob }],
      ['ReEncrypt', { CiphertextBlob: symBlob, DestinationKeyId: mine }],
      ['ReEncrypt', { CiphertextBlob: (await u('Encrypt', { KeyId: mine, Plaintext: 'x' })).CiphertextBlob, DestinationKeyId: sym }],
      ['ExportDataKey', { CiphertextBlob: dataKeyBlob, PublicKeyBlob: 'AAAA', WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' }],
      ['GenerateDataKey', { KeyId: sym, NumberOfBytes: '5000' }],
      ['GenerateAndExportDataKey', { KeyId: sym, NumberOfBytes: '32', PublicKeyBlob: 'AAAA', WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' }],
      ['ReEncrypt', { SourceKeyId: rsaEnc.KeyId, SourceKeyVersionId: rsaEnc.PrimaryKeyVersion, SourceEncryptionAlgorithm: 'RSAES_OAEP_SHA_256', CiphertextBlob: 'AAAA', DestinationKeyId: mine }],
      ['DescribeKeyVersion', { KeyId: sym, KeyVersionId: rsaSign.PrimaryKeyVersion }],
      ['ListKeyVersions', { KeyId: sym }],
    ];
    // The property: the answer on a key of another instance is the answer on a key that does not exist.
    const missingKey = 'key-hzz0000000000000000000000';
    const missingVersion = '00000000-0000-4000-8000-000000000001';
    const real = new Map<string, string>([[rsaSign.KeyId, missingKey], [rsaEnc.KeyId, missingKey], [mac, missingKey], [sym, missingKey], [rsaSign.PrimaryKeyVersion, missingVersion], [rsaEnc.PrimaryKeyVersion, missingVersion]]);
    const reVersion = (blob: string) => Buffer.concat([Buffer.from(missingVersion, 'ascii'), Buffer.from(blob, 'base64').subarray(36)]).toString('base64');
    real.set(symBlob, reVersion(symBlob));
    real.set(dataKeyBlob, reVersion(dataKeyBlob));
    const shape = (o: Outcome) => (o.ok ? 'ok' : `${o.code} ${o.status} ${o.message.replace(/request id: .*/, '').replace(/key-[a-z0-9]+|[0-9a-f-]{36}/g, 'X')}`);
    for (const [action, params] of probes) {
      for (const dry of [{}, { DryRun: 'true' }]) {
        const o = await outcome(() => u(action, { ...params, ...dry }));
        const ghost = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, typeof v === 'string' ? (real.get(v) ?? v) : v]));
        const g = await outcome(() => u(action, { ...ghost, ...dry }));
        expect(o.ok, action).toBe(false);
        if (!o.ok) expect(o.status, action).toBeLessThan(500);
        expect(shape(o), `${action} ${JSON.stringify(params).slice(0, 120)}`).toBe(shape(g));
      }
    }
  }, 60_000);
});

/** An admin request to A with the parameters in a signed form body (the SDK puts them in the URL). */
function inBody(action: string, params: Record<string, string>) {
  return sendAcs3(a.endpoint, { action, body: encodeQuery(params), contentType: 'application/x-www-form-urlencoded' }, a.admin);
}

function rsaPub(bits: number): string {
  return generateKeyPairSync('rsa', { modulusLength: bits }).publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
}
