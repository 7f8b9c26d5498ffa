/**
 * The MAC use cases (issue 15, alibaba-api.md §3.4): GenerateMac and VerifyMac with a
 * GENERATE/VERIFY_MAC key, on both tiers. Each checks, in order: the key exists and is
 * visible, its usage allows the action (domain/key.ts usage table), its state does, and the
 * algorithm is the one its spec fixes (domain/mac.ts). The MAC is computed with the key's
 * primary version — its only one, since MAC keys never rotate (the who-may-rotate table).
 *
 * Storage dispatch (version-material.ts): a `token` version's generic-secret key is in the
 * HSM (C_Sign with CKM_SHA*_HMAC), a `wrapped` one is unwrapped into the HSM first; a `sealed` version's material is unsealed from the root key into the
 * SOFTWARE cache and used with node:crypto. VerifyMac recomputes the MAC the same way and
 * compares in constant time. Neither the message nor the MAC is ever logged.
 */
import { timingSafeEqual } from 'node:crypto';
import { dryRunSucceeded } from '../domain/dry-run.js';
import { internalFailure } from '../domain/errors.js';
import { type Key, keyShape } from '../domain/key.js';
import { type MacAlgorithm, assertMacAlgorithm, decodeMac, decodeMacMessage } from '../domain/mac.js';
import type { KeyVersion } from '../domain/key-version.js';
import type { Caller, ServiceDeps } from './context.js';
import { macUnderVersion } from './version-material.js';
import { findKey } from './key-lookup.js';
import { admitKeyUse } from './throttling.js';

export interface MacInput {
  /** `KeyId`: an id, alias or ARN. */
  keyId: string;
  algorithm: string;
  /** `Message`, base64. */
  message: string;
  /** §3.4 DryRun: every check runs, then DryRunOperationError instead of the operation. */
  dryRun?: boolean | undefined;
}

/** GenerateMac: the base64 MAC of the message. */
export async function generateMac(
  deps: ServiceDeps,
  input: MacInput,
  caller: Caller,
): Promise<{ keyId: string; keyVersionId: string; algorithm: MacAlgorithm; mac: string }> {
  const { key, version, algorithm, message } = await prepare(deps, input, 'GenerateMac', caller);
  if (input.dryRun) throw dryRunSucceeded();
  const mac = await macWith(deps, version, algorithm, message);
  return { keyId: key.id, keyVersionId: version.id, algorithm, mac: mac.toString('base64') };
}

/** VerifyMac: `Value` true only when `Mac` is the message's MAC under the key; any other MAC (or length) is false. */
export async function verifyMac(
  deps: ServiceDeps,
  input: MacInput & { mac: string },
  caller: Caller,
): Promise<{ keyId: string; algorithm: MacAlgorithm; value: boolean }> {
  const { key, version, algorithm, message } = await prepare(deps, input, 'VerifyMac', caller);
  const presented = decodeMac(input.mac);
  if (input.dryRun) throw dryRunSucceeded();
  const expected = await macWith(deps, version, algorithm, message);
  // timingSafeEqual needs equal lengths; the length of a MAC is public (it is the algorithm's).
  const value = presented.length === expected.length && timingSafeEqual(presented, expected);
  return { keyId: key.id, algorithm, value };
}

/**
 * @throws Forbidden.KeyNotFound / Forbidden.AliasNotFound (404), Rejected.UnsupportedOperation
 *   (400, not a MAC key), Rejected.<State> (409), InvalidParameter (Algorithm, Message)
 */
async function prepare(
  deps: ServiceDeps,
  input: MacInput,
  action: 'GenerateMac' | 'VerifyMac',
  caller: Caller,
): Promise<{ key: Key; version: KeyVersion; algorithm: MacAlgorithm; message: Buffer }> {
  const key = await findKey(deps, input.keyId, caller);
  // Our choice (§5.1 captures no MAC rows): only Enabled keys MAC, as for every crypto action.
  await admitKeyUse(deps, key, action, caller);
  const algorithm = assertMacAlgorithm(keyShape(key.keySpec), key.keySpec, input.algorithm);
  const message = decodeMacMessage(input.message);
  const version = await deps.repositories.versions.byId(key.primaryVersionId);
  if (!version || !version.hasMaterial) throw internalFailure('The MAC key has no usable version.');
  return { key, version, algorithm, message };
}

function macWith(deps: ServiceDeps, version: KeyVersion, algorithm: MacAlgorithm, message: Buffer): Promise<Buffer> {
  return macUnderVersion(deps, version, algorithm, message);
}
