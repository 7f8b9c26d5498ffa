import { type BenchContext, SLOW_ROW_MAX_RATE } from '../context.js';
import { cloneKeys, countKeys } from '../seed.js';

const LIST_KEYS_TOTAL = 100_000;

/** DescribeKey over the HSM keys. */
export async function describeKeyRow(ctx: BenchContext): Promise<void> {
  if (ctx.wants('describe-key')) {
    await ctx.guard('describe-key', 'DescribeKey', async () => {
      const keys = (await ctx.keys('hsm'))!;
      await ctx.rpcRow({ id: 'describe-key', name: 'DescribeKey', action: 'DescribeKey', params: (i) => ({ KeyId: keys[i % keys.length]! }), target: { kind: 'none' } });
    });
  }
}

/** CreateKey on the HSM instances (HsmInternal: a token object each; HsmEncryptedDatabase) and CreateKeyVersion. */
export async function creationRows(ctx: BenchContext): Promise<void> {
  if (ctx.wants('create-key-hsm')) {
    await ctx.guard('create-key-hsm', 'CreateKey', async () => {
      const { hsm } = await ctx.instances();
      await ctx.rpcRow({ id: 'create-key-hsm', name: 'CreateKey, HSM instance (HsmInternal)', action: 'CreateKey', params: () => ({ DKMSInstanceId: hsm }), target: { kind: 'rate', min: 300 }, maxRate: SLOW_ROW_MAX_RATE });
    });
  }
  // The same on an HsmEncryptedDatabase instance: no token object per key (generate + wrap).
  if (ctx.wants('create-key-hed')) {
    await ctx.guard('create-key-hed', 'CreateKey', async () => {
      const params = ctx.createKeyParams('hed', await ctx.instances());
      await ctx.rpcRow({ id: 'create-key-hed', name: 'CreateKey, HSM instance (HsmEncryptedDatabase)', action: 'CreateKey', params: () => params, target: { kind: 'rate', min: 300 }, maxRate: SLOW_ROW_MAX_RATE });
    });
  }
  if (ctx.wants('create-key-version')) await ctx.guard('create-key-version', 'CreateKeyVersion', async () => {
    const keys = (await ctx.keys('hsm'))!;
    await ctx.rpcRow({
      id: 'create-key-version',
      name: `CreateKeyVersion, HSM HsmInternal (${keys.length} keys)`,
      action: 'CreateKeyVersion',
      params: (i) => ({ KeyId: keys[i % keys.length]! }),
      target: { kind: 'none' },
      maxRate: SLOW_ROW_MAX_RATE,
    });
  });
}

/** 100,000 keys: the API makes 100 SOFTWARE keys, SQL copies them (see seed.ts) up to 100,000 in the database. */
export async function listKeysRow(ctx: BenchContext): Promise<void> {
  const templates = (await ctx.keys('sw'))!;
  const missing = LIST_KEYS_TOTAL - (await countKeys(ctx.env.db));
  const started = performance.now();
  const copied = await cloneKeys(ctx.env.db, templates, missing);
  ctx.log(`bench: copied ${copied} keys in SQL in ${Math.round(performance.now() - started)} ms`);
  const total = await countKeys(ctx.env.db);
  const pages = Math.ceil(total / 100);
  const connections = Math.min(8, ctx.options.connections);
  await ctx.rpcRow({
    id: 'list-keys-100k',
    name: `ListKeys, ${total.toLocaleString('en-US')} keys, PageSize 100, random page (${connections} connections)`,
    action: 'ListKeys',
    connections,
    params: () => ({ PageSize: '100', PageNumber: String(1 + Math.floor(Math.random() * pages)) }),
    target: { kind: 'p99', maxMs: 50 },
    maxRate: SLOW_ROW_MAX_RATE,
  }).then((row) => {
    row.note = [row.note, `${copied.toLocaleString('en-US')} of the keys copied in SQL from ${templates.length} API-made ones`].filter(Boolean).join('; ');
  });
}
