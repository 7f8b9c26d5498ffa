import { createHash, timingSafeEqual } from 'node:crypto';
import { KmsError } from '../../domain/errors.js';
import type { AccessRole } from '../../store/access-keys.js';
import type { CredentialDirectory } from '../../services/access.js';

export type SignInOutcome =
  | { ok: true; accessKeyId: string; role: AccessRole }
  /** Unknown id or wrong secret (one answer for both: no oracle for which ids exist). */
  | { ok: false; reason: 'wrong-credentials' }
  /** The secret is right, but the key may not sign in. */
  | { ok: false; reason: 'key-user' | 'disabled'; accessKeyId: string };

/**
 * Checks an access key id and secret typed into the sign-in form, with the credential
 * directory the RPC edge verifies signatures with (cached, unsealed by the HSM). The secrets
 * are compared as SHA-256 digests with timingSafeEqual: equal lengths, no early exit.
 * Only an enabled admin key may sign in.
 */
export async function verifyConsoleSignIn(credentials: CredentialDirectory, accessKeyId: string, secret: string): Promise<SignInOutcome> {
  const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  let stored: Awaited<ReturnType<CredentialDirectory['lookup']>> | undefined;
  try {
    stored = accessKeyId.length > 0 && accessKeyId.length <= 128 ? await credentials.lookup(accessKeyId) : undefined;
  } catch (error) {
    if (!(error instanceof KmsError && error.code === 'InvalidAccessKeyId.NotFound')) throw error;
  }
  // Compared even for an unknown id, so both cost the same.
  const matches = timingSafeEqual(digest(secret), digest(stored?.secret ?? `\u0000unknown:${accessKeyId}`));
  if (!stored || !matches) return { ok: false, reason: 'wrong-credentials' };
  if (stored.accessKey.status !== 'Enabled') return { ok: false, reason: 'disabled', accessKeyId };
  if (stored.accessKey.role !== 'admin') return { ok: false, reason: 'key-user', accessKeyId };
  return { ok: true, accessKeyId, role: stored.accessKey.role };
}
