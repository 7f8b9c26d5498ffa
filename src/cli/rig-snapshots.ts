/**
 * `kms snapshot save|restore|list` (issue 18): whole copies of a stopped quickstart's data dir —
 * the SoftHSM2 token, the embedded Postgres (PGlite), the private Redis's append-only files, the
 * PIN and secret files and credentials.json — kept under `<data dir>/snapshots/<name>/`, so a
 * test suite can start every run from one known state. A running rig is never copied (its
 * files change under the copy): runtime.json or a lock naming a live process refuses.
 */
import { cp, mkdir, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { runtimeFile } from './local-kms.js';

export const SNAPSHOTS_DIR = 'snapshots';

/** Files of a running rig only: never copied, never restored. */
const TRANSIENT = new Set([SNAPSHOTS_DIR, 'runtime.json', 'pglite.lock', 'redis.pid', 'owner.pid', 'byok']);

const SNAPSHOT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function snapshotDir(dataDir: string, name: string): string {
  if (!SNAPSHOT_NAME.test(name)) throw new Error(`snapshot name "${name}": use 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit.`);
  return path.join(dataDir, SNAPSHOTS_DIR, name);
}

/**
 * @throws Error naming the process when a quickstart (runtime.json), an embedded Postgres
 *   (pglite.lock) or the private Redis (redis/redis.pid) of this data dir is running.
 */
export async function assertRigStopped(dataDir: string): Promise<void> {
  const holders: Array<[string, number | undefined]> = [
    ['the quickstart', await pidIn(runtimeFile(dataDir), (text) => (JSON.parse(text) as { pid?: unknown }).pid)],
    ['the embedded Postgres', await pidIn(path.join(dataDir, 'pglite.lock'), Number)],
    ['the private Redis', await pidIn(path.join(dataDir, 'redis', 'redis.pid'), Number)],
  ];
  for (const [what, pid] of holders) {
    if (pid !== undefined && isRunning(pid)) {
      throw new Error(`${what} of ${dataDir} is running (process ${pid}): stop it (Ctrl-C) first: snapshots, backups and restores need the rig stopped.`);
    }
  }
}

async function pidIn(file: string, parse: (text: string) => unknown): Promise<number | undefined> {
  try {
    const pid = parse((await readFile(file, 'utf8')).trim());
    return typeof pid === 'number' && Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The data dir's state entries (everything but snapshots and a running rig's files). */
async function stateEntries(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => !TRANSIENT.has(name) && !name.endsWith('.tmp'));
}

const copyFilter = (source: string) => !TRANSIENT.has(path.basename(source)) && !source.endsWith('.tmp');

export async function saveSnapshot(dataDir: string, name: string, options: { replace?: boolean } = {}): Promise<{ dir: string; entries: string[] }> {
  const target = snapshotDir(dataDir, name);
  await assertRigStopped(dataDir);
  const entries = await stateEntries(dataDir).catch((): string[] => []);
  if (!entries.includes('hsm')) throw new Error(`${dataDir} holds no rig to snapshot (no hsm/ token): run the quickstart once first.`);
  if ((await exists(target)) && !options.replace) throw new Error(`snapshot ${name} exists (${target}); pass --replace to overwrite it.`);
  // Copied beside the target, then renamed into place: a failed copy never leaves half a snapshot.
  const partial = `${target}.${process.pid}.tmp`;
  await mkdir(partial, { recursive: true, mode: 0o700 });
  try {
    for (const entry of entries) await cp(path.join(dataDir, entry), path.join(partial, entry), { recursive: true, filter: copyFilter, preserveTimestamps: true });
    await rm(target, { recursive: true, force: true });
    await rename(partial, target);
  } catch (error) {
    await rm(partial, { recursive: true, force: true });
    throw error;
  }
  return { dir: target, entries };
}

export async function restoreSnapshot(dataDir: string, name: string): Promise<{ dir: string; entries: string[] }> {
  const source = snapshotDir(dataDir, name);
  await assertRigStopped(dataDir);
  if (!(await exists(source))) throw new Error(`no snapshot ${name} (${source}); \`kms snapshot list\` shows them.`);
  const entries = await stateEntries(source);
  for (const entry of await stateEntries(dataDir)) await rm(path.join(dataDir, entry), { recursive: true, force: true });
  for (const entry of entries) await cp(path.join(source, entry), path.join(dataDir, entry), { recursive: true, filter: copyFilter, preserveTimestamps: true });
  return { dir: source, entries };
}

export async function listSnapshots(dataDir: string): Promise<Array<{ name: string; savedAt: string }>> {
  const dir = path.join(dataDir, SNAPSHOTS_DIR);
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => SNAPSHOT_NAME.test(n) && !n.endsWith('.tmp'));
  const out = [];
  for (const name of names.sort()) out.push({ name, savedAt: (await stat(path.join(dir, name))).mtime.toISOString() });
  return out;
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}
