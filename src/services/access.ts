import { randomBytes } from 'node:crypto';
import { KmsError, invalidParameter } from '../domain/errors.js';
import { type AccessKey, type AccessRole, getAccessKey, insertAccessKey } from '../store/access-keys.js';
import { recordAudit } from '../store/audit.js';
import type { Caller, ServiceDeps } from './context.js';

const ALPHANUMERIC = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
/** Secrets and their access keys are cached briefly so a disabled key stops working within seconds. */
const SECRET_CACHE_MS = 5_000;

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
 * Looks access keys up for request verification, keeping unsealed secrets in memory for a
 * few seconds (the hot path must not pay a database read and an HSM call per request).
 */
export class CredentialDirectory {
  private readonly cache = new Map<string, CachedCredential>();

  constructor(private readonly deps: ServiceDeps) {}

  /**
   * @throws InvalidAccessKeyId.NotFound (404) for an unknown id, Forbidden.AccessKey (403) when disabled.
   */
  async lookup(accessKeyId: string): Promise<{ accessKey: AccessKey; secret: string }> {
    const now = Date.now();
    const cached = this.cache.get(accessKeyId);
    if (cached && cached.expiresAt > now) return this.checked(cached);
    const accessKey = await getAccessKey(this.deps.db, accessKeyId);
    if (!accessKey) {
      throw new KmsError('InvalidAccessKeyId.NotFound', 'The AccessKey ID provided does not exist in our records.');
    }
    const secret = (await this.deps.hsm.unsealWithRootKey(accessKey.sealedSecret, Buffer.from(accessKey.id))).toString('utf8');
    const entry = { accessKey, secret, expiresAt: now + SECRET_CACHE_MS };
    this.cache.set(accessKeyId, entry);
    return this.checked(entry);
  }

  invalidate(accessKeyId: string): void {
    this.cache.delete(accessKeyId);
  }

  private checked(entry: CachedCredential): { accessKey: AccessKey; secret: string } {
    if (entry.accessKey.status !== 'Enabled') throw new KmsError('Forbidden.AccessKey', 'This AccessKey is not enabled.');
    return { accessKey: entry.accessKey, secret: entry.secret };
  }
}
