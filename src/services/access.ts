import { randomBytes } from 'node:crypto';
import { KmsError, invalidParameter } from '../domain/errors.js';
import { type AccessKey, type AccessRole, getAccessKey, insertAccessKey } from '../store/access-keys.js';
import { recordAudit } from '../store/audit.js';
import type { Caller, ServiceDeps } from './context.js';

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function randomString(length: number, alphabet = ALPHANUMERIC): string {
  // Rejection sampling keeps the distribution uniform over the alphabet.
  const limit = 256 - (256 % alphabet.length);
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < limit && out.length < length) out += alphabet[byte % alphabet.length];
    }
  }
  return out;
}

export interface NewAccessKey {
  accessKeyId: string;
  /** Shown once, to the creator; stored only sealed under the HSM root key. */
  accessKeySecret: string;
  role: AccessRole;
  instanceIds: string[] | null;
}

/** Creates an access key whose secret is sealed under the HSM root key (bound to the key id). */
export async function createAccessKey(
  deps: ServiceDeps,
  input: { role: AccessRole; instanceIds?: string[] | null | undefined; description?: string | undefined },
  caller: Caller,
): Promise<NewAccessKey> {
  if (input.role !== 'admin' && input.role !== 'key-user') throw invalidParameter('Role');
  const accessKeyId = `LTAI${randomString(20)}`;
  const accessKeySecret = randomString(30);
  const sealedSecret = await deps.hsm.sealWithRootKey(Buffer.from(accessKeySecret, 'utf8'), Buffer.from(accessKeyId));
  const instanceIds = input.instanceIds && input.instanceIds.length > 0 ? input.instanceIds : null;
  await insertAccessKey(deps.db, {
    id: accessKeyId,
    sealedSecret,
    role: input.role,
    instanceIds,
    description: input.description ?? '',
  });
  await recordAudit(deps.db, {
    accessKeyId: caller.accessKeyId,
    action: 'CreateAccessKey',
    detail: { createdAccessKeyId: accessKeyId, role: input.role },
  });
  return { accessKeyId, accessKeySecret, role: input.role, instanceIds };
}

interface CachedCredential {
  accessKey: AccessKey;
  secret: string;
  expiresAt: number;
}

/**
 * Looks access keys up for request verification, keeping unsealed secrets in memory for
 * `config.accessKeyCacheTtlMs` (KMS_ACCESS_KEY_CACHE_TTL_MS, 5 s by default): the hot path
 * must not pay a database read and an HSM call per request. The TTL is also the bound on how
 * long another process keeps honouring a key after it was disabled (or its role or instances
 * changed); the process that changes a key calls `invalidate` at once. 0 turns the cache off.
 */
export class CredentialDirectory {
  private readonly cache = new Map<string, CachedCredential>();

  constructor(private readonly deps: ServiceDeps) {}

  /**
   * The access key, whatever its status, with its secret. Whether it is enabled is for the
   * caller to check *after* the signature (`assertAccessKeyEnabled`): checking it first would
   * tell anyone without the secret which key ids are disabled.
   * @throws InvalidAccessKeyId.NotFound (404) for an unknown id.
   */
  async lookup(accessKeyId: string): Promise<{ accessKey: AccessKey; secret: string }> {
    const now = this.deps.clock.now().getTime();
    const cached = this.cache.get(accessKeyId);
    if (cached && cached.expiresAt > now) return { accessKey: cached.accessKey, secret: cached.secret };
    const accessKey = await getAccessKey(this.deps.db, accessKeyId);
    if (!accessKey) {
      throw new KmsError('InvalidAccessKeyId.NotFound', 'The AccessKey ID provided does not exist in our records.');
    }
    const secret = (await this.deps.hsm.unsealWithRootKey(accessKey.sealedSecret, Buffer.from(accessKey.id))).toString('utf8');
    const ttl = this.deps.config.accessKeyCacheTtlMs;
    if (ttl > 0) this.cache.set(accessKeyId, { accessKey, secret, expiresAt: now + ttl });
    return { accessKey, secret };
  }

  invalidate(accessKeyId: string): void {
    this.cache.delete(accessKeyId);
  }
}

/**
 * Refuses a disabled access key; call it once the request's signature is verified.
 * @throws Forbidden.AccessKey (403)
 */
export function assertAccessKeyEnabled(accessKey: Pick<AccessKey, 'status'>): void {
  if (accessKey.status !== 'Enabled') throw new KmsError('Forbidden.AccessKey', 'This AccessKey is not enabled.');
}
