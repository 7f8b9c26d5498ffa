import type { KmsConfig } from '../config.js';

/**
 * Which answered requests get a log line (KMS_LOG_REQUESTS). Refusals and failures are always
 * written; success lines are written for every request (`all`), for one in `sampleEvery`
 * (`sample`, the default) or never (`errors`). Metrics count every request whatever the mode.
 *
 * Returns the weight of the line to write for this success — how many successes it stands for
 * (`sampled` in the line when more than one) — or 0 to write none. Deterministic: the first
 * success and then every `sampleEvery`-th are written.
 */
export function successLineSampler(requestLog: KmsConfig['requestLog']): () => number {
  switch (requestLog.mode) {
    case 'all':
      return () => 1;
    case 'errors':
      return () => 0;
    case 'sample': {
      const every = requestLog.sampleEvery;
      let seen = 0;
      return () => (seen++ % every === 0 ? every : 0);
    }
  }
}
