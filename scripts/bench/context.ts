import { rssBytes } from './children.js';
import type { Cleanup } from './cleanup.js';
import { type BenchEnvironment, kmsCli } from './environment.js';
import { type LoadResult, runLoad } from './load.js';
import type { BenchOptions } from './options.js';
import type { BenchRow } from './report.js';
import { RpcRefusal, type RunningKmsServer, callRpc } from './server.js';
import { type SigningScheme, signRequest } from './signer.js';
import { type Target, describeTarget, meets } from './targets.js';

export type Tier = 'hsm' | 'hed' | 'sw';
export const TIER_NAME: Record<Tier, string> = { hsm: 'HSM HsmInternal', hed: 'HSM HsmEncryptedDatabase', sw: 'SOFTWARE' };
/** How ratios and targets name the bare node:http hello row. */
export const HELLO = 'hello';
/**
 * Requests/s the bare hello row signs ahead for: above what one generator core sends (about
 * 25,000/s on the 2-core development machine; the issue measured 40,363/s elsewhere).
 */
export const HELLO_MAX_RATE = 60_000;
/**
 * Requests/s bound of the rows that make key material or walk 100,000 keys (CreateKey,
 * CreateKeyVersion, GetParametersForImport, ListKeys): ten times the best any of them measured.
 */
export const SLOW_ROW_MAX_RATE = 5_000;

/** Rows of `--quick` (the default run has them all; `--full` adds the 100,000-version rows). */
const QUICK_ROWS = new Set([
  'hello', 'raw', 'cli-help', 'server-start',
  'encrypt-hsm-64', 'encrypt-hsm-64-acs3', 'decrypt-hsm-64', 'encrypt-hsm-4k',
  'encrypt-hed-64', 'decrypt-hed-64',
  'encrypt-sw-64', 'decrypt-sw-64', 'generate-data-key-hsm',
  'describe-key', 'create-key-hsm', 'create-key-hed', 'server-rss',
]);
const FULL_ONLY_ROWS = new Set(['scale-hed']);

export interface RawRates {
  pkcs11TokenObject: number;
  pkcs11SessionObject: number;
  nodeCrypto: number;
  rsaUnwrap: number;
}

/**
 * What every group of rows shares: the options, the environment and running server, the rows
 * measured so far, and the fixtures (instances, keys, ciphertexts) made once, on first use.
 */
export class BenchContext {
  env!: BenchEnvironment;
  server: RunningKmsServer | undefined;
  readonly rows: BenchRow[] = [];
  serverKind = 'tsx (no build)';
  readonly memo = new Map<string, Promise<unknown>>();
  /** Tiers that could not be set up, with why (HsmEncryptedDatabase before it existed). */
  readonly unavailable = new Map<Tier, string>();

  constructor(
    readonly options: BenchOptions,
    readonly repoRoot: string,
    readonly cleanup: Cleanup,
    readonly log: (line: string) => void,
  ) {}

  wants(id: string): boolean {
    if (this.options.rows) return this.options.rows.has(id);
    if (FULL_ONLY_ROWS.has(id)) return this.options.mode === 'full';
    return this.options.mode !== 'quick' || QUICK_ROWS.has(id);
  }

  /**
   * Runs one part of the bench; if it throws (a set-up call refused, a verb that does not start),
   * the table gets a FAIL row saying so and the bench goes on with the next part.
   */
  async guard(id: string, name: string, part: () => Promise<void>): Promise<void> {
    try {
      await part();
    } catch (error) {
      const message = (error instanceof Error ? error.message : String(error)).split('\n').filter(Boolean).slice(0, 2).join(' ');
      this.add({ id, name, kind: 'measure', target: 'runs', pass: false, note: `error: ${message.slice(0, 200)}` });
    }
  }

  once<T>(name: string, make: () => Promise<T>): Promise<T> {
    let existing = this.memo.get(name) as Promise<T> | undefined;
    if (!existing) {
      existing = make();
      this.memo.set(name, existing);
    }
    return existing;
  }

  add(row: BenchRow): BenchRow {
    this.rows.push(row);
    const cpu = row.generatorCores !== undefined ? ` CPU generator ${row.generatorCores} server ${row.serverCores ?? '?'} cores` : '';
    const latency = row.p50Ms !== undefined ? ` p50 ${row.p50Ms} p99 ${row.p99Ms}${cpu}` : '';
    const shown = row.opsPerSecond !== undefined ? `${Math.round(row.opsPerSecond)}/s${latency}` : (row.value ?? '');
    const result = row.target === undefined ? '' : row.pass === undefined ? ' n/a' : row.pass ? ' PASS' : ' FAIL';
    this.log(`  ${row.name}: ${shown}${row.non2xx ? ` non-2xx ${row.non2xx}` : ''}${row.note ? ` (${row.note})` : ''}${result}`);
    return row;
  }

  /**
   * The rate no row over the server should reach: the bare hello's (every action does more per
   * request than the hello), or the hello's own bound before it is measured. Only sizes the
   * requests signed ahead (signing ~17 µs each, before the window); a row that outruns it —
   * the machine got quieter after the hello row — signs the rest in its window and says so.
   */
  maxRowRate(): number {
    const hello = this.helloRate();
    return Number.isFinite(hello) && hello > 0 ? Math.ceil(hello) : HELLO_MAX_RATE;
  }

  helloRate(): number {
    const hello = this.rows.find((r) => r.id === 'hello');
    return hello?.opsPerSecond ?? NaN;
  }

  async rssRow(id: string, name: string, server: RunningKmsServer, target?: { maxMiB: number }): Promise<void> {
    const rss = await rssBytes(server.child.pid);
    const mib = rss === undefined ? undefined : rss / 2 ** 20;
    this.add({
      id,
      name,
      kind: 'measure',
      value: mib === undefined ? 'n/a' : `${Math.round(mib)} MiB`,
      ...(target ? { target: `≤ ${target.maxMiB} MiB`, pass: mib === undefined ? false : mib <= target.maxMiB } : {}),
    });
  }

  call(action: string, params: Record<string, string>): Promise<Record<string, unknown>> {
    return callRpc(this.server!.endpoint, this.server!.admin, action, params);
  }

  /** Instances through the operator CLI, as a user makes them: one per tier. */
  instances(): Promise<Record<Tier, string>> {
    return this.once('instances', async () => {
      const create = async (type: 'HSM' | 'SOFTWARE', extra: string[] = []) => {
        const { json } = await kmsCli(this.env, ['instance', 'create', '--type', type, '--key-quota', '10000000', '--qps', '1000000', ...extra]);
        return (json as { InstanceId: string }).InstanceId;
      };
      // HsmEncryptedDatabase is chosen per instance where the CLI offers it (a --…storage… flag), else per key.
      const hedInstance = async () => {
        const help = String((await kmsCli(this.env, ['instance', 'create', '--help'])).json);
        const storageFlag = /(--[a-z-]*storage[a-z-]*)/.exec(help)?.[1];
        return create('HSM', storageFlag ? [storageFlag, 'HsmEncryptedDatabase'] : []);
      };
      const [hsm, sw, hed] = await Promise.all([
        create('HSM'),
        create('SOFTWARE'),
        hedInstance().catch((error: Error) => {
          this.unavailable.set('hed', `instance: ${error.message.split('\n').pop()}`);
          return '';
        }),
      ]);
      return { hsm, sw, hed };
    });
  }

  createKeyParams(tier: Tier, instances: Record<Tier, string>): Record<string, string> {
    if (tier === 'sw') return { DKMSInstanceId: instances.sw };
    if (tier === 'hsm') return { DKMSInstanceId: instances.hsm };
    return { DKMSInstanceId: instances.hed, KeyStorageMechanism: 'HsmEncryptedDatabase' };
  }

  /** `keysPerTier` keys of a tier, made through the API; undefined when the tier is not available. */
  keys(tier: Tier): Promise<string[] | undefined> {
    return this.once(`keys-${tier}`, async () => {
      const instances = await this.instances();
      if (this.unavailable.has(tier)) return undefined;
      const params = this.createKeyParams(tier, instances);
      try {
        const first = await this.call('CreateKey', params);
        const rest = await parallel(this.options.keysPerTier - 1, 8, () => this.call('CreateKey', params));
        return [first, ...rest].map((r) => (r.KeyMetadata as { KeyId: string }).KeyId);
      } catch (error) {
        if (error instanceof RpcRefusal && tier === 'hed') {
          this.unavailable.set(tier, `${error.code}`);
          return undefined;
        }
        throw error;
      }
    });
  }

  /** Ciphertexts of `size`-byte plaintexts under the tier's keys, for the Decrypt rows. */
  blobs(tier: Tier, size: number): Promise<string[] | undefined> {
    return this.once(`blobs-${tier}-${size}`, async () => {
      const keys = await this.keys(tier);
      if (!keys) return undefined;
      const plaintext = 'x'.repeat(size);
      return parallel(keys.length * 2, 8, async (i) => (await this.call('Encrypt', { KeyId: keys[i % keys.length]!, Plaintext: plaintext })).CiphertextBlob as string);
    });
  }

  loadRow(id: string, name: string, load: LoadResult, target: Target, kind: BenchRow['kind'] = 'load', ratioTo?: { name: string; rate: number }): BenchRow {
    const row: BenchRow = {
      id,
      name,
      kind,
      opsPerSecond: load.opsPerSecond,
      p50Ms: load.p50Ms,
      p99Ms: load.p99Ms,
      requests: load.requests,
      non2xx: load.non2xx,
      errors: load.errors,
      connections: this.options.connections,
      generatorCores: round2(load.generatorCores),
      ...(load.serverCores !== undefined ? { serverCores: round2(load.serverCores) } : {}),
      presigned: load.presigned,
      signedInWindow: load.signedInWindow,
    };
    const notes = [
      ...(load.refusalCodes.length > 0 ? [`refused: ${load.refusalCodes.join(', ')}`] : []),
      // The generator's cost came back into the window: say so rather than hide it.
      ...(load.signedInWindow > 0 ? [`${load.signedInWindow.toLocaleString('en-US')} requests signed in the window (the ${load.presigned.toLocaleString('en-US')} signed ahead ran out)`] : []),
    ];
    if (notes.length > 0) row.note = notes.join('; ');
    if (kind === 'load') {
      const base = ratioTo ?? { name: HELLO, rate: this.helloRate() };
      row.ratio = load.opsPerSecond / base.rate;
      if (base.name !== HELLO) row.ratioTo = base.name;
    }
    row.target = describeTarget(target);
    row.pass = meets(target, row);
    return this.add(row);
  }

  notAvailable(id: string, name: string, target: Target, why: string): void {
    this.add({ id, name, kind: 'load', target: describeTarget(target), note: `n/a (not available: ${why})` });
  }

  /** A signed-request row over the running server. */
  async rpcRow(o: {
    id: string;
    name: string;
    action: string;
    params: (i: number) => Record<string, string>;
    target: Target;
    scheme?: SigningScheme;
    connections?: number;
    amount?: number;
    ratioTo?: { name: string; rate: number };
    onOk?: (body: string) => void;
    /** A rate the row stays far below (the hello bound is the default): sizes its presigned requests. */
    maxRate?: number;
  }): Promise<BenchRow> {
    const server = this.server!;
    const scheme = o.scheme ?? 'HMAC-SHA1';
    const load = await runLoad({
      endpoint: server.endpoint,
      connections: o.connections ?? this.options.connections,
      ...(o.amount !== undefined ? { amount: o.amount } : { seconds: this.options.seconds, warmup: 2 * (o.connections ?? this.options.connections) }),
      next: (i) => signRequest(scheme, o.action, o.params(i), server.admin, server.endpoint),
      maxRate: o.maxRate ?? this.maxRowRate(),
      serverPid: server.child.pid,
      ...(o.onOk ? { onOk: o.onOk } : {}),
    });
    const row = this.loadRow(o.id, o.name, load, o.target, 'load', o.ratioTo);
    if (o.connections !== undefined) row.connections = o.connections;
    return row;
  }

  /** A measured row's rate, under a short `label` for the ratio and target columns. */
  rowRate(id: string, label: string): { name: string; rate: number } | undefined {
    const row = this.rows.find((r) => r.id === id);
    return row?.opsPerSecond !== undefined && (row.non2xx ?? 0) === 0 ? { name: label, rate: row.opsPerSecond } : undefined;
  }
}

/** Runs `fn(i)` for i < n with at most `concurrency` at once. */
export async function parallel<T>(n: number, concurrency: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = new Array<T>(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, concurrency) }, async () => {
      while (next < n) {
        const i = next++;
        results[i] = await fn(i);
      }
    }),
  );
  return results;
}

const round2 = (n: number) => Math.round(n * 100) / 100;
