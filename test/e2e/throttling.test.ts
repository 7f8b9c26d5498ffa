import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from 'vitest';
import { systemCaller } from '../../src/services/context.js';
import { updateInstance } from '../../src/services/instances.js';
import { instanceRateHistory } from '../../src/services/throttling.js';
import { requestRateHistory } from '../../src/observability/request-rates.js';
import { createInstanceIn } from '../helpers/fixtures.js';
import { type RawAnswer, encodeQuery, send, sendV1, v1Params } from '../helpers/raw-rpc.js';
import { KMS, legacyClient, openApiClient } from '../helpers/sdk.js';
import { startServeProcess } from '../helpers/serve-process.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 17: an instance's QPS spec holds across server processes (one Redis window), over it
 * crypto calls get 429 Rejected.Throttling as the SDKs see it; per-account limits by class
 * are off by default and on with one setting; GetKmsInstance / GetKmsInstanceQuotaInfos show
 * the spec and what is used of it.
 */
let a: TestServer;
let b: TestServer;

beforeAll(async () => {
  // Two nodes of one deployment: one database, one Redis namespace.
  const prefix = `test-${randomUUID()}`;
  a = await startServer({ env: { KMS_QUEUE_PREFIX: prefix } });
  b = await startServer({ databaseUrl: a.databaseUrl, env: { KMS_QUEUE_PREFIX: prefix } });
});

afterAll(async () => {
  await b?.stop();
  await a?.stop();
});

async function keyIn(server: TestServer, instanceId: string): Promise<string> {
  const answer = await sendV1(server.endpoint, 'CreateKey', { DKMSInstanceId: instanceId }, server.admin);
  expect(answer.status, answer.text).toBe(200);
  return (answer.body.KeyMetadata as { KeyId: string }).KeyId;
}

async function instanceWithQps(qps: number): Promise<string> {
  const keyInstance = await createInstanceIn(a, { type: 'SOFTWARE', keyQuota: 20, qps: 1000 });
  await updateInstance(a.kms.deps, keyInstance, { qps }, systemCaller);
  return keyInstance;
}

describe('the QPS spec of an instance', () => {
  it('two kms serve processes admit about the spec per second in total; the rest is 429 Rejected.Throttling', async () => {
    const SPEC = 50;
    const instanceId = await instanceWithQps(SPEC);
    const keyId = await keyIn(a, instanceId);
    // Two nodes of a's deployment as their own OS processes (database, Redis prefix, token).
    const nodes = await Promise.all([startServeProcess(a), startServeProcess(a)]);
    onTestFinished(() => Promise.all(nodes.map((node) => node.stop())).then(() => undefined));
    // ~200 requests per second in total, half to each server, for 6 s. Accepted answers are
    // counted by when they arrived (≈ when the server admitted them: on a busy machine a backlog
    // shifts admissions past the sends): from 1.5 s after the first (the window's first second
    // may admit its spec at once) to 0.5 s before the last (the backlog draining).
    const sent: Array<{ at: number; answer: Promise<{ arrived: number; answer: RawAnswer }> }> = [];
    const started = Date.now();
    let tick = 0;
    let quotaDuringLoad: Record<string, any> | undefined;
    while (Date.now() - started < 6_000) {
      const node = nodes[tick % 2]!;
      const answer = sendV1(node.endpoint, 'Encrypt', { KeyId: keyId, Plaintext: 'load' }, a.admin).then((r) => ({ arrived: Date.now() - started, answer: r }));
      sent.push({ at: Date.now() - started, answer });
      tick += 1;
      if (tick === 800) quotaDuringLoad = await sendV1(b.endpoint, 'GetKmsInstanceQuotaInfos', { KmsInstanceId: instanceId, ResourceType: 'qps' }, a.admin).then((r) => r.body);
      // Paced by the tick count, not by answers: the offered load does not depend on how fast they come.
      const due = started + tick * 5;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
    const answers = await Promise.all(sent.map(async (s) => ({ at: s.at, ...(await s.answer) })));
    const codes = new Set(answers.map((r) => (r.answer.status === 200 ? 'OK' : `${r.answer.status} ${String(r.answer.body.Code)}`)));
    expect([...codes].sort()).toEqual(['429 Rejected.Throttling', 'OK']);
    const throttledBody = answers.find((r) => r.answer.status === 429)!.answer.body;
    expect(throttledBody).toMatchObject({ Code: 'Rejected.Throttling', Message: 'QPS Limit Exceeded', HttpStatus: 429 });

    const offeredPerSecond = answers.filter((r) => r.at >= 1_000 && r.at < 6_000).length / 5;
    expect(offeredPerSecond).toBeGreaterThan(2 * SPEC);
    const arrivals = answers.filter((r) => r.answer.status === 200).map((r) => r.arrived).sort((x, y) => x - y);
    const from = arrivals[0]! + 1_500;
    const to = arrivals[arrivals.length - 1]! - 500;
    expect(to - from).toBeGreaterThanOrEqual(3_500);
    const acceptedPerSecond = arrivals.filter((t) => t >= from && t < to).length / ((to - from) / 1000);
    // ≈ 50 per second in total, ± 20 %.
    expect(acceptedPerSecond).toBeGreaterThanOrEqual(SPEC * 0.8);
    expect(acceptedPerSecond).toBeLessThanOrEqual(SPEC * 1.2);
    // Both nodes admitted some: the window is shared, not per process.
    const acceptedBy = (node: number) => answers.filter((r, i) => r.answer.status === 200 && i % 2 === node).length;
    expect(acceptedBy(0)).toBeGreaterThan(0);
    expect(acceptedBy(1)).toBeGreaterThan(0);

    // GetKmsInstanceQuotaInfos during the load: QPS used over the last second, never above the spec.
    const qps = (quotaDuringLoad?.KmsInstanceQuotaInfos as Array<Record<string, number | string>>)[0]!;
    expect(qps.ResourceType).toBe('qps');
    expect(qps.ResourceQuota).toBe(SPEC);
    expect(qps.UsedQuantity).toBeGreaterThan(0);
    expect(qps.UsedQuantity).toBeLessThanOrEqual(SPEC);

    // What the dashboard charts: the instance's admitted and throttled calls per second (every
    // one of them came from this test), and the deployment's answered requests per second.
    const history = await instanceRateHistory(b.kms.deps, instanceId, 120);
    const sum = (values: number[]) => values.reduce((x, y) => x + y, 0);
    expect(sum(history.map((h) => h.admitted))).toBe(answers.filter((r) => r.answer.status === 200).length);
    expect(sum(history.map((h) => h.throttled))).toBe(answers.filter((r) => r.answer.status === 429).length);
    const deadline = Date.now() + 10_000;
    let requests = 0;
    let throttledRequests = 0;
    while (Date.now() < deadline) {
      const rates = await requestRateHistory(a.kms.redis, a.config.jobs.queuePrefix, 120);
      requests = sum(rates.map((r) => r.requests));
      throttledRequests = sum(rates.map((r) => r.throttled));
      if (requests >= answers.length && throttledRequests >= answers.filter((r) => r.answer.status === 429).length) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(requests).toBeGreaterThanOrEqual(answers.length);
    expect(throttledRequests).toBeGreaterThanOrEqual(answers.filter((r) => r.answer.status === 429).length);

    // The real SDK against a node process sees its throttling error.
    const legacy = legacyClient(nodes[0]!.endpoint, a.admin);
    const sdkResults = await Promise.allSettled(Array.from({ length: 120 }, () => legacy.encrypt(new KMS.EncryptRequest({ keyId, plaintext: 'sdk' }))));
    const sdkErrors = sdkResults.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as { code?: string });
    expect(sdkErrors.length).toBeGreaterThan(0);
    for (const error of sdkErrors) expect(error.code).toBe('Rejected.ThrottlingError');
  }, 180_000);

  it('the real SDKs raise their throttling errors', async () => {
    const instanceId = await instanceWithQps(1);
    const keyId = await keyIn(a, instanceId);
    const legacy = legacyClient(b.endpoint, b.admin);
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, () => legacy.encrypt(new KMS.EncryptRequest({ keyId, plaintext: 'x' }))),
    );
    const errors = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as { code?: string; data?: any });
    expect(errors.length).toBeGreaterThanOrEqual(4);
    for (const error of errors) {
      // 1.2.0 (rpc-client) appends "Error" to the code (alibaba-api.md §4).
      expect(error.code).toBe('Rejected.ThrottlingError');
      expect(error.data).toMatchObject({ Code: 'Rejected.Throttling', HttpStatus: 429 });
    }

    const call = openApiClient(a.endpoint, a.admin);
    const popResults = await Promise.allSettled(Array.from({ length: 6 }, () => call('Encrypt', { KeyId: keyId, Plaintext: 'x' })));
    const popErrors = popResults.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as { code?: string; statusCode?: number });
    expect(popErrors.length).toBeGreaterThanOrEqual(4);
    for (const error of popErrors) expect(error).toMatchObject({ code: 'Rejected.Throttling', statusCode: 429 });
  });

  it('a new spec set on one node holds on the other at once (cache invalidation)', async () => {
    const instanceId = await instanceWithQps(1);
    const keyId = await keyIn(a, instanceId);
    const burst = async () => (await Promise.all(Array.from({ length: 5 }, () => sendV1(b.endpoint, 'Encrypt', { KeyId: keyId, Plaintext: 'x' }, b.admin)))).map((r) => r.status);
    expect(await burst()).toContain(429);
    await updateInstance(a.kms.deps, instanceId, { qps: 1000 }, systemCaller);
    // b drops its cached instance when a's change reaches it over pub/sub: within the 1 s bound.
    const deadline = Date.now() + 1_000;
    let statuses = await burst();
    while (statuses.includes(429) && Date.now() < deadline) statuses = await burst();
    expect(statuses).toEqual(Array(5).fill(200));
  });

  it('a key of another instance, and management calls, are not limited by this spec', async () => {
    const tight = await instanceWithQps(1);
    const tightKey = await keyIn(a, tight);
    const otherKey = await keyIn(a, a.softwareInstanceId);
    await sendV1(a.endpoint, 'Encrypt', { KeyId: tightKey, Plaintext: 'x' }, a.admin);
    const answers = await Promise.all([
      ...Array.from({ length: 5 }, () => sendV1(a.endpoint, 'Encrypt', { KeyId: otherKey, Plaintext: 'x' }, a.admin)),
      ...Array.from({ length: 5 }, () => sendV1(a.endpoint, 'DescribeKey', { KeyId: tightKey }, a.admin)),
    ]);
    expect(answers.map((r) => r.status)).toEqual(Array(10).fill(200));
  });

  it('GetKmsInstance shows the key quota used/total (versions) and the QPS spec', async () => {
    const instanceId = await instanceWithQps(77);
    await keyIn(a, instanceId);
    await keyIn(b, instanceId);
    const answer = await sendV1(b.endpoint, 'GetKmsInstance', { KmsInstanceId: instanceId }, b.admin);
    expect(answer.body.KmsInstance).toMatchObject({ InstanceId: instanceId, KeyNum: 20, KeyQuotaUsed: 2, Spec: 77, QpsUsed: 0 });
    const infos = await sendV1(a.endpoint, 'GetKmsInstanceQuotaInfos', { KmsInstanceId: instanceId }, a.admin);
    expect(infos.body.KmsInstanceQuotaInfos).toEqual(
      expect.arrayContaining([
        { ResourceType: 'key', ResourceQuota: 20, UsedQuantity: 2 },
        { ResourceType: 'qps', ResourceQuota: 77, UsedQuantity: 0 },
      ]),
    );
  });
});

describe('per-account limits by class', () => {
  it('are off by default: a burst of CreateKey all succeeds', async () => {
    const answers = await Promise.all(Array.from({ length: 25 }, () => sendV1(a.endpoint, 'CreateKey', {}, a.admin)));
    expect(answers.map((r) => r.status)).toEqual(Array(25).fill(200));
  });

  it('with KMS_ACCOUNT_RATE_LIMITS=on, CreateKey over 10/s gets 429 Rejected.Throttling; reads have their own class', async () => {
    const limited = await startServer({ env: { KMS_ACCOUNT_RATE_LIMITS: 'on' } });
    try {
      const answers = await Promise.all(Array.from({ length: 30 }, () => sendV1(limited.endpoint, 'CreateKey', {}, limited.admin)));
      const accepted = answers.filter((r) => r.status === 200).length;
      const throttled = answers.filter((r) => r.status === 429);
      expect(accepted + throttled.length).toBe(30);
      expect(accepted).toBeGreaterThanOrEqual(1);
      // At most 10 in a second; a burst straddling a second boundary can reach into the next.
      expect(accepted).toBeLessThanOrEqual(20);
      for (const r of throttled) expect(r.body).toMatchObject({ Code: 'Rejected.Throttling', HttpStatus: 429 });
      // CreateKey's window does not limit reads (50/s).
      const reads = await Promise.all(Array.from({ length: 5 }, () => sendV1(limited.endpoint, 'ListKeys', {}, limited.admin)));
      expect(reads.map((r) => r.status)).toEqual(Array(5).fill(200));
    } finally {
      await limited.stop();
    }
  });

  it('each class can be set on its own', async () => {
    const limited = await startServer({ env: { KMS_ACCOUNT_RATE_LIMITS: 'on', KMS_RATE_LIMIT_READ: '2' } });
    try {
      const answers = await Promise.all(Array.from({ length: 8 }, () => sendV1(limited.endpoint, 'ListKeys', {}, limited.admin)));
      expect(answers.filter((r) => r.status === 429).length).toBeGreaterThanOrEqual(4);
    } finally {
      await limited.stop();
    }
  });
});

describe('the nonce rides with the QPS admission', () => {
  it('a crypto call on an instance key makes one Redis round trip for both (after warm-up)', async () => {
    const keyId = await keyIn(a, a.softwareInstanceId);
    expect((await sendV1(a.endpoint, 'Encrypt', { KeyId: keyId, Plaintext: 'warm' }, a.admin)).status).toBe(200);
    // Every command the service's Redis connection sends, passed on to Redis unchanged.
    const commands: string[] = [];
    const sendCommand = a.kms.redis.sendCommand.bind(a.kms.redis);
    const spy = vi.spyOn(a.kms.redis, 'sendCommand').mockImplementation((command, ...rest) => {
      commands.push(command.name.toLowerCase());
      return sendCommand(command, ...rest);
    });
    try {
      expect((await sendV1(a.endpoint, 'Encrypt', { KeyId: keyId, Plaintext: 'one trip' }, a.admin)).status).toBe(200);
    } finally {
      spy.mockRestore();
    }
    // Per-second request-rate counters are written by a timer, not by the request.
    const requestCommands = commands.filter((c) => !['hincrby', 'expire', 'exec', 'multi'].includes(c));
    expect(requestCommands).toEqual(['evalsha']);
  });

  it('a replay is refused with SignatureNonceUsed however its nonce was claimed', async () => {
    const instanceKey = await keyIn(a, a.softwareInstanceId);
    const defaultKey = ((await sendV1(a.endpoint, 'CreateKey', {}, a.admin)).body.KeyMetadata as { KeyId: string }).KeyId;
    const blob = (await sendV1(a.endpoint, 'Encrypt', { KeyId: instanceKey, Plaintext: 'x' }, a.admin)).body.CiphertextBlob as string;
    const cases: Array<[string, Record<string, string>, number]> = [
      ['Encrypt', { KeyId: instanceKey, Plaintext: 'x' }, 200], // with the QPS admission
      ['Decrypt', { CiphertextBlob: blob }, 200],
      ['Encrypt', { KeyId: defaultKey, Plaintext: 'x' }, 200], // default key: the nonce alone
      ['GenerateDataKey', { KeyId: instanceKey, DryRun: 'true' }, 400], // DryRunOperationError
      ['GetRandomPassword', {}, 200], // a crypto action without a key
      ['DescribeKey', { KeyId: instanceKey }, 200], // claimed before the action runs
      ['Encrypt', { KeyId: 'key-missing', Plaintext: 'x' }, 404], // refused before its admission
      ['NoSuchAction', {}, 404],
    ];
    for (const [action, params, firstStatus] of cases) {
      const path = `/?${encodeQuery(v1Params(action, params, a.admin))}`;
      const first = await send(b.endpoint, { path });
      expect([action, first.status]).toEqual([action, firstStatus]);
      const replay = await send(a.endpoint, { path });
      expect([action, replay.status, replay.body.Code]).toEqual([action, 400, 'SignatureNonceUsed']);
    }
  });

  it('a throttled dry run is Rejected.Throttling, not a ValidationError', async () => {
    const instanceId = await instanceWithQps(1);
    const keyId = await keyIn(a, instanceId);
    const answers = await Promise.all(Array.from({ length: 6 }, () => sendV1(a.endpoint, 'Encrypt', { KeyId: keyId, Plaintext: 'x', DryRun: 'true' }, a.admin)));
    const codes = answers.map((r) => r.body.Code);
    expect(codes).toContain('DryRunOperationError');
    expect(codes).toContain('Rejected.Throttling');
    expect(codes.filter((c) => c !== 'DryRunOperationError' && c !== 'Rejected.Throttling')).toEqual([]);
  });
});
