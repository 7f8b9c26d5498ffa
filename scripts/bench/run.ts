import { Cleanup } from './cleanup.js';
import { BenchContext } from './context.js';
import { kmsCli, prepareEnvironment } from './environment.js';
import type { BenchOptions } from './options.js';
import { type BenchReport, machine, summarize } from './report.js';
import { build, cliHelpRow, helloRows, rawRows, startServer } from './rows/baselines.js';
import { importRows } from './rows/byok.js';
import { creationRows, describeKeyRow, listKeysRow } from './rows/catalog.js';
import { acs3Row, cryptoRows } from './rows/crypto.js';
import { scaleRows } from './rows/scale.js';

/** `npm run bench`: everything between the options and the table, in the order the rows print. */
export async function runBench(options: BenchOptions, repoRoot: string, log: (line: string) => void): Promise<BenchReport> {
  const cleanup = new Cleanup();
  cleanup.onSignals();
  try {
    return await run(new BenchContext(options, repoRoot, cleanup, log));
  } finally {
    await cleanup.runAll();
  }
}

async function run(ctx: BenchContext): Promise<BenchReport> {
  const host = machine();
  if (host.loadAverageAtStart > host.cpus / 2) {
    ctx.log(`bench: WARNING load average ${host.loadAverageAtStart} on ${host.cpus} cores before the run: other work skews every number`);
  }
  build(ctx);
  ctx.env = await prepareEnvironment(ctx.cleanup, ctx.repoRoot);
  ctx.log(`bench: data dir in ${ctx.env.root}, database ${ctx.env.databaseName}, redis prefix ${ctx.env.queuePrefix}`);
  const init = await kmsCli(ctx.env, ['hsm', 'init']);
  ctx.log(`bench: kms hsm init took ${Math.round(init.ms)} ms`);

  // Baselines first, with the server not yet running.
  if (ctx.wants('cli-help')) await ctx.guard('cli-help', '`kms --help`', () => cliHelpRow(ctx));
  if (ctx.wants('raw') || ctx.wants('import-key-material')) await ctx.guard('raw', 'raw pkcs11js and node:crypto rates', () => rawRows(ctx));
  await helloRows(ctx);

  await startServer(ctx);
  for (const tier of ['hsm', 'hed', 'sw'] as const) {
    await cryptoRows(ctx, tier);
    if (tier === 'hsm' && ctx.wants('encrypt-hsm-64-acs3')) await acs3Row(ctx);
  }
  await describeKeyRow(ctx);
  if (ctx.wants('get-parameters-for-import') || ctx.wants('import-key-material')) {
    await ctx.guard('get-parameters-for-import', 'GetParametersForImport', () => importRows(ctx));
  }
  await creationRows(ctx);
  if (ctx.wants('list-keys-100k')) await ctx.guard('list-keys-100k', 'ListKeys', () => listKeysRow(ctx));
  if (ctx.wants('server-rss')) await ctx.rssRow('server-rss', 'server RSS after the load rows', ctx.server!);
  if (ctx.wants('scale-hed')) await ctx.guard('scale-hed', '100,000 HsmEncryptedDatabase versions', () => scaleRows(ctx));

  return {
    date: new Date().toISOString(),
    machine: host,
    mode: ctx.options.rows ? `rows ${[...ctx.options.rows].join(',')}` : ctx.options.mode,
    secondsPerRow: ctx.options.seconds,
    connections: ctx.options.connections,
    server: ctx.serverKind,
    rows: ctx.rows,
    summary: summarize(ctx.rows),
  };
}
