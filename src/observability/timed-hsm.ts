import type { Hsm } from '../hsm/hsm.js';

/** Told how long one asynchronous HSM port call took, and whether it failed. */
export type HsmCallObserver = (operation: string, seconds: number, failed: boolean) => void;

/**
 * The HSM port with every asynchronous call timed (a decorator: the adapter knows nothing of
 * metrics). Generic over the port's methods, so a method added to the port is timed without
 * touching this file; synchronous ones (`info`, `supports…`, `sessionStats`) pass through.
 * The operation label is the port's method name (`encryptWithVersionKey`, `signWithVersionKey`…),
 * which names the mechanism family too.
 */
export function timedHsm(hsm: Hsm, observe: HsmCallObserver): Hsm {
  // Keyed by the method itself, not its name: a method replaced on the port (a test's spy)
  // gets its own timed wrapper instead of the old one.
  const wrapped = new WeakMap<object, unknown>();
  return new Proxy(hsm, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      let timed = wrapped.get(value);
      if (!timed) {
        const operation = String(property);
        const method = value as (...args: unknown[]) => unknown;
        timed = (...args: unknown[]) => {
          const started = process.hrtime.bigint();
          const result = method.apply(target, args);
          if (!(result instanceof Promise)) return result;
          return result.then(
            (answer: unknown) => {
              observe(operation, secondsSince(started), false);
              return answer;
            },
            (error: unknown) => {
              observe(operation, secondsSince(started), true);
              throw error;
            },
          );
        };
        wrapped.set(value, timed);
      }
      return timed;
    },
  });
}

function secondsSince(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e9;
}
