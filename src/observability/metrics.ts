import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { HsmCallObserver } from './timed-hsm.js';
import type { RequestObserver } from './request-outcome.js';

/**
 * The service's Prometheus metrics, in a registry of its own (never prom-client's global one,
 * so two services in one process — tests — do not collide). Per-process counters and
 * histograms are fed by the request observers and the timed HSM port; gauges that describe
 * shared state (quotas, queues) are collected at scrape time (scrape-gauges.ts).
 * Metric names and example alerts: README, "Operations: quotas, throttling and metrics".
 */
export interface KmsMetrics {
  registry: Registry;
  /** Feeds `kms_hsm_call_duration_seconds` (observability/timed-hsm.ts). */
  observeHsmCall: HsmCallObserver;
  /** Counts and times answered RPC requests; `knownActions` bounds the `action` label. */
  requestObserver(knownActions: Iterable<string>): RequestObserver;
}

/** Latency buckets (seconds) from a cached hot-path answer up to a slow management call. */
const REQUEST_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const HSM_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5];

/** Label of a request whose action is not one this endpoint serves (never the client's text: bounded cardinality). */
export const OTHER_ACTION = 'other';

export function createKmsMetrics(): KmsMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: 'kms_requests_total',
    help: 'Answered RPC requests by action and result code (OK for a success).',
    labelNames: ['action', 'code'] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'kms_request_duration_seconds',
    help: 'RPC request latency by action, from the first byte read to the answer written.',
    labelNames: ['action'] as const,
    buckets: REQUEST_BUCKETS,
    registers: [registry],
  });
  const throttledRequests = new Counter({
    name: 'kms_throttled_requests_total',
    help: 'RPC requests refused with Rejected.Throttling (instance QPS spec or account limit).',
    labelNames: ['action'] as const,
    registers: [registry],
  });
  const hsmCalls = new Histogram({
    name: 'kms_hsm_call_duration_seconds',
    help: 'HSM port call latency by operation (the port method, e.g. encryptWithVersionKey).',
    labelNames: ['operation'] as const,
    buckets: HSM_BUCKETS,
    registers: [registry],
  });
  const hsmFailures = new Counter({
    name: 'kms_hsm_call_failures_total',
    help: 'HSM port calls that failed, by operation (a bad ciphertext counts too).',
    labelNames: ['operation'] as const,
    registers: [registry],
  });
  const hsmTimers = new Map<string, Histogram.Internal<'operation'>>();
  return {
    registry,
    observeHsmCall(operation, seconds, failed) {
      let timer = hsmTimers.get(operation);
      if (!timer) {
        timer = hsmCalls.labels(operation);
        hsmTimers.set(operation, timer);
      }
      timer.observe(seconds);
      if (failed) hsmFailures.labels(operation).inc();
    },
    requestObserver(knownActions) {
      const known = new Set(knownActions);
      // Label children looked up once per (action, code): the observer runs on every request.
      const counters = new Map<string, Counter.Internal>();
      const timers = new Map<string, Histogram.Internal<'action'>>();
      return (outcome) => {
        const action = outcome.action !== undefined && known.has(outcome.action) ? outcome.action : OTHER_ACTION;
        const code = outcome.code ?? 'OK';
        const counterKey = `${action} ${code}`;
        let counter = counters.get(counterKey);
        if (!counter) {
          counter = requests.labels(action, code);
          counters.set(counterKey, counter);
        }
        counter.inc();
        let timer = timers.get(action);
        if (!timer) {
          timer = latency.labels(action);
          timers.set(action, timer);
        }
        timer.observe(outcome.seconds);
        if (code === 'Rejected.Throttling') throttledRequests.labels(action).inc();
      };
    },
  };
}
