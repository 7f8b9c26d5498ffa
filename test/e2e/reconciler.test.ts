import { randomBytes, randomUUID } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/clock.js';
import { ROOT_KEY_ID, TOKEN_MAC_KEY_ID, findObjects } from '../../src/hsm/pkcs11/pkcs11-hsm.js';
import * as m from '../../src/hsm/pkcs11/mechanisms.js';
import { RECONCILE_GRACE_MS, reconcileHsmObjects } from '../../src/services/reconciler.js';
import { countFlaggedFindings, listFindings } from '../../src/store/reconcile-findings.js';
import { insertVersion } from '../../src/store/versions.js';
import { insertWrappingKey } from '../../src/store/wrapping-keys.js';
import { decryptBlobWithMaterial } from '../helpers/byok.js';
import { createKeyIn } from '../helpers/fixtures.js';
import { importMaterial } from '../helpers/jobs.js';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';
import { withTokenSession } from '../helpers/token-session.js';

/**
 * The reconciler (issue 14 §3, DESIGN.md "Crash consistency"): objects no committed row
 * references are destroyed once two runs at least the grace period apart found them so;
 * rows whose object is missing are flagged (log line, counted finding), never deleted.
 * Objects are made and destroyed behind the service's back through a PKCS#11 session of the
 * test's own.
 */
let server: TestServer;
let call: CallApi;
const clock = new ManualClock(new Date());

beforeAll(async () => {
  server = await startServer({ clock, env: { KMS_SIGNATURE_MAX_SKEW_SECONDS: String(365 * 86_400) } });
  call = openApiClient(server.endpoint, server.admin);
});

afterAll(async () => {
  await server?.stop();
});

const reconcile = () => reconcileHsmObjects(server.kms.deps);

/** What a crashed CreateKey leaves: a token AES key whose CKA_ID is a version id no row has. */
const createSecretKey = (id: string) =>
  withTokenSession(server, (p11, session) => {
    p11.C_GenerateKey(session, m.aesKeyGen, m.aesKeyTemplate({ token: true, id, label: id, valueLength: 32 }));
  });

/** What a crashed pool refill leaves: a wrapping pair's private half with no wrapping_keys row. */
const createWrappingPair = (id: string) =>
  withTokenSession(server, (p11, session) => {
    const { publicTemplate, privateTemplate } = m.wrappingKeyPairTemplates(id, false);
    const pair = p11.C_GenerateKeyPair(session, m.rsaKeyPairGen, publicTemplate, privateTemplate);
    p11.C_DestroyObject(session, pair.publicKey);
  });

const count = (template: pkcs11js.Template) => withTokenSession(server, (p11, session) => findObjects(p11, session, template).length);

const destroyBehindTheServicesBack = (template: pkcs11js.Template) =>
  withTokenSession(server, (p11, session) => {
    for (const handle of findObjects(p11, session, template)) p11.C_DestroyObject(session, handle);
  });

const primaryVersion = async (keyId: string) => (await call('DescribeKey', { KeyId: keyId })).KeyMetadata.PrimaryKeyVersion as string;

describe('orphan objects', () => {
  it('are destroyed only when two runs over the grace period found no row; service keys, foreign objects and referenced objects stay', async () => {
    const keyId = (await createKeyIn(call, server.hsmInstanceId)).keyId;
    const blob = (await call('Encrypt', { KeyId: keyId, Plaintext: 'kept' })).CiphertextBlob as string;
    const orphanKey = randomUUID();
    const orphanPair = randomUUID();
    const foreign = 'another-application-key';
    await createSecretKey(orphanKey);
    await createWrappingPair(orphanPair);
    await createSecretKey(foreign);

    const first = await reconcile();
    expect(first.destroyed).toEqual([]);
    expect((await listFindings(server.kms.deps.db)).map((f) => [f.kind, f.objectId])).toEqual(
      expect.arrayContaining([
        ['orphan-version-key', orphanKey],
        ['orphan-wrapping-pair', orphanPair],
      ]),
    );

    // A second run within the grace period: still only suspected.
    clock.advance(RECONCILE_GRACE_MS - 1000);
    expect((await reconcile()).destroyed).toEqual([]);
    expect(await count(m.secretKeyById(orphanKey))).toBe(1);

    clock.advance(1000);
    const third = await reconcile();
    expect(third.destroyed).toEqual(
      expect.arrayContaining([
        { kind: 'orphan-version-key', objectId: orphanKey },
        { kind: 'orphan-wrapping-pair', objectId: orphanPair },
      ]),
    );
    expect(await count(m.secretKeyById(orphanKey))).toBe(0);
    expect(await count(m.privateKeyById(orphanPair))).toBe(0);
    // Never touched: objects whose id is not ours, the service's own keys, a referenced version key.
    expect(await count(m.secretKeyById(foreign))).toBe(1);
    expect(await count(m.secretKeyById(ROOT_KEY_ID))).toBe(1);
    expect(await count(m.secretKeyById(TOKEN_MAC_KEY_ID))).toBe(1);
    expect(await count(m.secretKeyById(await primaryVersion(keyId)))).toBe(1);
    expect((await call('Decrypt', { CiphertextBlob: blob })).Plaintext).toBe('kept');
    expect((await listFindings(server.kms.deps.db)).filter((f) => f.objectId === orphanKey || f.objectId === orphanPair)).toEqual([]);
  });

  it('an object whose row commits after the first sighting (a creation in flight) is not destroyed', async () => {
    const keyId = (await createKeyIn(call, server.hsmInstanceId)).keyId;
    const versionId = randomUUID();
    await createSecretKey(versionId);
    await reconcile();
    expect((await listFindings(server.kms.deps.db)).some((f) => f.objectId === versionId)).toBe(true);

    // The commit lands: the object now has its row.
    await insertVersion(server.kms.deps.db, {
      id: versionId,
      keyId,
      instanceId: server.hsmInstanceId,
      state: 'Enabled',
      storage: 'token',
      sealedMaterial: null,
      hasMaterial: true,
      materialFingerprint: null,
      materialExpireAt: null,
    });
    clock.advance(RECONCILE_GRACE_MS);
    const result = await reconcile();
    expect(result.destroyed.map((d) => d.objectId)).not.toContain(versionId);
    expect(await count(m.secretKeyById(versionId))).toBe(1);
    expect((await listFindings(server.kms.deps.db)).some((f) => f.objectId === versionId)).toBe(false);
  });

  it('an object left by an import that crashed before its commit (the version row has no material) is an orphan too', async () => {
    const keyId = (await createKeyIn(call, server.hsmInstanceId, { Origin: 'EXTERNAL' })).keyId;
    const versionId = await primaryVersion(keyId);
    await createSecretKey(versionId);
    await reconcile();
    clock.advance(RECONCILE_GRACE_MS);
    expect((await reconcile()).destroyed).toContainEqual({ kind: 'orphan-version-key', objectId: versionId });
    expect(await count(m.secretKeyById(versionId))).toBe(0);
    // The version row stays, and the real import still brings the key to life.
    const material = randomBytes(32);
    await importMaterial(call, keyId, material);
    expect(await count(m.secretKeyById(versionId))).toBe(1);
    const blob = (await call('Encrypt', { KeyId: keyId, Plaintext: 'imported' })).CiphertextBlob as string;
    expect(decryptBlobWithMaterial(blob, material).plaintext).toBe('imported');
  });
});

describe('pooled wrapping pairs of the other strict-mode setting', () => {
  it('are retired (row and object) by the reconciler; the pool of the current mode stays', async () => {
    // This server runs with KMS_IMPORT_STRICT=false: its pool holds raw-decrypt pairs.
    expect(server.config.hsm.importStrict).toBe(false);
    const pooled = async (rawDecrypt: boolean) => {
      const id = randomUUID();
      const { publicKeyDer } = await server.kms.deps.hsm.generateWrappingKeyPair(id);
      await insertWrappingKey(server.kms.deps.db, { id, publicKeyDer, rawDecrypt, createdAt: clock.now() });
      return id;
    };
    const otherMode = await pooled(false);
    const currentMode = await pooled(true);
    const result = await reconcile();
    expect(result.retiredPairs).toContain(otherMode);
    expect(result.retiredPairs).not.toContain(currentMode);
    expect(await count(m.privateKeyById(otherMode))).toBe(0);
    expect(await count(m.privateKeyById(currentMode))).toBe(1);
    expect((await server.kms.deps.db.query('SELECT id FROM wrapping_keys WHERE id = ANY($1)', [[otherMode, currentMode]])).rows).toEqual([{ id: currentMode }]);
  });
});

describe('rows whose object is missing', () => {
  it('are flagged (a log line with the ids, a counted finding) after two runs over the grace period, and never deleted', async () => {
    const keyId = (await createKeyIn(call, server.hsmInstanceId)).keyId;
    const versionId = await primaryVersion(keyId);
    const byokKeyId = (await createKeyIn(call, server.softwareInstanceId, { Origin: 'EXTERNAL' })).keyId;
    await call('GetParametersForImport', { KeyId: byokKeyId, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' });
    const { rows } = await server.kms.deps.db.query<{ id: string }>('SELECT id FROM wrapping_keys WHERE key_id = $1', [byokKeyId]);
    const wrappingKeyId = rows[0]!.id;
    await destroyBehindTheServicesBack(m.secretKeyById(versionId));
    await destroyBehindTheServicesBack(m.privateKeyById(wrappingKeyId));
    const before = await countFlaggedFindings(server.kms.deps.db);

    const first = await reconcile();
    expect(first.flagged).toEqual([]);
    clock.advance(RECONCILE_GRACE_MS);
    const second = await reconcile();
    expect(second.flagged).toEqual(
      expect.arrayContaining([
        { kind: 'missing-version-key', objectId: versionId, keyId },
        { kind: 'missing-wrapping-pair', objectId: wrappingKeyId, keyId: byokKeyId },
      ]),
    );
    const flaggedLines = server.logs.filter((line) => line.includes('reconciler') && line.includes('"finding":"missing-'));
    expect(flaggedLines.some((line) => line.includes(versionId) && line.includes(keyId))).toBe(true);
    expect(flaggedLines.some((line) => line.includes(wrappingKeyId) && line.includes(byokKeyId))).toBe(true);
    const after = await countFlaggedFindings(server.kms.deps.db);
    expect(after['missing-version-key']).toBe(before['missing-version-key'] + 1);
    expect(after['missing-wrapping-pair']).toBe(before['missing-wrapping-pair'] + 1);

    // Flagged once, counted while it lasts, and the rows stay.
    clock.advance(RECONCILE_GRACE_MS);
    const third = await reconcile();
    expect(third.flagged.map((f) => f.objectId)).not.toContain(versionId);
    expect(third.flaggedTotal).toBeGreaterThanOrEqual(2);
    expect((await call('DescribeKey', { KeyId: keyId })).KeyMetadata.KeyState).toBe('Enabled');
    expect((await server.kms.deps.db.query('SELECT 1 FROM key_versions WHERE id = $1', [versionId])).rows).toHaveLength(1);
    expect((await server.kms.deps.db.query('SELECT 1 FROM wrapping_keys WHERE id = $1', [wrappingKeyId])).rows).toHaveLength(1);
  });
});
