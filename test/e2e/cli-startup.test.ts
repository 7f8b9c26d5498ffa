import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildState } from '../../bin/build-state.mjs';
import { type TestServer, startServer } from '../helpers/server.js';

/**
 * Issue 16 "Production start" and issue 18 point 2: how `kms` starts. `kms --help` must not load
 * the heavy modules (pg, pkcs11js, bullmq, ioredis, pino, zod, the services): command modules
 * import them inside their actions (src/cli/kms.ts). bin/kms.mjs runs dist/ only while the build
 * is current. The start-up times are printed for the README, never asserted.
 */
const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../..');
const BIN = path.join(repoRoot, 'bin/kms.mjs');
const HEAVY = ['pg', 'pkcs11js', 'bullmq', 'ioredis', 'pino', 'zod', '@electric-sql/pglite', 'express'];
const cleanEnv = () => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KMS_') && !k.startsWith('ALIBABA_CLOUD_')));

let server: TestServer;
let scratch: string;

beforeAll(async () => {
  server = await startServer();
  scratch = await mkdtemp(path.join(tmpdir(), 'kms-startup-'));
});

afterAll(async () => {
  await server?.stop();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

const kms = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  run(process.execPath, [BIN, ...args], { cwd: scratch, env: { ...cleanEnv(), KMS_DATA_DIR: scratch, ...env }, timeout: 60_000 });

const asAdmin = () => ({
  KMS_ENDPOINT: server.endpoint,
  KMS_ACCESS_KEY_ID: server.admin.accessKeyId,
  KMS_ACCESS_KEY_SECRET: server.admin.accessKeySecret,
});

describe('kms start-up', () => {
  it('kms --help loads none of the heavy modules', async () => {
    const log = path.join(scratch, 'imports.log');
    await run(process.execPath, ['--import', path.join(repoRoot, 'test/fixtures/import-recorder.mjs'), BIN, '--help'], {
      cwd: scratch,
      env: { ...cleanEnv(), IMPORT_LOG: log },
    });
    const loaded = (await readFile(log, 'utf8')).split('\n').filter(Boolean);
    expect(loaded.some((url) => /\/cli\/commands\/key\.(js|ts)$/.test(url))).toBe(true);
    const heavy = loaded.filter((url) => HEAVY.some((name) => url.includes(`/node_modules/${name}/`)));
    // credentials-file is the one light module of services/: client verbs read credentials.json with it.
    const services = loaded.filter((url) => /\/(services|store|hsm|jobs|api\/actions)\//.test(url) && !/\/services\/credentials-file\.(js|ts)$/.test(url));
    expect(heavy).toEqual([]);
    expect(services).toEqual([]);
  });

  it('kms --version prints the package version', async () => {
    const { version } = JSON.parse(await readFile(path.join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    expect((await kms(['--version'])).stdout.trim()).toBe(version);
  });

  it('every command and subcommand has a description', async () => {
    const missing: string[] = [];
    const walk = async (words: string[]) => {
      const { stdout } = await kms([...words, '--help']);
      const section = stdout.split(/^Commands:$/m)[1];
      if (!section) return;
      // A command line is "  name [args]   description"; a description's wrapped lines are indented deeper.
      for (const line of section.split('\n')) {
        const match = /^ {2}(\S+)(.*)$/.exec(line);
        if (!match?.[1] || match[1] === 'help') continue;
        const rest = (match[2] ?? '').replace(/^(\s+(\[[^\]]*\]|<[^>]*>))*/, '');
        if (rest.trim() === '') missing.push([...words, match[1]].join(' '));
        else await walk([...words, match[1]]);
      }
    };
    await walk([]);
    expect(missing).toEqual([]);
  }, 240_000);

  it('prints the time of kms --help and of a client verb (kms key list) for the README', async () => {
    const timeIt = async (args: string[], env: NodeJS.ProcessEnv) => {
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        await kms(args, env);
        times.push(performance.now() - started);
      }
      return Math.round(times.sort((a, b) => a - b)[2]!);
    };
    const help = await timeIt(['--help'], {});
    const list = await timeIt(['key', 'list'], asAdmin());
    const mode = buildState().current ? 'compiled dist/' : 'TypeScript sources through tsx (dist/ missing or older than src/)';
    console.log(`kms start-up, median of 5 (${mode}): kms --help ${help} ms, kms key list ${list} ms`);
    expect(help).toBeGreaterThan(0);
  }, 120_000);
});

describe('bin/kms.mjs picks the compiled CLI only while it is current', () => {
  it('dist/ when the stamp is newer than every source; the sources when one is newer or there is no stamp; dist/ without src/', async () => {
    const root = path.join(scratch, 'package');
    await mkdir(path.join(root, 'bin'), { recursive: true });
    await cp(path.join(repoRoot, 'bin/kms.mjs'), path.join(root, 'bin/kms.mjs'));
    await cp(path.join(repoRoot, 'bin/build-state.mjs'), path.join(root, 'bin/build-state.mjs'));
    await symlink(path.join(repoRoot, 'node_modules'), path.join(root, 'node_modules'));
    await writeFile(path.join(root, 'package.json'), '{ "type": "module" }\n');
    await mkdir(path.join(root, 'dist/cli'), { recursive: true });
    await mkdir(path.join(root, 'src/cli'), { recursive: true });
    await writeFile(path.join(root, 'dist/cli/kms.js'), "process.stdout.write('dist');\n");
    await writeFile(path.join(root, 'src/cli/kms.ts'), "const from: string = 'src';\nprocess.stdout.write(from);\n");
    const which = async () => (await run(process.execPath, [path.join(root, 'bin/kms.mjs')], { env: cleanEnv() })).stdout;
    const stampAt = async (ms: number) => writeFile(path.join(root, 'dist/build-stamp.json'), JSON.stringify({ startedAt: ms }));
    const age = async (file: string, ms: number) => utimes(path.join(root, file), ms / 1000, ms / 1000);

    const past = Date.now() - 60_000;
    for (const entry of ['src/cli/kms.ts', 'src/cli', 'src']) await age(entry, past);
    expect(await which()).toBe('src'); // no stamp yet
    await stampAt(Date.now());
    expect(await which()).toBe('dist');
    await age('src/cli/kms.ts', Date.now() + 1_000); // edited after the build
    expect(await which()).toBe('src');
    await rm(path.join(root, 'src'), { recursive: true });
    expect(await which()).toBe('dist'); // an installed copy has no sources
  }, 60_000);
});
