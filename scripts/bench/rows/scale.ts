import type { BenchContext } from '../context.js';
import { cloneKeys, countTokenObjects } from '../seed.js';
import { startKmsServer } from '../server.js';

const SCALE_VERSIONS = 100_000;
/** Of the scale rows' versions, this many are made through the API (the token-object check), the rest copied in SQL. */
const SCALE_API_VERSIONS = 1_000;

export async function scaleRows(ctx: BenchContext): Promise<void> {
  const startTarget = '≤ 3 s';
  const hedKeys = await ctx.keys('hed');
  if (!hedKeys) {
    const why = `n/a (not available: ${ctx.unavailable.get('hed') ?? 'unknown'})`;
    for (const [id, name, target] of [
      ['scale-start', '`kms serve` start, 100,000 HsmEncryptedDatabase versions', startTarget],
      ['scale-rss', 'server RSS, 100,000 versions', '≤ 300 MiB'],
      ['scale-encrypt', 'Encrypt 64 B over 100,000 versions', '≥ 90 % of the 100-key rate'],
      ['scale-token-objects', 'token objects before/after the versions', 'no growth per version'],
    ] as const) {
      ctx.add({ id, name, kind: 'measure', target, note: why });
    }
    return;
  }
  const { hed } = await ctx.instances();
  const before = await countTokenObjects(ctx.env.dataDir);
  // SCALE_API_VERSIONS versions through the API (CreateKey), the rest copied in SQL from them.
  await ctx.rpcRow({
    id: 'scale-create-key-hed',
    name: `CreateKey, HsmEncryptedDatabase (${SCALE_API_VERSIONS.toLocaleString('en-US')} keys for the scale rows)`,
    action: 'CreateKey',
    amount: SCALE_API_VERSIONS,
    params: () => ctx.createKeyParams('hed', { hsm: '', sw: '', hed }),
    target: { kind: 'none' },
  });
  const afterApi = await countTokenObjects(ctx.env.dataDir);
  const { rows: hedRows } = await ctx.env.db.query<{ id: string }>('SELECT id FROM keys WHERE instance_id = $1', [hed]);
  const templates = hedRows.map((r) => r.id);
  const started = performance.now();
  await cloneKeys(ctx.env.db, templates, SCALE_VERSIONS - templates.length);
  ctx.log(`bench: copied ${SCALE_VERSIONS - templates.length} HsmEncryptedDatabase keys in SQL in ${Math.round(performance.now() - started)} ms`);
  const { rows: allRows } = await ctx.env.db.query<{ id: string }>('SELECT id FROM keys WHERE instance_id = $1', [hed]);
  const allKeys = allRows.map((r) => r.id);

  await ctx.server!.child.stop();
  ctx.server = await startKmsServer(ctx.cleanup, ctx.env, 'kms-serve-scale');
  const startMs = ctx.server.startMs;
  ctx.add({
    id: 'scale-start',
    name: `\`kms serve\` start, ${allKeys.length.toLocaleString('en-US')} HsmEncryptedDatabase versions`,
    kind: 'measure',
    value: `${(startMs / 1000).toFixed(2)} s`,
    target: startTarget,
    pass: startMs <= 3000,
  });
  const base = ctx.rowRate('encrypt-hed-64', `${ctx.options.keysPerTier}-key row`);
  const plaintext = 'x'.repeat(64);
  await ctx.rpcRow({
    id: 'scale-encrypt',
    name: `Encrypt 64 B, HsmEncryptedDatabase, random key of ${allKeys.length.toLocaleString('en-US')}`,
    action: 'Encrypt',
    params: () => ({ KeyId: allKeys[Math.floor(Math.random() * allKeys.length)]!, Plaintext: plaintext }),
    target: base ? { kind: 'ratio', min: 0.9, of: base.name } : { kind: 'none' },
    ...(base ? { ratioTo: base } : {}),
  });
  await ctx.rssRow('scale-rss', 'server RSS after the 100,000-version Encrypt row', ctx.server, { maxMiB: 300 });
  const after = await countTokenObjects(ctx.env.dataDir);
  ctx.add({
    id: 'scale-token-objects',
    name: `token objects: before ${SCALE_API_VERSIONS.toLocaleString('en-US')} API-made versions / after them / after the Encrypt row`,
    kind: 'measure',
    value: `${before} / ${afterApi} / ${after}`,
    target: 'no growth per version',
    pass: afterApi - before < SCALE_API_VERSIONS / 100 && after - before < SCALE_API_VERSIONS / 100,
    note: `${(SCALE_VERSIONS - templates.length).toLocaleString('en-US')} of the versions copied in SQL from the ${templates.length.toLocaleString('en-US')} API-made keys (their wrapped blobs)`,
  });
}
