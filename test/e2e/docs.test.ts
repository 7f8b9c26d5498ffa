import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type TestKms, startTestKms } from '../../src/testing/index.js';
import { type DocBlock, documentationFiles, linkTargets, readDoc, runnableBlocks } from '../helpers/doc-blocks.js';

/**
 * Issue 18, docs that are tested: every block of README.md and docs/*.md marked runnable
 * (```` ```sh test ````, ```` ```js test ````; test/helpers/doc-blocks.ts) runs here, as pasted,
 * against a real quickstart. A page's blocks run in order, each in a fresh shell or `node`
 * process, in one working folder of that page (files an earlier block wrote are there) whose
 * `.kms` is the rig's data dir — as for a reader in a checkout of this repo with
 * `npm run quickstart` running: `npx kms` works, `.mjs` files import the SDKs installed here, and
 * `hsm-kms/testing` resolves as in a project that installed hsm-kms.
 */
const repoRoot = path.resolve(import.meta.dirname, '../..');
// Inside the repo (so `npx kms` and the SDK imports resolve as for a reader), in a folder git ignores.
const runsRoot = path.join(repoRoot, 'node_modules', '.cache', 'hsm-kms-doc-test', randomBytes(4).toString('hex'));

const files = await documentationFiles(repoRoot);
const blocksByFile = new Map<string, DocBlock[]>();
for (const file of files) blocksByFile.set(file, runnableBlocks(file, await readDoc(repoRoot, file)));

let rig: TestKms;

beforeAll(async () => {
  rig = await startTestKms({ redisUrl: '' });
}, 180_000);

afterAll(async () => {
  await rig?.stop();
  await rm(runsRoot, { recursive: true, force: true });
});

function environment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  for (const name of Object.keys(env)) {
    if (/^(KMS_|VITEST)/.test(name) || ['DATABASE_URL', 'REDIS_URL', 'SOFTHSM2_CONF', 'NODE_OPTIONS', 'FORCE_COLOR'].includes(name)) delete env[name];
  }
  return env;
}

function run(command: string, args: string[], cwd: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env: environment(), stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 170_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

async function workDir(file: string): Promise<string> {
  const dir = path.join(runsRoot, file.replace(/[/.]/g, '_'));
  if (!existsSync(dir)) {
    await mkdir(dir, { recursive: true });
    await symlink(rig.dataDir, path.join(dir, '.kms'), 'dir');
    // As npm installs a dependency: node_modules/hsm-kms (so `hsm-kms/testing` resolves) and its
    // bin (npx finds the nearest node_modules and runs `kms` from there).
    await mkdir(path.join(dir, 'node_modules', '.bin'), { recursive: true });
    await symlink(repoRoot, path.join(dir, 'node_modules', 'hsm-kms'), 'dir');
    await symlink(path.join('..', 'hsm-kms', 'bin', 'kms.mjs'), path.join(dir, 'node_modules', '.bin', 'kms'));
  }
  return dir;
}

describe('runnable documentation', () => {
  it('marks blocks to run in the README and in docs/', () => {
    expect(blocksByFile.get('README.md')!.length).toBeGreaterThanOrEqual(6);
    expect([...blocksByFile.values()].flat().filter((b) => b.file.startsWith('docs/')).length).toBeGreaterThanOrEqual(4);
  });

  it('has no link that leaves the repo, and every relative link names a file that exists', async () => {
    const broken: string[] = [];
    for (const file of files) {
      for (const { line, target } of linkTargets(await readDoc(repoRoot, file))) {
        if (/^(https?:|mailto:|#)/.test(target)) continue;
        const resolved = path.resolve(repoRoot, path.dirname(file), target.split('#')[0] ?? '');
        if (!resolved.startsWith(`${repoRoot}${path.sep}`) && resolved !== repoRoot) broken.push(`${file}:${line} ${target} (outside the repo)`);
        else if (!existsSync(resolved)) broken.push(`${file}:${line} ${target} (no such file)`);
      }
    }
    expect(broken).toEqual([]);
  });

  for (const [file, blocks] of blocksByFile) {
    if (blocks.length === 0) continue;
    describe(file, () => {
      blocks.forEach((block, index) => {
        it(`${block.language} block at line ${block.line} runs as written`, async () => {
          const dir = await workDir(file);
          const script = path.join(dir, `block-${index + 1}-line-${block.line}.${block.language === 'sh' ? 'sh' : 'mjs'}`);
          await writeFile(script, block.code);
          const result = block.language === 'sh' ? await run('bash', ['-e', '-o', 'pipefail', script], dir) : await run(process.execPath, [script], dir);
          expect(result.code, `${file}:${block.line}\n${block.code}\n--- output ---\n${result.output}`).toBe(0);
        }, 180_000);
      });
    });
  }
});
