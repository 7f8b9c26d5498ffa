import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openApiClient, sdkError } from '../helpers/sdk.js';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * KMS_LOG_REQUESTS (issue 16): success lines can be sampled or left out, but every refusal
 * and failure is logged whatever the mode.
 */
let errorsOnly: TestServer;
let sampled: TestServer;

beforeAll(async () => {
  [errorsOnly, sampled] = await Promise.all([
    startServer({ env: { KMS_LOG_REQUESTS: 'errors' } }),
    startServer({ env: { KMS_LOG_REQUESTS: 'sample', KMS_LOG_SAMPLE_EVERY: '3' } }),
  ]);
});

afterAll(async () => {
  await errorsOnly?.stop();
  await sampled?.stop();
});

const lines = (server: TestServer, from: number) => server.logs.slice(from).map((l) => JSON.parse(l) as Record<string, unknown>);

describe('request log lines', () => {
  it('errors: no success line, every refusal line', async () => {
    const from = errorsOnly.logs.length;
    const call = openApiClient(errorsOnly.endpoint, errorsOnly.admin);
    for (let i = 0; i < 4; i++) await call('ListKeys', {});
    const refused = await sdkError(() => call('DescribeKey', { KeyId: 'no-such-key' }));
    expect(refused.code).toBe('Forbidden.KeyNotFound');
    const written = lines(errorsOnly, from);
    expect(written.filter((l) => l.msg === 'rpc')).toEqual([]);
    expect(written.filter((l) => l.msg === 'rpc refused').map((l) => l.code)).toEqual(['Forbidden.KeyNotFound']);
  });

  it('sample: one success line in KMS_LOG_SAMPLE_EVERY, marked with how many it stands for; refusals all', async () => {
    const call = openApiClient(sampled.endpoint, sampled.admin);
    const from = sampled.logs.length;
    for (let i = 0; i < 9; i++) await call('ListKeys', {});
    for (let i = 0; i < 2; i++) await sdkError(() => call('DescribeKey', { KeyId: `missing-${i}` }));
    const written = lines(sampled, from);
    const successes = written.filter((l) => l.msg === 'rpc');
    expect(successes).toHaveLength(3);
    expect(successes.every((l) => l.sampled === 3 && l.action === 'ListKeys')).toBe(true);
    expect(written.filter((l) => l.msg === 'rpc refused')).toHaveLength(2);
  });
});
