import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { listSnapshots, restoreSnapshot, saveSnapshot } from '../../src/cli/rig-snapshots.js';

/** cli/rig-snapshots.ts on a data dir laid out like a quickstart's (the rig itself: test/e2e/rig-reset-snapshot.test.ts). */
let dataDir: string;

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'kms-snapshots-'));
  await mkdir(path.join(dataDir, 'hsm', 'tokens', 'abc'), { recursive: true });
  await mkdir(path.join(dataDir, 'pglite'), { recursive: true });
  await mkdir(path.join(dataDir, 'redis'), { recursive: true });
  await writeFile(path.join(dataDir, 'hsm', 'tokens', 'abc', 'token.object'), 'state one');
  await writeFile(path.join(dataDir, 'pglite', 'PG_VERSION'), '17');
  await writeFile(path.join(dataDir, 'credentials.json'), '{}', { mode: 0o600 });
});

afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

const read = (file: string) => readFile(path.join(dataDir, file), 'utf8');

describe('rig snapshots', () => {
  it('save → change → restore gives back the saved files, and removes files made since', async () => {
    await saveSnapshot(dataDir, 'one');
    await writeFile(path.join(dataDir, 'hsm', 'tokens', 'abc', 'token.object'), 'state two');
    await writeFile(path.join(dataDir, 'hsm', 'tokens', 'abc', 'new.object'), 'made after');
    await restoreSnapshot(dataDir, 'one');
    expect(await read('hsm/tokens/abc/token.object')).toBe('state one');
    expect(await readdir(path.join(dataDir, 'hsm', 'tokens', 'abc'))).toEqual(['token.object']);
    expect(await read('pglite/PG_VERSION')).toBe('17');
    expect((await listSnapshots(dataDir)).map((s) => s.name)).toEqual(['one']);
  });

  it('refuses while a process of the rig runs (runtime.json, pglite.lock, redis.pid), not for a stale pid', async () => {
    await writeFile(path.join(dataDir, 'runtime.json'), JSON.stringify({ pid: process.pid }));
    await expect(saveSnapshot(dataDir, 'one')).rejects.toThrow(`the quickstart of ${dataDir} is running (process ${process.pid})`);
    await rm(path.join(dataDir, 'runtime.json'));
    await writeFile(path.join(dataDir, 'pglite.lock'), String(process.pid));
    await expect(saveSnapshot(dataDir, 'one')).rejects.toThrow('the embedded Postgres');
    await writeFile(path.join(dataDir, 'pglite.lock'), '2147483646'); // no such process
    await writeFile(path.join(dataDir, 'redis', 'redis.pid'), String(process.pid));
    await expect(restoreSnapshot(dataDir, 'one')).rejects.toThrow('the private Redis');
    await rm(path.join(dataDir, 'redis', 'redis.pid'));
    await saveSnapshot(dataDir, 'one');
    // A running rig's files are never part of a snapshot.
    expect(await readdir(path.join(dataDir, 'snapshots', 'one'))).not.toContain('pglite.lock');
  });

  it('refuses bad names, an existing snapshot without --replace, an unknown one, and a dir without a token', async () => {
    await expect(saveSnapshot(dataDir, '../escape')).rejects.toThrow('snapshot name');
    await expect(saveSnapshot(dataDir, '')).rejects.toThrow('snapshot name');
    await saveSnapshot(dataDir, 'one');
    await expect(saveSnapshot(dataDir, 'one')).rejects.toThrow('--replace');
    await writeFile(path.join(dataDir, 'credentials.json'), '{"changed":true}');
    await saveSnapshot(dataDir, 'one', { replace: true });
    await writeFile(path.join(dataDir, 'credentials.json'), '{}');
    await restoreSnapshot(dataDir, 'one');
    expect(await read('credentials.json')).toBe('{"changed":true}');
    await expect(restoreSnapshot(dataDir, 'two')).rejects.toThrow('no snapshot two');
    const empty = await mkdtemp(path.join(tmpdir(), 'kms-snapshots-empty-'));
    await expect(saveSnapshot(empty, 'one')).rejects.toThrow('no rig to snapshot');
    await rm(empty, { recursive: true, force: true });
  });
});
