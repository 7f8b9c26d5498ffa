import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { successLineSampler } from '../../src/observability/request-log.js';

const weights = (sample: () => number, count: number) => Array.from({ length: count }, () => sample());

describe('KMS_LOG_REQUESTS: which success lines are written', () => {
  it('sample (the default): the first success and every 100th after it, each standing for 100', () => {
    const config = loadConfig({});
    expect(config.requestLog).toEqual({ mode: 'sample', sampleEvery: 100 });
    const written = weights(successLineSampler(config.requestLog), 250)
      .map((weight, index) => [index, weight])
      .filter(([, weight]) => weight !== 0);
    expect(written).toEqual([[0, 100], [100, 100], [200, 100]]);
  });

  it('all: every success with weight 1; errors: none; KMS_LOG_SAMPLE_EVERY sets the rate', () => {
    expect(weights(successLineSampler(loadConfig({ KMS_LOG_REQUESTS: 'all' }).requestLog), 5)).toEqual([1, 1, 1, 1, 1]);
    expect(weights(successLineSampler(loadConfig({ KMS_LOG_REQUESTS: 'errors' }).requestLog), 5)).toEqual([0, 0, 0, 0, 0]);
    expect(weights(successLineSampler(loadConfig({ KMS_LOG_SAMPLE_EVERY: '2' }).requestLog), 5)).toEqual([2, 0, 2, 0, 2]);
    expect(() => loadConfig({ KMS_LOG_REQUESTS: 'some' })).toThrow(/KMS_LOG_REQUESTS/);
  });
});
