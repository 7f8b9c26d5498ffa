import { networkInterfaces } from 'node:os';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningServer, startHttpServer } from '../../src/api/app.js';
import { type RawAnswer, send, sendV1 } from '../helpers/raw-rpc.js';
import { type TestServer, startServer } from '../helpers/server.js';

const require = createRequire(import.meta.url);
const parsePrometheus = require('parse-prometheus-text-format') as (text: string) => PromFamily[];

interface PromSample {
  value?: string;
  labels?: Record<string, string>;
  count?: string;
  sum?: string;
  buckets?: Record<string, string>;
}
interface PromFamily {
  name: string;
  type: string;
  metrics: PromSample[];
}

/**
 * Issue 17: /metrics is Prometheus text (checked with a parser), its quota gauges equal the
 * API's numbers, request counters and HSM timings move with calls, and scrape access is open
 * on loopback, a bearer token otherwise.
 */
let server: TestServer;
const externalAddress = Object.values(networkInterfaces())
  .flat()
  .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server?.stop();
});

async function scrape(target: TestServer | string = server, headers: Record<string, string> = {}): Promise<RawAnswer> {
  const endpoint = typeof target === 'string' ? target : target.endpoint;
  return send(endpoint, { method: 'GET', path: '/metrics', headers });
}

async function families(): Promise<Map<string, PromFamily>> {
  const answer = await scrape();
  expect(answer.status, answer.text).toBe(200);
  return new Map(parsePrometheus(answer.text).map((f) => [f.name, f]));
}

function sample(all: Map<string, PromFamily>, name: string, labels: Record<string, string>): PromSample | undefined {
  return all.get(name)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
}

const valueOf = (all: Map<string, PromFamily>, name: string, labels: Record<string, string>) => {
  const found = sample(all, name, labels);
  return found?.value === undefined ? undefined : Number(found.value);
};

/**
 * A labelled histogram's observation count. The parser folds the samples of a histogram with
 * labels into one (it only handles unlabelled ones), so the count is read from the `_count`
 * line of the same scraped text.
 */
async function histogramCount(name: string, labels: Record<string, string>): Promise<number> {
  const text = (await scrape()).text;
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = text.split('\n').find((l) => l.startsWith(`${name}_count{`) && wanted.every((w) => l.includes(w)));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('/metrics', () => {
  it('parses as Prometheus text, and its quota gauges equal GetKmsInstanceQuotaInfos', async () => {
    for (let i = 0; i < 3; i += 1) await sendV1(server.endpoint, 'CreateKey', { DKMSInstanceId: server.hsmInstanceId }, server.admin);
    const all = await families();
    expect(all.get('kms_instance_key_quota_used')?.type).toBe('GAUGE');
    for (const instanceId of [server.hsmInstanceId, server.softwareInstanceId]) {
      const infos = await sendV1(server.endpoint, 'GetKmsInstanceQuotaInfos', { KmsInstanceId: instanceId }, server.admin);
      const byType = new Map((infos.body.KmsInstanceQuotaInfos as Array<{ ResourceType: string; ResourceQuota: number; UsedQuantity: number }>).map((q) => [q.ResourceType, q]));
      expect(valueOf(all, 'kms_instance_key_quota_used', { kms_instance: instanceId })).toBe(byType.get('key')!.UsedQuantity);
      expect(valueOf(all, 'kms_instance_key_quota_total', { kms_instance: instanceId })).toBe(byType.get('key')!.ResourceQuota);
      expect(valueOf(all, 'kms_instance_qps_spec', { kms_instance: instanceId })).toBe(byType.get('qps')!.ResourceQuota);
    }
    expect(valueOf(all, 'kms_instance_key_quota_used', { kms_instance: server.hsmInstanceId })).toBeGreaterThanOrEqual(3);
  });

  it('request counters, latency histograms and HSM call timings move after calls', async () => {
    const created = await sendV1(server.endpoint, 'CreateKey', { DKMSInstanceId: server.hsmInstanceId }, server.admin);
    const keyId = (created.body.KeyMetadata as { KeyId: string }).KeyId;
    const before = await families();
    const encryptsBefore = valueOf(before, 'kms_requests_total', { action: 'Encrypt', code: 'OK' }) ?? 0;
    const notFoundBefore = valueOf(before, 'kms_requests_total', { action: 'Encrypt', code: 'Forbidden.KeyNotFound' }) ?? 0;
    const hsmBefore = await histogramCount('kms_hsm_call_duration_seconds', { operation: 'encryptWithVersionKey' });
    const latencyBefore = await histogramCount('kms_request_duration_seconds', { action: 'Encrypt' });
    for (let i = 0; i < 3; i += 1) expect((await sendV1(server.endpoint, 'Encrypt', { KeyId: keyId, Plaintext: 'm' }, server.admin)).status).toBe(200);
    expect((await sendV1(server.endpoint, 'Encrypt', { KeyId: 'key-none', Plaintext: 'm' }, server.admin)).status).toBe(404);
    // An action this endpoint does not serve is counted without its name as a label.
    expect((await sendV1(server.endpoint, 'NoSuchAction', {}, server.admin)).status).toBe(404);

    const after = await families();
    expect(valueOf(after, 'kms_requests_total', { action: 'Encrypt', code: 'OK' })).toBe(encryptsBefore + 3);
    expect(valueOf(after, 'kms_requests_total', { action: 'Encrypt', code: 'Forbidden.KeyNotFound' })).toBe(notFoundBefore + 1);
    expect(sample(after, 'kms_requests_total', { action: 'NoSuchAction' })).toBeUndefined();
    expect(valueOf(after, 'kms_requests_total', { action: 'other', code: 'InvalidAction.NotFound' })).toBeGreaterThanOrEqual(1);
    expect(after.get('kms_request_duration_seconds')?.type).toBe('HISTOGRAM');
    expect(after.get('kms_hsm_call_duration_seconds')?.type).toBe('HISTOGRAM');
    expect(await histogramCount('kms_request_duration_seconds', { action: 'Encrypt' })).toBe(latencyBefore + 4);
    // HSM tier: each Encrypt made one timed port call.
    expect(await histogramCount('kms_hsm_call_duration_seconds', { operation: 'encryptWithVersionKey' })).toBe(hsmBefore + 3);
  });

  it('reports the HSM probe, the session pool, the job queues and the versions past 2^31 encryptions', async () => {
    const all = await families();
    expect(valueOf(all, 'kms_hsm_up', {})).toBe(1);
    expect(valueOf(all, 'kms_hsm_sessions', { state: 'size' })).toBe(server.config.hsm.sessions);
    expect(valueOf(all, 'kms_hsm_sessions', { state: 'in_use' })).toBeGreaterThanOrEqual(0);
    for (const queue of Object.values(server.kms.jobs.queues)) {
      expect(valueOf(all, 'kms_jobs', { queue: queue.name, state: 'failed' })).toBeGreaterThanOrEqual(0);
      expect(valueOf(all, 'kms_job_lag_seconds', { queue: queue.name })).toBeGreaterThanOrEqual(0);
    }
    expect(valueOf(all, 'kms_key_versions_past_encryption_warning', {})).toBe(0);
    // A version past the mark, set in SQL (nobody makes 2^31 encryptions in a test).
    const { rows } = await server.kms.deps.db.query<{ id: string }>('SELECT id FROM key_versions WHERE instance_id = $1 LIMIT 1', [server.hsmInstanceId]);
    await server.kms.deps.db.query('UPDATE key_versions SET encryption_count = 2147483648 WHERE id = $1', [rows[0]!.id]);
    expect(valueOf(await families(), 'kms_key_versions_past_encryption_warning', {})).toBe(1);
    await server.kms.deps.db.query('UPDATE key_versions SET encryption_count = 0 WHERE id = $1', [rows[0]!.id]);
  });

  // Needs a non-loopback interface; without one, the require-token cases below cover the refusals.
  it.skipIf(!externalAddress)('from another host, without a configured token: 403', async () => {
    const address = externalAddress!;
    // The same service listening on every interface; the scrape comes from a non-loopback address.
    const wide: RunningServer = await startHttpServer(server.kms, '0.0.0.0', 0);
    try {
      const answer = await scrape(`${address}:${wide.port}`);
      expect(answer.status).toBe(403);
      expect(answer.text).not.toContain('kms_');
    } finally {
      await wide.close();
    }
  });
});

describe('/metrics with a required token (KMS_METRICS_REQUIRE_TOKEN)', () => {
  it('is 401 without or with a wrong bearer token, 200 with it; 403 when no token is configured', async () => {
    const token = 'metrics-token-0123456789abcdef';
    const guarded = await startServer({ env: { KMS_METRICS_TOKEN: token, KMS_METRICS_REQUIRE_TOKEN: 'true' } });
    const tokenless = await startServer({ env: { KMS_METRICS_REQUIRE_TOKEN: 'true' } });
    try {
      const none = await scrape(guarded);
      expect(none.status).toBe(401);
      expect(none.text).not.toContain('kms_');
      expect((await scrape(guarded, { authorization: 'Bearer wrong-token-0123456789' })).status).toBe(401);
      expect((await scrape(guarded, { authorization: `Basic ${token}` })).status).toBe(401);
      const ok = await scrape(guarded, { authorization: `Bearer ${token}` });
      expect(ok.status).toBe(200);
      expect(parsePrometheus(ok.text).some((f) => f.name === 'kms_instance_key_quota_total')).toBe(true);
      expect((await scrape(tokenless, { authorization: `Bearer ${token}` })).status).toBe(403);
    } finally {
      await tokenless.stop();
      await guarded.stop();
    }
  });
});
