import { randomBytes } from 'node:crypto';
import { KmsError, invalidParameter } from '../domain/errors.js';
import { isAccessKeyIdFormat } from '../domain/ids.js';
import {
  type AccessKey,
  type AccessRole,
  deleteAccessKey as removeAccessKey,
  insertAccessKey,
  setAccessKeyStatus as updateAccessKeyStatus,
} from '../store/access-keys.js';
import { recordAudit } from '../store/audit.js';
import { withTransaction } from '../store/db.js';
import type { Caller, ServiceDeps } from './context.js';
import type { EntityCache } from './repositories.js';
import { assertAdmin } from './permissions.js';

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
  input: {
    role: AccessRole;
    instanceIds?: string[] | null | undefined;
    description?: string | undefined;
    /** A pinned id and secret (seed files, issue 18); absent: random ones. */
    pinned?: { accessKeyId: string; accessKeySecret: string } | undefined;
  },
  caller: Caller,
): Promise<NewAccessKey> {
  if (input.role !== 'admin' && input.role !== 'key-user') throw invalidParameter('Role');
  if (input.pinned && !isAccessKeyIdFormat(input.pinned.accessKeyId)) throw invalidParameter('AccessKeyId');
  if (input.pinned && input.pinned.accessKeySecret.length < 16) throw invalidParameter('AccessKeySecret', 'It must be at least 16 characters.');
  const accessKeyId = input.pinned?.accessKeyId ?? `LTAI${randomString(20)}`;
  const accessKeySecret = input.pinned?.accessKeySecret ?? randomString(30);
  const sealedSecret = await deps.hsm.sealWithRootKey(Buffer.from(accessKeySecret, 'utf8'), Buffer.from(accessKeyId));
  const instanceIds = input.instanceIds && input.instanceIds.length > 0 ? input.instanceIds : null;
  await withTransaction(deps.db, async (tx) => {
    await insertAccessKey(tx, {
      id: accessKeyId,
      sealedSecret,
      role: input.role,
      instanceIds,
      description: input.description ?? '',
    });
    await recordAudit(tx, {
      requestId: caller.requestId,
      accessKeyId: caller.accessKeyId,
      sourceIp: caller.sourceIp,
      action: 'CreateAccessKey',
      detail: { createdAccessKeyId: accessKeyId, role: input.role, instanceIds },
    });
  });
  return { accessKeyId, accessKeySecret, role: input.role, instanceIds };
}

const accessKeyNotFound = () => new KmsError('InvalidAccessKeyId.NotFound', 'The AccessKey ID provided does not exist in our records.');

/**
 * Enables or disables an access key (`kms access-key enable|disable`), audited in the same
 * transaction. Every node stops honouring a disabled key at once (its caches are invalidated).
 * @throws InvalidAccessKeyId.NotFound
 */
export async function setAccessKeyStatus(deps: ServiceDeps, accessKeyId: string, status: 'Enabled' | 'Disabled', caller: Caller): Promise<void> {
  assertAdmin(caller);
  await withTransaction(deps.db, async (tx) => {
    if (!(await updateAccessKeyStatus(tx, accessKeyId, status))) throw accessKeyNotFound();
    await recordAudit(tx, {
      requestId: caller.requestId,
      accessKeyId: caller.accessKeyId,
      sourceIp: caller.sourceIp,
      action: status === 'Enabled' ? 'EnableAccessKey' : 'DisableAccessKey',
      detail: { targetAccessKeyId: accessKeyId },
    });
  });
}

/**
 * Deletes an access key (`kms access-key delete`), audited in the same transaction.
 * @throws InvalidAccessKeyId.NotFound
 */
export async function deleteAccessKey(deps: ServiceDeps, accessKeyId: string, caller: Caller): Promise<void> {
  assertAdmin(caller);
  await withTransaction(deps.db, async (tx) => {
    if (!(await removeAccessKey(tx, accessKeyId))) throw accessKeyNotFound();
    await recordAudit(tx, {
      requestId: caller.requestId,
      accessKeyId: caller.accessKeyId,
      sourceIp: caller.sourceIp,
      action: 'DeleteAccessKey',
      detail: { targetAccessKeyId: accessKeyId },
    });
  });
}

/** An access key with its unsealed secret, as request verification needs it. */
export interface Credential {
  accessKey: AccessKey;
  secret: string;
}

/**
 * Looks access keys up for request verification, keeping unsealed secrets in `cache`: the
 * hot path must not pay a database read and an HSM call per request. The cache is one of the
 * node's metadata caches (cache/metadata-caches.ts): a change of the key (status, role,
 * instances, deletion) committed on any node drops it on every node (store/change-tracking.ts,
 * cache/invalidation-channel.ts); while this node's invalidation channel is down, an entry is
 * trusted for at most KMS_ACCESS_KEY_CACHE_TTL_MS (0 turns the cache off).
 */
export class CredentialDirectory {
  constructor(
    private readonly deps: Pick<ServiceDeps, 'repositories' | 'hsm'>,
    private readonly cache: EntityCache<Credential>,
  ) {}

  /**
   * The access key, whatever its status, with its secret. Whether it is enabled is for the
   * caller to check *after* the signature (`assertAccessKeyEnabled`): checking it first would
   * tell anyone without the secret which key ids are disabled.
   * @throws InvalidAccessKeyId.NotFound (404) for an unknown id.
   */
  async lookup(accessKeyId: string): Promise<Credential> {
    const credential = await this.cache.getOrLoad(accessKeyId, async () => {
      const accessKey = await this.deps.repositories.accessKeys.byId(accessKeyId);
      if (!accessKey) return undefined;
      const secret = (await this.deps.hsm.unsealWithRootKey(accessKey.sealedSecret, Buffer.from(accessKey.id))).toString('utf8');
      return { accessKey, secret };
    });
    if (!credential) {
      throw new KmsError('InvalidAccessKeyId.NotFound', 'The AccessKey ID provided does not exist in our records.');
    }
    return credential;
  }
}

/**
 * Refuses a disabled access key; call it once the request's signature is verified.
 * @throws Forbidden.AccessKey (403)
 */
export function assertAccessKeyEnabled(accessKey: Pick<AccessKey, 'status'>): void {
  if (accessKey.status !== 'Enabled') throw new KmsError('Forbidden.AccessKey', 'This AccessKey is not enabled.');
}
