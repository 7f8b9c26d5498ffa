import { createHash } from 'node:crypto';
import { KmsError, invalidParameter } from '../domain/errors.js';
import { newKeyId } from '../domain/ids.js';
import type { Key } from '../domain/key.js';
import { purgeIdempotencyKeys, reserveIdempotencyKey } from '../store/idempotency-keys.js';
import { getKey } from '../store/keys.js';
import type { Caller, ServiceDeps } from './context.js';
import { type CreateKeyInput, createKey } from './keys.js';

/**
 * Idempotent creation (issue 19, item 6). A client whose CreateKey committed but whose answer
 * was lost (ECONNRESET, a proxy timeout, the server killed after the commit) cannot tell it from a
 * call that failed, and its retry used to create a second key. With a client token — Alibaba's
 * `ClientToken` parameter or the `x-kms-idempotency-key` header — the id of the key is reserved
 * under that token before anything is created, in its own committed statement; the creation then
 * uses that id. A retry with the same token and the same parameters finds the reservation and
 * answers the key made under it (as it is now), or, when the first attempt never committed,
 * creates it under the same id — so at most one key ever exists per token, even when two retries
 * race (the second insert of that id fails and finds the first). The same token with other
 * parameters is refused with IdempotentParameterMismatch. Reservations count for 24 hours:
 * shorter than the shortest deletion window (7 days), so a key a live reservation names can only
 * be missing because its creation never committed.
 */
export const IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000;

/** A client token: 1–64 printable ASCII characters without spaces. */
const CLIENT_TOKEN = /^[\x21-\x7e]{1,64}$/;

export function parseClientToken(value: string, name: string): string {
  if (!CLIENT_TOKEN.test(value)) throw invalidParameter(name, 'A client token is 1 to 64 printable ASCII characters without spaces.');
  return value;
}

/** The token and a digest of the request's parameters (canonical: sorted names, token left out). */
export interface IdempotencyToken {
  clientToken: string;
  paramsSha256: Buffer;
}

export function idempotencyToken(clientToken: string, params: Readonly<Record<string, unknown>>): IdempotencyToken {
  const canonical = JSON.stringify(
    Object.keys(params)
      .filter((name) => name !== 'ClientToken' && params[name] !== undefined)
      .sort()
      .map((name) => [name, params[name]]),
  );
  return { clientToken, paramsSha256: createHash('sha256').update(canonical, 'utf8').digest() };
}

export const idempotentParameterMismatch = () =>
  new KmsError('IdempotentParameterMismatch', 'The client token was already used, within 24 hours, by a request with other parameters.');

/** CreateKey under a client token: the key the token names, created at most once. */
export async function createKeyOnce(deps: ServiceDeps, input: CreateKeyInput, caller: Caller, token: IdempotencyToken): Promise<Key> {
  return once(deps, 'CreateKey', token, newKeyId, {
    create: (id) => createKey(deps, { ...input, id }, caller),
    find: async (id) => getKey(deps.db, id),
  });
}

async function once<T>(
  deps: ServiceDeps,
  action: string,
  token: IdempotencyToken,
  newId: () => string,
  use: { create(id: string): Promise<T>; find(id: string): Promise<T | undefined> },
): Promise<T> {
  const now = deps.clock.now();
  const expiredBefore = new Date(now.getTime() - IDEMPOTENCY_WINDOW_MS);
  const reservation = await reserveIdempotencyKey(deps.db, { action, clientToken: token.clientToken, paramsSha256: token.paramsSha256, resourceId: newId(), now, expiredBefore });
  if (!reservation.paramsSha256.equals(token.paramsSha256)) throw idempotentParameterMismatch();
  if (reservation.fresh) {
    // A few expired reservations go with every new one: the table stays about a day's worth.
    await purgeIdempotencyKeys(deps.db, expiredBefore).catch((error: unknown) => deps.logger.warn({ err: error }, 'idempotency keys: purge failed'));
  } else {
    const existing = await use.find(reservation.resourceId);
    if (existing !== undefined) return existing;
  }
  try {
    return await use.create(reservation.resourceId);
  } catch (error) {
    // A retry racing the first attempt: whichever committed, the other answers its result.
    const existing = await use.find(reservation.resourceId).catch(() => undefined);
    if (existing !== undefined) return existing;
    throw error;
  }
}
