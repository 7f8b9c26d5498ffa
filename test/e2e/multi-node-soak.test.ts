import { execFile } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcileHsmObjects } from '../../src/services/reconciler.js';
import { createInstance } from '../../src/services/instances.js';
import { RESYNC_EVERY_MS } from '../../src/shared-offset-clock.js';
import { systemCaller } from '../../src/services/context.js';
import { listAudit } from '../../src/store/audit.js';
import { getKey } from '../../src/store/keys.js';
import { importMaterial, waitFor } from '../helpers/jobs.js';
import { type CallApi, openApiClient } from '../helpers/sdk.js';
import { type ServeProcess, startServeProcess, startWorkerProcess } from '../helpers/serve-process.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 19, "2 servers + 2 workers": two `kms serve` and two `kms worker` OS processes on one
 * Postgres database, one Redis queue prefix and one SoftHSM2 token directory, all on the time
 * machine (KMS_CLOCK=manual), under a mixed load through the real SDK for KMS_SOAK_SECONDS
 * (15 s in the normal suite; 60 s under `npm run test:soak`, which also fails on a first 503): CreateKey on HSM (HsmInternal and
 * HsmEncryptedDatabase) and SOFTWARE instances, BYOK imports (with and without material
 * expiry), CreateKeyVersion, automatic rotation (7 d), Encrypt/Decrypt on either node,
 * DisableKey/EnableKey and ScheduleKeyDeletion, while `kms clock advance 8d` makes rotations,
 * material expiries and deletions due mid-run.
 *
 * Then: no 5xx at all; every ciphertext decrypts on both nodes (or, for a disabled, expired or
 * deleted key, gets the 4xx that state calls for); every due rotation made exactly one version
 * and every due deletion removed its key once; the quota counter equals the versions in the
 * database; the reconciler finds no orphan object and no missing one.
 *
 * Only generous deadlines (a loaded 2-core machine): no assertion on speed.
 */
/** `npm run test:soak` sets KMS_SOAK=1: 60 s; KMS_SOAK_SECONDS overrides either. */
const SOAK_SECONDS = Number(process.env.KMS_SOAK_SECONDS ?? (process.env.KMS_SOAK ? 60 : 15));
const CONCURRENCY = SOAK_SECONDS > 30 ? 8 : 4;
const STRICT_5XX = SOAK_SECONDS > 30;
/** Bounds on what the load creates, so SoftHSM2's object count stays modest. */
const MAX_KEYS = SOAK_SECONDS > 30 ? 160 : 60;
const MAX_VERSIONS_PER_KEY = 4;
const MAX_CIPHERTEXTS = 4_000;
const ADVANCE = '8d';
const ROTATION_INTERVAL_MS = 7 * 86_400_000;
const QUIET_DEADLINE_MS = 180_000;
const repoRoot = path.resolve(import.meta.dirname, '../..');
const run = promisify(execFile);

let server: TestServer;
let nodes: ServeProcess[] = [];
let workers: Array<Awaited<ReturnType<typeof startWorkerProcess>>> = [];
let calls: CallApi[] = [];
let instances: Array<{ id: string; kind: string }> = [];
let cliEnv: NodeJS.ProcessEnv;

beforeAll(async () => {
  const manual = { KMS_CLOCK: 'manual', KMS_SIGNATURE_MAX_SKEW_SECONDS: '900' };
  server = await startServer({ env: manual });
  const make = (type: 'HSM' | 'SOFTWARE', keyStorageMechanism?: 'HsmEncryptedDatabase') =>
    createInstance(server.kms.deps, { type, keyQuota: 100_000, qps: 100_000, ...(keyStorageMechanism ? { keyStorageMechanism } : {}) }, systemCaller);
  const [hsm, wrapped, software] = await Promise.all([make('HSM'), make('HSM', 'HsmEncryptedDatabase'), make('SOFTWARE')]);
  instances = [
    { id: hsm.id, kind: 'HsmInternal' },
    { id: wrapped.id, kind: 'HsmEncryptedDatabase' },
    { id: software.id, kind: 'SOFTWARE' },
  ];
  // Sequential starts: four Node processes opening the token at once only slow each other.
  for (let i = 0; i < 2; i++) nodes.push(await startServeProcess(server, manual));
  for (let i = 0; i < 2; i++) workers.push(await startWorkerProcess(server, manual));
  calls = nodes.map((n) => openApiClient(n.endpoint, server.admin));
  const { KMS_CLOCK: _clock, DATABASE_URL: _db, ...env } = process.env;
  cliEnv = {
    ...env,
    KMS_DATA_DIR: await mkdtemp(path.join(tmpdir(), 'kms-soak-clock-')),
    REDIS_URL: server.config.redisUrl,
    KMS_QUEUE_PREFIX: server.config.jobs.queuePrefix,
  };
}, 300_000);

afterAll(async () => {
  await Promise.all([...nodes, ...workers].map((p) => p.stop()));
  await server?.stop();
});

// ---- What the load made, as the test knows it -------------------------------------------

type KeyRole = 'stable' | 'rotating' | 'toggling' | 'imported' | 'expiring' | 'deleting';
interface LoadKey {
  id: string;
  role: KeyRole;
  instance: string;
  versions: number;
  busy: boolean;
  disabled: boolean;
}
interface Ciphertext {
  keyId: string;
  blob: string;
  plaintext: string;
  context: Record<string, string> | undefined;
}
interface Failure {
  action: string;
  node: number;
  status: number | undefined;
  code: string;
  message: string;
}

const keys: LoadKey[] = [];
const ciphertexts: Ciphertext[] = [];
const latencies: number[] = [];
const byAction = new Map<string, number>();
const serverErrors: Failure[] = [];
const unexpected: Failure[] = [];
const retried503: Failure[] = [];
const expectedRefusals = new Map<string, number>();
const advances: Array<{ now: number }> = [];
/** Wall times of each `kms clock advance` run (the service time moves somewhere in between). */
const clockMoves: Array<{ start: number; end?: number }> = [];

const pick = <T>(items: readonly T[]): T => items[items.length === 0 ? 0 : randomInt(items.length)]!;

function asFailure(action: string, node: number, error: unknown): Failure {
  const e = error as { code?: string; statusCode?: number; message?: string; data?: { Code?: string; HttpStatus?: number } };
  return {
    action,
    node,
    status: e.statusCode ?? e.data?.HttpStatus,
    code: e.data?.Code ?? String(e.code ?? 'NoCode').replace(/Error$/, ''),
    message: String(e.message ?? error).slice(0, 300),
  };
}

/**
 * One SDK call on node `node`, timed and counted. A 5xx (or no HTTP answer at all) is a defect;
 * a 4xx is a defect unless `allowed` accepts its code (a key the load disabled, expired or
 * scheduled for deletion meanwhile). Returns undefined when refused.
 *
 * A 503 ServiceUnavailableTemporary says "retry" (issue 19 item 1: a version another node has
 * just created that this node's SoftHSM2 view shows only after its bounded re-search): it is
 * listed and retried once after 1 s, as a client would; the retry must succeed (or give the
 * key's new state). Under `npm run test:soak` (STRICT_5XX) a first 503 fails the run unless
 * its key's state was being changed by the load (an expiry or deletion commit in flight).
 */
async function timed(
  node: number,
  action: string,
  query: Record<string, unknown>,
  allowed: (code: string) => boolean = () => false,
  mayRetry = true,
): Promise<Record<string, any> | undefined> {
  byAction.set(action, (byAction.get(action) ?? 0) + 1);
  const start = performance.now();
  try {
    return await calls[node]!(action, query);
  } catch (error) {
    const failure = asFailure(action, node, error);
    if (mayRetry && failure.status === 503 && failure.code === 'ServiceUnavailableTemporary') {
      retried503.push(failure);
      // Strict: only a key whose state the load is changing may meet one (a Decrypt racing a
      // worker's expiry or deletion commit); for any other key it is a defect.
      if (STRICT_5XX && !allowed(failure.code)) serverErrors.push(failure);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      return timed(node, action, query, allowed, false);
    }
    if (failure.status === undefined || failure.status >= 500) serverErrors.push(failure);
    else if (allowed(failure.code)) expectedRefusals.set(`${action}:${failure.code}`, (expectedRefusals.get(`${action}:${failure.code}`) ?? 0) + 1);
    else unexpected.push(failure);
    return undefined;
  } finally {
    latencies.push(performance.now() - start);
  }
}

/** Refusals a key in this role may get while the load changes its state under a concurrent call. */
const STATE_REFUSALS = new Set(['Rejected.Disabled', 'Forbidden.KeyNotFound', 'Forbidden.KeyPendingDeletion', 'Rejected.KeyStateNotAllowed', 'KeyState.PendingImport', 'Rejected.KeyPendingDeletion', 'KeyStateError']);
/** Read when the refusal comes (a ScheduleKeyDeletion may have started meanwhile), not when the call starts. */
const mayRefuse = (key: LoadKey) => (code: string) =>
  (key.role === 'toggling' || key.role === 'expiring' || key.role === 'deleting') &&
  (STATE_REFUSALS.has(code) || /State|Disabled|NotFound|Pending/.test(code) || code === 'ServiceUnavailableTemporary');

// ---- The load's steps ----------------------------------------------------------------------

async function createKey(node: number, instance = pick(instances), role = pick<KeyRole>(['stable', 'stable', 'rotating', 'toggling', 'deleting'])): Promise<void> {
  const created = await timed(node, 'CreateKey', {
    DKMSInstanceId: instance.id,
    ...(role === 'rotating' ? { EnableAutomaticRotation: true, RotationInterval: '7d' } : {}),
  });
  if (created) keys.push({ id: created.KeyMetadata.KeyId, role: role === 'deleting' ? 'stable' : role, instance: instance.kind, versions: 1, busy: false, disabled: false });
}

async function createImportedKey(node: number, instance = pick(instances), expiring = randomInt(3) === 0): Promise<void> {
  const created = await timed(node, 'CreateKey', { DKMSInstanceId: instance.id, Origin: 'EXTERNAL' });
  if (!created) return;
  const keyId = created.KeyMetadata.KeyId as string;
  // The service's own time (the time machine may be days ahead of the wall clock).
  const serviceNow = server.kms.deps.clock.now().getTime();
  // A clock move around the import (from a resync period before it: a node may apply a move
  // that late) legitimately expires the 24 h token or makes a 1-day expiry lie in the past.
  const started = Date.now();
  const movedMeanwhile = () => clockMoves.some((move) => move.start <= Date.now() && (move.end ?? Infinity) + RESYNC_EVERY_MS >= started);
  const tokenExpired = (code: string) => (code === 'ExpiredImportToken' || code === 'InvalidParameter') && movedMeanwhile();
  const importOn = (n: number): CallApi => async (action, query) => {
    const answer = await timed(n, action, query ?? {}, tokenExpired);
    if (!answer) throw new Error(`${action} failed`);
    return answer;
  };
  try {
    await importMaterial(importOn(node), keyId, randomBytes(32), expiring ? Math.floor(serviceNow / 1000) + 86_400 : undefined);
    keys.push({ id: keyId, role: expiring ? 'expiring' : 'imported', instance: instance.kind, versions: 1, busy: false, disabled: false });
  } catch {
    // Counted by timed(); the key stays PendingImport and takes no part in the load.
  }
}

async function encrypt(node: number): Promise<void> {
  const key = pick(keys);
  if (!key || ciphertexts.length >= MAX_CIPHERTEXTS) return;
  const plaintext = randomBytes(randomInt(1, 64)).toString('base64');
  const context = randomInt(2) === 0 ? { tenant: `t${randomInt(5)}` } : undefined;
  const answer = await timed(node, 'Encrypt', { KeyId: key.id, Plaintext: plaintext, ...(context ? { EncryptionContext: JSON.stringify(context) } : {}) }, mayRefuse(key));
  if (answer) ciphertexts.push({ keyId: key.id, blob: answer.CiphertextBlob, plaintext, context });
}

async function decrypt(node: number): Promise<void> {
  const ciphertext = pick(ciphertexts);
  if (!ciphertext) return;
  const key = keys.find((k) => k.id === ciphertext.keyId)!;
  const answer = await timed(
    node,
    'Decrypt',
    { CiphertextBlob: ciphertext.blob, ...(ciphertext.context ? { EncryptionContext: JSON.stringify(ciphertext.context) } : {}) },
    mayRefuse(key),
  );
  if (answer && answer.Plaintext !== ciphertext.plaintext) {
    unexpected.push({ action: 'Decrypt', node, status: 200, code: 'WrongPlaintext', message: `key ${key.id}` });
  }
}

/** One call on a key nobody else is changing right now. */
async function withIdleKey(roles: KeyRole[], step: (key: LoadKey) => Promise<void>): Promise<void> {
  const candidates = keys.filter((k) => roles.includes(k.role) && !k.busy);
  if (candidates.length === 0) return;
  const key = pick(candidates);
  key.busy = true;
  try {
    await step(key);
  } finally {
    key.busy = false;
  }
}

const createVersion = (node: number) =>
  withIdleKey(['stable'], async (key) => {
    if (key.versions >= MAX_VERSIONS_PER_KEY) return;
    if (await timed(node, 'CreateKeyVersion', { KeyId: key.id })) key.versions++;
  });

const toggle = (node: number) =>
  withIdleKey(['toggling'], async (key) => {
    const action = key.disabled ? 'EnableKey' : 'DisableKey';
    if (await timed(node, action, { KeyId: key.id })) key.disabled = !key.disabled;
  });

const scheduleDeletion = (node: number) =>
  withIdleKey(['stable'], async (key) => {
    // At most a quarter of the keys go; the rest must decrypt at the end.
    if (keys.filter((k) => k.role === 'deleting').length * 4 >= keys.length) return;
    key.role = 'deleting';
    if (!(await timed(node, 'ScheduleKeyDeletion', { KeyId: key.id, PendingWindowInDays: 7 }))) key.role = 'stable';
  });

async function oneStep(): Promise<void> {
  const node = randomInt(2);
  const roll = randomInt(100);
  const full = keys.length >= MAX_KEYS;
  if (keys.length < 6 || (roll < 8 && !full)) return createKey(node);
  if (roll < 12 && !full) return createImportedKey(node);
  if (roll < 16) return createVersion(node);
  if (roll < 22) return toggle(node);
  if (roll < 24) return scheduleDeletion(node);
  if (roll < 60) return encrypt(node);
  return decrypt(node);
}

// ---- The time machine and the due jobs ---------------------------------------------------

async function advanceClock(): Promise<void> {
  const move: { start: number; end?: number } = { start: Date.now() };
  clockMoves.push(move);
  const { stdout } = await run(process.execPath, [path.join(repoRoot, 'bin/kms.mjs'), 'clock', 'advance', ADVANCE], { cwd: repoRoot, env: cliEnv });
  move.end = Date.now();
  advances.push({ now: Date.parse((JSON.parse(stdout) as { Now: string }).Now) });
}

/** Due rotations each rotating key has had: the advances whose new time is a full interval past its creation. */
async function dueRotations(keyId: string): Promise<number> {
  const created = (await getKey(server.kms.deps.db, keyId))!.createdAt.getTime();
  return advances.filter((a) => a.now - ROTATION_INTERVAL_MS > created).length;
}

/** Until every job made due by the last advance has run (polled against Postgres, generous deadline). */
async function waitForDueJobs(): Promise<void> {
  const now = advances.at(-1)?.now;
  if (now === undefined) return;
  const db = server.kms.deps.db;
  await waitFor(
    'the due rotations, deletions and material expiries to run',
    async () => {
      const { rows } = await db.query<{ rotations: string; deletions: string; expiries: string }>(
        `SELECT (SELECT count(*) FROM keys WHERE next_rotation_date <= $1 AND state = 'Enabled') AS rotations,
                (SELECT count(*) FROM keys WHERE state = 'PendingDeletion' AND delete_date <= $1) AS deletions,
                (SELECT count(*) FROM key_versions WHERE material_expire_at <= $1) AS expiries`,
        [new Date(now)],
      );
      const r = rows[0]!;
      return r.rotations === '0' && r.deletions === '0' && r.expiries === '0';
    },
    QUIET_DEADLINE_MS,
    250,
  );
}

describe('2 kms serve + 2 kms worker on one database, Redis prefix and token', () => {
  it(`a ${SOAK_SECONDS} s mixed load with the time machine: no 5xx, everything decrypts everywhere, due jobs ran once, quota and token agree`, { timeout: (SOAK_SECONDS + 900) * 1000 }, async () => {
    // Every role on every instance from the start, so the first advance has rotations,
    // deletions and expiries to make due whatever the random load picks.
    for (const [i, instance] of instances.entries()) {
      for (const role of ['rotating', 'toggling', 'stable'] as const) await createKey(i % 2, instance, role);
      await createImportedKey((i + 1) % 2, instance, true);
      await createImportedKey(i % 2, instance, false);
    }
    await scheduleDeletion(0);
    const started = performance.now();
    const endAt = Date.now() + SOAK_SECONDS * 1000;
    const loaders = Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < endAt) await oneStep();
    });
    // The time machine mid-run: about every quarter of the run, once the previous advance's jobs ran.
    const machine = (async () => {
      const every = (SOAK_SECONDS * 1000) / 4;
      while (Date.now() + every / 2 < endAt) {
        await new Promise((resolve) => setTimeout(resolve, every));
        if (Date.now() >= endAt) break;
        await waitForDueJobs();
        await advanceClock();
      }
    })();
    await Promise.all([...loaders, machine]);
    const loadSeconds = (performance.now() - started) / 1000;

    // A last advance: every expiring import expires, every scheduled deletion falls due.
    await waitForDueJobs();
    await advanceClock();
    await waitForDueJobs();
    const db = server.kms.deps.db;

    // Every ciphertext, on both nodes.
    const finalRefusals = new Map<string, number>();
    const wrongAtEnd: string[] = [];
    const keyState = new Map<string, string | undefined>();
    for (const key of keys) keyState.set(key.id, (await getKey(db, key.id))?.state);
    const queue = ciphertexts.flatMap((c) => [0, 1].map((node) => ({ c, node })));
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let item = queue.shift(); item; item = queue.shift()) {
          const { c, node } = item;
          const key = keys.find((k) => k.id === c.keyId)!;
          const state = keyState.get(key.id);
          const usable = state === 'Enabled';
          const answer = await timed(node, 'Decrypt', { CiphertextBlob: c.blob, ...(c.context ? { EncryptionContext: JSON.stringify(c.context) } : {}) }, (code) => {
            if (usable) return false;
            finalRefusals.set(`${state ?? 'deleted'}:${code}`, (finalRefusals.get(`${state ?? 'deleted'}:${code}`) ?? 0) + 1);
            return true;
          });
          if (answer && (!usable || answer.Plaintext !== c.plaintext)) wrongAtEnd.push(`${key.id} (${key.role}, ${state}) on node ${node}`);
        }
      }),
    );

    // Roles against the final states.
    const roleStates = keys.map((k) => ({ k, state: keyState.get(k.id) }));
    const misplaced = roleStates.filter(({ k, state }) => {
      if (k.role === 'deleting') return state !== undefined;
      if (k.role === 'expiring') return advances.length > 0 && state !== 'PendingImport';
      if (k.role === 'toggling') return state !== (k.disabled ? 'Disabled' : 'Enabled');
      return state !== 'Enabled';
    });

    // Rotations: one new version per due rotation; deletions: removed once.
    const rotationMismatches: string[] = [];
    let rotationsDue = 0;
    for (const key of keys.filter((k) => k.role === 'rotating')) {
      const due = await dueRotations(key.id);
      rotationsDue += due;
      const versions = (await db.query('SELECT id FROM key_versions WHERE key_id = $1', [key.id])).rowCount;
      const audited = (await listAudit(db, { keyId: key.id, action: 'AutomaticRotation' })).length;
      if (versions !== 1 + due || audited !== due) rotationMismatches.push(`${key.id}: due ${due}, versions ${versions}, AutomaticRotation audits ${audited}`);
    }
    const deletionMismatches: string[] = [];
    for (const key of keys.filter((k) => k.role === 'deleting')) {
      const deletes = (await listAudit(db, { keyId: key.id, action: 'DeleteKey' })).length;
      if (deletes !== 1) deletionMismatches.push(`${key.id}: ${deletes} DeleteKey audits`);
    }
    const duplicateOrdinals = (
      await db.query('SELECT key_id, ordinal FROM key_versions GROUP BY key_id, ordinal HAVING count(*) > 1')
    ).rows;

    // Quota: each instance's counter equals its versions in the database.
    const quota = (
      await db.query<{ id: string; versions_used: number; versions: string }>(
        `SELECT i.id, i.versions_used, (SELECT count(*) FROM key_versions v JOIN keys k ON k.id = v.key_id WHERE k.instance_id = i.id) AS versions
         FROM instances i WHERE i.id = ANY($1)`,
        [instances.map((i) => i.id)],
      )
    ).rows.filter((r) => Number(r.versions_used) !== Number(r.versions));

    // The reconciler with no grace: a first run sees any mismatch, a second would act on it.
    const reconciled = await reconcileHsmObjects(server.kms.deps, { graceMs: 0 });

    const sorted = [...latencies].sort((a, b) => a - b);
    const p = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!.toFixed(0);
    const total = latencies.length;
    console.log(
      `multi-node soak: ${SOAK_SECONDS} s load (${loadSeconds.toFixed(0)} s), ${CONCURRENCY} clients, ${total} calls ` +
        `(${[...byAction].map(([a, n]) => `${a} ${n}`).join(', ')}), 5xx ${serverErrors.length}, 503 retried ${retried503.length}, unexpected 4xx ${unexpected.length}, ` +
        `p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, max ${p(1)} ms; ${keys.length} keys (${instances.map((i) => `${i.kind} ${keys.filter((k) => k.instance === i.kind).length}`).join(', ')}), ` +
        `${ciphertexts.length} ciphertexts × 2 nodes, ${advances.length} clock advances, ${rotationsDue} due rotations of ${keys.filter((k) => k.role === 'rotating').length} keys, ` +
        `deletions ${keys.filter((k) => k.role === 'deleting').length}; refusals in flight ${JSON.stringify(Object.fromEntries(expectedRefusals))}, at the end ${JSON.stringify(Object.fromEntries(finalRefusals))}`,
    );

    if (retried503.length > 0) console.log(`503s retried: ${JSON.stringify(retried503)}`);
    // The nodes' own log lines for each 5xx (by request id), for the report.
    for (const failure of [...serverErrors, ...retried503]) {
      const requestId = /request id: ([0-9A-F-]{36})/.exec(failure.message)?.[1];
      const lines = requestId ? nodes.flatMap((n) => n.output().split('\n')).filter((line) => line.includes(requestId)) : [];
      console.log(`5xx ${failure.action} on node ${failure.node}: ${lines.join('\n') || '(no log line)'}`);
    }
    // All checks in one comparison, so a failing run shows every problem at once.
    expect({
      serverErrors,
      unexpected,
      wrongAtEnd,
      misplaced: misplaced.map(({ k, state }) => `${k.id} ${k.role} → ${state}`),
      rotationMismatches,
      deletionMismatches,
      duplicateOrdinals,
      quota,
      reconciler: { destroyed: reconciled.destroyed, flagged: reconciled.flagged, suspected: reconciled.suspected, flaggedTotal: reconciled.flaggedTotal },
    }).toEqual({
      serverErrors: [],
      unexpected: [],
      wrongAtEnd: [],
      misplaced: [],
      rotationMismatches: [],
      deletionMismatches: [],
      duplicateOrdinals: [],
      quota: [],
      reconciler: { destroyed: [], flagged: [], suspected: 0, flaggedTotal: 0 },
    });
    // The run exercised what it checks.
    expect(advances.length).toBeGreaterThanOrEqual(2);
    expect(rotationsDue).toBeGreaterThanOrEqual(instances.length);
    expect(keys.filter((k) => k.role === 'deleting').length).toBeGreaterThanOrEqual(1);
    expect(keys.filter((k) => k.role === 'expiring').length).toBeGreaterThanOrEqual(1);
    // Nothing crashed.
    for (const p of [...nodes, ...workers]) expect(p.child.exitCode, p.output().slice(-2000)).toBeNull();
  });
});
