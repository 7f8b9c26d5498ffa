import { timingSafeEqual } from 'node:crypto';
import { isAccessKeyIdFormat } from '../domain/ids.js';
import { getAccessKey } from '../store/access-keys.js';
import { listInstances } from '../store/instances.js';
import { createAccessKey } from './access.js';
import { type Caller, type ServiceDeps, systemCaller } from './context.js';
import { type CredentialsFile, credentialsFilePath, readCredentials, writeCredentials } from './credentials-file.js';
import { createInstance } from './instances.js';

export { type CredentialsFile, readCredentials } from './credentials-file.js';

/** The shortest secret KMS_BOOTSTRAP_ACCESS_KEY_SECRET may pin. */
export const MIN_PINNED_SECRET_LENGTH = 16;

/** A bootstrap admin key fixed by the environment (a test-rig setting). */
export interface PinnedAccessKey {
  accessKeyId: string;
  accessKeySecret: string;
}

/**
 * KMS_BOOTSTRAP_ACCESS_KEY_ID / KMS_BOOTSTRAP_ACCESS_KEY_SECRET: a predictable bootstrap admin
 * key, so a CI pipeline can point its SDK at a test rig without reading credentials.json. Read
 * from the environment when needed, like the PINs, and never kept in the configuration.
 * Undefined when neither is set.
 * @throws Error (never showing the secret) when only one is set, the id is not `LTAI` + 12–40
 *   letters or digits, or the secret is shorter than 16 characters.
 */
export function pinnedBootstrapKey(env: NodeJS.ProcessEnv = process.env): PinnedAccessKey | undefined {
  const accessKeyId = env.KMS_BOOTSTRAP_ACCESS_KEY_ID ?? '';
  const accessKeySecret = env.KMS_BOOTSTRAP_ACCESS_KEY_SECRET ?? '';
  if (accessKeyId === '' && accessKeySecret === '') return undefined;
  if (accessKeyId === '' || accessKeySecret === '') {
    throw new Error('KMS_BOOTSTRAP_ACCESS_KEY_ID and KMS_BOOTSTRAP_ACCESS_KEY_SECRET pin the bootstrap admin key together: set both, or neither.');
  }
  if (!isAccessKeyIdFormat(accessKeyId)) {
    throw new Error(`KMS_BOOTSTRAP_ACCESS_KEY_ID must be LTAI followed by 12 to 40 letters or digits (an Alibaba AccessKey id), e.g. LTAITESTRIG0000000001.`);
  }
  if (accessKeySecret.length < MIN_PINNED_SECRET_LENGTH) {
    throw new Error(
      `KMS_BOOTSTRAP_ACCESS_KEY_SECRET is ${accessKeySecret.length} characters; a pinned secret needs at least ${MIN_PINNED_SECRET_LENGTH}. ` +
        'It is a test-rig setting: anyone who knows it is an admin of this KMS.',
    );
  }
  return { accessKeyId, accessKeySecret };
}

/**
 * At every start: make sure an admin access key exists and `<data dir>/credentials.json` (0600)
 * names it and the endpoint clients on this host use.
 * - Pinned (KMS_BOOTSTRAP_ACCESS_KEY_*): that key, created on first start; a key with that id
 *   and another secret is refused, never silently changed.
 * - Otherwise: the file's key while it still exists in the store, else a new random admin key.
 */
export async function ensureAdminCredentials(
  deps: ServiceDeps,
  endpoint: string,
  pinned: PinnedAccessKey | undefined = pinnedBootstrapKey(),
): Promise<{ file: string; created: boolean }> {
  const file = credentialsFilePath(deps.config.dataDir);
  const existing = await readCredentials(file);
  if (pinned) {
    const created = await ensurePinnedAdmin(deps, pinned);
    const wanted: CredentialsFile = { AccessKeyId: pinned.accessKeyId, AccessKeySecret: pinned.accessKeySecret, Endpoint: endpoint };
    const same = existing && existing.AccessKeyId === wanted.AccessKeyId && existing.AccessKeySecret === wanted.AccessKeySecret && existing.Endpoint === endpoint;
    if (!same) await writeCredentials(file, wanted);
    return { file, created };
  }
  if (existing && (await getAccessKey(deps.db, existing.AccessKeyId))) {
    if (existing.Endpoint !== endpoint) await writeCredentials(file, { ...existing, Endpoint: endpoint });
    return { file, created: false };
  }
  const created = await createAccessKey(deps, { role: 'admin', description: 'bootstrap admin' }, systemCaller);
  await writeCredentials(file, { AccessKeyId: created.accessKeyId, AccessKeySecret: created.accessKeySecret, Endpoint: endpoint });
  return { file, created: true };
}

/** Creates the pinned admin key unless it exists; true when created. */
async function ensurePinnedAdmin(deps: ServiceDeps, pinned: PinnedAccessKey): Promise<boolean> {
  let stored = await getAccessKey(deps.db, pinned.accessKeyId);
  if (!stored) {
    try {
      await createAccessKey(deps, { role: 'admin', description: 'bootstrap admin (KMS_BOOTSTRAP_ACCESS_KEY_ID)', pinned }, systemCaller);
      return true;
    } catch (error) {
      // Another process starting at the same time created it first: check that one below.
      stored = await getAccessKey(deps.db, pinned.accessKeyId);
      if (!stored) throw error;
    }
  }
  const secret = await deps.hsm.unsealWithRootKey(stored.sealedSecret, Buffer.from(stored.id));
  const given = Buffer.from(pinned.accessKeySecret, 'utf8');
  const matches = secret.length === given.length && timingSafeEqual(secret, given);
  secret.fill(0);
  if (!matches) {
    throw new Error(
      `access key ${pinned.accessKeyId} already exists with another secret: KMS_BOOTSTRAP_ACCESS_KEY_SECRET cannot change it. ` +
        'Use its first secret, another KMS_BOOTSTRAP_ACCESS_KEY_ID, or a fresh data dir / database.',
    );
  }
  if (stored.role !== 'admin' || stored.status !== 'Enabled') {
    throw new Error(`access key ${pinned.accessKeyId} exists but is not an enabled admin key; KMS_BOOTSTRAP_ACCESS_KEY_ID must name the bootstrap admin.`);
  }
  return false;
}

/** Names of the instances the quickstart (and the container) creates. */
export const DEFAULT_INSTANCE_NAMES = { HSM: 'hsm-default', SOFTWARE: 'software-default' } as const;

/**
 * The quickstart's instances: one HSM and one SOFTWARE instance (named `hsm-default`,
 * `software-default`) unless instances of that type already exist.
 */
export async function ensureDefaultInstances(deps: ServiceDeps, caller: Caller = systemCaller): Promise<{ hsm: string; software: string }> {
  const ids: Partial<Record<'HSM' | 'SOFTWARE', string>> = {};
  for (const type of ['HSM', 'SOFTWARE'] as const) {
    const { items } = await listInstances(deps.db, { offset: 0, limit: 1 }, { type });
    ids[type] = items[0]?.id ?? (await createInstance(deps, { type, keyQuota: 1000, qps: 1000, name: DEFAULT_INSTANCE_NAMES[type] }, caller)).id;
  }
  return { hsm: ids.HSM!, software: ids.SOFTWARE! };
}
