import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * Issue 18 point 3: scripts/setup.sh asks only for what the chosen configuration needs. It runs
 * with a PATH holding node, npm, dirname and softhsm2-util only, a fake `id` (root, so it would
 * install) and a fake `apt-get` that records what it was asked to install.
 */
const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '../..');
let bin: string;
let requests: string;

beforeAll(async () => {
  bin = await mkdtemp(path.join(tmpdir(), 'kms-setup-path-'));
  requests = path.join(bin, 'apt-get.log');
  const which = async (name: string) => (await run('/bin/sh', ['-c', `command -v ${name}`])).stdout.trim();
  for (const name of ['node', 'npm', 'dirname', 'softhsm2-util']) await symlink(await which(name), path.join(bin, name));
  await writeFile(path.join(bin, 'id'), '#!/bin/sh\necho 0\n');
  await writeFile(path.join(bin, 'apt-get'), `#!/bin/sh\n[ "$1" = install ] && echo "$*" >> ${requests}\nexit 0\n`);
  await chmod(path.join(bin, 'id'), 0o755);
  await chmod(path.join(bin, 'apt-get'), 0o755);
});

afterAll(async () => {
  if (bin) await rm(bin, { recursive: true, force: true });
});

async function packagesAskedFor(args: string[], env: Record<string, string> = {}): Promise<string[]> {
  await rm(requests, { force: true });
  await run('/bin/bash', [path.join(repoRoot, 'scripts/setup.sh'), ...args], { env: { PATH: bin, HOME: process.env.HOME ?? '/tmp', ...env } });
  const log = await readFile(requests, 'utf8').catch(() => '');
  return log
    .split(/\s+/)
    .filter((word) => word !== '' && !word.startsWith('-') && word !== 'install')
    .sort();
}

describe('scripts/setup.sh', () => {
  it('for the quickstart: redis-server only without REDIS_URL, never opensc or chromium; for the tests: all of them', async () => {
    const forTests = ['chromium', 'fonts-liberation', 'opensc', 'redis-server'];
    expect(await packagesAskedFor(['--for', 'quickstart'])).toEqual(['redis-server']);
    expect(await packagesAskedFor(['--for', 'quickstart'], { REDIS_URL: 'redis://127.0.0.1:6379' })).toEqual([]);
    expect(await packagesAskedFor([])).toEqual(forTests);
    expect(await packagesAskedFor(['--for', 'test'], { REDIS_URL: 'redis://127.0.0.1:6379' })).toEqual(forTests);
  });

  it('refuses an unknown purpose', async () => {
    await expect(run('/bin/bash', [path.join(repoRoot, 'scripts/setup.sh'), '--for', 'production'], { env: { PATH: bin } })).rejects.toMatchObject({ code: 2 });
  });
});
