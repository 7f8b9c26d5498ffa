import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { startTestKms } from '../../src/testing/index.js';

/**
 * Issue 18: `startTestKms()` (`hsm-kms/testing`) in a user's own vitest and jest projects
 * (test/consumers/*-example, the examples docs/testing.md shows). Each example starts and stops
 * two rigs in one test process; afterwards nothing of them may run (no quickstart, no
 * redis-server), their temp dirs are gone, and the runner exited by itself (no open handles).
 */
const repoRoot = path.resolve(import.meta.dirname, '../..');
const consumers = path.join(repoRoot, 'test', 'consumers');

/** `npm i file:../../..` without the registry: the example's node_modules/hsm-kms is this package. */
async function linkPackage(example: string): Promise<void> {
  const link = path.join(example, 'node_modules', 'hsm-kms');
  await mkdir(path.dirname(link), { recursive: true });
  if ((await readlink(link).catch(() => undefined)) === undefined) await symlink(path.relative(path.dirname(link), repoRoot), link, 'dir');
}

function run(command: string[], options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, command, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    // A runner kept alive by an open handle never exits: that is a failure, not a hang.
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command.join(' ')} did not exit within ${options.timeoutMs} ms:\n${output}`));
    }, options.timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Pids of processes whose command line or working directory is under `root`. */
async function processesUnder(root: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ');
    const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => '');
    const state = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (state.slice(state.lastIndexOf(')') + 2).startsWith('Z')) continue;
    if (cmdline.includes(root) || cwd.startsWith(root)) found.push(`${pid}: ${cmdline.trim()} (cwd ${cwd})`);
  }
  return found;
}

/** What the rigs left in the example's TMPDIR, apart from the tools' own caches (tsx, jest). */
async function leftovers(root: string): Promise<string[]> {
  return (await readdir(root)).filter((name) => !/^(tsx|jest)[-_]/.test(name));
}

function environment(tmp: string, redisUrl: string | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: tmp, NO_COLOR: '1' };
  for (const name of ['FORCE_COLOR', 'DATABASE_URL', 'REDIS_URL', 'KMS_DATA_DIR', 'SOFTHSM2_CONF', 'VITEST', 'VITEST_POOL_ID', 'VITEST_WORKER_ID', 'NODE_OPTIONS']) delete env[name];
  if (redisUrl) env.REDIS_URL = redisUrl;
  return env;
}

/** The compiled helper is what jest loads (it cannot run TypeScript): build when dist/ is older than src/testing/. */
async function ensureBuild(): Promise<void> {
  const stamp = (await readFile(path.join(repoRoot, 'dist/build-stamp.json'), 'utf8').then(JSON.parse, () => ({}))) as { startedAt?: number };
  const sources = await readdir(path.join(repoRoot, 'src/testing'));
  const newest = Math.max(...(await Promise.all(sources.map(async (name) => (await stat(path.join(repoRoot, 'src/testing', name))).mtimeMs))));
  const compiled = await stat(path.join(repoRoot, 'dist/testing/index.js')).then(() => true, () => false);
  if (compiled && stamp.startedAt !== undefined && newest < stamp.startedAt) return;
  const built = spawnSync(process.execPath, ['scripts/build.mjs'], { cwd: repoRoot, encoding: 'utf8' });
  if (built.status !== 0) throw new Error(`npm run build failed:\n${built.stderr}${built.stdout}`);
}

async function redisKeys(redisUrl: string, pattern: string): Promise<string[]> {
  const redis = new Redis(redisUrl);
  try {
    const keys: string[] = [];
    for await (const batch of redis.scanStream({ match: pattern, count: 20_000 }) as AsyncIterable<string[]>) keys.push(...batch);
    return keys;
  } finally {
    redis.disconnect();
  }
}

describe('hsm-kms/testing in users\' projects', () => {
  it('vitest: two rigs start and stop in one process (private redis-server); nothing is left running', async () => {
    const example = path.join(consumers, 'vitest-example');
    await linkPackage(example);
    const tmp = await mkdtemp(path.join(tmpdir(), 'kms-consumer-vitest-'));
    try {
      const result = await run([path.join(repoRoot, 'node_modules/vitest/vitest.mjs'), 'run'], { cwd: example, env: environment(tmp, undefined), timeoutMs: 280_000 });
      expect(result.output).toMatch(/Tests\s+2 passed/);
      expect(result.code, result.output).toBe(0);
      expect(await processesUnder(tmp)).toEqual([]);
      expect(await leftovers(tmp)).toEqual([]);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }, 300_000);

  it('jest (ESM, from the build): two rigs on a shared REDIS_URL; no open handles, nothing left running or in Redis', async () => {
    await ensureBuild();
    const example = path.join(consumers, 'jest-example');
    await linkPackage(example);
    const tmp = await mkdtemp(path.join(tmpdir(), 'kms-consumer-jest-'));
    const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
    try {
      const env = { ...environment(tmp, redisUrl), NODE_OPTIONS: '--experimental-vm-modules' };
      const result = await run([path.join(repoRoot, 'node_modules/jest/bin/jest.js'), '--detectOpenHandles'], { cwd: example, env, timeoutMs: 280_000 });
      expect(result.output).toMatch(/Tests:\s+2 passed, 2 total/);
      expect(result.code, result.output).toBe(0);
      expect(result.output).not.toMatch(/open handle/i);
      expect(await processesUnder(tmp)).toEqual([]);
      expect(await leftovers(tmp)).toEqual([]);
      expect(await redisKeys(redisUrl, 'hsm-kms-test-*')).toEqual([]);
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }, 300_000);

  it('a seed that does not apply stops the start: startTestKms rejects with the report and leaves nothing behind', async () => {
    const tmp = await mkdtemp(path.join(tmpdir(), 'kms-bad-seed-'));
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = tmp; // where startTestKms makes its temp dir
    try {
      const seed = { keys: [{ id: 'key-badseed0001', tier: 'HSM', instance: 'no-such-instance' }] };
      await expect(startTestKms({ redisUrl: '', seed })).rejects.toThrow(/KMS_SEED_FILE[\s\S]*failed\s+key\s+key-badseed0001\s+no instance no-such-instance/);
      expect(await processesUnder(tmp)).toEqual([]);
      expect(await leftovers(tmp)).toEqual([]);
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
      await rm(tmp, { recursive: true, force: true });
    }
  }, 180_000);

  it('package.json exports ./testing, from the build when there is one', async () => {
    const manifest = JSON.parse(await readFile(path.join(repoRoot, 'package.json'), 'utf8')) as { exports: Record<string, { default: string; types: string }> };
    expect(manifest.exports['./testing']).toEqual({ types: './dist/testing/index.d.ts', default: './testing/index.mjs' });
    expect((await stat(path.join(repoRoot, manifest.exports['./testing']!.default))).isFile()).toBe(true);
  });
});
