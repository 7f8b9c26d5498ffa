import { readFile, readdir, readlink, realpath } from 'node:fs/promises';

/**
 * Pids of the running (not zombie) redis-server processes whose working directory is `dir`
 * (Redis chdirs to its `--dir`), read from /proc: how tests count the private Redis servers
 * over one data dir.
 */
export async function redisServersIn(dir: string): Promise<number[]> {
  const real = await realpath(dir);
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const comm = (await readFile(`/proc/${entry}/comm`, 'utf8').catch(() => '')).trim();
    if (!comm.startsWith('redis-server')) continue;
    // An orphan's zombie lingers where nobody reaps it; it serves nothing.
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
    if ((await readlink(`/proc/${entry}/cwd`).catch(() => '')) === real) pids.push(Number(entry));
  }
  return pids.sort((a, b) => a - b);
}
