import { AsyncLocalStorage } from 'node:async_hooks';
import type { Hsm } from './hsm/hsm.js';

/**
 * Fault points (issue 19): a test setting that makes this process SIGKILL itself at one step of a
 * use case, to prove what a crash there leaves behind (test/e2e/fault-points.test.ts).
 *
 * `KMS_FAULT_POINTS=<scope>:<step>[,…]` — unset (always, outside tests) nothing here does anything:
 * the HSM is not wrapped and every `faultPoint()` call is one Set lookup on an empty set. Refused
 * with NODE_ENV=production, and a name outside FAULT_POINTS is refused (a typo would silently test
 * nothing).
 *
 * Scopes are the RPC actions (`CreateKey`, `ImportKeyMaterial`, `DeleteKeyMaterial`, `CreateKeyVersion`) and the
 * worker's effects (`rotation`, `material-expiry`, `key-deletion`: the queue's job or the
 * sweeper's part of that name). Steps:
 * - `before-hsm`: just before the first HSM call that makes, unwraps, seals or destroys material;
 * - `after-hsm`: just after that call answered (nothing committed yet, where the use case makes
 *   material before its transaction);
 * - `after-commit`: the use case committed; the answer (the RPC response, the job's completion)
 *   is not sent.
 * And for the actions that write metadata only (`DisableKey`, `UpdateAlias`):
 * - `before-publish`: a transaction committed, and its cache invalidation has not gone out to
 *   the other nodes (the cache-change journal is what tells them: cache/change-journal.ts).
 */
export const FAULT_SCOPES = ['CreateKey', 'ImportKeyMaterial', 'DeleteKeyMaterial', 'CreateKeyVersion', 'rotation', 'material-expiry', 'key-deletion'] as const;
export const FAULT_STEPS = ['before-hsm', 'after-hsm', 'after-commit'] as const;
/** A step of every transaction (store/db.ts): committed, the other nodes not yet told. */
export const BEFORE_PUBLISH = 'before-publish';
/** Actions that only write metadata, where `before-publish` is their one point. */
export const METADATA_FAULT_SCOPES = ['DisableKey', 'UpdateAlias'] as const;
export const FAULT_POINTS: readonly string[] = [
  ...FAULT_SCOPES.flatMap((scope) => FAULT_STEPS.map((step) => `${scope}:${step}`)),
  ...METADATA_FAULT_SCOPES.map((scope) => `${scope}:${BEFORE_PUBLISH}`),
];

/** The HSM calls that make, unwrap, seal or destroy material: where `before-hsm`/`after-hsm` fire. */
const MATERIAL_CALLS = new Set<string>([
  'generateVersionKey',
  'generateWrappedVersionKey',
  'destroyVersionKey',
  'unwrapImportedMaterial',
  'sealWithRootKey',
]);

let enabled: ReadonlySet<string> = new Set();
const scope = new AsyncLocalStorage<string>();

/**
 * Reads KMS_FAULT_POINTS. Called once by the composition root.
 * @throws Error for NODE_ENV=production or an unknown point name.
 */
export function enableFaultPoints(env: NodeJS.ProcessEnv = process.env): readonly string[] {
  const names = (env.KMS_FAULT_POINTS ?? '').split(',').map((n) => n.trim()).filter((n) => n !== '');
  if (names.length === 0) return [];
  if (env.NODE_ENV === 'production') throw new Error('KMS_FAULT_POINTS is a test setting (it kills the process on purpose): refused with NODE_ENV=production.');
  const unknown = names.filter((n) => !FAULT_POINTS.includes(n));
  if (unknown.length > 0) throw new Error(`KMS_FAULT_POINTS: unknown point(s) ${unknown.join(', ')}; known: ${FAULT_POINTS.join(', ')}.`);
  enabled = new Set(names);
  return names;
}

export const faultPointsEnabled = (): boolean => enabled.size > 0;

/** Runs `fn` as `name` (an RPC action, a queue, a sweep part): the scope of the points it reaches. */
export function inFaultScope<T>(name: string, fn: () => T): T {
  return enabled.size === 0 ? fn() : scope.run(name, fn);
}

/** SIGKILLs this process when `<current scope>:<step>` is enabled. */
export function faultPoint(step: (typeof FAULT_STEPS)[number] | typeof BEFORE_PUBLISH): void {
  if (enabled.size === 0) return;
  const current = scope.getStore();
  if (current !== undefined && enabled.has(`${current}:${step}`)) {
    process.stderr.write(`fault point ${current}:${step}: SIGKILL\n`);
    process.kill(process.pid, 'SIGKILL');
  }
}

/** The HSM port with `before-hsm` / `after-hsm` around its material calls (only when points are enabled). */
export function faultPointHsm(hsm: Hsm): Hsm {
  if (enabled.size === 0) return hsm;
  return new Proxy(hsm, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function' || !MATERIAL_CALLS.has(String(property))) return value;
      const method = value as (...args: unknown[]) => Promise<unknown>;
      return async (...args: unknown[]) => {
        faultPoint('before-hsm');
        const answer = await method.apply(target, args);
        faultPoint('after-hsm');
        return answer;
      };
    },
  });
}
