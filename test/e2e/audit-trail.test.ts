import { randomBytes, verify as verifySignature } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditDigest, type AuditRecord, digestPreimage, eventHash, sealEvent } from '../../src/domain/audit.js';
import type { Hsm } from '../../src/hsm/hsm.js';
import { createAuditDigests, verifyAuditTrail } from '../../src/services/audit-trail.js';
import type { Caller } from '../../src/services/context.js';
import { createKey } from '../../src/services/keys.js';
import { listAudit } from '../../src/store/audit.js';
import pkcs11js from 'pkcs11js';
import { AUDIT_DIGEST_KEY_ID } from '../../src/hsm/pkcs11/audit-digest-key.js';
import * as m from '../../src/hsm/pkcs11/mechanisms.js';
import { findObjects } from '../../src/hsm/pkcs11/object-inventory.js';
import { withTokenSession } from '../helpers/token-session.js';
import { eventually, kmsCli, localEnv, startServeProcess, stopProcess, type ServeProcess } from '../helpers/audit.js';
import { type CallApi, openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 17, the audit trail nobody can edit unseen: mutating events commit (or roll back) with
 * their change; crypto calls and refusals arrive through the batched path after its flush
 * window; nothing secret is in any row; `kms audit verify` (the real CLI, with the HSM's
 * digest key) passes on an untouched log and names the first broken row after each kind of
 * tampering done here in SQL; chains written by two server processes at once verify.
 */
let server: TestServer;
let call: CallApi;
let env: NodeJS.ProcessEnv;
const FLUSH_MS = 100;

beforeAll(async () => {
  server = await startServer({ env: { KMS_AUDIT_FLUSH_MS: String(FLUSH_MS) } });
  call = openApiClient(server.endpoint, server.admin);
  env = localEnv(server);
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

const db = () => server.kms.deps.db;
const eventsOf = (requestId: string) => db().query<{ action: string; result_code: string }>('SELECT action, result_code FROM audit_events WHERE request_id = $1', [requestId]);

describe('recording', () => {
  it('a mutating call commits its event, with its result, in its own transaction', async () => {
    const created = await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, Description: 'audited' });
    const keyId = created.KeyMetadata.KeyId as string;
    const [event] = await listAudit(db(), { keyId, action: 'CreateKey' });
    expect(event).toMatchObject({
      requestId: created.RequestId,
      accessKeyId: server.admin.accessKeyId,
      keyId,
      keyVersionId: created.KeyMetadata.PrimaryKeyVersion,
      resultCode: 'OK',
    });
    expect(event?.sourceIp).toMatch(/127\.0\.0\.1$/);
  });

  it('a CreateKey that fails after its event was recorded leaves no event (rolled back with it)', async () => {
    const real = server.kms.deps.hsm;
    let generated = 0;
    const failing: Hsm = Object.create(real, {
      generateVersionKey: {
        value: async () => {
          generated++;
          throw new Error('the token refused');
        },
      },
    }) as Hsm;
    const requestId = `TEST-${randomBytes(8).toString('hex')}`;
    const caller: Caller = { accessKeyId: server.admin.accessKeyId, role: 'admin', instanceIds: null, requestId, sourceIp: '192.0.2.1' };
    await expect(createKey({ ...server.kms.deps, hsm: failing }, { instanceId: server.hsmInstanceId }, caller)).rejects.toThrow();
    // The token was asked last, after the event had been recorded in the transaction.
    expect(generated).toBe(1);
    await server.kms.cryptoCallAudit.flush();
    expect((await eventsOf(requestId)).rows).toEqual([]);
  });

  it('a refused mutating call is recorded through the batched path with its error code', async () => {
    const refused = await sdkError(() => call('CreateKey', { DKMSInstanceId: 'kst-nope-nope', KeySpec: 'Aliyun_AES_256' }));
    await eventually('the refusal recorded', async () => (await eventsOf(refused.data.RequestId as string)).rows.length === 1, 10_000);
    expect((await eventsOf(refused.data.RequestId as string)).rows[0]).toEqual({ action: 'CreateKey', result_code: refused.code });
  });

  it('crypto calls appear after the flush window, with key, version, caller and result (success and refusal)', async () => {
    const keyId = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId as string;
    const encrypted = await call('Encrypt', { KeyId: keyId, Plaintext: Buffer.from('hello').toString('base64') });
    const decrypted = await call('Decrypt', { CiphertextBlob: encrypted.CiphertextBlob });
    const refused = await sdkError(() => call('Decrypt', { CiphertextBlob: Buffer.from(randomBytes(80)).toString('base64') }));
    await eventually('three crypto events recorded', async () => {
      const { rows } = await db().query('SELECT 1 FROM audit_events WHERE request_id = ANY($1)', [[encrypted.RequestId, decrypted.RequestId, refused.data.RequestId]]);
      return rows.length === 3;
    }, 10_000);
    const [event] = await listAudit(db(), { keyId, action: 'Encrypt' });
    expect(event).toMatchObject({ requestId: encrypted.RequestId, keyVersionId: encrypted.KeyVersionId, accessKeyId: server.admin.accessKeyId, resultCode: 'OK' });
    expect(event?.sourceIp).toMatch(/127\.0\.0\.1$/);
    expect((await eventsOf(refused.data.RequestId as string)).rows[0]).toEqual({ action: 'Decrypt', result_code: refused.code });
  });

  it('a call refused for its key\'s state names that key, so the key\'s history shows the denied attempts', async () => {
    const keyId = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId as string;
    await call('SetDeletionProtection', { KeyId: keyId, EnableDeletionProtection: 'true' });
    const blob = (await call('Encrypt', { KeyId: keyId, Plaintext: 'x' })).CiphertextBlob as string;
    await call('DisableKey', { KeyId: keyId });
    const refusals = [
      await sdkError(() => call('Encrypt', { KeyId: keyId, Plaintext: 'x' })),
      await sdkError(() => call('Decrypt', { CiphertextBlob: blob })),
      await sdkError(() => call('ScheduleKeyDeletion', { KeyId: keyId, PendingWindowInDays: 7 })),
    ];
    expect(refusals.map((r) => r.code)).toEqual(['Rejected.Disabled', 'Rejected.Disabled', 'Forbidden.DeletionProtection']);
    const requestIds = refusals.map((r) => r.data.RequestId as string);
    await eventually('the refusals recorded', async () => (await db().query('SELECT 1 FROM audit_events WHERE request_id = ANY($1)', [requestIds])).rows.length === 3, 10_000);
    const ofKey = await listAudit(db(), { keyId });
    for (const [i, requestId] of requestIds.entries()) {
      expect(ofKey.find((e) => e.requestId === requestId), requestId).toMatchObject({ keyId, resultCode: refusals[i]!.code });
    }
  });

  it('CreateKey\'s event records the tags and the rotation policy it set', async () => {
    const created = await call('CreateKey', {
      DKMSInstanceId: server.softwareInstanceId,
      Tags: JSON.stringify([{ TagKey: 'team', TagValue: 'payments' }]),
      EnableAutomaticRotation: 'true',
      RotationInterval: '30d',
    });
    const [event] = await listAudit(db(), { keyId: created.KeyMetadata.KeyId as string, action: 'CreateKey' });
    expect(event?.detail).toMatchObject({ tagKeys: ['team'], automaticRotation: 'Enabled', rotationIntervalSeconds: 2_592_000 });
  });

  it('holds no plaintext, material, token, secret or PIN in any row', async () => {
    const plaintext = `secret-plaintext-${randomBytes(12).toString('hex')}`;
    const keyId = (await call('CreateKey', { DKMSInstanceId: server.hsmInstanceId })).KeyMetadata.KeyId as string;
    const encrypted = await call('Encrypt', { KeyId: keyId, Plaintext: Buffer.from(plaintext).toString('base64') });
    const dataKey = await call('GenerateDataKey', { KeyId: keyId });
    const params = await call('GetParametersForImport', {
      KeyId: (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId, Origin: 'EXTERNAL' })).KeyMetadata.KeyId,
      WrappingKeySpec: 'RSA_2048',
      WrappingAlgorithm: 'RSAES_OAEP_SHA_256',
    });
    const cli = await kmsCli(env, 'access-key', 'create', '--role', 'key-user');
    expect(cli.code, cli.stderr).toBe(0);
    const newSecret = (JSON.parse(cli.stdout) as { AccessKeySecret: string }).AccessKeySecret;
    await server.kms.cryptoCallAudit.flush();
    await eventually('the data key call recorded', async () => (await eventsOf(dataKey.RequestId)).rows.length === 1, 10_000);
    await createAuditDigests(server.kms.deps);
    const { rows } = await db().query<{ row: string }>(
      `SELECT row_to_json(e)::text AS row FROM audit_events e
       UNION ALL SELECT row_to_json(d)::text FROM (SELECT chain_id, last_hash, encode(signature, 'base64') AS s FROM audit_digests) d`,
    );
    const everything = rows.map((r) => r.row).join('\n');
    expect(everything).toContain(encrypted.RequestId);
    const secrets = {
      plaintext,
      plaintextBase64: Buffer.from(plaintext).toString('base64'),
      dataKeyPlaintext: dataKey.Plaintext as string,
      ciphertext: encrypted.CiphertextBlob as string,
      importToken: params.ImportToken as string,
      adminSecret: server.admin.accessKeySecret,
      newAccessKeySecret: newSecret,
      userPin: server.token.userPin,
      soPin: server.token.soPin,
    };
    for (const [name, value] of Object.entries(secrets)) expect(everything.includes(value), name).toBe(false);
  });
});

describe('the audit digest key', () => {
  it('is one P-256 pair in the token whose private half is sensitive, non-extractable and only signs', async () => {
    const attributes = await withTokenSession(server, (p11, session) =>
      findObjects(p11, session, m.privateKeyById(AUDIT_DIGEST_KEY_ID)).map((handle) =>
        p11.C_GetAttributeValue(session, handle, [
          { type: pkcs11js.CKA_SENSITIVE },
          { type: pkcs11js.CKA_EXTRACTABLE },
          { type: pkcs11js.CKA_SIGN },
          { type: pkcs11js.CKA_DECRYPT },
          { type: pkcs11js.CKA_UNWRAP },
        ]).map((a) => (Buffer.isBuffer(a.value) ? a.value[0] === 1 : a.value)),
      ),
    );
    expect(attributes).toEqual([[true, false, true, false, false]]);
    const publicKeys = await server.kms.deps.hsm.auditDigestPublicKeys();
    expect(publicKeys).toHaveLength(1);
  });
});

describe('kms access-key changes go through the audited services', () => {
  it('create, disable, enable and delete each record an event; a disabled key is refused', async () => {
    const created = JSON.parse((await kmsCli(env, 'access-key', 'create', '--role', 'admin')).stdout) as { AccessKeyId: string; AccessKeySecret: string };
    const client = openApiClient(server.endpoint, { accessKeyId: created.AccessKeyId, accessKeySecret: created.AccessKeySecret });
    await client('ListKeys', {});
    expect((await kmsCli(env, 'access-key', 'disable', created.AccessKeyId)).code).toBe(0);
    await eventually('the disabled key refused', async () => (await sdkError(() => client('ListKeys', {}))).code === 'Forbidden.AccessKey', 15_000);
    expect((await kmsCli(env, 'access-key', 'enable', created.AccessKeyId)).code).toBe(0);
    expect((await kmsCli(env, 'access-key', 'delete', created.AccessKeyId)).code).toBe(0);
    const missing = await kmsCli(env, 'access-key', 'disable', created.AccessKeyId);
    expect(missing.code).toBe(1);
    const { rows } = await db().query<{ action: string; access_key_id: string; detail: string }>(
      `SELECT action, access_key_id, detail FROM audit_events WHERE detail LIKE $1 ORDER BY at, seq`,
      [`%${created.AccessKeyId}%`],
    );
    expect(rows.map((r) => r.action)).toEqual(['CreateAccessKey', 'DisableAccessKey', 'EnableAccessKey', 'DeleteAccessKey']);
    expect(rows.every((r) => r.access_key_id === 'system')).toBe(true);
  });
});

describe('kms audit verify', () => {
  let keyId: string;
  let chainId: number;
  let rows: AuditRecord[];

  const chainRows = async (): Promise<AuditRecord[]> => {
    const { rows: raw } = await db().query('SELECT * FROM audit_events WHERE chain_id = $1 ORDER BY seq', [chainId]);
    return raw.map((r) => ({
      chainId: Number(r.chain_id), seq: Number(r.seq), at: r.at, requestId: r.request_id, accessKeyId: r.access_key_id, sourceIp: r.source_ip,
      action: r.action, keyId: r.key_id, keyVersionId: r.key_version_id, resultCode: r.result_code, detail: r.detail, prevHash: r.prev_hash, hash: r.hash,
    }));
  };
  const verify = () => kmsCli(env, 'audit', 'verify');
  const expectBroken = async (pattern: RegExp) => {
    const result = await verify();
    expect(result.code, result.stdout).toBe(1);
    expect(result.stderr).toMatch(/audit trail verification FAILED/);
    expect(result.stderr).toMatch(pattern);
  };

  beforeAll(async () => {
    keyId = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId as string;
    for (let i = 0; i < 4; i++) await call('UpdateKeyDescription', { KeyId: keyId, Description: `step ${i}` });
    const requestIds: string[] = [];
    for (let i = 0; i < 4; i++) requestIds.push((await call('Encrypt', { KeyId: keyId, Plaintext: 'aGk=' })).RequestId as string);
    await eventually('the encryptions recorded', async () => (await db().query('SELECT 1 FROM audit_events WHERE request_id = ANY($1)', [requestIds])).rows.length === 4, 10_000);
    const digested = await kmsCli(env, 'audit', 'digest');
    expect(digested.code, digested.stderr).toBe(0);
    chainId = (await listAudit(db(), { keyId, action: 'CreateKey' }))[0]!.chainId;
    rows = (await chainRows()).filter((r) => r.keyId === keyId);
    expect(rows.length).toBeGreaterThanOrEqual(9);
  }, 120_000);

  it('passes on an untouched log, with every chain digested', async () => {
    const result = await verify();
    expect(result.code, result.stderr).toBe(0);
    const shown = JSON.parse(result.stdout) as { Verified: boolean; Events: number; Digests: number; AnchoredChains: number };
    expect(shown.Verified).toBe(true);
    expect(shown.Digests).toBeGreaterThanOrEqual(1);
    expect(shown.AnchoredChains).toBeGreaterThanOrEqual(1);
    expect(shown.Events).toBeGreaterThanOrEqual(rows.length);
  });

  it('fails naming the row after one field of a row is edited in SQL', async () => {
    const target = rows[2]!;
    await db().query(`UPDATE audit_events SET result_code = 'Forbidden.NoPermission' WHERE chain_id = $1 AND seq = $2`, [chainId, target.seq]);
    try {
      await expectBroken(new RegExp(`row chain=${chainId} seq=${target.seq} .*hash does not match its content`));
    } finally {
      await db().query('UPDATE audit_events SET result_code = $3 WHERE chain_id = $1 AND seq = $2', [chainId, target.seq, target.resultCode]);
    }
    expect((await verify()).code).toBe(0);
  });

  it('fails naming the gap after one row is deleted in SQL', async () => {
    const target = rows[3]!;
    await db().query('DELETE FROM audit_events WHERE chain_id = $1 AND seq = $2', [chainId, target.seq]);
    try {
      await expectBroken(new RegExp(`chain ${chainId}: seq ${target.seq} is missing`));
    } finally {
      await db().query(
        `INSERT INTO audit_events (chain_id, seq, at, request_id, access_key_id, source_ip, action, key_id, key_version_id, result_code, detail, prev_hash, hash)
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)`,
        [target.chainId, target.seq, target.at, target.requestId, target.accessKeyId, target.sourceIp, target.action, target.keyId, target.keyVersionId, target.resultCode, target.detail, target.prevHash, target.hash],
      );
    }
    expect((await verify()).code).toBe(0);
  });

  it('fails naming the row after two rows are swapped in SQL', async () => {
    const [a, b] = [rows[4]!, rows[5]!];
    const swap = async () => {
      await db().query('UPDATE audit_events SET seq = -1 WHERE chain_id = $1 AND seq = $2', [chainId, a.seq]);
      await db().query('UPDATE audit_events SET seq = $3 WHERE chain_id = $1 AND seq = $2', [chainId, b.seq, a.seq]);
      await db().query('UPDATE audit_events SET seq = $2 WHERE chain_id = $1 AND seq = -1', [chainId, b.seq]);
    };
    await swap();
    try {
      await expectBroken(new RegExp(`row chain=${chainId} seq=${a.seq} .*(prev_hash does not match|hash does not match)`));
    } finally {
      await swap();
    }
    expect((await verify()).code).toBe(0);
  });

  /** Runs `tamper` on the chain, then puts its events, digests and head back as they were. */
  const tamperedThenRestored = async (tamper: () => Promise<void>, check: () => Promise<void>) => {
    const backup = `audit_backup_${process.pid}_${chainId}`;
    await db().query(`CREATE TABLE ${backup}_events AS SELECT * FROM audit_events WHERE chain_id = ${chainId}`);
    await db().query(`CREATE TABLE ${backup}_digests AS SELECT * FROM audit_digests WHERE chain_id = ${chainId}`);
    await db().query(`CREATE TABLE ${backup}_head AS SELECT * FROM audit_chain_heads WHERE chain_id = ${chainId}`);
    try {
      await tamper();
      await check();
    } finally {
      await db().query(`DELETE FROM audit_events WHERE chain_id = ${chainId}`);
      await db().query(`DELETE FROM audit_digests WHERE chain_id = ${chainId}`);
      await db().query(`INSERT INTO audit_events SELECT * FROM ${backup}_events`);
      await db().query(`INSERT INTO audit_digests SELECT * FROM ${backup}_digests`);
      await db().query(`UPDATE audit_chain_heads h SET seq = b.seq, hash = b.hash FROM ${backup}_head b WHERE h.chain_id = b.chain_id`);
      for (const table of ['events', 'digests', 'head']) await db().query(`DROP TABLE ${backup}_${table}`);
    }
    expect((await verify()).code).toBe(0);
  };

  it('fails when the digests are deleted with the history they signed and the head rewound (the HSM\'s anchor names the digest)', async () => {
    // The attack: delete the chain's digests, every event after the first, and move the head
    // back, so that what is left is a short, valid, unsigned chain. Only the token remembers.
    await tamperedThenRestored(async () => {
      await db().query('DELETE FROM audit_digests WHERE chain_id = $1', [chainId]);
      await db().query('DELETE FROM audit_events WHERE chain_id = $1 AND seq > 1', [chainId]);
      await db().query('UPDATE audit_chain_heads SET seq = 1, hash = (SELECT hash FROM audit_events WHERE chain_id = $1 AND seq = 1) WHERE chain_id = $1', [chainId]);
    }, () => expectBroken(new RegExp(`chain ${chainId}: digest #\\d+, which the HSM's anchor names, is missing`)));
  });

  it('fails when only the digests are deleted, and when the whole chain is wiped back to genesis', async () => {
    await tamperedThenRestored(
      () => db().query('DELETE FROM audit_digests WHERE chain_id = $1', [chainId]).then(() => undefined),
      () => expectBroken(new RegExp(`chain ${chainId}: digest #\\d+, which the HSM's anchor names, is missing`)),
    );
    await tamperedThenRestored(async () => {
      await db().query('DELETE FROM audit_digests WHERE chain_id = $1', [chainId]);
      await db().query('DELETE FROM audit_events WHERE chain_id = $1', [chainId]);
      await db().query(`UPDATE audit_chain_heads SET seq = 0, hash = repeat('0', 64) WHERE chain_id = $1`, [chainId]);
    }, () => expectBroken(new RegExp(`chain ${chainId}: digest #\\d+, which the HSM's anchor names, is missing`)));
  });

  it('fails on the digest signature after the chain is rewritten and re-chained with correct hashes but without the HSM key', async () => {
    const all = await chainRows();
    const edited = rows[1]!;
    // The attacker's rewrite: change one event, recompute every hash after it, move the head …
    let prev = all.find((r) => r.seq === edited.seq - 1)?.hash ?? '0'.repeat(64);
    const rewritten = new Map<number, string>();
    for (const row of all.filter((r) => r.seq >= edited.seq)) {
      const { hash: _old, ...rest } = row;
      const changed = { ...rest, prevHash: prev, ...(row.seq === edited.seq ? { resultCode: 'Rejected.Disabled' } : {}) };
      const hash = eventHash(changed);
      await db().query('UPDATE audit_events SET result_code = $3, prev_hash = $4, hash = $5 WHERE chain_id = $1 AND seq = $2', [chainId, row.seq, changed.resultCode, prev, hash]);
      rewritten.set(row.seq, hash);
      prev = hash;
    }
    await db().query('UPDATE audit_chain_heads SET hash = $2 WHERE chain_id = $1', [chainId, prev]);
    // (the chain alone is consistent again: only the signed digest still knows the old hash)
    await expectBroken(new RegExp(`digest chain=${chainId} #\\d+ .*differs from the signed one`));

    // … and the digests re-pointed at the new hashes, their hashes recomputed: only the signature is left.
    const { rows: digests } = await db().query('SELECT * FROM audit_digests WHERE chain_id = $1 ORDER BY digest_seq', [chainId]);
    const { digestHash } = await import('../../src/domain/audit.js');
    let prevDigest = '0'.repeat(64);
    for (const d of digests) {
      const lastHash = rewritten.get(Number(d.last_seq)) ?? d.last_hash;
      const recomputed = digestHash({
        chainId, digestSeq: Number(d.digest_seq), firstSeq: Number(d.first_seq), lastSeq: Number(d.last_seq), eventCount: Number(d.event_count),
        firstAt: d.first_at, lastAt: d.last_at, lastHash, prevDigestHash: prevDigest, createdAt: d.created_at,
      });
      await db().query('UPDATE audit_digests SET last_hash = $3, prev_digest_hash = $4, digest_hash = $5 WHERE chain_id = $1 AND digest_seq = $2', [chainId, d.digest_seq, lastHash, prevDigest, recomputed]);
      prevDigest = recomputed;
    }
    await expectBroken(new RegExp(`digest chain=${chainId} #\\d+ .*signature does not verify with the HSM's audit digest key`));
    // A sanity check of the rewrite itself: sealing the edited event by the rules gives the hash the attacker wrote.
    const resealed = sealEvent(
      { ...edited, requestId: edited.requestId ?? undefined, accessKeyId: edited.accessKeyId ?? undefined, sourceIp: edited.sourceIp ?? undefined, keyId: edited.keyId ?? undefined, keyVersionId: edited.keyVersionId ?? undefined, resultCode: 'Rejected.Disabled', detail: JSON.parse(edited.detail) as Record<string, unknown> },
      chainId, edited.seq, all.find((r) => r.seq === edited.seq - 1)?.hash ?? '0'.repeat(64), edited.at,
    );
    expect(resealed.hash).toBe(rewritten.get(edited.seq));
  });
});

describe('two server processes appending at once', () => {
  let second: ServeProcess | undefined;
  afterAll(async () => {
    if (second) await stopProcess(second.child);
  });

  it('50 parallel CreateKeys across 2 processes: every event recorded once, every chain verifies', { timeout: 180_000 }, async () => {
    // A fresh, valid trail first (the tampering above rewrote one chain for good), with the
    // token's anchors of the old one cleared, as `kms reset` does.
    await server.kms.deps.hsm.clearAuditAnchors();
    await db().query('TRUNCATE audit_events, audit_digests');
    await db().query(`UPDATE audit_chain_heads SET seq = 0, hash = repeat('0', 64)`);
    second = await startServeProcess(server, { KMS_AUDIT_FLUSH_MS: String(FLUSH_MS) });
    const other = openApiClient(second.endpoint, server.admin);
    // Verified while the two processes append (and digests are signed): a live trail verifies too.
    let appending = true;
    const verifiedWhileAppending: Array<string | undefined> = [];
    const verifying = (async () => {
      while (appending) {
        await createAuditDigests(server.kms.deps);
        verifiedWhileAppending.push((await verifyAuditTrail(server.kms.deps)).firstProblem);
      }
    })();
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => (i % 2 === 0 ? call : other)('CreateKey', { DKMSInstanceId: server.softwareInstanceId, Description: `parallel ${i}` })),
    ).finally(() => (appending = false));
    await verifying;
    expect(verifiedWhileAppending.length).toBeGreaterThan(0);
    expect(verifiedWhileAppending.filter((problem) => problem !== undefined)).toEqual([]);
    const keyIds = results.map((r) => r.KeyMetadata.KeyId as string);
    const { rows } = await db().query<{ key_id: string }>(`SELECT key_id FROM audit_events WHERE action = 'CreateKey' AND key_id = ANY($1)`, [keyIds]);
    expect(rows.map((r) => r.key_id).sort()).toEqual([...keyIds].sort());
    const { rows: chains } = await db().query<{ n: string }>(`SELECT count(DISTINCT chain_id) AS n FROM audit_events WHERE key_id = ANY($1)`, [keyIds]);
    expect(Number(chains[0]?.n)).toBeGreaterThan(1);
    await createAuditDigests(server.kms.deps);
    const verified = await verifyAuditTrail(server.kms.deps);
    expect(verified.firstProblem).toBeUndefined();
    expect(verified.ok).toBe(true);
    const cli = await kmsCli(env, 'audit', 'verify');
    expect(cli.code, cli.stderr).toBe(0);
  });
});

describe('kms audit list and export', () => {
  it('list filters by key, action and time; export prints every row as JSON lines that recompute', async () => {
    const keyId = (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId as string;
    await call('UpdateKeyDescription', { KeyId: keyId, Description: 'listed' });
    const listed = await kmsCli(env, 'audit', 'list', '--key', keyId, '--since', '10m');
    expect(listed.code, listed.stderr).toBe(0);
    expect((JSON.parse(listed.stdout) as Array<{ Action: string }>).map((e) => e.Action)).toEqual(['CreateKey', 'UpdateKeyDescription']);
    const filtered = JSON.parse((await kmsCli(env, 'audit', 'list', '--key', keyId, '--action', 'UpdateKeyDescription')).stdout) as unknown[];
    expect(filtered).toHaveLength(1);
    expect(JSON.parse((await kmsCli(env, 'audit', 'list', '--key', keyId, '--since', new Date(Date.now() + 60_000).toISOString())).stdout)).toEqual([]);
    const table = await kmsCli(env, 'audit', 'list', '--key', keyId, '--table');
    expect(table.stdout).toMatch(/Time\s+Action\s+Result/);

    const exported = await kmsCli(env, 'audit', 'export');
    expect(exported.code, exported.stderr).toBe(0);
    const lines = exported.stdout.trim().split('\n').map((l) => JSON.parse(l) as AuditRecord & { at: string });
    const { rows } = await db().query<{ n: string }>('SELECT count(*) AS n FROM audit_events');
    expect(lines).toHaveLength(Number(rows[0]?.n));
    for (const line of lines) {
      const { hash, ...rest } = line;
      expect(eventHash({ ...rest, at: new Date(line.at) })).toBe(hash);
    }
  });

  it('exports the digests and the HSM public key, with which an auditor checks every signature elsewhere', async () => {
    await call('UpdateKeyDescription', { KeyId: (await call('CreateKey', { DKMSInstanceId: server.softwareInstanceId })).KeyMetadata.KeyId, Description: 'to digest' });
    expect((await kmsCli(env, 'audit', 'digest')).code).toBe(0);
    const pem = (await kmsCli(env, 'audit', 'public-key')).stdout;
    expect(pem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    const exported = await kmsCli(env, 'audit', 'export', '--digests');
    expect(exported.code, exported.stderr).toBe(0);
    const digests = exported.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    expect(digests.length).toBeGreaterThan(0);
    for (const d of digests) {
      const unsigned = { ...d, firstAt: new Date(d.firstAt), lastAt: new Date(d.lastAt), createdAt: new Date(d.createdAt) } as AuditDigest;
      expect(verifySignature('sha256', Buffer.from(digestPreimage(unsigned)), pem, Buffer.from(d.signature, 'base64')), `digest ${d.chainId}#${d.digestSeq}`).toBe(true);
      expect(verifySignature('sha256', Buffer.from(digestPreimage({ ...unsigned, eventCount: unsigned.eventCount + 1 })), pem, Buffer.from(d.signature, 'base64'))).toBe(false);
    }
  });
});
