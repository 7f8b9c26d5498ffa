import { constants, createPublicKey, publicEncrypt, randomBytes } from 'node:crypto';
import path from 'node:path';
import { spawnChild, waitFor } from '../children.js';
import { type BenchContext, type RawRates, SLOW_ROW_MAX_RATE, parallel } from '../context.js';

/** KMS_WRAPPING_KEY_POOL_SIZE's default: the pairs `kms worker` keeps ready. */
const WRAPPING_POOL_SIZE = 4;

/**
 * `kms worker`, as a deployment runs it next to `kms serve`: it keeps the pool of pre-generated
 * wrapping pairs full (a refill job after each take). Runs for the BYOK rows only, and they
 * start once the pool is full (or after 60 s).
 */
async function startWorker(ctx: BenchContext): Promise<() => Promise<void>> {
  const worker = spawnChild(ctx.cleanup, {
    label: 'kms-worker',
    command: process.execPath,
    args: [path.join(ctx.repoRoot, 'bin/kms.mjs'), 'worker'],
    env: ctx.env.kmsEnv,
    cwd: ctx.env.root,
    logFile: path.join(ctx.env.root, 'kms-worker.log'),
  });
  await waitFor(worker, 'the wrapping-key pool full', 60_000, async () => {
    const { rows } = await ctx.env.db.query<{ n: string }>('SELECT count(*) AS n FROM wrapping_keys WHERE key_id IS NULL');
    return Number(rows[0]?.n ?? 0) >= WRAPPING_POOL_SIZE ? true : undefined;
  }).catch((error: Error) => ctx.log(`bench: ${error.message.split('\n')[0]}; the BYOK rows start anyway`));
  return () => worker.stop();
}

/**
 * GetParametersForImport issues a new RSA-2048 pair per call (generated in the token unless the
 * pool has one), so it runs at 1 connection; its answers (one per EXTERNAL key) are the fresh
 * token + public key each ImportKeyMaterial request needs, wrapped here beforehand.
 */
export async function importRows(ctx: BenchContext): Promise<void> {
  const stopWorker = await startWorker(ctx);
  try {
    await issueAndImport(ctx);
  } finally {
    await stopWorker();
  }
}

async function issueAndImport(ctx: BenchContext): Promise<void> {
  const { hsm } = await ctx.instances();
  const pending = await parallel(Math.max(64, Math.round(ctx.options.seconds * 40)), 8, async () =>
    ((await ctx.call('CreateKey', { DKMSInstanceId: hsm, Origin: 'EXTERNAL' })).KeyMetadata as { KeyId: string }).KeyId,
  );
  const issued: Array<{ KeyId: string; ImportToken: string; PublicKey: string }> = [];
  const params = (i: number) => ({ KeyId: pending[i % pending.length]!, WrappingKeySpec: 'RSA_2048', WrappingAlgorithm: 'RSAES_OAEP_SHA_256' });
  await ctx.rpcRow({
    id: 'get-parameters-for-import',
    name: 'GetParametersForImport RSA_2048, RSAES_OAEP_SHA_256 (1 connection, kms worker refilling the pool)',
    action: 'GetParametersForImport',
    connections: 1,
    params,
    onOk: (body) => issued.push(JSON.parse(body) as (typeof issued)[number]),
    target: { kind: 'p50', maxMs: 20 },
    maxRate: SLOW_ROW_MAX_RATE,
  });
  if (!ctx.wants('import-key-material')) return;
  await ctx.guard('import-key-material', 'ImportKeyMaterial', async () => {
    // Top up to 64 tokens (2 at a time, for at most one more row's time) so the row has enough requests.
    const deadline = performance.now() + ctx.options.seconds * 1000;
    let next = issued.length;
    while (new Set(issued.map((p) => p.KeyId)).size < Math.min(64, pending.length) && performance.now() < deadline) {
      const batch = await Promise.all([0, 1].map(() => ctx.call('GetParametersForImport', params(next++))));
      issued.push(...(batch as unknown as typeof issued));
    }
    // One token per key: keep the last issued for each.
    const byKey = new Map(issued.map((p) => [p.KeyId, p]));
    const requests = [...byKey.values()].map((p) => ({
      KeyId: p.KeyId,
      ImportToken: p.ImportToken,
      EncryptedKeyMaterial: publicEncrypt(
        { key: createPublicKey({ key: Buffer.from(p.PublicKey, 'base64'), format: 'der', type: 'spki' }), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
        randomBytes(32),
      ).toString('base64'),
    }));
    const raw = (await ctx.memo.get('raw')) as RawRates | undefined;
    if (requests.length === 0) throw new Error('ImportKeyMaterial: GetParametersForImport issued no token');
    const row = await ctx.rpcRow({
      id: 'import-key-material',
      name: `ImportKeyMaterial, HSM, RSAES_OAEP_SHA_256 (${requests.length} fresh tokens)`,
      action: 'ImportKeyMaterial',
      amount: requests.length,
      connections: Math.min(ctx.options.connections, requests.length),
      params: (i) => requests[i]!,
      target: { kind: 'ratio', min: 0.25, of: 'raw RSA unwrap' },
      ratioTo: { name: 'raw RSA unwrap', rate: raw?.rsaUnwrap ?? NaN },
    });
    if (requests.length < 32) {
      // So few requests finish together: the rate is their latency, not the server's throughput.
      row.note = [row.note, 'too few tokens for a throughput figure (GetParametersForImport was slow)'].filter(Boolean).join('; ');
    }
  });
}
