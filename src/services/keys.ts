import {
  type KeySpec,
  type KeyUsage,
  type Origin,
  type ProtectionLevel,
  allowedKeySpecs,
  automaticRotationInterval,
  isKeySpec,
  materialLength,
} from '../domain/key.js';
import { instanceNotFound, invalidParameter } from '../domain/errors.js';
import { newKeyId, newVersionId } from '../domain/ids.js';
import { nextRotationDate } from '../domain/rotation.js';
import type { Tag } from '../domain/tags.js';
import { recordAudit } from '../store/audit.js';
import { withTransaction } from '../store/db.js';
import { lockInstance } from '../store/instances.js';
import { type Key, insertKey } from '../store/keys.js';
import { insertVersionWithinQuota } from '../store/quota.js';
import { upsertTags } from '../store/tags.js';
import { assertAdmin } from './permissions.js';
import { scheduleNextRotation } from './rotation-schedule.js';
import type { Caller, ServiceDeps } from './context.js';

export interface CreateKeyInput {
  instanceId?: string | undefined;
  keySpec?: string | undefined;
  keyUsage?: KeyUsage | undefined;
  origin?: Origin | undefined;
  protectionLevel?: ProtectionLevel | undefined;
  description?: string | undefined;
  enableAutomaticRotation?: boolean | undefined;
  rotationIntervalSeconds?: number | undefined;
  keyStorageMechanism?: 'HsmInternal' | 'HsmEncryptedDatabase' | undefined;
  tags?: Tag[] | undefined;
}

/**
 * CreateKey. The first version exists from the start (a BYOK key's version waits for its
 * material), and consumes one unit of the instance's key quota: the check and the insert
 * happen under a row lock on the instance, so concurrent calls never overshoot the quota.
 * Crash consistency (DESIGN.md): the rows are written first, then the HSM object with the
 * version id as CKA_ID, then the commit; a failed commit leaves an orphan object for the
 * reconciler, never a usable half-key.
 * @throws Forbidden.DKMSInstanceNotFound, InvalidParameter, Rejected.LimitExceeded, Forbidden.NoPermission,
 *   Rejected.UnsupportedOperation (automatic rotation for a key that never rotates automatically)
 */
export async function createKey(deps: ServiceDeps, input: CreateKeyInput, caller: Caller): Promise<Key> {
  const spec = input.keySpec ?? 'Aliyun_AES_256';
  if (!isKeySpec(spec)) throw invalidParameter('KeySpec');
  const usage = input.keyUsage ?? 'ENCRYPT/DECRYPT';
  // Only symmetric specs exist here, and they cannot sign (alibaba-api.md §5.2).
  if (usage !== 'ENCRYPT/DECRYPT') throw invalidParameter('KeyUsage', `${spec} supports only ENCRYPT/DECRYPT.`);
  const origin = input.origin ?? 'Aliyun_KMS';
  assertAdmin(caller);

  const created = await withTransaction(deps.db, async (tx) => {
    let protection: ProtectionLevel;
    if (input.instanceId !== undefined) {
      const instance = await lockInstance(tx, input.instanceId);
      if (!instance) throw instanceNotFound();
      // ProtectionLevel is ignored when DKMSInstanceId is given: the instance type decides (§3.1).
      protection = instance.type;
    } else {
      protection = input.protectionLevel ?? 'SOFTWARE';
      if (protection === 'HSM') {
        throw invalidParameter('ProtectionLevel', 'HSM keys are created in a hardware instance: set DKMSInstanceId.');
      }
    }
    if (!allowedKeySpecs(protection).includes(spec)) {
      throw invalidParameter('KeySpec', `${spec} is not available for ${protection} keys.`);
    }
    const storage = protection === 'HSM' ? (input.keyStorageMechanism ?? 'HsmInternal') : undefined;
    if (protection === 'SOFTWARE' && input.keyStorageMechanism !== undefined) {
      throw invalidParameter('KeyStorageMechanism', 'Only hardware instances take a storage mechanism.');
    }
    if (storage === 'HsmEncryptedDatabase') {
      throw invalidParameter('KeyStorageMechanism', 'HsmEncryptedDatabase is not available yet; use HsmInternal.');
    }

    const now = deps.clock.now();
    const rotation = input.enableAutomaticRotation === true;
    // Who may rotate is the key policy's (domain/key.ts); default keys get their fixed 365 days.
    const interval = rotation
      ? automaticRotationInterval({ instanceId: input.instanceId ?? null, protectionLevel: protection, origin, keySpec: spec, storageMechanism: storage }, input.rotationIntervalSeconds)
      : null;

    const keyId = newKeyId();
    const versionId = newVersionId();
    const key = await insertKey(tx, {
      id: keyId,
      instanceId: input.instanceId ?? null,
      protectionLevel: protection,
      keySpec: spec,
      keyUsage: usage,
      origin,
      state: origin === 'EXTERNAL' ? 'PendingImport' : 'Enabled',
      description: input.description ?? '',
      creator: caller.accessKeyId,
      deletionProtection: false,
      deletionProtectionDescription: '',
      deleteDate: null,
      storageMechanism: storage ?? null,
      automaticRotation: rotation ? 'Enabled' : 'Disabled',
      rotationIntervalSeconds: interval,
      // Seed 002: a new key's LastRotationDate is its first version's creation.
      lastRotationDate: now,
      nextRotationDate: interval !== null ? nextRotationDate(now, interval) : null,
      rotationFailure: null,
      primaryVersionId: versionId,
      createdAt: now,
    });

    const generated = origin === 'Aliyun_KMS';
    let sealedMaterial: Buffer | null = null;
    if (generated && protection === 'SOFTWARE') sealedMaterial = await sealNewMaterial(deps, versionId, materialLength(spec));
    // Version 1 consumes the first quota unit (seed 002), checked under the instance lock.
    await insertVersionWithinQuota(tx, {
      id: versionId,
      keyId,
      instanceId: input.instanceId ?? null,
      state: 'Enabled',
      storage: protection === 'HSM' ? 'token' : 'sealed',
      sealedMaterial,
      hasMaterial: generated,
      materialFingerprint: null,
      materialExpireAt: null,
      createdAt: now,
    });
    if (input.tags && input.tags.length > 0) await upsertTags(tx, keyId, input.tags);
    await recordAudit(tx, {
      requestId: caller.requestId,
      accessKeyId: caller.accessKeyId,
      action: 'CreateKey',
      keyId,
      detail: { versionId, protection, spec, origin },
    });
    // Last step before the commit: if the token refuses, the rollback leaves nothing behind;
    // nothing after it can fail but the commit itself (whose orphan the reconciler removes).
    if (generated && protection === 'HSM') {
      await deps.hsm.generateVersionKey(versionId, (materialLength(spec) * 8) as 128 | 192 | 256);
    }
    return key;
    // Not re-run on a conflict: the HSM object would outlive the rolled-back attempt.
  }, { rerunOnConflict: false });
  await scheduleNextRotation(deps, created);
  return created;
}

/** SOFTWARE tier: fresh material from the HSM's RNG, sealed under the root key, bound to the version id. */
export async function sealNewMaterial(deps: ServiceDeps, versionId: string, length: number): Promise<Buffer> {
  const material = await deps.hsm.randomBytes(length);
  try {
    return await deps.hsm.sealWithRootKey(material, Buffer.from(versionId));
  } finally {
    material.fill(0);
  }
}

export type { KeySpec };
