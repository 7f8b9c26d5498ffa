import { systemCaller } from '../../src/services/context.js';
import { type CreateInstanceInput, createInstance } from '../../src/services/instances.js';
import type { CallApi } from './sdk.js';
import type { TestServer } from './server.js';

/**
 * The keys and instances tests set up: keys as a user makes them (CreateKey through an SDK
 * transport, so every check of the action applies), instances as an operator does (no RPC
 * creates one; `kms instance create` calls the same service as the system).
 */

/** What CreateKey answered: the key's id, its first (primary) version's id and the whole KeyMetadata. */
export interface CreatedKey {
  keyId: string;
  versionId: string;
  metadata: Record<string, any>;
}

/** CreateKey with these parameters through `call` (without DKMSInstanceId: in the default instance). */
export async function createKey(call: CallApi, params: Record<string, unknown> = {}): Promise<CreatedKey> {
  const metadata = (await call('CreateKey', params)).KeyMetadata as Record<string, any>;
  return { keyId: metadata.KeyId as string, versionId: metadata.PrimaryKeyVersion as string, metadata };
}

/** CreateKey, answering only the new key's id. */
export async function createKeyId(call: CallApi, params: Record<string, unknown> = {}): Promise<string> {
  return (await createKey(call, params)).keyId;
}

/** CreateKey in the instance `instanceId` (`params` may add KeySpec, Origin, …). */
export function createKeyIn(call: CallApi, instanceId: string, params: Record<string, unknown> = {}): Promise<CreatedKey> {
  return createKey(call, { DKMSInstanceId: instanceId, ...params });
}

export type Tier = 'HSM' | 'SOFTWARE';

/** The instance of this protection level that startServer made. */
export function instanceOfTier(server: Pick<TestServer, 'hsmInstanceId' | 'softwareInstanceId'>, tier: Tier): string {
  return tier === 'HSM' ? server.hsmInstanceId : server.softwareInstanceId;
}

/** A new instance in this server's database, made as the system: its id (a test's own quota and QPS). */
export async function createInstanceIn(server: Pick<TestServer, 'kms'>, input: CreateInstanceInput): Promise<string> {
  return (await createInstance(server.kms.deps, input, systemCaller)).id;
}
