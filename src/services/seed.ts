/**
 * Applying a seed file (issue 18, domain/seed.ts) through the ordinary use cases, so every
 * change is checked, audited and invalidated exactly as an API call's would be:
 * - instances are found by name; a missing one is created, different limits are updated, a
 *   different type is a conflict;
 * - keys are found by id, else by their first alias; a missing one is created (with its fixed
 *   id), an existing one must have the declared instance, spec, usage and origin (else:
 *   conflict, nothing applied), and gets the declared description, tags, aliases and rotation
 *   policy where they differ;
 * - an EXTERNAL key's known material goes in through the real BYOK path (GetParametersForImport,
 *   wrapped here with the downloaded public key, ImportKeyMaterial: unwrapped in the HSM); an
 *   already imported key is checked against it with one Encrypt opened locally;
 * - access keys are pinned (id and secret); an existing one must match.
 * Applying the same file twice reports everything `unchanged` the second time.
 */
import { type CipherGCMTypes, createDecipheriv, randomUUID, timingSafeEqual } from 'node:crypto';
import { type WrappingAlgorithm, allowedWrappingAlgorithms, keyManagementType } from '../domain/byok.js';
import { decodeCiphertextBlob } from '../domain/ciphertext.js';
import { KmsError } from '../domain/errors.js';
import type { Key } from '../domain/key.js';
import type { SeedAccessKey, SeedDocument, SeedInstance, SeedKey, SeedOutcome } from '../domain/seed.js';
import { getAccessKey } from '../store/access-keys.js';
import { getAlias } from '../store/aliases.js';
import type { Instance } from '../store/instances.js';
import { getKey } from '../store/keys.js';
import { listTags } from '../store/tags.js';
import { createAccessKey } from './access.js';
import { createAlias } from './aliases.js';
import { type Caller, type ServiceDeps, systemCaller } from './context.js';
import { encrypt } from './crypto.js';
import { getParametersForImport } from './import-params.js';
import { importKeyMaterial } from './import.js';
import { createInstance, pageInstances, updateInstance } from './instances.js';
import { updateKeyDescription } from './key-lifecycle.js';
import { createKey } from './keys.js';
import { updateRotationPolicy } from './rotation.js';
import { wrapKeyMaterial } from '../domain/client-wrap.js';
import { tagKeys } from './tags.js';

export interface ApplySeedOptions {
  /** Reads an EXTERNAL key's `material.file` (relative to the seed file); what it returns is zeroed after use. */
  readMaterialFile?: (path: string) => Promise<Buffer>;
}

/**
 * Applies `doc` in order: instances, keys (with aliases, tags, rotation, material), access keys.
 * Never throws for one item: each item's outcome says what happened (`failed` with the error).
 */
export async function applySeed(deps: ServiceDeps, doc: SeedDocument, options: ApplySeedOptions = {}): Promise<SeedOutcome[]> {
  const caller: Caller = { ...systemCaller, requestId: `seed-${randomUUID()}` };
  const outcomes: SeedOutcome[] = [];
  for (const instance of doc.instances) {
    outcomes.push(await guarded('instance', instance.name, () => applyInstance(deps, instance, caller)));
  }
  const instances = await allInstances(deps, caller);
  for (const key of doc.keys) {
    const name = key.id ?? key.aliases[0] ?? '(key)';
    try {
      outcomes.push(...(await applyKey(deps, key, instances, caller, options)));
    } catch (error) {
      outcomes.push(failed('key', name, error));
    }
  }
  for (const accessKey of doc.accessKeys) {
    outcomes.push(await guarded('access-key', accessKey.id, () => applyAccessKey(deps, accessKey, instances, caller)));
  }
  return outcomes;
}

async function guarded(kind: SeedOutcome['kind'], name: string, fn: () => Promise<SeedOutcome>): Promise<SeedOutcome> {
  try {
    return await fn();
  } catch (error) {
    return failed(kind, name, error);
  }
}

function failed(kind: SeedOutcome['kind'], name: string, error: unknown): SeedOutcome {
  const detail = error instanceof KmsError ? `${error.code}: ${error.message}` : error instanceof Error ? error.message : String(error);
  return { kind, name, status: 'failed', detail };
}

async function allInstances(deps: ServiceDeps, caller: Caller): Promise<Instance[]> {
  return (await pageInstances(deps, { pageNumber: 1, pageSize: 10_000 }, caller)).items;
}

async function applyInstance(deps: ServiceDeps, declared: SeedInstance, caller: Caller): Promise<SeedOutcome> {
  const existing = (await allInstances(deps, caller)).find((i) => i.name === declared.name);
  const outcome = (status: SeedOutcome['status'], detail?: string): SeedOutcome => ({ kind: 'instance', name: declared.name, status, ...(detail ? { detail } : {}) });
  if (!existing) {
    const created = await createInstance(deps, declared, caller);
    return outcome('created', created.id);
  }
  if (existing.type !== declared.type) return outcome('conflict', `instance ${existing.id} is ${existing.type}, the file says ${declared.type}`);
  if (existing.keyQuota === declared.keyQuota && existing.qps === declared.qps) return outcome('unchanged', existing.id);
  await updateInstance(deps, existing.id, { keyQuota: declared.keyQuota, qps: declared.qps }, caller);
  return outcome('updated', `${existing.id}: keyQuota ${existing.keyQuota} → ${declared.keyQuota}, qps ${existing.qps} → ${declared.qps}`);
}

/** The instance a key of `declared` belongs to (null: a default key). */
function instanceOf(declared: SeedKey, instances: readonly Instance[]): string | null {
  if (declared.tier === 'DEFAULT') return null;
  const found =
    declared.instance === undefined
      ? instances.find((i) => i.type === declared.tier)
      : instances.find((i) => i.name === declared.instance || i.id === declared.instance);
  if (!found) {
    throw new Error(declared.instance === undefined ? `no ${declared.tier} instance exists: declare one under instances` : `no instance ${declared.instance}`);
  }
  if (found.type !== declared.tier) throw new Error(`instance ${declared.instance} is ${found.type}, not ${declared.tier}`);
  return found.id;
}

/** By its fixed id, else by its first alias. */
async function findKey(deps: ServiceDeps, declared: SeedKey): Promise<Key | undefined> {
  if (declared.id !== undefined) return getKey(deps.db, declared.id);
  const alias = await getAlias(deps.db, declared.aliases[0]!);
  return alias ? getKey(deps.db, alias.keyId) : undefined;
}

async function applyKey(deps: ServiceDeps, declared: SeedKey, instances: readonly Instance[], caller: Caller, options: ApplySeedOptions): Promise<SeedOutcome[]> {
  const instanceId = instanceOf(declared, instances);
  const protection = declared.tier === 'HSM' ? 'HSM' : 'SOFTWARE';
  let key = await findKey(deps, declared);
  const changes: string[] = [];
  let created = false;

  if (!key) {
    key = await createKey(
      deps,
      {
        id: declared.id,
        instanceId: instanceId ?? undefined,
        protectionLevel: instanceId === null ? 'SOFTWARE' : undefined,
        keySpec: declared.spec,
        keyUsage: declared.usage,
        origin: declared.origin,
        description: declared.description,
        tags: declared.tags,
        enableAutomaticRotation: declared.rotation?.enabled === true && declared.origin !== 'EXTERNAL',
        rotationIntervalSeconds: declared.rotation?.enabled ? declared.rotation.intervalSeconds : undefined,
      },
      caller,
    );
    created = true;
  } else {
    const differences = [
      key.instanceId !== instanceId ? `instance ${key.instanceId ?? '(none)'} ≠ ${instanceId ?? '(none)'}` : '',
      key.protectionLevel !== protection ? `protection ${key.protectionLevel} ≠ ${protection}` : '',
      key.keySpec !== declared.spec ? `spec ${key.keySpec} ≠ ${declared.spec}` : '',
      key.keyUsage !== declared.usage ? `usage ${key.keyUsage} ≠ ${declared.usage}` : '',
      key.origin !== declared.origin ? `origin ${key.origin} ≠ ${declared.origin}` : '',
      key.state === 'PendingDeletion' ? 'the key is PendingDeletion' : '',
    ].filter((d) => d !== '');
    if (differences.length > 0) {
      return [{ kind: 'key', name: key.id, status: 'conflict', detail: `the existing key differs from the file (${differences.join('; ')}); nothing applied` }];
    }
  }

  if (declared.origin === 'EXTERNAL' && declared.material) {
    const fromFile = declared.material.kind === 'file';
    const material = declared.material.kind === 'base64' ? declared.material.bytes : await readMaterial(options, declared.material.path);
    try {
      const result = await applyMaterial(deps, key, material, caller);
      if (result === 'conflict') return [{ kind: 'key', name: key.id, status: 'conflict', detail: 'the key already has other material than the file' }];
      if (result === 'imported') changes.push('material imported');
    } finally {
      // Read here, so zeroed here; inline material belongs to the caller's document (applySeedFile zeroes it).
      if (fromFile) material.fill(0);
    }
    key = (await getKey(deps.db, key.id)) ?? key;
    // An imported key's rotation policy is set once its material is in (created keys wait for it).
    if (created && declared.rotation?.enabled) {
      key = await updateRotationPolicy(deps, key.id, { enable: true, intervalSeconds: declared.rotation.intervalSeconds }, caller);
    }
  }

  if (!created) {
    if (declared.description !== undefined && key.description !== declared.description) {
      key = await updateKeyDescription(deps, key.id, declared.description, caller);
      changes.push('description');
    }
    const current = new Map((await listTags(deps.db, key.id)).map((t) => [t.key, t.value]));
    const missing = declared.tags.filter((t) => current.get(t.key) !== t.value);
    if (missing.length > 0) {
      await tagKeys(deps, { keyIds: [key.id], tags: missing }, caller);
      changes.push(`tags ${missing.map((t) => t.key).join(', ')}`);
    }
    if (declared.rotation && !rotationMatches(key, declared.rotation)) {
      key = await updateRotationPolicy(
        deps,
        key.id,
        declared.rotation.enabled ? { enable: true, intervalSeconds: declared.rotation.intervalSeconds } : { enable: false },
        caller,
      );
      changes.push('rotation policy');
    }
  }

  const keyId = key.id;
  const outcomes: SeedOutcome[] = [
    { kind: 'key', name: keyId, status: created ? 'created' : changes.length > 0 ? 'updated' : 'unchanged', ...(changes.length > 0 ? { detail: changes.join('; ') } : {}) },
  ];
  for (const aliasName of declared.aliases) outcomes.push(await guarded('alias', aliasName, () => applyAlias(deps, aliasName, keyId, caller)));
  return outcomes;
}

function rotationMatches(key: Key, rotation: NonNullable<SeedKey['rotation']>): boolean {
  if (!rotation.enabled) return key.automaticRotation === 'Disabled';
  return key.automaticRotation !== 'Disabled' && key.rotationIntervalSeconds === rotation.intervalSeconds;
}

async function readMaterial(options: ApplySeedOptions, file: string): Promise<Buffer> {
  if (!options.readMaterialFile) throw new Error(`material.file ${file}: this seed was given without its directory`);
  return options.readMaterialFile(file);
}

/**
 * PendingImport: the four BYOK steps with the service's own use cases (the wrapping done here,
 * as a client would). Imported already: one Encrypt, opened here with the known material, tells
 * whether the key has it.
 */
async function applyMaterial(deps: ServiceDeps, key: Key, material: Buffer, caller: Caller): Promise<'imported' | 'unchanged' | 'conflict'> {
  if (key.state === 'PendingImport') {
    const algorithm = wrappingAlgorithmFor(deps, key);
    const parameters = await getParametersForImport(deps, { keyId: key.id, wrappingKeySpec: 'RSA_2048', wrappingAlgorithm: algorithm }, caller);
    const encryptedKeyMaterial = wrapKeyMaterial(parameters.publicKeyDer, algorithm, material).toString('base64');
    await importKeyMaterial(deps, { keyId: key.id, encryptedKeyMaterial, importToken: parameters.importToken }, caller);
    return 'imported';
  }
  if (key.state !== 'Enabled') return 'unchanged';
  const probe = await encrypt(deps, { keyId: key.id, plaintext: 'seed material check' }, caller);
  return openedWith(material, probe.ciphertextBlob) ? 'unchanged' : 'conflict';
}

/** Whether `material` opens the blob (AES-GCM, no encryption context). */
function openedWith(material: Buffer, blob: string): boolean {
  const { iv, ciphertext, tag } = decodeCiphertextBlob(blob);
  try {
    const decipher = createDecipheriv(`aes-${material.length * 8}-gcm` as CipherGCMTypes, material, iv);
    decipher.setAuthTag(tag);
    Buffer.concat([decipher.update(ciphertext), decipher.final()]).fill(0);
    return true;
  } catch {
    return false;
  }
}

/** The strongest algorithm this key's type offers and this HSM unwraps (OAEP-SHA256 first). */
function wrappingAlgorithmFor(deps: ServiceDeps, key: Key): WrappingAlgorithm {
  const offered = allowedWrappingAlgorithms(keyManagementType(key));
  const preference: WrappingAlgorithm[] = ['RSAES_OAEP_SHA_256', 'RSAES_OAEP_SHA_1', 'RSAES_PKCS1_V1_5'];
  const usable = preference.find((a) => offered.includes(a) && deps.hsm.supportsWrappingAlgorithm(a));
  if (!usable) throw new Error(`this HSM unwraps none of ${offered.join(', ')}`);
  return usable;
}

async function applyAlias(deps: ServiceDeps, aliasName: string, keyId: string, caller: Caller): Promise<SeedOutcome> {
  const existing = await getAlias(deps.db, aliasName);
  if (existing?.keyId === keyId) return { kind: 'alias', name: aliasName, status: 'unchanged' };
  if (existing) return { kind: 'alias', name: aliasName, status: 'conflict', detail: `it names ${existing.keyId}, the file says ${keyId}` };
  await createAlias(deps, { aliasName, keyId }, caller);
  return { kind: 'alias', name: aliasName, status: 'created', detail: keyId };
}

async function applyAccessKey(deps: ServiceDeps, declared: SeedAccessKey, instances: readonly Instance[], caller: Caller): Promise<SeedOutcome> {
  const instanceIds = declared.instances.map((ref) => {
    const found = instances.find((i) => i.name === ref || i.id === ref);
    if (!found) throw new Error(`no instance ${ref}`);
    return found.id;
  });
  const existing = await getAccessKey(deps.db, declared.id);
  if (!existing) {
    await createAccessKey(
      deps,
      { role: declared.role, instanceIds, description: declared.description, pinned: { accessKeyId: declared.id, accessKeySecret: declared.secret } },
      caller,
    );
    return { kind: 'access-key', name: declared.id, status: 'created', detail: declared.role };
  }
  const secret = await deps.hsm.unsealWithRootKey(existing.sealedSecret, Buffer.from(existing.id));
  const declaredSecret = Buffer.from(declared.secret, 'utf8');
  const sameSecret = secret.length === declaredSecret.length && timingSafeEqual(secret, declaredSecret);
  secret.fill(0);
  const sameInstances = [...(existing.instanceIds ?? [])].sort().join(',') === [...instanceIds].sort().join(',');
  const differences = [!sameSecret ? 'secret' : '', existing.role !== declared.role ? `role ${existing.role} ≠ ${declared.role}` : '', !sameInstances ? 'instances' : ''].filter(
    (d) => d !== '',
  );
  if (differences.length > 0) return { kind: 'access-key', name: declared.id, status: 'conflict', detail: `differs from the file: ${differences.join(', ')}` };
  return { kind: 'access-key', name: declared.id, status: 'unchanged' };
}
