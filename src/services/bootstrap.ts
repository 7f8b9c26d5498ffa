import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { getAccessKey } from '../store/access-keys.js';
import { listInstances } from '../store/instances.js';
import { createAccessKey } from './access.js';
import { type Caller, type ServiceDeps, systemCaller } from './context.js';
import { createInstance } from './instances.js';

export interface CredentialsFile {
  AccessKeyId: string;
  AccessKeySecret: string;
  Endpoint: string;
}

/**
 * First start: create an admin access key and write `<data dir>/credentials.json` (0600).
 * Later starts keep the file as long as its key still exists in the store.
 */
export async function ensureAdminCredentials(deps: ServiceDeps, endpoint: string): Promise<{ file: string; created: boolean }> {
  const file = path.join(deps.config.dataDir, 'credentials.json');
  const existing = await readCredentials(file);
  if (existing && (await getAccessKey(deps.db, existing.AccessKeyId))) {
    if (existing.Endpoint !== endpoint) await writeCredentials(file, { ...existing, Endpoint: endpoint });
    return { file, created: false };
  }
  const created = await createAccessKey(deps, { role: 'admin', description: 'bootstrap admin' }, systemCaller);
  await writeCredentials(file, { AccessKeyId: created.accessKeyId, AccessKeySecret: created.accessKeySecret, Endpoint: endpoint });
  return { file, created: true };
}

export async function readCredentials(file: string): Promise<CredentialsFile | undefined> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<CredentialsFile>;
    if (typeof parsed.AccessKeyId === 'string' && typeof parsed.AccessKeySecret === 'string') {
      return { AccessKeyId: parsed.AccessKeyId, AccessKeySecret: parsed.AccessKeySecret, Endpoint: parsed.Endpoint ?? '' };
    }
  } catch {
    // Missing or unreadable: the caller creates a new one.
  }
  return undefined;
}

async function writeCredentials(file: string, credentials: CredentialsFile): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}

/** The quickstart's instances: one HSM and one SOFTWARE instance unless some already exist. */
export async function ensureDefaultInstances(deps: ServiceDeps, caller: Caller = systemCaller): Promise<{ hsm: string; software: string }> {
  const ids: Partial<Record<'HSM' | 'SOFTWARE', string>> = {};
  for (const type of ['HSM', 'SOFTWARE'] as const) {
    const { items } = await listInstances(deps.db, { offset: 0, limit: 1 }, { type });
    ids[type] = items[0]?.id ?? (await createInstance(deps, { type, keyQuota: 1000, qps: 1000, name: `quickstart-${type.toLowerCase()}` }, caller)).id;
  }
  return { hsm: ids.HSM!, software: ids.SOFTWARE! };
}
