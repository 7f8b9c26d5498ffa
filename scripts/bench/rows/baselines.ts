import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { spawnChild, waitFor } from '../children.js';
import { type BenchContext, HELLO_MAX_RATE, type RawRates } from '../context.js';
import { deleteRedisKeys, kmsCli } from '../environment.js';
import { runLoad } from '../load.js';
import type { BenchRow } from '../report.js';
import { startKmsServer } from '../server.js';
import { type ClientCredentials, signRequest } from '../signer.js';

/** The build, the limits measured without the service (CLI start, raw crypto, hello servers), and the server's start. */

export function build(ctx: BenchContext): void {
  const manifest = JSON.parse(readFileSync(path.join(ctx.repoRoot, 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
  if (ctx.options.skipBuild || !manifest.scripts?.build) {
    ctx.serverKind = existsSync(path.join(ctx.repoRoot, 'dist')) ? 'dist/ as built before (--no-build)' : 'tsx (no build)';
    return;
  }
  // scripts/build.mjs skips a build whose dist/ is newer than every file under src/.
  const ifStale = manifest.scripts.build.includes('build.mjs') ? ['--', '--if-stale'] : [];
  ctx.log(`bench: npm run build ${ifStale.join(' ')}`.trim());
  const built = spawnSync('npm', ['run', '--silent', 'build', ...ifStale], { cwd: ctx.repoRoot, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  if (built.status === 0) ctx.serverKind = 'compiled (npm run build → dist/)';
  else {
    ctx.serverKind = 'tsx (npm run build failed)';
    ctx.log(`bench: npm run build failed, the server runs through tsx:\n${(built.stderr ?? '').split('\n').slice(-8).join('\n')}`);
  }
}

export async function cliHelpRow(ctx: BenchContext): Promise<void> {
  const times: number[] = [];
  const runs = ctx.options.mode === 'quick' ? 1 : 3;
  for (let i = 0; i < runs; i++) times.push((await kmsCli(ctx.env, ['--help'])).ms);
  const median = times.sort((a, b) => a - b)[Math.floor(runs / 2)]!;
  ctx.add({
    id: 'cli-help',
    name: `\`kms --help\` (process start to exit${runs > 1 ? `, median of ${runs}` : ''})`,
    kind: 'measure',
    value: `${Math.round(median)} ms`,
    target: '≤ 300 ms',
    pass: median <= 300,
  });
}

export async function rawRows(ctx: BenchContext): Promise<void> {
  const resultFile = path.join(ctx.env.root, 'raw-rates.json');
  const child = spawnChild(ctx.cleanup, {
    label: 'raw-rates',
    command: process.execPath,
    args: ['--import', 'tsx', path.join(ctx.repoRoot, 'scripts/bench/raw-rates.ts')],
    cwd: ctx.repoRoot,
    env: {
      ...process.env,
      SOFTHSM2_CONF: path.join(ctx.env.dataDir, 'hsm', 'softhsm2.conf'),
      BENCH_TOKEN_LABEL: 'hsm-kms',
      BENCH_PIN_FILE: path.join(ctx.env.dataDir, 'hsm', 'user.pin'),
      BENCH_SECONDS_PER_RATE: String(Math.min(2, ctx.options.seconds / 4)),
      BENCH_RESULT_FILE: resultFile,
    },
    logFile: path.join(ctx.env.root, 'raw-rates.log'),
  });
  const code = await child.exited;
  if (code !== '0') throw new Error(`raw-rates exited ${code}:\n${await child.tail()}`);
  const raw = JSON.parse(await readFile(resultFile, 'utf8')) as RawRates;
  ctx.memo.set('raw', Promise.resolve(raw));
  if (!ctx.wants('raw')) return;
  const rawRow = (id: string, name: string, opsPerSecond: number): BenchRow => ({ id, name, kind: 'baseline', opsPerSecond, note: '1 thread, synchronous' });
  ctx.add(rawRow('raw-pkcs11-token', 'raw pkcs11js AES-256-GCM 64 B, token object', raw.pkcs11TokenObject));
  ctx.add(rawRow('raw-pkcs11-session', 'raw pkcs11js AES-256-GCM 64 B, session object', raw.pkcs11SessionObject));
  ctx.add(rawRow('raw-node-crypto', 'node:crypto AES-256-GCM 64 B', raw.nodeCrypto));
  ctx.add(rawRow('raw-rsa-unwrap', 'raw pkcs11js RSA-2048 OAEP-SHA1 C_UnwrapKey', raw.rsaUnwrap));
}

/** The hello servers get the very requests the Encrypt row sends (signed ahead, fresh nonce each): same client cost. */
export async function helloRows(ctx: BenchContext): Promise<void> {
  const dummy: ClientCredentials = { accessKeyId: `LTAIbench${randomBytes(6).toString('hex')}`, accessKeySecret: randomBytes(15).toString('base64') };
  const modes: Array<['hello' | 'express-hello', 'node' | 'express', string]> = [['hello', 'node', 'node:http hello (bare)']];
  if (ctx.wants('express-hello') && resolvable(ctx.repoRoot, 'express')) modes.push(['express-hello', 'express', 'express hello (express.raw + res.json)']);
  for (const [id, mode, name] of modes) {
    const child = spawnChild(ctx.cleanup, {
      label: `${mode}-hello`,
      command: process.execPath,
      args: ['--import', 'tsx', path.join(ctx.repoRoot, 'scripts/bench/hello-server.ts'), mode],
      cwd: ctx.repoRoot,
      env: { ...process.env, NODE_ENV: 'production' },
      logFile: path.join(ctx.env.root, `${mode}-hello.log`),
    });
    const port = await waitFor(child, `${mode} hello listening`, 30_000, async () => /listening (\d+)/.exec(await readFile(child.logFile, 'utf8'))?.[1]);
    const endpoint = `127.0.0.1:${port}`;
    const plaintext = 'x'.repeat(64);
    const load = await runLoad({
      endpoint,
      connections: ctx.options.connections,
      seconds: ctx.options.seconds,
      warmup: 2 * ctx.options.connections,
      next: () => signRequest('HMAC-SHA1', 'Encrypt', { KeyId: 'key-hzzhello', Plaintext: plaintext }, dummy, endpoint),
      maxRate: HELLO_MAX_RATE,
      serverPid: child.pid,
    });
    await child.stop();
    const row = ctx.loadRow(id, name, load, { kind: 'none' }, 'baseline');
    if (id === 'express-hello') row.ratio = load.opsPerSecond / ctx.helloRate();
  }
}

export async function startServer(ctx: BenchContext): Promise<void> {
  ctx.server = await startKmsServer(ctx.cleanup, ctx.env, 'kms-serve');
  const akid = ctx.server.admin.accessKeyId;
  // The replay cache's entries of the bench's access key (whatever their prefix).
  ctx.cleanup.add('delete the bench nonces from redis', () => deleteRedisKeys(ctx.env.redis, `*${akid}*`).then(() => undefined));
  ctx.log(`bench: kms serve (${ctx.serverKind}) answering on ${ctx.server.endpoint} after ${Math.round(ctx.server.startMs)} ms`);
  if (ctx.wants('server-start')) {
    ctx.add({ id: 'server-start', name: '`kms serve` start (spawn → /health 200), empty database', kind: 'measure', value: `${Math.round(ctx.server.startMs)} ms` });
  }
}

function resolvable(repoRoot: string, name: string): boolean {
  try {
    createRequire(path.join(repoRoot, 'package.json')).resolve(name);
    return true;
  } catch {
    return false;
  }
}
