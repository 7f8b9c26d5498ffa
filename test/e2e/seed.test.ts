import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeCiphertextBlob } from '../../src/domain/ciphertext.js';
import type { SeedOutcome } from '../../src/domain/seed.js';
import { applySeedFile } from '../../src/services/seed-file.js';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 18, seeding: a declarative file applied through the services, twice (the second time
 * changes nothing), with known material for EXTERNAL keys imported through the real BYOK path;
 * then a ciphertext made here with node:crypto from that material decrypts through the rig.
 */
let server: TestServer;
let call: CallApi;
let dir: string;

const suffix = randomBytes(6).toString('hex');
const ids = {
  hsmAes: `key-seedhsm${suffix}`,
  swAes: `key-seedsw${suffix}`,
  external: `key-seedext${suffix}`,
  externalFile: `key-seedextf${suffix}`,
  rsa: `key-seedrsa${suffix}`,
  ec: `key-seedec${suffix}`,
};
const hsmMaterial = randomBytes(32);
const fileMaterial = randomBytes(32);
const accessKey = { id: `LTAISEED${suffix.toUpperCase()}`, secret: `seed-secret-${suffix}-0123456789` };

function seedDocument(overrides: { rsaSpec?: string } = {}) {
  return {
    instances: [
      { name: `seed-hsm-${suffix}`, type: 'HSM', keyQuota: 100, qps: 100 },
      { name: `seed-sw-${suffix}`, type: 'SOFTWARE', keyQuota: 100, qps: 100 },
    ],
    keys: [
      {
        id: ids.hsmAes,
        tier: 'HSM',
        instance: `seed-hsm-${suffix}`,
        description: 'payments data key',
        tags: { team: 'payments', env: 'test' },
        aliases: [`alias/seed-payments-${suffix}`],
        rotation: { interval: '30d' },
      },
      { id: ids.swAes, tier: 'SOFTWARE', instance: `seed-sw-${suffix}`, aliases: [`alias/seed-sw-${suffix}`] },
      {
        id: ids.external,
        tier: 'HSM',
        instance: `seed-hsm-${suffix}`,
        origin: 'EXTERNAL',
        material: { base64: hsmMaterial.toString('base64') },
        aliases: [`alias/seed-byok-${suffix}`],
      },
      { id: ids.externalFile, tier: 'SOFTWARE', instance: `seed-sw-${suffix}`, origin: 'EXTERNAL', material: { file: 'material.bin' } },
      { id: ids.rsa, tier: 'SOFTWARE', instance: `seed-sw-${suffix}`, spec: overrides.rsaSpec ?? 'RSA_2048', usage: 'ENCRYPT/DECRYPT' },
      { id: ids.ec, tier: 'HSM', instance: `seed-hsm-${suffix}`, spec: 'EC_P256', tags: { purpose: 'signing' } },
      // No id: found again through its alias.
      { tier: 'DEFAULT', aliases: [`alias/seed-default-${suffix}`], description: 'a default key' },
    ],
    accessKeys: [{ id: accessKey.id, secret: accessKey.secret, role: 'key-user', instances: [`seed-sw-${suffix}`] }],
  };
}

async function writeSeed(name: string, doc: unknown): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, name.endsWith('.json') ? JSON.stringify(doc) : stringify(doc));
  return file;
}

const statuses = (outcomes: SeedOutcome[]) => outcomes.map((o) => `${o.kind} ${o.name} ${o.status}${o.status === 'failed' ? ` ${o.detail}` : ''}`);

beforeAll(async () => {
  server = await startServer();
  call = openApiClient(server.endpoint, server.admin);
  dir = await mkdtemp(path.join(tmpdir(), 'kms-seed-'));
  await writeFile(path.join(dir, 'material.bin'), fileMaterial);
});

afterAll(async () => {
  await server?.stop();
});

/** AES-GCM under `material`, in Alibaba's blob layout (version id ‖ IV ‖ ciphertext ‖ tag). */
function blobWithMaterial(material: Buffer, versionId: string, plaintext: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', material, iv);
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return encodeCiphertextBlob({ keyVersionId: versionId, iv, ciphertext, tag: cipher.getAuthTag() });
}

describe('kms seed', () => {
  it('creates everything the first time, changes nothing the second time', async () => {
    const file = await writeSeed('rig.yaml', seedDocument());
    const first = await applySeedFile(server.kms.deps, file);
    expect(statuses(first).filter((s) => !s.endsWith(' created'))).toEqual([]);
    expect(first.filter((o) => o.kind === 'key')).toHaveLength(7);
    expect(first.filter((o) => o.kind === 'alias')).toHaveLength(4);

    const second = await applySeedFile(server.kms.deps, file);
    expect(statuses(second).filter((s) => !s.endsWith(' unchanged'))).toEqual([]);
    expect(second).toHaveLength(first.length);

    // The same document as JSON is the same rig.
    const third = await applySeedFile(server.kms.deps, await writeSeed('rig.json', seedDocument()));
    expect(third.every((o) => o.status === 'unchanged')).toBe(true);
  });

  it('leaves keys as declared: tier, spec, state, tags, aliases, rotation', async () => {
    const hsm = (await call('DescribeKey', { KeyId: `alias/seed-payments-${suffix}` })).KeyMetadata;
    expect(hsm).toMatchObject({ KeyId: ids.hsmAes, ProtectionLevel: 'HSM', KeyState: 'Enabled', Description: 'payments data key', AutomaticRotation: 'Enabled', RotationInterval: `${30 * 86400}s` });
    const tags = (await call('ListResourceTags', { KeyId: ids.hsmAes })).Tags.Tag as Array<{ TagKey: string; TagValue: string }>;
    expect(Object.fromEntries(tags.map((t) => [t.TagKey, t.TagValue]))).toEqual({ team: 'payments', env: 'test' });
    expect((await call('DescribeKey', { KeyId: ids.rsa })).KeyMetadata).toMatchObject({ KeySpec: 'RSA_2048', KeyUsage: 'ENCRYPT/DECRYPT', ProtectionLevel: 'SOFTWARE' });
    expect((await call('DescribeKey', { KeyId: ids.ec })).KeyMetadata).toMatchObject({ KeySpec: 'EC_P256', KeyUsage: 'SIGN/VERIFY', ProtectionLevel: 'HSM' });
    expect((await call('DescribeKey', { KeyId: ids.external })).KeyMetadata).toMatchObject({ Origin: 'EXTERNAL', KeyState: 'Enabled', ProtectionLevel: 'HSM' });
    const byDefault = (await call('DescribeKey', { KeyId: `alias/seed-default-${suffix}` })).KeyMetadata;
    expect(byDefault.DKMSInstanceId ?? '').toBe('');
    const signed = await call('AsymmetricSign', { KeyId: ids.ec, KeyVersionId: (await call('DescribeKey', { KeyId: ids.ec })).KeyMetadata.PrimaryKeyVersion, Algorithm: 'ECDSA_SHA_256', Digest: randomBytes(32).toString('base64') });
    expect(signed.Value).toBeTruthy();
  });

  it('decrypts a ciphertext made outside the rig with the known material (HSM and SOFTWARE EXTERNAL keys)', async () => {
    for (const [keyId, material] of [
      [ids.external, hsmMaterial],
      [ids.externalFile, fileMaterial],
    ] as const) {
      const versionId = (await call('DescribeKey', { KeyId: keyId })).KeyMetadata.PrimaryKeyVersion as string;
      const blob = blobWithMaterial(material, versionId, `made with node:crypto for ${keyId}`);
      const decrypted = await call('Decrypt', { CiphertextBlob: blob });
      expect(decrypted).toMatchObject({ KeyId: keyId, Plaintext: `made with node:crypto for ${keyId}` });
    }
  });

  it('never writes the known material to the database in clear', async () => {
    const { rows } = await server.kms.deps.db.query<{ sealed_material: Buffer | null }>('SELECT sealed_material FROM key_versions WHERE key_id = ANY($1)', [[ids.external, ids.externalFile]]);
    for (const row of rows) {
      for (const material of [hsmMaterial, fileMaterial]) expect(row.sealed_material?.includes(material) ?? false).toBe(false);
    }
    const dump = await server.kms.deps.db.query<{ t: string }>("SELECT string_agg(t::text, ' ') AS t FROM audit_events t");
    for (const material of [hsmMaterial, fileMaterial]) {
      expect(dump.rows[0]?.t ?? '').not.toContain(material.toString('base64'));
      expect(dump.rows[0]?.t ?? '').not.toContain(material.toString('hex'));
    }
  });

  it('pins the access key: the key-user reaches its instance with the declared secret', async () => {
    const asUser = openApiClient(server.endpoint, { accessKeyId: accessKey.id, accessKeySecret: accessKey.secret });
    const encrypted = await asUser('Encrypt', { KeyId: ids.swAes, Plaintext: 'as the seeded key-user' });
    expect((await asUser('Decrypt', { CiphertextBlob: encrypted.CiphertextBlob })).Plaintext).toBe('as the seeded key-user');
    await expect(asUser('Encrypt', { KeyId: ids.hsmAes, Plaintext: 'x' })).rejects.toThrow();
  });

  it('reports a conflicting change and applies nothing of it; other changes are applied and said', async () => {
    const doc = seedDocument({ rsaSpec: 'RSA_3072' });
    const changed = doc.keys.find((k) => k.id === ids.swAes)!;
    Object.assign(changed, { description: 'now described' });
    const other = await mkdtemp(path.join(tmpdir(), 'kms-seed-material-'));
    await writeFile(path.join(other, 'material.bin'), randomBytes(32));
    const file = path.join(other, 'conflict.yaml');
    await writeFile(file, stringify({ ...doc, accessKeys: [{ ...doc.accessKeys[0], secret: 'another-secret-0123456789' }] }));
    const outcomes = await applySeedFile(server.kms.deps, file);
    const byName = new Map(outcomes.map((o) => [`${o.kind} ${o.name}`, o]));
    expect(byName.get(`key ${ids.rsa}`)).toMatchObject({ status: 'conflict' });
    expect(byName.get(`key ${ids.rsa}`)?.detail).toContain('RSA_2048');
    expect(byName.get(`key ${ids.externalFile}`)).toMatchObject({ status: 'conflict' });
    expect(byName.get(`access-key ${accessKey.id}`)).toMatchObject({ status: 'conflict' });
    expect(byName.get(`key ${ids.swAes}`)).toMatchObject({ status: 'updated', detail: 'description' });
    expect((await call('DescribeKey', { KeyId: ids.rsa })).KeyMetadata.KeySpec).toBe('RSA_2048');
    // The pinned secret still works: the conflicting one was not applied.
    const asUser = openApiClient(server.endpoint, { accessKeyId: accessKey.id, accessKeySecret: accessKey.secret });
    expect((await asUser('Encrypt', { KeyId: ids.swAes, Plaintext: 'still me' })).KeyId).toBe(ids.swAes);
  });

  it('refuses an invalid file, naming every problem, before changing anything', async () => {
    const file = await writeSeed('bad.yaml', {
      keys: [
        { id: 'KEY-NOT-VALID', spec: 'Aliyun_AES_256' },
        { tier: 'SOFTWARE' },
        { id: `key-seedbad${suffix}`, origin: 'EXTERNAL', spec: 'RSA_2048', material: { base64: 'AAAA' } },
      ],
      accessKeys: [{ id: 'LTAIshort', secret: 'short' }],
    });
    await expect(applySeedFile(server.kms.deps, file)).rejects.toThrow(/keys\.0\.id[\s\S]*keys\.1\.id[\s\S]*keys\.2\.origin[\s\S]*accessKeys\.0\.id[\s\S]*accessKeys\.0\.secret/);
    expect((await server.kms.deps.db.query('SELECT 1 FROM keys WHERE id = $1', [`key-seedbad${suffix}`])).rowCount).toBe(0);
  });
});
